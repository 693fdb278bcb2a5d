/**
 * ipset elements: entries in ipset's notation ('10.0.0.1,tcp:80') or as objects, their
 * IPSET_ATTR_DATA nest as ipset sends it, and members read back from a LIST reply, with the text
 * `ipset list` would print for them. A set type's dimensions ('hash:ip,port' has ip and port)
 * say how an entry reads. Pure.
 */
import { ValidationError } from '../../errors.js';
import { validateIfname, validateMac, validateU32 } from '../core/validate.js';
import { parseCidr, parseIp } from '../../ip/parse.js';
import { IPSET_CADT_FLAG, IPSET_MAXNAMELEN, type AdtDataAttrs, type IpAddrAttrs } from './ipset-schema.js';

/** Protocols of a port entry, as ipset names them. */
export const PROTO: Record<string, number> = { tcp: 6, udp: 17, sctp: 132, udplite: 136 };
/** The names of those protocols by number. */
export const PROTO_NAME = new Map(Object.entries(PROTO).map(([k, v]) => [v, k]));

/** The dimensions of a set type ('hash:ip,port' has ip and port). */
export function dims(type: string): string[] {
  const d = type.split(':')[1];
  return d ? d.split(',') : [];
}
/** Whether a set type holds addresses (and so has a family). */
export const hasFamily = (type: string): boolean => dims(type).some((d) => d === 'ip' || d === 'net');

/** Checks a set name: 1..31 bytes, no NUL (IPSET_MAXNAMELEN). */
export function validateSetName(name: unknown, field = 'set name'): string {
  if (typeof name !== 'string' || name === '' || Buffer.byteLength(name) >= IPSET_MAXNAMELEN || name.includes('\0')) {
    throw new ValidationError(field, `${JSON.stringify(name)} must be 1..${IPSET_MAXNAMELEN - 1} bytes`);
  }
  return name;
}

/** The IPSET_ATTR_IP nest of an address: IPv4 or IPv6 by its text. */
export function ipNest(address: string): IpAddrAttrs {
  return address.includes(':') ? { v6: address } : { v4: address };
}

/** One element, as an object: the parts its set type has (hash:ip,port: ip and port) and its options. */
export interface IpsetEntry {
  /** Address, prefix ('10.1.0.0/16') or the first of a range. */
  ip?: string;
  cidr?: number;
  /** The last address of a range ('10.0.0.1-10.0.0.9'). */
  ipTo?: string;
  port?: number;
  portTo?: number;
  /** 'tcp' (the default of a port entry), 'udp', 'sctp', 'udplite', or a number. */
  proto?: string | number;
  /** The second address of hash:ip,port,ip and hash:ip,port,net. */
  ip2?: string;
  cidr2?: number;
  iface?: string;
  ether?: string;
  /** A member set of list:set. */
  name?: string;
}

/** How an element is added. */
export interface IpsetEntryOptions {
  /** Seconds until the element goes (0: never), in a set with timeouts. */
  timeout?: number;
  comment?: string;
  packets?: number | bigint;
  bytes?: number | bigint;
  /** An exception in a hash:net-like set: matching packets do not match the set. */
  nomatch?: boolean;
  /** skbinfo: mark/mask, priority, queue given to matching packets. */
  skbmark?: { mark: number; mask?: number };
  skbprio?: number;
  skbqueue?: number;
}

/** One address part of an entry: an address, a prefix ('10.1.0.0/16') or a range ('10.0.0.1-10.0.0.9'). */
export function parseAddressPart(text: string, field: string): { ip: string; cidr?: number; ipTo?: string } {
  const dash = text.indexOf('-');
  if (dash > 0 && !text.includes('/')) return { ip: parseIp(text.slice(0, dash), field).address, ipTo: parseIp(text.slice(dash + 1), field).address };
  if (text.includes('/')) {
    const c = parseCidr(text, field);
    return { ip: c.address, cidr: c.prefix };
  }
  return { ip: parseIp(text, field).address };
}

/** One port part of an entry: '[proto:]port[-port]', its protocol tcp by default in a hash type. */
export function parsePortPart(text: string, withProto: boolean): { port: number; portTo?: number; proto?: string } {
  const m = /^(?:([a-z]+):)?(\d+)(?:-(\d+))?$/.exec(text);
  if (!m || (m[1] !== undefined && !(m[1] in PROTO))) throw new ValidationError('entry', `${JSON.stringify(text)} is not a port like tcp:80, udp:53 or 8000-8080`);
  const out: { port: number; portTo?: number; proto?: string } = { port: validateU32(Number(m[2]), 'port', 0, 65535) };
  if (m[3] !== undefined) out.portTo = validateU32(Number(m[3]), 'port', 0, 65535);
  if (withProto) out.proto = m[1] ?? 'tcp';
  return out;
}

/** Reads an entry in ipset's notation for a set of `type`: '10.0.0.1', '10.1.0.0/16', '10.0.0.1,udp:53', 'fd00::1,80,10.2.0.0/24'. */
export function parseEntry(type: string, text: string): IpsetEntry {
  const d = dims(type);
  const parts = text.split(',');
  if (d.length === 0 || parts.length !== d.length) throw new ValidationError('entry', `${JSON.stringify(text)} does not fit ${type} (${d.join(',') || 'no dimensions'})`);
  const e: IpsetEntry = {};
  let addrs = 0;
  d.forEach((dim, i) => {
    const p = parts[i] as string;
    if (dim === 'ip' || dim === 'net') {
      const a = parseAddressPart(p, 'entry');
      if (addrs++ === 0) Object.assign(e, a);
      else {
        e.ip2 = a.ip;
        if (a.cidr !== undefined) e.cidr2 = a.cidr;
        if (a.ipTo !== undefined) throw new ValidationError('entry', 'the second address of an entry cannot be a range');
      }
    } else if (dim === 'port') Object.assign(e, parsePortPart(p, type.startsWith('hash:')));
    else if (dim === 'iface') e.iface = validateIfname(p, 'entry iface');
    else if (dim === 'mac') e.ether = validateMac(p, 'entry mac');
    else if (dim === 'set') e.name = validateSetName(p, 'entry set');
    else throw new ValidationError('entry', `entries of ${type} (${dim}) are not supported in text form; give an IpsetEntry`);
  });
  return e;
}

/** A u64 from a number or bigint; ValidationError outside 0..2^64-1. */
export function u64(v: number | bigint, field: string): bigint {
  const b = typeof v === 'bigint' ? v : Number.isSafeInteger(v) ? BigInt(v) : -1n;
  if (b < 0n || b > 0xffffffffffffffffn) throw new ValidationError(field, `${String(v)} is not an integer in 0..2^64-1`);
  return b;
}

/** The IPSET_ATTR_DATA of an element; `lineno` as ipset sends it with ADD and DEL (0 outside restore files). */
export function entryData(e: IpsetEntry, o: IpsetEntryOptions, lineno: boolean): AdtDataAttrs {
  const a: AdtDataAttrs = {};
  if (e.ip !== undefined) a.ip = ipNest(parseIp(e.ip, 'entry.ip').address);
  if (e.ipTo !== undefined) a.ipTo = ipNest(parseIp(e.ipTo, 'entry.ipTo').address);
  if (e.cidr !== undefined) a.cidr = validateU32(e.cidr, 'entry.cidr', 0, 128);
  if (e.port !== undefined) a.port = validateU32(e.port, 'entry.port', 0, 65535);
  if (e.portTo !== undefined) a.portTo = validateU32(e.portTo, 'entry.portTo', 0, 65535);
  if (o.timeout !== undefined) a.timeout = validateU32(o.timeout, 'timeout');
  if (e.proto !== undefined) {
    const p = typeof e.proto === 'number' ? e.proto : PROTO[e.proto];
    if (p === undefined) throw new ValidationError('entry.proto', `unknown protocol ${JSON.stringify(e.proto)}; one of ${Object.keys(PROTO).join(', ')} or a number`);
    a.proto = validateU32(p, 'entry.proto', 0, 255);
  }
  if (o.nomatch) a.cadtFlags = IPSET_CADT_FLAG.NOMATCH;
  if (lineno) a.lineno = 0;
  if (e.ether !== undefined) a.ether = validateMac(e.ether, 'entry.ether');
  if (e.name !== undefined) a.name = validateSetName(e.name, 'entry.name');
  if (e.ip2 !== undefined) a.ip2 = ipNest(parseIp(e.ip2, 'entry.ip2').address);
  if (e.cidr2 !== undefined) a.cidr2 = validateU32(e.cidr2, 'entry.cidr2', 0, 128);
  if (e.iface !== undefined) a.iface = validateIfname(e.iface, 'entry.iface');
  if (o.bytes !== undefined) a.bytes = u64(o.bytes, 'bytes');
  if (o.packets !== undefined) a.packets = u64(o.packets, 'packets');
  if (o.comment !== undefined) {
    if (Buffer.byteLength(o.comment) > 255) throw new ValidationError('comment', 'at most 255 bytes');
    a.comment = o.comment;
  }
  if (o.skbmark !== undefined) a.skbmark = (BigInt(validateU32(o.skbmark.mark, 'skbmark.mark')) << 32n) | BigInt(validateU32(o.skbmark.mask ?? 0xffffffff, 'skbmark.mask'));
  if (o.skbprio !== undefined) a.skbprio = validateU32(o.skbprio, 'skbprio');
  if (o.skbqueue !== undefined) a.skbqueue = validateU32(o.skbqueue, 'skbqueue', 0, 65535);
  return a;
}

/** A member of a set as the kernel lists it. */
export interface IpsetMember extends IpsetEntry {
  /** The member in ipset's notation ('10.0.0.1,tcp:80'), as `ipset list` prints it. */
  text: string;
  /** Seconds left, in a set with timeouts. */
  timeout?: number;
  packets?: bigint;
  bytes?: bigint;
  comment?: string;
  nomatch?: boolean;
  skbmark?: { mark: number; mask: number };
  skbprio?: number;
  skbqueue?: number;
  raw: AdtDataAttrs;
}

/** The address in an IPSET_ATTR_IP nest, of either family. */
export const addr = (a: IpAddrAttrs | undefined): string | undefined => a?.v4 ?? a?.v6;

/** A member of a set of `type` from its IPSET_ATTR_DATA. */
export function memberOf(type: string, a: AdtDataAttrs): IpsetMember {
  const m: IpsetMember = { text: '', raw: a };
  const ip = addr(a.ip);
  if (ip !== undefined) m.ip = ip;
  const ipTo = addr(a.ipTo);
  if (ipTo !== undefined) m.ipTo = ipTo;
  if (a.cidr !== undefined) m.cidr = a.cidr;
  if (a.port !== undefined) m.port = a.port;
  if (a.portTo !== undefined) m.portTo = a.portTo;
  if (a.proto !== undefined) m.proto = PROTO_NAME.get(a.proto) ?? a.proto;
  const ip2 = addr(a.ip2);
  if (ip2 !== undefined) m.ip2 = ip2;
  if (a.cidr2 !== undefined) m.cidr2 = a.cidr2;
  if (a.iface !== undefined) m.iface = a.iface;
  if (a.ether !== undefined) m.ether = a.ether;
  if (a.name !== undefined) m.name = a.name;
  if (a.timeout !== undefined) m.timeout = a.timeout;
  if (a.packets !== undefined) m.packets = a.packets;
  if (a.bytes !== undefined) m.bytes = a.bytes;
  if (a.comment !== undefined) m.comment = a.comment;
  if (a.cadtFlags !== undefined && (a.cadtFlags & IPSET_CADT_FLAG.NOMATCH) !== 0) m.nomatch = true;
  if (a.skbmark !== undefined) m.skbmark = { mark: Number(a.skbmark >> 32n), mask: Number(a.skbmark & 0xffffffffn) };
  if (a.skbprio !== undefined) m.skbprio = a.skbprio;
  if (a.skbqueue !== undefined) m.skbqueue = a.skbqueue;
  m.text = memberText(type, m);
  return m;
}

/** A member in ipset's notation: each dimension, comma separated; a prefix shown unless it is a whole address. */
export function memberText(type: string, m: IpsetMember): string {
  let addrs = 0;
  return dims(type)
    .map((d) => {
      if (d === 'ip' || d === 'net') {
        const first = addrs++ === 0;
        const a = first ? m.ip : m.ip2;
        const c = first ? m.cidr : m.cidr2;
        const max = a?.includes(':') ? 128 : 32;
        return `${a ?? ''}${c !== undefined && c !== max ? `/${c}` : ''}`;
      }
      if (d === 'port') return type.startsWith('hash:') && m.proto !== undefined ? `${m.proto}:${m.port ?? 0}` : `${m.port ?? 0}`;
      if (d === 'iface') return m.iface ?? '';
      if (d === 'mac') return m.ether ?? '';
      if (d === 'set') return m.name ?? '';
      return '';
    })
    .join(',');
}
