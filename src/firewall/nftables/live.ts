/**
 * What of tsnetlink's ruleset is live in the kernel, read over netlink, and how it differs from
 * the desired one (pure comparison). Rules are compared by their decoded expressions, so a rule
 * reads the same whether we built it or the kernel dumped it back.
 */
import type { FirewallDifference } from '../types.js';
import { describeExpr } from '../../netlink/nftables/expr.js';
import type { Nft } from '../../netlink/nftables/nft.js';
import type { NftChain, NftElement, NftRule, NftSet } from '../../netlink/nftables/objects.js';
import type { RuleFamily } from '../spec.js';
import { CHAIN, FAMILIES, FAMILY, IPT, TABLE, chains as wantChains, forwardAcceptTag, sets as wantSets } from './ruleset.js';

/** iptables-nft's FORWARD chain of one family (`ip filter FORWARD`, `ip6 filter FORWARD`) as it is. */
export interface LiveForward {
  chain: NftChain;
  rules: NftRule[];
  /** How many other chains its table holds (a table holding only our chain can go with it). */
  otherChains: number;
}

/** Our table as it is, and our accepts in the iptables and ip6tables FORWARD chains. */
export interface LiveRuleset {
  /** False when the table is gone (flushed with `nft flush ruleset`, or never made). */
  table: boolean;
  chains: NftChain[];
  sets: NftSet[];
  rules: NftRule[];
  elements: Map<string, NftElement[]>;
  /** iptables-nft's FORWARD chain of each family: absent when it does not exist. */
  forward: Partial<Record<RuleFamily, LiveForward>>;
}

function missingTable(e: unknown): boolean {
  return (e as { code?: string }).code === 'ENOENT';
}

/** Reads our table (chains, sets, rules and, with `elements`, map elements) and both families' iptables FORWARD chains: `nft list table inet tsnetlink`, `nft list chain ip filter FORWARD`, `nft list chain ip6 filter FORWARD`. */
export function readLive(nft: Nft, opts: { elements: boolean }): LiveRuleset {
  const live: LiveRuleset = { table: false, chains: [], sets: [], rules: [], elements: new Map(), forward: {} };
  const forwards = (): void => {
    for (const family of FAMILIES) {
      const fwd = readForward(nft, family);
      if (fwd) live.forward[family] = fwd;
    }
  };
  // A dump filtered by a table that does not exist is empty, not ENOENT: ask for the table.
  if (!nft.listTables(FAMILY).some((t) => t.name === TABLE)) {
    forwards();
    return live;
  }
  try {
    live.chains = [...nft.listChains(FAMILY, TABLE)];
    live.table = true;
    live.sets = [...nft.listSets(FAMILY, TABLE)];
    live.rules = [...nft.listRules(FAMILY, TABLE)];
    if (opts.elements) for (const s of live.sets) live.elements.set(s.name, nft.listElements(FAMILY, TABLE, s.name));
  } catch (e) {
    if (!missingTable(e)) throw e;
  }
  forwards();
  return live;
}

/**
 * The part of the live ruleset a port mapping relies on, read with as few dumps as possible:
 * our table's chains, maps and rules (no table listing first: a dump for a table that does not
 * exist is empty, which reads as "gone"), and the FORWARD chains of `families` only. A connect -p reads this after every commit by anyone else
 * (Docker, firewalld and iptables-nft all bump the generation), so each dump saved counts.
 */
export function readDependencies(nft: Nft, families: readonly RuleFamily[]): LiveRuleset {
  const live: LiveRuleset = { table: false, chains: [], sets: [], rules: [], elements: new Map(), forward: {} };
  live.chains = [...nft.listChains(FAMILY, TABLE)];
  if (live.chains.length > 0) {
    live.table = true;
    live.sets = [...nft.listSets(FAMILY, TABLE)];
    live.rules = [...nft.listRules(FAMILY, TABLE)];
  }
  for (const family of families) {
    const fwd = readForward(nft, family);
    if (fwd) live.forward[family] = fwd;
  }
  return live;
}

/** `nft list chain ip filter FORWARD` (`ip6 filter FORWARD` for `family` 6): iptables-nft's FORWARD chain and its rules, if the chain exists. */
export function readForward(nft: Nft, family: RuleFamily = 4): LiveForward | undefined {
  const t = IPT[family];
  try {
    // A chain dump for a table that does not exist is empty: no table listing needed first.
    const all = [...nft.listChains(t.family, t.table)];
    const chain = all.find((c) => c.name === t.chain);
    if (!chain) return undefined;
    return { chain, rules: [...nft.listRules(t.family, t.table, t.chain)], otherChains: all.length - 1 };
  } catch (e) {
    if (missingTable(e)) return undefined;
    throw e;
  }
}

const texts = new WeakMap<NftRule, string>();

/** A rule's identity for comparisons: its comment and its expressions, as text (kept per rule object: dumped rules are shared, see Nft). */
export function ruleText(r: NftRule): string {
  let t = texts.get(r);
  if (t === undefined) {
    t = `${r.exprs.map(describeExpr).join('; ')}${r.comment !== undefined ? ` # ${r.comment}` : ''}`;
    texts.set(r, t);
  }
  return t;
}

function chainText(c: NftChain): string {
  return c.hook ? `type ${c.type ?? 'filter'} hook ${c.hook.hook} priority ${c.hook.priority} policy ${c.policy ?? 'accept'}` : 'regular';
}

function setText(s: NftSet): string {
  return `flags ${s.flags} key ${s.keyType}/${s.keyLen} data ${s.dataType ?? '-'}/${s.dataLen ?? '-'}`;
}

/** Where a desired element and a live one are told apart: its map and key. */
const elemKey = (set: string, e: NftElement): string => `${set} ${e.key.toString('hex')}`;
const elemText = (e: NftElement): string => `${e.data?.toString('hex') ?? ''} # ${e.comment ?? ''}`;

/** What the live ruleset is compared with: our table's rules and elements, and each family's FORWARD accepts. */
export interface WantedRuleset {
  rules: Map<string, NftRule[]>;
  elements: Map<string, NftElement[]>;
  forward: Readonly<Record<RuleFamily, readonly NftRule[]>>;
  /** Whether any network needs the table at all. */
  any: boolean;
}

/** Every difference between the live ruleset and the desired one ([] when they agree). */
export function compare(live: LiveRuleset, want: WantedRuleset, describe: (set: string, e: NftElement) => string): FirewallDifference[] {
  const out: FirewallDifference[] = [];
  if (!want.any) {
    if (live.table) out.push({ kind: 'unexpected', what: `table ${FAMILY} ${TABLE} (no network needs it)` });
    for (const family of FAMILIES) for (const r of live.forward[family]?.rules ?? []) if (forwardAcceptTag(r)) out.push({ kind: 'unexpected', what: `${IPT[family].tool} FORWARD accept ${forwardAcceptTag(r)}` });
    return out;
  }
  if (!live.table) {
    out.push({ kind: 'missing', what: `table ${FAMILY} ${TABLE} (deleted: \`nft flush ruleset\`, as an nftables.conf reload runs, removes every table; repair rebuilds it)` });
  } else {
    for (const c of wantChains()) {
      const have = live.chains.find((x) => x.name === c.name);
      if (!have) out.push({ kind: 'missing', what: `chain ${c.name}` });
      else if (chainText(have) !== chainText(c)) out.push({ kind: 'changed', what: `chain ${c.name}: ${chainText(have)} instead of ${chainText(c)}` });
    }
    for (const c of live.chains) if (!wantChains().some((x) => x.name === c.name)) out.push({ kind: 'unexpected', what: `chain ${c.name}` });
    for (const s of wantSets()) {
      const have = live.sets.find((x) => x.name === s.name);
      if (!have) out.push({ kind: 'missing', what: `map ${s.name}` });
      else if (setText(have) !== setText(s)) out.push({ kind: 'changed', what: `map ${s.name}: ${setText(have)} instead of ${setText(s)}` });
    }
    for (const s of live.sets) if (!wantSets().some((x) => x.name === s.name)) out.push({ kind: 'unexpected', what: `set ${s.name}` });
    for (const [chain, rules] of want.rules) {
      const wr = rules.map(ruleText);
      const hr = live.rules.filter((r) => r.chain === chain).map(ruleText);
      const before = out.length;
      for (const t of wr) if (!hr.includes(t)) out.push({ kind: 'missing', what: `${chain}: ${t}` });
      for (const t of hr) if (!wr.includes(t)) out.push({ kind: 'unexpected', what: `${chain}: ${t}` });
      for (const t of new Set(hr)) if (hr.filter((x) => x === t).length > wr.filter((x) => x === t).length && wr.includes(t)) out.push({ kind: 'duplicate', what: `${chain}: ${t}` });
      // Order matters: every network's drops must come before any network's accepts.
      if (out.length === before && wr.join('\n') !== hr.join('\n')) out.push({ kind: 'changed', what: `${chain}: rules out of order` });
    }
    for (const [set, elems] of want.elements) {
      const have = new Map((live.elements.get(set) ?? []).map((e) => [elemKey(set, e), e]));
      for (const e of elems) {
        const h = have.get(elemKey(set, e));
        if (!h) out.push({ kind: 'missing', what: describe(set, e) });
        else if (elemText(h) !== elemText(e)) out.push({ kind: 'changed', what: `${describe(set, e)} (is ${describe(set, h)})` });
        have.delete(elemKey(set, e));
      }
      for (const h of have.values()) out.push({ kind: 'unexpected', what: describe(set, h) });
    }
  }
  for (const family of FAMILIES) out.push(...compareForward(family, live.forward[family], want.forward[family]));
  return out;
}

/**
 * Our accepts in one family's iptables FORWARD chain against the wanted ones. They matter only
 * where that family has networks (the chain is created with them) or where ours are left over.
 */
function compareForward(family: RuleFamily, fwd: LiveForward | undefined, want: readonly NftRule[]): FirewallDifference[] {
  const out: FirewallDifference[] = [];
  const tool = IPT[family].tool;
  const ours = (fwd?.rules ?? []).filter((r) => forwardAcceptTag(r) !== undefined).map(ruleText);
  const wf = want.map(ruleText);
  if (!fwd) {
    if (wf.length > 0) out.push({ kind: 'missing', what: `${tool} chain ${IPT[family].table} ${IPT[family].chain} with tsnetlink's accepts` });
    return out;
  }
  for (const t of wf) if (!ours.includes(t)) out.push({ kind: 'missing', what: `${tool} FORWARD accept ${t}${fwd.chain.policy === 'drop' ? " (its policy DROP drops this network's forwarded traffic meanwhile)" : ''}` });
  for (const t of ours) if (!wf.includes(t)) out.push({ kind: 'unexpected', what: `${tool} FORWARD accept ${t}` });
  for (const t of new Set(ours)) if (ours.filter((x) => x === t).length > 1) out.push({ kind: 'duplicate', what: `${tool} FORWARD accept ${t}` });
  return out;
}

export { CHAIN };
