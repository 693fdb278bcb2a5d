/**
 * unix_diag: the UNIX domain sockets of a netns, as `ss -x` lists them. A request is
 * SOCK_DIAG_BY_FAMILY with struct unix_diag_req (AF_UNIX, a bitmask of states, an inode to look
 * up, what to show); each reply is struct unix_diag_msg (type, state, inode) plus the UNIX_DIAG_*
 * attributes asked for: the bound name, the peer's inode, the pending connections of a listener,
 * the queues, the owner's uid. Pure codec and typed view; SockDiagOps runs the dump.
 */
import { CodecError, ValidationError } from '../../errors.js';
import { attr, bytes, u8, u32, type Attrs, type Schema } from '../core/attr.js';
import { request, struct, decodePayload, type MessageDef, type RawMessage, type Request } from '../core/message.js';
import { SOCK_DIAG_BY_FAMILY, STATE_NAMES, stateMask, type SocketState } from './common.js';

/** AF_UNIX. */
export const AF_UNIX = 1;

/** SOCK_* types a UNIX socket has. */
export const UNIX_TYPE = { stream: 1, dgram: 2, seqpacket: 5 } as const;
export type UnixSocketType = keyof typeof UNIX_TYPE;
const TYPE_NAMES = new Map<number, UnixSocketType>(Object.entries(UNIX_TYPE).map(([k, v]) => [v, k as UnixSocketType]));

/** UDIAG_SHOW_*: the attributes a reply carries when asked for. */
export const UDIAG_SHOW = { name: 0x1, vfs: 0x2, peer: 0x4, icons: 0x8, rqlen: 0x10, meminfo: 0x20, uid: 0x40 } as const;
export type UnixShow = keyof typeof UDIAG_SHOW;

/** struct unix_diag_req (24 bytes). */
export const unixDiagReq = struct([
  ['family', 'u8'],
  ['protocol', 'u8'],
  ['pad', 'u16'],
  ['states', 'u32'],
  ['ino', 'u32'],
  ['show', 'u32'],
  ['cookie0', 'u32'],
  ['cookie1', 'u32'],
] as const);
export type UnixDiagReq = ReturnType<typeof unixDiagReq.read>;

/** struct unix_diag_msg (16 bytes). */
export const unixDiagMsg = struct([
  ['family', 'u8'],
  ['type', 'u8'],
  ['state', 'u8'],
  ['pad', 'u8'],
  ['ino', 'u32'],
  ['cookie0', 'u32'],
  ['cookie1', 'u32'],
] as const);
export type UnixDiagMsg = ReturnType<typeof unixDiagMsg.read>;

/**
 * UNIX_DIAG_*: a reply's attributes. The name is the bound path without a NUL (an abstract name
 * starts with one), kept as bytes; the vfs pair, the pending connections and the queue lengths
 * are arrays of u32 in host order, decoded by the typed view.
 */
export const unixDiagAttrs = {
  name: attr(0, bytes),
  vfs: attr(1, bytes),
  peer: attr(2, u32),
  icons: attr(3, bytes),
  rqlen: attr(4, bytes),
  meminfo: attr(5, bytes),
  shutdown: attr(6, u8),
  uid: attr(7, u32),
} as const satisfies Schema;
export type UnixDiagAttrs = Attrs<typeof unixDiagAttrs>;

/** The request has no attributes of its own. */
const noAttrs = {} as const satisfies Schema;
export const unixDiagRequestMessage: MessageDef<keyof UnixDiagReq, typeof noAttrs> = { header: unixDiagReq, attrs: noAttrs };
export const unixDiagMessage: MessageDef<keyof UnixDiagMsg, typeof unixDiagAttrs> = { header: unixDiagMsg, attrs: unixDiagAttrs };

/** What to list. */
export interface UnixQuery {
  /** States to dump (default: every state, as `ss -xa` asks): 'listen', 'established' (connected), 'close' (unconnected). */
  states?: readonly SocketState[];
  /** Keep only sockets of these types (filtered here, after the dump; default: all). */
  types?: readonly UnixSocketType[];
  /** Attributes to ask for (default: name, vfs, peer, icons, rqlen, uid). */
  show?: readonly UnixShow[];
  /** Keep only sockets bound to this name (a path, or "@name" for an abstract one). */
  name?: string;
}

/** A UNIX socket as unix_diag reports it. */
export interface UnixSocket {
  type: UnixSocketType | number;
  /** 'listen', 'established' (connected), 'close' (unconnected), ...; its number when unknown. */
  state: SocketState | number;
  inode: number;
  /** The bound name: a path, "@name" for an abstract name (ss's notation), undefined when unbound or not asked. */
  name?: string;
  /** The inode of the connected peer (UDIAG_SHOW_PEER), when it has one. */
  peer?: number;
  /** The file a path-bound socket is (UDIAG_SHOW_VFS): its inode and device. */
  vfs?: { inode: number; dev: number };
  /** A listener's pending connections (UDIAG_SHOW_ICONS): their inodes. */
  pending?: number[];
  /** Bytes queued to receive and to send; for a listener, its accept queue and backlog (UDIAG_SHOW_RQLEN). */
  rqueue?: number;
  wqueue?: number;
  /** The creator's uid (UDIAG_SHOW_UID). */
  uid?: number;
  raw: { header: UnixDiagMsg; attrs: UnixDiagAttrs };
}

/** ss's state mask for UNIX sockets: bits 0-11. */
const ALL_STATES = 0xfff;
const DEFAULT_SHOW: readonly UnixShow[] = ['name', 'vfs', 'peer', 'icons', 'rqlen', 'uid'];

/** The UDIAG_SHOW_* bitmask of `show`. */
export function showMask(show: readonly UnixShow[]): number {
  let mask = 0;
  for (const s of show) {
    const bit = UDIAG_SHOW[s];
    if (bit === undefined) throw new ValidationError('show', `unknown unix_diag attribute ${JSON.stringify(s)}; one of ${Object.keys(UDIAG_SHOW).join(', ')}`);
    mask |= bit;
  }
  return mask;
}

/** ss -xa (a SOCK_DIAG_BY_FAMILY dump request for AF_UNIX; NLM_F_DUMP is added by the socket) */
export function unixDumpRequest(q: UnixQuery = {}): Request {
  if (q.types !== undefined) for (const t of q.types) if (UNIX_TYPE[t] === undefined) throw new ValidationError('types', `unknown UNIX socket type ${JSON.stringify(t)}; one of ${Object.keys(UNIX_TYPE).join(', ')}`);
  if (q.name !== undefined && (typeof q.name !== 'string' || q.name === '' || q.name.includes('\0'))) throw new ValidationError('name', 'must be a path or "@name", without NUL');
  const states = q.states === undefined ? ALL_STATES : stateMask(q.states);
  return request(unixDiagRequestMessage, SOCK_DIAG_BY_FAMILY, 0, { family: AF_UNIX, states, show: showMask(q.show ?? DEFAULT_SHOW) });
}

/** u32 words in host order of an attribute whose length must be a multiple of 4. */
function words(b: Buffer, what: string): number[] {
  if (b.length % 4 !== 0) throw new CodecError(`${what}: ${b.length} bytes, not a whole number of u32`);
  const out: number[] = [];
  for (let o = 0; o < b.length; o += 4) out.push(b.readUInt32LE(o));
  return out;
}

/**
 * The name as ss prints it: a path up to its first NUL (a binder may count the terminating NUL in
 * its address length, and the kernel keeps it), an abstract name (leading NUL) with every NUL
 * shown as "@".
 */
function nameText(b: Buffer): string {
  if (b[0] === 0) return b.toString('utf8').replaceAll('\0', '@');
  const end = b.indexOf(0);
  return b.subarray(0, end === -1 ? b.length : end).toString('utf8');
}

/** Decodes one unix_diag_msg; a payload shorter than the struct or a bad attribute is a CodecError. */
export function decodeUnixSocket(m: RawMessage): UnixSocket {
  const { header, attrs } = decodePayload(unixDiagMessage, m.payload);
  if (header.family !== AF_UNIX) throw new CodecError(`unix_diag_msg of address family ${header.family}`);
  const s: UnixSocket = { type: TYPE_NAMES.get(header.type) ?? header.type, state: STATE_NAMES.get(header.state) ?? header.state, inode: header.ino, raw: { header, attrs } };
  if (attrs.name !== undefined && attrs.name.length > 0) s.name = nameText(attrs.name);
  if (attrs.peer !== undefined && attrs.peer !== 0) s.peer = attrs.peer;
  if (attrs.vfs !== undefined) {
    const [inode, dev] = words(attrs.vfs, 'UNIX_DIAG_VFS');
    if (inode === undefined || dev === undefined) throw new CodecError('UNIX_DIAG_VFS shorter than its two u32');
    s.vfs = { inode, dev };
  }
  if (attrs.icons !== undefined) s.pending = words(attrs.icons, 'UNIX_DIAG_ICONS');
  if (attrs.rqlen !== undefined) {
    const [r, w] = words(attrs.rqlen, 'UNIX_DIAG_RQLEN');
    if (r === undefined || w === undefined) throw new CodecError('UNIX_DIAG_RQLEN shorter than its two u32');
    s.rqueue = r;
    s.wqueue = w;
  }
  if (attrs.uid !== undefined) s.uid = attrs.uid;
  return s;
}

/** Whether a decoded socket passes the query's filters that the kernel does not apply (type, name). */
export function unixMatches(s: UnixSocket, q: UnixQuery): boolean {
  if (q.types !== undefined && !q.types.some((t) => UNIX_TYPE[t] === s.raw.header.type)) return false;
  return q.name === undefined || s.name === q.name;
}
