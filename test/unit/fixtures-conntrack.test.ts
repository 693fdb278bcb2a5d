/**
 * ctnetlink against the `conntrack` tool's own traffic (test/fixtures/conntrack-*, captured by
 * test/fixtures/tools/capture.ts with ct-specs.ts): the requests it sends, byte for byte where we
 * send the same thing; the kernel's dumps, lookup, count and events decoded into typed entries and
 * re-encoded to the same bytes; and the Conntrack handle and its event stream on the fake kernel.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { encode, reencode, splitMessages, decodePayload, type RawMessage } from '../../src/netlink/core/message.js';
import { NLM_F } from '../../src/netlink/core/constants.js';
import { parseHexFixture, dial, dumpReply, ack, reply, FakeKernel, type Handler } from '../../src/netlink/core/testing.js';
import { CodecError } from '../../src/errors.js';
import * as CT from '../../src/netlink/netfilter/conntrack.js';
import { checkFilter, filterMatches, kernelFilterAttrs, CTA_FILTER_F } from '../../src/netlink/netfilter/conntrack-filter.js';
import { Conntrack } from '../../src/netlink/netfilter/conntrack-client.js';
import type { ConntrackEvent } from '../../src/netlink/netfilter/conntrack-events.js';
import { catchError } from '../helpers.js';

const dir = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const fixture = (name: string): Buffer => parseHexFixture(readFileSync(dir + name, 'utf8'));
const rows = (b: Buffer): string => (b.toString('hex').match(/.{1,8}/g) ?? []).join('\n');
const NEW = CT.ctMsgType(CT.IPCTNL_MSG.NEW);
const messages = (file: string): RawMessage[] => splitMessages(fixture(file)).filter((m) => m.type === NEW || m.type === CT.ctMsgType(CT.IPCTNL_MSG.DELETE));
const entries = (file: string): CT.ConntrackEntry[] => messages(file).map(CT.decodeConntrack);
/** What a handle sent, with seq and pid zeroed as the fixtures store them. */
const sentBytes = (m: RawMessage): Buffer => encode({ type: m.type, flags: m.flags, size: m.payload.length, write: (b, o) => void m.payload.copy(b, o) }, 0, 0);

/** A Conntrack on the fake kernel: dumps answered with the messages of `dump`, other requests acked (after `get`'s entry). */
function fakeConntrack(dump: RawMessage[] = [], opts: { get?: RawMessage; deleteErrno?: (i: number) => number } = {}) {
  let deletes = 0;
  const handler: Handler = (req) => {
    if ((req.flags & NLM_F.DUMP) === NLM_F.DUMP) return dumpReply(req, NEW, dump.map((m) => m.payload));
    if (req.type === CT.ctMsgType(CT.IPCTNL_MSG.GET) && opts.get) return [reply(req, NEW, opts.get.payload), ack(req)];
    if (req.type === CT.ctMsgType(CT.IPCTNL_MSG.GET)) return [ack(req, 2)];
    if (req.type === CT.ctMsgType(CT.IPCTNL_MSG.DELETE)) return [ack(req, opts.deleteErrno?.(deletes++) ?? 0)];
    return [ack(req)];
  };
  const sock = dial(handler, { typeName: CT.ctnlTypeName });
  const events: FakeKernel[] = [];
  const ct = new Conntrack(sock, () => {
    const k = new FakeKernel(handler);
    events.push(k);
    return k;
  });
  return { ct, sent: sock.transport.sent, events };
}

test('requests match conntrack 1.4.7 byte for byte: -L -f ipv4|ipv6, -m MARK/MASK, -f -m -u together, -G (IPv4 UDP, IPv6 TCP), -F', () => {
  const { ct, sent } = fakeConntrack();
  ct.list({ family: 4 });
  ct.list({ family: 6 });
  ct.list({ mark: 1, markMask: 0xff });
  ct.list({ family: 4, mark: 1, markMask: 0xff, status: ['ASSURED', 'SEEN_REPLY'] });
  ct.get({ protocol: 'udp', src: '10.1.0.2', dst: '10.2.0.2', srcPort: 40000, dstPort: 5353 });
  ct.get({ protocol: 'tcp', src: 'fd00:1::2', dst: 'fd00:2::2', srcPort: 40011, dstPort: 8080 });
  ct.flush();
  const files = ['conntrack-dump.req.txt', 'conntrack-dump6.req.txt', 'conntrack-dump-mark.req.txt', 'conntrack-dump-filters.req.txt', 'conntrack-get.req.txt', '', 'conntrack-flush.req.txt'];
  files.forEach((f, i) => f && assert.fixture(rows(sentBytes(sent[i]!)), rows(fixture(f)), f));
  // For TCP, libnetfilter_conntrack adds CTA_PROTOINFO (TCP flags SACK_PERM|BE_LIBERAL) to a -G,
  // which the kernel ignores in a lookup: the original tuple is the same, byte for byte.
  const get6 = fixture('conntrack-get6.req.txt');
  const tuple = get6.subarray(20, 20 + get6.readUInt16LE(20));
  assert.is(sentBytes(sent[5]!).subarray(20).toString('hex'), tuple.toString('hex'));
  // -C: the same message, except that conntrack asks for no ack and every request of ours does.
  ct.socket.request(CT.ctCountRequest());
  const count = sent.at(-1)!;
  assert.is(count.flags, NLM_F.REQUEST | NLM_F.ACK);
  assert.is(sentBytes({ ...count, flags: NLM_F.REQUEST }).toString('hex'), fixture('conntrack-count.req.txt').toString('hex'));
});

test('an IPv4 dump decodes to typed entries: tuples, TCP state and window scales, status names, mark, label, zone, counters, timestamps, ICMP id/type/code', () => {
  const [marked, udp, zoned, tcp, icmp] = entries('conntrack-dump4.reply.txt');
  assert.equal([tcp!.protocolName, tcp!.orig, tcp!.reply.srcPort, tcp!.state, tcp!.statusNames, tcp!.mark], ['tcp', { src: '10.1.0.2', dst: '10.2.0.2', protocol: 6, srcPort: 40001, dstPort: 8080 }, 8080, 'ESTABLISHED', ['SEEN_REPLY', 'ASSURED', 'CONFIRMED'], 0]);
  assert.equal(tcp!.tcp, { wscaleOrig: 10, wscaleReply: 10, flagsOrig: { flags: 0x23, mask: 0 }, flagsReply: { flags: 0x23, mask: 0 } });
  assert.equal(tcp!.counters, { orig: { packets: 2n, bytes: 112n }, reply: { packets: 1n, bytes: 60n } });
  assert.ok((tcp!.timestamp?.start ?? 0n) > 0n && tcp!.timestamp?.stop === undefined);
  assert.ok(tcp!.id !== undefined && tcp!.use === 1 && tcp!.timeout! > 400000);
  assert.equal([marked!.mark, marked!.labels?.toString('hex'), marked!.orig.dstPort], [0x10, '02000000000000000000000000000000', 8081]);
  assert.equal([udp!.statusNames, udp!.state, udp!.counters?.reply], [['SEEN_REPLY', 'CONFIRMED'], undefined, { packets: 1n, bytes: 29n }]);
  assert.equal([zoned!.zone, zoned!.statusNames, zoned!.orig.dstPort], [3, ['CONFIRMED'], 5300]);
  assert.equal([icmp!.protocolName, icmp!.orig.icmpType, icmp!.orig.icmpCode, icmp!.reply.icmpType, icmp!.orig.icmpId === icmp!.reply.icmpId], ['icmp', 8, 0, 0, true]);
});

test('an IPv6 dump decodes too (ICMPv6 echo 128/129), and every reply message re-encodes to its captured bytes', () => {
  const [tcp, udp, icmp] = entries('conntrack-dump6.reply.txt');
  assert.equal([tcp!.family, tcp!.orig.src, tcp!.orig.srcPort, tcp!.state], [6, 'fd00:1::2', 40011, 'ESTABLISHED']);
  assert.equal([udp!.orig.dst, udp!.orig.dstPort], ['fd00:2::2', 5353]);
  assert.equal([icmp!.protocolName, icmp!.orig.icmpType, icmp!.reply.icmpType], ['icmpv6', 128, 129]);
  for (const f of ['conntrack-dump4.reply.txt', 'conntrack-dump6.reply.txt', 'conntrack-get.reply.txt', 'conntrack-events.reply.txt']) {
    for (const m of messages(f)) assert.is(reencode(CT.ctMessage, m, decodePayload(CT.ctMessage, m.payload)).subarray(16).toString('hex'), m.payload.toString('hex'), f);
  }
  const [count] = splitMessages(fixture('conntrack-count.reply.txt'));
  assert.equal(CT.decodeConntrackCount(count!), { entries: 8, maxEntries: 262144 });
});

test('events: NEW with NLM_F_CREATE, UPDATE without, DESTROY with final counters and a stop timestamp', () => {
  const ms = messages('conntrack-events.reply.txt');
  const kinds = ms.map(CT.ctEventType);
  assert.is(kinds.filter((k) => k === 'new').length, 6);
  assert.is(kinds.filter((k) => k === 'destroy').length, 2);
  assert.is(kinds.filter((k) => k === 'update').length, ms.length - 8);
  const destroyed = ms.filter((m) => CT.ctEventType(m) === 'destroy').map(CT.decodeConntrack);
  assert.equal(destroyed.map((e) => [e.protocolName, e.orig.dstPort]).sort(), [['udp', 5353], ['udp', 5353]]);
  for (const e of destroyed) assert.ok(e.counters?.orig && e.timestamp?.stop !== undefined && e.timestamp.stop >= e.timestamp.start);
  const tcpStates = ms.filter((m) => CT.ctEventType(m) === 'update').map(CT.decodeConntrack).filter((e) => e.protocol === 6).map((e) => e.state);
  assert.ok(tcpStates.includes('ESTABLISHED') && tcpStates.includes('TIME_WAIT'), tcpStates.join(','));
});

test('filters: checked (ports need a port protocol, one family, a status bit), the kernel part as conntrack sends it, CTA_FILTER for tuples of a known family', () => {
  assert.is(catchError(() => checkFilter({ orig: { dstPort: 80 } })).field, 'orig.dstPort');
  assert.is(catchError(() => checkFilter({ orig: { src: '10.0.0.1' }, reply: { src: 'fd00::1' } })).field, 'family');
  assert.is(catchError(() => checkFilter({ status: [] })).field, 'status');
  assert.is(catchError(() => checkFilter({ status: ['BOGUS' as CT.ConntrackStatus] })).code, 'EINVAL');
  assert.is(catchError(() => checkFilter({ markMask: 1 })).field, 'markMask');
  assert.is(catchError(() => checkFilter({ protocol: 'smtp' as CT.ConntrackProtocol })).field, 'protocol');
  const f = checkFilter({ protocol: 'udp', orig: { src: '10.1.0.2', dstPort: 5353 }, reply: { src: '10.2.0.2' } });
  assert.is(f.family, 4);
  const a = kernelFilterAttrs(f);
  assert.equal(a.filter, { origFlags: CTA_FILTER_F.IP_SRC | CTA_FILTER_F.PROTO_NUM | CTA_FILTER_F.PROTO_DST_PORT, replyFlags: CTA_FILTER_F.IP_SRC | CTA_FILTER_F.PROTO_NUM });
  assert.equal(a.orig, { ip: { v4src: '10.1.0.2' }, proto: { num: 17, dstPort: 5353 } });
  // IPv6 addresses stay out of the kernel's filter (it compares them the wrong way round); the protocol goes.
  const v6 = kernelFilterAttrs(checkFilter({ protocol: 'tcp', reply: { src: 'fd00:2::2' } }));
  assert.equal([v6.filter, v6.orig, v6.reply], [{ origFlags: CTA_FILTER_F.PROTO_NUM, replyFlags: CTA_FILTER_F.PROTO_NUM }, { proto: { num: 6 } }, { proto: { num: 6 } }]);
  assert.equal(kernelFilterAttrs(checkFilter({ orig: { src: 'fd00:1::2' } })), {});
  // Without a family the kernel refuses CTA_FILTER: the tuple part is matched here only.
  assert.equal(kernelFilterAttrs(checkFilter({ protocol: 'tcp', mark: 5 })), { mark: 5, markMask: 0xffffffff });
  // Matching as the kernel does: the masked mark against the value as given; the zone, which no kernel filters on.
  const [marked, , zoned] = entries('conntrack-dump4.reply.txt');
  assert.ok(filterMatches(marked!, checkFilter({ mark: 0x10, markMask: 0xf0 })));
  assert.not.ok(filterMatches(marked!, checkFilter({ mark: 0x110, markMask: 0xf0 })));
  assert.ok(filterMatches(zoned!, checkFilter({ zone: 3 })) && !filterMatches(marked!, checkFilter({ zone: 3 })));
  assert.ok(filterMatches(zoned!, checkFilter({ status: ['CONFIRMED'], statusMask: CT.CT_STATUS.CONFIRMED | CT.CT_STATUS.SEEN_REPLY })));
});

test('list filters again what the kernel sent (a kernel that ignored the filter), get returns undefined on ENOENT', () => {
  const dump = messages('conntrack-dump4.reply.txt');
  const { ct, sent } = fakeConntrack(dump, { get: messages('conntrack-get.reply.txt')[0]! });
  assert.equal(ct.list({ protocol: 'udp', orig: { dst: '10.2.0.2' } }).map((e) => e.orig.dstPort), [5353, 5300]);
  assert.equal(ct.list({ zone: 3 }).map((e) => e.orig.srcPort), [40002]);
  const req = decodePayload(CT.ctMessage, sent[0]!.payload).attrs;
  assert.equal([req.filter?.origFlags, req.orig?.ip?.v4dst], [CTA_FILTER_F.IP_DST | CTA_FILTER_F.PROTO_NUM, '10.2.0.2']);
  assert.is(ct.get({ protocol: 'udp', src: '10.1.0.2', dst: '10.2.0.2', srcPort: 40000, dstPort: 5353 })?.orig.srcPort, 40000);
  const missing = fakeConntrack(dump);
  assert.is(missing.ct.get({ protocol: 'udp', src: '10.1.0.2', dst: '10.2.0.2', srcPort: 1, dstPort: 2 }), undefined);
  assert.is(catchError(() => ct.get({ protocol: 'udp', src: '10.1.0.2', dst: 'fd00::1' })).field, 'dst');
});

test('delete: one dump, then one delete per entry with its original tuple as dumped, zone and id; ENOENT counts as gone, other errors throw', () => {
  const dump = messages('conntrack-dump4.reply.txt');
  const { ct, sent } = fakeConntrack(dump, { deleteErrno: (i) => (i === 1 ? 2 : 0) });
  assert.is(ct.delete({ protocol: 'udp' }), 1);
  const deletes = sent.filter((m) => m.type === CT.ctMsgType(CT.IPCTNL_MSG.DELETE));
  assert.is(deletes.length, 2);
  const zoned = decodePayload(CT.ctMessage, deletes[1]!.payload);
  const original = decodePayload(CT.ctMessage, dump[2]!.payload).attrs;
  assert.equal([zoned.header.family, zoned.attrs.zone, zoned.attrs.id], [2, 3, original.id]);
  assert.is(encode(CT.ctDeleteRequest(CT.decodeConntrack(dump[2]!))).subarray(20, 20 + 52).toString('hex'), dump[2]!.payload.subarray(4, 56).toString('hex'), 'the tuple bytes as the kernel sent them');
  const failing = fakeConntrack(dump, { deleteErrno: () => 1 });
  assert.is(catchError(() => failing.ct.delete()).code, 'EPERM');
});

test('flush: a family is sent with nfgenmsg version 1 (version 0 flushes every family); mark and status as in a dump; count reads CTA_STATS_GLOBAL_ENTRIES', () => {
  const { ct, sent } = fakeConntrack();
  ct.flush({ family: 6 });
  ct.flush({ mark: 7 });
  assert.equal([...sent[0]!.payload], [10, 1, 0, 0]);
  assert.equal(decodePayload(CT.ctMessage, sent[1]!.payload).attrs.markMask, 0xffffffff);
  const [countReply] = splitMessages(fixture('conntrack-count.reply.txt'));
  const counting = new Conntrack(dial((req) => [reply(req, req.type, countReply!.payload), ack(req)]));
  assert.is(counting.count(), 8);
});

test('events: typed, filtered, and after ENOBUFS a resync with the table dumped again; the events read after it follow', async () => {
  const dump = messages('conntrack-dump4.reply.txt');
  const { ct, events } = fakeConntrack(dump);
  const m = ct.events({ filter: { protocol: 'udp' } });
  const k = events[0]!;
  k.overrunAt.add(2);
  for (const e of messages('conntrack-events.reply.txt').slice(0, 6)) k.notify(e.type, e.payload, e.flags);
  const got: string[] = [];
  let resync: ConntrackEvent | undefined;
  for await (const e of m) {
    if (e.type === 'resync') resync = e;
    got.push(e.type === 'resync' || e.type === 'undecodable' ? e.type : `${e.type} ${e.entry.protocolName}`);
    if (got.length === 4) break;
  }
  assert.ok(got.includes('resync'), got.join(', '));
  assert.ok(got.every((g) => g === 'resync' || g.endsWith(' udp')), got.join(', '));
  assert.equal(resync?.type === 'resync' ? resync.entries?.map((e) => e.orig.srcPort) : undefined, [40000, 40002]);
  assert.ok(k.closed && events.length === 2 && events[1]!.closed, 'breaking out closes the event socket and the dump socket');
});

test('a message cut short anywhere is a CodecError, never a made-up entry', () => {
  const m = messages('conntrack-dump4.reply.txt')[0]!;
  for (let len = 0; len < m.payload.length; len++) {
    try {
      CT.decodeConntrack({ ...m, payload: m.payload.subarray(0, len) });
    } catch (e) {
      assert.instance(e, CodecError, `cut at ${len}`);
    }
  }
  assert.instance(catchError(() => CT.decodeConntrack({ ...m, payload: m.payload.subarray(0, 20) })), CodecError);
});

test.run();
