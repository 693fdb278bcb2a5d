/**
 * Creating and removing networks. Both hold the global lock and the network's lock, and write
 * the network's record first ('creating' or 'removing'), so a create or rm killed half-way
 * leaves a record that names what to undo or finish; settleNetworks does that.
 */
import { ValidationError } from '../errors.js';
import { checkNetworkName } from '../names.js';
import { validateIfname, validateU32 } from '../netlink/core/validate.js';
import type { GatewayMode } from '../firewall/types.js';
import { NetworkError } from './errors.js';
import { parseSubnet, overlaps, type Subnet } from '../ip/cidr.js';
import { Steps } from './steps.js';
import { macForIp, subnetOf, subnetRecord, type NetworkRecord, type SubnetRecord } from './records.js';
import { StoreError } from '../sys/fsio.js';
import { assertFirewallRewritable, desiredFirewall, DUMP_RETRIES, fwNetwork, type BridgeContext } from './context.js';
import { bridgeTag, bridgeUpRequests, createBridge, findLink, findLinkAsync, listTaggedLinks, parseTag } from './links.js';
import { teardownEndpoints } from './teardown.js';
import { RoutedFirewall } from '../firewall/router.js';
import { BACKENDS, defaultBackend, type BackendName } from '../firewall/registry.js';
import type { RtnlPromises } from '../netlink/route/rtnl.js';

/** `tsnetlink network create --driver bridge --subnet CIDR NAME` */
export interface CreateNetworkOptions {
  name: string;
  /**
   * '192.168.10.1/24' (gateway .1), '192.168.10.0/24' (gateway = first host) or an IPv6 network
   * such as 'fd00:10::/64' (gateway ::1); a list gives a dual-stack network (at most one subnet
   * per family). `docker network create --subnet A [--ipv6 --subnet B]`
   */
  subnet: string | readonly string[];
  driver?: 'bridge';
  mtu?: number;
  /** No outbound NAT, no published ports, nothing in or out but to the host (docker network create --internal). */
  internal?: boolean;
  /** Containers may talk to each other (default true; Docker's enable_icc). */
  icc?: boolean;
  /** 'nat' (default), 'nat-unprotected' or 'routed' (Docker's gateway_mode_ipv4). */
  gatewayMode?: GatewayMode;
  /** The Linux bridge's name (default: the network's name). */
  bridge?: string;
  /** 'cni' marks a network made by the CNI plugin, which removes it with its last endpoint. */
  createdBy?: 'cni';
  /**
   * When the create turns forwarding on: 'drop' (default) also sets the FORWARD policy to DROP,
   * as Docker does; 'keep' leaves the policy to the host's own firewall.
   */
  forwardPolicy?: 'drop' | 'keep';
}

/** What a create did, besides the network itself. */
export interface CreateResult {
  record: NetworkRecord;
  /** Host-wide settings it changed, in words (they stay after the network is removed, as with Docker). */
  hostChanges: string[];
  /** The same, for a caller that undoes the create: families whose forwarding it turned on, and whose FORWARD policy it set to DROP. */
  forwarding: { enabled: (4 | 6)[]; dropped: (4 | 6)[] };
  /** What the caller should be told: a firewall backend passed over on this host, and why. */
  notices: string[];
}

const MODES: readonly GatewayMode[] = ['nat', 'nat-unprotected', 'routed'];

/** Validates create options completely, before anything is touched. */
function validate(opts: CreateNetworkOptions): NetworkRecord {
  if (typeof opts !== 'object' || opts === null) throw new ValidationError('options', 'must be an object');
  if ((opts.driver ?? 'bridge') !== 'bridge') throw new ValidationError('driver', `${JSON.stringify(opts.driver)} is not supported; only "bridge"`);
  const name = checkNetworkName(opts.name);
  const subs = checkSubnetList(opts.subnet);
  const sub = subs[0]!;
  if (opts.mtu !== undefined) validateU32(opts.mtu, 'mtu', 68, 65535);
  if (opts.gatewayMode !== undefined && !MODES.includes(opts.gatewayMode)) throw new ValidationError('gatewayMode', `must be one of ${MODES.join(', ')}, got ${JSON.stringify(opts.gatewayMode)}`);
  for (const f of ['internal', 'icc'] as const) if (opts[f] !== undefined && typeof opts[f] !== 'boolean') throw new ValidationError(f, 'must be true or false');
  if (opts.forwardPolicy !== undefined && opts.forwardPolicy !== 'drop' && opts.forwardPolicy !== 'keep') throw new ValidationError('forwardPolicy', `must be 'drop' or 'keep', got ${JSON.stringify(opts.forwardPolicy)}`);
  if (opts.internal && opts.gatewayMode !== undefined && opts.gatewayMode !== 'nat') throw new ValidationError('gatewayMode', 'an internal network has no gateway mode');
  if (opts.createdBy !== undefined && opts.createdBy !== 'cni') throw new ValidationError('createdBy', `must be "cni" or omitted, got ${JSON.stringify(opts.createdBy)}`);
  return {
    name,
    driver: 'bridge',
    bridge: opts.bridge === undefined ? name : validateIfname(opts.bridge, 'bridge'),
    ...(opts.createdBy !== undefined ? { createdBy: opts.createdBy } : {}),
    subnet: sub.subnet,
    gateway: sub.gateway,
    prefix: sub.prefix,
    subnets: subs.map(subnetRecord),
    ...(opts.mtu !== undefined ? { mtu: opts.mtu } : {}),
    mac: macForIp(sub.gateway),
    internal: opts.internal ?? false,
    icc: opts.icc ?? true,
    gatewayMode: opts.gatewayMode ?? 'nat',
    firewall: 'iptables',
    state: 'creating',
    createdAt: new Date().toISOString(),
  };
}

/** Parses the subnet option: one or two subnets, at most one per family, IPv4 first. */
function checkSubnetList(value: string | readonly string[]): Subnet[] {
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list) || list.length === 0) throw new ValidationError('subnet', 'a network needs a subnet (one per family at most)');
  const subs = list.map((s, i) => parseSubnet(s, list.length === 1 ? 'subnet' : `subnet[${i}]`));
  for (const f of [4, 6] as const) {
    const mine = subs.filter((s) => s.family === f);
    if (mine.length > 1) throw new ValidationError('subnet', `${mine.map((s) => s.subnet).join(' and ')}: a network has at most one IPv${f} subnet`);
  }
  return subs.sort((a, b) => a.family - b.family);
}

/**
 * Refuses a subnet that overlaps another network, a host route or a host address. The route and
 * address dumps go through the promise API: a host with a full routing table takes tens of ms.
 */
async function checkOverlaps(ctx: BridgeContext, rec: NetworkRecord, others: readonly NetworkRecord[]): Promise<void> {
  await ctx.withHostPromises(async (rt) => {
    for (const sub of rec.subnets) await checkOverlapsOf(rt, sub, others);
  });
}

/** One subnet's overlap check, on dumps of the host's routes and addresses of its family. */
async function checkOverlapsOf(rt: RtnlPromises, sub: SubnetRecord, others: readonly NetworkRecord[]): Promise<void> {
  for (const n of others) {
    const clash = subnetOf(n, sub.family);
    if (clash && overlaps(clash.subnet, sub.subnet)) throw new NetworkError('EOVERLAP', `subnet ${sub.subnet} overlaps network ${n.name} (${clash.subnet})`);
  }
  const bits = sub.family === 4 ? 32 : 128;
  for (const r of await rt.routeList({ family: sub.family }, { retries: DUMP_RETRIES })) {
    // The host's multicast and link-local routes never overlap a valid subnet; defaults do not count.
    if (r.dst !== 'default' && r.dst !== '' && overlaps(r.dst.includes('/') ? r.dst : `${r.dst}/${bits}`, sub.subnet)) {
      throw new NetworkError('EOVERLAP', `subnet ${sub.subnet} overlaps the host route ${r.dst}`);
    }
  }
  for (const a of await rt.addrList({ family: sub.family }, { retries: DUMP_RETRIES })) {
    if (a.address.startsWith('127.') || a.address === '::1') continue;
    if (overlaps(`${a.address}/${bits}`, sub.subnet)) throw new NetworkError('EOVERLAP', `subnet ${sub.subnet} contains the host address ${a.address}`);
  }
}

/**
 * The backend a new network gets. A host's networks share one backend (the isolation of one
 * network from the others is a rule of one ruleset), so a backend chosen explicitly that
 * differs from the existing networks' is refused, naming the migration.
 */
function newNetworkBackend(ctx: BridgeContext, others: readonly NetworkRecord[]): BackendName {
  const fw = ctx.firewall;
  if (!(fw instanceof RoutedFirewall)) return (BACKENDS as readonly string[]).includes(fw.backend) ? (fw.backend as BackendName) : 'iptables';
  const b = fw.selected as BackendName;
  const other = others.filter((n) => n.firewall !== b);
  if (other.length > 0) {
    const names = other.map((n) => n.name).join(', ');
    throw new NetworkError('EFIREWALL', `networks ${names} use the ${other[0]!.firewall} firewall backend and a host's networks share one: create this network with --firewall ${other[0]!.firewall}, or move them all first with tsnetlink network repair --firewall ${b}`);
  }
  return b;
}

/** Says why the first network of a host did not get the registry's first backend (no nf_tables here, say). */
function backendNotices(ctx: BridgeContext, chosen: BackendName, others: readonly NetworkRecord[]): string[] {
  if (!(ctx.firewall instanceof RoutedFirewall) || ctx.firewall.explicit !== undefined || others.length > 0) return [];
  const d = defaultBackend();
  return d.passedOver !== undefined && d.name === chosen ? [`firewall backend ${chosen}: ${d.passedOver}`] : [];
}

/** The sysctls of a network's bridge, for create and repair. */
export function bridgeSysctls(net: NetworkRecord): { path: string; value: string; optional?: boolean }[] {
  const v4 = subnetOf(net, 4) !== undefined;
  const v6 = subnetOf(net, 6) !== undefined;
  return [
    // A container's forged router advertisement must not give the host a route or an address.
    { path: `net/ipv6/conf/${net.bridge}/accept_ra`, value: '0', optional: true },
    // A host whose interfaces start with IPv6 disabled (default.disable_ipv6) still gets it here.
    ...(v6 ? [{ path: `net/ipv6/conf/${net.bridge}/disable_ipv6`, value: '0' }] : []),
    // The kernel sends a neighbour solicitation for a forwarded packet only from a usable
    // link-local address: while the bridge's is tentative (DAD, ~1-2 s after up), published
    // ports and outbound replies over IPv6 would wait. The bridge's MAC is ours and fixed.
    ...(v6 ? [{ path: `net/ipv6/conf/${net.bridge}/accept_dad`, value: '0' }] : []),
    // Lets 127.0.0.1 -> published port be routed to the bridge (guarded by a raw-table DROP).
    ...(net.internal || !v4 ? [] : [{ path: `net/ipv4/conf/${net.bridge}/route_localnet`, value: '1' }]),
  ];
}

/** The forwarding switch of each family: the sysctl, its name in messages and what turning it on costs. */
export const FORWARDING: Record<4 | 6, { path: string; name: string; note: string }> = {
  4: { path: 'net/ipv4/ip_forward', name: 'net.ipv4.ip_forward', note: 'it stays on after the network is removed, as with Docker' },
  6: {
    path: 'net/ipv6/conf/all/forwarding',
    name: 'net.ipv6.conf.all.forwarding',
    note: 'it stays on after the network is removed, as with Docker; a forwarding host ignores router advertisements on interfaces with accept_ra=1 (set accept_ra=2 on an uplink configured by SLAAC)',
  },
};

/**
 * Creates a bridge network: the bridge with its fixed MAC and tag, its gateway address, up;
 * its rules; then IP forwarding (after the rules that keep forwarding from exposing anything).
 * Validation and every check come before the first change. `tsnetlink network create --driver bridge --subnet CIDR NAME`
 */
export async function createNetwork(ctx: BridgeContext, opts: CreateNetworkOptions): Promise<CreateResult> {
  const rec = validate(opts);
  await ctx.firewall.ensureAvailable();
  return ctx.store.withGlobalLock(async () => {
    await settleNetworks(ctx);
    const listing = ctx.store.listNetworks();
    const bad = listing.corrupt.find((c) => c.name === rec.name);
    if (bad) throw new NetworkError('ENETEXISTS', `network ${rec.name} exists but its record is unreadable (${bad.error.message}); tsnetlink network rm --force ${rec.name} removes it`);
    if (listing.records.some((n) => n.name === rec.name)) throw new NetworkError('ENETEXISTS', `network ${rec.name} already exists`);
    assertFirewallRewritable(ctx.store, undefined, listing);
    const sharing = listing.records.find((n) => n.bridge === rec.bridge);
    if (sharing) throw new NetworkError('ENETEXISTS', `the bridge ${rec.bridge} belongs to network ${sharing.name}`);
    rec.firewall = newNetworkBackend(ctx, listing.records);
    const notices = backendNotices(ctx, rec.firewall, listing.records);
    await checkOverlaps(ctx, rec, listing.records);
    const existing = findLink(ctx.rtnl, rec.bridge);
    if (existing) {
      // A bridge tagged as this network's with no record is what a killed create or rm left.
      if (existing.alias === bridgeTag(rec.name)) await ctx.deleteHostLinks([rec.bridge]);
      else throw new NetworkError('ENETEXISTS', `a link named ${rec.bridge} already exists on the host`);
    }
    ctx.store.clearNetworkDir(rec.name);
    ctx.forgetBridge(rec.name);
    const hostChanges: string[] = [];
    const forwarding: CreateResult['forwarding'] = { enabled: [], dropped: [] };
    await ctx.store.withNetworkLock(rec.name, async () => {
      const steps = new Steps(`network create ${rec.name}`, ctx.faults, 'create');
      try {
        steps.run('save intent', () => ctx.store.putNetwork(rec), () => ctx.store.removeNetwork(rec.name));
        // Its requests go through the promise API: a link deletion elsewhere holds the RTNL lock
        // through its RCU wait, and a synchronous request would wait for it on the event loop.
        const index = await steps.runAsync('create bridge', () => ctx.withHostPromises((rt) => createBridge(rt, rec)), () => ctx.deleteHostLinks([rec.bridge]));
        steps.run('bridge sysctls', () => bridgeSysctls(rec).forEach((s) => ctx.host.writeSysctl(s)));
        await steps.runAsync('gateway address', () =>
          ctx.withHostPromises(async (rt) => {
            for (const r of await rt.batch(bridgeUpRequests(rec, index))) if (r.error) throw r.error;
          }),
        );
        const others = listing.records.filter((n) => n.state !== 'removing');
        // Undone whether or not it succeeded: on nft a failed run may have committed some tables.
        steps.undoFirst('firewall', () => ctx.store.withFirewallLock(() => ctx.firewall.setNetworks(others.map(fwNetwork))));
        await steps.runAsync('firewall', () => ctx.store.withFirewallLock(() => ctx.firewall.setNetworks([...others, rec].map(fwNetwork))));
        if (!rec.internal) {
          for (const { family } of rec.subnets) {
            const fwd = FORWARDING[family];
            const enabled = steps.run(family === 4 ? 'ip forwarding' : 'ipv6 forwarding', () => {
              if (ctx.host.readSysctl(fwd.path) === '1') return undefined;
              // The FORWARD DROP guard below is recorded first, so that check and repair keep it
              // even if this run dies half-way.
              const guard = opts.forwardPolicy !== 'keep' && ctx.store.addForwardGuard(family);
              ctx.host.writeSysctl({ path: fwd.path, value: '1' });
              hostChanges.push(`${fwd.name}: 0 -> 1 (${fwd.note})`);
              forwarding.enabled.push(family);
              return { guard };
            }, (changed) => {
              if (!changed) return;
              ctx.host.writeSysctl({ path: fwd.path, value: '0' });
              if (changed.guard) ctx.store.removeForwardGuard(family);
            });
            // Forwarding must not make the host a router between its other interfaces, unless
            // the caller says the host's own firewall sees to that. Its own step, so that a
            // failure after it puts the policy back too.
            if (!enabled || opts.forwardPolicy === 'keep') continue;
            await steps.runAsync(family === 4 ? 'forward policy' : 'ipv6 forward policy', async () => {
              if (!(await ctx.firewall.dropUnmatchedForwarding(family))) return false;
              hostChanges.push(`${family === 4 ? 'FORWARD' : 'IPv6 FORWARD'} policy: ACCEPT -> DROP (only traffic that a rule accepts is forwarded, as with Docker)`);
              forwarding.dropped.push(family);
              return true;
            }, (changed) => changed && ctx.firewall.acceptUnmatchedForwarding(family));
          }
        }
        steps.run('save network', () => ctx.store.putNetwork({ ...rec, state: 'active' }));
      } catch (e) {
        ctx.forgetBridge(rec.name);
        await steps.fail(e);
      }
    });
    return { record: { ...rec, state: 'active' }, hostChanges, forwarding, notices };
  });
}

/**
 * Undoes a create whose caller failed afterwards (a CNI ADD whose connect was refused): removes
 * the network if nothing has been connected to it since, then puts back the forwarding sysctls
 * and FORWARD policies the create changed, for each family no other network needs. Resolves
 * false, changing nothing, when another endpoint is on the network by now.
 */
export async function undoCreate(ctx: BridgeContext, created: CreateResult): Promise<boolean> {
  const name = created.record.name;
  try {
    await removeNetwork(ctx, name);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'EBUSY') return false;
    if (code !== 'ENONET') throw e;
  }
  await ctx.store.withGlobalLock(async () => {
    const others = ctx.store.listNetworks().records.filter((n) => n.state !== 'removing' && !n.internal);
    const needed = (family: 4 | 6): boolean => others.some((n) => n.subnets.some((s) => s.family === family));
    for (const family of created.forwarding.dropped) if (!needed(family)) await ctx.firewall.acceptUnmatchedForwarding(family);
    for (const family of created.forwarding.enabled) {
      if (needed(family)) continue;
      ctx.host.writeSysctl({ path: FORWARDING[family].path, value: '0' });
      // Forwarding is off again: the guard that came with turning it on has nothing left to guard.
      ctx.store.removeForwardGuard(family);
    }
  });
  return true;
}

/**
 * Removes a network: refused while endpoints are attached unless `force`, which disconnects
 * them. A network whose record is unreadable can be removed with `force`. `tsnetlink network rm NAME`
 */
export async function removeNetwork(ctx: BridgeContext, name: string, opts: { force?: boolean } = {}): Promise<void> {
  checkNetworkName(name, 'network');
  await ctx.store.withGlobalLock(() =>
    ctx.store.withNetworkLock(name, async () => {
      let rec: NetworkRecord | undefined;
      try {
        rec = ctx.store.getNetwork(name);
      } catch (e) {
        if (!(e instanceof StoreError) || e.code !== 'ECORRUPT' || !opts.force) throw e;
        rec = undefined;
      }
      if (!rec) {
        if (!opts.force || !ctx.store.networkNames().includes(name)) {
          // Taking its lock made a directory for it: nothing else may be left for a network that does not exist.
          if (!ctx.store.networkNames().includes(name)) ctx.store.clearNetworkDir(name);
          throw new NetworkError('ENONET', `no such network: ${name}`);
        }
        assertFirewallRewritable(ctx.store, name);
        await removeCorruptNetwork(ctx, name);
        return;
      }
      const ids = ctx.store.endpointIds(name);
      if (ids.length > 0 && !opts.force && rec.state === 'active') {
        throw new NetworkError('EBUSY', `network ${name} has ${ids.length} ${ids.length === 1 ? 'endpoint' : 'endpoints'} attached; disconnect ${ids.length === 1 ? 'it' : 'them'} or use --force`);
      }
      // Links deleted cannot be put back: a firewall that cannot be changed (its tools missing,
      // another network's record unreadable) is found before the first deletion, not after the
      // bridge and the containers' veths went.
      await ctx.firewall.ensureAvailable();
      assertFirewallRewritable(ctx.store, name);
      await finishRemoval(ctx, rec);
    }),
  );
}

/**
 * The body of rm, also used to finish an rm that was killed: marks the record 'removing', tears
 * down every endpoint (whatever its state), deletes the network's tagged veths and its bridge,
 * rewrites the firewall without it, then removes its state. Hold the global and network locks.
 */
export async function finishRemoval(ctx: BridgeContext, rec: NetworkRecord): Promise<void> {
  const steps = new Steps(`network rm ${rec.name}`, ctx.faults, 'rm');
  if (rec.state !== 'removing') steps.run('mark removing', () => ctx.store.putNetwork({ ...rec, state: 'removing' }));
  const listing = ctx.store.listEndpoints(rec.name);
  await steps.runAsync('disconnect endpoints', async () => {
    await teardownEndpoints(ctx, rec, listing.records.filter((r) => r.state === 'active'), { operation: `network rm ${rec.name}` });
    await teardownEndpoints(ctx, rec, listing.records.filter((r) => r.state !== 'active'), { verifyTag: true, operation: `network rm ${rec.name}` });
  });
  await steps.runAsync('delete links', () => deleteNetworkLinks(ctx, rec.name, rec.bridge));
  ctx.forgetBridge(rec.name);
  await steps.runAsync('firewall', () => ctx.store.withFirewallLock(() => ctx.firewall.apply(withoutNetwork(ctx, rec.name))));
  steps.run('remove state', () => {
    ctx.store.withPortsLockSync(() => {
      for (const p of ctx.store.listPorts()) if (p.owner.startsWith(`${rec.name}/`)) ctx.store.removePortReservation(p);
    });
    ctx.store.removeNetwork(rec.name);
    ctx.store.forgetHostIfUnused();
  });
}

function withoutNetwork(ctx: BridgeContext, name: string) {
  const s = desiredFirewall(ctx.store, name);
  return { networks: s.networks.filter((n) => n.name !== name), endpoints: s.endpoints.filter((e) => e.network !== name) };
}

/** Deletes a network's bridge (if it is ours) and every veth tagged with the network, in one go. */
async function deleteNetworkLinks(ctx: BridgeContext, network: string, bridge: string): Promise<void> {
  const names = await ctx.withHostPromises(async (rt) => {
    const tagged = listTaggedLinks(await rt.linkList({}, { retries: DUMP_RETRIES }));
    const veths = [...tagged.veths.values()].filter((l) => parseTag(l.alias)?.network === network).map((l) => l.name);
    const br = await findLinkAsync(rt, bridge);
    // A bridge from before tags existed has none; a foreign link of that name is left alone.
    return br && (br.alias === bridgeTag(network) || (br.alias === undefined && br.kind === 'bridge')) ? [...veths, bridge] : veths;
  });
  await ctx.deleteHostLinks(names);
}

/** rm --force of a network whose record cannot be read: its tagged links, rules, ports and state go. */
async function removeCorruptNetwork(ctx: BridgeContext, name: string): Promise<void> {
  await deleteNetworkLinks(ctx, name, name);
  ctx.forgetBridge(name);
  await ctx.store.withFirewallLock(() => ctx.firewall.apply(withoutNetwork(ctx, name)));
  ctx.store.withPortsLockSync(() => {
    for (const p of ctx.store.listPorts()) if (p.owner.startsWith(`${name}/`)) ctx.store.removePortReservation(p);
  });
  ctx.store.removeNetwork(name);
  ctx.store.forgetHostIfUnused();
}

/**
 * Settles networks whose create or rm was killed half-way (hold the global lock: no create or rm
 * is running, so every 'creating' or 'removing' record is such a leftover): a create is undone,
 * an rm is finished. Returns what it did.
 */
export async function settleNetworks(ctx: BridgeContext): Promise<string[]> {
  const done: string[] = [];
  for (const n of ctx.store.listNetworks().records) {
    if (n.state === 'active') continue;
    await ctx.store.withNetworkLock(n.name, () => finishRemoval(ctx, n));
    done.push(`${n.state === 'creating' ? 'undid the interrupted create' : 'finished the interrupted removal'} of network ${n.name}`);
  }
  return done;
}
