/**
 * Bridge networks for containers: `mydocker network create` / `Connect`, done so that they can
 * be trusted: isolated by default, crash-safe, race-free.
 *
 * connect() creates the veth with its peer directly in the container's netns under its final
 * name, enslaved, in one RTM_NEWLINK (no create-then-move: ~29 ms of RCU saved), then configures
 * the container side in one pipelined batch. Port mappings go through the Firewall (one
 * nf_tables transaction by default, or one iptables-restore run); without them connect does no
 * firewall work. A failure
 * rolls back; a crash is settled by the next operation that meets its leftovers, or by prune.
 */
import { checkEndpointId, checkNetworkName } from '../names.js';
import type { Firewall } from '../firewall/types.js';
import type { RoutedFirewall } from '../firewall/router.js';
import { chosenBackend, hostFirewall as registryFirewall, type BackendName, type BackendOptions } from '../firewall/registry.js';
import { Store } from './store.js';
import { NetworkError } from './errors.js';
import { Ipam, IpamError } from './ipam.js';
import { BridgeContext } from './context.js';
import { KernelHost, netnsKey, type ContainerRef, type HostSystem } from './host.js';
import { connectMany, type ConnectItem, type ConnectOptions } from './connect.js';
import { createNetwork, removeNetwork, undoCreate, type CreateNetworkOptions, type CreateResult } from './lifecycle.js';
import { checkConsistency, reconcile, type ReconcileReport } from './reconcile.js';
import { teardownEndpoints } from './teardown.js';
import { subnetsOf, type EndpointRecord, type NetworkRecord } from './records.js';
import { checkEndpoint, type ContainerSide } from './health.js';
import type { FaultHook } from './steps.js';
import { NetnsHandle } from '../ns/netns.js';
import { turnDue, yieldTurn } from '../sys/turn.js';
import type { Rtnl } from '../netlink/route/rtnl.js';

export type { EndpointRecord, NetworkRecord, ConnectOptions, ContainerRef, CreateNetworkOptions, CreateResult, ReconcileReport };

/** Options for a Networks manager. */
export interface NetworksOptions {
  /** Runtime state directory (default /run/tsnetlink). */
  stateDir?: string;
  /** Which iptables to run (default iptables-restore on $PATH), for networks on the iptables backend. */
  iptables?: BackendOptions['iptables'];
  /**
   * The firewall backend: 'iptables' (iptables-restore) or 'nftables' (native nf_tables over
   * netlink, no process), or an instance that then serves every network (tests). Default:
   * $TSNETLINK_FIREWALL, else the backend the host's networks were created with, else native
   * nf_tables where this process can use it, else iptables (src/firewall/registry.ts).
   * A network keeps the backend it was created with; repair with a backend chosen migrates
   * every network to it.
   */
  firewall?: Firewall | BackendName;
  /** The machine (default: the real kernel); tests pass a fake. */
  host?: HostSystem;
  /** How long to wait for another process's lock (default 10 s). */
  lockTimeoutMs?: number;
  /** Test seam: called before every step of every operation; throwing Abandon simulates a crash. */
  faults?: FaultHook;
}

/** A network with its endpoints (`tsnetlink network inspect`). */
export interface NetworkInfo extends NetworkRecord {
  endpoints: EndpointRecord[];
}

/** Creates, connects and removes bridge networks; one instance per process is enough. */
export class Networks {
  readonly store: Store;
  readonly firewall: Firewall;
  private readonly ctx: BridgeContext;
  /** Per-step milliseconds of the last connect(), for diagnostics and the bench. */
  lastConnectTimings: readonly { step: string; ms: number; kernelMs?: number }[] = [];

  constructor(opts: NetworksOptions = {}) {
    this.store = new Store({ ...(opts.stateDir !== undefined ? { root: opts.stateDir } : {}), ...(opts.lockTimeoutMs !== undefined ? { lockTimeoutMs: opts.lockTimeoutMs } : {}) });
    this.firewall = typeof opts.firewall === 'object' ? opts.firewall : hostFirewall(this.store, opts);
    this.ctx = new BridgeContext(this.store, opts.host ?? new KernelHost(), this.firewall, opts.faults);
  }

  /** The host-side netlink handle these networks use (opened on first use). */
  get host(): Rtnl {
    return this.ctx.rtnl;
  }

  /** Closes the host socket. */
  close(): void {
    this.ctx.close();
    this.firewall.close?.();
  }

  /** Active networks, by name; unreadable records are skipped with a warning (see repair/prune). `tsnetlink network ls` */
  list(): NetworkRecord[] {
    this.store.verify();
    const l = this.store.listNetworks();
    for (const c of l.corrupt) process.emitWarning(`tsnetlink: skipping network ${c.name}: ${c.error.message}`, 'TsnetlinkWarning');
    return l.records.filter((n) => n.state === 'active');
  }

  /** Networks whose record cannot be read: their links and rules are kept as they are until repaired or removed with force. */
  unreadable(): { name: string; path: string; reason: string }[] {
    this.store.verify();
    return this.store.listNetworks().corrupt.map((c) => ({ name: c.name, path: c.path, reason: c.error.message }));
  }

  /** A network and its endpoints. `tsnetlink network inspect NAME` */
  inspect(name: string): NetworkInfo {
    this.store.verify();
    const net = this.store.getNetwork(checkNetworkName(name, 'network'));
    if (!net) throw new NetworkError('ENONET', `no such network: ${name}`);
    return { ...net, endpoints: this.store.listEndpoints(name).records };
  }

  /**
   * Creates a bridge network: the bridge (fixed MAC, tagged), its gateway address, up; isolation,
   * MASQUERADE and forwarding rules; then ip_forward. `tsnetlink network create --driver bridge --subnet CIDR NAME`
   */
  async create(opts: CreateNetworkOptions): Promise<NetworkRecord> {
    return (await this.createNetwork(opts)).record;
  }

  /** Like create(), also saying which host-wide settings it changed (ip_forward, the FORWARD policy). */
  async createNetwork(opts: CreateNetworkOptions): Promise<CreateResult> {
    return createNetwork(this.ctx, opts);
  }

  /**
   * Undoes what createNetwork() returned when the caller's next step failed: the network (unless
   * something was connected to it since) and the host-wide settings it changed that no other
   * network needs. Resolves false when the network stays.
   */
  async undoCreate(created: CreateResult): Promise<boolean> {
    return undoCreate(this.ctx, created);
  }

  /** Removes a network (refused while endpoints are attached unless `force`). `tsnetlink network rm NAME` */
  async remove(name: string, opts: { force?: boolean } = {}): Promise<void> {
    await removeNetwork(this.ctx, name, opts);
  }

  /**
   * Connects a container to a network: IP, veth (peer in place, enslaved, up), address, lo up,
   * default route, port mappings; rolled back on any failure. `mydocker run -net NAME -p H:C` / CNI bridge ADD
   */
  async connect(network: string, container: ContainerRef, opts: ConnectOptions = {}): Promise<EndpointRecord> {
    const [rec] = await this.connectMany(network, [{ container, opts }]);
    return rec!;
  }

  /**
   * Connects many containers at once: one sendto for every veth, one firewall change for every
   * mapping. All or nothing. When a host port or the subnet is taken by endpoints whose
   * containers are gone, those are pruned and the connect is tried once more.
   */
  async connectMany(network: string, items: readonly ConnectItem[]): Promise<EndpointRecord[]> {
    if (items.length === 0) return [];
    const attempt = (): Promise<EndpointRecord[]> => connectMany(this.ctx, network, items, (t) => (this.lastConnectTimings = t));
    try {
      return await attempt();
    } catch (e) {
      const stale = e instanceof NetworkError && e.code === 'EPORTINUSE' && e.holder ? e.holder.network : e instanceof IpamError ? network : undefined;
      if (stale === undefined || !this.store.networkNames().includes(stale)) throw e;
      const report = await reconcile(this.ctx, { repair: false, network: stale });
      if (report.pruned.length === 0 && report.actions.length === 0) throw e;
      return await attempt();
    }
  }

  /**
   * Disconnects an endpoint: deletes its veth, rules, IP and record. Idempotent, and works when
   * the container's netns is already gone (the veth went with it). CNI bridge DEL
   */
  async disconnect(network: string, endpointId: string): Promise<boolean> {
    return (await this.disconnectMany(network, [endpointId])) === 1;
  }

  /** Disconnects several endpoints: one sendto deletes every veth, one firewall change every rule. Returns how many existed. */
  async disconnectMany(network: string, endpointIds: readonly string[]): Promise<number> {
    checkNetworkName(network, 'network');
    endpointIds.forEach((id) => checkEndpointId(id, 'endpoint'));
    if (!this.store.hasNetwork(network)) throw new NetworkError('ENONET', `no such network: ${network}`);
    if (turnDue()) await yieldTurn();
    // Shared, as connects hold it: disconnects and connects of other endpoints go on meanwhile;
    // the endpoints' own locks keep a second operation on these endpoints out.
    const count = await this.store.withNetworkLock(network, async () => {
      const net = this.store.getNetwork(network);
      // Removed while we waited for its lock: taking the lock re-made the directory (cleared below).
      if (!net) return undefined;
      return this.store.withEndpointLocks(network, endpointIds, async () => {
        if (turnDue()) await yieldTurn();
        const recs = endpointIds.map((id) => this.store.getEndpoint(network, id)).filter((e): e is EndpointRecord => e !== undefined);
        const unique = recs.filter((r, i) => recs.findIndex((o) => o.id === r.id) === i);
        await teardownEndpoints(this.ctx, net, unique.filter((r) => r.state === 'active'));
        // A record left half-way by a killed operation: its veth may not be ours under that name.
        await teardownEndpoints(this.ctx, net, unique.filter((r) => r.state !== 'active'), { verifyTag: true });
        return unique.length;
      });
    }, { shared: true });
    if (count !== undefined) return count;
    await this.store.clearNetworkDirIfGone(network);
    throw new NetworkError('ENONET', `no such network: ${network}`);
  }

  /**
   * Frees what is dead: endpoints whose container is gone, operations that were killed half-way,
   * and kernel objects, addresses, host ports and rules that no record owns. `tsnetlink network prune [NAME]`
   */
  async prune(network?: string): Promise<string[]> {
    return (await this.pruneReport(network)).pruned;
  }

  /** Like prune(), with every action in words. */
  async pruneReport(network?: string): Promise<ReconcileReport> {
    if (network !== undefined) checkNetworkName(network, 'network');
    return reconcile(this.ctx, { repair: false, ...(network !== undefined ? { network } : {}) });
  }

  /**
   * prune, then re-creates everything the records call for: bridges (fixed MAC, gateway address,
   * up, sysctls), host veths enslaved and up, IP forwarding and every rule. Returns what it
   * changed; nothing when all was in place. `tsnetlink network repair`
   */
  async repair(): Promise<ReconcileReport> {
    return reconcile(this.ctx, { repair: true });
  }

  /** Every disagreement between records, kernel and firewall; [] when they agree. `tsnetlink network check` */
  async check(): Promise<string[]> {
    return checkConsistency(this.ctx);
  }

  /**
   * Every way one endpoint differs from its record, its network's bridge and the firewall, in
   * words ([] when it works); with `container`, its interface in the container too. The one
   * endpoint check `check()` runs on every endpoint, for one (CNI CHECK). Changes nothing.
   */
  async checkEndpoint(network: string, id: string, container?: ContainerSide): Promise<string[]> {
    checkNetworkName(network, 'network');
    checkEndpointId(id);
    return checkEndpoint(this.ctx, network, id, container);
  }

  /** Per subnet of a network, how many addresses are handed out of how many (read under the network's lock). */
  async addressUsage(network: string): Promise<{ subnet: string; capacity: bigint; used: number }[]> {
    checkNetworkName(network, 'network');
    const net = this.store.getNetwork(network);
    if (!net) throw new NetworkError('ENONET', `no network ${network}`);
    return this.store.withNetworkLock(network, () =>
      subnetsOf(net).map((sub) => {
        const ipam = new Ipam(this.store, network, sub);
        return { subnet: sub.subnet, capacity: ipam.capacity, used: ipam.list().length };
      }),
    );
  }

  /** Finds the endpoint of a container (by netns) on a network, from its marker: O(1). */
  endpointOf(network: string, container: ContainerRef): EndpointRecord | undefined {
    checkNetworkName(network, 'network');
    const owned = !(container instanceof NetnsHandle);
    const ns = this.ctx.host.openContainer(container);
    try {
      const id = this.store.markerOwner(network, netnsKey(ns));
      return id ? this.store.getEndpoint(network, id) : undefined;
    } finally {
      if (owned) ns.close();
    }
  }
}

/** The backends of a host's networks, routed by what each network's record names. */
function hostFirewall(store: Store, opts: NetworksOptions): RoutedFirewall {
  const backendOf = (name: string): BackendName | undefined => {
    try {
      return store.getNetwork(name)?.firewall;
    } catch {
      return undefined;
    }
  };
  const inUse = (): BackendName[] => [...new Set(store.listNetworks().records.map((n) => n.firewall))];
  const explicit = chosenBackend(typeof opts.firewall === 'string' ? opts.firewall : undefined);
  return registryFirewall({ backendOf, inUse }, explicit, opts.iptables ? { iptables: opts.iptables } : {});
}
