/**
 * netem's options: delay and jitter, loss (random, 4-state, Gilbert-Elliot), duplication,
 * corruption, reordering, rate, slots and ECN, encoded as tc/q_netem.c encodes them (tc_netem_qopt
 * then TCA_NETEM_* in one payload) and read as the kernel's netem_dump writes them (with the
 * 64-bit latency and jitter in nanoseconds). Pure.
 */
import { CodecError, ValidationError } from '../../errors.js';
import { attr, bytes, nested, u32, u64, type Codec, type Schema } from '../core/attr.js';
import { struct, structCodec, structThen, TAIL, type WithTail } from '../core/message.js';
import { parsePercent, parseRate, parseSize, parseTime, parseTimeNs, percentOf, tickInUsec, ticksToTime, timeToTicks, type Psched } from './tc-rate.js';

// ------------------------------------------------------------ netem

/** struct tc_netem_qopt: latency and jitter in scheduler ticks, probabilities as u32 fractions. */
export const netemQopt = structCodec(struct([['latency', 'u32'], ['limit', 'u32'], ['loss', 'u32'], ['gap', 'u32'], ['duplicate', 'u32'], ['jitter', 'u32']] as const));
export type NetemQopt = ReturnType<typeof netemQopt.read>;
const netemCorr = structCodec(struct([['delayCorr', 'u32'], ['lossCorr', 'u32'], ['dupCorr', 'u32']] as const));
const netemProb = structCodec(struct([['probability', 'u32'], ['correlation', 'u32']] as const));
const netemRate = structCodec(struct([['rate', 'u32'], ['packetOverhead', 's32'], ['cellSize', 'u32'], ['cellOverhead', 's32']] as const));

/** struct tc_netem_slot: delays in ns. */
export interface NetemSlot extends WithTail {
  minDelay: bigint;
  maxDelay: bigint;
  maxPackets: number;
  maxBytes: number;
  distDelay: bigint;
  distJitter: bigint;
}
const netemSlot: Codec<NetemSlot> = {
  size: (v) => 40 + (v[TAIL]?.length ?? 0),
  write: (b, o, v) => {
    b.writeBigInt64LE(v.minDelay, o);
    b.writeBigInt64LE(v.maxDelay, o + 8);
    b.writeInt32LE(v.maxPackets, o + 16);
    b.writeInt32LE(v.maxBytes, o + 20);
    b.writeBigInt64LE(v.distDelay, o + 24);
    b.writeBigInt64LE(v.distJitter, o + 32);
    v[TAIL]?.copy(b, o + 40);
  },
  read: (b, o, l) => {
    if (l < 40) throw new CodecError(`tc_netem_slot: ${l} bytes, needs 40`, o);
    const v: NetemSlot = { minDelay: b.readBigInt64LE(o), maxDelay: b.readBigInt64LE(o + 8), maxPackets: b.readInt32LE(o + 16), maxBytes: b.readInt32LE(o + 20), distDelay: b.readBigInt64LE(o + 24), distJitter: b.readBigInt64LE(o + 32) };
    if (l > 40) v[TAIL] = b.subarray(o + 40, o + l);
    return v;
  },
};
/** NETEM_LOSS_*: the loss models other than random. */
export const netemLossAttrs = {
  gi: attr(1, structCodec(struct([['p13', 'u32'], ['p31', 'u32'], ['p32', 'u32'], ['p14', 'u32'], ['p23', 'u32']] as const))),
  ge: attr(2, structCodec(struct([['p', 'u32'], ['r', 'u32'], ['h', 'u32'], ['k1', 'u32']] as const))),
} as const satisfies Schema;

/** TCA_NETEM_*, in the order tc sends them (the 64-bit latency and jitter first, as tc 6.8 and later do). */
export const netemAttrs = {
  latency64: attr(10, u64),
  jitter64: attr(11, u64),
  corr: attr(1, netemCorr),
  reorder: attr(3, netemProb),
  ecn: attr(7, u32),
  corrupt: attr(4, netemProb),
  slot: attr(12, netemSlot),
  loss: attr(5, nested(netemLossAttrs), { nestedFlag: true }),
  rate64: attr(8, u64),
  rate: attr(6, netemRate),
  prngSeed: attr(14, u64),
  delayDist: attr(2, bytes),
  slotDist: attr(13, bytes),
} as const satisfies Schema;
/** netem's TCA_OPTIONS: tc_netem_qopt (`head`), then the TCA_NETEM_* attributes. */
export const netemOptionsCodec = structThen(netemQopt, 24, netemAttrs);
export type NetemAttrs = ReturnType<typeof netemOptionsCodec.read>;

/** Options of a netem qdisc (`tc qdisc ... netem ...`). Times in µs or text ('100ms'); probabilities in percent (1 or '1%'). */
export interface NetemSpec {
  delay?: number | string;
  jitter?: number | string;
  delayCorrelation?: number | string;
  /** Packets (default 1000, as tc). */
  limit?: number;
  loss?: number | string;
  lossCorrelation?: number | string;
  /** `loss state P13 [P31 [P32 [P23 [P14]]]]`: the 4-state Markov model (percentages). */
  lossState?: { p13: number | string; p31?: number | string; p32?: number | string; p23?: number | string; p14?: number | string };
  /** `loss gemodel P [R [1-H [1-K]]]`: the Gilbert-Elliot model (percentages). */
  lossGemodel?: { p: number | string; r?: number | string; oneMinusH?: number | string; oneMinusK?: number | string };
  duplicate?: number | string;
  duplicateCorrelation?: number | string;
  reorder?: number | string;
  reorderCorrelation?: number | string;
  /** Reorder every Nth packet (default 1 with reorder). */
  gap?: number;
  corrupt?: number | string;
  corruptCorrelation?: number | string;
  /** Rate in bytes/s or text ('1mbit'), with per-packet overhead and cells. */
  rate?: number | string;
  packetOverhead?: number;
  cellSize?: number;
  cellOverhead?: number;
  /** Mark with ECN instead of dropping (needs loss). */
  ecn?: boolean;
  /** `slot MIN [MAX] [packets N] [bytes N]`: deliver in bursts; times in ns or text. */
  slot?: { min: number | string; max?: number | string; packets?: number; bytes?: number | string };
  /** The random generator's seed (`seed N`, tc 6.4 and later), for repeatable loss and corruption. */
  seed?: bigint;
  /**
   * Send delay and jitter as TCA_NETEM_LATENCY64/JITTER64 in nanoseconds, as tc 6.8 and later do
   * (tc 6.1 sends scheduler ticks in tc_netem_qopt). Chosen by itself for delays past 2^32 ticks.
   */
  ns64?: boolean;
}
/** A netem qdisc as dumped: times in µs, probabilities in percent, rate in bytes/s; zero probabilities left out. */
export interface NetemView {
  delay: number;
  jitter: number;
  limit: number;
  loss: number;
  duplicate: number;
  gap: number;
  delayCorrelation?: number;
  lossCorrelation?: number;
  duplicateCorrelation?: number;
  reorder?: number;
  reorderCorrelation?: number;
  corrupt?: number;
  corruptCorrelation?: number;
  rate?: number;
  packetOverhead?: number;
  cellSize?: number;
  cellOverhead?: number;
  ecn?: boolean;
  lossModel?: 'state' | 'gemodel';
  slot?: { min: number; max: number; packets: number; bytes: number };
  seed?: bigint;
}

const pct = (v: number | string | undefined, field: string): number => (v === undefined ? 0 : parsePercent(v, field));

/** The TCA_OPTIONS of `tc qdisc ... netem`. */
export function netemOptions(s: NetemSpec, p: Psched): NetemAttrs {
  const delayUs = s.delay !== undefined ? parseTime(s.delay) : 0;
  const jitterUs = s.jitter !== undefined ? parseTime(s.jitter) : 0;
  if (s.jitter !== undefined && s.delay === undefined) throw new ValidationError('netem', 'jitter needs delay');
  // tc 6.1 refuses a delay past 2^32 ticks (about 274 s); the 64-bit attributes carry it.
  const ns64 = s.ns64 === true || delayUs * tickInUsec(p) > 0xffffffff || jitterUs * tickInUsec(p) > 0xffffffff;
  const head: NetemQopt = {
    latency: ns64 ? 0 : timeToTicks(delayUs, p), limit: s.limit ?? 1000, loss: pct(s.loss, 'netem loss'), gap: s.gap ?? 0,
    duplicate: pct(s.duplicate, 'netem duplicate'), jitter: ns64 ? 0 : timeToTicks(jitterUs, p),
  };
  if (s.loss !== undefined && (s.lossState || s.lossGemodel)) throw new ValidationError('netem', 'give one loss model');
  const reorder = pct(s.reorder, 'netem reorder');
  if (reorder) {
    if (!delayUs) throw new ValidationError('netem', 'reordering needs a delay');
    if (!head.gap) head.gap = 1;
  } else if (head.gap) throw new ValidationError('netem', 'gap needs reorder');
  if (s.ecn && !head.loss && !s.lossState && !s.lossGemodel) throw new ValidationError('netem', 'ecn needs loss');
  const o = { head } as NetemAttrs;
  if (ns64 && s.delay !== undefined) o.latency64 = BigInt(delayUs) * 1000n;
  if (ns64 && s.jitter !== undefined) o.jitter64 = BigInt(jitterUs) * 1000n;
  // tc sends the correlations when any but the duplicate one is given; this also sends them for that one alone.
  if ([s.delayCorrelation, s.lossCorrelation, s.duplicateCorrelation, s.reorderCorrelation, s.corruptCorrelation].some((x) => x !== undefined)) {
    o.corr = { delayCorr: pct(s.delayCorrelation, 'delayCorrelation'), lossCorr: pct(s.lossCorrelation, 'lossCorrelation'), dupCorr: pct(s.duplicateCorrelation, 'duplicateCorrelation') };
  }
  if (s.reorder !== undefined) o.reorder = { probability: reorder, correlation: pct(s.reorderCorrelation, 'reorderCorrelation') };
  if (s.ecn) o.ecn = 1;
  if (s.corrupt !== undefined) o.corrupt = { probability: pct(s.corrupt, 'netem corrupt'), correlation: pct(s.corruptCorrelation, 'corruptCorrelation') };
  if (s.slot) {
    const min = parseTimeNs(s.slot.min);
    const max = s.slot.max !== undefined ? parseTimeNs(s.slot.max) : min;
    if (max < min) throw new ValidationError('netem slot', 'max is below min');
    o.slot = { minDelay: BigInt(min), maxDelay: BigInt(max), maxPackets: s.slot.packets ?? 0, maxBytes: s.slot.bytes !== undefined ? parseSize(s.slot.bytes) | 0 : 0, distDelay: 0n, distJitter: 0n };
  }
  if (s.lossState) {
    const g = s.lossState;
    const p13 = pct(g.p13, 'p13');
    // tc's defaults: p31 = 1 - p13, p32 = 0, p23 = 1, p14 = 0.
    o.loss = { gi: { p13, p31: g.p31 !== undefined ? pct(g.p31, 'p31') : 0xffffffff - p13, p32: pct(g.p32, 'p32'), p14: pct(g.p14, 'p14'), p23: g.p23 !== undefined ? pct(g.p23, 'p23') : 0xffffffff } };
  } else if (s.lossGemodel) {
    const g = s.lossGemodel;
    const pp = pct(g.p, 'p');
    // The kernel takes h and k1; tc's arguments are 1-h and 1-k.
    o.loss = { ge: { p: pp, r: g.r !== undefined ? pct(g.r, 'r') : 0xffffffff - pp, h: g.oneMinusH !== undefined ? 0xffffffff - pct(g.oneMinusH, '1-h') : 0, k1: pct(g.oneMinusK, '1-k') } };
  }
  if (s.seed !== undefined) o.prngSeed = s.seed;
  if (s.rate !== undefined) {
    const r64 = parseRate(s.rate);
    if (r64 > 0xffffffff) o.rate64 = BigInt(r64);
    o.rate = { rate: Math.min(r64, 0xffffffff), packetOverhead: s.packetOverhead ?? 0, cellSize: s.cellSize ?? 0, cellOverhead: s.cellOverhead ?? 0 };
  }
  return o;
}

/** The typed view of a dumped netem's options (`tc qdisc show` of a netem). */
export function netemView(o: NetemAttrs, p: Psched): NetemView {
  const h = o.head;
  const us = (ns: bigint | undefined, ticks: number): number => (ns !== undefined ? Number(ns) / 1000 : Math.round(ticksToTime(ticks, p)));
  const v: NetemView = { delay: us(o.latency64, h.latency), jitter: us(o.jitter64, h.jitter), limit: h.limit, loss: percentOf(h.loss), duplicate: percentOf(h.duplicate), gap: h.gap };
  if (o.corr) {
    if (o.corr.delayCorr) v.delayCorrelation = percentOf(o.corr.delayCorr);
    if (o.corr.lossCorr) v.lossCorrelation = percentOf(o.corr.lossCorr);
    if (o.corr.dupCorr) v.duplicateCorrelation = percentOf(o.corr.dupCorr);
  }
  if (o.reorder?.probability) {
    v.reorder = percentOf(o.reorder.probability);
    if (o.reorder.correlation) v.reorderCorrelation = percentOf(o.reorder.correlation);
  }
  if (o.corrupt?.probability) {
    v.corrupt = percentOf(o.corrupt.probability);
    if (o.corrupt.correlation) v.corruptCorrelation = percentOf(o.corrupt.correlation);
  }
  const rate = o.rate64 !== undefined ? Number(o.rate64) : o.rate?.rate;
  if (rate) {
    v.rate = rate;
    if (o.rate?.packetOverhead) v.packetOverhead = o.rate.packetOverhead;
    if (o.rate?.cellSize) v.cellSize = o.rate.cellSize;
    if (o.rate?.cellOverhead) v.cellOverhead = o.rate.cellOverhead;
  }
  if (o.ecn) v.ecn = true;
  if (o.loss?.gi) v.lossModel = 'state';
  else if (o.loss?.ge) v.lossModel = 'gemodel';
  if (o.slot) v.slot = { min: Number(o.slot.minDelay), max: Number(o.slot.maxDelay), packets: o.slot.maxPackets, bytes: o.slot.maxBytes };
  if (o.prngSeed !== undefined) v.seed = o.prngSeed;
  return v;
}
