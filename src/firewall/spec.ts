/**
 * The inputs of the rule builders, and their validation into normalized internal forms. Every
 * string that reaches restore text passes through here first (see validate.ts for why).
 */
import ipaddr from 'ipaddr.js';
import { ValidationError } from '../errors.js';
import { checkEndpointId, checkNetworkName } from '../names.js';
import { reservedIPv4Range, reservedIPv6Range } from '../ip/reserved.js';
import { mappingsOverlap, type GatewayMode, type PortMapping, type Protocol } from './types.js';
import { overlaps } from '../ip/cidr.js';
import { type Cidr, checkIPv4, checkIPv4Cidr, checkIPv6, checkIPv6Cidr } from '../ip/check.js';
import { checkIfName, checkPort, checkProtocol } from './validate.js';

export { mappingsOverlap, type PortMapping, type Protocol };

/** The address family a set of rules is for: iptables (4) or ip6tables (6). */
export type RuleFamily = 4 | 6;

/**
 * What the rules need to know about a network, for one family: `subnet` is the network's subnet
 * of that family (host bits are ignored).
 */
export interface NetworkRuleSpec {
  name: string;
  bridge: string;
  subnet: string;
  internal?: boolean | undefined;
  icc?: boolean | undefined;
  gatewayMode?: GatewayMode | undefined;
}

/** What the rules need to know about an endpoint (a container attached to a network). */
export interface EndpointRuleSpec {
  id: string;
  network: NetworkRuleSpec;
  ip: string;
  mappings: PortMapping[];
}

/** A validated network: subnet parsed and normalized. */
export interface Net {
  name: string;
  bridge: string;
  subnet: Cidr;
  internal: boolean;
  icc: boolean;
  gatewayMode: GatewayMode;
}

/** A validated mapping; hostIp undefined means every local address. */
export interface Mapping {
  hostIp: string | undefined;
  hostPort: number;
  containerPort: number;
  protocol: Protocol;
}

/** A validated endpoint. */
export interface Ep {
  id: string;
  network: Net;
  ip: string;
  mappings: Mapping[];
}

function anyIp(hostIp: string | undefined): string | undefined {
  return hostIp === undefined || hostIp === '0.0.0.0' || hostIp === '::' ? undefined : hostIp;
}

/**
 * Whether `addr` lies in the first `bits` bits of `range` (both of one family). The typed
 * parsers are used, never ipaddr.parse: that one tries IPv6 first and pays a thrown exception
 * for every IPv4 address, on every connect with a port mapping.
 */
function within(addr: ipaddr.IPv4 | ipaddr.IPv6, range: ipaddr.IPv4 | ipaddr.IPv6, bits: number): boolean {
  if (addr.kind() !== range.kind()) return false;
  return addr.kind() === 'ipv4' ? (addr as ipaddr.IPv4).match(range as ipaddr.IPv4, bits) : (addr as ipaddr.IPv6).match(range as ipaddr.IPv6, bits);
}

function checkNetwork(n: NetworkRuleSpec, field: string, family: RuleFamily): Net {
  if (typeof n !== 'object' || n === null) throw new ValidationError(field, 'must be an object');
  const name = checkNetworkName(n.name, `${field}.name`);
  const bridge = checkIfName(`${field}.bridge`, n.bridge);
  const subnet = family === 4 ? checkIPv4Cidr(`${field}.subnet`, n.subnet) : checkIPv6Cidr(`${field}.subnet`, n.subnet);
  const reserved = family === 4 ? reservedIPv4Range(subnet.network.toString(), subnet.prefix) : reservedIPv6Range(subnet.network.toString(), subnet.prefix);
  if (reserved) throw new ValidationError(`${field}.subnet`, `${subnet.cidr} overlaps the reserved range ${reserved}`);
  const gatewayMode = n.gatewayMode ?? 'nat';
  if (gatewayMode !== 'nat' && gatewayMode !== 'nat-unprotected' && gatewayMode !== 'routed') {
    throw new ValidationError(`${field}.gatewayMode`, `must be nat, nat-unprotected or routed, got ${JSON.stringify(gatewayMode)}`);
  }
  return { name, bridge, subnet, internal: n.internal === true, icc: n.icc !== false, gatewayMode };
}

/** Validates networks, refusing duplicate names or bridges and overlapping subnets; sorted by name for stable text. */
export function checkNetworks(networks: readonly NetworkRuleSpec[], family: RuleFamily = 4): Net[] {
  if (!Array.isArray(networks)) throw new ValidationError('networks', 'must be an array');
  const nets = networks.map((n, i) => checkNetwork(n, `networks[${i}]`, family)).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (let i = 0; i < nets.length; i++) {
    for (let j = i + 1; j < nets.length; j++) {
      const a = nets[i] as Net;
      const b = nets[j] as Net;
      if (a.name === b.name) throw new ValidationError('networks', `network "${a.name}" is listed twice`);
      if (a.bridge === b.bridge) throw new ValidationError('networks', `networks "${a.name}" and "${b.name}" share bridge ${a.bridge}`);
      if (overlaps(a.subnet.cidr, b.subnet.cidr)) {
        throw new ValidationError('networks', `subnets of "${a.name}" (${a.subnet.cidr}) and "${b.name}" (${b.subnet.cidr}) overlap`);
      }
    }
  }
  return nets;
}

/** Validates one endpoint: id, its network, an IP inside the subnet, and mappings that do not overlap. */
export function checkEndpoint(ep: EndpointRuleSpec, field: string, family: RuleFamily = 4): Ep {
  if (typeof ep !== 'object' || ep === null) throw new ValidationError(field, 'must be an object');
  const id = checkEndpointId(ep.id, `${field}.id`);
  const network = checkNetwork(ep.network, `${field}.network`, family);
  const ip = family === 4 ? checkIPv4(`${field}.ip`, ep.ip) : checkIPv6(`${field}.ip`, ep.ip);
  if (!within(family === 4 ? ipaddr.IPv4.parse(ip) : ipaddr.IPv6.parse(ip), network.subnet.network, network.subnet.prefix)) {
    throw new ValidationError(`${field}.ip`, `${ip} is outside the network's subnet ${network.subnet.cidr}`);
  }
  if (family === 4 && network.subnet.prefix <= 30 && (ip === network.subnet.network.toString() || ip === ipaddr.IPv4.broadcastAddressFromCIDR(network.subnet.cidr).toString())) {
    throw new ValidationError(`${field}.ip`, `${ip} is the network or broadcast address of ${network.subnet.cidr}`);
  }
  if (family === 6 && ip === network.subnet.network.toString()) {
    throw new ValidationError(`${field}.ip`, `${ip} is the subnet-router anycast address of ${network.subnet.cidr}`);
  }
  if (!Array.isArray(ep.mappings)) throw new ValidationError(`${field}.mappings`, 'must be an array');
  const mappings = ep.mappings.map((m, i) => checkMapping(m, `${field}.mappings[${i}]`, family));
  mappings.forEach((m, i) => {
    const j = mappings.findIndex((o) => mappingsOverlap(o, m));
    if (j !== i) throw new ValidationError(`${field}.mappings[${i}]`, `${describe(m)} overlaps mappings[${j}]`);
  });
  return { id, network, ip, mappings };
}

/** Validates endpoints against `nets`, refusing duplicates and host ports published twice; sorted by id. */
export function checkEndpoints(endpoints: readonly EndpointRuleSpec[], nets: readonly Net[], family: RuleFamily = 4): Ep[] {
  if (!Array.isArray(endpoints)) throw new ValidationError('endpoints', 'must be an array');
  const eps = endpoints.map((e, i) => checkEndpoint(e, `endpoints[${i}]`, family)).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const seen = new Set<string>();
  const claimed: { ep: Ep; m: Mapping }[] = [];
  for (const ep of eps) {
    const net = nets.find((n) => n.name === ep.network.name);
    if (!net || net.bridge !== ep.network.bridge || net.subnet.cidr !== ep.network.subnet.cidr) {
      throw new ValidationError(`endpoint ${ep.id}`, `its network "${ep.network.name}" is not among the networks given`);
    }
    const key = `${ep.network.name}/${ep.id}`;
    if (seen.has(key)) throw new ValidationError(`endpoint ${ep.id}`, `is listed twice on network ${ep.network.name}`);
    seen.add(key);
    for (const m of ep.mappings) {
      const clash = claimed.find((c) => mappingsOverlap(c.m, m));
      if (clash) throw new ValidationError(`endpoint ${ep.id}`, `${describe(m)} is also published by "${clash.ep.id}"`);
      claimed.push({ ep, m });
    }
  }
  return eps;
}

/** Validates one mapping for `family`'s rules; hostIp comes back undefined for that family's wildcard ("0.0.0.0", "::"). */
export function checkMapping(m: PortMapping, field: string, family: RuleFamily = 4): Mapping {
  if (typeof m !== 'object' || m === null) throw new ValidationError(field, 'must be an object');
  let hostIp: string | undefined;
  // "0.0.0.0" means every address of both families; the IPv6 rules read it as their wildcard.
  if (m.hostIp !== undefined && !(family === 6 && m.hostIp === '0.0.0.0')) {
    hostIp = anyIp(family === 4 ? checkIPv4(`${field}.hostIp`, m.hostIp) : checkIPv6(`${field}.hostIp`, m.hostIp));
    const range = hostIp === undefined ? 'unicast' : (family === 4 ? ipaddr.IPv4.parse(hostIp) : ipaddr.IPv6.parse(hostIp)).range();
    // Whether the host has the address is the bridge layer's check; here only addresses that can
    // never be a host's own unicast address are refused. ipaddr.js calls the documentation
    // prefixes of both families (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) and
    // the benchmarking range "reserved": a host may well have one, so neither family refuses them.
    const refused = family === 4 ? ['multicast', 'broadcast'] : ['multicast', 'linkLocal', 'loopback', 'ipv4Mapped'];
    if (refused.includes(range)) {
      throw new ValidationError(`${field}.hostIp`, `${hostIp} is a ${range} address`);
    }
  }
  return {
    hostIp,
    hostPort: checkPort(`${field}.hostPort`, m.hostPort),
    containerPort: checkPort(`${field}.containerPort`, m.containerPort),
    protocol: checkProtocol(`${field}.protocol`, m.protocol),
  };
}

function describe(m: Mapping): string {
  return `${m.hostIp ?? '*'}:${m.hostPort}/${m.protocol}`;
}
