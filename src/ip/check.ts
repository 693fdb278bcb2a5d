/**
 * Strict address checks for text that reaches a tool's input (iptables-restore, nft): only the
 * canonical forms pass (a dotted quad, RFC 5952 IPv6 without zone or IPv4 tail), so a value can
 * never be read as a token of another meaning. Pure; parsing is ipaddr.js's.
 */
import ipaddr from 'ipaddr.js';
import { ValidationError, shown as show } from '../errors.js';

/** Returns a dotted-quad IPv4 address; other forms ("127.1", "0x7f.0.0.1", IPv6) are refused. */
export function checkIPv4(field: string, value: unknown): string {
  if (typeof value !== 'string' || !ipaddr.IPv4.isValidFourPartDecimal(value)) {
    throw new ValidationError(field, `must be a dotted-quad IPv4 address${ipv6Hint(value)}, got ${show(value)}`);
  }
  return value;
}

/**
 * Returns an IPv6 address in canonical form (RFC 5952); zone ids ("fe80::1%eth0"), IPv4-mapped
 * forms and anything ipaddr.js would not parse are refused, so the text is only hex and colons.
 */
export function checkIPv6(field: string, value: unknown): string {
  if (typeof value !== 'string' || !value.includes(':') || value.includes('%') || value.includes('.') || !ipaddr.IPv6.isValid(value)) {
    throw new ValidationError(field, `must be an IPv6 address such as fd00:10::2, got ${show(value)}`);
  }
  return ipaddr.IPv6.parse(value).toString();
}

/** A parsed CIDR of either family, normalized to its network address. */
export interface Cidr {
  family: 4 | 6;
  /** "192.168.10.0/24" even when given "192.168.10.1/24"; "fd00:10::/64" in canonical form. */
  cidr: string;
  network: ipaddr.IPv4 | ipaddr.IPv6;
  prefix: number;
}

/** Parses an IPv6 CIDR with a prefix of 1..128 and normalizes it to its network address. */
export function checkIPv6Cidr(field: string, value: unknown): Cidr {
  const m = typeof value === 'string' ? /^([0-9A-Fa-f:]+)\/(\d{1,3})$/.exec(value) : null;
  const addr = m?.[1];
  const prefix = Number(m?.[2]);
  if (addr === undefined || !addr.includes(':') || !ipaddr.IPv6.isValid(addr) || !(prefix >= 1 && prefix <= 128)) {
    throw new ValidationError(field, `must be an IPv6 CIDR such as fd00:10::/64 with a prefix of 1..128, got ${show(value)}`);
  }
  const network = ipaddr.IPv6.networkAddressFromCIDR(`${addr}/${prefix}`);
  return { family: 6, cidr: `${network.toString()}/${prefix}`, network, prefix };
}

/** Parses an IPv4 CIDR with a prefix of 1..32 and normalizes it to its network address. */
export function checkIPv4Cidr(field: string, value: unknown): Cidr {
  const m = typeof value === 'string' ? /^([0-9.]+)\/(\d{1,2})$/.exec(value) : null;
  const addr = m?.[1];
  const prefix = Number(m?.[2]);
  if (addr === undefined || !ipaddr.IPv4.isValidFourPartDecimal(addr) || !(prefix >= 1 && prefix <= 32)) {
    throw new ValidationError(field, `must be an IPv4 CIDR such as 192.168.10.0/24 with a prefix of 1..32${ipv6Hint(value)}, got ${show(value)}`);
  }
  const network = ipaddr.IPv4.networkAddressFromCIDR(`${addr}/${prefix}`);
  return { family: 4, cidr: `${network.toString()}/${prefix}`, network, prefix };
}

function ipv6Hint(value: unknown): string {
  return typeof value === 'string' && value.includes(':') ? ' (IPv6 rules are written by ip6tables-restore, with the IPv6 builders)' : '';
}
