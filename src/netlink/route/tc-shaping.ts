/**
 * The shaping qdiscs' options: tbf (a token bucket) and htb (a class tree with rates), qdisc and
 * class, encoded as tc/q_tbf.c and q_htb.c encode them (their rate tables too) and read as the
 * kernel's tbf_dump and htb_dump write them. Pure.
 */
import { ValidationError } from '../../errors.js';
import { attr, flag, u32, u64, type Attrs, type Schema } from '../core/attr.js';
import { struct, structCodec } from '../core/message.js';
import { parseRate, parseSize, parseTime, pschedHz, rateSpecOf, rateStruct, rateTable, rtab, xmitSize, xmitTime, zeroRateSpec, type LinkLayer, type Psched } from './tc-rate.js';

// ------------------------------------------------------------ tbf

/** struct tc_tbf_qopt. */
export const tbfQopt = rateStruct('tc_tbf_qopt', [['rate', 'spec'], ['peakrate', 'spec'], ['limit', 'u32'], ['buffer', 'u32'], ['mtu', 'u32']] as const);
export type TbfQopt = ReturnType<typeof tbfQopt.read>;

/** TCA_TBF_* (`tc qdisc ... tbf ...`). */
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

/** The TCA_OPTIONS of `tc qdisc ... tbf`. */
export function tbfOptions(s: TbfSpec, p: Psched): TbfAttrs {
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
  const tbl = { mtu, mpu: s.mpu ?? 0, linklayer: s.linklayer ?? 'ethernet' } as const;
  const spec = { overhead: s.overhead ?? 0, mpu: s.mpu ?? 0 };
  const rt = rateTable(r32, p, tbl);
  const parms: TbfQopt = { rate: rateSpecOf(rt, r32, spec), peakrate: zeroRateSpec(), limit, buffer: xmitTime(r32, buffer, p), mtu: 0 };
  const o: TbfAttrs = { parms, burst: buffer };
  if (rate64 > 0xffffffff) o.rate64 = BigInt(rate64);
  o.rtab = rt.table;
  if (prate64) {
    const p32 = Math.min(prate64, 0xffffffff);
    const pt = rateTable(p32, p, tbl);
    parms.peakrate = rateSpecOf(pt, p32, spec);
    parms.mtu = xmitTime(p32, mtu, p);
    if (prate64 > 0xffffffff) o.prate64 = BigInt(prate64);
    o.pburst = mtu;
    o.ptab = pt.table;
  }
  return o;
}

/** A tbf qdisc as dumped: the rate in bytes/s (the 64-bit attribute when present), burst and limit in bytes. */
export interface TbfView {
  rate: number;
  burst: number;
  limit: number;
  peakrate?: number;
}
/** The typed view of a dumped tbf's options; the kernel sends no TCA_TBF_BURST, so the burst is the bucket's time at the rate, as tc shows it. */
export function tbfView(o: TbfAttrs, p: Psched): TbfView | undefined {
  const q = o.parms;
  if (!q) return undefined;
  const rate = o.rate64 !== undefined ? Number(o.rate64) : q.rate.rate;
  const v: TbfView = { rate, burst: o.burst ?? (rate ? xmitSize(rate, q.buffer, p) : 0), limit: q.limit };
  if (q.peakrate.rate) v.peakrate = o.prate64 !== undefined ? Number(o.prate64) : q.peakrate.rate;
  return v;
}

// ------------------------------------------------------------ htb

/** struct tc_htb_opt. */
export const htbOpt = rateStruct('tc_htb_opt', [['rate', 'spec'], ['ceil', 'spec'], ['buffer', 'u32'], ['cbuffer', 'u32'], ['quantum', 'u32'], ['level', 'u32'], ['prio', 'u32']] as const);
export type HtbOpt = ReturnType<typeof htbOpt.read>;
/** struct tc_htb_glob. */
export const htbGlob = structCodec(struct([['version', 'u32'], ['rate2quantum', 'u32'], ['defcls', 'u32'], ['debug', 'u32'], ['directPkts', 'u32']] as const));
export type HtbGlob = ReturnType<typeof htbGlob.read>;

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

/** The TCA_OPTIONS of `tc qdisc ... htb`. */
export function htbQdiscOptions(h: HtbQdiscSpec = {}): HtbAttrs {
  const o: HtbAttrs = { init: { version: 3, rate2quantum: h.r2q ?? 10, defcls: h.defaultClass ?? 0, debug: 0, directPkts: 0 } };
  if (h.directQlen !== undefined) o.directQlen = h.directQlen;
  return o;
}

/** The TCA_OPTIONS of `tc class ... htb`. */
export function htbClassOptions(s: HtbClassSpec, p: Psched): HtbAttrs {
  const rate64 = parseRate(s.rate);
  const ceil64 = s.ceil !== undefined ? parseRate(s.ceil) : rate64;
  const mtu = s.mtu ?? 1600;
  const hz = pschedHz(p);
  const buffer = s.burst !== undefined ? parseSize(s.burst) : Math.trunc(rate64 / hz) + mtu;
  const cbuffer = s.cburst !== undefined ? parseSize(s.cburst) : Math.trunc(ceil64 / hz) + mtu;
  const r32 = Math.min(rate64, 0xffffffff);
  const c32 = Math.min(ceil64, 0xffffffff);
  const tbl = { mtu, mpu: s.mpu ?? 0, linklayer: s.linklayer ?? 'ethernet' } as const;
  const spec = { overhead: s.overhead ?? 0, mpu: s.mpu ?? 0 };
  const rt = rateTable(r32, p, tbl);
  const ct = rateTable(c32, p, tbl);
  const o: HtbAttrs = {
    parms: { rate: rateSpecOf(rt, r32, spec), ceil: rateSpecOf(ct, c32, spec), buffer: xmitTime(rate64, buffer, p), cbuffer: xmitTime(ceil64, cbuffer, p), quantum: s.quantum ?? 0, level: 0, prio: s.prio ?? 0 },
  };
  if (rate64 > 0xffffffff) o.rate64 = BigInt(rate64);
  if (ceil64 > 0xffffffff) o.ceil64 = BigInt(ceil64);
  o.rtab = rt.table;
  o.ctab = ct.table;
  return o;
}

/** An htb qdisc as dumped: the default class minor number. */
export interface HtbQdiscView {
  defaultClass: number;
  directQlen?: number;
}
/** An htb class as dumped: rates in bytes/s. */
export interface HtbClassView {
  rate: number;
  ceil: number;
  prio: number;
  quantum: number;
}
/** The typed view of a dumped htb qdisc's options. */
export function htbQdiscView(o: HtbAttrs): HtbQdiscView | undefined {
  if (!o.init) return undefined;
  const v: HtbQdiscView = { defaultClass: o.init.defcls };
  if (o.directQlen !== undefined) v.directQlen = o.directQlen;
  return v;
}
/** The typed view of an htb class's options. */
export function htbClassView(o: HtbAttrs): HtbClassView | undefined {
  const p = o.parms;
  if (!p) return undefined;
  return { rate: o.rate64 !== undefined ? Number(o.rate64) : p.rate.rate, ceil: o.ceil64 !== undefined ? Number(o.ceil64) : p.ceil.rate, prio: p.prio, quantum: p.quantum };
}
