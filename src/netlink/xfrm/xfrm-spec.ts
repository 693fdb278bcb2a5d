/**
 * What XFRM states and policies share, in `ip xfrm`'s terms: protocol, mode, flag and direction
 * names; addresses as the four big-endian words of xfrm_address_t; selectors; lifetimes; keys and
 * algorithms; marks. Used by xfrm-state.ts and xfrm-policy.ts. Pure.
 */
import { ValidationError } from '../../errors.js';
import { ipBytes as parseIpBytes, formatIPv4, formatIPv6 } from '../../ip/bytes.js';
import { validateU32 } from '../core/validate.js';
import { parseCidr } from '../../ip/parse.js';
import { joinU64, splitU64, type XfrmAlgo } from './xfrm-schema.js';

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

/** Address families as the kernel numbers them. */
export const AF_INET = 2;
export const AF_INET6 = 10;
/** Selector protocols by name, for `proto tcp` and the like. */
const IP_PROTO: Record<string, number> = { icmp: 1, tcp: 6, udp: 17, gre: 47, esp: 50, ah: 51, icmpv6: 58, sctp: 132, udplite: 136 };

/** The name of a number in a table (the number itself when the table has none). */
export function nameOf<K extends string>(table: Readonly<Record<K, number>>, n: number): K | number {
  for (const k of Object.keys(table) as K[]) if (table[k] === n) return k;
  return n;
}
/** The number of a name in a table (a number passes through, checked): ValidationError for an unknown name. */
export function numberOf<K extends string>(table: Readonly<Record<K, number>>, v: K | number, field: string): number {
  if (typeof v === 'number') return validateU32(v, field, 0, 255);
  const n = table[v];
  if (n === undefined) throw new ValidationError(field, `unknown ${field} ${JSON.stringify(v)}; one of ${Object.keys(table).join(', ')}`);
  return n;
}
/** The bits of a list of flag names. */
export function flagsOf<K extends string>(table: Readonly<Record<K, number>>, v: readonly K[] | undefined, field: string): number {
  let f = 0;
  for (const k of v ?? []) f |= numberOf(table, k, field);
  return f;
}
/** The names of the bits set in `f` (an unknown bit as its number). */
export function flagNames<K extends string>(table: Readonly<Record<K, number>>, f: number): (K | number)[] {
  const out: (K | number)[] = [];
  for (let bit = 1; bit <= f && bit <= 0x80000000; bit *= 2) if (f & bit) out.push(nameOf(table, bit));
  return out;
}

// ------------------------------------------------------------ addresses

export type Header = Record<string, number>;

/** Writes an address as the four big-endian words PREFIX0..3 of a header being built; returns its family. */
export function putAddress(h: Header, p: string, text: string, field: string): 4 | 6 {
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
export function getAddress(fields: object, p: string, family: number): string {
  const h = fields as Readonly<Record<string, number>>;
  for (let i = 0; i < 4; i++) addrBuf.writeUInt32BE((h[`${p}${i}`] ?? 0) >>> 0, 4 * i);
  if (family === AF_INET && addrBuf.readUInt32BE(4) === 0 && addrBuf.readUInt32BE(8) === 0 && addrBuf.readUInt32BE(12) === 0) return formatIPv4(addrBuf);
  return formatIPv6(addrBuf);
}

/** An xfrm_address_t attribute (XFRMA_SRCADDR, XFRMA_COADDR) from text. */
export function addressBytes(text: string, field: string): Buffer {
  const b = parseIpBytes(text);
  if (!b) throw new ValidationError(field, `${JSON.stringify(text)} is not an IP address`);
  const out = Buffer.alloc(16);
  Buffer.from(b).copy(out);
  return out;
}

/** AF_INET or AF_INET6 of an address family 4 or 6, and back (another family stays a number). */
export const familyNumber = (f: 4 | 6): number => (f === 4 ? AF_INET : AF_INET6);
export const familyOf = (af: number): 4 | 6 | number => (af === AF_INET ? 4 : af === AF_INET6 ? 6 : af);

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
export function putSelector(h: Header, s: XfrmSelectorSpec | undefined, fallback: number): number {
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
export function getSelector(h: Readonly<Record<string, number>>, fallback = 0): XfrmSelector {
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

/** A u64 from a number or bigint; ValidationError outside 0..2^64-1. */
export function u64Of(v: number | bigint, field: string): bigint {
  const b = typeof v === 'bigint' ? v : Number.isSafeInteger(v) ? BigInt(v) : -1n;
  if (b < 0n || b > XFRM_INF) throw new ValidationError(field, `${String(v)} is not an integer in 0..2^64-1`);
  return b;
}

/** Writes the limits, with iproute2's defaults: no byte or packet limit, no expiry. */
export function putLifetime(h: Header, l: XfrmLifetimeSpec | undefined): void {
  for (const [k, f] of LIFETIME) {
    const v = l?.[k];
    splitU64(h, f, v !== undefined ? u64Of(v, `lifetime.${k}`) : k.startsWith('byte') || k.startsWith('packet') ? XFRM_INF : 0n);
  }
}

/** The limits in a decoded header. */
export function getLifetime(h: Readonly<Record<string, number>>): XfrmLifetime {
  return Object.fromEntries(LIFETIME.map(([k, f]) => [k, joinU64(h, f)])) as unknown as XfrmLifetime;
}
/** The usage so far in a decoded header. */
export function getCurrent(h: Readonly<Record<string, number>>): XfrmCurrent {
  return { bytes: joinU64(h, 'curBytes'), packets: joinU64(h, 'curPackets'), addTime: joinU64(h, 'curAddTime'), useTime: joinU64(h, 'curUseTime') };
}

// ------------------------------------------------------------ algorithms, marks

/** A key as bytes, or as text the way `ip xfrm` reads it: '0x' then hex digits, else the characters themselves. */
export type XfrmKey = Buffer | string;

/** The bytes of a key given as a Buffer, `0x` hex text, or plain text (as ip reads them). */
export function keyBytes(k: XfrmKey, field: string): Buffer {
  if (Buffer.isBuffer(k)) return k;
  if (typeof k !== 'string') throw new ValidationError(field, 'must be a Buffer or a string');
  if (/^0x/i.test(k)) {
    if (!/^0x([0-9a-f]{2})*$/i.test(k)) throw new ValidationError(field, `${JSON.stringify(k)} is not an even number of hex digits after 0x`);
    return Buffer.from(k.slice(2), 'hex');
  }
  return Buffer.from(k, 'utf8');
}

/** An algorithm struct from its name, key and (auth-trunc, aead) second length, checked. */
export function algo(name: string, key: XfrmKey | undefined, field: string, icvLen?: number): XfrmAlgo {
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
/** struct xfrm_mark from a spec: the mask defaults to every bit, as iproute2. */
export function markOf(m: XfrmMarkSpec, field: string): { v: number; m: number } {
  return { v: validateU32(m.value, `${field}.value`), m: m.mask === undefined ? 0xffffffff : validateU32(m.mask, `${field}.mask`) };
}
