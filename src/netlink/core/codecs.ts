/**
 * Value codecs for attribute payloads: integers (host and network byte order), flags, strings
 * with and without a NUL, bytes, MAC and IP addresses, and numbers read as names.
 */
import { CodecError } from '../../errors.js';
import type { Codec } from './attr.js';
import { formatIPv6, ipBytes } from '../../ip/bytes.js';

function need(len: number, want: number, what: string, off: number): void {
  if (len !== want) throw new CodecError(`${what}: expected ${want} bytes, got ${len}`, off);
}

function intCodec(n: 1 | 2 | 4, name: string, rd: (b: Buffer, o: number) => number, wr: (b: Buffer, v: number, o: number) => unknown): Codec<number> {
  return { size: () => n, write: (b, o, v) => void wr(b, v, o), read: (b, o, l) => (need(l, n, name, o), rd(b, o)) };
}

export const u8 = intCodec(1, 'u8', (b, o) => b.readUInt8(o), (b, v, o) => b.writeUInt8(v, o));
export const s8 = intCodec(1, 's8', (b, o) => b.readInt8(o), (b, v, o) => b.writeInt8(v, o));
export const u16 = intCodec(2, 'u16', (b, o) => b.readUInt16LE(o), (b, v, o) => b.writeUInt16LE(v, o));
export const s16 = intCodec(2, 's16', (b, o) => b.readInt16LE(o), (b, v, o) => b.writeInt16LE(v, o));
/** u16 in network byte order (ports, VLAN protocol, nf_tables integers). */
export const be16 = intCodec(2, 'be16', (b, o) => b.readUInt16BE(o), (b, v, o) => b.writeUInt16BE(v, o));
export const u32 = intCodec(4, 'u32', (b, o) => b.readUInt32LE(o), (b, v, o) => b.writeUInt32LE(v >>> 0, o));
export const s32 = intCodec(4, 's32', (b, o) => b.readInt32LE(o), (b, v, o) => b.writeInt32LE(v, o));
/** u32 in network byte order. */
export const be32 = intCodec(4, 'be32', (b, o) => b.readUInt32BE(o), (b, v, o) => b.writeUInt32BE(v >>> 0, o));

const TWO_32 = 0x1_0000_0000;
/**
 * A little-endian u64 at b[o, o+8) as a bigint, the caller having checked the bounds. Counters
 * are mostly 0 or far below 2^53: those take one step (0n shared, a bigint being a value), where
 * Buffer.readBigUInt64LE builds every one from two halves in three.
 */
export function readU64(b: Buffer, o: number): bigint {
  const lo = b[o]! + b[o + 1]! * 0x100 + b[o + 2]! * 0x10000 + b[o + 3]! * 0x1000000;
  const hi = b[o + 4]! + b[o + 5]! * 0x100 + b[o + 6]! * 0x10000 + b[o + 7]! * 0x1000000;
  if (hi === 0) return lo === 0 ? 0n : BigInt(lo);
  return hi < 0x200000 ? BigInt(hi * TWO_32 + lo) : (BigInt(hi) << 32n) | BigInt(lo);
}

export const u64: Codec<bigint> = {
  size: () => 8,
  write: (b, o, v) => void b.writeBigUInt64LE(v, o),
  read: (b, o, l) => (need(l, 8, 'u64', o), o + 8 <= b.length ? readU64(b, o) : b.readBigUInt64LE(o)),
};
/** u64 in network byte order. */
export const be64: Codec<bigint> = {
  size: () => 8,
  write: (b, o, v) => void b.writeBigUInt64BE(v, o),
  read: (b, o, l) => (need(l, 8, 'be64', o), b.readBigUInt64BE(o)),
};

/**
 * An unsigned integer sent as u32 or u64 (NLA_UINT, and attributes whose width depends on the
 * sender, like RTA_EXPIRES: u32 from iproute2, u64 from the multicast routing code).
 * Written as u32 when it fits.
 */
export const uint: Codec<number> = {
  size: (v) => (v > 0xffffffff ? 8 : 4),
  write: (b, o, v) => void (v > 0xffffffff ? b.writeBigUInt64LE(BigInt(v), o) : b.writeUInt32LE(v, o)),
  read: (b, o, l) => {
    if (l === 4) return b.readUInt32LE(o);
    if (l === 8) return Number(b.readBigUInt64LE(o));
    throw new CodecError(`uint: expected 4 or 8 bytes, got ${l}`, o);
  },
};

/** Zero-length attribute whose presence means true. */
export const flag: Codec<true> = {
  size: () => 0,
  write: () => undefined,
  read: (_b, o, l) => (need(l, 0, 'flag', o), true),
};

function readString(b: Buffer, o: number, l: number): string {
  const nul = b.indexOf(0, o);
  const end = nul >= 0 && nul < o + l ? nul : o + l;
  return b.toString('utf8', o, end);
}

/** NUL-terminated string (IFLA_IFNAME, IFA_LABEL): the NUL is written and counted. */
export const strz: Codec<string> = {
  size: (v) => Buffer.byteLength(v) + 1,
  write: (b, o, v) => void b.write(v, o, 'utf8'),
  read: readString,
};

/** String without a NUL (iproute2 sends IFLA_INFO_KIND this way); a trailing NUL is tolerated on read. */
export const str: Codec<string> = {
  size: (v) => Buffer.byteLength(v),
  write: (b, o, v) => void b.write(v, o, 'utf8'),
  read: readString,
};

/** Opaque bytes: a view of the message, which the transport never reuses. */
export const bytes: Codec<Buffer> = {
  size: (v) => v.length,
  write: (b, o, v) => void v.copy(b, o),
  read: (b, o, l) => b.subarray(o, o + l),
};

/** Link-layer address as 'aa:bb:cc:dd:ee:ff' (any length). */
export const mac: Codec<string> = {
  size: (v) => (v.length + 1) / 3,
  write: (b, o, v) => {
    const parts = v.split(':');
    for (let i = 0; i < parts.length; i++) b[o + i] = parseInt(parts[i] as string, 16);
  },
  read: (b, o, l) => {
    let s = '';
    for (let i = 0; i < l; i++) s += (i ? ':' : '') + HEX[b[o + i] as number];
    return s;
  },
};
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** Writes the bytes of an IPv4 or IPv6 address given as text. */
export function writeIp(b: Buffer, o: number, v: string): void {
  const bytes = typeof v === 'string' ? ipBytes(v) : undefined;
  if (!bytes) throw new CodecError(`not an IP address: ${JSON.stringify(v)}`);
  for (let i = 0; i < bytes.length; i++) b[o + i] = bytes[i] as number;
}

/** Reads a 4- or 16-byte address as text. */
export function readIp(b: Buffer, o: number, l: number): string {
  if (l === 4) return `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
  if (l === 16) return formatIPv6(b, o);
  throw new CodecError(`IP address: expected 4 or 16 bytes, got ${l}`, o);
}

/** IPv4 or IPv6 address as text; the family follows from the length (4 or 16 bytes). */
export const ipAddr: Codec<string> = {
  size: (v) => (v.includes(':') ? 16 : 4),
  write: writeIp,
  read: readIp,
};

/** A codec whose value reads as a name from a table (unknown numbers stay numbers). */
export function named<N extends string>(base: Codec<number>, names: Readonly<Record<N, number>>): Codec<N | number> {
  const byNum = new Map<number, N>();
  for (const k of Object.keys(names) as N[]) if (!byNum.has(names[k])) byNum.set(names[k], k);
  const num = (v: N | number): number => {
    if (typeof v === 'number') return v;
    const n = names[v];
    if (n === undefined) throw new CodecError(`unknown name ${JSON.stringify(v)}`);
    return n;
  };
  return {
    size: (v) => base.size(num(v)),
    write: (b, o, v) => base.write(b, o, num(v)),
    read: (b, o, l) => {
      const n = base.read(b, o, l);
      return byNum.get(n) ?? n;
    },
  };
}

