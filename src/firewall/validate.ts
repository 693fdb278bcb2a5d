/**
 * Gatekeepers for the backend-neutral desired state. Every string in it reaches some tool's input
 * (iptables-restore tokenizes on whitespace and quotes; nft names are checked by the kernel), so
 * the state is held to the strictest backend's alphabet: a value that passes here is safe on every
 * backend, and refusing early is the only injection defence the rule builders need.
 */
import { validateIfname } from '../netlink/core/validate.js';
import { ValidationError, shown as show } from '../errors.js';
import type { Protocol } from './spec.js';

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
