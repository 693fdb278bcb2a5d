/**
 * iptables end to end: real iptables-restore, with iptables-save as the oracle and real traffic
 * through the mappings. Runs only as root inside a throwaway network namespace; the peers
 * ("container", "lan") are further namespaces held by `unshare --net sleep`, so nothing is named
 * under /run/netns. $TSNETLINK_IPTABLES_RESTORE selects the backend (e.g. iptables-legacy-restore).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { openNetns, withNetns, type NetnsHandle } from '../../src/index.js';
import * as ipt from '../../src/firewall/iptables/index.js';
import { FALLBACK_TUNNELS, probeTcp, probeUdp, listenUdpIn } from '../helpers.js';
import { DROPPED_MS } from './lib.js';

const RESTORE = process.env['TSNETLINK_IPTABLES_RESTORE'] ?? 'iptables-restore';
const SAVE = RESTORE.replace(/-restore$/, '-save');
const BR = 'tsne2e0';
const net: ipt.NetworkRuleSpec = { name: 'e2e', bridge: BR, subnet: '192.168.77.0/24' };
const ep: ipt.EndpointRuleSpec = {
  id: 'ctr1',
  network: net,
  ip: '192.168.77.2',
  mappings: [
    { hostPort: 8080, containerPort: 80, protocol: 'tcp' },
    { hostPort: 5353, containerPort: 53, protocol: 'udp' },
    { hostIp: '127.0.0.1', hostPort: 9090, containerPort: 80, protocol: 'tcp' },
  ],
};
const DN = `TSN-DN-${createHash('sha256').update('e2e/ctr1').digest('hex').slice(0, 16)}`;

// Written out by hand, in iptables-save's words: the oracle must not come from the builder.
const EXPECTED = {
  raw: [
    '-A PREROUTING -j TSN-PREROUTING',
    '-A TSN-PREROUTING -d 127.0.0.0/8 ! -i lo -m comment --comment "tsnetlink:localnet-guard" -j DROP',
  ],
  filter: [
    '-A FORWARD -j TSN-FORWARD',
    `-A TSN-FORWARD -o ${BR} -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "tsnetlink:e2e" -j ACCEPT`,
    `-A TSN-FORWARD -o ${BR} -m conntrack --ctstate DNAT -m comment --comment "tsnetlink:e2e" -j ACCEPT`,
    `-A TSN-FORWARD -i ${BR} -m comment --comment "tsnetlink:e2e" -j ACCEPT`,
  ],
  nat: [
    '-A PREROUTING -m addrtype --dst-type LOCAL -j TSN-HOSTPORTS',
    '-A OUTPUT -m addrtype --dst-type LOCAL -j TSN-HOSTPORTS',
    '-A POSTROUTING -j TSN-POSTROUTING',
    `-A TSN-POSTROUTING -s 192.168.77.0/24 ! -o ${BR} -m comment --comment "tsnetlink:e2e" -j MASQUERADE`,
    `-A TSN-POSTROUTING -s 192.168.77.0/24 -o ${BR} -m conntrack --ctstate DNAT -m comment --comment "tsnetlink:e2e" -j MASQUERADE`,
    `-A TSN-POSTROUTING -o ${BR} -m addrtype --src-type LOCAL -m comment --comment "tsnetlink:e2e" -j MASQUERADE`,
  ],
  endpoint: [
    `:${DN} - [0:0]`,
    `-A TSN-HOSTPORTS -m comment --comment "tsnetlink:e2e/ctr1" -j ${DN}`,
    `-A ${DN} -p tcp -m tcp --dport 8080 -m comment --comment "tsnetlink:e2e/ctr1" -j DNAT --to-destination 192.168.77.2:80`,
    `-A ${DN} -p udp -m udp --dport 5353 -m comment --comment "tsnetlink:e2e/ctr1" -j DNAT --to-destination 192.168.77.2:53`,
    `-A ${DN} -d 127.0.0.1/32 -p tcp -m tcp --dport 9090 -m comment --comment "tsnetlink:e2e/ctr1" -j DNAT --to-destination 192.168.77.2:80`,
  ],
};
const GUARD = EXPECTED.raw[1] as string;

function sandboxProblem(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root';
  try {
    if (readlinkSync('/proc/self/ns/net') !== readlinkSync('/proc/1/ns/net')) return undefined;
  } catch {
    // Not allowed to look at pid 1: fall through to the interface check.
  }
  // Same netns as pid 1 (e.g. a pid namespace too): accept only a fresh one, with nothing but lo.
  const ifs = readFileSync('/proc/self/net/dev', 'utf8').split('\n').slice(2).map((l) => l.split(':')[0]?.trim()).filter((n) => n);
  return ifs.every((n) => n === 'lo' || FALLBACK_TUNNELS.has(n ?? '')) ? undefined : 'refusing to touch iptables outside a throwaway network namespace';
}

const sh = (cmd: string, input?: string): string => execFileSync('sh', ['-c', cmd], { encoding: 'utf8', input });
const inNs = (pid: number, cmd: string): string => execFileSync('nsenter', [`--net=/proc/${pid}/ns/net`, 'sh', '-c', cmd], { encoding: 'utf8' });
const rawRestore = (text: string): string => execFileSync(RESTORE, ['--noflush'], { encoding: 'utf8', input: text });

/** iptables-save without comments and counters, as lines. */
function saveLines(): string[] {
  return execFileSync(SAVE, { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => l.replace(/ \[\d+:\d+\]$/, ' [0:0]'));
}
const saveText = (): string => execFileSync(SAVE, { encoding: 'utf8' });

function tableLines(lines: string[], table: string): string[] {
  const start = lines.indexOf(`*${table}`);
  if (start < 0) return [];
  const end = lines.indexOf('COMMIT', start);
  return lines.slice(start + 1, end);
}

function assertOnce(lines: string[], table: string, expected: readonly string[]): void {
  const t = tableLines(lines, table);
  for (const e of expected) assert.is(t.filter((l) => l === e).length, 1, `${table}: exactly once: ${e}\n${t.join('\n')}`);
}

const children: ChildProcess[] = [];
let servers: Server[] = [];
let C = 0; // container netns holder pid
let L = 0; // LAN neighbour netns holder pid
const udpSeen: string[] = [];
const hostSeen: string[] = [];
let udpSockets: UdpSocket[] = [];
let baseline: string[] = [];
let networkOnly: string[] = [];

async function holder(): Promise<number> {
  const child = spawn('unshare', ['--net', 'sleep', '600'], { stdio: 'ignore' });
  children.push(child);
  const pid = child.pid as number;
  const mine = readlinkSync('/proc/self/ns/net');
  for (let i = 0; i < 100; i++) {
    try {
      if (readlinkSync(`/proc/${pid}/ns/net`) !== mine) return pid;
    } catch {
      // not started yet
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('unshare did not start');
}

/** The netns of a holder process, opened once: the servers and probes of this file run in this very process. */
const nsOf = new Map<number, NetnsHandle>();
function ns(pid: number): NetnsHandle {
  let h = nsOf.get(pid);
  if (!h) nsOf.set(pid, (h = openNetns({ pid })));
  return h;
}

/**
 * One TCP exchange from netns `pid` (or from here): the server's greeting, 'ERR CODE' when
 * refused, or 'TIMEOUT' when no connection is made within `ms` (a dropped SYN).
 */
async function tcp(pid: number | undefined, host: string, port: number, ms = 3000): Promise<string> {
  const got = await probeTcp(pid === undefined ? undefined : ns(pid), host, port, ms);
  if (got === 'unreachable: timeout') return 'TIMEOUT';
  return got.startsWith('unreachable: ') ? `ERR ${got.slice('unreachable: '.length)}` : got.trim();
}

/** One UDP datagram from the LAN neighbour, always from source port 40000 (one conntrack flow). */
async function udpFromLan(text: string): Promise<void> {
  // Nothing answers: the probe only needs the datagram sent, so its wait is short.
  await probeUdp(ns(L), '10.99.0.1', 5353, 1, 40000, text);
}

async function waitFor(pred: () => boolean, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; ) {
    if (pred()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return pred();
}

// Moves a netns's 127/8 traffic onto eth0 towards `gw`: how a neighbour or a container would aim
// packets at this host's 127.0.0.1 (its own kernel would otherwise keep them on lo).
const aimLoopbackAt = (gw: string): string =>
  `ip rule add pref 100 lookup local && ip rule del pref 0 && ip rule add pref 10 to 127.0.0.0/8 lookup 200 && ip route add default via ${gw} dev eth0 table 200 && sysctl -qw net.ipv4.conf.eth0.route_localnet=1`;

function registerTests(): void {
  test.before(async () => {
    sh('ip link set lo up; sysctl -qw net.ipv4.ip_forward=1');
    sh(`ip link add ${BR} type bridge && ip addr add 192.168.77.1/24 dev ${BR} && ip link set ${BR} up && sysctl -qw net.ipv4.conf.${BR}.route_localnet=1`);
    C = await holder();
    L = await holder();
    sh(`ip link add tsne2eh0 type veth peer name eth0 netns ${C} && ip link set tsne2eh0 master ${BR} up`);
    inNs(C, `ip link set lo up && ip addr add 192.168.77.2/24 dev eth0 && ip link set eth0 up && ip route add default via 192.168.77.1 && ${aimLoopbackAt('192.168.77.1')}`);
    sh('ip link add tsne2elan type veth peer name eth0 netns ' + L + ' && ip addr add 10.99.0.1/24 dev tsne2elan && ip link set tsne2elan up');
    inNs(L, `ip link set lo up && ip addr add 10.99.0.2/24 dev eth0 && ip link set eth0 up && ip route add default via 10.99.0.1 && ${aimLoopbackAt('10.99.0.1')}`);
    // The container's servers belong to this process; listen() and the bind below make their sockets inside its netns.
    const web = withNetns(ns(C), () => createServer((s) => s.end(`hello ${s.remoteAddress?.replace('::ffff:', '')}\n`)).listen(80));
    const dns = listenUdpIn(ns(C), 53, (m, r) => udpSeen.push(`udp ${r.address} ${m}`));
    // What reaches the host's own 10.99.0.1:5353 instead (a flow the DNAT did not take).
    const hostUdp = createSocket('udp4').on('message', (m, r) => hostSeen.push(`udp ${r.address} ${m}`));
    await new Promise<void>((r) => hostUdp.bind(5353, '10.99.0.1', r));
    udpSockets = [dns, hostUdp];
    // A service only the host itself should reach.
    const secret = createServer((s) => s.end('host-secret\n'));
    await new Promise<void>((r) => secret.listen(7000, '127.0.0.1', r));
    servers = [secret, web];
    // Other software's rules, which must keep their place and survive everything.
    rawRestore('*raw\n-A PREROUTING -i foreign0 -j ACCEPT\nCOMMIT\n*filter\n-A FORWARD -i foreign0 -j ACCEPT\nCOMMIT\n*nat\n-A POSTROUTING -s 10.200.0.0/16 -j MASQUERADE\nCOMMIT\n');
    baseline = saveLines();
  });

  test.after(() => {
    for (const s of servers) s.close();
    for (const u of udpSockets) u.close();
    for (const h of nsOf.values()) h.close();
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  });

  test('network: chains, guard and jumps, each exactly once, jumps after the foreign rules', async () => {
    await ipt.restore(ipt.applyNetworksText([net], await ipt.save()));
    const lines = saveLines();
    assertOnce(lines, 'raw', EXPECTED.raw);
    assertOnce(lines, 'filter', EXPECTED.filter);
    assertOnce(lines, 'nat', EXPECTED.nat);
    const fwd = tableLines(lines, 'filter').filter((l) => l.startsWith('-A FORWARD '));
    assert.equal(fwd, ['-A FORWARD -i foreign0 -j ACCEPT', '-A FORWARD -j TSN-FORWARD'], 'appended, not prepended');
    networkOnly = lines;
  });

  test('udp: a flow seen before its mapping needs the conntrack flush', async () => {
    await udpFromLan('before');
    assert.ok(sh('conntrack -L -p udp --orig-port-dst 5353 2>/dev/null').includes('dport=5353'), 'flow tracked');
    await ipt.restore(ipt.endpointAddText(ep));
    await udpFromLan('stale');
    // The stale datagram's arrival at the host is the event to wait for; the container must not have had it.
    assert.ok(await waitFor(() => hostSeen.includes('udp 10.99.0.2 stale'), 2000), `the stale flow reached the host: ${hostSeen.join(',')}`);
    assert.equal(udpSeen, [], 'old conntrack entry bypasses the new DNAT');
    assert.is(await ipt.conntrackFlushUdp(5353), true);
    await udpFromLan('fresh');
    assert.ok(await waitFor(() => udpSeen.some((l) => l === 'udp 10.99.0.2 fresh'), 2000), udpSeen.join(','));
  });

  test('endpoint: DNAT chain and jump exactly once', () => {
    const lines = saveLines();
    assertOnce(lines, 'nat', [...EXPECTED.nat, ...EXPECTED.endpoint]);
  });

  test('traffic: localhost and LAN reach the mappings, the guard stops 127/8 from outside', async () => {
    assert.is(await tcp(undefined, '127.0.0.1', 9090), 'hello 192.168.77.1', 'localhost mapping, MASQUERADEd to the bridge IP');
    assert.is(await tcp(undefined, '127.0.0.1', 8080), 'hello 192.168.77.1');
    assert.is(await tcp(L, '10.99.0.1', 8080), 'hello 10.99.0.2', 'LAN mapping keeps the client address');
    assert.is(await tcp(L, '127.0.0.1', 9090, DROPPED_MS), 'TIMEOUT', 'a neighbour must not reach a 127.0.0.1-only mapping');
    assert.is(await tcp(C, '127.0.0.1', 7000, DROPPED_MS), 'TIMEOUT', 'a container must not reach the host loopback');
    assert.is(await tcp(undefined, '127.0.0.1', 7000), 'host-secret');
    // Control: without the guard both attacks succeed, so the two TIMEOUTs above are its doing.
    rawRestore(`*raw\n${GUARD.replace('-A ', '-D ')}\nCOMMIT\n`);
    try {
      assert.is(await tcp(L, '127.0.0.1', 9090), 'hello 10.99.0.2');
      assert.is(await tcp(C, '127.0.0.1', 7000), 'host-secret');
    } finally {
      rawRestore(`*raw\n${GUARD}\nCOMMIT\n`);
    }
  });

  test('re-applying network, endpoint and a full rebuild duplicates nothing', async () => {
    const before = saveLines();
    await ipt.restore(ipt.applyNetworksText([net], await ipt.save()));
    await ipt.restore(ipt.endpointUpdateText(ep));
    assert.equal(saveLines(), before);
    await ipt.restore(ipt.fullRebuildText([net], [ep], await ipt.save()));
    assert.equal(saveLines(), before);
  });

  test('full rebuild deletes a stale chain and a duplicated jump', async () => {
    const before = saveLines();
    const stale: ipt.EndpointRuleSpec = { id: 'gone', network: net, ip: '192.168.77.9', mappings: [{ hostPort: 7777, containerPort: 1, protocol: 'tcp' }] };
    await ipt.restore(ipt.endpointAddText(stale));
    rawRestore('*filter\n-A FORWARD -j TSN-FORWARD\nCOMMIT\n');
    assert.is.not(saveLines().length, before.length);
    await ipt.restore(ipt.fullRebuildText([net], [ep], await ipt.save()));
    assert.equal(saveLines(), before);
  });

  test('endpoint remove restores the network-only state; a second remove aborts and changes nothing', async () => {
    await ipt.restore(ipt.endpointRemoveText(ep));
    assert.equal(saveLines(), networkOnly);
    assert.is(await tcp(undefined, '127.0.0.1', 8080), 'ERR ECONNREFUSED');
    const e = (await ipt.restore(ipt.endpointRemoveText(ep)).then(
      () => undefined,
      (err: unknown) => err,
    )) as ipt.IptablesError;
    assert.instance(e, ipt.IptablesError);
    assert.is(e.line, 3, e.message);
    assert.equal(saveLines(), networkOnly);
  });

  test('remove all: iptables-save equals the baseline', async () => {
    await ipt.restore(ipt.endpointAddText(ep));
    await ipt.restore(ipt.removeAllText(await ipt.save()));
    assert.equal(saveLines(), baseline);
    assert.is(ipt.removeAllText(saveText()), '');
  });
}

const problem = sandboxProblem();
if (problem === undefined) registerTests();
else console.log(`iptables e2e skipped: ${problem}`);
test.run();
