/**
 * The engine rows: what a resident engine (`tsnetlink engine`) makes of the calls runtimes and
 * shells make as processes. Each sample runs every method once, in a rotating order, on a fresh
 * netns (interleaved, as the other rows):
 *
 * - CNI ADD and DEL with one published port, as Podman's flow calls plugins (its conflist
 *   rewritten to tsnetlink, as the Podman rows do), through the shim and the engine by each
 *   client (bash over loopback, curl over the unix socket, Node), and without an engine, with and
 *   without NODE_EXTRA_CA_CERTS in the caller's environment; against the stock chain Podman
 *   writes for the same network (bridge + host-local, portmap, firewall, tuning: one process
 *   each, chained with prevResult; DEL in reverse order).
 * - The CLI's connect -p and disconnect as processes (its launcher, bin/tsnetlink, as the package
 *   installs it) through the engine by the bash client and by Node's, and without one, with and
 *   without NODE_EXTRA_CA_CERTS, against netavark setup -p and teardown -p.
 * - Drift: from `nft flush ruleset`, `iptables -F` and a host veth set down to the published
 *   port answering again from an upstream namespace, with the engine repairing.
 *
 * Every network has a keeper container, so a sample measures an attachment, not a network's
 * creation (the stock bridge plugin keeps its bridge too). The engine runs as a process of its
 * own on a state directory of its own, and is stopped at the end (killed on any failure).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createNamedNetns, deleteNamedNetns, withNetns, type NetnsHandle } from '../../src/index.js';
import { probeTcp } from '../../test/helpers.js';
import { closeNetavark, netavarkBinary, netavarkSetup, netavarkTeardown, openNetavark, type NetavarkNet } from './netavark.js';
import { newSlot } from './methods.js';
import { fmtRatio, table, verdict, type Verdict } from './report.js';
import { fmtMs, round, summarize } from './stats.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url)); // dist/bench/lib -> repo root
/** The CLI as the package installs it: the launcher, whose shell clients forward before any Node starts. */
const CLI = join(ROOT, 'bin/tsnetlink');
/** The CLI's Node entry, which the engine runs as. */
const NODE_CLI = join(ROOT, 'dist/bundle/tsnetlink.js');
const SHIM = join(ROOT, 'bin/tsnetlink-cni');
const STOCK = '/usr/lib/cni';
const STATE = '/run/tsnetlink-engine-bench';
const CA = '/etc/ssl/certs/ca-certificates.crt';
const CNI_NET = 'benchengine';

/** The environment every call is made with: the bench's own, without extra CA certificates unless a row adds them. */
function baseEnv(): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, TSNETLINK_STATE_DIR: STATE };
  delete e['NODE_EXTRA_CA_CERTS'];
  delete e['TSNETLINK_ENGINE'];
  delete e['TSNETLINK_ENGINE_CLIENT'];
  // The launcher runs this Node where a call runs in Node.
  e['TSNETLINK_NODE'] = process.execPath;
  return e;
}

/** Runs argv with env and stdin; returns ms and stdout, throws on a non-zero exit. */
function timed(argv: readonly string[], env: NodeJS.ProcessEnv, input = ''): { ms: number; out: string } {
  const t = performance.now();
  const r = spawnSync(argv[0]!, argv.slice(1), { env, input, encoding: 'utf8', timeout: 60_000 });
  const ms = performance.now() - t;
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: exit ${r.status ?? r.signal}: ${r.stdout}${r.stderr}`.slice(0, 600));
  return { ms, out: r.stdout };
}

/** Podman's conflist entries for the stock chain on one network (what `podman network create` writes with the CNI backend). */
function stockChain(): Record<string, unknown>[] {
  return [
    { type: 'bridge', bridge: 'cni-bench9', isGateway: true, ipMasq: true, hairpinMode: true, ipam: { type: 'host-local', routes: [{ dst: '0.0.0.0/0' }], ranges: [[{ subnet: '10.95.0.0/24', gateway: '10.95.0.1' }]], dataDir: `${STATE}-hostlocal` } },
    { type: 'portmap', capabilities: { portMappings: true } },
    { type: 'firewall', backend: '' },
    { type: 'tuning' },
  ];
}

/** The tsnetlink entry Podman's conflist is rewritten to (the Podman rows' toTsnetlink). */
function tsnEntry(): Record<string, unknown> {
  return { type: 'tsnetlink', bridge: 'tsnbenche', isGateway: true, ipMasq: true, hairpinMode: true, ipam: { type: 'tsnetlink', ranges: [[{ subnet: '10.96.0.0/16', gateway: '10.96.0.1' }]], routes: [{ dst: '0.0.0.0/0' }] }, capabilities: { portMappings: true, ips: true } };
}

/** A runtime's call of one plugin: its entry with the list's name and version, the runtime config, prevResult. */
function pluginConf(entry: Record<string, unknown>, name: string, hostPort: number, prevResult?: unknown): string {
  const caps = entry['capabilities'] as Record<string, boolean> | undefined;
  return JSON.stringify({
    cniVersion: '0.4.0', name, ...entry,
    ...(caps?.['portMappings'] ? { runtimeConfig: { portMappings: [{ hostPort, containerPort: 80, protocol: 'tcp' }] } } : {}),
    ...(prevResult !== undefined ? { prevResult } : {}),
  });
}

function cniEnv(env: NodeJS.ProcessEnv, command: string, id: string, ns: string): NodeJS.ProcessEnv {
  return { ...env, CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: `/run/netns/${ns}`, CNI_IFNAME: 'eth0', CNI_PATH: STOCK, CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAME=${id}` };
}

/** The stock chain's ADD (each plugin in order, on the previous result) and DEL (reverse order), ms each. */
function stockAddDel(id: string, ns: string, hostPort: number): { add: number; del: number } {
  const env = baseEnv();
  let prev: unknown;
  const results: unknown[] = [];
  let add = 0;
  for (const p of stockChain()) {
    const r = timed([join(STOCK, p['type'] as string)], cniEnv(env, 'ADD', id, ns), pluginConf(p, 'benchstock', hostPort, prev));
    add += r.ms;
    prev = JSON.parse(r.out);
    results.push(prev);
  }
  let del = 0;
  const chain = stockChain();
  for (let i = chain.length - 1; i >= 0; i--) del += timed([join(STOCK, chain[i]!['type'] as string)], cniEnv(env, 'DEL', id, ns), pluginConf(chain[i]!, 'benchstock', hostPort, results[i])).ms;
  return { add, del };
}

/** tsnetlink's ADD and DEL through the shim with `extra` in the environment, ms each. */
function tsnAddDel(id: string, ns: string, hostPort: number, extra: NodeJS.ProcessEnv): { add: number; del: number } {
  const env = { ...baseEnv(), ...extra };
  const add = timed([SHIM], cniEnv(env, 'ADD', id, ns), pluginConf(tsnEntry(), CNI_NET, hostPort));
  const del = timed([SHIM], cniEnv(env, 'DEL', id, ns), pluginConf(tsnEntry(), CNI_NET, hostPort, JSON.parse(add.out)));
  return { add: add.ms, del: del.ms };
}

/** The CLI's connect -p and disconnect as processes, ms each. */
function cliConnectDisconnect(ns: string, hostPort: number, extra: NodeJS.ProcessEnv): { add: number; del: number } {
  const env = { ...baseEnv(), ...extra };
  const add = timed([CLI, 'connect', '--state-dir', STATE, '-net', 'benchcli', '-p', `${hostPort}:80`, `/run/netns/${ns}`], env);
  const del = timed([CLI, 'disconnect', '--state-dir', STATE, '-net', 'benchcli', `/run/netns/${ns}`], env);
  return { add: add.ms, del: del.ms };
}

/** The engine as a process of its own on the bench's state directory; resolves once it listens. */
export async function startEngineProcess(stateDir = STATE): Promise<{ proc: ChildProcess; log: () => string }> {
  const proc = spawn(process.execPath, [NODE_CLI, 'engine', '--state-dir', stateDir], { env: baseEnv(), stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr!.on('data', (d) => (log += d));
  // Whatever ends the bench, the engine it started ends with it.
  process.once('exit', () => void (proc.exitCode === null && proc.signalCode === null && proc.kill('SIGKILL')));
  const end = Date.now() + 20_000;
  while (!existsSync(join(stateDir, 'engine.sock')) || !existsSync(join(stateDir, 'engine.tcp'))) {
    if (Date.now() > end || proc.exitCode !== null) throw new Error(`the engine did not start: ${log}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return { proc, log: () => log };
}

/** Stops the engine process (SIGTERM, then SIGKILL after 10 s). */
export async function stopEngineProcess(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
  if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
}

type Pair = { add: number[]; del: number[] };

/** A method of the CNI and CLI table. */
interface Row {
  key: string;
  label: string;
  run(i: number, ns: string, hostPort: number): { add: number; del: number };
}

/** How long, from each drift to the published port answering again from upstream, ms. */
async function measureDrift(trials: number, upNs: NetnsHandle, hostPort: number, hostVeth: string): Promise<Record<string, number[]>> {
  const answers = async (ms: number): Promise<boolean> => (await probeTcp(upNs, '10.99.0.1', hostPort, ms)).startsWith('drift-ok');
  const waitAnswer = async (limitMs: number): Promise<number> => {
    const t0 = performance.now();
    while (performance.now() - t0 < limitMs) {
      if (await answers(10)) return performance.now() - t0;
    }
    throw new Error(`the published port did not answer again within ${limitMs} ms`);
  };
  const drifts: Record<string, () => void> = {
    'nft flush ruleset': () => void spawnSync('nft', ['flush', 'ruleset']),
    'iptables -F': () => void spawnSync('iptables', ['-w', '5', '-F']),
    'host veth set down': () => void spawnSync('ip', ['link', 'set', hostVeth, 'down']),
  };
  const out: Record<string, number[]> = Object.fromEntries(Object.keys(drifts).map((k) => [k, []]));
  for (let i = 0; i < trials; i++) {
    for (const [what, drift] of Object.entries(drifts)) {
      await waitAnswer(5000);
      // Quiet before each drift: the repair of the previous one and its own events are over.
      await new Promise((r) => setTimeout(r, 150));
      drift();
      // From the moment the command has committed its change (it has exited).
      out[what]!.push(await waitAnswer(5000));
    }
  }
  return out;
}

/** The engine rows and their targets. */
export async function engineBench(quick: boolean): Promise<{ lines: string[]; verdicts: Verdict[]; json: unknown }> {
  const n = quick ? 3 : 30;
  const driftN = quick ? 2 : 20;
  const missing = ['bridge', 'host-local', 'portmap', 'firewall', 'tuning'].filter((p) => !existsSync(join(STOCK, p)));
  const nvBin = netavarkBinary();
  mkdirSync(STATE, { recursive: true, mode: 0o700 });
  const engine = await startEngineProcess();
  const made: string[] = [];
  const servers: net.Server[] = [];
  let netavark: NetavarkNet | undefined;
  const netns = (name: string): NetnsHandle => {
    made.push(name);
    return createNamedNetns(name);
  };
  try {
    const env = baseEnv();
    // The networks, each with a keeper container: made through the engine, untimed.
    timed([CLI, 'network', 'create', '--state-dir', STATE, '--subnet', '10.97.0.0/16', 'benchcli'], env);
    netns('bekeepcli').close();
    timed([CLI, 'connect', '--state-dir', STATE, '-net', 'benchcli', '/run/netns/bekeepcli'], env);
    netns('bekeepcni').close();
    timed([SHIM], cniEnv(env, 'ADD', 'keeper', 'bekeepcni'), pluginConf(tsnEntry(), CNI_NET, 1));
    if (missing.length === 0) {
      netns('bekeepstock').close();
      let prev: unknown;
      for (const p of stockChain()) prev = JSON.parse(timed([join(STOCK, p['type'] as string)], cniEnv(env, 'ADD', 'keeper', 'bekeepstock'), pluginConf(p, 'benchstock', 1, prev)).out);
    }
    if (nvBin) netavark = openNetavark(nvBin, STATE);
    const ca = existsSync(CA) ? { NODE_EXTRA_CA_CERTS: CA } : undefined;
    const haveSocat = spawnSync('sh', ['-c', 'command -v socat']).status === 0;
    const rows: Row[] = [
      ...(missing.length === 0 ? [{ key: 'stock', label: 'stock chain (bridge+portmap+firewall+tuning)', run: (i: number, ns: string, p: number) => stockAddDel(`bs${i}`, ns, p) }] : []),
      { key: 'bash', label: 'tsnetlink via engine (bash client)', run: (i, ns, p) => tsnAddDel(`bb${i}`, ns, p, { TSNETLINK_ENGINE_CLIENT: 'bash' }) },
      ...(haveSocat ? [{ key: 'socat', label: 'tsnetlink via engine (sh + socat)', run: (i: number, ns: string, p: number) => tsnAddDel(`bx${i}`, ns, p, { TSNETLINK_ENGINE_CLIENT: 'socat' }) }] : []),
      { key: 'curl', label: 'tsnetlink via engine (sh + curl)', run: (i, ns, p) => tsnAddDel(`bc${i}`, ns, p, { TSNETLINK_ENGINE_CLIENT: 'curl' }) },
      { key: 'node', label: 'tsnetlink via engine (Node client)', run: (i, ns, p) => tsnAddDel(`bn${i}`, ns, p, { TSNETLINK_ENGINE_CLIENT: 'node' }) },
      { key: 'off', label: 'tsnetlink without engine', run: (i, ns, p) => tsnAddDel(`bo${i}`, ns, p, { TSNETLINK_ENGINE: 'off' }) },
      ...(ca ? [{ key: 'offca', label: '  the same, NODE_EXTRA_CA_CERTS set', run: (i: number, ns: string, p: number) => tsnAddDel(`ba${i}`, ns, p, { TSNETLINK_ENGINE: 'off', ...ca }) }] : []),
      { key: 'cli', label: 'CLI connect -p via engine (bash client)', run: (_i, ns, p) => cliConnectDisconnect(ns, p, {}) },
      ...(ca ? [{ key: 'clica', label: '  the same, NODE_EXTRA_CA_CERTS set', run: (_i: number, ns: string, p: number) => cliConnectDisconnect(ns, p, ca) }] : []),
      { key: 'clinode', label: 'CLI connect -p via engine (Node client)', run: (_i, ns, p) => cliConnectDisconnect(ns, p, { TSNETLINK_ENGINE_CLIENT: 'node' }) },
      { key: 'clioff', label: 'CLI connect -p without engine', run: (_i, ns, p) => cliConnectDisconnect(ns, p, { TSNETLINK_ENGINE: 'off' }) },
      ...(ca ? [{ key: 'clioffca', label: '  the same, NODE_EXTRA_CA_CERTS set', run: (_i: number, ns: string, p: number) => cliConnectDisconnect(ns, p, { TSNETLINK_ENGINE: 'off', ...ca }) }] : []),
      ...(netavark ? [{ key: 'nv', label: 'netavark setup -p / teardown -p', run: (_i: number, ns: string, p: number) => {
        const s = { ...newSlot(), ns, hostPort: p };
        const t0 = performance.now();
        netavarkSetup(netavark!, s, true);
        const t1 = performance.now();
        netavarkTeardown(netavark!, s, true);
        return { add: t1 - t0, del: performance.now() - t1 };
      } }] : []),
    ];
    const res: Record<string, Pair> = Object.fromEntries(rows.map((r) => [r.key, { add: [], del: [] }]));
    let port = 21000;
    for (let i = -1; i < n; i++) {
      // Rotating order: no row always follows the same one. Round -1 warms up and is dropped.
      const order = rows.map((_, j) => rows[(j + i + rows.length) % rows.length]!);
      for (const r of order) {
        const ns = `be${r.key}${i + 1}`;
        netns(ns).close();
        const t = r.run(i + 1, ns, port++);
        deleteNamedNetns(ns);
        made.splice(made.indexOf(ns), 1);
        if (i >= 0) {
          res[r.key]!.add.push(t.add);
          res[r.key]!.del.push(t.del);
        }
      }
    }
    // Each client's own cost: a call the plugin refuses at once (an invalid container id: code
    // 4), so the time is the client, the round trip and Node where there is one.
    const clients: [string, string, string[], NodeJS.ProcessEnv][] = [
      ['bash', 'shim, bash client', [SHIM], { TSNETLINK_ENGINE_CLIENT: 'bash' }],
      ['curl', 'shim, sh + curl', [SHIM], { TSNETLINK_ENGINE_CLIENT: 'curl' }],
      ...(haveSocat ? [['socat', 'shim, sh + socat', [SHIM], { TSNETLINK_ENGINE_CLIENT: 'socat' }] as [string, string, string[], NodeJS.ProcessEnv]] : []),
      ['node', 'shim, Node client', [SHIM], { TSNETLINK_ENGINE_CLIENT: 'node' }],
      ['off', 'shim, no engine (the plugin in Node)', [SHIM], { TSNETLINK_ENGINE: 'off' }],
      ['nodee0', 'node -e 0', [process.execPath, '-e', '0'], {}],
      ['gover', 'Go bridge plugin VERSION', [join(STOCK, 'bridge')], { CNI_COMMAND: 'VERSION' }],
    ];
    const clientMs: Record<string, number[]> = Object.fromEntries(clients.map(([k]) => [k, []]));
    const refusedConf = pluginConf(tsnEntry(), CNI_NET, 1);
    for (let i = -1; i < n * 2; i++) {
      for (const [k, , argv, extra] of clients) {
        const e = { ...cniEnv({ ...baseEnv(), ...extra }, 'ADD', '-bad', 'bekeepcni'), ...(extra['CNI_COMMAND'] ? { CNI_COMMAND: extra['CNI_COMMAND'] } : {}) };
        const t0 = performance.now();
        spawnSync(argv[0]!, argv.slice(1), { env: e, input: refusedConf });
        if (i >= 0) clientMs[k]!.push(performance.now() - t0);
      }
    }
    // Drift: a container with a published port, reached from an upstream namespace through the host.
    const up = netns('beup');
    spawnSync('ip', ['link', 'add', 'tsnbup0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', 'beup']);
    spawnSync('ip', ['addr', 'add', '10.99.0.1/24', 'dev', 'tsnbup0']);
    spawnSync('ip', ['link', 'set', 'tsnbup0', 'up']);
    spawnSync('ip', ['-n', 'beup', 'addr', 'add', '10.99.0.2/24', 'dev', 'eth0']);
    spawnSync('ip', ['-n', 'beup', 'link', 'set', 'eth0', 'up']);
    const srv = netns('besrv');
    servers.push(withNetns(srv, () => net.createServer((c) => c.end('drift-ok\n')).listen(80)));
    const ep = JSON.parse(timed([CLI, 'connect', '--state-dir', STATE, '-net', 'benchcli', '-p', '18099:80', '/run/netns/besrv'], env).out) as { hostIfname: string };
    const drift = await measureDrift(driftN, up, 18099, ep.hostIfname);
    up.close();
    srv.close();

    const s = (k: string, w: 'add' | 'del') => (res[k] ? summarize(res[k]![w]) : undefined);
    const p50 = (k: string, w: 'add' | 'del') => s(k, w)?.p50 ?? NaN;
    const cniRows = rows.filter((r) => !r.key.startsWith('cli') && r.key !== 'nv');
    const cliRows = rows.filter((r) => r.key.startsWith('cli') || r.key === 'nv');
    const cell = (k: string, w: 'add' | 'del', ref: string) => [fmtMs(p50(k, w)), fmtMs(s(k, w)?.p90), fmtRatio(p50(k, w) / p50(ref, w))];
    const lines = [
      `Engine (tsnetlink engine): calls as processes, ${n} samples per row, interleaved, fresh netns each, one published port; a keeper container on every network`,
      table(['CNI call, Podman\'s flow', 'ADD p50', 'p90', 'vs stock', 'DEL p50', 'p90', 'vs stock'], cniRows.map((r) => [r.label, ...cell(r.key, 'add', 'stock'), ...cell(r.key, 'del', 'stock')])),
      '',
      table(['client of the engine (a call refused at once)', 'p50', 'p90'], clients.map(([k, label]) => { const x = summarize(clientMs[k]!); return [label, fmtMs(x.p50), fmtMs(x.p90)]; })),
      '',
      table(['CLI as a process', 'connect -p p50', 'p90', 'vs netavark', 'disconnect p50', 'p90', 'vs netavark'], cliRows.map((r) => [r.label, ...cell(r.key, 'add', 'nv'), ...cell(r.key, 'del', 'nv')])),
      '  (rows without NODE_EXTRA_CA_CERTS unless they say so: the CNI shim and the CLI\'s launcher clear it before Node)',
      '',
      table(['drift, engine running', 'n', 'to answering again p50', 'p90', 'max'], Object.entries(drift).map(([k, v]) => { const x = summarize(v); return [k, String(x.n), fmtMs(x.p50), fmtMs(x.p90), fmtMs(x.max)]; })),
      '  (from the command\'s exit to the published port answering from an upstream netns, polled every 10 ms)',
    ];
    const dp50 = (k: string) => summarize(drift[k] ?? []).p50;
    const verdicts = [
      verdict('CNI ADD via engine (bash client) / stock chain ADDs', p50('bash', 'add') / p50('stock', 'add'), 0.3, 'max', 'x', missing.length ? `stock plugins missing: ${missing.join(', ')}` : undefined),
      verdict('CNI DEL via engine (bash client) / stock chain DELs', p50('bash', 'del') / p50('stock', 'del'), 0.3, 'max', 'x', missing.length ? `stock plugins missing: ${missing.join(', ')}` : undefined),
      verdict('CLI connect -p as a process via engine / netavark setup -p', p50('cli', 'add') / p50('nv', 'add'), 1.0, 'max', 'x', netavark ? undefined : 'netavark not installed'),
      verdict('CNI ADD without engine, NODE_EXTRA_CA_CERTS set / not set', p50('offca', 'add') / p50('off', 'add'), 1.1, 'max', 'x', ca ? undefined : `${CA} not found`),
      verdict('CLI connect -p via engine, NODE_EXTRA_CA_CERTS set / not set', p50('clica', 'add') / p50('cli', 'add'), 1.1, 'max', 'x', ca ? undefined : `${CA} not found`),
      verdict('CLI connect -p without engine, NODE_EXTRA_CA_CERTS set / not set', p50('clioffca', 'add') / p50('clioff', 'add'), 1.1, 'max', 'x', ca ? undefined : `${CA} not found`),
      verdict('drift: nft flush ruleset to the port answering again, p50', dp50('nft flush ruleset'), 100, 'max', 'ms'),
      verdict('drift: iptables -F to the port answering again, p50', dp50('iptables -F'), 100, 'max', 'ms'),
      verdict('drift: host veth set down to the port answering again, p50', dp50('host veth set down'), 100, 'max', 'ms'),
    ];
    const json = {
      n, driftTrials: driftN,
      rows: Object.fromEntries(rows.map((r) => [r.key, { label: r.label, add: s(r.key, 'add'), del: s(r.key, 'del') }])),
      clients: Object.fromEntries(clients.map(([k, label]) => [k, { label, ...summarize(clientMs[k]!) }])),
      drift: Object.fromEntries(Object.entries(drift).map(([k, v]) => [k, { ...summarize(v), samples: v.map(round) }])),
    };
    return { lines, verdicts, json };
  } finally {
    for (const s of servers) s.close();
    await stopEngineProcess(engine.proc);
    if (netavark) {
      try {
        closeNetavark(netavark);
      } catch {
        // the sandbox drops it with its namespaces
      }
    }
    for (const ns of made) {
      try {
        deleteNamedNetns(ns);
      } catch {
        // already gone
      }
    }
    spawnSync('ip', ['link', 'del', 'tsnbup0']);
  }
}
