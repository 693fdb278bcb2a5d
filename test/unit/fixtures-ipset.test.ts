/**
 * ipset over nfnetlink: every request byte-exact against ipset 7.17's (captured by
 * test/fixtures/tools/capture.ts), the kernel's LIST replies assembled into sets (one split over
 * two messages), the protocol, type and header answers, an absent entry's IPSET_ERR_EXIST, every
 * captured message re-encoded to its bytes, and lengths from the wire bounded.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { encode, reencode, splitMessages, decodePayload, type RawMessage, type Request } from '../../src/netlink/core/message.js';
import { NLM_F, NLMSG } from '../../src/netlink/core/constants.js';
import { ack, dial, dumpReply, parseHexFixture, reply } from '../../src/netlink/core/testing.js';
import { CodecError, NetlinkError } from '../../src/errors.js';
import * as I from '../../src/netlink/netfilter/ipset.js';
import * as IS from '../../src/netlink/netfilter/ipset-schema.js';
import { catchError } from '../helpers.js';

const dir = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const fixture = (name: string): Buffer => parseHexFixture(readFileSync(dir + name, 'utf8'));
const rows = (b: Buffer): string => (b.toString('hex').match(/.{1,8}/g) ?? []).join('\n');
const messages = (name: string): RawMessage[] => splitMessages(fixture(name)).filter((m) => m.type >= 16);
const ACKED = NLM_F.REQUEST | NLM_F.ACK;
const LIST = IS.ipsetMsgType(IS.IPSET_CMD.LIST);

/** Each request with the flags ipset sent (questions without an ack; our socket adds one, and NLM_F_DUMP to a list). */
const requests: [string, () => Request, number][] = [
  ['ipset-protocol.req.txt', () => I.protocolRequest(), NLM_F.REQUEST],
  ['ipset-type.req.txt', () => I.typeRequest('hash:ip'), NLM_F.REQUEST],
  ['ipset-create-hash-ip.req.txt', () => I.createRequest({ name: 's1', type: 'hash:ip', family: 4, hashsize: 1024, maxelem: 65536, timeout: 100, counters: true }, 6), ACKED],
  ['ipset-create-hash-net6.req.txt', () => I.createRequest({ name: 'n6', type: 'hash:net', family: 6, maxelem: 1024, comment: true }, 7), ACKED],
  ['ipset-create-hash-ipport.req.txt', () => I.createRequest({ name: 'p1', type: 'hash:ip,port', counters: true }, 7), ACKED],
  ['ipset-create-bitmap.req.txt', () => I.createRequest({ name: 'b1', type: 'bitmap:ip', range: '10.0.0.0/24', timeout: 10 }, 3), ACKED],
  ['ipset-create-bitmap-range.req.txt', () => I.createRequest({ name: 'b2', type: 'bitmap:ip', range: '10.0.0.0-10.0.0.255' }, 3), ACKED],
  ['ipset-create-exist.req.txt', () => I.createRequest({ name: 'x', type: 'hash:ip', netmask: 24, bucketsize: 8, forceadd: true, skbinfo: true, exist: true }, 6), ACKED],
  ['ipset-header.req.txt', () => I.headerRequest('a'), NLM_F.REQUEST],
  ['ipset-add.req.txt', () => I.addRequest('c', 'hash:ip', '10.0.0.5', { timeout: 50 }), ACKED],
  ['ipset-add-net.req.txt', () => I.addRequest('n', 'hash:net', '10.1.0.0/16'), ACKED],
  ['ipset-add-ipport.req.txt', () => I.addRequest('p', 'hash:ip,port', '10.0.0.1,udp:53'), ACKED],
  ['ipset-add-ip6-comment.req.txt', () => I.addRequest('s6', undefined, { ip: 'fd00::1' }, { comment: 'hello', packets: 3, bytes: 400n, exist: true }), ACKED],
  ['ipset-del.req.txt', () => I.delRequest('a', 'hash:ip', '1.2.3.4'), ACKED],
  ['ipset-test.req.txt', () => I.testRequest('a', 'hash:ip', '1.2.3.4'), ACKED],
  ['ipset-destroy.req.txt', () => I.destroyRequest('a'), ACKED],
  ['ipset-destroy-all.req.txt', () => I.destroyRequest(), ACKED],
  ['ipset-flush.req.txt', () => I.flushRequest('a'), ACKED],
  ['ipset-rename.req.txt', () => I.renameRequest('a', 'c'), ACKED],
  ['ipset-swap.req.txt', () => I.swapRequest('a', 'b'), ACKED],
  ['ipset-list.req.txt', () => I.listRequest('a'), NLM_F.REQUEST | NLM_F.DUMP],
  ['ipset-list-names.req.txt', () => I.listRequest(undefined, { names: true }), NLM_F.REQUEST | NLM_F.DUMP],
];
for (const [file, build, flags] of requests) {
  test(`encoder matches ipset: ${file}`, () => {
    const req = build();
    assert.fixture(rows(encode({ ...req, flags: req.flags | flags }, 0, 0)), rows(fixture(file)));
  });
}

test('ipset list: sets with their options, counts and members, in ipset\'s notation', () => {
  const sets = I.assembleSets(messages('ipset-list.reply.txt').map(I.decodeSetAttrs));
  assert.equal(sets.map((s) => [s.name, s.type, s.family, s.index]), [['c', 'hash:ip', 4, 0], ['n', 'hash:net', 6, 1], ['p', 'hash:ip,port', 4, 2], ['bm', 'bitmap:ip', 4, 3]]);
  const [c, n, p, bm] = sets;
  assert.equal([c!.header.timeout, c!.header.counters, c!.header.comment, c!.header.hashsize, c!.header.maxelem, c!.header.elements, c!.header.references], [100, true, true, 1024, 65536, 2, 0]);
  const six = c!.members.find((m) => m.ip === '10.0.0.6')!;
  assert.equal([six.text, six.comment, six.packets, six.bytes], ['10.0.0.6', 'hello', 3n, 400n]);
  const five = c!.members.find((m) => m.ip === '10.0.0.5')!;
  assert.ok(five.timeout! > 0 && five.timeout! <= 50, `timeout ${five.timeout}`);
  assert.equal(n!.members.map((m) => [m.text, m.nomatch ?? false]).sort(), [['fd00:1::/64', false], ['fd00:2::/48', true]]);
  assert.equal(p!.members.map((m) => [m.text, m.ip, m.proto, m.port]), [['10.0.0.1,udp:53', '10.0.0.1', 'udp', 53]]);
  assert.equal([bm!.header.range, bm!.header.timeout, bm!.members.map((m) => [m.text, m.timeout])], [{ from: '10.0.0.0', to: '10.0.0.255' }, 5, [['10.0.0.9', 0]]]);
});

test('a set listed over two messages is assembled into one: the continuation carries only its name and members', () => {
  const ms = messages('ipset-list-split.reply.txt');
  assert.is(ms.length, 2);
  assert.is(I.decodeSetAttrs(ms[1]!).typename, undefined);
  const [big, ...rest] = I.assembleSets(ms.map(I.decodeSetAttrs));
  assert.equal(rest, []);
  assert.equal([big!.name, big!.header.elements, big!.members.length, big!.raw.length], ['big', 24, 24, 2]);
  assert.equal(big!.members.map((m) => m.ip).sort(), Array.from({ length: 24 }, (_, i) => `10.0.1.${i + 1}`).sort());
  assert.ok(big!.members.every((m) => m.comment === 'x'.repeat(200)));
});

test('every captured ipset message re-encodes to its bytes', () => {
  let n = 0;
  for (const f of readdirSync(dir).filter((x) => x.startsWith('ipset-'))) {
    for (const m of splitMessages(fixture(f))) {
      if (m.type < 16) continue;
      const def = IS.ipsetDefOf(m.type)!;
      const bytes = reencode(def, m, decodePayload(def, m.payload));
      assert.is(bytes.subarray(16, 16 + m.payload.length).toString('hex'), m.payload.toString('hex'), f);
      n++;
    }
  }
  assert.ok(n >= 30, `${n} messages`);
});

test('a reply cut short anywhere is a CodecError or a whole-attribute prefix, never a crash', () => {
  const [m] = messages('ipset-list.reply.txt');
  for (let len = 0; len < m!.payload.length; len++) {
    try {
      I.decodeSet({ ...m!, payload: m!.payload.subarray(0, len) });
    } catch (e) {
      assert.instance(e, CodecError, `cut at ${len}`);
    }
  }
  // A set name whose message claims a member nest longer than the message.
  const bad = Buffer.from(m!.payload);
  const adt = bad.indexOf(Buffer.from([0x08, 0x80]), 4) - 2;
  bad.writeUInt16LE(0xfff0, adt);
  assert.instance(catchError(() => I.decodeSet({ ...m!, payload: bad })), CodecError);
});

test('entries in ipset\'s notation, for each dimension', () => {
  assert.equal(I.parseEntry('hash:ip', '10.9.0.0/30'), { ip: '10.9.0.0', cidr: 30 });
  assert.equal(I.parseEntry('hash:ip', '10.0.0.1-10.0.0.9'), { ip: '10.0.0.1', ipTo: '10.0.0.9' });
  assert.equal(I.parseEntry('hash:ip,port', '10.0.0.1,80'), { ip: '10.0.0.1', port: 80, proto: 'tcp' });
  assert.equal(I.parseEntry('hash:ip,port,net', 'fd00::1,udp:53-60,fd00:9::/64'), { ip: 'fd00::1', port: 53, portTo: 60, proto: 'udp', ip2: 'fd00:9::', cidr2: 64 });
  assert.equal(I.parseEntry('hash:net,iface', '10.0.0.0/8,eth0'), { ip: '10.0.0.0', cidr: 8, iface: 'eth0' });
  assert.equal(I.parseEntry('bitmap:port', '8080'), { port: 8080 });
  for (const [type, text] of [['hash:ip', '10.0.0.1,80'], ['hash:ip,port', '10.0.0.1,gre:1'], ['hash:ip', 'nope'], ['hash:ip,port', '10.0.0.1,70000']]) {
    assert.is(catchError(() => I.parseEntry(type as string, text as string)).code, 'EINVAL', `${type} ${text}`);
  }
});

test('Ipset runs ipset\'s conversation: type before create, header before a text entry, test true and false, list, names', () => {
  const absent = splitMessages(fixture('ipset-test-absent.reply.txt'))[0]!;
  const listed = messages('ipset-list.reply.txt').map((m) => m.payload);
  let present = true;
  const sock = dial((req) => {
    const cmd = req.type & 0xff;
    if (cmd === IS.IPSET_CMD.PROTOCOL) return [reply(req, req.type, messages('ipset-protocol.reply.txt')[0]!.payload), ack(req)];
    if (cmd === IS.IPSET_CMD.TYPE) return [reply(req, req.type, messages('ipset-type.reply.txt')[0]!.payload), ack(req)];
    if (cmd === IS.IPSET_CMD.HEADER) return [reply(req, req.type, messages('ipset-header.reply.txt')[0]!.payload), ack(req)];
    if (cmd === IS.IPSET_CMD.TEST && !present) return [reply(req, NLMSG.ERROR, absent.payload)];
    if (cmd === IS.IPSET_CMD.LIST) return dumpReply(req, LIST, (req.payload.includes(Buffer.from([8, 0, 6, 0x40]))) ? listed.slice(0, 2) : listed);
    return [ack(req)];
  }, { typeName: IS.ipsetTypeName });
  const s = new I.Ipset(sock);
  assert.equal(s.protocol(), { protocol: 7, min: 6 });
  s.create({ name: 'a', type: 'hash:ip', timeout: 100 });
  s.create({ name: 'a2', type: 'hash:ip' });
  s.add('b', '10.0.0.5', { timeout: 5 });
  assert.is(s.test('b', '10.0.0.5'), true);
  present = false;
  assert.is(s.test('b', '10.9.9.9'), false);
  const types = sock.transport.sent.map((m) => IS.ipsetTypeName(m.type));
  // One TYPE query for two creates of hash:ip; one HEADER query for the set named by text entries.
  assert.equal(types, ['IPSET_CMD_PROTOCOL', 'IPSET_CMD_TYPE', 'IPSET_CMD_CREATE', 'IPSET_CMD_CREATE', 'IPSET_CMD_HEADER', 'IPSET_CMD_ADD', 'IPSET_CMD_TEST', 'IPSET_CMD_TEST']);
  assert.equal(s.list().map((x) => x.name), ['c', 'n', 'p', 'bm']);
  assert.equal(s.names(), ['c', 'n']);
});

test('the kernel\'s ipset errors are IpsetErrors named as ipset names them; others stay NetlinkErrors', () => {
  const e = new I.IpsetError(new NetlinkError('IPSET_CMD_ADD', -4103));
  assert.instance(e, NetlinkError);
  assert.equal([e.code, e.errno, e.name], ['IPSET_ERR_EXIST', -4103, 'IpsetError']);
  assert.is(new I.IpsetError(new NetlinkError('IPSET_CMD_ADD', -4352), 'hash:ip').code, 'IPSET_ERR_HASH_FULL');
  assert.is(new I.IpsetError(new NetlinkError('IPSET_CMD_ADD', -4352), 'bitmap:ip').code, 'IPSET_ERR_BITMAP_RANGE');
  const s = new I.Ipset(dial((req) => [ack(req, (req.type & 0xff) === IS.IPSET_CMD.DESTROY ? 2 : 4100)], { typeName: IS.ipsetTypeName }));
  assert.is(catchError(() => s.destroy('nope')).code, 'ENOENT');
  assert.instance(catchError(() => s.flush('busy')), I.IpsetError);
});

test('bad specs are ValidationErrors before anything is sent', () => {
  const bad: (() => unknown)[] = [
    () => I.createRequest({ name: 'x'.repeat(32), type: 'hash:ip' }, 6),
    () => I.createRequest({ name: 'x', type: 'hash ip' }, 6),
    () => I.createRequest({ name: 'x', type: 'bitmap:ip' }, 3),
    () => I.createRequest({ name: 'x', type: 'hash:ip', bucketsize: 99 }, 6),
    () => I.addRequest('x', undefined, '10.0.0.1'),
    () => I.addRequest('x', 'hash:ip', { ip: 'nope' }),
    () => I.addRequest('x', 'hash:ip', '10.0.0.1', { comment: 'c'.repeat(256) }),
    () => I.renameRequest('a', ''),
  ];
  for (const f of bad) assert.is(catchError(f).code, 'EINVAL', String(f));
});

test.run();
