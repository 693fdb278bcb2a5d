/** Input checks that run before anything reaches the kernel. Pure. */
import { ValidationError } from '../../errors.js';
import { formatIPv4, formatIPv6, maskBytes, normalizeIp } from '../../ip/bytes.js';

export const IFNAMSIZ = 16;

/** Throws ValidationError unless `name` is a name the kernel's dev_valid_name() accepts. */
export function validateIfname(name: unknown, field = 'interface name'): string {
  if (typeof name !== 'string' || name.length === 0) throw new ValidationError(field, 'must be a non-empty string');
  if (Buffer.byteLength(name) >= IFNAMSIZ) {
    throw new ValidationError(field, `${JSON.stringify(name)} is ${Buffer.byteLength(name)} bytes; the kernel allows at most ${IFNAMSIZ - 1}`);
  }
  if (name === '.' || name === '..') throw new ValidationError(field, `${JSON.stringify(name)} is reserved`);
  if (/[/:\s\0]/.test(name)) throw new ValidationError(field, `${JSON.stringify(name)} contains '/', ':', NUL or whitespace`);
  return name;
}


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

/** Checks a MAC address 'aa:bb:cc:dd:ee:ff'. */
export function validateMac(input: unknown, field = 'MAC address'): string {
  if (typeof input !== 'string' || !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(input)) {
    throw new ValidationError(field, `${JSON.stringify(input)} is not a MAC address like 02:42:ac:11:00:02`);
  }
  return input.toLowerCase();
}

/** Checks a positive 32-bit integer (ifindex, fd, pid, MTU). */
export function validateU32(input: unknown, field: string, min = 0, max = 0xffffffff): number {
  if (typeof input !== 'number' || !Number.isInteger(input) || input < min || input > max) {
    throw new ValidationError(field, `${String(input)} is not an integer in ${min}..${max}`);
  }
  return input;
}
