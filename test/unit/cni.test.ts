/**
 * The CNI plugin's pure parts, against the spec's text (containernetworking/cni SPEC.md):
 * version negotiation, the environment and configuration checks with their error codes, the
 * result shapes of 0.4.0 / 1.0.0 / 1.1.0 with chaining, the mapping of tsnetlink errors onto
 * CNI codes, and the sh shim's VERSION answer. No root, no kernel.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CniError, toCniError, CNI_CODES } from '../../src/cni/errors.js';
import { configVersion, decodeConfig, endpointIdFor, networkNameFor, parseConfig, parseEnv, type CniEnv } from '../../src/cni/config.js';
import { compareVersions, requestVersion, SUPPORTED_VERSIONS, versionResult } from '../../src/cni/version.js';
import { buildResult, parseIpamResult } from '../../src/cni/result.js';
import { runCommand } from '../../src/cni/dispatch.js';
import { checkEndpointId, checkNetworkName } from '../../src/names.js';
import { NetworkError } from '../../src/bridge/errors.js';
import { IpamError } from '../../src/bridge/ipam.js';
import { LockTimeoutError } from '../../src/sys/locks.js';
import { StepError } from '../../src/bridge/errors.js';

const SHIM = fileURLToPath(new URL('../../../bin/tsnetlink-cni', import.meta.url));
const ADD_ENV = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'abc', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' };

function codeOf(fn: () => unknown): number {
  try {
    fn();
  } catch (e) {
    assert.instance(e, CniError, String(e));
    return (e as CniError).cniCode;
  }
  assert.unreachable('accepted');
  return -1;
}

const env = (extra: Record<string, string> = {}): CniEnv => parseEnv({ ...ADD_ENV, ...extra });
const conf = (c: Record<string, unknown>, e: CniEnv = env()) => parseConfig({ cniVersion: '1.0.0', name: 'net1', type: 'tsnetlink', ipam: { subnet: '10.5.0.0/24' }, ...c }, e);

test('versions: the supported list, negotiation through cniVersions, ordering', () => {
  assert.equal([...SUPPORTED_VERSIONS], ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']);
  assert.is(requestVersion({ cniVersion: '1.0.0' }), '1.0.0');
  assert.is(requestVersion({ cniVersions: ['0.3.1', '0.4.0', '1.0.0', '9.9.9'] }), '1.0.0', 'the newest we speak');
  assert.is(requestVersion({ cniVersions: ['0.2.0'] }), '0.1.0', 'none we speak: the spec oldest, refused later');
  assert.is(requestVersion({}), '0.1.0');
  assert.ok(compareVersions('1.10.0', '1.9.0')! > 0);
  assert.is(compareVersions('1.0', '1.0.0'), undefined);
  assert.equal(versionResult('{"cniVersion":"1.0.0"}'), { cniVersion: '1.0.0', supportedVersions: [...SUPPORTED_VERSIONS] });
  assert.equal(versionResult('not json').cniVersion, '1.1.0');
  assert.is(configVersion({ cniVersion: '1.1.0' }, 'GC'), '1.1.0');
  assert.is(codeOf(() => configVersion({ cniVersion: '1.0.0' }, 'GC')), CNI_CODES.incompatibleVersion, 'GC needs 1.1.0');
  assert.is(codeOf(() => configVersion({ cniVersion: '0.4.0' }, 'STATUS')), CNI_CODES.incompatibleVersion, 'STATUS needs 1.1.0');
  assert.is(codeOf(() => configVersion({ cniVersion: '0.2.0' }, 'ADD')), CNI_CODES.incompatibleVersion);
  assert.is(configVersion({ cniVersion: '0.3.1' }, 'ADD'), '0.3.1', 'flannel and many manifests still say 0.3.1');
  assert.is(codeOf(() => configVersion({ cniVersion: '0.3.1' }, 'CHECK')), CNI_CODES.incompatibleVersion, 'CHECK needs 0.4.0');
  assert.is(codeOf(() => configVersion({ cniVersion: 'one' }, 'ADD')), CNI_CODES.decodingFailure);
});

test('the sh shim answers VERSION like version.ts, without Node, and echoes the asked version', () => {
  for (const [stdin, asked] of [['{"cniVersion":"1.0.0"}', '1.0.0'], ['{ "cniVersion" : "0.4.0" }', '0.4.0'], ['', '1.1.0'], ['{"cniVersion":"1.0"}', '1.1.0'], ['{"cniVersion":"$(id)"}', '1.1.0']] as const) {
    const r = spawnSync(SHIM, [], { input: stdin, env: { CNI_COMMAND: 'VERSION', PATH: '/nonexistent' }, encoding: 'utf8' });
    assert.is(r.status, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout), versionResult(stdin === '' ? '{}' : stdin.replace('$(id)', 'x')), `stdin ${stdin}`);
    assert.is(JSON.parse(r.stdout).cniVersion, asked);
  }
});

test('the plugin reads its configuration even when the runtime writes it into the pipe late', () => {
  // The writer sleeps before it writes, as a busy runtime may: the plugin must wait for the
  // configuration, not take the still-empty pipe for an empty one (VERSION echoes what it read).
  const main = fileURLToPath(new URL('../../src/cni/main.js', import.meta.url));
  const r = spawnSync('sh', ['-c', `(sleep 0.5; printf '{"cniVersion":"0.4.0"}') | "${process.execPath}" "${main}"`], { env: { CNI_COMMAND: 'VERSION' }, encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  assert.is(JSON.parse(r.stdout).cniVersion, '0.4.0', r.stdout);
});

test('environment: code 4 names every missing or invalid variable; DEL needs no netns, GC and STATUS no container', () => {
  let e = catchCni(() => parseEnv({ CNI_COMMAND: 'ADD' }));
  assert.is(e.cniCode, CNI_CODES.invalidEnvironment);
  assert.match(e.message, 'CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME');
  assert.is(codeOf(() => parseEnv({})), CNI_CODES.invalidEnvironment);
  assert.is(codeOf(() => parseEnv({ CNI_COMMAND: 'FROB' })), CNI_CODES.invalidEnvironment);
  assert.is(codeOf(() => parseEnv({ ...ADD_ENV, CNI_CONTAINERID: '-x' })), CNI_CODES.invalidEnvironment);
  assert.is(codeOf(() => parseEnv({ ...ADD_ENV, CNI_IFNAME: 'a-very-long-interface-name' })), CNI_CODES.invalidEnvironment);
  assert.is(codeOf(() => parseEnv({ ...ADD_ENV, CNI_IFNAME: 'eth:0' })), CNI_CODES.invalidEnvironment);
  assert.is(codeOf(() => parseEnv({ ...ADD_ENV, CNI_ARGS: 'novalue' })), CNI_CODES.invalidEnvironment);
  e = catchCni(() => parseEnv({ CNI_COMMAND: 'DEL', CNI_IFNAME: 'eth0' }));
  assert.match(e.message, '[CNI_CONTAINERID]');
  assert.is(parseEnv({ CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'a', CNI_IFNAME: 'eth0' }).netns, '');
  assert.is(parseEnv({ CNI_COMMAND: 'GC' }).command, 'GC');
  assert.is(parseEnv({ CNI_COMMAND: 'STATUS' }).command, 'STATUS');
  const a = env({ CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.5.0.7' });
  assert.equal([...a.args], [['IgnoreUnknown', '1'], ['K8S_POD_NAME', 'web'], ['IP', '10.5.0.7']]);
  assert.equal(env({ CNI_PATH: '/a::/b' }).path, ['/a', '/b']);
  // Unknown keys only with IgnoreUnknown, as the reference plugins read CNI_ARGS.
  e = catchCni(() => env({ CNI_ARGS: 'K8S_POD_NAME=web;IP=10.5.0.7' }));
  assert.is(e.cniCode, CNI_CODES.invalidEnvironment);
  assert.match(e.message, 'unknown K8S_POD_NAME');
  assert.is(codeOf(() => env({ CNI_ARGS: 'IgnoreUnknown=0;K8S_POD_NAME=web' })), CNI_CODES.invalidEnvironment);
  assert.is(codeOf(() => env({ CNI_ARGS: 'IgnoreUnknown=maybe' })), CNI_CODES.invalidEnvironment);
  assert.equal([...env({ CNI_ARGS: 'IgnoreUnknown=true;K8S_POD_NAMESPACE=ns' }).args.keys()], ['IgnoreUnknown', 'K8S_POD_NAMESPACE']);
  assert.equal([...env({ CNI_ARGS: 'IP=10.5.0.7;MAC=02:00:00:00:00:01' }).args.keys()], ['IP', 'MAC']);
});

function catchCni(fn: () => unknown): CniError {
  try {
    fn();
  } catch (e) {
    assert.instance(e, CniError);
    return e as CniError;
  }
  throw new Error('accepted');
}

test('configuration: stdin not JSON is 6, wrong types 7, known-but-unimplemented fields 2 naming the key and value', () => {
  assert.is(codeOf(() => decodeConfig('{"cniVersion":')), CNI_CODES.decodingFailure);
  assert.is(codeOf(() => decodeConfig('[1,2]')), CNI_CODES.decodingFailure);
  assert.is(codeOf(() => conf({ name: '' })), CNI_CODES.invalidConfig);
  assert.is(codeOf(() => conf({ name: 'bad name' })), CNI_CODES.invalidConfig);
  assert.is(codeOf(() => conf({ mtu: 'big' })), CNI_CODES.invalidConfig);
  assert.is(codeOf(() => conf({ ipMasq: 'yes' })), CNI_CODES.invalidConfig);
  assert.is(codeOf(() => conf({ ipam: { subnet: '10.5.0.0/33' } })), CNI_CODES.invalidConfig);
  assert.is(codeOf(() => conf({ ipam: 'host-local' })), CNI_CODES.invalidConfig);
  assert.is(codeOf(() => conf({ runtimeConfig: { portMappings: [{ hostPort: 0, containerPort: 80 }] } })), CNI_CODES.invalidConfig);
  assert.is(codeOf(() => conf({ prevResult: 'x' })), CNI_CODES.decodingFailure);
  const u = catchCni(() => conf({ vlan: 100 }));
  assert.is(u.cniCode, CNI_CODES.unsupportedField);
  assert.match(u.message, 'vlan=100');
  assert.is(codeOf(() => conf({ isGateway: false })), CNI_CODES.unsupportedField);
  assert.is(codeOf(() => conf({ ipam: { subnet: '10.5.0.0/24', rangeStart: '10.5.0.10' } })), CNI_CODES.unsupportedField);
  assert.is(codeOf(() => conf({ runtimeConfig: { portMappings: [{ hostPort: 1, containerPort: 80, protocol: 'sctp' }] } })), CNI_CODES.unsupportedField);
});

test('configuration: Podman\'s bridge shape, capabilities, IP= and the order of requested addresses', () => {
  const c = conf({
    bridge: 'cni-podman1', isGateway: true, ipMasq: true, hairpinMode: true,
    ipam: { type: 'tsnetlink', routes: [{ dst: '0.0.0.0/0' }], ranges: [[{ subnet: '10.89.0.0/24', gateway: '10.89.0.1' }]] },
    runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: '' }, { hostPort: 53, containerPort: 53, protocol: 'UDP', hostIP: '127.0.0.1' }], mac: '02:AA:00:00:00:01' },
  }, env({ CNI_ARGS: 'IgnoreUnknown=1;IP=10.89.0.9' }));
  assert.equal([c.network, c.bridge, c.ipMasq, c.cniVersion], ['net1', 'cni-podman1', true, '1.0.0']);
  assert.equal(c.ipam, { type: 'tsnetlink', ranges: [{ subnet: '10.89.0.0/24', gateway: '10.89.0.1' }], routes: [{ dst: '0.0.0.0/0' }] });
  assert.equal(c.portMappings, [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }, { hostPort: 53, containerPort: 53, protocol: 'udp', hostIP: '127.0.0.1' }]);
  assert.equal(c.ips, ['10.89.0.9']);
  assert.is(c.mac, '02:aa:00:00:00:01');
  assert.equal(conf({ runtimeConfig: { ips: ['10.5.0.4/24'] } }, env({ CNI_ARGS: 'IP=10.5.0.9' })).ips, ['10.5.0.4'], 'runtimeConfig.ips wins over CNI_ARGS');
  assert.equal(conf({}).ipam, { type: 'tsnetlink', ranges: [{ subnet: '10.5.0.0/24' }], routes: [{ dst: '0.0.0.0/0' }] }, 'built-in IPAM routes default to the default route');
  assert.equal(conf({ ipam: { type: 'host-local', subnet: '10.5.0.0/24' } }).ipam, { type: 'delegated', plugin: 'host-local' });
  assert.is(conf({ ipMasq: false }).ipMasq, false);
});

test('names: CNI network names map onto tsnetlink names, attachments onto endpoint ids', () => {
  assert.is(networkNameFor('podman1'), 'podman1');
  const long = networkNameFor('a-rather-long-network-name');
  assert.is(checkNetworkName(long), long);
  assert.match(long, /^a-rath-[0-9a-f]{8}$/);
  assert.is.not(networkNameFor('a-rather-long-network-name2'), long);
  const cid = 'f'.repeat(64);
  const id = endpointIdFor(cid, 'eth0');
  assert.is(checkEndpointId(id), id);
  assert.ok(id.startsWith('f'.repeat(40)));
  assert.is.not(endpointIdFor(cid, 'eth1'), id, 'one id per interface');
  assert.is.not(endpointIdFor('a.b', 'c'), endpointIdFor('a', 'b.c'));
});

test('results: 0.4.0 marks IPs with version 4; 1.x does not; chained results keep and re-index the previous one', () => {
  const a = { bridge: { name: 'br0', mac: '02:42:0a:05:00:01' }, hostVeth: { name: 'veth0', mac: '0a:00:00:00:00:01' }, container: { name: 'eth0', mac: '02:42:0a:05:00:02', sandbox: '/run/netns/x' }, addresses: [{ address: '10.5.0.2/24', gateway: '10.5.0.1' }], routes: [{ dst: '0.0.0.0/0', gw: '10.5.0.1' }] };
  const r4 = buildResult('0.4.0', a);
  assert.equal(r4.ips, [{ version: '4', address: '10.5.0.2/24', gateway: '10.5.0.1', interface: 2 }]);
  assert.equal(r4.interfaces!.map((i) => i.name), ['br0', 'veth0', 'eth0']);
  const r1 = buildResult('1.0.0', a);
  assert.equal(r1.ips, [{ address: '10.5.0.2/24', gateway: '10.5.0.1', interface: 2 }]);
  assert.equal(Object.keys(r1), ['cniVersion', 'interfaces', 'ips', 'routes', 'dns']);
  const prev = { cniVersion: '1.1.0', interfaces: [{ name: 'tap0' }], ips: [{ address: '10.9.0.2/24', interface: 0 }], routes: [{ dst: '10.9.0.0/16' }], dns: { nameservers: ['10.9.0.1'] } };
  const chained = buildResult('1.1.0', a, prev);
  assert.equal(chained.interfaces!.map((i) => i.name), ['tap0', 'br0', 'veth0', 'eth0']);
  assert.equal(chained.ips!.map((i) => i.interface), [0, 3]);
  assert.equal(chained.routes, [{ dst: '10.9.0.0/16' }, { dst: '0.0.0.0/0', gw: '10.5.0.1' }]);
  assert.equal(chained.dns, { nameservers: ['10.9.0.1'] });
});

test('IPAM results: host-local 0.4.0 and 1.0.0 shapes read; IPv4 preferred, IPv6 alone read; garbage refused', () => {
  const r = parseIpamResult(JSON.stringify({ cniVersion: '0.4.0', ips: [{ version: '4', address: '10.22.0.5/16', gateway: '10.22.0.1' }], routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }], dns: {} }), 'host-local');
  assert.equal([r.ip, r.prefix, r.gateway, r.routes], ['10.22.0.5', 16, '10.22.0.1', [{ dst: '0.0.0.0/0' }]]);
  const v6 = parseIpamResult(JSON.stringify({ ips: [{ address: 'fd00::5/64', gateway: 'fd00::1' }], routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }] }), 'x');
  assert.equal([v6.ip, v6.prefix, v6.gateway, v6.routes], ['fd00::5', 64, 'fd00::1', [{ dst: '::/0' }]]);
  assert.is(codeOf(() => parseIpamResult('{"ips":[]}', 'x')), CNI_CODES.decodingFailure);
  assert.is(codeOf(() => parseIpamResult('oops', 'x')), CNI_CODES.decodingFailure);
  assert.is(codeOf(() => parseIpamResult('{"ips":[{"address":"10.0.0.5"}]}', 'x')), CNI_CODES.decodingFailure);
});

test('errors: tsnetlink codes map onto CNI codes; the object has cniVersion, code, msg, details', () => {
  assert.is(toCniError(new LockTimeoutError('/run/tsnetlink/lock', 10, 1234)).cniCode, CNI_CODES.tryAgainLater);
  assert.is(toCniError(new IpamError('EIPAMFULL', 'n', '10.0.0.0/30', 'full')).cniCode, CNI_CODES.addressUnavailable);
  assert.is(toCniError(new NetworkError('EPORTINUSE', 'taken')).cniCode, CNI_CODES.portInUse);
  assert.is(toCniError(new StepError('connect', 'port mappings', new NetworkError('EPORTINUSE', 'x'))).cniCode, CNI_CODES.portInUse, 'a step error is judged by its cause');
  const e = toCniError(new NetworkError('EBRIDGEDOWN', 'bridge gone'));
  assert.equal(e.toJSON('0.4.0'), { cniVersion: '0.4.0', code: 100, msg: 'bridge gone', details: 'tsnetlink NetworkError EBRIDGEDOWN' });
  assert.is(toCniError(new Error('plain')).cniCode, 100);
});

test('dispatch: errors printed as the spec object with the request version, exit status 1', async () => {
  const out: unknown[] = [];
  const status = await runCommand({ ...ADD_ENV }, () => JSON.stringify({ cniVersion: '0.4.0', name: 'n', ipam: { subnet: '10.0.0.0/24' }, vlan: 3 }), (o) => out.push(o));
  assert.is(status, 1);
  assert.equal(out, [{ cniVersion: '0.4.0', code: 2, msg: 'unsupported field in network config: vlan=3', details: 'not implemented by tsnetlink' }]);
  out.length = 0;
  assert.is(await runCommand({ CNI_COMMAND: 'VERSION' }, () => '{"cniVersion":"0.4.0"}', (o) => out.push(o)), 0);
  assert.equal(out, [{ cniVersion: '0.4.0', supportedVersions: [...SUPPORTED_VERSIONS] }]);
  out.length = 0;
  assert.is(await runCommand({ ...ADD_ENV }, () => { throw new Error('EIO'); }, (o) => out.push(o)), 1);
  assert.is((out[0] as { code: number }).code, CNI_CODES.ioFailure);
});

test('bandwidth: runtimeConfig.bandwidth in any key case, the configuration\'s own keys first, zero is no limit, bad limits refused before anything', () => {
  const k8s = decodeConfig(JSON.stringify({ cniVersion: '1.0.0', name: 'net1', type: 'tsnetlink', ipam: { subnet: '10.5.0.0/24' }, runtimeConfig: { bandwidth: { IngressRate: 10_000_000, IngressBurst: 4294967295, egressrate: 0, EGRESSBURST: 0 } } }));
  assert.equal(parseConfig(k8s, env()).bandwidth, { ingress: { rate: 10_000_000, burst: 4294967295 } });
  // The stock bandwidth plugin's precedence: a configuration's own limits win over the runtime's.
  assert.equal(conf({ egressRate: 1_000_000, egressBurst: 100_000, runtimeConfig: { bandwidth: { ingressRate: 5_000_000, ingressBurst: 100_000 } } }).bandwidth, { egress: { rate: 1_000_000, burst: 100_000 } });
  assert.is(conf({ runtimeConfig: { bandwidth: {} } }).bandwidth, undefined);
  assert.is(conf({}).bandwidth, undefined);
  assert.is(conf({ runtimeConfig: { bandwidth: { ingressRate: 1_000_000, ingressBurst: 100_000, shapedSubnets: [] } } }).bandwidth?.ingress?.rate, 1_000_000);
  const refused: [Record<string, unknown>, number, RegExp][] = [
    [{ ingressRate: 1_000_000 }, CNI_CODES.invalidConfig, /ingressBurst is 0 while ingressRate is set/],
    [{ egressBurst: 100_000 }, CNI_CODES.invalidConfig, /egressRate is 0/],
    [{ ingressRate: -1, ingressBurst: 100_000 }, CNI_CODES.invalidConfig, /ingressRate must be a whole number/],
    [{ ingressRate: 1.5, ingressBurst: 100_000 }, CNI_CODES.invalidConfig, /ingressRate/],
    [{ ingressRate: '1M', ingressBurst: 100_000 }, CNI_CODES.invalidConfig, /ingressRate/],
    [{ ingressRate: 1_000_000, ingressBurst: 800 }, CNI_CODES.invalidConfig, /ingressBurst.*less than one packet of 1500 bytes/],
    [{ egressRate: 1_000_000, egressBurst: 2 ** 36 }, CNI_CODES.invalidConfig, /4 GiB/],
    [{ ingressRate: 1_000_000, ingressBurst: 100_000, unshapedSubnets: ['10.0.0.0/8'] }, CNI_CODES.unsupportedField, /unshapedSubnets/],
  ];
  for (const [bw, code, re] of refused) {
    const e = catchCni(() => conf({ runtimeConfig: { bandwidth: bw } }));
    assert.is(e.cniCode, code, `${JSON.stringify(bw)}: ${e.message}`);
    assert.match(e.message, re);
  }
  // The MTU of the configuration sets the smallest bucket.
  assert.match(catchCni(() => conf({ mtu: 9000, runtimeConfig: { bandwidth: { ingressRate: 1_000_000, ingressBurst: 16_000 } } })).message, /9000 bytes/);
});

test.run();
