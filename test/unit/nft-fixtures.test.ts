/**
 * nf_tables encoders against nft's own batches (captured by test/fixtures/tools/nft-capture.ts),
 * byte for byte, BATCH_BEGIN and BATCH_END included; and the decoders against the kernel's
 * GETRULE dump, checked line by line with what `nft --debug=netlink` printed for it.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { decodePayload, encodeBatch, reencode, splitMessages, type Request } from '../../src/netlink/message.js';
import { defOfType } from '../../src/nftables/schemas.js';
import { parseHexFixture } from '../../src/netlink/testing.js';
import { NLM_F } from '../../src/netlink/constants.js';
import * as O from '../../src/nftables/objects.js';
import * as R from '../../src/nftables/ruleset.js';
import { batchRequests } from '../../src/nftables/transaction.js';
import { ifname, ctState, ctStatus, drop, accept, jump, fibAddrType, dnatMap, ipv4Prefix, nfproto, masquerade, concat, field } from '../../src/nftables/match.js';
import type { Expr } from '../../src/nftables/expr.js';
import type { NftRule } from '../../src/nftables/objects.js';
import { portFilterChain, portFilterRules } from '../../src/bridge/portfilter.js';

const dir = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const fixture = (name: string): Buffer => parseHexFixture(readFileSync(dir + name, 'utf8'));
const rows = (b: Buffer): string => (b.toString('hex').match(/.{1,8}/g) ?? []).join('\n');
/** Our batch as nft sends it: no NLM_F_ACK on BATCH_END, sequence numbers and port zeroed. */
const wire = (reqs: Request[], genId?: number): Buffer =>
  encodeBatch(batchRequests(reqs, { ackEnd: false, ...(genId !== undefined ? { genId } : {}) }).map((r) => ({ ...r, flags: r.flags | NLM_F.REQUEST, seq: 0 })), 0, 0);

const T = { family: 'inet' as const, table: 'tsnetlink' };
const rule = (chain: string, exprs: Expr[], comment?: string): NftRule => ({ ...T, chain, exprs, ...(comment ? { comment } : {}) });
const C = 'tsnetlink:testbridge';
const chain = (name: string) => R.chains().find((c) => c.name === name)!;
const net = { name: 'testbridge', bridge: 'testbridge', subnet: { cidr: '192.168.10.0/24' } } as never;

const cases: [string, () => Request[]][] = [
  ['nft-table-add.req.txt', () => [O.addTableRequest({ family: 'inet', name: 'tsnetlink', comment: 'managed by tsnetlink' })]],
  ['nft-chain-add-base.req.txt', () => [O.addChainRequest(chain('forward'))]],
  ['nft-chain-add-nat.req.txt', () => [O.addChainRequest(chain('postrouting'))]],
  ['nft-chain-add.req.txt', () => [O.addChainRequest(chain('isolation'))]],
  // NFTA_SET_ID is nft's own counter (arbitrary): given here as nft numbered it.
  ['nft-set-add-ports.req.txt', () => [O.addSetRequest({ ...R.sets()[0]!, id: 1 })]],
  ['nft-set-add-hostip.req.txt', () => [O.addSetRequest({ ...R.sets()[1]!, id: 1 })]],
  ['nft-elem-add-ports.req.txt', () => {
    const e = R.mappingElement('testbridge', 'c3', '192.168.10.4', { hostIp: undefined, hostPort: 80, containerPort: 80, protocol: 'tcp' });
    return O.addElementsRequests('inet', 'tsnetlink', e.set, [e.element], { setId: 1 });
  }],
  ['nft-elem-add-hostip.req.txt', () => {
    const e = R.mappingElement('testbridge', 'c3', '192.168.10.4', { hostIp: '10.99.0.10', hostPort: 5353, containerPort: 53, protocol: 'udp' });
    return O.addElementsRequests('inet', 'tsnetlink', e.set, [e.element], { setId: 2 });
  }],
  ['nft-elem-del-ports.req.txt', () => O.delElementsRequests('inet', 'tsnetlink', 'ports', [concat([field.proto(6), field.port(80)])])],
  ['nft-rule-fwd-established.req.txt', () => [O.addRuleRequest(rule('forward', [...ifname('oif', 'testbridge'), ...ctState(['established', 'related']), accept()], C))]],
  ['nft-rule-fwd-dnat.req.txt', () => [O.addRuleRequest(rule('forward', [...ifname('oif', 'testbridge'), ...ctStatus(['dnat']), accept()], C))]],
  ['nft-rule-fwd-icc.req.txt', () => [O.addRuleRequest(rule('forward', [...ifname('iif', 'testbridge'), ...ifname('oif', 'testbridge'), accept()], C))]],
  ['nft-rule-fwd-drop.req.txt', () => [O.addRuleRequest(rule('forward', [...ifname('oif', 'testbridge'), drop()], C))]],
  ['nft-rule-fwd-isolation.req.txt', () => [O.addRuleRequest(rule('forward', [...ifname('oif', 'testbridge'), jump('isolation')], C))]],
  ['nft-rule-isolation-drop.req.txt', () => [O.addRuleRequest(rule('isolation', [...ifname('iif', 'testbridge'), drop()], C))]],
  ['nft-rule-prerouting-hostports.req.txt', () => [O.addRuleRequest(R.globalRules()[0]!)]],
  // nft names the map by NFTA_LOOKUP_SET_ID too (its own counter; the kernel finds it by name).
  ['nft-rule-dnat-hostip.req.txt', () => [O.addRuleRequest(rule('hostports', dnatMap('hostip-ports', { daddr: true }, 'ip', 2), 'tsnetlink:hostports'))]],
  ['nft-rule-dnat-ports.req.txt', () => [O.addRuleRequest(rule('hostports', dnatMap('ports', { daddr: false }, 'ip', 1), 'tsnetlink:hostports'))]],
  ['nft-rule-masq.req.txt', () => [O.addRuleRequest(R.networkRules(net).find((r) => r.rule.chain === 'postrouting')!.rule)]],
  ['nft-rule-masq-prefix20.req.txt', () => [O.addRuleRequest(rule('postrouting', [...nfproto('ipv4'), ...ipv4Prefix('saddr', '10.20.16.0/20'), ...ifname('oif', 'br20', 'neq'), masquerade()], 'tsnetlink:br20'))]],
  ['nft-rule-masq-hairpin.req.txt', () => [O.addRuleRequest(R.networkRules(net).filter((r) => r.rule.chain === 'postrouting')[1]!.rule)]],
  ['nft-rule-masq-local.req.txt', () => [O.addRuleRequest(rule('postrouting', [...ifname('oif', 'testbridge'), ...fibAddrType('saddr'), masquerade()], C))]],
  ['nft-rule-localnet-guard.req.txt', () => [O.addRuleRequest(R.globalRules()[4]!)]],
  ['nft-chain-flush.req.txt', () => [O.flushChainRequest('inet', 'tsnetlink', 'forward')]],
  ['nft-table-del.req.txt', () => [O.delTableRequest('inet', 'tsnetlink')]],
  ['nft-bridge-table-add.req.txt', () => [O.addTableRequest({ family: 'bridge', name: 'tsnetlink', comment: "managed by tsnetlink: drops containers' multicast listener reports" })]],
  ['nft-bridge-chain-add.req.txt', () => [O.addChainRequest(portFilterChain())]],
  ['nft-bridge-rule-mld.req.txt', () => [O.addRuleRequest(portFilterRules().find((r) => r.exprs.some((e) => e.type === 'cmp' && e.data.length === 1 && e.data[0] === 143))!)]],
];
for (const [file, build] of cases) {
  test(`encoder matches nft: ${file}`, () => {
    assert.fixture(rows(wire(build())), rows(fixture(file)));
  });
}

test('the forward accept in the iptables chain is byte for byte what iptables-nft -A writes (GENID zeroed in both)', () => {
  assert.fixture(rows(wire([O.addRuleRequest(R.forwardAccept({ name: 'testbridge', bridge: 'testbridge' }, 'oif'))], 0)), rows(fixture('nft-ipt-forward-accept.req.txt')));
});

/** libnftnl's text of an expression (`nft --debug=netlink`): an oracle independent of our describeExpr. */
function libnftnl(e: Expr): string {
  const reg = (r: number) => `reg ${r}`;
  const words = (b: Buffer) => {
    const out: string[] = [];
    for (let i = 0; i < b.length; i += 4) {
      const w = Buffer.alloc(4);
      b.copy(w, 0, i, Math.min(i + 4, b.length));
      out.push(`0x${w.readUInt32LE(0).toString(16).padStart(8, '0')}`);
    }
    return out.join(' ');
  };
  switch (e.type) {
    case 'meta': return `[ meta load ${e.key} => ${reg(e.dreg)} ]`;
    case 'cmp': return `[ cmp ${e.op} ${reg(e.sreg)} ${words(e.data)} ]`;
    case 'ct': return `[ ct load ${e.key} => ${reg(e.dreg)} ]`;
    case 'bitwise': return `[ bitwise ${reg(e.dreg)} = ( ${reg(e.sreg)} & ${words(e.mask)} ) ^ ${words(e.xor)} ]`;
    case 'verdict': return `[ immediate reg 0 ${e.verdict.code}${'chain' in e.verdict ? ` -> ${e.verdict.chain}` : ''} ]`;
    case 'payload': return `[ payload load ${e.len}b @ ${e.base} header + ${e.offset} => ${reg(e.dreg)} ]`;
    case 'lookup': return `[ lookup ${reg(e.sreg)} set ${e.set}${e.dreg !== undefined ? ` dreg ${e.dreg}` : ''} 0x0 ]`;
    case 'nat': return `[ nat ${e.nat} ${e.family} addr_min ${reg(e.addr!)} addr_max ${reg(e.addr!)} proto_min ${reg(e.proto!)} proto_max ${reg(e.proto!)} flags 0x3 ]`;
    case 'masq': return '[ masq ]';
    default: return `[ ${e.type} ]`;
  }
}

test('decoders read the kernel\'s rule dump as nft --debug=netlink shows it', () => {
  const text = readFileSync(dir + 'nft-rules.dump.txt', 'utf8');
  const expected = text.split('\n').filter((l) => l.startsWith('#|   [')).map((l) => l.slice(5));
  const msgs = splitMessages(fixture('nft-rules.dump.txt')).filter((m) => m.type === ((10 << 8) | 6));
  const rules = msgs.map(O.decodeRule);
  assert.equal(rules.map((r) => r.chain), ['forward', 'hostports', 'postrouting']);
  assert.is(rules[0]!.comment, C);
  assert.ok(rules.every((r) => typeof r.handle === 'bigint'));
  assert.equal(rules.flatMap((r) => r.exprs.map(libnftnl)), expected);
});

test('a rule built here and the same rule read back from the kernel describe alike (the diff compares these)', () => {
  const msgs = splitMessages(fixture('nft-rules.dump.txt')).filter((m) => m.type === ((10 << 8) | 6));
  const back = O.decodeRule(msgs[0]!);
  const mine = rule('forward', [...ifname('oif', 'testbridge'), ...ctState(['established', 'related']), accept()], C);
  assert.equal(back.exprs, mine.exprs);
});

test('every nf_tables message of every fixture decodes and re-encodes to the same bytes', () => {
  let n = 0;
  for (const f of readdirSync(dir).filter((x) => /^nft-.*\.txt$/.test(x))) {
    const buf = fixture(f);
    let off = 0;
    for (const m of splitMessages(buf)) {
      const orig = buf.subarray(off, off + ((m.len + 3) & ~3));
      off += (m.len + 3) & ~3;
      const def = defOfType(m.type);
      if (!def) continue;
      assert.is(reencode(def, m, decodePayload(def, m.payload)).toString('hex'), orig.toString('hex'), `${f} at byte ${off}`);
      n++;
    }
  }
  assert.ok(n >= 80, `${n} messages checked`);
});

test.run();
