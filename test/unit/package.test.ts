/**
 * The package's entry points as an app resolves them: every subpath of the exports map names a
 * built file and its types, and a class is one class whichever entry it is imported from (the
 * bundle shares chunks), so `instanceof` holds across `tsnetlink` and `tsnetlink/netlink`.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { exports: Record<string, string | { types: string; import: string }> };
const entry = (sub: string): string => join(ROOT, (pkg.exports[sub] as { import: string }).import);

test('every subpath names a built module and its types', () => {
  assert.equal(Object.keys(pkg.exports), ['.', './netlink', './firewall', './ip', './testing', './package.json']);
  for (const [sub, e] of Object.entries(pkg.exports)) {
    if (typeof e === 'string') continue;
    assert.ok(existsSync(join(ROOT, e.import)), `${sub}: ${e.import}`);
    assert.ok(existsSync(join(ROOT, e.types)), `${sub}: ${e.types}`);
  }
});

test('a class is the same class from every entry', async () => {
  const main = await import(entry('.'));
  const netlink = await import(entry('./netlink'));
  const firewall = await import(entry('./firewall'));
  const ip = await import(entry('./ip'));
  const testing = await import(entry('./testing'));
  assert.is(netlink.Rtnl, main.Rtnl);
  assert.is(netlink.NetlinkError, main.NetlinkError);
  assert.is(firewall.NftablesFirewall, main.NftablesFirewall);
  assert.is(firewall.MemoryFirewall, main.MemoryFirewall);
  assert.is(ip.parseSubnet, main.parseSubnet);
  assert.is(testing.dial, main.testing.dial);
  // The netlink entry carries no bridge networks: an app that only speaks netlink loads less.
  assert.is(netlink.Networks, undefined);
  assert.is(typeof main.Networks, 'function');
});

test.run();
