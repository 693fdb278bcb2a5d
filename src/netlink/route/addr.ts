/** Address requests (RTM_NEWADDR / RTM_DELADDR / RTM_GETADDR) and the decoded Address view. Pure. */
import { AF, IFA_F, NLM_F, RT_SCOPE, RTM } from '../core/constants.js';
import { decodePayload, request, type RawMessage, type Request } from '../core/message.js';
import { addrMessage, type AddrAttrs, type IfAddrMsg } from './schemas.js';
import { withIndexes, type LinkRef } from '../core/ref.js';
import { validateIfname, validateU32 } from '../core/validate.js';
import { ipv4Broadcast, parseCidr, parseIp } from '../../ip/parse.js';
import { ValidationError } from '../../errors.js';

/** A lifetime in seconds, or 'forever' (0xffffffff on the wire). */
export type Lifetime = number | 'forever';
const FOREVER = 0xffffffff;
const lifetime = (n: number): Lifetime => (n === FOREVER ? 'forever' : n);

/** IFA_F_* flag names as `ip addr` prints them. */
export const ADDR_FLAG_NAMES: Readonly<Record<string, number>> = {
  secondary: 0x01, nodad: 0x02, optimistic: 0x04, dadfailed: 0x08, home: 0x10, deprecated: 0x20, tentative: 0x40, permanent: 0x80,
  mngtmpaddr: 0x100, noprefixroute: 0x200, autojoin: 0x400, stable_privacy: 0x800,
};

/** An address as the kernel reports it. */
export interface Address {
  family: 4 | 6;
  index: number;
  /** 'a.b.c.d/n' or 'x::y/n' */
  cidr: string;
  address: string;
  prefix: number;
  scope: number;
  flags: number;
  broadcast?: string;
  label?: string;
  /** For point-to-point links: the peer address (IFA_ADDRESS when it differs from IFA_LOCAL). */
  peer?: string;
  /** IFA_F_* flags by name ('permanent', 'nodad', 'tentative', ...). */
  flagNames: string[];
  /** Seconds left before the address becomes invalid, or 'forever'. */
  validLft?: Lifetime;
  /** Seconds left before the address becomes deprecated, or 'forever'. */
  preferredLft?: Lifetime;
  /** Metric of the prefix route the address brings (IFA_RT_PRIORITY, `ip addr add ... metric N`). */
  metric?: number;
  raw: { header: IfAddrMsg; attrs: AddrAttrs };
}

/** Decodes an RTM_NEWADDR message. */
export function decodeAddress(m: RawMessage): Address {
  const { header, attrs } = decodePayload(addrMessage, m.payload);
  const family = header.family === AF.INET6 ? 6 : 4;
  const address = attrs.local ?? attrs.address ?? '';
  const a: Address = {
    family,
    index: header.index,
    cidr: `${address}/${header.prefixlen}`,
    address,
    prefix: header.prefixlen,
    scope: header.scope,
    flags: attrs.flags ?? header.flags,
    flagNames: [],
    raw: { header, attrs },
  };
  a.flagNames = Object.keys(ADDR_FLAG_NAMES).filter((k) => (a.flags & (ADDR_FLAG_NAMES[k] as number)) !== 0);
  if (attrs.cacheinfo) {
    a.validLft = lifetime(attrs.cacheinfo.valid);
    a.preferredLft = lifetime(attrs.cacheinfo.preferred);
  }
  if (attrs.broadcast !== undefined) a.broadcast = attrs.broadcast;
  if (attrs.label !== undefined) a.label = attrs.label;
  if (attrs.rtPriority !== undefined) a.metric = attrs.rtPriority;
  if (attrs.local !== undefined && attrs.address !== undefined && attrs.address !== attrs.local) a.peer = attrs.address;
  return a;
}

/** Options for adding an address. */
export interface AddrOptions {
  /** IPv4 broadcast: computed from the prefix unless false or given explicitly. */
  broadcast?: string | false;
  /** IPv6: skip duplicate address detection (IFA_F_NODAD), so the address is usable at once. */
  nodad?: boolean;
  /** Do not add the prefix route (IFA_F_NOPREFIXROUTE). */
  noprefixroute?: boolean;
  label?: string;
  scope?: number;
  /** Peer address for point-to-point links. */
  peer?: string;
  /** Seconds the address stays valid (`valid_lft`); default forever. */
  validLft?: Lifetime;
  /** Seconds it stays preferred (`preferred_lft`); default forever. */
  preferredLft?: Lifetime;
  /** IPv6 optimistic DAD. */
  optimistic?: boolean;
  /** IPv6: manage temporary addresses from this one (`mngtmpaddr`). */
  mngtmpaddr?: boolean;
  /** Join the multicast group of the address (`autojoin`). */
  autojoin?: boolean;
  /** IPv6 home address (`home`). */
  home?: boolean;
  /** Metric of the prefix route (`metric N`). */
  metric?: number;
}

function lft(v: Lifetime | undefined, field: string): number {
  return v === undefined || v === 'forever' ? FOREVER : validateU32(v, field);
}

function addrRequest(type: number, flags: number, link: LinkRef, cidr: string, o: AddrOptions): Request {
  return withIndexes({ link }, (idx) => buildAddr(type, flags, idx.link as number, cidr, o));
}

function buildAddr(type: number, flags: number, index: number, cidr: string, o: AddrOptions): Request {
  const c = parseCidr(cidr);
  validateU32(index, 'ifindex', 1, 0x7fffffff);
  let ifaFlags = 0;
  if (o.home) ifaFlags |= IFA_F.HOMEADDRESS;
  if (o.nodad) ifaFlags |= IFA_F.NODAD;
  if (o.optimistic) ifaFlags |= IFA_F.OPTIMISTIC;
  if (o.mngtmpaddr) ifaFlags |= IFA_F.MANAGETEMPADDR;
  if (o.noprefixroute) ifaFlags |= IFA_F.NOPREFIXROUTE;
  if (o.autojoin) ifaFlags |= 0x400;
  const attrs: AddrAttrs = { local: c.address, address: o.peer !== undefined ? parseIp(o.peer, 'peer').address : c.address };
  if (c.family === 4 && type === RTM.NEWADDR && o.broadcast !== false && c.prefix < 31) {
    attrs.broadcast = o.broadcast !== undefined ? parseIp(o.broadcast, 'broadcast').address : ipv4Broadcast(c.address, c.prefix);
  }
  if (o.label !== undefined) attrs.label = validateIfname(o.label, 'label');
  // iproute2 puts flags that fit in the header's u8 there and only larger ones in IFA_FLAGS.
  if (ifaFlags > 0xff) attrs.flags = ifaFlags;
  if (o.metric !== undefined) attrs.rtPriority = validateU32(o.metric, 'metric');
  if (o.validLft !== undefined || o.preferredLft !== undefined) {
    const valid = lft(o.validLft, 'validLft');
    const preferred = lft(o.preferredLft, 'preferredLft');
    if (preferred > valid) throw new ValidationError('preferredLft', 'must not exceed validLft');
    attrs.cacheinfo = { preferred, valid, cstamp: 0, tstamp: 0 };
  }
  return request(
    addrMessage,
    type,
    flags,
    {
      family: c.family === 4 ? AF.INET : AF.INET6,
      prefixlen: c.prefix,
      flags: ifaFlags & 0xff,
      scope: o.scope ?? RT_SCOPE.UNIVERSE,
      index,
    },
    attrs,
  );
}

/** ip addr add CIDR [brd +] dev LINK [nodad] [valid_lft N preferred_lft N] */
export function addAddrRequest(link: LinkRef, cidr: string, o: AddrOptions = {}): Request {
  return addrRequest(RTM.NEWADDR, NLM_F.CREATE | NLM_F.EXCL, link, cidr, o);
}

/** ip addr replace CIDR dev LINK (also changes lifetimes of an existing address) */
export function replaceAddrRequest(link: LinkRef, cidr: string, o: AddrOptions = {}): Request {
  return addrRequest(RTM.NEWADDR, NLM_F.CREATE | NLM_F.REPLACE, link, cidr, o);
}

/** ip addr del CIDR dev LINK */
export function deleteAddrRequest(link: LinkRef, cidr: string): Request {
  return addrRequest(RTM.DELADDR, 0, link, cidr, { broadcast: false });
}

/** ip addr show [dev INDEX] (family 0 = both) */
export function dumpAddrRequest(filter: { family?: 4 | 6; index?: number } = {}): Request {
  const family = filter.family === 4 ? AF.INET : filter.family === 6 ? AF.INET6 : AF.UNSPEC;
  return request(addrMessage, RTM.GETADDR, 0, { family, index: filter.index ?? 0 });
}
