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
import { readFileSync, writeFileSync } from 'node:fs';
import { Networks, withNetns } from '../../src/index.js';
import { PORT_GROUP } from '../../src/firewall/types.js';
import { ipJson, requireSandbox } from '../helpers.js';
import { kernelSuite } from '../kernel.js';
import { box, serveIn, reach, until, type Box } from './lib.js';

requireSandbox('portfilter.e2e');
const test = kernelSuite('portfilter', ['nftables:bridge']);

const nets = new Networks();
const boxes: Box[] = [];
const PORT = 80;

/**
 * Makes a netns's new interfaces send all their multicast listener reports within milliseconds:
 * the unsolicited-report interval is 1 s by default, and the reports for a link-local address
 * wait for its duplicate address detection (a random delay up to 1 s, then 1 s per probe), which
 * is off here as it is for the containers' global addresses. The reports and what the filter does
 * with them are the same; only the waits for them get short.
 */
function quickReports(b?: Box): void {
  const set = (): void => {
    for (const v of ['mldv1_unsolicited_report_interval', 'mldv2_unsolicited_report_interval']) writeFileSync(`/proc/sys/net/ipv6/conf/default/${v}`, '10');
    writeFileSync('/proc/sys/net/ipv6/conf/default/accept_dad', '0');
  };
  if (b) withNetns(b.ns, set);
  else set();
}

/** The multicast listener reports a netns (the container's, or this one) has sent so far (its snmp6 counters). */
function reportsSent(b?: Box): number {
  const read = (): string => readFileSync('/proc/thread-self/net/snmp6', 'utf8');
  const text = b ? withNetns(b.ns, read) : read();
  const count = (name: string): number => Number(new RegExp(`^${name}\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0);
  return count('Icmp6OutMLDv2Reports') + count('Icmp6OutType131');
}

/**
 * Waits until a netns has sent its reports: at least one, then none for 300 ms (thirty report
 * intervals after quickReports). The silence is the end of an event with no end marker of its
 * own; it is bounded, and short because the reports are made to come fast.
 */
async function reportsDone(b?: Box): Promise<void> {
  let last = -1;
  let since = Date.now();
  await until('the listener reports to be sent', () => {
    const n = reportsSent(b);
    if (n !== last) [last, since] = [n, Date.now()];
    return n > 0 && Date.now() - since >= 300;
  });
}

function container(name: string): Box {
  const b = box(name);
  quickReports(b);
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
  const c = container(id);
  const sentBefore = reportsSent(c);
  await nets.connect('pf', c.ns, { id });
  // The kernel sends a new interface's reports at once and repeats them: all of them are counted.
  await reportsDone(c);
  assert.ok(reportsSent(c) > sentBefore, `${id} sent its listener reports`);
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
  quickReports();
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
  // once, and repeated, as are a's and b's: the measurements below start after them all.
  for (const b of [undefined, ...boxes]) await reportsDone(b);
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
