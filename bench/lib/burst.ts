/**
 * Bursts: many containers started at once, as a runtime starting a deployment does. Each burst
 * spawns N processes together, each with one port mapping and a fresh netns of its own, against a
 * network with nothing else on it, and waits for them all: each process's time from spawn to exit
 * (p50, p99), the burst's wall time and its CPU time (every process of it, the tools they ran
 * included), which a busy machine stretches far less than the wall time. tsnetlink's CLI
 * `connect -p` and, when installed, `netavark setup` with one port mapping (Podman's backend,
 * also one process per container) take turns burst by burst, so both see the same machine.
 * Undoing a burst (disconnect, teardown) is not timed.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { deleteNamedNetns } from '../../src/index.js';
import type { Env, Slot } from './methods.js';
import { CLI } from './processes.js';
import { makeSlots, settle } from './runner.js';
import { netavarkCommand, netavarkTeardown } from './netavark.js';
import { nowMs, round, summarize, type Progress, type Summary } from './stats.js';

/** One side's figures over every burst. */
export interface BurstSide {
  label: string;
  /** Processes started per burst (each with its own tools). */
  processes: number;
  /** Spawn-to-exit time of every process of every burst. */
  perProcess: Summary;
  /** p50 over the bursts of their wall time and of their CPU time, ms. */
  wallP50: number;
  cpuP50: number;
  skipped?: string;
  error?: string;
}

export interface BurstResult {
  n: number;
  rounds: number;
  sides: BurstSide[];
}

/**
 * CPU time (ms) of the children of this process that have ended, their own children included
 * (each waited for its tools): cutime + cstime of /proc/self/stat, in USER_HZ (100 on Linux).
 */
function childrenCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[13]) + Number(f[14])) * 1000) / 100;
}

/** Runs a process to its end: its stdout and spawn-to-exit ms; rejects on a non-zero exit. */
function timedRun(cmd: string, args: readonly string[], input?: string, env?: NodeJS.ProcessEnv): Promise<{ ms: number; out: string }> {
  const t0 = nowMs();
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: env ?? process.env });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve({ ms: nowMs() - t0, out }) : reject(new Error(`${cmd} ${args.slice(0, 3).join(' ')}: exit ${code}: ${err.trim().split('\n')[0]}`))));
    p.stdin.end(input ?? '');
  });
}

interface Side {
  label: string;
  processes: number;
  skip?: string;
  /** Starts one container's process; resolves to its spawn-to-exit ms. */
  start(env: Env, s: Slot): Promise<number>;
  /** Undoes a burst (its netns still there), untimed. */
  undo(env: Env, slots: readonly Slot[]): Promise<void>;
}

function sides(env: Env, cliSkip: string | undefined, nvSkip: string | undefined): Side[] {
  const nv = env.netavark;
  return [
    {
      label: 'tsnetlink connect -p (CLI)',
      processes: 2,
      ...(cliSkip ? { skip: cliSkip } : {}),
      start: async (e, s) => {
        const r = await timedRun(process.execPath, [CLI, 'connect', '--state-dir', e.stateDir, '-net', e.network, '-p', `${s.hostPort}:80`, `/run/netns/${s.ns}`]);
        s.id = (JSON.parse(r.out) as { id: string }).id;
        return r.ms;
      },
      undo: async (e, slots) => {
        await e.nets.disconnectMany(e.network, slots.flatMap((s) => (s.id ? [s.id] : [])));
        for (const s of slots) delete s.id;
      },
    },
    {
      label: 'netavark setup -p',
      processes: 29,
      ...(nvSkip ? { skip: nvSkip } : {}),
      start: async (_e, s) => {
        const { cmd, args, input, env: nvEnv } = netavarkCommand(nv!, 'setup', s, true);
        const r = await timedRun(cmd, args, input, nvEnv);
        s.id = `netavark:${s.k}`;
        return r.ms;
      },
      undo: async (_e, slots) => {
        for (const s of slots) netavarkTeardown(nv!, s, true);
      },
    },
  ];
}

/**
 * `rounds` bursts of `n` processes per side, the sides taking turns (their order swapped every
 * round). The network is quiet: nothing else is connected while a burst runs.
 */
export async function measureBursts(env: Env, n: number, rounds: number, progress: Progress, skips: { cli?: string; netavark?: string }): Promise<BurstResult> {
  const all = sides(env, skips.cli, skips.netavark);
  const got = all.map(() => ({ ms: [] as number[], walls: [] as number[], cpus: [] as number[], error: undefined as string | undefined }));
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? all.map((_, i) => i) : all.map((_, i) => all.length - 1 - i);
    for (const i of order) {
      const side = all[i]!;
      const g = got[i]!;
      if (side.skip !== undefined || g.error !== undefined) continue;
      progress.update(`concurrency: ${n} at once`, `${side.label} burst ${r + 1}/${rounds}`);
      const slots = makeSlots(n);
      try {
        const c0 = childrenCpuMs();
        const t0 = nowMs();
        const ms = await Promise.all(slots.map((s) => side.start(env, s)));
        g.walls.push(nowMs() - t0);
        g.cpus.push(childrenCpuMs() - c0);
        g.ms.push(...ms);
      } catch (e) {
        g.error = (e as Error).message;
      } finally {
        try {
          await side.undo(env, slots.filter((s) => s.id !== undefined));
        } catch (e) {
          g.error ??= `undo: ${(e as Error).message}`;
        }
        for (const s of slots) deleteNamedNetns(s.ns);
        await settle(env);
      }
    }
  }
  const median = (a: readonly number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? NaN;
  return {
    n,
    rounds,
    sides: all.map((side, i) => {
      const g = got[i]!;
      const s = summarize(g.ms);
      return {
        label: side.label,
        processes: side.processes,
        perProcess: { n: s.n, p50: round(s.p50), p90: round(s.p90), p99: round(s.p99), mean: round(s.mean), min: round(s.min), max: round(s.max) },
        wallP50: round(median(g.walls)),
        cpuP50: round(median(g.cpus)),
        ...(side.skip !== undefined ? { skipped: side.skip } : {}),
        ...(g.error !== undefined ? { error: g.error } : {}),
      };
    }),
  };
}
