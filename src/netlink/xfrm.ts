/**
 * IPsec over NETLINK_XFRM: security associations (states) and security policies, as `ip xfrm
 * state` and `ip xfrm policy` manage them. Specs in `ip`'s terms become requests byte for byte
 * like iproute2's (checked against captures in test/fixtures); the kernel's replies decode into
 * typed XfrmState and XfrmPolicy objects whose `raw` keeps the header and attributes. The wire
 * layouts are in xfrm-schema.ts; the Xfrm handle runs the requests.
 */
import { CodecError, ValidationError } from '../errors.js';
import { NETLINK } from './constants.js';
import { decodePayload, request, type RawMessage, type Request } from './message.js';
import { NetlinkSocket, type DumpList, type DumpOptions, type SocketOptions } from './socket.js';
import { parseIp as parseIpBytes, formatIPv4, formatIPv6 } from './ip.js';
import { parseCidr, validateU32 } from './validate.js';
import {
  XFRM_MSG, bareMessage, joinU64, policyIdMessage, policyInfoMessage, saFlushMessage, saIdMessage, saInfoMessage, spiInfoMessage, splitU64, xfrmTypeName,
  type UserTmpl, type UserpolicyInfo, type UsersaInfo, type XfrmAlgo, type XfrmAttrs,
} from './xfrm-schema.js';

// ------------------------------------------------------------ names

/** IPsec protocols by name (IPPROTO_*): `ip xfrm`'s XFRM-PROTO. */
export const XFRM_PROTO = { esp: 50, ah: 51, comp: 108, route2: 43, hao: 60, 'ipsec-any': 255 } as const;
export type XfrmProto = keyof typeof XFRM_PROTO;
/** XFRM_MODE_*. */
export const XFRM_MODE = { transport: 0, tunnel: 1, ro: 2, in_trigger: 3, beet: 4 } as const;
export type XfrmMode = keyof typeof XFRM_MODE;
/** XFRM_STATE_* flags (`flag FLAG-LIST`). */
export const XFRM_STATE_FLAG = { noecn: 1, 'decap-dscp': 2, nopmtudisc: 4, wildrecv: 8, icmp: 16, 'af-unspec': 32, align4: 64, esn: 128 } as const;
export type XfrmStateFlag = keyof typeof XFRM_STATE_FLAG;
/** XFRM_SA_XFLAG_* (`extra-flag`). */
export const XFRM_SA_XFLAG = { 'dont-encap-dscp': 1, 'oseq-may-wrap': 2 } as const;
export type XfrmExtraFlag = keyof typeof XFRM_SA_XFLAG;
/** XFRM_POLICY_IN, OUT, FWD. */
export const XFRM_POLICY_DIR = { in: 0, out: 1, fwd: 2 } as const;
export type XfrmDir = keyof typeof XFRM_POLICY_DIR;
/** XFRM_POLICY_ALLOW, BLOCK. */
export const XFRM_POLICY_ACTION = { allow: 0, block: 1 } as const;
export type XfrmAction = keyof typeof XFRM_POLICY_ACTION;
/** XFRM_POLICY_LOCALOK, ICMP. */
export const XFRM_POLICY_FLAG = { localok: 1, icmp: 2 } as const;
export type XfrmPolicyFlag = keyof typeof XFRM_POLICY_FLAG;
/** XFRM_POLICY_TYPE_MAIN, SUB (`ptype`). */
export const XFRM_POLICY_TYPE = { main: 0, sub: 1 } as const;
export type XfrmPolicyType = keyof typeof XFRM_POLICY_TYPE;
/** UDP_ENCAP_* / TCP_ENCAP_* (`encap TYPE`). */
export const XFRM_ENCAP = { 'espinudp-nonike': 1, espinudp: 2, espintcp: 7 } as const;
export type XfrmEncapType = keyof typeof XFRM_ENCAP;
/** XFRM_SHARE_* of a template. */
export const XFRM_SHARE = { any: 0, session: 1, user: 2, unique: 3 } as const;
export type XfrmShare = keyof typeof XFRM_SHARE;
/** XFRM_INF: the lifetime limit that means none. */
export const XFRM_INF = 0xffffffffffffffffn;

const AF_INET = 2;
const AF_INET6 = 10;
/** Selector protocols by name, for `proto tcp` and the like. */
const IP_PROTO: Record<string, number> = { icmp: 1, tcp: 6, udp: 17, gre: 47, esp: 50, ah: 51, icmpv6: 58, sctp: 132, udplite: 136 };

function nameOf<K extends string>(table: Readonly<Record<K, number>>, n: number): K | number {
  for (const k of Object.keys(table) as K[]) if (table[k] === n) return k;
  return n;
}
function numberOf<K extends string>(table: Readonly<Record<K, number>>, v: K | number, field: string): number {
  if (typeof v === 'number') return validateU32(v, field, 0, 255);
  const n = table[v];
  if (n === undefined) throw new ValidationError(field, `unknown ${field} ${JSON.stringify(v)}; one of ${Object.keys(table).join(', ')}`);
  return n;
}
function flagsOf<K extends string>(table: Readonly<Record<K, number>>, v: readonly K[] | undefined, field: string): number {
  let f = 0;
  for (const k of v ?? []) f |= numberOf(table, k, field);
  return f;
}
function flagNames<K extends string>(table: Readonly<Record<K, number>>, f: number): (K | number)[] {
  const out: (K | number)[] = [];
  for (let bit = 1; bit <= f && bit <= 0x80000000; bit *= 2) if (f & bit) out.push(nameOf(table, bit));
  return out;
}

// ------------------------------------------------------------ addresses

type Header = Record<string, number>;

/** Writes an address as the four big-endian words PREFIX0..3 of a header being built; returns its family. */
function putAddress(h: Header, p: string, text: string, field: string): 4 | 6 {
  const b = parseIpBytes(text);
  if (!b) throw new ValidationError(field, `${JSON.stringify(text)} is not an IP address`);
  const buf = Buffer.alloc(16);
  Buffer.from(b).copy(buf);
  for (let i = 0; i < 4; i++) h[`${p}${i}`] = buf.readUInt32BE(4 * i);
  return b.length === 4 ? 4 : 6;
}

const addrBuf = Buffer.alloc(16);
/**
 * An address from its four words, read for `family` (IPv4: the first word). An IPv4 address whose
 * other words are not zero is shown as IPv6, so that nothing on the wire is hidden.
 */
function getAddress(fields: object, p: string, family: number): string {
  const h = fields as Readonly<Record<string, number>>;
  for (let i = 0; i < 4; i++) addrBuf.writeUInt32BE((h[`${p}${i}`] ?? 0) >>> 0, 4 * i);
  if (family === AF_INET && addrBuf.readUInt32BE(4) === 0 && addrBuf.readUInt32BE(8) === 0 && addrBuf.readUInt32BE(12) === 0) return formatIPv4(addrBuf);
  return formatIPv6(addrBuf);
}

/** An xfrm_address_t attribute (XFRMA_SRCADDR, XFRMA_COADDR) from text. */
function addressBytes(text: string, field: string): Buffer {
  const b = parseIpBytes(text);
  if (!b) throw new ValidationError(field, `${JSON.stringify(text)} is not an IP address`);
  const out = Buffer.alloc(16);
  Buffer.from(b).copy(out);
  return out;
}

const familyNumber = (f: 4 | 6): number => (f === 4 ? AF_INET : AF_INET6);
const familyOf = (af: number): 4 | 6 | number => (af === AF_INET ? 4 : af === AF_INET6 ? 6 : af);

// ------------------------------------------------------------ selectors and lifetimes

/** The traffic a policy or state applies to (`sel` / the policy's SELECTOR). Unset parts match anything. */
export interface XfrmSelectorSpec {
  /** Source prefix ('10.1.0.0/24'; an address alone is a host). */
  src?: string;
  dst?: string;
  /** IP protocol by name ('tcp', 'udp', 'icmp', ...) or number. */
  proto?: string | number;
  /** Ports (for ICMP, the type and code), matched exactly when given. */
  sport?: number;
  dport?: number;
  /** Only packets through this ifindex (`dev`). */
  ifindex?: number;
}

/** A selector as the kernel reports it. */
export interface XfrmSelector {
  family: 4 | 6 | number;
  src: string;
  srcPrefix: number;
  dst: string;
  dstPrefix: number;
  proto: number;
  sport: number;
  sportMask: number;
  dport: number;
  dportMask: number;
  ifindex: number;
  user: number;
}

/** Writes a selector into the `sel` fields; `fallback` is the family when no address gives one (0 leaves it unspecified). */
function putSelector(h: Header, s: XfrmSelectorSpec | undefined, fallback: number): number {
  let family = 0;
  if (s?.src !== undefined) {
    const c = parseCidr(s.src, 'sel.src');
    family = familyNumber(putAddress(h, 'selSaddr', c.address, 'sel.src'));
    h['selPrefixlenS'] = c.prefix;
  }
  if (s?.dst !== undefined) {
    const c = parseCidr(s.dst, 'sel.dst');
    const f = familyNumber(putAddress(h, 'selDaddr', c.address, 'sel.dst'));
    if (family && f !== family) throw new ValidationError('sel', 'src and dst are of different families');
    family = f;
    h['selPrefixlenD'] = c.prefix;
  }
  if (s?.proto !== undefined) {
    const p = typeof s.proto === 'number' ? s.proto : IP_PROTO[s.proto];
    if (p === undefined) throw new ValidationError('sel.proto', `unknown protocol ${JSON.stringify(s.proto)}; a number or one of ${Object.keys(IP_PROTO).join(', ')}`);
    h['selProto'] = validateU32(p, 'sel.proto', 0, 255);
  }
  if (s?.sport !== undefined) [h['selSport'], h['selSportMask']] = [validateU32(s.sport, 'sel.sport', 0, 65535), 0xffff];
  if (s?.dport !== undefined) [h['selDport'], h['selDportMask']] = [validateU32(s.dport, 'sel.dport', 0, 65535), 0xffff];
  if (s?.ifindex !== undefined) h['selIfindex'] = validateU32(s.ifindex, 'sel.ifindex', 0, 0x7fffffff);
  h['selFamily'] = family || fallback;
  return family;
}

/** A selector from the `sel` fields; its addresses read in `fallback`'s family when it has none (a larval SA's). */
function getSelector(h: Readonly<Record<string, number>>, fallback = 0): XfrmSelector {
  const f = h['selFamily'] || fallback;
  return {
    family: familyOf(h['selFamily'] ?? 0),
    src: getAddress(h, 'selSaddr', f),
    srcPrefix: h['selPrefixlenS'] ?? 0,
    dst: getAddress(h, 'selDaddr', f),
    dstPrefix: h['selPrefixlenD'] ?? 0,
    proto: h['selProto'] ?? 0,
    sport: h['selSport'] ?? 0,
    sportMask: h['selSportMask'] ?? 0,
    dport: h['selDport'] ?? 0,
    dportMask: h['selDportMask'] ?? 0,
    ifindex: h['selIfindex'] ?? 0,
    user: h['selUser'] ?? 0,
  };
}

/** Soft and hard limits (`limit byte-soft N`, `limit time-hard S`, ...). Unset byte and packet limits are none (XFRM_INF). */
export interface XfrmLifetimeSpec {
  byteSoft?: number | bigint;
  byteHard?: number | bigint;
  packetSoft?: number | bigint;
  packetHard?: number | bigint;
  /** Seconds after the SA or policy was added. */
  timeSoft?: number | bigint;
  timeHard?: number | bigint;
  /** Seconds after it was first used. */
  timeUseSoft?: number | bigint;
  timeUseHard?: number | bigint;
}

/** Limits as the kernel reports them (XFRM_INF: none). */
export interface XfrmLifetime {
  byteSoft: bigint;
  byteHard: bigint;
  packetSoft: bigint;
  packetHard: bigint;
  timeSoft: bigint;
  timeHard: bigint;
  timeUseSoft: bigint;
  timeUseHard: bigint;
}
/** What an SA or policy has used so far. */
export interface XfrmCurrent {
  bytes: bigint;
  packets: bigint;
  /** Seconds since the epoch when it was added, and first used (0: never). */
  addTime: bigint;
  useTime: bigint;
}

const LIFETIME: readonly [keyof XfrmLifetime, string][] = [
  ['byteSoft', 'softByteLimit'], ['byteHard', 'hardByteLimit'], ['packetSoft', 'softPacketLimit'], ['packetHard', 'hardPacketLimit'],
  ['timeSoft', 'softAddExpires'], ['timeHard', 'hardAddExpires'], ['timeUseSoft', 'softUseExpires'], ['timeUseHard', 'hardUseExpires'],
];

function u64Of(v: number | bigint, field: string): bigint {
  const b = typeof v === 'bigint' ? v : Number.isSafeInteger(v) ? BigInt(v) : -1n;
  if (b < 0n || b > XFRM_INF) throw new ValidationError(field, `${String(v)} is not an integer in 0..2^64-1`);
  return b;
}

/** Writes the limits, with iproute2's defaults: no byte or packet limit, no expiry. */
function putLifetime(h: Header, l: XfrmLifetimeSpec | undefined): void {
  for (const [k, f] of LIFETIME) {
    const v = l?.[k];
    splitU64(h, f, v !== undefined ? u64Of(v, `lifetime.${k}`) : k.startsWith('byte') || k.startsWith('packet') ? XFRM_INF : 0n);
  }
}

function getLifetime(h: Readonly<Record<string, number>>): XfrmLifetime {
  return Object.fromEntries(LIFETIME.map(([k, f]) => [k, joinU64(h, f)])) as unknown as XfrmLifetime;
}
function getCurrent(h: Readonly<Record<string, number>>): XfrmCurrent {
  return { bytes: joinU64(h, 'curBytes'), packets: joinU64(h, 'curPackets'), addTime: joinU64(h, 'curAddTime'), useTime: joinU64(h, 'curUseTime') };
}

// ------------------------------------------------------------ algorithms, marks

/** A key as bytes, or as text the way `ip xfrm` reads it: '0x' then hex digits, else the characters themselves. */
export type XfrmKey = Buffer | string;

function keyBytes(k: XfrmKey, field: string): Buffer {
  if (Buffer.isBuffer(k)) return k;
  if (typeof k !== 'string') throw new ValidationError(field, 'must be a Buffer or a string');
  if (/^0x/i.test(k)) {
    if (!/^0x([0-9a-f]{2})*$/i.test(k)) throw new ValidationError(field, `${JSON.stringify(k)} is not an even number of hex digits after 0x`);
    return Buffer.from(k.slice(2), 'hex');
  }
  return Buffer.from(k, 'utf8');
}

function algo(name: string, key: XfrmKey | undefined, field: string, icvLen?: number): XfrmAlgo {
  if (typeof name !== 'string' || name === '' || Buffer.byteLength(name) > 63) throw new ValidationError(`${field}.name`, `${JSON.stringify(name)} must be 1..63 bytes`);
  const k = key === undefined ? Buffer.alloc(0) : keyBytes(key, `${field}.key`);
  const a: XfrmAlgo = { name, keyLen: k.length * 8, key: k };
  if (icvLen !== undefined) a.icvLen = validateU32(icvLen, `${field} length`);
  return a;
}

/** A mark and mask (`mark MARK [mask MASK]`; the mask defaults to every bit). */
export interface XfrmMarkSpec {
  value: number;
  mask?: number;
}
function markOf(m: XfrmMarkSpec, field: string): { v: number; m: number } {
  return { v: validateU32(m.value, `${field}.value`), m: m.mask === undefined ? 0xffffffff : validateU32(m.mask, `${field}.mask`) };
}

// ------------------------------------------------------------ states

/** Identifies an SA: destination, protocol and SPI (and its mark when it has one). */
export interface XfrmStateId {
  /** Sent as XFRMA_SRCADDR, as `ip xfrm state delete src ...` does; the kernel looks IPsec SAs up by SPI. */
  src?: string;
  dst: string;
  proto: XfrmProto | number;
  spi: number;
  mark?: XfrmMarkSpec;
}

/** An SA to add or update: `ip xfrm state add ID [ALGO-LIST] [mode MODE] ...`. */
export interface XfrmStateSpec {
  src: string;
  dst: string;
  proto: XfrmProto | number;
  spi: number;
  mode?: XfrmMode;
  reqid?: number;
  seq?: number;
  replayWindow?: number;
  flags?: readonly XfrmStateFlag[];
  extraFlags?: readonly XfrmExtraFlag[];
  /** `auth NAME KEY`, or `auth-trunc NAME KEY BITS` when truncLen is given. */
  auth?: { name: string; key: XfrmKey; truncLen?: number };
  /** `enc NAME KEY`. */
  enc?: { name: string; key: XfrmKey };
  /** `aead NAME KEY ICV-BITS`. */
  aead?: { name: string; key: XfrmKey; icvLen: number };
  /** `comp NAME`. */
  comp?: { name: string };
  /** `encap TYPE SPORT DPORT OADDR` (NAT traversal). */
  encap?: { type: XfrmEncapType; sport: number; dport: number; oa?: string };
  /** `coa ADDR` (care-of address, for route2 and hao). */
  coa?: string;
  sel?: XfrmSelectorSpec;
  lifetime?: XfrmLifetimeSpec;
  mark?: XfrmMarkSpec;
  /** `output-mark MARK [mask MASK]`: the mark set on packets the SA outputs. */
  outputMark?: XfrmMarkSpec;
  /** `if_id ID`: binds the SA to xfrm interfaces with this id. */
  ifId?: number;
  /** `tfcpad LENGTH`. */
  tfcpad?: number;
}

/** The SA part shared by NEWSA and ALLOCSPI: addresses, protocol, SPI, mode, reqid, sequence. */
function putSaBase(h: Header, s: Pick<XfrmStateSpec, 'src' | 'dst' | 'proto' | 'mode' | 'reqid' | 'seq'> & { spi?: number }): void {
  const fs = putAddress(h, 'saddr', s.src, 'src');
  const fd = putAddress(h, 'idDaddr', s.dst, 'dst');
  if (fs !== fd) throw new ValidationError('dst', 'src and dst are of different families');
  h['family'] = familyNumber(fd);
  h['idProto'] = numberOf(XFRM_PROTO, s.proto, 'proto');
  if (s.spi !== undefined) h['idSpi'] = validateU32(s.spi, 'spi');
  if (s.mode !== undefined) h['mode'] = numberOf(XFRM_MODE, s.mode, 'mode');
  if (s.reqid !== undefined) h['reqid'] = validateU32(s.reqid, 'reqid');
  if (s.seq !== undefined) h['seq'] = validateU32(s.seq, 'seq');
}

function stateRequest(type: number, s: XfrmStateSpec): Request {
  const h: Header = {};
  putSaBase(h, s);
  putSelector(h, s.sel, 0);
  putLifetime(h, s.lifetime);
  const window = s.replayWindow === undefined ? 0 : validateU32(s.replayWindow, 'replayWindow', 0, 4096);
  h['flags'] = flagsOf(XFRM_STATE_FLAG, s.flags, 'flag');
  const a: XfrmAttrs = {};
  if (s.auth) {
    if (s.auth.truncLen !== undefined) a.algAuthTrunc = algo(s.auth.name, s.auth.key, 'auth', s.auth.truncLen);
    else a.algAuth = algo(s.auth.name, s.auth.key, 'auth');
  }
  if (s.enc) a.algCrypt = algo(s.enc.name, s.enc.key, 'enc');
  if (s.aead) a.algAead = algo(s.aead.name, s.aead.key, 'aead', s.aead.icvLen);
  if (s.comp) a.algComp = algo(s.comp.name, undefined, 'comp');
  if (s.encap) {
    const e: Header = { type: numberOf(XFRM_ENCAP, s.encap.type, 'encap.type'), sport: validateU32(s.encap.sport, 'encap.sport', 0, 65535), dport: validateU32(s.encap.dport, 'encap.dport', 0, 65535) };
    putAddress(e, 'oa', s.encap.oa ?? '0.0.0.0', 'encap.oa');
    a.encap = e as unknown as NonNullable<XfrmAttrs['encap']>;
  }
  if (s.coa !== undefined) a.coaddr = addressBytes(s.coa, 'coa');
  // As iproute2: a window wider than the 32-bit bitmap (or the esn flag) takes the ESN replay state.
  if ((h['flags'] & XFRM_STATE_FLAG.esn) !== 0 || window > 32) {
    a.replayEsnVal = { bmpLen: Math.ceil(window / 32), oseq: 0, seq: 0, oseqHi: 0, seqHi: 0, replayWindow: window };
  } else h['replayWindow'] = window;
  const xf = flagsOf(XFRM_SA_XFLAG, s.extraFlags, 'extraFlags');
  if (xf) a.saExtraFlags = xf;
  if (s.mark) a.mark = markOf(s.mark, 'mark');
  if (s.ifId !== undefined) a.ifId = validateU32(s.ifId, 'ifId');
  if (s.tfcpad !== undefined) a.tfcpad = validateU32(s.tfcpad, 'tfcpad');
  if (s.outputMark) {
    const m = markOf(s.outputMark, 'outputMark');
    a.setMark = m.v;
    a.setMarkMask = m.m;
  }
  return request(saInfoMessage, type, 0, h, a);
}

/** ip xfrm state add ID [ALGO-LIST] [mode MODE] [reqid N] [sel SELECTOR] [LIMIT-LIST] [encap ...] [mark M] [if_id N] */
export function addStateRequest(s: XfrmStateSpec): Request {
  return stateRequest(XFRM_MSG.NEWSA, s);
}
/** ip xfrm state update ID ... (replaces the SA with this ID) */
export function updateStateRequest(s: XfrmStateSpec): Request {
  return stateRequest(XFRM_MSG.UPDSA, s);
}

/** An SPI to allocate: a larval SA that holds it until the SA is added with update. */
export interface XfrmAllocSpiSpec {
  src: string;
  dst: string;
  proto: XfrmProto | number;
  mode?: XfrmMode;
  reqid?: number;
  seq?: number;
  mark?: XfrmMarkSpec;
  /** Binds the SA to xfrm interfaces with this id (the kernel takes it; iproute2 6.1 cannot send it). */
  ifId?: number;
  /** The range to pick from (default 0x100..0x0fffffff; 0x100..0xffff for comp). */
  min?: number;
  max?: number;
}

/** ip xfrm state allocspi ID [mode MODE] [mark MARK [mask MASK]] [reqid N] [seq N] [min SPI max SPI] (and an if_id, which the kernel takes) */
export function allocSpiRequest(s: XfrmAllocSpiSpec): Request {
  const h: Header = {};
  putSaBase(h, s);
  if ((s.min === undefined) !== (s.max === undefined)) throw new ValidationError('min', 'give both min and max, or neither');
  const comp = numberOf(XFRM_PROTO, s.proto, 'proto') === XFRM_PROTO.comp;
  h['min'] = s.min === undefined ? 0x100 : validateU32(s.min, 'min');
  h['max'] = s.max === undefined ? (comp ? 0xffff : 0x0fffffff) : validateU32(s.max, 'max');
  if (h['min'] > h['max']) throw new ValidationError('min', 'is larger than max');
  const a: XfrmAttrs = {};
  // iproute2 sends the mark only when value and mask share a bit.
  if (s.mark) {
    const m = markOf(s.mark, 'mark');
    if ((m.v & m.m) !== 0) a.mark = m;
  }
  if (s.ifId !== undefined) a.ifId = validateU32(s.ifId, 'ifId');
  return request(spiInfoMessage, XFRM_MSG.ALLOCSPI, 0, h, a);
}

function saIdRequest(type: number, id: XfrmStateId): Request {
  const h: Header = {};
  h['family'] = familyNumber(putAddress(h, 'daddr', id.dst, 'dst'));
  h['spi'] = validateU32(id.spi, 'spi');
  h['proto'] = numberOf(XFRM_PROTO, id.proto, 'proto');
  const a: XfrmAttrs = {};
  if (id.src !== undefined) a.srcaddr = addressBytes(id.src, 'src');
  if (id.mark) a.mark = markOf(id.mark, 'mark');
  return request(saIdMessage, type, 0, h, a);
}
/** ip xfrm state delete ID [mark MARK [mask MASK]] */
export function deleteStateRequest(id: XfrmStateId): Request {
  return saIdRequest(XFRM_MSG.DELSA, id);
}
/** ip xfrm state get ID [mark MARK [mask MASK]] */
export function getStateRequest(id: XfrmStateId): Request {
  return saIdRequest(XFRM_MSG.GETSA, id);
}

/** What a state dump asks the kernel for: one protocol and/or prefixes of both ends. */
export interface XfrmStateFilter {
  proto?: XfrmProto | number;
  /** Source and destination prefixes: the kernel dumps only SAs within both. */
  src?: string;
  dst?: string;
}

/** ip xfrm state list [proto P] (a GETSA dump with iproute2's address filter, which matches every SA unless prefixes are given) */
export function dumpStateRequest(f: XfrmStateFilter = {}): Request {
  const a: XfrmAttrs = {};
  if (f.proto !== undefined) a.proto = numberOf(XFRM_PROTO, f.proto, 'proto');
  const filter: Header = { family: 0, splen: 0, dplen: 0 };
  for (const [k, w] of [['src', 'saddr'], ['dst', 'daddr']] as const) {
    const v = f[k];
    if (v === undefined) continue;
    const c = parseCidr(v, k);
    const af = familyNumber(putAddress(filter, w, c.address, k));
    if (filter['family'] && filter['family'] !== af) throw new ValidationError(k, 'src and dst are of different families');
    filter['family'] = af;
    filter[k === 'src' ? 'splen' : 'dplen'] = c.prefix;
  }
  a.addressFilter = filter as unknown as NonNullable<XfrmAttrs['addressFilter']>;
  return request(bareMessage, XFRM_MSG.GETSA, 0, {}, a);
}

/** ip xfrm state flush [proto P] */
export function flushStateRequest(proto?: XfrmProto | number): Request {
  return request(saFlushMessage, XFRM_MSG.FLUSHSA, 0, { proto: proto === undefined ? 0 : numberOf(XFRM_PROTO, proto, 'proto') });
}

/** An SA as the kernel reports it (`ip xfrm state list`). */
export interface XfrmState {
  family: 4 | 6 | number;
  src: string;
  dst: string;
  proto: XfrmProto | number;
  spi: number;
  mode: XfrmMode | number;
  reqid: number;
  seq: number;
  replayWindow: number;
  flags: (XfrmStateFlag | number)[];
  selector: XfrmSelector;
  lifetime: XfrmLifetime;
  current: XfrmCurrent;
  stats: { replayWindow: number; replay: number; integrityFailed: number };
  auth?: { name: string; key: Buffer; keyLen: number; truncLen?: number };
  enc?: { name: string; key: Buffer; keyLen: number };
  aead?: { name: string; key: Buffer; keyLen: number; icvLen: number };
  comp?: { name: string };
  encap?: { type: XfrmEncapType | number; sport: number; dport: number; oa: string };
  coa?: string;
  mark?: { value: number; mask: number };
  outputMark?: { value: number; mask: number };
  ifId?: number;
  tfcpad?: number;
  extraFlags?: (XfrmExtraFlag | number)[];
  /** Seconds since the epoch of its last use. */
  lastUsed?: bigint;
  raw: { header: UsersaInfo; attrs: XfrmAttrs };
}

function addressFrom(b: Buffer | undefined, family: number): string | undefined {
  if (!b) return undefined;
  if (b.length !== 16) throw new CodecError(`xfrm_address_t of ${b.length} bytes`);
  const h: Header = {};
  for (let i = 0; i < 4; i++) h[`a${i}`] = b.readUInt32BE(4 * i);
  return getAddress(h, 'a', family);
}

/** Decodes an SA message (XFRM_MSG_NEWSA, UPDSA, DELSA as events); a short or malformed one is a CodecError. */
export function decodeState(m: RawMessage): XfrmState {
  const { header: h, attrs: a } = decodePayload(saInfoMessage, m.payload);
  const f = h.family;
  const s: XfrmState = {
    family: familyOf(f),
    src: getAddress(h, 'saddr', f),
    dst: getAddress(h, 'idDaddr', f),
    proto: nameOf(XFRM_PROTO, h.idProto),
    spi: h.idSpi,
    mode: nameOf(XFRM_MODE, h.mode),
    reqid: h.reqid,
    seq: h.seq,
    replayWindow: h.replayWindow,
    flags: flagNames(XFRM_STATE_FLAG, h.flags),
    selector: getSelector(h, f),
    lifetime: getLifetime(h),
    current: getCurrent(h),
    stats: { replayWindow: h.statsReplayWindow, replay: h.statsReplay, integrityFailed: h.statsIntegrityFailed },
    raw: { header: h, attrs: a },
  };
  // The kernel reports an auth algorithm twice: as xfrm_algo and with its truncation length.
  const auth = a.algAuthTrunc ?? a.algAuth;
  if (auth) {
    s.auth = { name: auth.name, key: auth.key, keyLen: auth.keyLen };
    if (a.algAuthTrunc?.icvLen !== undefined) s.auth.truncLen = a.algAuthTrunc.icvLen;
  }
  if (a.algCrypt) s.enc = { name: a.algCrypt.name, key: a.algCrypt.key, keyLen: a.algCrypt.keyLen };
  if (a.algAead) s.aead = { name: a.algAead.name, key: a.algAead.key, keyLen: a.algAead.keyLen, icvLen: a.algAead.icvLen ?? 0 };
  if (a.algComp) s.comp = { name: a.algComp.name };
  if (a.encap) s.encap = { type: nameOf(XFRM_ENCAP, a.encap.type), sport: a.encap.sport, dport: a.encap.dport, oa: getAddress(a.encap, 'oa', f) };
  const coa = addressFrom(a.coaddr, f);
  if (coa !== undefined) s.coa = coa;
  if (a.mark) s.mark = { value: a.mark.v, mask: a.mark.m };
  if (a.setMark !== undefined) s.outputMark = { value: a.setMark, mask: a.setMarkMask ?? 0xffffffff };
  if (a.ifId !== undefined) s.ifId = a.ifId;
  if (a.tfcpad !== undefined) s.tfcpad = a.tfcpad;
  if (a.saExtraFlags !== undefined) s.extraFlags = flagNames(XFRM_SA_XFLAG, a.saExtraFlags);
  if (a.lastused !== undefined) s.lastUsed = a.lastused;
  return s;
}

// ------------------------------------------------------------ policies

/** One transform a policy requires (`tmpl src A dst B proto P [spi N] [reqid N] [mode M] [level use]`). */
export interface XfrmTemplateSpec {
  /** Tunnel endpoints (required by the kernel in tunnel mode). */
  src?: string;
  dst?: string;
  proto: XfrmProto | number;
  spi?: number;
  reqid?: number;
  mode?: XfrmMode;
  /** 'use': the SA is optional (`level use`); 'required' by default. */
  level?: 'required' | 'use';
  share?: XfrmShare;
}

/** A template as the kernel reports it. */
export interface XfrmTemplate {
  family: 4 | 6 | number;
  src: string;
  dst: string;
  proto: XfrmProto | number;
  spi: number;
  reqid: number;
  mode: XfrmMode | number;
  share: XfrmShare | number;
  /** `level use`. */
  optional: boolean;
  aalgos: number;
  ealgos: number;
  calgos: number;
}

/** Names a policy: its selector and direction, or its index (and the mark and type it was added with). */
export interface XfrmPolicyId {
  sel?: XfrmSelectorSpec;
  dir: XfrmDir;
  /** The kernel's index of the policy; when given, the selector is not used to find it. */
  index?: number;
  ptype?: XfrmPolicyType;
  /** The mark and if_id are part of a policy's identity: give the ones it was added with. */
  mark?: XfrmMarkSpec;
  ifId?: number;
}

/** A policy to add or update: `ip xfrm policy add SELECTOR dir DIR [priority N] [action A] [tmpl ...]`. */
export interface XfrmPolicySpec {
  sel: XfrmSelectorSpec;
  dir: XfrmDir;
  priority?: number;
  index?: number;
  action?: XfrmAction;
  flags?: readonly XfrmPolicyFlag[];
  ptype?: XfrmPolicyType;
  lifetime?: XfrmLifetimeSpec;
  templates?: readonly XfrmTemplateSpec[];
  mark?: XfrmMarkSpec;
  ifId?: number;
}

function templateOf(t: XfrmTemplateSpec, family: number, i: number): UserTmpl {
  const h: Header = { aalgos: 0xffffffff, ealgos: 0xffffffff, calgos: 0xffffffff };
  let af = 0;
  if (t.dst !== undefined) af = familyNumber(putAddress(h, 'idDaddr', t.dst, `templates[${i}].dst`));
  if (t.src !== undefined) {
    const f = familyNumber(putAddress(h, 'saddr', t.src, `templates[${i}].src`));
    if (af && f !== af) throw new ValidationError(`templates[${i}]`, 'src and dst are of different families');
    af = f;
  }
  h['family'] = af || family;
  h['idProto'] = numberOf(XFRM_PROTO, t.proto, `templates[${i}].proto`);
  if (t.spi !== undefined) h['idSpi'] = validateU32(t.spi, `templates[${i}].spi`);
  if (t.reqid !== undefined) h['reqid'] = validateU32(t.reqid, `templates[${i}].reqid`);
  if (t.mode !== undefined) h['mode'] = numberOf(XFRM_MODE, t.mode, `templates[${i}].mode`);
  if (t.share !== undefined) h['share'] = numberOf(XFRM_SHARE, t.share, `templates[${i}].share`);
  if (t.level !== undefined && t.level !== 'required' && t.level !== 'use') throw new ValidationError(`templates[${i}].level`, "must be 'required' or 'use'");
  h['optional'] = t.level === 'use' ? 1 : 0;
  return h as UserTmpl;
}

function policyAttrs(p: { ptype?: XfrmPolicyType | undefined; mark?: XfrmMarkSpec | undefined; ifId?: number | undefined }): XfrmAttrs {
  const a: XfrmAttrs = {};
  if (p.ptype !== undefined && p.ptype !== 'main') a.policyType = { type: numberOf(XFRM_POLICY_TYPE, p.ptype, 'ptype'), pad1: 0, reserved1: 0, reserved2: 0, pad2: 0 };
  if (p.mark) a.mark = markOf(p.mark, 'mark');
  if (p.ifId !== undefined) a.ifId = validateU32(p.ifId, 'ifId');
  return a;
}

function policyRequest(type: number, p: XfrmPolicySpec): Request {
  const h: Header = {};
  const family = putSelector(h, p.sel, AF_INET) || AF_INET;
  putLifetime(h, p.lifetime);
  h['dir'] = numberOf(XFRM_POLICY_DIR, p.dir, 'dir');
  if (p.priority !== undefined) h['priority'] = validateU32(p.priority, 'priority');
  if (p.index !== undefined) h['index'] = validateU32(p.index, 'index');
  if (p.action !== undefined) h['action'] = numberOf(XFRM_POLICY_ACTION, p.action, 'action');
  h['flags'] = flagsOf(XFRM_POLICY_FLAG, p.flags, 'flags');
  const a = policyAttrs(p);
  if (p.templates?.length) a.tmpl = p.templates.map((t, i) => templateOf(t, family, i));
  return request(policyInfoMessage, type, 0, h, a);
}

/** ip xfrm policy add SELECTOR dir DIR [ptype sub] [priority N] [action allow|block] [mark M] [if_id N] [tmpl ...] */
export function addPolicyRequest(p: XfrmPolicySpec): Request {
  return policyRequest(XFRM_MSG.NEWPOLICY, p);
}
/** ip xfrm policy update SELECTOR dir DIR ... (adds, or replaces the policy with this selector and direction) */
export function updatePolicyRequest(p: XfrmPolicySpec): Request {
  return policyRequest(XFRM_MSG.UPDPOLICY, p);
}

function policyIdRequest(type: number, p: XfrmPolicyId): Request {
  const h: Header = {};
  putSelector(h, p.sel, AF_INET);
  h['dir'] = numberOf(XFRM_POLICY_DIR, p.dir, 'dir');
  if (p.index !== undefined) h['index'] = validateU32(p.index, 'index');
  return request(policyIdMessage, type, 0, h, policyAttrs(p));
}
/** ip xfrm policy delete { SELECTOR | index N } dir DIR [ptype sub] [mark M] [if_id N] */
export function deletePolicyRequest(p: XfrmPolicyId): Request {
  return policyIdRequest(XFRM_MSG.DELPOLICY, p);
}
/** ip xfrm policy get { SELECTOR | index N } dir DIR [ptype sub] [mark M] [if_id N] */
export function getPolicyRequest(p: XfrmPolicyId): Request {
  return policyIdRequest(XFRM_MSG.GETPOLICY, p);
}
/** ip xfrm policy list (a GETPOLICY dump: every policy of both types) */
export function dumpPolicyRequest(): Request {
  return request(bareMessage, XFRM_MSG.GETPOLICY, 0, {});
}
/** ip xfrm policy flush [ptype sub] */
export function flushPolicyRequest(ptype?: XfrmPolicyType): Request {
  return request(bareMessage, XFRM_MSG.FLUSHPOLICY, 0, {}, policyAttrs({ ptype }));
}

/** A policy as the kernel reports it (`ip xfrm policy list`). */
export interface XfrmPolicy {
  selector: XfrmSelector;
  dir: XfrmDir | number;
  action: XfrmAction | number;
  priority: number;
  index: number;
  flags: (XfrmPolicyFlag | number)[];
  /** 'main' unless the kernel says otherwise. */
  ptype: XfrmPolicyType | number;
  lifetime: XfrmLifetime;
  current: XfrmCurrent;
  templates: XfrmTemplate[];
  mark?: { value: number; mask: number };
  ifId?: number;
  raw: { header: UserpolicyInfo; attrs: XfrmAttrs };
}

/** Decodes a policy message (XFRM_MSG_NEWPOLICY, UPDPOLICY); a short or malformed one is a CodecError. */
export function decodePolicy(m: RawMessage): XfrmPolicy {
  const { header: h, attrs: a } = decodePayload(policyInfoMessage, m.payload);
  const p: XfrmPolicy = {
    selector: getSelector(h),
    dir: nameOf(XFRM_POLICY_DIR, h.dir),
    action: nameOf(XFRM_POLICY_ACTION, h.action),
    priority: h.priority,
    index: h.index,
    flags: flagNames(XFRM_POLICY_FLAG, h.flags),
    ptype: nameOf(XFRM_POLICY_TYPE, a.policyType?.type ?? 0),
    lifetime: getLifetime(h),
    current: getCurrent(h),
    templates: (a.tmpl ?? []).map((t) => ({
      family: familyOf(t.family),
      src: getAddress(t, 'saddr', t.family),
      dst: getAddress(t, 'idDaddr', t.family),
      proto: nameOf(XFRM_PROTO, t.idProto),
      spi: t.idSpi,
      reqid: t.reqid,
      mode: nameOf(XFRM_MODE, t.mode),
      share: nameOf(XFRM_SHARE, t.share),
      optional: t.optional !== 0,
      aalgos: t.aalgos,
      ealgos: t.ealgos,
      calgos: t.calgos,
    })),
    raw: { header: h, attrs: a },
  };
  if (a.mark) p.mark = { value: a.mark.v, mask: a.mark.m };
  if (a.ifId !== undefined) p.ifId = a.ifId;
  return p;
}

// ------------------------------------------------------------ the handle

/** A NETLINK_XFRM socket: the IPsec SAs and policies of the netns it was opened in. */
export class Xfrm {
  /** Opens an XFRM socket in the calling thread's netns (`withNetns(ns, () => Xfrm.open())` for another one). */
  static open(opts: SocketOptions = {}): Xfrm {
    return new Xfrm(NetlinkSocket.open({ ...opts, protocol: NETLINK.XFRM, typeName: xfrmTypeName }));
  }

  /** `socket` must be a NETLINK_XFRM socket (or a fake one in tests). */
  constructor(readonly socket: NetlinkSocket) {}

  /** Closes the socket. */
  close(): void {
    this.socket.close();
  }

  /** Adds an SA; EEXIST when one with its ID exists. `ip xfrm state add ...` */
  stateAdd(s: XfrmStateSpec): void {
    this.socket.request(addStateRequest(s));
  }

  /** Replaces the SA with this ID (ESRCH when there is none). `ip xfrm state update ...` */
  stateUpdate(s: XfrmStateSpec): void {
    this.socket.request(updateStateRequest(s));
  }

  /** Reserves an SPI: the kernel makes a larval SA holding it and returns it. `ip xfrm state allocspi ...` */
  stateAllocSpi(s: XfrmAllocSpiSpec): XfrmState {
    const [m] = this.socket.request(allocSpiRequest(s));
    if (!m) throw new CodecError('XFRM_MSG_ALLOCSPI: no SA in the reply');
    return decodeState(m);
  }

  /** Deletes an SA (ESRCH when there is none). `ip xfrm state delete ID` */
  stateDelete(id: XfrmStateId): void {
    this.socket.request(deleteStateRequest(id));
  }

  /** One SA (ESRCH when there is none). `ip xfrm state get ID` */
  stateGet(id: XfrmStateId): XfrmState {
    const [m] = this.socket.request(getStateRequest(id));
    if (!m) throw new CodecError('XFRM_MSG_GETSA: no SA in the reply');
    return decodeState(m);
  }

  /** Every SA (of one protocol, within prefixes, when filtered). `ip xfrm state list` */
  stateList(filter: XfrmStateFilter = {}, opts: DumpOptions = {}): DumpList<XfrmState> {
    return this.socket.dump(dumpStateRequest(filter), (m) => (m.type === XFRM_MSG.NEWSA ? decodeState(m) : undefined), opts);
  }

  /** Deletes every SA (of one protocol). `ip xfrm state flush [proto P]` */
  stateFlush(proto?: XfrmProto | number): void {
    this.socket.request(flushStateRequest(proto));
  }

  /** Adds a policy; EEXIST when one with its selector and direction exists. `ip xfrm policy add ...` */
  policyAdd(p: XfrmPolicySpec): void {
    this.socket.request(addPolicyRequest(p));
  }

  /** Adds or replaces a policy. `ip xfrm policy update ...` */
  policyUpdate(p: XfrmPolicySpec): void {
    this.socket.request(updatePolicyRequest(p));
  }

  /** Deletes a policy (ENOENT when there is none). `ip xfrm policy delete ...` */
  policyDelete(id: XfrmPolicyId): void {
    this.socket.request(deletePolicyRequest(id));
  }

  /** One policy (ENOENT when there is none). `ip xfrm policy get ...` */
  policyGet(id: XfrmPolicyId): XfrmPolicy {
    const [m] = this.socket.request(getPolicyRequest(id));
    if (!m) throw new CodecError('XFRM_MSG_GETPOLICY: no policy in the reply');
    return decodePolicy(m);
  }

  /** Every policy, main and sub. `ip xfrm policy list` */
  policyList(opts: DumpOptions = {}): DumpList<XfrmPolicy> {
    return this.socket.dump(dumpPolicyRequest(), (m) => (m.type === XFRM_MSG.NEWPOLICY ? decodePolicy(m) : undefined), opts);
  }

  /** Deletes every policy of a type (main by default). `ip xfrm policy flush [ptype sub]` */
  policyFlush(ptype?: XfrmPolicyType): void {
    this.socket.request(flushPolicyRequest(ptype));
  }
}

