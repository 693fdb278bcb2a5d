/** The attribute codec: alignment, zeroed padding, str vs strz, nesting, unknown attributes, malformed input. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { attr, attrsSize, bytes, ipAddr, mac, nested, readAttrs, str, strz, u8, u16, u32, be16, writeAttrs, type Schema } from '../../src/netlink/attr.js';
import { decodePayload, encode, splitMessages } from '../../src/netlink/message.js';
import { linkMessage, addrMessage, routeMessage } from '../../src/netlink/schemas.js';
import * as L from '../../src/netlink/link.js';
import * as A from '../../src/netlink/addr.js';
import * as R from '../../src/netlink/route.js';
import { CodecError, ValidationError } from '../../src/errors.js';
import { catchError } from '../helpers.js';

const inner = { a: attr(1, u8), b: attr(2, be16) } as const satisfies Schema;
const schema = { name: attr(3, strz), kind: attr(4, str), n: attr(5, u32), sub: attr(6, nested(inner)), m: attr(7, mac), ip: attr(8, ipAddr), s: attr(9, u16) } as const satisfies Schema;

function enc<S extends Schema>(s: S, v: Parameters<typeof writeAttrs<S>>[1]): Buffer {
  const b = Buffer.alloc(attrsSize(s, v));
  const end = writeAttrs(s, v, b, 0);
  assert.is(end, b.length, 'size computed up front equals bytes written');
  return b;
}

test('strz writes a NUL, str does not; both padded to 4 with zeros', () => {
  const b = enc(schema, { name: 'br0', kind: 'veth' });
  assert.is(b.toString('hex'), '0800030062723000' + '0800040076657468');
  const b2 = enc(schema, { kind: 'bridge' });
  assert.is(b2.toString('hex'), '0a000400627269646765' + '0000', 'len 10, two zero pad bytes');
});

test('integers, big-endian u16, MAC and IP codecs', () => {
  const b = enc(schema, { n: 0xdeadbeef, sub: { a: 7, b: 0x1f90 }, m: '02:42:c0:a8:0a:02', ip: '192.168.10.1', s: 1 });
  const back = readAttrs(schema, b, 0, b.length);
  assert.equal(back, { n: 0xdeadbeef, sub: { a: 7, b: 0x1f90 }, m: '02:42:c0:a8:0a:02', ip: '192.168.10.1', s: 1 });
  assert.ok(b.includes(Buffer.from([0x1f, 0x90])), 'be16 on the wire in network order');
  const v6 = enc(schema, { ip: 'fd00:10::2' });
  assert.is(readAttrs(schema, v6, 0, v6.length).ip, 'fd00:10::2');
  assert.is(v6.readUInt16LE(0), 20);
});

test('unknown attributes survive decode and re-encode byte for byte', () => {
  const known = enc(schema, { n: 5 });
  const foreign = Buffer.from('0900630001020304050000000400640000', 'hex').subarray(0, 16); // type 99 len 9 (+pad), type 100 len 4
  const wire = Buffer.concat([known, foreign]);
  const dec = readAttrs(schema, wire, 0, wire.length);
  assert.is(dec.n, 5);
  assert.is(dec.unknown?.length, 2);
  assert.is(dec.unknown?.[0]?.type, 99);
  assert.is(enc(schema, dec).toString('hex'), wire.toString('hex'));
});

test('malformed attributes: overrun, short, bad integer sizes give CodecError, never a crash', () => {
  const cases = ['ff00030061', '0300030061626300', '0600050001000000', '0500080001000000'];
  for (const hex of cases) {
    const b = Buffer.from(hex, 'hex');
    assert.instance(catchError(() => readAttrs(schema, b, 0, b.length)), CodecError, hex);
  }
});

test('fuzz: random bytes and truncations of real messages decode or throw CodecError only', () => {
  const real = [
    encode(L.addVethRequest('veth0', { name: 'eth0', netnsFd: 5 }, { master: 3, up: true })),
    encode(A.addAddrRequest(2, '192.168.10.2/24')),
    encode(R.addRouteRequest({ gateway: '192.168.10.1', oif: 2 })),
  ];
  const defs = [linkMessage, addrMessage, routeMessage] as const;
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  for (let i = 0; i < 3000; i++) {
    const base = real[i % 3]!;
    const b = Buffer.from(base.subarray(0, Math.floor(rnd() * (base.length + 1))));
    if (i % 2) for (let j = 0; j < 3 && b.length; j++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
    try {
      for (const m of splitMessages(b)) decodePayload(defs[i % 3] as typeof linkMessage, m.payload);
    } catch (e) {
      if (!(e instanceof CodecError)) throw new Error(`case ${i} (${b.toString('hex')}) threw ${(e as Error).name}: ${(e as Error).message}`);
    }
  }
});

test('request builders refuse bad input before anything is sent', () => {
  const bad: (() => unknown)[] = [
    () => L.addBridgeRequest('this-name-is-too-long'),
    () => L.addBridgeRequest('a b'),
    () => L.addBridgeRequest('a:b'),
    () => L.addVethRequest('v0', { name: '..' }),
    () => L.setMacRequest('v0', '02:42:zz:00:00:00'),
    () => L.setMtuRequest('v0', 20),
    () => A.addAddrRequest(2, '192.168.10.2/33'),
    () => A.addAddrRequest(2, 'not-an-ip/24'),
    () => A.addAddrRequest(0, '10.0.0.1/8'),
    () => R.addRouteRequest({ gateway: 'fd00::1', dst: '10.0.0.0/8', oif: 2 }),
    () => R.addRouteRequest({ dst: '10.0.0.0/8' }),
  ];
  for (const f of bad) assert.instance(catchError(f), ValidationError);
});

test('IPv4 broadcast is computed; /31 and /32 get none; IPv6 gets none', () => {
  const dec = (r: ReturnType<typeof A.addAddrRequest>) => decodePayload(addrMessage, splitMessages(encode(r))[0]!.payload).attrs;
  assert.is(dec(A.addAddrRequest(2, '10.1.2.3/20')).broadcast, '10.1.15.255');
  assert.is(dec(A.addAddrRequest(2, '10.1.2.3/31')).broadcast, undefined);
  assert.is(dec(A.addAddrRequest(2, 'fd00::2/64')).broadcast, undefined);
  assert.is(dec(A.addAddrRequest(2, '10.1.2.3/24', { broadcast: false })).broadcast, undefined);
});

test('veth peer round-trips through the nested link schema', () => {
  const m = splitMessages(encode(L.addVethRequest('veth0', { name: 'eth0', netnsFd: 7, mac: '02:42:c0:a8:0a:02' }, { master: 4, up: true })))[0]!;
  const { header, attrs } = decodePayload(linkMessage, m.payload);
  assert.is(header.flags & 1, 1);
  assert.is(attrs.master, 4);
  assert.is(attrs.linkinfo?.kind, 'veth');
  const peer = (attrs.linkinfo?.data as { peer?: { attrs: { ifname?: string; netNsFd?: number; address?: string } } }).peer;
  assert.equal([peer?.attrs.ifname, peer?.attrs.netNsFd, peer?.attrs.address], ['eth0', 7, '02:42:c0:a8:0a:02']);
  const back = encode({ ...L.addBridgeRequest('x'), size: 0, write: () => undefined });
  assert.is(back.length, 16);
});

test('unknown IFLA_INFO_DATA of another link kind is kept as bytes', () => {
  const raw = Buffer.from('09000100767863616e000000' + '0c000200' + '0800010001000000', 'hex');
  const s = { linkinfo: linkMessage.attrs.linkinfo } as const satisfies Schema;
  const wire = Buffer.concat([Buffer.from([raw.length + 4, 0, 18, 0]), raw]);
  const dec = readAttrs(s, wire, 0, wire.length);
  assert.is(dec.linkinfo?.kind, 'vxcan');
  assert.ok(Buffer.isBuffer(dec.linkinfo?.data));
  assert.is(enc(s, dec).toString('hex'), wire.toString('hex'));
});

test('bytes codec copies, so decoded data does not alias the receive buffer', () => {
  const s = { raw: attr(1, bytes) } as const satisfies Schema;
  const wire = Buffer.from('0800010001020304', 'hex');
  const dec = readAttrs(s, wire, 0, wire.length);
  wire[4] = 0xff;
  assert.is(dec.raw?.[0], 1);
});

test.run();
