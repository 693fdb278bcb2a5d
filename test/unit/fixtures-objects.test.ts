/**
 * Encoders for routes, addresses, neighbours, FDB entries, rules, netns ids and nexthop objects
 * against iproute2's and bridge's bytes (captured by test/fixtures/tools/capture.ts), decoders
 * against the kernel's replies, and the byte-exact round trip of every message in every fixture.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { encode, reencode, splitMessages, decodePayload, type Request } from '../../src/netlink/core/message.js';
import { NLM_F, NLMSG } from '../../src/netlink/core/constants.js';
import { parseHexFixture } from '../../src/netlink/core/testing.js';
import { rtnlDefOf } from '../../src/netlink/route/rtnl-types.js';
import * as R from '../../src/netlink/route/route.js';
import * as A from '../../src/netlink/route/addr.js';
import * as N from '../../src/netlink/route/neigh.js';
import * as RU from '../../src/netlink/route/rule.js';
import * as NS from '../../src/netlink/route/nsid.js';
import * as NH from '../../src/netlink/route/nexthop.js';

const dir = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const fixture = (name: string): Buffer => parseHexFixture(readFileSync(dir + name, 'utf8'));
const rows = (b: Buffer): string => (b.toString('hex').match(/.{1,8}/g) ?? []).join('\n');
const wire = (req: Request): Buffer => encode({ ...req, flags: req.flags | NLM_F.REQUEST | NLM_F.ACK }, 0, 0);

// In every capture lo = 1, d1 = 2, d0 = 3 (and vx0 = 4 where it exists).
const seg6 = (() => {
  const m = splitMessages(fixture('route-add-seg6.req.txt'))[0]!;
  return decodePayload(R.routeMessage, m.payload).attrs.encap!;
})();

const requests: [string, () => Request][] = [
  ['route-add-multipath.req.txt', () => R.addRouteRequest({ dst: '10.5.0.0/24', nexthops: [{ gateway: '10.1.0.5', oif: 3, weight: 2 }, { gateway: '10.2.0.6', oif: 2, weight: 1 }] })],
  ['route-add-multipath6.req.txt', () => R.addRouteRequest({ dst: 'fd00:5::/64', nexthops: [{ gateway: 'fd00:1::5', oif: 3, weight: 2 }, { gateway: 'fd00:2::6', oif: 2 }] })],
  ['route-add-metrics.req.txt', () => R.addRouteRequest({ dst: '10.6.0.0/24', gateway: '10.1.0.5', oif: 3, metrics: { mtu: 1300, advmss: 1200, window: 65535, rtt: 10, initcwnd: 10, hoplimit: 32, lock: ['mtu'] } })],
  ['route-add-nhid.req.txt', () => R.addRouteRequest({ dst: '10.7.0.0/24', nhid: 7 })],
  ['route-add-table-tos.req.txt', () => R.addRouteRequest({ table: 1000, dst: '10.9.0.0/24', tos: 0x10, gateway: '10.1.0.5', priority: 50, protocol: 'static', oif: 3 })],
  ['route-add-blackhole.req.txt', () => R.addRouteRequest({ dst: '10.10.0.0/24', type: 'blackhole' })],
  ['route-add-via-inet6.req.txt', () => R.addRouteRequest({ dst: '10.8.0.0/24', gateway: 'fd00:1::5', oif: 3 })],
  ['route-add-from-expires6.req.txt', () => R.addRouteRequest({ dst: 'fd00:9::/64', src: 'fd00:3::/48', gateway: 'fd00:1::5', priority: 100, pref: 'high', expires: 300, oif: 3 })],
  ['route-add-seg6.req.txt', () => R.addRouteRequest({ dst: 'fd00:a::/64', encap: { type: 'seg6', data: seg6 }, oif: 3 })],
  ['route-add-mpls.req.txt', () => R.addMplsRouteRequest({ label: 300, via: 'fd00:1::5', oif: 3 })],
  ['addr-add-lifetime.req.txt', () => A.addAddrRequest(3, '10.1.0.9/24', { broadcast: false, validLft: 1000, preferredLft: 500 })],
  ['neigh-add.req.txt', () => N.addNeighRequest({ dst: '10.1.0.9', lladdr: '02:00:00:00:00:09', link: 3 })],
  ['neigh-add-proxy.req.txt', () => N.addNeighRequest({ dst: '10.1.0.10', link: 3, proxy: true })],
  ['neigh-add6-router.req.txt', () => N.addNeighRequest({ dst: 'fd00:1::9', lladdr: '02:00:00:00:00:0a', link: 3, router: true, state: 'reachable' })],
  ['neigh-del.req.txt', () => N.deleteNeighRequest({ dst: '10.1.0.9', link: 3 })],
  ['fdb-append-vxlan.req.txt', () => N.appendFdbRequest({ lladdr: '00:00:00:00:00:00', link: 4, dst: '10.1.0.2' })],
  ['fdb-add-master.req.txt', () => N.addFdbRequest({ lladdr: '02:00:00:00:00:0b', link: 3, master: true, state: 'static' })],
  ['rule-add.req.txt', () => RU.addRuleRequest({ priority: 100, src: '10.0.0.0/8', table: 100 })],
  ['rule-add-fwmark6.req.txt', () => RU.addRuleRequest({ family: 6, priority: 200, fwmark: 0x10, fwmask: 0xff, iif: 'd0', table: 1000 })],
  ['rule-add-not-blackhole.req.txt', () => RU.addRuleRequest({ invert: true, priority: 300, src: '10.0.0.0/8', action: 'blackhole' })],
  ['nsid-set.req.txt', () => NS.setNsidRequest({ fd: 6 }, 5)],
  ['nexthop-add.req.txt', () => NH.addNexthopRequest({ id: 7, gateway: '10.1.0.5', oif: 3 })],
  ['rule-del.req.txt', () => RU.deleteRuleRequest({ priority: 100 })],
  ['nexthop-del.req.txt', () => NH.deleteNexthopRequest(7)],
  ['fdb-del-vxlan.req.txt', () => N.deleteFdbRequest({ lladdr: '00:00:00:00:00:00', link: 4, dst: '10.1.0.2' })],
  ['route-del-mpls.req.txt', () => R.deleteMplsRouteRequest({ label: 300 })],
  ['nexthop-add-group.req.txt', () => NH.addNexthopRequest({ id: 9, group: [{ id: 7, weight: 2 }, { id: 8, weight: 1 }] })],
];

for (const [file, build] of requests) {
  test(`encoder matches iproute2: ${file}`, () => {
    assert.fixture(rows(wire(build())), rows(fixture(file)));
  });
}

// Dump requests go out with NLM_F_DUMP and no ack.
const dumps: [string, () => Request][] = [
  ['route-dump-v6.req.txt', () => R.dumpRouteRequest(6)],
  ['neigh-dump-dev.req.txt', () => N.dumpNeighRequest({ index: 3 })],
];
for (const [file, build] of dumps) {
  test(`dump request matches iproute2: ${file}`, () => {
    const req = build();
    assert.fixture(rows(encode({ ...req, flags: req.flags | NLM_F.REQUEST | NLM_F.DUMP }, 0, 0)), rows(fixture(file)));
  });
}

test('MPLS routes from a kernel that has them (rust-netlink captures): label, via inet6, swap, and an IPv4 route with an MPLS encap', () => {
  const one = (f: string) => R.decodeAnyRoute(splitMessages(fixture(f))[0]!);
  const m = one('route-mpls.rust.reply.txt') as R.MplsRoute;
  assert.equal([m.family, m.label, m.via, m.oif !== undefined], ['mpls', 300, { family: 10, address: '2001:db8:1::2' }, true]);
  const swap = one('route-mpls-swap.rust.reply.txt') as R.MplsRoute;
  assert.equal([swap.label, swap.newdst], [100, [200]]);
  const v4 = one('route-encap-mpls.rust.reply.txt') as R.Route;
  assert.equal([v4.family, v4.dst, v4.encap?.type, v4.encap?.labels, v4.gateway], [4, '198.51.100.1/32', 'mpls', [100], '192.0.2.1']);
});

test('every message of every fixture re-encodes to the same bytes', () => {
  let n = 0;
  // Generic netlink, nf_tables, sock_diag, XFRM, ipset and WireGuard fixtures are checked in their own files: their types are not RTM_*.
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.txt') && !/^(genl|ethtool|nft|sockdiag|xfrm|ipset|wg)-/.test(x))) {
    const buf = fixture(f);
    let off = 0;
    for (const m of splitMessages(buf)) {
      const orig = buf.subarray(off, off + ((m.len + 3) & ~3));
      off += (m.len + 3) & ~3;
      const def = m.type >= 16 ? rtnlDefOf(m.type, m.payload) : undefined;
      if (!def) continue;
      assert.is(reencode(def, m, decodePayload(def, m.payload)).toString('hex'), orig.toString('hex'), `${f} at byte ${off}`);
      n++;
    }
  }
  assert.ok(n >= 60, `${n} messages checked`);
});

const data = (file: string, type: number) => splitMessages(fixture(file)).filter((m) => m.type === type);

test('IPv4 route dump: multipath with weights, locked metrics, nhid, blackhole, table 1000 with tos', () => {
  const routes = data('route-dump-v4.reply.txt', 24).map(R.decodeAnyRoute) as R.Route[];
  const by = (dst: string) => routes.find((r) => r.dst === dst)!;
  assert.equal(by('10.5.0.0/24').nexthops?.map((h) => [h.gateway, h.oif, h.weight]), [['10.1.0.5', 3, 2], ['10.2.0.6', 2, 1]]);
  assert.is(by('10.5.0.0/24').gateway, undefined);
  const m = by('10.6.0.0/24').metrics!;
  assert.equal([m.mtu, m.advmss, m.window, m.rtt, m.initcwnd, m.hoplimit, m.lock], [1300, 1200, 65535, 10, 10, 32, ['mtu']]);
  assert.is(by('10.7.0.0/24').nhid, 7);
  assert.is(by('10.10.0.0/24').typeName, 'blackhole');
  const t = by('10.9.0.0/24');
  assert.equal([t.table, t.tos, t.priority, t.protocolName, t.gateway], [1000, 0x10, 50, 'static', '10.1.0.5']);
  assert.ok(routes.some((r) => r.table === 255 && r.typeName === 'local' && r.scopeName === 'host'), 'local table present');
  assert.is(by('10.1.0.0/24').protocolName, 'kernel');
});

test('IPv6 route dump: multipath, from + pref + expires, seg6 encap kept raw and labelled', () => {
  const routes = data('route-dump-v6.reply.txt', 24).map(R.decodeAnyRoute) as R.Route[];
  const by = (dst: string) => routes.find((r) => r.dst === dst)!;
  assert.equal(by('fd00:5::/64').nexthops?.map((h) => [h.gateway, h.oif, h.weight]), [['fd00:1::5', 3, 2], ['fd00:2::6', 2, 1]]);
  const f = by('fd00:9::/64');
  assert.equal([f.src, f.pref, f.priority], ['fd00:3::/48', 'high', 100]);
  assert.ok(f.expires! > 290 && f.expires! <= 300, `expires ${f.expires}`);
  const e = by('fd00:a::/64').encap!;
  assert.is(e.type, 'seg6');
  assert.ok(e.data.length > 16);
});

test('multicast route dump: the u64 RTA_EXPIRES that broke all-family dumps decodes, as an (S,G) entry', () => {
  const [r] = data('route-dump-mroute.reply.txt', 24).map(R.decodeAnyRoute) as R.MulticastRoute[];
  assert.is(r!.family, 'ipmr');
  assert.equal([r!.source, r!.group, r!.iif, r!.oifs], ['10.1.0.9', '239.1.1.1', 3, [{ oif: 2, ttl: 1 }]]);
  assert.is(r!.packets, 0n);
  assert.instance((() => {
    try {
      R.decodeRoute(data('route-dump-mroute.reply.txt', 24)[0]!);
    } catch (e) {
      return e;
    }
  })(), Error, 'decodeRoute refuses a non-IP family instead of misreading it');
});

test('address with lifetimes: valid_lft and preferred_lft decoded, permanent ones say forever', () => {
  const addrs = data('addr-dump-lifetime.reply.txt', 20).map(A.decodeAddress);
  const a = addrs.find((x) => x.address === '10.1.0.9')!;
  assert.ok(typeof a.validLft === 'number' && a.validLft <= 1000 && a.validLft > 990);
  assert.ok(typeof a.preferredLft === 'number' && a.preferredLft <= 500 && a.preferredLft > 490);
  assert.not.ok(a.flagNames.includes('permanent'));
  const p = addrs.find((x) => x.address === '10.1.0.1')!;
  assert.equal([p.validLft, p.preferredLft, p.flagNames.includes('permanent')], ['forever', 'forever', true]);
});

test('neighbour dump: ARP permanent and NDP router entries', () => {
  const ns = data('neigh-dump.reply.txt', 28).map(N.decodeNeighbour);
  const v4 = ns.find((n) => n.dst === '10.1.0.9')!;
  assert.equal([v4.family, v4.lladdr, v4.ifindex, v4.states], [4, '02:00:00:00:00:09', 3, ['permanent']]);
  const v6 = ns.find((n) => n.dst === 'fd00:1::9')!;
  assert.equal([v6.family, v6.lladdr, v6.flagNames.includes('router')], [6, '02:00:00:00:00:0a', true]);
});

test('VXLAN FDB dump: the all-zeros entries with their remote dst', () => {
  const ns = data('fdb-dump-vxlan.reply.txt', 28).map(N.decodeNeighbour);
  const remotes = ns.filter((n) => n.lladdr === '00:00:00:00:00:00').map((n) => n.dst).sort();
  assert.equal(remotes, ['10.1.0.2', '10.1.0.3']);
  assert.ok(ns.every((n) => n.family === 'bridge' && n.ifindex === 4 && n.flagNames.includes('self')));
});

test('rule dump: defaults, from/table, fwmark/mask + iif', () => {
  const rules = data('rule-dump.reply.txt', 32).map(RU.decodeRule);
  assert.equal(rules.map((r) => [r.priority ?? 0, r.table]), [[0, 255], [100, 100], [150, 1000], [32766, 254], [32767, 253]]);
  const fw = rules.find((r) => r.priority === 150)!;
  assert.equal([fw.fwmark, fw.fwmask, fw.iif, fw.action, fw.src], [0x10, 0xff, 'd0', 'lookup', 'all']);
  assert.is(rules.find((r) => r.priority === 100)!.src, '10.0.0.0/8');
});

test('netns id dump and nexthop dump', () => {
  assert.equal(data('nsid-dump.reply.txt', 88).map((m) => NS.decodeNetnsId(m).nsid).sort(), [5, 6]);
  const nh = data('nexthop-dump.reply.txt', 104).map(NH.decodeNexthop);
  const by = (id: number) => nh.find((n) => n.id === id)!;
  assert.equal([by(7).gateway, by(7).oif, by(7).family], ['10.1.0.5', 3, 4]);
  assert.equal([by(9).group, by(9).groupType], [[{ id: 7, weight: 2 }, { id: 8, weight: 1 }], 'mpath']);
  assert.is(by(10).blackhole, true);
});

test('the MPLS request decodes as labels and via, not as IPv4', () => {
  const [m] = splitMessages(fixture('route-add-mpls.req.txt'));
  const r = R.decodeAnyRoute(m!) as R.MplsRoute;
  assert.equal([r.family, r.label, r.via, r.oif], ['mpls', 300, { family: 10, address: 'fd00:1::5' }, 3]);
});

test('every captured dump ends with NLMSG_DONE', () => {
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.reply.txt') && !x.includes('.rust.') && !x.startsWith('error-'))) {
    // The answer to a request that is not a dump (a GET without NLM_F_DUMP, as ip xfrm and ipset send) is one message.
    const flags = /^#\s+[0-9a-f]{2} [0-9a-f]{2}\s+# nlmsg_flags=0x([0-9a-f]+)$/m.exec(readFileSync(dir + f, 'utf8'))?.[1];
    if (flags !== undefined && (parseInt(flags, 16) & NLM_F.DUMP) !== NLM_F.DUMP) continue;
    const ms = splitMessages(fixture(f));
    // A lookup's answer (conntrack -G, -C) and captured events are not dumps: their header says
    // so, or the request it records lacks NLM_F_DUMP.
    const text = readFileSync(dir + f, 'utf8');
    const reqFlags = /^#\s+[0-9a-f ]+# nlmsg_flags=0x([0-9a-f]+)/m.exec(text)?.[1];
    if (text.includes('# direction: events') || (reqFlags !== undefined && (parseInt(reqFlags, 16) & NLM_F.DUMP) !== NLM_F.DUMP)) continue;
    assert.ok(ms.at(-1)!.type === NLMSG.DONE || ms.at(-1)!.type === NLMSG.ERROR, f);
  }
});

test.run();
