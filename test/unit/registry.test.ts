/**
 * The firewall registry: its order is the default (native nf_tables first, iptables-restore where
 * nf_tables cannot run, with the reason), a name outside it is refused, and a backend added as one
 * row (here the memory backend) is routed to like the shipped ones, with nothing else changed.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BACKENDS, REGISTRY, chosenBackend, pickBackend } from '../../src/firewall/registry.js';
import { RoutedFirewall } from '../../src/firewall/router.js';
import { MemoryFirewall } from '../../src/firewall/memory.js';
import type { BackendEntry } from '../../src/firewall/registry.js';
import type { Firewall } from '../../src/firewall/types.js';

test('native nf_tables comes first, iptables-restore after it', () => {
  assert.equal(BACKENDS, ['nftables', 'iptables']);
  assert.equal(Object.keys(REGISTRY), [...BACKENDS]);
});

test('the default is the first row that can run; the rows passed over are named with their reason', () => {
  assert.equal(pickBackend([['nftables', () => undefined], ['iptables', () => undefined]]), { name: 'nftables' });
  assert.equal(pickBackend([['nftables', () => 'nf_tables is not usable here (EPROTONOSUPPORT)'], ['iptables', () => undefined]]), {
    name: 'iptables',
    passedOver: 'nftables: nf_tables is not usable here (EPROTONOSUPPORT)',
  });
  // None can run: the last, whose own errors at first use name what is missing.
  assert.equal(pickBackend([['a', () => 'no'], ['b', () => 'neither']]), { name: 'b', passedOver: 'a: no; b: neither' });
  assert.throws(() => pickBackend([]), /no firewall backend/);
});

test('a name outside the registry is refused, from an option or the environment', () => {
  assert.is(chosenBackend('iptables', undefined), 'iptables');
  assert.is(chosenBackend(undefined, 'nftables'), 'nftables');
  assert.is(chosenBackend(undefined, ''), undefined);
  assert.throws(() => chosenBackend('pf', undefined), /must be one of nftables, iptables/);
  assert.throws(() => chosenBackend(undefined, 'ipfw'), /TSNETLINK_FIREWALL/);
});

test('a backend added as one row is made, chosen and routed to like the shipped ones', async () => {
  // The row a new backend adds to src/firewall/registry.ts; the memory backend stands in for one.
  const rows = { ...REGISTRY, memory: { make: () => new MemoryFirewall(), unusable: () => undefined } satisfies BackendEntry };
  const names = Object.keys(rows) as (keyof typeof rows)[];
  const made = new Map<string, Firewall>(names.map((n) => [n, rows[n].make({})]));
  const records = new Map<string, string>([['old', 'memory']]);
  const fw = new RoutedFirewall(names, undefined, (b) => made.get(b)!, (n) => records.get(n), () => [...new Set(records.values())], undefined, () => 'memory');
  assert.is(fw.selected, 'memory', 'the host uses it, so new networks get it');
  await fw.setNetworks([{ name: 'old', bridge: 'br-old', subnet: '10.9.0.0/24' }]);
  const mem = made.get('memory') as MemoryFirewall;
  assert.equal([...mem.networks.keys()], ['old']);
  await fw.addEndpoints({ name: 'old', bridge: 'br-old', subnet: '10.9.0.0/24' }, [{ network: 'old', id: 'c1', ip: '10.9.0.2', mappings: [{ protocol: 'tcp', hostPort: 8080, containerPort: 80 }] }]);
  assert.equal([...mem.endpoints.keys()], ['old/c1']);
  assert.equal(await fw.diff({ networks: [{ name: 'old', bridge: 'br-old', subnet: '10.9.0.0/24' }], endpoints: [...mem.endpoints.values()] }), []);
});

test.run();
