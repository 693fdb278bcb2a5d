/** The bond kind: IFLA_BOND_* (the common options named as `ip link ... type bond` names them) and IFLA_BOND_SLAVE_* of its ports. */
import { attr, ipAddr, mac, named, nested, nestedArray, u8, u16, u32, type Attrs, type Schema } from '../../core/attr.js';
import type { LinkKind } from './registry.js';

export const BOND_MODE = { 'balance-rr': 0, 'active-backup': 1, 'balance-xor': 2, broadcast: 3, '802.3ad': 4, 'balance-tlb': 5, 'balance-alb': 6 } as const;
export const BOND_XMIT_HASH = { layer2: 0, 'layer3+4': 1, 'layer2+3': 2, 'encap2+3': 3, 'encap3+4': 4, 'vlan+srcmac': 5 } as const;

export const bondAttrs = {
  mode: attr(1, named(u8, BOND_MODE)),
  miimon: attr(3, u32),
  updelay: attr(4, u32),
  downdelay: attr(5, u32),
  minLinks: attr(18, u32),
  lacpRate: attr(21, named(u8, { slow: 0, fast: 1 })),
  xmitHashPolicy: attr(14, named(u8, BOND_XMIT_HASH)),
  activeSlave: attr(2, u32),
  useCarrier: attr(6, u8),
  arpInterval: attr(7, u32),
  arpIpTarget: attr(8, nestedArray(ipAddr)),
  arpValidate: attr(9, u32),
  arpAllTargets: attr(10, u32),
  primary: attr(11, u32),
  primaryReselect: attr(12, u8),
  failOverMac: attr(13, u8),
  resendIgmp: attr(15, u32),
  numPeerNotif: attr(16, u8),
  allSlavesActive: attr(17, u8),
  lpInterval: attr(19, u32),
  packetsPerSlave: attr(20, u32),
  adSelect: attr(22, named(u8, { stable: 0, bandwidth: 1, count: 2 })),
  adInfo: attr(23, nested({ aggregator: attr(1, u16), numPorts: attr(2, u16), actorKey: attr(3, u16), partnerKey: attr(4, u16), partnerMac: attr(5, mac) } as const)),
  adActorSysPrio: attr(24, u16),
  adUserPortKey: attr(25, u16),
  adActorSystem: attr(26, mac),
  tlbDynamicLb: attr(27, u8),
  peerNotifDelay: attr(28, u32),
  adLacpActive: attr(29, u8),
  missedMax: attr(30, u8),
  nsIp6Target: attr(31, nestedArray(ipAddr)),
  coupledControl: attr(32, u8),
  broadcastNeigh: attr(33, u8),
} as const satisfies Schema;
export type BondOptions = Attrs<typeof bondAttrs>;

/** IFLA_BOND_SLAVE_* */
export const bondPortAttrs = {
  state: attr(1, named(u8, { active: 0, backup: 1 })),
  miiStatus: attr(2, named(u8, { up: 0, fail: 1, down: 2, back: 3 })),
  linkFailureCount: attr(3, u32),
  permHwaddr: attr(4, mac),
  queueId: attr(5, u16),
  adAggregatorId: attr(6, u16),
  adActorOperPortState: attr(7, u8),
  adPartnerOperPortState: attr(8, u16),
  prio: attr(9, u32),
  actorPortPrio: attr(10, u16),
} as const satisfies Schema;
export type BondPortAttrs = Attrs<typeof bondPortAttrs>;

export const bondKind: LinkKind<typeof bondAttrs> = { kind: 'bond', data: bondAttrs, slaveData: bondPortAttrs };
