#!/usr/bin/env node
// Test runner: unit tests (no root) in one uvu process, then each end-to-end file in its own
// throwaway network + mount namespace (scripts/sandbox.mjs). Prints "N passed, N failed".
// The end-to-end tests need root; under CI=true a missing root is a failure, not a skip.
import { spawnSync } from 'node:child_process';
import { readdirSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const unitOnly = process.argv.includes('--unit');
const e2eOnly = process.argv.includes('--e2e');
const filter = process.argv.slice(2).find((a) => !a.startsWith('--'));
const uvu = join('node_modules', 'uvu', 'bin.js');
// uvu colours its output unless told not to: only a terminal gets colours, and never with NO_COLOR.
const colour = process.stdout.isTTY && !process.env.NO_COLOR && process.env.TERM !== 'dumb';
const uvuArgs = colour ? [] : ['--no-color'];
if (!colour) process.env.NO_COLOR = '1';
let passed = 0;
let failed = 0;
let skipped = 0;
let skippedFiles = 0;
// Tests that cannot apply on this kernel print one marker line each (test/kernel.ts): they ran their
// captured-bytes variant, which uvu counted as passed; they are counted apart and named at the end.
const notApplicable = [];
const NA = /^TSNETLINK-NOT-APPLICABLE\t([^\t]*)\t([^\t]*)\t(.*)$/gm;
// The kernel's answers are probed once per run and shared by every test file through this file.
const capsDir = mkdtempSync(join(tmpdir(), 'tsnetlink-caps-'));
process.env.TSNETLINK_KERNEL_CAPS = join(capsDir, 'kernel.json');
process.on('exit', () => rmSync(capsDir, { recursive: true, force: true }));

function run(label, cmd, args, env = process.env) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'pipe'] });
  const na = [...(r.stdout ?? '').matchAll(NA)].map((m) => ({ file: m[1], test: m[2], why: m[3], label }));
  notApplicable.push(...na);
  process.stdout.write((r.stdout ?? '').replace(NA, (_, f, t) => `(not applicable on this kernel: ${f} › ${t}; ran on captured bytes)`));
  process.stderr.write(r.stderr ?? '');
  const total = Number(/Total:\s+(\d+)/.exec(r.stdout ?? '')?.[1] ?? 0);
  const ok = Number(/Passed:\s+(\d+)/.exec(r.stdout ?? '')?.[1] ?? 0);
  const sk = Number(/Skipped:\s+(\d+)/.exec(r.stdout ?? '')?.[1] ?? 0);
  passed += Math.max(0, ok - na.length);
  skipped += sk;
  const bad = total - ok - sk;
  if (r.status !== 0 && bad <= 0) {
    console.error(`\n${label}: exited with ${r.status ?? r.signal} before reporting results`);
    failed += 1;
  } else failed += Math.max(0, bad);
}

if (!e2eOnly) {
  console.log('== unit tests');
  run('unit', process.execPath, [uvu, 'dist/test/unit', filter ? `${filter}[^/]*\\.test\\.js$` : '\\.test\\.js$', ...uvuArgs]);
}

if (!unitOnly) {
  const root = process.getuid?.() === 0;
  const files = existsSync('dist/test/e2e') ? readdirSync('dist/test/e2e').filter((f) => f.endsWith('.e2e.test.js') && (!filter || f.includes(filter))).sort() : [];
  if (!root) {
    const msg = `end-to-end tests need root (they build bridges and namespaces in a sandbox); ${files.length} test files not run: ${files.join(', ')}`;
    if (process.env.CI) {
      console.error(`FAIL: ${msg}`);
      failed += files.length || 1;
    } else {
      console.warn(`SKIP: ${msg}; run as root: sudo npm test`);
      skippedFiles += files.length;
    }
  } else {
    const e2e = (f, env) => run(f, process.execPath, ['scripts/sandbox.mjs', process.execPath, uvu, 'dist/test/e2e', `^${f.replace(/\./g, '\\.')}$`, ...uvuArgs], env);
    for (const f of files) {
      console.log(`== e2e ${f} (own sandbox)`);
      e2e(f, process.env);
    }
    // Every bridge-network file once more on the native nf_tables backend, with nft as the oracle
    // (test/e2e/fw-oracle.ts): the CLI's file too (its processes inherit $TSNETLINK_FIREWALL), and
    // dual-stack, whose IPv6 rules live in the same table.
    const native = ['bridge', 'bridge-concurrency', 'bridge-errors', 'isolation', 'reconcile', 'crash', 'race', 'dualstack', 'cli'].map((n) => `${n}.e2e.test.js`);
    if (spawnSync('sh', ['-c', 'command -v nft']).status === 0) {
      for (const f of files.filter((x) => native.includes(x))) {
        console.log(`== e2e ${f} with the nftables backend (own sandbox)`);
        e2e(f, { ...process.env, TSNETLINK_FIREWALL: 'nftables' });
      }
    }
    // The seed scenario once more on the legacy iptables backend (the default is nft).
    const legacy = 'bridge.e2e.test.js';
    if (files.includes(legacy) && spawnSync('sh', ['-c', 'command -v iptables-legacy-restore']).status === 0) {
      console.log(`== e2e ${legacy} with iptables-legacy (own sandbox)`);
      e2e(legacy, { ...process.env, TSNETLINK_IPTABLES_RESTORE: 'iptables-legacy-restore' });
    }
  }
}

if (notApplicable.length) {
  console.log(`\nNot applicable on this kernel (each ran its code path on captured bytes instead):`);
  for (const n of notApplicable) console.log(`  ${n.label}: ${n.test}: ${n.why}`);
}
const notRun = [notApplicable.length ? `${notApplicable.length} not applicable` : '', skipped ? `${skipped} skipped` : '', skippedFiles ? `${skippedFiles} end-to-end files not run (need root)` : ''].filter(Boolean);
console.log(`\n${passed} passed, ${failed} failed${notRun.length ? `, ${notRun.join(', ')}` : ''}`);
process.exit(failed > 0 ? 1 : 0);
