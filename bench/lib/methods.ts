/**
 * The connect methods compared by the bench. Each sample gets a Slot with a fresh named netns
 * made beforehand; connect() is the timed part; the runner deletes the netns in bulk afterwards
 * (the veth goes with it) and then calls cleanup() for what is left (state, IPAM, rules). A
 * method whose undo needs the netns (netavark's teardown) does it in release(), before that.
 */
import { mkdirSync } from 'node:fs';
import { iptables, type Networks } from '../../src/index.js';
import { cniBridgeAdd, cniBridgeDel, cniBridgePortmapAdd, cniBridgePortmapDel, cniMissing } from './cni.js';
import { run } from './exec.js';
import { netavarkMissing, netavarkSetup, netavarkTeardown, type NetavarkNet } from './netavark.js';
import { cliConnect, cliDisconnect, cliMissing, CLI, koffiUrl, node } from './processes.js';

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
  /** tsnetlink's state directory, shared by the library rows and the CLI rows. */
  stateDir: string;
  /** netavark's network, when netavark is installed. */
  netavark?: NetavarkNet;
}

/** One sample's container. */
export interface Slot {
  k: number;
  ns: string;
  ip: string;
  hostPort: number;
  /** tsnetlink endpoint id once connected (netavark rows: a mark that the slot is set up). */
  id?: string;
}

/** One way to connect a container, timed per sample. */
export interface Method {
  key: string;
  label: string;
  /** External processes per connect (netavark's and portmap's iptables runs counted with strace -f -e execve, netavark 1.4.0). */
  procs: number;
  mapping: boolean;
  /** Does the sample need a netns (the iptables-only and bare process rows do not). */
  netns: boolean;
  /** The connect table (the default) or the process-level table. */
  table?: 'connect' | 'process';
  /** Share of the run's samples this method takes (default 1): the slow process rows take fewer, still interleaved. */
  share?: number;
  skip?: string;
  connect(env: Env, s: Slot): Promise<void> | void;
  /** Undo that needs the sample's netns: runs before the runner deletes it. */
  release?(env: Env, slots: readonly Slot[]): Promise<void> | void;
  cleanup(env: Env, slots: readonly Slot[]): Promise<void> | void;
}

/** A timed disconnect: the endpoint is made by `via` (untimed), then removed by disconnect() (timed). */
export interface DisconnectMethod {
  key: string;
  label: string;
  /** External processes per disconnect. */
  procs: number;
  via: Method;
  skip?: string;
  disconnect(env: Env, s: Slot): Promise<void> | void;
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

async function tsnDisconnect(env: Env, slots: readonly Slot[]): Promise<void> {
  for (const s of slots) if (s.id) await env.nets.disconnect(env.network, s.id);
}

const noop = (): void => undefined;

function removeRules(env: Env, slots: readonly Slot[]): void {
  if (slots.length) run('iptables-restore', ['--noflush', '-w', '5'], { input: slots.map((s) => endpointRules(env, s).remove).join('') });
}

/** How many of the process rows' samples a run takes: half, since each costs a Node or netavark start. */
const PROCESS_SHARE = 0.5;

/** Every method, in table order: the connect table's rows, then the process-level rows. */
export function methods(env: Env): Method[] {
  mkdirSync(env.cniDataDir, { recursive: true });
  const cniSkip = cniMissing();
  const portmapSkip = cniMissing(['bridge', 'host-local', 'portmap']);
  const nvSkip = env.netavark ? undefined : (netavarkMissing() ?? 'netavark network not created');
  const nv = env.netavark;
  const cliSkip = cliMissing();
  const tsnConnect = (ports: boolean) => async (e: Env, s: Slot) => {
    s.id = (await e.nets.connect(e.network, { name: s.ns }, ports ? { ports: [`${s.hostPort}:80`] } : {})).id;
  };
  const netavarkRow = (key: string, label: string, procs: number, ports: boolean): Method => ({
    key, label, procs, mapping: ports, netns: true, share: PROCESS_SHARE, ...(nvSkip ? { skip: nvSkip } : {}),
    connect: (_e, s) => netavarkSetup(nv!, s, ports),
    release: (_e, slots) => { for (const s of slots) netavarkTeardown(nv!, s, ports); },
    cleanup: noop,
  });
  const processRow = (key: string, label: string, args: readonly string[]): Method => ({
    key, label, procs: 1, mapping: false, netns: false, table: 'process', share: PROCESS_SHARE, ...(cliSkip ? { skip: cliSkip } : {}),
    connect: () => void node(args), cleanup: noop,
  });
  return [
    { key: 'tsn', label: 'tsnetlink connect', procs: 0, mapping: false, netns: true, cleanup: tsnDisconnect, connect: tsnConnect(false) },
    { key: 'ip', label: "ip x8 (the book chapter's commands)", procs: 8, mapping: false, netns: true, connect: ipSeq, cleanup: noop },
    { key: 'ipbatch', label: 'ip -batch x2', procs: 2, mapping: false, netns: true, connect: ipBatch, cleanup: noop },
    { key: 'cni', label: 'CNI bridge ADD', procs: 2, mapping: false, netns: true, ...(cniSkip ? { skip: cniSkip } : {}),
      connect: (e, s) => void cniBridgeAdd(e, s), cleanup: cniBridgeDel },
    netavarkRow('nv', 'netavark setup', 19, false),
    { key: 'tsnport', label: 'tsnetlink connect -p', procs: 1, mapping: true, netns: true, cleanup: tsnDisconnect, connect: tsnConnect(true) },
    { key: 'ipport', label: 'ip x8 + iptables x1', procs: 9, mapping: true, netns: true,
      connect: (e, s) => { ipSeq(e, s); iptablesExec(s); }, cleanup: (_e, slots) => removeDnat(slots) },
    { key: 'ipbatchport', label: 'ip -batch x2 + iptables', procs: 3, mapping: true, netns: true,
      connect: (e, s) => { ipBatch(e, s); iptablesExec(s); }, cleanup: (_e, slots) => removeDnat(slots) },
    { key: 'cniport', label: 'CNI bridge + portmap ADD', procs: 29, mapping: true, netns: true, share: PROCESS_SHARE, ...(portmapSkip ? { skip: portmapSkip } : {}),
      connect: cniBridgePortmapAdd, cleanup: cniBridgePortmapDel },
    netavarkRow('nvport', 'netavark setup -p', 29, true),
    { key: 'iptables', label: 'iptables -t nat -A x1', procs: 1, mapping: true, netns: false,
      connect: (_e, s) => iptablesExec(s), cleanup: (_e, slots) => removeDnat(slots) },
    { key: 'restore', label: 'iptables-restore x1 (same rules)', procs: 1, mapping: true, netns: false,
      connect: (e, s) => { run('iptables-restore', ['--noflush', '-w', '5'], { input: endpointRules(e, s).add }); },
      cleanup: removeRules },
    { key: 'restorelib', label: 'iptables-restore via library', procs: 1, mapping: true, netns: false,
      connect: (e, s) => iptables.restore(endpointRules(e, s).add), cleanup: removeRules },
    // Process-level rows: one process each, as a CLI user starts them.
    processRow('node', 'node -e 0', ['-e', '0']),
    processRow('koffi', `node -e "await import('koffi')"`, ['--input-type=module', '-e', `await import(${JSON.stringify(koffiUrl())})`]),
    processRow('help', 'tsnetlink --help', [CLI, '--help']),
    { key: 'cli', label: 'tsnetlink connect (CLI)', procs: 1, mapping: false, netns: true, table: 'process', share: PROCESS_SHARE, ...(cliSkip ? { skip: cliSkip } : {}),
      connect: (e, s) => cliConnect(e, s, false), cleanup: tsnDisconnect },
    { key: 'cliport', label: 'tsnetlink connect -p (CLI)', procs: 2, mapping: true, netns: true, table: 'process', share: PROCESS_SHARE, ...(cliSkip ? { skip: cliSkip } : {}),
      connect: (e, s) => cliConnect(e, s, true), cleanup: tsnDisconnect },
  ];
}

/** The disconnect rows, each on endpoints made by one of `all` (netns alive: the veth is deleted by the tool). */
export function disconnectMethods(env: Env, all: readonly Method[]): DisconnectMethod[] {
  const by = (k: string) => all.find((m) => m.key === k)!;
  const lib = async (e: Env, s: Slot) => {
    await e.nets.disconnect(e.network, s.id!);
    delete s.id;
  };
  const nv = env.netavark;
  const viaSkip = (m: Method) => (m.skip !== undefined ? { skip: m.skip } : {});
  return [
    { key: 'tsn', label: 'tsnetlink disconnect', procs: 0, via: by('tsn'), disconnect: lib },
    { key: 'nv', label: 'netavark teardown', procs: 3, via: by('nv'), ...viaSkip(by('nv')), disconnect: (_e, s) => netavarkTeardown(nv!, s, false) },
    { key: 'tsnport', label: 'tsnetlink disconnect (endpoint with -p)', procs: 1, via: by('tsnport'), disconnect: lib },
    { key: 'nvport', label: 'netavark teardown -p', procs: 11, via: by('nvport'), ...viaSkip(by('nvport')), disconnect: (_e, s) => netavarkTeardown(nv!, s, true) },
    { key: 'cliport', label: 'tsnetlink disconnect (CLI, endpoint with -p)', procs: 2, via: by('tsnport'), ...viaSkip(by('cliport')), disconnect: cliDisconnect },
    // The two halves of a library disconnect, which it runs side by side, each timed alone.
    { key: 'vethdel', label: '  of which: delete the veth alone (RTM_DELLINK)', procs: 0, via: by('tsn'),
      disconnect: (e, s) => e.nets.host.linkDel(e.nets.store.getEndpoint(e.network, s.id!)!.hostIfname) },
    { key: 'ctflush', label: '  of which: conntrack flush alone (one ctnetlink dump)', procs: 0, via: { ...by('iptables'), connect: noop, cleanup: noop },
      disconnect: (e, s) => e.nets.firewall.forgetConnections({ ips: [s.ip] }) },
  ];
}
