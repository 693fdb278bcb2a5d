/**
 * ADD, DEL and GC: one CNI attachment is one tsnetlink endpoint (its id made from
 * CNI_CONTAINERID and CNI_IFNAME) on the tsnetlink network named after the CNI network, through
 * the same Networks layer, store and locks as the CLI and the library. So a CNI-managed network
 * and `tsnetlink network ls` see the same truth, connects are all-or-nothing, and a plugin killed
 * half-way is settled by the next operation or by GC, which is the reconciler driven by the
 * runtime's list of valid attachments.
 */
import { closeSync, constants as fsc, existsSync, fstatSync, openSync, statfsSync, statSync } from 'node:fs';
import { CLONE_NEWNET, namespaceType } from '../sys/libc.js';
import { Networks, NetworkError, type CreateResult, type AddressRecord, type EndpointRecord, type NetworkRecord, ifbNameFor } from '../bridge/index.js';
import { bigToIp, contains, cidrBits, parseSubnet, prefixMask, type Subnet } from '../ip/cidr.js';
import { openRtnlIn, openNetns } from '../ns/netns.js';
import { CniError, CNI_CODES, toCniError } from './errors.js';
import { checkRequestedIp, defaultDst, endpointIdFor, familyOf, networkNameFor, rangeSubnet, type CniEnv, type CniRoute, type PluginConfig } from './config.js';
import { delegate, runDelegate } from './delegate.js';
import { buildResult, parseIpamResult, type CniResult } from './result.js';

let lent: (() => Networks) | undefined;

/**
 * Makes every command use the manager `lend` returns (undefined: a new one per command again):
 * the engine, which runs CNI calls in its own process, lends one it keeps open, so its sockets
 * and caches outlive one call. A command closes what it got; a lent manager ignores that.
 */
export function lendNetworks(lend: (() => Networks) | undefined): void {
  lent = lend;
}

let deferred: ((task: () => Promise<void>) => void) | undefined;

/**
 * Where a DEL hands the removal of the network it emptied (one the plugin made): the engine runs
 * it right after the DEL has answered, since the caller does not wait for it (the stock bridge
 * plugin never removes its bridge at all); undefined, the default, removes it inside the DEL.
 * Removal stays safe against an ADD that comes meanwhile: it re-checks under the network's lock.
 */
export function deferNetworkRemovals(run: ((task: () => Promise<void>) => void) | undefined): void {
  deferred = run;
}

/** The state directory and lock timeout the plugin runs with (tests point them elsewhere). */
export function openNetworks(): Networks {
  if (lent) return lent();
  const stateDir = process.env['TSNETLINK_STATE_DIR'];
  return new Networks(stateDir ? { stateDir } : {});
}

/** Where the attachment's address comes from, and the network it implies. */
interface Addressing {
  /** "GATEWAY/PREFIX" or the subnet, one per family, IPv4 first: the network's subnets. */
  subnets: string[];
  /** Whether the network must have exactly these subnets (the built-in IPAM), or at least these (a delegated one). */
  exact: boolean;
  /** At most one address per family. */
  requestedIps: string[];
  routes: CniRoute[];
  dns: Record<string, unknown> | undefined;
}

/** The built-in IPAM's addressing, straight from the configuration. */
function builtinAddressing(conf: PluginConfig & { ipam: { type: 'tsnetlink' } }): Addressing {
  return { subnets: conf.ipam.ranges.map(rangeSubnet), exact: true, requestedIps: conf.ips, routes: conf.ipam.routes, dns: conf.raw['dns'] as Record<string, unknown> | undefined };
}

/**
 * The delegated IPAM plugin's answer read as addressing, checked as the configuration's own
 * addressing is: a gateway outside the address's subnet, or an address the subnet cannot give a
 * container, is refused (code 7) before any network is made.
 */
function delegatedAddressing(conf: PluginConfig, stdout: string, plugin: string): Addressing {
  const r = parseIpamResult(stdout, plugin);
  const c = cidrBits(r.address);
  const network = `${bigToIp(c.address & prefixMask(c.prefix, c.family), c.family)}/${c.prefix}`;
  if (r.gateway !== undefined && !contains(network, r.gateway)) {
    throw new CniError(CNI_CODES.invalidConfig, `invalid network config: IPAM plugin ${plugin} gave the gateway ${r.gateway} outside its subnet ${network}`);
  }
  // Without a gateway from IPAM, the subnet's first host is the gateway (tsnetlink's rule).
  const subnet = r.gateway !== undefined ? `${r.gateway}/${r.prefix}` : network;
  try {
    checkRequestedIp(r.ip, subnet, `the address ${plugin} gave`);
  } catch (e) {
    if (e instanceof CniError) throw e;
    throw new CniError(CNI_CODES.invalidConfig, `invalid network config: IPAM plugin ${plugin} gave ${r.address}: ${(e as Error).message}`);
  }
  return { subnets: [subnet], exact: false, requestedIps: [r.ip], routes: r.routes, dns: r.dns ?? (conf.raw['dns'] as Record<string, unknown> | undefined) };
}

/**
 * Refuses a network that tsnetlink already has with other subnets, gateways or bridge: with
 * exactly the configured subnets for the built-in IPAM, and with the subnet of each family a
 * delegated IPAM plugin gave (the network may have one of the other family beside it).
 */
function checkSame(net: Readonly<NetworkRecord>, conf: PluginConfig, addr: Addressing): void {
  const want = addr.subnets.map((s) => parseSubnet(s));
  const has = net.subnets.filter((s) => addr.exact || want.some((w) => w.family === s.family));
  const text = (subs: readonly { subnet: string; gateway: string }[]): string => subs.map((s) => `${s.subnet} (gateway ${s.gateway})`).join(' and ');
  if (text(has) !== text(want) || net.bridge !== conf.bridge) {
    throw new CniError(
      CNI_CODES.networkMismatch,
      `tsnetlink network ${net.name} exists with subnet ${text(net.subnets)}, bridge ${net.bridge}; this configuration asks for ${text(want)}, bridge ${conf.bridge}`,
      'remove the network (tsnetlink network rm) or fix the configuration',
    );
  }
}

/**
 * The network of the configuration: the existing one (checked against it) or a new one made for
 * CNI. Resolves to what the create did when this call made it, so that a failure can undo it.
 */
async function ensureNetwork(nets: Networks, conf: PluginConfig, addr: Addressing): Promise<CreateResult | undefined> {
  const existing = nets.store.getNetwork(conf.network);
  if (existing?.state === 'active') {
    checkSame(existing, conf, addr);
    return undefined;
  }
  try {
    // ipMasq is the gateway mode, which the library applies to both families of a dual-stack network.
    return await nets.createNetwork({
      name: conf.network, subnet: addr.subnets, bridge: conf.bridge, ...(conf.mtu !== undefined ? { mtu: conf.mtu } : {}), gatewayMode: conf.ipMasq ? 'nat' : 'routed', createdBy: 'cni', forwardPolicy: conf.forwardPolicy,
    });
  } catch (e) {
    // Another ADD created it meanwhile.
    const now = nets.store.getNetwork(conf.network);
    if ((e as { code?: string }).code !== 'ENETEXISTS' || now?.state !== 'active') throw e;
    checkSame(now, conf, addr);
    return undefined;
  }
}

/** Whether a route is the default route of the subnet's family through its gateway. */
function isDefault(r: CniRoute, sub: Subnet): boolean {
  return r.dst === defaultDst(sub.family) && (r.gw === undefined || r.gw === sub.gateway);
}

/** The namespace files of the plugin's own network namespace and PID 1's: the host's, for a runtime. */
function hostNetnsIds(): string[] {
  const out: string[] = [];
  for (const p of ['/proc/thread-self/ns/net', '/proc/1/ns/net']) {
    try {
      const st = statSync(p);
      out.push(`${st.dev}-${st.ino}`);
    } catch {
      // /proc/1 hidden (hidepid): our own netns is still known
    }
  }
  return out;
}

/** Linux's magic number of nsfs, the filesystem of namespace files (statfs f_type). */
const NSFS_MAGIC = 0x6e736673;

/** Names of the namespace kinds by CLONE_NEW* flag, for messages. */
const NS_KINDS: Record<number, string> = { 0x00020000: 'mount', 0x02000000: 'cgroup', 0x04000000: 'UTS', 0x08000000: 'IPC', 0x10000000: 'user', 0x20000000: 'PID', 0x00000080: 'time' };

/**
 * Refuses a CNI_NETNS that is not a container's network namespace, before anything changes:
 * missing (code 3, the container is unknown), or a regular file, a directory, a device, another
 * kind of namespace or the host's own network namespace (code 4, the spec's code for an invalid
 * environment variable). A namespace file is on nsfs; the kernel says which kind it is.
 */
export function checkContainerNetns(path: string): void {
  if (!existsSync(path)) throw new CniError(CNI_CODES.unknownContainer, `the container's network namespace ${path} does not exist`);
  const bad = (what: string): never => {
    throw new CniError(CNI_CODES.invalidEnvironment, `invalid CNI_NETNS: ${path} is ${what}, not a container's network namespace`, 'CNI_NETNS names a network namespace file such as /run/netns/NAME or /proc/PID/ns/net');
  };
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO given by mistake must not hang the plugin.
    fd = openSync(path, fsc.O_RDONLY | fsc.O_NONBLOCK | fsc.O_NOCTTY);
  } catch (e) {
    return bad(`not readable (${(e as { code?: string }).code ?? (e as Error).message})`);
  }
  try {
    const st = fstatSync(fd);
    if (statfsSync(path).type !== NSFS_MAGIC) return bad(st.isDirectory() ? 'a directory' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : st.isFIFO() ? 'a FIFO' : 'a regular file');
    const type = namespaceType(fd);
    if (type !== CLONE_NEWNET) return bad(`a ${NS_KINDS[type] ?? 'non-network'} namespace`);
    if (hostNetnsIds().includes(`${st.dev}-${st.ino}`)) return bad("the host's own network namespace");
  } finally {
    closeSync(fd);
  }
}

/**
 * Refuses host IPs of port mappings that are not addresses of this node (code 7), before
 * anything changes: nothing would ever arrive for them. 127.0.0.0/8 is always local.
 */
function checkHostIps(nets: Networks, conf: PluginConfig): void {
  const wanted = conf.portMappings.filter((m) => m.hostIP !== undefined && !m.hostIP.startsWith('127.') && m.hostIP !== '::');
  if (wanted.length === 0) return;
  const local = new Set(nets.host.addrList({}, { retries: 3 }).map((a) => a.address));
  for (const m of wanted) {
    if (!local.has(m.hostIP!)) throw new CniError(CNI_CODES.invalidConfig, `invalid network config: runtimeConfig.portMappings hostIP ${m.hostIP} (${m.protocol}/${m.hostPort}) is not an address of this node`);
  }
}

/**
 * ADD: every check first (the netns, an attachment that exists already, host IPs, the IPAM
 * answer), then the network if missing, the endpoint and routes beyond the default one; the
 * result is serialised before it is returned, so that printing it cannot fail once the kernel
 * has changed. A failure undoes exactly what this call made: its endpoint, the network if it
 * made it (with the forwarding settings that came with it), and its own IPAM allocation.
 */
export async function cmdAdd(env: CniEnv, conf: PluginConfig, stdin: string): Promise<CniResult> {
  checkContainerNetns(env.netns);
  const id = endpointIdFor(env.containerId, env.ifname);
  const nets = openNetworks();
  let allocated = false;
  let created: CreateResult | undefined;
  let rec: EndpointRecord | undefined;
  try {
    if (nets.store.getNetwork(conf.network) !== undefined && nets.store.getEndpoint(conf.network, id) !== undefined) {
      throw new NetworkError('EALREADY', `container ${env.containerId} already has ${env.ifname} on ${conf.name}; DEL it first`);
    }
    checkHostIps(nets, conf);
    let addr: Addressing;
    if (conf.ipam.type === 'tsnetlink') addr = builtinAddressing(conf as PluginConfig & { ipam: { type: 'tsnetlink' } });
    else {
      const out = delegate(conf.ipam.plugin, 'ADD', stdin, env.path);
      allocated = true;
      addr = delegatedAddressing(conf, out, conf.ipam.plugin);
    }
    const subs = addr.subnets.map((s) => parseSubnet(s));
    const extra = addr.routes.filter((r) => !subs.some((sub) => isDefault(r, sub)));
    const odd = extra.find((r) => r.dst === '0.0.0.0/0' || r.dst === '::/0');
    if (odd) throw new CniError(CNI_CODES.unsupportedField, `route ${JSON.stringify(odd)}`, 'the default route goes through the network gateway');
    const orphan = extra.find((r) => r.gw === undefined && !subs.some((sub) => sub.family === familyOf(r.dst)));
    if (orphan) throw new CniError(CNI_CODES.invalidConfig, `invalid network config: route ${orphan.dst} has no gateway, and the network has no IPv${familyOf(orphan.dst)} subnet`);
    // The library installs the default route of every family or of none; a configuration that
    // asks for one family's alone gets it as a route of its own.
    const defaults = subs.filter((sub) => conf.isDefaultGateway || addr.routes.some((r) => isDefault(r, sub)));
    const allDefaults = defaults.length === subs.length;
    const ownDefaults = allDefaults ? [] : defaults.map((sub) => ({ dst: defaultDst(sub.family), gw: sub.gateway }));
    const opts = {
      id,
      ifname: env.ifname,
      ports: conf.portMappings.map((m) => ({ hostPort: m.hostPort, containerPort: m.containerPort, protocol: m.protocol, ...(m.hostIP ? { hostIp: m.hostIP } : {}) })),
      ...(conf.mtu !== undefined ? { mtu: conf.mtu } : {}),
      ...(addr.requestedIps.length > 0 ? { ip: addr.requestedIps } : {}),
      ...(conf.mac !== undefined ? { mac: conf.mac } : {}),
      defaultRoute: allDefaults,
      attachment: { containerId: env.containerId, ifname: env.ifname },
      ...(conf.allowHostListener ? { allowHostListener: true } : {}),
      ...(conf.bandwidth ? { bandwidth: conf.bandwidth } : {}),
    };
    // A DEL of another container may remove a CNI-made network between our check and our
    // connect (ENONET): it is made again.
    for (let attempt = 1; ; attempt++) {
      created = (await ensureNetwork(nets, conf, addr)) ?? created;
      try {
        rec = await nets.connect(conf.network, { path: env.netns }, opts);
        break;
      } catch (e) {
        if ((e as { code?: string }).code !== 'ENONET' || attempt >= 3) throw e;
      }
    }
    const routes = [...ownDefaults, ...extra];
    if (routes.length > 0) addRoutes(env.netns, env.ifname, rec.addresses, routes);
    const net = nets.store.getNetwork(conf.network)!;
    const host = nets.host.linkGet(rec.hostIfname);
    // The stock bandwidth plugin lists the ifb it made; so does this one.
    const ifb = rec.bandwidth?.egress ? nets.host.linkGet(ifbNameFor(net.name, rec.id)) : undefined;
    const result = buildResult(
      conf.cniVersion,
      {
        bridge: { name: net.bridge, mac: net.mac },
        hostVeth: { name: rec.hostIfname, ...(host.mac ? { mac: host.mac } : {}) },
        container: { name: rec.ifname, mac: rec.mac, ...(conf.mtu !== undefined ? { mtu: conf.mtu } : {}), sandbox: env.netns },
        ...(ifb ? { ifb: { name: ifb.name, ...(ifb.mac ? { mac: ifb.mac } : {}) } } : {}),
        addresses: rec.addresses.map((a) => ({ address: a.cidr, gateway: a.gateway })),
        routes: [...(rec.defaultRoute ? rec.addresses.map((a) => ({ dst: defaultDst(a.family), gw: a.gateway })) : []), ...routes],
        ...(addr.dns ? { dns: addr.dns } : {}),
      },
      conf.prevResult,
    );
    JSON.stringify(result);
    return result;
  } catch (e) {
    // The spec's rule: a failed ADD releases what it took, and only that.
    if (rec) await nets.disconnect(conf.network, rec.id).catch(() => undefined);
    if (created) await nets.undoCreate(created).catch((u: unknown) => process.stderr.write(`tsnetlink-cni: undoing the creation of ${conf.network} failed: ${(u as Error).message}\n`));
    if (allocated && conf.ipam.type === 'delegated') runDelegate(conf.ipam.plugin, 'DEL', stdin, env.path);
    throw e;
  } finally {
    nets.close();
  }
}

/** Routes the library does not install, inside the container (ip -n NS route add DST via GW dev IF), each via its family's gateway unless it names one. */
function addRoutes(netns: string, ifname: string, addresses: readonly AddressRecord[], routes: readonly CniRoute[]): void {
  const ns = openNetns({ path: netns });
  try {
    const rt = openRtnlIn(ns);
    try {
      for (const r of routes) rt.routeAdd({ dst: r.dst, gateway: r.gw ?? addresses.find((a) => a.family === familyOf(r.dst))!.gateway, oif: ifname });
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
  // An ADD killed while it made the network (containerd kills the plugin when RunPodSandbox
  // passes its deadline, then sends DEL) left the record 'creating', with what it made so far.
  // The reconciler undoes it once no create is running (it waits for the global lock, which a
  // live create holds throughout), so the DEL does not leave a half-made network behind.
  if (net?.createdBy === 'cni' && net.state !== 'active') {
    await nets.pruneReport(network);
    return;
  }
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
      if (deferred) {
        const network = conf.network;
        deferred(async () => {
          const later = openNetworks();
          try {
            await removeIfEmpty(later, network);
          } finally {
            later.close();
          }
        });
      } else await removeIfEmpty(nets, conf.network);
    }
  } finally {
    nets.close();
  }
  if (conf.ipam.type === 'delegated') delegate(conf.ipam.plugin, 'DEL', stdin, env.path);
}

/**
 * DEL with a configuration the plugin cannot read (not JSON, a version or a value it refuses):
 * the attachment is found by its own record, on the network the configuration names when its
 * name can be read, else on any network, and released with everything the record names
 * (address, host ports, rules, veth). A delegated IPAM plugin the configuration still names is
 * asked to release its address too; as the configuration is broken, its refusal is reported on
 * stderr and does not fail the DEL. Success when no record is left, so a runtime can always
 * remove its container.
 */
export async function cmdDelByRecord(env: CniEnv, raw: Record<string, unknown> | undefined, stdin: string, why: unknown): Promise<void> {
  process.stderr.write(`tsnetlink-cni: DEL with a configuration that cannot be used (${(why as Error)?.message ?? String(why)}): releasing what the attachment's record names\n`);
  const id = endpointIdFor(env.containerId, env.ifname);
  const named = typeof raw?.['name'] === 'string' && raw['name'] !== '' ? networkNameFor(raw['name']) : undefined;
  const nets = openNetworks();
  try {
    const names = nets.store.networkNames();
    for (const network of named !== undefined && names.includes(named) ? [named, ...names.filter((n) => n !== named)] : names) {
      let rec: EndpointRecord | undefined;
      try {
        rec = nets.store.getEndpoint(network, id);
      } catch {
        continue; // an unreadable record of another network is not this attachment's
      }
      const att = rec?.attachment;
      if (!rec || att?.containerId !== env.containerId || att.ifname !== env.ifname) continue;
      await nets.disconnect(network, id);
      await removeIfEmpty(nets, network);
      break;
    }
  } finally {
    nets.close();
  }
  const ipam = raw?.['ipam'] as Record<string, unknown> | undefined;
  const plugin = typeof ipam === 'object' && ipam !== null ? ipam['type'] : undefined;
  if (typeof plugin === 'string' && plugin !== '' && plugin !== 'tsnetlink' && !/[/\\]/.test(plugin)) {
    try {
      const out = runDelegate(plugin, 'DEL', stdin, env.path);
      if (out.error) process.stderr.write(`tsnetlink-cni: IPAM plugin ${plugin} DEL failed: ${out.error.msg}\n`);
    } catch (e) {
      process.stderr.write(`tsnetlink-cni: IPAM plugin ${plugin} DEL failed: ${(e as Error).message}\n`);
    }
  }
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
