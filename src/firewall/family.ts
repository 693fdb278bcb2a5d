/**
 * The firewall's desired state, family-neutral, seen by one family's rules: the networks that
 * have a subnet of that family (with it as their `subnet`), and the endpoints with an address of
 * that family and the mappings published on it. iptables-restore writes the IPv4 view and
 * ip6tables-restore the IPv6 one, with the same builders. Pure.
 */
import { mappingFamilies, type FirewallEndpoint, type FirewallNetwork, type FirewallState } from './types.js';
import type { EndpointRuleSpec, NetworkRuleSpec, RuleFamily } from './spec.js';

/** A network as `family`'s rules see it, or undefined when it has no subnet of that family. */
export function networkFor(n: FirewallNetwork, family: RuleFamily): NetworkRuleSpec | undefined {
  const subnet = family === 4 ? n.subnet : n.subnet6;
  if (subnet === undefined) return undefined;
  return { name: n.name, bridge: n.bridge, subnet, internal: n.internal, icc: n.icc, gatewayMode: n.gatewayMode };
}

/**
 * The mappings of an endpoint that `family`'s rules publish: none when the endpoint has no
 * address of that family, else those whose host IP names that family or none.
 */
export function mappingsIn(e: Pick<FirewallEndpoint, 'ip' | 'ip6' | 'mappings'>, family: RuleFamily): FirewallEndpoint['mappings'] {
  return (family === 4 ? e.ip : e.ip6) === undefined ? [] : e.mappings.filter((m) => mappingFamilies(m).includes(family));
}

/** An endpoint as `family`'s rules see it (on `network`), or undefined when it has nothing published there. */
export function endpointFor(e: FirewallEndpoint, network: NetworkRuleSpec, family: RuleFamily): EndpointRuleSpec | undefined {
  const ip = family === 4 ? e.ip : e.ip6;
  const mappings = mappingsIn(e, family);
  return ip === undefined || mappings.length === 0 ? undefined : { id: e.id, network, ip, mappings };
}

/** The whole desired state as `family`'s rules see it. */
export function stateFor(state: FirewallState, family: RuleFamily): { networks: NetworkRuleSpec[]; endpoints: EndpointRuleSpec[] } {
  const networks = new Map<string, NetworkRuleSpec>();
  for (const n of state.networks) {
    const v = networkFor(n, family);
    if (v) networks.set(n.name, v);
  }
  const endpoints: EndpointRuleSpec[] = [];
  for (const e of state.endpoints) {
    const net = networks.get(e.network);
    const v = net && endpointFor(e, net, family);
    if (v) endpoints.push(v);
  }
  return { networks: [...networks.values()], endpoints };
}

/** Whether an endpoint has rules in `family`'s ruleset (an address of it and a mapping published on it). */
export function hasRulesIn(e: FirewallEndpoint, family: RuleFamily): boolean {
  return mappingsIn(e, family).length > 0;
}
