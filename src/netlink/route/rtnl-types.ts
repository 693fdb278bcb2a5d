/**
 * Every rtnetlink object by message type: its schema (chosen by family for routes) and its
 * decoder, and the multicast groups that announce its changes. Used by monitors, by tools
 * that describe captured bytes, and by round-trip checks.
 */
import type { Schema } from '../core/attr.js';
import type { MessageDef, RawMessage } from '../core/message.js';
import { linkMessage } from './schemas.js';
import { addrMessage } from './schemas.js';
import { decodeLink, type Link } from './link.js';
import { decodeAddress, type Address } from './addr.js';
import { decodeAnyRoute, type AnyRoute } from './route.js';
import { routeDefFor } from './route-schema.js';
import { decodeNeighbour, neighMessage, type Neighbour } from './neigh.js';
import { decodeRule, ruleMessage, type Rule } from './rule.js';
import { decodeNetnsId, nsidMessage, type NetnsId } from './nsid.js';
import { decodeNexthop, nexthopMessage, type NexthopObject } from './nexthop.js';

/** RTNLGRP_*: rtnetlink multicast groups. */
export const RTNLGRP = {
  LINK: 1, NOTIFY: 2, NEIGH: 3, TC: 4, IPV4_IFADDR: 5, IPV4_MROUTE: 6, IPV4_ROUTE: 7, IPV4_RULE: 8, IPV6_IFADDR: 9, IPV6_MROUTE: 10,
  IPV6_ROUTE: 11, IPV6_IFINFO: 12, IPV6_PREFIX: 18, IPV6_RULE: 19, ND_USEROPT: 20, IPV4_NETCONF: 24, IPV6_NETCONF: 25, MDB: 26, MPLS_ROUTE: 27,
  NSID: 28, MPLS_NETCONF: 29, IPV4_MROUTE_R: 30, IPV6_MROUTE_R: 31, NEXTHOP: 32, BRVLAN: 33,
} as const;

/** The kinds of rtnetlink objects, with the value each decodes to. */
export interface RtnlObjects {
  link: Link;
  addr: Address;
  route: AnyRoute;
  neigh: Neighbour;
  rule: Rule;
  nsid: NetnsId;
  nexthop: NexthopObject;
}
export type RtnlKind = keyof RtnlObjects;

interface ObjectType<K extends RtnlKind> {
  kind: K;
  /** RTM_NEW*, RTM_DEL*, RTM_GET*. */
  types: readonly [number, number, number];
  def: (payload: Buffer) => MessageDef<string, Schema>;
  decode: (m: RawMessage) => RtnlObjects[K];
  groups: readonly number[];
}

const fixed = (d: MessageDef<any, any>) => () => d as MessageDef<string, Schema>;

export const RTNL_TYPES: { readonly [K in RtnlKind]: ObjectType<K> } = {
  link: { kind: 'link', types: [16, 17, 18], def: fixed(linkMessage), decode: decodeLink, groups: [RTNLGRP.LINK] },
  addr: { kind: 'addr', types: [20, 21, 22], def: fixed(addrMessage), decode: decodeAddress, groups: [RTNLGRP.IPV4_IFADDR, RTNLGRP.IPV6_IFADDR] },
  route: { kind: 'route', types: [24, 25, 26], def: (p) => routeDefFor(p[0] ?? 0) as MessageDef<string, Schema>, decode: decodeAnyRoute, groups: [RTNLGRP.IPV4_ROUTE, RTNLGRP.IPV6_ROUTE, RTNLGRP.MPLS_ROUTE] },
  neigh: { kind: 'neigh', types: [28, 29, 30], def: fixed(neighMessage), decode: decodeNeighbour, groups: [RTNLGRP.NEIGH] },
  rule: { kind: 'rule', types: [32, 33, 34], def: fixed(ruleMessage), decode: decodeRule, groups: [RTNLGRP.IPV4_RULE, RTNLGRP.IPV6_RULE] },
  nsid: { kind: 'nsid', types: [88, 89, 90], def: fixed(nsidMessage), decode: decodeNetnsId, groups: [RTNLGRP.NSID] },
  nexthop: { kind: 'nexthop', types: [104, 105, 106], def: fixed(nexthopMessage), decode: decodeNexthop, groups: [RTNLGRP.NEXTHOP] },
};

const byType = new Map<number, { kind: RtnlKind; op: 'new' | 'del' | 'get' }>();
for (const t of Object.values(RTNL_TYPES)) {
  byType.set(t.types[0], { kind: t.kind, op: 'new' });
  byType.set(t.types[1], { kind: t.kind, op: 'del' });
  byType.set(t.types[2], { kind: t.kind, op: 'get' });
}

/** What an rtnetlink message type is about: the object kind and whether it announces, removes or asks. */
export function rtnlTypeOf(type: number): { kind: RtnlKind; op: 'new' | 'del' | 'get' } | undefined {
  // RTM_SETLINK (19) changes a link like RTM_NEWLINK.
  if (type === 19) return { kind: 'link', op: 'new' };
  return byType.get(type);
}

/** The schema of an rtnetlink message (by type, and by family for routes). */
export function rtnlDefOf(type: number, payload: Buffer): MessageDef<string, Schema> | undefined {
  // RTM_NEWLINKPROP / RTM_DELLINKPROP carry a link message (the alternative names).
  if (type === 108 || type === 109) return RTNL_TYPES.link.def(payload);
  const t = rtnlTypeOf(type);
  return t ? RTNL_TYPES[t.kind].def(payload) : undefined;
}
