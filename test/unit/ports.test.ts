/** Port-mapping specs as users type them (`-p 8080:80`, `-p 53:53/udp`, `-p 127.0.0.1:8080:80`, `-p [2001:db8::1]:8080:80`). Pure. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ValidationError } from '../../src/errors.js';
import { formatMapping, normalizeMappings, parsePortMapping, type PortMapping } from '../../src/bridge/ports.js';

function refused(fn: () => unknown, what: string): ValidationError {
  let err: unknown;
  try {
    const v = fn();
    assert.unreachable(`${what}: accepted as ${JSON.stringify(v)}`);
  } catch (e) {
    err = e;
  }
  if ((err as Error)?.name === 'Assertion') throw err;
  assert.instance(err, ValidationError, `${what}: ${String(err)}`);
  return err as ValidationError;
}

test('HOST:CONTAINER, /tcp and /udp, HOSTIP:HOST:CONTAINER', () => {
  assert.equal(parsePortMapping('8080:80'), { hostPort: 8080, containerPort: 80, protocol: 'tcp' });
  assert.equal(parsePortMapping('80:80/tcp'), { hostPort: 80, containerPort: 80, protocol: 'tcp' });
  assert.equal(parsePortMapping('5353:53/udp'), { hostPort: 5353, containerPort: 53, protocol: 'udp' });
  assert.equal(parsePortMapping('127.0.0.1:8080:80'), { hostIp: '127.0.0.1', hostPort: 8080, containerPort: 80, protocol: 'tcp' });
  assert.equal(parsePortMapping('10.0.0.1:53:53/udp'), { hostIp: '10.0.0.1', hostPort: 53, containerPort: 53, protocol: 'udp' });
});

test('port bounds: 1 and 65535 accepted', () => {
  assert.equal(parsePortMapping('1:65535'), { hostPort: 1, containerPort: 65535, protocol: 'tcp' });
  assert.equal(parsePortMapping('65535:1/udp'), { hostPort: 65535, containerPort: 1, protocol: 'udp' });
});

test('0.0.0.0 as host IP means any address (no hostIp)', () => {
  assert.equal(parsePortMapping('0.0.0.0:80:80'), { hostPort: 80, containerPort: 80, protocol: 'tcp' });
});

test('invalid specs are ValidationErrors naming the spec', () => {
  const bad = [
    '0:80', '80:0', '70000:80', '80:65536', '-1:80', '80', '', ':', ':80', '80:', 'a:b', '80:http',
    '80:80/sctp', '80:80/', '80:80/TCP ', '80:80/tcp/udp', '80:80:80:80', ' 80:80', '80:80 ', '1e3:80', '0x50:80', '+80:80',
    '1.2.3.4.5:80:80', '256.1.1.1:80:80', 'localhost:80:80', '[::1]:80:80', '::1:80:80', 'fe80::1:80:80',
  ];
  for (const spec of bad) {
    const e = refused(() => parsePortMapping(spec), JSON.stringify(spec));
    assert.is(e.code, 'EINVAL');
    const named = spec.split(':').length === 3 ? JSON.stringify(spec.split(':')[0]) : JSON.stringify(spec);
    if (spec !== '') assert.ok(e.message.includes(named), `message names the spec or its host IP: ${e.message}`);
  }
  refused(() => parsePortMapping(80 as unknown as string), 'a number');
  refused(() => parsePortMapping(undefined as unknown as string), 'undefined');
});

test('IPv6 host IPs in brackets: canonical text, [::] for every IPv6 address, [::1] refused with the reason', () => {
  assert.equal(parsePortMapping('[2001:db8::1]:8080:80'), { hostIp: '2001:db8::1', hostPort: 8080, containerPort: 80, protocol: 'tcp' });
  assert.equal(parsePortMapping('[2001:DB8:0:0::1]:53:53/udp'), { hostIp: '2001:db8::1', hostPort: 53, containerPort: 53, protocol: 'udp' });
  assert.equal(parsePortMapping('[::]:8080:80'), { hostIp: '::', hostPort: 8080, containerPort: 80, protocol: 'tcp' });
  assert.match(refused(() => parsePortMapping('[::1]:8080:80'), '[::1]').message, /route_localnet/);
  assert.match(refused(() => parsePortMapping('::ffff:1.2.3.4:80:80'), 'mapped IPv6 without brackets').message, /HOSTIP/);
  assert.match(refused(() => parsePortMapping('[2001:db8::1]8080:80'), 'no colon after the bracket').message, /brackets/);
  refused(() => parsePortMapping('[2001:db8::1]:80'), 'bracketed host IP and one port');
  refused(() => parsePortMapping('[fe80::1%eth0]:80:80'), 'zone id');
  refused(() => parsePortMapping('[10.0.0.1]:80:80/tcp ') , 'trailing space');
  assert.is(formatMapping(parsePortMapping('[2001:db8::1]:8080:80')), '[2001:db8::1]:8080:80/tcp');
});

test('overlap across families: a wildcard covers both, an IPv6 wildcard only IPv6', () => {
  assert.is(normalizeMappings(['127.0.0.1:80:80', '[2001:db8::1]:80:80']).length, 2, 'an IPv4 and an IPv6 host IP never overlap');
  assert.is(normalizeMappings(['10.0.0.1:80:80', '[::]:80:80']).length, 2, '[::] leaves IPv4 alone');
  for (const dup of [['80:80', '[2001:db8::1]:80:81'], ['[::]:80:80', '[2001:db8::1]:80:81'], ['[2001:db8::1]:80:80', '[2001:db8::1]:80:81'], ['0.0.0.0:80:80', '[::]:80:81']]) {
    assert.match(refused(() => normalizeMappings(dup), JSON.stringify(dup)).message, /twice|overlaps/);
  }
});

test('host IPs must be plain dotted quads: inet_aton shorthands and octal/hex octets are refused', () => {
  // Regression: these were once accepted through ipaddr.isValid and silently rewritten
  // ('1.2.3' -> 1.2.0.3, '0x7f.1' -> 127.0.0.1, '010.0.0.1' -> 8.0.0.1): a mapping published on
  // another address than the one typed.
  const accepted: string[] = [];
  for (const spec of ['1.2.3:80:80', '0x7f.1:80:80', '010.0.0.1:80:80', '01.2.3.4:80:80', '2130706433:80:80', '127.1:80:80']) {
    try {
      accepted.push(`${spec} -> host IP ${parsePortMapping(spec).hostIp}`);
    } catch (e) {
      assert.instance(e, ValidationError);
    }
  }
  assert.equal(accepted, [], `accepted instead of refused: ${accepted.join('; ')}`);
});

test('normalizeMappings: strings and objects, refusing the same host IP/port/protocol twice', () => {
  assert.equal(normalizeMappings(undefined), []);
  assert.equal(normalizeMappings([]), []);
  assert.equal(normalizeMappings(['8080:80', { hostPort: 53, containerPort: 53, protocol: 'udp' }, { hostIp: '127.0.0.1', hostPort: 9090, containerPort: 90, protocol: 'tcp' }]), [
    { hostPort: 8080, containerPort: 80, protocol: 'tcp' },
    { hostPort: 53, containerPort: 53, protocol: 'udp' },
    { hostIp: '127.0.0.1', hostPort: 9090, containerPort: 90, protocol: 'tcp' },
  ]);
  // Same port, other protocol; same port, two distinct host IPs: both fine.
  assert.is(normalizeMappings(['53:53', '53:53/udp']).length, 2);
  assert.is(normalizeMappings(['10.0.0.1:80:80', '10.0.0.2:80:80']).length, 2);
  for (const dup of [['8080:80', '8080:81'], ['8080:80', '8080:80'], ['8080:80', '127.0.0.1:8080:81'], ['10.0.0.1:80:80', '10.0.0.1:80:81'], ['53:53/udp', '53:54/udp'], ['0.0.0.0:80:80', '80:81']]) {
    const e = refused(() => normalizeMappings(dup), JSON.stringify(dup));
    assert.match(e.message, /twice|overlaps/);
  }
});

test('normalizeMappings: objects are validated like strings (no injection through fields)', () => {
  const bad: unknown[] = [
    { hostPort: 0, containerPort: 80, protocol: 'tcp' },
    { hostPort: 1.5, containerPort: 80, protocol: 'tcp' },
    { hostPort: 80, containerPort: 80, protocol: 'sctp' },
    { hostPort: '80 -j ACCEPT', containerPort: 80, protocol: 'tcp' },
    { hostIp: '1.2.3.4 -j ACCEPT', hostPort: 80, containerPort: 80, protocol: 'tcp' },
    { hostPort: 80, containerPort: '80\n-A INPUT -j ACCEPT', protocol: 'tcp' },
  ];
  for (const m of bad) refused(() => normalizeMappings([m as PortMapping]), JSON.stringify(m));
});

test('formatMapping round-trips', () => {
  for (const spec of ['8080:80/tcp', '53:53/udp', '127.0.0.1:8080:80/tcp']) assert.is(formatMapping(parsePortMapping(spec)), spec);
  assert.is(formatMapping(parsePortMapping('8080:80')), '8080:80/tcp');
});

test.run();
