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
} from '../types.js';
import { IptablesError } from './errors.js';
import { CHAIN_PREFIX, applyNetworksText, diffRuleset, endpointsAddText, endpointsRemoveText, fullRebuildText, removeAllText } from './rules.js';
import type { RuleFamily } from '../spec.js';
import { endpointFor, hasRulesIn, networkFor, stateFor } from '../family.js';
import { findBinary } from '../../sys/run.js';
import { ipv6RestoreBinary, restore, restoreBinary, save, saveBinary, type IptablesOptions } from './restore.js';
import { forgetConnectionsOrWarn } from '../conntrack.js';
import { realpathSync } from 'node:fs';
import { basename } from 'node:path';

/** Options of the iptables firewall. */
export type IptablesFirewallOptions = IptablesOptions;

const FAMILIES: readonly RuleFamily[] = [4, 6];

/**
 * Firewall backed by iptables-restore (nft or legacy, by the binary chosen) for IPv4 and its
 * ip6tables-restore twin for IPv6, with the same chains in both. A family's tool runs only when
 * some network has a subnet of that family, or its ruleset still holds our chains.
 */
export class IptablesFirewall implements Firewall {
  readonly backend: string;
  private readonly opts: Record<RuleFamily, IptablesFirewallOptions>;
  private parallel: boolean | undefined;

  constructor(opts: IptablesFirewallOptions = {}) {
    // A bad binary name is refused now, not at the last step of the first connect with ports.
    const bin = restoreBinary(opts);
    this.opts = { 4: opts, 6: { ...opts, restoreBinary: ipv6RestoreBinary(bin) } };
    this.backend = /legacy/.test(bin) ? 'iptables-legacy' : 'iptables';
  }

  /**
   * True for the nf_tables variant (iptables-nft), whose iptables-restore commits each run as one
   * transaction and, when another committed meanwhile, reads the ruleset again and retries: runs
   * that add or remove different endpoints' chains may overlap (40 at once leave every chain and
   * jump in place). The legacy variant takes the xtables lock per run with a few seconds' wait,
   * polled once a second, so its runs are kept one at a time. Known from where the binary's
   * symlinks lead (iptables-restore -> xtables-nft-multi), which costs no process.
   */
  get parallelEndpointChanges(): boolean {
    if (this.parallel === undefined) {
      let real = '';
      try {
        const found = findBinary(restoreBinary(this.opts[4]));
        real = found === undefined ? '' : realpathSync(found);
      } catch {
        /* unreadable: treated as unknown */
      }
      this.parallel = /nft/.test(basename(real)) && !/legacy/.test(basename(real));
    }
    return this.parallel;
  }

  /** Refuses to start when iptables-restore or iptables-save is missing, naming the package to install. */
  async ensureAvailable(): Promise<void> {
    this.ensureFamily(4);
  }

  /** Network chains for exactly `networks`, plus any missing jumps; every TSN chain goes with the last network. */
  async setNetworks(networks: readonly FirewallNetwork[]): Promise<void> {
    for (const family of FAMILIES) {
      const mine = networks.flatMap((n) => networkFor(n, family) ?? []);
      const saved = await this.saveIfUsed(family, mine.length > 0);
      if (saved === undefined) continue;
      await restore(mine.length === 0 ? removeAllText(saved) : applyNetworksText(mine, saved, family), this.opts[family]);
    }
  }

  /** One run per family for all the endpoints' DNAT chains; FirewallDriftError when a rule they rely on is missing. */
  async addEndpoints(network: FirewallNetwork, endpoints: readonly FirewallEndpoint[]): Promise<void> {
    for (const family of FAMILIES) {
      const net = networkFor(network, family);
      const specs = net === undefined ? [] : endpoints.flatMap((e) => endpointFor(e, net, family) ?? []);
      if (specs.length === 0) continue;
      this.ensureFamily(family);
      await this.incremental(endpointsAddText(specs, family), family);
    }
    // UDP "connections" never end while packets keep coming: flows seen before the mapping
    // existed would keep going to their old destination without this flush.
    await this.forgetConnections({ udpPorts: endpoints.flatMap((e) => e.mappings.filter((m) => m.protocol === 'udp').map((m) => ({ port: m.hostPort, ...(m.hostIp ? { hostIp: m.hostIp } : {}) }))) });
  }

  /** One run per family removing the endpoints' jumps and chains; FirewallDriftError when one is not there. */
  async removeEndpoints(endpoints: readonly FirewallEndpoint[]): Promise<void> {
    for (const family of FAMILIES) {
      const mine = endpoints.filter((e) => hasRulesIn(e, family));
      if (mine.length > 0) await this.incremental(endpointsRemoveText(mine), family);
    }
  }

  /** Rewrites every owned chain from `state`, deleting stale chains and duplicated jumps. */
  async apply(state: FirewallState): Promise<void> {
    checkEndpointsHaveNetworks(state);
    for (const family of FAMILIES) {
      const view = stateFor(state, family);
      const saved = await this.saveIfUsed(family, view.networks.length > 0);
      if (saved === undefined) continue;
      await restore(view.networks.length === 0 ? removeAllText(saved) : fullRebuildText(view.networks, view.endpoints, saved, family), this.opts[family]);
    }
  }

  /** Owned chains and jumps that differ from `state`, in both families (IPv6 ones say so). */
  async diff(state: FirewallState): Promise<FirewallDifference[]> {
    checkEndpointsHaveNetworks(state);
    const out: FirewallDifference[] = [];
    for (const family of FAMILIES) {
      const view = stateFor(state, family);
      const saved = await this.saveIfUsed(family, view.networks.length > 0);
      if (saved === undefined) continue;
      for (const d of diffRuleset(view.networks, view.endpoints, saved, family)) out.push(family === 4 ? d : { kind: d.kind, what: `ip6 ${d.what}` });
    }
    return out;
  }

  /** Deletes the matching conntrack entries over ctnetlink; warns, never throws. */
  async forgetConnections(filter: ConnectionFilter): Promise<void> {
    await forgetConnectionsOrWarn(filter);
  }

  /** iptables -P FORWARD DROP (ip6tables for `family` 6), unless that is the policy already. */
  async dropUnmatchedForwarding(family: RuleFamily = 4): Promise<boolean> {
    if (await this.forwardingDropped(family)) return false;
    await restore('*filter\n:FORWARD DROP [0:0]\nCOMMIT\n', this.opts[family]);
    return true;
  }

  /** iptables -S FORWARD | grep '^-P FORWARD DROP' (ip6tables for `family` 6). */
  async forwardingDropped(family: RuleFamily = 4): Promise<boolean> {
    this.ensureFamily(family);
    return /^:FORWARD DROP /m.test(await save('filter', this.opts[family]));
  }

  /** iptables -P FORWARD ACCEPT (ip6tables for `family` 6), unless that is the policy already. */
  async acceptUnmatchedForwarding(family: RuleFamily = 4): Promise<boolean> {
    if (!(await this.forwardingDropped(family))) return false;
    await restore('*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n', this.opts[family]);
    return true;
  }

  /** Refuses a family whose tools are missing, naming the package. */
  private ensureFamily(family: RuleFamily): void {
    for (const bin of [restoreBinary(this.opts[family]), saveBinary(this.opts[family])]) {
      if (!findBinary(bin)) {
        throw new FirewallUnavailableError(`${bin} not found on PATH: install the iptables package (apt-get install iptables, or dnf install iptables-nft)`);
      }
    }
  }

  /**
   * The family's saved ruleset when it has work: `needed` (a network of that family exists) or
   * its ruleset still holds our chains (the last such network just went). An IPv6 ruleset is not
   * read at all while no IPv6 network exists and ip6tables-save is missing.
   */
  private async saveIfUsed(family: RuleFamily, needed: boolean): Promise<string | undefined> {
    if (needed) this.ensureFamily(family);
    else if (family === 6 && !findBinary(saveBinary(this.opts[6]))) return undefined;
    const saved = await save(undefined, this.opts[family]);
    if (!needed && !saved.includes(`:${CHAIN_PREFIX}`)) return undefined;
    return saved;
  }

  private async incremental(text: string, family: RuleFamily): Promise<void> {
    try {
      await restore(text, this.opts[family]);
    } catch (e) {
      if (e instanceof IptablesError) throw new FirewallDriftError(`incremental ${family === 4 ? 'iptables' : 'ip6tables'} change refused (${e.message}); the ruleset must be rebuilt`, { cause: e });
      throw e;
    }
  }
}

function checkEndpointsHaveNetworks(state: FirewallState): void {
  const names = new Set(state.networks.map((n) => n.name));
  for (const e of state.endpoints) {
    if (e.mappings.length > 0 && !names.has(e.network)) throw new FirewallDriftError(`endpoint ${e.id} belongs to network ${e.network}, which the desired state lacks`);
  }
}
