/**
 * The bridge-port filter: containers' IPv6 multicast listener reports are not flooded to the
 * other containers of a bridge (each new container with IPv6 sends several, and a bridge floods
 * them to every port). Checked by what reaches an existing container's port while a new one comes
 * up, with and without the filter; IPv6 between the containers still works (neighbour discovery
 * is multicast too, and must pass); check and repair see and restore the filter; it exists only
 * while a network has IPv6.
 */
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { Networks } from '../../src/index.js';
import { PORT_GROUP } from '../../src/bridge/links.js';
import { ipJson, requireSandbox } from '../helpers.js';
import { kernelSuite } from '../kernel.js';
import { box, serveIn, reach, type Box } from './lib.js';

requireSandbox('portfilter.e2e');
const test = kernelSuite('portfilter', ['nftables:bridge']);

const nets = new Networks();
const boxes: Box[] = [];
const PORT = 80;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function container(name: string): Box {
  const b = box(name);
  serveIn(b, PORT);
  boxes.push(b);
  return b;
}

/** Our bridge table as nft lists it, or undefined when there is none. */
function bridgeTable(): { chains: any[]; rules: any[] } | undefined {
  const all = JSON.parse(execFileSync('nft', ['-j', 'list', 'ruleset'], { encoding: 'utf8' })).nftables as any[];
  if (!all.some((o) => o.table?.family === 'bridge' && o.table.name === 'tsnetlink')) return undefined;
  const mine = (o: any, k: string) => o[k]?.family === 'bridge' && o[k].table === 'tsnetlink';
  return { chains: all.filter((o) => mine(o, 'chain')).map((o) => o.chain), rules: all.filter((o) => mine(o, 'rule')).map((o) => o.rule) };
}

/** Frames the bridge delivered to a port (transmitted by its host-side veth). */
function delivered(hostIfname: string): number {
  return ipJson<any[]>(['-s', 'link', 'show', 'dev', hostIfname])[0].stats64.tx.packets as number;
}

/** Frames delivered to `port` while a new container joins the network and its reports go out. */
async function floodedWhileJoining(port: string, id: string): Promise<number> {
  const before = delivered(port);
  await nets.connect('pf', container(id).ns, { id });
  // The kernel sends a new interface's reports at once and repeats them within a second.
  await sleep(2500);
  return delivered(port) - before;
}

let first = '';

test.after(async () => {
  for (const n of nets.list()) await nets.remove(n.name, { force: true });
  for (const b of boxes) b.close();
  nets.close();
});

test('a dual-stack network brings the filter: one table, a prerouting chain, one drop per report type; container ports in the group', async () => {
  assert.is(bridgeTable(), undefined, 'no filter before any IPv6 network');
  await nets.create({ name: 'pf', subnet: ['10.77.0.0/24', 'fd00:77::/64'] });
  const t = bridgeTable();
  assert.ok(t, 'bridge tsnetlink exists');
  assert.equal(t.chains.map((c) => [c.name, c.type, c.hook, c.prio, c.policy]), [['prerouting', 'filter', 'prerouting', -200, 'accept']]);
  const types = t.rules.map((r) => r.expr.find((e: any) => e.match?.left?.payload?.field === 'type')?.match.right);
  assert.equal(types, ['mld-listener-report', 'mld-listener-done', 'mld2-listener-report']);
  assert.ok(t.rules.every((r) => r.expr.some((e: any) => e.match?.left?.meta?.key === 'iifgroup' && e.match.right === PORT_GROUP) && r.expr.some((e: any) => 'drop' in e)), JSON.stringify(t.rules));
  const e = await nets.connect('pf', container('a').ns, { id: 'a' });
  first = e.hostIfname;
  const link = ipJson<any[]>(['-d', 'link', 'show', 'dev', first])[0];
  assert.is(Number(link.group), PORT_GROUP, `group of ${first}: ${link.group}`);
  await nets.connect('pf', container('b').ns, { id: 'b' });
  // The bridge's own reports (its link-local came with its first port) are sent to every port
  // once, and repeated within a second or two: the measurements below start after them.
  await sleep(3000);
});

test('a joining container\'s reports reach no other container; IPv6 between them still works', async () => {
  assert.is(await floodedWhileJoining(first, 'c'), 0, 'nothing was flooded to a while c came up');
  assert.is(await reach(boxes[0], 'fd00:77::4', PORT), 'c');
  assert.is(await reach(boxes[2], 'fd00:77::3', PORT), 'b');
});

test('without the filter the reports are flooded (the measurement above can fail); check names it, repair restores it', async () => {
  execFileSync('nft', ['delete', 'table', 'bridge', 'tsnetlink']);
  assert.ok((await floodedWhileJoining(first, 'd')) >= 1, 'the new container\'s reports reached a');
  const problems = await nets.check();
  assert.ok(problems.some((p) => /missing bridge tsnetlink table/.test(p)), problems.join('\n'));
  await nets.repair();
  assert.equal(await nets.check(), []);
  assert.ok(bridgeTable(), 'repair put it back');
  // d's own reports are repeated for a while after it came up: they are past before e comes.
  await sleep(3000);
  assert.is(await floodedWhileJoining(first, 'e'), 0);
});

test('the filter goes with the last IPv6 network; an IPv4-only network has none', async () => {
  await nets.create({ name: 'pf4', subnet: '10.78.0.0/24' });
  await nets.remove('pf', { force: true });
  assert.is(bridgeTable(), undefined, 'removed with the last IPv6 network');
  assert.equal(await nets.check(), []);
  await nets.remove('pf4');
});

test.run();
