/**
 * Runtime state of bridge networks on disk, one small file per object.
 *
 * The default root is on tmpfs (/run) on purpose: allocations must not outlive a reboot
 * (field notes, pitfall 21). One file per endpoint keeps connect O(1) at thousands of
 * endpoints, and every read-modify-write runs under an flock so concurrent processes
 * never interleave (pitfall 15).
 *
 * ROOT/lock                                  global lock (network create/rm)
 * ROOT/networks/<name>.json                  network record
 * ROOT/networks/<name>/lock                  per-network lock
 * ROOT/networks/<name>/last                  IPAM cursor
 * ROOT/networks/<name>/ips/<ip>              IP reservation, content = endpoint id
 * ROOT/networks/<name>/byid/<id>             IPAM index, content = ip
 * ROOT/networks/<name>/endpoints/<id>.json   endpoint record
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import {
  closeSync,
  constants as fsc,
  existsSync,
  fstatSync,
  fsyncSync,
  lstatSync,
  chmodSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { threadId } from 'node:worker_threads';
import { ValidationError } from '../errors.js';
import { flock, LOCK_EX, LOCK_NB, LOCK_UN } from '../netlink/libc.js';

/** Where state lives unless a caller says otherwise. */
export const DEFAULT_STORE_ROOT = '/run/tsnetlink';
/** How long a lock wait may last before it fails instead of hanging. */
export const DEFAULT_LOCK_TIMEOUT_MS = 10_000;

const DIR_MODE = 0o700;
const FILE_MODE = 0o600;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** A lock stayed held by someone else past the deadline. */
export class LockTimeoutError extends Error {
  override name = 'LockTimeoutError';
  readonly code = 'ELOCKTIMEOUT';
  readonly path: string;
  readonly timeoutMs: number;
  /** The pid the holder wrote into the lock file, if readable. */
  readonly holderPid: number | undefined;
  constructor(path: string, timeoutMs: number, holderPid: number | undefined) {
    super(`lock ${path}: still held${holderPid ? ` by pid ${holderPid}` : ''} after ${timeoutMs} ms`);
    this.path = path;
    this.timeoutMs = timeoutMs;
    this.holderPid = holderPid;
  }
}

/** State on disk is unreadable (ECORRUPT) or a lock request cannot succeed (EDEADLK). */
export class StoreError extends Error {
  override name = 'StoreError';
  readonly code: 'ECORRUPT' | 'EDEADLK' | 'ENOTDIR';
  readonly path: string;
  constructor(code: 'ECORRUPT' | 'EDEADLK' | 'ENOTDIR', path: string, message: string, options?: { cause?: unknown }) {
    super(`${path}: ${message}`, options);
    this.code = code;
    this.path = path;
  }
}

/** Options of a lock wait. */
export interface LockOptions {
  /** Give up after this many milliseconds (default 10 s). */
  timeoutMs?: number;
}

function errCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : undefined;
}

/** Refuses names that could escape their directory or be mistaken for temp files. */
export function assertSafeName(field: string, value: string): void {
  if (!NAME_RE.test(value)) {
    throw new ValidationError(field, `'${value}' must be 1-128 characters of [A-Za-z0-9_.-], starting with a letter or digit`);
  }
}

/** mkdir -p with mode 0700 for every directory it creates. */
export function ensureDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: DIR_MODE });
}

// ---------------------------------------------------------------------------------------
// Locks

/** One level of lock ownership, chained through async context so nested calls re-enter. */
interface Hold {
  readonly key: string;
  active: boolean;
  readonly parent: Hold | undefined;
}
const holdContext = new AsyncLocalStorage<Hold>();
/** Locks this thread holds right now, to fail fast instead of waiting on ourselves. */
const heldByThisThread = new Set<string>();

function heldInThisContext(key: string): boolean {
  for (let h = holdContext.getStore(); h; h = h.parent) if (h.active && h.key === key) return true;
  return false;
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
function sleepSync(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, ms);
}

/** Backoff between LOCK_NB polls: starts at 1 ms so a short critical section costs little. */
function nextDelay(prev: number, remaining: number): number {
  const d = Math.min(prev * 2, 25) * (0.5 + Math.random() / 2);
  return Math.max(1, Math.min(d, remaining));
}

function openLockFile(key: string): number {
  try {
    return openSync(key, fsc.O_RDWR | fsc.O_CREAT, FILE_MODE);
  } catch (e) {
    if (errCode(e) !== 'ENOENT') throw e;
    ensureDir(dirname(key));
    return openSync(key, fsc.O_RDWR | fsc.O_CREAT, FILE_MODE);
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
  const done = (): void => {
    hold.active = false;
    heldByThisThread.delete(key);
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

// ---------------------------------------------------------------------------------------
// Files

let tmpSeq = 0;

function writeAll(fd: number, buf: Buffer): void {
  for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off, buf.length - off);
}

/** Options of an atomic write. */
export interface WriteOptions {
  /** fsync before rename (default true); free on tmpfs, durable elsewhere. */
  fsync?: boolean;
}

/**
 * Replaces `file` atomically: a temp file in the same directory, write, fsync, rename.
 * Readers see the old or the new content, never a torn one. Creates the directory if missing.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array, opts: WriteOptions = {}): void {
  const dir = dirname(file);
  const tmp = join(dir, `.${basename(file)}.${process.pid}.${threadId}.${(tmpSeq++).toString(36)}.tmp`);
  let fd: number;
  try {
    fd = openSync(tmp, 'wx', FILE_MODE);
  } catch (e) {
    if (errCode(e) !== 'ENOENT') throw e;
    ensureDir(dir);
    fd = openSync(tmp, 'wx', FILE_MODE);
  }
  try {
    writeAll(fd, typeof data === 'string' ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    if (opts.fsync !== false) fsyncSync(fd);
    closeSync(fd);
  } catch (e) {
    closeSync(fd);
    removeFile(tmp);
    throw e;
  }
  try {
    renameSync(tmp, file);
  } catch (e) {
    removeFile(tmp);
    throw e;
  }
}

/** Atomically writes `value` as JSON (see writeFileAtomic). */
export function writeJsonAtomic(file: string, value: unknown, opts: WriteOptions = {}): void {
  writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`, opts);
}

/** Reads a small text file; undefined when it does not exist. */
export function readText(file: string): string | undefined {
  // A miss is common (new endpoint ids); access(2) is far cheaper than a thrown ENOENT.
  if (!existsSync(file)) return undefined;
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    if (errCode(e) === 'ENOENT') return undefined;
    throw e;
  }
}

/** Reads a JSON file; undefined when missing, StoreError ECORRUPT when unparsable. The shape is not checked. */
export function readJson<T>(file: string): T | undefined {
  const text = readText(file);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new StoreError('ECORRUPT', file, 'not valid JSON', { cause: e });
  }
}

/**
 * Creates `file` with O_CREAT|O_EXCL and writes `data`; false when it already exists.
 * The exclusive create is what makes a reservation safe across processes.
 */
export function createExclusive(file: string, data: string, opts: WriteOptions = {}): boolean {
  let fd: number;
  try {
    fd = openSync(file, 'wx', FILE_MODE);
  } catch (e) {
    const code = errCode(e);
    if (code === 'EEXIST') return false;
    if (code !== 'ENOENT') throw e;
    ensureDir(dirname(file));
    return createExclusive(file, data, opts);
  }
  try {
    writeAll(fd, Buffer.from(data));
    if (opts.fsync !== false) fsyncSync(fd);
    closeSync(fd);
  } catch (e) {
    closeSync(fd);
    removeFile(file);
    throw e;
  }
  return true;
}

/** Removes a file; false when it was already gone. */
export function removeFile(file: string): boolean {
  try {
    unlinkSync(file);
    return true;
  } catch (e) {
    if (errCode(e) === 'ENOENT') return false;
    throw e;
  }
}

/** Names in `dir` ending in `ext` (ext stripped), sorted; temp files skipped; [] if `dir` is missing. */
export function listNames(dir: string, ext = ''): string[] {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch (e) {
    if (errCode(e) === 'ENOENT') return [];
    throw e;
  }
  const out: string[] = [];
  for (const n of entries) {
    if (n.startsWith('.') || !n.endsWith(ext) || n.length === ext.length) continue;
    out.push(ext ? n.slice(0, -ext.length) : n);
  }
  return out.sort();
}

// ---------------------------------------------------------------------------------------
// The store

/** Options of a Store. */
export interface StoreOptions {
  /** State directory (default /run/tsnetlink). */
  root?: string;
  /** Default lock wait (default 10 s). */
  lockTimeoutMs?: number;
  /** fsync atomic writes (default true). */
  fsync?: boolean;
}

/** Network and endpoint records under one root directory; every method is synchronous. */
export class Store {
  readonly root: string;
  readonly lockTimeoutMs: number;
  readonly writeOptions: WriteOptions;
  private ready = false;

  constructor(opts: StoreOptions | string = {}) {
    const o = typeof opts === 'string' ? { root: opts } : opts;
    this.root = resolve(o.root ?? DEFAULT_STORE_ROOT);
    this.lockTimeoutMs = o.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
    this.writeOptions = { fsync: o.fsync ?? true };
  }

  /** Creates the root (0700) and tightens it if it already existed with wider permissions. */
  init(): void {
    if (this.ready) return;
    ensureDir(join(this.root, 'networks'));
    const st = lstatSync(this.root);
    if (!st.isDirectory()) throw new StoreError('ENOTDIR', this.root, 'store root is not a directory');
    if ((st.mode & 0o777) !== DIR_MODE) chmodSync(this.root, DIR_MODE);
    this.ready = true;
  }

  /** Path of the global lock (network create/remove). */
  globalLockPath(): string {
    return join(this.root, 'lock');
  }

  /** Directory holding one network's state. */
  networkDir(name: string): string {
    assertSafeName('network', name);
    return join(this.root, 'networks', name);
  }

  /** Path of a network's record. */
  networkFile(name: string): string {
    assertSafeName('network', name);
    return join(this.root, 'networks', `${name}.json`);
  }

  /** Path of a network's lock. */
  networkLockPath(name: string): string {
    return join(this.networkDir(name), 'lock');
  }

  /** Path of an endpoint's record. */
  endpointFile(network: string, id: string): string {
    assertSafeName('endpoint', id);
    return join(this.networkDir(network), 'endpoints', `${id}.json`);
  }

  /** Runs `fn` under the global lock. */
  withGlobalLockSync<T>(fn: () => T, opts: LockOptions = {}): T {
    this.init();
    return withLockSync(this.globalLockPath(), fn, { timeoutMs: opts.timeoutMs ?? this.lockTimeoutMs });
  }

  /** Runs `fn` under the global lock without blocking the event loop while waiting. */
  async withGlobalLock<T>(fn: () => T | Promise<T>, opts: LockOptions = {}): Promise<T> {
    this.init();
    return withLock(this.globalLockPath(), fn, { timeoutMs: opts.timeoutMs ?? this.lockTimeoutMs });
  }

  /** Runs `fn` under one network's lock. */
  withNetworkLockSync<T>(name: string, fn: () => T, opts: LockOptions = {}): T {
    this.init();
    return withLockSync(this.networkLockPath(name), fn, { timeoutMs: opts.timeoutMs ?? this.lockTimeoutMs });
  }

  /** Runs `fn` under one network's lock without blocking the event loop while waiting. */
  async withNetworkLock<T>(name: string, fn: () => T | Promise<T>, opts: LockOptions = {}): Promise<T> {
    this.init();
    return withLock(this.networkLockPath(name), fn, { timeoutMs: opts.timeoutMs ?? this.lockTimeoutMs });
  }

  /** A network's record, or undefined. */
  getNetwork<T extends object = Record<string, unknown>>(name: string): T | undefined {
    return readJson<T>(this.networkFile(name));
  }

  /** Creates or replaces a network's record atomically. */
  putNetwork<T extends object>(name: string, record: T): void {
    this.init();
    writeJsonAtomic(this.networkFile(name), record, this.writeOptions);
  }

  /** Names of all networks with a record. */
  listNetworkNames(): string[] {
    return listNames(join(this.root, 'networks'), '.json');
  }

  /** All network records, sorted by name. */
  listNetworks<T extends object = Record<string, unknown>>(): T[] {
    const out: T[] = [];
    for (const n of this.listNetworkNames()) {
      const r = this.getNetwork<T>(n);
      if (r) out.push(r);
    }
    return out;
  }

  /**
   * Removes a network's record, then its state directory (IPAM, endpoints, lock).
   * The record goes first so a crash never leaves a listed network without its state.
   */
  removeNetwork(name: string): boolean {
    const existed = removeFile(this.networkFile(name));
    rmSync(this.networkDir(name), { recursive: true, force: true });
    return existed;
  }

  /** An endpoint's record, or undefined. */
  getEndpoint<T extends object = Record<string, unknown>>(network: string, id: string): T | undefined {
    return readJson<T>(this.endpointFile(network, id));
  }

  /** Creates or replaces an endpoint's record atomically. */
  putEndpoint<T extends object>(network: string, id: string, record: T): void {
    this.init();
    writeJsonAtomic(this.endpointFile(network, id), record, this.writeOptions);
  }

  /** Ids of a network's endpoints. */
  listEndpointIds(network: string): string[] {
    return listNames(join(this.networkDir(network), 'endpoints'), '.json');
  }

  /** All endpoint records of a network, sorted by id. */
  listEndpoints<T extends object = Record<string, unknown>>(network: string): T[] {
    const out: T[] = [];
    for (const id of this.listEndpointIds(network)) {
      const r = this.getEndpoint<T>(network, id);
      if (r) out.push(r);
    }
    return out;
  }

  /** Removes an endpoint's record; false when it was already gone. */
  removeEndpoint(network: string, id: string): boolean {
    return removeFile(this.endpointFile(network, id));
  }
}
