/**
 * Cross-process locks on the state directory: flock(2) on small lock files, polled with LOCK_NB
 * so a wait has a deadline and never blocks the event loop in the async form. The kernel drops
 * a dead process's flocks, so a lock is never left held by a crash: whoever takes it next knows
 * that any half-done work it finds belongs to an operation that no longer runs.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { closeSync, constants as fsc, fstatSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { TsnetlinkError } from '../errors.js';
import { flock, LOCK_EX, LOCK_NB, LOCK_UN } from './libc.js';
import { ensureDir, errCode, FILE_MODE, StoreError } from './fsio.js';

/**
 * How long a lock wait may last before it fails instead of hanging: long enough that a runtime
 * starting dozens of operations at once on a loaded machine queues instead of failing, short
 * enough that a wedged holder is reported. $TSNETLINK_LOCK_TIMEOUT_MS overrides it.
 */
export const DEFAULT_LOCK_TIMEOUT_MS = Number(process.env['TSNETLINK_LOCK_TIMEOUT_MS']) > 0 ? Number(process.env['TSNETLINK_LOCK_TIMEOUT_MS']) : 60_000;

/** A lock stayed held by someone else past the deadline. */
export class LockTimeoutError extends TsnetlinkError {
  override name = 'LockTimeoutError';
  override readonly code = 'ELOCKTIMEOUT';
  readonly path: string;
  readonly timeoutMs: number;
  /** The pid the holder wrote into the lock file, if readable. */
  readonly holderPid: number | undefined;
  constructor(path: string, timeoutMs: number, holderPid: number | undefined) {
    super('ELOCKTIMEOUT', `lock ${path}: still held${holderPid ? ` by pid ${holderPid}` : ''} after ${timeoutMs} ms`);
    this.path = path;
    this.timeoutMs = timeoutMs;
    this.holderPid = holderPid;
  }
}

/** Options of a lock wait. */
export interface LockOptions {
  /** Give up after this many milliseconds (default 10 s). */
  timeoutMs?: number;
}

/** One level of lock ownership, chained through async context so nested calls re-enter. */
interface Hold {
  readonly key: string;
  active: boolean;
  readonly parent: Hold | undefined;
}
const holdContext = new AsyncLocalStorage<Hold>();
/** Locks this thread holds right now, to fail fast instead of waiting on ourselves. */
const heldByThisThread = new Set<string>();
/** The fds of the locks held right now. */
const heldFds = new Set<number>();

/**
 * The fds of every lock this process holds right now. A tool started while they are held
 * inherits them (spawnPiped's `inherit`), so that if this process is killed, the locks stay held
 * until the tool has finished too: nobody else can take a lock and find half-done work while a
 * straggling iptables-restore of ours is still changing the ruleset.
 */
export function heldLockFds(): number[] {
  return [...heldFds];
}

function heldInThisContext(key: string): boolean {
  for (let h = holdContext.getStore(); h; h = h.parent) if (h.active && h.key === key) return true;
  return false;
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
function sleepSync(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, ms);
}

/**
 * Backoff between LOCK_NB polls: starts at 1 ms so a short critical section costs little, and
 * stays below 8 ms so a waiter is never far behind when the lock frees up.
 */
function nextDelay(prev: number, remaining: number): number {
  const d = Math.min(prev * 2, 8) * (0.5 + Math.random() / 2);
  return Math.max(1, Math.min(d, remaining));
}

function openLockFile(key: string): number {
  try {
    return openSync(key, fsc.O_RDWR | fsc.O_CREAT | fsc.O_NOFOLLOW, FILE_MODE);
  } catch (e) {
    if (errCode(e) !== 'ENOENT') throw e;
    ensureDir(dirname(key));
    return openSync(key, fsc.O_RDWR | fsc.O_CREAT | fsc.O_NOFOLLOW, FILE_MODE);
  }
}

/** Tries once: the fd on success, undefined when someone else holds it. */
function tryAcquire(key: string): number | undefined {
  for (;;) {
    const fd = openLockFile(key);
    let locked = false;
    try {
      locked = flock(fd, LOCK_EX | LOCK_NB);
      if (!locked) {
        closeSync(fd);
        return undefined;
      }
      // The file may have been unlinked (network removed) while we waited; a lock on a
      // dead inode excludes nobody, so retry on whatever the path names now.
      let current: number | undefined;
      try {
        current = statSync(key).ino;
      } catch (e) {
        if (errCode(e) !== 'ENOENT') throw e;
      }
      if (current === fstatSync(fd).ino) {
        // Padded so one pwrite replaces the previous holder's pid without an ftruncate.
        writeSync(fd, `${process.pid}`.padEnd(11) + '\n', 0);
        return fd;
      }
    } catch (e) {
      if (locked) flock(fd, LOCK_UN);
      closeSync(fd);
      throw e;
    }
    flock(fd, LOCK_UN);
    closeSync(fd);
  }
}

function release(fd: number): void {
  try {
    flock(fd, LOCK_UN);
  } finally {
    closeSync(fd);
  }
}

function holderPid(key: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(key, 'utf8'), 10);
    return Number.isFinite(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function runHeld<T>(key: string, fd: number, fn: () => T): T {
  const hold: Hold = { key, active: true, parent: holdContext.getStore() };
  heldByThisThread.add(key);
  heldFds.add(fd);
  const done = (): void => {
    hold.active = false;
    heldByThisThread.delete(key);
    heldFds.delete(fd);
    release(fd);
  };
  let result: T;
  try {
    result = holdContext.run(hold, fn);
  } catch (e) {
    done();
    throw e;
  }
  if (result instanceof Promise) {
    return result.finally(done) as T;
  }
  done();
  return result;
}

/**
 * Runs `fn` holding an exclusive flock on `lockPath`, waiting at most `timeoutMs`.
 * Re-entrant within one call chain, so a caller may hold a network lock around IPAM calls.
 */
export function withLockSync<T>(lockPath: string, fn: () => T, opts: LockOptions = {}): T {
  const key = resolve(lockPath);
  if (heldInThisContext(key)) return fn();
  if (heldByThisThread.has(key)) {
    // Another async task of this thread holds it; blocking the thread would keep it from ever releasing.
    throw new StoreError('EDEADLK', key, 'lock is held by another async task of this process; use withLock()');
  }
  const timeoutMs = opts.timeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
  const deadline = performance.now() + timeoutMs;
  let delay = 0.5;
  for (;;) {
    const fd = tryAcquire(key);
    if (fd !== undefined) return runHeld(key, fd, fn);
    const remaining = deadline - performance.now();
    if (remaining <= 0) throw new LockTimeoutError(key, timeoutMs, holderPid(key));
    delay = nextDelay(delay, remaining);
    sleepSync(delay);
  }
}

/** Async variant of withLockSync: waits without blocking the event loop and holds the lock until `fn` settles. */
export async function withLock<T>(lockPath: string, fn: () => T | Promise<T>, opts: LockOptions = {}): Promise<T> {
  const key = resolve(lockPath);
  if (heldInThisContext(key)) return await fn();
  const timeoutMs = opts.timeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
  const deadline = performance.now() + timeoutMs;
  let delay = 0.5;
  for (;;) {
    const fd = tryAcquire(key);
    if (fd !== undefined) return await runHeld(key, fd, async () => await fn());
    const remaining = deadline - performance.now();
    if (remaining <= 0) throw new LockTimeoutError(key, timeoutMs, holderPid(key));
    delay = nextDelay(delay, remaining);
    await new Promise((r) => setTimeout(r, delay));
  }
}

