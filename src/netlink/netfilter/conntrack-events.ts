/**
 * Conntrack events, like `conntrack -E`: a socket joined to NFNLGRP_CONNTRACK_NEW, _UPDATE and
 * _DESTROY, read without blocking the event loop (event-stream.ts). When the kernel drops events
 * (ENOBUFS) the table is dumped again on a socket of its own, while the event socket waits, and
 * delivered with the resync event; the events read after it are those that followed.
 */
import { CodecError } from '../../errors.js';
import type { RawMessage } from '../core/message.js';
import type { Transport } from '../core/socket.js';
import { EventStream, type EventStreamOptions, type ResyncReason } from '../core/event-stream.js';
import { ctEventType, decodeConntrack, type ConntrackEntry, type ConntrackEventType } from './conntrack.js';
import { filterMatches, type CheckedFilter } from './conntrack-filter.js';

/** What a conntrack event stream yields. */
export type ConntrackEvent =
  /** An entry was created ('new'), changed state, mark or timeout ('update'), or went away ('destroy', with its final counters). */
  | { type: ConntrackEventType; entry: ConntrackEntry; message: RawMessage }
  /**
   * Events were lost (the kernel's buffer overflowed, a datagram was cut short, or the consumer
   * fell `maxQueued` behind). `entries` is the table dumped again right after, when the stream
   * resynchronises itself (the default); the events that follow apply to it. `error` says why
   * that dump failed, if it did (then dump again yourself).
   */
  | { type: 'resync'; reason: ResyncReason; entries?: ConntrackEntry[]; error?: unknown }
  /** A message the decoder could not read, kept with its bytes and the reason. */
  | { type: 'undecodable'; message: RawMessage; error: CodecError };

/** Options of Conntrack.events(). */
export interface ConntrackEventOptions extends EventStreamOptions {
  /** Which events to follow (default new, update and destroy). */
  types?: readonly ConntrackEventType[];
  /** SO_RCVBUF of the event socket (default 4 MiB): how many events may pile up before ENOBUFS. */
  receiveBufferSize?: number;
  /** After lost events: 'dump' the table again and deliver it with the resync event (default), or only 'report' it. */
  resync?: 'dump' | 'report';
}

/** A running `conntrack -E`: iterate it, or listen for 'event', 'new', 'update', 'destroy', 'resync', 'error'. */
export class ConntrackMonitor extends EventStream<ConntrackEvent> {
  private readonly types: ReadonlySet<ConntrackEventType>;

  /**
   * `dump` lists the table for a resync (Conntrack.events passes one on a socket of its own);
   * `filter` keeps the events and entries it matches; `release` closes what `dump` uses.
   */
  constructor(
    transport: Transport,
    opts: ConntrackEventOptions = {},
    private readonly filter: CheckedFilter = {},
    private readonly dump?: () => Promise<ConntrackEntry[]>,
    private readonly release?: () => void,
  ) {
    super(transport, opts);
    this.types = new Set(opts.types ?? ['new', 'update', 'destroy']);
  }

  protected onMessage(m: RawMessage): void {
    const type = ctEventType(m);
    if (!type || !this.types.has(type)) return;
    let entry: ConntrackEntry;
    try {
      entry = decodeConntrack(m);
    } catch (e) {
      if (!(e instanceof CodecError)) throw e;
      this.dispatch({ type: 'undecodable', message: { ...m, payload: Buffer.from(m.payload) }, error: e });
      return;
    }
    if (filterMatches(entry, this.filter)) this.dispatch({ type, entry, message: m });
  }

  protected override onLost(reason: ResyncReason): void {
    const dump = this.dump;
    if (!dump) return void this.dispatch(this.resyncEvent(reason));
    // The event socket is read again once the dump is in: what it holds then is newer than
    // what was lost, and is applied after the dumped table.
    this.holdWhile(
      dump().then(
        (entries) => this.dispatch({ type: 'resync', reason, entries: entries.filter((e) => filterMatches(e, this.filter)) }),
        (error: unknown) => this.dispatch({ type: 'resync', reason, error }),
      ),
    );
  }

  protected resyncEvent(reason: ResyncReason): ConntrackEvent {
    return { type: 'resync', reason };
  }

  protected emitNamed(e: ConntrackEvent): void {
    this.emit(e.type, e);
  }

  protected hasListenerFor(e: ConntrackEvent): boolean {
    return this.listenerCount(e.type) > 0;
  }

  protected override async onClose(): Promise<void> {
    this.release?.();
  }
}
