/**
 * ADD, DEL and GC: one CNI attachment is one tsnetlink endpoint (its id made from
 * CNI_CONTAINERID and CNI_IFNAME) on the tsnetlink network named after the CNI network, through
 * the same Networks layer, store and locks as the CLI and the library. So a CNI-managed network
 * and `tsnetlink network ls` see the same truth, connects are all-or-nothing, and a plugin killed
 * half-way is settled by the next operation or by GC, which is the reconciler driven by the
 * runtime's list of valid attachments.
 */
import { existsSync } from 'node:fs';
import { Networks } from '../bridge/networks.js';
import { parseSubnet } from '../bridge/cidr.js';
import type { EndpointRecord, NetworkRecord } from '../bridge/records.js';
import { openRtnlIn, openNetns } from '../ns/netns.js';
import { CniError, CNI_CODES, toCniError } from './errors.js';
import { endpointIdFor, type CniEnv, type CniRoute, type PluginConfig } from './config.js';
import { delegate, runDelegate } from './delegate.js';
import { buildResult, parseIpamResult, type CniResult } from './result.js';

/** The state directory and lock timeout the plugin runs with (tests point them elsewhere). */
export function openNetworks(): Networks {
  const stateDir = process.env['TSNETLINK_STATE_DIR'];
  return new Networks(stateDir ? { stateDir } : {});
}

/** Where the attachment's address comes from, and the network it implies. */
interface Addressing {
  /** "GATEWAY/PREFIX": the network's subnet with its gateway. */
  subnet: string;
  requestedIp: string | undefined;
  routes: CniRoute[];
  dns: Record<string, unknown> | undefined;
}

function addressing(conf: PluginConfig, stdin: string, env: CniEnv): Addressing {
  if (conf.ipam.type === 'tsnetlink') {
    const { range, routes } = conf.ipam;
    const prefix = range.subnet.split('/')[1]!;
    return { subnet: range.gateway !== undefined ? `${range.gateway}/${prefix}` : range.subnet, requestedIp: conf.ips[0], routes, dns: conf.raw['dns'] as Record<string, unknown> | undefined };
  }
  const r = parseIpamResult(delegate(conf.ipam.plugin, 'ADD', stdin, env.path), conf.ipam.plugin);
  // Without a gateway from IPAM, the subnet's first host is the gateway (tsnetlink's rule).
  const subnet = r.gateway !== undefined ? `${r.gateway}/${r.prefix}` : `${parseSubnet(r.address).network}/${r.prefix}`;
  return { subnet, requestedIp: r.ip, routes: r.routes, dns: r.dns ?? (conf.raw['dns'] as Record<string, unknown> | undefined) };
}

/** Refuses a network that tsnetlink already has with another subnet, gateway or bridge. */
function checkSame(net: Readonly<NetworkRecord>, conf: PluginConfig, subnet: string): void {
  const want = parseSubnet(subnet);
  if (net.subnet !== want.subnet || net.gateway !== want.gateway || net.bridge !== conf.bridge) {
    throw new CniError(
      CNI_CODES.networkMismatch,
      `tsnetlink network ${net.name} exists with subnet ${net.subnet}, gateway ${net.gateway}, bridge ${net.bridge}; this configuration asks for ${want.subnet}, gateway ${want.gateway}, bridge ${conf.bridge}`,
      'remove the network (tsnetlink network rm) or fix the configuration',
    );
  }
}

/** The network of the configuration: the existing one (checked against it) or a new one made for CNI. */
async function ensureNetwork(nets: Networks, conf: PluginConfig, subnet: string): Promise<void> {
  const existing = nets.store.getNetwork(conf.network);
  if (existing?.state === 'active') return checkSame(existing, conf, subnet);
  try {
    await nets.createNetwork({ name: conf.network, subnet, bridge: conf.bridge, ...(conf.mtu !== undefined ? { mtu: conf.mtu } : {}), gatewayMode: conf.ipMasq ? 'nat' : 'routed', createdBy: 'cni' });
  } catch (e) {
    // Another ADD created it meanwhile.
    const now = nets.store.getNetwork(conf.network);
    if ((e as { code?: string }).code !== 'ENETEXISTS' || now?.state !== 'active') throw e;
    checkSame(now, conf, subnet);
  }
}

/** Whether a route is the default route through the network's gateway. */
function isDefault(r: CniRoute, gateway: string): boolean {
  return r.dst === '0.0.0.0/0' && (r.gw === undefined || r.gw === gateway);
}

/** ADD: the endpoint (network made if missing), then routes beyond the default one; the result. */
export async function cmdAdd(env: CniEnv, conf: PluginConfig, stdin: string): Promise<CniResult> {
  if (!existsSync(env.netns)) throw new CniError(CNI_CODES.unknownContainer, `the container's network namespace ${env.netns} does not exist`);
  const id = endpointIdFor(env.containerId, env.ifname);
  let addr: Addressing;
  try {
    addr = addressing(conf, stdin, env);
  } catch (e) {
    if (conf.ipam.type === 'delegated' && !(e instanceof CniError && e.cniCode === CNI_CODES.ioFailure)) runDelegate(conf.ipam.plugin, 'DEL', stdin, env.path);
    throw e;
  }
  const nets = openNetworks();
  let rec: EndpointRecord | undefined;
  try {
    const gateway = parseSubnet(addr.subnet).gateway;
    const extra = addr.routes.filter((r) => !isDefault(r, gateway));
    if (extra.some((r) => r.dst === '0.0.0.0/0')) throw new CniError(CNI_CODES.unsupportedField, `route ${JSON.stringify(extra.find((r) => r.dst === '0.0.0.0/0'))}`, 'the default route goes through the network gateway');
    const opts = {
      id,
      ifname: env.ifname,
      ports: conf.portMappings.map((m) => ({ hostPort: m.hostPort, containerPort: m.containerPort, protocol: m.protocol, ...(m.hostIP ? { hostIp: m.hostIP } : {}) })),
      ...(conf.mtu !== undefined ? { mtu: conf.mtu } : {}),
      ...(addr.requestedIp !== undefined ? { ip: addr.requestedIp } : {}),
      ...(conf.mac !== undefined ? { mac: conf.mac } : {}),
      defaultRoute: conf.isDefaultGateway || addr.routes.some((r) => isDefault(r, gateway)),
      attachment: { containerId: env.containerId, ifname: env.ifname },
    };
    // A DEL of another container may remove a CNI-made network between our check and our
    // connect (ENONET): it is made again.
    for (let attempt = 1; ; attempt++) {
      await ensureNetwork(nets, conf, addr.subnet);
      try {
        rec = await nets.connect(conf.network, { path: env.netns }, opts);
        break;
      } catch (e) {
        if ((e as { code?: string }).code !== 'ENONET' || attempt >= 3) throw e;
      }
    }
    if (extra.length > 0) addRoutes(env.netns, env.ifname, rec.gateway, extra);
    const net = nets.store.getNetwork(conf.network)!;
    const host = nets.host.linkGet(rec.hostIfname);
    return buildResult(
      conf.cniVersion,
      {
        bridge: { name: net.bridge, mac: net.mac },
        hostVeth: { name: rec.hostIfname, ...(host.mac ? { mac: host.mac } : {}) },
        container: { name: rec.ifname, mac: rec.mac, ...(conf.mtu !== undefined ? { mtu: conf.mtu } : {}), sandbox: env.netns },
        address: rec.cidr,
        gateway: rec.gateway,
        routes: rec.defaultRoute ? [{ dst: '0.0.0.0/0', gw: rec.gateway }, ...extra] : extra,
        ...(addr.dns ? { dns: addr.dns } : {}),
      },
      conf.prevResult,
    );
  } catch (e) {
    // The spec's rule: a failed ADD releases what it took, delegated IPAM included.
    if (rec) await nets.disconnect(conf.network, rec.id).catch(() => undefined);
    if (conf.ipam.type === 'delegated') runDelegate(conf.ipam.plugin, 'DEL', stdin, env.path);
    throw e;
  } finally {
    nets.close();
  }
}

/** Routes other than the default one, inside the container (ip -n NS route add DST via GW dev IF). */
function addRoutes(netns: string, ifname: string, gateway: string, routes: readonly CniRoute[]): void {
  const ns = openNetns({ path: netns });
  try {
    const rt = openRtnlIn(ns);
    try {
      for (const r of routes) rt.routeAdd({ dst: r.dst, gateway: r.gw ?? gateway, oif: ifname });
    } finally {
      rt.close();
    }
  } finally {
    ns.close();
  }
}

/** Removes a network the plugin made once no endpoint is left on it (another ADD may race: EBUSY, ENONET are fine). */
async function removeIfEmpty(nets: Networks, network: string): Promise<void> {
  const net = nets.store.getNetwork(network);
  if (net?.createdBy !== 'cni' || net.state !== 'active' || nets.store.endpointIds(network).length > 0) return;
  try {
    await nets.remove(network);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code !== 'EBUSY' && code !== 'ENONET') throw e;
  }
}

/**
 * DEL: idempotent. The endpoint goes (veth, rules, IP, ports, record) whether or not the netns
 * or the interface still exist; a network the plugin made goes with its last endpoint; a
 * delegated IPAM plugin is asked to release its address in every case.
 */
export async function cmdDel(env: CniEnv, conf: PluginConfig, stdin: string): Promise<void> {
  const id = endpointIdFor(env.containerId, env.ifname);
  const nets = openNetworks();
  try {
    if (nets.store.hasNetwork(conf.network)) {
      try {
        await nets.disconnect(conf.network, id);
      } catch (e) {
        if ((e as { code?: string }).code !== 'ENONET') throw e;
      }
      await removeIfEmpty(nets, conf.network);
    }
  } finally {
    nets.close();
  }
  if (conf.ipam.type === 'delegated') delegate(conf.ipam.plugin, 'DEL', stdin, env.path);
}

/**
 * GC: every endpoint a CNI ADD made on this network that is not in `cni.dev/valid-attachments`
 * is disconnected; then the reconciler prunes the network (dead containers, interrupted
 * operations, IPs, host ports, rules and veths no record owns), and a network the plugin made
 * goes when nothing is left on it. It goes on after an error and reports them all.
 */
export async function cmdGc(env: CniEnv, conf: PluginConfig, stdin: string): Promise<void> {
  if (conf.validAttachments === undefined) throw new CniError(CNI_CODES.invalidConfig, 'invalid network config: GC needs cni.dev/valid-attachments', 'without the list every attachment would look stale');
  const valid = new Set(conf.validAttachments.map((a) => endpointIdFor(a.containerID, a.ifname)));
  const errors: CniError[] = [];
  const attempt = async (fn: () => Promise<unknown>): Promise<void> => {
    try {
      await fn();
    } catch (e) {
      errors.push(toCniError(e));
    }
  };
  const nets = openNetworks();
  try {
    if (nets.store.hasNetwork(conf.network)) {
      const stale = nets.store.listEndpoints(conf.network).records.filter((r) => r.attachment !== undefined && !valid.has(r.id));
      await attempt(() => nets.disconnectMany(conf.network, stale.map((r) => r.id)));
      await attempt(() => nets.pruneReport(conf.network));
      await attempt(() => removeIfEmpty(nets, conf.network));
    }
  } finally {
    nets.close();
  }
  if (conf.ipam.type === 'delegated') {
    const out = runDelegate(conf.ipam.plugin, 'GC', stdin, env.path);
    // A plugin older than GC answers 1 (incompatible version) or 4 (unknown command): nothing to forward.
    if (out.error && out.error.code !== CNI_CODES.incompatibleVersion && out.error.code !== CNI_CODES.invalidEnvironment) {
      errors.push(new CniError(CNI_CODES.ipamFailed, `IPAM plugin ${conf.ipam.plugin} GC failed: ${out.error.msg}`, `code ${out.error.code}`));
    }
  }
  if (errors.length === 1) throw errors[0]!;
  if (errors.length > 1) throw new CniError(errors[0]!.cniCode, `GC of ${conf.name} hit ${errors.length} errors: ${errors.map((e) => e.message).join('; ')}`);
}
