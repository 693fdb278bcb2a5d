/**
 * Socket diagnostics (NETLINK_SOCK_DIAG, inet_diag): which TCP and UDP sockets a netns has, as
 * `ss` lists them. A request is SOCK_DIAG_BY_FAMILY with struct inet_diag_req_v2 (family,
 * protocol, extensions, a bitmask of TCP states, a socket id); each reply is struct
 * inet_diag_msg (state, ports, addresses, queues, uid, inode) plus INET_DIAG_* attributes.
 * Codec and typed views are pure; SockDiagOps holds the dumps, which SockDiag runs synchronously
 * and SockDiag.promises asynchronously; socketOwners maps inodes to the processes holding them
 * through /proc.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { CodecError, ValidationError } from '../../errors.js';
import { attr, bytes, strz, u8, u16, u32, u64, type Attrs, type Schema } from '../core/attr.js';
import { NETLINK, messageTypeName } from '../core/constants.js';
import { readIp } from '../core/codecs.js';
import { ipBytes } from '../../ip/bytes.js';
import { decodePayload, request, struct, type MessageDef, type RawMessage, type Request } from '../core/message.js';
import { NetlinkSocket, type DumpList, type DumpOptions, type SocketOptions } from '../core/socket.js';
import { validateU32 } from '../core/validate.js';
import { SOCK_DIAG_BY_FAMILY, STATE_NAMES, stateMask, type SocketState } from './common.js';
import { decodeUnixSocket, unixDumpRequest, unixMatches, type UnixQuery, type UnixSocket } from './unix.js';
import { dumpOp, type Op } from '../core/op.js';
import { defineOperations, operationNames, PromiseHandle, SyncHandle, type PromiseMethods, type SyncMethods } from '../core/op-handle.js';

/** IPPROTO_* numbers of the protocols socketList asks for. */
export const IPPROTO = { tcp: 6, udp: 17 } as const;
export type SocketProtocol = keyof typeof IPPROTO;

export { SOCK_DIAG_BY_FAMILY, TCP_STATE, stateMask, type SocketState } from './common.js';

/** The struct inet_diag_sockid fields, in wire order; the ports and addresses are big-endian. */
const sockidFields = [
  ['sport', 'be16'],
  ['dport', 'be16'],
  ['src0', 'be32'],
  ['src1', 'be32'],
  ['src2', 'be32'],
  ['src3', 'be32'],
  ['dst0', 'be32'],
  ['dst1', 'be32'],
  ['dst2', 'be32'],
  ['dst3', 'be32'],
  ['if', 'u32'],
  ['cookie0', 'u32'],
  ['cookie1', 'u32'],
] as const;

/** struct inet_diag_req_v2: what to dump (56 bytes). */
export const inetDiagReqV2 = struct([['family', 'u8'], ['protocol', 'u8'], ['ext', 'u8'], ['pad', 'u8'], ['states', 'u32'], ...sockidFields] as const);
export type InetDiagReqV2 = ReturnType<typeof inetDiagReqV2.read>;

/** struct inet_diag_msg: one socket (72 bytes). */
export const inetDiagMsg = struct([
  ['family', 'u8'],
  ['state', 'u8'],
  ['timer', 'u8'],
  ['retrans', 'u8'],
  ...sockidFields,
  ['expires', 'u32'],
  ['rqueue', 'u32'],
  ['wqueue', 'u32'],
  ['uid', 'u32'],
  ['inode', 'u32'],
] as const);
export type InetDiagMsg = ReturnType<typeof inetDiagMsg.read>;

/** INET_DIAG_REQ_*: the request's attributes (a filter program, the protocol beyond 255). */
export const inetDiagReqAttrs = {
  bytecode: attr(1, bytes),
  skBpfStorages: attr(2, bytes),
  protocol: attr(3, u32),
} as const satisfies Schema;

/**
 * INET_DIAG_*: a reply's attributes. Structs the kernel grows over time (tcp_info, meminfo,
 * congestion-control state) are kept as bytes; attributes not named here go to `unknown`.
 */
export const inetDiagAttrs = {
  meminfo: attr(1, bytes),
  info: attr(2, bytes),
  vegasinfo: attr(3, bytes),
  cong: attr(4, strz),
  tos: attr(5, u8),
  tclass: attr(6, u8),
  skmeminfo: attr(7, bytes),
  shutdown: attr(8, u8),
  dctcpinfo: attr(9, bytes),
  protocol: attr(10, u8),
  skv6only: attr(11, u8),
  locals: attr(12, bytes),
  peers: attr(13, bytes),
  mark: attr(15, u32),
  bbrinfo: attr(16, bytes),
  classId: attr(17, u32),
  md5sig: attr(18, bytes),
  ulpInfo: attr(19, bytes),
  skBpfStorages: attr(20, bytes),
  cgroupId: attr(21, u64),
  sockopt: attr(22, u16),
} as const satisfies Schema;
export type InetDiagAttrs = Attrs<typeof inetDiagAttrs>;

export const inetDiagRequestMessage: MessageDef<keyof InetDiagReqV2, typeof inetDiagReqAttrs> = { header: inetDiagReqV2, attrs: inetDiagReqAttrs };
export const inetDiagMessage: MessageDef<keyof InetDiagMsg, typeof inetDiagAttrs> = { header: inetDiagMsg, attrs: inetDiagAttrs };

/** Names sock_diag's message types in errors. */
export function sockDiagTypeName(t: number): string {
  return t === SOCK_DIAG_BY_FAMILY ? 'SOCK_DIAG_BY_FAMILY' : messageTypeName(t);
}

/** What to list. */
export interface SocketQuery {
  /** 4 (AF_INET) or 6 (AF_INET6). */
  family: 4 | 6;
  protocol: SocketProtocol;
  /** States to dump (default: every state). */
  states?: readonly SocketState[];
  /** Keep only sockets bound to this local port (filtered here, after the dump, as the next three). */
  sport?: number;
  /** Keep only sockets connected to this remote port. */
  dport?: number;
  /** Keep only sockets whose local address is this one (`ss src ADDRESS`). */
  src?: string;
  /** Keep only sockets whose remote address is this one (`ss dst ADDRESS`). */
  dst?: string;
}

/** A socket as inet_diag reports it. */
export interface InetSocket {
  family: 4 | 6;
  protocol: SocketProtocol;
  /** The TCP state name ('listen'; an unconnected UDP socket is 'close'), or its number when unknown. */
  state: SocketState | number;
  local: { address: string; port: number };
  remote: { address: string; port: number };
  /** The device a socket is bound to (SO_BINDTODEVICE), 0 for none. */
  ifindex: number;
  uid: number;
  /** The socket's inode: /proc/PID/fd/N links to socket:[inode]. */
  inode: number;
  /** Bytes queued to receive and to send (for a listener: its accept queue and backlog). */
  rqueue: number;
  wqueue: number;
  /** For an AF_INET6 listening or unconnected socket: IPV6_V6ONLY (when false, it takes IPv4 too). */
  v6only?: boolean;
  raw: { header: InetDiagMsg; attrs: InetDiagAttrs };
}

function familyNumber(f: 4 | 6): number {
  if (f !== 4 && f !== 6) throw new ValidationError('family', 'must be 4 or 6');
  return f === 4 ? 2 : 10;
}

/** ss -t|-u -4|-6 [state ...] (a SOCK_DIAG_BY_FAMILY dump request; NLM_F_DUMP is added by the socket) */
export function socketDumpRequest(q: SocketQuery): Request {
  const protocol = IPPROTO[q.protocol];
  if (protocol === undefined) throw new ValidationError('protocol', `must be ${Object.keys(IPPROTO).join(' or ')}`);
  return request(inetDiagRequestMessage, SOCK_DIAG_BY_FAMILY, 0, { family: familyNumber(q.family), protocol, states: stateMask(q.states) });
}

const addrBuf = Buffer.alloc(16);
/** Reads the 4 big-endian words of an address as text (the first one only for IPv4). */
function address(h: InetDiagMsg, which: 'src' | 'dst', family: 4 | 6): string {
  addrBuf.writeUInt32BE(h[`${which}0`], 0);
  addrBuf.writeUInt32BE(h[`${which}1`], 4);
  addrBuf.writeUInt32BE(h[`${which}2`], 8);
  addrBuf.writeUInt32BE(h[`${which}3`], 12);
  return readIp(addrBuf, 0, family === 4 ? 4 : 16);
}

/** An address filter in the text form decodeSocket gives (ipaddr's normal form), refused when it is not of the query's family. */
function addressFilter(text: string, family: 4 | 6, field: string): string {
  const bytes = typeof text === 'string' ? ipBytes(text) : undefined;
  if (bytes === undefined || bytes.length !== (family === 4 ? 4 : 16)) throw new ValidationError(field, `${JSON.stringify(text)} is not an IPv${family} address`);
  return readIp(Buffer.from(bytes), 0, bytes.length);
}

/** Decodes one inet_diag_msg; a payload shorter than the struct or a bad attribute is a CodecError. */
export function decodeSocket(m: RawMessage, protocol: SocketProtocol): InetSocket {
  const { header, attrs } = decodePayload(inetDiagMessage, m.payload);
  if (header.family !== 2 && header.family !== 10) throw new CodecError(`inet_diag_msg of address family ${header.family}`);
  const family = header.family === 2 ? 4 : 6;
  const s: InetSocket = {
    family,
    protocol,
    state: STATE_NAMES.get(header.state) ?? header.state,
    local: { address: address(header, 'src', family), port: header.sport },
    remote: { address: address(header, 'dst', family), port: header.dport },
    ifindex: header.if,
    uid: header.uid,
    inode: header.inode,
    rqueue: header.rqueue,
    wqueue: header.wqueue,
    raw: { header, attrs },
  };
  if (attrs.skv6only !== undefined) s.v6only = attrs.skv6only !== 0;
  return s;
}

/**
 * The sock_diag operations, each written once as a generator of netlink exchanges (core/op.ts):
 * SockDiag runs them synchronously, SockDiag.promises asynchronously.
 */
export class SockDiagOps {
  /**
   * Lists sockets of one family and protocol, in the states asked for (all by default), bound to
   * `sport` when given. `ss -ltn` is { protocol: 'tcp', states: ['listen'] } for each family;
   * `ss -lun` is { protocol: 'udp', states: ['close'] }; `ss -tn -4` is { family: 4, protocol: 'tcp' }.
   */
  *socketList(q: SocketQuery, opts: DumpOptions = {}): Op<DumpList<InetSocket>> {
    const sport = q.sport === undefined ? undefined : validateU32(q.sport, 'sport', 0, 65535);
    const dport = q.dport === undefined ? undefined : validateU32(q.dport, 'dport', 0, 65535);
    const src = q.src === undefined ? undefined : addressFilter(q.src, q.family, 'src');
    const dst = q.dst === undefined ? undefined : addressFilter(q.dst, q.family, 'dst');
    return yield* dumpOp(socketDumpRequest(q), (m) => {
      const s = decodeSocket(m, q.protocol);
      if (sport !== undefined && s.local.port !== sport) return undefined;
      if (dport !== undefined && s.remote.port !== dport) return undefined;
      if (src !== undefined && s.local.address !== src) return undefined;
      return dst === undefined || s.remote.address === dst ? s : undefined;
    }, opts);
  }

  /**
   * Lists the UNIX domain sockets of the netns, in the states asked for (all by default), of the
   * types and bound name asked for. `ss -xa`; `ss -xl` is { states: ['listen'] }.
   */
  *unixList(q: UnixQuery = {}, opts: DumpOptions = {}): Op<DumpList<UnixSocket>> {
    return yield* dumpOp(unixDumpRequest(q), (m) => {
      const s = decodeUnixSocket(m);
      return unixMatches(s, q) ? s : undefined;
    }, opts);
  }
}

/** Every sock_diag operation's name, read from SockDiagOps. */
export const SOCKDIAG_OPERATIONS: readonly string[] = operationNames(SockDiagOps);

export interface SockDiag extends SyncMethods<SockDiagOps> {}

/** A NETLINK_SOCK_DIAG socket: lists the TCP and UDP sockets of the netns it was opened in; `promises` is its async twin. */
export class SockDiag extends SyncHandle<SockDiagOps, SockDiagPromises> {
  /** Opens a sock_diag socket in the calling thread's netns. */
  static open(opts: SocketOptions = {}): SockDiag {
    return new SockDiag(NetlinkSocket.open({ ...opts, protocol: NETLINK.SOCK_DIAG, typeName: sockDiagTypeName }));
  }

  /** `socket` must be a NETLINK_SOCK_DIAG socket (or a fake one in tests). */
  constructor(socket: NetlinkSocket, ops = new SockDiagOps()) {
    super(socket, ops, SockDiagPromises);
  }
}

export interface SockDiagPromises extends PromiseMethods<SockDiagOps> {}

/** Every sock_diag operation returning a promise (`sd.promises`). */
export class SockDiagPromises extends PromiseHandle<SockDiagOps> {
  /** Wraps an open NETLINK_SOCK_DIAG socket; the synchronous SockDiag on the same socket shares its queue. */
  constructor(socket: NetlinkSocket, ops = new SockDiagOps()) {
    super(socket, ops);
  }
}

defineOperations(SOCKDIAG_OPERATIONS, SockDiag, SockDiagPromises);

/** A process holding a socket. */
export interface SocketOwner {
  pid: number;
  /**
   * The program's name: the file name of its argv[0] (/proc/PID/cmdline), else /proc/PID/comm.
   * comm is the main thread's name, which a program may change (Node 24 names it "MainThread").
   */
  command: string;
}

/** A process's program name: argv[0]'s file name, else its comm, else ''. */
function programName(dir: string): string {
  try {
    const argv0 = readFileSync(`${dir}/cmdline`, 'utf8').split('\0')[0] ?? '';
    const base = argv0.slice(argv0.lastIndexOf('/') + 1);
    if (base !== '') return base;
  } catch {
    // The process exited, or its cmdline is not ours to read: try comm.
  }
  try {
    return readFileSync(`${dir}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

/**
 * Which processes hold each socket inode, found by reading the /proc/PID/fd links (`ss -p`).
 * Best effort: processes that exit meanwhile, or whose fds this process may not read (another
 * user's without CAP_SYS_PTRACE, a /proc mounted with hidepid), are left out, so an inode can
 * map to no owner at all. Reads every fd of every process: call it for the few inodes that matter.
 */
export function socketOwners(inodes: Iterable<number>, proc = '/proc'): Map<number, SocketOwner[]> {
  const wanted = new Map<string, number>();
  for (const i of inodes) wanted.set(`socket:[${i}]`, i);
  const out = new Map<number, SocketOwner[]>();
  if (wanted.size === 0) return out;
  let pids: string[];
  try {
    pids = readdirSync(proc).filter((p) => /^\d+$/.test(p));
  } catch {
    return out;
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`${proc}/${pid}/fd`);
    } catch {
      continue;
    }
    let command: string | undefined;
    for (const fd of fds) {
      let link: string;
      try {
        link = readlinkSync(`${proc}/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const inode = wanted.get(link);
      if (inode === undefined) continue;
      command ??= programName(`${proc}/${pid}`);
      const list = out.get(inode) ?? [];
      // A socket shared by several fds of one process (dup, fork) names the process once.
      if (!list.some((o) => o.pid === Number(pid))) list.push({ pid: Number(pid), command });
      out.set(inode, list);
    }
  }
  return out;
}
