/**
 * nf_tables and nfnetlink numbers, as in the kernel's uapi headers (linux/netfilter/nf_tables.h,
 * nfnetlink.h) and checked against this kernel (6.18). Names follow the kernel's.
 */

import { NFNL_SUBSYS } from '../netfilter/nfnetlink.js';

/** NETLINK_NETFILTER, the nfnetlink socket protocol (declared with nfgenmsg in netlink/nfnetlink). */
export { NETLINK_NETFILTER } from '../netfilter/nfnetlink.js';
/** The nf_tables subsystem of nfnetlink: message type = NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_*. */
export const NFNL_SUBSYS_NFTABLES = NFNL_SUBSYS.NFTABLES;
/** Transaction delimiters (family AF_UNSPEC, res_id = the subsystem, big-endian). */
export const NFNL_MSG = { BATCH_BEGIN: 0x10, BATCH_END: 0x11 } as const;
/** BATCH_BEGIN attribute: the ruleset generation the batch was built from. */
export const NFNL_BATCH_GENID = 1;

export const NFT_MSG = {
  NEWTABLE: 0,
  GETTABLE: 1,
  DELTABLE: 2,
  NEWCHAIN: 3,
  GETCHAIN: 4,
  DELCHAIN: 5,
  NEWRULE: 6,
  GETRULE: 7,
  DELRULE: 8,
  NEWSET: 9,
  GETSET: 10,
  DELSET: 11,
  NEWSETELEM: 12,
  GETSETELEM: 13,
  DELSETELEM: 14,
  NEWGEN: 15,
  GETGEN: 16,
  DESTROYTABLE: 26,
  DESTROYCHAIN: 27,
  DESTROYRULE: 28,
  DESTROYSET: 29,
  DESTROYSETELEM: 30,
} as const;
export type NftMsg = keyof typeof NFT_MSG;

/** The message type of an nf_tables command. */
export function nftType(msg: number): number {
  return (NFNL_SUBSYS_NFTABLES << 8) | msg;
}

const MSG_NAMES = new Map<number, string>(Object.entries(NFT_MSG).map(([k, v]) => [nftType(v), `NFT_MSG_${k}`]));
MSG_NAMES.set(NFNL_MSG.BATCH_BEGIN, 'NFNL_MSG_BATCH_BEGIN');
MSG_NAMES.set(NFNL_MSG.BATCH_END, 'NFNL_MSG_BATCH_END');

/** Names an nfnetlink message type for errors ('NFT_MSG_NEWRULE'). */
export function nftMessageName(type: number): string {
  if (type === 2) return 'NLMSG_ERROR';
  if (type === 3) return 'NLMSG_DONE';
  return MSG_NAMES.get(type) ?? `nfnetlink(0x${type.toString(16)})`;
}

/** Address families of tables (NFPROTO_*). */
export const NFPROTO = { inet: 1, ip: 2, arp: 3, netdev: 5, bridge: 7, ip6: 10 } as const;
export type Family = keyof typeof NFPROTO;

/** Netfilter hooks of the ip, ip6 and inet families. */
export const NF_INET_HOOK = { prerouting: 0, input: 1, forward: 2, output: 3, postrouting: 4 } as const;
export type Hook = keyof typeof NF_INET_HOOK;

/** Well-known base chain priorities (nft's names). */
export const PRIORITY = { raw: -300, mangle: -150, dstnat: -100, filter: 0, security: 50, srcnat: 100 } as const;

export const NFT_TABLE_F = { DORMANT: 1, OWNER: 2, PERSIST: 4 } as const;
export const NFT_CHAIN_F = { BASE: 1, HW_OFFLOAD: 2, BINDING: 4 } as const;

/** Verdict codes (NF_DROP, NF_ACCEPT and nf_tables' own, negative). */
export const NFT_VERDICT = { drop: 0, accept: 1, continue: -1, break: -2, jump: -3, goto: -4, return: -5 } as const;
export type VerdictCode = keyof typeof NFT_VERDICT;

/** Registers: the verdict register, four 16-byte ones, and sixteen 4-byte views of the same space. */
export const NFT_REG = { VERDICT: 0, R1: 1, R2: 2, R3: 3, R4: 4 } as const;
/** NFT_REG32_00: the first 4-byte register (the same bytes as NFT_REG_1). */
export const NFT_REG32_00 = 8;

export const NFT_CMP = { eq: 0, neq: 1, lt: 2, lte: 3, gt: 4, gte: 5 } as const;
export type CmpOp = keyof typeof NFT_CMP;

export const NFT_PAYLOAD_BASE = { ll: 0, network: 1, transport: 2, inner: 3 } as const;
export type PayloadBase = keyof typeof NFT_PAYLOAD_BASE;

export const NFT_META = { len: 0, protocol: 1, priority: 2, mark: 3, iif: 4, oif: 5, iifname: 6, oifname: 7, iiftype: 8, oiftype: 9, nfproto: 15, l4proto: 16, iifgroup: 21, oifgroup: 22 } as const;
export type MetaKey = keyof typeof NFT_META;

export const NFT_CT = { state: 0, direction: 1, status: 2, mark: 3 } as const;
export type CtKey = keyof typeof NFT_CT;
/** Conntrack state bits as `ct state` sees them (NF_CT_STATE_BIT). */
export const CT_STATE = { invalid: 1, established: 2, related: 4, new: 8, untracked: 64 } as const;
export type CtState = keyof typeof CT_STATE;
/** Conntrack status bits (IPS_*). */
export const CT_STATUS = { expected: 1, seenReply: 2, assured: 4, confirmed: 8, snat: 16, dnat: 32 } as const;
export type CtStatus = keyof typeof CT_STATUS;

export const NFT_NAT = { snat: 0, dnat: 1 } as const;
/** NF_NAT_RANGE_*: the flags of nat and masq expressions. */
export const NF_NAT_RANGE = { MAP_IPS: 1, PROTO_SPECIFIED: 2, PROTO_RANDOM: 4, PERSISTENT: 8, PROTO_RANDOM_FULLY: 16 } as const;

export const NFT_FIB_RESULT = { oif: 1, oifname: 2, addrtype: 3 } as const;
export const NFTA_FIB_F = { SADDR: 1, DADDR: 2, MARK: 4, IIF: 8, OIF: 16, PRESENT: 32 } as const;
/** Route types a fib addrtype lookup yields (RTN_*), in host byte order. */
export const RTN = { unicast: 1, local: 2, broadcast: 3, anycast: 4, multicast: 5, blackhole: 6, unreachable: 7, prohibit: 8 } as const;

export const NFT_SET_F = { ANONYMOUS: 1, CONSTANT: 2, INTERVAL: 4, MAP: 8, TIMEOUT: 16, EVAL: 32, OBJECT: 64, CONCAT: 128 } as const;

/** nft's data type ids (src/datatype.h): a concatenated key packs them 6 bits each. */
export const NFT_TYPE = { verdict: 1, ipv4_addr: 7, ipv6_addr: 8, ether_addr: 9, inet_proto: 12, inet_service: 13, mark: 19, ifname: 41 } as const;
export type DataTypeName = keyof typeof NFT_TYPE;
/** Each data type's length in bytes as a set key (a concatenated key pads each field to 4). */
export const NFT_TYPE_LEN: Record<DataTypeName, number> = { verdict: 4, ipv4_addr: 4, ipv6_addr: 16, ether_addr: 6, inet_proto: 1, inet_service: 2, mark: 4, ifname: 16 };
/** The set data type of a verdict map (NFT_DATA_VERDICT). */
export const NFT_DATA_VERDICT = 0xffffff00;

/** Userdata TLV types (libnftnl's NFTNL_UDATA_*_COMMENT): what `nft list` shows as comment. */
export const UDATA_COMMENT = { table: 0, chain: 0, rule: 0, setElem: 0, set: 7 } as const;

/** IP protocol numbers of the transports a mapping can publish. */
export const IPPROTO = { tcp: 6, udp: 17 } as const;
