/** Kinds stacked on a lower device (IFLA_LINK): vlan, macvlan, macvtap, ipvlan, ipvtap. */
import { attr, be16, mac, named, nested, repeated, s32, u16, u32, type Attrs, type Schema } from '../../core/attr.js';
import { struct, structCodec } from '../../core/message.js';
import { ValidationError } from '../../../errors.js';
import type { LinkKind } from './registry.js';

/** IFLA_VLAN_QOS_MAPPING { from, to } entries. */
const qos = nested({ mapping: repeated(1, structCodec(struct([['from', 'u32'], ['to', 'u32']] as const))) } as const);

/** IFLA_VLAN_*: the protocol reads as '802.1Q' or '802.1ad'. */
export const vlanAttrs = {
  protocol: attr(5, named(be16, { '802.1Q': 0x8100, '802.1ad': 0x88a8 })),
  id: attr(1, u16),
  flags: attr(2, structCodec(struct([['flags', 'u32'], ['mask', 'u32']] as const))),
  egressQos: attr(3, qos),
  ingressQos: attr(4, qos),
} as const satisfies Schema;
export type VlanOptions = Attrs<typeof vlanAttrs>;
export const vlanKind: LinkKind<typeof vlanAttrs> = {
  kind: 'vlan',
  data: vlanAttrs,
  needsLower: true,
  validate: (o) => {
    if (o.id === undefined || o.id < 0 || o.id > 4094) throw new ValidationError('vlan id', `${String(o.id)} is outside 0..4094`);
  },
};

/** MACVLAN_MODE_* by name. */
export const MACVLAN_MODE = { private: 1, vepa: 2, bridge: 4, passthru: 8, source: 16 } as const;

/** IFLA_MACVLAN_* (macvlan and macvtap). */
export const macvlanAttrs = {
  mode: attr(1, named(u32, MACVLAN_MODE)),
  flags: attr(2, u16),
  macaddrMode: attr(3, u32),
  macaddr: attr(4, mac),
  macaddrData: attr(5, nested({ macaddr: repeated(4, mac) } as const)),
  macaddrCount: attr(6, u32),
  bcQueueLen: attr(7, u32),
  bcQueueLenUsed: attr(8, u32),
  bcCutoff: attr(9, s32),
} as const satisfies Schema;
export type MacvlanOptions = Attrs<typeof macvlanAttrs>;
export const macvlanKind: LinkKind<typeof macvlanAttrs> = { kind: 'macvlan', data: macvlanAttrs, needsLower: true };
export const macvtapKind: LinkKind<typeof macvlanAttrs> = { kind: 'macvtap', data: macvlanAttrs, needsLower: true };

/** IFLA_IPVLAN_*: mode l2/l3/l3s, flags bridge/private/vepa. */
export const ipvlanAttrs = {
  mode: attr(1, named(u16, { l2: 0, l3: 1, l3s: 2 })),
  flags: attr(2, named(u16, { bridge: 0, private: 1, vepa: 2 })),
} as const satisfies Schema;
export type IpvlanOptions = Attrs<typeof ipvlanAttrs>;
export const ipvlanKind: LinkKind<typeof ipvlanAttrs> = { kind: 'ipvlan', data: ipvlanAttrs, needsLower: true, defaults: { flags: 'bridge' } };
export const ipvtapKind: LinkKind<typeof ipvlanAttrs> = { kind: 'ipvtap', data: ipvlanAttrs, needsLower: true, defaults: { flags: 'bridge' } };
