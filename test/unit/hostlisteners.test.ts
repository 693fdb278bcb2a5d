/**
 * A published port never silently takes over a host process's port: the overlap rule between a
 * listening socket and a mapping (address, family, IPV6_V6ONLY, protocol), and connect on a fake
 * host refusing such a mapping with EHOSTLISTENER naming the process, before anything changes,
 * unless allowHostListener says to publish anyway.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HostListenerError, MemoryFirewall, Networks, listenerOverlaps, parsePortMapping, type InetSocket } from '../../src/index.js';
import { FakeHost, FakeWorld } from '../fakes/kernel.js';
import { catchAsync, stateFiles } from '../helpers.js';

let inodes = 1000;
function sock(protocol: 'tcp' | 'udp', address: string, port: number, extra: Partial<InetSocket> = {}): InetSocket {
  const family = address.includes(':') ? 6 : 4;
  return {
    family, protocol, state: protocol === 'tcp' ? 'listen' : 'close', local: { address, port }, remote: { address: family === 4 ? '0.0.0.0' : '::', port: 0 },
    ifindex: 0, uid: 0, inode: inodes++, rqueue: 0, wqueue: 0, raw: { header: {} as never, attrs: {} }, ...(family === 6 ? { v6only: false } : {}), ...extra,
  };
}
const over = (s: InetSocket, spec: string, families: (4 | 6)[] = [4, 6]) => listenerOverlaps(s, parsePortMapping(spec), families);

test('wildcards overlap every address of their family, a specific address itself and the wildcard', () => {
  const any4 = sock('tcp', '0.0.0.0', 9090);
  assert.ok(over(any4, '9090:80'));
  assert.ok(over(any4, '127.0.0.1:9090:80'));
  assert.ok(over(any4, '10.0.0.5:9090:80'));
  assert.not.ok(over(any4, '[2001:db8::1]:9090:80'), 'an IPv4 listener is not on IPv6 addresses');
  assert.not.ok(over(any4, '9091:80'), 'another port');
  assert.not.ok(over(any4, '9090:80/udp'), 'another protocol');
  const lo = sock('tcp', '127.0.0.1', 9090);
  assert.ok(over(lo, '9090:80'), 'a wildcard mapping takes 127.0.0.1 too (DNAT in OUTPUT)');
  assert.ok(over(lo, '127.0.0.1:9090:80'));
  assert.not.ok(over(lo, '10.0.0.5:9090:80'), 'another address');
  const udp = sock('udp', '10.0.0.5', 53);
  assert.ok(over(udp, '53:53/udp'));
  assert.ok(over(udp, '10.0.0.5:53:53/udp'));
  assert.not.ok(over(udp, '53:53'), 'tcp mapping, udp socket');
});

test('an IPv6 wildcard without IPV6_V6ONLY takes IPv4 too; with it, IPv6 only; IPv4-mapped binds are IPv4', () => {
  const dual = sock('tcp', '::', 9090);
  assert.ok(over(dual, '9090:80', [4]), 'on an IPv4-only network');
  assert.ok(over(dual, '127.0.0.1:9090:80'));
  assert.ok(over(dual, '[2001:db8::1]:9090:80'));
  const only6 = sock('tcp', '::', 9090, { v6only: true });
  assert.not.ok(over(only6, '9090:80', [4]), 'IPv4 published only, the socket takes IPv6 only');
  assert.ok(over(only6, '9090:80', [4, 6]), 'a dual-stack network publishes the wildcard on IPv6 too');
  assert.not.ok(over(only6, '127.0.0.1:9090:80'));
  const unknown = sock('tcp', '::', 9090);
  delete unknown.v6only;
  assert.ok(over(unknown, '9090:80', [4]), 'no SKV6ONLY attribute: taken as dual-stack');
  const mapped = sock('tcp', '::ffff:127.0.0.1', 9090);
  assert.ok(over(mapped, '127.0.0.1:9090:80'));
  assert.not.ok(over(mapped, '[2001:db8::1]:9090:80'));
  const six = sock('tcp', '2001:db8::1', 9090);
  assert.ok(over(six, '[::]:9090:80'));
  assert.ok(over(six, '9090:80', [4, 6]));
  assert.not.ok(over(six, '9090:80', [4]), 'IPv4-only network: the wildcard is not published on IPv6');
  assert.not.ok(over(six, '[2001:db8::2]:9090:80'));
});

// ------------------------------------------------------------------ connect on a fake host

const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
const roots: string[] = [];
test.after(() => roots.forEach((r) => rmSync(r, { recursive: true, force: true })));


async function rig() {
  const world = new FakeWorld();
  const host = new FakeHost(world);
  const fw = new MemoryFirewall();
  const root = join(mkdtempSync(join(base, 'tsn-listen-')), 'state');
  roots.push(root);
  const nets = new Networks({ stateDir: root, host, firewall: fw });
  await nets.create({ name: 'n1', subnet: '10.50.0.0/24' });
  return { world, host, fw, root, nets };
}

test('connect -p over a host listener is EHOSTLISTENER naming pid and program, and changes nothing', async () => {
  const r = await rig();
  const s = sock('tcp', '0.0.0.0', 9090);
  r.host.sockets.push(s, sock('udp', '0.0.0.0', 9090));
  r.host.owners.set(s.inode, [{ pid: 1234, command: 'python3' }]);
  const before = { files: stateFiles(r.root), fw: JSON.stringify([...r.fw.endpoints.keys(), r.fw.calls]), links: [...r.world.host.links.keys()] };
  const box = r.world.container();
  const e = await catchAsync(() => r.nets.connect('n1', box.handle, { ports: ['9090:80'] }));
  assert.instance(e, HostListenerError);
  assert.is(e.code, 'EHOSTLISTENER');
  assert.match(e.message, /port tcp\/9090 is in use on this host by pid 1234 \(python3\) listening on 0\.0\.0\.0:9090/);
  assert.match(e.message, /--publish-over-listener/);
  assert.equal(e.listeners.map((l: { socket: InetSocket }) => l.socket.inode), [s.inode], 'the UDP socket is not in the way of a TCP mapping');
  assert.equal({ files: stateFiles(r.root), fw: JSON.stringify([...r.fw.endpoints.keys(), r.fw.calls]), links: [...r.world.host.links.keys()] }, before, 'nothing changed');
  // One dump per family of the protocol asked: LISTEN only, AF_INET and AF_INET6 (a dual-stack socket takes IPv4).
  assert.equal(r.host.socketQueries, [{ family: 4, protocol: 'tcp', states: ['listen'] }, { family: 6, protocol: 'tcp', states: ['listen'] }]);
  // An owner nobody can see is said so.
  const u = await catchAsync(() => r.nets.connect('n1', box.handle, { ports: ['9090:80/udp'] }));
  assert.match(u.message, /by a process this user cannot see bound to 0\.0\.0\.0:9090/);
  r.nets.close();
});

test('allowHostListener publishes anyway; a connect without mappings, or with a free port, asks nothing or passes', async () => {
  const r = await rig();
  r.host.sockets.push(sock('tcp', '127.0.0.1', 9090));
  const free = await r.nets.connect('n1', r.world.container().handle, { ports: ['10.50.0.1:9090:80', '9091:80'] });
  assert.equal(free.mappings.length, 2, 'another address and another port are free');
  const over = await r.nets.connect('n1', r.world.container().handle, { ports: ['127.0.0.1:9090:80'], allowHostListener: true });
  assert.equal(over.mappings.map((m) => m.hostPort), [9090]);
  const n = r.host.socketQueries.length;
  await r.nets.connect('n1', r.world.container().handle);
  assert.is(r.host.socketQueries.length, n, 'no mappings, no dump');
  r.nets.close();
});

test.run();
