/**
 * Forgetting a container's connections: one dump of the conntrack table (IPv4 entries, or both
 * families when an IPv6 address or a UDP port of every address is to be forgotten), then one
 * pipelined batch deleting every entry that matches, as `conntrack -D` does but without a
 * process per filter. A container's address can be handed to a new container right after it
 * leaves, and its flows must not follow the address. The ctnetlink work is the public Conntrack
 * handle's (netlink/conntrack-client.ts); what to forget is decided here.
 */
import { readFileSync } from 'node:fs';
import { Conntrack } from '../netlink/netfilter/conntrack-client.js';
import { CT_PROTOCOLS, type ConntrackEntry } from '../netlink/netfilter/conntrack.js';
import { DumpInterruptedError } from '../errors.js';
import type { ConnectionFilter } from './types.js';

/** Whether a mapping's host IP covers a flow's original destination address. */
function hostIpCovers(hostIp: string | undefined, dst: string): boolean {
  if (hostIp === undefined || hostIp === '0.0.0.0') return true;
  if (hostIp === '::') return dst.includes(':');
  return hostIp === dst;
}

/** Whether an entry is one to forget: from or to one of the addresses, or a UDP flow towards a published port. */
function matches(e: ConntrackEntry, f: ConnectionFilter, ips: ReadonlySet<string>): boolean {
  if (ips.has(e.orig.src) || ips.has(e.reply.src)) return true;
  if (e.protocol !== CT_PROTOCOLS.udp) return false;
  return (f.udpPorts ?? []).some((p) => p.port === e.orig.dstPort && hostIpCovers(p.hostIp, e.orig.dst));
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
export async function forgetConnections(filter: ConnectionFilter): Promise<number> {
  const ips = new Set(filter.ips ?? []);
  if (ips.size === 0 && (filter.udpPorts ?? []).length === 0) return 0;
  // The per-netns entry count is one small read; with no entry there is no table to walk.
  if (trackedCount() === 0) return 0;
  const ct = Conntrack.open();
  try {
    let all: ConntrackEntry[];
    try {
      // A UDP port published without a host IP covers IPv6 flows too (on a dual-stack or
      // IPv6-only network), so any such port needs the dump of both families.
      const v6 = [...ips].some((ip) => ip.includes(':')) || (filter.udpPorts ?? []).some((p) => p.hostIp === undefined || p.hostIp === '0.0.0.0' || p.hostIp.includes(':'));
      all = await ct.listAsync(v6 ? {} : { family: 4 }, { retries: 3 });
    } catch (e) {
      // A table that keeps changing under the dump: what was read is still worth flushing.
      if (!(e instanceof DumpInterruptedError)) throw e;
      all = e.partial as ConntrackEntry[];
    }
    return ct.deleteEntries(all.filter((e) => matches(e, filter, ips)));
  } finally {
    ct.close();
  }
}

/**
 * forgetConnections for a firewall backend: a failed flush is a warning, never an error, since
 * the rules it follows are already in place and a stale flow only delays the new mapping.
 */
export async function forgetConnectionsOrWarn(filter: ConnectionFilter): Promise<void> {
  try {
    await forgetConnections(filter);
  } catch (e) {
    process.emitWarning(`tsnetlink: conntrack flush failed: ${(e as Error).message}`, 'TsnetlinkWarning');
  }
}
