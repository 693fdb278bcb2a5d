/**
 * Rule building blocks: each returns the expressions nft itself compiles for one predicate or
 * statement (`oifname "br0"`, `ip saddr 10.0.0.0/24`, `ip6 saddr fd00::/64`, `ct state
 * established,related`, `fib daddr type local`, `masquerade`, `dnat ip|ip6 to ... map @m`),
 * register for register and byte for byte, so a rule built here reads back in `nft list
 * ruleset` as if nft had written it. Every input is validated; nothing is built from strings.
 */
import { ValidationError } from '../../errors.js';
import { validateIfname } from '../core/validate.js';
import { ipBytes } from '../../ip/bytes.js';
import { CT_STATE, CT_STATUS, NFPROTO, NFTA_FIB_F, NFT_FIB_RESULT, NFT_REG, NFT_REG32_00, NF_NAT_RANGE, RTN, type CmpOp, type CtState, type CtStatus } from './constants.js';
import { checkObjectName } from './objects.js';
import type { Expr } from './expr.js';

const R1 = NFT_REG.R1;
/** A 32-bit value in host (little-endian) byte order, as nft writes register data of meta, ct and fib. */
export const u32le = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
};

/**
 * `iifname "NAME"` / `oifname != "NAME"`: nft compares the whole 16-byte IFNAMSIZ buffer;
 * iptables-nft (`-i NAME`) compares the name and its NUL only (`style: 'iptables'`).
 */
export function ifname(dir: 'iif' | 'oif', name: string, op: 'eq' | 'neq' = 'eq', style: 'nft' | 'iptables' = 'nft'): Expr[] {
  const n = validateIfname(name, `${dir}name`);
  const data = Buffer.alloc(style === 'nft' ? 16 : Buffer.byteLength(n) + 1);
  data.write(n, 'utf8');
  return [
    { type: 'meta', key: dir === 'iif' ? 'iifname' : 'oifname', dreg: R1 },
    { type: 'cmp', sreg: R1, op, data },
  ];
}

/** `meta nfproto ipv4` (nft adds it before an `ip ...` match in an inet table). */
export function nfproto(family: 'ipv4' | 'ipv6'): Expr[] {
  return [
    { type: 'meta', key: 'nfproto', dreg: R1 },
    { type: 'cmp', sreg: R1, op: 'eq', data: Buffer.from([family === 'ipv4' ? NFPROTO.ip : NFPROTO.ip6]) },
  ];
}

/**
 * `ip saddr|daddr CIDR` (IPv4): whole bytes of the prefix are loaded and compared; a prefix
 * that ends inside a byte loads the address and masks it first, as nft does.
 */
export function ipv4Prefix(field: 'saddr' | 'daddr', cidr: string, op: CmpOp = 'eq'): Expr[] {
  return ipPrefix(4, field, cidr, op);
}

/**
 * `ip6 saddr|daddr CIDR` (IPv6), compiled as nft compiles it: a prefix of whole bytes loads and
 * compares only those bytes (`fd00:10::/64`: 8 bytes at offset 8); any other loads all 16 bytes
 * and masks them first. Put nfproto('ipv6') before it in an inet table, as nft does.
 */
export function ipv6Prefix(field: 'saddr' | 'daddr', cidr: string, op: CmpOp = 'eq'): Expr[] {
  return ipPrefix(6, field, cidr, op);
}

/** Where the addresses sit in each family's network header, and how long one is. */
const ADDR_AT = { 4: { saddr: 12, daddr: 16, len: 4 }, 6: { saddr: 8, daddr: 24, len: 16 } } as const;

function ipPrefix(family: 4 | 6, field: 'saddr' | 'daddr', cidr: string, op: CmpOp): Expr[] {
  const at = ADDR_AT[family];
  const bitsMax = at.len * 8;
  const m = (family === 4 ? /^([0-9.]+)\/(\d{1,2})$/ : /^([0-9A-Fa-f:]+)\/(\d{1,3})$/).exec(typeof cidr === 'string' ? cidr : '');
  const addr = m ? ipBytes(m[1] as string) : undefined;
  const prefix = m ? Number(m[2]) : NaN;
  if (!addr || addr.length !== at.len || !(prefix >= 1 && prefix <= bitsMax)) {
    throw new ValidationError(field, `${JSON.stringify(cidr)} is not an IPv${family} CIDR with a prefix of 1 to ${bitsMax}`);
  }
  const net = Buffer.from(addr);
  const mask = Buffer.alloc(at.len);
  for (let i = 0; i < at.len; i++) {
    const bits = Math.max(0, Math.min(8, prefix - i * 8));
    mask[i] = (0xff << (8 - bits)) & 0xff;
    net[i] = (net[i] as number) & (mask[i] as number);
  }
  const offset = at[field];
  if (prefix % 8 === 0) {
    const len = prefix / 8;
    return [
      { type: 'payload', base: 'network', offset, len, dreg: R1 },
      { type: 'cmp', sreg: R1, op, data: net.subarray(0, len) },
    ];
  }
  return [
    { type: 'payload', base: 'network', offset, len: at.len, dreg: R1 },
    { type: 'bitwise', sreg: R1, dreg: R1, len: at.len, mask, xor: Buffer.alloc(at.len) },
    { type: 'cmp', sreg: R1, op, data: net },
  ];
}

function bits<K extends string>(table: Readonly<Record<K, number>>, names: readonly K[], what: string): number {
  if (!Array.isArray(names) || names.length === 0) throw new ValidationError(what, 'needs at least one value');
  return names.reduce((v, n) => {
    const bit = (table as Readonly<Record<string, number>>)[n as string];
    if (!Object.hasOwn(table, n) || bit === undefined) throw new ValidationError(what, `unknown ${what} ${JSON.stringify(n)}`);
    return v | bit;
  }, 0);
}

/** `ct KEY BIT,...`: the ct key loaded, masked with the bits, and any of them set. */
function ctAnyBit(key: 'state' | 'status', mask: number): Expr[] {
  return [
    { type: 'ct', key, dreg: R1 },
    { type: 'bitwise', sreg: R1, dreg: R1, len: 4, mask: u32le(mask), xor: Buffer.alloc(4) },
    { type: 'cmp', sreg: R1, op: 'neq', data: Buffer.alloc(4) },
  ];
}

/** `ct state established,related`: any of the bits set. */
export function ctState(states: readonly CtState[]): Expr[] {
  return ctAnyBit('state', bits(CT_STATE, states, 'ct state'));
}

/** `ct status dnat`: any of the status bits set. */
export function ctStatus(statuses: readonly CtStatus[]): Expr[] {
  return ctAnyBit('status', bits(CT_STATUS, statuses, 'ct status'));
}

/** `fib daddr type local` / `fib saddr type local` (iptables' `-m addrtype --dst-type LOCAL`). */
export function fibAddrType(field: 'saddr' | 'daddr', type: keyof typeof RTN = 'local'): Expr[] {
  if (!Object.hasOwn(RTN, type)) throw new ValidationError('fib type', `unknown route type ${JSON.stringify(type)}`);
  return [
    { type: 'fib', flags: field === 'daddr' ? NFTA_FIB_F.DADDR : NFTA_FIB_F.SADDR, result: NFT_FIB_RESULT.addrtype, dreg: R1 },
    { type: 'cmp', sreg: R1, op: 'eq', data: u32le(RTN[type]) },
  ];
}

/** `accept`, `drop`. */
export const accept = (): Expr => ({ type: 'verdict', verdict: { code: 'accept' } });
export const drop = (): Expr => ({ type: 'verdict', verdict: { code: 'drop' } });
/** `jump CHAIN`. */
export const jump = (chain: string): Expr => ({ type: 'verdict', verdict: { code: 'jump', chain: checkObjectName(chain, 'jump') } });
/** `masquerade`. */
export const masquerade = (): Expr => ({ type: 'masq' });
/** `counter` (iptables-nft puts one in every rule). */
export const counter = (): Expr => ({ type: 'counter' });

/**
 * The register nft names the 4-byte unit `unit` (0-based) of the register space by (`reg N` in
 * `nft --debug=netlink`): a unit that starts a 16-byte register is named by it (NFT_REG_1..4),
 * any other by its 4-byte view (NFT_REG32_00 + unit), as nft does for older kernels' sake
 * (netlink_put_register). So an IPv6 address fills `reg 1` and the field after it is `reg 2`.
 */
export function register(unit: number): number {
  if (!Number.isInteger(unit) || unit < 0 || unit > 15) throw new ValidationError('register', `${unit} is not a 4-byte register unit (0-15)`);
  return unit % 4 === 0 ? R1 + unit / 4 : NFT_REG32_00 + unit;
}

/**
 * `dnat ip to [ip daddr .] meta l4proto . th dport map @SET` (or with `family` 'ip6', `dnat ip6
 * to [ip6 daddr .] ...`): the key fields are loaded into consecutive registers, each field
 * padded to 4 bytes, looked up in the map, and the address and port it yields (ipv4_addr or
 * ipv6_addr, then inet_service) become the NAT target. A key with the destination address
 * carries nft's `meta nfproto` dependency; one without does not (add it in front, as nft does
 * when it is written).
 */
export function dnatMap(set: string, key: { daddr: boolean }, family: 'ip' | 'ip6' = 'ip', setId?: number): Expr[] {
  if (family !== 'ip' && family !== 'ip6') throw new ValidationError('family', `dnat to a map needs ip or ip6, got ${JSON.stringify(family)}`);
  const at = ADDR_AT[family === 'ip' ? 4 : 6];
  const addrUnits = at.len / 4;
  const out: Expr[] = [];
  if (key.daddr) out.push(...nfproto(family === 'ip' ? 'ipv4' : 'ipv6'), { type: 'payload', base: 'network', offset: at.daddr, len: at.len, dreg: R1 });
  const l4 = key.daddr ? addrUnits : 0;
  out.push({ type: 'meta', key: 'l4proto', dreg: register(l4) });
  out.push({ type: 'payload', base: 'transport', offset: 2, len: 2, dreg: register(l4 + 1) });
  out.push({ type: 'lookup', sreg: R1, dreg: R1, set: checkObjectName(set, 'set'), ...(setId !== undefined ? { setId } : {}) });
  // The data is the address (one or four units) followed by the port.
  out.push({ type: 'nat', nat: 'dnat', family, addr: R1, proto: register(addrUnits) });
  return out;
}

/** The flags a DNAT to an address and a port has in the kernel's view (for readers of dumps). */
export const DNAT_TO_ADDR_PORT = NF_NAT_RANGE.MAP_IPS | NF_NAT_RANGE.PROTO_SPECIFIED;

/** A concatenated set key or map data: each field padded to 4 bytes, as the kernel lays out registers. */
export function concat(fields: readonly Buffer[]): Buffer {
  return Buffer.concat(fields.map((f) => Buffer.concat([f, Buffer.alloc((4 - (f.length % 4)) % 4)])));
}

/** The packed type id of a concatenation of nft data types (each 6 bits). */
export function concatType(ids: readonly number[]): number {
  return ids.reduce((t, id) => (t << 6) | id, 0);
}

/** Field bytes: an IPv4 or IPv6 address, a protocol number (1 byte), a port (2 bytes, big-endian). */
export const field = {
  ipv4(ip: string): Buffer {
    const b = ipBytes(ip);
    if (!b || b.length !== 4) throw new ValidationError('address', `${JSON.stringify(ip)} is not an IPv4 address`);
    return Buffer.from(b);
  },
  ipv6(ip: string): Buffer {
    const b = typeof ip === 'string' && ip.includes(':') ? ipBytes(ip) : undefined;
    if (!b || b.length !== 16) throw new ValidationError('address', `${JSON.stringify(ip)} is not an IPv6 address`);
    return Buffer.from(b);
  },
  proto(p: number): Buffer {
    if (!Number.isInteger(p) || p < 0 || p > 255) throw new ValidationError('protocol', `${p} is not an IP protocol number`);
    return Buffer.from([p]);
  },
  port(p: number): Buffer {
    if (!Number.isInteger(p) || p < 1 || p > 65535) throw new ValidationError('port', `${p} is not a port (1-65535)`);
    const b = Buffer.alloc(2);
    b.writeUInt16BE(p);
    return b;
  },
};
