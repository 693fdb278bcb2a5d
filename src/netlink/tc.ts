/**
 * Traffic control objects over rtnetlink: qdiscs (RTM_*QDISC), classes (RTM_*TCLASS) and filters
 * (RTM_*TFILTER), each a struct tcmsg and TCA_* attributes. TCA_OPTIONS is typed by TCA_KIND:
 * tbf, htb (qdisc and class), ingress and clsact (none), the u32 classifier with its actions
 * (mirred typed); other kinds keep their options as bytes. Pure.
 */
import { CodecError, ValidationError } from '../errors.js';
import { NLM_F } from './constants.js';
import { attr, bytes, flag, nested, nestedArray, rawAttrs, strz, u8, u32, u64, type Attrs, type Codec, type Schema } from './attr.js';
import { decodePayload, request, struct, structCodec, TAIL, type MessageDef, type RawMessage, type Request, type WithTail } from './message.js';
import { withIndexes, type LinkRef } from './ref.js';
import { kernelPsched, parseRate, parseSize, parseTime, rateTable, xmitTime, pschedHz, type LinkLayer, type Psched } from './tc-rate.js';
import { validateU32 } from './validate.js';

export const RTM_TC = { NEWQDISC: 36, DELQDISC: 37, GETQDISC: 38, NEWTCLASS: 40, DELTCLASS: 41, GETTCLASS: 42, NEWTFILTER: 44, DELTFILTER: 45, GETTFILTER: 46 } as const;

/** struct tcmsg. */
export const tcmsg = struct([['family', 'u8'], ['pad1', 'u8'], ['pad2', 'u16'], ['ifindex', 's32'], ['handle', 'u32'], ['parent', 'u32'], ['info', 'u32']] as const);
export type TcMsg = ReturnType<typeof tcmsg.read>;

/** TC_H_*: special handles. */
export const TC_H = { UNSPEC: 0, ROOT: 0xffffffff, INGRESS: 0xfffffff1, CLSACT: 0xfffffff1, MIN_INGRESS: 0xfff2, MIN_EGRESS: 0xfff3 } as const;

/** Makes a handle from its major and minor numbers (TC_H_MAKE). */
export const makeHandle = (major: number, minor: number): number => ((major & 0xffff) * 0x10000 + (minor & 0xffff)) >>> 0;

/** A handle as text: 'root', 'ingress' (ffff:fff1), 'none' (0), else 'MAJOR:MINOR' in hex as tc prints ('1:0', 'ffff:0', '1:10'). */
export function formatHandle(h: number): string {
  if (h === TC_H.ROOT) return 'root';
  if (h === TC_H.INGRESS) return 'ingress';
  if (h === 0) return 'none';
  return `${(h >>> 16).toString(16)}:${(h & 0xffff).toString(16)}`;
}

/** Parses a handle as tc writes it: 'root', 'ingress', 'clsact', 'none', 'MAJOR:', 'MAJOR:MINOR' (hex), or a number. */
export function parseHandle(v: string | number, field = 'handle'): number {
  if (typeof v === 'number') return validateU32(v, field);
  if (v === 'root') return TC_H.ROOT;
  if (v === 'ingress' || v === 'clsact') return TC_H.INGRESS;
  if (v === 'none') return 0;
  const m = /^([0-9a-f]{0,4}):([0-9a-f]{0,4})$/i.exec(v);
  if (!m) throw new ValidationError(field, `${JSON.stringify(v)} is not a handle like 1: or 1:10`);
  return makeHandle(parseInt(m[1] || '0', 16), parseInt(m[2] || '0', 16));
}

// ------------------------------------------------------------ structs

/** struct tc_ratespec. */
export interface RateSpec {
  cellLog: number;
  /** TC_LINKLAYER_* (1 ethernet, 2 atm). */
  linklayer: number;
  overhead: number;
  cellAlign: number;
  mpu: number;
  /** Bytes/s (0xffffffff when the 64-bit attribute carries the rate). */
  rate: number;
}
const RATESPEC = 12;
function readRateSpec(b: Buffer, o: number): RateSpec {
  return { cellLog: b.readUInt8(o), linklayer: b.readUInt8(o + 1), overhead: b.readUInt16LE(o + 2), cellAlign: b.readInt16LE(o + 4), mpu: b.readUInt16LE(o + 6), rate: b.readUInt32LE(o + 8) };
}
function writeRateSpec(b: Buffer, o: number, r: RateSpec): void {
  b.writeUInt8(r.cellLog, o);
  b.writeUInt8(r.linklayer, o + 1);
  b.writeUInt16LE(r.overhead, o + 2);
  b.writeInt16LE(r.cellAlign, o + 4);
  b.writeUInt16LE(r.mpu, o + 6);
  b.writeUInt32LE(r.rate >>> 0, o + 8);
}
const zeroSpec = (): RateSpec => ({ cellLog: 0, linklayer: 0, overhead: 0, cellAlign: 0, mpu: 0, rate: 0 });

/** A struct codec of rate specs followed by u32 fields; a longer payload keeps its extra bytes. */
function specStruct<S extends string, F extends string>(what: string, specs: readonly S[], fields: readonly F[]): Codec<Record<S, RateSpec> & Record<F, number> & WithTail> {
  const size = specs.length * RATESPEC + fields.length * 4;
  type V = Record<S, RateSpec> & Record<F, number> & WithTail;
  return {
    size: (v) => size + (v[TAIL]?.length ?? 0),
    write: (b, o, v) => {
      specs.forEach((s, i) => writeRateSpec(b, o + i * RATESPEC, v[s]));
      fields.forEach((f, i) => b.writeUInt32LE((v[f] ?? 0) >>> 0, o + specs.length * RATESPEC + 4 * i));
      v[TAIL]?.copy(b, o + size);
    },
    read: (b, o, l) => {
      if (l < size) throw new CodecError(`${what}: ${l} bytes, needs ${size}`, o);
      const v = {} as Record<string, unknown>;
      specs.forEach((s, i) => (v[s] = readRateSpec(b, o + i * RATESPEC)));
      fields.forEach((f, i) => (v[f] = b.readUInt32LE(o + specs.length * RATESPEC + 4 * i)));
      const out = v as V;
      if (l > size) out[TAIL] = b.subarray(o + size, o + l);
      return out;
    },
  };
}

/** struct tc_tbf_qopt. */
export const tbfQopt = specStruct('tc_tbf_qopt', ['rate', 'peakrate'] as const, ['limit', 'buffer', 'mtu'] as const);
export type TbfQopt = ReturnType<typeof tbfQopt.read>;
/** struct tc_htb_opt. */
export const htbOpt = specStruct('tc_htb_opt', ['rate', 'ceil'] as const, ['buffer', 'cbuffer', 'quantum', 'level', 'prio'] as const);
export type HtbOpt = ReturnType<typeof htbOpt.read>;
/** struct tc_htb_glob. */
export const htbGlob = structCodec(struct([['version', 'u32'], ['rate2quantum', 'u32'], ['defcls', 'u32'], ['debug', 'u32'], ['directPkts', 'u32']] as const));
export type HtbGlob = ReturnType<typeof htbGlob.read>;

/** A rate table: 256 u32 transmit times (any multiple of 4 bytes is read). */
export const rtab: Codec<number[]> = {
  size: (v) => 4 * v.length,
  write: (b, o, v) => v.forEach((x, i) => b.writeUInt32LE(x >>> 0, o + 4 * i)),
  read: (b, o, l) => {
    if (l % 4 !== 0) throw new CodecError(`rate table of ${l} bytes`, o);
    const out: number[] = [];
    for (let i = 0; i < l; i += 4) out.push(b.readUInt32LE(o + i));
    return out;
  },
};

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

/** struct tc_mirred (tc_gen then eaction and ifindex). */
export const tcMirred = structCodec(struct([['index', 'u32'], ['capab', 'u32'], ['action', 's32'], ['refcnt', 's32'], ['bindcnt', 's32'], ['eaction', 's32'], ['ifindex', 'u32']] as const));
export type TcMirred = ReturnType<typeof tcMirred.read>;

/** TC_ACT_*: what an action verdict does. */
export const TC_ACT = { unspec: -1, ok: 0, reclassify: 1, shot: 2, pipe: 3, stolen: 4, queued: 5, repeat: 6, redirect: 7, trap: 8 } as const;
/** TCA_{EGRESS,INGRESS}_{REDIR,MIRROR}. */
export const MIRRED_EACTION = { 'egress-redirect': 1, 'egress-mirror': 2, 'ingress-redirect': 3, 'ingress-mirror': 4 } as const;
export type MirredEaction = keyof typeof MIRRED_EACTION;

// ------------------------------------------------------------ schemas

export const tbfAttrs = {
  // iproute2's order: PARMS, BURST, RATE64, RTAB, PRATE64, PBURST, PTAB.
  parms: attr(1, tbfQopt),
  burst: attr(6, u32),
  rate64: attr(4, u64),
  rtab: attr(2, rtab),
  prate64: attr(5, u64),
  pburst: attr(7, u32),
  ptab: attr(3, rtab),
} as const satisfies Schema;
export type TbfAttrs = Attrs<typeof tbfAttrs>;

/** htb's attributes, for the qdisc (init, directQlen) and its classes (parms and tables). */
export const htbAttrs = {
  parms: attr(1, htbOpt),
  init: attr(2, htbGlob),
  directQlen: attr(5, u32),
  rate64: attr(6, u64),
  ceil64: attr(7, u64),
  rtab: attr(4, rtab),
  ctab: attr(3, rtab),
  offload: attr(9, flag),
} as const satisfies Schema;
export type HtbAttrs = Attrs<typeof htbAttrs>;

/** The mirred action's attributes (TCA_MIRRED_*): its parameters (tc_mirred) and the times kept raw. */
export const mirredAttrs = {
  tm: attr(1, bytes),
  parms: attr(2, tcMirred),
  blockid: attr(4, u32),
} as const satisfies Schema;
export type MirredAttrs = Attrs<typeof mirredAttrs>;

const actionBase = {
  kind: attr(1, strz),
  options: attr(2, bytes, { nestedFlag: true }),
  index: attr(3, u32),
  stats: attr(4, bytes),
  cookie: attr(6, bytes),
  flags: attr(7, bytes),
  hwStats: attr(8, bytes),
  usedHwStats: attr(9, bytes),
  inHwCount: attr(10, u32),
} as const satisfies Schema;
export const mirredActionAttrs = { ...actionBase, options: attr(2, nested(mirredAttrs), { nestedFlag: true }) } as const satisfies Schema;
/** One action (TCA_ACT_*): options typed for mirred, bytes for other kinds. */
export type ActionAttrs = Attrs<typeof actionBase> | (Attrs<typeof mirredActionAttrs> & { kind: 'mirred' });

function kindIn(b: Buffer, o: number, end: number, type = 1): string | undefined {
  for (const a of rawAttrs(b, o, end)) if ((a.type & 0x3fff) === type) return a.data.toString('utf8').replace(/\0.*$/s, '');
  return undefined;
}
const actionSchema = (kind: string | undefined): Schema => (kind === 'mirred' ? mirredActionAttrs : actionBase);

/** One action, its options schema chosen by its TCA_ACT_KIND. */
export const actionCodec: Codec<ActionAttrs> & { schemaAt(b: Buffer, o: number, l: number): Schema } = {
  size: (v) => nested(actionSchema(v.kind)).size(v as never),
  write: (b, o, v) => nested(actionSchema(v.kind)).write(b, o, v as never),
  read: (b, o, l) => nested(actionSchema(kindIn(b, o, o + l))).read(b, o, l) as ActionAttrs,
  schemaAt: (b, o, l) => actionSchema(kindIn(b, o, o + l)),
};
/** A list of actions (TCA_*_ACT): nests numbered 1, 2, ... in order of execution. */
export const actionList = Object.assign(nestedArray(actionCodec), {
  /** For tools that describe messages: the numbered entries, each an action. */
  schema: Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`action${i + 1}`, attr(i + 1, actionCodec)])) as Schema,
});

export const u32Attrs = {
  // iproute2's order for `u32 match ... flowid X action ...`: CLASSID, ACT, then SEL.
  classid: attr(1, u32),
  hash: attr(2, u32),
  link: attr(3, u32),
  divisor: attr(4, u32),
  indev: attr(8, strz),
  act: attr(7, actionList),
  police: attr(6, bytes),
  flags: attr(11, u32),
  sel: attr(5, u32Sel),
  pcnt: attr(9, bytes),
  mark: attr(10, bytes),
} as const satisfies Schema;
export type U32Attrs = Attrs<typeof u32Attrs>;

/** TCA_OPTIONS schema of each typed kind (ingress and clsact take none). */
const optionSchemas: Record<string, Schema> = { tbf: tbfAttrs, htb: htbAttrs, u32: u32Attrs };

const base = {
  kind: attr(1, strz),
  options: attr(2, bytes),
  stats: attr(3, bytes),
  xstats: attr(4, bytes),
  rate: attr(5, bytes),
  fcnt: attr(6, bytes),
  stats2: attr(7, bytes),
  stab: attr(8, bytes),
  dumpInvisible: attr(10, flag),
  chain: attr(11, u32),
  hwOffload: attr(12, u8),
  ingressBlock: attr(13, u32),
  egressBlock: attr(14, u32),
  dumpFlags: attr(15, bytes),
  extWarnMsg: attr(16, strz),
} as const satisfies Schema;
/** The attributes of a tc message; `options` is the typed nest of a known kind, bytes otherwise. */
export type TcAttrs = Omit<Attrs<typeof base>, 'options'> & { options?: Buffer | TbfAttrs | HtbAttrs | U32Attrs };

const defs = new Map<string, MessageDef<keyof TcMsg, Schema>>();
/** The message definition for a kind: TCA_OPTIONS typed when the kind is one this library knows. */
export function tcDefFor(kind: string | undefined): MessageDef<keyof TcMsg, Schema> {
  const k = kind !== undefined && optionSchemas[kind] ? kind : '';
  let d = defs.get(k);
  if (!d) {
    const s = optionSchemas[k];
    d = { header: tcmsg, attrs: s ? { ...base, options: attr(2, nested(s)) } : base };
    defs.set(k, d);
  }
  return d;
}
/** The definition of a tc message from its payload (its TCA_KIND picks the options schema). */
export function tcDefOf(payload: Buffer): MessageDef<keyof TcMsg, Schema> {
  return tcDefFor(payload.length >= tcmsg.size ? kindIn(payload, tcmsg.size, payload.length) : undefined);
}

// ------------------------------------------------------------ decoded objects

/** Typed options of a decoded tc object, by kind. */
export type TcOptions = { kind: 'tbf'; tbf: TbfAttrs } | { kind: 'htb'; htb: HtbAttrs } | { kind: 'u32'; u32: U32Attrs };

/** What qdiscs, classes and filters share. */
interface TcObjectBase {
  kind: string;
  /** ifindex of the device. */
  index: number;
  handle: number;
  parent: number;
  /** 'MAJOR:MINOR' (hex), 'root', 'ingress' or 'none'. */
  handleText: string;
  parentText: string;
  /** The typed options of a tbf, htb or u32 object. */
  options?: TcOptions;
  raw: { header: TcMsg; attrs: TcAttrs };
}

/** A qdisc as `tc qdisc show` lists it. */
export interface Qdisc extends TcObjectBase {
  /** For tbf: the rate in bytes/s (the 64-bit attribute when present), burst and limit in bytes. */
  tbf?: { rate: number; burst?: number; limit: number; peakrate?: number };
  /** For htb: the default class minor number. */
  htb?: { defaultClass: number; directQlen?: number };
}
/** A class as `tc class show` lists it. */
export interface TcClass extends TcObjectBase {
  htb?: { rate: number; ceil: number; prio: number; quantum: number };
}
/** A filter as `tc filter show` lists it. */
export interface Filter extends TcObjectBase {
  priority: number;
  /** Host-order ethertype (3 = all, 0x800 = ip). */
  protocol: number;
  chain?: number;
  /** For u32: its flowid and actions (mirred decoded). */
  u32?: { classid?: number; keys: U32Key[]; actions: { kind: string; mirred?: { eaction: MirredEaction | number; ifindex: number; action: number } }[] };
}

function decodeBase(m: RawMessage): TcObjectBase {
  const def = tcDefOf(m.payload);
  const { header, attrs } = decodePayload(def, m.payload) as { header: TcMsg; attrs: TcAttrs };
  const o: TcObjectBase = {
    kind: attrs.kind ?? '',
    index: header.ifindex,
    handle: header.handle,
    parent: header.parent,
    handleText: formatHandle(header.handle),
    parentText: formatHandle(header.parent),
    raw: { header, attrs },
  };
  const opts = attrs.options;
  if (opts !== undefined && !Buffer.isBuffer(opts)) o.options = { kind: attrs.kind, [attrs.kind as string]: opts } as TcOptions;
  return o;
}

/** Decodes an RTM_NEWQDISC / RTM_DELQDISC message. */
export function decodeQdisc(m: RawMessage): Qdisc {
  const q: Qdisc = decodeBase(m);
  const o = q.options;
  if (o?.kind === 'tbf' && o.tbf.parms) {
    const p = o.tbf.parms;
    q.tbf = { rate: o.tbf.rate64 !== undefined ? Number(o.tbf.rate64) : p.rate.rate, limit: p.limit };
    if (o.tbf.burst !== undefined) q.tbf.burst = o.tbf.burst;
    if (p.peakrate.rate) q.tbf.peakrate = o.tbf.prate64 !== undefined ? Number(o.tbf.prate64) : p.peakrate.rate;
  } else if (o?.kind === 'htb' && o.htb.init) {
    q.htb = { defaultClass: o.htb.init.defcls };
    if (o.htb.directQlen !== undefined) q.htb.directQlen = o.htb.directQlen;
  }
  return q;
}

/** Decodes an RTM_NEWTCLASS / RTM_DELTCLASS message. */
export function decodeClass(m: RawMessage): TcClass {
  const c: TcClass = decodeBase(m);
  const o = c.options;
  if (o?.kind === 'htb' && o.htb.parms) {
    const p = o.htb.parms;
    c.htb = { rate: o.htb.rate64 !== undefined ? Number(o.htb.rate64) : p.rate.rate, ceil: o.htb.ceil64 !== undefined ? Number(o.htb.ceil64) : p.ceil.rate, prio: p.prio, quantum: p.quantum };
  }
  return c;
}

/** Decodes an RTM_NEWTFILTER / RTM_DELTFILTER message. */
export function decodeFilter(m: RawMessage): Filter {
  const b = decodeBase(m);
  const f: Filter = { ...b, priority: b.raw.header.info >>> 16, protocol: ((b.raw.header.info & 0xff) << 8) | ((b.raw.header.info >>> 8) & 0xff) };
  if (b.raw.attrs.chain !== undefined) f.chain = b.raw.attrs.chain;
  const o = f.options;
  if (o?.kind === 'u32') {
    const actions = (o.u32.act ?? []).map((a) => {
      const out: NonNullable<Filter['u32']>['actions'][number] = { kind: a.kind ?? '' };
      if (a.kind === 'mirred' && a.options && !Buffer.isBuffer(a.options) && a.options.parms) {
        const p = a.options.parms;
        const ea = (Object.keys(MIRRED_EACTION) as MirredEaction[]).find((k) => MIRRED_EACTION[k] === p.eaction);
        out.mirred = { eaction: ea ?? p.eaction, ifindex: p.ifindex, action: p.action };
      }
      return out;
    });
    f.u32 = { keys: o.u32.sel?.keys ?? [], actions };
    if (o.u32.classid !== undefined) f.u32.classid = o.u32.classid;
  }
  return f;
}

// ------------------------------------------------------------ requests

/** Options of a tbf qdisc, in tc's terms. Rates in bytes/s or as tc text ('1mbit'); sizes in bytes or text ('32kb'); times in µs or text ('50ms'). */
export interface TbfSpec {
  rate: number | string;
  /** Bucket size (`burst`/`buffer`). */
  burst: number | string;
  /** Queue limit in bytes, or `latency` to derive it as tc does. */
  limit?: number | string;
  latency?: number | string;
  peakrate?: number | string;
  /** Peak bucket (`mtu`/`minburst`), required with peakrate. */
  mtu?: number | string;
  mpu?: number;
  overhead?: number;
  linklayer?: LinkLayer;
}
/** Options of an htb qdisc. */
export interface HtbQdiscSpec {
  /** Minor number of the default class (`default 10` is 0x10, as tc reads it in hex: pass 0x10). */
  defaultClass?: number;
  r2q?: number;
  directQlen?: number;
}
/** Options of an htb class. */
export interface HtbClassSpec {
  rate: number | string;
  /** Default: rate. */
  ceil?: number | string;
  /** Bytes; default rate / HZ + mtu, as tc. */
  burst?: number | string;
  cburst?: number | string;
  mtu?: number;
  mpu?: number;
  overhead?: number;
  prio?: number;
  quantum?: number;
  linklayer?: LinkLayer;
}

/** A qdisc to add, replace or delete. `parent` 'root' by default ('ingress'/'clsact' kinds sit at ffff:fff1). */
export type QdiscSpec = {
  dev: LinkRef;
  parent?: string | number;
  handle?: string | number;
} & ({ kind: 'tbf'; tbf: TbfSpec } | { kind: 'htb'; htb?: HtbQdiscSpec } | { kind: 'ingress' | 'clsact' } | { kind: string; options?: Buffer } | { kind?: undefined });

/** A class to add, replace or delete (htb). */
export type ClassSpec = { dev: LinkRef; parent: string | number; classid: string | number } & ({ kind: 'htb'; htb: HtbClassSpec } | { kind?: undefined });

/** One action of a filter. */
export type ActionSpec = { kind: 'mirred'; action: MirredEaction; dev: LinkRef; verdict?: keyof typeof TC_ACT };

/** A filter to add or delete: u32 with keys (none: match all) and actions. */
export interface FilterSpec {
  dev: LinkRef;
  parent: string | number;
  /** Default 0 (the kernel picks on add). */
  priority?: number;
  /** Ethertype: 'all', 'ip', 'ipv6' or a number (default 'all'). */
  protocol?: 'all' | 'ip' | 'ipv6' | 'arp' | '802.1q' | number;
  handle?: number;
  kind?: 'u32';
  u32?: {
    /** `match u32 VAL MASK at OFF` keys; none = one all-zero key, `match u32 0 0`. */
    keys?: { val: number; mask: number; off?: number }[];
    /** `flowid` / `classid`. */
    classid?: string | number;
    actions?: ActionSpec[];
  };
}

const PROTOCOLS = { all: 0x0003, ip: 0x0800, ipv6: 0x86dd, arp: 0x0806, '802.1q': 0x8100 } as const;
const htons = (v: number): number => ((v & 0xff) << 8) | ((v >>> 8) & 0xff);

function tbfOptions(s: TbfSpec, p: Psched): TbfAttrs {
  const rate64 = parseRate(s.rate);
  const buffer = parseSize(s.burst);
  const mtu = s.mtu !== undefined ? parseSize(s.mtu) : 0;
  const prate64 = s.peakrate !== undefined ? parseRate(s.peakrate) : 0;
  if (prate64 && !mtu) throw new ValidationError('tbf', 'mtu is required with peakrate');
  if ((s.limit === undefined) === (s.latency === undefined)) throw new ValidationError('tbf', 'give exactly one of limit and latency');
  let limit: number;
  if (s.limit !== undefined) limit = parseSize(s.limit);
  else {
    const lat = parseTime(s.latency as number | string);
    let lim = (rate64 * lat) / 1e6 + buffer;
    if (prate64) lim = Math.min(lim, (prate64 * lat) / 1e6 + mtu);
    limit = Math.min(Math.trunc(lim), 0xffffffff);
  }
  const r32 = Math.min(rate64, 0xffffffff);
  const rt = rateTable(r32, p, { mtu, mpu: s.mpu ?? 0, linklayer: s.linklayer ?? 'ethernet' });
  const rate: RateSpec = { cellLog: rt.cellLog, linklayer: rt.linklayer, overhead: s.overhead ?? 0, cellAlign: -1, mpu: s.mpu ?? 0, rate: r32 };
  const o: TbfAttrs = { parms: { rate, peakrate: zeroSpec(), limit, buffer: xmitTime(r32, buffer, p), mtu: 0 }, burst: buffer };
  if (rate64 > 0xffffffff) o.rate64 = BigInt(rate64);
  o.rtab = rt.table;
  if (prate64) {
    const p32 = Math.min(prate64, 0xffffffff);
    const pt = rateTable(p32, p, { mtu, mpu: s.mpu ?? 0, linklayer: s.linklayer ?? 'ethernet' });
    (o.parms as TbfQopt).peakrate = { cellLog: pt.cellLog, linklayer: pt.linklayer, overhead: s.overhead ?? 0, cellAlign: -1, mpu: s.mpu ?? 0, rate: p32 };
    (o.parms as TbfQopt).mtu = xmitTime(p32, mtu, p);
    if (prate64 > 0xffffffff) o.prate64 = BigInt(prate64);
    o.pburst = mtu;
    o.ptab = pt.table;
  }
  return o;
}

function htbClassOptions(s: HtbClassSpec, p: Psched): HtbAttrs {
  const rate64 = parseRate(s.rate);
  const ceil64 = s.ceil !== undefined ? parseRate(s.ceil) : rate64;
  const mtu = s.mtu ?? 1600;
  const hz = pschedHz(p);
  const buffer = s.burst !== undefined ? parseSize(s.burst) : Math.trunc(rate64 / hz) + mtu;
  const cbuffer = s.cburst !== undefined ? parseSize(s.cburst) : Math.trunc(ceil64 / hz) + mtu;
  const r32 = Math.min(rate64, 0xffffffff);
  const c32 = Math.min(ceil64, 0xffffffff);
  const ll = s.linklayer ?? 'ethernet';
  const rt = rateTable(r32, p, { mtu, mpu: s.mpu ?? 0, linklayer: ll });
  const ct = rateTable(c32, p, { mtu, mpu: s.mpu ?? 0, linklayer: ll });
  const spec = (t: typeof rt, r: number): RateSpec => ({ cellLog: t.cellLog, linklayer: t.linklayer, overhead: s.overhead ?? 0, cellAlign: -1, mpu: s.mpu ?? 0, rate: r });
  const o: HtbAttrs = {
    parms: { rate: spec(rt, r32), ceil: spec(ct, c32), buffer: xmitTime(rate64, buffer, p), cbuffer: xmitTime(ceil64, cbuffer, p), quantum: s.quantum ?? 0, level: 0, prio: s.prio ?? 0 },
  };
  if (rate64 > 0xffffffff) o.rate64 = BigInt(rate64);
  if (ceil64 > 0xffffffff) o.ceil64 = BigInt(ceil64);
  o.rtab = rt.table;
  o.ctab = ct.table;
  return o;
}

function qdiscRequest(type: number, flags: number, s: QdiscSpec, p: Psched): Request {
  return withIndexes({ dev: s.dev }, (idx) => {
    const attrs: TcAttrs = {};
    let parent = s.parent !== undefined ? parseHandle(s.parent, 'parent') : TC_H.ROOT;
    let handle = s.handle !== undefined ? parseHandle(s.handle, 'handle') : 0;
    if (s.kind === 'ingress' || s.kind === 'clsact') {
      parent = TC_H.INGRESS;
      handle = makeHandle(0xffff, 0);
    }
    if (s.kind !== undefined) attrs.kind = s.kind;
    if (s.kind === 'tbf' && 'tbf' in s) attrs.options = tbfOptions(s.tbf, p);
    else if (s.kind === 'htb') {
      const h = ('htb' in s ? s.htb : undefined) ?? {};
      const o: HtbAttrs = { init: { version: 3, rate2quantum: h.r2q ?? 10, defcls: h.defaultClass ?? 0, debug: 0, directPkts: 0 } };
      if (h.directQlen !== undefined) o.directQlen = h.directQlen;
      attrs.options = o;
    } else if ('options' in s && s.options) attrs.options = s.options;
    return request(tcDefFor(s.kind), type, flags, { ifindex: idx.dev ?? 0, handle, parent }, attrs as Attrs<Schema>);
  });
}

/** tc qdisc add dev DEV [parent P | root | ingress | clsact] [handle H] KIND [options] */
export function addQdiscRequest(s: QdiscSpec, p: Psched = kernelPsched()): Request {
  return qdiscRequest(RTM_TC.NEWQDISC, NLM_F.CREATE | NLM_F.EXCL, s, p);
}
/** tc qdisc replace dev DEV ... */
export function replaceQdiscRequest(s: QdiscSpec, p: Psched = kernelPsched()): Request {
  return qdiscRequest(RTM_TC.NEWQDISC, NLM_F.CREATE | NLM_F.REPLACE, s, p);
}
/** tc qdisc del dev DEV [root | ingress | clsact | parent P] [handle H] */
export function deleteQdiscRequest(s: QdiscSpec): Request {
  return qdiscRequest(RTM_TC.DELQDISC, 0, s, { t2us: 1, us2t: 1, clockRes: 1_000_000, hz: 0 });
}
/** tc qdisc show [dev DEV] */
export function dumpQdiscRequest(index = 0): Request {
  return request(tcDefFor(undefined), RTM_TC.GETQDISC, 0, { ifindex: index });
}

function classRequest(type: number, flags: number, s: ClassSpec, p: Psched): Request {
  return withIndexes({ dev: s.dev }, (idx) => {
    const attrs: TcAttrs = {};
    if (s.kind !== undefined) attrs.kind = s.kind;
    if (s.kind === 'htb') attrs.options = htbClassOptions(s.htb, p);
    return request(tcDefFor(s.kind), type, flags, { ifindex: idx.dev ?? 0, handle: parseHandle(s.classid, 'classid'), parent: parseHandle(s.parent, 'parent') }, attrs as Attrs<Schema>);
  });
}
/** tc class add dev DEV parent P classid C htb rate R [ceil C] [burst B] [cburst B] [prio N] [quantum N] */
export function addClassRequest(s: ClassSpec, p: Psched = kernelPsched()): Request {
  return classRequest(RTM_TC.NEWTCLASS, NLM_F.CREATE | NLM_F.EXCL, s, p);
}
/** tc class replace dev DEV ... */
export function replaceClassRequest(s: ClassSpec, p: Psched = kernelPsched()): Request {
  return classRequest(RTM_TC.NEWTCLASS, NLM_F.CREATE | NLM_F.REPLACE, s, p);
}
/** tc class del dev DEV classid C */
export function deleteClassRequest(s: Omit<ClassSpec, 'kind' | 'htb'>): Request {
  return classRequest(RTM_TC.DELTCLASS, 0, s, { t2us: 1, us2t: 1, clockRes: 1_000_000, hz: 0 });
}
/** tc class show dev DEV */
export function dumpClassRequest(index: number): Request {
  return request(tcDefFor(undefined), RTM_TC.GETTCLASS, 0, { ifindex: index });
}

function protocolOf(v: FilterSpec['protocol']): number {
  if (v === undefined) return PROTOCOLS.all;
  if (typeof v === 'number') return validateU32(v, 'protocol', 0, 0xffff);
  const n = PROTOCOLS[v];
  if (n === undefined) throw new ValidationError('protocol', `unknown protocol ${JSON.stringify(v)}`);
  return n;
}

function filterRequest(type: number, flags: number, s: FilterSpec): Request {
  const redirect = s.u32?.actions?.map((a) => a.dev) ?? [];
  const refs: Record<string, LinkRef | undefined> = { dev: s.dev };
  redirect.forEach((r, i) => (refs[`action${i}`] = r));
  return withIndexes(refs, (idx) => {
    const prio = validateU32(s.priority ?? 0, 'priority', 0, 0xffff);
    const info = ((prio << 16) | htons(type === RTM_TC.DELTFILTER && s.protocol === undefined ? 0 : protocolOf(s.protocol))) >>> 0;
    const attrs: TcAttrs = {};
    const kind = s.kind ?? (s.u32 ? 'u32' : undefined);
    if (kind !== undefined) attrs.kind = kind;
    if (kind === 'u32' && s.u32) {
      const u = s.u32;
      const o: U32Attrs = {};
      if (u.classid !== undefined) o.classid = parseHandle(u.classid, 'classid');
      if (u.actions?.length) {
        o.act = u.actions.map((a, i): ActionAttrs => {
          if (a.kind !== 'mirred') throw new ValidationError('action', `unsupported action ${JSON.stringify((a as { kind: unknown }).kind)}`);
          const eaction = MIRRED_EACTION[a.action];
          if (eaction === undefined) throw new ValidationError('mirred', `unknown action ${JSON.stringify(a.action)}`);
          const verdict = a.verdict !== undefined ? TC_ACT[a.verdict] : eaction === 1 || eaction === 3 ? TC_ACT.stolen : TC_ACT.pipe;
          return { kind: 'mirred', options: { parms: { index: 0, capab: 0, action: verdict, refcnt: 0, bindcnt: 0, eaction, ifindex: idx[`action${i}`] ?? 0 } } };
        });
      }
      const keys = (u.keys?.length ? u.keys : [{ val: 0, mask: 0, off: 0 }]).map((k) => ({ mask: k.mask >>> 0, val: (k.val & k.mask) >>> 0, off: k.off ?? 0, offmask: 0 }));
      o.sel = { flags: 1, offshift: 0, offmask: 0, off: 0, offoff: 0, hoff: 0, hmask: 0, keys };
      attrs.options = o;
    }
    return request(tcDefFor(kind), type, flags, { ifindex: idx.dev ?? 0, handle: s.handle ?? 0, parent: parseHandle(s.parent, 'parent'), info }, attrs as Attrs<Schema>);
  });
}
/** tc filter add dev DEV parent P [protocol all] [prio N] u32 match u32 0 0 [flowid C] [action mirred egress redirect dev IFB] */
export function addFilterRequest(s: FilterSpec): Request {
  return filterRequest(RTM_TC.NEWTFILTER, NLM_F.CREATE | NLM_F.EXCL, s);
}
/** tc filter replace dev DEV ... */
export function replaceFilterRequest(s: FilterSpec): Request {
  return filterRequest(RTM_TC.NEWTFILTER, NLM_F.CREATE | NLM_F.REPLACE, s);
}
/** tc filter del dev DEV parent P [prio N] [protocol PROTO] */
export function deleteFilterRequest(s: Omit<FilterSpec, 'u32' | 'kind'>): Request {
  return filterRequest(RTM_TC.DELTFILTER, 0, s);
}
/** tc filter show dev DEV [parent P] */
export function dumpFilterRequest(index: number, parent?: string | number): Request {
  return request(tcDefFor(undefined), RTM_TC.GETTFILTER, 0, { ifindex: index, parent: parent === undefined ? 0 : parseHandle(parent, 'parent') });
}

