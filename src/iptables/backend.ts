/**
 * The iptables-restore implementation of the Firewall interface. Every change is one
 * `iptables-restore --noflush` run of text computed by the pure builders in rules.ts; reads go
 * through the matching iptables-save. Incremental changes check first that the rules they build
 * on are in place, and report drift instead of changing a ruleset they do not understand.
 */
import {
  FirewallDriftError,
  FirewallUnavailableError,
  type ConnectionFilter,
  type Firewall,
  type FirewallDifference,
  type FirewallEndpoint,
  type FirewallNetwork,
  type FirewallState,
} from '../firewall/types.js';
import { IptablesError } from './errors.js';
import { applyNetworksText, diffRuleset, endpointsAddText, endpointsRemoveText, fullRebuildText, removeAllText } from './rules.js';
import type { EndpointRuleSpec } from './spec.js';
import { findBinary, restore, restoreBinary, save, saveBinary, type IptablesOptions } from './restore.js';
import { forgetConnections } from '../firewall/conntrack.js';

/** Options of the iptables firewall. */
export type IptablesFirewallOptions = IptablesOptions;

function ruleSpecs(state: FirewallState): EndpointRuleSpec[] {
  const byName = new Map(state.networks.map((n) => [n.name, n]));
  return state.endpoints
    .filter((e) => e.mappings.length > 0)
    .map((e) => {
      const network = byName.get(e.network);
      if (!network) throw new FirewallDriftError(`endpoint ${e.id} belongs to network ${e.network}, which the desired state lacks`);
      return { id: e.id, network, ip: e.ip, mappings: e.mappings };
    });
}

/** Firewall backed by iptables-restore (nft or legacy, by the binary chosen). */
export class IptablesFirewall implements Firewall {
  readonly backend: string;
  private readonly opts: IptablesFirewallOptions;

  constructor(opts: IptablesFirewallOptions = {}) {
    // A bad binary name is refused now, not at the last step of the first connect with ports.
    const bin = restoreBinary(opts);
    this.opts = opts;
    this.backend = /legacy/.test(bin) ? 'iptables-legacy' : 'iptables';
  }

  /** Refuses to start when iptables-restore or iptables-save is missing, naming the package to install. */
  async ensureAvailable(): Promise<void> {
    for (const bin of [restoreBinary(this.opts), saveBinary(this.opts)]) {
      if (!findBinary(bin)) {
        throw new FirewallUnavailableError(`${bin} not found on PATH: install the iptables package (apt-get install iptables, or dnf install iptables-nft)`);
      }
    }
  }

  /** Network chains for exactly `networks`, plus any missing jumps; every TSN chain goes with the last network. */
  async setNetworks(networks: readonly FirewallNetwork[]): Promise<void> {
    const saved = await save(undefined, this.opts);
    await restore(networks.length === 0 ? removeAllText(saved) : applyNetworksText(networks, saved), this.opts);
  }

  /** One run for all the endpoints' DNAT chains; FirewallDriftError when a rule they rely on is missing. */
  async addEndpoints(network: FirewallNetwork, endpoints: readonly FirewallEndpoint[]): Promise<void> {
    const text = endpointsAddText(endpoints.map((e) => ({ id: e.id, network, ip: e.ip, mappings: e.mappings })));
    await this.incremental(text);
    // UDP "connections" never end while packets keep coming: flows seen before the mapping
    // existed would keep going to their old destination without this flush.
    await this.forgetConnections({ udpPorts: endpoints.flatMap((e) => e.mappings.filter((m) => m.protocol === 'udp').map((m) => ({ port: m.hostPort, ...(m.hostIp ? { hostIp: m.hostIp } : {}) }))) });
  }

  /** One run removing the endpoints' jumps and chains; FirewallDriftError when one is not there. */
  async removeEndpoints(endpoints: readonly FirewallEndpoint[]): Promise<void> {
    await this.incremental(endpointsRemoveText(endpoints));
  }

  /** Rewrites every owned chain from `state`, deleting stale chains and duplicated jumps. */
  async apply(state: FirewallState): Promise<void> {
    const saved = await save(undefined, this.opts);
    await restore(state.networks.length === 0 ? removeAllText(saved) : fullRebuildText(state.networks, ruleSpecs(state), saved), this.opts);
  }

  /** Owned chains and jumps that differ from `state`. */
  async diff(state: FirewallState): Promise<FirewallDifference[]> {
    return diffRuleset(state.networks, ruleSpecs(state), await save(undefined, this.opts));
  }

  /** Deletes the matching conntrack entries over ctnetlink; warns, never throws. */
  async forgetConnections(filter: ConnectionFilter): Promise<void> {
    try {
      await forgetConnections(filter);
    } catch (e) {
      process.emitWarning(`tsnetlink: conntrack flush failed: ${(e as Error).message}`, 'TsnetlinkWarning');
    }
  }

  /** iptables -P FORWARD DROP, unless that is the policy already. */
  async dropUnmatchedForwarding(): Promise<boolean> {
    if (/^:FORWARD DROP /m.test(await save('filter', this.opts))) return false;
    await restore('*filter\n:FORWARD DROP [0:0]\nCOMMIT\n', this.opts);
    return true;
  }

  private async incremental(text: string): Promise<void> {
    try {
      await restore(text, this.opts);
    } catch (e) {
      if (e instanceof IptablesError) throw new FirewallDriftError(`incremental iptables change refused (${e.message}); the ruleset must be rebuilt`, { cause: e });
      throw e;
    }
  }
}
