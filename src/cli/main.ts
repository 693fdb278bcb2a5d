#!/usr/bin/env node
/** The `tsnetlink` command: the seed's `mydocker network ...` and `mydocker run -net ... -p ...`. */
import { randomBytes } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { Networks, createNamedNetns, deleteNamedNetns, spawnInNetns, ValidationError, type NetworkRecord, type NetnsHandle } from '../index.js';
import { parseArgs, value, values, has, type FlagSpec } from './args.js';

const HELP = `tsnetlink - bridge networks for containers over raw netlink

Usage:
  tsnetlink network create --driver bridge --subnet CIDR NAME
  tsnetlink network ls [--json]
  tsnetlink network inspect NAME [--json]
  tsnetlink network rm [--force] NAME
  tsnetlink network repair                 re-apply iptables rules and sysctls from state
  tsnetlink network prune [NAME]           free endpoints whose container is gone
  tsnetlink run [-it] -net NAME [-p [IP:]HOST:CONTAINER[/udp]]... [--ifname eth0] -- CMD [ARGS...]
  tsnetlink connect -net NAME [-p ...]... PID      prints the endpoint as JSON
  tsnetlink disconnect -net NAME PID|ENDPOINT_ID

Options:
  --state-dir DIR   runtime state (default /run/tsnetlink)
  -h, --help        this help

Exit codes: 0 ok, 1 operation failed, 2 bad usage; run passes the command's exit code through.
Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN for namespaces).`;

const common: FlagSpec[] = [
  { names: ['state-dir'], value: true },
  { names: ['help', 'h'] },
  { names: ['json'] },
];

class Usage extends ValidationError {}

function out(s: string): void {
  process.stdout.write(`${s}\n`);
}

function table(nets: NetworkRecord[]): string {
  const rows = [['NAME', 'DRIVER', 'SUBNET', 'GATEWAY', 'BRIDGE'], ...nets.map((n) => [n.name, n.driver, n.subnet, n.gateway, n.bridge])];
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd()).join('\n');
}

async function network(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const p = parseArgs(rest, [...common, { names: ['driver', 'd'], value: true }, { names: ['subnet'], value: true }, { names: ['force', 'f'] }]);
  const nets = new Networks(value(p, 'state-dir') !== undefined ? { stateDir: value(p, 'state-dir')! } : {});
  try {
    switch (sub) {
      case 'create': {
        const name = p.positionals[0];
        const subnet = value(p, 'subnet');
        if (!name || !subnet || p.positionals.length !== 1) throw new Usage('network create', 'usage: tsnetlink network create --driver bridge --subnet CIDR NAME');
        const rec = await nets.create({ name, subnet, driver: (value(p, 'driver') ?? 'bridge') as 'bridge' });
        out(has(p, 'json') ? JSON.stringify(rec, null, 2) : `${rec.name} ${rec.subnet} gateway ${rec.gateway}`);
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
      case 'repair':
        await nets.repair();
        out('rules re-applied');
        return 0;
      case 'prune': {
        const ids = await nets.prune(p.positionals[0]);
        out(has(p, 'json') ? JSON.stringify(ids) : ids.length ? `pruned ${ids.join(' ')}` : 'nothing to prune');
        return 0;
      }
      default:
        throw new Usage('network', `unknown subcommand ${JSON.stringify(sub ?? '')}; see tsnetlink --help`);
    }
  } finally {
    nets.close();
  }
}

const connectFlags: FlagSpec[] = [...common, { names: ['net', 'network'], value: true }, { names: ['p', 'publish'], value: true, repeat: true }, { names: ['ifname'], value: true }];

async function connectCmd(argv: string[], disconnect: boolean): Promise<number> {
  const p = parseArgs(argv, connectFlags);
  const net = value(p, 'net');
  const target = p.positionals[0];
  if (!net || !target || p.positionals.length !== 1) throw new Usage(disconnect ? 'disconnect' : 'connect', `usage: tsnetlink ${disconnect ? 'disconnect -net NAME PID|ENDPOINT_ID' : 'connect -net NAME [-p H:C]... PID'}`);
  const nets = new Networks(value(p, 'state-dir') !== undefined ? { stateDir: value(p, 'state-dir')! } : {});
  try {
    if (disconnect) {
      // An all-digit target is tried as a PID first, then as an endpoint id (ids can be digits too).
      let ep: { id: string } | undefined;
      if (/^\d+$/.test(target)) {
        try {
          ep = nets.endpointOf(net, Number(target));
        } catch {
          ep = undefined; // no such process
        }
      }
      const removed = await nets.disconnect(net, ep?.id ?? target);
      out(removed ? 'disconnected' : 'not connected (nothing to do)');
      return 0;
    }
    if (!/^\d+$/.test(target)) throw new Usage('connect', `${JSON.stringify(target)} is not a PID`);
    const ep = await nets.connect(net, Number(target), { ports: values(p, 'p'), ...(value(p, 'ifname') ? { ifname: value(p, 'ifname')! } : {}) });
    out(JSON.stringify(ep, null, 2));
    return 0;
  } finally {
    nets.close();
  }
}

const SIGNALS: Record<string, number> = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 };

async function run(argv: string[]): Promise<number> {
  const p = parseArgs(argv, [...connectFlags, { names: ['i', 'interactive'] }, { names: ['t', 'tty'] }, { names: ['name'], value: true }]);
  const cmd = p.rest.length ? p.rest : p.positionals;
  const net = value(p, 'net');
  if (!net || cmd.length === 0) throw new Usage('run', 'usage: tsnetlink run [-it] -net NAME [-p H:C]... -- CMD [ARGS...]');
  const nets = new Networks(value(p, 'state-dir') !== undefined ? { stateDir: value(p, 'state-dir')! } : {});
  const id = value(p, 'name') ?? randomBytes(6).toString('hex');
  const nsName = `tsn-${id}`;
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
    ns = createNamedNetns(nsName);
    const ep = await nets.connect(net, ns, { id, ports: values(p, 'p'), ...(value(p, 'ifname') ? { ifname: value(p, 'ifname')! } : {}) });
    epId = ep.id;
    if (pending) return 128 + SIGNALS[pending]!;
    process.stderr.write(`tsnetlink: ${id} on ${net}: ${ep.cidr} via ${ep.gateway}${ep.mappings.length ? `, published ${values(p, 'p').join(' ')}` : ''}\n`);
    const interactive = has(p, 'i') || has(p, 't');
    const c = spawnInNetns(ns, cmd[0]!, cmd.slice(1), { stdio: interactive ? 'inherit' : ['ignore', 'inherit', 'inherit'] });
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
    if (ns) {
      ns.close();
      try {
        deleteNamedNetns(nsName);
      } catch {
        /* already gone */
      }
    }
    nets.close();
    for (const s of Object.keys(SIGNALS)) process.off(s, onSignal);
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
