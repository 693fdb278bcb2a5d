/** Policy routing rules (RTM_NEWRULE / RTM_DELRULE / RTM_GETRULE): `ip rule`, IPv4 and IPv6. Pure. */
import { ValidationError } from '../../errors.js';
import { AF, NLM_F, RT_TABLE } from '../core/constants.js';
import { attr, be64, ipAddr, strz, u8, u32, type Attrs, type Schema } from '../core/attr.js';
import { decodePayload, request, struct, structCodec, type MessageDef, type RawMessage, type Request } from '../core/message.js';
import { validateIfname, validateU32 } from '../core/validate.js';
import { parseCidr } from '../../ip/parse.js';

export const RTM_RULE = { NEW: 32, DEL: 33, GET: 34 } as const;

export const fibRuleHdr = struct([['family', 'u8'], ['dstLen', 'u8'], ['srcLen', 'u8'], ['tos', 'u8'], ['table', 'u8'], ['res1', 'u8'], ['res2', 'u8'], ['action', 'u8'], ['flags', 'u32']] as const);
export type FibRuleHdr = ReturnType<typeof fibRuleHdr.read>;

/** FR_ACT_*: what a matching rule does. */
export const RULE_ACTION = { unspec: 0, lookup: 1, goto: 2, nop: 3, blackhole: 6, unreachable: 7, prohibit: 8 } as const;
export type RuleAction = keyof typeof RULE_ACTION;
/** FIB_RULE_INVERT: the `not` of `ip rule add not ...`. */
export const FIB_RULE_INVERT = 0x2;

const range = structCodec(struct([['start', 'u32'], ['end', 'u32']] as const));
const portRange = structCodec(struct([['start', 'u16'], ['end', 'u16']] as const));

export const ruleAttrs = {
  // iproute2 adds the attributes in the order of its command line; fixtures use this order.
  priority: attr(6, u32),
  src: attr(2, ipAddr),
  dst: attr(1, ipAddr),
  fwmark: attr(10, u32),
  fwmask: attr(16, u32),
  iifname: attr(3, strz),
  oifname: attr(17, strz),
  table: attr(15, u32),
  goto: attr(4, u32),
  flow: attr(11, u32),
  tunId: attr(12, be64),
  suppressIfgroup: attr(13, u32),
  suppressPrefixlen: attr(14, u32),
  l3mdev: attr(19, u8),
  uidRange: attr(20, range),
  protocol: attr(21, u8),
  ipProto: attr(22, u8),
  sportRange: attr(23, portRange),
  dportRange: attr(24, portRange),
  dscp: attr(25, u8),
} as const satisfies Schema;
export type RuleAttrs = Attrs<typeof ruleAttrs>;
export const ruleMessage: MessageDef<keyof FibRuleHdr, typeof ruleAttrs> = { header: fibRuleHdr, attrs: ruleAttrs };

/** A policy routing rule as the kernel reports it. */
export interface Rule {
  family: 4 | 6;
  priority?: number;
  /** 'all' or a CIDR. */
  src: string;
  dst: string;
  table: number;
  action: RuleAction | number;
  /** `not`: the selector is inverted. */
  invert: boolean;
  tos: number;
  fwmark?: number;
  fwmask?: number;
  iif?: string;
  oif?: string;
  goto?: number;
  suppressPrefixlen?: number;
  protocol?: number;
  /** Layer-4 protocol matched (FRA_IP_PROTO, `ipproto`), as an IPPROTO_* number. */
  ipProto?: number;
  /** Source and destination port ranges matched (FRA_SPORT_RANGE, FRA_DPORT_RANGE; start = end for one port). */
  sport?: PortRange;
  dport?: PortRange;
  /** The uids matched (FRA_UID_RANGE, `uidrange START-END`). */
  uidRange?: { start: number; end: number };
  raw: { header: FibRuleHdr; attrs: RuleAttrs };
}

/** An inclusive range of ports. */
export interface PortRange {
  start: number;
  end: number;
}

/** Decodes an RTM_NEWRULE / RTM_DELRULE message. */
export function decodeRule(m: RawMessage): Rule {
  const { header, attrs } = decodePayload(ruleMessage, m.payload);
  const action = (Object.keys(RULE_ACTION) as RuleAction[]).find((k) => RULE_ACTION[k] === header.action) ?? header.action;
  const r: Rule = {
    family: header.family === AF.INET6 ? 6 : 4,
    src: attrs.src !== undefined ? `${attrs.src}/${header.srcLen}` : 'all',
    dst: attrs.dst !== undefined ? `${attrs.dst}/${header.dstLen}` : 'all',
    table: attrs.table ?? header.table,
    action,
    invert: (header.flags & FIB_RULE_INVERT) !== 0,
    tos: header.tos,
    raw: { header, attrs },
  };
  if (attrs.priority !== undefined) r.priority = attrs.priority;
  if (attrs.fwmark !== undefined) r.fwmark = attrs.fwmark;
  if (attrs.fwmask !== undefined) r.fwmask = attrs.fwmask;
  if (attrs.iifname !== undefined) r.iif = attrs.iifname;
  if (attrs.oifname !== undefined) r.oif = attrs.oifname;
  if (attrs.goto !== undefined) r.goto = attrs.goto;
  if (attrs.suppressPrefixlen !== undefined) r.suppressPrefixlen = attrs.suppressPrefixlen;
  if (attrs.protocol !== undefined) r.protocol = attrs.protocol;
  if (attrs.ipProto !== undefined) r.ipProto = attrs.ipProto;
  if (attrs.sportRange) r.sport = { start: attrs.sportRange.start, end: attrs.sportRange.end };
  if (attrs.dportRange) r.dport = { start: attrs.dportRange.start, end: attrs.dportRange.end };
  if (attrs.uidRange) r.uidRange = { start: attrs.uidRange.start, end: attrs.uidRange.end };
  return r;
}

/** A rule to add or delete. */
export interface RuleSpec {
  /** Address family when neither src nor dst tells (default 4). */
  family?: 4 | 6;
  priority?: number;
  src?: string;
  dst?: string;
  /** Incoming and outgoing interface names (rules match names, so links need not exist yet). */
  iif?: string;
  oif?: string;
  fwmark?: number;
  fwmask?: number;
  tos?: number;
  /** Table to look up (default main for the `lookup` action). */
  table?: number;
  /** Default 'lookup' (FR_ACT_TO_TBL). */
  action?: RuleAction;
  /** Target priority of a `goto` rule. */
  goto?: number;
  invert?: boolean;
  suppressPrefixlen?: number;
  protocol?: number;
  /** Match a layer-4 protocol (`ipproto tcp`). */
  ipProto?: 'tcp' | 'udp' | 'icmp' | 'icmpv6' | 'sctp' | number;
  /** Match a source or destination port, or an inclusive range of them (`sport 1000-2000`, `dport 80`). */
  sport?: number | PortRange;
  dport?: number | PortRange;
  /** Match the uids of the socket's owner (`uidrange 100-200`). */
  uidRange?: { start: number; end: number };
}

const IPPROTO: Readonly<Record<string, number>> = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58, sctp: 132 };

function checkPortRange(v: number | PortRange, field: string): { start: number; end: number } {
  const r = typeof v === 'number' ? { start: v, end: v } : v;
  const start = validateU32(r.start, `${field}.start`, 0, 65535);
  const end = validateU32(r.end, `${field}.end`, 0, 65535);
  if (end < start) throw new ValidationError(field, 'ends before it starts');
  return { start, end };
}

function ruleRequest(type: number, flags: number, s: RuleSpec): Request {
  const src = s.src !== undefined && s.src !== 'all' ? parseCidr(s.src, 'from') : undefined;
  const dst = s.dst !== undefined && s.dst !== 'all' ? parseCidr(s.dst, 'to') : undefined;
  const family = src?.family ?? dst?.family ?? s.family ?? 4;
  if (src && dst && src.family !== dst.family) throw new ValidationError('rule', 'from and to are of different families');
  const action = s.action ?? (s.goto !== undefined ? 'goto' : type === RTM_RULE.DEL && s.table === undefined ? 'unspec' : 'lookup');
  const act = RULE_ACTION[action];
  if (act === undefined) throw new ValidationError('action', `unknown rule action ${String(s.action)}`);
  const table = s.table ?? (action === 'lookup' && type === RTM_RULE.NEW ? RT_TABLE.MAIN : RT_TABLE.UNSPEC);
  validateU32(table, 'table');
  const attrs: RuleAttrs = {};
  if (s.priority !== undefined) attrs.priority = validateU32(s.priority, 'priority');
  if (src) attrs.src = src.address;
  if (dst) attrs.dst = dst.address;
  if (s.fwmark !== undefined) attrs.fwmark = validateU32(s.fwmark, 'fwmark');
  if (s.fwmask !== undefined) attrs.fwmask = validateU32(s.fwmask, 'fwmask');
  if (s.iif !== undefined) attrs.iifname = validateIfname(s.iif, 'iif');
  if (s.oif !== undefined) attrs.oifname = validateIfname(s.oif, 'oif');
  if (table > 255) attrs.table = table;
  if (s.goto !== undefined) attrs.goto = validateU32(s.goto, 'goto');
  if (s.suppressPrefixlen !== undefined) attrs.suppressPrefixlen = validateU32(s.suppressPrefixlen, 'suppressPrefixlen', 0, 128);
  if (s.protocol !== undefined) attrs.protocol = validateU32(s.protocol, 'protocol', 0, 255);
  if (s.uidRange !== undefined) {
    const start = validateU32(s.uidRange.start, 'uidRange.start');
    const end = validateU32(s.uidRange.end, 'uidRange.end');
    if (end < start) throw new ValidationError('uidRange', 'ends before it starts');
    attrs.uidRange = { start, end };
  }
  if (s.ipProto !== undefined) {
    const p = typeof s.ipProto === 'number' ? s.ipProto : IPPROTO[s.ipProto];
    if (p === undefined) throw new ValidationError('ipProto', `${JSON.stringify(s.ipProto)} is not one of ${Object.keys(IPPROTO).join(', ')}`);
    attrs.ipProto = validateU32(p, 'ipProto', 0, 255);
  }
  if (s.sport !== undefined) attrs.sportRange = checkPortRange(s.sport, 'sport');
  if (s.dport !== undefined) attrs.dportRange = checkPortRange(s.dport, 'dport');
  return request(
    ruleMessage,
    type,
    flags,
    { family: family === 4 ? AF.INET : AF.INET6, dstLen: dst?.prefix ?? 0, srcLen: src?.prefix ?? 0, tos: s.tos ?? 0, table: table > 255 ? RT_TABLE.UNSPEC : table, action: act, flags: s.invert ? FIB_RULE_INVERT : 0 },
    attrs,
  );
}

/** ip rule add [not] [priority N] [from CIDR] [to CIDR] [fwmark M/MASK] [iif DEV] [oif DEV] [lookup T | goto N | blackhole | ...] */
export function addRuleRequest(s: RuleSpec): Request {
  return ruleRequest(RTM_RULE.NEW, NLM_F.CREATE | NLM_F.EXCL, s);
}

/** ip rule del [priority N] [from CIDR] ... (matches on what is given) */
export function deleteRuleRequest(s: RuleSpec): Request {
  return ruleRequest(RTM_RULE.DEL, 0, s);
}

/** ip rule show (family 0 = IPv4 and IPv6) */
export function dumpRuleRequest(family?: 4 | 6): Request {
  return request(ruleMessage, RTM_RULE.GET, 0, { family: family === 4 ? AF.INET : family === 6 ? AF.INET6 : AF.UNSPEC });
}
