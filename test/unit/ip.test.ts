/** The IP text codec against ipaddr.js on random and edge-case addresses: same bytes, same RFC 5952 text, same refusals. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import ipaddr from 'ipaddr.js';
import { formatIPv6, normalizeIp, parseIPv4, parseIPv6 } from '../../src/ip/bytes.js';
import { ipv4Broadcast, networkAddress, parseCidr } from '../../src/ip/parse.js';

let seed = 7;
const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);

test('IPv6: random addresses, runs of zeros and mapped forms print as ipaddr.js prints them', () => {
  for (let i = 0; i < 5000; i++) {
    const b = Array.from({ length: 16 }, () => (rnd(3) === 0 ? 0 : rnd(256)));
    if (i % 7 === 0) b.fill(0, rnd(16));
    if (i % 11 === 0) b.splice(0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff);
    const ours = formatIPv6(Uint8Array.from(b));
    const theirs = (ipaddr.fromByteArray(b) as ipaddr.IPv6).toRFC5952String();
    assert.is(ours, theirs, b.join(','));
    assert.equal(parseIPv6(ours), b, `round trip ${ours}`);
    assert.equal(parseIPv6(theirs.replace(/::/, ':0:').replace(/^:0:/, '0:0:')) ?? parseIPv6(theirs), b);
  }
});

test('IPv6 input forms: full, compressed, uppercase, IPv4 tail; bad ones refused', () => {
  for (const t of ['2001:db8:0:0:0:0:0:1', '2001:DB8::1', '::', '::1', '::ffff:192.168.1.1', '64:ff9b::10.0.0.1', 'fe80::1:2:3:4:5:6', '1:2:3:4:5:6:7:8']) {
    assert.equal(parseIPv6(t), ipaddr.IPv6.parse(t).toByteArray(), t);
  }
  for (const t of ['1:2:3:4:5:6:7:8:9', '1::2::3', ':1:2', '12345::', 'g::1', '::1.2.3', '1:2:3:4:5:6:7::8:9', '']) assert.is(parseIPv6(t), undefined, t);
});

test('IPv4: only four-part decimal, no octal or short forms, as validation always demanded', () => {
  assert.equal(parseIPv4('192.168.10.2'), [192, 168, 10, 2]);
  for (const t of ['1.2.3', '010.1.1.1', '256.1.1.1', '1.2.3.4.5', '0x1.2.3.4', ' 1.2.3.4']) assert.is(parseIPv4(t), undefined, t);
  assert.is(normalizeIp('fd00:0010::0002')?.address, 'fd00:10::2');
});

test('network and broadcast addresses match ipaddr.js', () => {
  for (let i = 0; i < 2000; i++) {
    const a = `${rnd(256)}.${rnd(256)}.${rnd(256)}.${rnd(256)}`;
    const p = rnd(33);
    assert.is(networkAddress(a, p), ipaddr.IPv4.networkAddressFromCIDR(`${a}/${p}`).toString(), `${a}/${p}`);
    assert.is(ipv4Broadcast(a, p), ipaddr.IPv4.broadcastAddressFromCIDR(`${a}/${p}`).toString(), `${a}/${p}`);
  }
  assert.is(networkAddress('fd00:10::2:3', 64), 'fd00:10::');
  assert.equal(parseCidr('fd00:10::2/64'), { family: 6, address: 'fd00:10::2', prefix: 64 });
});

test.run();
