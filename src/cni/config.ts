/**
 * What a CNI request says: the environment (CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME,
 * CNI_ARGS, CNI_PATH) and the plugin configuration on stdin, checked completely before anything
 * changes. Every refusal is a CniError with the spec's code: 4 for the environment, 6 for stdin
 * that is not JSON, 1 for a version the plugin does not speak, 7 for a wrong value, 2 for a
 * field the plugin knows but does not implement. Field names are matched as Go's encoding/json
 * matches them (godecode.ts), because runtimes are Go programs and some send untagged structs.
 * Everything here is pure: a configuration an ADD accepted is accepted by its DEL whatever the
 * node looks like by then (checks against the node's state belong to the ADD itself).
 */
import { createHash } from 'node:crypto';
import { CniError, CNI_CODES } from './errors.js';
import { contains, parseSubnet } from '../bridge/cidr.js';
import { mappingsOverlap } from '../firewall/types.js';
import { goDecode, jsonDepth, MAX_DEPTH, NETCONF_SHAPE } from './godecode.js';
import { compareVersions, isSupported, requestVersion, SUPPORTED_VERSIONS, type CniVersion } from './version.js';

/** The commands of the spec. */
export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'GC' | 'STATUS' | 'VERSION';

const COMMANDS: readonly CniCommand[] = ['ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION'];
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const IPV4_RE = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** The CNI_* environment of one call. */
export interface CniEnv {
  command: CniCommand;
  containerId: string;
  netns: string;
  ifname: string;
  /** CNI_ARGS as key/value pairs, in order. */
  args: Map<string, string>;
  /** CNI_PATH split on ':'. */
  path: string[];
}

/** The CNI_ARGS keys the plugin acts on: a requested address and MAC. */
const KNOWN_ARGS: ReadonlySet<string> = new Set(['IgnoreUnknown', 'IP', 'MAC']);

/** Which variables each command needs (as the spec lists them, and as libcni's skel checks them). */
const REQUIRED: Record<CniCommand, readonly string[]> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME'],
  GC: [],
  STATUS: [],
  VERSION: [],
};

/** Reads CNI_COMMAND alone (code 4 when it is missing or unknown). */
export function parseCommand(env: NodeJS.ProcessEnv): CniCommand {
  const c = env['CNI_COMMAND'];
  if (!c) throw new CniError(CNI_CODES.invalidEnvironment, 'required env variables [CNI_COMMAND] missing');
  if (!(COMMANDS as readonly string[]).includes(c)) throw new CniError(CNI_CODES.invalidEnvironment, `unknown CNI_COMMAND: ${c}`, `CNI_COMMAND must be one of ${COMMANDS.join(', ')}`);
  return c as CniCommand;
}

/** Checks an interface name by the kernel's rules (the ones libcni's skel applies to CNI_IFNAME). */
function ifnameProblem(name: string): string | undefined {
  if (Buffer.byteLength(name) > 15) return 'is longer than 15 bytes';
  if (name === '.' || name === '..') return 'is . or ..';
  if (/[/:\s]/.test(name)) return 'contains / or : or whitespace';
  return undefined;
}

/** Reads and checks the environment of a call (code 4 naming every missing or invalid variable). */
export function parseEnv(env: NodeJS.ProcessEnv): CniEnv {
  const command = parseCommand(env);
  const missing = REQUIRED[command].filter((k) => !env[k]);
  if (missing.length > 0) throw new CniError(CNI_CODES.invalidEnvironment, `required env variables [${missing.join(',')}] missing`);
  const containerId = env['CNI_CONTAINERID'] ?? '';
  if (containerId !== '' && !NAME_RE.test(containerId)) {
    throw new CniError(CNI_CODES.invalidEnvironment, 'invalid characters in CNI_CONTAINERID', `CNI_CONTAINERID=${JSON.stringify(containerId)} must start with a letter or digit followed by [A-Za-z0-9_.-]`);
  }
  const ifname = env['CNI_IFNAME'] ?? '';
  const bad = ifname === '' ? undefined : ifnameProblem(ifname);
  if (bad) throw new CniError(CNI_CODES.invalidEnvironment, `invalid CNI_IFNAME: ${JSON.stringify(ifname)} ${bad}`);
  const args = new Map<string, string>();
  for (const pair of (env['CNI_ARGS'] ?? '').split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new CniError(CNI_CODES.invalidEnvironment, `invalid CNI_ARGS pair ${JSON.stringify(pair)}`, 'CNI_ARGS must be KEY=VALUE pairs separated by ";"');
    args.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  // As libcni's LoadArgs: a key the plugin does not know is an error unless the caller says
  // IgnoreUnknown (runtimes add it when they pass K8S_POD_* and others to every plugin).
  const ignore = args.get('IgnoreUnknown');
  if (ignore !== undefined && !/^(1|0|true|false)$/i.test(ignore)) throw new CniError(CNI_CODES.invalidEnvironment, `invalid CNI_ARGS: IgnoreUnknown=${ignore}`, 'IgnoreUnknown takes 1, 0, true or false');
  const unknown = [...args.keys()].filter((k) => !KNOWN_ARGS.has(k));
  if (unknown.length > 0 && !/^(1|true)$/i.test(ignore ?? '')) {
    throw new CniError(CNI_CODES.invalidEnvironment, `invalid CNI_ARGS: unknown ${unknown.join(', ')}`, `known: ${[...KNOWN_ARGS].join(', ')}; add IgnoreUnknown=1 to pass others`);
  }
  return { command, containerId, netns: env['CNI_NETNS'] ?? '', ifname, args, path: (env['CNI_PATH'] ?? '').split(':').filter((p) => p !== '') };
}

/** One IPAM range of the configuration (host-local's shape). */
export interface CniRange {
  subnet: string;
  gateway?: string;
}

/** The parts of the configuration the plugin acts on, checked. */
export interface PluginConfig {
  cniVersion: CniVersion;
  /** The CNI network name as configured. */
  name: string;
  /** The tsnetlink network it maps to (the name, or a short hashed form when it is not a valid tsnetlink name). */
  network: string;
  bridge: string;
  mtu: number | undefined;
  ipMasq: boolean;
  /**
   * Publish portMappings even over a host process listening on the port (tsnetlink's own key).
   * True by default under CNI: the runtime owns its published ports and may hold them open
   * itself to reserve them (Podman's conmon listens on each), so a listener there is no one
   * else's; `false` makes the plugin refuse, as the CLI and the library do by default.
   */
  allowHostListener: boolean;
  /** Always give the container a default route via the gateway (else only when a route says 0.0.0.0/0). */
  isDefaultGateway: boolean;
  /** The built-in IPAM (`"type": "tsnetlink"` or no ipam) or a delegated plugin's name. */
  ipam: { type: 'tsnetlink'; range: CniRange; routes: CniRoute[] } | { type: 'delegated'; plugin: string };
  portMappings: PortMappingArg[];
  /** Requested addresses (runtimeConfig.ips, then args.cni.ips, then CNI_ARGS IP=), without prefix. */
  ips: string[];
  mac: string | undefined;
  /** The previous plugin's result, as given (chaining). */
  prevResult: Record<string, unknown> | undefined;
  /** GC's `cni.dev/valid-attachments`. */
  validAttachments: { containerID: string; ifname: string }[] | undefined;
  /**
   * What a network this plugin creates does to the FORWARD policy when it turns ip_forward on:
   * "drop" (the default, as Docker does: the host must not start routing between its other
   * interfaces) or "keep" (leave it to the node's own firewall).
   */
  forwardPolicy: 'drop' | 'keep';
  /** The whole configuration as decoded (canonical field names), for the commands. */
  raw: Record<string, unknown>;
}

/** A route of the configuration or of a result. */
export interface CniRoute {
  dst: string;
  gw?: string;
}

/** runtimeConfig.portMappings as runtimes send them. */
export interface PortMappingArg {
  hostPort: number;
  containerPort: number;
  protocol: 'tcp' | 'udp';
  hostIP?: string;
}

/**
 * Refuses a MAC a container interface cannot have: not six octets, a multicast or broadcast
 * address (the low bit of the first octet set), or all zeros.
 */
function checkMac(mac: unknown): void {
  if (typeof mac !== 'string' || !/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(mac)) invalid('mac', `${JSON.stringify(mac)} is not a MAC address`);
  if ((parseInt(mac.slice(0, 2), 16) & 1) === 1) invalid('mac', `${mac} is a ${mac.toLowerCase() === 'ff:ff:ff:ff:ff:ff' ? 'broadcast' : 'multicast'} address, not an interface's own`);
  if (/^(00:){5}00$/.test(mac)) invalid('mac', `${mac} is the zero address`);
}

function invalid(field: string, why: string): never {
  throw new CniError(CNI_CODES.invalidConfig, `invalid network config: ${field} ${why}`);
}

function unsupported(field: string, value: unknown, why: string): never {
  throw new CniError(CNI_CODES.unsupportedField, `unsupported field in network config: ${field}=${JSON.stringify(value)}`, why);
}

function obj(v: unknown, field: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) invalid(field, 'must be an object');
  return v as Record<string, unknown>;
}

function optBool(o: Record<string, unknown>, field: string, fallback: boolean): boolean {
  const v = o[field];
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') invalid(field, `must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

function ipv4(v: unknown, field: string): string {
  if (typeof v !== 'string' || !IPV4_RE.test(v)) invalid(field, `must be an IPv4 address, got ${JSON.stringify(v)}`);
  return v;
}

function cidr(v: unknown, field: string): string {
  const m = typeof v === 'string' ? /^([^/]+)\/(\d{1,2})$/.exec(v) : null;
  if (!m || !IPV4_RE.test(m[1]!) || Number(m[2]) > 32) {
    if (typeof v === 'string' && v.includes(':')) unsupported(field, v, 'the CNI plugin configures IPv4 only (dual-stack networks are made with the library or the CLI)');
    invalid(field, `must be an IPv4 CIDR, got ${JSON.stringify(v)}`);
  }
  return v as string;
}

/** Routes of an IPAM result or configuration, checked. */
export function parseRoutes(v: unknown, field: string): CniRoute[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) invalid(field, 'must be a list');
  return v.map((r, i) => {
    const o = obj(r, `${field}[${i}]`);
    return { dst: cidr(o['dst'], `${field}[${i}].dst`), ...(o['gw'] !== undefined && o['gw'] !== '' ? { gw: ipv4(o['gw'], `${field}[${i}].gw`) } : {}) };
  });
}

/**
 * Parses a JSON object (code 6 when it is not one, or nests deeper than MAX_DEPTH) and gives its
 * fields their canonical names by Go's rule. The depth is bounded before anything else looks at
 * the value, so that no later step (a check, the printed result) can run out of stack.
 */
export function decodeJson(text: string, what: string, shape = NETCONF_SHAPE): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new CniError(CNI_CODES.decodingFailure, `error unmarshalling ${what}: ${(e as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new CniError(CNI_CODES.decodingFailure, `error unmarshalling ${what}: not a JSON object`);
  if (jsonDepth(v) > MAX_DEPTH) throw new CniError(CNI_CODES.decodingFailure, `error unmarshalling ${what}: nested deeper than ${MAX_DEPTH} levels`);
  return goDecode(v, shape) as Record<string, unknown>;
}

/** Parses stdin as the plugin configuration (code 6 when it is not a JSON object). */
export function decodeConfig(stdin: string): Record<string, unknown> {
  return decodeJson(stdin, 'network config');
}

/** The version of a decoded configuration, refused with code 1 when the plugin does not speak it. */
export function configVersion(raw: Record<string, unknown>, command: CniCommand): CniVersion {
  const v = requestVersion(raw);
  if (compareVersions(v, '0.0.0') === undefined) throw new CniError(CNI_CODES.decodingFailure, `cniVersion ${JSON.stringify(v)} is not a version`);
  if (!isSupported(v)) throw new CniError(CNI_CODES.incompatibleVersion, 'incompatible CNI versions', `config is ${JSON.stringify(v)}, plugin supports ${JSON.stringify(SUPPORTED_VERSIONS)}`);
  if ((command === 'GC' || command === 'STATUS') && compareVersions(v, '1.1.0')! < 0) throw new CniError(CNI_CODES.incompatibleVersion, `config version does not allow ${command}`, `${command} needs cniVersion 1.1.0 or later, config is ${v}`);
  // CHECK came with 0.4.0; libcni refuses it for older configurations the same way.
  if (command === 'CHECK' && compareVersions(v, '0.4.0')! < 0) throw new CniError(CNI_CODES.incompatibleVersion, 'config version does not allow CHECK', `CHECK needs cniVersion 0.4.0 or later, config is ${v}`);
  return v;
}

/**
 * The tsnetlink network of a CNI network name: the same name when tsnetlink accepts it (15
 * bytes, its bridge's rules), else its first 6 characters and 8 hex digits of its SHA-256.
 */
export function networkNameFor(name: string): string {
  if (name.length <= 15 && NAME_RE.test(name) && !name.endsWith('.json')) return name;
  const head = name.slice(0, 6).replace(/[^A-Za-z0-9_.-]/g, '_').replace(/^[^A-Za-z0-9]/, 'n');
  return `${head}-${createHash('sha256').update(name).digest('hex').slice(0, 8)}`;
}

/**
 * The endpoint id of an attachment: up to 40 characters of the container id, then 12 hex digits
 * of SHA-256(containerId, ifname), so that each (container, interface) pair has its own id
 * within tsnetlink's 64-character limit and a listing still shows whose it is.
 */
export function endpointIdFor(containerId: string, ifname: string): string {
  return `${containerId.slice(0, 40)}-${createHash('sha256').update(`${containerId}\0${ifname}`).digest('hex').slice(0, 12)}`;
}

/** The built-in IPAM's range: `ranges` (one range of one set), or host-local's flat `subnet`/`gateway`. */
function parseRange(ipam: Record<string, unknown>): CniRange {
  for (const f of ['rangeStart', 'rangeEnd', 'dataDir', 'resolvConf']) if (ipam[f] !== undefined) unsupported(`ipam.${f}`, ipam[f], 'the built-in IPAM hands out the whole subnet; delegate to host-local for ranges');
  let r: Record<string, unknown> = ipam;
  if (ipam['ranges'] !== undefined) {
    const sets = ipam['ranges'];
    if (!Array.isArray(sets) || sets.length === 0 || !sets.every((s) => Array.isArray(s) && s.length > 0)) invalid('ipam.ranges', 'must be a non-empty list of non-empty lists');
    if (sets.length > 1 || (sets[0] as unknown[]).length > 1) unsupported('ipam.ranges', sets, 'the built-in IPAM takes one IPv4 range');
    r = obj((sets[0] as unknown[])[0], 'ipam.ranges[0][0]');
    for (const f of ['rangeStart', 'rangeEnd']) if (r[f] !== undefined) unsupported(`ipam.ranges[0][0].${f}`, r[f], 'the built-in IPAM hands out the whole subnet');
  }
  const subnet = cidr(r['subnet'], 'ipam subnet');
  const gateway = r['gateway'] === undefined || r['gateway'] === '' ? undefined : ipv4(r['gateway'], 'ipam gateway');
  // host-local keeps the configured subnet whatever the gateway says; so does tsnetlink, and a
  // gateway outside it is a mistake to name, not a reason to move the network elsewhere.
  if (gateway !== undefined && !contains(subnet, gateway)) invalid('ipam gateway', `${gateway} is outside the subnet ${subnet}`);
  try {
    parseSubnet(gateway !== undefined ? `${gateway}/${subnet.split('/')[1]}` : subnet, 'ipam subnet');
  } catch (e) {
    invalid('ipam subnet', (e as Error).message);
  }
  return { subnet, ...(gateway !== undefined ? { gateway } : {}) };
}

/** The subnet of the built-in IPAM as tsnetlink reads it: "GATEWAY/PREFIX", or the subnet itself. */
export function rangeSubnet(range: CniRange): string {
  return range.gateway !== undefined ? `${range.gateway}/${range.subnet.split('/')[1]}` : range.subnet;
}

/**
 * Refuses a requested address the subnet cannot give a container: outside it, its network
 * address, its gateway or its broadcast address (code 7, before anything changes).
 */
export function checkRequestedIp(ip: string, subnet: string, field = 'ips'): void {
  const s = parseSubnet(subnet);
  if (!contains(s.subnet, ip)) invalid(field, `${ip} is outside the subnet ${s.subnet}`);
  if (ip === s.network) invalid(field, `${ip} is the network address of ${s.subnet}`);
  if (ip === s.gateway) invalid(field, `${ip} is the gateway of ${s.subnet}`);
  if (ip === s.broadcast) invalid(field, `${ip} is the broadcast address of ${s.subnet}`);
}

function parsePortMappings(v: unknown): PortMappingArg[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) invalid('runtimeConfig.portMappings', 'must be a list');
  const out = v.map((m, i) => {
    const o = obj(m, `runtimeConfig.portMappings[${i}]`);
    const port = (f: string): number => {
      const n = o[f];
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65535) invalid(`runtimeConfig.portMappings[${i}].${f}`, `must be a port 1-65535, got ${JSON.stringify(n)}`);
      return n;
    };
    const protocol = o['protocol'] === undefined || o['protocol'] === '' ? 'tcp' : String(o['protocol']).toLowerCase();
    if (protocol !== 'tcp' && protocol !== 'udp') unsupported(`runtimeConfig.portMappings[${i}].protocol`, o['protocol'], 'tsnetlink publishes tcp and udp ports');
    const hostIP = o['hostIP'];
    const out: PortMappingArg = { hostPort: port('hostPort'), containerPort: port('containerPort'), protocol };
    if (hostIP !== undefined && hostIP !== '' && hostIP !== '0.0.0.0') {
      if (typeof hostIP === 'string' && hostIP.includes(':')) unsupported(`runtimeConfig.portMappings[${i}].hostIP`, hostIP, 'the CNI plugin configures IPv4 only (dual-stack networks are made with the library or the CLI)');
      out.hostIP = ipv4(hostIP, `runtimeConfig.portMappings[${i}].hostIP`);
    }
    return out;
  });
  // Two mappings of one host port would both be asked of the kernel; say which, before anything is made.
  out.forEach((m, i) => {
    const j = out.findIndex((o) => mappingsOverlap({ ...o, ...(o.hostIP ? { hostIp: o.hostIP } : {}) }, { ...m, ...(m.hostIP ? { hostIp: m.hostIP } : {}) }));
    if (j < i) invalid(`runtimeConfig.portMappings[${i}]`, `${m.protocol}/${m.hostPort} is also runtimeConfig.portMappings[${j}]: a host port can be published once`);
  });
  return out;
}

/** Requested addresses: runtimeConfig.ips, else args.cni.ips, else CNI_ARGS IP= (the conventions' order). */
function requestedIps(raw: Record<string, unknown>, env: CniEnv): string[] {
  const rc = raw['runtimeConfig'] as Record<string, unknown> | undefined;
  const fromArgs = ((raw['args'] as Record<string, unknown> | undefined)?.['cni'] as Record<string, unknown> | undefined)?.['ips'];
  const list = rc?.['ips'] ?? fromArgs ?? (env.args.has('IP') ? env.args.get('IP')!.split(',') : undefined);
  if (list === undefined) return [];
  if (!Array.isArray(list)) invalid('ips', 'must be a list of addresses');
  const v4 = list.map((a, i) => {
    if (typeof a !== 'string') invalid(`ips[${i}]`, 'must be a string');
    return a.replace(/\/\d{1,2}$/, '');
  });
  if (v4.some((a) => a.includes(':'))) unsupported('ips', list, 'the CNI plugin configures IPv4 only (dual-stack networks are made with the library or the CLI)');
  if (v4.length > 1) unsupported('ips', list, 'one address per attachment');
  return v4.map((a, i) => ipv4(a, `ips[${i}]`));
}

/** Checks the plugin configuration of a call (everything but VERSION). */
export function parseConfig(raw: Record<string, unknown>, env: CniEnv): PluginConfig {
  const cniVersion = configVersion(raw, env.command);
  const name = raw['name'];
  if (name !== undefined && typeof name !== 'string') invalid('name', `must be a string, got ${JSON.stringify(name)}`);
  if (name === undefined || name === '') invalid('name', 'is missing');
  if (!NAME_RE.test(name)) invalid('name', `${JSON.stringify(name)} must start with a letter or digit followed by [A-Za-z0-9_.-]`);
  if (raw['type'] !== undefined && typeof raw['type'] !== 'string') invalid('type', 'must be a string');
  const network = networkNameFor(name);
  const bridge = raw['bridge'] === undefined ? network : raw['bridge'];
  if (typeof bridge !== 'string' || bridge === '' || ifnameProblem(bridge)) invalid('bridge', `${JSON.stringify(bridge)} is not an interface name`);
  const mtu = raw['mtu'];
  if (mtu !== undefined && (typeof mtu !== 'number' || !Number.isInteger(mtu) || mtu < 68 || mtu > 65535)) invalid('mtu', `must be an integer 68-65535, got ${JSON.stringify(mtu)}`);
  if (!optBool(raw, 'isGateway', true)) unsupported('isGateway', false, 'a tsnetlink network always has its gateway on the bridge');
  const isDefaultGateway = optBool(raw, 'isDefaultGateway', false);
  optBool(raw, 'hairpinMode', false);
  if (optBool(raw, 'promiscMode', false)) unsupported('promiscMode', true, 'bridge ports stay in their default mode');
  for (const f of ['vlan', 'vlanTrunk', 'macspoofchk', 'enabledad', 'disableContainerInterface']) if (raw[f] !== undefined && raw[f] !== false && raw[f] !== 0) unsupported(f, raw[f], 'not implemented by tsnetlink');
  const ipMasq = optBool(raw, 'ipMasq', true);
  const allowHostListener = optBool(raw, 'allowHostListener', true);
  const ipamRaw = raw['ipam'] === undefined ? {} : obj(raw['ipam'], 'ipam');
  const ipamType = ipamRaw['type'] ?? 'tsnetlink';
  if (typeof ipamType !== 'string' || ipamType === '' || /[/\\]/.test(ipamType)) invalid('ipam.type', `${JSON.stringify(ipamType)} is not a plugin name`);
  const ipam: PluginConfig['ipam'] =
    ipamType === 'tsnetlink'
      ? { type: 'tsnetlink', range: parseRange(ipamRaw), routes: ipamRaw['routes'] === undefined ? [{ dst: '0.0.0.0/0' }] : parseRoutes(ipamRaw['routes'], 'ipam.routes') } : { type: 'delegated', plugin: ipamType };
  const rc = raw['runtimeConfig'] === undefined ? {} : obj(raw['runtimeConfig'], 'runtimeConfig');
  const cniArgs = raw['args'] === undefined ? {} : obj(raw['args'], 'args');
  const argsCni = cniArgs['cni'] === undefined ? {} : obj(cniArgs['cni'], 'args.cni');
  const mac = rc['mac'] ?? argsCni['mac'] ?? (env.args.get('MAC') || undefined);
  if (mac !== undefined) checkMac(mac);
  const prev = raw['prevResult'];
  if (prev !== undefined && (typeof prev !== 'object' || prev === null || Array.isArray(prev))) throw new CniError(CNI_CODES.decodingFailure, 'failed to decode prevResult: not a JSON object');
  let valid: PluginConfig['validAttachments'];
  if (raw['cni.dev/valid-attachments'] !== undefined) {
    const list = raw['cni.dev/valid-attachments'];
    if (!Array.isArray(list)) invalid('cni.dev/valid-attachments', 'must be a list');
    valid = list.map((a, i) => {
      const o = obj(a, `cni.dev/valid-attachments[${i}]`);
      if (typeof o['containerID'] !== 'string' || typeof o['ifname'] !== 'string') invalid(`cni.dev/valid-attachments[${i}]`, 'needs containerID and ifname strings');
      return { containerID: o['containerID'], ifname: o['ifname'] };
    });
  }
  const forwardPolicy = raw['forwardPolicy'] ?? 'drop';
  if (forwardPolicy !== 'drop' && forwardPolicy !== 'keep') invalid('forwardPolicy', `must be "drop" or "keep", got ${JSON.stringify(forwardPolicy)}`);
  const ips = requestedIps(raw, env);
  if (ipam.type === 'tsnetlink') ips.forEach((ip) => checkRequestedIp(ip, rangeSubnet(ipam.range)));
  return {
    cniVersion, name, network, bridge, mtu: mtu as number | undefined, ipMasq, allowHostListener, isDefaultGateway, ipam, forwardPolicy,
    portMappings: parsePortMappings(rc['portMappings']),
    ips,
    mac: typeof mac === 'string' ? mac.toLowerCase() : undefined,
    prevResult: prev as Record<string, unknown> | undefined,
    validAttachments: valid,
    raw,
  };
}
