/**
 * End-to-end: everything at once, as a busy runtime does it. Each round starts, in parallel,
 * 40 `tsnetlink connect -p` (30 into one network, 10 into a second), 20 disconnects, 10
 * `network repair`, 5 `network prune` and 2 `network rm --force` of the second network. After
 * each round: every published port answers from the right container (ports freed by the
 * disconnects are published by new containers in the next round, so a stale DNAT would answer
 * from the wrong one), nothing of the removed network or the disconnected endpoints is left,
 * and Networks.check finds records, kernel and firewall in exact agreement. Three rounds by
 * default (both port-range swaps and one repeat), ten under $TSNETLINK_STRESS=1;
 * $TSNETLINK_RACE_ROUNDS sets any count.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Networks } from '../../src/index.js';
import { ipJson, requireSandbox, tcpGet } from '../helpers.js';
import { box, cli, ipIn, serveIn, stressCount, type Box } from './lib.js';
import { NFT, nftMappings, rulesHeldBy } from './fw-oracle.js';

requireSandbox('race');

const ROUNDS = Number(process.env['TSNETLINK_RACE_ROUNDS'] ?? stressCount(10, 3));
const A = 'racea';
const B = 'raceb';
const GW = '10.60.0.1';
const nets = new Networks();
const all: Box[] = [];

function boxes(prefix: string, n: number): Box[] {
  return Array.from({ length: n }, (_, i) => {
    const b = box(`${prefix}${i}`);
    serveIn(b, 80);
    all.push(b);
    return b;
  });
}

test.before(async () => {
  await nets.create({ name: A, subnet: '10.60.0.0/24' });
  assert.is(rulesHeldBy(), NFT ? 'nftables' : 'iptables', 'the rules are in the backend this run uses');
});

test.after(async () => {
  for (const n of nets.list()) await nets.remove(n.name, { force: true }).catch(() => undefined);
  for (const b of all) b.close();
  nets.close();
});

async function answer(port: number): Promise<string> {
  return tcpGet(GW, port, 2000).catch((e: Error) => `no answer: ${e.message}`);
}

for (let round = 0; round < ROUNDS; round++) {
  test(`round ${round + 1}/${ROUNDS}: 40 connects -p, 20 disconnects, 10 repairs, 5 prunes, 2 rm --force at once`, async () => {
    // Port ranges swap every round: the ports the disconnects free are published anew right after.
    const [newBase, oldBase] = round % 2 === 0 ? [8000, 7000] : [7000, 8000];
    const conA = boxes(`r${round}a`, 30);
    const conB = boxes(`r${round}b`, 10);
    const preB = boxes(`r${round}p`, 3);
    const dis = boxes(`r${round}d`, 20);
    await nets.create({ name: B, subnet: '10.61.0.0/24' });
    for (const [i, b] of dis.entries()) await nets.connect(A, b.ns, { id: b.name, ports: [`${oldBase + i}:80`] });
    for (const [i, b] of preB.entries()) await nets.connect(B, b.ns, { id: `pre${i}`, ports: [`${9300 + i}:80`] });

    const runs = [
      ...conA.map((b, i) => ['connectA', cli('connect', '-net', A, '-p', `${newBase + i}:80`, b.path)] as const),
      ...conB.map((b, i) => ['connectB', cli('connect', '-net', B, '-p', `${9400 + i}:80`, b.path)] as const),
      ...dis.map((b) => ['disconnect', cli('disconnect', '-net', A, b.name)] as const),
      ...Array.from({ length: 10 }, () => ['repair', cli('network', 'repair')] as const),
      ...Array.from({ length: 5 }, () => ['prune', cli('network', 'prune')] as const),
      ...Array.from({ length: 2 }, () => ['rm', cli('network', 'rm', '--force', B)] as const),
    ];
    const results = await Promise.all(runs.map(async ([kind, r]) => ({ kind, ...(await r.exit) })));
    const bad = results.filter((r) => {
      if (r.code === 0) return false;
      // A connect into the network being removed, or the second rm, may find it gone.
      if ((r.kind === 'connectB' || r.kind === 'rm') && /no such network|being removed/.test(r.err)) return false;
      return true;
    });
    assert.equal(bad.map((r) => `${r.kind} exit ${r.code}: ${r.err.trim()}`), [], 'every process succeeded or was refused for the removed network');
    assert.ok(results.some((r) => r.kind === 'rm' && r.code === 0), 'one rm removed the network');

    const wrong: string[] = [];
    for (const [i, b] of conA.entries()) {
      const got = await answer(newBase + i);
      if (got !== b.name) wrong.push(`port ${newBase + i}: ${got} instead of ${b.name}`);
    }
    assert.equal(wrong, [], 'every published port answers from its own container');
    for (const b of dis) assert.equal(ipIn<any[]>(b, ['link', 'show']).map((l) => l.ifname), ['lo'], `${b.name}: disconnected`);
    for (const b of [...conB, ...preB]) assert.equal(ipIn<any[]>(b, ['link', 'show']).map((l) => l.ifname), ['lo'], `${b.name}: removed with its network`);
    assert.not.ok(ipJson<any[]>(['link', 'show']).some((l) => l.ifname === B), 'the removed bridge is gone');
    assert.not.ok(nets.store.listPorts().some((p) => p.hostPort >= 9300 || (p.hostPort >= oldBase && p.hostPort < oldBase + 20)), 'no host port of a removed endpoint is held');
    assert.equal(await nets.check(), [], 'records, kernel and firewall agree');
    assert.is(nets.inspect(A).endpoints.length, 30);
    if (NFT) {
      const elems = nftMappings().map((m) => `${m.hostPort} ${m.to}`).sort();
      assert.equal(elems, nets.inspect(A).endpoints.map((e) => `${e.mappings[0]?.hostPort} ${e.ip}`).sort(), 'nft: one map element per connected container, none of the removed');
    }

    await nets.disconnectMany(A, nets.inspect(A).endpoints.map((e) => e.id));
    for (const b of [...conA, ...conB, ...preB, ...dis]) b.close();
  });
}

test.run();
