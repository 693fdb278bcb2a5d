/**
 * End-to-end: the Conntrack handle against the kernel, with `conntrack` (conntrack-tools) as the
 * oracle. This sandbox netns routes between two netns (c1: 10.1.0.2/fd00:1::2, c2: 10.2.0.2/
 * fd00:2::2) and tracks what it forwards (an nft rule with `ct state`; zone 3 for UDP port 5300,
 * mark 0x10 for TCP port 8081); the flows are this process's own sockets opened inside c1 and c2.
 */
import * as assert from 'uvu/assert';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { Conntrack, Rtnl, createNamedNetns, deleteNamedNetns, openConntrackIn, withNetns, type ConntrackEntry, type ConntrackEvent, type ConntrackMonitor, type NetnsHandle } from '../../src/index.js';
import { forgetConnections } from '../../src/firewall/conntrack.js';
import { kernelSuite } from '../kernel.js';
import { connectFrom, leakGuard, probeUdp, requireSandbox, serveUdpIn } from '../helpers.js';
import { until } from './lib.js';

requireSandbox('conntrack');
const FILE = 'conntrack';
const test = kernelSuite(FILE, ['nftables']);

let c1: NetnsHandle;
let c2: NetnsHandle;
let ct: Conntrack;
const closers: (() => void)[] = [];
const open: net.Socket[] = [];
let guard: ReturnType<typeof leakGuard>;

const A = { 4: { c1: '10.1.0.2', c2: '10.2.0.2' }, 6: { c1: 'fd00:1::2', c2: 'fd00:2::2' } } as const;

test.before(() => {
  c1 = createNamedNetns('c1');
  c2 = createNamedNetns('c2');
  const rt = Rtnl.open();
  try {
    for (const [n, ns] of [[1, c1], [2, c2]] as const) {
      const host = rt.linkAddVeth(`h${n}`, { name: 'eth0', netnsFd: ns.fd }, { up: true });
      rt.addrAdd(host.index, `10.${n}.0.1/24`);
      rt.addrAdd(host.index, `fd00:${n}::1/64`, { nodad: true });
      for (const cmd of [
        'link set lo up', 'link set eth0 up', `addr add 10.${n}.0.2/24 dev eth0`, `-6 addr add fd00:${n}::2/64 dev eth0 nodad`,
        `route add default via 10.${n}.0.1`, `-6 route add default via fd00:${n}::1`,
      ]) execFileSync('ip', ['-n', `c${n}`, ...cmd.split(' ')]);
    }
  } finally {
    rt.close();
  }
  writeFileSync('/proc/sys/net/ipv4/ip_forward', '1');
  writeFileSync('/proc/sys/net/ipv6/conf/all/forwarding', '1');
  writeFileSync('/proc/sys/net/netfilter/nf_conntrack_acct', '1');
  execFileSync('nft', ['-f', '-'], {
    input: `table inet t {
      chain f { type filter hook forward priority 0; ct state new counter; tcp dport 8081 ct mark set 0x10; }
      chain pre { type filter hook prerouting priority -300; udp dport 5300 ct zone set 3; udp sport 5300 ct zone set 3; }
    }`,
  });
  // Servers in c2: UDP echo on 5353 and a silent UDP port 5300 (both families), TCP on 8080 and 8081.
  for (const port of [5353, 5300]) {
    const s = serveUdpIn(c2, port, port === 5353 ? 'pong' : '');
    closers.push(() => s.close());
  }
  for (const port of [8080, 8081]) {
    // No host: one given would be looked up first, and the socket made after the switch back.
    const srv = withNetns(c2, () => net.createServer((s) => open.push(s)).listen(port));
    closers.push(() => srv.close());
  }
});

test.after(() => {
  for (const s of open) s.destroy();
  for (const c of closers) c();
  c1.close();
  c2.close();
  deleteNamedNetns('c1');
  deleteNamedNetns('c2');
});

test.before.each(() => {
  guard = leakGuard();
  ct = Conntrack.open();
  ct.flush();
});
const leaks: string[] = [];
test.after.each(async (ctx) => {
  ct.close();
  // A test's TCP connections end with it; their descriptors close on the next turn of the loop.
  for (const s of open.splice(0)) s.destroy();
  await new Promise((r) => setImmediate(r));
  try {
    guard.check();
  } catch (e) {
    leaks.push(`${(ctx as { __test__?: string }).__test__}: ${(e as Error).message}`);
  }
});

/** A UDP exchange from c1 with a fixed source port (to 5300 it stays unanswered). */
async function udp(family: 4 | 6, sport: number, port = 5353): Promise<void> {
  await probeUdp(c1, A[family].c2, port, port === 5353 ? 2000 : 100, sport);
}

/** A TCP connection from c1, held open until the file ends. */
async function tcp(family: 4 | 6, port = 8080): Promise<net.Socket> {
  let s: net.Socket;
  for (let attempt = 1; ; attempt++) {
    s = connectFrom(c1, A[family].c2, port);
    const err = await new Promise<Error | undefined>((resolve) => s.once('connect', () => resolve(undefined)).once('error', resolve));
    if (!err) break;
    // The host resolves c2's IPv6 address by neighbour discovery; on a loaded machine the first
    // SYN can find it unresolved and come back unreachable. Anything else, or a third time, fails.
    if ((err as NodeJS.ErrnoException).code !== 'EHOSTUNREACH' || attempt === 3) throw err;
    await new Promise((r) => setTimeout(r, 500));
  }
  open.push(s);
  // The server's side of the handshake and the first ACK are tracked by the time it reads.
  await new Promise((r) => setTimeout(r, 50));
  return s;
}

interface ToolEntry {
  family: 4 | 6;
  protocol: number;
  state?: string;
  timeout: number;
  orig: Record<string, string>;
  reply: Record<string, string>;
  flags: string[];
  mark: number;
  zone?: number;
  use: number;
  id: number;
}

/** `conntrack -L -o extended,id ARGS`, parsed: the second src= starts the reply direction. */
function toolList(args: string[] = [], netns?: string): ToolEntry[] {
  const cmd = [...(netns ? ['ip', 'netns', 'exec', netns] : []), 'conntrack', '-L', '-o', 'extended,id', ...args];
  const r = spawnSync(cmd[0]!, cmd.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd.join(' ')}: ${r.stderr}`);
  return r.stdout.trim().split('\n').filter((l) => l !== '').map(parseToolLine);
}

function parseToolLine(line: string): ToolEntry {
  const words = line.trim().split(/\s+/);
  const [l3, , , l4num, timeout] = words;
  const e: ToolEntry = { family: l3 === 'ipv6' ? 6 : 4, protocol: Number(l4num), timeout: Number(timeout), orig: {}, reply: {}, flags: [], mark: 0, use: 0, id: 0 };
  let dir = e.orig;
  for (const w of words.slice(5)) {
    const kv = /^([a-z_]+)=(.*)$/.exec(w);
    if (!kv) {
      if (w.startsWith('[')) e.flags.push(w.slice(1, -1));
      else e.state = w;
      continue;
    }
    const [, k, v] = kv as unknown as [string, string, string];
    if (k === 'src' && 'src' in e.orig) dir = e.reply;
    if (k === 'mark') e.mark = Number(v);
    else if (k === 'zone') e.zone = Number(v);
    else if (k === 'use') e.use = Number(v);
    else if (k === 'id') e.id = Number(v);
    else dir[k] = v;
  }
  return e;
}

/** Our entry in the tool's terms: what `conntrack -o extended,id` prints of it. */
function asTool(e: ConntrackEntry): Omit<ToolEntry, 'timeout' | 'use'> {
  const dir = (t: ConntrackEntry['orig'], c: { packets: bigint; bytes: bigint } | undefined): Record<string, string> => {
    const o: Record<string, string> = { src: t.src, dst: t.dst };
    if (t.srcPort !== undefined) Object.assign(o, { sport: String(t.srcPort), dport: String(t.dstPort) });
    if (t.icmpType !== undefined) Object.assign(o, { type: String(t.icmpType), code: String(t.icmpCode), id: String(t.icmpId) });
    if (c) Object.assign(o, { packets: String(c.packets), bytes: String(c.bytes) });
    return o;
  };
  const flags = [...(e.statusNames.includes('SEEN_REPLY') ? [] : ['UNREPLIED']), ...(e.statusNames.includes('ASSURED') ? ['ASSURED'] : [])];
  return {
    family: e.family, protocol: e.protocol, ...(e.state !== undefined ? { state: e.state } : {}), orig: dir(e.orig, e.counters?.orig), reply: dir(e.reply, e.counters?.reply),
    flags, mark: e.mark ?? 0, ...(e.zone !== undefined ? { zone: e.zone } : {}), id: e.id ?? 0,
  };
}

const byId = <T extends { id?: number }>(xs: readonly T[]): T[] => [...xs].sort((a, b) => (a.id ?? 0) - (b.id ?? 0));
const strip = ({ timeout: _t, use: _u, ...rest }: ToolEntry): Omit<ToolEntry, 'timeout' | 'use'> => rest;
const keys = (es: readonly ConntrackEntry[]): string[] => es.map((e) => `${e.family} ${e.protocolName} ${e.orig.srcPort ?? ''}>${e.orig.dstPort ?? ''}`).sort();

test('list equals conntrack -L -o extended,id field by field: TCP and UDP flows of both families, counters, flags, mark, zone', async () => {
  await udp(4, 41000);
  await udp(6, 41001);
  await udp(4, 41002, 5300);
  await tcp(4);
  await tcp(6);
  await tcp(4, 8081);
  const ours = ct.list();
  assert.is(ours.undecodable.length, 0);
  assert.is(ours.length, 6, keys(ours).join(', '));
  const tool = toolList();
  assert.equal(byId(ours).map(asTool), byId(tool).map(strip));
  for (const e of ours) {
    const t = tool.find((x) => x.id === e.id)!;
    assert.ok(Math.abs((e.timeout ?? 0) - t.timeout) <= 2, `timeout ${e.timeout} vs ${t.timeout}`);
  }
  assert.equal(ours.filter((e) => e.mark === 0x10).map((e) => e.orig.dstPort), [8081]);
  assert.equal(ours.filter((e) => e.zone === 3).map((e) => e.orig.dstPort), [5300]);
});

test('filters agree with conntrack -L given the same options: protocol and ports, addresses both ways, family, status, mark, zone', async () => {
  await udp(4, 41010);
  await udp(6, 41011);
  await udp(4, 41012, 5300);
  await tcp(4);
  await tcp(6, 8081);
  const same = (ours: readonly ConntrackEntry[], args: string[]): void => assert.equal(byId(ours).map((e) => e.id), byId(toolList(args)).map((e) => e.id), args.join(' '));
  same(ct.list({ protocol: 'udp', orig: { dstPort: 5353 } }), ['-p', 'udp', '--dport', '5353']);
  same(ct.list({ protocol: 'udp', orig: { srcPort: 41010 }, family: 4 }), ['-f', 'ipv4', '-p', 'udp', '--sport', '41010']);
  same(ct.list({ orig: { src: '10.1.0.2' } }), ['-s', '10.1.0.2']);
  same(ct.list({ reply: { src: 'fd00:2::2' } }), ['-f', 'ipv6', '-r', 'fd00:2::2']);
  same(ct.list({ protocol: 'udp', orig: { src: 'fd00:1::2', dst: 'fd00:2::2' } }), ['-f', 'ipv6', '-p', 'udp', '-s', 'fd00:1::2', '-d', 'fd00:2::2']);
  same(ct.list({ reply: { dst: '10.1.0.2' } }), ['-q', '10.1.0.2']);
  same(ct.list({ family: 6 }), ['-f', 'ipv6']);
  same(ct.list({ status: ['ASSURED'] }), ['-u', 'ASSURED']);
  same(ct.list({ mark: 0x10 }), ['-m', '0x10']);
  same(ct.list({ mark: 0, markMask: 0xf0 }), ['-m', '0/0xf0']);
  same(ct.list({ zone: 3 }), ['-w', '3']);
  assert.is(ct.list({ zone: 3 }).length, 1);
  const async = await ct.listAsync({ protocol: 'tcp' });
  same(async, ['-p', 'tcp']);
});

test('get agrees with conntrack -G; a tuple the kernel does not track is undefined', async () => {
  await udp(4, 41020);
  await udp(6, 41021);
  const got = ct.get({ protocol: 'udp', src: '10.1.0.2', dst: '10.2.0.2', srcPort: 41020, dstPort: 5353 });
  const tool = parseToolLine(execFileSync('conntrack', ['-G', '-o', 'extended,id', '-p', 'udp', '-s', '10.1.0.2', '-d', '10.2.0.2', '--sport', '41020', '--dport', '5353'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
  assert.equal(asTool(got!), strip(tool));
  const byReply = ct.get({ protocol: 'udp', src: 'fd00:2::2', dst: 'fd00:1::2', srcPort: 5353, dstPort: 41021, direction: 'reply' });
  assert.is(byReply?.orig.srcPort, 41021);
  assert.is(ct.get({ protocol: 'udp', src: '10.1.0.2', dst: '10.2.0.2', srcPort: 1, dstPort: 2 }), undefined);
});

test('count agrees with conntrack -C', async () => {
  await udp(4, 41030);
  await udp(6, 41031);
  assert.is(ct.count(), Number(execFileSync('conntrack', ['-C'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()));
  assert.is(ct.count(), 2);
});

test('delete with a filter removes what conntrack -L listed for the same options, and nothing else; deleteAsync too', async () => {
  await udp(4, 41040);
  await udp(4, 41041);
  await udp(6, 41042);
  await tcp(4);
  const doomed = toolList(['-p', 'udp', '-f', 'ipv4']).map((e) => e.id);
  assert.is(doomed.length, 2);
  assert.is(ct.delete({ protocol: 'udp', family: 4 }), 2);
  const left = toolList();
  assert.ok(left.every((e) => !doomed.includes(e.id)));
  assert.equal(left.map((e) => `${e.family} ${e.protocol}`).sort(), ['4 6', '6 17']);
  assert.is(await ct.deleteAsync({ family: 6 }), 1);
  assert.equal(toolList(['-f', 'ipv6']), []);
  // An entry conntrack -D removed first is not counted, and is no error.
  await udp(4, 41043);
  const again = ct.list({ protocol: 'udp' });
  execFileSync('conntrack', ['-D', '-p', 'udp'], { stdio: 'ignore' });
  assert.is(ct.deleteEntries(again), 0);
});

test('flush of one family leaves the other (nfgenmsg version 1); flush by mark; flush of all empties the table', async () => {
  await udp(4, 41050);
  await udp(6, 41051);
  await tcp(4, 8081);
  ct.flush({ family: 6 });
  assert.equal(toolList().map((e) => e.family).sort(), [4, 4]);
  ct.flush({ mark: 0x10 });
  assert.equal(toolList().map((e) => e.protocol), [17]);
  ct.flush();
  assert.equal(toolList(), []);
});

/** Events of `m` until `done` says enough, or `ms` pass. */
async function collect(m: ConntrackMonitor, done: (es: ConntrackEvent[]) => boolean, ms = 4000): Promise<ConntrackEvent[]> {
  const got: ConntrackEvent[] = [];
  const timer = setTimeout(() => void m.close(), ms);
  for await (const e of m) {
    got.push(e);
    if (done(got)) break;
  }
  clearTimeout(timer);
  await m.close();
  return got;
}

test('events: new, update and destroy of real flows, the same as conntrack -E reports', async () => {
  const m = ct.events();
  const tool = spawn('conntrack', ['-E', '-o', 'extended,id'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let toolOut = '';
  tool.stdout.setEncoding('utf8').on('data', (d) => (toolOut += d));
  await new Promise((r) => setTimeout(r, 300));
  await udp(4, 41060);
  const s = await tcp(6);
  s.end();
  await new Promise((r) => setTimeout(r, 200));
  ct.delete({ protocol: 'udp' });
  const got = await collect(m, (es) => es.some((e) => e.type === 'destroy'));
  await new Promise((r) => setTimeout(r, 200));
  tool.kill();
  await new Promise((r) => tool.once('close', r));
  const ours = got.flatMap((e) => (e.type === 'new' || e.type === 'update' || e.type === 'destroy' ? [`${e.type.toUpperCase()} ${e.entry.id}`] : []));
  const theirs = toolOut.split('\n').flatMap((l) => {
    const w = /^\s*\[(NEW|UPDATE|DESTROY)\].* id=(\d+)/.exec(l);
    return w ? [`${w[1]} ${w[2]}`] : [];
  });
  assert.ok(ours.length >= 4, ours.join(', '));
  assert.equal(ours, theirs.slice(0, ours.length));
  const destroyed = got.find((e) => e.type === 'destroy');
  assert.ok(destroyed?.type === 'destroy' && destroyed.entry.counters?.orig?.packets === 1n && destroyed.entry.orig.srcPort === 41060);
  const tcpStates = got.flatMap((e) => (e.type === 'update' && e.entry.protocol === 6 ? [e.entry.state] : []));
  assert.ok(tcpStates.includes('ESTABLISHED'), tcpStates.join(','));
});

test('after ENOBUFS the stream dumps the table again and goes on with the events that followed', async () => {
  const m = ct.events({ receiveBufferSize: 4096, types: ['new'] });
  // 300 flows while this thread is blocked: the kernel fills the tiny buffer and drops the rest.
  const script = "const d=require('dgram');let n=0;for(let i=0;i<300;i++){const s=d.createSocket('udp4');s.bind(42000+i,()=>s.send('x',9,'10.2.0.2',()=>{s.close();if(++n===300)process.exit(0)}))}";
  const r = spawnSync('ip', ['netns', 'exec', 'c1', process.execPath, '-e', script]);
  assert.is(r.status, 0);
  let resync: ConntrackEvent | undefined;
  const after = (async () => {
    await until('the resync', () => resync !== undefined, 4000);
    await udp(4, 41070);
  })();
  const got = await collect(m, (es) => {
    resync ??= es.find((e) => e.type === 'resync');
    return resync !== undefined && es.some((e) => e.type === 'new' && e.entry.orig.srcPort === 41070);
  });
  await after;
  assert.ok(resync?.type === 'resync' && resync.reason === 'overrun');
  const dumped = resync?.type === 'resync' ? (resync.entries ?? []) : [];
  assert.is(dumped.filter((e) => e.orig.dstPort === 9).length, 300, 'the dump holds every flow, including those whose events were lost');
  assert.ok(got.indexOf(resync!) < got.findIndex((e) => e.type === 'new' && e.entry.orig.srcPort === 41070));
});

test('openConntrackIn: the table and the events of another netns, as ip netns exec c1 conntrack sees them', async () => {
  execFileSync('ip', ['netns', 'exec', 'c1', 'nft', '-f', '-'], { input: 'table inet t {\n chain o { type filter hook output priority 0; ct state new counter; }\n}\n' });
  const inside = openConntrackIn(c1);
  try {
    inside.flush();
    const m = inside.events({ types: ['new'] });
    await new Promise((r) => setTimeout(r, 100));
    await udp(4, 41080);
    const got = await collect(m, (es) => es.some((e) => e.type === 'new' && e.entry.orig.srcPort === 41080));
    assert.ok(got.some((e) => e.type === 'new' && e.entry.orig.srcPort === 41080));
    const listed = inside.list({ protocol: 'udp', orig: { srcPort: 41080 } });
    assert.equal(listed.map((e) => e.id), toolList(['-p', 'udp', '--sport', '41080'], 'c1').map((e) => e.id));
    // This netns tracks the same flow under its own entry.
    assert.ok(!listed.some((e) => ct.list().some((h) => h.id === e.id)));
  } finally {
    inside.close();
    execFileSync('ip', ['netns', 'exec', 'c1', 'nft', 'delete', 'table', 'inet', 't']);
  }
});

test('forgetConnections (the bridge layer) deletes the flows of an address, as before', async () => {
  await udp(4, 41090);
  await udp(6, 41091);
  await tcp(4);
  assert.is(await forgetConnections({ ips: ['10.1.0.2'] }), 2);
  assert.equal(toolList().map((e) => e.family), [6]);
  assert.is(await forgetConnections({ udpPorts: [{ port: 5353 }] }), 1);
  assert.equal(toolList(), []);
});

test('no leaks', () => {
  assert.equal(leaks, []);
});

test.run();
