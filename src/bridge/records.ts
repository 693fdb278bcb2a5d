/**
 * The records kept in the state directory and their shape checks. Every record read from disk
 * passes through parseNetworkRecord / parseEndpointRecord, so a truncated, empty or hand-edited
 * file is a StoreError ECORRUPT naming the file and the field, never a raw TypeError later.
 */
import { checkEndpointId, checkNetworkName } from '../names.js';
import { validateIfname } from '../netlink/core/validate.js';
import type { GatewayMode, PortMapping } from '../firewall/types.js';
import { BACKENDS, type BackendName } from '../firewall/registry.js';
import { StoreError } from '../sys/fsio.js';
import { ValidationError } from '../errors.js';
import { canonicalIp, contains, ipFamily, ipToBig, parseSubnet, type Family, type Subnet } from '../ip/cidr.js';
import { normalizeMappings } from './ports.js';
import { checkBandwidth, type Bandwidth } from './shaping.js';

/**
 * Where a record is in its life. An operation writes 'creating' (connect, create) or 'removing'
 * (disconnect, rm) before it changes the kernel and 'active' or nothing once it is done; the
 * operation holds the record's lock all along, so whoever takes that lock and still finds
 * 'creating' or 'removing' knows the operation died half-way and finishes or undoes it.
 */
export type RecordState = 'creating' | 'active' | 'removing';

/** One subnet of a network: its family, canonical CIDR, the bridge's address in it and the prefix length. */
export interface SubnetRecord {
  family: Family;
  /** Canonical subnet, e.g. 192.168.10.0/24 or fd00:10::/64. */
  subnet: string;
  gateway: string;
  prefix: number;
}

/** A bridge network as persisted (`tsnetlink network inspect NAME`). */
export interface NetworkRecord {
  name: string;
  driver: 'bridge';
  /** Linux bridge name (equal to the network name, as `mydocker network create` does). */
  bridge: string;
  /** The first of `subnets` (the IPv4 one on a dual-stack network), e.g. 192.168.10.0/24. */
  subnet: string;
  gateway: string;
  prefix: number;
  /** Every subnet, at most one per family, IPv4 first; a record from before dual stack has its one. */
  subnets: SubnetRecord[];
  mtu?: number;
  /** The bridge's fixed MAC: it never changes when ports come and go. */
  mac: string;
  /** No outbound NAT and no traffic in or out but between the network's containers and the host. */
  internal: boolean;
  /** Containers of the network may reach each other. */
  icc: boolean;
  gatewayMode: GatewayMode;
  /** 'cni': created by the CNI plugin's ADD, and removed by the DEL or GC that frees its last endpoint. */
  createdBy?: 'cni';
  /** The firewall backend holding the network's rules (records of older versions: iptables). */
  firewall: BackendName;
  state: RecordState;
  createdAt: string;
}

/** One address of an endpoint, from the network's subnet of that family. */
export interface AddressRecord {
  family: Family;
  ip: string;
  /** As configured inside the container, e.g. 192.168.10.2/24 or fd00:10::2/64. */
  cidr: string;
  gateway: string;
}

/** The CNI attachment an endpoint is: the runtime's (CNI_CONTAINERID, CNI_IFNAME). */
export interface EndpointAttachment {
  containerId: string;
  ifname: string;
}

/** A container attached to a network. */
export interface EndpointRecord {
  id: string;
  network: string;
  /** The first of `addresses` (the IPv4 one on a dual-stack network). */
  ip: string;
  /** CIDR as configured inside the container, e.g. 192.168.10.2/24. */
  cidr: string;
  mac: string;
  gateway: string;
  /** One address per subnet of the network, in the network's order. */
  addresses: AddressRecord[];
  /** Host-side veth name (random veth%08x). */
  hostIfname: string;
  /** Interface name inside the container. */
  ifname: string;
  /** The container netns as given (path, /proc/PID/ns/net or /run/netns/NAME). */
  netns: string;
  /** st_dev-st_ino of the netns, to refuse a second connect of the same container. */
  netnsKey: string;
  mappings: PortMapping[];
  /** Whether this endpoint installed the container's default route (the first network does). */
  defaultRoute: boolean;
  /** Set when the endpoint was made by a CNI ADD: GC frees only such endpoints. */
  attachment?: EndpointAttachment;
  /** Its rate limits (bits/s, bits), applied with tc; check verifies them and repair restores them. */
  bandwidth?: Bandwidth;
  state: RecordState;
  createdAt: string;
}

const STATES: readonly RecordState[] = ['creating', 'active', 'removing'];
const MODES: readonly GatewayMode[] = ['nat', 'nat-unprotected', 'routed'];
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/**
 * A locally administered MAC derived from an address, so that it is stable and never collides on
 * the bridge: Docker's 02:42 followed by the IPv4 address; for an IPv6 address (an IPv6-only
 * network), 02:42 followed by the four 32-bit words of the address XORed together, which is
 * unique among the addresses of one subnet that differ only in their lowest 32 bits (all that
 * IPAM hands out before it wraps).
 */
export function macForIp(ip: string): string {
  const n = ipToBig(ip);
  let low = n & 0xffffffffn;
  if (ipFamily(ip) === 6) for (let i = 1n; i < 4n; i++) low ^= (n >> (32n * i)) & 0xffffffffn;
  const bytes = [24n, 16n, 8n, 0n].map((s) => Number((low >> s) & 0xffn).toString(16).padStart(2, '0'));
  return ['02', '42', ...bytes].join(':');
}

/** The parsed subnets of a network record, in its order. */
export function subnetsOf(net: Pick<NetworkRecord, 'subnets'>): Subnet[] {
  // The gateway with its prefix names both the subnet and the gateway, in either family.
  return net.subnets.map((s) => parseSubnet(`${s.gateway}/${s.prefix}`));
}

/** The network's subnet of `family`, or undefined. */
export function subnetOf(net: Pick<NetworkRecord, 'subnets'>, family: Family): SubnetRecord | undefined {
  return net.subnets.find((s) => s.family === family);
}

/** The endpoint's address of `family`, or undefined. */
export function addressOf(ep: Pick<EndpointRecord, 'addresses'>, family: Family): AddressRecord | undefined {
  return ep.addresses.find((a) => a.family === family);
}

/** The record of a parsed subnet. */
export function subnetRecord(s: Subnet): SubnetRecord {
  return { family: s.family, subnet: s.subnet, gateway: s.gateway, prefix: s.prefix };
}

/** The CNI spec's rule for container ids: [A-Za-z0-9] then [A-Za-z0-9_.-]*. */
export const CONTAINER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** Checks a CNI attachment (container id by the CNI rule, interface name by the kernel's). */
export function checkAttachment(value: unknown): EndpointAttachment {
  const v = value as Partial<EndpointAttachment> | null;
  if (typeof v !== 'object' || v === null) throw new ValidationError('attachment', 'must be { containerId, ifname }');
  if (typeof v.containerId !== 'string' || !CONTAINER_ID_RE.test(v.containerId)) {
    throw new ValidationError('attachment.containerId', `must start with a letter or digit followed by [A-Za-z0-9_.-], got ${JSON.stringify(v.containerId)}`);
  }
  return { containerId: v.containerId, ifname: validateIfname(v.ifname, 'attachment.ifname') };
}

class Reader {
  constructor(
    private readonly path: string,
    private readonly obj: Record<string, unknown>,
  ) {}

  fail(field: string, why: string): never {
    throw new StoreError('ECORRUPT', this.path, `field "${field}" ${why}`);
  }
  str(field: string): string {
    const v = this.obj[field];
    if (typeof v !== 'string' || v === '') this.fail(field, 'is missing or not a string');
    return v;
  }
  optStr(field: string, fallback: string): string {
    return this.obj[field] === undefined ? fallback : this.str(field);
  }
  bool(field: string, fallback: boolean): boolean {
    const v = this.obj[field];
    if (v === undefined) return fallback;
    if (typeof v !== 'boolean') this.fail(field, 'is not a boolean');
    return v;
  }
  int(field: string, optional = false): number | undefined {
    const v = this.obj[field];
    if (v === undefined && optional) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v)) this.fail(field, 'is missing or not an integer');
    return v;
  }
  oneOf<T extends string>(field: string, values: readonly T[], fallback: T): T {
    const v = this.obj[field];
    if (v === undefined) return fallback;
    if (!values.includes(v as T)) this.fail(field, `is not one of ${values.join(', ')}`);
    return v as T;
  }
  /** Runs a validator and turns its error into ECORRUPT for this field. */
  check<T>(field: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (e instanceof StoreError) throw e;
      return this.fail(field, `is invalid: ${(e as Error).message}`);
    }
  }
}

function reader(value: unknown, path: string): Reader {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new StoreError('ECORRUPT', path, 'is not a JSON object');
  return new Reader(path, value as Record<string, unknown>);
}

/**
 * Checks a network record read from `path` whose file is named after `name`. Fields that older
 * versions did not write get the values those versions behaved by.
 */
export function parseNetworkRecord(value: unknown, path: string, name: string): NetworkRecord {
  const r = reader(value, path);
  const recName = r.check('name', () => checkNetworkName(r.str('name')));
  if (recName !== name) r.fail('name', `is ${JSON.stringify(recName)} but the file is named after ${JSON.stringify(name)}`);
  if (r.optStr('driver', 'bridge') !== 'bridge') r.fail('driver', 'is not "bridge"');
  const bridge = r.check('bridge', () => validateIfname(r.str('bridge')));
  const rawSubnets = (value as Record<string, unknown>)['subnets'];
  // A record written before dual stack has one IPv4 subnet in subnet/gateway/prefix.
  const subnets = rawSubnets === undefined ? [{ subnet: r.str('subnet'), gateway: r.str('gateway'), prefix: r.int('prefix')! }] : rawSubnets;
  const subs = r.check(rawSubnets === undefined ? 'subnet' : 'subnets', () => checkSubnets(subnets));
  const first = subs[0]!;
  if (r.str('subnet') !== first.subnet || r.str('gateway') !== first.gateway || r.int('prefix') !== first.prefix) {
    r.fail('subnet', `does not match the first of subnets (${first.gateway}/${first.prefix})`);
  }
  const mtu = r.int('mtu', true);
  const mac = r.optStr('mac', macForIp(first.gateway));
  if (!MAC_RE.test(mac)) r.fail('mac', 'is not a lower-case MAC address');
  const rec: NetworkRecord = {
    name,
    driver: 'bridge',
    bridge,
    subnet: first.subnet,
    gateway: first.gateway,
    prefix: first.prefix,
    subnets: subs,
    mac,
    internal: r.bool('internal', false),
    icc: r.bool('icc', true),
    gatewayMode: r.oneOf('gatewayMode', MODES, 'nat'),
    firewall: r.oneOf('firewall', BACKENDS, 'iptables'),
    state: r.oneOf('state', STATES, 'active'),
    createdAt: r.optStr('createdAt', new Date(0).toISOString()),
  };
  if (mtu !== undefined) rec.mtu = mtu;
  if ((value as Record<string, unknown>)['createdBy'] !== undefined) rec.createdBy = r.oneOf('createdBy', ['cni'] as const, 'cni');
  return rec;
}

/** Checks an endpoint record read from `path` (network `network`, file named after `id`). */
export function parseEndpointRecord(value: unknown, path: string, network: string, id: string): EndpointRecord {
  const r = reader(value, path);
  const recId = r.check('id', () => checkEndpointId(r.str('id')));
  if (recId !== id) r.fail('id', `is ${JSON.stringify(recId)} but the file is named after ${JSON.stringify(id)}`);
  if (r.str('network') !== network) r.fail('network', `is not ${JSON.stringify(network)}`);
  const ip = r.str('ip');
  const cidr = r.str('cidr');
  const gateway = r.str('gateway');
  const rawAddresses = (value as Record<string, unknown>)['addresses'];
  // A record written before dual stack has its one IPv4 address in ip/cidr/gateway.
  const addresses = r.check('addresses', () => checkAddresses(rawAddresses === undefined ? [{ ip, cidr, gateway }] : rawAddresses));
  const a0 = addresses[0]!;
  if (a0.ip !== ip || a0.cidr !== cidr || a0.gateway !== gateway) r.fail('ip', `does not match the first of addresses (${a0.cidr} via ${a0.gateway})`);
  const mac = r.str('mac');
  if (!MAC_RE.test(mac)) r.fail('mac', 'is not a lower-case MAC address');
  const netnsKey = r.str('netnsKey');
  if (!/^\d+-\d+$/.test(netnsKey)) r.fail('netnsKey', 'is not DEV-INODE');
  const raw = (value as Record<string, unknown>)['mappings'];
  const mappings = r.check('mappings', () => normalizeMappings(raw === undefined ? [] : (raw as PortMapping[])));
  const att = (value as Record<string, unknown>)['attachment'];
  const bw = (value as Record<string, unknown>)['bandwidth'];
  const bandwidth = bw === undefined ? undefined : r.check('bandwidth', () => checkBandwidth(bw, 0));
  return {
    ...(att === undefined ? {} : { attachment: r.check('attachment', () => checkAttachment(att)) }),
    ...(bandwidth === undefined ? {} : { bandwidth }),
    id,
    network,
    ip,
    cidr,
    mac,
    gateway,
    addresses,
    hostIfname: r.check('hostIfname', () => validateIfname(r.str('hostIfname'))),
    ifname: r.check('ifname', () => validateIfname(r.str('ifname'))),
    netns: r.str('netns'),
    netnsKey,
    mappings,
    defaultRoute: r.bool('defaultRoute', true),
    state: r.oneOf('state', STATES, 'active'),
    createdAt: r.optStr('createdAt', new Date(0).toISOString()),
  };
}

/** Checks a list of subnets: each valid, at most one per family, IPv4 first. */
export function checkSubnets(value: unknown): SubnetRecord[] {
  if (!Array.isArray(value) || value.length === 0 || value.length > 2) throw new Error('must list one or two subnets');
  const out = value.map((v: unknown): SubnetRecord => {
    const o = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
    const [subnet, gateway, prefix] = [o['subnet'], o['gateway'], o['prefix']];
    if (typeof subnet !== 'string' || typeof gateway !== 'string' || typeof prefix !== 'number') throw new Error('each subnet needs subnet, gateway and prefix');
    const sub = parseSubnet(`${gateway}/${prefix}`);
    if (sub.subnet !== subnet || sub.gateway !== gateway || sub.prefix !== prefix) throw new Error(`${subnet} does not match gateway ${gateway}/${prefix}`);
    return subnetRecord(sub);
  });
  if (out.length === 2 && (out[0]!.family !== 4 || out[1]!.family !== 6)) throw new Error('two subnets must be one IPv4 and one IPv6, in that order');
  return out;
}

function checkAddresses(value: unknown): AddressRecord[] {
  if (!Array.isArray(value) || value.length === 0 || value.length > 2) throw new Error('must list one or two addresses');
  const out = value.map((v: unknown): AddressRecord => {
    const o = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
    const [ip, cidr, gateway] = [o['ip'], o['cidr'], o['gateway']];
    if (typeof ip !== 'string' || typeof cidr !== 'string' || typeof gateway !== 'string') throw new Error('each address needs ip, cidr and gateway');
    const family = ipFamily(ip);
    if (family === undefined || canonicalIp(ip) !== ip) throw new Error(`${ip} is not a canonical address`);
    if (!cidr.startsWith(`${ip}/`)) throw new Error(`${cidr} does not hold the address ${ip}`);
    if (!contains(cidr, gateway)) throw new Error(`gateway ${gateway} is outside ${cidr}`);
    return { family, ip, cidr, gateway };
  });
  if (out.length === 2 && (out[0]!.family !== 4 || out[1]!.family !== 6)) throw new Error('two addresses must be one IPv4 and one IPv6, in that order');
  return out;
}
