// examples/networks.ts: what `tsnetlink network create` and `run -p` do, through the library.
// Run it as root in a throwaway netns: `node scripts/sandbox.mjs node dist/examples/networks.js`.
import net from 'node:net';
import { once } from 'node:events';
import { Networks, createAnonymousNetns, withNetns } from 'tsnetlink';

const nets = new Networks(); // state in /run/tsnetlink (option stateDir)
await nets.create({ name: 'testbridge', subnet: '192.168.10.1/24' });
const container = createAnonymousNetns(); // a netns that lives as long as this handle (or a process in it)
try {
  // A server inside the "container": a socket created inside the namespace switch stays there.
  const server = withNetns(container, () => net.createServer((c) => c.end('hello from the container\n')).listen(80));
  const ep = await nets.connect('testbridge', container, { ports: ['8080:80'] });
  console.log(`${ep.id}: ${ep.cidr} via ${ep.gateway}, published ${ep.mappings.map((m) => `${m.hostPort}->${m.containerPort}/${m.protocol}`)}`);
  // The published port, reached from the host through the bridge's address.
  const s = net.connect(8080, '192.168.10.1');
  let reply = '';
  s.on('data', (d) => (reply += d));
  await once(s, 'close'); // the reply is complete and the connection closed (rejects on 'error')
  process.stdout.write(reply);
  server.close();
  await nets.disconnect('testbridge', ep.id);
} finally {
  container.close();
  await nets.remove('testbridge', { force: true });
  nets.close();
}
