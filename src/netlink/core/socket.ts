/**
 * NetlinkSocket: request/ack, dumps and pipelined batches over any netlink protocol
 * (NETLINK_ROUTE by default; NETLINK_GENERIC, NETLINK_NETFILTER, ...).
 *
 * Synchronous by design: rtnetlink requests are handled inside the kernel's sendmsg, so the
 * reply is usually queued before sendto() returns and a blocking read costs nothing; and a
 * synchronous socket is what lets a namespace switch stay inside one critical section.
 * Every wait still has a deadline, so a lost reply is a TimeoutError, never a hang.
 */
import { nextTurn } from '../../sys/turn.js';
import { CodecError, DumpInterruptedError, NetlinkError, OverrunError, SysError, TimeoutError, ValidationError } from '../../errors.js';
import * as libc from '../../sys/libc.js';
import { NETLINK, NETLINK_OPT, NLM_F, NLMSG, NLMSGERR_ATTR, messageTypeName } from './constants.js';
import { encodeBatch, splitMessages, NLMSG_HDRLEN, type RawMessage, type Request } from './message.js';
import { rawAttrs, align4 } from './attr.js';
import { unwatchFd, watchFd } from './poller.js';

/** The kernel side of a socket; tests can stand in a fake that replays captured replies. */
export interface Transport {
  /** Our netlink port id (nl_pid), as assigned by the kernel. */
  readonly portId: number;
  send(buf: Buffer): void;
  /** Like send, off the JS thread (optional: transports without it are used synchronously). */
  sendAsync?(buf: Buffer): Promise<void>;
  /** One datagram, or null when none arrived within `timeoutMs`. */
  receive(timeoutMs: number): Buffer | null;
  /**
   * Like receive, but waits for the datagram without blocking the JS thread (optional: receive
   * is used otherwise). With `kernelWork`, the receive itself runs off the JS thread too: the
   * kernel builds each part of a dump after the first inside recvmsg (a conntrack dump walks its
   * whole hash table there, a route dump formats the next few hundred routes).
   */
  receiveAsync?(timeoutMs: number, kernelWork?: boolean): Promise<Buffer | null>;
  /**
   * Calls `onReadable` (on the JS thread) whenever a datagram may be waiting, until the returned
   * function is called; its promise settles once the transport may be closed. Event monitors use it.
   */
  watch?(onReadable: () => void): () => Promise<void>;
  close(): void;
}

/** Options for opening a socket. */
export interface SocketOptions {
  /** Netlink protocol: NETLINK.ROUTE (default), NETLINK.GENERIC, NETLINK.NETFILTER, ... */
  protocol?: number;
  /** Deadline for each reply, in milliseconds (default 5000). */
  timeoutMs?: number;
  /**
   * SO_RCVBUF in bytes (SO_RCVBUFFORCE when privileged). Raise it for large dumps and busy
   * monitors: when it overflows the kernel drops messages and the next receive fails with ENOBUFS.
   */
  receiveBufferSize?: number;
  /** Multicast groups to join (NETLINK_ADD_MEMBERSHIP), for event monitors. */
  groups?: readonly number[];
  /** Names message types in errors (rtnetlink's RTM_* names by default). */
  typeName?: TypeNamer;
}

/** Names a message type for errors ('RTM_NEWLINK'); protocols other than rtnetlink pass their own. */
export type TypeNamer = (type: number) => string;

const MIN_RECV_BUF = 32 * 1024;
/**
 * The buffer a dump's part is read into off the JS thread, in one call. The kernel builds a part
 * of at most 32 KB, or of its family's min_dump_alloc when that is larger (a link dump sizes it
 * by its largest link), so this holds any part but a link dump's with links of huge messages.
 */
const DUMP_RECV_BUF = 64 * 1024 + 4096;
/** Linux's EMSGSIZE: a datagram longer than the buffer it was read into. */
const EMSGSIZE = 90;
/** Requests per sendto in a batch. */
const MAX_BATCH = 32;

/** A real NETLINK_ROUTE socket in the calling thread's current network namespace. */
export class KernelTransport implements Transport {
  readonly fd: number;
  readonly portId: number;
  private buf = Buffer.alloc(MIN_RECV_BUF);
  /** The least size of `buf` for a dump's part (DUMP_RECV_BUF; larger once a part did not fit). */
  private dumpBufBytes = DUMP_RECV_BUF;
  private readonly from = Buffer.alloc(12);
  private static readonly kernelAddr = (() => {
    const a = Buffer.alloc(12);
    a.writeUInt16LE(libc.AF_NETLINK, 0);
    return a;
  })();

  readonly protocol: number;

  constructor(opts: SocketOptions = {}) {
    this.protocol = opts.protocol ?? NETLINK.ROUTE;
    const fd = libc.socket(libc.AF_NETLINK, libc.SOCK_RAW | libc.SOCK_CLOEXEC, this.protocol);
    try {
      // Extended acks carry the kernel's reason; CAP_ACK keeps error replies small;
      // strict checking makes rtnetlink reject malformed dump requests instead of guessing.
      libc.setsockoptInt(fd, libc.SOL_NETLINK, NETLINK_OPT.EXT_ACK, 1);
      libc.setsockoptInt(fd, libc.SOL_NETLINK, NETLINK_OPT.CAP_ACK, 1);
      if (this.protocol === NETLINK.ROUTE) libc.setsockoptInt(fd, libc.SOL_NETLINK, NETLINK_OPT.GET_STRICT_CHK, 1);
      if (opts.receiveBufferSize !== undefined) {
        try {
          libc.setsockoptInt(fd, libc.SOL_SOCKET, libc.SO_RCVBUFFORCE, opts.receiveBufferSize);
        } catch {
          libc.setsockoptInt(fd, libc.SOL_SOCKET, libc.SO_RCVBUF, opts.receiveBufferSize);
        }
      }
      const local = Buffer.alloc(12);
      local.writeUInt16LE(libc.AF_NETLINK, 0);
      libc.bind(fd, local);
      // After bind: bind() rewrites the first 32 group bits from nl_groups, which is 0 here.
      for (const g of opts.groups ?? []) libc.setsockoptInt(fd, libc.SOL_NETLINK, NETLINK_OPT.ADD_MEMBERSHIP, g);
      this.portId = libc.getsockname(fd, 12).readUInt32LE(4);
    } catch (e) {
      libc.close(fd);
      throw e;
    }
    this.fd = fd;
  }

  send(buf: Buffer): void {
    libc.sendto(this.fd, buf, KernelTransport.kernelAddr);
  }

  async sendAsync(buf: Buffer): Promise<void> {
    await libc.sendtoAsync(this.fd, buf, KernelTransport.kernelAddr);
  }

  receive(timeoutMs: number): Buffer | null {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      // Peek with MSG_TRUNC to learn the datagram's real size before taking it off the queue,
      // so a message larger than our buffer is never read truncated (pitfall 2).
      let n: number;
      try {
        n = libc.recvNonBlocking(this.fd, this.buf, libc.MSG_PEEK | libc.MSG_TRUNC);
      } catch (e) {
        throw enobufs(e);
      }
      if (n >= 0) {
        if (n > this.buf.length) this.buf = Buffer.alloc(align4(n) + 4096);
        const got = libc.recvfromNonBlocking(this.fd, this.buf, 0, this.from);
        if (got < 0) continue;
        // Only the kernel (nl_pid 0) may answer; anything else is dropped.
        if (this.from.readUInt32LE(4) !== 0) continue;
        return Buffer.from(this.buf.subarray(0, got));
      }
      const left = deadline - performance.now();
      if (left <= 0) return null;
      libc.pollIn(this.fd, left);
    }
  }

  /**
   * Takes a queued datagram at once; otherwise the libuv poller watches the fd and the JS thread
   * runs on until it is readable or the deadline passes. With `kernelWork` (a dump's parts), each
   * recvmsg runs on a libuv worker thread, since that is where the kernel builds the next part.
   */
  async receiveAsync(timeoutMs: number, kernelWork = false): Promise<Buffer | null> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const got = kernelWork ? await this.receiveOffThread() : this.receive(0);
      if (got) return got;
      const left = deadline - performance.now();
      if (left <= 0) return null;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        watchFd(this.fd, () => {
          clearTimeout(timer);
          resolve();
        });
      });
      await unwatchFd(this.fd);
    }
  }

  /**
   * One queued datagram of a dump read on a libuv worker thread, or null when none is queued. One
   * read into a buffer that holds any part the kernel builds (DUMP_RECV_BUF): a peek first to learn
   * the size cost a second worker-thread round trip per part (a 20,000-route dump through the
   * promise API takes 0.80-0.92 of the time without it: bench/tools/ab-dump.mjs). MSG_TRUNC reports a longer datagram's real size; that
   * one is lost, so the buffer grows to fit and the read fails with EMSGSIZE, which dumpAsync
   * answers by starting the dump again (pitfall 2: never take a truncated part as the whole).
   */
  private async receiveOffThread(): Promise<Buffer | null> {
    if (this.buf.length < this.dumpBufBytes) this.buf = Buffer.allocUnsafe(this.dumpBufBytes);
    for (;;) {
      let n: number;
      try {
        n = await libc.recvfromAsync(this.fd, this.buf, libc.MSG_TRUNC, this.from);
      } catch (e) {
        throw enobufs(e);
      }
      if (n < 0) return null;
      if (n > this.buf.length) {
        const had = this.buf.length;
        this.dumpBufBytes = align4(n) + 4096;
        this.buf = Buffer.allocUnsafe(this.dumpBufBytes);
        throw new SysError('recvmsg', EMSGSIZE, `a dump's part of ${n} bytes did not fit the ${had}-byte buffer; it grew to fit`);
      }
      // Only the kernel (nl_pid 0) may answer; anything else is dropped.
      if (this.from.readUInt32LE(4) !== 0) continue;
      return Buffer.from(this.buf.subarray(0, n));
    }
  }

  watch(onReadable: () => void): () => Promise<void> {
    watchFd(this.fd, onReadable);
    return () => unwatchFd(this.fd);
  }

  close(): void {
    libc.close(this.fd);
  }
}

function enobufs(e: unknown): unknown {
  if (e instanceof SysError && e.code === 'ENOBUFS') return new OverrunError();
  return e;
}

/** The outcome of one request of a pipelined batch. */
export interface BatchResult {
  /** Messages the kernel sent for this request before its ack (NLM_F_ECHO replies). */
  replies: RawMessage[];
  error?: NetlinkError;
}

/** Options for a dump. */
export interface DumpOptions<T = any> {
  /** Retry an interrupted dump up to this many times before throwing (default 0; not with `each`). */
  retries?: number;
  /**
   * Called with each item as it is decoded, instead of collecting it: the dump's list comes back
   * empty (its `undecodable` is still kept), so a table of a million routes is walked in the
   * memory of one datagram. Return false to stop: the rest of the dump is read and dropped. An
   * interrupted dump cannot be retried once items were handed out: it throws
   * DumpInterruptedError at its end, and the caller starts again. (vishvananda/netlink's
   * RouteListFilteredIter, pyroute2's generators.)
   */
  each?: (item: T) => boolean | void;
}

/** A dumped message that its decoder could not read: kept with its bytes and the reason, never dropped. */
export interface Undecodable {
  message: RawMessage;
  error: CodecError;
}

/** A dump's result: the decoded items, and in `undecodable` every message that failed to decode. */
export type DumpList<T> = T[] & { undecodable: Undecodable[] };

/** Parses an NLMSG_ERROR payload; errno 0 is an ack. */
export function parseError(msg: RawMessage, context?: string, typeName: TypeNamer = messageTypeName): NetlinkError | null {
  const p = msg.payload;
  if (p.length < 4) throw new CodecError('NLMSG_ERROR shorter than its error code');
  const err = p.readInt32LE(0);
  if (err === 0) return null;
  let op = 'netlink';
  let kernelMessage: string | undefined;
  let offset: number | undefined;
  if (p.length >= 4 + NLMSG_HDRLEN) {
    op = typeName(p.readUInt16LE(8));
    const origLen = p.readUInt32LE(4);
    const tlvStart = 4 + ((msg.flags & NLM_F.CAPPED) !== 0 ? NLMSG_HDRLEN : align4(origLen));
    if ((msg.flags & NLM_F.ACK_TLVS) !== 0 && tlvStart <= p.length) {
      for (const a of rawAttrs(p, tlvStart, p.length)) {
        if (a.type === NLMSGERR_ATTR.MSG) kernelMessage = a.data.toString('utf8').replace(/\0.*$/s, '');
        if (a.type === NLMSGERR_ATTR.OFFS && a.data.length >= 4) offset = a.data.readUInt32LE(0);
      }
    }
  }
  return new NetlinkError(op, err, kernelMessage, offset, context);
}

/**
 * What a reply reader asks its driver for: the next datagram's messages, for errors named `op`;
 * with `wait` false only one already queued (null when there is none).
 */
interface Want {
  op: string;
  wait: boolean;
  /** The kernel does work inside the receive (a dump's next part is built there). */
  kernelWork?: boolean;
}

/**
 * How many messages of a datagram the async driver hands a reader at a time. A dump's part holds
 * up to ~32 KiB of messages (a few hundred conntrack entries): decoded whole it could keep the JS
 * thread for milliseconds, so the driver checks its slice between handfuls.
 */
const HANDFUL = 16;

/**
 * A reply reader: the matching logic of one exchange, written once as a generator and driven
 * either by a blocking receive (the synchronous forms) or by a libuv-watched one (the async forms).
 */
type Reader<T> = Generator<Want, T, RawMessage[] | null>;

/** A batch waiting in the async queue; consecutive ones go out together in one sendto. */
interface BatchJob {
  kind: 'batch';
  reqs: readonly Request[];
  context: string | undefined;
  resolve: (r: BatchResult[]) => void;
  reject: (e: unknown) => void;
}

/** Any other exchange waiting in the async queue (a dump, a request without ack). */
interface RunJob {
  kind: 'run';
  run: () => Promise<unknown>;
  resolve: (r: unknown) => void;
  reject: (e: unknown) => void;
}

/** How long the async reader may keep the JS thread before letting other callbacks run. */
const SLICE_MS = 1;

/** A netlink socket with per-socket sequence numbers. */
export class NetlinkSocket {
  private seq: number;
  readonly timeoutMs: number;
  private readonly typeName: TypeNamer;
  private closed = false;
  /**
   * The async queue: one exchange owns the socket at a time (its replies are read by sequence
   * number, and a concurrent reader would take and drop them), so async calls wait their turn
   * here and the synchronous forms refuse to run while anything is queued.
   */
  private readonly jobs: (BatchJob | RunJob)[] = [];
  private pumping = false;

  /** Opens a socket in the calling thread's current netns (see ns/ for other namespaces). */
  static open(opts: SocketOptions = {}): NetlinkSocket {
    return new NetlinkSocket(new KernelTransport(opts), opts);
  }

  constructor(
    readonly transport: Transport,
    opts: SocketOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.typeName = opts.typeName ?? messageTypeName;
    // A random start keeps a reopened socket from matching a stale reply of its predecessor.
    this.seq = (Math.random() * 0x7fffffff) >>> 0;
  }

  private closeWhenIdle = false;

  /** True while async work is queued or running on this socket. */
  get busy(): boolean {
    return this.pumping || this.jobs.length > 0;
  }

  /** Closes the socket; idempotent. With async work queued, closes once the queue has run. */
  close(): void {
    if (this.closed) return;
    if (this.busy) {
      // A worker thread may still be sending on the fd: closing now could hit a reused fd.
      this.closeWhenIdle = true;
      return;
    }
    this.closed = true;
    this.transport.close();
  }

  private nextSeq(count: number): number {
    const first = this.seq;
    this.seq = (this.seq + count) >>> 0;
    return first;
  }

  private take(want: Want, dgram: Buffer | null): RawMessage[] | null {
    if (dgram !== null) return splitMessages(dgram);
    if (want.wait) throw new TimeoutError(want.op, this.timeoutMs);
    return null;
  }

  /** Drives a reader with blocking receives (each bounded by the deadline). */
  private readSync<T>(reader: Reader<T>): T {
    let r = reader.next();
    while (!r.done) {
      let got: RawMessage[] | null;
      try {
        if (this.closed) throw new SysError(r.value.op, 9, 'socket closed');
        got = this.take(r.value, this.transport.receive(r.value.wait ? this.timeoutMs : 0));
      } catch (e) {
        r = reader.throw(e);
        continue;
      }
      r = reader.next(got);
    }
    return r.value;
  }

  /**
   * Drives a reader with receives that wait on the libuv poller, and gives the event loop a
   * turn after each SLICE_MS of its own work. Its own clock, not the turn clock the bridge
   * operations share (sys/turn.ts): on that one a dump read while other operations keep the
   * thread busy would yield after every part, and a dump that takes longer is more often
   * interrupted by the changes those operations make (a link dump during 40 connects at once
   * was, four times in a row).
   */
  private async readAsync<T>(reader: Reader<T>): Promise<T> {
    let slice = performance.now();
    // Checked synchronously, so a young slice goes on without even a microtask's delay.
    const spent = (): boolean => performance.now() - slice > SLICE_MS;
    const takeTurn = async (): Promise<void> => {
      await nextTurn();
      slice = performance.now();
    };
    // The rest of a long datagram, handed over HANDFUL messages at a time.
    let rest: RawMessage[] = [];
    let at = 0;
    let r = reader.next();
    while (!r.done) {
      let got: RawMessage[] | null;
      if (at < rest.length) {
        if (spent()) await takeTurn();
        r = reader.next(rest.slice(at, (at += HANDFUL)));
        continue;
      }
      try {
        if (this.closed) throw new SysError(r.value.op, 9, 'socket closed');
        const t = r.value.wait ? this.timeoutMs : 0;
        got = this.take(r.value, this.transport.receiveAsync ? await this.transport.receiveAsync(t, r.value.kernelWork) : this.transport.receive(t));
      } catch (e) {
        r = reader.throw(e);
        continue;
      }
      // Received on a worker thread, the event loop ran its timers and I/O meanwhile.
      if (r.value.kernelWork) slice = performance.now();
      else if (spent()) await takeTurn();
      if (got !== null && got.length > HANDFUL) {
        rest = got;
        at = HANDFUL;
        got = got.slice(0, HANDFUL);
      }
      r = reader.next(got);
    }
    return r.value;
  }

  private async sendAsync(buf: Buffer): Promise<void> {
    if (this.transport.sendAsync) await this.transport.sendAsync(buf);
    else this.transport.send(buf);
  }

  /** Queues async work; it runs once everything queued before it has settled. */
  private enqueue<T>(run: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.jobs.push({ kind: 'run', run, resolve: resolve as (r: unknown) => void, reject });
      this.kick();
    });
  }

  /**
   * Starts the queue on a microtask, so that the calls made in the same tick are all queued
   * before the first is sent and can share its sendto.
   */
  private kick(): void {
    if (this.pumping) return;
    this.pumping = true;
    queueMicrotask(() => void this.pump());
  }

  /**
   * Runs the async queue in order. Batches queued back to back (the single requests of many
   * concurrent calls) are pipelined: up to 32 requests share one sendto, each ack matched to its
   * own request by sequence number, each error delivered to its own caller.
   */
  private async pump(): Promise<void> {
    try {
      for (let job = this.jobs.shift(); job; job = this.jobs.shift()) {
        if (job.kind === 'run') {
          try {
            job.resolve(await job.run());
          } catch (e) {
            job.reject(e);
          }
          continue;
        }
        const group = [job];
        let n = job.reqs.length;
        for (let next = this.jobs[0]; next?.kind === 'batch' && n + next.reqs.length <= MAX_BATCH; next = this.jobs[0]) {
          group.push(this.jobs.shift() as BatchJob);
          n += next.reqs.length;
        }
        try {
          const res = await this.sendBatchAsync(
            group.flatMap((j) => j.reqs),
            group.flatMap((j) => j.reqs.map(() => j.context)),
          );
          let i = 0;
          for (const j of group) {
            j.resolve(res.slice(i, i + j.reqs.length));
            i += j.reqs.length;
          }
        } catch (e) {
          for (const j of group) j.reject(e);
        }
      }
    } finally {
      this.pumping = false;
      if (this.closeWhenIdle) this.close();
    }
  }

  /**
   * Sends several requests in one sendto (32 at most per sendto) and reads every ack (pipelining). Each request gets
   * NLM_F_ACK; results come back in request order, each with its own error, so one failure
   * maps to the request that caused it. The kernel keeps going after a failed request.
   */
  batch(reqs: readonly Request[], context?: string): BatchResult[] {
    this.assertIdle();
    const out: BatchResult[] = [];
    // Chunks keep the replies of one sendto well inside the receive buffer: 200 link lookups
    // at once overflow the default SO_RCVBUF and the kernel drops them (ENOBUFS).
    for (let i = 0; i < reqs.length; i += MAX_BATCH) out.push(...this.batchChunk(reqs.slice(i, i + MAX_BATCH), context));
    return out;
  }

  /**
   * Like batch(), but the kernel's work happens on a worker thread (koffi's asynchronous
   * sendto), so slow requests (link deletion waits for RCU) do not block the event loop, and
   * the acks are read from the fd as libuv reports it readable. Concurrent calls are queued and
   * pipelined (see pump); the synchronous forms refuse to run until the queue is empty.
   */
  batchAsync(reqs: readonly Request[], context?: string): Promise<BatchResult[]> {
    return new Promise<BatchResult[]>((resolve, reject) => {
      // Checked before queueing, so that a bad request fails alone, not the batch it would join.
      for (const r of reqs) assertResolved(r);
      this.jobs.push({ kind: 'batch', reqs, context, resolve, reject });
      this.kick();
    });
  }

  private async sendBatchAsync(reqs: readonly Request[], contexts: readonly (string | undefined)[]): Promise<BatchResult[]> {
    const out: BatchResult[] = [];
    for (let i = 0; i < reqs.length; i += MAX_BATCH) {
      const chunk = reqs.slice(i, i + MAX_BATCH);
      const first = this.nextSeq(chunk.length);
      await this.sendAsync(this.encodeChunk(chunk, first));
      out.push(...(await this.readAsync(this.collect(chunk, first, contexts.slice(i, i + MAX_BATCH)))));
    }
    return out;
  }

  private assertIdle(): void {
    if (this.busy) throw new ValidationError('socket', 'asynchronous work is in flight on this socket; await it, or give synchronous work a socket of its own');
  }

  private encodeChunk(reqs: readonly Request[], first: number): Buffer {
    for (const r of reqs) assertResolved(r);
    return encodeBatch(
      reqs.map((r) => ({ ...r, flags: r.flags | NLM_F.REQUEST | NLM_F.ACK })),
      first,
      this.transport.portId,
    );
  }

  private batchChunk(reqs: readonly Request[], context?: string): BatchResult[] {
    if (reqs.length === 0) return [];
    const first = this.nextSeq(reqs.length);
    this.transport.send(this.encodeChunk(reqs, first));
    return this.readSync(this.collect(reqs, first, context));
  }

  /**
   * Reads the acks (and echo replies) of requests sent with sequence numbers first, first + 1, ...
   * `context` names what errors are about: one text for all, or one per request.
   */
  private *collect(reqs: readonly Request[], first: number, context?: string | readonly (string | undefined)[]): Reader<BatchResult[]> {
    const results: BatchResult[] = reqs.map(() => ({ replies: [] }));
    let pending = reqs.length;
    const op = this.typeName(reqs[0]!.type);
    while (pending > 0) {
      for (const m of (yield { op, wait: true }) ?? []) {
        const i = (m.seq - first) >>> 0;
        if (i >= reqs.length || m.pid !== this.transport.portId) continue; // stale reply of an earlier request
        const r = results[i] as BatchResult;
        if (m.type === NLMSG.ERROR) {
          const err = parseError(m, typeof context === 'object' ? context[i] : context, this.typeName);
          if (err) r.error = err;
          pending--;
        } else if (m.type !== NLMSG.NOOP && m.type !== NLMSG.DONE) {
          r.replies.push(m);
        }
      }
    }
    return results;
  }

  /**
   * Sends `reqs` in one datagram exactly as built (their flags plus NLM_F_REQUEST, consecutive
   * sequence numbers from `first`) and reads the replies addressed to them until `done` says
   * the last one came, or until an error was read and nothing more is queued. For protocols
   * that answer a whole batch inside sendmsg and reply to a request without NLM_F_ACK only when
   * it fails (nfnetlink transactions); `index` is the request's position in `reqs`.
   */
  exchange(reqs: readonly Request[], done: (m: RawMessage, index: number) => boolean): Exchanged {
    this.assertIdle();
    const { first, buf, op } = this.exchangeMessage(reqs);
    this.transport.send(buf);
    return this.readSync(this.exchangeReader(reqs.length, first, op, done));
  }

  /** Like exchange(), sent off the JS thread and read as libuv reports the fd readable; queued like batchAsync. */
  exchangeAsync(reqs: readonly Request[], done: (m: RawMessage, index: number) => boolean): Promise<Exchanged> {
    return this.enqueue(async () => {
      const { first, buf, op } = this.exchangeMessage(reqs);
      await this.sendAsync(buf);
      return this.readAsync(this.exchangeReader(reqs.length, first, op, done));
    });
  }

  private exchangeMessage(reqs: readonly Request[]): { first: number; buf: Buffer; op: string } {
    for (const r of reqs) assertResolved(r);
    const first = this.nextSeq(reqs.length);
    const op = reqs.length > 0 ? this.typeName(reqs[Math.min(1, reqs.length - 1)]!.type) : 'netlink';
    return { first, op, buf: encodeBatch(reqs.map((r) => ({ ...r, flags: r.flags | NLM_F.REQUEST })), first, this.transport.portId) };
  }

  private *exchangeReader(count: number, first: number, op: string, done: (m: RawMessage, index: number) => boolean): Reader<Exchanged> {
    const replies: { index: number; message: RawMessage }[] = [];
    let failed = false;
    for (;;) {
      const msgs = yield { op, wait: !failed };
      if (msgs === null) return { first, replies };
      let finished = false;
      for (const m of msgs) {
        const index = (m.seq - first) >>> 0;
        if (index >= count || m.pid !== this.transport.portId) continue;
        replies.push({ index, message: m });
        if (m.type === NLMSG.ERROR && m.payload.length >= 4 && m.payload.readInt32LE(0) !== 0) failed = true;
        if (done(m, index)) finished = true;
      }
      if (finished) return { first, replies };
    }
  }

  /** Sends one request and waits for its ack; throws NetlinkError on refusal. Returns echo replies. */
  request(req: Request, context?: string): RawMessage[] {
    const [r] = this.batch([req], context);
    if (r?.error) throw r.error;
    return r?.replies ?? [];
  }

  /** Like request(), through the async queue (see batchAsync); rejects with the same NetlinkError. */
  async requestAsync(req: Request, context?: string): Promise<RawMessage[]> {
    const [r] = await this.batchAsync([req], context);
    if (r?.error) throw r.error;
    return r?.replies ?? [];
  }

  /**
   * Runs a dump and decodes every message with `decode` (which may return undefined to skip).
   * A message the decoder cannot read (CodecError) is kept in the result's `undecodable` with
   * its bytes, so one odd message never loses the rest of the dump. An interrupted dump
   * (NLM_F_DUMP_INTR: the kernel's tables changed while it was sent) is retried `retries`
   * times, then thrown as DumpInterruptedError carrying the partial result, never silently
   * discarded.
   */
  dump<T>(req: Request, decode: (m: RawMessage) => T | undefined, opts: DumpOptions = {}): DumpList<T> {
    this.assertIdle();
    assertResolved(req);
    const op = this.typeName(req.type);
    for (let attempt = 0; ; attempt++) {
      const seq = this.nextSeq(1);
      this.transport.send(this.dumpMessage(req, seq));
      try {
        return this.readSync(this.collectDump(seq, op, decode, opts.each));
      } catch (e) {
        if (!(e instanceof DumpInterruptedError) || opts.each || attempt >= (opts.retries ?? 0)) throw e;
      }
    }
  }

  /**
   * Like dump(), but the request is sent off the JS thread (koffi's asynchronous sendto): the
   * kernel fills the first part of a dump inside sendmsg, and for some tables (conntrack walks
   * every hash bucket) that is where nearly all the time goes. The rest is read as libuv reports
   * the fd readable, the event loop getting a turn every few milliseconds. Queued like batchAsync.
   */
  dumpAsync<T>(req: Request, decode: (m: RawMessage) => T | undefined, opts: DumpOptions = {}): Promise<DumpList<T>> {
    return this.enqueue(async () => {
      assertResolved(req);
      const op = this.typeName(req.type);
      let resized = 0;
      for (let attempt = 0; ; attempt++) {
        const seq = this.nextSeq(1);
        await this.sendAsync(this.dumpMessage(req, seq));
        try {
          return await this.readAsync(this.collectDump(seq, op, decode, opts.each));
        } catch (e) {
          // A part larger than the receive buffer was lost, and the buffer has grown to fit: the
          // dump starts again, unless items already went to `each` (they would come twice).
          if (e instanceof SysError && e.code === 'EMSGSIZE' && !opts.each && resized++ < 3) {
            attempt--;
            continue;
          }
          if (!(e instanceof DumpInterruptedError) || opts.each || attempt >= (opts.retries ?? 0)) throw e;
        }
      }
    });
  }

  private dumpMessage(req: Request, seq: number): Buffer {
    return encodeBatch([{ ...req, flags: req.flags | NLM_F.REQUEST | NLM_F.DUMP }], seq, this.transport.portId);
  }

  /**
   * Reads one dump's replies. A message the decoder cannot read goes to `undecodable`; a dump the
   * kernel flagged as interrupted is DumpInterruptedError carrying what was read.
   */
  private *collectDump<T>(seq: number, op: string, decode: (m: RawMessage) => T | undefined, each?: (item: T) => boolean | void): Reader<DumpList<T>> {
    const out = Object.assign([] as T[], { undecodable: [] as Undecodable[] });
    let interrupted = false;
    let done = false;
    // Set once `each` asked to stop: the rest is read up to NLMSG_DONE and dropped.
    let stopped = false;
    try {
      while (!done) {
        for (const m of (yield { op, wait: true, kernelWork: true }) ?? []) {
          if (m.seq !== seq || m.pid !== this.transport.portId) continue;
          if ((m.flags & NLM_F.DUMP_INTR) !== 0) interrupted = true;
          if (m.type === NLMSG.DONE) {
            done = true;
            // A dump that failed part-way reports the error in NLMSG_DONE's payload.
            const code = m.payload.length >= 4 ? m.payload.readInt32LE(0) : 0;
            if (code < 0) throw new NetlinkError(op, code);
            break;
          }
          if (m.type === NLMSG.ERROR) {
            done = true;
            const err = parseError(m, undefined, this.typeName);
            if (err) throw err;
            break;
          }
          if (stopped) continue;
          let v: T | undefined;
          try {
            v = decode(m);
          } catch (e) {
            if (!(e instanceof CodecError)) throw e;
            out.undecodable.push({ message: { ...m, payload: Buffer.from(m.payload) }, error: e });
            continue;
          }
          if (v === undefined) continue;
          if (each) stopped = each(v) === false;
          else out.push(v);
        }
      }
    } catch (e) {
      // The kernel keeps dumping until NLMSG_DONE and refuses another dump meanwhile (EBUSY):
      // read the rest so the socket stays usable. Only after a timeout or an overrun, so the
      // async form does this synchronously too.
      if (!done) this.drainDump(seq);
      throw e;
    }
    if (interrupted) throw new DumpInterruptedError<T>(op, out);
    return out;
  }

  /** Reads and drops the rest of an abandoned dump; a socket that cannot be drained is closed. */
  private drainDump(seq: number): void {
    try {
      for (;;) {
        const dgram = this.transport.receive(this.timeoutMs);
        if (dgram === null) throw new TimeoutError('drain', this.timeoutMs);
        for (const m of splitMessages(dgram)) if (m.seq === seq && (m.type === NLMSG.DONE || m.type === NLMSG.ERROR)) return;
      }
    } catch {
      this.closed = true;
      this.transport.close();
    }
  }
}

/** What exchange() read: the first sequence number used, and each reply with its request's position. */
export interface Exchanged {
  first: number;
  replies: { index: number; message: RawMessage }[];
}

/** Refuses a request that still names a link its message can only carry as an ifindex. */
function assertResolved(r: Request): void {
  if (r.pending && r.pending.length > 0) {
    throw new ValidationError('link', `the request names ${r.pending.map((n) => JSON.stringify(n)).join(', ')} where the kernel needs an ifindex: send it through Rtnl, which resolves names, or pass an index or a Link`);
  }
}
