/**
 * Forgetting a container's connections: one dump of the conntrack table (IPv4 entries, or both
 * families when an IPv6 address or a UDP port of every address is to be forgotten), then one
 * pipelined batch deleting every entry that matches, as `conntrack -D` does but without a
 * process per filter. A container's address can be handed to a new container right after it
 * leaves, and its flows must not follow the address. The ctnetlink work is the public Conntrack
 * handle's (netlink/conntrack-client.ts): its async dump receives each part off the JS thread
 * (the kernel walks the table inside recvmsg), and the deletes are run by the async driver
 * (core/op.ts); what to forget, and which calls share a dump, is decided here.
 */
import { readFileSync, statSync } from 'node:fs';
import { Conntrack } from '../netlink/netfilter/conntrack-client.js';
import { CT_PROTOCOLS, ctDeleteRequest, type ConntrackEntry } from '../netlink/netfilter/conntrack.js';
import { batchOp, runAsync } from '../netlink/core/op.js';
import { DumpInterruptedError } from '../errors.js';
import type { ConnectionFilter } from './types.js';
import { turnDue, yieldTurn } from '../sys/turn.js';

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

/** A call of forgetConnections waiting for its dump. */
interface Forget {
  filter: ConnectionFilter;
  ips: ReadonlySet<string>;
  resolve: (n: number) => void;
  reject: (e: unknown) => void;
}

/** By netns: the calls that came while a dump of that netns ran, served together by the next one. */
const waiting = new Map<string, Forget[]>();

/** The calling thread's netns as "dev-ino". */
function threadNetns(): string {
  const st = statSync('/proc/thread-self/ns/net');
  return `${st.dev}-${st.ino}`;
}

/** Whether a filter needs IPv6 entries: an IPv6 address, or a UDP port published on every address or an IPv6 one (a dual-stack or IPv6-only network). */
function needsIpv6(f: ConnectionFilter, ips: ReadonlySet<string>): boolean {
  return [...ips].some((ip) => ip.includes(':')) || (f.udpPorts ?? []).some((p) => p.hostIp === undefined || p.hostIp === '0.0.0.0' || p.hostIp.includes(':'));
}

/**
 * Deletes every conntrack entry matching `filter` in the calling thread's netns (IPv4 entries,
 * and IPv6 ones too when the filter names an IPv6 address or a UDP port of every address);
 * resolves to how many went. The dump walks the kernel's whole conntrack hash table (~13 ms for
 * 262,144 buckets on this kind of machine, however few entries, whichever families it returns),
 * so no part of it runs on the JS thread (the async dump receives off it), and calls made while a dump of the
 * same netns runs share the next one: 100 disconnects at once walk the table a few times, not
 * 100. The socket is opened by the call that finds no dump running, inside whatever namespace
 * section it was made from. An entry that vanished between the dump and the delete (ENOENT) is
 * not an error.
 * `conntrack -D [-f ipv4|ipv6] --orig-src IP`, `--reply-src IP`, `-p udp --orig-port-dst PORT`
 */
export function forgetConnections(filter: ConnectionFilter): Promise<number> {
  const ips = new Set(filter.ips ?? []);
  if (ips.size === 0 && (filter.udpPorts ?? []).length === 0) return Promise.resolve(0);
  // The per-netns entry count is one small read; with no entry there is no table to walk.
  if (trackedCount() === 0) return Promise.resolve(0);
  const key = threadNetns();
  return new Promise<number>((resolve, reject) => {
    const f: Forget = { filter, ips, resolve, reject };
    const queued = waiting.get(key);
    if (queued) return void queued.push(f);
    let ct: Conntrack;
    try {
      ct = Conntrack.open();
    } catch (e) {
      return reject(e);
    }
    waiting.set(key, []);
    void serve(key, ct, [f]);
  });
}

/** Runs dumps for a netns until no call waits; then closes its socket. */
async function serve(key: string, ct: Conntrack, first: Forget[]): Promise<void> {
  try {
    for (let round = first; round.length > 0; round = waiting.get(key)?.splice(0) ?? []) await forgetRound(ct, round);
  } finally {
    waiting.delete(key);
    ct.close();
  }
}

/** One dump for every call of the round, then one pipelined delete of every entry any of them matches. */
async function forgetRound(ct: Conntrack, round: readonly Forget[]): Promise<void> {
  try {
    let all: ConntrackEntry[];
    try {
      all = await ct.listAsync(round.some((f) => needsIpv6(f.filter, f.ips)) ? {} : { family: 4 }, { retries: 3 });
    } catch (e) {
      // A table that keeps changing under the dump: what was read is still worth flushing.
      if (!(e instanceof DumpInterruptedError)) throw e;
      all = e.partial as ConntrackEntry[];
    }
    // The dump's decoding has had the JS thread; the deletes' encoding waits for a turn if due.
    if (turnDue()) await yieldTurn();
    const mine = round.map((f) => all.filter((e) => matches(e, f.filter, f.ips)));
    const gone = await deleteAsync(ct, [...new Set(mine.flat())]);
    round.forEach((f, i) => f.resolve(mine[i]!.filter((e) => gone.has(e)).length));
  } catch (e) {
    for (const f of round) f.reject(e);
  }
}

/** Deletes dumped entries through the socket's async queue; returns those that went (ENOENT: already gone). */
async function deleteAsync(ct: Conntrack, entries: readonly ConntrackEntry[]): Promise<Set<ConntrackEntry>> {
  const gone = new Set<ConntrackEntry>();
  if (entries.length === 0) return gone;
  const res = await runAsync(ct.socket, batchOp(entries.map(ctDeleteRequest)));
  res.forEach((r, i) => {
    if (!r.error) gone.add(entries[i]!);
    else if (r.error.code !== 'ENOENT') throw r.error;
  });
  return gone;
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
