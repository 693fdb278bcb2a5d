/**
 * Classifiers' options (TCA_OPTIONS of RTM_*TFILTER), one section per kind: u32 (raw keys and
 * `match ip ...` helpers), matchall, flower and bpf, each with its actions. Encoded as
 * iproute2's tc/f_*.c encode them, byte for byte; read as the kernel's dump functions write
 * them. Pure: a pinned bpf program is opened by Rtnl, which passes its fd here.
 */
import { CodecError, ValidationError } from '../../errors.js';
import { attr, be16, bytes, ipAddr, mac, nested, strz, u8, u16, u32, type Attrs, type Codec, type Schema } from '../core/attr.js';
import { TAIL, type WithTail } from '../core/message.js';
import { actionList, actionListAttrs, actionView, type ActionAttrs, type ActionSpec, type TcAction } from './tc-actions.js';
import { kernelPsched, type Psched } from './tc-rate.js';
import { validateMac, validateU32 } from '../core/validate.js';
import { parseCidr } from '../../ip/parse.js';
import { formatIPv4, formatIPv6, maskBytes, ipBytes } from '../../ip/bytes.js';

/** TCA_CLS_FLAGS_*: where a filter runs (skip_hw, skip_sw) and where the kernel put it (in_hw, not_in_hw). */
export const TCA_CLS_FLAGS = { SKIP_HW: 1, SKIP_SW: 2, IN_HW: 4, NOT_IN_HW: 8, VERBOSE: 16 } as const;

/** Offload flags shared by matchall, flower, bpf and u32: `skip_hw` or `skip_sw`. */
export interface OffloadSpec {
  skipHw?: boolean;
  skipSw?: boolean;
}
function offloadFlags(s: OffloadSpec): number {
  if (s.skipHw && s.skipSw) throw new ValidationError('filter', 'skip_hw and skip_sw are mutually exclusive');
  return (s.skipHw ? TCA_CLS_FLAGS.SKIP_HW : 0) | (s.skipSw ? TCA_CLS_FLAGS.SKIP_SW : 0);
}
/** The offload flags of a dumped filter. */
export interface OffloadView {
  skipHw: boolean;
  skipSw: boolean;
  /** The kernel's word: the filter is (or is not) in hardware. */
  inHw?: boolean;
}
function offloadView(flags: number | undefined): OffloadView {
  const f = flags ?? 0;
  const v: OffloadView = { skipHw: (f & TCA_CLS_FLAGS.SKIP_HW) !== 0, skipSw: (f & TCA_CLS_FLAGS.SKIP_SW) !== 0 };
  if (f & (TCA_CLS_FLAGS.IN_HW | TCA_CLS_FLAGS.NOT_IN_HW)) v.inHw = (f & TCA_CLS_FLAGS.IN_HW) !== 0;
  return v;
}

const views = (a: ActionAttrs[] | undefined, p: Psched): TcAction[] => (a ?? []).map((x) => actionView(x, p));

/** What every filter spec's options need from the request: its resolved mirred targets and the clock. */
export interface FilterContext {
  idx: Partial<Record<string, number>>;
  psched: Psched;
  /** The filter's ethertype in host order (0x0800 for `protocol ip`), 3 (ETH_P_ALL) by default. */
  protocol: number;
}

// ------------------------------------------------------------ u32

/** struct tc_u32_key. */
export interface U32Key {
  /** Network byte order values, as numbers. */
  mask: number;
  val: number;
  off: number;
  offmask: number;
}
/** struct tc_u32_sel with its keys. */
export interface U32Sel extends WithTail {
  /** TC_U32_TERMINAL (1), OFFSET (2), VAROFFSET (4), EAT (8). */
  flags: number;
  offshift: number;
  offmask: number;
  off: number;
  offoff: number;
  hoff: number;
  hmask: number;
  keys: U32Key[];
}
/** The codec of TCA_U32_SEL: the selector and its keys. */
export const u32Sel: Codec<U32Sel> = {
  size: (v) => 16 + 16 * v.keys.length + (v[TAIL]?.length ?? 0),
  write: (b, o, v) => {
    b.writeUInt8(v.flags, o);
    b.writeUInt8(v.offshift, o + 1);
    b.writeUInt8(v.keys.length, o + 2);
    b.writeUInt16BE(v.offmask, o + 4);
    b.writeUInt16LE(v.off, o + 6);
    b.writeInt16LE(v.offoff, o + 8);
    b.writeInt16LE(v.hoff, o + 10);
    b.writeUInt32BE(v.hmask >>> 0, o + 12);
    v.keys.forEach((k, i) => {
      const p = o + 16 + 16 * i;
      b.writeUInt32BE(k.mask >>> 0, p);
      b.writeUInt32BE(k.val >>> 0, p + 4);
      b.writeInt32LE(k.off, p + 8);
      b.writeInt32LE(k.offmask, p + 12);
    });
    v[TAIL]?.copy(b, o + 16 + 16 * v.keys.length);
  },
  read: (b, o, l) => {
    if (l < 16) throw new CodecError(`tc_u32_sel: ${l} bytes, needs 16`, o);
    const nkeys = b.readUInt8(o + 2);
    if (l < 16 + 16 * nkeys) throw new CodecError(`tc_u32_sel: ${nkeys} keys need ${16 + 16 * nkeys} bytes, ${l} present`, o);
    const keys: U32Key[] = [];
    for (let i = 0; i < nkeys; i++) {
      const p = o + 16 + 16 * i;
      keys.push({ mask: b.readUInt32BE(p), val: b.readUInt32BE(p + 4), off: b.readInt32LE(p + 8), offmask: b.readInt32LE(p + 12) });
    }
    const v: U32Sel = { flags: b.readUInt8(o), offshift: b.readUInt8(o + 1), offmask: b.readUInt16BE(o + 4), off: b.readUInt16LE(o + 6), offoff: b.readInt16LE(o + 8), hoff: b.readInt16LE(o + 10), hmask: b.readUInt32BE(o + 12), keys };
    if (l > 16 + 16 * nkeys) v[TAIL] = b.subarray(o + 16 + 16 * nkeys, o + l);
    return v;
  },
};

/** TCA_U32_* (`tc filter ... u32 ...`). */
export const u32Attrs = {
  // iproute2's order: what the arguments give (CLASSID, DIVISOR, LINK, INDEV, ACT, POLICE) then HASH, SEL, FLAGS.
  classid: attr(1, u32),
  divisor: attr(4, u32),
  link: attr(3, u32),
  indev: attr(8, strz),
  act: attr(7, actionList),
  police: attr(6, bytes),
  hash: attr(2, u32),
  sel: attr(5, u32Sel),
  flags: attr(11, u32),
  pcnt: attr(9, bytes),
  mark: attr(10, bytes),
} as const satisfies Schema;
export type U32Attrs = Attrs<typeof u32Attrs>;

/** One `match ip ...` of tc's u32 (IPv4 header fields, ports assuming a 20-byte header as tc does). */
export type U32Match =
  | { src: string }
  | { dst: string }
  | { protocol: number | 'tcp' | 'udp' | 'icmp' | 'sctp'; mask?: number }
  | { tos: number; mask?: number }
  | { sport: number; mask?: number }
  | { dport: number; mask?: number }
  | { u32: number; mask: number; at: number }
  | { u16: number; mask: number; at: number }
  | { u8: number; mask: number; at: number };

/** A u32 filter: `match` selectors (none: match everything), `flowid`, actions. */
export interface U32Spec extends OffloadSpec {
  /** Raw `match u32 VAL MASK at OFF` keys (values in host order, as tc takes them). */
  keys?: { val: number; mask: number; off?: number }[];
  /** `match ip src|dst|protocol|tos|sport|dport ...` and `match u8|u16|u32 ... at N`, in order; keys on one word merge as tc merges them. */
  match?: U32Match[];
  /** `flowid` / `classid`. */
  classid?: string | number;
  actions?: ActionSpec[];
  /** `indev DEV`: match only packets that came in on DEV. */
  indev?: string;
}
/** A u32 filter as dumped (u32 lists its hash tables too, with no keys). */
export interface U32View extends OffloadView {
  keys: U32Key[];
  classid?: number;
  actions: TcAction[];
  divisor?: number;
  indev?: string;
}

const IP_PROTOCOLS = { icmp: 1, tcp: 6, udp: 17, sctp: 132 } as const;

/** Adds a key as tc's pack_key does: a key on the same word and offset mask is merged into the earlier one. */
function packKey(keys: U32Key[], val: number, mask: number, off: number): void {
  const v = (val & mask) >>> 0;
  for (const k of keys) {
    if (k.off === off && k.offmask === 0) {
      if (((v ^ k.val) & mask & k.mask) !== 0) throw new ValidationError('u32 match', `two matches on offset ${off} contradict each other`);
      k.val = (k.val | v) >>> 0;
      k.mask = (k.mask | mask) >>> 0;
      return;
    }
  }
  if (keys.length >= 128) throw new ValidationError('u32 match', 'at most 128 keys');
  if (off % 4) throw new ValidationError('u32 match', `offset ${off} is not a multiple of 4`);
  keys.push({ val: v, mask: mask >>> 0, off, offmask: 0 });
}
/** A 16- or 8-bit value at a byte offset, placed in its 32-bit word as tc's pack_key16/pack_key8 place it. */
function packSmall(keys: U32Key[], bits: 8 | 16, val: number, mask: number, off: number): void {
  const max = bits === 8 ? 0xff : 0xffff;
  if (val > max || mask > max || val < 0 || mask < 0) throw new ValidationError('u32 match', `${val}/${mask} does not fit in ${bits} bits`);
  const shift = bits === 16 ? ((off & 3) === 0 ? 16 : 0) : [24, 16, 8, 0][off & 3] as number;
  packKey(keys, (val * 2 ** shift) >>> 0, (mask * 2 ** shift) >>> 0, off & ~3);
}
function packAddr(keys: U32Key[], cidr: string, off: number): void {
  const c = parseCidr(cidr, 'u32 match');
  if (c.family !== 4) throw new ValidationError('u32 match', `${cidr} is not IPv4 (match ip6 is not supported)`);
  const b = ipBytes(c.address) as number[];
  const val = ((b[0] as number) * 2 ** 24 + (b[1] as number) * 2 ** 16 + (b[2] as number) * 2 ** 8 + (b[3] as number)) >>> 0;
  packKey(keys, val, c.prefix ? (0xffffffff - (2 ** (32 - c.prefix) - 1)) >>> 0 : 0, off);
}

function u32Keys(s: U32Spec): U32Key[] {
  const keys: U32Key[] = [];
  for (const k of s.keys ?? []) packKey(keys, validateU32(k.val, 'u32 key value'), validateU32(k.mask, 'u32 key mask'), k.off ?? 0);
  for (const m of s.match ?? []) {
    if ('src' in m) packAddr(keys, m.src, 12);
    else if ('dst' in m) packAddr(keys, m.dst, 16);
    else if ('protocol' in m) {
      const n = typeof m.protocol === 'number' ? m.protocol : IP_PROTOCOLS[m.protocol];
      if (n === undefined) throw new ValidationError('u32 match', `unknown protocol ${JSON.stringify(m.protocol)}`);
      packSmall(keys, 8, n, m.mask ?? 0xff, 9);
    } else if ('tos' in m) packSmall(keys, 8, m.tos, m.mask ?? 0xff, 1);
    else if ('sport' in m) packSmall(keys, 16, m.sport, m.mask ?? 0xffff, 20);
    else if ('dport' in m) packSmall(keys, 16, m.dport, m.mask ?? 0xffff, 22);
    else if ('u32' in m) packKey(keys, validateU32(m.u32, 'u32 value'), validateU32(m.mask, 'u32 mask'), m.at);
    else if ('u16' in m) packSmall(keys, 16, m.u16, m.mask, m.at);
    else if ('u8' in m) packSmall(keys, 8, m.u8, m.mask, m.at);
  }
  // No selector at all is `match u32 0 0`: one key that matches every packet.
  if (keys.length === 0) keys.push({ val: 0, mask: 0, off: 0, offmask: 0 });
  return keys;
}

/** The TCA_OPTIONS of `tc filter ... u32 ...`. */
export function u32Options(s: U32Spec, ctx: FilterContext, classid: number | undefined): U32Attrs {
  const o: U32Attrs = {};
  if (classid !== undefined) o.classid = classid;
  if (s.indev !== undefined) o.indev = s.indev;
  if (s.actions?.length) o.act = actionListAttrs(s.actions, ctx.idx, ctx.psched);
  // tc marks the selector terminal when the filter names a class or has actions.
  const terminal = classid !== undefined || (s.actions?.length ?? 0) > 0;
  o.sel = { flags: terminal ? 1 : 0, offshift: 0, offmask: 0, off: 0, offoff: 0, hoff: 0, hmask: 0, keys: u32Keys(s) };
  const flags = offloadFlags(s);
  if (flags) o.flags = flags;
  return o;
}
function u32View(o: U32Attrs, p: Psched): U32View {
  const v: U32View = { keys: o.sel?.keys ?? [], actions: views(o.act, p), ...offloadView(o.flags) };
  if (o.classid !== undefined) v.classid = o.classid;
  if (o.divisor !== undefined) v.divisor = o.divisor;
  if (o.indev !== undefined) v.indev = o.indev;
  return v;
}

// ------------------------------------------------------------ matchall

/** TCA_MATCHALL_*, in the order tc sends them. */
export const matchallAttrs = {
  classid: attr(1, u32),
  act: attr(2, actionList),
  flags: attr(3, u32),
  pcnt: attr(4, bytes),
} as const satisfies Schema;
export type MatchallAttrs = Attrs<typeof matchallAttrs>;
/** A matchall filter: every packet gets the class and the actions. */
export interface MatchallSpec extends OffloadSpec {
  classid?: string | number;
  actions?: ActionSpec[];
}
/** A matchall filter as dumped. */
export interface MatchallView extends OffloadView {
  classid?: number;
  actions: TcAction[];
}
/** The TCA_OPTIONS of `tc filter ... matchall ...`. */
export function matchallOptions(s: MatchallSpec, ctx: FilterContext, classid: number | undefined): MatchallAttrs {
  const o: MatchallAttrs = {};
  if (classid !== undefined) o.classid = classid;
  if (s.actions?.length) o.act = actionListAttrs(s.actions, ctx.idx, ctx.psched);
  const flags = offloadFlags(s);
  if (flags) o.flags = flags;
  return o;
}
function matchallView(o: MatchallAttrs, p: Psched): MatchallView {
  const v: MatchallView = { actions: views(o.act, p), ...offloadView(o.flags) };
  if (o.classid !== undefined) v.classid = o.classid;
  return v;
}

// ------------------------------------------------------------ flower

/** TCA_FLOWER_*: the keys this library names, in the order its encoder sends them (tc sends them in the order of its arguments). */
export const flowerAttrs = {
  classid: attr(1, u32),
  indev: attr(2, strz),
  vlanId: attr(23, u16),
  vlanPrio: attr(24, u8),
  vlanEthType: attr(25, be16),
  ethDst: attr(4, mac),
  ethDstMask: attr(5, mac),
  ethSrc: attr(6, mac),
  ethSrcMask: attr(7, mac),
  ipProto: attr(9, u8),
  ipv4Dst: attr(12, ipAddr),
  ipv4DstMask: attr(13, ipAddr),
  ipv6Dst: attr(16, ipAddr),
  ipv6DstMask: attr(17, ipAddr),
  ipv4Src: attr(10, ipAddr),
  ipv4SrcMask: attr(11, ipAddr),
  ipv6Src: attr(14, ipAddr),
  ipv6SrcMask: attr(15, ipAddr),
  tcpDst: attr(19, be16),
  udpDst: attr(21, be16),
  sctpDst: attr(42, be16),
  tcpSrc: attr(18, be16),
  udpSrc: attr(20, be16),
  sctpSrc: attr(41, be16),
  tcpSrcMask: attr(35, be16),
  tcpDstMask: attr(36, be16),
  udpSrcMask: attr(37, be16),
  udpDstMask: attr(38, be16),
  sctpSrcMask: attr(39, be16),
  sctpDstMask: attr(40, be16),
  act: attr(3, actionList),
  flags: attr(22, u32),
  ethType: attr(8, be16),
  inHwCount: attr(85, u32),
} as const satisfies Schema;
export type FlowerAttrs = Attrs<typeof flowerAttrs>;

/** A flower filter: keys on the ethernet, VLAN, IP and transport headers (the ethertype is the filter's protocol). */
export interface FlowerSpec extends OffloadSpec {
  classid?: string | number;
  /** `indev DEV`. */
  indev?: string;
  /** With protocol 802.1q (or 802.1ad): the VLAN id, priority and inner ethertype. */
  vlanId?: number;
  vlanPrio?: number;
  vlanEthType?: 'ip' | 'ipv6' | number;
  /** `dst_mac` / `src_mac`, optionally with /prefix. */
  dstMac?: string;
  srcMac?: string;
  /** `ip_proto`: needs protocol ip or ipv6 (or vlanEthType). */
  ipProto?: 'tcp' | 'udp' | 'sctp' | 'icmp' | 'icmpv6' | number;
  /** Address with an optional /prefix (a mask attribute is always sent, as tc). */
  dstIp?: string;
  srcIp?: string;
  /** A port (needs ipProto tcp, udp or sctp). */
  dstPort?: number;
  srcPort?: number;
  actions?: ActionSpec[];
}
/** A flower filter as dumped: addresses with their prefix length, ports and ethertypes as numbers. */
export interface FlowerView extends OffloadView {
  classid?: number;
  indev?: string;
  ethType?: number;
  vlanId?: number;
  vlanPrio?: number;
  vlanEthType?: number;
  dstMac?: string;
  srcMac?: string;
  ipProto?: number;
  dstIp?: string;
  srcIp?: string;
  dstPort?: number;
  srcPort?: number;
  actions: TcAction[];
}

const ETHERTYPES = { ip: 0x0800, ipv6: 0x86dd } as const;
const FLOWER_PROTOS = { icmp: 1, tcp: 6, udp: 17, icmpv6: 58, sctp: 132 } as const;

function maskText(family: 4 | 6, prefix: number): string {
  const b = Uint8Array.from(maskBytes(new Array<number>(family === 4 ? 4 : 16).fill(0xff), prefix, 0));
  return family === 4 ? formatIPv4(b) : formatIPv6(b);
}
function macMask(text: string, field: string): [string, string] {
  const [addr, len] = text.split('/');
  const a = validateMac(addr, field);
  const bits = len === undefined ? 48 : validateU32(Number(len), `${field} prefix`, 0, 48);
  const m = maskBytes([0xff, 0xff, 0xff, 0xff, 0xff, 0xff], bits, 0);
  return [a, m.map((x) => x.toString(16).padStart(2, '0')).join(':')];
}

/** The TCA_OPTIONS of `tc filter ... protocol P flower ...`, keys in the order of the FlowerSpec fields. */
export function flowerOptions(s: FlowerSpec, ctx: FilterContext, classid: number | undefined): FlowerAttrs {
  const o: FlowerAttrs = {};
  const vlan = ctx.protocol === 0x8100 || ctx.protocol === 0x88a8;
  if (classid !== undefined) o.classid = classid;
  if (s.indev !== undefined) o.indev = s.indev;
  if ((s.vlanId !== undefined || s.vlanPrio !== undefined || s.vlanEthType !== undefined) && !vlan) throw new ValidationError('flower', 'VLAN keys need protocol 802.1q or 802.1ad');
  if (s.vlanId !== undefined) o.vlanId = validateU32(s.vlanId, 'flower vlanId', 0, 0xfff);
  if (s.vlanPrio !== undefined) o.vlanPrio = validateU32(s.vlanPrio, 'flower vlanPrio', 0, 7);
  let ethType = ctx.protocol;
  if (s.vlanEthType !== undefined) {
    ethType = typeof s.vlanEthType === 'number' ? validateU32(s.vlanEthType, 'flower vlanEthType', 0, 0xffff) : ETHERTYPES[s.vlanEthType];
    o.vlanEthType = ethType;
  }
  if (s.dstMac !== undefined) [o.ethDst, o.ethDstMask] = macMask(s.dstMac, 'flower dstMac');
  if (s.srcMac !== undefined) [o.ethSrc, o.ethSrcMask] = macMask(s.srcMac, 'flower srcMac');
  let proto: number | undefined;
  if (s.ipProto !== undefined) {
    if (ethType !== 0x0800 && ethType !== 0x86dd) throw new ValidationError('flower', 'ipProto needs protocol ip or ipv6');
    proto = typeof s.ipProto === 'number' ? validateU32(s.ipProto, 'flower ipProto', 0, 0xff) : FLOWER_PROTOS[s.ipProto];
    o.ipProto = proto;
  }
  const addr = (text: string, field: string): [string, string, 4 | 6] => {
    const c = parseCidr(text, field);
    const want = ethType === 0x0800 ? 4 : ethType === 0x86dd ? 6 : undefined;
    if (want !== undefined ? c.family !== want : ethType !== 3) throw new ValidationError(field, `${text} does not match the filter's protocol`);
    return [c.address, maskText(c.family, c.prefix), c.family];
  };
  if (s.dstIp !== undefined) {
    const [a, m, f] = addr(s.dstIp, 'flower dstIp');
    if (f === 4) [o.ipv4Dst, o.ipv4DstMask] = [a, m];
    else [o.ipv6Dst, o.ipv6DstMask] = [a, m];
  }
  if (s.srcIp !== undefined) {
    const [a, m, f] = addr(s.srcIp, 'flower srcIp');
    if (f === 4) [o.ipv4Src, o.ipv4SrcMask] = [a, m];
    else [o.ipv6Src, o.ipv6SrcMask] = [a, m];
  }
  const port = (v: number, field: string): number => {
    if (proto !== 6 && proto !== 17 && proto !== 132) throw new ValidationError(field, 'a port needs ipProto tcp, udp or sctp');
    return validateU32(v, field, 0, 0xffff);
  };
  if (s.dstPort !== undefined) o[proto === 6 ? 'tcpDst' : proto === 17 ? 'udpDst' : 'sctpDst'] = port(s.dstPort, 'flower dstPort');
  if (s.srcPort !== undefined) o[proto === 6 ? 'tcpSrc' : proto === 17 ? 'udpSrc' : 'sctpSrc'] = port(s.srcPort, 'flower srcPort');
  if (s.actions?.length) o.act = actionListAttrs(s.actions, ctx.idx, ctx.psched);
  // tc always sends the flags word, and the ethertype unless the protocol is `all`.
  o.flags = offloadFlags(s);
  if (ctx.protocol !== 3) o.ethType = ctx.protocol;
  return o;
}

function prefixOf(mask: string | undefined): number | undefined {
  if (mask === undefined) return undefined;
  const b = ipBytes(mask);
  if (!b) return undefined;
  let n = 0;
  for (const x of b) for (let i = 7; i >= 0; i--) if (x & (1 << i)) n++;
  return n;
}
function flowerView(o: FlowerAttrs, p: Psched): FlowerView {
  const v: FlowerView = { actions: views(o.act, p), ...offloadView(o.flags) };
  const set = <K extends keyof FlowerView>(k: K, x: FlowerView[K] | undefined): void => {
    if (x !== undefined) v[k] = x;
  };
  const ip = (a: string | undefined, m: string | undefined): string | undefined => (a === undefined ? undefined : `${a}/${prefixOf(m) ?? (a.includes(':') ? 128 : 32)}`);
  set('classid', o.classid);
  set('indev', o.indev);
  set('ethType', o.ethType);
  set('vlanId', o.vlanId);
  set('vlanPrio', o.vlanPrio);
  set('vlanEthType', o.vlanEthType);
  set('dstMac', o.ethDst);
  set('srcMac', o.ethSrc);
  set('ipProto', o.ipProto);
  set('dstIp', ip(o.ipv4Dst, o.ipv4DstMask) ?? ip(o.ipv6Dst, o.ipv6DstMask));
  set('srcIp', ip(o.ipv4Src, o.ipv4SrcMask) ?? ip(o.ipv6Src, o.ipv6SrcMask));
  set('dstPort', o.tcpDst ?? o.udpDst ?? o.sctpDst);
  set('srcPort', o.tcpSrc ?? o.udpSrc ?? o.sctpSrc);
  return v;
}

// ------------------------------------------------------------ bpf

/** struct sock_filter: one classic BPF instruction. */
export interface SockFilter {
  code: number;
  jt: number;
  jf: number;
  k: number;
}
const sockFilters: Codec<SockFilter[]> = {
  size: (v) => 8 * v.length,
  write: (b, o, v) =>
    v.forEach((x, i) => {
      b.writeUInt16LE(x.code & 0xffff, o + 8 * i);
      b.writeUInt8(x.jt & 0xff, o + 8 * i + 2);
      b.writeUInt8(x.jf & 0xff, o + 8 * i + 3);
      b.writeUInt32LE(x.k >>> 0, o + 8 * i + 4);
    }),
  read: (b, o, l) => {
    if (l % 8) throw new CodecError(`classic BPF program of ${l} bytes`, o);
    const out: SockFilter[] = [];
    for (let i = 0; i < l; i += 8) out.push({ code: b.readUInt16LE(o + i), jt: b.readUInt8(o + i + 2), jf: b.readUInt8(o + i + 3), k: b.readUInt32LE(o + i + 4) });
    return out;
  },
};

/** TCA_BPF_*, in the order tc sends them. */
export const bpfAttrs = {
  classid: attr(3, u32),
  act: attr(1, actionList),
  police: attr(2, bytes),
  opsLen: attr(4, u16),
  ops: attr(5, sockFilters),
  fd: attr(6, u32),
  name: attr(7, strz),
  flagsGen: attr(9, u32),
  flags: attr(8, u32),
  tag: attr(10, bytes),
  id: attr(11, u32),
} as const satisfies Schema;
export type BpfAttrs = Attrs<typeof bpfAttrs>;
/** TCA_BPF_FLAG_ACT_DIRECT: the program's return value is the verdict (`da`). */
export const TCA_BPF_FLAG_ACT_DIRECT = 1;

/**
 * A bpf filter: an eBPF program by fd or by pinned path (Rtnl opens a pinned one with
 * BPF_OBJ_GET), or a classic BPF program (`bytecode`).
 */
export interface BpfSpec extends OffloadSpec {
  /** An fd of a loaded BPF_PROG_TYPE_SCHED_CLS program; the kernel takes its own reference. */
  fd?: number;
  /** A program pinned in a bpf filesystem (`pinned PATH`): Rtnl opens it, sends its fd, closes it. */
  pinned?: string;
  /** The name the kernel shows (tc's is `FILE:[*fsobj]` for a pinned program). */
  name?: string;
  /** A classic BPF program (`bytecode`), instead of an eBPF one. */
  ops?: SockFilter[];
  /** `da`: the program's return value is the verdict. */
  directAction?: boolean;
  classid?: string | number;
  actions?: ActionSpec[];
}
/** A bpf filter as dumped. */
export interface BpfView extends OffloadView {
  name?: string;
  /** The loaded program's id and tag (hex), for eBPF. */
  id?: number;
  tag?: string;
  ops?: SockFilter[];
  directAction: boolean;
  classid?: number;
  actions: TcAction[];
}
/** The name tc gives a pinned program: the path's last part and `[*fsobj]`. */
export function pinnedName(path: string): string {
  return `${path.replace(/\/+$/, '').split('/').pop() ?? path}:[*fsobj]`;
}
/** The TCA_OPTIONS of `tc filter ... bpf ...`; `fd` or `ops` must be set (Rtnl turns `pinned` into an fd). */
export function bpfOptions(s: BpfSpec, ctx: FilterContext, classid: number | undefined): BpfAttrs {
  const o: BpfAttrs = {};
  if (classid !== undefined) o.classid = classid;
  if (s.actions?.length) o.act = actionListAttrs(s.actions, ctx.idx, ctx.psched);
  if (s.ops) {
    if (s.fd !== undefined || s.pinned !== undefined) throw new ValidationError('bpf', 'give a classic program (ops) or an eBPF one (fd, pinned), not both');
    if (s.ops.length === 0 || s.ops.length > 4096) throw new ValidationError('bpf ops', 'a classic program has 1 to 4096 instructions');
    o.opsLen = s.ops.length;
    o.ops = s.ops;
  } else {
    if (s.fd === undefined) throw new ValidationError('bpf', s.pinned !== undefined ? 'a pinned program is opened by Rtnl.filterAdd; here give its fd' : 'give fd, pinned or ops');
    o.fd = validateU32(s.fd, 'bpf fd', 0, 0x7fffffff);
    o.name = s.name ?? (s.pinned !== undefined ? pinnedName(s.pinned) : `fd:${s.fd}`);
  }
  const gen = offloadFlags(s);
  if (gen) o.flagsGen = gen;
  if (s.directAction) o.flags = TCA_BPF_FLAG_ACT_DIRECT;
  return o;
}
function bpfView(o: BpfAttrs, p: Psched): BpfView {
  const v: BpfView = { directAction: ((o.flags ?? 0) & TCA_BPF_FLAG_ACT_DIRECT) !== 0, actions: views(o.act, p), ...offloadView(o.flagsGen) };
  if (o.name !== undefined) v.name = o.name;
  if (o.id !== undefined) v.id = o.id;
  if (o.tag !== undefined) v.tag = o.tag.toString('hex');
  if (o.ops !== undefined) v.ops = o.ops;
  if (o.classid !== undefined) v.classid = o.classid;
  return v;
}

// ------------------------------------------------------------ by kind

/** TCA_OPTIONS codec of each classifier kind. */
export const filterOptionCodecs: Record<string, Codec<any>> = {
  u32: nested(u32Attrs),
  matchall: nested(matchallAttrs),
  flower: nested(flowerAttrs),
  bpf: nested(bpfAttrs),
};

/** Typed options of a decoded filter, by kind. */
export type FilterOptions = { kind: 'u32'; u32: U32Attrs } | { kind: 'matchall'; matchall: MatchallAttrs } | { kind: 'flower'; flower: FlowerAttrs } | { kind: 'bpf'; bpf: BpfAttrs };

/** The typed views a decoded filter carries, one per kind. */
export interface FilterViews {
  u32?: U32View;
  matchall?: MatchallView;
  flower?: FlowerView;
  bpf?: BpfView;
}

/** Adds the typed view of a decoded filter's options to `f`. */
export function filterViews(kind: string, opts: unknown, f: FilterViews, p: Psched = kernelPsched()): void {
  if (opts === undefined || Buffer.isBuffer(opts)) return;
  if (kind === 'u32') f.u32 = u32View(opts as U32Attrs, p);
  else if (kind === 'matchall') f.matchall = matchallView(opts as MatchallAttrs, p);
  else if (kind === 'flower') f.flower = flowerView(opts as FlowerAttrs, p);
  else if (kind === 'bpf') f.bpf = bpfView(opts as BpfAttrs, p);
}
