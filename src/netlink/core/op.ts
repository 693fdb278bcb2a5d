/**
 * Operations written once, run two ways. An operation is a generator that yields the netlink
 * exchanges it needs (a batch of acked requests, a dump, an exchange without acks) and gets
 * their results back; between them it builds requests and decodes replies. runSync drives it
 * with the socket's blocking calls, runAsync with its queued async ones, so every Rtnl method
 * and its promise twin share one body: the request builders, the decoders and the steps in
 * between (a name lookup, a fallback read) are the same code; only the transport differs.
 */
import type { RawMessage, Request } from './message.js';
import type { BatchResult, DumpList, DumpOptions, Exchanged, NetlinkSocket } from './socket.js';

/** One exchange an operation asks its driver for. */
export type Step =
  | { kind: 'batch'; reqs: readonly Request[]; context: string | undefined }
  | { kind: 'dump'; req: Request; decode: (m: RawMessage) => unknown; opts: DumpOptions }
  | { kind: 'exchange'; reqs: readonly Request[]; done: (m: RawMessage, index: number) => boolean };

/** An operation returning T: run it with runSync or runAsync. */
export type Op<T> = Generator<Step, T, unknown>;

/** Sends requests pipelined, each with NLM_F_ACK; each result carries its own error (NetlinkSocket.batch). */
export function* batchOp(reqs: readonly Request[], context?: string): Op<BatchResult[]> {
  return (yield { kind: 'batch', reqs, context }) as BatchResult[];
}

/** Sends one request and returns its echo replies; a refusal is thrown as NetlinkError (NetlinkSocket.request). */
export function* requestOp(req: Request, context?: string): Op<RawMessage[]> {
  const [r] = yield* batchOp([req], context);
  if (r?.error) throw r.error;
  return r?.replies ?? [];
}

/** Runs a dump, decoding each message (NetlinkSocket.dump). */
export function* dumpOp<T>(req: Request, decode: (m: RawMessage) => T | undefined, opts: DumpOptions = {}): Op<DumpList<T>> {
  return (yield { kind: 'dump', req, decode, opts }) as DumpList<T>;
}

/** Sends requests as built and reads replies until `done` (NetlinkSocket.exchange). */
export function* exchangeOp(reqs: readonly Request[], done: (m: RawMessage, index: number) => boolean): Op<Exchanged> {
  return (yield { kind: 'exchange', reqs, done }) as Exchanged;
}

/** Runs an operation with blocking calls on the JS thread. */
export function runSync<T>(socket: NetlinkSocket, op: Op<T>): T {
  let r = op.next();
  while (!r.done) {
    let v: unknown;
    try {
      const s = r.value;
      v = s.kind === 'batch' ? socket.batch(s.reqs, s.context) : s.kind === 'dump' ? socket.dump(s.req, s.decode, s.opts) : socket.exchange(s.reqs, s.done);
    } catch (e) {
      // Thrown into the operation, so its finally blocks run (a pinned bpf program's fd is closed).
      r = op.throw(e);
      continue;
    }
    r = op.next(v);
  }
  return r.value;
}

/**
 * Runs an operation with the socket's async calls: sends on a libuv worker thread, replies read
 * as the poller reports the fd readable. Each step waits its turn in the socket's queue, so
 * concurrent operations never read one another's replies.
 */
export async function runAsync<T>(socket: NetlinkSocket, op: Op<T>): Promise<T> {
  let r = op.next();
  while (!r.done) {
    let v: unknown;
    try {
      const s = r.value;
      v = await (s.kind === 'batch' ? socket.batchAsync(s.reqs, s.context) : s.kind === 'dump' ? socket.dumpAsync(s.req, s.decode, s.opts) : socket.exchangeAsync(s.reqs, s.done));
    } catch (e) {
      r = op.throw(e);
      continue;
    }
    r = op.next(v);
  }
  return r.value;
}
