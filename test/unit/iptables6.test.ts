/** The IPv6 rules: the same builders for ip6tables-restore, and the per-family view of the desired state. Pure. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { catchError as caught } from '../helpers.js';
import { ValidationError } from '../../src/errors.js';
import { applyNetworksText, endpointAddText, fullRebuildText, missingJumps, networkChainsText, diffRuleset, type NetworkRuleSpec } from '../../src/firewall/iptables/rules.js';
import { stateFor, hasRulesIn } from '../../src/firewall/family.js';
import { ipv6RestoreBinary } from '../../src/firewall/iptables/restore.js';
import { mappingFamilies } from '../../src/firewall/types.js';

const net6: NetworkRuleSpec = { name: 'ds', bridge: 'ds', subnet: 'fd00:10::/64' };

test('network chains for IPv6: forward policy and NAT66 as for IPv4, no raw-table guard, no raw jump', () => {
  const text = networkChainsText([net6], 6);
  assert.not.match(text, /\*raw/);
  assert.match(text, /-A TSN-FORWARD -o ds -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "tsnetlink:ds" -j ACCEPT/);
  assert.match(text, /-A TSN-FORWARD -o ds -m comment --comment "tsnetlink:ds" -j DROP/);
  assert.match(text, /-A TSN-POSTROUTING -s fd00:10::\/64 ! -o ds -m comment --comment "tsnetlink:ds" -j MASQUERADE/);
  assert.equal(missingJumps('', 6).map((j) => j.table), ['filter', 'nat', 'nat', 'nat']);
  assert.not.match(applyNetworksText([net6], '', 6), /PREROUTING -j TSN-PREROUTING/);
  assert.match(networkChainsText([{ ...net6, subnet: 'FD00:10:0::5/64' }], 6), /-s fd00:10::\/64 /, 'canonical text, host bits dropped');
});

test('IPv6 DNAT: the target in brackets as ip6tables-save prints it, a host IP as /128', () => {
  const text = endpointAddText({ id: 'c1', network: net6, ip: 'fd00:10::2', mappings: [
    { hostPort: 8080, containerPort: 80, protocol: 'tcp' },
    { hostIp: '2001:db8::1', hostPort: 53, containerPort: 53, protocol: 'udp' },
  ] }, 6);
  assert.match(text, /-p tcp -m tcp --dport 8080 -m comment --comment "tsnetlink:ds\/c1" -j DNAT --to-destination \[fd00:10::2\]:80/);
  assert.match(text, /-A TSN-DN-[0-9a-f]{16} -d 2001:db8::1\/128 -p udp -m udp --dport 53 .* -j DNAT --to-destination \[fd00:10::2\]:53/);
  assert.not.match(text, /localnet-guard/, 'no guard to check in IPv6');
  // 0.0.0.0 is every address of both families: the IPv6 rule has no -d.
  assert.not.match(endpointAddText({ id: 'c1', network: net6, ip: 'fd00:10::2', mappings: [{ hostIp: '0.0.0.0', hostPort: 1, containerPort: 1, protocol: 'tcp' }] }, 6), / -d /);
});

test('IPv6 input is validated like IPv4: bad subnets, addresses outside, injection, IPv4 in the IPv6 rules', () => {
  const bad: Array<() => unknown> = [
    () => networkChainsText([{ ...net6, subnet: 'fd00:10::/129' }], 6),
    () => networkChainsText([{ ...net6, subnet: 'fe80::/64' }], 6),
    () => networkChainsText([{ ...net6, subnet: '192.168.10.0/24' }], 6),
    () => networkChainsText([{ ...net6, subnet: 'fd00:10::/64 -j ACCEPT' }], 6),
    () => endpointAddText({ id: 'c1', network: net6, ip: 'fd00:11::2', mappings: [{ hostPort: 1, containerPort: 1, protocol: 'tcp' }] }, 6),
    () => endpointAddText({ id: 'c1', network: net6, ip: 'fd00:10::', mappings: [{ hostPort: 1, containerPort: 1, protocol: 'tcp' }] }, 6),
    () => endpointAddText({ id: 'c1', network: net6, ip: 'fd00:10::2', mappings: [{ hostIp: 'ff02::1', hostPort: 1, containerPort: 1, protocol: 'tcp' }] }, 6),
    () => endpointAddText({ id: 'c1', network: net6, ip: 'fd00:10::2', mappings: [{ hostIp: '10.0.0.1', hostPort: 1, containerPort: 1, protocol: 'tcp' }] }, 6),
    () => endpointAddText({ id: 'c1', network: net6, ip: 'fd00:10::2%eth0', mappings: [{ hostPort: 1, containerPort: 1, protocol: 'tcp' }] }, 6),
    () => fullRebuildText([net6, { name: 'other', bridge: 'o', subnet: 'fd00:10:0:0:1::/80' }], [], '', 6),
  ];
  for (const [i, fn] of bad.entries()) assert.instance(caught(fn), ValidationError, `case ${i}`);
});

test('rebuild and diff in IPv6: a clean rebuild has no difference, a flushed ruleset names what is missing', () => {
  const eps = [{ id: 'c1', network: net6, ip: 'fd00:10::2', mappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' as const }] }];
  const built = fullRebuildText([net6], eps, '', 6);
  // What ip6tables-save prints after that text was applied to an empty ruleset.
  const saved = built.replace(/^:([A-Z-]+[0-9a-f-]*) - \[0:0\]$/gm, ':$1 - [0:0]');
  const asSaved = `*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n${saved.split('*filter\n')[1]!.split('COMMIT')[0]}COMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n${saved.split('*nat\n')[1]!.split('COMMIT')[0]}COMMIT\n`;
  assert.equal(diffRuleset([net6], eps, asSaved, 6), []);
  const flushed = diffRuleset([net6], eps, '*filter\n:FORWARD DROP [0:0]\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n', 6);
  assert.ok(flushed.some((d) => d.kind === 'missing' && d.what.includes('TSN-FORWARD')), JSON.stringify(flushed));
  assert.not.ok(flushed.some((d) => d.what.startsWith('raw')), 'nothing expected in raw for IPv6');
});

test('the per-family view: networks by their subnet of the family, endpoints by their address and the mappings published on it', () => {
  const state = {
    networks: [
      { name: 'ds', bridge: 'ds', subnet: '192.168.10.0/24', subnet6: 'fd00:10::/64' },
      { name: 'v4', bridge: 'v4', subnet: '10.1.0.0/24' },
      { name: 'v6', bridge: 'v6', subnet6: 'fd00:20::/64' },
    ],
    endpoints: [
      { id: 'a', network: 'ds', ip: '192.168.10.2', ip6: 'fd00:10::2', mappings: [{ hostPort: 80, containerPort: 80, protocol: 'tcp' as const }, { hostIp: '127.0.0.1', hostPort: 81, containerPort: 80, protocol: 'tcp' as const }, { hostIp: '2001:db8::1', hostPort: 82, containerPort: 80, protocol: 'tcp' as const }] },
      { id: 'b', network: 'v4', ip: '10.1.0.2', mappings: [{ hostPort: 90, containerPort: 80, protocol: 'tcp' as const }] },
      { id: 'c', network: 'v6', ip6: 'fd00:20::2', mappings: [{ hostIp: '::', hostPort: 91, containerPort: 80, protocol: 'tcp' as const }] },
    ],
  };
  const v4 = stateFor(state, 4);
  const v6 = stateFor(state, 6);
  assert.equal(v4.networks.map((n) => `${n.name} ${n.subnet}`), ['ds 192.168.10.0/24', 'v4 10.1.0.0/24']);
  assert.equal(v6.networks.map((n) => `${n.name} ${n.subnet}`), ['ds fd00:10::/64', 'v6 fd00:20::/64']);
  assert.equal(v4.endpoints.map((e) => `${e.id} ${e.ip} ${e.mappings.map((m) => m.hostPort).join(',')}`), ['a 192.168.10.2 80,81', 'b 10.1.0.2 90']);
  assert.equal(v6.endpoints.map((e) => `${e.id} ${e.ip} ${e.mappings.map((m) => m.hostPort).join(',')}`), ['a fd00:10::2 80,82', 'c fd00:20::2 91']);
  assert.ok(hasRulesIn(state.endpoints[0]!, 6));
  assert.not.ok(hasRulesIn(state.endpoints[1]!, 6));
  assert.equal(mappingFamilies({ hostIp: '0.0.0.0' }), [4, 6]);
  assert.equal(mappingFamilies({ hostIp: '::' }), [6]);
});

test('ipv6RestoreBinary: the ip6tables twin, with any directory and variant', () => {
  assert.is(ipv6RestoreBinary('iptables-restore'), 'ip6tables-restore');
  assert.is(ipv6RestoreBinary('iptables-legacy-restore'), 'ip6tables-legacy-restore');
  assert.is(ipv6RestoreBinary('/usr/sbin/iptables-nft-restore'), '/usr/sbin/ip6tables-nft-restore');
  assert.instance(caught(() => ipv6RestoreBinary('/opt/x/fw-restore')), ValidationError);
});


test('check: TSN-HOSTPORTS jumps in connect order (appended) are no difference, in both families; a network chain out of order still is', () => {
  for (const [family, aa, bb, ipA, ipB] of [[4, '192.168.71.0/24', '192.168.72.0/24', '192.168.71.2', '192.168.72.2'], [6, 'fd00:71::/64', 'fd00:72::/64', 'fd00:71::2', 'fd00:72::2']] as const) {
    const nets: NetworkRuleSpec[] = [{ name: 'aa', bridge: 'aa', subnet: aa }, { name: 'bb', bridge: 'bb', subnet: bb }];
    // Endpoint ids that a rebuild sorts the other way round from the order they were connected in.
    const eps = [
      { id: 'ffff00000001', network: nets[0]!, ip: ipA, mappings: [{ hostPort: 9001, containerPort: 80, protocol: 'tcp' as const }] },
      { id: '000000000002', network: nets[1]!, ip: ipB, mappings: [{ hostPort: 9002, containerPort: 80, protocol: 'tcp' as const }] },
    ];
    const built = fullRebuildText(nets, eps, '', family);
    const jumps = built.split('\n').filter((l) => l.startsWith('-A TSN-HOSTPORTS '));
    assert.is(jumps.length, 2);
    const swapped = built.replace(`${jumps[0]}\n${jumps[1]}`, `${jumps[1]}\n${jumps[0]}`);
    assert.is.not(swapped, built, 'the rebuild wrote the jumps in one order');
    assert.equal(diffRuleset(nets, eps, swapped, family).filter((d) => d.what.includes('TSN-HOSTPORTS')), [], `IPv${family}`);
    const fwd = built.split('\n').filter((l) => l.startsWith('-A TSN-FORWARD '));
    const reordered = built.replace(fwd.join('\n'), [...fwd].reverse().join('\n'));
    assert.ok(diffRuleset(nets, eps, reordered, family).some((d) => d.kind === 'changed' && d.what.includes('TSN-FORWARD')), `IPv${family}: drops after accepts is a change`);
  }
});

test.run();
