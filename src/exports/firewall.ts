/** tsnetlink/firewall: the Firewall seam, its registry and router, both backends and the memory fake, without bridge networks. */
export * from '../firewall/index.js';
export { IptablesFirewall, type IptablesFirewallOptions } from '../firewall/iptables/backend.js';
export { NftablesFirewall, type NftablesFirewallOptions } from '../firewall/nftables/firewall.js';
export * as iptables from '../firewall/iptables/index.js';
