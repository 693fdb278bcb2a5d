import { test } from 'uvu';
import { catchError as caught } from '../helpers.js';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ValidationError } from '../../src/errors.js';
import { flock, LOCK_EX, LOCK_NB, LOCK_UN } from '../../src/netlink/libc.js';
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


test('root is created 0700 and records 0600', () => {
  const store = new Store({ root: tempRoot() });
  store.putNetwork('net1', { name: 'net1', subnet: '10.1.0.0/24' });
  store.putEndpoint('net1', 'ep1', { id: 'ep1', ip: '10.1.0.2' });
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

test('network and endpoint CRUD', () => {
  const store = new Store(tempRoot());
  assert.is(store.getNetwork('a'), undefined);
  store.putNetwork('b', { name: 'b' });
  store.putNetwork('a', { name: 'a', n: 1 });
  store.putNetwork('a', { name: 'a', n: 2 });
  assert.equal(store.getNetwork('a'), { name: 'a', n: 2 });
  assert.equal(store.listNetworkNames(), ['a', 'b']);
  assert.equal(
    store.listNetworks<{ name: string }>().map((r) => r.name),
    ['a', 'b'],
  );

  interface Ep {
    id: string;
    ip: string;
  }
  store.putEndpoint<Ep>('a', 'e2', { id: 'e2', ip: '10.0.0.3' });
  store.putEndpoint<Ep>('a', 'e1', { id: 'e1', ip: '10.0.0.2' });
  assert.equal(store.getEndpoint<Ep>('a', 'e1'), { id: 'e1', ip: '10.0.0.2' });
  assert.equal(store.listEndpointIds('a'), ['e1', 'e2']);
  assert.equal(
    store.listEndpoints<Ep>('a').map((e) => e.ip),
    ['10.0.0.2', '10.0.0.3'],
  );
  assert.ok(store.removeEndpoint('a', 'e1'));
  assert.not.ok(store.removeEndpoint('a', 'e1'));
  assert.equal(store.listEndpointIds('a'), ['e2']);
  assert.equal(store.listEndpointIds('nope'), []);

  assert.ok(store.removeNetwork('a'));
  assert.not.ok(store.removeNetwork('a'));
  assert.equal(store.listNetworkNames(), ['b']);
  assert.equal(store.listEndpointIds('a'), []);
});

test('names that could escape their directory are refused', () => {
  const store = new Store(tempRoot());
  for (const bad of ['', '..', '.hidden', 'a/b', '../x', 'a b', 'x'.repeat(129)]) {
    const e = caught(() => store.putNetwork(bad, {}));
    assert.instance(e, ValidationError, bad);
    const e2 = caught(() => store.getEndpoint('ok', bad));
    assert.instance(e2, ValidationError, bad);
  }
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

test('corrupt JSON gives StoreError ECORRUPT', () => {
  const store = new Store(tempRoot());
  store.putNetwork('n', {});
  writeFileSync(store.networkFile('n'), '{oops');
  const e = caught(() => store.getNetwork('n'));
  assert.instance(e, StoreError);
  assert.is((e as StoreError).code, 'ECORRUPT');
});

test('lock held through a second open file description times out with LockTimeoutError', () => {
  const store = new Store(tempRoot());
  store.init();
  const lockPath = store.globalLockPath();
  const fd = openSync(lockPath, 'a+', 0o600);
  try {
    assert.ok(flock(fd, LOCK_EX));
    const t0 = performance.now();
    const e = caught(() => store.withGlobalLockSync(() => 1, { timeoutMs: 150 }));
    const waited = performance.now() - t0;
    assert.instance(e, LockTimeoutError);
    assert.is((e as LockTimeoutError).code, 'ELOCKTIMEOUT');
    assert.ok(waited >= 140 && waited < 2000, `waited ${waited} ms`);
  } finally {
    flock(fd, LOCK_UN);
    closeSync(fd);
  }
  assert.is(store.withGlobalLockSync(() => 7), 7);
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

test('a network removed under its lock can be locked again', () => {
  const store = new Store(tempRoot());
  store.putNetwork('gone', {});
  store.withNetworkLockSync('gone', () => store.removeNetwork('gone'));
  assert.is(store.withNetworkLockSync('gone', () => 'again'), 'again');
});

test.run();
