/** Bridge networks for containers: networks, IPAM, endpoints, port mappings and the reconciler. */
export { Networks, type NetworksOptions, type NetworkInfo, type CreateNetworkOptions, type CreateResult, type ReconcileReport } from './networks.js';
export { RoutedFirewall } from '../firewall/router.js';
export { BACKENDS, chosenBackend, defaultBackend, type BackendName } from '../firewall/registry.js';
export type { ConnectOptions, ConnectItem } from './connect.js';
export type { ContainerSide } from './health.js';
export { KernelHost, netnsKey, type ContainerRef, type HostSystem, type Sysctl } from './host.js';
export { macForIp, type AddressRecord, type EndpointRecord, type NetworkRecord, type RecordState } from './records.js';
export { NetworkError, StepError, type NetworkErrorCode } from './errors.js';
export { HostListenerError, listenerOverlaps, findHostListeners, type HostListener } from './listeners.js';
export { Abandon, type FaultHook } from './steps.js';
export { parsePortMapping, normalizeMappings, formatMapping, type PortMapping } from './ports.js';
export { parseSubnet, overlaps, type Subnet } from '../ip/cidr.js';
export { Ipam, IpamError } from './ipam.js';
export { Store, LockTimeoutError, StoreError, type CorruptRecord, type Listing, type PortReservation } from './store.js';
export { TAG_PREFIX, bridgeTag, endpointTag, findLink, parseTag } from './links.js';
export { checkBandwidth, ifbNameFor, ifbTag, type Bandwidth, type RateLimit } from './shaping.js';
