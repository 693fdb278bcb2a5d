/**
 * What of tsnetlink's ruleset is live in the kernel, read over netlink, and how it differs from
 * the desired one (pure comparison). Rules are compared by their decoded expressions, so a rule
 * reads the same whether we built it or the kernel dumped it back.
 */
import type { FirewallDifference } from '../firewall/types.js';
import { describeExpr } from './expr.js';
import type { Nft } from './nft.js';
import type { NftChain, NftElement, NftRule, NftSet } from './objects.js';
import { CHAIN, FAMILY, IPT, TABLE, chains as wantChains, forwardAcceptTag, sets as wantSets } from './ruleset.js';

/** Our table as it is, and our accepts in the iptables FORWARD chain. */
export interface LiveRuleset {
  /** False when the table is gone (flushed with `nft flush ruleset`, or never made). */
  table: boolean;
  chains: NftChain[];
  sets: NftSet[];
  rules: NftRule[];
  elements: Map<string, NftElement[]>;
  /** iptables-nft's FORWARD chain: undefined when it does not exist. */
  forward?: { chain: NftChain; rules: NftRule[]; otherChains: number };
}

function missingTable(e: unknown): boolean {
  return (e as { code?: string }).code === 'ENOENT';
}

/** Reads our table (chains, sets, rules and, with `elements`, map elements) and iptables' FORWARD chain. */
export function readLive(nft: Nft, opts: { elements: boolean }): LiveRuleset {
  const live: LiveRuleset = { table: false, chains: [], sets: [], rules: [], elements: new Map() };
  // A dump filtered by a table that does not exist is empty, not ENOENT: ask for the table.
  if (!nft.listTables(FAMILY).some((t) => t.name === TABLE)) {
    const fwd = readForward(nft);
    if (fwd) live.forward = fwd;
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
  const fwd = readForward(nft);
  if (fwd) live.forward = fwd;
  return live;
}

/** iptables-nft's `ip filter` FORWARD chain and its rules, if the chain exists. */
export function readForward(nft: Nft): LiveRuleset['forward'] | undefined {
  try {
    if (!nft.listTables(IPT.family).some((t) => t.name === IPT.table)) return undefined;
    const all = [...nft.listChains(IPT.family, IPT.table)];
    const chain = all.find((c) => c.name === IPT.chain);
    if (!chain) return undefined;
    return { chain, rules: [...nft.listRules(IPT.family, IPT.table, IPT.chain)], otherChains: all.length - 1 };
  } catch (e) {
    if (missingTable(e)) return undefined;
    throw e;
  }
}

/** A rule's identity for comparisons: its comment and its expressions, as text. */
export function ruleText(r: NftRule): string {
  return `${r.exprs.map(describeExpr).join('; ')}${r.comment !== undefined ? ` # ${r.comment}` : ''}`;
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

/** Every difference between the live ruleset and the desired one ([] when they agree). */
export function compare(live: LiveRuleset, want: { rules: Map<string, NftRule[]>; elements: Map<string, NftElement[]>; forward: NftRule[]; any: boolean }, describe: (set: string, e: NftElement) => string): FirewallDifference[] {
  const out: FirewallDifference[] = [];
  if (!want.any) {
    if (live.table) out.push({ kind: 'unexpected', what: `table ${FAMILY} ${TABLE} (no network needs it)` });
    for (const r of live.forward?.rules ?? []) if (forwardAcceptTag(r)) out.push({ kind: 'unexpected', what: `iptables FORWARD accept ${forwardAcceptTag(r)}` });
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
  // Our accepts matter only where iptables' FORWARD chain exists (it is created with them).
  const fr = live.forward?.rules ?? [];
  const ours = fr.filter((r) => forwardAcceptTag(r) !== undefined).map(ruleText);
  const wf = want.forward.map(ruleText);
  if (!live.forward) out.push({ kind: 'missing', what: `iptables chain ${IPT.table} ${IPT.chain} with tsnetlink's accepts` });
  else {
    for (const t of wf) if (!ours.includes(t)) out.push({ kind: 'missing', what: `iptables FORWARD accept ${t}${live.forward.chain.policy === 'drop' ? ' (its policy DROP drops this network\'s forwarded traffic meanwhile)' : ''}` });
    for (const t of ours) if (!wf.includes(t)) out.push({ kind: 'unexpected', what: `iptables FORWARD accept ${t}` });
    for (const t of new Set(ours)) if (ours.filter((x) => x === t).length > 1) out.push({ kind: 'duplicate', what: `iptables FORWARD accept ${t}` });
  }
  return out;
}

export { CHAIN };
