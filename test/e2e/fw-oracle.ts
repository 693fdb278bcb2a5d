/**
 * Firewall oracles for the end-to-end files that run on both backends: which backend this run
 * uses ($TSNETLINK_FIREWALL, as scripts/test.mjs sets it), and for the native one what nft
 * itself reports (`nft -j list ruleset`), independent of our decoders.
 */
import { execFileSync } from 'node:child_process';
import { SAVE } from './lib.js';
import { kernelHas } from '../kernel.js';

/**
 * True when this run's networks use the native nf_tables backend: the one $TSNETLINK_FIREWALL
 * names, else the default, which is nf_tables wherever the kernel has it (src/firewall/registry.ts).
 */
export const NFT = process.env['TSNETLINK_FIREWALL'] ? process.env['TSNETLINK_FIREWALL'] === 'nftables' : kernelHas('nftables').ok;

/** `nft -j list ruleset`, parsed. */
export function nftRuleset(): any[] {
  return JSON.parse(execFileSync('nft', ['-j', 'list', 'ruleset'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })).nftables as any[];
}

/**
 * `nft list ruleset` with counters and handles blanked and the tables in name order, for
 * before/after comparisons: a rebuild (repair, or a network rm, which rewrites our table from
 * the records) deletes and remakes table inet tsnetlink, which moves it to the end of the
 * listing without changing what any rule does.
 */
export function normalizedNft(): string {
  const text = execFileSync('nft', ['list', 'ruleset'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).replace(/counter packets \d+ bytes \d+/g, 'counter').replace(/ # handle \d+/g, '');
  return (text.match(/^table [^\n]*\n[\s\S]*?^\}\n/gm) ?? []).sort().join('');
}

/** One published port as nft lists it in our maps. */
export interface NftMapping {
  map: string;
  proto: string;
  hostIp?: string;
  hostPort: number;
  to: string;
  toPort: number;
  comment?: string;
}

/** Every element of table inet tsnetlink's maps, as nft shows them. */
export function nftMappings(rs = nftRuleset()): NftMapping[] {
  const out: NftMapping[] = [];
  for (const o of rs) {
    if (!o.map || o.map.family !== 'inet' || o.map.table !== 'tsnetlink') continue;
    for (const [k, v] of o.map.elem ?? []) {
      const key: any[] = k.elem ? k.elem.val.concat : k.concat;
      const comment: string | undefined = k.elem?.comment;
      const [hostIp, proto, port] = key.length === 3 ? key : [undefined, ...key];
      out.push({ map: o.map.name, proto, ...(hostIp ? { hostIp } : {}), hostPort: Number(port), to: v.concat[0], toPort: Number(v.concat[1]), ...(comment ? { comment } : {}) });
    }
  }
  return out;
}

/** The rules of one chain of table inet tsnetlink, each as nft's JSON expression list. */
export function nftChainRules(chain: string, rs = nftRuleset()): any[][] {
  return rs.filter((o) => o.rule && o.rule.family === 'inet' && o.rule.table === 'tsnetlink' && o.rule.chain === chain).map((o) => o.rule.expr);
}

/** The rules of one chain of table inet tsnetlink that carry `comment` (`tsnetlink:NETWORK`), as nft's JSON expression lists. */
export function nftTaggedRules(chain: string, comment: string, rs = nftRuleset()): any[][] {
  return rs.filter((o) => o.rule && o.rule.family === 'inet' && o.rule.table === 'tsnetlink' && o.rule.chain === chain && o.rule.comment === comment).map((o) => o.rule.expr);
}

/** Whether a chain of table inet tsnetlink holds a rule of exactly these expressions, as `nft -j` shows them (see nftExpr). */
export function nftHasRule(chain: string, expr: readonly unknown[], rs = nftRuleset()): boolean {
  const want = JSON.stringify(expr);
  return nftChainRules(chain, rs).some((r) => JSON.stringify(r) === want);
}

const match = (left: unknown, right: unknown, op = '=='): unknown => ({ match: { op, left, right } });

/** nft's JSON of the predicates and statements our rules use, for nftHasRule. */
export const nftExpr = {
  /** `ip saddr 192.168.10.0/24`, `ip6 saddr fd00:10::/64` */
  saddr: (protocol: 'ip' | 'ip6', addr: string, len: number): unknown => match({ payload: { protocol, field: 'saddr' } }, { prefix: { addr, len } }),
  /** `oifname "ds"`, `oifname != "ds"` */
  oifname: (name: string, op: '==' | '!=' = '=='): unknown => match({ meta: { key: 'oifname' } }, name, op),
  /** `iifname "ds"` */
  iifname: (name: string, op: '==' | '!=' = '=='): unknown => match({ meta: { key: 'iifname' } }, name, op),
  /** `meta nfproto ipv4|ipv6` */
  nfproto: (p: 'ipv4' | 'ipv6'): unknown => match({ meta: { key: 'nfproto' } }, p),
  /** `ct status dnat` */
  ctDnat: match({ ct: { key: 'status' } }, 'dnat', 'in'),
  /** `fib saddr type local` */
  fibSaddrLocal: match({ fib: { result: 'type', flags: ['saddr'] } }, 'local'),
  masquerade: { masquerade: null },
  drop: { drop: null },
  accept: { accept: null },
};

/** A base chain of table inet tsnetlink: its type, hook, priority and policy. */
export function nftChain(name: string, rs = nftRuleset()): any {
  return rs.find((o) => o.chain && o.chain.family === 'inet' && o.chain.table === 'tsnetlink' && o.chain.name === name)?.chain;
}

/** Whether table inet tsnetlink exists. */
export function nftHasTable(rs = nftRuleset()): boolean {
  return rs.some((o) => o.table && o.table.family === 'inet' && o.table.name === 'tsnetlink');
}

/** Everything in the ruleset that names an endpoint: its map elements (by comment or DNAT target). */
export function nftOf(ep: { network: string; id: string; ip: string }, rs = nftRuleset()): NftMapping[] {
  return nftMappings(rs).filter((m) => m.comment === `tsnetlink:${ep.network}/${ep.id}` || m.to === ep.ip);
}

/**
 * Which backend holds tsnetlink's rules, as iptables-save and nft report them: a file that runs
 * on both backends asserts it, so a run meant for one cannot pass on the other's rules.
 */
export function rulesHeldBy(): 'iptables' | 'nftables' | 'both' | 'none' {
  const ipt = execFileSync(SAVE, { encoding: 'utf8' }).includes(':TSN-');
  const nft = nftChainRules('forward').length > 0;
  return ipt && nft ? 'both' : ipt ? 'iptables' : nft ? 'nftables' : 'none';
}
