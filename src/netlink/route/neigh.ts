/**
 * Neighbours (RTM_NEWNEIGH / RTM_DELNEIGH / RTM_GETNEIGH): ARP and NDP entries, proxy entries,
 * and the bridge forwarding database (family AF_BRIDGE), including VXLAN remote entries
 * (`bridge fdb ... dst IP`). Pure.
 */
import { ValidationError } from '../../errors.js';
import { AF, NLM_F } from '../core/constants.js';
import { attr, be16, ipAddr, mac, s32, u8, u16, u32, type Attrs, type Schema } from '../core/attr.js';
import { decodePayload, request, struct, structCodec, type MessageDef, type RawMessage, type Request } from '../core/message.js';
import { withIndexes, type LinkRef } from '../core/ref.js';
import { validateMac, validateU32 } from '../core/validate.js';
import { parseIp } from '../../ip/parse.js';

export const RTM_NEIGH = { NEW: 28, DEL: 29, GET: 30 } as const;

export const ndmsg = struct([['family', 'u8'], ['pad1', 'u8'], ['pad2', 'u16'], ['ifindex', 's32'], ['state', 'u16'], ['flags', 'u8'], ['type', 'u8']] as const);
export type NdMsg = ReturnType<typeof ndmsg.read>;

/** NUD_* states as `ip neigh` names them. */
export const NUD = { incomplete: 0x01, reachable: 0x02, stale: 0x04, delay: 0x08, probe: 0x10, failed: 0x20, noarp: 0x40, permanent: 0x80 } as const;
export type NeighState = keyof typeof NUD;
/** NTF_* flags. */
export const NTF = { use: 0x01, self: 0x02, master: 0x04, proxy: 0x08, extern_learn: 0x10, offloaded: 0x20, sticky: 0x40, router: 0x80 } as const;
export type NeighFlag = keyof typeof NTF;

export const neighAttrs = {
  dst: attr(1, ipAddr),
  lladdr: attr(2, mac),
  cacheinfo: attr(3, structCodec(struct([['confirmed', 'u32'], ['used', 'u32'], ['updated', 'u32'], ['refcnt', 'u32']] as const))),
  probes: attr(4, u32),
  vlan: attr(5, u16),
  port: attr(6, be16),
  vni: attr(7, u32),
  ifindex: attr(8, u32),
  master: attr(9, u32),
  linkNetnsid: attr(10, s32),
  srcVni: attr(11, u32),
  protocol: attr(12, u8),
  nhid: attr(13, u32),
  flagsExt: attr(15, u32),
} as const satisfies Schema;
export type NeighAttrs = Attrs<typeof neighAttrs>;
export const neighMessage: MessageDef<keyof NdMsg, typeof neighAttrs> = { header: ndmsg, attrs: neighAttrs };

/** The same attributes in the order `bridge fdb` sends them (the MAC first). */
const { lladdr: _l, ...afterLladdr } = neighAttrs;
export const fdbAttrs = { lladdr: neighAttrs.lladdr, ...afterLladdr } as const satisfies Schema;
export const fdbMessage: MessageDef<keyof NdMsg, typeof fdbAttrs> = { header: ndmsg, attrs: fdbAttrs };

/** A neighbour entry or a bridge FDB entry as the kernel reports it. */
export interface Neighbour {
  /** 4 or 6 for ARP/NDP entries, 'bridge' for FDB entries. */
  family: 4 | 6 | 'bridge';
  ifindex: number;
  /** IP address (ARP/NDP), or a VXLAN FDB entry's remote (`dst`). */
  dst?: string;
  lladdr?: string;
  state: number;
  /** NUD_* state names ('permanent', 'reachable', 'stale', ...). */
  states: NeighState[];
  flags: number;
  /** NTF_* flag names ('self', 'master', 'proxy', 'router', ...). */
  flagNames: NeighFlag[];
  vlan?: number;
  /** VXLAN FDB: remote UDP port. */
  port?: number;
  /** VXLAN FDB: remote VNI. */
  vni?: number;
  /** Bridge FDB: the bridge the port belongs to. */
  master?: number;
  /** VXLAN FDB: the device to reach the remote through (`via`). */
  via?: number;
  raw: { header: NdMsg; attrs: NeighAttrs };
}

const namesOf = <K extends string>(table: Readonly<Record<K, number>>, bits: number): K[] => (Object.keys(table) as K[]).filter((k) => (bits & table[k]) !== 0);

/** Decodes an RTM_NEWNEIGH / RTM_DELNEIGH message. */
export function decodeNeighbour(m: RawMessage): Neighbour {
  const { header, attrs } = decodePayload(neighMessage, m.payload);
  const n: Neighbour = {
    family: header.family === AF.INET6 ? 6 : header.family === AF.BRIDGE ? 'bridge' : 4,
    ifindex: header.ifindex,
    state: header.state,
    states: namesOf(NUD, header.state),
    flags: header.flags,
    flagNames: namesOf(NTF, header.flags),
    raw: { header, attrs },
  };
  if (attrs.dst !== undefined) n.dst = attrs.dst;
  if (attrs.lladdr !== undefined) n.lladdr = attrs.lladdr;
  if (attrs.vlan !== undefined) n.vlan = attrs.vlan;
  if (attrs.port !== undefined) n.port = attrs.port;
  if (attrs.vni !== undefined) n.vni = attrs.vni;
  if (attrs.master !== undefined) n.master = attrs.master;
  if (attrs.ifindex !== undefined) n.via = attrs.ifindex;
  return n;
}

/** An ARP/NDP entry to add, replace or delete. */
export interface NeighSpec {
  /** The neighbour's IP address. */
  dst: string;
  link: LinkRef;
  lladdr?: string;
  /** Default 'permanent' (as iproute2). */
  state?: NeighState;
  /** A proxy ARP/NDP entry (`proxy`): no lladdr. */
  proxy?: boolean;
  /** NDP: the neighbour is a router. */
  router?: boolean;
  /** RTPROT_* of the entry (`protocol N`). */
  protocol?: number;
}

function neighRequest(type: number, flags: number, s: NeighSpec): Request {
  return withIndexes({ link: s.link }, (idx) => {
    const ip = parseIp(s.dst, 'neighbour');
    const attrs: NeighAttrs = { dst: ip.address };
    if (s.lladdr !== undefined) attrs.lladdr = validateMac(s.lladdr, 'lladdr');
    if (s.protocol !== undefined) attrs.protocol = validateU32(s.protocol, 'protocol', 0, 255);
    // iproute2 sends NUD_PERMANENT by default, on delete too.
    const state = NUD[s.state ?? 'permanent'];
    if (state === undefined) throw new ValidationError('state', `unknown neighbour state ${String(s.state)}`);
    const f = (s.proxy ? NTF.proxy : 0) | (s.router ? NTF.router : 0);
    return request(neighMessage, type, flags, { family: ip.family === 4 ? AF.INET : AF.INET6, ifindex: idx.link as number, state, flags: f }, attrs);
  });
}

/** ip neigh add ADDR [lladdr MAC] [nud STATE] [proxy] [router] dev LINK */
export function addNeighRequest(s: NeighSpec): Request {
  return neighRequest(RTM_NEIGH.NEW, NLM_F.CREATE | NLM_F.EXCL, s);
}

/** ip neigh replace ADDR lladdr MAC dev LINK */
export function replaceNeighRequest(s: NeighSpec): Request {
  return neighRequest(RTM_NEIGH.NEW, NLM_F.CREATE | NLM_F.REPLACE, s);
}

/** ip neigh del ADDR dev LINK */
export function deleteNeighRequest(s: Pick<NeighSpec, 'dst' | 'link' | 'proxy'>): Request {
  return neighRequest(RTM_NEIGH.DEL, 0, s);
}

/** ip neigh show [dev LINK] [proxy] (family 0 = IPv4 and IPv6); `bridge fdb show` with family 'bridge'. */
export function dumpNeighRequest(filter: { family?: 4 | 6 | 'bridge'; index?: number; master?: number; proxy?: boolean } = {}): Request {
  const family = filter.family === 4 ? AF.INET : filter.family === 6 ? AF.INET6 : filter.family === 'bridge' ? AF.BRIDGE : AF.UNSPEC;
  const attrs: NeighAttrs = {};
  // With strict checking the neighbour dump takes its filters as attributes; the FDB dump takes the port in the header.
  const bridge = family === AF.BRIDGE;
  if (filter.index !== undefined && !bridge) attrs.ifindex = filter.index;
  if (filter.master !== undefined) attrs.master = filter.master;
  return request(neighMessage, RTM_NEIGH.GET, 0, { family, ifindex: bridge ? filter.index ?? 0 : 0, flags: filter.proxy ? NTF.proxy : 0 }, attrs);
}

/** A bridge FDB entry to add or delete. */
export interface FdbSpec {
  lladdr: string;
  /** The bridge port or VXLAN device. */
  link: LinkRef;
  /** VXLAN: the remote VTEP (`dst IP`). */
  dst?: string;
  vlan?: number;
  /** VXLAN: remote UDP port. */
  port?: number;
  /** VXLAN: remote VNI. */
  vni?: number;
  /** VXLAN: device to reach the remote through (`via DEV`). */
  via?: LinkRef;
  /** 'permanent' (default), 'static' or 'dynamic'. */
  state?: 'permanent' | 'static' | 'dynamic';
  /** Add to the bridge's table (`master`) rather than the device's own (`self`, the default). */
  master?: boolean;
  sticky?: boolean;
}

function fdbRequest(type: number, flags: number, s: FdbSpec): Request {
  return withIndexes({ link: s.link, via: s.via }, (idx) => {
    const attrs: NeighAttrs = { lladdr: validateMac(s.lladdr, 'lladdr') };
    if (s.dst !== undefined) attrs.dst = parseIp(s.dst, 'dst').address;
    if (s.vlan !== undefined) attrs.vlan = validateU32(s.vlan, 'vlan', 1, 4094);
    if (s.port !== undefined) attrs.port = validateU32(s.port, 'port', 0, 65535);
    if (s.vni !== undefined) attrs.vni = validateU32(s.vni, 'vni', 0, 0xffffff);
    if (idx.via !== undefined) attrs.ifindex = idx.via;
    // `bridge fdb` starts from NUD_NOARP: permanent adds NUD_PERMANENT, static NUD_REACHABLE, dynamic drops NOARP.
    const st = s.state ?? 'permanent';
    const state = st === 'permanent' ? NUD.noarp | NUD.permanent : st === 'static' ? NUD.noarp | NUD.reachable : NUD.reachable;
    const f = (s.master ? NTF.master : NTF.self) | (s.sticky ? NTF.sticky : 0);
    return request(fdbMessage, type, flags, { family: AF.BRIDGE, ifindex: idx.link as number, state, flags: f }, attrs);
  });
}

/** bridge fdb add MAC dev LINK [dst IP] [vni N] [port N] [via DEV] [self|master] [permanent|static|dynamic] */
export function addFdbRequest(s: FdbSpec): Request {
  return fdbRequest(RTM_NEIGH.NEW, NLM_F.CREATE | NLM_F.EXCL, s);
}

/** bridge fdb append MAC dev LINK dst IP (another remote for the same MAC: VXLAN head-end replication) */
export function appendFdbRequest(s: FdbSpec): Request {
  return fdbRequest(RTM_NEIGH.NEW, NLM_F.CREATE | NLM_F.APPEND, s);
}

/** bridge fdb replace MAC dev LINK ... */
export function replaceFdbRequest(s: FdbSpec): Request {
  return fdbRequest(RTM_NEIGH.NEW, NLM_F.CREATE | NLM_F.REPLACE, s);
}

/** bridge fdb del MAC dev LINK [dst IP] */
export function deleteFdbRequest(s: FdbSpec): Request {
  return fdbRequest(RTM_NEIGH.DEL, 0, s);
}
