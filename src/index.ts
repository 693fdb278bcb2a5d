/** tsnetlink: rtnetlink for Node.js in pure TypeScript, and bridge networks for containers. */
export * from './errors.js';
export { Rtnl } from './netlink/rtnl.js';
export type {
  Link, LinkRef, LinkCreateOptions, VethPeerOptions, Address, AddrOptions, Route, RouteSpec, AnyRoute, MplsRoute, MulticastRoute, OtherRoute, MplsRouteSpec,
  Neighbour, NeighSpec, FdbSpec, Rule, RuleSpec, NetnsId, NetnsTarget, NexthopObject, NexthopObjectSpec,
  Qdisc, TcClass, Filter, QdiscSpec, ClassSpec, FilterSpec, TbfSpec, HtbQdiscSpec, HtbClassSpec, ActionSpec, TcAction, ActionRef,
  FqCodelSpec, NetemSpec, PrioSpec, SfqSpec, FqSpec, FifoSpec, U32Spec, U32Match, MatchallSpec, FlowerSpec, BpfSpec, PoliceSpec, Verdict,
  LinkFlags, LinkStats, RouteGetSpec, PortRange,
} from './netlink/rtnl.js';
export { setFlagsRequest, setKindOptionsRequest } from './netlink/link-set.js';
export { LINK_STATS_FIELDS, type LinkStatsField } from './netlink/link-stats.js';
export { NetlinkSocket, KernelTransport, parseError, type Transport, type SocketOptions, type BatchResult, type DumpOptions, type DumpList, type Undecodable } from './netlink/socket.js';
export * as linkRequests from './netlink/link.js';
export * as addrRequests from './netlink/addr.js';
export * as routeRequests from './netlink/route.js';
export * as neighRequests from './netlink/neigh.js';
export * as ruleRequests from './netlink/rule.js';
export * as nsidRequests from './netlink/nsid.js';
export * as nexthopRequests from './netlink/nexthop.js';
export * as tcRequests from './netlink/tc.js';
export { parseRate, parseSize, parseTime, parseTimeNs, parsePercent, rateTable, kernelPsched, parsePsched, type Psched, type RateTable, type LinkLayer } from './netlink/tc-rate.js';
export * as constants from './netlink/constants.js';
export * as testing from './netlink/testing.js';
export { RTNL_TYPES, RTNLGRP, rtnlTypeOf, rtnlDefOf, type RtnlKind, type RtnlObjects } from './netlink/rtnl-types.js';
export { encode, encodeBatch, splitMessages, decodePayload, reencode, request, struct, structCodec, type Request, type RawMessage, type MessageDef, type Struct } from './netlink/message.js';
export * as attrs from './netlink/attr.js';
export { Monitor, openMonitorTransport, groupsOf, type MonitorEvent, type ChangeEvent, type MonitorOptions } from './netlink/monitor.js';
export { watchWith, objectKey, dumpKind, type WatchEvent } from './netlink/watch.js';
export { monitor, watch, type NetnsMonitorOptions } from './ns/monitor.js';
export { Genl, genlRequest, genlMessage, decodeFamily, getFamilyRequest, GENL_ID_CTRL, CTRL_CMD, type GenlFamily, type GenlMsgHdr } from './netlink/genl.js';
export * as ethtool from './netlink/ethtool.js';
export { SockDiag, socketOwners, socketDumpRequest, decodeSocket, TCP_STATE, type InetSocket, type SocketQuery, type SocketState, type SocketProtocol, type SocketOwner } from './netlink/sockdiag.js';
export * as sockdiag from './netlink/sockdiag.js';
export {
  Xfrm, XFRM_INF, type XfrmState, type XfrmPolicy, type XfrmTemplate, type XfrmSelector, type XfrmLifetime, type XfrmCurrent, type XfrmStateSpec, type XfrmStateId, type XfrmStateFilter,
  type XfrmAllocSpiSpec, type XfrmPolicySpec, type XfrmPolicyId, type XfrmTemplateSpec, type XfrmSelectorSpec, type XfrmLifetimeSpec, type XfrmMarkSpec, type XfrmKey,
} from './netlink/xfrm.js';
export * as xfrm from './netlink/xfrm.js';
export * as xfrmSchema from './netlink/xfrm-schema.js';
export { Ipset, IpsetError, type IpsetSet, type IpsetMember, type IpsetHeader, type IpsetEntry, type IpsetEntryOptions, type IpsetCreateSpec } from './netlink/ipset.js';
export * as ipset from './netlink/ipset.js';
export * as ipsetSchema from './netlink/ipset-schema.js';
export * as nfnetlink from './netlink/nfnetlink.js';
export { WireGuard, type WireGuardDevice, type WireGuardPeer, type WireGuardDeviceSpec, type WireGuardPeerSpec, type WgKey } from './netlink/wireguard.js';
export * as wireguard from './netlink/wireguard.js';
export { Conntrack, type ConntrackLookup, type ConntrackFlushFilter, type TransportOpener } from './netlink/conntrack-client.js';
export { ConntrackMonitor, type ConntrackEvent, type ConntrackEventOptions } from './netlink/conntrack-events.js';
export type { ConntrackFilter, ConntrackTupleFilter } from './netlink/conntrack-filter.js';
export { CT_STATUS, CT_PROTOCOLS, type ConntrackEntry, type ConntrackTuple, type ConntrackCounters, type ConntrackStatus, type ConntrackProtocol, type ConntrackEventType } from './netlink/conntrack.js';
export * as conntrack from './netlink/conntrack.js';
export { EventStream, type EventStreamOptions, type ResyncReason } from './netlink/event-stream.js';
export * as nftables from './nftables/index.js';
export { registerLinkKind, linkKind, linkKinds, type LinkKind, type LinkKindOptions, type LinkOptionsOf, type WithLower } from './netlink/kinds/registry.js';
export type { VxlanOptions, GeneveOptions, GreOptions, IptunOptions } from './netlink/kinds/tunnels.js';
export type { VlanOptions, MacvlanOptions, IpvlanOptions } from './netlink/kinds/lower.js';
export type { BondOptions, BondPortAttrs } from './netlink/kinds/bond.js';
export type { BridgeAttrs, BridgePortAttrs } from './netlink/kinds/bridge.js';
export type { VrfOptions, TunAttrs } from './netlink/kinds/simple.js';
export type { LinkAddOptions } from './netlink/link.js';
export { validateIfname, parseCidr, parseIp } from './netlink/validate.js';
export { kernelClock } from './netlink/libc.js';
export { NetnsHandle, openNetns, currentNetns, withNetns, openSocketIn, openRtnlIn, openConntrackIn, type NetnsSpec } from './ns/netns.js';
export { createNamedNetns, deleteNamedNetns, createAnonymousNetns } from './ns/named.js';
export { spawnInNetns, spawnSyncInNetns } from './ns/spawn.js';
export * from './bridge/index.js';
export * from './firewall/index.js';
export { checkEndpointId, checkNetworkName, ENDPOINT_ID_MAX } from './names.js';
export * as iptables from './iptables/index.js';
