/**
 * Small-file primitives of the state directory: atomic replace, exclusive create, reads that
 * never follow a symlink, listings that skip temp files. Synchronous on purpose: every call is
 * a few microseconds on tmpfs, and the callers hold locks around them.
 */
import {
  closeSync,
  constants as fsc,
  fsyncSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { randomFillSync } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { threadId } from 'node:worker_threads';
import { TsnetlinkError } from '../errors.js';

export const DIR_MODE = 0o700;
export const FILE_MODE = 0o600;

/** What can be wrong with state on disk. */
export type StoreErrorCode = 'ECORRUPT' | 'EDEADLK' | 'ENOTDIR' | 'EINSECURE' | 'EACCES';

/**
 * State on disk is unreadable or of the wrong shape (ECORRUPT), a lock request cannot succeed
 * (EDEADLK), the state directory is not a directory (ENOTDIR), could be changed by someone other
 * than its owner (EINSECURE), or cannot be reached with our privileges (EACCES).
 */
export class StoreError extends TsnetlinkError {
  override name = 'StoreError';
  declare readonly code: StoreErrorCode;
  readonly path: string;
  constructor(code: StoreErrorCode, path: string, message: string, options?: { cause?: unknown }) {
    super(code, `${path}: ${message}`, options);
    this.path = path;
  }
}

/** The `code` of a Node or tsnetlink error, if any. */
export function errCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : undefined;
}

/** mkdir -p with mode 0700 for every directory it creates. */
export function ensureDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: DIR_MODE });
}

/** True for the temp files writeFileAtomic makes (".NAME.PID.TID.SEQ.tmp"). */
export function isTempName(name: string): boolean {
  return name.startsWith('.') && name.endsWith('.tmp');
}

let tmpSeq = 0;

/** A temp file name beside `file` (".NAME.PID.TID.SEQ.tmp"), unique within this machine. */
function tempNameFor(file: string): string {
  return join(dirname(file), `.${basename(file)}.${process.pid}.${threadId}.${(tmpSeq++).toString(36)}.tmp`);
}

function writeAll(fd: number, buf: Buffer): void {
  for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off, buf.length - off);
}

/** Options of an atomic write. */
export interface WriteOptions {
  /** fsync before rename (default true); free on tmpfs, durable elsewhere. */
  fsync?: boolean;
}

/** Creates a temp file for writing (its directory too when missing). */
function openTemp(tmp: string): number {
  try {
    return openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, FILE_MODE);
  } catch (e) {
    if (errCode(e) !== 'ENOENT') throw e;
    ensureDir(dirname(tmp));
    return openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, FILE_MODE);
  }
}

/**
 * Replaces `file` atomically: a temp file in the same directory, write, fsync, rename.
 * Readers see the old or the new content, never a torn one. Creates the directory if missing.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array, opts: WriteOptions = {}): void {
  const tmp = tempNameFor(file);
  const fd = openTemp(tmp);
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

/**
 * Reads a small text file; undefined when it does not exist. A symlink is refused (O_NOFOLLOW):
 * state files are never links, and following one would let whoever made it steer root's reads.
 * Only ENOENT means "missing"; EACCES and the rest are thrown, never mistaken for absence.
 */
export function readText(file: string): string | undefined {
  // A miss is common (new endpoint ids); lstat without a throw is far cheaper than a thrown ENOENT.
  if (lstatSync(file, { throwIfNoEntry: false }) === undefined) return undefined;
  let fd: number;
  try {
    fd = openSync(file, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  } catch (e) {
    if (errCode(e) === 'ENOENT') return undefined;
    throw e;
  }
  try {
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/** Reads a JSON file; undefined when missing, StoreError ECORRUPT when unparsable. The shape is not checked. */
export function readJson(file: string): unknown {
  const text = readText(file);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
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
    fd = openSync(file, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, FILE_MODE);
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

/**
 * Like createExclusive, but `file` appears with all of `data` in it: a temp file is written, then
 * hard-linked under the name (link fails with EEXIST where the name exists). A reader never
 * finds it empty or half-written, as it can in the moment between createExclusive's open and
 * write. A killed writer may leave the temp file (".NAME....tmp"), as writeFileAtomic may.
 */
export function createExclusiveWhole(file: string, data: string, opts: WriteOptions = {}): boolean {
  const tmp = tempNameFor(file);
  const fd = openTemp(tmp);
  try {
    try {
      writeAll(fd, Buffer.from(data));
      if (opts.fsync !== false) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      linkSync(tmp, file);
      return true;
    } catch (e) {
      if (errCode(e) === 'EEXIST') return false;
      throw e;
    }
  } finally {
    removeFile(tmp);
  }
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

/** Temp files (".X.tmp") directly in `dir`: what an atomic write killed half-way leaves. */
export function listTempFiles(dir: string): string[] {
  try {
    return readdirSync(dir).filter(isTempName).map((n) => join(dir, n));
  } catch (e) {
    if (errCode(e) === 'ENOENT' || errCode(e) === 'ENOTDIR') return [];
    throw e;
  }
}

const pool = Buffer.alloc(512);
let poolAt = pool.length;

/**
 * `bytes` random bytes as hex, from a pooled crypto-random buffer: ids and link names are made on
 * connect's path, and one randomFillSync per 512 bytes costs a fraction of a randomBytes() call
 * per name.
 */
export function randomHex(bytes: number): string {
  if (poolAt + bytes > pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  const out = pool.toString('hex', poolAt, poolAt + bytes);
  poolAt += bytes;
  return out;
}
