/**
 * Dual-stack rows: tsnetlink connect on a network with an IPv4 and an IPv6 subnet against connect
 * on an IPv4-only network of the same shape, interleaved in one run, both on empty bridges; then
 * dual-stack connect again with `level` dual-stack endpoints already on its bridge, where each new
 * port's IPv6 neighbour discovery and MLD traffic could be flooded to every other port.
 */
import type { Networks } from '../../src/index.js';
import { addBackground, dropBackground, sampleInterleaved, settle } from './runner.js';
import type { Env, Method, Slot } from './methods.js';
import { summarize, type Progress, type Summary } from './stats.js';

/** What the dual-stack phase measured (p50s and sample counts). */
export interface DualStackResult {
  v4At0: Summary;
  dsAt0: Summary;
  dsAtLevel: Summary;
  level: number;
  error?: string;
}

/** A network of its own for one side of the comparison. */
async function ownEnv(base: Env, nets: Networks, name: string, subnet: string[]): Promise<Env> {
  const net = await nets.create({ name, subnet });
  return { ...base, network: net.name, bridge: net.bridge, subnet: net.subnet, gateway: net.gateway, prefix: net.prefix, background: 0 };
}

function connectOn(env: Env, key: string, label: string): Method {
  return {
    key, label, procs: 0, mapping: false, netns: true,
    connect: async (_e, s: Slot) => {
      s.id = (await env.nets.connect(env.network, { name: s.ns })).id;
    },
    // The runner settled the bridge it was given; this side waits for its own, then frees the state.
    cleanup: async (_e, slots) => {
      await settle(env);
      for (const s of slots) if (s.id) await env.nets.disconnect(env.network, s.id);
    },
  };
}

/** Runs the dual-stack phase: `n` interleaved samples at 0 endpoints, then `n` at `level`. */
export async function measureDualStack(base: Env, n: number, batch: number, level: number, progress: Progress): Promise<DualStackResult> {
  const v4 = await ownEnv(base, base.nets, 'bench4', ['10.91.0.0/16']);
  const ds = await ownEnv(base, base.nets, 'benchds', ['10.92.0.0/16', 'fd00:92::/64']);
  const m4 = connectOn(v4, 'v4', 'tsnetlink connect, IPv4-only network');
  const mds = connectOn(ds, 'ds', 'tsnetlink connect, dual-stack network');
  let bg: Slot[] = [];
  try {
    const at0 = await sampleInterleaved(ds, [m4, mds], n, batch, progress, 'dual stack: 0 endpoints');
    bg = await addBackground(ds, level, false, progress, `dual stack: ${level} endpoints`);
    const atLevel = await sampleInterleaved(ds, [mds], n, batch, progress, `dual stack: ${level} endpoints`);
    const err = at0.get('v4')?.error ?? at0.get('ds')?.error ?? atLevel.get('ds')?.error;
    return {
      v4At0: summarize(at0.get('v4')?.samples ?? []),
      dsAt0: summarize(at0.get('ds')?.samples ?? []),
      dsAtLevel: summarize(atLevel.get('ds')?.samples ?? []),
      level,
      ...(err !== undefined ? { error: err } : {}),
    };
  } finally {
    await dropBackground(ds, bg, progress, 'dual stack: cleanup');
    await base.nets.remove('bench4', { force: true });
    await base.nets.remove('benchds', { force: true });
  }
}
