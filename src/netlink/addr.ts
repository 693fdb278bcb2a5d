/** Address requests (RTM_NEWADDR / RTM_DELADDR / RTM_GETADDR) and the decoded Address view. Pure. */
import { AF, IFA_F, NLM_F, RT_SCOPE, RTM } from './constants.js';
import { decodePayload, request, type RawMessage, type Request } from './message.js';
import { addrMessage, type AddrAttrs, type IfAddrMsg } from './schemas.js';
import { ipv4Broadcast, parseCidr, parseIp, validateIfname, validateU32 } from './validate.js';

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
    raw: { header, attrs },
  };
  if (attrs.broadcast !== undefined) a.broadcast = attrs.broadcast;
  if (attrs.label !== undefined) a.label = attrs.label;
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
}

function addrRequest(type: number, flags: number, index: number, cidr: string, o: AddrOptions): Request {
  const c = parseCidr(cidr);
  validateU32(index, 'ifindex', 1, 0x7fffffff);
  let ifaFlags = 0;
  if (o.nodad) ifaFlags |= IFA_F.NODAD;
  if (o.noprefixroute) ifaFlags |= IFA_F.NOPREFIXROUTE;
  const attrs: AddrAttrs = { local: c.address, address: o.peer !== undefined ? parseIp(o.peer, 'peer').address : c.address };
  if (c.family === 4 && type === RTM.NEWADDR && o.broadcast !== false && c.prefix < 31) {
    attrs.broadcast = o.broadcast !== undefined ? parseIp(o.broadcast, 'broadcast').address : ipv4Broadcast(c.address, c.prefix);
  }
  if (o.label !== undefined) attrs.label = validateIfname(o.label, 'label');
  // iproute2 puts flags that fit in the header's u8 there and only larger ones in IFA_FLAGS.
  if (ifaFlags > 0xff) attrs.flags = ifaFlags;
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

/** ip addr add CIDR [brd +] dev INDEX [nodad] */
export function addAddrRequest(index: number, cidr: string, o: AddrOptions = {}): Request {
  return addrRequest(RTM.NEWADDR, NLM_F.CREATE | NLM_F.EXCL, index, cidr, o);
}

/** ip addr replace CIDR dev INDEX */
export function replaceAddrRequest(index: number, cidr: string, o: AddrOptions = {}): Request {
  return addrRequest(RTM.NEWADDR, NLM_F.CREATE | NLM_F.REPLACE, index, cidr, o);
}

/** ip addr del CIDR dev INDEX */
export function deleteAddrRequest(index: number, cidr: string): Request {
  return addrRequest(RTM.DELADDR, 0, index, cidr, { broadcast: false });
}

/** ip addr show [dev INDEX] (family 0 = both) */
export function dumpAddrRequest(filter: { family?: 4 | 6; index?: number } = {}): Request {
  const family = filter.family === 4 ? AF.INET : filter.family === 6 ? AF.INET6 : AF.UNSPEC;
  return request(addrMessage, RTM.GETADDR, 0, { family, index: filter.index ?? 0 });
}
