#!/usr/bin/env node
// Many CLI `connect -p` processes started at once against one quiet network, as a runtime starting
// a burst of containers does: each process's time from spawn to exit (p50, p99) and the wall time
// of the burst. Given two builds, their bursts alternate round by round in one sandbox, each in a
// host network namespace, state directory and network of its own (so that one build's prune or
// repair never meets the other's rules), so both see the same machine: the regression check for
// concurrency between versions (more than two builds take turns the same way). Each container is a sleeping process in a named netns, given to
// the CLI by its PID (a release from before netns paths took a PID only). With --mix, each burst
// also runs 20 disconnects, 10 `network repair` and 5 `network prune` at once, as race.e2e does.
// The disconnects that undo each burst (also all at once) are timed too; with --n 1 the figures
// are those of a single CLI connect -p and disconnect, the builds taking turns.
// Usage (as root):
//   node scripts/sandbox.mjs node bench/tools/parallel-connect.mjs dist/bundle/tsnetlink.js [OTHER/dist/bundle/tsnetlink.js ...] [--n 40] [--rounds 4] [--mix]
import { spawn, execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const clis = args.filter((a, i) => !a.startsWith('--') && !(args[i - 1]?.startsWith('--') && args[i - 1] !== '--mix'));
const N = opt('n', 40);
const ROUNDS = opt('rounds', 4);
const MIX = args.includes('--mix');
const D = MIX ? 20 : 0;
if (clis.length === 0 || process.env.TSNETLINK_IN_SANDBOX !== '1') {
  console.error('usage (in a sandbox): node scripts/sandbox.mjs node bench/tools/parallel-connect.mjs CLI_BUNDLE [OTHER_CLI_BUNDLE] [--n 40] [--rounds 4] [--mix]');
  process.exit(2);
}

/** Failed processes: a failure is counted and named at the end, and its time left out. */
const failures = [];
/** Runs one process to its end; resolves to its wall time in ms, or undefined when it failed. */
function timed(cmd, argv) {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const p = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    p.on('close', (code) => {
      if (code === 0) return resolve(performance.now() - t0);
      failures.push(`${argv.slice(2, 5).join(' ')} ${argv.slice(5).join(' ')}: exit ${code}: ${err.trim()}`);
      resolve(undefined);
    });
  });
}

/** One sleeper per named netns; resolves once it is inside (ip netns exec has exec'd into sleep). */
async function sleeper(ns) {
  execFileSync('ip', ['netns', 'add', ns]);
  const p = spawn('ip', ['netns', 'exec', ns, 'sleep', '100000'], { stdio: 'ignore' });
  const want = statSync(`/run/netns/${ns}`).ino;
  for (let t = 0; statSync(`/proc/${p.pid}/ns/net`).ino !== want; t++) {
    if (t > 2000) throw new Error(`sleeper ${p.pid} never entered ${ns}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return p;
}

/**
 * CPU time (ms) of this process's children that have ended, their own children included (each
 * waited for its tools): a burst's CPU is the difference across it, which a busy machine stretches
 * far less than the wall time.
 */
function childrenCpuMs() {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[13]) + Number(f[14])) * 1000) / 100; // cutime, cstime in USER_HZ (100)
}

const sides = clis.map((cli, k) => ({ cli, k, host: `pchost${k}`, net: `pc${k}`, dir: `/run/tsn-pc${k}`, subnet: `10.${80 + k}.0.0/16`, ms: [], disc: [], walls: [], cpus: [], boxes: [], extra: [] }));
/** The CLI of a side as a process in that side's host netns. */
const cliArgs = (s, ...rest) => [`--net=/run/netns/${s.host}`, process.execPath, s.cli, ...rest];
const run = (s, ...rest) => timed('nsenter', cliArgs(s, ...rest));
const all = [];
try {
  for (const s of sides) {
    execFileSync('ip', ['netns', 'add', s.host]);
    execFileSync('ip', ['-n', s.host, 'link', 'set', 'lo', 'up']);
    execFileSync('nsenter', cliArgs(s, 'network', 'create', '--state-dir', s.dir, '--subnet', s.subnet, s.net), { stdio: 'ignore' });
    for (let i = 0; i < N; i++) all.push((s.boxes[i] = await sleeper(`pc${s.k}-${i}`)));
    for (let i = 0; i < D; i++) all.push((s.extra[i] = await sleeper(`pd${s.k}-${i}`)));
  }
  for (let r = 0; r < ROUNDS; r++) {
    for (const s of r % 2 ? [...sides].reverse() : sides) {
      await Promise.all(s.extra.map((b, i) => run(s, 'connect', '--state-dir', s.dir, '-net', s.net, '-p', `${30000 + i}:80`, String(b.pid))));
      const t0 = performance.now();
      const c0 = childrenCpuMs();
      const connects = s.boxes.map((b, i) => run(s, 'connect', '--state-dir', s.dir, '-net', s.net, '-p', `${20000 + i}:80`, String(b.pid)));
      const others = [
        ...s.extra.map((b) => run(s, 'disconnect', '--state-dir', s.dir, '-net', s.net, String(b.pid))),
        ...Array.from({ length: MIX ? 10 : 0 }, () => run(s, 'network', 'repair', '--state-dir', s.dir)),
        ...Array.from({ length: MIX ? 5 : 0 }, () => run(s, 'network', 'prune', '--state-dir', s.dir)),
      ];
      const [ms] = await Promise.all([Promise.all(connects), Promise.all(others)]);
      s.walls.push(performance.now() - t0);
      s.cpus.push(childrenCpuMs() - c0);
      s.ms.push(...ms.filter((x) => x !== undefined));
      const disc = await Promise.all(s.boxes.map((b) => run(s, 'disconnect', '--state-dir', s.dir, '-net', s.net, String(b.pid))));
      s.disc.push(...disc.filter((x) => x !== undefined));
    }
  }
} finally {
  for (const s of sides) {
    try {
      execFileSync('nsenter', cliArgs(s, 'network', 'rm', '--force', '--state-dir', s.dir, s.net), { stdio: 'ignore' });
    } catch {
      /* the sandbox drops it anyway */
    }
  }
  for (const p of all) p.kill();
  // The named netns go too, so that the tool can run again in the same sandbox.
  for (const s of sides) {
    for (const ns of [s.host, ...s.boxes.map((_, i) => `pc${s.k}-${i}`), ...s.extra.map((_, i) => `pd${s.k}-${i}`)]) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        /* never made */
      }
    }
  }
}
const pct = (x, q) => [...x].sort((a, b) => a - b)[Math.min(x.length - 1, Math.floor(q * x.length))];
const what = `${N} parallel connect -p${MIX ? ` beside ${D} disconnects, 10 repairs, 5 prunes` : ''} x ${ROUNDS} rounds`;
for (const s of sides) {
  console.log(`${s.cli}: ${what}: per process p50 ${pct(s.ms, 0.5).toFixed(1)} ms, p99 ${pct(s.ms, 0.99).toFixed(1)} ms; burst wall p50 ${pct(s.walls, 0.5).toFixed(0)} ms, CPU of a burst p50 ${pct(s.cpus, 0.5).toFixed(0)} ms; the ${N} disconnects after each burst (also at once) p50 ${pct(s.disc, 0.5).toFixed(1)} ms, p99 ${pct(s.disc, 0.99).toFixed(1)} ms`);
}
const [a] = sides;
for (const [i, b] of sides.entries()) {
  if (i === 0) continue;
  console.log(`${i === 1 ? 'second' : `build ${i + 1}`} / first: p50 ${(pct(b.ms, 0.5) / pct(a.ms, 0.5)).toFixed(2)}x, p99 ${(pct(b.ms, 0.99) / pct(a.ms, 0.99)).toFixed(2)}x, burst wall ${(pct(b.walls, 0.5) / pct(a.walls, 0.5)).toFixed(2)}x, burst CPU ${(pct(b.cpus, 0.5) / pct(a.cpus, 0.5)).toFixed(2)}x, disconnect p50 ${(pct(b.disc, 0.5) / pct(a.disc, 0.5)).toFixed(2)}x`);
}
if (failures.length > 0) console.log(`${failures.length} processes failed (left out of the figures), e.g.:\n  ${failures.slice(0, 5).join('\n  ')}`);
console.log(`load average at the end: ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
