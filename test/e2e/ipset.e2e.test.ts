/**
 * End-to-end: IP sets made and filled through the library, read back with `ipset save` (the
 * oracle) and with our own list, tested, changed, renamed, swapped, emptied and destroyed until
 * nothing is left; a set of thousands of members listed over many messages; another netns.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { Ipset, IpsetError, NetlinkError, createAnonymousNetns, withNetns, type IpsetSet } from '../../src/index.js';
import * as I from '../../src/netlink/netfilter/ipset.js';
import { IPSET_CMD, ipsetMsgType, ipsetTypeName } from '../../src/netlink/netfilter/ipset-schema.js';
import { splitMessages } from '../../src/netlink/core/message.js';
import { dial, dumpReply } from '../../src/netlink/core/testing.js';
import { catchError, requireSandbox } from '../helpers.js';
import { fixtureBytes, kernelTest, sameAsCapture } from '../kernel.js';

const FILE = 'ipset';
requireSandbox(FILE);

const fixture = fixtureBytes;
const sameAs = sameAsCapture;

/** `ipset save` parsed: each set's type and options, and its members with their options. */
interface Saved {
  type: string;
  options: string[];
  members: Map<string, string[]>;
}
function ipsetSave(netnsPath?: string): Map<string, Saved> {
  const out = netnsPath ? execFileSync('nsenter', [`--net=${netnsPath}`, 'ipset', 'save'], { encoding: 'utf8' }) : execFileSync('ipset', ['save'], { encoding: 'utf8' });
  const sets = new Map<string, Saved>();
  for (const line of out.split('\n')) {
    // Comments are quoted and may hold spaces: keep a quoted word whole.
    const words = (line.match(/"[^"]*"|\S+/g) ?? []).map((w) => w.replace(/^"(.*)"$/, '$1'));
    const [verb, name, third, ...rest] = words;
    if (verb === 'create' && name && third) sets.set(name, { type: third, options: rest, members: new Map() });
    else if (verb === 'add' && name && third) sets.get(name)?.members.set(third, rest);
  }
  return sets;
}
function option(words: readonly string[], key: string): string | undefined {
  const i = words.indexOf(key);
  return i < 0 ? undefined : words[i + 1];
}

/** Checks our list against `ipset save`: the same sets, types, options and members with their options. */
function agree(ours: readonly IpsetSet[], theirs: Map<string, Saved>): void {
  assert.equal(ours.map((s) => s.name).sort(), [...theirs.keys()].sort());
  for (const s of ours) {
    const t = theirs.get(s.name)!;
    assert.is(s.type, t.type, s.name);
    assert.is(s.header.timeout === undefined ? undefined : String(s.header.timeout), option(t.options, 'timeout'), `${s.name} timeout`);
    assert.is(s.header.maxelem === undefined ? undefined : String(s.header.maxelem), option(t.options, 'maxelem'), `${s.name} maxelem`);
    assert.is(s.header.counters, t.options.includes('counters'), `${s.name} counters`);
    assert.is(s.header.comment, t.options.includes('comment'), `${s.name} comment`);
    if (s.header.range) assert.is(`${s.header.range.from}-${s.header.range.to}`, option(t.options, 'range'));
    if (t.options.includes('family')) assert.is(option(t.options, 'family'), s.family === 6 ? 'inet6' : 'inet');
    assert.equal(s.members.map((m) => m.text).sort(), [...t.members.keys()].sort(), `${s.name} members`);
    for (const m of s.members) {
      const o = t.members.get(m.text)!;
      assert.is(m.comment, option(o, 'comment'), `${m.text} comment`);
      assert.is(m.packets === undefined ? undefined : String(m.packets), option(o, 'packets'), `${m.text} packets`);
      assert.is(m.nomatch ?? false, o.includes('nomatch'), `${m.text} nomatch`);
      // A timeout counts down between the two reads: within a second of each other.
      if (m.timeout !== undefined) assert.ok(Math.abs(m.timeout - Number(option(o, 'timeout'))) <= 1, `${m.text} timeout ${m.timeout} / ${option(o, 'timeout')}`);
    }
  }
}

const TYPES = ['ipset', 'ipset:bitmap:ip', 'ipset:hash:ip', 'ipset:hash:net', 'ipset:hash:ip,port'];

kernelTest(test, FILE, 'bitmap:ip, hash:ip, hash:net, hash:ip,port: create, add, test, list (ipset save agrees), del, flush, rename, swap, destroy; nothing left', TYPES, () => {
  const s = Ipset.open();
  try {
    s.create({ name: 'h', type: 'hash:ip', timeout: 100, counters: true, comment: true });
    s.create({ name: 'n6', type: 'hash:net', family: 6, maxelem: 1024 });
    s.create({ name: 'p', type: 'hash:ip,port' });
    s.create({ name: 'bm', type: 'bitmap:ip', range: '10.0.0.0/24', timeout: 5 });
    assert.is(catchError(() => s.create({ name: 'h', type: 'hash:ip' })).code, 'EEXIST');
    s.create({ name: 'h', type: 'hash:ip', timeout: 100, counters: true, comment: true, exist: true });

    s.add('h', '10.0.0.5', { timeout: 50 });
    s.add('h', { ip: '10.0.0.6' }, { comment: 'web x', packets: 3, bytes: 400 });
    s.add('h', '10.9.0.0/30');
    s.add('n6', 'fd00:1::/64');
    s.add('n6', 'fd00:2::/48', { nomatch: true });
    s.add('p', '10.0.0.1,udp:53');
    s.add('p', '10.0.0.1,80');
    s.add('bm', '10.0.0.9', { timeout: 0 });
    const again = catchError(() => s.add('h', '10.0.0.5'));
    assert.instance(again, IpsetError);
    assert.is(again.code, 'IPSET_ERR_EXIST');
    s.add('h', '10.0.0.5', { exist: true, timeout: 60 });
    assert.is(catchError(() => s.add('bm', '10.1.0.1')).code, 'IPSET_ERR_BITMAP_RANGE');

    assert.is(s.test('h', '10.9.0.2'), true);
    assert.is(s.test('h', '10.9.0.9'), false);
    assert.is(s.test('p', '10.0.0.1,tcp:80'), true);
    assert.is(s.test('p', '10.0.0.1,tcp:53'), false);

    const sets = [...s.list()];
    agree(sets, ipsetSave());
    const h = sets.find((x) => x.name === 'h')!;
    assert.equal([h.members.length, h.header.elements], [6, 6]);
    assert.ok(h.members.find((m) => m.ip === '10.0.0.5')!.timeout! > 50, 'the -exist add renewed the timeout');
    assert.equal(s.names().sort(), ['bm', 'h', 'n6', 'p']);
    assert.equal(s.list('p').map((x) => x.members.map((m) => m.text).sort()), [['10.0.0.1,tcp:80', '10.0.0.1,udp:53']]);

    s.del('h', '10.0.0.6');
    assert.is(s.test('h', '10.0.0.6'), false);
    assert.is(catchError(() => s.del('h', '10.0.0.6')).code, 'IPSET_ERR_EXIST');
    s.del('h', '10.0.0.6', { exist: true });
    s.flush('h');
    assert.equal(ipsetSave().get('h')?.members.size, 0);

    s.rename('h', 'h2');
    s.create({ name: 'h3', type: 'hash:ip', timeout: 100, counters: true, comment: true });
    s.add('h3', '192.0.2.7');
    s.swap('h2', 'h3');
    assert.equal([...ipsetSave().get('h2')!.members.keys()], ['192.0.2.7']);
    assert.is(catchError(() => s.swap('h2', 'p')).code, 'IPSET_ERR_TYPE_MISMATCH');
    agree([...s.list()], ipsetSave());

    s.destroy('h3');
    assert.is(catchError(() => s.destroy('h3')).code, 'ENOENT');
    s.destroy();
    assert.equal([...ipsetSave().keys()], []);
    assert.equal([...s.list()], []);
  } finally {
    s.close();
    execFileSync('ipset', ['destroy']);
  }
}, () => {
  // On captured bytes: ipset's requests, and the kernel's list assembled.
  assert.ok(sameAs('ipset-create-bitmap.req.txt', I.createRequest({ name: 'b1', type: 'bitmap:ip', range: '10.0.0.0/24', timeout: 10 }, 3)));
  assert.ok(sameAs('ipset-add-ipport.req.txt', I.addRequest('p', 'hash:ip,port', '10.0.0.1,udp:53')));
  const bodies = splitMessages(fixture('ipset-list.reply.txt')).filter((m) => m.type === ipsetMsgType(IPSET_CMD.LIST)).map((m) => m.payload);
  const s = new Ipset(dial((req) => dumpReply(req, ipsetMsgType(IPSET_CMD.LIST), bodies), { typeName: ipsetTypeName }));
  assert.equal(s.list().map((x) => [x.name, x.members.length]), [['c', 2], ['n', 2], ['p', 1], ['bm', 1]]);
});

kernelTest(test, FILE, 'a set of 3000 members: the kernel lists it over several messages, assembled into one set that ipset save agrees with', ['ipset:hash:ip'], () => {
  const s = Ipset.open();
  try {
    s.create({ name: 'big', type: 'hash:ip', comment: true });
    for (let i = 0; i < 3000; i++) s.add('big', { ip: `10.${(i >> 8) & 0xff}.${i & 0xff}.1` }, { comment: `member ${i}` });
    const [big] = s.list('big');
    assert.ok(big && big.raw.length > 1, `listed in ${big?.raw.length} messages`);
    assert.equal([big.members.length, big.header.elements], [3000, 3000]);
    agree([big], ipsetSave());
    s.destroy('big');
  } finally {
    s.close();
    execFileSync('ipset', ['destroy']);
  }
}, () => {
  const ms = splitMessages(fixture('ipset-list-split.reply.txt')).filter((m) => m.type === ipsetMsgType(IPSET_CMD.LIST));
  assert.equal(I.assembleSets(ms.map(I.decodeSetAttrs)).map((x) => [x.name, x.members.length, x.raw.length]), [['big', 24, 2]]);
});

kernelTest(test, FILE, 'another netns: an Ipset opened inside withNetns changes only that netns', ['ipset:hash:ip'], () => {
  const ns = createAnonymousNetns();
  try {
    const s = withNetns(ns, () => Ipset.open());
    try {
      s.create({ name: 'inside', type: 'hash:ip' });
      s.add('inside', '10.0.0.1');
      assert.equal([...ipsetSave(ns.path).keys()], ['inside']);
      assert.equal([...ipsetSave().keys()], []);
      s.destroy();
      assert.equal([...ipsetSave(ns.path).keys()], []);
    } finally {
      s.close();
    }
  } finally {
    ns.close();
  }
}, () => {
  assert.ok(sameAs('ipset-destroy-all.req.txt', I.destroyRequest()));
  assert.instance(new IpsetError(new NetlinkError('IPSET_CMD_ADD', -4103)), NetlinkError);
});

test.run();
