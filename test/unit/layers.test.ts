/**
 * The layering of src/, read from the imports themselves (docs/design.md states it in words).
 * Data flows one way, from the front ends down to the OS layer:
 *
 *   errors.ts                    the one error base class; imports nothing of ours
 *   sys/                         the OS layer: libc over koffi (its only importer), files, locks, spawning tools
 *   ip/                          the one address module (on ipaddr.js)
 *   netlink/core/                attributes, messages, the socket, the fake kernel
 *   netlink/<family>/            route, genl, netfilter, nftables, xfrm, sockdiag: core only, never each other
 *                                (nf_tables sits on netfilter's nfnetlink header)
 *   ns/                          network namespaces over netlink
 *   names.ts                     the network and endpoint naming rules
 *   firewall/ seam               types, desired state (spec, family), validation, the memory fake, conntrack flush
 *   firewall/<backend>/          one folder a backend: the seam and below, never another backend
 *   firewall/registry, router    the only files that name backends
 *   bridge/                      bridge networks: the seam, registry and router, never a backend's files
 *   cni/, cli/                   front ends: the bridge layer through its public API (bridge/index.ts) only
 *   engine/                      the resident engine: the front ends' dispatchers
 *   index.ts                     the package's entry: anything
 *
 * A new import that runs against this order fails here, with the rule it breaks.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join, posix, relative } from 'node:path';

const SRC = fileURLToPath(new URL('../../../src/', import.meta.url));

/** Every .ts file under src/, as a path relative to src/ ('bridge/connect.ts'). */
function sources(dir = SRC): string[] {
  return readdirSync(dir).flatMap((e) => {
    const p = join(dir, e);
    return statSync(p).isDirectory() ? sources(p) : e.endsWith('.ts') ? [relative(SRC, p)] : [];
  });
}

/** The files of src/ that `file` imports (type-only imports too: they shape the layering as much). */
function importsOf(file: string): string[] {
  const text = readFileSync(join(SRC, file), 'utf8');
  const out = new Set<string>();
  for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)(['"])(\.{1,2}\/[^'"]+)\1/g)) {
    out.add(posix.normalize(posix.join(dirname(file), m[2]!)).replace(/\.js$/, '.ts'));
  }
  return [...out];
}

/** The layer of a file: a rank (lower is deeper) and a name for messages. */
function layerOf(file: string): { rank: number; name: string } {
  const seam = /^firewall\/[^/]+\.ts$/.test(file) && !/^firewall\/(registry|router|index)\.ts$/.test(file);
  const table: [RegExp | boolean, number, string][] = [
    [/^errors\.ts$/, 0, 'errors'],
    [/^sys\//, 1, 'sys'],
    [/^ip\//, 1, 'ip'],
    [/^netlink\/core\//, 2, 'netlink/core'],
    [/^netlink\/[^/]+\//, 3, 'netlink family'],
    [/^ns\//, 4, 'ns'],
    [/^names\.ts$/, 5, 'names'],
    [seam, 6, 'firewall seam'],
    [/^firewall\/(iptables|nftables|[^/]+)\//, 7, 'firewall backend'],
    [/^firewall\/(registry|router|index)\.ts$/, 8, 'firewall registry'],
    [/^bridge\//, 9, 'bridge'],
    [/^(cni|cli)\//, 10, 'front end'],
    [/^engine\//, 11, 'engine'],
    [/^(index\.ts|exports\/)/, 12, 'package entry'],
  ];
  for (const [re, rank, name] of table) if (re === true || (re instanceof RegExp && re.test(file))) return { rank, name };
  throw new Error(`${file} is in no layer: add it to docs/design.md and to this test`);
}

/** Why `from` may not import `to`, or undefined when it may. */
function broken(from: string, to: string): string | undefined {
  const a = layerOf(from);
  const b = layerOf(to);
  const top = (f: string): string => f.split('/').slice(0, f.startsWith('netlink/') || f.startsWith('firewall/') ? 2 : 1).join('/');
  if (a.rank < b.rank) return `${a.name} imports ${b.name} above it`;
  if (a.name === 'netlink family' && top(from) !== top(to) && b.name === 'netlink family') {
    if (!(top(from) === 'netlink/nftables' && to === 'netlink/netfilter/nfnetlink.ts')) return 'a netlink family imports another family';
  }
  if (a.name === 'firewall backend' && b.name === 'firewall backend' && top(from) !== top(to)) return 'a firewall backend imports another backend';
  if (a.name === 'sys' && b.name === 'ip') return 'the OS layer imports the address module';
  if (a.name === 'ip' && b.name === 'sys') return 'the address module imports the OS layer';
  if (a.name === 'bridge' && b.name === 'firewall backend') return "the bridge layer reaches past the firewall seam into a backend's files";
  if (a.name === 'front end' && b.name === 'bridge' && to !== 'bridge/index.ts') return "a front end reaches into the bridge layer's internals (use bridge/index.ts)";
  if (a.name === 'front end' && b.name === 'firewall backend') return "a front end reaches into a firewall backend's files";
  if (a.name === 'front end' && b.name === 'front end' && top(from) !== top(to)) return 'the CNI plugin and the CLI import each other';
  return undefined;
}

test('every import of src/ runs down the written layering', () => {
  const files = sources();
  assert.ok(files.length > 100, `read ${files.length} files`);
  const bad: string[] = [];
  for (const f of files) {
    for (const t of importsOf(f)) {
      if (!files.includes(t)) bad.push(`${f} -> ${t}: no such file`);
      else {
        const why = broken(f, t);
        if (why) bad.push(`${f} -> ${t}: ${why}`);
      }
    }
  }
  assert.equal(bad, []);
});

test('koffi is imported by the OS layer only', () => {
  const importers = sources().filter((f) => /from ['"]koffi['"]|import\(['"]koffi['"]\)/.test(readFileSync(join(SRC, f), 'utf8')));
  assert.ok(importers.length > 0);
  assert.equal(importers.filter((f) => !f.startsWith('sys/')), []);
});

test('the rules catch what they state', () => {
  assert.ok(broken('netlink/core/socket.ts', 'bridge/links.ts'));
  assert.ok(broken('netlink/route/link.ts', 'netlink/genl/genl.ts'));
  assert.not.ok(broken('netlink/nftables/schemas.ts', 'netlink/netfilter/nfnetlink.ts'));
  assert.ok(broken('firewall/nftables/live.ts', 'firewall/iptables/rules.ts'));
  assert.ok(broken('firewall/spec.ts', 'firewall/iptables/rules.ts'));
  assert.ok(broken('firewall/types.ts', 'firewall/registry.ts'));
  assert.ok(broken('bridge/networks.ts', 'firewall/iptables/backend.ts'));
  assert.not.ok(broken('bridge/networks.ts', 'firewall/registry.ts'));
  assert.ok(broken('cni/inspect.ts', 'bridge/ipam.ts'));
  assert.not.ok(broken('cni/inspect.ts', 'bridge/index.ts'));
  assert.ok(broken('cli/container.ts', 'cni/config.ts'));
  assert.ok(broken('sys/locks.ts', 'netlink/core/socket.ts'));
  assert.not.ok(broken('engine/server.ts', 'cli/commands.ts'));
  assert.throws(() => layerOf('newfolder/x.ts'), /in no layer/);
});

test.run();
