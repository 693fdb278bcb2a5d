/**
 * The operations on every rtnetlink object: links, addresses and routes (from RtnlBaseOps),
 * nexthop objects, neighbours and the bridge FDB, policy rules and netns ids. Each
 * method states its `ip`/`bridge` equivalent; names resolve in the socket's own netns.
 */
import type { DumpList, DumpOptions } from '../core/socket.js';
import { dumpOp, type Op } from '../core/op.js';
import type * as L from './link.js';
import { refText as ctx } from '../core/ref.js';
import * as N from './neigh.js';
import * as RU from './rule.js';
import * as NS from './nsid.js';
import * as NH from './nexthop.js';
import * as TC from './tc.js';
import { bpfObjGet, close } from '../../sys/libc.js';
import type { Request } from '../core/message.js';
import { RtnlBaseOps } from './rtnl-base.js';

/**
 * Every rtnetlink operation, each written once as a generator of netlink exchanges
 * (core/op.ts): Rtnl runs them synchronously, Rtnl.promises asynchronously.
 */
export class RtnlOps extends RtnlBaseOps {
  // ------------------------------------------------------------ nexthop objects

  /** Adds a nexthop object. `ip nexthop add id N [via GW] [dev LINK] | blackhole | group ID[,W]/...` */
  *nexthopAdd(spec: NH.NexthopSpec): Op<void> {
    yield* this.request(NH.addNexthopRequest(spec));
  }

  /** Adds or replaces a nexthop object. `ip nexthop replace id N ...` */
  *nexthopReplace(spec: NH.NexthopSpec): Op<void> {
    yield* this.request(NH.replaceNexthopRequest(spec));
  }

  /** Deletes a nexthop object (routes using it go too). `ip nexthop del id N` */
  *nexthopDel(id: number): Op<void> {
    yield* this.request(NH.deleteNexthopRequest(id));
  }

  /** Lists nexthop objects. `ip nexthop show` */
  *nexthopList(opts: DumpOptions = {}): Op<DumpList<NH.NexthopObject>> {
    return yield* dumpOp(NH.dumpNexthopRequest(), NH.decodeNexthop, opts);
  }

  // ------------------------------------------------------------ neighbours and FDB

  /** Adds an ARP/NDP entry. `ip neigh add ADDR [lladdr MAC] [nud STATE] [proxy] [router] dev LINK` */
  *neighAdd(spec: N.NeighSpec): Op<void> {
    yield* this.request(N.addNeighRequest(spec), ctx(spec.link));
  }

  /** Adds or updates an ARP/NDP entry. `ip neigh replace ADDR lladdr MAC dev LINK` */
  *neighReplace(spec: N.NeighSpec): Op<void> {
    yield* this.request(N.replaceNeighRequest(spec), ctx(spec.link));
  }

  /** Deletes an ARP/NDP (or proxy) entry. `ip neigh del ADDR dev LINK [proxy]` */
  *neighDel(spec: Pick<N.NeighSpec, 'dst' | 'link' | 'proxy'>): Op<void> {
    yield* this.request(N.deleteNeighRequest(spec), ctx(spec.link));
  }

  /** Lists ARP/NDP entries, or proxy entries. `ip neigh show [dev LINK] [proxy]` (`ip -4`/`-6` with family) */
  *neighList(filter: { family?: 4 | 6; link?: L.LinkRef; proxy?: boolean } = {}, opts: DumpOptions = {}): Op<DumpList<N.Neighbour>> {
    const f: Parameters<typeof N.dumpNeighRequest>[0] = { ...(filter.family !== undefined ? { family: filter.family } : {}), ...(filter.proxy ? { proxy: true } : {}) };
    if (filter.link !== undefined) f.index = yield* this.linkIndex(filter.link);
    return yield* dumpOp(N.dumpNeighRequest(f), N.decodeNeighbour, opts);
  }

  /** Adds a bridge FDB entry (a VXLAN remote with `dst`). `bridge fdb add MAC dev LINK [dst IP] [vni N] [self|master]` */
  *fdbAdd(spec: N.FdbSpec): Op<void> {
    yield* this.request(N.addFdbRequest(spec), ctx(spec.link));
  }

  /** Adds another remote for a MAC (VXLAN head-end replication). `bridge fdb append MAC dev LINK dst IP` */
  *fdbAppend(spec: N.FdbSpec): Op<void> {
    yield* this.request(N.appendFdbRequest(spec), ctx(spec.link));
  }

  /** Deletes a bridge FDB entry. `bridge fdb del MAC dev LINK [dst IP]` */
  *fdbDel(spec: N.FdbSpec): Op<void> {
    yield* this.request(N.deleteFdbRequest(spec), ctx(spec.link));
  }

  /** Lists bridge FDB entries, of one port or of one bridge. `bridge fdb show [dev LINK] [br BRIDGE]` */
  *fdbList(filter: { link?: L.LinkRef; master?: L.LinkRef } = {}, opts: DumpOptions = {}): Op<DumpList<N.Neighbour>> {
    const f: Parameters<typeof N.dumpNeighRequest>[0] = { family: 'bridge' };
    if (filter.link !== undefined) f.index = yield* this.linkIndex(filter.link);
    if (filter.master !== undefined) f.master = yield* this.linkIndex(filter.master);
    return yield* dumpOp(N.dumpNeighRequest(f), N.decodeNeighbour, opts);
  }

  // ------------------------------------------------------------ rules

  /** Adds a policy routing rule. `ip rule add [not] [priority N] [from CIDR] [to CIDR] [fwmark M/MASK] [iif DEV] [oif DEV] lookup T` */
  *ruleAdd(spec: RU.RuleSpec): Op<void> {
    yield* this.request(RU.addRuleRequest(spec));
  }

  /** Deletes the first rule matching what is given. `ip rule del ...` */
  *ruleDel(spec: RU.RuleSpec): Op<void> {
    yield* this.request(RU.deleteRuleRequest(spec));
  }

  /** Lists rules. `ip rule show` (`ip -6 rule` with family 6) */
  *ruleList(filter: { family?: 4 | 6 } = {}, opts: DumpOptions = {}): Op<DumpList<RU.Rule>> {
    return yield* dumpOp(RU.dumpRuleRequest(filter.family), RU.decodeRule, opts);
  }

  // ------------------------------------------------------------ netns ids

  /** Assigns an id to another netns, as seen from this one (-1: the kernel picks). `ip netns set NAME ID` */
  *nsidSet(target: NS.NetnsTarget, nsid: number): Op<void> {
    yield* this.request(NS.setNsidRequest(target, nsid));
  }

  /** The id this netns has for another one (-1 when none). `ip netns list-id target-nsid` */
  *nsidGet(target: NS.NetnsTarget): Op<number> {
    const [m] = yield* this.request(NS.getNsidRequest(target));
    return m ? NS.decodeNetnsId(m).nsid : -1;
  }

  /** Lists the ids this netns has assigned. `ip netns list-id` */
  *nsidList(opts: DumpOptions = {}): Op<DumpList<NS.NetnsId>> {
    return yield* dumpOp(NS.dumpNsidRequest(), NS.decodeNetnsId, opts);
  }

  // ------------------------------------------------------------ traffic control

  /** Adds a qdisc. `tc qdisc add dev veth0 root tbf rate 1mbit burst 32kb latency 50ms` (also htb, fq_codel, netem, prio, sfq, fq, pfifo, bfifo, ingress, clsact) */
  *qdiscAdd(spec: TC.QdiscSpec): Op<void> {
    yield* this.request(TC.addQdiscRequest(spec), ctx(spec.dev));
  }

  /** Adds or replaces a qdisc. `tc qdisc replace dev veth0 root tbf rate 1mbit burst 32kb latency 50ms` */
  *qdiscReplace(spec: TC.QdiscSpec): Op<void> {
    yield* this.request(TC.replaceQdiscRequest(spec), ctx(spec.dev));
  }

  /** Changes the options of the qdisc that is there (the kernel refuses another kind). `tc qdisc change dev veth0 root netem delay 50ms` */
  *qdiscChange(spec: TC.QdiscSpec): Op<void> {
    yield* this.request(TC.changeQdiscRequest(spec), ctx(spec.dev));
  }

  /** Deletes a qdisc (its classes and filters go with it). `tc qdisc del dev veth0 root` (or `ingress`, `clsact`) */
  *qdiscDel(spec: TC.QdiscSpec): Op<void> {
    yield* this.request(TC.deleteQdiscRequest(spec), ctx(spec.dev));
  }

  /** Lists qdiscs, of one device or all. `tc qdisc show [dev DEV]` */
  *qdiscList(filter: { dev?: L.LinkRef } = {}, opts: DumpOptions = {}): Op<DumpList<TC.Qdisc>> {
    const index = filter.dev !== undefined ? yield* this.linkIndex(filter.dev) : 0;
    return yield* dumpOp(TC.dumpQdiscRequest(index), (m) => {
      const q = TC.decodeQdisc(m);
      return index === 0 || q.index === index ? q : undefined;
    }, opts);
  }

  /** Adds a class. `tc class add dev ifb0 parent 1: classid 1:10 htb rate 1mbit ceil 2mbit` */
  *classAdd(spec: TC.ClassSpec): Op<void> {
    yield* this.request(TC.addClassRequest(spec), ctx(spec.dev));
  }

  /** Adds or replaces a class. `tc class replace dev ifb0 parent 1: classid 1:10 htb rate 1mbit` */
  *classReplace(spec: TC.ClassSpec): Op<void> {
    yield* this.request(TC.replaceClassRequest(spec), ctx(spec.dev));
  }

  /** Changes the options of a class that is there. `tc class change dev ifb0 parent 1: classid 1:10 htb rate 2mbit` */
  *classChange(spec: TC.ClassSpec): Op<void> {
    yield* this.request(TC.changeClassRequest(spec), ctx(spec.dev));
  }

  /** Deletes a class. `tc class del dev ifb0 parent 1: classid 1:10` */
  *classDel(spec: Omit<TC.ClassSpec, 'kind' | 'htb'>): Op<void> {
    yield* this.request(TC.deleteClassRequest(spec), ctx(spec.dev));
  }

  /** Lists the classes of a device. `tc class show dev DEV` */
  *classList(dev: L.LinkRef, opts: DumpOptions = {}): Op<DumpList<TC.TcClass>> {
    return yield* dumpOp(TC.dumpClassRequest(yield* this.linkIndex(dev)), TC.decodeClass, opts);
  }

  /** Adds a filter. `tc filter add dev veth0 parent ffff: protocol all prio 1 u32 match u32 0 0 flowid 1:1 action mirred egress redirect dev ifb0` (also matchall, flower, bpf by fd or pinned path) */
  *filterAdd(spec: TC.FilterSpec): Op<void> {
    yield* filterRequest(this, (s) => TC.addFilterRequest(s), spec);
  }

  /** Adds or replaces a filter. `tc filter replace dev veth0 parent ffff: prio 1 handle H u32 ...` */
  *filterReplace(spec: TC.FilterSpec): Op<void> {
    yield* filterRequest(this, (s) => TC.replaceFilterRequest(s), spec);
  }

  /** Changes a filter that is there (give its handle). `tc filter change dev veth0 parent ffff: prio 1 handle H flower ...` */
  *filterChange(spec: TC.FilterSpec): Op<void> {
    yield* filterRequest(this, (s) => TC.changeFilterRequest(s), spec);
  }

  /** Deletes filters (all of a priority when no handle is given). `tc filter del dev veth0 parent ffff: prio 1` */
  *filterDel(spec: Omit<TC.FilterSpec, 'u32' | 'matchall' | 'flower' | 'bpf'>): Op<void> {
    yield* this.request(TC.deleteFilterRequest(spec), ctx(spec.dev));
  }

  /** Lists the filters of a device under a parent (u32 lists its hash tables too, with no options). `tc filter show dev DEV parent P` */
  *filterList(dev: L.LinkRef, parent: string | number, opts: DumpOptions = {}): Op<DumpList<TC.Filter>> {
    return yield* dumpOp(TC.dumpFilterRequest(yield* this.linkIndex(dev), parent), TC.decodeFilter, opts);
  }

  // ------------------------------------------------------------ standalone tc actions

  /** Adds actions that filters can share by index. `tc actions add action police rate 1mbit burst 10k index 7` */
  *actionAdd(actions: readonly TC.ActionSpec[]): Op<void> {
    yield* this.request(TC.addActionRequest(actions));
  }

  /** Adds or replaces actions. `tc actions replace action gact drop index 5` */
  *actionReplace(actions: readonly TC.ActionSpec[]): Op<void> {
    yield* this.request(TC.replaceActionRequest(actions));
  }

  /** Deletes actions by kind and index. `tc actions del action mirred index 5` */
  *actionDel(refs: readonly TC.ActionRef[]): Op<void> {
    yield* this.request(TC.deleteActionRequest(refs));
  }

  /** Lists the actions of one kind. `tc actions ls action mirred` */
  *actionList(kind: string, opts: DumpOptions = {}): Op<TC.TcAction[]> {
    return (yield* dumpOp(TC.dumpActionRequest(kind), (m) => TC.decodeActions(m), opts)).flat();
  }
}

/** Sends a filter request, opening a pinned bpf program for it first and closing it after (the kernel holds its own reference). */
function* filterRequest(ops: RtnlOps, build: (s: TC.FilterSpec) => Request, spec: TC.FilterSpec): Op<void> {
  const pinned = spec.bpf?.pinned;
  if (pinned === undefined || spec.bpf?.fd !== undefined) return void (yield* ops.request(build(spec), ctx(spec.dev)));
  const fd = bpfObjGet(pinned);
  try {
    yield* ops.request(build({ ...spec, bpf: { ...spec.bpf, fd } }), ctx(spec.dev));
  } finally {
    close(fd);
  }
}
