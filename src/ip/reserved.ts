/**
 * Address rules shared by every layer, stated once: which IPv4 and IPv6 ranges can never be a bridge
 * network's subnet. The bridge layer refuses them before anything changes, and the rule
 * builders refuse them again so that no caller can write rules for them.
 */
import ipaddr from 'ipaddr.js';

/** Ranges that are not unicast host addresses a container network may use. */
export const RESERVED_IPV4_RANGES: readonly string[] = Object.freeze([
  '0.0.0.0/8', // "this network"
  '127.0.0.0/8', // loopback: the host's own services
  '169.254.0.0/16', // link-local
  '224.0.0.0/4', // multicast
  '240.0.0.0/4', // reserved, and the limited broadcast address
]);

const parsed = RESERVED_IPV4_RANGES.map((r) => ({ text: r, cidr: ipaddr.IPv4.parseCIDR(r) }));

/** The reserved range that the IPv4 block `network/prefix` overlaps, or undefined. */
export function reservedIPv4Range(network: string, prefix: number): string | undefined {
  const addr = ipaddr.IPv4.parse(network);
  for (const r of parsed) {
    const [rnet, rprefix] = r.cidr;
    if (addr.match(rnet, Math.min(prefix, rprefix))) return r.text;
  }
  return undefined;
}

/**
 * IPv6 ranges that are not unicast host addresses a container network may use. Unique local
 * (fc00::/7), global unicast and the documentation prefix (2001:db8::/32, for examples and tests)
 * are allowed.
 */
export const RESERVED_IPV6_RANGES: readonly string[] = Object.freeze([
  '::/8', // unspecified, loopback, IPv4-compatible and IPv4-mapped addresses
  '64:ff9b::/96', // NAT64: the host's translator owns it
  'fe80::/10', // link-local: every interface has its own
  'fec0::/10', // deprecated site-local
  'ff00::/8', // multicast
]);

const parsed6 = RESERVED_IPV6_RANGES.map((r) => ({ text: r, cidr: ipaddr.IPv6.parseCIDR(r) }));

/** The reserved range that the IPv6 block `network/prefix` overlaps, or undefined. */
export function reservedIPv6Range(network: string, prefix: number): string | undefined {
  const addr = ipaddr.IPv6.parse(network);
  for (const r of parsed6) {
    const [rnet, rprefix] = r.cidr;
    if (addr.match(rnet, Math.min(prefix, rprefix))) return r.text;
  }
  return undefined;
}
