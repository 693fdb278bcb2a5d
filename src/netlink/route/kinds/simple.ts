/**
 * Kinds with little or no IFLA_INFO_DATA: dummy, ifb, nlmon, wireguard (configured over generic
 * netlink), vrf, tun/tap (decode; created with ioctls), and the small schemas of bareudp, amt, hsr.
 */
import { attr, be16, flag, ipAddr, mac, named, u8, u16, u32, type Attrs, type Schema } from '../../core/attr.js';
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

/** IFLA_BAREUDP_*: the UDP port and the inner ethertype (`ip link add NAME type bareudp dstport PORT ethertype PROTO`). */
export const bareudpAttrs = {
  port: attr(1, be16),
  ethertype: attr(2, be16),
  srcportMin: attr(3, u16),
  multiprotoMode: attr(4, flag),
} as const satisfies Schema;
export type BareudpOptions = Attrs<typeof bareudpAttrs>;
export const bareudpKind: LinkKind<typeof bareudpAttrs> = { kind: 'bareudp', data: bareudpAttrs };

/** IFLA_AMT_*: Automatic Multicast Tunneling, as a gateway or a relay, over the underlay device `link`. */
export const amtAttrs = {
  mode: attr(1, named(u32, { gateway: 0, relay: 1 })),
  localIp: attr(5, ipAddr),
  remoteIp: attr(6, ipAddr),
  discoveryIp: attr(7, ipAddr),
  link: attr(4, u32),
  relayPort: attr(2, be16),
  gatewayPort: attr(3, be16),
  maxTunnels: attr(8, u32),
} as const satisfies Schema;
export type AmtOptions = Attrs<typeof amtAttrs>;
export const amtKind: LinkKind<typeof amtAttrs> = { kind: 'amt', data: amtAttrs };

/** IFLA_HSR_*: the two ports (ifindexes), the supervision frames' last address byte and the protocol version; the kernel reports the address and sequence number. */
export const hsrAttrs = {
  slave1: attr(1, u32),
  slave2: attr(2, u32),
  multicastSpec: attr(3, u8),
  version: attr(6, u8),
  protocol: attr(7, named(u8, { hsr: 0, prp: 1 })),
  interlink: attr(8, u32),
  supervisionAddr: attr(4, mac),
  seqNr: attr(5, u16),
} as const satisfies Schema;
export type HsrOptions = Attrs<typeof hsrAttrs>;
export const hsrKind: LinkKind<typeof hsrAttrs> = { kind: 'hsr', data: hsrAttrs };
