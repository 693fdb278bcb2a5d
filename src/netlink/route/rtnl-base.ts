/**
 * The rtnetlink operations on links, addresses and routes, for one socket (one netns).
 * Each method states its `ip` equivalent. Names resolve in the socket's own netns
 * (pitfall 7: ifindex is per netns).
 */
import { CodecError, NetlinkError } from '../../errors.js';
import { NLM_F, NLMSG, RTM, RT_TABLE, type AddrGenMode } from '../core/constants.js';
import type { RawMessage, Request } from '../core/message.js';
import { parseError, type BatchResult, type DumpList, type DumpOptions } from '../core/socket.js';
import { batchOp, dumpOp, exchangeOp, requestOp, type Op } from '../core/op.js';
import * as L from './link.js';
import * as A from './addr.js';
import * as R from './route.js';
import * as RG from './route-get.js';
import * as LS from './link-set.js';
import type { BridgeAttrs, BridgePortAttrs } from './schemas.js';
import { refKey, refText as ctx } from '../core/ref.js';
import * as libc from '../../sys/libc.js';
import { validateIfname } from '../core/validate.js';
import type { LinkOptionsOf } from './kinds/registry.js';

export type { Link, LinkRef, LinkCreateOptions, VethPeerOptions } from './link.js';
export type { Address, AddrOptions } from './addr.js';
export type { Route, RouteSpec, AnyRoute, MplsRoute, MulticastRoute, OtherRoute, MplsRouteSpec } from './route.js';

/**
 * The operations on links, addresses and routes, each written once as a generator of netlink
 * exchanges (core/op.ts); RtnlOps adds the other objects. Rtnl runs them synchronously,
 * Rtnl.promises asynchronously. They hold no state: the socket belongs to the driver.
 */
export class RtnlBaseOps {
  /**
   * Resolves the link names that requests carry where their messages need an ifindex: one
   * pipelined RTM_GETLINK for all of them. A missing link is NetlinkError ENODEV naming it.
   */
  *resolve(reqs: readonly Request[]): Op<Request[]> {
    const names = [...new Set(reqs.flatMap((r) => r.pending ?? []))];
    if (names.length === 0) return reqs as Request[];
    const found = new Map<string, number>();
    (yield* batchOp(names.map((n) => L.getRequest(n)))).forEach((r, i) => {
      const e = r.error;
      if (e) throw new NetlinkError(e.operation, e.errno, e.kernelMessage, e.offset, `"${names[i]}"`);
      if (r.replies[0]) found.set(names[i] as string, L.peekLinkIndexes(r.replies[0]).index);
    });
    return reqs.map((r) => (r.pending?.length && r.resolve ? r.resolve((n) => found.get(n) as number) : r));
  }

  /** Sends requests pipelined in one sendto; each result carries its own error. `ip -batch` */
  *batch(reqs: readonly Request[]): Op<BatchResult[]> {
    return yield* batchOp(yield* this.resolve(reqs));
  }

  /** Like batch(), but throws the first failure (annotated with its position). */
  *batchOrThrow(reqs: readonly Request[]): Op<BatchResult[]> {
    const res = yield* batchOp(yield* this.resolve(reqs));
    for (const r of res) if (r.error) throw r.error;
    return res;
  }

  /** Sends one request (names resolved) and waits for its ack; returns the echo replies. */
  *request(req: Request, context?: string): Op<RawMessage[]> {
    return yield* requestOp((yield* this.resolve([req]))[0] as Request, context);
  }

  // ------------------------------------------------------------ links

  /** Creates a bridge. `ip link add NAME type bridge [mtu N] [address MAC] [up]` */
  *linkAddBridge(name: string, opts: L.LinkCreateOptions & { bridge?: BridgeAttrs } = {}): Op<L.Link> {
    return yield* createWithEcho(this, L.addBridgeRequest(name, opts), name);
  }

  /**
   * Creates a veth pair, the peer directly in another netns when `peer.netnsFd`/`netnsPid` is
   * set. `ip link add NAME [master BR] [up] type veth peer name PEER [netns NS] [up]`
   * Returns the local end; its `peerIndex` is the peer's ifindex in the peer's netns.
   */
  *linkAddVeth(name: string, peer: L.VethPeerOptions, opts: L.LinkCreateOptions = {}): Op<L.Link> {
    // No NLM_F_ECHO here: the kernel sends the peer's notification from the peer's netns,
    // where our port does not exist, and reports that as ENOTCONN in the ack (seen on 6.18).
    yield* this.request(L.addVethRequest(name, peer, opts), ctx(name));
    return yield* this.linkGet(name);
  }

  /**
   * Creates a link of any registered kind with its typed options, and returns it.
   * `ip link add [link LOWER] NAME type KIND [options]` (vxlan, macvlan, macvtap, vlan, ipvlan, bond, dummy, ifb, geneve, gre, ipip, vrf, wireguard, ...)
   */
  *linkAdd<K extends string>(name: string, kind: K, options?: LinkOptionsOf<K>, common: Omit<L.LinkAddOptions, 'netnsFd'> = {}): Op<L.Link> {
    // A link made directly in another netns is neither echoed nor visible here: batch
    // L.addLinkRequest with netnsFd for that.
    return yield* createWithEcho(this, L.addLinkRequest(name, kind, options, common), name);
  }

  /**
   * Creates a persistent tun or tap device as `ip tuntap add` does (ioctls on /dev/net/tun:
   * rtnetlink cannot create one), and returns it. `ip tuntap add NAME mode tun|tap [multi_queue] [vnet_hdr] [user U] [group G]`
   */
  *tuntapAdd(name: string, opts: { mode: 'tun' | 'tap'; multiQueue?: boolean; vnetHdr?: boolean; pi?: boolean; owner?: number; group?: number }): Op<L.Link> {
    libc.tuntapCreate(validateIfname(name), opts);
    return yield* this.linkGet(name);
  }

  /** Sets the transmit queue length. `ip link set LINK txqlen N` */
  *linkSetTxqlen(ref: L.LinkRef, txqlen: number): Op<void> {
    yield* this.request(L.setTxqlenRequest(ref, txqlen), ctx(ref));
  }

  /** Adds an alternative name. `ip link property add dev LINK altname NAME` */
  *linkAddAltname(ref: L.LinkRef, altname: string): Op<void> {
    yield* this.request(L.addAltnameRequest(ref, altname), ctx(ref));
  }

  /** Removes an alternative name. `ip link property del dev LINK altname NAME` */
  *linkDelAltname(ref: L.LinkRef, altname: string): Op<void> {
    yield* this.request(L.deleteAltnameRequest(ref, altname), ctx(ref));
  }

  /** Sets bridge-port flags (learning, unicastFlood, isolated, guard, mcastFlood, neighSuppress, ...). `ip link set LINK type bridge_slave ...` */
  *linkSetBridgePort(ref: L.LinkRef, port: BridgePortAttrs): Op<void> {
    yield* this.request(L.setBridgePortRequest(ref, port), ctx(ref));
  }

  /** Brings a link up. `ip link set LINK up` */
  *linkSetUp(ref: L.LinkRef): Op<void> {
    yield* this.request(L.setUpRequest(ref), ctx(ref));
  }

  /** Brings a link down. `ip link set LINK down` */
  *linkSetDown(ref: L.LinkRef): Op<void> {
    yield* this.request(L.setDownRequest(ref), ctx(ref));
  }

  /** Enslaves a link to a bridge. `ip link set LINK master BRIDGE` */
  *linkSetMaster(ref: L.LinkRef, master: L.LinkRef): Op<void> {
    yield* this.request(L.setMasterRequest(ref, master), ctx(ref));
  }

  /** Releases a link from its bridge. `ip link set LINK nomaster` */
  *linkSetNoMaster(ref: L.LinkRef): Op<void> {
    yield* this.request(L.setNoMasterRequest(ref), ctx(ref));
  }

  /**
   * Moves a link into the netns open as `fd`. `ip link set LINK netns NS`
   * Costs ~29 ms of kernel time (RCU); prefer creating a veth peer in place.
   */
  *linkSetNsFd(ref: L.LinkRef, fd: number): Op<void> {
    yield* this.request(L.setNetnsFdRequest(ref, fd), ctx(ref));
  }

  /** Moves a link into the netns of a process. `ip link set LINK netns PID` */
  *linkSetNsPid(ref: L.LinkRef, pid: number): Op<void> {
    yield* this.request(L.setNetnsPidRequest(ref, pid), ctx(ref));
  }

  /** Renames a link (it must be down). `ip link set LINK name NEWNAME` */
  *linkSetName(ref: L.LinkRef, name: string): Op<void> {
    yield* this.request(L.setNameRequest(ref, name), ctx(ref));
  }

  /** Sets the MTU. `ip link set LINK mtu N` */
  *linkSetMtu(ref: L.LinkRef, mtu: number): Op<void> {
    yield* this.request(L.setMtuRequest(ref, mtu), ctx(ref));
  }

  /** Sets the MAC address. `ip link set LINK address MAC` */
  *linkSetMac(ref: L.LinkRef, mac: string): Op<void> {
    yield* this.request(L.setMacRequest(ref, mac), ctx(ref));
  }

  /** Sets the bridge-port hairpin flag. `ip link set LINK type bridge_slave hairpin on|off` */
  *linkSetHairpin(ref: L.LinkRef, on: boolean): Op<void> {
    yield* this.request(L.setHairpinRequest(ref, on), ctx(ref));
  }

  /** Sets how IPv6 link-local addresses are made ('none': no link-local). `ip link set LINK addrgenmode MODE` */
  *linkSetAddrGenMode(ref: L.LinkRef, mode: AddrGenMode): Op<void> {
    yield* this.request(L.setAddrGenModeRequest(ref, mode), ctx(ref));
  }

  /** Sets or clears ('') a link's alias. `ip link set LINK alias TEXT` */
  *linkSetAlias(ref: L.LinkRef, alias: string): Op<void> {
    yield* this.request(L.setAliasRequest(ref, alias), ctx(ref));
  }

  /** Puts a link in a device group. `ip link set LINK group N` */
  *linkSetGroup(ref: L.LinkRef, group: number): Op<void> {
    yield* this.request(L.setGroupRequest(ref, group), ctx(ref));
  }

  /** Deletes every link of a device group at once (one RCU grace period). `ip link del group N` */
  *linkDelGroup(group: number): Op<void> {
    yield* this.request(L.deleteGroupRequest(group), `group ${group}`);
  }

  /** Turns device flags on or off in one message. `ip link set LINK [promisc on|off] [allmulticast on|off] [arp on|off] [multicast on|off] [dynamic on|off] [trailers on|off]` */
  *linkSetFlags(ref: L.LinkRef, flags: LS.LinkFlags): Op<void> {
    yield* this.request(LS.setFlagsRequest(ref, flags), ctx(ref));
  }

  /**
   * Changes a kind's options on an existing link, leaving the others as they are (the kernel
   * refuses those it cannot change in place). `ip link set LINK type KIND OPTION VALUE ...`
   */
  *linkSetOptions<K extends string>(ref: L.LinkRef, kind: K, options: Partial<LinkOptionsOf<K>> | Buffer): Op<void> {
    yield* this.request(LS.setKindOptionsRequest(ref, kind, options), ctx(ref));
  }

  /** Deletes a link (a veth takes its peer along). `ip link del LINK` */
  *linkDel(ref: L.LinkRef): Op<void> {
    yield* this.request(L.deleteRequest(ref), ctx(ref));
  }

  /** Gets one link, its counters included; a missing link is NetlinkError ENODEV, never index 0. `ip -s link show dev LINK` */
  *linkGet(ref: L.LinkRef): Op<L.Link> {
    const [m] = yield* this.request(L.getRequest(ref), ctx(ref));
    if (!m) throw new CodecError(`RTM_GETLINK ${ctx(ref)}: no link in the reply`);
    return L.decodeLink(m);
  }

  /** Resolves a name to its ifindex in this netns (an index or a Link passes through). */
  *linkIndex(ref: L.LinkRef): Op<number> {
    const k = refKey(ref);
    return typeof k === 'number' ? k : (yield* this.linkGet(k)).index;
  }

  /** Lists links, optionally those enslaved to `master` or of one kind. `ip -d link show [master BR] [type KIND]` */
  *linkList(filter: { master?: L.LinkRef; kind?: string } = {}, opts: DumpOptions = {}): Op<DumpList<L.Link>> {
    const f: { master?: number; kind?: string } = {};
    if (filter.master !== undefined) f.master = yield* this.linkIndex(filter.master);
    if (filter.kind !== undefined) f.kind = filter.kind;
    return yield* dumpOp(L.dumpRequest(f), L.decodeLink, opts);
  }

  // ------------------------------------------------------------ addresses

  /** Adds an address (IPv4 broadcast computed). `ip addr add CIDR brd + dev LINK [nodad]` */
  *addrAdd(link: L.LinkRef, cidr: string, opts: A.AddrOptions = {}): Op<void> {
    yield* this.request(A.addAddrRequest(link, cidr, opts), ctx(link));
  }

  /** Adds or updates an address. `ip addr replace CIDR dev LINK` */
  *addrReplace(link: L.LinkRef, cidr: string, opts: A.AddrOptions = {}): Op<void> {
    yield* this.request(A.replaceAddrRequest(link, cidr, opts), ctx(link));
  }

  /** Removes an address. `ip addr del CIDR dev LINK` */
  *addrDel(link: L.LinkRef, cidr: string): Op<void> {
    yield* this.request(A.deleteAddrRequest(link, cidr), ctx(link));
  }

  /** Lists addresses. `ip addr show [dev LINK]` (`ip -4`/`-6` with family) */
  *addrList(filter: { link?: L.LinkRef; family?: 4 | 6 } = {}, opts: DumpOptions = {}): Op<DumpList<A.Address>> {
    const f: { family?: 4 | 6; index?: number } = {};
    if (filter.family !== undefined) f.family = filter.family;
    if (filter.link !== undefined) f.index = yield* this.linkIndex(filter.link);
    return yield* dumpOp(A.dumpAddrRequest(f), A.decodeAddress, opts);
  }

  // ------------------------------------------------------------ routes

  /** Adds a route. `ip route add DST|default [from SRC] [via GW] [dev LINK] [table T] [metric P] [mtu N ...] [nexthop ...] [nhid N]` */
  *routeAdd(spec: R.RouteSpec): Op<void> {
    yield* this.request(R.addRouteRequest(spec));
  }

  /** Adds or replaces a route. `ip route replace ...` */
  *routeReplace(spec: R.RouteSpec): Op<void> {
    yield* this.request(R.replaceRouteRequest(spec));
  }

  /** Adds another route to the same prefix. `ip route append ...` */
  *routeAppend(spec: R.RouteSpec): Op<void> {
    yield* this.request(R.appendRouteRequest(spec));
  }

  /** Deletes a route. `ip route del ...` */
  *routeDel(spec: R.RouteSpec): Op<void> {
    yield* this.request(R.deleteRouteRequest(spec));
  }

  /**
   * Lists routes of one table (main by default; 0 for all). With a family, IPv4 or IPv6 routes;
   * without one, every family the kernel dumps (MPLS and multicast routes in their own shapes).
   * `ip route show [table T]`, `ip -6 route`, `ip -f mpls route`, `ip mroute`
   */
  *routeList(filter: { family?: 4 | 6 | 'mpls' | 'ipmr' | 'ip6mr'; table?: number; oif?: L.LinkRef } = {}, opts: DumpOptions = {}): Op<DumpList<R.AnyRoute>> {
    const table = filter.table ?? RT_TABLE.MAIN;
    const oif = filter.oif !== undefined ? yield* this.linkIndex(filter.oif) : undefined;
    return yield* dumpOp(
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

  /**
   * The route the kernel would use for a packet (with `fibmatch`, the FIB entry that matched).
   * `ip route get ADDR [from SRC] [iif DEV] [oif DEV] [mark M] [uid U] [ipproto P] [sport N] [dport N] [fibmatch]`
   */
  *routeGet(spec: RG.RouteGetSpec): Op<R.Route> {
    const [req] = yield* this.resolve([RG.getRouteRequest(spec)]);
    // Sent as iproute2 sends it, without NLM_F_ACK: the answer is the route or an error.
    const { replies } = yield* exchangeOp([req as Request], (m) => m.type === RTM.NEWROUTE || m.type === NLMSG.ERROR);
    for (const { message } of replies) {
      if (message.type === NLMSG.ERROR) {
        const err = parseError(message, `to ${spec.dst}`);
        if (err) throw err;
      }
    }
    const m = replies.find((r) => r.message.type === RTM.NEWROUTE);
    if (!m) throw new CodecError(`RTM_GETROUTE to ${spec.dst}: no route in the reply`);
    return R.decodeRoute(m.message);
  }

  /** Adds an MPLS route. `ip -f mpls route add LABEL [as LABELS] via inet|inet6 ADDR dev LINK` */
  *mplsRouteAdd(spec: R.MplsRouteSpec): Op<void> {
    yield* this.request(R.addMplsRouteRequest(spec));
  }

  /** Deletes an MPLS route. `ip -f mpls route del LABEL` */
  *mplsRouteDel(spec: R.MplsRouteSpec): Op<void> {
    yield* this.request(R.deleteMplsRouteRequest(spec));
  }

}

/** Creates a link with NLM_F_ECHO and decodes the echo (a lookup on kernels that ignore the flag). */
function* createWithEcho(ops: RtnlBaseOps, req: Request, name: string): Op<L.Link> {
  const [r] = yield* ops.resolve([req]);
  const replies = yield* requestOp({ ...(r as Request), flags: (r as Request).flags | NLM_F.ECHO }, ctx(name));
  const echoed = replies.find((m) => m.type === RTM.NEWLINK);
  // Kernels before 6.3 ignore NLM_F_ECHO on RTM_NEWLINK: fall back to a lookup.
  return echoed ? L.decodeLink(echoed) : yield* ops.linkGet(name);
}
