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
  u16,
  rawAttrs,
  NLA_HDRLEN,
  align4,
  type Attrs,
  type Codec,
  type RawAttr,
  type Schema,
} from './attr.js';
import { AF, IFA, IFLA, IFLA_BR, IFLA_BRPORT, IFLA_INET6, IFLA_INFO, VETH_INFO_PEER } from './constants.js';
import { struct, structCodec, type MessageDef } from './message.js';

import { CodecError } from '../errors.js';

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

export const bridgeAttrs = {
  forwardDelay: attr(IFLA_BR.FORWARD_DELAY, u32),
  helloTime: attr(IFLA_BR.HELLO_TIME, u32),
  maxAge: attr(IFLA_BR.MAX_AGE, u32),
  ageingTime: attr(IFLA_BR.AGEING_TIME, u32),
  stpState: attr(IFLA_BR.STP_STATE, u32),
  priority: attr(IFLA_BR.PRIORITY, u16),
  vlanFiltering: attr(IFLA_BR.VLAN_FILTERING, u8),
  mcastSnooping: attr(IFLA_BR.MCAST_SNOOPING, u8),
} as const satisfies Schema;

export const bridgePortAttrs = {
  state: attr(IFLA_BRPORT.STATE, u8),
  priority: attr(IFLA_BRPORT.PRIORITY, u16),
  cost: attr(IFLA_BRPORT.COST, u32),
  hairpin: attr(IFLA_BRPORT.MODE, u8),
  guard: attr(IFLA_BRPORT.GUARD, u8),
  learning: attr(IFLA_BRPORT.LEARNING, u8),
  unicastFlood: attr(IFLA_BRPORT.UNICAST_FLOOD, u8),
  isolated: attr(IFLA_BRPORT.ISOLATED, u8),
} as const satisfies Schema;

/** A link message body: ifinfomsg header plus attributes (also the payload of VETH_INFO_PEER). */
export interface LinkBody {
  header?: Partial<IfInfoMsg>;
  attrs: LinkAttrs;
}

const linkBodyCodec: Codec<LinkBody> = lazy(() => ({
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

export const vethAttrs = {
  peer: attr(VETH_INFO_PEER, linkBodyCodec),
} as const satisfies Schema;

/** IFLA_INFO_DATA schemas by link kind; other kinds keep their data as raw bytes. */
const kindData: Record<string, Schema> = { bridge: bridgeAttrs, veth: vethAttrs };
/** IFLA_INFO_SLAVE_DATA schemas by slave kind. */
const slaveKindData: Record<string, Schema> = { bridge: bridgePortAttrs };

export type BridgeAttrs = Attrs<typeof bridgeAttrs>;
export type VethAttrs = Attrs<typeof vethAttrs>;
export type BridgePortAttrs = Attrs<typeof bridgePortAttrs>;

/** IFLA_LINKINFO, whose DATA and SLAVE_DATA are typed by the sibling KIND and SLAVE_KIND. */
export interface LinkInfo {
  kind?: string;
  data?: BridgeAttrs | VethAttrs | Buffer;
  slaveKind?: string;
  slaveData?: BridgePortAttrs | Buffer;
  unknown?: RawAttr[];
}

function dataCodec(table: Record<string, Schema>, kind: string | undefined): Codec<any> {
  const s = kind !== undefined ? table[kind] : undefined;
  return s ? nested(s) : bytes;
}

const linkInfoSchemas = new Map<string, Schema>();
/** The IFLA_LINKINFO schema for a kind pair, built once (the codec caches work per schema object). */
function linkInfoSchema(info: { kind?: string | undefined; slaveKind?: string | undefined }): Schema {
  const key = `${info.kind ?? ''}/${info.slaveKind ?? ''}`;
  let s = linkInfoSchemas.get(key);
  if (!s) {
    s = {
      kind: attr(IFLA_INFO.KIND, str),
      data: attr(IFLA_INFO.DATA, dataCodec(kindData, info.kind)),
      slaveKind: attr(IFLA_INFO.SLAVE_KIND, str),
      slaveData: attr(IFLA_INFO.SLAVE_DATA, dataCodec(slaveKindData, info.slaveKind)),
    };
    // Kinds come from the kernel too; bound the cache so odd input cannot grow it forever.
    if (linkInfoSchemas.size < 256) linkInfoSchemas.set(key, s);
  }
  return s;
}

const linkInfoCodec: Codec<LinkInfo> = {
  size: (v) => attrsSize(linkInfoSchema(v), v as Attrs<Schema>),
  write: (b, o, v) => void writeAttrs(linkInfoSchema(v), v as Attrs<Schema>, b, o),
  read: (b, o, l) => {
    // KIND may follow DATA on the wire in principle, so find the kinds first.
    const kinds: { kind?: string; slaveKind?: string } = {};
    for (const a of rawAttrs(b, o, o + l)) {
      if (a.type === IFLA_INFO.KIND) kinds.kind = str.read(a.data, 0, a.data.length);
      if (a.type === IFLA_INFO.SLAVE_KIND) kinds.slaveKind = str.read(a.data, 0, a.data.length);
    }
    return readAttrs(linkInfoSchema(kinds), b, o, o + l) as LinkInfo;
  },
};

export const inet6LinkAttrs = {
  flags: attr(IFLA_INET6.FLAGS, u32),
  addrGenMode: attr(IFLA_INET6.ADDR_GEN_MODE, u8),
} as const satisfies Schema;

/** IFLA_AF_SPEC: per address family link settings (only IPv6's are modelled; the rest is kept raw). */
export const afSpecAttrs = {
  inet6: attr(AF.INET6, nested(inet6LinkAttrs)),
} as const satisfies Schema;

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
  address: attr(IFA.ADDRESS, ipAddr),
  broadcast: attr(IFA.BROADCAST, ipAddr),
  anycast: attr(IFA.ANYCAST, ipAddr),
  label: attr(IFA.LABEL, strz),
  flags: attr(IFA.FLAGS, u32),
  rtPriority: attr(IFA.RT_PRIORITY, u32),
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
