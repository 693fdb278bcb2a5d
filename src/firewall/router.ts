/**
 * Which firewall backend serves which network. A network records the backend it was created
 * with; all networks of a host share one (isolation between networks is a rule of one ruleset:
 * a routed network's drops of other bridges live in its backend), so a create on another
 * backend is refused and `repair` with a backend chosen migrates every network to it. The
 * router below implements the Firewall interface over the backends the records name, so the
 * bridge code keeps calling one firewall.
 */
import type { ConnectionFilter, Firewall, FirewallDifference, FirewallEndpoint, FirewallNetwork, FirewallState, PortFilter } from './types.js';

/** A backend's name as records and options give it (the registry's rows: src/firewall/registry.ts). */
type BackendName = string;

/** Routes each call to the backend of the networks it concerns. */
export class RoutedFirewall implements Firewall {
  private readonly instances = new Map<BackendName, Firewall>();
  private probing = false;

  constructor(
    /** Every backend this router may route to, in the order a mixed host prefers them (the registry's rows). */
    private readonly names: readonly BackendName[],
    /** The backend chosen by an option or $TSNETLINK_FIREWALL: new networks get it, repair migrates to it. */
    readonly explicit: BackendName | undefined,
    private readonly make: (b: BackendName) => Firewall,
    /** The backend a network's record names (undefined: no record). */
    private readonly backendOf: (network: string) => BackendName | undefined,
    /** The backends any record names. */
    private readonly inUse: () => BackendName[],
    /** The bridge-port filter, kept in step with the networks (present while one has IPv6). */
    private readonly portFilter?: PortFilter,
    /** The backend a host without networks gets when none is chosen (probed once, by the registry). */
    private readonly fallback: () => BackendName = () => names[0] as BackendName,
  ) {}

  /** The port filter is wanted while some network has an IPv6 subnet (only IPv6 containers send listener reports). */
  private syncPortFilter(networks: readonly FirewallNetwork[]): void {
    this.portFilter?.sync(wantsPortFilter(networks));
  }

  /**
   * The backend new networks get: the one chosen, else the one the host's networks use (during
   * an interrupted migration, the first in the registry's order), else the host's default.
   */
  get selected(): BackendName {
    if (this.explicit) return this.explicit;
    const used = this.inUse();
    if (used.length === 0) return this.fallback();
    return used.length === 1 ? (used[0] as BackendName) : (this.names.find((b) => used.includes(b)) ?? (used[0] as BackendName));
  }

  get backend(): string {
    return this.get(this.selected).backend;
  }

  /** The backend instance of a name (made once). */
  get(b: BackendName): Firewall {
    let f = this.instances.get(b);
    if (!f) this.instances.set(b, (f = this.make(b)));
    return f;
  }

  private of(network: string): BackendName {
    return this.backendOf(network) ?? this.selected;
  }

  /** Backends that may hold rules: those the records name and the selected one; while probing, every available one. */
  private touched(extra: readonly BackendName[] = []): BackendName[] {
    const selected = this.selected;
    const set = new Set<BackendName>([...this.inUse(), selected, ...extra]);
    if (this.probing) for (const b of this.names) set.add(b);
    // The selected backend first: during a migration the new rules are in before the old go.
    return [selected, ...this.names.filter((b) => b !== selected && set.has(b))];
  }

  /**
   * Runs `fn` (a prune, repair or check) with every backend this host can run consulted, so
   * that rules left on a backend no record names any more (an interrupted migration) are found.
   */
  async probingAll<T>(fn: () => Promise<T>): Promise<T> {
    this.probing = true;
    try {
      return await fn();
    } finally {
      this.probing = false;
      // A backend only looked at holds nothing open afterwards.
      const used = new Set([...this.inUse(), this.selected]);
      for (const [b, f] of this.instances) if (!used.has(b)) f.close?.();
    }
  }

  private async available(b: BackendName): Promise<boolean> {
    if (!this.probing || this.inUse().includes(b) || b === this.selected) return true;
    try {
      await this.get(b).ensureAvailable();
      return true;
    } catch {
      return false;
    }
  }

  private split<T extends { network: string } | FirewallNetwork>(items: readonly T[], key: (x: T) => string): Map<BackendName, T[]> {
    const by = new Map<BackendName, T[]>();
    for (const x of items) {
      const b = this.of(key(x));
      by.set(b, [...(by.get(b) ?? []), x]);
    }
    return by;
  }

  private stateFor(b: BackendName, state: FirewallState): FirewallState {
    const networks = state.networks.filter((n) => this.of(n.name) === b);
    const names = new Set(networks.map((n) => n.name));
    return { networks, endpoints: state.endpoints.filter((e) => names.has(e.network)) };
  }

  async ensureAvailable(): Promise<void> {
    await this.get(this.selected).ensureAvailable();
  }

  async setNetworks(networks: readonly FirewallNetwork[]): Promise<void> {
    const by = this.split(networks, (n) => n.name);
    for (const b of this.touched([...by.keys()])) await this.get(b).setNetworks(by.get(b) ?? []);
    this.syncPortFilter(networks);
  }

  /** Whether the backend of `network` lets endpoint changes overlap (Firewall.parallelEndpointChanges). */
  parallelFor(network: string): boolean {
    return this.get(this.of(network)).parallelEndpointChanges === true;
  }

  async addEndpoints(network: FirewallNetwork, endpoints: readonly FirewallEndpoint[]): Promise<void> {
    await this.get(this.of(network.name)).addEndpoints(network, endpoints);
  }

  async removeEndpoints(endpoints: readonly FirewallEndpoint[]): Promise<void> {
    for (const [b, eps] of this.split(endpoints, (e) => e.network)) await this.get(b).removeEndpoints(eps);
  }

  async apply(state: FirewallState): Promise<void> {
    for (const b of this.touched()) {
      if (!(await this.available(b))) continue;
      const part = this.stateFor(b, state);
      // A backend no network uses is only cleaned, and only when it holds something of ours.
      if (part.networks.length === 0 && b !== this.selected && (await this.get(b).diff(part)).length === 0) continue;
      await this.get(b).apply(part);
    }
    this.syncPortFilter(state.networks);
  }

  async diff(state: FirewallState): Promise<FirewallDifference[]> {
    const out: FirewallDifference[] = [];
    const bs = this.touched();
    for (const b of bs) {
      if (!(await this.available(b))) continue;
      // Only what is found on another backend than the selected one says where it is.
      for (const d of await this.get(b).diff(this.stateFor(b, state))) out.push(b !== this.selected ? { kind: d.kind, what: `${b}: ${d.what}` } : d);
    }
    if (this.portFilter) out.push(...this.portFilter.diff(wantsPortFilter(state.networks)));
    return out;
  }

  async forgetConnections(filter: ConnectionFilter): Promise<void> {
    await this.get(this.selected).forgetConnections(filter);
  }

  async dropUnmatchedForwarding(family: 4 | 6 = 4): Promise<boolean> {
    return this.get(this.selected).dropUnmatchedForwarding(family);
  }

  async forwardingDropped(family: 4 | 6 = 4): Promise<boolean> {
    return this.get(this.selected).forwardingDropped(family);
  }

  async acceptUnmatchedForwarding(family: 4 | 6 = 4): Promise<boolean> {
    return this.get(this.selected).acceptUnmatchedForwarding(family);
  }

  /** Closes every backend made so far. */
  close(): void {
    for (const f of this.instances.values()) f.close?.();
    this.portFilter?.close();
  }
}

/** Whether the bridge-port filter should exist for these networks: some has an IPv6 subnet. */
function wantsPortFilter(networks: readonly FirewallNetwork[]): boolean {
  return networks.some((n) => n.subnet6 !== undefined);
}
