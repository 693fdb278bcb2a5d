/**
 * The native nf_tables implementation of the Firewall interface: every change is one
 * nf_tables transaction sent over NETLINK_NETFILTER (no process started), atomic across all its
 * objects; a published port is one map element, so a connect or disconnect adds or deletes
 * elements and rewrites no chain. Incremental changes first check that the rules they rely on
 * are in place and are guarded by the ruleset generation they read; drift is reported, never
 * papered over, and apply() rebuilds the whole table from the desired state in one transaction.
 * Both families live in the one table: the desired state is split into its IPv4 and IPv6 views
 * by iptables/family.ts (as the iptables backend splits it between iptables-restore and
 * ip6tables-restore), and each view gets its own maps and NAT rules.
 */
import { checkEndpointId } from '../../names.js';
import { ValidationError } from '../../errors.js';
import { forgetConnectionsOrWarn } from '../conntrack.js';
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
import { checkEndpoint, checkMapping, checkNetworks, type Ep, type Net, type RuleFamily } from '../spec.js';
import { endpointFor, mappingsIn, networkFor } from '../family.js';
import type { Request } from '../../netlink/core/message.js';
import { Nft } from '../../netlink/nftables/nft.js';
import { NftTransactionError } from '../../netlink/nftables/transaction.js';
import * as O from '../../netlink/nftables/objects.js';
import { compare, readDependencies, readForward, readLive, ruleText, type LiveForward, type LiveRuleset } from './live.js';
import {
  CHAIN,
  FAMILIES,
  FAMILY,
  IPT,
  TABLE,
  TABLE_COMMENT,
  TAG,
  chains,
  desiredNft,
  describeElement,
  elementsFor,
  forwardAcceptTag,
  forwardAccepts,
  globalRules,
  joinViews,
  mappingKey,
  networkRules,
  networkViews,
  rulesFor,
  sets,
  type DesiredNft,
  type NetViews,
} from './ruleset.js';
import type { NftRule } from '../../netlink/nftables/objects.js';

/** Options of the native backend. */
export interface NftablesFirewallOptions {
  /** Opens the nf_tables socket (tests pass a fake kernel); default: a socket in the current netns. */
  open?: () => Nft;
}

/** How often a transaction is rebuilt when the ruleset changed under it (ERESTART). */
const RETRIES = 5;

/** Firewall backed by nf_tables over netlink: table `inet tsnetlink` (both families), plus our accepts in iptables-nft's `ip filter` and `ip6 filter` FORWARD chains. */
export class NftablesFirewall implements Firewall {
  readonly backend = 'nftables';
  /** Map elements of different endpoints are independent, and every commit is guarded by the generation it was computed from (ERESTART, retried). */
  readonly parallelEndpointChanges = true;
  private readonly open: () => Nft;

  constructor(opts: NftablesFirewallOptions = {}) {
    this.open = opts.open ?? (() => Nft.open());
  }

  private socket: Nft | undefined;
  /** The generation at which the rules the map elements rely on were last seen complete, and for which networks. */
  private checked: { gen: number; networks: Set<string> } | undefined;

  /**
   * Runs `fn` on this firewall's socket, opened once and kept: closing an nfnetlink socket waits
   * for an RCU grace period in the kernel (several ms, more than a whole mapping change), so a
   * socket per call would make every change pay it. After an error the socket is replaced, since
   * replies of a failed exchange may still be queued on it.
   */
  private with<T>(fn: (nft: Nft) => T): T {
    const nft = (this.socket ??= this.open());
    try {
      return fn(nft);
    } catch (e) {
      this.socket = undefined;
      nft.close();
      throw e;
    }
  }

  /** Closes the kept socket (it is also closed with the process). */
  close(): void {
    this.socket?.close();
    this.socket = undefined;
  }

  /** Runs read-then-commit, again when the ruleset changed in between (ERESTART) or replies were lost. */
  private transact(what: string, build: (nft: Nft) => { reqs: Request[]; genId: number } | undefined): void {
    this.with((nft) => {
      for (let attempt = 0; ; attempt++) {
        const t = build(nft);
        if (!t || t.reqs.length === 0) return;
        try {
          nft.commit(t.reqs, { genId: t.genId });
          return;
        } catch (e) {
          const retry = e instanceof NftTransactionError && (e.code === 'ERESTART' || e.committed === undefined);
          if (!retry || attempt >= RETRIES) throw e instanceof NftTransactionError ? Object.assign(e, { message: `${what}: ${e.message}` }) : e;
        }
      }
    });
  }

  /** Refuses to start when this kernel (or this process) cannot use nf_tables. */
  async ensureAvailable(): Promise<void> {
    try {
      // A socket of its own, closed again: a backend that is only probed keeps nothing open.
      const nft = this.open();
      try {
        nft.genId();
      } finally {
        nft.close();
      }
    } catch (e) {
      throw new FirewallUnavailableError(`nf_tables is not usable here (${(e as Error).message}): the kernel needs nf_tables (CONFIG_NF_TABLES, modprobe nf_tables) and the process CAP_NET_ADMIN; or choose the iptables backend`, { cause: e });
    }
  }

  /** Network rules for exactly `networks` (chains flushed and refilled in one transaction); map elements stay. */
  async setNetworks(networks: readonly FirewallNetwork[]): Promise<void> {
    const nets = networkViews(networks);
    if (joinViews(nets).length === 0) return this.apply({ networks: [], endpoints: [] });
    this.transact('setNetworks', (nft) => {
      const genId = nft.genId();
      const live = readLive(nft, { elements: false });
      const reqs: Request[] = [];
      if (!live.table) reqs.push(...skeleton());
      else {
        // Re-declaring what exists is a no-op; a chain or map that went missing comes back.
        for (const s of sets()) if (!live.sets.some((x) => x.name === s.name)) reqs.push(O.addSetRequest(s));
        for (const c of chains()) reqs.push(live.chains.some((x) => x.name === c.name) ? O.flushChainRequest(FAMILY, TABLE, c.name) : O.addChainRequest(c));
      }
      for (const rules of rulesFor(nets).values()) for (const r of rules) reqs.push(O.addRuleRequest(r));
      reqs.push(...forwardSync(nets, live.forward));
      return { reqs, genId };
    });
  }

  /** Adds the endpoints' map elements (one per mapping and family it is published on) in one transaction, after checking every rule they rely on. */
  async addEndpoints(network: FirewallNetwork, endpoints: readonly FirewallEndpoint[]): Promise<void> {
    const views: NetViews = {};
    const eps: Record<RuleFamily, Ep[]> = { 4: [], 6: [] };
    for (const family of FAMILIES) {
      const spec = networkFor(network, family);
      if (!spec) continue;
      const [view] = checkNetworks([spec], family);
      views[family] = view as Net;
      endpoints.forEach((e, i) => {
        const v = endpointFor(e, spec, family);
        if (v) eps[family].push(checkEndpoint(v, endpoints.length === 1 ? 'endpoint' : `endpoints[${i}]`, family));
      });
    }
    if (eps[4].length + eps[6].length === 0) return;
    const net = (views[4] ?? views[6]) as Net;
    try {
      let committedOn = -1;
      // When this firewall's own last commit left the generation at which it checked the rules,
      // the batch is guarded by that generation without asking for it: if anyone committed since,
      // the kernel refuses it with ERESTART and the retry reads the generation and checks again.
      let guess = this.checked?.networks.has(net.name) ? this.checked.gen : undefined;
      this.transact('addEndpoints', (nft) => {
        const genId = guess ?? nft.genId();
        guess = undefined;
        // The ruleset generation changes with every commit by anyone: at the generation this
        // firewall's own last commit produced, the rules it checked then are still exactly there.
        if (!(this.checked?.gen === genId && this.checked.networks.has(net.name))) {
          const problem = dependencyProblem(readDependencies(nft, FAMILIES.filter((f) => views[f] !== undefined)), views);
          if (problem) throw new FirewallDriftError(`the rules a port mapping of ${net.name} relies on are not in place (${problem}); the ruleset must be rebuilt`);
          if (this.checked?.gen === genId) this.checked.networks.add(net.name);
          else this.checked = { gen: genId, networks: new Set([net.name]) };
        }
        const reqs: Request[] = [];
        for (const [set, elems] of elementsFor(eps)) if (elems.length > 0) reqs.push(...O.addElementsRequests(FAMILY, TABLE, set, elems, { exclusive: true }));
        committedOn = genId;
        return { reqs, genId };
      });
      // A commit guarded by generation G succeeded only if nobody committed in between: now G + 1.
      if (this.checked?.gen === committedOn) this.checked.gen = (committedOn + 1) >>> 0;
    } catch (e) {
      this.checked = undefined;
      throw asDrift(e);
    }
    // UDP "connections" never end while packets keep coming: flows seen before the mapping
    // existed would keep going to their old destination without this flush.
    const udp = [...eps[4], ...eps[6]].flatMap((e) => e.mappings.filter((m) => m.protocol === 'udp'));
    await this.forgetConnections({ udpPorts: udp.map((m) => ({ port: m.hostPort, ...(m.hostIp ? { hostIp: m.hostIp } : {}) })) });
  }

  /** Deletes the endpoints' map elements in one transaction; FirewallDriftError when one is not there. */
  async removeEndpoints(endpoints: readonly FirewallEndpoint[]): Promise<void> {
    const keys = new Map<string, Buffer[]>(sets().map((s) => [s.name, []]));
    for (const [i, e] of endpoints.entries()) {
      checkEndpointId(e.id, `endpoints[${i}].id`);
      // The elements an endpoint has are those addEndpoints made: a mapping in each family the
      // endpoint has an address of and the mapping is published on.
      for (const family of FAMILIES) {
        for (const [j, m] of mappingsIn(e, family).entries()) {
          const { set, key } = mappingKey(checkMapping(m, `endpoints[${i}].mappings[${j}]`, family), family);
          keys.get(set)?.push(key);
        }
      }
    }
    const reqs = [...keys].flatMap(([set, ks]) => (ks.length > 0 ? O.delElementsRequests(FAMILY, TABLE, set, ks) : []));
    if (reqs.length === 0) return;
    try {
      this.with((nft) => {
        // Removing elements leaves every rule as it was: the check stays good at the next
        // generation, provided nobody committed in between, which the guard makes the kernel say.
        const gen = this.checked?.gen;
        if (gen !== undefined) {
          try {
            nft.commit(reqs, { genId: gen });
            if (this.checked?.gen === gen) this.checked.gen = (gen + 1) >>> 0;
            return;
          } catch (e) {
            if (!(e instanceof NftTransactionError && e.code === 'ERESTART')) throw e;
            this.checked = undefined;
          }
        }
        nft.commit(reqs);
      });
    } catch (e) {
      this.checked = undefined;
      throw asDrift(e);
    }
  }

  /** Rebuilds our table from `state` in one transaction (deleted and made again), and our iptables and ip6tables FORWARD accepts. */
  async apply(state: FirewallState): Promise<void> {
    const { networks: nets, endpoints: eps } = desiredNft(state);
    this.transact('apply', (nft) => {
      const genId = nft.genId();
      const live = readLive(nft, { elements: false });
      const reqs: Request[] = [];
      if (live.table) reqs.push(O.delTableRequest(FAMILY, TABLE));
      if (joinViews(nets).length > 0) {
        reqs.push(...skeleton());
        for (const rules of rulesFor(nets).values()) for (const r of rules) reqs.push(O.addRuleRequest(r));
        for (const [set, elems] of elementsFor(eps)) if (elems.length > 0) reqs.push(...O.addElementsRequests(FAMILY, TABLE, set, elems));
      }
      reqs.push(...forwardSync(nets, live.forward));
      return { reqs, genId };
    });
  }

  /** How the live table (and our iptables and ip6tables FORWARD accepts) differ from `state`. */
  async diff(state: FirewallState): Promise<FirewallDifference[]> {
    const { networks: nets, endpoints: eps } = desiredNft(state);
    const live = this.with((nft) => readLive(nft, { elements: true }));
    return compare(live, { rules: rulesFor(nets), elements: elementsFor(eps), forward: { 4: forwardAccepts(nets[4], 4), 6: forwardAccepts(nets[6], 6) }, any: joinViews(nets).length > 0 }, describeElement);
  }

  /** Deletes the matching conntrack entries over ctnetlink; warns, never throws. */
  async forgetConnections(filter: ConnectionFilter): Promise<void> {
    await forgetConnectionsOrWarn(filter);
  }

  /** Whether iptables-nft's FORWARD chain of `family` has policy drop. `nft list chain ip filter FORWARD` */
  async forwardingDropped(family: RuleFamily = 4): Promise<boolean> {
    if (family !== 4 && family !== 6) throw new ValidationError('family', `must be 4 or 6, got ${JSON.stringify(family)}`);
    return this.with((nft) => readForward(nft, family)?.chain.policy === 'drop');
  }

  /**
   * `iptables -P FORWARD DROP` (`ip6tables -P FORWARD DROP` for `family` 6), written natively
   * into iptables-nft's FORWARD chain of that family (made, as iptables-nft makes it, when it
   * does not exist): the same host-wide guard the iptables backend sets, which an accept in our
   * own table could not provide. Resolves true when the policy changed.
   */
  async dropUnmatchedForwarding(family: RuleFamily = 4): Promise<boolean> {
    return this.setForwardPolicy(family, 'drop');
  }

  /** The policy of iptables-nft's FORWARD chain of `family` back to accept, when it is drop. */
  async acceptUnmatchedForwarding(family: RuleFamily = 4): Promise<boolean> {
    return this.setForwardPolicy(family, 'accept');
  }

  /**
   * Sets the policy of iptables-nft's FORWARD chain of `family`; the chain is made for a drop
   * when missing, as iptables-nft makes it (a missing chain already accepts). True when it changed.
   */
  private setForwardPolicy(family: RuleFamily, policy: 'accept' | 'drop'): boolean {
    if (family !== 4 && family !== 6) throw new ValidationError('family', `must be 4 or 6, got ${JSON.stringify(family)}`);
    const t = IPT[family];
    let changed = false;
    this.transact(policy === 'drop' ? 'dropUnmatchedForwarding' : 'acceptUnmatchedForwarding', (nft) => {
      const genId = nft.genId();
      const fwd = readForward(nft, family);
      if ((fwd?.chain.policy ?? 'accept') === policy) return undefined;
      changed = true;
      return { genId, reqs: fwd ? [O.setChainPolicyRequest(t.family, t.table, t.chain, policy)] : iptForwardChain(family, policy) };
    });
    return changed;
  }
}

/** Table, maps and chains, empty. */
function skeleton(): Request[] {
  return [O.addTableRequest({ family: FAMILY, name: TABLE, comment: TABLE_COMMENT }), ...sets().map(O.addSetRequest), ...chains().map(O.addChainRequest)];
}

/** iptables-nft's `ip filter` (`ip6 filter`) table with its FORWARD chain, as iptables-nft creates them. */
function iptForwardChain(family: RuleFamily, policy: 'accept' | 'drop'): Request[] {
  const t = IPT[family];
  return [O.addTableRequest({ family: t.family, name: t.table }), O.addChainRequest({ family: t.family, table: t.table, name: t.chain, hook: { hook: 'forward', priority: 0 }, type: 'filter', policy })];
}

/** Our accepts in both families' iptables FORWARD chains brought to exactly the networks of each family. */
function forwardSync(nets: DesiredNft['networks'], fwd: LiveRuleset['forward']): Request[] {
  return FAMILIES.flatMap((family) => forwardSyncFamily(family, nets[family], fwd[family]));
}

/**
 * Brings our accepts in `family`'s iptables FORWARD chain to exactly `nets` (appended after any
 * foreign rule, never inserted before one). The chain is made when missing, so that a FORWARD
 * DROP policy set later (`iptables -P FORWARD DROP`, `ip6tables -P FORWARD DROP`) still lets our
 * traffic through; when the last network of the family goes, a chain left empty with policy
 * accept goes too, with its table if that is empty.
 */
function forwardSyncFamily(family: RuleFamily, nets: readonly Net[], fwd: LiveForward | undefined): Request[] {
  const t = IPT[family];
  const want = forwardAccepts(nets, family);
  const ours = (fwd?.rules ?? []).filter((r) => forwardAcceptTag(r) !== undefined);
  const reqs: Request[] = [];
  if (!fwd && want.length === 0) return reqs;
  if (!fwd) reqs.push(...iptForwardChain(family, 'accept'));
  const same = ours.length === want.length && ours.every((r, i) => ruleText(r) === ruleText(want[i] as NftRule));
  if (same) return reqs;
  // An empty accept chain in a table of its own is the same as none: the table goes whole.
  if (want.length === 0 && fwd && fwd.chain.policy !== 'drop' && fwd.rules.length === ours.length && fwd.otherChains === 0) return [O.delTableRequest(t.family, t.table)];
  for (const r of ours) if (r.handle !== undefined) reqs.push(O.delRuleRequest(t.family, t.table, t.chain, r.handle));
  for (const r of want) reqs.push(O.addRuleRequest(r));
  return reqs;
}

/** What an incremental change for one network (in its families' views) relies on that is missing or altered; undefined when all is in place. */
function dependencyProblem(live: LiveRuleset, views: NetViews): string | undefined {
  const n = (views[4] ?? views[6]) as Net;
  if (!live.table) return `table ${FAMILY} ${TABLE} is gone`;
  for (const c of chains()) if (!live.chains.some((x) => x.name === c.name && JSON.stringify(x.hook) === JSON.stringify(c.hook))) return `chain ${c.name}`;
  for (const s of sets()) if (!live.sets.some((x) => x.name === s.name && x.keyType === s.keyType && x.dataType === s.dataType)) return `map ${s.name}`;
  const texts = (chain: string, tag?: string): string[] => live.rules.filter((r) => r.chain === chain && (tag === undefined || r.comment === tag)).map(ruleText);
  for (const chain of [CHAIN.prerouting, CHAIN.output, CHAIN.hostports, CHAIN.raw]) {
    const want = globalRules().filter((r) => r.chain === chain).map(ruleText);
    if (texts(chain, TAG.hostports).concat(texts(chain, TAG.guard)).join('\n') !== want.join('\n')) return `the rules of chain ${chain}`;
  }
  const mine = networkRules(views).map((r) => r.rule);
  for (const chain of [CHAIN.forward, CHAIN.postrouting]) {
    if (texts(chain, TAG.network(n.name)).join('\n') !== mine.filter((r) => r.chain === chain).map(ruleText).join('\n')) return `the ${chain} rules of network ${n.name}`;
  }
  for (const family of FAMILIES) {
    const fwd = live.forward[family];
    const v = views[family];
    if (!fwd || !v) continue;
    const accepts = fwd.rules.map(ruleText);
    if (!forwardAccepts([v], family).every((r) => accepts.includes(ruleText(r)))) return `${IPT[family].tool} FORWARD accepts of ${n.name}`;
  }
  return undefined;
}

/** A refused incremental transaction means the ruleset is not what it expected: the caller rebuilds. */
function asDrift(e: unknown): unknown {
  if (e instanceof NftTransactionError) return new FirewallDriftError(`incremental nf_tables change refused (${e.message}); the ruleset must be rebuilt`, { cause: e });
  return e;
}
