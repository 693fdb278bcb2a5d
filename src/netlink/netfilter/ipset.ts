/**
 * IP sets over nfnetlink, as the `ipset` tool manages them: create (bitmap:ip, hash:ip, hash:net,
 * hash:ip,port and the other types by name), destroy, flush, rename, swap, add, del, test and list
 * with members. Requests are byte for byte `ipset`'s (checked against captures in test/fixtures);
 * a LIST dump, which the kernel may split over several messages per set, comes back as whole
 * IpsetSet objects. Entries are given in ipset's notation ('10.0.0.1,tcp:80') or as objects. The
 * kernel's ipset errors (4097 and up) become IpsetError with the error's name as its code.
 */
import { CodecError, NetlinkError, ValidationError } from '../../errors.js';
import { NLM_F } from '../core/constants.js';
import { decodePayload, type RawMessage, type Request } from '../core/message.js';
import { NETLINK_NETFILTER, NFNL_SUBSYS, nfnlRequest } from './nfnetlink.js';
import { NetlinkSocket, type DumpList, type DumpOptions, type SocketOptions } from '../core/socket.js';
import { validateU32 } from '../core/validate.js';
import { dumpOp, requestOp, type Op } from '../core/op.js';
import { defineOperations, operationNames, PromiseHandle, SyncHandle, type PromiseMethods, type SyncMethods } from '../core/op-handle.js';
import {
  IPSET_CADT_FLAG, IPSET_CMD, IPSET_ERR, IPSET_ERR_TYPE, IPSET_ERR_TYPE_SPECIFIC, IPSET_FLAG, IPSET_PROTOCOL, elemAttrs, ipsetTypeName, setAttrs, setMessage,
  type AdtDataAttrs, type CreateDataAttrs, type SetAttrs,
} from './ipset-schema.js';
import { addr, entryData, hasFamily, ipNest, memberOf, parseAddressPart, parseEntry, parsePortPart, validateSetName, type IpsetEntry, type IpsetEntryOptions, type IpsetMember } from './ipset-entry.js';

export { parseEntry, type IpsetEntry, type IpsetEntryOptions, type IpsetMember } from './ipset-entry.js';

const AF_INET = 2;
const AF_INET6 = 10;

/** The kernel refused an ipset command with one of ipset's own errors: `code` is its name ('IPSET_ERR_EXIST'). */
export class IpsetError extends NetlinkError {
  override name = 'IpsetError';
  override readonly code: string;
  /** What the error means, as ipset explains it. */
  readonly reason: string;
  constructor(e: NetlinkError, setType?: string) {
    const n = -e.errno;
    const known = IPSET_ERR[n] ?? (n >= IPSET_ERR_TYPE_SPECIFIC ? IPSET_ERR_TYPE[setType?.split(':')[0] ?? '']?.[n - IPSET_ERR_TYPE_SPECIFIC] : undefined);
    const [code, reason] = known ?? [`IPSET_ERR_${n}`, 'an ipset error this library does not know'];
    super(e.operation, e.errno, e.kernelMessage, e.offset);
    this.code = code;
    this.reason = reason;
    this.message = `${e.operation}: ${code} (${reason})${e.kernelMessage ? `: ${e.kernelMessage}` : ''}`;
  }
}

// ------------------------------------------------------------ requests

/** A set to create: `ipset create NAME TYPE [family inet|inet6] [range R] [timeout S] [counters] [comment] ...`. */
export interface IpsetCreateSpec {
  name: string;
  /** 'bitmap:ip', 'hash:ip', 'hash:net', 'hash:ip,port', or another type the kernel has. */
  type: string;
  /** The address family of a set of addresses (default 4). */
  family?: 4 | 6;
  /** bitmap:ip: '10.0.0.0/24' or '10.0.0.0-10.0.0.255'; bitmap:port: '1-1024'. */
  range?: string;
  /** Default timeout of the elements in seconds: makes a set whose elements can expire. */
  timeout?: number;
  counters?: boolean;
  comment?: boolean;
  skbinfo?: boolean;
  forceadd?: boolean;
  hashsize?: number;
  maxelem?: number;
  netmask?: number;
  bucketsize?: number;
  initval?: number;
  /** `-exist`: no error when a set with the same name and options exists. */
  exist?: boolean;
}

function rangeData(type: string, range: string): CreateDataAttrs {
  if (type === 'bitmap:port') {
    const p = parsePortPart(range, false);
    return { port: p.port, portTo: p.portTo ?? p.port };
  }
  const a = parseAddressPart(range, 'range');
  const d: CreateDataAttrs = { ip: ipNest(a.ip) };
  if (a.ipTo !== undefined) d.ipTo = ipNest(a.ipTo);
  if (a.cidr !== undefined) d.cidr = a.cidr;
  return d;
}

/**
 * ipset create NAME TYPE [options] (IPSET_CMD_CREATE). `revision` is the type's revision to ask
 * for: ipset (and Ipset.create) take the kernel's newest, learnt with typeRequest.
 */
export function createRequest(s: IpsetCreateSpec, revision: number): Request {
  const name = validateSetName(s.name);
  if (typeof s.type !== 'string' || !/^[a-z]+:[a-z,]+$/.test(s.type)) throw new ValidationError('type', `${JSON.stringify(s.type)} is not a set type like hash:ip`);
  if (s.family !== undefined && s.family !== 4 && s.family !== 6) throw new ValidationError('family', 'must be 4 or 6');
  const data: CreateDataAttrs = s.range !== undefined ? rangeData(s.type, s.range) : {};
  if (s.type.startsWith('bitmap:') && s.range === undefined) throw new ValidationError('range', `a ${s.type} set needs a range`);
  if (s.timeout !== undefined) data.timeout = validateU32(s.timeout, 'timeout');
  const flags = (s.counters ? IPSET_CADT_FLAG.WITH_COUNTERS : 0) | (s.comment ? IPSET_CADT_FLAG.WITH_COMMENT : 0) | (s.forceadd ? IPSET_CADT_FLAG.WITH_FORCEADD : 0) | (s.skbinfo ? IPSET_CADT_FLAG.WITH_SKBINFO : 0);
  if (flags) data.cadtFlags = flags;
  if (s.initval !== undefined) data.initval = validateU32(s.initval, 'initval');
  if (s.hashsize !== undefined) data.hashsize = validateU32(s.hashsize, 'hashsize', 1);
  if (s.maxelem !== undefined) data.maxelem = validateU32(s.maxelem, 'maxelem', 1);
  if (s.netmask !== undefined) data.netmask = validateU32(s.netmask, 'netmask', 1, 128);
  if (s.bucketsize !== undefined) data.bucketsize = validateU32(s.bucketsize, 'bucketsize', 2, 12);
  const family = hasFamily(s.type) ? (s.family === 6 ? AF_INET6 : AF_INET) : 0;
  const attrs: SetAttrs = { protocol: IPSET_PROTOCOL, setname: name, typename: s.type, revision: validateU32(revision, 'revision', 0, 255), family, data };
  return nfnlRequest(NFNL_SUBSYS.IPSET, IPSET_CMD.CREATE, setAttrs, attrs, { family: AF_INET, flags: NLM_F.CREATE | (s.exist ? 0 : NLM_F.EXCL) });
}

const setCommand = (cmd: number, attrs: SetAttrs, flags = 0): Request => nfnlRequest(NFNL_SUBSYS.IPSET, cmd, setAttrs, { protocol: IPSET_PROTOCOL, ...attrs }, { family: AF_INET, flags });

/** ipset version's question (IPSET_CMD_PROTOCOL): the kernel answers with the versions it speaks. */
export function protocolRequest(): Request {
  return setCommand(IPSET_CMD.PROTOCOL, {});
}
/** The revisions the kernel has of a set type (IPSET_CMD_TYPE), which ipset asks before create. */
export function typeRequest(type: string): Request {
  return setCommand(IPSET_CMD.TYPE, { typename: type, family: AF_INET });
}
/** ipset destroy [NAME] (every set without a name) */
export function destroyRequest(name?: string): Request {
  return setCommand(IPSET_CMD.DESTROY, name === undefined ? {} : { setname: validateSetName(name) }, NLM_F.EXCL);
}
/** ipset flush [NAME] (every set without a name) */
export function flushRequest(name?: string): Request {
  return setCommand(IPSET_CMD.FLUSH, name === undefined ? {} : { setname: validateSetName(name) });
}
/** ipset rename FROM TO */
export function renameRequest(from: string, to: string): Request {
  return setCommand(IPSET_CMD.RENAME, { setname: validateSetName(from), typename: validateSetName(to, 'new name') });
}
/** ipset swap A B */
export function swapRequest(a: string, b: string): Request {
  return setCommand(IPSET_CMD.SWAP, { setname: validateSetName(a), typename: validateSetName(b, 'second set') });
}
/** ipset list [NAME] (a LIST dump with the ack ipset asks for); `names` lists names only (`ipset list -name`) */
export function listRequest(name?: string, opts: { names?: boolean } = {}): Request {
  const a: SetAttrs = {};
  if (name !== undefined) a.setname = validateSetName(name);
  if (opts.names) a.flags = IPSET_FLAG.LIST_SETNAME;
  return setCommand(IPSET_CMD.LIST, a, NLM_F.ACK);
}
/** The type, family and revision of a set (IPSET_CMD_HEADER), which ipset asks before add, del and test. */
export function headerRequest(name: string): Request {
  return setCommand(IPSET_CMD.HEADER, { setname: validateSetName(name) });
}

function entryOf(type: string | undefined, entry: string | IpsetEntry): IpsetEntry {
  if (typeof entry !== 'string') return entry;
  if (type === undefined) throw new ValidationError('entry', 'a text entry needs the set type');
  return parseEntry(type, entry);
}

function elemRequest(cmd: number, flags: number, name: string, data: AdtDataAttrs): Request {
  return nfnlRequest(NFNL_SUBSYS.IPSET, cmd, elemAttrs, { protocol: IPSET_PROTOCOL, setname: validateSetName(name), data }, { family: AF_INET, flags });
}
/** ipset [-exist] add NAME ENTRY [timeout S] [comment C] [packets N bytes N] [nomatch] (`type` reads a text entry) */
export function addRequest(name: string, type: string | undefined, entry: string | IpsetEntry, o: IpsetEntryOptions & { exist?: boolean } = {}): Request {
  return elemRequest(IPSET_CMD.ADD, o.exist ? 0 : NLM_F.EXCL, name, entryData(entryOf(type, entry), o, true));
}
/** ipset [-exist] del NAME ENTRY */
export function delRequest(name: string, type: string | undefined, entry: string | IpsetEntry, o: { exist?: boolean } = {}): Request {
  return elemRequest(IPSET_CMD.DEL, o.exist ? 0 : NLM_F.EXCL, name, entryData(entryOf(type, entry), {}, true));
}
/** ipset test NAME ENTRY */
export function testRequest(name: string, type: string | undefined, entry: string | IpsetEntry): Request {
  return elemRequest(IPSET_CMD.TEST, 0, name, entryData(entryOf(type, entry), {}, false));
}

// ------------------------------------------------------------ sets

/** A set's options and the kernel's counts. */
export interface IpsetHeader {
  timeout?: number;
  hashsize?: number;
  maxelem?: number;
  bucketsize?: number;
  initval?: number;
  netmask?: number;
  /** A bitmap's range: first and last address (or port). */
  range?: { from: string | number; to: string | number };
  counters: boolean;
  comment: boolean;
  skbinfo: boolean;
  forceadd: boolean;
  /** How many entries the kernel counts, its memory in bytes, and references from iptables/nftables. */
  elements: number;
  memsize: number;
  references: number;
}

/** A set as `ipset list` shows it. */
export interface IpsetSet {
  name: string;
  type: string;
  family: 4 | 6 | number;
  revision: number;
  /** The kernel's index of the set. */
  index?: number;
  header: IpsetHeader;
  members: IpsetMember[];
  /** The attributes of each LIST message this set came in. */
  raw: SetAttrs[];
}


function headerOf(type: string, d: CreateDataAttrs | undefined): IpsetHeader {
  const f = d?.cadtFlags ?? 0;
  const h: IpsetHeader = {
    counters: (f & IPSET_CADT_FLAG.WITH_COUNTERS) !== 0,
    comment: (f & IPSET_CADT_FLAG.WITH_COMMENT) !== 0,
    skbinfo: (f & IPSET_CADT_FLAG.WITH_SKBINFO) !== 0,
    forceadd: (f & IPSET_CADT_FLAG.WITH_FORCEADD) !== 0,
    elements: d?.elements ?? 0,
    memsize: d?.memsize ?? 0,
    references: d?.references ?? 0,
  };
  if (d?.timeout !== undefined) h.timeout = d.timeout;
  if (d?.hashsize !== undefined) h.hashsize = d.hashsize;
  if (d?.maxelem !== undefined) h.maxelem = d.maxelem;
  if (d?.bucketsize !== undefined) h.bucketsize = d.bucketsize;
  if (d?.initval !== undefined) h.initval = d.initval;
  if (d?.netmask !== undefined) h.netmask = d.netmask;
  const from = addr(d?.ip);
  const to = addr(d?.ipTo);
  if (from !== undefined && to !== undefined) h.range = { from, to };
  else if (type === 'bitmap:port' && d?.port !== undefined && d.portTo !== undefined) h.range = { from: d.port, to: d.portTo };
  return h;
}

/** Decodes one LIST (or HEADER, TYPE) message's attributes; a malformed one is a CodecError. */
export function decodeSetAttrs(m: RawMessage): SetAttrs {
  return decodePayload(setMessage, m.payload).attrs;
}

/**
 * Joins the LIST messages of a dump into sets: the kernel sends a set's header in its first
 * message and continues a long member list in further messages carrying only the set's name.
 */
export function assembleSets(parts: readonly SetAttrs[]): IpsetSet[] {
  const out: IpsetSet[] = [];
  for (const a of parts) {
    if (a.setname === undefined) throw new CodecError('IPSET_CMD_LIST message without a set name');
    let s = out.at(-1);
    if (!s || s.name !== a.setname || a.typename !== undefined) {
      const type = a.typename ?? '';
      s = { name: a.setname, type, family: a.family === AF_INET ? 4 : a.family === AF_INET6 ? 6 : a.family ?? 0, revision: a.revision ?? 0, header: headerOf(type, a.data), members: [], raw: [] };
      if (a.index !== undefined) s.index = a.index;
      out.push(s);
    }
    s.raw.push(a);
    for (const e of a.adt?.data ?? []) s.members.push(memberOf(s.type, e));
  }
  return out;
}

/** Decodes a single LIST message into a set (members of continuation messages need assembleSets). */
export function decodeSet(m: RawMessage): IpsetSet {
  const [s] = assembleSets([decodeSetAttrs(m)]);
  return s as IpsetSet;
}

// ------------------------------------------------------------ the handle

/** The kernel's own ipset errors (4097 and up) as IpsetError; others as they are. */
function ipsetError(e: unknown, setType?: string): unknown {
  return e instanceof NetlinkError && -e.errno > 4096 ? new IpsetError(e, setType) : e;
}

/** Sends one request and waits for its ack, the kernel's ipset errors thrown as IpsetError. */
function* ipsetRequest(req: Request, setType?: string): Op<RawMessage[]> {
  try {
    return yield* requestOp(req);
  } catch (e) {
    throw ipsetError(e, setType);
  }
}

/**
 * The ipset operations, each written once as a generator of netlink exchanges (core/op.ts): Ipset
 * runs them synchronously, Ipset.promises asynchronously. They remember set types by name
 * (learnt from HEADER, to read text entries) and each type's newest revision, for both forms.
 */
export class IpsetOps {
  private readonly types = new Map<string, string>();
  private readonly revisions = new Map<string, number>();

  /** The protocol versions the kernel speaks. `ipset version` */
  *protocol(): Op<{ protocol: number; min: number }> {
    const [m] = yield* ipsetRequest(protocolRequest());
    if (!m) throw new CodecError('IPSET_CMD_PROTOCOL: no reply');
    const a = decodeSetAttrs(m);
    return { protocol: a.protocol ?? 0, min: a.protocolMin ?? a.protocol ?? 0 };
  }

  /** The newest and oldest revision the kernel has of a set type (IPSET_ERR_FIND_TYPE when it has none). */
  *typeRevision(type: string): Op<{ max: number; min: number }> {
    const [m] = yield* ipsetRequest(typeRequest(type));
    if (!m) throw new CodecError('IPSET_CMD_TYPE: no reply');
    const a = decodeSetAttrs(m);
    return { max: a.revision ?? 0, min: a.protocolMin ?? 0 };
  }

  /** Creates a set with the kernel's newest revision of its type, as ipset does. `ipset create NAME TYPE [options]` */
  *create(s: IpsetCreateSpec & { revision?: number }): Op<void> {
    let rev = s.revision ?? this.revisions.get(s.type);
    if (rev === undefined) {
      rev = (yield* this.typeRevision(s.type)).max;
      this.revisions.set(s.type, rev);
    }
    yield* ipsetRequest(createRequest(s, rev), s.type);
    this.types.set(s.name, s.type);
  }

  /** Destroys a set (ENOENT when there is none; IPSET_ERR_BUSY when a rule uses it), or every set. `ipset destroy [NAME]` */
  *destroy(name?: string): Op<void> {
    yield* ipsetRequest(destroyRequest(name));
    if (name === undefined) this.types.clear();
    else this.types.delete(name);
  }

  /** Removes every member of a set, or of every set. `ipset flush [NAME]` */
  *flush(name?: string): Op<void> {
    yield* ipsetRequest(flushRequest(name));
  }

  /** Renames a set. `ipset rename FROM TO` */
  *rename(from: string, to: string): Op<void> {
    yield* ipsetRequest(renameRequest(from, to));
    this.types.delete(from);
    this.types.delete(to);
  }

  /** Swaps the contents (and types) of two sets. `ipset swap A B` */
  *swap(a: string, b: string): Op<void> {
    yield* ipsetRequest(swapRequest(a, b));
    this.types.delete(a);
    this.types.delete(b);
  }

  /** A set's type, asked of the kernel once (IPSET_CMD_HEADER). */
  *setType(name: string): Op<string> {
    let t = this.types.get(name);
    if (t === undefined) {
      const [m] = yield* ipsetRequest(headerRequest(name));
      t = m ? decodeSetAttrs(m).typename : undefined;
      if (t === undefined) throw new CodecError('IPSET_CMD_HEADER: no type in the reply');
      this.types.set(name, t);
    }
    return t;
  }

  /** Adds an element (IPSET_ERR_EXIST when it is there, unless `exist`). `ipset [-exist] add NAME ENTRY [options]` */
  *add(name: string, entry: string | IpsetEntry, o: IpsetEntryOptions & { exist?: boolean } = {}): Op<void> {
    const type = typeof entry === 'string' ? yield* this.setType(name) : this.types.get(name);
    yield* ipsetRequest(addRequest(name, type, entry, o), type);
  }

  /** Deletes an element (IPSET_ERR_EXIST when it is not there, unless `exist`). `ipset [-exist] del NAME ENTRY` */
  *del(name: string, entry: string | IpsetEntry, o: { exist?: boolean } = {}): Op<void> {
    const type = typeof entry === 'string' ? yield* this.setType(name) : this.types.get(name);
    yield* ipsetRequest(delRequest(name, type, entry, o), type);
  }

  /** Whether an element is in a set. `ipset test NAME ENTRY` */
  *test(name: string, entry: string | IpsetEntry): Op<boolean> {
    const type = typeof entry === 'string' ? yield* this.setType(name) : this.types.get(name);
    try {
      yield* ipsetRequest(testRequest(name, type, entry), type);
      return true;
    } catch (e) {
      if (e instanceof IpsetError && e.code === 'IPSET_ERR_EXIST') return false;
      throw e;
    }
  }

  /** One set or every set, with members. `ipset list [NAME]` */
  *list(name?: string, opts: DumpOptions = {}): Op<DumpList<IpsetSet>> {
    let parts;
    try {
      parts = yield* dumpOp(listRequest(name), decodeSetAttrs, opts);
    } catch (e) {
      throw ipsetError(e);
    }
    const sets = assembleSets(parts);
    for (const s of sets) this.types.set(s.name, s.type);
    return Object.assign(sets, { undecodable: parts.undecodable });
  }

  /** The names of every set. `ipset list -name` */
  *names(opts: DumpOptions = {}): Op<DumpList<string>> {
    return yield* dumpOp(listRequest(undefined, { names: true }), (m) => decodeSetAttrs(m).setname, opts);
  }
}

/** Every ipset operation's name, read from IpsetOps. */
export const IPSET_OPERATIONS: readonly string[] = operationNames(IpsetOps);

export interface Ipset extends SyncMethods<IpsetOps> {}

/** A NETLINK_NETFILTER socket speaking ipset: the sets of the netns it was opened in; `promises` is its async twin. */
export class Ipset extends SyncHandle<IpsetOps, IpsetPromises> {
  /** Opens an ipset socket in the calling thread's netns (`withNetns(ns, () => Ipset.open())` for another one). */
  static open(opts: SocketOptions = {}): Ipset {
    return new Ipset(NetlinkSocket.open({ ...opts, protocol: NETLINK_NETFILTER, typeName: ipsetTypeName }));
  }

  /** `socket` must be a NETLINK_NETFILTER socket (or a fake one in tests). */
  constructor(socket: NetlinkSocket, ops = new IpsetOps()) {
    super(socket, ops, IpsetPromises);
  }
}

export interface IpsetPromises extends PromiseMethods<IpsetOps> {}

/** Every ipset operation returning a promise (`s.promises`). */
export class IpsetPromises extends PromiseHandle<IpsetOps> {
  /** Wraps an open ipset socket; `ops` (and its type cache) may be shared with an Ipset. */
  constructor(socket: NetlinkSocket, ops = new IpsetOps()) {
    super(socket, ops);
  }
}

defineOperations(IPSET_OPERATIONS, Ipset, IpsetPromises);
