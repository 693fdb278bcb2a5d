/** The Firewall seam and the backends that implement it. */
export * from './types.js';
export { MemoryFirewall } from './memory.js';
export { IptablesFirewall, type IptablesFirewallOptions } from './iptables/backend.js';
export { NftablesFirewall, type NftablesFirewallOptions } from './nftables/firewall.js';
