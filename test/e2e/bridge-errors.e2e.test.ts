/**
 * End-to-end: bad input at every entry point of Networks gives a clear typed error and leaves
 * the host and the state exactly as they were. "Exactly" is read back from outside: `ip -j`
 * links, IPv4 addresses and routes (host and container netns), iptables-save, and every file
 * in the state directory with its content. Runs in the sandbox scripts/test.mjs provides.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Networks, createNamedNetns, deleteNamedNetns, type NetnsHandle } from '../../src/index.js';
import { ipJson, leakGuard, requireSandbox } from '../helpers.js';
import { NFT } from './fw-oracle.js';

requireSandbox('bridge-errors');

const RESTORE = process.env['TSNETLINK_IPTABLES_RESTORE'] ?? 'iptables-restore';
const SAVE = RESTORE.replace(/-restore$/, '-save');
const NET = 'errnet';
const TINY = 'tiny';

const nets = new Networks();
const handles = new Map<string, NetnsHandle>();
let guard: ReturnType<typeof leakGuard>;
let initialRules: string[];

// ------------------------------------------------------------------ snapshot of everything

function normalizedSave(): string[] {
  return execFileSync(SAVE, { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => l.replace(/ \[\d+:\d+\]$/, '').replace(/^\[\d+:\d+\] /, ''));
}

/** Every state file with its content; lock files (a holder writes its pid) and the IPAM cursor
 * (a round-robin hint that a rolled-back allocation may advance) by name only. */
function stateFiles(root = nets.store.root): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string): void => {
    let entries: string[] = [];
    try {
      entries = readdirSync(dir);
    } catch {
      return;
    }
    for (const e of entries.sort()) {
      const p = join(dir, e);
      if (statSync(p).isDirectory()) walk(p);
      else out[p.slice(root.length + 1)] = e === 'lock' || e.endsWith('.lock') || e === 'last' ? '' : readFileSync(p, 'utf8');
    }
  };
  walk(root);
  return out;
}

/** Links (flags that follow carrier asynchronously left out), IPv4 addresses and routes of a netns. */
function netnsView(netns?: string, skipLo = false): unknown {
  const volatile = new Set(['LOWER_UP', 'NO-CARRIER', 'M-DOWN']);
  const lo = (x: { ifname?: string; dev?: string }): boolean => !skipLo || (x.ifname ?? x.dev) !== 'lo';
  return {
    links: ipJson<any[]>(['-d', 'link', 'show'], netns).filter(lo).map((l) => ({
      ifname: l.ifname,
      ifindex: l.ifindex,
      kind: l.linkinfo?.info_kind,
      master: l.master,
      mtu: l.mtu,
      address: l.address,
      flags: (l.flags as string[]).filter((f) => !volatile.has(f)),
      hairpin: l.linkinfo?.info_slave_data?.hairpin,
    })),
    addrs: ipJson<any[]>(['-4', 'addr', 'show'], netns).filter(lo).map((i) => `${i.ifname}: ${i.addr_info.map((a: any) => `${a.local}/${a.prefixlen}`).join(' ')}`),
    routes: ipJson<any[]>(['-4', 'route', 'show', 'table', 'all'], netns).filter(lo).map((r) => JSON.stringify(r)),
  };
}

/** The snapshot as sorted "section: item" lines, so a difference reads as a short +/- list. */
function snapshot(): string[] {
  const lines: string[] = [];
  const flat = (prefix: string, v: unknown): void => {
    if (Array.isArray(v)) v.forEach((x) => lines.push(`${prefix}: ${typeof x === 'string' ? x : JSON.stringify(x)}`));
    else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) flat(prefix ? `${prefix}.${k}` : k, x);
    else lines.push(`${prefix}: ${JSON.stringify(v)}`);
  };
  flat('', snapshotTree());
  return lines;
}

function changes(before: string[], after: string[]): string[] {
  const b = new Set(before);
  const a = new Set(after);
  return [...before.filter((l) => !a.has(l)).map((l) => `- ${l}`), ...after.filter((l) => !b.has(l)).map((l) => `+ ${l}`)];
}

function snapshotTree(): unknown {
  return {
    host: netnsView(),
    // In a container, lo may be left up by a rolled-back connect (harmless, not undone on purpose).
    containers: Object.fromEntries([...handles.keys()].sort().map((n) => [n, netnsView(n, true)])),
    netns: readdirSync('/run/netns').sort(),
    iptables: normalizedSave(),
    state: Object.entries(stateFiles()).map(([f, c]) => `${f} = ${JSON.stringify(c)}`),
    sysctls: ['ip_forward'].map((s) => readFileSync(`/proc/sys/net/ipv4/${s}`, 'utf8').trim()),
  };
}

interface Expect {
  name: string;
  code: string;
  /** For a StepError: the step that failed and the class of its cause. */
  step?: string;
  cause?: string;
  message?: RegExp;
}

/** Runs `fn`, which must fail as described, and proves host and state did not change. */
async function refused(what: string, fn: () => unknown, want: Expect): Promise<any> {
  const before = snapshot();
  let e: any;
  let accepted: any;
  try {
    accepted = await fn();
  } catch (x) {
    e = x;
  }
  if (e === undefined) {
    // Undo what was wrongly accepted so later tests are not affected, then fail.
    if (accepted?.id && accepted?.network) await nets.disconnect(accepted.network, accepted.id).catch(() => undefined);
    else if (accepted?.subnet && accepted?.name) await nets.remove(accepted.name, { force: true }).catch(() => undefined);
    assert.unreachable(`${what}: accepted instead of refused: ${JSON.stringify(accepted)}`);
  }
  assert.is(e?.name, want.name, `${what}: error class (${e?.stack ?? e})`);
  assert.is(e.code, want.code, `${what}: code (${e.message})`);
  if (want.step !== undefined) assert.is(e.step, want.step, `${what}: failed step (${e.message})`);
  if (want.cause !== undefined) assert.is(e.cause?.name, want.cause, `${what}: cause (${e.message})`);
  if (want.message) assert.match(e.message, want.message, what);
  if (want.name === 'StepError') assert.equal(e.rollbackErrors, [], `${what}: clean rollback`);
  const diff = changes(before, snapshot());
  assert.ok(diff.length === 0, `${what}: host and state changed:\n${diff.join('\n')}`);
  return e;
}

function container(name: string): NetnsHandle {
  const ns = createNamedNetns(name);
  handles.set(name, ns);
  return ns;
}

function dropContainer(name: string): void {
  handles.get(name)?.close();
  handles.delete(name);
  try {
    deleteNamedNetns(name);
  } catch {
    /* gone */
  }
}

// ------------------------------------------------------------------ fixtures

test.before(async () => {
  nets.host; // long-lived socket, opened before the leak guard's snapshot
  initialRules = normalizedSave();
  // Host things a new subnet must not overlap: a route on a link, an address, a route via a gateway.
  nets.host.linkAddVeth('hostv0', { name: 'hostv1' }, { up: true });
  nets.host.addrAdd('hostv0', '10.60.0.1/24');
  nets.host.addrAdd('hostv0', '10.70.0.5/32');
  execFileSync('ip', ['route', 'add', '10.80.0.0/16', 'via', '10.60.0.2']);
  await nets.create({ name: NET, subnet: '192.168.20.1/24' });
  await nets.connect(NET, container('holder'), { id: 'holder', ports: ['8080:80', '53:53/udp'] });
  container('victim');
  guard = leakGuard();
});

test.after(async () => {
  for (const n of [...handles.keys()]) dropContainer(n);
  for (const n of nets.list()) await nets.remove(n.name, { force: true }).catch(() => undefined);
  try {
    nets.host.linkDel('hostv0');
  } catch {
    /* gone */
  }
  nets.close();
});

// ------------------------------------------------------------------ network create

test('create: invalid CIDRs are ValidationErrors (garbage, /33, /7, /31, /32, bad octet, no prefix)', async () => {
  for (const subnet of ['garbage', '192.168.40.1/33', '10.0.0.0/7', '192.168.40.0/31', '192.168.40.0/32', '300.1.2.3/24', '192.168.40.1', '', '192.168.40.255/24', ' 192.168.40.1/24']) {
    const e = await refused(`subnet ${JSON.stringify(subnet)}`, () => nets.create({ name: 'newnet', subnet }), { name: 'ValidationError', code: 'EINVAL' });
    assert.is(e.field, 'subnet');
  }
});

test('create: invalid names and drivers are ValidationErrors', async () => {
  for (const name of ['a'.repeat(16), 'a/b', '', 'a b', '..', 'a:b']) {
    await refused(`name ${JSON.stringify(name)}`, () => nets.create({ name, subnet: '192.168.41.1/24' }), { name: 'ValidationError', code: 'EINVAL' });
  }
  await refused('driver overlay', () => nets.create({ name: 'newnet', subnet: '192.168.41.1/24', driver: 'overlay' as 'bridge' }), { name: 'ValidationError', code: 'EINVAL', message: /overlay/ });
});

test('create: a subnet overlapping another network is EOVERLAP', async () => {
  for (const subnet of ['192.168.20.1/24', '192.168.20.129/25', '192.168.0.1/16']) {
    await refused(`subnet ${subnet}`, () => nets.create({ name: 'newnet', subnet }), { name: 'NetworkError', code: 'EOVERLAP', message: new RegExp(NET) });
  }
});

test('create: a subnet overlapping a host route or address is EOVERLAP', async () => {
  await refused('connected route 10.60.0.0/24', () => nets.create({ name: 'newnet', subnet: '10.60.0.0/16' }), { name: 'NetworkError', code: 'EOVERLAP' });
  await refused('route via a gateway 10.80.0.0/16', () => nets.create({ name: 'newnet', subnet: '10.80.5.1/24' }), { name: 'NetworkError', code: 'EOVERLAP' });
  await refused('host address 10.70.0.5/32', () => nets.create({ name: 'newnet', subnet: '10.70.0.1/24' }), { name: 'NetworkError', code: 'EOVERLAP' });
});

test('create: a taken network name or host link name is ENETEXISTS', async () => {
  await refused('network name taken', () => nets.create({ name: NET, subnet: '192.168.42.1/24' }), { name: 'NetworkError', code: 'ENETEXISTS' });
  await refused('host link name taken', () => nets.create({ name: 'hostv0', subnet: '192.168.42.1/24' }), { name: 'NetworkError', code: 'ENETEXISTS' });
});

// ------------------------------------------------------------------ connect: input

test('connect: invalid port specs are ValidationErrors and touch nothing', async () => {
  for (const spec of ['0:80', '70000:80', '80', '80:80/sctp', 'a:b', '80:0', '', '80:80/', '-1:80', '1.2.3:80:80', '80:80:80:80']) {
    await refused(`port ${JSON.stringify(spec)}`, () => nets.connect(NET, handles.get('victim')!, { ports: [spec] }), { name: 'ValidationError', code: 'EINVAL' });
  }
});

test('connect: the same host port twice in one connect is a ValidationError', async () => {
  for (const ports of [['9000:80', '9000:81'], ['9000:80', '127.0.0.1:9000:81'], ['9000:80/udp', '9000:81/udp']]) {
    await refused(`ports ${ports}`, () => nets.connect(NET, handles.get('victim')!, { ports }), { name: 'ValidationError', code: 'EINVAL' });
  }
});

test('connect: invalid ifname, endpoint id or mtu are ValidationErrors', async () => {
  const victim = handles.get('victim')!;
  await refused('ifname too long', () => nets.connect(NET, victim, { ifname: 'e'.repeat(16) }), { name: 'ValidationError', code: 'EINVAL' });
  await refused('ifname with /', () => nets.connect(NET, victim, { ifname: 'eth/0' }), { name: 'ValidationError', code: 'EINVAL' });
  await refused('endpoint id ../evil', () => nets.connect(NET, victim, { id: '../evil' }), { name: 'ValidationError', code: 'EINVAL' });
  await refused('mtu 10', () => nets.connect(NET, victim, { mtu: 10 }), { name: 'ValidationError', code: 'EINVAL' });
});

// ------------------------------------------------------------------ connect: conflicts

test('connect: a host port published by another endpoint is EPORTINUSE', async () => {
  const victim = handles.get('victim')!;
  for (const ports of [['8080:81'], ['10.60.0.1:8080:81'], ['9001:80', '53:5353/udp']]) {
    const e = await refused(`ports ${ports}`, () => nets.connect(NET, victim, { ports }), { name: 'NetworkError', code: 'EPORTINUSE' });
    assert.match(e.message, /already published/);
  }
});

test('connect: missing network is ENONET; a dead pid is SysError ESRCH "no process", a missing netns name ENOENT', async () => {
  await refused('missing network', () => nets.connect('nosuch', handles.get('victim')!), { name: 'NetworkError', code: 'ENONET' });
  const dead = spawnSync('true');
  assert.ok(dead.pid);
  await refused(`dead pid ${dead.pid}`, () => nets.connect(NET, dead.pid), { name: 'SysError', code: 'ESRCH', message: new RegExp(`no process ${dead.pid}`) });
  await refused('missing netns name', () => nets.connect(NET, { name: 'nosuchns' }), { name: 'SysError', code: 'ENOENT' });
  await refused('a path that is not a netns', () => nets.connect(NET, { path: '/etc/hostname' }), { name: 'SysError', code: 'EINVAL' });
});

test('connect: the same container twice, or a taken endpoint id, is EALREADY', async () => {
  await refused('same netns again', () => nets.connect(NET, handles.get('holder')!, { id: 'other' }), { name: 'NetworkError', code: 'EALREADY', message: /already connected/ });
  await refused('same netns by name', () => nets.connect(NET, { name: 'holder' }), { name: 'NetworkError', code: 'EALREADY', message: /already connected/ });
  await refused('endpoint id taken', () => nets.connect(NET, handles.get('victim')!, { id: 'holder' }), { name: 'NetworkError', code: 'EALREADY', message: /holder/ });
});

test('connect: an ifname asked for that is present in the container is EALREADY; the default moves on to eth1', async () => {
  execFileSync('ip', ['-n', 'victim', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p']);
  try {
    await refused('eth0 taken', () => nets.connect(NET, handles.get('victim')!, { ifname: 'eth0', ports: ['9002:80'] }), { name: 'NetworkError', code: 'EALREADY', message: /eth0/ });
    // As Docker names a second network's interface: the next free ethN.
    const ep = await nets.connect(NET, handles.get('victim')!, { id: 'second', ports: ['9002:80'] });
    assert.is(ep.ifname, 'eth1');
    assert.equal(ipJson<any[]>(['-4', 'addr', 'show', 'eth1'], 'victim')[0].addr_info.map((a: any) => a.local), [ep.ip]);
    assert.is(await nets.disconnect(NET, 'second'), true);
  } finally {
    execFileSync('ip', ['-n', 'victim', 'link', 'del', 'eth0']);
  }
});

test('connect: a full /30 subnet is IpamError EIPAMFULL and nothing leaks', async () => {
  await nets.create({ name: TINY, subnet: '192.168.30.0/30' });
  const first = await nets.connect(TINY, container('full1'), { id: 'full1' });
  assert.is(first.ip, '192.168.30.2');
  container('full2');
  try {
    const e = await refused('second connect on /30', () => nets.connect(TINY, handles.get('full2')!, { id: 'full2', ports: ['9003:80'] }), { name: 'IpamError', code: 'EIPAMFULL' });
    assert.match(e.message, /no free address/);
  } finally {
    await nets.remove(TINY, { force: true });
    dropContainer('full1');
    dropContainer('full2');
  }
});

// ------------------------------------------------------------------ rollback half-way

/** A directory with an iptables-restore that always fails, next to the real iptables-save. */
function brokenIptables(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tsn-broken-ipt-'));
  writeFileSync(join(dir, 'iptables-restore'), '#!/bin/sh\ncat >/dev/null\necho "iptables-restore: line 1 failed" >&2\nexit 1\n', { mode: 0o755 });
  for (const tool of ['iptables-save', 'iptables']) {
    symlinkSync(execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim(), join(dir, tool));
  }
  return dir;
}

test('connect: iptables-restore failing rolls back veth, IP, ports and record (StepError "port mappings")', async () => {
  // A broken iptables-restore concerns only the iptables backend; nft.e2e covers failing nf_tables transactions.
  if (NFT) return;
  const dir = brokenIptables();
  const broken = new Networks({ iptables: { restoreBinary: join(dir, 'iptables-restore') } });
  try {
    const victim = handles.get('victim')!;
    const e = await refused('iptables-restore fails', () => broken.connect(NET, victim, { id: 'victim', ports: ['9004:80'] }), { name: 'StepError', code: 'EIPTABLES', step: 'port mappings' });
    assert.is(e.cause?.name, 'IptablesError');
    // And the same container connects fine afterwards: the rollback released everything.
    const ep = await nets.connect(NET, victim, { id: 'victim', ports: ['9004:80'] });
    assert.equal(ipJson<any[]>(['-4', 'addr', 'show', 'eth0'], 'victim')[0].addr_info.map((a: any) => a.local), [ep.ip]);
    await nets.disconnect(NET, 'victim');
  } finally {
    broken.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an iptables binary that is not an *-restore is refused when the manager is made, before any connect', async () => {
  await refused('restoreBinary /bin/false', () => new Networks({ iptables: { restoreBinary: '/bin/false' } }), { name: 'ValidationError', code: 'EINVAL', message: /restoreBinary/ });
});

// ------------------------------------------------------------------ other entry points

test('inspect, remove and disconnect: missing network is ENONET, bad names are ValidationErrors', async () => {
  await refused('inspect nosuch', () => nets.inspect('nosuch'), { name: 'NetworkError', code: 'ENONET' });
  await refused('remove nosuch', () => nets.remove('nosuch'), { name: 'NetworkError', code: 'ENONET' });
  await refused('disconnect on nosuch', () => nets.disconnect('nosuch', 'holder'), { name: 'NetworkError', code: 'ENONET' });
  await refused('inspect ../x', () => nets.inspect('../x'), { name: 'ValidationError', code: 'EINVAL' });
  await refused('disconnect id ../x', () => nets.disconnect(NET, '../x'), { name: 'ValidationError', code: 'EINVAL' });
});

test('disconnect of an unknown endpoint returns false and changes nothing', async () => {
  const before = snapshot();
  assert.is(await nets.disconnect(NET, 'nobody'), false);
  assert.equal(changes(before, snapshot()), []);
});

test('remove while endpoints are attached is EBUSY', async () => {
  await refused('remove errnet', () => nets.remove(NET), { name: 'NetworkError', code: 'EBUSY', message: /1 endpoint/ });
});

// ------------------------------------------------------------------ final

test('cleanup leaves the host as it was: no links but ours, iptables as before, no state, no leaks', async () => {
  await nets.remove(NET, { force: true });
  for (const n of [...handles.keys()]) dropContainer(n);
  nets.host.linkDel('hostv0');
  assert.equal(ipJson<any[]>(['link', 'show']).map((l) => l.ifname), ['lo']);
  assert.equal(normalizedSave().filter((l) => l.includes('TSN-')), []);
  assert.equal(normalizedSave().filter((l) => !initialRules.includes(l) && !/^(\*|:|COMMIT)/.test(l)), [], 'no rule added');
  assert.equal(Object.keys(stateFiles()).filter((f) => !f.endsWith('lock')), []);
  assert.equal(readdirSync('/run/netns'), []);
  guard.check();
});

test.run();
