/**
 * Declarative netlink attribute (TLV) codec.
 *
 * A schema maps property names to kernel attribute numbers and value codecs. One generic
 * encoder computes the exact size first, so a message is allocated once and written once;
 * one generic decoder keeps every attribute it does not know in `unknown`, so a decoded
 * object re-encodes to the same bytes.
 */
import ipaddr from 'ipaddr.js';
import { CodecError } from '../errors.js';

export const NLA_HDRLEN = 4;
export const NLA_F_NESTED = 0x8000;
export const NLA_F_NET_BYTEORDER = 0x4000;
export const NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff;

/** Rounds up to the 4-byte netlink alignment. */
export function align4(n: number): number {
  return (n + 3) & ~3;
}

/** Encodes and decodes one attribute payload (without the 4-byte TLV header). */
export interface Codec<T> {
  /** Payload length in bytes, before padding. */
  size(value: T): number;
  write(buf: Buffer, off: number, value: T): void;
  /** Reads a payload of exactly `len` bytes at `off`; throws CodecError when it cannot. */
  read(buf: Buffer, off: number, len: number): T;
}

/** One attribute of a schema: its kernel number and codec. */
export interface AttrDef<T> {
  readonly type: number;
  readonly codec: Codec<T>;
  /** Set NLA_F_NESTED on the wire type (some kernel policies demand it). */
  readonly nestedFlag?: boolean;
}

export type Schema = Readonly<Record<string, AttrDef<any>>>;

/** An attribute the schema does not name, kept verbatim so nothing is lost. */
export interface RawAttr {
  type: number;
  data: Buffer;
}

/** The decoded (or to-be-encoded) values of a schema: every attribute optional. */
export type Attrs<S extends Schema> = {
  -readonly [K in keyof S]?: S[K] extends AttrDef<infer T> ? T : never;
} & { unknown?: RawAttr[] };

/** Declares an attribute. */
export function attr<T>(type: number, codec: Codec<T>, opts: { nestedFlag?: boolean } = {}): AttrDef<T> {
  return { type, codec, nestedFlag: opts.nestedFlag ?? false };
}

function need(len: number, want: number, what: string, off: number): void {
  if (len !== want) throw new CodecError(`${what}: expected ${want} bytes, got ${len}`, off);
}

export const u8: Codec<number> = {
  size: () => 1,
  write: (b, o, v) => void b.writeUInt8(v, o),
  read: (b, o, l) => (need(l, 1, 'u8', o), b.readUInt8(o)),
};
export const u16: Codec<number> = {
  size: () => 2,
  write: (b, o, v) => void b.writeUInt16LE(v, o),
  read: (b, o, l) => (need(l, 2, 'u16', o), b.readUInt16LE(o)),
};
export const be16: Codec<number> = {
  size: () => 2,
  write: (b, o, v) => void b.writeUInt16BE(v, o),
  read: (b, o, l) => (need(l, 2, 'be16', o), b.readUInt16BE(o)),
};
export const u32: Codec<number> = {
  size: () => 4,
  write: (b, o, v) => void b.writeUInt32LE(v, o),
  read: (b, o, l) => (need(l, 4, 'u32', o), b.readUInt32LE(o)),
};
export const s32: Codec<number> = {
  size: () => 4,
  write: (b, o, v) => void b.writeInt32LE(v, o),
  read: (b, o, l) => (need(l, 4, 's32', o), b.readInt32LE(o)),
};
export const u64: Codec<bigint> = {
  size: () => 8,
  write: (b, o, v) => void b.writeBigUInt64LE(v, o),
  read: (b, o, l) => (need(l, 8, 'u64', o), b.readBigUInt64LE(o)),
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

/** Opaque bytes. */
export const bytes: Codec<Buffer> = {
  size: (v) => v.length,
  write: (b, o, v) => void v.copy(b, o),
  read: (b, o, l) => Buffer.from(b.subarray(o, o + l)),
};

/** Link-layer address as 'aa:bb:cc:dd:ee:ff' (any length). */
export const mac: Codec<string> = {
  size: (v) => (v.length + 1) / 3,
  write: (b, o, v) => {
    const parts = v.split(':');
    for (let i = 0; i < parts.length; i++) b[o + i] = parseInt(parts[i] as string, 16);
  },
  read: (b, o, l) => {
    const out: string[] = [];
    for (let i = 0; i < l; i++) out.push((b[o + i] as number).toString(16).padStart(2, '0'));
    return out.join(':');
  },
};

/** IPv4 or IPv6 address as text; the family follows from the length (4 or 16 bytes). */
export const ipAddr: Codec<string> = {
  size: (v) => (v.includes(':') ? 16 : 4),
  write: (b, o, v) => {
    let parsed: ipaddr.IPv4 | ipaddr.IPv6;
    try {
      parsed = ipaddr.parse(v);
    } catch {
      throw new CodecError(`not an IP address: ${JSON.stringify(v)}`);
    }
    const bytes = parsed.toByteArray();
    for (let i = 0; i < bytes.length; i++) b[o + i] = bytes[i] as number;
  },
  read: (b, o, l) => {
    if (l === 4) return `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
    if (l === 16) return (ipaddr.fromByteArray([...b.subarray(o, o + 16)]) as ipaddr.IPv6).toRFC5952String();
    throw new CodecError(`IP address: expected 4 or 16 bytes, got ${l}`, o);
  },
};

/** A nested attribute set. */
export function nested<S extends Schema>(schema: S): Codec<Attrs<S>> {
  return {
    size: (v) => attrsSize(schema, v),
    write: (b, o, v) => void writeAttrs(schema, v, b, o),
    read: (b, o, l) => readAttrs(schema, b, o, o + l),
  };
}

/** Defers building a codec, for schemas that refer to themselves (a veth peer nests the link schema). */
export function lazy<T>(make: () => Codec<T>): Codec<T> {
  let c: Codec<T> | undefined;
  const get = (): Codec<T> => (c ??= make());
  return {
    size: (v) => get().size(v),
    write: (b, o, v) => get().write(b, o, v),
    read: (b, o, l) => get().read(b, o, l),
  };
}

const entriesCache = new WeakMap<Schema, readonly (readonly [string, AttrDef<unknown>])[]>();
/** A schema's [key, def] pairs in declaration (wire) order, computed once per schema. */
function entriesOf(schema: Schema): readonly (readonly [string, AttrDef<unknown>])[] {
  let e = entriesCache.get(schema);
  if (!e) {
    e = Object.entries(schema) as [string, AttrDef<unknown>][];
    entriesCache.set(schema, e);
  }
  return e;
}

/** Total bytes of the attributes in `values`, each padded to 4 bytes. */
export function attrsSize<S extends Schema>(schema: S, values: Attrs<S>): number {
  let n = 0;
  for (const [key, def] of entriesOf(schema)) {
    const v = (values as Record<string, unknown>)[key];
    if (v === undefined) continue;
    n += NLA_HDRLEN + align4(def.codec.size(v));
  }
  if (values.unknown) for (const u of values.unknown) n += NLA_HDRLEN + align4(u.data.length);
  return n;
}

/**
 * Writes the attributes in schema order into a zero-filled buffer; returns the end offset.
 * Padding bytes are left as the zeros the buffer was allocated with.
 */
export function writeAttrs<S extends Schema>(schema: S, values: Attrs<S>, buf: Buffer, off: number): number {
  for (const [key, def] of entriesOf(schema)) {
    const v = (values as Record<string, unknown>)[key];
    if (v === undefined) continue;
    const len = def.codec.size(v);
    buf.writeUInt16LE(NLA_HDRLEN + len, off);
    buf.writeUInt16LE(def.type | (def.nestedFlag ? NLA_F_NESTED : 0), off + 2);
    def.codec.write(buf, off + NLA_HDRLEN, v);
    off += NLA_HDRLEN + align4(len);
  }
  if (values.unknown) {
    for (const u of values.unknown) {
      buf.writeUInt16LE(NLA_HDRLEN + u.data.length, off);
      buf.writeUInt16LE(u.type, off + 2);
      u.data.copy(buf, off + NLA_HDRLEN);
      off += NLA_HDRLEN + align4(u.data.length);
    }
  }
  return off;
}

const indexCache = new WeakMap<Schema, Map<number, string>>();
function indexOf(schema: Schema): Map<number, string> {
  let m = indexCache.get(schema);
  if (!m) {
    m = new Map();
    for (const key in schema) m.set((schema[key] as AttrDef<unknown>).type, key);
    indexCache.set(schema, m);
  }
  return m;
}

/**
 * Decodes the attributes in buf[off, end). Unknown types go to `unknown` with their
 * original type bits; a length that overruns the container is a CodecError.
 */
export function readAttrs<S extends Schema>(schema: S, buf: Buffer, off: number, end: number): Attrs<S> {
  const out: Record<string, unknown> = {};
  const index = indexOf(schema);
  while (off + NLA_HDRLEN <= end) {
    const len = buf.readUInt16LE(off);
    const rawType = buf.readUInt16LE(off + 2);
    if (len < NLA_HDRLEN || off + len > end) {
      throw new CodecError(`attribute type ${rawType & NLA_TYPE_MASK} has length ${len}, ${end - off} bytes left`, off);
    }
    const key = index.get(rawType & NLA_TYPE_MASK);
    if (key !== undefined) {
      out[key] = (schema[key] as AttrDef<unknown>).codec.read(buf, off + NLA_HDRLEN, len - NLA_HDRLEN);
    } else {
      ((out.unknown ??= []) as RawAttr[]).push({ type: rawType, data: Buffer.from(buf.subarray(off + NLA_HDRLEN, off + len)) });
    }
    off += align4(len);
  }
  if (off < end && end - off >= NLA_HDRLEN) throw new CodecError('trailing bytes after attributes', off);
  return out as Attrs<S>;
}

/** Iterates raw attributes without a schema (for error TLVs and ad-hoc inspection). */
export function* rawAttrs(buf: Buffer, off: number, end: number): Generator<RawAttr & { offset: number }> {
  while (off + NLA_HDRLEN <= end) {
    const len = buf.readUInt16LE(off);
    const type = buf.readUInt16LE(off + 2);
    if (len < NLA_HDRLEN || off + len > end) throw new CodecError(`attribute type ${type} has length ${len}`, off);
    yield { type, data: buf.subarray(off + NLA_HDRLEN, off + len), offset: off };
    off += align4(len);
  }
}
