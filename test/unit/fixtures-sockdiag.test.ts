/**
 * sock_diag against ss's own traffic (captured by test/fixtures/tools/capture.ts): the dump
 * requests of `ss -ltn` and `ss -lun` byte for byte, their replies decoded into typed sockets
 * (and re-encoded to the same bytes), and truncated replies refused as CodecErrors.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { encode, reencode, splitMessages, decodePayload, type Request } from '../../src/netlink/core/message.js';
import { NLM_F } from '../../src/netlink/core/constants.js';
import { parseHexFixture, dial, dumpReply } from '../../src/netlink/core/testing.js';
import { CodecError } from '../../src/errors.js';
import * as D from '../../src/netlink/sockdiag/sockdiag.js';
import * as U from '../../src/netlink/sockdiag/unix.js';
import { catchError } from '../helpers.js';

const dir = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const fixture = (name: string): Buffer => parseHexFixture(readFileSync(dir + name, 'utf8'));
const rows = (b: Buffer): string => (b.toString('hex').match(/.{1,8}/g) ?? []).join('\n');
const wire = (req: Request): Buffer => encode({ ...req, flags: req.flags | NLM_F.REQUEST | NLM_F.DUMP }, 0, 0);
const sockets = (file: string, protocol: D.SocketProtocol): D.InetSocket[] =>
  splitMessages(fixture(file))
    .filter((m) => m.type === D.SOCK_DIAG_BY_FAMILY)
    .map((m) => D.decodeSocket(m, protocol));

test('encoder matches ss -ltn (AF_INET) and ss -lun (AF_INET6): states LISTEN and CLOSE, no extensions', () => {
  assert.fixture(rows(wire(D.socketDumpRequest({ family: 4, protocol: 'tcp', states: ['listen', 'close'] }))), rows(fixture('sockdiag-tcp4.req.txt')));
  assert.fixture(rows(wire(D.socketDumpRequest({ family: 6, protocol: 'udp', states: ['listen', 'close'] }))), rows(fixture('sockdiag-udp6.req.txt')));
});

test('ss -ltn replies decode to typed listeners: address, port, state, uid, inode, v6only', () => {
  const [v4] = sockets('sockdiag-tcp4.reply.txt', 'tcp');
  const [v6] = sockets('sockdiag-tcp6.reply.txt', 'tcp');
  assert.equal([v4!.family, v4!.state, v4!.local, v4!.remote, v4!.uid, v4!.v6only], [4, 'listen', { address: '0.0.0.0', port: 9090 }, { address: '0.0.0.0', port: 0 }, 0, undefined]);
  assert.ok(v4!.inode > 0);
  assert.equal([v6!.family, v6!.state, v6!.local, v6!.v6only], [6, 'listen', { address: '::', port: 8080 }, true]);
  assert.is(v6!.raw.attrs.mark, 0);
  assert.is(v6!.raw.attrs.cgroupId, 1n);
});

test('ss -lun replies decode to unconnected UDP sockets (state close, which ss shows as UNCONN)', () => {
  const [v4] = sockets('sockdiag-udp4.reply.txt', 'udp');
  const [v6] = sockets('sockdiag-udp6.reply.txt', 'udp');
  assert.equal([v4!.family, v4!.state, v4!.local], [4, 'close', { address: '127.0.0.1', port: 5353 }]);
  assert.equal([v6!.family, v6!.state, v6!.local, v6!.v6only], [6, 'close', { address: '::', port: 5300 }, false]);
});

test('every reply message re-encodes to its captured bytes', () => {
  for (const f of ['sockdiag-tcp4.reply.txt', 'sockdiag-tcp6.reply.txt', 'sockdiag-udp4.reply.txt', 'sockdiag-udp6.reply.txt']) {
    for (const m of splitMessages(fixture(f))) {
      if (m.type !== D.SOCK_DIAG_BY_FAMILY) continue;
      const bytes = reencode(D.inetDiagMessage, m, decodePayload(D.inetDiagMessage, m.payload));
      assert.is(bytes.subarray(16).toString('hex'), m.payload.toString('hex'), f);
    }
  }
});

test('a reply cut short anywhere is a CodecError, never a crash or a made-up socket', () => {
  const m = splitMessages(fixture('sockdiag-tcp6.reply.txt'))[0]!;
  for (let len = 0; len < m.payload.length; len++) {
    const cut = { ...m, payload: m.payload.subarray(0, len) };
    let got: unknown;
    try {
      got = D.decodeSocket(cut, 'tcp');
    } catch (e) {
      assert.instance(e, CodecError, `cut at ${len}`);
      continue;
    }
    // Only a cut between whole attributes decodes, with the header intact.
    if (len < D.inetDiagMsg.size) assert.unreachable(`cut at ${len} decoded to ${String(got)}`);
  }
  // An attribute length past the end of the message.
  const bad = Buffer.from(m.payload);
  bad.writeUInt16LE(200, D.inetDiagMsg.size);
  assert.instance(catchError(() => D.decodeSocket({ ...m, payload: bad }, 'tcp')), CodecError);
});

test('SockDiag.socketList sends ss\'s dump and filters by local port; an unknown state is a ValidationError', () => {
  const tcp6 = splitMessages(fixture('sockdiag-tcp6.reply.txt')).find((m) => m.type === D.SOCK_DIAG_BY_FAMILY)!;
  const sock = dial((req) => dumpReply(req, D.SOCK_DIAG_BY_FAMILY, [tcp6.payload]));
  const diag = new D.SockDiag(sock);
  assert.equal(diag.socketList({ family: 6, protocol: 'tcp', states: ['listen'], sport: 8080 }).map((s) => s.local.port), [8080]);
  assert.equal([...diag.socketList({ family: 6, protocol: 'tcp', states: ['listen'], sport: 9090 })], []);
  const sent = sock.transport.sent[0]!;
  assert.equal([sent.type, sent.flags & NLM_F.DUMP, sent.payload[0], sent.payload[1], sent.payload.readUInt32LE(4)], [D.SOCK_DIAG_BY_FAMILY, NLM_F.DUMP, 10, 6, 1 << 10]);
  assert.is(catchError(() => D.stateMask(['listening' as D.SocketState])).code, 'EINVAL');
});

test('socketList filters by remote port and by addresses in any spelling; an address of the other family is refused', () => {
  const tcp6 = splitMessages(fixture('sockdiag-tcp6.reply.txt')).find((m) => m.type === D.SOCK_DIAG_BY_FAMILY)!;
  const diag = new D.SockDiag(dial((req) => dumpReply(req, D.SOCK_DIAG_BY_FAMILY, [tcp6.payload])));
  assert.is(diag.socketList({ family: 6, protocol: 'tcp', src: '0:0::0', dport: 0 }).length, 1, 'the listener on [::]:8080, src written long');
  assert.is(diag.socketList({ family: 6, protocol: 'tcp', dst: '::1' }).length, 0);
  assert.is(diag.socketList({ family: 6, protocol: 'tcp', dport: 80 }).length, 0);
  assert.is(catchError(() => diag.socketList({ family: 6, protocol: 'tcp', src: '10.0.0.1' })).code, 'EINVAL');
  assert.is(catchError(() => diag.socketList({ family: 4, protocol: 'tcp', dst: 'nonsense' })).code, 'EINVAL');
});

const unixSockets = (): U.UnixSocket[] => splitMessages(fixture('sockdiag-unix.reply.txt')).filter((m) => m.type === D.SOCK_DIAG_BY_FAMILY).map((m) => U.decodeUnixSocket(m));

test('unix_diag: the encoder matches ss -xa (states 0-11, name, peer and queue lengths)', () => {
  assert.fixture(rows(wire(U.unixDumpRequest({ show: ['name', 'peer', 'rqlen'] }))), rows(fixture('sockdiag-unix.req.txt')));
  assert.is(catchError(() => U.unixDumpRequest({ show: ['names' as U.UnixShow] })).code, 'EINVAL');
  assert.is(catchError(() => U.unixDumpRequest({ types: ['raw' as U.UnixSocketType] })).code, 'EINVAL');
  assert.is(catchError(() => U.unixDumpRequest({ name: 'a\0b' })).code, 'EINVAL');
});

test('unix_diag: ss -xa\'s reply decodes to a listener and both ends of its connection, each naming the other', () => {
  const all = unixSockets();
  const listener = all.find((s) => s.state === 'listen')!;
  assert.equal([listener.type, listener.name, listener.peer], ['stream', '/run/tsn-fixture.sock', undefined]);
  const ends = all.filter((s) => s.state === 'established');
  assert.is(ends.length, 2);
  const [a, b] = ends as [U.UnixSocket, U.UnixSocket];
  assert.equal([a.peer, b.peer], [b.inode, a.inode], 'each end names the other as its peer');
  for (const s of all) assert.ok(s.rqueue !== undefined && s.wqueue !== undefined, 'queue lengths asked for and decoded');
  for (const m of splitMessages(fixture('sockdiag-unix.reply.txt'))) {
    if (m.type !== D.SOCK_DIAG_BY_FAMILY) continue;
    assert.is(reencode(U.unixDiagMessage, m, decodePayload(U.unixDiagMessage, m.payload)).subarray(16).toString('hex'), m.payload.toString('hex'), 're-encodes to the captured bytes');
  }
});

test('unix_diag: a reply cut anywhere, or with a queue pair of odd length, is a CodecError', () => {
  const m = splitMessages(fixture('sockdiag-unix.reply.txt')).find((x) => x.type === D.SOCK_DIAG_BY_FAMILY)!;
  for (let len = 0; len < m.payload.length; len++) {
    try {
      U.decodeUnixSocket({ ...m, payload: m.payload.subarray(0, len) });
    } catch (e) {
      assert.instance(e, CodecError, `cut at ${len}`);
      continue;
    }
    if (len < U.unixDiagMsg.size) assert.unreachable(`cut at ${len} decoded`);
  }
  // UNIX_DIAG_RQLEN with 6 bytes: a header of 4 + 6, padded.
  const bad = Buffer.concat([m.payload.subarray(0, U.unixDiagMsg.size), Buffer.from([10, 0, 4, 0, 1, 0, 0, 0, 2, 0, 0, 0])]);
  assert.instance(catchError(() => U.decodeUnixSocket({ ...m, payload: bad })), CodecError);
});

test('SockDiag.unixList filters by type and name after the dump', () => {
  const payloads = splitMessages(fixture('sockdiag-unix.reply.txt')).filter((m) => m.type === D.SOCK_DIAG_BY_FAMILY).map((m) => m.payload);
  const diag = new D.SockDiag(dial((req) => dumpReply(req, D.SOCK_DIAG_BY_FAMILY, payloads)));
  assert.is(diag.unixList().length, 3);
  assert.is(diag.unixList({ types: ['dgram'] }).length, 0);
  const named = diag.unixList({ name: '/run/tsn-fixture.sock', states: ['listen'] });
  assert.ok(named.length >= 1);
  assert.equal(named.map((x) => x.inode), unixSockets().filter((x) => x.name === '/run/tsn-fixture.sock').map((x) => x.inode));
  const sent = (diag.socket as unknown as { transport: { sent: { payload: Buffer }[] } }).transport.sent.at(-1)!;
  assert.equal([sent.payload[0], sent.payload.readUInt32LE(4)], [U.AF_UNIX, 1 << 10], 'the kernel is asked for listeners only');
});

test('socketOwners finds this process behind its own listening socket', async () => {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  try {
    const inodes = readdirSync('/proc/self/fd')
      .map((fd) => {
        try {
          return /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`))?.[1];
        } catch {
          return undefined;
        }
      })
      .filter((x): x is string => x !== undefined)
      .map(Number);
    assert.ok(inodes.length > 0);
    const owners = D.socketOwners(inodes);
    assert.ok([...owners.values()].some((l) => l.some((o) => o.pid === process.pid && o.command.length > 0)));
    assert.equal([...D.socketOwners([])], []);
  } finally {
    srv.close();
  }
});

test.run();
