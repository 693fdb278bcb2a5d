// examples/rtnl.ts: a bridge, a veth whose peer is created inside a new netns, the peer configured
// from inside. Run it as root; it changes the network namespace it runs in (try it in a throwaway
// one: `node scripts/sandbox.mjs node dist/examples/rtnl.js`).
import { Rtnl, createNamedNetns, deleteNamedNetns, openRtnlIn, linkRequests, addrRequests, routeRequests } from 'tsnetlink';

const host = Rtnl.open(); // a NETLINK_ROUTE socket in this netns
const ns = createNamedNetns('c1'); // ip netns add c1
try {
  const br = host.linkAddBridge('br0', { up: true }); // ip link add br0 up type bridge
  host.addrAdd(br, '192.168.10.1/24'); // ip addr add 192.168.10.1/24 dev br0
  // One RTM_NEWLINK makes both ends, the peer already in c1 and named eth0:
  // ip link add veth0 master br0 up type veth peer name eth0 netns c1
  host.linkAddVeth('veth0', { name: 'eth0', netnsFd: ns.fd }, { master: br, up: true });
  // Inside c1: one pipelined batch in one sendto, each failure mapped to its own request
  // (the name eth0, which an address or a route carries as an ifindex, is looked up first).
  const c = openRtnlIn(ns); // setns, socket, setns back: the socket stays in c1
  try {
    c.batchOrThrow([
      linkRequests.setUpRequest('lo'),
      linkRequests.setUpRequest('eth0'),
      addrRequests.addAddrRequest('eth0', '192.168.10.2/24'),
      routeRequests.addRouteRequest({ gateway: '192.168.10.1', oif: 'eth0' }),
    ]);
    console.log(c.addrList({ family: 4 }).map((a) => `${a.address}/${a.prefix}`).join(' '));
  } finally {
    c.close();
  }
} finally {
  // Deleting the bridge and the veth (its peer goes with it) leaves the netns as it was.
  for (const l of ['veth0', 'br0']) if (host.linkList().some((x) => x.name === l)) host.linkDel(l);
  host.close();
  ns.close();
  deleteNamedNetns('c1'); // ip netns del c1
}
