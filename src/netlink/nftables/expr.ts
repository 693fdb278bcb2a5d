/**
 * nf_tables expressions as typed values, and their translation to and from the wire (name plus
 * NFTA_<NAME>_* attributes). Registers and byte order are the kernel's: attribute integers are
 * big-endian, data compared against a register is in the byte order of what was loaded into it
 * (payload bytes as on the wire, meta and ct keys in host order, as nft emits them).
 */
import { CodecError } from '../../errors.js';
import type { Attrs, Schema } from '../core/attr.js';
import { NFT_CMP, NFT_CT, NFT_META, NFT_NAT, NFT_PAYLOAD_BASE, NFT_VERDICT, NFPROTO, type CmpOp, type CtKey, type Family, type MetaKey, type PayloadBase, type VerdictCode } from './constants.js';
import type { DataAttrs, WireExpr, exprSchemas } from './schemas.js';

/** A verdict: accept, drop, or a jump/goto to a chain (by name). */
export type Verdict = { code: Exclude<VerdictCode, 'jump' | 'goto'> } | { code: 'jump' | 'goto'; chain: string };

/** An expression of a rule. */
export type Expr =
  | { type: 'meta'; key: MetaKey; dreg: number }
  | { type: 'cmp'; sreg: number; op: CmpOp; data: Buffer }
  | { type: 'bitwise'; sreg: number; dreg: number; len: number; mask: Buffer; xor: Buffer }
  | { type: 'immediate'; dreg: number; data: Buffer }
  | { type: 'verdict'; verdict: Verdict }
  | { type: 'payload'; base: PayloadBase; offset: number; len: number; dreg: number }
  | { type: 'ct'; key: CtKey; dreg: number }
  | { type: 'nat'; nat: 'snat' | 'dnat'; family: Family; addr?: number; proto?: number; flags?: number }
  | { type: 'masq'; flags?: number }
  | { type: 'fib'; flags: number; result: number; dreg: number }
  | { type: 'lookup'; set: string; sreg: number; dreg?: number; setId?: number }
  | { type: 'counter' }
  | { type: 'match'; name: string; rev: number; info: Buffer }
  /** An expression this library does not model, kept as it came. */
  | { type: 'raw'; wire: WireExpr };

type S = typeof exprSchemas;
type A<K extends keyof S> = Attrs<S[K]>;

function nameOf<T extends string>(table: Readonly<Record<T, number>>, n: number | undefined, what: string): T {
  const hit = (Object.keys(table) as T[]).find((k) => table[k] === n);
  if (hit === undefined) throw new CodecError(`${what}: unknown value ${n}`);
  return hit;
}

function verdictData(v: Verdict): DataAttrs {
  return { verdict: { code: NFT_VERDICT[v.code], ...('chain' in v ? { chain: v.chain } : {}) } };
}

/** The wire form of an expression. */
export function toWire(e: Expr): WireExpr {
  switch (e.type) {
    case 'meta':
      return { name: 'meta', data: { dreg: e.dreg, key: NFT_META[e.key] } satisfies A<'meta'> };
    case 'cmp':
      return { name: 'cmp', data: { sreg: e.sreg, op: NFT_CMP[e.op], data: { value: e.data } } satisfies A<'cmp'> };
    case 'bitwise':
      return { name: 'bitwise', data: { sreg: e.sreg, dreg: e.dreg, len: e.len, mask: { value: e.mask }, xor: { value: e.xor } } satisfies A<'bitwise'> };
    case 'immediate':
      return { name: 'immediate', data: { dreg: e.dreg, data: { value: e.data } } satisfies A<'immediate'> };
    case 'verdict':
      return { name: 'immediate', data: { dreg: 0, data: verdictData(e.verdict) } satisfies A<'immediate'> };
    case 'payload':
      return { name: 'payload', data: { dreg: e.dreg, base: NFT_PAYLOAD_BASE[e.base], offset: e.offset, len: e.len } satisfies A<'payload'> };
    case 'ct':
      return { name: 'ct', data: { dreg: e.dreg, key: NFT_CT[e.key] } satisfies A<'ct'> };
    case 'nat': {
      // Like nft, only the minimum registers: the kernel takes max = min and derives the flags.
      const d: A<'nat'> = { type: NFT_NAT[e.nat], family: NFPROTO[e.family] };
      if (e.addr !== undefined) d.regAddrMin = e.addr;
      if (e.proto !== undefined) d.regProtoMin = e.proto;
      if (e.flags !== undefined) d.flags = e.flags;
      return { name: 'nat', data: d };
    }
    case 'masq':
      return { name: 'masq', data: e.flags ? ({ flags: e.flags } satisfies A<'masq'>) : {} };
    case 'fib':
      return { name: 'fib', data: { dreg: e.dreg, result: e.result, flags: e.flags } satisfies A<'fib'> };
    case 'lookup': {
      const d: A<'lookup'> = { sreg: e.sreg, set: e.set };
      if (e.dreg !== undefined) d.dreg = e.dreg;
      if (e.setId !== undefined) d.setId = e.setId;
      return { name: 'lookup', data: d };
    }
    case 'counter':
      return { name: 'counter', data: { bytes: 0n, packets: 0n } satisfies A<'counter'> };
    case 'match':
      return { name: 'match', data: { name: e.name, rev: e.rev, info: e.info } satisfies A<'match'> };
    case 'raw':
      return e.wire;
  }
}

const value = (d: DataAttrs | undefined, what: string): Buffer => {
  if (!d?.value) throw new CodecError(`${what}: no NFTA_DATA_VALUE`);
  return Buffer.from(d.value);
};

/** An expression read back from the wire (a dump); ones this library does not model stay raw. */
export function fromWire(w: WireExpr): Expr {
  const raw: Expr = { type: 'raw', wire: w };
  if (w.data === undefined || Buffer.isBuffer(w.data)) return raw;
  const d = w.data as Record<string, unknown>;
  try {
    switch (w.name) {
      case 'meta': {
        const m = d as A<'meta'>;
        return m.sreg !== undefined ? raw : { type: 'meta', key: nameOf(NFT_META, m.key, 'meta key'), dreg: m.dreg ?? 0 };
      }
      case 'cmp': {
        const m = d as A<'cmp'>;
        return { type: 'cmp', sreg: m.sreg ?? 0, op: nameOf(NFT_CMP, m.op, 'cmp op'), data: value(m.data, 'cmp') };
      }
      case 'bitwise': {
        const m = d as A<'bitwise'>;
        if (m.op !== undefined && m.op !== 0) return raw;
        return { type: 'bitwise', sreg: m.sreg ?? 0, dreg: m.dreg ?? 0, len: m.len ?? 0, mask: value(m.mask, 'bitwise mask'), xor: value(m.xor, 'bitwise xor') };
      }
      case 'immediate': {
        const m = d as A<'immediate'>;
        const v = m.data?.verdict;
        if (v) {
          const code = nameOf(NFT_VERDICT, v.code, 'verdict');
          if (code === 'jump' || code === 'goto') return { type: 'verdict', verdict: { code, chain: v.chain ?? '' } };
          return { type: 'verdict', verdict: { code } };
        }
        return { type: 'immediate', dreg: m.dreg ?? 0, data: value(m.data, 'immediate') };
      }
      case 'payload': {
        const m = d as A<'payload'>;
        if (m.sreg !== undefined) return raw;
        return { type: 'payload', base: nameOf(NFT_PAYLOAD_BASE, m.base, 'payload base'), offset: m.offset ?? 0, len: m.len ?? 0, dreg: m.dreg ?? 0 };
      }
      case 'ct': {
        const m = d as A<'ct'>;
        return m.sreg !== undefined || m.direction !== undefined ? raw : { type: 'ct', key: nameOf(NFT_CT, m.key, 'ct key'), dreg: m.dreg ?? 0 };
      }
      case 'nat': {
        const m = d as A<'nat'>;
        // The kernel reports max registers equal to the min ones and the flags it derived: a range
        // (max unlike min) is not modelled.
        if ((m.regAddrMax !== undefined && m.regAddrMax !== m.regAddrMin) || (m.regProtoMax !== undefined && m.regProtoMax !== m.regProtoMin)) return raw;
        const e: Expr = { type: 'nat', nat: nameOf(NFT_NAT, m.type, 'nat type'), family: nameOf(NFPROTO, m.family, 'nat family') };
        if (m.regAddrMin !== undefined) e.addr = m.regAddrMin;
        if (m.regProtoMin !== undefined) e.proto = m.regProtoMin;
        return e;
      }
      case 'masq': {
        const m = d as A<'masq'>;
        return m.flags ? { type: 'masq', flags: m.flags } : { type: 'masq' };
      }
      case 'fib': {
        const m = d as A<'fib'>;
        return { type: 'fib', flags: m.flags ?? 0, result: m.result ?? 0, dreg: m.dreg ?? 0 };
      }
      case 'lookup': {
        const m = d as A<'lookup'>;
        if (m.flags) return raw;
        const e: Expr = { type: 'lookup', set: m.set ?? '', sreg: m.sreg ?? 0 };
        if (m.setId !== undefined) e.setId = m.setId;
        if (m.dreg !== undefined) e.dreg = m.dreg;
        return e;
      }
      case 'counter':
        return { type: 'counter' };
      case 'match': {
        const m = d as A<'match'>;
        return { type: 'match', name: m.name ?? '', rev: m.rev ?? 0, info: Buffer.from(m.info ?? Buffer.alloc(0)) };
      }
    }
  } catch (e) {
    if (e instanceof CodecError) return raw;
    throw e;
  }
  return raw;
}

/** A stable text of an expression for comparisons and messages (`meta oifname => r1`, `cmp eq r1 7465...`). */
export function describeExpr(e: Expr): string {
  switch (e.type) {
    case 'meta':
      return `meta ${e.key} => r${e.dreg}`;
    case 'cmp':
      return `cmp ${e.op} r${e.sreg} ${e.data.toString('hex')}`;
    case 'bitwise':
      return `bitwise r${e.dreg} = (r${e.sreg} & ${e.mask.toString('hex')}) ^ ${e.xor.toString('hex')} len ${e.len}`;
    case 'immediate':
      return `immediate r${e.dreg} ${e.data.toString('hex')}`;
    case 'verdict':
      return 'chain' in e.verdict ? `${e.verdict.code} ${e.verdict.chain}` : e.verdict.code;
    case 'payload':
      return `payload ${e.len}b @ ${e.base} + ${e.offset} => r${e.dreg}`;
    case 'ct':
      return `ct ${e.key} => r${e.dreg}`;
    case 'nat':
      return `${e.nat} ${e.family} addr r${e.addr ?? '-'} proto r${e.proto ?? '-'}`;
    case 'masq':
      return `masq${e.flags ? ` flags ${e.flags}` : ''}`;
    case 'fib':
      return `fib flags ${e.flags} result ${e.result} => r${e.dreg}`;
    case 'lookup':
      return `lookup r${e.sreg} @${e.set}${e.dreg !== undefined ? ` => r${e.dreg}` : ''}`;
    case 'counter':
      return 'counter';
    case 'match':
      return `match ${e.name} rev ${e.rev} ${e.info.toString('hex').replace(/(00)+$/, '')}`;
    case 'raw':
      return `${e.wire.name} (raw)`;
  }
}

export type { Schema };
