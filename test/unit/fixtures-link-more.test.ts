/**
 * The fields and operations issue 22 added to links, routes, addresses and rules, against
 * iproute2's bytes and the kernel's replies (captured by test/fixtures/tools/capture.ts): device
 * flag setters, kind options changed in place, `ip route get`, typed link counters, the link
 * fields that were only in `raw`, the newer vxlan attributes, address metric, route realms, and
 * rule ipproto/sport/dport/uidrange.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { encode, reencode, splitMessages, decodePayload, request, type RawMessage, type Request } from '../../src/netlink/core/message.js';
import { NLM_F, RTM } from '../../src/netlink/core/constants.js';
import { ack, dial, parseHexFixture, reply } from '../../src/netlink/core/testing.js';
import { Rtnl } from '../../src/netlink/route/rtnl.js';
import * as L from '../../src/netlink/route/link.js';
import * as LS from '../../src/netlink/route/link-set.js';
import * as R from '../../src/netlink/route/route.js';
import * as A from '../../src/netlink/route/addr.js';
import * as RU from '../../src/netlink/route/rule.js';
import { linkMessage } from '../../src/netlink/route/schemas.js';
import { LINK_STATS_FIELDS, linkStats32, linkStats64 } from '../../src/netlink/route/link-stats.js';
import { TAIL } from '../../src/netlink/core/message.js';
import { catchError } from '../helpers.js';

const dir = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const fixture = (name: string): Buffer => parseHexFixture(readFileSync(dir + name, 'utf8'));
const rows = (b: Buffer): string => (b.toString('hex').match(/.{1,8}/g) ?? []).join('\n');
/** A request as the kernel receives it: with NLM_F_ACK when acked, without for `ip route get`. */
const wire = (req: Request, ackFlag = true): Buffer => encode({ ...req, flags: req.flags | NLM_F.REQUEST | (ackFlag ? NLM_F.ACK : 0) }, 0, 0);
const msgs = (file: string, type: number): RawMessage[] => splitMessages(fixture(file)).filter((m) => m.type === type);

// In every capture lo = 1, d1 = 2, d0 = 3, and vx0 or br0 = 4 where it exists.
const requests: [string, () => Request, boolean?][] = [
  ['link-set-promisc.req.txt', () => LS.setFlagsRequest(3, { promisc: true })],
  ['link-set-flags.req.txt', () => LS.setFlagsRequest(3, { promisc: true, allmulti: true, arp: false, multicast: false, dynamic: true })],
  ['link-set-vxlan.req.txt', () => LS.setKindOptionsRequest(4, 'vxlan', { ttl: 10, learning: 0 })],
  ['link-set-bridge.req.txt', () => LS.setKindOptionsRequest(4, 'bridge', { forwardDelay: 300, stpState: 1 })],
  ['route-get.req.txt', () => R.getRouteRequest({ dst: '10.2.0.9' }), false],
  ['route-get-full.req.txt', () => R.getRouteRequest({ dst: '10.2.0.9', src: '10.1.0.1', oif: 2, mark: 5, uid: 7, ipProto: 'tcp', sport: 1000, dport: 80 }), false],
  ['route-get-iif.req.txt', () => R.getRouteRequest({ dst: '10.2.0.9', src: '10.1.0.9', iif: 3 }), false],
  ['route-get-fibmatch.req.txt', () => R.getRouteRequest({ dst: '10.2.0.9', fibmatch: true }), false],
  ['route-get6.req.txt', () => R.getRouteRequest({ dst: 'fd00:2::9' }), false],
  ['route-add-realms.req.txt', () => R.addRouteRequest({ dst: '10.11.0.0/24', realms: { from: 3, to: 4 }, oif: 3 })],
  ['addr-add-metric.req.txt', () => A.addAddrRequest(3, '10.7.0.1/24', { broadcast: false, metric: 20 })],
  ['rule-add-l4.req.txt', () => RU.addRuleRequest({ priority: 500, uidRange: { start: 100, end: 200 }, ipProto: 'tcp', sport: { start: 1000, end: 2000 }, dport: 80, table: 100 })],
];

for (const [file, build, acked] of requests) {
  test(`encoder matches iproute2: ${file}`, () => {
    assert.fixture(rows(wire(build(), acked ?? true)), rows(fixture(file)));
  });
}

test('flags and kind options are checked before anything is sent', () => {
  assert.is(catchError(() => LS.setFlagsRequest(3, {})).field, 'flags');
  assert.is(catchError(() => LS.setFlagsRequest(3, { noisy: true } as never)).field, 'flags');
  assert.is(catchError(() => LS.setFlagsRequest(3, { promisc: 1 as never })).field, 'flags.promisc');
  assert.equal(decodePayload(linkMessage, wire(LS.setFlagsRequest(3, { up: false, arp: true })).subarray(16)).header, { family: 0, pad: 0, type: 0, index: 3, flags: 0, change: 0x81 });
  assert.is(catchError(() => LS.setKindOptionsRequest(3, 'vxlan', {})).field, 'options');
  assert.is(catchError(() => LS.setKindOptionsRequest(3, 'nosuchkind', { x: 1 })).field, 'kind');
  // A named underlay is looked up like any link (the request waits for Rtnl to resolve it).
  assert.equal(LS.setKindOptionsRequest(4, 'vxlan', { link: 'd0' }).pending, ['d0']);
});

test('ip route get: the answer decodes to a route (a clone, with uid), and re-encodes to its bytes', () => {
  const [v4] = msgs('route-get.reply.txt', RTM.NEWROUTE);
  const r = R.decodeRoute(v4!);
  assert.equal([r.dst, r.oif, r.prefsrc, r.table, r.uid, (r.flags & R.RTM_F.CLONED) !== 0], ['10.2.0.9/32', 2, '10.2.0.1', 254, 0, true]);
  const [v6] = msgs('route-get6.reply.txt', RTM.NEWROUTE);
  const r6 = R.decodeRoute(v6!);
  assert.equal([r6.family, r6.dst, r6.oif, r6.prefsrc], [6, 'fd00:2::9/128', 2, 'fd00:2::1']);
  for (const m of [v4!, v6!]) assert.is(reencode(R.routeMessage, m, decodePayload(R.routeMessage, m.payload)).subarray(16).toString('hex'), m.payload.toString('hex'));
  // A route's `raw` is built from its bytes on first access (as a Link's): the same tree, the same
  // bytes again, even once the datagram's other messages were decoded; JSON shows the fields only.
  for (const m of [v4!, v6!]) {
    const route = R.decodeRoute(m);
    assert.equal(route.raw, decodePayload(R.routeMessage, m.payload));
    assert.is(reencode(R.routeMessage, m, route.raw).subarray(16).toString('hex'), m.payload.toString('hex'));
    assert.is(route.raw, route.raw, 'decoded once');
    assert.not.ok('raw' in JSON.parse(JSON.stringify(route)));
  }
});

test('Rtnl.routeGet sends the request without NLM_F_ACK, resolves names, returns the route; a refusal is its NetlinkError', () => {
  const [answer] = msgs('route-get.reply.txt', RTM.NEWROUTE);
  const sent: RawMessage[] = [];
  const rt = new Rtnl(
    dial((req) => {
      sent.push(req);
      if (req.type === RTM.GETLINK) return [reply(req, RTM.NEWLINK, (() => { const b = Buffer.from(encode(L.addLinkRequest('d1', 'ifb')).subarray(16)); b.writeInt32LE(2, 4); return b; })()), ack(req)];
      if (req.payload.readUInt8(0) === 2 && req.payload.subarray(12).includes(Buffer.from([10, 9, 9, 9]))) return [ack(req, 101, { message: 'no route' })];
      return [reply(req, RTM.NEWROUTE, answer!.payload)];
    }),
  );
  const r = rt.routeGet({ dst: '10.2.0.9', oif: 'd1' });
  assert.is(r.prefsrc, '10.2.0.1');
  const get = sent.find((m) => m.type === RTM.GETROUTE)!;
  assert.is(get.flags, NLM_F.REQUEST);
  assert.is(decodePayload(R.routeMessage, get.payload).attrs.oif, 2);
  const e = catchError(() => rt.routeGet({ dst: '10.9.9.9' }));
  assert.equal([e.code, e.kernelMessage], ['ENETUNREACH', 'no route']);
});

test('link counters: the 25 of rtnl_link_stats64, the 32-bit IFLA_STATS when that is all there is, a longer struct kept whole', () => {
  const links = msgs('link-dump.reply.txt', RTM.NEWLINK).map(L.decodeLink);
  const lo = links.find((l) => l.name === 'lo')!;
  assert.equal(Object.keys(lo.stats ?? {}), [...LINK_STATS_FIELDS]);
  assert.ok(lo.stats!.rxPackets === lo.stats!.txPackets && lo.stats!.rxBytes === lo.stats!.txBytes, 'loopback receives what it sends');
  // A kernel that sent only IFLA_STATS: the same counters, from 32 bits.
  const only32 = request(linkMessage, RTM.NEWLINK, 0, { index: 7 }, { ifname: 'x', stats: { rxPackets: 5n, txPackets: 6n, rxBytes: 7n } });
  const l = L.decodeLink({ len: 0, type: RTM.NEWLINK, flags: 0, seq: 0, pid: 0, payload: encode(only32).subarray(16) });
  assert.equal(l.stats, { rxPackets: 5n, txPackets: 6n, rxBytes: 7n });
  // 26 counters (a newer kernel's addition) and a stray byte: decoded as far as known, re-encoded whole.
  const long = Buffer.alloc(26 * 8 + 1, 1);
  const s = linkStats64.read(long, 0, long.length);
  assert.equal([s.rxOtherhostDropped, s[TAIL]?.length], [0x0101010101010101n, 9]);
  const out = Buffer.alloc(linkStats64.size(s));
  linkStats64.write(out, 0, s);
  assert.ok(out.equals(long));
  assert.is(linkStats32.read(Buffer.alloc(6), 0, 6).rxPackets, 0n);
});

test('decoded objects keep fast properties: a link\'s attribute tree, nested sets and counters, the Link view, a struct of 60 fields', () => {
  // V8 turns an object with more than a dozen out-of-object properties into a dictionary when
  // one more property is added with a computed key; the attribute reader once added its wire
  // record's symbols last, and every decoded link paid for it (the largest cost of its decode). Checked in a
  // child with V8's natives syntax, on the captured dump's links.
  const script = `
    const { readFileSync } = await import('node:fs');
    const { splitMessages, decodePayload } = await import(${JSON.stringify(new URL('../../src/netlink/core/message.js', import.meta.url).href)});
    const { parseHexFixture } = await import(${JSON.stringify(new URL('../../src/netlink/core/testing.js', import.meta.url).href)});
    const { linkMessage } = await import(${JSON.stringify(new URL('../../src/netlink/route/schemas.js', import.meta.url).href)});
    const { decodeLink } = await import(${JSON.stringify(new URL('../../src/netlink/route/link.js', import.meta.url).href)});
    const { decodeState } = await import(${JSON.stringify(new URL('../../src/netlink/xfrm/xfrm-state.js', import.meta.url).href)});
    const out = [];
    for (const m of splitMessages(parseHexFixture(readFileSync(${JSON.stringify(dir + 'link-dump.reply.txt')}, 'utf8')))) {
      if (m.type !== ${RTM.NEWLINK}) continue;
      const { attrs } = decodePayload(linkMessage, m.payload);
      const link = decodeLink(m);
      const objects = [['attrs', attrs], ['stats64', attrs.stats64], ['stats', attrs.stats], ['afSpec.inet6', attrs.afSpec?.inet6], ['Link', link]];
      for (const [name, o] of objects) if (o !== undefined) out.push([attrs.ifname, name, Object.keys(o).length, %HasFastProperties(o)]);
    }
    // A struct of many fields (struct xfrm_usersa_info, 60-odd) is one literal too.
    for (const m of splitMessages(parseHexFixture(readFileSync(${JSON.stringify(dir + 'xfrm-state-dump.reply.txt')}, 'utf8')))) {
      if (m.type < 16) continue;
      const header = decodeState(m).raw.header;
      out.push(['xfrm', 'state header', Object.keys(header).length, %HasFastProperties(header)]);
    }
    console.log(JSON.stringify(out));`;
  const r = spawnSync(process.execPath, ['--allow-natives-syntax', '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  const seen = JSON.parse(r.stdout) as [string, string, number, boolean][];
  assert.ok(seen.some(([, name, keys]) => name === 'attrs' && keys > 30), 'links with over 30 attributes were checked');
  assert.ok(seen.some(([, name, keys]) => name === 'state header' && keys > 40), 'an xfrm state header was checked');
  assert.equal(seen.filter(([, , , fast]) => !fast), [], 'objects in dictionary mode');
});

test('link fields that were only in raw: qdisc, promiscuity, allmulti, queues, MTU range, GSO/GRO/TSO limits; vxlan label policy and reserved bits', () => {
  const links = msgs('link-dump-kinds.reply.txt', RTM.NEWLINK).map(L.decodeLink);
  const d0 = links.find((l) => l.name === 'd0')!;
  const fields = ['qdisc', 'promiscuity', 'allmulti', 'numTxQueues', 'numRxQueues', 'minMtu', 'maxMtu', 'gsoMaxSize', 'gsoMaxSegs', 'groMaxSize', 'tsoMaxSize', 'tsoMaxSegs'] as const;
  for (const f of fields) assert.ok(d0[f] !== undefined && d0[f] === d0.raw.attrs[f], f);
  assert.equal([d0.qdisc, d0.promiscuity, d0.allmulti, d0.minMtu, d0.maxMtu, d0.gsoMaxSize, d0.tsoMaxSize], ['noqueue', 0, 0, 68, 65535, 65536, 524280]);
  const vx = links.find((l) => l.kind === 'vxlan')!;
  assert.equal([vx.options?.['labelPolicy'], vx.options?.['reservedBits'], vx.options?.['unknown']], ['fixed', { flags: 0xf7ffffff, vni: 0xff }, undefined]);
  for (const m of msgs('link-dump-kinds.reply.txt', RTM.NEWLINK)) assert.is(reencode(linkMessage, m, decodePayload(linkMessage, m.payload)).subarray(16).toString('hex'), m.payload.toString('hex'));
});

test('address metric, route realms, rule ipproto/sport/dport/uidrange decoded from the kernel', () => {
  const a = msgs('addr-dump-metric.reply.txt', RTM.NEWADDR).map(A.decodeAddress).find((x) => x.address === '10.7.0.1')!;
  assert.is(a.metric, 20);
  const routes = msgs('route-dump-realms.reply.txt', RTM.NEWROUTE).map(R.decodeRoute);
  assert.equal(routes.filter((r) => r.realms).map((r) => [r.dst, r.realms]), [['10.11.0.0/24', { from: 3, to: 4 }], ['10.12.0.0/24', { from: 0, to: 5 }]]);
  const rule = msgs('rule-dump-l4.reply.txt', RTM.NEWRULE).map(RU.decodeRule).find((r) => r.priority === 500)!;
  assert.equal([rule.ipProto, rule.sport, rule.dport, rule.uidRange, rule.table], [6, { start: 1000, end: 2000 }, { start: 80, end: 80 }, { start: 100, end: 200 }, 100]);
  assert.is(catchError(() => RU.addRuleRequest({ sport: { start: 9, end: 8 } })).field, 'sport');
  assert.is(catchError(() => RU.addRuleRequest({ ipProto: 'gre' as never })).field, 'ipProto');
});

test.run();
