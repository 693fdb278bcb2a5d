/** `tsnetlink run`, `connect` and `disconnect`: containers on a network. */
import type { ChildProcess } from 'node:child_process';
import { Networks, NetworkError, type ContainerRef } from '../bridge/index.js';
import { createAnonymousNetns } from '../ns/named.js';
import { spawnInNetns } from '../ns/spawn.js';
import type { NetnsHandle } from '../ns/netns.js';
import { randomHex } from '../sys/fsio.js';
import { findBinary } from '../sys/run.js';
import { has, value, values, type FlagSpec } from './args.js';
import { COMMON, managerOptions, out, parseCommand, requirePrivileges, Usage } from './common.js';

const FLAGS: FlagSpec[] = [
  ...COMMON,
  { names: ['net', 'network'], value: true },
  { names: ['p', 'publish'], value: true, repeat: true },
  { names: ['ifname'], value: true },
  { names: ['name'], value: true },
  { names: ['allow-host-netns'] },
  { names: ['publish-over-listener'] },
];

/** A container given on the command line: a PID or a netns path. */
function containerArg(target: string): ContainerRef {
  if (/^\d+$/.test(target)) return Number(target);
  if (target.startsWith('/')) return { path: target };
  throw new Usage('container', `${JSON.stringify(target)} is not a PID or a netns path`);
}

/** `tsnetlink connect -net NAME [-p ...] PID|NETNS_PATH`: prints the endpoint as JSON. */
export async function connect(argv: string[]): Promise<number> {
  const p = parseCommand('connect', argv, FLAGS);
  if (!p) return 0;
  const net = value(p, 'net');
  const target = p.positionals[0];
  if (!net || !target || p.positionals.length !== 1) throw new Usage('connect', 'usage: tsnetlink connect -net NAME [-p H:C]... PID|NETNS_PATH');
  const container = containerArg(target);
  requirePrivileges();
  const nets = new Networks(managerOptions(p));
  try {
    const ep = await nets.connect(net, container, {
      ports: values(p, 'p'),
      ...(value(p, 'ifname') ? { ifname: value(p, 'ifname')! } : {}),
      ...(value(p, 'name') ? { id: value(p, 'name')! } : {}),
      ...(has(p, 'allow-host-netns') ? { allowHostNetns: true } : {}),
      ...(has(p, 'publish-over-listener') ? { allowHostListener: true } : {}),
    });
    out(JSON.stringify(ep, null, 2));
    return 0;
  } finally {
    nets.close();
  }
}

/**
 * `tsnetlink disconnect -net NAME PID|NETNS_PATH|ENDPOINT_ID`. By container it is idempotent (not
 * connected is fine, as CNI DEL is); an endpoint id the network does not have is an error, so a
 * typo never passes for success. An all-digit target that is no live process is tried as an id.
 */
export async function disconnect(argv: string[]): Promise<number> {
  const p = parseCommand('disconnect', argv, [...COMMON, { names: ['net', 'network'], value: true }]);
  if (!p) return 0;
  const net = value(p, 'net');
  const target = p.positionals[0];
  if (!net || !target || p.positionals.length !== 1) throw new Usage('disconnect', 'usage: tsnetlink disconnect -net NAME PID|NETNS_PATH|ENDPOINT_ID');
  requirePrivileges();
  const nets = new Networks(managerOptions(p));
  try {
    // A misspelt network is an error, not "not connected": inspect refuses an unknown name (ENONET).
    nets.inspect(net);
    let byContainer = false;
    let id = target;
    if (/^\d+$/.test(target) || target.startsWith('/')) {
      try {
        const ep = nets.endpointOf(net, containerArg(target));
        byContainer = true;
        if (!ep) {
          out('not connected (nothing to do)');
          return 0;
        }
        id = ep.id;
      } catch (e) {
        const code = (e as { code?: string }).code;
        if (!(code === 'ENOENT' || code === 'ESRCH') || target.startsWith('/')) throw e;
      }
    }
    if (!(await nets.disconnect(net, id))) {
      if (byContainer) out('not connected (nothing to do)');
      else throw new NetworkError('ENOENDPOINT', `network ${net} has no endpoint ${JSON.stringify(id)} (and no process ${id} is connected to it)`);
    } else out('disconnected');
    return 0;
  } finally {
    nets.close();
  }
}

const SIGNALS: Record<string, number> = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 };

/**
 * `tsnetlink run [OPTIONS] -net NAME CMD [ARGS...]`: a new network namespace that no path keeps
 * alive, connected, with CMD inside. CMD starts under `setpriv --pdeathsig KILL`, so if tsnetlink
 * itself is killed (even with SIGKILL) CMD dies too, the namespace goes with it (the kernel
 * deletes its veth), and the next prune, or the next connect that needs the port or address,
 * frees the endpoint.
 */
export async function run(argv: string[]): Promise<number> {
  const p = parseCommand('run', argv, [...FLAGS, { names: ['i', 'interactive'] }, { names: ['t', 'tty'] }], { stopAtPositional: true });
  if (!p) return 0;
  const cmd = p.rest;
  const net = value(p, 'net');
  if (!net || cmd.length === 0) throw new Usage('run', 'usage: tsnetlink run [-it] -net NAME [-p H:C]... CMD [ARGS...]');
  requirePrivileges();
  // A command that cannot start is refused before anything is created, in the words of a shell
  // (and with its exit status), not as the failure of the helper that would have started it.
  if (!findBinary(cmd[0]!)) {
    process.stderr.write(`tsnetlink: run: ${cmd[0]}: ${cmd[0]!.includes('/') ? 'no such executable file' : 'command not found (not on PATH)'}\n`);
    return 127;
  }
  const nets = new Networks(managerOptions(p));
  const id = value(p, 'name') ?? randomHex(6);
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
    const ep = await nets.connect(net, ns, { id, ports: values(p, 'p'), ...(value(p, 'ifname') ? { ifname: value(p, 'ifname')! } : {}), ...(has(p, 'publish-over-listener') ? { allowHostListener: true } : {}) });
    epId = ep.id;
    if (pending) return 128 + SIGNALS[pending]!;
    process.stderr.write(`tsnetlink: ${id} on ${net}: ${ep.addresses.map((a) => `${a.cidr}${ep.defaultRoute ? ` via ${a.gateway}` : ''}`).join(', ')}${ep.mappings.length ? `, published ${values(p, 'p').join(' ')}` : ''}\n`);
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
