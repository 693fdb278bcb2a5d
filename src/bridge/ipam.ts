/**
 * Host-local IPAM for one subnet of a bridge network, on the Store's files.
 *
 * A reservation is a file ROOT/networks/<name>/ips/<ip> created with O_CREAT|O_EXCL under
 * the network's IPAM lock, so two processes can never hand out the same address. The cursor
 * ('last', 'last6' for IPv6) makes allocation round robin: a just-released address is not
 * reused until the range wraps, so stale neighbour entries and half-cleaned rules do not hit a
 * new endpoint. Addresses are bigints, so an IPv6 /64 works like an IPv4 /24; each family has
 * its own owner index (byid/, byid6/) because a dual-stack endpoint holds one of each.
 * No processes, no network I/O.
 */
import { closeSync, constants as fsc, openSync, readdirSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { TsnetlinkError, ValidationError } from '../errors.js';
import { bigToIp, ipFamily, ipToBig, parseSubnet, type Subnet } from '../ip/cidr.js';
import { checkEndpointId } from '../names.js';
import { createExclusive, ensureDir, errCode, readText, removeFile, writeFileAtomic } from '../sys/fsio.js';
import type { LockOptions } from '../sys/locks.js';
import type { Store } from './store.js';

/** The subnet has no free address left (EIPAMFULL), or the address asked for is taken (EIPINUSE). */
export class IpamError extends TsnetlinkError {
  override name = 'IpamError';
  declare readonly code: 'EIPAMFULL' | 'EIPINUSE';
  readonly network: string;
  readonly subnet: string;
  constructor(code: 'EIPAMFULL' | 'EIPINUSE', network: string, subnet: string, message: string) {
    super(code, `network ${network} (${subnet}): ${message}`);
    this.network = network;
    this.subnet = subnet;
  }
}

/** One reservation as listed by Ipam.list(). */
export interface IpamAllocation {
  ip: string;
  /** The owner written into the reservation file ('' if a crash left it empty). */
  endpointId: string;
}

/** O_EXCL attempts straight after the cursor before falling back to one directory read. */
const PROBES_BEFORE_SCAN = 8;

/**
 * Address allocator for one network; every method takes the network's IPAM lock itself
 * (re-entrant). That lock is its own, not the network lock, which connects hold shared.
 */
export class Ipam {
  readonly network: string;
  readonly subnet: Subnet;
  /** Number of addresses that can be handed out (hosts minus the gateway). */
  readonly capacity: bigint;
  private readonly store: Store;
  private readonly dir: string;
  private readonly ipsDir: string;
  private readonly byIdDir: string;
  private readonly cursorFile: string;
  private readonly first: bigint;
  private readonly lastHost: bigint;
  private readonly gateway: bigint;
  private readonly lockOptions: LockOptions;

  constructor(store: Store, network: string, subnet: Subnet | string, lockOptions: LockOptions = {}) {
    this.store = store;
    this.network = network;
    this.subnet = typeof subnet === 'string' ? parseSubnet(subnet) : subnet;
    this.dir = store.networkDir(network);
    this.ipsDir = join(this.dir, 'ips');
    const v6 = this.subnet.family === 6;
    this.byIdDir = join(this.dir, v6 ? 'byid6' : 'byid');
    this.cursorFile = join(this.dir, v6 ? 'last6' : 'last');
    // IPv4 keeps the network and broadcast addresses out; IPv6 keeps the subnet-router anycast
    // address (the network address) and, for symmetry and simple bounds, the last one out.
    this.first = ipToBig(this.subnet.network) + 1n;
    this.lastHost = ipToBig(this.subnet.broadcast) - 1n;
    this.gateway = ipToBig(this.subnet.gateway);
    this.capacity = this.lastHost - this.first; // hosts minus the gateway
    this.lockOptions = lockOptions;
  }

  /**
   * Reserves the next free address after the cursor (or exactly `requested`) for `endpointId`
   * and returns it; the same id gets its existing address back. Throws IpamError EIPAMFULL when
   * none is left, EIPINUSE when the requested address is held by another id.
   */
  allocate(endpointId: string, requested?: string): string {
    checkEndpointId(endpointId, 'endpoint');
    if (requested !== undefined && !this.isHandable(requested)) {
      throw new ValidationError('ip', `${JSON.stringify(requested)} is not a host address of ${this.subnet.subnet} other than the gateway ${this.subnet.gateway}`);
    }
    return this.locked(() => {
      const existing = this.ownedBy(endpointId);
      if (existing !== undefined && (requested === undefined || existing === requested)) return existing;
      if (existing !== undefined) throw new IpamError('EIPINUSE', this.network, this.subnet.subnet, `endpoint ${endpointId} already holds ${existing}, not ${requested}`);
      if (requested !== undefined && !this.tryReserve(requested, endpointId)) {
        throw new IpamError('EIPINUSE', this.network, this.subnet.subnet, `${requested} is already held by ${readText(join(this.ipsDir, requested)) || 'an interrupted allocation'}`);
      }
      const ip = requested ?? this.reserveNext(endpointId);
      // Index and cursor are written after the reservation: a crash in between leaves an
      // address owned by the id in ips/ (found by list() and gc()), never a double grant.
      // ownedBy() removed any stale index, so the exclusive create normally wins.
      const indexFile = join(this.byIdDir, endpointId);
      if (!createExclusive(indexFile, ip, this.store.writeOptions)) writeFileAtomic(indexFile, ip, this.store.writeOptions);
      // A requested address leaves the round-robin cursor where it was.
      if (requested === undefined) this.setCursor(ip);
      return ip;
    });
  }

  /** The address held by `endpointId`, or undefined. */
  lookup(endpointId: string): string | undefined {
    checkEndpointId(endpointId, 'endpoint');
    return this.locked(() => this.ownedBy(endpointId));
  }

  /** Frees the address of `endpointId`; returns it, or undefined if the id held none. Idempotent. */
  release(endpointId: string): string | undefined {
    checkEndpointId(endpointId, 'endpoint');
    return this.locked(() => {
      const indexFile = join(this.byIdDir, endpointId);
      const ip = readText(indexFile);
      if (ip === undefined) return undefined;
      let freed: string | undefined;
      if (this.isHandable(ip) && readText(join(this.ipsDir, ip)) === endpointId) {
        removeFile(join(this.ipsDir, ip));
        freed = ip;
      }
      removeFile(indexFile);
      return freed;
    });
  }

  /** All reservations, in address order. */
  list(): IpamAllocation[] {
    return this.locked(() => {
      const out: Array<IpamAllocation & { n: bigint }> = [];
      for (const ip of this.readReserved()) {
        out.push({ ip, endpointId: readText(join(this.ipsDir, ip)) ?? '', n: ipToBig(ip) });
      }
      out.sort((a, b) => (a.n < b.n ? -1 : a.n > b.n ? 1 : 0));
      return out.map(({ ip, endpointId }) => ({ ip, endpointId }));
    });
  }

  /**
   * Frees every reservation whose owner `isLive` rejects (crash leftovers), unless a live
   * endpoint holds that address (`holderOf`: its record names it): then the reservation was
   * damaged, not abandoned, and it is written back for that endpoint, since freeing it would hand
   * a live address out twice. Returns the freed and the restored addresses. O(addresses in use):
   * meant for recovery, not the connect path.
   */
  gc(isLive: (endpointId: string) => boolean, holderOf: (ip: string) => string | undefined = () => undefined): { freed: string[]; restored: { ip: string; endpointId: string }[] } {
    return this.locked(() => {
      const freed: string[] = [];
      const restored: { ip: string; endpointId: string }[] = [];
      const seen = new Set<string>();
      for (const ip of this.readReserved()) {
        seen.add(ip);
        const owner = readText(join(this.ipsDir, ip)) ?? '';
        if (owner !== '' && isLive(owner)) continue;
        const holder = holderOf(ip);
        if (holder !== undefined && isLive(holder)) {
          this.writeReservation(ip, holder);
          restored.push({ ip, endpointId: holder });
          continue;
        }
        removeFile(join(this.ipsDir, ip));
        if (owner !== '' && readText(join(this.byIdDir, owner)) === ip) removeFile(join(this.byIdDir, owner));
        freed.push(ip);
      }
      return { freed, restored };
    });
  }

  /** Reserves `ip` for `endpointId` whatever the file held (a repair of a damaged reservation); the caller holds the lock. */
  private writeReservation(ip: string, endpointId: string): void {
    ensureDir(this.ipsDir);
    ensureDir(this.byIdDir);
    writeFileAtomic(join(this.ipsDir, ip), endpointId, this.store.writeOptions);
    writeFileAtomic(join(this.byIdDir, endpointId), ip, this.store.writeOptions);
  }

  /**
   * Writes back the reservations of live endpoints that are missing altogether (a file deleted):
   * `held` maps each address a live endpoint's record names to that endpoint. Returns them.
   */
  restoreMissing(held: ReadonlyMap<string, string>): { ip: string; endpointId: string }[] {
    return this.locked(() => {
      const have = new Set(this.readReserved());
      const out: { ip: string; endpointId: string }[] = [];
      for (const [ip, endpointId] of held) {
        if (have.has(ip) || !this.isHandable(ip)) continue;
        this.writeReservation(ip, endpointId);
        out.push({ ip, endpointId });
      }
      return out;
    });
  }

  private locked<T>(fn: () => T): T {
    return this.store.withIpamLockSync(this.network, fn, this.lockOptions);
  }

  private isHandable(ip: string): boolean {
    if (ipFamily(ip) !== this.subnet.family) return false;
    let n: bigint;
    try {
      n = ipToBig(ip);
    } catch (e) {
      if (e instanceof ValidationError) return false;
      throw e;
    }
    // Only the canonical spelling is a reservation name, so one address has one file.
    return n >= this.first && n <= this.lastHost && n !== this.gateway && bigToIp(n, this.subnet.family) === ip;
  }

  /** The id's address via its index file, checked against the reservation it points to. */
  private ownedBy(endpointId: string): string | undefined {
    const indexFile = join(this.byIdDir, endpointId);
    const ip = readText(indexFile);
    if (ip === undefined) return undefined;
    if (this.isHandable(ip)) {
      const owner = readText(join(this.ipsDir, ip));
      if (owner === endpointId) return ip;
      // The reservation vanished (removed by hand): take the address back if still free.
      if (owner === undefined && this.tryReserve(ip, endpointId)) return ip;
    }
    removeFile(indexFile);
    return undefined;
  }

  /** The reservations of this subnet's family (both families share ips/). */
  private readReserved(): string[] {
    try {
      return readdirSync(this.ipsDir).filter((n) => !n.startsWith('.') && ipFamily(n) === this.subnet.family);
    } catch (e) {
      if (errCode(e) === 'ENOENT') return [];
      throw e;
    }
  }

  private cursor(): bigint {
    const text = readText(this.cursorFile)?.trim();
    if (text !== undefined && this.isHandable(text)) return ipToBig(text);
    return this.first - 1n; // so the first candidate is the first host
  }

  /**
   * The cursor is only a hint (a bad value restarts at the first host) and is written under
   * the lock, so an in-place write of a fixed-width line is enough; it saves a temp file and
   * a rename on every connect.
   */
  private setCursor(ip: string): void {
    const file = this.cursorFile;
    let fd: number;
    try {
      fd = openSync(file, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_NOFOLLOW, 0o600);
    } catch (e) {
      if (errCode(e) !== 'ENOENT') throw e;
      ensureDir(this.dir);
      fd = openSync(file, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_NOFOLLOW, 0o600);
    }
    try {
      writeSync(fd, `${ip.padEnd(this.subnet.family === 6 ? 39 : 15)}\n`, 0);
    } finally {
      closeSync(fd);
    }
  }

  /** Steps to the next host after `n`, wrapping at the end of the range and skipping the gateway. */
  private next(n: bigint): bigint {
    let m = n >= this.lastHost ? this.first : n + 1n;
    if (m === this.gateway) m = m >= this.lastHost ? this.first : m + 1n;
    return m;
  }

  /** O_EXCL create of ips/<ip> with the owner inside; false when someone holds it. */
  private tryReserve(ip: string, endpointId: string): boolean {
    return createExclusive(join(this.ipsDir, ip), endpointId, this.store.writeOptions);
  }

  private reserveNext(endpointId: string): string {
    if (this.capacity <= 0n) this.full();
    const family = this.subnet.family;
    const start = this.cursor();
    // Fast path: after the cursor the range is usually free, so one O_EXCL create wins.
    let n = start;
    const probes = this.capacity < BigInt(PROBES_BEFORE_SCAN) ? Number(this.capacity) : PROBES_BEFORE_SCAN;
    for (let i = 0; i < probes; i++) {
      n = this.next(n);
      const ip = bigToIp(n, family);
      if (this.tryReserve(ip, endpointId)) return ip;
    }
    // Dense region: one directory read instead of a failing syscall per taken address. With
    // `taken` addresses held, one more step than that always reaches a free one, so the walk is
    // bounded by what is in use, not by the size of the range (2^64 for an IPv6 /64).
    const taken = new Set(this.readReserved());
    const steps = this.capacity < BigInt(taken.size + 1) ? Number(this.capacity) : taken.size + 1;
    for (let i = 0; i < steps; i++) {
      n = this.next(n);
      const ip = bigToIp(n, family);
      if (!taken.has(ip) && this.tryReserve(ip, endpointId)) return ip;
    }
    this.full();
  }

  private full(): never {
    throw new IpamError('EIPAMFULL', this.network, this.subnet.subnet, `no free address left (${this.capacity} in use)`);
  }
}
