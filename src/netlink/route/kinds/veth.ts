/** The veth kind (and vxcan, its CAN twin, and netkit): VETH_INFO_PEER (VXCAN_INFO_PEER, IFLA_NETKIT_PEER_INFO) nests a whole link body (ifinfomsg + IFLA_*) for the peer. */
import { attr, lazy, named, u8, u16, u32, type Attrs, type Schema } from '../../core/attr.js';
import { VETH_INFO_PEER } from '../../core/constants.js';
import { linkBodyCodec } from '../schemas.js';
import type { LinkKind } from './registry.js';

export const vethAttrs = {
  peer: attr(VETH_INFO_PEER, lazy(() => linkBodyCodec)),
} as const satisfies Schema;
export type VethAttrs = Attrs<typeof vethAttrs>;
export const vethKind: LinkKind<typeof vethAttrs> = { kind: 'veth', data: vethAttrs };
export const vxcanKind: LinkKind<typeof vethAttrs> = { kind: 'vxcan', data: vethAttrs };

/** NETKIT_* verdicts a netkit device applies when no BPF program is attached (`forward`, `blackhole`). */
const netkitPolicy = named(u32, { forward: 0, blackhole: 2, redirect: 7, next: 0xffffffff });
const netkitScrub = named(u32, { none: 0, default: 1 });

/** IFLA_NETKIT_*: a BPF-programmable veth-like pair (Linux 6.7); the primary end holds the programs. */
export const netkitAttrs = {
  peer: attr(1, lazy(() => linkBodyCodec)),
  primary: attr(2, u8),
  policy: attr(3, netkitPolicy),
  peerPolicy: attr(4, netkitPolicy),
  mode: attr(5, named(u32, { l2: 0, l3: 1 })),
  scrub: attr(6, netkitScrub),
  peerScrub: attr(7, netkitScrub),
  headroom: attr(8, u16),
  tailroom: attr(9, u16),
} as const satisfies Schema;
export type NetkitOptions = Attrs<typeof netkitAttrs>;
export const netkitKind: LinkKind<typeof netkitAttrs> = { kind: 'netkit', data: netkitAttrs };
