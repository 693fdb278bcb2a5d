/**
 * Runtime state of bridge networks on disk: the Store owns every path and checks the shape of
 * every record it reads. One small file per object keeps connect O(1) at thousands of
 * endpoints. The default root is on tmpfs (/run): allocations must not outlive a reboot.
 *
 * ROOT/lock                                  global lock (network create, rm, repair, prune)
 * ROOT/ports.lock                            host-port reservations
 * ROOT/firewall.lock                         every firewall change (shared by endpoint changes where the backend allows)
 * ROOT/firewall-gate.lock                   taken exclusive with the firewall lock (and while waiting for it), passed shared
 * ROOT/networks/<name>.json                  network record
 * ROOT/networks/<name>/lock                  network lock: shared by connect and disconnect, exclusive for the rest
 * ROOT/networks/<name>/gate.lock             taken exclusive with the network lock (and while waiting for it), passed shared
 * ROOT/networks/<name>/ipam.lock             IPAM (ips/, byid*, last*)
 * ROOT/networks/<name>/ips/<ip>              IP reservation, content = endpoint id
 * ROOT/networks/<name>/byid/<id>             IPAM index, content = ip
 * ROOT/networks/<name>/last                  IPAM cursor
 * ROOT/networks/<name>/netns/<dev-ino>       "this container is connected", content = endpoint id
 * ROOT/networks/<name>/endpoints/<id>.json   endpoint record
 * ROOT/networks/<name>/endpoints/<id>.lock   endpoint lock, held by the operation on that endpoint (exists only while held)
 * ROOT/ports/<proto>-<port>/<host ip>        host-port reservation, content = <network>/<endpoint id>
 *
 * Lock order: global, then network (several in name order), then endpoints (in id order), then
 * IPAM or ports (never both), then firewall. Every operation takes the locks it needs in that
 * order, so no two operations can deadlock.
 */
import { chmodSync, lstatSync, rmdirSync, rmSync, statfsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { checkEndpointId, checkNetworkName } from '../names.js';
import type { PortMapping } from '../firewall/types.js';
import {
  createExclusive,
  createExclusiveWhole,
  DIR_MODE,
  ensureDir,
  errCode,
  listNames,
  listTempFiles,
  readJson,
  readText,
  removeFile,
  StoreError,
  writeFileAtomic,
  writeJsonAtomic,
  type WriteOptions,
} from '../sys/fsio.js';
import { DEFAULT_LOCK_TIMEOUT_MS, lockHeld, withLock, withLockSync, type LockOptions } from '../sys/locks.js';
import { parseEndpointRecord, parseNetworkRecord, type EndpointRecord, type NetworkRecord } from './records.js';

export { LockTimeoutError, withLock, withLockSync, DEFAULT_LOCK_TIMEOUT_MS, type LockOptions } from '../sys/locks.js';
export { StoreError, listNames, readJson, readText, writeFileAtomic, writeJsonAtomic, createExclusive, removeFile, ensureDir, type WriteOptions } from '../sys/fsio.js';

const TMPFS_MAGIC = 0x01021994;

/** Where state lives unless a caller says otherwise. */
export const DEFAULT_STORE_ROOT = '/run/tsnetlink';

/** Options of a Store. */
export interface StoreOptions {
  /** State directory (default /run/tsnetlink). */
  root?: string;
  /** Default lock wait (default 10 s). */
  lockTimeoutMs?: number;
  /** fsync writes (default: yes, except on tmpfs, where there is no disk to reach). */
  fsync?: boolean;
}

/** A record that could not be read, with the reason. */
export interface CorruptRecord {
  /** Network name or endpoint id the file is named after. */
  name: string;
  path: string;
  error: StoreError;
}

/** Records of one kind that could be read, and those that could not. */
export interface Listing<T> {
  records: T[];
  corrupt: CorruptRecord[];
}

/** A host-port reservation as found on disk. */
export interface PortReservation {
  protocol: string;
  hostPort: number;
  /** '0.0.0.0' for every address. */
  hostIp: string;
  /** "<network>/<endpoint id>" of the holder ('' if unreadable). */
  owner: string;
  path: string;
}

const euid = (): number => process.geteuid?.() ?? 0;

/**
 * Refuses a state directory that someone other than us could swap or write: root writes there,
 * so a user who controls it (or a directory above it) could redirect root's writes. Directories
 * writable by others are fine only with the sticky bit (as /tmp), where nobody may rename what
 * they do not own.
 */
function checkPathSafety(root: string): void {
  const me = euid();
  for (let dir = dirname(root); ; dir = dirname(dir)) {
    const st = lstatSync(dir, { throwIfNoEntry: false });
    if (st) {
      if (st.isSymbolicLink()) {
        // A symlinked ancestor is safe only if root owns it; its target is then checked too.
        if (st.uid !== 0 && st.uid !== me) throw new StoreError('EINSECURE', dir, `is a symlink owned by uid ${st.uid}; refusing it as part of the state path`);
      } else {
        if (st.uid !== 0 && st.uid !== me) throw new StoreError('EINSECURE', dir, `is owned by uid ${st.uid}, who could replace the state directory; use a state directory under a root-owned path`);
        if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) throw new StoreError('EINSECURE', dir, 'is writable by others without the sticky bit; use a state directory under a root-owned path');
      }
    }
    if (dir === dirname(dir)) break;
  }
}

function mapAccess<T>(path: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    const code = errCode(e);
    if (code === 'EACCES' || code === 'EPERM') {
      throw new StoreError('EACCES', path, 'permission denied: tsnetlink needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and its state directory', { cause: e });
    }
    throw e;
  }
}

/** Network and endpoint records, claims and locks under one root directory; every method is synchronous except the async lock waits. */
export class Store {
  readonly root: string;
  readonly lockTimeoutMs: number;
  readonly writeOptions: WriteOptions;
  private readonly fsyncOption: boolean | undefined;
  private ready = false;

  constructor(opts: StoreOptions | string = {}) {
    const o = typeof opts === 'string' ? { root: opts } : opts;
    this.root = resolve(o.root ?? DEFAULT_STORE_ROOT);
    this.lockTimeoutMs = o.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
    this.fsyncOption = o.fsync;
    this.writeOptions = { fsync: o.fsync ?? true };
  }

  /**
   * Creates the root (0700) or checks the existing one: a real directory (not a symlink), owned
   * by us, no wider than 0700 (tightened if it is ours), and no ancestor that another user could
   * use to swap it. Throws StoreError EINSECURE, ENOTDIR or EACCES.
   */
  init(): void {
    if (this.ready) return;
    mapAccess(this.root, () => {
      checkPathSafety(this.root);
      let st = lstatSync(this.root, { throwIfNoEntry: false });
      if (!st) {
        ensureDir(this.root);
        st = lstatSync(this.root);
      }
      if (st.isSymbolicLink()) throw new StoreError('EINSECURE', this.root, 'the state directory is a symlink; refusing to write through it');
      if (!st.isDirectory()) throw new StoreError('ENOTDIR', this.root, 'store root is not a directory');
      if (st.uid !== euid()) throw new StoreError('EINSECURE', this.root, `the state directory is owned by uid ${st.uid}, not by us (uid ${euid()})`);
      if ((st.mode & 0o777) !== DIR_MODE) chmodSync(this.root, DIR_MODE);
      ensureDir(join(this.root, 'networks'));
      // tmpfs (the default /run) has no disk: an fsync there is a syscall that protects nothing.
      if (this.fsyncOption === undefined && statfsSync(this.root).type === TMPFS_MAGIC) this.writeOptions.fsync = false;
    });
    this.ready = true;
  }

  /**
   * The checks of init() for commands that only read (ls, inspect), changing nothing: a missing
   * root is fine (nothing to list); one owned by another user, a symlink, or one others can
   * write is refused (StoreError EINSECURE), since records planted there would be believed.
   */
  verify(): void {
    if (this.ready) return;
    mapAccess(this.root, () => {
      checkPathSafety(this.root);
      const st = lstatSync(this.root, { throwIfNoEntry: false });
      if (!st) return;
      if (st.isSymbolicLink()) throw new StoreError('EINSECURE', this.root, 'the state directory is a symlink; refusing to read through it');
      if (!st.isDirectory()) throw new StoreError('ENOTDIR', this.root, 'store root is not a directory');
      if (st.uid !== euid()) throw new StoreError('EINSECURE', this.root, `the state directory is owned by uid ${st.uid}, not by us (uid ${euid()})`);
      if ((st.mode & 0o022) !== 0) throw new StoreError('EINSECURE', this.root, `the state directory is writable by others (mode ${(st.mode & 0o777).toString(8)}); a command that changes state tightens it to 700`);
    });
  }

  // ------------------------------------------------------------------ paths

  /** Path of the global lock (network create/remove, repair, prune). */
  globalLockPath(): string {
    return join(this.root, 'lock');
  }

  /** Path of the lock every firewall change holds. */
  firewallLockPath(): string {
    return join(this.root, 'firewall.lock');
  }

  /** Path of the lock host-port reservations hold. */
  portsLockPath(): string {
    return join(this.root, 'ports.lock');
  }

  /** Directory holding one network's state. */
  networkDir(name: string): string {
    return join(this.root, 'networks', checkNetworkName(name, 'network'));
  }

  /** Path of a network's record. */
  networkFile(name: string): string {
    return join(this.root, 'networks', `${checkNetworkName(name, 'network')}.json`);
  }

  /** Path of a network's lock. */
  networkLockPath(name: string): string {
    return join(this.networkDir(name), 'lock');
  }

  /** Path of the gate in front of a network's lock (see withNetworkLock). */
  networkGatePath(name: string): string {
    return join(this.networkDir(name), 'gate.lock');
  }

  /** Path of the lock of a network's IPAM files. */
  ipamLockPath(name: string): string {
    return join(this.networkDir(name), 'ipam.lock');
  }

  /** Path of an endpoint's record. */
  endpointFile(network: string, id: string): string {
    return join(this.networkDir(network), 'endpoints', `${checkEndpointId(id, 'endpoint')}.json`);
  }

  /** Path of an endpoint's lock, which exists only while an operation on the endpoint holds it. */
  endpointLockPath(network: string, id: string): string {
    return join(this.networkDir(network), 'endpoints', `${checkEndpointId(id, 'endpoint')}.lock`);
  }

  /** Path of the marker that says a container (by netns dev-inode) is connected to a network. */
  markerFile(network: string, netnsKey: string): string {
    if (!/^\d+-\d+$/.test(netnsKey)) throw new StoreError('ECORRUPT', netnsKey, 'netns key is not DEV-INODE');
    return join(this.networkDir(network), 'netns', netnsKey);
  }

  /** Directory of the reservations of one host port. */
  portDir(m: Pick<PortMapping, 'protocol' | 'hostPort'>): string {
    return join(this.root, 'ports', `${m.protocol}-${m.hostPort}`);
  }

  /** Path of one host-port reservation. */
  portFile(m: Pick<PortMapping, 'protocol' | 'hostPort' | 'hostIp'>): string {
    return join(this.portDir(m), m.hostIp ?? '0.0.0.0');
  }

  // ------------------------------------------------------------------ locks

  /** Runs `fn` under the global lock without blocking the event loop while waiting. */
  async withGlobalLock<T>(fn: () => T | Promise<T>, opts: LockOptions = {}): Promise<T> {
    this.init();
    return withLock(this.globalLockPath(), fn, { timeoutMs: opts.timeoutMs ?? this.lockTimeoutMs });
  }

  /**
   * Runs `fn` under one network's lock without blocking the event loop while waiting. Shared
   * (`shared`) for connect and disconnect, which then run side by side, each holding the lock of
   * its endpoint too; exclusive for everything that must find no operation half-way (create, rm,
   * prune, repair, check). flock lets new shared holders in while an exclusive taker waits, so a
   * steady stream of connects could keep a prune out for good: an exclusive taker therefore holds
   * the network's gate (exclusive) from before its wait to its release, and a shared taker passes
   * the gate (takes it shared and drops it) before it takes the lock, so shared takers do not
   * queue for one another there. A call chain that holds the lock re-enters it without the gate.
   */
  async withNetworkLock<T>(name: string, fn: () => T | Promise<T>, opts: LockOptions = {}): Promise<T> {
    this.init();
    return this.withGatedLock(this.networkLockPath(name), this.networkGatePath(name), fn, opts);
  }

  /** A lock taken shared or exclusive behind a gate that lets a waiting exclusive taker go first (see withNetworkLock). */
  private async withGatedLock<T>(lock: string, gate: string, fn: () => T | Promise<T>, opts: LockOptions): Promise<T> {
    const timeoutMs = opts.timeoutMs ?? this.lockTimeoutMs;
    const shared = opts.shared === true;
    if (lockHeld(lock)) return withLock(lock, fn, { timeoutMs, shared });
    const deadline = performance.now() + timeoutMs;
    const left = (): number => Math.max(1, deadline - performance.now());
    if (shared) {
      await withLock(gate, () => undefined, { timeoutMs, shared: true });
      return withLock(lock, fn, { timeoutMs: left(), shared: true });
    }
    return withLock(gate, () => withLock(lock, fn, { timeoutMs: left() }), { timeoutMs });
  }

  /** Runs `fn` under one network's lock, exclusive (blocking wait; re-entrant inside withNetworkLock). */
  withNetworkLockSync<T>(name: string, fn: () => T, opts: Omit<LockOptions, 'shared'> = {}): T {
    this.init();
    const lock = this.networkLockPath(name);
    const timeoutMs = opts.timeoutMs ?? this.lockTimeoutMs;
    if (lockHeld(lock)) return withLockSync(lock, fn, { timeoutMs });
    const deadline = performance.now() + timeoutMs;
    return withLockSync(this.networkGatePath(name), () => withLockSync(lock, fn, { timeoutMs: Math.max(1, deadline - performance.now()) }), { timeoutMs });
  }

  /** Runs `fn` under the lock of a network's IPAM files (blocking wait: short critical sections only). */
  withIpamLockSync<T>(name: string, fn: () => T, opts: LockOptions = {}): T {
    this.init();
    return withLockSync(this.ipamLockPath(name), fn, { timeoutMs: opts.timeoutMs ?? this.lockTimeoutMs });
  }

  /**
   * Runs `fn` holding the locks of these endpoints (taken in id order, so two callers never
   * deadlock). The operation on an endpoint holds its lock from before it writes anything of the
   * endpoint until it is done, so whoever takes the lock and finds the endpoint half-way knows
   * that its operation died. Hold the network's lock (shared or exclusive) around it. Each lock
   * file is removed before its lock is released: it exists only while someone holds it.
   */
  async withEndpointLocks<T>(network: string, ids: readonly string[], fn: () => T | Promise<T>): Promise<T> {
    this.init();
    const [first, ...rest] = [...new Set(ids)].sort();
    if (first === undefined) return await fn();
    return withLock(this.endpointLockPath(network, first), () => this.withEndpointLocks(network, rest, fn), { timeoutMs: this.lockTimeoutMs, removeOnRelease: true });
  }

  /** Ids of the endpoint lock files of a network: with its lock held exclusive, what killed operations left. */
  endpointLockIds(network: string): string[] {
    return listNames(join(this.networkDir(network), 'endpoints'), '.lock');
  }

  /** Runs `fn` under the host-port lock (short critical sections only). */
  withPortsLockSync<T>(fn: () => T): T {
    this.init();
    return withLockSync(this.portsLockPath(), fn, { timeoutMs: this.lockTimeoutMs });
  }

  /**
   * Runs `fn` under the firewall lock: exclusive for whatever reads or rewrites the ruleset as a
   * whole (the desired state is computed and applied inside it), shared (`shared`) for the
   * endpoint changes a backend lets overlap (changeEndpointRules). Gated as the network lock is,
   * so that a rebuild waiting for it is not kept out by a stream of connects.
   */
  async withFirewallLock<T>(fn: () => T | Promise<T>, opts: Pick<LockOptions, 'shared'> = {}): Promise<T> {
    this.init();
    return this.withGatedLock(this.firewallLockPath(), join(this.root, 'firewall-gate.lock'), fn, { timeoutMs: this.lockTimeoutMs, ...opts });
  }

  // ------------------------------------------------------------------ networks

  /** Parsed network records by file, valid while the file's inode, size and mtime are unchanged. */
  private readonly networkCache = new Map<string, { key: string; record: NetworkRecord }>();

  /**
   * A network's record (frozen), undefined when missing; StoreError ECORRUPT when unreadable.
   * Records are replaced by rename, never rewritten in place, so an unchanged inode, size and
   * mtime mean an unchanged record: connect reads it with one lstat instead of a parse.
   */
  getNetwork(name: string): Readonly<NetworkRecord> | undefined {
    const file = this.networkFile(name);
    const st = mapAccess(file, () => lstatSync(file, { throwIfNoEntry: false }));
    if (!st) {
      this.networkCache.delete(file);
      return undefined;
    }
    const key = `${st.ino}:${st.size}:${st.mtimeMs}`;
    const hit = this.networkCache.get(file);
    if (hit?.key === key) return hit.record;
    const raw = mapAccess(file, () => readJson(file));
    if (raw === undefined) return undefined;
    const record = Object.freeze(parseNetworkRecord(raw, file, name));
    this.networkCache.set(file, { key, record });
    return record;
  }

  /** True when a network has a record file (readable or not), without reading it. */
  hasNetwork(name: string): boolean {
    return lstatSync(this.networkFile(name), { throwIfNoEntry: false }) !== undefined;
  }

  /** Creates or replaces a network's record atomically. */
  putNetwork(record: NetworkRecord): void {
    this.init();
    writeJsonAtomic(this.networkFile(record.name), record, this.writeOptions);
  }

  /** Names of all networks with a record file (readable or not). */
  networkNames(): string[] {
    return mapAccess(this.root, () => listNames(join(this.root, 'networks'), '.json')).filter((n) => {
      try {
        checkNetworkName(n);
        return true;
      } catch {
        return false;
      }
    });
  }

  /** Every network record, sorted by name; unreadable ones are listed apart instead of failing the rest. */
  listNetworks(): Listing<NetworkRecord> {
    const out: Listing<NetworkRecord> = { records: [], corrupt: [] };
    for (const n of this.networkNames()) {
      try {
        const r = this.getNetwork(n);
        if (r) out.records.push(r);
      } catch (e) {
        if (!(e instanceof StoreError) || e.code !== 'ECORRUPT') throw e;
        out.corrupt.push({ name: n, path: this.networkFile(n), error: e });
      }
    }
    return out;
  }

  /**
   * Removes a network's record, then its state directory (IPAM, endpoints, markers, lock). The
   * lock file goes too: a process waiting for it sees the inode change and re-checks the record.
   */
  removeNetwork(name: string): boolean {
    const existed = removeFile(this.networkFile(name));
    this.clearNetworkDir(name);
    return existed;
  }

  /**
   * Network directories with no record beside them: what a create killed before it wrote its
   * intent leaves (its lock file), or an rm killed between its record and its directory.
   */
  orphanNetworkDirs(): string[] {
    const dir = join(this.root, 'networks');
    return mapAccess(dir, () => listNames(dir)).filter((n) => {
      try {
        checkNetworkName(n);
      } catch {
        return false;
      }
      return lstatSync(join(dir, n), { throwIfNoEntry: false })?.isDirectory() === true && !this.hasNetwork(n);
    });
  }

  /**
   * Removes the directory of a network that has no record, which taking its lock (re-)made, as
   * the exclusive holder: a connect or disconnect that found the network gone holds the lock
   * shared, and a shared holder must not remove lock files from under the others (one of them
   * could be a create of the same name that has taken a fresh lock and not written its record
   * yet). Call it without holding the network's lock.
   */
  async clearNetworkDirIfGone(name: string): Promise<void> {
    if (this.hasNetwork(name) || lstatSync(this.networkDir(name), { throwIfNoEntry: false }) === undefined) return;
    await this.withNetworkLock(name, () => {
      if (!this.hasNetwork(name)) this.clearNetworkDir(name);
    });
  }

  /**
   * Removes what an earlier network of this name may have left (a crash between its record and
   * its directory). A process that starts to wait for the network's lock re-makes the directory
   * and its lock file at any moment; when that happens during the removal, what is left is the
   * waiter's, and the waiter clears it again once it holds the lock and finds no record.
   */
  clearNetworkDir(name: string): void {
    try {
      rmSync(this.networkDir(name), { recursive: true, force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOTEMPTY') throw e;
    }
  }

  // ------------------------------------------------------------------ endpoints

  /** An endpoint's record, undefined when missing; StoreError ECORRUPT when unreadable. */
  getEndpoint(network: string, id: string): EndpointRecord | undefined {
    const file = this.endpointFile(network, id);
    const raw = mapAccess(file, () => readJson(file));
    return raw === undefined ? undefined : parseEndpointRecord(raw, file, network, id);
  }

  /**
   * Writes a new endpoint's record with one exclusive create (no temp file, no rename): the
   * intent a connect leaves before it touches the kernel. The caller holds the network lock and
   * checked the id, so an existing file is an inconsistency. A crash mid-write leaves a truncated
   * record, which the reconciler treats as unreadable and clears by the id it is named after.
   */
  createEndpoint(record: EndpointRecord): void {
    this.init();
    if (!createExclusive(this.endpointFile(record.network, record.id), `${JSON.stringify(record, null, 2)}\n`, this.writeOptions)) {
      throw new StoreError('ECORRUPT', this.endpointFile(record.network, record.id), 'an endpoint record appeared under the network lock');
    }
  }

  /** Creates or replaces an endpoint's record atomically. */
  putEndpoint(record: EndpointRecord): void {
    this.init();
    writeJsonAtomic(this.endpointFile(record.network, record.id), record, this.writeOptions);
  }

  /** Ids of a network's endpoint record files (readable or not). */
  endpointIds(network: string): string[] {
    return listNames(join(this.networkDir(network), 'endpoints'), '.json').filter((id) => {
      try {
        checkEndpointId(id);
        return true;
      } catch {
        return false;
      }
    });
  }

  /** Every endpoint record of a network, sorted by id; unreadable ones are listed apart. */
  listEndpoints(network: string): Listing<EndpointRecord> {
    const out: Listing<EndpointRecord> = { records: [], corrupt: [] };
    for (const id of this.endpointIds(network)) {
      try {
        const r = this.getEndpoint(network, id);
        if (r) out.records.push(r);
      } catch (e) {
        if (!(e instanceof StoreError) || e.code !== 'ECORRUPT') throw e;
        out.corrupt.push({ name: id, path: this.endpointFile(network, id), error: e });
      }
    }
    return out;
  }

  /** Removes an endpoint's record; false when it was already gone. */
  removeEndpoint(network: string, id: string): boolean {
    return removeFile(this.endpointFile(network, id));
  }

  // ------------------------------------------------------------------ container markers

  /**
   * Claims a container for an endpoint; false when the container is already claimed on this
   * network. The claim appears with its owner written (never empty), since a concurrent connect
   * of the same container reads the owner to find whose lock to wait for.
   */
  createMarker(network: string, netnsKey: string, id: string): boolean {
    return createExclusiveWhole(this.markerFile(network, netnsKey), id, this.writeOptions);
  }

  /** Removes the lock file of an endpoint that no operation holds (hold the network lock exclusive). */
  removeEndpointLock(network: string, id: string): boolean {
    return removeFile(this.endpointLockPath(network, id));
  }

  /** The endpoint id that claimed a container on this network, or undefined. */
  markerOwner(network: string, netnsKey: string): string | undefined {
    return readText(this.markerFile(network, netnsKey))?.trim();
  }

  /** Drops a container's claim. */
  removeMarker(network: string, netnsKey: string): void {
    removeFile(this.markerFile(network, netnsKey));
  }

  /** Every container claim of a network. */
  listMarkers(network: string): { netnsKey: string; owner: string }[] {
    return listNames(join(this.networkDir(network), 'netns')).map((netnsKey) => ({ netnsKey, owner: readText(join(this.networkDir(network), 'netns', netnsKey))?.trim() ?? '' }));
  }

  // ------------------------------------------------------------------ host ports

  /** Who holds a host port: one entry per host IP. Take the ports lock around check-and-reserve. */
  portHolders(m: Pick<PortMapping, 'protocol' | 'hostPort'>): { hostIp: string; owner: string }[] {
    const dir = this.portDir(m);
    return listNames(dir).map((hostIp) => ({ hostIp, owner: readText(join(dir, hostIp))?.trim() ?? '' }));
  }

  /** Reserves a host port for "<network>/<id>"; false when that exact reservation exists. */
  reservePort(m: PortMapping, owner: string): boolean {
    ensureDir(this.portDir(m));
    return createExclusive(this.portFile(m), owner, this.writeOptions);
  }

  /** Writes a host-port reservation for `owner` whatever it held (a repair of a damaged one); hold the ports lock. */
  putPortReservation(m: Pick<PortMapping, 'protocol' | 'hostPort' | 'hostIp'>, owner: string): void {
    ensureDir(this.portDir(m));
    writeFileAtomic(this.portFile(m), owner, this.writeOptions);
  }

  /** Releases a host-port reservation if `owner` holds it (another owner's is left alone). */
  releasePort(m: PortMapping, owner: string): void {
    const file = this.portFile(m);
    if (readText(file)?.trim() === owner) removeFile(file);
    try {
      rmdirSync(this.portDir(m));
    } catch {
      /* another host IP still holds this port */
    }
  }

  /** Every host-port reservation. */
  listPorts(): PortReservation[] {
    const base = join(this.root, 'ports');
    const out: PortReservation[] = [];
    for (const dir of listNames(base)) {
      const m = /^(tcp|udp)-(\d+)$/.exec(dir);
      for (const hostIp of listNames(join(base, dir))) {
        const path = join(base, dir, hostIp);
        out.push({ protocol: m?.[1] ?? '', hostPort: Number(m?.[2] ?? 0), hostIp, owner: readText(path)?.trim() ?? '', path });
      }
    }
    return out;
  }

  /** Removes a reservation found by listPorts (its directory too, once empty). */
  removePortReservation(r: PortReservation): void {
    removeFile(r.path);
    try {
      rmdirSync(dirname(r.path));
    } catch {
      /* still held by another host IP */
    }
  }

  // ------------------------------------------------------------------ leftovers

  /**
   * Temp files of atomic writes that a killed process left in a network's directories. Call it
   * holding the network lock: every write there happens under that lock, so none is in flight.
   */
  networkTempFiles(network: string): string[] {
    const dir = this.networkDir(network);
    return [dir, join(dir, 'endpoints'), join(dir, 'ips'), join(dir, 'byid'), join(dir, 'netns')].flatMap(listTempFiles);
  }

  /** Temp files of network records; call it holding the global lock. */
  globalTempFiles(): string[] {
    return listTempFiles(join(this.root, 'networks'));
  }

  // ------------------------------------------------------------------ host-wide changes

  /** Path of the record of what tsnetlink changed on the host as a whole. */
  hostFile(): string {
    return join(this.root, 'host.json');
  }

  /** What tsnetlink changed on the host as a whole (nothing when the file is missing); StoreError ECORRUPT when unreadable. */
  getHost(): HostRecord {
    const file = this.hostFile();
    const raw = mapAccess(file, () => readJson(file));
    if (raw === undefined) return { forwardGuard: [] };
    const guard = (raw as { forwardGuard?: unknown }).forwardGuard;
    if (!Array.isArray(guard) || !guard.every((f) => f === 4 || f === 6)) throw new StoreError('ECORRUPT', file, 'field "forwardGuard" is not a list of address families (4, 6)');
    return { forwardGuard: [...new Set(guard as (4 | 6)[])].sort() };
  }

  /** Records that tsnetlink set the FORWARD policy of `family` to DROP when it turned forwarding on; true when it was not recorded yet. */
  addForwardGuard(family: 4 | 6): boolean {
    this.init();
    const cur = this.getHost();
    if (cur.forwardGuard.includes(family)) return false;
    writeJsonAtomic(this.hostFile(), { ...cur, forwardGuard: [...cur.forwardGuard, family].sort() }, this.writeOptions);
    return true;
  }

  /**
   * Forgets the host record once no network is left: forwarding and its DROP policy stay on the
   * host (as with Docker), but nothing of tsnetlink's relies on them any more, and a host with no
   * network has no state of tsnetlink's.
   */
  forgetHostIfUnused(): void {
    if (this.networkNames().length === 0) removeFile(this.hostFile());
  }

  /** Forgets the guard of `family` (a create that recorded it was rolled back); the file goes with the last guard. */
  removeForwardGuard(family: 4 | 6): void {
    const cur = this.getHost();
    if (!cur.forwardGuard.includes(family)) return;
    const rest = cur.forwardGuard.filter((f) => f !== family);
    if (rest.length === 0) removeFile(this.hostFile());
    else writeJsonAtomic(this.hostFile(), { ...cur, forwardGuard: rest }, this.writeOptions);
  }
}

/**
 * What tsnetlink changed on the host as a whole, beyond any one network: `forwardGuard` lists the
 * families whose forwarding it turned on together with a FORWARD policy of DROP, a guard that
 * check verifies and repair restores (someone's `nft flush ruleset` takes it away silently).
 */
export interface HostRecord {
  forwardGuard: (4 | 6)[];
}
