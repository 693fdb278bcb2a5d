/**
 * nfnetlink, the netfilter side of netlink (NETLINK_NETFILTER): every message is an nlmsghdr whose
 * type is `subsystem << 8 | command`, then struct nfgenmsg, then the subsystem's attributes.
 * Declared here once for every subsystem this package speaks (ipset, nf_tables, ctnetlink), as
 * in the kernel's include/uapi/linux/netfilter/nfnetlink.h. Pure.
 */
import type { Attrs, Schema } from '../core/attr.js';
import { request, struct, type MessageDef, type Request } from '../core/message.js';

/** NETLINK_NETFILTER, the nfnetlink socket protocol. */
export const NETLINK_NETFILTER = 12;

/** NFNL_SUBSYS_*: the subsystem in the high byte of a message type. */
export const NFNL_SUBSYS = { NONE: 0, CTNETLINK: 1, CTNETLINK_EXP: 2, QUEUE: 3, ULOG: 4, OSF: 5, IPSET: 6, ACCT: 7, CTNETLINK_TIMEOUT: 8, CTHELPER: 9, NFTABLES: 10, NFT_COMPAT: 11, HOOK: 12 } as const;

/** NFNETLINK_V0, the only nfgenmsg version there is. */
export const NFNETLINK_V0 = 0;

/** struct nfgenmsg { u8 nfgen_family; u8 version; be16 res_id; } */
export const nfgenmsg = struct([
  ['family', 'u8'],
  ['version', 'u8'],
  ['resId', 'be16'],
] as const);
export type NfGenMsg = ReturnType<typeof nfgenmsg.read>;

/** The message type of a subsystem's command. */
export function nfnlType(subsys: number, cmd: number): number {
  return ((subsys & 0xff) << 8) | (cmd & 0xff);
}

/** The subsystem and command of a message type. */
export function nfnlSplit(type: number): { subsys: number; cmd: number } {
  return { subsys: type >>> 8, cmd: type & 0xff };
}

/** The message definition of a subsystem's messages: nfgenmsg, then `attrs`. */
export function nfnlMessage<S extends Schema>(attrs: S): MessageDef<keyof NfGenMsg, S> {
  return { header: nfgenmsg, attrs };
}

/** A request of a subsystem: type from subsystem and command, nfgenmsg with `family` (version 0), then the attributes. */
export function nfnlRequest<S extends Schema>(subsys: number, cmd: number, schema: S, attrs: Attrs<S>, opts: { flags?: number; family?: number; resId?: number } = {}): Request {
  return request(nfnlMessage(schema), nfnlType(subsys, cmd), opts.flags ?? 0, { family: opts.family ?? 0, version: NFNETLINK_V0, resId: opts.resId ?? 0 }, attrs);
}
