/**
 * The promise API (Rtnl.promises) against its synchronous twin on the fake kernel: for every
 * operation (the list is read from RtnlOps, so a new one without a case here fails), the same
 * bytes on the wire, the same result and the same typed error; and many concurrent calls on one
 * handle, some failing, each settled with its own answer.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ack, dial, dumpReply, parseHexFixture, reply, type Handler } from '../../src/netlink/core/testing.js';
import { splitMessages } from '../../src/netlink/core/message.js';
import { plain, wire } from '../twins.js';
import { NLM_F, RTM } from '../../src/netlink/core/constants.js';
import { Rtnl, RtnlPromises, RTNL_OPERATIONS } from '../../src/netlink/route/rtnl.js';
import * as L from '../../src/netlink/route/link.js';
import { NetlinkError, ValidationError } from '../../src/errors.js';

const dir = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));

/** Every message of every captured reply, by type: the fake kernel answers a GET with these. */
const captured = new Map<number, Buffer[]>();
// Replies of GET requests first: a single GET is answered with the first body of its type.
const files = readdirSync(dir).filter((n) => n.endsWith('.reply.txt') && !n.includes('.rust.'));
for (const f of [...files.filter((n) => n.includes('-get')), ...files.filter((n) => !n.includes('-get'))]) {
  for (const m of splitMessages(parseHexFixture(readFileSync(dir + f, 'utf8')))) {
    if (m.type < RTM.NEWLINK || m.type > 127) continue;
    captured.set(m.type, [...(captured.get(m.type) ?? []), Buffer.from(m.payload)]);
  }
}

/**
 * A kernel that answers like rtnetlink: a GET with captured objects of its type (rtnetlink's
 * NEW type is GET - 2), as a dump or a single reply; anything else with an ack.
 */
const kernel: Handler = (req) => {
  if (req.type % 4 !== 2 || req.type < RTM.NEWLINK) return [ack(req)];
  const bodies = captured.get(req.type - 2) ?? [];
  if ((req.flags & NLM_F.DUMP) === NLM_F.DUMP) return dumpReply(req, req.type - 2, bodies, { perDatagram: 3 });
  const out = bodies[0] ? [reply(req, req.type - 2, bodies[0])] : [];
  return (req.flags & NLM_F.ACK) !== 0 ? [...out, ack(req)] : out;
};
/** A kernel that refuses everything, with an extended-ack message. */
const refusing: Handler = (req) => [ack(req, 19, { message: 'fake: no such device', offset: 20 })];

type Operation = Exclude<keyof Rtnl, 'socket' | 'ops' | 'promises' | 'close' | 'batchAsync'>;
/** Arguments for each operation: the test fails when an operation has none here. */
const ARGS: { [K in Operation]: () => Parameters<Rtnl[K]> } = {
  actionAdd: () => [[{ kind: 'gact', verdict: 'drop', index: 5 }]],
  actionDel: () => [[{ kind: 'gact', index: 5 }]],
  actionList: () => ['mirred'],
  actionReplace: () => [[{ kind: 'gact', verdict: 'pass', index: 5 }]],
  addrAdd: () => ['eth0', '10.1.0.1/24'],
  addrDel: () => ['eth0', '10.1.0.1/24'],
  addrList: () => [{ link: 'eth0', family: 4 }],
  addrReplace: () => [3, 'fd00::1/64', { nodad: true }],
  batch: () => [[L.setUpRequest('eth0'), L.deleteRequest(7)]],
  batchOrThrow: () => [[L.setUpRequest(3)]],
  classAdd: () => [{ dev: 'ifb0', parent: '1:', classid: '1:10', kind: 'htb', htb: { rate: '2mbit', ceil: '3mbit' } }],
  classChange: () => [{ dev: 'ifb0', parent: '1:', classid: '1:10', kind: 'htb', htb: { rate: '1mbit' } }],
  classDel: () => [{ dev: 'ifb0', parent: '1:', classid: '1:10' }],
  classList: () => ['ifb0'],
  classReplace: () => [{ dev: 4, parent: '1:', classid: '1:10', kind: 'htb', htb: { rate: '2mbit' } }],
  fdbAdd: () => [{ lladdr: '02:00:00:00:00:01', link: 'vx0', dst: '192.0.2.1' }],
  fdbAppend: () => [{ lladdr: '00:00:00:00:00:00', link: 'vx0', dst: '192.0.2.2' }],
  fdbDel: () => [{ lladdr: '02:00:00:00:00:01', link: 'vx0' }],
  fdbList: () => [{ master: 'br0' }],
  filterAdd: () => [{ dev: 'h0', parent: 'ffff:', protocol: 'all', priority: 1, u32: { classid: '1:1', actions: [{ kind: 'mirred', action: 'egress-redirect', dev: 'ifb0' }] } }],
  filterChange: () => [{ dev: 'h0', parent: 'ffff:', protocol: 'all', priority: 1, handle: 1, matchall: { classid: '1:1' } }],
  filterDel: () => [{ dev: 'h0', parent: 'ffff:', priority: 1 }],
  filterList: () => ['h0', 'ffff:'],
  filterReplace: () => [{ dev: 'h0', parent: 'ffff:', protocol: 'ip', priority: 2, matchall: {} }],
  linkAdd: () => ['vx0', 'vxlan', { id: 42, port: 4789 }],
  linkAddAltname: () => ['eth0', 'uplink'],
  linkAddBridge: () => ['br0', { up: true }],
  linkAddVeth: () => ['v0', { name: 'v1' }, { up: true }],
  linkDel: () => ['v0'],
  linkDelAltname: () => ['eth0', 'uplink'],
  linkDelGroup: () => [9],
  linkGet: () => ['eth0'],
  linkIndex: () => ['eth0'],
  linkList: () => [{ master: 'br0' }],
  linkSetAddrGenMode: () => ['v0', 'none'],
  linkSetAlias: () => ['v0', 'an alias'],
  linkSetBridgePort: () => ['v0', { learning: 0, isolated: 1 }],
  linkSetDown: () => ['v0'],
  linkSetFlags: () => ['v0', { promisc: true, arp: false }],
  linkSetGroup: () => ['v0', 9],
  linkSetHairpin: () => ['v0', true],
  linkSetMac: () => ['v0', '02:00:00:00:00:09'],
  linkSetMaster: () => ['v0', 'br0'],
  linkSetMtu: () => ['v0', 1400],
  linkSetName: () => ['v0', 'v9'],
  linkSetNoMaster: () => ['v0'],
  linkSetNsFd: () => ['v0', 3],
  linkSetNsPid: () => ['v0', 1],
  linkSetOptions: () => ['vx0', 'vxlan', { ttl: 10 }],
  linkSetTxqlen: () => ['v0', 500],
  linkSetUp: () => ['v0'],
  mplsRouteAdd: () => [{ label: 100, newdst: [200], via: '10.1.0.5', oif: 'd0' }],
  mplsRouteDel: () => [{ label: 100 }],
  neighAdd: () => [{ dst: '10.1.0.20', lladdr: '02:00:00:00:00:20', link: 'd0' }],
  neighDel: () => [{ dst: '10.1.0.20', link: 'd0' }],
  neighList: () => [{ family: 4, link: 'd0' }],
  neighReplace: () => [{ dst: 'fd00:1::20', lladdr: '02:00:00:00:00:21', link: 'd0', router: true }],
  nexthopAdd: () => [{ id: 7, gateway: '10.1.0.5', oif: 'd0' }],
  nexthopDel: () => [7],
  nexthopList: () => [],
  nexthopReplace: () => [{ id: 9, group: [{ id: 7, weight: 2 }] }],
  nsidGet: () => [{ pid: 1 }],
  nsidList: () => [],
  nsidSet: () => [{ pid: 1 }, 7],
  qdiscAdd: () => [{ dev: 'veth0', handle: '1:', kind: 'tbf', tbf: { rate: '4mbit', burst: '32kb', latency: '50ms' } }],
  qdiscChange: () => [{ dev: 'veth0', handle: '1:', kind: 'netem', netem: { delay: '50ms' } }],
  qdiscDel: () => [{ dev: 'veth0', kind: 'ingress' }],
  qdiscList: () => [{ dev: 'veth0' }],
  qdiscReplace: () => [{ dev: 3, kind: 'fq_codel' }],
  request: () => [L.setMtuRequest('eth0', 1300)],
  resolve: () => [[L.setUpRequest('eth0'), L.setMasterRequest('v0', 'br0')]],
  routeAdd: () => [{ dst: '10.6.0.0/24', gateway: '10.1.0.5', oif: 'd0', metrics: { mtu: 1300 } }],
  routeAppend: () => [{ dst: '10.6.0.0/24', gateway: '10.1.0.6' }],
  routeDel: () => [{ dst: '10.6.0.0/24' }],
  routeGet: () => [{ dst: '10.2.0.9', oif: 'd1' }],
  routeList: () => [{ family: 4, table: 0, oif: 'd0' }],
  routeReplace: () => [{ dst: 'fd00:9::/64', gateway: 'fd00:1::5', oif: 'd0' }],
  ruleAdd: () => [{ priority: 100, src: '10.1.0.0/24', table: 100 }],
  ruleDel: () => [{ priority: 100 }],
  ruleList: () => [{ family: 6 }],
  // An invalid name fails before any ioctl: the unit tests never make a device.
  tuntapAdd: () => ['a-name-longer-than-ifnamsiz', { mode: 'tap' }],
};

async function both(name: Operation, handler: Handler): Promise<{ sync: unknown; async: unknown; syncWire: string[]; asyncWire: string[] }> {
  const a = dial(handler);
  const b = dial(handler);
  const call = (o: object): unknown => (o as Record<string, (...x: unknown[]) => unknown>)[name]!(...(ARGS[name]() as unknown[]));
  let sync: unknown;
  try {
    sync = { value: call(new Rtnl(a)) };
  } catch (e) {
    sync = { error: e };
  }
  let async: unknown;
  try {
    async = { value: await call(new Rtnl(b).promises) };
  } catch (e) {
    async = { error: e };
  }
  return { sync, async, syncWire: wire(a.transport.sent), asyncWire: wire(b.transport.sent) };
}

test('every operation has a case here, and both forms on Rtnl and RtnlPromises', () => {
  assert.equal(Object.keys(ARGS).sort(), [...RTNL_OPERATIONS]);
  assert.ok(RTNL_OPERATIONS.length >= 80, `${RTNL_OPERATIONS.length} operations`);
  for (const n of RTNL_OPERATIONS) {
    assert.type((Rtnl.prototype as unknown as Record<string, unknown>)[n], 'function', n);
    assert.type((RtnlPromises.prototype as unknown as Record<string, unknown>)[n], 'function', n);
  }
});

for (const name of Object.keys(ARGS) as Operation[]) {
  test(`${name}: the promise form sends the same bytes and returns the same result`, async () => {
    const r = await both(name, kernel);
    assert.equal(r.asyncWire, r.syncWire);
    assert.equal(plain(r.async), plain(r.sync));
    // The cases above are valid calls: only tuntapAdd's (an invalid name, never sent) fails.
    if (name === 'tuntapAdd') assert.instance((r.sync as { error: unknown }).error, ValidationError);
    else assert.ok('value' in (r.sync as object), `${name} failed: ${String((r.sync as { error?: unknown }).error)}`);
  });
  test(`${name}: the promise form rejects with the error the sync form throws`, async () => {
    const r = await both(name, refusing);
    assert.equal(r.asyncWire, r.syncWire);
    assert.equal(plain(r.async), plain(r.sync));
    const e = (r.async as { error?: unknown }).error;
    if (name === 'tuntapAdd') assert.instance(e, ValidationError);
    else if (name !== 'batch' && name !== 'resolve' && name !== 'linkIndex' || e) assert.instance(e, NetlinkError, name);
  });
}

test('100 concurrent calls on one handle, every third refused: each settles with its own answer', async () => {
  const k = dial((req) => {
    const idx = req.payload.readInt32LE(4);
    return [ack(req, idx % 3 === 0 ? 17 : 0, idx % 3 === 0 ? { message: `refused ${idx}` } : {})];
  });
  const rt = new Rtnl(k).promises;
  const calls = Array.from({ length: 100 }, (_, i) => rt.linkSetMtu(i + 1, 1000 + i));
  const settled = await Promise.allSettled(calls);
  settled.forEach((s, i) => {
    const idx = i + 1;
    if (idx % 3 === 0) {
      assert.is(s.status, 'rejected', `call ${idx}`);
      const e = (s as PromiseRejectedResult).reason as NetlinkError;
      assert.instance(e, NetlinkError);
      assert.is(e.code, 'EEXIST');
      assert.ok(e.message.includes(`refused ${idx}`), e.message);
      assert.ok(e.message.includes(`${idx}`), 'names its own link');
    } else assert.is(s.status, 'fulfilled', `call ${idx}`);
  });
  // Pipelined: the requests went out in order, 32 at most per sendto.
  assert.equal(k.transport.sent.map((m) => m.payload.readInt32LE(4)), Array.from({ length: 100 }, (_, i) => i + 1));
});

test('concurrent mixed operations (lookups, dumps, changes) each get their own replies', async () => {
  const k = dial(kernel);
  const sync = new Rtnl(dial(kernel));
  const rt = new Rtnl(k).promises;
  const want = { links: plain(sync.linkList()), link: plain(sync.linkGet('eth0')), routes: plain(sync.routeList({ table: 0 })), addrs: plain(sync.addrList()) };
  const jobs: Promise<[string, unknown]>[] = [];
  for (let i = 0; i < 25; i++) {
    jobs.push(rt.linkList().then((v) => ['links', plain(v)]));
    jobs.push(rt.linkGet('eth0').then((v) => ['link', plain(v)]));
    jobs.push(rt.routeList({ table: 0 }).then((v) => ['routes', plain(v)]));
    jobs.push(rt.addrList().then((v) => ['addrs', plain(v)]));
  }
  for (const [what, got] of await Promise.all(jobs)) assert.equal(got, want[what as keyof typeof want], what);
});

test('the synchronous form refuses to run while promises are in flight, and runs after', async () => {
  const rt = new Rtnl(dial(kernel));
  const p = rt.promises.linkSetUp(3);
  assert.instance(catchSync(() => rt.linkSetUp(3)), ValidationError);
  await p;
  rt.linkSetUp(3);
});

test('a timeout rejects the calls waiting on it with TimeoutError, and later calls still work', async () => {
  let silent = true;
  const rt = new Rtnl(dial((req) => (silent ? [] : [ack(req)]))).promises;
  const e = await rt.linkSetUp(3).catch((x: unknown) => x);
  assert.is((e as { code?: string }).code, 'ETIMEDOUT');
  silent = false;
  await rt.linkSetUp(3);
});

test('close() with calls in flight closes once they have settled', async () => {
  const k = dial(kernel);
  const rt = new Rtnl(k);
  const p = rt.promises.linkList();
  rt.close();
  assert.not.ok(k.transport.closed);
  assert.ok((await p).length > 0);
  assert.ok(k.transport.closed);
});

function catchSync(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}

test.run();
