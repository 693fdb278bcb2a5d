/**
 * The README's library examples run as written: every ```ts block that starts with
 * `// example: NAME` is run as a module against the built package in this sandbox, and what it
 * prints is checked.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ipJson, requireSandbox } from '../helpers.js';

requireSandbox('netlink-readme');

const readme = readFileSync(fileURLToPath(new URL('../../../README.md', import.meta.url)), 'utf8');
const index = fileURLToPath(new URL('../../src/index.js', import.meta.url));
const examples = new Map<string, string>();
for (const m of readme.matchAll(/```ts\n\/\/ example: (\w+)\n([\s\S]*?)```/g)) examples.set(m[1] as string, m[2] as string);
const dir = mkdtempSync(join(tmpdir(), 'tsnetlink-readme-'));

function run(name: string): string {
  const code = examples.get(name);
  assert.ok(code, `README has example ${name}`);
  const file = join(dir, `${name}.mjs`);
  writeFileSync(file, code!.replaceAll("from 'tsnetlink'", `from ${JSON.stringify(index)}`));
  const r = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1' } });
  assert.is(r.status, 0, `${name} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

test('the README has the examples', () => {
  assert.equal([...examples.keys()].sort(), ['events', 'genl', 'kinds', 'objects', 'testing']);
});

test('objects: multipath and metrics routes, nexthop, neighbour and rule, then cleaned up', () => {
  const out = run('objects');
  assert.match(out, /10\.5\.0\.0\/24 boot \[ '10\.1\.0\.5 weight 2', '10\.1\.0\.6 weight 1' \]/);
  assert.match(out, /10\.6\.0\.0\/24 boot 10\.1\.0\.5 \{ mtu: 1300, initcwnd: 10, lock: \[ 'mtu' \] \}/);
  assert.match(out, /\d+ routes, 0 undecodable/);
  assert.match(out, /10\.1\.0\.5 02:00:00:00:00:05 permanent/);
  assert.equal(ipJson(['link', 'show']).map((l: any) => l.ifname), ['lo']);
  assert.is(ipJson(['rule', 'show']).length, 3);
});

test('kinds: vxlan, FDB dst, macvlan on its lower device, tap; a user kind', () => {
  const out = run('kinds');
  assert.match(out, /^42 bridge \d+ tap$/m);
  assert.equal(ipJson(['link', 'show']).map((l: any) => l.ifname), ['lo']);
});

test('events: the monitor sees the link come and go; watch yields the state', () => {
  const out = run('events');
  assert.match(out, /new ifb7/);
  assert.match(out, /del ifb7/);
  assert.match(out, /^\d+ links$/m);
});

test('genl: the ethtool family and a feature of lo', () => {
  const out = run('genl');
  assert.match(out, /^\d+ 1 \[ 'monitor' \]$/m);
  assert.match(out, /\{ active: (true|false), fixed: (true|false), wanted: (true|false) \}/);
});

test('testing: the fake kernel answers a dump and an error', () => {
  assert.is(run('testing'), "[ [ 'ifb0', 'ifb' ] ]\nENODEV\n");
  rmSync(dir, { recursive: true, force: true });
});

test.run();
