#!/usr/bin/env node
// Copies each examples/ file into the README (or docs/*.md) code block that names it on its first
// line (`// examples/NAME.ts: ...` or `# examples/NAME.sh: ...`), so the pages show exactly what the
// tests type-check and run. `node scripts/sync-readme.mjs` rewrites them; with --check it only says
// which blocks differ (exit 1).
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';

const check = process.argv.includes('--check');
const pages = ['README.md', ...(existsSync('docs') ? readdirSync('docs').filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`) : [])];
const stale = [];
for (const page of pages) {
  const text = readFileSync(page, 'utf8');
  const out = text.replace(/```(ts|sh)\n((?:\/\/|#) (examples\/[\w.-]+):[\s\S]*?)```/g, (whole, lang, body, file) => {
    const want = readFileSync(file, 'utf8');
    if (want === body) return whole;
    stale.push(`${page}: ${file}`);
    return `\`\`\`${lang}\n${want}\`\`\``;
  });
  if (!check && out !== text) writeFileSync(page, out);
}
if (check) {
  if (stale.length) console.error(`blocks out of date: ${stale.join(', ')} (run node scripts/sync-readme.mjs)`);
  process.exit(stale.length ? 1 : 0);
}
console.log(stale.length ? `updated: ${stale.join(', ')}` : 'README and docs already in sync');
