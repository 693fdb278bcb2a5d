/**
 * Netlink messages: the 16-byte nlmsghdr, a fixed family header (ifinfomsg, ifaddrmsg,
 * rtmsg) declared as a struct, then attributes. Pure: no I/O.
 */
import { CodecError } from '../errors.js';
import { align4, attrsSize, readAttrs, writeAttrs, type Attrs, type Schema } from './attr.js';

export const NLMSG_HDRLEN = 16;

type FieldType = 'u8' | 'u16' | 'u32' | 's32';
const FIELD_SIZE: Record<FieldType, number> = { u8: 1, u16: 2, u32: 4, s32: 4 };

/** A fixed-layout C struct of integer fields, declared as data. */
export interface Struct<F extends string> {
  readonly size: number;
  readonly fields: readonly (readonly [F, FieldType])[];
  write(buf: Buffer, off: number, v: Partial<Record<F, number>>): void;
  read(buf: Buffer, off: number): Record<F, number>;
}

/** Declares a packed struct of integer fields in wire order (callers include explicit padding). */
export function struct<F extends string>(fields: readonly (readonly [F, FieldType])[]): Struct<F> {
  const offsets: number[] = [];
  let size = 0;
  for (const [, t] of fields) {
    offsets.push(size);
    size += FIELD_SIZE[t];
  }
  return {
    size,
    fields,
    write(buf, off, v) {
      fields.forEach(([name, t], i) => {
        const x = v[name] ?? 0;
        const o = off + (offsets[i] as number);
        if (t === 'u8') buf.writeUInt8(x, o);
        else if (t === 'u16') buf.writeUInt16LE(x, o);
        else if (t === 'u32') buf.writeUInt32LE(x >>> 0, o);
        else buf.writeInt32LE(x, o);
      });
    },
    read(buf, off) {
      if (off + size > buf.length) throw new CodecError(`header needs ${size} bytes`, off);
      const out = {} as Record<F, number>;
      fields.forEach(([name, t], i) => {
        const o = off + (offsets[i] as number);
        out[name] = t === 'u8' ? buf.readUInt8(o) : t === 'u16' ? buf.readUInt16LE(o) : t === 'u32' ? buf.readUInt32LE(o) : buf.readInt32LE(o);
      });
      return out;
    },
  };
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
