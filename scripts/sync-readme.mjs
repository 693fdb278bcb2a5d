#!/usr/bin/env node
// Copies each examples/ file into the code block that names it on its first line
// (`// examples/NAME.ts: ...` or `# examples/NAME.sh: ...`) in README.md and every docs/*.md page,
// so the pages show exactly what the tests type-check and run. `node scripts/sync-readme.mjs`
// rewrites the pages; with --check it only says which blocks differ (exit 1).
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';

const check = process.argv.includes('--check');
const pages = ['README.md', ...readdirSync('docs').filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)];
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
console.log(stale.length ? `updated: ${stale.join(', ')}` : 'README.md and docs/ already in sync');
