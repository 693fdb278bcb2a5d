/**
 * Connecting containers to a bridge network: IP, veth (peer created in place, enslaved, up),
 * address, lo up, default route, port mappings. All or nothing.
 *
 * The whole connect holds the network's lock shared (connects and disconnects of one network run
 * side by side; create, rm, prune, repair and check take it exclusive, so they wait for every
 * one of them) and the lock of its endpoint, taken before anything of the endpoint is written.
 * It writes the endpoint's record as 'creating' before it changes the kernel; the record becomes
 * 'active' as the last step. A connect killed half-way therefore leaves a 'creating' record
 * naming everything it may have made (IP, ports, veth, rules), which whoever next takes the
 * endpoint's lock (or the network's, exclusive) can undo. With port mappings the record is
 * written under the firewall lock, right before the rules go in, so a concurrent rebuild of the
 * ruleset (repair, drift) either does not see the endpoint yet or sees it with its rules.
 */
import { ValidationError } from '../errors.js';
import { checkEndpointId, checkNetworkName } from '../names.js';
import { validateIfname, validateMac, validateU32 } from '../netlink/core/validate.js';
import { mappingsOverlap, type PortMapping } from '../firewall/types.js';
import { NetworkError } from './errors.js';
import { findHostListeners, HostListenerError } from './listeners.js';
import { Ipam, IpamError } from './ipam.js';
import { normalizeMappings, formatMapping } from './ports.js';
import { Steps } from './steps.js';
import { checkAttachment, macForIp, subnetsOf, type AddressRecord, type EndpointAttachment, type EndpointRecord, type NetworkRecord } from './records.js';
import { canonicalIp, ipFamily } from '../ip/cidr.js';
import { randomHex, StoreError } from '../sys/fsio.js';
import { changeEndpointRules, desiredFirewall, DUMP_RETRIES, fwEndpoint, fwNetwork, withDriftRepair, type BridgeContext } from './context.js';
import { netnsKey, type ContainerRef } from './host.js';
import type { Rtnl } from '../netlink/route/rtnl.js';
import { configureContainer, createVeths, deleteLinks, deleteLinksAsync, findLink, hostSideRequests, randomVethName, type Batcher, type VethPlan } from './links.js';
import { rtnlBusy, timedRtnl } from './rtnl-lock.js';
import { portOwner, teardownEndpoints } from './teardown.js';
import { FORWARDING } from './lifecycle.js';
import { applyShaping, checkBandwidth, ownIfbs, type Bandwidth } from './shaping.js';
import { nextTurn, turnDue, yieldTurn } from '../sys/turn.js';

/** Options for connect(). */
export interface ConnectOptions {
  /** Endpoint id (default: random 12 hex digits); connect is refused if it exists. */
  id?: string;
  /** Interface name inside the container (default eth0, or the next free ethN on a second network). */
  ifname?: string;
  /** '8080:80', '53:53/udp', '127.0.0.1:8080:80' or objects. */
  ports?: readonly (string | PortMapping)[];
  mtu?: number;
  /**
   * Give both veth ends an IPv6 link-local address (default false). The container end gets one
   * anyway on a network with an IPv6 subnet; on an IPv4-only network neither does, because each
   * new port's DAD, router solicitation and MLD packets are flooded to every port of the bridge,
   * which made connect 3.5x slower at 1000 endpoints in the bench.
   */
  ipv6LinkLocal?: boolean;
  /** Accept the host's own netns (ours or PID 1's) as the container; refused by default. */
  allowHostNetns?: boolean;
  /**
   * Publish a port even when a host process listens on it (TCP) or is bound to it (UDP) on an
   * overlapping address: the container then takes that process's traffic. Refused by default
   * (EHOSTLISTENER, naming the process).
   */
  allowHostListener?: boolean;
  /**
   * The address to give the container, or one address per family on a dual-stack network
   * (default: the next free one of each subnet); EIPINUSE when one is taken.
   */
  ip?: string | readonly string[];
  /** The container interface's MAC (default: 02:42 followed by the address). */
  mac?: string;
  /** Install the default route via the gateway (default true; never on an internal network). */
  defaultRoute?: boolean;
  /** The CNI attachment (CNI_CONTAINERID, CNI_IFNAME) this endpoint is, kept in its record. */
  attachment?: EndpointAttachment;
  /**
   * Rate limits in bits per second and bits, as Kubernetes and CNI give them: `ingress` is
   * traffic to the container (a TBF on the host veth), `egress` traffic from it (an ifb with a
   * TBF, fed by a redirect on the host veth). `tc qdisc add dev VETH root tbf rate R burst B latency 25ms`
   */
  bandwidth?: Bandwidth;
}

/** One container to connect. */
export interface ConnectItem {
  container: ContainerRef;
  opts?: ConnectOptions;
}

interface Plan extends VethPlan {
  mappings: PortMapping[];
  owned: boolean;
  netnsKey: string;
  allowHostNetns: boolean;
  allowHostListener: boolean;
  ip?: string;
  addresses?: AddressRecord[];
  defaultRoute: boolean;
  /** At most one address per family. */
  requestedIps: string[];
  requestedMac: string | undefined;
  wantsDefaultRoute: boolean;
  attachment: EndpointAttachment | undefined;
  bandwidth: Bandwidth | undefined;
}

type Spec = Omit<Plan, 'ns' | 'owned' | 'netnsKey' | 'network' | 'hostIfname' | 'mac' | 'defaultRoute'>;

/** Errors that answer the caller (taken, full, invalid) rather than report a failure half-way. */
function isRefusal(e: unknown): boolean {
  return e instanceof NetworkError || e instanceof ValidationError || e instanceof IpamError || e instanceof StoreError;
}

/** A promise of null on success or of the error: never rejects, so no rejection goes unhandled while it runs. */
function settle(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => null,
    (e: unknown) => e ?? new Error('rejected without a reason'),
  );
}

/** The requested addresses, canonical: one, or a list with at most one per family. */
function requestedIps(v: ConnectOptions['ip']): string[] {
  if (v === undefined) return [];
  const list = typeof v === 'string' ? [v] : Array.isArray(v) ? v : undefined;
  if (list === undefined) throw new ValidationError('ip', 'must be an address or a list of addresses (one per family)');
  const ips = list.map((a, i) => canonicalIp(String(a), list.length > 1 ? `ip[${i}]` : 'ip'));
  const twice = ips.find((a, i) => ips.findIndex((b) => ipFamily(b) === ipFamily(a)) !== i);
  if (twice !== undefined) throw new ValidationError('ip', `two IPv${ipFamily(twice)} addresses requested (${ips.filter((a) => ipFamily(a) === ipFamily(twice)).join(', ')}): an endpoint has one address per family`);
  return ips;
}

/** Validates everything before anything is touched: names, ids, port specs, duplicates. */
function validate(items: readonly ConnectItem[]): Spec[] {
  const seenIds = new Set<string>();
  const all: PortMapping[] = [];
  return items.map(({ opts = {} }) => {
    if (typeof opts !== 'object' || opts === null) throw new ValidationError('options', 'must be an object');
    const ifname = validateIfname(opts.ifname ?? 'eth0', 'container interface name');
    const mappings = normalizeMappings(opts.ports);
    for (const m of mappings) {
      const dup = all.find((o) => mappingsOverlap(o, m));
      if (dup) throw new NetworkError('EPORTINUSE', `host port ${formatMapping(m)} is requested twice`);
      all.push(m);
    }
    const id = checkEndpointId(opts.id ?? randomHex(6), 'endpoint id');
    if (seenIds.has(id)) throw new NetworkError('EALREADY', `endpoint id ${id} given twice`);
    seenIds.add(id);
    if (opts.mtu !== undefined) validateU32(opts.mtu, 'mtu', 68, 65535);
    if (opts.defaultRoute !== undefined && typeof opts.defaultRoute !== 'boolean') throw new ValidationError('defaultRoute', 'must be true or false');
    return {
      id, ifname, ifnameGiven: opts.ifname !== undefined, mappings, mtu: opts.mtu, linkLocal: opts.ipv6LinkLocal ?? false, containerLinkLocal: opts.ipv6LinkLocal ?? false,
      allowHostNetns: opts.allowHostNetns === true,
      allowHostListener: opts.allowHostListener === true,
      requestedIps: requestedIps(opts.ip),
      requestedMac: opts.mac === undefined ? undefined : validateMac(opts.mac, 'mac').toLowerCase(),
      wantsDefaultRoute: opts.defaultRoute ?? true,
      attachment: opts.attachment === undefined ? undefined : checkAttachment(opts.attachment),
      // A bucket smaller than one packet of the veth's MTU (the kernel's 1500 unless given) is refused.
      bandwidth: checkBandwidth(opts.bandwidth, opts.mtu ?? 1500),
    };
  });
}

/**
 * Connects containers to `network`; one sendto creates every veth and one firewall change adds
 * every mapping. `mydocker run -net NAME -p H:C` / CNI bridge ADD
 */
export async function connectMany(
  ctx: BridgeContext,
  network: string,
  items: readonly ConnectItem[],
  onTimings?: (t: readonly { step: string; ms: number; kernelMs?: number }[]) => void,
): Promise<EndpointRecord[]> {
  checkNetworkName(network, 'network');
  const specs = validate(items);
  const plans: Plan[] = [];
  try {
    // A missing container is reported as the SysError it is (ENOENT, ESRCH), before anything is done.
    items.forEach((it, i) => {
      const ns = ctx.host.openContainer(it.container);
      const key = netnsKey(ns);
      plans.push({ ...specs[i]!, ns, owned: ns !== it.container, netnsKey: key, network, hostIfname: randomVethName(), mac: '', defaultRoute: false });
      if (!specs[i]!.allowHostNetns && ctx.host.hostNetnsKeys().includes(key)) {
        throw new NetworkError('EHOSTNETNS', `${ns.path} is the host's own network namespace: connecting it would give the host an ${specs[i]!.ifname}, an address and a default route; pass allowHostNetns (--allow-host-netns) if that is really meant`);
      }
      if (plans.some((p, j) => j < i && p.netnsKey === key)) throw new NetworkError('EALREADY', `container ${ns.path} is given twice`);
    });
    // Checked before the lock too, so that a typo does not leave a lock file behind.
    if (!ctx.store.hasNetwork(network)) throw new NetworkError('ENONET', `no such network: ${network}`);
    if (turnDue()) await yieldTurn();
    try {
      return await ctx.store.withNetworkLock(network, () => connectLocked(ctx, network, plans, onTimings), { shared: true });
    } catch (e) {
      // Removed while we waited for its lock: taking the lock re-made the directory; it goes again.
      if (e instanceof NetworkError && e.code === 'ENONET') await ctx.store.clearNetworkDirIfGone(network);
      throw e;
    }
  } finally {
    for (const p of plans) if (p.owned) p.ns.close();
  }
}

function activeNetwork(ctx: BridgeContext, name: string): Readonly<NetworkRecord> {
  const net = ctx.store.getNetwork(name);
  if (!net) throw new NetworkError('ENONET', `no such network: ${name}`);
  if (net.state !== 'active') {
    throw new NetworkError('ENONET', `network ${name} is ${net.state === 'creating' ? 'being created, or its creation was interrupted' : 'being removed'}; tsnetlink network prune settles it`);
  }
  return net;
}

async function connectLocked(ctx: BridgeContext, network: string, plans: Plan[], onTimings?: (t: readonly { step: string; ms: number; kernelMs?: number }[]) => void): Promise<EndpointRecord[]> {
  const net = activeNetwork(ctx, network);
  if (net.internal && plans.some((p) => p.mappings.length > 0)) {
    throw new ValidationError('ports', `network ${net.name} is internal: nothing outside it can reach its containers, so it publishes no ports`);
  }
  if (!net.internal) {
    for (const { family } of net.subnets) {
      const { path, name } = FORWARDING[family];
      if (ctx.host.readSysctl(path) === '0') {
        throw new NetworkError('ENOFORWARD', `${name} is 0 on this host: containers on ${net.name} would have no outbound IPv${family} traffic; tsnetlink network repair turns it back on`);
      }
    }
  }
  const v6 = net.subnets.some((s) => s.family === 6);
  for (const p of plans) p.containerLinkLocal = p.linkLocal || v6;
  checkFamilies(ctx, net, plans);
  checkHostListeners(ctx, net, plans);
  await clearContainerConflicts(ctx, net, plans);
  return await ctx.store.withEndpointLocks(net.name, plans.map((p) => p.id), async () => {
    for (const p of plans) await settleOwner(ctx, net, p, p.id, 'id');
    return await connectClaimed(ctx, net, plans, onTimings);
  });
}

/** The connect itself, holding the network's lock shared and the endpoints' locks, with nothing in the way. */
async function connectClaimed(ctx: BridgeContext, net: Readonly<NetworkRecord>, plans: Plan[], onTimings?: (t: readonly { step: string; ms: number; kernelMs?: number }[]) => void): Promise<EndpointRecord[]> {
  const label = plans.length === 1 ? `connect ${plans[0]!.id} to ${net.name}` : `connect ${plans.length} containers to ${net.name}`;
  const steps = new Steps(label, ctx.faults, 'connect');
  let hostRt: Rtnl | undefined;
  try {
    steps.run('check container', () => claimContainers(ctx, net, plans), () => releaseContainers(ctx, net, plans));
    steps.run('reserve ports', () => reservePorts(ctx, net, plans), () => releasePorts(ctx, net, plans));
    const ipams = subnetsOf(net).map((sub) => new Ipam(ctx.store, net.name, sub));
    steps.run(
      'allocate IP',
      () =>
        plans.forEach((p) => {
          // One address per subnet; the first (IPv4 on a dual-stack network) names the endpoint.
          // A requested address is taken from the subnet of its family.
          p.addresses = ipams.map((ipam) => {
            const wanted = p.requestedIps.find((ip) => ipFamily(ip) === ipam.subnet.family);
            const ip = ipam.allocate(p.id, wanted);
            return { family: ipam.subnet.family, ip, cidr: `${ip}/${ipam.subnet.prefix}`, gateway: ipam.subnet.gateway };
          });
          p.ip = p.addresses[0]!.ip;
          p.mac = p.requestedMac ?? macForIp(p.ip);
        }),
      () => plans.forEach((p) => ipams.forEach((ipam) => ipam.release(p.id))),
    );
    const now = new Date().toISOString();
    const recs = plans.map((p): EndpointRecord => ({
      id: p.id, network: net.name, ip: p.ip!, cidr: p.addresses![0]!.cidr, mac: p.mac, gateway: p.addresses![0]!.gateway, addresses: p.addresses!,
      hostIfname: p.hostIfname, ifname: p.ifname, netns: p.ns.path, netnsKey: p.netnsKey, mappings: p.mappings, defaultRoute: false, state: 'creating', createdAt: now,
      ...(p.attachment ? { attachment: p.attachment } : {}),
      ...(p.bandwidth ? { bandwidth: p.bandwidth } : {}),
    }));
    const published = recs.filter((r) => r.mappings.length > 0);
    const saveIntent = (): void =>
      void steps.run('save intent', () => recs.forEach((r) => ctx.store.createEndpoint(r)), () => recs.forEach((r) => ctx.store.removeEndpoint(net.name, r.id)));
    let rules: Promise<unknown> | undefined;
    if (published.length === 0) saveIntent();
    else {
      // The intent and the rules under the firewall lock, so a rebuild of the ruleset (repair,
      // drift) sees the endpoint with its rules or not at all. The veths need no firewall lock:
      // they are made once the intent is written, while the tool works, and the lock goes as
      // soon as the rules are in (where the backend needs it exclusive, every connect -p of the
      // host queues for it).
      let written!: () => void;
      const intent = new Promise<null>((r) => (written = () => r(null)));
      rules = settle(
        changeEndpointRules(
          ctx,
          net.name,
          () => {
            saveIntent();
            written();
          },
          () => ctx.firewall.addEndpoints(fwNetwork(net), published.map(fwEndpoint)),
        ),
      );
      // The lock wait or the intent failed (nothing of this connect is in the firewall), or the intent is written.
      const failedBefore = await Promise.race([intent, rules]);
      if (failedBefore !== null) throw failedBefore;
      steps.undoFirst('port mappings', async () => {
        const failed = (await rules) !== null;
        await ctx.store.withFirewallLock(async () => {
          published.forEach((r) => ctx.store.putEndpoint({ ...r, state: 'removing' }));
          try {
            await withDriftRepair(ctx, () => ctx.firewall.removeEndpoints(published.map(fwEndpoint)));
          } catch (e) {
            // An add that failed usually left nothing; the live ruleset decides whether it did.
            if (!failed || (await ctx.firewall.diff(desiredFirewall(ctx.store))).some((d) => d.kind === 'unexpected')) throw e;
          }
        });
      });
    }
    if (turnDue()) await yieldTurn();
    // The kernel requests go synchronously (a tenth of a millisecond each) unless the RTNL lock
    // is likely held for long: a link deletion of this process in flight, or a slow request a
    // moment ago. Then they go off the JS thread (a host socket of this connect's own, and one
    // per container in its netns), so that the wait for the lock is not the event loop's.
    const viaPromises = rtnlBusy();
    const host = viaPromises ? (hostRt = ctx.openHostRtnl()).promises : undefined;
    const batch: Batcher = host ? (reqs) => host.batch(reqs) : (reqs) => timedRtnl(() => ctx.rtnl.batch(reqs));
    const remove = (names: readonly string[]): unknown => (host ? deleteLinksAsync(host, names) : deleteLinks(ctx.rtnl, names));
    await steps.runAsync('create veth', () => createVeths(batch, remove, net.bridge, (refresh) => ctx.bridgeIndex(net, refresh), plans), () => remove(plans.map((p) => p.hostIfname)));
    // A tool that has finished meanwhile lets go of the firewall lock here rather than after the
    // container's side is configured: its exit is seen only when this thread is idle, which the
    // synchronous requests do not let it be.
    if (rules && !viaPromises) await nextTurn();
    await steps.runAsync('configure container', () => settledAll(plans.map((p) => configure(ctx, net, p, viaPromises))));
    const shaped = plans.filter((p) => p.bandwidth !== undefined);
    if (shaped.length > 0) {
      // Before the host side is up, so that no packet crosses the veth unshaped.
      steps.run(
        'limit bandwidth',
        () => shaped.forEach((p) => applyShaping(ctx.rtnl, net.name, p.id, p.hostIfname, p.bandwidth!, p.mtu)),
        () => deleteLinks(ctx.rtnl, ownIfbs(ctx.rtnl, net.name, shaped.filter((p) => p.bandwidth!.egress).map((p) => p.id))),
      );
    }
    await steps.runAsync('host side up', () => finishHostSide(batch, net, plans));
    if (rules) {
      await steps.runAsync('port mappings', async () => {
        const err = await rules;
        if (err !== null) throw err;
      });
    }
    steps.run('save endpoint', () =>
      recs.forEach((r, i) => {
        const p = plans[i]!;
        Object.assign(r, { hostIfname: p.hostIfname, ifname: p.ifname, defaultRoute: p.defaultRoute, state: 'active' });
        ctx.store.putEndpoint(r);
      }),
    );
    return recs;
  } catch (e) {
    return await steps.fail(e, isRefusal);
  } finally {
    hostRt?.close();
    onTimings?.(steps.timings);
  }
}

/** Waits for every promise, then throws the first failure: no request is still in flight when a rollback starts. */
async function settledAll(ps: readonly Promise<unknown>[]): Promise<void> {
  const failed = (await Promise.allSettled(ps)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/**
 * Clears the claims on these containers that are not live endpoints, each judged holding its
 * owner's endpoint lock: an operation on that endpoint that is still running (a connect of the
 * same container, a disconnect) is waited for, and what is found half-way belongs to one that
 * died. Called before the connect takes its own endpoint locks, so that it never waits for one
 * endpoint's lock while holding another's out of id order.
 */
async function clearContainerConflicts(ctx: BridgeContext, net: NetworkRecord, plans: readonly Plan[]): Promise<void> {
  for (const p of plans) {
    const owner = ctx.store.markerOwner(net.name, p.netnsKey);
    if (owner === undefined) continue;
    if (owner === '') {
      // Claims are written whole (createMarker), so an empty one is an older release's connect
      // that died inside the write: nobody's lock stands for it.
      ctx.store.removeMarker(net.name, p.netnsKey);
      continue;
    }
    await ctx.store.withEndpointLocks(net.name, [owner], () => settleOwner(ctx, net, p, owner, 'container'));
  }
}

/**
 * Clears what stands in the way of this container (`what` 'container': the endpoint its claim
 * names) or of this id ('id') when it is not a live endpoint: an endpoint of a connect or
 * disconnect that died half-way, or one whose container is gone (its host veth went with its
 * netns: netns inode numbers are reused, so a new container can meet a dead one's claim). A live
 * endpoint is EALREADY. Hold the owner's endpoint lock: then nothing of it is half-way unless
 * its operation died.
 */
async function settleOwner(ctx: BridgeContext, net: NetworkRecord, p: Plan, owner: string, what: 'container' | 'id'): Promise<void> {
  const rec = ctx.store.getEndpoint(net.name, owner);
  if (!rec) {
    // A claim whose connect died before writing its record.
    if (what === 'container' && ctx.store.markerOwner(net.name, p.netnsKey) === owner) ctx.store.removeMarker(net.name, p.netnsKey);
    return;
  }
  if (rec.state !== 'active') await teardownEndpoints(ctx, net, [rec], { verifyTag: true, operation: `clear interrupted endpoints of ${net.name}` });
  else if (!findLink(ctx.rtnl, rec.hostIfname)) await teardownEndpoints(ctx, net, [rec], { operation: `clear endpoints of dead containers on ${net.name}` });
  else if (what === 'container') throw new NetworkError('EALREADY', `container ${p.ns.path} is already connected to ${net.name} (endpoint ${rec.id})`, { network: net.name, id: rec.id });
  else throw new NetworkError('EALREADY', `endpoint ${p.id} already exists on ${net.name}`, { network: net.name, id: rec.id });
}

/**
 * Refuses a requested address of a family the network has no subnet of, and mappings the network
 * cannot carry, before anything changes: a host IP of a family the
 * network has no subnet of, and a host IP that is not one of the host's addresses (nothing would
 * ever arrive for it; Docker fails the same way when it binds). 127.0.0.1 and the wildcards are
 * always local.
 */
function checkFamilies(ctx: BridgeContext, net: NetworkRecord, plans: readonly Plan[]): void {
  let local: Set<string> | undefined;
  for (const p of plans) {
    for (const ip of p.requestedIps) {
      const asked = ipFamily(ip);
      if (!net.subnets.some((s) => s.family === asked)) throw new ValidationError('ip', `${ip}: network ${net.name} has no IPv${asked} subnet`);
    }
    for (const m of p.mappings) {
      if (m.hostIp === undefined) continue;
      const family = m.hostIp.includes(':') ? 6 : 4;
      if (!net.subnets.some((s) => s.family === family)) {
        throw new ValidationError('ports', `${formatMapping(m)}: network ${net.name} has no IPv${family} subnet, so nothing can be published on an IPv${family} address`);
      }
      if (m.hostIp === '::' || m.hostIp.startsWith('127.')) continue;
      local ??= new Set(ctx.rtnl.addrList({}, { retries: DUMP_RETRIES }).map((a) => a.address));
      if (!local.has(m.hostIp)) throw new NetworkError('ENOTLOCAL', `${formatMapping(m)}: ${m.hostIp} is not an address of this host`);
    }
  }
}

/**
 * Refuses mappings that would take over a host process's port (EHOSTLISTENER naming it), before
 * anything changes, unless the connect allows it. Costs one sock_diag dump per protocol and
 * family the mappings need, and nothing for a connect without mappings.
 */
function checkHostListeners(ctx: BridgeContext, net: NetworkRecord, plans: readonly Plan[]): void {
  const mappings = plans.filter((p) => !p.allowHostListener).flatMap((p) => p.mappings);
  if (mappings.length === 0) return;
  const found = findHostListeners(ctx.host, mappings, net.subnets.map((s) => s.family));
  if (found.length > 0) throw new HostListenerError(found);
}

/** Claims each container on this network (a marker file named after its netns). */
function claimContainers(ctx: BridgeContext, net: NetworkRecord, plans: readonly Plan[]): void {
  const made: Plan[] = [];
  try {
    for (const p of plans) {
      if (!ctx.store.createMarker(net.name, p.netnsKey, p.id)) throw new NetworkError('EALREADY', `container ${p.ns.path} is already connected to ${net.name}`);
      made.push(p);
    }
  } catch (e) {
    releaseContainers(ctx, net, made);
    throw e;
  }
}

function releaseContainers(ctx: BridgeContext, net: NetworkRecord, plans: readonly Plan[]): void {
  for (const p of plans) if (ctx.store.markerOwner(net.name, p.netnsKey) === p.id) ctx.store.removeMarker(net.name, p.netnsKey);
}

/**
 * Reserves host ports across all networks under the ports lock; a clash is EPORTINUSE naming the
 * holder. A reservation with no owner written is a connect that died inside this very lock: freed.
 */
function reservePorts(ctx: BridgeContext, net: NetworkRecord, plans: readonly Plan[]): void {
  if (plans.every((p) => p.mappings.length === 0)) return;
  ctx.store.withPortsLockSync(() => {
    const made: { m: PortMapping; owner: string }[] = [];
    try {
      for (const p of plans) {
        const owner = portOwner(net.name, p.id);
        for (const m of p.mappings) {
          // A wildcard mapping clashes with any IP on that port, a specific one with the wildcard or itself.
          for (const h of ctx.store.portHolders(m)) {
            if (!mappingsOverlap({ ...m, hostIp: h.hostIp }, m)) continue;
            if (h.owner === '') {
              ctx.store.releasePort({ ...m, ...(h.hostIp === '0.0.0.0' ? {} : { hostIp: h.hostIp }) }, '');
              continue;
            }
            const [network = '', id = ''] = h.owner.split('/');
            throw new NetworkError('EPORTINUSE', `host port ${formatMapping(m)} is already published by endpoint ${id} of network ${network} (on ${h.hostIp})`, { network, id });
          }
          if (!ctx.store.reservePort(m, owner)) throw new NetworkError('EPORTINUSE', `host port ${formatMapping(m)} is already published`);
          made.push({ m, owner });
        }
      }
    } catch (e) {
      for (const r of made) ctx.store.releasePort(r.m, r.owner);
      throw e;
    }
  });
}

function releasePorts(ctx: BridgeContext, net: NetworkRecord, plans: readonly Plan[]): void {
  ctx.store.withPortsLockSync(() => plans.forEach((p) => p.mappings.forEach((m) => ctx.store.releasePort(m, portOwner(net.name, p.id)))));
}

/**
 * Container side: router advertisements off on its interface first (a sibling's forged RA must
 * not give the container an IPv6 route and address; its routes come from us), and with IPv6 no
 * duplicate address detection for its link-local address either (the MAC is unique on the
 * bridge, and DAD would hold the address tentative for a second), then the batch.
 */
async function configure(ctx: BridgeContext, net: NetworkRecord, p: Plan, viaPromises: boolean): Promise<void> {
  const sysctls = [
    { path: `net/ipv6/conf/${p.ifname}/accept_ra`, value: '0', optional: true },
    ...(p.containerLinkLocal ? [{ path: `net/ipv6/conf/${p.ifname}/accept_dad`, value: '0', optional: true }] : []),
  ];
  const sock = ctx.host.openContainerSocket(p.ns, sysctls);
  try {
    p.defaultRoute = await configureContainer(sock, p, p.addresses!.map((a) => ({ family: a.family, cidr: a.cidr, gateway: net.internal || !p.wantsDefaultRoute ? undefined : a.gateway })), viaPromises);
  } finally {
    sock.close();
  }
}

/**
 * Host ends: addrgenmode, hairpin for published ports, isolation without icc, up. Their
 * accept_ra is left alone: a bridge port hands every frame it receives to the bridge, never to
 * its own IPv6 stack, so it cannot act on a router advertisement (the bridge's accept_ra, set
 * at create, and the container interface's are the ones that matter; the isolation e2e test
 * forges an RA with the host veth's accept_ra at 1 and the host learns nothing).
 */
async function finishHostSide(batch: Batcher, net: Readonly<NetworkRecord>, plans: readonly Plan[]): Promise<void> {
  const reqs = plans.flatMap((p) => hostSideRequests(p, { hairpin: p.mappings.length > 0, isolated: !net.icc }));
  for (const r of await batch(reqs)) if (r.error) throw r.error;
}
