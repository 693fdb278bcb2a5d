/** Errors of the bridge-network layer. */
import { TsnetlinkError } from '../errors.js';

export type NetworkErrorCode =
  | 'ENETEXISTS' // a network (or link) of that name exists
  | 'ENONET' // no such network
  | 'EOVERLAP' // subnet overlaps another network or a host route
  | 'EBUSY' // endpoints still attached
  | 'EPORTINUSE' // host port already published
  | 'EALREADY' // container already connected to this network, or the endpoint id is taken
  | 'ENOENDPOINT' // no such endpoint
  | 'EBRIDGEFULL' // a Linux bridge holds at most 1023 ports
  | 'EBRIDGEDOWN' // the network's bridge is missing or down: `network repair` restores it
  | 'ENOFORWARD' // net.ipv4.ip_forward (or IPv6 forwarding) is 0: containers would have no outbound traffic
  | 'EHOSTNETNS' // the "container" is the host's own netns
  | 'ENOCONTAINER' // the container's network namespace cannot be opened
  | 'ENOTLOCAL' // a port mapping's host IP is not an address of this host
  | 'EHOSTLISTENER' // a host process listens on (TCP) or is bound to (UDP) a port and address a mapping would publish
  | 'EFIREWALL'; // the firewall backend asked for is not the one the host's networks use

/** A refused network operation, with a stable `code` for programs. */
export class NetworkError extends TsnetlinkError {
  override name = 'NetworkError';
  declare readonly code: NetworkErrorCode;
  /** For EPORTINUSE and EALREADY: the endpoint that holds what was asked for. */
  readonly holder: { network: string; id: string } | undefined;
  constructor(code: NetworkErrorCode, message: string, holder?: { network: string; id: string }) {
    super(code, message);
    this.holder = holder;
  }
}

/** A multi-step operation failed at `step`; everything done before it was rolled back. */
export class StepError extends TsnetlinkError {
  override name = 'StepError';
  constructor(
    readonly operation: string,
    readonly step: string,
    cause: unknown,
    /** Errors hit while rolling back, if any (the host may need `network repair`). */
    readonly rollbackErrors: unknown[] = [],
  ) {
    const c = cause as { message?: string; code?: string };
    const rb = rollbackErrors.map((e) => (e as Error)?.message ?? String(e));
    super(
      c?.code ?? 'EUNKNOWN',
      `${operation} failed at step "${step}": ${c?.message ?? String(cause)}${rb.length ? `; rolling back also failed: ${rb.join('; ')} (run tsnetlink network repair)` : ''}`,
      { cause },
    );
  }
}
