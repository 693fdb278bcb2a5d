/**
 * Traffic control beyond the bridge layer's needs: qdiscs fq_codel, netem, prio, sfq, fq,
 * pfifo/bfifo (add and change), u32 `match ip` helpers and chains, matchall, flower, bpf by fd
 * and classic bytecode, the mirred, gact and police actions, standalone actions. Every request
 * is compared with tc's (iproute2 6.1, captured with strace even where this kernel refuses the
 * kind); every decoder runs on a kernel reply: captured where this kernel has the object,
 * built by test/fixtures/tools/build-replies.ts from tc's request the way the kernel's dump
 * functions write it where it does not.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { decodePayload, encode, reencode, splitMessages, type Request } from '../../src/netlink/core/message.js';
import { NLM_F, NLMSG } from '../../src/netlink/core/constants.js';
import { parseHexFixture } from '../../src/netlink/core/testing.js';
import { ValidationError } from '../../src/errors.js';
import * as TC from '../../src/netlink/route/tc.js';
import { parsePercent, parsePsched, percentOf, type Psched } from '../../src/netlink/route/tc-rate.js';

const dir = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const fixture = (name: string): Buffer => parseHexFixture(readFileSync(dir + name, 'utf8'));
const rows = (b: Buffer): string => (b.toString('hex').match(/.{1,8}/g) ?? []).join('\n');
const wire = (req: Request, ack = true): Buffer => encode({ ...req, flags: req.flags | NLM_F.REQUEST | (ack ? NLM_F.ACK : 0) }, 0, 0);
const replies = (file: string) => splitMessages(fixture(file)).filter((m) => m.type !== NLMSG.DONE);
const invalid = (fn: () => unknown, field: RegExp): void => {
  try {
    fn();
  } catch (e) {
    assert.instance(e, ValidationError);
    assert.match((e as Error).message, field);
    return;
  }
  assert.unreachable('no ValidationError');
};

// /proc/net/psched of the machine the fixtures were captured on (test/fixtures/README.md).
const P: Psched = parsePsched('000003e8 00000040 000f4240 3b9aca00');
const drop: TC.ActionSpec = { kind: 'gact', verdict: 'drop' };

// In every capture lo = 1, d1 = 2, d0 = 3, ifb0 = 4.
const requests: [string, () => Request, boolean?][] = [
  ['tc-qdisc-add-fq_codel.req.txt', () => TC.addQdiscRequest({ dev: 3, kind: 'fq_codel', fqCodel: { limit: 2000, flows: 512, quantum: 1300, target: '3ms', interval: '60ms', ecn: true, ceThreshold: '2ms', memoryLimit: '16mb', dropBatch: 32 } }, P)],
  ['tc-qdisc-add-netem.req.txt', () => TC.addQdiscRequest({ dev: 3, kind: 'netem', netem: { delay: '100ms', jitter: '10ms', delayCorrelation: 25, loss: '1%', lossCorrelation: 30, duplicate: 2, corrupt: 0.1, reorder: 25, reorderCorrelation: 50, rate: '1mbit', limit: 2000 } }, P)],
  ['tc-qdisc-add-netem-models.req.txt', () => TC.addQdiscRequest({ dev: 3, kind: 'netem', netem: { lossState: { p13: 1, p31: 10 }, ecn: true, slot: { min: '1ms', max: '2ms', packets: 10, bytes: '64k' }, rate: '40gbit' } }, P)],
  ['tc-qdisc-change-netem.req.txt', () => TC.changeQdiscRequest({ dev: 3, kind: 'netem', netem: { delay: '50ms' } }, P)],
  ['tc-qdisc-add-prio.req.txt', () => TC.addQdiscRequest({ dev: 3, handle: '1:', kind: 'prio', prio: { bands: 4, priomap: [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3] } }, P)],
  ['tc-qdisc-add-sfq.req.txt', () => TC.addQdiscRequest({ dev: 3, kind: 'sfq', sfq: { perturb: 10, quantum: 1514, limit: 100, depth: 50, divisor: 512, flows: 64, headdrop: true } }, P)],
  ['tc-qdisc-add-fq.req.txt', () => TC.addQdiscRequest({ dev: 3, kind: 'fq', fq: { limit: 5000, flowLimit: 50, buckets: 2048, quantum: 3028, initialQuantum: 15140, pacing: false, maxRate: '100mbit', lowRateThreshold: '1mbit', refillDelay: '20ms', orphanMask: 511, ceThreshold: '5ms', timerSlack: '20us', horizon: '5s', horizonDrop: false } }, P)],
  ['tc-qdisc-add-pfifo.req.txt', () => TC.addQdiscRequest({ dev: 3, kind: 'pfifo', fifo: { limit: 50 } }, P)],
  ['tc-qdisc-add-bfifo.req.txt', () => TC.addQdiscRequest({ dev: 2, kind: 'bfifo', fifo: { limit: '64kb' } }, P)],
  ['tc-qdisc-change-tbf.req.txt', () => TC.changeQdiscRequest({ dev: 3, kind: 'tbf', tbf: { rate: '2mbit', burst: '32kb', latency: '50ms' } }, P)],
  ['tc-class-change-htb.req.txt', () => TC.changeClassRequest({ dev: 4, parent: '1:', classid: '1:10', kind: 'htb', htb: { rate: '2mbit', ceil: '4mbit' } }, P)],
  ['tc-filter-add-u32-match.req.txt', () => TC.addFilterRequest({ dev: 3, parent: 'ffff:', protocol: 'ip', priority: 2, u32: { match: [{ src: '10.1.0.0/16' }, { dst: '10.2.0.5/32' }, { protocol: 'tcp' }, { sport: 1000 }, { dport: 80 }], classid: '1:2', actions: [{ kind: 'mirred', action: 'egress-mirror', dev: 4 }] } }, P)],
  ['tc-filter-add-chain.req.txt', () => TC.addFilterRequest({ dev: 3, parent: 'ffff:', protocol: 'all', priority: 9, chain: 3, u32: { actions: [{ kind: 'mirred', action: 'egress-mirror', dev: 4 }] } }, P)],
  ['tc-filter-add-matchall.req.txt', () => TC.addFilterRequest({ dev: 3, parent: 'ffff:', protocol: 'all', priority: 3, matchall: { skipHw: true, classid: '1:3', actions: [{ kind: 'gact', verdict: 'pass' }] } }, P)],
  ['tc-filter-add-matchall-police.req.txt', () => TC.addFilterRequest({ dev: 3, parent: 'ffff:', priority: 4, matchall: { actions: [{ kind: 'police', rate: '1mbit', burst: '10k', exceed: 'drop', conform: 'pipe' }] } }, P)],
  ['tc-filter-add-flower.req.txt', () => TC.addFilterRequest({ dev: 3, parent: 'ffff:', protocol: 'ip', priority: 5, flower: { classid: '1:5', ipProto: 'tcp', dstIp: '10.2.0.0/16', srcIp: '10.1.0.5', dstPort: 80, srcPort: 1234, skipHw: true, actions: [drop] } }, P)],
  ['tc-filter-add-flower-vlan.req.txt', () => TC.addFilterRequest({ dev: 3, parent: 'ffff:', protocol: '802.1q', priority: 6, flower: { vlanId: 100, vlanPrio: 3, vlanEthType: 'ipv6', dstMac: '02:00:00:00:00:01', ipProto: 'udp', srcIp: 'fd00:1::/64', dstPort: 53, skipSw: true, actions: [{ kind: 'gact', verdict: 'pass', random: { type: 'determ', verdict: 'drop', value: 10 } }] } }, P)],
  ['tc-filter-change-flower.req.txt', () => TC.changeFilterRequest({ dev: 3, parent: 'ffff:', protocol: 'ip', priority: 5, handle: 1, flower: { ipProto: 'udp', actions: [{ kind: 'gact', verdict: 'pass' }] } }, P)],
  // tc opened the pinned program as fd 4; Rtnl.filterAdd does the same with BPF_OBJ_GET and sends its own fd.
  ['tc-filter-add-bpf-pinned.req.txt', () => TC.addFilterRequest({ dev: 3, parent: 'ingress', priority: 1, bpf: { fd: 4, pinned: '/sys/fs/bpf/tsn-pass', directAction: true, classid: '1:7' } }, P)],
  ['tc-filter-add-bpf-bytecode.req.txt', () => TC.addFilterRequest({ dev: 3, parent: 'ingress', priority: 2, bpf: { ops: [{ code: 40, jt: 0, jf: 0, k: 12 }, { code: 21, jt: 0, jf: 1, k: 2048 }, { code: 6, jt: 0, jf: 0, k: 0xffffffff }, { code: 6, jt: 0, jf: 0, k: 0 }], classid: '1:1' } }, P)],
  ['tc-action-add-mirred.req.txt', () => TC.addActionRequest([{ kind: 'mirred', action: 'egress-redirect', dev: 4, index: 7 }], P)],
  ['tc-action-add-police.req.txt', () => TC.addActionRequest([{ kind: 'police', rate: '1mbit', burst: '10k', mtu: '2kb', peakrate: '2mbit', exceed: 'drop', index: 8 }], P)],
  ['tc-action-add-gact.req.txt', () => TC.addActionRequest([{ kind: 'gact', verdict: 'pass', random: { type: 'netrand', verdict: 'drop', value: 50 }, index: 9 }], P)],
  ['tc-action-del.req.txt', () => TC.deleteActionRequest([{ kind: 'mirred', index: 7 }])],
  // tc asks for no ack on a get (it waits for the answer); the library asks for both.
  ['tc-action-get.req.txt', () => TC.getActionRequest([{ kind: 'mirred', index: 7 }]), false],
  ['tc-action-flush.req.txt', () => TC.flushActionRequest('mirred')],
];
for (const [file, build, ack] of requests) {
  test(`encoder matches tc: ${file}`, () => {
    assert.fixture(rows(wire(build(), ack ?? true)), rows(fixture(file)));
  });
}

test('qdisc dump (captured): pfifo with its limit', () => {
  const q = replies('tc-qdisc-fifo.reply.txt').map(TC.decodeQdisc).find((x) => x.kind === 'pfifo');
  assert.equal(q?.fifo, { limit: 50 });
  assert.equal(q?.options, { kind: 'pfifo', fifo: { limit: 50 } });
});

test('qdisc dump (built): fq_codel, netem (two), prio, sfq and fq read back as specs', () => {
  const qs = replies('tc-qdisc-built.reply.txt').map(TC.decodeQdisc);
  assert.equal(qs.map((q) => q.kind), ['fq_codel', 'netem', 'netem', 'prio', 'sfq', 'fq']);
  const [codel, netem, models, prio, sfq, fq] = qs as [TC.Qdisc, TC.Qdisc, TC.Qdisc, TC.Qdisc, TC.Qdisc, TC.Qdisc];
  // CoDel's clock counts 1024 ns: 3 ms is reported as 2999 µs, as tc -j shows it.
  assert.equal(codel.fqCodel, { limit: 2000, flows: 512, quantum: 1300, target: 2999, interval: 59999, ecn: true, ceThreshold: 1999, ceThresholdSelector: { value: 0, mask: 0 }, memoryLimit: 16 << 20, dropBatch: 32 });
  assert.equal(netem.netem, {
    delay: 100000, jitter: 10000, limit: 2000, loss: 1, duplicate: 2, gap: 1, delayCorrelation: 25, lossCorrelation: 30,
    reorder: 25, reorderCorrelation: 50, corrupt: 0.1, rate: 125000, seed: 0x0123456789abcdefn,
  });
  assert.equal(models.netem, { delay: 0, jitter: 0, limit: 1000, loss: 0, duplicate: 0, gap: 0, rate: 5e9, ecn: true, lossModel: 'state', slot: { min: 1e6, max: 2e6, packets: 10, bytes: 65536 }, seed: 0x0123456789abcdefn });
  assert.equal(prio.prio, { bands: 4, priomap: [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3] });
  assert.is(prio.handleText, '1:0');
  assert.equal(sfq.sfq, { quantum: 1514, perturb: 10, limit: 100, divisor: 512, flows: 64, depth: 50, headdrop: true });
  assert.equal(fq.fq, {
    limit: 5000, flowLimit: 50, buckets: 2048, quantum: 3028, initialQuantum: 15140, pacing: false, maxRate: 12_500_000, lowRateThreshold: 125000,
    refillDelay: 20000, orphanMask: 511, ceThreshold: 5000, timerSlack: 20000, horizon: 5_000_000, horizonDrop: false,
    priomap: { bands: 3, priomap: [...TC.DEFAULT_PRIOMAP] },
  });
});

test('a decoded netem re-encodes to what tc would send for it (the view is a spec)', () => {
  // The seed is the kernel's own pick: tc 6.1 sends none.
  const { seed, ...netem } = replies('tc-qdisc-built.reply.txt').map(TC.decodeQdisc)[1]!.netem!;
  assert.is(typeof seed, 'bigint');
  const again = TC.addQdiscRequest({ dev: 3, kind: 'netem', netem }, P);
  assert.fixture(rows(wire(again)), rows(fixture('tc-qdisc-add-netem.req.txt')));
});

test('filter dump (captured): u32 match keys as tc merged them, mirred mirror, not in hardware', () => {
  const f = replies('tc-filter-u32-match.reply.txt').map(TC.decodeFilter).find((x) => x.u32?.keys.length);
  assert.equal(f?.u32, {
    keys: [
      { mask: 0xffff0000, val: 0x0a010000, off: 12, offmask: 0 },
      { mask: 0xffffffff, val: 0x0a020005, off: 16, offmask: 0 },
      { mask: 0x00ff0000, val: 0x00060000, off: 8, offmask: 0 },
      { mask: 0xffffffff, val: (1000 * 0x10000 + 80) >>> 0, off: 20, offmask: 0 },
    ],
    actions: [{ kind: 'mirred', index: 1, mirred: { eaction: 'egress-mirror', ifindex: 4, action: 3 } }],
    skipHw: false, skipSw: false, inHw: false, classid: TC.makeHandle(1, 2),
  });
  assert.is(f?.protocol, 0x0800);
  assert.is(f?.priority, 2);
});

test('filter dump (captured): bpf, a pinned eBPF program in direct-action mode and a classic one', () => {
  const fs = replies('tc-filter-bpf.reply.txt').map(TC.decodeFilter).filter((x) => x.bpf);
  assert.is(fs.length, 2);
  const [ebpf, cbpf] = fs as [TC.Filter, TC.Filter];
  assert.is(ebpf.parentText, 'ffff:fff2');
  assert.is(ebpf.bpf?.name, 'tsn-pass:[*fsobj]');
  assert.ok(ebpf.bpf?.directAction);
  assert.match(ebpf.bpf?.tag ?? '', /^[0-9a-f]{16}$/);
  assert.ok((ebpf.bpf?.id ?? 0) > 0);
  assert.is(ebpf.bpf?.classid, TC.makeHandle(1, 7));
  assert.equal(cbpf.bpf?.ops?.map((o) => o.k), [12, 2048, 0xffffffff, 0]);
  assert.not.ok(cbpf.bpf?.directAction);
});

test('filter dump (built): matchall with gact, matchall with police, flower with its keys', () => {
  const fs = replies('tc-filter-built.reply.txt').map(TC.decodeFilter).filter((f) => f.handle !== 0);
  const [ma, police, fl] = fs as [TC.Filter, TC.Filter, TC.Filter];
  assert.equal(ma.matchall, { actions: [{ kind: 'gact', index: 1, gact: { verdict: 'pass' } }], skipHw: true, skipSw: false, inHw: false, classid: TC.makeHandle(1, 3) });
  // The kernel fills in police's mtu from the rate table when none is given: 255 cells of 8 bytes.
  assert.equal(police.matchall?.actions, [{ kind: 'police', index: 1, police: { rate: 125000, burst: 10240, mtu: 2040, exceed: 'drop', conform: 'pipe' } }]);
  assert.equal(fl.flower, {
    actions: [{ kind: 'gact', index: 1, gact: { verdict: 'drop' } }], skipHw: true, skipSw: false, inHw: false,
    classid: TC.makeHandle(1, 5), ethType: 0x0800, ipProto: 6, dstIp: '10.2.0.0/16', srcIp: '10.1.0.5/32', dstPort: 80, srcPort: 1234,
  });
});

test('action dumps: two mirred actions (captured), police and gact (built)', () => {
  assert.equal(replies('tc-action-dump.reply.txt').flatMap((m) => TC.decodeActions(m)), [
    { kind: 'mirred', index: 7, mirred: { eaction: 'egress-redirect', ifindex: 4, action: 4 } },
    { kind: 'mirred', index: 12, mirred: { eaction: 'ingress-mirror', ifindex: 2, action: 3 } },
  ]);
  assert.equal(replies('tc-action-built.reply.txt').flatMap((m) => TC.decodeActions(m)), [
    { kind: 'police', index: 8, police: { rate: 125000, burst: 10240, mtu: 2048, exceed: 'drop', conform: 'pass', peakrate: 250000 } },
    { kind: 'gact', index: 9, gact: { verdict: 'pass', random: { type: 'netrand', verdict: 'drop', value: 50 } } },
  ]);
});

test('unknown attributes and repeats inside the options survive decode and re-encode, in their order', () => {
  for (const [file, extra] of [
    ['tc-filter-add-flower.req.txt', '050009001100000008002c01aabbccdd'], // a second ip_proto, then an unknown type 300
    ['tc-qdisc-add-netem.req.txt', '08000700010000000800c800efbeadde'], // ecn, then an unknown type 200
    ['tc-qdisc-add-fq_codel.req.txt', '0800020005000000'], // limit twice
  ] as const) {
    const m = splitMessages(fixture(file))[0]!;
    const p = Buffer.from(m.payload);
    // TCA_OPTIONS is the message's last attribute: grow it (and the message) by the extra bytes.
    let off = 20;
    while (p.readUInt16LE(off + 2) !== 2) off += (p.readUInt16LE(off) + 3) & ~3;
    const add = Buffer.from(extra, 'hex');
    p.writeUInt16LE(p.readUInt16LE(off) + add.length, off);
    const payload = Buffer.concat([p, add]);
    const def = TC.tcDefOf(payload);
    const msg = { ...m, len: 16 + payload.length, payload };
    const decoded = decodePayload(def, payload);
    const orig = encode({ type: m.type, flags: m.flags, size: payload.length, write: (b, o) => void payload.copy(b, o) });
    assert.fixture(rows(reencode(def, msg, decoded)), rows(orig), file);
    assert.ok(((decoded.attrs['options'] as { unknown?: unknown[] }).unknown?.length ?? 0) > 0, `${file}: the extra attribute is kept`);
  }
});

test('u32 match helpers pack as tc: 8- and 16-bit fields in their word, merged keys, contradictions refused', () => {
  const keys = (match: TC.U32Match[]) => (TC.u32Options({ match }, { idx: {}, psched: P, protocol: 0x800 }, undefined).sel as TC.U32Sel).keys;
  assert.equal(keys([{ tos: 0x10 }]), [{ val: 0x00100000, mask: 0x00ff0000, off: 0, offmask: 0 }]);
  assert.equal(keys([{ dport: 22 }, { sport: 22 }]), [{ val: 0x00160016, mask: 0xffffffff, off: 20, offmask: 0 }]);
  assert.equal(keys([{ u8: 0xab, mask: 0xff, at: 3 }]), [{ val: 0xab, mask: 0xff, off: 0, offmask: 0 }]);
  assert.equal(keys([{ src: '0.0.0.0/0' }]), [{ val: 0, mask: 0, off: 12, offmask: 0 }]);
  assert.equal(keys([]), [{ val: 0, mask: 0, off: 0, offmask: 0 }]);
  invalid(() => keys([{ dport: 22 }, { dport: 23 }]), /contradict/);
  invalid(() => keys([{ src: 'fd00::1/64' }]), /IPv4/);
  invalid(() => keys([{ u32: 1, mask: 1, at: 2 }]), /multiple of 4/);
});

test('bad specs are refused before anything is sent', () => {
  const f = (spec: Partial<TC.FilterSpec>) => () => TC.addFilterRequest({ dev: 3, parent: 'ffff:', ...spec }, P);
  invalid(f({ flower: { ipProto: 'tcp' } }), /ipProto needs protocol ip/);
  invalid(f({ protocol: 'ip', flower: { ipProto: 'icmp', dstPort: 80 } }), /port needs ipProto/);
  invalid(f({ protocol: 'ip', flower: { vlanId: 5 } }), /VLAN keys/);
  invalid(f({ protocol: 'ip', flower: { dstIp: 'fd00::1' } }), /protocol/);
  invalid(f({ matchall: { skipHw: true, skipSw: true } }), /mutually exclusive/);
  invalid(f({ bpf: { pinned: '/sys/fs/bpf/x' } }), /opened by Rtnl/);
  invalid(f({ bpf: {} }), /give fd, pinned or ops/);
  invalid(f({ matchall: { actions: [{ kind: 'police', rate: '1mbit' }] } }), /burst is required/);
  invalid(f({ matchall: { actions: [{ kind: 'gact', verdict: 'maybe' as never }] } }), /unknown verdict/);
  const q = (netem: TC.NetemSpec) => () => TC.addQdiscRequest({ dev: 3, kind: 'netem', netem }, P);
  invalid(q({ reorder: 10 }), /needs a delay/);
  invalid(q({ gap: 5, delay: '10ms' }), /gap needs reorder/);
  invalid(q({ ecn: true }), /ecn needs loss/);
  invalid(q({ loss: 120 }), /percentage/);
  invalid(() => TC.addQdiscRequest({ dev: 3, kind: 'prio', prio: { bands: 2, priomap: [0, 3] } }, P), /priomap\[1\]/);
  invalid(() => TC.addActionRequest([]), /at least one action/);
});

test('netem: a delay past 2^32 ticks goes in the 64-bit attributes, as tc 6.8 sends it; ns64 asks for them', () => {
  const opts = (netem: TC.NetemSpec) => TC.netemOptions(netem, P);
  const long = opts({ delay: '300s', jitter: '1ms' });
  assert.equal([long.head.latency, long.head.jitter, long.latency64, long.jitter64], [0, 0, 300_000_000_000n, 1_000_000n]);
  const asked = opts({ delay: '10ms', ns64: true });
  assert.equal([asked.head.latency, asked.latency64, asked.jitter64], [0, 10_000_000n, undefined]);
  assert.is(opts({ delay: '10ms' }).latency64, undefined);
});

test('percentages as tc rounds them (rint of the fraction of 2^32 - 1), and back', () => {
  assert.is(parsePercent('1%'), 42949673);
  assert.is(parsePercent(0.1), 4294967);
  assert.is(parsePercent(100), 0xffffffff);
  for (const p of [0, 0.1, 1, 25, 33.3, 99.99, 100]) assert.is(parsePercent(percentOf(parsePercent(p))), parsePercent(p), String(p));
});

test('verdicts: names both ways, goto chain and jump as tc prints them', () => {
  assert.equal(['pass', 'ok', 'drop', 'shot', 'continue', 'pipe', 'reclassify', 'trap'].map((v) => TC.verdictOf(v as TC.Verdict)), [0, 0, 2, 2, -1, 3, 1, 8]);
  assert.equal([0, 2, -1, TC.TC_ACT_GOTO_CHAIN | 5, TC.TC_ACT_JUMP | 2, 99].map(TC.verdictName), ['pass', 'drop', 'continue', 'goto chain 5', 'jump 2', 99]);
});

test('filter parents: ingress and egress are clsact hooks; a delete names no protocol unless told', () => {
  assert.is(TC.parseFilterParent('ingress'), 0xfffffff2);
  assert.is(TC.parseFilterParent('egress'), 0xfffffff3);
  assert.is(TC.parseFilterParent('ffff:'), 0xffff0000);
  const del = splitMessages(wire(TC.deleteFilterRequest({ dev: 3, parent: 'egress', priority: 7 })))[0]!;
  assert.is(del.payload.readUInt32LE(16), 7 << 16);
  assert.is(del.payload.readUInt32LE(12), 0xfffffff3);
});

test.run();
