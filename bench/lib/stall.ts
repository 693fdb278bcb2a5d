/**
 * Event-loop stalls, measured two ways in the same run. monitorEventLoopDelay's histogram
 * records the time between the runs of its 1 ms timer, so its longest entry less the 1 ms
 * asked for is the longest stall as a user sees it. A stall also counts time the JS thread was
 * ready to run but waited for a CPU (the kernel's workers tearing down links, the worker that
 * receives a conntrack dump, other processes): on a machine with two CPUs that is several
 * milliseconds even when the event loop is idle. A timer of our own reads the thread's
 * /proc schedstat (time on a CPU, time waiting for one) at every turn, so each gap splits into
 * what the process itself spent, busy or blocked in a system call, and what it waited for a CPU.
 * The same timer reads the JS thread's CPU clock: the most CPU it used between two runs is the
 * longest stretch of its own work, which neither a late timer of the machine's nor a wait for a
 * CPU inflates (schedstat's figures move only at context switches and scheduler ticks).
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { threadCpuNs } from '../../src/sys/libc.js';

setFlagsFromString('--expose-gc');
/** A full garbage collection: rows start from a collected heap, so none pays for the garbage of the one before it. */
export const gc = runInNewContext('gc') as () => void;

/** One measured run: the longest stall (ms), the longest stall less CPU waits (ms, when the kernel reports them), and its duration. */
export interface Stall {
  /** Longest gap between two runs of a 1 ms timer, less the 1 ms (monitorEventLoopDelay). */
  stallMs: number;
  /** The same gaps less the time the JS thread waited for a CPU during each (undefined without /proc schedstat). */
  ownMs?: number | undefined;
  /**
   * The most CPU the JS thread used between two runs of a 1 ms timer of our own (ms; clock_gettime
   * CLOCK_THREAD_CPUTIME_ID): its own work, garbage collection included, and none of its waits
   * (for a CPU, for a late timer), nor time blocked in a system call.
   */
  cpuMs?: number | undefined;
  /** The 99th percentile of the same gaps, less the 1 ms: where a single late timer of the machine's weighs less than in the longest. */
  p99Ms?: number | undefined;
  /** Wall time of the run. */
  ms: number;
}

const RESOLUTION_MS = 1;

/** The JS thread's time spent waiting for a CPU (ns), read from an open /proc schedstat file. */
function waitReader(): { read(): number; close(): void } | undefined {
  let fd: number;
  try {
    fd = openSync('/proc/thread-self/schedstat', 'r');
  } catch {
    return undefined;
  }
  const buf = Buffer.alloc(128);
  const fields = (): number[] => {
    const n = readSync(fd, buf, 0, buf.length, 0);
    // "<ns on a CPU> <ns waiting on a run queue> <timeslices>"
    return buf.toString('latin1', 0, n).split(' ').map(Number);
  };
  const read = (): number => fields()[1] ?? 0;
  // A kernel that does not account scheduling reports zeros for a thread that has clearly run.
  if (!((fields()[0] ?? 0) > 0)) {
    closeSync(fd);
    return undefined;
  }
  return { read, close: () => closeSync(fd) };
}

/**
 * Runs `run` and measures the event loop's longest stall while it goes. The heap is collected
 * first (untimed), so the stall includes the garbage collection that `run` itself causes, not
 * the debt of whatever ran before it.
 */
export async function stallOf(run: () => Promise<void> | void): Promise<Stall> {
  gc();
  const h = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  const waits = waitReader();
  let own = 0;
  let prevT = performance.now();
  let prevW = waits?.read() ?? 0;
  let cpu = 0;
  let prevC = threadCpuNs();
  let timer: NodeJS.Timeout | undefined;
  const tick = (): void => {
    const t = performance.now();
    const c = threadCpuNs();
    cpu = Math.max(cpu, (c - prevC) / 1e6);
    if (waits) {
      const w = waits.read();
      own = Math.max(own, t - prevT - RESOLUTION_MS - (w - prevW) / 1e6);
      prevW = w;
    }
    prevT = t;
    prevC = c;
    timer = setTimeout(tick, RESOLUTION_MS);
  };
  h.enable();
  try {
    // The histogram's timer drops its first sample: let it run before the work starts.
    await new Promise((r) => setTimeout(r, 20));
    prevT = performance.now();
    prevW = waits?.read() ?? 0;
    prevC = threadCpuNs();
    own = 0;
    cpu = 0;
    timer = setTimeout(tick, RESOLUTION_MS);
    const t0 = performance.now();
    await run();
    const ms = performance.now() - t0;
    // One more turn, so that a stall at the very end is sampled too.
    await new Promise((r) => setTimeout(r, 5));
    return { stallMs: Math.max(0, h.max / 1e6 - RESOLUTION_MS), cpuMs: cpu, p99Ms: Math.max(0, h.percentile(99) / 1e6 - RESOLUTION_MS), ownMs: waits ? Math.max(0, own) : undefined, ms };
  } finally {
    h.disable();
    if (timer) clearTimeout(timer);
    waits?.close();
  }
}
