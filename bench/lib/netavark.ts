/**
 * netavark, Podman's default network backend, run as Podman runs it: one process per container
 * and command (`netavark setup|teardown NETNS_PATH`), the network and the container's options as
 * JSON on stdin, its config dir on the sandbox's private /run. The network is a bridge network
 * like the bench's own: a /16 with a gateway on the bridge, DNS off (as on Podman's default
 * network, so no aardvark-dns is started), container addresses given by the caller as Podman
 * gives them (static_ips). The firewall driver is iptables (netavark 1.4 has no nftables
 * driver), through the same iptables-nft binaries as tsnetlink's backend.
 *
 * netavark gets a bridge of its own: it deletes the bridge, and its network chains, when the
 * last container leaves it. One keeper container stays on it for the whole run, so that every
 * sample finds the bridge and its chains in place, as tsnetlink's samples find their network.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { createNamedNetns, deleteNamedNetns } from '../../src/index.js';
import { run, tryRun } from './exec.js';
import type { Slot } from './methods.js';

const CANDIDATES = ['/usr/lib/podman/netavark', '/usr/libexec/podman/netavark', '/usr/local/libexec/podman/netavark'];

/** The netavark binary (Debian puts it in /usr/lib/podman), or undefined when it is not installed. */
export function netavarkBinary(): string | undefined {
  return CANDIDATES.find((p) => existsSync(p));
}

/** Why the netavark rows must be skipped, or undefined when netavark is installed. */
export function netavarkMissing(): string | undefined {
  return netavarkBinary() ? undefined : `netavark not found in ${CANDIDATES.join(', ')}: apt-get install netavark`;
}

/** The version netavark reports ("netavark 1.4.0"), for the machine facts. */
export function netavarkVersion(): string | undefined {
  const bin = netavarkBinary();
  return bin ? tryRun(bin, ['--version']) : undefined;
}

/** netavark's network in this run, and the keeper container that holds its bridge. */
export interface NetavarkNet {
  bin: string;
  configDir: string;
  name: string;
  id: string;
  bridge: string;
  subnet: string;
  gateway: string;
  keeper: Slot;
}

function options(net: NetavarkNet, s: Slot, ports: boolean): string {
  return JSON.stringify({
    container_id: `${s.k.toString(16).padStart(8, '0')}${'b'.repeat(56)}`,
    container_name: s.ns,
    networks: { [net.name]: { interface_name: 'eth0', static_ips: [s.ip.replace(/^10\.88\./, '10.89.')] } },
    network_info: {
      [net.name]: {
        name: net.name,
        id: net.id,
        driver: 'bridge',
        network_interface: net.bridge,
        subnets: [{ subnet: net.subnet, gateway: net.gateway }],
        ipv6_enabled: false,
        internal: false,
        dns_enabled: false,
        ipam_options: { driver: 'host-local' },
      },
    },
    port_mappings: ports ? [{ host_ip: '', container_port: 80, host_port: s.hostPort, range: 1, protocol: 'tcp' }] : null,
  });
}

/** The process Podman starts for `command` on a slot: binary, arguments, stdin and environment. */
export function netavarkCommand(net: NetavarkNet, command: 'setup' | 'teardown', s: Slot, ports: boolean): { cmd: string; args: string[]; input: string; env: NodeJS.ProcessEnv } {
  return {
    cmd: net.bin,
    args: ['--config', net.configDir, '--rootless', 'false', command, `/run/netns/${s.ns}`],
    input: options(net, s, ports),
    env: { ...process.env, NETAVARK_FW: 'iptables' },
  };
}

function netavark(net: NetavarkNet, command: 'setup' | 'teardown', s: Slot, ports: boolean): void {
  const c = netavarkCommand(net, command, s, ports);
  run(c.cmd, c.args, { input: c.input, env: c.env });
}

/** `netavark setup` of the slot's netns (with one port mapping when `ports`); marks the slot as set up. */
export function netavarkSetup(net: NetavarkNet, s: Slot, ports: boolean): void {
  netavark(net, 'setup', s, ports);
  s.id = `netavark:${s.k}`;
}

/** `netavark teardown` of a slot that is set up; it needs the netns, so it runs before the netns is deleted. */
export function netavarkTeardown(net: NetavarkNet, s: Slot, ports: boolean): void {
  if (s.id === undefined) return;
  netavark(net, 'teardown', s, ports);
  delete s.id;
}

/** Creates netavark's network by setting up the keeper container (bridge, gateway address, network chains). */
export function openNetavark(bin: string, runDir: string): NetavarkNet {
  const configDir = `${runDir}/netavark`;
  mkdirSync(configDir, { recursive: true });
  const keeper: Slot = { k: 0xffff, ns: 'nvkeeper', ip: '10.88.255.254', hostPort: 0 };
  createNamedNetns(keeper.ns).close();
  const net: NetavarkNet = { bin, configDir, name: 'tsnbench-nv', id: 'a'.repeat(64), bridge: 'tsnbenchnv', subnet: '10.89.0.0/16', gateway: '10.89.0.1', keeper };
  try {
    netavarkSetup(net, keeper, false);
  } catch (e) {
    deleteNamedNetns(keeper.ns);
    throw e;
  }
  return net;
}

/** Tears the keeper down (netavark then deletes its bridge and chains) and deletes its netns. */
export function closeNetavark(net: NetavarkNet): void {
  try {
    netavarkTeardown(net, net.keeper, false);
  } finally {
    deleteNamedNetns(net.keeper.ns);
  }
}
