/**
 * Whether the short kernel requests of a connect may go synchronously. Most rtnetlink requests
 * take the kernel's RTNL lock, and a link deletion holds it through its RCU wait (the deletion of
 * a veth, or the kernel's cleanup of a deleted netns): a synchronous request then waits for the
 * lock on the event loop, however fast it is alone (8 ms seen among 100 disconnects at once).
 * Through the promise API it waits on a worker thread instead, but every request pays a round
 * trip there (a connect's three cost ~0.5 ms on a 2-CPU VM, half its time). So a connect goes
 * synchronously unless a deletion of this process is in flight, or one of its own synchronous
 * requests was slow a moment ago (another process or the kernel holds the lock).
 */

/** Requests of this process in flight that hold the RTNL lock through an RCU wait. */
let holders = 0;
/** Until when (performance.now()) a slow synchronous request says someone else holds the lock. */
let contendedUntil = 0;

/**
 * A synchronous request slower than this (ms) waited for the lock. A veth's creation alone takes
 * 0.8 ms at the median and up to 5 ms on a loaded 2-CPU VM, so the bar is well above that: a
 * false alarm costs each connect meanwhile its round trips.
 */
const SLOW_MS = 10;
/** How long (ms) the promise API is used after a slow synchronous request. */
const CONTENDED_FOR_MS = 2000;

/** True while the RTNL lock is likely held for long: send the next requests through the promise API. */
export function rtnlBusy(): boolean {
  return holders > 0 || performance.now() < contendedUntil;
}

/** Runs an asynchronous request that holds the RTNL lock through an RCU wait (a link deletion, a link set down), counted while it runs. */
export async function holdingRtnl<T>(fn: () => Promise<T>): Promise<T> {
  holders++;
  try {
    return await fn();
  } finally {
    holders--;
  }
}

/** Runs a synchronous request; when it took long, the lock was held: the next ones go through the promise API for a while. */
export function timedRtnl<T>(fn: () => T): T {
  const t0 = performance.now();
  try {
    return fn();
  } finally {
    if (performance.now() - t0 > SLOW_MS) contendedUntil = performance.now() + CONTENDED_FOR_MS;
  }
}

/** Forgets a slow request seen (for tests, which share one process). */
export function forgetContention(): void {
  contendedUntil = 0;
}
