#!/usr/bin/env node
// Bundles the compiled entry points into single files (dist/bundle/): Node then loads one module
// instead of ~80, which takes a CLI command ~70 ms and `import('tsnetlink')` ~120 ms less on this
// kind of machine. koffi stays external (a native addon); everything else is inlined. The CLI's
// entry (help, version, argument errors) is bundled apart from its commands, which it imports
// only when one runs.
import { build } from 'esbuild';

const common = { bundle: true, platform: 'node', format: 'esm', target: 'node20', external: ['koffi'], logLevel: 'warning', legalComments: 'none' };
await build({ ...common, entryPoints: { index: 'dist/src/index.js', commands: 'dist/src/cli/commands.js' }, outdir: 'dist/bundle' });
await build({ ...common, entryPoints: { tsnetlink: 'dist/src/cli/main.js' }, outdir: 'dist/bundle', external: ['koffi', './commands.js'] });
