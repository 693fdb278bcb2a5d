/**
 * Declarative netlink attribute (TLV) codec.
 *
 * A schema maps property names to kernel attribute numbers and value codecs. One generic
 * encoder computes the exact size first, so a message is allocated once and written once.
 * The decoder keeps a reference to the bytes it read (in symbol-keyed slots that deep equality
 * and JSON ignore), keeps repeated attributes as arrays and unknown ones in
 * `unknown`, so a decoded object re-encodes to the same bytes: same order, same flag bits,
 * and any value left unchanged is copied from the original bytes, whatever its codec's
 * canonical form would be (a kernel string with a NUL where ours has none, a u64 the kernel
 * sent where a u32 would do).
 */
import { CodecError } from '../../errors.js';
import { be16, be32, s32, u8, u16, u32 } from './codecs.js';

export const NLA_HDRLEN = 4;
export const NLA_F_NESTED = 0x8000;
export const NLA_F_NET_BYTEORDER = 0x4000;
export const NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff;

/**
 * Rounds up to the 4-byte netlink alignment. Exact for any non-negative integer: a length read
 * from the wire can be 2^31 or more, where a 32-bit `& ~3` would turn it negative.
 */
export function align4(n: number): number {
  return n < 0x7ffffffd ? (n + 3) & ~3 : n + 3 - ((n + 3) % 4);
}

/** Encodes and decodes one attribute payload (without the 4-byte TLV header). */
export interface Codec<T> {
  /** Payload length in bytes, before padding. */
  size(value: T): number;
  write(buf: Buffer, off: number, value: T): void;
  /** Reads a payload of exactly `len` bytes at `off`; throws CodecError when it cannot. */
  read(buf: Buffer, off: number, len: number): T;
}

/** One attribute of a schema: its kernel number and codec (for a repeated one, the codec of one element). */
export interface AttrDef<T> {
  readonly type: number;
  readonly codec: Codec<any>;
  /** Set NLA_F_NESTED on the wire type (some kernel policies demand it). */
  readonly nestedFlag?: boolean;
  /** Set NLA_F_NET_BYTEORDER on the wire type (ipset refuses its big-endian integers without it). */
  readonly byteorderFlag?: boolean;
  /** The attribute may occur several times; its value is the array of occurrences in wire order. */
  readonly repeated?: boolean;
  /** Phantom: the value type. */
  readonly __value?: T;
}

export type Schema = Readonly<Record<string, AttrDef<any>>>;

/** An attribute the schema does not name, kept verbatim so nothing is lost. */
export interface RawAttr {
  /** The type as on the wire, flag bits (NLA_F_NESTED, NLA_F_NET_BYTEORDER) included. */
  type: number;
  data: Buffer;
}

/** Where a decoded attribute set keeps the buffer it came from. */
export const WIRE: unique symbol = Symbol('tsnetlink.wire');
/** And the span within it: offset * 2^24 + length (two numbers in one slot, no object per set). */
export const WIRE_SPAN: unique symbol = Symbol('tsnetlink.wireSpan');

/**
 * Where a decoded attribute set came from: its bytes src[off, end). The order, flag bits and
 * repeats are read from there again when the set is re-encoded, so decoding records nothing
 * per attribute.
 */
export interface WireRecord {
  readonly src: Buffer;
  readonly off: number;
  readonly end: number;
}

/** A decoded value that carries its wire order. */
export interface Wired {
  [WIRE]?: Buffer;
  [WIRE_SPAN]?: number;
}

const SPAN = 2 ** 24;
/** The bytes a decoded attribute set (or nested array) was read from, if it was decoded. */
export function wireOf(v: Wired): WireRecord | undefined {
  const src = v[WIRE];
  const span = v[WIRE_SPAN];
  if (!src || span === undefined) return undefined;
  const off = Math.floor(span / SPAN);
  return { src, off, end: off + (span % SPAN) };
}

/** The decoded (or to-be-encoded) values of a schema: every attribute optional. */
export type Attrs<S extends Schema> = {
  -readonly [K in keyof S]?: S[K] extends AttrDef<infer T> ? T : never;
} & { unknown?: RawAttr[] } & Wired;

/** Flag bits an attribute carries on the wire beside its type. */
export interface AttrFlags {
  nestedFlag?: boolean;
  byteorderFlag?: boolean;
}

/** Declares an attribute. */
export function attr<T>(type: number, codec: Codec<T>, opts: AttrFlags = {}): AttrDef<T> {
  return { type, codec, nestedFlag: opts.nestedFlag ?? false, byteorderFlag: opts.byteorderFlag ?? false };
}

/** Declares an attribute that the protocol repeats (nexthops, list elements, alternative names): its value is an array. */
export function repeated<T>(type: number, codec: Codec<T>, opts: AttrFlags = {}): AttrDef<T[]> {
  return { type, codec, nestedFlag: opts.nestedFlag ?? false, byteorderFlag: opts.byteorderFlag ?? false, repeated: true };
}

export * from './codecs.js';

/** A nested attribute set (its schema is exposed for tools that describe messages). */
export function nested<S extends Schema>(schema: S): Codec<Attrs<S>> & { readonly schema: S } {
  return {
    schema,
    size: (v) => attrsSize(schema, v),
    write: (b, o, v) => void writeAttrs(schema, v, b, o),
    read: (b, o, l) => readAttrs(schema, b, o, o + l),
  };
}

/**
 * A nest whose children are all of one codec and numbered by position (1, 2, ...), as in
 * CTRL_ATTR_OPS or IFLA_BRPORT lists: decoded to an array, the children's wire types kept.
 */
export function nestedArray<T>(codec: Codec<T>): Codec<T[] & Wired> {
  return {
    size: (v) => {
      let n = 0;
      for (const x of v) n += NLA_HDRLEN + align4(codec.size(x));
      return n;
    },
    write: (b, o, v) => {
      const w = wireOf(v);
      const types = w ? [...rawAttrs(w.src, w.off, w.end)].map((a) => a.type) : [];
      v.forEach((x, i) => {
        const len = codec.size(x);
        b.writeUInt16LE(NLA_HDRLEN + len, o);
        b.writeUInt16LE(types[i] ?? i + 1, o + 2);
        codec.write(b, o + NLA_HDRLEN, x);
        o += NLA_HDRLEN + align4(len);
      });
    },
    read: (b, o, l) => {
      const out: T[] & Wired = [];
      for (const a of rawAttrs(b, o, o + l)) out.push(codec.read(b, a.offset + NLA_HDRLEN, a.data.length));
      out[WIRE] = b;
      out[WIRE_SPAN] = o * SPAN + l;
      return out;
    },
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

interface Compiled {
  readonly keys: readonly string[];
  readonly defs: readonly AttrDef<unknown>[];
  /** Slot by attribute type (without flag bits). */
  readonly byType: readonly (number | undefined)[];
  /** Slot by property name. */
  readonly byKey: ReadonlyMap<string, number>;
}

const compiledCache = new WeakMap<Schema, Compiled>();
/** A schema's entries in declaration (wire) order and its type index, computed once per schema. */
function compile(schema: Schema): Compiled {
  let c = compiledCache.get(schema);
  if (!c) {
    const keys = Object.keys(schema);
    const defs = keys.map((k) => schema[k] as AttrDef<unknown>);
    const byType: (number | undefined)[] = [];
    defs.forEach((d, i) => {
      byType[d.type] = i;
    });
    c = { keys, defs, byType, byKey: new Map(keys.map((k, i) => [k, i])) };
    compiledCache.set(schema, c);
  }
  return c;
}

/** Visits each attribute to put on the wire: its wire type, codec, value and, for an unchanged one, its original bytes. */
type Visit = (rawType: number, codec: Codec<unknown> | undefined, value: unknown, src: Buffer | undefined, off: number, len: number) => void;

function emitNew(c: Compiled, slot: number, v: unknown, visit: Visit): void {
  const d = c.defs[slot] as AttrDef<unknown>;
  const t = d.type | (d.nestedFlag ? NLA_F_NESTED : 0) | (d.byteorderFlag ? NLA_F_NET_BYTEORDER : 0);
  if (d.repeated) for (const x of v as unknown[]) visit(t, d.codec, x, undefined, 0, 0);
  else visit(t, d.codec, v, undefined, 0, 0);
}

/** An unchanged primitive is copied from the original bytes; anything else goes through its codec. */
function emitKnown(rawType: number, codec: Codec<unknown>, v: unknown, w: WireRecord, off: number, len: number, visit: Visit): void {
  if (typeof v !== 'object' && codec.read(w.src, off + NLA_HDRLEN, len - NLA_HDRLEN) === v) visit(rawType, undefined, undefined, w.src, off, len);
  else visit(rawType, codec, v, undefined, 0, 0);
}

function walk(schema: Schema, values: Attrs<Schema>, visit: Visit): void {
  const c = compile(schema);
  const vals = values as Record<string, unknown>;
  const w = wireOf(values);
  if (!w) {
    // A request names a handful of a schema's attributes (link schemas have dozens): visit the
    // values present, in schema order, rather than every attribute the schema declares.
    const present: number[] = [];
    for (const k in vals) {
      const i = c.byKey.get(k);
      if (i !== undefined && vals[k] !== undefined) present.push(i);
    }
    if (present.length > 1) present.sort((a, b) => a - b);
    for (const i of present) emitNew(c, i, vals[c.keys[i] as string], visit);
    if (values.unknown) for (const u of values.unknown) visit(u.type, undefined, u.data, undefined, 0, 0);
    return;
  }
  // Replay the order of the original bytes (decoded the same way readAttrs did); what was
  // added since goes after, in schema order.
  const seen = new Uint32Array(c.keys.length);
  const total = new Uint32Array(c.keys.length);
  for (let o = w.off; o + NLA_HDRLEN <= w.end; o += align4(w.src.readUInt16LE(o))) {
    const slot = c.byType[w.src.readUInt16LE(o + 2) & NLA_TYPE_MASK];
    if (slot !== undefined) total[slot]!++;
  }
  let u = 0;
  for (let off = w.off; off + NLA_HDRLEN <= w.end; ) {
    const len = w.src.readUInt16LE(off);
    const rawType = w.src.readUInt16LE(off + 2);
    const slot = c.byType[rawType & NLA_TYPE_MASK];
    const at = off;
    off += align4(len);
    const d = slot === undefined ? undefined : (c.defs[slot] as AttrDef<unknown>);
    // A second occurrence of an attribute the schema does not repeat was kept in `unknown`.
    const n = slot === undefined ? 0 : seen[slot]!++;
    if (d === undefined || (!d.repeated && n > 0)) {
      const raw = values.unknown?.[u++];
      if (raw) visit(raw.type, undefined, raw.data, undefined, 0, 0);
      continue;
    }
    const v = vals[c.keys[slot as number] as string];
    if (v === undefined) continue;
    if (!d.repeated) {
      emitKnown(rawType, d.codec, v, w, at, len, visit);
      continue;
    }
    const arr = v as unknown[];
    if (n < arr.length) emitKnown(rawType, d.codec, arr[n], w, at, len, visit);
    if (n + 1 === total[slot as number]) for (let i = n + 1; i < arr.length; i++) visit(rawType, d.codec, arr[i], undefined, 0, 0);
  }
  for (let i = 0; i < c.keys.length; i++) {
    if (total[i]) continue;
    const v = vals[c.keys[i] as string];
    if (v !== undefined) emitNew(c, i, v, visit);
  }
  const rest = values.unknown;
  if (rest) for (; u < rest.length; u++) visit((rest[u] as RawAttr).type, undefined, (rest[u] as RawAttr).data, undefined, 0, 0);
}

/** Total bytes of the attributes in `values`, each padded to 4 bytes. */
export function attrsSize<S extends Schema>(schema: S, values: Attrs<S>): number {
  let n = 0;
  walk(schema, values as Attrs<Schema>, (_t, codec, v, src, _o, len) => {
    n += align4(src ? len : NLA_HDRLEN + (codec ? codec.size(v) : (v as Buffer).length));
  });
  return n;
}

/**
 * Writes the attributes into a zero-filled buffer; returns the end offset. Without a wire
 * record the order is the schema's; padding bytes are left as the zeros the buffer was
 * allocated with.
 */
export function writeAttrs<S extends Schema>(schema: S, values: Attrs<S>, buf: Buffer, off: number): number {
  walk(schema, values as Attrs<Schema>, (rawType, codec, v, src, o, len) => {
    if (src) {
      src.copy(buf, off, o, o + len);
      off += align4(len);
      return;
    }
    const plen = codec ? codec.size(v) : (v as Buffer).length;
    buf.writeUInt16LE(NLA_HDRLEN + plen, off);
    buf.writeUInt16LE(rawType, off + 2);
    if (codec) codec.write(buf, off + NLA_HDRLEN, v);
    else (v as Buffer).copy(buf, off + NLA_HDRLEN);
    off += NLA_HDRLEN + align4(plen);
  });
  return off;
}

type Reader = (buf: Buffer, off: number, end: number) => Record<string, unknown> & { unknown?: RawAttr[] } & Wired;
const readerCache = new WeakMap<Schema, Reader>();
const sparseCache = new WeakMap<Schema, Reader>();

/** Integer codecs the generated readers inline, as [check length, read expression]. */
const INLINE = new Map<Codec<any>, [number, string]>([
  [u8, [1, 'buf.readUInt8(p)']],
  [u16, [2, 'buf.readUInt16LE(p)']],
  [u32, [4, 'buf.readUInt32LE(p)']],
  [s32, [4, 'buf.readInt32LE(p)']],
  [be16, [2, 'buf.readUInt16BE(p)']],
  [be32, [4, 'buf.readUInt32BE(p)']],
]);

/**
 * Builds the decoder of one schema once: a switch on the attribute type with a store by
 * constant property name per attribute, the common integer codecs inlined. Generated from the
 * schema itself, so it stays declarative; it makes a dump of thousands of links several times
 * cheaper than a generic loop storing properties by computed keys.
 */
function readerOf(schema: Schema, sparse = false): Reader {
  const cache = sparse ? sparseCache : readerCache;
  let r = cache.get(schema);
  if (r) return r;
  const c = compile(schema);
  const cases = c.defs.map((d, i) => {
    // Two names for one type: the last one decodes, as in compile().
    if (c.byType[d.type] !== i) return '';
    const k = JSON.stringify(c.keys[i]);
    const inl = INLINE.get(d.codec);
    const read = inl ? `(len - 4 === ${inl[0]} ? ${inl[1]} : bad(${JSON.stringify(c.keys[i])}, ${inl[0]}, len - 4, p))` : `codecs[${i}].read(buf, p, len - 4)`;
    if (d.repeated) return `case ${d.type}: { const v = ${read}; const a = out[${k}]; if (a === undefined) out[${k}] = [v]; else a.push(v); continue; }`;
    return `case ${d.type}: if (out[${k}] === undefined) { out[${k}] = ${read}; continue; } break;`;
  });
  // The wire record's two symbol properties are set first, on the empty object: V8 turns an
  // object with more than a dozen out-of-object properties into a slow dictionary when one more
  // is added with a computed key (as a symbol is), which a link's forty attributes are. Set
  // last, they made every decoded link a dictionary, the largest cost of its decode.
  const body = `
    const out = {};
    ${sparse ? '' : 'out[WIRE] = buf;\n    out[WIRE_SPAN] = 0;'}
    const start = off;
    while (off + 4 <= end) {
      const len = buf.readUInt16LE(off);
      const rawType = buf.readUInt16LE(off + 2);
      if (len < 4 || off + len > end) overrun(rawType, len, end - off, off);
      const p = off + 4;
      const at = off;
      off += (len + 3) & ~3;
      switch (rawType & ${NLA_TYPE_MASK}) {
        ${cases.join('\n        ')}
      }
      ${sparse ? '' : '(out.unknown ??= []).push({ type: rawType, data: buf.subarray(p, at + len) });'}
    }
    if (off < end && end - off >= 4) trailing(off);
    ${sparse ? 'void start;' : `out[WIRE_SPAN] = start * ${SPAN} + (end - start);`}
    return out;`;
  const make = new Function('codecs', 'WIRE', 'WIRE_SPAN', 'bad', 'overrun', 'trailing', `return function readAttrs(buf, off, end) {${body}\n}`) as (...a: unknown[]) => Reader;
  r = make(
    c.defs.map((d) => d.codec),
    WIRE,
    WIRE_SPAN,
    (key: string, want: number, got: number, o: number) => {
      throw new CodecError(`${key}: expected ${want} bytes, got ${got}`, o);
    },
    (t: number, len: number, left: number, o: number) => {
      throw new CodecError(`attribute type ${t & NLA_TYPE_MASK} has length ${len}, ${left} bytes left`, o);
    },
    (o: number) => {
      throw new CodecError('trailing bytes after attributes', o);
    },
  );
  cache.set(schema, r);
  return r;
}

/**
 * Decodes only the attributes `schema` names and skips the rest without keeping them: for
 * views that need a few fields of a large message (a Link out of a link dump). The result
 * carries no `unknown` and no wire record, so it is not for re-encoding.
 */
export function readAttrsSparse<S extends Schema>(schema: S, buf: Buffer, off: number, end: number): Attrs<S> {
  return readerOf(schema, true)(buf, off, end) as Attrs<S>;
}

/** A nested set read sparsely (see readAttrsSparse); written like nested(). */
export function nestedSparse<S extends Schema>(schema: S): Codec<Attrs<S>> & { readonly schema: S } {
  return { ...nested(schema), read: (b, o, l) => readAttrsSparse(schema, b, o, o + l) };
}

/**
 * Decodes the attributes in buf[off, end). Unknown types go to `unknown` with their original
 * type bits, and so does a second occurrence of an attribute the schema does not repeat; a
 * length that overruns the container is a CodecError.
 */
export function readAttrs<S extends Schema>(schema: S, buf: Buffer, off: number, end: number): Attrs<S> {
  return readerOf(schema)(buf, off, end) as Attrs<S>;
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
