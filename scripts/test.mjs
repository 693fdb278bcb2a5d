#!/usr/bin/env node
// Test runner: unit tests (no root) in one uvu process, and each end-to-end file in its own
// throwaway network + mount namespace (scripts/sandbox.mjs). The files run a few at a time (each
// has a sandbox of its own, so they cannot see one another), the longest first; each file's
// output is printed whole when it ends, with its duration. Prints "N passed, N failed".
// The end-to-end tests need root; under CI=true a missing root is a failure, not a skip.
//
//   node scripts/test.mjs [--unit | --e2e] [--jobs N] [FILTER]
//
// --jobs N (or $TSNETLINK_TEST_JOBS) sets how many files run at once (default: CPUs + 1, at most 4).
// $TSNETLINK_TEST_DEADLINE (seconds) bounds each file; one still running then is killed and failed.
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, existsSync, mkdtempSync, rmSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir, availableParallelism } from 'node:os';
import { join } from 'node:path';

const argv = process.argv.slice(2);
const unitOnly = argv.includes('--unit');
const e2eOnly = argv.includes('--e2e');
const jobsArg = argv.indexOf('--jobs');
const filter = argv.find((a, i) => !a.startsWith('--') && argv[i - 1] !== '--jobs');
const jobs = Math.max(1, Number(jobsArg >= 0 ? argv[jobsArg + 1] : process.env.TSNETLINK_TEST_JOBS) || Math.min(4, availableParallelism() + 1));
const stress = process.env.TSNETLINK_STRESS === '1';
// Generous: the slowest file takes about two minutes alone on two busy CPUs; a full stress run several times that.
const deadlineMs = (Number(process.env.TSNETLINK_TEST_DEADLINE) || (stress ? 3600 : 900)) * 1000;
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

// How long each file took last time, so that the longest start first and the pool ends together.
const timesFile = join('node_modules', '.cache', 'tsnetlink', 'e2e-durations.json');
let lastTimes = {};
try {
  lastTimes = JSON.parse(readFileSync(timesFile, 'utf8'));
} catch {
  // First run on this checkout: the files known to be slow go first (FIRST below).
}
const FIRST = ['crash', 'race', 'cli', 'examples', 'bridge-concurrency', 'cni-podman', 'cri', 'cni-containerd', 'iptables', 'isolation', 'portfilter', 'bridge'];
const estimate = (label) => {
  const i = FIRST.findIndex((n) => label.startsWith(`${n}.`));
  return lastTimes[label] ?? (i < 0 ? 0 : 1000 * (FIRST.length - i));
};

/** Reads one finished file's output into the totals and prints it whole. */
function report(job, r) {
  const na = [...r.stdout.matchAll(NA)].map((m) => ({ file: m[1], test: m[2], why: m[3], label: job.label }));
  notApplicable.push(...na);
  const secs = (r.ms / 1000).toFixed(1);
  process.stdout.write(`== ${job.title} (${secs} s)\n`);
  process.stdout.write(r.stdout.replace(NA, (_, f, t) => `(not applicable on this kernel: ${f} › ${t}; ran on captured bytes)`));
  process.stderr.write(r.stderr);
  const total = Number(/Total:\s+(\d+)/.exec(r.stdout)?.[1] ?? 0);
  const ok = Number(/Passed:\s+(\d+)/.exec(r.stdout)?.[1] ?? 0);
  const sk = Number(/Skipped:\s+(\d+)/.exec(r.stdout)?.[1] ?? 0);
  passed += Math.max(0, ok - na.length);
  skipped += sk;
  const bad = total - ok - sk;
  if (r.timedOut) {
    console.error(`\n${job.label}: still running after ${deadlineMs / 1000} s: killed, counted as failed`);
    failed += Math.max(1, bad);
  } else if (r.code !== 0 && bad <= 0) {
    console.error(`\n${job.label}: exited with ${r.code ?? r.signal} before reporting results`);
    failed += 1;
  } else failed += Math.max(0, bad);
  durations.push({ label: job.label, ms: r.ms, timedOut: r.timedOut });
}

const running = new Set();
/**
 * Runs one job as a child in a process group of its own (its PID is the group's id), so that a
 * hung file is ended with everything it started (the sandbox's unshare, the test process, its
 * CLI runs) and nothing else; output is collected, not passed through, so files never interleave.
 */
function runJob(job) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(job.cmd, job.args, { env: job.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    running.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child);
    }, deadlineMs);
    child.on('error', (e) => {
      stderr += `${job.label}: ${e.message}\n`;
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      running.delete(child);
      resolve({ code, signal, stdout, stderr, timedOut, ms: performance.now() - t0 });
    });
  });
}

/** Sends SIGKILL to the process group this runner started for one job (never anything else). */
function killGroup(child) {
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // The group has already exited.
  }
}

// An interrupted run ends the files it started rather than leaving them running without a terminal.
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    for (const c of running) killGroup(c);
    process.exit(130);
  });
}

/** Runs `queue` with at most `jobs` at once, reporting each as it ends. */
async function pool(queue) {
  const next = async () => {
    for (let job = queue.shift(); job; job = queue.shift()) report(job, await runJob(job));
  };
  await Promise.all(Array.from({ length: Math.min(jobs, queue.length) }, next));
}

const durations = [];
const queue = [];
const t0 = performance.now();
if (!e2eOnly) {
  queue.push({ label: 'unit', title: 'unit tests', cmd: process.execPath, args: [uvu, 'dist/test/unit', filter ? `${filter}[^/]*\\.test\\.js$` : '\\.test\\.js$', ...uvuArgs], env: process.env });
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
    const e2e = (f, label, title, env) => ({ label, title, cmd: process.execPath, args: ['scripts/sandbox.mjs', process.execPath, uvu, 'dist/test/e2e', `^${f.replace(/\./g, '\\.')}$`, ...uvuArgs], env });
    // The first pass runs every file on the default firewall backend, as a user gets it: native
    // nf_tables where the kernel has it (src/firewall/registry.ts), else iptables-restore. A
    // TSNETLINK_FIREWALL given to the runner is passed on unchanged.
    const { kernelHas } = await import('../dist/test/kernel.js');
    const e2eJobs = files.map((f) => e2e(f, f, `e2e ${f} (own sandbox)`, process.env));
    // Every bridge-network file once more on the other backend (iptables-restore, with
    // iptables-save as the oracle: test/e2e/fw-oracle.ts): the CLI's file too (its processes
    // inherit $TSNETLINK_FIREWALL), dual-stack, and the CRI file (its plugin shim passes
    // $TSNETLINK_FIREWALL on to every plugin call containerd makes), and the engine's (drift repair
    // of the other backend's rules).
    const native = ['bridge', 'bridge-async', 'bridge-concurrency', 'bridge-errors', 'isolation', 'reconcile', 'crash', 'race', 'dualstack', 'cli', 'cri', 'cni', 'hostport-listener', 'bandwidth', 'engine'].map((n) => `${n}.e2e.test.js`);
    // A rerun needs what the kernel may lack (nf_tables; x_tables for the legacy tools): asked of
    // the kernel (test/kernel.ts), and where it lacks it each rerun is named as not applicable.
    const rerun = (list, feature, tag, title, env) => {
      const cap = kernelHas(feature);
      for (const f of list) {
        if (cap.ok) e2eJobs.push(e2e(f, `${f} [${tag}]`, `e2e ${f} ${title} (own sandbox)`, { ...process.env, ...env }));
        else notApplicable.push({ file: f, test: `every test, ${title}`, why: `${cap.config} (${cap.reason})`, label: `${f} [${tag}]` });
      }
    };
    const defaultNft = process.env.TSNETLINK_FIREWALL ? process.env.TSNETLINK_FIREWALL === 'nftables' : kernelHas('nftables').ok;
    if (defaultNft) rerun(files.filter((x) => native.includes(x)), 'nftables', 'iptables', 'with the iptables backend (iptables-nft)', { TSNETLINK_FIREWALL: 'iptables' });
    else if (spawnSync('sh', ['-c', 'command -v nft']).status === 0) {
      rerun(files.filter((x) => native.includes(x)), 'nftables', 'nftables', 'with the nftables backend', { TSNETLINK_FIREWALL: 'nftables' });
    }
    // The seed scenario once more on the legacy iptables tools (iptables-restore is iptables-nft here).
    const legacy = 'bridge.e2e.test.js';
    if (files.includes(legacy) && spawnSync('sh', ['-c', 'command -v iptables-legacy-restore']).status === 0) {
      rerun([legacy], 'iptables-legacy', 'iptables-legacy', 'with iptables-legacy', { TSNETLINK_FIREWALL: 'iptables', TSNETLINK_IPTABLES_RESTORE: 'iptables-legacy-restore' });
    }
    queue.push(...e2eJobs);
  }
}
// The longest first: the pool then ends with short files filling in, not one long file alone.
queue.sort((a, b) => estimate(b.label) - estimate(a.label));
console.log(`${queue.length} test processes, ${jobs} at a time${stress ? ', stress counts (TSNETLINK_STRESS=1)' : ''}`);
await pool(queue);
const totalMs = performance.now() - t0;

if (!filter && !stress) {
  try {
    mkdirSync(join('node_modules', '.cache', 'tsnetlink'), { recursive: true });
    writeFileSync(timesFile, JSON.stringify({ ...lastTimes, ...Object.fromEntries(durations.map((d) => [d.label, Math.round(d.ms)])) }));
  } catch {
    // Only the order of the next run depends on it.
  }
}
if (durations.length > 1) {
  console.log('\nDurations (s):');
  for (const d of [...durations].sort((a, b) => b.ms - a.ms)) console.log(`  ${(d.ms / 1000).toFixed(1).padStart(7)}  ${d.label}${d.timedOut ? ' (killed at the deadline)' : ''}`);
}
if (notApplicable.length) {
  console.log(`\nNot applicable on this kernel (each ran its code path on captured bytes instead):`);
  for (const n of notApplicable) console.log(`  ${n.label}: ${n.test}: ${n.why}`);
}
const notRun = [notApplicable.length ? `${notApplicable.length} not applicable` : '', skipped ? `${skipped} skipped` : '', skippedFiles ? `${skippedFiles} end-to-end files not run (need root)` : ''].filter(Boolean);
console.log(`\nTotal time ${(totalMs / 1000).toFixed(1)} s with ${jobs} at a time`);
console.log(`\n${passed} passed, ${failed} failed${notRun.length ? `, ${notRun.join(', ')}` : ''}`);
process.exit(failed > 0 ? 1 : 0);
