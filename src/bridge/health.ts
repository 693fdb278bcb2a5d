/**
 * The one endpoint check: what must hold for an endpoint to work, in words. `network check`
 * runs it on every endpoint (host side only: looking into every container would cost a netns
 * switch each), and CNI CHECK on one endpoint with its container side too. Pure reads: it
 * changes nothing.
 */
import type { Link } from '../netlink/route/rtnl.js';
import { openNetns, openRtnlIn } from '../ns/netns.js';
import { desiredFirewall, type BridgeContext } from './context.js';
import { Ipam } from './ipam.js';
import { bridgeTag, endpointTag, findLink } from './links.js';
import { ifbNameFor, shapingProblems } from './shaping.js';
import { portOwner } from './teardown.js';
import { subnetsOf, type EndpointRecord, type NetworkRecord } from './records.js';
import { NetworkError } from './errors.js';

/** The container side to look at too: its netns and the interface name in it. */
export interface ContainerSide {
  netns: string;
  ifname: string;
}

/**
 * Every way one endpoint differs from what its record says: its state, its address and host-port
 * reservations, its host veth (present, tagged, on the bridge, up, rate limits), and when
 * `container` is given the container's interface (present, MAC, up, each address and default
 * route). `links` is the host's links by name (one dump shared by the caller); `reserved` the
 * IPAM reservations of the network (read by the caller under the network's lock).
 */
export function endpointProblems(
  ctx: BridgeContext,
  net: NetworkRecord,
  e: EndpointRecord,
  links: ReadonlyMap<string, Link>,
  reserved: readonly { ip: string; endpointId: string }[],
  container?: ContainerSide,
): string[] {
  const n = net.name;
  const label = `endpoint ${n}/${e.id}`;
  const out: string[] = [];
  if (e.state !== 'active') out.push(`${label} is '${e.state}'`);
  for (const a of e.addresses) if (!reserved.some((r) => r.ip === a.ip && r.endpointId === e.id)) out.push(`${label}: address ${a.ip} not reserved for it`);
  if (e.addresses.length !== net.subnets.length) out.push(`${label}: ${e.addresses.length} addresses for ${net.subnets.length} subnets`);
  const br = links.get(net.bridge);
  const v = links.get(e.hostIfname);
  if (!v) out.push(`${label}: host veth ${e.hostIfname} missing`);
  else {
    if (v.alias !== endpointTag(n, e.id)) out.push(`${label}: host veth ${e.hostIfname} tagged ${JSON.stringify(v.alias)}`);
    if (!br || v.master !== br.index) out.push(`${label}: host veth ${e.hostIfname} not enslaved to ${net.bridge}`);
    if (!v.up) out.push(`${label}: host veth ${e.hostIfname} down`);
    out.push(...shapingProblems(ctx.rtnl, label, n, e.id, v, e.bandwidth, links));
  }
  if (container) out.push(...containerProblems(label, e, container));
  return out;
}

/** Every way a network's bridge differs from its record: state, presence, tag, MAC, up, each gateway address. */
export function networkProblems(ctx: BridgeContext, net: NetworkRecord, links: ReadonlyMap<string, Link>): string[] {
  const n = net.name;
  const out: string[] = [];
  if (net.state !== 'active') out.push(`network ${n} is '${net.state}'`);
  const br = links.get(net.bridge);
  if (!br) out.push(`network ${n}: bridge ${net.bridge} missing`);
  else {
    if (br.alias !== bridgeTag(n)) out.push(`network ${n}: bridge ${net.bridge} not tagged`);
    if (br.mac !== net.mac) out.push(`network ${n}: bridge MAC ${br.mac} instead of ${net.mac}`);
    if (!br.up) out.push(`network ${n}: bridge ${net.bridge} down`);
    for (const sub of net.subnets) {
      const addrs = ctx.rtnl.addrList({ link: br.index, family: sub.family });
      if (!addrs.some((a) => a.address === sub.gateway && a.prefix === sub.prefix)) out.push(`network ${n}: bridge lacks ${sub.gateway}/${sub.prefix}`);
    }
  }
  return out;
}

/**
 * One endpoint checked as a whole (CNI CHECK): its network's bridge, the endpoint itself with
 * its container side when given, its host-port reservations, and the firewall rules of its
 * network and of it. Reservations are read under the network's lock, taken as operations take
 * it (waiting without blocking the event loop), and the firewall under the firewall lock.
 */
export async function checkEndpoint(ctx: BridgeContext, network: string, id: string, container?: ContainerSide): Promise<string[]> {
  const net = ctx.store.getNetwork(network);
  if (!net) return [`tsnetlink has no network ${network}`];
  const e = ctx.store.getEndpoint(network, id);
  if (!e) return [`no endpoint ${id} on ${network}`];
  const reserved = await ctx.store.withNetworkLock(net.name, () => reservationsOf(ctx, net));
  // The three links one endpoint's check reads, looked up by name: no dump of every link on the host.
  const links = new Map<string, Link>();
  for (const name of [net.bridge, e.hostIfname, ifbNameFor(network, id)]) {
    const l = findLink(ctx.rtnl, name);
    if (l) links.set(name, l);
  }
  const out = [...networkProblems(ctx, net, links), ...endpointProblems(ctx, net, e, links, reserved, container)];
  for (const m of e.mappings) {
    if (!ctx.store.portHolders(m).some((h) => h.owner === portOwner(net.name, id))) out.push(`endpoint ${network}/${id}: host port ${m.protocol}/${m.hostPort} not reserved for it`);
  }
  const diff = await ctx.store.withFirewallLock(() => ctx.firewall.diff(desiredFirewall(ctx.store)));
  for (const d of diff) if (concerns(d.what, net.name, id)) out.push(`firewall: ${d.kind} ${d.what}`);
  return out;
}

/** Firewall differences that concern this network or endpoint: not those tagged for another. */
function concerns(what: string, network: string, id: string): boolean {
  const tags = [...what.matchAll(/tsnetlink:([A-Za-z0-9_.-]+)(?:\/([A-Za-z0-9_.-]+))?/g)];
  if (tags.length === 0) return true;
  return tags.some((t) => t[1] === network && (t[2] === undefined || t[2] === id));
}

/** The host ports an endpoint's mappings hold, as the port reservations must name them. */
export function expectedPortKeys(network: string, e: EndpointRecord): string[] {
  return e.mappings.map((m) => `${portOwner(network, e.id)} ${m.protocol}/${m.hostPort}/${m.hostIp ?? '0.0.0.0'}`);
}

/** The reservations of every subnet of a network. */
export function reservationsOf(ctx: BridgeContext, net: NetworkRecord): { ip: string; endpointId: string }[] {
  return subnetsOf(net).flatMap((sub) => new Ipam(ctx.store, net.name, sub).list());
}

/** The container's interface as the record describes it (a netns that cannot be opened is an error, not a difference). */
function containerProblems(label: string, e: EndpointRecord, c: ContainerSide): string[] {
  let ns;
  try {
    ns = openNetns({ path: c.netns });
  } catch (err) {
    throw new NetworkError('ENOCONTAINER', `the container's network namespace ${c.netns} cannot be opened: ${(err as Error).message}`);
  }
  const out: string[] = [];
  try {
    const rt = openRtnlIn(ns);
    try {
      const link = findLink(rt, c.ifname);
      if (!link) return [`${label}: interface ${c.ifname} is missing in ${c.netns}`];
      if (link.mac !== e.mac) out.push(`${label}: interface ${c.ifname} has MAC ${link.mac ?? 'none'}, not ${e.mac}`);
      if (!link.up) out.push(`${label}: interface ${c.ifname} is down`);
      for (const a of e.addresses) {
        if (!rt.addrList({ link: link.index, family: a.family }).some((x) => `${x.address}/${x.prefix}` === a.cidr)) out.push(`${label}: interface ${c.ifname} lacks ${a.cidr}`);
        if (e.defaultRoute && !rt.routeList({ family: a.family }).some((r) => r.dst === 'default' && r.gateway === a.gateway && r.oif === link.index)) {
          out.push(`${label}: the IPv${a.family} default route via ${a.gateway} dev ${c.ifname} is missing`);
        }
      }
    } finally {
      rt.close();
    }
  } finally {
    ns.close();
  }
  return out;
}
