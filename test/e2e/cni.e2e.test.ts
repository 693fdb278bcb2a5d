/**
 * End-to-end, the plugin binary against the CNI spec (SPEC.md of containernetworking/cni): every
 * command at every version it speaks, every error code it can give, malformed input, DEL after
 * the netns is gone, GC with a partial list of valid attachments, STATUS with a full range,
 * delegated IPAM (the stock host-local), chaining with the stock tuning and bandwidth plugins,
 * ADD/DEL of many containers at once, and dual-stack and IPv6-only pods (ranges and the
 * ipRanges capability of both families, traffic and NAT over IPv6, DEL leaving both rulesets as they were). Oracles: ip -j, iptables-save, the state directory,
 * host-local's own files, and traffic.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import { ipJson, probeTcp, requireSandbox, tcpGet } from '../helpers.js';
import { Networks, openNetns, withNetns } from '../../src/index.js';
import { Abandon } from '../../src/bridge/steps.js';
import { att, cni, hostLinks, taggedRules, run, STOCK, PLUGIN } from './cni-lib.js';
import { NFT, nftMappings, nftRuleset } from './fw-oracle.js';

requireSandbox('cni');

const VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
let seq = 0;

/** A plugin configuration on subnet 10.60.N.0/24 (network name NAME). */
function conf(name: string, n: number, extra: Record<string, unknown> = {}, version = '1.0.0'): Record<string, unknown> {
  return { cniVersion: version, name, type: 'tsnetlink', bridge: `tsc-${name}`.slice(0, 15), ipam: { type: 'tsnetlink', ranges: [[{ subnet: `10.60.${n}.0/24`, gateway: `10.60.${n}.1` }]], routes: [{ dst: '0.0.0.0/0' }] }, ...extra };
}

/** A named netns (ip netns add), the container of one attachment. */
function netns(): { name: string; path: string } {
  const name = `cnit${++seq}`;
  run('ip', ['netns', 'add', name]);
  run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return { name, path: `/run/netns/${name}` };
}

function withPrev(c: Record<string, unknown>, prev: unknown): Record<string, unknown> {
  return { ...c, prevResult: prev };
}

function ok(o: { status: number | null; out: string; err: string }, what: string): void {
  assert.is(o.status, 0, `${what}: ${o.out} ${o.err}`);
}

function failsWith(o: { status: number | null; json: any; out: string }, code: number, what: string): void {
  assert.is(o.status, 1, `${what}: exit status (${o.out})`);
  assert.is(o.json?.code, code, `${what}: ${o.out}`);
  assert.type(o.json.msg, 'string');
  assert.ok(o.json.msg.length > 0, `${what}: msg`);
}

/**
 * Every file under `dir` with its content, sorted. Lock files and empty directories are left
 * out: the store makes them on first use and never deletes a lock file (another process may be
 * waiting on it); they record nothing.
 */
function tree(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const f of readdirSync(d)) {
      const p = join(d, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (f !== 'lock' && !f.endsWith('.lock')) out.push(`${p} ${readFileSync(p, 'utf8')}`);
    }
  };
  walk(dir);
  return out.sort();
}

/** `nft -j list ruleset` without handles and counters (allocation numbers and traffic, not state), objects in a stable order. */
function nftState(): string[] {
  const strip = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(strip);
    if (typeof v !== 'object' || v === null) return v;
    return Object.fromEntries(Object.entries(v).filter(([k]) => k !== 'handle' && k !== 'counter' && k !== 'metainfo').map(([k, x]) => [k, strip(x)]));
  };
  const all = nftRuleset().filter((o) => !('metainfo' in o));
  const empty = all.filter((o) => isEmptyIptTable(all, o)).map((o) => `${o.table.family} ${o.table.name}`);
  const inEmpty = (o: any): boolean => {
    const x = o.table ?? o.chain;
    return x !== undefined && empty.includes(`${x.family} ${o.table ? x.name : x.table}`);
  };
  return all.filter((o) => !inEmpty(o)).map((o) => JSON.stringify(strip(o))).sort();
}

/**
 * iptables-save without comments and counters, and without tables that hold nothing: iptables-nft
 * makes a table with its built-in chains (policy ACCEPT, no rule) whenever a table is first
 * touched, and keeps it; such a table filters nothing, exactly as a missing one.
 */
function iptablesState(): string[] {
  const text = run('iptables-save', []).split('\n').filter((l) => !l.startsWith('#')).map((l) => l.replace(/\[\d+:\d+\]/g, '[0:0]')).join('\n');
  return (text.match(/^\*\w+\n[\s\S]*?^COMMIT$/gm) ?? []).filter((t) => !t.split('\n').every((l) => /^(\*\w+|:[A-Z]+ ACCEPT \[0:0\]|COMMIT)$/.test(l)));
}

/** Empty base tables of iptables-nft (built-in chains, policy accept, no rule), dropped for the reason iptablesState gives. */
function isEmptyIptTable(objs: any[], o: any): boolean {
  const t = o.table;
  if (!t || !['filter', 'nat', 'raw', 'mangle'].includes(t.name)) return false;
  const mine = objs.filter((x) => (x.chain ?? x.rule ?? x.set ?? x.map)?.table === t.name && (x.chain ?? x.rule ?? x.set ?? x.map)?.family === t.family);
  return mine.every((x) => x.chain && (x.chain.policy === undefined || x.chain.policy === 'accept'));
}

/**
 * What a rolled-back ADD must leave exactly as it was: links, routes, the forwarding sysctls,
 * both rulesets (iptables-save and nft -j list ruleset, counters aside) and the state directory.
 */
function nodeState(): Record<string, unknown> {
  return {
    links: ipJson(['-d', 'link', 'show']).map((l: any) => `${l.ifname} ${l.linkinfo?.info_kind ?? ''} ${l.master ?? ''} ${l.operstate}`).sort(),
    routes: ipJson(['route', 'show', 'table', 'all']).map((r: any) => JSON.stringify(r)).sort(),
    ipForward: readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim(),
    ipv6Forwarding: readFileSync('/proc/sys/net/ipv6/conf/all/forwarding', 'utf8').trim(),
    iptables: iptablesState(),
    nft: nftState(),
    state: tree('/run/tsnetlink'),
  };
}

/** Runs `fn` and asserts that the node is afterwards exactly as it was before. */
function leavesNodeAsItWas(what: string, fn: () => void): void {
  const before = nodeState();
  fn();
  const after = nodeState();
  for (const k of Object.keys(before)) assert.equal(after[k], before[k], `${what}: ${k}`);
}

// First in the file, so that it starts from a node on which nothing was made yet: ip_forward 0,
// FORWARD ACCEPT, no chains, an empty state directory.
test('a refused or failed ADD leaves the node exactly as it was: netns that is none, addresses, MACs, host IPs and ports refused before any change; a connect that fails after the network was made undoes it', () => {
  const ns = netns();
  const c = conf('rb', 40);
  const dir = mkdtempSync('/run/cnirb-');
  const file = join(dir, 'file');
  writeFileSync(file, '');
  mkdirSync(join(dir, 'dir'));
  let deep = '"x"';
  deep = `${'{"nameservers":['.repeat(20_000)}${deep}${']}'.repeat(20_000)}`;
  const cases: [string, () => ReturnType<typeof cni>, number][] = [
    ['CNI_NETNS a regular file', () => cni('ADD', c, att('rb1', file)), 4],
    ['CNI_NETNS a directory', () => cni('ADD', c, att('rb1', join(dir, 'dir'))), 4],
    ['CNI_NETNS /dev/null', () => cni('ADD', c, att('rb1', '/dev/null')), 4],
    ['CNI_NETNS a mount namespace', () => cni('ADD', c, att('rb1', '/proc/self/ns/mnt')), 4],
    ["CNI_NETNS the host's netns", () => cni('ADD', c, att('rb1', `/proc/${process.pid}/ns/net`)), 4],
    ['IP= outside the subnet', () => cni('ADD', c, att('rb1', ns.path, 'eth0', 'IP=10.60.41.5')), 7],
    ['IP= the gateway', () => cni('ADD', c, att('rb1', ns.path, 'eth0', 'IP=10.60.40.1')), 7],
    ['IP= the broadcast address', () => cni('ADD', c, att('rb1', ns.path, 'eth0', 'IP=10.60.40.255')), 7],
    ['a broadcast MAC', () => cni('ADD', { ...c, runtimeConfig: { mac: 'ff:ff:ff:ff:ff:ff' } }, att('rb1', ns.path)), 7],
    ['a multicast MAC', () => cni('ADD', { ...c, runtimeConfig: { mac: '01:00:5e:00:00:01' } }, att('rb1', ns.path)), 7],
    ['a hostIP not on this node', () => cni('ADD', { ...c, runtimeConfig: { portMappings: [{ hostPort: 9700, containerPort: 80, protocol: 'tcp', hostIP: '10.250.0.9' }] } }, att('rb1', ns.path)), 7],
    ['one hostPort twice', () => cni('ADD', { ...c, runtimeConfig: { portMappings: [{ hostPort: 9701, containerPort: 80 }, { HostPort: 9701, ContainerPort: 81 }] } }, att('rb1', ns.path)), 7],
    ['an IPAM gateway outside the subnet', () => cni('ADD', { ...c, ipam: { ranges: [[{ subnet: '10.60.40.0/24', gateway: '10.99.7.1' }]] } }, att('rb1', ns.path)), 7],
    ['dns nested 20,000 deep', () => cni('ADD', `${JSON.stringify(c).slice(0, -1)},"dns":${deep}}`, att('rb1', ns.path)), 6],
    ['"name": 123', () => cni('ADD', { ...c, name: 123 }, att('rb1', ns.path)), 7],
  ];
  for (const [what, call, code] of cases) {
    leavesNodeAsItWas(what, () => {
      const r = call();
      failsWith(r, code, what);
      if (what === '"name": 123') assert.match(r.json.msg, 'name must be a string');
    });
  }
  // The container already has an eth0: the network is made, then the connect fails in the
  // kernel. The network, its bridge and rules, ip_forward and the FORWARD policy all go again.
  run('ip', ['-n', ns.name, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p']);
  leavesNodeAsItWas('a connect that fails after the network was made', () => {
    const r = cni('ADD', c, att('rb1', ns.path));
    assert.is(r.status, 1, r.out);
  });
  // The same on a dual-stack network: IPv6 forwarding, the ip6tables FORWARD policy and the IPv6
  // rules and routes the create made go too.
  const before6 = nodeState6();
  const ds = { ...c, name: 'rb6', bridge: 'tsc-rb6', ipam: { type: 'tsnetlink', ranges: [[{ subnet: '10.60.45.0/24' }], [{ subnet: 'fd00:45::/64' }]] } };
  failsWith(cni('ADD', { ...ds, runtimeConfig: { ips: ['fd00:46::5'] } }, fw(att('rb1', ns.path))), 7, 'an IPv6 address outside the IPv6 range');
  assert.is(cni('ADD', ds, fw(att('rb1', ns.path))).status, 1, 'a dual-stack connect that fails after the network was made');
  const after6 = nodeState6();
  for (const k of Object.keys(before6)) assert.equal(after6[k], before6[k], `dual-stack rollback: ${k}`);
  assert.equal(readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim(), '0', 'the node started with forwarding off');
  rmSync(dir, { recursive: true, force: true });
  run('ip', ['netns', 'del', ns.name]);
});

test('forwardPolicy "keep": ip_forward turned on, the FORWARD policy left as it was; by default it becomes DROP', () => {
  const policy = (): string => /^:FORWARD (\w+)/m.exec(run('iptables-save', ['-t', 'filter']))?.[1] ?? 'ACCEPT';
  const ns = netns();
  const c = conf('fwkeep', 41, { forwardPolicy: 'keep' });
  assert.equal([readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim(), policy()], ['0', 'ACCEPT']);
  ok(cni('ADD', c, att('fk1', ns.path)), 'ADD with forwardPolicy keep');
  assert.equal([readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim(), policy()], ['1', 'ACCEPT']);
  ok(cni('DEL', c, att('fk1', ns.path)), 'DEL');
  writeFileSync('/proc/sys/net/ipv4/ip_forward', '0');
  ok(cni('ADD', conf('fwdrop', 42), att('fd1', ns.path)), 'ADD with the default');
  assert.equal([readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim(), policy()], ['1', 'DROP']);
  ok(cni('DEL', conf('fwdrop', 42), att('fd1', ns.path)), 'DEL');
  run('ip', ['netns', 'del', ns.name]);
});

test("what containerd's CRI sends: untagged portMappings on ADD and every DEL; a config DEL cannot read still releases the attachment", () => {
  const ns = netns();
  const c = conf('ctrd', 43, { cniVersion: '0.3.1' });
  const rc = { runtimeConfig: { portMappings: [{ HostPort: 9800, ContainerPort: 80, Protocol: 'tcp', HostIP: '' }] } };
  const add = cni('ADD', { ...c, ...rc }, att('pod1', ns.path, 'eth0', 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=pod1'));
  ok(add, 'ADD');
  assert.is(add.json.cniVersion, '0.3.1');
  assert.is(add.json.ips[0].version, '4');
  assert.equal(readdirSync('/run/tsnetlink/ports'), ['tcp-9800']);
  for (let i = 0; i < 3; i++) ok(cni('DEL', { ...c, ...rc }, att('pod1', ns.path)), `DEL ${i + 1} (Stop, Stop, Remove)`);
  assert.equal(readdirSync('/run/tsnetlink/ports'), []);
  assert.equal(hostLinks(), []);
  // A config changed since the ADD so that it no longer parses: the record says what to release.
  ok(cni('ADD', { ...c, ...rc }, att('pod2', ns.path)), 'ADD pod2');
  ok(cni('DEL', { ...c, cniVersion: '0.2.0', mtu: 'big' }, att('pod2', ns.path)), 'DEL with an unreadable config');
  assert.equal(readdirSync('/run/tsnetlink/ports'), []);
  assert.equal(hostLinks(), [], 'veth, bridge and the CNI-made network gone');
  ok(cni('DEL', 'not json at all', att('pod2', ns.path)), 'DEL of what is gone, config not even JSON');
  run('ip', ['netns', 'del', ns.name]);
});

test('a hostIP in the IPv4 documentation range is published when the node has it', () => {
  run('ip', ['link', 'add', 'docnet0', 'type', 'veth', 'peer', 'name', 'docnet1']);
  run('ip', ['addr', 'add', '198.51.100.7/24', 'dev', 'docnet0']);
  run('ip', ['link', 'set', 'docnet0', 'up']);
  try {
    const ns = netns();
    const c = conf('docip', 44, { runtimeConfig: { portMappings: [{ hostPort: 9810, containerPort: 80, protocol: 'tcp', hostIP: '198.51.100.7' }] } });
    ok(cni('ADD', c, att('doc1', ns.path)), 'ADD with hostIP 198.51.100.7');
    assert.ok(taggedRules('docip').some((l) => l.includes('198.51.100.7') && l.includes('9810')) || readdirSync('/run/tsnetlink/ports').length === 1);
    ok(cni('DEL', c, att('doc1', ns.path)), 'DEL');
    run('ip', ['netns', 'del', ns.name]);
  } finally {
    run('ip', ['link', 'del', 'docnet0']);
  }
});

test('VERSION: every version echoed with the supported list, by the shim and by Node; Node loads no koffi for it', () => {
  for (const v of [...VERSIONS, '0.3.1']) {
    const r = cni('VERSION', { cniVersion: v });
    ok(r, `VERSION ${v}`);
    assert.equal(r.json, { cniVersion: v, supportedVersions: [...VERSIONS] });
  }
  const main = PLUGIN.replace(/bin\/tsnetlink-cni$/, 'dist/src/cni/main.js');
  const hook = 'data:text/javascript,export async function resolve(s,c,n){process._rawDebug("RESOLVE "+s);return n(s,c)}';
  const r = spawnSync(process.execPath, ['--no-warnings', '--experimental-loader', hook, main], { input: '{"cniVersion":"1.0.0"}', env: { ...process.env, CNI_COMMAND: 'VERSION' }, encoding: 'utf8' });
  assert.equal(JSON.parse(r.stdout), { cniVersion: '1.0.0', supportedVersions: [...VERSIONS] });
  const loaded = r.stderr.split('\n').filter((l) => l.startsWith('RESOLVE ')).map((l) => l.slice(8));
  assert.equal(loaded.slice(1).sort(), ['./version.js', 'node:fs'], `VERSION loads only version.js: ${loaded}`);
  // And the hook does see the FFI layer when a command needs it, so the assertion above can fail.
  const ns = netns();
  const add = spawnSync(process.execPath, ['--no-warnings', '--experimental-loader', hook, main], { input: JSON.stringify(conf('verk', 9)), env: { ...process.env, CNI_COMMAND: 'ADD', ...att('verk', ns.path) }, encoding: 'utf8' });
  assert.ok(add.stderr.includes('/libc.js'), add.stderr.slice(0, 500));
  ok(cni('DEL', conf('verk', 9), att('verk', ns.path)), 'DEL');
  // The bundled entry the shim runs: VERSION does not load the bundle of the commands, ADD does.
  const entry = PLUGIN.replace(/bin\/tsnetlink-cni$/, 'dist/bundle/tsnetlink-cni.js');
  const resolved = (command: string, input: string, extra: Record<string, string> = {}): string[] => {
    const o = spawnSync(process.execPath, ['--no-warnings', '--experimental-loader', hook, entry], { input, env: { ...process.env, CNI_COMMAND: command, ...extra }, encoding: 'utf8' });
    assert.is(o.status, 0, o.stdout + o.stderr);
    return o.stderr.split('\n').filter((l) => l.startsWith('RESOLVE ')).map((l) => l.slice(8)).slice(1);
  };
  assert.equal(resolved('VERSION', '{"cniVersion":"1.0.0"}'), ['node:fs'], 'the bundled VERSION loads nothing more');
  const ns2 = netns();
  assert.ok(resolved('ADD', JSON.stringify(conf('verk', 9)), att('verkb', ns2.path)).includes('./dispatch.js'), 'the bundled ADD loads its commands');
  ok(cni('DEL', conf('verk', 9), att('verkb', ns2.path)), 'DEL');
});

for (const v of VERSIONS) {
  test(`ADD, CHECK, DEL at ${v}: the spec's result shape, the kernel as it says, then nothing left`, () => {
    const ns = netns();
    const c = conf(`v${v.replace(/\./g, '')}`, 10 + VERSIONS.indexOf(v), {}, v);
    const add = cni('ADD', c, att(`ctr-${v}`, ns.path));
    ok(add, 'ADD');
    const r = add.json;
    assert.is(r.cniVersion, v);
    assert.equal(r.interfaces.map((i: any) => i.name).slice(0, 1), [c['bridge']]);
    assert.equal(r.interfaces[2], { name: 'eth0', mac: r.interfaces[2].mac, sandbox: ns.path });
    const ip = r.ips[0];
    assert.equal(Object.keys(ip).sort(), (v.startsWith('0.') ? ['address', 'gateway', 'interface', 'version'] : ['address', 'gateway', 'interface']));
    if (v.startsWith('0.')) assert.is(ip.version, '4');
    assert.is(ip.interface, 2);
    assert.equal(r.routes, [{ dst: '0.0.0.0/0', gw: ip.gateway }]);
    // The kernel agrees with the result.
    const addrs = ipJson(['-n', ns.name, 'addr', 'show', 'eth0']);
    assert.equal(addrs[0].addr_info.filter((a: any) => a.family === 'inet').map((a: any) => `${a.local}/${a.prefixlen}`), [ip.address]);
    assert.is(addrs[0].address, r.interfaces[2].mac);
    assert.equal(ipJson(['-n', ns.name, 'route', 'show', 'default']).map((x: any) => x.gateway), [ip.gateway]);
    const hostVeth = ipJson(['-d', 'link', 'show', r.interfaces[1].name])[0];
    assert.is(hostVeth.master, c['bridge']);
    if (v.startsWith('0.3.')) failsWith(cni('CHECK', withPrev(c, r), att(`ctr-${v}`, ns.path)), 1, 'CHECK before 0.4.0');
    else ok(cni('CHECK', withPrev(c, r), att(`ctr-${v}`, ns.path)), 'CHECK');
    ok(cni('DEL', withPrev(c, r), att(`ctr-${v}`, ns.path)), 'DEL');
    assert.equal(ipJson(['-n', ns.name, 'link', 'show']).map((l: any) => l.ifname), ['lo']);
    assert.equal(hostLinks(), [], 'the CNI-made network went with its last endpoint: bridge and veth gone');
    assert.equal(taggedRules(c['name'] as string), []);
    ok(cni('DEL', withPrev(c, r), att(`ctr-${v}`, ns.path)), 'a second DEL');
    run('ip', ['netns', 'del', ns.name]);
  });
}

test('error codes: 1, 2, 3, 4, 6, 7 for bad requests; 101, 102 for taken addresses and ports; nothing changes', () => {
  const ns = netns();
  const c = conf('errs', 20);
  failsWith(cni('ADD', 'this is not json', att('e1', ns.path)), 6, 'stdin not JSON');
  failsWith(cni('ADD', '', att('e1', ns.path)), 6, 'empty stdin');
  failsWith(cni('ADD', { ...c, cniVersion: '0.2.0' }, att('e1', ns.path)), 1, 'a version it does not speak');
  failsWith(cni('ADD', { ...c, cniVersion: '2.0.0' }, att('e1', ns.path)), 1, 'a version from the future');
  failsWith(cni('GC', { ...c, cniVersion: '1.0.0', 'cni.dev/valid-attachments': [] }, {}), 1, 'GC before 1.1.0');
  failsWith(cni('ADD', { ...c, vlan: 7 }, att('e1', ns.path)), 2, 'a field it does not implement');
  assert.match(cni('ADD', { ...c, vlan: 7 }, att('e1', ns.path)).json.msg, 'vlan=7');
  failsWith(cni('ADD', c, att('e1', '/run/netns/does-not-exist')), 3, 'a netns that does not exist');
  failsWith(cni('ADD', c, { CNI_CONTAINERID: 'e1', CNI_IFNAME: 'eth0' }), 4, 'CNI_NETNS missing');
  assert.match(cni('ADD', c, { CNI_CONTAINERID: 'e1', CNI_IFNAME: 'eth0' }).json.msg, 'CNI_NETNS');
  failsWith(cni('ADD', c, { ...att('e1', ns.path), CNI_COMMAND: undefined }), 4, 'unknown command');
  failsWith(cni('FROB', c, att('e1', ns.path)), 4, 'unknown command');
  failsWith(cni('ADD', c, att('e1', ns.path, 'eth0', 'K8S_POD_NAME=web')), 4, 'an unknown CNI_ARGS key without IgnoreUnknown');
  failsWith(cni('ADD', { ...c, mtu: 'large' }, att('e1', ns.path)), 7, 'a wrong type');
  failsWith(cni('ADD', { ...c, name: 'a/b' }, att('e1', ns.path)), 7, 'a bad name');
  failsWith(cni('ADD', { ...c, ipam: { subnet: 'ten/8' } }, att('e1', ns.path)), 7, 'a bad subnet');
  assert.equal(hostLinks(), [], 'no refusal created anything');
  assert.equal(existsSync('/run/tsnetlink/networks/errs.json'), false);
  // Taken address and port: the first ADD holds them.
  const ports = { runtimeConfig: { portMappings: [{ hostPort: 9090, containerPort: 80, protocol: 'tcp' }] } };
  const first = cni('ADD', { ...c, ...ports }, att('e1', ns.path, 'eth0', 'IgnoreUnknown=1;IP=10.60.20.50'));
  ok(first, 'first ADD');
  assert.is(first.json.ips[0].address, '10.60.20.50/24', 'IP= honoured');
  const ns2 = netns();
  failsWith(cni('ADD', c, att('e2', ns2.path, 'eth0', 'IP=10.60.20.50')), 101, 'an address that is taken');
  failsWith(cni('ADD', { ...c, ...ports }, att('e2', ns2.path)), 102, 'a host port that is taken');
  failsWith(cni('ADD', { ...c, ...ports }, att('e1', ns.path)), 100, 'the same attachment twice');
  failsWith(cni('ADD', { ...c, ipam: { ranges: [[{ subnet: '10.61.0.0/24' }]] } }, att('e2', ns2.path)), 105, 'the network exists with another subnet');
  assert.equal(ipJson(['-n', ns2.name, 'link', 'show']).map((l: any) => l.ifname), ['lo'], 'the refused containers got nothing');
  ok(cni('DEL', c, att('e1', ns.path)), 'DEL');
  assert.equal(hostLinks(), []);
});

test('DEL after the netns is gone, without CNI_NETNS, and for an attachment never added: success, all released', () => {
  const ns = netns();
  const c = conf('gone', 21, { runtimeConfig: { portMappings: [{ hostPort: 9191, containerPort: 80, protocol: 'udp' }] } });
  const keep = netns();
  ok(cni('ADD', c, att('keeper', keep.path)), 'ADD keeper');
  const add = cni('ADD', { ...c, runtimeConfig: { portMappings: [{ hostPort: 9192, containerPort: 80, protocol: 'tcp' }] } }, att('doomed', ns.path));
  ok(add, 'ADD');
  run('ip', ['netns', 'del', ns.name]);
  ok(cni('DEL', withPrev(c, add.json), att('doomed', ns.path)), 'DEL after the netns is gone');
  ok(cni('DEL', c, { CNI_CONTAINERID: 'doomed', CNI_IFNAME: 'eth0' }), 'DEL without CNI_NETNS');
  ok(cni('DEL', c, att('never-added', '/run/netns/none')), 'DEL of an attachment never added');
  const recs = readdirSync('/run/tsnetlink/networks/gone/endpoints');
  assert.is(recs.length, 1, `only the keeper is left: ${recs}`);
  assert.equal(taggedRules('gone').filter((l) => l.includes('9192')), [], 'its port rules are gone');
  assert.ok(taggedRules('gone').some((l) => l.includes('9191')), "the keeper's rules stay");
  assert.is(readdirSync('/run/tsnetlink/networks/gone/ips').length, 1);
  assert.equal(readdirSync('/run/tsnetlink/ports'), ['udp-9191']);
  ok(cni('DEL', c, att('keeper', keep.path)), 'DEL keeper');
  assert.equal(hostLinks(), []);
  assert.equal(readdirSync('/run/tsnetlink/ports'), []);
});

test('DEL after an ADD that was killed while it made the network (a RunPodSandbox past its deadline): the half-made network goes, bridge, rules and record', async () => {
  // The create is abandoned at a step as a SIGKILL would leave it (no rollback): the record says
  // "creating", and what the steps before made is still there. The runtime then sends its DEL.
  for (const step of ['create bridge', 'firewall', 'save network']) {
    const c = conf('halfmade', 22);
    const nets = new Networks({ faults: (op, at) => {
      if (op === 'create' && at === step) throw new Abandon(op, at);
    } });
    try {
      const e = await nets.createNetwork({ name: 'halfmade', subnet: '10.60.22.1/24', bridge: c['bridge'] as string, createdBy: 'cni', gatewayMode: 'nat' }).catch((x: unknown) => x);
      assert.instance(e, Abandon, `${step}: ${String(e)}`);
    } finally {
      nets.close();
    }
    assert.is(JSON.parse(readFileSync('/run/tsnetlink/networks/halfmade.json', 'utf8')).state, 'creating', `${step}: the record a killed create leaves`);
    const ns = netns();
    ok(cni('DEL', c, att('killed-add', ns.path)), `${step}: DEL`);
    assert.equal(hostLinks(), [], `${step}: links`);
    assert.equal(taggedRules('halfmade'), [], `${step}: rules`);
    if (NFT) assert.not.ok(JSON.stringify(nftRuleset()).includes('tsnetlink:halfmade'), `${step}: nft`);
    assert.equal(tree('/run/tsnetlink').filter((f) => f.includes('halfmade')), [], `${step}: state`);
    run('ip', ['netns', 'del', ns.name]);
  }
});

test('CHECK fails (103) when the container lost its address or the rules were flushed, and needs prevResult (7)', () => {
  const ns = netns();
  const c = conf('chk', 22, { runtimeConfig: { portMappings: [{ hostPort: 9393, containerPort: 80, protocol: 'tcp' }] } });
  const add = cni('ADD', c, att('chk1', ns.path));
  ok(add, 'ADD');
  ok(cni('CHECK', withPrev(c, add.json), att('chk1', ns.path)), 'CHECK after ADD');
  failsWith(cni('CHECK', c, att('chk1', ns.path)), 7, 'CHECK without prevResult');
  run('ip', ['-n', ns.name, 'addr', 'flush', 'dev', 'eth0']);
  const bad = cni('CHECK', withPrev(c, add.json), att('chk1', ns.path));
  failsWith(bad, 103, 'CHECK without the address');
  assert.match(bad.json.msg, 'lacks');
  run('ip', ['-n', ns.name, 'addr', 'add', add.json.ips[0].address, 'dev', 'eth0']);
  run('ip', ['-n', ns.name, 'route', 'add', 'default', 'via', add.json.ips[0].gateway]);
  ok(cni('CHECK', withPrev(c, add.json), att('chk1', ns.path)), 'CHECK once restored');
  if (NFT) for (const m of new Set(nftMappings().map((x) => x.map))) run('nft', ['flush', 'map', 'inet', 'tsnetlink', m]);
  else run('iptables', ['-t', 'nat', '-F', 'TSN-HOSTPORTS']);
  failsWith(cni('CHECK', withPrev(c, add.json), att('chk1', ns.path)), 103, 'CHECK with the DNAT rules flushed');
  ok(cni('DEL', c, att('chk1', ns.path)), 'DEL');
});

test('GC with a partial valid list frees the others (IPs, host ports, rules, veths) and keeps the valid one working', async () => {
  const c = conf('gcnet', 23, {}, '1.1.0');
  const boxes = [netns(), netns(), netns()];
  const adds = boxes.map((b, i) => cni('ADD', { ...c, runtimeConfig: { portMappings: [{ hostPort: 9500 + i, containerPort: 80, protocol: 'tcp' }] } }, att(`gc${i}`, b.path)));
  adds.forEach((a, i) => ok(a, `ADD ${i}`));
  assert.is(hostLinks().length, 4, 'bridge and three veths');
  ok(cni('GC', { ...c, 'cni.dev/valid-attachments': [{ containerID: 'gc0', ifname: 'eth0' }] }, {}), 'GC');
  assert.equal(readdirSync('/run/tsnetlink/networks/gcnet/ips'), ['10.60.23.2']);
  assert.equal(readdirSync('/run/tsnetlink/ports'), ['tcp-9500']);
  assert.is(hostLinks().length, 2, 'bridge and the valid veth');
  for (const i of [1, 2]) assert.equal(ipJson(['-n', boxes[i]!.name, 'link', 'show']).map((l: any) => l.ifname), ['lo'], `gc${i} lost its interface`);
  assert.equal(taggedRules('gcnet').filter((l) => /950[12]/.test(l)), []);
  ok(cni('CHECK', withPrev(c, adds[0]!.json), att('gc0', boxes[0]!.path)), 'the valid attachment still checks');
  // It still answers on its published port, from the host's loopback.
  const ns0 = openNetns({ name: boxes[0]!.name });
  const accepted: net.Socket[] = [];
  const server = withNetns(ns0, () => net.createServer((s) => accepted.push(s.end('gc0 here'))).listen(80));
  try {
    assert.is(await tcpGet('127.0.0.1', 9500), 'gc0 here');
  } finally {
    // An accepted socket whose last FIN is lost when GC removes the path would keep this process alive.
    for (const s of accepted) s.destroy();
    server.close();
    ns0.close();
  }
  ok(cni('GC', { ...c, 'cni.dev/valid-attachments': [] }, {}), 'GC of everything');
  assert.equal(hostLinks(), [], 'the CNI-made network goes with its last attachment');
  failsWith(cni('GC', { ...c }, {}), 7, 'GC without the list');
});

test('STATUS: ready, then 50 once the only address is taken; needs 1.1.0', () => {
  const c = { ...conf('full', 24, {}, '1.1.0'), ipam: { type: 'tsnetlink', ranges: [[{ subnet: '10.60.24.0/30', gateway: '10.60.24.1' }]] } };
  ok(cni('STATUS', c, {}), 'STATUS before the network exists');
  const ns = netns();
  ok(cni('ADD', c, att('only', ns.path)), 'ADD the one container a /30 holds');
  const st = cni('STATUS', c, {});
  failsWith(st, 50, 'STATUS with the range full');
  assert.match(st.json.msg, 'no free address');
  failsWith(cni('ADD', c, att('second', netns().path)), 101, 'ADD with the range full');
  failsWith(cni('STATUS', { ...c, cniVersion: '1.0.0' }, {}), 1, 'STATUS at 1.0.0');
  ok(cni('DEL', c, att('only', ns.path)), 'DEL');
  ok(cni('STATUS', c, {}), 'ready again');
});

test('delegated IPAM: the stock host-local hands out the address, DEL and a failed ADD give it back', () => {
  const dataDir = mkdtempSync('/run/hostlocal-');
  const c = { ...conf('dlg', 25), ipam: { type: 'host-local', ranges: [[{ subnet: '10.60.25.0/24', rangeStart: '10.60.25.100', rangeEnd: '10.60.25.110', gateway: '10.60.25.1' }]], routes: [{ dst: '0.0.0.0/0' }], dataDir } };
  const ns = netns();
  const add = cni('ADD', c, att('dl1', ns.path));
  ok(add, 'ADD');
  assert.is(add.json.ips[0].address, '10.60.25.100/24');
  const held = (): string[] => readdirSync(join(dataDir, 'dlg')).filter((f) => /^\d/.test(f));
  assert.equal(held(), ['10.60.25.100']);
  assert.equal(readFileSync(join(dataDir, 'dlg', '10.60.25.100'), 'utf8').split(/\s/)[0], 'dl1');
  assert.equal(readdirSync('/run/tsnetlink/networks/dlg/ips'), ['10.60.25.100'], 'tsnetlink records the same address');
  ok(cni('CHECK', withPrev(c, add.json), att('dl1', ns.path)), 'CHECK (host-local checked too)');
  // A failed ADD (eth0 already exists in that netns) releases host-local's address.
  const dup = cni('ADD', c, att('dl2', ns.path));
  assert.is(dup.status, 1, dup.out);
  assert.equal(held(), ['10.60.25.100'], 'the failed ADD gave its address back');
  // The same container and interface again: refused, and its rollback must not release the
  // live attachment's lease, which this call did not allocate.
  failsWith(cni('ADD', c, att('dl1', ns.path)), 100, 'the same attachment twice');
  assert.equal(held(), ['10.60.25.100'], "the live attachment's lease is kept");
  ok(cni('CHECK', withPrev(c, add.json), att('dl1', ns.path)), 'the live attachment still checks');
  ok(cni('DEL', c, att('dl1', ns.path)), 'DEL');
  assert.equal(held(), []);
  ok(cni('DEL', c, att('dl1', ns.path)), 'DEL again');
  failsWith(cni('ADD', { ...c, ipam: { type: 'no-such-ipam' } }, att('dl3', netns().path)), 5, 'an IPAM plugin not on CNI_PATH');
});

test('chaining: tuning and bandwidth after tsnetlink take its result; DEL in reverse order', () => {
  const ns = netns();
  const c = conf('chain', 26);
  const add = cni('ADD', c, att('ch1', ns.path));
  ok(add, 'ADD');
  const tuning = { cniVersion: '1.0.0', name: 'chain', type: 'tuning', sysctl: { 'net.ipv4.conf.eth0.rp_filter': '2' }, prevResult: add.json };
  const t = cni('ADD', tuning, att('ch1', ns.path), join(STOCK, 'tuning'));
  ok(t, 'tuning ADD');
  assert.is(run('ip', ['netns', 'exec', ns.name, 'cat', '/proc/sys/net/ipv4/conf/eth0/rp_filter']).trim(), '2');
  const bw = { cniVersion: '1.0.0', name: 'chain', type: 'bandwidth', egressRate: 1_000_000, egressBurst: 100_000, prevResult: t.json };
  const b = cni('ADD', bw, att('ch1', ns.path), join(STOCK, 'bandwidth'));
  ok(b, 'bandwidth ADD');
  const hostVeth = add.json.interfaces[1].name;
  assert.match(run('tc', ['qdisc', 'show', 'dev', hostVeth]), /ingress|tbf/);
  ok(cni('DEL', { ...bw, prevResult: b.json }, att('ch1', ns.path), join(STOCK, 'bandwidth')), 'bandwidth DEL');
  ok(cni('DEL', { ...tuning, prevResult: b.json }, att('ch1', ns.path), join(STOCK, 'tuning')), 'tuning DEL');
  ok(cni('DEL', withPrev(c, b.json), att('ch1', ns.path)), 'tsnetlink DEL');
  assert.equal(hostLinks(), []);
  // As a later plugin of a chain, tsnetlink passes the previous result on, re-indexed.
  const ns2 = netns();
  const prev = { cniVersion: '1.0.0', interfaces: [{ name: 'dummy0' }], ips: [{ address: '192.0.2.5/24', interface: 0 }], routes: [], dns: { nameservers: ['192.0.2.1'] } };
  const second = cni('ADD', withPrev(c, prev), att('ch2', ns2.path));
  ok(second, 'ADD with a prevResult');
  assert.equal(second.json.interfaces[0], { name: 'dummy0' });
  assert.equal(second.json.ips.map((i: any) => i.interface), [0, 3]);
  assert.equal(second.json.dns, { nameservers: ['192.0.2.1'] });
  ok(cni('DEL', c, att('ch2', ns2.path)), 'DEL');
});

test('ADD and DEL of 12 containers at once on a network none of them created: distinct addresses, then nothing left', async () => {
  const c = conf('burst', 27, { runtimeConfig: { portMappings: [] } });
  const boxes = Array.from({ length: 12 }, () => netns());
  const call = (cmd: string, i: number): Promise<{ status: number | null; out: string }> =>
    new Promise((resolve) => {
      const { spawn } = require_('node:child_process');
      const p = spawn(PLUGIN, [], { env: { ...process.env, CNI_COMMAND: cmd, CNI_PATH: STOCK, ...att(`burst${i}`, boxes[i]!.path) } });
      let out = '';
      p.stdout.on('data', (d: Buffer) => (out += d));
      p.on('close', (status: number | null) => resolve({ status, out }));
      p.stdin.end(JSON.stringify(c));
    });
  const adds = await Promise.all(boxes.map((_, i) => call('ADD', i)));
  adds.forEach((a, i) => assert.is(a.status, 0, `ADD ${i}: ${a.out}`));
  const ips = adds.map((a) => JSON.parse(a.out).ips[0].address);
  assert.is(new Set(ips).size, 12, `distinct: ${ips}`);
  const ls = run(process.execPath, [PLUGIN.replace(/bin\/tsnetlink-cni$/, 'dist/src/cli/main.js'), 'network', 'inspect', 'burst']);
  assert.is(JSON.parse(ls).endpoints.length, 12, 'tsnetlink network inspect sees what CNI made');
  // Container to container through the bridge.
  run('ip', ['netns', 'exec', boxes[0]!.name, 'busybox', 'ping', '-c', '1', '-W', '2', ips[5].split('/')[0]]);
  const dels = await Promise.all(boxes.map((_, i) => call('DEL', i)));
  dels.forEach((d, i) => assert.is(d.status, 0, `DEL ${i}: ${d.out}`));
  assert.equal(hostLinks(), []);
  assert.equal(existsSync('/run/tsnetlink/networks/burst.json'), false);
});

/** ip6tables-save as iptablesState reads iptables-save: no comments, counters or empty tables. */
function ip6tablesState(): string[] {
  const text = run('ip6tables-save', []).split('\n').filter((l) => !l.startsWith('#')).map((l) => l.replace(/\[\d+:\d+\]/g, '[0:0]')).join('\n');
  return (text.match(/^\*\w+\n[\s\S]*?^COMMIT$/gm) ?? []).filter((t) => !t.split('\n').every((l) => /^(\*\w+|:[A-Z]+ ACCEPT \[0:0\]|COMMIT)$/.test(l)));
}

/** What DEL must leave as it was on a dual-stack network: nodeState, IPv6 routes and the IPv6 ruleset too. */
function nodeState6(): Record<string, unknown> {
  return { ...nodeState(), routes6: ipJson(['-6', 'route', 'show', 'table', 'all']).map((r: any) => JSON.stringify(r)).sort(), ip6tables: ip6tablesState() };
}

/**
 * The attachment environment with the firewall backend of this run: cni() passes the plugin a
 * clean environment, and the dual-stack tests run on the nftables backend too
 * (TSNETLINK_FIREWALL=nftables node scripts/test.mjs --e2e cni).
 */
function fw(e: Record<string, string>): Record<string, string | undefined> {
  return { ...e, TSNETLINK_FIREWALL: process.env['TSNETLINK_FIREWALL'] };
}

/** Addresses of eth0 inside a named netns, as `ip -j addr` gives them: "family local/prefix scope". */
function addrsIn(ns: string): string[] {
  return ipJson(['-n', ns, 'addr', 'show', 'eth0']).flatMap((i: any) => i.addr_info).map((a: any) => `${a.family} ${a.local}/${a.prefixlen} ${a.scope}`);
}

/** The default route's gateway of a family inside a named netns. */
function defaultVia(ns: string, family: 4 | 6): string[] {
  return ipJson([`-${family}`, '-n', ns, 'route', 'show', 'default']).map((r: any) => `${r.gateway} ${r.dev}`);
}

/** Whether the node's rules (iptables, ip6tables, nft) still name a network. */
function rulesName(network: string): string[] {
  const tag = `tsnetlink:${network}`;
  return [...run('iptables-save', []).split('\n'), ...run('ip6tables-save', []).split('\n'), ...nftRuleset().map((o) => JSON.stringify(o))].filter((l) => l.includes(`"${tag}"`) || l.includes(`"${tag}/`) || l.includes(`${tag}/`));
}

// Before the dual-stack test: its first ADD turns IPv6 forwarding on (a host change that stays,
// as with Docker), which this test does first so that the dual-stack DEL can be compared whole.
test('IPv6-only: ranges of one IPv6 set give the pod only an IPv6 address and default route; IP= of IPv6; IPv4 refused; DEL leaves nothing', () => {
  const ns = netns();
  const ns2 = netns();
  const c = { cniVersion: '0.4.0', name: 'v6only', type: 'tsnetlink', bridge: 'tsc-v6only', ipam: { type: 'tsnetlink', ranges: [[{ subnet: 'fd00:62::/64' }]] } };
  const add = cni('ADD', c, fw(att('v6a', ns.path)));
  ok(add, 'ADD');
  assert.equal(add.json.ips, [{ version: '6', address: 'fd00:62::2/64', gateway: 'fd00:62::1', interface: 2 }]);
  assert.equal(add.json.routes, [{ dst: '::/0', gw: 'fd00:62::1' }]);
  assert.equal(addrsIn(ns.name).filter((a) => !a.endsWith(' link')), ['inet6 fd00:62::2/64 global'], 'no IPv4 address');
  assert.equal(defaultVia(ns.name, 6), ['fd00:62::1 eth0']);
  assert.equal(defaultVia(ns.name, 4), []);
  ok(cni('CHECK', withPrev(c, add.json), fw(att('v6a', ns.path))), 'CHECK');
  failsWith(cni('ADD', c, fw(att('v6b', ns2.path, 'eth0', 'IP=10.62.0.9'))), 7, 'IP= of IPv4 on an IPv6-only network');
  const b = cni('ADD', c, fw(att('v6b', ns2.path, 'eth0', 'IP=fd00:62::9')));
  ok(b, 'ADD with IP= of IPv6');
  assert.equal(b.json.ips.map((i: any) => i.address), ['fd00:62::9/64']);
  run('ip', ['netns', 'exec', ns.name, 'busybox', 'ping', '-c', '1', '-W', '2', 'fd00:62::9']);
  ok(cni('DEL', c, fw(att('v6a', ns.path))), 'DEL a');
  ok(cni('DEL', c, fw(att('v6b', ns2.path))), 'DEL b');
  assert.equal(hostLinks(), []);
  assert.equal(rulesName('v6only'), []);
  assert.equal(existsSync('/run/tsnetlink/networks/v6only.json'), false);
  run('ip', ['netns', 'del', ns.name]);
  run('ip', ['netns', 'del', ns2.name]);
});

test('dual stack: the ipRanges capability over ipam.ranges; both addresses and default routes in the 0.3.1 result and the netns; IPv6 pod to pod, published port and masquerade; mismatch refused; DEL leaves the node as it was', async () => {
  // An upstream host on an uplink with an address of each family; it has no route to the pods,
  // so a reply reaches them only if their traffic left with the node's address.
  const HOST4 = '10.97.0.1';
  const HOST6 = '2001:db8:97::1';
  run('ip', ['netns', 'add', 'cniup']);
  run('ip', ['link', 'add', 'cniup0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', 'cniup']);
  run('ip', ['addr', 'add', `${HOST4}/24`, 'dev', 'cniup0']);
  run('ip', ['addr', 'add', `${HOST6}/64`, 'dev', 'cniup0', 'nodad']);
  // No link-local address: one that the kernel adds a moment after the link is up would show
  // up in the routes compared before and after.
  run('ip', ['link', 'set', 'cniup0', 'addrgenmode', 'none']);
  run('ip', ['link', 'set', 'cniup0', 'up']);
  run('ip', ['-n', 'cniup', 'addr', 'add', '10.97.0.2/24', 'dev', 'eth0']);
  run('ip', ['-n', 'cniup', 'addr', 'add', '2001:db8:97::2/64', 'dev', 'eth0', 'nodad']);
  run('ip', ['-n', 'cniup', 'link', 'set', 'eth0', 'up']);
  run('ip', ['-n', 'cniup', 'link', 'set', 'lo', 'up']);
  const up = openNetns({ name: 'cniup' });
  const seen: string[] = [];
  const upServer = withNetns(up, () => net.createServer((s) => {
    seen.push(s.remoteAddress!.replace('::ffff:', ''));
    s.end('up');
  }).listen(9999));
  const [a, b] = [netns(), netns()];
  const nsA = openNetns({ name: a.name });
  const nsB = openNetns({ name: b.name });
  const servers = [withNetns(nsA, () => net.createServer((s) => s.end('a')).listen(80)), withNetns(nsB, () => net.createServer((s) => s.end('b')).listen(80))];
  const before = nodeState6();
  // 0.3.1, as many Kubernetes manifests still say; CHECK came with 0.4.0.
  const ranges = [[{ subnet: '10.61.0.0/24' }], [{ subnet: 'fd00:61::/64' }]];
  const c = { cniVersion: '0.3.1', name: 'ds', type: 'tsnetlink', bridge: 'tsc-ds', isDefaultGateway: true, capabilities: { portMappings: true, ipRanges: true }, ipam: { type: 'tsnetlink', ranges: [[{ subnet: '10.99.0.0/24' }]] } };
  const withA = { ...c, runtimeConfig: { ipRanges: ranges, portMappings: [{ hostPort: 9610, containerPort: 80, protocol: 'tcp', hostIP: '' }] } };
  const withB = { ...c, runtimeConfig: { ipRanges: ranges } };
  try {
    const addA = cni('ADD', withA, fw(att('dsa', a.path)));
    ok(addA, 'ADD a');
    assert.equal(addA.json.ips, [
      { version: '4', address: '10.61.0.2/24', gateway: '10.61.0.1', interface: 2 },
      { version: '6', address: 'fd00:61::2/64', gateway: 'fd00:61::1', interface: 2 },
    ]);
    assert.equal(addA.json.routes, [{ dst: '0.0.0.0/0', gw: '10.61.0.1' }, { dst: '::/0', gw: 'fd00:61::1' }]);
    assert.equal(addrsIn(a.name).filter((x) => !x.endsWith(' link')), ['inet 10.61.0.2/24 global', 'inet6 fd00:61::2/64 global']);
    assert.equal([defaultVia(a.name, 4), defaultVia(a.name, 6)], [['10.61.0.1 eth0'], ['fd00:61::1 eth0']]);
    const addB = cni('ADD', withB, fw(att('dsb', b.path)));
    ok(addB, 'ADD b');
    assert.equal(addB.json.ips.map((i: any) => i.address), ['10.61.0.3/24', 'fd00:61::3/64']);
    // One requested address per family (runtimeConfig.ips, as kubelet's static IPs come).
    const cNs = netns();
    const withC = { ...c, runtimeConfig: { ipRanges: ranges, ips: ['10.61.0.50/24', 'fd00:61::50/64'] } };
    const addC = cni('ADD', withC, fw(att('dsc', cNs.path)));
    ok(addC, 'ADD c with an address of each family');
    assert.equal(addC.json.ips.map((i: any) => i.address), ['10.61.0.50/24', 'fd00:61::50/64']);
    assert.equal(addrsIn(cNs.name).filter((x) => !x.endsWith(' link')), ['inet 10.61.0.50/24 global', 'inet6 fd00:61::50/64 global']);
    ok(cni('DEL', withC, fw(att('dsc', cNs.path))), 'DEL c');
    assert.is(JSON.parse(readFileSync('/run/tsnetlink/networks/ds.json', 'utf8')).firewall, NFT ? 'nftables' : 'iptables', "the run's backend holds the rules");
    assert.ok(rulesName('ds').some((l) => l.includes('fd00:61::')), `the network's IPv6 rules are in ${NFT ? 'nft' : 'ip6tables'}`);
    ok(cni('CHECK', withPrev({ ...withA, cniVersion: '0.4.0' }, addA.json), fw(att('dsa', a.path))), 'CHECK both families');
    // CHECK looks at each family: the pod losing its IPv6 address is a mismatch.
    run('ip', ['-n', b.name, 'addr', 'del', 'fd00:61::3/64', 'dev', 'eth0']);
    const bad = cni('CHECK', withPrev({ ...withB, cniVersion: '0.4.0' }, addB.json), fw(att('dsb', b.path)));
    failsWith(bad, 103, 'CHECK after the IPv6 address went');
    assert.match(bad.json.msg, 'lacks fd00:61::3/64');
    run('ip', ['-n', b.name, 'addr', 'add', 'fd00:61::3/64', 'dev', 'eth0', 'nodad']);
    assert.is(await probeTcp(nsA, 'fd00:61::3', 80, 3000), 'b', 'pod to pod over IPv6');
    assert.is(await probeTcp(nsB, 'fd00:61::2', 80, 3000), 'a');
    assert.is(await tcpGet(HOST6, 9610), 'a', "the published port from the host's IPv6 address");
    assert.is(await probeTcp(up, HOST6, 9610, 3000), 'a', 'the published port over IPv6 from the upstream host');
    assert.is(await probeTcp(up, HOST4, 9610, 3000), 'a', 'and over IPv4');
    assert.is(await probeTcp(nsB, '2001:db8:97::2', 9999, 3000), 'up');
    assert.is(await probeTcp(nsB, '10.97.0.2', 9999, 3000), 'up');
    assert.equal(seen, [HOST6, HOST4], 'ipMasq masquerades both families');
    // A configuration whose ranges disagree with the network's subnets is refused, and changes nothing.
    const nsC = netns();
    leavesNodeAsItWas('ranges of IPv4 alone on the dual-stack network', () => {
      const r = cni('ADD', { ...c, runtimeConfig: { ipRanges: [ranges[0]] } }, fw(att('dsc', nsC.path)));
      failsWith(r, 105, 'a mismatch');
      assert.match(r.json.msg, 'exists with subnet 10.61.0.0/24 (gateway 10.61.0.1) and fd00:61::/64 (gateway fd00:61::1)');
    });
    failsWith(cni('ADD', { ...withB, runtimeConfig: { ipRanges: ranges, portMappings: [{ hostPort: 9611, containerPort: 80, hostIP: '2001:db8:97::77' }] } }, fw(att('dsc', nsC.path))), 7, 'an IPv6 hostIP not on this node');
    run('ip', ['netns', 'del', nsC.name]);
    ok(cni('DEL', withA, fw(att('dsa', a.path))), 'DEL a');
    ok(cni('DEL', withB, fw(att('dsb', b.path))), 'DEL b');
    assert.equal(rulesName('ds'), []);
    const after = nodeState6();
    for (const k of Object.keys(before)) assert.equal(after[k], before[k], `DEL leaves ${k} as it was`);
  } finally {
    // A failed assertion must not leave the network to the next test.
    cni('DEL', withA, fw(att('dsa', a.path)));
    cni('DEL', withB, fw(att('dsb', b.path)));
    for (const s of servers) s.close();
    upServer.close();
    for (const h of [nsA, nsB, up]) h.close();
    for (const n of [a.name, b.name, 'cniup']) spawnSync('ip', ['netns', 'del', n]);
    spawnSync('ip', ['link', 'del', 'cniup0']);
  }
});

test('an ADD onto a dual-stack network the CLI made lists both addresses; DEL leaves the network to the CLI', () => {
  const cli = (args: string[]): string => run(process.execPath, [PLUGIN.replace(/bin\/tsnetlink-cni$/, 'dist/src/cli/main.js'), ...args]);
  cli(['network', 'create', '--subnet', '10.63.0.0/24', '--subnet', 'fd00:63::/64', 'clids']);
  const ns = netns();
  try {
    // The sets in either order; a default route of IPv6 alone, which the plugin adds itself.
    const c = { cniVersion: '1.0.0', name: 'clids', type: 'tsnetlink', ipam: { type: 'tsnetlink', ranges: [[{ subnet: 'fd00:63::/64' }], [{ subnet: '10.63.0.0/24' }]], routes: [{ dst: '::/0' }] } };
    const add = cni('ADD', c, fw(att('cl1', ns.path, 'eth0', 'IP=fd00:63::40')));
    ok(add, 'ADD');
    assert.equal(add.json.ips, [{ address: '10.63.0.2/24', gateway: '10.63.0.1', interface: 2 }, { address: 'fd00:63::40/64', gateway: 'fd00:63::1', interface: 2 }]);
    assert.equal(add.json.routes, [{ dst: '::/0', gw: 'fd00:63::1' }]);
    assert.equal(addrsIn(ns.name).filter((x) => !x.endsWith(' link')), ['inet 10.63.0.2/24 global', 'inet6 fd00:63::40/64 global']);
    assert.equal([defaultVia(ns.name, 4), defaultVia(ns.name, 6)], [[], ['fd00:63::1 eth0']]);
    ok(cni('DEL', c, fw(att('cl1', ns.path))), 'DEL');
    assert.equal(readdirSync('/run/tsnetlink/networks/clids/ips'), [], 'both addresses released');
    assert.ok(existsSync('/run/tsnetlink/networks/clids.json'), 'the CLI network stays');
  } finally {
    cli(['network', 'rm', 'clids']);
    run('ip', ['netns', 'del', ns.name]);
  }
  assert.equal(hostLinks(), []);
});

import { createRequire } from 'node:module';
const require_ = createRequire(import.meta.url);

test.run();
