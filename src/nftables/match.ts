/**
 * Rule building blocks: each returns the expressions nft itself compiles for one predicate or
 * statement (`oifname "br0"`, `ip saddr 10.0.0.0/24`, `ct state established,related`, `fib
 * daddr type local`, `masquerade`, `dnat ip to ... map @m`), register for register and byte for
 * byte, so a rule built here reads back in `nft list ruleset` as if nft had written it. Every
 * input is validated; nothing is built from strings.
 */
import { ValidationError } from '../errors.js';
import { validateIfname } from '../netlink/validate.js';
import { parseIp } from '../netlink/ip.js';
import { CT_STATE, CT_STATUS, NFPROTO, NFTA_FIB_F, NFT_FIB_RESULT, NFT_REG, NFT_REG32_00, NF_NAT_RANGE, RTN, type CmpOp, type CtState, type CtStatus, type Family } from './constants.js';
import { checkObjectName } from './objects.js';
import type { Expr } from './expr.js';

const R1 = NFT_REG.R1;
const u32le = (v: number): Buffer => {
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
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(typeof cidr === 'string' ? cidr : '');
  const addr = m ? parseIp(m[1] as string) : undefined;
  const prefix = m ? Number(m[2]) : NaN;
  if (!addr || addr.length !== 4 || !(prefix >= 1 && prefix <= 32)) throw new ValidationError(field, `${JSON.stringify(cidr)} is not an IPv4 CIDR with a prefix of 1 to 32`);
  const net = Buffer.from(addr);
  for (let i = 0; i < 4; i++) {
    const bits = Math.max(0, Math.min(8, prefix - i * 8));
    net[i] = (net[i] as number) & ((0xff << (8 - bits)) & 0xff);
  }
  const offset = field === 'saddr' ? 12 : 16;
  if (prefix % 8 === 0) {
    const len = prefix / 8;
    return [
      { type: 'payload', base: 'network', offset, len, dreg: R1 },
      { type: 'cmp', sreg: R1, op, data: net.subarray(0, len) },
    ];
  }
  const mask = Buffer.alloc(4);
  mask.writeUInt32BE((0xffffffff << (32 - prefix)) >>> 0);
  return [
    { type: 'payload', base: 'network', offset, len: 4, dreg: R1 },
    { type: 'bitwise', sreg: R1, dreg: R1, len: 4, mask, xor: Buffer.alloc(4) },
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

/** `ct state established,related`: any of the bits set. */
export function ctState(states: readonly CtState[]): Expr[] {
  const mask = bits(CT_STATE, states, 'ct state');
  return [
    { type: 'ct', key: 'state', dreg: R1 },
    { type: 'bitwise', sreg: R1, dreg: R1, len: 4, mask: u32le(mask), xor: Buffer.alloc(4) },
    { type: 'cmp', sreg: R1, op: 'neq', data: Buffer.alloc(4) },
  ];
}

/** `ct status dnat`: any of the status bits set. */
export function ctStatus(statuses: readonly CtStatus[]): Expr[] {
  const mask = bits(CT_STATUS, statuses, 'ct status');
  return [
    { type: 'ct', key: 'status', dreg: R1 },
    { type: 'bitwise', sreg: R1, dreg: R1, len: 4, mask: u32le(mask), xor: Buffer.alloc(4) },
    { type: 'cmp', sreg: R1, op: 'neq', data: Buffer.alloc(4) },
  ];
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
 * `dnat ip to [ip daddr .] meta l4proto . th dport map @SET`: the key fields are loaded into
 * consecutive 4-byte registers, looked up in the map, and the address and port it yields
 * (ipv4_addr . inet_service) become the NAT target.
 */
export function dnatMap(set: string, key: { daddr: boolean }, family: Family = 'ip', setId?: number): Expr[] {
  const first = key.daddr ? R1 : undefined;
  const out: Expr[] = [];
  if (key.daddr) out.push(...nfproto('ipv4'), { type: 'payload', base: 'network', offset: 16, len: 4, dreg: R1 });
  // The first field goes in NFT_REG_1, each next one in the 4-byte register after it.
  const l4 = first === undefined ? R1 : NFT_REG32_00 + 1;
  out.push({ type: 'meta', key: 'l4proto', dreg: l4 });
  out.push({ type: 'payload', base: 'transport', offset: 2, len: 2, dreg: l4 === R1 ? NFT_REG32_00 + 1 : l4 + 1 });
  out.push({ type: 'lookup', sreg: R1, dreg: R1, set: checkObjectName(set, 'set'), ...(setId !== undefined ? { setId } : {}) });
  out.push({ type: 'nat', nat: 'dnat', family, addr: R1, proto: NFT_REG32_00 + 1 });
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

/** Field bytes: an IPv4 address, a protocol number (1 byte), a port (2 bytes, big-endian). */
export const field = {
  ipv4(ip: string): Buffer {
    const b = parseIp(ip);
    if (!b || b.length !== 4) throw new ValidationError('address', `${JSON.stringify(ip)} is not an IPv4 address`);
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
