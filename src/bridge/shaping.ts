/**
 * Rate limits of an endpoint, as Kubernetes asks them (`kubernetes.io/ingress-bandwidth`,
 * `egress-bandwidth`) and the CNI bandwidth plugin applies them, with tc over rtnetlink:
 * - traffic to the container (ingress) leaves the host-side veth, so a TBF qdisc at its root
 *   limits it;
 * - traffic from the container (egress) arrives on the host-side veth, where nothing can queue
 *   it, so an ingress qdisc there redirects every packet (u32 match-all, mirred egress redirect)
 *   to an ifb device of the endpoint whose root TBF limits it; the ifb hands the packet back to
 *   the veth's receive path once shaped.
 * The ifb carries a tag ("tsnetlink/NETWORK/ID/ifb") as the veth does, so an ifb left by a
 * killed connect is found by its tag, and its name is a hash of the endpoint, so a retry finds it.
 */
import { createHash } from 'node:crypto';
import type { Link, Rtnl } from '../netlink/route/rtnl.js';
import * as L from '../netlink/route/link.js';
import { kernelPsched, xmitSize, xmitTime, type Psched } from '../netlink/route/tc-rate.js';
import type { Qdisc, Filter, TbfSpec } from '../netlink/route/tc.js';
import { ValidationError } from '../errors.js';
import { TAG_PREFIX, findLink } from './links.js';

/** One direction's limit: a rate in bits per second and a bucket (burst) in bits, as Kubernetes and CNI give them. */
export interface RateLimit {
  rate: number;
  burst: number;
}

/** An endpoint's limits: `ingress` is traffic to the container, `egress` traffic from it. */
export interface Bandwidth {
  ingress?: RateLimit;
  egress?: RateLimit;
}

/** How long a packet may wait for tokens (the CNI bandwidth plugin's and `tc ... latency 25ms`). */
const LATENCY_US = 25_000;
/**
 * The longest bucket, in seconds at the rate: the kernel's TBF keeps its bucket as a 32-bit count
 * of nanoseconds when given as time, so a larger burst (Kubernetes passes 2^32-1 bits when a pod
 * names only a rate) ends where the stock plugin's ends, about 4.3 s of traffic.
 */
const MAX_BUCKET_S = 0xffffffff / 1e9;
/** The ingress qdisc's handle and the redirect filter's priority. */
const INGRESS_PARENT = 'ffff:';
const REDIRECT_PRIO = 1;

/** Checks one direction: both numbers or neither, whole, positive, a burst below 4 GiB and above one packet of `mtu` bytes. */
function checkLimit(v: unknown, field: string, mtu: number): RateLimit | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'object' || v === null) throw new ValidationError(field, 'must be { rate, burst } (bits per second, bits)');
  const { rate, burst } = v as Partial<RateLimit>;
  for (const [k, n] of [['rate', rate], ['burst', burst]] as const) {
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n <= 0) throw new ValidationError(`${field}.${k}`, `must be a positive whole number of bits${k === 'rate' ? ' per second' : ''}, got ${JSON.stringify(n)}`);
  }
  if (rate! < 8) throw new ValidationError(`${field}.rate`, `${rate} bit/s is less than one byte per second`);
  if (burst! / 8 >= 0xffffffff) throw new ValidationError(`${field}.burst`, `${burst} bits is 4 GiB or more`);
  // A bucket smaller than one packet would drop every full-size packet: refused, not applied.
  if (burst! / 8 < mtu) throw new ValidationError(`${field}.burst`, `${burst} bits (${Math.floor(burst! / 8)} bytes) is less than one packet of ${mtu} bytes: every full-size packet would be dropped`);
  return { rate: rate!, burst: burst! };
}

/** Validates an endpoint's bandwidth option against the MTU of its link; undefined when it limits nothing. */
export function checkBandwidth(v: unknown, mtu = 1500, field = 'bandwidth'): Bandwidth | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ValidationError(field, 'must be { ingress?: { rate, burst }, egress?: { rate, burst } }');
  const extra = Object.keys(v).find((k) => k !== 'ingress' && k !== 'egress');
  if (extra !== undefined) throw new ValidationError(`${field}.${extra}`, 'unknown field (ingress and egress are known)');
  const o = v as Record<string, unknown>;
  const ingress = checkLimit(o['ingress'], `${field}.ingress`, mtu);
  const egress = checkLimit(o['egress'], `${field}.egress`, mtu);
  if (!ingress && !egress) return undefined;
  return { ...(ingress ? { ingress } : {}), ...(egress ? { egress } : {}) };
}

/** The ifb device of an endpoint: "tsb" and a hash of network and id (15 characters, the kernel's limit). */
export function ifbNameFor(network: string, id: string): string {
  return `tsb${createHash('sha256').update(`${network}/${id}`).digest('hex').slice(0, 12)}`;
}

/** The tag of an endpoint's ifb: "tsnetlink/NETWORK/ID/ifb". */
export function ifbTag(network: string, id: string): string {
  return `${TAG_PREFIX}${network}/${id}/ifb`;
}

/** Reads an ifb tag back: "network/id", or undefined for any other alias. */
export function parseIfbTag(alias: string | undefined): string | undefined {
  if (!alias?.startsWith(TAG_PREFIX) || !alias.endsWith('/ifb')) return undefined;
  const parts = alias.slice(TAG_PREFIX.length, -'/ifb'.length).split('/');
  return parts.length === 2 && parts[0] && parts[1] ? parts.join('/') : undefined;
}

/** The tagged ifb devices of the links given, by "network/id". */
export function listTaggedIfbs(links: readonly Link[]): Map<string, Link> {
  const out = new Map<string, Link>();
  for (const l of links) {
    const key = parseIfbTag(l.alias);
    if (key !== undefined) out.set(key, l);
  }
  return out;
}

/**
 * The names of the ifb devices of these endpoints that exist and are provably theirs: an ifb
 * tagged as the endpoint's, or an untagged ifb under its hashed name (a connect killed between
 * creating and tagging it). A link of that name that is anything else is someone else's.
 */
export function ownIfbs(rtnl: Rtnl, network: string, ids: readonly string[]): string[] {
  return ids.flatMap((id) => {
    const name = ifbNameFor(network, id);
    const l = findLink(rtnl, name);
    return l !== undefined && l.kind === 'ifb' && (l.alias === undefined || parseIfbTag(l.alias) === `${network}/${id}`) ? [name] : [];
  });
}

/** The bucket in bytes: the burst, at most what the rate sends in the kernel's longest bucket. */
function bucketBytes(l: RateLimit): number {
  return Math.floor(Math.min(l.burst / 8, (l.rate / 8) * MAX_BUCKET_S));
}

/** `tc qdisc replace dev DEV root handle 1: tbf rate R burst B latency 25ms` for one direction's limit. */
function tbf(l: RateLimit): TbfSpec {
  return { rate: Math.floor(l.rate / 8), burst: bucketBytes(l), latency: LATENCY_US };
}

/**
 * Applies an endpoint's limits to its host veth (by name), idempotently, so that connect and
 * repair share it: the TBF toward the container, and for traffic from it the ifb (made, tagged
 * and up when missing), its TBF, the veth's ingress qdisc and the redirect filter, replaced
 * whole. The TBF of the ifb is in place before any packet is redirected to it.
 */
export function applyShaping(rtnl: Rtnl, network: string, id: string, hostIfname: string, bw: Bandwidth, mtu: number | undefined): void {
  if (bw.ingress) rtnl.qdiscReplace({ dev: hostIfname, parent: 'root', handle: '1:', kind: 'tbf', tbf: tbf(bw.ingress) });
  if (!bw.egress) return;
  const ifb = ifbNameFor(network, id);
  let link = findLink(rtnl, ifb);
  if (link && parseIfbTag(link.alias) !== `${network}/${id}`) throw new ValidationError('bandwidth', `a link named ${ifb} exists and is not this endpoint's (alias ${JSON.stringify(link.alias ?? '')})`);
  if (!link) link = rtnl.linkAdd(ifb, 'ifb', undefined, mtu !== undefined ? { mtu } : {});
  for (const r of rtnl.batch([L.setLinkRequest(link.index, { alias: ifbTag(network, id) }), L.setUpRequest(link.index)])) if (r.error) throw r.error;
  rtnl.qdiscReplace({ dev: link.index, parent: 'root', handle: '1:', kind: 'tbf', tbf: tbf(bw.egress) });
  rtnl.qdiscReplace({ dev: hostIfname, kind: 'ingress' });
  const current = rtnl.filterList(hostIfname, INGRESS_PARENT).filter((f) => f.priority === REDIRECT_PRIO);
  if (current.some((f) => f.kind === 'u32')) rtnl.filterDel({ dev: hostIfname, parent: INGRESS_PARENT, priority: REDIRECT_PRIO });
  rtnl.filterAdd({ dev: hostIfname, parent: INGRESS_PARENT, priority: REDIRECT_PRIO, protocol: 'all', u32: { classid: '1:1', actions: [{ kind: 'mirred', action: 'egress-redirect', dev: link.index }] } });
}

/** Whether a root TBF has this limit's rate and (within rounding) its bucket. */
function tbfMatches(q: Qdisc | undefined, l: RateLimit, p: Psched): boolean {
  if (q?.kind !== 'tbf' || !q.tbf) return false;
  const want = tbf(l);
  if (q.tbf.rate !== want.rate) return false;
  const ticks = q.options?.kind === 'tbf' ? q.options.tbf.parms?.buffer : undefined;
  if (ticks === undefined) return false;
  const burst = xmitSize(q.tbf.rate, ticks, p);
  const expected = bucketBytes(l);
  // The kernel keeps the bucket as time: read back as bytes it may differ by a few bytes' rounding.
  return Math.abs(burst - expected) <= Math.max(64, expected * 0.01) || ticks === xmitTime(Math.min(q.tbf.rate, 0xffffffff), expected, p);
}

/** A human-readable rate, for messages. */
function bits(n: number): string {
  return n >= 1e6 ? `${n / 1e6} Mbit/s` : n >= 1e3 ? `${n / 1e3} kbit/s` : `${n} bit/s`;
}

/**
 * What differs between an endpoint's limits and the kernel: the TBF toward the container, the
 * ifb (present, tagged, up), its TBF, the veth's ingress qdisc and its redirect to the ifb.
 * Empty when the endpoint is shaped as recorded (or has no limits).
 */
export function shapingProblems(rtnl: Rtnl, label: string, network: string, id: string, host: Link, bw: Bandwidth | undefined, links: ReadonlyMap<string, Link>, p: Psched = kernelPsched()): string[] {
  if (!bw) return [];
  const out: string[] = [];
  const root = (index: number): Qdisc | undefined => rtnl.qdiscList({ dev: index }).find((q) => q.parent === 0xffffffff);
  if (bw.ingress && !tbfMatches(root(host.index), bw.ingress, p)) out.push(`${label}: traffic to the container is not limited to ${bits(bw.ingress.rate)} (no matching tbf on ${host.name})`);
  if (bw.egress) {
    const name = ifbNameFor(network, id);
    const ifb = links.get(name);
    if (!ifb) out.push(`${label}: ifb ${name} for traffic from the container missing`);
    else {
      if (parseIfbTag(ifb.alias) !== `${network}/${id}`) out.push(`${label}: ifb ${name} tagged ${JSON.stringify(ifb.alias)}`);
      if (!ifb.up) out.push(`${label}: ifb ${name} down`);
      if (!tbfMatches(root(ifb.index), bw.egress, p)) out.push(`${label}: traffic from the container is not limited to ${bits(bw.egress.rate)} (no matching tbf on ${name})`);
      const redirects = rtnl.filterList(host.index, INGRESS_PARENT).some((f: Filter) => f.u32?.actions.some((a) => a.mirred?.eaction === 'egress-redirect' && a.mirred.ifindex === ifb.index));
      if (!redirects) out.push(`${label}: ${host.name} does not redirect its incoming traffic to ${name}`);
    }
  }
  return out;
}
