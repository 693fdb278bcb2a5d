/**
 * What the bridge layer gained for the CNI plugin, on the fake kernel: a requested address and
 * MAC, no default route, the CNI attachment kept in the record, a bridge named apart from its
 * network, and the createdBy mark. Each refusal leaves nothing behind (check is empty).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryFirewall, Networks } from '../../src/index.js';
import { IpamError } from '../../src/bridge/ipam.js';
import { FakeHost, FakeWorld } from '../fakes/kernel.js';
import { catchAsync } from '../helpers.js';

const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
const roots: string[] = [];
test.after(() => roots.forEach((r) => rmSync(r, { recursive: true, force: true })));

function rig() {
  const world = new FakeWorld();
  const root = join(mkdtempSync(join(base, 'tsn-cnib-')), 'state');
  roots.push(root);
  const host = new FakeHost(world);
  const fw = new MemoryFirewall();
  const make = () => new Networks({ stateDir: root, host, firewall: fw });
  return { world, make, nets: make() };
}

test('a requested address and MAC are given; without defaultRoute the container gets no default route', async () => {
  const r = rig();
  await r.nets.create({ name: 'n1', subnet: '10.1.0.0/24', bridge: 'cni-br0', createdBy: 'cni' });
  assert.ok(r.world.host.byName('cni-br0'), 'the bridge is named as asked');
  assert.is(r.world.host.byName('n1'), undefined);
  const c = r.world.container();
  const ep = await r.nets.connect('n1', c.handle, { id: 'a1', ip: '10.1.0.77', mac: '02:AA:BB:00:00:01', defaultRoute: false, attachment: { containerId: 'ctr1', ifname: 'eth0' } });
  assert.equal([ep.ip, ep.mac, ep.defaultRoute], ['10.1.0.77', '02:aa:bb:00:00:01', false]);
  assert.equal(c.ns.byName('eth0')!.mac, '02:aa:bb:00:00:01');
  assert.equal(c.ns.routes, [], 'no default route');
  const info = r.make().inspect('n1');
  assert.equal(info.createdBy, 'cni');
  assert.equal(info.bridge, 'cni-br0');
  assert.equal(info.endpoints[0]!.attachment, { containerId: 'ctr1', ifname: 'eth0' }, 'the attachment is read back from disk');
  const next = await r.nets.connect('n1', r.world.container().handle, { id: 'a2' });
  assert.is(next.ip, '10.1.0.2', 'a requested address leaves the round-robin cursor alone');
  assert.equal(await r.nets.check(), []);
});

test('a requested address that is taken, outside the subnet or the gateway is refused, leaving nothing', async () => {
  const r = rig();
  await r.nets.create({ name: 'n1', subnet: '10.1.0.0/24' });
  await r.nets.connect('n1', r.world.container().handle, { id: 'a1', ip: '10.1.0.5' });
  const taken = await catchAsync(() => r.nets.connect('n1', r.world.container().handle, { id: 'a2', ip: '10.1.0.5' }));
  assert.instance(taken, IpamError);
  assert.is(taken.code, 'EIPINUSE');
  for (const ip of ['10.2.0.5', '10.1.0.1', '10.1.0.255', 'ten']) {
    const e = await catchAsync(() => r.nets.connect('n1', r.world.container().handle, { id: 'a3', ip }));
    assert.is(e.code, 'EINVAL', `${ip}: ${e}`);
  }
  assert.is((await catchAsync(() => r.nets.connect('n1', r.world.container().handle, { id: 'a3', mac: 'zz' }))).code, 'EINVAL');
  assert.equal(r.nets.inspect('n1').endpoints.map((e) => e.id), ['a1']);
  assert.equal(await r.nets.check(), []);
});

test('two networks cannot share a bridge', async () => {
  const r = rig();
  await r.nets.create({ name: 'n1', subnet: '10.1.0.0/24', bridge: 'shared0' });
  const e = await catchAsync(() => r.nets.create({ name: 'n2', subnet: '10.2.0.0/24', bridge: 'shared0' }));
  assert.is(e.code, 'ENETEXISTS');
  assert.match(e.message, 'belongs to network n1');
  assert.equal(r.nets.list().map((n) => n.name), ['n1']);
});

test.run();
