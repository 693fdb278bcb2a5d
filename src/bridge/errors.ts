/** Errors of the bridge-network layer. */

export type NetworkErrorCode =
  | 'ENETEXISTS' // a network (or link) of that name exists
  | 'ENONET' // no such network
  | 'EOVERLAP' // subnet overlaps another network or a host route
  | 'EBUSY' // endpoints still attached
  | 'EPORTINUSE' // host port already published
  | 'EALREADY' // container already connected to this network
  | 'ENOENDPOINT' // no such endpoint
  | 'EBRIDGEFULL'; // a Linux bridge holds at most 1023 ports

/** A refused network operation, with a stable `code` for programs. */
export class NetworkError extends Error {
  override name = 'NetworkError';
  constructor(
    readonly code: NetworkErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** A multi-step operation failed at `step`; everything done before it was rolled back. */
export class StepError extends Error {
  override name = 'StepError';
  readonly code: string;
  constructor(
    readonly operation: string,
    readonly step: string,
    cause: unknown,
    /** Errors hit while rolling back, if any (the host may need `network repair`). */
    readonly rollbackErrors: unknown[] = [],
  ) {
    const c = cause as { message?: string; code?: string };
    super(`${operation} failed at step "${step}": ${c?.message ?? String(cause)}${rollbackErrors.length ? ` (and ${rollbackErrors.length} rollback errors)` : ''}`, { cause });
    this.code = c?.code ?? 'EUNKNOWN';
  }
}
