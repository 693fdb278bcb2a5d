/**
 * Pure builders of `iptables-restore --noflush` text for bridge networks and port mappings.
 *
 * tsnetlink owns every chain named TSN-*: each change rewrites whole chains (a `:CHAIN - [0:0]`
 * line creates or flushes one), and the only rules it places in built-in chains are jumps,
 * appended once and never prepended, so rules of other software keep their precedence.
 * The same builders write the IPv6 rules for ip6tables-restore (`family` 6): the same chains,
 * without the raw-table localnet guard (IPv6 has no route_localnet, and the kernel drops a packet
 * for ::1 that arrives on any interface but lo before netfilter sees it).
 * Nothing here runs a process; restore.ts does.
 */
import { createHash } from 'node:crypto';
import { ValidationError } from '../../errors.js';
import { parseSave, type SavedRuleset } from './save.js';
import { type EndpointRuleSpec, type Ep, type Net, type NetworkRuleSpec, type RuleFamily, checkEndpoint, checkEndpoints, checkNetworks } from '../spec.js';
import { checkEndpointId, checkNetworkName } from '../../names.js';

export { type EndpointRuleSpec, type NetworkRuleSpec, type PortMapping, type Protocol, type RuleFamily, mappingsOverlap } from '../spec.js';

/** The iptables tables tsnetlink writes to. */
export type Table = 'raw' | 'filter' | 'nat';

/** The chains tsnetlink owns besides the per-endpoint TSN-DN-<hash> chains. */
export const CHAINS = {
  forward: 'TSN-FORWARD',
  postrouting: 'TSN-POSTROUTING',
  hostports: 'TSN-HOSTPORTS',
  prerouting: 'TSN-PREROUTING',
  isolation: 'TSN-ISOLATION',
} as const;

/** Prefix of every chain tsnetlink owns. */
export const CHAIN_PREFIX = 'TSN-';
/** Prefix of the per-endpoint DNAT chains. */
export const DNAT_CHAIN_PREFIX = 'TSN-DN-';

/** A rule in a built-in chain that enters one of our chains: `-A <chain> <spec>` in `table`. */
export interface Jump {
  table: Table;
  chain: string;
  spec: string;
  target: string;
}

/** The jumps from built-in chains into tsnetlink's chains, in the exact form iptables-save prints. */
export const REQUIRED_JUMPS: readonly Jump[] = Object.freeze([
  { table: 'raw', chain: 'PREROUTING', spec: `-j ${CHAINS.prerouting}`, target: CHAINS.prerouting },
  { table: 'filter', chain: 'FORWARD', spec: `-j ${CHAINS.forward}`, target: CHAINS.forward },
  // --dst-type LOCAL: only traffic addressed to this host is mapped; a container talking to a
  // remote address on the same port is left alone (mydocker's DNAT hijacked it).
  { table: 'nat', chain: 'PREROUTING', spec: `-m addrtype --dst-type LOCAL -j ${CHAINS.hostports}`, target: CHAINS.hostports },
  { table: 'nat', chain: 'OUTPUT', spec: `-m addrtype --dst-type LOCAL -j ${CHAINS.hostports}`, target: CHAINS.hostports },
  { table: 'nat', chain: 'POSTROUTING', spec: `-j ${CHAINS.postrouting}`, target: CHAINS.postrouting },
] satisfies Jump[]);

/** The jumps that `family`'s ruleset needs: IPv6 has no raw-table guard, so no raw jump. */
export function requiredJumps(family: RuleFamily = 4): readonly Jump[] {
  return family === 4 ? REQUIRED_JUMPS : REQUIRED_JUMPS.filter((j) => j.table !== 'raw');
}

// iptables-nft commits each *table block on its own, so a failure in a later block leaves the
// earlier ones applied. Going in, the localnet guard lands before any DNAT; going out, the
// DNAT goes first. Either way a partial apply never opens more than the final state would.
const APPLY_ORDER: readonly Table[] = ['raw', 'filter', 'nat'];
const REMOVE_ORDER: readonly Table[] = ['nat', 'filter', 'raw'];

/*
 * The localnet guard. route_localnet=1 on a bridge (needed so that 127.0.0.1:hostPort can be
 * DNATed out of the bridge) also makes the kernel accept packets that arrive on that bridge
 * addressed to 127/8: a container could reach services the host binds to 127.0.0.1. Separately,
 * nat PREROUTING rewrites the destination before the routing decision, so a neighbour that sends
 * to 127.0.0.1:hostPort through any interface would be DNATed into a container, martian check or
 * not, which exposes mappings published on hostIp 127.0.0.1. Both arrive through PREROUTING on an
 * interface other than lo, so one rule drops them before conntrack sees them: "-d 127.0.0.0/8
 * ! -i lo". It cannot hurt localhost -> container mappings: those are DNATed in OUTPUT and
 * MASQUERADEd to the bridge IP, so their replies reach raw PREROUTING addressed to the bridge IP.
 * Scoping it to "-i <bridge>" would leave the second path open, so the rule is global, present
 * while at least one network exists.
 */
const GUARD_RULE = `-A ${CHAINS.prerouting} -d 127.0.0.0/8 ! -i lo -m comment --comment "tsnetlink:localnet-guard" -j DROP`;

/**
 * Returns the per-endpoint DNAT chain name: TSN-DN- and the first 16 hex digits of
 * sha256("NETWORK/ID"). Ids are unique per network only: a container on two networks may carry
 * the same id on both, and each endpoint needs a chain of its own.
 */
export function dnatChainName(network: string, endpointId: string): string {
  checkNetworkName(network, 'endpoint.network');
  checkEndpointId(endpointId, 'endpoint.id');
  return DNAT_CHAIN_PREFIX + createHash('sha256').update(`${network}/${endpointId}`).digest('hex').slice(0, 16);
}

/** The rule comment of an endpoint's rules: "tsnetlink:NETWORK/ID". */
function endpointComment(network: string, id: string): string {
  return comment(`${network}/${id}`);
}

/** Text rewriting TSN-FORWARD (filter), TSN-POSTROUTING (nat) and TSN-PREROUTING (raw) for exactly `networks`. */
export function networkChainsText(networks: readonly NetworkRuleSpec[], family: RuleFamily = 4): string {
  const script = new Script();
  writeNetworkChains(script, checkNetworks(networks, family), family);
  return script.render(APPLY_ORDER);
}

/** Text appending `missing` jumps; their target chains must exist (see applyNetworksText). */
export function jumpsText(missing: readonly Jump[], family: RuleFamily = 4): string {
  const script = new Script();
  for (const jump of missing) script.add(checkJump(jump, family).table, `-A ${jump.chain} ${jump.spec}`);
  return script.render(APPLY_ORDER);
}

/** The REQUIRED_JUMPS that the given iptables-save output (text or parsed) does not contain. */
export function missingJumps(save: string | SavedRuleset, family: RuleFamily = 4): Jump[] {
  const saved = typeof save === 'string' ? parseSave(save) : save;
  return requiredJumps(family).filter((j) => !saved.get(j.table)?.rules.some((r) => r.chain === j.chain && r.spec === j.spec));
}

/**
 * Text for a network create or delete: rewrites the network chains, creates TSN-HOSTPORTS if
 * the save text lacks it (never flushes it: it holds the endpoints' jumps) and appends the
 * missing jumps, one block per table. When the last network goes, use removeAllText instead.
 */
export function applyNetworksText(networks: readonly NetworkRuleSpec[], saveText: string, family: RuleFamily = 4): string {
  const saved = parseSave(saveText);
  const script = new Script();
  writeNetworkChains(script, checkNetworks(networks, family), family);
  if (!saved.get('nat')?.chains.includes(CHAINS.hostports)) script.declare('nat', CHAINS.hostports);
  for (const jump of missingJumps(saved, family)) script.tail(jump.table, `-A ${jump.chain} ${jump.spec}`);
  return script.render(APPLY_ORDER);
}

/**
 * Text creating an endpoint's DNAT chain and appending its jump in TSN-HOSTPORTS; '' without
 * mappings. Once per endpoint: a second run appends a second jump (re-apply with endpointUpdateText).
 */
export function endpointAddText(endpoint: EndpointRuleSpec, family: RuleFamily = 4): string {
  return endpointsAddText([endpoint], family);
}

/**
 * Text adding several endpoints' DNAT chains and jumps in one nat transaction; '' when none has
 * mappings. It first checks (`-C`) every rule the mappings depend on: the jumps from the
 * built-in chains, each network's DNAT accept, its masquerade for local sources and the
 * localnet guard. A ruleset flushed behind our back (`iptables -F`) makes the run fail before
 * it changes anything, instead of adding DNAT chains that nothing jumps to; the caller then
 * rebuilds everything from state.
 */
export function endpointsAddText(endpoints: readonly EndpointRuleSpec[], family: RuleFamily = 4): string {
  const eps = endpoints.map((e, i) => checkEndpoint(e, endpoints.length === 1 ? 'endpoint' : `endpoints[${i}]`, family)).filter((ep) => ep.mappings.length > 0);
  if (eps.length === 0) return '';
  const script = new Script();
  for (const jump of requiredJumps(family)) script.check(jump.table, `-C ${jump.chain} ${jump.spec}`);
  if (family === 4) script.check('raw', GUARD_RULE.replace(/^-A /, '-C '));
  const checked = new Set<string>();
  for (const ep of eps) {
    if (checked.has(ep.network.name)) continue;
    checked.add(ep.network.name);
    for (const rule of networkRules(ep.network)) if (rule.dependency) script.check(rule.table, rule.line.replace(/^-A /, '-C '));
  }
  for (const ep of eps) {
    writeEndpointChain(script, ep, family);
    script.add('nat', hostportsJump(ep));
  }
  return script.render(APPLY_ORDER);
}

/** Text rewriting an already added endpoint's DNAT chain (its jump stays); '' without mappings. */
export function endpointUpdateText(endpoint: EndpointRuleSpec, family: RuleFamily = 4): string {
  const ep = checkEndpoint(endpoint, 'endpoint', family);
  if (ep.mappings.length === 0) return '';
  const script = new Script();
  writeEndpointChain(script, ep, family);
  return script.render(APPLY_ORDER);
}

/**
 * Text deleting an endpoint's jump and DNAT chain in one transaction; '' without mappings.
 * If the jump is missing, iptables-restore rejects the whole text: fall back to fullRebuildText.
 */
export function endpointRemoveText(endpoint: EndpointRef): string {
  return endpointsRemoveText([endpoint]);
}

/** What removal needs of an endpoint: its network's name, its id, and whether it has mappings. */
export interface EndpointRef {
  id: string;
  network: string | { name: string };
  mappings: readonly unknown[];
}

/** Text deleting several endpoints' jumps and DNAT chains in one nat transaction; '' when none has mappings. */
export function endpointsRemoveText(endpoints: readonly EndpointRef[]): string {
  const script = new Script();
  for (const endpoint of endpoints) {
    const id = checkEndpointId(endpoint.id, 'endpoint.id');
    const network = typeof endpoint.network === 'string' ? endpoint.network : endpoint.network?.name;
    if (!Array.isArray(endpoint.mappings) || endpoint.mappings.length === 0) continue;
    const chain = dnatChainName(network as string, id);
    script.declare('nat', chain);
    script.add('nat', `-D ${CHAINS.hostports} ${endpointComment(network as string, id)} -j ${chain}`);
    script.tail('nat', `-X ${chain}`);
  }
  return script.render(REMOVE_ORDER);
}

/**
 * Text rebuilding every owned chain from state: network chains, TSN-HOSTPORTS and each
 * endpoint's DNAT chain; TSN-DN-* chains in `saveText` that state lacks are deleted, jumps that
 * are missing are appended and duplicated or altered jumps into our chains are deleted.
 */
export function fullRebuildText(networks: readonly NetworkRuleSpec[], endpoints: readonly EndpointRuleSpec[], saveText: string, family: RuleFamily = 4): string {
  const nets = checkNetworks(networks, family);
  const eps = checkEndpoints(endpoints, nets, family);
  const saved = parseSave(saveText);
  const script = new Script();
  writeNetworkChains(script, nets, family);
  script.declare('nat', CHAINS.hostports);
  const wanted = new Map<string, string>();
  for (const ep of eps) {
    if (ep.mappings.length === 0) continue;
    const chain = dnatChainName(ep.network.name, ep.id);
    const other = wanted.get(chain);
    if (other !== undefined) throw new ValidationError(`endpoint ${ep.id}`, `its chain name ${chain} collides with that of "${other}"`);
    wanted.set(chain, `${ep.network.name}/${ep.id}`);
    script.add('nat', hostportsJump(ep));
  }
  for (const ep of eps) if (ep.mappings.length > 0) writeEndpointChain(script, ep, family);
  for (const chain of saved.get('nat')?.chains ?? []) {
    if (!chain.startsWith(DNAT_CHAIN_PREFIX) || wanted.has(chain)) continue;
    script.declare('nat', checkSavedChain(chain));
    script.tail('nat', `-X ${chain}`);
  }
  const owned = (target: string): boolean =>
    target.startsWith(DNAT_CHAIN_PREFIX) || Object.values(CHAINS).includes(target as (typeof CHAINS)[keyof typeof CHAINS]);
  const jumps = requiredJumps(family);
  for (const table of APPLY_ORDER) {
    const kept = new Set<Jump>();
    for (const rule of saved.get(table)?.rules ?? []) {
      if (rule.chain.startsWith(CHAIN_PREFIX) || rule.target === undefined || !owned(rule.target)) continue;
      const jump = jumps.find((j) => j.table === table && j.chain === rule.chain && j.spec === rule.spec);
      if (jump && !kept.has(jump)) kept.add(jump);
      else script.del(table, `-D ${rule.chain} ${rule.spec}`);
    }
    for (const jump of jumps) if (jump.table === table && !kept.has(jump)) script.tail(table, `-A ${jump.chain} ${jump.spec}`);
  }
  return script.render(APPLY_ORDER);
}

/** Text removing every TSN-* chain in every table of `saveText`, and every rule that jumps to one. */
export function removeAllText(saveText: string): string {
  const saved = parseSave(saveText);
  const script = new Script();
  const order = [...REMOVE_ORDER, ...[...saved.keys()].filter((t) => !REMOVE_ORDER.includes(t as Table)).sort()];
  for (const table of order) {
    const t = saved.get(table);
    if (!t) continue;
    const chains = t.chains.filter((c) => c.startsWith(CHAIN_PREFIX)).map(checkSavedChain);
    for (const chain of chains) {
      script.declare(table, chain);
      script.tail(table, `-X ${chain}`);
    }
    for (const rule of t.rules) {
      if (!rule.chain.startsWith(CHAIN_PREFIX) && rule.target?.startsWith(CHAIN_PREFIX)) script.del(table, `-D ${rule.chain} ${rule.spec}`);
    }
  }
  return script.render(order);
}

// ---------------------------------------------------------------------------------------------

const comment = (id: string): string => `-m comment --comment "tsnetlink:${id}"`;

/** One rule of a network's chains; `dependency` marks those a published port relies on. */
interface NetworkRule {
  table: Table;
  /** Rules are written in groups so every network's drops come before any network's accepts. */
  group: number;
  line: string;
  dependency?: boolean;
}

/**
 * The rules of one network, each tagged with its group. Forwarding into a bridge is accepted
 * only for replies (ESTABLISHED), published ports (ctstate DNAT) and, with icc, the bridge's own
 * containers; anything else towards the bridge is dropped: that is what isolates networks from
 * each other and keeps hosts on the uplink that route the subnet via this host away from
 * unpublished container ports. A network with gateway mode "nat-unprotected" or "routed" opts out
 * of the second part (other tsnetlink networks stay isolated through TSN-ISOLATION). Outbound
 * traffic is accepted, or dropped for an internal network.
 */
function networkRules(n: Net): NetworkRule[] {
  const c = comment(n.name);
  const br = n.bridge;
  const rules: NetworkRule[] = [
    { table: 'filter', group: 1, line: `-A ${CHAINS.forward} -o ${br} -m conntrack --ctstate RELATED,ESTABLISHED ${c} -j ACCEPT` },
  ];
  if (!n.internal) rules.push({ table: 'filter', group: 2, line: `-A ${CHAINS.forward} -o ${br} -m conntrack --ctstate DNAT ${c} -j ACCEPT`, dependency: true });
  if (n.icc) rules.push({ table: 'filter', group: 3, line: `-A ${CHAINS.forward} -i ${br} -o ${br} ${c} -j ACCEPT` });
  if (n.gatewayMode === 'nat') {
    rules.push({ table: 'filter', group: 4, line: `-A ${CHAINS.forward} -o ${br} ${c} -j DROP` });
  } else {
    rules.push({ table: 'filter', group: 4, line: `-A ${CHAINS.forward} -o ${br} ${c} -j ${CHAINS.isolation}` });
    rules.push({ table: 'filter', group: 4, line: `-A ${CHAINS.forward} -o ${br} ${c} -j ACCEPT` });
  }
  rules.push({ table: 'filter', group: 5, line: `-A ${CHAINS.forward} -i ${br} ${c} -j ${n.internal ? 'DROP' : 'ACCEPT'}` });
  if (!n.internal) {
    if (n.gatewayMode !== 'routed') rules.push({ table: 'nat', group: 1, line: `-A ${CHAINS.postrouting} -s ${n.subnet.cidr} ! -o ${br} ${c} -j MASQUERADE` });
    // Hairpin: a container reaching a published port of a container on the same bridge must see
    // the reply come from the host, or it would arrive directly and be dropped as unknown.
    rules.push({ table: 'nat', group: 1, line: `-A ${CHAINS.postrouting} -s ${n.subnet.cidr} -o ${br} -m conntrack --ctstate DNAT ${c} -j MASQUERADE` });
    // Host and 127.0.0.1 sources towards a published port; 127/8 must not leave on the bridge.
    rules.push({ table: 'nat', group: 1, line: `-A ${CHAINS.postrouting} -o ${br} -m addrtype --src-type LOCAL ${c} -j MASQUERADE`, dependency: true });
  }
  return rules;
}

function writeNetworkChains(script: Script, nets: readonly Net[], family: RuleFamily): void {
  if (family === 4) script.declare('raw', CHAINS.prerouting);
  script.declare('filter', CHAINS.forward);
  script.declare('filter', CHAINS.isolation);
  script.declare('nat', CHAINS.postrouting);
  if (nets.length > 0 && family === 4) script.add('raw', GUARD_RULE);
  const all = nets.flatMap((n) => networkRules(n));
  for (const group of [1, 2, 3, 4, 5]) for (const r of all) if (r.group === group) script.add(r.table, r.line);
  // Filled only when a network lets outside traffic in, so that other networks still cannot.
  if (nets.some((n) => n.gatewayMode !== 'nat')) {
    for (const n of nets) script.add('filter', `-A ${CHAINS.isolation} -i ${n.bridge} ${comment(n.name)} -j DROP`);
  }
}

function writeEndpointChain(script: Script, ep: Ep, family: RuleFamily): void {
  const chain = dnatChainName(ep.network.name, ep.id);
  script.declare('nat', chain);
  // ip6tables-save prints an IPv6 DNAT target in brackets, "[fd00:10::2]:80", as it must be given.
  const to = family === 4 ? ep.ip : `[${ep.ip}]`;
  for (const m of ep.mappings) {
    const dst = m.hostIp === undefined ? '' : ` -d ${m.hostIp}/${family === 4 ? 32 : 128}`;
    script.add(
      'nat',
      `-A ${chain}${dst} -p ${m.protocol} -m ${m.protocol} --dport ${m.hostPort} ${endpointComment(ep.network.name, ep.id)} -j DNAT --to-destination ${to}:${m.containerPort}`,
    );
  }
}

function hostportsJump(ep: Ep): string {
  return `-A ${CHAINS.hostports} ${endpointComment(ep.network.name, ep.id)} -j ${dnatChainName(ep.network.name, ep.id)}`;
}

/** Per-table sections: checks, chain declarations, deletions, rules, then chain removals and jumps. */
class Script {
  private readonly tables = new Map<string, { check: string[]; decl: string[]; del: string[]; body: string[]; tail: string[] }>();

  private section(table: string) {
    let t = this.tables.get(table);
    if (!t) this.tables.set(table, (t = { check: [], decl: [], del: [], body: [], tail: [] }));
    return t;
  }
  check(table: string, line: string): void {
    this.section(table).check.push(line);
  }
  declare(table: string, chain: string): void {
    const line = `:${chain} - [0:0]`;
    const t = this.section(table);
    if (!t.decl.includes(line)) t.decl.push(line);
  }
  del(table: string, line: string): void {
    this.section(table).del.push(line);
  }
  add(table: string, line: string): void {
    this.section(table).body.push(line);
  }
  tail(table: string, line: string): void {
    this.section(table).tail.push(line);
  }
  render(order: readonly string[]): string {
    let out = '';
    for (const table of order) {
      const t = this.tables.get(table);
      if (!t) continue;
      const lines = [...t.check, ...t.decl, ...t.del, ...t.body, ...t.tail];
      if (lines.length > 0) out += `*${table}\n${lines.join('\n')}\nCOMMIT\n`;
    }
    return out;
  }
}

function checkJump(jump: Jump, family: RuleFamily): Jump {
  const known = requiredJumps(family).find((j) => j.table === jump?.table && j.chain === jump.chain && j.spec === jump.spec);
  if (!known) throw new ValidationError('jump', 'is not one of REQUIRED_JUMPS');
  return known;
}

function checkSavedChain(chain: string): string {
  if (!/^TSN-[A-Za-z0-9_.-]{1,24}$/.test(chain)) throw new ValidationError('saveText', `unexpected chain name ${JSON.stringify(chain)}`);
  return chain;
}

/** Whether the order of a chain's rules changes what it does: not in chains whose rules match disjoint packets. */
function orderMatters(chain: string): boolean {
  return chain !== CHAINS.hostports && !chain.startsWith(DNAT_CHAIN_PREFIX);
}

/** One difference between the owned part of a live ruleset and the desired one. */
export interface RulesetDifference {
  kind: 'missing' | 'unexpected' | 'duplicate' | 'changed';
  what: string;
}

/**
 * Compares the chains tsnetlink owns (and the jumps into them) in `saveText` with what
 * `networks` and `endpoints` call for; [] when they match exactly. Foreign rules are ignored.
 */
export function diffRuleset(networks: readonly NetworkRuleSpec[], endpoints: readonly EndpointRuleSpec[], saveText: string, family: RuleFamily = 4): RulesetDifference[] {
  const want = parseSave(networks.length === 0 ? '' : fullRebuildText(networks, endpoints, '', family));
  const jumps = requiredJumps(family);
  const have = parseSave(saveText);
  const out: RulesetDifference[] = [];
  for (const table of APPLY_ORDER) {
    const w = want.get(table) ?? { chains: [], rules: [] };
    const h = have.get(table) ?? { chains: [], rules: [] };
    const owned = (c: string): boolean => c.startsWith(CHAIN_PREFIX);
    for (const chain of w.chains.filter(owned)) {
      if (!h.chains.includes(chain)) {
        out.push({ kind: 'missing', what: `${table} chain ${chain}` });
        continue;
      }
      const wr = w.rules.filter((r) => r.chain === chain).map((r) => r.spec);
      const hr = h.rules.filter((r) => r.chain === chain).map((r) => r.spec);
      const before = out.length;
      for (const spec of wr) if (!hr.includes(spec)) out.push({ kind: 'missing', what: `${table} ${chain} ${spec}` });
      for (const spec of hr) if (!wr.includes(spec)) out.push({ kind: 'unexpected', what: `${table} ${chain} ${spec}` });
      // Order matters in a network chain: every network's drops must come before any network's
      // accepts. It has no meaning in TSN-HOSTPORTS and the DNAT chains, whose rules never match the
      // same packet (a host port has one owner), and connect appends where a rebuild sorts.
      if (out.length === before && orderMatters(chain) && wr.join('\n') !== hr.join('\n')) out.push({ kind: 'changed', what: `${table} ${chain}: rules out of order` });
      for (const spec of new Set(hr)) if (hr.filter((x) => x === spec).length > 1) out.push({ kind: 'duplicate', what: `${table} ${chain} ${spec}` });
    }
    for (const chain of h.chains.filter(owned)) if (!w.chains.includes(chain)) out.push({ kind: 'unexpected', what: `${table} chain ${chain}` });
    for (const jump of jumps.filter((j) => j.table === table && networks.length > 0)) {
      const n = h.rules.filter((r) => r.chain === jump.chain && r.spec === jump.spec).length;
      if (n === 0) out.push({ kind: 'missing', what: `${table} ${jump.chain} ${jump.spec}` });
      if (n > 1) out.push({ kind: 'duplicate', what: `${table} ${jump.chain} ${jump.spec}` });
    }
    for (const r of h.rules) {
      if (owned(r.chain) || r.target === undefined || !owned(r.target)) continue;
      if (networks.length > 0 && jumps.some((j) => j.table === table && j.chain === r.chain && j.spec === r.spec)) continue;
      out.push({ kind: 'unexpected', what: `${table} ${r.chain} ${r.spec}` });
    }
  }
  return out;
}
