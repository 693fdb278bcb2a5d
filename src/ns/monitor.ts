/**
 * Monitors and watches that may listen in another network namespace: the event socket is
 * opened inside it (setns, socket, setns back, synchronously), and stays there.
 */
import { Monitor, openMonitorTransport, type MonitorOptions } from '../netlink/route/monitor.js';
import { watchWith, type WatchEvent } from '../netlink/route/watch.js';
import { Rtnl } from '../netlink/route/rtnl.js';
import type { RtnlKind } from '../netlink/route/rtnl-types.js';
import { openRtnlIn, withNetns, type NetnsHandle } from './netns.js';

/** Options of monitor() and watch(): those of the netlink monitor, and the netns to listen in. */
export interface NetnsMonitorOptions extends MonitorOptions {
  /** Listen in this netns instead of the calling thread's. */
  netns?: NetnsHandle;
}

/** Follows rtnetlink changes, in `netns` if given: `ip [-n NS] monitor link address route neigh rule nsid` */
export function monitor(opts: NetnsMonitorOptions = {}): Monitor {
  const { netns, ...rest } = opts;
  const transport = rest.transport ?? (netns ? withNetns(netns, () => openMonitorTransport(rest)) : openMonitorTransport(rest));
  return new Monitor(transport, rest);
}

/**
 * Dumps one kind of object, then follows its changes without a gap (subscribe, dump, merge),
 * in `netns` if given; redumps after a resync. `ip [-n NS] monitor` merged into `ip ... show`.
 */
export async function* watch<K extends RtnlKind>(kind: K, opts: NetnsMonitorOptions = {}): AsyncGenerator<WatchEvent<K>> {
  const m = monitor({ ...opts, groups: [kind] });
  let rt: Rtnl | undefined;
  try {
    rt = opts.netns ? openRtnlIn(opts.netns) : Rtnl.open();
    yield* watchWith(kind, m, rt);
  } finally {
    rt?.close();
    await m.close();
  }
}
