/**
 * Cross-process locks on the state directory: flock(2) on small lock files, polled with LOCK_NB
 * so a wait has a deadline and never blocks the event loop in the async form. The kernel drops
 * a dead process's flocks, so a lock is never left held by a crash: whoever takes it next knows
 * that any half-done work it finds belongs to an operation that no longer runs. A lock is taken
 * exclusive, or shared (LOCK_SH: shared holders exclude only an exclusive one), so that
 * operations that may run side by side each say "I am running" while one that must see no
 * operation half-way still waits for them all.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { accessSync, closeSync, constants as fsc, fstatSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { Socket } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { TsnetlinkError } from '../errors.js';
import { flock, killPid, LOCK_EX, LOCK_NB, LOCK_SH, LOCK_UN, spawnPiped, waitpidNoHang } from './libc.js';
import { ensureDir, errCode, FILE_MODE, removeFile, StoreError } from './fsio.js';

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
  /** Take the lock shared (LOCK_SH): other shared holders are let in, an exclusive one is not. */
  shared?: boolean;
  /**
   * Remove the lock file before releasing it, for a lock that names something which may be gone
   * afterwards (an endpoint): the file then exists only while someone holds it. A waiter that
   * opened it before the removal sees its inode gone once it gets the lock, and retries on the
   * path as it is now, so removing it while held is safe.
   */
  removeOnRelease?: boolean;
}

/** One level of lock ownership, chained through async context so nested calls re-enter. */
interface Hold {
  readonly key: string;
  readonly shared: boolean;
  active: boolean;
  readonly parent: Hold | undefined;
}
const holdContext = new AsyncLocalStorage<Hold>();
/**
 * Locks this thread holds right now (how many holds of each: async tasks of one process may each
 * hold a shared lock), to fail fast instead of waiting on ourselves.
 */
const heldByThisThread = new Map<string, number>();
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

/** How this call chain holds `key`: 'exclusive', 'shared' or undefined. */
function heldInThisContext(key: string): 'exclusive' | 'shared' | undefined {
  let mode: 'exclusive' | 'shared' | undefined;
  for (let h = holdContext.getStore(); h; h = h.parent) {
    if (!h.active || h.key !== key) continue;
    if (!h.shared) return 'exclusive';
    mode = 'shared';
  }
  return mode;
}

/**
 * Whether this call chain already holds `key` well enough for the request (it re-enters then).
 * Upgrading a shared hold to exclusive is refused: it would wait for every other shared holder,
 * which may be waiting for something this chain holds, and flock's conversion is not atomic.
 */
function reenters(key: string, shared: boolean): boolean {
  const mode = heldInThisContext(key);
  if (mode === undefined) return false;
  if (mode === 'shared' && !shared) throw new StoreError('EDEADLK', key, 'held shared by this call chain; it cannot be taken exclusive inside that hold');
  return true;
}

/** Whether this call chain holds the lock at `lockPath` (shared or exclusive). */
export function lockHeld(lockPath: string): boolean {
  return heldInThisContext(resolve(lockPath)) !== undefined;
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

/**
 * Takes the lock on `fd` without waiting (its description may hold it already: a flock child
 * took it for us). Resolves to 'held' (the pid written), 'busy' (someone else holds it; `fd`
 * stays open) or 'stale' (we got it, but the path names another file by now; `fd` is closed).
 */
function lockOpened(key: string, fd: number, shared: boolean): 'held' | 'busy' | 'stale' {
  let locked = false;
  try {
    locked = flock(fd, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB);
    if (!locked) return 'busy';
    // The file may have been unlinked (network removed) while we waited; a lock on a
    // dead inode excludes nobody, so retry on whatever the path names now.
    let current: number | undefined;
    try {
      current = statSync(key).ino;
    } catch (e) {
      if (errCode(e) !== 'ENOENT') throw e;
    }
    if (current === fstatSync(fd).ino) {
      // Padded so one pwrite replaces the previous holder's pid without an ftruncate. A shared
      // holder writes it too: a timed-out waiter then names one of the holders.
      writeSync(fd, `${process.pid}`.padEnd(11) + '\n', 0);
      return 'held';
    }
  } catch (e) {
    if (locked) flock(fd, LOCK_UN);
    closeSync(fd);
    throw e;
  }
  flock(fd, LOCK_UN);
  closeSync(fd);
  return 'stale';
}

/** Tries once: the fd on success, undefined when someone else holds it. */
function tryAcquire(key: string, shared = false): number | undefined {
  for (;;) {
    const fd = openLockFile(key);
    const r = lockOpened(key, fd, shared);
    if (r === 'held') return fd;
    if (r === 'busy') {
      closeSync(fd);
      return undefined;
    }
  }
}

/**
 * How long an async wait polls before it waits in a flock(1) child instead: a lock that frees up
 * within this is taken at once, and a longer wait costs no wake-ups (each timer wake-up of a
 * Node process costs ~0.1-0.2 ms of CPU here, so 40 processes polling a busy lock every few
 * milliseconds took a CPU of their own away from the one holding it).
 */
const POLL_BEFORE_BLOCKING_MS = 30;

let flockPath: string | null | undefined;
/** util-linux's flock(1), or null when it is not installed (then waits poll throughout). */
function flockBinary(): string | null {
  if (flockPath === undefined) {
    flockPath = null;
    for (const dir of (process.env['PATH'] || '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
      const candidate = join(dir || '.', 'flock');
      try {
        accessSync(candidate, fsc.X_OK);
        flockPath = candidate;
        break;
      } catch {
        /* not in this directory */
      }
    }
  }
  return flockPath;
}

/**
 * Runs `flock -x|-s -w SECONDS FD` on `fd` (passed on under its own number) and resolves to its
 * exit code (null when killed). Started with posix_spawn, as the iptables tools are: a fork of the
 * Node process costs more than the wait it saves when the lock frees up soon. The child's stdout
 * closing says it has ended; then it is reaped.
 */
async function flockChild(bin: string, fd: number, shared: boolean, remainingMs: number): Promise<number | null> {
  const child = spawnPiped(bin, [bin, shared ? '-s' : '-x', '-w', (remainingMs / 1000).toFixed(3), String(fd)], [], [fd]);
  closeSync(child.stdin);
  closeSync(child.stderr);
  // A child that outlives its -w (it should not) is killed: the caller's check decides then.
  const timer = setTimeout(() => killPid(child.pid, 9), Math.ceil(remainingMs) + 1000);
  try {
    await new Promise<void>((done) => {
      const out = new Socket({ fd: child.stdout, readable: true, writable: false });
      out.on('error', () => out.destroy());
      out.on('close', () => done());
      out.resume();
    });
    let status = waitpidNoHang(child.pid);
    for (let spins = 0; status === undefined; spins++) {
      await new Promise((r) => (spins < 100 ? setImmediate(r) : setTimeout(r, 1)));
      status = waitpidNoHang(child.pid);
    }
    return (status & 0x7f) === 0 ? (status >> 8) & 0xff : null;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Waits for the lock without polling: a flock(1) child blocks in the kernel on a duplicate of our
 * open file description, so the lock it takes is ours when it exits (the kernel keeps a flock with
 * the description, not the process). The child inherits no other fd (Node and this library open
 * every fd close-on-exec), so a lock this process holds is never kept by it. If we are killed
 * meanwhile, the child takes the lock when it frees up and exits, which lets it go again.
 * Resolves to the fd holding the lock, 'timeout', or undefined when no child could be used (the
 * caller polls instead).
 */
async function waitInChild(key: string, shared: boolean, deadline: number): Promise<number | 'timeout' | undefined> {
  const bin = flockBinary();
  if (bin === null) return undefined;
  for (;;) {
    const remaining = deadline - performance.now();
    if (remaining <= 0) return 'timeout';
    const fd = openLockFile(key);
    let code: number | null;
    try {
      code = await flockChild(bin, fd, shared, remaining);
    } catch {
      closeSync(fd);
      return undefined;
    }
    // Whatever the child said, the kernel says whether our description holds the lock now (a
    // child killed right after it took the lock leaves it ours).
    const r = lockOpened(key, fd, shared);
    if (r === 'held') return fd;
    if (r === 'stale') continue;
    closeSync(fd);
    if (code !== 0 && code !== 1) return undefined;
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

function runHeld<T>(key: string, fd: number, fn: () => T, opts: LockOptions): T {
  const hold: Hold = { key, shared: opts.shared === true, active: true, parent: holdContext.getStore() };
  heldByThisThread.set(key, (heldByThisThread.get(key) ?? 0) + 1);
  heldFds.add(fd);
  const done = (): void => {
    hold.active = false;
    const n = (heldByThisThread.get(key) ?? 1) - 1;
    if (n > 0) heldByThisThread.set(key, n);
    else heldByThisThread.delete(key);
    heldFds.delete(fd);
    try {
      // Only an exclusive holder removes the file: a shared one would pull it from under the others.
      if (opts.removeOnRelease && !opts.shared) removeFile(key);
    } finally {
      release(fd);
    }
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
 * Runs `fn` holding a flock on `lockPath` (exclusive unless `shared`), waiting at most `timeoutMs`.
 * Re-entrant within one call chain: an exclusive hold covers any nested request, a shared hold a
 * nested shared one (a nested exclusive request is EDEADLK).
 */
export function withLockSync<T>(lockPath: string, fn: () => T, opts: LockOptions = {}): T {
  const key = resolve(lockPath);
  if (reenters(key, opts.shared === true)) return fn();
  if (heldByThisThread.has(key)) {
    // Another async task of this thread holds it; blocking the thread would keep it from ever releasing.
    throw new StoreError('EDEADLK', key, 'lock is held by another async task of this process; use withLock()');
  }
  const timeoutMs = opts.timeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
  const deadline = performance.now() + timeoutMs;
  let delay = 0.5;
  for (;;) {
    const fd = tryAcquire(key, opts.shared);
    if (fd !== undefined) return runHeld(key, fd, fn, opts);
    const remaining = deadline - performance.now();
    if (remaining <= 0) throw new LockTimeoutError(key, timeoutMs, holderPid(key));
    delay = nextDelay(delay, remaining);
    sleepSync(delay);
  }
}

/** Async variant of withLockSync: waits without blocking the event loop and holds the lock until `fn` settles. */
export async function withLock<T>(lockPath: string, fn: () => T | Promise<T>, opts: LockOptions = {}): Promise<T> {
  const key = resolve(lockPath);
  if (reenters(key, opts.shared === true)) return await fn();
  const timeoutMs = opts.timeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
  const started = performance.now();
  const deadline = started + timeoutMs;
  let delay = 0.5;
  let blocking = true;
  for (;;) {
    const fd = tryAcquire(key, opts.shared);
    if (fd !== undefined) return await runHeld(key, fd, async () => await fn(), opts);
    const remaining = deadline - performance.now();
    if (remaining <= 0) throw new LockTimeoutError(key, timeoutMs, holderPid(key));
    if (blocking && performance.now() - started >= POLL_BEFORE_BLOCKING_MS) {
      const got = await waitInChild(key, opts.shared === true, deadline);
      if (got === 'timeout') throw new LockTimeoutError(key, timeoutMs, holderPid(key));
      if (got !== undefined) return await runHeld(key, got, async () => await fn(), opts);
      blocking = false;
    }
    delay = nextDelay(delay, remaining);
    await new Promise((r) => setTimeout(r, delay));
  }
}

