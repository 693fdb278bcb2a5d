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
import { findLink, NetworkError, type Networks } from '../bridge/index.js';
import { CniError, CNI_CODES, toCniError } from './errors.js';
import { endpointIdFor, type CniEnv, type PluginConfig } from './config.js';
import { delegate, runDelegate } from './delegate.js';
import { openNetworks } from './attach.js';

/** The IPs the previous result gives the interface CNI_IFNAME in CNI_NETNS. */
function prevAddresses(prev: Record<string, unknown>, env: CniEnv): string[] {
  const ifaces = Array.isArray(prev['interfaces']) ? (prev['interfaces'] as { name?: unknown; sandbox?: unknown }[]) : [];
  const idx = ifaces.findIndex((i) => i.name === env.ifname && (i.sandbox === undefined || i.sandbox === '' || i.sandbox === env.netns));
  const ips = Array.isArray(prev['ips']) ? (prev['ips'] as { address?: unknown; interface?: unknown }[]) : [];
  return ips.filter((i) => i.interface === undefined || i.interface === idx).map((i) => String(i.address));
}

/**
 * What CHECK finds: the bridge layer's one endpoint check (its network, the endpoint with its
 * container side, its host ports and firewall rules), plus what only the runtime's call says:
 * the addresses of prevResult and the rate limits the configuration asks for.
 */
async function problemsOf(nets: Networks, env: CniEnv, conf: PluginConfig): Promise<string[]> {
  const id = endpointIdFor(env.containerId, env.ifname);
  const net = nets.store.getNetwork(conf.network);
  const rec = net ? nets.store.getEndpoint(conf.network, id) : undefined;
  if (net && !rec) return [`no endpoint ${id} for container ${env.containerId} interface ${env.ifname} on ${conf.network}`];
  const out = await nets.checkEndpoint(conf.network, id, { netns: env.netns, ifname: env.ifname }).catch((e: unknown) => {
    throw e instanceof NetworkError && e.code === 'ENOCONTAINER' ? new CniError(CNI_CODES.unknownContainer, e.message) : e;
  });
  if (!rec) return out;
  const given = prevAddresses(conf.prevResult!, env);
  for (const a of rec.addresses) if (!given.includes(a.cidr)) out.push(`prevResult does not give ${env.ifname} the address ${a.cidr}`);
  if (JSON.stringify(rec.bandwidth ?? null) !== JSON.stringify(conf.bandwidth ?? null)) out.push(`rate limits ${JSON.stringify(rec.bandwidth ?? 'none')} applied, the configuration asks for ${JSON.stringify(conf.bandwidth ?? 'none')}`);
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
        for (const u of await nets.addressUsage(net.name)) {
          if (BigInt(u.used) >= u.capacity) throw new CniError(CNI_CODES.notAvailable, `no free address left on ${conf.name} (${u.subnet}: ${u.capacity} in use)`);
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
