// examples/dualstack.ts: a dual-stack network (IPv4 and IPv6 side by side) and a port published on both.
// Run it as root in a throwaway netns: `node scripts/sandbox.mjs node dist/examples/dualstack.js`.
import net from 'node:net';
import { once } from 'node:events';
import { Networks, createAnonymousNetns, withNetns } from 'tsnetlink';

const nets = new Networks();
// `tsnetlink network create --subnet 192.168.20.0/24 --subnet fd00:20::/64 ds`; the first create
// turns IPv4 and IPv6 forwarding on and says so in hostChanges.
const { record, hostChanges } = await nets.createNetwork({ name: 'ds', subnet: ['192.168.20.0/24', 'fd00:20::/64'] });
console.log(record.subnets.map((s) => `${s.subnet} gateway ${s.gateway}`).join(', '));
for (const c of hostChanges) console.log(`changed: ${c.split(' (')[0]}`);
const container = createAnonymousNetns();
try {
  // A server listening on :: answers both families; it prints who called (the host, masqueraded).
  const server = withNetns(container, () => net.createServer((c) => c.end(`hello from ${c.remoteAddress?.replace('::ffff:', '')}\n`)).listen(80));
  const ep = await nets.connect('ds', container, { ports: ['8080:80'] }); // no host IP: published on both families
  console.log(ep.addresses.map((a) => `${a.cidr} via ${a.gateway}`).join(', '));
  for (const host of ['192.168.20.1', 'fd00:20::1']) {
    // The published port through the bridge's address of each family.
    const s = net.connect(8080, host);
    let reply = '';
    s.on('data', (d) => (reply += d));
    await once(s, 'close'); // the reply is complete and the connection closed (rejects on 'error')
    process.stdout.write(reply);
  }
  server.close();
  await nets.disconnect('ds', ep.id);
} finally {
  container.close();
  await nets.remove('ds', { force: true });
  nets.close();
}
