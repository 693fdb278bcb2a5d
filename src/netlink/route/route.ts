/**
 * Route requests (RTM_NEWROUTE / RTM_DELROUTE / RTM_GETROUTE) and the decoded route views.
 * Pure. Decoding is chosen by rtm_family: IPv4/IPv6 routes, MPLS routes and multicast routes
 * each have their own shape, and any other family is kept raw and labelled, never misread.
 */
import { CodecError, ValidationError } from '../../errors.js';
import { AF, NLM_F, RT_SCOPE, RT_TABLE, RTM, RTN, RTNH_F, RTPROT } from '../core/constants.js';
import { decodePayload, request, type RawMessage, type Request } from '../core/message.js';
import { readAttrs, readAttrsSparse, attrsSize, writeAttrs } from '../core/attr.js';
import {
  LWTUNNEL_ENCAP, RT_FAMILY, RTAX, RTN_NAMES, RTPROT_NAMES, ROUTE_PREF, SCOPE_NAMES, mplsEncapAttrs, mplsRouteMessage, mrouteMessage, numberOf, routeDefFor, routeMessage,
  type EncapType, type MetricsAttrs, type RtMsg, type RtNexthop, type RouteAttrs, routeAttrs, rtmsg, type MplsRouteAttrs, type MrouteAttrs, type Via, type NexthopAttrs,
} from './route-schema.js';
import { withIndexes, type LinkRef } from '../core/ref.js';
import { validateU32 } from '../core/validate.js';
import { parseCidr, parseIp } from '../../ip/parse.js';

export { routeMessage, rtmsg, routeAttrs, type RtMsg, type RouteAttrs, type Via, type EncapType } from './route-schema.js';

/** Metrics as `ip route` shows them; `lock` lists the locked ones. */
export type RouteMetrics = { [K in MetricName]?: MetricsAttrs[K] } & { lock?: MetricName[] };
export type MetricName = Exclude<keyof MetricsAttrs, 'lock' | 'unknown' | symbol>;
const METRIC_BIT: Record<string, number> = { mtu: RTAX.MTU, advmss: RTAX.ADVMSS, window: RTAX.WINDOW, rtt: RTAX.RTT, rttvar: RTAX.RTTVAR, ssthresh: RTAX.SSTHRESH, cwnd: RTAX.CWND, initcwnd: RTAX.INITCWND, initrwnd: RTAX.INITRWND, hoplimit: RTAX.HOPLIMIT, reordering: RTAX.REORDERING, features: RTAX.FEATURES, rtoMin: RTAX.RTO_MIN, quickack: RTAX.QUICKACK, ccAlgo: RTAX.CC_ALGO, fastopenNoCookie: RTAX.FASTOPEN_NO_COOKIE };

/** A lightweight-tunnel encapsulation: its type by name, its payload kept raw (an MPLS one also as labels). */
export interface RouteEncap {
  type: EncapType | number;
  data: Buffer;
  labels?: number[];
}

/** One path of a multipath route. */
export interface RouteNexthop {
  gateway?: string;
  /** A gateway of another address family (RTA_VIA). */
  via?: Via;
  oif?: number;
  /** 1..256 (rtnh_hops + 1). */
  weight: number;
  /** RTNH_F_* bits. */
  flags: number;
  onlink: boolean;
  encap?: RouteEncap;
}

/** An IPv4 or IPv6 route as the kernel reports it. */
export interface Route {
  family: 4 | 6;
  /** 'default' or 'a.b.c.0/n' */
  dst: string;
  /** Source prefix of a `from` route (RTA_SRC / rtm_src_len). */
  src?: string;
  gateway?: string;
  via?: Via;
  oif?: number;
  iif?: number;
  table: number;
  protocol: number;
  /** 'boot', 'kernel', 'static', 'dhcp', ... (the number as text when unnamed). */
  protocolName: string;
  scope: number;
  scopeName: string;
  type: number;
  typeName: string;
  tos: number;
  flags: number;
  priority?: number;
  prefsrc?: string;
  pref?: keyof typeof ROUTE_PREF;
  metrics?: RouteMetrics;
  nexthops?: RouteNexthop[];
  /** Nexthop object id (`ip route ... nhid N`). */
  nhid?: number;
  encap?: RouteEncap;
  /** Seconds until an expiring route goes away. */
  expires?: number;
  mark?: number;
  /** Routing realms (RTA_FLOW): the realm of the source and of the destination (`ip route ... realms FROM/TO`, 0 when unset). */
  realms?: { from: number; to: number };
  /** The uid a lookup was made for (RTA_UID, in `ip route get` answers). */
  uid?: number;
  raw: { header: RtMsg; attrs: RouteAttrs };
}

/** An MPLS route (AF_MPLS): incoming label, outgoing labels and next hop. */
export interface MplsRoute {
  family: 'mpls';
  /** The incoming label (first of `dst`). */
  label: number;
  dst: number[];
  newdst?: number[];
  via?: Via;
  oif?: number;
  nexthops?: RouteNexthop[];
  table: number;
  protocol: number;
  raw: { header: RtMsg; attrs: MplsRouteAttrs };
}

/** A multicast forwarding cache entry (RTNL_FAMILY_IPMR / IP6MR), as `ip mroute show` lists it. */
export interface MulticastRoute {
  family: 'ipmr' | 'ip6mr';
  source?: string;
  group?: string;
  iif?: number;
  /** Outgoing interfaces and their TTL thresholds. */
  oifs: { oif: number; ttl: number }[];
  table: number;
  packets?: bigint;
  bytes?: bigint;
  raw: { header: RtMsg; attrs: MrouteAttrs };
}

/** A route of a family this library does not model, kept raw and labelled with its rtm_family. */
export interface OtherRoute {
  family: 'other';
  addressFamily: number;
  raw: { header: RtMsg; attrs: Record<string, unknown> };
}

export type AnyRoute = Route | MplsRoute | MulticastRoute | OtherRoute;

const nameOf = (t: Readonly<Record<number, string>>, n: number): string => t[n] ?? String(n);

function decodeEncap(type: number | undefined, data: Buffer | undefined): RouteEncap | undefined {
  if (type === undefined || data === undefined) return undefined;
  const name = (Object.keys(LWTUNNEL_ENCAP) as EncapType[]).find((k) => LWTUNNEL_ENCAP[k] === type);
  const e: RouteEncap = { type: name ?? type, data };
  if (type === LWTUNNEL_ENCAP.mpls) {
    const l = readAttrs(mplsEncapAttrs, data, 0, data.length).dst;
    if (l) e.labels = l;
  }
  return e;
}

function decodeNexthops(list: RtNexthop[]): RouteNexthop[] {
  return list.map((h) => {
    const n: RouteNexthop = { weight: h.hops + 1, flags: h.flags, onlink: (h.flags & RTNH_F.ONLINK) !== 0 };
    if (h.ifindex > 0) n.oif = h.ifindex;
    if (h.attrs.gateway !== undefined) n.gateway = h.attrs.gateway;
    if (h.attrs.via !== undefined) n.via = h.attrs.via;
    const e = decodeEncap(h.attrs.encapType, h.attrs.encap);
    if (e) n.encap = e;
    return n;
  });
}

function decodeMetrics(m: MetricsAttrs): RouteMetrics {
  const out: RouteMetrics = {};
  for (const k of Object.keys(m)) if (k !== 'lock' && k !== 'unknown') (out as Record<string, unknown>)[k] = (m as Record<string, unknown>)[k];
  const lock = m.lock;
  if (lock) out.lock = (Object.keys(METRIC_BIT) as MetricName[]).filter((k) => (lock & (1 << (METRIC_BIT[k] as number))) !== 0);
  return out;
}

/** Decodes an RTM_NEWROUTE of any family into the view for that family. */
export function decodeAnyRoute(m: RawMessage): AnyRoute {
  const family = m.payload.length > 0 ? (m.payload[0] as number) : 0;
  if (family === RT_FAMILY.INET || family === RT_FAMILY.INET6) return decodeRoute(m);
  if (family === RT_FAMILY.MPLS) {
    const { header, attrs } = decodePayload(mplsRouteMessage, m.payload);
    const r: MplsRoute = { family: 'mpls', label: attrs.dst?.[0] ?? -1, dst: attrs.dst ?? [], table: attrs.dst ? header.table : header.table, protocol: header.protocol, raw: { header, attrs } };
    if (attrs.newdst) r.newdst = attrs.newdst;
    if (attrs.via) r.via = attrs.via;
    if (attrs.oif !== undefined) r.oif = attrs.oif;
    if (attrs.multipath) r.nexthops = decodeNexthops(attrs.multipath);
    return r;
  }
  if (family === RT_FAMILY.IPMR || family === RT_FAMILY.IP6MR) {
    const { header, attrs } = decodePayload(mrouteMessage, m.payload);
    const r: MulticastRoute = { family: family === RT_FAMILY.IPMR ? 'ipmr' : 'ip6mr', oifs: (attrs.multipath ?? []).map((h) => ({ oif: h.ifindex, ttl: h.hops })), table: attrs.table ?? header.table, raw: { header, attrs } };
    if (attrs.src !== undefined) r.source = attrs.src;
    if (attrs.dst !== undefined) r.group = attrs.dst;
    if (attrs.iif !== undefined) r.iif = attrs.iif;
    if (attrs.mfcStats) {
      r.packets = attrs.mfcStats.packets;
      r.bytes = attrs.mfcStats.bytes;
    }
    return r;
  }
  const { header, attrs } = decodePayload(routeDefFor(family), m.payload);
  return { family: 'other', addressFamily: family, raw: { header, attrs: attrs as Record<string, unknown> } };
}

/**
 * A decoded IPv4 or IPv6 route. Its fields are read from the message at once; `raw` (the header
 * and every attribute, unknown ones included) is decoded from the same bytes on first access, as
 * a Link's is: a dump of a routing table keeps one small object per route (about 280 bytes,
 * against 600 with the attribute tree built at once: bench/tools/route-memory.mjs), and a
 * garbage collection that happens while a big list is built has that much less to copy.
 */
class RouteView {
  // The message's bytes as the datagram's memory and a span of it: a Buffer view per route
  // would be a hundred bytes more of each route.
  #bytes: ArrayBufferLike;
  #offset: number;
  #length: number;
  #raw: { header: RtMsg; attrs: RouteAttrs } | undefined;
  family: 4 | 6;
  dst: string;
  table: number;
  protocol: number;
  protocolName: string;
  scope: number;
  scopeName: string;
  type: number;
  typeName: string;
  tos: number;
  flags: number;
  /** The fields every route has, set here so that they sit inside the object; the optional ones are added after. */
  constructor(payload: Buffer, dst: string, table: number) {
    this.#bytes = payload.buffer;
    this.#offset = payload.byteOffset;
    this.#length = payload.length;
    const protocol = payload[5]!;
    const scope = payload[6]!;
    const type = payload[7]!;
    this.family = payload[0] === AF.INET6 ? 6 : 4;
    this.dst = dst;
    this.table = table;
    this.protocol = protocol;
    this.protocolName = nameOf(RTPROT_NAMES, protocol);
    this.scope = scope;
    this.scopeName = nameOf(SCOPE_NAMES, scope);
    this.type = type;
    this.typeName = RTN_NAMES[type] ?? String(type);
    this.tos = payload[3]!;
    this.flags = payload.readUInt32LE(8);
  }
  get raw(): { header: RtMsg; attrs: RouteAttrs } {
    return (this.#raw ??= decodePayload(routeMessage, Buffer.from(this.#bytes, this.#offset, this.#length)));
  }
}

/** Decodes an IPv4 or IPv6 RTM_NEWROUTE (use decodeAnyRoute for a dump of every family). */
export function decodeRoute(m: RawMessage): Route {
  const p = m.payload;
  if (p.length < rtmsg.size) throw new CodecError(`payload of ${p.length} bytes is shorter than its ${rtmsg.size}-byte header`);
  // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type (u8 each), flags u32.
  const family = p[0]!;
  if (family !== AF.INET && family !== AF.INET6) throw new CodecError(`rtm_family ${family} is not IPv4 or IPv6: decode it with decodeAnyRoute`);
  const dstLen = p[1]!;
  const attrs = readAttrsSparse(routeAttrs, p, rtmsg.size, p.length);
  const dst = attrs.dst !== undefined ? `${attrs.dst}/${dstLen}` : dstLen === 0 ? 'default' : '';
  const r = new RouteView(p, dst, attrs.table ?? p[4]!) as unknown as Route;
  if (attrs.src !== undefined) r.src = `${attrs.src}/${p[2]!}`;
  if (attrs.gateway !== undefined) r.gateway = attrs.gateway;
  if (attrs.via !== undefined) r.via = attrs.via;
  if (attrs.oif !== undefined) r.oif = attrs.oif;
  if (attrs.iif !== undefined) r.iif = attrs.iif;
  if (attrs.priority !== undefined) r.priority = attrs.priority;
  if (attrs.prefsrc !== undefined) r.prefsrc = attrs.prefsrc;
  if (attrs.pref !== undefined) r.pref = (Object.keys(ROUTE_PREF) as (keyof typeof ROUTE_PREF)[]).find((k) => ROUTE_PREF[k] === attrs.pref) ?? 'medium';
  if (attrs.metrics) r.metrics = decodeMetrics(attrs.metrics);
  if (attrs.multipath) r.nexthops = decodeNexthops(attrs.multipath);
  if (attrs.nhid !== undefined) r.nhid = attrs.nhid;
  const e = decodeEncap(attrs.encapType, attrs.encap);
  if (e) r.encap = e;
  if (attrs.expires !== undefined) r.expires = attrs.expires;
  else if (attrs.cacheinfo && attrs.cacheinfo.expires !== 0) r.expires = Math.round(attrs.cacheinfo.expires / 100);
  if (attrs.mark !== undefined) r.mark = attrs.mark;
  if (attrs.flow !== undefined) r.realms = { from: attrs.flow >>> 16, to: attrs.flow & 0xffff };
  if (attrs.uid !== undefined) r.uid = attrs.uid;
  return r;
}

/** An encapsulation to add: MPLS labels, or any type with its payload as bytes (a seg6 SRH, ...). */
export type EncapSpec = { type: 'mpls'; labels: number[]; ttl?: number } | { type: EncapType | number; data: Buffer };

/** One path of a multipath route to add. */
export interface NexthopSpec {
  gateway?: string;
  /** Output link ('dev'). */
  oif?: LinkRef;
  /** 1..256 (default 1). */
  weight?: number;
  onlink?: boolean;
  encap?: EncapSpec;
}

/** A route to add, replace or delete. */
export interface RouteSpec {
  /** 'default' (the default) or a CIDR. */
  dst?: string;
  /** Address family when neither dst nor gateway tells (default 4). */
  family?: 4 | 6;
  /** Source prefix (`from CIDR`). */
  src?: string;
  /** Gateway; of the other family than dst it is sent as RTA_VIA (`via inet6 ...`). */
  gateway?: string;
  /** Output link ('dev'). */
  oif?: LinkRef;
  /** Input link (`iif`, for policy-routed lookups). */
  iif?: LinkRef;
  /** Routing table id (default main, 254). */
  table?: number;
  /** RT_SCOPE_* or its name; defaults like iproute2: link when there is no gateway, universe otherwise. */
  scope?: number | 'universe' | 'site' | 'link' | 'host' | 'nowhere';
  /** Use the gateway even if it is not on a connected subnet of the link. */
  onlink?: boolean;
  /** `metric N` */
  priority?: number;
  /** Preferred source address (`src`). */
  prefsrc?: string;
  /** RTPROT_* or its name (default boot, as iproute2). */
  protocol?: number | string;
  /** RTN_* or its name ('unicast', 'blackhole', 'unreachable', 'prohibit', 'local', ...). */
  type?: number | string;
  tos?: number;
  /** IPv6 router preference. */
  pref?: keyof typeof ROUTE_PREF;
  metrics?: RouteMetrics;
  /** Multipath: each path with its gateway, link and weight. */
  nexthops?: NexthopSpec[];
  /** A nexthop object id (`nhid N`) instead of a gateway. */
  nhid?: number;
  encap?: EncapSpec;
  /** IPv6: seconds until the route expires. */
  expires?: number;
  /** Routing realms (`realm TO`, `realms FROM/TO`): RTA_FLOW, for route-based accounting and classification. */
  realms?: { from?: number; to: number };
}

function encodeEncap(e: EncapSpec): { encap: Buffer; encapType: number } {
  const type = typeof e.type === 'number' ? e.type : LWTUNNEL_ENCAP[e.type];
  if (type === undefined) throw new ValidationError('encap', `unknown encapsulation ${String(e.type)}`);
  if ('labels' in e) {
    const v = { dst: e.labels.map((l) => validateU32(l, 'MPLS label', 0, 0xfffff)), ...(e.ttl !== undefined ? { ttl: e.ttl } : {}) };
    const b = Buffer.alloc(attrsSize(mplsEncapAttrs, v));
    writeAttrs(mplsEncapAttrs, v, b, 0);
    return { encap: b, encapType: type };
  }
  return { encap: e.data, encapType: type };
}

function encodeMetrics(m: RouteMetrics): MetricsAttrs {
  const { lock, ...rest } = m;
  const out: MetricsAttrs = { ...rest };
  if (lock?.length) out.lock = lock.reduce((mask, k) => mask | (1 << (METRIC_BIT[k] ?? 0)), 0) >>> 0;
  return out;
}

function routeRequest(type: number, flags: number, s: RouteSpec): Request {
  const refs: Record<string, LinkRef | undefined> = { oif: s.oif, iif: s.iif };
  (s.nexthops ?? []).forEach((h, i) => (refs[`nh${i}`] = h.oif));
  return withIndexes(refs, (idx) => buildRoute(type, flags, s, idx));
}

function buildRoute(type: number, flags: number, s: RouteSpec, idx: Partial<Record<string, number>>): Request {
  const dst = s.dst === undefined || s.dst === 'default' ? undefined : parseCidr(s.dst, 'dst');
  const gw = s.gateway !== undefined ? parseIp(s.gateway, 'gateway') : undefined;
  const src = s.src !== undefined ? parseCidr(s.src, 'src') : undefined;
  const family = dst?.family ?? src?.family ?? s.family ?? gw?.family ?? 4;
  const isDel = type === RTM.DELROUTE;
  const rtype = s.type === undefined ? (isDel ? RTN.UNSPEC : RTN.UNICAST) : numberOf(RTN_NAMES, s.type, 'type');
  const hasPath = gw !== undefined || s.nexthops?.length || s.nhid !== undefined;
  if (type === RTM.NEWROUTE && rtype === RTN.UNICAST && !hasPath && s.oif === undefined) {
    throw new ValidationError('route', 'needs a gateway, an output device, nexthops or a nexthop id');
  }
  const table = s.table ?? RT_TABLE.MAIN;
  validateU32(table, 'table');
  const attrs: RouteAttrs = {};
  if (table > 255) attrs.table = table;
  if (dst) attrs.dst = dst.address;
  if (src) attrs.src = src.address;
  if (s.nhid !== undefined) attrs.nhid = validateU32(s.nhid, 'nhid', 1);
  if (s.prefsrc !== undefined) attrs.prefsrc = parseIp(s.prefsrc, 'prefsrc').address;
  if (gw) {
    if (gw.family === family) attrs.gateway = gw.address;
    else attrs.via = { family: gw.family === 4 ? AF.INET : AF.INET6, address: gw.address };
  }
  if (s.priority !== undefined) attrs.priority = validateU32(s.priority, 'priority');
  if (s.pref !== undefined) attrs.pref = ROUTE_PREF[s.pref];
  if (s.expires !== undefined) attrs.expires = validateU32(s.expires, 'expires');
  if (idx.iif !== undefined) attrs.iif = idx.iif;
  if (idx.oif !== undefined) attrs.oif = idx.oif;
  if (s.realms) attrs.flow = ((validateU32(s.realms.from ?? 0, 'realms.from', 0, 0xffff) << 16) | validateU32(s.realms.to, 'realms.to', 0, 0xffff)) >>> 0;
  if (s.metrics) attrs.metrics = encodeMetrics(s.metrics);
  if (s.encap) Object.assign(attrs, encodeEncap(s.encap));
  if (s.nexthops?.length) {
    attrs.multipath = s.nexthops.map((h, i) => {
      const ngw = h.gateway !== undefined ? parseIp(h.gateway, `nexthop ${i} gateway`) : undefined;
      const a: NexthopAttrs = {};
      if (ngw && ngw.family === family) a.gateway = ngw.address;
      else if (ngw) a.via = { family: ngw.family === 4 ? AF.INET : AF.INET6, address: ngw.address };
      if (h.encap) Object.assign(a, encodeEncap(h.encap));
      const weight = h.weight ?? 1;
      validateU32(weight, `nexthop ${i} weight`, 1, 256);
      return { flags: h.onlink ? RTNH_F.ONLINK : 0, hops: weight - 1, ifindex: idx[`nh${i}`] ?? 0, attrs: a };
    });
  }
  let scope = s.scope === undefined ? undefined : numberOf(SCOPE_NAMES, s.scope, 'scope');
  if (scope === undefined) {
    // As iproute2: IPv6 routes are universe scope whatever their kind.
    if (family === 6) scope = RT_SCOPE.UNIVERSE;
    else if (rtype === RTN.LOCAL || rtype === 10) scope = RT_SCOPE.HOST;
    else if (rtype === RTN.BROADCAST || rtype === RTN.MULTICAST || rtype === RTN.ANYCAST) scope = RT_SCOPE.LINK;
    else if (isDel) scope = RT_SCOPE.NOWHERE;
    else scope = rtype === RTN.UNICAST && !hasPath ? RT_SCOPE.LINK : RT_SCOPE.UNIVERSE;
  }
  return request(
    routeMessage,
    type,
    flags,
    {
      family: family === 4 ? AF.INET : AF.INET6,
      dstLen: dst?.prefix ?? 0,
      srcLen: src?.prefix ?? 0,
      tos: s.tos ?? 0,
      table: table > 255 ? RT_TABLE.UNSPEC : table,
      protocol: s.protocol === undefined ? (isDel ? RTPROT.UNSPEC : RTPROT.BOOT) : numberOf(RTPROT_NAMES, s.protocol, 'protocol'),
      scope,
      type: rtype,
      flags: s.onlink ? RTNH_F.ONLINK : 0,
    },
    attrs,
  );
}

/** ip route add DST [from SRC] [via GW] [dev LINK] [table T] [metric P] [mtu N ...] [nexthop ...] [nhid N] [encap ...] */
export function addRouteRequest(s: RouteSpec): Request {
  return routeRequest(RTM.NEWROUTE, NLM_F.CREATE | NLM_F.EXCL, s);
}

/** ip route replace DST ... */
export function replaceRouteRequest(s: RouteSpec): Request {
  return routeRequest(RTM.NEWROUTE, NLM_F.CREATE | NLM_F.REPLACE, s);
}

/** ip route append DST ... (another route to the same prefix, as an IPv6 multipath member) */
export function appendRouteRequest(s: RouteSpec): Request {
  return routeRequest(RTM.NEWROUTE, NLM_F.CREATE | NLM_F.APPEND, s);
}

/** ip route del DST [via GW] [dev LINK] [table T] */
export function deleteRouteRequest(s: RouteSpec): Request {
  return routeRequest(RTM.DELROUTE, 0, s);
}

/** ip route show table all (family 0 = every family: IPv4, IPv6, MPLS, multicast); filter by table in the caller. */
export function dumpRouteRequest(family?: 4 | 6 | 'mpls' | 'ipmr' | 'ip6mr'): Request {
  const f = family === 4 ? AF.INET : family === 6 ? AF.INET6 : family === 'mpls' ? RT_FAMILY.MPLS : family === 'ipmr' ? RT_FAMILY.IPMR : family === 'ip6mr' ? RT_FAMILY.IP6MR : AF.UNSPEC;
  return request(routeMessage, RTM.GETROUTE, 0, { family: f });
}

export { addMplsRouteRequest, deleteMplsRouteRequest, type MplsRouteSpec } from './route-mpls.js';
export { getRouteRequest, RTM_F, type RouteGetSpec } from './route-get.js';
