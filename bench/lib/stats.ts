/** Timing, percentiles and the progress line of the bench. */

/** Milliseconds from a monotonic clock. */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Latency summary in milliseconds. */
export interface Summary {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
}

/** Nearest-rank percentile of sorted values (p in 0..100). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] ?? NaN;
}

/** Percentiles, mean and extremes of a list of samples (NaN where the list is empty). */
export function summarize(samples: readonly number[]): Summary {
  const s = [...samples].sort((a, b) => a - b);
  const sum = s.reduce((a, b) => a + b, 0);
  return {
    n: s.length,
    p50: percentile(s, 50),
    p90: percentile(s, 90),
    p99: percentile(s, 99),
    mean: s.length ? sum / s.length : NaN,
    min: s[0] ?? NaN,
    max: s[s.length - 1] ?? NaN,
  };
}

/** Rounds for JSON and tables: 3 significant decimals below 10, 1 above. */
export function round(x: number): number {
  if (!Number.isFinite(x)) return x;
  return Math.abs(x) < 10 ? Math.round(x * 1000) / 1000 : Math.round(x * 10) / 10;
}

/** A figure in ms for a table cell, its precision by size; "n/a" when it was not measured (a skipped or failed row). */
export function fmtMs(x: number | undefined): string {
  if (x === undefined || !Number.isFinite(x)) return 'n/a';
  return x < 10 ? x.toFixed(3) : x < 100 ? x.toFixed(2) : x.toFixed(1);
}

/** One progress line on stderr: rewritten in place on a TTY, a plain line per phase otherwise. */
export class Progress {
  private readonly tty = process.stderr.isTTY === true;
  private lastPhase = '';
  private readonly t0 = nowMs();

  /** Shows the phase and what it is doing now. */
  update(phase: string, detail = ''): void {
    const secs = ((nowMs() - this.t0) / 1000).toFixed(1).padStart(6);
    if (this.tty) {
      const line = `[${secs}s] ${phase} ${detail}`.slice(0, (process.stderr.columns || 100) - 1);
      process.stderr.write(`\r\x1b[K${line}`);
    } else if (phase !== this.lastPhase) {
      process.stderr.write(`[${secs}s] ${phase}\n`);
    }
    this.lastPhase = phase;
  }

  /** Clears the progress line. */
  done(): void {
    if (this.tty) process.stderr.write('\r\x1b[K');
  }
}
