import { constants } from 'node:os';

const errnoNames = new Map<number, string>();
for (const [name, num] of Object.entries(constants.errno)) {
  if (!errnoNames.has(num)) errnoNames.set(num, name);
}
// Linux errnos that Node's table lacks but the kernel does send (EXFULL: a bridge has 1023 ports;
// ERESTART: an nf_tables batch built from a ruleset generation that is no longer current).
for (const [num, name] of [[54, 'EXFULL'], [85, 'ERESTART'], [95, 'EOPNOTSUPP'], [524, 'ENOTSUPP']] as const) errnoNames.set(num, name);

/** Returns the symbolic name ('EEXIST') of a positive or negative errno value. */
export function errnoName(errno: number): string {
  return errnoNames.get(Math.abs(errno)) ?? `E${Math.abs(errno)}`;
}

/** Returns the positive errno number for a name such as 'EEXIST', or undefined. */
export function errnoNumber(code: string): number | undefined {
  return (constants.errno as Record<string, number | undefined>)[code];
}

/**
 * The base of every error tsnetlink throws: `code` is a stable, machine-readable string, and one
 * code means one thing across the package (errno names for kernel and libc failures, E* names
 * of our own for refusals such as ENONET "no such network").
 */
export class TsnetlinkError extends Error {
  override name = 'TsnetlinkError';
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** A failed libc call: `code` like 'EPERM', negative `errno`, and the `syscall` name. */
export class SysError extends TsnetlinkError {
  override name = 'SysError';
  readonly errno: number;
  readonly syscall: string;
  constructor(syscall: string, errno: number, detail?: string) {
    const code = errnoName(errno);
    super(code, `${syscall}: ${code}${detail ? ` (${detail})` : ''}`);
    this.errno = -Math.abs(errno);
    this.syscall = syscall;
  }
}

/** The kernel refused a netlink request: `code` ('EEXIST'), negative `errno`, the operation and the extended ack. */
export class NetlinkError extends TsnetlinkError {
  override name = 'NetlinkError';
  readonly errno: number;
  /** The request's message type, e.g. 'RTM_NEWADDR'. */
  readonly operation: string;
  /** The kernel's extended-ack text (NLMSGERR_ATTR_MSG), if it sent one. */
  readonly kernelMessage: string | undefined;
  /** Byte offset of the offending attribute in the request (NLMSGERR_ATTR_OFFS), if sent. */
  readonly offset: number | undefined;
  constructor(operation: string, errno: number, kernelMessage?: string, offset?: number, context?: string) {
    const code = errnoName(errno);
    super(code, `${operation}${context ? ` ${context}` : ''}: ${code}${kernelMessage ? ` (${kernelMessage})` : ''}`);
    this.errno = -Math.abs(errno);
    this.operation = operation;
    this.kernelMessage = kernelMessage;
    this.offset = offset;
  }
}

/** A dump was interrupted (NLM_F_DUMP_INTR); `partial` holds what was received. */
export class DumpInterruptedError<T = unknown> extends TsnetlinkError {
  override name = 'DumpInterruptedError';
  override readonly code = 'EINTR';
  readonly operation: string;
  readonly partial: T[];
  constructor(operation: string, partial: T[]) {
    super('EINTR', `${operation}: dump interrupted by a concurrent change (NLM_F_DUMP_INTR); ${partial.length} partial results kept`);
    this.operation = operation;
    this.partial = partial;
  }
}

/** Malformed or truncated wire data; never a crash. */
export class CodecError extends TsnetlinkError {
  override name = 'CodecError';
  override readonly code = 'ECODEC';
  readonly offset: number | undefined;
  constructor(message: string, offset?: number) {
    super('ECODEC', offset === undefined ? message : `${message} (at byte ${offset})`);
    this.offset = offset;
  }
}

/** Input refused before the kernel was touched (bad name, CIDR, port spec...). */
export class ValidationError extends TsnetlinkError {
  override name = 'ValidationError';
  override readonly code = 'EINVAL';
  readonly field: string;
  constructor(field: string, message: string) {
    super('EINVAL', `${field}: ${message}`);
    this.field = field;
  }
}

/** A receive waited past its deadline. */
export class TimeoutError extends TsnetlinkError {
  override name = 'TimeoutError';
  override readonly code = 'ETIMEDOUT';
  readonly operation: string;
  constructor(operation: string, ms: number) {
    super('ETIMEDOUT', `${operation}: no reply from the kernel within ${ms} ms`);
    this.operation = operation;
  }
}

/**
 * The kernel dropped messages because the socket's receive buffer was full (ENOBUFS): events
 * were lost, so whoever mirrors kernel state must dump again.
 */
export class OverrunError extends NetlinkError {
  override name = 'OverrunError';
  constructor() {
    super('recv', 105, 'socket receive buffer overflowed; state must be resynchronised with a new dump');
  }
}

/** A value as an error message shows it: strings quoted and cut at 80 characters, anything else as text. */
export function shown(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value);
  return String(value);
}
