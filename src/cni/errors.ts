/**
 * CNI errors: the spec's well-known codes, the plugin's own codes (100 and up), and the mapping
 * from tsnetlink's typed errors onto them. A CniError is what the plugin prints as
 * {"cniVersion", "code", "msg", "details"} on stdout before it exits with status 1.
 */
import { TsnetlinkError } from '../errors.js';

/** The spec's reserved codes and the plugin's own (100+), by name. */
export const CNI_CODES = {
  incompatibleVersion: 1,
  unsupportedField: 2,
  unknownContainer: 3,
  invalidEnvironment: 4,
  ioFailure: 5,
  decodingFailure: 6,
  invalidConfig: 7,
  tryAgainLater: 11,
  notAvailable: 50,
  limitedConnectivity: 51,
  /** A tsnetlink refusal or failure with no well-known code; `details` carries its code. */
  internal: 100,
  /** The address asked for (IP=, ips) is taken, or the range is full. */
  addressUnavailable: 101,
  /** A host port asked for is published by another endpoint. */
  portInUse: 102,
  /** The interface, address, route, rule or reservation CHECK expected is missing or wrong. */
  checkFailed: 103,
  /** A delegated IPAM plugin failed; its own code and message are in `details`. */
  ipamFailed: 104,
  /** The network exists in tsnetlink with a different subnet or bridge than this configuration. */
  networkMismatch: 105,
} as const;

/** The plugin's answer to a failed command, as the spec's error object. */
export class CniError extends TsnetlinkError {
  override name = 'CniError';
  /** The numeric CNI error code printed as "code". */
  readonly cniCode: number;
  /** The spec's "details": a longer description, or the underlying error's code and message. */
  readonly details: string | undefined;
  constructor(cniCode: number, msg: string, details?: string, options?: { cause?: unknown }) {
    super(`ECNI${cniCode}`, msg, options);
    this.cniCode = cniCode;
    this.details = details;
  }

  /** The error object of the spec for `cniVersion` (0.4.0 had no cniVersion in it; 1.0.0 does). */
  toJSON(cniVersion: string): { cniVersion: string; code: number; msg: string; details?: string } {
    return { cniVersion, code: this.cniCode, msg: this.message, ...(this.details ? { details: this.details } : {}) };
  }
}

/** The spec code for one of tsnetlink's error codes (refusals and kernel errors alike). */
function codeFor(code: string): number {
  switch (code) {
    case 'ELOCKTIMEOUT':
      return CNI_CODES.tryAgainLater;
    case 'EIPAMFULL':
    case 'EIPINUSE':
      return CNI_CODES.addressUnavailable;
    case 'EPORTINUSE':
    case 'EHOSTLISTENER':
      return CNI_CODES.portInUse;
    case 'EINVAL':
    case 'ENOTLOCAL':
    case 'EOVERLAP':
    case 'ENETEXISTS':
      return CNI_CODES.invalidConfig;
    case 'ENOFIREWALL':
      return CNI_CODES.notAvailable;
    case 'ENOCONTAINER':
      return CNI_CODES.unknownContainer;
    default:
      return CNI_CODES.internal;
  }
}

/** Turns anything thrown into a CniError: CniErrors pass, tsnetlink errors keep their code in `details`. */
export function toCniError(e: unknown): CniError {
  if (e instanceof CniError) return e;
  if (e instanceof TsnetlinkError) {
    const cause = (e as { cause?: unknown }).cause;
    const inner = cause instanceof TsnetlinkError ? cause.code : e.code;
    return new CniError(codeFor(inner), e.message, `tsnetlink ${e.name} ${e.code}`, { cause: e });
  }
  const err = e as { message?: unknown; code?: unknown } | null;
  const msg = typeof err?.message === 'string' ? err.message : String(e);
  return new CniError(CNI_CODES.internal, msg, typeof err?.code === 'string' ? `code ${err.code}` : undefined, { cause: e });
}
