// examples/families.ts: the promise form of the other families: ipset, XFRM, conntrack, generic
// netlink and sock_diag calls in flight together on their handles, the event loop free meanwhile.
// Run it as root in a throwaway netns: `node scripts/sandbox.mjs node dist/examples/families.js`.
import { Conntrack, Genl, Ipset, SockDiag, Xfrm } from 'tsnetlink';

const sets = Ipset.open();
const xfrm = Xfrm.open();
const ct = Conntrack.open();
const genl = Genl.open();
const diag = SockDiag.open();
const sel = { src: '10.1.0.0/24', dst: '10.2.0.0/24' };
try {
  // Each handle's `promises` has the handle's methods (as fs.promises has fs's), on the same socket.
  await sets.promises.create({ name: 'ex-blocked', type: 'hash:ip' }); // ipset create ex-blocked hash:ip
  let turned = false;
  setImmediate(() => (turned = true));
  const [ethtool] = await Promise.all([
    genl.promises.family('ethtool'),                                      // genl ctrl get name ethtool
    xfrm.promises.policyAdd({ sel, dir: 'out' }),                          // ip xfrm policy add ... dir out
    ...['192.0.2.1', '192.0.2.2', '192.0.2.3'].map((a) => sets.promises.add('ex-blocked', a)),
  ]);
  const [[set], policies, tracked, listeners] = await Promise.all([
    sets.promises.list('ex-blocked'),                                      // ipset list ex-blocked
    xfrm.promises.policyList(),                                            // ip xfrm policy list
    ct.promises.count(),                                                   // conntrack -C
    diag.promises.socketList({ family: 4, protocol: 'tcp', states: ['listen'] }), // ss -ltn4
  ]);
  console.log(ethtool.name, set?.members.map((m) => m.text).sort().join(' '), policies.length, tracked, listeners.length);
  console.log(`the event loop turned meanwhile: ${turned}`);
  await Promise.all([sets.promises.destroy('ex-blocked'), xfrm.promises.policyDelete({ sel, dir: 'out' })]);
} finally {
  // On any path: what is left of ours goes (synchronously: nothing is in flight any more).
  if (sets.names().includes('ex-blocked')) sets.destroy('ex-blocked');
  if (xfrm.policyList().some((p) => `${p.selector.src}/${p.selector.srcPrefix}` === sel.src && p.dir === 'out')) xfrm.policyDelete({ sel, dir: 'out' });
  for (const h of [sets, xfrm, ct, genl, diag]) h.close();
}
