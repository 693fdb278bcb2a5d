/**
 * XFRM (NETLINK_XFRM) message layouts, as in the kernel's include/uapi/linux/xfrm.h: the fixed
 * headers (xfrm_usersa_info, xfrm_userpolicy_info and their id forms) declared field by field with
 * their padding, and one attribute schema (XFRMA_*) shared by every message. Addresses are four
 * big-endian words (xfrm_address_t holds IPv4 in the first), u64 fields two host-order words, so a
 * header re-encodes to the bytes it was read from. Attributes are declared in the order
 * `ip xfrm` emits them. Pure.
 */
import { CodecError } from '../../errors.js';
import { attr, bytes, flag, u8, u16, u32, u64, type Attrs, type Codec, type Schema } from '../core/attr.js';
import { struct, structCodec, TAIL, type MessageDef, type WithTail } from '../core/message.js';

/** XFRM_MSG_*: the message types. */
export const XFRM_MSG = {
  NEWSA: 0x10, DELSA: 0x11, GETSA: 0x12, NEWPOLICY: 0x13, DELPOLICY: 0x14, GETPOLICY: 0x15, ALLOCSPI: 0x16, ACQUIRE: 0x17, EXPIRE: 0x18,
  UPDPOLICY: 0x19, UPDSA: 0x1a, POLEXPIRE: 0x1b, FLUSHSA: 0x1c, FLUSHPOLICY: 0x1d, NEWAE: 0x1e, GETAE: 0x1f, REPORT: 0x20, MIGRATE: 0x21,
  NEWSADINFO: 0x22, GETSADINFO: 0x23, NEWSPDINFO: 0x24, GETSPDINFO: 0x25, MAPPING: 0x26, SETDEFAULT: 0x27, GETDEFAULT: 0x28,
} as const;

const MSG_NAMES = new Map<number, string>(Object.entries(XFRM_MSG).map(([k, v]) => [v, `XFRM_MSG_${k}`]));
/** Names an XFRM message type for errors ('XFRM_MSG_NEWSA'). */
export function xfrmTypeName(t: number): string {
  if (t === 2) return 'NLMSG_ERROR';
  if (t === 3) return 'NLMSG_DONE';
  return MSG_NAMES.get(t) ?? `XFRM message ${t}`;
}

/** XFRMNLGRP_*: multicast groups, for event sockets. */
export const XFRMNLGRP = { ACQUIRE: 1, EXPIRE: 2, SA: 3, POLICY: 4, AEVENTS: 5, REPORT: 6, MIGRATE: 7, MAPPING: 8 } as const;

// ------------------------------------------------------------ fields


/** xfrm_address_t: four big-endian words named PREFIX0..PREFIX3. */
function address<P extends string>(p: P) {
  return [[`${p}0`, 'be32'], [`${p}1`, 'be32'], [`${p}2`, 'be32'], [`${p}3`, 'be32']] as const;
}

/** A __u64 as two host-order (little-endian) words, PREFIXLo then PREFIXHi: exact where a number is not. */
function u64Field<P extends string>(p: P) {
  return [[`${p}Lo`, 'u32'], [`${p}Hi`, 'u32']] as const;
}

/** struct xfrm_selector (56 bytes), its fields prefixed. */
function selector<P extends string>(p: P) {
  return [
    ...address(`${p}Daddr`),
    ...address(`${p}Saddr`),
    [`${p}Dport`, 'be16'],
    [`${p}DportMask`, 'be16'],
    [`${p}Sport`, 'be16'],
    [`${p}SportMask`, 'be16'],
    [`${p}Family`, 'u16'],
    [`${p}PrefixlenD`, 'u8'],
    [`${p}PrefixlenS`, 'u8'],
    [`${p}Proto`, 'u8'],
    [`${p}Pad1`, 'u8'],
    [`${p}Pad2`, 'u16'],
    [`${p}Ifindex`, 's32'],
    [`${p}User`, 'u32'],
  ] as const;
}

/** struct xfrm_lifetime_cfg (64 bytes): byte and packet limits, then add and use expiry times in seconds. */
const lifetimeCfg = [
  ...u64Field('softByteLimit'),
  ...u64Field('hardByteLimit'),
  ...u64Field('softPacketLimit'),
  ...u64Field('hardPacketLimit'),
  ...u64Field('softAddExpires'),
  ...u64Field('hardAddExpires'),
  ...u64Field('softUseExpires'),
  ...u64Field('hardUseExpires'),
] as const;

/** struct xfrm_lifetime_cur (32 bytes): bytes and packets so far, the times it was added and first used. */
const lifetimeCur = [...u64Field('curBytes'), ...u64Field('curPackets'), ...u64Field('curAddTime'), ...u64Field('curUseTime')] as const;

/** struct xfrm_id (24 bytes): destination, SPI, protocol. */
function xfrmId<P extends string>(p: P) {
  return [...address(`${p}Daddr`), [`${p}Spi`, 'be32'], [`${p}Proto`, 'u8'], [`${p}Pad1`, 'u8'], [`${p}Pad2`, 'u16']] as const;
}

const usersaInfoFields = [
  ...selector('sel'),
  ...xfrmId('id'),
  ...address('saddr'),
  ...lifetimeCfg,
  ...lifetimeCur,
  ['statsReplayWindow', 'u32'],
  ['statsReplay', 'u32'],
  ['statsIntegrityFailed', 'u32'],
  ['seq', 'u32'],
  ['reqid', 'u32'],
  ['family', 'u16'],
  ['mode', 'u8'],
  ['replayWindow', 'u8'],
  ['flags', 'u8'],
  // The struct is aligned to 8 bytes (its u64 fields): 7 bytes of tail padding.
  ['pad1', 'u8'],
  ['pad2', 'u16'],
  ['pad3', 'u32'],
] as const;

// ------------------------------------------------------------ headers

/** struct xfrm_usersa_info (224 bytes): a security association (NEWSA, UPDSA, and the kernel's replies). */
export const usersaInfo = struct(usersaInfoFields);
export type UsersaInfo = ReturnType<typeof usersaInfo.read>;

/** struct xfrm_userspi_info (232 bytes): ALLOCSPI's request, an SA and the SPI range to pick from. */
export const userspiInfo = struct([...usersaInfoFields, ['min', 'u32'], ['max', 'u32']] as const);
export type UserspiInfo = ReturnType<typeof userspiInfo.read>;

/** struct xfrm_usersa_id (24 bytes): names an SA for GETSA and DELSA. */
export const usersaId = struct([...address('daddr'), ['spi', 'be32'], ['family', 'u16'], ['proto', 'u8'], ['pad', 'u8']] as const);
export type UsersaId = ReturnType<typeof usersaId.read>;

/** struct xfrm_usersa_flush (1 byte): FLUSHSA's protocol (0: every one). */
export const usersaFlush = struct([['proto', 'u8']] as const);

/** struct xfrm_userpolicy_info (168 bytes): a policy (NEWPOLICY, UPDPOLICY, the kernel's replies). */
export const userpolicyInfo = struct([
  ...selector('sel'),
  ...lifetimeCfg,
  ...lifetimeCur,
  ['priority', 'u32'],
  ['index', 'u32'],
  ['dir', 'u8'],
  ['action', 'u8'],
  ['flags', 'u8'],
  ['share', 'u8'],
  ['pad', 'u32'],
] as const);
export type UserpolicyInfo = ReturnType<typeof userpolicyInfo.read>;

/** struct xfrm_userpolicy_id (64 bytes): names a policy for GETPOLICY and DELPOLICY (by selector, or by index when set). */
export const userpolicyId = struct([...selector('sel'), ['index', 'u32'], ['dir', 'u8'], ['pad1', 'u8'], ['pad2', 'u16']] as const);
export type UserpolicyId = ReturnType<typeof userpolicyId.read>;

/** No fixed header: dumps (GETSA, GETPOLICY with NLM_F_DUMP) and FLUSHPOLICY carry attributes only. */
export const noHeader = struct<never>([]);

// ------------------------------------------------------------ attribute payloads

/** struct xfrm_user_tmpl (64 bytes): one transform a policy requires. */
export const userTmpl = struct([
  ...xfrmId('id'),
  ['family', 'u16'],
  ['pad1', 'u16'],
  ...address('saddr'),
  ['reqid', 'u32'],
  ['mode', 'u8'],
  ['share', 'u8'],
  ['optional', 'u8'],
  ['pad2', 'u8'],
  ['aalgos', 'u32'],
  ['ealgos', 'u32'],
  ['calgos', 'u32'],
] as const);
export type UserTmpl = ReturnType<typeof userTmpl.read>;

/** XFRMA_TMPL: one or more templates back to back; a length that is not a whole number of them is a CodecError. */
export const tmplList: Codec<UserTmpl[]> = {
  size: (v) => userTmpl.size * v.length,
  write: (b, o, v) => v.forEach((t, i) => userTmpl.write(b, o + i * userTmpl.size, t)),
  read: (b, o, l) => {
    if (l % userTmpl.size !== 0) throw new CodecError(`XFRMA_TMPL of ${l} bytes is not a whole number of ${userTmpl.size}-byte templates`, o);
    const out: UserTmpl[] = [];
    for (let i = 0; i < l; i += userTmpl.size) out.push(userTmpl.read(b, o + i));
    return out;
  },
};

/** struct xfrm_encap_tmpl (24 bytes): UDP or TCP encapsulation (NAT traversal). */
export const encapTmpl = structCodec(struct([['type', 'u16'], ['sport', 'be16'], ['dport', 'be16'], ['pad', 'u16'], ...address('oa')] as const));
/** struct xfrm_mark: value and mask. */
export const xfrmMark = structCodec(struct([['v', 'u32'], ['m', 'u32']] as const));
/** struct xfrm_userpolicy_type (6 bytes): main or sub policy. */
export const userpolicyType = structCodec(struct([['type', 'u8'], ['pad1', 'u8'], ['reserved1', 'u16'], ['reserved2', 'u8'], ['pad2', 'u8']] as const));
/** struct xfrm_replay_state: sequence numbers and the replay bitmap. */
export const replayState = structCodec(struct([['oseq', 'u32'], ['seq', 'u32'], ['bitmap', 'u32']] as const));
/** struct xfrm_replay_state_esn (24 bytes) with its bitmap words kept as the tail. */
export const replayStateEsn = structCodec(struct([['bmpLen', 'u32'], ['oseq', 'u32'], ['seq', 'u32'], ['oseqHi', 'u32'], ['seqHi', 'u32'], ['replayWindow', 'u32']] as const));
/** struct xfrm_lifetime_cur, as XFRMA_LTIME_VAL. */
export const lifetimeCurCodec = structCodec(struct(lifetimeCur));
/** struct xfrm_address_filter (36 bytes): a dump's source and destination prefixes. */
export const addressFilter = structCodec(struct([...address('saddr'), ...address('daddr'), ['family', 'u16'], ['splen', 'u8'], ['dplen', 'u8']] as const));
/** struct xfrm_user_offload (8 bytes): the device an SA is offloaded to. */
export const userOffload = structCodec(struct([['ifindex', 's32'], ['flags', 'u8'], ['pad1', 'u8'], ['pad2', 'u16']] as const));

/** Where an algorithm keeps a name field whose bytes after the NUL were not zero, so it re-encodes unchanged. */
export const NAME_BYTES: unique symbol = Symbol('tsnetlink.xfrmAlgName');

/** struct xfrm_algo, xfrm_algo_auth and xfrm_algo_aead: a name, the key length in bits, an ICV or truncation length, the key. */
export interface XfrmAlgo extends WithTail {
  name: string;
  /** Key length in bits (the key holds ceil(keyLen / 8) bytes). */
  keyLen: number;
  /** ICV length (aead) or truncation length (auth-trunc), in bits; absent in struct xfrm_algo. */
  icvLen?: number;
  key: Buffer;
  [NAME_BYTES]?: Buffer;
}

const NAME_LEN = 64;

/** An algorithm codec; `withLen` for the structs with a second length field (auth-trunc, aead). */
function algoCodec(what: string, withLen: boolean): Codec<XfrmAlgo> {
  const head = NAME_LEN + 4 + (withLen ? 4 : 0);
  const keyBytes = (v: XfrmAlgo): number => Math.ceil(v.keyLen / 8);
  return {
    size: (v) => head + keyBytes(v) + (v[TAIL]?.length ?? 0),
    write: (b, o, v) => {
      const raw = v[NAME_BYTES];
      if (raw && raw.toString('latin1').replace(/\0.*$/s, '') === Buffer.from(v.name).toString('latin1')) raw.copy(b, o, 0, NAME_LEN);
      else b.write(v.name, o, NAME_LEN - 1, 'utf8');
      b.writeUInt32LE(v.keyLen >>> 0, o + NAME_LEN);
      if (withLen) b.writeUInt32LE((v.icvLen ?? 0) >>> 0, o + NAME_LEN + 4);
      v.key.copy(b, o + head, 0, keyBytes(v));
      v[TAIL]?.copy(b, o + head + keyBytes(v));
    },
    read: (b, o, l) => {
      if (l < head) throw new CodecError(`${what}: ${l} bytes, needs at least ${head}`, o);
      const keyLen = b.readUInt32LE(o + NAME_LEN);
      const n = Math.ceil(keyLen / 8);
      // The key length comes from the wire: it must fit in the attribute, whatever it claims.
      if (n > l - head) throw new CodecError(`${what}: a ${keyLen}-bit key does not fit in ${l - head} bytes`, o);
      const nameField = b.subarray(o, o + NAME_LEN);
      const nul = nameField.indexOf(0);
      const v: XfrmAlgo = { name: nameField.toString('utf8', 0, nul < 0 ? NAME_LEN : nul), keyLen, key: b.subarray(o + head, o + head + n) };
      if (withLen) v.icvLen = b.readUInt32LE(o + NAME_LEN + 4);
      if (nul < 0 || nameField.subarray(nul).some((x) => x !== 0)) v[NAME_BYTES] = nameField;
      if (l > head + n) v[TAIL] = b.subarray(o + head + n, o + l);
      return v;
    },
  };
}

/** struct xfrm_algo (XFRMA_ALG_AUTH, XFRMA_ALG_CRYPT, XFRMA_ALG_COMP). */
export const xfrmAlgo = algoCodec('xfrm_algo', false);
/** struct xfrm_algo_auth (XFRMA_ALG_AUTH_TRUNC): icvLen is the truncation length. */
export const xfrmAlgoAuth = algoCodec('xfrm_algo_auth', true);
/** struct xfrm_algo_aead (XFRMA_ALG_AEAD): icvLen is the ICV length. */
export const xfrmAlgoAead = algoCodec('xfrm_algo_aead', true);

// ------------------------------------------------------------ attributes

/**
 * XFRMA_*: every attribute of every XFRM message, in the order `ip xfrm` emits them (state: the
 * algorithms, encap and coa as given on its command line, then the replay state, extra flags,
 * mark, if_id, tfcpad, output mark; policy: ptype, templates, mark, if_id; dump filters: proto,
 * then the address filter). Kernel replies keep their own order.
 */
export const xfrmAttrs = {
  policyType: attr(16, userpolicyType),
  srcaddr: attr(13, bytes),
  algAuth: attr(1, xfrmAlgo),
  algAuthTrunc: attr(20, xfrmAlgoAuth),
  algCrypt: attr(2, xfrmAlgo),
  algAead: attr(18, xfrmAlgoAead),
  algComp: attr(3, xfrmAlgo),
  encap: attr(4, encapTmpl),
  coaddr: attr(14, bytes),
  secCtx: attr(8, bytes),
  tmpl: attr(5, tmplList),
  proto: attr(25, u8),
  addressFilter: attr(26, addressFilter),
  replayEsnVal: attr(23, replayStateEsn),
  replayVal: attr(10, replayState),
  saExtraFlags: attr(24, u32),
  mark: attr(21, xfrmMark),
  ifId: attr(31, u32),
  tfcpad: attr(22, u32),
  setMark: attr(29, u32),
  setMarkMask: attr(30, u32),
  offloadDev: attr(28, userOffload),
  // Carried by events and other messages; kept typed where the layout is plain.
  sa: attr(6, bytes),
  policy: attr(7, bytes),
  ltimeVal: attr(9, lifetimeCurCodec),
  replayThresh: attr(11, u32),
  etimerThresh: attr(12, u32),
  lastused: attr(15, u64),
  migrate: attr(17, bytes),
  kmaddress: attr(19, bytes),
  pad: attr(27, bytes),
  mtimerThresh: attr(32, u32),
  saDir: attr(33, u8),
  natKeepaliveInterval: attr(34, u32),
  saPcpu: attr(35, u32),
  iptfsDropTime: attr(36, u32),
  iptfsReorderWindow: attr(37, u16),
  iptfsDontFrag: attr(38, flag),
  iptfsInitDelay: attr(39, u32),
  iptfsMaxQsize: attr(40, u32),
  iptfsPktSize: attr(41, u32),
} as const satisfies Schema;
export type XfrmAttrs = Attrs<typeof xfrmAttrs>;

/** The messages, by fixed header. */
export const saInfoMessage: MessageDef<keyof UsersaInfo, typeof xfrmAttrs> = { header: usersaInfo, attrs: xfrmAttrs };
export const spiInfoMessage: MessageDef<keyof UserspiInfo, typeof xfrmAttrs> = { header: userspiInfo, attrs: xfrmAttrs };
export const saIdMessage: MessageDef<keyof UsersaId, typeof xfrmAttrs> = { header: usersaId, attrs: xfrmAttrs };
export const saFlushMessage: MessageDef<'proto', typeof xfrmAttrs> = { header: usersaFlush, attrs: xfrmAttrs };
export const policyInfoMessage: MessageDef<keyof UserpolicyInfo, typeof xfrmAttrs> = { header: userpolicyInfo, attrs: xfrmAttrs };
export const policyIdMessage: MessageDef<keyof UserpolicyId, typeof xfrmAttrs> = { header: userpolicyId, attrs: xfrmAttrs };
export const bareMessage: MessageDef<never, typeof xfrmAttrs> = { header: noHeader, attrs: xfrmAttrs };

/**
 * The definition of a message by its type and length, for tools that describe messages: which
 * fixed header a request or a reply carries (a dump request has none; FLUSHSA has one byte).
 */
export function xfrmDefOf(type: number, payloadLength: number, dump = false): MessageDef<string, Schema> | undefined {
  const M = XFRM_MSG;
  let d: MessageDef<string, Schema> | undefined;
  if (type === M.NEWSA || type === M.UPDSA) d = saInfoMessage;
  else if (type === M.ALLOCSPI) d = spiInfoMessage;
  else if (type === M.DELSA || type === M.GETSA) d = dump ? bareMessage : saIdMessage;
  else if (type === M.FLUSHSA) d = saFlushMessage;
  else if (type === M.NEWPOLICY || type === M.UPDPOLICY) d = policyInfoMessage;
  else if (type === M.DELPOLICY || type === M.GETPOLICY) d = dump ? bareMessage : policyIdMessage;
  else if (type === M.FLUSHPOLICY) d = bareMessage;
  return d && payloadLength >= d.header.size ? d : undefined;
}

/** A u64 from its two words (PREFIXLo, PREFIXHi) in a decoded header. */
export function joinU64(h: Readonly<Record<string, number>>, p: string): bigint {
  return (BigInt(h[`${p}Hi`] ?? 0) << 32n) | BigInt(h[`${p}Lo`] ?? 0);
}

/** Writes a u64 into the two words of a header being built. */
export function splitU64(h: Record<string, number>, p: string, v: bigint): void {
  h[`${p}Lo`] = Number(v & 0xffffffffn);
  h[`${p}Hi`] = Number((v >> 32n) & 0xffffffffn);
}

