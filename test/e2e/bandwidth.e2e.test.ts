/**
 * End-to-end: an endpoint's rate limits (the `bandwidth` connect option, the CNI plugin's
 * `bandwidth` capability). The limits are read back with `tc -j` and `ip -j` as oracles and
 * measured with bulk TCP in both directions; check names what someone removed, repair restores
 * it, disconnect and DEL leave no ifb, a refused option changes nothing, a failure while shaping
 * rolls the whole connect back, and an ifb left by a killed connect is pruned.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { Abandon, Networks, ifbNameFor, ifbTag, type Bandwidth } from '../../src/index.js';
import { catchAsync, ip, ipJson, requireSandbox, stateFiles } from '../helpers.js';
import { kernelHas, missing, reportNotApplicable } from '../kernel.js';
import { measureTcp, shapedRate } from './lib.js';
import { att, cni, hostLinks } from './cni-lib.js';

const FILE = 'bandwidth';
requireSandbox(FILE);

const NEEDS = ['sch:tbf', 'sch:ingress', 'link:ifb', 'cls:u32', 'act:mirred'];
const NET = 'bwnet';
const STATE = '/run/tsn-bw';
const nets = new Networks({ stateDir: STATE });

const tcJson = (args: string[]): any[] => {
  const out = execFileSync('tc', ['-j', ...args], { encoding: 'utf8' }).trim();
  return out === '' ? [] : JSON.parse(out);
};

/** A named container netns with lo up, which another process can enter (ip netns exec). */
function container(name: string): string {
  ip(['netns', 'add', name]);
  ip(['link', 'set', 'lo', 'up'], name);
  return `/run/netns/${name}`;
}

/** Every test here needs the kernel's tbf, ingress, ifb, u32 and mirred; without one the test is named as not applicable. */
function live(name: string, fn: () => Promise<void>): void {
  test(name, async () => {
    const lacks = missing(NEEDS);
    if (lacks.length > 0) return reportNotApplicable(FILE, name, lacks);
    await fn();
  });
}

const DOWN = 16_000_000; // to the container
const UP = 8_000_000; // from the container
const BW: Bandwidth = { ingress: { rate: DOWN, burst: 256_000 }, egress: { rate: UP, burst: 256_000 } };

test.before(async () => {
  if (missing(NEEDS).length === 0) await nets.createNetwork({ name: NET, subnet: '10.77.0.0/24' });
});

test.after(async () => {
  await nets.remove(NET, { force: true }).catch(() => undefined);
  nets.close();
});

live('a limited endpoint: tbf on its veth, an ifb fed by a redirect, both rates measured within 10%; check clean', async () => {
  const path = container('bw1');
  try {
    const rec = await nets.connect(NET, { path }, { id: 'bw0000000001', bandwidth: BW });
    assert.equal(rec.bandwidth, BW);
    const ifb = ifbNameFor(NET, rec.id);
    const tbf = tcJson(['qdisc', 'show', 'dev', rec.hostIfname]).find((q) => q.kind === 'tbf');
    assert.is(tbf?.root, true, 'a root tbf on the host veth');
    assert.is(tbf.options.rate, DOWN / 8, 'tc -j: rate in bytes/s');
    assert.is(tbf.options.burst, 32_000, 'tc -j: the bucket in bytes');
    assert.ok(tcJson(['qdisc', 'show', 'dev', rec.hostIfname]).some((q) => q.kind === 'ingress'));
    const link = ipJson<any[]>(['-d', 'link', 'show', 'dev', ifb])[0];
    assert.is(link.linkinfo?.info_kind, 'ifb');
    assert.is(link.ifalias, ifbTag(NET, rec.id));
    assert.ok(link.flags.includes('UP'));
    assert.is(tcJson(['qdisc', 'show', 'dev', ifb]).find((q) => q.kind === 'tbf')?.options.rate, UP / 8);
    const act = tcJson(['filter', 'show', 'dev', rec.hostIfname, 'parent', 'ffff:']).flatMap((f) => f.options?.actions ?? [])[0];
    assert.is(act?.kind, 'mirred');
    assert.is(act.to_dev, ifb);
    assert.is(act.mirred_action, 'redirect');
    assert.equal(await nets.check(), []);

    // The receiver counts TCP payload; a TBF counts whole frames, 1514 bytes on the wire for each
    // 1448 of payload (Ethernet 14, IPv4 20, TCP with timestamps 32): compared as frames.
    const WIRE = 1514 / 1448;
    let port = 5300;
    const down = await shapedRate('to the container', DOWN, async () => (await measureTcp('bw1', undefined, rec.ip, ++port, 2500)) * WIRE);
    const up = await shapedRate('from the container', UP, async () => (await measureTcp(undefined, 'bw1', rec.gateway, ++port, 2500)) * WIRE);
    process.stdout.write(`\n  bandwidth e2e (frames on the wire): to the container ${(down / 1e6).toFixed(2)} Mbit/s (limit ${DOWN / 1e6}), from it ${(up / 1e6).toFixed(2)} Mbit/s (limit ${UP / 1e6})\n`);

    await nets.disconnect(NET, rec.id);
    assert.not.ok(hostLinks().includes(ifb), 'the ifb goes with the endpoint');
  } finally {
    ip(['netns', 'del', 'bw1']);
  }
});

live('check names removed limits and a deleted ifb; repair applies them again', async () => {
  const path = container('bw2');
  try {
    const rec = await nets.connect(NET, { path }, { id: 'bw0000000002', bandwidth: BW });
    const ifb = ifbNameFor(NET, rec.id);
    execFileSync('tc', ['qdisc', 'del', 'dev', rec.hostIfname, 'root']);
    ip(['link', 'del', ifb]);
    const problems = await nets.check();
    assert.ok(problems.some((p) => p.includes('traffic to the container is not limited')), problems.join('\n'));
    assert.ok(problems.some((p) => p.includes(`ifb ${ifb}`) && p.includes('missing')), problems.join('\n'));
    const report = await nets.repair();
    assert.ok(report.actions.some((a) => a.includes('rate limits of endpoint bw0000000002')), report.actions.join('\n'));
    assert.equal(await nets.check(), []);
    assert.is(tcJson(['qdisc', 'show', 'dev', rec.hostIfname]).find((q) => q.kind === 'tbf')?.options.rate, DOWN / 8);
    assert.is(tcJson(['qdisc', 'show', 'dev', ifb]).find((q) => q.kind === 'tbf')?.options.rate, UP / 8);
    // A changed rate is drift too.
    execFileSync('tc', ['qdisc', 'replace', 'dev', ifb, 'root', 'tbf', 'rate', '1mbit', 'burst', '32kb', 'latency', '25ms']);
    assert.ok((await nets.check()).some((p) => p.includes('traffic from the container is not limited')));
    await nets.repair();
    assert.equal(await nets.check(), []);
    await nets.disconnect(NET, rec.id);
  } finally {
    ip(['netns', 'del', 'bw2']);
  }
});

live('refused limits change nothing; a failure while shaping rolls the connect back; a stray ifb is pruned', async () => {
  const path = container('bw3');
  try {
    const before = { links: hostLinks(), state: stateFiles(STATE) };
    for (const [bw, what] of [
      [{ ingress: { rate: 1_000_000, burst: 800 } }, 'less than one packet'],
      [{ egress: { rate: 1_000_000 } }, 'positive whole number'],
      [{ ingress: { rate: 0, burst: 100_000 } }, 'positive whole number'],
      [{ sideways: { rate: 1, burst: 1 } }, 'unknown field'],
      [{ egress: { rate: 1_000_000, burst: 2 ** 36 } }, '4 GiB'],
    ] as const) {
      const e = await catchAsync(() => nets.connect(NET, { path }, { bandwidth: bw as unknown as Bandwidth }));
      assert.is(e?.code, 'EINVAL', `${JSON.stringify(bw)}: ${e?.message}`);
      assert.ok(String(e.message).includes(what), `${JSON.stringify(bw)}: ${e.message}`);
      assert.equal(hostLinks(), before.links);
      assert.equal(stateFiles(STATE), before.state);
    }
    // A link of another kind already has the endpoint's ifb name: the connect fails while
    // shaping, and everything it did before (address, veth, record) is undone.
    const id = 'bw0000000003';
    ip(['link', 'add', ifbNameFor(NET, id), 'type', 'veth', 'peer', 'name', 'bwpeer']);
    const e = await catchAsync(() => nets.connect(NET, { path }, { id, bandwidth: BW }));
    assert.ok(e, 'refused');
    assert.match(String(e.message), /not this endpoint's/);
    assert.ok(hostLinks().includes(ifbNameFor(NET, id)), "someone else's link is left alone");
    ip(['link', 'del', ifbNameFor(NET, id)]);
    assert.equal(hostLinks(), before.links, 'no veth or ifb left');
    assert.equal(stateFiles(STATE), before.state, 'no record, address or claim left');
    assert.equal(await nets.check(), []);
    // An ifb a killed connect left (tagged, no endpoint): check names it, prune deletes it.
    const stray = ifbNameFor(NET, 'deadbeef0001');
    ip(['link', 'add', stray, 'type', 'ifb']);
    ip(['link', 'set', stray, 'alias', ifbTag(NET, 'deadbeef0001')]);
    assert.ok((await nets.check()).some((p) => p.includes(`ifb ${stray}`)));
    const report = await nets.pruneReport();
    assert.ok(report.actions.some((a) => a.includes(stray)), report.actions.join('\n'));
    assert.not.ok(hostLinks().includes(stray));
    assert.equal(await nets.check(), []);
  } finally {
    ip(['netns', 'del', 'bw3']);
  }
});

live('a connect abandoned at each of its steps (a crash) leaves nothing after one prune: no veth, no ifb, no record', async () => {
  const path = container('bw5');
  try {
    const steps: string[] = [];
    const probe = new Networks({ stateDir: STATE, faults: (op, step) => void (op === 'connect' && !steps.includes(step) && steps.push(step)) });
    const rec = await probe.connect(NET, { path }, { id: 'bw0000000005', bandwidth: BW });
    await probe.disconnect(NET, rec.id);
    probe.close();
    assert.ok(steps.includes('limit bandwidth'), steps.join(', '));
    const before = hostLinks();
    for (const step of steps) {
      const crashing = new Networks({ stateDir: STATE, faults: (op, s) => {
        if (op === 'connect' && s === step) throw new Abandon(op, s);
      } });
      try {
        const e = await catchAsync(() => crashing.connect(NET, { path }, { id: 'bw0000000005', bandwidth: BW }));
        assert.instance(e, Abandon, `${step}: ${e}`);
      } finally {
        crashing.close();
      }
      await nets.pruneReport();
      assert.equal(await nets.check(), [], `after a crash at ${step} and a prune`);
      assert.equal(hostLinks(), before, `after a crash at ${step} and a prune`);
    }
  } finally {
    ip(['netns', 'del', 'bw5']);
  }
});

live('CNI: runtimeConfig.bandwidth (any key case) shapes the pod, the result lists the ifb, CHECK passes, DEL removes it; bad limits refused with nothing left', async () => {
  const path = container('bw4');
  const stateDir = '/run/tsn-bw-cni';
  const env = { TSNETLINK_STATE_DIR: stateDir };
  const conf = (bandwidth: unknown): Record<string, unknown> => ({
    cniVersion: '1.0.0', name: 'bwcni', type: 'tsnetlink', bridge: 'bwcni0', capabilities: { bandwidth: true },
    ipam: { type: 'tsnetlink', ranges: [[{ subnet: '10.78.0.0/24' }]] },
    runtimeConfig: { bandwidth },
  });
  try {
    const before = hostLinks();
    // What containerd sends for kubernetes.io/ingress-bandwidth: 10M (a Go struct, burst 2^32-1).
    const k8s = { IngressRate: 10_000_000, IngressBurst: 4294967295, EgressRate: 5_000_000, EgressBurst: 4294967295 };
    const add = cni('ADD', conf(k8s), { ...env, ...att('pod4', path) });
    assert.is(add.status, 0, add.out + add.err);
    const ifb = add.json.interfaces.find((i: any) => /^tsb[0-9a-f]{12}$/.test(i.name))?.name;
    assert.ok(ifb, `the result lists the ifb: ${add.out}`);
    const veth = add.json.interfaces[1].name;
    const tbf = tcJson(['qdisc', 'show', 'dev', veth]).find((q) => q.kind === 'tbf');
    assert.is(tbf?.options.rate, 10_000_000 / 8);
    assert.is(tcJson(['qdisc', 'show', 'dev', ifb]).find((q) => q.kind === 'tbf')?.options.rate, 5_000_000 / 8);
    const check = cni('CHECK', { ...conf(k8s), prevResult: add.json }, { ...env, ...att('pod4', path) });
    assert.is(check.status, 0, check.out + check.err);
    execFileSync('tc', ['qdisc', 'del', 'dev', veth, 'root']);
    const broken = cni('CHECK', { ...conf(k8s), prevResult: add.json }, { ...env, ...att('pod4', path) });
    assert.is(broken.json?.code, 103, broken.out);
    assert.match(broken.json.msg, /not limited/);
    const del = cni('DEL', conf(k8s), { ...env, ...att('pod4', path) });
    assert.is(del.status, 0, del.out + del.err);
    assert.equal(hostLinks(), before, 'DEL leaves no veth, ifb or bridge');

    for (const [bw, code, what] of [
      [{ ingressRate: 1_000_000 }, 7, 'ingressBurst'],
      [{ egressRate: 1_000_000, egressBurst: 100 }, 7, 'less than one packet'],
      [{ ingressRate: 1_000_000, ingressBurst: 100_000, shapedSubnets: ['10.0.0.0/8'] }, 2, 'shapedSubnets'],
    ] as const) {
      const r = cni('ADD', conf(bw), { ...env, ...att('pod5', path) });
      assert.is(r.json?.code, code, `${JSON.stringify(bw)}: ${r.out}`);
      assert.ok(String(r.json.msg + (r.json.details ?? '')).includes(what), r.out);
      assert.equal(hostLinks(), before, `${JSON.stringify(bw)}: nothing made`);
    }
  } finally {
    ip(['netns', 'del', 'bw4']);
  }
});

test('the kernel features this file needs are probed', () => {
  for (const f of NEEDS) assert.type(kernelHas(f).ok, 'boolean');
});

test.run();
