/**
 * Every file in examples/ (the README and the docs/ pages show each one verbatim:
 * test/unit/readme.test.ts) runs as written in this sandbox, prints what it promises, and leaves
 * the namespace as it found it. The install walkthrough packs the package into a new app against
 * a registry served from this sandbox's loopback (the dependencies' own files from node_modules),
 * so it needs no network.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ipJson, requireSandbox } from '../helpers.js';
import { LAUNCHER, SAVE } from './lib.js';

requireSandbox('examples');

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const DIST_EXAMPLES = join(ROOT, 'dist', 'examples');
const tmp = mkdtempSync(join(tmpdir(), 'tsnetlink-examples-'));
const quiet = { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1' };

interface Ran {
  code: number | null;
  out: string;
  err: string;
}

/** Runs a command to its end without blocking the event loop (the install test serves a registry meanwhile). */
function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Ran> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, env: opts.env ?? quiet, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

async function example(name: string): Promise<string> {
  const r = await run(process.execPath, [join(DIST_EXAMPLES, `${name}.js`)]);
  assert.is(r.code, 0, `examples/${name}.ts exited ${r.code}: ${r.err}`);
  return r.out;
}

/** The sandbox as the example found it: only lo, no named netns, no tsnetlink rules or networks. */
function assertClean(what: string): void {
  assert.equal(ipJson(['link', 'show']).map((l: { ifname: string }) => l.ifname), ['lo'], `${what}: links left`);
  assert.equal(readdirSync('/run/netns'), [], `${what}: named netns left`);
  assert.not.match(spawnSync(SAVE, { encoding: 'utf8' }).stdout, /TSN-|tsnetlink/, `${what}: rules left`);
  assert.not.match(spawnSync('nft', ['list', 'ruleset'], { encoding: 'utf8' }).stdout ?? '', /tsnetlink/, `${what}: nf_tables rules left`);
  const nets = join('/run/tsnetlink', 'networks');
  assert.equal(existsSync(nets) ? readdirSync(nets).filter((f) => f.endsWith('.json')) : [], [], `${what}: network records left`);
}

test('every example file is compiled, and each is run by a test below', () => {
  const sources = readdirSync(join(ROOT, 'examples')).sort();
  assert.equal(sources, ['cli.sh', 'cni.sh', 'conntrack.ts', 'dualstack.ts', 'events.ts', 'families.ts', 'genl.ts', 'install.sh', 'kinds.ts', 'networks.ts', 'objects.ts', 'promises.ts', 'rtnl.ts', 'tc.ts', 'testing.ts']);
  for (const f of sources.filter((s) => s.endsWith('.ts'))) assert.ok(existsSync(join(DIST_EXAMPLES, f.replace(/\.ts$/, '.js'))), `${f} compiled`);
});

test('rtnl: a bridge, a veth whose peer is born in c1 as eth0, configured from inside c1; all removed', async () => {
  const out = await example('rtnl');
  assert.is(out, '127.0.0.1/8 192.168.10.2/24\n');
  assertClean('rtnl');
});

test('promises: three veths made at once, one refusal alone, all deleted with the loop free, the routes walked with each; all removed', async () => {
  const out = await example('promises');
  assert.match(out, /^ex-a0 ex-b0 ex-c0\nok EEXIST\n0 veths left, longest event-loop delay \d+\.\d ms\neach saw every route\n$/);
  assertClean('promises');
});

test('networks: network create, a container with 8080:80, the port answers from the container; all removed', async () => {
  const out = await example('networks');
  assert.match(out, /^[0-9a-f]{12}: 192\.168\.10\.2\/24 via 192\.168\.10\.1, published 8080->80\/tcp\n/);
  assert.match(out, /^hello from the container$/m);
  assertClean('networks');
});

test('dualstack: both subnets, forwarding of both families said, an address of each, the port answers over IPv4 and IPv6; all removed', async () => {
  const out = await example('dualstack');
  // IPv4 forwarding may already be on from an earlier example in this sandbox; IPv6 is this one's.
  const lines = out.split('\n').filter((l) => !/^changed: (net\.ipv4\.ip_forward|FORWARD policy)/.test(l));
  assert.is(lines.join('\n'), [
    '192.168.20.0/24 gateway 192.168.20.1, fd00:20::/64 gateway fd00:20::1',
    'changed: net.ipv6.conf.all.forwarding: 0 -> 1',
    'changed: IPv6 FORWARD policy: ACCEPT -> DROP',
    '192.168.20.2/24 via 192.168.20.1, fd00:20::2/64 via fd00:20::1',
    'hello from 192.168.20.1',
    'hello from fd00:20::1',
    '',
  ].join('\n'));
  assertClean('dualstack');
  assert.not.match(spawnSync(SAVE.replace(/iptables/, 'ip6tables'), { encoding: 'utf8' }).stdout, /TSN-|tsnetlink/, 'dualstack: IPv6 rules left');
});

test('objects: multipath and metrics routes, nexthop, neighbour and rule, then cleaned up', async () => {
  const out = await example('objects');
  assert.match(out, /10\.5\.0\.0\/24 boot \[ '10\.1\.0\.5 weight 2', '10\.1\.0\.6 weight 1' \]/);
  assert.match(out, /10\.6\.0\.0\/24 boot 10\.1\.0\.5 \{ mtu: 1300, initcwnd: 10, lock: \[ 'mtu' \] \}/);
  assert.match(out, /\d+ routes, 0 undecodable/);
  assert.match(out, /10\.1\.0\.5 02:00:00:00:00:05 permanent/);
  assert.is(ipJson(['rule', 'show']).length, 3, 'the rule is gone: only the three default rules');
  assertClean('objects');
});

test('kinds: vxlan, FDB dst, macvlan on its lower device, tap; a kind of your own', async () => {
  const out = await example('kinds');
  assert.match(out, /^42 bridge \d+ tap$/m);
  assertClean('kinds');
});

test('events: the monitor sees the link come and go; watch yields the state', async () => {
  const out = await example('events');
  assert.match(out, /^new ifb7$/m);
  assert.match(out, /^del ifb7$/m);
  assert.match(out, /^\d+ links$/m);
  assertClean('events');
});

test('families: ipset, xfrm, conntrack, genl and sock_diag calls in flight together through their promise forms; all removed', async () => {
  const out = await example('families');
  // The conntrack count is this sandbox's, which the examples before share: a TCP flow of theirs
  // that closed after its endpoint was gone lingers a few seconds (its CLOSE or TIME_WAIT entry),
  // so on a slow run it is counted. conntrack.e2e checks counts against `conntrack -C`.
  assert.match(out, /^ethtool 192\.0\.2\.1 192\.0\.2\.2 192\.0\.2\.3 1 \d+ 0\nthe event loop turned meanwhile: true\n$/);
  assert.is(spawnSync('ipset', ['list', '-n'], { encoding: 'utf8' }).stdout, '');
  assert.is(spawnSync('ip', ['xfrm', 'policy', 'list'], { encoding: 'utf8' }).stdout, '');
  assertClean('families');
});

test('genl: the ethtool family; rx-gro turned off, then back as it was (ethtool -k as the oracle)', async () => {
  const gro = () => /generic-receive-offload: (\w+)/.exec(spawnSync('ethtool', ['-k', 'lo'], { encoding: 'utf8' }).stdout)?.[1];
  const before = gro();
  assert.ok(before, 'ethtool -k lo shows generic-receive-offload');
  const out = await example('genl');
  assert.match(out, /^\d+ 1 \[ 'monitor' \]$/m);
  assert.match(out, /\{ active: (true|false), fixed: (true|false), wanted: (true|false) \}/);
  assert.match(out, /^false$/m, 'wanted is off after ethtool -K lo gro off');
  assert.is(gro(), before, 'restored');
});

test('conntrack: a UDP exchange on lo tracked, listed, looked up and deleted; the nft table removed', async () => {
  const out = await example('conntrack');
  assert.is(out, ['udp 127.0.0.1:40000 -> 127.0.0.1:5353 CONFIRMED', 'get: true', 'deleted: 1', 'left for port 5353: 0', ''].join('\n'));
  assert.not.match(spawnSync('nft', ['list', 'ruleset'], { encoding: 'utf8' }).stdout ?? '', /ctdemo/, 'nft table left');
  assertClean('conntrack');
});

test('tc: tbf added then changed, htb class on an ifb, u32 match with a mirred redirect to it; all removed', async () => {
  const out = await example('tc');
  assert.is(out, [
    'qdisc tbf 1:0 rate 8000000 bit/s burst 65536 bytes',
    'qdisc ingress ffff:0',
    'class htb 1:10 rate 2000000 ceil 3000000 bit/s',
    'filter u32 prio 1 match 0a000000/ff000000 at 16 match 00060000/00ff0000 at 8 -> mirred egress-redirect ifb0',
    '',
  ].join('\n'));
  assertClean('tc');
});

test('testing: the fake kernel answers a dump and an error (no root needed)', async () => {
  assert.is(await example('testing'), "[ [ 'ifb0', 'ifb' ] ]\nENODEV\n");
});

test('cli.sh: every command once, with tsnetlink on PATH; run passes exit 3 through; all removed', async () => {
  const bin = join(tmp, 'bin');
  mkdirSync(bin);
  symlinkSync(LAUNCHER, join(bin, 'tsnetlink'));
  const r = await run('bash', [join(ROOT, 'examples', 'cli.sh')], { cwd: tmp, env: { ...quiet, PATH: `${bin}:${process.env['PATH']}` }, timeoutMs: 60_000 });
  assert.is(r.code, 0, r.err + r.out);
  assert.match(r.out, /^testbridge\s+bridge\s+192\.168\.10\.0\/24\s+192\.168\.10\.1\s+testbridge$/m, 'network ls');
  assert.match(r.out, /^eth0@if\d+\s+UP\s+192\.168\.10\.2\/24/m, 'ip -br addr inside run');
  assert.match(r.out, /^default via 192\.168\.10\.1 dev eth0/m);
  assert.match(r.out, /^run exited with 3$/m);
  assert.match(r.out, /"netns": "\/run\/netns\/c1"/, 'connect prints the endpoint');
  assert.match(r.out, /^disconnected$/m);
  assert.match(r.out, /^consistent: state, kernel and firewall agree$/m, 'network check');
  assertClean('cli.sh');
});

test('cni.sh: the plugin linked into a throwaway CNI bin dir, its conflist, ADD and DEL as a runtime calls them; all removed, the host\'s CNI dirs untouched', async () => {
  const dir = join(tmp, 'cni');
  for (const d of ['path', 'tmp']) mkdirSync(join(dir, d), { recursive: true });
  symlinkSync(join(ROOT, 'bin', 'tsnetlink-cni'), join(dir, 'path', 'tsnetlink-cni'));
  symlinkSync(LAUNCHER, join(dir, 'path', 'tsnetlink'));
  // As a reader runs it: no CNI_BIN_DIR or CNI_CONF_DIR, so the script's own mktemp -d (here under TMPDIR).
  const hostCni = ['/opt/cni/bin/tsnetlink', '/etc/cni/net.d/10-tsnet.conflist'];
  const before = hostCni.map((f) => existsSync(f));
  const env: NodeJS.ProcessEnv = { ...quiet, TMPDIR: join(dir, 'tmp'), PATH: `${join(dir, 'path')}:${process.env['PATH']}` };
  delete env['CNI_BIN_DIR'];
  delete env['CNI_CONF_DIR'];
  const r = await run('bash', [join(ROOT, 'examples', 'cni.sh')], { cwd: dir, env, timeoutMs: 60_000 });
  assert.is(r.code, 0, r.err + r.out);
  assert.equal(hostCni.map((f) => existsSync(f)), before, 'nothing written to /opt/cni/bin or /etc/cni/net.d');
  assert.equal(readdirSync(join(dir, 'tmp')), [], 'the throwaway directory is removed on exit');
  const result = JSON.parse(r.out.split('\n')[0]!);
  assert.equal(result.ips, [{ address: '10.89.7.2/24', gateway: '10.89.7.1', interface: 2 }], 'the ADD result');
  assert.match(r.out, /^eth0@if\d+\s+UP\s+10\.89\.7\.2\/24/m, 'the address inside the netns');
  assert.match(r.out, /^tsnet\s+bridge\s+10\.89\.7\.0\/24\s+10\.89\.7\.1\s+tsnet0$/m, 'network ls sees the CNI-made network');
  assertClean('cni.sh');
});

/** A package registry on this sandbox's loopback serving the dependencies installed in node_modules. */
function localRegistry(dir: string): Promise<{ server: Server; url: string }> {
  const packages = new Map<string, { meta: Record<string, unknown>; tgz: string }>();
  const add = (pkgDir: string) => {
    const meta = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as Record<string, unknown> & { name: string; version: string };
    const tgz = join(dir, `${meta.name.replace('/', '-')}-${meta.version}.tgz`);
    const r = spawnSync('tar', ['-czf', tgz, '-C', pkgDir, '--transform', 's,^\\.,package,', '.']);
    assert.is(r.status, 0, `tar ${pkgDir}: ${r.stderr}`);
    packages.set(meta.name, { meta, tgz });
  };
  const nm = join(ROOT, 'node_modules');
  const deps = Object.keys((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies);
  for (const d of deps) {
    add(join(nm, d));
    const opt = (JSON.parse(readFileSync(join(nm, d, 'package.json'), 'utf8')) as { optionalDependencies?: Record<string, string> }).optionalDependencies ?? {};
    for (const o of Object.keys(opt)) if (existsSync(join(nm, o, 'package.json'))) add(join(nm, o));
  }
  const server = createServer((req, res) => {
    const path = decodeURIComponent((req.url ?? '/').split('?')[0]!.slice(1));
    const tarball = [...packages.values()].find((p) => path === `-/${p.tgz.split('/').pop()}`);
    if (tarball) {
      res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(readFileSync(tarball.tgz));
      return;
    }
    const p = packages.get(path);
    if (!p) {
      // Optional platform packages of other systems: absent, which npm accepts for optional ones.
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
      return;
    }
    const { address, port } = server.address() as AddressInfo;
    const version = p.meta['version'] as string;
    const integrity = `sha512-${createHash('sha512').update(readFileSync(p.tgz)).digest('base64')}`;
    const dist = { tarball: `http://${address}:${port}/-/${p.tgz.split('/').pop()}`, integrity };
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ name: path, 'dist-tags': { latest: version }, versions: { [version]: { ...p.meta, dist } } }));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/` })));
}

test('install.sh: npm pack, then a new app installs the tarball, imports it, and its types check', async () => {
  // A copy of the clone, so that prepack's rebuild of dist/ cannot disturb this test run's files.
  const repo = join(tmp, 'tsnetlink');
  mkdirSync(repo);
  for (const f of ['src', 'scripts', 'bin', 'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.dist.json', 'README.md', 'docs', 'LICENSE']) cpSync(join(ROOT, f), join(repo, f), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules'), join(repo, 'node_modules'));
  const { server, url } = await localRegistry(mkdtempSync(join(tmp, 'registry-')));
  try {
    const env = { ...quiet, npm_config_registry: url, npm_config_cache: join(tmp, 'npm-cache'), npm_config_update_notifier: 'false', npm_config_loglevel: 'error' };
    const r = await run('bash', [join(ROOT, 'examples', 'install.sh')], { cwd: repo, env, timeoutMs: 180_000 });
    assert.is(r.code, 0, r.err + r.out);
    assert.match(r.out, /^\[ 'lo' \]$/m, 'the app dumps the links of this netns');
    assert.match(r.out, /^ERR_PACKAGE_PATH_NOT_EXPORTED$/m);
    const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    assert.match(r.out, new RegExp(`^tsnetlink ${version.replace(/\./g, '\\.')}$`, 'm'), 'npx tsnetlink --version');
  } finally {
    server.close();
  }
  const app = join(tmp, 'my-app');
  const listed = spawnSync('tar', ['-tzf', join(repo, readdirSync(repo).find((f) => f.endsWith('.tgz'))!)], { encoding: 'utf8' }).stdout.split('\n');
  assert.ok(listed.includes('package/LICENSE'), 'LICENSE shipped');
  assert.ok(['tsnetlink', 'tsnetlink-cni', 'tsnetlink-engine.bash', 'tsnetlink-engine.sh'].every((b) => listed.includes(`package/bin/${b}`)), 'the launcher, the CNI shim and their engine clients shipped');
  assert.ok(listed.includes('package/docs/library.md') && listed.includes('package/docs/bench/connect-vs-endpoints.svg'), 'the docs the README links to are shipped');
  assert.equal(listed.filter((f) => f.endsWith('.map')), [], 'no source maps that point to unshipped sources');
  assert.equal(listed.filter((f) => /^package\/dist\/(test|bench|demo|examples)\//.test(f)), [], 'only the library and the CLI are shipped');
  // The types a user's TypeScript sees through the exports map, under strict settings.
  writeFileSync(join(app, 'check.ts'), [
    "import { Rtnl, Networks, type Link, type EndpointRecord, TsnetlinkError } from 'tsnetlink';",
    'const rt = Rtnl.open();',
    'const links: Link[] = rt.linkList();',
    'const ep: Promise<EndpointRecord> = new Networks({ stateDir: "/nonexistent" }).connect("n", { pid: 1 });',
    'export const checked = [links, ep, TsnetlinkError];',
    '',
  ].join('\n'));
  const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022',
    '--typeRoots', join(ROOT, 'node_modules', '@types'), '--types', 'node', 'check.ts'], { cwd: app, encoding: 'utf8' });
  assert.is(tsc.status, 0, tsc.stdout + tsc.stderr);
});

test('the demo (npm run demo without its setup and build steps): every step passes, nothing left', async () => {
  const r = await run(process.execPath, [join(ROOT, 'dist', 'demo', 'demo.js')], { timeoutMs: 60_000 });
  assert.is(r.code, 0, r.out + r.err);
  assert.match(r.out, /^\d+ passed, 0 failed$/m);
  assert.not.match(r.out, /FAIL/);
  assertClean('demo');
});

// The copies, the app and the registry live in the host's /tmp: removed however the tests ended.
test.after(() => rmSync(tmp, { recursive: true, force: true }));

test.run();
