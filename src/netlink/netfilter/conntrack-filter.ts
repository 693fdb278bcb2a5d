/**
 * Conntrack filters: what `conntrack -L`/`-D` select by (tuple fields, zone, mark with a mask,
 * status bits, family), checked once, turned into the kernel-side dump filter where the kernel
 * has one (nfgenmsg family, CTA_MARK/CTA_MARK_MASK, CTA_STATUS/CTA_STATUS_MASK, and CTA_FILTER
 * with the tuples since Linux 5.8), and matched again on every decoded entry. The second match
 * makes the result right on kernels that ignore a filter attribute (older ones skip what they do
 * not know) and covers what no kernel filters on (the zone; ports of protocols other than TCP and
 * UDP). Pure.
 */
import { ValidationError } from '../../errors.js';
import { CT_PROTOCOLS, CT_STATUS, tupleAttrsOf, type ConntrackEntry, type ConntrackProtocol, type ConntrackStatus, type ConntrackTuple, type CtAttrs } from './conntrack.js';
import { validateU32 } from '../core/validate.js';
import { parseIp } from '../../ip/parse.js';

/** Fields of one direction to match: addresses, ports, ICMP type, code and id. */
export interface ConntrackTupleFilter {
  src?: string;
  dst?: string;
  srcPort?: number;
  dstPort?: number;
  icmpType?: number;
  icmpCode?: number;
  icmpId?: number;
}

/**
 * Which entries to list or delete; every field given must match. `conntrack -L -f ipv4 -p tcp
 * -s A -d B --sport P --dport Q -r C -q D --reply-port-src R --reply-port-dst S -w ZONE -m MARK/MASK -u ASSURED,...`
 */
export interface ConntrackFilter {
  family?: 4 | 6;
  protocol?: ConntrackProtocol | number;
  /** The original direction (`-s`, `-d`, `--sport`, `--dport`). */
  orig?: ConntrackTupleFilter;
  /** The reply direction (`-r`, `-q`, `--reply-port-src`, `--reply-port-dst`). */
  reply?: ConntrackTupleFilter;
  zone?: number;
  /** Entries whose mark, masked with `markMask` (default all bits), equals `mark`. */
  mark?: number;
  markMask?: number;
  /** Entries with these status bits set (`-u ASSURED,SEEN_REPLY`); with `statusMask`, those whose status masked equals it. */
  status?: number | readonly ConntrackStatus[];
  statusMask?: number;
}

/** A filter checked and put in canonical form (addresses canonical, names as numbers). */
export interface CheckedFilter {
  family?: 4 | 6;
  protocol?: number;
  orig?: ConntrackTupleFilter;
  reply?: ConntrackTupleFilter;
  zone?: number;
  mark?: { value: number; mask: number };
  status?: { value: number; mask: number };
}

const PORT_PROTOCOLS: ReadonlySet<number> = new Set([CT_PROTOCOLS.tcp, CT_PROTOCOLS.udp, CT_PROTOCOLS.dccp, CT_PROTOCOLS.sctp, CT_PROTOCOLS.udplite]);
const ICMP_PROTOCOLS: ReadonlySet<number> = new Set([CT_PROTOCOLS.icmp, CT_PROTOCOLS.icmpv6]);

/** A protocol by name or number as an IPPROTO_* number. */
export function protocolNumber(p: ConntrackProtocol | number, field = 'protocol'): number {
  if (typeof p === 'number') return validateU32(p, field, 0, 255);
  const n = CT_PROTOCOLS[p];
  if (n === undefined) throw new ValidationError(field, `${JSON.stringify(p)} is not one of ${Object.keys(CT_PROTOCOLS).join(', ')}`);
  return n;
}

/** IPS_* bits from a number or names. */
export function statusBits(s: number | readonly ConntrackStatus[], field = 'status'): number {
  if (typeof s === 'number') return validateU32(s, field);
  let v = 0;
  for (const name of s) {
    const bit = CT_STATUS[name];
    if (bit === undefined) throw new ValidationError(field, `${JSON.stringify(name)} is not one of ${Object.keys(CT_STATUS).join(', ')}`);
    v |= bit;
  }
  return v;
}

function checkTuple(t: ConntrackTupleFilter, where: string, protocol: number | undefined, families: Set<4 | 6>): ConntrackTupleFilter {
  const out: ConntrackTupleFilter = {};
  for (const k of ['src', 'dst'] as const) {
    const v = t[k];
    if (v === undefined) continue;
    const ip = parseIp(v, `${where}.${k}`);
    families.add(ip.family);
    out[k] = ip.address;
  }
  for (const k of ['srcPort', 'dstPort'] as const) {
    if (t[k] === undefined) continue;
    if (protocol === undefined || !PORT_PROTOCOLS.has(protocol)) throw new ValidationError(`${where}.${k}`, 'a port filter needs protocol tcp, udp, sctp, dccp or udplite (conntrack -p)');
    out[k] = validateU32(t[k], `${where}.${k}`, 0, 65535);
  }
  for (const [k, max] of [['icmpType', 255], ['icmpCode', 255], ['icmpId', 65535]] as const) {
    if (t[k] === undefined) continue;
    if (protocol === undefined || !ICMP_PROTOCOLS.has(protocol)) throw new ValidationError(`${where}.${k}`, 'an ICMP filter needs protocol icmp or icmpv6');
    out[k] = validateU32(t[k], `${where}.${k}`, 0, max);
  }
  return out;
}

/** Checks a filter before anything is sent; a ValidationError names the field. */
export function checkFilter(f: ConntrackFilter = {}): CheckedFilter {
  const out: CheckedFilter = {};
  const families = new Set<4 | 6>();
  if (f.family !== undefined) {
    if (f.family !== 4 && f.family !== 6) throw new ValidationError('family', 'must be 4 or 6');
    families.add(f.family);
  }
  if (f.protocol !== undefined) out.protocol = protocolNumber(f.protocol);
  if (f.orig) out.orig = checkTuple(f.orig, 'orig', out.protocol, families);
  if (f.reply) out.reply = checkTuple(f.reply, 'reply', out.protocol, families);
  if (families.size > 1) throw new ValidationError('family', 'the filter mixes IPv4 and IPv6');
  const [family] = families;
  if (family !== undefined) out.family = family;
  if (f.zone !== undefined) out.zone = validateU32(f.zone, 'zone', 0, 65535);
  if (f.mark !== undefined) out.mark = { value: validateU32(f.mark, 'mark'), mask: f.markMask === undefined ? 0xffffffff : validateU32(f.markMask, 'markMask') };
  else if (f.markMask !== undefined) throw new ValidationError('markMask', 'needs a mark');
  if (f.status !== undefined) {
    const value = statusBits(f.status);
    const mask = f.statusMask === undefined ? value : validateU32(f.statusMask, 'statusMask');
    // The kernel refuses a zero mask (it would match everything or nothing).
    if (mask === 0) throw new ValidationError('status', 'needs at least one status bit (or a non-zero statusMask)');
    out.status = { value, mask };
  } else if (f.statusMask !== undefined) throw new ValidationError('statusMask', 'needs a status');
  return out;
}

/** CTA_FILTER_F_* bits: which tuple fields a kernel-side dump filter compares. */
export const CTA_FILTER_F = {
  IP_SRC: 1 << 0, IP_DST: 1 << 1, TUPLE_ZONE: 1 << 2, PROTO_NUM: 1 << 3, PROTO_SRC_PORT: 1 << 4, PROTO_DST_PORT: 1 << 5,
  PROTO_ICMP_TYPE: 1 << 6, PROTO_ICMP_CODE: 1 << 7, PROTO_ICMP_ID: 1 << 8, PROTO_ICMPV6_TYPE: 1 << 9, PROTO_ICMPV6_CODE: 1 << 10, PROTO_ICMPV6_ID: 1 << 11,
} as const;

function tupleFlags(t: ConntrackTupleFilter | undefined, protocol: number | undefined, family: 4 | 6): number {
  let f = protocol !== undefined ? CTA_FILTER_F.PROTO_NUM : 0;
  if (!t) return f;
  const v6 = protocol === CT_PROTOCOLS.icmpv6;
  // The kernel compares IPv6 addresses the wrong way round (it keeps the entries whose address
  // differs: `!ipv6_addr_cmp` in ctnetlink_filter_match_tuple, seen on 6.18), so an IPv6 address
  // is matched here only.
  if (t.src !== undefined && family === 4) f |= CTA_FILTER_F.IP_SRC;
  if (t.dst !== undefined && family === 4) f |= CTA_FILTER_F.IP_DST;
  if (t.srcPort !== undefined) f |= CTA_FILTER_F.PROTO_SRC_PORT;
  if (t.dstPort !== undefined) f |= CTA_FILTER_F.PROTO_DST_PORT;
  if (t.icmpType !== undefined) f |= v6 ? CTA_FILTER_F.PROTO_ICMPV6_TYPE : CTA_FILTER_F.PROTO_ICMP_TYPE;
  if (t.icmpCode !== undefined) f |= v6 ? CTA_FILTER_F.PROTO_ICMPV6_CODE : CTA_FILTER_F.PROTO_ICMP_CODE;
  if (t.icmpId !== undefined) f |= v6 ? CTA_FILTER_F.PROTO_ICMPV6_ID : CTA_FILTER_F.PROTO_ICMP_ID;
  return f;
}

/**
 * The attributes of a kernel-side dump filter. Mark and status go as `conntrack` sends them (the
 * mask always written); tuple fields go in CTA_TUPLE_ORIG/REPLY with CTA_FILTER naming them,
 * which the kernel accepts only for a known family, so without one they are matched here alone.
 */
export function kernelFilterAttrs(f: CheckedFilter): CtAttrs {
  const a: CtAttrs = {};
  const hasTuple = f.protocol !== undefined || (f.orig && Object.keys(f.orig).length > 0) || (f.reply && Object.keys(f.reply).length > 0);
  if (hasTuple && f.family !== undefined) {
    const family = f.family;
    const origFlags = tupleFlags(f.orig, f.protocol, family);
    const replyFlags = f.reply ? tupleFlags(f.reply, f.protocol, family) : 0;
    const sent = (t: ConntrackTupleFilter | undefined): ConntrackTupleFilter => {
      const { src, dst, ...rest } = t ?? {};
      return family === 4 ? { ...(src !== undefined ? { src } : {}), ...(dst !== undefined ? { dst } : {}), ...rest } : rest;
    };
    const proto = f.protocol !== undefined ? { protocol: f.protocol } : {};
    if (origFlags) a.orig = tupleAttrsOf({ ...sent(f.orig), ...proto }, family);
    if (replyFlags) a.reply = tupleAttrsOf({ ...sent(f.reply), ...proto }, family);
    if (origFlags || replyFlags) a.filter = { ...(origFlags ? { origFlags } : {}), ...(replyFlags ? { replyFlags } : {}) };
  }
  if (f.mark) {
    a.mark = f.mark.value;
    a.markMask = f.mark.mask;
  }
  if (f.status) {
    a.status = f.status.value;
    a.statusMask = f.status.mask;
  }
  return a;
}

function tupleMatches(t: ConntrackTuple, want: ConntrackTupleFilter | undefined): boolean {
  if (!want) return true;
  return (
    (want.src === undefined || want.src === t.src) &&
    (want.dst === undefined || want.dst === t.dst) &&
    (want.srcPort === undefined || want.srcPort === t.srcPort) &&
    (want.dstPort === undefined || want.dstPort === t.dstPort) &&
    (want.icmpType === undefined || want.icmpType === t.icmpType) &&
    (want.icmpCode === undefined || want.icmpCode === t.icmpCode) &&
    (want.icmpId === undefined || want.icmpId === t.icmpId)
  );
}

/** Whether an entry passes a checked filter (the same rules as the kernel's, plus the zone). */
export function filterMatches(e: ConntrackEntry, f: CheckedFilter): boolean {
  if (f.family !== undefined && e.family !== f.family) return false;
  if (f.protocol !== undefined && e.protocol !== f.protocol) return false;
  if (!tupleMatches(e.orig, f.orig) || !tupleMatches(e.reply, f.reply)) return false;
  if (f.zone !== undefined && (e.zone ?? e.orig.zone ?? 0) !== f.zone) return false;
  // As the kernel compares: the masked mark (or status) against the value as given.
  if (f.mark && (((e.mark ?? 0) & f.mark.mask) >>> 0) !== f.mark.value) return false;
  if (f.status && ((e.status & f.status.mask) >>> 0) !== f.status.value) return false;
  return true;
}
