/** `tsnetlink network ...`: create, ls, inspect, rm, prune, repair, check. */
import { Networks, type CreateNetworkOptions, type ReconcileReport, type NetworkRecord } from '../bridge/index.js';
import { has, value, values, type Parsed } from './args.js';
import { COMMON, managerOptions, out, parseCommand, requirePrivileges, Usage } from './common.js';

function table(nets: NetworkRecord[]): string {
  const rows = [['NAME', 'DRIVER', 'SUBNET', 'GATEWAY', 'BRIDGE'], ...nets.map((n) => [n.name, n.driver, n.subnets.map((s) => s.subnet).join(','), n.subnets.map((s) => s.gateway).join(','), n.bridge])];
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
function networkOptions(p: Parsed): Partial<CreateNetworkOptions> {
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
        o.gatewayMode = v as NonNullable<CreateNetworkOptions['gatewayMode']>;
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

const FLAGS = [
  ...COMMON,
  { names: ['driver', 'd'], value: true },
  { names: ['subnet'], value: true, repeat: true },
  { names: ['ipv6'] },
  { names: ['force', 'f'] },
  { names: ['internal'] },
  { names: ['opt', 'o'], value: true, repeat: true },
];

const SUBCOMMANDS = ['create', 'ls', 'list', 'inspect', 'rm', 'remove', 'prune', 'repair', 'check'];

/** Runs `tsnetlink network SUB ...`; returns the exit code. */
export async function network(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === '-h' || sub === '--help') {
    parseCommand('network', ['--help'], COMMON);
    return 0;
  }
  if (sub === undefined || !SUBCOMMANDS.includes(sub)) throw new Usage('network', `unknown subcommand ${JSON.stringify(sub ?? '')}; see tsnetlink network --help`);
  const topic = `network ${sub === 'list' ? 'ls' : sub === 'remove' ? 'rm' : sub}`;
  const p = parseCommand(topic, rest, FLAGS);
  if (!p) return 0;
  // Usage is checked before privileges: a typo needs no root to be told.
  if (sub === 'create' && (p.positionals.length !== 1 || values(p, 'subnet').length === 0)) throw new Usage('network create', 'usage: tsnetlink network create --driver bridge --subnet CIDR [--subnet CIDR6] NAME');
  // Docker's spelling: --ipv6 asks for IPv6, and a --subnet of each family says which.
  if (sub === 'create' && has(p, 'ipv6') && !values(p, 'subnet').some((s) => s.includes(':'))) {
    throw new Usage('network create --ipv6', 'needs an IPv6 --subnet such as fd00:10::/64 (tsnetlink does not pick one)');
  }
  if (sub === 'inspect' && p.positionals.length !== 1) throw new Usage('network inspect', 'usage: tsnetlink network inspect NAME');
  if ((sub === 'rm' || sub === 'remove') && p.positionals.length === 0) throw new Usage('network rm', 'usage: tsnetlink network rm [--force] NAME...');
  requirePrivileges();
  const nets = new Networks(managerOptions(p));
  try {
    switch (sub) {
      case 'create': {
        const { record: rec, hostChanges, notices } = await nets.createNetwork({ name: p.positionals[0]!, subnet: values(p, 'subnet'), driver: (value(p, 'driver') ?? 'bridge') as 'bridge', ...networkOptions(p) });
        for (const n of notices) process.stderr.write(`tsnetlink: ${n}\n`);
        if (has(p, 'json')) out(JSON.stringify({ ...rec, hostChanges }, null, 2));
        else {
          out(`${rec.name} ${rec.subnets.map((s) => `${s.subnet} gateway ${s.gateway}`).join(', ')}${rec.internal ? ' internal' : ''}`);
          for (const c of hostChanges) process.stderr.write(`tsnetlink: changed on this host: ${c}\n`);
        }
        return 0;
      }
      case 'ls':
      case 'list': {
        out(has(p, 'json') ? JSON.stringify(nets.list(), null, 2) : table(nets.list()));
        // A network whose record cannot be read still exists (its bridge, containers and rules
        // stay): it is named, and the exit status says the listing is not the whole truth.
        const bad = nets.unreadable();
        for (const b of bad) process.stderr.write(`tsnetlink: network ${b.name}: its record is unreadable (${b.reason}); its links and rules are kept as they are; restore ${b.path}, or remove the network with tsnetlink network rm --force ${b.name}\n`);
        return bad.length > 0 ? 1 : 0;
      }
      case 'inspect':
        out(JSON.stringify(nets.inspect(p.positionals[0]!), null, 2));
        return 0;
      case 'rm':
      case 'remove':
        for (const n of p.positionals) {
          await nets.remove(n, { force: has(p, 'force') });
          out(n);
        }
        return 0;
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
      default: {
        const problems = await nets.check();
        if (has(p, 'json')) out(JSON.stringify(problems, null, 2));
        else out(problems.length === 0 ? 'consistent: state, kernel and firewall agree' : problems.join('\n'));
        return problems.length === 0 ? 0 : 1;
      }
    }
  } finally {
    nets.close();
  }
}
