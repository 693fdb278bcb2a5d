/**
 * Cooperative turns for many operations in flight. Each bridge operation does a little
 * synchronous work between its awaits (a lock file, a record read or written, a netlink batch),
 * well under a millisecond; but when a hundred run at once, their continuations follow one
 * another as microtasks and the event loop gets no turn until all of them reach real I/O (a
 * hundred disconnects started together kept it for 70-100 ms). An operation that checks
 * `turnDue()` at its step boundaries, and awaits `yieldTurn()` when it says so, gives the event loop a turn once the JS thread has run
 * for `budgetMs` since its current turn began, so timers and sockets are served in between.
 */

/**
 * How long (ms) operations may keep the JS thread in one turn. A check comes only at a step
 * boundary, and the turn's clock starts at its first check, so a turn runs to about twice this:
 * at 1 ms, under the 2 ms an event-loop stall may cost a server answering meanwhile.
 */
export const TURN_BUDGET_MS = 1;

/** When the current turn's first turnDue() ran; -1 until then. A setImmediate ends the turn. */
let turnStart = -1;

function endTurn(): void {
  turnStart = -1;
}

/** True once the current turn has run `budgetMs`; the first call of a turn starts its clock. */
export function turnDue(budgetMs = TURN_BUDGET_MS): boolean {
  const now = performance.now();
  if (turnStart < 0) {
    turnStart = now;
    // The check phase that runs this ends the turn: continuations that yielded behind it start a new one.
    setImmediate(endTurn);
  }
  return now - turnStart >= budgetMs;
}

/**
 * A later turn of the event loop, after its timers and I/O callbacks have run. One setImmediate
 * is not enough: made from an I/O callback (where a kernel reply resumes an operation) it runs
 * in the same iteration's check phase, straight after the poll and before any timer, so nothing
 * else would be served. An immediate queued from the check phase waits for the next iteration,
 * which first runs the timers that are due and polls for I/O; hence two.
 */
export function nextTurn(): Promise<void> {
  return new Promise<void>((resolve) => setImmediate(() => setImmediate(resolve)));
}

/**
 * Waits for a later turn while the current one has run `budgetMs`, checking again on resuming,
 * since many continuations resume in one turn. Call it as `if (turnDue()) await yieldTurn()`:
 * the check is synchronous, so a young turn goes on without even a microtask's delay (an
 * `await` that resolves at once would run the rest later in the same turn, after every other
 * continuation queued meanwhile, which is what batches a hundred operations together).
 */
export async function yieldTurn(budgetMs = TURN_BUDGET_MS): Promise<void> {
  do await nextTurn();
  while (turnDue(budgetMs));
}
