/** A tiny transaction: named steps with undo actions, rolled back in reverse on the first failure. */
import { TsnetlinkError } from '../errors.js';
import { StepError } from './errors.js';
import { kernelClock } from '../sys/libc.js';

/**
 * Thrown by a fault hook to simulate a crash at a step: the operation is abandoned on the spot,
 * nothing is rolled back, and what it left is for the reconciler to find (tests only).
 */
export class Abandon extends TsnetlinkError {
  override name = 'Abandon';
  constructor(readonly operation: string, readonly step: string) {
    super('EABANDONED', `${operation} abandoned at step "${step}" (simulated crash)`);
  }
}

/** Called before every step; a test seam that throws Abandon to simulate a kill there. */
export type FaultHook = (operation: string, step: string) => void;

/** Records what was done so a failure half-way undoes it all. */
export class Steps {
  private readonly undo: { step: string; fn: () => unknown }[] = [];
  private current = 'start';
  /** Milliseconds per completed step, for diagnostics and the bench's breakdown. */
  readonly timings: { step: string; ms: number; kernelMs?: number }[] = [];

  constructor(
    private readonly operation: string,
    private readonly faults?: FaultHook,
    /** The operation's kind for fault hooks ("connect", "disconnect", ...); defaults to `operation`. */
    private readonly kind = operation,
  ) {}

  /** Runs a synchronous step; `rollback` is registered only once the step succeeded. */
  run<T>(step: string, fn: () => T, rollback?: (value: T) => unknown): T {
    this.current = step;
    this.faults?.(this.kind, step);
    const k0 = kernelClock.ns;
    const t0 = performance.now();
    const v = fn();
    const ms = performance.now() - t0;
    this.timings.push(kernelClock.enabled ? { step, ms, kernelMs: Number(kernelClock.ns - k0) / 1e6 } : { step, ms });
    if (rollback) this.undo.push({ step, fn: () => rollback(v) });
    return v;
  }

  /** Registers an undo before its step runs, for steps that may fail after a partial effect. */
  undoFirst(step: string, fn: () => unknown): void {
    this.undo.push({ step, fn });
  }

  /** Runs an asynchronous step. */
  async runAsync<T>(step: string, fn: () => Promise<T>, rollback?: (value: T) => unknown): Promise<T> {
    this.current = step;
    this.faults?.(this.kind, step);
    const t0 = performance.now();
    const v = await fn();
    this.timings.push({ step, ms: performance.now() - t0 });
    if (rollback) this.undo.push({ step, fn: () => rollback(v) });
    return v;
  }

  /**
   * Undoes every completed step (newest first), then throws. A refusal (`isRefusal`: bad input,
   * a taken name or port, a full subnet) is rethrown as it is, its message being the answer;
   * anything else becomes a StepError naming the step that failed. A simulated crash (Abandon)
   * undoes nothing.
   */
  async fail(cause: unknown, isRefusal: (e: unknown) => boolean = () => false): Promise<never> {
    if (cause instanceof Abandon) throw cause;
    const errors: unknown[] = [];
    for (const u of this.undo.reverse()) {
      try {
        await u.fn();
      } catch (e) {
        if (e instanceof Abandon) throw e;
        errors.push(e);
      }
    }
    this.undo.length = 0;
    if (errors.length === 0 && isRefusal(cause)) throw cause;
    throw new StepError(this.operation, this.current, cause, errors);
  }
}
