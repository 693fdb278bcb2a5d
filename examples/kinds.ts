// examples/kinds.ts: link kinds with typed options, and a kind of your own.
// Run it as root in a throwaway netns: `node scripts/sandbox.mjs node dist/examples/kinds.js`.
import { Rtnl, registerLinkKind, attrs } from 'tsnetlink';

const rt = Rtnl.open();
try {
  rt.linkAddVeth('u0', { name: 'u1' }, { up: true });
  // ip link add vx0 type vxlan id 42 local 10.1.0.1 dstport 4789 dev u0 nolearning
  const vx = rt.linkAdd('vx0', 'vxlan', { id: 42, local: '10.1.0.1', port: 4789, link: 'u0', learning: 0 });
  rt.fdbAppend({ lladdr: '00:00:00:00:00:00', link: vx, dst: '10.1.0.2' });  // bridge fdb append ... dev vx0 dst 10.1.0.2
  const mv = rt.linkAdd('mv0', 'macvlan', { mode: 'bridge' }, { link: 'u0' }); // ip link add mv0 link u0 type macvlan mode bridge
  const tap = rt.tuntapAdd('tap0', { mode: 'tap' });                          // ip tuntap add tap0 mode tap
  console.log(vx.options?.id, mv.options?.mode, mv.parentIndex, tap.options?.type);
  // A kind of your own: its IFLA_INFO_DATA schema (and, in TypeScript, its options type).
  registerLinkKind({ kind: 'vcan', data: { mtuHint: attrs.attr(1, attrs.u32) } });
} finally {
  const left = new Set(rt.linkList().map((l) => l.name));
  for (const l of ['vx0', 'mv0', 'tap0', 'u0']) if (left.has(l)) rt.linkDel(l);
  rt.close();
}
