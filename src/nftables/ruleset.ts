/**
 * The nf_tables ruleset tsnetlink owns, computed from the desired state (pure). One table,
 * `inet tsnetlink`, holds the same policy as the iptables backend's TSN-* chains: forwarding
 * into a bridge only for replies, published ports (ct status dnat) and, with icc, the bridge's
 * own containers; isolation between networks; masquerade, hairpin and host-sourced masquerade;
 * DNAT of published ports for local destinations only; the raw-priority guard of 127/8. A
 * published port is one element of a map (`meta l4proto . th dport`, or with a host IP
 * `ip daddr . meta l4proto . th dport`), so adding or removing one never rewrites a chain.
 *
 * Beside it, in iptables-nft's `ip filter` FORWARD chain, one accept per bridge and direction
 * (tagged like the iptables backend's rules): an accept in our table does not stop another
 * table's drop, and `iptables -P FORWARD DROP` (Docker's, or ours) is such a drop.
 */
import { IPPROTO, NFT_SET_F, NFT_TYPE, PRIORITY, type Family } from './constants.js';
import { accept, concat, concatType, counter, ctState, ctStatus, dnatMap, drop, fibAddrType, field, ifname, ipv4Prefix, jump, masquerade, nfproto } from './match.js';
import type { NftChain, NftElement, NftRule, NftSet } from './objects.js';
import { writeUdata } from './schemas.js';
import type { Ep, Mapping, Net } from '../iptables/spec.js';

/** The table and family of every tsnetlink object. */
export const TABLE = 'tsnetlink';
export const FAMILY: Family = 'inet';
/** Shown by `nft list table inet tsnetlink`. */
export const TABLE_COMMENT = 'managed by tsnetlink: rebuilt from its state by tsnetlink network repair';

export const CHAIN = {
  forward: 'forward',
  isolation: 'isolation',
  hostports: 'hostports',
  prerouting: 'prerouting',
  output: 'output',
  postrouting: 'postrouting',
  raw: 'raw-prerouting',
} as const;

export const SET = { ports: 'ports', hostipPorts: 'hostip-ports' } as const;

/** iptables-nft's table and chain that our forward accepts go into. */
export const IPT = { family: 'ip' as Family, table: 'filter', chain: 'FORWARD' } as const;

/** Rule comments: `tsnetlink:NETWORK`, `tsnetlink:NETWORK/ID` for elements, and two global tags. */
export const TAG = {
  prefix: 'tsnetlink:',
  network: (name: string): string => `tsnetlink:${name}`,
  endpoint: (network: string, id: string): string => `tsnetlink:${network}/${id}`,
  hostports: 'tsnetlink:hostports',
  guard: 'tsnetlink:localnet-guard',
} as const;

/** Our chains, base chains with their hooks, in creation order (regular chains first: base chains jump to them). */
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

const u32le = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
};
/** nft's "typeof" hint of a concatenation: its expression kind (13, a concat) and no details. */
const TYPEOF_CONCAT = writeUdata([[0, u32le(13)], [1, Buffer.alloc(0)]]);
/**
 * nft's userdata for a map of concatenations, as nft 1.0.6 writes it: key and data byte order
 * (0: each field's own), typeof hints for both, and "data is not an interval".
 */
const CONCAT_MAP_UDATA = writeUdata([[0, u32le(0)], [1, u32le(0)], [3, TYPEOF_CONCAT], [4, TYPEOF_CONCAT], [6, u32le(0)]]);

/** The two maps of published ports (NFTA_SET_ID, which the kernel demands, numbers them within a transaction). */
export function sets(): NftSet[] {
  const data = concatType([NFT_TYPE.ipv4_addr, NFT_TYPE.inet_service]);
  return [
    { family: FAMILY, table: TABLE, name: SET.ports, id: 1, flags: NFT_SET_F.MAP, keyType: concatType([NFT_TYPE.inet_proto, NFT_TYPE.inet_service]), keyLen: 8, dataType: data, dataLen: 8, userdata: CONCAT_MAP_UDATA },
    { family: FAMILY, table: TABLE, name: SET.hostipPorts, id: 2, flags: NFT_SET_F.MAP, keyType: concatType([NFT_TYPE.ipv4_addr, NFT_TYPE.inet_proto, NFT_TYPE.inet_service]), keyLen: 12, dataType: data, dataLen: 8, userdata: CONCAT_MAP_UDATA },
  ];
}

const rule = (chain: string, exprs: NftRule['exprs'], comment: string): NftRule => ({ family: FAMILY, table: TABLE, chain, exprs, comment });

/** Rules that do not depend on any network: the DNAT entry points, the two DNAT maps, the localnet guard. */
export function globalRules(): NftRule[] {
  return [
    // fib daddr type local: only traffic addressed to this host is mapped; a container talking
    // to a remote address on a published port number is left alone.
    rule(CHAIN.prerouting, [...fibAddrType('daddr'), jump(CHAIN.hostports)], TAG.hostports),
    rule(CHAIN.output, [...fibAddrType('daddr'), jump(CHAIN.hostports)], TAG.hostports),
    rule(CHAIN.hostports, dnatMap(SET.hostipPorts, { daddr: true }), TAG.hostports),
    rule(CHAIN.hostports, dnatMap(SET.ports, { daddr: false }), TAG.hostports),
    // route_localnet=1 on a bridge lets 127/8 be routed: nothing may arrive for 127/8 on an
    // interface other than lo (a container reaching the host's 127.0.0.1 services, or a
    // neighbour sending to 127.0.0.1:PORT to reach a localhost-only mapping).
    rule(CHAIN.raw, [...ifname('iif', 'lo', 'neq'), ...nfproto('ipv4'), ...ipv4Prefix('daddr', '127.0.0.0/8'), drop()], TAG.guard),
  ];
}

/** One network's rules, by chain; forward rules carry their group (every network's drops come before any accept). */
export function networkRules(n: Net): { group: number; rule: NftRule }[] {
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
  if (!n.internal) {
    const src = [...nfproto('ipv4'), ...ipv4Prefix('saddr', n.subnet.cidr)];
    if (n.gatewayMode !== 'routed') out.push({ group: 1, rule: rule(CHAIN.postrouting, [...src, ...ifname('oif', br, 'neq'), masquerade()], c) });
    // Hairpin: a container reaching a published port of its own bridge must see the reply come
    // from the host, or the reply would come straight from the other container and be dropped.
    out.push({ group: 1, rule: rule(CHAIN.postrouting, [...src, ...ifname('oif', br), ...ctStatus(['dnat']), masquerade()], c) });
    // Host and 127.0.0.1 sources towards a published port; 127/8 must not leave on the bridge.
    out.push({ group: 1, rule: rule(CHAIN.postrouting, [...ifname('oif', br), ...fibAddrType('saddr'), masquerade()], c) });
  }
  return out;
}

/** Every rule of our table for `nets`, by chain, in order. */
export function rulesFor(nets: readonly Net[]): Map<string, NftRule[]> {
  const by = new Map<string, NftRule[]>(chains().map((c) => [c.name, []]));
  const add = (r: NftRule): void => void by.get(r.chain)?.push(r);
  if (nets.length === 0) return by;
  for (const r of globalRules()) add(r);
  const all = nets.flatMap((n) => networkRules(n));
  for (const group of [1, 2, 3, 4, 5]) for (const r of all) if (r.group === group) add(r.rule);
  // Filled only when a network lets outside traffic in, so that other networks still cannot.
  if (nets.some((n) => n.gatewayMode !== 'nat')) for (const n of nets) add(rule(CHAIN.isolation, [...ifname('iif', n.bridge), drop()], TAG.network(n.name)));
  return by;
}

/** The map element of one mapping: which map, its key and the DNAT target, tagged with the endpoint. */
export function mappingElement(network: string, id: string, ip: string, m: Mapping): { set: string; element: NftElement } {
  const proto = field.proto(IPPROTO[m.protocol]);
  const port = field.port(m.hostPort);
  const key = m.hostIp === undefined ? concat([proto, port]) : concat([field.ipv4(m.hostIp), proto, port]);
  return { set: m.hostIp === undefined ? SET.ports : SET.hostipPorts, element: { key, data: concat([field.ipv4(ip), field.port(m.containerPort)]), comment: TAG.endpoint(network, id) } };
}

/** The map elements of endpoints' published ports, by map. */
export function elementsFor(eps: readonly Ep[]): Map<string, NftElement[]> {
  const by = new Map<string, NftElement[]>([[SET.ports, []], [SET.hostipPorts, []]]);
  for (const ep of eps) for (const m of ep.mappings) {
    const { set, element } = mappingElement(ep.network.name, ep.id, ep.ip, m);
    by.get(set)?.push(element);
  }
  return by;
}

/** The xt_comment_info of `-m comment --comment TEXT`: the text NUL-padded to 256 bytes. */
export function xtComment(text: string): Buffer {
  const b = Buffer.alloc(256);
  b.write(text.slice(0, 255), 'utf8');
  return b;
}

/**
 * `iptables -A FORWARD -o|-i BRIDGE -m comment --comment "tsnetlink:NETWORK" -j ACCEPT`, encoded
 * as iptables-nft itself encodes it, so iptables-save shows it as that line.
 */
export function forwardAccept(n: Pick<Net, 'name' | 'bridge'>, dir: 'iif' | 'oif'): NftRule {
  return {
    family: IPT.family,
    table: IPT.table,
    chain: IPT.chain,
    exprs: [...ifname(dir, n.bridge, 'eq', 'iptables'), { type: 'match', name: 'comment', rev: 0, info: xtComment(TAG.network(n.name)) }, counter(), accept()],
    compat: { proto: 0, flags: 0 },
  };
}

/** Our accepts in the iptables FORWARD chain for `nets`: traffic to, then from, each bridge. */
export function forwardAccepts(nets: readonly Pick<Net, 'name' | 'bridge'>[]): NftRule[] {
  return nets.flatMap((n) => [forwardAccept(n, 'oif'), forwardAccept(n, 'iif')]);
}

/** The tag of one of our accepts in the iptables FORWARD chain, read from its comment match; undefined for foreign rules. */
export function forwardAcceptTag(r: NftRule): string | undefined {
  const m = r.exprs.find((e) => e.type === 'match' && e.name === 'comment');
  if (!m || m.type !== 'match') return undefined;
  const text = m.info.toString('utf8').replace(/\0.*$/s, '');
  return text.startsWith(TAG.prefix) ? text : undefined;
}
