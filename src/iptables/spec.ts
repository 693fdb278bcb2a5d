/**
 * The inputs of the rule builders, and their validation into normalized internal forms. Every
 * string that reaches restore text passes through here first (see validate.ts for why).
 */
import ipaddr from 'ipaddr.js';
import { ValidationError } from '../errors.js';
import { checkEndpointId, checkNetworkName } from '../names.js';
import { reservedIPv4Range } from '../addresses.js';
import { mappingsOverlap, type FirewallNetwork, type GatewayMode, type PortMapping, type Protocol } from '../firewall/types.js';
import { type Cidr, checkIfName, checkIPv4, checkIPv4Cidr, checkPort, checkProtocol } from './validate.js';

export { mappingsOverlap, type PortMapping, type Protocol };

/** What the rules need to know about a network (subnet host bits are ignored). */
export type NetworkRuleSpec = FirewallNetwork;

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
  return hostIp === undefined || hostIp === '0.0.0.0' ? undefined : hostIp;
}

function overlaps(a: Cidr, b: Cidr): boolean {
  return a.network.match(b.network, Math.min(a.prefix, b.prefix));
}

function checkNetwork(n: NetworkRuleSpec, field: string): Net {
  if (typeof n !== 'object' || n === null) throw new ValidationError(field, 'must be an object');
  const name = checkNetworkName(n.name, `${field}.name`);
  const bridge = checkIfName(`${field}.bridge`, n.bridge);
  const subnet = checkIPv4Cidr(`${field}.subnet`, n.subnet);
  const reserved = reservedIPv4Range(subnet.network.toString(), subnet.prefix);
  if (reserved) throw new ValidationError(`${field}.subnet`, `${subnet.cidr} overlaps the reserved range ${reserved}`);
  const gatewayMode = n.gatewayMode ?? 'nat';
  if (gatewayMode !== 'nat' && gatewayMode !== 'nat-unprotected' && gatewayMode !== 'routed') {
    throw new ValidationError(`${field}.gatewayMode`, `must be nat, nat-unprotected or routed, got ${JSON.stringify(gatewayMode)}`);
  }
  return { name, bridge, subnet, internal: n.internal === true, icc: n.icc !== false, gatewayMode };
}

/** Validates networks, refusing duplicate names or bridges and overlapping subnets; sorted by name for stable text. */
export function checkNetworks(networks: readonly NetworkRuleSpec[]): Net[] {
  if (!Array.isArray(networks)) throw new ValidationError('networks', 'must be an array');
  const nets = networks.map((n, i) => checkNetwork(n, `networks[${i}]`)).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (let i = 0; i < nets.length; i++) {
    for (let j = i + 1; j < nets.length; j++) {
      const a = nets[i] as Net;
      const b = nets[j] as Net;
      if (a.name === b.name) throw new ValidationError('networks', `network "${a.name}" is listed twice`);
      if (a.bridge === b.bridge) throw new ValidationError('networks', `networks "${a.name}" and "${b.name}" share bridge ${a.bridge}`);
      if (overlaps(a.subnet, b.subnet)) {
        throw new ValidationError('networks', `subnets of "${a.name}" (${a.subnet.cidr}) and "${b.name}" (${b.subnet.cidr}) overlap`);
      }
    }
  }
  return nets;
}

/** Validates one endpoint: id, its network, an IP inside the subnet, and mappings that do not overlap. */
export function checkEndpoint(ep: EndpointRuleSpec, field: string): Ep {
  if (typeof ep !== 'object' || ep === null) throw new ValidationError(field, 'must be an object');
  const id = checkEndpointId(ep.id, `${field}.id`);
  const network = checkNetwork(ep.network, `${field}.network`);
  const ip = checkIPv4(`${field}.ip`, ep.ip);
  const addr = ipaddr.IPv4.parse(ip);
  if (!addr.match(network.subnet.network, network.subnet.prefix)) {
    throw new ValidationError(`${field}.ip`, `${ip} is outside the network's subnet ${network.subnet.cidr}`);
  }
  if (network.subnet.prefix <= 30 && (ip === network.subnet.network.toString() || ip === ipaddr.IPv4.broadcastAddressFromCIDR(network.subnet.cidr).toString())) {
    throw new ValidationError(`${field}.ip`, `${ip} is the network or broadcast address of ${network.subnet.cidr}`);
  }
  if (!Array.isArray(ep.mappings)) throw new ValidationError(`${field}.mappings`, 'must be an array');
  const mappings = ep.mappings.map((m, i) => checkMapping(m, `${field}.mappings[${i}]`));
  mappings.forEach((m, i) => {
    const j = mappings.findIndex((o) => mappingsOverlap(o, m));
    if (j !== i) throw new ValidationError(`${field}.mappings[${i}]`, `${describe(m)} overlaps mappings[${j}]`);
  });
  return { id, network, ip, mappings };
}

/** Validates endpoints against `nets`, refusing duplicates and host ports published twice; sorted by id. */
export function checkEndpoints(endpoints: readonly EndpointRuleSpec[], nets: readonly Net[]): Ep[] {
  if (!Array.isArray(endpoints)) throw new ValidationError('endpoints', 'must be an array');
  const eps = endpoints.map((e, i) => checkEndpoint(e, `endpoints[${i}]`)).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
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

function checkMapping(m: PortMapping, field: string): Mapping {
  if (typeof m !== 'object' || m === null) throw new ValidationError(field, 'must be an object');
  let hostIp: string | undefined;
  if (m.hostIp !== undefined) {
    hostIp = anyIp(checkIPv4(`${field}.hostIp`, m.hostIp));
    const range = hostIp === undefined ? 'unicast' : ipaddr.IPv4.parse(hostIp).range();
    if (range === 'multicast' || range === 'broadcast' || range === 'reserved') {
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
