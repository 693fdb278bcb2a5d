/**
 * The CNI plugin's dual-stack and IPv6-only configurations, without root: host-local's range
 * sets of both families, the ipRanges capability overriding them, requested addresses and host
 * IPs of either family, the refusals (code 2 or 7, naming the field), and results of every spec
 * version listing both families with their gateways and default routes.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CniError, CNI_CODES } from '../../src/cni/errors.js';
import { decodeConfig, parseConfig, parseEnv, type CniEnv, type PluginConfig } from '../../src/cni/config.js';
import { buildResult } from '../../src/cni/result.js';
import { SUPPORTED_VERSIONS } from '../../src/cni/version.js';
import { catchError } from '../helpers.js';

const ADD_ENV = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'abc', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' };
const DUAL = [[{ subnet: '10.22.0.0/16' }], [{ subnet: 'fd00:22::/64' }]];

const env = (extra: Record<string, string> = {}): CniEnv => parseEnv({ ...ADD_ENV, ...extra });
/** A configuration read as the plugin reads stdin: Go's field matching first, then the checks. */
const conf = (c: Record<string, unknown>, e: CniEnv = env()): PluginConfig => parseConfig(decodeConfig(JSON.stringify({ cniVersion: '1.0.0', name: 'ds1', type: 'tsnetlink', ipam: { type: 'tsnetlink', ranges: DUAL }, ...c })), e);
const ranges = (c: PluginConfig) => (c.ipam.type === 'tsnetlink' ? c.ipam.ranges : undefined);
const routes = (c: PluginConfig) => (c.ipam.type === 'tsnetlink' ? c.ipam.routes : undefined);

/** The CniError `fn` throws (any other error, or none, fails the test). */
function refusal(fn: () => unknown): CniError {
  const e: unknown = catchError(fn);
  assert.instance(e, CniError, String(e));
  return e as CniError;
}

test('ranges: IPv4 + IPv6 sets, IPv6 alone, either order; the default route of each family by default', () => {
  const c = conf({});
  assert.equal(ranges(c), [{ subnet: '10.22.0.0/16' }, { subnet: 'fd00:22::/64' }]);
  assert.equal(routes(c), [{ dst: '0.0.0.0/0' }, { dst: '::/0' }]);
  assert.equal(ranges(conf({ ipam: { ranges: [DUAL[1], DUAL[0]] } })), ranges(c), 'IPv4 first, as tsnetlink orders subnets');
  const v6 = conf({ ipam: { ranges: [[{ subnet: 'fd00:23::/64', gateway: 'fd00:23::1' }]] } });
  assert.equal(ranges(v6), [{ subnet: 'fd00:23::/64', gateway: 'fd00:23::1' }]);
  assert.equal(routes(v6), [{ dst: '::/0' }]);
  assert.equal(ranges(conf({ ipam: { subnet: 'fd00:24::/64' } })), [{ subnet: 'fd00:24::/64' }], "host-local's flat subnet, IPv6");
  assert.equal(routes(conf({ ipam: { ranges: DUAL, routes: [{ dst: '::/0' }, { dst: 'fd00:99::/48', gw: 'fd00:22::9' }] } })), [{ dst: '::/0' }, { dst: 'fd00:99::/48', gw: 'fd00:22::9' }]);
});

test('ranges: refusals name the field, before anything changes', () => {
  const two4 = refusal(() => conf({ ipam: { ranges: [[{ subnet: '10.22.0.0/16' }], [{ subnet: '10.23.0.0/16' }]] } }));
  assert.is(two4.cniCode, CNI_CODES.unsupportedField);
  assert.match(two4.message, 'ipam.ranges');
  assert.is(refusal(() => conf({ ipam: { ranges: [...DUAL, [{ subnet: 'fd00:25::/64' }]] } })).cniCode, CNI_CODES.unsupportedField);
  assert.is(refusal(() => conf({ ipam: { ranges: [[{ subnet: '10.22.0.0/16' }, { subnet: '10.23.0.0/16' }]] } })).cniCode, CNI_CODES.unsupportedField, 'several ranges in one set are host-local\'s');
  assert.is(refusal(() => conf({ ipam: { ranges: [[{ subnet: 'fd00:22::/64', rangeStart: 'fd00:22::10' }]] } })).cniCode, CNI_CODES.unsupportedField);
  const out = refusal(() => conf({ ipam: { ranges: [[{ subnet: 'fd00:22::/64', gateway: 'fd00:23::1' }]] } }));
  assert.is(out.cniCode, CNI_CODES.invalidConfig);
  assert.match(out.message, 'ipam.ranges[0][0].gateway fd00:23::1 is outside the subnet fd00:22::/64');
  assert.is(refusal(() => conf({ ipam: { ranges: [[{ subnet: 'fd00:22::/130' }]] } })).cniCode, CNI_CODES.invalidConfig);
  assert.is(refusal(() => conf({ ipam: { ranges: [[{ subnet: 'fe80::/64' }]] } })).cniCode, CNI_CODES.invalidConfig, 'link-local, as the library refuses it');
  assert.is(refusal(() => conf({ ipam: { ranges: [[{ subnet: 'fd00:22::/127' }]] } })).cniCode, CNI_CODES.invalidConfig);
  // Any gateway inside the subnet, in either family (the network record keeps it).
  const gwConf = conf({ ipam: { ranges: [[{ subnet: 'fd00:22::/64', gateway: 'fd00:22::5' }]] } });
  assert.equal(gwConf.ipam.type === 'tsnetlink' ? gwConf.ipam.ranges : [], [{ subnet: 'fd00:22::/64', gateway: 'fd00:22::5' }]);
  const r = refusal(() => conf({ ipam: { ranges: [DUAL[0]], routes: [{ dst: '::/0' }] } }));
  assert.is(r.cniCode, CNI_CODES.invalidConfig);
  assert.match(r.message, 'no subnet of that family');
  assert.is(refusal(() => conf({ ipam: { ranges: DUAL, routes: [{ dst: 'fd00:99::/48', gw: '10.22.0.9' }] } })).cniCode, CNI_CODES.invalidConfig, 'a gateway of the other family');
});

test('ipRanges: the runtime\'s ranges override ipam.ranges (as host-local lets them), in either key case', () => {
  const c = conf({ ipam: { type: 'tsnetlink', ranges: [[{ subnet: '10.99.0.0/24' }]] }, runtimeConfig: { ipRanges: DUAL } });
  assert.equal(ranges(c), [{ subnet: '10.22.0.0/16' }, { subnet: 'fd00:22::/64' }]);
  assert.equal(routes(c), [{ dst: '0.0.0.0/0' }, { dst: '::/0' }]);
  const go = conf({ runtimeConfig: { IPRanges: [[{ Subnet: 'fd00:30::/64', RangeStart: '', RangeEnd: '', Gateway: '' }]] } });
  assert.equal(ranges(go), [{ subnet: 'fd00:30::/64' }], "containerd's untagged range struct, its empty fields unset");
  assert.equal(ranges(conf({ runtimeConfig: { ipRanges: [] } })), ranges(conf({})), 'an empty list gives none: the configuration\'s own stand');
  assert.match(refusal(() => conf({ runtimeConfig: { ipRanges: [[{ subnet: 'nope' }]] } })).message, 'runtimeConfig.ipRanges[0][0].subnet');
});

test('requested addresses and host IPs of either family: taken from the range of their family, refused without one', () => {
  assert.equal(conf({ runtimeConfig: { ips: ['fd00:22::7/64'] } }).ips, ['fd00:22::7']);
  assert.equal(conf({}, env({ CNI_ARGS: 'IP=fd00:22::8' })).ips, ['fd00:22::8']);
  assert.equal(conf({}, env({ CNI_ARGS: 'IP=10.22.0.8' })).ips, ['10.22.0.8']);
  const none = refusal(() => conf({ ipam: { ranges: [DUAL[0]] }, runtimeConfig: { ips: ['fd00:22::7'] } }));
  assert.is(none.cniCode, CNI_CODES.invalidConfig);
  assert.match(none.message, 'no IPv6 range');
  assert.is(refusal(() => conf({ runtimeConfig: { ips: ['fd00:23::7'] } })).cniCode, CNI_CODES.invalidConfig, 'outside the IPv6 subnet');
  assert.is(refusal(() => conf({ runtimeConfig: { ips: ['fd00:22::1'] } })).cniCode, CNI_CODES.invalidConfig, 'the IPv6 gateway');
  assert.equal(conf({ runtimeConfig: { ips: ['10.22.0.7/24', 'fd00:22::7/64'] } }).ips, ['10.22.0.7', 'fd00:22::7'], 'one address per family');
  const twice = refusal(() => conf({ runtimeConfig: { ips: ['fd00:22::7', 'fd00:22::8'] } }));
  assert.is(twice.cniCode, CNI_CODES.unsupportedField, 'two of one family');
  assert.match(twice.message + twice.details, 'one address per family');
  const pm = conf({ runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, hostIP: '::1' }, { hostPort: 8081, containerPort: 80, hostIP: '' }, { hostPort: 8082, containerPort: 80, hostIP: '127.0.0.1' }] } }).portMappings;
  assert.equal(pm, [{ hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: '::1' }, { hostPort: 8081, containerPort: 80, protocol: 'tcp' }, { hostPort: 8082, containerPort: 80, protocol: 'tcp', hostIP: '127.0.0.1' }]);
  const v6only = refusal(() => conf({ ipam: { ranges: [DUAL[1]] }, runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, hostIP: '127.0.0.1' }] } }));
  assert.is(v6only.cniCode, CNI_CODES.invalidConfig);
  assert.match(v6only.message, 'no IPv4 range to publish it from');
  assert.is(refusal(() => conf({ runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, hostIP: 'fd00::zz' }] } })).cniCode, CNI_CODES.invalidConfig);
});

test('results: both families in every version\'s shape, one interface index, each family\'s gateway and default route', () => {
  const a = {
    bridge: { name: 'ds1', mac: '02:42:0a:16:00:01' }, hostVeth: { name: 'veth0' }, container: { name: 'eth0', mac: '02:42:0a:16:00:02', sandbox: '/run/netns/x' },
    addresses: [{ address: '10.22.0.2/16', gateway: '10.22.0.1' }, { address: 'fd00:22::2/64', gateway: 'fd00:22::1' }],
    routes: [{ dst: '0.0.0.0/0', gw: '10.22.0.1' }, { dst: '::/0', gw: 'fd00:22::1' }],
  };
  for (const v of SUPPORTED_VERSIONS) {
    const r = buildResult(v, a);
    const versioned = v.startsWith('0.');
    assert.equal(r.ips, [
      { ...(versioned ? { version: '4' } : {}), address: '10.22.0.2/16', gateway: '10.22.0.1', interface: 2 },
      { ...(versioned ? { version: '6' } : {}), address: 'fd00:22::2/64', gateway: 'fd00:22::1', interface: 2 },
    ], v);
    assert.equal(r.routes, a.routes, v);
  }
  const only6 = buildResult('0.3.1', { ...a, addresses: [{ address: 'fd00:22::2/64', gateway: 'fd00:22::1' }], routes: [{ dst: '::/0', gw: 'fd00:22::1' }] });
  assert.equal(only6.ips, [{ version: '6', address: 'fd00:22::2/64', gateway: 'fd00:22::1', interface: 2 }]);
  const chained = buildResult('0.4.0', a, { cniVersion: '0.4.0', interfaces: [{ name: 'tap0' }], ips: [{ version: '6', address: 'fd00:9::2/64', interface: 0 }] });
  assert.equal(chained.ips!.map((i) => [i.version, i.interface]), [['6', 0], ['4', 3], ['6', 3]]);
});

test.run();
