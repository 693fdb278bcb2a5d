// examples/tc.ts: traffic control. A tbf limits what leaves veth0; what comes in on veth0 for
// 10.0.0.0/8 is redirected by a u32 filter's mirred action to an ifb, where an htb class limits
// it (the shape of the CNI bandwidth plugin). Run it as root; it changes the network namespace it
// runs in (try it in a throwaway one: `node scripts/sandbox.mjs node dist/examples/tc.js`).
import { Rtnl } from 'tsnetlink';

const rt = Rtnl.open();
try {
  rt.linkAddVeth('veth0', { name: 'veth1' }, { up: true }); // ip link add veth0 up type veth peer name veth1
  rt.linkAdd('ifb0', 'ifb'); // ip link add ifb0 type ifb
  rt.linkSetUp('ifb0');

  // tc qdisc add dev veth0 root handle 1: tbf rate 4mbit burst 32kb latency 50ms
  rt.qdiscAdd({ dev: 'veth0', handle: '1:', kind: 'tbf', tbf: { rate: '4mbit', burst: '32kb', latency: '50ms' } });
  // tc qdisc change dev veth0 root handle 1: tbf rate 8mbit burst 64kb latency 50ms: the same qdisc, new limits
  rt.qdiscChange({ dev: 'veth0', handle: '1:', kind: 'tbf', tbf: { rate: '8mbit', burst: '64kb', latency: '50ms' } });

  // tc qdisc add dev ifb0 root handle 1: htb default 10
  rt.qdiscAdd({ dev: 'ifb0', handle: '1:', kind: 'htb', htb: { defaultClass: 0x10 } });
  // tc class add dev ifb0 parent 1: classid 1:10 htb rate 2mbit ceil 3mbit
  rt.classAdd({ dev: 'ifb0', parent: '1:', classid: '1:10', kind: 'htb', htb: { rate: '2mbit', ceil: '3mbit' } });

  // tc qdisc add dev veth0 ingress
  rt.qdiscAdd({ dev: 'veth0', kind: 'ingress' });
  // tc filter add dev veth0 parent ffff: protocol ip prio 1 u32 match ip dst 10.0.0.0/8 match ip protocol 6 0xff
  //   flowid 1:10 action mirred egress redirect dev ifb0
  rt.filterAdd({
    dev: 'veth0', parent: 'ffff:', protocol: 'ip', priority: 1,
    u32: { match: [{ dst: '10.0.0.0/8' }, { protocol: 'tcp' }], classid: '1:10', actions: [{ kind: 'mirred', action: 'egress-redirect', dev: 'ifb0' }] },
  });

  // tc qdisc show dev veth0; tc class show dev ifb0; tc filter show dev veth0 parent ffff:
  for (const q of rt.qdiscList({ dev: 'veth0' })) console.log(`qdisc ${q.kind} ${q.handleText}${q.tbf ? ` rate ${q.tbf.rate * 8} bit/s burst ${q.tbf.burst} bytes` : ''}`);
  for (const c of rt.classList('ifb0')) if (c.htb) console.log(`class ${c.kind} ${c.handleText} rate ${c.htb.rate * 8} ceil ${c.htb.ceil * 8} bit/s`);
  const hex = (n = 0) => n.toString(16).padStart(8, '0');
  const names = new Map(rt.linkList().map((l) => [l.index, l.name]));
  for (const f of rt.filterList('veth0', 'ffff:')) {
    if (!f.u32?.keys.length) continue; // u32 lists its hash table too
    const keys = f.u32.keys.map((k) => `match ${hex(k.val)}/${hex(k.mask)} at ${k.off}`).join(' ');
    const actions = f.u32.actions.map((a) => `${a.kind} ${a.mirred?.eaction} ${names.get(a.mirred?.ifindex ?? 0)}`);
    console.log(`filter u32 prio ${f.priority} ${keys} -> ${actions.join(', ')}`);
  }
} finally {
  // Deleting the links takes their qdiscs, classes and filters with them.
  for (const l of ['veth0', 'ifb0']) if (rt.linkList().some((x) => x.name === l)) rt.linkDel(l);
  rt.close();
}
