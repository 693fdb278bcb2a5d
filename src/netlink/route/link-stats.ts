/**
 * Link counters: struct rtnl_link_stats64 (IFLA_STATS64) and its 32-bit forerunner struct
 * rtnl_link_stats (IFLA_STATS), as arrays of counters whose length grew with the kernel
 * (rx_nohandler in 4.6, rx_otherhost_dropped in 5.19). Read as far as the attribute goes; bytes a
 * newer kernel appends are kept, so a link message re-encodes unchanged.
 */
import { CodecError } from '../../errors.js';
import type { Codec } from '../core/attr.js';
import { literalMaker, TAIL, type WithTail } from '../core/message.js';
import { readU64 } from '../core/codecs.js';

/** The counters in their wire order, named as `ip -s -s link` groups them (rx_*, tx_*). */
export const LINK_STATS_FIELDS = [
  'rxPackets', 'txPackets', 'rxBytes', 'txBytes', 'rxErrors', 'txErrors', 'rxDropped', 'txDropped', 'multicast', 'collisions',
  'rxLengthErrors', 'rxOverErrors', 'rxCrcErrors', 'rxFrameErrors', 'rxFifoErrors', 'rxMissedErrors',
  'txAbortedErrors', 'txCarrierErrors', 'txFifoErrors', 'txHeartbeatErrors', 'txWindowErrors',
  'rxCompressed', 'txCompressed', 'rxNohandler', 'rxOtherhostDropped',
] as const;
export type LinkStatsField = (typeof LINK_STATS_FIELDS)[number];

/** A link's counters; a field the kernel did not send (an older kernel's shorter struct) is absent. */
export type LinkStats = { [K in LinkStatsField]?: bigint } & WithTail;

/** Makers of the first n counters as one object literal each (literalMaker: one shape for every link). */
const makers: ((at: (i: number, b: Buffer, o: number) => bigint, b: Buffer, o: number) => LinkStats)[] = [];
const counter64 = (i: number, b: Buffer, o: number): bigint => readU64(b, o + 8 * i);
const counter32 = (i: number, b: Buffer, o: number): bigint => {
  const x = b.readUInt32LE(o + 4 * i);
  return x === 0 ? 0n : BigInt(x);
};
/**
 * The codec of IFLA_STATS64 (8-byte counters) or IFLA_STATS (4-byte counters). A payload that is
 * not a whole number of counters keeps its last partial counter in the tail.
 */
function statsCodec(width: 4 | 8): Codec<LinkStats> {
  const present = (v: LinkStats): number => {
    let n = 0;
    while (n < LINK_STATS_FIELDS.length && v[LINK_STATS_FIELDS[n] as LinkStatsField] !== undefined) n++;
    return n;
  };
  return {
    size: (v) => present(v) * width + (v[TAIL]?.length ?? 0),
    write: (b, o, v) => {
      const n = present(v);
      for (let i = 0; i < n; i++) {
        const x = v[LINK_STATS_FIELDS[i] as LinkStatsField] as bigint;
        if (width === 8) b.writeBigUInt64LE(BigInt.asUintN(64, x), o + 8 * i);
        else b.writeUInt32LE(Number(BigInt.asUintN(32, x)), o + 4 * i);
      }
      v[TAIL]?.copy(b, o + n * width);
    },
    read: (b, o, l) => {
      if (l < 0 || o + l > b.length) throw new CodecError(`link statistics of ${l} bytes overrun the message`, o);
      const n = Math.min(LINK_STATS_FIELDS.length, Math.floor(l / width));
      const v: LinkStats = (makers[n] ??= literalMaker(LINK_STATS_FIELDS.slice(0, n)))(width === 8 ? counter64 : counter32, b, o);
      if (l > n * width) v[TAIL] = b.subarray(o + n * width, o + l);
      return v;
    },
  };
}

/** IFLA_STATS64: struct rtnl_link_stats64. */
export const linkStats64 = statsCodec(8);
/** IFLA_STATS: struct rtnl_link_stats, the same counters in 32 bits (they wrap). */
export const linkStats32 = statsCodec(4);

/** The counters of a link: IFLA_STATS64, else the 32-bit IFLA_STATS, without the bytes kept for re-encoding. */
export function linkStatsOf(stats64: LinkStats | undefined, stats32: LinkStats | undefined): LinkStats | undefined {
  const s = stats64 ?? stats32;
  if (!s) return undefined;
  const out: LinkStats = {};
  for (const k of LINK_STATS_FIELDS) if (s[k] !== undefined) out[k] = s[k];
  return out;
}
