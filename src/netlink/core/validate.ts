/** Input checks that run before anything reaches the kernel (names, MACs, integers; addresses are in src/ip). Pure. */
import { ValidationError } from '../../errors.js';

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
