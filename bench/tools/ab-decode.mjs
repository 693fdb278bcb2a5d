#!/usr/bin/env node
// Decoding a link dump with two builds of tsnetlink, interleaved round by round in one process:
// the whole attribute tree (decodePayload with the link schema, what Link.raw holds) and the Link
// view (decodeLink, what linkList returns). The dump is captured once, from 1000 veth pairs made
// in a throwaway netns, so both builds decode the same bytes; the kernel takes no part in the
// timing. Usage (as root, in the sandbox):
//   git worktree add /tmp/old REV && (cd /tmp/old && npm ci && npm run build)
//   node scripts/sandbox.mjs node bench/tools/ab-decode.mjs /tmp/old/dist dist [rounds]
const [oldDist, newDist, rounds = '40'] = process.argv.slice(2);
if (!oldDist || !newDist) {
  console.error('usage: ab-decode.mjs OLD_DIST NEW_DIST [rounds]');
  process.exit(2);
}
const at = (dist, file) => new URL(`file://${dist.startsWith('/') ? '' : `${process.cwd()}/`}${dist}/src/${file}`).href;

async function build(label, dist) {
  const { decodePayload } = await import(at(dist, 'netlink/core/message.js'));
  const { linkMessage } = await import(at(dist, 'netlink/route/schemas.js'));
  const { decodeLink } = await import(at(dist, 'netlink/route/link.js'));
  return { label, tree: (p) => decodePayload(linkMessage, p), view: (p) => decodeLink({ len: 0, type: 16, flags: 0, seq: 0, pid: 0, payload: p }), ms: { tree: [], view: [] } };
}

// The capture: the new build's own socket, in a netns made and deleted here.
const N = await import(at(newDist, 'index.js'));
const ns = N.createNamedNetns('tsn-ab-decode');
const payloads = [];
try {
  const rt = N.openRtnlIn(ns, { receiveBufferSize: 8 << 20 });
  try {
    for (let i = 0; i < 1000; i += 500) rt.batchOrThrow(Array.from({ length: 500 }, (_, j) => N.linkRequests.addVethRequest(`a${i + j}`, { name: `b${i + j}` })));
    rt.socket.dump(N.linkRequests.dumpRequest(), (m) => void payloads.push(Buffer.from(m.payload)));
  } finally {
    rt.close();
  }
} finally {
  ns.close();
  N.deleteNamedNetns('tsn-ab-decode');
}

const sides = [await build('old', oldDist), await build('new', newDist)];
// Five copies of the dump a round, so that a round lasts tens of milliseconds.
const all = Array.from({ length: 5 }, () => payloads).flat();
for (let r = 0; r < Number(rounds); r++) {
  for (const s of r % 2 ? sides : [...sides].reverse()) {
    for (const kind of ['tree', 'view']) {
      const t = performance.now();
      for (const p of all) s[kind](p);
      s.ms[kind].push(performance.now() - t);
    }
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
console.log(`decoding ${all.length} captured RTM_NEWLINK messages (${payloads.length} links, 5 times), ${rounds} interleaved rounds, median per link:`);
for (const kind of ['tree', 'view']) {
  const [o, n] = sides.map((s) => (median(s.ms[kind]) / all.length) * 1000);
  console.log(`  ${kind === 'tree' ? 'every attribute (decodePayload)' : 'Link view (decodeLink)'}: old ${o.toFixed(2)} us, new ${n.toFixed(2)} us, new/old ${(n / o).toFixed(2)}`);
}
