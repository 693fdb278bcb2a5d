/**
 * End-to-end: monitors see link, address, route and neighbour changes made by `ip` in their own
 * netns and in another one (and only there), report a resync when flooded past their buffer,
 * never block the event loop, and watch() mirrors state that matches `ip -j`.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Rtnl, monitor, watch, createNamedNetns, deleteNamedNetns, linkRequests, type MonitorEvent, type Monitor } from '../../src/index.js';
import { ipJson, requireSandbox, withoutFallbackTunnels } from '../helpers.js';

requireSandbox('monitor');
const run = promisify(execFile);
const ipAsync = (args: string[]) => run('ip', args);

/** Collects events until `until` is true of the list, or `ms` pass. */
async function collect(m: Monitor, until: (es: MonitorEvent[]) => boolean, ms = 3000): Promise<MonitorEvent[]> {
  const got: MonitorEvent[] = [];
  const timer = setTimeout(() => void m.close(), ms);
  for await (const e of m) {
    got.push(e);
    if (until(got)) break;
  }
  clearTimeout(timer);
  await m.close();
  return got;
}

const describe = (e: MonitorEvent): string => {
  if (e.type !== 'new' && e.type !== 'del') return e.type;
  const o = e.object as unknown as Record<string, unknown>;
  return `${e.type} ${e.kind} ${String(o['name'] ?? o['cidr'] ?? o['dst'] ?? '')}`;
};

test('same netns: link, address, route and neighbour events from ip, while timers keep running', async () => {
  const m = monitor({ groups: ['link', 'addr', 'route', 'neigh'] });
  // An idle monitor waits off the JS thread: timers keep firing while no event comes.
  let ticks = 0;
  const t = setInterval(() => ticks++, 10);
  await new Promise((r) => setTimeout(r, 300));
  const idleTicks = ticks;
  const changes = (async () => {
    await ipAsync(['link', 'add', 'm0', 'type', 'veth', 'peer', 'name', 'm1']);
    await ipAsync(['link', 'set', 'm0', 'up']);
    await ipAsync(['addr', 'add', '10.3.0.1/24', 'dev', 'm0']);
    await ipAsync(['route', 'add', '10.4.0.0/24', 'via', '10.3.0.9']);
    await ipAsync(['neigh', 'add', '10.3.0.9', 'lladdr', '02:00:00:00:03:09', 'dev', 'm0']);
    await ipAsync(['link', 'del', 'm0']);
  })();
  const got = (await collect(m, (es) => es.some((e) => e.type === 'del' && e.kind === 'link' && (e.object as { name: string }).name === 'm0'))).map(describe);
  await changes;
  clearInterval(t);
  // Had the receive blocked the JS thread, no timer would have fired during the idle wait.
  assert.ok(idleTicks >= 5, `event loop kept running while the monitor waited (${idleTicks} ticks in 300 ms)`);
  for (const want of ['new link m0', 'new link m1', 'new addr 10.3.0.1/24', 'new route 10.4.0.0/24', 'new neigh 10.3.0.9', 'del link m0']) {
    assert.ok(got.includes(want), `saw "${want}" in: ${got.join(', ')}`);
  }
  assert.ok(got.indexOf('new addr 10.3.0.1/24') < got.indexOf('del link m0'), 'in kernel order');
});

test('another netns: the monitor stays there: sees ip -n changes, not this netns\'s', async () => {
  const ns = createNamedNetns('monns');
  try {
    const m = monitor({ groups: ['link', 'addr'], netns: ns });
    await ipAsync(['link', 'add', 'here0', 'type', 'veth', 'peer', 'name', 'here1']);
    await ipAsync(['-n', 'monns', 'link', 'add', 'there0', 'type', 'veth', 'peer', 'name', 'there1']);
    await ipAsync(['-n', 'monns', 'addr', 'add', '10.5.0.1/24', 'dev', 'there0']);
    const got = (await collect(m, (es) => es.some((e) => e.type === 'new' && e.kind === 'addr'))).map(describe);
    assert.ok(got.includes('new link there0') && got.includes('new addr 10.5.0.1/24'), got.join(', '));
    assert.not.ok(got.some((g) => / here[01]$/.test(g)), 'nothing from the other netns');
    await ipAsync(['link', 'del', 'here0']);
  } finally {
    ns.close();
    deleteNamedNetns('monns');
  }
});

test('flooded past its receive buffer: an explicit resync, then events again', async () => {
  const m = monitor({ groups: ['link'], receiveBufferSize: 4096 });
  const rt = Rtnl.open();
  try {
    // A synchronous burst: the JS thread cannot read while it runs, so the small buffer overflows.
    rt.batchOrThrow(Array.from({ length: 100 }, (_, i) => linkRequests.addLinkRequest(`fl${i}`, 'ifb')));
    const after = (async () => {
      await new Promise((r) => setTimeout(r, 100));
      await ipAsync(['link', 'add', 'late0', 'type', 'ifb']);
    })();
    const got = await collect(m, (es) => es.some((e) => e.type === 'new' && (e.object as { name?: string }).name === 'late0'));
    await after;
    const kinds = got.map((e) => e.type);
    assert.ok(kinds.includes('resync'), `a resync among ${kinds.length} events`);
    assert.ok(got.filter((e) => e.type === 'new').length < 100, 'events were indeed lost');
    assert.is(got.at(-1)!.type, 'new', 'and the monitor kept going');
  } finally {
    rt.batch(Array.from({ length: 100 }, (_, i) => linkRequests.deleteRequest(`fl${i}`)));
    rt.linkDel('late0');
    rt.close();
  }
});

test('watch: the dump-then-follow mirror equals ip -j link after concurrent changes', async () => {
  const w = watch('link');
  const first = await w.next();
  assert.is(first.value?.type, 'sync');
  assert.equal(withoutFallbackTunnels([...first.value!.objects.values()] as { name: string }[]).map((l) => l.name).sort(), ipJson(['link', 'show']).map((l: any) => l.ifname).sort());
  const changes = (async () => {
    for (let i = 0; i < 5; i++) await ipAsync(['link', 'add', `w${i}`, 'type', 'ifb']);
    await ipAsync(['link', 'del', 'w2']);
    await ipAsync(['link', 'set', 'w3', 'up']);
  })();
  let state: ReadonlyMap<string, unknown> = first.value!.objects;
  const deadline = Date.now() + 3000;
  for (;;) {
    const r = await w.next();
    state = r.value!.objects;
    const names = [...state.values()].map((l) => (l as { name: string }).name);
    if ((names.includes('w4') && !names.includes('w2') && [...state.values()].some((l) => (l as { name: string; up: boolean }).name === 'w3' && (l as { up: boolean }).up)) || Date.now() > deadline) break;
  }
  await changes;
  await w.return(undefined);
  const mirror = [...state.values()].map((l) => `${(l as { name: string }).name}:${(l as { up: boolean }).up}`).sort();
  const oracle = ipJson(['link', 'show']).map((l: any) => `${l.ifname}:${l.flags.includes('UP')}`).sort();
  assert.equal(mirror, oracle);
  for (const n of ['w0', 'w1', 'w3', 'w4']) await ipAsync(['link', 'del', n]);
});

test.run();
