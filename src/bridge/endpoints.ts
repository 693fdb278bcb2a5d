/**
 * Endpoints: connecting containers to a bridge network and disconnecting them, one or many
 * at a time. Many share the expensive parts: one sendto creates every veth, one sendto
 * deletes them, one iptables-restore run writes or removes every port mapping.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { existsSync, rmdirSync, statSync } from 'node:fs';
import type { Rtnl } from '../netlink/rtnl.js';
import * as L from '../netlink/link.js';
import * as A from '../netlink/addr.js';
import * as R from '../netlink/route.js';
import { validateIfname, validateU32 } from '../netlink/validate.js';
import { NetnsHandle, openNetns, openSocketIn, type NetnsSpec } from '../ns/netns.js';
import { mappingsOverlap, type EndpointRuleSpec, type IptablesOptions, type PortMapping } from '../iptables/index.js';
import { Store, assertSafeName, createExclusive, ensureDir, readText, removeFile, listNames, withLockSync } from './store.js';
import { Ipam, IpamError } from './ipam.js';
import { ValidationError } from '../errors.js';
import { normalizeMappings, formatMapping } from './ports.js';
import { NetworkError } from './errors.js';
import { Steps } from './steps.js';
import { addEndpointRules, removeEndpointRules, undoFailedAdd } from './firewall.js';
import type { EndpointRecord, NetworkRecord } from './types.js';

/** A container: its pid, a netns path or name, or an open handle (not closed by us). */
export type ContainerRef = number | NetnsSpec | NetnsHandle;

/** Options for connect(). */
export interface ConnectOptions {
  /** Endpoint id (default: random 12 hex digits); connect is refused if it exists. */
  id?: string;
  /** Interface name inside the container (default eth0). */
  ifname?: string;
  /** '8080:80', '53:53/udp', '127.0.0.1:8080:80' or objects. */
  ports?: readonly (string | PortMapping)[];
  mtu?: number;
  /**
   * Give both veth ends an IPv6 link-local address (default false). Networks are IPv4-only,
   * and like Docker on IPv4-only networks we leave IPv6 link-local off: each new port's DAD,
   * router solicitation and MLD packets are flooded to every port of the bridge, which made
   * connect 3.5x slower at 1000 endpoints in the bench.
   */
  ipv6LinkLocal?: boolean;
}

/** What the endpoint functions need from the Networks manager. */
export interface EndpointContext {
  store: Store;
  host: Rtnl;
  iptables: IptablesOptions;
  /** A new socket in the host netns, for asynchronous requests that must not share one. */
  openHostSocket(): Rtnl;
  bridgeIndexOf(net: NetworkRecord, refresh?: boolean): number;
  allRuleState(): { networks: NetworkRecord[]; endpoints: EndpointRuleSpec[] };
}

const VETH_NAME_ATTEMPTS = 8;

/** Docker's scheme: 02:42 followed by the IPv4 address, so a MAC never collides on the bridge. */
export function macForIp(ip: string): string {
  return ['02', '42', ...ip.split('.').map((x) => Number(x).toString(16).padStart(2, '0'))].join(':');
}

/** Opens the container's netns from a pid, spec or handle; a missing one is a clear SysError. */
export function openContainer(c: ContainerRef): NetnsHandle {
  if (c instanceof NetnsHandle) return c;
  if (typeof c === 'number') return openNetns({ pid: c });
  return openNetns(c);
}

interface Plan {
  id: string;
  ifname: string;
  mappings: PortMapping[];
  mtu: number | undefined;
  linkLocal: boolean;
  ns: NetnsHandle;
  owned: boolean;
  marker: string;
  ip?: string;
  hostIfname?: string;
  hostIndex?: number;
  peerIndex?: number;
}

/** st_dev-st_ino of a netns: how records and markers name a container's namespace. */
export function netnsKey(ns: NetnsHandle): string {
  return `${ns.dev}-${ns.ino}`;
}

function markerFile(store: Store, network: string, key: string): string {
  return join(store.networkDir(network), 'netns', key);
}

/** Drops an endpoint's O_EXCL claims: its container marker and its id. */
function releaseClaims(store: Store, network: string, key: string, id: string): void {
  removeFile(markerFile(store, network, key));
  removeFile(idClaim(store, network, id));
}

/** A promise of null on success or of the error: never rejects, so no rejection goes unhandled while it runs. */
function settle(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => null,
    (e: unknown) => e ?? new Error('rejected without a reason'),
  );
}

/** Errors that answer the caller (taken, full, invalid) rather than report a failure half-way. */
function isRefusal(e: unknown): boolean {
  return e instanceof NetworkError || e instanceof ValidationError || e instanceof IpamError;
}

/** Validates everything before anything is touched: names, ids, port specs, duplicates. */
function validate(net: NetworkRecord, items: readonly { container: ContainerRef; opts?: ConnectOptions }[]) {
  const seenIds = new Set<string>();
  const all: PortMapping[] = [];
  return items.map(({ opts = {} }) => {
    const ifname = validateIfname(opts.ifname ?? 'eth0', 'container interface name');
    const mappings = normalizeMappings(opts.ports);
    for (const m of mappings) {
      const dup = all.find((o) => mappingsOverlap(o, m));
      if (dup) throw new NetworkError('EPORTINUSE', `host port ${formatMapping(m)} is requested twice`);
      all.push(m);
    }
    const id = opts.id ?? randomBytes(6).toString('hex');
    assertSafeName('endpoint', id);
    if (seenIds.has(id)) throw new NetworkError('EALREADY', `endpoint id ${id} given twice`);
    seenIds.add(id);
    if (opts.mtu !== undefined) validateU32(opts.mtu, 'mtu', 68, 65535);
    return { id, ifname, mappings, mtu: opts.mtu ?? net.mtu, linkLocal: opts.ipv6LinkLocal ?? false };
  });
}

/**
 * Connects containers: IP, veth (peer created in place, enslaved, up), address, lo up,
 * default route, port mappings. All or nothing: a failure undoes every container's steps.
 */
export async function connectMany(
  ctx: EndpointContext,
  net: NetworkRecord,
  items: readonly { container: ContainerRef; opts?: ConnectOptions }[],
  timings?: (t: readonly { step: string; ms: number; kernelMs?: number }[]) => void,
): Promise<EndpointRecord[]> {
  const specs = validate(net, items);
  const steps = new Steps(items.length === 1 ? `connect ${specs[0]!.id} to ${net.name}` : `connect ${items.length} containers to ${net.name}`);
  const plans: Plan[] = [];
  try {
    // A missing container is reported as the SysError it is (ENOENT, ESRCH), before anything is done.
    items.forEach((it, i) => {
      const ns = openContainer(it.container);
      plans.push({ ...specs[i]!, ns, owned: ns !== it.container, marker: markerFile(ctx.store, net.name, netnsKey(ns)) });
    });
    await clearStaleMarkers(ctx, net, plans);
    steps.run('check container', () => checkContainers(ctx, net, plans), () => plans.forEach((p) => releaseClaims(ctx.store, net.name, netnsKey(p.ns), p.id)));
    steps.run('reserve ports', () => reservePorts(ctx.store, plans), () => plans.forEach((p) => releasePorts(ctx.store, p.mappings)));
    const ipam = new Ipam(ctx.store, net.name, `${net.gateway}/${net.prefix}`);
    // One lock hold for the whole group (Ipam re-enters it) instead of one per container.
    steps.run(
      'allocate IP',
      () =>
        ctx.store.withNetworkLockSync(net.name, () => {
          // `network rm` holds this lock while it deletes: re-check under it that the network is still there.
          if (!existsSync(ctx.store.networkFile(net.name))) throw new NetworkError('ENONET', `network ${net.name} was removed`);
          plans.forEach((p) => (p.ip = ipam.allocate(p.id)));
        }),
      () => plans.forEach((p) => ipam.release(p.id)),
    );
    // The iptables-restore run needs only ids, IPs and mappings: start it now so the process
    // works while the kernel makes the veths, and wait for it at the end (connect -p costs
    // about the slower of the two, not their sum).
    const published = plans.filter((p) => p.mappings.length > 0).map((p) => ({ id: p.id, ip: p.ip!, mappings: p.mappings }));
    const rules = published.length > 0 ? settle(addEndpointRules(net, published, ctx.allRuleState, ctx.iptables)) : undefined;
    if (rules) {
      // Undone whether it succeeded or not: on nft a failed run may have committed some tables.
      steps.run('start port mappings', () => rules, async () => {
        if ((await rules) === null) await removeEndpointRules(published, ctx.allRuleState, ctx.iptables);
        else await undoFailedAdd(published, ctx.allRuleState, ctx.iptables);
      });
    }
    steps.run('create veth', () => createVeths(ctx, net, plans), () => deleteLinks(ctx.host, plans.map((p) => p.hostIfname)));
    steps.run('configure container', () => plans.forEach((p) => configureContainer(p, `${p.ip}/${net.prefix}`, net.gateway)));
    steps.run('host side up', () => finishHostSide(ctx.host, plans));
    const now = new Date().toISOString();
    const recs = plans.map(
      (p): EndpointRecord => ({
        id: p.id, network: net.name, ip: p.ip!, cidr: `${p.ip}/${net.prefix}`, mac: macForIp(p.ip!), gateway: net.gateway,
        hostIfname: p.hostIfname!, ifname: p.ifname, netns: p.ns.path, netnsKey: netnsKey(p.ns), mappings: p.mappings, createdAt: now,
      }),
    );
    steps.run('save endpoint', () => recs.forEach((r) => ctx.store.putEndpoint(net.name, r.id, r)), () => recs.forEach((r) => ctx.store.removeEndpoint(net.name, r.id)));
    if (rules) {
      await steps.runAsync('port mappings', async () => {
        const err = await rules;
        if (err !== null) throw err;
      });
    }
    return recs;
  } catch (e) {
    if (steps.timings.length === 0 && plans.length < items.length) throw e;
    return await steps.fail(e, isRefusal);
  } finally {
    for (const p of plans) if (p.owned) p.ns.close();
    timings?.(steps.timings);
  }
}

function idClaim(store: Store, network: string, id: string): string {
  return join(store.networkDir(network), 'ids', id);
}

/**
 * Claims each endpoint id and each container netns with O_EXCL files, so two processes can
 * neither connect the same container twice nor share an id (and with it an IP) at once.
 */
function checkContainers(ctx: EndpointContext, net: NetworkRecord, plans: Plan[]): void {
  ctx.store.init();
  const made: string[] = [];
  try {
    for (const p of plans) {
      const claim = idClaim(ctx.store, net.name, p.id);
      if (!createExclusive(claim, p.id, ctx.store.writeOptions)) throw new NetworkError('EALREADY', `endpoint ${p.id} already exists on ${net.name}`);
      made.push(claim);
      if (!createExclusive(p.marker, p.id, ctx.store.writeOptions)) throw new NetworkError('EALREADY', `container ${p.ns.path} is already connected to ${net.name}`);
      made.push(p.marker);
    }
  } catch (e) {
    made.forEach((m) => removeFile(m));
    throw e;
  }
}

/** How long a claim without a record may live before it counts as a crashed connect's leftover. */
const STALE_CLAIM_MS = 60_000;

/**
 * Netns inode numbers are reused as soon as a namespace dies, so a container that died
 * without a disconnect leaves a marker that a new container can hit. Its endpoint is stale
 * when its host veth is gone (the kernel deleted the pair with the netns): disconnect it.
 * A marker without a record is a crashed connect's leftover once it is old enough.
 */
async function clearStaleMarkers(ctx: EndpointContext, net: NetworkRecord, plans: readonly Plan[]): Promise<void> {
  const stale: string[] = [];
  for (const p of plans) {
    const owner = readText(p.marker)?.trim();
    if (!owner) continue;
    const rec = ctx.store.getEndpoint<EndpointRecord>(net.name, owner);
    if (rec) {
      if (!linkExists(ctx.host, rec.hostIfname)) stale.push(owner);
    } else if (Date.now() - mtimeMs(p.marker) > STALE_CLAIM_MS) {
      removeFile(p.marker);
      removeFile(idClaim(ctx.store, net.name, owner));
    }
  }
  if (stale.length > 0) await disconnectMany(ctx, net, stale);
}

/**
 * Frees what a connect that crashed half-way left behind: id claims, netns markers, IPs and
 * host ports whose owner has no record. Only leftovers older than STALE_CLAIM_MS count, so a
 * connect still in flight in another process is never touched. Returns the freed owner ids.
 */
export function collectLeftovers(store: Store, nets: readonly NetworkRecord[]): string[] {
  const live = new Set<string>();
  for (const n of nets) for (const id of store.listEndpointIds(n.name)) live.add(`${n.name}/${id}`);
  const old = (f: string): boolean => Date.now() - mtimeMs(f) > STALE_CLAIM_MS;
  const freed = new Set<string>();
  for (const n of nets) {
    const dir = store.networkDir(n.name);
    const claims = listNames(join(dir, 'ids'));
    const dead = new Set(claims.filter((id) => !live.has(`${n.name}/${id}`) && old(join(dir, 'ids', id))));
    const young = new Set(claims.filter((id) => !dead.has(id)));
    // A connect claims its id before it allocates, so an IP whose owner has neither a record
    // nor a young claim belongs to a connect that died.
    new Ipam(store, n.name, `${n.gateway}/${n.prefix}`).gc((id) => live.has(`${n.name}/${id}`) || young.has(id));
    for (const key of listNames(join(dir, 'netns'))) {
      const f = join(dir, 'netns', key);
      const owner = readText(f)?.trim() ?? '';
      if (!live.has(`${n.name}/${owner}`) && old(f)) removeFile(f);
    }
    for (const id of dead) {
      removeFile(join(dir, 'ids', id));
      freed.add(id);
    }
  }
  const ownerIds = new Set([...live].map((k) => k.slice(k.indexOf('/') + 1)));
  const ports = join(store.root, 'ports');
  for (const p of listNames(ports)) {
    for (const ip of listNames(join(ports, p))) {
      const f = join(ports, p, ip);
      const owner = readText(f)?.trim() ?? '';
      if (!ownerIds.has(owner) && old(f)) {
        removeFile(f);
        freed.add(owner);
      }
    }
    try {
      rmdirSync(join(ports, p));
    } catch {
      /* still held */
    }
  }
  return [...freed];
}

function mtimeMs(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return Date.now();
  }
}

/** True when a link of that name exists in the host netns. */
export function linkExists(host: Rtnl, name: string): boolean {
  try {
    host.linkGet(name);
    return true;
  } catch (e) {
    if ((e as { code?: string }).code === 'ENODEV') return false;
    throw e;
  }
}

/** ROOT/ports/<proto>-<port>/<host IP>: one small directory per port, so a check reads only that port's holders. */
function portDir(store: Store, m: PortMapping): string {
  return join(store.root, 'ports', `${m.protocol}-${m.hostPort}`);
}

function portFile(store: Store, m: PortMapping): string {
  return join(portDir(store, m), m.hostIp ?? '0.0.0.0');
}

/** Reserves host ports across all networks under one lock; a clash is EPORTINUSE naming the holder. */
function reservePorts(store: Store, plans: readonly Plan[]): void {
  if (plans.every((p) => p.mappings.length === 0)) return;
  store.init();
  withLockSync(join(store.root, 'ports.lock'), () => {
    const made: string[] = [];
    try {
      for (const p of plans) {
        for (const m of p.mappings) {
          // A wildcard mapping clashes with any IP on that port, a specific one with the wildcard or itself.
          const holders = listNames(portDir(store, m));
          const clash = holders.find((ip) => ip === '0.0.0.0' || m.hostIp === undefined || ip === m.hostIp);
          if (clash) throw new NetworkError('EPORTINUSE', `host port ${formatMapping(m)} is already published (on ${clash})`);
          ensureDir(portDir(store, m));
          if (!createExclusive(portFile(store, m), p.id, store.writeOptions)) throw new NetworkError('EPORTINUSE', `host port ${formatMapping(m)} is already published`);
          made.push(portFile(store, m));
        }
      }
    } catch (e) {
      for (const f of made) removeFile(f);
      throw e;
    }
  }, { timeoutMs: store.lockTimeoutMs });
}

function releasePorts(store: Store, mappings: readonly PortMapping[]): void {
  for (const m of mappings) {
    removeFile(portFile(store, m));
    try {
      rmdirSync(portDir(store, m));
    } catch {
      /* another IP still holds this port */
    }
  }
}

/**
 * One sendto per 16 pairs: per container an RTM_NEWLINK (peer in its netns under its final
 * name, host end enslaved) and a GETLINK for both ifindexes. A random host name that is taken
 * (EEXIST while the name resolves) is retried with another, as CNI does.
 */
function createVeths(ctx: EndpointContext, net: NetworkRecord, plans: Plan[]): void {
  let pending = plans;
  let refreshed = false;
  let attempted: string[] = [];
  try {
    for (let attempt = 0; pending.length > 0; attempt++) {
      if (attempt >= VETH_NAME_ATTEMPTS) throw new NetworkError('EALREADY', `no free host-side veth name after ${VETH_NAME_ATTEMPTS} attempts`);
      const master = ctx.bridgeIndexOf(net);
      const names = pending.map(() => `veth${randomBytes(4).toString('hex')}`);
      attempted = names;
      const reqs = pending.flatMap((p, i) => [
        L.addVethRequest(
          names[i]!,
          { name: p.ifname, netnsFd: p.ns.fd, mac: macForIp(p.ip!), ...(p.mtu !== undefined ? { mtu: p.mtu } : {}) },
          // Without link-local the host end goes up only after its addrgenmode is set (finishHostSide).
          { master, up: p.linkLocal, ...(p.mtu !== undefined ? { mtu: p.mtu } : {}) },
        ),
        L.getRequest(names[i]!),
      ]);
      const res = ctx.host.batch(reqs);
      attempted = [];
      const retry: Plan[] = [];
      let failure: unknown;
      let staleBridge = false;
      pending.forEach((p, i) => {
        const made = res[2 * i]!;
        const got = res[2 * i + 1]!;
        if (!made.error) {
          p.hostIfname = names[i]!;
          const link = L.peekLinkIndexes(got.replies[0]!);
          p.hostIndex = link.index;
          if (link.peerIndex === undefined) failure ??= new NetworkError('ENOENDPOINT', `kernel did not report the peer of ${p.hostIfname}`);
          else p.peerIndex = link.peerIndex;
        } else if (made.error.code === 'EEXIST' && !got.error) retry.push(p);
        else if (made.error.code === 'EEXIST') failure ??= new NetworkError('EALREADY', `interface ${p.ifname} already exists in container netns ${p.ns.path}`);
        else if (made.error.code === 'EXFULL') failure ??= new NetworkError('EBRIDGEFULL', `bridge ${net.bridge} is full: Linux bridges hold at most 1023 ports`);
        else if (made.error.code === 'ENODEV' && !refreshed) {
          staleBridge = true;
          retry.push(p);
        } else failure ??= made.error;
      });
      if (failure) throw failure;
      if (staleBridge) {
        // The bridge was recreated since its ifindex was cached.
        refreshed = true;
        ctx.bridgeIndexOf(net, true);
      }
      pending = retry;
    }
  } catch (e) {
    // `attempted` is non-empty only if the batch itself failed (timeout, overflow): which of
    // those names were created is unknown, so each is deleted if it exists.
    deleteLinks(ctx.host, [...plans.map((p) => p.hostIfname), ...attempted]);
    plans.forEach((p) => {
      delete p.hostIfname;
      delete p.hostIndex;
    });
    throw e;
  }
}

/** Host ends: addrgenmode none (before up, so no link-local is made), hairpin for published ports, up. */
function finishHostSide(host: Rtnl, plans: readonly Plan[]): void {
  const reqs = plans.flatMap((p) => [
    ...(p.linkLocal ? [] : [L.setAddrGenModeRequest(p.hostIndex!, 'none')]),
    // Hairpin lets a container reach its own published port through the host's address.
    ...(p.mappings.length > 0 ? [L.setHairpinRequest(p.hostIndex!, true)] : []),
    ...(p.linkLocal ? [] : [L.setUpRequest(p.hostIndex!)]),
  ]);
  for (const r of host.batch(reqs)) if (r.error) throw r.error;
}

/**
 * Deletes links by name; ENODEV (already gone, e.g. with its netns) is fine. Several links are
 * first moved into a fresh random device group and deleted as one group: one RCU grace period
 * for all of them instead of ~20 ms each. The group number is random in [2^30, 2^31), far
 * from the small numbers administrators use, so no foreign link is in it.
 */
export function deleteLinks(host: Rtnl, names: readonly (string | undefined)[]): void {
  const todo = names.filter((n): n is string => n !== undefined);
  if (todo.length >= 2) {
    const group = 0x40000000 + randomBytes(4).readUInt32LE() % 0x40000000;
    const res = host.batch(todo.map((n) => L.setGroupRequest(n, group)));
    const grouped = res.filter((r) => !r.error).length;
    for (const r of res) if (r.error && r.error.code !== 'ENODEV') throw r.error;
    if (grouped > 0) host.batchOrThrow([L.deleteGroupRequest(group)]);
    return;
  }
  for (const r of host.batch(todo.map((n) => L.deleteRequest(n)))) if (r.error && r.error.code !== 'ENODEV') throw r.error;
}

/**
 * Deletes links off the JS thread: each deletion waits for an RCU grace period inside the
 * kernel (~15-20 ms), which would otherwise freeze the event loop. Several go as one device
 * group, as in deleteLinks. Uses a socket of its own, so other work can go on meanwhile.
 */
export async function deleteLinksAsync(ctx: EndpointContext, names: readonly string[]): Promise<void> {
  if (names.length === 0) return;
  const sock = ctx.openHostSocket();
  try {
    let reqs = names.map((n) => L.deleteRequest(n));
    if (names.length >= 2) {
      const group = 0x40000000 + (randomBytes(4).readUInt32LE() % 0x40000000);
      const res = sock.batch(names.map((n) => L.setGroupRequest(n, group)));
      for (const r of res) if (r.error && r.error.code !== 'ENODEV') throw r.error;
      reqs = res.some((r) => !r.error) ? [L.deleteGroupRequest(group)] : [];
    }
    for (const r of await sock.batchAsync(reqs)) if (r.error && r.error.code !== 'ENODEV') throw r.error;
  } finally {
    sock.close();
  }
}

/** Container side in one pipelined batch: lo up, [addrgenmode none], IFNAME up, address, default route via the gateway. */
function configureContainer(p: Plan, cidr: string, gateway: string): void {
  const idx = p.peerIndex!;
  const sock = openSocketIn(p.ns);
  try {
    const res = sock.batch([
      L.setUpRequest('lo'),
      ...(p.linkLocal ? [] : [L.setAddrGenModeRequest(idx, 'none')]),
      L.setUpRequest(idx),
      A.addAddrRequest(idx, cidr),
      R.addRouteRequest({ gateway, oif: idx }),
    ]);
    for (const r of res) if (r.error) throw r.error;
  } finally {
    sock.close();
  }
}

/**
 * Disconnects endpoints: veths (one sendto), rules (one iptables-restore), IPs, records.
 * Idempotent: unknown ids are skipped; works when a container's netns is already gone.
 */
export async function disconnectMany(ctx: EndpointContext, net: NetworkRecord, ids: readonly string[]): Promise<number> {
  ids.forEach((id) => assertSafeName('endpoint', id));
  const eps = ids.map((id) => ctx.store.getEndpoint<EndpointRecord>(net.name, id)).filter((e): e is EndpointRecord => e !== undefined);
  if (eps.length === 0) return 0;
  await deleteLinksAsync(ctx, eps.map((e) => e.hostIfname));
  const published = eps.filter((e) => e.mappings.length > 0);
  if (published.length > 0) await removeEndpointRules(published, ctx.allRuleState, ctx.iptables);
  const ipam = new Ipam(ctx.store, net.name, `${net.gateway}/${net.prefix}`);
  for (const e of eps) {
    releasePorts(ctx.store, e.mappings);
    ipam.release(e.id);
    releaseClaims(ctx.store, net.name, e.netnsKey, e.id);
    // The record goes last: a crash before this point leaves it for a retry to finish.
    ctx.store.removeEndpoint(net.name, e.id);
  }
  return eps.length;
}
