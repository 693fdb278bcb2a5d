/**
 * The Firewall seam: what bridge networking needs from a packet filter, and nothing about how a
 * backend does it. The bridge layer computes the desired state (under the lock that protects
 * it) and hands it in; a backend never reads tsnetlink's state and never calls back. Two
 * backends implement it, one folder each with one row in registry.ts: native nf_tables
 * (firewall/nftables/, the default where the kernel has it) and iptables-restore (firewall/iptables/).
 */
import { TsnetlinkError } from '../errors.js';

/** Transport protocols a mapping can publish. */
export type Protocol = 'tcp' | 'udp';

/** A published port: hostIp (default: every local address) hostPort -> container's containerPort. */
export interface PortMapping {
  /**
   * Omitted or "0.0.0.0": every local address, of both families on a dual-stack network;
   * "127.0.0.1": the host's IPv4 loopback only; an IPv6 address ("2001:db8::1", written
   * `[2001:db8::1]:8080:80` in a port spec) or "::" (every local IPv6 address): IPv6 only.
   */
  hostIp?: string | undefined;
  hostPort: number;
  containerPort: number;
  protocol: Protocol;
}

/**
 * How a network's gateway treats traffic from outside. 'nat' (default): outbound traffic is
 * masqueraded and only published ports are reachable from outside. 'nat-unprotected': outbound
 * is masqueraded, and hosts that route the subnet via this host reach every container port.
 * 'routed': no NAT at all and direct access allowed (Docker's gateway_mode_ipv4 values).
 */
export type GatewayMode = 'nat' | 'nat-unprotected' | 'routed';

/** What a firewall needs to know about a network. */
export interface FirewallNetwork {
  name: string;
  bridge: string;
  /** IPv4 CIDR, e.g. 192.168.10.0/24; absent on an IPv6-only network. */
  subnet?: string | undefined;
  /** IPv6 CIDR, e.g. fd00:10::/64; absent on an IPv4-only network. */
  subnet6?: string | undefined;
  /** No traffic in or out of the network except between its own containers (and the host). */
  internal?: boolean;
  /** Containers of the network may talk to each other (default true). */
  icc?: boolean;
  gatewayMode?: GatewayMode;
}

/** What a firewall needs to know about an endpoint: its address and its published ports. */
export interface FirewallEndpoint {
  id: string;
  /** The network's name. */
  network: string;
  /** IPv4 address (absent on an IPv6-only network). */
  ip?: string | undefined;
  /** IPv6 address (absent on an IPv4-only network). */
  ip6?: string | undefined;
  mappings: PortMapping[];
}

/** Everything the firewall should hold, as computed from tsnetlink's records. */
export interface FirewallState {
  networks: FirewallNetwork[];
  endpoints: FirewallEndpoint[];
}

/** One way the live ruleset differs from the desired state. */
export interface FirewallDifference {
  kind: 'missing' | 'unexpected' | 'duplicate' | 'changed';
  /** What differs, in words: "nat TSN-HOSTPORTS jump for endpoint c1". */
  what: string;
}

/** Connection-tracking entries to forget, so that a reused address or port gets no stale flow. */
export interface ConnectionFilter {
  /** Entries whose original source or reply source is one of these addresses. */
  ips?: readonly string[];
  /** UDP entries towards these host ports (flows seen before a mapping existed). */
  udpPorts?: readonly { port: number; hostIp?: string }[];
}

/**
 * A packet-filter backend. Incremental calls (addEndpoints, removeEndpoints) throw
 * FirewallDriftError when the live ruleset is not what they expect, without changing anything
 * the desired state would not also have; the caller answers with apply(desired state).
 */
export interface Firewall {
  /** 'iptables-nft', 'iptables-legacy', 'memory', ... */
  readonly backend: string;
  /**
   * Whether addEndpoints and removeEndpoints of different endpoints may run at the same time, in
   * several processes: each is one transaction of its own that the backend applies against the
   * ruleset as it is at that moment, so two never undo each other. Callers still keep apply,
   * setNetworks and diff apart from them. Absent means no.
   */
  readonly parallelEndpointChanges?: boolean;
  /** Throws FirewallUnavailableError (saying what to install) when the backend cannot work here. */
  ensureAvailable(): Promise<void>;
  /** Rewrites the network-level rules for exactly `networks` (create and remove); endpoints' rules stay. */
  setNetworks(networks: readonly FirewallNetwork[]): Promise<void>;
  /** Adds the endpoints' port mappings (all on `network`). */
  addEndpoints(network: FirewallNetwork, endpoints: readonly FirewallEndpoint[]): Promise<void>;
  /** Removes the endpoints' port mappings. */
  removeEndpoints(endpoints: readonly FirewallEndpoint[]): Promise<void>;
  /** Makes the live ruleset exactly `state`: missing rules added, stale ones removed. */
  apply(state: FirewallState): Promise<void>;
  /** How the live ruleset differs from `state` ([] when it matches). */
  diff(state: FirewallState): Promise<FirewallDifference[]>;
  /** Forgets tracked connections (best effort: a missing conntrack tool is not an error). */
  forgetConnections(filter: ConnectionFilter): Promise<void>;
  /**
   * Drops forwarded traffic of `family` (default 4) that no rule accepts (`iptables -P FORWARD
   * DROP`, `ip6tables -P FORWARD DROP`), for when tsnetlink turns forwarding on: the host must
   * not start routing between its other interfaces. Resolves true when the policy changed.
   */
  dropUnmatchedForwarding(family?: 4 | 6): Promise<boolean>;
  /** Whether forwarded traffic of `family` (default 4) that no rule accepts is dropped (`iptables -S FORWARD` says `-P FORWARD DROP`). */
  forwardingDropped(family?: 4 | 6): Promise<boolean>;
  /**
   * Undoes dropUnmatchedForwarding: the FORWARD policy of `family` back to ACCEPT, for a create
   * that is rolled back. Resolves true when the policy changed.
   */
  acceptUnmatchedForwarding(family?: 4 | 6): Promise<boolean>;
  /** Releases what the backend keeps open (a netlink socket); optional, and safe to call twice. */
  close?(): void;
}

/** The live ruleset is not what an incremental change expected; apply the full desired state. */
export class FirewallDriftError extends TsnetlinkError {
  override name = 'FirewallDriftError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('EFWDRIFT', message, options);
  }
}

/** The firewall backend cannot run on this host (a tool or kernel feature is missing). */
export class FirewallUnavailableError extends TsnetlinkError {
  override name = 'FirewallUnavailableError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('ENOFIREWALL', message, options);
  }
}

/** The families a mapping is published on: a host IP names one, none (or 0.0.0.0) means both. */
export function mappingFamilies(m: Pick<PortMapping, 'hostIp'>): readonly (4 | 6)[] {
  if (m.hostIp === undefined || m.hostIp === '0.0.0.0') return [4, 6];
  return m.hostIp.includes(':') ? [6] : [4];
}

/** Tells whether two mappings claim the same host port (same protocol and port, overlapping host IPs). */
export function mappingsOverlap(a: PortMapping, b: PortMapping): boolean {
  if (a.protocol !== b.protocol || a.hostPort !== b.hostPort) return false;
  // A family's wildcard ("::" for IPv6, none or 0.0.0.0 for both) covers every address of it.
  const wild = (m: PortMapping): boolean => m.hostIp === undefined || m.hostIp === '0.0.0.0' || m.hostIp === '::';
  const shared = mappingFamilies(a).some((f) => mappingFamilies(b).includes(f));
  if (!shared) return false;
  return wild(a) || wild(b) || a.hostIp === b.hostIp;
}

/**
 * The device group of every container's host-side veth (`ip link show group 0x74736e6c` lists
 * them): the bridge-family filter that keeps membership reports between containers matches it,
 * since a bridge port's name is random and this kernel may lack the bridge-name match.
 */
export const PORT_GROUP = 0x74736e6c;

/**
 * The bridge-port filter (membership reports of containers dropped where they enter a bridge), kept
 * by the router in step with the networks: present while some network has an IPv6 subnet.
 */
export interface PortFilter {
  /** Installs the filter when `wanted` and removes it otherwise; does nothing when already so. */
  sync(wanted: boolean): void;
  /** How the live filter differs from `wanted`. */
  diff(wanted: boolean): FirewallDifference[];
  close(): void;
}
