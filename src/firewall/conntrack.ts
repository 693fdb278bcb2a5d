/**
 * Connection tracking over ctnetlink (NETLINK_NETFILTER, subsystem CTNETLINK): one dump of the
 * table (IPv4 entries, or both families when an IPv6 address is to be forgotten), then one
 * pipelined batch deleting every entry that matches, as `conntrack -D` does
 * but without a process per filter. A container's address can be handed to a new container
 * right after it leaves, and its flows must not follow the address.
 */
import { readFileSync } from 'node:fs';
import { attr, be16, ipAddr, nested, u8 } from '../netlink/attr.js';
import { decodePayload, request, struct, type MessageDef, type RawMessage, type Request } from '../netlink/message.js';
import { NetlinkSocket } from '../netlink/socket.js';
import { DumpInterruptedError } from '../errors.js';

/** NETLINK_NETFILTER, the nfnetlink socket protocol. */
export const NETLINK_NETFILTER = 12;
const NFNL_SUBSYS_CTNETLINK = 1;
const IPCTNL_MSG_CT_GET = 1;
const IPCTNL_MSG_CT_DELETE = 2;
const AF_UNSPEC = 0;
const AF_INET = 2;
const AF_INET6 = 10;
const IPPROTO = { tcp: 6, udp: 17 } as const;

/** nfgenmsg: family, version 0, res_id (big-endian; 0 for ctnetlink). */
const nfgenmsg = struct([
  ['family', 'u8'],
  ['version', 'u8'],
  ['resId', 'u16'],
] as const);

const ipAttrs = { v4src: attr(1, ipAddr), v4dst: attr(2, ipAddr), v6src: attr(3, ipAddr), v6dst: attr(4, ipAddr) } as const;
const protoAttrs = { num: attr(1, u8), srcPort: attr(2, be16), dstPort: attr(3, be16) } as const;
const tupleAttrs = { ip: attr(1, nested(ipAttrs)), proto: attr(2, nested(protoAttrs)) } as const;
/** CTA_TUPLE_ORIG 1, CTA_TUPLE_REPLY 2, CTA_ZONE 18; the rest of an entry is not needed here. */
const ctAttrs = { orig: attr(1, nested(tupleAttrs)), reply: attr(2, nested(tupleAttrs)), zone: attr(18, be16) } as const;
const ctMessage: MessageDef<'family' | 'version' | 'resId', typeof ctAttrs> = { header: nfgenmsg, attrs: ctAttrs };

type Tuple = { ip?: { v4src?: string; v4dst?: string; v6src?: string; v6dst?: string }; proto?: { num?: number; srcPort?: number; dstPort?: number } };

/** One tracked connection, as far as flushing needs it. */
export interface ConntrackEntry {
  /** AF_INET or AF_INET6: a delete must name the family of the tuple it carries. */
  family?: number;
  orig: Tuple;
  reply: Tuple;
  zone: number | undefined;
}

/** What to forget: entries from or to these addresses, or towards these UDP host ports. */
export interface ConntrackFilter {
  /** Entries whose original source or reply source is one of these (IPv4 or IPv6, canonical text). */
  ips?: readonly string[];
  /**
   * UDP entries whose original destination port is one of these, towards `hostIp` when given.
   * As in a port mapping, no host IP or "0.0.0.0" means every address of both families, "::"
   * every IPv6 address.
   */
  udpPorts?: readonly { port: number; hostIp?: string }[];
}

/** Whether a mapping's host IP covers a flow's original destination address. */
function hostIpCovers(hostIp: string | undefined, dst: string | undefined): boolean {
  if (hostIp === undefined || hostIp === '0.0.0.0') return true;
  if (hostIp === '::') return dst?.includes(':') === true;
  return hostIp === dst;
}

function matches(e: ConntrackEntry, f: ConntrackFilter, ips: Set<string>): boolean {
  const src = (t: Tuple): string => t.ip?.v4src ?? t.ip?.v6src ?? '';
  if (ips.has(src(e.orig)) || ips.has(src(e.reply))) return true;
  if (e.orig.proto?.num !== IPPROTO.udp) return false;
  const dst = e.orig.ip?.v4dst ?? e.orig.ip?.v6dst;
  return (f.udpPorts ?? []).some((p) => p.port === e.orig.proto?.dstPort && hostIpCovers(p.hostIp, dst));
}

/** `conntrack -L -f ipv4` as a request; with `all`, every family (`conntrack -L`). */
export function dumpRequest(all = false): Request {
  return request(ctMessage, (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET, 0, { family: all ? AF_UNSPEC : AF_INET }, {});
}

/** `conntrack -D` of one entry, named by its original tuple (and zone). */
export function deleteRequest(e: ConntrackEntry): Request {
  return request(ctMessage, (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE, 0, { family: e.family ?? AF_INET }, { orig: e.orig, ...(e.zone ? { zone: e.zone } : {}) });
}

/** Decodes a dumped IPCTNL_MSG_CT_NEW message. */
export function decodeEntry(m: RawMessage): ConntrackEntry {
  const { header, attrs } = decodePayload(ctMessage, m.payload);
  return { family: header.family === AF_INET6 ? AF_INET6 : AF_INET, orig: attrs.orig ?? {}, reply: attrs.reply ?? {}, zone: attrs.zone };
}

/** How many connections this netns tracks (net.netfilter.nf_conntrack_count); undefined when unknown. */
export function trackedCount(): number | undefined {
  try {
    const n = Number(readFileSync('/proc/sys/net/netfilter/nf_conntrack_count', 'utf8'));
    return Number.isInteger(n) ? n : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Deletes every conntrack entry matching `filter` in the calling thread's netns (IPv4 entries,
 * and IPv6 ones too when the filter names an IPv6 address or a UDP port of every address);
 * resolves to how many went. The dump walks the kernel's whole conntrack hash table (~13 ms for
 * 262,144 buckets on this kind of machine, however few entries, whichever families it returns),
 * so it is sent off the JS thread. An entry that vanished between the dump and the delete
 * (ENOENT) is not an error.
 * `conntrack -D [-f ipv4|ipv6] --orig-src IP`, `--reply-src IP`, `-p udp --orig-port-dst PORT`
 */
export async function forgetConnections(filter: ConntrackFilter): Promise<number> {
  const ips = new Set(filter.ips ?? []);
  if (ips.size === 0 && (filter.udpPorts ?? []).length === 0) return 0;
  // The per-netns entry count is one small read; with no entry there is no table to walk.
  if (trackedCount() === 0) return 0;
  const sock = NetlinkSocket.open({ protocol: NETLINK_NETFILTER, receiveBufferSize: 1 << 20 });
  try {
    let all: ConntrackEntry[];
    try {
      // A UDP port published without a host IP covers IPv6 flows too (on a dual-stack or
      // IPv6-only network), so any such port needs the dump of both families.
      const v6 = [...ips].some((ip) => ip.includes(':')) || (filter.udpPorts ?? []).some((p) => p.hostIp === undefined || p.hostIp === '0.0.0.0' || p.hostIp.includes(':'));
      all = await sock.dumpAsync(dumpRequest(v6), decodeEntry, { retries: 3 });
    } catch (e) {
      // A table that keeps changing under the dump: what was read is still worth flushing.
      if (!(e instanceof DumpInterruptedError)) throw e;
      all = e.partial as ConntrackEntry[];
    }
    const doomed = all.filter((e) => matches(e, filter, ips));
    let n = 0;
    for (const r of sock.batch(doomed.map(deleteRequest))) {
      if (!r.error) n++;
      else if (r.error.code !== 'ENOENT') throw r.error;
    }
    return n;
  } finally {
    sock.close();
  }
}

/**
 * forgetConnections for a firewall backend: a failed flush is a warning, never an error, since
 * the rules it follows are already in place and a stale flow only delays the new mapping.
 */
export async function forgetConnectionsOrWarn(filter: ConntrackFilter): Promise<void> {
  try {
    await forgetConnections(filter);
  } catch (e) {
    process.emitWarning(`tsnetlink: conntrack flush failed: ${(e as Error).message}`, 'TsnetlinkWarning');
  }
}
