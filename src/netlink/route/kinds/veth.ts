/** The veth kind (and vxcan, its CAN twin): VETH_INFO_PEER (VXCAN_INFO_PEER) nests a whole link body (ifinfomsg + IFLA_*) for the peer. */
import { attr, lazy, type Attrs, type Schema } from '../../core/attr.js';
import { VETH_INFO_PEER } from '../../core/constants.js';
import { linkBodyCodec } from '../schemas.js';
import type { LinkKind } from './registry.js';

export const vethAttrs = {
  peer: attr(VETH_INFO_PEER, lazy(() => linkBodyCodec)),
} as const satisfies Schema;
export type VethAttrs = Attrs<typeof vethAttrs>;
export const vethKind: LinkKind<typeof vethAttrs> = { kind: 'veth', data: vethAttrs };
export const vxcanKind: LinkKind<typeof vethAttrs> = { kind: 'vxcan', data: vethAttrs };
