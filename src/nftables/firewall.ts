/**
 * The native nf_tables implementation of the Firewall interface: every change is one
 * nf_tables transaction sent over NETLINK_NETFILTER (no process started), atomic across all its
 * objects; a published port is one map element, so a connect or disconnect adds or deletes
 * elements and rewrites no chain. Incremental changes first check that the rules they rely on
 * are in place and are guarded by the ruleset generation they read; drift is reported, never
 * papered over, and apply() rebuilds the whole table from the desired state in one transaction.
 */
import { checkEndpointId } from '../names.js';
import { forgetConnections } from '../firewall/conntrack.js';
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
import { checkEndpoint, checkEndpoints, checkNetworks, type Ep, type Mapping, type Net, type NetworkRuleSpec } from '../iptables/spec.js';
import { checkProtocol, checkPort, checkIPv4 } from '../iptables/validate.js';
import { networkFor } from '../iptables/family.js';
import type { Request } from '../netlink/message.js';
import { Nft } from './nft.js';
import { NftTransactionError } from './transaction.js';
import * as O from './objects.js';
import { compare, readForward, readLive, ruleText, type LiveRuleset } from './live.js';
import { CHAIN, FAMILY, IPT, SET, TABLE, TABLE_COMMENT, TAG, chains, elementsFor, forwardAcceptTag, forwardAccepts, globalRules, mappingElement, networkRules, rulesFor, sets } from './ruleset.js';
import type { NftElement, NftRule } from './objects.js';

/** Options of the native backend. */
export interface NftablesFirewallOptions {
  /** Opens the nf_tables socket (tests pass a fake kernel); default: a socket in the current netns. */
  open?: () => Nft;
}

/** How often a transaction is rebuilt when the ruleset changed under it (ERESTART). */
const RETRIES = 5;

/** Firewall backed by nf_tables over netlink: table `inet tsnetlink`. */
export class NftablesFirewall implements Firewall {
  readonly backend = 'nftables';
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
    const nets = checkNetworks(ipv4Only(networks));
    if (nets.length === 0) return this.apply({ networks: [], endpoints: [] });
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

  /** Adds the endpoints' map elements in one transaction, after checking every rule they rely on. */
  async addEndpoints(network: FirewallNetwork, endpoints: readonly FirewallEndpoint[]): Promise<void> {
    const [net4] = ipv4Only([network]);
    const eps = endpoints.map((e, i) => checkEndpoint({ id: e.id, network: net4!, ip: e.ip!, mappings: e.mappings }, endpoints.length === 1 ? 'endpoint' : `endpoints[${i}]`)).filter((e) => e.mappings.length > 0);
    if (eps.length === 0) return;
    const net = (eps[0] as Ep).network;
    try {
      let committedOn = -1;
      this.transact('addEndpoints', (nft) => {
        const genId = nft.genId();
        // The ruleset generation changes with every commit by anyone: at the generation this
        // firewall's own last commit produced, the rules it checked then are still exactly there.
        if (!(this.checked?.gen === genId && this.checked.networks.has(net.name))) {
          const problem = dependencyProblem(readLive(nft, { elements: false }), net);
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
    await this.forgetConnections({ udpPorts: eps.flatMap((e) => e.mappings.filter((m) => m.protocol === 'udp').map((m) => ({ port: m.hostPort, ...(m.hostIp ? { hostIp: m.hostIp } : {}) }))) });
  }

  /** Deletes the endpoints' map elements in one transaction; FirewallDriftError when one is not there. */
  async removeEndpoints(endpoints: readonly FirewallEndpoint[]): Promise<void> {
    const keys = new Map<string, Buffer[]>([[SET.ports, []], [SET.hostipPorts, []]]);
    for (const [i, e] of endpoints.entries()) {
      checkEndpointId(e.id, `endpoints[${i}].id`);
      for (const m of e.mappings ?? []) {
        const { set, element } = mappingElement(e.network, e.id, '0.0.0.0', checkMapping(m, `endpoints[${i}]`));
        keys.get(set)?.push(element.key);
      }
    }
    const reqs = [...keys].flatMap(([set, ks]) => (ks.length > 0 ? O.delElementsRequests(FAMILY, TABLE, set, ks) : []));
    if (reqs.length === 0) return;
    try {
      this.with((nft) => {
        const genId = nft.genId();
        nft.commit(reqs);
        // Removing elements leaves every rule as it was: the check stays good at the next generation.
        if (this.checked?.gen === genId) this.checked.gen = (genId + 1) >>> 0;
      });
    } catch (e) {
      this.checked = undefined;
      throw asDrift(e);
    }
  }

  /** Rebuilds our table from `state` in one transaction (deleted and made again), and our iptables FORWARD accepts. */
  async apply(state: FirewallState): Promise<void> {
    const nets = checkNetworks(ipv4Only(state.networks));
    const eps = endpointsOf(state, nets);
    this.transact('apply', (nft) => {
      const genId = nft.genId();
      const live = readLive(nft, { elements: false });
      const reqs: Request[] = [];
      if (live.table) reqs.push(O.delTableRequest(FAMILY, TABLE));
      if (nets.length > 0) {
        reqs.push(...skeleton());
        for (const rules of rulesFor(nets).values()) for (const r of rules) reqs.push(O.addRuleRequest(r));
        for (const [set, elems] of elementsFor(eps)) if (elems.length > 0) reqs.push(...O.addElementsRequests(FAMILY, TABLE, set, elems));
      }
      reqs.push(...forwardSync(nets, live.forward));
      return { reqs, genId };
    });
  }

  /** How the live table (and our iptables FORWARD accepts) differ from `state`. */
  async diff(state: FirewallState): Promise<FirewallDifference[]> {
    const nets = checkNetworks(ipv4Only(state.networks));
    const eps = endpointsOf(state, nets);
    const live = this.with((nft) => readLive(nft, { elements: true }));
    return compare(live, { rules: rulesFor(nets), elements: elementsFor(eps), forward: forwardAccepts(nets), any: nets.length > 0 }, describeElement);
  }

  /** Deletes the matching conntrack entries over ctnetlink; warns, never throws. */
  async forgetConnections(filter: ConnectionFilter): Promise<void> {
    try {
      await forgetConnections(filter);
    } catch (e) {
      process.emitWarning(`tsnetlink: conntrack flush failed: ${(e as Error).message}`, 'TsnetlinkWarning');
    }
  }

  /**
   * `iptables -P FORWARD DROP`, written natively into iptables-nft's FORWARD chain (made, as
   * iptables-nft makes it, when it does not exist): the same host-wide guard the iptables
   * backend sets, which an accept in our own table could not provide. Resolves true when the
   * policy changed.
   */
  async dropUnmatchedForwarding(family: 4 | 6 = 4): Promise<boolean> {
    // Never a silent no-op for IPv6: forwarding turned on behind an ACCEPT policy would route.
    if (family === 6) throw new FirewallUnavailableError('the nftables backend writes IPv4 rules only so far: use the iptables backend (--firewall iptables) for IPv6 networks');
    let changed = false;
    this.transact('dropUnmatchedForwarding', (nft) => {
      const genId = nft.genId();
      const fwd = readForward(nft);
      if (fwd?.chain.policy === 'drop') return undefined;
      changed = true;
      return { genId, reqs: fwd ? [O.setChainPolicyRequest(IPT.family, IPT.table, IPT.chain, 'drop')] : iptForwardChain('drop') };
    });
    return changed;
  }
}

/** Table, maps and chains, empty. */
function skeleton(): Request[] {
  return [O.addTableRequest({ family: FAMILY, name: TABLE, comment: TABLE_COMMENT }), ...sets().map(O.addSetRequest), ...chains().map(O.addChainRequest)];
}

/** iptables-nft's `ip filter` table with its FORWARD chain, as iptables-nft creates them. */
function iptForwardChain(policy: 'accept' | 'drop'): Request[] {
  return [O.addTableRequest({ family: IPT.family, name: IPT.table }), O.addChainRequest({ family: IPT.family, table: IPT.table, name: IPT.chain, hook: { hook: 'forward', priority: 0 }, type: 'filter', policy })];
}

/**
 * Brings our accepts in iptables' FORWARD chain to exactly `nets` (appended after any foreign
 * rule, never inserted before one). The chain is made when missing, so that a FORWARD DROP
 * policy set later (`iptables -P FORWARD DROP`) still lets our traffic through; when the last
 * network goes, a chain left empty with policy accept goes too, with its table if that is empty.
 */
function forwardSync(nets: readonly Net[], fwd: LiveRuleset['forward']): Request[] {
  const want = forwardAccepts(nets);
  const ours = (fwd?.rules ?? []).filter((r) => forwardAcceptTag(r) !== undefined);
  const reqs: Request[] = [];
  if (!fwd && want.length === 0) return reqs;
  if (!fwd) reqs.push(...iptForwardChain('accept'));
  const same = ours.length === want.length && ours.every((r, i) => ruleText(r) === ruleText(want[i] as NftRule));
  if (same) return reqs;
  // An empty accept chain in a table of its own is the same as none: the table goes whole.
  if (want.length === 0 && fwd && fwd.chain.policy !== 'drop' && fwd.rules.length === ours.length && fwd.otherChains === 0) return [O.delTableRequest(IPT.family, IPT.table)];
  for (const r of ours) if (r.handle !== undefined) reqs.push(O.delRuleRequest(IPT.family, IPT.table, IPT.chain, r.handle));
  for (const r of want) reqs.push(O.addRuleRequest(r));
  return reqs;
}

/** What an incremental change for network `n` relies on that is missing or altered; undefined when all is in place. */
function dependencyProblem(live: LiveRuleset, n: Net): string | undefined {
  if (!live.table) return `table ${FAMILY} ${TABLE} is gone`;
  for (const c of chains()) if (!live.chains.some((x) => x.name === c.name && JSON.stringify(x.hook) === JSON.stringify(c.hook))) return `chain ${c.name}`;
  for (const s of sets()) if (!live.sets.some((x) => x.name === s.name && x.keyType === s.keyType && x.dataType === s.dataType)) return `map ${s.name}`;
  const texts = (chain: string, tag?: string): string[] => live.rules.filter((r) => r.chain === chain && (tag === undefined || r.comment === tag)).map(ruleText);
  for (const chain of [CHAIN.prerouting, CHAIN.output, CHAIN.hostports, CHAIN.raw]) {
    const want = globalRules().filter((r) => r.chain === chain).map(ruleText);
    if (texts(chain, TAG.hostports).concat(texts(chain, TAG.guard)).join('\n') !== want.join('\n')) return `the rules of chain ${chain}`;
  }
  const mine = networkRules(n).map((r) => r.rule);
  for (const chain of [CHAIN.forward, CHAIN.postrouting]) {
    if (texts(chain, TAG.network(n.name)).join('\n') !== mine.filter((r) => r.chain === chain).map(ruleText).join('\n')) return `the ${chain} rules of network ${n.name}`;
  }
  const accepts = (live.forward?.rules ?? []).map(ruleText);
  if (live.forward && !forwardAccepts([n]).every((r) => accepts.includes(ruleText(r)))) return `iptables FORWARD accepts of ${n.name}`;
  return undefined;
}

/**
 * The networks as this backend's IPv4 rules see them. Its table holds IPv4 rules only so far: a
 * network with an IPv6 subnet is refused (FirewallUnavailableError), so a dual-stack create on this
 * backend is rolled back with the reason instead of leaving IPv6 unfiltered.
 */
function ipv4Only(networks: readonly FirewallNetwork[]): NetworkRuleSpec[] {
  return networks.map((n) => {
    const v4 = n.subnet6 === undefined ? networkFor(n, 4) : undefined;
    if (!v4) {
      throw new FirewallUnavailableError(`network ${n.name} has an IPv6 subnet, and the nftables backend writes IPv4 rules only so far: use the iptables backend (--firewall iptables) for dual-stack and IPv6 networks`);
    }
    return v4;
  });
}

function endpointsOf(state: FirewallState, nets: readonly Net[]): Ep[] {
  const byName = new Map(nets.map((n) => [n.name, n]));
  const specs = state.endpoints
    .filter((e) => e.mappings.length > 0)
    .map((e) => {
      const network = state.networks.find((n) => n.name === e.network);
      if (!network || !byName.has(e.network)) throw new FirewallDriftError(`endpoint ${e.id} belongs to network ${e.network}, which the desired state lacks`);
      return { id: e.id, network: ipv4Only([network])[0]!, ip: e.ip!, mappings: e.mappings };
    });
  return checkEndpoints(specs, nets);
}

function checkMapping(m: FirewallEndpoint['mappings'][number], field: string): Mapping {
  const hostIp = m.hostIp === undefined || m.hostIp === '0.0.0.0' ? undefined : checkIPv4(`${field}.hostIp`, m.hostIp);
  return { hostIp, hostPort: checkPort(`${field}.hostPort`, m.hostPort), containerPort: checkPort(`${field}.containerPort`, m.containerPort), protocol: checkProtocol(`${field}.protocol`, m.protocol) };
}

/** An element in words: "map ports tcp/80 -> 192.168.10.4:80 (endpoint testbridge/c3)". */
function describeElement(set: string, e: NftElement): string {
  const k = e.key;
  const [hostIp, proto, port] = set === SET.hostipPorts ? [`${k[0]}.${k[1]}.${k[2]}.${k[3]}:`, k[4], k.readUInt16BE(8)] : ['', k[0], k.readUInt16BE(4)];
  const d = e.data;
  const to = d && d.length >= 6 ? `${d[0]}.${d[1]}.${d[2]}.${d[3]}:${d.readUInt16BE(4)}` : '?';
  const protoName = proto === 6 ? 'tcp' : proto === 17 ? 'udp' : `proto ${proto}`;
  const owner = e.comment?.startsWith(TAG.prefix) ? ` (endpoint ${e.comment.slice(TAG.prefix.length)})` : '';
  return `map ${set} ${protoName} ${hostIp}${port} -> ${to}${owner}`;
}

/** A refused incremental transaction means the ruleset is not what it expected: the caller rebuilds. */
function asDrift(e: unknown): unknown {
  if (e instanceof NftTransactionError) return new FirewallDriftError(`incremental nf_tables change refused (${e.message}); the ruleset must be rebuilt`, { cause: e });
  return e;
}
