// examples/objects.ts: every rtnetlink object, each call named after its ip/bridge equivalent.
// Run it as root in a throwaway netns: `node scripts/sandbox.mjs node dist/examples/objects.js`.
import { Rtnl } from 'tsnetlink';

const rt = Rtnl.open();
try {
  const v0 = rt.linkAddVeth('v0', { name: 'v1' }, { up: true });
  rt.linkSetUp('v1');
  rt.addrAdd(v0, '10.1.0.1/24', { validLft: 3600, preferredLft: 1800 });   // valid_lft 3600 preferred_lft 1800
  // ip route add 10.5.0.0/24 nexthop via 10.1.0.5 dev v0 weight 2 nexthop via 10.1.0.6 dev v0
  rt.routeAdd({ dst: '10.5.0.0/24', nexthops: [{ gateway: '10.1.0.5', oif: v0, weight: 2 }, { gateway: '10.1.0.6', oif: 'v0' }] });
  // ip route add 10.6.0.0/24 via 10.1.0.5 dev v0 mtu lock 1300 initcwnd 10
  rt.routeAdd({ dst: '10.6.0.0/24', gateway: '10.1.0.5', oif: 'v0', metrics: { mtu: 1300, lock: ['mtu'], initcwnd: 10 } });
  rt.nexthopAdd({ id: 7, gateway: '10.1.0.5', oif: 'v0' });                // ip nexthop add id 7 via 10.1.0.5 dev v0
  rt.routeAdd({ dst: '10.7.0.0/24', nhid: 7 });                             // ip route add 10.7.0.0/24 nhid 7
  rt.neighAdd({ dst: '10.1.0.5', lladdr: '02:00:00:00:00:05', link: 'v0' }); // ip neigh add ... lladdr ... dev v0
  rt.ruleAdd({ priority: 100, src: '10.1.0.0/24', table: 100 });            // ip rule add prio 100 from 10.1.0.0/24 table 100
  for (const r of rt.routeList({ family: 4 })) {
    console.log(r.dst, r.protocolName, r.nexthops?.map((h) => `${h.gateway} weight ${h.weight}`) ?? r.gateway ?? '', r.metrics ?? '');
  }
  // Every family: MPLS and multicast routes come in their own shapes, and a message no decoder
  // can read is kept in `undecodable` with its bytes instead of failing the dump.
  const all = rt.routeList({ table: 0 });
  console.log(all.length, 'routes,', all.undecodable.length, 'undecodable');
  console.log(rt.neighList({ link: 'v0' }).map((n) => `${n.dst} ${n.lladdr} ${n.states}`));
} finally {
  // Deleting v0 takes v1 and every address, route, nexthop and neighbour on them; the rule goes apart.
  if (rt.ruleList().some((r) => r.priority === 100)) rt.ruleDel({ priority: 100 });
  if (rt.linkList().some((l) => l.name === 'v0')) rt.linkDel('v0');
  rt.close();
}
