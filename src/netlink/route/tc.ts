/**
 * Traffic control objects over rtnetlink: qdiscs (RTM_*QDISC), classes (RTM_*TCLASS) and filters
 * (RTM_*TFILTER), each a struct tcmsg and TCA_* attributes. TCA_OPTIONS is typed by TCA_KIND:
 * the qdisc kinds of tc-qdiscs.ts, the classifiers of tc-filters.ts with the actions of
 * tc-actions.ts; other kinds keep their options as bytes. Pure.
 */
import { ValidationError } from '../../errors.js';
import { NLM_F } from '../core/constants.js';
import { attr, bytes, flag, strz, u8, u32, type Attrs, type Codec, type Schema } from '../core/attr.js';
import { decodePayload, request, struct, type MessageDef, type RawMessage, type Request } from '../core/message.js';
import { withIndexes, type LinkRef } from '../core/ref.js';
import { kernelPsched, type Psched } from './tc-rate.js';
import { kindIn, actionRefs, type ActionSpec } from './tc-actions.js';
import { optionsKey, qdiscOptionCodecs, qdiscOptions, qdiscViews, htbClassOptions, htbClassView, type HtbClassSpec, type HtbClassView, type QdiscKindSpec, type QdiscOptions, type QdiscViews } from './tc-qdiscs.js';
import {
  bpfOptions, filterOptionCodecs, filterViews, flowerOptions, matchallOptions, u32Options,
  type BpfSpec, type FilterContext, type FilterOptions, type FilterViews, type FlowerSpec, type MatchallSpec, type U32Spec,
} from './tc-filters.js';
import { validateU32 } from '../core/validate.js';

export * from './tc-qdiscs.js';
export * from './tc-filters.js';
export * from './tc-actions.js';

/** RTM_* message types of qdiscs, classes and filters. */
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

/** A filter's parent: as parseHandle, but 'ingress' and 'egress' are clsact's (or ingress's) two hooks, as in `tc filter add dev D ingress`. */
export function parseFilterParent(v: string | number): number {
  if (v === 'ingress') return makeHandle(0xffff, TC_H.MIN_INGRESS);
  if (v === 'egress') return makeHandle(0xffff, TC_H.MIN_EGRESS);
  return parseHandle(v, 'parent');
}

// ------------------------------------------------------------ message definitions

const base = {
  // tc puts TCA_CHAIN before TCA_KIND in a filter request; the kernel's dumps put it after.
  chain: attr(11, u32),
  kind: attr(1, strz),
  options: attr(2, bytes),
  stats: attr(3, bytes),
  xstats: attr(4, bytes),
  rate: attr(5, bytes),
  fcnt: attr(6, bytes),
  stats2: attr(7, bytes),
  stab: attr(8, bytes),
  dumpInvisible: attr(10, flag),
  hwOffload: attr(12, u8),
  ingressBlock: attr(13, u32),
  egressBlock: attr(14, u32),
  dumpFlags: attr(15, bytes),
  extWarnMsg: attr(16, strz),
} as const satisfies Schema;

/** TCA_OPTIONS codec of every typed kind: qdiscs and classes, then classifiers. */
const optionCodecs: Record<string, Codec<any>> = { ...qdiscOptionCodecs, ...filterOptionCodecs };

/** The attributes of a tc message; `options` is the typed options of a known kind, bytes otherwise. */
export type TcAttrs = Omit<Attrs<typeof base>, 'options'> & { options?: Buffer | object };

const defs = new Map<string, MessageDef<keyof TcMsg, Schema>>();
/** The message definition for a kind: TCA_OPTIONS typed when the kind is one this library knows. */
export function tcDefFor(kind: string | undefined): MessageDef<keyof TcMsg, Schema> {
  const k = kind !== undefined && optionCodecs[kind] ? kind : '';
  let d = defs.get(k);
  if (!d) {
    const c = optionCodecs[k];
    d = { header: tcmsg, attrs: c ? { ...base, options: attr(2, c) } : base };
    defs.set(k, d);
  }
  return d;
}
/** The definition of a tc message from its payload (its TCA_KIND picks the options schema). */
export function tcDefOf(payload: Buffer): MessageDef<keyof TcMsg, Schema> {
  return tcDefFor(payload.length >= tcmsg.size ? kindIn(payload, tcmsg.size, payload.length) : undefined);
}

// ------------------------------------------------------------ decoded objects

/** Typed options of a decoded tc object, under their kind's name (`fq_codel` under `fqCodel`, pfifo and bfifo under `fifo`). */
export type TcOptions = QdiscOptions | FilterOptions;

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
  /** The typed options of a kind this library knows. */
  options?: TcOptions;
  raw: { header: TcMsg; attrs: TcAttrs };
}

/** A qdisc as `tc qdisc show` lists it, with the typed view of its kind's options (`tbf`, `netem`, ...). */
export interface Qdisc extends TcObjectBase, QdiscViews {}
/** A class as `tc class show` lists it. */
export interface TcClass extends TcObjectBase {
  htb?: HtbClassView;
}
/** A filter as `tc filter show` lists it, with the typed view of its classifier (`u32`, `flower`, ...). */
export interface Filter extends TcObjectBase, FilterViews {
  priority: number;
  /** Host-order ethertype (3 = all, 0x800 = ip). */
  protocol: number;
  chain?: number;
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
  if (opts !== undefined && !Buffer.isBuffer(opts) && attrs.kind !== undefined) o.options = { kind: attrs.kind, [optionsKey(attrs.kind)]: opts } as TcOptions;
  return o;
}

/** Decodes an RTM_NEWQDISC / RTM_DELQDISC message. */
export function decodeQdisc(m: RawMessage): Qdisc {
  const q: Qdisc = decodeBase(m);
  qdiscViews(q.kind, q.raw.attrs.options, q);
  return q;
}

/** Decodes an RTM_NEWTCLASS / RTM_DELTCLASS message. */
export function decodeClass(m: RawMessage): TcClass {
  const c: TcClass = decodeBase(m);
  const o = c.options;
  if (o?.kind === 'htb') {
    const v = htbClassView(o.htb);
    if (v) c.htb = v;
  }
  return c;
}

/** Decodes an RTM_NEWTFILTER / RTM_DELTFILTER message. */
export function decodeFilter(m: RawMessage): Filter {
  const b = decodeBase(m);
  const info = b.raw.header.info;
  const f: Filter = { ...b, priority: info >>> 16, protocol: ((info & 0xff) << 8) | ((info >>> 8) & 0xff) };
  if (b.raw.attrs.chain !== undefined) f.chain = b.raw.attrs.chain;
  filterViews(f.kind, f.raw.attrs.options, f);
  return f;
}

// ------------------------------------------------------------ requests

export type { TbfSpec, HtbQdiscSpec, HtbClassSpec } from './tc-qdiscs.js';

/**
 * A qdisc to add, change, replace or delete. `parent` 'root' by default ('ingress'/'clsact' kinds
 * sit at ffff:fff1). The kind's options go under its name (`tbf`, `netem`, `fqCodel`, `fifo`, ...);
 * a kind this library does not type takes its TCA_OPTIONS as bytes.
 */
export type QdiscSpec = {
  dev: LinkRef;
  parent?: string | number;
  handle?: string | number;
} & (QdiscKindSpec | { kind: string; options?: Buffer } | { kind?: undefined });

/** A class to add, change, replace or delete (htb). */
export type ClassSpec = { dev: LinkRef; parent: string | number; classid: string | number } & ({ kind: 'htb'; htb: HtbClassSpec } | { kind?: undefined });

/**
 * A filter to add, change, replace or delete: the classifier's options under its name (`u32`,
 * `matchall`, `flower`, `bpf`), which also names the kind.
 */
export interface FilterSpec {
  dev: LinkRef;
  /** 'MAJOR:MINOR' ('ffff:' for an ingress qdisc), 'ingress' / 'egress' (clsact's hooks), 'root' or a number. */
  parent: string | number;
  /** Default 0 (the kernel picks on add). */
  priority?: number;
  /** Ethertype: 'all', 'ip', 'ipv6', 'arp', '802.1q', '802.1ad' or a number (default 'all' on add). */
  protocol?: 'all' | 'ip' | 'ipv6' | 'arp' | '802.1q' | '802.1ad' | number;
  handle?: number;
  /** `chain N`. */
  chain?: number;
  kind?: 'u32' | 'matchall' | 'flower' | 'bpf';
  u32?: U32Spec;
  matchall?: MatchallSpec;
  flower?: FlowerSpec;
  bpf?: BpfSpec;
}
export type { U32Spec, MatchallSpec, FlowerSpec, BpfSpec, ActionSpec };

const PROTOCOLS = { all: 0x0003, ip: 0x0800, ipv6: 0x86dd, arp: 0x0806, '802.1q': 0x8100, '802.1ad': 0x88a8 } as const;
const htons = (v: number): number => ((v & 0xff) << 8) | ((v >>> 8) & 0xff);

const NO_CLOCK: Psched = { t2us: 1, us2t: 1, clockRes: 1_000_000, hz: 0 };

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
    const o = qdiscOptions(s as { kind?: string } & Record<string, unknown>, p);
    if (o !== undefined) attrs.options = o as object;
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
/** tc qdisc change dev DEV ...: new options for the qdisc that is there (RTM_NEWQDISC without CREATE). */
export function changeQdiscRequest(s: QdiscSpec, p: Psched = kernelPsched()): Request {
  return qdiscRequest(RTM_TC.NEWQDISC, 0, s, p);
}
/** tc qdisc del dev DEV [root | ingress | clsact | parent P] [handle H] */
export function deleteQdiscRequest(s: QdiscSpec): Request {
  return qdiscRequest(RTM_TC.DELQDISC, 0, s, NO_CLOCK);
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
/** tc class change dev DEV ...: new options for a class that is there. */
export function changeClassRequest(s: ClassSpec, p: Psched = kernelPsched()): Request {
  return classRequest(RTM_TC.NEWTCLASS, 0, s, p);
}
/** tc class del dev DEV classid C */
export function deleteClassRequest(s: Omit<ClassSpec, 'kind' | 'htb'>): Request {
  return classRequest(RTM_TC.DELTCLASS, 0, s, NO_CLOCK);
}
/** tc class show dev DEV */
export function dumpClassRequest(index: number): Request {
  return request(tcDefFor(undefined), RTM_TC.GETTCLASS, 0, { ifindex: index });
}

function protocolOf(v: FilterSpec['protocol']): number {
  if (typeof v === 'number') return validateU32(v, 'protocol', 0, 0xffff);
  const n = PROTOCOLS[v ?? 'all'];
  if (n === undefined) throw new ValidationError('protocol', `unknown protocol ${JSON.stringify(v)}`);
  return n;
}

/** The filter's kind: given, or named by the options present. */
function filterKind(s: FilterSpec): FilterSpec['kind'] {
  return s.kind ?? (s.u32 ? 'u32' : s.matchall ? 'matchall' : s.flower ? 'flower' : s.bpf ? 'bpf' : undefined);
}

function filterRequest(type: number, flags: number, s: FilterSpec, p: Psched): Request {
  const kind = filterKind(s);
  const opts = kind !== undefined ? (s[kind] as { actions?: ActionSpec[]; classid?: string | number } | undefined) : undefined;
  return withIndexes({ dev: s.dev, ...actionRefs(opts?.actions) }, (idx) => {
    const prio = validateU32(s.priority ?? 0, 'priority', 0, 0xffff);
    // tc fills in `protocol all` only when it creates a filter; a change or delete names none unless told.
    const creates = type === RTM_TC.NEWTFILTER && (flags & NLM_F.CREATE) !== 0;
    const protocol = s.protocol !== undefined || creates ? protocolOf(s.protocol) : 0;
    const info = ((prio << 16) | htons(protocol)) >>> 0;
    const attrs: TcAttrs = {};
    if (s.chain !== undefined) attrs.chain = validateU32(s.chain, 'chain');
    if (kind !== undefined) attrs.kind = kind;
    if (opts) {
      const ctx: FilterContext = { idx, psched: p, protocol: protocol || PROTOCOLS.all };
      const classid = opts.classid !== undefined ? parseHandle(opts.classid, 'classid') : undefined;
      if (kind === 'u32') attrs.options = u32Options(opts as U32Spec, ctx, classid);
      else if (kind === 'matchall') attrs.options = matchallOptions(opts as MatchallSpec, ctx, classid);
      else if (kind === 'flower') attrs.options = flowerOptions(opts as FlowerSpec, ctx, classid);
      else if (kind === 'bpf') attrs.options = bpfOptions(opts as BpfSpec, ctx, classid);
    }
    return request(tcDefFor(kind), type, flags, { ifindex: idx.dev ?? 0, handle: s.handle ?? 0, parent: parseFilterParent(s.parent), info }, attrs as Attrs<Schema>);
  });
}
/** tc filter add dev DEV parent P [protocol PROTO] [prio N] [chain N] u32|matchall|flower|bpf ... [action ...] */
export function addFilterRequest(s: FilterSpec, p: Psched = kernelPsched()): Request {
  return filterRequest(RTM_TC.NEWTFILTER, NLM_F.CREATE | NLM_F.EXCL, s, p);
}
/** tc filter replace dev DEV ... */
export function replaceFilterRequest(s: FilterSpec, p: Psched = kernelPsched()): Request {
  return filterRequest(RTM_TC.NEWTFILTER, NLM_F.CREATE | NLM_F.REPLACE, s, p);
}
/** tc filter change dev DEV ... handle H ...: new options for a filter that is there. */
export function changeFilterRequest(s: FilterSpec, p: Psched = kernelPsched()): Request {
  return filterRequest(RTM_TC.NEWTFILTER, 0, s, p);
}
/** tc filter del dev DEV parent P [prio N] [protocol PROTO] [handle H KIND] */
export function deleteFilterRequest(s: Omit<FilterSpec, 'u32' | 'matchall' | 'flower' | 'bpf'>): Request {
  return filterRequest(RTM_TC.DELTFILTER, 0, s, NO_CLOCK);
}
/** tc filter show dev DEV [parent P] */
export function dumpFilterRequest(index: number, parent?: string | number): Request {
  return request(tcDefFor(undefined), RTM_TC.GETTFILTER, 0, { ifindex: index, parent: parent === undefined ? 0 : parseFilterParent(parent) });
}
