/** Terminal tables and target verdicts. */
import { fmtMs, round } from './stats.js';

/** Left-aligned first column, right-aligned others. */
export function table(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

export interface Verdict {
  target: string;
  /** The figure compared to the limit (ms, a ratio or a share). */
  measured: number | null;
  limit: number;
  kind: 'max' | 'min';
  unit: 'ms' | 'x' | '%';
  met: boolean | null;
  /** How far from the limit: positive = headroom, negative = missed by (relative). */
  margin: number | null;
  note?: string;
}

/** A verdict for `measured` against `limit` (kind 'max': at most; 'min': at least). null = not measurable. */
export function verdict(target: string, measured: number | null | undefined, limit: number, kind: 'max' | 'min', unit: Verdict['unit'], note?: string): Verdict {
  if (measured === null || measured === undefined || !Number.isFinite(measured)) {
    return { target, measured: null, limit, kind, unit, met: null, margin: null, ...(note ? { note } : {}) };
  }
  const met = kind === 'max' ? measured <= limit : measured >= limit;
  const margin = kind === 'max' ? 1 - measured / limit : measured / limit - 1;
  return { target, measured: round(measured), limit, kind, unit, met, margin: round(margin), ...(note ? { note } : {}) };
}

function show(v: number, unit: Verdict['unit']): string {
  return unit === 'ms' ? `${fmtMs(v)} ms` : unit === '%' ? `${(v * 100).toFixed(1)}%` : `${v.toFixed(2)}x`;
}

/** One printed line of a verdict: MET, MISSED or N/A, the figure, the target and the margin. */
export function verdictLine(v: Verdict): string {
  const op = v.kind === 'max' ? '<=' : '>=';
  if (v.met === null || v.measured === null) return `  N/A     ${v.target}: not measurable${v.note ? ` (${v.note})` : ''}`;
  const rel = Math.abs(v.margin ?? 0) * 100;
  const how = v.met ? `${rel.toFixed(0)}% headroom` : `missed by ${rel.toFixed(0)}%`;
  return `  ${v.met ? 'MET   ' : 'MISSED'}  ${v.target}: ${show(v.measured, v.unit)} (target ${op} ${show(v.limit, v.unit)}; ${how})${v.note ? ` - ${v.note}` : ''}`;
}

/** The verdicts that missed their target; a target that could not be measured (N/A) is not a miss. */
export function missedTargets(vs: readonly Verdict[]): Verdict[] {
  return vs.filter((v) => v.met === false);
}

/** a / b; NaN when either figure is missing, so that a skipped or failed row never yields a number. */
export function ratioOf(a: number | undefined, b: number | undefined): number {
  return a === undefined || b === undefined ? NaN : a / b;
}

/** A ratio for a table cell ("2.42x"), or "n/a" when it is not a finite number (a row is missing). */
export function fmtRatio(x: number): string {
  return Number.isFinite(x) ? `${x.toFixed(2)}x` : 'n/a';
}

/** A difference in ms for a table cell, signed ("+20.70", "-5.000"), or "n/a" when it is not finite. */
export function fmtDelta(x: number): string {
  return Number.isFinite(x) ? `${x < 0 ? '-' : '+'}${fmtMs(Math.abs(x))}` : 'n/a';
}

/** A whole number for a table cell ("447"), or "n/a" when it is not finite. */
export function fmtCount(x: number): string {
  return Number.isFinite(x) ? x.toFixed(0) : 'n/a';
}

/** A row of a by-level table: the label, the figure at each level, then the last level's figure over the first's. */
export function levelRow(label: string, values: readonly (number | undefined)[]): string[] {
  return [label, ...values.map(fmtMs), fmtRatio(ratioOf(values[values.length - 1], values[0]))];
}

/** The sum of those of the named steps that were timed; NaN when none of them was. */
export function sumSteps(steps: Readonly<Record<string, number>>, names: readonly string[]): number {
  const timed = names.filter((n) => Number.isFinite(steps[n]));
  return timed.length === 0 ? NaN : timed.reduce((t, n) => t + steps[n]!, 0);
}
