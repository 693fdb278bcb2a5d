/**
 * Link requests (RTM_NEWLINK / RTM_DELLINK / RTM_GETLINK) and the decoded Link view. Pure:
 * builders return a Request for a socket to send, one at a time or pipelined.
 */
import { AF, IFF, IFLA, IN6_ADDR_GEN_MODE, NLM_F, OPERSTATES, RTM, type AddrGenMode, type OperState } from '../core/constants.js';
import { decodePayload, request, type RawMessage, type Request } from '../core/message.js';
import { attr, nestedSparse, rawAttrs, readAttrsSparse, NLA_TYPE_MASK, type Codec, type Schema } from '../core/attr.js';
import { ifinfomsg, inet6LinkAttrs, linkAttrs, linkMessage, propListAttrs, readLinkInfoView, type BridgeAttrs, type BridgePortAttrs, type IfInfoMsg, type LinkAttrs, type LinkBody, type LinkInfo, type VethAttrs } from './schemas.js';
import { validateIfname, validateMac, validateU32 } from '../core/validate.js';
import { refKey, validateAltname, withIndexes, type LinkRef } from '../core/ref.js';
import { CodecError, ValidationError } from '../../errors.js';
import { linkKind, type LinkOptionsOf } from './kinds/registry.js';
import { linkStatsOf, type LinkStats } from './link-stats.js';

/** A link as the kernel reports it. */
export interface Link {
  index: number;
  name: string;
  /** ARPHRD_* link type (1 = ether, 772 = loopback). */
  type: number;
  flags: number;
  up: boolean;
  operstate: OperState;
  mtu?: number;
  mac?: string;
  /** ifindex of the master (bridge), if enslaved. */
  master?: number;
  /** IFLA_INFO_KIND: 'veth', 'bridge', ... */
  kind?: string;
  /** IFLA_INFO_SLAVE_KIND: 'bridge' for a bridge port. */
  slaveKind?: string;
  /** Bridge-port hairpin flag, when the link is a bridge port. */
  hairpin?: boolean;
  /** Bridge-port isolation flag, when the link is a bridge port. */
  isolated?: boolean;
  /** For a veth: the peer's ifindex (in the peer's netns). */
  peerIndex?: number;
  /** For a link stacked on another (vlan, macvlan, ipvlan, tunnels with a device): the lower link's ifindex (IFLA_LINK). */
  parentIndex?: number;
  /** IFLA_TXQLEN */
  txqlen?: number;
  /** Alternative names (`ip link property add dev LINK altname NAME`). */
  altnames?: string[];
  /** The kind's typed settings (IFLA_INFO_DATA decoded by the registered kind: a vxlan's id, a macvlan's mode, ...). */
  options?: Record<string, unknown>;
  /** Settings of this link as a port of its master (IFLA_INFO_SLAVE_DATA: bridge-port flags, bond-port state). */
  portOptions?: Record<string, unknown>;
  /** netnsid (as seen from this netns) of the namespace the peer lives in, if not this one. */
  linkNetnsid?: number;
  /** IPv6 link-local address generation ('none' when disabled). */
  addrGenMode?: AddrGenMode;
  /** IFLA_IFALIAS: the free-text alias (`ip link set LINK alias TEXT`). */
  alias?: string;
  /** IFLA_GROUP: the device group (0 is "default"). */
  group?: number;
  /** IFLA_QDISC: the root qdisc's kind ('noqueue', 'noop', 'pfifo_fast', 'tbf', ...). */
  qdisc?: string;
  /** IFLA_PROMISCUITY: how many users asked for promiscuous mode (`ip link set LINK promisc on` is one). */
  promiscuity?: number;
  /** IFLA_ALLMULTI: how many users asked to receive all multicast. */
  allmulti?: number;
  /** IFLA_NUM_TX_QUEUES and IFLA_NUM_RX_QUEUES. */
  numTxQueues?: number;
  numRxQueues?: number;
  /** IFLA_MIN_MTU and IFLA_MAX_MTU: the MTU range the device accepts. */
  minMtu?: number;
  maxMtu?: number;
  /** GSO, GRO and TSO limits (IFLA_GSO_MAX_SIZE, IFLA_GSO_MAX_SEGS, IFLA_GRO_MAX_SIZE, IFLA_TSO_MAX_SIZE, IFLA_TSO_MAX_SEGS). */
  gsoMaxSize?: number;
  gsoMaxSegs?: number;
  groMaxSize?: number;
  tsoMaxSize?: number;
  tsoMaxSegs?: number;
  /** Counters (IFLA_STATS64, else IFLA_STATS), read from the message on first access. `ip -s -s link` */
  readonly stats?: LinkStats;
  /** Header and every attribute as decoded, unknown ones included. */
  raw: { header: IfInfoMsg; attrs: LinkAttrs };
}

const GEN_MODE_NAMES = new Map((Object.keys(IN6_ADDR_GEN_MODE) as AddrGenMode[]).map((k) => [IN6_ADDR_GEN_MODE[k] as number, k]));

/** The attributes a Link's own fields come from; everything else stays in the bytes until `raw` is read. */
const linkViewAttrs = {
  address: linkAttrs.address,
  mtu: linkAttrs.mtu,
  link: linkAttrs.link,
  master: linkAttrs.master,
  txqlen: linkAttrs.txqlen,
  operstate: linkAttrs.operstate,
  ifalias: linkAttrs.ifalias,
  group: linkAttrs.group,
  linkNetnsid: linkAttrs.linkNetnsid,
  qdisc: linkAttrs.qdisc,
  promiscuity: linkAttrs.promiscuity,
  allmulti: linkAttrs.allmulti,
  numTxQueues: linkAttrs.numTxQueues,
  numRxQueues: linkAttrs.numRxQueues,
  minMtu: linkAttrs.minMtu,
  maxMtu: linkAttrs.maxMtu,
  gsoMaxSize: linkAttrs.gsoMaxSize,
  gsoMaxSegs: linkAttrs.gsoMaxSegs,
  groMaxSize: linkAttrs.groMaxSize,
  tsoMaxSize: linkAttrs.tsoMaxSize,
  tsoMaxSegs: linkAttrs.tsoMaxSegs,
  propList: attr(IFLA.PROP_LIST, nestedSparse(propListAttrs)),
  ifname: linkAttrs.ifname,
  linkinfo: attr(IFLA.LINKINFO, { ...linkAttrs.linkinfo.codec, read: readLinkInfoView } as Codec<LinkInfo>),
  afSpec: attr(IFLA.AF_SPEC, nestedSparse({ inet6: attr(AF.INET6, nestedSparse({ addrGenMode: inet6LinkAttrs.addrGenMode })) })),
} as const satisfies Schema;

/**
 * A decoded link. Its fields are read from the message at once; `raw` (the header and every
 * attribute, unknown ones included) is decoded from the same bytes on first access, so a dump
 * of thousands of links does not build thousands of attribute trees nobody reads.
 */
class LinkView {
  // The message's bytes as the datagram's memory and a span of it, not a Buffer view per link
  // (about a hundred bytes more of each), as a Route keeps them.
  #bytes: ArrayBufferLike;
  #offset: number;
  #length: number;
  #raw: { header: IfInfoMsg; attrs: LinkAttrs } | undefined;
  #stats: LinkStats | null | undefined;
  constructor(payload: Buffer) {
    this.#bytes = payload.buffer;
    this.#offset = payload.byteOffset;
    this.#length = payload.length;
  }
  get raw(): { header: IfInfoMsg; attrs: LinkAttrs } {
    return (this.#raw ??= decodePayload(linkMessage, this.#payload()));
  }
  get stats(): LinkStats | undefined {
    if (this.#stats === undefined) {
      const p = this.#payload();
      const a = readAttrsSparse(linkStatsAttrs, p, ifinfomsg.size, p.length);
      this.#stats = linkStatsOf(a.stats64, a.stats) ?? null;
    }
    return this.#stats ?? undefined;
  }
  #payload(): Buffer {
    return Buffer.from(this.#bytes, this.#offset, this.#length);
  }
}

/** The attributes a Link's counters come from. */
const linkStatsAttrs = { stats: linkAttrs.stats, stats64: linkAttrs.stats64 } as const satisfies Schema;

/** Decodes an RTM_NEWLINK message into a Link. */
export function decodeLink(m: RawMessage): Link {
  const p = m.payload;
  if (p.length < ifinfomsg.size) throw new CodecError(`payload of ${p.length} bytes is shorter than its ${ifinfomsg.size}-byte header`);
  // struct ifinfomsg: family u8, pad u8, type u16, index s32, flags u32, change u32.
  const header = { type: p.readUInt16LE(2), index: p.readInt32LE(4), flags: p.readUInt32LE(8) };
  const attrs = readAttrsSparse(linkViewAttrs, p, ifinfomsg.size, p.length);
  const info = attrs.linkinfo;
  const slave = info?.slaveData && !Buffer.isBuffer(info.slaveData) ? (info.slaveData as BridgePortAttrs) : undefined;
  const link = new LinkView(m.payload) as unknown as Link;
  link.index = header.index;
  link.name = attrs.ifname ?? '';
  link.type = header.type;
  link.flags = header.flags;
  link.up = (header.flags & IFF.UP) !== 0;
  link.operstate = OPERSTATES[attrs.operstate ?? 0] ?? 'unknown';
  if (attrs.mtu !== undefined) link.mtu = attrs.mtu;
  if (attrs.address !== undefined) link.mac = attrs.address;
  if (attrs.master !== undefined) link.master = attrs.master;
  if (info?.kind !== undefined) link.kind = info.kind;
  if (info?.slaveKind !== undefined) link.slaveKind = info.slaveKind;
  if (slave?.hairpin !== undefined) link.hairpin = slave.hairpin !== 0;
  if (slave?.isolated !== undefined) link.isolated = slave.isolated !== 0;
  if (info?.kind === 'veth') {
    // The kernel omits IFLA_LINK when the peer's ifindex equals ours, which happens whenever
    // the peer lives in another netns under the same number.
    if (attrs.link !== undefined && attrs.link !== header.index) link.peerIndex = attrs.link;
    else if (attrs.linkNetnsid !== undefined) link.peerIndex = header.index;
  } else if (attrs.link !== undefined && attrs.link !== 0 && attrs.link !== header.index) link.parentIndex = attrs.link;
  if (attrs.txqlen !== undefined) link.txqlen = attrs.txqlen;
  if (attrs.propList?.altnames) link.altnames = attrs.propList.altnames;
  // The decoded attribute sets themselves (attributes the kind does not name are in their `unknown`).
  if (info?.data && !Buffer.isBuffer(info.data)) link.options = info.data as Record<string, unknown>;
  if (info?.slaveData && !Buffer.isBuffer(info.slaveData)) link.portOptions = info.slaveData as Record<string, unknown>;
  if (attrs.linkNetnsid !== undefined) link.linkNetnsid = attrs.linkNetnsid;
  if (attrs.ifalias !== undefined && attrs.ifalias !== '') link.alias = attrs.ifalias;
  if (attrs.group !== undefined) link.group = attrs.group;
  // Named stores, one per field: a store by computed name onto an object that already has a
  // dozen properties outside it makes V8 turn it into a dictionary (as a loop over the field
  // names did, for every Link).
  if (attrs.qdisc !== undefined) link.qdisc = attrs.qdisc;
  if (attrs.promiscuity !== undefined) link.promiscuity = attrs.promiscuity;
  if (attrs.allmulti !== undefined) link.allmulti = attrs.allmulti;
  if (attrs.numTxQueues !== undefined) link.numTxQueues = attrs.numTxQueues;
  if (attrs.numRxQueues !== undefined) link.numRxQueues = attrs.numRxQueues;
  if (attrs.minMtu !== undefined) link.minMtu = attrs.minMtu;
  if (attrs.maxMtu !== undefined) link.maxMtu = attrs.maxMtu;
  if (attrs.gsoMaxSize !== undefined) link.gsoMaxSize = attrs.gsoMaxSize;
  if (attrs.gsoMaxSegs !== undefined) link.gsoMaxSegs = attrs.gsoMaxSegs;
  if (attrs.groMaxSize !== undefined) link.groMaxSize = attrs.groMaxSize;
  if (attrs.tsoMaxSize !== undefined) link.tsoMaxSize = attrs.tsoMaxSize;
  if (attrs.tsoMaxSegs !== undefined) link.tsoMaxSegs = attrs.tsoMaxSegs;
  const gen = attrs.afSpec?.inet6?.addrGenMode;
  if (gen !== undefined) link.addrGenMode = GEN_MODE_NAMES.get(gen) ?? 'eui64';
  return link;
}

/**
 * Reads only the ifindex and, for a veth, the peer's ifindex from an RTM_NEWLINK message: a fraction
 * of decodeLink's cost on connect's hot path, same answer (see decodeLink for the rules).
 */
export function peekLinkIndexes(m: RawMessage): { index: number; peerIndex?: number } {
  if (m.payload.length < ifinfomsg.size) throw new CodecError('RTM_NEWLINK shorter than ifinfomsg');
  const index = m.payload.readInt32LE(4);
  let link: number | undefined;
  let netnsid = false;
  for (const a of rawAttrs(m.payload, ifinfomsg.size, m.payload.length)) {
    const type = a.type & NLA_TYPE_MASK;
    if (type === IFLA.LINK && a.data.length >= 4) link = a.data.readUInt32LE(0);
    else if (type === IFLA.LINK_NETNSID) netnsid = true;
  }
  if (link !== undefined && link !== index) return { index, peerIndex: link };
  return netnsid ? { index, peerIndex: index } : { index };
}

export type { LinkRef } from '../core/ref.js';

/** The link a change applies to: by ifindex in the header, or by name in IFLA_IFNAME (the kernel resolves it). */
function target(ref: LinkRef): { header: { index: number }; attrs: LinkAttrs } {
  const k = refKey(ref);
  if (typeof k === 'number') return { header: { index: k }, attrs: {} };
  // Names longer than IFNAMSIZ can only be alternative names; the kernel looks those up by IFLA_ALT_IFNAME.
  return { header: { index: 0 }, attrs: Buffer.byteLength(k) > 15 ? { altIfname: k } : { ifname: k } };
}

const CREATE = NLM_F.CREATE | NLM_F.EXCL;

/** Common attributes for a link being created. */
export interface LinkCreateOptions {
  mtu?: number;
  mac?: string;
  /** Bridge (or bond) to enslave the new link to, in the same message. */
  master?: LinkRef;
  /** Bring the link up in the same message. */
  up?: boolean;
  txqlen?: number;
}

function createAttrs(name: string, o: Omit<LinkCreateOptions, 'master'> & { master?: number | undefined }, field: string): { header: Partial<IfInfoMsg>; attrs: LinkAttrs } {
  const attrs: LinkAttrs = { ifname: validateIfname(name, field) };
  if (o.mac !== undefined) attrs.address = validateMac(o.mac);
  if (o.mtu !== undefined) attrs.mtu = validateU32(o.mtu, 'mtu', 68, 65535);
  if (o.txqlen !== undefined) attrs.txqlen = validateU32(o.txqlen, 'txqlen');
  if (o.master !== undefined) attrs.master = validateU32(o.master, 'master ifindex', 1, 0x7fffffff);
  return { header: o.up ? { flags: IFF.UP, change: IFF.UP } : {}, attrs };
}

/** ip link add NAME type bridge [mtu N] [address MAC] [up] */
export function addBridgeRequest(name: string, opts: LinkCreateOptions & { bridge?: BridgeAttrs } = {}): Request {
  return withIndexes({ master: opts.master }, (idx) => {
    const { header, attrs } = createAttrs(name, { ...opts, master: idx.master }, 'bridge name');
    attrs.linkinfo = { kind: 'bridge', ...(opts.bridge ? { data: opts.bridge } : {}) };
    return request(linkMessage, RTM.NEWLINK, CREATE, header, attrs);
  });
}

/** Settings common to every link being created, and the lower device of stacked kinds. */
export interface LinkAddOptions extends LinkCreateOptions {
  /** The lower device (IFLA_LINK): the parent of a vlan, macvlan, macvtap or ipvlan. */
  link?: LinkRef;
  /** Create the link directly in the netns open as this fd. */
  netnsFd?: number;
}

/**
 * ip link add [link LOWER] NAME [mtu N] [address MAC] [master M] [up] type KIND [options]
 * Any registered kind (kinds/registry): its options are typed, merged over the values iproute2
 * always sends, checked, and encoded by the kind's schema; an unregistered kind takes raw bytes.
 */
export function addLinkRequest<K extends string>(name: string, kind: K, options?: LinkOptionsOf<K>, common: LinkAddOptions = {}): Request {
  if (kind === 'veth') throw new ValidationError('kind', 'a veth needs its peer: use addVethRequest');
  const k = linkKind(kind);
  if (!k) {
    if (options !== undefined && !Buffer.isBuffer(options)) throw new ValidationError('kind', `${JSON.stringify(kind)} is not a registered link kind: give its IFLA_INFO_DATA as bytes, or registerLinkKind() it`);
  }
  if (k?.needsLower && common.link === undefined) throw new ValidationError('link', `a ${kind} needs a lower device (link)`);
  const given = (options ?? {}) as Record<string, unknown>;
  const lowerOpt = Buffer.isBuffer(options) ? undefined : (given['link'] as LinkRef | undefined);
  return withIndexes({ master: common.master, lower: common.link, dataLink: typeof lowerOpt === 'number' ? undefined : lowerOpt }, (idx) => {
    const { header, attrs } = createAttrs(name, { ...common, master: idx.master }, `${kind} name`);
    if (idx.lower !== undefined) attrs.link = idx.lower;
    if (common.netnsFd !== undefined) attrs.netNsFd = validateU32(common.netnsFd, 'netns fd');
    let data: LinkInfo['data'];
    if (Buffer.isBuffer(options)) data = options;
    else if (k?.data) {
      const merged = { ...(k.defaults ?? {}), ...given } as Record<string, unknown>;
      if (idx.dataLink !== undefined) merged['link'] = idx.dataLink;
      k.validate?.(merged);
      if (Object.keys(merged).length > 0) data = merged;
    }
    attrs.linkinfo = { kind, ...(data !== undefined ? { data } : {}) };
    return request(linkMessage, RTM.NEWLINK, CREATE, header, attrs);
  });
}

/** Where and how to create the peer of a veth. */
export interface VethPeerOptions {
  name: string;
  /** Create the peer directly in the netns open as this fd (no create-then-move: ~29 ms saved). */
  netnsFd?: number;
  /** Or in the netns of this pid. */
  netnsPid?: number;
  mac?: string;
  mtu?: number;
  /**
   * Bring the peer up in the same message. Only for a peer in the caller's netns: with a peer
   * in another netns, Linux 6.18 brings it up but answers ENOTCONN (the UP notification is
   * addressed to our port in the wrong netns), so bring it up from inside that netns instead.
   */
  up?: boolean;
}

/**
 * ip link add NAME [master BR] [up] type veth peer name PEER [netns NS]
 * One RTM_NEWLINK creates both ends, the peer already in its netns with its final name.
 */
export function addVethRequest(name: string, peer: VethPeerOptions, opts: LinkCreateOptions = {}): Request {
  return withIndexes({ master: opts.master }, (idx) => buildVeth(name, peer, { ...opts, master: idx.master }));
}

function buildVeth(name: string, peer: VethPeerOptions, opts: Omit<LinkCreateOptions, 'master'> & { master?: number | undefined }): Request {
  const { header, attrs } = createAttrs(name, opts, 'veth name');
  const p = createAttrs(peer.name, { ...(peer.mac !== undefined ? { mac: peer.mac } : {}), ...(peer.mtu !== undefined ? { mtu: peer.mtu } : {}), up: peer.up ?? false }, 'veth peer name');
  if (peer.netnsFd !== undefined) p.attrs.netNsFd = validateU32(peer.netnsFd, 'peer netns fd');
  if (peer.netnsPid !== undefined) p.attrs.netNsPid = validateU32(peer.netnsPid, 'peer netns pid', 1);
  const peerBody: LinkBody = { header: p.header, attrs: p.attrs };
  const data: VethAttrs = { peer: peerBody };
  attrs.linkinfo = { kind: 'veth', data };
  return request(linkMessage, RTM.NEWLINK, CREATE, header, attrs);
}

/** A change to an existing link: RTM_NEWLINK without NLM_F_CREATE, as iproute2 sends it (`ip link set LINK ...`). */
export function changeLinkRequest(ref: LinkRef, attrs: LinkAttrs, header: Partial<IfInfoMsg> = {}): Request {
  return change(ref, attrs, header);
}

function change(ref: LinkRef, attrs: LinkAttrs, header: Partial<IfInfoMsg> = {}): Request {
  const t = target(ref);
  return request(linkMessage, RTM.NEWLINK, 0, { ...header, index: t.header.index }, { ...t.attrs, ...attrs });
}

/** ip link set LINK up */
export function setUpRequest(ref: LinkRef): Request {
  return change(ref, {}, { flags: IFF.UP, change: IFF.UP });
}

/** ip link set LINK down */
export function setDownRequest(ref: LinkRef): Request {
  return change(ref, {}, { flags: 0, change: IFF.UP });
}

/** ip link set LINK master BRIDGE */
export function setMasterRequest(ref: LinkRef, master: LinkRef): Request {
  return withIndexes({ master }, (idx) => change(ref, { master: idx.master as number }));
}

/** ip link set LINK nomaster */
export function setNoMasterRequest(ref: LinkRef): Request {
  return change(ref, { master: 0 });
}

/** ip link set LINK netns NS (by fd) */
export function setNetnsFdRequest(ref: LinkRef, fd: number): Request {
  return change(ref, { netNsFd: validateU32(fd, 'netns fd') });
}

/** ip link set LINK netns PID */
export function setNetnsPidRequest(ref: LinkRef, pid: number): Request {
  return change(ref, { netNsPid: validateU32(pid, 'pid', 1) });
}

/** ip link set LINK mtu N */
export function setMtuRequest(ref: LinkRef, mtu: number): Request {
  return change(ref, { mtu: validateU32(mtu, 'mtu', 68, 65535) });
}

/** ip link set LINK address MAC */
export function setMacRequest(ref: LinkRef, macAddr: string): Request {
  return change(ref, { address: validateMac(macAddr) });
}

/** ip link set LINK name NEWNAME (the message names the link by index: the name is what changes) */
export function setNameRequest(ref: LinkRef, name: string): Request {
  return withIndexes({ link: ref }, (idx) => change(idx.link as number, { ifname: validateIfname(name, 'new name') }));
}

/** ip link set LINK type bridge_slave hairpin on|off */
export function setHairpinRequest(ref: LinkRef, on: boolean): Request {
  const info: LinkInfo = { slaveKind: 'bridge', slaveData: { hairpin: on ? 1 : 0 } };
  return change(ref, { linkinfo: info });
}

/** Bridge-port flags that can be changed on an enslaved link. */
export interface BridgePortOptions {
  hairpin?: boolean;
  /** Isolated ports cannot send to each other, only to non-isolated ports and the bridge. */
  isolated?: boolean;
  learning?: boolean;
  unicastFlood?: boolean;
}

function bridgePortData(opts: BridgePortOptions): BridgePortAttrs {
  const data: BridgePortAttrs = {};
  if (opts.hairpin !== undefined) data.hairpin = opts.hairpin ? 1 : 0;
  if (opts.learning !== undefined) data.learning = opts.learning ? 1 : 0;
  if (opts.unicastFlood !== undefined) data.unicastFlood = opts.unicastFlood ? 1 : 0;
  if (opts.isolated !== undefined) data.isolated = opts.isolated ? 1 : 0;
  return data;
}

/**
 * ip link set LINK addrgenmode none|eui64|stable_secret|random. The kernel refuses this in the
 * creating RTM_NEWLINK (EAFNOSUPPORT), so it is a change of its own, sent before the link goes up.
 */
export function setAddrGenModeRequest(ref: LinkRef, mode: AddrGenMode): Request {
  const v = IN6_ADDR_GEN_MODE[mode];
  if (v === undefined) throw new ValidationError('addrgenmode', `${JSON.stringify(mode)} is not one of ${Object.keys(IN6_ADDR_GEN_MODE).join(', ')}`);
  return change(ref, { afSpec: { inet6: { addrGenMode: v } } });
}

/** ip link del LINK */
export function deleteRequest(ref: LinkRef): Request {
  const t = target(ref);
  return request(linkMessage, RTM.DELLINK, 0, t.header, t.attrs);
}

/** Changes that one RTM_NEWLINK can carry together (see setLinkRequest). */
export interface LinkChanges {
  alias?: string;
  addrGenMode?: AddrGenMode;
  bridgePort?: BridgePortOptions;
  /** IFLA_GROUP: the device group (`ip link set LINK group N`). */
  group?: number;
}

/**
 * Several changes to an existing link in one message: alias, IPv6 address generation mode,
 * device group and bridge-port flags (`ip link set LINK alias A addrgenmode M group N type bridge_slave ...`). The kernel
 * applies bridge-port data, then the rest, in one rtnl_lock section. Bringing the link up is
 * deliberately not offered here: the kernel applies IFF_UP before IFLA_AF_SPEC, so an
 * "addrgenmode none" in the same message would come too late to stop the link-local address.
 */
export function setLinkRequest(ref: LinkRef, c: LinkChanges): Request {
  const attrs: LinkAttrs = {};
  if (c.alias !== undefined) attrs.ifalias = setAliasRequestValue(c.alias);
  if (c.addrGenMode !== undefined) {
    const v = IN6_ADDR_GEN_MODE[c.addrGenMode];
    if (v === undefined) throw new ValidationError('addrgenmode', `${JSON.stringify(c.addrGenMode)} is not one of ${Object.keys(IN6_ADDR_GEN_MODE).join(', ')}`);
    attrs.afSpec = { inet6: { addrGenMode: v } };
  }
  if (c.group !== undefined) attrs.group = validateU32(c.group, 'group');
  if (c.bridgePort !== undefined) attrs.linkinfo = { slaveKind: 'bridge', slaveData: bridgePortData(c.bridgePort) };
  return change(ref, attrs);
}

function setAliasRequestValue(alias: string): string {
  if (typeof alias !== 'string' || Buffer.byteLength(alias) >= IFALIASZ || alias.includes('\0')) {
    throw new ValidationError('alias', `must be a string of at most ${IFALIASZ - 1} bytes without NUL`);
  }
  return alias;
}

/** The kernel keeps at most 255 bytes of alias (IFALIASZ 256 with the NUL). */
const IFALIASZ = 256;

/**
 * ip link set LINK alias TEXT ('' clears it). The kernel ignores IFLA_IFALIAS in a creating
 * RTM_NEWLINK, so an alias is always a change of its own; send it in the same batch as the
 * create and both are handled within one sendto.
 */
export function setAliasRequest(ref: LinkRef, alias: string): Request {
  return change(ref, { ifalias: setAliasRequestValue(alias) });
}

/** ip link set LINK txqlen N */
export function setTxqlenRequest(ref: LinkRef, txqlen: number): Request {
  return change(ref, { txqlen: validateU32(txqlen, 'txqlen') });
}

/** ip link property add dev LINK altname NAME */
export function addAltnameRequest(ref: LinkRef, altname: string): Request {
  return altnameRequest(RTM.NEWLINKPROP, NLM_F.CREATE | NLM_F.EXCL | NLM_F.APPEND, ref, altname);
}

/** ip link property del dev LINK altname NAME */
export function deleteAltnameRequest(ref: LinkRef, altname: string): Request {
  return altnameRequest(RTM.DELLINKPROP, 0, ref, altname);
}

function altnameRequest(type: number, flags: number, ref: LinkRef, altname: string): Request {
  validateAltname(String(altname));
  const t = target(ref);
  return request(linkMessage, type, flags, t.header, { ...t.attrs, propList: { altnames: [altname] } });
}

/**
 * ip link set LINK type bridge_slave [learning on|off] [flood on|off] [isolated on|off] [guard on|off] ...
 * Every IFLA_BRPORT_* flag, as 0 or 1 (state, priority, cost as numbers).
 */
export function setBridgePortRequest(ref: LinkRef, port: BridgePortAttrs): Request {
  return change(ref, { linkinfo: { kind: 'bridge_slave', slaveData: port } });
}

/** ip link set LINK group N */
export function setGroupRequest(ref: LinkRef, group: number): Request {
  return change(ref, { group: validateU32(group, 'group') });
}

/**
 * ip link del group N: every link of the group in one unregister, so they share one RCU
 * grace period (~15-20 ms) instead of paying one each.
 */
export function deleteGroupRequest(group: number): Request {
  return request(linkMessage, RTM.DELLINK, 0, { index: 0 }, { group: validateU32(group, 'group', 1) });
}

/** RTEXT_FILTER_* bits for IFLA_EXT_MASK. */
export const RTEXT_FILTER = { VF: 1, BRVLAN: 2, BRVLAN_COMPRESSED: 4, SKIP_STATS: 8 } as const;

/**
 * ip link show dev LINK. By default the kernel is asked to skip the statistics of virtual
 * functions (RTEXT_FILTER_SKIP_STATS; the link's own counters always come); `ip link show`
 * itself sends family AF_PACKET and RTEXT_FILTER_VF.
 */
export function getRequest(ref: LinkRef, opts: { family?: number; extMask?: number } = {}): Request {
  const t = target(ref);
  return request(linkMessage, RTM.GETLINK, 0, { ...t.header, family: opts.family ?? AF.UNSPEC }, { ...t.attrs, extMask: opts.extMask ?? RTEXT_FILTER.SKIP_STATS });
}

/** ip link show (the dump request; strict checking wants a full, zeroed ifinfomsg) */
export function dumpRequest(filter: { master?: number; kind?: string; extMask?: number } = {}): Request {
  const attrs: LinkAttrs = {};
  if (filter.extMask !== undefined) attrs.extMask = filter.extMask;
  if (filter.master !== undefined) attrs.master = filter.master;
  if (filter.kind !== undefined) attrs.linkinfo = { kind: filter.kind };
  return request(linkMessage, RTM.GETLINK, 0, { family: AF.UNSPEC }, attrs);
}
