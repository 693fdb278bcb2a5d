/** The attribute codec: alignment, zeroed padding, str vs strz, nesting, unknown attributes, malformed input. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { attr, attrsSize, ipAddr, mac, nested, nestedArray, readAttrs, repeated, str, strz, u8, u16, u32, u64, be16, be32, be64, uint, writeAttrs, type Schema } from '../../src/netlink/core/attr.js';
import { readU64 } from '../../src/netlink/core/codecs.js';
import { decodePayload, encode, splitMessages, struct } from '../../src/netlink/core/message.js';
import { linkMessage, addrMessage, routeMessage } from '../../src/netlink/route/schemas.js';
import * as L from '../../src/netlink/route/link.js';
import * as A from '../../src/netlink/route/addr.js';
import * as R from '../../src/netlink/route/route.js';
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
    () => R.addRouteRequest({ dst: '10.0.0.0/8', nexthops: [{ gateway: '10.0.0.1', weight: 0 }] }),
    () => R.addRouteRequest({ dst: '10.0.0.0/8', gateway: '10.1.1.1', metrics: { mtu: 1300, lock: ['mtu'] }, type: 'no-such-type' }),
    () => A.addAddrRequest(2, '10.0.0.1/8', { validLft: 10, preferredLft: 20 }),
    () => A.addAddrRequest({ index: 0 }, '10.0.0.1/8'),
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
  const raw = Buffer.from('0800010067747000' + '0c000200' + '0800010001000000', 'hex');
  const s = { linkinfo: linkMessage.attrs.linkinfo } as const satisfies Schema;
  const wire = Buffer.concat([Buffer.from([raw.length + 4, 0, 18, 0]), raw]);
  const dec = readAttrs(s, wire, 0, wire.length);
  assert.is(dec.linkinfo?.kind, 'gtp');
  assert.ok(Buffer.isBuffer(dec.linkinfo?.data));
  assert.is(enc(s, dec).toString('hex'), wire.toString('hex'));
});

test('decoded attributes keep wire order, repeats and flag bits; re-encode is byte-exact', () => {
  const s = { a: attr(1, u32), names: repeated(2, strz), sub: attr(3, nested(inner)) } as const satisfies Schema;
  // Wire order: sub (with NLA_F_NESTED set by the sender), names[0], unknown 9, a, names[1].
  const wire = Buffer.from(
    '0c000380' + '050001000700' + '0000' + // sub {a: 7} with nested flag, pad
      '06000200' + '78000000' + // names[0] "x\0"
      '08000900' + 'deadbeef' + // unknown type 9
      '08000100' + '05000000' + // a = 5
      '06000200' + '79000000', // names[1] "y\0"
    'hex',
  );
  const dec = readAttrs(s, wire, 0, wire.length);
  assert.equal(dec.names, ['x', 'y']);
  assert.is(dec.a, 5);
  assert.is(dec.sub?.a, 7);
  assert.is(dec.unknown?.[0]?.type, 9);
  assert.is(enc(s, dec).toString('hex'), wire.toString('hex'), 'same order, same flags');
  // A changed value is re-encoded in place; an added one goes after the recorded ones.
  dec.a = 6;
  dec.names!.push('z');
  const changed = enc(s, dec).toString('hex');
  assert.ok(changed.includes('0800010006000000'), 'a re-encoded');
  assert.ok(changed.endsWith('06000200' + '79000000' + '06000200' + '7a000000'), 'third name after the second');
  // Without a wire record (a request we build) the order is the schema's.
  assert.is(enc(s, { a: 1, names: ['p', 'q'] }).toString('hex'), '0800010001000000' + '0600020070000000' + '0600020071000000');
});

test('an unchanged value is copied from the original bytes even when our canonical form differs', () => {
  // The kernel sends strings with a NUL; `str` would write none. A u64 where uint writes a u32.
  const s = { kind: attr(1, str), exp: attr(2, uint) } as const satisfies Schema;
  const wire = Buffer.from('0b00010062726964676500' + '00' + '0c000200' + '0a00000000000000', 'hex');
  const dec = readAttrs(s, wire, 0, wire.length);
  assert.equal([dec.kind, dec.exp], ['bridge', 10]);
  assert.is(enc(s, dec).toString('hex'), wire.toString('hex'));
  dec.exp = 11;
  assert.ok(enc(s, dec).toString('hex').endsWith('080002000b000000'), 'a changed value takes the canonical form');
});

test('big-endian integer codecs and struct fields', () => {
  const s = { a: attr(1, be16), b: attr(2, be32), c: attr(3, be64) } as const satisfies Schema;
  const b = enc(s, { a: 0x1234, b: 0x01020304, c: 5n });
  assert.is(b.toString('hex'), '06000100' + '12340000' + '08000200' + '01020304' + '0c000300' + '0000000000000005');
  const st = struct([['family', 'u8'], ['version', 'u8'], ['resId', 'be16']] as const);
  const h = Buffer.alloc(4);
  st.write(h, 0, { family: 2, resId: 10 });
  assert.is(h.toString('hex'), '0200000a');
  assert.equal(st.read(h, 0), { family: 2, version: 0, resId: 10 });
});

test('u64 values read in one step where they fit agree with Buffer.readBigUInt64LE at every edge', () => {
  const edges = [0n, 1n, 0xffn, 0xffff_ffffn, 0x1_0000_0000n, 0x1_0000_0001n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 0x1f_ffff_ffff_ffffn, 0x20_0000_0000_0000n, 2n ** 63n, 2n ** 64n - 1n, 0x0101010101010101n];
  const b = Buffer.alloc(9);
  for (const v of edges) {
    b.writeBigUInt64LE(v, 1);
    assert.is(readU64(b, 1), v, `readU64 ${v}`);
    assert.is(u64.read(b, 1, 8), v, `u64 codec ${v}`);
  }
  let x = 0x9e3779b97f4a7c15n;
  for (let i = 0; i < 2000; i++) {
    x = (x * 6364136223846793005n + 1442695040888963407n) & (2n ** 64n - 1n);
    b.writeBigUInt64LE(x >> BigInt(i % 64), 1);
    assert.is(readU64(b, 1), b.readBigUInt64LE(1));
  }
  assert.throws(() => u64.read(b, 2, 8), (e: unknown) => e instanceof RangeError || e instanceof CodecError, 'past the end of the buffer');
});

test('nested arrays keep their children numbered as on the wire', () => {
  const c = nestedArray(u32);
  const s = { list: attr(1, c) } as const satisfies Schema;
  const wire = Buffer.from('14000100' + '08000100' + '0a000000' + '08000200' + '0b000000', 'hex');
  const dec = readAttrs(s, wire, 0, wire.length);
  assert.equal([...dec.list!], [10, 11]);
  assert.is(enc(s, dec).toString('hex'), wire.toString('hex'));
});

test.run();
