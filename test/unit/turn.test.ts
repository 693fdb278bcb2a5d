/**
 * Cooperative turns (src/sys/turn.ts): a hundred operations in flight that check turnDue() at
 * their step boundaries let the event loop run between a budget's worth of their steps, instead
 * of running every step of every operation back to back; and a lone operation never waits.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { stat } from 'node:fs';
import { nextTurn, turnDue, yieldTurn } from '../../src/sys/turn.js';

/** Keeps the JS thread busy for `ms`, as a step's synchronous work does. */
function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

/** An operation of `steps` synchronous steps of `ms` each, checking for its turn before each. */
async function operation(steps: number, ms: number, log: string[]): Promise<void> {
  for (let i = 0; i < steps; i++) {
    if (turnDue(2)) await yieldTurn(2);
    busy(ms);
    log.push('step');
  }
}

test('a hundred operations in flight give the event loop a turn every budget, and all finish', async () => {
  await nextTurn();
  const log: string[] = [];
  // A timer due at once stands for a request waiting to be answered: it marks each turn it gets.
  let ticking = true;
  const tick = (): void => {
    log.push('tick');
    if (ticking) setTimeout(tick, 0);
  };
  setTimeout(tick, 0);
  await Promise.all(Array.from({ length: 100 }, () => operation(3, 0.2, log)));
  ticking = false;
  assert.is(log.filter((x) => x === 'step').length, 300);
  // The longest run of steps between two of the timer's turns: about budget / step (10), plus
  // the one step each continuation resumed together may take; never all 300 of them.
  let run = 0;
  let longest = 0;
  for (const x of log) {
    run = x === 'step' ? run + 1 : 0;
    longest = Math.max(longest, run);
  }
  assert.ok(longest <= 40, `${longest} steps ran without the event loop getting a turn`);
  assert.ok(log.filter((x) => x === 'tick').length >= 5, 'the timer ran between the steps');
});

test('without an operation to take turns with, no step waits for another turn', async () => {
  await nextTurn();
  let turns = 0;
  const t = setInterval(() => turns++, 0);
  const log: string[] = [];
  // Ten quick steps, well under the budget: they all run in the turn they started in.
  await operation(10, 0.01, log);
  clearInterval(t);
  assert.is(log.length, 10);
  assert.is(turns, 0);
});

test('yieldTurn waits at least one turn, and again while the new turn is already spent', async () => {
  await nextTurn();
  let immediates = 0;
  setImmediate(() => immediates++);
  await yieldTurn(2);
  assert.ok(immediates >= 1);
  assert.is(turnDue(2), false);
});


test('nextTurn, awaited in an I/O callback, lets the timers that are due run before it resumes', async () => {
  // A kernel reply resumes an operation in an I/O callback (libuv's poll phase); one setImmediate
  // from there runs in the same iteration's check phase, before any timer.
  const order: string[] = [];
  await new Promise<void>((resolve, reject) => {
    stat('.', () => {
      setTimeout(() => order.push('timer'), 0);
      busy(2);
      nextTurn().then(() => {
        order.push('resumed');
        resolve();
      }, reject);
    });
  });
  assert.equal(order, ['timer', 'resumed']);
});

test.run();
