/**
 * CHECK and STATUS. CHECK compares what the previous result and tsnetlink's records say with
 * what is live: the endpoint's record, address and host-port reservations, its host veth (tag,
 * bridge, up), the bridge and its gateway address of each family, the container's interface
 * (MAC, up, the address and default route of each family) and every firewall rule of the
 * network and the endpoint. STATUS says whether an ADD could succeed now: netlink and the
 * firewall backend usable, the bridge present and up when the network exists, forwarding on, a
 * free address left in each subnet.
 */
import { readFileSync } from 'node:fs';
import { Ipam } from '../bridge/ipam.js';
import { desiredFirewall } from '../bridge/context.js';
import { endpointTag, findLink } from '../bridge/links.js';
import { ifbNameFor, shapingProblems } from '../bridge/shaping.js';
import { portOwner } from '../bridge/teardown.js';
import type { Networks } from '../bridge/networks.js';
import { subnetsOf } from '../bridge/records.js';
import { openNetns, openRtnlIn } from '../ns/netns.js';
import { CniError, CNI_CODES, toCniError } from './errors.js';
import { endpointIdFor, type CniEnv, type PluginConfig } from './config.js';
import { delegate, runDelegate } from './delegate.js';
import { openNetworks } from './attach.js';

/** Firewall differences that concern this network or endpoint: not those tagged for another. */
function concerns(what: string, network: string, id: string): boolean {
  const tags = [...what.matchAll(/tsnetlink:([A-Za-z0-9_.-]+)(?:\/([A-Za-z0-9_.-]+))?/g)];
  if (tags.length === 0) return true;
  return tags.some((t) => t[1] === network && (t[2] === undefined || t[2] === id));
}

/** The IPs the previous result gives the interface CNI_IFNAME in CNI_NETNS. */
function prevAddresses(prev: Record<string, unknown>, env: CniEnv): string[] {
  const ifaces = Array.isArray(prev['interfaces']) ? (prev['interfaces'] as { name?: unknown; sandbox?: unknown }[]) : [];
  const idx = ifaces.findIndex((i) => i.name === env.ifname && (i.sandbox === undefined || i.sandbox === '' || i.sandbox === env.netns));
  const ips = Array.isArray(prev['ips']) ? (prev['ips'] as { address?: unknown; interface?: unknown }[]) : [];
  return ips.filter((i) => i.interface === undefined || i.interface === idx).map((i) => String(i.address));
}

async function problemsOf(nets: Networks, env: CniEnv, conf: PluginConfig): Promise<string[]> {
  const id = endpointIdFor(env.containerId, env.ifname);
  const net = nets.store.getNetwork(conf.network);
  if (!net) return [`tsnetlink has no network ${conf.network}`];
  const rec = nets.store.getEndpoint(conf.network, id);
  if (!rec) return [`no endpoint ${id} for container ${env.containerId} interface ${env.ifname} on ${conf.network}`];
  const out: string[] = [];
  if (rec.state !== 'active') out.push(`endpoint ${id} is '${rec.state}' (an operation on it was interrupted)`);
  const given = prevAddresses(conf.prevResult!, env);
  const subs = subnetsOf(net);
  for (const a of rec.addresses) {
    if (!given.includes(a.cidr)) out.push(`prevResult does not give ${env.ifname} the address ${a.cidr}`);
    const sub = subs.find((s) => s.family === a.family);
    if (sub === undefined || new Ipam(nets.store, net.name, sub).lookup(id) !== a.ip) out.push(`address ${a.ip} is not reserved for ${id}`);
  }
  for (const m of rec.mappings) {
    if (!nets.store.portHolders(m).some((h) => h.owner === portOwner(net.name, id))) out.push(`host port ${m.protocol}/${m.hostPort} is not reserved for ${id}`);
  }
  const br = findLink(nets.host, net.bridge);
  if (!br) out.push(`bridge ${net.bridge} is missing`);
  else {
    if (!br.up) out.push(`bridge ${net.bridge} is down`);
    for (const s of net.subnets) {
      if (!nets.host.addrList({ link: br.index, family: s.family }).some((a) => a.address === s.gateway && a.prefix === s.prefix)) out.push(`bridge ${net.bridge} lacks ${s.gateway}/${s.prefix}`);
    }
  }
  const veth = findLink(nets.host, rec.hostIfname);
  if (!veth) out.push(`host veth ${rec.hostIfname} is missing`);
  else {
    if (veth.alias !== endpointTag(net.name, id)) out.push(`host veth ${rec.hostIfname} is not tagged ${endpointTag(net.name, id)}`);
    if (!br || veth.master !== br.index) out.push(`host veth ${rec.hostIfname} is not on ${net.bridge}`);
    if (!veth.up) out.push(`host veth ${rec.hostIfname} is down`);
    if (JSON.stringify(rec.bandwidth ?? null) !== JSON.stringify(conf.bandwidth ?? null)) out.push(`rate limits ${JSON.stringify(rec.bandwidth ?? 'none')} applied, the configuration asks for ${JSON.stringify(conf.bandwidth ?? 'none')}`);
    const ifbName = ifbNameFor(net.name, id);
    const ifb = findLink(nets.host, ifbName);
    out.push(...shapingProblems(nets.host, 'rate limits', net.name, id, veth, rec.bandwidth, new Map(ifb ? [[ifbName, ifb]] : [])));
  }
  const ns = (() => {
    try {
      return openNetns({ path: env.netns });
    } catch (e) {
      throw new CniError(CNI_CODES.unknownContainer, `the container's network namespace ${env.netns} cannot be opened: ${(e as Error).message}`);
    }
  })();
  try {
    const rt = openRtnlIn(ns);
    try {
      const link = findLink(rt, env.ifname);
      if (!link) out.push(`interface ${env.ifname} is missing in ${env.netns}`);
      else {
        if (link.mac !== rec.mac) out.push(`interface ${env.ifname} has MAC ${link.mac ?? 'none'}, not ${rec.mac}`);
        if (!link.up) out.push(`interface ${env.ifname} is down`);
        for (const a of rec.addresses) {
          if (!rt.addrList({ link: link.index, family: a.family }).some((x) => `${x.address}/${x.prefix}` === a.cidr)) out.push(`interface ${env.ifname} lacks ${a.cidr}`);
          if (rec.defaultRoute && !rt.routeList({ family: a.family }).some((r) => r.dst === 'default' && r.gateway === a.gateway && r.oif === link.index)) out.push(`the IPv${a.family} default route via ${a.gateway} dev ${env.ifname} is missing`);
        }
      }
    } finally {
      rt.close();
    }
  } finally {
    ns.close();
  }
  const diff = await nets.store.withFirewallLock(() => nets.firewall.diff(desiredFirewall(nets.store)));
  for (const d of diff) if (concerns(d.what, net.name, id)) out.push(`firewall: ${d.kind} ${d.what}`);
  return out;
}

/** CHECK: success when all agrees; else code 103 listing every disagreement. */
export async function cmdCheck(env: CniEnv, conf: PluginConfig, stdin: string): Promise<void> {
  if (conf.prevResult === undefined) throw new CniError(CNI_CODES.invalidConfig, 'invalid network config: CHECK needs prevResult', 'the runtime passes the result of the ADD');
  const nets = openNetworks();
  let problems: string[];
  try {
    problems = await problemsOf(nets, env, conf);
  } finally {
    nets.close();
  }
  if (problems.length > 0) throw new CniError(CNI_CODES.checkFailed, `CHECK of ${env.containerId}/${env.ifname} on ${conf.name} failed: ${problems.join('; ')}`);
  if (conf.ipam.type === 'delegated') delegate(conf.ipam.plugin, 'CHECK', stdin, env.path);
}

/** STATUS: success when an ADD can be served; 50 when not, 51 when existing containers are cut off too. */
export async function cmdStatus(env: CniEnv, conf: PluginConfig, stdin: string): Promise<void> {
  const nets = openNetworks();
  try {
    try {
      await nets.firewall.ensureAvailable();
      void nets.host; // opens the host's netlink socket
    } catch (e) {
      const c = toCniError(e);
      throw new CniError(CNI_CODES.notAvailable, `plugin not available: ${c.message}`, c.details);
    }
    const net = nets.store.getNetwork(conf.network);
    if (net) {
      const cutOff = nets.store.endpointIds(net.name).length > 0 ? CNI_CODES.limitedConnectivity : CNI_CODES.notAvailable;
      const br = findLink(nets.host, net.bridge);
      if (!br || !br.up) throw new CniError(cutOff, `the bridge ${net.bridge} of ${conf.name} is ${br ? 'down' : 'missing'}`, 'tsnetlink network repair restores it');
      if (!net.internal && readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim() === '0') throw new CniError(cutOff, 'net.ipv4.ip_forward is 0', 'tsnetlink network repair turns it back on');
      if (conf.ipam.type === 'tsnetlink') {
        for (const sub of subnetsOf(net)) {
          const ipam = new Ipam(nets.store, net.name, sub);
          if (ipam.list().length >= ipam.capacity) throw new CniError(CNI_CODES.notAvailable, `no free address left on ${conf.name} (${sub.subnet}: ${ipam.capacity} in use)`);
        }
      }
    }
  } finally {
    nets.close();
  }
  if (conf.ipam.type === 'delegated') {
    const out = runDelegate(conf.ipam.plugin, 'STATUS', stdin, env.path);
    // A plugin older than STATUS answers 1 or 4: it has no readiness to report.
    if (out.error && out.error.code !== CNI_CODES.incompatibleVersion && out.error.code !== CNI_CODES.invalidEnvironment) {
      throw new CniError(CNI_CODES.notAvailable, `IPAM plugin ${conf.ipam.plugin} is not available: ${out.error.msg}`, `code ${out.error.code}`);
    }
  }
}
