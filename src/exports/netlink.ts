/** tsnetlink/netlink: the netlink library and namespaces, without bridge networks or firewalls (imports less). */
export * from '../errors.js';
export { Rtnl, RtnlPromises, RtnlOps, RTNL_OPERATIONS } from '../netlink/route/rtnl.js';
export { runSync, runAsync, batchOp, requestOp, dumpOp, exchangeOp, type Op, type Step } from '../netlink/core/op.js';
export { defineOperations, operationNames, type SyncMethods, type PromiseMethods, type OpHost } from '../netlink/core/op-handle.js';
export type {
  Link, LinkRef, LinkCreateOptions, VethPeerOptions, Address, AddrOptions, Route, RouteSpec, AnyRoute, MplsRoute, MulticastRoute, OtherRoute, MplsRouteSpec,
  Neighbour, NeighSpec, FdbSpec, Rule, RuleSpec, NetnsId, NetnsTarget, NexthopObject, NexthopObjectSpec,
  Qdisc, TcClass, Filter, QdiscSpec, ClassSpec, FilterSpec, TbfSpec, HtbQdiscSpec, HtbClassSpec, ActionSpec, TcAction, ActionRef,
  FqCodelSpec, NetemSpec, PrioSpec, SfqSpec, FqSpec, FifoSpec, U32Spec, U32Match, MatchallSpec, FlowerSpec, BpfSpec, PoliceSpec, Verdict,
  LinkFlags, LinkStats, RouteGetSpec, PortRange,
} from '../netlink/route/rtnl.js';
export { setFlagsRequest, setKindOptionsRequest } from '../netlink/route/link-set.js';
export { LINK_STATS_FIELDS, type LinkStatsField } from '../netlink/route/link-stats.js';
export { NetlinkSocket, KernelTransport, parseError, type Transport, type SocketOptions, type BatchResult, type DumpOptions, type DumpList, type Undecodable } from '../netlink/core/socket.js';
export * as linkRequests from '../netlink/route/link.js';
export * as addrRequests from '../netlink/route/addr.js';
export * as routeRequests from '../netlink/route/route.js';
export * as neighRequests from '../netlink/route/neigh.js';
export * as ruleRequests from '../netlink/route/rule.js';
export * as nsidRequests from '../netlink/route/nsid.js';
export * as nexthopRequests from '../netlink/route/nexthop.js';
export * as tcRequests from '../netlink/route/tc.js';
export { parseRate, parseSize, parseTime, parseTimeNs, parsePercent, rateTable, kernelPsched, parsePsched, type Psched, type RateTable, type LinkLayer } from '../netlink/route/tc-rate.js';
export * as constants from '../netlink/core/constants.js';
export * as testing from '../netlink/core/testing.js';
export { RTNL_TYPES, RTNLGRP, rtnlTypeOf, rtnlDefOf, type RtnlKind, type RtnlObjects } from '../netlink/route/rtnl-types.js';
export { encode, encodeBatch, splitMessages, decodePayload, reencode, request, struct, structCodec, type Request, type RawMessage, type MessageDef, type Struct } from '../netlink/core/message.js';
export * as attrs from '../netlink/core/attr.js';
export { Monitor, openMonitorTransport, groupsOf, type MonitorEvent, type ChangeEvent, type MonitorOptions } from '../netlink/route/monitor.js';
export { watchWith, objectKey, dumpKind, type WatchEvent } from '../netlink/route/watch.js';
export { monitor, watch, type NetnsMonitorOptions } from '../ns/monitor.js';
export { Genl, GenlPromises, GenlOps, GENL_OPERATIONS, genlRequest, genlMessage, decodeFamily, getFamilyRequest, GENL_ID_CTRL, CTRL_CMD, type GenlFamily, type GenlMsgHdr, type GenlReply } from '../netlink/genl/genl.js';
export * as ethtool from '../netlink/genl/ethtool.js';
export { Ethtool, EthtoolPromises, EthtoolOps, ETHTOOL_OPERATIONS } from '../netlink/genl/ethtool.js';
export { SockDiag, SockDiagPromises, SockDiagOps, SOCKDIAG_OPERATIONS, socketOwners, socketDumpRequest, decodeSocket, TCP_STATE, type InetSocket, type SocketQuery, type SocketState, type SocketProtocol, type SocketOwner } from '../netlink/sockdiag/sockdiag.js';
export * as sockdiag from '../netlink/sockdiag/sockdiag.js';
export { unixDumpRequest, decodeUnixSocket, UNIX_TYPE, UDIAG_SHOW, type UnixSocket, type UnixQuery, type UnixSocketType, type UnixShow } from '../netlink/sockdiag/unix.js';
export {
  Xfrm, XfrmPromises, XfrmOps, XFRM_OPERATIONS, XFRM_INF, type XfrmState, type XfrmPolicy, type XfrmTemplate, type XfrmSelector, type XfrmLifetime, type XfrmCurrent, type XfrmStateSpec, type XfrmStateId, type XfrmStateFilter,
  type XfrmAllocSpiSpec, type XfrmPolicySpec, type XfrmPolicyId, type XfrmTemplateSpec, type XfrmSelectorSpec, type XfrmLifetimeSpec, type XfrmMarkSpec, type XfrmKey,
} from '../netlink/xfrm/xfrm.js';
export * as xfrm from '../netlink/xfrm/xfrm.js';
export * as xfrmSchema from '../netlink/xfrm/xfrm-schema.js';
export { Ipset, IpsetPromises, IpsetOps, IPSET_OPERATIONS, IpsetError, type IpsetSet, type IpsetMember, type IpsetHeader, type IpsetEntry, type IpsetEntryOptions, type IpsetCreateSpec } from '../netlink/netfilter/ipset.js';
export * as ipset from '../netlink/netfilter/ipset.js';
export * as ipsetSchema from '../netlink/netfilter/ipset-schema.js';
export * as nfnetlink from '../netlink/netfilter/nfnetlink.js';
export { WireGuard, WireGuardPromises, WireGuardOps, WIREGUARD_OPERATIONS, type WireGuardDevice, type WireGuardPeer, type WireGuardDeviceSpec, type WireGuardPeerSpec, type WgKey } from '../netlink/genl/wireguard.js';
export * as wireguard from '../netlink/genl/wireguard.js';
export { Conntrack, ConntrackPromises, ConntrackOps, CONNTRACK_OPERATIONS, type ConntrackLookup, type ConntrackFlushFilter, type TransportOpener } from '../netlink/netfilter/conntrack-client.js';
export { ConntrackMonitor, type ConntrackEvent, type ConntrackEventOptions } from '../netlink/netfilter/conntrack-events.js';
export type { ConntrackFilter, ConntrackTupleFilter } from '../netlink/netfilter/conntrack-filter.js';
export { CT_STATUS, CT_PROTOCOLS, type ConntrackEntry, type ConntrackTuple, type ConntrackCounters, type ConntrackStatus, type ConntrackProtocol, type ConntrackEventType } from '../netlink/netfilter/conntrack.js';
export * as conntrack from '../netlink/netfilter/conntrack.js';
export { EventStream, type EventStreamOptions, type ResyncReason } from '../netlink/core/event-stream.js';
export * as nftables from '../netlink/nftables/index.js';
export { registerLinkKind, linkKind, linkKinds, type LinkKind, type LinkKindOptions, type LinkOptionsOf, type WithLower } from '../netlink/route/kinds/registry.js';
export type { VxlanOptions, GeneveOptions, GreOptions, IptunOptions } from '../netlink/route/kinds/tunnels.js';
export type { VlanOptions, MacvlanOptions, IpvlanOptions } from '../netlink/route/kinds/lower.js';
export type { BondOptions, BondPortAttrs } from '../netlink/route/kinds/bond.js';
export type { BridgeAttrs, BridgePortAttrs } from '../netlink/route/kinds/bridge.js';
export type { VrfOptions, TunAttrs } from '../netlink/route/kinds/simple.js';
export type { LinkAddOptions } from '../netlink/route/link.js';
export { validateIfname } from '../netlink/core/validate.js';
export { parseCidr, parseIp } from '../ip/parse.js';
export { kernelClock } from '../sys/libc.js';
export { NetnsHandle, openNetns, currentNetns, withNetns, openSocketIn, openRtnlIn, openConntrackIn, type NetnsSpec } from '../ns/netns.js';
export { createNamedNetns, deleteNamedNetns, createAnonymousNetns } from '../ns/named.js';
export { spawnInNetns, spawnSyncInNetns } from '../ns/spawn.js';
