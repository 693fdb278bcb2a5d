/**
 * LinkRef: every call that takes a link accepts an ifindex, a name or a Link object. Where the
 * kernel takes a name itself (the target of a link change, IFLA_IFNAME) the name goes on the
 * wire; where its message only has room for an ifindex (an address's link, a route's dev, a
 * bridge master) a name leaves the request pending until Rtnl looks it up.
 */
import { ValidationError } from '../../errors.js';
import type { Request } from './message.js';
import { validateIfname, validateU32 } from './validate.js';

/** A link named by ifindex, by name, or by any object with an `index` (a decoded Link). Names resolve in the socket's netns. */
export type LinkRef = number | string | { readonly index: number };

/** The ifindex of a number or Link ref, or the validated name of a name ref. */
export function refKey(ref: LinkRef, field = 'link'): number | string {
  if (typeof ref === 'number') return validateU32(ref, `${field} ifindex`, 1, 0x7fffffff);
  if (typeof ref === 'string') return Buffer.byteLength(ref) > 15 ? validateAltname(ref, `${field} name`) : validateIfname(ref, `${field} name`);
  if (ref !== null && typeof ref === 'object' && typeof ref.index === 'number') return validateU32(ref.index, `${field} ifindex`, 1, 0x7fffffff);
  throw new ValidationError(field, `${String(ref)} is not an ifindex, a name or a Link`);
}

/** Checks an alternative name (up to 127 bytes, the kernel's ALTIFNAMSIZ - 1): a link can be named by one. */
export function validateAltname(name: string, field = 'altname'): string {
  if (name === '' || Buffer.byteLength(name) > 127 || /[/:\s\0]/.test(name)) {
    throw new ValidationError(field, `${JSON.stringify(name)} is not a valid alternative name (1..127 bytes, no '/', ':' or whitespace)`);
  }
  return name;
}

/** Describes a ref for error contexts: '"eth0"' or 'ifindex 3'. */
export function refText(ref: LinkRef | undefined): string | undefined {
  if (ref === undefined) return undefined;
  const k = typeof ref === 'object' ? ref.index : ref;
  return typeof k === 'string' ? `"${k}"` : `ifindex ${k}`;
}

/**
 * Builds a request whose message needs ifindexes for `refs`: at once when every ref is an
 * index or a Link, otherwise as a pending request that Rtnl resolves (one pipelined lookup for
 * a whole batch) before sending.
 */
export function withIndexes<K extends string>(refs: { [P in K]?: LinkRef | undefined }, build: (idx: Partial<Record<K, number>>) => Request): Request {
  const keys = Object.keys(refs) as K[];
  const idx: Partial<Record<K, number>> = {};
  const names: string[] = [];
  for (const k of keys) {
    const r = refs[k];
    if (r === undefined) continue;
    const key = refKey(r, k);
    if (typeof key === 'number') idx[k] = key;
    else names.push(key);
  }
  if (names.length === 0) return build(idx);
  // Validate everything else now, so a bad CIDR fails at build time, not at send time.
  const probe = build({ ...Object.fromEntries(keys.map((k) => [k, 1])), ...idx } as Partial<Record<K, number>>);
  const resolve = (index: (name: string) => number): Request => {
    const full: Partial<Record<K, number>> = { ...idx };
    for (const k of keys) {
      const r = refs[k];
      if (typeof r === 'string') full[k] = index(r);
    }
    return build(full);
  };
  return {
    type: probe.type,
    flags: probe.flags,
    get size(): number {
      throw new ValidationError('link', `request still names ${names.join(', ')}: send it through Rtnl or pass an ifindex`);
    },
    write() {
      throw new ValidationError('link', `request still names ${names.join(', ')}`);
    },
    pending: names,
    resolve,
  };
}
