/**
 * The locks as the engine uses them: many operations at once inside one process. flock locks
 * belong to open file descriptions, so two fds of one process exclude each other just as two
 * processes do; waits are polls on timers, so the event loop keeps running (other calls, the
 * drift watcher) while a lock is held elsewhere; and the sync-held locks (host ports, IPAM),
 * taken only in synchronous sections, never meet an async holder of this process.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withLock, withLockSync } from '../../src/sys/locks.js';
import { flock, LOCK_EX, LOCK_NB, LOCK_UN } from '../../src/sys/libc.js';

const dir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'tsnetlink-locks-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('two fds of one process exclude each other (flock is per open file description)', () => {
  const p = join(dir, 'ofd.lock');
  const a = openSync(p, 'a+');
  const b = openSync(p, 'a+');
  try {
    assert.ok(flock(a, LOCK_EX | LOCK_NB));
    assert.not.ok(flock(b, LOCK_EX | LOCK_NB), 'the second fd of this process is refused while the first holds it');
    flock(a, LOCK_UN);
    assert.ok(flock(b, LOCK_EX | LOCK_NB));
  } finally {
    closeSync(a);
    closeSync(b);
  }
});

test('50 operations of one process on one lock: one at a time, all done, and the event loop runs while they wait', async () => {
  const p = join(dir, 'net.lock');
  let inside = 0;
  let most = 0;
  let done = 0;
  let ticks = 0;
  const timer = setInterval(() => ticks++, 2);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: 50 }, () =>
      withLock(p, async () => {
        inside++;
        most = Math.max(most, inside);
        await sleep(1);
        inside--;
        done++;
      }),
    ),
  );
  clearInterval(timer);
  const ms = performance.now() - t0;
  assert.is(most, 1, 'never two holders at once');
  assert.is(done, 50);
  // Waiting is timers, not a blocked thread: the interval kept firing throughout.
  assert.ok(ticks >= Math.floor(ms / 2 / 4), `${ticks} ticks in ${ms.toFixed(0)} ms`);
});

test('sync-held locks taken inside concurrent async holders of other locks never deadlock (the host-ports pattern)', async () => {
  const ports = join(dir, 'ports.lock');
  let reservations = 0;
  await Promise.all(
    Array.from({ length: 30 }, (_, i) =>
      withLock(join(dir, `n${i % 3}.lock`), async () => {
        withLockSync(ports, () => reservations++);
        await sleep(1);
        withLockSync(ports, () => reservations++);
      }),
    ),
  );
  assert.is(reservations, 60);
});

test('a sync wait on a lock another async task of this process holds is refused (EDEADLK), never a hang: such reads take the lock asynchronously (CNI CHECK and STATUS do)', async () => {
  const p = join(dir, 'ipam.lock');
  let release!: () => void;
  const held = withLock(p, () => new Promise<void>((r) => (release = r)));
  await sleep(5);
  let code: string | undefined;
  try {
    withLockSync(p, () => undefined);
  } catch (e) {
    code = (e as { code?: string }).code;
  }
  assert.is(code, 'EDEADLK');
  // The asynchronous form waits for the holder instead, and inside it the sync form re-enters.
  const reader = withLock(p, () => withLockSync(p, () => 'read'));
  release();
  await held;
  assert.is(await reader, 'read');
});

test('a lock another process holds is waited for without blocking the event loop, then taken', async () => {
  const p = join(dir, 'other.lock');
  // The other process takes the lock with flock(1)'s semantics: an fd of its own, held 300 ms.
  const child = spawn(process.execPath, ['-e', `
    const { openSync } = require('node:fs');
    import(${JSON.stringify(new URL('../../src/sys/libc.js', import.meta.url).href)}).then(({ flock, LOCK_EX }) => {
      const fd = openSync(${JSON.stringify(p)}, 'a+');
      flock(fd, LOCK_EX);
      process.stdout.write('held\\n');
      setTimeout(() => process.exit(0), 300);
    });`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((r) => child.stdout!.once('data', () => r()));
  let ticks = 0;
  const timer = setInterval(() => ticks++, 5);
  const t0 = performance.now();
  await withLock(p, () => undefined);
  clearInterval(timer);
  const waited = performance.now() - t0;
  assert.ok(waited > 100, `waited ${waited.toFixed(0)} ms for the other process`);
  assert.ok(ticks >= 10, `${ticks} timer ticks while waiting`);
});

test.run();
