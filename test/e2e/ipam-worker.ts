/**
 * Child process of ipam-concurrency.e2e.test: prints 'ready', waits for a line on stdin so
 * that all children contend at once, allocates (releasing every third) and prints JSON results.
 * argv: root network subnet workerId count
 */
import { Ipam } from '../../src/bridge/ipam.js';
import { Store } from '../../src/bridge/store.js';
import { fakeEndpoint } from '../helpers.js';

const [root = '', network = '', subnet = '', worker = '', countText = '1'] = process.argv.slice(2);
const store = new Store({ root });
const ipam = new Ipam(store, network, subnet);
const count = Number(countText);

process.stdout.write('ready\n');
await new Promise((go) => process.stdin.once('data', go));
process.stdin.destroy();

const results: Array<{ id: string; ip: string }> = [];
for (let i = 0; i < count; i++) {
  const id = `w${worker}-${i}`;
  // Hold the network lock around allocate + record write, as connect does.
  const ip = store.withNetworkLockSync(network, () => {
    const got = ipam.allocate(id);
    store.putEndpoint(fakeEndpoint(network, id, got, Number(subnet.split('/')[1])));
    return got;
  });
  results.push({ id, ip });
  if (i % 3 === 2) {
    // Churn: give the oldest back so the cursor later wraps onto released addresses.
    const gone = results.shift();
    if (gone) {
      store.withNetworkLockSync(network, () => {
        ipam.release(gone.id);
        store.removeEndpoint(network, gone.id);
      });
    }
  }
}
process.stdout.write(`${JSON.stringify(results)}\n`);
