/**
 * End-to-end: the netlink core against the real kernel, inside the sandbox netns that
 * scripts/test.mjs gives this file. Every state change is read back twice: with our own
 * dumps and with `ip -j` as an independent oracle; traffic proves the wiring.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import {
  Rtnl,
  createNamedNetns,
  deleteNamedNetns,
  openNetns,
  openRtnlIn,
  withNetns,
  currentNetns,
  spawnInNetns,
  spawnSyncInNetns,
  linkRequests,
  addrRequests,
  routeRequests,
  NetlinkError,
  ValidationError,
  SysError,
  type NetnsHandle,
} from '../../src/index.js';
import net from 'node:net';
import { catchError, ipJson, leakGuard, withoutFallbackTunnels, probeTcp, tcpGet, threadNetnsIno, stop } from '../helpers.js';
import { until } from './lib.js';

let rt: Rtnl;
let guard: ReturnType<typeof leakGuard>;

test.before.each(() => {
  guard = leakGuard();
  rt = Rtnl.open();
});
// uvu swallows errors thrown by after.each hooks, so leaks are collected and asserted by the last test.
const leaks: string[] = [];
test.after.each((ctx) => {
  rt.close();
  try {
    guard.check();
  } catch (e) {
    leaks.push(`${(ctx as { __test__?: string }).__test__}: ${(e as Error).message}`);
  }
});

function withContainer<T>(name: string, fn: (ns: NetnsHandle, c: Rtnl) => T): T {
  const ns = createNamedNetns(name);
  const c = openRtnlIn(ns);
  try {
    return fn(ns, c);
  } finally {
    c.close();
    ns.close();
    deleteNamedNetns(name);
  }
}

test('bridge + veth with peer created in a second netns, attached, addressed, routed; traffic flows', async () => {
  const br = rt.linkAddBridge('tbr0', { up: true });
  assert.is(br.kind, 'bridge');
  rt.addrAdd(br.index, '192.168.10.1/24');
  const ns = createNamedNetns('c1');
  const c = openRtnlIn(ns);
  try {
    const host = rt.linkAddVeth('vh0', { name: 'eth0', netnsFd: ns.fd }, { master: br.index, up: true });
    assert.is(host.kind, 'veth');
    assert.is(host.master, br.index);
    assert.ok(host.peerIndex, 'peer ifindex reported');
    const res = c.batchOrThrow([
      linkRequests.setUpRequest('lo'),
      linkRequests.setUpRequest(host.peerIndex!),
      addrRequests.addAddrRequest(host.peerIndex!, '192.168.10.2/24'),
      routeRequests.addRouteRequest({ gateway: '192.168.10.1', oif: host.peerIndex! }),
    ]);
    assert.is(res.length, 4);

    // Our own view.
    const inside = c.linkList();
    const eth0 = inside.find((l) => l.name === 'eth0');
    assert.ok(eth0);
    assert.is(eth0!.index, host.peerIndex);
    assert.ok(eth0!.up);
    assert.ok(inside.find((l) => l.name === 'lo')?.up);
    assert.equal(c.addrList({ family: 4, link: 'eth0' }).map((a) => [a.cidr, a.broadcast]), [['192.168.10.2/24', '192.168.10.255']]);
    const def = c.routeList({ family: 4 }).find((r) => r.dst === 'default');
    assert.is(def?.gateway, '192.168.10.1');
    assert.is(def?.oif, eth0!.index);
    assert.equal(rt.linkList({ master: 'tbr0' }).map((l) => l.name), ['vh0']);

    // iproute2's view (independent oracle).
    const j = ipJson(['-d', 'link', 'show', 'vh0'])[0];
    assert.is(j.master, 'tbr0');
    assert.is(j.linkinfo.info_kind, 'veth');
    assert.ok(j.flags.includes('UP'));
    const ja = ipJson(['-4', 'addr', 'show', 'eth0'], 'c1')[0];
    assert.is(ja.addr_info[0].local, '192.168.10.2');
    assert.is(ja.addr_info[0].prefixlen, 24);
    assert.is(ja.addr_info[0].broadcast, '192.168.10.255');
    const jr = ipJson(['route', 'show', 'default'], 'c1')[0];
    assert.is(jr.gateway, '192.168.10.1');
    assert.is(jr.dev, 'eth0');
    assert.ok(ipJson(['link', 'show', 'lo'], 'c1')[0].flags.includes('UP'));

    // Traffic both ways: host -> container server, container -> host server. Both servers and the
    // container's client are this process's own: listen() and probeTcp make their sockets inside
    // the right netns, and each reply names the address the server saw, so a socket left in the
    // wrong netns would show.
    const server = withNetns(ns, () => net.createServer((s) => s.end(`hello from=${s.remoteAddress?.replace('::ffff:', '')}`)).listen(8080));
    try {
      assert.is(await tcpGet('192.168.10.2', 8080), 'hello from=192.168.10.1');
    } finally {
      // Closed once its last connection has: no socket of the test outlives it (the leak guard).
      await new Promise((r) => server.close(r));
    }
    const hostServer = net.createServer((s) => s.end(`hi from=${s.remoteAddress?.replace('::ffff:', '')}`)).listen(8081, '0.0.0.0');
    try {
      await new Promise((r) => hostServer.once('listening', r));
      assert.is(await probeTcp(ns, '192.168.10.1', 8081, 3000), 'hi from=192.168.10.2');
    } finally {
      await new Promise((r) => hostServer.close(r));
    }
  } finally {
    c.close();
    ns.close();
    deleteNamedNetns('c1');
    rt.linkDel('tbr0');
  }
  // The kernel dismantles a netns after an RCU grace period, not within deleteNamedNetns: the host
  // end goes with it soon after, which is the event to wait for (bounded, not a fixed sleep).
  await until('the veth to go away with its netns', () => ipJson(['link', 'show', 'type', 'veth']).length === 0, 5000);
});

let hostNs: NetnsHandle;
test.before(() => {
  hostNs = currentNetns();
});
test.after(() => hostNs.close());
function currentNetnsHandle(): NetnsHandle {
  return hostNs;
}

test('link setters: name, mtu, mac, down/up, nomaster, hairpin, move by fd and by pid', () => {
  const br = rt.linkAddBridge('tbr1');
  const v = rt.linkAddVeth('va', { name: 'vb' }, { master: br.index });
  rt.linkSetMtu('va', 1400);
  rt.linkSetMac('va', '02:00:00:00:00:aa');
  rt.linkSetHairpin('va', true);
  let l = rt.linkGet('va');
  assert.is(l.mtu, 1400);
  assert.is(l.mac, '02:00:00:00:00:aa');
  assert.is(l.hairpin, true);
  assert.is(ipJson(['-d', 'link', 'show', 'va'])[0].linkinfo.info_slave_data.hairpin, true);
  rt.linkSetHairpin('va', false);
  assert.is(rt.linkGet('va').hairpin, false);
  rt.linkSetNoMaster('va');
  assert.is(rt.linkGet('va').master, undefined);
  assert.is(ipJson(['link', 'show', 'va'])[0].master, undefined);
  rt.linkSetName(v.index, 'vrenamed');
  assert.is(rt.linkGet(v.index).name, 'vrenamed');
  rt.linkSetUp('vrenamed');
  assert.ok(rt.linkGet('vrenamed').up);
  rt.linkSetDown('vrenamed');
  assert.not.ok(rt.linkGet('vrenamed').up);
  withContainer('c2', (ns, c) => {
    rt.linkSetNsFd('vb', ns.fd);
    assert.ok(c.linkGet('vb'));
    assert.is(ipJson(['link', 'show', 'vb'], 'c2')[0].ifname, 'vb');
    const err = catchError(() => rt.linkGet('vb'));
    assert.is(err.code, 'ENODEV');
  });
  rt.linkDel('vrenamed');
  rt.linkDel('tbr1');
});

test('move a link into a netns by pid', async () => {
  const ns = createNamedNetns('c3');
  try {
    const sleeper = spawnInNetns(ns, 'sleep', ['30']);
    try {
      rt.linkAddVeth('vp1', { name: 'vp2' });
      rt.linkSetNsPid('vp2', sleeper.pid!);
      assert.is(ipJson(['link', 'show', 'vp2'], 'c3')[0].ifname, 'vp2');
      const byPid = openNetns({ pid: sleeper.pid! });
      try {
        assert.ok(byPid.equals(ns), 'netns by pid equals netns by name');
        assert.not.ok(byPid.equals(currentNetnsHandle()));
      } finally {
        byPid.close();
      }
    } finally {
      await stop(sleeper);
    }
    rt.linkDel('vp1');
  } finally {
    ns.close();
    deleteNamedNetns('c3');
  }
});

test('IPv6 address with nodad, replace and delete; routes add/replace/del with table, onlink and scope', () => {
  const v = rt.linkAddVeth('v6a', { name: 'v6b' }, { up: true });
  rt.linkSetUp('v6b');
  rt.addrAdd('v6a', 'fd00:10::2/64', { nodad: true });
  const a6 = rt.addrList({ family: 6, link: 'v6a' }).find((a) => a.address === 'fd00:10::2');
  assert.ok(a6);
  assert.ok((a6!.flags & 0x02) !== 0, 'IFA_F_NODAD set');
  const j6 = ipJson(['-6', 'addr', 'show', 'v6a'])[0].addr_info.find((x: any) => x.local === 'fd00:10::2');
  assert.is(j6.nodad, true, 'iproute2 sees nodad');
  assert.is(j6.tentative, undefined, 'usable at once, not tentative');
  rt.addrAdd('v6a', '10.9.0.2/24');
  const e = catchError(() => rt.addrAdd('v6a', '10.9.0.2/24'));
  assert.instance(e, NetlinkError);
  assert.is(e.code, 'EEXIST');
  assert.is(e.errno, -17);
  assert.is(e.operation, 'RTM_NEWADDR');
  assert.is(e.kernelMessage, 'ipv4: Address already assigned');
  rt.addrReplace('v6a', '10.9.0.2/24');
  rt.routeAdd({ dst: '10.50.0.0/16', gateway: '10.9.0.1', oif: v.index });
  rt.routeAdd({ dst: '10.60.0.0/16', gateway: '10.9.0.1', oif: v.index, table: 1000 });
  rt.routeAdd({ dst: '10.70.0.0/16', gateway: '172.31.0.1', oif: v.index, onlink: true });
  rt.routeAdd({ dst: 'fd00:20::/64', gateway: 'fd00:10::1', oif: v.index });
  rt.routeReplace({ dst: '10.50.0.0/16', gateway: '10.9.0.254', oif: v.index });
  const main = rt.routeList({ family: 4 });
  assert.is(main.find((r) => r.dst === '10.50.0.0/16')?.gateway, '10.9.0.254');
  assert.is(rt.routeList({ family: 4, table: 1000 })[0]?.dst, '10.60.0.0/16');
  assert.is(ipJson(['route', 'show', 'table', '1000'])[0].dst, '10.60.0.0/16');
  assert.ok(ipJson(['route', 'show', '10.70.0.0/16'])[0].flags.includes('onlink'));
  assert.is(ipJson(['-6', 'route', 'show', 'fd00:20::/64'])[0].gateway, 'fd00:10::1');
  rt.routeDel({ dst: '10.50.0.0/16' });
  assert.is(ipJson(['route', 'show', '10.50.0.0/16']).length, 0);
  const gone = catchError(() => rt.routeDel({ dst: '10.50.0.0/16' }));
  assert.is(gone.code, 'ESRCH');
  rt.addrDel('v6a', '10.9.0.2/24');
  assert.is(ipJson(['-4', 'addr', 'show', 'v6a'])[0]?.addr_info?.length ?? 0, 0);
  rt.linkDel('v6a');
});

test('route via a gateway before the address is on the link: ENETUNREACH with the kernel message', () => {
  const v = rt.linkAddVeth('vr1', { name: 'vr2' }, { up: true });
  const e = catchError(() => rt.routeAdd({ gateway: '10.77.0.1', oif: v.index }));
  assert.instance(e, NetlinkError);
  assert.is(e.code, 'ENETUNREACH');
  assert.ok(e.kernelMessage, 'kernel explains');
  rt.linkDel('vr1');
});

test('typed errors: EEXIST, ENODEV, invalid names refused before the kernel, missing netns', () => {
  rt.linkAddBridge('tbr2');
  const exists = catchError(() => rt.linkAddBridge('tbr2'));
  assert.instance(exists, NetlinkError);
  assert.is(exists.code, 'EEXIST');
  assert.is(exists.operation, 'RTM_NEWLINK');
  const nodev = catchError(() => rt.linkSetUp('nosuchdev'));
  assert.instance(nodev, NetlinkError);
  assert.is(nodev.code, 'ENODEV');
  assert.is(catchError(() => rt.linkGet(4242)).code, 'ENODEV');
  const master = catchError(() => rt.linkSetMaster('tbr2', 'nobridge'));
  assert.is(master.code, 'ENODEV', 'unknown master is an error, never index 0');
  const before = ipJson(['link', 'show']).length;
  for (const bad of ['', 'a'.repeat(16), 'a/b', 'a:b', 'a b', '.', '..', 'tab\tx']) {
    const v = catchError(() => rt.linkAddBridge(bad));
    assert.instance(v, ValidationError, `refused ${JSON.stringify(bad)}`);
  }
  assert.instance(catchError(() => rt.linkAddVeth('ok0', { name: 'x'.repeat(20) })), ValidationError);
  assert.is(ipJson(['link', 'show']).length, before, 'nothing reached the kernel');
  const noNs = catchError(() => openNetns({ name: 'does-not-exist' }));
  assert.instance(noNs, SysError);
  assert.is(noNs.code, 'ENOENT');
  const notNs = catchError(() => openNetns({ path: '/etc/hostname' }));
  assert.is(notNs.code, 'EINVAL');
  assert.instance(catchError(() => openNetns({ pid: 999999999 })), SysError);
  rt.linkDel('tbr2');
});

test('pipelined batch maps each failure to its own request', () => {
  rt.linkAddBridge('tbr3');
  const res = rt.batch([
    linkRequests.setUpRequest('tbr3'),
    linkRequests.setUpRequest('missing0'),
    linkRequests.addBridgeRequest('tbr3'),
    linkRequests.setMtuRequest('tbr3', 1300),
  ]);
  assert.is(res[0]!.error, undefined);
  assert.is(res[1]!.error?.code, 'ENODEV');
  assert.is(res[2]!.error?.code, 'EEXIST');
  assert.is(res[3]!.error, undefined);
  assert.is(ipJson(['link', 'show', 'tbr3'])[0].mtu, 1300);
  rt.linkDel('tbr3');
});

test('device group: links put in a group are deleted together, others stay', () => {
  rt.linkAddVeth('ga0', { name: 'gb0' });
  rt.linkAddVeth('ga1', { name: 'gb1' });
  rt.linkAddVeth('keep0', { name: 'keep1' });
  rt.linkSetGroup('ga0', 0x40000123);
  rt.linkSetGroup('ga1', 0x40000123);
  assert.is(ipJson(['-d', 'link', 'show', 'ga0'])[0].group, String(0x40000123));
  rt.linkDelGroup(0x40000123);
  const left = ipJson(['link', 'show']).map((l: any) => l.ifname).sort();
  assert.equal(left, ['keep0', 'keep1', 'lo'], 'veth peers went with their group members');
  rt.linkDel('keep0');
});

test('multipart dump of 300 links in a netns (buffer sizing, NLMSG_DONE across datagrams)', () => {
  withContainer('big', (_ns, c) => {
    const reqs = [];
    for (let i = 0; i < 150; i++) reqs.push(linkRequests.addVethRequest(`a${i}`, { name: `b${i}` }));
    c.batchOrThrow(reqs);
    const links = c.linkList();
    assert.is(links.length, 301);
    assert.is(links.filter((l) => l.kind === 'veth').length, 300);
    const oracle = ipJson(['link', 'show'], 'big');
    assert.equal(withoutFallbackTunnels(links).map((l) => l.name).sort(), oracle.map((l: any) => l.ifname).sort());
    assert.is(c.linkList({ kind: 'veth' }).length, 300, 'kind filter');
  });
});

test('withNetns: restores the thread on throw, refuses promises, sockets stay in their netns', () => {
  const ino = threadNetnsIno();
  withContainer('c4', (ns) => {
    const inside = withNetns(ns, () => threadNetnsIno());
    assert.is.not(inside, ino);
    assert.is(threadNetnsIno(), ino);
    const e = catchError(() =>
      withNetns(ns, () => {
        throw new Error('boom');
      }),
    );
    assert.is(e.message, 'boom');
    assert.is(threadNetnsIno(), ino);
    const p = catchError(() => withNetns(ns, () => Promise.resolve(1)));
    assert.instance(p, ValidationError);
    assert.is(threadNetnsIno(), ino);
    const r = spawnSyncInNetns(ns, 'ip', ['-j', 'link', 'show'], { encoding: 'utf8' });
    assert.equal(JSON.parse(String(r.stdout)).map((l: any) => l.ifname), ['lo'], 'child ran inside the netns');
  });
});

test('no stray links, namespaces, fds or netns switches left behind', () => {
  assert.equal(leaks, []);
  const out = execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' });
  assert.equal(JSON.parse(out).map((l: any) => l.ifname), ['lo']);
  assert.equal(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).trim(), '');
});

test.run();
