// examples/conntrack.ts: the conntrack table, as conntrack -L/-G/-D/-F/-C use it. An nft rule that
// asks for connection state makes the kernel track a UDP exchange on lo, which is then listed,
// looked up and deleted. Run it as root; it changes the network namespace it runs in (try it in a
// throwaway one: `node scripts/sandbox.mjs node dist/examples/conntrack.js`).
import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import { Conntrack, Rtnl } from 'tsnetlink';

const rt = Rtnl.open();
rt.linkSetUp('lo'); // ip link set lo up
rt.close();
// nft add table inet ctdemo; nft add chain inet ctdemo out '{ type filter hook output priority 0; }';
// nft add rule inet ctdemo out ct state new counter
execFileSync('nft', ['-f', '-'], { input: 'table inet ctdemo {\n  chain out { type filter hook output priority 0; ct state new counter; }\n}\n' });

const server = dgram.createSocket('udp4');
const client = dgram.createSocket('udp4');
const ct = Conntrack.open();
try {
  await new Promise((resolve) => server.bind(5353, '127.0.0.1', () => resolve(undefined)));
  await new Promise((resolve) => client.bind(40000, '127.0.0.1', () => resolve(undefined)));
  await new Promise((resolve) => client.send('ping', 5353, '127.0.0.1', resolve));

  // conntrack -L -f ipv4 -p udp --dport 5353
  for (const e of ct.list({ family: 4, protocol: 'udp', orig: { dstPort: 5353 } })) {
    console.log(e.protocolName, `${e.orig.src}:${e.orig.srcPort} -> ${e.orig.dst}:${e.orig.dstPort}`, e.statusNames.join(','));
  }
  // conntrack -G -p udp -s 127.0.0.1 -d 127.0.0.1 --sport 40000 --dport 5353 (undefined when absent)
  const one = ct.get({ protocol: 'udp', src: '127.0.0.1', dst: '127.0.0.1', srcPort: 40000, dstPort: 5353 });
  console.log('get:', one !== undefined);
  // conntrack -D -p udp --dport 5353: one dump, then the deletes pipelined; returns how many went
  console.log('deleted:', ct.delete({ protocol: 'udp', orig: { dstPort: 5353 } }));
  ct.flush({ family: 6 }); // conntrack -F -f ipv6
  console.log('left for port 5353:', ct.list({ protocol: 'udp', orig: { dstPort: 5353 } }).length); // conntrack -L ... | wc -l
} finally {
  ct.close();
  client.close();
  server.close();
  execFileSync('nft', ['delete', 'table', 'inet', 'ctdemo']); // nft delete table inet ctdemo
}
