/**
 * End-to-end: every typed field of every link compared with `ip -j -d -s -s link` one by one
 * (counters included), device flag setters, kind options changed in place, `ip route get`, and the
 * address, route and rule fields that were only in `raw`, each against `ip -j`.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createSocket } from 'node:dgram';
import { Rtnl, createNamedNetns, deleteNamedNetns, openRtnlIn, LINK_STATS_FIELDS, type Link, type LinkStats, type NetnsHandle } from '../../src/index.js';
import { catchError, ip, ipJson, leakGuard, requireSandbox } from '../helpers.js';
import { fixtureRtnl, kernelTest } from '../kernel.js';

const FILE = 'netlink-more';
requireSandbox(FILE);

let rt: Rtnl;
let guard: ReturnType<typeof leakGuard>;
const leaks: string[] = [];
let ns: NetnsHandle;

test.before(() => {
  // d0 (here, 10.1.0.1) - d1 (in c1, 10.1.0.2); br0 with the port p0 of a second pair; an ifb.
  ns = createNamedNetns('c1');
  const r = Rtnl.open();
  try {
    const d0 = r.linkAddVeth('d0', { name: 'd1', netnsFd: ns.fd });
    r.linkSetAddrGenMode(d0.index, 'none');
    r.linkSetUp(d0.index);
    r.addrAdd(d0.index, '10.1.0.1/24');
    r.addrAdd(d0.index, 'fd00:1::1/64', { nodad: true });
    const br = r.linkAddBridge('br0');
    r.linkAddVeth('p0', { name: 'p1' }, { master: br.index });
  } finally {
    r.close();
  }
  const c = openRtnlIn(ns);
  try {
    c.linkSetAddrGenMode('d1', 'none');
    c.linkSetUp('lo');
    c.linkSetUp('d1');
    c.addrAdd('d1', '10.1.0.2/24');
    c.addrAdd('d1', 'fd00:1::2/64', { nodad: true });
    c.routeAdd({ gateway: '10.1.0.1', oif: 'd1' });
  } finally {
    c.close();
  }
});
test.after(() => {
  ns.close();
  // d0 goes with its peer's netns.
  deleteNamedNetns('c1');
  for (const l of ['br0', 'p0']) ip(['link', 'del', l]);
});
test.before.each(() => {
  guard = leakGuard();
  rt = Rtnl.open();
});
test.after.each((ctx) => {
  rt.close();
  try {
    guard.check();
  } catch (e) {
    leaks.push(`${(ctx as { __test__?: string }).__test__}: ${(e as Error).message}`);
  }
});

/** IFF_* names as `ip` prints them in "flags". */
const IFF_NAMES: [number, string][] = [
  [0x1, 'UP'], [0x2, 'BROADCAST'], [0x4, 'DEBUG'], [0x8, 'LOOPBACK'], [0x10, 'POINTOPOINT'], [0x20, 'NOTRAILERS'], [0x80, 'NOARP'], [0x100, 'PROMISC'], [0x200, 'ALLMULTI'],
  [0x400, 'MASTER'], [0x800, 'SLAVE'], [0x1000, 'MULTICAST'], [0x2000, 'PORTSEL'], [0x4000, 'AUTOMEDIA'], [0x8000, 'DYNAMIC'], [0x10000, 'LOWER_UP'], [0x20000, 'DORMANT'], [0x40000, 'ECHO'],
];

/** Our counters in `ip -s -s -j`'s layout (rx/tx groups); counters ip 6.1 leaves out are not listed. */
function statsAsIp(s: LinkStats): Record<string, Record<string, number>> {
  const n = (x: bigint | undefined): number => Number(x ?? 0n);
  return {
    rx: {
      bytes: n(s.rxBytes), packets: n(s.rxPackets), errors: n(s.rxErrors), dropped: n(s.rxDropped), over_errors: n(s.rxOverErrors), multicast: n(s.multicast),
      length_errors: n(s.rxLengthErrors), crc_errors: n(s.rxCrcErrors), frame_errors: n(s.rxFrameErrors), fifo_errors: n(s.rxFifoErrors), missed_errors: n(s.rxMissedErrors),
      ...(s.rxNohandler ? { nohandler: n(s.rxNohandler) } : {}),
    },
    tx: {
      bytes: n(s.txBytes), packets: n(s.txPackets), errors: n(s.txErrors), dropped: n(s.txDropped), carrier_errors: n(s.txCarrierErrors), collisions: n(s.collisions),
      aborted_errors: n(s.txAbortedErrors), fifo_errors: n(s.txFifoErrors), window_errors: n(s.txWindowErrors), heartbeat_errors: n(s.txHeartbeatErrors),
    },
  };
}

/** A link in `ip -j -d -s -s link`'s words, field by field, for the fields we type. */
function linkAsIp(l: Link, byIndex: Map<number, string>): Record<string, unknown> {
  const o: Record<string, unknown> = {
    ifindex: l.index, ifname: l.name, flags: IFF_NAMES.filter(([b]) => (l.flags & b) !== 0).map(([, n]) => n).sort(), mtu: l.mtu, qdisc: l.qdisc, operstate: l.operstate.toUpperCase(),
    group: l.group === 0 ? 'default' : String(l.group), txqlen: l.txqlen, address: l.mac, promiscuity: l.promiscuity, allmulti: l.allmulti, min_mtu: l.minMtu, max_mtu: l.maxMtu,
    num_tx_queues: l.numTxQueues, num_rx_queues: l.numRxQueues, gso_max_size: l.gsoMaxSize, gso_max_segs: l.gsoMaxSegs, tso_max_size: l.tsoMaxSize, tso_max_segs: l.tsoMaxSegs, gro_max_size: l.groMaxSize,
  };
  if (l.master !== undefined) o['master'] = byIndex.get(l.master);
  if (l.kind !== undefined) o['info_kind'] = l.kind;
  if (l.slaveKind !== undefined) o['info_slave_kind'] = l.slaveKind;
  if (l.alias !== undefined) o['ifalias'] = l.alias;
  if (l.stats) o['stats64'] = statsAsIp(l.stats);
  return o;
}

/** The same fields from `ip -j -d -s -s link` (flags without the NO-CARRIER/M-DOWN it derives). */
function ipLinkFields(j: any): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const k of ['ifindex', 'ifname', 'mtu', 'qdisc', 'operstate', 'group', 'txqlen', 'address', 'promiscuity', 'allmulti', 'min_mtu', 'max_mtu', 'num_tx_queues', 'num_rx_queues', 'gso_max_size', 'gso_max_segs', 'tso_max_size', 'tso_max_segs', 'gro_max_size', 'master', 'ifalias']) {
    if (j[k] !== undefined) o[k] = j[k];
  }
  o['flags'] = (j.flags as string[]).filter((f) => f !== 'NO-CARRIER' && f !== 'M-DOWN').sort();
  if (j.linkinfo?.info_kind) o['info_kind'] = j.linkinfo.info_kind;
  if (j.linkinfo?.info_slave_kind) o['info_slave_kind'] = j.linkinfo.info_slave_kind;
  if (j.stats64) o['stats64'] = { rx: { ...j.stats64.rx }, tx: { ...j.stats64.tx } };
  if (j.stats64?.tx) delete (o['stats64'] as { tx: Record<string, unknown> }).tx['carrier_changes'];
  return o;
}

test('every typed field of every link equals ip -j -d -s -s link, counters included', () => {
  // Idle links only (no IPv6 autoconfiguration, nothing sent): the counters hold still between the reads.
  const before = rt.linkList();
  const theirs = ipJson<any[]>(['-d', '-s', '-s', 'link', 'show']);
  const after = rt.linkList();
  const byIndex = new Map(before.map((l) => [l.index, l.name]));
  let compared = 0;
  for (const l of before) {
    const j = theirs.find((x) => x.ifindex === l.index);
    assert.ok(j, `ip lists ${l.name}`);
    const ours = linkAsIp(l, byIndex);
    const want = ipLinkFields(j);
    const again = linkAsIp(after.find((x) => x.index === l.index)!, byIndex);
    // A counter that moved meanwhile (lo, an ND probe) is checked within the two reads of ours.
    if (JSON.stringify(ours['stats64']) !== JSON.stringify(again['stats64'])) {
      for (const dir of ['rx', 'tx'] as const) {
        for (const [k, v] of Object.entries((want['stats64'] as any)[dir] as Record<string, number>)) {
          const lo = (ours['stats64'] as any)[dir][k] as number;
          const hi = (again['stats64'] as any)[dir][k] as number;
          assert.ok(v >= lo && v <= hi, `${l.name} ${dir}.${k}: ${v} within ${lo}..${hi}`);
        }
      }
      delete ours['stats64'];
      delete want['stats64'];
    }
    // A link that just came up reaches operstate UP a moment later (the kernel's linkwatch): one of our two reads agrees.
    if (ours['operstate'] !== again['operstate']) {
      assert.ok([ours['operstate'], again['operstate']].includes(want['operstate']), `${l.name} operstate ${String(want['operstate'])} within our two reads`);
      delete ours['operstate'];
      delete want['operstate'];
    }
    assert.equal(ours, want, l.name);
    compared += Object.keys(want).length + (want['stats64'] ? 20 : 0);
  }
  assert.ok(before.length >= 5 && compared > 100, `${compared} fields compared over ${before.length} links`);
  // Counters: all 25 of rtnl_link_stats64 on this kernel, in a dump and in a lookup.
  const d0 = before.find((l) => l.name === 'd0')!;
  assert.equal(Object.keys(d0.stats ?? {}), [...LINK_STATS_FIELDS]);
  assert.equal(Object.keys(rt.linkGet('d0').stats ?? {}), [...LINK_STATS_FIELDS]);
});

test('counters follow traffic: 20 datagrams out of d0 are 20 more tx packets, as ip -s shows', async () => {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '10.1.0.1', () => r()));
  const send = (): Promise<void> => new Promise<void>((r) => s.send('x', 9, '10.1.0.2', () => r()));
  // The first datagram waits for ARP (one more packet each way): resolved before counting.
  await send();
  await new Promise((r) => setTimeout(r, 200));
  const start = rt.linkGet('d0').stats!;
  for (let i = 0; i < 20; i++) await send();
  s.close();
  const end = rt.linkGet('d0').stats!;
  // The kernel may send a packet of its own meanwhile (an ARP reprobe, IPv6 neighbour discovery
  // or MLD): at least the 20 datagrams, and not many more.
  const sent = end.txPackets! - start.txPackets!;
  assert.ok(sent >= 20n && sent <= 24n, `${sent} packets out of d0 for 20 datagrams`);
  assert.is(Number(end.txPackets), ipJson<any[]>(['-s', 'link', 'show', 'd0'])[0].stats64.tx.packets);
});

test('flag setters: promisc, allmulticast, arp off, multicast off, dynamic, as ip shows them; then back', () => {
  rt.linkSetFlags('p0', { promisc: true, allmulti: true, arp: false, multicast: false, dynamic: true });
  const flags = ipJson<any[]>(['link', 'show', 'p0'])[0].flags as string[];
  for (const f of ['PROMISC', 'ALLMULTI', 'NOARP', 'DYNAMIC']) assert.ok(flags.includes(f), `${f} in ${flags}`);
  assert.not.ok(flags.includes('MULTICAST'));
  const p0 = rt.linkGet('p0');
  // A bridge port is promiscuous already: the bridge's use and ours make two.
  assert.equal([p0.promiscuity, p0.allmulti], [ipJson<any[]>(['-d', 'link', 'show', 'p0'])[0].promiscuity, ipJson<any[]>(['-d', 'link', 'show', 'p0'])[0].allmulti]);
  assert.is(p0.promiscuity, 2);
  rt.linkSetFlags('p0', { promisc: false, allmulti: false, arp: true, multicast: true, dynamic: false });
  const back = ipJson<any[]>(['link', 'show', 'p0'])[0].flags as string[];
  assert.ok(!back.includes('PROMISC') && !back.includes('NOARP') && back.includes('MULTICAST'), back.join(','));
  assert.is(rt.linkGet('p0').promiscuity, 1);
});

test('bridge options changed in place (stp_state, forward_delay), as ip -d shows them; other options keep their values', () => {
  const hello = ipJson<any[]>(['-d', 'link', 'show', 'br0'])[0].linkinfo.info_data.hello_time;
  rt.linkSetOptions('br0', 'bridge', { forwardDelay: 400, stpState: 1 });
  const d = ipJson<any[]>(['-d', 'link', 'show', 'br0'])[0].linkinfo.info_data;
  assert.equal([d.forward_delay, d.stp_state, d.hello_time], [400, 1, hello]);
  assert.equal([rt.linkGet('br0').options?.['forwardDelay'], rt.linkGet('br0').options?.['stpState']], [400, 1]);
});

kernelTest(test, FILE, 'vxlan options changed in place (ttl, learning); a VNI change is refused by the kernel; label policy and reserved bits read back', ['link:vxlan'], () => {
  const vx = rt.linkAdd('vx9', 'vxlan', { id: 42, local: '10.1.0.1', port: 4789, link: 'd0' });
  try {
    assert.equal([vx.options?.['labelPolicy'], typeof (vx.options?.['reservedBits'] as { flags?: number } | undefined)?.flags], ['fixed', 'number']);
    rt.linkSetOptions('vx9', 'vxlan', { ttl: 10, learning: 0 });
    const d = ipJson<any[]>(['-d', 'link', 'show', 'vx9'])[0].linkinfo.info_data;
    assert.equal([d.ttl, d.learning, d.id, d.local], [10, false, 42, '10.1.0.1']);
    const e = catchError(() => rt.linkSetOptions('vx9', 'vxlan', { id: 43 }));
    assert.ok(e.code === 'EOPNOTSUPP' || e.code === 'EINVAL', String(e));
  } finally {
    rt.linkDel('vx9');
  }
}, () => {
  // On captured bytes: the kernel's vxlan of link-dump-kinds, with the newer attributes typed.
  const f = fixtureRtnl(['link-dump-kinds.reply.txt']);
  try {
    const vx = f.rt.linkList().find((l) => l.kind === 'vxlan')!;
    assert.equal(vx.options?.['labelPolicy'], 'fixed');
  } finally {
    f.rt.close();
  }
});

/** `ip -j route get ARGS` and ours, in the same words. */
function sameRouteGet(args: string[], ours: ReturnType<Rtnl['routeGet']>, netns?: string): void {
  const j = ipJson<any[]>(['route', 'get', ...args], netns)[0];
  const names = new Map((netns ? ipJson<any[]>(['link', 'show'], netns) : ipJson<any[]>(['link', 'show'])).map((l) => [l.ifindex as number, l.ifname as string]));
  const got: Record<string, unknown> = { dst: ours.dst.replace(/\/(32|128)$/, '') };
  if (ours.gateway !== undefined) got['gateway'] = ours.gateway;
  if (ours.oif !== undefined) got['dev'] = names.get(ours.oif);
  if (ours.prefsrc !== undefined) got['prefsrc'] = ours.prefsrc;
  if (ours.uid !== undefined) got['uid'] = ours.uid;
  if (ours.mark !== undefined) got['mark'] = ours.mark;
  if (ours.iif !== undefined) got['iif'] = names.get(ours.iif);
  const want: Record<string, unknown> = {};
  for (const k of ['dst', 'gateway', 'dev', 'prefsrc', 'uid', 'mark', 'iif']) if (j[k] !== undefined) want[k] = j[k];
  assert.equal(got, want, `ip route get ${args.join(' ')}`);
}

test('routeGet equals ip -j route get: local subnet, via a gateway (from c1), from + iif, oif + mark, fibmatch, IPv6', () => {
  sameRouteGet(['10.1.0.2'], rt.routeGet({ dst: '10.1.0.2' }));
  sameRouteGet(['10.1.0.2', 'oif', 'd0', 'mark', '7'], rt.routeGet({ dst: '10.1.0.2', oif: 'd0', mark: 7 }));
  sameRouteGet(['fd00:1::2'], rt.routeGet({ dst: 'fd00:1::2' }));
  const c = openRtnlIn(ns);
  try {
    const viaGw = c.routeGet({ dst: '192.0.2.7' });
    assert.equal([viaGw.gateway, viaGw.prefsrc], ['10.1.0.1', '10.1.0.2']);
    sameRouteGet(['192.0.2.7'], viaGw, 'c1');
    const fib = c.routeGet({ dst: '192.0.2.7', fibmatch: true });
    assert.equal([fib.dst, fib.gateway, fib.table], ['default', '10.1.0.1', 254]);
  } finally {
    c.close();
  }
  // A packet from 10.1.0.2 arriving on d0, for the bridge's own network: a forwarding lookup.
  ip(['addr', 'add', '10.9.0.1/24', 'dev', 'br0']);
  ip(['link', 'set', 'br0', 'up']);
  try {
    const fwd = rt.routeGet({ dst: '10.9.0.1', src: '10.1.0.2', iif: 'd0' });
    sameRouteGet(['10.9.0.1', 'from', '10.1.0.2', 'iif', 'd0'], fwd);
  } finally {
    ip(['link', 'set', 'br0', 'down']);
    ip(['addr', 'flush', 'dev', 'br0']);
  }
  assert.is(catchError(() => rt.routeGet({ dst: '203.0.113.1' })).code, 'ENETUNREACH');
});

test('address metric, route realms and rule ipproto/sport/dport/uidrange: set, read back, as ip -j shows them', () => {
  rt.addrAdd('d0', '10.7.0.1/24', { metric: 20 });
  const a = rt.addrList({ link: 'd0', family: 4 }).find((x) => x.address === '10.7.0.1')!;
  const ja = ipJson<any[]>(['addr', 'show', 'dev', 'd0'])[0].addr_info.find((x: any) => x.local === '10.7.0.1');
  assert.equal([a.metric, ja.metric], [20, 20]);
  rt.routeAdd({ dst: '10.11.0.0/24', oif: 'd0', realms: { from: 3, to: 4 } });
  rt.routeAdd({ dst: '10.12.0.0/24', oif: 'd0', realms: { to: 5 } });
  const realms = rt.routeList({ family: 4 }).filter((r) => r.realms).map((r) => [r.dst, r.realms]);
  assert.equal(realms, [['10.11.0.0/24', { from: 3, to: 4 }], ['10.12.0.0/24', { from: 0, to: 5 }]]);
  assert.equal(ipJson<any[]>(['route', 'show', '10.11.0.0/24'])[0].flow, { from: '3', to: '4' });
  assert.equal(ipJson<any[]>(['route', 'show', '10.12.0.0/24'])[0].flow, { to: '5' });
  rt.ruleAdd({ priority: 500, uidRange: { start: 100, end: 200 }, ipProto: 'tcp', sport: { start: 1000, end: 2000 }, dport: 80, table: 100 });
  try {
    const rule = rt.ruleList({ family: 4 }).find((r) => r.priority === 500)!;
    assert.equal([rule.ipProto, rule.sport, rule.dport, rule.uidRange], [6, { start: 1000, end: 2000 }, { start: 80, end: 80 }, { start: 100, end: 200 }]);
    const j = ipJson<any[]>(['rule', 'show', 'pref', '500'])[0];
    assert.equal([j.ipproto, j.sport_start, j.sport_end, j.dport, j.uid_start, j.uid_end], ['tcp', 1000, 2000, 80, 100, 200]);
  } finally {
    rt.ruleDel({ priority: 500 });
    rt.routeDel({ dst: '10.11.0.0/24', oif: 'd0' });
    rt.routeDel({ dst: '10.12.0.0/24', oif: 'd0' });
    rt.addrDel('d0', '10.7.0.1/24');
  }
});

test('no leaks', () => {
  assert.equal(leaks, []);
});

test.run();
