/**
 * IPv4 subnet arithmetic for bridge networks. Pure: no I/O.
 *
 * Addresses are handled as unsigned 32-bit numbers so IPAM can step through a subnet
 * without re-parsing strings; ipaddr.js does the parsing and validation.
 */
import ipaddr from 'ipaddr.js';
import { ValidationError } from '../errors.js';
import { reservedIPv4Range } from '../addresses.js';

/** A parsed bridge subnet: every address as dotted-quad text. */
export interface Subnet {
  /** Canonical network CIDR, e.g. '192.168.10.0/24'. */
  subnet: string;
  /** The bridge's own address, e.g. '192.168.10.1'. */
  gateway: string;
  prefix: number;
  network: string;
  broadcast: string;
}

/** Shortest accepted prefix: /8 keeps reservation directories and full-range scans bounded. */
export const MIN_PREFIX = 8;
/** Longest accepted prefix: /30 still leaves one host besides the gateway. */
export const MAX_PREFIX = 30;

const CIDR_RE = /^([0-9.]+)\/([0-9]{1,2})$/;

/** Converts a dotted-quad IPv4 address to an unsigned 32-bit number; throws ValidationError. */
export function ipToU32(ip: string, field = 'ip'): number {
  if (!ipaddr.IPv4.isValidFourPartDecimal(ip)) {
    throw new ValidationError(field, `'${ip}' is not a dotted-quad IPv4 address`);
  }
  const [a = 0, b = 0, c = 0, d = 0] = ipaddr.IPv4.parse(ip).octets;
  return ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
}

/** Converts an unsigned 32-bit number to dotted-quad text. */
export function u32ToIp(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** The netmask of a prefix length as an unsigned 32-bit number (/0 gives 0). */
export function prefixMask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/**
 * Splits 'a.b.c.d/n' into its address number and prefix; any host bits are kept.
 * Accepts /0../32; callers narrow the range.
 */
export function parseCidr(input: string, field = 'cidr'): { address: number; prefix: number } {
  const m = CIDR_RE.exec(input);
  if (!m || !ipaddr.IPv4.isValidFourPartDecimal(m[1] ?? '')) {
    throw new ValidationError(field, `'${input}' is not an IPv4 CIDR such as 192.168.10.1/24`);
  }
  const prefix = Number(m[2]);
  if (prefix > 32) throw new ValidationError(field, `'${input}': prefix /${prefix} is longer than 32`);
  return { address: ipToU32(m[1] ?? '', field), prefix };
}

/**
 * Parses a bridge subnet the way the seed writes it: '192.168.10.1/24' is gateway
 * 192.168.10.1 on 192.168.10.0/24; a bare network address gets the first host as gateway.
 */
export function parseSubnet(input: string, field = 'subnet'): Subnet {
  const { address, prefix } = parseCidr(input, field);
  if (prefix < MIN_PREFIX || prefix > MAX_PREFIX) {
    throw new ValidationError(
      field,
      `'${input}': prefix /${prefix} is outside /${MIN_PREFIX}../${MAX_PREFIX} (a bridge needs a gateway and at least one host)`,
    );
  }
  const mask = prefixMask(prefix);
  const network = (address & mask) >>> 0;
  const broadcast = (network | ~mask) >>> 0;
  const reserved = reservedIPv4Range(u32ToIp(network), prefix);
  if (reserved) throw new ValidationError(field, `'${input}' overlaps ${reserved}, which is not for container networks`);
  const gateway = address === network ? network + 1 : address;
  if (gateway === broadcast) {
    throw new ValidationError(field, `'${input}': gateway ${u32ToIp(gateway)} is the broadcast address of ${u32ToIp(network)}/${prefix}`);
  }
  return {
    subnet: `${u32ToIp(network)}/${prefix}`,
    gateway: u32ToIp(gateway),
    prefix,
    network: u32ToIp(network),
    broadcast: u32ToIp(broadcast),
  };
}

/** True when two IPv4 CIDRs share any address (host bits in either are ignored). */
export function overlaps(a: string, b: string): boolean {
  const x = parseCidr(a, 'cidr');
  const y = parseCidr(b, 'cidr');
  // Two aligned blocks overlap exactly when they agree on the shorter prefix.
  const mask = prefixMask(Math.min(x.prefix, y.prefix));
  return ((x.address & mask) >>> 0) === ((y.address & mask) >>> 0);
}

/** True when `ip` lies inside `cidr` (network and broadcast included). */
export function contains(cidr: string, ip: string): boolean {
  const { address, prefix } = parseCidr(cidr, 'cidr');
  const mask = prefixMask(prefix);
  return ((ipToU32(ip) & mask) >>> 0) === ((address & mask) >>> 0);
}
