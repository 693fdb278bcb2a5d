#!/usr/bin/env node
// Copies each examples/ file into the README code block that names it on its first line
// (`// examples/NAME.ts: ...` or `# examples/NAME.sh: ...`), so the README shows exactly what the
// tests type-check and run. `node scripts/sync-readme.mjs` rewrites README.md; with --check it only
// says which blocks differ (exit 1).
import { readFileSync, writeFileSync } from 'node:fs';

const check = process.argv.includes('--check');
const readme = readFileSync('README.md', 'utf8');
const stale = [];
const out = readme.replace(/```(ts|sh)\n((?:\/\/|#) (examples\/[\w.-]+):[\s\S]*?)```/g, (whole, lang, body, file) => {
  const want = readFileSync(file, 'utf8');
  if (want === body) return whole;
  stale.push(file);
  return `\`\`\`${lang}\n${want}\`\`\``;
});
if (check) {
  if (stale.length) console.error(`README blocks out of date: ${stale.join(', ')} (run node scripts/sync-readme.mjs)`);
  process.exit(stale.length ? 1 : 0);
}
writeFileSync('README.md', out);
console.log(stale.length ? `updated: ${stale.join(', ')}` : 'README already in sync');
