/**
 * IPv6 tunnels and IPsec interfaces: ip6tnl, ip6gre/ip6gretap/ip6erspan, vti/vti6, xfrm and macsec. Attributes in
 * the order iproute2 6.1 sends them (test/fixtures/link-add-*.req.txt); the values it always
 * sends are defaults.
 */
import { attr, be16, be32, be64, flag, ipAddr, named, u8, u16, u32, u64, type Attrs, type Schema } from '../../core/attr.js';
import { ValidationError } from '../../../errors.js';
import type { LinkKind } from './registry.js';

/** TUNNEL_ENCAP_FLAG_CSUM6: iproute2's default encapsulation flags for IPv6 tunnels. */
const ENCAP_CSUM6 = 2;

/** IFLA_IPTUN_* as ip6tnl uses them: IPv6 endpoints, a 32-bit flags word (IP6_TNL_F_*). */
export const ip6tnlAttrs = {
  /** The inner protocol: 41 (ip6ip6), 4 (ipip6), 0 (any). */
  proto: attr(9, u8),
  local: attr(2, ipAddr),
  remote: attr(3, ipAddr),
  /** The hop limit of the outer header. */
  ttl: attr(4, u8),
  encapLimit: attr(6, u8),
  flowinfo: attr(7, be32),
  flags: attr(8, u32),
  link: attr(1, u32),
  fwmark: attr(20, u32),
  encapType: attr(15, u16),
  encapFlags: attr(16, u16),
  encapSport: attr(17, be16),
  encapDport: attr(18, be16),
  collectMetadata: attr(19, flag),
} as const satisfies Schema;
export type Ip6tnlOptions = Attrs<typeof ip6tnlAttrs>;
export const ip6tnlKind: LinkKind<typeof ip6tnlAttrs> = {
  kind: 'ip6tnl',
  data: ip6tnlAttrs,
  defaults: { proto: 0, ttl: 64, encapLimit: 4, flowinfo: 0, flags: 0, link: 0, fwmark: 0, encapType: 0, encapFlags: ENCAP_CSUM6, encapSport: 0, encapDport: 0 },
};

/** IFLA_GRE_* as ip6gre and ip6gretap use them (keys and key flags in network order, IPv6 endpoints). */
export const ip6greAttrs = {
  ikey: attr(4, be32),
  okey: attr(5, be32),
  /** GRE_KEY (0x2000), GRE_CSUM (0x8000), GRE_SEQ (0x1000) for received packets. */
  iflags: attr(2, be16),
  oflags: attr(3, be16),
  local: attr(6, ipAddr),
  remote: attr(7, ipAddr),
  /** The hop limit of the outer header. */
  ttl: attr(8, u8),
  encapLimit: attr(11, u8),
  flowinfo: attr(12, be32),
  flags: attr(13, u32),
  fwmark: attr(20, u32),
  /** ERSPAN (ip6erspan kind): the version (1 or 2), the session index of version 1, the direction and hardware id of version 2. */
  erspanVer: attr(22, u8),
  erspanIndex: attr(21, u32),
  erspanDir: attr(23, named(u8, { ingress: 0, egress: 1 })),
  erspanHwid: attr(24, u16),
  encapType: attr(14, u16),
  encapFlags: attr(15, u16),
  encapSport: attr(16, be16),
  encapDport: attr(17, be16),
  link: attr(1, u32),
  collectMetadata: attr(18, flag),
} as const satisfies Schema;
export type Ip6greOptions = Attrs<typeof ip6greAttrs>;
const ip6greDefaults: Ip6greOptions = { ikey: 0, okey: 0, iflags: 0, oflags: 0, ttl: 64, encapLimit: 4, flowinfo: 0, flags: 0, fwmark: 0, erspanVer: 1, encapType: 0, encapFlags: ENCAP_CSUM6, encapSport: 0, encapDport: 0 };
export const ip6greKind: LinkKind<typeof ip6greAttrs> = { kind: 'ip6gre', data: ip6greAttrs, defaults: ip6greDefaults };
export const ip6gretapKind: LinkKind<typeof ip6greAttrs> = { kind: 'ip6gretap', data: ip6greAttrs, defaults: ip6greDefaults };
export const ip6erspanKind: LinkKind<typeof ip6greAttrs> = { kind: 'ip6erspan', data: ip6greAttrs, defaults: ip6greDefaults };

/** IFLA_VTI_* (vti over IPv4, vti6 over IPv6): the keys select the IPsec policy (as marks), in network order. */
export const vtiAttrs = {
  ikey: attr(2, be32),
  okey: attr(3, be32),
  local: attr(4, ipAddr),
  remote: attr(5, ipAddr),
  fwmark: attr(6, u32),
  link: attr(1, u32),
} as const satisfies Schema;
export type VtiOptions = Attrs<typeof vtiAttrs>;
export const vtiKind: LinkKind<typeof vtiAttrs> = { kind: 'vti', data: vtiAttrs, defaults: { ikey: 0, okey: 0, fwmark: 0 } };
export const vti6Kind: LinkKind<typeof vtiAttrs> = { kind: 'vti6', data: vtiAttrs, defaults: { ikey: 0, okey: 0, fwmark: 0 } };

/** IFLA_XFRM_*: the interface id that xfrm states and policies name (`if_id`), and the underlay device. */
export const xfrmAttrs = {
  ifId: attr(2, u32),
  link: attr(1, u32),
  collectMetadata: attr(3, flag),
} as const satisfies Schema;
export type XfrmLinkOptions = Attrs<typeof xfrmAttrs>;
export const xfrmKind: LinkKind<typeof xfrmAttrs> = {
  kind: 'xfrm',
  data: xfrmAttrs,
  validate: (o) => {
    // The kernel's own rules ("if_id must be non zero"; "link and if_id must be zero" in metadata mode), checked before sending.
    if (o.collectMetadata) {
      if (o.ifId || o.link) throw new ValidationError('xfrm', 'a collectMetadata device takes neither ifId nor link');
    } else if (o.ifId === undefined || o.ifId === 0) throw new ValidationError('xfrm ifId', 'needs a non-zero ifId (the if_id of its states and policies) unless collectMetadata');
  },
};

/**
 * IFLA_MACSEC_*: the SCI (or just its port), cipher suite, and the TX SA's settings. Stacked on a
 * lower device. The order of port, encrypt, window and replayProtect is iproute2's (captured).
 */
export const macsecAttrs = {
  sci: attr(1, be64),
  port: attr(2, be16),
  cipherSuite: attr(4, u64),
  icvLen: attr(3, u8),
  encrypt: attr(7, u8),
  protect: attr(8, u8),
  incSci: attr(9, u8),
  es: attr(10, u8),
  scb: attr(11, u8),
  window: attr(5, u32),
  replayProtect: attr(12, u8),
  validation: attr(13, named(u8, { disabled: 0, check: 1, strict: 2 })),
  encodingSa: attr(6, u8),
  offload: attr(15, named(u8, { off: 0, phy: 1, mac: 2 })),
} as const satisfies Schema;
export type MacsecOptions = Attrs<typeof macsecAttrs>;
export const macsecKind: LinkKind<typeof macsecAttrs> = { kind: 'macsec', data: macsecAttrs, needsLower: true };
