/**
 * The bridge-port filter: IPv6 multicast listener reports (MLD) sent by containers are dropped
 * where they enter the bridge. A Linux bridge floods MLDv2 reports (and, with no querier, MLDv1
 * ones) to every port, and every container with IPv6 sends several of them when its interface
 * comes up: with 1,000 containers on a bridge, each new one cost 1,000 copies delivered into
 * 1,000 network namespaces, three to four times over, and each connect was several times slower
 * than on an empty bridge. Nothing
 * on a container network needs those reports: a bridge without a multicast querier (the
 * default, and ours) floods multicast to every port whatever the reports say, and the
 * containers themselves ignore each other's reports. The one thing given up is a multicast
 * router on the host or in a container learning the containers' groups; the README says so.
 *
 * The filter is one table, `bridge tsnetlink`, whose prerouting chain drops the three report
 * types (MLDv1 report and done, MLDv2 report) arriving on a port of the device group every
 * container's host-side veth is put in (PORT_GROUP): it matches no other bridge's traffic, and
 * a veth carries its group from the moment it is configured. It exists while some network has
 * an IPv6 subnet and is removed with the last one; check, prune and repair see and restore it.
 */
import { TsnetlinkError } from '../../errors.js';
import { PORT_GROUP, type FirewallDifference, type PortFilter } from '../types.js';
import { Nft } from '../../netlink/nftables/nft.js';
import * as O from '../../netlink/nftables/objects.js';
import { ruleText } from './live.js';
import { drop, u32le } from '../../netlink/nftables/match.js';
import type { Expr } from '../../netlink/nftables/expr.js';
import type { NftChain, NftRule } from '../../netlink/nftables/objects.js';
import { NFT_REG } from '../../netlink/nftables/constants.js';

/** The table and chain of the filter. */
export const PORT_FILTER = { family: 'bridge', table: 'tsnetlink', chain: 'prerouting', comment: 'tsnetlink:membership-reports' } as const;
/** The bridge family's "filter" priority (NF_BR_PRI_FILTER_BRIDGED). */
const BRIDGE_FILTER_PRIORITY = -200;
/** ICMPv6 types of listener reports: MLDv1 report (131) and done (132), MLDv2 report (143). */
export const REPORT_TYPES = [131, 132, 143] as const;

const R1 = NFT_REG.R1;

/**
 * `meta iifgroup GROUP icmpv6 type TYPE drop`, as nft compiles it in a bridge table: the
 * ingress port's group, then nft's dependencies of an icmpv6 match (ether type ip6, meta l4proto
 * ipv6-icmp, which skips the hop-by-hop header MLD carries), then the type byte.
 */
export function reportDropExprs(type: number, group = PORT_GROUP): Expr[] {
  return [
    { type: 'meta', key: 'iifgroup', dreg: R1 },
    { type: 'cmp', sreg: R1, op: 'eq', data: u32le(group) },
    { type: 'payload', base: 'll', offset: 12, len: 2, dreg: R1 },
    { type: 'cmp', sreg: R1, op: 'eq', data: Buffer.from([0x86, 0xdd]) },
    { type: 'meta', key: 'l4proto', dreg: R1 },
    { type: 'cmp', sreg: R1, op: 'eq', data: Buffer.from([58]) },
    { type: 'payload', base: 'transport', offset: 0, len: 1, dreg: R1 },
    { type: 'cmp', sreg: R1, op: 'eq', data: Buffer.from([type]) },
    drop(),
  ];
}

/** The filter's chain: `type filter hook prerouting priority filter; policy accept`. */
export function portFilterChain(): NftChain {
  return { family: PORT_FILTER.family, table: PORT_FILTER.table, name: PORT_FILTER.chain, hook: { hook: 'prerouting', priority: BRIDGE_FILTER_PRIORITY }, type: 'filter', policy: 'accept' };
}

/** The filter's rules, one per report type. */
export function portFilterRules(): NftRule[] {
  return REPORT_TYPES.map((t) => ({ family: PORT_FILTER.family, table: PORT_FILTER.table, chain: PORT_FILTER.chain, exprs: reportDropExprs(t), comment: PORT_FILTER.comment }));
}

/** Keeps the bridge-port filter present exactly when it is wanted. */
/** Errors that say this kernel has no nf_tables, or no bridge family in it: the filter is then left out. */
const UNSUPPORTED = new Set(['EPROTONOSUPPORT', 'EAFNOSUPPORT', 'EOPNOTSUPP']);

/**
 * The filter over a native nf_tables socket (whichever firewall backend serves the networks:
 * the iptables tools have no match for a device group in a bridge table). Without nf_tables the
 * filter is skipped: it saves work and changes no policy.
 */
export class NftPortFilter implements PortFilter {
  private socket: Nft | undefined;
  private unsupported = false;

  constructor(private readonly open: () => Nft = () => Nft.open()) {}

  private with<T>(fallback: T, fn: (nft: Nft) => T): T {
    if (this.unsupported) return fallback;
    let nft: Nft;
    try {
      nft = this.socket ??= this.open();
    } catch (e) {
      if (!isUnsupported(e)) throw e;
      this.unsupported = true;
      return fallback;
    }
    try {
      return fn(nft);
    } catch (e) {
      // Replies of a failed exchange may still be queued on the socket: a new one next time.
      this.socket = undefined;
      nft.close();
      if (isUnsupported(e)) {
        this.unsupported = true;
        return fallback;
      }
      throw e;
    }
  }

  /** Reads what the filter's table holds: undefined when there is no table. */
  private live(nft: Nft): { chain: NftChain | undefined; rules: NftRule[] } | undefined {
    const table = nft.listTables(PORT_FILTER.family).find((t) => t.name === PORT_FILTER.table);
    if (!table) return undefined;
    const chain = nft.listChains(PORT_FILTER.family, PORT_FILTER.table).find((c) => c.name === PORT_FILTER.chain);
    return { chain, rules: chain ? [...nft.listRules(PORT_FILTER.family, PORT_FILTER.table, PORT_FILTER.chain)] : [] };
  }

  private problems(live: ReturnType<NftPortFilter['live']>, wanted: boolean): FirewallDifference[] {
    const what = `bridge ${PORT_FILTER.table} table (drops containers' multicast listener reports)`;
    if (!wanted) return live ? [{ kind: 'unexpected', what }] : [];
    if (!live) return [{ kind: 'missing', what }];
    const want = portFilterChain();
    const c = live.chain;
    if (!c || c.hook?.hook !== want.hook?.hook || c.hook?.priority !== want.hook?.priority || (c.policy ?? 'accept') !== 'accept' || (c.type ?? 'filter') !== 'filter') return [{ kind: 'changed', what: `${what}: its prerouting chain` }];
    const have = live.rules.map(ruleText).join('\n');
    return have === portFilterRules().map(ruleText).join('\n') ? [] : [{ kind: 'changed', what: `${what}: its rules` }];
  }

  /** `nft add table bridge tsnetlink; nft add chain bridge tsnetlink prerouting { type filter hook prerouting priority filter; }; nft add rule ... icmpv6 type mld2-listener-report drop` (or `nft delete table bridge tsnetlink`) */
  sync(wanted: boolean): void {
    this.with(undefined, (nft) => {
      const live = this.live(nft);
      if (this.problems(live, wanted).length === 0) return;
      // Rebuilt whole in one transaction: the table is ours and holds nothing else.
      const reqs = live ? [O.delTableRequest(PORT_FILTER.family, PORT_FILTER.table)] : [];
      if (wanted) {
        reqs.push(O.addTableRequest({ family: PORT_FILTER.family, name: PORT_FILTER.table, comment: 'managed by tsnetlink: drops containers\' multicast listener reports' }));
        reqs.push(O.addChainRequest(portFilterChain()));
        for (const r of portFilterRules()) reqs.push(O.addRuleRequest(r));
      }
      nft.commit(reqs);
    });
  }

  /** The differences `tsnetlink network check` reports for the filter. */
  diff(wanted: boolean): FirewallDifference[] {
    return this.with([], (nft) => this.problems(this.live(nft), wanted));
  }

  close(): void {
    this.socket?.close();
    this.socket = undefined;
  }
}

function isUnsupported(e: unknown): boolean {
  return e instanceof TsnetlinkError && UNSUPPORTED.has(e.code);
}
