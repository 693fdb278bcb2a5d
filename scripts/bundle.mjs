#!/usr/bin/env node
// Bundles the compiled entry points into single files (dist/bundle/): Node then loads one module
// instead of ~80, which takes a CLI command ~70 ms and `import('tsnetlink')` ~120 ms less on this
// kind of machine. koffi stays external (a native addon); everything else is inlined. The CLI's
// entry (help, version, argument errors) is bundled apart from its commands, which it imports
// only when one runs.
import { build } from 'esbuild';

const common = { bundle: true, platform: 'node', format: 'esm', target: 'node20', external: ['koffi'], logLevel: 'warning', legalComments: 'none' };
// The library and its subpath entries (tsnetlink/netlink, /firewall, /ip, /testing) in one build
// with shared chunks: a class is one class whichever entry an app imports it from.
await build({
  ...common,
  entryPoints: { index: 'dist/src/index.js', netlink: 'dist/src/exports/netlink.js', firewall: 'dist/src/exports/firewall.js', ip: 'dist/src/exports/ip.js', testing: 'dist/src/exports/testing.js' },
  outdir: 'dist/bundle',
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
});
await build({ ...common, entryPoints: { commands: 'dist/src/cli/commands.js' }, outdir: 'dist/bundle' });
await build({ ...common, entryPoints: { tsnetlink: 'dist/src/cli/main.js' }, outdir: 'dist/bundle', external: ['koffi', './commands.js'] });
// The CNI plugin runs once per runtime call, so its start is on every container's path: its entry
// (VERSION) apart, as the CLI's, and every other command in one more file (koffi still loads only
// when a command reaches the kernel).
await build({ ...common, entryPoints: { 'tsnetlink-cni': 'dist/src/cni/main.js' }, outdir: 'dist/bundle', external: ['koffi', './dispatch.js'] });
await build({ ...common, entryPoints: { dispatch: 'dist/src/cni/dispatch.js' }, outdir: 'dist/bundle' });
