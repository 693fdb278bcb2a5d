/**
 * The rules for network names and endpoint ids, stated once. The store uses them for paths, the
 * rule builders for chain names and rule comments, and the bridge layer to refuse bad input
 * before anything changes; a name that one layer accepts is therefore accepted by all of them.
 */
import { ValidationError, shown as show } from './errors.js';
import { validateIfname } from './netlink/core/validate.js';

/** Longest endpoint id: a CNI container id (64 hex digits) fits. */
export const ENDPOINT_ID_MAX = 64;

const ID_RE = new RegExp(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,${ENDPOINT_ID_MAX - 1}}$`);
const NETWORK_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/**
 * Returns `value` if it is an endpoint id: 1-64 characters of [A-Za-z0-9_.-] starting with a
 * letter or digit (so it can be a file name, a rule comment and never reads as an option).
 */
export function checkEndpointId(value: unknown, field = 'endpoint id'): string {
  if (typeof value !== 'string' || !ID_RE.test(value)) {
    throw new ValidationError(field, `must be 1-${ENDPOINT_ID_MAX} characters of [A-Za-z0-9_.-] starting with a letter or digit, got ${show(value)}`);
  }
  return value;
}

/**
 * Returns `value` if it is a network name. The bridge is named after the network, so the name
 * follows the kernel's interface-name rules (at most 15 bytes) within [A-Za-z0-9_.-]; it must not
 * end in ".json", which would collide with another network's record file.
 */
export function checkNetworkName(value: unknown, field = 'network name'): string {
  const name = validateIfname(value, field);
  if (!NETWORK_RE.test(name)) throw new ValidationError(field, `must use only [A-Za-z0-9_.-] and start with a letter or digit, got ${show(name)}`);
  if (name.endsWith('.json')) throw new ValidationError(field, `${show(name)} must not end in .json`);
  return name;
}
