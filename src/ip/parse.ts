/**
 * Address text as users give it, checked and normalized before anything reaches the kernel:
 * a bare address or an address with a prefix, in either family. Pure.
 */
import { ValidationError } from '../errors.js';
import { formatIPv4, formatIPv6, maskBytes, normalizeIp } from './bytes.js';

/** An address with prefix length, family resolved. */
export interface ParsedCidr {
  family: 4 | 6;
  address: string;
  prefix: number;
}

/** Parses 'a.b.c.d/n' or 'x::y/n' (prefix optional: host route). */
export function parseCidr(input: unknown, field = 'address'): ParsedCidr {
  if (typeof input !== 'string') throw new ValidationError(field, 'must be a string like 192.168.10.2/24');
  const [addr, prefixText, extra] = input.split('/');
  // Short and octal IPv4 forms ('1.2.3', '010.1.1.1') are refused, not guessed at.
  const parsed = addr === undefined || extra !== undefined ? undefined : normalizeIp(addr);
  if (!parsed) {
    throw new ValidationError(field, `${JSON.stringify(input)} is not an IP address with an optional /prefix`);
  }
  const family = parsed.family;
  const max = family === 4 ? 32 : 128;
  let prefix = max;
  if (prefixText !== undefined) {
    if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max) {
      throw new ValidationError(field, `${JSON.stringify(input)} has a prefix outside 0..${max}`);
    }
    prefix = Number(prefixText);
  }
  return { family, address: parsed.address, prefix };
}

/** Parses a bare IP address. */
export function parseIp(input: unknown, field = 'address'): { family: 4 | 6; address: string } {
  const p = typeof input === 'string' ? normalizeIp(input) : undefined;
  if (!p) throw new ValidationError(field, `${JSON.stringify(input)} is not an IP address`);
  return { family: p.family, address: p.address };
}

/** The IPv4 broadcast address of addr/prefix ('+' in `ip addr add ... brd +`). */
export function ipv4Broadcast(address: string, prefix: number): string {
  const p = normalizeIp(address);
  if (!p || p.family !== 4) throw new ValidationError('address', `${JSON.stringify(address)} is not an IPv4 address`);
  return formatIPv4(Uint8Array.from(maskBytes(p.bytes, prefix, 1)));
}

/** The network address of a CIDR (host bits cleared). */
export function networkAddress(address: string, prefix: number): string {
  const p = normalizeIp(address);
  if (!p) throw new ValidationError('address', `${JSON.stringify(address)} is not an IP address`);
  const b = Uint8Array.from(maskBytes(p.bytes, prefix, 0));
  return p.family === 4 ? formatIPv4(b) : formatIPv6(b);
}
