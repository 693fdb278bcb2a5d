/**
 * What inet_diag and unix_diag share: the message type, and the socket states (TCP's, which both
 * use) with the bitmask a request selects them by.
 */
import { ValidationError } from '../../errors.js';

/** The one message type of inet_diag requests and replies. */
export const SOCK_DIAG_BY_FAMILY = 20;
/**
 * TCP states (include/net/tcp_states.h), which inet_diag also uses for UDP: an unconnected UDP
 * socket is 'close' (ss shows UNCONN), a connected one 'established'.
 */
export const TCP_STATE = {
  established: 1,
  'syn-sent': 2,
  'syn-recv': 3,
  'fin-wait-1': 4,
  'fin-wait-2': 5,
  'time-wait': 6,
  close: 7,
  'close-wait': 8,
  'last-ack': 9,
  listen: 10,
  closing: 11,
  'new-syn-recv': 12,
  'bound-inactive': 13,
} as const;
export type SocketState = keyof typeof TCP_STATE;
export const STATE_NAMES = new Map<number, SocketState>(Object.entries(TCP_STATE).map(([k, v]) => [v, k as SocketState]));

/** The bitmask of `states` (every state when none is given), as idiag_states wants it. */
export function stateMask(states?: readonly SocketState[]): number {
  if (states === undefined) return 0xffffffff;
  let mask = 0;
  for (const s of states) {
    const n = TCP_STATE[s];
    if (n === undefined) throw new ValidationError('states', `unknown socket state ${JSON.stringify(s)}; one of ${Object.keys(TCP_STATE).join(', ')}`);
    mask |= 1 << n;
  }
  return mask >>> 0;
}

