/**
 * An in-memory Firewall that keeps the state it was given, for tests of code built on
 * tsnetlink (no root, no iptables). It is strict where a real backend would silently misbehave:
 * adding an endpoint twice throws, as a real run would duplicate a jump.
 */
import {
  FirewallDriftError,
  type ConnectionFilter,
  type Firewall,
  type FirewallDifference,
  type FirewallEndpoint,
  type FirewallNetwork,
  type FirewallState,
} from './types.js';

const key = (e: Pick<FirewallEndpoint, 'network' | 'id'>): string => `${e.network}/${e.id}`;

function sameMappings(a: FirewallEndpoint, b: FirewallEndpoint): boolean {
  return a.ip === b.ip && a.ip6 === b.ip6 && JSON.stringify(a.mappings) === JSON.stringify(b.mappings);
}

/** A Firewall that only remembers: inspect `networks`, `endpoints` and `calls` in tests. */
export class MemoryFirewall implements Firewall {
  readonly backend = 'memory';
  readonly networks = new Map<string, FirewallNetwork>();
  /** Endpoints with mappings, by "<network>/<id>". */
  readonly endpoints = new Map<string, FirewallEndpoint>();
  /** Every call, in order: "addEndpoints c1", "apply", ... */
  readonly calls: string[] = [];
  /** Connection-tracking flushes asked for. */
  readonly forgotten: ConnectionFilter[] = [];
  /** When true, incremental calls report drift, as after an external flush. */
  drifted = false;
  /** When set, the next call of that name fails with this error (then the field is cleared). */
  failNext: { call: 'setNetworks' | 'addEndpoints' | 'removeEndpoints' | 'apply'; error: Error } | undefined;

  async ensureAvailable(): Promise<void> {}

  private maybeFail(call: NonNullable<MemoryFirewall['failNext']>['call']): void {
    const f = this.failNext;
    if (f && f.call === call) {
      this.failNext = undefined;
      throw f.error;
    }
  }

  async setNetworks(networks: readonly FirewallNetwork[]): Promise<void> {
    this.calls.push(`setNetworks ${networks.map((n) => n.name).join(',')}`);
    this.maybeFail('setNetworks');
    this.networks.clear();
    for (const n of networks) this.networks.set(n.name, { ...n });
    if (networks.length === 0) this.endpoints.clear();
  }

  async addEndpoints(network: FirewallNetwork, endpoints: readonly FirewallEndpoint[]): Promise<void> {
    this.calls.push(`addEndpoints ${endpoints.map((e) => e.id).join(',')}`);
    this.maybeFail('addEndpoints');
    if (this.drifted || !this.networks.has(network.name)) throw new FirewallDriftError(`network ${network.name} has no rules`);
    for (const e of endpoints) {
      if (e.mappings.length === 0) continue;
      if (this.endpoints.has(key(e))) throw new Error(`MemoryFirewall: endpoint ${key(e)} added twice (a real backend would duplicate its jump)`);
    }
    for (const e of endpoints) if (e.mappings.length > 0) this.endpoints.set(key(e), structuredClone(e));
  }

  async removeEndpoints(endpoints: readonly FirewallEndpoint[]): Promise<void> {
    this.calls.push(`removeEndpoints ${endpoints.map((e) => e.id).join(',')}`);
    this.maybeFail('removeEndpoints');
    const withPorts = endpoints.filter((e) => e.mappings.length > 0);
    if (this.drifted || withPorts.some((e) => !this.endpoints.has(key(e)))) throw new FirewallDriftError('an endpoint to remove has no rules');
    for (const e of withPorts) this.endpoints.delete(key(e));
  }

  async apply(state: FirewallState): Promise<void> {
    this.calls.push('apply');
    this.maybeFail('apply');
    this.drifted = false;
    this.networks.clear();
    this.endpoints.clear();
    for (const n of state.networks) this.networks.set(n.name, { ...n });
    for (const e of state.endpoints) if (e.mappings.length > 0) this.endpoints.set(key(e), structuredClone(e));
  }

  async diff(state: FirewallState): Promise<FirewallDifference[]> {
    const out: FirewallDifference[] = [];
    if (this.drifted) out.push({ kind: 'missing', what: 'the ruleset was flushed' });
    const wantNets = new Map(state.networks.map((n) => [n.name, n]));
    for (const n of state.networks) {
      const have = this.networks.get(n.name);
      if (!have) out.push({ kind: 'missing', what: `network ${n.name}` });
      else if (JSON.stringify(have) !== JSON.stringify(n)) out.push({ kind: 'changed', what: `network ${n.name}` });
    }
    for (const n of this.networks.keys()) if (!wantNets.has(n)) out.push({ kind: 'unexpected', what: `network ${n}` });
    const want = new Map(state.endpoints.filter((e) => e.mappings.length > 0).map((e) => [key(e), e]));
    for (const [k, e] of want) {
      const have = this.endpoints.get(k);
      if (!have) out.push({ kind: 'missing', what: `endpoint ${k}` });
      else if (!sameMappings(have, e)) out.push({ kind: 'changed', what: `endpoint ${k}` });
    }
    for (const k of this.endpoints.keys()) if (!want.has(k)) out.push({ kind: 'unexpected', what: `endpoint ${k}` });
    return out;
  }

  /** The FORWARD policy this fake holds. */
  forwardPolicy: 'ACCEPT' | 'DROP' = 'ACCEPT';
  /** The IPv6 FORWARD policy, set by dropUnmatchedForwarding(6). */
  forwardPolicy6: 'ACCEPT' | 'DROP' = 'ACCEPT';

  async dropUnmatchedForwarding(family: 4 | 6 = 4): Promise<boolean> {
    const key = family === 4 ? 'forwardPolicy' : 'forwardPolicy6';
    const changed = this[key] !== 'DROP';
    this[key] = 'DROP';
    return changed;
  }

  async forwardingDropped(family: 4 | 6 = 4): Promise<boolean> {
    return (family === 4 ? this.forwardPolicy : this.forwardPolicy6) === 'DROP';
  }

  async acceptUnmatchedForwarding(family: 4 | 6 = 4): Promise<boolean> {
    const key = family === 4 ? 'forwardPolicy' : 'forwardPolicy6';
    const changed = this[key] !== 'ACCEPT';
    this[key] = 'ACCEPT';
    return changed;
  }

  async forgetConnections(filter: ConnectionFilter): Promise<void> {
    if ((filter.ips?.length ?? 0) + (filter.udpPorts?.length ?? 0) > 0) this.forgotten.push(structuredClone(filter));
  }
}
