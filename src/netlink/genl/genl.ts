/**
 * Generic netlink: families resolved by name through the controller (CTRL_CMD_GETFAMILY:
 * id, version, operations, multicast groups), and requests and dumps of any family given its
 * command number and attribute schema. A new family (wireguard, devlink, ...) is a schema.
 * The operations (GenlOps) run through the Genl handle synchronously or its `promises` twin
 * asynchronously.
 */
import { CodecError, NetlinkError } from '../../errors.js';
import { NETLINK } from '../core/constants.js';
import { attr, nested, nestedArray, strz, u16, u32, type Attrs, type Schema } from '../core/attr.js';
import { decodePayload, request, struct, type MessageDef, type RawMessage, type Request } from '../core/message.js';
import { NetlinkSocket, type DumpList, type DumpOptions, type SocketOptions } from '../core/socket.js';
import { messageTypeName } from '../core/constants.js';
import { dumpOp, requestOp, type Op } from '../core/op.js';
import { defineOperations, operationNames, PromiseHandle, SyncHandle, type PromiseMethods, type SyncMethods } from '../core/op-handle.js';

/** struct genlmsghdr { u8 cmd; u8 version; u16 reserved; } */
export const genlmsghdr = struct([['cmd', 'u8'], ['version', 'u8'], ['reserved', 'u16']] as const);
export type GenlMsgHdr = ReturnType<typeof genlmsghdr.read>;

/** The controller family's fixed id and commands. */
export const GENL_ID_CTRL = 0x10;
export const CTRL_CMD = { NEWFAMILY: 1, DELFAMILY: 2, GETFAMILY: 3, NEWOPS: 4, DELOPS: 5, GETOPS: 6, NEWMCAST_GRP: 7, DELMCAST_GRP: 8, GETMCAST_GRP: 9, GETPOLICY: 10 } as const;

export const ctrlAttrs = {
  familyId: attr(1, u16),
  familyName: attr(2, strz),
  version: attr(3, u32),
  hdrsize: attr(4, u32),
  maxattr: attr(5, u32),
  ops: attr(6, nestedArray(nested({ id: attr(1, u32), flags: attr(2, u32) } as const))),
  mcastGroups: attr(7, nestedArray(nested({ name: attr(1, strz), id: attr(2, u32) } as const))),
} as const satisfies Schema;
export type CtrlAttrs = Attrs<typeof ctrlAttrs>;
export const ctrlMessage: MessageDef<keyof GenlMsgHdr, typeof ctrlAttrs> = { header: genlmsghdr, attrs: ctrlAttrs };

/** A generic netlink family as the controller describes it. */
export interface GenlFamily {
  id: number;
  name: string;
  version: number;
  hdrsize: number;
  maxattr: number;
  /** Command numbers and their GENL_* flags (admin-only, do, dump). */
  ops: { id: number; flags: number }[];
  /** Multicast group names and ids, for event sockets. */
  mcastGroups: Record<string, number>;
}

/** Decodes a CTRL_CMD_NEWFAMILY message. */
export function decodeFamily(m: RawMessage): GenlFamily {
  const { attrs: a } = decodePayload(ctrlMessage, m.payload);
  if (a.familyId === undefined || a.familyName === undefined) throw new CodecError('controller reply without a family id or name');
  return {
    id: a.familyId,
    name: a.familyName,
    version: a.version ?? 0,
    hdrsize: a.hdrsize ?? 0,
    maxattr: a.maxattr ?? 0,
    ops: (a.ops ?? []).map((o) => ({ id: o.id ?? 0, flags: o.flags ?? 0 })),
    mcastGroups: Object.fromEntries((a.mcastGroups ?? []).map((g) => [g.name ?? '', g.id ?? 0])),
  };
}

/** The message definition of a family's commands: genlmsghdr then the family's attributes. */
export function genlMessage<S extends Schema>(attrs: S): MessageDef<keyof GenlMsgHdr, S> {
  return { header: genlmsghdr, attrs };
}

/** A generic netlink request: message type = the family id, genlmsghdr with the command and version. */
export function genlRequest<S extends Schema>(familyId: number, cmd: number, version: number, schema: S, attrs: Attrs<S>, flags = 0): Request {
  return request(genlMessage(schema), familyId, flags, { cmd, version }, attrs);
}

/** genl ctrl get name NAME (CTRL_CMD_GETFAMILY) */
export function getFamilyRequest(name: string): Request {
  return genlRequest(GENL_ID_CTRL, CTRL_CMD.GETFAMILY, 1, ctrlAttrs, { familyName: name });
}

/**
 * The generic netlink operations, each written once as a generator of netlink exchanges
 * (core/op.ts): Genl runs them synchronously, Genl.promises asynchronously. They keep the
 * families resolved so far, shared by both forms of one handle.
 */
export class GenlOps {
  private readonly families = new Map<string, GenlFamily>();

  /** `names` receives each resolved family's name by id, for the socket's error messages. */
  constructor(readonly names = new Map<number, string>()) {}

  /** Resolves a family by name (cached); a missing family is NetlinkError ENOENT. `genl ctrl get name NAME` */
  *family(name: string): Op<GenlFamily> {
    const cached = this.families.get(name);
    if (cached) return cached;
    const [m] = yield* requestOp(getFamilyRequest(name), `family "${name}"`);
    if (!m) throw new NetlinkError('CTRL_CMD_GETFAMILY', 2, `no reply for family ${name}`);
    const f = decodeFamily(m);
    this.families.set(name, f);
    this.names.set(f.id, f.name);
    return f;
  }

  /** Lists every family the kernel has. `genl ctrl list` */
  *familyList(opts: DumpOptions = {}): Op<DumpList<GenlFamily>> {
    return yield* dumpOp(genlRequest(GENL_ID_CTRL, CTRL_CMD.GETFAMILY, 1, ctrlAttrs, {}), decodeFamily, opts);
  }

  /** Sends a command of a family and returns the decoded replies (a GET's answer, an echo). */
  *request<S extends Schema>(family: string, cmd: number, schema: S, attrs: Attrs<S>, opts: { flags?: number } = {}): Op<GenlReply<S>[]> {
    const f = yield* this.family(family);
    const replies = yield* requestOp(genlRequest(f.id, cmd, f.version, schema, attrs, opts.flags ?? 0), family);
    return replies.map((m) => decodePayload(genlMessage(schema), m.payload));
  }

  /** Dumps a command of a family (NLM_F_DUMP), decoding each message with the schema. */
  *dump<S extends Schema>(family: string, cmd: number, schema: S, attrs: Attrs<S> = {}, opts: DumpOptions = {}): Op<DumpList<GenlReply<S>>> {
    const f = yield* this.family(family);
    return yield* dumpOp(genlRequest(f.id, cmd, f.version, schema, attrs), (m) => decodePayload(genlMessage(schema), m.payload), opts);
  }
}

/** A decoded message of a family: its genlmsghdr and its attributes. */
export type GenlReply<S extends Schema> = { header: GenlMsgHdr; attrs: Attrs<S> };

/** Every generic netlink operation's name, read from GenlOps. */
export const GENL_OPERATIONS: readonly string[] = operationNames(GenlOps);

/** Operations whose type parameters a mapped type would lose: declared by hand below. */
type Generic = 'request' | 'dump';

export interface Genl extends SyncMethods<Omit<GenlOps, Generic | 'names'>> {
  /** Sends a command of a family and returns the decoded replies (a GET's answer, an echo). */
  request<S extends Schema>(family: string, cmd: number, schema: S, attrs: Attrs<S>, opts?: { flags?: number }): GenlReply<S>[];
  /** Dumps a command of a family (NLM_F_DUMP), decoding each message with the schema. */
  dump<S extends Schema>(family: string, cmd: number, schema: S, attrs?: Attrs<S>, opts?: DumpOptions): DumpList<GenlReply<S>>;
}

/** A NETLINK_GENERIC socket that knows families by name; `promises` is its async twin. */
export class Genl extends SyncHandle<GenlOps, GenlPromises> {
  /** Opens a generic netlink socket in the calling thread's netns. */
  static open(opts: SocketOptions = {}): Genl {
    const names = new Map<number, string>();
    return new Genl(NetlinkSocket.open({ ...opts, protocol: NETLINK.GENERIC, typeName: (t) => names.get(t) ?? (t === GENL_ID_CTRL ? 'nlctrl' : messageTypeName(t)) }), names);
  }

  /** `socket` must be a NETLINK_GENERIC socket (or a fake one in tests); `names` receives resolved families' names by id. */
  constructor(socket: NetlinkSocket, names = new Map<number, string>()) {
    super(socket, new GenlOps(names), GenlPromises);
  }

  /** Names a message type for errors: the family's name ('ethtool'). */
  typeName(t: number): string {
    return this.ops.names.get(t) ?? messageTypeName(t);
  }
}

export interface GenlPromises extends PromiseMethods<Omit<GenlOps, Generic | 'names'>> {
  /** Sends a command of a family and returns the decoded replies. */
  request<S extends Schema>(family: string, cmd: number, schema: S, attrs: Attrs<S>, opts?: { flags?: number }): Promise<GenlReply<S>[]>;
  /** Dumps a command of a family (NLM_F_DUMP), decoding each message with the schema. */
  dump<S extends Schema>(family: string, cmd: number, schema: S, attrs?: Attrs<S>, opts?: DumpOptions): Promise<DumpList<GenlReply<S>>>;
}

/** Every generic netlink operation returning a promise (`g.promises`). */
export class GenlPromises extends PromiseHandle<GenlOps> {
  /** Wraps an open NETLINK_GENERIC socket; `ops` (and its family cache) may be shared with a Genl. */
  constructor(socket: NetlinkSocket, ops = new GenlOps()) {
    super(socket, ops);
  }
}

defineOperations(GENL_OPERATIONS, Genl, GenlPromises);
