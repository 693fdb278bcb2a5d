/**
 * The README and the docs/ pages show only what the tests run: each ts/sh block is an examples/
 * file verbatim (the files are type-checked with the project and run by
 * test/e2e/examples.e2e.test.ts), the README's quick start names package scripts that exist, the
 * CLI's help block is the CLI's output, each json block is a conflist the CNI plugin accepts, and
 * every other block is marked as text. Links between the pages lead to a file and a heading that
 * exist, and the README stays short: the detail lives in docs/.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import ts from 'typescript';
import { fileURLToPath } from 'node:url';
import { HELP } from '../../src/cli/usage.js';
import { decodeConfig, parseConfig, parseEnv } from '../../src/cni/config.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
/** README.md, then every docs/*.md, by their path from the repository's root. */
const pages = ['README.md', ...readdirSync(`${root}docs`).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)];
const text = new Map(pages.map((p) => [p, readFileSync(`${root}${p}`, 'utf8')]));
const readme = text.get('README.md')!;
const blocksOf = (page: string) => {
  const t = text.get(page)!;
  return [...t.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map((m) => ({ page, lang: m[1] ?? '', body: m[2] ?? '', at: `${page} line ${t.slice(0, m.index).split('\n').length}` }));
};
const blocks = pages.flatMap(blocksOf);
const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as { scripts: Record<string, string> };

/** A page's text outside code blocks and inline code: where links and words are read. */
const prose = (page: string) => text.get(page)!.replace(/^```\w*\n[\s\S]*?^```$/gm, '').replace(/`[^`\n]*`/g, '``');
/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens; repeats get -1, -2, ... */
function anchors(page: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const m of text.get(page)!.replace(/^```\w*\n[\s\S]*?^```$/gm, '').matchAll(/^#{1,6} (.+)$/gm)) {
    const base = (m[1] ?? '').trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/ /g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n ? `${base}-${n}` : base);
  }
  return out;
}

test('every code block says what it is: ts and sh run, json is a conflist the plugin reads, text is shown', () => {
  assert.ok(blocks.length > 10, `found ${blocks.length} blocks`);
  for (const b of blocks) assert.ok(['ts', 'sh', 'json', 'text'].includes(b.lang), `${b.at}: a block marked "${b.lang}" (use ts, sh, json or text)`);
});

test('each json block is a conflist whose tsnetlink entry the CNI plugin accepts, as a runtime hands it over', () => {
  const json = blocks.filter((b) => b.lang === 'json');
  assert.ok(json.length > 0, 'the CNI page shows a conflist');
  const env = parseEnv({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'readme', CNI_NETNS: '/run/netns/readme', CNI_IFNAME: 'eth0' });
  for (const b of json) {
    const list = JSON.parse(b.body) as { cniVersion: string; name: string; plugins: Record<string, unknown>[] };
    const entry = list.plugins.find((p) => p['type'] === 'tsnetlink');
    assert.ok(entry, `${b.at}: no tsnetlink entry`);
    // A runtime passes the entry with the list's name and version, and the capabilities' values in runtimeConfig.
    const conf = parseConfig(decodeConfig(JSON.stringify({ cniVersion: list.cniVersion, name: list.name, ...entry, runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] } })), env);
    assert.is(conf.name, list.name, b.at);
  }
});

test('each ts and sh block (but the README\'s quick start) is an examples/ file, verbatim, and each file is shown once', () => {
  const shown: string[] = [];
  const quick = blocks[0]; // README.md comes first
  for (const b of blocks.filter((x) => (x.lang === 'ts' || x.lang === 'sh') && x !== quick)) {
    const file = /^(?:\/\/|#) (examples\/[\w.-]+):/.exec(b.body)?.[1];
    assert.ok(file, `${b.at}: a ${b.lang} block whose first line does not name its examples/ file`);
    assert.is(b.body, readFileSync(`${root}${file}`, 'utf8'), `${b.at} differs from ${file} (node scripts/sync-readme.mjs copies it)`);
    shown.push(file.slice('examples/'.length));
  }
  assert.equal(shown.sort(), readdirSync(`${root}examples`).sort(), 'every example is shown once, in the README or a docs/ page');
});

test('the quick start is two commands, both package scripts that set up what they need', () => {
  const quick = blocks[0]!;
  assert.ok(quick.page === 'README.md', 'the README opens with its quick start');
  assert.is(quick.lang, 'sh');
  const commands = quick.body.trim().split('\n').map((l) => l.replace(/#.*/, '').trim());
  assert.equal(commands, ['npm run demo', 'npm test']);
  for (const s of ['demo', 'test', 'bench']) assert.match(pkg.scripts[s] ?? '', /^bash scripts\/setup\.sh && npm run build && /, `npm run ${s} installs and builds first`);
});

test('the CLI help block is what tsnetlink --help prints', () => {
  const help = blocks.find((b) => b.lang === 'text' && b.body.startsWith('tsnetlink - '));
  assert.ok(help, 'a page shows tsnetlink --help');
  assert.is(help!.body, HELP.endsWith('\n') ? HELP : `${HELP}\n`);
});

test('the pages use only words a reader can resolve, and the benchmark page shows the committed chart', () => {
  // Words that point into this project's history (an issue number, an internal list of pitfalls,
  // "the seed") mean nothing to a reader.
  for (const page of pages) {
    text.get(page)!.split('\n').forEach((line, i) => {
      // Inside code spans a word is an identifier (netem's `seed` option), not prose.
      assert.not.match(line.replace(/`[^`]*`/g, ''), /\bseed\b|pitfall|\(issue \d+\)|\bissue \d+\b/i, `${page} line ${i + 1}: ${line}`);
    });
  }
  const images = pages.flatMap((page) => [...prose(page).matchAll(/!\[[^\]]*\]\(([^)]+)\)/g)].map((m) => normalize(join(dirname(page), m[1] ?? ''))));
  assert.ok(images.includes('docs/bench/connect-vs-endpoints.svg'), 'the benchmark page shows the chart');
  for (const img of images) assert.ok(readFileSync(`${root}${img}`, 'utf8').startsWith('<svg'), `${img} is committed`);
});

test('every link between the pages leads to a file that exists, and an anchor to a heading of it', () => {
  let checked = 0;
  for (const page of pages) {
    for (const m of prose(page).matchAll(/(?<!!)\[[^\]]*\]\(([^)\s]+)\)/g)) {
      const href = m[1] ?? '';
      if (/^[a-z]+:/i.test(href)) continue; // https://, mailto:
      const [path = '', anchor] = href.split('#');
      const target = path === '' ? page : normalize(join(dirname(page), path));
      assert.ok(existsSync(`${root}${target}`), `${page}: link to ${href}: no ${target}`);
      if (anchor !== undefined) {
        assert.ok(text.has(target), `${page}: link to ${href}: an anchor into a file that is not a page`);
        assert.ok(anchors(target).has(anchor), `${page}: link to ${href}: ${target} has no heading "${anchor}" (has: ${[...anchors(target)].join(', ')})`);
      }
      checked++;
    }
  }
  assert.ok(checked > 20, `checked ${checked} links`);
});

test('the README stays a five-minute read that links every docs/ page', () => {
  assert.ok(Buffer.byteLength(readme) <= 10_240, `README.md is ${Buffer.byteLength(readme)} bytes (at most 10 KB): move detail into docs/`);
  const linked = new Set([...prose('README.md').matchAll(/\]\((docs\/[\w.-]+\.md)(?:#[^)]*)?\)/g)].map((m) => m[1]));
  for (const page of pages.slice(1)) assert.ok(linked.has(page), `README.md links ${page}`);
});

test('each examples/*.ts is plain JavaScript too (no type syntax), so it runs as .mjs on a Node without type stripping', () => {
  // As TypeScript (types erased) and as JavaScript (nothing to erase) the file must compile to the
  // same code, and as JavaScript without a complaint: a type annotation, an `as`, a `!` or a type
  // argument (which JavaScript would read as comparisons) all fail one of the two.
  const options = { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 };
  for (const f of readdirSync(`${root}examples`).filter((x) => x.endsWith('.ts'))) {
    const src = readFileSync(`${root}examples/${f}`, 'utf8');
    const asTs = ts.transpileModule(src, { fileName: f, compilerOptions: options });
    const asJs = ts.transpileModule(src, { fileName: f.replace(/\.ts$/, '.mjs'), reportDiagnostics: true, compilerOptions: { ...options, allowJs: true } });
    assert.equal((asJs.diagnostics ?? []).map((d) => ts.flattenDiagnosticMessageText(d.messageText, ' ')), [], `examples/${f} as JavaScript`);
    assert.ok(asTs.outputText === asJs.outputText, `examples/${f} has TypeScript-only syntax (it must run as .mjs too)`);
  }
});

test.run();
