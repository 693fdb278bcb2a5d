/**
 * The README shows only what the tests run: each ts/sh block is an examples/ file verbatim (the
 * files are type-checked with the project and run by test/e2e/examples.e2e.test.ts), the quick
 * start names package scripts that exist, the CLI's help block is the CLI's output, each json
 * block is a conflist the CNI plugin accepts, and every other block is marked as text.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { HELP } from '../../src/cli/usage.js';
import { decodeConfig, parseConfig, parseEnv } from '../../src/cni/config.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const readme = readFileSync(`${root}README.md`, 'utf8');
const blocks = [...readme.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map((m) => ({ lang: m[1] ?? '', body: m[2] ?? '', at: readme.slice(0, m.index).split('\n').length }));
/** The code blocks of a markdown text, with the line each starts on. */
const blocksOf = (md: string) => [...md.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map((m) => ({ lang: m[1] ?? '', body: m[2] ?? '', at: md.slice(0, m.index).split('\n').length }));
const docPages = (existsSync(`${root}docs`) ? readdirSync(`${root}docs`) : []).filter((f) => f.endsWith('.md')).map((f) => ({ name: `docs/${f}`, blocks: blocksOf(readFileSync(`${root}docs/${f}`, 'utf8')) }));
const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as { scripts: Record<string, string> };

test('every code block says what it is: ts and sh run, json is a conflist the plugin reads, text is shown', () => {
  assert.ok(blocks.length > 10, `found ${blocks.length} blocks`);
  for (const b of blocks) assert.ok(['ts', 'sh', 'json', 'text'].includes(b.lang), `README line ${b.at}: a block marked "${b.lang}" (use ts, sh, json or text)`);
});

test('each json block is a conflist whose tsnetlink entry the CNI plugin accepts, as a runtime hands it over', () => {
  const json = blocks.filter((b) => b.lang === 'json');
  assert.ok(json.length > 0, 'the CNI section shows a conflist');
  const env = parseEnv({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'readme', CNI_NETNS: '/run/netns/readme', CNI_IFNAME: 'eth0' });
  for (const b of json) {
    const list = JSON.parse(b.body) as { cniVersion: string; name: string; plugins: Record<string, unknown>[] };
    const entry = list.plugins.find((p) => p['type'] === 'tsnetlink');
    assert.ok(entry, `README line ${b.at}: no tsnetlink entry`);
    // A runtime passes the entry with the list's name and version, and the capabilities' values in runtimeConfig.
    const conf = parseConfig(decodeConfig(JSON.stringify({ cniVersion: list.cniVersion, name: list.name, ...entry, runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] } })), env);
    assert.is(conf.name, list.name, `README line ${b.at}`);
  }
});

test('each ts and sh block (but the quick start) is an examples/ file, verbatim, and each file is shown', () => {
  const shown: string[] = [];
  // A topic's example may live on its docs/ page instead of the README (docs/tc.md shows examples/tc.ts).
  const pages = [
    { name: 'README', blocks: blocks.filter((x) => x.lang === 'ts' || x.lang === 'sh').slice(1) },
    ...docPages.map((p) => ({ name: p.name, blocks: p.blocks.filter((x) => x.lang === 'ts' || x.lang === 'sh') })),
  ];
  for (const page of pages) {
    for (const b of page.blocks) {
      const file = /^(?:\/\/|#) (examples\/[\w.-]+):/.exec(b.body)?.[1];
      assert.ok(file, `${page.name} line ${b.at}: a ${b.lang} block whose first line does not name its examples/ file`);
      assert.is(b.body, readFileSync(`${root}${file}`, 'utf8'), `${page.name} line ${b.at} differs from ${file} (node scripts/sync-readme.mjs copies it)`);
      shown.push(file.slice('examples/'.length));
    }
  }
  assert.equal(shown.sort(), readdirSync(`${root}examples`).sort(), 'every example is in the README or a docs page once');
});

test('docs pages mark every code block: ts and sh are examples/ files (above), everything else text', () => {
  for (const p of docPages) for (const b of p.blocks) assert.ok(['ts', 'sh', 'text'].includes(b.lang), `${p.name} line ${b.at}: a block marked "${b.lang}" (use ts, sh or text)`);
});

test('the quick start is two commands, both package scripts that set up what they need', () => {
  const quick = blocks[0]!;
  assert.is(quick.lang, 'sh');
  const commands = quick.body.trim().split('\n').map((l) => l.replace(/#.*/, '').trim());
  assert.equal(commands, ['npm run demo', 'npm test']);
  for (const s of ['demo', 'test', 'bench']) assert.match(pkg.scripts[s] ?? '', /^bash scripts\/setup\.sh && npm run build && /, `npm run ${s} installs and builds first`);
});

test('the CLI help block is what tsnetlink --help prints', () => {
  const help = blocks.find((b) => b.lang === 'text' && b.body.startsWith('tsnetlink - '));
  assert.ok(help, 'README shows tsnetlink --help');
  assert.is(help!.body, HELP.endsWith('\n') ? HELP : `${HELP}\n`);
});

test('the README uses only words a reader can resolve, and shows the committed chart', () => {
  // Words that point into this project's history (an issue number, an internal list of pitfalls,
  // "the seed") mean nothing to a reader of the README.
  readme.split('\n').forEach((line, i) => {
    assert.not.match(line, /\bseed\b|pitfall|\(issue \d+\)|\bissue \d+\b/i, `README line ${i + 1}: ${line}`);
  });
  const images = [...readme.matchAll(/!\[[^\]]*\]\(([^)]+)\)/g)].map((m) => m[1] ?? '');
  assert.ok(images.includes('docs/bench/connect-vs-endpoints.svg'), 'the Benchmark section shows the chart');
  for (const img of images) assert.ok(readFileSync(`${root}${img}`, 'utf8').startsWith('<svg'), `${img} is committed`);
});

test.run();
