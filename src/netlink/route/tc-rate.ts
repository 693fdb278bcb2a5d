/**
 * tc's units and rate tables: rates, sizes and times as `tc` reads them, the kernel's packet
 * scheduler clock (/proc/net/psched), the 256-slot transmit-time tables (rtab, ptab, ctab) that
 * tbf, htb and police are sent, computed as iproute2's tc does (tc/tc_core.c), so the bytes
 * match, and the structs that carry rate specs (tc_tbf_qopt, tc_htb_opt, tc_police).
 */
import { readFileSync } from 'node:fs';
import { CodecError, ValidationError } from '../../errors.js';
import type { Codec } from '../core/attr.js';
import { TAIL, type WithTail } from '../core/message.js';

/** The kernel's PSCHED clock as /proc/net/psched reports it (four hex words). */
export interface Psched {
  /** Ticks to microseconds numerator (1000 on current kernels). */
  t2us: number;
  /** Microseconds to ticks denominator (64 on current kernels). */
  us2t: number;
  /** Clock resolution in Hz (1000000 on current kernels). */
  clockRes: number;
  /** The fourth word: the resolution of the high-resolution timer (NSEC_PER_SEC / hrtimer resolution). */
  hz: number;
}

const TIME_UNITS_PER_SEC = 1_000_000;

/** Parses the text of /proc/net/psched. */
export function parsePsched(text: string): Psched {
  const w = text.trim().split(/\s+/).map((x) => parseInt(x, 16));
  if (w.length < 3 || w.slice(0, 3).some((x) => !Number.isFinite(x) || x === 0)) throw new ValidationError('psched', `unreadable /proc/net/psched: ${JSON.stringify(text)}`);
  return { t2us: w[0] as number, us2t: w[1] as number, clockRes: w[2] as number, hz: w[3] ?? 0 };
}

let cached: Psched | undefined;
/** The running kernel's PSCHED clock, read once per process. */
export function kernelPsched(): Psched {
  return (cached ??= parsePsched(readFileSync('/proc/net/psched', 'utf8')));
}

/** Ticks per microsecond, as tc derives it (a nanosecond clock advertises t2us 1000 for old tools: taken as us2t). */
export function tickInUsec(p: Psched): number {
  const t2us = p.clockRes === 1_000_000_000 ? p.us2t : p.t2us;
  return (t2us / p.us2t) * (p.clockRes / TIME_UNITS_PER_SEC);
}

/** The HZ tc uses for htb's default buffers: the fourth psched word when the clock is in microseconds, else 100. */
export function pschedHz(p: Psched): number {
  return p.clockRes === 1_000_000 && p.hz ? p.hz : 100;
}

const u32 = (x: number): number => (x >= 0xffffffff ? 0xffffffff : x <= 0 ? 0 : Math.trunc(x));

/** Microseconds to kernel ticks; tc takes the time as a whole number of microseconds first. */
export function timeToTicks(usec: number, p: Psched): number {
  return u32(u32(usec) * tickInUsec(p));
}

/** Kernel ticks to microseconds (for showing a burst from a decoded buffer). */
export function ticksToTime(ticks: number, p: Psched): number {
  return ticks / tickInUsec(p);
}

/**
 * The ticks `size` bytes take at `rate` bytes/s (tc_calc_xmittime): size / rate first, then
 * times 10^6, in doubles, in that order (1992 bytes at 125000 B/s is 15935.999... µs, 15935 whole).
 */
export function xmitTime(rate: number, size: number, p: Psched): number {
  return timeToTicks(TIME_UNITS_PER_SEC * (size / rate), p);
}

/** The bytes sent at `rate` bytes/s in `ticks` (tc_calc_xmitsize). */
export function xmitSize(rate: number, ticks: number, p: Psched): number {
  return u32((rate * u32(ticks / tickInUsec(p))) / TIME_UNITS_PER_SEC);
}

/** TC_LINKLAYER_*: ethernet sizes count bytes, atm sizes whole 53-byte cells of 48 bytes of payload. */
export type LinkLayer = 'ethernet' | 'atm';
export const LINKLAYER = { ethernet: 1, atm: 2 } as const;

/** A rate table and the rate spec fields that go with it. */
export interface RateTable {
  /** 256 transmit times in ticks: slot i covers packets of up to (i + 1) << cellLog bytes. */
  table: number[];
  cellLog: number;
  /** TC_LINKLAYER_*. */
  linklayer: number;
}

/**
 * tc_calc_rtable: for each of 256 size cells, the ticks a packet of that size takes at `rate`
 * bytes/s (the 32-bit rate of the tc_ratespec). cellLog -1 picks the smallest cell that covers
 * `mtu` (2047 when 0) in 256 slots.
 */
export function rateTable(rate: number, p: Psched, opts: { cellLog?: number; mtu?: number; mpu?: number; linklayer?: LinkLayer } = {}): RateTable {
  const mtu = opts.mtu || 2047;
  let cellLog = opts.cellLog ?? -1;
  if (cellLog < 0) {
    cellLog = 0;
    while (mtu >>> cellLog > 255) cellLog++;
  }
  const mpu = opts.mpu ?? 0;
  const ll = opts.linklayer ?? 'ethernet';
  const table: number[] = [];
  for (let i = 0; i < 256; i++) {
    let sz = (i + 1) << cellLog;
    if (sz < mpu) sz = mpu;
    if (ll === 'atm') sz = Math.ceil(sz / 48) * 53;
    table.push(xmitTime(rate, sz, p));
  }
  return { table, cellLog, linklayer: LINKLAYER[ll] };
}

const RATE_UNITS: Record<string, number> = {
  bit: 1, kibit: 1024, kbit: 1000, mibit: 1024 ** 2, mbit: 1e6, gibit: 1024 ** 3, gbit: 1e9, tibit: 1024 ** 4, tbit: 1e12,
  bps: 8, kibps: 8 * 1024, kbps: 8000, mibps: 8 * 1024 ** 2, mbps: 8e6, gibps: 8 * 1024 ** 3, gbps: 8e9, tibps: 8 * 1024 ** 4, tbps: 8e12,
};

/**
 * A rate as tc reads it ('1mbit', '500kbit', '10MBps'; a bare number is bits/s) in bytes/s, the
 * unit of the kernel's tc_ratespec. Unit names are case-insensitive, as in tc: 'kbps' is kilobytes.
 */
export function parseRate(v: string | number): number {
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v <= 0) throw new ValidationError('rate', `${v} is not a positive rate in bytes/s`);
    return Math.trunc(v);
  }
  const m = /^\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*$/i.exec(v);
  const unit = m ? (m[2] as string).toLowerCase() : '';
  const mult = m ? (unit === '' ? 1 : RATE_UNITS[unit]) : undefined;
  if (!m || mult === undefined || Number(m[1]) <= 0) throw new ValidationError('rate', `${JSON.stringify(v)} is not a rate like 1mbit`);
  return Math.trunc((Number(m[1]) * mult) / 8);
}

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, m: 1024 ** 2, mb: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, kbit: 1024 / 8, mbit: 1024 ** 2 / 8, gbit: 1024 ** 3 / 8 };

/** A size as tc reads it ('32kb' = 32768, '1540', '1mbit' = 131072) in bytes. */
export function parseSize(v: string | number): number {
  if (typeof v === 'number') {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new ValidationError('size', `${v} is not a size in bytes`);
    return v;
  }
  const m = /^\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*$/i.exec(v);
  const mult = m ? SIZE_UNITS[(m[2] as string).toLowerCase()] : undefined;
  if (!m || mult === undefined) throw new ValidationError('size', `${JSON.stringify(v)} is not a size like 32kb`);
  return Math.trunc(Number(m[1]) * mult);
}

const TIME_UNITS: Record<string, number> = { '': 1, s: 1e6, sec: 1e6, secs: 1e6, ms: 1e3, msec: 1e3, msecs: 1e3, us: 1, usec: 1, usecs: 1 };
const NS_UNITS: Record<string, number> = { '': 1, ns: 1, nsec: 1, nsecs: 1, us: 1e3, usec: 1e3, usecs: 1e3, ms: 1e6, msec: 1e6, msecs: 1e6, s: 1e9, sec: 1e9, secs: 1e9 };

/** A time in the unit a bare number has, or text with a unit of `units` (case-insensitive, as tc's get_time). */
function parseTimeIn(v: string | number, units: Record<string, number>, unit: string): number {
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v < 0) throw new ValidationError('time', `${v} is not a time in ${unit}`);
    return Math.trunc(v);
  }
  const m = /^\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*$/i.exec(v);
  const mult = m ? units[(m[2] as string).toLowerCase()] : undefined;
  if (!m || mult === undefined) throw new ValidationError('time', `${JSON.stringify(v)} is not a time like 50ms`);
  return Math.trunc(Number(m[1]) * mult);
}

/** A time as tc reads it ('50ms', '1s', '400us'; a bare number is microseconds) in microseconds. */
export function parseTime(v: string | number): number {
  return parseTimeIn(v, TIME_UNITS, 'microseconds');
}

/** A time as tc's 64-bit times read it ('500ns', '2ms'; a bare number is nanoseconds) in nanoseconds. */
export function parseTimeNs(v: string | number): number {
  return parseTimeIn(v, NS_UNITS, 'nanoseconds');
}

const PERCENT_ONE = 0xffffffff;

/** A percentage as tc reads it ('1%', '0.5', 25) as the kernel's u32 fraction of 2^32 - 1 (netem's probabilities). */
export function parsePercent(v: string | number, field = 'percent'): number {
  const n = typeof v === 'number' ? v : /^\s*([0-9]*\.?[0-9]+)\s*%?\s*$/.exec(v)?.[1];
  const p = Number(n);
  if (n === undefined || !Number.isFinite(p) || p < 0 || p > 100) throw new ValidationError(field, `${JSON.stringify(v)} is not a percentage between 0 and 100`);
  // tc rounds to the nearest integer (rint): round half to even only matters at exact halves.
  const x = (p / 100) * PERCENT_ONE;
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 === 1 ? r - 1 : r;
}

/**
 * The percentage a u32 fraction of 2^32 - 1 stands for, to a millionth of a percent: the u32
 * steps are finer, so 1% reads back as 1 and encodes again to the same u32.
 */
export function percentOf(v: number): number {
  return Math.round((v / PERCENT_ONE) * 1e8) / 1e6;
}

// ------------------------------------------------------------ rate specs

/** struct tc_ratespec: how the kernel reads a rate table. */
export interface RateSpec {
  cellLog: number;
  /** TC_LINKLAYER_* (1 ethernet, 2 atm). */
  linklayer: number;
  overhead: number;
  cellAlign: number;
  mpu: number;
  /** Bytes/s (0xffffffff when a 64-bit attribute carries the rate). */
  rate: number;
}
const RATESPEC = 12;
function readRateSpec(b: Buffer, o: number): RateSpec {
  return { cellLog: b.readUInt8(o), linklayer: b.readUInt8(o + 1), overhead: b.readUInt16LE(o + 2), cellAlign: b.readInt16LE(o + 4), mpu: b.readUInt16LE(o + 6), rate: b.readUInt32LE(o + 8) };
}
function writeRateSpec(b: Buffer, o: number, r: RateSpec): void {
  b.writeUInt8(r.cellLog & 0xff, o);
  b.writeUInt8(r.linklayer & 0xff, o + 1);
  b.writeUInt16LE(r.overhead & 0xffff, o + 2);
  b.writeInt16LE(r.cellAlign, o + 4);
  b.writeUInt16LE(r.mpu & 0xffff, o + 6);
  b.writeUInt32LE(r.rate >>> 0, o + 8);
}
/** A rate spec of zeros: no rate (tbf's peakrate, police's peakrate when unused). */
export const zeroRateSpec = (): RateSpec => ({ cellLog: 0, linklayer: 0, overhead: 0, cellAlign: 0, mpu: 0, rate: 0 });

/** The rate spec that goes with a table tc computed: cell_align -1, as tc_calc_rtable sets it. */
export function rateSpecOf(t: RateTable, rate32: number, o: { overhead?: number; mpu?: number } = {}): RateSpec {
  return { cellLog: t.cellLog, linklayer: t.linklayer, overhead: o.overhead ?? 0, cellAlign: -1, mpu: o.mpu ?? 0, rate: rate32 };
}

type FieldKind = 'u32' | 's32' | 'spec';
/** The decoded value of a struct declared with rateStruct. */
export type RateStructOf<L extends readonly (readonly [string, FieldKind])[]> = { [E in L[number] as E[0]]: E[1] extends 'spec' ? RateSpec : number } & WithTail;

/**
 * A struct of u32/s32 fields and rate specs in the given order (tc_tbf_qopt, tc_htb_opt,
 * tc_police); a longer payload keeps its extra bytes, so it re-encodes unchanged.
 */
export function rateStruct<const L extends readonly (readonly [string, FieldKind])[]>(what: string, layout: L): Codec<RateStructOf<L>> {
  const plan: { name: string; kind: FieldKind; off: number }[] = [];
  let size = 0;
  for (const [name, kind] of layout) {
    plan.push({ name, kind, off: size });
    size += kind === 'spec' ? RATESPEC : 4;
  }
  return {
    size: (v) => size + (v[TAIL]?.length ?? 0),
    write: (b, o, v) => {
      const r = v as unknown as Record<string, RateSpec | number | undefined>;
      for (const f of plan) {
        const x = r[f.name];
        if (f.kind === 'spec') writeRateSpec(b, o + f.off, (x as RateSpec | undefined) ?? zeroRateSpec());
        else if (f.kind === 's32') b.writeInt32LE((x as number | undefined) ?? 0, o + f.off);
        else b.writeUInt32LE(((x as number | undefined) ?? 0) >>> 0, o + f.off);
      }
      v[TAIL]?.copy(b, o + size);
    },
    read: (b, o, l) => {
      if (l < size) throw new CodecError(`${what}: ${l} bytes, needs ${size}`, o);
      const v: Record<string, unknown> & WithTail = {};
      for (const f of plan) v[f.name] = f.kind === 'spec' ? readRateSpec(b, o + f.off) : f.kind === 's32' ? b.readInt32LE(o + f.off) : b.readUInt32LE(o + f.off);
      if (l > size) v[TAIL] = b.subarray(o + size, o + l);
      return v as RateStructOf<L>;
    },
  };
}

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
