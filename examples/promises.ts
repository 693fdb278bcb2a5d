// examples/promises.ts: the promise API (rt.promises): veths made, changed and deleted concurrently,
// the event loop free while the kernel works. Run it as root in a throwaway netns:
// `node scripts/sandbox.mjs node dist/examples/promises.js`.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Rtnl } from 'tsnetlink';

const rt = Rtnl.open();
const p = rt.promises; // every Rtnl method, returning a promise (as fs.promises is to fs)
try {
  // In flight together on one socket: queued, sent pipelined, each ack matched to its own call.
  const links = await Promise.all(['a', 'b', 'c'].map((n) => p.linkAddVeth(`ex-${n}0`, { name: `ex-${n}1` }, { up: true })));
  console.log(links.map((l) => l.name).join(' '));
  // A refusal rejects only its own promise, with the NetlinkError the sync form would throw.
  const settled = await Promise.allSettled([p.linkSetMtu('ex-a0', 1400), p.linkAddVeth('ex-a0', { name: 'ex-z1' })]);
  console.log(settled.map((s) => (s.status === 'fulfilled' ? 'ok' : s.reason.code)).join(' ')); // ok EEXIST
  // A veth delete waits for an RCU grace period inside the kernel; the event loop runs meanwhile.
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  await Promise.all(links.map((l) => p.linkDel(l.name)));
  delay.disable();
  const left = await p.linkList({ kind: 'veth' });
  console.log(`${left.length} veths left, longest event-loop delay ${(delay.max / 1e6).toFixed(1)} ms`);
  // A big table walked without keeping it: `each` is handed every route as it is decoded, and
  // the list comes back empty (a million routes take the memory of one datagram).
  let walked = 0;
  await p.routeList({ table: 0 }, { each: () => void walked++ });
  const kept = await p.routeList({ table: 0 });
  console.log(walked === kept.length ? 'each saw every route' : `each saw ${walked} of ${kept.length} routes`);
} finally {
  // On any path: what is left of ours goes (synchronously: nothing is in flight any more).
  for (const l of rt.linkList({ kind: 'veth' })) if (l.name.startsWith('ex-')) rt.linkDel(l.name);
  rt.close();
}
