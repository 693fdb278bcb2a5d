/**
 * rtnetlink message schemas: links (ifinfomsg + IFLA_*), addresses (ifaddrmsg + IFA_*) and
 * routes (rtmsg + RTA_*). Attribute order is the order iproute2 emits them, so our requests
 * match its bytes exactly (checked against fixtures in test/fixtures).
 */
import {
  attr,
  bytes,
  ipAddr,
  lazy,
  mac,
  nested,
  readAttrs,
  attrsSize,
  writeAttrs,
  s32,
  str,
  strz,
  u32,
  u8,
  repeated,
  u16,
  NLA_HDRLEN,
  align4,
  type Attrs,
  type Codec,
  type RawAttr,
  type Schema,
} from '../core/attr.js';
import { AF, IFA, IFLA, IFLA_INET6, IFLA_INFO } from '../core/constants.js';
import { struct, structCodec, type MessageDef } from '../core/message.js';

import { CodecError } from '../../errors.js';
import { linkKind, slaveSchemaOf } from './kinds/registry.js';
import { linkStats32, linkStats64 } from './link-stats.js';

// ---------------------------------------------------------------- links

export const ifinfomsg = struct([
  ['family', 'u8'],
  ['pad', 'u8'],
  ['type', 'u16'],
  ['index', 's32'],
  ['flags', 'u32'],
  ['change', 'u32'],
] as const);
export type IfInfoMsg = ReturnType<typeof ifinfomsg.read>;

/** A link message body: ifinfomsg header plus attributes (also the payload of VETH_INFO_PEER). */
export interface LinkBody {
  header?: Partial<IfInfoMsg>;
  attrs: LinkAttrs;
}

export const linkBodyCodec: Codec<LinkBody> = lazy(() => ({
  size: (v) => ifinfomsg.size + attrsSize(linkAttrs, v.attrs),
  write: (b, o, v) => {
    ifinfomsg.write(b, o, v.header ?? {});
    writeAttrs(linkAttrs, v.attrs, b, o + ifinfomsg.size);
  },
  read: (b, o, l) => {
    if (l < ifinfomsg.size) throw new CodecError('VETH_INFO_PEER shorter than ifinfomsg', o);
    return { header: ifinfomsg.read(b, o), attrs: readAttrs(linkAttrs, b, o + ifinfomsg.size, o + l) };
  },
}));

export { bridgeAttrs, bridgePortAttrs, type BridgeAttrs, type BridgePortAttrs } from './kinds/bridge.js';
export { vethAttrs, type VethAttrs } from './kinds/veth.js';

/** IFLA_LINKINFO, whose DATA and SLAVE_DATA are typed by the sibling KIND and SLAVE_KIND. */
export interface LinkInfo {
  kind?: string;
  /** The kind's typed options when the kind is registered (see kinds/registry), else raw bytes. */
  data?: Attrs<Schema> | Buffer;
  slaveKind?: string;
  slaveData?: Attrs<Schema> | Buffer;
  unknown?: RawAttr[];
}

function dataCodec(s: Schema | undefined): Codec<any> {
  return s ? nested(s) : bytes;
}

const linkInfoSchemas = new Map<string | undefined, Map<string | undefined, Schema>>();
/** The IFLA_LINKINFO schema for a kind pair, built once (the codec caches work per schema object). */
function linkInfoSchema(info: { kind?: string | undefined; slaveKind?: string | undefined }): Schema {
  let byKind = linkInfoSchemas.get(info.kind);
  if (!byKind) {
    byKind = new Map();
    // Kinds come from the kernel too; bound the cache so odd input cannot grow it forever.
    if (linkInfoSchemas.size < 256) linkInfoSchemas.set(info.kind, byKind);
  }
  let s = byKind.get(info.slaveKind);
  if (!s) {
    s = {
      kind: attr(IFLA_INFO.KIND, str),
      data: attr(IFLA_INFO.DATA, dataCodec(linkKind(info.kind)?.data)),
      slaveKind: attr(IFLA_INFO.SLAVE_KIND, str),
      slaveData: attr(IFLA_INFO.SLAVE_DATA, dataCodec(slaveSchemaOf(info.slaveKind, info.kind))),
    };
    if (byKind.size < 16) byKind.set(info.slaveKind, s);
  }
  return s;
}

function kindsIn(b: Buffer, o: number, l: number): { kind?: string; slaveKind?: string } {
  // KIND may follow DATA on the wire in principle, so find the kinds first.
  const kinds: { kind?: string; slaveKind?: string } = {};
  for (let off = o, end = o + l; off + NLA_HDRLEN <= end; ) {
    const len = b.readUInt16LE(off);
    const type = b.readUInt16LE(off + 2);
    if (len < NLA_HDRLEN || off + len > end) break;
    if (type === IFLA_INFO.KIND) kinds.kind = str.read(b, off + NLA_HDRLEN, len - NLA_HDRLEN);
    else if (type === IFLA_INFO.SLAVE_KIND) kinds.slaveKind = str.read(b, off + NLA_HDRLEN, len - NLA_HDRLEN);
    off += align4(len);
  }
  return kinds;
}

/**
 * IFLA_LINKINFO for a Link view, in one pass: the kinds, then DATA and SLAVE_DATA decoded by the
 * kinds' schemas (raw bytes for a kind nobody registered).
 */
export function readLinkInfoView(b: Buffer, o: number, l: number): LinkInfo {
  const info: LinkInfo = {};
  let data = -1;
  let dataLen = 0;
  let slave = -1;
  let slaveLen = 0;
  for (let off = o, end = o + l; off + NLA_HDRLEN <= end; ) {
    const len = b.readUInt16LE(off);
    const type = b.readUInt16LE(off + 2) & 0x3fff;
    if (len < NLA_HDRLEN || off + len > end) throw new CodecError(`IFLA_LINKINFO attribute of length ${len}`, off);
    if (type === IFLA_INFO.KIND) info.kind = str.read(b, off + NLA_HDRLEN, len - NLA_HDRLEN);
    else if (type === IFLA_INFO.SLAVE_KIND) info.slaveKind = str.read(b, off + NLA_HDRLEN, len - NLA_HDRLEN);
    else if (type === IFLA_INFO.DATA) [data, dataLen] = [off + NLA_HDRLEN, len - NLA_HDRLEN];
    else if (type === IFLA_INFO.SLAVE_DATA) [slave, slaveLen] = [off + NLA_HDRLEN, len - NLA_HDRLEN];
    off += align4(len);
  }
  if (data >= 0) {
    const s = linkKind(info.kind)?.data;
    info.data = s ? readAttrs(s, b, data, data + dataLen) : b.subarray(data, data + dataLen);
  }
  if (slave >= 0) {
    const s = slaveSchemaOf(info.slaveKind, info.kind);
    info.slaveData = s ? readAttrs(s, b, slave, slave + slaveLen) : b.subarray(slave, slave + slaveLen);
  }
  return info;
}

const linkInfoCodec: Codec<LinkInfo> & { schemaAt(b: Buffer, o: number, l: number): Schema } = {
  size: (v) => attrsSize(linkInfoSchema(v), v as Attrs<Schema>),
  write: (b, o, v) => void writeAttrs(linkInfoSchema(v), v as Attrs<Schema>, b, o),
  read: (b, o, l) => readAttrs(linkInfoSchema(kindsIn(b, o, l)), b, o, o + l) as LinkInfo,
  schemaAt: (b, o, l) => linkInfoSchema(kindsIn(b, o, l)),
};

export const inet6LinkAttrs = {
  flags: attr(IFLA_INET6.FLAGS, u32),
  addrGenMode: attr(IFLA_INET6.ADDR_GEN_MODE, u8),
  // Device configuration and counters, as the kernel's arrays of integers.
  conf: attr(IFLA_INET6.CONF, bytes),
  stats: attr(IFLA_INET6.STATS, bytes),
  icmp6stats: attr(IFLA_INET6.ICMP6STATS, bytes),
  cacheinfo: attr(IFLA_INET6.CACHEINFO, bytes),
  token: attr(IFLA_INET6.TOKEN, bytes),
  raMtu: attr(IFLA_INET6.RA_MTU, u32),
} as const satisfies Schema;

/** IFLA_AF_SPEC: per address family link settings (IPv6's flags and address generation named; device configurations as bytes). */
export const afSpecAttrs = {
  inet: attr(AF.INET, nested({ conf: attr(1, bytes) } as const)),
  inet6: attr(AF.INET6, nested(inet6LinkAttrs)),
} as const satisfies Schema;

/** IFLA_PROP_LIST: the alternative names of a link. */
export const propListAttrs = { altnames: repeated(IFLA.ALT_IFNAME, strz) } as const satisfies Schema;

export const linkAttrs = {
  address: attr(IFLA.ADDRESS, mac),
  broadcast: attr(IFLA.BROADCAST, mac),
  mtu: attr(IFLA.MTU, u32),
  link: attr(IFLA.LINK, u32),
  qdisc: attr(IFLA.QDISC, strz),
  master: attr(IFLA.MASTER, u32),
  txqlen: attr(IFLA.TXQLEN, u32),
  operstate: attr(IFLA.OPERSTATE, u8),
  linkmode: attr(IFLA.LINKMODE, u8),
  netNsPid: attr(IFLA.NET_NS_PID, u32),
  netNsFd: attr(IFLA.NET_NS_FD, u32),
  ifalias: attr(IFLA.IFALIAS, strz),
  group: attr(IFLA.GROUP, u32),
  promiscuity: attr(IFLA.PROMISCUITY, u32),
  numTxQueues: attr(IFLA.NUM_TX_QUEUES, u32),
  numRxQueues: attr(IFLA.NUM_RX_QUEUES, u32),
  carrier: attr(IFLA.CARRIER, u8),
  linkNetnsid: attr(IFLA.LINK_NETNSID, s32),
  newNetnsid: attr(IFLA.NEW_NETNSID, s32),
  targetNetnsid: attr(IFLA.TARGET_NETNSID, s32),
  minMtu: attr(IFLA.MIN_MTU, u32),
  maxMtu: attr(IFLA.MAX_MTU, u32),
  permAddress: attr(IFLA.PERM_ADDRESS, mac),
  afSpec: attr(IFLA.AF_SPEC, nested(afSpecAttrs)),
  propList: attr(IFLA.PROP_LIST, nested(propListAttrs), { nestedFlag: true }),
  altIfname: attr(IFLA.ALT_IFNAME, strz),
  stats: attr(IFLA.STATS, linkStats32),
  stats64: attr(IFLA.STATS64, linkStats64),
  carrierChanges: attr(IFLA.CARRIER_CHANGES, u32),
  carrierUpCount: attr(IFLA.CARRIER_UP_COUNT, u32),
  carrierDownCount: attr(IFLA.CARRIER_DOWN_COUNT, u32),
  protoDown: attr(IFLA.PROTO_DOWN, u8),
  gsoMaxSegs: attr(IFLA.GSO_MAX_SEGS, u32),
  gsoMaxSize: attr(IFLA.GSO_MAX_SIZE, u32),
  groMaxSize: attr(IFLA.GRO_MAX_SIZE, u32),
  tsoMaxSize: attr(IFLA.TSO_MAX_SIZE, u32),
  tsoMaxSegs: attr(IFLA.TSO_MAX_SEGS, u32),
  allmulti: attr(IFLA.ALLMULTI, u32),
  gsoIpv4MaxSize: attr(63, u32),
  groIpv4MaxSize: attr(64, u32),
  devlinkPort: attr(62, bytes),
  dpllPin: attr(65, bytes),
  maxPacingOffloadHorizon: attr(66, u32),
  netnsImmutable: attr(67, u8),
  headroom: attr(68, u16),
  tailroom: attr(69, u16),
  parentDevName: attr(IFLA.PARENT_DEV_NAME, strz),
  parentDevBusName: attr(IFLA.PARENT_DEV_BUS_NAME, strz),
  xdp: attr(IFLA.XDP, bytes),
  map: attr(IFLA.MAP, bytes),
  // iproute2 adds the name after the other attributes it parsed, then the kind: keep that order.
  ifname: attr(IFLA.IFNAME, strz),
  extMask: attr(IFLA.EXT_MASK, u32),
  linkinfo: attr(IFLA.LINKINFO, linkInfoCodec),
} as const satisfies Schema;
export type LinkAttrs = Attrs<typeof linkAttrs>;

export const linkMessage: MessageDef<keyof IfInfoMsg, typeof linkAttrs> = { header: ifinfomsg, attrs: linkAttrs };

// ---------------------------------------------------------------- addresses

export const ifaddrmsg = struct([
  ['family', 'u8'],
  ['prefixlen', 'u8'],
  ['flags', 'u8'],
  ['scope', 'u8'],
  ['index', 'u32'],
] as const);
export type IfAddrMsg = ReturnType<typeof ifaddrmsg.read>;

/** struct ifa_cacheinfo: preferred and valid lifetimes in seconds (0xffffffff: forever), creation and update stamps. */
export const ifaCacheinfo = structCodec(struct([['preferred', 'u32'], ['valid', 'u32'], ['cstamp', 'u32'], ['tstamp', 'u32']] as const));

export const addrAttrs = {
  local: attr(IFA.LOCAL, ipAddr),
  // `metric` is added as parsed, IFA_ADDRESS (the peer, or the local address again) after the loop.
  rtPriority: attr(IFA.RT_PRIORITY, u32),
  address: attr(IFA.ADDRESS, ipAddr),
  broadcast: attr(IFA.BROADCAST, ipAddr),
  anycast: attr(IFA.ANYCAST, ipAddr),
  label: attr(IFA.LABEL, strz),
  flags: attr(IFA.FLAGS, u32),
  proto: attr(IFA.PROTO, u8),
  cacheinfo: attr(IFA.CACHEINFO, ifaCacheinfo),
  multicast: attr(IFA.MULTICAST, ipAddr),
} as const satisfies Schema;
export type AddrAttrs = Attrs<typeof addrAttrs>;

export const addrMessage: MessageDef<keyof IfAddrMsg, typeof addrAttrs> = { header: ifaddrmsg, attrs: addrAttrs };

// ---------------------------------------------------------------- routes

export { rtmsg, routeAttrs, routeMessage, type RtMsg, type RouteAttrs } from './route-schema.js';

// Re-exported for modules that build ad-hoc nests.
export { NLA_HDRLEN, align4 };
