/**
 * Netlink messages: the 16-byte nlmsghdr, a fixed family header (ifinfomsg, ifaddrmsg,
 * rtmsg) declared as a struct, then attributes. Pure: no I/O.
 */
import { CodecError } from '../../errors.js';
import { align4, attrsSize, readAttrs, writeAttrs, type Attrs, type Codec, type Schema } from './attr.js';

export const NLMSG_HDRLEN = 16;

/** Field types of a struct; `be16`/`be32` are in network byte order (nfgenmsg's res_id, ports). */
export type FieldType = 'u8' | 's8' | 'u16' | 's16' | 'be16' | 'u32' | 's32' | 'be32';
const FIELD_SIZE: Record<FieldType, number> = { u8: 1, s8: 1, u16: 2, s16: 2, be16: 2, u32: 4, s32: 4, be32: 4 };
const READ: Record<FieldType, (b: Buffer, o: number) => number> = {
  u8: (b, o) => b.readUInt8(o),
  s8: (b, o) => b.readInt8(o),
  u16: (b, o) => b.readUInt16LE(o),
  s16: (b, o) => b.readInt16LE(o),
  be16: (b, o) => b.readUInt16BE(o),
  u32: (b, o) => b.readUInt32LE(o),
  s32: (b, o) => b.readInt32LE(o),
  be32: (b, o) => b.readUInt32BE(o),
};
const WRITE: Record<FieldType, (b: Buffer, o: number, v: number) => void> = {
  u8: (b, o, v) => void b.writeUInt8(v & 0xff, o),
  s8: (b, o, v) => void b.writeInt8(v, o),
  u16: (b, o, v) => void b.writeUInt16LE(v & 0xffff, o),
  s16: (b, o, v) => void b.writeInt16LE(v, o),
  be16: (b, o, v) => void b.writeUInt16BE(v & 0xffff, o),
  u32: (b, o, v) => void b.writeUInt32LE(v >>> 0, o),
  s32: (b, o, v) => void b.writeInt32LE(v | 0, o),
  be32: (b, o, v) => void b.writeUInt32BE(v >>> 0, o),
};

/** A fixed-layout C struct of integer fields, declared as data. */
export interface Struct<F extends string> {
  readonly size: number;
  readonly fields: readonly (readonly [F, FieldType])[];
  write(buf: Buffer, off: number, v: Partial<Record<F, number>>): void;
  read(buf: Buffer, off: number): Record<F, number>;
}

/** Declares a packed struct of integer fields in wire order (callers include explicit padding). */
export function struct<F extends string>(fields: readonly (readonly [F, FieldType])[]): Struct<F> {
  const plan: { name: F; off: number; rd: (b: Buffer, o: number) => number; wr: (b: Buffer, o: number, v: number) => void }[] = [];
  let size = 0;
  for (const [name, t] of fields) {
    plan.push({ name, off: size, rd: READ[t], wr: WRITE[t] });
    size += FIELD_SIZE[t];
  }
  const field = (i: number, buf: Buffer, off: number): number => plan[i]!.rd(buf, off + plan[i]!.off);
  let make: ((at: typeof field, buf: Buffer, off: number) => Record<F, number>) | undefined;
  return {
    size,
    fields,
    write(buf, off, v) {
      for (const f of plan) f.wr(buf, off + f.off, v[f.name] ?? 0);
    },
    read(buf, off) {
      if (off + size > buf.length) throw new CodecError(`header needs ${size} bytes`, off);
      return (make ??= literalMaker(plan.map((f) => f.name)))(field, buf, off);
    },
  };
}

/**
 * A maker of objects with exactly `names` as properties, in that order, the i-th value given by
 * `at(i, buf, off)`: one object literal generated once, so that every object it makes has the
 * same shape. Set one by one by computed name instead, more than a dozen properties make V8 turn
 * the object into a slow dictionary (xfrm's 50-field headers, a link's 25 counters were). The
 * bytes go as arguments, so that `at` is made once rather than a closure per object.
 */
export function literalMaker<K extends string, V>(names: readonly K[]): (at: (i: number, buf: Buffer, off: number) => V, buf: Buffer, off: number) => Record<K, V> {
  return new Function('at', 'buf', 'off', `return { ${names.map((k, i) => `${JSON.stringify(k)}: at(${i}, buf, off)`).join(', ')} };`) as (at: (i: number, buf: Buffer, off: number) => V, buf: Buffer, off: number) => Record<K, V>;
}

/** A message family: its fixed header and its attribute schema. */
export interface MessageDef<F extends string, S extends Schema> {
  readonly header: Struct<F>;
  readonly attrs: S;
}

/** One request, ready to be encoded. */
export interface Request {
  type: number;
  flags: number;
  seq?: number;
  pid?: number;
  /** Bytes after the nlmsghdr: computed size and writer. */
  size: number;
  write(buf: Buffer, off: number): void;
  /**
   * Link names the request refers to where its message needs an ifindex (a route's `dev`, an
   * address's link). Such a request is built again by `resolve` once the names are looked up.
   */
  pending?: readonly string[];
  resolve?(index: (name: string) => number): Request;
}

/** Builds a request for a message family from a header and attributes. */
export function request<F extends string, S extends Schema>(
  def: MessageDef<F, S>,
  type: number,
  flags: number,
  header: Partial<Record<F, number>>,
  attrs: Attrs<S> = {},
): Request {
  const size = def.header.size + attrsSize(def.attrs, attrs);
  return {
    type,
    flags,
    size,
    write(buf, off) {
      def.header.write(buf, off, header);
      writeAttrs(def.attrs, attrs, buf, off + def.header.size);
    },
  };
}

/**
 * Encodes several requests into one buffer (one allocation, one sendto): sequence numbers
 * are `firstSeq`, `firstSeq + 1`, ... unless a request carries its own.
 */
export function encodeBatch(reqs: readonly Request[], firstSeq = 0, pid = 0): Buffer {
  let total = 0;
  for (const r of reqs) total += align4(NLMSG_HDRLEN + r.size);
  const buf = Buffer.alloc(total);
  let off = 0;
  reqs.forEach((r, i) => {
    const len = NLMSG_HDRLEN + r.size;
    buf.writeUInt32LE(len, off);
    buf.writeUInt16LE(r.type, off + 4);
    buf.writeUInt16LE(r.flags, off + 6);
    buf.writeUInt32LE((r.seq ?? firstSeq + i) >>> 0, off + 8);
    buf.writeUInt32LE((r.pid ?? pid) >>> 0, off + 12);
    r.write(buf, off + NLMSG_HDRLEN);
    off += align4(len);
  });
  return buf;
}

/** Encodes one request. */
export function encode(req: Request, seq = 0, pid = 0): Buffer {
  return encodeBatch([req], seq, pid);
}

/** A received message: the nlmsghdr fields and a view of its payload. */
export interface RawMessage {
  len: number;
  type: number;
  flags: number;
  seq: number;
  pid: number;
  payload: Buffer;
}

/** Splits a datagram into messages; a length that overruns the datagram is a CodecError. */
export function splitMessages(buf: Buffer): RawMessage[] {
  const out: RawMessage[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = buf.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > buf.length) {
      throw new CodecError(`netlink message length ${len} with ${buf.length - off} bytes left`, off);
    }
    out.push({
      len,
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      pid: buf.readUInt32LE(off + 12),
      payload: buf.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  if (off < buf.length && buf.length - off >= 4) throw new CodecError('trailing bytes after the last message', off);
  return out;
}

/** Decodes a message payload of a family into its header and attributes. */
export function decodePayload<F extends string, S extends Schema>(
  def: MessageDef<F, S>,
  payload: Buffer,
): { header: Record<F, number>; attrs: Attrs<S> } {
  if (payload.length < def.header.size) {
    throw new CodecError(`payload of ${payload.length} bytes is shorter than its ${def.header.size}-byte header`);
  }
  const header = def.header.read(payload, 0);
  return { header, attrs: readAttrs(def.attrs, payload, def.header.size, payload.length) };
}

/** Where a struct attribute keeps bytes a newer kernel appended beyond the fields we know. */
export const TAIL: unique symbol = Symbol('tsnetlink.tail');
/** A decoded struct that may carry such extra bytes. */
export interface WithTail {
  [TAIL]?: Buffer;
}

/**
 * An attribute whose payload is a struct (ifa_cacheinfo, rta_cacheinfo, nda_cacheinfo). A
 * payload longer than the struct keeps its extra bytes, so it re-encodes unchanged.
 */
export function structCodec<F extends string>(s: Struct<F>): Codec<Record<F, number> & WithTail> {
  return {
    size: (v) => s.size + (v[TAIL]?.length ?? 0),
    write: (b, o, v) => {
      s.write(b, o, v);
      v[TAIL]?.copy(b, o + s.size);
    },
    read: (b, o, l) => {
      if (l < s.size) throw new CodecError(`struct of ${s.size} bytes in a ${l}-byte attribute`, o);
      const v: Record<F, number> & WithTail = s.read(b, o);
      if (l > s.size) v[TAIL] = b.subarray(o + s.size, o + l);
      return v;
    },
  };
}

/** Encodes a decoded message (header and attributes) back to its bytes: the inverse of decodePayload. */
export function reencode<F extends string, S extends Schema>(def: MessageDef<F, S>, m: Pick<RawMessage, 'type' | 'flags' | 'seq' | 'pid'>, decoded: { header: Partial<Record<F, number>>; attrs: Attrs<S> }): Buffer {
  return encode({ ...request(def, m.type, m.flags, decoded.header, decoded.attrs), seq: m.seq, pid: m.pid });
}

/**
 * A struct followed by attributes in one TCA_OPTIONS payload (netem's tc_netem_qopt, then
 * TCA_NETEM_*): the attributes start at the struct's size rounded up to 4. The struct is kept
 * under `head`, the attributes as a nested set beside it.
 */
export function structThen<H, S extends Schema>(head: Codec<H>, headSize: number, schema: S): Codec<Attrs<S> & { head: H }> & { readonly schema: S; readonly prefix: number } {
  const at = align4(headSize);
  return {
    schema,
    prefix: headSize,
    size: (v) => {
      const n = attrsSize(schema, v);
      return n ? at + n : head.size(v.head);
    },
    write: (b, o, v) => {
      head.write(b, o, v.head);
      writeAttrs(schema, v, b, o + at);
    },
    read: (b, o, l) => {
      if (l < headSize) throw new CodecError(`options struct of ${headSize} bytes in ${l}`, o);
      const a = l > at ? readAttrs(schema, b, o + at, o + l) : ({} as Attrs<S>);
      return Object.assign(a, { head: head.read(b, o, headSize) });
    },
  };
}
