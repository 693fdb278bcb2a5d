#!/usr/bin/env node
// Event-loop stalls during disconnects one after another, for two builds of tsnetlink taking turns
// round by round in one process and one sandbox. A 1 ms timer records the gaps between its runs
// (less the 1 ms asked for: the stall) and the CPU the JS thread used within each
// (clock_gettime CLOCK_THREAD_CPUTIME_ID): a gap with little CPU is the thread waiting (for a
// CPU a worker thread's kernel work holds, or for a late timer), one with much is its own work.
// A stretch of X ms of the JS thread's work shows as X ms of CPU in one interval and a stall of
// X - 1 ms (the timer asked for 1 ms), so a CPU figure under 3 ms is a busy stretch under 2 ms.
// Each container has a tracked UDP flow, so every disconnect flushes conntrack as in use.
// --mix: as many fresh containers are connected one after another beside the disconnects (a
// connect's requests can wait for the RTNL lock a deletion holds).
// Usage (as root; NEW_DIST must have sys/libc.js's threadCpuNs):
//   git worktree add /tmp/old REV && (cd /tmp/old && npm ci && npm run build)
//   node scripts/sandbox.mjs node --expose-gc bench/tools/ab-disconnect-stalls.mjs /tmp/old/dist dist [rounds] [--per N] [--mix]
import { createSocket } from 'node:dgram';

const args = process.argv.slice(2);
const perAt = args.indexOf('--per');
const mix = args.includes('--mix');
const per = perAt >= 0 ? Number(args[perAt + 1]) : 25;
const [oldDist, newDist, rounds = '4'] = args.filter((a, i) => !a.startsWith('--') && !(perAt >= 0 && i === perAt + 1));
if (!oldDist || !newDist) {
  console.error('usage: ab-disconnect-stalls.mjs OLD_DIST NEW_DIST [rounds] [--per N]');
  process.exit(2);
}
const url = (dist, file) => new URL(`file://${dist.startsWith('/') ? '' : `${process.cwd()}/`}${dist}/src/${file}`).href;
const A = await import(url(oldDist, 'index.js'));
const B = await import(url(newDist, 'index.js'));
const { threadCpuNs } = await import(url(newDist, 'sys/libc.js'));

async function side(label, mod, subnet) {
  const nets = new mod.Networks({ stateDir: `/run/tsn-ab-${label}` });
  await nets.create({ name: `ab${label}`, subnet });
  return { label, mod, nets, net: `ab${label}`, made: 0, gaps: [], cpus: [], ops: 0, warm: 0 };
}
const sides = [await side('old', A, '10.72.0.1/16'), await side('new', B, '10.73.0.1/16')];

/** Connects `per` fresh containers of one side, each with a tracked UDP flow. */
async function connect(s) {
  const names = Array.from({ length: per }, () => `ab${s.label}${s.made++}`);
  for (const name of names) s.mod.createNamedNetns(name).close();
  const recs = await s.nets.connectMany(s.net, names.map((name) => ({ container: { name } })));
  const sock = createSocket('udp4');
  await new Promise((resolve) => sock.bind(0, resolve));
  for (const r of recs) await new Promise((resolve) => sock.send('x', 9, r.ip, resolve));
  await new Promise((resolve) => sock.close(resolve));
  return { names, recs };
}

/** Disconnects one after another while the timer samples; its gaps and CPU go to the side's lists. */
async function measure(s, recs) {
  globalThis.gc?.();
  await new Promise((r) => setTimeout(r, 20));
  let on = true;
  let prevT = performance.now();
  let prevC = threadCpuNs();
  let timer;
  const tick = () => {
    const t = performance.now();
    const c = threadCpuNs();
    s.gaps.push(t - prevT - 1);
    s.cpus.push((c - prevC) / 1e6);
    prevT = t;
    prevC = c;
    if (on) timer = setTimeout(tick, 1);
  };
  timer = setTimeout(tick, 1);
  const fresh = mix ? Array.from({ length: recs.length }, () => `ab${s.label}${s.made++}`) : [];
  for (const name of fresh) s.mod.createNamedNetns(name).close();
  await Promise.all([
    (async () => {
      for (const r of recs) await s.nets.disconnect(s.net, r.id);
    })(),
    (async () => {
      for (const name of fresh) await s.nets.connect(s.net, { name });
    })(),
  ]);
  s.ops += recs.length;
  // Where the first round's samples end: its code ran for the first time (V8 compiles a function
  // at its first call), and the later rounds show the steady state.
  if (!s.warm) s.warm = s.cpus.length;
  // One more run of the timer, so a stall at the very end is sampled too.
  await new Promise((r) => setTimeout(r, 3));
  on = false;
  clearTimeout(timer);
  // The containers connected meanwhile go, untimed.
  for (const e of (await s.nets.inspect(s.net)).endpoints) await s.nets.disconnect(s.net, e.id);
  return fresh;
}

try {
  for (let i = 0; i < Number(rounds); i++) {
    for (const s of i % 2 ? sides : [...sides].reverse()) {
      const { names, recs } = await connect(s);
      const fresh = await measure(s, recs);
      for (const name of [...names, ...fresh]) s.mod.deleteNamedNetns(name);
    }
  }
} finally {
  for (const s of sides) {
    await s.nets.remove(s.net, { force: true });
    s.nets.close();
  }
}
const count = (xs, over) => xs.filter((x) => x > over).length;
const pct = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * q))] ?? NaN;
console.log(`disconnects one after another${mix ? ', as many connects one after another beside them' : ''}, ${rounds} rounds of ${per} per build, interleaved; per 100 disconnects:`);
for (const s of sides) {
  const k = 100 / s.ops;
  console.log(
    `  ${s.label}: stalls over 2 ms ${(count(s.gaps, 2) * k).toFixed(1)}, over 3 ms ${(count(s.gaps, 3) * k).toFixed(1)}; ` +
      `timer intervals with over 1.5 ms of JS-thread CPU ${(count(s.cpus, 1.5) * k).toFixed(1)}, over 2 ms ${(count(s.cpus, 2) * k).toFixed(1)}; ` +
      `longest stall ${Math.max(...s.gaps).toFixed(2)} ms (p99 ${pct(s.gaps, 0.99).toFixed(2)}), most CPU in one interval ${Math.max(...s.cpus).toFixed(2)} ms` +
      (Number(rounds) > 1 ? `; after the first round: most CPU in one interval ${Math.max(...s.cpus.slice(s.warm)).toFixed(2)} ms, p99 ${pct(s.cpus.slice(s.warm), 0.99).toFixed(2)} ms` : ''),
  );
}
