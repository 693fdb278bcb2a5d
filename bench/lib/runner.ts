/** Sampling loops: fresh netns per sample made beforehand, bulk cleanup afterwards, all untimed. */
import { createNamedNetns, deleteNamedNetns, DumpInterruptedError, kernelClock } from '../../src/index.js';
import { newSlot, type DisconnectMethod, type Env, type Method, type Slot } from './methods.js';
import { nowMs, round, type Progress } from './stats.js';

/** Idle time after a batch's cleanup, so the kernel's async netns teardown does not overlap the next batch. */
const PAUSE_MS = 100;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Fresh slots, with their named netns created (handles closed right away: no fd is kept). */
export function makeSlots(n: number, withNetns = true): Slot[] {
  const slots: Slot[] = [];
  for (let i = 0; i < n; i++) {
    const s = newSlot();
    if (withNetns) createNamedNetns(s.ns).close();
    slots.push(s);
  }
  return slots;
}

/** Waits until exactly `env.background` links are enslaved to the bridge (netns teardown is async in the kernel). */
export async function settle(env: Env, timeoutMs = 30_000): Promise<void> {
  const deadline = nowMs() + timeoutMs;
  for (;;) {
    let n = -1;
    try {
      n = env.nets.host.linkList({ master: env.bridge }, { retries: 3 }).length;
    } catch (e) {
      // Netns teardown changes links while we dump: not settled yet, look again.
      if (!(e instanceof DumpInterruptedError)) throw e;
    }
    if (n === env.background) return;
    if (nowMs() > deadline) throw new Error(`bridge has ${n} ports, expected ${env.background}, after ${timeoutMs} ms`);
    await sleep(5);
  }
}

/** Runs the method's release (undo that needs the netns), deletes the slots' netns in one go (their veths go with them), settles, then runs the method's cleanup. */
export async function cleanupSlots(env: Env, m: Pick<Method, 'cleanup' | 'netns' | 'release'>, slots: readonly Slot[]): Promise<void> {
  try {
    if (m.release) await m.release(env, slots);
  } finally {
    await deleteAndCleanup(env, m, slots);
  }
}

async function deleteAndCleanup(env: Env, m: Pick<Method, 'cleanup' | 'netns'>, slots: readonly Slot[]): Promise<void> {
  try {
    if (m.netns) {
      for (const s of slots) deleteNamedNetns(s.ns);
      await settle(env);
    }
  } finally {
    await m.cleanup(env, slots);
  }
}

export interface MethodResult {
  samples: number[];
  error?: string;
}

/** How many samples a method with `share` of the run takes in the round that ends at `upTo` of `count`, so that its samples spread over every round. */
function quota(share: number, upTo: number, taken: number): number {
  return Math.max(0, Math.ceil(upTo * share) - taken);
}

/**
 * Samples every method `count` times (a method with a share below 1 that share of it), interleaved
 * in rounds of `batch` so that drift on a shared machine hits every method alike. A method that
 * fails stops sampling and keeps its error.
 */
export async function sampleInterleaved(env: Env, ms: readonly Method[], count: number, batch: number, progress: Progress, phase: string): Promise<Map<string, MethodResult>> {
  const out = new Map<string, MethodResult>(ms.map((m) => [m.key, { samples: [] }]));
  for (let done = 0; done < count; done += batch) {
    const upTo = Math.min(count, done + batch);
    for (const m of ms) {
      const res = out.get(m.key)!;
      if (m.skip !== undefined || res.error !== undefined) continue;
      const b = quota(m.share ?? 1, upTo, res.samples.length);
      if (b === 0) continue;
      progress.update(phase, `${m.label} ${res.samples.length}/${Math.ceil(count * (m.share ?? 1))}`);
      const slots = makeSlots(b, m.netns);
      const made: Slot[] = [];
      try {
        for (const s of slots) {
          const t0 = nowMs();
          await m.connect(env, s);
          res.samples.push(nowMs() - t0);
          made.push(s);
        }
      } catch (e) {
        res.error = (e as Error).message;
      } finally {
        await cleanupSlots(env, m, m.netns ? slots : made).catch((e: Error) => {
          res.error ??= `cleanup: ${e.message}`;
        });
        await sleep(PAUSE_MS);
      }
    }
  }
  return out;
}

/**
 * Times each disconnect method `count` times, interleaved in rounds of `batch` as sampleInterleaved:
 * per round, `batch` endpoints made by the method's `via` (untimed), then each disconnected (timed)
 * while its netns is still there, then the netns deleted and whatever is left cleaned up.
 */
export async function sampleDisconnects(env: Env, ms: readonly DisconnectMethod[], count: number, batch: number, progress: Progress, phase: string): Promise<Map<string, MethodResult>> {
  const out = new Map<string, MethodResult>(ms.map((m) => [m.key, { samples: [] }]));
  for (let done = 0; done < count; done += batch) {
    const b = Math.min(batch, count - done);
    for (const m of ms) {
      const res = out.get(m.key)!;
      if (m.skip !== undefined || res.error !== undefined) continue;
      progress.update(phase, `${m.label} ${done}/${count}`);
      const slots = makeSlots(b, m.via.netns);
      try {
        for (const s of slots) await m.via.connect(env, s);
        for (const s of slots) {
          const t0 = nowMs();
          await m.disconnect(env, s);
          res.samples.push(nowMs() - t0);
        }
      } catch (e) {
        res.error = (e as Error).message;
      } finally {
        await cleanupSlots(env, m.via, slots).catch((e: Error) => {
          res.error ??= `cleanup: ${e.message}`;
        });
        await sleep(PAUSE_MS);
      }
    }
  }
  return out;
}

/** Connects `n` more background endpoints with tsnetlink (optionally one mapping each); returns their slots. */
export async function addBackground(env: Env, n: number, mapping: boolean, progress: Progress, phase: string): Promise<Slot[]> {
  const slots: Slot[] = [];
  for (let i = 0; i < n; i++) {
    if (i % 50 === 0) progress.update(phase, `background ${env.background}+${i}/${n}`);
    const [s] = makeSlots(1);
    s!.id = (await env.nets.connect(env.network, { name: s!.ns }, mapping ? { ports: [`${s!.hostPort}:80`] } : {})).id;
    slots.push(s!);
  }
  env.background += n;
  return slots;
}

/** Removes background endpoints: netns first in one go, then disconnect (the veth is already gone). */
export async function dropBackground(env: Env, slots: readonly Slot[], progress: Progress, phase: string): Promise<void> {
  progress.update(phase, `removing ${slots.length} background endpoints`);
  for (const s of slots) deleteNamedNetns(s.ns);
  env.background -= slots.length;
  await settle(env, 120_000);
  for (const s of slots) if (s.id) await env.nets.disconnect(env.network, s.id);
}

export interface FloorResult {
  samples: number;
  totalP50: number;
  kernelP50: number;
  kernelShare: number;
  overheadShare: number;
  callsPerConnect: number;
  /** Mean ms per connect inside each libc call (when the library's kernelClock has byCall). */
  kernelByCall: Record<string, { msPerConnect: number; callsPerConnect: number }>;
  /** p50 ms of each connect step (when Networks exposes lastConnectTimings). */
  steps: Record<string, number>;
}

type ClockExt = { byCall?: Record<string, { ns: bigint; calls: number }>; reset?: () => void };
type NetsExt = { lastConnectTimings?: readonly { step: string; ms: number }[] };

function resetClock(): void {
  const ext = kernelClock as typeof kernelClock & ClockExt;
  if (typeof ext.reset === 'function') ext.reset();
  else {
    kernelClock.ns = 0n;
    kernelClock.calls = 0;
  }
}

const median = (a: readonly number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? NaN;

/** tsnetlink connect without mappings with kernelClock on: time inside sendto/recv/poll/setns/socket vs total. */
export async function measureFloor(env: Env, count: number, progress: Progress, mapping = false): Promise<FloorResult> {
  const totals: number[] = [];
  const kernels: number[] = [];
  const byCall: Record<string, { ns: number; calls: number }> = {};
  const steps: Record<string, number[]> = {};
  let calls = 0;
  const slots = makeSlots(count);
  kernelClock.enabled = true;
  try {
    for (const [i, s] of slots.entries()) {
      progress.update(`floor (kernelClock)${mapping ? ' with one mapping' : ''}`, `${i}/${count}`);
      resetClock();
      const t0 = nowMs();
      s.id = (await env.nets.connect(env.network, { name: s.ns }, mapping ? { ports: [`${s.hostPort}:80`] } : {})).id;
      const total = nowMs() - t0;
      totals.push(total);
      kernels.push(Number(kernelClock.ns) / 1e6);
      calls += kernelClock.calls;
      for (const [name, v] of Object.entries((kernelClock as typeof kernelClock & ClockExt).byCall ?? {})) {
        const e = (byCall[name] ??= { ns: 0, calls: 0 });
        e.ns += Number(v.ns);
        e.calls += v.calls;
      }
      const timings = (env.nets as unknown as NetsExt).lastConnectTimings;
      if (timings) {
        let sum = 0;
        for (const t of timings) {
          (steps[t.step] ??= []).push(t.ms);
          sum += t.ms;
        }
        (steps['(outside steps)'] ??= []).push(total - sum);
      }
    }
  } finally {
    kernelClock.enabled = false;
  }
  await cleanupSlots(env, { netns: true, cleanup: async (e, ss) => { for (const s of ss) if (s.id) await e.nets.disconnect(e.network, s.id); } }, slots);
  const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);
  const share = sum(kernels) / sum(totals);
  return {
    samples: count, totalP50: round(median(totals)), kernelP50: round(median(kernels)), kernelShare: round(share), overheadShare: round(1 - share), callsPerConnect: round(calls / count),
    kernelByCall: Object.fromEntries(Object.entries(byCall).map(([k, v]) => [k, { msPerConnect: round(v.ns / 1e6 / count), callsPerConnect: round(v.calls / count) }])),
    steps: Object.fromEntries(Object.entries(steps).map(([k, v]) => [k, round(median(v))])),
  };
}

/**
 * tsnetlink disconnect, timed: 'live' with the container's netns still there (the host deletes the
 * veth: one RCU grace period each), 'gone' after the netns was deleted (the veth went with it).
 * Connects `batch` at a time, so that a bridge near its port limit (1023) is not overfilled.
 */
export async function measureDisconnect(env: Env, count: number, mode: 'live' | 'gone', progress: Progress, phase: string, batch = count): Promise<number[]> {
  const out: number[] = [];
  for (let done = 0; done < count; done += batch) {
    const slots = makeSlots(Math.min(batch, count - done));
    for (const s of slots) s.id = (await env.nets.connect(env.network, { name: s.ns })).id;
    if (mode === 'gone') {
      for (const s of slots) deleteNamedNetns(s.ns);
      await settle(env);
    }
    for (const s of slots) {
      progress.update(phase, `disconnect (${mode}) ${out.length}/${count}`);
      const t0 = nowMs();
      await env.nets.disconnect(env.network, s.id!);
      out.push(nowMs() - t0);
    }
    if (mode === 'live') for (const s of slots) deleteNamedNetns(s.ns);
    await settle(env);
  }
  return out;
}
