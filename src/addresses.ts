/**
 * Address rules shared by every layer, stated once: which IPv4 ranges can never be a bridge
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
