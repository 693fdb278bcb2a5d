/**
 * monitor(): rtnetlink change events, like `ip monitor`, as an async iterator and as an
 * EventEmitter (the shared machinery is event-stream.ts). When the kernel drops events (its
 * socket buffer overflowed: ENOBUFS) a `resync` event says so, and the monitor carries on:
 * whoever mirrors state dumps again (watch.ts does).
 */
import { CodecError } from '../../errors.js';
import { NETLINK } from '../core/constants.js';
import type { RawMessage } from '../core/message.js';
import { KernelTransport, type Transport } from '../core/socket.js';
import { RTNL_TYPES, rtnlTypeOf, type RtnlKind, type RtnlObjects } from './rtnl-types.js';
import { EventStream, type EventStreamOptions, type ResyncReason } from '../core/event-stream.js';

/** A change the kernel announced: an object of `kind` added or changed ('new') or removed ('del'). */
export type ChangeEvent = { [K in RtnlKind]: { type: 'new' | 'del'; kind: K; object: RtnlObjects[K]; message: RawMessage } }[RtnlKind];

/** Everything a monitor yields. */
export type MonitorEvent =
  | ChangeEvent
  /** Events were lost (ENOBUFS, or the consumer fell `maxQueued` behind): dump again to resynchronise. */
  | { type: 'resync'; reason: ResyncReason }
  /** A message the decoders could not read, kept with its bytes and the reason. */
  | { type: 'undecodable'; message: RawMessage; error: CodecError };

/** Options for monitor(). */
export interface MonitorOptions extends EventStreamOptions {
  /** Which objects to follow (default link, addr, route, neigh, rule, nsid). */
  groups?: readonly RtnlKind[];
  /** SO_RCVBUF for the event socket (default 4 MiB): how many events may pile up before ENOBUFS. */
  receiveBufferSize?: number;
  /**
   * Where to listen: a transport of your own (a fake kernel in tests, or a socket opened inside
   * another netns by openMonitorTransportIn). Default: a socket in the calling thread's netns.
   */
  transport?: Transport;
}

const DEFAULT_GROUPS: readonly RtnlKind[] = ['link', 'addr', 'route', 'neigh', 'rule', 'nsid'];

/** The multicast groups to join for these kinds. */
export function groupsOf(kinds: readonly RtnlKind[]): number[] {
  return [...new Set(kinds.flatMap((k) => RTNL_TYPES[k].groups))];
}

/** Opens the event socket a monitor reads (in the calling thread's netns). */
export function openMonitorTransport(opts: MonitorOptions = {}): KernelTransport {
  return new KernelTransport({ protocol: NETLINK.ROUTE, groups: groupsOf(opts.groups ?? DEFAULT_GROUPS), receiveBufferSize: opts.receiveBufferSize ?? 4 * 2 ** 20 });
}

/** A running monitor: iterate it (`for await`), or listen for 'event', 'change', a kind ('link', ...), 'resync', 'error'. */
export class Monitor extends EventStream<MonitorEvent> {
  private readonly kinds: Set<RtnlKind>;

  constructor(transport: Transport, opts: MonitorOptions = {}) {
    super(transport, opts);
    this.kinds = new Set(opts.groups ?? DEFAULT_GROUPS);
  }

  protected onMessage(m: RawMessage): void {
    const t = rtnlTypeOf(m.type);
    if (!t || t.op === 'get' || !this.kinds.has(t.kind)) return;
    try {
      const object = RTNL_TYPES[t.kind].decode(m);
      this.dispatch({ type: t.op, kind: t.kind, object, message: m } as ChangeEvent);
    } catch (e) {
      if (!(e instanceof CodecError)) throw e;
      this.dispatch({ type: 'undecodable', message: { ...m, payload: Buffer.from(m.payload) }, error: e });
    }
  }

  protected resyncEvent(reason: ResyncReason): MonitorEvent {
    return { type: 'resync', reason };
  }

  protected emitNamed(e: MonitorEvent): void {
    if (e.type === 'new' || e.type === 'del') {
      this.emit('change', e);
      this.emit(e.kind, e);
    } else this.emit(e.type, e);
  }

  protected hasListenerFor(e: MonitorEvent): boolean {
    return this.listenerCount('change') > 0 || (e.type !== 'resync' && e.type !== 'undecodable' && this.listenerCount(e.kind) > 0);
  }
}

/**
 * Follows rtnetlink changes: `ip monitor [link] [address] [route] [neigh] [rule] [nsid]`.
 * For a monitor in another netns pass `transport: openMonitorTransportIn(ns, opts)`.
 */
export function monitor(opts: MonitorOptions = {}): Monitor {
  return new Monitor(opts.transport ?? openMonitorTransport(opts), opts);
}
