#!/usr/bin/env node
// A dump of 20,000 routes through the promise API (rt.promises.routeList), two builds of
// tsnetlink taking turns round by round in one process and one throwaway netns, each through a
// socket of its own: what a dump's receive path costs (worker-thread calls per part, decoding).
// The first two rounds of each build are left out (code running for the first time).
// Usage (as root, in the sandbox):
//   git worktree add /tmp/old REV && (cd /tmp/old && npm ci && npm run build)
//   node scripts/sandbox.mjs node bench/tools/ab-dump.mjs /tmp/old/dist dist [rounds]
const [oldDist, newDist, rounds = '16'] = process.argv.slice(2);
if (!oldDist || !newDist) {
  console.error('usage: ab-dump.mjs OLD_DIST NEW_DIST [rounds]');
  process.exit(2);
}
const at = (dist, file) => new URL(`file://${dist.startsWith('/') ? '' : `${process.cwd()}/`}${dist}/src/${file}`).href;
const ROUTES = 20_000;
const builds = [
  { label: 'old', M: await import(at(oldDist, 'index.js')), ms: [] },
  { label: 'new', M: await import(at(newDist, 'index.js')), ms: [] },
];
const N = builds[1].M;
const ns = N.createNamedNetns('tsn-ab-dump');
try {
  const rt = N.openRtnlIn(ns);
  try {
    rt.linkSetUp('lo');
    const reqs = Array.from({ length: ROUTES }, (_, i) => N.routeRequests.addRouteRequest({ dst: `10.${(i >> 8) & 255}.${i & 255}.0/24`, oif: 'lo', table: 100 }));
    const resolved = rt.resolve(reqs);
    for (let i = 0; i < resolved.length; i += 4096) rt.batchOrThrow(resolved.slice(i, i + 4096));
  } finally {
    rt.close();
  }
  const handles = builds.map((b) => ({ b, rt: b.M.openRtnlIn(ns) }));
  try {
    for (let r = 0; r < Number(rounds); r++) {
      for (const { b, rt: h } of r % 2 ? handles : [...handles].reverse()) {
        const t = performance.now();
        const list = await h.promises.routeList({ family: 4, table: 100 });
        b.ms.push(performance.now() - t);
        if (list.length !== ROUTES) throw new Error(`${b.label}: ${list.length} routes listed, ${ROUTES} added`);
      }
    }
  } finally {
    for (const { rt: h } of handles) h.close();
  }
} finally {
  ns.close();
  N.deleteNamedNetns('tsn-ab-dump');
}
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const [o, n] = builds.map((b) => median(b.ms.slice(2)));
console.log(`rt.promises.routeList of ${ROUTES} routes, ${rounds} interleaved rounds (the first two left out), median: old ${o.toFixed(1)} ms, new ${n.toFixed(1)} ms, new/old ${(n / o).toFixed(2)}`);
