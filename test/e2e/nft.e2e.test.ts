/**
 * End-to-end: the native nf_tables backend on the real kernel, with nft itself (`nft -j list
 * ruleset`), iptables-save, strace and real traffic as oracles. Transactions are all or nothing
 * (a failing message changes nothing, a stale generation is refused, lost replies are said so);
 * a connect -p starts no process; the table survives `nft flush ruleset` through repair and a
 * firewalld-style iptables reload leaves it alone; an iptables FORWARD DROP and a foreign table's
 * drops are coexisted with, an ip6tables FORWARD DROP too for a dual-stack network; networks
 * migrate between backends, both families' rules with them.
 */
import * as assert from 'uvu/assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { Networks, nftables } from '../../src/index.js';
import { makeUpstream, type Upstream } from '../../demo/scenario.js';
import { catchError, requireSandbox } from '../helpers.js';
import { kernelSuite } from '../kernel.js';
import { box, serveIn, reach, DROPPED_MS, CLI, type Box } from './lib.js';

requireSandbox('nft');
const test = kernelSuite('nft', ['nftables']);

const { Nft, addTableRequest, addChainRequest, addRuleRequest, delTableRequest, addSetRequest, addElementsRequests, NftTransactionError } = nftables;
const nets = new Networks({ firewall: 'nftables' });
let up: Upstream;
const boxes: Box[] = [];

function nftJson(): any[] {
  return JSON.parse(execFileSync('nft', ['-j', 'list', 'ruleset'], { encoding: 'utf8' })).nftables;
}
const tables = (): string[] => nftJson().filter((o) => o.table).map((o) => `${o.table.family} ${o.table.name}`);
/** Elements of our maps as nft shows them: "tcp . 8080 -> 10.20.1.2 . 80". */
function elements(): string[] {
  const out: string[] = [];
  for (const o of nftJson()) {
    if (!o.map || o.map.table !== 'tsnetlink') continue;
    for (const [k, v] of o.map.elem ?? []) {
      const key = (k.elem?.val ?? k).concat;
      out.push(`${key.join(' . ')} -> ${v.concat.join(' . ')}`);
    }
  }
  return out.sort();
}
const ipt = (): string => execFileSync('iptables-save', { encoding: 'utf8' });

function container(name: string, port = 80): Box {
  const b = box(name);
  serveIn(b, port);
  boxes.push(b);
  return b;
}

test.before(async () => {
  up = makeUpstream(nets.host);
  await nets.create({ name: 'nfa', subnet: '10.20.1.0/24' });
});

test.after(async () => {
  for (const n of ['nfa', 'nfb', 'nfds']) await nets.remove(n, { force: true }).catch(() => undefined);
  for (const b of boxes) b.close();
  up?.close();
  nets.close();
});

test('a transaction with one failing message changes nothing, and the failure names that message and attribute', () => {
  const nft = Nft.open();
  try {
    const before = tables();
    const e = catchError(() =>
      nft.commit([
        addTableRequest({ family: 'inet', name: 'probe' }),
        addChainRequest({ family: 'inet', table: 'probe', name: 'c' }),
        addRuleRequest({ family: 'inet', table: 'probe', chain: 'nosuchchain', exprs: [nftables.match.accept()] }),
      ]),
    );
    assert.ok(e instanceof NftTransactionError, String(e));
    assert.is(e!.code, 'ENOENT');
    assert.is(e!.committed, false);
    assert.equal(e!.failures.map((f) => [f.index, f.operation, f.attribute]), [[2, 'NFT_MSG_NEWRULE', 'chain']]);
    assert.equal(tables(), before, 'the table and chain of the same batch were not created');
  } finally {
    nft.close();
  }
});

test('a batch built from a stale generation is refused (ERESTART) and the retry on a fresh one commits', () => {
  const nft = Nft.open();
  try {
    const gen = nft.genId();
    execFileSync('nft', ['add', 'table', 'inet', 'someone-else']);
    const e = catchError(() => nft.commit([addTableRequest({ family: 'inet', name: 'guarded' })], { genId: gen }));
    assert.is(e?.code, 'ERESTART');
    assert.not.ok(tables().includes('inet guarded'));
    nft.commit([addTableRequest({ family: 'inet', name: 'guarded' })], { genId: nft.genId() });
    assert.ok(tables().includes('inet guarded'));
    nft.commit([delTableRequest('inet', 'guarded'), delTableRequest('inet', 'someone-else')]);
  } finally {
    nft.close();
  }
});

test('thousands of failures with a small receive buffer: ENOBUFS says the outcome is unknown; with room, each is mapped', () => {
  const reqs = Array.from({ length: 3000 }, (_, i) => delTableRequest('inet', `absent${i}`));
  const small = Nft.open({ receiveBufferSize: 4096, autoBuffers: false });
  try {
    const e: InstanceType<typeof NftTransactionError> = catchError(() => small.commit(reqs));
    assert.is(e?.code, 'ENOBUFS');
    assert.is(e?.committed, undefined);
  } finally {
    small.close();
  }
  const roomy = Nft.open();
  try {
    const e: InstanceType<typeof NftTransactionError> = catchError(() => roomy.commit(reqs));
    assert.is(e?.code, 'ENOENT');
    assert.is(e?.failures.length, 3000);
    assert.equal(e?.failures.slice(0, 2).map((f) => f.index), [0, 1]);
  } finally {
    roomy.close();
  }
});

test('10,000 map elements in one transaction: split into messages under the u16 limit, all committed', () => {
  const nft = Nft.open();
  try {
    const { concatType } = nftables.match;
    const T = nftables.NFT_TYPE;
    const set = { family: 'inet' as const, table: 'bulk', name: 'ports', id: 1, flags: nftables.NFT_SET_F.MAP, keyType: concatType([T.inet_proto, T.inet_service]), keyLen: 8, dataType: concatType([T.ipv4_addr, T.inet_service]), dataLen: 8 };
    const els = Array.from({ length: 10_000 }, (_, i) => ({ key: nftables.match.concat([nftables.match.field.proto(6), nftables.match.field.port(1 + i)]), data: nftables.match.concat([nftables.match.field.ipv4('10.9.0.2'), nftables.match.field.port(80)]) }));
    const reqs = [addTableRequest({ family: 'inet', name: 'bulk' }), addSetRequest(set), ...addElementsRequests('inet', 'bulk', set.name, els)];
    assert.ok(reqs.length > 3, `${reqs.length} messages`);
    nft.commit(reqs);
    assert.is(nft.listElements('inet', 'bulk', set.name).length, 10_000);
    const viaNft = JSON.parse(execFileSync('nft', ['-j', 'list', 'map', 'inet', 'bulk', set.name], { encoding: 'utf8' })).nftables.find((o: any) => o.map).map.elem.length;
    assert.is(viaNft, 10_000);
    nft.commit([delTableRequest('inet', 'bulk')]);
  } finally {
    nft.close();
  }
});

test('a mapping after someone else\'s commit: the guarded batch is refused, re-checked and committed; a rule they removed is drift, not papered over', async () => {
  const { NftablesFirewall } = await import('../../src/firewall/nftables/firewall.js');
  const fw = new NftablesFirewall();
  const net = { name: 'nfguard', bridge: 'nfguard0', subnet: '10.20.9.0/24' };
  const ep = (i: number) => ({ id: `g${i}`, network: net.name, ip: `10.20.9.${i + 2}`, mappings: [{ hostPort: 17000 + i, containerPort: 80, protocol: 'tcp' as const }] });
  try {
    await fw.setNetworks([net]);
    await fw.addEndpoints(net, [ep(0)]);
    // Another tool commits: the generation this firewall remembers is stale now.
    execFileSync('nft', ['add table inet someone-else; delete table inet someone-else']);
    await fw.addEndpoints(net, [ep(1)]);
    assert.ok(elements().includes('tcp . 17001 -> 10.20.9.3 . 80'), elements().join('\n'));
    execFileSync('nft', ['add table inet someone-else; delete table inet someone-else']);
    await fw.removeEndpoints([ep(1)]);
    assert.not.ok(elements().some((e) => e.startsWith('tcp . 17001 ')));
    // Someone removes a rule the mappings rely on: the next mapping is refused as drift.
    execFileSync('nft', ['flush', 'chain', 'inet', 'tsnetlink', 'hostports']);
    const e = await fw.addEndpoints(net, [ep(2)]).then(() => undefined, (x: { code?: string }) => x);
    assert.is(e?.code, 'EFWDRIFT');
    assert.not.ok(elements().some((x) => x.startsWith('tcp . 17002 ')), 'nothing was added');
  } finally {
    await fw.apply({ networks: [], endpoints: [] });
    fw.close();
  }
  await nets.repair();
  assert.equal(await nets.check(), []);
});

test('connect -p on the native backend starts no process (strace -f -e execve of the CLI)', async () => {
  const c = container('px');
  const trace = '/tmp/nft-e2e-execve.log';
  const run = (fw: string, port: number) =>
    spawnSync('strace', ['-f', '-qq', '-e', 'trace=execve', '-o', trace, process.execPath, CLI, 'connect', '--firewall', fw, '-net', 'nfa', '-p', `${port}:80`, c.path], { encoding: 'utf8' });
  const execs = (): string[] => readFileSync(trace, 'utf8').split('\n').filter((l) => l.includes('execve(') && !l.includes('ENOENT'));
  const r = run('nftables', 8090);
  assert.is(r.status, 0, r.stderr);
  const native = execs();
  assert.is(native.length, 1, `only node itself: ${native.join('\n')}`);
  const ep = nets.inspect('nfa').endpoints.find((e) => e.mappings.some((m) => m.hostPort === 8090))!;
  assert.ok(elements().includes(`tcp . 8090 -> ${ep.ip} . 80`), elements().join('\n'));
  assert.is(await reach({ name: 'upstream', ns: up.ns } as Box, up.hostIp, 8090), 'px');
  await nets.disconnect('nfa', ep.id);
});

test('nft flush ruleset (an nftables.conf reload): check says the table is gone, repair rebuilds it and the port answers again', async () => {
  const c = container('f1');
  const ep = await nets.connect('nfa', c.ns, { id: 'f1', ports: ['8091:80'] });
  assert.is(await reach({ name: 'upstream', ns: up.ns } as Box, up.hostIp, 8091), 'f1');
  execFileSync('nft', ['flush', 'ruleset']);
  assert.match(await reach({ name: 'upstream', ns: up.ns } as Box, up.hostIp, 8091, DROPPED_MS), /^unreachable/);
  const problems = await nets.check();
  assert.ok(problems.some((p) => /table inet tsnetlink.*flush ruleset/.test(p)), problems.join('\n'));
  // The flush took iptables-nft's FORWARD chain and its DROP policy too: the host would route between its other links.
  assert.ok(problems.some((p) => /FORWARD policy is ACCEPT, but tsnetlink set DROP/.test(p)), problems.join('\n'));
  const r = await nets.repair();
  assert.ok(r.actions.some((a) => a.includes('firewall rules rewritten')), r.actions.join('\n'));
  assert.ok(r.actions.some((a) => /FORWARD policy was ACCEPT: set to DROP again/.test(a)), r.actions.join('\n'));
  assert.match(execFileSync('iptables', ['-S', 'FORWARD'], { encoding: 'utf8' }), /^-P FORWARD DROP$/m);
  assert.equal(await nets.check(), []);
  assert.ok(elements().includes(`tcp . 8091 -> ${ep.ip} . 80`));
  assert.is(await reach({ name: 'upstream', ns: up.ns } as Box, up.hostIp, 8091), 'f1');
  await nets.disconnect('nfa', 'f1');
});

test('coexistence: a firewalld-style iptables reload with FORWARD DROP flushes our iptables accepts, not our table; repair restores them', async () => {
  const c = container('g1');
  await nets.connect('nfa', c.ns, { id: 'g1', ports: ['8092:80'] });
  const ours = execFileSync('nft', ['list', 'table', 'inet', 'tsnetlink'], { encoding: 'utf8' });
  assert.match(ipt(), /-A FORWARD -o nfa -m comment --comment "tsnetlink:nfa" -j ACCEPT/);
  execFileSync('iptables-restore', { input: '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n' });
  assert.is(execFileSync('nft', ['list', 'table', 'inet', 'tsnetlink'], { encoding: 'utf8' }), ours, 'our table untouched by the reload');
  assert.match(await reach({ name: 'upstream', ns: up.ns } as Box, up.hostIp, 8092, DROPPED_MS), /^unreachable/, 'FORWARD DROP now drops what our table accepts');
  assert.ok((await nets.check()).some((p) => p.includes('iptables FORWARD accept')));
  await nets.repair();
  assert.is(await reach({ name: 'upstream', ns: up.ns } as Box, up.hostIp, 8092), 'g1');
  assert.match(ipt(), /:FORWARD DROP/, 'the admin\'s policy stays');
  await nets.disconnect('nfa', 'g1');
});

test('coexistence: a foreign table\'s drop still drops (an accept of ours ends only our chain), and check ignores foreign tables', async () => {
  const c = container('h1');
  const ep = await nets.connect('nfa', c.ns, { id: 'h1', ports: ['8093:80'] });
  execFileSync('nft', ['-f', '-'], { input: `table inet foreign {\n  chain foreign-forward {\n    type filter hook forward priority -5; policy accept;\n    ip daddr ${ep.ip} tcp dport 80 drop\n  }\n}\n` });
  assert.match(await reach({ name: 'upstream', ns: up.ns } as Box, up.hostIp, 8093, DROPPED_MS), /^unreachable/);
  assert.equal(await nets.check(), []);
  execFileSync('nft', ['delete', 'table', 'inet', 'foreign']);
  assert.is(await reach({ name: 'upstream', ns: up.ns } as Box, up.hostIp, 8093), 'h1');
  await nets.disconnect('nfa', 'h1');
});

test('a second backend on the same host is refused with the way out; repair --firewall migrates every network and back', async () => {
  const ipts = new Networks({ firewall: 'iptables' });
  try {
    const e = await ipts.create({ name: 'nfb', subnet: '10.20.2.0/24' }).then(() => undefined, (x: { code?: string; message: string }) => x);
    assert.is(e?.code, 'EFIREWALL', String(e?.message));
    assert.match(e!.message, /repair --firewall iptables/);
    const c = container('m1');
    const ep = await nets.connect('nfa', c.ns, { id: 'm1', ports: ['8094:80'] });
    const r = await ipts.repair();
    assert.ok(r.actions.some((a) => a.includes('network nfa: firewall backend nftables -> iptables')), r.actions.join('\n'));
    assert.is(nets.inspect('nfa').firewall, 'iptables');
    assert.not.ok(tables().includes('inet tsnetlink'), 'the nf_tables table went with the move');
    assert.match(ipt(), new RegExp(`--to-destination ${ep.ip.replace(/\./g, '\\.')}:80`));
    assert.is(await reach({ name: 'upstream', ns: up.ns } as Box, up.hostIp, 8094), 'm1');
    assert.equal(await ipts.check(), []);
    const back = await nets.repair();
    assert.ok(back.actions.some((a) => a.includes('iptables -> nftables')));
    assert.not.ok(ipt().includes('TSN-'), 'no iptables rule of ours left');
    assert.ok(elements().includes(`tcp . 8094 -> ${ep.ip} . 80`));
    assert.is(await reach({ name: 'upstream', ns: up.ns } as Box, up.hostIp, 8094), 'm1');
    assert.equal(await nets.check(), []);
    await nets.disconnect('nfa', 'm1');
  } finally {
    ipts.close();
  }
});

test('a dual-stack network: a foreign ip6tables -P FORWARD DROP still lets its IPv6 published port through; repair --firewall moves both families and back', async () => {
  // Forwarding already on: create leaves the IPv6 policy alone, and someone else sets it later.
  writeFileSync('/proc/sys/net/ipv6/conf/all/forwarding', '1');
  execFileSync('ip', ['addr', 'add', '2001:db8:99::1/64', 'dev', 'up0', 'nodad']);
  execFileSync('ip', ['-n', up.name, 'addr', 'add', '2001:db8:99::2/64', 'dev', 'eth0', 'nodad']);
  const upBox = { name: 'upstream', ns: up.ns } as Box;
  const made = await nets.createNetwork({ name: 'nfds', subnet: ['10.20.3.0/24', 'fd00:21::/64'] });
  assert.not.ok(made.hostChanges.some((c) => c.startsWith('IPv6 FORWARD policy')), made.hostChanges.join('\n'));
  const c = container('ds1');
  const ep = await nets.connect('nfds', c.ns, { id: 'ds1', ports: ['8095:80'] });
  const ip6 = ep.addresses.find((a) => a.family === 6)!.ip;
  assert.ok(elements().includes(`tcp . 8095 -> ${ip6} . 80`), elements().join('\n'));
  execFileSync('ip6tables', ['-P', 'FORWARD', 'DROP']);
  assert.match(execFileSync('ip6tables-save', { encoding: 'utf8' }), /-A FORWARD -o nfds -m comment --comment "tsnetlink:nfds" -j ACCEPT/);
  assert.is(await reach(upBox, '2001:db8:99::1', 8095), 'ds1', 'IPv6 through the foreign DROP policy');
  assert.is(await reach(upBox, up.hostIp, 8095), 'ds1');
  assert.equal(await nets.check(), []);
  const ipts = new Networks({ firewall: 'iptables' });
  try {
    const r = await ipts.repair();
    assert.ok(r.actions.some((a) => a.includes('network nfds: firewall backend nftables -> iptables')), r.actions.join('\n'));
    assert.ok(execFileSync('ip6tables-save', { encoding: 'utf8' }).includes(`--to-destination [${ip6}]:80`), 'the IPv6 DNAT moved to ip6tables');
    assert.not.ok(tables().includes('inet tsnetlink'));
    assert.is(await reach(upBox, '2001:db8:99::1', 8095), 'ds1', 'IPv6 on the iptables backend');
    assert.equal(await ipts.check(), []);
    await nets.repair();
    assert.not.ok(execFileSync('ip6tables-save', { encoding: 'utf8' }).includes('TSN-'), 'no ip6tables chain of ours left');
    assert.ok(elements().includes(`tcp . 8095 -> ${ip6} . 80`));
    assert.is(await reach(upBox, '2001:db8:99::1', 8095), 'ds1', 'IPv6 back on the native backend');
    assert.equal(await nets.check(), []);
  } finally {
    ipts.close();
  }
  await nets.remove('nfds', { force: true });
  assert.not.ok(execFileSync('ip6tables-save', { encoding: 'utf8' }).includes('tsnetlink'), 'our ip6tables accepts went with the network');
  assert.match(execFileSync('ip6tables-save', { encoding: 'utf8' }), /:FORWARD DROP/, 'the foreign policy stays');
  execFileSync('ip6tables', ['-P', 'FORWARD', 'ACCEPT']);
});

test('the last network removed: our table and accepts are gone, an iptables FORWARD chain we made is gone too', async () => {
  await nets.remove('nfa', { force: true });
  assert.not.ok(tables().includes('inet tsnetlink'));
  assert.not.ok(ipt().includes('tsnetlink'), ipt());
});

test.run();
