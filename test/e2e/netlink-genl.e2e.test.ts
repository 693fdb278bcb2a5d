/**
 * End-to-end: generic netlink family resolution against `genl ctrl`, and the ethtool family on
 * a veth against `ethtool -k` / `ethtool -K` as the oracle.
 */
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { Genl, ethtool, NetlinkError } from '../../src/index.js';
import { catchError, ip, ipJson, requireSandbox } from '../helpers.js';
import { kernelSuite } from '../kernel.js';

requireSandbox('netlink-genl');
const test = kernelSuite('netlink-genl', ['genl:ethtool']);

/** `ethtool -k DEV` as { name: { on, fixed } }, one entry per line, aggregates included. */
function ethtoolK(dev: string): Record<string, { on: boolean; fixed: boolean }> {
  const out: Record<string, { on: boolean; fixed: boolean }> = {};
  for (const l of execFileSync('ethtool', ['-k', dev], { encoding: 'utf8' }).split('\n')) {
    const m = /^\s*([\w-]+): (on|off)( \[fixed\])?/.exec(l);
    if (m) out[m[1] as string] = { on: m[2] === 'on', fixed: m[3] !== undefined };
  }
  return out;
}

let g: Genl;
test.before(() => {
  ip(['link', 'add', 'e0', 'type', 'veth', 'peer', 'name', 'e1']);
  g = Genl.open();
});
test.after(() => g.close());

test('family resolution agrees with genl ctrl', () => {
  const f = g.family('ethtool');
  const text = execFileSync('genl', ['ctrl', 'get', 'name', 'ethtool'], { encoding: 'utf8' });
  assert.is(f.id, parseInt(/ID: (0x[0-9a-f]+)/.exec(text)![1]!, 16));
  assert.is(f.version, Number(/Version: (0x[0-9a-f]+|\d+)/.exec(text)![1]!));
  assert.ok(f.ops.length > 10);
  const listed = g.familyList().map((x) => x.name);
  assert.ok(listed.includes('nlctrl') && listed.includes('ethtool'));
  const e = catchError(() => g.family('no-such-family'));
  assert.instance(e, NetlinkError);
  assert.is(e.code, 'ENOENT');
});

test('features of a veth: every feature ethtool -k lists, same state, same [fixed]', () => {
  const ours = ethtool.getFeatures(g, 'e0');
  const oracle = ethtoolK('e0');
  let compared = 0;
  for (const [name, f] of Object.entries(ours)) {
    const o = oracle[name];
    if (!o) continue; // ethtool hides a few internal names
    assert.equal([name, f.active, f.fixed], [name, o.on, o.fixed]);
    compared++;
  }
  assert.ok(compared >= 40, `${compared} features compared`);
});

test('set features by name; ethtool -k sees it, and we see what ethtool -K does', () => {
  ethtool.setFeatures(g, 'e0', { 'tx-tcp-segmentation': false, 'tx-udp-segmentation': false });
  assert.equal([ethtoolK('e0')['tx-tcp-segmentation']?.on, ethtoolK('e0')['tx-udp-segmentation']?.on], [false, false]);
  execFileSync('ethtool', ['-K', 'e0', 'tx-tcp-segmentation', 'on']);
  assert.is(ethtool.getFeatures(g, 'e0')['tx-tcp-segmentation']?.active, true);
  const ifindex = ipJson(['link', 'show', 'e0'])[0].ifindex as number;
  assert.is(ethtool.getFeatures(g, ifindex)['tx-tcp-segmentation']?.active, true, 'by ifindex too');
});

test('link state and a missing device', () => {
  assert.equal(ethtool.getLinkState(g, 'e0'), { link: false }, 'down veth: no link');
  ip(['link', 'set', 'e0', 'up']);
  ip(['link', 'set', 'e1', 'up']);
  assert.equal(ethtool.getLinkState(g, 'e0'), { link: true });
  const e = catchError(() => ethtool.getFeatures(g, 'nosuchdev0'));
  assert.instance(e, NetlinkError);
  assert.is(e.code, 'ENODEV');
  assert.is(e.operation, 'ethtool');
});

test.run();
