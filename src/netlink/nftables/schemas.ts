/**
 * nf_tables message schemas: the nfgenmsg header, then one attribute schema per object (table,
 * chain, rule, set, set element list, generation) and per expression, in the order nft emits
 * them, so our requests match its bytes (checked against captured fixtures). Every integer in
 * an NFTA_* attribute is big-endian; the attribute headers themselves stay in host order.
 */
import { CodecError } from '../../errors.js';
import { NLA_HDRLEN, align4, attr, be32, be64, bytes, nested, readAttrs, rawAttrs, attrsSize, writeAttrs, strz, u8, type Attrs, type Codec, type Schema } from '../core/attr.js';
import type { MessageDef } from '../core/message.js';
import { nfgenmsg, type NfGenMsg } from '../netfilter/nfnetlink.js';

/** struct nfgenmsg, shared by every nfnetlink subsystem. */
export { nfgenmsg, type NfGenMsg } from '../netfilter/nfnetlink.js';

/** A signed 32-bit integer in network byte order (hook priorities, verdict codes). */
export const sbe32: Codec<number> = {
  size: () => 4,
  write: (b, o, v) => void b.writeInt32BE(v | 0, o),
  read: (b, o, l) => {
    if (l !== 4) throw new CodecError(`sbe32: expected 4 bytes, got ${l}`, o);
    return b.readInt32BE(o);
  },
};

const N = { nestedFlag: true } as const;

/** NFTA_DATA_*: a value (bytes) or a verdict. */
export const verdictAttrs = { code: attr(1, sbe32), chain: attr(2, strz), chainId: attr(3, be32) } as const satisfies Schema;
export const dataAttrs = { value: attr(1, bytes), verdict: attr(2, nested(verdictAttrs), N) } as const satisfies Schema;
export type DataAttrs = Attrs<typeof dataAttrs>;

/** Expression attribute schemas by expression name (NFTA_<NAME>_*), each in the order libnftnl writes them. */
export const exprSchemas = {
  meta: { key: attr(2, be32), dreg: attr(1, be32), sreg: attr(3, be32) },
  cmp: { sreg: attr(1, be32), op: attr(2, be32), data: attr(3, nested(dataAttrs), N) },
  bitwise: { sreg: attr(1, be32), dreg: attr(2, be32), len: attr(3, be32), mask: attr(4, nested(dataAttrs), N), xor: attr(5, nested(dataAttrs), N), op: attr(6, be32), data: attr(7, nested(dataAttrs), N) },
  immediate: { dreg: attr(1, be32), data: attr(2, nested(dataAttrs), N) },
  payload: { dreg: attr(1, be32), base: attr(2, be32), offset: attr(3, be32), len: attr(4, be32), sreg: attr(5, be32), csumType: attr(6, be32), csumOffset: attr(7, be32), csumFlags: attr(8, be32) },
  ct: { key: attr(2, be32), dreg: attr(1, be32), direction: attr(3, u8), sreg: attr(4, be32) },
  nat: { type: attr(1, be32), family: attr(2, be32), regAddrMin: attr(3, be32), regAddrMax: attr(4, be32), regProtoMin: attr(5, be32), regProtoMax: attr(6, be32), flags: attr(7, be32) },
  masq: { flags: attr(1, be32), regProtoMin: attr(2, be32), regProtoMax: attr(3, be32) },
  fib: { flags: attr(3, be32), result: attr(2, be32), dreg: attr(1, be32) },
  lookup: { sreg: attr(2, be32), dreg: attr(3, be32), set: attr(1, strz), setId: attr(4, be32), flags: attr(5, be32) },
  counter: { bytes: attr(1, be64), packets: attr(2, be64) },
  // x_tables compatibility (what iptables-nft writes for `-m comment`).
  match: { name: attr(1, strz), rev: attr(2, be32), info: attr(3, bytes) },
  target: { name: attr(1, strz), rev: attr(2, be32), info: attr(3, bytes) },
} as const satisfies Record<string, Schema>;
export type ExprName = keyof typeof exprSchemas;

/** One expression as on the wire: its name and its attributes (raw bytes when the name is unknown). */
export interface WireExpr {
  name: string;
  data?: Attrs<Schema> | Buffer;
}

const exprNameAttrs = { name: attr(1, strz) } as const;

/**
 * Whether a decoded nest carried NLA_F_NESTED: nft sets it, the kernel's dumps do not. Kept
 * (out of sight of deep equality and JSON) so a dumped message re-encodes to its own bytes.
 */
const UNFLAGGED: unique symbol = Symbol('tsnetlink.unflagged');
type MaybeUnflagged = { [UNFLAGGED]?: true };

function schemaOfExpr(name: string | undefined): Schema | undefined {
  return name !== undefined && Object.hasOwn(exprSchemas, name) ? (exprSchemas as Record<string, Schema>)[name] : undefined;
}

/** NFTA_EXPR_NAME and NFTA_EXPR_DATA, whose schema the name picks (as IFLA_INFO_KIND picks IFLA_INFO_DATA's). */
export const exprCodec: Codec<WireExpr> & { schemaAt(b: Buffer, o: number, l: number): Schema } = {
  size: (v) => {
    const s = schemaOfExpr(v.name);
    const data = v.data === undefined ? 0 : NLA_HDRLEN + align4(Buffer.isBuffer(v.data) || !s ? (v.data as Buffer).length : attrsSize(s, v.data));
    return NLA_HDRLEN + align4(Buffer.byteLength(v.name) + 1) + data;
  },
  write: (b, o, v) => {
    const nameLen = Buffer.byteLength(v.name) + 1;
    b.writeUInt16LE(NLA_HDRLEN + nameLen, o);
    b.writeUInt16LE(1, o + 2);
    b.write(v.name, o + NLA_HDRLEN, 'utf8');
    o += NLA_HDRLEN + align4(nameLen);
    if (v.data === undefined) return;
    const s = schemaOfExpr(v.name);
    const raw = Buffer.isBuffer(v.data) || !s;
    const len = raw ? (v.data as Buffer).length : attrsSize(s, v.data as Attrs<Schema>);
    b.writeUInt16LE(NLA_HDRLEN + len, o);
    b.writeUInt16LE((v as MaybeUnflagged)[UNFLAGGED] ? 2 : 2 | 0x8000, o + 2);
    if (raw) (v.data as Buffer).copy(b, o + NLA_HDRLEN);
    else writeAttrs(s, v.data as Attrs<Schema>, b, o + NLA_HDRLEN);
  },
  read: (b, o, l) => {
    let name: string | undefined;
    let data: Attrs<Schema> | Buffer | undefined;
    let unflagged = false;
    for (const a of rawAttrs(b, o, o + l)) {
      if ((a.type & 0x3fff) === 1) name = strz.read(b, a.offset + NLA_HDRLEN, a.data.length);
      else if ((a.type & 0x3fff) === 2) {
        unflagged = (a.type & 0x8000) === 0;
        const s = schemaOfExpr(name);
        data = s ? readAttrs(s, b, a.offset + NLA_HDRLEN, a.offset + NLA_HDRLEN + a.data.length) : Buffer.from(a.data);
      }
    }
    if (name === undefined) throw new CodecError('expression without NFTA_EXPR_NAME', o);
    const out: WireExpr & MaybeUnflagged = data === undefined ? { name } : { name, data };
    if (unflagged) out[UNFLAGGED] = true;
    return out;
  },
  schemaAt: (b, o, l) => {
    let name: string | undefined;
    for (const a of rawAttrs(b, o, o + l)) if ((a.type & 0x3fff) === 1) name = strz.read(b, a.offset + NLA_HDRLEN, a.data.length);
    const s = schemaOfExpr(name);
    return { ...exprNameAttrs, data: s ? attr(2, nested(s)) : attr(2, bytes) };
  },
};

/**
 * A nest of NFTA_LIST_ELEM children (rule expressions, set elements): an array, each child
 * written with NLA_F_NESTED as nft does.
 */
export function listOf<T>(codec: Codec<T>): Codec<T[]> & { readonly schema: Schema } {
  return {
    schema: { elem: attr(1, codec, N) },
    size: (v) => v.reduce((n, x) => n + NLA_HDRLEN + align4(codec.size(x)), 0),
    write: (b, o, v) => {
      const flag = (v as MaybeUnflagged)[UNFLAGGED] ? 0 : 0x8000;
      for (const x of v) {
        const len = codec.size(x);
        b.writeUInt16LE(NLA_HDRLEN + len, o);
        b.writeUInt16LE(1 | flag, o + 2);
        codec.write(b, o + NLA_HDRLEN, x);
        o += NLA_HDRLEN + align4(len);
      }
    },
    read: (b, o, l) => {
      const out: T[] & MaybeUnflagged = [];
      for (const a of rawAttrs(b, o, o + l)) {
        if ((a.type & 0x8000) === 0) out[UNFLAGGED] = true;
        out.push(codec.read(b, a.offset + NLA_HDRLEN, a.data.length));
      }
      return out;
    },
  };
}

export const tableAttrs = {
  name: attr(1, strz),
  flags: attr(2, be32),
  use: attr(3, be32),
  handle: attr(4, be64),
  userdata: attr(6, bytes),
  owner: attr(7, be32),
} as const satisfies Schema;

export const hookAttrs = { hooknum: attr(1, be32), priority: attr(2, sbe32), dev: attr(3, strz) } as const satisfies Schema;

export const chainAttrs = {
  table: attr(1, strz),
  handle: attr(2, be64),
  name: attr(3, strz),
  type: attr(7, strz),
  policy: attr(5, be32),
  hook: attr(4, nested(hookAttrs), N),
  use: attr(6, be32),
  counters: attr(8, nested(exprSchemas.counter), N),
  flags: attr(10, be32),
  id: attr(11, be32),
  userdata: attr(12, bytes),
} as const satisfies Schema;

export const ruleAttrs = {
  table: attr(1, strz),
  chain: attr(2, strz),
  handle: attr(3, be64),
  expressions: attr(4, listOf(exprCodec), N),
  compat: attr(5, nested({ proto: attr(1, be32), flags: attr(2, be32) }), N),
  position: attr(6, be64),
  userdata: attr(7, bytes),
  id: attr(9, be32),
  positionId: attr(10, be32),
  chainId: attr(11, be32),
} as const satisfies Schema;

export const setDescAttrs = { size: attr(1, be32) } as const satisfies Schema;

export const setAttrs = {
  table: attr(1, strz),
  name: attr(2, strz),
  flags: attr(3, be32),
  keyType: attr(4, be32),
  keyLen: attr(5, be32),
  dataType: attr(6, be32),
  dataLen: attr(7, be32),
  policy: attr(8, be32),
  desc: attr(9, nested(setDescAttrs), N),
  id: attr(10, be32),
  timeout: attr(11, be64),
  gcInterval: attr(12, be32),
  userdata: attr(13, bytes),
  objType: attr(15, be32),
  handle: attr(16, be64),
} as const satisfies Schema;

export const setElemAttrs = {
  key: attr(1, nested(dataAttrs), N),
  data: attr(2, nested(dataAttrs), N),
  flags: attr(3, be32),
  timeout: attr(4, be64),
  expiration: attr(5, be64),
  userdata: attr(6, bytes),
  keyEnd: attr(10, nested(dataAttrs), N),
} as const satisfies Schema;
export type SetElemAttrs = Attrs<typeof setElemAttrs>;

export const setElemListAttrs = {
  table: attr(1, strz),
  set: attr(2, strz),
  setId: attr(4, be32),
  elements: attr(3, listOf(nested(setElemAttrs)), N),
} as const satisfies Schema;

export const genAttrs = { id: attr(1, be32), procPid: attr(2, be32), procName: attr(3, strz) } as const satisfies Schema;
export const batchAttrs = { genId: attr(1, be32) } as const satisfies Schema;

type Def<S extends Schema> = MessageDef<keyof NfGenMsg, S>;
const def = <S extends Schema>(attrs: S): Def<S> => ({ header: nfgenmsg, attrs });

/** Message definitions by object. */
export const messages = {
  table: def(tableAttrs),
  chain: def(chainAttrs),
  rule: def(ruleAttrs),
  set: def(setAttrs),
  setElems: def(setElemListAttrs),
  gen: def(genAttrs),
  batch: def(batchAttrs),
} as const;

/** The message definition of an nfnetlink message type (for fixtures and tools), undefined when unknown. */
export function defOfType(type: number): MessageDef<string, Schema> | undefined {
  if (type === 0x10 || type === 0x11) return messages.batch as MessageDef<string, Schema>;
  if (type >> 8 !== 10) return undefined;
  const m = type & 0xff;
  const byMsg: [readonly number[], MessageDef<string, Schema>][] = [
    [[0, 1, 2, 26], messages.table as MessageDef<string, Schema>],
    [[3, 4, 5, 27], messages.chain as MessageDef<string, Schema>],
    [[6, 7, 8, 28], messages.rule as MessageDef<string, Schema>],
    [[9, 10, 11, 29], messages.set as MessageDef<string, Schema>],
    [[12, 13, 14, 30], messages.setElems as MessageDef<string, Schema>],
    [[15, 16], messages.gen as MessageDef<string, Schema>],
  ];
  return byMsg.find(([ms]) => ms.includes(m))?.[1];
}

/** Reads a userdata blob's TLVs (u8 type, u8 length, value), as libnftnl lays them out. */
export function readUdata(b: Buffer | undefined): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  if (!b) return out;
  for (let o = 0; o + 2 <= b.length; ) {
    const t = b[o] as number;
    const l = b[o + 1] as number;
    if (o + 2 + l > b.length) break;
    if (!out.has(t)) out.set(t, b.subarray(o + 2, o + 2 + l));
    o += 2 + l;
  }
  return out;
}

/** Writes userdata TLVs; a comment is NUL-terminated, as nft writes it. */
export function writeUdata(entries: readonly (readonly [number, Buffer])[]): Buffer {
  const parts: Buffer[] = [];
  for (const [t, v] of entries) {
    if (v.length > 255) throw new CodecError(`userdata entry of ${v.length} bytes (at most 255)`);
    parts.push(Buffer.from([t, v.length]), v);
  }
  return Buffer.concat(parts);
}

/** A comment as a userdata value: the text and a NUL. */
export function commentValue(text: string): Buffer {
  return Buffer.concat([Buffer.from(text, 'utf8'), Buffer.alloc(1)]);
}

/** The comment in a userdata blob (under `type`), without its NUL. */
export function commentOf(b: Buffer | undefined, type = 0): string | undefined {
  const v = readUdata(b).get(type);
  return v === undefined ? undefined : v.toString('utf8').replace(/\0.*$/s, '');
}
