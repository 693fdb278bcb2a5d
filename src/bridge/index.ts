/** Bridge networks for containers: networks, IPAM, endpoints and port mappings. */
export { Networks, type NetworksOptions, type CreateNetworkOptions, type NetworkInfo } from './networks.js';
export { macForIp, openContainer, type ConnectOptions, type ContainerRef } from './endpoints.js';
export type { EndpointRecord, NetworkRecord } from './types.js';
export { NetworkError, StepError, type NetworkErrorCode } from './errors.js';
export { parsePortMapping, normalizeMappings, formatMapping, type PortMapping } from './ports.js';
export { parseSubnet, overlaps, type Subnet } from './cidr.js';
export { Ipam, IpamError } from './ipam.js';
export { Store, LockTimeoutError, StoreError } from './store.js';
