/**
 * XFRM states (security associations), as `ip xfrm state` manages them: specs in ip's terms
 * become NEWSA, UPDSA, ALLOCSPI, DELSA, GETSA and FLUSHSA requests byte for byte like iproute2's,
 * and the kernel's SA messages decode into typed XfrmState objects. Pure.
 */
import { CodecError, ValidationError } from '../../errors.js';
import { decodePayload, request, type RawMessage, type Request } from '../core/message.js';
import { validateU32 } from '../core/validate.js';
import { parseCidr } from '../../ip/parse.js';
import { XFRM_MSG, bareMessage, saFlushMessage, saIdMessage, saInfoMessage, spiInfoMessage, type UsersaInfo, type XfrmAttrs } from './xfrm-schema.js';
import {
  XFRM_ENCAP, XFRM_MODE, XFRM_PROTO, XFRM_SA_XFLAG, XFRM_STATE_FLAG, addressBytes, algo, familyNumber, familyOf, flagNames, flagsOf, getAddress, getCurrent, getLifetime, getSelector, markOf, nameOf, numberOf,
  putAddress, putLifetime, putSelector,
  type Header, type XfrmCurrent, type XfrmEncapType, type XfrmExtraFlag, type XfrmKey, type XfrmLifetime, type XfrmLifetimeSpec, type XfrmMarkSpec, type XfrmMode, type XfrmProto, type XfrmSelector, type XfrmSelectorSpec, type XfrmStateFlag,
} from './xfrm-spec.js';

/** Identifies an SA: destination, protocol and SPI (and its mark when it has one). */
export interface XfrmStateId {
  /** Sent as XFRMA_SRCADDR, as `ip xfrm state delete src ...` does; the kernel looks IPsec SAs up by SPI. */
  src?: string;
  dst: string;
  proto: XfrmProto | number;
  spi: number;
  mark?: XfrmMarkSpec;
}

/** An SA to add or update: `ip xfrm state add ID [ALGO-LIST] [mode MODE] ...`. */
export interface XfrmStateSpec {
  src: string;
  dst: string;
  proto: XfrmProto | number;
  spi: number;
  mode?: XfrmMode;
  reqid?: number;
  seq?: number;
  replayWindow?: number;
  flags?: readonly XfrmStateFlag[];
  extraFlags?: readonly XfrmExtraFlag[];
  /** `auth NAME KEY`, or `auth-trunc NAME KEY BITS` when truncLen is given. */
  auth?: { name: string; key: XfrmKey; truncLen?: number };
  /** `enc NAME KEY`. */
  enc?: { name: string; key: XfrmKey };
  /** `aead NAME KEY ICV-BITS`. */
  aead?: { name: string; key: XfrmKey; icvLen: number };
  /** `comp NAME`. */
  comp?: { name: string };
  /** `encap TYPE SPORT DPORT OADDR` (NAT traversal). */
  encap?: { type: XfrmEncapType; sport: number; dport: number; oa?: string };
  /** `coa ADDR` (care-of address, for route2 and hao). */
  coa?: string;
  sel?: XfrmSelectorSpec;
  lifetime?: XfrmLifetimeSpec;
  mark?: XfrmMarkSpec;
  /** `output-mark MARK [mask MASK]`: the mark set on packets the SA outputs. */
  outputMark?: XfrmMarkSpec;
  /** `if_id ID`: binds the SA to xfrm interfaces with this id. */
  ifId?: number;
  /** `tfcpad LENGTH`. */
  tfcpad?: number;
}

/** The SA part shared by NEWSA and ALLOCSPI: addresses, protocol, SPI, mode, reqid, sequence. */
function putSaBase(h: Header, s: Pick<XfrmStateSpec, 'src' | 'dst' | 'proto' | 'mode' | 'reqid' | 'seq'> & { spi?: number }): void {
  const fs = putAddress(h, 'saddr', s.src, 'src');
  const fd = putAddress(h, 'idDaddr', s.dst, 'dst');
  if (fs !== fd) throw new ValidationError('dst', 'src and dst are of different families');
  h['family'] = familyNumber(fd);
  h['idProto'] = numberOf(XFRM_PROTO, s.proto, 'proto');
  if (s.spi !== undefined) h['idSpi'] = validateU32(s.spi, 'spi');
  if (s.mode !== undefined) h['mode'] = numberOf(XFRM_MODE, s.mode, 'mode');
  if (s.reqid !== undefined) h['reqid'] = validateU32(s.reqid, 'reqid');
  if (s.seq !== undefined) h['seq'] = validateU32(s.seq, 'seq');
}

function stateRequest(type: number, s: XfrmStateSpec): Request {
  const h: Header = {};
  putSaBase(h, s);
  putSelector(h, s.sel, 0);
  putLifetime(h, s.lifetime);
  const window = s.replayWindow === undefined ? 0 : validateU32(s.replayWindow, 'replayWindow', 0, 4096);
  h['flags'] = flagsOf(XFRM_STATE_FLAG, s.flags, 'flag');
  const a: XfrmAttrs = {};
  if (s.auth) {
    if (s.auth.truncLen !== undefined) a.algAuthTrunc = algo(s.auth.name, s.auth.key, 'auth', s.auth.truncLen);
    else a.algAuth = algo(s.auth.name, s.auth.key, 'auth');
  }
  if (s.enc) a.algCrypt = algo(s.enc.name, s.enc.key, 'enc');
  if (s.aead) a.algAead = algo(s.aead.name, s.aead.key, 'aead', s.aead.icvLen);
  if (s.comp) a.algComp = algo(s.comp.name, undefined, 'comp');
  if (s.encap) {
    const e: Header = { type: numberOf(XFRM_ENCAP, s.encap.type, 'encap.type'), sport: validateU32(s.encap.sport, 'encap.sport', 0, 65535), dport: validateU32(s.encap.dport, 'encap.dport', 0, 65535) };
    putAddress(e, 'oa', s.encap.oa ?? '0.0.0.0', 'encap.oa');
    a.encap = e as unknown as NonNullable<XfrmAttrs['encap']>;
  }
  if (s.coa !== undefined) a.coaddr = addressBytes(s.coa, 'coa');
  // As iproute2: a window wider than the 32-bit bitmap (or the esn flag) takes the ESN replay state.
  if ((h['flags'] & XFRM_STATE_FLAG.esn) !== 0 || window > 32) {
    a.replayEsnVal = { bmpLen: Math.ceil(window / 32), oseq: 0, seq: 0, oseqHi: 0, seqHi: 0, replayWindow: window };
  } else h['replayWindow'] = window;
  const xf = flagsOf(XFRM_SA_XFLAG, s.extraFlags, 'extraFlags');
  if (xf) a.saExtraFlags = xf;
  if (s.mark) a.mark = markOf(s.mark, 'mark');
  if (s.ifId !== undefined) a.ifId = validateU32(s.ifId, 'ifId');
  if (s.tfcpad !== undefined) a.tfcpad = validateU32(s.tfcpad, 'tfcpad');
  if (s.outputMark) {
    const m = markOf(s.outputMark, 'outputMark');
    a.setMark = m.v;
    a.setMarkMask = m.m;
  }
  return request(saInfoMessage, type, 0, h, a);
}

/** ip xfrm state add ID [ALGO-LIST] [mode MODE] [reqid N] [sel SELECTOR] [LIMIT-LIST] [encap ...] [mark M] [if_id N] */
export function addStateRequest(s: XfrmStateSpec): Request {
  return stateRequest(XFRM_MSG.NEWSA, s);
}
/** ip xfrm state update ID ... (replaces the SA with this ID) */
export function updateStateRequest(s: XfrmStateSpec): Request {
  return stateRequest(XFRM_MSG.UPDSA, s);
}

/** An SPI to allocate: a larval SA that holds it until the SA is added with update. */
export interface XfrmAllocSpiSpec {
  src: string;
  dst: string;
  proto: XfrmProto | number;
  mode?: XfrmMode;
  reqid?: number;
  seq?: number;
  mark?: XfrmMarkSpec;
  /** Binds the SA to xfrm interfaces with this id (the kernel takes it; iproute2 6.1 cannot send it). */
  ifId?: number;
  /** The range to pick from (default 0x100..0x0fffffff; 0x100..0xffff for comp). */
  min?: number;
  max?: number;
}

/** ip xfrm state allocspi ID [mode MODE] [mark MARK [mask MASK]] [reqid N] [seq N] [min SPI max SPI] (and an if_id, which the kernel takes) */
export function allocSpiRequest(s: XfrmAllocSpiSpec): Request {
  const h: Header = {};
  putSaBase(h, s);
  if ((s.min === undefined) !== (s.max === undefined)) throw new ValidationError('min', 'give both min and max, or neither');
  const comp = numberOf(XFRM_PROTO, s.proto, 'proto') === XFRM_PROTO.comp;
  h['min'] = s.min === undefined ? 0x100 : validateU32(s.min, 'min');
  h['max'] = s.max === undefined ? (comp ? 0xffff : 0x0fffffff) : validateU32(s.max, 'max');
  if (h['min'] > h['max']) throw new ValidationError('min', 'is larger than max');
  const a: XfrmAttrs = {};
  // iproute2 sends the mark only when value and mask share a bit.
  if (s.mark) {
    const m = markOf(s.mark, 'mark');
    if ((m.v & m.m) !== 0) a.mark = m;
  }
  if (s.ifId !== undefined) a.ifId = validateU32(s.ifId, 'ifId');
  return request(spiInfoMessage, XFRM_MSG.ALLOCSPI, 0, h, a);
}

function saIdRequest(type: number, id: XfrmStateId): Request {
  const h: Header = {};
  h['family'] = familyNumber(putAddress(h, 'daddr', id.dst, 'dst'));
  h['spi'] = validateU32(id.spi, 'spi');
  h['proto'] = numberOf(XFRM_PROTO, id.proto, 'proto');
  const a: XfrmAttrs = {};
  if (id.src !== undefined) a.srcaddr = addressBytes(id.src, 'src');
  if (id.mark) a.mark = markOf(id.mark, 'mark');
  return request(saIdMessage, type, 0, h, a);
}
/** ip xfrm state delete ID [mark MARK [mask MASK]] */
export function deleteStateRequest(id: XfrmStateId): Request {
  return saIdRequest(XFRM_MSG.DELSA, id);
}
/** ip xfrm state get ID [mark MARK [mask MASK]] */
export function getStateRequest(id: XfrmStateId): Request {
  return saIdRequest(XFRM_MSG.GETSA, id);
}

/** What a state dump asks the kernel for: one protocol and/or prefixes of both ends. */
export interface XfrmStateFilter {
  proto?: XfrmProto | number;
  /** Source and destination prefixes: the kernel dumps only SAs within both. */
  src?: string;
  dst?: string;
}

/** ip xfrm state list [proto P] (a GETSA dump with iproute2's address filter, which matches every SA unless prefixes are given) */
export function dumpStateRequest(f: XfrmStateFilter = {}): Request {
  const a: XfrmAttrs = {};
  if (f.proto !== undefined) a.proto = numberOf(XFRM_PROTO, f.proto, 'proto');
  const filter: Header = { family: 0, splen: 0, dplen: 0 };
  for (const [k, w] of [['src', 'saddr'], ['dst', 'daddr']] as const) {
    const v = f[k];
    if (v === undefined) continue;
    const c = parseCidr(v, k);
    const af = familyNumber(putAddress(filter, w, c.address, k));
    if (filter['family'] && filter['family'] !== af) throw new ValidationError(k, 'src and dst are of different families');
    filter['family'] = af;
    filter[k === 'src' ? 'splen' : 'dplen'] = c.prefix;
  }
  a.addressFilter = filter as unknown as NonNullable<XfrmAttrs['addressFilter']>;
  return request(bareMessage, XFRM_MSG.GETSA, 0, {}, a);
}

/** ip xfrm state flush [proto P] */
export function flushStateRequest(proto?: XfrmProto | number): Request {
  return request(saFlushMessage, XFRM_MSG.FLUSHSA, 0, { proto: proto === undefined ? 0 : numberOf(XFRM_PROTO, proto, 'proto') });
}

/** An SA as the kernel reports it (`ip xfrm state list`). */
export interface XfrmState {
  family: 4 | 6 | number;
  src: string;
  dst: string;
  proto: XfrmProto | number;
  spi: number;
  mode: XfrmMode | number;
  reqid: number;
  seq: number;
  replayWindow: number;
  flags: (XfrmStateFlag | number)[];
  selector: XfrmSelector;
  lifetime: XfrmLifetime;
  current: XfrmCurrent;
  stats: { replayWindow: number; replay: number; integrityFailed: number };
  auth?: { name: string; key: Buffer; keyLen: number; truncLen?: number };
  enc?: { name: string; key: Buffer; keyLen: number };
  aead?: { name: string; key: Buffer; keyLen: number; icvLen: number };
  comp?: { name: string };
  encap?: { type: XfrmEncapType | number; sport: number; dport: number; oa: string };
  coa?: string;
  mark?: { value: number; mask: number };
  outputMark?: { value: number; mask: number };
  ifId?: number;
  tfcpad?: number;
  extraFlags?: (XfrmExtraFlag | number)[];
  /** Seconds since the epoch of its last use. */
  lastUsed?: bigint;
  raw: { header: UsersaInfo; attrs: XfrmAttrs };
}

function addressFrom(b: Buffer | undefined, family: number): string | undefined {
  if (!b) return undefined;
  if (b.length !== 16) throw new CodecError(`xfrm_address_t of ${b.length} bytes`);
  const h: Header = {};
  for (let i = 0; i < 4; i++) h[`a${i}`] = b.readUInt32BE(4 * i);
  return getAddress(h, 'a', family);
}

/** Decodes an SA message (XFRM_MSG_NEWSA, UPDSA, DELSA as events); a short or malformed one is a CodecError. */
export function decodeState(m: RawMessage): XfrmState {
  const { header: h, attrs: a } = decodePayload(saInfoMessage, m.payload);
  const f = h.family;
  const s: XfrmState = {
    family: familyOf(f),
    src: getAddress(h, 'saddr', f),
    dst: getAddress(h, 'idDaddr', f),
    proto: nameOf(XFRM_PROTO, h.idProto),
    spi: h.idSpi,
    mode: nameOf(XFRM_MODE, h.mode),
    reqid: h.reqid,
    seq: h.seq,
    replayWindow: h.replayWindow,
    flags: flagNames(XFRM_STATE_FLAG, h.flags),
    selector: getSelector(h, f),
    lifetime: getLifetime(h),
    current: getCurrent(h),
    stats: { replayWindow: h.statsReplayWindow, replay: h.statsReplay, integrityFailed: h.statsIntegrityFailed },
    raw: { header: h, attrs: a },
  };
  // The kernel reports an auth algorithm twice: as xfrm_algo and with its truncation length.
  const auth = a.algAuthTrunc ?? a.algAuth;
  if (auth) {
    s.auth = { name: auth.name, key: auth.key, keyLen: auth.keyLen };
    if (a.algAuthTrunc?.icvLen !== undefined) s.auth.truncLen = a.algAuthTrunc.icvLen;
  }
  if (a.algCrypt) s.enc = { name: a.algCrypt.name, key: a.algCrypt.key, keyLen: a.algCrypt.keyLen };
  if (a.algAead) s.aead = { name: a.algAead.name, key: a.algAead.key, keyLen: a.algAead.keyLen, icvLen: a.algAead.icvLen ?? 0 };
  if (a.algComp) s.comp = { name: a.algComp.name };
  if (a.encap) s.encap = { type: nameOf(XFRM_ENCAP, a.encap.type), sport: a.encap.sport, dport: a.encap.dport, oa: getAddress(a.encap, 'oa', f) };
  const coa = addressFrom(a.coaddr, f);
  if (coa !== undefined) s.coa = coa;
  if (a.mark) s.mark = { value: a.mark.v, mask: a.mark.m };
  if (a.setMark !== undefined) s.outputMark = { value: a.setMark, mask: a.setMarkMask ?? 0xffffffff };
  if (a.ifId !== undefined) s.ifId = a.ifId;
  if (a.tfcpad !== undefined) s.tfcpad = a.tfcpad;
  if (a.saExtraFlags !== undefined) s.extraFlags = flagNames(XFRM_SA_XFLAG, a.saExtraFlags);
  if (a.lastused !== undefined) s.lastUsed = a.lastused;
  return s;
}
