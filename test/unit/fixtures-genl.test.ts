/**
 * Generic netlink against ethtool's own traffic (captured by test/fixtures/tools/capture.ts):
 * the controller request and reply, and ethtool's string-set and features requests, byte for
 * byte; the compact feature bitmaps decoded with the names of the string set.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { encode, reencode, splitMessages, decodePayload, type MessageDef, type Request } from '../../src/netlink/core/message.js';
import type { Schema } from '../../src/netlink/core/attr.js';
import { NLM_F } from '../../src/netlink/core/constants.js';
import { parseHexFixture, dial, ack, reply } from '../../src/netlink/core/testing.js';
import { ctrlMessage, decodeFamily, genlMessage, genlRequest, getFamilyRequest, GENL_ID_CTRL, Genl } from '../../src/netlink/genl/genl.js';
import * as E from '../../src/netlink/genl/ethtool.js';
import { catchError } from '../helpers.js';

const dir = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const fixture = (name: string): Buffer => parseHexFixture(readFileSync(dir + name, 'utf8'));
const rows = (b: Buffer): string => (b.toString('hex').match(/.{1,8}/g) ?? []).join('\n');
const wire = (req: Request): Buffer => encode({ ...req, flags: req.flags | NLM_F.REQUEST | NLM_F.ACK }, 0, 0);

const family = decodeFamily(splitMessages(fixture('genl-ctrl-getfamily.reply.txt'))[0]!);
const names = (() => {
  const m = splitMessages(fixture('ethtool-strset-get.reply.txt'))[0]!;
  const a = decodePayload(genlMessage(E.strsetAttrs), m.payload).attrs;
  const out: string[] = [];
  for (const s of a.stringsets?.stringset ?? []) for (const st of s.strings?.string ?? []) out[st.index!] = st.value!;
  return out;
})();

test('the controller describes the ethtool family', () => {
  assert.equal([family.name, family.version, family.id > GENL_ID_CTRL], ['ethtool', 1, true]);
  assert.ok(family.ops.some((o) => o.id === E.ETHTOOL_MSG.FEATURES_GET), 'FEATURES_GET among its ops');
  assert.ok('monitor' in family.mcastGroups);
});

const requests: [string, () => Request][] = [
  ['genl-ctrl-getfamily.req.txt', () => getFamilyRequest('ethtool')],
  ['ethtool-strset-get.req.txt', () => genlRequest(family.id, E.ETHTOOL_MSG.STRSET_GET, 1, E.strsetAttrs, E.strsetRequestAttrs(E.ETH_SS.FEATURES))],
  ['ethtool-features-get.req.txt', () => genlRequest(family.id, E.ETHTOOL_MSG.FEATURES_GET, 1, E.featuresAttrs, E.getFeaturesAttrs('d0'))],
  ['ethtool-features-set.req.txt', () => genlRequest(family.id, E.ETHTOOL_MSG.FEATURES_SET, 1, E.featuresAttrs, E.setFeaturesAttrs('d0', { 'tx-tcp-segmentation': false }))],
];
for (const [file, build] of requests) {
  test(`encoder matches ethtool: ${file}`, () => {
    assert.fixture(rows(wire(build())), rows(fixture(file)));
  });
}

test('compact feature bitmaps decode with the string set\'s names, as ethtool -k shows them', () => {
  assert.is(names.length, 64);
  const m = splitMessages(fixture('ethtool-features-get.reply.txt'))[0]!;
  const a = decodePayload(genlMessage(E.featuresAttrs), m.payload).attrs;
  const active = E.bitsetNames(a.active, names);
  const hw = E.bitsetNames(a.hw, names);
  assert.ok(active.has('tx-tcp-segmentation') && active.has('tx-checksum-ip-generic'));
  assert.not.ok(active.has('tx-checksum-ipv4'));
  assert.not.ok(hw.has('tx-checksum-ipv4'), 'fixed: not among the hw features');
  assert.ok(E.bitsetNames(a.nochange, names).size >= 1);
});

test('every generic netlink message in the fixtures re-encodes to the same bytes', () => {
  let n = 0;
  for (const f of readdirSync(dir).filter((x) => /^(genl|ethtool)-/.test(x))) {
    const buf = fixture(f);
    let off = 0;
    for (const m of splitMessages(buf)) {
      const orig = buf.subarray(off, off + ((m.len + 3) & ~3));
      off += (m.len + 3) & ~3;
      if (m.type < GENL_ID_CTRL) continue;
      const def = (m.type === GENL_ID_CTRL ? ctrlMessage : genlMessage(m.payload[0] === 1 ? E.strsetAttrs : E.featuresAttrs)) as MessageDef<string, Schema>;
      assert.is(reencode(def, m, decodePayload(def, m.payload)).toString('hex'), orig.toString('hex'), f);
      n++;
    }
  }
  assert.ok(n >= 7, `${n} messages`);
});

test('Genl on the fake kernel: family cached after one lookup; a missing family is ENOENT', () => {
  let lookups = 0;
  const ctrlReply = splitMessages(fixture('genl-ctrl-getfamily.reply.txt'))[0]!;
  const sock = dial((req) => {
    if (req.type !== GENL_ID_CTRL) return [ack(req)];
    lookups++;
    const a = decodePayload(ctrlMessage, req.payload).attrs;
    return a.familyName === 'ethtool' ? [reply(req, GENL_ID_CTRL, ctrlReply.payload), ack(req)] : [ack(req, 2, { message: 'Unknown family' })];
  });
  const g = new Genl(sock);
  assert.is(g.family('ethtool').id, family.id);
  assert.is(g.family('ethtool').id, family.id);
  assert.is(lookups, 1);
  const e = catchError(() => g.family('nosuchfamily'));
  assert.is(e.code, 'ENOENT');
  assert.is(e.kernelMessage, 'Unknown family');
});

test.run();
