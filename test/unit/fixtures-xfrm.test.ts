/**
 * XFRM (IPsec): every request byte-exact against `ip xfrm`'s (iproute2 6.1, captured by
 * test/fixtures/tools/capture.ts), the kernel's replies (larval SAs from allocspi, policies, an
 * error) decoded into typed objects, an ESP SA dump built from the kernel's code decoded with
 * its keys, every captured message re-encoded to its bytes, lengths from the wire bounded.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { encode, reencode, splitMessages, decodePayload, type RawMessage, type Request } from '../../src/netlink/core/message.js';
import { NLM_F, NLMSG } from '../../src/netlink/core/constants.js';
import { ack, dial, dumpReply, parseHexFixture, reply } from '../../src/netlink/core/testing.js';
import { CodecError, NetlinkError } from '../../src/errors.js';
import * as X from '../../src/netlink/xfrm/xfrm.js';
import * as XS from '../../src/netlink/xfrm/xfrm-schema.js';
import { catchError } from '../helpers.js';

const dir = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const fixture = (name: string): Buffer => parseHexFixture(readFileSync(dir + name, 'utf8'));
const rows = (b: Buffer): string => (b.toString('hex').match(/.{1,8}/g) ?? []).join('\n');
const messages = (name: string): RawMessage[] => splitMessages(fixture(name)).filter((m) => m.type >= 16);

const KEY32 = '0x0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20';
const KEY16 = '0x0102030405060708090a0b0c0d0e0f10';
const SA = { src: '10.0.0.1', dst: '10.0.0.2', proto: 'esp', spi: 0x1000 } as const;
const ACKED = NLM_F.REQUEST | NLM_F.ACK;

/**
 * Each request with the flags ip sent: REQUEST|ACK for changes; REQUEST alone for get and allocspi
 * (our socket adds ACK to every request, so an answer and an error are told apart); dumps as the
 * socket sends them.
 */
const requests: [string, () => Request, number][] = [
  ['xfrm-state-add.req.txt', () => X.addStateRequest({ ...SA, reqid: 7, mode: 'tunnel', auth: { name: 'sha256', key: KEY32 }, enc: { name: 'aes', key: KEY16 }, mark: { value: 0x10, mask: 0xff }, ifId: 9, sel: { src: '10.1.0.0/24', dst: '10.2.0.0/24' }, lifetime: { timeHard: 3600, byteSoft: 1000000 } }), ACKED],
  ['xfrm-state-add-encap.req.txt', () => X.addStateRequest({ ...SA, reqid: 7, mode: 'tunnel', replayWindow: 32, flags: ['af-unspec'], auth: { name: 'hmac(sha256)', key: KEY32, truncLen: 128 }, enc: { name: 'cbc(aes)', key: KEY16 }, encap: { type: 'espinudp', sport: 4500, dport: 4500, oa: '0.0.0.0' } }), ACKED],
  ['xfrm-state-add-aead6.req.txt', () => X.addStateRequest({ src: 'fd00::1', dst: 'fd00::2', proto: 'esp', spi: 0x2000, aead: { name: 'rfc4106(gcm(aes))', key: '0x0102030405060708090a0b0c0d0e0f1011121314', icvLen: 128 } }), ACKED],
  ['xfrm-state-add-esn.req.txt', () => X.addStateRequest({ ...SA, mode: 'tunnel', replayWindow: 64, enc: { name: 'cbc(aes)', key: Buffer.from(KEY16.slice(2), 'hex') }, extraFlags: ['dont-encap-dscp'], mark: { value: 1 }, outputMark: { value: 3, mask: 0xf }, ifId: 9, tfcpad: 100 }), ACKED],
  ['xfrm-state-update.req.txt', () => X.updateStateRequest({ ...SA, reqid: 7, mode: 'tunnel', auth: { name: 'sha256', key: KEY32 }, enc: { name: 'aes', key: KEY16 } }), ACKED],
  ['xfrm-state-allocspi.req.txt', () => X.allocSpiRequest({ src: '10.0.0.1', dst: '10.0.0.2', proto: 'esp', reqid: 5, mode: 'tunnel', mark: { value: 7, mask: 0xff }, min: 0x1000, max: 0x1000 }), NLM_F.REQUEST],
  ['xfrm-state-get.req.txt', () => X.getStateRequest({ ...SA, mark: { value: 7, mask: 0xff } }), NLM_F.REQUEST],
  ['xfrm-state-delete.req.txt', () => X.deleteStateRequest({ ...SA, mark: { value: 7, mask: 0xff } }), ACKED],
  ['xfrm-state-list.req.txt', () => X.dumpStateRequest(), NLM_F.REQUEST | NLM_F.DUMP],
  ['xfrm-state-flush.req.txt', () => X.flushStateRequest('esp'), ACKED],
  ['xfrm-policy-add.req.txt', () => X.addPolicyRequest({ sel: { src: '10.1.0.0/24', dst: '10.2.0.0/24', proto: 'tcp', dport: 443 }, dir: 'out', priority: 100, mark: { value: 5, mask: 0xff }, ifId: 7, templates: [{ src: '10.0.0.1', dst: '10.0.0.2', proto: 'esp', reqid: 7, mode: 'tunnel' }] }), ACKED],
  ['xfrm-policy-add-sub.req.txt', () => X.addPolicyRequest({ sel: { src: '10.2.0.0/24', dst: '10.1.0.0/24' }, dir: 'in', ptype: 'sub', templates: [{ src: '10.0.0.2', dst: '10.0.0.1', proto: 'esp', reqid: 7, mode: 'tunnel' }, { proto: 'comp', mode: 'transport', level: 'use' }] }), ACKED],
  ['xfrm-policy-update.req.txt', () => X.updatePolicyRequest({ sel: { src: '10.1.0.0/24', dst: '10.2.0.0/24' }, dir: 'out', priority: 50, action: 'block' }), ACKED],
  ['xfrm-policy-get.req.txt', () => X.getPolicyRequest({ sel: { src: 'fd00:1::/64', dst: 'fd00:2::/64' }, dir: 'fwd' }), NLM_F.REQUEST],
  ['xfrm-policy-delete.req.txt', () => X.deletePolicyRequest({ sel: { src: '10.1.0.0/24', dst: '10.2.0.0/24', proto: 'tcp', dport: 443 }, dir: 'out', mark: { value: 5, mask: 0xff }, ifId: 7 }), ACKED],
  ['xfrm-policy-delete-index.req.txt', () => X.deletePolicyRequest({ dir: 'out', index: 0x1234, ptype: 'sub', mark: { value: 4 } }), ACKED],
  ['xfrm-policy-list.req.txt', () => X.dumpPolicyRequest(), NLM_F.REQUEST | NLM_F.DUMP],
  ['xfrm-policy-flush.req.txt', () => X.flushPolicyRequest('sub'), ACKED],
];
for (const [file, build, flags] of requests) {
  test(`encoder matches ip xfrm: ${file}`, () => {
    const req = build();
    assert.fixture(rows(encode({ ...req, flags: req.flags | flags }, 0, 0)), rows(fixture(file)));
  });
}

test('allocspi: the kernel answers with the larval SA, decoded with its mark, reqid, mode and limits', () => {
  const [m] = messages('xfrm-state-allocspi.reply.txt');
  const s = X.decodeState(m!);
  assert.equal([s.family, s.src, s.dst, s.proto, s.spi, s.mode, s.reqid, s.mark], [4, '10.0.0.1', '10.0.0.2', 'esp', 0x1000, 'tunnel', 5, { value: 7, mask: 0xff }]);
  // A larval SA's selector names its two hosts but no family: they read in the SA's.
  assert.equal([s.selector.src, s.selector.srcPrefix, s.selector.dst, s.selector.dstPrefix, s.selector.family], ['10.0.0.1', 32, '10.0.0.2', 32, 0]);
  // A larval SA expires after 30 s unless it is made whole; no byte or packet limit.
  assert.is(s.lifetime.timeHard, 30n);
  assert.is(s.lifetime.byteSoft, X.XFRM_INF);
  assert.ok(s.current.addTime > 1_700_000_000n);
  assert.equal(s.raw.attrs.replayVal, { oseq: 0, seq: 0, bitmap: 0 });
  assert.is(s.auth, undefined);
});

test('state dump and get decode both larval SAs, IPv4 and IPv6', () => {
  const dumped = messages('xfrm-state-dump.reply.txt').map(X.decodeState);
  assert.equal(dumped.map((s) => [s.family, s.src, s.dst, s.spi, s.mode, s.mark?.value]), [
    [6, 'fd00::1', 'fd00::2', 0x2000, 'transport', undefined],
    [4, '10.0.0.1', '10.0.0.2', 0x1000, 'tunnel', 7],
  ]);
  const [got] = messages('xfrm-state-get.reply.txt').map(X.decodeState);
  assert.equal([got!.spi, got!.reqid, got!.mark], [0x1000, 5, { value: 7, mask: 0xff }]);
});

test('ESP SAs as a kernel with ESP dumps them (built from the kernel code): algorithms with keys, encap, ESN, output mark', () => {
  const [a, b, c, d] = messages('xfrm-state-esp.built.reply.txt').map(X.decodeState);
  // The kernel reports auth twice (xfrm_algo and with its truncation length) under its canonical name.
  assert.equal(a!.auth, { name: 'hmac(sha256)', key: Buffer.from(KEY32.slice(2), 'hex'), keyLen: 256, truncLen: 128 });
  assert.equal(a!.enc, { name: 'cbc(aes)', key: Buffer.from(KEY16.slice(2), 'hex'), keyLen: 128 });
  assert.equal([a!.mode, a!.reqid, a!.mark, a!.ifId, a!.selector.src, a!.selector.srcPrefix, a!.lifetime.timeHard, a!.lifetime.byteSoft], ['tunnel', 7, { value: 16, mask: 255 }, 9, '10.1.0.0', 24, 3600n, 1000000n]);
  assert.equal(b!.encap, { type: 'espinudp', sport: 4500, dport: 4500, oa: '0.0.0.0' });
  assert.equal([b!.flags, b!.replayWindow, b!.selector.family], [['af-unspec'], 32, 0]);
  assert.equal([c!.extraFlags, c!.outputMark, c!.tfcpad, c!.raw.attrs.replayEsnVal?.replayWindow, c!.raw.attrs.replayEsnVal?.bmpLen], [['dont-encap-dscp'], { value: 3, mask: 15 }, 100, 64, 2]);
  assert.equal([d!.family, d!.aead?.name, d!.aead?.icvLen, d!.aead?.keyLen], [6, 'rfc4106(gcm(aes))', 128, 160]);
});

test('policy dump and get decode selectors, templates, marks, types and actions', () => {
  const ps = messages('xfrm-policy-dump.reply.txt').map(X.decodePolicy);
  const out = ps.find((p) => p.dir === 'out')!;
  assert.equal([out.selector.src, out.selector.dst, out.selector.proto, out.selector.dport, out.selector.dportMask, out.priority, out.mark, out.ifId, out.ptype, out.action], ['10.1.0.0', '10.2.0.0', 6, 443, 0xffff, 100, { value: 5, mask: 0xff }, 7, 'main', 'allow']);
  assert.equal(out.templates.map((t) => [t.src, t.dst, t.proto, t.reqid, t.mode, t.optional]), [['10.0.0.1', '10.0.0.2', 'esp', 7, 'tunnel', false]]);
  const sub = ps.find((p) => p.dir === 'in')!;
  assert.equal([sub.ptype, sub.templates.length, sub.templates[1]?.proto, sub.templates[1]?.optional, sub.templates[1]?.mode], ['sub', 2, 'comp', true, 'transport']);
  const fwd = ps.find((p) => p.dir === 'fwd')!;
  assert.equal([fwd.selector.family, fwd.selector.src, fwd.selector.srcPrefix, fwd.action, fwd.templates], [6, 'fd00:1::', 64, 'block', []]);
  assert.ok(ps.every((p) => p.index > 0 && p.lifetime.packetHard === X.XFRM_INF));
  const [got] = messages('xfrm-policy-get.reply.txt').map(X.decodePolicy);
  assert.equal([got!.dir, got!.action, got!.selector.dst], ['fwd', 'block', 'fd00:2::']);
});

test('every captured XFRM message re-encodes to its bytes', () => {
  const files = readdirSync(dir).filter((f) => f.startsWith('xfrm-'));
  let n = 0;
  for (const f of files) {
    for (const m of splitMessages(fixture(f))) {
      if (m.type < 16) continue;
      const def = XS.xfrmDefOf(m.type, m.payload.length, (m.flags & NLM_F.DUMP) === NLM_F.DUMP)!;
      assert.ok(def, `${f}: a definition for type ${m.type}`);
      const bytes = reencode(def, m, decodePayload(def, m.payload));
      assert.is(bytes.subarray(16, 16 + m.payload.length).toString('hex'), m.payload.toString('hex'), f);
      n++;
    }
  }
  assert.ok(n >= 30, `${n} messages`);
});

test('an edited decoded SA re-encodes with only that change', () => {
  const [m] = messages('xfrm-state-esp.built.reply.txt');
  const d = decodePayload(XS.saInfoMessage, m!.payload);
  d.attrs.ifId = 10;
  const b = reencode(XS.saInfoMessage, m!, d);
  assert.is(b.length, m!.len);
  assert.is(X.decodeState(splitMessages(b)[0]!).ifId, 10);
  assert.equal(X.decodeState(splitMessages(b)[0]!).auth, X.decodeState(m!).auth);
});

test('lengths from the wire are bounded: short headers, keys longer than their attribute, partial templates', () => {
  const [m] = messages('xfrm-state-esp.built.reply.txt');
  for (let len = 0; len < XS.usersaInfo.size; len += 7) assert.instance(catchError(() => X.decodeState({ ...m!, payload: m!.payload.subarray(0, len) })), CodecError, `cut at ${len}`);
  // The first attribute is ALG_AUTH: claim a 2^32-1-bit key.
  const bad = Buffer.from(m!.payload);
  bad.writeUInt32LE(0xffffffff, XS.usersaInfo.size + 4 + 64);
  assert.match(catchError(() => X.decodeState({ ...m!, payload: bad })).message, /key does not fit/);
  assert.instance(catchError(() => XS.tmplList.read(Buffer.alloc(100), 0, 100)), CodecError);
  const p = messages('xfrm-policy-dump.reply.txt').find((x) => x.payload.length > 300)!;
  const cut = Buffer.from(p.payload);
  // Make the template attribute one byte shorter than two templates.
  const at = XS.userpolicyInfo.size;
  cut.writeUInt16LE(cut.readUInt16LE(at) - 1, at);
  assert.instance(catchError(() => X.decodePolicy({ ...p, payload: cut })), CodecError);
});

test('Xfrm runs the requests: lists, get, allocspi, and the kernel refusing an SA it cannot make', () => {
  const states = messages('xfrm-state-dump.reply.txt').map((m) => m.payload);
  const policies = messages('xfrm-policy-dump.reply.txt').map((m) => m.payload);
  const [larval] = messages('xfrm-state-allocspi.reply.txt');
  const [refusal] = splitMessages(fixture('xfrm-error-noesp.reply.txt'));
  const sock = dial((req) => {
    if (req.type === XS.XFRM_MSG.GETSA && (req.flags & NLM_F.DUMP) !== 0) return dumpReply(req, XS.XFRM_MSG.NEWSA, states);
    if (req.type === XS.XFRM_MSG.GETPOLICY && (req.flags & NLM_F.DUMP) !== 0) return dumpReply(req, XS.XFRM_MSG.NEWPOLICY, policies);
    if (req.type === XS.XFRM_MSG.ALLOCSPI || req.type === XS.XFRM_MSG.GETSA) return [reply(req, XS.XFRM_MSG.NEWSA, larval!.payload), ack(req)];
    if (req.type === XS.XFRM_MSG.NEWSA) {
      const b = Buffer.from(refusal!.payload);
      return [reply(req, NLMSG.ERROR, b, refusal!.flags)];
    }
    return [ack(req)];
  }, { typeName: XS.xfrmTypeName });
  const x = new X.Xfrm(sock);
  assert.equal(x.stateList().map((s) => s.spi), [0x2000, 0x1000]);
  assert.equal(x.policyList().map((p) => p.dir), ['fwd', 'in', 'out']);
  assert.is(x.stateAllocSpi({ src: '10.0.0.1', dst: '10.0.0.2', proto: 'esp', min: 0x1000, max: 0x1000 }).spi, 0x1000);
  assert.is(x.stateGet(SA).reqid, 5);
  x.stateFlush();
  x.policyFlush();
  const e = catchError(() => x.stateAdd({ ...SA, enc: { name: 'aes', key: KEY16 } }));
  assert.instance(e, NetlinkError);
  assert.equal([e.code, e.operation, e.kernelMessage], ['EPROTONOSUPPORT', 'XFRM_MSG_NEWSA', 'Requested type not found']);
  const sent = sock.transport.sent.map((m) => m.type);
  assert.equal(sent, [XS.XFRM_MSG.GETSA, XS.XFRM_MSG.GETPOLICY, XS.XFRM_MSG.ALLOCSPI, XS.XFRM_MSG.GETSA, XS.XFRM_MSG.FLUSHSA, XS.XFRM_MSG.FLUSHPOLICY, XS.XFRM_MSG.NEWSA]);
});

test('bad specs are ValidationErrors before anything is sent', () => {
  const bad: (() => unknown)[] = [
    () => X.addStateRequest({ ...SA, dst: 'fd00::2' }),
    () => X.addStateRequest({ ...SA, proto: 'tls' as X.XfrmProto }),
    () => X.addStateRequest({ ...SA, enc: { name: 'aes', key: '0x123' } }),
    () => X.addStateRequest({ ...SA, enc: { name: 'x'.repeat(64), key: KEY16 } }),
    () => X.addStateRequest({ ...SA, spi: -1 }),
    () => X.addStateRequest({ ...SA, lifetime: { byteSoft: -1 } }),
    () => X.addStateRequest({ ...SA, sel: { src: '10.0.0.0/33' } }),
    () => X.addPolicyRequest({ sel: { src: '10.0.0.0/8', dst: 'fd00::/8' }, dir: 'out' }),
    () => X.addPolicyRequest({ sel: {}, dir: 'sideways' as X.XfrmDir }),
    () => X.addPolicyRequest({ sel: { proto: 'xyz' }, dir: 'out' }),
    () => X.allocSpiRequest({ src: '10.0.0.1', dst: '10.0.0.2', proto: 'esp', min: 5 }),
  ];
  for (const f of bad) assert.is(catchError(f).code, 'EINVAL', String(f));
});

test.run();
