#!/usr/bin/env node
// Connect latency of two builds of tsnetlink, interleaved sample by sample in one process and one
// sandbox, so that both see the same machine at the same moment: the regression check between
// versions. Usage (as root):
//   git worktree add /tmp/old REV && (cd /tmp/old && npm ci && npx tsc -p tsconfig.json)
//   node scripts/sandbox.mjs node bench/tools/ab-connect.mjs /tmp/old/dist dist [samples] [--empty]
// --empty disconnects after every sample (a bridge with no endpoints); otherwise endpoints pile up.
// --ports publishes one host port per connect (connect -p); --firewall NAME gives both builds that
// backend (without it each takes its own default, which differs across versions).
const args = process.argv.slice(2);
const fwAt = args.indexOf('--firewall');
const firewall = fwAt >= 0 ? args[fwAt + 1] : undefined;
const [oldDist, newDist, n = '200'] = args.filter((a, i) => !a.startsWith('--') && !(fwAt >= 0 && i === fwAt + 1));
const empty = args.includes('--empty');
const ports = args.includes('--ports');
if (!oldDist || !newDist) {
  console.error('usage: ab-connect.mjs OLD_DIST NEW_DIST [samples] [--empty]');
  process.exit(2);
}
const A = await import(`${new URL(`file://${oldDist.startsWith('/') ? '' : `${process.cwd()}/`}${oldDist}/src/index.js`)}`);
const B = await import(`${new URL(`file://${newDist.startsWith('/') ? '' : `${process.cwd()}/`}${newDist}/src/index.js`)}`);
async function network(mod, name, subnet, dir) {
  const nets = new mod.Networks({ stateDir: dir, ...(firewall ? { firewall } : {}) });
  await nets.create({ name, subnet });
  return nets;
}
const sides = [
  { label: 'old', nets: await network(A, 'abold', '10.70.0.0/16', '/run/tsn-ab-old'), net: 'abold', ms: [] },
  { label: 'new', nets: await network(B, 'abnew', '10.71.0.0/16', '/run/tsn-ab-new'), net: 'abnew', ms: [] },
];
const keep = [];
for (let i = 0; i < Number(n); i++) {
  for (const s of i % 2 ? sides : [...sides].reverse()) {
    const ns = B.createAnonymousNetns();
    keep.push(ns);
    const t0 = performance.now();
    const ep = await s.nets.connect(s.net, ns, ports ? { ports: [`${s.label === 'old' ? 20000 + i : 40000 + i}:80`] } : {});
    s.ms.push(performance.now() - t0);
    if (empty) await s.nets.disconnect(s.net, ep.id);
  }
}
const p50 = (x) => [...x].sort((a, b) => a - b)[Math.floor(x.length / 2)];
const [o, w] = sides.map((s) => p50(s.ms));
console.log(`connect${ports ? ' -p' : ''}${firewall ? ` (${firewall})` : ''} p50 (${n} samples each, ${empty ? 'empty bridge' : 'endpoints accumulating'}): old ${o.toFixed(3)} ms, new ${w.toFixed(3)} ms, new/old ${(w / o).toFixed(3)}`);
for (const s of sides) await s.nets.remove(s.net, { force: true });
for (const ns of keep) ns.close();
