/**
 * ctnetlink on the wire (NETLINK_NETFILTER, subsystem CTNETLINK): the nfgenmsg header, the CTA_*
 * attributes of a tracked connection, typed entries decoded from them, and the requests
 * `conntrack` sends (dump with the kernel-side filters it supports, get, delete, flush, count).
 * Pure: no I/O. conntrack-client.ts sends these; conntrack-filter.ts matches entries.
 */
import { CodecError } from '../../errors.js';
import { attr, be16, be32, be64, bytes, ipAddr, nested, strz, u8, u32, type Attrs, type Codec, type Schema } from '../core/attr.js';
import { decodePayload, request, type MessageDef, type RawMessage, type Request } from '../core/message.js';
import { NLM_F } from '../core/constants.js';

/** nfnetlink subsystem of connection tracking (NFNL_SUBSYS_CTNETLINK). */
export const NFNL_SUBSYS_CTNETLINK = 1;

/** IPCTNL_MSG_CT_*: ctnetlink message types, before the subsystem is put in the high byte. */
export const IPCTNL_MSG = { NEW: 0, GET: 1, DELETE: 2, GET_CTRZERO: 3, GET_STATS_CPU: 4, GET_STATS: 5, GET_DYING: 6, GET_UNCONFIRMED: 7 } as const;

/** The nlmsg_type of a ctnetlink message: subsystem << 8 | message. */
export const ctMsgType = (msg: number): number => (NFNL_SUBSYS_CTNETLINK << 8) | msg;

/** NFNLGRP_CONNTRACK_*: the multicast groups that announce new, changed and destroyed entries. */
export const NFNLGRP_CONNTRACK = { new: 1, update: 2, destroy: 3 } as const;
export type ConntrackEventType = keyof typeof NFNLGRP_CONNTRACK;

const TYPE_NAMES = new Map<number, string>(Object.entries(IPCTNL_MSG).map(([k, v]) => [ctMsgType(v), `IPCTNL_MSG_CT_${k}`]));
/** Names a ctnetlink message type for errors ('IPCTNL_MSG_CT_DELETE'). */
export function ctnlTypeName(type: number): string {
  return TYPE_NAMES.get(type) ?? (type === 2 ? 'NLMSG_ERROR' : type === 3 ? 'NLMSG_DONE' : `NFNL_MSG_${type >> 8}_${type & 0xff}`);
}

// struct nfgenmsg is declared once, in the nfnetlink module, for every netfilter subsystem.
import { nfgenmsg, type NfGenMsg } from './nfnetlink.js';
export { nfgenmsg, type NfGenMsg };

const AF_INET = 2;
const AF_INET6 = 10;

/** CTA_IP_*: the addresses of a tuple. */
export const ctIpAttrs = { v4src: attr(1, ipAddr), v4dst: attr(2, ipAddr), v6src: attr(3, ipAddr), v6dst: attr(4, ipAddr) } as const satisfies Schema;
/** CTA_PROTO_*: the layer-4 part of a tuple (ports in network order, ICMP id, type and code). */
export const ctProtoAttrs = {
  num: attr(1, u8),
  srcPort: attr(2, be16),
  dstPort: attr(3, be16),
  icmpId: attr(4, be16),
  icmpType: attr(5, u8),
  icmpCode: attr(6, u8),
  icmpv6Id: attr(7, be16),
  icmpv6Type: attr(8, u8),
  icmpv6Code: attr(9, u8),
} as const satisfies Schema;
/** CTA_TUPLE_*: a direction of a connection. The kernel and `conntrack` mark the nests NLA_F_NESTED. */
export const ctTupleAttrs = {
  ip: attr(1, nested(ctIpAttrs), { nestedFlag: true }),
  proto: attr(2, nested(ctProtoAttrs), { nestedFlag: true }),
  zone: attr(3, be16),
} as const satisfies Schema;
export type CtTupleAttrs = Attrs<typeof ctTupleAttrs>;

/** struct nf_ct_tcp_flags: the TCP flags seen in a direction, and which of them are valid. */
const tcpFlags: Codec<{ flags: number; mask: number }> = {
  size: () => 2,
  write: (b, o, v) => {
    b.writeUInt8(v.flags, o);
    b.writeUInt8(v.mask, o + 1);
  },
  read: (b, o, l) => {
    if (l !== 2) throw new CodecError(`nf_ct_tcp_flags: expected 2 bytes, got ${l}`, o);
    return { flags: b.readUInt8(o), mask: b.readUInt8(o + 1) };
  },
};

/** CTA_PROTOINFO_TCP_* */
export const ctTcpInfoAttrs = { state: attr(1, u8), wscaleOrig: attr(2, u8), wscaleReply: attr(3, u8), flagsOrig: attr(4, tcpFlags), flagsReply: attr(5, tcpFlags) } as const satisfies Schema;
/** CTA_PROTOINFO_SCTP_* */
export const ctSctpInfoAttrs = { state: attr(1, u8), vtagOrig: attr(2, be32), vtagReply: attr(3, be32) } as const satisfies Schema;
/** CTA_PROTOINFO_DCCP_* */
export const ctDccpInfoAttrs = { state: attr(1, u8), role: attr(2, u8), handshakeSeq: attr(3, be64), pad: attr(4, bytes) } as const satisfies Schema;
/** CTA_PROTOINFO_*: per-protocol state. */
export const ctProtoinfoAttrs = {
  tcp: attr(1, nested(ctTcpInfoAttrs), { nestedFlag: true }),
  dccp: attr(2, nested(ctDccpInfoAttrs), { nestedFlag: true }),
  sctp: attr(3, nested(ctSctpInfoAttrs), { nestedFlag: true }),
} as const satisfies Schema;
/** CTA_COUNTERS_*: packets and bytes of a direction (64-bit, network order; the 32-bit pair is unused since 2.6). */
export const ctCountersAttrs = { packets: attr(1, be64), bytes: attr(2, be64), packets32: attr(3, be32), bytes32: attr(4, be32), pad: attr(5, bytes) } as const satisfies Schema;
/** CTA_TIMESTAMP_*: start and stop in nanoseconds (nf_conntrack_timestamp on). */
export const ctTimestampAttrs = { start: attr(1, be64), stop: attr(2, be64), pad: attr(3, bytes) } as const satisfies Schema;
/** CTA_SEQADJ_* */
export const ctSeqAdjAttrs = { correctionPos: attr(1, be32), offsetBefore: attr(2, be32), offsetAfter: attr(3, be32) } as const satisfies Schema;
/** CTA_FILTER_*: which fields of the tuples a kernel-side dump filter compares (CTA_FILTER_F_* bits). */
export const ctFilterAttrs = { origFlags: attr(1, u32), replyFlags: attr(2, u32) } as const satisfies Schema;

/**
 * CTA_*: a tracked connection, in the order `conntrack` writes a dump filter (mark, then status)
 * after the tuples and zone; replies are re-encoded in their own order.
 */
export const ctAttrs = {
  orig: attr(1, nested(ctTupleAttrs), { nestedFlag: true }),
  reply: attr(2, nested(ctTupleAttrs), { nestedFlag: true }),
  zone: attr(18, be16),
  mark: attr(8, be32),
  markMask: attr(21, be32),
  status: attr(3, be32),
  statusMask: attr(26, be32),
  id: attr(12, be32),
  protoinfo: attr(4, nested(ctProtoinfoAttrs), { nestedFlag: true }),
  help: attr(5, nested({ name: attr(1, strz), info: attr(2, bytes) } as const), { nestedFlag: true }),
  natSrc: attr(6, bytes),
  timeout: attr(7, be32),
  countersOrig: attr(9, nested(ctCountersAttrs), { nestedFlag: true }),
  countersReply: attr(10, nested(ctCountersAttrs), { nestedFlag: true }),
  use: attr(11, be32),
  natDst: attr(13, bytes),
  master: attr(14, nested(ctTupleAttrs), { nestedFlag: true }),
  seqAdjOrig: attr(15, nested(ctSeqAdjAttrs), { nestedFlag: true }),
  seqAdjReply: attr(16, nested(ctSeqAdjAttrs), { nestedFlag: true }),
  secmark: attr(17, be32),
  secctx: attr(19, nested({ name: attr(1, strz) } as const), { nestedFlag: true }),
  timestamp: attr(20, nested(ctTimestampAttrs), { nestedFlag: true }),
  labels: attr(22, bytes),
  labelsMask: attr(23, bytes),
  synproxy: attr(24, nested({ isn: attr(1, be32), its: attr(2, be32), tsoff: attr(3, be32) } as const), { nestedFlag: true }),
  filter: attr(25, nested(ctFilterAttrs), { nestedFlag: true }),
  timestampEvent: attr(27, be64),
} as const satisfies Schema;
export type CtAttrs = Attrs<typeof ctAttrs>;
export const ctMessage: MessageDef<keyof NfGenMsg, typeof ctAttrs> = { header: nfgenmsg, attrs: ctAttrs };

/** CTA_STATS_GLOBAL_*: the reply of IPCTNL_MSG_CT_GET_STATS (`conntrack -C`). */
export const ctStatsGlobalAttrs = { entries: attr(1, be32), maxEntries: attr(2, be32) } as const satisfies Schema;
export const ctStatsMessage: MessageDef<keyof NfGenMsg, typeof ctStatsGlobalAttrs> = { header: nfgenmsg, attrs: ctStatsGlobalAttrs };

/** The schema of a ctnetlink message by type (for annotating captures and re-encoding). */
export function ctDefOf(type: number): MessageDef<string, Schema> | undefined {
  if (type >> 8 !== NFNL_SUBSYS_CTNETLINK) return undefined;
  return (type & 0xff) === IPCTNL_MSG.GET_STATS ? (ctStatsMessage as MessageDef<string, Schema>) : (ctMessage as MessageDef<string, Schema>);
}

/** IPPROTO_* numbers by the names `conntrack` prints. */
export const CT_PROTOCOLS = { icmp: 1, igmp: 2, tcp: 6, udp: 17, dccp: 33, gre: 47, icmpv6: 58, sctp: 132, udplite: 136 } as const;
export type ConntrackProtocol = keyof typeof CT_PROTOCOLS;
const PROTOCOL_NAMES = new Map<number, ConntrackProtocol>(Object.entries(CT_PROTOCOLS).map(([k, v]) => [v, k as ConntrackProtocol]));

/** IPS_*: status bits, by the names `conntrack -u` takes (bit 12 is NAT_CLASH, formerly UNTRACKED). */
export const CT_STATUS = {
  EXPECTED: 1 << 0, SEEN_REPLY: 1 << 1, ASSURED: 1 << 2, CONFIRMED: 1 << 3, SRC_NAT: 1 << 4, DST_NAT: 1 << 5, SEQ_ADJUST: 1 << 6, SRC_NAT_DONE: 1 << 7,
  DST_NAT_DONE: 1 << 8, DYING: 1 << 9, FIXED_TIMEOUT: 1 << 10, TEMPLATE: 1 << 11, NAT_CLASH: 1 << 12, HELPER: 1 << 13, OFFLOAD: 1 << 14, HW_OFFLOAD: 1 << 15,
} as const;
export type ConntrackStatus = keyof typeof CT_STATUS;

/** TCP conntrack states (enum tcp_conntrack) as `conntrack` prints them. */
export const TCP_CT_STATES = ['NONE', 'SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE', 'SYN_SENT2'] as const;
/** SCTP conntrack states (enum sctp_conntrack). */
export const SCTP_CT_STATES = ['NONE', 'CLOSED', 'COOKIE_WAIT', 'COOKIE_ECHOED', 'ESTABLISHED', 'SHUTDOWN_SENT', 'SHUTDOWN_RECD', 'SHUTDOWN_ACK_SENT', 'HEARTBEAT_SENT', 'HEARTBEAT_ACKED'] as const;
/** DCCP conntrack states (enum ct_dccp_states). */
export const DCCP_CT_STATES = ['NONE', 'REQUEST', 'RESPOND', 'PARTOPEN', 'OPEN', 'CLOSEREQ', 'CLOSING', 'TIMEWAIT', 'IGNORE', 'INVALID'] as const;

/** One direction of a connection. */
export interface ConntrackTuple {
  src: string;
  dst: string;
  /** IPPROTO_* number. */
  protocol: number;
  srcPort?: number;
  dstPort?: number;
  /** ICMP or ICMPv6 identifier, type and code. */
  icmpId?: number;
  icmpType?: number;
  icmpCode?: number;
  /** The zone of this direction alone (CTA_TUPLE_ZONE), for a zone set per direction. */
  zone?: number;
}

/** Packets and bytes of one direction (nf_conntrack_acct on). */
export interface ConntrackCounters {
  packets: bigint;
  bytes: bigint;
}

/** A tracked connection, as `conntrack -L -o extended` shows it. */
export interface ConntrackEntry {
  family: 4 | 6;
  /** IPPROTO_* number, and its name as `conntrack` prints it ('unknown' for others). */
  protocol: number;
  protocolName: ConntrackProtocol | 'unknown';
  orig: ConntrackTuple;
  reply: ConntrackTuple;
  /** IPS_* bits, and their names. */
  status: number;
  statusNames: ConntrackStatus[];
  /** TCP, SCTP or DCCP state ('ESTABLISHED', 'TIME_WAIT', ...). */
  state?: string;
  /** TCP details: window scales and the flags seen each way. */
  tcp?: { wscaleOrig?: number; wscaleReply?: number; flagsOrig?: { flags: number; mask: number }; flagsReply?: { flags: number; mask: number } };
  /** Seconds until the entry expires. */
  timeout?: number;
  mark?: number;
  /** The conntrack zone (CTA_ZONE), when not the default 0. */
  zone?: number;
  /** Kernel id of the entry (stable while it lives). */
  id?: number;
  /** Reference count. */
  use?: number;
  counters?: { orig?: ConntrackCounters; reply?: ConntrackCounters };
  /** Connection labels as the kernel's bitmap (16 bytes), raw. */
  labels?: Buffer;
  /** Name of the helper attached ('ftp', ...). */
  helper?: string;
  /** Start and stop in nanoseconds (nf_conntrack_timestamp on). */
  timestamp?: { start: bigint; stop?: bigint };
  /** For an expected connection: the original tuple of its master. */
  master?: ConntrackTuple;
  /** Security context name, when SECMARK is used. */
  secctx?: string;
  raw: { header: NfGenMsg; attrs: CtAttrs };
}

/** A tuple from its decoded attributes; a tuple without addresses or protocol is a CodecError. */
export function tupleOf(t: CtTupleAttrs | undefined, what: string): ConntrackTuple {
  const ip = t?.ip;
  const p = t?.proto;
  const src = ip?.v4src ?? ip?.v6src;
  const dst = ip?.v4dst ?? ip?.v6dst;
  if (src === undefined || dst === undefined || p?.num === undefined) throw new CodecError(`conntrack ${what} tuple without addresses or protocol`);
  const out: ConntrackTuple = { src, dst, protocol: p.num };
  if (p.srcPort !== undefined) out.srcPort = p.srcPort;
  if (p.dstPort !== undefined) out.dstPort = p.dstPort;
  const id = p.icmpId ?? p.icmpv6Id;
  const type = p.icmpType ?? p.icmpv6Type;
  const code = p.icmpCode ?? p.icmpv6Code;
  if (id !== undefined) out.icmpId = id;
  if (type !== undefined) out.icmpType = type;
  if (code !== undefined) out.icmpCode = code;
  if (t?.zone !== undefined) out.zone = t.zone;
  return out;
}

function counters(c: Attrs<typeof ctCountersAttrs> | undefined): ConntrackCounters | undefined {
  if (!c) return undefined;
  const packets = c.packets ?? (c.packets32 !== undefined ? BigInt(c.packets32) : undefined);
  const bytes = c.bytes ?? (c.bytes32 !== undefined ? BigInt(c.bytes32) : undefined);
  return packets === undefined || bytes === undefined ? undefined : { packets, bytes };
}

/** The names of the IPS_* bits set in `status`. */
export function statusNames(status: number): ConntrackStatus[] {
  return (Object.keys(CT_STATUS) as ConntrackStatus[]).filter((k) => (status & CT_STATUS[k]) !== 0);
}

function stateName(a: CtAttrs): string | undefined {
  const pi = a.protoinfo;
  const s = pi?.tcp?.state ?? pi?.sctp?.state ?? pi?.dccp?.state;
  if (s === undefined) return undefined;
  const table: readonly string[] = pi?.tcp ? TCP_CT_STATES : pi?.sctp ? SCTP_CT_STATES : DCCP_CT_STATES;
  return table[s] ?? String(s);
}

/** Decodes an IPCTNL_MSG_CT_NEW (a dump entry, a get reply, a new or update event) or IPCTNL_MSG_CT_DELETE (a destroy event). */
export function decodeConntrack(m: RawMessage): ConntrackEntry {
  const { header, attrs: a } = decodePayload(ctMessage, m.payload);
  const orig = tupleOf(a.orig, 'original');
  const status = a.status ?? 0;
  const e: ConntrackEntry = {
    family: header.family === AF_INET6 ? 6 : 4,
    protocol: orig.protocol,
    protocolName: PROTOCOL_NAMES.get(orig.protocol) ?? 'unknown',
    orig,
    reply: tupleOf(a.reply, 'reply'),
    status,
    statusNames: statusNames(status),
    raw: { header, attrs: a },
  };
  const state = stateName(a);
  if (state !== undefined) e.state = state;
  const tcp = a.protoinfo?.tcp;
  if (tcp) {
    e.tcp = {};
    if (tcp.wscaleOrig !== undefined) e.tcp.wscaleOrig = tcp.wscaleOrig;
    if (tcp.wscaleReply !== undefined) e.tcp.wscaleReply = tcp.wscaleReply;
    if (tcp.flagsOrig !== undefined) e.tcp.flagsOrig = tcp.flagsOrig;
    if (tcp.flagsReply !== undefined) e.tcp.flagsReply = tcp.flagsReply;
  }
  if (a.timeout !== undefined) e.timeout = a.timeout;
  if (a.mark !== undefined) e.mark = a.mark;
  if (a.zone !== undefined) e.zone = a.zone;
  if (a.id !== undefined) e.id = a.id;
  if (a.use !== undefined) e.use = a.use;
  const co = counters(a.countersOrig);
  const cr = counters(a.countersReply);
  if (co || cr) e.counters = { ...(co ? { orig: co } : {}), ...(cr ? { reply: cr } : {}) };
  if (a.labels !== undefined) e.labels = a.labels;
  if (a.help?.name !== undefined) e.helper = a.help.name;
  if (a.timestamp?.start !== undefined) e.timestamp = { start: a.timestamp.start, ...(a.timestamp.stop !== undefined ? { stop: a.timestamp.stop } : {}) };
  if (a.master) e.master = tupleOf(a.master, 'master');
  if (a.secctx?.name !== undefined) e.secctx = a.secctx.name;
  return e;
}

/** The attributes of a tuple to send: addresses and layer-4 fields as the kernel parses them for its family and protocol. */
export function tupleAttrsOf(t: Partial<ConntrackTuple> & { protocol?: number }, family: 4 | 6): CtTupleAttrs {
  const ip: Attrs<typeof ctIpAttrs> = {};
  if (t.src !== undefined) ip[family === 4 ? 'v4src' : 'v6src'] = t.src;
  if (t.dst !== undefined) ip[family === 4 ? 'v4dst' : 'v6dst'] = t.dst;
  const proto: Attrs<typeof ctProtoAttrs> = {};
  if (t.protocol !== undefined) proto.num = t.protocol;
  if (t.srcPort !== undefined) proto.srcPort = t.srcPort;
  if (t.dstPort !== undefined) proto.dstPort = t.dstPort;
  const v6 = t.protocol === CT_PROTOCOLS.icmpv6;
  if (t.icmpId !== undefined) proto[v6 ? 'icmpv6Id' : 'icmpId'] = t.icmpId;
  if (t.icmpType !== undefined) proto[v6 ? 'icmpv6Type' : 'icmpType'] = t.icmpType;
  if (t.icmpCode !== undefined) proto[v6 ? 'icmpv6Code' : 'icmpCode'] = t.icmpCode;
  const out: CtTupleAttrs = {};
  if (Object.keys(ip).length > 0) out.ip = ip;
  if (Object.keys(proto).length > 0) out.proto = proto;
  if (t.zone !== undefined) out.zone = t.zone;
  return out;
}

const familyByte = (f: 4 | 6 | undefined): number => (f === 4 ? AF_INET : f === 6 ? AF_INET6 : 0);

/** `conntrack -L [-f ipv4|ipv6] [-m MARK/MASK] [-u STATUS]` as a dump request, with kernel-side tuple filter attributes when given. */
export function ctDumpRequest(family: 4 | 6 | undefined, attrs: CtAttrs = {}): Request {
  return request(ctMessage, ctMsgType(IPCTNL_MSG.GET), 0, { family: familyByte(family) }, attrs);
}

/** `conntrack -G ...`: one entry by its original tuple (or its reply tuple) and zone. */
export function ctGetRequest(family: 4 | 6, attrs: CtAttrs): Request {
  return request(ctMessage, ctMsgType(IPCTNL_MSG.GET), 0, { family: familyByte(family) }, attrs);
}

/**
 * `conntrack -D` of one dumped entry: its original tuple exactly as the kernel sent it (per-direction zone
 * included), its zone and its id, so that a connection made since with the same tuple is left
 * alone (the kernel answers ENOENT for it).
 */
export function ctDeleteRequest(e: Pick<ConntrackEntry, 'family' | 'raw'> & { orig?: ConntrackTuple; zone?: number; id?: number }): Request {
  const attrs: CtAttrs = { orig: e.raw.attrs.orig ?? (e.orig ? tupleAttrsOf(e.orig, e.family) : {}) };
  if (e.zone !== undefined) attrs.zone = e.zone;
  if (e.id !== undefined) attrs.id = e.id;
  return request(ctMessage, ctMsgType(IPCTNL_MSG.DELETE), 0, { family: familyByte(e.family) }, attrs);
}

/**
 * `conntrack -F`: the kernel deletes every entry, or those of a family, mark or status. A family
 * is honoured only with nfgenmsg version 1 (version 0, as conntrack 1.4.7 sends it, flushes
 * every family), so a per-family flush says version 1.
 */
export function ctFlushRequest(family: 4 | 6 | undefined, attrs: CtAttrs = {}): Request {
  return request(ctMessage, ctMsgType(IPCTNL_MSG.DELETE), 0, { family: familyByte(family), version: family === undefined ? 0 : 1 }, attrs);
}

/** `conntrack -C`: the number of entries in this netns. */
export function ctCountRequest(): Request {
  return request(ctStatsMessage, ctMsgType(IPCTNL_MSG.GET_STATS), 0, {}, {});
}

/** Decodes the reply of ctCountRequest. */
export function decodeConntrackCount(m: RawMessage): { entries: number; maxEntries?: number } {
  const { attrs } = decodePayload(ctStatsMessage, m.payload);
  if (attrs.entries === undefined) throw new CodecError('IPCTNL_MSG_CT_GET_STATS reply without CTA_STATS_GLOBAL_ENTRIES');
  return { entries: attrs.entries, ...(attrs.maxEntries !== undefined ? { maxEntries: attrs.maxEntries } : {}) };
}

/** Whether an event message announces a new entry (NLM_F_CREATE on IPCTNL_MSG_CT_NEW), a change, or a destroyed one. */
export function ctEventType(m: RawMessage): ConntrackEventType | undefined {
  if (m.type === ctMsgType(IPCTNL_MSG.DELETE)) return 'destroy';
  if (m.type !== ctMsgType(IPCTNL_MSG.NEW)) return undefined;
  return (m.flags & NLM_F.CREATE) !== 0 ? 'new' : 'update';
}
