/** Route requests (RTM_NEWROUTE / RTM_DELROUTE / RTM_GETROUTE) and the decoded Route view. Pure. */
import { ValidationError } from '../errors.js';
import { AF, NLM_F, RT_SCOPE, RT_TABLE, RTM, RTN, RTNH_F, RTPROT } from './constants.js';
import { decodePayload, request, type RawMessage, type Request } from './message.js';
import { routeMessage, type RouteAttrs, type RtMsg } from './schemas.js';
import { parseCidr, parseIp, validateU32 } from './validate.js';

/** A route as the kernel reports it. */
export interface Route {
  family: 4 | 6;
  /** 'default' or 'a.b.c.0/n' */
  dst: string;
  gateway?: string;
  oif?: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
  priority?: number;
  prefsrc?: string;
  raw: { header: RtMsg; attrs: RouteAttrs };
}

/** Decodes an RTM_NEWROUTE message. */
export function decodeRoute(m: RawMessage): Route {
  const { header, attrs } = decodePayload(routeMessage, m.payload);
  const r: Route = {
    family: header.family === AF.INET6 ? 6 : 4,
    dst: attrs.dst !== undefined ? `${attrs.dst}/${header.dstLen}` : header.dstLen === 0 ? 'default' : '',
    table: attrs.table ?? header.table,
    protocol: header.protocol,
    scope: header.scope,
    type: header.type,
    flags: header.flags,
    raw: { header, attrs },
  };
  if (attrs.gateway !== undefined) r.gateway = attrs.gateway;
  if (attrs.oif !== undefined) r.oif = attrs.oif;
  if (attrs.priority !== undefined) r.priority = attrs.priority;
  if (attrs.prefsrc !== undefined) r.prefsrc = attrs.prefsrc;
  return r;
}

/** A route to add, replace or delete. */
export interface RouteSpec {
  /** 'default' (the default) or a CIDR. */
  dst?: string;
  gateway?: string;
  /** Output ifindex ('dev'). */
  oif?: number;
  /** Routing table id (default main, 254). */
  table?: number;
  /** RT_SCOPE_*; defaults like iproute2: link when there is no gateway, universe otherwise. */
  scope?: number;
  /** Use the gateway even if it is not on a connected subnet of the link. */
  onlink?: boolean;
  priority?: number;
  /** Preferred source address ('src'). */
  prefsrc?: string;
  /** RTPROT_* (default boot, as iproute2). */
  protocol?: number;
  /** RTN_* (default unicast). */
  type?: number;
}

function routeRequest(type: number, flags: number, s: RouteSpec): Request {
  const dst = s.dst === undefined || s.dst === 'default' ? undefined : parseCidr(s.dst, 'dst');
  const gw = s.gateway !== undefined ? parseIp(s.gateway, 'gateway') : undefined;
  const family = dst?.family ?? gw?.family ?? 4;
  if (gw && gw.family !== family) throw new ValidationError('gateway', `IPv${gw.family} gateway for an IPv${family} destination`);
  if (s.oif !== undefined) validateU32(s.oif, 'oif', 1, 0x7fffffff);
  if (type === RTM.NEWROUTE && gw === undefined && s.oif === undefined) {
    throw new ValidationError('route', 'needs a gateway or an output device');
  }
  const table = s.table ?? RT_TABLE.MAIN;
  validateU32(table, 'table');
  const attrs: RouteAttrs = {};
  if (table > 255) attrs.table = table;
  if (dst) attrs.dst = dst.address;
  if (s.prefsrc !== undefined) attrs.prefsrc = parseIp(s.prefsrc, 'prefsrc').address;
  if (gw) attrs.gateway = gw.address;
  if (s.priority !== undefined) attrs.priority = validateU32(s.priority, 'priority');
  if (s.oif !== undefined) attrs.oif = s.oif;
  const isDel = type === RTM.DELROUTE;
  return request(
    routeMessage,
    type,
    flags,
    {
      family: family === 4 ? AF.INET : AF.INET6,
      dstLen: dst?.prefix ?? 0,
      table: table > 255 ? RT_TABLE.UNSPEC : table,
      protocol: s.protocol ?? (isDel ? RTPROT.UNSPEC : RTPROT.BOOT),
      scope: s.scope ?? (isDel ? RT_SCOPE.NOWHERE : gw ? RT_SCOPE.UNIVERSE : RT_SCOPE.LINK),
      type: s.type ?? (isDel ? RTN.UNSPEC : RTN.UNICAST),
      flags: s.onlink ? RTNH_F.ONLINK : 0,
    },
    attrs,
  );
}

/** ip route add DST [via GW] [dev OIF] [table T] [scope S] [onlink] */
export function addRouteRequest(s: RouteSpec): Request {
  return routeRequest(RTM.NEWROUTE, NLM_F.CREATE | NLM_F.EXCL, s);
}

/** ip route replace DST ... */
export function replaceRouteRequest(s: RouteSpec): Request {
  return routeRequest(RTM.NEWROUTE, NLM_F.CREATE | NLM_F.REPLACE, s);
}

/** ip route del DST [via GW] [dev OIF] [table T] */
export function deleteRouteRequest(s: RouteSpec): Request {
  return routeRequest(RTM.DELROUTE, 0, s);
}

/** ip route show table all (family 0 = both); filter by table in the caller. */
export function dumpRouteRequest(family?: 4 | 6): Request {
  return request(routeMessage, RTM.GETROUTE, 0, { family: family === 4 ? AF.INET : family === 6 ? AF.INET6 : AF.UNSPEC });
}
