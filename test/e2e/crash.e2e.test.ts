/**
 * End-to-end: `tsnetlink` CLI processes killed with SIGKILL at random points, 30 times for each
 * of connect -p, disconnect, network create and network rm (100 times under $TSNETLINK_STRESS=1;
 * $TSNETLINK_CRASH_KILLS sets any count). Half the kills land at a random time
 * in the process's life, half at a random time after the batch's first write to the state
 * directory (inside the operations, which queue on their locks). After every round, one prune must leave records, kernel state and the
 * firewall in exact agreement (Networks.check), no IP or MAC may be held twice, and the next
 * attempt of every killed operation must succeed. The counts are printed for the record.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { watch } from 'node:fs';
import { Networks } from '../../src/index.js';
import { requireSandbox, tcpGet } from '../helpers.js';
import { box, cli, ipIn, rng, serveIn, stressCount, type Box, type CliRun } from './lib.js';
import { NFT, nftMappings, rulesHeldBy } from './fw-oracle.js';

requireSandbox('crash');

// Three rounds of ten already land kills both at random times and inside the operations' queues.
const KILLS = Number(process.env['TSNETLINK_CRASH_KILLS'] ?? stressCount(100, 30));
const BATCH = 10;
const NET = 'crashnet';
const GW = '10.40.0.1';
const random = rng(Number(process.env['TSNETLINK_CRASH_SEED'] ?? 20261201));
const nets = new Networks();
const boxes: Box[] = [];

interface Tally {
  /** Processes started and sent SIGKILL. */
  runs: number;
  /** Of those, killed before they finished (the rest had exited 0 already). */
  killed: number;
  /** Things the prunes after the rounds settled (undone connects, orphan links, freed ports...). */
  settledByPrune: number;
}
const tallies: Record<string, Tally> = {};

function boxesFor(n: number): Box[] {
  while (boxes.length < n) {
    const b = box(`k${boxes.length}`);
    serveIn(b, 80);
    boxes.push(b);
  }
  return boxes.slice(0, n);
}

/**
 * Starts `runs` and kills each at a random point: in half of them at a uniform time in
 * [0, typical duration], in the others 0-4 ms after the state directory `dir` first changes.
 */
async function killAll(runs: (() => CliRun)[], typicalMs: number, dir: string): Promise<{ code: number | null; signal: string | null }[]> {
  let changed = false;
  const waiters: (() => void)[] = [];
  const w = watch(dir, { recursive: false }, () => {
    changed = true;
    waiters.splice(0).forEach((f) => f());
  });
  try {
    const started = runs.map((start, i) => {
      const run = start();
      const kill = (): void => void run.proc.kill('SIGKILL');
      if (i % 2 === 0) setTimeout(kill, random() * typicalMs);
      else {
        // Operations on one lock run one after another: spread these kills over that whole queue.
        const later = (): void => void setTimeout(kill, random() < 0.5 ? random() * 4 : random() * typicalMs * 0.8);
        if (changed) later();
        else waiters.push(later);
        // If the directory never changes (the run failed early), it is still ended.
        setTimeout(kill, typicalMs * 3);
      }
      return run.exit;
    });
    return await Promise.all(started);
  } finally {
    w.close();
  }
}

async function settle(kind: string, results: { code: number | null }[]): Promise<void> {
  const t = (tallies[kind] ??= { runs: 0, killed: 0, settledByPrune: 0 });
  const report = await nets.pruneReport();
  t.runs += results.length;
  t.killed += results.filter((r) => r.code !== 0).length;
  t.settledByPrune += report.actions.length;
  assert.equal(report.problems, [], `${kind}: prune problems`);
  assert.equal(await nets.check(), [], `${kind}: state, kernel and firewall disagree after one prune (prune did: ${report.actions.join('; ')})`);
  assertUnique(kind);
  if (NFT) {
    // nft's own view: a map element for exactly the published ports of the records.
    const want = nets.list().flatMap((n) => nets.inspect(n.name).endpoints).flatMap((e) => e.mappings.map((m) => `${m.protocol} ${m.hostPort} ${e.ip}:${m.containerPort}`));
    assert.equal(nftMappings().map((m) => `${m.proto} ${m.hostPort} ${m.to}:${m.toPort}`).sort(), want.sort(), `${kind}: nft map elements = published ports`);
  }
}

/** No IP and no MAC twice: in the records, and on the containers' interfaces. */
function assertUnique(kind: string): void {
  const recs = nets.list().flatMap((n) => nets.inspect(n.name).endpoints);
  for (const key of ['ip', 'mac'] as const) {
    const v = recs.map((r) => `${r.network}/${r[key]}`);
    assert.is(new Set(v).size, v.length, `${kind}: duplicate ${key} in records: ${v}`);
  }
  const seen = new Set<string>();
  for (const b of boxes) {
    for (const l of ipIn<any[]>(b, ['addr', 'show']).filter((x) => x.ifname !== 'lo')) {
      for (const k of [l.address, ...l.addr_info.filter((a: any) => a.family === 'inet').map((a: any) => a.local)]) {
        assert.not.ok(seen.has(k), `${kind}: ${k} is on two containers`);
        seen.add(k);
      }
    }
  }
}

/** The typical wall time of `n` concurrent runs, for the kill schedule. */
async function typical(runs: (() => CliRun)[]): Promise<number> {
  const r = await Promise.all(runs.map((s) => s().exit));
  for (const x of r) assert.is(x.code, 0, `calibration run failed: ${x.err}`);
  return Math.max(...r.map((x) => x.ms));
}

test.before(async () => {
  await nets.create({ name: NET, subnet: '10.40.0.0/24' });
  assert.is(rulesHeldBy(), NFT ? 'nftables' : 'iptables', 'the rules are in the backend this run uses (the CLI runs inherit $TSNETLINK_FIREWALL)');
});

test.after(async () => {
  for (const n of nets.list()) await nets.remove(n.name, { force: true }).catch(() => undefined);
  for (const b of boxes) b.close();
  nets.close();
  console.log(`crash counts: ${JSON.stringify(tallies)}`);
});

const connectRun = (b: Box, i: number) => () => cli('connect', '-net', NET, '-p', `${9000 + i}:80`, b.path);
const epDir = () => `${nets.store.networkDir(NET)}/endpoints`;

test(`connect -p killed ${KILLS} times: settled by one prune, then every container connects`, async () => {
  const bs = boxesFor(BATCH);
  const ms = await typical(bs.map((b, i) => connectRun(b, i)));
  for (const b of bs) await nets.disconnect(NET, nets.endpointOf(NET, b.ns)!.id);
  for (let round = 0; round < KILLS / BATCH; round++) {
    const results = await killAll(bs.map((b, i) => connectRun(b, i)), ms, epDir());
    await settle('connect -p', results);
    for (const [i, b] of bs.entries()) {
      const ep = nets.endpointOf(NET, b.ns) ?? (await nets.connect(NET, b.ns, { ports: [`${9000 + i}:80`] }));
      assert.is(await tcpGet(GW, 9000 + i), b.name, `round ${round}: ${b.name} answers on its published port`);
      await nets.disconnect(NET, ep.id);
    }
  }
});

test(`disconnect killed ${KILLS} times: settled by one prune; the container connects again`, async () => {
  const bs = boxesFor(BATCH);
  const connectAll = async () => {
    for (const [i, b] of bs.entries()) await nets.connect(NET, b.ns, { id: b.name, ports: [`${9100 + i}:80`] });
  };
  await connectAll();
  const ms = await typical(bs.map((b) => () => cli('disconnect', '-net', NET, b.name)));
  for (let round = 0; round < KILLS / BATCH; round++) {
    await connectAll();
    const results = await killAll(bs.map((b) => () => cli('disconnect', '-net', NET, b.name)), ms, epDir());
    await settle('disconnect', results);
    for (const b of bs) await nets.disconnect(NET, b.name);
    assert.equal(nets.inspect(NET).endpoints, [], `round ${round}: all disconnected`);
  }
});

test(`network create killed ${KILLS} times: settled by one prune; the name and subnet are usable again`, async () => {
  const names = Array.from({ length: BATCH }, (_, i) => `cr${i}`);
  const create = (n: string, i: number) => () => cli('network', 'create', '--subnet', `10.41.${i}.0/24`, n);
  const ms = await typical(names.map(create));
  for (const n of names) await nets.remove(n);
  for (let round = 0; round < KILLS / BATCH; round++) {
    const results = await killAll(names.map(create), ms, `${nets.store.root}/networks`);
    await settle('network create', results);
    for (const [i, n] of names.entries()) {
      if (!nets.list().some((x) => x.name === n)) await nets.create({ name: n, subnet: `10.41.${i}.0/24` });
      await nets.remove(n);
    }
  }
});

test(`network rm --force killed ${KILLS} times: settled by one prune; nothing of the network is left`, async () => {
  const names = Array.from({ length: BATCH }, (_, i) => `rm${i}`);
  const bs = boxesFor(BATCH);
  const make = async () => {
    for (const [i, n] of names.entries()) {
      await nets.create({ name: n, subnet: `10.42.${i}.0/24` });
      await nets.connect(n, bs[i]!.ns, { id: 'e', ports: [`${9200 + i}:80`] });
    }
  };
  await make();
  const rm = (n: string) => () => cli('network', 'rm', '--force', n);
  const ms = await typical(names.map(rm));
  for (let round = 0; round < KILLS / BATCH; round++) {
    await make();
    const results = await killAll(names.map(rm), ms, `${nets.store.root}/networks`);
    await settle('network rm', results);
    for (const n of names) if (nets.list().some((x) => x.name === n)) await nets.remove(n, { force: true });
  }
});

test.run();
