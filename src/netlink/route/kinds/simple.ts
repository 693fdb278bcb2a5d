/** Kinds with little or no IFLA_INFO_DATA: dummy, ifb, nlmon, wireguard (configured over generic netlink), vrf, and tun/tap (decode; created with ioctls). */
import { attr, named, u8, u32, type Attrs, type Schema } from '../../core/attr.js';
import type { LinkKind } from './registry.js';

export const dummyKind: LinkKind = { kind: 'dummy' };
export const ifbKind: LinkKind = { kind: 'ifb' };
export const nlmonKind: LinkKind = { kind: 'nlmon' };
export const wireguardKind: LinkKind = { kind: 'wireguard' };

/** IFLA_VRF_TABLE; ports carry IFLA_VRF_PORT_TABLE. */
export const vrfAttrs = { table: attr(1, u32) } as const satisfies Schema;
export type VrfOptions = Attrs<typeof vrfAttrs>;
export const vrfKind: LinkKind<typeof vrfAttrs> = { kind: 'vrf', data: vrfAttrs, slaveData: { table: attr(1, u32) } };

/** IFLA_TUN_*: what the kernel reports of a tun or tap device. */
export const tunAttrs = {
  owner: attr(1, u32),
  group: attr(2, u32),
  type: attr(3, named(u8, { tun: 1, tap: 2 })),
  pi: attr(4, u8),
  vnetHdr: attr(5, u8),
  persist: attr(6, u8),
  multiQueue: attr(7, u8),
  numQueues: attr(8, u32),
  numDisabledQueues: attr(9, u32),
} as const satisfies Schema;
export type TunAttrs = Attrs<typeof tunAttrs>;
export const tunKind: LinkKind<typeof tunAttrs> = { kind: 'tun', data: tunAttrs };
