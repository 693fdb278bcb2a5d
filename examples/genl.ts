// examples/genl.ts: generic netlink: the ethtool family.
// Run it as root in a throwaway netns: `node scripts/sandbox.mjs node dist/examples/genl.js`.
import { Genl, ethtool } from 'tsnetlink';

const g = Genl.open();
try {
  const fam = g.family('ethtool');                             // genl ctrl get name ethtool
  console.log(fam.id, fam.version, Object.keys(fam.mcastGroups));
  const gro = ethtool.getFeatures(g, 'lo')['rx-gro'];          // ethtool -k lo
  console.log(gro);
  ethtool.setFeatures(g, 'lo', { 'rx-gro': false });           // ethtool -K lo gro off
  console.log(ethtool.getFeatures(g, 'lo')['rx-gro']?.wanted);
  ethtool.setFeatures(g, 'lo', { 'rx-gro': gro?.wanted ?? true }); // back as it was
} finally {
  g.close();
}
