/**
 * End-to-end: the tc objects beyond the bandwidth shape, through the library, with `tc -j` (or
 * `tc` where tc 6.1 prints no JSON) as the oracle and, where a filter drops, a TCP connection
 * from a pod as the proof: qdiscs pfifo/bfifo, changes of tbf and htb, u32 `match ip` keys,
 * bpf programs (pinned in a bpf filesystem mounted in this sandbox, by fd, classic), standalone
 * actions; and the kinds a kernel may lack (fq_codel, netem, prio, sfq, fq, matchall, flower,
 * gact, police), each of which also runs on tc's captured request and a built reply
 * (test/unit/tc-kinds.test.ts has the byte-level checks).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmdirSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rtnl } from '../../src/index.js';
import * as TC from '../../src/netlink/route/tc.js';
import { bpfProgLoad, close } from '../../src/sys/libc.js';
import { parsePsched } from '../../src/netlink/route/tc-rate.js';
import { splitMessages } from '../../src/netlink/core/message.js';
import { dial, dumpReply } from '../../src/netlink/core/testing.js';
import { ip, requireSandbox } from '../helpers.js';
import { fixtureBytes, fixtureRtnl, kernelTest, sameAsCapture } from '../kernel.js';
import { box, reach, runIn, DROPPED_MS, type Box } from './lib.js';
import { DROP_PROGRAM, PASS_PROGRAM, SCHED_CLS, pinProgram } from '../fixtures/tools/bpf-pin.js';

const FILE = 'tc-kinds';
requireSandbox(FILE);

// The captured requests' clock (test/fixtures/README.md) and ifindexes: d1 = 2, d0 = 3, ifb0 = 4.
const P = parsePsched('000003e8 00000040 000f4240 3b9aca00');
const PORT = 7000;

const tcJson = (args: string[]): any[] => {
  const out = execFileSync('tc', ['-j', ...args], { encoding: 'utf8' }).trim();
  return out === '' ? [] : JSON.parse(out);
};
const tcText = (args: string[]): string => execFileSync('tc', args, { encoding: 'utf8' });

/** A pod netns with p0, its host end h0 (10.9.0.1/24 to 10.9.0.2/24), and a TCP server on the host side. */
interface Pod {
  rt: Rtnl;
  pod: Box;
  /** Connects from the pod to the host's server: its reply, or a string starting with "unreachable". */
  connect(ms?: number): Promise<string>;
}
async function withPod(fn: (p: Pod) => Promise<void> | void): Promise<void> {
  const pod = box('pod');
  ip(['link', 'add', 'h0', 'type', 'veth', 'peer', 'name', 'p0', 'netns', pod.path]);
  ip(['addr', 'add', '10.9.0.1/24', 'dev', 'h0']);
  ip(['link', 'set', 'h0', 'up']);
  const rt = Rtnl.open();
  const server: Server = createServer((c) => c.end('hi'));
  await new Promise<void>((r) => server.listen(PORT, '10.9.0.1', r));
  const inPod = (args: string[]): void => void runIn(pod, 'ip', args);
  try {
    inPod(['addr', 'add', '10.9.0.2/24', 'dev', 'p0']);
    inPod(['link', 'set', 'p0', 'up']);
    await fn({ rt, pod, connect: (ms = 3000) => reach(pod, '10.9.0.1', PORT, ms) });
  } finally {
    server.close();
    rt.close();
    ip(['link', 'del', 'h0']);
    pod.close();
  }
}

/** The fixture's messages of one type, for a fake kernel that answers dumps with them. */
const actionKernel = (file: string) => {
  const bodies = splitMessages(fixtureBytes(file)).filter((m) => m.type === 50).map((m) => m.payload);
  return new Rtnl(dial((req) => dumpReply(req, 50, bodies)));
};

// ------------------------------------------------------------ what this kernel has

kernelTest(test, FILE, 'pfifo and bfifo: add, change, replace, delete; tc -j agrees', ['sch:pfifo', 'sch:bfifo'], () =>
  withPod(({ rt }) => {
    rt.qdiscAdd({ dev: 'h0', kind: 'pfifo', fifo: { limit: 50 } });
    assert.equal(rt.qdiscList({ dev: 'h0' }).find((q) => q.parentText === 'root')?.fifo, { limit: 50 });
    assert.is(tcJson(['qdisc', 'show', 'dev', 'h0'])[0]?.options?.limit, 50);
    rt.qdiscChange({ dev: 'h0', kind: 'pfifo', fifo: { limit: 80 } });
    assert.is(tcJson(['qdisc', 'show', 'dev', 'h0'])[0]?.options?.limit, 80, 'changed in place');
    rt.qdiscReplace({ dev: 'h0', kind: 'bfifo', fifo: { limit: '64kb' } });
    const [q] = tcJson(['qdisc', 'show', 'dev', 'h0']);
    assert.equal([q.kind, q.options.limit], ['bfifo', 65536]);
    assert.equal(rt.qdiscList({ dev: 'h0' }).find((x) => x.parentText === 'root')?.fifo, { limit: 65536 });
    rt.qdiscDel({ dev: 'h0', parent: 'root' });
    assert.not.ok(tcJson(['qdisc', 'show', 'dev', 'h0']).some((x) => x.kind === 'bfifo'));
  }), () => {
  assert.ok(sameAsCapture('tc-qdisc-add-pfifo.req.txt', TC.addQdiscRequest({ dev: 3, kind: 'pfifo', fifo: { limit: 50 } }, P)));
  assert.ok(sameAsCapture('tc-qdisc-add-bfifo.req.txt', TC.addQdiscRequest({ dev: 2, kind: 'bfifo', fifo: { limit: '64kb' } }, P)));
  const f = fixtureRtnl(['tc-qdisc-fifo.reply.txt']);
  try {
    assert.equal(f.rt.qdiscList({ dev: 3 }).map((q) => q.fifo), [{ limit: 50 }]);
  } finally {
    f.rt.close();
  }
});

kernelTest(test, FILE, 'tbf and htb: change keeps the qdisc and class, with the new rates; tc agrees', ['sch:tbf', 'sch:htb', 'link:ifb'], () =>
  withPod(({ rt }) => {
    rt.qdiscAdd({ dev: 'h0', handle: '1:', kind: 'tbf', tbf: { rate: '1mbit', burst: '32kb', latency: '50ms' } });
    rt.qdiscChange({ dev: 'h0', handle: '1:', kind: 'tbf', tbf: { rate: '2mbit', burst: '32kb', latency: '50ms' } });
    const [q] = tcJson(['qdisc', 'show', 'dev', 'h0']);
    assert.equal([q.kind, q.handle, q.options.rate], ['tbf', '1:', 250000]);
    assert.is(rt.qdiscList({ dev: 'h0' })[0]?.tbf?.rate, 250000);
    rt.linkAdd('ifb9', 'ifb');
    try {
      rt.qdiscAdd({ dev: 'ifb9', handle: '1:', kind: 'htb', htb: { defaultClass: 0x10 } });
      rt.classAdd({ dev: 'ifb9', parent: '1:', classid: '1:10', kind: 'htb', htb: { rate: '1mbit', ceil: '2mbit' } });
      rt.classChange({ dev: 'ifb9', parent: '1:', classid: '1:10', kind: 'htb', htb: { rate: '2mbit', ceil: '4mbit' } });
      assert.match(tcText(['class', 'show', 'dev', 'ifb9']), /class htb 1:10 root prio 0 rate 2Mbit ceil 4Mbit/);
      assert.equal(rt.classList('ifb9').map((c) => c.htb), [{ rate: 250000, ceil: 500000, prio: 0, quantum: 25000 }]);
    } finally {
      rt.linkDel('ifb9');
    }
  }), () => {
  assert.ok(sameAsCapture('tc-qdisc-change-tbf.req.txt', TC.changeQdiscRequest({ dev: 3, kind: 'tbf', tbf: { rate: '2mbit', burst: '32kb', latency: '50ms' } }, P)));
  assert.ok(sameAsCapture('tc-class-change-htb.req.txt', TC.changeClassRequest({ dev: 4, parent: '1:', classid: '1:10', kind: 'htb', htb: { rate: '2mbit', ceil: '4mbit' } }, P)));
});

kernelTest(test, FILE, 'u32 match ip keys: a redirect into a down ifb drops the matching port only; tc shows the keys', ['sch:ingress', 'cls:u32', 'act:mirred', 'link:ifb'], () =>
  withPod(async ({ rt, connect }) => {
    assert.is(await connect(), 'hi');
    rt.linkAdd('ifb9', 'ifb'); // left down: mirred drops what it cannot deliver
    try {
      rt.qdiscAdd({ dev: 'h0', kind: 'ingress' });
      const filter = (dport: number): TC.FilterSpec => ({
        dev: 'h0', parent: 'ffff:', protocol: 'ip', priority: 2,
        u32: { match: [{ src: '10.9.0.0/24' }, { dst: '10.9.0.1/32' }, { protocol: 'tcp' }, { dport }], classid: '1:2', actions: [{ kind: 'mirred', action: 'egress-redirect', dev: 'ifb9' }] },
      });
      rt.filterAdd(filter(PORT + 1));
      assert.is(await connect(), 'hi', 'another port: not matched');
      rt.filterDel({ dev: 'h0', parent: 'ffff:', priority: 2 });
      rt.filterAdd(filter(PORT));
      assert.match(await connect(DROPPED_MS), /^unreachable/, 'the port matched: redirected into a down device');
      const text = tcText(['filter', 'show', 'dev', 'h0', 'parent', 'ffff:']);
      assert.match(text, /match 0a090000\/ffffff00 at 12/);
      assert.match(text, /match 0a090001\/ffffffff at 16/);
      assert.match(text, /match 00060000\/00ff0000 at 8/);
      assert.match(text, new RegExp(`match 0000${PORT.toString(16).padStart(4, '0')}/0000ffff at 20`));
      const f = rt.filterList('h0', 'ffff:').find((x) => x.u32?.keys.length);
      assert.equal(f?.u32?.keys.map((k) => k.off), [12, 16, 8, 20]);
      assert.is(f?.u32?.actions[0]?.mirred?.eaction, 'egress-redirect');
      rt.filterDel({ dev: 'h0', parent: 'ffff:', priority: 2 });
      assert.is(await connect(), 'hi');
    } finally {
      rt.linkDel('ifb9');
    }
  }), () => {
  assert.ok(sameAsCapture('tc-filter-add-u32-match.req.txt', TC.addFilterRequest({ dev: 3, parent: 'ffff:', protocol: 'ip', priority: 2, u32: { match: [{ src: '10.1.0.0/16' }, { dst: '10.2.0.5/32' }, { protocol: 6 }, { sport: 1000 }, { dport: 80 }], classid: '1:2', actions: [{ kind: 'mirred', action: 'egress-mirror', dev: 4 }] } }, P)));
  const f = fixtureRtnl(['tc-filter-u32-match.reply.txt']);
  try {
    assert.equal(f.rt.filterList(3, 'ffff:').flatMap((x) => x.u32?.keys.map((k) => k.off) ?? []), [12, 16, 8, 20]);
  } finally {
    f.rt.close();
  }
});

kernelTest(test, FILE, 'bpf: a pinned program in direct-action mode drops, one by fd passes, a classic one lists; tc -j agrees', ['sch:clsact', 'cls:bpf'], () =>
  withPod(async ({ rt, connect }) => {
    // A bpf filesystem of this sandbox's own (its mount namespace is private).
    const fs = mkdtempSync(join(tmpdir(), 'tsnetlink-bpffs-'));
    execFileSync('mount', ['-t', 'bpf', 'bpf', fs]);
    try {
      pinProgram(join(fs, 'drop'), DROP_PROGRAM, 'tsn_drop');
      rt.qdiscAdd({ dev: 'h0', kind: 'clsact' });
      rt.filterAdd({ dev: 'h0', parent: 'ingress', priority: 1, bpf: { pinned: join(fs, 'drop'), directAction: true } });
      assert.match(await connect(DROPPED_MS), /^unreachable/, 'TC_ACT_SHOT from the program');
      const [mine] = rt.filterList('h0', 'ingress').filter((x) => x.bpf);
      assert.is(mine?.bpf?.name, 'drop:[*fsobj]');
      assert.ok(mine?.bpf?.directAction);
      const theirs = tcJson(['filter', 'show', 'dev', 'h0', 'ingress']).find((x) => x.options?.prog);
      assert.equal([theirs.options.bpf_name, theirs.options.prog.id, theirs.options.prog.tag, theirs.options['direct-action']], ['drop:[*fsobj]', mine?.bpf?.id, mine?.bpf?.tag, true]);
      rt.filterDel({ dev: 'h0', parent: 'ingress', priority: 1 });
      assert.is(await connect(), 'hi');

      const fd = bpfProgLoad(SCHED_CLS, PASS_PROGRAM, { name: 'tsn_pass' });
      try {
        rt.filterAdd({ dev: 'h0', parent: 'ingress', priority: 2, bpf: { fd, name: 'pass', directAction: true } });
      } finally {
        close(fd); // the filter holds its own reference
      }
      assert.is(await connect(), 'hi');
      rt.filterAdd({ dev: 'h0', parent: 'ingress', priority: 3, bpf: { ops: [{ code: 6, jt: 0, jf: 0, k: 0 }], classid: '1:1' } });
      const bpfs = rt.filterList('h0', 'ingress').filter((x) => x.bpf);
      assert.equal(bpfs.map((x) => [x.priority, x.bpf?.name ?? null, x.bpf?.ops?.length ?? 0]), [[2, 'pass', 0], [3, null, 1]]);
      assert.equal(tcJson(['filter', 'show', 'dev', 'h0', 'ingress']).filter((x) => x.options).map((x) => x.options.bpf_name ?? 'bytecode'), ['pass', 'bytecode']);
      rt.qdiscDel({ dev: 'h0', kind: 'clsact' });
    } finally {
      execFileSync('umount', [fs]);
      rmdirSync(fs);
    }
  }), () => {
  assert.ok(sameAsCapture('tc-filter-add-bpf-pinned.req.txt', TC.addFilterRequest({ dev: 3, parent: 'ingress', priority: 1, bpf: { fd: 4, pinned: '/sys/fs/bpf/tsn-pass', directAction: true, classid: '1:7' } }, P)));
  const f = fixtureRtnl(['tc-filter-bpf.reply.txt']);
  try {
    assert.equal(f.rt.filterList(3, 'ingress').filter((x) => x.bpf).map((x) => x.bpf?.directAction), [true, false]);
  } finally {
    f.rt.close();
  }
});

kernelTest(test, FILE, 'standalone mirred actions: add, list, delete; tc -j actions ls agrees', ['act:mirred', 'link:ifb'], () =>
  withPod(({ rt }) => {
    rt.linkAdd('ifb9', 'ifb');
    try {
      const ifb = rt.linkIndex('ifb9');
      rt.actionAdd([{ kind: 'mirred', action: 'egress-redirect', dev: 'ifb9', index: 7 }, { kind: 'mirred', action: 'ingress-mirror', dev: 'h0', index: 12 }]);
      const mine = rt.actionList('mirred').filter((a) => a.index === 7 || a.index === 12);
      assert.equal(mine, [
        { kind: 'mirred', index: 7, mirred: { eaction: 'egress-redirect', ifindex: ifb, action: 4 } },
        { kind: 'mirred', index: 12, mirred: { eaction: 'ingress-mirror', ifindex: rt.linkIndex('h0'), action: 3 } },
      ]);
      const theirs = tcJson(['actions', 'ls', 'action', 'mirred']).flatMap((x) => x.actions ?? []);
      assert.equal(theirs.filter((a: any) => a.index === 7).map((a: any) => [a.mirred_action, a.direction, a.to_dev]), [['redirect', 'egress', 'ifb9']]);
      rt.actionDel([{ kind: 'mirred', index: 7 }, { kind: 'mirred', index: 12 }]);
      assert.not.ok(rt.actionList('mirred').some((a) => a.index === 7 || a.index === 12));
    } finally {
      rt.linkDel('ifb9');
    }
  }), () => {
  assert.ok(sameAsCapture('tc-action-add-mirred.req.txt', TC.addActionRequest([{ kind: 'mirred', action: 'egress-redirect', dev: 4, index: 7 }], P)));
  assert.ok(sameAsCapture('tc-action-del.req.txt', TC.deleteActionRequest([{ kind: 'mirred', index: 7 }])));
  const rt = actionKernel('tc-action-dump.reply.txt');
  try {
    assert.equal(rt.actionList('mirred').map((a) => a.index), [7, 12]);
  } finally {
    rt.close();
  }
});

// ------------------------------------------------------------ what a kernel may lack

const builtQdiscs = (kind: string): TC.Qdisc[] => {
  const f = fixtureRtnl(['tc-qdisc-built.reply.txt']);
  try {
    return f.rt.qdiscList({ dev: 3 }).filter((q) => q.kind === kind);
  } finally {
    f.rt.close();
  }
};
const builtFilters = (kind: string): TC.Filter[] => {
  const f = fixtureRtnl(['tc-filter-built.reply.txt']);
  try {
    return f.rt.filterList(3, 'ffff:').filter((x) => x.kind === kind && x.handle !== 0);
  } finally {
    f.rt.close();
  }
};

kernelTest(test, FILE, 'fq_codel: add, change, delete; tc -j agrees', ['sch:fq_codel'], () =>
  withPod(({ rt }) => {
    rt.qdiscAdd({ dev: 'h0', kind: 'fq_codel', fqCodel: { limit: 2000, flows: 512, target: '3ms', interval: '60ms', ecn: true } });
    assert.equal(tcJson(['qdisc', 'show', 'dev', 'h0']).map((q) => [q.kind, q.options.limit, q.options.flows]), [['fq_codel', 2000, 512]]);
    assert.is(rt.qdiscList({ dev: 'h0' })[0]?.fqCodel?.flows, 512);
    rt.qdiscChange({ dev: 'h0', kind: 'fq_codel', fqCodel: { limit: 3000 } });
    assert.is(rt.qdiscList({ dev: 'h0' })[0]?.fqCodel?.limit, 3000);
    rt.qdiscDel({ dev: 'h0', parent: 'root' });
  }), () => {
  assert.ok(sameAsCapture('tc-qdisc-add-fq_codel.req.txt', TC.addQdiscRequest({ dev: 3, kind: 'fq_codel', fqCodel: { limit: 2000, flows: 512, quantum: 1300, target: '3ms', interval: '60ms', ecn: true, ceThreshold: '2ms', memoryLimit: '16mb', dropBatch: 32 } }, P)));
  assert.equal(builtQdiscs('fq_codel')[0]?.fqCodel?.flows, 512);
});

kernelTest(test, FILE, 'netem: a delay the connection measures, change, delete; tc -j agrees', ['sch:netem'], () =>
  withPod(async ({ rt, connect }) => {
    rt.qdiscAdd({ dev: 'h0', kind: 'netem', netem: { delay: '100ms', loss: 0 } });
    assert.is(tcJson(['qdisc', 'show', 'dev', 'h0'])[0]?.kind, 'netem');
    assert.is(rt.qdiscList({ dev: 'h0' })[0]?.netem?.delay, 100000);
    const t0 = performance.now();
    assert.is(await connect(), 'hi');
    assert.ok(performance.now() - t0 >= 100, 'the SYN-ACK waited in netem');
    rt.qdiscChange({ dev: 'h0', kind: 'netem', netem: { delay: '10ms', jitter: '1ms' } });
    assert.equal([rt.qdiscList({ dev: 'h0' })[0]?.netem?.delay, rt.qdiscList({ dev: 'h0' })[0]?.netem?.jitter], [10000, 1000]);
    rt.qdiscDel({ dev: 'h0', parent: 'root' });
  }), () => {
  assert.ok(sameAsCapture('tc-qdisc-change-netem.req.txt', TC.changeQdiscRequest({ dev: 3, kind: 'netem', netem: { delay: '50ms' } }, P)));
  assert.equal(builtQdiscs('netem').map((q) => q.netem?.delay), [100000, 0]);
});

kernelTest(test, FILE, 'prio with a priomap: add, delete; tc -j agrees', ['sch:prio'], () =>
  withPod(({ rt }) => {
    const priomap = [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3];
    rt.qdiscAdd({ dev: 'h0', handle: '1:', kind: 'prio', prio: { bands: 4, priomap } });
    const [q] = tcJson(['qdisc', 'show', 'dev', 'h0']);
    assert.equal([q.kind, q.options.bands, q.options.priomap], ['prio', 4, priomap]);
    assert.equal(rt.qdiscList({ dev: 'h0' })[0]?.prio, { bands: 4, priomap });
    rt.qdiscDel({ dev: 'h0', parent: 'root' });
  }), () => {
  assert.ok(sameAsCapture('tc-qdisc-add-prio.req.txt', TC.addQdiscRequest({ dev: 3, handle: '1:', kind: 'prio', prio: { bands: 4, priomap: [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3] } }, P)));
  assert.is(builtQdiscs('prio')[0]?.prio?.bands, 4);
});

kernelTest(test, FILE, 'sfq: add, change, delete; tc -j agrees', ['sch:sfq'], () =>
  withPod(({ rt }) => {
    rt.qdiscAdd({ dev: 'h0', kind: 'sfq', sfq: { perturb: 10, limit: 100, depth: 50 } });
    assert.equal(tcJson(['qdisc', 'show', 'dev', 'h0']).map((q) => [q.kind, q.options.limit, q.options.perturb]), [['sfq', 100, 10]]);
    rt.qdiscChange({ dev: 'h0', kind: 'sfq', sfq: { perturb: 20 } });
    assert.is(rt.qdiscList({ dev: 'h0' })[0]?.sfq?.perturb, 20);
    rt.qdiscDel({ dev: 'h0', parent: 'root' });
  }), () => {
  assert.ok(sameAsCapture('tc-qdisc-add-sfq.req.txt', TC.addQdiscRequest({ dev: 3, kind: 'sfq', sfq: { perturb: 10, quantum: 1514, limit: 100, depth: 50, divisor: 512, flows: 64, headdrop: true } }, P)));
  assert.is(builtQdiscs('sfq')[0]?.sfq?.depth, 50);
});

kernelTest(test, FILE, 'fq: add, change, delete; tc -j agrees', ['sch:fq'], () =>
  withPod(({ rt }) => {
    rt.qdiscAdd({ dev: 'h0', kind: 'fq', fq: { limit: 5000, flowLimit: 50, maxRate: '100mbit', pacing: false } });
    assert.equal(tcJson(['qdisc', 'show', 'dev', 'h0']).map((q) => [q.kind, q.options.limit, q.options.flow_limit]), [['fq', 5000, 50]]);
    rt.qdiscChange({ dev: 'h0', kind: 'fq', fq: { flowLimit: 60 } });
    assert.is(rt.qdiscList({ dev: 'h0' })[0]?.fq?.flowLimit, 60);
    rt.qdiscDel({ dev: 'h0', parent: 'root' });
  }), () => {
  assert.ok(sameAsCapture('tc-qdisc-add-fq.req.txt', TC.addQdiscRequest({ dev: 3, kind: 'fq', fq: { limit: 5000, flowLimit: 50, buckets: 2048, quantum: 3028, initialQuantum: 15140, pacing: false, maxRate: '100mbit', lowRateThreshold: '1mbit', refillDelay: '20ms', orphanMask: 511, ceThreshold: '5ms', timerSlack: '20us', horizon: '5s', horizonDrop: false } }, P)));
  assert.is(builtQdiscs('fq')[0]?.fq?.maxRate, 12_500_000);
});

kernelTest(test, FILE, 'matchall with gact drop stops the traffic; tc -j agrees; deleted, it flows', ['sch:ingress', 'cls:matchall', 'act:gact'], () =>
  withPod(async ({ rt, connect }) => {
    rt.qdiscAdd({ dev: 'h0', kind: 'ingress' });
    rt.filterAdd({ dev: 'h0', parent: 'ffff:', priority: 3, matchall: { actions: [{ kind: 'gact', verdict: 'drop' }] } });
    assert.match(await connect(DROPPED_MS), /^unreachable/);
    const f = tcJson(['filter', 'show', 'dev', 'h0', 'parent', 'ffff:']).find((x) => x.options);
    assert.equal([f.kind, f.options.actions[0].kind, f.options.actions[0].control_action.type], ['matchall', 'gact', 'drop']);
    assert.equal(rt.filterList('h0', 'ffff:').find((x) => x.matchall)?.matchall?.actions.map((a) => a.gact?.verdict), ['drop']);
    rt.filterDel({ dev: 'h0', parent: 'ffff:', priority: 3 });
    assert.is(await connect(), 'hi');
  }), () => {
  assert.ok(sameAsCapture('tc-filter-add-matchall.req.txt', TC.addFilterRequest({ dev: 3, parent: 'ffff:', protocol: 'all', priority: 3, matchall: { skipHw: true, classid: '1:3', actions: [{ kind: 'gact', verdict: 'pass' }] } }, P)));
  assert.equal(builtFilters('matchall').map((f) => f.matchall?.actions[0]?.kind), ['gact', 'police']);
});

kernelTest(test, FILE, 'flower with IPv4 and TCP keys drops only the matching port; tc -j agrees', ['sch:ingress', 'cls:flower', 'act:gact'], () =>
  withPod(async ({ rt, connect }) => {
    rt.qdiscAdd({ dev: 'h0', kind: 'ingress' });
    const filter = (dstPort: number): TC.FilterSpec => ({ dev: 'h0', parent: 'ffff:', protocol: 'ip', priority: 5, flower: { ipProto: 'tcp', dstIp: '10.9.0.1/32', srcIp: '10.9.0.0/24', dstPort, actions: [{ kind: 'gact', verdict: 'drop' }] } });
    rt.filterAdd(filter(PORT + 1));
    assert.is(await connect(), 'hi');
    rt.filterDel({ dev: 'h0', parent: 'ffff:', priority: 5 });
    rt.filterAdd(filter(PORT));
    assert.match(await connect(DROPPED_MS), /^unreachable/);
    const f = tcJson(['filter', 'show', 'dev', 'h0', 'parent', 'ffff:']).find((x) => x.options);
    assert.equal([f.options.keys.ip_proto, f.options.keys.dst_ip, f.options.keys.dst_port], ['tcp', '10.9.0.1', PORT]);
    assert.equal(rt.filterList('h0', 'ffff:').find((x) => x.flower)?.flower?.dstIp, '10.9.0.1/32');
    rt.filterDel({ dev: 'h0', parent: 'ffff:', priority: 5 });
  }), () => {
  assert.ok(sameAsCapture('tc-filter-add-flower.req.txt', TC.addFilterRequest({ dev: 3, parent: 'ffff:', protocol: 'ip', priority: 5, flower: { classid: '1:5', ipProto: 'tcp', dstIp: '10.2.0.0/16', srcIp: '10.1.0.5', dstPort: 80, srcPort: 1234, skipHw: true, actions: [{ kind: 'gact', verdict: 'drop' }] } }, P)));
  assert.is(builtFilters('flower')[0]?.flower?.dstPort, 80);
});

kernelTest(test, FILE, 'police on a matchall filter and standalone police and gact; tc -j agrees', ['sch:ingress', 'cls:matchall', 'act:police', 'act:gact'], () =>
  withPod(({ rt }) => {
    rt.qdiscAdd({ dev: 'h0', kind: 'ingress' });
    rt.filterAdd({ dev: 'h0', parent: 'ffff:', priority: 4, matchall: { actions: [{ kind: 'police', rate: '1mbit', burst: '10k', exceed: 'drop', conform: 'pipe' }] } });
    const p = rt.filterList('h0', 'ffff:').find((x) => x.matchall)?.matchall?.actions[0]?.police;
    assert.equal([p?.rate, p?.burst, p?.exceed, p?.conform], [125000, 10240, 'drop', 'pipe']);
    const f = tcJson(['filter', 'show', 'dev', 'h0', 'parent', 'ffff:']).find((x) => x.options);
    assert.is(f.options.actions[0].kind, 'police');
    rt.actionAdd([{ kind: 'police', rate: '1mbit', burst: '10k', index: 8 }, { kind: 'gact', verdict: 'pass', random: { type: 'netrand', verdict: 'drop', value: 50 }, index: 9 }]);
    assert.ok(rt.actionList('police').some((a) => a.index === 8 && a.police?.rate === 125000));
    assert.equal(rt.actionList('gact').find((a) => a.index === 9)?.gact, { verdict: 'pass', random: { type: 'netrand', verdict: 'drop', value: 50 } });
    assert.ok(tcJson(['actions', 'ls', 'action', 'gact']).flatMap((x) => x.actions ?? []).some((a: any) => a.index === 9));
    rt.actionDel([{ kind: 'police', index: 8 }, { kind: 'gact', index: 9 }]);
  }), () => {
  assert.ok(sameAsCapture('tc-filter-add-matchall-police.req.txt', TC.addFilterRequest({ dev: 3, parent: 'ffff:', priority: 4, matchall: { actions: [{ kind: 'police', rate: '1mbit', burst: '10k', exceed: 'drop', conform: 'pipe' }] } }, P)));
  assert.ok(sameAsCapture('tc-action-add-police.req.txt', TC.addActionRequest([{ kind: 'police', rate: '1mbit', burst: '10k', mtu: '2kb', peakrate: '2mbit', exceed: 'drop', index: 8 }], P)));
  const rt = actionKernel('tc-action-built.reply.txt');
  try {
    assert.equal(rt.actionList('police').map((a) => a.kind), ['police', 'gact']);
  } finally {
    rt.close();
  }
});

test.run();
