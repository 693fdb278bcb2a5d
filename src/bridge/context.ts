/**
 * What every bridge operation works with: the store, the host seam, the firewall, and the
 * host-side netlink handle; plus the translation of records into the firewall's desired state.
 */
import { Rtnl, type RtnlPromises } from '../netlink/route/rtnl.js';
import type { Firewall, FirewallEndpoint, FirewallNetwork, FirewallState } from '../firewall/types.js';
import type { HostSystem } from './host.js';
import { StoreError, type Listing, type Store } from './store.js';
import { addressOf, subnetOf, type EndpointRecord, type NetworkRecord } from './records.js';
import type { FaultHook } from './steps.js';
import { NetworkError } from './errors.js';
import { deleteLinksAsync, findLink } from './links.js';
import { RoutedFirewall } from '../firewall/router.js';

/**
 * How many times a dump the bridge layer needs whole (links, addresses, routes, sockets) is
 * retried when the kernel flags it interrupted. Each retry is a millisecond or two; with dozens
 * of operations changing links at once, three retries were seen all interrupted.
 */
export const DUMP_RETRIES = 10;

/** The shared state of one Networks manager. */
export class BridgeContext {
  private hostRtnl: Rtnl | undefined;
  private readonly bridgeIndexes = new Map<string, number>();
  /** True while a link deletion runs; `queued` holds the ones asked for meanwhile. */
  private deleting = false;
  private queued: { names: string[]; waiters: { resolve: () => void; reject: (e: unknown) => void }[] } | undefined;

  constructor(
    readonly store: Store,
    readonly host: HostSystem,
    readonly firewall: Firewall,
    /** Test seam: called before every step of every operation. */
    readonly faults?: FaultHook,
  ) {}

  /** The host-side Rtnl, opened once. */
  get rtnl(): Rtnl {
    this.hostRtnl ??= new Rtnl(this.host.openHostSocket());
    return this.hostRtnl;
  }

  /** A new host-side socket, for asynchronous requests that must not share one. */
  openHostRtnl(): Rtnl {
    return new Rtnl(this.host.openHostSocket());
  }

  /**
   * Runs `fn` with the promise API on a host socket of its own, closed afterwards. The slow
   * kernel calls (a veth's deletion waits for RCU inside sendmsg, a dump of a big table takes
   * tens of ms) go through it so that the event loop runs on meanwhile; the shared `rtnl` stays
   * synchronous, since a sync call refuses to run while async work is queued on its socket. The
   * socket is opened here, in the host netns, so no namespace switch spans an await.
   */
  async withHostPromises<T>(fn: (rt: RtnlPromises) => Promise<T>): Promise<T> {
    const rtnl = this.openHostRtnl();
    try {
      return await fn(rtnl.promises);
    } finally {
      rtnl.close();
    }
  }

  /**
   * Deletes host links (ENODEV, already gone, is fine) through the promise API. Deletions asked
   * for while one runs are sent together when it ends, as one device group (deleteLinksAsync), so
   * concurrent disconnects share an RCU grace period instead of paying one each (the kernel
   * overlaps separate deletions little: 100 on a socket each took ~3x less time than one after
   * another, as one group ~45x less). A lone deletion goes at once. A failure (other than ENODEV)
   * fails every call of its round; each leaves its record 'removing', which a retry or prune finishes.
   */
  deleteHostLinks(names: readonly string[]): Promise<void> {
    if (names.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      if (this.deleting) {
        this.queued ??= { names: [], waiters: [] };
        this.queued.names.push(...names);
        this.queued.waiters.push({ resolve, reject });
        return;
      }
      this.deleting = true;
      void this.runDeletions({ names: [...names], waiters: [{ resolve, reject }] });
    });
  }

  private async runDeletions(first: NonNullable<BridgeContext['queued']>): Promise<void> {
    for (let round: typeof first | undefined = first; round; round = this.queued, this.queued = undefined) {
      try {
        await this.withHostPromises((rt) => deleteLinksAsync(rt, round!.names));
        for (const w of round.waiters) w.resolve();
      } catch (e) {
        for (const w of round.waiters) w.reject(e);
      }
    }
    this.deleting = false;
  }

  /** The bridge's ifindex (cached; `refresh` looks it up again); EBRIDGEDOWN when it is gone. */
  bridgeIndex(net: NetworkRecord, refresh = false): number {
    let idx = refresh ? undefined : this.bridgeIndexes.get(net.name);
    if (idx === undefined) {
      const link = findLink(this.rtnl, net.bridge);
      if (!link) throw new NetworkError('EBRIDGEDOWN', `the bridge ${net.bridge} of network ${net.name} is missing; tsnetlink network repair re-creates it`);
      idx = link.index;
      this.bridgeIndexes.set(net.name, idx);
    }
    return idx;
  }

  /** Forgets a cached bridge ifindex (the bridge was deleted or re-created). */
  forgetBridge(name: string): void {
    this.bridgeIndexes.delete(name);
  }

  close(): void {
    this.hostRtnl?.close();
    this.hostRtnl = undefined;
  }
}

/** The firewall's view of a network record: its subnet of each family. */
export function fwNetwork(n: NetworkRecord): FirewallNetwork {
  const v4 = subnetOf(n, 4);
  const v6 = subnetOf(n, 6);
  return { name: n.name, bridge: n.bridge, ...(v4 ? { subnet: v4.subnet } : {}), ...(v6 ? { subnet6: v6.subnet } : {}), internal: n.internal, icc: n.icc, gatewayMode: n.gatewayMode };
}

/** The firewall's view of an endpoint record: its address of each family. */
export function fwEndpoint(e: Pick<EndpointRecord, 'id' | 'network' | 'addresses' | 'mappings'>): FirewallEndpoint {
  const v4 = addressOf(e, 4);
  const v6 = addressOf(e, 6);
  return { id: e.id, network: e.network, ...(v4 ? { ip: v4.ip } : {}), ...(v6 ? { ip6: v6.ip } : {}), mappings: e.mappings };
}

/**
 * Refuses to go on when a network record other than `except` is unreadable: the whole firewall
 * is rewritten from the records, and one that cannot be read would lose its network's rules
 * (its published ports, its outbound NAT, its localnet guard) while its bridge and containers
 * stay. Until the record is restored or the network removed (`network rm --force NAME`), what
 * is live for that network stays exactly as it is.
 */
export function assertFirewallRewritable(store: Store, except?: string, listing: Listing<NetworkRecord> = store.listNetworks()): void {
  const bad = listing.corrupt.filter((c) => c.name !== except);
  if (bad.length === 0) return;
  const names = bad.map((c) => c.name).join(', ');
  throw new StoreError(
    'ECORRUPT',
    bad[0]!.path,
    `the record of network ${names} is unreadable (${bad[0]!.error.message}); the firewall is left as it is, since rewriting it from the other records would delete that network's rules. Restore the record, or remove the network with tsnetlink network rm --force ${bad[0]!.name}`,
  );
}

/**
 * The firewall's desired state, read from the records: every network and endpoint that is not
 * being removed. Call it holding the firewall lock exclusive: connect writes its 'creating'
 * record and disconnect its 'removing' mark under that lock (shared), so what is read here is
 * exactly what the rules must hold when the lock is released. An unreadable network record (other than
 * `except`, a network being removed by force) is refused (assertFirewallRewritable); unreadable
 * endpoint records are left out (prune clears them and frees what their tags name).
 */
export function desiredFirewall(store: Store, except?: string): FirewallState {
  // One read of the records serves both the check and the state.
  const listing = store.listNetworks();
  assertFirewallRewritable(store, except, listing);
  const networks = listing.records.filter((n) => n.state !== 'removing');
  const endpoints: FirewallEndpoint[] = [];
  for (const n of networks) {
    for (const e of store.listEndpoints(n.name).records) if (e.state !== 'removing' && e.mappings.length > 0) endpoints.push(fwEndpoint(e));
  }
  return { networks: networks.map(fwNetwork), endpoints };
}

/** Runs an incremental firewall change and answers drift with the full desired state (hold the firewall lock exclusive). */
export async function withDriftRepair(ctx: BridgeContext, change: () => Promise<void>): Promise<void> {
  try {
    await change();
  } catch (e) {
    if ((e as { code?: string }).code !== 'EFWDRIFT') throw e;
    await ctx.firewall.apply(desiredFirewall(ctx.store));
  }
}

/**
 * Changes the rules of endpoints of `network`: `record` (the record writes that must be seen
 * together with the rules: a connect's intent, a disconnect's 'removing' mark), then `change`
 * (addEndpoints or removeEndpoints), under the firewall lock; drift is answered with the full
 * desired state. Where the network's backend lets endpoint changes overlap, the lock is taken
 * shared, so that the connects and disconnects of a host change their rules side by side while a
 * rebuild (which takes it exclusive) still sees every endpoint with its rules or without; the
 * rebuild that drift calls for then waits for the exclusive lock.
 */
export async function changeEndpointRules(ctx: BridgeContext, network: string, record: () => void, change: () => Promise<void>): Promise<void> {
  const shared = ctx.firewall instanceof RoutedFirewall ? ctx.firewall.parallelFor(network) : ctx.firewall.parallelEndpointChanges === true;
  let drifted = false;
  await ctx.store.withFirewallLock(
    async () => {
      record();
      try {
        await change();
      } catch (e) {
        if ((e as { code?: string }).code !== 'EFWDRIFT') throw e;
        if (shared) drifted = true;
        else await ctx.firewall.apply(desiredFirewall(ctx.store));
      }
    },
    { shared },
  );
  if (drifted) await ctx.store.withFirewallLock(() => ctx.firewall.apply(desiredFirewall(ctx.store)));
}
