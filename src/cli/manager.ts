/**
 * The Networks manager each command works with: a new one per command, closed at its end, as a
 * process needs; a long-running front end that runs commands in its own process (the engine)
 * lends managers it keeps open instead, so their sockets and caches outlive one command.
 */
import { Networks, type NetworksOptions } from '../bridge/index.js';

let lender: ((opts: NetworksOptions) => Networks) | undefined;

/** Makes every command use the manager `lend` returns for its options (undefined: a new one per command again). */
export function lendNetworks(lend: ((opts: NetworksOptions) => Networks) | undefined): void {
  lender = lend;
}

/** The manager for one command; the command closes it when done (a lent one ignores that). */
export function openNetworks(opts: NetworksOptions): Networks {
  return lender ? lender(opts) : new Networks(opts);
}
