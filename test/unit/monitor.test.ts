/** monitor() and watchWith() against the fake kernel: decoding, resync on ENOBUFS, a full queue, and the gap-free merge. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FakeKernel, dial, dumpReply, ack, payloadOf } from '../../src/netlink/core/testing.js';
import { Monitor } from '../../src/netlink/route/monitor.js';
import { watchWith } from '../../src/netlink/route/watch.js';
import { Rtnl } from '../../src/netlink/route/rtnl.js';
import { RTM } from '../../src/netlink/core/constants.js';
import * as L from '../../src/netlink/route/link.js';
import * as A from '../../src/netlink/route/addr.js';

/** The body of an RTM_NEWLINK for link `index` named `name` (built from a request builder, index patched in). */
function linkBody(index: number, name: string): Buffer {
  const b = Buffer.from(payloadOf(L.addLinkRequest(name, 'ifb')));
  b.writeInt32LE(index, 4);
  return b;
}

test('decoded change events, in order, from the async iterator and the emitter', async () => {
  const k = new FakeKernel();
  const m = new Monitor(k, { groups: ['link', 'addr'] });
  const emitted: string[] = [];
  m.on('link', (e) => emitted.push(`${e.type} ${e.object.name}`));
  k.notify(RTM.NEWLINK, linkBody(5, 'ifb5'));
  k.notify(RTM.NEWADDR, A.addAddrRequest(5, '10.0.0.5/24'));
  k.notify(RTM.NEWROUTE, Buffer.alloc(12)); // not subscribed: skipped
  k.notify(RTM.DELLINK, linkBody(5, 'ifb5'));
  const got: string[] = [];
  for await (const e of m) {
    got.push(e.type === 'new' || e.type === 'del' ? `${e.type} ${e.kind}` : e.type);
    if (got.length === 3) break;
  }
  assert.equal(got, ['new link', 'new addr', 'del link']);
  assert.equal(emitted, ['new ifb5', 'del ifb5']);
  assert.ok(k.closed, 'breaking out of the loop closes the monitor and its socket');
});

test('ENOBUFS becomes a resync event and the monitor goes on; a garbled message is undecodable, not fatal', async () => {
  const k = new FakeKernel();
  k.overrunAt.add(1);
  const m = new Monitor(k, { groups: ['link'] });
  k.notify(RTM.NEWLINK, linkBody(1, 'a'));
  k.notify(RTM.NEWLINK, Buffer.from('0000', 'hex'));
  k.notify(RTM.NEWLINK, linkBody(2, 'b'));
  const got: string[] = [];
  for await (const e of m) {
    got.push(e.type === 'new' && e.kind === 'link' ? e.object.name : e.type);
    if (got.length === 4) break;
  }
  assert.equal(got, ['a', 'resync', 'undecodable', 'b']);
  assert.is(m.stats.resyncs, 1);
});

test('a consumer that falls maxQueued behind gets a resync instead of unbounded memory', async () => {
  const k = new FakeKernel();
  const m = new Monitor(k, { groups: ['link'], maxQueued: 10 });
  const it = m[Symbol.asyncIterator]();
  for (let i = 0; i < 25; i++) k.notify(RTM.NEWLINK, linkBody(i + 1, `l${i}`));
  await new Promise((r) => setTimeout(r, 20));
  const first = await it.next();
  assert.equal(first.value, { type: 'resync', reason: 'queue-full' });
  await m.close();
});

test('watch: subscribe, dump, merge: events that raced the dump are applied after it, nothing is lost', async () => {
  const events = new FakeKernel();
  const m = new Monitor(events, { groups: ['link'] });
  // While the dump runs (links 1 and 2), link 3 appears and link 2 goes: both events are queued.
  const sock = dial((req) => {
    if (req.type !== RTM.GETLINK) return [ack(req)];
    events.notify(RTM.NEWLINK, linkBody(3, 'c'));
    events.notify(RTM.DELLINK, linkBody(2, 'b'));
    return dumpReply(req, RTM.NEWLINK, [linkBody(1, 'a'), linkBody(2, 'b')]);
  });
  const w = watchWith('link', m, new Rtnl(sock));
  const first = await w.next();
  assert.equal(first.value?.type === 'sync' && [...first.value.objects.keys()], ['1', '2']);
  const a = await w.next();
  const b = await w.next();
  assert.equal([a.value?.type, a.value?.type !== 'sync' && a.value?.key, b.value?.type, b.value?.type !== 'sync' && b.value?.key], ['new', '3', 'del', '2']);
  assert.equal([...b.value!.objects.values()].map((l) => l.name).sort(), ['a', 'c']);
  await w.return(undefined);
  assert.ok(events.closed);
});

test('watch: a resync dumps again and yields the fresh state', async () => {
  const events = new FakeKernel();
  const m = new Monitor(events, { groups: ['link'] });
  let dumps = 0;
  const sock = dial((req) => (req.type === RTM.GETLINK ? (dumps++, dumpReply(req, RTM.NEWLINK, dumps === 1 ? [linkBody(1, 'a')] : [linkBody(1, 'a'), linkBody(9, 'z')])) : [ack(req)]));
  const w = watchWith('link', m, new Rtnl(sock));
  await w.next();
  events.overrunAt.add(0);
  events.notify(RTM.NEWLINK, linkBody(9, 'z'));
  const s = await w.next();
  assert.is(s.value?.type, 'sync');
  assert.equal([...s.value!.objects.keys()], ['1', '9']);
  assert.is(dumps, 2);
  await w.return(undefined);
});

test.run();
