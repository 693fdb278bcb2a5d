import { test } from 'uvu';
import { catchError as caught } from '../helpers.js';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fakeEndpoint } from '../helpers.js';
import { macForIp, type NetworkRecord } from '../../src/bridge/records.js';
import { parseSubnet } from '../../src/ip/cidr.js';
import { dnatChainName } from '../../src/firewall/iptables/rules.js';
import { ValidationError } from '../../src/errors.js';
import { flock, LOCK_EX, LOCK_NB, LOCK_UN } from '../../src/sys/libc.js';
import {
  LockTimeoutError,
  Store,
  StoreError,
  listNames,
  readJson,
  withLock,
  withLockSync,
  writeFileAtomic,
  writeJsonAtomic,
} from '../../src/bridge/store.js';

// tmpfs like /run in production; a disk-backed /tmp makes every rename a flush on ext4.
const tmpBase = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
const roots: string[] = [];
function tempRoot(): string {
  const d = mkdtempSync(join(tmpBase, 'tsnetlink-store-'));
  roots.push(d);
  return join(d, 'state'); // not yet existing: the store creates it
}
test.after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

function mode(p: string): number {
  return statSync(p).mode & 0o777;
}


function net(name: string, subnet = '10.1.0.1/24', extra: Partial<NetworkRecord> = {}): NetworkRecord {
  const [gateway = '', prefix = '24'] = subnet.split('/');
  const n = Number(prefix);
  const network = parseSubnet(subnet).subnet;
  return { name, driver: 'bridge', bridge: name, subnet: network, gateway, prefix: n, subnets: [{ family: 4, subnet: network, gateway, prefix: n }], mac: macForIp(gateway), internal: false, icc: true, gatewayMode: 'nat', firewall: 'iptables', state: 'active', createdAt: new Date(0).toISOString(), ...extra };
}

test('root is created 0700 and records 0600', () => {
  const store = new Store({ root: tempRoot() });
  store.putNetwork(net('net1'));
  store.putEndpoint(fakeEndpoint('net1', 'ep1', '10.1.0.2'));
  assert.is(mode(store.root), 0o700);
  assert.is(mode(join(store.root, 'networks')), 0o700);
  assert.is(mode(store.networkDir('net1')), 0o700);
  assert.is(mode(join(store.networkDir('net1'), 'endpoints')), 0o700);
  assert.is(mode(store.networkFile('net1')), 0o600);
  assert.is(mode(store.endpointFile('net1', 'ep1')), 0o600);
  store.withNetworkLockSync('net1', () => undefined);
  assert.is(mode(store.networkLockPath('net1')), 0o600);
});

test('an existing root with wide permissions is tightened', () => {
  const root = tempRoot();
  mkdirSync(root, { mode: 0o755 });
  chmodSync(root, 0o755);
  new Store(root).init();
  assert.is(mode(root), 0o700);
});

test('a state directory that is a symlink, or under a directory others can write, is refused', () => {
  const base = dirname(tempRoot());
  mkdirSync(join(base, 'real'), { mode: 0o700 });
  symlinkSync(join(base, 'real'), join(base, 'link'));
  const e = caught(() => new Store(join(base, 'link')).init()) as StoreError;
  assert.instance(e, StoreError);
  assert.is(e.code, 'EINSECURE');
  mkdirSync(join(base, 'open'), { mode: 0o777 });
  chmodSync(join(base, 'open'), 0o777); // world-writable, no sticky bit: anyone could swap "state"
  const e2 = caught(() => new Store(join(base, 'open', 'state')).init()) as StoreError;
  assert.is(e2.code, 'EINSECURE');
  assert.match(e2.message, /writable by others/);
  chmodSync(join(base, 'open'), 0o1777); // sticky, as /tmp: fine
  new Store(join(base, 'open', 'state2')).init();
});

test('reading commands (ls, inspect) refuse what writing ones refuse, changing nothing: a root others can write or own', () => {
  const missing = tempRoot();
  new Store(missing).verify();
  assert.not.ok(existsSync(missing), 'a missing root is fine to list and is not created');
  const open = tempRoot();
  mkdirSync(open);
  chmodSync(open, 0o777);
  const e = caught(() => new Store(open).verify()) as StoreError;
  assert.is(e.code, 'EINSECURE');
  assert.match(e.message, /writable by others \(mode 777\)/);
  assert.is(mode(open), 0o777, 'verify changes nothing');
  if (process.getuid?.() === 0) {
    chmodSync(open, 0o700);
    chownSync(open, 65534, 65534);
    const e2 = caught(() => new Store(open).verify()) as StoreError;
    assert.is(e2.code, 'EINSECURE');
    assert.match(e2.message, /owned by uid 65534/);
  }
});

test('state files are never read through a symlink', () => {
  const store = new Store(tempRoot());
  store.putNetwork(net('a'));
  const secret = join(dirname(store.root), 'secret.json');
  writeFileSync(secret, JSON.stringify(net('b')));
  rmSync(store.networkFile('a'));
  symlinkSync(secret, store.networkFile('a'));
  const e = caught(() => store.getNetwork('a')) as NodeJS.ErrnoException;
  assert.is(e.code, 'ELOOP');
});

test('network and endpoint CRUD', () => {
  const store = new Store(tempRoot());
  assert.is(store.getNetwork('a'), undefined);
  store.putNetwork(net('b', '10.2.0.1/24'));
  store.putNetwork(net('a'));
  store.putNetwork(net('a', '10.1.0.1/24', { mtu: 1400 }));
  assert.is(store.getNetwork('a')?.mtu, 1400);
  assert.equal(store.networkNames(), ['a', 'b']);
  assert.equal(store.listNetworks().records.map((r) => r.name), ['a', 'b']);
  store.putEndpoint(fakeEndpoint('a', 'e2', '10.1.0.3'));
  store.putEndpoint(fakeEndpoint('a', 'e1', '10.1.0.2'));
  assert.is(store.getEndpoint('a', 'e1')?.ip, '10.1.0.2');
  assert.equal(store.endpointIds('a'), ['e1', 'e2']);
  assert.equal(store.listEndpoints('a').records.map((e) => e.ip), ['10.1.0.2', '10.1.0.3']);
  assert.ok(store.removeEndpoint('a', 'e1'));
  assert.not.ok(store.removeEndpoint('a', 'e1'));
  assert.equal(store.endpointIds('a'), ['e2']);
  assert.equal(store.endpointIds('nope'), []);
  assert.ok(store.removeNetwork('a'));
  assert.not.ok(store.removeNetwork('a'));
  assert.equal(store.networkNames(), ['b']);
  assert.equal(store.endpointIds('a'), []);
});

test('records of older versions get the defaults those versions behaved by', () => {
  const store = new Store(tempRoot());
  store.init();
  writeFileSync(store.networkFile('old'), JSON.stringify({ name: 'old', driver: 'bridge', bridge: 'old', subnet: '10.9.0.0/24', gateway: '10.9.0.1', prefix: 24 }));
  const r = store.getNetwork('old')!;
  assert.equal([r.state, r.icc, r.internal, r.gatewayMode, r.mac], ['active', true, false, 'nat', '02:42:0a:09:00:01']);
});

test('names and ids: one rule everywhere; anything that could escape its directory is refused', () => {
  const store = new Store(tempRoot());
  for (const bad of ['', '..', '.hidden', 'a/b', '../x', 'a b', 'x'.repeat(16), 'x.json']) {
    const e = caught(() => store.networkFile(bad));
    assert.instance(e, ValidationError, bad);
  }
  for (const bad of ['', '..', '.hidden', 'a/b', 'a b', 'x'.repeat(65)]) {
    const e2 = caught(() => store.getEndpoint('ok', bad));
    assert.instance(e2, ValidationError, bad);
  }
  // 64 characters (a CNI container id) is the longest id, for the store and the rule builder alike.
  assert.is(store.getEndpoint('ok', 'a'.repeat(64)), undefined);
  assert.match(dnatChainName('ok', 'a'.repeat(64)), /^TSN-DN-[0-9a-f]{16}$/);
  assert.instance(caught(() => dnatChainName('ok', 'a'.repeat(65))), ValidationError);
});

test('corrupt records: ECORRUPT naming the file and field; listings keep the readable ones', () => {
  const store = new Store(tempRoot());
  store.putNetwork(net('good'));
  store.putNetwork(net('n', '10.3.0.1/24'));
  for (const [text, why] of [['', /not valid JSON/], ['{oops', /not valid JSON/], ['{}', /field "name"/], ['[]', /not a JSON object/], ['{"name":"n","bridge":"n","gateway":"10.3.0.1","prefix":99,"subnet":"x"}', /field "subnet"/]] as const) {
    writeFileSync(store.networkFile('n'), text);
    const e = caught(() => store.getNetwork('n')) as StoreError;
    assert.instance(e, StoreError);
    assert.is(e.code, 'ECORRUPT');
    assert.match(e.message, why);
    assert.ok(e.message.includes(store.networkFile('n')), 'names the file');
    const l = store.listNetworks();
    assert.equal(l.records.map((r) => r.name), ['good']);
    assert.equal(l.corrupt.map((c) => c.name), ['n']);
  }
  store.putEndpoint(fakeEndpoint('good', 'e1', '10.1.0.2'));
  writeFileSync(store.endpointFile('good', 'e2'), '{"id":"e2"}');
  const l = store.listEndpoints('good');
  assert.equal(l.records.map((r) => r.id), ['e1']);
  assert.equal(l.corrupt.map((c) => c.name), ['e2']);
});

test('records from before dual stack read as their one IPv4 subnet and address; dual-stack records round-trip', () => {
  const store = new Store(tempRoot());
  store.putNetwork(net('old', '10.4.0.1/24'));
  // The shapes an earlier version wrote: no subnets, no addresses.
  const { subnets: _s, ...oldNet } = net('old', '10.4.0.1/24');
  writeFileSync(store.networkFile('old'), JSON.stringify(oldNet));
  assert.equal(store.getNetwork('old')!.subnets, [{ family: 4, subnet: '10.4.0.0/24', gateway: '10.4.0.1', prefix: 24 }]);
  store.putEndpoint(fakeEndpoint('old', 'e1', '10.4.0.2'));
  const { addresses: _a, ...oldEp } = fakeEndpoint('old', 'e1', '10.4.0.2');
  writeFileSync(store.endpointFile('old', 'e1'), JSON.stringify(oldEp));
  assert.equal(store.getEndpoint('old', 'e1')!.addresses, [{ family: 4, ip: '10.4.0.2', cidr: '10.4.0.2/24', gateway: '10.4.0.1' }]);
  const ds = { ...net('ds', '10.5.0.1/24'), subnets: [{ family: 4 as const, subnet: '10.5.0.0/24', gateway: '10.5.0.1', prefix: 24 }, { family: 6 as const, subnet: 'fd00:5::/64', gateway: 'fd00:5::1', prefix: 64 }] };
  store.putNetwork(ds);
  assert.equal(store.getNetwork('ds'), ds);
  const ep = { ...fakeEndpoint('ds', 'e2', '10.5.0.2'), addresses: [{ family: 4 as const, ip: '10.5.0.2', cidr: '10.5.0.2/24', gateway: '10.5.0.1' }, { family: 6 as const, ip: 'fd00:5::2', cidr: 'fd00:5::2/64', gateway: 'fd00:5::1' }] };
  store.putEndpoint(ep);
  assert.equal(store.getEndpoint('ds', 'e2'), ep);
  for (const [bad, why] of [
    [{ ...ds, subnets: [ds.subnets[1], ds.subnets[0]] }, /IPv4 and one IPv6, in that order/],
    [{ ...ds, subnets: [ds.subnets[0], { ...ds.subnets[1]!, subnet: 'fd00:6::/64' }] }, /does not match/],
    [{ ...ds, subnet: '10.6.0.0/24' }, /does not match the first of subnets/],
  ] as const) {
    writeFileSync(store.networkFile('ds'), JSON.stringify(bad));
    assert.match((caught(() => store.getNetwork('ds')) as Error).message, why);
  }
  writeFileSync(store.endpointFile('ds', 'e2'), JSON.stringify({ ...ep, addresses: [ep.addresses[0], { ...ep.addresses[1]!, ip: 'FD00:5::2' }] }));
  assert.match((caught(() => store.getEndpoint('ds', 'e2')) as Error).message, /not a canonical address/);
});

test('atomic write leaves no temp files and replaces content', () => {
  const dir = join(tempRoot(), 'd');
  const f = join(dir, 'x.json');
  for (let i = 0; i < 50; i++) writeJsonAtomic(f, { i });
  assert.equal(readJson(f), { i: 49 });
  assert.equal(readdirSync(dir), ['x.json']);
  assert.is(mode(f), 0o600);
  writeFileAtomic(join(dir, 'raw'), new Uint8Array([104, 105]));
  assert.equal(readdirSync(dir).sort(), ['raw', 'x.json']);
});

test('a failed atomic write cleans its temp file', () => {
  const dir = join(tempRoot(), 'd');
  const target = join(dir, 'sub');
  writeFileAtomic(join(target, 'inner'), 'x'); // makes 'sub' a non-empty directory
  const e = caught(() => writeFileAtomic(target, 'y')); // rename over a directory fails
  assert.ok(e instanceof Error && 'code' in e);
  assert.equal(readdirSync(dir), ['sub']);
});

test('listNames skips temp files and other extensions', () => {
  const dir = join(tempRoot(), 'l');
  writeFileAtomic(join(dir, 'b.json'), '{}');
  writeFileAtomic(join(dir, 'a.json'), '{}');
  writeFileAtomic(join(dir, 'c.txt'), '');
  writeFileAtomic(join(dir, '.a.json.1.0.tmp'), '');
  assert.equal(listNames(dir, '.json'), ['a', 'b']);
  assert.equal(listNames(join(dir, 'missing'), '.json'), []);
});

test('lock held through a second open file description times out with LockTimeoutError', () => {
  const store = new Store(tempRoot());
  store.init();
  const lockPath = store.globalLockPath();
  const fd = openSync(lockPath, 'a+', 0o600);
  try {
    assert.ok(flock(fd, LOCK_EX));
    const t0 = performance.now();
    const e = caught(() => withLockSync(lockPath, () => 1, { timeoutMs: 150 }));
    const waited = performance.now() - t0;
    assert.instance(e, LockTimeoutError);
    assert.is((e as LockTimeoutError).code, 'ELOCKTIMEOUT');
    assert.ok(waited >= 140 && waited < 2000, `waited ${waited} ms`);
  } finally {
    flock(fd, LOCK_UN);
    closeSync(fd);
  }
  assert.is(withLockSync(lockPath, () => 7), 7);
});

test('lock held by a child process times out, then is acquired once the child releases it', async () => {
  const store = new Store(tempRoot());
  store.init();
  const lockPath = store.globalLockPath();
  const storeModule = new URL('../../src/bridge/store.js', import.meta.url).href;
  const script = `
    const { withLock } = await import(${JSON.stringify(storeModule)});
    await withLock(${JSON.stringify(lockPath)}, () => new Promise((done) => {
      process.stdout.write('locked\\n');
      process.stdin.once('data', done);
    }));
    process.exit(0);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((res, rej) => {
      child.stdout.once('data', () => res());
      child.once('exit', (c) => rej(new RangeError(`child exited early (${c})`)));
    });
    const e = caught(() => withLockSync(lockPath, () => 1, { timeoutMs: 100 }));
    assert.instance(e, LockTimeoutError);
    assert.is((e as LockTimeoutError).holderPid, child.pid);
    let asyncErr: unknown;
    await withLock(lockPath, () => 1, { timeoutMs: 100 }).catch((x: unknown) => (asyncErr = x));
    assert.instance(asyncErr, LockTimeoutError);
    // The async variant waits without blocking: release the child while it polls.
    const waiting = withLock(lockPath, () => 'got it', { timeoutMs: 5000 });
    child.stdin.write('x');
    assert.is(await waiting, 'got it');
  } finally {
    child.kill();
  }
});

test('locks are re-entrant within one call chain and released on throw', async () => {
  const store = new Store(tempRoot());
  const r = store.withNetworkLockSync('n', () => store.withNetworkLockSync('n', () => 5, { timeoutMs: 50 }));
  assert.is(r, 5);
  const r2 = await store.withNetworkLock('n', async () => {
    await new Promise((res) => setTimeout(res, 1));
    return store.withNetworkLockSync('n', () => 6, { timeoutMs: 50 });
  });
  assert.is(r2, 6);
  const thrown = caught(() =>
    store.withNetworkLockSync('n', () => {
      throw new RangeError('boom');
    }),
  );
  assert.instance(thrown, RangeError);
  // Released: a second description can take it.
  const fd = openSync(store.networkLockPath('n'), 'a+');
  try {
    assert.ok(flock(fd, LOCK_EX | LOCK_NB));
  } finally {
    flock(fd, LOCK_UN);
    closeSync(fd);
  }
});

test('a sync wait on a lock held by another async task fails fast with EDEADLK', async () => {
  const store = new Store(tempRoot());
  let release!: () => void;
  const held = store.withNetworkLock('n', () => new Promise<void>((r) => (release = r)));
  await new Promise((r) => setTimeout(r, 5));
  const e = caught(() => store.withNetworkLockSync('n', () => 1, { timeoutMs: 5000 }));
  assert.instance(e, StoreError);
  assert.is((e as StoreError).code, 'EDEADLK');
  // An async waiter from another task just waits its turn.
  const other = store.withNetworkLock('n', () => 'second');
  release();
  await held;
  assert.is(await other, 'second');
});

test('shared holds coexist and keep an exclusive taker out; a shared hold is not upgraded', async () => {
  const store = new Store(tempRoot());
  const lockPath = store.networkLockPath('n');
  let releaseA!: () => void;
  let releaseB!: () => void;
  const a = store.withNetworkLock('n', () => new Promise<void>((r) => (releaseA = r)), { shared: true });
  const b = store.withNetworkLock('n', () => new Promise<void>((r) => (releaseB = r)), { shared: true });
  await new Promise((r) => setTimeout(r, 20));
  // Both shared holds are in: a second description cannot take it exclusive.
  const fd = openSync(lockPath, 'a+');
  try {
    assert.not.ok(flock(fd, LOCK_EX | LOCK_NB));
  } finally {
    closeSync(fd);
  }
  let order: string[] = [];
  const ex = store.withNetworkLock('n', () => void order.push('exclusive'), { timeoutMs: 5000 });
  releaseA();
  await a;
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(order, [], 'the exclusive taker waits for the last shared holder');
  releaseB();
  await b;
  await ex;
  assert.equal(order, ['exclusive']);
  order = [];
  const e = await store.withNetworkLock('n', () => store.withNetworkLock('n', () => 1).catch((x: unknown) => x), { shared: true });
  assert.instance(e, StoreError);
  assert.is((e as StoreError).code, 'EDEADLK');
});

test('an exclusive taker waiting at the gate goes before shared takers that come after it', async () => {
  const store = new Store(tempRoot());
  const order: string[] = [];
  let release!: () => void;
  const first = store.withNetworkLock('n', () => new Promise<void>((r) => (release = r)), { shared: true });
  await new Promise((r) => setTimeout(r, 10));
  const ex = store.withNetworkLock('n', () => void order.push('exclusive'));
  await new Promise((r) => setTimeout(r, 10));
  const late = store.withNetworkLock('n', () => void order.push('shared'), { shared: true });
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(order, [], 'the later shared taker does not pass the waiting exclusive one');
  release();
  await Promise.all([first, ex, late]);
  assert.equal(order, ['exclusive', 'shared']);
});

test('endpoint locks: taken in id order, their files gone once released', async () => {
  const store = new Store(tempRoot());
  store.putNetwork(net('n'));
  const dir = dirname(store.endpointLockPath('n', 'a'));
  const seen = await store.withEndpointLocks('n', ['b', 'a', 'b'], () => readdirSync(dir).sort());
  assert.equal(seen, ['a.lock', 'b.lock']);
  assert.equal(readdirSync(dir), []);
  assert.equal(store.endpointLockIds('n'), []);
  // A waiter that opened the file before it was removed gets the lock on the file that is there now.
  let release!: () => void;
  const held = store.withEndpointLocks('n', ['a'], () => new Promise<void>((r) => (release = r)));
  await new Promise((r) => setTimeout(r, 10));
  const waiting = store.withEndpointLocks('n', ['a'], () => existsSync(store.endpointLockPath('n', 'a')));
  await new Promise((r) => setTimeout(r, 60));
  release();
  await held;
  assert.is(await waiting, true, 'the waiter holds a lock file of its own');
  assert.equal(readdirSync(dir), []);
});

test('a long wait is a blocked flock(1) child, not polling: the lock is taken when freed, a timeout still fails', async () => {
  const store = new Store(tempRoot());
  store.init();
  const lockPath = store.globalLockPath();
  const fd = openSync(lockPath, 'a+', 0o600);
  assert.ok(flock(fd, LOCK_EX));
  try {
    const e = await withLock(lockPath, () => 1, { timeoutMs: 300 }).catch((x: unknown) => x);
    assert.instance(e, LockTimeoutError);
    const waiting = withLock(lockPath, () => 'got it', { timeoutMs: 5000 });
    await new Promise((r) => setTimeout(r, 300));
    const children = readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .flatMap((d) => {
        try {
          const st = readFileSync(`/proc/${d}/stat`, 'utf8');
          return [{ comm: st.slice(st.indexOf('(') + 1, st.lastIndexOf(')')), ppid: Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]) }];
        } catch {
          return [];
        }
      })
      .filter((p) => p.ppid === process.pid);
    if (existsSync('/usr/bin/flock') || existsSync('/bin/flock')) assert.ok(children.some((c) => c.comm === 'flock'), `children: ${JSON.stringify(children)}`);
    flock(fd, LOCK_UN);
    assert.is(await waiting, 'got it');
  } finally {
    flock(fd, LOCK_UN);
    closeSync(fd);
  }
});

test('a network removed under its lock can be locked again', () => {
  const store = new Store(tempRoot());
  store.putNetwork(net('gone'));
  store.withNetworkLockSync('gone', () => store.removeNetwork('gone'));
  assert.is(store.withNetworkLockSync('gone', () => 'again'), 'again');
});

test.run();
