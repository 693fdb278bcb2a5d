/**
 * The CNI plugin against what real runtimes send, and against a runtime's environment: Go's
 * case-insensitive field matching (containerd's untagged structs beside CRI-O's and Podman's
 * tagged ones), the spec versions 0.3.0 to 1.1.0, values refused before anything changes
 * (names, gateways, addresses, MACs, host ports, nesting), CNI_NETNS that is no container's
 * netns, host IPs in documentation ranges, DEL with a configuration it cannot read, and the
 * undo of a network a failed ADD created. No root; the bridge layer runs on the fake kernel.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CniError, CNI_CODES } from '../../src/cni/errors.js';
import { decodeConfig, parseConfig, parseEnv, type CniEnv } from '../../src/cni/config.js';
import { foldKey, goDecode, jsonDepth, MAX_DEPTH, NETCONF_SHAPE } from '../../src/cni/godecode.js';
import { SUPPORTED_VERSIONS } from '../../src/cni/version.js';
import { buildResult, parseIpamResult } from '../../src/cni/result.js';
import { runCommand } from '../../src/cni/dispatch.js';
import { checkContainerNetns } from '../../src/cni/attach.js';
import { checkMapping } from '../../src/firewall/spec.js';
import { MemoryFirewall, Networks } from '../../src/index.js';
import { FakeHost, FakeWorld } from '../fakes/kernel.js';

const SHIM = fileURLToPath(new URL('../../../bin/tsnetlink-cni', import.meta.url));
const ADD_ENV = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'abc', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' };
const env = (extra: Record<string, string> = {}): CniEnv => parseEnv({ ...ADD_ENV, ...extra });
const BASE = { cniVersion: '1.0.0', name: 'net1', type: 'tsnetlink', ipam: { type: 'tsnetlink', ranges: [[{ subnet: '10.88.0.0/16', gateway: '10.88.0.1' }]] } };
/** parseConfig of stdin text, as the plugin reads it. */
const parse = (c: Record<string, unknown>, e: CniEnv = env()) => parseConfig(decodeConfig(JSON.stringify({ ...BASE, ...c })), e);

function refusal(fn: () => unknown): CniError {
  try {
    fn();
  } catch (e) {
    assert.instance(e, CniError, String(e));
    return e as CniError;
  }
  throw new Error('accepted');
}

// What each runtime puts in runtimeConfig, in its own shape (read from containerd's go-cni
// types, CRI-O's ocicni and libcni; containerd 1.6's CRI sent the first one on this machine).
/** containerd (go-cni): Go structs without JSON tags, so capitalised field names. */
const CONTAINERD = {
  portMappings: [{ HostPort: 8080, ContainerPort: 80, Protocol: 'tcp', HostIP: '' }, { HostPort: 5353, ContainerPort: 53, Protocol: 'UDP', HostIP: '127.0.0.1' }],
  bandwidth: { IngressRate: 1_000_000, IngressBurst: 2_000_000, EgressRate: 1_000_000, EgressBurst: 2_000_000 },
  ipRanges: [[{ Subnet: '10.88.0.0/16', RangeStart: '', RangeEnd: '', Gateway: '' }]],
  dns: { Servers: ['10.96.0.10'], Searches: ['default.svc.cluster.local'], Options: ['ndots:5'] },
};
/** CRI-O (ocicni): tagged structs, the conventions' names. */
const CRIO = {
  portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: '' }, { hostPort: 5353, containerPort: 53, protocol: 'udp', hostIP: '127.0.0.1' }],
  bandwidth: { ingressRate: 1_000_000, ingressBurst: 2_000_000, egressRate: 1_000_000, egressBurst: 2_000_000 },
  ipRanges: [[{ subnet: '10.88.0.0/16' }]],
  dns: { servers: ['10.96.0.10'], searches: ['default.svc.cluster.local'], options: ['ndots:5'] },
  cgroupPath: '/kubepods/pod1',
};

test('Go field matching: exact name first, then Unicode simple folding; unknown keys dropped; later keys win; null unsets lists and objects', () => {
  const shape = { fields: { hostPort: 'any', ips: { items: 'any' } } } as const;
  assert.equal(goDecode({ HOSTPORT: 1 }, shape), { hostPort: 1 });
  assert.equal(goDecode({ hostport: 1, HostPort: 2 }, shape), { hostPort: 2 }, 'a later key for the same field wins, as in Go');
  assert.equal(goDecode({ hostPort: 1, other: 2 }, shape), { hostPort: 1 });
  assert.equal(goDecode({ ips: ['a'], IPS: null }, shape), {}, 'null sets a slice to nil');
  assert.equal(goDecode({ hostPort: 3, HostPort: null }, shape), { hostPort: 3 }, 'null leaves a scalar alone');
  // Go's bytes.EqualFold: the Kelvin sign is k, the long s is s; ß is not "ss".
  assert.is(foldKey('\u212Aey'), foldKey('key'));
  assert.is(foldKey('\u017Fubnet'), foldKey('subnet'));
  assert.is.not(foldKey('\u00DF'), foldKey('ss'));
  assert.equal(goDecode({ '\u212Aind': 1 }, { fields: { kind: 'any' } }), { kind: 1 });
  // A value of another kind is kept for the caller's own check to name.
  assert.equal(goDecode({ Ips: 'x' }, shape), { ips: 'x' });
});

test("containerd's untagged portMappings, bandwidth, ipRanges and dns read as CRI-O's tagged ones, on ADD and on DEL", () => {
  for (const command of ['ADD', 'DEL']) {
    const e = env({ CNI_COMMAND: command });
    const a = parse({ capabilities: { portMappings: true, bandwidth: true }, runtimeConfig: CONTAINERD }, e);
    const b = parse({ capabilities: { portMappings: true, bandwidth: true }, runtimeConfig: CRIO }, e);
    assert.equal(a.portMappings, [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }, { hostPort: 5353, containerPort: 53, protocol: 'udp', hostIP: '127.0.0.1' }], command);
    assert.equal(a.portMappings, b.portMappings);
    const rc = (x: typeof a) => x.raw['runtimeConfig'] as Record<string, any>;
    assert.equal(rc(a)['bandwidth'], CRIO.bandwidth);
    assert.equal(rc(a)['ipRanges'][0][0].subnet, '10.88.0.0/16');
    assert.equal(a.ipam, b.ipam, 'the ipRanges capability overrides ipam.ranges, whatever the case of its keys');
    assert.equal(a.ipam, { type: 'tsnetlink', ranges: [{ subnet: '10.88.0.0/16' }], routes: [{ dst: '0.0.0.0/0' }] }, command);
    assert.equal(rc(a)['dns'], CRIO.dns);
  }
  // The whole configuration follows the same rule: top-level fields, ipam, args and prevResult.
  const c = parse({
    NAME: undefined, Bridge: 'cni0', IsGateway: true, IPMasq: false, MTU: 1400, IPAM: { Type: 'tsnetlink', Ranges: [[{ Subnet: '10.88.0.0/16', Gateway: '10.88.0.1' }]], Routes: [{ Dst: '0.0.0.0/0' }] },
    Args: { CNI: { IPs: ['10.88.0.9'], Mac: '02:00:00:00:00:09' } },
    PrevResult: { CNIVersion: '1.0.0', Interfaces: [{ Name: 'tap0' }], IPs: [{ Address: '10.9.0.2/24', Interface: 0 }] },
  });
  assert.equal([c.bridge, c.ipMasq, c.mtu, c.ips, c.mac], ['cni0', false, 1400, ['10.88.0.9'], '02:00:00:00:00:09']);
  assert.equal(c.ipam, { type: 'tsnetlink', ranges: [{ subnet: '10.88.0.0/16', gateway: '10.88.0.1' }], routes: [{ dst: '0.0.0.0/0' }] });
  assert.equal(c.prevResult, { cniVersion: '1.0.0', interfaces: [{ name: 'tap0' }], ips: [{ address: '10.9.0.2/24', interface: 0 }] });
  // A known-but-unimplemented field is known under any case.
  assert.is(refusal(() => parse({ VLAN: 7 })).cniCode, CNI_CODES.unsupportedField);
  // A delegated IPAM plugin's result in Go's shape.
  const r = parseIpamResult(JSON.stringify({ CNIVersion: '0.4.0', IPs: [{ Version: '4', Address: '10.22.0.5/16', Gateway: '10.22.0.1' }], Routes: [{ Dst: '0.0.0.0/0' }], DNS: { Nameservers: ['10.22.0.1'] } }), 'host-local');
  assert.equal([r.ip, r.gateway, r.routes, r.dns], ['10.22.0.5', '10.22.0.1', [{ dst: '0.0.0.0/0' }], { nameservers: ['10.22.0.1'] }]);
});

test('versions 0.3.0 to 1.1.0: results in their shape; the shim lists exactly SUPPORTED_VERSIONS', () => {
  const a = { bridge: { name: 'br0', mac: '02:42:0a:05:00:01' }, hostVeth: { name: 'veth0' }, container: { name: 'eth0', mac: '02:42:0a:05:00:02', sandbox: '/run/netns/x' }, addresses: [{ address: '10.5.0.2/24', gateway: '10.5.0.1' }], routes: [] };
  for (const v of SUPPORTED_VERSIONS) {
    assert.is(parse({ cniVersion: v }).cniVersion, v);
    const ip = buildResult(v, a).ips![0]!;
    assert.is(ip.interface, 2, v);
    assert.is(ip.version, v.startsWith('0.') ? '4' : undefined, v);
  }
  const shim = readFileSync(SHIM, 'utf8');
  const listed = /"supportedVersions":\[([^\]]*)\]/.exec(shim)?.[1];
  assert.equal(JSON.parse(`[${listed}]`), [...SUPPORTED_VERSIONS], 'the shell answer and version.ts agree');
});

test('refused before anything changes, with code 7 and the reason: a name of another type, a gateway outside the subnet, addresses the subnet cannot give, MACs, a host port twice, forwardPolicy', () => {
  let e = refusal(() => parse({ name: 123 }));
  assert.is(e.cniCode, CNI_CODES.invalidConfig);
  assert.match(e.message, 'name must be a string, got 123');
  assert.match(refusal(() => parse({ name: undefined })).message, 'name is missing');
  e = refusal(() => parse({ ipam: { ranges: [[{ subnet: '10.73.0.0/24', gateway: '10.99.7.1' }]] } }));
  assert.is(e.cniCode, CNI_CODES.invalidConfig);
  assert.match(e.message, '10.99.7.1 is outside the subnet 10.73.0.0/24');
  for (const [ip, why] of [['10.89.0.5', 'outside'], ['10.88.0.1', 'gateway'], ['10.88.255.255', 'broadcast'], ['10.88.0.0', 'network address']] as const) {
    e = refusal(() => parse({}, env({ CNI_ARGS: `IP=${ip}` })));
    assert.is(e.cniCode, CNI_CODES.invalidConfig, ip);
    assert.match(e.message, why);
  }
  for (const mac of ['ff:ff:ff:ff:ff:ff', '01:00:5e:00:00:01', '00:00:00:00:00:00']) assert.is(refusal(() => parse({ runtimeConfig: { mac } })).cniCode, CNI_CODES.invalidConfig, mac);
  e = refusal(() => parse({ runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80 }, { HostPort: 8080, ContainerPort: 81, Protocol: 'tcp' }] } }));
  assert.is(e.cniCode, CNI_CODES.invalidConfig);
  assert.match(e.message, 'tcp/8080 is also runtimeConfig.portMappings[0]');
  assert.equal(parse({ runtimeConfig: { portMappings: [{ hostPort: 53, containerPort: 53, protocol: 'udp' }, { hostPort: 53, containerPort: 53, protocol: 'tcp' }] } }).portMappings.length, 2, 'tcp and udp of one port are two ports');
  assert.is(parse({}).forwardPolicy, 'drop');
  assert.is(parse({ forwardPolicy: 'keep' }).forwardPolicy, 'keep');
  assert.is(refusal(() => parse({ forwardPolicy: 'accept' })).cniCode, CNI_CODES.invalidConfig);
  // The runtime owns its published ports (Podman's conmon holds them open): no refusal unless asked.
  assert.is(parse({}).allowHostListener, true);
  assert.is(parse({ allowHostListener: false }).allowHostListener, false);
});

test('a configuration nested 20,000 deep is refused as undecodable (code 6) before anything runs, not by a stack overflow later', async () => {
  // Written as text: JSON.stringify itself cannot go this deep, which is the point.
  const deep = `${'{"nameservers":['.repeat(20_000)}"x"${']}'.repeat(20_000)}`;
  const text = `${JSON.stringify(BASE).slice(0, -1)},"dns":${deep}}`;
  assert.ok(jsonDepth(JSON.parse(text)) > MAX_DEPTH);
  const out: any[] = [];
  assert.is(await runCommand({ ...ADD_ENV }, () => text, (o) => out.push(o)), 1);
  assert.is(out[0].code, CNI_CODES.decodingFailure);
  assert.match(out[0].msg, `nested deeper than ${MAX_DEPTH}`);
  assert.is(refusal(() => parseIpamResult(`{"ips":[{"address":"10.0.0.2/24"}],"dns":${deep}}`, 'x')).cniCode, CNI_CODES.decodingFailure);
  assert.equal(goDecode(JSON.parse(JSON.stringify({ dns: { nameservers: ['a'] } })), NETCONF_SHAPE), { dns: { nameservers: ['a'] } });
});

test('CNI_NETNS that is no container netns: code 4 for a file, a directory, /dev/null, a mount namespace and our own netns; 3 when missing', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsn-netns-'));
  try {
    const file = join(dir, 'file');
    writeFileSync(file, 'not a namespace');
    for (const [path, what] of [[file, 'a regular file'], [dir, 'a directory'], ['/dev/null', 'a device'], ['/proc/self/ns/mnt', 'a mount namespace'], ['/proc/self/ns/net', "the host's own network namespace"]] as const) {
      const e = refusal(() => checkContainerNetns(path));
      assert.is(e.cniCode, CNI_CODES.invalidEnvironment, path);
      assert.match(e.message, what);
    }
    assert.is(refusal(() => checkContainerNetns(join(dir, 'missing'))).cniCode, CNI_CODES.unknownContainer);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('host IPs: the documentation ranges of both families are host addresses like any other; multicast and broadcast are not', () => {
  for (const [hostIp, family] of [['198.51.100.7', 4], ['192.0.2.1', 4], ['203.0.113.9', 4], ['2001:db8::7', 6]] as const) {
    assert.is(checkMapping({ hostIp, hostPort: 80, containerPort: 80, protocol: 'tcp' }, 'm', family).hostIp, hostIp);
  }
  for (const hostIp of ['224.0.0.1', '255.255.255.255']) assert.throws(() => checkMapping({ hostIp, hostPort: 80, containerPort: 80, protocol: 'tcp' }, 'm', 4));
});

test('DEL with a configuration it cannot read, or in a shape ADD accepts, succeeds when nothing is left to release', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsn-cnidel-'));
  const saved = process.env['TSNETLINK_STATE_DIR'];
  process.env['TSNETLINK_STATE_DIR'] = join(dir, 'state');
  const DEL = { ...ADD_ENV, CNI_COMMAND: 'DEL' };
  try {
    for (const stdin of ['not json', JSON.stringify({ ...BASE, cniVersion: '0.2.0' }), JSON.stringify({ ...BASE, name: 5 }), JSON.stringify({ ...BASE, runtimeConfig: { portMappings: [{ HostPort: 'x' }] } }), JSON.stringify({ ...BASE, runtimeConfig: CONTAINERD })]) {
      const out: unknown[] = [];
      assert.is(await runCommand(DEL, () => stdin, (o) => out.push(o)), 0, `${stdin}: ${JSON.stringify(out)}`);
      assert.equal(out, []);
    }
  } finally {
    if (saved === undefined) delete process.env['TSNETLINK_STATE_DIR'];
    else process.env['TSNETLINK_STATE_DIR'] = saved;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('undoCreate puts back the network, ip_forward and the FORWARD policy; forwardPolicy keep leaves the policy alone', async () => {
  const world = new FakeWorld();
  const root = join(mkdtempSync(join(tmpdir(), 'tsn-undo-')), 'state');
  const fw = new MemoryFirewall();
  const nets = new Networks({ stateDir: root, host: new FakeHost(world), firewall: fw });
  try {
    const created = await nets.createNetwork({ name: 'c1', subnet: '10.7.0.0/24', createdBy: 'cni' });
    assert.equal(created.forwarding, { enabled: [4], dropped: [4] });
    assert.equal([world.host.sysctls.get('net/ipv4/ip_forward'), fw.forwardPolicy], ['1', 'DROP']);
    assert.is(await nets.undoCreate(created), true);
    assert.equal([world.host.sysctls.get('net/ipv4/ip_forward'), fw.forwardPolicy], ['0', 'ACCEPT']);
    assert.equal(nets.list(), []);
    assert.equal(await nets.check(), []);
    // A network someone connected to meanwhile stays, and so does forwarding.
    const again = await nets.createNetwork({ name: 'c1', subnet: '10.7.0.0/24', createdBy: 'cni' });
    await nets.connect('c1', world.container().handle, { id: 'e1' });
    assert.is(await nets.undoCreate(again), false);
    assert.equal([world.host.sysctls.get('net/ipv4/ip_forward'), fw.forwardPolicy], ['1', 'DROP']);
    await nets.remove('c1', { force: true });
    world.host.sysctls.set('net/ipv4/ip_forward', '0');
    fw.forwardPolicy = 'ACCEPT';
    const kept = await nets.createNetwork({ name: 'c2', subnet: '10.8.0.0/24', forwardPolicy: 'keep' });
    assert.equal(kept.forwarding, { enabled: [4], dropped: [] });
    assert.equal([world.host.sysctls.get('net/ipv4/ip_forward'), fw.forwardPolicy], ['1', 'ACCEPT']);
  } finally {
    nets.close();
    rmSync(join(root, '..'), { recursive: true, force: true });
  }
});

test.run();
