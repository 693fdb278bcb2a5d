/**
 * Traffic control: every encoder byte-exact against tc's request (iproute2 6.1, captured by
 * test/fixtures/tools/capture.ts), the decoders against the kernel's dump replies, the byte-exact
 * round trip of every tc message captured, and lengths from the wire bounded by the bytes present.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { encode, reencode, splitMessages, decodePayload, type Request } from '../../src/netlink/core/message.js';
import { NLM_F, NLMSG } from '../../src/netlink/core/constants.js';
import { parseHexFixture } from '../../src/netlink/core/testing.js';
import { CodecError } from '../../src/errors.js';
import * as TC from '../../src/netlink/route/tc.js';
import { parsePsched, parseRate, parseSize, parseTime, rateTable, tickInUsec, type Psched } from '../../src/netlink/route/tc-rate.js';

const dir = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const fixture = (name: string): Buffer => parseHexFixture(readFileSync(dir + name, 'utf8'));
const rows = (b: Buffer): string => (b.toString('hex').match(/.{1,8}/g) ?? []).join('\n');
const wire = (req: Request): Buffer => encode({ ...req, flags: req.flags | NLM_F.REQUEST | NLM_F.ACK }, 0, 0);

// /proc/net/psched of the machine the fixtures were captured on (test/fixtures/README.md).
const P: Psched = parsePsched('000003e8 00000040 000f4240 3b9aca00');

test('psched: ticks per microsecond as tc derives them', () => {
  assert.is(tickInUsec(P), 15.625);
  assert.is(tickInUsec(parsePsched('000003e8 000003e8 3b9aca00 3b9aca00')), 1000);
});

test('units as tc reads them', () => {
  assert.is(parseRate('1mbit'), 125000);
  assert.is(parseRate('40gbit'), 5e9);
  assert.is(parseRate('10kbps'), 10000);
  assert.is(parseRate(1000), 1000);
  assert.is(parseSize('32kb'), 32768);
  assert.is(parseSize('1540'), 1540);
  assert.is(parseTime('50ms'), 50000);
  assert.throws(() => parseRate('fast'), /rate/);
});

// In every capture lo = 1, d1 = 2, d0 = 3, ifb0 = 4.
const requests: [string, () => Request][] = [
  ['tc-qdisc-add-tbf.req.txt', () => TC.addQdiscRequest({ dev: 3, kind: 'tbf', tbf: { rate: '1mbit', burst: '32kb', latency: '50ms' } }, P)],
  ['tc-qdisc-add-tbf-peak.req.txt', () => TC.addQdiscRequest({ dev: 3, kind: 'tbf', tbf: { rate: '3mbit', burst: '10kb', latency: '70ms', peakrate: '5mbit', mtu: 1540 } }, P)],
  ['tc-qdisc-add-tbf-rate64.req.txt', () => TC.addQdiscRequest({ dev: 3, kind: 'tbf', tbf: { rate: '40gbit', burst: '1mb', limit: '10mb' } }, P)],
  ['tc-qdisc-replace-tbf.req.txt', () => TC.replaceQdiscRequest({ dev: 3, kind: 'tbf', tbf: { rate: 250000, burst: 65536, latency: 25000 } }, P)],
  ['tc-qdisc-add-htb.req.txt', () => TC.addQdiscRequest({ dev: 4, handle: '1:', kind: 'htb', htb: { defaultClass: 0x10 } }, P)],
  ['tc-class-add-htb.req.txt', () => TC.addClassRequest({ dev: 4, parent: '1:', classid: '1:10', kind: 'htb', htb: { rate: '1mbit', ceil: '2mbit' } }, P)],
  ['tc-qdisc-add-ingress.req.txt', () => TC.addQdiscRequest({ dev: 3, kind: 'ingress' }, P)],
  ['tc-qdisc-add-clsact.req.txt', () => TC.addQdiscRequest({ dev: 3, kind: 'clsact' }, P)],
  ['tc-filter-add-u32-mirred.req.txt', () => TC.addFilterRequest({ dev: 3, parent: 'ffff:', protocol: 'all', priority: 1, u32: { classid: '1:1', actions: [{ kind: 'mirred', action: 'egress-redirect', dev: 4 }] } })],
  ['tc-filter-del.req.txt', () => TC.deleteFilterRequest({ dev: 3, parent: 'ffff:', priority: 1 })],
  ['tc-qdisc-del-root.req.txt', () => TC.deleteQdiscRequest({ dev: 3, parent: 'root' })],
  ['tc-qdisc-del-ingress.req.txt', () => TC.deleteQdiscRequest({ dev: 3, kind: 'ingress' })],
];
for (const [file, build] of requests) {
  test(`encoder matches tc: ${file}`, () => {
    assert.fixture(rows(wire(build())), rows(fixture(file)));
  });
}

test('rate tables: tc\'s rtab for 1mbit (cell_log 3) and 3mbit (rounded as tc does)', () => {
  const m = splitMessages(fixture('tc-qdisc-add-tbf-peak.req.txt'))[0]!;
  const o = decodePayload(TC.tcDefOf(m.payload), m.payload).attrs.options as TC.TbfAttrs;
  assert.equal(rateTable(375000, P, { mtu: 1540 }).table, o.rtab);
  assert.equal(rateTable(625000, P, { mtu: 1540 }).table, o.ptab);
  assert.is(rateTable(125000, P).table[0], 1000);
  assert.is(rateTable(125000, P).cellLog, 3);
});

const decode = (file: string) => splitMessages(fixture(file)).filter((m) => m.type !== NLMSG.DONE);

test('qdisc dump: noqueue, tbf, ingress and htb decoded from the kernel\'s reply', () => {
  const qs = decode('tc-qdisc-dump.reply.txt').map(TC.decodeQdisc);
  assert.equal(qs.map((q) => [q.index, q.kind, q.handleText, q.parentText]), [
    [1, 'noqueue', 'none', 'root'],
    [2, 'noqueue', 'none', 'root'],
    [3, 'tbf', '800d:0', 'root'],
    [3, 'ingress', 'ffff:0', 'ingress'],
    [4, 'htb', '1:0', 'root'],
  ]);
  const tbf = qs[2]!;
  assert.equal(tbf.tbf, { rate: 125000, burst: 32768, limit: 39018 });
  assert.is(tbf.options?.kind, 'tbf');
  assert.equal(qs[4]!.htb, { defaultClass: 0x10, directQlen: 32 });
  assert.ok(Buffer.isBuffer(qs[0]!.raw.attrs.stats2));
});

test('class dump: the htb class with its rate and ceil', () => {
  const cs = decode('tc-class-dump.reply.txt').map(TC.decodeClass);
  assert.is(cs.length, 1);
  assert.equal([cs[0]!.kind, cs[0]!.handleText, cs[0]!.parentText, cs[0]!.index], ['htb', '1:10', 'root', 4]);
  assert.equal(cs[0]!.htb, { rate: 125000, ceil: 250000, prio: 0, quantum: 12500 });
});

test('filter dump: the u32 hash table, then the match-all filter with its mirred redirect', () => {
  const fs = decode('tc-filter-dump.reply.txt').map(TC.decodeFilter);
  assert.equal(fs.map((f) => [f.kind, f.priority, f.protocol, f.parentText, f.chain]), [
    ['u32', 1, 3, 'ffff:0', 0],
    ['u32', 1, 3, 'ffff:0', 0],
    ['u32', 1, 3, 'ffff:0', 0],
  ]);
  const f = fs[2]!;
  assert.is(f.handleText, '8000:800');
  assert.is(f.u32?.classid, TC.makeHandle(1, 1));
  assert.equal(f.u32?.keys, [{ mask: 0, val: 0, off: 0, offmask: 0 }]);
  assert.equal(f.u32?.actions, [{ kind: 'mirred', index: 1, mirred: { eaction: 'egress-redirect', ifindex: 4, action: 4 } }]);
});

test('every tc message captured re-encodes to the same bytes', () => {
  const files = readdirSync(dir).filter((f) => f.startsWith('tc-'));
  assert.ok(files.length >= 45);
  for (const file of files) {
    for (const m of splitMessages(fixture(file))) {
      if (m.type < 36) continue;
      const def = m.type >= 48 ? (TC.actionMessage as unknown as ReturnType<typeof TC.tcDefOf>) : TC.tcDefOf(m.payload);
      const again = reencode(def, m, decodePayload(def, m.payload));
      const orig = encode({ type: m.type, flags: m.flags, seq: m.seq, pid: m.pid, size: m.payload.length, write: (b, o) => void m.payload.copy(b, o) });
      assert.fixture(rows(again), rows(orig), file);
    }
  }
});

test('lengths from the wire are bounded by the bytes present', () => {
  const m = splitMessages(fixture('tc-filter-add-u32-mirred.req.txt'))[0]!;
  const p = Buffer.from(m.payload);
  // nkeys of the u32 selector claims 2 keys where 1 is present.
  const sel = p.indexOf(Buffer.from([0x24, 0x00, 0x05, 0x00]));
  p[sel + 4 + 2] = 2;
  assert.throws(() => TC.decodeFilter({ ...m, payload: p }), (e: unknown) => e instanceof CodecError);
  // A tc_tbf_qopt cut short.
  const t = splitMessages(fixture('tc-qdisc-add-tbf.req.txt'))[0]!;
  const q = Buffer.from(t.payload);
  const parms = q.indexOf(Buffer.from([0x28, 0x00, 0x01, 0x00]));
  q.writeUInt16LE(0x10, parms);
  assert.throws(() => TC.decodeQdisc({ ...t, payload: q }), (e: unknown) => e instanceof CodecError);
  assert.throws(() => TC.decodeQdisc({ ...t, payload: t.payload.subarray(0, 10) }), (e: unknown) => e instanceof CodecError);
});

test('handles as text', () => {
  assert.is(TC.parseHandle('1:'), 0x10000);
  assert.is(TC.parseHandle('1:10'), 0x10010);
  assert.is(TC.parseHandle('ffff:'), 0xffff0000);
  assert.is(TC.parseHandle('root'), 0xffffffff);
  assert.is(TC.formatHandle(0x10010), '1:10');
  assert.throws(() => TC.parseHandle('x:y'), /handle/);
});

test.run();
