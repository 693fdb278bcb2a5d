/**
 * End-to-end: nothing fails silently, and whatever is interrupted is settled. Each operation is
 * abandoned at each of its steps (a simulated crash: no rollback, locks released as the kernel
 * releases a dead process's flocks), then one prune must leave records, kernel and firewall in
 * exact agreement (Networks.check, cross-checked with ip -j and iptables-save, or `nft -j list
 * ruleset` on the native backend, TSNETLINK_FIREWALL=nftables) and the operation
 * must succeed when tried again. Drift (a flushed ruleset, a downed or deleted bridge, ip_forward
 * off, a corrupt record) is either repaired or refused with a clear error.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Abandon, Networks, NftablesFirewall, type FaultHook } from '../../src/index.js';
import { makeUpstream, type Upstream } from '../../demo/scenario.js';
import { catchAsync, ipJson, requireSandbox } from '../helpers.js';
import { box, serveIn, reach, DROPPED_MS, ipIn, IPTABLES, SAVE, CLI, type Box } from './lib.js';
import { NFT, nftMappings, normalizedNft } from './fw-oracle.js';

requireSandbox('reconcile');

const NET = 'recon';
const nets = new Networks();
let up: Upstream;
const boxes = new Map<string, Box>();

function container(name: string): Box {
  const b = boxes.get(name) ?? box(name);
  if (!boxes.has(name)) {
    serveIn(b, 80);
    boxes.set(name, b);
  }
  return b;
}

function sysctl(path: string, value?: string): string {
  if (value !== undefined) writeFileSync(`/proc/sys/${path}`, value);
  return readFileSync(`/proc/sys/${path}`, 'utf8').trim();
}

/** The addresses and MACs of every container's interfaces on our networks: none may repeat. */
function assertNoDuplicates(what: string): void {
  const seen = new Map<string, string>();
  for (const b of boxes.values()) {
    for (const l of ipIn<any[]>(b, ['addr', 'show']).filter((x) => x.ifname !== 'lo')) {
      for (const key of [`mac ${l.address}`, ...l.addr_info.filter((a: any) => a.family === 'inet').map((a: any) => `ip ${a.local}`)]) {
        const other = seen.get(key);
        assert.is(other, undefined, `${what}: ${key} both in ${other} and in ${b.name}`);
        seen.set(key, b.name);
      }
    }
  }
}

async function assertConsistent(what: string): Promise<void> {
  assert.equal(await nets.check(), [], `${what}: Networks.check`);
  // Independent oracles: every veth on the host belongs to a record, every DNAT chain too.
  const recs = nets.list().flatMap((n) => nets.inspect(n.name).endpoints);
  const veths = ipJson<any[]>(['link', 'show', 'type', 'veth']).map((l) => l.ifname).filter((n: string) => n.startsWith('veth'));
  assert.equal(veths.sort(), recs.map((r) => r.hostIfname).sort(), `${what}: host veths = records`);
  if (NFT) {
    // On nf_tables a published port is a map element that carries its endpoint's tag as comment.
    const owners = [...new Set(nftMappings().map((m) => m.comment))].sort();
    assert.equal(owners, recs.filter((r) => r.mappings.length > 0).map((r) => `tsnetlink:${r.network}/${r.id}`).sort(), `${what}: map elements only of publishing endpoints`);
  } else {
    const dnat = execFileSync(SAVE, ['-t', 'nat'], { encoding: 'utf8' }).split('\n').filter((l) => /^:TSN-DN-/.test(l));
    assert.is(dnat.length, recs.filter((r) => r.mappings.length > 0).length, `${what}: one DNAT chain per publishing endpoint`);
  }
  assertNoDuplicates(what);
}

/** The steps an operation goes through, in order, recorded by a hook that only listens. */
async function stepsOf(kind: string, run: (n: Networks) => Promise<unknown>): Promise<string[]> {
  const seen: string[] = [];
  const probe = new Networks({ faults: (op, step) => op === kind && !seen.includes(step) && seen.push(step) });
  try {
    await run(probe);
  } finally {
    probe.close();
  }
  return seen;
}

/** Runs `run` with a hook that abandons it at `step` of `kind`; it must reject with Abandon. */
async function crashAt(kind: string, step: string, run: (n: Networks) => Promise<unknown>): Promise<void> {
  const hook: FaultHook = (op, s) => {
    if (op === kind && s === step) throw new Abandon(op, s);
  };
  const crashing = new Networks({ faults: hook });
  try {
    const e = await catchAsync(() => run(crashing));
    assert.instance(e, Abandon, `${kind} at ${step}: ${e}`);
  } finally {
    crashing.close();
  }
}

test.before(async () => {
  up = makeUpstream(nets.host);
  await nets.create({ name: NET, subnet: '10.30.0.0/24' });
});

test.after(async () => {
  sysctl('net/ipv4/ip_forward', '1');
  for (const n of nets.list()) await nets.remove(n.name, { force: true }).catch(() => undefined);
  for (const b of boxes.values()) b.close();
  up.close();
  nets.close();
});

test('connect -p abandoned at every step: one prune settles it, the retry succeeds, no IP or MAC twice', async () => {
  const steps = await stepsOf('connect', async (n) => {
    await n.connect(NET, container('probe').ns, { id: 'probe', ports: ['8090:80'] });
    await n.disconnect(NET, 'probe');
  });
  assert.ok(steps.length >= 8, `steps: ${steps}`);
  assert.ok(steps.includes('save intent') && steps.includes('port mappings') && steps.includes('save endpoint'));
  await nets.connect(NET, container('stay').ns, { id: 'stay', ports: ['8091:80'] });
  for (const step of steps) {
    const c = container('victim');
    await crashAt('connect', step, (n) => n.connect(NET, c.ns, { id: 'victim', ports: ['8092:80'] }));
    await nets.prune();
    await assertConsistent(`after a connect abandoned at "${step}" and a prune`);
    const ep = await nets.connect(NET, c.ns, { id: 'victim', ports: ['8092:80'] });
    assert.is(await reach(undefined, up.hostIp, 8092), 'victim', `${step}: the retried connect's port answers`);
    assert.is(await reach(undefined, ep.ip, 80), 'victim');
    await nets.disconnect(NET, 'victim');
  }
  assert.is(await reach(undefined, up.hostIp, 8091), 'stay', 'the bystander was never touched');
});

test('a connect abandoned at every step is also settled by the next connect of the same container, without a prune', async () => {
  const steps = await stepsOf('connect', (n) => n.connect(NET, container('again').ns, { id: 'again' }).then(() => n.disconnect(NET, 'again')));
  for (const step of steps) {
    const c = container('again');
    await crashAt('connect', step, (n) => n.connect(NET, c.ns, { id: 'again' }));
    const ep = await nets.connect(NET, c.ns, { id: 'again' });
    assert.is(await reach(undefined, ep.ip, 80), 'again', `after "${step}"`);
    await nets.disconnect(NET, 'again');
    await assertConsistent(`after "${step}" and a second connect`);
  }
});

test('disconnect abandoned at every step: one prune finishes it; the address and port are free again', async () => {
  const steps = await stepsOf('disconnect', async (n) => {
    await n.connect(NET, container('d').ns, { id: 'd', ports: ['8093:80'] });
    await n.disconnect(NET, 'd');
  });
  assert.ok(steps.includes('delete veth') && steps.includes('remove port mappings'), `steps: ${steps}`);
  for (const step of steps) {
    const c = container('d');
    await nets.connect(NET, c.ns, { id: 'd', ports: ['8093:80'] });
    await crashAt('disconnect', step, (n) => n.disconnect(NET, 'd'));
    await nets.prune();
    await assertConsistent(`after a disconnect abandoned at "${step}" and a prune`);
    // Abandoned before its first change, the endpoint is simply still there: disconnect again.
    const left = await nets.disconnect(NET, 'd');
    assert.is(left, step === steps[0], `${step}: the endpoint survives only a disconnect that had not begun`);
    assert.equal(ipIn<any[]>(c, ['link', 'show']).map((l) => l.ifname), ['lo'], `${step}: the container's eth0 is gone`);
    assert.match(await reach(undefined, up.hostIp, 8093, DROPPED_MS), /^unreachable/, `${step}: no DNAT left`);
  }
});

test('network create and rm abandoned at every step: prune undoes or finishes them, the name is usable again', async () => {
  const createSteps = await stepsOf('create', (n) => n.create({ name: 'crash1', subnet: '10.31.0.0/24' }).then(() => n.remove('crash1')));
  assert.ok(createSteps.includes('create bridge') && createSteps.includes('firewall'), `steps: ${createSteps}`);
  for (const step of createSteps) {
    await crashAt('create', step, (n) => n.create({ name: 'crash1', subnet: '10.31.0.0/24' }));
    await nets.prune();
    await assertConsistent(`after a create abandoned at "${step}"`);
    assert.not.ok(ipJson<any[]>(['link', 'show']).some((l) => l.ifname === 'crash1'), `${step}: no orphan bridge`);
    await nets.create({ name: 'crash1', subnet: '10.31.0.0/24' });
    await nets.remove('crash1');
  }
  const rmSteps = await stepsOf('rm', async (n) => {
    await n.create({ name: 'crash2', subnet: '10.32.0.0/24' });
    await n.connect('crash2', container('r').ns, { id: 'r', ports: ['8094:80'] });
    await n.remove('crash2', { force: true });
  });
  for (const step of rmSteps) {
    await nets.create({ name: 'crash2', subnet: '10.32.0.0/24' });
    await nets.connect('crash2', container('r').ns, { id: 'r', ports: ['8094:80'] });
    await crashAt('rm', step, (n) => n.remove('crash2', { force: true }));
    if (step !== rmSteps[0]) assert.not.ok(nets.list().some((n) => n.name === 'crash2'), `${step}: a network being removed is not listed`);
    await nets.prune();
    await assertConsistent(`after an rm abandoned at "${step}"`);
    // Abandoned before its first change, the network is simply still there: remove it again.
    if (step === rmSteps[0]) await nets.remove('crash2', { force: true });
    assert.not.ok(ipJson<any[]>(['link', 'show']).some((l) => l.ifname === 'crash2'), `${step}: bridge gone`);
  }
});

test('a flushed ruleset: connect -p still publishes (the change rebuilds what it relies on)', async () => {
  const c = container('flushed');
  execFileSync(IPTABLES, ['-F']);
  execFileSync(IPTABLES, ['-t', 'nat', '-F']);
  if (NFT) {
    execFileSync('nft', ['flush', 'table', 'inet', 'tsnetlink']);
    for (const map of new Set(nftMappings().map((m) => m.map))) execFileSync('nft', ['flush', 'map', 'inet', 'tsnetlink', map]);
    assert.equal(nftMappings(), [], 'the maps are empty');
  }
  const ep = await nets.connect(NET, c.ns, { id: 'flushed', ports: ['8095:80'] });
  assert.is(await reach(undefined, up.hostIp, 8095), 'flushed', 'the new mapping works');
  assert.is(await reach(undefined, up.hostIp, 8091), 'stay', 'and so does the older one');
  await assertConsistent('after connect on a flushed ruleset');
  await nets.disconnect(NET, ep.id);
});

test('repair: a bridge that is down is brought up, a deleted one re-created; endpoints work again', async () => {
  const stay = nets.inspect(NET).endpoints.find((e) => e.id === 'stay')!;
  execFileSync('ip', ['link', 'set', NET, 'down']);
  const e = await catchAsync(() => nets.connect(NET, container('down').ns, { id: 'down' }));
  assert.is(e.code, 'EBRIDGEDOWN', String(e));
  assert.match(e.message, /repair/);
  let r = await nets.repair();
  assert.ok(r.actions.some((a) => /was down/.test(a)), JSON.stringify(r));
  assert.is(await reach(undefined, up.hostIp, 8091), 'stay');
  execFileSync('ip', ['link', 'del', NET]);
  assert.equal(ipJson<any[]>(['link', 'show', stay.hostIfname])[0].master, undefined, 'the host veth lost its master');
  r = await nets.repair();
  assert.ok(r.actions.some((a) => /re-created the missing bridge/.test(a)), JSON.stringify(r));
  assert.ok(r.actions.some((a) => /enslaved/.test(a)), JSON.stringify(r));
  const br = ipJson<any[]>(['-d', 'addr', 'show', NET])[0];
  assert.is(br.address, '02:42:0a:1e:00:01', 'the same MAC as before');
  assert.ok(br.addr_info.some((a: any) => a.local === '10.30.0.1' && a.prefixlen === 24));
  assert.is(await reach(undefined, stay.ip, 80), 'stay', 'the host reaches the container again');
  assert.is(await reach(undefined, up.hostIp, 8091), 'stay', 'its published port works again');
  assert.is(await reach(container('stay'), '10.30.0.1', 1, 500).then((x) => (/ECONNREFUSED/.test(x) ? 'gateway answers' : x)), 'gateway answers');
  r = await nets.repair();
  assert.equal(r, { actions: [], pruned: [], problems: [] }, 'a second repair has nothing to do');
  await assertConsistent('after repair');
});

test('ip_forward off: connect refuses with ENOFORWARD and changes nothing; repair turns it back on', async () => {
  sysctl('net/ipv4/ip_forward', '0');
  const before = ipJson<any[]>(['link', 'show']).length;
  const e = await catchAsync(() => nets.connect(NET, container('nofwd').ns, { id: 'nofwd' }));
  assert.is(e.code, 'ENOFORWARD');
  assert.is(ipJson<any[]>(['link', 'show']).length, before, 'no link was created');
  const r = await nets.repair();
  assert.ok(r.actions.some((a) => /ip_forward/.test(a)));
  assert.is(sysctl('net/ipv4/ip_forward'), '1');
  await nets.connect(NET, container('nofwd').ns, { id: 'nofwd' });
  await nets.disconnect(NET, 'nofwd');
});

test('a refused create changes nothing on the host: not even ip_forward', async () => {
  sysctl('net/ipv4/ip_forward', '0');
  const links = ipJson<any[]>(['link', 'show']).length;
  const save = execFileSync(SAVE, { encoding: 'utf8' }).replace(/^#.*\n/gm, '');
  const nft = NFT ? normalizedNft() : '';
  const e1 = await catchAsync(() => nets.create({ name: 'lo127', subnet: '127.1.0.1/24' }));
  assert.is(e1.code, 'EINVAL');
  assert.match(e1.message, /127\.0\.0\.0\/8/);
  const noIpt = new Networks({ firewall: 'iptables', iptables: { restoreBinary: '/nonexistent/iptables-restore' } });
  const e2 = await catchAsync(() => noIpt.create({ name: 'noipt', subnet: '10.33.0.0/24' }));
  noIpt.close();
  assert.is(e2.code, 'ENOFIREWALL');
  assert.match(e2.message, /install the iptables package/);
  assert.is(sysctl('net/ipv4/ip_forward'), '0', 'ip_forward untouched');
  assert.is(ipJson<any[]>(['link', 'show']).length, links, 'no link made');
  assert.is(execFileSync(SAVE, { encoding: 'utf8' }).replace(/^#.*\n/gm, ''), save, 'ruleset untouched');
  if (NFT) assert.fixture(normalizedNft(), nft, 'nft ruleset untouched');
  assert.equal(nets.list().map((n) => n.name), [NET]);
  sysctl('net/ipv4/ip_forward', '1');
});

test('network rm whose firewall tools are missing is refused before anything is deleted', async () => {
  await nets.create({ name: 'rmnotool', subnet: '10.37.0.0/24' });
  // The native backend has no tools to miss: a kernel without nf_tables is what it can lack.
  const unusable = new NftablesFirewall({ open: () => { throw new Error('socket(NETLINK_NETFILTER): EPROTONOSUPPORT (simulated)'); } });
  const noSave = NFT ? new Networks({ firewall: unusable }) : new Networks({ firewall: 'iptables', iptables: { restoreBinary: '/nonexistent/iptables-restore' } });
  const e = await catchAsync(() => noSave.remove('rmnotool'));
  noSave.close();
  assert.is(e.code, 'ENOFIREWALL', String(e));
  assert.is(ipJson<any[]>(['link', 'show', 'rmnotool']).length, 1, 'the bridge is still there');
  assert.equal(nets.inspect('rmnotool').state, 'active');
  await nets.remove('rmnotool');
});

test('a network create reports what it changed on the host, and the FORWARD policy it set', async () => {
  sysctl('net/ipv4/ip_forward', '0');
  execFileSync(IPTABLES, ['-P', 'FORWARD', 'ACCEPT']);
  const r = await nets.createNetwork({ name: 'fwd', subnet: '10.34.0.0/24' });
  assert.equal(r.hostChanges.map((c) => c.split(':')[0]), ['net.ipv4.ip_forward', 'FORWARD policy']);
  assert.match(execFileSync(SAVE, ['-t', 'filter'], { encoding: 'utf8' }), /^:FORWARD DROP/m);
  await nets.remove('fwd');
  assert.is(sysctl('net/ipv4/ip_forward'), '1', 'stays on after rm, as with Docker');
  // Someone else's reload puts the policy back to ACCEPT: the guard tsnetlink set is checked and restored.
  execFileSync(IPTABLES, ['-P', 'FORWARD', 'ACCEPT']);
  const problems = await nets.check();
  assert.ok(problems.some((p) => /FORWARD policy is ACCEPT, but tsnetlink set DROP/.test(p)), problems.join('\n'));
  const r2 = await nets.repair();
  assert.ok(r2.actions.some((a) => /FORWARD policy was ACCEPT: set to DROP again/.test(a)), r2.actions.join('\n'));
  assert.match(execFileSync(SAVE, ['-t', 'filter'], { encoding: 'utf8' }), /^:FORWARD DROP/m);
  await assertConsistent('after the FORWARD policy was restored');
});

test('an unreadable network record freezes that network: its rules stay through create, prune, repair and rm of others; every command names it; rm --force clears it', async () => {
  await nets.create({ name: 'tb', subnet: '10.38.0.0/24' });
  const t1 = container('t1');
  await nets.connect('tb', t1.ns, { id: 't1', ports: ['8099:80'] });
  const rules = (): string => (NFT ? normalizedNft() : '') + execFileSync(SAVE, { encoding: 'utf8' }).replace(/^#.*\n/gm, '').replace(/\[\d+:\d+\]/g, '');
  assert.is(await reach(undefined, up.hostIp, 8099), 't1');
  for (const junk of ['', 'garbage{', '{}']) {
    writeFileSync(nets.store.networkFile('tb'), junk);
    const before = rules();
    assert.equal(nets.list().map((n) => n.name), [NET], `ls with ${JSON.stringify(junk)}`);
    assert.equal(nets.unreadable().map((b) => b.name), ['tb'], 'named as unreadable');
    const ls = spawnSync(process.execPath, [CLI, 'network', 'ls'], { encoding: 'utf8' });
    assert.is(ls.status, 1, 'network ls exits 1');
    assert.match(ls.stderr, /network tb: its record is unreadable/);
    const e = await catchAsync(() => nets.create({ name: 'other', subnet: '10.35.0.0/24' }));
    assert.is(e.code, 'ECORRUPT', String(e));
    assert.match(e.message, /rm --force tb/);
    const r = await nets.pruneReport();
    assert.ok(r.problems.some((p) => /firewall not rewritten: the record of network tb is unreadable/.test(p)), JSON.stringify(r));
    const rep = await nets.repair();
    assert.ok(rep.problems.some((p) => /tb/.test(p) && /rm --force tb/.test(p)), JSON.stringify(rep));
    assert.ok((await nets.check()).some((p) => /firewall not compared/.test(p)));
    assert.is(rules(), before, 'its rules are exactly as they were');
    assert.is(await reach(undefined, up.hostIp, 8099), 't1', 'its published port still answers');
    assert.equal(ipJson<any[]>(['link', 'show', 'tb']).length, 1, 'its bridge stays');
  }
  await nets.remove('tb', { force: true });
  assert.equal(ipJson<any[]>(['link', 'show']).filter((l) => l.ifname === 'tb').length, 0);
  assert.not.match(rules(), /tsnetlink:tb/, 'its rules went with rm --force');
  assert.equal(nets.unreadable(), []);
  // An unreadable endpoint record: the container it names is still found and freed by prune.
  const c1 = container('k1');
  const c2 = container('k2');
  await nets.connect(NET, c1.ns, { id: 'k1' });
  const k2 = await nets.connect(NET, c2.ns, { id: 'k2', ports: ['8096:80'] });
  writeFileSync(nets.store.endpointFile(NET, 'k2'), '{"id": "k2"');
  // Disconnecting another container by its netns does not read every record: it just works.
  const found = nets.endpointOf(NET, c1.ns);
  assert.is(found?.id, 'k1');
  assert.is(await nets.disconnect(NET, 'k1'), true);
  const pruned = await nets.prune(NET);
  assert.ok(pruned.includes('k2'), `pruned ${pruned}`);
  assert.equal(ipIn<any[]>(c2, ['link', 'show']).map((l) => l.ifname), ['lo'], 'its veth is gone (found by its tag)');
  assert.not.ok(nets.store.listPorts().some((p) => p.hostPort === 8096), 'its host port is free');
  assert.not.ok(new Set(nets.inspect(NET).endpoints.map((e) => e.ip)).has(k2.ip), 'its address is free');
  await assertConsistent('after an unreadable endpoint record was pruned');
});

test('a create killed before its intent leaves its network directory with a lock: check names it, prune removes it', async () => {
  // What a create killed after taking the network lock and before writing its record leaves.
  mkdirSync(nets.store.networkDir('ghost'), { recursive: true });
  writeFileSync(nets.store.networkLockPath('ghost'), '');
  const problems = await nets.check();
  assert.ok(problems.some((p) => /state directory of network ghost without a record/.test(p)), problems.join('\n'));
  const r = await nets.pruneReport();
  assert.ok(r.actions.some((a) => /removed the state directory of network ghost/.test(a)), r.actions.join('\n'));
  assert.not.ok(existsSync(nets.store.networkDir('ghost')));
  await assertConsistent('after a leftover network directory was pruned');
});

test('a damaged IP or host-port reservation of a live endpoint is restored, never handed out again', async () => {
  const c = container('res1');
  const ep = await nets.connect(NET, c.ns, { id: 'res1', ports: ['8098:80'] });
  const ipFile = `${nets.store.networkDir(NET)}/ips/${ep.ip}`;
  const portFile = nets.store.portFile({ protocol: 'tcp', hostPort: 8098, hostIp: '0.0.0.0' });
  writeFileSync(ipFile, '');
  writeFileSync(portFile, '');
  const r = await nets.pruneReport();
  assert.not.ok(r.actions.some((a) => a.includes(`freed ${ep.ip}`) || a.includes('freed host port tcp/8098')), r.actions.join('\n'));
  assert.ok(r.actions.some((a) => a.includes(`restored the reservation of ${ep.ip}`)), r.actions.join('\n'));
  assert.ok(r.actions.some((a) => a.includes('restored the host port reservation tcp/8098')), r.actions.join('\n'));
  assert.is(readFileSync(ipFile, 'utf8'), 'res1');
  // The next connect gets another address, and the same host port is refused.
  const c2 = container('res2');
  const other = await nets.connect(NET, c2.ns, { id: 'res2' });
  assert.is.not(other.ip, ep.ip);
  const e = await catchAsync(() => nets.connect(NET, container('res3').ns, { id: 'res3', ports: ['8098:80'] }));
  assert.match(String(e), /8098/);
  assert.is(await reach(undefined, up.hostIp, 8098), 'res1', 'the port still reaches its owner');
  await nets.disconnect(NET, 'res1');
  await nets.disconnect(NET, 'res2');
  await assertConsistent('after damaged reservations were restored');
});

test('after disconnect, no tracked connection of the container is left', async () => {
  const c = container('ct');
  const ep = await nets.connect(NET, c.ns, { id: 'ct', ports: ['8097:80'] });
  assert.is(await reach({ name: 'up', ns: up.ns } as Box, up.hostIp, 8097), 'ct');
  await reach(c, up.ip, 9, 300);
  const count = (flag: string): number => (execFileSync('conntrack', ['-L', '-f', 'ipv4', flag, ep.ip], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split('\n').filter((l) => l !== '')).length;
  assert.ok(count('--reply-src') + count('--orig-src') > 0, 'traffic made entries');
  await nets.disconnect(NET, 'ct');
  assert.is(count('--orig-src'), 0, 'outbound entries flushed');
  assert.is(count('--reply-src'), 0, 'inbound (DNAT) entries flushed');
});

test('everything agrees at the end', async () => {
  await nets.disconnect(NET, 'stay');
  await assertConsistent('at the end');
});

test.run();
