/**
 * nf_tables encoders against nft's own batches (captured by test/fixtures/tools/nft-capture.ts),
 * byte for byte, BATCH_BEGIN and BATCH_END included; and the decoders against the kernel's
 * GETRULE and GETSETELEM dumps, checked line by line with what `nft --debug=netlink` printed for
 * them. Both families: the IPv6 maps, elements and rules of dual-stack networks too.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { decodePayload, encodeBatch, reencode, splitMessages, type Request } from '../../src/netlink/core/message.js';
import { defOfType } from '../../src/netlink/nftables/schemas.js';
import { parseHexFixture } from '../../src/netlink/core/testing.js';
import { NLM_F } from '../../src/netlink/core/constants.js';
import * as O from '../../src/netlink/nftables/objects.js';
import * as R from '../../src/firewall/nftables/ruleset.js';
import { batchRequests } from '../../src/netlink/nftables/transaction.js';
import { ifname, ctState, ctStatus, drop, accept, jump, fibAddrType, dnatMap, ipv4Prefix, ipv6Prefix, nfproto, masquerade, concat, field, register } from '../../src/netlink/nftables/match.js';
import type { Expr } from '../../src/netlink/nftables/expr.js';
import type { NftRule } from '../../src/netlink/nftables/objects.js';
import { portFilterChain, portFilterRules } from '../../src/firewall/nftables/portfilter.js';
import { ruleText } from '../../src/firewall/nftables/live.js';

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
/** A dual-stack network's two views, as the firewall validates them (iptables/spec.ts's Net). */
const ds = {
  4: { name: 'ds', bridge: 'ds', subnet: { cidr: '192.168.10.0/24' }, internal: false, icc: true, gatewayMode: 'nat' },
  6: { name: 'ds', bridge: 'ds', subnet: { cidr: 'fd00:10::/64' }, internal: false, icc: true, gatewayMode: 'nat' },
} as never as R.NetViews;
const C6 = 'tsnetlink:ds';
const postrouting = (views: R.NetViews) => R.networkRules(views).filter((r) => r.rule.chain === 'postrouting').map((r) => r.rule);
const hostports = () => R.globalRules().filter((r) => r.chain === 'hostports');
const set = (name: string) => R.sets().find((s) => s.name === name)!;

const cases: [string, () => Request[]][] = [
  ['nft-table-add.req.txt', () => [O.addTableRequest({ family: 'inet', name: 'tsnetlink', comment: 'managed by tsnetlink' })]],
  ['nft-chain-add-base.req.txt', () => [O.addChainRequest(chain('forward'))]],
  ['nft-chain-add-nat.req.txt', () => [O.addChainRequest(chain('postrouting'))]],
  ['nft-chain-add.req.txt', () => [O.addChainRequest(chain('isolation'))]],
  // NFTA_SET_ID is nft's own counter (arbitrary): given here as nft numbered it.
  ['nft-set-add-ports.req.txt', () => [O.addSetRequest({ ...set('ports'), id: 1 })]],
  ['nft-set-add-hostip.req.txt', () => [O.addSetRequest({ ...set('hostip-ports'), id: 1 })]],
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
  ['nft-rule-masq.req.txt', () => [O.addRuleRequest(postrouting({ 4: net })[0]!)]],
  ['nft-rule-masq-prefix20.req.txt', () => [O.addRuleRequest(rule('postrouting', [...nfproto('ipv4'), ...ipv4Prefix('saddr', '10.20.16.0/20'), ...ifname('oif', 'br20', 'neq'), masquerade()], 'tsnetlink:br20'))]],
  ['nft-rule-masq-hairpin.req.txt', () => [O.addRuleRequest(postrouting({ 4: net })[1]!)]],
  ['nft-rule-masq-local.req.txt', () => [O.addRuleRequest(rule('postrouting', [...ifname('oif', 'testbridge'), ...fibAddrType('saddr'), masquerade()], C))]],
  ['nft-rule-localnet-guard.req.txt', () => [O.addRuleRequest(R.globalRules().find((r) => r.comment === R.TAG.guard)!)]],
  ['nft-chain-flush.req.txt', () => [O.flushChainRequest('inet', 'tsnetlink', 'forward')]],
  ['nft-table-del.req.txt', () => [O.delTableRequest('inet', 'tsnetlink')]],
  ['nft-bridge-table-add.req.txt', () => [O.addTableRequest({ family: 'bridge', name: 'tsnetlink', comment: "managed by tsnetlink: drops containers' multicast listener reports" })]],
  ['nft-bridge-chain-add.req.txt', () => [O.addChainRequest(portFilterChain())]],
  ['nft-bridge-rule-mld.req.txt', () => [O.addRuleRequest(portFilterRules().find((r) => r.exprs.some((e) => e.type === 'cmp' && e.data.length === 1 && e.data[0] === 143))!)]],
  // ---------------------------------------------------------------- IPv6
  // NFTA_SET_ID is nft's counter of the sets of its batch (1 for a lone map); ours numbers the
  // four maps of a skeleton 1-4. Arbitrary either way: the kernel only matches it within a batch.
  ['nft-set-add-ports6.req.txt', () => [O.addSetRequest({ ...set('ports6'), id: 1 })]],
  ['nft-set-add-hostip6.req.txt', () => [O.addSetRequest({ ...set('hostip-ports6'), id: 1 })]],
  // nft names the map of an element list by NFTA_SET_ELEM_LIST_SET_ID too: its own counter over
  // the maps it has cached (3 and 4 in that setup); the kernel finds the map by name.
  ['nft-elem-add-ports6.req.txt', () => {
    const e = R.mappingElement('ds', 'd2', 'fd00:10::3', { hostIp: undefined, hostPort: 8080, containerPort: 80, protocol: 'tcp' }, 6);
    return O.addElementsRequests('inet', 'tsnetlink', e.set, [e.element], { setId: 3 });
  }],
  ['nft-elem-add-hostip6.req.txt', () => {
    const e = R.mappingElement('ds', 'd2', 'fd00:10::3', { hostIp: '2001:db8::1', hostPort: 5353, containerPort: 53, protocol: 'udp' }, 6);
    return O.addElementsRequests('inet', 'tsnetlink', e.set, [e.element], { setId: 4 });
  }],
  ['nft-elem-del-ports6.req.txt', () => {
    const k = R.mappingKey({ hostIp: undefined, hostPort: 8080, protocol: 'tcp' }, 6);
    return O.delElementsRequests('inet', 'tsnetlink', k.set, [k.key]);
  }],
  ['nft-elem-del-hostip6.req.txt', () => {
    const k = R.mappingKey({ hostIp: '2001:db8::1', hostPort: 5353, protocol: 'udp' }, 6);
    return O.delElementsRequests('inet', 'tsnetlink', k.set, [k.key]);
  }],
  // The DNAT rules of the hostports chain as globalRules() writes them; nft adds NFTA_LOOKUP_SET_ID
  // (its counter, arbitrary) beside the map's name: given here as nft numbered it.
  ['nft-rule-dnat-ports-nfproto4.req.txt', () => [O.addRuleRequest(withSetId(hostports()[1]!, 1))]],
  ['nft-rule-dnat-hostip6.req.txt', () => [O.addRuleRequest(withSetId(hostports()[2]!, 4))]],
  ['nft-rule-dnat-ports6.req.txt', () => [O.addRuleRequest(withSetId(hostports()[3]!, 3))]],
  ['nft-rule-masq6.req.txt', () => [O.addRuleRequest(postrouting(ds)[3]!)]],
  ['nft-rule-masq6-prefix60.req.txt', () => [O.addRuleRequest(rule('postrouting', [...nfproto('ipv6'), ...ipv6Prefix('saddr', 'fd00:10::/60'), ...ifname('oif', 'ds', 'neq'), masquerade()], C6))]],
  ['nft-rule-masq6-hairpin.req.txt', () => [O.addRuleRequest(postrouting(ds)[4]!)]],
  ['nft-rule-masq-local4.req.txt', () => [O.addRuleRequest(postrouting(ds)[2]!)]],
  ['nft-rule-masq-local6.req.txt', () => [O.addRuleRequest(postrouting(ds)[5]!)]],
];

/** A rule whose map lookup also names the map by NFTA_LOOKUP_SET_ID, as nft writes it. */
function withSetId(r: NftRule, setId: number): NftRule {
  return { ...r, exprs: r.exprs.map((e) => (e.type === 'lookup' ? { ...e, setId } : e)) };
}
for (const [file, build] of cases) {
  test(`encoder matches nft: ${file}`, () => {
    assert.fixture(rows(wire(build())), rows(fixture(file)));
  });
}

test('the forward accept in the iptables chain is byte for byte what iptables-nft -A writes (GENID zeroed in both)', () => {
  assert.fixture(rows(wire([O.addRuleRequest(R.forwardAccept({ name: 'testbridge', bridge: 'testbridge' }, 'oif'))], 0)), rows(fixture('nft-ipt-forward-accept.req.txt')));
});

test('the forward accept in the ip6tables chain is byte for byte what ip6tables-nft -A writes (GENID zeroed in both)', () => {
  assert.fixture(rows(wire([O.addRuleRequest(R.forwardAccept({ name: 'testbridge', bridge: 'testbridge' }, 'oif', 6))], 0)), rows(fixture('nft-ipt6-forward-accept.req.txt')));
});

test('ip6 filter FORWARD made natively is the table and chain ip6tables-nft -P FORWARD DROP makes, attribute for attribute', () => {
  // ip6tables-nft makes the chain with policy accept and then sets the policy in a second
  // NEWCHAIN (which repeats hook and type and carries zeroed counters); it orders a chain's attributes hook, policy,
  // type where nft writes type, policy, hook, and it flags NEWTABLE with NLM_F_CREATE where nft
  // sends NFTA_TABLE_FLAGS 0. The kernel reads either the same way: what is compared here is
  // what each message says, decoded.
  const theirs = splitMessages(fixture('nft-ipt6-forward-policy.req.txt')).slice(1, -1).map((m) => ({ msg: m.type, family: m.payload[0], ...decodePayload(defOfType(m.type)!, m.payload).attrs }));
  const made = splitMessages(wire([O.addTableRequest({ family: 'ip6', name: 'filter' }), O.addChainRequest({ family: 'ip6', table: 'filter', name: 'FORWARD', hook: { hook: 'forward', priority: 0 }, type: 'filter', policy: 'accept' }), O.setChainPolicyRequest('ip6', 'filter', 'FORWARD', 'drop')]))
    .slice(1, -1)
    .map((m) => ({ msg: m.type, family: m.payload[0], ...decodePayload(defOfType(m.type)!, m.payload).attrs }));
  const strip = (x: Record<string, unknown>, ...keys: string[]) => Object.fromEntries(Object.entries(x).filter(([k]) => !keys.includes(k)));
  assert.equal(strip(made[0]!, 'flags'), theirs[0]);
  assert.equal(made[1], theirs[1]);
  assert.equal(made[2], strip(theirs[2]!, 'hook', 'type', 'counters'));
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
    case 'fib': return `[ fib ${e.flags === 1 ? 'saddr' : 'daddr'} type => ${reg(e.dreg)} ]`;
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

test('decoders read the kernel\'s dump of IPv6 rules as nft --debug=netlink shows it, and as our builders make them', () => {
  const text = readFileSync(dir + 'nft-rules6.dump.txt', 'utf8');
  const expected = text.split('\n').filter((l) => l.startsWith('#|   [')).map((l) => l.slice(5));
  const rules = splitMessages(fixture('nft-rules6.dump.txt')).filter((m) => m.type === ((10 << 8) | 6)).map(O.decodeRule);
  assert.equal(rules.map((r) => r.chain), ['hostports', 'hostports', 'postrouting', 'postrouting', 'postrouting']);
  assert.equal(rules.flatMap((r) => r.exprs.map(libnftnl)), expected);
  // What check compares: a rule we build and the kernel's copy of it describe alike.
  const mine = [
    hostports()[2]!,
    hostports()[3]!,
    postrouting(ds)[3]!,
    rule('postrouting', [...nfproto('ipv6'), ...ipv6Prefix('saddr', 'fd00:10::/60'), ...ifname('oif', 'ds'), ...ctStatus(['dnat']), masquerade()], C6),
    postrouting(ds)[5]!,
  ];
  assert.equal(rules.map(ruleText), mine.map(ruleText));
});

test('decoders read the kernel\'s dump of an IPv6 map: the element is the one mappingElement builds', () => {
  const msgs = splitMessages(fixture('nft-elems6.dump.txt')).filter((m) => m.type === ((10 << 8) | 12));
  const elems = msgs.flatMap(O.decodeElements);
  const want = R.mappingElement('ds', 'd2', 'fd00:10::3', { hostIp: '2001:db8::1', hostPort: 5353, containerPort: 53, protocol: 'udp' }, 6).element;
  assert.equal(elems, [want]);
  // nft --debug=netlink prints key and data as little-endian words: the same bytes.
  const line = readFileSync(dir + 'nft-elems6.dump.txt', 'utf8').split('\n').find((l) => l.startsWith('#| \telement b80d0120'))!;
  const [key, data] = line.replace(/^#\| \telement /, '').split(' : ').map((p) => p.replace(/ 0 \[end\].*$/, '').trim().split(/\s+/).map((w) => Buffer.from(w, 'hex').reverse()));
  assert.is(Buffer.concat(key!).toString('hex'), want.key.toString('hex'));
  assert.is(Buffer.concat(data!).toString('hex'), want.data!.toString('hex'));
});

test('registers as nft names them: a 16-byte register where a unit starts one, else its 4-byte view', () => {
  assert.equal([0, 1, 3, 4, 5, 8, 12, 15].map(register), [1, 9, 11, 2, 13, 3, 4, 23]);
  assert.throws(() => register(16));
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
  assert.ok(n >= 130, `${n} messages checked`);
});

test.run();
