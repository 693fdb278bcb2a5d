/**
 * Route messages on the wire: rtmsg, the RTA_* attributes per address family (IPv4/IPv6
 * unicast, MPLS, IPv4/IPv6 multicast routing), and the payloads inside them: rtnexthop lists
 * (RTA_MULTIPATH), metrics (RTA_METRICS), RTA_VIA, MPLS label stacks, lightweight-tunnel encap.
 */
import { CodecError, ValidationError } from '../../errors.js';
import { align4, attr, be16, bytes, ipAddr, nested, readAttrs, readIp, attrsSize, writeAttrs, writeIp, s32, strz, u8, u16, u32, uint, u64, type Attrs, type Codec, type Schema } from '../core/attr.js';
import { struct, structCodec, type MessageDef } from '../core/message.js';


export const rtmsg = struct([
  ['family', 'u8'],
  ['dstLen', 'u8'],
  ['srcLen', 'u8'],
  ['tos', 'u8'],
  ['table', 'u8'],
  ['protocol', 'u8'],
  ['scope', 'u8'],
  ['type', 'u8'],
  ['flags', 'u32'],
] as const);
export type RtMsg = ReturnType<typeof rtmsg.read>;

/** Address families a route message can carry (rtm_family). */
export const RT_FAMILY = { UNSPEC: 0, INET: 2, BRIDGE: 7, INET6: 10, MPLS: 28, IPMR: 128, IP6MR: 129 } as const;

/** RTAX_*: the metrics nested in RTA_METRICS. */
export const RTAX = {
  LOCK: 1, MTU: 2, WINDOW: 3, RTT: 4, RTTVAR: 5, SSTHRESH: 6, CWND: 7, ADVMSS: 8, REORDERING: 9, HOPLIMIT: 10,
  INITCWND: 11, FEATURES: 12, RTO_MIN: 13, INITRWND: 14, QUICKACK: 15, CC_ALGO: 16, FASTOPEN_NO_COOKIE: 17,
} as const;

/** LWTUNNEL_ENCAP_*: the lightweight tunnel types of RTA_ENCAP_TYPE. */
export const LWTUNNEL_ENCAP = { none: 0, mpls: 1, ip: 2, ila: 3, ip6: 4, seg6: 5, bpf: 6, seg6local: 7, rpl: 8, ioam6: 9, xfrm: 10 } as const;
export type EncapType = keyof typeof LWTUNNEL_ENCAP;

/** A value in 1/`scale` units on the wire (RTAX_RTT is in 1/8 ms, RTAX_RTTVAR in 1/4 ms) read in whole units. */
function scaled(scale: number): Codec<number> {
  return { size: () => 4, write: (b, o, v) => void b.writeUInt32LE(Math.round(v * scale) >>> 0, o), read: (b, o, l) => u32.read(b, o, l) / scale };
}

/** RTA_METRICS: values as `ip route` shows them (rtt and rttvar in ms); `lock` is the RTAX_LOCK bitmask. */
export const metricsAttrs = {
  mtu: attr(RTAX.MTU, u32),
  advmss: attr(RTAX.ADVMSS, u32),
  window: attr(RTAX.WINDOW, u32),
  rtt: attr(RTAX.RTT, scaled(8)),
  rttvar: attr(RTAX.RTTVAR, scaled(4)),
  ssthresh: attr(RTAX.SSTHRESH, u32),
  cwnd: attr(RTAX.CWND, u32),
  initcwnd: attr(RTAX.INITCWND, u32),
  initrwnd: attr(RTAX.INITRWND, u32),
  hoplimit: attr(RTAX.HOPLIMIT, u32),
  reordering: attr(RTAX.REORDERING, u32),
  features: attr(RTAX.FEATURES, u32),
  rtoMin: attr(RTAX.RTO_MIN, u32),
  quickack: attr(RTAX.QUICKACK, u32),
  ccAlgo: attr(RTAX.CC_ALGO, strz),
  fastopenNoCookie: attr(RTAX.FASTOPEN_NO_COOKIE, u32),
  // iproute2 adds the lock mask after every metric it parsed.
  lock: attr(RTAX.LOCK, u32),
} as const satisfies Schema;
export type MetricsAttrs = Attrs<typeof metricsAttrs>;

/** An MPLS label stack: u32 entries in network order, label << 12 | tc << 9 | bottom-of-stack << 8 | ttl. */
export const labels: Codec<number[]> = {
  size: (v) => 4 * v.length,
  write: (b, o, v) => v.forEach((l, i) => b.writeUInt32BE(((l << 12) | (i === v.length - 1 ? 0x100 : 0)) >>> 0, o + 4 * i)),
  read: (b, o, l) => {
    if (l % 4 !== 0) throw new CodecError(`MPLS label stack of ${l} bytes`, o);
    const out: number[] = [];
    for (let i = 0; i < l; i += 4) out.push(b.readUInt32BE(o + i) >>> 12);
    return out;
  },
};

/** RTA_VIA: struct rtvia { u16 family; u8 addr[] }, a gateway of another family (an IPv6 next hop of an IPv4 route). */
export interface Via {
  family: number;
  address: string;
}
export const via: Codec<Via> = {
  size: (v) => 2 + (v.address.includes(':') ? 16 : 4),
  write: (b, o, v) => {
    b.writeUInt16LE(v.family, o);
    writeIp(b, o + 2, v.address);
  },
  read: (b, o, l) => {
    if (l < 2) throw new CodecError('RTA_VIA shorter than its family', o);
    return { family: b.readUInt16LE(o), address: readIp(b, o + 2, l - 2) };
  },
};

/** MPLS_IPTUNNEL_*: the payload of an MPLS encap. */
export const mplsEncapAttrs = { dst: attr(1, labels), ttl: attr(2, u8) } as const satisfies Schema;

/** Attributes inside one rtnexthop of RTA_MULTIPATH. */
export const nexthopAttrs = {
  gateway: attr(5, ipAddr),
  via: attr(18, via),
  newdst: attr(19, labels),
  // iproute2 nests the encap first and adds its type after it.
  encap: attr(22, bytes, { nestedFlag: true }),
  encapType: attr(21, u16),
  flow: attr(11, u32),
} as const satisfies Schema;
export type NexthopAttrs = Attrs<typeof nexthopAttrs>;

/** One entry of RTA_MULTIPATH: struct rtnexthop { u16 len; u8 flags; u8 hops; s32 ifindex } and its attributes. */
export interface RtNexthop {
  flags: number;
  /** Weight - 1 for unicast routes; the TTL threshold for multicast routes. */
  hops: number;
  ifindex: number;
  attrs: NexthopAttrs;
}

/** RTA_MULTIPATH: a packed list of rtnexthop, each padded to 4 bytes. */
export const multipath: Codec<RtNexthop[]> = {
  size: (v) => v.reduce((n, h) => n + align4(8 + attrsSize(nexthopAttrs, h.attrs)), 0),
  write: (b, o, v) => {
    for (const h of v) {
      const len = 8 + attrsSize(nexthopAttrs, h.attrs);
      b.writeUInt16LE(len, o);
      b.writeUInt8(h.flags, o + 2);
      b.writeUInt8(h.hops, o + 3);
      b.writeInt32LE(h.ifindex, o + 4);
      writeAttrs(nexthopAttrs, h.attrs, b, o + 8);
      o += align4(len);
    }
  },
  read: (b, o, l) => {
    const out: RtNexthop[] = [];
    const end = o + l;
    while (o + 8 <= end) {
      const len = b.readUInt16LE(o);
      if (len < 8 || o + len > end) throw new CodecError(`rtnexthop of length ${len}, ${end - o} bytes left`, o);
      out.push({ flags: b.readUInt8(o + 2), hops: b.readUInt8(o + 3), ifindex: b.readInt32LE(o + 4), attrs: readAttrs(nexthopAttrs, b, o + 8, o + len) });
      o += align4(len);
    }
    return out;
  },
};

/** struct rta_cacheinfo: expires and lastuse in clock ticks (USER_HZ, 100 a second). */
export const rtaCacheinfo = structCodec(
  struct([['clntref', 'u32'], ['lastuse', 'u32'], ['expires', 's32'], ['error', 'u32'], ['used', 'u32'], ['id', 'u32'], ['ts', 'u32'], ['tsage', 'u32']] as const),
);

/** struct rta_mfc_stats: packets, bytes and wrong-interface packets of a multicast route. */
export const mfcStats: Codec<{ packets: bigint; bytes: bigint; wrongIf: bigint }> = {
  size: () => 24,
  write: (b, o, v) => {
    b.writeBigUInt64LE(v.packets, o);
    b.writeBigUInt64LE(v.bytes, o + 8);
    b.writeBigUInt64LE(v.wrongIf, o + 16);
  },
  read: (b, o, l) => {
    if (l !== 24) throw new CodecError(`rta_mfc_stats: expected 24 bytes, got ${l}`, o);
    return { packets: u64.read(b, o, 8), bytes: u64.read(b, o + 8, 8), wrongIf: u64.read(b, o + 16, 8) };
  },
};

/** RTA_* of IPv4 and IPv6 routes, in the order iproute2 emits them. */
export const routeAttrs = {
  // iproute2 adds attributes in the order of its command line (encap included), then dev,
  // metrics and nexthops after the loop; fixtures are captured with arguments in this order.
  table: attr(15, u32),
  dst: attr(1, ipAddr),
  src: attr(2, ipAddr),
  // Lookup selectors of `ip route get`, added as parsed; its iif, oif and mark come after the loop.
  uid: attr(25, u32),
  ipProto: attr(27, u8),
  // The kernel reads RTA_SPORT and RTA_DPORT as be16 (iproute2 sends them htons'd).
  sport: attr(28, be16),
  dport: attr(29, be16),
  nhid: attr(30, u32),
  prefsrc: attr(7, ipAddr),
  gateway: attr(5, ipAddr),
  via: attr(18, via),
  priority: attr(6, u32),
  pref: attr(20, u8),
  expires: attr(23, uint),
  iif: attr(3, u32),
  encap: attr(22, bytes, { nestedFlag: true }),
  encapType: attr(21, u16),
  flow: attr(11, u32),
  oif: attr(4, u32),
  metrics: attr(8, nested(metricsAttrs)),
  multipath: attr(9, multipath),
  cacheinfo: attr(12, rtaCacheinfo),
  mark: attr(16, u32),
  ttlPropagate: attr(26, u8),
} as const satisfies Schema;
export type RouteAttrs = Attrs<typeof routeAttrs>;

/** RTA_* of MPLS routes (AF_MPLS): destination and new destination are label stacks. */
export const mplsRouteAttrs = {
  dst: attr(1, labels),
  newdst: attr(19, labels),
  via: attr(18, via),
  oif: attr(4, u32),
  multipath: attr(9, multipath),
  ttlPropagate: attr(26, u8),
} as const satisfies Schema;
export type MplsRouteAttrs = Attrs<typeof mplsRouteAttrs>;

/** RTA_* of multicast routes (RTNL_FAMILY_IPMR / IP6MR): RTA_SRC is the origin, RTA_DST the group, RTA_MULTIPATH the outgoing interfaces. */
export const mrouteAttrs = {
  table: attr(15, u32),
  src: attr(2, ipAddr),
  dst: attr(1, ipAddr),
  iif: attr(3, u32),
  multipath: attr(9, multipath),
  mfcStats: attr(17, mfcStats),
  expires: attr(23, uint),
  oif: attr(4, s32),
} as const satisfies Schema;
export type MrouteAttrs = Attrs<typeof mrouteAttrs>;

export const routeMessage: MessageDef<keyof RtMsg, typeof routeAttrs> = { header: rtmsg, attrs: routeAttrs };
export const mplsRouteMessage: MessageDef<keyof RtMsg, typeof mplsRouteAttrs> = { header: rtmsg, attrs: mplsRouteAttrs };
export const mrouteMessage: MessageDef<keyof RtMsg, typeof mrouteAttrs> = { header: rtmsg, attrs: mrouteAttrs };

/** The route schema for an rtm_family; families we do not model get an empty schema (every attribute kept raw). */
export function routeDefFor(family: number): MessageDef<keyof RtMsg, Schema> {
  if (family === RT_FAMILY.INET || family === RT_FAMILY.INET6 || family === RT_FAMILY.UNSPEC) return routeMessage;
  if (family === RT_FAMILY.MPLS) return mplsRouteMessage;
  if (family === RT_FAMILY.IPMR || family === RT_FAMILY.IP6MR) return mrouteMessage;
  return rawRouteMessage;
}
const rawRouteMessage: MessageDef<keyof RtMsg, Schema> = { header: rtmsg, attrs: {} };

/** The names of route types, protocols, scopes and preferences as iproute2 prints them. */
export const RTN_NAMES = ['unspec', 'unicast', 'local', 'broadcast', 'anycast', 'multicast', 'blackhole', 'unreachable', 'prohibit', 'throw', 'nat', 'xresolve'] as const;
export type RouteType = (typeof RTN_NAMES)[number];
export const RTPROT_NAMES: Readonly<Record<number, string>> = {
  0: 'unspec', 1: 'redirect', 2: 'kernel', 3: 'boot', 4: 'static', 8: 'gated', 9: 'ra', 10: 'mrt', 11: 'zebra', 12: 'bird', 13: 'dnrouted',
  14: 'xorp', 15: 'ntk', 16: 'dhcp', 17: 'mrouted', 18: 'keepalived', 42: 'babel', 99: 'openr', 186: 'bgp', 187: 'isis', 188: 'ospf', 189: 'rip', 192: 'eigrp',
};
export const SCOPE_NAMES: Readonly<Record<number, string>> = { 0: 'universe', 200: 'site', 253: 'link', 254: 'host', 255: 'nowhere' };
/** RTA_PREF (ICMPV6_ROUTER_PREF_*) of IPv6 routes. */
export const ROUTE_PREF = { medium: 0, high: 1, low: 3 } as const;

/** Looks a name up in a number-to-name table; numbers and unknown names pass through. */
export function numberOf(table: Readonly<Record<number, string>> | readonly string[], v: string | number, field: string): number {
  if (typeof v === 'number') return v;
  const e = Object.entries(table).find(([, n]) => n === v);
  if (!e) throw new ValidationError(field, `unknown name ${JSON.stringify(v)}`);
  return Number(e[0]);
}
