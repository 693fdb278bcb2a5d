/**
 * End-to-end: the promise twins of the family handles against the kernel, in the sandbox netns
 * scripts/test.mjs gives this file, many calls in flight at once on one handle, with the tools as
 * oracles: generic netlink family resolution (`genl ctrl`) and ethtool features (`ethtool -k`);
 * conntrack entries listed, looked up, counted and deleted (`conntrack -L`); IP sets (`ipset
 * save`); XFRM policies and larval SAs (`ip xfrm`); listening sockets (`ss`). WireGuard is absent
 * from this kernel: its test is reported not applicable by name and runs on built fixtures.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import { Conntrack, Ethtool, Genl, Ipset, NetlinkError, SockDiag, WireGuard, Xfrm, IpsetError } from '../../src/index.js';
import { GENL_ID_CTRL } from '../../src/netlink/genl/genl.js';
import { splitMessages } from '../../src/netlink/core/message.js';
import { NLM_F } from '../../src/netlink/core/constants.js';
import { ack, dial, dumpReply, reply } from '../../src/netlink/core/testing.js';
import { ip, leakGuard, requireSandbox, wgFixtureKeys } from '../helpers.js';
import { fixtureBytes, kernelTest, missing, reportNotApplicable } from '../kernel.js';

const FILE = 'promises-families';
requireSandbox(FILE);

/** Runs `body` where the kernel has `needs`, else reports the test not applicable by name. */
function live(name: string, needs: readonly string[], body: () => Promise<void>): void {
  test(name, async () => {
    const lacks = missing(needs);
    if (lacks.length) return reportNotApplicable(FILE, name, lacks);
    const guard = leakGuard();
    await body();
    guard.check();
  });
}

/** Whether a callback queued now runs before `p` settles: the event loop turned while the kernel worked. */
async function loopTurned<T>(p: Promise<T>): Promise<{ value: T; turned: boolean }> {
  let turned = false;
  setImmediate(() => (turned = true));
  const value = await p;
  return { value, turned };
}

live('genl: every family resolved concurrently with the list, as genl ctrl lists them; a missing one rejects alone with ENOENT', ['genl:ethtool'], async () => {
  const oracle = new Map([...execFileSync('genl', ['ctrl', 'list'], { encoding: 'utf8' }).matchAll(/^Name: (\S+)\s+ID: (0x[0-9a-f]+)/gm)].map((m) => [m[1]!, parseInt(m[2]!, 16)]));
  assert.ok(oracle.has('ethtool') && oracle.size >= 3, [...oracle.keys()].join(' '));
  const g = Genl.open();
  try {
    const names = [...oracle.keys()];
    const [listed, missingOne, ...found] = await Promise.allSettled([g.promises.familyList(), g.promises.family('no-such-family'), ...names.map((n) => g.promises.family(n))]);
    assert.equal(found.map((f) => (f.status === 'fulfilled' ? f.value.id : String(f.reason))), names.map((n) => oracle.get(n)));
    assert.equal((listed as PromiseFulfilledResult<{ name: string; id: number }[]>).value.map((f) => [f.name, f.id]).sort(), [...oracle].sort());
    assert.is(((missingOne as PromiseRejectedResult).reason as NetlinkError).code, 'ENOENT');
  } finally {
    g.close();
  }
});

live('ethtool: features read and set through the promise form agree with ethtool -k and with the sync form', ['genl:ethtool'], async () => {
  ip(['link', 'add', 'pf0', 'type', 'veth', 'peer', 'name', 'pf1']);
  const e = Ethtool.open();
  try {
    const [a, b] = await Promise.all([e.promises.getFeatures('pf0'), e.promises.getFeatures('pf1'), e.promises.setFeatures('pf1', { 'tx-tcp-segmentation': false })]);
    assert.equal(a, e.getFeatures('pf0'));
    assert.ok(Object.keys(b!).length >= 40);
    assert.match(execFileSync('ethtool', ['-k', 'pf1'], { encoding: 'utf8' }), /^\s*tx-tcp-segmentation: off/m);
    assert.is((await e.promises.getFeatures('pf1'))['tx-tcp-segmentation']?.active, false);
  } finally {
    e.close();
    ip(['link', 'del', 'pf0']);
  }
});

/** `conntrack -L` as "proto sport dport" per entry, sorted. */
function conntrackL(): string[] {
  const out = execFileSync('conntrack', ['-L'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return out.split('\n').filter(Boolean).map((l) => `${l.split(/\s+/)[0]} ${/sport=(\d+)/.exec(l)?.[1]} ${/dport=(\d+)/.exec(l)?.[1]}`).sort();
}

live('conntrack: entries listed, looked up, counted and deleted with many calls in flight, as conntrack -L sees them', [], async () => {
  const N = 40;
  for (let i = 0; i < N; i++) {
    const proto = i % 2 ? 'udp' : 'tcp';
    const extra = proto === 'tcp' ? ['--state', 'ESTABLISHED'] : [];
    execFileSync('conntrack', ['-I', '-p', proto, '-s', '10.9.0.1', '-d', '10.9.0.2', '--sport', String(10000 + i), '--dport', '80', '--timeout', '300', '-m', String(i % 4), ...extra], { stdio: 'ignore' });
  }
  const ct = Conntrack.open();
  try {
    assert.is(conntrackL().length, N);
    const p = ct.promises;
    const [all, tcp, marked, count, ...got] = await Promise.all([
      p.list(),
      p.list({ protocol: 'tcp' }),
      p.list({ mark: 3 }),
      p.count(),
      ...Array.from({ length: N }, (_, i) => p.get({ protocol: i % 2 ? 'udp' : 'tcp', src: '10.9.0.1', dst: '10.9.0.2', srcPort: 10000 + i, dstPort: 80 })),
      p.get({ protocol: 'udp', src: '10.9.0.1', dst: '10.9.0.2', srcPort: 9, dstPort: 9 }),
    ]);
    const key = (e: { protocolName: string; orig: { srcPort?: number; dstPort?: number } }): string => `${e.protocolName} ${e.orig.srcPort} ${e.orig.dstPort}`;
    assert.equal(all.map(key).sort(), conntrackL());
    assert.is(tcp.length, N / 2);
    assert.equal(marked.map((e) => e.mark), Array(N / 4).fill(3));
    assert.is(count, N);
    got.slice(0, N).forEach((e, i) => assert.is(e?.orig.srcPort, 10000 + i, `get ${i}`));
    assert.is(got[N], undefined, 'a missing entry is undefined');
    // Deletes by filter in flight together with a list: each sees its own answer.
    const [udpGone, markGone] = await Promise.all([p.delete({ protocol: 'udp' }), p.delete({ protocol: 'tcp', mark: 0 })]);
    assert.is(udpGone, N / 2);
    assert.is(markGone, N / 4);
    assert.equal(conntrackL(), (await p.list()).map(key).sort());
    assert.is(conntrackL().length, N / 4);
    const { turned } = await loopTurned(p.delete());
    assert.ok(turned, 'the event loop turned while the kernel deleted');
    assert.equal(conntrackL(), []);
  } finally {
    ct.close();
    execFileSync('conntrack', ['-F'], { stdio: 'ignore' });
  }
});

/** `ipset save` as "set member" lines and "create set type" lines, sorted. */
function ipsetSave(): string[] {
  return execFileSync('ipset', ['save'], { encoding: 'utf8' }).split('\n').filter(Boolean).map((l) => l.split(' ').slice(0, 3).join(' ')).sort();
}

live('ipset: sets made and filled with a hundred adds in flight, tested and listed concurrently, as ipset save sees them', ['ipset', 'ipset:hash:ip', 'ipset:hash:ip,port'], async () => {
  const s = Ipset.open();
  try {
    const p = s.promises;
    await Promise.all([p.create({ name: 'pa', type: 'hash:ip' }), p.create({ name: 'pb', type: 'hash:ip,port' }), p.create({ name: 'pc', type: 'hash:ip' })]);
    const adds = [
      ...Array.from({ length: 60 }, (_, i) => p.add('pa', `10.8.0.${i + 1}`)),
      ...Array.from({ length: 40 }, (_, i) => p.add('pb', `10.8.1.1,tcp:${1000 + i}`)),
      p.add('pa', '10.8.0.1'),
    ];
    const settled = await Promise.allSettled(adds);
    const refused = settled.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    assert.is(refused.length, 1, 'only the duplicate is refused');
    assert.instance(refused[0]!.reason, IpsetError);
    assert.is((refused[0]!.reason as IpsetError).code, 'IPSET_ERR_EXIST');
    const want = ['create pa hash:ip', 'create pb hash:ip,port', 'create pc hash:ip', ...Array.from({ length: 60 }, (_, i) => `add pa 10.8.0.${i + 1}`), ...Array.from({ length: 40 }, (_, i) => `add pb 10.8.1.1,tcp:${1000 + i}`)].sort();
    assert.equal(ipsetSave(), want);
    const [sets, names, yes, no, , ] = await Promise.all([p.list(), p.names(), p.test('pa', '10.8.0.7'), p.test('pa', '10.8.9.9'), p.swap('pa', 'pc'), p.flush('pb')]);
    assert.equal(sets.map((x) => [x.name, x.members.length]), [['pa', 60], ['pb', 40], ['pc', 0]]);
    assert.equal([...names].sort(), ['pa', 'pb', 'pc']);
    assert.equal([yes, no], [true, false]);
    assert.equal(ipsetSave().filter((l) => l.startsWith('add')).map((l) => l.split(' ')[1]), Array(60).fill('pc'));
    await Promise.all(['pa', 'pb', 'pc'].map((n) => p.destroy(n)));
    assert.equal(ipsetSave(), []);
  } finally {
    s.close();
    execFileSync('ipset', ['destroy'], { stdio: 'ignore' });
  }
});

/** The number of entries `ip xfrm KIND list` prints (an entry starts on an unindented line). */
const xfrmCount = (kind: 'state' | 'policy'): number => execFileSync('ip', ['xfrm', kind, 'list'], { encoding: 'utf8' }).split('\n').filter((l) => /^\S/.test(l)).length;

live('xfrm: policies and larval SAs made concurrently, got and listed, as ip xfrm sees them', ['xfrm'], async () => {
  const x = Xfrm.open();
  try {
    const p = x.promises;
    const N = 20;
    const sel = (i: number) => ({ src: `10.1.${i}.0/24`, dst: `10.2.${i}.0/24` });
    const made = await Promise.all([
      ...Array.from({ length: N }, (_, i) => p.policyAdd({ sel: sel(i), dir: 'out', templates: [{ src: '10.0.0.1', dst: '10.0.0.2', proto: 'esp', reqid: i + 1, mode: 'tunnel' }] })),
      ...Array.from({ length: N }, (_, i) => p.stateAllocSpi({ src: '10.0.0.1', dst: `10.0.1.${i + 1}`, proto: 'esp', min: 0x1000 + i, max: 0x1000 + i })),
    ]);
    assert.equal(made.slice(N).map((s) => (s as { spi: number }).spi), Array.from({ length: N }, (_, i) => 0x1000 + i));
    assert.equal([xfrmCount('policy'), xfrmCount('state')], [N, N]);
    const [policies, states, one, dup] = await Promise.allSettled([p.policyList(), p.stateList(), p.policyGet({ sel: sel(7), dir: 'out' }), p.policyAdd({ sel: sel(3), dir: 'out' })]);
    assert.is((policies as PromiseFulfilledResult<unknown[]>).value.length, N);
    assert.is((states as PromiseFulfilledResult<unknown[]>).value.length, N);
    assert.is((one as PromiseFulfilledResult<{ templates: { reqid: number }[] }>).value.templates[0]?.reqid, 8);
    assert.is(((dup as PromiseRejectedResult).reason as NetlinkError).code, 'EEXIST');
    await Promise.all([...Array.from({ length: N / 2 }, (_, i) => p.policyDelete({ sel: sel(i), dir: 'out' })), p.stateFlush()]);
    assert.equal([xfrmCount('policy'), xfrmCount('state')], [N / 2, 0]);
    await p.policyFlush();
    assert.is(xfrmCount('policy'), 0);
  } finally {
    x.close();
    execFileSync('ip', ['xfrm', 'policy', 'flush']);
    execFileSync('ip', ['xfrm', 'state', 'flush']);
  }
});

live('sock_diag: listeners listed concurrently, each query with its own sockets, as ss shows them', [], async () => {
  const ports = [7101, 7102, 7103, 7104];
  const servers = await Promise.all(ports.map((port) => new Promise<net.Server>((resolve) => {
    const s = net.createServer().listen(port, '127.0.0.1', () => resolve(s));
  })));
  const d = SockDiag.open();
  try {
    const [all, ...each] = await Promise.all([d.promises.socketList({ family: 4, protocol: 'tcp', states: ['listen'] }), ...ports.map((sport) => d.promises.socketList({ family: 4, protocol: 'tcp', states: ['listen'], sport }))]);
    const ss = execFileSync('ss', ['-ltn4H'], { encoding: 'utf8' }).split('\n').filter(Boolean).map((l) => l.split(/\s+/)[3]).sort();
    assert.equal(all.map((s) => `${s.local.address}:${s.local.port}`).sort(), ss);
    assert.equal(each.map((l) => l.map((s) => s.local.port)), ports.map((p) => [p]));
  } finally {
    d.close();
    for (const s of servers) s.close();
  }
});

live('sock_diag: UNIX sockets (a path, an abstract name, a connection) and a TCP connection filtered by remote port and address, as ss -xa and ss -tn show them', [], async () => {
  const path = '/run/tsn-e2e.sock';
  const abstract = '\0tsn-e2e-abstract';
  const accepted: net.Socket[] = [];
  const listen = (...args: [string] | [number, string]) => new Promise<net.Server>((resolve) => {
    const s = net.createServer((c) => accepted.push(c));
    s.listen(...(args as [number, string]), () => resolve(s));
  });
  const dial = (...args: [string] | [number, string]) => new Promise<net.Socket>((resolve) => {
    const c = net.connect(...(args as [number, string]), () => resolve(c));
  });
  const servers = await Promise.all([listen(path), listen(abstract), listen(7201, '127.0.0.1')]);
  const clients = await Promise.all([dial(path), dial(7201, '127.0.0.1')]);
  const d = SockDiag.open();
  try {
    const [unix, listeners, tcp] = await Promise.all([
      d.promises.unixList(),
      d.promises.unixList({ states: ['listen'], types: ['stream'] }),
      d.promises.socketList({ family: 4, protocol: 'tcp', states: ['established'], dport: 7201, dst: '127.0.0.1' }),
    ]);
    // ss -xaH: netid, state, recv-q, send-q, local name (or *), inode, peer name (or *), peer inode.
    const ss = new Map(execFileSync('ss', ['-xaH'], { encoding: 'utf8' }).split('\n').filter(Boolean).map((l) => l.trim().split(/\s+/)).map((f) => [Number(f[5]), f]));
    const ssState = (inode: number) => ss.get(inode)?.[1];
    // Node binds an abstract name with the whole sun_path (NUL-padded), which ss shows as "@" each.
    for (const name of [path, '@tsn-e2e-abstract']) {
      const l = unix.find((s) => s.name?.startsWith(name) && s.state === 'listen');
      assert.ok(l, `${name} listed`);
      assert.equal([ssState(l.inode), ss.get(l.inode)?.[4], l.type], ['LISTEN', l.name, 'stream'], `${name} as ss shows it`);
    }
    assert.equal(listeners.filter((s) => s.name?.includes('tsn-e2e')).length, 2, 'listeners only, when asked');
    assert.ok(listeners.every((s) => s.state === 'listen' && s.type === 'stream'));
    // The connection: the client's end (unnamed) and the accepted end (the listener's name) name each other.
    const client = unix.find((s) => s.state === 'established' && s.name === undefined && unix.find((t) => t.inode === s.peer)?.name === path);
    assert.ok(client, 'the client end of the connection to the path');
    assert.is(unix.find((t) => t.inode === client.peer)?.peer, client.inode);
    assert.equal([ssState(client.inode), Number(ss.get(client.inode)?.[7])], ['ESTAB', client.peer], 'ss names the same peer');
    // TCP: only the client's end has remote port 7201.
    assert.equal(tcp.map((s) => [s.remote.address, s.remote.port, s.local.address]), [['127.0.0.1', 7201, '127.0.0.1']]);
    const sst = execFileSync('ss', ['-tnH', 'state', 'established', 'dport', '= :7201'], { encoding: 'utf8' }).split('\n').filter(Boolean).map((l) => l.trim().split(/\s+/));
    // With a state filter ss leaves the state column out: recv-q, send-q, local, peer.
    assert.equal(tcp.map((s) => [`${s.local.address}:${s.local.port}`, `${s.remote.address}:${s.remote.port}`]), sst.map((f) => [f[2], f[3]]));
  } finally {
    d.close();
    for (const c of [...clients, ...accepted]) c.destroy();
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
});

const keys = wgFixtureKeys();
kernelTest(test, FILE, 'wireguard: a device set and read back through the promise form, concurrently with other calls', ['genl:wireguard', 'link:wireguard'], async () => {
  ip(['link', 'add', 'pwg0', 'type', 'wireguard']);
  const wg = WireGuard.open();
  try {
    const peers = [{ publicKey: keys.peer1, endpoint: '192.0.2.1:51820', allowedIps: ['10.0.0.0/24'] }];
    const [, , fam] = await Promise.all([wg.promises.set('pwg0', { privateKey: keys.priv, listenPort: 51820, peers }), wg.promises.set('pwg0', { fwmark: 0x42 }), wg.genl.promises.family('wireguard')]);
    const d = await wg.promises.get('pwg0');
    assert.equal([d.publicKey, d.listenPort, d.fwmark, d.peers.map((p) => p.allowedIps)], [keys.pub, 51820, 0x42, [['10.0.0.0/24']]]);
    assert.is(fam.name, 'wireguard');
  } finally {
    wg.close();
    ip(['link', 'del', 'pwg0']);
  }
}, async () => {
  // On the built fixtures: the family resolved once for two calls in flight, the dump assembled.
  const ctrl = splitMessages(fixtureBytes('wg-ctrl-getfamily.built.reply.txt'))[0]!;
  const bodies = splitMessages(fixtureBytes('wg-get.built.reply.txt')).filter((m) => m.type === 0x20).map((m) => m.payload);
  const sock = dial((req) => (req.type === GENL_ID_CTRL ? [reply(req, GENL_ID_CTRL, ctrl.payload), ack(req)] : (req.flags & NLM_F.DUMP) !== 0 ? dumpReply(req, 0x20, bodies) : [ack(req)]));
  const wg = new WireGuard(new Genl(sock));
  const [a, b] = await Promise.all([wg.promises.get('wg0'), wg.promises.get('wg0'), wg.promises.set('wg0', { listenPort: 51821 })]);
  assert.equal([a.publicKey, a.peers.length], [keys.pub, 2]);
  assert.equal(a, b);
  // Once resolved, the family is not asked for again, by either form.
  const lookups = sock.transport.sent.filter((m) => m.type === GENL_ID_CTRL).length;
  await wg.promises.get('wg0');
  wg.get('wg0');
  assert.is(sock.transport.sent.filter((m) => m.type === GENL_ID_CTRL).length, lookups);
});

test.run();
