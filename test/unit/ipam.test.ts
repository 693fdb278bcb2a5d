import { test } from 'uvu';
import { catchError as caught } from '../helpers.js';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ValidationError } from '../../src/errors.js';
import { contains, ipToU32, overlaps, parseSubnet, u32ToIp } from '../../src/ip/cidr.js';
import { Ipam, IpamError } from '../../src/bridge/ipam.js';
import { Store } from '../../src/bridge/store.js';

// tmpfs like /run in production; a disk-backed /tmp makes every rename a flush on ext4.
const tmpBase = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
const roots: string[] = [];
function newStore(): Store {
  const d = mkdtempSync(join(tmpBase, 'tsnetlink-ipam-'));
  roots.push(d);
  return new Store({ root: join(d, 'state') });
}
test.after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});


// ---- cidr

test('parseSubnet: the seed form names the gateway', () => {
  assert.equal(parseSubnet('192.168.10.1/24'), {
    family: 4,
    subnet: '192.168.10.0/24',
    gateway: '192.168.10.1',
    prefix: 24,
    network: '192.168.10.0',
    broadcast: '192.168.10.255',
  });
});

test('parseSubnet: a bare network gets the first host as gateway', () => {
  const s = parseSubnet('192.168.10.0/24');
  assert.is(s.gateway, '192.168.10.1');
  assert.is(s.subnet, '192.168.10.0/24');
  assert.is(parseSubnet('172.18.5.77/16').gateway, '172.18.5.77');
  assert.is(parseSubnet('172.18.5.77/16').subnet, '172.18.0.0/16');
});

test('parseSubnet: /8 and /30 are the limits', () => {
  assert.equal(parseSubnet('10.0.0.0/8'), {
    family: 4,
    subnet: '10.0.0.0/8',
    gateway: '10.0.0.1',
    prefix: 8,
    network: '10.0.0.0',
    broadcast: '10.255.255.255',
  });
  assert.equal(parseSubnet('10.0.0.4/30'), {
    family: 4,
    subnet: '10.0.0.4/30',
    gateway: '10.0.0.5',
    prefix: 30,
    network: '10.0.0.4',
    broadcast: '10.0.0.7',
  });
});

test('parseSubnet: refusals are ValidationErrors', () => {
  for (const bad of [
    '10.0.0.0/31',
    '10.0.0.0/32',
    '10.0.0.0/7',
    '10.0.0.0/0',
    'garbage',
    '',
    '10.0.0.0',
    '10.0.0/24',
    '010.0.0.0/24',
    '0x0a.0.0.0/24',
    '256.0.0.0/24',
    '10.0.0.0/024',
    '10.0.0.0/33',
    ' 10.0.0.0/24',
    '10.0.0.255/24',
  ]) {
    const e = caught(() => parseSubnet(bad));
    assert.instance(e, ValidationError, bad);
    assert.is((e as ValidationError).field, 'subnet');
  }
  assert.match((caught(() => parseSubnet('10.0.0.255/24')) as Error).message, /broadcast/);
  assert.match((caught(() => parseSubnet('10.0.0.0/7')) as Error).message, /\/8\.\.\/30/);
});

test('u32 helpers round-trip', () => {
  assert.is(ipToU32('0.0.0.0'), 0);
  assert.is(ipToU32('255.255.255.255'), 0xffffffff);
  assert.is(ipToU32('192.168.10.1'), 0xc0a80a01);
  assert.is(u32ToIp(0xc0a80a01), '192.168.10.1');
  assert.is(u32ToIp(0xffffffff), '255.255.255.255');
  assert.instance(caught(() => ipToU32('1.2.3')), ValidationError);
});

test('overlaps and contains', () => {
  assert.ok(overlaps('10.0.0.0/8', '10.1.2.0/24'));
  assert.ok(overlaps('10.1.2.0/24', '10.0.0.0/8'));
  assert.ok(overlaps('192.168.10.1/24', '192.168.10.0/24'));
  assert.not.ok(overlaps('192.168.10.0/24', '192.168.11.0/24'));
  assert.not.ok(overlaps('10.0.0.0/30', '10.0.0.4/30'));
  assert.ok(overlaps('0.0.0.0/0', '1.2.3.4/32'));
  assert.ok(contains('192.168.10.0/24', '192.168.10.200'));
  assert.not.ok(contains('192.168.10.0/24', '192.168.11.1'));
  assert.instance(caught(() => overlaps('x', '10.0.0.0/8')), ValidationError);
});

// ---- ipam

test('allocates .2, .3, ... and never the network, gateway or broadcast', () => {
  const ipam = new Ipam(newStore(), 'n', '192.168.10.1/24');
  assert.is(ipam.capacity, 253n);
  const got = Array.from({ length: 253 }, (_, i) => ipam.allocate(`e${i}`));
  assert.is(got[0], '192.168.10.2');
  assert.is(got[1], '192.168.10.3');
  assert.is(got[252], '192.168.10.254');
  assert.is(new Set(got).size, 253);
  for (const r of ['192.168.10.0', '192.168.10.1', '192.168.10.255']) assert.not.ok(got.includes(r), r);
  const e = caught(() => ipam.allocate('one-too-many'));
  assert.instance(e, IpamError);
  assert.is((e as IpamError).code, 'EIPAMFULL');
  assert.is((e as IpamError).network, 'n');
  assert.is((e as IpamError).subnet, '192.168.10.0/24');
  assert.match((e as Error).message, /n \(192\.168\.10\.0\/24\)/);
});

test('a gateway in the middle of the range is skipped', () => {
  const ipam = new Ipam(newStore(), 'n', '10.9.0.3/29'); // hosts .1-.6, gateway .3
  const got = Array.from({ length: 5 }, (_, i) => ipam.allocate(`e${i}`));
  assert.equal(got, ['10.9.0.1', '10.9.0.2', '10.9.0.4', '10.9.0.5', '10.9.0.6']);
  assert.is((caught(() => ipam.allocate('x')) as IpamError).code, 'EIPAMFULL');
});

test('release then allocate gives the next address, not the released one', () => {
  const ipam = new Ipam(newStore(), 'n', '10.0.0.0/24');
  assert.is(ipam.allocate('a'), '10.0.0.2');
  assert.is(ipam.allocate('b'), '10.0.0.3');
  assert.is(ipam.release('a'), '10.0.0.2');
  assert.is(ipam.allocate('c'), '10.0.0.4');
  assert.is(ipam.release('c'), '10.0.0.4');
  assert.is(ipam.allocate('d'), '10.0.0.5');
});

test('wrap-around reuses released addresses', () => {
  const ipam = new Ipam(newStore(), 'n', '10.0.0.0/29'); // hosts .2-.6 after gateway .1
  assert.equal(
    ['a', 'b', 'c', 'd', 'e'].map((id) => ipam.allocate(id)),
    ['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6'],
  );
  ipam.release('b');
  ipam.release('d');
  assert.is(ipam.allocate('f'), '10.0.0.3');
  assert.is(ipam.allocate('g'), '10.0.0.5');
  assert.is((caught(() => ipam.allocate('h')) as IpamError).code, 'EIPAMFULL');
});

test('a /30 has exactly one address to give', () => {
  const ipam = new Ipam(newStore(), 'tiny', '10.0.0.4/30');
  assert.is(ipam.capacity, 1n);
  assert.is(ipam.allocate('a'), '10.0.0.6');
  const e = caught(() => ipam.allocate('b'));
  assert.instance(e, IpamError);
  assert.is((e as IpamError).code, 'EIPAMFULL');
  assert.is(ipam.allocate('a'), '10.0.0.6'); // full, yet the holder still gets its own
});

test('allocate and release are idempotent per endpoint id', () => {
  const store = newStore();
  const ipam = new Ipam(store, 'n', '10.0.0.0/24');
  assert.is(ipam.allocate('a'), '10.0.0.2');
  assert.is(ipam.allocate('a'), '10.0.0.2');
  assert.is(new Ipam(store, 'n', '10.0.0.0/24').allocate('a'), '10.0.0.2'); // another instance
  assert.is(ipam.lookup('a'), '10.0.0.2');
  assert.is(ipam.allocate('b'), '10.0.0.3');
  assert.is(ipam.release('a'), '10.0.0.2');
  assert.is(ipam.release('a'), undefined);
  assert.is(ipam.release('never'), undefined);
  assert.is(ipam.lookup('a'), undefined);
  assert.equal(ipam.list(), [{ ip: '10.0.0.3', endpointId: 'b' }]);
});

test('on-disk layout: reservation, index and cursor files', () => {
  const store = newStore();
  const ipam = new Ipam(store, 'n', '10.0.0.0/24');
  ipam.allocate('a');
  ipam.allocate('b');
  const dir = store.networkDir('n');
  assert.is(readFileSync(join(dir, 'ips', '10.0.0.2'), 'utf8'), 'a');
  assert.is(readFileSync(join(dir, 'byid', 'b'), 'utf8'), '10.0.0.3');
  assert.is(readFileSync(join(dir, 'last'), 'utf8').trim(), '10.0.0.3');
  for (const sub of ['ips', 'byid']) {
    assert.is(statSync(join(dir, sub)).mode & 0o777, 0o700, sub);
    for (const f of readdirSync(join(dir, sub))) assert.is(statSync(join(dir, sub, f)).mode & 0o777, 0o600, f);
  }
  assert.is(statSync(join(dir, 'last')).mode & 0o777, 0o600);
  assert.equal(readdirSync(dir).sort(), ['byid', 'ipam.lock', 'ips', 'last']); // no temp files
});

test('gc never frees an address a live endpoint holds: an emptied or deleted reservation is written back for it', () => {
  const store = newStore();
  const ipam = new Ipam(store, 'n', '10.0.0.0/24');
  const a = ipam.allocate('a');
  const b = ipam.allocate('b');
  writeFileSync(join(store.networkDir('n'), 'ips', a), '');
  rmSync(join(store.networkDir('n'), 'ips', b));
  const held = new Map([[a, 'a'], [b, 'b']]);
  const r = ipam.gc((id) => id === 'a' || id === 'b', (ip) => held.get(ip));
  assert.equal([r.freed, r.restored], [[], [{ ip: a, endpointId: 'a' }]]);
  assert.equal(ipam.restoreMissing(held), [{ ip: b, endpointId: 'b' }]);
  assert.equal(ipam.list(), [{ ip: a, endpointId: 'a' }, { ip: b, endpointId: 'b' }]);
  assert.equal([ipam.lookup('a'), ipam.lookup('b')], [a, b]);
  assert.is.not(ipam.allocate('c'), a, 'the next allocation does not get a live address');
});

test('addresses held outside the index (another tool, a crash) are skipped', () => {
  const store = newStore();
  const ipam = new Ipam(store, 'n', '10.0.0.0/24');
  ipam.allocate('a'); // creates the directories
  writeFileSync(join(store.networkDir('n'), 'ips', '10.0.0.3'), 'orphan');
  assert.is(ipam.allocate('b'), '10.0.0.4');
  assert.equal(ipam.gc((id) => id !== 'orphan').freed, ['10.0.0.3']);
  assert.equal(
    ipam.list().map((x) => x.ip),
    ['10.0.0.2', '10.0.0.4'],
  );
});

test('a stale index pointing at someone else’s address is not trusted', () => {
  const store = newStore();
  const ipam = new Ipam(store, 'n', '10.0.0.0/24');
  ipam.allocate('a');
  ipam.allocate('b');
  writeFileSync(join(store.networkDir('n'), 'byid', 'c'), '10.0.0.2'); // owned by 'a'
  assert.is(ipam.allocate('c'), '10.0.0.4');
  assert.is(ipam.lookup('a'), '10.0.0.2');
});

test('a corrupt cursor restarts from the first host', () => {
  const store = newStore();
  const ipam = new Ipam(store, 'n', '10.0.0.0/24');
  ipam.allocate('a');
  writeFileSync(join(store.networkDir('n'), 'last'), 'garbage');
  assert.is(ipam.allocate('b'), '10.0.0.3');
});

test('bad endpoint ids are refused', () => {
  const ipam = new Ipam(newStore(), 'n', '10.0.0.0/24');
  for (const bad of ['', '../x', 'a/b', '.x']) assert.instance(caught(() => ipam.allocate(bad)), ValidationError, bad);
});

test('allocation cost stays flat over 10,000 addresses in a /16', () => {
  const ipam = new Ipam(newStore(), 'big', '10.20.0.0/16');
  const N = 10_000;
  const t: number[] = [];
  for (let i = 0; i < N; i++) {
    const t0 = performance.now();
    ipam.allocate(`e${i}`);
    t.push(performance.now() - t0);
  }
  const avg = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  const early = avg(t.slice(100, 1100));
  const late = avg(t.slice(N - 1000));
  assert.ok(late < early * 3 + 0.05, `early ${early.toFixed(3)} ms, late ${late.toFixed(3)} ms`);
  assert.is(ipam.lookup(`e${N - 1}`), u32ToIp(ipToU32('10.20.0.1') + N));
});

test.run();
