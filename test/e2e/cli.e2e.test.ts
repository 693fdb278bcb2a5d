/**
 * End-to-end: the `tsnetlink` command as a user runs it (bin/tsnetlink, the launcher the package
 * installs, which runs the bundle dist/bundle/tsnetlink.js in Node), in the sandbox
 * scripts/test.mjs provides. Exit codes and output are checked, and every effect is read
 * back with `ip -j`, iptables-save (on the native nf_tables backend, which the CLI picks from
 * $TSNETLINK_FIREWALL as scripts/test.mjs sets it, `nft -j list ruleset`: test/e2e/fw-oracle.ts),
 * the state directory and real traffic.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ipJson, nodeForOtherUsers, tcpGet, requireSandbox, stateFiles } from '../helpers.js';
import { NFT, nftExpr as X, nftHasRule, nftHasTable, nftMappings, rulesHeldBy } from './fw-oracle.js';

requireSandbox('cli');

const CLI = fileURLToPath(new URL('../../../bin/tsnetlink', import.meta.url));
/** The launcher's environment: this Node for what it runs in Node. */
const ENV = { ...process.env, TSNETLINK_NODE: process.execPath };
const SAVE = (process.env['TSNETLINK_IPTABLES_RESTORE'] ?? 'iptables-restore').replace(/-restore$/, '-save');
const IPTABLES = SAVE.replace(/-save$/, '');
const STATE = '/run/tsnetlink';
const NET = 'testbridge';

/** Runs the CLI to completion. */
function tsn(...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(CLI, args, { encoding: 'utf8', timeout: 30_000, env: ENV });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** Starts the CLI in the background, collecting its output. */
function tsnBackground(...args: string[]): { proc: ChildProcess; out: () => string; err: () => string; exit: Promise<number | null> } {
  const proc = spawn(CLI, args, { stdio: ['ignore', 'pipe', 'pipe'], env: ENV });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (err += d));
  const exit = new Promise<number | null>((resolve) => proc.on('close', (code) => resolve(code)));
  return { proc, out: () => out, err: () => err, exit };
}

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function saveText(): string {
  return execFileSync(SAVE, { encoding: 'utf8' });
}

/** Whether the network's subnet is masqueraded on the way out (`-s SUBNET ! -o NET -j MASQUERADE`, or nft's `ip saddr SUBNET oifname != NET masquerade`). */
function masqueraded(): boolean {
  if (NFT) return nftHasRule('postrouting', [X.saddr('ip', '192.168.10.0', 24), X.oifname(NET, '!='), X.masquerade]);
  return saveText().split('\n').some((l) => l.includes(`-s 192.168.10.0/24 ! -o ${NET}`) && l.endsWith('-j MASQUERADE'));
}

/** Every published port's DNAT, in the backend this run uses: iptables' DNAT rules, or the elements of our nft maps. */
function dnats(): string[] {
  if (NFT) return nftMappings().map((m) => `${m.map} ${m.proto} ${m.hostPort} -> ${m.to}:${m.toPort}`);
  return saveText().split('\n').filter((l) => l.includes('-j DNAT'));
}

/** Whether some published port goes to ip:port (to any port of ip without one). */
function dnatTo(ip: string, port?: number): boolean {
  if (NFT) return nftMappings().some((m) => m.to === ip && (port === undefined || m.toPort === port));
  return saveText().includes(`--to-destination ${ip}:${port ?? ''}`);
}


/** After a `run`: no netns, no veth, no DNAT, no endpoint or IP reservation left. */
function assertRunCleanedUp(what: string): void {
  assert.equal(readdirSync('/run/netns'), [], `${what}: netns removed`);
  assert.equal(ipJson<any[]>(['link', 'show', 'type', 'veth']).map((l) => l.ifname), [], `${what}: veth removed`);
  assert.equal(dnats(), [], `${what}: DNAT rules removed`);
  assert.equal(stateFiles(STATE).filter((f) => !/^networks\/[^/]+(\.json|\/last)$/.test(f) && f !== 'host.json'), [], `${what}: only the network record, the IPAM cursor and the host record remain`);
  assert.equal(JSON.parse(tsn('network', 'inspect', NET).out).endpoints, [], `${what}: inspect shows no endpoint`);
}

const started: ChildProcess[] = [];

/** Removes what a failed `run` test left behind, so one failure does not cascade. */
function cleanLeftovers(): void {
  const info = tsn('network', 'inspect', NET);
  if (info.code === 0) for (const e of JSON.parse(info.out).endpoints) tsn('disconnect', '-net', NET, e.id);
  for (const n of readdirSync('/run/netns')) if (n.startsWith('tsn-')) execFileSync('ip', ['netns', 'del', n]);
}

test.after(async () => {
  for (const p of started) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  tsn('network', 'rm', '--force', NET);
});

// ------------------------------------------------------------------ network create / ls / inspect

test('network create --driver bridge --subnet 192.168.10.1/24 testbridge', () => {
  const r = tsn('network', 'create', '--driver', 'bridge', '--subnet', '192.168.10.1/24', NET);
  assert.is(r.code, 0, r.err);
  assert.match(r.out, /192\.168\.10\.0\/24/);
  const [br] = ipJson<any[]>(['-d', 'addr', 'show', NET]);
  assert.is(br.linkinfo.info_kind, 'bridge');
  assert.ok(br.flags.includes('UP'));
  assert.equal(br.addr_info.filter((a: any) => a.family === 'inet').map((a: any) => `${a.local}/${a.prefixlen}`), ['192.168.10.1/24']);
  assert.is(rulesHeldBy(), NFT ? 'nftables' : 'iptables', 'the CLI wrote its rules with the backend this run uses ($TSNETLINK_FIREWALL)');
  assert.ok(masqueraded());
});

test('network ls --json, ls as a table, inspect', () => {
  const ls = tsn('network', 'ls', '--json');
  assert.is(ls.code, 0, ls.err);
  const nets = JSON.parse(ls.out);
  assert.equal(nets.map((n: any) => [n.name, n.driver, n.subnet, n.gateway, n.bridge]), [[NET, 'bridge', '192.168.10.0/24', '192.168.10.1', NET]]);
  const table = tsn('network', 'ls');
  assert.is(table.code, 0);
  const rows = table.out.trim().split('\n');
  assert.match(rows[0]!, /^NAME\s+DRIVER\s+SUBNET/);
  assert.match(rows[1]!, new RegExp(`^${NET}\\s+bridge\\s+192\\.168\\.10\\.0/24\\s+192\\.168\\.10\\.1`));
  const inspect = tsn('network', 'inspect', NET);
  assert.is(inspect.code, 0, inspect.err);
  const info = JSON.parse(inspect.out);
  assert.is(info.name, NET);
  assert.is(info.subnet, '192.168.10.0/24');
  assert.equal(info.endpoints, []);
});

test('--state-dir selects another state directory', () => {
  const r = tsn('network', 'ls', '--json', '--state-dir', '/run/tsn-other');
  assert.is(r.code, 0, r.err);
  assert.equal(JSON.parse(r.out), []);
});

// ------------------------------------------------------------------ run

test('run passes the exit code through; the network is ready before CMD; everything is removed after', () => {
  const script = 'ip -4 -o addr show eth0; ip route show default; ip -o link show lo; exit 7';
  const r = tsn('run', '-net', NET, '-p', '8080:80', '--', 'sh', '-c', script);
  assert.is(r.code, 7, r.err);
  assert.match(r.out, /eth0\s+inet 192\.168\.10\.\d+\/24/, `CMD saw its address:\n${r.out}`);
  assert.match(r.out, /default via 192\.168\.10\.1 dev eth0/);
  assert.match(r.out, /lo: <LOOPBACK,UP/);
  assert.match(r.err, /on testbridge: 192\.168\.10\.\d+\/24 via 192\.168\.10\.1/);
  assertRunCleanedUp('after exit 7');
  assert.is(tsn('run', '-net', NET, '--', 'true').code, 0);
});

test('run without --: the command keeps its own options (ip -br addr), as with docker run', () => {
  const r = tsn('run', '-net', NET, 'ip', '-br', '-4', 'addr', 'show', 'eth0');
  assert.is(r.code, 0, r.err);
  assert.match(r.out, /^eth0@if\d+\s+UP\s+192\.168\.10\.\d+\/24/m);
  assertRunCleanedUp('after run without --');
});

test('disconnect: an endpoint id the network does not have exits 1; a container that is not connected is fine', () => {
  const typo = tsn('disconnect', '-net', NET, 'no-such-endpoint');
  assert.is(typo.code, 1, typo.err);
  assert.match(typo.err, /has no endpoint "no-such-endpoint"/);
  const self = tsn('disconnect', '-net', NET, '/proc/self/ns/net');
  assert.is(self.code, 0, self.err);
  assert.match(self.out, /not connected/);
});

test('run -p publishes while CMD runs; SIGTERM stops CMD and cleans up (exit 143)', async () => {
  const server = "require('net').createServer(c=>c.end('web')).listen(80,()=>console.log('ready'))";
  const run = tsnBackground('run', '--name', 'web', '-net', NET, '-p', '8080:80', '--', process.execPath, '-e', server);
  started.push(run.proc);
  try {
    await until('the server in the container', () => run.out().includes('ready') || run.proc.exitCode !== null);
    assert.ok(run.out().includes('ready'), run.err());
    // The container's netns has no name: nothing but its processes keeps it alive.
    assert.equal(readdirSync('/run/netns'), []);
    const [ep] = JSON.parse(tsn('network', 'inspect', NET).out).endpoints;
    assert.is(ep.id, 'web');
    assert.is(await tcpGet('127.0.0.1', 8080), 'web', 'published port reachable from the host');
    assert.is(await tcpGet(ep.ip, 80), 'web');
    run.proc.kill('SIGTERM');
    assert.is(await run.exit, 143, run.err());
    assertRunCleanedUp('after SIGTERM');
    const refused = await tcpGet('127.0.0.1', 8080).then((r) => `answered ${r}`, (e: Error) => e.message);
    assert.match(refused, /ECONNREFUSED/);
  } finally {
    cleanLeftovers();
  }
});

test('run interrupted with SIGINT cleans up (exit 130)', async () => {
  const run = tsnBackground('run', '-net', NET, '--', 'sh', '-c', 'echo started; exec sleep 30');
  started.push(run.proc);
  try {
    await until('CMD to start', () => run.out().includes('started') || run.proc.exitCode !== null);
    run.proc.kill('SIGINT');
    assert.is(await run.exit, 130, run.err());
    assertRunCleanedUp('after SIGINT');
  } finally {
    cleanLeftovers();
  }
});

test('run killed by SIGTERM while still setting up the container cleans up too', async () => {
  const run = tsnBackground('run', '--name', 'early', '-net', NET, '-p', '8081:80', '--', 'sleep', '30');
  started.push(run.proc);
  // Signal as soon as the endpoint's intent is on disk: connect (veth, iptables-restore) is still under way.
  const end = Date.now() + 10_000;
  while (!existsSync('/run/tsnetlink/networks/testbridge/endpoints/early.json') && run.proc.exitCode === null && Date.now() < end) {
    /* busy wait: the window is a few milliseconds */
  }
  run.proc.kill('SIGTERM');
  const code = await run.exit;
  try {
    assert.is.not(code, 0);
    const left = {
      netns: readdirSync('/run/netns'),
      veths: ipJson<any[]>(['link', 'show', 'type', 'veth']).map((l) => l.ifname),
      endpoints: JSON.parse(tsn('network', 'inspect', NET).out).endpoints.map((e: any) => e.id),
      dnat: dnats(),
    };
    assert.equal(left, { netns: [], veths: [], endpoints: [], dnat: [] }, `SIGTERM during setup (exit ${code}) left: ${JSON.stringify(left)}`);
  } finally {
    cleanLeftovers();
  }
});

test('run of a missing command exits 127 and cleans up', () => {
  const r = tsn('run', '-net', NET, '--', '/nonexistent/cmd');
  assert.is(r.code, 127, r.err);
  assert.match(r.err, /nonexistent/);
  assertRunCleanedUp('after 127');
});

test('run refused: bad port spec exits 2, missing network exits 1; no netns is left behind', () => {
  const bad = tsn('run', '-net', NET, '-p', '0:80', '--', 'true');
  assert.is(bad.code, 2, bad.err);
  assert.match(bad.err, /port/);
  assertRunCleanedUp('after a bad -p');
  const missing = tsn('run', '-net', 'nosuch', '--', 'true');
  assert.is(missing.code, 1, missing.err);
  assert.match(missing.err, /no such network: nosuch/);
  assert.equal(readdirSync('/run/netns'), []);
});

// ------------------------------------------------------------------ connect / disconnect by PID

test('connect -net NAME PID, then disconnect by PID (idempotent)', async () => {
  const sleeper = spawn('unshare', ['--net', '--', 'sleep', '60'], { stdio: 'ignore' });
  started.push(sleeper);
  const pid = sleeper.pid!;
  await until('the sleeper netns', () => {
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sleep';
    } catch {
      return false;
    }
  });
  const c = tsn('connect', '-net', NET, '-p', '9090:90', String(pid));
  assert.is(c.code, 0, c.err);
  const ep = JSON.parse(c.out);
  const inside = JSON.parse(execFileSync('nsenter', [`--net=/proc/${pid}/ns/net`, 'ip', '-j', '-4', 'addr', 'show', 'eth0'], { encoding: 'utf8' }));
  assert.equal(inside[0].addr_info.map((a: any) => a.local), [ep.ip]);
  assert.ok(dnatTo(ep.ip, 90), dnats().join('\n'));
  const again = tsn('connect', '-net', NET, String(pid));
  assert.is(again.code, 1, 'second connect of the same container fails');
  assert.match(again.err, /already connected/);
  const rmBusy = tsn('network', 'rm', NET);
  assert.is(rmBusy.code, 1);
  assert.match(rmBusy.err, /has \d+ endpoints? attached/);
  const d = tsn('disconnect', '-net', NET, String(pid));
  assert.is(d.code, 0, d.err);
  assert.match(d.out, /disconnected/);
  const links = JSON.parse(execFileSync('nsenter', [`--net=/proc/${pid}/ns/net`, 'ip', '-j', 'link', 'show'], { encoding: 'utf8' }));
  assert.equal(links.map((l: any) => l.ifname), ['lo']);
  assert.not.ok(dnatTo(ep.ip), dnats().join('\n'));
  const d2 = tsn('disconnect', '-net', NET, String(pid));
  assert.is(d2.code, 0);
  assert.match(d2.out, /not connected/);
  sleeper.kill();
});

test('run killed with SIGKILL: its command dies too, and prune (or the next run -p of the port) frees everything', async () => {
  const run = tsnBackground('run', '--name', 'killed', '-net', NET, '-p', '8088:80', '--', 'sleep', '300');
  started.push(run.proc);
  await until('the run to start its command', () => run.err().includes('on testbridge'));
  // The machine's PID namespace is shared: find our command by its parent, never by name alone.
  let cmdPid = '';
  await until('sleep to be running', () => {
    cmdPid = readdirSync('/proc').find((p) => /^\d+$/.test(p) && safeRead(`/proc/${p}/comm`) === 'sleep' && safeRead(`/proc/${p}/status`).includes(`PPid:\t${run.proc.pid}\n`)) ?? '';
    return cmdPid !== '';
  });
  run.proc.kill('SIGKILL');
  await run.exit;
  // The command had a parent-death signal: it is gone, and the netns (no bind mount) with it.
  await until('the command to die with its supervisor', () => !/^State:\s+[RSDT]/m.test(safeRead(`/proc/${cmdPid}/status`)));
  await until('the kernel to delete the veth with the netns', () => ipJson<any[]>(['link', 'show', 'type', 'veth']).length === 0);
  const again = tsn('run', '--name', 'next', '-net', NET, '-p', '8088:80', '--', 'true');
  assert.is(again.code, 0, `the next run -p of the port frees the dead holder: ${again.err}`);
  const pruned = tsn('network', 'prune');
  assert.is(pruned.code, 0, pruned.err);
  assertRunCleanedUp('after SIGKILL and the next run');
  assert.is(tsn('network', 'check').code, 0);
});

test('as a user without CAP_NET_ADMIN: a clear "needs root" message, exit 1', () => {
  const env = { ...ENV, TSNETLINK_NODE: nodeForOtherUsers() };
  const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', CLI, 'network', 'ls'], { encoding: 'utf8', env });
  assert.is(r.status, 1, r.stderr);
  assert.match(r.stderr, /needs root \(CAP_NET_ADMIN, CAP_SYS_ADMIN\)/);
  const help = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', CLI, '--help'], { encoding: 'utf8', env });
  assert.is(help.status, 0, 'help needs no privileges');
});

function safeRead(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return '';
  }
}

// ------------------------------------------------------------------ errors, repair, rm

test('errors: exit 2 for bad usage or input, 1 for a refused operation, each with a message', () => {
  const cases: [string[], number, RegExp][] = [
    [['frobnicate'], 2, /unknown command/],
    [['network', 'create', NET], 2, /usage: tsnetlink network create/],
    [['network', 'create', '--subnet', '192.168.11.1/33', 'other'], 2, /subnet/],
    [['network', 'create', '--driver', 'overlay', '--subnet', '192.168.11.1/24', 'other'], 2, /overlay/],
    [['network', 'create', '--subnet', '192.168.11.1/24', 'a'.repeat(16)], 2, /name/],
    [['network', 'create', '--subnet', '192.168.12.1/24', NET], 1, /already exists/],
    [['network', 'create', '--subnet', '192.168.10.128/25', 'other'], 1, /overlaps/],
    [['network', 'inspect', 'nosuch'], 1, /no such network/],
    [['network', 'rm', 'nosuch'], 1, /no such network/],
    [['connect', '-net', NET, '999999999'], 1, /no process 999999999/],
    [['disconnect', '-net', 'nosuch', '/run/netns/nosuch'], 1, /no such network: nosuch/],
    [['run', '-net', NET, 'nosuchcommand-tsn'], 127, /nosuchcommand-tsn: command not found/],
  ];
  for (const [args, code, msg] of cases) {
    const r = tsn(...args);
    assert.is(r.code, code, `${args.join(' ')}: exit code (stderr: ${r.err})`);
    assert.match(r.err, msg, `${args.join(' ')}: message`);
  }
  assert.equal(JSON.parse(tsn('network', 'ls', '--json').out).map((n: any) => n.name), [NET], 'nothing was created');
});

test('network repair puts back wiped rules and says what it did; check agrees afterwards', () => {
  assert.match(tsn('network', 'repair').out, /nothing to repair/);
  // The same wipe on either backend: every NAT rule of the network goes.
  if (NFT) execFileSync('nft', ['flush', 'chain', 'inet', 'tsnetlink', 'postrouting']);
  else execFileSync(IPTABLES, ['-t', 'nat', '-F', 'TSN-POSTROUTING']);
  assert.not.ok(masqueraded());
  const bad = tsn('network', 'check');
  assert.is(bad.code, 1, 'check reports the drift');
  assert.match(bad.out, NFT ? /firewall: missing postrouting: .*masq # tsnetlink:testbridge/ : /firewall: missing nat TSN-POSTROUTING/);
  const r = tsn('network', 'repair');
  assert.is(r.code, 0, r.err);
  assert.match(r.out, /firewall rules rewritten/);
  assert.is(tsn('network', 'check').code, 0);
  assert.ok(masqueraded());
});

test('network rm: bridge, rules and state gone', () => {
  const r = tsn('network', 'rm', NET);
  assert.is(r.code, 0, r.err);
  assert.equal(ipJson<any[]>(['link', 'show']).map((l) => l.ifname), ['lo']);
  assert.not.ok(saveText().includes('TSN-'));
  if (NFT) {
    assert.not.ok(nftHasTable(), 'table inet tsnetlink went with the network');
    assert.not.ok(saveText().includes('tsnetlink'), 'no FORWARD accept of ours left');
  }
  assert.equal(JSON.parse(tsn('network', 'ls', '--json').out), []);
  assert.equal(stateFiles(STATE), []);
  assert.equal(readdirSync('/run/netns'), []);
});

test.run();
