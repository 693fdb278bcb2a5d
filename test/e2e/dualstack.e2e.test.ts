/**
 * End-to-end: dual-stack and IPv6-only bridge networks with real traffic over both families.
 * The book chapter's scenario on a network with 192.168.10.0/24 and fd00:10::/64: both gateways on
 * the bridge, an address of each family and both default routes in each container, container to
 * container, outbound NAT seen by an upstream host, a published port from outside, from the
 * host's own IPv6 address and from a sibling (hairpin), no hijack of non-local destinations, and
 * no direct access to unpublished ports; an IPv6-only network; a UDP flow over IPv6 that predates
 * its published port reaching the container once published; bad IPv6 input refused with no
 * change; repair after `ip6tables -F`. `ip -j`, `iptables-save` and `ip6tables-save` are the oracles;
 * on the native nf_tables backend (TSNETLINK_FIREWALL=nftables, as scripts/test.mjs reruns this
 * file) `nft -j list ruleset` is the oracle of our table (test/e2e/fw-oracle.ts), and
 * ip6tables-save still shows our accepts in its FORWARD chain, which the native backend writes too.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import { Networks, createNamedNetns, deleteNamedNetns, openRtnlIn, withNetns, type NetnsHandle } from '../../src/index.js';
import * as L from '../../src/netlink/route/link.js';
import * as A from '../../src/netlink/route/addr.js';
import { catchAsync, ipJson, probeUdp, requireSandbox, serveUdpIn } from '../helpers.js';
import { ipv6RestoreBinary } from '../../src/firewall/iptables/restore.js';
import { box, serveIn, reach, DROPPED_MS, ipIn, cli, SAVE, RESTORE, type Box } from './lib.js';
import { NFT, nftChainRules, nftExpr as X, nftHasRule, nftHasTable, nftMappings, nftTaggedRules, normalizedNft, rulesHeldBy } from './fw-oracle.js';

requireSandbox('dualstack');

const RESTORE6 = ipv6RestoreBinary(RESTORE);
const SAVE6 = RESTORE6.replace(/-restore$/, '-save');
const IP6TABLES = RESTORE6.replace(/-restore$/, '');
const nets = new Networks();
const boxes: Box[] = [];
const PORT = 80;
const HOST4 = '10.98.0.1';
const HOST6 = '2001:db8:98::1';
const UP4 = '10.98.0.2';
const UP6 = '2001:db8:98::2';

let up: NetnsHandle;
let upServer: net.Server | undefined;
/** Client addresses the upstream server saw, in order. */
const seen: string[] = [];

function container(name: string): Box {
  const b = box(name);
  serveIn(b, PORT);
  boxes.push(b);
  return b;
}

function save6(): string[] {
  return execFileSync(SAVE6, { encoding: 'utf8' }).split('\n').filter((l) => l !== '' && !l.startsWith('#')).map((l) => l.replace(/ \[\d+:\d+\]$/, ''));
}

function addrsIn(b: Box): { family: string; local: string; prefixlen: number; scope: string }[] {
  return ipIn<any[]>(b, ['addr', 'show', 'eth0']).flatMap((i) => i.addr_info);
}

let d1: Box, d2: Box, u1: Box;

test.before(async () => {
  // An upstream host on the uplink with an address of each family, routing the container
  // subnets through this host as a LAN neighbour could.
  up = createNamedNetns('up6');
  const inside = openRtnlIn(up);
  try {
    const link = nets.host.linkAddVeth('up6', { name: 'eth0', netnsFd: up.fd }, { up: true });
    nets.host.addrAdd(link.index, `${HOST4}/24`);
    nets.host.addrAdd(link.index, `${HOST6}/64`, { nodad: true });
    inside.batchOrThrow([L.setUpRequest('lo'), L.setUpRequest('eth0'), A.addAddrRequest(link.peerIndex!, `${UP4}/24`), A.addAddrRequest(link.peerIndex!, `${UP6}/64`, { nodad: true })]);
  } finally {
    inside.close();
  }
  execFileSync('ip', ['-n', 'up6', '-6', 'route', 'add', 'fd00::/16', 'via', HOST6]);
  execFileSync('ip', ['-n', 'up6', 'route', 'add', '192.168.0.0/16', 'via', HOST4]);
  upServer = withNetns(up, () =>
    net
      .createServer((c) => {
        seen.push(c.remoteAddress!.replace('::ffff:', ''));
        c.end('up');
      })
      .listen(9999),
  );
  d1 = container('d1');
  d2 = container('d2');
  u1 = container('u1');
});

test.after(async () => {
  upServer?.close();
  for (const n of nets.list()) await nets.remove(n.name, { force: true });
  for (const b of boxes) b.close();
  up?.close();
  deleteNamedNetns('up6');
  nets.close();
});

/** Connects from inside the upstream netns. */
function reachFromUp(host: string, port: number, ms?: number): Promise<string> {
  return reach({ name: 'up6', ns: up, path: up.path, servers: [], close() {} }, host, port, ms);
}

test('dual-stack create: both gateways on the bridge, IPv6 forwarding on and said, the same chains in ip6tables', async () => {
  const r = await nets.createNetwork({ name: 'ds', subnet: ['192.168.10.1/24', 'fd00:10::/64'] });
  assert.equal(r.record.subnets, [
    { family: 4, subnet: '192.168.10.0/24', gateway: '192.168.10.1', prefix: 24 },
    { family: 6, subnet: 'fd00:10::/64', gateway: 'fd00:10::1', prefix: 64 },
  ]);
  assert.ok(r.hostChanges.some((c) => c.startsWith('net.ipv6.conf.all.forwarding: 0 -> 1')), r.hostChanges.join('\n'));
  assert.ok(r.hostChanges.some((c) => c.startsWith('IPv6 FORWARD policy: ACCEPT -> DROP')), r.hostChanges.join('\n'));
  const addrs = ipJson<any[]>(['addr', 'show', 'ds'])[0].addr_info.map((a: any) => `${a.local}/${a.prefixlen}`);
  assert.ok(addrs.includes('192.168.10.1/24') && addrs.includes('fd00:10::1/64'), addrs.join(' '));
  assert.is(readFileSync('/proc/sys/net/ipv6/conf/all/forwarding', 'utf8').trim(), '1');
  const rules = save6();
  assert.is(rulesHeldBy(), NFT ? 'nftables' : 'iptables', 'the rules are in the backend this run uses');
  assert.ok(rules.includes(':FORWARD DROP'), 'ip6tables FORWARD policy DROP');
  assert.not.ok(rules.some((l) => l.includes('127.0.0.0/8')), 'no IPv4 localnet guard in the IPv6 ruleset');
  if (NFT) {
    assert.ok(nftHasRule('postrouting', [X.saddr('ip6', 'fd00:10::', 64), X.oifname('ds', '!='), X.masquerade]), 'ip6 saddr fd00:10::/64 oifname != "ds" masquerade');
    assert.ok(nftHasRule('postrouting', [X.saddr('ip6', 'fd00:10::', 64), X.oifname('ds'), X.ctDnat, X.masquerade]), 'IPv6 hairpin');
    assert.ok(nftHasRule('postrouting', [X.nfproto('ipv6'), X.oifname('ds'), X.fibSaddrLocal, X.masquerade]), 'IPv6 host sources');
    // The forward rules match interfaces only: one set serves both families.
    assert.ok(nftHasRule('forward', [X.oifname('ds'), X.drop]), 'unpublished ports dropped over IPv6 too');
    assert.not.ok(JSON.stringify(nftChainRules('raw-prerouting')).includes('"ip6"'), 'no IPv6 localnet guard');
    // Our accepts in ip6tables' FORWARD chain, so that its DROP policy does not drop our traffic.
    assert.ok(rules.includes('-A FORWARD -o ds -m comment --comment "tsnetlink:ds" -j ACCEPT') && rules.includes('-A FORWARD -i ds -m comment --comment "tsnetlink:ds" -j ACCEPT'), rules.join('\n'));
  } else {
    assert.ok(rules.includes('-A TSN-POSTROUTING -s fd00:10::/64 ! -o ds -m comment --comment "tsnetlink:ds" -j MASQUERADE'), rules.join('\n'));
    assert.ok(rules.includes('-A TSN-FORWARD -o ds -m comment --comment "tsnetlink:ds" -j DROP'), 'unpublished ports dropped over IPv6 too');
  }
});

test('connect: an address of each family, both default routes, link-local and no DAD on the container end', async () => {
  const e1 = await nets.connect('ds', d1.ns, { id: 'd1' });
  const e2 = await nets.connect('ds', d2.ns, { id: 'd2', ports: ['8080:80'] });
  assert.equal(e1.addresses.map((a) => a.cidr), ['192.168.10.2/24', 'fd00:10::2/64']);
  assert.equal(e2.addresses.map((a) => a.ip), ['192.168.10.3', 'fd00:10::3']);
  assert.is(e1.ip, '192.168.10.2');
  const a = addrsIn(d1);
  assert.ok(a.some((x) => x.local === 'fd00:10::2' && x.prefixlen === 64), JSON.stringify(a));
  assert.ok(a.some((x) => x.scope === 'link' && x.local.startsWith('fe80:')), 'the container end has a link-local address');
  assert.not.ok(a.some((x) => (x as any).tentative), 'no address is tentative');
  const r6 = ipIn<any[]>(d1, ['-6', 'route', 'show', 'default']);
  assert.is(r6[0]?.gateway, 'fd00:10::1');
  assert.is(ipIn<any[]>(d1, ['-4', 'route', 'show', 'default'])[0]?.gateway, '192.168.10.1');
  assert.is(withNetns(d1.ns, () => readFileSync('/proc/sys/net/ipv6/conf/eth0/accept_dad', 'utf8').trim()), '0');
  // The host end stays without an address: a bridge port needs none.
  const host = ipJson<any[]>(['-6', 'addr', 'show', e1.hostIfname]);
  assert.equal(host.flatMap((i) => i.addr_info), []);
  if (NFT) {
    // A mapping without a host IP on a dual-stack network: one element in each family's map.
    const els = nftMappings().filter((m) => m.comment === 'tsnetlink:ds/d2').map((m) => `${m.map} ${m.proto} ${m.hostIp ?? '*'}:${m.hostPort} ${m.to} ${m.toPort}`);
    assert.equal(els.sort(), ['ports tcp *:8080 192.168.10.3 80', 'ports6 tcp *:8080 fd00:10::3 80'], 'IPv6 DNAT for the published port');
  } else assert.ok(save6().some((l) => l.includes('-j DNAT --to-destination [fd00:10::3]:80')), 'IPv6 DNAT for the published port');
});

test('container to container over IPv4 and over IPv6', async () => {
  assert.is(await reach(d1, '192.168.10.3', PORT), 'd2');
  assert.is(await reach(d1, 'fd00:10::3', PORT), 'd2');
  assert.is(await reach(d2, 'fd00:10::2', PORT), 'd1');
});

test('outbound NAT over both families: the upstream host sees the host address', async () => {
  seen.length = 0;
  assert.is(await reach(d1, UP6, 9999), 'up');
  assert.is(await reach(d1, UP4, 9999), 'up');
  assert.equal(seen, [HOST6, HOST4]);
});

test('a published port over IPv6: from outside, from the host itself, hairpin; the right container answers', async () => {
  assert.is(await reachFromUp(HOST6, 8080), 'd2');
  assert.is(await reachFromUp(HOST4, 8080), 'd2');
  assert.is(await reach(undefined, HOST6, 8080), 'd2', 'from the host to its own IPv6 address');
  assert.is(await reach(d1, HOST6, 8080), 'd2', 'hairpin from a sibling through the host address');
  assert.is(await reach(d2, HOST6, 8080), 'd2', 'hairpin from the container itself');
});

test('no hijack: a container reaching a remote IPv6 host on the published port gets that host', async () => {
  const s = withNetns(up, () => net.createServer((c) => c.end('remote')).listen(8080));
  try {
    assert.is(await reach(d1, UP6, 8080), 'remote');
  } finally {
    s.close();
  }
});

test('no direct access over IPv6 to container ports from outside, published or not', async () => {
  assert.match(await reachFromUp('fd00:10::2', PORT), /^unreachable/);
  assert.match(await reachFromUp('fd00:10::3', PORT), /^unreachable/, 'the published container port is reached through the host port only');
});

test('an IPv6-only network: only IPv6 on the bridge and in the container, MAC from the IPv6 address, reachable from its sibling', async () => {
  const rec = await nets.create({ name: 'v6only', subnet: 'fd00:20::/64' });
  assert.equal(rec.subnets.map((s) => s.family), [6]);
  assert.is(rec.subnet, 'fd00:20::/64');
  const e = await nets.connect('v6only', u1.ns, { id: 'u1', ports: ['[::]:8081:80'] });
  assert.equal(e.addresses.map((a) => a.cidr), ['fd00:20::2/64']);
  assert.is(e.mac, '02:42:fd:00:00:22', 'the words of fd00:20::2 XORed: fd00:0020 ^ 0 ^ 0 ^ 2');
  assert.equal(ipIn<any[]>(u1, ['-4', 'addr', 'show', 'eth0']).flatMap((i) => i.addr_info), []);
  assert.equal(ipJson<any[]>(['-4', 'addr', 'show', 'v6only']).flatMap((i) => i.addr_info), []);
  assert.not.ok(execFileSync(SAVE, { encoding: 'utf8' }).includes('tsnetlink:v6only'), 'no IPv4 rules for an IPv6-only network');
  if (NFT) {
    assert.equal(nftMappings().filter((m) => m.comment === 'tsnetlink:v6only/u1').map((m) => `${m.map} ${m.hostPort} ${m.to}`), ['ports6 8081 fd00:20::2'], '[::] is every IPv6 address: the IPv6 map only');
    const nat = nftTaggedRules('postrouting', 'tsnetlink:v6only');
    assert.is(nat.length, 3);
    assert.ok(nat.every((r) => !JSON.stringify(r).includes('"protocol":"ip"') && !JSON.stringify(r).includes('"ipv4"')), 'no IPv4 NAT rule for an IPv6-only network');
    assert.ok(save6().includes('-A FORWARD -o v6only -m comment --comment "tsnetlink:v6only" -j ACCEPT'));
  }
  assert.is(await reachFromUp(HOST6, 8081), 'u1');
  assert.match(await reachFromUp(HOST4, 8081, DROPPED_MS), /^unreachable/, 'an IPv6-only network publishes on IPv6 only');
  assert.match(await reach(d1, 'fd00:20::2', PORT, DROPPED_MS), /^unreachable/, 'networks stay isolated over IPv6');
});

/** Sends one UDP datagram from [::]:`sport` inside `ns` to host:port; resolves to the reply, or to a string starting with 'no reply'. */
function udpFrom(ns: NetnsHandle, host: string, port: number, sport: number): Promise<string> {
  return probeUdp(ns, host, port, 2000, sport);
}

test('a UDP flow over IPv6 seen before its port was published reaches the container once it is (its conntrack entry is flushed)', async () => {
  // The first datagram finds nothing listening on the host, and its conntrack entry (no NAT)
  // would keep the flow at the host for the next 30 s without the flush.
  assert.match(await udpFrom(up, HOST6, 5300, 40000), /^no reply/);
  const u2 = box('u2');
  boxes.push(u2);
  // A UDP server of this process, its socket made and bound inside the container's netns.
  const server = serveUdpIn(u2.ns, 5300, 'u2');
  try {
    await nets.connect('v6only', u2.ns, { id: 'u2', ports: ['5300:5300/udp'] });
    assert.is(await udpFrom(up, HOST6, 5300, 40000), 'u2', 'the same flow, now DNATed to the container');
    await nets.disconnect('v6only', 'u2');
  } finally {
    server.close();
  }
});

// ------------------------------------------------------------------ refusals change nothing

function stateFiles(root = nets.store.root): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir).sort()) {
      const p = join(dir, e);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(`${p.slice(root.length + 1)}=${e === 'lock' || e.endsWith('.lock') || e.startsWith('last') ? '' : readFileSync(p, 'utf8')}`);
    }
  };
  walk(root);
  return out;
}

function snapshot(): string {
  return JSON.stringify({
    links: ipJson<any[]>(['link', 'show']).map((l) => `${l.ifname} ${l.address}`),
    addrs: ipJson<any[]>(['addr', 'show']).map((i) => `${i.ifname}: ${i.addr_info.map((a: any) => `${a.local}/${a.prefixlen}`).join(' ')}`),
    routes6: ipJson<any[]>(['-6', 'route', 'show']).map((r) => JSON.stringify(r)),
    v4: execFileSync(SAVE, { encoding: 'utf8' }).split('\n').filter((l) => !l.startsWith('#')).map((l) => l.replace(/ \[\d+:\d+\]$/, '')),
    v6: save6(),
    nft: NFT ? normalizedNft() : '',
    state: stateFiles(),
  });
}

test('bad IPv6 input is refused with a clear message and changes nothing', async () => {
  const cases: Array<[string, () => Promise<unknown>, string, RegExp]> = [
    ['prefix /129', () => nets.create({ name: 'bad1', subnet: 'fd00:30::/129' }), 'EINVAL', /longer than 128/],
    ['overlapping IPv6 subnets', () => nets.create({ name: 'bad3', subnet: ['192.168.40.0/24', 'fd00:10::/48'] }), 'EOVERLAP', /overlaps network ds/],
    ['a second IPv6 subnet', () => nets.create({ name: 'bad4', subnet: ['fd00:31::/64', 'fd00:32::/64'] }), 'EINVAL', /at most one IPv6 subnet/],
    ['a host IPv6 address that is not local', () => nets.connect('ds', d1.ns, { id: 'x1', ports: ['[2001:db8:77::1]:8090:80'] }), 'ENOTLOCAL', /not an address of this host/],
    ['[::1]', () => nets.connect('ds', d1.ns, { id: 'x2', ports: ['[::1]:8090:80'] }), 'EINVAL', /route_localnet/],
    ['two requested IPv6 addresses', () => nets.connect('ds', d1.ns, { id: 'x4', ip: ['fd00:10::50', 'fd00:10::51'] }), 'EINVAL', /one address per family/],
    ['an IPv6 host IP on an IPv4-only network', async () => {
      await nets.create({ name: 'v4only', subnet: '192.168.50.0/24' });
      const before = snapshot();
      const e = await catchAsync(() => nets.connect('v4only', d1.ns, { id: 'x3', ports: [`[${HOST6}]:8090:80`] }));
      assert.is(snapshot(), before, 'nothing changed');
      await nets.remove('v4only');
      throw e;
    }, 'EINVAL', /has no IPv6 subnet/],
  ];
  for (const [what, fn, code, message] of cases) {
    const before = snapshot();
    const e = await catchAsync(fn);
    assert.is(e?.code, code, `${what}: ${e?.message}`);
    assert.match(e.message, message, what);
    assert.is(snapshot(), before, `${what}: nothing changed`);
  }
});

test('one requested address per family: the endpoint gets exactly both', async () => {
  const b = box('d9');
  try {
    const e = await nets.connect('ds', b.ns, { id: 'd9', ip: ['fd00:10::99', '192.168.10.99'] });
    assert.equal(e.addresses.map((a) => a.cidr), ['192.168.10.99/24', 'fd00:10::99/64']);
    const got = ipIn<any[]>(b, ['addr', 'show', 'dev', 'eth0'])[0].addr_info.filter((a: any) => a.scope === 'global').map((a: any) => `${a.local}/${a.prefixlen}`);
    assert.equal(got, ['192.168.10.99/24', 'fd00:10::99/64']);
    await nets.disconnect('ds', 'd9');
  } finally {
    b.close();
  }
});

test('repair after ip6tables -F: check names the IPv6 difference, repair restores it, traffic works again', async () => {
  execFileSync(IP6TABLES, ['-t', 'nat', '-F']);
  execFileSync(IP6TABLES, ['-F']);
  // On the native backend ip6tables holds only our FORWARD accepts: our table's IPv6 map goes too.
  if (NFT) execFileSync('nft', ['flush', 'map', 'inet', 'tsnetlink', 'ports6']);
  assert.match(await reachFromUp(HOST6, 8080, DROPPED_MS), /^unreachable/);
  assert.is(await reachFromUp(HOST4, 8080), 'd2', 'IPv4 untouched');
  const problems = await nets.check();
  if (NFT) {
    assert.ok(problems.some((p) => p.startsWith('firewall: missing ip6tables FORWARD accept ')), problems.join('\n'));
    assert.ok(problems.includes('firewall: missing map ports6 tcp 8080 -> [fd00:10::3]:80 (endpoint ds/d2)'), problems.join('\n'));
    assert.not.ok(problems.some((p) => / map ports /.test(p) || p.includes('missing iptables ')), 'nothing IPv4 reported');
  } else assert.ok(problems.some((p) => p.startsWith('firewall: missing ip6 ')), problems.join('\n'));
  await nets.repair();
  assert.equal(await nets.check(), []);
  assert.is(await reachFromUp(HOST6, 8080), 'd2');
  assert.is(await reachFromUp(HOST4, 8080), 'd2');
});

test('CLI: --subnet twice makes a dual-stack network, ls and inspect show both, --ipv6 without an IPv6 subnet is a usage error', async () => {
  const made = await cli('network', 'create', '--driver', 'bridge', '--subnet', '10.93.0.0/24', '--ipv6', '--subnet', 'fd00:93::/64', 'clids').exit;
  assert.is(made.code, 0, made.err);
  assert.is(made.out, 'clids 10.93.0.0/24 gateway 10.93.0.1, fd00:93::/64 gateway fd00:93::1\n');
  const ls = await cli('network', 'ls').exit;
  assert.match(ls.out, /^clids\s+bridge\s+10\.93\.0\.0\/24,fd00:93::\/64\s+10\.93\.0\.1,fd00:93::1\s+clids$/m);
  const inspect = JSON.parse((await cli('network', 'inspect', 'clids').exit).out);
  assert.equal(inspect.subnets.map((x: { subnet: string }) => x.subnet), ['10.93.0.0/24', 'fd00:93::/64']);
  const bad = await cli('network', 'create', '--driver', 'bridge', '--ipv6', '--subnet', '10.94.0.0/24', 'clibad').exit;
  assert.is(bad.code, 2);
  assert.match(bad.err, /--ipv6.*needs an IPv6 --subnet/);
  assert.is((await cli('network', 'rm', 'clids').exit).code, 0);
});

test('disconnect and rm: both addresses released, the IPv6 rules gone with the last network', async () => {
  await nets.disconnect('ds', 'd2');
  assert.not.ok(save6().some((l) => l.includes('fd00:10::3')), 'the IPv6 DNAT went with the endpoint');
  if (NFT) assert.equal(nftMappings().filter((m) => m.comment === 'tsnetlink:ds/d2'), [], 'both families\' elements went with the endpoint');
  const e = await nets.connect('ds', d2.ns, { id: 'd2b' });
  assert.equal(e.addresses.map((a) => a.ip), ['192.168.10.4', 'fd00:10::4'], 'round robin in both families');
  await nets.remove('ds', { force: true });
  await nets.remove('v6only', { force: true });
  assert.not.ok(save6().some((l) => l.includes('TSN-')), save6().join('\n'));
  assert.not.ok(execFileSync(SAVE, { encoding: 'utf8' }).includes('TSN-'));
  if (NFT) {
    assert.not.ok(nftHasTable(), 'table inet tsnetlink went with the last network');
    assert.not.ok(save6().some((l) => l.includes('tsnetlink')) || execFileSync(SAVE, { encoding: 'utf8' }).includes('tsnetlink'), 'no FORWARD accept of ours left');
  }
  assert.ok(save6().includes(':FORWARD DROP'), 'the IPv6 FORWARD policy stays DROP, as with Docker');
});

test.run();
