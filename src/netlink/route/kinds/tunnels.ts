/** Tunnel kinds: vxlan, geneve, gre/gretap/erspan, ipip/sit. Attributes in the order iproute2 sends them; the zeros it always sends are defaults. */
import { attr, be16, be32, flag, ipAddr, named, u8, u16, u32, type Attrs, type Codec, type Schema } from '../../core/attr.js';
import { struct, structCodec } from '../../core/message.js';
import { CodecError, ValidationError } from '../../../errors.js';
import type { LinkKind } from './registry.js';

/** struct ifla_vxlan_port_range { be16 low; be16 high; } */
const portRange: Codec<{ low: number; high: number }> = {
  size: () => 4,
  write: (b, o, v) => {
    b.writeUInt16BE(v.low, o);
    b.writeUInt16BE(v.high, o + 2);
  },
  read: (b, o, l) => {
    if (l !== 4) throw new CodecError(`port range: expected 4 bytes, got ${l}`, o);
    return { low: b.readUInt16BE(o), high: b.readUInt16BE(o + 2) };
  },
};

/** IFLA_VXLAN_*: `group` is a multicast group or, for point-to-point, the remote; `link` the underlay device. */
export const vxlanAttrs = {
  link: attr(3, u32),
  ttl: attr(5, u8),
  id: attr(1, u32),
  local: attr(4, ipAddr),
  local6: attr(17, ipAddr),
  group: attr(2, ipAddr),
  group6: attr(16, ipAddr),
  learning: attr(7, u8),
  port: attr(15, be16),
  tos: attr(6, u8),
  ageing: attr(8, u32),
  limit: attr(9, u32),
  portRange: attr(10, portRange),
  proxy: attr(11, u8),
  rsc: attr(12, u8),
  l2miss: attr(13, u8),
  l3miss: attr(14, u8),
  udpCsum: attr(18, u8),
  udpZeroCsum6Tx: attr(19, u8),
  udpZeroCsum6Rx: attr(20, u8),
  remcsumTx: attr(21, u8),
  remcsumRx: attr(22, u8),
  gbp: attr(23, flag),
  remcsumNopartial: attr(24, flag),
  collectMetadata: attr(25, u8),
  label: attr(26, be32),
  gpe: attr(27, flag),
  ttlInherit: attr(28, u8),
  df: attr(29, u8),
  vnifilter: attr(30, u8),
  localbypass: attr(31, u8),
  /** IFLA_VXLAN_LABEL_POLICY (Linux 6.7): the IPv6 flow label of the outer header, fixed (`label`) or inherited from the inner packet. */
  labelPolicy: attr(32, named(u32, { fixed: 0, inherit: 1 })),
  /** IFLA_VXLAN_RESERVED_BITS (Linux 6.14): the bits of a received VXLAN header (flags word, VNI word) that may be set. */
  reservedBits: attr(33, structCodec(struct([['flags', 'be32'], ['vni', 'be32']] as const))),
  /** IFLA_VXLAN_MC_ROUTE (Linux 6.16): route multicast through the underlay's routing. */
  mcRoute: attr(34, u8),
} as const satisfies Schema;
export type VxlanOptions = Attrs<typeof vxlanAttrs>;

export const vxlanKind: LinkKind<typeof vxlanAttrs> = {
  kind: 'vxlan',
  data: vxlanAttrs,
  defaults: { learning: 1 },
  validate: (o) => {
    if (o.id === undefined && !o.collectMetadata) throw new ValidationError('vxlan', 'needs an id (VNI) unless collectMetadata');
    if (o.id !== undefined && (o.id < 0 || o.id > 0xffffff)) throw new ValidationError('vxlan id', `${o.id} is outside 0..16777215`);
  },
};

/** IFLA_GENEVE_* */
export const geneveAttrs = {
  id: attr(1, u32),
  remote: attr(2, ipAddr),
  remote6: attr(7, ipAddr),
  label: attr(11, be32),
  ttl: attr(3, u8),
  tos: attr(4, u8),
  port: attr(5, be16),
  collectMetadata: attr(6, flag),
  udpCsum: attr(8, u8),
  udpZeroCsum6Tx: attr(9, u8),
  udpZeroCsum6Rx: attr(10, u8),
  ttlInherit: attr(12, u8),
  df: attr(13, u8),
  innerProtoInherit: attr(14, flag),
} as const satisfies Schema;
export type GeneveOptions = Attrs<typeof geneveAttrs>;
export const geneveKind: LinkKind<typeof geneveAttrs> = { kind: 'geneve', data: geneveAttrs, defaults: { label: 0, ttl: 0, tos: 0 } };

/** IFLA_GRE_* (gre, gretap, erspan; ip6gre keys alike). Keys and flags are in network order. */
export const greAttrs = {
  ikey: attr(4, be32),
  okey: attr(5, be32),
  iflags: attr(2, be16),
  oflags: attr(3, be16),
  local: attr(6, ipAddr),
  remote: attr(7, ipAddr),
  pmtudisc: attr(10, u8),
  tos: attr(9, u8),
  ttl: attr(8, u8),
  fwmark: attr(20, u32),
  /** ERSPAN (erspan kind): the version (1 or 2), the session index of version 1, the direction and hardware id of version 2. */
  erspanVer: attr(22, u8),
  erspanIndex: attr(21, u32),
  erspanDir: attr(23, named(u8, { ingress: 0, egress: 1 })),
  erspanHwid: attr(24, u16),
  encapType: attr(14, u16),
  encapFlags: attr(15, u16),
  encapSport: attr(16, be16),
  encapDport: attr(17, be16),
  link: attr(1, u32),
  encapLimit: attr(11, u8),
  flowinfo: attr(12, be32),
  flags: attr(13, u32),
  collectMetadata: attr(18, flag),
  ignoreDf: attr(19, u8),
} as const satisfies Schema;
export type GreOptions = Attrs<typeof greAttrs>;
const greDefaults: GreOptions = { ikey: 0, okey: 0, iflags: 0, oflags: 0, pmtudisc: 1, tos: 0, ttl: 0, fwmark: 0, encapType: 0, encapFlags: 0, encapSport: 0, encapDport: 0 };
export const greKind: LinkKind<typeof greAttrs> = { kind: 'gre', data: greAttrs, defaults: greDefaults };
export const gretapKind: LinkKind<typeof greAttrs> = { kind: 'gretap', data: greAttrs, defaults: greDefaults };
export const erspanKind: LinkKind<typeof greAttrs> = { kind: 'erspan', data: greAttrs, defaults: { ...greDefaults, erspanVer: 1 } };

/** IFLA_IPTUN_* (ipip, sit, ip6tnl). */
export const iptunAttrs = {
  proto: attr(9, u8),
  local: attr(2, ipAddr),
  remote: attr(3, ipAddr),
  pmtudisc: attr(10, u8),
  tos: attr(5, u8),
  ttl: attr(4, u8),
  link: attr(1, u32),
  fwmark: attr(20, u32),
  encapType: attr(15, u16),
  encapFlags: attr(16, u16),
  encapSport: attr(17, be16),
  encapDport: attr(18, be16),
  encapLimit: attr(6, u8),
  flowinfo: attr(7, be32),
  flags: attr(8, u16),
  collectMetadata: attr(19, flag),
  _6rdPrefix: attr(11, ipAddr),
  _6rdRelayPrefix: attr(12, ipAddr),
  _6rdPrefixlen: attr(13, u16),
  _6rdRelayPrefixlen: attr(14, u16),
} as const satisfies Schema;
export type IptunOptions = Attrs<typeof iptunAttrs>;
const iptunDefaults: IptunOptions = { proto: 0, pmtudisc: 1, tos: 0, ttl: 0, link: 0, fwmark: 0, encapType: 0, encapFlags: 0, encapSport: 0, encapDport: 0 };
export const ipipKind: LinkKind<typeof iptunAttrs> = { kind: 'ipip', data: iptunAttrs, defaults: iptunDefaults };
export const sitKind: LinkKind<typeof iptunAttrs> = { kind: 'sit', data: iptunAttrs, defaults: iptunDefaults };
