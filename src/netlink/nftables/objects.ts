/**
 * nf_tables objects (tables, chains, rules, sets, set elements, the generation) as typed values,
 * their requests (pure: nothing is sent here) and the decoders of what the kernel dumps back.
 * Each builder names its `nft` equivalent; every name is validated before it is encoded.
 */
import { CodecError, ValidationError } from '../../errors.js';
import { NLM_F } from '../core/constants.js';
import { decodePayload, request, type RawMessage, type Request } from '../core/message.js';
import type { Attrs } from '../core/attr.js';
import { NFPROTO, NFT_MSG, NF_INET_HOOK, NFT_VERDICT, UDATA_COMMENT, nftType, type Family, type Hook } from './constants.js';
import { commentOf, commentValue, messages, writeUdata, type SetElemAttrs, type WireExpr } from './schemas.js';
import { fromWire, toWire, type Expr, type Verdict } from './expr.js';

/** `nft list tables`: a table. */
export interface NftTable {
  family: Family;
  name: string;
  /** NFT_TABLE_F_* (DORMANT, OWNER: dies with the socket that made it, PERSIST). */
  flags?: number;
  comment?: string;
  handle?: bigint;
  /** How many chains and sets it holds (dumps only). */
  use?: number;
}

/** A chain; a base chain has a hook, a type and a policy. */
export interface NftChain {
  family: Family;
  table: string;
  name: string;
  hook?: { hook: Hook; priority: number };
  type?: 'filter' | 'nat' | 'route';
  policy?: 'accept' | 'drop';
  handle?: bigint;
}

/** A rule: its expressions, in order, and the comment `nft list` shows. */
export interface NftRule {
  family: Family;
  table: string;
  chain: string;
  exprs: Expr[];
  comment?: string;
  handle?: bigint;
  /** NFTA_RULE_COMPAT, which iptables-nft writes (proto and flags of its x_tables matches). */
  compat?: { proto: number; flags: number };
}

/** A set or map: key and data types as nft's type ids (concatenations packed 6 bits each). */
export interface NftSet {
  family: Family;
  table: string;
  name: string;
  /** NFT_SET_F_* (MAP, CONCAT, INTERVAL, ...). */
  flags: number;
  keyType: number;
  keyLen: number;
  dataType?: number;
  dataLen?: number;
  /** A number naming the set inside one transaction (rules and elements may refer to it before it exists); NEWSET requires one. */
  id?: number;
  /** nft's own hints (key byte order, typeof); kept as given. */
  userdata?: Buffer;
  handle?: bigint;
}

/** A set element: key bytes, and for a map its data (bytes, or a verdict for a verdict map). */
export interface NftElement {
  key: Buffer;
  data?: Buffer;
  verdict?: Verdict;
  comment?: string;
}

type Header = { family: number; version?: number; resId?: number };
const hdr = (family: Family): Header => ({ family: NFPROTO[family], version: 0, resId: 0 });

/** Object names are NUL-terminated strings of at most 255 bytes (NFT_NAME_MAXLEN 256). */
export function checkObjectName(name: unknown, field: string): string {
  if (typeof name !== 'string' || name === '') throw new ValidationError(field, 'must be a non-empty string');
  if (Buffer.byteLength(name) > 255) throw new ValidationError(field, `${JSON.stringify(name.slice(0, 40))}... is longer than 255 bytes`);
  if (name.includes('\0')) throw new ValidationError(field, 'must not contain NUL');
  return name;
}

function checkFamily(f: unknown): Family {
  if (typeof f !== 'string' || !Object.hasOwn(NFPROTO, f)) throw new ValidationError('family', `must be one of ${Object.keys(NFPROTO).join(', ')}, got ${JSON.stringify(f)}`);
  return f as Family;
}

const comment = (text: string | undefined, type: number): Buffer | undefined => (text === undefined ? undefined : writeUdata([[type, commentValue(text)]]));

// ------------------------------------------------------------------------------ requests

/** `nft add table FAMILY NAME [{ comment "..."; flags ...; }]` (nft sends it without NLM_F_CREATE). */
export function addTableRequest(t: NftTable): Request {
  const attrs: Attrs<typeof messages.table.attrs> = { name: checkObjectName(t.name, 'table'), flags: t.flags ?? 0 };
  const ud = comment(t.comment, UDATA_COMMENT.table);
  if (ud) attrs.userdata = ud;
  return request(messages.table, nftType(NFT_MSG.NEWTABLE), 0, hdr(checkFamily(t.family)), attrs);
}

/** `nft delete table FAMILY NAME` (ENOENT when it is missing). */
export function delTableRequest(family: Family, name: string): Request {
  return request(messages.table, nftType(NFT_MSG.DELTABLE), 0, hdr(checkFamily(family)), { name: checkObjectName(name, 'table') });
}

/** `nft destroy table FAMILY NAME`: like delete, but a missing table is no error (kernel 6.3+). */
export function destroyTableRequest(family: Family, name: string): Request {
  return request(messages.table, nftType(NFT_MSG.DESTROYTABLE), 0, hdr(checkFamily(family)), { name: checkObjectName(name, 'table') });
}

/** `nft add chain FAMILY TABLE NAME [{ type T hook H priority P; policy V; }]` */
export function addChainRequest(c: NftChain): Request {
  const attrs: Attrs<typeof messages.chain.attrs> = { table: checkObjectName(c.table, 'table'), name: checkObjectName(c.name, 'chain') };
  if (c.hook) {
    if (!Object.hasOwn(NF_INET_HOOK, c.hook.hook)) throw new ValidationError('hook', `unknown hook ${JSON.stringify(c.hook.hook)}`);
    if (!Number.isInteger(c.hook.priority) || Math.abs(c.hook.priority) > 0x7fffffff) throw new ValidationError('priority', 'must be a 32-bit integer');
    attrs.type = c.type ?? 'filter';
    attrs.policy = NFT_VERDICT[c.policy ?? 'accept'];
    attrs.hook = { hooknum: NF_INET_HOOK[c.hook.hook], priority: c.hook.priority };
  }
  return request(messages.chain, nftType(NFT_MSG.NEWCHAIN), NLM_F.CREATE, hdr(checkFamily(c.family)), attrs);
}

/** `nft chain FAMILY TABLE NAME { policy drop; }`: changes a base chain's policy only. */
export function setChainPolicyRequest(family: Family, table: string, name: string, policy: 'accept' | 'drop'): Request {
  return request(messages.chain, nftType(NFT_MSG.NEWCHAIN), 0, hdr(checkFamily(family)), { table: checkObjectName(table, 'table'), name: checkObjectName(name, 'chain'), policy: NFT_VERDICT[policy] });
}

/** `nft flush chain FAMILY TABLE NAME`: every rule of the chain goes. */
export function flushChainRequest(family: Family, table: string, chain: string): Request {
  return request(messages.rule, nftType(NFT_MSG.DELRULE), 0, hdr(checkFamily(family)), { table: checkObjectName(table, 'table'), chain: checkObjectName(chain, 'chain') });
}

/** `nft add rule FAMILY TABLE CHAIN EXPRS... [comment "..."]` (appended). */
export function addRuleRequest(r: NftRule, opts: { echo?: boolean } = {}): Request {
  if (!Array.isArray(r.exprs) || r.exprs.length === 0) throw new ValidationError('rule', 'needs at least one expression');
  const attrs: Attrs<typeof messages.rule.attrs> = { table: checkObjectName(r.table, 'table'), chain: checkObjectName(r.chain, 'chain'), expressions: r.exprs.map(toWire) };
  if (r.compat) attrs.compat = { proto: r.compat.proto, flags: r.compat.flags };
  const ud = comment(r.comment, UDATA_COMMENT.rule);
  if (ud) attrs.userdata = ud;
  return request(messages.rule, nftType(NFT_MSG.NEWRULE), NLM_F.CREATE | NLM_F.APPEND | (opts.echo ? NLM_F.ECHO : 0), hdr(checkFamily(r.family)), attrs);
}

/** `nft delete rule FAMILY TABLE CHAIN handle H` */
export function delRuleRequest(family: Family, table: string, chain: string, handle: bigint): Request {
  return request(messages.rule, nftType(NFT_MSG.DELRULE), 0, hdr(checkFamily(family)), { table: checkObjectName(table, 'table'), chain: checkObjectName(chain, 'chain'), handle });
}

/** `nft add set|map FAMILY TABLE NAME { type ...; }` */
export function addSetRequest(s: NftSet): Request {
  const attrs: Attrs<typeof messages.set.attrs> = { table: checkObjectName(s.table, 'table'), name: checkObjectName(s.name, 'set'), flags: s.flags, keyType: s.keyType, keyLen: s.keyLen };
  if (s.dataType !== undefined) Object.assign(attrs, { dataType: s.dataType, dataLen: s.dataLen ?? 0 });
  attrs.id = s.id ?? 1;
  if (s.userdata) attrs.userdata = s.userdata;
  return request(messages.set, nftType(NFT_MSG.NEWSET), NLM_F.CREATE, hdr(checkFamily(s.family)), attrs);
}

/** Largest element list one message carries: the nest's length is a u16, and headers need room. */
export const MAX_ELEMENTS_BYTES = 60_000;

function elemAttrs(e: NftElement, withData: boolean): SetElemAttrs {
  if (!Buffer.isBuffer(e.key) || e.key.length === 0) throw new ValidationError('element.key', 'must be non-empty bytes');
  const a: SetElemAttrs = { key: { value: e.key } };
  if (withData) {
    if (e.verdict) a.data = { verdict: { code: NFT_VERDICT[e.verdict.code], ...('chain' in e.verdict ? { chain: checkObjectName(e.verdict.chain, 'verdict.chain') } : {}) } };
    else if (e.data) a.data = { value: e.data };
    const ud = comment(e.comment, UDATA_COMMENT.setElem);
    if (ud) a.userdata = ud;
  }
  return a;
}

function elementRequests(type: number, flags: number, family: Family, table: string, set: string, elements: readonly NftElement[], withData: boolean, setId?: number): Request[] {
  const out: Request[] = [];
  const codec = messages.setElems.attrs.elements.codec;
  let batch: SetElemAttrs[] = [];
  const flush = (): void => {
    if (batch.length === 0) return;
    const attrs: Attrs<typeof messages.setElems.attrs> = { table: checkObjectName(table, 'table'), set: checkObjectName(set, 'set') };
    if (setId !== undefined) attrs.setId = setId;
    attrs.elements = batch;
    out.push(request(messages.setElems, type, flags, hdr(checkFamily(family)), attrs));
    batch = [];
  };
  for (const e of elements) {
    const a = elemAttrs(e, withData);
    if (batch.length > 0 && codec.size([...batch, a]) > MAX_ELEMENTS_BYTES) flush();
    batch.push(a);
  }
  flush();
  return out;
}

/**
 * `nft add element FAMILY TABLE SET { KEY [comment "..."] : DATA, ... }`: one message per
 * ~60 KB of elements (the element list's length is a u16). `exclusive` (NLM_F_EXCL) makes an
 * existing key an EEXIST error instead of a no-op.
 */
export function addElementsRequests(family: Family, table: string, set: string, elements: readonly NftElement[], opts: { exclusive?: boolean; setId?: number } = {}): Request[] {
  return elementRequests(nftType(NFT_MSG.NEWSETELEM), NLM_F.CREATE | (opts.exclusive ? NLM_F.EXCL : 0), family, table, set, elements, true, opts.setId);
}

/** `nft delete element FAMILY TABLE SET { KEY, ... }` (ENOENT for a missing key). */
export function delElementsRequests(family: Family, table: string, set: string, keys: readonly Buffer[]): Request[] {
  return elementRequests(nftType(NFT_MSG.DELSETELEM), 0, family, table, set, keys.map((key) => ({ key })), false);
}

/** `nft destroy element ...`: like delete, but a missing key is no error (kernel 6.3+). */
export function destroyElementsRequests(family: Family, table: string, set: string, keys: readonly Buffer[]): Request[] {
  return elementRequests(nftType(NFT_MSG.DESTROYSETELEM), 0, family, table, set, keys.map((key) => ({ key })), false);
}

/** The request of the current ruleset generation (NFT_MSG_GETGEN). */
export function getGenRequest(): Request {
  return request(messages.gen, nftType(NFT_MSG.GETGEN), 0, { family: 0, version: 0, resId: 0 }, {});
}

/** Dump requests: every table, or the chains, rules, sets of one table, or the elements of one set. */
export const dumpRequests = {
  tables: (family: Family = 'inet'): Request => request(messages.table, nftType(NFT_MSG.GETTABLE), 0, hdr(family), {}),
  chains: (family: Family, table: string): Request => request(messages.chain, nftType(NFT_MSG.GETCHAIN), 0, hdr(checkFamily(family)), { table: checkObjectName(table, 'table') }),
  rules: (family: Family, table: string, chain?: string): Request =>
    request(messages.rule, nftType(NFT_MSG.GETRULE), 0, hdr(checkFamily(family)), { table: checkObjectName(table, 'table'), ...(chain !== undefined ? { chain: checkObjectName(chain, 'chain') } : {}) }),
  sets: (family: Family, table: string): Request => request(messages.set, nftType(NFT_MSG.GETSET), 0, hdr(checkFamily(family)), { table: checkObjectName(table, 'table') }),
  elements: (family: Family, table: string, set: string): Request => request(messages.setElems, nftType(NFT_MSG.GETSETELEM), 0, hdr(checkFamily(family)), { table: checkObjectName(table, 'table'), set: checkObjectName(set, 'set') }),
};

// ------------------------------------------------------------------------------ decoders

function familyOf(n: number): Family {
  const f = (Object.keys(NFPROTO) as Family[]).find((k) => NFPROTO[k] === n);
  if (!f) throw new CodecError(`unknown nf_tables family ${n}`);
  return f;
}

/** Decodes a NEWTABLE message (a dump entry or an event). */
export function decodeTable(m: RawMessage): NftTable {
  const { header, attrs: a } = decodePayload(messages.table, m.payload);
  if (a.name === undefined) throw new CodecError('table without a name');
  const t: NftTable = { family: familyOf(header.family), name: a.name, flags: a.flags ?? 0 };
  const c = commentOf(a.userdata, UDATA_COMMENT.table);
  if (c !== undefined) t.comment = c;
  if (a.handle !== undefined) t.handle = a.handle;
  if (a.use !== undefined) t.use = a.use;
  return t;
}

/** Decodes a NEWCHAIN message. */
export function decodeChain(m: RawMessage): NftChain {
  const { header, attrs: a } = decodePayload(messages.chain, m.payload);
  if (a.name === undefined || a.table === undefined) throw new CodecError('chain without a name or table');
  const c: NftChain = { family: familyOf(header.family), table: a.table, name: a.name };
  if (a.hook?.hooknum !== undefined) {
    const hook = (Object.keys(NF_INET_HOOK) as Hook[]).find((k) => NF_INET_HOOK[k] === a.hook?.hooknum);
    if (hook) c.hook = { hook, priority: a.hook.priority ?? 0 };
  }
  if (a.type !== undefined) c.type = a.type as NonNullable<NftChain['type']>;
  if (a.policy !== undefined) c.policy = a.policy === 0 ? 'drop' : 'accept';
  if (a.handle !== undefined) c.handle = a.handle;
  return c;
}

/** Decodes a NEWRULE message; expressions this library does not model stay raw. */
export function decodeRule(m: RawMessage): NftRule {
  const { header, attrs: a } = decodePayload(messages.rule, m.payload);
  if (a.table === undefined || a.chain === undefined) throw new CodecError('rule without a table or chain');
  const r: NftRule = { family: familyOf(header.family), table: a.table, chain: a.chain, exprs: (a.expressions ?? []).map((w: WireExpr) => fromWire(w)) };
  const c = commentOf(a.userdata, UDATA_COMMENT.rule);
  if (c !== undefined) r.comment = c;
  if (a.handle !== undefined) r.handle = a.handle;
  if (a.compat) r.compat = { proto: a.compat.proto ?? 0, flags: a.compat.flags ?? 0 };
  return r;
}

/** Decodes a NEWSET message. */
export function decodeSet(m: RawMessage): NftSet {
  const { header, attrs: a } = decodePayload(messages.set, m.payload);
  if (a.name === undefined || a.table === undefined) throw new CodecError('set without a name or table');
  const s: NftSet = { family: familyOf(header.family), table: a.table, name: a.name, flags: a.flags ?? 0, keyType: a.keyType ?? 0, keyLen: a.keyLen ?? 0 };
  if (a.dataType !== undefined) s.dataType = a.dataType;
  if (a.dataLen !== undefined) s.dataLen = a.dataLen;
  if (a.userdata) s.userdata = Buffer.from(a.userdata);
  if (a.handle !== undefined) s.handle = a.handle;
  return s;
}

/** Decodes a NEWSETELEM message into its elements. */
export function decodeElements(m: RawMessage): NftElement[] {
  const { attrs: a } = decodePayload(messages.setElems, m.payload);
  return (a.elements ?? []).map((e) => {
    if (!e.key?.value) throw new CodecError('set element without a key');
    const out: NftElement = { key: Buffer.from(e.key.value) };
    if (e.data?.value) out.data = Buffer.from(e.data.value);
    const v = e.data?.verdict;
    if (v?.code !== undefined) {
      const code = (Object.keys(NFT_VERDICT) as (keyof typeof NFT_VERDICT)[]).find((k) => NFT_VERDICT[k] === v.code);
      if (code === 'jump' || code === 'goto') out.verdict = { code, chain: v.chain ?? '' };
      else if (code) out.verdict = { code };
    }
    const c = commentOf(e.userdata, UDATA_COMMENT.setElem);
    if (c !== undefined) out.comment = c;
    return out;
  });
}

/** Decodes a NEWGEN message: the ruleset generation id. */
export function decodeGen(m: RawMessage): number {
  const { attrs } = decodePayload(messages.gen, m.payload);
  if (attrs.id === undefined) throw new CodecError('NEWGEN without NFTA_GEN_ID');
  return attrs.id;
}
