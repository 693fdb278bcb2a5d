/**
 * The bridge layer's orchestration, without root: Networks on a fake kernel (test/fakes/kernel.ts,
 * behind the HostSystem seam and the netlink Transport), a MemoryFirewall and a real state
 * directory. Every operation is abandoned at every one of its steps (a simulated crash), then
 * the reconciler runs and the whole state is checked: records, fake kernel and firewall agree,
 * no address is held twice, and the operation succeeds when tried again.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Abandon, MemoryFirewall, Networks, StepError, type FaultHook, type NetnsHandle } from '../../src/index.js';
import { FakeHost, FakeWorld, type FakeNs } from '../fakes/kernel.js';
import { catchAsync, stateFiles } from '../helpers.js';

const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
const roots: string[] = [];
test.after(() => roots.forEach((r) => rmSync(r, { recursive: true, force: true })));

interface Rig {
  world: FakeWorld;
  host: FakeHost;
  fw: MemoryFirewall;
  root: string;
  nets: Networks;
  make(faults?: FaultHook): Networks;
  box(): { ns: FakeNs; handle: NetnsHandle };
}

function rig(): Rig {
  const world = new FakeWorld();
  const host = new FakeHost(world);
  const fw = new MemoryFirewall();
  const root = join(mkdtempSync(join(base, 'tsn-bridge-')), 'state');
  roots.push(root);
  const make = (faults?: FaultHook) => new Networks({ stateDir: root, host, firewall: fw, ...(faults ? { faults } : {}) });
  return { world, host, fw, root, nets: make(), make, box: () => world.container() };
}


/** The fake kernel's own view: every host veth has a record, and no IP is on two containers. */
async function assertAgree(r: Rig, what: string): Promise<void> {
  assert.equal(await r.nets.check(), [], `${what}: check`);
  const recs = r.nets.list().flatMap((n) => r.nets.inspect(n.name).endpoints);
  const veths = [...r.world.host.links.values()].filter((l) => l.kind === 'veth').map((l) => l.name).sort();
  assert.equal(veths, recs.map((e) => e.hostIfname).sort(), `${what}: host veths = records`);
  const ips = [...new Set<FakeNs>([...r.world.host.links.values()].filter((l) => l.peer).map((l) => l.peer!.ns))].flatMap((ns) => ns.addrs.map((a) => a.ip));
  assert.is(new Set(ips).size, ips.length, `${what}: an address is on two containers: ${ips}`);
  assert.equal(ips.sort(), recs.map((e) => e.ip).sort(), `${what}: container addresses = records`);
}

/** Records the steps of an operation kind. */
async function stepsOf(r: Rig, kind: string, run: (n: Networks) => Promise<unknown>): Promise<string[]> {
  const seen: string[] = [];
  const n = r.make((op, s) => void (op === kind && !seen.includes(s) && seen.push(s)));
  await run(n);
  n.close();
  return seen;
}

async function abandonAt(r: Rig, kind: string, step: string, run: (n: Networks) => Promise<unknown>): Promise<void> {
  const n = r.make((op, s) => {
    if (op === kind && s === step) throw new Abandon(op, s);
  });
  const e = await catchAsync(() => run(n));
  n.close();
  assert.instance(e, Abandon, `${kind} at ${step}: ${String(e)}`);
}

test('create, connect -p, disconnect, rm: kernel objects tagged, the firewall told, nothing left', async () => {
  const r = rig();
  const res = await r.nets.createNetwork({ name: 'n1', subnet: '10.1.0.0/24' });
  assert.equal(res.hostChanges.map((c) => c.split(':')[0]), ['net.ipv4.ip_forward', 'FORWARD policy']);
  const br = r.world.host.byName('n1')!;
  assert.equal([br.kind, br.mac, br.alias, br.up], ['bridge', '02:42:0a:01:00:01', 'tsnetlink/n1', true]);
  assert.ok(r.world.host.addrs.some((a) => a.index === br.index && a.ip === '10.1.0.1' && a.prefix === 24));
  assert.is(r.world.host.sysctls.get('net/ipv6/conf/n1/accept_ra'), '0');
  assert.is(r.world.host.sysctls.get('net/ipv4/ip_forward'), '1');
  const c = r.box();
  const ep = await r.nets.connect('n1', c.handle, { id: 'c1', ports: ['8080:80'] });
  const veth = r.world.host.byName(ep.hostIfname)!;
  assert.equal([veth.alias, veth.master, veth.up, veth.hairpin, veth.addrGenNone], ['tsnetlink/n1/c1', br.index, true, true, true]);
  const eth0 = c.ns.byName('eth0')!;
  assert.equal([eth0.up, eth0.mac], [true, '02:42:0a:01:00:02']);
  assert.equal(c.ns.addrs.map((a) => `${a.ip}/${a.prefix}`), ['10.1.0.2/24']);
  assert.equal(c.ns.routes, [{ dst: 'default', gateway: '10.1.0.1', oif: eth0.index }]);
  assert.is(c.ns.sysctls.get('net/ipv6/conf/eth0/accept_ra'), '0', 'RAs off inside before the interface goes up');
  assert.equal([...r.fw.endpoints.keys()], ['n1/c1']);
  assert.equal(ep.state, 'active');
  await assertAgree(r, 'connected');
  assert.is(await r.nets.disconnect('n1', 'c1'), true);
  assert.equal(c.ns.links.size, 1, 'only lo is left in the container');
  assert.equal(r.fw.endpoints.size, 0);
  assert.equal(r.fw.forgotten.at(-1), { ips: ['10.1.0.2'] }, 'its tracked connections are flushed');
  await r.nets.remove('n1');
  assert.equal([...r.world.host.links.values()].map((l) => l.name), ['lo']);
  assert.equal(r.fw.networks.size, 0);
  assert.equal(stateFiles(r.root), []);
});

for (const ports of [[], ['8080:80', '5353:53/udp']]) {
  test(`connect${ports.length ? ' -p' : ''} abandoned at every step: prune settles it; the retry succeeds`, async () => {
    const r = rig();
    await r.nets.create({ name: 'n1', subnet: '10.1.0.0/24' });
    const other = r.box();
    await r.nets.connect('n1', other.handle, { id: 'other', ports: ['9090:80'] });
    const c = r.box();
    const steps = await stepsOf(r, 'connect', async (n) => {
      await n.connect('n1', c.handle, { id: 'c', ports });
      await n.disconnect('n1', 'c');
    });
    assert.ok(steps.length >= (ports.length ? 9 : 8), `steps: ${steps}`);
    for (const step of steps) {
      await abandonAt(r, 'connect', step, (n) => n.connect('n1', c.handle, { id: 'c', ports }));
      await r.nets.prune();
      await assertAgree(r, `after "${step}"`);
      assert.equal(c.ns.links.size, 1, `${step}: the container has no interface left`);
      const ep = await r.nets.connect('n1', c.handle, { id: 'c', ports });
      assert.is(ep.ip, c.ns.addrs[0]?.ip);
      await assertAgree(r, `retry after "${step}"`);
      await r.nets.disconnect('n1', 'c');
    }
    assert.ok(r.fw.endpoints.has('n1/other'), 'the bystander kept its rules');
  });
}

test('disconnect, create and rm abandoned at every step: prune settles each, the retry succeeds', async () => {
  const r = rig();
  await r.nets.create({ name: 'n1', subnet: '10.1.0.0/24' });
  const c = r.box();
  const dSteps = await stepsOf(r, 'disconnect', async (n) => {
    await n.connect('n1', c.handle, { id: 'c', ports: ['8080:80'] });
    await n.disconnect('n1', 'c');
  });
  for (const step of dSteps) {
    await r.nets.connect('n1', c.handle, { id: 'c', ports: ['8080:80'] });
    await abandonAt(r, 'disconnect', step, (n) => n.disconnect('n1', 'c'));
    await r.nets.prune();
    await assertAgree(r, `disconnect at "${step}"`);
    await r.nets.disconnect('n1', 'c');
    assert.equal(c.ns.links.size, 1);
  }
  const cSteps = await stepsOf(r, 'create', (n) => n.create({ name: 'n2', subnet: '10.2.0.0/24' }).then(() => n.remove('n2')));
  for (const step of cSteps) {
    await abandonAt(r, 'create', step, (n) => n.create({ name: 'n2', subnet: '10.2.0.0/24' }));
    await r.nets.prune();
    await assertAgree(r, `create at "${step}"`);
    assert.is(r.world.host.byName('n2'), undefined, `${step}: no orphan bridge`);
    await r.nets.create({ name: 'n2', subnet: '10.2.0.0/24' });
    await r.nets.remove('n2');
  }
  const rSteps = await stepsOf(r, 'rm', async (n) => {
    await n.create({ name: 'n3', subnet: '10.3.0.0/24' });
    await n.connect('n3', c.handle, { id: 'c', ports: ['8081:80'] });
    await n.remove('n3', { force: true });
  });
  for (const step of rSteps) {
    await r.nets.create({ name: 'n3', subnet: '10.3.0.0/24' });
    await r.nets.connect('n3', c.handle, { id: 'c', ports: ['8081:80'] });
    await abandonAt(r, 'rm', step, (n) => n.remove('n3', { force: true }));
    await r.nets.prune();
    await assertAgree(r, `rm at "${step}"`);
    if (r.nets.list().some((x) => x.name === 'n3')) await r.nets.remove('n3', { force: true });
    assert.is(r.world.host.byName('n3'), undefined);
  }
});

test('a firewall that drifted is rebuilt from the records by the change that noticed it', async () => {
  const r = rig();
  await r.nets.create({ name: 'n1', subnet: '10.1.0.0/24' });
  await r.nets.connect('n1', r.box().handle, { id: 'a', ports: ['8080:80'] });
  r.fw.drifted = true;
  r.fw.calls.length = 0;
  await r.nets.connect('n1', r.box().handle, { id: 'b', ports: ['8081:80'] });
  assert.equal(r.fw.calls, ['addEndpoints b', 'apply']);
  assert.equal([...r.fw.endpoints.keys()].sort(), ['n1/a', 'n1/b']);
  await assertAgree(r, 'after drift');
});

test('a firewall failure rolls everything back: StepError names the step, nothing is left', async () => {
  const r = rig();
  await r.nets.create({ name: 'n1', subnet: '10.1.0.0/24' });
  const before = stateFiles(r.root);
  const c = r.box();
  r.fw.failNext = { call: 'addEndpoints', error: new Error('iptables-restore: line 3 failed') };
  const e = await catchAsync(() => r.nets.connect('n1', c.handle, { id: 'c', ports: ['8080:80'] }));
  assert.instance(e, StepError);
  assert.is(e.step, 'port mappings');
  assert.match(e.message, /line 3 failed/);
  assert.equal(c.ns.links.size, 1);
  assert.equal(stateFiles(r.root).filter((f) => !f.endsWith('/last')), before, 'only the IPAM cursor moved');
  await assertAgree(r, 'after the rollback');
  await r.nets.connect('n1', c.handle, { id: 'c', ports: ['8080:80'] });
});

test('a host port or the last address held by a dead container is reclaimed by the next connect', async () => {
  const r = rig();
  await r.nets.create({ name: 'tiny', subnet: '10.9.0.0/30' });
  const dead = await r.nets.connect('tiny', r.box().handle, { id: 'dead', ports: ['8080:80'] });
  // The container died: the kernel deleted its netns, and the veth pair with it.
  r.world.host.remove(r.world.host.byName(dead.hostIfname)!);
  const c = r.box();
  const ep = await r.nets.connect('tiny', c.handle, { id: 'new', ports: ['8080:80'] });
  assert.is(ep.ip, '10.9.0.2', 'the /30 had only that one address');
  assert.equal([...r.fw.endpoints.keys()], ['tiny/new']);
  await assertAgree(r, 'after reclaiming');
});

test('concurrent connects in one process get distinct addresses (the IPAM lock keeps them apart)', async () => {
  const r = rig();
  await r.nets.create({ name: 'n1', subnet: '10.1.0.0/24' });
  const eps = await Promise.all(Array.from({ length: 8 }, (_, i) => r.nets.connect('n1', r.box().handle, { id: `c${i}`, ports: [`${8000 + i}:80`] })));
  assert.is(new Set(eps.map((e) => e.ip)).size, 8);
  await assertAgree(r, 'after 8 concurrent connects');
});

test('two connects of one container at once: one connects, the other waits for it and is EALREADY', async () => {
  const r = rig();
  await r.nets.create({ name: 'n1', subnet: '10.1.0.0/24' });
  const c = r.box();
  const results = await Promise.allSettled(['a', 'b', 'c'].map((id) => r.nets.connect('n1', c.handle, { id, ports: [`${8000 + id.charCodeAt(0)}:80`] })));
  assert.is(results.filter((x) => x.status === 'fulfilled').length, 1);
  for (const x of results) if (x.status === 'rejected') assert.is((x.reason as { code?: string }).code, 'EALREADY');
  assert.is(c.ns.links.size, 2, 'lo and one eth0');
  await assertAgree(r, 'after the concurrent connects of one container');
});

test('disconnects at once share their veth deletions: those asked for while one runs go as one device group', async () => {
  const r = rig();
  await r.nets.create({ name: 'n1', subnet: '10.1.0.0/24' });
  const eps = [];
  for (let i = 0; i < 8; i++) eps.push(await r.nets.connect('n1', r.box().handle, { id: `c${i}` }));
  r.world.log.length = 0;
  // A veth's deletion takes a few milliseconds in the kernel; the disconnects take turns meanwhile.
  r.world.asyncSendDelayMs = 5;
  assert.equal(await Promise.all(eps.map((e) => r.nets.disconnect('n1', e.id))), eps.map(() => true));
  delete r.world.asyncSendDelayMs;
  const dels = r.world.log.filter((l) => l.startsWith('DELLINK'));
  assert.ok(dels.length < eps.length, `${dels.length} RTM_DELLINK for ${eps.length} veths: ${dels.join(', ')}`);
  assert.ok(dels.some((l) => l.startsWith('DELLINK group')), dels.join(', '));
  assert.equal(r.fw.forgotten.slice(-eps.length).map((f) => f.ips).flat().sort(), eps.map((e) => e.ip).sort(), 'every endpoint\'s connections forgotten');
  await assertAgree(r, 'after the disconnects');
  assert.equal([...r.world.host.links.values()].filter((l) => l.kind === 'veth'), []);
  await r.nets.remove('n1');
  assert.equal(stateFiles(r.root), []);
});

test('a second network in the same container: eth1, no second default route', async () => {
  const r = rig();
  await r.nets.create({ name: 'a', subnet: '10.1.0.0/24' });
  await r.nets.create({ name: 'b', subnet: '10.2.0.0/24' });
  const c = r.box();
  const ea = await r.nets.connect('a', c.handle, { id: 'x' });
  const eb = await r.nets.connect('b', c.handle, { id: 'x' });
  assert.equal([ea.ifname, ea.defaultRoute, eb.ifname, eb.defaultRoute], ['eth0', true, 'eth1', false]);
  assert.is(c.ns.routes.length, 1);
});

test('refusals change nothing: internal networks publish nothing, the host netns and ip_forward=0 are refused', async () => {
  const r = rig();
  await r.nets.create({ name: 'in', subnet: '10.1.0.0/24', internal: true });
  const c = r.box();
  const e1 = await catchAsync(() => r.nets.connect('in', c.handle, { ports: ['80:80'] }));
  assert.is(e1.code, 'EINVAL');
  const ep = await r.nets.connect('in', c.handle, { id: 'i' });
  assert.equal(c.ns.routes, [], 'no default route on an internal network');
  assert.is(ep.defaultRoute, false);
  await r.nets.create({ name: 'n1', subnet: '10.2.0.0/24' });
  r.world.host.sysctls.set('net/ipv4/ip_forward', '0');
  const e2 = await catchAsync(() => r.nets.connect('n1', r.box().handle, {}));
  assert.is(e2.code, 'ENOFORWARD');
  const links = r.world.host.links.size;
  const self = r.box();
  r.host.hostNetnsKeys = () => [`${self.handle.dev}-${self.handle.ino}`];
  r.world.host.sysctls.set('net/ipv4/ip_forward', '1');
  const e3 = await catchAsync(() => r.nets.connect('n1', self.handle, {}));
  assert.is(e3.code, 'EHOSTNETNS');
  assert.is(r.world.host.links.size, links);
  await assertAgree(r, 'after the refusals');
});

test.run();
