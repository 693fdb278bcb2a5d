/**
 * Route lookups (`ip route get`): an RTM_GETROUTE without NLM_F_DUMP, answered by one
 * RTM_NEWROUTE saying which route the kernel would use for a packet (a cloned route, RTM_F_CLONED)
 * or, with fibmatch, the FIB entry that matched. Pure.
 */
import { ValidationError } from '../../errors.js';
import { AF, RTM } from '../core/constants.js';
import { request, type Request } from '../core/message.js';
import { routeMessage, type RouteAttrs } from './route-schema.js';
import { withIndexes, type LinkRef } from '../core/ref.js';
import { validateU32 } from '../core/validate.js';
import { parseIp } from '../../ip/parse.js';

/** RTM_F_* flags of rtm_flags. */
export const RTM_F = { NOTIFY: 0x100, CLONED: 0x200, EQUALIZE: 0x400, PREFIX: 0x800, LOOKUP_TABLE: 0x1000, FIB_MATCH: 0x2000, OFFLOAD: 0x4000, TRAP: 0x8000 } as const;

const IPPROTO: Readonly<Record<string, number>> = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58, sctp: 132 };

/** A packet to look a route up for. */
export interface RouteGetSpec {
  /** Destination address. */
  dst: string;
  /** Source address (`from`). */
  src?: string;
  /** The packet arrives on this link (`iif`): a forwarding lookup. */
  iif?: LinkRef;
  /** The packet leaves by this link (`oif`). */
  oif?: LinkRef;
  /** Firewall mark (`mark`), for policy rules that match it. */
  mark?: number;
  /** The FIB entry that matched instead of the resulting route (`fibmatch`). */
  fibmatch?: boolean;
  /** Socket uid (`uid`), for uidrange rules. */
  uid?: number;
  /** Layer-4 protocol and ports (`ipproto`, `sport`, `dport`), for rules and multipath hashing that use them. */
  ipProto?: 'tcp' | 'udp' | 'icmp' | 'icmpv6' | 'sctp' | number;
  sport?: number;
  dport?: number;
  tos?: number;
}

/**
 * ip route get ADDR [from SRC] [iif DEV] [oif DEV] [mark M] [uid U] [ipproto P] [sport N] [dport N] [fibmatch]
 * As iproute2 sends it: host prefix lengths, RTM_F_LOOKUP_TABLE for IPv4 (the reply names the
 * table), no NLM_F_ACK (the answer is the route or an error).
 */
export function getRouteRequest(spec: RouteGetSpec): Request {
  return withIndexes({ iif: spec.iif, oif: spec.oif }, (idx) => {
    const dst = parseIp(spec.dst, 'dst');
    const src = spec.src !== undefined ? parseIp(spec.src, 'src') : undefined;
    if (src && src.family !== dst.family) throw new ValidationError('src', 'is not of the family of dst');
    const bits = dst.family === 4 ? 32 : 128;
    const attrs: RouteAttrs = { dst: dst.address };
    if (src) attrs.src = src.address;
    if (idx.iif !== undefined) attrs.iif = idx.iif;
    if (idx.oif !== undefined) attrs.oif = idx.oif;
    if (spec.mark !== undefined) attrs.mark = validateU32(spec.mark, 'mark');
    if (spec.uid !== undefined) attrs.uid = validateU32(spec.uid, 'uid');
    if (spec.ipProto !== undefined) {
      const p = typeof spec.ipProto === 'number' ? spec.ipProto : IPPROTO[spec.ipProto];
      if (p === undefined) throw new ValidationError('ipProto', `${JSON.stringify(spec.ipProto)} is not one of ${Object.keys(IPPROTO).join(', ')}`);
      attrs.ipProto = validateU32(p, 'ipProto', 0, 255);
    }
    if (spec.sport !== undefined) attrs.sport = validateU32(spec.sport, 'sport', 0, 65535);
    if (spec.dport !== undefined) attrs.dport = validateU32(spec.dport, 'dport', 0, 65535);
    const flags = (dst.family === 4 ? RTM_F.LOOKUP_TABLE : 0) | (spec.fibmatch ? RTM_F.FIB_MATCH : 0);
    return request(routeMessage, RTM.GETROUTE, 0, { family: dst.family === 4 ? AF.INET : AF.INET6, dstLen: bits, srcLen: src ? bits : 0, tos: spec.tos === undefined ? 0 : validateU32(spec.tos, 'tos', 0, 255), flags }, attrs);
  });
}
