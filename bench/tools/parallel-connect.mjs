#!/usr/bin/env node
// Many CLI `connect -p` processes started at once against one quiet network, as a runtime starting
// a burst of containers does: each process's time from spawn to exit (p50, p99) and the wall time
// of the burst. Given two builds, their bursts alternate round by round in one sandbox, each on a
// network and state directory of its own, so both see the same machine: the regression check for
// concurrency between versions. Each container is a sleeping process in a named netns, given to the
// CLI by its PID (a release from before netns paths took a PID only). Usage (as root):
//   node scripts/sandbox.mjs node bench/tools/parallel-connect.mjs dist/bundle/tsnetlink.js [OTHER/dist/bundle/tsnetlink.js] [--n 40] [--rounds 4]
import { spawn, execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const clis = args.filter((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'));
const N = opt('n', 40);
const ROUNDS = opt('rounds', 4);
if (clis.length === 0 || process.env.TSNETLINK_IN_SANDBOX !== '1') {
  console.error('usage (in a sandbox): node scripts/sandbox.mjs node bench/tools/parallel-connect.mjs CLI_BUNDLE [OTHER_CLI_BUNDLE] [--n 40] [--rounds 4]');
  process.exit(2);
}

/** Runs one process to its end; resolves to its wall time in ms, rejects on a non-zero exit. */
function timed(cmd, argv) {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    p.on('close', (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`${argv.slice(1, 4).join(' ')}: exit ${code}: ${err}`))));
  });
}

const sides = clis.map((cli, k) => ({ cli, net: `pc${k}`, dir: `/run/tsn-pc${k}`, subnet: `10.${80 + k}.0.0/16`, ms: [], walls: [] }));
for (const s of sides) execFileSync(process.execPath, [s.cli, 'network', 'create', '--state-dir', s.dir, '--subnet', s.subnet, s.net], { stdio: 'ignore' });
for (let i = 0; i < N; i++) execFileSync('ip', ['netns', 'add', `pc-${i}`]);
/** One sleeper per netns; its PID names the container. */
const sleepers = Array.from({ length: N }, (_, i) => spawn('ip', ['netns', 'exec', `pc-${i}`, 'sleep', '100000'], { stdio: 'ignore' }));
/** Waits until every sleeper has entered its netns (ip netns exec has exec'd into sleep). */
for (const [i, p] of sleepers.entries()) {
  const want = statSync(`/run/netns/pc-${i}`).ino;
  for (let t = 0; statSync(`/proc/${p.pid}/ns/net`).ino !== want; t++) {
    if (t > 2000) throw new Error(`sleeper ${p.pid} never entered pc-${i}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
const target = (i) => String(sleepers[i].pid);
try {
  for (let r = 0; r < ROUNDS; r++) {
    for (const s of r % 2 ? [...sides].reverse() : sides) {
      const t0 = performance.now();
      const ms = await Promise.all(Array.from({ length: N }, (_, i) => timed(process.execPath, [s.cli, 'connect', '--state-dir', s.dir, '-net', s.net, '-p', `${20000 + i}:80`, target(i)])));
      s.walls.push(performance.now() - t0);
      s.ms.push(...ms);
      await Promise.all(Array.from({ length: N }, (_, i) => timed(process.execPath, [s.cli, 'disconnect', '--state-dir', s.dir, '-net', s.net, target(i)])));
    }
  }
} finally {
  for (const s of sides) execFileSync(process.execPath, [s.cli, 'network', 'rm', '--force', '--state-dir', s.dir, s.net], { stdio: 'ignore' });
  for (const p of sleepers) p.kill();
  for (let i = 0; i < N; i++) execFileSync('ip', ['netns', 'del', `pc-${i}`]);
}
const pct = (x, q) => [...x].sort((a, b) => a - b)[Math.min(x.length - 1, Math.floor(q * x.length))];
for (const s of sides) {
  console.log(`${s.cli}: ${N} parallel connect -p x ${ROUNDS} rounds: per process p50 ${pct(s.ms, 0.5).toFixed(1)} ms, p99 ${pct(s.ms, 0.99).toFixed(1)} ms; burst wall p50 ${pct(s.walls, 0.5).toFixed(0)} ms`);
}
if (sides.length === 2) {
  const [a, b] = sides;
  console.log(`second / first: p50 ${(pct(b.ms, 0.5) / pct(a.ms, 0.5)).toFixed(2)}x, p99 ${(pct(b.ms, 0.99) / pct(a.ms, 0.99)).toFixed(2)}x, burst wall ${(pct(b.walls, 0.5) / pct(a.walls, 0.5)).toFixed(2)}x`);
}
