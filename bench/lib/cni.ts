/**
 * The CNI reference plugins as a runtime runs them: one process per plugin and command, the
 * network config on stdin, the container in CNI_* variables. The bridge plugin (with host-local
 * IPAM, a second process) attaches to the bench's own bridge; portmap is chained after it with the
 * bridge's result as prevResult and the mapping in runtimeConfig, as libcni passes them.
 */
import { existsSync } from 'node:fs';
import type { Env, Slot } from './methods.js';
import { run } from './exec.js';

/** Where Debian's containernetworking-plugins package puts the plugins. */
export const CNI_PATH = '/usr/lib/cni';

/** Why the CNI rows must be skipped, or undefined when the plugins they run are installed. */
export function cniMissing(plugins: readonly string[] = ['bridge', 'host-local']): string | undefined {
  for (const p of plugins) {
    if (!existsSync(`${CNI_PATH}/${p}`)) return `${CNI_PATH}/${p} not found: apt-get install containernetworking-plugins`;
  }
  return undefined;
}

const NAME = 'tsnbench-cni';

function bridgeConfig(env: Env): Record<string, unknown> {
  return {
    cniVersion: '1.0.0',
    name: NAME,
    type: 'bridge',
    bridge: env.bridge,
    isGateway: true,
    isDefaultGateway: true,
    // The bench's network already masquerades its subnet, as tsnetlink's network does.
    ipMasq: false,
    ipam: {
      type: 'host-local',
      dataDir: env.cniDataDir,
      ranges: [[{ subnet: env.subnet, rangeStart: '10.88.128.1', rangeEnd: '10.88.191.254', gateway: env.gateway }]],
    },
  };
}

function portmapConfig(s: Slot, prevResult?: unknown): Record<string, unknown> {
  return {
    cniVersion: '1.0.0',
    name: NAME,
    type: 'portmap',
    capabilities: { portMappings: true },
    runtimeConfig: { portMappings: [{ hostPort: s.hostPort, containerPort: 80, protocol: 'tcp' }] },
    ...(prevResult !== undefined ? { prevResult } : {}),
  };
}

function plugin(type: string, command: 'ADD' | 'DEL', config: Record<string, unknown>, s: Slot, netns: boolean): string {
  return run(`${CNI_PATH}/${type}`, [], {
    input: JSON.stringify(config),
    env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', CNI_COMMAND: command, CNI_CONTAINERID: `bench${s.k}`, CNI_NETNS: netns ? `/run/netns/${s.ns}` : '', CNI_IFNAME: 'eth0', CNI_PATH },
  });
}

/** bridge ADD (with host-local) into the slot's netns; returns the plugin's result. */
export function cniBridgeAdd(env: Env, s: Slot): unknown {
  return JSON.parse(plugin('bridge', 'ADD', bridgeConfig(env), s, true)) as unknown;
}

/** bridge ADD, then portmap ADD chained on its result: a conflist of the two, as a runtime runs it. */
export function cniBridgePortmapAdd(env: Env, s: Slot): void {
  plugin('portmap', 'ADD', portmapConfig(s, cniBridgeAdd(env, s)), s, true);
}

/** bridge DEL after the netns is gone (it frees the address; the veth went with the netns). */
export function cniBridgeDel(env: Env, slots: readonly Slot[]): void {
  for (const s of slots) plugin('bridge', 'DEL', bridgeConfig(env), s, false);
}

/** portmap DEL then bridge DEL, in the reverse of the ADD order, after the netns is gone. */
export function cniBridgePortmapDel(env: Env, slots: readonly Slot[]): void {
  for (const s of slots) {
    plugin('portmap', 'DEL', portmapConfig(s), s, false);
    plugin('bridge', 'DEL', bridgeConfig(env), s, false);
  }
}
