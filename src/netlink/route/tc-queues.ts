/**
 * The queueing qdiscs' options: fq_codel, fq, sfq, prio and the pfifo/bfifo limits, encoded as
 * tc/q_*.c encode them and read as the kernel's *_dump functions write them. Pure.
 */
import { CodecError, ValidationError } from '../../errors.js';
import { attr, bytes, flag, nested, u8, u32, type Attrs, type Codec, type Schema } from '../core/attr.js';
import { struct, structCodec, structThen, TAIL, type WithTail } from '../core/message.js';
import { parseRate, parseSize, parseTime, parseTimeNs } from './tc-rate.js';
import { validateU32 } from '../core/validate.js';

// ------------------------------------------------------------ fq_codel

/** TCA_FQ_CODEL_*, in the order tc sends them. */
export const fqCodelAttrs = {
  limit: attr(2, u32),
  flows: attr(5, u32),
  quantum: attr(6, u32),
  interval: attr(3, u32),
  target: attr(1, u32),
  ecn: attr(4, u32),
  ceThreshold: attr(7, u32),
  ceThresholdMask: attr(11, u8),
  ceThresholdSelector: attr(10, u8),
  memoryLimit: attr(9, u32),
  dropBatchSize: attr(8, u32),
} as const satisfies Schema;
export type FqCodelAttrs = Attrs<typeof fqCodelAttrs>;

/** Options of an fq_codel qdisc (`tc qdisc ... fq_codel ...`); times in µs or text ('5ms'). */
export interface FqCodelSpec {
  /** Packets. */
  limit?: number;
  flows?: number;
  /** Bytes dequeued per round. */
  quantum?: number;
  target?: number | string;
  interval?: number | string;
  /** Mark with ECN instead of dropping (`ecn` / `noecn`). */
  ecn?: boolean;
  ceThreshold?: number | string;
  /** `ce_threshold_selector VALUE/MASK`: which packets ceThreshold applies to. */
  ceThresholdSelector?: { value: number; mask: number };
  memoryLimit?: number | string;
  dropBatch?: number;
}
/** An fq_codel qdisc as dumped (times in µs). */
export interface FqCodelView {
  limit?: number;
  flows?: number;
  quantum?: number;
  target?: number;
  interval?: number;
  ecn?: boolean;
  ceThreshold?: number;
  ceThresholdSelector?: { value: number; mask: number };
  memoryLimit?: number;
  dropBatch?: number;
}

/** The TCA_OPTIONS of `tc qdisc ... fq_codel`: tc leaves out what is zero or not given. */
export function fqCodelOptions(s: FqCodelSpec = {}): FqCodelAttrs {
  const o: FqCodelAttrs = {};
  if (s.limit) o.limit = validateU32(s.limit, 'fq_codel limit');
  if (s.flows) o.flows = validateU32(s.flows, 'fq_codel flows');
  if (s.quantum) o.quantum = validateU32(s.quantum, 'fq_codel quantum');
  if (s.interval !== undefined && parseTime(s.interval)) o.interval = parseTime(s.interval);
  if (s.target !== undefined && parseTime(s.target)) o.target = parseTime(s.target);
  if (s.ecn !== undefined) o.ecn = s.ecn ? 1 : 0;
  if (s.ceThreshold !== undefined) o.ceThreshold = parseTime(s.ceThreshold);
  if (s.ceThresholdSelector) {
    o.ceThresholdMask = validateU32(s.ceThresholdSelector.mask, 'ceThresholdSelector mask', 0, 0xff);
    o.ceThresholdSelector = validateU32(s.ceThresholdSelector.value, 'ceThresholdSelector value', 0, 0xff);
  }
  if (s.memoryLimit !== undefined) o.memoryLimit = parseSize(s.memoryLimit);
  if (s.dropBatch) o.dropBatchSize = validateU32(s.dropBatch, 'fq_codel dropBatch');
  return o;
}
/** The typed view of a dumped fq_codel's options. */
export function fqCodelView(o: FqCodelAttrs): FqCodelView {
  const v: FqCodelView = {};
  if (o.limit !== undefined) v.limit = o.limit;
  if (o.flows !== undefined) v.flows = o.flows;
  if (o.quantum !== undefined) v.quantum = o.quantum;
  if (o.target !== undefined) v.target = o.target;
  if (o.interval !== undefined) v.interval = o.interval;
  if (o.ecn !== undefined) v.ecn = o.ecn !== 0;
  if (o.ceThreshold !== undefined) v.ceThreshold = o.ceThreshold;
  if (o.ceThresholdSelector !== undefined || o.ceThresholdMask !== undefined) v.ceThresholdSelector = { value: o.ceThresholdSelector ?? 0, mask: o.ceThresholdMask ?? 0 };
  if (o.memoryLimit !== undefined) v.memoryLimit = o.memoryLimit;
  if (o.dropBatchSize !== undefined) v.dropBatch = o.dropBatchSize;
  return v;
}
// ------------------------------------------------------------ prio

/** struct tc_prio_qopt: the band count and the priority-to-band map of 16 bytes. */
export interface PrioQopt extends WithTail {
  bands: number;
  priomap: number[];
}
/** The codec of tc_prio_qopt (prio's options, fq's TCA_FQ_PRIOMAP). */
export const prioQopt: Codec<PrioQopt> = {
  size: (v) => 20 + (v[TAIL]?.length ?? 0),
  write: (b, o, v) => {
    b.writeInt32LE(v.bands, o);
    for (let i = 0; i < 16; i++) b.writeUInt8((v.priomap[i] ?? 0) & 0xff, o + 4 + i);
    v[TAIL]?.copy(b, o + 20);
  },
  read: (b, o, l) => {
    if (l < 20) throw new CodecError(`tc_prio_qopt: ${l} bytes, needs 20`, o);
    const v: PrioQopt = { bands: b.readInt32LE(o), priomap: [...b.subarray(o + 4, o + 20)] };
    if (l > 20) v[TAIL] = b.subarray(o + 20, o + l);
    return v;
  },
};
/** TCA_PRIO_*: inside an empty nest of type TCA_OPTIONS that tc puts after the struct (addattr_nest_compat). */
export const prioNestAttrs = { mq: attr(1, flag) } as const satisfies Schema;
/** prio's TCA_OPTIONS: tc_prio_qopt (`head`), then the compat nest (`nest`, empty unless multiqueue); the kernel dumps the struct alone. */
export const prioOptionsCodec = structThen(prioQopt, 20, { nest: attr(2, nested(prioNestAttrs)) } as const);
export type PrioAttrs = ReturnType<typeof prioOptionsCodec.read>;
/** The priomap tc and the kernel use when none is given. */
export const DEFAULT_PRIOMAP: readonly number[] = [1, 2, 2, 2, 1, 2, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];
/** Options of a prio qdisc: `bands N priomap P0 ... P15`. */
export interface PrioSpec {
  /** 2..16 (default 3). */
  bands?: number;
  /** Band of each of the 16 priorities; a shorter list keeps the defaults after it, as tc. */
  priomap?: readonly number[];
  /** `multiqueue` (TCA_PRIO_MQ; kernels since 4.x ignore it). */
  multiqueue?: boolean;
}
/** The TCA_OPTIONS of `tc qdisc ... prio`. */
export function prioOptions(s: PrioSpec = {}): PrioAttrs {
  const bands = validateU32(s.bands ?? 3, 'prio bands', 2, 16);
  const priomap = [...DEFAULT_PRIOMAP];
  if ((s.priomap?.length ?? 0) > 16) throw new ValidationError('priomap', 'at most 16 entries');
  s.priomap?.forEach((band, i) => (priomap[i] = validateU32(band, `priomap[${i}]`, 0, bands - 1)));
  return { head: { bands, priomap }, nest: s.multiqueue ? { mq: true } : {} };
}
// ------------------------------------------------------------ sfq

/** struct tc_sfq_qopt, and the fields tc_sfq_qopt_v1 adds when the payload has them. */
export interface SfqQopt extends WithTail {
  quantum: number;
  perturbPeriod: number;
  limit: number;
  divisor: number;
  flows: number;
  v1?: { depth: number; headdrop: number; redLimit: number; qthMin: number; qthMax: number; wlog: number; plog: number; scellLog: number; flags: number; maxP: number; stats: Buffer };
}
const SFQ_V0 = 20;
const SFQ_V1 = 72;
/** The codec of sfq's options: tc_sfq_qopt, or tc_sfq_qopt_v1 when the payload is that long. */
export const sfqQopt: Codec<SfqQopt> = {
  size: (v) => (v.v1 ? SFQ_V1 : SFQ_V0) + (v[TAIL]?.length ?? 0),
  write: (b, o, v) => {
    [v.quantum, v.perturbPeriod, v.limit, v.divisor, v.flows].forEach((x, i) => b.writeUInt32LE(x >>> 0, o + 4 * i));
    const e = v.v1;
    if (e) {
      [e.depth, e.headdrop, e.redLimit, e.qthMin, e.qthMax].forEach((x, i) => b.writeUInt32LE(x >>> 0, o + 20 + 4 * i));
      [e.wlog, e.plog, e.scellLog, e.flags].forEach((x, i) => b.writeUInt8(x & 0xff, o + 40 + i));
      b.writeUInt32LE(e.maxP >>> 0, o + 44);
      e.stats.copy(b, o + 48, 0, 24);
    }
    v[TAIL]?.copy(b, o + (e ? SFQ_V1 : SFQ_V0));
  },
  read: (b, o, l) => {
    if (l < SFQ_V0) throw new CodecError(`tc_sfq_qopt: ${l} bytes, needs ${SFQ_V0}`, o);
    const u = (i: number): number => b.readUInt32LE(o + i);
    const v: SfqQopt = { quantum: u(0), perturbPeriod: b.readInt32LE(o + 4), limit: u(8), divisor: u(12), flows: u(16) };
    let used = SFQ_V0;
    if (l >= SFQ_V1) {
      v.v1 = { depth: u(20), headdrop: u(24), redLimit: u(28), qthMin: u(32), qthMax: u(36), wlog: b[o + 40] as number, plog: b[o + 41] as number, scellLog: b[o + 42] as number, flags: b[o + 43] as number, maxP: u(44), stats: b.subarray(o + 48, o + 72) };
      used = SFQ_V1;
    }
    if (l > used) v[TAIL] = b.subarray(o + used, o + l);
    return v;
  },
};
/** Options of an sfq qdisc (`tc qdisc ... sfq ...`), without its RED mode. */
export interface SfqSpec {
  /** Bytes per round. */
  quantum?: number | string;
  /** Seconds between hash perturbations (`perturb`). */
  perturb?: number;
  /** Packets. */
  limit?: number;
  divisor?: number;
  flows?: number;
  /** Packets per flow. */
  depth?: number;
  /** Drop from the head of a full flow (`headdrop`). */
  headdrop?: boolean;
}
/** An sfq qdisc as dumped. */
export interface SfqView {
  quantum: number;
  perturb: number;
  limit: number;
  divisor: number;
  flows: number;
  depth?: number;
  headdrop?: boolean;
}
/** The TCA_OPTIONS of `tc qdisc ... sfq`: nothing when no option is given, else the whole v1 struct as tc sends it. */
export function sfqOptions(s: SfqSpec = {}): SfqQopt | undefined {
  if (Object.values(s).every((x) => x === undefined)) return undefined;
  if (s.limit !== undefined && s.limit < 2) throw new ValidationError('sfq limit', 'must be at least 2');
  return {
    quantum: s.quantum !== undefined ? parseSize(s.quantum) : 0, perturbPeriod: s.perturb ?? 0, limit: s.limit ?? 0, divisor: s.divisor ?? 0, flows: s.flows ?? 0,
    v1: { depth: s.depth ?? 0, headdrop: s.headdrop ? 1 : 0, redLimit: 0, qthMin: 0, qthMax: 0, wlog: 0, plog: 0, scellLog: 0, flags: 0, maxP: 0, stats: Buffer.alloc(24) },
  };
}
/** The typed view of a dumped sfq's options. */
export function sfqView(o: SfqQopt): SfqView {
  const v: SfqView = { quantum: o.quantum, perturb: o.perturbPeriod, limit: o.limit, divisor: o.divisor, flows: o.flows };
  if (o.v1) {
    v.depth = o.v1.depth;
    v.headdrop = o.v1.headdrop !== 0;
  }
  return v;
}
// ------------------------------------------------------------ fq

/** TCA_FQ_*, in the order tc sends them; the priomap, weights and offload horizon only come in dumps. */
export const fqAttrs = {
  bucketsLog: attr(8, u32),
  plimit: attr(1, u32),
  flowPlimit: attr(2, u32),
  quantum: attr(3, u32),
  initialQuantum: attr(4, u32),
  rateEnable: attr(5, u32),
  flowMaxRate: attr(7, u32),
  lowRateThreshold: attr(11, u32),
  flowDefaultRate: attr(6, u32),
  flowRefillDelay: attr(9, u32),
  orphanMask: attr(10, u32),
  ceThreshold: attr(12, u32),
  timerSlack: attr(13, u32),
  horizon: attr(14, u32),
  horizonDrop: attr(15, u8),
  priomap: attr(16, prioQopt),
  weights: attr(17, bytes),
  offloadHorizon: attr(18, u32),
} as const satisfies Schema;
export type FqAttrs = Attrs<typeof fqAttrs>;

/** Options of an fq qdisc (`tc qdisc ... fq ...`). Rates in bytes/s or text; times in µs or text, timerSlack in ns. */
export interface FqSpec {
  /** Packets in the qdisc (`limit`). */
  limit?: number;
  /** Packets per flow (`flow_limit`). */
  flowLimit?: number;
  /** Rounded down to a power of two, as tc. */
  buckets?: number;
  quantum?: number;
  initialQuantum?: number;
  /** `pacing` / `nopacing`. */
  pacing?: boolean;
  maxRate?: number | string;
  lowRateThreshold?: number | string;
  refillDelay?: number | string;
  orphanMask?: number;
  ceThreshold?: number | string;
  timerSlack?: number | string;
  horizon?: number | string;
  /** Drop packets past the horizon (`horizon_drop`) or cap their time (`horizon_cap`). */
  horizonDrop?: boolean;
}
/** An fq qdisc as dumped: rates in bytes/s, times in µs (timerSlack in ns). */
export interface FqView {
  limit?: number;
  flowLimit?: number;
  buckets?: number;
  quantum?: number;
  initialQuantum?: number;
  pacing?: boolean;
  maxRate?: number;
  lowRateThreshold?: number;
  refillDelay?: number;
  orphanMask?: number;
  ceThreshold?: number;
  timerSlack?: number;
  horizon?: number;
  horizonDrop?: boolean;
  priomap?: { bands: number; priomap: number[] };
}
/** The TCA_OPTIONS of `tc qdisc ... fq`. */
export function fqOptions(s: FqSpec = {}): FqAttrs {
  const o: FqAttrs = {};
  if (s.buckets) o.bucketsLog = Math.floor(Math.log2(validateU32(s.buckets, 'fq buckets', 1)));
  if (s.limit !== undefined) o.plimit = validateU32(s.limit, 'fq limit');
  if (s.flowLimit !== undefined) o.flowPlimit = validateU32(s.flowLimit, 'fq flowLimit');
  if (s.quantum !== undefined) o.quantum = validateU32(s.quantum, 'fq quantum');
  if (s.initialQuantum !== undefined) o.initialQuantum = validateU32(s.initialQuantum, 'fq initialQuantum');
  if (s.pacing !== undefined) o.rateEnable = s.pacing ? 1 : 0;
  if (s.maxRate !== undefined) o.flowMaxRate = Math.min(parseRate(s.maxRate), 0xffffffff);
  if (s.lowRateThreshold !== undefined) o.lowRateThreshold = Math.min(parseRate(s.lowRateThreshold), 0xffffffff);
  if (s.refillDelay !== undefined) o.flowRefillDelay = parseTime(s.refillDelay);
  if (s.orphanMask !== undefined) o.orphanMask = validateU32(s.orphanMask, 'fq orphanMask');
  if (s.ceThreshold !== undefined) o.ceThreshold = parseTime(s.ceThreshold);
  if (s.timerSlack !== undefined) o.timerSlack = validateU32(parseTimeNs(s.timerSlack), 'fq timerSlack');
  if (s.horizon !== undefined) o.horizon = parseTime(s.horizon);
  if (s.horizonDrop !== undefined) o.horizonDrop = s.horizonDrop ? 1 : 0;
  return o;
}
/** The typed view of a dumped fq's options. */
export function fqView(o: FqAttrs): FqView {
  const v: FqView = {};
  const set = <K extends keyof FqView>(k: K, x: FqView[K] | undefined): void => {
    if (x !== undefined) v[k] = x;
  };
  set('limit', o.plimit);
  set('flowLimit', o.flowPlimit);
  set('buckets', o.bucketsLog !== undefined ? 2 ** Math.min(o.bucketsLog, 31) : undefined);
  set('quantum', o.quantum);
  set('initialQuantum', o.initialQuantum);
  set('pacing', o.rateEnable !== undefined ? o.rateEnable !== 0 : undefined);
  set('maxRate', o.flowMaxRate);
  set('lowRateThreshold', o.lowRateThreshold);
  set('refillDelay', o.flowRefillDelay);
  set('orphanMask', o.orphanMask);
  set('ceThreshold', o.ceThreshold);
  set('timerSlack', o.timerSlack);
  set('horizon', o.horizon);
  set('horizonDrop', o.horizonDrop !== undefined ? o.horizonDrop !== 0 : undefined);
  if (o.priomap) v.priomap = { bands: o.priomap.bands, priomap: o.priomap.priomap };
  return v;
}
// ------------------------------------------------------------ pfifo, bfifo

/** struct tc_fifo_qopt: packets for pfifo, bytes for bfifo. */
export const fifoQopt = structCodec(struct([['limit', 'u32']] as const));
export type FifoQopt = ReturnType<typeof fifoQopt.read>;
/** Options of a pfifo (packets) or bfifo (bytes) qdisc. */
export interface FifoSpec {
  limit?: number | string;
}
