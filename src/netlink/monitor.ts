/**
 * monitor(): rtnetlink change events, like `ip monitor`, as an async iterator and as an
 * EventEmitter. The socket is read only when the shared poller reports it readable, never
 * blocking the event loop. When the kernel drops events (its socket buffer overflowed: ENOBUFS)
 * a `resync` event says so, and the monitor carries on: whoever mirrors state dumps again.
 */
import { EventEmitter } from 'node:events';
import { CodecError, OverrunError } from '../errors.js';
import { NETLINK } from './constants.js';
import { splitMessages, type RawMessage } from './message.js';
import { KernelTransport, type Transport } from './socket.js';
import { RTNL_TYPES, rtnlTypeOf, type RtnlKind, type RtnlObjects } from './rtnl-types.js';

/** A change the kernel announced: an object of `kind` added or changed ('new') or removed ('del'). */
export type ChangeEvent = { [K in RtnlKind]: { type: 'new' | 'del'; kind: K; object: RtnlObjects[K]; message: RawMessage } }[RtnlKind];

/** Everything a monitor yields. */
export type MonitorEvent =
  | ChangeEvent
  /** Events were lost (ENOBUFS, or the consumer fell `maxQueued` behind): dump again to resynchronise. */
  | { type: 'resync'; reason: 'overrun' | 'queue-full' | 'truncated' }
  /** A message the decoders could not read, kept with its bytes and the reason. */
  | { type: 'undecodable'; message: RawMessage; error: CodecError };

/** Options for monitor(). */
export interface MonitorOptions {
  /** Which objects to follow (default link, addr, route, neigh, rule, nsid). */
  groups?: readonly RtnlKind[];
  /** SO_RCVBUF for the event socket (default 4 MiB): how many events may pile up before ENOBUFS. */
  receiveBufferSize?: number;
  /** Events the async iterator holds for a slow consumer before it drops them and yields a resync (default 100000). */
  maxQueued?: number;
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
export class Monitor extends EventEmitter implements AsyncIterable<MonitorEvent> {
  private readonly kinds: Set<RtnlKind>;
  private readonly queue: MonitorEvent[] = [];
  private readonly waiters: ((r: IteratorResult<MonitorEvent>) => void)[] = [];
  private iterating = false;
  private closed = false;
  private stop: (() => Promise<void>) | undefined;
  private closing: Promise<void> | undefined;
  private readonly maxQueued: number;
  /** Events delivered so far, and resyncs reported. */
  readonly stats = { events: 0, resyncs: 0, datagrams: 0 };

  constructor(
    readonly transport: Transport,
    opts: MonitorOptions = {},
  ) {
    super();
    this.kinds = new Set(opts.groups ?? DEFAULT_GROUPS);
    this.maxQueued = opts.maxQueued ?? 100_000;
    if (!transport.watch) throw new TypeError('the transport cannot be watched for readiness');
    this.stop = transport.watch(() => this.drain());
  }

  /** Reads every datagram waiting on the socket (non-blocking) and dispatches its events. */
  private drain(): void {
    for (let i = 0; i < 4096 && !this.closed; i++) {
      let dgram: Buffer | null;
      try {
        dgram = this.transport.receive(0);
      } catch (e) {
        if (e instanceof OverrunError) {
          this.dispatch({ type: 'resync', reason: 'overrun' });
          continue;
        }
        this.emit('error', e);
        return;
      }
      if (dgram === null) return;
      this.stats.datagrams++;
      let msgs: RawMessage[];
      try {
        msgs = splitMessages(dgram);
      } catch (e) {
        this.dispatch({ type: 'resync', reason: 'truncated' });
        void e;
        continue;
      }
      for (const m of msgs) this.onMessage(m);
    }
    // Yield to the event loop after a long burst; the poller calls again while data is left.
    if (!this.closed) setImmediate(() => this.drain());
  }

  private onMessage(m: RawMessage): void {
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

  private dispatch(e: MonitorEvent): void {
    if (e.type === 'resync') this.stats.resyncs++;
    else this.stats.events++;
    this.emit('event', e);
    if (e.type === 'new' || e.type === 'del') {
      this.emit('change', e);
      this.emit(e.kind, e);
    } else this.emit(e.type, e);
    // Events wait for an iterator unless the monitor is used only through listeners.
    if (!this.iterating && (this.listenerCount('event') > 0 || this.listenerCount('change') > 0 || (e.type !== 'resync' && e.type !== 'undecodable' && this.listenerCount(e.kind) > 0))) return;
    const w = this.waiters.shift();
    if (w) return w({ value: e, done: false });
    if (this.queue.length >= this.maxQueued) {
      // The consumer is too slow: drop what is queued rather than grow without bound, and say so.
      this.queue.length = 0;
      this.queue.push({ type: 'resync', reason: 'queue-full' });
      this.stats.resyncs++;
      return;
    }
    this.queue.push(e);
  }

  [Symbol.asyncIterator](): AsyncIterator<MonitorEvent> {
    this.iterating = true;
    return {
      next: () => {
        const e = this.queue.shift();
        if (e) return Promise.resolve({ value: e, done: false });
        if (this.closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => this.waiters.push(resolve));
      },
      return: async () => {
        await this.close();
        return { value: undefined, done: true };
      },
    };
  }

  /** Stops listening and closes the socket (once no poll uses it); idempotent. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    for (const w of this.waiters.splice(0)) w({ value: undefined, done: true });
    const stop = this.stop;
    this.stop = undefined;
    this.closing = (async () => {
      await stop?.();
      this.transport.close();
      this.emit('close');
    })();
    return this.closing;
  }
}

/**
 * Follows rtnetlink changes: `ip monitor [link] [address] [route] [neigh] [rule] [nsid]`.
 * For a monitor in another netns pass `transport: openMonitorTransportIn(ns, opts)`.
 */
export function monitor(opts: MonitorOptions = {}): Monitor {
  return new Monitor(opts.transport ?? openMonitorTransport(opts), opts);
}
