/**
 * End-to-end: what a container network must never let through, checked with real traffic.
 * Networks are isolated from each other; hosts on the uplink that route a container subnet via
 * this host reach only published ports (unless the network opts out); icc=false and internal
 * networks hold; a container's router advertisement changes nothing; a container on two
 * networks gets one default route. Each case runs with FORWARD policy ACCEPT and DROP.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import { Networks, withNetns } from '../../src/index.js';
import { makeUpstream, type Upstream } from '../../demo/scenario.js';
import { ipJson, requireSandbox } from '../helpers.js';
import * as libc from '../../src/sys/libc.js';
import { box, serveIn, reach, DROPPED_MS, ipIn, runIn, until, IPTABLES, type Box } from './lib.js';
import { NFT, nftChainRules, rulesHeldBy } from './fw-oracle.js';

requireSandbox('isolation');

const nets = new Networks();
let up: Upstream;
const boxes: Box[] = [];
const PORT = 80;

function container(name: string): Box {
  const b = box(name);
  serveIn(b, PORT);
  boxes.push(b);
  return b;
}

const eps = new Map<string, { ip: string }>();
async function attach(network: string, b: Box, ports: string[] = []): Promise<string> {
  const ep = await nets.connect(network, b.ns, { id: b.name, ports });
  eps.set(b.name, ep);
  return ep.ip;
}
const ipOf = (b: Box): string => eps.get(b.name)!.ip;

function forwardPolicy(policy: 'ACCEPT' | 'DROP'): void {
  execFileSync(IPTABLES, ['-P', 'FORWARD', policy]);
}

let a1: Box, a2: Box, b1: Box, c1: Box, c2: Box, i1: Box, u1: Box, r1: Box;

/** Sources the upstream server saw, in order. */
const seen: string[] = [];
let upServer: net.Server | undefined;

test.before(async () => {
  up = makeUpstream(nets.host);
  upServer = withNetns(up.ns, () =>
    net
      .createServer((c) => {
        seen.push(c.remoteAddress!.replace('::ffff:', ''));
        c.end('up');
      })
      .listen(9999),
  );
  // The upstream host routes every container subnet through this host, as a LAN neighbour could.
  execFileSync('ip', ['-n', up.name, 'route', 'add', '10.10.0.0/16', 'via', up.hostIp]);
  await nets.create({ name: 'neta', subnet: '10.10.1.0/24' });
  await nets.create({ name: 'netb', subnet: '10.10.2.0/24' });
  await nets.create({ name: 'netc', subnet: '10.10.3.0/24', icc: false });
  await nets.create({ name: 'neti', subnet: '10.10.4.0/24', internal: true });
  await nets.create({ name: 'netu', subnet: '10.10.5.0/24', gatewayMode: 'nat-unprotected' });
  await nets.create({ name: 'netr', subnet: '10.10.6.0/24', gatewayMode: 'routed' });
  [a1, a2, b1, c1, c2, i1, u1, r1] = ['a1', 'a2', 'b1', 'c1', 'c2', 'i1', 'u1', 'r1'].map(container) as Box[] as [Box, Box, Box, Box, Box, Box, Box, Box];
  await attach('neta', a1, ['8080:80']);
  await attach('neta', a2);
  await attach('netb', b1, ['8081:80']);
  await attach('netc', c1);
  await attach('netc', c2);
  await attach('neti', i1);
  await attach('netu', u1);
  await attach('netr', r1);
});

test.after(async () => {
  upServer?.close();
  forwardPolicy('ACCEPT');
  for (const n of ['neta', 'netb', 'netc', 'neti', 'netu', 'netr']) await nets.remove(n, { force: true }).catch(() => undefined);
  for (const b of boxes) b.close();
  up.close();
  nets.close();
});

/** Runs probes in parallel: [what, from, host, port, expected reply or null for unreachable]. */
async function expectReach(cases: readonly [string, Box | undefined, string, number, string | null][]): Promise<void> {
  const got = await Promise.all(cases.map(([, from, host, port, want]) => reach(from, host, port, want === null ? DROPPED_MS : 3000)));
  const wrong = cases.map((c, i) => [c, got[i]!] as const).filter(([c, g]) => (c[4] === null ? !g.startsWith('unreachable') : g !== c[4]));
  assert.equal(wrong.map(([c, g]) => `${c[0]}: got ${JSON.stringify(g)}`), []);
}

for (const policy of ['ACCEPT', 'DROP'] as const) {
  test(`FORWARD ${policy}: isolation between networks, direct access from the uplink, icc=false, internal`, async () => {
    forwardPolicy(policy);
    const upBox = { name: 'upstream', ns: up.ns } as Box;
    await expectReach([
      ['same network', a1, ipOf(a2), PORT, 'a2'],
      ['neta -> netb', a1, ipOf(b1), PORT, null],
      ['netb -> neta', b1, ipOf(a1), PORT, null],
      ['neta -> an unprotected network: still isolated', a1, ipOf(u1), PORT, null],
      ['unprotected network -> neta', u1, ipOf(a1), PORT, null],
      ['routed network -> netb', r1, ipOf(b1), PORT, null],
      // A published port is public: from another network too, through the host's address.
      ['neta -> published port of b1', a1, up.hostIp, 8081, 'b1'],
      ['uplink -> unpublished port of a1, routed via the host', upBox, ipOf(a1), PORT, null],
      ['uplink -> port 80 of b1 (published only as 8081)', upBox, ipOf(b1), PORT, null],
      ['uplink -> published 8080 of a1', upBox, up.hostIp, 8080, 'a1'],
      ['uplink -> gateway mode nat-unprotected: direct access allowed', upBox, ipOf(u1), PORT, 'u1'],
      ['uplink -> gateway mode routed: direct access allowed', upBox, ipOf(r1), PORT, 'r1'],
      ['icc=false', c1, ipOf(c2), PORT, null],
      ['neta -> upstream (control)', a1, up.ip, 9999, 'up'],
      ['internal -> upstream', i1, up.ip, 9999, null],
      ['upstream -> internal', upBox, ipOf(i1), PORT, null],
      ['neta -> internal', a1, ipOf(i1), PORT, null],
    ]);
  });
}

test('the rules are in the backend this run uses; on nf_tables, masquerade exactly for the nat networks', () => {
  assert.is(rulesHeldBy(), NFT ? 'nftables' : 'iptables');
  if (!NFT) return;
  // The outbound masquerade leaves through another interface (oifname !=); hairpin ones are for all.
  const masq = nftChainRules('postrouting').map((r) => JSON.stringify(r)).filter((r) => r.includes('"masquerade"') && r.includes('"op":"!="'));
  const subnets = ['neta', 'netb', 'netc', 'netu', 'netr', 'neti'].filter((_, i) => masq.some((r) => r.includes(`"10.10.${[1, 2, 3, 5, 6, 4][i]}.0"`)));
  assert.equal(subnets, ['neta', 'netb', 'netc', 'netu'], 'not the routed one, not the internal one');
});

test('outbound: nat networks are masqueraded, a routed one keeps its address', async () => {
  forwardPolicy('DROP');
  seen.length = 0;
  assert.is(await reach(a1, up.ip, 9999), 'up');
  assert.is(await reach(r1, up.ip, 9999), 'up');
  assert.equal(seen, [up.hostIp, ipOf(r1)]);
});

test('internal networks: no default route in the container, the gateway is still on-link', () => {
  const routes = ipIn<any[]>(i1, ['route', 'show']);
  assert.not.ok(routes.some((r) => r.dst === 'default'), JSON.stringify(routes));
  assert.ok(routes.some((r) => r.dst === '10.10.4.0/24'));
});

test('the bridge keeps its MAC when the container that lent it its address leaves', async () => {
  const mac = (): string => ipJson<any[]>(['link', 'show', 'neta'])[0].address;
  const before = mac();
  assert.is(before, '02:42:0a:0a:01:01', 'fixed MAC derived from the gateway');
  const extra = container('a0');
  await attach('neta', extra);
  assert.is(mac(), before);
  await nets.disconnect('neta', 'a0');
  assert.is(mac(), before, 'unchanged when a port leaves');
  // The remaining containers' neighbour entry for the gateway stays right: the host answers at once.
  const gw = '10.10.1.1';
  const host = net.createServer((c) => c.end('gateway')).listen(7070, gw);
  try {
    await new Promise((r) => host.once('listening', r));
    assert.is(await reach(a2, gw, 7070, 1000), 'gateway');
    const neigh = ipIn<any[]>(a2, ['neigh', 'show', gw]);
    assert.ok(neigh.every((n) => n.lladdr === before), JSON.stringify(neigh));
  } finally {
    host.close();
  }
});

test('a container on two networks: eth0 and eth1, one default route (the first network\'s)', async () => {
  const x = container('x');
  const ipA = await attach('neta', x);
  const epB = await nets.connect('netb', x.ns, { id: 'x' });
  const links = ipIn<any[]>(x, ['-4', 'addr', 'show']).filter((l) => l.ifname !== 'lo');
  assert.equal(links.map((l) => [l.ifname, l.addr_info[0].local]), [['eth0', ipA], ['eth1', epB.ip]]);
  const defaults = ipIn<any[]>(x, ['route', 'show', 'default']);
  assert.equal(defaults.map((r) => [r.gateway, r.dev]), [['10.10.1.1', 'eth0']]);
  assert.is(epB.defaultRoute, false);
  assert.is(await reach(x, ipOf(a2), PORT), 'a2', 'reaches network A');
  assert.is(await reach(x, ipOf(b1), PORT), 'b1', 'reaches network B (on-link)');
  await nets.disconnect('netb', 'x');
  await nets.disconnect('neta', 'x');
});

test('the host\'s own netns is refused as a container (it would get eth0, an address and a default route)', async () => {
  for (const ref of [{ path: '/proc/thread-self/ns/net' }, process.pid] as const) {
    const e = await nets.connect('neta', ref as never, { id: 'host' }).then(() => undefined, (x: { code?: string }) => x);
    assert.is(e?.code, 'EHOSTNETNS', String(e));
  }
  assert.equal(ipJson<any[]>(['route', 'show', 'default']), [], 'no default route was added to the host');
  assert.is(nets.inspect('neta').endpoints.some((e) => e.id === 'host'), false);
});

/**
 * A raw ICMPv6 socket inside `b`'s netns (or here) that tells whether a router advertisement
 * (type 134) has arrived since it was opened.
 */
function raListener(b: Box | undefined): { sawRa(): boolean; close(): void } {
  const open = (): number => libc.socket(10, 3 | libc.SOCK_CLOEXEC, 58);
  const fd = b ? withNetns(b.ns, open) : open();
  const buf = Buffer.alloc(2048);
  let seen = false;
  return {
    sawRa() {
      for (let n = libc.recvNonBlocking(fd, buf, 0); n >= 0 && !seen; n = libc.recvNonBlocking(fd, buf, 0)) seen = n > 0 && buf[0] === 134;
      return seen;
    },
    close: () => libc.close(fd),
  };
}

test('router advertisements from a container change nothing on the host or on siblings', async () => {
  for (const br of ['neta']) assert.is(execFileSync('cat', [`/proc/sys/net/ipv6/conf/${br}/accept_ra`], { encoding: 'utf8' }).trim(), '0');
  // The host veths keep accept_ra=1 on purpose: as bridge ports they never see RAs themselves,
  // which this test proves (the forged RA below changes nothing on the host).
  const hostVeth = nets.inspect('neta').endpoints.find((e) => e.id === 'a2')!.hostIfname;
  assert.is(execFileSync('cat', [`/proc/sys/net/ipv6/conf/${hostVeth}/accept_ra`], { encoding: 'utf8' }).trim(), '1');
  assert.is(runIn(a2, 'cat', ['/proc/sys/net/ipv6/conf/eth0/accept_ra']).trim(), '0');
  // a1 forges an RA for 2001:db8:66::/64 with itself as default router, from a link-local address it gives itself.
  runIn(a1, 'ip', ['-6', 'addr', 'add', 'fe80::bad/64', 'dev', 'eth0', 'nodad']);
  const ra = [
    'import socket, struct',
    's = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)',
    's.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)',
    's.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, socket.if_nametoindex("eth0"))',
    'pio = struct.pack("!BBBBIII16s", 3, 4, 64, 0xc0, 86400, 14400, 0, socket.inet_pton(socket.AF_INET6, "2001:db8:66::"))',
    'msg = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0) + pio',
    'for _ in range(3): s.sendto(msg, ("ff02::1", 0, 0, socket.if_nametoindex("eth0")))',
  ].join('\n');
  // The host (on the bridge) and the sibling each listen for the RA: once both have it, the kernel
  // has handled it there too (the raw copy and the neighbour-discovery handling are one receive).
  const listeners = [raListener(undefined), raListener(a2)];
  try {
    runIn(a1, 'python3', ['-c', ra]);
    for (const [i, l] of listeners.entries()) await until(`the RA to reach ${i === 0 ? 'the host' : 'a2'}`, () => l.sawRa(), 5000);
  } finally {
    for (const l of listeners) l.close();
  }
  const hostRoutes = ipJson<any[]>(['-6', 'route', 'show']);
  assert.not.ok(hostRoutes.some((r) => r.dst === 'default' || String(r.dst).startsWith('2001:db8:66')), `host routes: ${JSON.stringify(hostRoutes)}`);
  const hostAddrs = ipJson<any[]>(['-6', 'addr', 'show']).flatMap((l) => l.addr_info.map((a: any) => a.local));
  assert.not.ok(hostAddrs.some((a: string) => a.startsWith('2001:db8:66')), `host addresses: ${hostAddrs}`);
  const sib = ipIn<any[]>(a2, ['-6', 'route', 'show']);
  assert.not.ok(sib.some((r) => r.dst === 'default' || String(r.dst).startsWith('2001:db8:66')), `sibling routes: ${JSON.stringify(sib)}`);
  runIn(a1, 'ip', ['-6', 'addr', 'del', 'fe80::bad/64', 'dev', 'eth0']);
});

test('the ruleset and the records agree after all of it; the FORWARD DROP tsnetlink set when it turned forwarding on is part of it', async () => {
  forwardPolicy('ACCEPT');
  assert.ok((await nets.check()).some((p) => /FORWARD policy is ACCEPT, but tsnetlink set DROP/.test(p)));
  forwardPolicy('DROP');
  assert.equal(await nets.check(), []);
});

test.run();
