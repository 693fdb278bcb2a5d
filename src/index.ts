/** tsnetlink: rtnetlink for Node.js in pure TypeScript, and bridge networks for containers. */
export * from './exports/netlink.js';
export * from './exports/firewall.js';
export * from './bridge/index.js';
export { checkEndpointId, checkNetworkName, ENDPOINT_ID_MAX } from './names.js';
