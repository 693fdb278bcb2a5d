/**
 * The bridge-port filter's wiring: the firewall router keeps it present exactly while a network
 * has an IPv6 subnet (create, rm, repair all end in setNetworks or apply), and check sees it.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { RoutedFirewall } from '../../src/firewall/router.js';
import { MemoryFirewall } from '../../src/firewall/memory.js';
import { portFilterRules, REPORT_TYPES } from '../../src/firewall/nftables/portfilter.js';
import type { PortFilter } from '../../src/firewall/types.js';
import { PORT_GROUP } from '../../src/firewall/types.js';
import type { FirewallDifference } from '../../src/firewall/types.js';

class FakeFilter implements PortFilter {
  present = false;
  calls: boolean[] = [];
  sync(wanted: boolean): void {
    this.calls.push(wanted);
    this.present = wanted;
  }
  diff(wanted: boolean): FirewallDifference[] {
    return wanted === this.present ? [] : [{ kind: wanted ? 'missing' : 'unexpected', what: 'bridge tsnetlink table' }];
  }
  close(): void {}
}

const v4 = { name: 'a', bridge: 'a', subnet: '10.1.0.0/24' };
const ds = { name: 'b', bridge: 'b', subnet: '10.2.0.0/24', subnet6: 'fd00:2::/64' };

function router(filter: PortFilter): RoutedFirewall {
  const mem = new MemoryFirewall();
  return new RoutedFirewall(['iptables'], 'iptables', () => mem, () => 'iptables', () => ['iptables'], filter);
}

test('the filter follows the networks: only while one has IPv6', async () => {
  const f = new FakeFilter();
  const fw = router(f);
  await fw.setNetworks([v4]);
  assert.is(f.present, false);
  await fw.setNetworks([v4, ds]);
  assert.is(f.present, true);
  await fw.apply({ networks: [v4], endpoints: [] });
  assert.is(f.present, false);
  await fw.apply({ networks: [ds], endpoints: [] });
  assert.is(f.present, true);
});

test('check reports a missing filter, and repair (apply) restores it', async () => {
  const f = new FakeFilter();
  const fw = router(f);
  await fw.setNetworks([ds]);
  f.present = false;
  assert.equal(await fw.diff({ networks: [ds], endpoints: [] }), [{ kind: 'missing', what: 'bridge tsnetlink table' }]);
  await fw.apply({ networks: [ds], endpoints: [] });
  assert.equal(await fw.diff({ networks: [ds], endpoints: [] }), []);
});

test('one drop per report type, each for ports of the container group only', () => {
  const rules = portFilterRules();
  assert.is(rules.length, REPORT_TYPES.length);
  for (const [i, r] of rules.entries()) {
    const cmps = r.exprs.filter((e) => e.type === 'cmp');
    assert.is((cmps[0] as { data: Buffer }).data.readUInt32LE(0), PORT_GROUP);
    assert.is((cmps.at(-1) as { data: Buffer }).data[0], REPORT_TYPES[i]);
    assert.equal(r.exprs.at(-1), { type: 'verdict', verdict: { code: 'drop' } });
  }
});

test.run();
