/** The bridge kind: every IFLA_BR_* the kernel reports, and every IFLA_BRPORT_* of its ports. */
import { attr, be16, flag, mac, nested, u8, u16, u32, u64, type Attrs, type Codec, type Schema } from '../../core/attr.js';
import { struct, structCodec } from '../../core/message.js';
import { IFLA_BR, IFLA_BRPORT } from '../../core/constants.js';
import type { LinkKind } from './registry.js';

/** struct ifla_bridge_id: priority (2 bytes, network order) and MAC, shown as iproute2 does: '8000.aa:bb:cc:dd:ee:ff'. */
const bridgeId: Codec<string> = {
  size: () => 8,
  write: (b, o, v) => {
    const [prio, addr] = v.split('.');
    b.writeUInt16BE(parseInt(prio ?? '0', 16), o);
    mac.write(b, o + 2, addr ?? '00:00:00:00:00:00');
  },
  read: (b, o, l) => {
    if (l !== 8) return mac.read(b, o, l);
    return `${b.readUInt16BE(o).toString(16).padStart(4, '0')}.${mac.read(b, o + 2, 6)}`;
  },
};

/** IFLA_BR_*: the iproute2-settable options first, in its order, then what the kernel reports. Timers are in 1/100 s (USER_HZ). */
export const bridgeAttrs = {
  forwardDelay: attr(IFLA_BR.FORWARD_DELAY, u32),
  helloTime: attr(IFLA_BR.HELLO_TIME, u32),
  maxAge: attr(IFLA_BR.MAX_AGE, u32),
  ageingTime: attr(IFLA_BR.AGEING_TIME, u32),
  stpState: attr(IFLA_BR.STP_STATE, u32),
  priority: attr(IFLA_BR.PRIORITY, u16),
  vlanFiltering: attr(IFLA_BR.VLAN_FILTERING, u8),
  vlanProtocol: attr(IFLA_BR.VLAN_PROTOCOL, be16),
  groupFwdMask: attr(IFLA_BR.GROUP_FWD_MASK, u16),
  rootId: attr(10, bridgeId),
  bridgeId: attr(11, bridgeId),
  rootPort: attr(12, u16),
  rootPathCost: attr(13, u32),
  topologyChange: attr(14, u8),
  topologyChangeDetected: attr(15, u8),
  helloTimer: attr(16, u64),
  tcnTimer: attr(17, u64),
  topologyChangeTimer: attr(18, u64),
  gcTimer: attr(19, u64),
  groupAddr: attr(20, mac),
  fdbFlush: attr(21, flag),
  mcastRouter: attr(22, u8),
  mcastSnooping: attr(IFLA_BR.MCAST_SNOOPING, u8),
  mcastQueryUseIfaddr: attr(24, u8),
  mcastQuerier: attr(25, u8),
  mcastHashElasticity: attr(26, u32),
  mcastHashMax: attr(27, u32),
  mcastLastMemberCnt: attr(28, u32),
  mcastStartupQueryCnt: attr(29, u32),
  mcastLastMemberIntvl: attr(30, u64),
  mcastMembershipIntvl: attr(31, u64),
  mcastQuerierIntvl: attr(32, u64),
  mcastQueryIntvl: attr(33, u64),
  mcastQueryResponseIntvl: attr(34, u64),
  mcastStartupQueryIntvl: attr(35, u64),
  nfCallIptables: attr(36, u8),
  nfCallIp6tables: attr(37, u8),
  nfCallArptables: attr(38, u8),
  vlanDefaultPvid: attr(IFLA_BR.VLAN_DEFAULT_PVID, u16),
  vlanStatsEnabled: attr(41, u8),
  mcastStatsEnabled: attr(42, u8),
  mcastIgmpVersion: attr(43, u8),
  mcastMldVersion: attr(44, u8),
  vlanStatsPerPort: attr(45, u8),
  multiBoolopt: attr(46, structCodec(struct([['optval', 'u32'], ['optmask', 'u32']] as const))),
  mcastQuerierState: attr(47, nested({} as Schema)),
  fdbNLearned: attr(48, u32),
  fdbMaxLearned: attr(49, u32),
} as const satisfies Schema;
export type BridgeAttrs = Attrs<typeof bridgeAttrs>;

/** IFLA_BRPORT_*: the flags `ip link set ... type bridge_slave` sets first, then the rest by number. */
export const bridgePortAttrs = {
  learning: attr(IFLA_BRPORT.LEARNING, u8),
  unicastFlood: attr(IFLA_BRPORT.UNICAST_FLOOD, u8),
  isolated: attr(IFLA_BRPORT.ISOLATED, u8),
  guard: attr(IFLA_BRPORT.GUARD, u8),
  mcastFlood: attr(27, u8),
  neighSuppress: attr(32, u8),
  state: attr(IFLA_BRPORT.STATE, u8),
  priority: attr(IFLA_BRPORT.PRIORITY, u16),
  cost: attr(IFLA_BRPORT.COST, u32),
  hairpin: attr(IFLA_BRPORT.MODE, u8),
  protect: attr(IFLA_BRPORT.PROTECT, u8),
  fastLeave: attr(IFLA_BRPORT.FAST_LEAVE, u8),
  proxyarp: attr(IFLA_BRPORT.PROXYARP, u8),
  learningSync: attr(11, u8),
  proxyarpWifi: attr(12, u8),
  rootId: attr(13, bridgeId),
  bridgeId: attr(14, bridgeId),
  designatedPort: attr(15, u16),
  designatedCost: attr(16, u16),
  id: attr(17, u16),
  no: attr(18, u16),
  topologyChangeAck: attr(19, u8),
  configPending: attr(20, u8),
  messageAgeTimer: attr(21, u64),
  forwardDelayTimer: attr(22, u64),
  holdTimer: attr(23, u64),
  flush: attr(24, flag),
  multicastRouter: attr(25, u8),
  mcastToUcast: attr(28, u8),
  vlanTunnel: attr(29, u8),
  broadcastFlood: attr(30, u8),
  groupFwdMask: attr(31, u16),
  backupPort: attr(34, u32),
  mrpRingOpen: attr(35, u8),
  mrpInOpen: attr(36, u8),
  mcastEhtHostsLimit: attr(37, u32),
  mcastEhtHostsCnt: attr(38, u32),
  locked: attr(39, u8),
  mab: attr(40, u8),
  mcastNGroups: attr(41, u32),
  mcastMaxGroups: attr(42, u32),
  neighVlanSuppress: attr(43, u8),
  backupNhid: attr(44, u32),
} as const satisfies Schema;
export type BridgePortAttrs = Attrs<typeof bridgePortAttrs>;

export const bridgeKind: LinkKind<typeof bridgeAttrs> = { kind: 'bridge', data: bridgeAttrs, slaveData: bridgePortAttrs };
