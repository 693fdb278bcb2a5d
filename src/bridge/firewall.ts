/**
 * Glue between bridge state and the iptables layer: every change is one iptables-restore run
 * computed from persisted state, with a full rebuild as the fallback when the live ruleset has
 * drifted (a firewall reload wiped it, a jump went missing).
 */
import { writeFileSync } from 'node:fs';
import {
  applyNetworksText,
  conntrackFlushUdp,
  endpointAddText,
  endpointRemoveText,
  fullRebuildText,
  removeAllText,
  restore,
  save,
  IptablesError,
  dnatChainName,
  type EndpointRuleSpec,
  type IptablesOptions,
  type NetworkRuleSpec,
} from '../iptables/index.js';
import type { EndpointRecord, NetworkRecord } from './types.js';

/** The rule view of a network record. */
export function networkSpec(n: NetworkRecord): NetworkRuleSpec {
  return { name: n.name, bridge: n.bridge, subnet: n.subnet };
}

/** The rule view of an endpoint record. */
export function endpointSpec(n: NetworkRecord, e: RuleEndpoint): EndpointRuleSpec {
  return { id: e.id, network: networkSpec(n), ip: e.ip, mappings: e.mappings };
}

/** Rewrites the per-network chains for `networks` and appends any missing jumps. */
export async function applyNetworks(networks: readonly NetworkRecord[], opts: IptablesOptions): Promise<void> {
  if (networks.length === 0) {
    await restore(removeAllText(await save(undefined, opts)), opts);
    return;
  }
  await restore(applyNetworksText(networks.map(networkSpec), await save(undefined, opts)), opts);
}

type RuleState = () => { networks: NetworkRecord[]; endpoints: EndpointRuleSpec[] };
/** What the rules need of an endpoint; available right after IP allocation, before the veth exists. */
export type RuleEndpoint = Pick<EndpointRecord, 'id' | 'ip' | 'mappings'>;

/** Applies an incremental change; if the live ruleset drifted (a jump or chain is missing), rebuilds everything from state. */
async function restoreOrRebuild(text: string, all: RuleState, opts: IptablesOptions): Promise<void> {
  if (text === '') return;
  try {
    await restore(text, opts);
  } catch (e) {
    if (!(e instanceof IptablesError)) throw e;
    await rebuild(all(), opts);
  }
}

/** Adds endpoints' DNAT chains and jumps in one run; falls back to a full rebuild if the ruleset drifted. */
export async function addEndpointRules(net: NetworkRecord, eps: readonly RuleEndpoint[], all: RuleState, opts: IptablesOptions): Promise<void> {
  // These endpoints may not be saved yet (rules go in while the veths are made), so a rebuild adds them.
  const withNew: RuleState = () => {
    const s = all();
    const known = new Set(s.endpoints.map((e) => e.id));
    return { ...s, endpoints: [...s.endpoints, ...eps.filter((e) => !known.has(e.id)).map((e) => endpointSpec(net, e))] };
  };
  await restoreOrRebuild(eps.map((e) => endpointAddText(endpointSpec(net, e))).join(''), withNew, opts);
  // Old UDP flows to the host port would keep going to their previous destination (pitfall 20).
  // The rules are in place either way, so a failed flush is a warning, not a failed connect.
  for (const m of eps.flatMap((e) => e.mappings).filter((x) => x.protocol === 'udp')) {
    await conntrackFlushUdp(m.hostPort, m.hostIp ? { hostIp: m.hostIp } : {}).catch((e: Error) => {
      process.emitWarning(`tsnetlink: conntrack flush for ${m.hostPort}/udp failed: ${e.message}`, 'TsnetlinkWarning');
    });
  }
}

/** Removes endpoints' DNAT chains and jumps in one run; a drifted ruleset is rebuilt from state instead. */
export async function removeEndpointRules(eps: readonly RuleEndpoint[], all: RuleState, opts: IptablesOptions): Promise<void> {
  // Their records may still exist (they go last), so a rebuild must leave these endpoints out.
  const gone = new Set(eps.map((e) => e.id));
  const without: RuleState = () => {
    const s = all();
    return { ...s, endpoints: s.endpoints.filter((e) => !gone.has(e.id)) };
  };
  await restoreOrRebuild(eps.map((e) => endpointRemoveText({ id: e.id, mappings: e.mappings })).join(''), without, opts);
}

/**
 * Undoes an add that failed: removes what a partly committed run may have left. When the
 * removal fails too, iptables-save decides: if none of these endpoints' chains exist, the
 * failed add left nothing behind and there is nothing to report.
 */
export async function undoFailedAdd(eps: readonly RuleEndpoint[], all: RuleState, opts: IptablesOptions): Promise<void> {
  try {
    await removeEndpointRules(eps, all, opts);
  } catch (e) {
    const saved = await save(undefined, opts);
    if (eps.some((ep) => saved.includes(dnatChainName(ep.id)))) throw e;
  }
}

/** Rewrites every owned chain from state (`tsnetlink network repair`). */
export async function rebuild(state: { networks: NetworkRecord[]; endpoints: EndpointRuleSpec[] }, opts: IptablesOptions): Promise<void> {
  const saved = await save(undefined, opts);
  if (state.networks.length === 0) return restore(removeAllText(saved), opts);
  await restore(fullRebuildText(state.networks.map(networkSpec), state.endpoints, saved), opts);
}

/** Sets an IPv4 sysctl of the calling process's netns (e.g. ip_forward, conf/BR/route_localnet). */
export function setSysctl(path: string, value: string): void {
  writeFileSync(`/proc/sys/net/ipv4/${path}`, value);
}
