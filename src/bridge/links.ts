/**
 * The kernel side of bridge networking: bridges and veth pairs, each tagged with an alias that
 * names its network (and endpoint), so the reconciler can find every link tsnetlink made even
 * when no record of it survived. Requests are built here once and sent pipelined.
 */
import { randomBytes } from 'node:crypto';
import type { Rtnl, Link, RtnlPromises } from '../netlink/route/rtnl.js';
import type { Request } from '../netlink/core/message.js';
import type { BatchResult, NetlinkSocket } from '../netlink/core/socket.js';
import * as L from '../netlink/route/link.js';
import * as A from '../netlink/route/addr.js';
import * as R from '../netlink/route/route.js';
import type { NetnsHandle } from '../ns/netns.js';
import { NetworkError } from './errors.js';
import type { NetworkRecord } from './records.js';
import { randomHex } from '../sys/fsio.js';
import { PORT_GROUP } from '../firewall/types.js';
import { holdingRtnl, timedRtnl } from './rtnl-lock.js';

/** The alias prefix of every link tsnetlink creates. */
export const TAG_PREFIX = 'tsnetlink/';

/** The alias of a network's bridge: "tsnetlink/NETWORK". */
export function bridgeTag(network: string): string {
  return `${TAG_PREFIX}${network}`;
}

/** The alias of an endpoint's host-side veth: "tsnetlink/NETWORK/ID". */
export function endpointTag(network: string, id: string): string {
  return `${TAG_PREFIX}${network}/${id}`;
}

/** Reads a tag back: the network, and the endpoint id for a veth; undefined for foreign links. */
export function parseTag(alias: string | undefined): { network: string; id?: string } | undefined {
  if (!alias?.startsWith(TAG_PREFIX)) return undefined;
  const [network, id, extra] = alias.slice(TAG_PREFIX.length).split('/');
  if (!network || extra !== undefined) return undefined;
  return id === undefined ? { network } : { network, id };
}

/** A random host-side veth name, as CNI makes them. */
export function randomVethName(): string {
  return `veth${randomHex(4)}`;
}

/** The link of that name, or undefined (ENODEV). */
export function findLink(rtnl: Rtnl, ref: string | number): Link | undefined {
  try {
    return rtnl.linkGet(ref);
  } catch (e) {
    if ((e as { code?: string }).code === 'ENODEV') return undefined;
    throw e;
  }
}

/** Like findLink, through the promise API. */
export async function findLinkAsync(rt: RtnlPromises, ref: string | number): Promise<Link | undefined> {
  try {
    return await rt.linkGet(ref);
  } catch (e) {
    if ((e as { code?: string }).code === 'ENODEV') return undefined;
    throw e;
  }
}

/** The links that carry a tsnetlink tag: bridges by network, host veths by "network/id". */
export function listTaggedLinks(links: readonly Link[]): { bridges: Map<string, Link>; veths: Map<string, Link> } {
  const bridges = new Map<string, Link>();
  const veths = new Map<string, Link>();
  for (const link of links) {
    const tag = parseTag(link.alias);
    if (!tag) continue;
    if (tag.id === undefined) bridges.set(tag.network, link);
    else veths.set(`${tag.network}/${tag.id}`, link);
  }
  return { bridges, veths };
}

/**
 * Creates a network's bridge, down, with its fixed MAC (so the gateway's MAC never changes when
 * the port that lent it its address leaves) and its tag, in one sendto; returns its ifindex.
 * Through the promise API, as a connect's requests (createVeths says why).
 * `ip link add NAME address MAC type bridge; ip link set NAME alias TAG`
 */
export async function createBridge(rt: RtnlPromises, net: NetworkRecord): Promise<number> {
  const res = await rt.batch([
    L.addBridgeRequest(net.bridge, { mac: net.mac, ...(net.mtu !== undefined ? { mtu: net.mtu } : {}) }),
    L.setAliasRequest(net.bridge, bridgeTag(net.name)),
    L.getRequest(net.bridge),
  ]);
  for (const r of res) if (r.error) throw r.error;
  return L.peekLinkIndexes(res[2]!.replies[0]!).index;
}

/**
 * The requests that give a bridge its gateway address in each subnet and bring it up (all
 * idempotent). The IPv6 gateway skips duplicate address detection: the bridge is ours and new, and
 * a tentative gateway would leave the first containers without a router for a second.
 */
export function bridgeUpRequests(net: Pick<NetworkRecord, 'subnets'>, index: number): Request[] {
  return [...net.subnets.map((s) => A.replaceAddrRequest(index, `${s.gateway}/${s.prefix}`, s.family === 6 ? { nodad: true } : {})), L.setUpRequest(index)];
}

/** What connect needs to create one veth pair. */
export interface VethPlan {
  network: string;
  id: string;
  /** Host-side name; replaced when a random name turns out to be taken. */
  hostIfname: string;
  /** Name inside the container; with `ifnameGiven` false the next free ethN is taken on a clash. */
  ifname: string;
  ifnameGiven: boolean;
  ns: NetnsHandle;
  mac: string;
  mtu: number | undefined;
  /** IPv6 link-local on the host end (off by default: a bridge port needs no address). */
  linkLocal: boolean;
  /** IPv6 link-local on the container end: on when the network has IPv6 or `linkLocal` asks. */
  containerLinkLocal: boolean;
  hostIndex?: number;
  peerIndex?: number;
}

const NAME_ATTEMPTS = 8;
const MAX_ETH = 16;

/** ifinfomsg.ifi_flags sits at byte 8 of an RTM_NEWLINK payload (family, pad, type, index, flags). */
const IFI_FLAGS_OFFSET = 8;
const IFF_UP = 1;

/**
 * Creates the veth pairs, one RTM_NEWLINK each (the peer directly in its container netns under
 * its final name, the host end enslaved), each followed in the same sendto by a GETLINK for both
 * ifindexes; the first sendto also asks for the bridge, which must be up. The host end is tagged
 * by hostSideRequests (the kernel ignores an alias in a creating message); until then the
 * endpoint's intent record names it. A random host name that is taken is retried with another (as CNI does); a default
 * container name that is taken (a second network) becomes the next ethN. On failure every link
 * made is deleted (`remove`) before the error is thrown. `batch` sends synchronously or through
 * the promise API, as rtnl-lock.ts decides. `ip link add NAME type veth peer name IFNAME netns NS; ip link set NAME master BRIDGE`
 */
export async function createVeths(batch: Batcher, remove: (names: readonly string[]) => unknown, bridge: string, masterIndex: (refresh: boolean) => number, plans: readonly VethPlan[]): Promise<void> {
  let pending = [...plans];
  const made: string[] = [];
  let refresh = false;
  let refreshed = false;
  try {
    for (let attempt = 0; pending.length > 0; attempt++) {
      if (attempt >= NAME_ATTEMPTS + MAX_ETH) throw new NetworkError('EALREADY', `no free interface name after ${attempt} attempts`);
      const master = masterIndex(refresh);
      refresh = false;
      const reqs = [
        L.getRequest(master),
        ...pending.flatMap((p) => [
          L.addVethRequest(
            p.hostIfname,
            { name: p.ifname, netnsFd: p.ns.fd, mac: p.mac, ...(p.mtu !== undefined ? { mtu: p.mtu } : {}) },
            // Without link-local the host end goes up only after its addrgenmode is set (hostSideRequests).
            { master, up: p.linkLocal, ...(p.mtu !== undefined ? { mtu: p.mtu } : {}) },
          ),
          L.getRequest(p.hostIfname),
        ]),
      ];
      const res = await batch(reqs);
      const br = res[0]!;
      const retry: VethPlan[] = [];
      let failure: unknown;
      let staleBridge = br.error?.code === 'ENODEV';
      if (!br.error && ((br.replies[0]?.payload.readUInt32LE(IFI_FLAGS_OFFSET) ?? 0) & IFF_UP) === 0) {
        failure = new NetworkError('EBRIDGEDOWN', `the bridge ${bridge} is down: containers on it would have no network; tsnetlink network repair brings it up`);
      }
      pending.forEach((p, i) => {
        const [create, got] = [res[1 + 2 * i]!, res[2 + 2 * i]!];
        if (!create.error) {
          made.push(p.hostIfname);
          const link = L.peekLinkIndexes(got.replies[0]!);
          p.hostIndex = link.index;
          if (link.peerIndex === undefined) failure ??= new NetworkError('ENOENDPOINT', `kernel did not report the peer of ${p.hostIfname}`);
          else p.peerIndex = link.peerIndex;
        } else if (create.error.code === 'EEXIST' && !got.error) {
          // The host name exists already (a random clash): another name.
          p.hostIfname = randomVethName();
          retry.push(p);
        } else if (create.error.code === 'EEXIST') {
          // The host name is free, so the container already has an interface of that name.
          const n = /^eth(\d+)$/.exec(p.ifname);
          if (!p.ifnameGiven && n && Number(n[1]) + 1 < MAX_ETH) {
            p.ifname = `eth${Number(n[1]) + 1}`;
            retry.push(p);
          } else failure ??= new NetworkError('EALREADY', `interface ${p.ifname} already exists in container netns ${p.ns.path}`);
        } else if (create.error.code === 'EXFULL') {
          failure ??= new NetworkError('EBRIDGEFULL', `bridge ${bridge} is full: Linux bridges hold at most 1023 ports`);
        } else if (create.error.code === 'ENODEV') {
          staleBridge = true;
          retry.push(p);
        } else failure ??= create.error;
      });
      if (failure) throw failure;
      if (staleBridge) {
        // The bridge was re-created since its ifindex was cached: look it up once more.
        if (refreshed) throw new NetworkError('EBRIDGEDOWN', `the bridge ${bridge} is missing; tsnetlink network repair re-creates it`);
        refresh = refreshed = true;
      }
      pending = retry;
    }
  } catch (e) {
    await remove(made);
    throw e;
  }
}

/** Sends requests and gives their results: a synchronous batch, or one through the promise API. */
export type Batcher = (reqs: readonly Request[]) => BatchResult[] | Promise<BatchResult[]>;

/**
 * Host ends: one change carrying the tag (alias), addrgenmode none (before up, so no link-local
 * is made), hairpin for published ports and port isolation without icc; then up.
 */
export function hostSideRequests(p: VethPlan, opts: { hairpin: boolean; isolated: boolean }): Request[] {
  const port = opts.hairpin || opts.isolated ? { bridgePort: { ...(opts.hairpin ? { hairpin: true } : {}), ...(opts.isolated ? { isolated: true } : {}) } } : {};
  return [
    L.setLinkRequest(p.hostIndex!, { alias: endpointTag(p.network, p.id), group: PORT_GROUP, ...(p.linkLocal ? {} : { addrGenMode: 'none' as const }), ...port }),
    ...(p.linkLocal ? [] : [L.setUpRequest(p.hostIndex!)]),
  ];
}

/** One address to configure inside the container, with the gateway of its default route (none: no route). */
export interface ContainerAddress {
  family: 4 | 6;
  cidr: string;
  gateway?: string | undefined;
}

/**
 * Container side in one pipelined batch: lo up, [addrgenmode none], IFNAME up, each address
 * (IPv6 ones without duplicate address detection: IPAM made them unique, and a tentative address
 * cannot be used for a second), and a default route per family via its gateway. A default route
 * that exists already (the container is on another network) is left alone: returns whether this
 * endpoint installed one. With `viaPromises` sent off the JS thread (rtnl-lock.ts says when), on
 * a socket opened in the container's netns.
 */
export async function configureContainer(sock: NetlinkSocket, p: VethPlan, addrs: readonly ContainerAddress[], viaPromises: boolean): Promise<boolean> {
  const idx = p.peerIndex!;
  const routes = addrs.filter((a) => a.gateway !== undefined);
  const reqs = [
    L.setUpRequest('lo'),
    ...(p.containerLinkLocal ? [] : [L.setAddrGenModeRequest(idx, 'none')]),
    L.setUpRequest(idx),
    ...addrs.map((a) => A.addAddrRequest(idx, a.cidr, a.family === 6 ? { nodad: true } : {})),
    ...routes.map((a) => R.addRouteRequest({ gateway: a.gateway!, oif: idx })),
  ];
  const res = viaPromises ? await sock.batchAsync(reqs) : timedRtnl(() => sock.batch(reqs));
  const firstRoute = reqs.length - routes.length;
  res.forEach((r, i) => {
    if (r.error && !(i >= firstRoute && r.error.code === 'EEXIST')) throw r.error;
  });
  return res.slice(firstRoute).some((r) => !r.error);
}

/**
 * How links are deleted: several are first moved into a fresh random device group and deleted
 * as one group, so they share one RCU grace period (~15-20 ms) instead of paying one each. The
 * group number is random in [2^30, 2^31), far from the small numbers administrators use.
 */
function deletion(names: readonly string[]): { prepare: Request[]; remove: (grouped: boolean) => Request[] } {
  if (names.length < 2) return { prepare: [], remove: () => names.map((n) => L.deleteRequest(n)) };
  const group = 0x40000000 + (randomBytes(4).readUInt32LE() % 0x40000000);
  return { prepare: names.map((n) => L.setGroupRequest(n, group)), remove: (grouped) => (grouped ? [L.deleteGroupRequest(group)] : []) };
}

function check(results: readonly { error?: { code: string } }[]): boolean {
  for (const r of results) if (r.error && r.error.code !== 'ENODEV') throw r.error;
  return results.some((r) => !r.error);
}

/** Deletes links by name, synchronously; ENODEV (already gone, e.g. with its netns) is fine. */
export function deleteLinks(rtnl: Rtnl | NetlinkSocket, names: readonly string[]): void {
  if (names.length === 0) return;
  const plan = deletion(names);
  const grouped = plan.prepare.length === 0 || check(rtnl.batch(plan.prepare));
  check(rtnl.batch(plan.remove(grouped)));
}

/**
 * Deletes links through the promise API: each deletion waits for an RCU grace period inside the
 * kernel's sendmsg, which would otherwise freeze the event loop, so every request (the group
 * changes too) is sent off the JS thread. Give it a socket of its own (BridgeContext.withHostPromises).
 */
/**
 * Sets links down through the promise API (ENODEV, already gone, is fine): off the JS thread, since
 * another thread's link deletion holds the RTNL lock through its RCU wait, and a synchronous
 * request would wait for that lock on the event loop (8 ms seen with 100 disconnects at once).
 * `ip link set NAME down` for each
 */
export async function setLinksDownAsync(rt: RtnlPromises, names: readonly string[]): Promise<void> {
  if (names.length === 0) return;
  // Down waits for an RCU grace period too (the device's queues are deactivated under the lock).
  for (const r of await holdingRtnl(() => rt.batch(names.map((n) => L.setDownRequest(n))))) if (r.error && r.error.code !== 'ENODEV') throw r.error;
}

export async function deleteLinksAsync(rt: RtnlPromises, names: readonly string[]): Promise<void> {
  if (names.length === 0) return;
  const plan = deletion(names);
  const grouped = plan.prepare.length === 0 || check(await rt.batch(plan.prepare));
  check(await holdingRtnl(() => rt.batch(plan.remove(grouped))));
}
