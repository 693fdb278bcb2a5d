/** Nexthop objects (RTM_NEWNEXTHOP / RTM_DELNEXTHOP / RTM_GETNEXTHOP): `ip nexthop`, single and groups. Pure. */
import { ValidationError } from '../../errors.js';
import { AF, NLM_F } from '../core/constants.js';
import { attr, bytes, flag, ipAddr, u16, u32, type Attrs, type Codec, type Schema } from '../core/attr.js';
import { decodePayload, request, struct, type MessageDef, type RawMessage, type Request } from '../core/message.js';
import { withIndexes, type LinkRef } from '../core/ref.js';
import { validateU32 } from '../core/validate.js';
import { parseIp } from '../../ip/parse.js';
import { CodecError } from '../../errors.js';

export const RTM_NEXTHOP = { NEW: 104, DEL: 105, GET: 106 } as const;

export const nhmsg = struct([['family', 'u8'], ['scope', 'u8'], ['protocol', 'u8'], ['resvd', 'u8'], ['flags', 'u32']] as const);
export type NhMsg = ReturnType<typeof nhmsg.read>;

/** One member of NHA_GROUP: struct nexthop_grp { u32 id; u8 weight (weight - 1); u8 weight_high; u16 resvd }. */
export interface GroupMember {
  id: number;
  /** 1..256 */
  weight: number;
}
const group: Codec<GroupMember[]> = {
  size: (v) => 8 * v.length,
  write: (b, o, v) =>
    v.forEach((g, i) => {
      b.writeUInt32LE(g.id, o + 8 * i);
      b.writeUInt8((g.weight - 1) & 0xff, o + 8 * i + 4);
    }),
  read: (b, o, l) => {
    if (l % 8 !== 0) throw new CodecError(`NHA_GROUP of ${l} bytes`, o);
    const out: GroupMember[] = [];
    for (let i = 0; i < l; i += 8) out.push({ id: b.readUInt32LE(o + i), weight: b.readUInt8(o + i + 4) + 1 + (b.readUInt8(o + i + 5) << 8) });
    return out;
  },
};

export const nexthopObjAttrs = {
  id: attr(1, u32),
  group: attr(2, group),
  groupType: attr(3, u16),
  blackhole: attr(4, flag),
  gateway: attr(6, ipAddr),
  oif: attr(5, u32),
  encapType: attr(7, u16),
  encap: attr(8, bytes),
  groups: attr(9, flag),
  master: attr(10, u32),
  fdb: attr(11, flag),
} as const satisfies Schema;
export type NexthopObjAttrs = Attrs<typeof nexthopObjAttrs>;
export const nexthopMessage: MessageDef<keyof NhMsg, typeof nexthopObjAttrs> = { header: nhmsg, attrs: nexthopObjAttrs };

/** A nexthop object as `ip nexthop show` lists it. */
export interface NexthopObject {
  id: number;
  family: 4 | 6 | 'unspec';
  gateway?: string;
  oif?: number;
  blackhole: boolean;
  /** For a group: its members and weights. */
  group?: GroupMember[];
  /** 'mpath' or 'resilient' for a group. */
  groupType?: 'mpath' | 'resilient' | number;
  fdb: boolean;
  protocol: number;
  flags: number;
  raw: { header: NhMsg; attrs: NexthopObjAttrs };
}

/** Decodes an RTM_NEWNEXTHOP message. */
export function decodeNexthop(m: RawMessage): NexthopObject {
  const { header, attrs } = decodePayload(nexthopMessage, m.payload);
  const n: NexthopObject = {
    id: attrs.id ?? 0,
    family: header.family === AF.INET ? 4 : header.family === AF.INET6 ? 6 : 'unspec',
    blackhole: attrs.blackhole === true,
    fdb: attrs.fdb === true,
    protocol: header.protocol,
    flags: header.flags,
    raw: { header, attrs },
  };
  if (attrs.gateway !== undefined) n.gateway = attrs.gateway;
  if (attrs.oif !== undefined) n.oif = attrs.oif;
  if (attrs.group) {
    n.group = attrs.group;
    n.groupType = attrs.groupType === undefined || attrs.groupType === 0 ? 'mpath' : attrs.groupType === 1 ? 'resilient' : attrs.groupType;
  }
  return n;
}

/** A nexthop object to add or replace: a gateway and/or a device, a blackhole, or a group of other ids. */
export interface NexthopSpec {
  id: number;
  gateway?: string;
  oif?: LinkRef;
  blackhole?: boolean;
  group?: GroupMember[];
  /** Family of a device-only nexthop (default 4). */
  family?: 4 | 6;
  onlink?: boolean;
  fdb?: boolean;
  /** RTPROT_* (iproute2 sends 0 unless told). */
  protocol?: number;
}

function nexthopRequest(type: number, flags: number, s: NexthopSpec): Request {
  return withIndexes({ oif: s.oif }, (idx) => {
    const attrs: NexthopObjAttrs = { id: validateU32(s.id, 'id', 1) };
    const gw = s.gateway !== undefined ? parseIp(s.gateway, 'gateway') : undefined;
    let family: number = AF.UNSPEC;
    if (s.group) {
      if (s.group.length === 0) throw new ValidationError('group', 'needs at least one member');
      attrs.group = s.group.map((g) => ({ id: validateU32(g.id, 'group id', 1), weight: validateU32(g.weight ?? 1, 'weight', 1, 256) }));
    } else if (s.blackhole) {
      attrs.blackhole = true;
    } else {
      if (idx.oif !== undefined) attrs.oif = idx.oif;
      if (gw) attrs.gateway = gw.address;
      if (!gw && idx.oif === undefined) throw new ValidationError('nexthop', 'needs a gateway, a device, blackhole or a group');
      family = (gw?.family ?? s.family ?? 4) === 4 ? AF.INET : AF.INET6;
    }
    if (s.fdb) attrs.fdb = true;
    return request(nexthopMessage, type, flags, { family, protocol: s.protocol ?? 0, flags: s.onlink ? 4 : 0 }, attrs);
  });
}

/** ip nexthop add id N [via GW] [dev LINK] [blackhole] [group ID[,WEIGHT]/...] */
export function addNexthopRequest(s: NexthopSpec): Request {
  return nexthopRequest(RTM_NEXTHOP.NEW, NLM_F.CREATE | NLM_F.EXCL, s);
}

/** ip nexthop replace id N ... */
export function replaceNexthopRequest(s: NexthopSpec): Request {
  return nexthopRequest(RTM_NEXTHOP.NEW, NLM_F.CREATE | NLM_F.REPLACE, s);
}

/** ip nexthop del id N */
export function deleteNexthopRequest(id: number): Request {
  return request(nexthopMessage, RTM_NEXTHOP.DEL, 0, {}, { id: validateU32(id, 'id', 1) });
}

/** ip nexthop show */
export function dumpNexthopRequest(): Request {
  return request(nexthopMessage, RTM_NEXTHOP.GET, 0, {});
}
