/**
 * End-to-end: the resident engine (`tsnetlink engine`, a process of this file's own, killed on
 * every path) in the sandbox, with the CLI (its launcher, bin/tsnetlink) and the CNI plugin as
 * users and runtimes run them. Calls forwarded to it answer exactly as the same calls run in
 * their own process (output, exit code, state files and firewall after every step), by each
 * client of the launcher and of the shim; NODE_EXTRA_CA_CERTS never reaches the Node they run; calls run in
 * their process when it is stopped, killed or started by socket activation; it and in-process
 * callers work on one network at once and stay consistent; a kill -9 during calls leaves what
 * one prune settles, and no caller a wrong answer; drift (`nft flush ruleset`, `iptables -F`, a
 * host veth set down) is repaired, the published port answering again from outside within the
 * bound, with no reaction to its own changes; a non-root peer and malformed requests are refused
 * and change nothing.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Networks, createNamedNetns, deleteNamedNetns, type NetnsHandle } from '../../src/index.js';
import { encodeFields, stateDirOfArgv } from '../../src/engine/protocol.js';
import { nodeForOtherUsers, probeTcp, requireSandbox, stateFiles } from '../helpers.js';
import { box, rng, serveIn, type Box } from './lib.js';
import { normalizedNft } from './fw-oracle.js';
import { PLUGIN, STOCK } from './cni-lib.js';

requireSandbox('engine');

/** The CLI's Node entry (the engine runs as it; the Node client's own checks call it). */
const CLI = fileURLToPath(new URL('../../bundle/tsnetlink.js', import.meta.url));
/** The CLI as the package installs it: the launcher, whose shell clients forward before any Node starts. */
const LAUNCHER = fileURLToPath(new URL('../../../bin/tsnetlink', import.meta.url));
/** The launcher's environment: this Node for the calls it runs in Node. */
const launcherEnv = (env: NodeJS.ProcessEnv): NodeJS.ProcessEnv => ({ ...process.env, TSNETLINK_NODE: process.execPath, ...env });
const STATE = '/run/tsnetlink';
const SOCK = join(STATE, 'engine.sock');
const NET = 'engnet';
const nets = new Networks();
const boxes: Box[] = [];
const random = rng(Number(process.env['TSNETLINK_ENGINE_SEED'] ?? 20261207));

// ------------------------------------------------------------------ the engine process

interface EngineProc {
  proc: ChildProcess;
  log: () => string;
  exited: Promise<void>;
}
let engine: EngineProc | undefined;
/** Every engine this file started, by pid: killed on every path out. */
const started = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of started) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
});

/** Starts `tsnetlink engine -v` (or `argv` around it) and waits until its socket and port file are there. */
async function startEngine(wrap: string[] = []): Promise<EngineProc> {
  const argv = [...wrap, process.execPath, CLI, 'engine', '-v'];
  const proc = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  started.add(proc);
  let log = '';
  proc.stderr!.on('data', (d) => (log += d));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const e = { proc, log: () => log, exited };
  engine = e;
  if (wrap.length === 0) {
    // A killed engine's socket and port file may still be there: wait for this one to answer.
    const end = Date.now() + 20_000;
    for (;;) {
      if (Date.now() > end || proc.exitCode !== null) throw new Error(`the engine did not start: ${log}`);
      if (existsSync(join(STATE, 'engine.tcp')) && (await status().catch(() => undefined))?.pid === proc.pid) break;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  return e;
}

async function stopEngine(sig: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  const e = engine;
  engine = undefined;
  if (!e || e.proc.exitCode !== null || e.proc.signalCode !== null) return;
  e.proc.kill(sig);
  await e.exited;
}

/** The engine's status call (GET /v1/status on its socket). */
function status(): Promise<any> {
  return new Promise((resolve, reject) => {
    const s = net.connect(SOCK);
    let data = '';
    s.on('connect', () => s.write('GET /v1/status HTTP/1.0\r\n\r\n'));
    s.on('data', (d) => (data += d));
    s.on('end', () => resolve(JSON.parse(data.slice(data.indexOf('\r\n\r\n') + 4))));
    s.on('error', reject);
  });
}

/** A raw request to the engine's socket; resolves to what it answered (status line first). */
function raw(request: string | Buffer, path = SOCK): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(path);
    let data = '';
    s.on('connect', () => s.end(request));
    s.on('data', (d) => (data += d));
    s.on('close', () => resolve(data));
    s.on('error', (e) => resolve(`error ${(e as NodeJS.ErrnoException).code}`));
  });
}

// ------------------------------------------------------------------ callers

interface Outcome {
  code: number | null;
  out: string;
  err: string;
}

/** The CLI as a process (the launcher), to completion; `off` runs it in its own process whatever engine runs. */
function tsn(args: string[], env: NodeJS.ProcessEnv = {}): Outcome {
  const r = spawnSync(LAUNCHER, args, { encoding: 'utf8', timeout: 60_000, env: launcherEnv(env) });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** The CLI as a process in the background. */
function tsnAsync(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Outcome> {
  return new Promise((resolve) => {
    const p = spawn(LAUNCHER, args, { env: launcherEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout!.on('data', (d) => (out += d));
    p.stderr!.on('data', (d) => (err += d));
    p.on('close', (code) => resolve({ code, out, err }));
  });
}

/** The CNI plugin (the shim) with `command`, as a runtime calls it. */
function cniEnv(command: string, id: string, netns: string, extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { PATH: process.env['PATH'], CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: netns, CNI_IFNAME: 'eth0', CNI_PATH: STOCK, ...extra };
  for (const k of ['TSNETLINK_FIREWALL', 'TSNETLINK_IPTABLES_RESTORE']) if (process.env[k] && !(k in e)) e[k] = process.env[k];
  for (const [k, v] of Object.entries(e)) if (v === undefined) delete e[k];
  return e;
}
function cni(command: string, conf: unknown, id: string, netns: string, extra: NodeJS.ProcessEnv = {}): Outcome {
  const r = spawnSync(PLUGIN, [], { input: typeof conf === 'string' ? conf : JSON.stringify(conf), env: cniEnv(command, id, netns, extra), encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
function cniAsync(command: string, conf: unknown, id: string, netns: string, extra: NodeJS.ProcessEnv = {}): Promise<Outcome> {
  return new Promise((resolve) => {
    const p = spawn(PLUGIN, [], { env: cniEnv(command, id, netns, extra), stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout!.on('data', (d) => (out += d));
    p.stderr!.on('data', (d) => (err += d));
    p.on('close', (code) => resolve({ code, out, err }));
    p.stdin!.end(JSON.stringify(conf));
  });
}

const OFF = { TSNETLINK_ENGINE: 'off' };
const haveCurl = spawnSync('sh', ['-c', 'command -v curl']).status === 0;
const haveSocat = spawnSync('sh', ['-c', 'command -v socat']).status === 0;

/** What differs between two runs of the same call for no fault of either: random veth names and their MACs, times. */
function normalize(s: string): string {
  return s
    .replace(/veth[0-9a-f]{8}/g, 'vethX')
    .replace(/"name":"vethX","mac":"[0-9a-f:]{17}"/g, '"name":"vethX","mac":"M"')
    .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/g, 'TIME')
    .replace(/\[\d+:\d+\]/g, '[0:0]');
}

/** State files (the engine's own aside), firewall rules and links: what a call leaves behind. */
/** Waits (at most 5 s) until a running engine has no work left from the calls it answered; returns at once when none runs. */
function engineSettled(): void {
  if (!existsSync(SOCK)) return;
  const poll = `const net=require('net');const end=Date.now()+5000;const once=()=>{const s=net.connect(${JSON.stringify(SOCK)});let d='';s.on('connect',()=>s.write('GET /v1/status HTTP/1.0\\r\\n\\r\\n'));s.on('data',x=>d+=x);s.on('error',()=>process.exit(0));s.on('close',()=>{let n=0;try{n=JSON.parse(d.slice(d.indexOf('\\r\\n\\r\\n')+4)).pendingWork}catch{}if(n>0&&Date.now()<end)setTimeout(once,5);else process.exit(0)})};once()`;
  spawnSync(process.execPath, ['-e', poll]);
}

function snapshot(): string {
  const files = stateFiles(STATE).filter((f) => !f.startsWith('engine.'));
  // Admin state, not operstate: carrier on a new bridge comes up asynchronously.
  const links = (JSON.parse(execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' })) as { ifname: string; flags: string[] }[]).map((l) => `${l.ifname} ${l.flags.includes('UP') ? 'up' : 'down'}`).sort();
  // Chains in name order within each table: a table that an earlier run left lists the chains
  // made again after its own, where a new table lists them as made.
  const ruleset = normalizedNft().replace(/^(table [^\n]*\n)([\s\S]*?)^\}$/gm, (_, head: string, body: string) => head + (body.match(/^\t(?:chain|set|map) [\s\S]*?^\t\}\n/gm) ?? []).sort().join('') + '}');
  return normalize([...files, ...links, ruleset].join('\n'));
}

/**
 * The host as the sandbox began: forwarding off, FORWARD accepting, no host record. A network
 * create says what it changes on the host, so two runs of the same steps start from the same host.
 */
function resetHost(): void {
  for (const n of nets.list()) assert.equal(nets.inspect(n.name).endpoints, [], `network ${n.name} is empty before the host is reset`);
  execFileSync('sysctl', ['-qw', 'net.ipv4.ip_forward=0']);
  spawnSync('iptables', ['-w', '5', '-P', 'FORWARD', 'ACCEPT']);
  if (existsSync(join(STATE, 'host.json'))) unlinkSync(join(STATE, 'host.json'));
}

/** `network create NET` with `subnet`, after removing whatever NET an earlier test left (and, with `reset`, on the host as the sandbox began). */
function freshNetwork(subnet: string, reset = false): void {
  tsn(['network', 'rm', '--force', NET], OFF);
  if (reset) resetHost();
  const r = tsn(['network', 'create', '--subnet', subnet, NET], OFF);
  assert.is(r.code, 0, r.err);
}

function served(s: any): number {
  return s.served.cli + s.served.cni;
}

test.after(async () => {
  await stopEngine('SIGKILL');
  for (const p of started) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  for (const n of nets.list()) await nets.remove(n.name, { force: true }).catch(() => undefined);
  for (const b of boxes) b.close();
  nets.close();
});

// ------------------------------------------------------------------ the same answers

test('CLI commands forwarded to the engine answer exactly as in their own process: output, exit code, state after every step', async () => {
  const b = box('same');
  boxes.push(b);
  const steps: string[][] = [
    ['network', 'create', '--driver', 'bridge', '--subnet', '192.168.30.1/24', '-o', 'mtu=1400', NET],
    ['network', 'create', '--driver', 'bridge', '--subnet', '192.168.30.1/24', NET],
    ['network', 'create', '--subnet', '192.168.31.0/24'],
    ['network', 'create', '--driver', 'bridge', '--subnet', '10.0.0.0/33', 'bad'],
    ['network', 'ls'],
    ['network', 'ls', '--json', '--state-dir', STATE],
    ['network', 'inspect', NET],
    ['connect', '-net', NET, '-p', '8085:80', '--name', 'e1', b.path],
    ['connect', '-net', NET, '--name', 'e2', b.path],
    ['connect', '-net', 'nosuch', '--name', 'e3', b.path],
    ['connect', '-net', NET, 'x'],
    ['network', 'inspect', NET],
    ['network', 'check'],
    ['network', 'repair'],
    ['network', 'prune', '--json'],
    ['disconnect', '-net', NET, 'nosuchid'],
    ['disconnect', '-net', NET, b.path],
    ['disconnect', '-net', NET, b.path],
    ['network', 'rm', NET],
    ['network', 'rm', NET],
    ['network', 'bogus'],
    ['connect', '--help'],
    ['network', '--help'],
    ['connect'],
    // Arguments a shell client must carry byte for byte, and paths: a relative netns path is
    // refused alike; a relative --state-dir names one under the caller's cwd and is not forwarded.
    ['connect', '-net', NET, '--name', 'a b\n$(x) é€', '/run/netns/x y'],
    ['network', 'create', '--subnet', '192.168.33.0/24', '-o', 'mtu=é\n', 'ñet'],
    ['connect', '-net', NET, './x'],
    ['network', 'ls', '--state-dir', 'rel'],
    ['network', 'ls', '--json', `-state-dir=${STATE}/`],
    ['disconnect', '-net', NET, '99999999999999999999'],
  ];
  const forwarded = steps.filter((s) => stateDirOfArgv(s).startsWith('/')).length;
  const run = (env: NodeJS.ProcessEnv) => {
    resetHost();
    return steps.map((s) => ({ ...tsn(s, env), state: snapshot() }));
  };
  const alone = run(OFF);
  await startEngine();
  try {
    // Through each client of the launcher, the Node client in the CLI's entry last.
    for (const client of ['bash', ...(haveSocat ? ['socat'] : []), ...(haveCurl ? ['curl'] : []), 'node']) {
      const before = served(await status());
      const via = run({ TSNETLINK_ENGINE_CLIENT: client });
      assert.is(served(await status()) - before, forwarded, `${client}: every step was run by the engine (but the one with a relative --state-dir)`);
      steps.forEach((s, i) => {
        const [a, e] = [alone[i]!, via[i]!];
        const what = `${client}: tsnetlink ${s.map((x) => JSON.stringify(x)).join(' ')}`;
        assert.is(e.code, a.code, `${what}: exit code`);
        assert.fixture(normalize(e.out), normalize(a.out));
        assert.fixture(normalize(e.err), normalize(a.err));
        assert.fixture(e.state, a.state);
      });
    }
    // A forwarded command loads neither the commands bundle nor koffi (the bridge and netlink code).
    const hook = 'data:text/javascript,export async function resolve(s,c,n){process._rawDebug("RESOLVE "+s);return n(s,c)}';
    const traced = spawnSync(process.execPath, ['--no-warnings', '--experimental-loader', hook, CLI, 'network', 'ls'], { encoding: 'utf8' });
    const loaded = traced.stderr.split('\n').filter((l) => l.startsWith('RESOLVE ')).map((l) => l.slice(8));
    assert.is(traced.status, 0, traced.stderr);
    assert.ok(!loaded.some((m) => /commands\.js|koffi/.test(m)), `loaded: ${loaded.join(', ')}`);
    const local = spawnSync(process.execPath, ['--no-warnings', '--experimental-loader', hook, CLI, 'network', 'ls'], { encoding: 'utf8', env: { ...process.env, ...OFF } });
    assert.ok(local.stderr.includes('RESOLVE ./commands.js'), 'the hook sees the commands bundle when the command runs here');
  } finally {
    await stopEngine();
  }
});

const CNI_NET = 'engcni';
const conflist = (extra: Record<string, unknown> = {}) => ({
  cniVersion: '1.0.0', name: CNI_NET, type: 'tsnetlink', bridge: 'engcni0', isGateway: true, ipMasq: true, hairpinMode: true,
  ipam: { type: 'tsnetlink', ranges: [[{ subnet: '10.89.40.0/24' }]], routes: [{ dst: '0.0.0.0/0' }] }, capabilities: { portMappings: true },
  runtimeConfig: { portMappings: [{ hostPort: 8086, containerPort: 80, protocol: 'tcp' }] }, ...extra,
});

test(`CNI calls through each client of the shim (bash, ${haveCurl ? 'curl, ' : ''}${haveSocat ? 'socat, ' : ''}node) answer exactly as the plugin in its own process`, async () => {
  const b = box('cni');
  boxes.push(b);
  const scenario = (extra: NodeJS.ProcessEnv): (Outcome & { state: string })[] => {
    resetHost();
    const out: (Outcome & { state: string })[] = [];
    // An engine removes a network a DEL emptied right after answering: the state compared is the
    // one once that work is done.
    const step = (o: Outcome) => out.push({ ...o, state: (engineSettled(), snapshot()) });
    const add = cni('ADD', conflist(), 'ctr1', b.path, extra);
    step(add);
    let prev: unknown;
    try {
      prev = JSON.parse(add.out);
    } catch {
      prev = undefined;
    }
    step(cni('CHECK', { ...conflist(), prevResult: prev }, 'ctr1', b.path, extra));
    step(cni('STATUS', { ...conflist(), cniVersion: '1.1.0' }, 'ctr1', b.path, extra));
    step(cni('GC', { ...conflist(), cniVersion: '1.1.0', 'cni.dev/valid-attachments': [{ containerID: 'ctr1', ifname: 'eth0' }] }, '', '', extra));
    step(cni('ADD', conflist(), 'ctr2', '/run/netns/nosuch', extra));
    step(cni('ADD', conflist(), '-bad', b.path, extra));
    step(cni('ADD', conflist({ ipam: { type: 'tsnetlink', ranges: [[{ subnet: '10.89.40.0/33' }]] } }), 'ctr3', b.path, extra));
    step(cni('ADD', '{not json', 'ctr4', b.path, extra));
    step(cni('DEL', { ...conflist(), prevResult: prev }, 'ctr1', b.path, extra));
    step(cni('DEL', conflist(), 'ctr1', b.path, extra));
    step(cni('VERSION', '{"cniVersion":"0.4.0"}', '', '', extra));
    return out;
  };
  const alone = scenario(OFF);
  assert.is(alone[0]!.code, 0, `ADD in its own process: ${alone[0]!.out}${alone[0]!.err}`);
  await startEngine();
  try {
    for (const client of ['bash', ...(haveCurl ? ['curl'] : []), ...(haveSocat ? ['socat'] : []), 'node']) {
      const before = served(await status());
      const via = scenario({ TSNETLINK_ENGINE_CLIENT: client });
      // VERSION is the shim's own; every other call went to the engine.
      assert.is(served(await status()) - before, alone.length - 1, `${client}: calls the engine ran`);
      via.forEach((e, i) => {
        const a = alone[i]!;
        assert.is(e.code, a.code, `${client}, step ${i}: exit code (${e.out}${e.err})`);
        assert.fixture(normalize(e.out), normalize(a.out));
        assert.fixture(normalize(e.err), normalize(a.err));
        assert.fixture(e.state, a.state);
      });
    }
  } finally {
    await stopEngine();
  }
});

// ------------------------------------------------------------------ without an engine

test('calls run in their own process when the engine is stopped, killed (a stale socket), or does not take them; socket activation starts it on the first call', async () => {
  const b = box('fallback');
  boxes.push(b);
  freshNetwork('10.45.0.0/24');
  try {
    await fallbackSteps(b);
  } finally {
    await stopEngine('SIGKILL');
    if (existsSync(SOCK)) unlinkSync(SOCK);
  }
});

async function fallbackSteps(b: Box): Promise<void> {
  await startEngine();
  await stopEngine();
  assert.not.ok(existsSync(SOCK), 'a stopped engine removes its socket');
  let r = tsn(['connect', '-net', NET, '-p', '8087:80', '--name', 'f1', b.path]);
  assert.is(r.code, 0, r.err);
  // Killed: the socket file stays with no one listening, and the clients run calls themselves.
  await startEngine();
  await stopEngine('SIGKILL');
  assert.ok(existsSync(SOCK), 'kill -9 leaves the socket file');
  r = tsn(['disconnect', '-net', NET, b.path]);
  assert.equal([r.code, r.out], [0, 'disconnected\n'], r.err);
  const add = cni('ADD', conflist(), 'fb1', b.path);
  assert.is(add.code, 0, add.out);
  assert.is(cni('DEL', conflist(), 'fb1', b.path).code, 0);
  // NODE_EXTRA_CA_CERTS does not reach the Node the launcher runs: without an engine, and for a
  // command that never goes to one. The oracle is a stand-in for Node that writes down the value
  // it was given (Node itself tells only on some versions: 20 warns about an unreadable file at
  // start, 24 reads it at its first TLS connection).
  const fakeDir = mkdtempSync('/run/tsn-fake-node-');
  const seen = join(fakeDir, 'seen');
  const fake = join(fakeDir, 'node');
  writeFileSync(fake, `#!/bin/sh\nprintf '%s' "\${NODE_EXTRA_CA_CERTS-unset}" > '${seen}'\n`, { mode: 0o755 });
  const ca = { NODE_EXTRA_CA_CERTS: '/nonexistent/ca.pem' };
  assert.is(spawnSync(fake, [], { env: { ...process.env, ...ca } }).status, 0);
  assert.is(readFileSync(seen, 'utf8'), ca.NODE_EXTRA_CA_CERTS, 'the oracle: the stand-in writes down what it is given');
  for (const args of [['network', 'ls'], ['--version']]) {
    rmSync(seen, { force: true });
    r = tsn(args, { ...ca, TSNETLINK_NODE: fake });
    assert.equal([r.code, readFileSync(seen, 'utf8')], [0, 'unset'], `${args.join(' ')}: the launcher ran Node without it`);
    r = tsn(args, ca);
    assert.equal([r.code, r.err], [0, ''], args.join(' '));
  }
  rmSync(fakeDir, { recursive: true, force: true });
  // A call the engine declines (the caller's lock timeout differs from the engine's) runs here.
  await startEngine();
  const s0 = await status();
  r = tsn(['network', 'ls'], { TSNETLINK_LOCK_TIMEOUT_MS: '12345' });
  assert.is(r.code, 0, r.err);
  const s1 = await status();
  assert.equal([served(s1) - served(s0), s1.declined - s0.declined], [0, 1], 'declined, not served');
  await stopEngine();
  // Socket activation: systemd-socket-activate listens; the first call starts the engine, which takes the socket.
  if (spawnSync('sh', ['-c', 'command -v systemd-socket-activate']).status === 0) {
    // It passes on only the variables named (-E): the ones the calls compare, and PATH for the tools.
    const pass = ['PATH', 'TSNETLINK_IN_SANDBOX', 'TSNETLINK_FIREWALL', 'TSNETLINK_IPTABLES_RESTORE', 'TSNETLINK_LOCK_TIMEOUT_MS'].filter((k) => process.env[k] !== undefined).flatMap((k) => ['-E', k]);
    const e = await startEngine(['systemd-socket-activate', '-l', SOCK, ...pass]);
    const end = Date.now() + 10_000;
    while (!existsSync(SOCK) && Date.now() < end) await new Promise((x) => setTimeout(x, 20));
    r = tsn(['network', 'inspect', NET]);
    assert.is(r.code, 0, r.err);
    const st = await status();
    assert.is(st.pid, e.proc.pid, 'the engine runs as the activated process');
    assert.is(st.served.cli, 1, 'the call that started it was its first');
    assert.is(statSync(SOCK).mode & 0o777, 0o600, 'the handed-over socket is root only');
    await stopEngine();
    assert.match(e.log(), 'socket from systemd');
    if (existsSync(SOCK)) unlinkSync(SOCK);
  } else console.log('engine e2e: systemd-socket-activate not installed: socket activation not tried');
}

// ------------------------------------------------------------------ together

/** No IP twice among the records of every network. */
function assertUnique(what: string): void {
  const ips = nets.list().flatMap((n) => nets.inspect(n.name).endpoints).map((e) => `${e.network}/${e.ip}`);
  assert.is(new Set(ips).size, ips.length, `${what}: duplicate addresses ${ips}`);
}

test('the engine and in-process callers on one network at once: every call succeeds, check is empty, no address twice', async () => {
  freshNetwork('10.45.0.0/24');
  const bs = Array.from({ length: 24 }, (_, i) => {
    const b = box(`c${i}`);
    serveIn(b, 80);
    boxes.push(b);
    return b;
  });
  await startEngine();
  try {
    const calls = bs.map((b, i) => {
      // The clients say on stderr why they ran a call themselves, if they do.
      const env = i % 2 ? OFF : { TSNETLINK_ENGINE_DEBUG: '1' };
      return i % 4 < 2 ? tsnAsync(['connect', '-net', NET, '-p', `${9100 + i}:80`, b.path], env) : cniAsync('ADD', { ...conflist(), name: NET, bridge: NET, ipam: { type: 'tsnetlink', ranges: [[{ subnet: '10.45.0.0/24' }]] }, runtimeConfig: { portMappings: [{ hostPort: 9100 + i, containerPort: 80, protocol: 'tcp' }] } }, `cc${i}`, b.path, env);
    });
    const rs = await Promise.all(calls);
    rs.forEach((r, i) => assert.is(r.code, 0, `call ${i}: ${r.out}${r.err}`));
    assert.equal(await nets.check(), [], 'consistent after the connects');
    assertUnique('connects');
    assert.is(nets.inspect(NET).endpoints.length, bs.length);
    for (let i = 0; i < bs.length; i += 5) assert.is(await probeTcp(undefined, '10.45.0.1', 9100 + i, 3000), bs[i]!.name, `published port ${9100 + i}`);
    const st = await status();
    const ranHere = rs.map((r) => r.err).filter((e) => e.includes('engine client: running the call here'));
    assert.ok(st.served.cli >= 6 && st.served.cni >= 6, `the engine served its half: ${JSON.stringify(st)}; clients that ran a call themselves: ${JSON.stringify(ranHere)}; its log:\n${engine?.log().split('\n').slice(-40).join('\n')}`);
    const gone = await Promise.all(bs.map((b, i) => (i % 3 ? tsnAsync(['disconnect', '-net', NET, b.path], i % 2 ? OFF : {}) : cniAsync('DEL', { ...conflist(), name: NET, bridge: NET }, `cc${i}`, b.path, i % 2 ? OFF : {}))));
    gone.forEach((r, i) => assert.is(r.code, 0, `disconnect ${i}: ${r.out}${r.err}`));
    assert.equal(await nets.check(), [], 'consistent after the disconnects');
  } finally {
    await stopEngine();
  }
});

// ------------------------------------------------------------------ kill -9

/** Whether an outcome is an answer a caller may get when the engine dies under it. */
function isRightAnswer(r: Outcome): boolean {
  if (r.code === 0) return true;
  // The engine took the call and died: the CLI says so; the plugin answers CNI error 11.
  return r.code === 1 && (/the engine .*took the call and its answer never came whole/.test(r.err) || /"code":11,"msg":"tsnetlink-cni: the engine/.test(r.out));
}

test('kill -9 of the engine during a call it took: the caller gets an error, not an answer; one prune settles it; the call then succeeds', async () => {
  const b = box('held');
  boxes.push(b);
  await startEngine();
  // The connect waits for the network lock this test holds, inside the engine: taken, not done.
  let outcome: Outcome | undefined;
  try {
    await nets.store.withNetworkLock(NET, async () => {
      const pending = tsnAsync(['connect', '-net', NET, '-p', '9200:80', b.path]);
      const end = Date.now() + 10_000;
      while ((await status()).inflight < 1) {
        if (Date.now() > end) throw new Error('the engine never took the call');
        await new Promise((r) => setTimeout(r, 10));
      }
      await stopEngine('SIGKILL');
      outcome = await pending;
    });
  } finally {
    await stopEngine('SIGKILL');
  }
  assert.is(outcome!.code, 1, outcome!.out + outcome!.err);
  assert.match(outcome!.err, /^tsnetlink: the engine \(pid \d+\) took the call and its answer never came whole .*network prune/);
  const report = await nets.pruneReport();
  assert.equal(report.problems, []);
  assert.equal(await nets.check(), []);
  const r = tsn(['connect', '-net', NET, '-p', '9200:80', b.path]);
  assert.is(r.code, 0, r.err);
  assert.is(tsn(['disconnect', '-net', NET, b.path]).code, 0);
});

test('kill -9 of the engine at random points of a burst of calls, 3 rounds: every caller gets a right answer, one prune leaves check empty', async () => {
  const bs = Array.from({ length: 12 }, (_, i) => {
    const b = box(`k${i}`);
    boxes.push(b);
    return b;
  });
  for (let round = 0; round < 3; round++) {
    await stopEngine('SIGKILL'); // a round that failed may have left its engine
    await startEngine();
    const calls = bs.map((b, i) => (i % 2 ? tsnAsync(['connect', '-net', NET, '-p', `${9300 + i}:80`, b.path]) : cniAsync('ADD', { ...conflist(), name: NET, bridge: NET, ipam: { type: 'tsnetlink', ranges: [[{ subnet: '10.45.0.0/24' }]] }, runtimeConfig: { portMappings: [{ hostPort: 9300 + i, containerPort: 80, protocol: 'tcp' }] } }, `kk${i}`, b.path)));
    await new Promise((r) => setTimeout(r, 30 + random() * 250));
    await stopEngine('SIGKILL');
    const rs = await Promise.all(calls);
    rs.forEach((r, i) => assert.ok(isRightAnswer(r), `round ${round}, call ${i}: exit ${r.code}: ${r.out}${r.err}`));
    const report = await nets.pruneReport();
    assert.equal(report.problems, [], `round ${round}: prune problems`);
    assert.equal(await nets.check(), [], `round ${round}: consistent after one prune (prune did: ${report.actions.join('; ')})`);
    assertUnique(`round ${round}`);
    // A caller told it succeeded has its endpoint.
    rs.forEach((r, i) => {
      if (r.code === 0) assert.ok(nets.endpointOf(NET, bs[i]!.ns), `round ${round}, call ${i} succeeded and its endpoint is there`);
    });
    for (const [i, b] of bs.entries()) {
      const r = i % 2 ? tsn(['disconnect', '-net', NET, b.path]) : cni('DEL', { ...conflist(), name: NET, bridge: NET }, `kk${i}`, b.path);
      assert.is(r.code, 0, `round ${round}: cleanup ${i}: ${r.out}${r.err}`);
    }
    assert.equal(await nets.check(), []);
  }
  console.log(`engine kill rounds: ${3} rounds of ${bs.length} calls each`);
});

// ------------------------------------------------------------------ drift

test('drift repaired as it happens: nft flush ruleset, iptables -F, a host veth set down; the published port answers again from outside within the bound; no reaction to its own changes', async () => {
  // The host as the sandbox began: the network create turns forwarding on and sets the FORWARD
  // DROP policy, which repair then restores after each flush (what the host record names).
  freshNetwork('10.45.0.0/24', true);
  const srv = box('drift');
  boxes.push(srv);
  serveIn(srv, 80, 'drift-ok');
  // An upstream namespace reaches the host's address through a veth: traffic crosses FORWARD.
  const up: NetnsHandle = createNamedNetns('engup');
  try {
    execFileSync('ip', ['link', 'add', 'engup0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', 'engup']);
    execFileSync('ip', ['addr', 'add', '10.99.0.1/24', 'dev', 'engup0']);
    execFileSync('ip', ['link', 'set', 'engup0', 'up']);
    execFileSync('ip', ['-n', 'engup', 'addr', 'add', '10.99.0.2/24', 'dev', 'eth0']);
    execFileSync('ip', ['-n', 'engup', 'link', 'set', 'eth0', 'up']);
    await startEngine();
    const c = tsn(['connect', '-net', NET, '-p', '9400:80', srv.path]);
    assert.is(c.code, 0, c.err);
    const hostVeth = (JSON.parse(c.out) as { hostIfname: string }).hostIfname;
    const answers = async (ms: number) => (await probeTcp(up, '10.99.0.1', 9400, ms)) === 'drift-ok';
    const waitAnswer = async (limit: number): Promise<number> => {
      const t0 = performance.now();
      while (performance.now() - t0 < limit) if (await answers(10)) return performance.now() - t0;
      throw new Error(`no answer within ${limit} ms; engine log:\n${engine?.log().split('\n').slice(-15).join('\n')}`);
    };
    await waitAnswer(5000);
    // Its own changes start no repair: connects and disconnects through the engine.
    const quiet0 = (await status()).drift;
    for (let i = 0; i < 4; i++) {
      const b = boxes[0]!;
      assert.is(tsn(['connect', '-net', NET, '-p', `${9410 + i}:80`, b.path]).code, 0);
      assert.is(tsn(['disconnect', '-net', NET, b.path]).code, 0);
    }
    await new Promise((r) => setTimeout(r, 200));
    const quiet1 = (await status()).drift;
    assert.equal([quiet1.checks - quiet0.checks, quiet1.repairs - quiet0.repairs], [0, 0], `no check and no repair for its own calls (last check: ${JSON.stringify(quiet1.lastCheck)})`);
    const drifts: Record<string, () => void> = {
      'nft flush ruleset': () => execFileSync('nft', ['flush', 'ruleset']),
      'iptables -F': () => execFileSync('iptables', ['-w', '5', '-F']),
      'host veth set down': () => execFileSync('ip', ['link', 'set', hostVeth, 'down']),
    };
    const times: Record<string, number[]> = {};
    const trials = 7;
    for (let t = 0; t < trials; t++) {
      for (const [what, drift] of Object.entries(drifts)) {
        await waitAnswer(15_000);
        await new Promise((r) => setTimeout(r, 100));
        drift();
        (times[what] ??= []).push(await waitAnswer(15_000));
      }
    }
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await nets.check(), [], 'consistent after the repairs');
    const st = (await status()).drift;
    const driftLog = engine!.log().split('\n').filter((l) => l.includes('repaired')).join('\n');
    assert.ok(st.repairs >= trials * 3 - 2 && st.repairs <= trials * 3 + 3, `a repair per drift (${st.repairs} repairs, ${st.checks} checks for ${trials * 3} drifts):\n${driftLog}`);
    assert.match(engine!.log(), /drift \(nf_tables commit by nft .*repaired/);
    // The bound: p50 at most 100 ms from the command's exit to the port answering again; on a
    // machine busier than its CPUs the bound grows with the load, and the figures are printed.
    const load = os.loadavg()[0]! / os.cpus().length;
    const bound = 100 * Math.max(1, load);
    const med = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
    console.log(`drift to answering again, p50 ms (${trials} each, load ${os.loadavg()[0]!.toFixed(1)} on ${os.cpus().length} CPUs): ${Object.entries(times).map(([k, v]) => `${k} ${med(v).toFixed(1)}`).join(', ')}`);
    for (const [what, v] of Object.entries(times)) assert.ok(med(v) <= bound, `${what}: p50 ${med(v).toFixed(1)} ms > ${bound.toFixed(0)} ms (${v.map((x) => x.toFixed(0)).join(', ')})`);
    assert.is(tsn(['disconnect', '-net', NET, srv.path]).code, 0);
  } finally {
    await stopEngine();
    up.close();
    deleteNamedNetns('engup');
    spawnSync('ip', ['link', 'del', 'engup0']);
  }
});

// ------------------------------------------------------------------ refusals

test('a non-root peer is refused, a bad token too; malformed requests get a clear error; none changes anything', async () => {
  await startEngine();
  try {
    const before = snapshot();
    const s0 = await status();
    const body = encodeFields([{ name: 'arg', value: 'network' }, { name: 'arg', value: 'rm' }, { name: 'arg', value: NET }, { name: 'statedir', value: STATE }]);
    const req = Buffer.concat([Buffer.from(`POST /v1/cli HTTP/1.0\r\nContent-Length: ${body.length}\r\n\r\n`), body]);
    const client = `const s=require('net').connect(${JSON.stringify(SOCK)});s.on('connect',()=>s.end(Buffer.from(${JSON.stringify(req.toString('base64'))},'base64')));let d='';s.on('data',x=>d+=x);s.on('close',()=>console.log(d));s.on('error',e=>console.log('error '+e.code))`;
    const nobody = ['--reuid=65534', '--regid=65534', '--clear-groups'];
    // Without privileges nobody even reaches the socket (0600 in a 0700 directory)...
    let r = spawnSync('setpriv', [...nobody, process.execPath, '-e', client], { encoding: 'utf8' });
    assert.match(r.stdout, 'error EACCES');
    // ...and one that can (CAP_DAC_OVERRIDE kept) is refused by its credentials.
    r = spawnSync('setpriv', [...nobody, '--inh-caps=+dac_override', '--ambient-caps=+dac_override', process.execPath, '-e', client], { encoding: 'utf8' });
    assert.match(r.stdout, /^HTTP\/1\.0 403 Forbidden[\s\S]*not root/);
    // The CLI run as nobody falls back to its own process, which says it needs root.
    const cliAsNobody = spawnSync('setpriv', [...nobody, process.execPath, CLI, 'network', 'ls'], { encoding: 'utf8' });
    assert.match(cliAsNobody.stderr, 'needs root');
    // So does the launcher by each client, also as a nobody that can read the port file and reach
    // the socket: the bash client finds no CAP_NET_ADMIN and runs it itself; the others are refused.
    let refusedByLauncher = 0;
    for (const client of ['bash', ...(haveSocat ? ['socat'] : []), ...(haveCurl ? ['curl'] : []), 'node']) {
      for (const caps of [[], ['--inh-caps=+dac_override', '--ambient-caps=+dac_override']]) {
        const l = spawnSync('setpriv', [...nobody, ...caps, LAUNCHER, 'network', 'ls'], { encoding: 'utf8', env: launcherEnv({ TSNETLINK_ENGINE_CLIENT: client, TSNETLINK_NODE: nodeForOtherUsers() }) });
        assert.equal([l.status, l.stdout], [1, ''], `${client} ${caps.join(' ')}: ${l.stderr}`);
        assert.match(l.stderr, 'needs root', `${client} ${caps.join(' ')}`);
        if (caps.length && client !== 'bash') refusedByLauncher++;
      }
    }
    // Loopback TCP without the token from the root-only file.
    const port = Number(readFileSync(join(STATE, 'engine.tcp'), 'utf8').split(' ')[0]);
    const tcp = await new Promise<string>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => s.end(Buffer.concat([Buffer.from(`POST /v1/cli HTTP/1.0\r\nContent-Length: ${body.length}\r\nX-Tsnetlink-Token: ${'0'.repeat(32)}\r\n\r\n`), body])));
      let d = '';
      s.on('data', (x) => (d += x));
      s.on('close', () => resolve(d));
    });
    assert.match(tcp, /^HTTP\/1\.0 403 Forbidden[\s\S]*token/);
    // Malformed requests: a clear status and reason each.
    const bad: [string | Buffer, RegExp][] = [
      ['garbage\r\n\r\n', /^HTTP\/1\.0 400 .*\r\n[\s\S]*malformed first line/],
      ['GET /v1/cli HTTP/1.0\r\n\r\n', /^HTTP\/1\.0 405 /],
      ['POST /v1/other HTTP/1.0\r\nContent-Length: 0\r\n\r\n', /^HTTP\/1\.0 404 /],
      ['POST /v1/cli HTTP/1.0\r\n\r\n', /^HTTP\/1\.0 411 /],
      [`POST /v1/cli HTTP/1.0\r\nContent-Length: ${2 << 20}\r\n\r\n`, /^HTTP\/1\.0 413 /],
      ['POST /v1/cli HTTP/1.0\r\nContent-Length: 9\r\n\r\narg 5\nab\n', /^HTTP\/1\.0 400 [\s\S]*bad request: field arg/],
      [Buffer.concat([Buffer.from(`POST /v1/cli HTTP/1.0\r\nContent-Length: ${body.length + 8}\r\n\r\n`), body, Buffer.from('evil 1\nx\n').subarray(0, 8)]), /^HTTP\/1\.0 400 [\s\S]*bad request: field evil/],
      [Buffer.concat([Buffer.from(`POST /v1/cni HTTP/1.0\r\nContent-Length: 20\r\n\r\n`), Buffer.from('statedir 3\nrun\nx 0\n\n')]), /^HTTP\/1\.0 400 [\s\S]*(absolute|unknown field)/],
    ];
    for (const [request, want] of bad) assert.match(await raw(request), want, String(request).slice(0, 60));
    const s1 = await status();
    assert.equal([served(s1) - served(s0), s1.refused - s0.refused, s1.badRequests - s0.badRequests], [0, 2 + refusedByLauncher, bad.length]);
    assert.fixture(snapshot(), before, 'nothing changed');
    assert.match(engine!.log(), /refused a call from pid \d+ \(uid 65534\): refused: the peer .* is not root/);
  } finally {
    await stopEngine();
  }
});

test.run();
