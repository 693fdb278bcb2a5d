/**
 * When a connect's kernel requests leave the JS thread (src/bridge/rtnl-lock.ts): while a request
 * that holds the RTNL lock through an RCU wait is in flight, and for a while after a synchronous
 * request was slow; otherwise they go synchronously.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { forgetContention, holdingRtnl, rtnlBusy, timedRtnl } from '../../src/bridge/rtnl-lock.js';

test('busy while a lock-holding request is in flight, and after a slow synchronous one', async () => {
  assert.is(rtnlBusy(), false);
  let release!: () => void;
  const held = holdingRtnl(() => new Promise<void>((r) => (release = r)));
  assert.is(rtnlBusy(), true);
  release();
  await held;
  assert.is(rtnlBusy(), false);
  // A failed request is counted out too.
  await holdingRtnl(() => Promise.reject(new Error('x'))).catch(() => undefined);
  assert.is(rtnlBusy(), false);
  // A fast synchronous request says nothing; a slow one (it waited for the lock) does.
  assert.is(timedRtnl(() => 7), 7);
  assert.is(rtnlBusy(), false);
  timedRtnl(() => {
    const end = performance.now() + 12;
    while (performance.now() < end);
  });
  assert.is(rtnlBusy(), true);
  forgetContention();
  assert.is(rtnlBusy(), false);
});

test.run();
