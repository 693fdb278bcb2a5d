/**
 * The nf_tables ruleset tsnetlink owns, computed from the desired state (pure). One table,
 * `inet tsnetlink`, holds the same policy as the iptables backend's TSN-* chains in both
 * iptables and ip6tables: forwarding into a bridge only for replies, published ports (ct status
 * dnat) and, with icc, the bridge's own containers; isolation between networks; masquerade,
 * hairpin and host-sourced masquerade of each family's subnet; DNAT of published ports for
 * local destinations only; the raw-priority guard of 127/8 (IPv4 only: the kernel drops a packet
 * for ::1 that arrives on any interface but lo before netfilter sees it). A published port is one
 * element of a map per family (`meta l4proto . th dport`, or with a host IP `ip daddr | ip6
 * daddr . meta l4proto . th dport`), so adding or removing one never rewrites a chain.
 *
 * The forward rules match interfaces only, so one set serves both families of a network, as the
 * iptables backend writes the same TSN-FORWARD rules into iptables and ip6tables. For a family
 * a network has no subnet of they are at least as strict as the iptables backend, which writes
 * nothing there and leaves such packets to that family's FORWARD policy: inbound is still only
 * replies, published ports and siblings, and what goes out, accepted here, still meets that
 * family's iptables FORWARD chain, where only networks with a subnet of the family get accepts.
 * NAT rules are per family (`meta nfproto`), exactly as each family's iptables backend writes them.
 *
 * Beside it, in iptables-nft's `ip filter` and `ip6 filter` FORWARD chains, one accept per
 * bridge and direction for each family the network has (tagged like the iptables backend's
 * rules): an accept in our table does not stop another table's drop, and `iptables -P FORWARD
 * DROP` or `ip6tables -P FORWARD DROP` (Docker's, or ours) is such a drop.
 */
import { IPPROTO, NFT_SET_F, NFT_TYPE, PRIORITY, type Family } from '../../netlink/nftables/constants.js';
import { accept, concat, concatType, counter, u32le, ctState, ctStatus, dnatMap, drop, fibAddrType, field, ifname, ipv4Prefix, ipv6Prefix, jump, masquerade, nfproto } from '../../netlink/nftables/match.js';
import type { NftChain, NftElement, NftRule, NftSet } from '../../netlink/nftables/objects.js';
import { writeUdata } from '../../netlink/nftables/schemas.js';
import { ValidationError } from '../../errors.js';
import { FirewallDriftError, type FirewallNetwork, type FirewallState } from '../types.js';
import { networkFor, stateFor } from '../family.js';
import { checkEndpoints, checkNetworks, type Ep, type Mapping, type Net, type RuleFamily } from '../spec.js';
import { formatIPv4, formatIPv6 } from '../../ip/bytes.js';

/** The table and family of every tsnetlink object. */
export const TABLE = 'tsnetlink';
export const FAMILY: Family = 'inet';
/** Shown by `nft list table inet tsnetlink`. */
export const TABLE_COMMENT = 'managed by tsnetlink: rebuilt from its state by tsnetlink network repair';

/** The families our rules are written for, in the order they are written. */
export const FAMILIES: readonly RuleFamily[] = [4, 6];

export const CHAIN = {
  forward: 'forward',
  isolation: 'isolation',
  hostports: 'hostports',
  prerouting: 'prerouting',
  output: 'output',
  postrouting: 'postrouting',
  raw: 'raw-prerouting',
} as const;

export const SET = { ports: 'ports', hostipPorts: 'hostip-ports', ports6: 'ports6', hostipPorts6: 'hostip-ports6' } as const;

/** The two maps of published ports of each family: without and with a host IP. */
export const MAPS: Readonly<Record<RuleFamily, { ports: string; hostip: string }>> = {
  4: { ports: SET.ports, hostip: SET.hostipPorts },
  6: { ports: SET.ports6, hostip: SET.hostipPorts6 },
};

/** iptables-nft's tables and chains that our forward accepts go into: `ip filter FORWARD` and `ip6 filter FORWARD`. */
export const IPT: Readonly<Record<RuleFamily, { family: Family; table: 'filter'; chain: 'FORWARD'; tool: string }>> = {
  4: { family: 'ip', table: 'filter', chain: 'FORWARD', tool: 'iptables' },
  6: { family: 'ip6', table: 'filter', chain: 'FORWARD', tool: 'ip6tables' },
};

/** Rule comments: `tsnetlink:NETWORK`, `tsnetlink:NETWORK/ID` for elements, and two global tags. */
export const TAG = {
  prefix: 'tsnetlink:',
  network: (name: string): string => `tsnetlink:${name}`,
  endpoint: (network: string, id: string): string => `tsnetlink:${network}/${id}`,
  hostports: 'tsnetlink:hostports',
  guard: 'tsnetlink:localnet-guard',
} as const;

/** The desired state as our table sees it: each family's validated networks and endpoints (iptables/family.ts's views). */
export interface DesiredNft {
  networks: Readonly<Record<RuleFamily, readonly Net[]>>;
  endpoints: Readonly<Record<RuleFamily, readonly Ep[]>>;
}

/** One network in the views of the families it has a subnet of (the same name, bridge and options in each). */
export type NetViews = Partial<Record<RuleFamily, Net>>;

/**
 * The networks of both families' views, joined by name and sorted by name (pure; no nft
 * equivalent). The forward rules of one table match interfaces, so two networks of different
 * families may not share a bridge (the iptables backend, with a ruleset per family, could not tell).
 */
export function joinViews(networks: DesiredNft['networks']): NetViews[] {
  const byName = new Map<string, NetViews>();
  for (const family of FAMILIES) for (const n of networks[family]) byName.set(n.name, { ...byName.get(n.name), [family]: n });
  const bridges = new Map<string, string>();
  for (const [name, v] of byName) {
    const [a, b] = [v[4], v[6]];
    if (a && b && (a.bridge !== b.bridge || a.internal !== b.internal || a.icc !== b.icc || a.gatewayMode !== b.gatewayMode)) {
      throw new ValidationError('networks', `network "${name}" differs between its IPv4 and IPv6 views`);
    }
    const bridge = (a ?? b)!.bridge;
    const other = bridges.get(bridge);
    if (other !== undefined) throw new ValidationError('networks', `networks "${other}" and "${name}" share bridge ${bridge}`);
    bridges.set(bridge, name);
  }
  return [...byName.keys()].sort().map((k) => byName.get(k)!);
}

/** Our chains, base chains with their hooks, in creation order (regular chains first: base chains jump to them): `nft add chain inet tsnetlink NAME [{ type T hook H priority P; }]`. */
export function chains(): NftChain[] {
  const c = (name: string, hook?: NftChain['hook'], type?: NftChain['type']): NftChain => ({ family: FAMILY, table: TABLE, name, ...(hook ? { hook, type: type ?? 'filter', policy: 'accept' } : {}) });
  return [
    c(CHAIN.isolation),
    c(CHAIN.hostports),
    c(CHAIN.forward, { hook: 'forward', priority: PRIORITY.filter }),
    c(CHAIN.prerouting, { hook: 'prerouting', priority: PRIORITY.dstnat }, 'nat'),
    c(CHAIN.output, { hook: 'output', priority: PRIORITY.dstnat }, 'nat'),
    c(CHAIN.postrouting, { hook: 'postrouting', priority: PRIORITY.srcnat }, 'nat'),
    c(CHAIN.raw, { hook: 'prerouting', priority: PRIORITY.raw }),
  ];
}

/** nft's "typeof" hint of a concatenation: its expression kind (13, a concat) and no details. */
const TYPEOF_CONCAT = writeUdata([[0, u32le(13)], [1, Buffer.alloc(0)]]);
/**
 * nft's userdata for a map of concatenations, as nft 1.0.6 writes it: key and data byte order
 * (0: each field's own), typeof hints for both, and "data is not an interval".
 */
const CONCAT_MAP_UDATA = writeUdata([[0, u32le(0)], [1, u32le(0)], [3, TYPEOF_CONCAT], [4, TYPEOF_CONCAT], [6, u32le(0)]]);

/** The address type of each family in a map's key or data. */
const ADDR_TYPE: Readonly<Record<RuleFamily, number>> = { 4: NFT_TYPE.ipv4_addr, 6: NFT_TYPE.ipv6_addr };
const ADDR_LEN: Readonly<Record<RuleFamily, number>> = { 4: 4, 6: 16 };

/**
 * The four maps of published ports, two per family (NFTA_SET_ID, which the kernel demands,
 * numbers them within a transaction): `nft add map inet tsnetlink ports6 { type inet_proto .
 * inet_service : ipv6_addr . inet_service; }`, and with the host address first in the key for
 * hostip-ports[6]; each field padded to 4 bytes.
 */
export function sets(): NftSet[] {
  return FAMILIES.flatMap((family, i): NftSet[] => {
    const map = { family: FAMILY, table: TABLE, flags: NFT_SET_F.MAP, dataType: concatType([ADDR_TYPE[family], NFT_TYPE.inet_service]), dataLen: ADDR_LEN[family] + 4, userdata: CONCAT_MAP_UDATA };
    return [
      { ...map, name: MAPS[family].ports, id: 2 * i + 1, keyType: concatType([NFT_TYPE.inet_proto, NFT_TYPE.inet_service]), keyLen: 8 },
      { ...map, name: MAPS[family].hostip, id: 2 * i + 2, keyType: concatType([ADDR_TYPE[family], NFT_TYPE.inet_proto, NFT_TYPE.inet_service]), keyLen: ADDR_LEN[family] + 8 },
    ];
  });
}

const rule = (chain: string, exprs: NftRule['exprs'], comment: string): NftRule => ({ family: FAMILY, table: TABLE, chain, exprs, comment });
const proto = (family: RuleFamily): 'ipv4' | 'ipv6' => (family === 4 ? 'ipv4' : 'ipv6');

/**
 * Rules that do not depend on any network: the DNAT entry points (`fib daddr type local jump
 * hostports`), the DNAT maps of each family (`meta nfproto ipv6 dnat ip6 to meta l4proto . th
 * dport map @ports6`: each rule only for its own family's packets, so a port published on one
 * family only is not looked up for the other), the localnet guard.
 */
export function globalRules(): NftRule[] {
  const dnat = FAMILIES.flatMap((family) => {
    const nat = family === 4 ? 'ip' : 'ip6';
    return [
      // A key with `ip daddr` / `ip6 daddr` carries its own `meta nfproto` match.
      rule(CHAIN.hostports, dnatMap(MAPS[family].hostip, { daddr: true }, nat), TAG.hostports),
      rule(CHAIN.hostports, [...nfproto(proto(family)), ...dnatMap(MAPS[family].ports, { daddr: false }, nat)], TAG.hostports),
    ];
  });
  return [
    // fib daddr type local: only traffic addressed to this host is mapped; a container talking
    // to a remote address on a published port number is left alone.
    rule(CHAIN.prerouting, [...fibAddrType('daddr'), jump(CHAIN.hostports)], TAG.hostports),
    rule(CHAIN.output, [...fibAddrType('daddr'), jump(CHAIN.hostports)], TAG.hostports),
    ...dnat,
    // route_localnet=1 on a bridge lets 127/8 be routed: nothing may arrive for 127/8 on an
    // interface other than lo (a container reaching the host's 127.0.0.1 services, or a
    // neighbour sending to 127.0.0.1:PORT to reach a localhost-only mapping).
    rule(CHAIN.raw, [...ifname('iif', 'lo', 'neq'), ...nfproto('ipv4'), ...ipv4Prefix('daddr', '127.0.0.0/8'), drop()], TAG.guard),
  ];
}

/**
 * One network's rules (in the views of the families it has), by chain; forward rules carry
 * their group (every network's drops come before any accept). The forward rules (`oifname BR ct
 * state established,related accept`, ...) come once, whichever families the network has; the
 * NAT rules (`ip6 saddr CIDR oifname != BR masquerade`, ...) once per family.
 */
export function networkRules(views: NetViews): { group: number; rule: NftRule }[] {
  const n = views[4] ?? views[6];
  if (!n) throw new ValidationError('network', 'has no subnet of either family');
  const c = TAG.network(n.name);
  const br = n.bridge;
  const out: { group: number; rule: NftRule }[] = [{ group: 1, rule: rule(CHAIN.forward, [...ifname('oif', br), ...ctState(['established', 'related']), accept()], c) }];
  if (!n.internal) out.push({ group: 2, rule: rule(CHAIN.forward, [...ifname('oif', br), ...ctStatus(['dnat']), accept()], c) });
  if (n.icc) out.push({ group: 3, rule: rule(CHAIN.forward, [...ifname('iif', br), ...ifname('oif', br), accept()], c) });
  if (n.gatewayMode === 'nat') out.push({ group: 4, rule: rule(CHAIN.forward, [...ifname('oif', br), drop()], c) });
  else {
    out.push({ group: 4, rule: rule(CHAIN.forward, [...ifname('oif', br), jump(CHAIN.isolation)], c) });
    out.push({ group: 4, rule: rule(CHAIN.forward, [...ifname('oif', br), accept()], c) });
  }
  out.push({ group: 5, rule: rule(CHAIN.forward, [...ifname('iif', br), n.internal ? drop() : accept()], c) });
  if (n.internal) return out;
  for (const family of FAMILIES) {
    const v = views[family];
    if (!v) continue;
    const src = [...nfproto(proto(family)), ...(family === 4 ? ipv4Prefix('saddr', v.subnet.cidr) : ipv6Prefix('saddr', v.subnet.cidr))];
    // NAT66 as Docker and netavark do it: the IPv6 subnet leaves masqueraded too.
    if (v.gatewayMode !== 'routed') out.push({ group: 1, rule: rule(CHAIN.postrouting, [...src, ...ifname('oif', br, 'neq'), masquerade()], c) });
    // Hairpin: a container reaching a published port of its own bridge must see the reply come
    // from the host, or the reply would come straight from the other container and be dropped.
    out.push({ group: 1, rule: rule(CHAIN.postrouting, [...src, ...ifname('oif', br), ...ctStatus(['dnat']), masquerade()], c) });
    // Host sources (and 127.0.0.1) towards a published port, for the families the network has
    // only: 127/8 must not leave on the bridge, and a family the bridge has no address of has
    // nothing to masquerade to.
    out.push({ group: 1, rule: rule(CHAIN.postrouting, [...nfproto(proto(family)), ...ifname('oif', br), ...fibAddrType('saddr'), masquerade()], c) });
  }
  return out;
}

/** Every rule of our table for the networks, by chain, in order: what `nft list table inet tsnetlink` shows, without elements. */
export function rulesFor(networks: DesiredNft['networks']): Map<string, NftRule[]> {
  const by = new Map<string, NftRule[]>(chains().map((c) => [c.name, []]));
  const add = (r: NftRule): void => void by.get(r.chain)?.push(r);
  const nets = joinViews(networks);
  if (nets.length === 0) return by;
  for (const r of globalRules()) add(r);
  const all = nets.flatMap((v) => networkRules(v));
  for (const group of [1, 2, 3, 4, 5]) for (const r of all) if (r.group === group) add(r.rule);
  // Filled only when a network lets outside traffic in, so that other networks still cannot.
  const views = nets.map((v) => (v[4] ?? v[6])!);
  if (views.some((n) => n.gatewayMode !== 'nat')) for (const n of views) add(rule(CHAIN.isolation, [...ifname('iif', n.bridge), drop()], TAG.network(n.name)));
  return by;
}

/** The key of one mapping in `family`'s maps, and which map (with a host IP, `hostip-ports[6]`): `nft delete element inet tsnetlink ports6 { tcp . 8080 }`. */
export function mappingKey(m: Pick<Mapping, 'hostIp' | 'hostPort' | 'protocol'>, family: RuleFamily = 4): { set: string; key: Buffer } {
  const p = field.proto(IPPROTO[m.protocol]);
  const port = field.port(m.hostPort);
  if (m.hostIp === undefined) return { set: MAPS[family].ports, key: concat([p, port]) };
  return { set: MAPS[family].hostip, key: concat([family === 4 ? field.ipv4(m.hostIp) : field.ipv6(m.hostIp), p, port]) };
}

/** The map element of one mapping in `family`'s maps, tagged with the endpoint: `nft add element inet tsnetlink ports6 { tcp . 8080 comment "tsnetlink:NET/ID" : fd00:10::3 . 80 }`. */
export function mappingElement(network: string, id: string, ip: string, m: Mapping, family: RuleFamily = 4): { set: string; element: NftElement } {
  const { set, key } = mappingKey(m, family);
  const to = family === 4 ? field.ipv4(ip) : field.ipv6(ip);
  return { set, element: { key, data: concat([to, field.port(m.containerPort)]), comment: TAG.endpoint(network, id) } };
}

/** The map elements of each family's endpoints' published ports, by map (every map present): the `nft add element` of each. */
export function elementsFor(endpoints: DesiredNft['endpoints']): Map<string, NftElement[]> {
  const by = new Map<string, NftElement[]>(sets().map((s) => [s.name, []]));
  for (const family of FAMILIES) {
    for (const ep of endpoints[family]) for (const m of ep.mappings) {
      const { set, element } = mappingElement(ep.network.name, ep.id, ep.ip, m, family);
      by.get(set)?.push(element);
    }
  }
  return by;
}

/** Each family's validated view of the networks (iptables/family.ts's networkFor): IPv4 subnets for the IPv4 rules, IPv6 ones for the IPv6 rules (pure; no nft equivalent). */
export function networkViews(networks: readonly FirewallNetwork[]): DesiredNft['networks'] {
  for (const n of networks) {
    if (n.subnet === undefined && n.subnet6 === undefined) throw new ValidationError(`network ${n.name}`, 'has neither an IPv4 nor an IPv6 subnet');
  }
  const nets = { 4: checkNetworks(networks.flatMap((n) => networkFor(n, 4) ?? []), 4), 6: checkNetworks(networks.flatMap((n) => networkFor(n, 6) ?? []), 6) };
  joinViews(nets);
  return nets;
}

/** The whole desired state in each family's view (iptables/family.ts's stateFor), validated: what `nft list table inet tsnetlink` should show, as values. */
export function desiredNft(state: FirewallState): DesiredNft {
  const names = new Set(state.networks.map((n) => n.name));
  for (const e of state.endpoints) {
    if (e.mappings.length > 0 && !names.has(e.network)) throw new FirewallDriftError(`endpoint ${e.id} belongs to network ${e.network}, which the desired state lacks`);
  }
  const networks = networkViews(state.networks);
  const endpoints = { 4: checkEndpoints(stateFor(state, 4).endpoints, networks[4], 4), 6: checkEndpoints(stateFor(state, 6).endpoints, networks[6], 6) };
  return { networks, endpoints };
}

/** An element in words, for check and repair (what `nft list map inet tsnetlink SET` shows as `tcp . 80 : 192.168.10.4 . 80`): "map ports tcp 80 -> 192.168.10.4:80 (endpoint testbridge/c3)", "map ports6 tcp 8080 -> [fd00:10::3]:80 (...)". */
export function describeElement(set: string, e: NftElement): string {
  const family: RuleFamily = set === MAPS[6].ports || set === MAPS[6].hostip ? 6 : 4;
  const len = family === 4 ? 4 : 16;
  const addr = (b: Buffer): string => (family === 4 ? formatIPv4(b) : `[${formatIPv6(b)}]`);
  const k = e.key;
  const hostip = set === MAPS[family].hostip;
  const [hostIp, proto, port] = hostip && k.length >= len + 8 ? [`${addr(k)}:`, k[len], k.readUInt16BE(len + 4)] : k.length >= 8 ? ['', k[0], k.readUInt16BE(4)] : ['', undefined, '?'];
  const d = e.data;
  const to = d && d.length >= len + 4 ? `${addr(d)}:${d.readUInt16BE(len)}` : '?';
  const protoName = proto === 6 ? 'tcp' : proto === 17 ? 'udp' : `proto ${proto}`;
  const owner = e.comment?.startsWith(TAG.prefix) ? ` (endpoint ${e.comment.slice(TAG.prefix.length)})` : '';
  return `map ${set} ${protoName} ${hostIp}${port} -> ${to}${owner}`;
}

/** The xt_comment_info of `-m comment --comment TEXT`: the text NUL-padded to 256 bytes. */
export function xtComment(text: string): Buffer {
  const b = Buffer.alloc(256);
  b.write(text.slice(0, 255), 'utf8');
  return b;
}

/**
 * `iptables -A FORWARD -o|-i BRIDGE -m comment --comment "tsnetlink:NETWORK" -j ACCEPT` (with
 * `family` 6, `ip6tables -A ...`), encoded as iptables-nft itself encodes it, so iptables-save
 * (ip6tables-save) shows it as that line.
 */
export function forwardAccept(n: Pick<Net, 'name' | 'bridge'>, dir: 'iif' | 'oif', family: RuleFamily = 4): NftRule {
  const t = IPT[family];
  return {
    family: t.family,
    table: t.table,
    chain: t.chain,
    exprs: [...ifname(dir, n.bridge, 'eq', 'iptables'), { type: 'match', name: 'comment', rev: 0, info: xtComment(TAG.network(n.name)) }, counter(), accept()],
    compat: { proto: 0, flags: 0 },
  };
}

/** Our accepts in `family`'s iptables FORWARD chain for `nets` (that family's networks): traffic to, then from, each bridge. */
export function forwardAccepts(nets: readonly Pick<Net, 'name' | 'bridge'>[], family: RuleFamily = 4): NftRule[] {
  return nets.flatMap((n) => [forwardAccept(n, 'oif', family), forwardAccept(n, 'iif', family)]);
}

/** The tag of one of our accepts in the iptables FORWARD chain, read from its comment match; undefined for foreign rules. */
export function forwardAcceptTag(r: NftRule): string | undefined {
  const m = r.exprs.find((e) => e.type === 'match' && e.name === 'comment');
  if (!m || m.type !== 'match') return undefined;
  const text = m.info.toString('utf8').replace(/\0.*$/s, '');
  return text.startsWith(TAG.prefix) ? text : undefined;
}
