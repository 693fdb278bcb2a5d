/**
 * The machinery every netlink event subscription shares: a socket joined to multicast groups,
 * read only when the shared poller reports it readable (never blocking the event loop), its
 * messages turned into events that are both emitted and queued for an async iterator, with a
 * bound on the queue. What a message means is the subclass's business (rtnetlink objects in
 * monitor.ts, conntrack entries in conntrack-events.ts); so is what to do when the kernel drops
 * messages (ENOBUFS).
 */
import { EventEmitter } from 'node:events';
import { OverrunError } from '../../errors.js';
import { splitMessages, type RawMessage } from './message.js';
import type { Transport } from './socket.js';

/** Why events were lost: the kernel's buffer overflowed, the consumer fell behind, or a datagram was cut short. */
export type ResyncReason = 'overrun' | 'queue-full' | 'truncated';

/** Options every event stream takes. */
export interface EventStreamOptions {
  /** Events the async iterator holds for a slow consumer before it drops them and reports a resync (default 100000). */
  maxQueued?: number;
}

/** A stream of events read from a watched netlink socket: iterate it (`for await`), or listen for 'event' and the names a subclass emits. */
export abstract class EventStream<E extends { type: string }> extends EventEmitter implements AsyncIterable<E> {
  private readonly queue: E[] = [];
  private readonly waiters: ((r: IteratorResult<E>) => void)[] = [];
  private iterating = false;
  private closed = false;
  /** While set, datagrams stay on the socket (a subclass is resynchronising and reads them after). */
  private held = false;
  private stop: (() => Promise<void>) | undefined;
  private closing: Promise<void> | undefined;
  private readonly maxQueued: number;
  /** Events delivered so far, resyncs reported, datagrams read. */
  readonly stats = { events: 0, resyncs: 0, datagrams: 0 };

  constructor(
    readonly transport: Transport,
    opts: EventStreamOptions = {},
  ) {
    super();
    this.maxQueued = opts.maxQueued ?? 100_000;
    if (!transport.watch) throw new TypeError('the transport cannot be watched for readiness');
    this.stop = transport.watch(() => this.drain());
  }

  /** Turns one received message into events (dispatch them); messages of no interest are ignored. */
  protected abstract onMessage(m: RawMessage): void;

  /** Events were lost; the default reports a resync event built by `resyncEvent`. */
  protected onLost(reason: ResyncReason): void {
    this.dispatch(this.resyncEvent(reason));
  }

  /** The event that says events were lost. */
  protected abstract resyncEvent(reason: ResyncReason): E;

  /** Emits an event under the names a listener may use besides 'event'. */
  protected abstract emitNamed(e: E): void;

  /** Whether a listener other than the iterator takes this event (then it is not queued). */
  protected abstract hasListenerFor(e: E): boolean;

  /**
   * Leaves datagrams on the socket until `work` settles, then reads on: events that arrive during
   * a resynchronising dump are delivered after its result, in the order the kernel sent them.
   */
  protected holdWhile(work: Promise<unknown>): void {
    this.held = true;
    void work.finally(() => {
      this.held = false;
      if (!this.closed) this.drain();
    });
  }

  /** Reads every datagram waiting on the socket (non-blocking) and dispatches its events. */
  private drain(): void {
    for (let i = 0; i < 4096 && !this.closed && !this.held; i++) {
      let dgram: Buffer | null;
      try {
        dgram = this.transport.receive(0);
      } catch (e) {
        if (e instanceof OverrunError) {
          this.onLost('overrun');
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
      } catch {
        this.onLost('truncated');
        continue;
      }
      for (const m of msgs) this.onMessage(m);
    }
    // Yield to the event loop after a long burst; the poller calls again while data is left.
    if (!this.closed && !this.held) setImmediate(() => this.drain());
  }

  /** Delivers one event to listeners, and to the iterator unless only listeners are used. */
  protected dispatch(e: E): void {
    if (e.type === 'resync') this.stats.resyncs++;
    else this.stats.events++;
    this.emit('event', e);
    this.emitNamed(e);
    // Events wait for an iterator unless the stream is used only through listeners.
    if (!this.iterating && (this.listenerCount('event') > 0 || this.hasListenerFor(e))) return;
    const w = this.waiters.shift();
    if (w) return w({ value: e, done: false });
    if (this.queue.length >= this.maxQueued) {
      // The consumer is too slow: drop what is queued rather than grow without bound, and say so.
      this.queue.length = 0;
      this.onLost('queue-full');
      return;
    }
    this.queue.push(e);
  }

  [Symbol.asyncIterator](): AsyncIterator<E> {
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
      await this.onClose();
      this.emit('close');
    })();
    return this.closing;
  }

  /** What a subclass releases besides the event socket. */
  protected async onClose(): Promise<void> {}
}
