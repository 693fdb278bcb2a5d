/**
 * The native backend's ruleset for dual-stack and IPv6-only networks (pure): which rules each
 * family gets, which map a mapping lands in, and what check reports when the kernel's copy
 * differs. The byte encodings of these rules are checked against nft in nft-fixtures.test.ts;
 * here the policy is checked against the iptables backend's (iptables/rules.ts in both families).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { catchError } from '../helpers.js';
import { ValidationError } from '../../src/errors.js';
import { FirewallDriftError, type FirewallEndpoint, type FirewallNetwork, type FirewallState } from '../../src/firewall/types.js';
import { describeExpr, type Expr } from '../../src/netlink/nftables/expr.js';
import { compare, type LiveRuleset } from '../../src/firewall/nftables/live.js';
import * as R from '../../src/firewall/nftables/ruleset.js';
import type { NftRule } from '../../src/netlink/nftables/objects.js';

const ds: FirewallNetwork = { name: 'ds', bridge: 'ds', subnet: '192.168.10.0/24', subnet6: 'fd00:10::/64' };
const v6only: FirewallNetwork = { name: 'v6only', bridge: 'v6only', subnet6: 'fd00:20::/64' };
const v4only: FirewallNetwork = { name: 'v4only', bridge: 'v4only', subnet: '192.168.50.0/24' };
const d2: FirewallEndpoint = { id: 'd2', network: 'ds', ip: '192.168.10.3', ip6: 'fd00:10::3', mappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] };

/** A rule as text: its expressions as describeExpr prints them (`payload 8b @ network + 8 => r1; ...`). */
const text = (r: NftRule): string => r.exprs.map(describeExpr).join('; ');
const rulesOf = (state: FirewallState, chain: string): NftRule[] => R.rulesFor(R.desiredNft(state).networks).get(chain) ?? [];
const tagged = (rules: NftRule[], network: string): NftRule[] => rules.filter((r) => r.comment === R.TAG.network(network));
/** Whether a rule matches `meta nfproto` of a family. */
const isFamily = (r: NftRule, family: 4 | 6): boolean => r.exprs.some((e: Expr, i) => e.type === 'meta' && e.key === 'nfproto' && (r.exprs[i + 1] as Expr & { data?: Buffer }).data?.[0] === (family === 4 ? 2 : 10));

/** The elements as `map key -> data` in words, as check prints them. */
function elements(state: FirewallState): string[] {
  const out: string[] = [];
  for (const [set, elems] of R.elementsFor(R.desiredNft(state).endpoints)) for (const e of elems) out.push(R.describeElement(set, e));
  return out.sort();
}

test('a dual-stack network: the forward rules once for both families, NAT rules per family, like iptables and ip6tables', () => {
  const state = { networks: [ds], endpoints: [] };
  const fwd = tagged(rulesOf(state, 'forward'), 'ds');
  // oifname ct state, ct status dnat, icc, drop, iifname accept: the same five as TSN-FORWARD, once.
  assert.is(fwd.length, 5);
  assert.not.ok(fwd.some((r) => isFamily(r, 4) || isFamily(r, 6)), 'the forward rules match interfaces only');
  const post = tagged(rulesOf(state, 'postrouting'), 'ds');
  assert.equal(post.map((r) => (isFamily(r, 4) ? 4 : isFamily(r, 6) ? 6 : 0)), [4, 4, 4, 6, 6, 6]);
  const v6 = post.filter((r) => isFamily(r, 6)).map(text);
  assert.match(v6[0]!, /payload 8b @ network \+ 8 => r1; cmp eq r1 fd00001000000000; meta oifname => r1; cmp neq r1 6473.*; masq$/, 'ip6 saddr fd00:10::/64 oifname != "ds" masquerade');
  assert.match(v6[1]!, /payload 8b @ network \+ 8 .*cmp eq r1 6473.*ct status.*masq$/, 'hairpin: oifname "ds" ct status dnat masquerade');
  assert.match(v6[2]!, /meta oifname => r1; cmp eq r1 6473.*; fib flags 1 result 3 => r1; cmp eq r1 02000000; masq$/, 'host sources: fib saddr type local');
});

test('the hostports chain: each family\'s maps looked up only for its own packets; the localnet guard is IPv4 only', () => {
  const hp = rulesOf({ networks: [ds], endpoints: [] }, 'hostports');
  assert.equal(hp.map((r) => [isFamily(r, 4) ? 4 : isFamily(r, 6) ? 6 : 0, r.exprs.find((e) => e.type === 'lookup')?.type === 'lookup' ? (r.exprs.find((e) => e.type === 'lookup') as { set: string }).set : '']), [
    [4, 'hostip-ports'],
    [4, 'ports'],
    [6, 'hostip-ports6'],
    [6, 'ports6'],
  ]);
  assert.ok(hp.filter((r) => isFamily(r, 6)).every((r) => r.exprs.some((e) => e.type === 'nat' && e.family === 'ip6')), 'dnat ip6 to');
  const raw = rulesOf({ networks: [v6only], endpoints: [] }, 'raw-prerouting');
  assert.is(raw.length, 1);
  assert.ok(isFamily(raw[0]!, 4), 'no IPv6 guard: the kernel drops ::1 from non-lo interfaces itself');
});

test('an IPv6-only network: no IPv4 NAT rule and no iptables (IPv4) FORWARD accept; its ip6tables accepts', () => {
  const want = R.desiredNft({ networks: [v6only], endpoints: [] });
  const post = tagged(R.rulesFor(want.networks).get('postrouting')!, 'v6only');
  assert.ok(post.length === 3 && post.every((r) => isFamily(r, 6)), post.map(text).join('\n'));
  assert.equal(R.forwardAccepts(want.networks[4], 4), []);
  assert.equal(R.forwardAccepts(want.networks[6], 6).map((r) => [r.family, r.table, r.chain]), [['ip6', 'filter', 'FORWARD'], ['ip6', 'filter', 'FORWARD']]);
  // An IPv4-only network gets no ip6tables accept, as the iptables backend writes it no ip6tables rule.
  const v4 = R.desiredNft({ networks: [v4only], endpoints: [] });
  assert.equal(R.forwardAccepts(v4.networks[6], 6), []);
  assert.ok(tagged(R.rulesFor(v4.networks).get('postrouting')!, 'v4only').every((r) => isFamily(r, 4)));
});

test('gateway modes and internal in IPv6: routed has no NAT66 but keeps hairpin, internal has no NAT at all', () => {
  const routed = tagged(rulesOf({ networks: [{ ...ds, gatewayMode: 'routed' }], endpoints: [] }, 'postrouting'), 'ds');
  assert.equal(routed.map((r) => text(r).includes('cmp neq r1 6473')), [false, false, false, false], 'no masquerade of traffic leaving elsewhere');
  assert.is(routed.length, 4, 'hairpin and host sources in each family');
  assert.equal(tagged(rulesOf({ networks: [{ ...ds, internal: true }], endpoints: [] }, 'postrouting'), 'ds'), []);
  // Isolation: an opened IPv6-only network still makes every other bridge's traffic drop at it.
  const iso = rulesOf({ networks: [{ ...v6only, gatewayMode: 'nat-unprotected' }, v4only], endpoints: [] }, 'isolation');
  assert.equal(iso.map((r) => r.comment), ['tsnetlink:v4only', 'tsnetlink:v6only']);
});

test('which maps a mapping lands in: no host IP on both families, [::] and an IPv6 host IP in IPv6 only, an IPv4 host IP in IPv4 only', () => {
  const m = (hostIp: string | undefined, hostPort: number) => ({ ...(hostIp !== undefined ? { hostIp } : {}), hostPort, containerPort: 80, protocol: 'tcp' as const });
  const ep = { ...d2, mappings: [m(undefined, 8080), m('::', 8081), m('2001:db8::1', 8082), m('10.99.0.10', 8083), m('0.0.0.0', 8084)] };
  assert.equal(elements({ networks: [ds], endpoints: [ep] }), [
    'map hostip-ports tcp 10.99.0.10:8083 -> 192.168.10.3:80 (endpoint ds/d2)',
    'map hostip-ports6 tcp [2001:db8::1]:8082 -> [fd00:10::3]:80 (endpoint ds/d2)',
    'map ports tcp 8080 -> 192.168.10.3:80 (endpoint ds/d2)',
    'map ports tcp 8084 -> 192.168.10.3:80 (endpoint ds/d2)',
    'map ports6 tcp 8080 -> [fd00:10::3]:80 (endpoint ds/d2)',
    'map ports6 tcp 8081 -> [fd00:10::3]:80 (endpoint ds/d2)',
    'map ports6 tcp 8084 -> [fd00:10::3]:80 (endpoint ds/d2)',
  ]);
  // On an IPv6-only network, a mapping without a host IP is published on IPv6 only.
  assert.equal(elements({ networks: [v6only], endpoints: [{ id: 'u1', network: 'v6only', ip6: 'fd00:20::2', mappings: [m(undefined, 8081)] }] }), ['map ports6 tcp 8081 -> [fd00:20::2]:80 (endpoint v6only/u1)']);
  // What removeEndpoints deletes is the key addEndpoints made.
  const k = R.mappingKey({ hostIp: '2001:db8::1', hostPort: 8082, protocol: 'tcp' }, 6);
  const made = R.elementsFor(R.desiredNft({ networks: [ds], endpoints: [ep] }).endpoints).get(k.set)!;
  assert.ok(made.some((e) => e.key.equals(k.key)));
});

test('bad desired states are refused: a bridge shared across families, an endpoint of an unknown network, an address outside the subnet', () => {
  assert.instance(catchError(() => R.desiredNft({ networks: [v6only, { ...v4only, bridge: 'v6only' }], endpoints: [] })), ValidationError);
  assert.instance(catchError(() => R.desiredNft({ networks: [{ name: 'none', bridge: 'none' }], endpoints: [] })), ValidationError);
  assert.instance(catchError(() => R.desiredNft({ networks: [], endpoints: [d2] })), FirewallDriftError);
  assert.instance(catchError(() => R.desiredNft({ networks: [ds], endpoints: [{ ...d2, ip6: 'fd00:11::3' }] })), ValidationError);
  assert.instance(catchError(() => R.desiredNft({ networks: [ds, { ...v6only, subnet6: 'fd00:10::/48' }], endpoints: [] })), ValidationError, 'overlapping IPv6 subnets');
});

/** The live ruleset exactly as the desired one, as readLive would return it after an apply. */
function liveOf(state: FirewallState): LiveRuleset {
  const want = R.desiredNft(state);
  const chain = (family: 4 | 6) => ({ family: R.IPT[family].family, table: 'filter', name: 'FORWARD', hook: { hook: 'forward' as const, priority: 0 }, type: 'filter' as const, policy: 'drop' as const });
  return {
    table: true,
    chains: R.chains(),
    sets: R.sets(),
    rules: [...R.rulesFor(want.networks).values()].flat(),
    elements: R.elementsFor(want.endpoints),
    forward: { 4: { chain: chain(4), rules: R.forwardAccepts(want.networks[4], 4), otherChains: 0 }, 6: { chain: chain(6), rules: R.forwardAccepts(want.networks[6], 6), otherChains: 0 } },
  };
}

function diff(live: LiveRuleset, state: FirewallState): string[] {
  const want = R.desiredNft(state);
  return compare(live, { rules: R.rulesFor(want.networks), elements: R.elementsFor(want.endpoints), forward: { 4: R.forwardAccepts(want.networks[4], 4), 6: R.forwardAccepts(want.networks[6], 6) }, any: true }, R.describeElement).map((d) => `${d.kind} ${d.what}`);
}

test('check on a dual-stack network: nothing when all is there; an IPv6 element, rule, map or ip6tables accept gone is named', () => {
  const state = { networks: [ds], endpoints: [d2] };
  assert.equal(diff(liveOf(state), state), []);
  const noElem = liveOf(state);
  noElem.elements.set('ports6', []);
  assert.equal(diff(noElem, state), ['missing map ports6 tcp 8080 -> [fd00:10::3]:80 (endpoint ds/d2)']);
  const noMasq = liveOf(state);
  noMasq.rules = noMasq.rules.filter((r) => !(r.chain === 'postrouting' && isFamily(r, 6)));
  assert.is(diff(noMasq, state).length, 3);
  assert.ok(diff(noMasq, state).every((d) => d.startsWith('missing postrouting: meta nfproto => r1; cmp eq r1 0a')), diff(noMasq, state).join('\n'));
  // A table made before the IPv6 maps existed: check says so, repair (apply) rebuilds it.
  const old = liveOf(state);
  old.sets = old.sets.filter((s) => !s.name.endsWith('6'));
  assert.ok(diff(old, state).includes('missing map ports6') && diff(old, state).includes('missing map hostip-ports6'), diff(old, state).join('\n'));
  const flushed = liveOf(state);
  flushed.forward[6] = { ...flushed.forward[6]!, rules: [] };
  assert.equal(diff(flushed, state).map((d) => d.replace(/; match comment.*$/, '')), [
    'missing ip6tables FORWARD accept meta oifname => r1; cmp eq r1 647300',
    'missing ip6tables FORWARD accept meta iifname => r1; cmp eq r1 647300',
  ]);
  const gone = liveOf(state);
  delete gone.forward[6];
  assert.equal(diff(gone, state), ["missing ip6tables chain filter FORWARD with tsnetlink's accepts"]);
});

test('check on an IPv4-only network: no IPv6 accept wanted, a leftover one is unexpected, a missing ip6 chain is fine', () => {
  const state = { networks: [v4only], endpoints: [] };
  const live = liveOf(state);
  delete live.forward[6];
  assert.equal(diff(live, state), []);
  const left = liveOf(state);
  left.forward[6]!.rules = R.forwardAccepts([{ name: 'gone', bridge: 'gone' }], 6);
  assert.equal(diff(left, state).map((d) => d.split(' meta ')[0]), ['unexpected ip6tables FORWARD accept', 'unexpected ip6tables FORWARD accept']);
});

test.run();
