/**
 * The records kept in the state directory and their shape checks. Every record read from disk
 * passes through parseNetworkRecord / parseEndpointRecord, so a truncated, empty or hand-edited
 * file is a StoreError ECORRUPT naming the file and the field, never a raw TypeError later.
 */
import { checkEndpointId, checkNetworkName } from '../names.js';
import { validateIfname } from '../netlink/validate.js';
import type { GatewayMode, PortMapping } from '../firewall/types.js';
import { BACKENDS, type BackendName } from './firewalls.js';
import { StoreError } from '../fsio.js';
import { parseSubnet } from './cidr.js';
import { normalizeMappings } from './ports.js';

/**
 * Where a record is in its life. An operation writes 'creating' (connect, create) or 'removing'
 * (disconnect, rm) before it changes the kernel and 'active' or nothing once it is done; the
 * operation holds the record's lock all along, so whoever takes that lock and still finds
 * 'creating' or 'removing' knows the operation died half-way and finishes or undoes it.
 */
export type RecordState = 'creating' | 'active' | 'removing';

/** A bridge network as persisted (`tsnetlink network inspect NAME`). */
export interface NetworkRecord {
  name: string;
  driver: 'bridge';
  /** Linux bridge name (equal to the network name, as `mydocker network create` does). */
  bridge: string;
  /** Canonical subnet, e.g. 192.168.10.0/24. */
  subnet: string;
  gateway: string;
  prefix: number;
  mtu?: number;
  /** The bridge's fixed MAC: it never changes when ports come and go. */
  mac: string;
  /** No outbound NAT and no traffic in or out but between the network's containers and the host. */
  internal: boolean;
  /** Containers of the network may reach each other. */
  icc: boolean;
  gatewayMode: GatewayMode;
  /** The firewall backend holding the network's rules (records of older versions: iptables). */
  firewall: BackendName;
  state: RecordState;
  createdAt: string;
}

/** A container attached to a network. */
export interface EndpointRecord {
  id: string;
  network: string;
  ip: string;
  /** CIDR as configured inside the container, e.g. 192.168.10.2/24. */
  cidr: string;
  mac: string;
  gateway: string;
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
  state: RecordState;
  createdAt: string;
}

const STATES: readonly RecordState[] = ['creating', 'active', 'removing'];
const MODES: readonly GatewayMode[] = ['nat', 'nat-unprotected', 'routed'];
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** Docker's scheme: 02:42 followed by the IPv4 address, so a MAC never collides on the bridge. */
export function macForIp(ip: string): string {
  return ['02', '42', ...ip.split('.').map((x) => Number(x).toString(16).padStart(2, '0'))].join(':');
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
  const gateway = r.str('gateway');
  const prefix = r.int('prefix')!;
  const sub = r.check('subnet', () => parseSubnet(`${gateway}/${prefix}`));
  if (sub.subnet !== r.str('subnet')) r.fail('subnet', `does not match gateway ${gateway}/${prefix}`);
  const mtu = r.int('mtu', true);
  const mac = r.optStr('mac', macForIp(gateway));
  if (!MAC_RE.test(mac)) r.fail('mac', 'is not a lower-case MAC address');
  const rec: NetworkRecord = {
    name,
    driver: 'bridge',
    bridge,
    subnet: sub.subnet,
    gateway: sub.gateway,
    prefix,
    mac,
    internal: r.bool('internal', false),
    icc: r.bool('icc', true),
    gatewayMode: r.oneOf('gatewayMode', MODES, 'nat'),
    firewall: r.oneOf('firewall', BACKENDS, 'iptables'),
    state: r.oneOf('state', STATES, 'active'),
    createdAt: r.optStr('createdAt', new Date(0).toISOString()),
  };
  if (mtu !== undefined) rec.mtu = mtu;
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
  if (!cidr.startsWith(`${ip}/`)) r.fail('cidr', `does not hold the address ${ip}`);
  r.check('cidr', () => parseSubnet(cidr));
  const mac = r.str('mac');
  if (!MAC_RE.test(mac)) r.fail('mac', 'is not a lower-case MAC address');
  const netnsKey = r.str('netnsKey');
  if (!/^\d+-\d+$/.test(netnsKey)) r.fail('netnsKey', 'is not DEV-INODE');
  const raw = (value as Record<string, unknown>)['mappings'];
  const mappings = r.check('mappings', () => normalizeMappings(raw === undefined ? [] : (raw as PortMapping[])));
  return {
    id,
    network,
    ip,
    cidr,
    mac,
    gateway: r.str('gateway'),
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
