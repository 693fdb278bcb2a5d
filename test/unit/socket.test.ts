/**
 * NetlinkSocket against a fake kernel (the Transport seam): acks, errors with extended acks,
 * stale replies, multipart dumps, NLM_F_DUMP_INTR, deadlines. No root needed.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { NetlinkSocket, type Transport } from '../../src/netlink/core/socket.js';
import { splitMessages, type RawMessage } from '../../src/netlink/core/message.js';
import { NLM_F, NLMSG, RTM } from '../../src/netlink/core/constants.js';
import * as L from '../../src/netlink/route/link.js';
import { DumpInterruptedError, NetlinkError, TimeoutError, CodecError, ValidationError } from '../../src/errors.js';
import { catchError } from '../helpers.js';

const PORT = 4242;

function msg(type: number, flags: number, seq: number, payload: Buffer, pid = PORT): Buffer {
  const b = Buffer.alloc(16 + payload.length + ((4 - (payload.length % 4)) % 4));
  b.writeUInt32LE(16 + payload.length, 0);
  b.writeUInt16LE(type, 4);
  b.writeUInt16LE(flags, 6);
  b.writeUInt32LE(seq, 8);
  b.writeUInt32LE(pid, 12);
  payload.copy(b, 16);
  return b;
}

/** NLMSG_ERROR with the request header echoed (CAP_ACK) and optional ext-ack TLVs. */
function ack(req: RawMessage, errno = 0, text?: string): Buffer {
  const tlv = text ? Buffer.alloc(4 + ((Buffer.byteLength(text) + 1 + 3) & ~3)) : Buffer.alloc(0);
  if (text) {
    tlv.writeUInt16LE(4 + Buffer.byteLength(text) + 1, 0);
    tlv.writeUInt16LE(1, 2); // NLMSGERR_ATTR_MSG
    tlv.write(text, 4);
  }
  const p = Buffer.alloc(4 + 16 + tlv.length);
  p.writeInt32LE(errno, 0);
  p.writeUInt32LE(req.len, 4);
  p.writeUInt16LE(req.type, 8);
  p.writeUInt16LE(req.flags, 10);
  p.writeUInt32LE(req.seq, 12);
  p.writeUInt32LE(req.pid, 16);
  tlv.copy(p, 20);
  return msg(NLMSG.ERROR, NLM_F.CAPPED | (text ? NLM_F.ACK_TLVS : 0), req.seq, p);
}

class FakeKernel implements Transport {
  readonly portId = PORT;
  queue: Buffer[] = [];
  sent: RawMessage[] = [];
  closed = false;
  sendAsync?: (buf: Buffer) => Promise<void>;
  constructor(private readonly answer: (req: RawMessage, k: FakeKernel) => Buffer[]) {}
  send(buf: Buffer): void {
    for (const m of splitMessages(buf)) {
      this.sent.push(m);
      this.queue.push(...this.answer(m, this));
    }
  }
  receive(): Buffer | null {
    return this.queue.shift() ?? null;
  }
  close(): void {
    this.closed = true;
  }
}

function linkMsg(index: number, name: string, seq: number, flags: number = NLM_F.MULTI): Buffer {
  const req = L.addBridgeRequest(name);
  const b = Buffer.alloc(req.size);
  req.write(b, 0);
  b.writeInt32LE(index, 4);
  return msg(RTM.NEWLINK, flags, seq, b);
}

test('request: ack is success; error carries code, errno, operation and the extended ack', () => {
  const k = new FakeKernel((req) => [ack(req, req.type === RTM.NEWLINK && req.flags & NLM_F.EXCL ? -17 : 0, req.flags & NLM_F.EXCL ? 'File exists test' : undefined)]);
  const s = new NetlinkSocket(k);
  s.request(L.setUpRequest('eth0'));
  const e = catchError(() => s.request(L.addBridgeRequest('br0')));
  assert.instance(e, NetlinkError);
  assert.is(e.code, 'EEXIST');
  assert.is(e.errno, -17);
  assert.is(e.operation, 'RTM_NEWLINK');
  assert.is(e.kernelMessage, 'File exists test');
  assert.ok(k.sent.every((m) => (m.flags & (NLM_F.REQUEST | NLM_F.ACK)) === (NLM_F.REQUEST | NLM_F.ACK)));
  assert.ok(k.sent.every((m) => m.pid === PORT));
  s.close();
  assert.ok(k.closed);
});

test('batch: one send, results in order, each failure on its own request; sequence numbers consecutive', () => {
  let sends = 0;
  const k = new FakeKernel((req) => [ack(req, req.seq % 2 === 1 ? -19 : 0)]);
  const origSend = k.send.bind(k);
  k.send = (b) => {
    sends++;
    origSend(b);
  };
  const s = new NetlinkSocket(k);
  const res = s.batch([L.setUpRequest('a'), L.setUpRequest('b'), L.setUpRequest('c'), L.setUpRequest('d')]);
  assert.is(sends, 1);
  const seqs = k.sent.map((m) => m.seq);
  assert.equal(seqs, seqs.map((_, i) => (seqs[0]! + i) >>> 0));
  res.forEach((r, i) => assert.is(r.error?.code, seqs[i]! % 2 === 1 ? 'ENODEV' : undefined));
});

test('replies with a foreign sequence number or port are ignored', () => {
  const k = new FakeKernel((req) => [ack({ ...req, seq: req.seq + 1000 }, -1), ack({ ...req, pid: 99 }, -1), ack(req, 0)]);
  // Second buffer has the wrong pid in the header: rewrite it.
  const s = new NetlinkSocket(k);
  const orig = k.send.bind(k);
  k.send = (b) => {
    orig(b);
    const wrongPid = k.queue[1]!;
    wrongPid.writeUInt32LE(99, 12);
  };
  s.request(L.setUpRequest('a'));
});

test('dump: multipart across datagrams, NLMSG_DONE ends it', () => {
  const k = new FakeKernel((req) => [Buffer.concat([linkMsg(1, 'lo', req.seq), linkMsg(2, 'br0', req.seq)]), linkMsg(3, 'br1', req.seq), msg(NLMSG.DONE, NLM_F.MULTI, req.seq, Buffer.alloc(4))]);
  const s = new NetlinkSocket(k);
  const links = s.dump(L.dumpRequest(), L.decodeLink);
  assert.equal(links.map((l) => [l.index, l.name]), [[1, 'lo'], [2, 'br0'], [3, 'br1']]);
  assert.is(k.sent[0]!.flags & NLM_F.DUMP, NLM_F.DUMP);
});

test('dump: NLM_F_DUMP_INTR gives the partial result in a typed error; retries are bounded', () => {
  let calls = 0;
  const k = new FakeKernel((req) => {
    calls++;
    return [linkMsg(1, 'lo', req.seq, NLM_F.MULTI | NLM_F.DUMP_INTR), msg(NLMSG.DONE, NLM_F.MULTI | NLM_F.DUMP_INTR, req.seq, Buffer.alloc(4))];
  });
  const s = new NetlinkSocket(k);
  const e = catchError(() => s.dump(L.dumpRequest(), L.decodeLink));
  assert.instance(e, DumpInterruptedError);
  assert.is(e.partial.length, 1);
  assert.is(e.partial[0].name, 'lo');
  assert.is(calls, 1);
  catchError(() => s.dump(L.dumpRequest(), L.decodeLink, { retries: 2 }));
  assert.is(calls, 4, 'one try plus two retries');
});

test('dump: a retry that is not interrupted succeeds', () => {
  let calls = 0;
  const k = new FakeKernel((req) => {
    calls++;
    const f = calls === 1 ? NLM_F.DUMP_INTR : 0;
    return [linkMsg(1, 'lo', req.seq, NLM_F.MULTI | f), msg(NLMSG.DONE, NLM_F.MULTI | f, req.seq, Buffer.alloc(4))];
  });
  const s = new NetlinkSocket(k);
  assert.is(s.dump(L.dumpRequest(), L.decodeLink, { retries: 1 }).length, 1);
});

test('dump with `each`: every item handed over in order and none kept; false stops it and the rest is drained; no retry once items went out', async () => {
  const three = (req: RawMessage, f = 0): Buffer[] => [Buffer.concat([linkMsg(1, 'lo', req.seq, NLM_F.MULTI | f), linkMsg(2, 'br0', req.seq, NLM_F.MULTI | f)]), linkMsg(3, 'br1', req.seq, NLM_F.MULTI | f), msg(NLMSG.DONE, NLM_F.MULTI | f, req.seq, Buffer.alloc(4))];
  const k = new FakeKernel((req) => (req.type === RTM.GETLINK ? three(req) : [ack(req)]));
  const s = new NetlinkSocket(k);
  const seen: string[] = [];
  const list = s.dump(L.dumpRequest(), L.decodeLink, { each: (l) => void seen.push(l.name) });
  assert.equal([seen, list.length], [['lo', 'br0', 'br1'], 0]);
  // Stopped after the first: the two datagrams after it were read and dropped, so the socket works on.
  seen.length = 0;
  s.dump(L.dumpRequest(), L.decodeLink, { each: (l) => (seen.push(l.name), false) });
  assert.equal([seen, k.queue.length], [['lo'], 0]);
  assert.is(s.batch([L.setUpRequest('lo')])[0]!.error, undefined);
  // The same through the async form.
  seen.length = 0;
  const a = await s.dumpAsync(L.dumpRequest(), L.decodeLink, { each: (l) => void seen.push(l.name) });
  assert.equal([seen, a.length], [['lo', 'br0', 'br1'], 0]);
  // A callback that throws ends the dump with its error, the socket drained.
  const e = catchError(() => s.dump(L.dumpRequest(), L.decodeLink, { each: () => { throw new Error('mine'); } }));
  assert.is(e.message, 'mine');
  assert.is(k.queue.length, 0);
  // Interrupted: items already handed over cannot be taken back, so no retry, however many are allowed.
  let calls = 0;
  const ki = new FakeKernel((req) => (calls++, three(req, NLM_F.DUMP_INTR)));
  const e2 = catchError(() => new NetlinkSocket(ki).dump(L.dumpRequest(), L.decodeLink, { each: () => undefined, retries: 3 }));
  assert.instance(e2, DumpInterruptedError);
  assert.is(calls, 1);
});

test('dumpAsync: a long datagram is decoded in slices, with timers run between them', async () => {
  // One datagram of 300 links, each taking ~0.1 ms to decode: 30 ms in all, that the async form
  // must not keep the event loop for. A 1 ms timer counts the links decoded between its runs.
  const k = new FakeKernel((req) => [Buffer.concat(Array.from({ length: 300 }, (_, i) => linkMsg(i + 1, `l${i}`, req.seq))), msg(NLMSG.DONE, NLM_F.MULTI, req.seq, Buffer.alloc(4))]);
  const s = new NetlinkSocket(k);
  let decoded = 0;
  let sinceTick = 0;
  let longest = 0;
  let ticks = 0;
  const slow = (m: RawMessage) => {
    const until = performance.now() + 0.1;
    while (performance.now() < until);
    decoded++;
    longest = Math.max(longest, ++sinceTick);
    return L.decodeLink(m);
  };
  let timer: NodeJS.Timeout | undefined;
  const tick = (): void => {
    ticks++;
    sinceTick = 0;
    timer = setTimeout(tick, 1);
  };
  timer = setTimeout(tick, 1);
  try {
    const links = await s.dumpAsync(L.dumpRequest(), slow);
    assert.is(links.length, 300);
  } finally {
    clearTimeout(timer);
  }
  assert.is(decoded, 300);
  // A slice is 1 ms (~10 links), checked between handfuls of 16: far fewer than 300 in one go.
  assert.ok(longest <= 64, `${longest} links were decoded without a timer running`);
  assert.ok(ticks >= 3, `the timer ran ${ticks} times in 30 ms of decoding`);
  // The synchronous form decodes the same datagram straight through.
  assert.is(s.dump(L.dumpRequest(), L.decodeLink).length, 300);
});

test('dump: an error in NLMSG_DONE is thrown', () => {
  const done = Buffer.alloc(4);
  done.writeInt32LE(-95);
  const k = new FakeKernel((req) => [msg(NLMSG.DONE, NLM_F.MULTI, req.seq, done)]);
  const e = catchError(() => new NetlinkSocket(k).dump(L.dumpRequest(), L.decodeLink));
  assert.is(e.errno, -95, 'EOPNOTSUPP');
});

test('batchAsync: acks read after the send completes; the socket refuses other work meanwhile', async () => {
  const k = new FakeKernel((req) => [ack(req, req.type === RTM.DELLINK ? -19 : 0)]);
  let release!: () => void;
  k.sendAsync = (buf) => new Promise<void>((resolve) => {
    release = () => {
      k.send(buf);
      resolve();
    };
  });
  const s = new NetlinkSocket(k);
  const p = s.batchAsync([L.setUpRequest('a'), L.deleteRequest('b')]);
  assert.instance(catchError(() => s.batch([L.setUpRequest('c')])), ValidationError);
  // The queue starts on a microtask, so that calls made in the same tick share one sendto.
  await new Promise((r) => setImmediate(r));
  release();
  const res = await p;
  assert.is(res[0]!.error, undefined);
  assert.is(res[1]!.error?.code, 'ENODEV');
  s.batch([L.setUpRequest('c')]);
});

test('a kernel that never answers gives TimeoutError, not a hang', () => {
  const k = new FakeKernel(() => []);
  const e = catchError(() => new NetlinkSocket(k, { timeoutMs: 10 }).request(L.setUpRequest('x')));
  assert.instance(e, TimeoutError);
  assert.is(e.code, 'ETIMEDOUT');
});

test('a truncated or garbled reply is a CodecError', () => {
  const k = new FakeKernel((req) => {
    const b = ack(req, 0);
    b.writeUInt32LE(400, 0); // length beyond the datagram
    return [b];
  });
  assert.instance(catchError(() => new NetlinkSocket(k).request(L.setUpRequest('x'))), CodecError);
});

test.run();
