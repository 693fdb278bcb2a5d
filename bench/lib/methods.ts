/**
 * The connect methods compared by the bench. Each sample gets a Slot with a fresh named netns
 * made beforehand; connect() is the timed part; the runner deletes the netns in bulk afterwards
 * (the veth goes with it) and then calls cleanup() for what is left (state, IPAM, rules).
 */
import { mkdirSync } from 'node:fs';
import { iptables, type Networks } from '../../src/index.js';
import { CNI_PATH, cniMissing, run } from './exec.js';

/** The bridge network every method attaches to. */
export interface Env {
  nets: Networks;
  network: string;
  /** Bridge name (= network name). */
  bridge: string;
  subnet: string;
  gateway: string;
  prefix: number;
  /** host-local IPAM data directory of the CNI rows (on the sandbox's tmpfs). */
  cniDataDir: string;
  /** Endpoints that stay on the bridge between samples (the scale level). */
  background: number;
}

/** One sample's container. */
export interface Slot {
  k: number;
  ns: string;
  ip: string;
  hostPort: number;
  /** tsnetlink endpoint id once connected. */
  id?: string;
}

export interface Method {
  key: string;
  label: string;
  /** External processes per connect. */
  procs: number;
  mapping: boolean;
  /** Does the sample need a netns (the iptables-only rows do not). */
  netns: boolean;
  skip?: string;
  connect(env: Env, s: Slot): Promise<void> | void;
  cleanup(env: Env, slots: readonly Slot[]): Promise<void> | void;
}

let counter = 0;
/** A fresh sample slot: unique names, an address outside tsnetlink's and CNI's pools, a unique host port. */
export function newSlot(): Slot {
  const k = counter++;
  // 10.88.192.0/19 for the iproute2 rows (tsnetlink's IPAM starts at 10.88.0.2, CNI uses .128-.191).
  const off = 192 * 256 + 1 + (k % (32 * 256 - 2));
  return { k, ns: `bn${k}`, ip: `10.88.${off >> 8}.${off & 255}`, hostPort: 10000 + (k % 50000) };
}

function ipSeq(env: Env, s: Slot): void {
  const h = `bh${s.k}`;
  const c = `bc${s.k}`;
  // The mydocker book chapter's commands in its order: both ends made in the host, then the peer
  // moved into the container's netns (the move alone waits for an RCU grace period, ~29 ms).
  run('ip', ['link', 'add', h, 'type', 'veth', 'peer', 'name', c]);
  run('ip', ['link', 'set', h, 'master', env.bridge]);
  run('ip', ['link', 'set', h, 'up']);
  run('ip', ['link', 'set', c, 'netns', s.ns]);
  run('ip', ['-n', s.ns, 'addr', 'add', `${s.ip}/${env.prefix}`, 'dev', c]);
  run('ip', ['-n', s.ns, 'link', 'set', c, 'up']);
  run('ip', ['-n', s.ns, 'link', 'set', 'lo', 'up']);
  run('ip', ['-n', s.ns, 'route', 'add', 'default', 'via', env.gateway]);
}

function ipBatch(env: Env, s: Slot): void {
  const h = `bh${s.k}`;
  const c = `bc${s.k}`;
  run('ip', ['-batch', '-'], { input: [`link add ${h} type veth peer name ${c}`, `link set ${h} master ${env.bridge}`, `link set ${h} up`, `link set ${c} netns ${s.ns}`, ''].join('\n') });
  run('ip', ['-n', s.ns, '-batch', '-'], { input: [`addr add ${s.ip}/${env.prefix} dev ${c}`, `link set ${c} up`, 'link set lo up', `route add default via ${env.gateway}`, ''].join('\n') });
}

function dnatArgs(s: Slot): string[] {
  return ['-t', 'nat', '-A', 'PREROUTING', '-p', 'tcp', '-m', 'tcp', '--dport', String(s.hostPort), '-j', 'DNAT', '--to-destination', `${s.ip}:80`];
}

function iptablesExec(s: Slot): void {
  run('iptables', ['-w', '5', ...dnatArgs(s)]);
}

/** Removes the book chapter's DNAT rules (plain PREROUTING DNAT) of these slots in one iptables-restore. */
function removeDnat(slots: readonly Slot[]): void {
  if (slots.length === 0) return;
  const lines = slots.map((s) => dnatArgs(s).slice(2).join(' ').replace('-A PREROUTING', '-D PREROUTING'));
  run('iptables-restore', ['--noflush', '-w', '5'], { input: `*nat\n${lines.join('\n')}\nCOMMIT\n` });
}

/** The rules tsnetlink adds for an endpoint with one mapping, as its own builder writes them. */
export function endpointRules(env: Env, s: Slot): { add: string; remove: string } {
  const id = `rb${s.k}`;
  const mappings = [{ hostPort: s.hostPort, containerPort: 80, protocol: 'tcp' as const }];
  return {
    add: iptables.endpointAddText({ id, network: { name: env.network, bridge: env.bridge, subnet: env.subnet }, ip: s.ip, mappings }),
    remove: iptables.endpointRemoveText({ id, network: env.network, mappings }),
  };
}

function cniConfig(env: Env): string {
  return JSON.stringify({
    cniVersion: '1.0.0',
    name: 'tsnbench-cni',
    type: 'bridge',
    bridge: env.bridge,
    isGateway: true,
    isDefaultGateway: true,
    ipMasq: false,
    ipam: {
      type: 'host-local',
      dataDir: env.cniDataDir,
      ranges: [[{ subnet: env.subnet, rangeStart: '10.88.128.1', rangeEnd: '10.88.191.254', gateway: env.gateway }]],
    },
  });
}

function cni(env: Env, command: 'ADD' | 'DEL', s: Slot, netns: boolean): void {
  run(`${CNI_PATH}/bridge`, [], {
    input: cniConfig(env),
    env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', CNI_COMMAND: command, CNI_CONTAINERID: `bench${s.k}`, CNI_NETNS: netns ? `/run/netns/${s.ns}` : '', CNI_IFNAME: 'eth0', CNI_PATH },
  });
}

async function tsnDisconnect(env: Env, slots: readonly Slot[]): Promise<void> {
  for (const s of slots) if (s.id) await env.nets.disconnect(env.network, s.id);
}

const noop = (): void => undefined;

function removeRules(env: Env, slots: readonly Slot[]): void {
  if (slots.length) run('iptables-restore', ['--noflush', '-w', '5'], { input: slots.map((s) => endpointRules(env, s).remove).join('') });
}

/** Every method, in table order. */
export function methods(env: Env): Method[] {
  mkdirSync(env.cniDataDir, { recursive: true });
  const cniSkip = cniMissing();
  return [
    { key: 'tsn', label: 'tsnetlink connect', procs: 0, mapping: false, netns: true, cleanup: tsnDisconnect,
      connect: async (e, s) => { s.id = (await e.nets.connect(e.network, { name: s.ns })).id; } },
    { key: 'ip', label: "ip x8 (the book chapter's commands)", procs: 8, mapping: false, netns: true, connect: ipSeq, cleanup: noop },
    { key: 'ipbatch', label: 'ip -batch x2', procs: 2, mapping: false, netns: true, connect: ipBatch, cleanup: noop },
    { key: 'cni', label: 'CNI bridge ADD', procs: 2, mapping: false, netns: true, ...(cniSkip ? { skip: cniSkip } : {}),
      connect: (e, s) => cni(e, 'ADD', s, true), cleanup: (e, slots) => { for (const s of slots) cni(e, 'DEL', s, false); } },
    { key: 'tsnport', label: 'tsnetlink connect -p', procs: 1, mapping: true, netns: true, cleanup: tsnDisconnect,
      connect: async (e, s) => { s.id = (await e.nets.connect(e.network, { name: s.ns }, { ports: [`${s.hostPort}:80`] })).id; } },
    { key: 'ipport', label: 'ip x8 + iptables x1', procs: 9, mapping: true, netns: true,
      connect: (e, s) => { ipSeq(e, s); iptablesExec(s); }, cleanup: (_e, slots) => removeDnat(slots) },
    { key: 'ipbatchport', label: 'ip -batch x2 + iptables', procs: 3, mapping: true, netns: true,
      connect: (e, s) => { ipBatch(e, s); iptablesExec(s); }, cleanup: (_e, slots) => removeDnat(slots) },
    { key: 'iptables', label: 'iptables -t nat -A x1', procs: 1, mapping: true, netns: false,
      connect: (_e, s) => iptablesExec(s), cleanup: (_e, slots) => removeDnat(slots) },
    { key: 'restore', label: 'iptables-restore x1 (same rules)', procs: 1, mapping: true, netns: false,
      connect: (e, s) => { run('iptables-restore', ['--noflush', '-w', '5'], { input: endpointRules(e, s).add }); },
      cleanup: removeRules },
    { key: 'restorelib', label: 'iptables-restore via library', procs: 1, mapping: true, netns: false,
      connect: (e, s) => iptables.restore(endpointRules(e, s).add), cleanup: removeRules },
  ];
}
