/** tsnetlink: rtnetlink for Node.js in pure TypeScript, and bridge networks for containers. */
export * from './errors.js';
export { Rtnl } from './netlink/rtnl.js';
export type { Link, LinkRef, LinkCreateOptions, VethPeerOptions, Address, AddrOptions, Route, RouteSpec } from './netlink/rtnl.js';
export { NetlinkSocket, KernelTransport, parseError, type Transport, type SocketOptions, type BatchResult, type DumpOptions } from './netlink/socket.js';
export * as linkRequests from './netlink/link.js';
export * as addrRequests from './netlink/addr.js';
export * as routeRequests from './netlink/route.js';
export * as constants from './netlink/constants.js';
export { encode, encodeBatch, splitMessages, decodePayload, type Request, type RawMessage } from './netlink/message.js';
export { validateIfname, parseCidr, parseIp } from './netlink/validate.js';
export { kernelClock } from './netlink/libc.js';
export { NetnsHandle, openNetns, currentNetns, withNetns, openSocketIn, openRtnlIn, type NetnsSpec } from './ns/netns.js';
export { createNamedNetns, deleteNamedNetns, createAnonymousNetns } from './ns/named.js';
export { spawnInNetns, spawnSyncInNetns } from './ns/spawn.js';
export * from './bridge/index.js';
export * from './firewall/index.js';
export { checkEndpointId, checkNetworkName, ENDPOINT_ID_MAX } from './names.js';
export * as iptables from './iptables/index.js';
