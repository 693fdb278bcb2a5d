/**
 * Gatekeepers for every string that reaches restore text. iptables-restore tokenizes on
 * whitespace and quotes, so anything outside these narrow alphabets could add a rule or an
 * option; refusing early is the only injection defence the text builder needs.
 */
import ipaddr from 'ipaddr.js';
import { validateIfname } from '../../netlink/core/validate.js';
import { ValidationError } from '../../errors.js';
import type { Protocol } from '../spec.js';

const ID_RE = /^[A-Za-z0-9_.-]{1,64}$/;

/** Returns `value` if it is a network or endpoint id: 1..64 characters of [A-Za-z0-9_.-]. */
export function checkId(field: string, value: unknown): string {
  if (typeof value !== 'string' || !ID_RE.test(value)) {
    throw new ValidationError(field, `must be 1..64 characters of [A-Za-z0-9_.-], got ${show(value)}`);
  }
  return value;
}

/** Returns `value` if the kernel would accept it as an interface name and iptables would read it literally. */
export function checkIfName(field: string, value: unknown): string {
  const name = validateIfname(value, field);
  // Stricter than the kernel: '+' is an iptables wildcard ("br+" matches every br*), quotes and
  // backslashes are consumed by the restore tokenizer, and a leading '-' or '!' reads as an option.
  if (!/^[A-Za-z0-9_.][A-Za-z0-9_.-]*$/.test(name)) {
    throw new ValidationError(field, `must use only [A-Za-z0-9_.-] and not start with "-": ${show(name)}`);
  }
  return name;
}

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

/** Returns `value` if it is an integer port of 1..65535 (iptables itself accepts 0). */
export function checkPort(field: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw new ValidationError(field, `must be an integer port of 1..65535, got ${show(value)}`);
  }
  return value;
}

/** Returns `value` if it is 'tcp' or 'udp'. */
export function checkProtocol(field: string, value: unknown): Protocol {
  if (value !== 'tcp' && value !== 'udp') throw new ValidationError(field, `must be "tcp" or "udp", got ${show(value)}`);
  return value;
}

function ipv6Hint(value: unknown): string {
  return typeof value === 'string' && value.includes(':') ? ' (IPv6 rules are written by ip6tables-restore, with the IPv6 builders)' : '';
}

function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value);
  return String(value);
}
