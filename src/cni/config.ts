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
import { contains, ipFamily, parseSubnet, type Family } from '../ip/cidr.js';
import { mappingsOverlap } from '../firewall/types.js';
import { checkBandwidth, type Bandwidth, type RateLimit } from '../bridge/index.js';
import { ValidationError } from '../errors.js';
import { goDecode, jsonDepth, MAX_DEPTH, NETCONF_SHAPE } from './godecode.js';
import { compareVersions, isSupported, requestVersion, SUPPORTED_VERSIONS, type CniVersion } from './version.js';

/** The commands of the spec. */
export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'GC' | 'STATUS' | 'VERSION';

const COMMANDS: readonly CniCommand[] = ['ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION'];
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

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
  /**
   * The built-in IPAM (`"type": "tsnetlink"` or no ipam) with one range per family, IPv4 first
   * (runtimeConfig.ipRanges when the runtime gives them, else ipam.ranges), or a delegated plugin's name.
   */
  ipam: { type: 'tsnetlink'; ranges: CniRange[]; routes: CniRoute[] } | { type: 'delegated'; plugin: string };
  portMappings: PortMappingArg[];
  /** Requested addresses (runtimeConfig.ips, then args.cni.ips, then CNI_ARGS IP=), without prefix. */
  ips: string[];
  mac: string | undefined;
  /**
   * Rate limits: the configuration's own ingressRate/ingressBurst/egressRate/egressBurst when it
   * has any (the stock bandwidth plugin's precedence), else runtimeConfig.bandwidth (what
   * Kubernetes' bandwidth annotations become). Bits per second and bits.
   */
  bandwidth: Bandwidth | undefined;
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

function ipAddr(v: unknown, field: string): string {
  if (typeof v !== 'string' || ipFamily(v) === undefined) invalid(field, `must be an IPv4 or IPv6 address, got ${JSON.stringify(v)}`);
  return v;
}

function cidr(v: unknown, field: string): string {
  const m = typeof v === 'string' ? /^([^/]+)\/(\d{1,3})$/.exec(v) : null;
  const family = m ? ipFamily(m[1]!) : undefined;
  if (!m || family === undefined || Number(m[2]) > (family === 4 ? 32 : 128)) invalid(field, `must be an IPv4 or IPv6 CIDR, got ${JSON.stringify(v)}`);
  return v as string;
}

/** The family of an address or CIDR the parser has already checked. */
export function familyOf(addressOrCidr: string): Family {
  return addressOrCidr.includes(':') ? 6 : 4;
}

/** The default route's destination of a family, as results write it. */
export function defaultDst(family: Family): string {
  return family === 4 ? '0.0.0.0/0' : '::/0';
}

/** Routes of an IPAM result or configuration, checked. */
export function parseRoutes(v: unknown, field: string): CniRoute[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) invalid(field, 'must be a list');
  return v.map((r, i) => {
    const o = obj(r, `${field}[${i}]`);
    const dst = cidr(o['dst'], `${field}[${i}].dst`);
    if (o['gw'] === undefined || o['gw'] === '') return { dst };
    const gw = ipAddr(o['gw'], `${field}[${i}].gw`);
    if (familyOf(gw) !== familyOf(dst)) invalid(`${field}[${i}].gw`, `${gw} is not of the family of ${dst}`);
    return { dst, gw };
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

/** One range of a range set, checked: a subnet of either family and an optional gateway inside it. */
function parseOneRange(r: Record<string, unknown>, field: string): CniRange {
  // An empty string is Go's zero value: containerd sends its untagged range struct with every field.
  for (const f of ['rangeStart', 'rangeEnd']) if (r[f] !== undefined && r[f] !== '') unsupported(`${field}.${f}`, r[f], 'the built-in IPAM hands out the whole subnet');
  const subnet = cidr(r['subnet'], `${field}.subnet`);
  const gateway = r['gateway'] === undefined || r['gateway'] === '' ? undefined : ipAddr(r['gateway'], `${field}.gateway`);
  // host-local keeps the configured subnet whatever the gateway says; so does tsnetlink, and a
  // gateway outside it is a mistake to name, not a reason to move the network elsewhere.
  if (gateway !== undefined && !contains(subnet, gateway)) invalid(`${field}.gateway`, `${gateway} is outside the subnet ${subnet}`);
  // Checked as the library will read it (prefix bounds, reserved ranges), before anything changes.
  try {
    parseSubnet(gateway !== undefined ? `${gateway}/${subnet.split('/')[1]}` : subnet, `${field}.subnet`);
  } catch (e) {
    invalid(`${field}.subnet`, (e as Error).message);
  }
  return { subnet, ...(gateway !== undefined ? { gateway } : {}) };
}

/**
 * Range sets in host-local's shape (`[[{subnet, gateway}], [{subnet}]]`): one set per family,
 * each of one range, returned IPv4 first as tsnetlink orders a network's subnets.
 */
function parseRangeSets(sets: unknown, field: string): CniRange[] {
  if (!Array.isArray(sets) || sets.length === 0 || !sets.every((set) => Array.isArray(set) && set.length > 0)) invalid(field, 'must be a non-empty list of non-empty lists');
  const out = (sets as unknown[][]).map((set, i) => {
    if (set.length > 1) unsupported(`${field}[${i}]`, set, 'the built-in IPAM takes one range per family; delegate to host-local for several');
    return parseOneRange(obj(set[0], `${field}[${i}][0]`), `${field}[${i}][0]`);
  });
  if (out.length > 2 || (out.length === 2 && familyOf(out[0]!.subnet) === familyOf(out[1]!.subnet))) {
    unsupported(field, sets, 'the built-in IPAM takes at most one range per family (one IPv4, one IPv6)');
  }
  return out.sort((a, b) => familyOf(a.subnet) - familyOf(b.subnet));
}

/**
 * The built-in IPAM's ranges: runtimeConfig.ipRanges when the runtime gives them (as host-local
 * lets the ipRanges capability override its configuration), else `ranges`, else host-local's
 * flat `subnet`/`gateway`.
 */
function parseRanges(ipam: Record<string, unknown>, rc: Record<string, unknown>): CniRange[] {
  for (const f of ['rangeStart', 'rangeEnd', 'dataDir', 'resolvConf']) if (ipam[f] !== undefined) unsupported(`ipam.${f}`, ipam[f], 'the built-in IPAM hands out the whole subnet; delegate to host-local for ranges');
  const ipRanges = rc['ipRanges'];
  if (ipRanges !== undefined && ipRanges !== null && !(Array.isArray(ipRanges) && ipRanges.length === 0)) return parseRangeSets(ipRanges, 'runtimeConfig.ipRanges');
  if (ipam['ranges'] !== undefined) return parseRangeSets(ipam['ranges'], 'ipam.ranges');
  return [parseOneRange(ipam, 'ipam')];
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
    // An empty or IPv4 wildcard host IP publishes on every family of the network, as the library does.
    if (hostIP !== undefined && hostIP !== '' && hostIP !== '0.0.0.0') out.hostIP = ipAddr(hostIP, `runtimeConfig.portMappings[${i}].hostIP`);
    return out;
  });
  // Two mappings of one host port would both be asked of the kernel; say which, before anything is made.
  out.forEach((m, i) => {
    const j = out.findIndex((o) => mappingsOverlap({ ...o, ...(o.hostIP ? { hostIp: o.hostIP } : {}) }, { ...m, ...(m.hostIP ? { hostIp: m.hostIP } : {}) }));
    if (j < i) invalid(`runtimeConfig.portMappings[${i}]`, `${m.protocol}/${m.hostPort} is also runtimeConfig.portMappings[${j}]: a host port can be published once`);
  });
  return out;
}

const BANDWIDTH_KEYS = ['ingressRate', 'ingressBurst', 'egressRate', 'egressBurst', 'unshapedSubnets', 'shapedSubnets'] as const;

/**
 * The bandwidth entry in force: the configuration's own keys when any is present, else
 * runtimeConfig.bandwidth. A direction with rate and burst 0 is unlimited; a rate without a
 * burst (or the reverse), a value that is not a whole number of bits, a burst of 4 GiB or more,
 * or one below a packet of the interface's MTU is refused before anything changes. Limits by
 * subnet (shapedSubnets, unshapedSubnets) are not implemented: refused rather than ignored.
 */
function parseBandwidth(raw: Record<string, unknown>, rc: Record<string, unknown>, mtu: number): Bandwidth | undefined {
  const own = BANDWIDTH_KEYS.some((k) => raw[k] !== undefined);
  const field = own ? '' : 'runtimeConfig.bandwidth.';
  const entry = own ? raw : rc['bandwidth'] === undefined ? undefined : obj(rc['bandwidth'], 'runtimeConfig.bandwidth');
  if (entry === undefined) return undefined;
  for (const k of ['unshapedSubnets', 'shapedSubnets'] as const) {
    const v = entry[k];
    if (v !== undefined && v !== null && !(Array.isArray(v) && v.length === 0)) unsupported(`${field}${k}`, v, 'tsnetlink limits all of an attachment\'s traffic, not traffic by subnet');
  }
  const num = (k: string): number => {
    const v = entry[k] ?? 0;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) invalid(`${field}${k}`, `must be a whole number >= 0, got ${JSON.stringify(v)}`);
    return v;
  };
  const dir = (d: 'ingress' | 'egress'): RateLimit | undefined => {
    const rate = num(`${d}Rate`);
    const burst = num(`${d}Burst`);
    if (rate === 0 && burst === 0) return undefined;
    if (rate === 0 || burst === 0) invalid(`${field}${d}${rate === 0 ? 'Rate' : 'Burst'}`, `is 0 while ${d}${rate === 0 ? 'Burst' : 'Rate'} is set: give both, or neither`);
    return { rate, burst };
  };
  try {
    return checkBandwidth({ ingress: dir('ingress'), egress: dir('egress') }, mtu, `${field}bandwidth`);
  } catch (e) {
    // Reported under the configuration's own key names (ingressBurst, not bandwidth.ingress.burst).
    if (e instanceof ValidationError) invalid(e.field.replace(/bandwidth\.(ingress|egress)\.(rate|burst)$/, (_, d: string, k: string) => `${d}${k[0]!.toUpperCase()}${k.slice(1)}`), e.message.slice(e.field.length + 2));
    throw e;
  }
}

/** Requested addresses: runtimeConfig.ips, else args.cni.ips, else CNI_ARGS IP= (the conventions' order). */
function requestedIps(raw: Record<string, unknown>, env: CniEnv): string[] {
  const rc = raw['runtimeConfig'] as Record<string, unknown> | undefined;
  const fromArgs = ((raw['args'] as Record<string, unknown> | undefined)?.['cni'] as Record<string, unknown> | undefined)?.['ips'];
  const list = rc?.['ips'] ?? fromArgs ?? (env.args.has('IP') ? env.args.get('IP')!.split(',') : undefined);
  if (list === undefined) return [];
  if (!Array.isArray(list)) invalid('ips', 'must be a list of addresses');
  const bare = list.map((a, i) => {
    if (typeof a !== 'string') invalid(`ips[${i}]`, 'must be a string');
    return a.replace(/\/\d{1,3}$/, '');
  });
  // An attachment has one address per family: a dual-stack pod may ask for one of each; a
  // family it names none of gets the next free address of that range.
  const ips = bare.map((a, i) => ipAddr(a, `ips[${i}]`));
  const twice = ips.find((a, i) => ips.findIndex((b) => familyOf(b) === familyOf(a)) !== i);
  if (twice !== undefined) unsupported('ips', list, `one address per family: ${ips.filter((a) => familyOf(a) === familyOf(twice)).join(' and ')} are both IPv${familyOf(twice)}`);
  return ips;
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
  const rc = raw['runtimeConfig'] === undefined ? {} : obj(raw['runtimeConfig'], 'runtimeConfig');
  let ipam: PluginConfig['ipam'] = { type: 'delegated', plugin: ipamType };
  if (ipamType === 'tsnetlink') {
    const ranges = parseRanges(ipamRaw, rc);
    // Without routes the built-in IPAM gives the default route of each family it has.
    const routes = ipamRaw['routes'] === undefined ? ranges.map((r) => ({ dst: defaultDst(familyOf(r.subnet)) })) : parseRoutes(ipamRaw['routes'], 'ipam.routes');
    const strange = routes.find((r) => !ranges.some((g) => familyOf(g.subnet) === familyOf(r.dst)));
    if (strange !== undefined) invalid('ipam.routes', `${strange.dst} is IPv${familyOf(strange.dst)}, and the ranges have no subnet of that family`);
    ipam = { type: 'tsnetlink', ranges, routes };
  }
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
  const bandwidth = parseBandwidth(raw, rc, typeof mtu === 'number' ? mtu : 1500);
  const portMappings = parsePortMappings(rc['portMappings']);
  if (ipam.type === 'tsnetlink') {
    const ranges = ipam.ranges;
    const rangeOf = (ip: string): CniRange | undefined => ranges.find((r) => familyOf(r.subnet) === familyOf(ip));
    for (const ip of ips) {
      const r = rangeOf(ip);
      if (r === undefined) invalid('ips', `${ip} is IPv${familyOf(ip)}, and the network has no IPv${familyOf(ip)} range`);
      checkRequestedIp(ip, rangeSubnet(r));
    }
    portMappings.forEach((m, i) => {
      if (m.hostIP !== undefined && rangeOf(m.hostIP) === undefined) invalid(`runtimeConfig.portMappings[${i}].hostIP`, `${m.hostIP} is IPv${familyOf(m.hostIP)}, and the network has no IPv${familyOf(m.hostIP)} range to publish it from`);
    });
  }
  return {
    cniVersion, name, network, bridge, mtu: mtu as number | undefined, ipMasq, allowHostListener, isDefaultGateway, ipam, forwardPolicy,
    portMappings,
    ips,
    bandwidth,
    mac: typeof mac === 'string' ? mac.toLowerCase() : undefined,
    prevResult: prev as Record<string, unknown> | undefined,
    validAttachments: valid,
    raw,
  };
}
