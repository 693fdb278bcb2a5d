#!/usr/bin/env node
// The heap a kept list of decoded routes holds, per route, for a build of tsnetlink:
// 20,000 RTM_NEWROUTE messages (as `ip route add` sends them) in datagrams of 200, decoded with
// the build's decodeRoute and kept in an array, the heap measured after a full collection before
// and after. No root, no kernel. Give one build per run: builds measured in one process share
// its heap. Usage:
//   node --expose-gc bench/tools/route-memory.mjs dist; node --expose-gc bench/tools/route-memory.mjs /tmp/old/dist
const dists = process.argv.slice(2, 3);
if (dists.length === 0 || typeof globalThis.gc !== 'function') {
  console.error('usage: node --expose-gc bench/tools/route-memory.mjs DIST');
  process.exit(2);
}
const at = (dist, file) => new URL(`file://${dist.startsWith('/') ? '' : `${process.cwd()}/`}${dist}/src/${file}`).href;
const COUNT = 20_000;
for (const dist of dists) {
  const { encode, splitMessages, routeRequests } = await import(at(dist, 'index.js'));
  const { decodeRoute } = await import(at(dist, 'netlink/route/route.js'));
  const dgrams = [];
  for (let i = 0; i < COUNT; i += 200) {
    const msgs = [];
    for (let j = i; j < i + 200; j++) msgs.push(encode(routeRequests.addRouteRequest({ dst: `10.${(j >> 16) + 100}.${(j >> 8) & 255}.${j & 255}/32`, oif: 5, table: 100 }), j));
    dgrams.push(Buffer.concat(msgs));
  }
  gc();
  const before = process.memoryUsage().heapUsed;
  const list = [];
  // A fresh copy of each datagram, as a receive gives.
  for (const d of dgrams) for (const m of splitMessages(Buffer.from(d))) list.push(decodeRoute(m));
  globalThis.kept = list;
  gc();
  console.log(`${dist}: ${Math.round((process.memoryUsage().heapUsed - before) / list.length)} bytes a kept route (${COUNT} routes)`);
  globalThis.kept = undefined;
}
