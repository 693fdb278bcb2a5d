/**
 * Conntrack: the connection-tracking table of one netns over ctnetlink, as the `conntrack` tool
 * uses it: list with filters, get one entry, delete with filters (one dump, then every delete
 * pipelined in a few sendto calls), flush, count, and events. Each method states its
 * `conntrack` equivalent; each operation is written once (ConntrackOps) and runs through the
 * Conntrack handle synchronously or its `promises` twin asynchronously.
 */
import { CodecError, NetlinkError, ValidationError } from '../../errors.js';
import { NETLINK } from '../core/constants.js';
import type { RawMessage } from '../core/message.js';
import { KernelTransport, NetlinkSocket, type DumpList, type DumpOptions, type SocketOptions, type Transport } from '../core/socket.js';
import {
  ctCountRequest, ctDeleteRequest, ctDumpRequest, ctFlushRequest, ctGetRequest, ctMsgType, ctnlTypeName, decodeConntrack, decodeConntrackCount, tupleAttrsOf,
  IPCTNL_MSG, NFNLGRP_CONNTRACK, type ConntrackEntry, type ConntrackTuple, type CtAttrs,
} from './conntrack.js';
import { checkFilter, filterMatches, kernelFilterAttrs, protocolNumber, type CheckedFilter, type ConntrackFilter } from './conntrack-filter.js';
import { ConntrackMonitor, type ConntrackEventOptions } from './conntrack-events.js';
import { validateU32 } from '../core/validate.js';
import { batchOp, dumpOp, requestOp, type Op } from '../core/op.js';
import { defineOperations, operationNames, PromiseHandle, SyncHandle, type PromiseMethods, type SyncMethods } from '../core/op-handle.js';
import { parseIp } from '../../ip/parse.js';
import type { ConntrackProtocol } from './conntrack.js';

/** Opens a kernel socket where the handle lives (its netns); event streams open theirs with it. */
export type TransportOpener = (opts: SocketOptions) => Transport;

/** One connection to look up: its original tuple (or its reply tuple, with `direction: 'reply'`). `conntrack -G` */
export interface ConntrackLookup {
  protocol: ConntrackProtocol | number;
  src: string;
  dst: string;
  srcPort?: number;
  dstPort?: number;
  icmpType?: number;
  icmpCode?: number;
  icmpId?: number;
  zone?: number;
  direction?: 'orig' | 'reply';
}

/** What a flush can select by in the kernel itself. `conntrack -F`, `conntrack -D -m MARK` without tuples */
export type ConntrackFlushFilter = Pick<ConntrackFilter, 'family' | 'mark' | 'markMask' | 'status' | 'statusMask'>;

const DEFAULT_RCVBUF = 1 << 20;

/**
 * The conntrack operations, each written once as a generator of netlink exchanges (core/op.ts):
 * Conntrack runs them synchronously, Conntrack.promises asynchronously (the request of a dump
 * sent off the JS thread: the kernel walks its whole hash table inside sendmsg, ~13 ms for
 * 262,144 buckets). They hold no state.
 */
export class ConntrackOps {
  /**
   * Lists the entries matching `filter` (all by default). The kernel filters what it can (family,
   * mark, status, tuple fields); every entry is checked here too. `conntrack -L [-f ipv4|ipv6] [-p P] [-s A] [-d B] [--sport P] [--dport Q] [-m MARK/MASK] [-u STATUS] [-w ZONE]`
   */
  *list(filter: ConntrackFilter = {}, opts: DumpOptions = {}): Op<DumpList<ConntrackEntry>> {
    const f = checkFilter(filter);
    const attrs = kernelFilterAttrs(f);
    try {
      return yield* dumpOp(ctDumpRequest(f.family, attrs), keep(f), opts);
    } catch (e) {
      // Kernels before 5.8 refuse CTA_FILTER, and some an ICMP type they cannot invert: dump
      // without the tuple part, every entry being checked here anyway.
      if (!refusedFilter(e, attrs)) throw e;
      return yield* dumpOp(ctDumpRequest(f.family, withoutTupleFilter(attrs)), keep(f), opts);
    }
  }

  /** One entry by its tuple, or undefined when the kernel has none (ENOENT). `conntrack -G -p P -s A -d B [--sport P --dport Q] [-w ZONE]` */
  *get(spec: ConntrackLookup): Op<ConntrackEntry | undefined> {
    const src = parseIp(spec.src, 'src');
    const dst = parseIp(spec.dst, 'dst');
    if (src.family !== dst.family) throw new ValidationError('dst', 'src and dst are of different families');
    const t: Partial<ConntrackTuple> = { src: src.address, dst: dst.address, protocol: protocolNumber(spec.protocol) };
    for (const k of ['srcPort', 'dstPort', 'icmpId'] as const) if (spec[k] !== undefined) t[k] = validateU32(spec[k], k, 0, 65535);
    for (const k of ['icmpType', 'icmpCode'] as const) if (spec[k] !== undefined) t[k] = validateU32(spec[k], k, 0, 255);
    const attrs: CtAttrs = spec.direction === 'reply' ? { reply: tupleAttrsOf(t, src.family) } : { orig: tupleAttrsOf(t, src.family) };
    if (spec.zone !== undefined) attrs.zone = validateU32(spec.zone, 'zone', 0, 65535);
    let replies: RawMessage[];
    try {
      replies = yield* requestOp(ctGetRequest(src.family, attrs));
    } catch (e) {
      if (e instanceof NetlinkError && e.code === 'ENOENT') return undefined;
      throw e;
    }
    const m = replies.find((r) => r.type === ctMsgType(IPCTNL_MSG.NEW));
    return m ? decodeConntrack(m) : undefined;
  }

  /**
   * Deletes the entries matching `filter`: one dump, then the deletes pipelined. An entry gone
   * between the two (ENOENT) is not an error. Returns how many went. `conntrack -D [filters as list()]`
   */
  *delete(filter: ConntrackFilter = {}, opts: DumpOptions = {}): Op<number> {
    return yield* this.deleteEntries(yield* this.list(filter, opts));
  }

  /** Deletes dumped entries, each by its tuple, zone and id, pipelined; returns how many went (ENOENT: already gone). */
  *deleteEntries(entries: readonly ConntrackEntry[]): Op<number> {
    return countDeleted(yield* batchOp(entries.map(ctDeleteRequest)));
  }

  /**
   * Deletes every entry, or those of a family, mark or status, in the kernel in one request.
   * `conntrack -F [-f ipv4|ipv6]`, `conntrack -D -m MARK/MASK` (no count: use delete() for one)
   */
  *flush(filter: ConntrackFlushFilter = {}): Op<void> {
    const f = checkFilter(filter);
    yield* requestOp(ctFlushRequest(f.family, kernelFilterAttrs(f)));
  }

  /** How many entries this netns tracks. `conntrack -C` */
  *count(): Op<number> {
    const [m] = yield* requestOp(ctCountRequest());
    if (!m) throw new CodecError('IPCTNL_MSG_CT_GET_STATS: no counters in the reply');
    return decodeConntrackCount(m).entries;
  }
}

/** Every conntrack operation's name, read from ConntrackOps. */
export const CONNTRACK_OPERATIONS: readonly string[] = operationNames(ConntrackOps);

export interface Conntrack extends SyncMethods<ConntrackOps> {}

/** A handle on the conntrack table of the netns its socket was opened in; `promises` is its async twin. */
export class Conntrack extends SyncHandle<ConntrackOps, ConntrackPromises> {
  /** Opens a handle in the calling thread's netns (ns/openConntrackIn opens one in another). */
  static open(opts: SocketOptions = {}): Conntrack {
    return Conntrack.openWith((o) => new KernelTransport(o), opts);
  }

  /** Opens a handle whose sockets `opener` opens (in another netns: ns/openConntrackIn). */
  static openWith(opener: TransportOpener, opts: SocketOptions = {}): Conntrack {
    const o = socketOptions(opts);
    return new Conntrack(new NetlinkSocket(opener(o), o), opener);
  }

  /**
   * `socket` must be a NETLINK_NETFILTER socket (or a fake one in tests); `opener` opens event
   * and dump sockets in the same netns (a fake kernel in tests).
   */
  constructor(
    socket: NetlinkSocket,
    private readonly opener?: TransportOpener,
    ops = new ConntrackOps(),
  ) {
    super(socket, ops, ConntrackPromises);
  }

  /** Like promises.list (kept for callers written before `promises`). `conntrack -L ...` */
  listAsync(filter: ConntrackFilter = {}, opts: DumpOptions = {}): Promise<DumpList<ConntrackEntry>> {
    return this.promises.list(filter, opts);
  }

  /** Like promises.delete (kept for callers written before `promises`). `conntrack -D ...` */
  deleteAsync(filter: ConntrackFilter = {}, opts: DumpOptions = {}): Promise<number> {
    return this.promises.delete(filter, opts);
  }

  /**
   * Follows new, changed and destroyed entries (those matching `filter`); after lost events the
   * table is dumped again and delivered with the resync event. `conntrack -E [-e NEW,UPDATES,DESTROY] [filters]`
   */
  events(opts: ConntrackEventOptions & { filter?: ConntrackFilter } = {}): ConntrackMonitor {
    const { filter = {}, ...rest } = opts;
    const f = checkFilter(filter);
    const opener = this.opener;
    if (!opener) throw new ValidationError('conntrack', 'this handle cannot open event sockets: create it with Conntrack.open or openConntrackIn');
    const groups = (rest.types ?? ['new', 'update', 'destroy']).map((t) => NFNLGRP_CONNTRACK[t]);
    const transport = opener({ protocol: NETLINK.NETFILTER, groups, receiveBufferSize: rest.receiveBufferSize ?? 4 * 2 ** 20 });
    if (rest.resync === 'report') return new ConntrackMonitor(transport, rest, f);
    let dumper: Conntrack | undefined;
    const dump = async (): Promise<ConntrackEntry[]> => {
      dumper ??= new Conntrack(new NetlinkSocket(opener(socketOptions({})), socketOptions({})));
      return [...(await dumper.promises.list(filter, { retries: 3 }))];
    };
    return new ConntrackMonitor(transport, rest, f, dump, () => dumper?.close());
  }
}

export interface ConntrackPromises extends PromiseMethods<ConntrackOps> {}

/** Every conntrack operation returning a promise (`ct.promises`); the socket is used from anywhere, never switching netns. */
export class ConntrackPromises extends PromiseHandle<ConntrackOps> {
  /** Wraps an open ctnetlink socket; the synchronous Conntrack on the same socket shares its queue. */
  constructor(socket: NetlinkSocket, ops = new ConntrackOps()) {
    super(socket, ops);
  }
}

defineOperations(CONNTRACK_OPERATIONS, Conntrack, ConntrackPromises);

/** The options of a ctnetlink socket: the protocol, its message names, a receive buffer for large dumps. */
function socketOptions(opts: SocketOptions): SocketOptions {
  return { receiveBufferSize: DEFAULT_RCVBUF, ...opts, protocol: NETLINK.NETFILTER, typeName: opts.typeName ?? ctnlTypeName };
}

/** The decoder of a dump: entries of the filter, others skipped (the kernel may not have filtered them). */
function keep(f: CheckedFilter): (m: RawMessage) => ConntrackEntry | undefined {
  return (m) => {
    if (m.type !== ctMsgType(IPCTNL_MSG.NEW)) return undefined;
    const e = decodeConntrack(m);
    return filterMatches(e, f) ? e : undefined;
  };
}

/** Whether a dump failed because the kernel refused its CTA_FILTER part (kernels before 5.8 or an ICMP type it cannot invert). */
function refusedFilter(e: unknown, attrs: CtAttrs): boolean {
  return attrs.filter !== undefined && e instanceof NetlinkError && (e.code === 'EINVAL' || e.code === 'EOPNOTSUPP');
}

function withoutTupleFilter(attrs: CtAttrs): CtAttrs {
  const { orig: _o, reply: _r, filter: _f, ...rest } = attrs;
  return rest;
}

function countDeleted(results: readonly { error?: NetlinkError }[]): number {
  let n = 0;
  for (const r of results) {
    if (!r.error) n++;
    else if (r.error.code !== 'ENOENT') throw r.error;
  }
  return n;
}

