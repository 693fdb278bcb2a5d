/**
 * Rtnl: every rtnetlink object on one socket (one netns), in two forms that share one
 * implementation. `rt.linkDel('veth0')` blocks the JS thread until the kernel has answered;
 * `await rt.promises.linkDel('veth0')` sends on a libuv worker thread and reads the ack from an
 * fd libuv watches, so the event loop runs on while the kernel works (an RTM_DELLINK of a veth
 * waits ~16 ms for RCU inside sendmsg). Both run the same operation of RtnlOps, a generator
 * that yields its netlink exchanges; only the driver differs (core/op.ts).
 *
 * The shape follows Node's own fs and dns modules: the synchronous API stays where it was, and
 * the promise API is a separate handle with the same method names (`fs.promises.readFile`,
 * `dns.promises.lookup`), rather than `*Async`/`*Sync` name pairs.
 */
import { NetlinkSocket, type BatchResult, type DumpList, type DumpOptions, type SocketOptions } from '../core/socket.js';
import { defineOperations, operationNames, PromiseHandle, SyncHandle, type PromiseMethods, type SyncMethods } from '../core/op-handle.js';
import type { Request } from '../core/message.js';
import type * as L from './link.js';
import type * as R from './route.js';
import type { LinkOptionsOf } from './kinds/registry.js';
import { RtnlOps } from './rtnl-ops.js';

export type { Link, LinkRef, LinkCreateOptions, LinkAddOptions, VethPeerOptions } from './link.js';
export type { LinkFlags } from './link-set.js';
export type { LinkStats } from './link-stats.js';
export type { RouteGetSpec } from './route-get.js';
export type { Address, AddrOptions } from './addr.js';
export type { Route, RouteSpec, AnyRoute, MplsRoute, MulticastRoute, OtherRoute, MplsRouteSpec } from './route.js';
export type { Neighbour, NeighSpec, FdbSpec } from './neigh.js';
export type { Rule, RuleSpec, PortRange } from './rule.js';
export type { NetnsId, NetnsTarget } from './nsid.js';
export type { NexthopObject, NexthopSpec as NexthopObjectSpec } from './nexthop.js';
export type {
  Qdisc, TcClass, Filter, QdiscSpec, ClassSpec, FilterSpec, TbfSpec, HtbQdiscSpec, HtbClassSpec, ActionSpec, TcAction, ActionRef,
  FqCodelSpec, NetemSpec, PrioSpec, SfqSpec, FqSpec, FifoSpec, U32Spec, U32Match, MatchallSpec, FlowerSpec, BpfSpec, PoliceSpec, Verdict,
} from './tc.js';
export { RtnlOps } from './rtnl-ops.js';

/** Operations whose type parameters or overloads a mapped type would lose: declared by hand below. */
type Generic = 'linkAdd' | 'linkSetOptions' | 'routeList';

export type { SyncMethods, PromiseMethods } from '../core/op-handle.js';

type RouteListFilter = { family?: 4 | 6 | 'mpls' | 'ipmr' | 'ip6mr'; table?: number; oif?: L.LinkRef };

const OPS = new RtnlOps();

/** Every operation's name, read from RtnlOps and its base (the two forms cannot forget one). */
export const RTNL_OPERATIONS: readonly string[] = operationNames(RtnlOps);

export interface Rtnl extends SyncMethods<Omit<RtnlOps, Generic>> {
  /**
   * Creates a link of any registered kind with its typed options, and returns it.
   * `ip link add [link LOWER] NAME type KIND [options]` (vxlan, macvlan, macvtap, vlan, ipvlan, bond, dummy, ifb, geneve, gre, ipip, vrf, wireguard, ...)
   */
  linkAdd<K extends string>(name: string, kind: K, options?: LinkOptionsOf<K>, common?: Omit<L.LinkAddOptions, 'netnsFd'>): L.Link;
  /** Changes a kind's options on an existing link, leaving the others as they are. `ip link set LINK type KIND OPTION VALUE ...` */
  linkSetOptions<K extends string>(ref: L.LinkRef, kind: K, options: Partial<LinkOptionsOf<K>> | Buffer): void;
  /**
   * Lists routes of one table (main by default; 0 for all). With a family, IPv4 or IPv6 routes;
   * without one, every family the kernel dumps (MPLS and multicast routes in their own shapes).
   * `ip route show [table T]`, `ip -6 route`, `ip -f mpls route`, `ip mroute`
   */
  routeList(filter: { family: 4 | 6; table?: number; oif?: L.LinkRef }, opts?: DumpOptions<R.Route>): DumpList<R.Route>;
  routeList(filter?: RouteListFilter, opts?: DumpOptions<R.AnyRoute>): DumpList<R.AnyRoute>;
}

/** A handle for every rtnetlink operation on one NETLINK_ROUTE socket; `promises` is its async twin. */
export class Rtnl extends SyncHandle<RtnlOps, RtnlPromises> {
  /** Wraps an open socket (ns/openRtnlIn opens one inside another netns). */
  constructor(socket: NetlinkSocket) {
    super(socket, OPS, RtnlPromises);
  }

  /** Opens a handle in the calling thread's netns (ns/openRtnlIn opens one in another netns). */
  static open(opts: SocketOptions = {}): Rtnl {
    return new Rtnl(NetlinkSocket.open(opts));
  }

  /** Like batch(), through the promise API (kept for callers written before `promises`). `ip -batch` */
  batchAsync(reqs: readonly Request[]): Promise<BatchResult[]> {
    return this.promises.batch(reqs);
  }
}

export interface RtnlPromises extends PromiseMethods<Omit<RtnlOps, Generic>> {
  /** Creates a link of any registered kind with its typed options. `ip link add NAME type KIND [options]` */
  linkAdd<K extends string>(name: string, kind: K, options?: LinkOptionsOf<K>, common?: Omit<L.LinkAddOptions, 'netnsFd'>): Promise<L.Link>;
  /** Changes a kind's options on an existing link. `ip link set LINK type KIND OPTION VALUE ...` */
  linkSetOptions<K extends string>(ref: L.LinkRef, kind: K, options: Partial<LinkOptionsOf<K>> | Buffer): Promise<void>;
  /** Lists routes of one table (main by default; 0 for all); with `each`, hands each over instead of keeping it. `ip route show [table T]` */
  routeList(filter: { family: 4 | 6; table?: number; oif?: L.LinkRef }, opts?: DumpOptions<R.Route>): Promise<DumpList<R.Route>>;
  routeList(filter?: RouteListFilter, opts?: DumpOptions<R.AnyRoute>): Promise<DumpList<R.AnyRoute>>;
}

/**
 * Every rtnetlink operation returning a promise (`rt.promises`, or `new RtnlPromises(socket)`).
 * Open the socket inside a netns synchronously (openRtnlIn), then use it from anywhere: no
 * namespace switch ever spans an await.
 */
export class RtnlPromises extends PromiseHandle<RtnlOps> {
  /** Wraps an open socket; the synchronous Rtnl on the same socket shares its queue. */
  constructor(socket: NetlinkSocket, ops: RtnlOps = OPS) {
    super(socket, ops);
  }
}

defineOperations(RTNL_OPERATIONS, Rtnl, RtnlPromises);
