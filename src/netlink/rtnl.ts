/**
 * Rtnl: the rtnetlink operations a container runtime needs, on one socket (one netns).
 * Each method states its `ip` equivalent. Names resolve in the socket's own netns
 * (pitfall 7: ifindex is per netns).
 */
import { NetlinkError, ValidationError } from '../errors.js';
import { NLM_F, RTM, RT_TABLE, type AddrGenMode } from './constants.js';
import type { RawMessage, Request } from './message.js';
import { NetlinkSocket, type BatchResult, type DumpList, type DumpOptions, type SocketOptions } from './socket.js';
import * as L from './link.js';
import * as A from './addr.js';
import * as R from './route.js';
import type { BridgeAttrs } from './schemas.js';
import { refKey, refText as ctx } from './ref.js';
import * as N from './neigh.js';
import * as RU from './rule.js';
import * as NS from './nsid.js';
import * as NH from './nexthop.js';

export type { Link, LinkRef, LinkCreateOptions, VethPeerOptions } from './link.js';
export type { Address, AddrOptions } from './addr.js';
export type { Route, RouteSpec, AnyRoute, MplsRoute, MulticastRoute, OtherRoute, MplsRouteSpec } from './route.js';
export type { Neighbour, NeighSpec, FdbSpec } from './neigh.js';
export type { Rule, RuleSpec } from './rule.js';
export type { NetnsId, NetnsTarget } from './nsid.js';
export type { NexthopObject, NexthopSpec as NexthopObjectSpec } from './nexthop.js';

/** A handle for link, address and route operations on one NETLINK_ROUTE socket. */
export class Rtnl {
  /** Opens a handle in the calling thread's netns (ns/openRtnlIn opens one in another netns). */
  static open(opts: SocketOptions = {}): Rtnl {
    return new Rtnl(NetlinkSocket.open(opts));
  }

  constructor(readonly socket: NetlinkSocket) {}

  /** Closes the underlying socket. */
  close(): void {
    this.socket.close();
  }

  /**
   * Resolves the link names that requests carry where their messages need an ifindex: one
   * pipelined RTM_GETLINK for all of them. A missing link is NetlinkError ENODEV naming it.
   */
  resolve(reqs: readonly Request[]): Request[] {
    const names = [...new Set(reqs.flatMap((r) => r.pending ?? []))];
    if (names.length === 0) return reqs as Request[];
    const found = new Map<string, number>();
    this.socket.batch(names.map((n) => L.getRequest(n))).forEach((r, i) => {
      const e = r.error;
      if (e) throw new NetlinkError(e.operation, e.errno, e.kernelMessage, e.offset, `"${names[i]}"`);
      if (r.replies[0]) found.set(names[i] as string, L.peekLinkIndexes(r.replies[0]).index);
    });
    return reqs.map((r) => (r.pending?.length && r.resolve ? r.resolve((n) => found.get(n) as number) : r));
  }

  /** Sends requests pipelined in one sendto; each result carries its own error. `ip -batch` */
  batch(reqs: readonly Request[]): BatchResult[] {
    return this.socket.batch(this.resolve(reqs));
  }

  /** Like batch(), with the kernel's work on a worker thread (see NetlinkSocket.batchAsync). `ip -batch` */
  batchAsync(reqs: readonly Request[]): Promise<BatchResult[]> {
    return this.socket.batchAsync(this.resolve(reqs));
  }

  /** Like batch(), but throws the first failure (annotated with its position). */
  batchOrThrow(reqs: readonly Request[]): BatchResult[] {
    const res = this.socket.batch(this.resolve(reqs));
    for (const r of res) if (r.error) throw r.error;
    return res;
  }

  /** Sends one request (names resolved) and waits for its ack; returns the echo replies. */
  request(req: Request, context?: string): RawMessage[] {
    return this.socket.request(this.resolve([req])[0] as Request, context);
  }

  private createWithEcho(req: Request, name: string): L.Link {
    const [r] = this.resolve([req]);
    const replies = this.socket.request({ ...(r as Request), flags: (r as Request).flags | NLM_F.ECHO }, ctx(name));
    const echoed = replies.find((m) => m.type === RTM.NEWLINK);
    // Kernels before 6.3 ignore NLM_F_ECHO on RTM_NEWLINK: fall back to a lookup.
    return echoed ? L.decodeLink(echoed) : this.linkGet(name);
  }

  // ------------------------------------------------------------ links

  /** Creates a bridge. `ip link add NAME type bridge [mtu N] [address MAC] [up]` */
  linkAddBridge(name: string, opts: L.LinkCreateOptions & { bridge?: BridgeAttrs } = {}): L.Link {
    return this.createWithEcho(L.addBridgeRequest(name, opts), name);
  }

  /**
   * Creates a veth pair, the peer directly in another netns when `peer.netnsFd`/`netnsPid` is
   * set. `ip link add NAME [master BR] [up] type veth peer name PEER [netns NS] [up]`
   * Returns the local end; its `peerIndex` is the peer's ifindex in the peer's netns.
   */
  linkAddVeth(name: string, peer: L.VethPeerOptions, opts: L.LinkCreateOptions = {}): L.Link {
    // No NLM_F_ECHO here: the kernel sends the peer's notification from the peer's netns,
    // where our port does not exist, and reports that as ENOTCONN in the ack (seen on 6.18).
    this.request(L.addVethRequest(name, peer, opts), ctx(name));
    return this.linkGet(name);
  }

  /** Brings a link up. `ip link set LINK up` */
  linkSetUp(ref: L.LinkRef): void {
    this.request(L.setUpRequest(ref), ctx(ref));
  }

  /** Brings a link down. `ip link set LINK down` */
  linkSetDown(ref: L.LinkRef): void {
    this.request(L.setDownRequest(ref), ctx(ref));
  }

  /** Enslaves a link to a bridge. `ip link set LINK master BRIDGE` */
  linkSetMaster(ref: L.LinkRef, master: L.LinkRef): void {
    this.request(L.setMasterRequest(ref, master), ctx(ref));
  }

  /** Releases a link from its bridge. `ip link set LINK nomaster` */
  linkSetNoMaster(ref: L.LinkRef): void {
    this.request(L.setNoMasterRequest(ref), ctx(ref));
  }

  /**
   * Moves a link into the netns open as `fd`. `ip link set LINK netns NS`
   * Costs ~29 ms of kernel time (RCU); prefer creating a veth peer in place.
   */
  linkSetNsFd(ref: L.LinkRef, fd: number): void {
    this.request(L.setNetnsFdRequest(ref, fd), ctx(ref));
  }

  /** Moves a link into the netns of a process. `ip link set LINK netns PID` */
  linkSetNsPid(ref: L.LinkRef, pid: number): void {
    this.request(L.setNetnsPidRequest(ref, pid), ctx(ref));
  }

  /** Renames a link (it must be down). `ip link set LINK name NEWNAME` */
  linkSetName(ref: L.LinkRef, name: string): void {
    this.request(L.setNameRequest(ref, name), ctx(ref));
  }

  /** Sets the MTU. `ip link set LINK mtu N` */
  linkSetMtu(ref: L.LinkRef, mtu: number): void {
    this.request(L.setMtuRequest(ref, mtu), ctx(ref));
  }

  /** Sets the MAC address. `ip link set LINK address MAC` */
  linkSetMac(ref: L.LinkRef, mac: string): void {
    this.request(L.setMacRequest(ref, mac), ctx(ref));
  }

  /** Sets the bridge-port hairpin flag. `ip link set LINK type bridge_slave hairpin on|off` */
  linkSetHairpin(ref: L.LinkRef, on: boolean): void {
    this.request(L.setHairpinRequest(ref, on), ctx(ref));
  }

  /** Sets how IPv6 link-local addresses are made ('none': no link-local). `ip link set LINK addrgenmode MODE` */
  linkSetAddrGenMode(ref: L.LinkRef, mode: AddrGenMode): void {
    this.request(L.setAddrGenModeRequest(ref, mode), ctx(ref));
  }

  /** Sets or clears ('') a link's alias. `ip link set LINK alias TEXT` */
  linkSetAlias(ref: L.LinkRef, alias: string): void {
    this.request(L.setAliasRequest(ref, alias), ctx(ref));
  }

  /** Puts a link in a device group. `ip link set LINK group N` */
  linkSetGroup(ref: L.LinkRef, group: number): void {
    this.request(L.setGroupRequest(ref, group), ctx(ref));
  }

  /** Deletes every link of a device group at once (one RCU grace period). `ip link del group N` */
  linkDelGroup(group: number): void {
    this.request(L.deleteGroupRequest(group), `group ${group}`);
  }

  /** Deletes a link (a veth takes its peer along). `ip link del LINK` */
  linkDel(ref: L.LinkRef): void {
    this.request(L.deleteRequest(ref), ctx(ref));
  }

  /** Gets one link; a missing link is NetlinkError ENODEV, never index 0. `ip link show dev LINK` */
  linkGet(ref: L.LinkRef): L.Link {
    const [m] = this.request(L.getRequest(ref), ctx(ref));
    if (!m) throw new ValidationError('link', `kernel sent no RTM_NEWLINK for ${ctx(ref)}`);
    return L.decodeLink(m);
  }

  /** Resolves a name to its ifindex in this netns (an index or a Link passes through). */
  linkIndex(ref: L.LinkRef): number {
    const k = refKey(ref);
    return typeof k === 'number' ? k : this.linkGet(k).index;
  }

  /** Lists links, optionally those enslaved to `master` or of one kind. `ip -d link show [master BR] [type KIND]` */
  linkList(filter: { master?: L.LinkRef; kind?: string } = {}, opts: DumpOptions = {}): DumpList<L.Link> {
    const f: { master?: number; kind?: string } = {};
    if (filter.master !== undefined) f.master = this.linkIndex(filter.master);
    if (filter.kind !== undefined) f.kind = filter.kind;
    return this.socket.dump(L.dumpRequest(f), L.decodeLink, opts);
  }

  // ------------------------------------------------------------ addresses

  /** Adds an address (IPv4 broadcast computed). `ip addr add CIDR brd + dev LINK [nodad]` */
  addrAdd(link: L.LinkRef, cidr: string, opts: A.AddrOptions = {}): void {
    this.request(A.addAddrRequest(link, cidr, opts), ctx(link));
  }

  /** Adds or updates an address. `ip addr replace CIDR dev LINK` */
  addrReplace(link: L.LinkRef, cidr: string, opts: A.AddrOptions = {}): void {
    this.request(A.replaceAddrRequest(link, cidr, opts), ctx(link));
  }

  /** Removes an address. `ip addr del CIDR dev LINK` */
  addrDel(link: L.LinkRef, cidr: string): void {
    this.request(A.deleteAddrRequest(link, cidr), ctx(link));
  }

  /** Lists addresses. `ip addr show [dev LINK]` (`ip -4`/`-6` with family) */
  addrList(filter: { link?: L.LinkRef; family?: 4 | 6 } = {}, opts: DumpOptions = {}): DumpList<A.Address> {
    const f: { family?: 4 | 6; index?: number } = {};
    if (filter.family !== undefined) f.family = filter.family;
    if (filter.link !== undefined) f.index = this.linkIndex(filter.link);
    return this.socket.dump(A.dumpAddrRequest(f), A.decodeAddress, opts);
  }

  // ------------------------------------------------------------ routes

  /** Adds a route. `ip route add DST|default [from SRC] [via GW] [dev LINK] [table T] [metric P] [mtu N ...] [nexthop ...] [nhid N]` */
  routeAdd(spec: R.RouteSpec): void {
    this.request(R.addRouteRequest(spec));
  }

  /** Adds or replaces a route. `ip route replace ...` */
  routeReplace(spec: R.RouteSpec): void {
    this.request(R.replaceRouteRequest(spec));
  }

  /** Adds another route to the same prefix. `ip route append ...` */
  routeAppend(spec: R.RouteSpec): void {
    this.request(R.appendRouteRequest(spec));
  }

  /** Deletes a route. `ip route del ...` */
  routeDel(spec: R.RouteSpec): void {
    this.request(R.deleteRouteRequest(spec));
  }

  /**
   * Lists routes of one table (main by default; 0 for all). With a family, IPv4 or IPv6 routes;
   * without one, every family the kernel dumps (MPLS and multicast routes in their own shapes).
   * `ip route show [table T]`, `ip -6 route`, `ip -f mpls route`, `ip mroute`
   */
  routeList(filter: { family: 4 | 6; table?: number; oif?: L.LinkRef }, opts?: DumpOptions): DumpList<R.Route>;
  routeList(filter?: { family?: 4 | 6 | 'mpls' | 'ipmr' | 'ip6mr'; table?: number; oif?: L.LinkRef }, opts?: DumpOptions): DumpList<R.AnyRoute>;
  routeList(filter: { family?: 4 | 6 | 'mpls' | 'ipmr' | 'ip6mr'; table?: number; oif?: L.LinkRef } = {}, opts: DumpOptions = {}): DumpList<R.AnyRoute> {
    const table = filter.table ?? RT_TABLE.MAIN;
    const oif = filter.oif !== undefined ? this.linkIndex(filter.oif) : undefined;
    return this.socket.dump(
      R.dumpRouteRequest(filter.family),
      (m) => {
        const r = R.decodeAnyRoute(m);
        const t = r.family === 'other' ? r.raw.header.table : r.table;
        if (table !== 0 && t !== table) return undefined;
        if (oif !== undefined && !('oif' in r && r.oif === oif)) return undefined;
        return r;
      },
      opts,
    );
  }

  /** Adds an MPLS route. `ip -f mpls route add LABEL [as LABELS] via inet|inet6 ADDR dev LINK` */
  mplsRouteAdd(spec: R.MplsRouteSpec): void {
    this.request(R.addMplsRouteRequest(spec));
  }

  /** Deletes an MPLS route. `ip -f mpls route del LABEL` */
  mplsRouteDel(spec: R.MplsRouteSpec): void {
    this.request(R.deleteMplsRouteRequest(spec));
  }

  // ------------------------------------------------------------ nexthop objects

  /** Adds a nexthop object. `ip nexthop add id N [via GW] [dev LINK] | blackhole | group ID[,W]/...` */
  nexthopAdd(spec: NH.NexthopSpec): void {
    this.request(NH.addNexthopRequest(spec));
  }

  /** Adds or replaces a nexthop object. `ip nexthop replace id N ...` */
  nexthopReplace(spec: NH.NexthopSpec): void {
    this.request(NH.replaceNexthopRequest(spec));
  }

  /** Deletes a nexthop object (routes using it go too). `ip nexthop del id N` */
  nexthopDel(id: number): void {
    this.request(NH.deleteNexthopRequest(id));
  }

  /** Lists nexthop objects. `ip nexthop show` */
  nexthopList(opts: DumpOptions = {}): DumpList<NH.NexthopObject> {
    return this.socket.dump(NH.dumpNexthopRequest(), NH.decodeNexthop, opts);
  }

  // ------------------------------------------------------------ neighbours and FDB

  /** Adds an ARP/NDP entry. `ip neigh add ADDR [lladdr MAC] [nud STATE] [proxy] [router] dev LINK` */
  neighAdd(spec: N.NeighSpec): void {
    this.request(N.addNeighRequest(spec), ctx(spec.link));
  }

  /** Adds or updates an ARP/NDP entry. `ip neigh replace ADDR lladdr MAC dev LINK` */
  neighReplace(spec: N.NeighSpec): void {
    this.request(N.replaceNeighRequest(spec), ctx(spec.link));
  }

  /** Deletes an ARP/NDP (or proxy) entry. `ip neigh del ADDR dev LINK [proxy]` */
  neighDel(spec: Pick<N.NeighSpec, 'dst' | 'link' | 'proxy'>): void {
    this.request(N.deleteNeighRequest(spec), ctx(spec.link));
  }

  /** Lists ARP/NDP entries, or proxy entries. `ip neigh show [dev LINK] [proxy]` (`ip -4`/`-6` with family) */
  neighList(filter: { family?: 4 | 6; link?: L.LinkRef; proxy?: boolean } = {}, opts: DumpOptions = {}): DumpList<N.Neighbour> {
    const f: Parameters<typeof N.dumpNeighRequest>[0] = { ...(filter.family !== undefined ? { family: filter.family } : {}), ...(filter.proxy ? { proxy: true } : {}) };
    if (filter.link !== undefined) f.index = this.linkIndex(filter.link);
    return this.socket.dump(N.dumpNeighRequest(f), N.decodeNeighbour, opts);
  }

  /** Adds a bridge FDB entry (a VXLAN remote with `dst`). `bridge fdb add MAC dev LINK [dst IP] [vni N] [self|master]` */
  fdbAdd(spec: N.FdbSpec): void {
    this.request(N.addFdbRequest(spec), ctx(spec.link));
  }

  /** Adds another remote for a MAC (VXLAN head-end replication). `bridge fdb append MAC dev LINK dst IP` */
  fdbAppend(spec: N.FdbSpec): void {
    this.request(N.appendFdbRequest(spec), ctx(spec.link));
  }

  /** Deletes a bridge FDB entry. `bridge fdb del MAC dev LINK [dst IP]` */
  fdbDel(spec: N.FdbSpec): void {
    this.request(N.deleteFdbRequest(spec), ctx(spec.link));
  }

  /** Lists bridge FDB entries, of one port or of one bridge. `bridge fdb show [dev LINK] [br BRIDGE]` */
  fdbList(filter: { link?: L.LinkRef; master?: L.LinkRef } = {}, opts: DumpOptions = {}): DumpList<N.Neighbour> {
    const f: Parameters<typeof N.dumpNeighRequest>[0] = { family: 'bridge' };
    if (filter.link !== undefined) f.index = this.linkIndex(filter.link);
    if (filter.master !== undefined) f.master = this.linkIndex(filter.master);
    return this.socket.dump(N.dumpNeighRequest(f), N.decodeNeighbour, opts);
  }

  // ------------------------------------------------------------ rules

  /** Adds a policy routing rule. `ip rule add [not] [priority N] [from CIDR] [to CIDR] [fwmark M/MASK] [iif DEV] [oif DEV] lookup T` */
  ruleAdd(spec: RU.RuleSpec): void {
    this.request(RU.addRuleRequest(spec));
  }

  /** Deletes the first rule matching what is given. `ip rule del ...` */
  ruleDel(spec: RU.RuleSpec): void {
    this.request(RU.deleteRuleRequest(spec));
  }

  /** Lists rules. `ip rule show` (`ip -6 rule` with family 6) */
  ruleList(filter: { family?: 4 | 6 } = {}, opts: DumpOptions = {}): DumpList<RU.Rule> {
    return this.socket.dump(RU.dumpRuleRequest(filter.family), RU.decodeRule, opts);
  }

  // ------------------------------------------------------------ netns ids

  /** Assigns an id to another netns, as seen from this one (-1: the kernel picks). `ip netns set NAME ID` */
  nsidSet(target: NS.NetnsTarget, nsid: number): void {
    this.request(NS.setNsidRequest(target, nsid));
  }

  /** The id this netns has for another one (-1 when none). `ip netns list-id target-nsid` */
  nsidGet(target: NS.NetnsTarget): number {
    const [m] = this.request(NS.getNsidRequest(target));
    return m ? NS.decodeNetnsId(m).nsid : -1;
  }

  /** Lists the ids this netns has assigned. `ip netns list-id` */
  nsidList(opts: DumpOptions = {}): DumpList<NS.NetnsId> {
    return this.socket.dump(NS.dumpNsidRequest(), NS.decodeNetnsId, opts);
  }
}
