/**
 * End-to-end with containerd's CRI plugin, the way Kubernetes runs pods (issue 18): a CRI client
 * over gRPC (test/e2e/cri-lib.ts) sends RunPodSandbox, PodSandboxStatus, StopPodSandbox and
 * RemovePodSandbox to a containerd 1.6 of the test's own, whose CNI configuration names the
 * tsnetlink plugin alone (bridge, IPAM, host ports, masquerade). Ten pods start at once; each
 * pod's address is the one the CRI reports; pods reach each other, the node reaches them,
 * host ports (TCP, UDP, one on a chosen host IP) are reached from an outside netns and from the
 * node, a pod reaches its own host port (hairpin), traffic leaving the node is masqueraded; then
 * every pod is stopped twice and removed, and nothing of the network is left. The same on a
 * dual-stack network, over IPv6 too. Last, a pod with Kubernetes' bandwidth annotations. Runs
 * only in the sandbox, on both firewall backends (scripts/test.mjs reruns it with nftables).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, execFileSync } from 'node:child_process';
import net from 'node:net';
import { readdirSync } from 'node:fs';
import { basename } from 'node:path';
import { openNetns, withNetns, type NetnsHandle } from '../../src/index.js';
import { ipJson, probeTcp, probeUdp, requireSandbox, serveUdpIn, stateFiles } from '../helpers.js';
import { hostLinks, rulesOf, run } from './cni-lib.js';
import { haveRuntime, hideUnifiedCgroup } from './cni-runtimes.js';
import { Cri, type CniCall, type Pod, type PodSpec } from './cri-lib.js';
import { NFT, nftHasTable, nftMappings, nftRuleset, rulesHeldBy } from './fw-oracle.js';

requireSandbox('cri');

const missing = haveRuntime(['containerd', 'containerd-shim-runc-v2', 'ctr', 'runc', 'busybox', 'tar', 'nsenter']);
if (missing.length > 0) {
  console.error(`cri.e2e: ${missing.join(', ')} not installed (bash scripts/setup.sh installs them)`);
  process.exit(1);
}

/** The node's addresses on the uplink (a second one of each family for host-IP mappings), and the outside end's. */
const NODE = { v4: '192.0.2.1', v4b: '192.0.2.11', v6: 'fd00:192::1', v6b: 'fd00:192::11' };
const OUTSIDE = { v4: '192.0.2.2', v6: 'fd00:192::2' };
/** A TCP server in the outside netns that answers with the source address it saw. */
const OUTSIDE_PORT = 9000;
/** Ten pods at once, as a node's kubelet starts them after a deployment is scaled up. */
const PODS = 10;
/** How long a probe that must fail waits for a dropped SYN (a refusal ends it at once). */
const DROPPED_MS = 500;

/** One network of the file: its CNI name, bridge, ranges and the runtime handler whose CNI directory holds its conflist. */
interface Stack {
  tag: string;
  net: string;
  bridge: string;
  handler: string;
  v4: string;
  v6?: string;
  /** Host ports: a TCP one, a UDP one, a TCP one on NODE.v4b only. */
  ports: { tcp: number; udp: number; hostIp: number };
}

const V4: Stack = { tag: 'v4', net: 'tsncri', bridge: 'tsncri0', handler: 'runc', v4: '10.95.0', ports: { tcp: 8080, udp: 8053, hostIp: 8081 } };
const DS: Stack = { tag: 'ds', net: 'tsncrids', bridge: 'tsncrids0', handler: 'ds', v4: '10.96.0', v6: 'fd00:96::', ports: { tcp: 8090, udp: 8063, hostIp: 8091 } };
/** Dual-stack networks whose conflists say an older cniVersion, as many manifests in use still do (flannel's says 0.3.1). */
const OLDER: { stack: Stack; cniVersion: string }[] = [
  { stack: { tag: 'v031', net: 'tsncri031', bridge: 'tsncri031', handler: 'v031', v4: '10.97.0', v6: 'fd00:97::', ports: { tcp: 0, udp: 0, hostIp: 0 } }, cniVersion: '0.3.1' },
  { stack: { tag: 'v040', net: 'tsncri040', bridge: 'tsncri040', handler: 'v040', v4: '10.98.0', v6: 'fd00:98::', ports: { tcp: 0, udp: 0, hostIp: 0 } }, cniVersion: '0.4.0' },
];

/** The conflist of a stack, as a Kubernetes node would have it in /etc/cni/net.d. */
function conflist(s: Stack, cniVersion = '1.0.0'): unknown {
  return {
    cniVersion,
    name: s.net,
    plugins: [
      {
        type: 'tsnetlink',
        bridge: s.bridge,
        isGateway: true,
        ipMasq: true,
        ipam: {
          type: 'tsnetlink',
          ranges: [[{ subnet: `${s.v4}.0/24` }], ...(s.v6 ? [[{ subnet: `${s.v6}/64` }]] : [])],
          routes: [{ dst: '0.0.0.0/0' }, ...(s.v6 ? [{ dst: '::/0' }] : [])],
        },
        capabilities: { portMappings: true, bandwidth: true },
      },
    ],
  };
}

let cri: Cri | undefined;
let outside: NetnsHandle | undefined;
let outsideServer: net.Server | undefined;

/** The running CRI (test.before started it). */
function c(): Cri {
  if (!cri) throw new Error('containerd did not start');
  return cri;
}

test.before(async () => {
  hideUnifiedCgroup();
  // The uplink: the node's addresses on a veth whose other end is in an outside netns.
  run('ip', ['netns', 'add', 'outside']);
  run('ip', ['link', 'add', 'uplink0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', 'outside']);
  run('ip', ['addr', 'add', `${NODE.v4}/24`, 'dev', 'uplink0']);
  run('ip', ['addr', 'add', `${NODE.v4b}/24`, 'dev', 'uplink0']);
  run('ip', ['-6', 'addr', 'add', `${NODE.v6}/64`, 'dev', 'uplink0', 'nodad']);
  // Deprecated (preferred_lft 0), so that source address selection keeps NODE.v6 for what the
  // node sends and masquerades; it still receives what is sent to it.
  run('ip', ['-6', 'addr', 'add', `${NODE.v6b}/64`, 'dev', 'uplink0', 'nodad', 'preferred_lft', '0']);
  run('ip', ['link', 'set', 'uplink0', 'up']);
  run('ip', ['-n', 'outside', 'addr', 'add', `${OUTSIDE.v4}/24`, 'dev', 'eth0']);
  run('ip', ['-n', 'outside', '-6', 'addr', 'add', `${OUTSIDE.v6}/64`, 'dev', 'eth0', 'nodad']);
  run('ip', ['-n', 'outside', 'link', 'set', 'eth0', 'up']);
  run('ip', ['-n', 'outside', 'link', 'set', 'lo', 'up']);
  outside = openNetns({ name: 'outside' });
  outsideServer = withNetns(outside, () => net.createServer((s) => s.end(`from ${s.remoteAddress?.replace(/^::ffff:/, '')}`)).listen(OUTSIDE_PORT));
  cri = await Cri.start({
    handlers: [
      { name: V4.handler, conflist: conflist(V4) },
      { name: DS.handler, conflist: conflist(DS) },
      ...OLDER.map((o) => ({ name: o.stack.handler, conflist: conflist(o.stack, o.cniVersion) })),
    ],
    firewall: process.env['TSNETLINK_FIREWALL'],
  });
});

test.after(async () => {
  outsideServer?.close();
  outside?.close();
  await cri?.stop();
});

/** A pod's network namespace, opened, with the servers this process runs inside it. */
interface Served {
  pod: Pod;
  ns: NetnsHandle;
  servers: { close(): void }[];
}

/** Serves TCP port 80 in the pod (every connection is answered "NAME from=SOURCE"), and UDP port 53 when asked. */
function serve(pod: Pod, udp: boolean): Served {
  const ns = openNetns({ path: pod.netns });
  // listen() makes its socket synchronously, so it stays in the pod's netns; [::] takes both families.
  const tcp = withNetns(ns, () => net.createServer((s) => s.setTimeout(2000, () => s.destroy()).end(`${pod.name} from=${s.remoteAddress?.replace(/^::ffff:/, '')}`)).listen(80));
  const servers: { close(): void }[] = [tcp];
  if (udp) servers.push(serveUdpIn(ns, 53, pod.name));
  return { pod, ns, servers };
}

/** Closes a pod's servers and its netns handle, so that nothing of this process holds the netns the CRI removes. */
function unserve(s: Served): void {
  for (const x of s.servers) x.close();
  s.ns.close();
}

/** A pod's global addresses on eth0 as iproute2 reads them inside its netns. */
function podAddrs(pod: Pod): string[] {
  const links = ipJson<any[]>(['addr', 'show', 'dev', 'eth0'], basename(pod.netns));
  return links.flatMap((l) => l.addr_info ?? []).filter((a: any) => a.scope === 'global').map((a: any) => a.local as string);
}

/** The calls logged for one pod, by command. */
function callsOf(id: string): CniCall[] {
  return c().calls().filter((x) => x.containerId === id && x.command !== 'VERSION');
}

/** A value of an object whose keys a Go runtime may have capitalised (containerd's untagged structs). */
function field(o: Record<string, unknown> | undefined, name: string): unknown {
  if (!o) return undefined;
  const k = Object.keys(o).find((x) => x.toLowerCase() === name.toLowerCase());
  return k === undefined ? undefined : o[k];
}

/** Nothing of network `s.net` left on the node: links, firewall rules, netns files, tsnetlink state. */
function nothingLeft(s: Stack, what: string): void {
  assert.equal(hostLinks(), ['uplink0'], `${what}: links`);
  assert.equal(rulesOf(s.net), [], `${what}: iptables rules`);
  if (s.v6) assert.equal(rulesOf(s.net, 'ip6tables-save'), [], `${what}: ip6tables rules`);
  if (NFT) assert.equal(nftMappings().filter((m) => m.comment?.startsWith(`tsnetlink:${s.net}/`) || m.to.startsWith(s.v4) || (s.v6 !== undefined && m.to.startsWith(s.v6))), [], `${what}: nft map elements`);
  if (NFT) assert.not.ok(execFileSync('nft', ['list', 'ruleset'], { encoding: 'utf8' }).includes(`tsnetlink:${s.net}`), `${what}: nft rules`);
  assert.equal(readdirSync('/run/netns').filter((n) => n.startsWith('cni-')), [], `${what}: /run/netns`);
  assert.equal(stateFiles('/run/tsnetlink'), [], `${what}: tsnetlink state (records, IP reservations, host ports)`);
}

/** Stops every pod twice and removes it, as the kubelet may; each call must succeed. */
async function teardown(pods: readonly Pod[]): Promise<void> {
  await Promise.all(
    pods.map(async (p) => {
      await c().stopPod(p.id);
      await c().stopPod(p.id);
      await c().removePod(p.id);
    }),
  );
  assert.equal(await c().podIds(), [], 'the CRI has no pod left');
}

/**
 * The scenario of a stack: ten pods at once (pod 0 publishes TCP, pod 1 UDP, pod 2 TCP on one
 * host IP), addresses, traffic of every kind, the firewall backend, then teardown and nothing left.
 */
async function scenario(s: Stack): Promise<void> {
  const specs: PodSpec[] = Array.from({ length: PODS }, (_, i) => ({ name: `${s.tag}-p${i}`, handler: s.handler }));
  specs[0]!.ports = [{ protocol: 'TCP', container_port: 80, host_port: s.ports.tcp }];
  specs[1]!.ports = [{ protocol: 'UDP', container_port: 53, host_port: s.ports.udp }];
  specs[2]!.ports = [{ protocol: 'TCP', container_port: 80, host_port: s.ports.hostIp, host_ip: NODE.v4b }];
  if (s.v6) specs[5]!.ports = [{ protocol: 'TCP', container_port: 80, host_port: s.ports.hostIp, host_ip: NODE.v6b }];
  const t0 = performance.now();
  const results = await Promise.allSettled(specs.map((sp) => c().runPod(sp)));
  const started = performance.now() - t0;
  const pods = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const served: Served[] = [];
  let checked = false;
  try {
    const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [`${specs[i]!.name}: ${(r.reason as Error).message}`] : []));
    assert.equal(failed, [], `RunPodSandbox failed:\n${failed.join('\n')}\nplugin stderr:\n${c().pluginStderr()}`);
    process.stdout.write(`\n  cri e2e (${s.tag}): ${PODS} RunPodSandbox at once took ${started.toFixed(0)} ms\n`);

    // The addresses: what PodSandboxStatus reports is what the pod's eth0 has; all distinct.
    for (const p of pods) {
      assert.match(p.netns, /^\/var\/run\/netns\/cni-/, `${p.name}: netns ${p.netns}`);
      assert.ok(p.ip.startsWith(`${s.v4}.`), `${p.name}: ip ${p.ip}`);
      const want = [p.ip, ...p.additionalIps].sort();
      assert.equal(podAddrs(p).sort(), want, `${p.name}: eth0 has what PodSandboxStatus says`);
      if (s.v6) {
        assert.is(p.additionalIps.length, 1, `${p.name}: one additional address`);
        assert.ok(p.additionalIps[0]!.startsWith(s.v6), `${p.name}: additional ${p.additionalIps[0]}`);
      } else assert.equal(p.additionalIps, [], `${p.name}: no additional address`);
    }
    const all = pods.flatMap((p) => [p.ip, ...p.additionalIps]);
    assert.is(new Set(all).size, all.length, `distinct addresses: ${all.join(' ')}`);
    // One ADD per pod, with the capitalised portMappings containerd sends to pods that have them.
    for (const p of pods) {
      const adds = callsOf(p.id).filter((x) => x.command === 'ADD');
      assert.is(adds.length, 1, `${p.name}: one ADD`);
      assert.is(adds[0]!.netns, p.netns);
    }
    const rc0 = callsOf(pods[0]!.id)[0]!.conf?.runtimeConfig;
    assert.equal((field(rc0, 'portMappings') as Record<string, unknown>[]).map((m) => [field(m, 'hostPort'), field(m, 'containerPort'), field(m, 'protocol')]), [[s.ports.tcp, 80, 'tcp']]);
    // IP reservations: one per pod address, nothing else.
    const ips = stateFiles('/run/tsnetlink').filter((f) => f.startsWith(`networks/${s.net}/ips/`)).map((f) => f.split('/').pop()!);
    assert.equal(ips.sort(), [...all].sort(), 'an IP reservation per pod address');

    served.push(...pods.map((p, i) => serve(p, i === 1)));
    const [p0, p1, p2, p3, p4] = pods as [Pod, Pod, Pod, Pod, Pod];
    const ns = (p: Pod): NetnsHandle => served.find((x) => x.pod === p)!.ns;

    // Pod to pod (from pod 3 to every other pod), over IPv4 and on dual stack over IPv6.
    const others = pods.filter((p) => p !== p3);
    const got = await Promise.all(others.map((p) => probeTcp(ns(p3), p.ip, 80, 3000)));
    assert.equal(got, others.map((p) => `${p.name} from=${p3.ip}`), 'pod to pod');
    if (s.v6) {
      const got6 = await Promise.all(others.map((p) => probeTcp(ns(p3), p.additionalIps[0]!, 80, 3000)));
      assert.equal(got6, others.map((p) => `${p.name} from=${p3.additionalIps[0]}`), 'pod to pod over IPv6');
    }
    // Node to pod: from the bridge's address, the gateway.
    const fromNode = await Promise.all(pods.map((p) => probeTcp(undefined, p.ip, 80, 3000)));
    assert.equal(fromNode, pods.map((p) => `${p.name} from=${s.v4}.1`), 'node to pod');
    if (s.v6) {
      const fromNode6 = await Promise.all(pods.map((p) => probeTcp(undefined, p.additionalIps[0]!, 80, 3000)));
      assert.equal(fromNode6, pods.map((p) => `${p.name} from=${s.v6}1`), 'node to pod over IPv6');
    }

    // Host ports from outside: the client's address preserved.
    assert.is(await probeTcp(outside, NODE.v4, s.ports.tcp, 3000), `${p0.name} from=${OUTSIDE.v4}`, 'TCP hostPort from outside');
    assert.is(await probeUdp(outside, NODE.v4, s.ports.udp, 3000), p1.name, 'UDP hostPort from outside');
    assert.is(await probeTcp(outside, NODE.v4b, s.ports.hostIp, 3000), `${p2.name} from=${OUTSIDE.v4}`, 'hostPort on its hostIP from outside');
    assert.match(await probeTcp(outside, NODE.v4, s.ports.hostIp, DROPPED_MS), /^unreachable/, 'the hostIP mapping is not published on the node\'s other address');
    if (s.v6) {
      // Pod 5 publishes the same port number as pod 2, on the node's second IPv6 address.
      const p5 = pods[5]!;
      assert.is(await probeTcp(outside, NODE.v6b, s.ports.hostIp, 3000), `${p5.name} from=${OUTSIDE.v6}`, 'hostPort on an IPv6 hostIP from outside');
      assert.match(await probeTcp(outside, NODE.v6, s.ports.hostIp, DROPPED_MS), /^unreachable/, 'the IPv6 hostIP mapping is not published on the node\'s other address');
      assert.is(await probeTcp(outside, NODE.v6, s.ports.tcp, 3000), `${p0.name} from=${OUTSIDE.v6}`, 'TCP hostPort over IPv6 from outside');
      assert.is(await probeUdp(outside, NODE.v6, s.ports.udp, 3000), p1.name, 'UDP hostPort over IPv6 from outside');
    }
    // Host ports from the node itself: its own address and its loopback.
    assert.match(await probeTcp(undefined, NODE.v4, s.ports.tcp, 3000), new RegExp(`^${p0.name} from=`), 'hostPort from the node');
    assert.match(await probeTcp(undefined, '127.0.0.1', s.ports.tcp, 3000), new RegExp(`^${p0.name} from=`), 'hostPort from the node over 127.0.0.1');
    assert.match(await probeUdp(undefined, NODE.v4, s.ports.udp, 3000), new RegExp(`^${p1.name}$`), 'UDP hostPort from the node');
    assert.match(await probeTcp(undefined, NODE.v4b, s.ports.hostIp, 3000), new RegExp(`^${p2.name} from=`), 'hostIP mapping from the node');
    if (s.v6) assert.match(await probeTcp(undefined, NODE.v6, s.ports.tcp, 3000), new RegExp(`^${p0.name} from=`), 'hostPort over IPv6 from the node');
    // Hairpin: pod 0 reaches its own host port through the node's address.
    assert.match(await probeTcp(ns(p0), NODE.v4, s.ports.tcp, 3000), new RegExp(`^${p0.name} from=`), 'hairpin');
    if (s.v6) assert.match(await probeTcp(ns(p0), NODE.v6, s.ports.tcp, 3000), new RegExp(`^${p0.name} from=`), 'hairpin over IPv6');
    // Another pod's host port through the node's address, as pods reach a DaemonSet's hostPort
    // (status.hostIP): TCP, UDP (a metrics agent's) and one on its hostIP.
    assert.match(await probeTcp(ns(p3), NODE.v4, s.ports.tcp, 3000), new RegExp(`^${p0.name} from=`), 'pod to another pod\'s hostPort');
    assert.is(await probeUdp(ns(p3), NODE.v4, s.ports.udp, 3000), p1.name, 'pod to another pod\'s UDP hostPort');
    assert.match(await probeTcp(ns(p3), NODE.v4b, s.ports.hostIp, 3000), new RegExp(`^${p2.name} from=`), 'pod to another pod\'s hostIP mapping');
    assert.match(await probeTcp(ns(p2), NODE.v4b, s.ports.hostIp, 3000), new RegExp(`^${p2.name} from=`), 'hairpin through a hostIP mapping');
    if (s.v6) {
      assert.match(await probeTcp(ns(p3), NODE.v6, s.ports.tcp, 3000), new RegExp(`^${p0.name} from=`), 'pod to another pod\'s hostPort over IPv6');
      assert.is(await probeUdp(ns(p3), NODE.v6, s.ports.udp, 3000), p1.name, 'pod to another pod\'s UDP hostPort over IPv6');
    }
    // Masquerade: what leaves the node comes from the node's address.
    assert.is(await probeTcp(ns(p4), OUTSIDE.v4, OUTSIDE_PORT, 3000), `from ${NODE.v4}`, 'masquerade');
    if (s.v6) assert.is(await probeTcp(ns(p4), OUTSIDE.v6, OUTSIDE_PORT, 3000), `from ${NODE.v6}`, 'masquerade over IPv6');

    // The backend this run asked for holds the rules, and the plugin ran with it on every call.
    const fw = process.env['TSNETLINK_FIREWALL'] ?? '';
    assert.equal([...new Set(c().calls().map((x) => x.firewall))], [fw], 'the plugin ran with this run\'s TSNETLINK_FIREWALL');
    assert.is(rulesHeldBy(), NFT ? 'nftables' : 'iptables', 'which backend holds the rules');
    if (NFT) {
      const rs = nftRuleset();
      assert.ok(nftHasTable(rs), 'nft -j list ruleset shows table inet tsnetlink');
      const maps = nftMappings(rs).filter((m) => m.to === p0.ip || m.to === p1.ip || m.to === p2.ip);
      assert.ok(maps.some((m) => m.to === p0.ip && m.hostPort === s.ports.tcp && m.proto === 'tcp'), JSON.stringify(maps));
      assert.ok(maps.some((m) => m.to === p1.ip && m.hostPort === s.ports.udp && m.proto === 'udp'), JSON.stringify(maps));
      assert.ok(maps.some((m) => m.to === p2.ip && m.hostPort === s.ports.hostIp && m.hostIp === NODE.v4b), JSON.stringify(maps));
    } else {
      assert.not.ok(nftHasTable(), 'no table inet tsnetlink on the iptables backend');
      assert.ok(rulesOf(s.net).some((r) => r.includes(`--dport ${s.ports.tcp}`)), rulesOf(s.net).join('\n'));
      if (s.v6) assert.ok(rulesOf(s.net, 'ip6tables-save').some((r) => r.includes(`--dport ${s.ports.tcp}`)), rulesOf(s.net, 'ip6tables-save').join('\n'));
    }
    checked = true;
  } finally {
    for (const x of served) unserve(x);
    // A failed check still removes its pods, so that the next test starts from a clean node.
    if (!checked) await teardown(pods).catch(() => undefined);
  }

  await teardown(pods);
  // containerd 1.6 sends a DEL on every StopPodSandbox and on RemovePodSandbox (which stops
  // first): the first with the pod's netns, the others with none, as it is gone by then.
  for (const p of pods) {
    assert.equal(callsOf(p.id).map((x) => `${x.command} ${x.netns}`), [`ADD ${p.netns}`, `DEL ${p.netns}`, 'DEL ', 'DEL '], p.name);
  }
  nothingLeft(s, `after ${PODS} pods of ${s.tag} were removed`);
}

test('IPv4: 10 pods at once; addresses, pod to pod, node to pod, hostPorts (TCP, UDP, hostIP) from outside and from the node, hairpin, masquerade; stop twice + remove leaves nothing', async () => {
  await scenario(V4);
});

test('dual stack: the same with an IPv6 range beside the IPv4 one, over both families (additional_ips, IPv6 pod to pod and hostPort)', async () => {
  await scenario(DS);
});

test('cniVersion 0.3.1 and 0.4.0 conflists on dual stack: the CRI reads both addresses from the older result formats', async () => {
  for (const { stack: s, cniVersion } of OLDER) {
    const pod = await c().runPod({ name: `${s.tag}-p0`, handler: s.handler });
    const sv = serve(pod, false);
    try {
      const add = callsOf(pod.id).find((x) => x.command === 'ADD');
      assert.is(add?.conf?.cniVersion, cniVersion);
      assert.ok(pod.ip.startsWith(`${s.v4}.`), `${cniVersion}: ip ${pod.ip}`);
      assert.is(pod.additionalIps.length, 1, `${cniVersion}: additional_ips ${pod.additionalIps.join(' ')}`);
      assert.ok(pod.additionalIps[0]!.startsWith(s.v6!), `${cniVersion}: additional ${pod.additionalIps[0]}`);
      assert.equal(podAddrs(pod).sort(), [pod.ip, ...pod.additionalIps].sort(), `${cniVersion}: eth0 has what PodSandboxStatus says`);
      assert.is(await probeTcp(undefined, pod.additionalIps[0]!, 80, 3000), `${pod.name} from=${s.v6}1`, `${cniVersion}: node to pod over IPv6`);
    } finally {
      unserve(sv);
      await teardown([pod]);
    }
    nothingLeft(s, `after the ${cniVersion} pod was removed`);
  }
});

test('a hostPort another pod holds: RunPodSandbox fails with the plugin\'s error, the CRI\'s DELs for it leave the first pod and its port as they were', async () => {
  const PORT = 8100;
  const a = await c().runPod({ name: 'owner', handler: V4.handler, ports: [{ protocol: 'TCP', container_port: 80, host_port: PORT }] });
  const sa = serve(a, false);
  let bId: string | undefined;
  try {
    const err = await c()
      .runPod({ name: 'intruder', handler: V4.handler, ports: [{ protocol: 'TCP', container_port: 80, host_port: PORT }] })
      .then((b) => {
        bId = b.id;
        return undefined;
      }, (e: Error) => e);
    assert.ok(err, 'the second pod asking for the same hostPort is refused');
    assert.match(err!.message, new RegExp(`${PORT}`), err!.message);
    // The CRI undoes the failed sandbox: an ADD, then a DEL that must touch nothing of the owner's.
    const failed = c().calls().filter((x) => x.command !== 'VERSION' && x.containerId !== a.id && x.conf?.name === V4.net);
    assert.equal([...new Set(failed.map((x) => x.command))].sort(), ['ADD', 'DEL'], failed.map((x) => x.command).join(' '));
    assert.equal(await c().podIds(), [a.id], 'only the owner is left');
    assert.is(await probeTcp(outside, NODE.v4, PORT, 3000), `owner from=${OUTSIDE.v4}`, 'the owner\'s hostPort still works');
    const ips = stateFiles('/run/tsnetlink').filter((f) => f.startsWith(`networks/${V4.net}/ips/`)).map((f) => f.split('/').pop());
    assert.equal(ips, [a.ip], 'one IP reservation: the owner\'s');
    assert.equal(stateFiles('/run/tsnetlink').filter((f) => f.startsWith('ports/')).length, 1, 'one host port reservation');
    assert.equal(ipJson<{ ifname: string }[]>(['link', 'show', 'master', V4.bridge]).length, 1, 'one veth on the bridge');
  } finally {
    unserve(sa);
    await teardown([a]);
    if (bId) await teardown([{ id: bId } as Pod]).catch(() => undefined);
  }
  nothingLeft(V4, 'after the owner was removed');
});

test('RunPodSandbox whose deadline passes during the ADD: containerd kills the plugin and sends DEL; nothing is left, and the next pod gets the first address', async () => {
  const portMap = [{ protocol: 'TCP' as const, container_port: 80, host_port: 8200 }];
  // How long a RunPodSandbox takes on this machine now, so that the deadlines below end the
  // calls part of the way through whatever the load (the ADD is its larger part).
  const t0 = performance.now();
  const first = await c().runPod({ name: 'timed', handler: V4.handler, ports: portMap });
  const took = performance.now() - t0;
  await teardown([first]);
  const seen = new Set(c().calls().map((x) => x.containerId));
  // containerd cancels the ADD (kills its process) when the call's context ends, and undoes the
  // sandbox with a DEL; a call that ends before the ADD sends only the DEL.
  for (const f of [0.4, 0.6, 0.8]) {
    const ms = Math.round(f * took);
    const config = { metadata: { name: `late-${ms}`, uid: `uid-late-${ms}`, namespace: 'e2e', attempt: 0 }, port_mappings: portMap, linux: { security_context: { namespace_options: { network: 'POD', pid: 'POD', ipc: 'POD' } } } };
    await c().call('RunPodSandbox', { config, runtime_handler: V4.handler }, ms).catch(() => undefined);
  }
  // The CRI goes on after the client gave up: wait until every sandbox whose ADD was sent is
  // listed (the call finished after all) or undone (a DEL after it), no plugin call is at work
  // (the log says when a call starts, not when it ends), and the log has stayed as it is a moment.
  const end = Date.now() + 20_000;
  let last = -1;
  let stableSince = Date.now();
  for (;;) {
    const ids = await c().podIds();
    const calls = c().calls().filter((x) => !seen.has(x.containerId));
    if (calls.length !== last) [last, stableSince] = [calls.length, Date.now()];
    const adds = calls.filter((x) => x.command === 'ADD').map((x) => x.containerId);
    const settled = adds.every((id) => ids.includes(id) || calls.some((x) => x.command === 'DEL' && x.containerId === id)) && !c().pluginsRunning() && Date.now() - stableSince > 1000;
    if (settled) {
      process.stdout.write(`\n  cri e2e: RunPodSandbox ${took.toFixed(0)} ms; of 3 cancelled calls ${adds.length} reached the ADD, ${adds.filter((id) => !ids.includes(id)).length} were undone\n`);
      break;
    }
    if (Date.now() > end) throw new Error(`the cancelled sandboxes did not settle: ADDs ${adds.join(' ')}, pods ${ids.join(' ')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  await teardown((await c().podIds()).map((id) => ({ id }) as Pod));
  nothingLeft(V4, 'after the cancelled sandboxes');
  const pod = await c().runPod({ name: 'after-late', handler: V4.handler, ports: portMap });
  try {
    assert.is(pod.ip, `${V4.v4}.2`, 'no address was left reserved');
  } finally {
    await teardown([pod]);
  }
  nothingLeft(V4, 'after the next pod');
});

/**
 * Bulk TCP of `skip` + `bytes` bytes to host:port, the receiver in `toNetns` (a path; undefined:
 * here) and the sender in `fromNetns`; the rate in bits/s over the last `bytes`, as the receiver
 * counts them. The first `skip` bytes drain the token bucket, which passes at the link's speed.
 */
function measure(toNetns: string | undefined, fromNetns: string | undefined, host: string, port: number, skip: number, bytes: number): Promise<number> {
  // Processes of their own, so that this process's event loop does not pace either end; the
  // receiver times from the byte that ends the skipped part to its last.
  const server = `const s=require('net').createServer(c=>{let n=0,n0=-1,t0=0,t1=0;c.on('data',d=>{const t=performance.now();n+=d.length;if(n0<0&&n>=${skip}){n0=n;t0=t}t1=t});c.on('end',()=>{process.stdout.write(JSON.stringify({n:n-n0,total:n,ms:t1-t0}));s.close()})}).listen(${port},()=>process.stderr.write('ready\\n'))`;
  const client = `const c=require('net').connect(${port},'${host}',()=>{const b=Buffer.alloc(65536);let left=${skip + bytes};const w=()=>{while(left>0){left-=b.length;if(!c.write(b))return c.once('drain',w)}c.end()};w()})`;
  const start = (nsPath: string | undefined, js: string) => (nsPath ? spawn('nsenter', [`--net=${nsPath}`, process.execPath, '-e', js]) : spawn(process.execPath, ['-e', js]));
  return new Promise((resolve, reject) => {
    const srv = start(toNetns, server);
    let out = '';
    const timer = setTimeout(() => srv.kill('SIGKILL'), 30_000);
    srv.stdout.on('data', (d) => (out += d));
    srv.stderr.once('data', () => start(fromNetns, client).on('error', reject));
    srv.on('error', reject);
    srv.on('exit', () => {
      clearTimeout(timer);
      try {
        const r = JSON.parse(out) as { n: number; ms: number };
        resolve((r.n * 8) / (r.ms / 1000));
      } catch (e) {
        reject(new Error(`receiver said ${JSON.stringify(out)}: ${String(e)}`));
      }
    });
  });
}

// The plugin's bandwidth support (a tbf on the host veth for traffic to the pod, an ifb with a
// tbf for traffic from it) comes from main; on a branch without it this test fails. Kept last,
// so that the file's other tests run first whatever happens here.
test('bandwidth annotations: runtimeConfig.bandwidth reaches the plugin, a tbf on the host veth, 10 Mbit/s each way within 10%', async () => {
  const RATE = 10_000_000;
  const pod = await c().runPod({ name: 'bw', handler: V4.handler, annotations: { 'kubernetes.io/ingress-bandwidth': '10M', 'kubernetes.io/egress-bandwidth': '10M' } });
  try {
    const bw = field(callsOf(pod.id).find((x) => x.command === 'ADD')?.conf?.runtimeConfig, 'bandwidth') as Record<string, unknown> | undefined;
    assert.ok(bw, 'runtimeConfig.bandwidth in the ADD');
    assert.is(field(bw, 'ingressRate'), RATE);
    assert.is(field(bw, 'egressRate'), RATE);
    const ports = ipJson<{ ifname: string }[]>(['link', 'show', 'master', V4.bridge]).map((l) => l.ifname);
    assert.is(ports.length, 1, `the pod's veth on ${V4.bridge}: ${ports.join(' ')}`);
    const qdiscs = JSON.parse(execFileSync('tc', ['-j', 'qdisc', 'show', 'dev', ports[0]!], { encoding: 'utf8' }) || '[]') as { kind: string }[];
    assert.ok(qdiscs.some((q) => q.kind === 'tbf'), `tc -j qdisc show dev ${ports[0]}: ${JSON.stringify(qdiscs)}`);
    // containerd passes a burst of 2^32-1 bits when the pod names only rates: the buckets are as
    // large as the kernel allows (seconds of traffic at the rate, several MB). What the tbf
    // qdiscs hold, as tc reads them, is sent first; the rate is measured over the 3 MB after it.
    const tbfs = (JSON.parse(execFileSync('tc', ['-j', 'qdisc', 'show'], { encoding: 'utf8' }) || '[]') as { kind: string; dev: string; options?: { burst?: number } }[]).filter((q) => q.kind === 'tbf');
    const bucket = Math.max(...tbfs.map((q) => q.options?.burst ?? 0));
    const skip = bucket + 256 * 1024;
    const MB3 = 3 * 1024 * 1024;
    const down = await measure(pod.netns, undefined, pod.ip, 5201, skip, MB3);
    const up = await measure(undefined, pod.netns, `${V4.v4}.1`, 5202, skip, MB3);
    process.stdout.write(`\n  cri e2e: tbf buckets ${tbfs.map((q) => `${q.dev} ${q.options?.burst} B`).join(', ')}; after them node->pod ${(down / 1e6).toFixed(2)} Mbit/s, pod->node ${(up / 1e6).toFixed(2)} Mbit/s (limit 10 each)\n`);
    assert.ok(Math.abs(down - RATE) <= 0.1 * RATE, `node->pod ${down} bit/s, limit ${RATE}`);
    assert.ok(Math.abs(up - RATE) <= 0.1 * RATE, `pod->node ${up} bit/s, limit ${RATE}`);
  } finally {
    await teardown([pod]);
  }
  nothingLeft(V4, 'after the bandwidth pod was removed');
});

test.run();
