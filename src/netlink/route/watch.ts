/**
 * watch(): mirror one kind of kernel object without a gap. Subscribe first, then dump, then
 * apply every event that arrived meanwhile in order: an event older than the dump only repeats
 * a state the dump already has or that a later event changes again, so the merged view is the
 * kernel's. After a resync (events were lost) it dumps again.
 */
import type { Rtnl } from './rtnl.js';
import type { Monitor, MonitorEvent } from './monitor.js';
import type { RtnlKind, RtnlObjects } from './rtnl-types.js';

/** What watch() yields: the whole state after each (re)dump, then each change applied to it. */
export type WatchEvent<K extends RtnlKind> =
  | { type: 'sync'; objects: ReadonlyMap<string, RtnlObjects[K]> }
  | { type: 'new' | 'del'; key: string; object: RtnlObjects[K]; objects: ReadonlyMap<string, RtnlObjects[K]> };

/** The identity of an object within its kind, as the kernel matches it (a link by ifindex, a route by table, family, prefix, tos and metric, ...). */
export function objectKey<K extends RtnlKind>(kind: K, o: RtnlObjects[K]): string {
  const v = o as unknown as Record<string, any>;
  switch (kind) {
    case 'link':
      return String(v['index']);
    case 'addr':
      return `${v['family']}|${v['index']}|${v['cidr']}`;
    case 'route':
      if (v['family'] === 4 || v['family'] === 6) return `${v['family']}|${v['table']}|${v['dst']}|${v['src'] ?? ''}|${v['tos']}|${v['priority'] ?? 0}`;
      if (v['family'] === 'mpls') return `mpls|${v['label']}`;
      if (v['family'] === 'ipmr' || v['family'] === 'ip6mr') return `${v['family']}|${v['table']}|${v['source']}|${v['group']}`;
      return `other|${v['addressFamily']}|${JSON.stringify(v['raw']?.header ?? {})}`;
    case 'neigh':
      return `${v['family']}|${v['ifindex']}|${v['dst'] ?? ''}|${v['family'] === 'bridge' ? `${v['lladdr']}|${v['vlan'] ?? ''}` : ''}`;
    case 'rule':
      return `${v['family']}|${v['priority'] ?? 0}|${v['src']}|${v['dst']}|${v['table']}|${v['fwmark'] ?? ''}|${v['iif'] ?? ''}|${v['oif'] ?? ''}|${v['ipProto'] ?? ''}|${JSON.stringify([v['sport'], v['dport'], v['uidRange']])}`;
    case 'nsid':
      return String(v['nsid']);
    case 'nexthop':
      return String(v['id']);
    default:
      return JSON.stringify(o);
  }
}

/** Dumps every object of a kind on a handle (the dump watch() merges events into). */
export function dumpKind<K extends RtnlKind>(rt: Rtnl, kind: K): RtnlObjects[K][] {
  const all: unknown[] =
    kind === 'link' ? rt.linkList() : kind === 'addr' ? rt.addrList() : kind === 'route' ? rt.routeList({ table: 0 }) : kind === 'neigh' ? [...rt.neighList(), ...rt.fdbList()] : kind === 'rule' ? rt.ruleList() : kind === 'nsid' ? rt.nsidList() : rt.nexthopList();
  return all as RtnlObjects[K][];
}

/**
 * Yields the state of one kind of object, then every change, with no gap between dump and
 * events. `monitor` must already be subscribed to `kind`; `rtnl` dumps in the same netns.
 * Closing the iterator (break) closes the monitor. `ip monitor` after `ip ... show`, merged.
 */
export async function* watchWith<K extends RtnlKind>(kind: K, monitor: Monitor, rtnl: Rtnl, opts: { retries?: number } = {}): AsyncGenerator<WatchEvent<K>> {
  const state = new Map<string, RtnlObjects[K]>();
  const it = monitor[Symbol.asyncIterator]();
  const resync = (): void => {
    state.clear();
    let objs: RtnlObjects[K][] = [];
    for (let attempt = 0; ; attempt++) {
      try {
        objs = dumpKind(rtnl, kind);
        break;
      } catch (e) {
        if ((e as { code?: string }).code !== 'EINTR' || attempt >= (opts.retries ?? 3)) throw e;
      }
    }
    for (const o of objs) state.set(objectKey(kind, o), o);
  };
  try {
    // The monitor is subscribed before this dump, so nothing can fall between the two.
    resync();
    yield { type: 'sync', objects: state };
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      const e: MonitorEvent = r.value;
      if (e.type === 'resync') {
        resync();
        yield { type: 'sync', objects: state };
        continue;
      }
      if ((e.type !== 'new' && e.type !== 'del') || e.kind !== kind) continue;
      const obj = e.object as RtnlObjects[K];
      const key = objectKey(kind, obj);
      if (e.type === 'new') state.set(key, obj);
      else state.delete(key);
      yield { type: e.type, key, object: obj, objects: state };
    }
  } finally {
    await it.return?.();
  }
}
