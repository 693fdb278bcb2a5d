/** Records kept in the state directory, and the public shapes of networks and endpoints. */
import type { PortMapping } from '../iptables/rules.js';

/** A bridge network as persisted (`tsnetlink network inspect NAME`). */
export interface NetworkRecord {
  name: string;
  driver: 'bridge';
  /** Linux bridge name (equal to the network name, as in the seed). */
  bridge: string;
  /** Canonical subnet, e.g. 192.168.10.0/24. */
  subnet: string;
  gateway: string;
  prefix: number;
  mtu?: number;
  createdAt: string;
}

/** A container attached to a network. */
export interface EndpointRecord {
  id: string;
  network: string;
  ip: string;
  /** CIDR as configured inside the container, e.g. 192.168.10.2/24. */
  cidr: string;
  mac: string;
  gateway: string;
  /** Host-side veth name (random veth%08x). */
  hostIfname: string;
  /** Interface name inside the container. */
  ifname: string;
  /** The container netns as given (path, /proc/PID/ns/net or /run/netns/NAME). */
  netns: string;
  /** st_dev:st_ino of the netns, to refuse a second connect of the same container. */
  netnsKey: string;
  mappings: PortMapping[];
  createdAt: string;
}
