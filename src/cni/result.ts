/**
 * ADD results in the shape of each spec version, chained onto a previous plugin's result, and
 * the reading of a delegated IPAM plugin's result. 0.3.0, 0.3.1 and 0.4.0 mark each IP with
 * "version": "4" or "6"; 1.0.0 and 1.1.0 do not. Interfaces are listed host side first, as the reference bridge plugin
 * lists them (bridge, host veth, container interface), and each IP names its interface by index.
 */
import { CniError, CNI_CODES } from './errors.js';
import { decodeJson, parseRoutes, type CniRoute } from './config.js';
import { RESULT_SHAPE } from './godecode.js';
import { ipsHaveVersion } from './version.js';
import { ipFamily } from '../ip/cidr.js';

/** An interface of a result. */
export interface ResultInterface {
  name: string;
  mac?: string;
  mtu?: number;
  sandbox?: string;
}

/** An IP of a result. */
export interface ResultIp {
  version?: '4' | '6';
  address: string;
  gateway?: string;
  interface?: number;
}

/** The ADD success object. */
export interface CniResult {
  cniVersion: string;
  interfaces?: ResultInterface[];
  ips?: ResultIp[];
  routes?: CniRoute[];
  dns?: Record<string, unknown>;
}

/** What one attachment made, for the result. */
export interface Attachment {
  bridge: { name: string; mac: string };
  hostVeth: { name: string; mac?: string };
  container: { name: string; mac: string; mtu?: number; sandbox: string };
  /** The ifb device that limits the container's outgoing traffic, when it has one. */
  ifb?: { name: string; mac?: string };
  /** The container's addresses (CIDR) with their gateways, IPv4 first. */
  addresses: { address: string; gateway: string }[];
  routes: CniRoute[];
  dns?: Record<string, unknown>;
}

function asArray<T>(v: unknown): T[] {
  return Array.isArray(v) ? (v as T[]) : [];
}

/**
 * The result of an ADD at `cniVersion`: the previous result (when chained) with this
 * attachment's interfaces, IP and routes appended.
 */
export function buildResult(cniVersion: string, a: Attachment, prev?: Record<string, unknown>): CniResult {
  const interfaces = asArray<ResultInterface>(prev?.['interfaces']).slice();
  const base = interfaces.length;
  interfaces.push({ name: a.bridge.name, mac: a.bridge.mac }, { name: a.hostVeth.name, ...(a.hostVeth.mac ? { mac: a.hostVeth.mac } : {}) }, { ...a.container });
  if (a.ifb) interfaces.push({ ...a.ifb });
  const versioned = ipsHaveVersion(cniVersion);
  const ips = a.addresses.map((x): ResultIp => ({ ...(versioned ? { version: x.address.includes(':') ? '6' : '4' } : {}), address: x.address, gateway: x.gateway, interface: base + 2 }));
  const prevIps = asArray<ResultIp>(prev?.['ips']).map((p) => {
    const { version, ...rest } = p;
    return versioned ? { version: version ?? (String(rest.address).includes(':') ? '6' : '4'), ...rest } : rest;
  });
  const out: CniResult = {
    cniVersion,
    interfaces,
    ips: [...prevIps, ...ips],
    routes: [...asArray<CniRoute>(prev?.['routes']), ...a.routes],
  };
  const dns = (prev?.['dns'] as Record<string, unknown> | undefined) ?? a.dns;
  out.dns = dns ?? {};
  return out;
}

/** What a delegated IPAM plugin handed out: one address (IPv4 when it gave one) with its prefix, gateway and routes of its family. */
export interface IpamResult {
  address: string;
  ip: string;
  prefix: number;
  gateway: string | undefined;
  routes: CniRoute[];
  dns: Record<string, unknown> | undefined;
}

/**
 * Reads an IPAM plugin's ADD result (any version's shape); code 6 when it cannot or when it
 * gave no address. tsnetlink's connect takes one requested address, so the IPv4 one is used
 * when there is one (an IPv6-only plugin's IPv6 one otherwise), with the routes of its family.
 */
export function parseIpamResult(stdout: string, plugin: string): IpamResult {
  const v = decodeJson(stdout, `the result of IPAM plugin ${plugin}`, RESULT_SHAPE);
  const ips = asArray<Record<string, unknown>>(v['ips']).filter((i) => typeof i['address'] === 'string');
  const first = ips.find((i) => !(i['address'] as string).includes(':')) ?? ips[0];
  if (first === undefined) throw new CniError(CNI_CODES.decodingFailure, `IPAM plugin ${plugin} returned no address`, 'a container needs an address of one family at least');
  const m = /^([^/]+)\/(\d{1,3})$/.exec(first['address'] as string);
  const family = m ? ipFamily(m[1]!) : undefined;
  if (!m || family === undefined || Number(m[2]) > (family === 4 ? 32 : 128)) throw new CniError(CNI_CODES.decodingFailure, `IPAM plugin ${plugin} returned the address ${JSON.stringify(first['address'])}, not a CIDR`);
  let routes: CniRoute[];
  try {
    routes = parseRoutes(asArray<Record<string, unknown>>(v['routes']).filter((r) => String(r?.['dst']).includes(':') === (family === 6)), `routes of IPAM plugin ${plugin}`);
  } catch (e) {
    throw new CniError(CNI_CODES.decodingFailure, (e as Error).message);
  }
  return {
    address: first['address'] as string,
    ip: m[1]!,
    prefix: Number(m[2]),
    gateway: typeof first['gateway'] === 'string' ? first['gateway'] : undefined,
    routes,
    dns: typeof v['dns'] === 'object' && v['dns'] !== null ? (v['dns'] as Record<string, unknown>) : undefined,
  };
}
