/**
 * End-to-end: traffic control as the CNI bandwidth plugin sets it up, through the library: a tbf
 * on the host end of a veth (traffic to the pod), and for traffic from the pod an ingress qdisc
 * with a u32 match-all filter whose mirred action redirects to an ifb that has its own tbf. Read
 * back with our dumps and with `tc -j` as the oracle, then the rate a bulk TCP transfer between
 * the two namespaces achieves through each tbf is measured against its limit.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { Rtnl } from '../../src/index.js';
import * as TC from '../../src/netlink/route/tc.js';
import { parsePsched } from '../../src/netlink/route/tc-rate.js';
import { ip, requireSandbox } from '../helpers.js';
import { fixtureRtnl, kernelTest, sameAsCapture } from '../kernel.js';
import { measureTcp as measure, shapedRate } from './lib.js';

const FILE = 'tc';
requireSandbox(FILE);

const tcJson = (args: string[]): any[] => {
  const out = execFileSync('tc', ['-j', ...args], { encoding: 'utf8' }).trim();
  return out === '' ? [] : JSON.parse(out);
};

const EGRESS_BITS = 4_000_000; // host -> pod, the tbf on h0
const INGRESS_BITS = 2_000_000; // pod -> host, the tbf on ifb0

kernelTest(test, FILE, 'bandwidth plugin shape: tbf on the veth, ingress + u32 + mirred to an ifb with a tbf; tc -j agrees; TCP rate within 10% of each limit', ['sch:tbf', 'sch:ingress', 'link:ifb', 'cls:u32', 'act:mirred'], async () => {
  ip(['netns', 'add', 'pod']);
  ip(['link', 'add', 'h0', 'type', 'veth', 'peer', 'name', 'p0', 'netns', 'pod']);
  ip(['link', 'set', 'h0', 'up']);
  ip(['addr', 'add', '10.9.0.1/24', 'dev', 'h0']);
  ip(['addr', 'add', '10.9.0.2/24', 'dev', 'p0'], 'pod');
  ip(['link', 'set', 'p0', 'up'], 'pod');
  ip(['link', 'set', 'lo', 'up'], 'pod');
  const rt = Rtnl.open();
  try {
    rt.linkAdd('ifb0', 'ifb');
    rt.linkSetUp('ifb0');
    const ifb = rt.linkIndex('ifb0');
    const h0 = rt.linkIndex('h0');
    rt.qdiscAdd({ dev: 'h0', kind: 'tbf', tbf: { rate: EGRESS_BITS / 8, burst: '32kb', latency: '50ms' } });
    rt.qdiscAdd({ dev: 'h0', kind: 'ingress' });
    rt.filterAdd({ dev: 'h0', parent: 'ffff:', protocol: 'all', priority: 1, u32: { classid: '1:1', actions: [{ kind: 'mirred', action: 'egress-redirect', dev: 'ifb0' }] } });
    rt.qdiscAdd({ dev: 'ifb0', kind: 'tbf', tbf: { rate: INGRESS_BITS / 8, burst: '32kb', latency: '50ms' } });
    // replace is idempotent on what exists.
    rt.qdiscReplace({ dev: 'ifb0', kind: 'tbf', tbf: { rate: INGRESS_BITS / 8, burst: '32kb', latency: '50ms' } });

    // Our dumps.
    const qs = rt.qdiscList({ dev: 'h0' });
    const tbf = qs.find((q) => q.kind === 'tbf');
    assert.ok(tbf, 'tbf on h0');
    assert.is(tbf.tbf?.rate, EGRESS_BITS / 8);
    assert.is(tbf.parentText, 'root');
    assert.ok(qs.some((q) => q.kind === 'ingress' && q.parent === TC.TC_H.INGRESS && q.handleText === 'ffff:0'));
    const fs = [...rt.filterList('h0', 'ffff:')];
    const f = fs.find((x) => x.u32?.actions.length);
    assert.ok(f, 'u32 filter with actions');
    assert.equal(f.u32?.actions[0]?.mirred, { eaction: 'egress-redirect', ifindex: ifb, action: 4 });
    assert.is(f.u32?.classid, TC.makeHandle(1, 1));
    assert.is(f.index, h0);

    // tc -j as the oracle.
    const tq = tcJson(['qdisc', 'show', 'dev', 'h0']);
    const ttbf = tq.find((q) => q.kind === 'tbf');
    assert.ok(ttbf, JSON.stringify(tq));
    assert.is(ttbf.options.rate, EGRESS_BITS / 8, 'tc -j reports the rate in bytes/s');
    assert.is(ttbf.options.burst, 32768);
    assert.ok(tq.some((q) => q.kind === 'ingress'));
    assert.is(tcJson(['qdisc', 'show', 'dev', 'ifb0']).find((q) => q.kind === 'tbf')?.options.rate, INGRESS_BITS / 8);
    const tf = tcJson(['filter', 'show', 'dev', 'h0', 'parent', 'ffff:']);
    const act = tf.flatMap((x) => x.options?.actions ?? [])[0];
    assert.is(act?.kind, 'mirred', JSON.stringify(tf));
    assert.is(act.to_dev, 'ifb0');
    assert.is(act.mirred_action, 'redirect');
    assert.ok(tf.some((x) => x.options?.flowid === '1:1'));

    // The rate achieved: host -> pod through h0's tbf, pod -> host through the ifb's tbf.
    let port = 5200;
    const down = await shapedRate('host->pod', EGRESS_BITS, () => measure('pod', undefined, '10.9.0.2', ++port, 2500));
    const up = await shapedRate('pod->host', INGRESS_BITS, () => measure(undefined, 'pod', '10.9.0.1', ++port, 2500));
    process.stdout.write(`\n  tc e2e: host->pod ${(down / 1e6).toFixed(3)} Mbit/s (tbf ${EGRESS_BITS / 1e6}), pod->host ${(up / 1e6).toFixed(3)} Mbit/s (tbf on ifb ${INGRESS_BITS / 1e6})\n`);

    // Teardown through the library; tc sees nothing left.
    rt.filterDel({ dev: 'h0', parent: 'ffff:', priority: 1 });
    assert.is(tcJson(['filter', 'show', 'dev', 'h0', 'parent', 'ffff:']).length, 0);
    rt.qdiscDel({ dev: 'h0', kind: 'ingress' });
    rt.qdiscDel({ dev: 'h0', parent: 'root' });
    rt.qdiscDel({ dev: 'ifb0', parent: 'root' });
    assert.not.ok(tcJson(['qdisc', 'show', 'dev', 'h0']).some((q) => q.kind === 'tbf' || q.kind === 'ingress'));
  } finally {
    rt.close();
    ip(['link', 'del', 'ifb0']);
    ip(['link', 'del', 'h0']);
    ip(['netns', 'del', 'pod']);
  }
}, () => {
  // On captured bytes: the requests are tc's, and the kernel's dumps decode (d0 = 3, ifb0 = 4 there).
  const P = parsePsched('000003e8 00000040 000f4240 3b9aca00');
  assert.ok(sameAsCapture('tc-qdisc-add-tbf.req.txt', TC.addQdiscRequest({ dev: 3, kind: 'tbf', tbf: { rate: '1mbit', burst: '32kb', latency: '50ms' } }, P)));
  assert.ok(sameAsCapture('tc-qdisc-add-ingress.req.txt', TC.addQdiscRequest({ dev: 3, kind: 'ingress' }, P)));
  assert.ok(sameAsCapture('tc-filter-add-u32-mirred.req.txt', TC.addFilterRequest({ dev: 3, parent: 'ffff:', priority: 1, u32: { classid: '1:1', actions: [{ kind: 'mirred', action: 'egress-redirect', dev: 4 }] } })));
  const f = fixtureRtnl(['tc-qdisc-dump.reply.txt', 'tc-filter-dump.reply.txt']);
  try {
    const qs = [...f.rt.qdiscList({ dev: 3 })];
    assert.equal(qs.map((q) => q.kind), ['tbf', 'ingress']);
    const mirred = [...f.rt.filterList(3, 'ffff:')].flatMap((x) => x.u32?.actions ?? []);
    assert.equal(mirred[0]?.mirred?.ifindex, 4);
  } finally {
    f.rt.close();
  }
});

test.run();
