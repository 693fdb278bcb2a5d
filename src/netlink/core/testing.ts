/**
 * Test helpers for code built on tsnetlink, without root or a kernel (the role of
 * mdlayher/netlink's nltest): a fake kernel behind the Transport seam, reply builders,
 * and a parser for the annotated hex fixtures this project captures from iproute2.
 *
 *   const sock = dial((req) => req.type === RTM.GETLINK ? dumpReply(req, [linkBytes]) : [ack(req)]);
 *   const rt = new Rtnl(sock);
 */
import { NLM_F, NLMSG, NLMSGERR_ATTR } from './constants.js';
import { OverrunError } from '../../errors.js';
import { align4 } from './attr.js';
import { encode, splitMessages, type RawMessage, type Request } from './message.js';
import { NetlinkSocket, type SocketOptions, type Transport } from './socket.js';

/** The port id the fake kernel gives its socket. */
export const FAKE_PORT = 4242;

/** One netlink message as bytes: header fields and payload (padded to 4 bytes). */
export function message(type: number, flags: number, seq: number, payload: Buffer, pid = FAKE_PORT): Buffer {
  const b = Buffer.alloc(16 + align4(payload.length));
  b.writeUInt32LE(16 + payload.length, 0);
  b.writeUInt16LE(type, 4);
  b.writeUInt16LE(flags, 6);
  b.writeUInt32LE(seq >>> 0, 8);
  b.writeUInt32LE(pid >>> 0, 12);
  payload.copy(b, 16);
  return b;
}

/** The bytes after the nlmsghdr of a request built by this library (a reply body made from a request builder). */
export function payloadOf(req: Request): Buffer {
  return encode(req).subarray(16);
}

/** What the kernel answers for the request: NLMSG_ERROR with `errno` (0 is an ack), the request header echoed, optional extended ack. */
export function ack(req: RawMessage, errno = 0, ext: { message?: string; offset?: number } = {}): Buffer {
  const tlvs: Buffer[] = [];
  if (ext.message !== undefined) {
    const t = Buffer.alloc(4 + align4(Buffer.byteLength(ext.message) + 1));
    t.writeUInt16LE(4 + Buffer.byteLength(ext.message) + 1, 0);
    t.writeUInt16LE(NLMSGERR_ATTR.MSG, 2);
    t.write(ext.message, 4);
    tlvs.push(t);
  }
  if (ext.offset !== undefined) {
    const t = Buffer.alloc(8);
    t.writeUInt16LE(8, 0);
    t.writeUInt16LE(NLMSGERR_ATTR.OFFS, 2);
    t.writeUInt32LE(ext.offset, 4);
    tlvs.push(t);
  }
  const p = Buffer.alloc(20);
  p.writeInt32LE(-Math.abs(errno), 0);
  p.writeUInt32LE(req.len, 4);
  p.writeUInt16LE(req.type, 8);
  p.writeUInt16LE(req.flags, 10);
  p.writeUInt32LE(req.seq, 12);
  p.writeUInt32LE(req.pid, 16);
  return message(NLMSG.ERROR, NLM_F.CAPPED | (tlvs.length ? NLM_F.ACK_TLVS : 0), req.seq, Buffer.concat([p, ...tlvs]), req.pid || FAKE_PORT);
}

/** A reply message of `type` to the request (an echo, a GET answer), payload given as bytes or as a request body. */
export function reply(req: RawMessage, type: number, body: Buffer | Request, flags = 0): Buffer {
  return message(type, flags, req.seq, Buffer.isBuffer(body) ? body : payloadOf(body), req.pid || FAKE_PORT);
}

/** NLMSG_DONE ending a dump (with an error code, for a dump that failed part-way). */
export function done(req: RawMessage, errno = 0): Buffer {
  const p = Buffer.alloc(4);
  p.writeInt32LE(-Math.abs(errno));
  return message(NLMSG.DONE, NLM_F.MULTI, req.seq, p, req.pid || FAKE_PORT);
}

/**
 * A whole dump answer: each body as an NLM_F_MULTI message of `type` (or a ready message when
 * given as a RawMessage-shaped buffer with its header), then NLMSG_DONE; `perDatagram` bodies per datagram.
 */
export function dumpReply(req: RawMessage, type: number, bodies: readonly (Buffer | Request)[], opts: { perDatagram?: number; flags?: number } = {}): Buffer[] {
  const msgs = bodies.map((b) => reply(req, type, b, NLM_F.MULTI | (opts.flags ?? 0)));
  const per = opts.perDatagram ?? 16;
  const out: Buffer[] = [];
  for (let i = 0; i < msgs.length; i += per) out.push(Buffer.concat(msgs.slice(i, i + per)));
  out.push(done(req));
  return out;
}

/** Decides the fake kernel's answer to one request message: the datagrams to queue. */
export type Handler = (req: RawMessage, kernel: FakeKernel) => Buffer[];

/** A Transport that answers requests with a handler instead of a kernel. */
export class FakeKernel implements Transport {
  readonly portId = FAKE_PORT;
  /** Datagrams waiting to be received. */
  readonly queue: Buffer[] = [];
  /** Every request message received, in order. */
  readonly sent: RawMessage[] = [];
  closed = false;
  sendAsync?: (buf: Buffer) => Promise<void>;

  constructor(private readonly handler: Handler = (req) => [ack(req)]) {}

  send(buf: Buffer): void {
    for (const m of splitMessages(buf)) {
      this.sent.push({ ...m, payload: Buffer.from(m.payload) });
      this.queue.push(...this.handler(m, this));
    }
  }

  private watcher: (() => void) | undefined;
  /** Datagram positions at which receive() fails with ENOBUFS, as a kernel whose socket buffer overflowed. */
  overrunAt = new Set<number>();
  private received = 0;

  /** Queues a datagram as if the kernel sent it unprompted (a multicast event, seq 0, port 0). */
  notify(type: number, body: Buffer | Request, flags = 0): void {
    this.queue.push(message(type, flags, 0, Buffer.isBuffer(body) ? body : payloadOf(body), 0));
    const w = this.watcher;
    if (w) setImmediate(w);
  }

  watch(onReadable: () => void): () => Promise<void> {
    this.watcher = onReadable;
    if (this.queue.length) setImmediate(onReadable);
    return async () => {
      this.watcher = undefined;
    };
  }

  receive(): Buffer | null {
    if (this.overrunAt.delete(this.received)) throw new OverrunError();
    const b = this.queue.shift() ?? null;
    if (b) this.received++;
    return b;
  }

  close(): void {
    this.closed = true;
  }
}

/** A NetlinkSocket on a fake kernel: `new Rtnl(dial(handler))` tests code that uses Rtnl without root. */
export function dial(handler?: Handler, opts: SocketOptions = {}): NetlinkSocket & { transport: FakeKernel } {
  return new NetlinkSocket(new FakeKernel(handler), { timeoutMs: 10, ...opts }) as NetlinkSocket & { transport: FakeKernel };
}

/** Reads the bytes of an annotated hex fixture (hex pairs; `#` comments to the end of the line). */
export function parseHexFixture(text: string): Buffer {
  const hex = text
    .split('\n')
    .map((l) => l.replace(/#.*$/, ''))
    .join(' ')
    .trim()
    .split(/\s+/)
    .filter(Boolean);
  return Buffer.from(hex.join(''), 'hex');
}
