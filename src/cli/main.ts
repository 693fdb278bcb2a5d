#!/usr/bin/env node
/** The `tsnetlink` command: the seed's `mydocker network ...` and `mydocker run -net ... -p ...`. */
import { randomBytes } from 'node:crypto';
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { Networks, createAnonymousNetns, spawnInNetns, ValidationError, type NetworkRecord, type NetnsHandle, type ReconcileReport, type CreateNetworkOptions, type ContainerRef } from '../index.js';
import { findBinary } from '../iptables/restore.js';
import { parseArgs, value, values, has, type FlagSpec } from './args.js';

const HELP = `tsnetlink - bridge networks for containers over raw netlink

Usage:
  tsnetlink network create --driver bridge --subnet CIDR [--internal] [-o KEY=VALUE]... NAME
  tsnetlink network ls [--json]
  tsnetlink network inspect NAME [--json]
  tsnetlink network rm [--force] NAME
  tsnetlink network prune [NAME]           free what is dead: gone containers, killed operations, orphans
  tsnetlink network repair                 prune, then re-create bridges, addresses, sysctls and rules
  tsnetlink network check                  report every disagreement of state, kernel and firewall
  tsnetlink run [-it] -net NAME [-p [IP:]HOST:CONTAINER[/udp]]... [--ifname eth0] [--name ID] -- CMD [ARGS...]
  tsnetlink connect -net NAME [-p ...]... [--ifname IF] [--allow-host-netns] PID|NETNS_PATH
  tsnetlink disconnect -net NAME PID|NETNS_PATH|ENDPOINT_ID

Network options (-o, --opt):
  icc=false                 containers of the network cannot reach each other
  gateway-mode=nat          default: outbound NAT, only published ports reachable from outside
  gateway-mode=nat-unprotected   NAT, and hosts routing the subnet via this host reach every port
  gateway-mode=routed       no NAT; hosts routing the subnet via this host reach every port
  mtu=N                     MTU of the bridge and the veths
  (Docker's com.docker.network.bridge.enable_icc, ...gateway_mode_ipv4, ...driver.mtu work too)
  --internal                no outbound traffic and no published ports

Options:
  --state-dir DIR   runtime state (default /run/tsnetlink)
  --firewall NAME   iptables or nftables (native, no process); default $TSNETLINK_FIREWALL, else
                    what the host's networks use, else iptables; network repair --firewall NAME
                    moves every network to NAME
  -h, --help        this help

Exit codes: 0 ok, 1 operation failed (check: disagreements found), 2 bad usage; run passes the
command's exit code through. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN).`;

const common: FlagSpec[] = [
  { names: ['state-dir'], value: true },
  { names: ['firewall'], value: true },
  { names: ['help', 'h'] },
  { names: ['json'] },
];

class Usage extends ValidationError {}

/** The Networks manager the flags ask for (--state-dir, --firewall). */
function manager(p: ReturnType<typeof parseArgs>): Networks {
  const fw = value(p, 'firewall');
  if (fw !== undefined && fw !== 'iptables' && fw !== 'nftables') throw new Usage('--firewall', `must be iptables or nftables, got ${JSON.stringify(fw)}`);
  return new Networks({ ...(value(p, 'state-dir') !== undefined ? { stateDir: value(p, 'state-dir')! } : {}), ...(fw !== undefined ? { firewall: fw } : {}) });
}

function out(s: string): void {
  process.stdout.write(`${s}\n`);
}

function table(nets: NetworkRecord[]): string {
  const rows = [['NAME', 'DRIVER', 'SUBNET', 'GATEWAY', 'BRIDGE'], ...nets.map((n) => [n.name, n.driver, n.subnet, n.gateway, n.bridge])];
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd()).join('\n');
}

function report(r: ReconcileReport, none: string): number {
  for (const a of r.actions) out(a);
  for (const p of r.problems) process.stderr.write(`tsnetlink: ${p}\n`);
  if (r.actions.length === 0 && r.problems.length === 0) out(none);
  return r.problems.length > 0 ? 1 : 0;
}

/** Network options as `-o KEY=VALUE`, in tsnetlink's short form or Docker's names. */
function networkOptions(p: ReturnType<typeof parseArgs>): Partial<CreateNetworkOptions> {
  const o: Partial<CreateNetworkOptions> = {};
  if (has(p, 'internal')) o.internal = true;
  for (const kv of values(p, 'opt')) {
    const eq = kv.indexOf('=');
    const key = eq > 0 ? kv.slice(0, eq) : kv;
    const v = eq > 0 ? kv.slice(eq + 1) : '';
    const bool = (): boolean => {
      if (v !== 'true' && v !== 'false') throw new Usage(`-o ${key}`, `must be true or false, got ${JSON.stringify(v)}`);
      return v === 'true';
    };
    switch (key) {
      case 'icc':
      case 'com.docker.network.bridge.enable_icc':
        o.icc = bool();
        break;
      case 'gateway-mode':
      case 'com.docker.network.bridge.gateway_mode_ipv4':
        o.gatewayMode = v as CreateNetworkOptions['gatewayMode'] & string;
        break;
      case 'mtu':
      case 'com.docker.network.driver.mtu':
        if (!/^\d+$/.test(v)) throw new Usage('-o mtu', `must be a number, got ${JSON.stringify(v)}`);
        o.mtu = Number(v);
        break;
      case 'internal':
        o.internal = bool();
        break;
      default:
        throw new Usage('-o', `unknown network option ${JSON.stringify(key)}; known: icc, gateway-mode, mtu, internal`);
    }
  }
  return o;
}

async function network(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const p = parseArgs(rest, [
    ...common,
    { names: ['driver', 'd'], value: true },
    { names: ['subnet'], value: true },
    { names: ['force', 'f'] },
    { names: ['internal'] },
    { names: ['opt', 'o'], value: true, repeat: true },
  ]);
  const nets = manager(p);
  try {
    switch (sub) {
      case 'create': {
        const name = p.positionals[0];
        const subnet = value(p, 'subnet');
        if (!name || !subnet || p.positionals.length !== 1) throw new Usage('network create', 'usage: tsnetlink network create --driver bridge --subnet CIDR NAME');
        const { record: rec, hostChanges } = await nets.createNetwork({ name, subnet, driver: (value(p, 'driver') ?? 'bridge') as 'bridge', ...networkOptions(p) });
        if (has(p, 'json')) out(JSON.stringify({ ...rec, hostChanges }, null, 2));
        else {
          out(`${rec.name} ${rec.subnet} gateway ${rec.gateway}${rec.internal ? ' internal' : ''}`);
          for (const c of hostChanges) process.stderr.write(`tsnetlink: changed on this host: ${c}\n`);
        }
        return 0;
      }
      case 'ls':
      case 'list':
        out(has(p, 'json') ? JSON.stringify(nets.list(), null, 2) : table(nets.list()));
        return 0;
      case 'inspect': {
        if (p.positionals.length !== 1) throw new Usage('network inspect', 'usage: tsnetlink network inspect NAME');
        out(JSON.stringify(nets.inspect(p.positionals[0]!), null, 2));
        return 0;
      }
      case 'rm':
      case 'remove': {
        if (p.positionals.length === 0) throw new Usage('network rm', 'usage: tsnetlink network rm [--force] NAME...');
        for (const n of p.positionals) {
          await nets.remove(n, { force: has(p, 'force') });
          out(n);
        }
        return 0;
      }
      case 'repair': {
        const r = await nets.repair();
        if (has(p, 'json')) {
          out(JSON.stringify(r, null, 2));
          return r.problems.length > 0 ? 1 : 0;
        }
        return report(r, 'nothing to repair: state, kernel and firewall agree');
      }
      case 'prune': {
        const r = await nets.pruneReport(p.positionals[0]);
        if (has(p, 'json')) {
          out(JSON.stringify(r.pruned));
          return r.problems.length > 0 ? 1 : 0;
        }
        return report(r, 'nothing to prune');
      }
      case 'check': {
        const problems = await nets.check();
        if (has(p, 'json')) out(JSON.stringify(problems, null, 2));
        else out(problems.length === 0 ? 'consistent: state, kernel and firewall agree' : problems.join('\n'));
        return problems.length === 0 ? 0 : 1;
      }
      default:
        throw new Usage('network', `unknown subcommand ${JSON.stringify(sub ?? '')}; see tsnetlink --help`);
    }
  } finally {
    nets.close();
  }
}

const connectFlags: FlagSpec[] = [
  ...common,
  { names: ['net', 'network'], value: true },
  { names: ['p', 'publish'], value: true, repeat: true },
  { names: ['ifname'], value: true },
  { names: ['allow-host-netns'] },
];

/** A container given on the command line: a PID or a netns path. */
function containerArg(target: string): ContainerRef {
  if (/^\d+$/.test(target)) return Number(target);
  if (target.startsWith('/')) return { path: target };
  throw new Usage('container', `${JSON.stringify(target)} is not a PID or a netns path`);
}

async function connectCmd(argv: string[], disconnect: boolean): Promise<number> {
  const p = parseArgs(argv, connectFlags);
  const net = value(p, 'net');
  const target = p.positionals[0];
  if (!net || !target || p.positionals.length !== 1) throw new Usage(disconnect ? 'disconnect' : 'connect', `usage: tsnetlink ${disconnect ? 'disconnect -net NAME PID|NETNS_PATH|ENDPOINT_ID' : 'connect -net NAME [-p H:C]... PID|NETNS_PATH'}`);
  const nets = manager(p);
  try {
    if (disconnect) {
      // A PID or path names the container (found through its O(1) marker); anything else is an
      // endpoint id. An all-digit target that is no live process is tried as an id (ids can be digits).
      let id = target;
      if (/^\d+$/.test(target) || target.startsWith('/')) {
        try {
          id = nets.endpointOf(net, containerArg(target))?.id ?? target;
        } catch (e) {
          const code = (e as { code?: string }).code;
          if (!(code === 'ENOENT' || code === 'ESRCH') || target.startsWith('/')) throw e;
        }
      }
      const removed = await nets.disconnect(net, id);
      out(removed ? 'disconnected' : 'not connected (nothing to do)');
      return 0;
    }
    const ep = await nets.connect(net, containerArg(target), {
      ports: values(p, 'p'),
      ...(value(p, 'ifname') ? { ifname: value(p, 'ifname')! } : {}),
      ...(has(p, 'allow-host-netns') ? { allowHostNetns: true } : {}),
    });
    out(JSON.stringify(ep, null, 2));
    return 0;
  } finally {
    nets.close();
  }
}

const SIGNALS: Record<string, number> = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 };

/**
 * run: a new network namespace that no path keeps alive, connected, with CMD inside. CMD is
 * started under `setpriv --pdeathsig KILL`, so if tsnetlink itself is killed (even with -9) CMD
 * dies too, the namespace goes with it (the kernel deletes its veth), and the next prune, or the
 * next connect that needs the port or address, frees the endpoint.
 */
async function run(argv: string[]): Promise<number> {
  const p = parseArgs(argv, [...connectFlags, { names: ['i', 'interactive'] }, { names: ['t', 'tty'] }, { names: ['name'], value: true }]);
  const cmd = p.rest.length ? p.rest : p.positionals;
  const net = value(p, 'net');
  if (!net || cmd.length === 0) throw new Usage('run', 'usage: tsnetlink run [-it] -net NAME [-p H:C]... -- CMD [ARGS...]');
  const nets = manager(p);
  const id = value(p, 'name') ?? randomBytes(6).toString('hex');
  let child: ChildProcess | undefined;
  let pending: NodeJS.Signals | undefined;
  // Installed before anything is created: a signal during setup must still clean up.
  const onSignal = (sig: NodeJS.Signals): void => {
    if (child) child.kill(sig);
    else pending ??= sig;
  };
  for (const s of Object.keys(SIGNALS)) process.on(s, onSignal);
  let ns: NetnsHandle | undefined;
  let epId: string | undefined;
  try {
    ns = createAnonymousNetns();
    const ep = await nets.connect(net, ns, { id, ports: values(p, 'p'), ...(value(p, 'ifname') ? { ifname: value(p, 'ifname')! } : {}) });
    epId = ep.id;
    if (pending) return 128 + SIGNALS[pending]!;
    process.stderr.write(`tsnetlink: ${id} on ${net}: ${ep.cidr} via ${ep.gateway}${ep.mappings.length ? `, published ${values(p, 'p').join(' ')}` : ''}\n`);
    const interactive = has(p, 'i') || has(p, 't');
    const setpriv = findBinary('setpriv');
    const [file, args] = setpriv ? [setpriv, ['--pdeathsig', 'KILL', '--', ...cmd]] : [cmd[0]!, cmd.slice(1)];
    const c = spawnInNetns(ns, file, args, { stdio: interactive ? 'inherit' : ['ignore', 'inherit', 'inherit'] });
    child = c;
    return await new Promise<number>((resolve) => {
      c.on('error', (e) => {
        process.stderr.write(`tsnetlink: ${cmd[0]}: ${e.message}\n`);
        resolve(127);
      });
      c.on('exit', (code, sig) => resolve(code ?? 128 + (sig ? (SIGNALS[sig] ?? 9) : 1)));
    });
  } finally {
    if (epId) await nets.disconnect(net, epId).catch((e: Error) => process.stderr.write(`tsnetlink: disconnect: ${e.message}\n`));
    ns?.close();
    nets.close();
    for (const s of Object.keys(SIGNALS)) process.off(s, onSignal);
  }
}

/** True when this process may change networking: root, or CAP_NET_ADMIN and CAP_SYS_ADMIN. */
function privileged(): boolean {
  if (process.geteuid?.() === 0) return true;
  try {
    const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0';
    const caps = BigInt(`0x${hex}`);
    return (caps & (1n << 12n)) !== 0n && (caps & (1n << 21n)) !== 0n;
  } catch {
    return false;
  }
}

/** Runs the CLI with `argv` (without node and script) and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (!cmd || cmd === '-h' || cmd === '--help' || cmd === 'help' || rest.includes('--help') && !rest.includes('--')) {
      out(HELP);
      return cmd ? 0 : 2;
    }
    if (!privileged()) {
      process.stderr.write('tsnetlink: needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN): run it as root or with sudo\n');
      return 1;
    }
    // Library warnings (a skipped unreadable record, a failed conntrack flush) as one plain line.
    process.removeAllListeners('warning');
    process.on('warning', (w) => process.stderr.write(`tsnetlink: warning: ${w.message.replace(/^tsnetlink: /, '')}\n`));
    switch (cmd) {
      case 'network':
        return await network(rest);
      case 'run':
        return await run(rest);
      case 'connect':
        return await connectCmd(rest, false);
      case 'disconnect':
        return await connectCmd(rest, true);
      default:
        throw new Usage('command', `unknown command ${JSON.stringify(cmd)}; see tsnetlink --help`);
    }
  } catch (e) {
    const err = e as Error & { code?: string };
    process.stderr.write(`tsnetlink: ${err.message}${err.code && !err.message.includes(err.code) ? ` [${err.code}]` : ''}\n`);
    return e instanceof Usage || e instanceof ValidationError ? 2 : 1;
  }
}

// Run when executed (also through the npm bin symlink), not when imported by tests.
const invoked = process.argv[1] ? realpathSync(process.argv[1]) : '';
if (invoked === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
