/**
 * ipset over nfnetlink (subsystem NFNL_SUBSYS_IPSET, protocol version 7), as in the kernel's
 * include/uapi/linux/netfilter/ipset/ip_set.h: commands, attributes and error numbers. A message
 * is nfgenmsg then IPSET_ATTR_*; a set's options (CREATE, and the header of a LIST reply) nest in
 * IPSET_ATTR_DATA, an element's in IPSET_ATTR_DATA too (ADD, DEL, TEST) or, listed, in the
 * IPSET_ATTR_ADT nest. The two DATA schemas share attributes 1..16 and give 17.. different
 * meanings. Integers are big-endian and flagged NLA_F_NET_BYTEORDER, which the kernel demands.
 * Attributes are declared in number order, the order `ipset` sends them, but for an element's
 * restore line number, which it sends last. Pure.
 */
import { attr, be16, be32, be64, ipAddr, mac, nested, repeated, strz, u8, type Attrs, type Schema } from '../core/attr.js';
import type { MessageDef } from '../core/message.js';
import { nfnlMessage, nfnlType, NFNL_SUBSYS, type NfGenMsg } from './nfnetlink.js';

/** IPSET_PROTOCOL: the protocol version ipset 7 speaks (the kernel accepts 6 and up). */
export const IPSET_PROTOCOL = 7;
export const IPSET_MAXNAMELEN = 32;

/** IPSET_CMD_*: the commands (message type = NFNL_SUBSYS_IPSET << 8 | command). */
export const IPSET_CMD = { PROTOCOL: 1, CREATE: 2, DESTROY: 3, FLUSH: 4, RENAME: 5, SWAP: 6, LIST: 7, SAVE: 8, ADD: 9, DEL: 10, TEST: 11, HEADER: 12, TYPE: 13, GET_BYNAME: 14, GET_BYINDEX: 15 } as const;

/** The message type of an ipset command. */
export const ipsetMsgType = (cmd: number): number => nfnlType(NFNL_SUBSYS.IPSET, cmd);

const CMD_NAMES = new Map<number, string>(Object.entries(IPSET_CMD).map(([k, v]) => [ipsetMsgType(v), `IPSET_CMD_${k}`]));
/** Names an ipset message type for errors ('IPSET_CMD_CREATE'). */
export function ipsetTypeName(t: number): string {
  if (t === 2) return 'NLMSG_ERROR';
  if (t === 3) return 'NLMSG_DONE';
  return CMD_NAMES.get(t) ?? `nfnetlink message ${t >>> 8}:${t & 0xff}`;
}

/** IPSET_FLAG_* of IPSET_ATTR_FLAGS (command level). */
export const IPSET_FLAG = { EXIST: 1, LIST_SETNAME: 2, LIST_HEADER: 4, SKIP_COUNTER_UPDATE: 8, SKIP_SUBCOUNTER_UPDATE: 16, MATCH_COUNTERS: 32, RETURN_NOMATCH: 128 } as const;
/** IPSET_FLAG_* of IPSET_ATTR_CADT_FLAGS (a set's options, an element's nomatch). */
export const IPSET_CADT_FLAG = { BEFORE: 1, PHYSDEV: 2, NOMATCH: 4, WITH_COUNTERS: 8, WITH_COMMENT: 16, WITH_FORCEADD: 32, WITH_SKBINFO: 64, IFACE_WILDCARD: 128 } as const;

const NET = { byteorderFlag: true } as const;
const NEST = { nestedFlag: true } as const;

/** IPSET_ATTR_IPADDR_*: an address inside IPSET_ATTR_IP and its kin (ipset flags it big-endian; the kernel's replies do not). */
export const ipAddrAttrs = {
  v4: attr(1, ipAddr, NET),
  v6: attr(2, ipAddr, NET),
} as const satisfies Schema;
export type IpAddrAttrs = Attrs<typeof ipAddrAttrs>;
const ipNest = nested(ipAddrAttrs);

/** Attributes 1..16, the same in a set's options and in an element. */
const cadt = {
  ip: attr(1, ipNest, NEST),
  ipTo: attr(2, ipNest, NEST),
  cidr: attr(3, u8),
  port: attr(4, be16, NET),
  portTo: attr(5, be16, NET),
  timeout: attr(6, be32, NET),
  proto: attr(7, u8),
  cadtFlags: attr(8, be32, NET),
  mark: attr(10, be32, NET),
  markmask: attr(11, be32, NET),
  bitmask: attr(12, ipNest, NEST),
} as const satisfies Schema;

/** A set's options (IPSET_ATTR_DATA of CREATE, and the header of a LIST reply with the kernel's counts). */
export const createDataAttrs = {
  ...cadt,
  initval: attr(17, be32, NET),
  hashsize: attr(18, be32, NET),
  maxelem: attr(19, be32, NET),
  netmask: attr(20, u8),
  bucketsize: attr(21, u8),
  resize: attr(22, u8),
  size: attr(23, be32, NET),
  elements: attr(24, be32, NET),
  references: attr(25, be32, NET),
  memsize: attr(26, be32, NET),
  lineno: attr(9, be32, NET),
} as const satisfies Schema;
export type CreateDataAttrs = Attrs<typeof createDataAttrs>;

/** An element (IPSET_ATTR_DATA of ADD, DEL and TEST, and each entry of a LIST reply's IPSET_ATTR_ADT). */
export const adtDataAttrs = {
  ...cadt,
  ether: attr(17, mac),
  name: attr(18, strz),
  nameref: attr(19, strz),
  ip2: attr(20, ipNest, NEST),
  cidr2: attr(21, u8),
  ip2To: attr(22, ipNest, NEST),
  iface: attr(23, strz),
  bytes: attr(24, be64, NET),
  packets: attr(25, be64, NET),
  comment: attr(26, strz),
  skbmark: attr(27, be64, NET),
  skbprio: attr(28, be32, NET),
  skbqueue: attr(29, be16, NET),
  // ipset sends the restore line number after everything else (0 outside `ipset restore`).
  lineno: attr(9, be32, NET),
} as const satisfies Schema;
export type AdtDataAttrs = Attrs<typeof adtDataAttrs>;

/** IPSET_ATTR_ADT: the elements of a LIST reply, each an IPSET_ATTR_DATA nest. */
export const adtAttrs = { data: repeated(7, nested(adtDataAttrs), NEST) } as const satisfies Schema;

const command = {
  protocol: attr(1, u8),
  setname: attr(2, strz),
  /** The type name; in RENAME and SWAP the second set's name (IPSET_ATTR_SETNAME2). */
  typename: attr(3, strz),
  revision: attr(4, u8),
  family: attr(5, u8),
  flags: attr(6, be32, NET),
} as const satisfies Schema;

/** Messages about a set (PROTOCOL, CREATE, DESTROY, FLUSH, RENAME, SWAP, LIST, HEADER, TYPE): DATA holds its options. */
export const setAttrs = {
  ...command,
  data: attr(7, nested(createDataAttrs), NEST),
  adt: attr(8, nested(adtAttrs), NEST),
  lineno: attr(9, be32, NET),
  /** IPSET_ATTR_PROTOCOL_MIN, also IPSET_ATTR_REVISION_MIN in a TYPE reply. */
  protocolMin: attr(10, u8),
  index: attr(11, be16, NET),
} as const satisfies Schema;
export type SetAttrs = Attrs<typeof setAttrs>;

/** Messages about an element (ADD, DEL, TEST): DATA holds the element. */
export const elemAttrs = {
  ...command,
  data: attr(7, nested(adtDataAttrs), NEST),
  adt: attr(8, nested(adtAttrs), NEST),
  lineno: attr(9, be32, NET),
} as const satisfies Schema;
export type ElemAttrs = Attrs<typeof elemAttrs>;

export const setMessage = nfnlMessage(setAttrs);
export const elemMessage = nfnlMessage(elemAttrs);

/** The definition of an ipset message by its command, for tools that describe messages. */
export function ipsetDefOf(type: number): MessageDef<keyof NfGenMsg, Schema> | undefined {
  if (type >>> 8 !== NFNL_SUBSYS.IPSET) return undefined;
  const cmd = type & 0xff;
  return cmd === IPSET_CMD.ADD || cmd === IPSET_CMD.DEL || cmd === IPSET_CMD.TEST ? elemMessage : setMessage;
}

/** The kernel's ipset errors (enum ipset_errno), each with what it means. */
export const IPSET_ERR: Readonly<Record<number, readonly [string, string]>> = {
  4097: ['IPSET_ERR_PROTOCOL', 'ipset protocol error'],
  4098: ['IPSET_ERR_FIND_TYPE', 'set type not supported'],
  4099: ['IPSET_ERR_MAX_SETS', 'maximal number of sets reached'],
  4100: ['IPSET_ERR_BUSY', 'set is in use by a kernel component'],
  4101: ['IPSET_ERR_EXIST_SETNAME2', 'a set with the new name already exists'],
  4102: ['IPSET_ERR_TYPE_MISMATCH', 'the sets are of different types'],
  4103: ['IPSET_ERR_EXIST', 'the element is already in the set, or (TEST, DEL) not in it'],
  4104: ['IPSET_ERR_INVALID_CIDR', 'invalid CIDR prefix'],
  4105: ['IPSET_ERR_INVALID_NETMASK', 'invalid netmask'],
  4106: ['IPSET_ERR_INVALID_FAMILY', 'invalid family'],
  4107: ['IPSET_ERR_TIMEOUT', 'the set was created without timeout support'],
  4108: ['IPSET_ERR_REFERENCED', 'the set is referenced'],
  4109: ['IPSET_ERR_IPADDR_IPV4', 'an IPv4 address is expected'],
  4110: ['IPSET_ERR_IPADDR_IPV6', 'an IPv6 address is expected'],
  4111: ['IPSET_ERR_COUNTER', 'the set was created without counter support'],
  4112: ['IPSET_ERR_COMMENT', 'the set was created without comment support'],
  4113: ['IPSET_ERR_INVALID_MARKMASK', 'invalid markmask'],
  4114: ['IPSET_ERR_SKBINFO', 'the set was created without skbinfo support'],
  4115: ['IPSET_ERR_BITMASK_NETMASK_EXCL', 'bitmask and netmask exclude each other'],
};
/** Errors from IPSET_ERR_TYPE_SPECIFIC (4352) up, which mean different things for each kind of set. */
export const IPSET_ERR_TYPE: Readonly<Record<string, readonly (readonly [string, string])[]>> = {
  hash: [
    ['IPSET_ERR_HASH_FULL', 'the hash is full'],
    ['IPSET_ERR_HASH_ELEM', 'a null-valued element cannot be stored in a hash'],
    ['IPSET_ERR_INVALID_PROTO', 'invalid protocol'],
    ['IPSET_ERR_MISSING_PROTO', 'protocol missing'],
    ['IPSET_ERR_HASH_RANGE_UNSUPPORTED', 'ranges are not supported by this set'],
    ['IPSET_ERR_HASH_RANGE', 'invalid range'],
  ],
  bitmap: [
    ['IPSET_ERR_BITMAP_RANGE', 'the element is outside the range of the set'],
    ['IPSET_ERR_BITMAP_RANGE_SIZE', 'the range is too large'],
  ],
  list: [
    ['IPSET_ERR_NAME', 'set to add or delete does not exist'],
    ['IPSET_ERR_LOOP', 'sets cannot be added to themselves'],
    ['IPSET_ERR_BEFORE', 'the reference set does not exist'],
    ['IPSET_ERR_NAMEREF', 'the reference set is not in the set'],
    ['IPSET_ERR_LIST_FULL', 'the list is full'],
    ['IPSET_ERR_REF_EXIST', 'the reference set does not exist'],
  ],
};
export const IPSET_ERR_TYPE_SPECIFIC = 4352;
