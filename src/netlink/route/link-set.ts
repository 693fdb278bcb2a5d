/**
 * Changes to an existing link that `ip link set` makes besides the basics of link.ts: device
 * flags (promisc, allmulticast, arp, multicast, dynamic, trailers) and a kind's options changed
 * in place (`ip link set LINK type vxlan ...`, `type bridge ...`). Pure: builders return a Request.
 */
import { ValidationError } from '../../errors.js';
import { IFF } from '../core/constants.js';
import type { Request } from '../core/message.js';
import { withIndexes, type LinkRef } from '../core/ref.js';
import { changeLinkRequest } from './link.js';
import { linkKind, type LinkOptionsOf } from './kinds/registry.js';

/** IFF_* bits `ip link set` changes by name, and whether "on" sets the bit or clears it. */
const FLAG_BITS = {
  up: { bit: IFF.UP, on: true },
  promisc: { bit: IFF.PROMISC, on: true },
  allmulti: { bit: 0x200, on: true },
  /** ARP on means IFF_NOARP clear. */
  arp: { bit: IFF.NOARP, on: false },
  multicast: { bit: IFF.MULTICAST, on: true },
  dynamic: { bit: 0x8000, on: true },
  /** Trailers on means IFF_NOTRAILERS clear. */
  trailers: { bit: 0x20, on: false },
} as const;

/** Device flags to turn on (true) or off (false); those not given stay as they are. */
export type LinkFlags = { [K in keyof typeof FLAG_BITS]?: boolean };

/**
 * ip link set LINK [up|down] [promisc on|off] [allmulticast on|off] [arp on|off] [multicast on|off] [dynamic on|off] [trailers on|off]
 * One RTM_NEWLINK whose ifi_change names the flags given and ifi_flags their new values.
 */
export function setFlagsRequest(ref: LinkRef, flags: LinkFlags): Request {
  let value = 0;
  let mask = 0;
  for (const [name, on] of Object.entries(flags)) {
    const f = FLAG_BITS[name as keyof typeof FLAG_BITS];
    if (!f) throw new ValidationError('flags', `${JSON.stringify(name)} is not one of ${Object.keys(FLAG_BITS).join(', ')}`);
    if (on === undefined) continue;
    if (typeof on !== 'boolean') throw new ValidationError(`flags.${name}`, 'must be true or false');
    mask |= f.bit;
    if (on === f.on) value |= f.bit;
  }
  if (mask === 0) throw new ValidationError('flags', 'names no flag to change');
  return changeLinkRequest(ref, {}, { flags: value, change: mask });
}

/**
 * ip link set LINK type KIND OPTION VALUE ...: IFLA_LINKINFO with the kind and only the options
 * given, in an RTM_NEWLINK without NLM_F_CREATE; the kernel's changelink applies them to the
 * existing link (and refuses those it cannot change, such as a vxlan's VNI or port). Unlike a
 * creation no defaults are merged in: an option left out keeps its value.
 */
export function setKindOptionsRequest<K extends string>(ref: LinkRef, kind: K, options: Partial<LinkOptionsOf<K>> | Buffer): Request {
  const k = linkKind(kind);
  if (!k?.data && !Buffer.isBuffer(options)) throw new ValidationError('kind', `${JSON.stringify(kind)} is not a registered link kind with options: give its IFLA_INFO_DATA as bytes`);
  if (Buffer.isBuffer(options)) return changeLinkRequest(ref, { linkinfo: { kind, data: options } });
  const given = options as Record<string, unknown>;
  if (Object.keys(given).length === 0) throw new ValidationError('options', 'names no option to change');
  // An underlay device (a vxlan's `link`) may be named: looked up like the link itself.
  const lower = given['link'] as LinkRef | undefined;
  return withIndexes({ lower: typeof lower === 'number' ? undefined : lower }, (idx) => {
    const data = idx.lower !== undefined ? { ...given, link: idx.lower } : given;
    return changeLinkRequest(ref, { linkinfo: { kind, data } });
  });
}
