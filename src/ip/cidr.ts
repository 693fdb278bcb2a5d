/**
 * Subnet arithmetic for bridge networks, IPv4 and IPv6 alike. Pure: no I/O.
 *
 * Addresses are handled as bigints so that IPAM can step through any prefix length of either
 * family without re-parsing strings and without 32-bit assumptions; ipaddr.js does the parsing,
 * the validation and the canonical text (RFC 5952 for IPv6).
 */
import ipaddr from 'ipaddr.js';
import { ValidationError } from '../errors.js';
import { reservedIPv4Range, reservedIPv6Range } from './reserved.js';

/** An address family as the bridge layer names it. */
export type Family = 4 | 6;

/** A parsed bridge subnet: every address as canonical text. */
export interface Subnet {
  family: Family;
  /** Canonical network CIDR, e.g. '192.168.10.0/24' or 'fd00:10::/64'. */
  subnet: string;
  /** The bridge's own address, e.g. '192.168.10.1' or 'fd00:10::1'. */
  gateway: string;
  prefix: number;
  network: string;
  /** The block's last address (the broadcast address in IPv4; never handed out in either family). */
  broadcast: string;
}

/** Shortest accepted IPv4 prefix: /8 keeps reservation directories and full-range scans bounded. */
export const MIN_PREFIX = 8;
/** Longest accepted IPv4 prefix: /30 still leaves one host besides the gateway. */
export const MAX_PREFIX = 30;
/** Shortest accepted IPv6 prefix: a /16 is already far more than any host can attach. */
export const MIN_PREFIX6 = 16;
/** Longest accepted IPv6 prefix: /126 leaves two addresses besides the subnet-router anycast one. */
export const MAX_PREFIX6 = 126;

const BITS: Record<Family, number> = { 4: 32, 6: 128 };

const DOTTED_QUAD = /^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$/;

/** The family of an address written as text, or undefined when it is neither. */
export function ipFamily(ip: string): Family | undefined {
  // Cheap shape tests first: ipaddr.js validates by parsing, and a parse that fails throws,
  // which cost ~0.4 ms per connect when every IPv6 address was first tried as IPv4.
  if (ip.includes(':')) return !ip.includes('%') && ipaddr.IPv6.isValid(ip) ? 6 : undefined;
  return DOTTED_QUAD.test(ip) && ipaddr.IPv4.isValidFourPartDecimal(ip) ? 4 : undefined;
}

/** Converts an IPv4 or IPv6 address to a bigint; throws ValidationError naming `field`. */
export function ipToBig(ip: string, field = 'ip'): bigint {
  const hit = BIGS.get(ip);
  if (hit !== undefined) return hit;
  const family = ipFamily(ip);
  if (family === undefined) throw new ValidationError(field, `'${ip}' is not an IPv4 or IPv6 address`);
  let n = 0n;
  for (const b of (family === 4 ? ipaddr.IPv4.parse(ip) : ipaddr.IPv6.parse(ip)).toByteArray()) n = (n << 8n) | BigInt(b);
  // Gateways, subnet bounds and cursors are converted on every connect: keep the recent ones.
  if (BIGS.size >= 4096) BIGS.clear();
  BIGS.set(ip, n);
  return n;
}

const BIGS = new Map<string, bigint>();

/** Converts a bigint to canonical address text of `family`. */
export function bigToIp(n: bigint, family: Family): string {
  const bytes: number[] = [];
  for (let i = BITS[family] / 8 - 1; i >= 0; i--) bytes.push(Number((n >> BigInt(i * 8)) & 0xffn));
  return ipaddr.fromByteArray(bytes).toString();
}

/** Canonical text of an address of either family (RFC 5952 for IPv6); throws ValidationError. */
export function canonicalIp(ip: string, field = 'ip'): string {
  return bigToIp(ipToBig(ip, field), ipFamily(ip) ?? 4);
}

/** Converts a dotted-quad IPv4 address to an unsigned 32-bit number; throws ValidationError. */
export function ipToU32(ip: string, field = 'ip'): number {
  if (ipFamily(ip) !== 4) throw new ValidationError(field, `'${ip}' is not a dotted-quad IPv4 address`);
  return Number(ipToBig(ip, field));
}

/** Converts an unsigned 32-bit number to dotted-quad text. */
export function u32ToIp(n: number): string {
  return bigToIp(BigInt(n >>> 0), 4);
}

/** The netmask of a prefix length in `family` as a bigint (/0 gives 0). */
export function prefixMask(prefix: number, family: Family = 4): bigint {
  const bits = BigInt(BITS[family]);
  return ((1n << bits) - 1n) ^ ((1n << (bits - BigInt(prefix))) - 1n);
}

/**
 * Splits 'ADDRESS/N' (either family) into its family, address and prefix; any host bits are
 * kept. Accepts /0 up to the family's width; callers narrow the range.
 */
export function cidrBits(input: string, field = 'cidr'): { family: Family; address: bigint; prefix: number } {
  const slash = input.lastIndexOf('/');
  const addr = slash < 0 ? '' : input.slice(0, slash);
  const len = slash < 0 ? '' : input.slice(slash + 1);
  const family = ipFamily(addr);
  if (family === undefined || !/^(0|[1-9][0-9]{0,2})$/.test(len)) {
    throw new ValidationError(field, `'${input}' is not a CIDR such as 192.168.10.1/24 or fd00:10::/64`);
  }
  const prefix = Number(len);
  if (prefix > BITS[family]) throw new ValidationError(field, `'${input}': prefix /${prefix} is longer than ${BITS[family]}`);
  return { family, address: ipToBig(addr, field), prefix };
}

/**
 * Parses a bridge subnet, both families alike, the way the book chapter writes it:
 * '192.168.10.1/24' is gateway 192.168.10.1 on 192.168.10.0/24 ('fd00:10::1/64' is gateway
 * fd00:10::1 on fd00:10::/64), and a bare network address gets the first host as gateway.
 */
export function parseSubnet(input: string, field = 'subnet'): Subnet {
  // Records are parsed on every read; a subnet's text always parses to the same frozen result.
  const hit = SUBNETS.get(input);
  if (hit) return hit;
  const sub = Object.freeze(computeSubnet(input, field));
  if (SUBNETS.size >= 1024) SUBNETS.clear();
  SUBNETS.set(input, sub);
  return sub;
}

const SUBNETS = new Map<string, Subnet>();

function computeSubnet(input: string, field: string): Subnet {
  const { family, address, prefix } = cidrBits(input, field);
  const [min, max] = family === 4 ? [MIN_PREFIX, MAX_PREFIX] : [MIN_PREFIX6, MAX_PREFIX6];
  if (prefix < min || prefix > max) {
    throw new ValidationError(field, `'${input}': prefix /${prefix} is outside /${min}../${max} (a bridge needs a gateway and at least one host)`);
  }
  const mask = prefixMask(prefix, family);
  const network = address & mask;
  const last = network | (((1n << BigInt(BITS[family])) - 1n) ^ mask);
  const text = (n: bigint): string => bigToIp(n, family);
  const reserved = family === 4 ? reservedIPv4Range(text(network), prefix) : reservedIPv6Range(text(network), prefix);
  if (reserved) throw new ValidationError(field, `'${input}' overlaps ${reserved}, which is not for container networks`);
  const gateway = address === network ? network + 1n : address;
  if (gateway === last) {
    throw new ValidationError(field, `'${input}': gateway ${text(gateway)} is the broadcast address of ${text(network)}/${prefix}`);
  }
  return { family, subnet: `${text(network)}/${prefix}`, gateway: text(gateway), prefix, network: text(network), broadcast: text(last) };
}

/** True when two CIDRs share any address (host bits in either are ignored; families never overlap). */
export function overlaps(a: string, b: string): boolean {
  const x = cidrBits(a, 'cidr');
  const y = cidrBits(b, 'cidr');
  if (x.family !== y.family) return false;
  // Two aligned blocks overlap exactly when they agree on the shorter prefix.
  const mask = prefixMask(Math.min(x.prefix, y.prefix), x.family);
  return (x.address & mask) === (y.address & mask);
}

/** True when `ip` lies inside `cidr` (network and last address included; other family: false). */
export function contains(cidr: string, ip: string): boolean {
  const { family, address, prefix } = cidrBits(cidr, 'cidr');
  if (ipFamily(ip) !== family) return false;
  const mask = prefixMask(prefix, family);
  return (ipToBig(ip) & mask) === (address & mask);
}
