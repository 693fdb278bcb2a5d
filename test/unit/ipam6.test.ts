import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { catchError as caught } from '../helpers.js';
import { ValidationError } from '../../src/errors.js';
import { bigToIp, canonicalIp, contains, ipFamily, ipToBig, overlaps, parseSubnet } from '../../src/ip/cidr.js';
import { Ipam, IpamError } from '../../src/bridge/ipam.js';
import { Store } from '../../src/bridge/store.js';
import { checkSubnets, subnetRecord, subnetsOf } from '../../src/bridge/records.js';

const tmpBase = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
const roots: string[] = [];
function newStore(): Store {
  const d = mkdtempSync(join(tmpBase, 'tsnetlink-ipam6-'));
  roots.push(d);
  return new Store({ root: join(d, 'state') });
}
test.after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

// ---- cidr, IPv6

test('parseSubnet: an IPv6 network gets ::1 as gateway, canonical text', () => {
  assert.equal(parseSubnet('fd00:10::/64'), {
    family: 6,
    subnet: 'fd00:10::/64',
    gateway: 'fd00:10::1',
    prefix: 64,
    network: 'fd00:10::',
    broadcast: 'fd00:10::ffff:ffff:ffff:ffff',
  });
  assert.is(parseSubnet('FD00:0010:0000::/48').subnet, 'fd00:10::/48');
  assert.is(parseSubnet('2001:db8:1::/126').gateway, '2001:db8:1::1');
  // Both families alike: an address with its prefix names the gateway (the seed's 192.168.10.1/24 form).
  assert.equal([parseSubnet('fd00:10::5/64').subnet, parseSubnet('fd00:10::5/64').gateway], ['fd00:10::/64', 'fd00:10::5']);
  assert.equal([parseSubnet('192.168.10.5/24').subnet, parseSubnet('192.168.10.5/24').gateway], ['192.168.10.0/24', '192.168.10.5']);
  assert.is(parseSubnet('fd00::/16').prefix, 16);
});

test('parseSubnet: bad IPv6 subnets are refused with the reason', () => {
  const cases: Array<[string, RegExp]> = [
    ['fd00:10::/129', /longer than 128/],
    ['fd00:10::/127', /outside \/16\.\.\/126/],
    ['fd00::/15', /outside \/16\.\.\/126/],
    ['fe80::/64', /overlaps fe80::\/10/],
    ['ff02::/64', /overlaps ff00::\/8/],
    ['::ffff:0:0/96', /overlaps ::\/8/],
    ['::/64', /overlaps ::\/8/],
    ['fd00:10::/64%eth0', /not a CIDR/],
    ['fd00:10:::/64', /not a CIDR/],
    ['fd00:10::', /not a CIDR/],
  ];
  for (const [bad, why] of cases) {
    const e = caught(() => parseSubnet(bad));
    assert.instance(e, ValidationError, bad);
    assert.is((e as ValidationError).field, 'subnet');
    assert.match((e as Error).message, why, bad);
  }
});

test('address helpers: family, bigint round trip, canonical text', () => {
  assert.is(ipFamily('192.168.10.1'), 4);
  assert.is(ipFamily('fd00::1'), 6);
  assert.is(ipFamily('fe80::1%eth0'), undefined);
  assert.is(ipFamily('1.2.3'), undefined);
  assert.is(ipToBig('::1'), 1n);
  assert.is(ipToBig('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'), (1n << 128n) - 1n);
  assert.is(bigToIp(ipToBig('fd00:10::abcd'), 6), 'fd00:10::abcd');
  assert.is(bigToIp(0xc0a80a01n, 4), '192.168.10.1');
  assert.is(canonicalIp('FD00:0:0:0:0:0:0:1'), 'fd00::1');
  assert.is(canonicalIp('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1');
  assert.instance(caught(() => ipToBig('fd00::g')), ValidationError);
});

test('overlaps and contains across families', () => {
  assert.ok(overlaps('fd00::/16', 'fd00:10::/64'));
  assert.ok(overlaps('fd00:10::/64', 'fd00:10::/80'));
  assert.not.ok(overlaps('fd00:10::/64', 'fd00:11::/64'));
  assert.not.ok(overlaps('10.0.0.0/8', 'fd00::/16'));
  assert.not.ok(overlaps('0.0.0.0/0', '::/0'));
  assert.ok(contains('fd00:10::/64', 'fd00:10::ffff'));
  assert.not.ok(contains('fd00:10::/64', 'fd00:11::1'));
  assert.not.ok(contains('fd00:10::/64', '10.0.0.1'));
  assert.not.ok(contains('10.0.0.0/8', 'fd00:10::1'));
});

// ---- ipam, IPv6

test('Ipam over a /64: round robin from ::2, canonical names, capacity as a bigint', () => {
  const store = newStore();
  const ipam = new Ipam(store, 'n6', 'fd00:10::/64');
  assert.is(ipam.capacity, (1n << 64n) - 3n);
  assert.is(ipam.allocate('a'), 'fd00:10::2');
  assert.is(ipam.allocate('b'), 'fd00:10::3');
  assert.is(ipam.allocate('a'), 'fd00:10::2', 'same id, same address');
  assert.is(ipam.release('a'), 'fd00:10::2');
  assert.is(ipam.allocate('c'), 'fd00:10::4', 'a released address waits for the wrap');
  assert.equal(ipam.list(), [
    { ip: 'fd00:10::3', endpointId: 'b' },
    { ip: 'fd00:10::4', endpointId: 'c' },
  ]);
});

test('Ipam: one endpoint holds an IPv4 and an IPv6 address side by side', () => {
  const store = newStore();
  const v4 = new Ipam(store, 'ds', '192.168.10.1/24');
  const v6 = new Ipam(store, 'ds', 'fd00:10::/64');
  assert.is(v4.allocate('e1'), '192.168.10.2');
  assert.is(v6.allocate('e1'), 'fd00:10::2');
  assert.is(v4.lookup('e1'), '192.168.10.2');
  assert.is(v6.lookup('e1'), 'fd00:10::2');
  assert.equal(v4.list(), [{ ip: '192.168.10.2', endpointId: 'e1' }], 'each family lists only its own');
  assert.equal(v6.list(), [{ ip: 'fd00:10::2', endpointId: 'e1' }]);
  assert.is(v6.release('e1'), 'fd00:10::2');
  assert.is(v4.lookup('e1'), '192.168.10.2', 'releasing one family keeps the other');
  assert.equal(v4.gc(() => false).freed, ['192.168.10.2']);
  assert.equal(readdirSync(join(store.networkDir('ds'), 'ips')), []);
});

test('Ipam: a small IPv6 range fills up and wraps; the dense scan is bounded by what is in use', () => {
  const store = newStore();
  const ipam = new Ipam(store, 'small', 'fd00:10::/126'); // ::0 subnet-router, ::1 gateway, ::3 last
  assert.is(ipam.capacity, 1n);
  assert.is(ipam.allocate('a'), 'fd00:10::2');
  const e = caught(() => ipam.allocate('b'));
  assert.instance(e, IpamError);
  assert.is((e as IpamError).code, 'EIPAMFULL');
  ipam.release('a');
  assert.is(ipam.allocate('b'), 'fd00:10::2');
  // A /64 with many holders still allocates at once: the walk never visits 2^64 candidates.
  const big = new Ipam(store, 'big', 'fd00:20::/64');
  for (let i = 0; i < 40; i++) big.allocate(`x${i}`);
  assert.is(big.allocate('y'), 'fd00:20::2a');
});

test('a network whose IPv6 gateway is not the first address reads back as it was written', () => {
  const rec = [subnetRecord(parseSubnet('192.168.10.5/24')), subnetRecord(parseSubnet('fd00:10::5/64'))];
  assert.equal(checkSubnets(JSON.parse(JSON.stringify(rec))), rec);
  assert.equal(subnetsOf({ subnets: rec }).map((s) => [s.subnet, s.gateway]), [['192.168.10.0/24', '192.168.10.5'], ['fd00:10::/64', 'fd00:10::5']]);
});

test.run();
