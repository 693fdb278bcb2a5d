/**
 * Queueing disciplines' options (TCA_OPTIONS of RTM_*QDISC and RTM_*TCLASS) by kind: the codec of
 * each kind's options, what a spec adds for it, and the typed views of a dumped qdisc. The kinds
 * themselves live in tc-shaping.ts (tbf, htb), tc-queues.ts (fq_codel, fq, sfq, prio, fifo) and
 * tc-netem.ts. Pure.
 */
import { nested, type Codec } from '../core/attr.js';
import { parseSize, kernelPsched, type Psched } from './tc-rate.js';
import { validateU32 } from '../core/validate.js';
import { htbAttrs, htbQdiscOptions, htbQdiscView, tbfAttrs, tbfOptions, tbfView, type HtbAttrs, type HtbQdiscSpec, type HtbQdiscView, type TbfAttrs, type TbfSpec, type TbfView } from './tc-shaping.js';
import { netemOptions, netemOptionsCodec, netemView, type NetemAttrs, type NetemSpec, type NetemView } from './tc-netem.js';
import {
  fifoQopt, fqAttrs, fqCodelAttrs, fqCodelOptions, fqCodelView, fqOptions, fqView, prioOptions, prioOptionsCodec, sfqOptions, sfqQopt, sfqView,
  type FifoQopt, type FifoSpec, type FqAttrs, type FqCodelAttrs, type FqCodelSpec, type FqCodelView, type FqSpec, type FqView, type PrioAttrs, type PrioSpec, type SfqQopt, type SfqSpec, type SfqView,
} from './tc-queues.js';

export * from './tc-shaping.js';
export * from './tc-netem.js';
export * from './tc-queues.js';

// ------------------------------------------------------------ by kind

/** TCA_OPTIONS codec of each qdisc kind with options (ingress and clsact take none). */
export const qdiscOptionCodecs: Record<string, Codec<any>> = {
  tbf: nested(tbfAttrs),
  htb: nested(htbAttrs),
  fq_codel: nested(fqCodelAttrs),
  netem: netemOptionsCodec,
  prio: prioOptionsCodec,
  sfq: sfqQopt,
  fq: nested(fqAttrs),
  pfifo: fifoQopt,
  bfifo: fifoQopt,
};

/** Typed options of a decoded qdisc or class, by kind (`fq_codel` under `fqCodel`, pfifo and bfifo under `fifo`). */
export type QdiscOptions =
  | { kind: 'tbf'; tbf: TbfAttrs }
  | { kind: 'htb'; htb: HtbAttrs }
  | { kind: 'fq_codel'; fqCodel: FqCodelAttrs }
  | { kind: 'netem'; netem: NetemAttrs }
  | { kind: 'prio'; prio: PrioAttrs }
  | { kind: 'sfq'; sfq: SfqQopt }
  | { kind: 'fq'; fq: FqAttrs }
  | { kind: 'pfifo' | 'bfifo'; fifo: FifoQopt };

/** The property a kind's typed options and view go under. */
export function optionsKey(kind: string): string {
  return kind === 'fq_codel' ? 'fqCodel' : kind === 'pfifo' || kind === 'bfifo' ? 'fifo' : kind;
}

/** What a qdisc spec adds by kind, and the typed views of a dumped qdisc. */
export type QdiscKindSpec =
  | { kind: 'tbf'; tbf: TbfSpec }
  | { kind: 'htb'; htb?: HtbQdiscSpec }
  | { kind: 'fq_codel'; fqCodel?: FqCodelSpec }
  | { kind: 'netem'; netem: NetemSpec }
  | { kind: 'prio'; prio?: PrioSpec }
  | { kind: 'sfq'; sfq?: SfqSpec }
  | { kind: 'fq'; fq?: FqSpec }
  | { kind: 'pfifo' | 'bfifo'; fifo?: FifoSpec }
  | { kind: 'ingress' | 'clsact' };

/** The typed views a decoded qdisc carries, one per kind. */
export interface QdiscViews {
  tbf?: TbfView;
  htb?: HtbQdiscView;
  fqCodel?: FqCodelView;
  netem?: NetemView;
  prio?: { bands: number; priomap: number[] };
  sfq?: SfqView;
  fq?: FqView;
  fifo?: { limit: number };
}

/** The TCA_OPTIONS of a qdisc spec: typed options, raw bytes, or none. */
export function qdiscOptions(s: { kind?: string } & Record<string, unknown>, p: Psched): unknown {
  switch (s.kind) {
    case 'tbf':
      return tbfOptions(s['tbf'] as TbfSpec, p);
    case 'htb':
      return htbQdiscOptions(s['htb'] as HtbQdiscSpec | undefined);
    case 'fq_codel':
      return fqCodelOptions(s['fqCodel'] as FqCodelSpec | undefined);
    case 'netem':
      return netemOptions((s['netem'] as NetemSpec | undefined) ?? {}, p);
    case 'prio':
      return prioOptions(s['prio'] as PrioSpec | undefined);
    case 'sfq':
      return sfqOptions(s['sfq'] as SfqSpec | undefined);
    case 'fq':
      return fqOptions(s['fq'] as FqSpec | undefined);
    case 'pfifo':
    case 'bfifo': {
      const f = s['fifo'] as FifoSpec | undefined;
      // tc sends no options without a limit: the kernel then takes the device's txqueuelen.
      return f?.limit !== undefined ? { limit: s.kind === 'pfifo' ? validateU32(Number(f.limit), 'pfifo limit') : parseSize(f.limit) } : undefined;
    }
    default:
      return Buffer.isBuffer(s['options']) ? s['options'] : undefined;
  }
}

/** Adds the typed view of a decoded qdisc's options to `q`. */
export function qdiscViews(kind: string, opts: unknown, q: QdiscViews, p: Psched = kernelPsched()): void {
  if (opts === undefined || Buffer.isBuffer(opts)) return;
  switch (kind) {
    case 'tbf': {
      const v = tbfView(opts as TbfAttrs, p);
      if (v) q.tbf = v;
      return;
    }
    case 'htb': {
      const v = htbQdiscView(opts as HtbAttrs);
      if (v) q.htb = v;
      return;
    }
    case 'fq_codel':
      q.fqCodel = fqCodelView(opts as FqCodelAttrs);
      return;
    case 'netem':
      q.netem = netemView(opts as NetemAttrs, p);
      return;
    case 'prio':
      q.prio = { bands: (opts as PrioAttrs).head.bands, priomap: (opts as PrioAttrs).head.priomap };
      return;
    case 'sfq':
      q.sfq = sfqView(opts as SfqQopt);
      return;
    case 'fq':
      q.fq = fqView(opts as FqAttrs);
      return;
    case 'pfifo':
    case 'bfifo':
      q.fifo = { limit: (opts as FifoQopt).limit };
      return;
  }
}
