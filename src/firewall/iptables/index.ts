/** iptables support for bridge networks: pure restore-text builders and the runner that applies them. */
export { IptablesError } from './errors.js';
export {
  type EndpointRuleSpec,
  type Jump,
  type NetworkRuleSpec,
  type PortMapping,
  type Protocol,
  type Table,
  CHAIN_PREFIX,
  CHAINS,
  DNAT_CHAIN_PREFIX,
  REQUIRED_JUMPS,
  applyNetworksText,
  dnatChainName,
  endpointAddText,
  endpointRemoveText,
  endpointUpdateText,
  fullRebuildText,
  jumpsText,
  mappingsOverlap,
  missingJumps,
  networkChainsText,
  removeAllText,
} from './rules.js';
export { type SavedRule, type SavedRuleset, type SavedTable, parseSave } from './save.js';
export { type ConntrackOptions, type IptablesOptions, backend, conntrackFlushUdp, restore, restoreBinary, save } from './restore.js';
