/**
 * End-to-end: the seed's bridge-network scenario through the Networks API, inside the throwaway
 * sandbox that scripts/test.mjs gives this file. Every claim is checked against an oracle that
 * is not our own state: `ip -j` for links, addresses and routes, iptables-save for rules (and
 * `nft -j list ruleset` on the native backend, TSNETLINK_FIREWALL=nftables), the state
 * directory's files for IPAM, and real TCP/UDP traffic for every reachability path.
 *
 * The host starts with FORWARD policy DROP and a few foreign rules (as a hardened host would),
 * so the FORWARD accept rules are exercised and `network rm` must give back exactly that ruleset.
 * An "upstream" namespace (demo/scenario.ts) plays the outside world behind the host.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Networks, createNamedNetns, deleteNamedNetns, type EndpointRecord, type NetnsHandle } from '../../src/index.js';
import { makeUpstream, serve, stop, type Upstream } from '../../demo/scenario.js';
import { ipJson, leakGuard, tcpGet, requireSandbox } from '../helpers.js';
import { NFT, nftChain, nftChainRules, nftHasTable, nftMappings, nftOf, normalizedNft } from './fw-oracle.js';
import { DROPPED_MS, fetchIn } from './lib.js';

// ------------------------------------------------------------------ sandbox and oracles

requireSandbox('bridge');

const RESTORE = process.env['TSNETLINK_IPTABLES_RESTORE'] ?? 'iptables-restore';
const SAVE = RESTORE.replace(/-restore$/, '-save');
const IPTABLES = RESTORE.replace(/-restore$/, '');
const NET = 'testbridge';
const SUBNET = '192.168.10.0/24';
const GW = '192.168.10.1';
/** A second host address on the upstream link, for the HOSTIP:HOST:CONTAINER mapping. */
const HOST_IP2 = '10.99.0.10';

/** Foreign rules of a "hardened host": they must keep their place and survive network rm. */
const FOREIGN = `*raw
-A PREROUTING -s 203.0.113.0/24 -j ACCEPT
COMMIT
*filter
-A INPUT -s 203.0.113.7/32 -j DROP
-A FORWARD -s 203.0.113.0/24 -j DROP
COMMIT
*nat
-A POSTROUTING -s 203.0.113.0/24 -j RETURN
COMMIT
`;

function saveText(): string {
  return execFileSync(SAVE, { encoding: 'utf8' });
}

/** iptables-save without the "# Generated" comment lines and packet counters. */
function normalizedSave(text = saveText()): string[] {
  return text
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => l.replace(/ \[\d+:\d+\]$/, '').replace(/^\[\d+:\d+\] /, ''));
}

/** `-A` lines of one table. */
function tableRules(text: string, table: string): string[] {
  let cur = '';
  const out: string[] = [];
  for (const l of text.split('\n')) {
    if (l.startsWith('*')) cur = l.slice(1);
    else if (cur === table && l.startsWith('-A ')) out.push(l);
  }
  return out;
}

/** Every rule a packet entering built-in `from` can reach, with the jump rules on its way. */
function reachable(text: string, table: string, from: string): { rule: string; via: string[] }[] {
  const all = tableRules(text, table);
  const out: { rule: string; via: string[] }[] = [];
  const visit = (chain: string, via: string[]): void => {
    if (via.length > 8) return;
    for (const rule of all.filter((r) => r.startsWith(`-A ${chain} `))) {
      out.push({ rule, via });
      const target = / -[jg] (\S+)/.exec(rule)?.[1];
      if (target && all.some((r) => r.startsWith(`-A ${target} `))) visit(target, [...via, rule]);
    }
  };
  visit(from, []);
  return out;
}

/** Names of the host's links, by `ip -j link`. */
function hostLinks(): string[] {
  return ipJson<any[]>(['link', 'show']).map((l) => l.ifname as string);
}

/** The IPAM reservation files of the network (ips/<ip> holding the endpoint id). */
function ipamFiles(): Record<string, string> {
  const dir = join(nets.store.networkDir(NET), 'ips');
  let names: string[] = [];
  try {
    names = readdirSync(dir).filter((n) => !n.startsWith('.'));
  } catch {
    /* no directory: no reservations */
  }
  return Object.fromEntries(names.map((n) => [n, readFileSync(join(dir, n), 'utf8')]));
}

/** Every regular file under the state root except lock files (held locks carry a pid). */
function stateFiles(root = nets.store.root): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    let entries: string[] = [];
    try {
      entries = readdirSync(dir);
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(dir, e);
      if (statSync(p).isDirectory()) walk(p);
      else if (e !== 'lock' && !e.endsWith('.lock')) out.push(p.slice(root.length + 1));
    }
  };
  walk(root);
  return out.sort();
}

/** Lines of iptables-save that mention an endpoint (its DNAT targets or its id); on nft, its map elements too. */
function rulesOf(ep: EndpointRecord, text = saveText()): string[] {
  const ipt = text.split('\n').filter((l) => l.includes(`--to-destination ${ep.ip}:`) || l.includes(`tsnetlink:${ep.network}/${ep.id}"`));
  return NFT ? [...ipt, ...nftOf(ep).map((m) => JSON.stringify(m))] : ipt;
}

/** User chains that hold the endpoint's DNAT rules; on nft, the map elements that do. */
function dnatChainsOf(ep: EndpointRecord, text = saveText()): string[] {
  if (NFT) return nftOf(ep).map((m) => `${m.map} ${m.proto} ${m.hostPort}`);
  return [...new Set(tableRules(text, 'nat').filter((r) => r.includes(`--to-destination ${ep.ip}:`)).map((r) => r.split(' ')[1] as string))];
}

/** Whether a DNAT chain (iptables) or map element (nft) named by dnatChainsOf is still there. */
function stillThere(chain: string, text: string): boolean {
  return NFT ? nftMappings().some((m) => `${m.map} ${m.proto} ${m.hostPort}` === chain) : text.includes(`:${chain} `);
}

// ------------------------------------------------------------------ fixtures

const nets = new Networks();
let upstream: Upstream;
let baseline: string[];
let baselineNft = '';
let guard: ReturnType<typeof leakGuard>;
const containers = new Map<string, { ns: NetnsHandle; ep?: EndpointRecord }>();
const servers: ChildProcess[] = [];

async function container(name: string, ports: string[] = []): Promise<EndpointRecord> {
  const ns = createNamedNetns(name);
  const c: { ns: NetnsHandle; ep?: EndpointRecord } = { ns };
  containers.set(name, c);
  c.ep = await nets.connect(NET, ns, { id: name, ports });
  return c.ep;
}

function ns(name: string): NetnsHandle {
  const c = containers.get(name);
  if (!c) throw new Error(`container ${name} was not created (an earlier test failed)`);
  return c.ns;
}

function ep(name: string): EndpointRecord {
  const e = containers.get(name)?.ep;
  if (!e) throw new Error(`container ${name} is not connected (an earlier test failed)`);
  return e;
}

function dropContainer(name: string): void {
  const c = containers.get(name);
  if (!c) return;
  c.ns.close();
  try {
    deleteNamedNetns(name);
  } catch {
    /* already gone */
  }
  containers.delete(name);
}

test.before(async () => {
  nets.host; // the long-lived host socket, opened before the leak guard's snapshot
  execFileSync(RESTORE, ['--noflush'], { input: FOREIGN });
  execFileSync(IPTABLES, ['-P', 'FORWARD', 'DROP']);
  upstream = makeUpstream(nets.host);
  nets.host.addrAdd('up0', `${HOST_IP2}/24`);
  baseline = normalizedSave();
  if (NFT) baselineNft = normalizedNft();
  // A manager keeps its nf_tables sockets by design (closing one costs an RCU grace period): the
  // native backend's, and on either backend the bridge-port filter's. They are opened before the
  // guard counts descriptors.
  await nets.check();
  guard = leakGuard();
});

test.after(async () => {
  for (const s of servers) await stop(s);
  for (const name of [...containers.keys()]) dropContainer(name);
  await nets.remove(NET, { force: true }).catch(() => undefined);
  try {
    upstream?.close();
    nets.host.linkDel('up0');
  } catch {
    /* already cleaned up by the last test */
  }
  nets.close();
});

// ------------------------------------------------------------------ network create

test('network create: bridge up with the gateway address; ip_forward and route_localnet on', async () => {
  const rec = await nets.create({ name: NET, subnet: '192.168.10.1/24', driver: 'bridge' });
  assert.equal([rec.name, rec.bridge, rec.subnet, rec.gateway, rec.prefix], [NET, NET, SUBNET, GW, 24]);
  const [br] = ipJson<any[]>(['-d', 'link', 'show', NET]);
  assert.is(br.linkinfo.info_kind, 'bridge');
  assert.ok(br.flags.includes('UP'), `bridge flags ${br.flags}`);
  const addrs = ipJson<any[]>(['-4', 'addr', 'show', NET])[0].addr_info.map((a: any) => `${a.local}/${a.prefixlen}`);
  assert.equal(addrs, [`${GW}/24`]);
  assert.is(ipJson<any[]>(['route', 'show', SUBNET])[0]?.dev, NET, 'connected route on the bridge');
  assert.is(readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim(), '1');
  assert.is(readFileSync(`/proc/sys/net/ipv4/conf/${NET}/route_localnet`, 'utf8').trim(), '1');
});

test('network create: MASQUERADE and FORWARD accepts reachable from the built-in chains, appended after foreign rules', () => {
  const text = saveText();
  if (NFT) {
    assert.equal([nftChain('postrouting')?.type, nftChain('postrouting')?.hook], ['nat', 'postrouting']);
    const masq = nftChainRules('postrouting').filter((r) => JSON.stringify(r).includes('"masquerade"') && JSON.stringify(r).includes('"192.168.10.0"') && JSON.stringify(r).includes('"!="'));
    assert.is(masq.length, 1, 'one masquerade for the subnet not leaving through the bridge');
    assert.equal([nftChain('forward')?.hook, nftChain('forward')?.policy], ['forward', 'accept']);
    const fwd = nftChainRules('forward').map((r) => JSON.stringify(r));
    assert.ok(fwd.some((r) => r.includes('"iifname"') && r.includes(`"${NET}"`) && r.includes('"accept"')), 'forward accepts traffic from the bridge');
    // The iptables FORWARD chain (policy DROP here) needs accepts of its own: ours end only our chain.
    const builtin = tableRules(text, 'filter').filter((r) => r.startsWith('-A FORWARD '));
    assert.equal(builtin, ['-A FORWARD -s 203.0.113.0/24 -j DROP', `-A FORWARD -o ${NET} -m comment --comment "tsnetlink:${NET}" -j ACCEPT`, `-A FORWARD -i ${NET} -m comment --comment "tsnetlink:${NET}" -j ACCEPT`]);
    return;
  }
  const masq = reachable(text, 'nat', 'POSTROUTING').filter((r) => r.rule.includes(`-s ${SUBNET} ! -o ${NET} `) && r.rule.endsWith('-j MASQUERADE'));
  assert.is(masq.length, 1, `one MASQUERADE for ${SUBNET} reachable from POSTROUTING:\n${tableRules(text, 'nat').join('\n')}`);
  const fwd = reachable(text, 'filter', 'FORWARD').map((r) => r.rule);
  assert.ok(fwd.some((r) => r.includes(`-i ${NET} `) && r.endsWith('-j ACCEPT')), 'FORWARD accepts traffic from the bridge');
  assert.ok(fwd.some((r) => r.includes(`-o ${NET} `) && r.endsWith('-j ACCEPT')), 'FORWARD accepts traffic to the bridge');
  for (const [table, chain, foreign] of [
    ['filter', 'FORWARD', '-A FORWARD -s 203.0.113.0/24 -j DROP'],
    ['nat', 'POSTROUTING', '-A POSTROUTING -s 203.0.113.0/24 -j RETURN'],
    ['raw', 'PREROUTING', '-A PREROUTING -s 203.0.113.0/24 -j ACCEPT'],
  ] as const) {
    const builtin = tableRules(text, table).filter((r) => r.startsWith(`-A ${chain} `));
    assert.is(builtin[0], foreign, `${table} ${chain}: our jumps are appended, the foreign rule stays first`);
    assert.ok(builtin.length >= 2, `${table} ${chain} has a jump into tsnetlink's rules`);
  }
});

// ------------------------------------------------------------------ two containers

test('connect two containers: distinct IPs .2 and .3, eth0 addressed, lo up, default route via the gateway', async () => {
  const e1 = await container('c1');
  // c2 is connected by netns name rather than by handle.
  const ns2 = createNamedNetns('c2');
  const c2: { ns: NetnsHandle; ep?: EndpointRecord } = { ns: ns2 };
  containers.set('c2', c2);
  c2.ep = await nets.connect(NET, { name: 'c2' }, { id: 'c2' });
  const got = [e1, ep('c2')].map((e) => e.ip);
  assert.equal(got, ['192.168.10.2', '192.168.10.3']);
  for (const name of ['c1', 'c2']) {
    const e = ep(name);
    const [eth0] = ipJson<any[]>(['-4', 'addr', 'show', 'eth0'], name);
    assert.ok(eth0.flags.includes('UP'), `${name} eth0 up`);
    assert.equal(eth0.addr_info.map((a: any) => `${a.local}/${a.prefixlen}`), [`${e.ip}/24`]);
    assert.is(ipJson<any[]>(['link', 'show', 'eth0'], name)[0].address, e.mac);
    assert.ok(ipJson<any[]>(['link', 'show', 'lo'], name)[0].flags.includes('UP'), `${name} lo up`);
    const def = ipJson<any[]>(['route', 'show', 'default'], name);
    assert.equal(def.map((r) => [r.gateway, r.dev]), [[GW, 'eth0']]);
    const [host] = ipJson<any[]>(['link', 'show', e.hostIfname]);
    assert.is(host.master, NET, `${e.hostIfname} enslaved to the bridge`);
    assert.ok(host.flags.includes('UP'));
  }
  assert.equal(ipamFiles(), { '192.168.10.2': 'c1', '192.168.10.3': 'c2' }, 'IPAM reservations on disk');
});

test('container to container TCP on the bridge (FORWARD policy DROP)', async () => {
  servers.push(await serve(ns('c1'), 8000, 'hello from c1'));
  assert.is(await fetchIn(ns('c2'), ep('c1').ip, 8000), `hello from c1 from=${ep('c2').ip}`);
});

test('outbound traffic is MASQUERADEd: the upstream sees the host address', async () => {
  servers.push(await serve(upstream.ns, 9000, 'upstream says hi'));
  assert.is(await fetchIn(ns('c1'), upstream.ip, 9000), `upstream says hi from=${upstream.hostIp}`);
});

// ------------------------------------------------------------------ published ports

test('connect with 80:80, 5353:53/udp, HOSTIP:8081:80 and 127.0.0.1:8083:80: DNAT rules reachable only through --dst-type LOCAL', async () => {
  const e3 = await container('c3', ['80:80', '5353:53/udp', `${HOST_IP2}:8081:80`, '127.0.0.1:8083:80']);
  assert.is(e3.ip, '192.168.10.4');
  servers.push(await serve(ns('c3'), 80, 'c3 port 80'));
  servers.push(await serve(ns('c3'), 53, 'c3 dns', true));
  const text = saveText();
  if (NFT) {
    const found = nftMappings().filter((m) => m.to === e3.ip).map((m) => `${m.proto} ${m.hostIp ?? '*'}:${m.hostPort} ${m.to}:${m.toPort} ${m.comment}`).sort();
    const tag = `tsnetlink:${NET}/c3`;
    assert.equal(found, [`tcp *:80 ${e3.ip}:80 ${tag}`, `tcp ${HOST_IP2}:8081 ${e3.ip}:80 ${tag}`, `tcp 127.0.0.1:8083 ${e3.ip}:80 ${tag}`, `udp *:5353 ${e3.ip}:53 ${tag}`].sort());
    for (const hook of ['prerouting', 'output']) {
      const rules = nftChainRules(hook).map((r) => JSON.stringify(r));
      assert.equal(rules.length, 1);
      assert.ok(rules[0]!.includes('"fib"') && rules[0]!.includes('"local"') && rules[0]!.includes('"jump":{"target":"hostports"}'), `${hook}: only local destinations reach the maps: ${rules[0]}`);
    }
    assert.is(ipJson<any[]>(['-d', 'link', 'show', e3.hostIfname])[0].linkinfo.info_slave_data.hairpin, true, 'hairpin on the port');
    return;
  }
  for (const builtin of ['PREROUTING', 'OUTPUT']) {
    const dnat = reachable(text, 'nat', builtin).filter((r) => r.rule.includes(`--to-destination ${e3.ip}:`));
    const found = dnat.map((r) => r.rule.replace(/.*(-p \w+).*--dport (\d+).* --to-destination (\S+)$/, '$1 $2 $3')).sort();
    assert.equal(found, [`-p tcp 80 ${e3.ip}:80`, `-p tcp 8081 ${e3.ip}:80`, `-p tcp 8083 ${e3.ip}:80`, `-p udp 5353 ${e3.ip}:53`], `${builtin} reaches the four DNAT rules`);
    for (const r of dnat) assert.ok([...r.via, r.rule].some((x) => x.includes('--dst-type LOCAL')), `${builtin} -> ${r.rule} only for local destinations`);
    assert.ok(dnat.some((r) => r.rule.includes(`-d ${HOST_IP2}/32`) && r.rule.includes('--dport 8081')), '8081 bound to the host IP');
  }
  assert.is(ipJson<any[]>(['-d', 'link', 'show', e3.hostIfname])[0].linkinfo.info_slave_data.hairpin, true, 'hairpin on the port');
});

test('published 80:80 from upstream: reaches the container with the client address preserved', async () => {
  assert.is(await fetchIn(upstream.ns, upstream.hostIp, 80), `c3 port 80 from=${upstream.ip}`);
});

test('published 80:80 from the host via its own IP and via 127.0.0.1', async () => {
  assert.is(await tcpGet(upstream.hostIp, 80), `c3 port 80 from=${GW}`);
  assert.is(await tcpGet('127.0.0.1', 80), `c3 port 80 from=${GW}`, '127.0.0.1 mapped (OUTPUT DNAT, route_localnet, SNAT)');
});

test('published 80:80 from another container and from the same container (hairpin)', async () => {
  assert.is(await fetchIn(ns('c1'), upstream.hostIp, 80), `c3 port 80 from=${GW}`);
  assert.is(await fetchIn(ns('c3'), upstream.hostIp, 80), `c3 port 80 from=${GW}`, 'hairpin');
});

test('UDP mapping 5353:53/udp from upstream', async () => {
  assert.is(await fetchIn(upstream.ns, upstream.hostIp, 5353, true), `c3 dns from=${upstream.ip}`);
});

test('HOSTIP:HOST:CONTAINER mapping answers only on that IP', async () => {
  assert.is(await fetchIn(upstream.ns, HOST_IP2, 8081), `c3 port 80 from=${upstream.ip}`);
  const err = await fetchIn(upstream.ns, upstream.hostIp, 8081).then((r) => `answered: ${r}`, (e: Error) => e.message);
  assert.match(err, /ECONNREFUSED/, 'the other host IP has no mapping: refused by the host itself');
});

test('127.0.0.1:HOST:CONTAINER mapping answers on localhost only, not from outside', async () => {
  assert.is(await tcpGet('127.0.0.1', 8083), `c3 port 80 from=${GW}`);
  const err = await fetchIn(upstream.ns, upstream.hostIp, 8083).then((r) => `answered: ${r}`, (e: Error) => e.message);
  assert.match(err, /ECONNREFUSED/, 'not published on the host address');
  const own = await tcpGet(upstream.hostIp, 8083).then((r) => `answered: ${r}`, (e: Error) => e.message);
  assert.match(own, /ECONNREFUSED/, 'not published on the host address, even from the host');
});

test('DNAT only for local destinations: a container reaching upstream:80 gets the upstream, not c3 (mydocker bug 22)', async () => {
  servers.push(await serve(upstream.ns, 80, 'upstream port 80'));
  assert.is(await fetchIn(ns('c2'), upstream.ip, 80), `upstream port 80 from=${upstream.hostIp}`);
  assert.is(await fetchIn(ns('c3'), upstream.ip, 80), `upstream port 80 from=${upstream.hostIp}`);
});

// ------------------------------------------------------------------ repair

test('repair after TSN-HOSTPORTS was flushed restores the published port', async () => {
  if (NFT) execFileSync('nft', ['flush', 'chain', 'inet', 'tsnetlink', 'hostports']);
  else execFileSync(IPTABLES, ['-t', 'nat', '-F', 'TSN-HOSTPORTS']);
  const lost = await fetchIn(upstream.ns, upstream.hostIp, 80).then((r) => `still answered: ${r}`, (e: Error) => e.message);
  assert.match(lost, /ECONNREFUSED/, 'the wipe really removed the mapping');
  await nets.repair();
  assert.is(await fetchIn(upstream.ns, upstream.hostIp, 80), `c3 port 80 from=${upstream.ip}`);
});

test('repair after a firewall reload (every table flushed, admin rules re-applied) restores all paths', async () => {
  const before = normalizedSave();
  const beforeNft = NFT ? normalizedNft() : '';
  if (NFT) {
    // An nftables.conf reload: every table goes, then the admin's own rules come back.
    execFileSync('nft', ['flush', 'ruleset']);
    execFileSync(RESTORE, ['--noflush'], { input: FOREIGN });
    execFileSync(IPTABLES, ['-P', 'FORWARD', 'DROP']);
    assert.not.ok(nftHasTable(), 'wiped');
  } else {
    for (const t of ['raw', 'nat', 'filter']) {
      execFileSync(IPTABLES, ['-t', t, '-F']);
      execFileSync(IPTABLES, ['-t', t, '-X']);
    }
    execFileSync(RESTORE, ['--noflush'], { input: FOREIGN });
  }
  assert.not.ok(saveText().includes('TSN-') || saveText().includes('tsnetlink'), 'wiped');
  const lost = await fetchIn(ns('c1'), upstream.ip, 9000, false, DROPPED_MS).then((r) => `still answered: ${r}`, (e: Error) => e.message);
  assert.not.ok(lost.startsWith('still answered'), `FORWARD DROP blocks the container without our rules (${lost})`);
  await nets.repair();
  assert.equal(normalizedSave(), before, 'repair rebuilt exactly the ruleset that was there');
  if (NFT) assert.fixture(normalizedNft(), beforeNft);
  assert.is(await fetchIn(ns('c1'), upstream.ip, 9000), `upstream says hi from=${upstream.hostIp}`);
  assert.is(await fetchIn(upstream.ns, upstream.hostIp, 80), `c3 port 80 from=${upstream.ip}`);
  assert.is(await tcpGet('127.0.0.1', 80), `c3 port 80 from=${GW}`);
});

// ------------------------------------------------------------------ disconnect

test('disconnect: veth gone, IP released, no rule left; a second disconnect is a no-op', async () => {
  const e1 = ep('c1');
  assert.ok(hostLinks().includes(e1.hostIfname));
  assert.is(await nets.disconnect(NET, 'c1'), true);
  assert.not.ok(hostLinks().includes(e1.hostIfname), 'host-side veth deleted');
  assert.equal(ipJson<any[]>(['link', 'show'], 'c1').map((l) => l.ifname), ['lo'], 'eth0 gone from the container');
  assert.not.ok(e1.ip in ipamFiles(), 'IP reservation file removed');
  assert.equal(rulesOf(e1), [], 'no rule mentions c1');
  assert.equal(nets.inspect(NET).endpoints.map((e) => e.id), ['c2', 'c3']);
  assert.is(await nets.disconnect(NET, 'c1'), false, 'idempotent');
});

test('disconnect of an endpoint with port mappings removes its DNAT chain and rules', async () => {
  const e3 = ep('c3');
  const chains = dnatChainsOf(e3);
  assert.ok(chains.length > 0);
  for (const s of servers.splice(0)) await stop(s);
  assert.is(await nets.disconnect(NET, 'c3'), true);
  const text = saveText();
  assert.equal(rulesOf(e3, text), []);
  for (const c of chains) assert.not.ok(stillThere(c, text), `chain ${c} deleted`);
  assert.not.ok(hostLinks().includes(e3.hostIfname));
  assert.equal(Object.keys(ipamFiles()), ['192.168.10.3']);
  const refused = await tcpGet('127.0.0.1', 80).then((r) => `answered: ${r}`, (e: Error) => e.message);
  assert.match(refused, /ECONNREFUSED/, 'the published port is closed');
});

test('round robin: the next connect gets .5, not the just released .2', async () => {
  const e4 = await container('c4', ['8082:80']);
  assert.is(e4.ip, '192.168.10.5');
  assert.equal(ipamFiles(), { '192.168.10.3': 'c2', '192.168.10.5': 'c4' });
});

test('disconnect works after the container netns was deleted first', async () => {
  const e4 = ep('c4');
  const chains = dnatChainsOf(e4);
  assert.ok(chains.length > 0);
  dropContainer('c4'); // last reference: the kernel destroys the netns and the veth pair with it
  assert.is(await nets.disconnect(NET, 'c4'), true);
  assert.not.ok(hostLinks().includes(e4.hostIfname));
  const text = saveText();
  assert.equal(rulesOf(e4, text), []);
  for (const c of chains) assert.not.ok(stillThere(c, text));
  assert.equal(Object.keys(ipamFiles()), ['192.168.10.3']);
  assert.is(await nets.disconnect(NET, 'c4'), false);
});

// ------------------------------------------------------------------ network rm

test('disconnect does not freeze the event loop while the kernel waits for RCU', async () => {
  // The link deletion (~15-20 ms of RCU) runs on a worker thread: the call returns at once and
  // timers keep firing meanwhile. Wall-clock times on a shared machine only ever grow (this
  // thread may be descheduled at any point), so the best of five disconnects is compared: a
  // deletion done on this thread would put its RCU wait into the synchronous part of every one.
  const runs: { syncMs: number; totalMs: number; ticks: number }[] = [];
  for (let i = 0; i < 5; i++) {
    const c = await container(`c7${i}`);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const t0 = performance.now();
    const p = nets.disconnect(NET, c.id);
    const syncMs = performance.now() - t0;
    assert.is(await p, true);
    const totalMs = performance.now() - t0;
    clearInterval(timer);
    assert.not.ok(hostLinks().includes(c.hostIfname));
    runs.push({ syncMs, totalMs, ticks });
    dropContainer(`c7${i}`);
  }
  const best = runs.reduce((a, b) => (b.syncMs / b.totalMs < a.syncMs / a.totalMs ? b : a));
  const all = runs.map((r) => `${r.syncMs.toFixed(1)}/${r.totalMs.toFixed(1)} ms`).join(', ');
  assert.ok(best.syncMs < best.totalMs / 2, `synchronous part of the best run ${best.syncMs.toFixed(1)} ms of ${best.totalMs.toFixed(1)} ms (all: ${all})`);
  assert.ok(best.ticks > 0, 'timers ran during the disconnect');
});

test('a stale endpoint of the same netns (its veth gone, as when a netns inode is reused) is cleared by the next connect', async () => {
  const first = await container('c8');
  execFileSync('ip', ['link', 'del', first.hostIfname]); // the pair is gone, the record stays
  const again = await nets.connect(NET, ns('c8'), { id: 'c8b' });
  assert.is.not(again.hostIfname, first.hostIfname);
  assert.not.ok(nets.inspect(NET).endpoints.some((e) => e.id === 'c8'), 'stale record cleared');
  assert.ok(Object.keys(ipamFiles()).includes(again.ip));
  assert.not.ok(Object.values(ipamFiles()).includes('c8'), 'stale IP released');
  assert.is(await nets.disconnect(NET, 'c8b'), true);
  dropContainer('c8');
});

test('two concurrent connects with the same id: one wins, the other is EALREADY, no IP is shared', async () => {
  const a = createNamedNetns('d1');
  const b = createNamedNetns('d2');
  try {
    const res = await Promise.allSettled([nets.connect(NET, a, { id: 'dup' }), nets.connect(NET, b, { id: 'dup' })]);
    const ok = res.filter((r) => r.status === 'fulfilled');
    const bad = res.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    assert.is(ok.length, 1);
    assert.is(bad.length, 1);
    assert.is(bad[0]!.reason.code, 'EALREADY');
    assert.is(Object.values(ipamFiles()).filter((owner) => owner === 'dup').length, 1);
    assert.is(await nets.disconnect(NET, 'dup'), true);
  } finally {
    a.close();
    b.close();
    deleteNamedNetns('d1');
    deleteNamedNetns('d2');
  }
});

test('connectMany / disconnectMany: five containers with a mapping each in one call, then all gone in one call', async () => {
  const names = ['m1', 'm2', 'm3', 'm4', 'm5'];
  const handles = names.map((n) => createNamedNetns(n));
  try {
    const eps = await nets.connectMany(NET, handles.map((h, i) => ({ container: h, opts: { id: names[i]!, ports: [`${9100 + i}:80`] } })));
    assert.is(new Set(eps.map((e) => e.ip)).size, 5, 'distinct IPs');
    for (const [i, e] of eps.entries()) {
      const a = ipJson<any[]>(['-4', 'addr', 'show', 'eth0'], names[i])[0];
      assert.is(a.addr_info[0].local, e.ip);
      assert.ok(hostLinks().includes(e.hostIfname));
    }
    const text = saveText();
    const maps = NFT ? nftMappings() : [];
    for (const [i, e] of eps.entries()) {
      if (NFT) assert.ok(maps.some((m) => m.proto === 'tcp' && m.hostPort === 9100 + i && m.to === e.ip && m.toPort === 80), `DNAT for ${e.id}`);
      else assert.ok(text.includes(`--dport ${9100 + i} `) && text.includes(`--to-destination ${e.ip}:80`), `DNAT for ${e.id}`);
    }
    const srv = await serve(handles[2], 80, 'm3 here');
    try {
      assert.match(await fetchIn(upstream.ns, upstream.hostIp, 9102), /^m3 here from=/);
    } finally {
      await stop(srv);
    }
    assert.is(await nets.disconnectMany(NET, names), 5);
    const after = saveText();
    for (const e of eps) {
      assert.not.ok(hostLinks().includes(e.hostIfname), `${e.hostIfname} deleted`);
      assert.equal(rulesOf(e, after), []);
      assert.not.ok(Object.keys(ipamFiles()).includes(e.ip));
    }
  } finally {
    handles.forEach((h) => h.close());
    names.forEach((n) => deleteNamedNetns(n));
  }
});

test('prune frees the endpoint of a container that died without a disconnect', async () => {
  const gone = await container('c6', ['8086:80']);
  const chains = dnatChainsOf(gone);
  assert.ok(chains.length > 0);
  const ipsBefore = Object.keys(ipamFiles());
  assert.ok(ipsBefore.includes(gone.ip));
  dropContainer('c6'); // the netns dies, and its veth pair with it; the record stays behind
  // The kernel tears a dead netns down in a workqueue: wait for the veth to go.
  for (let i = 0; i < 200 && hostLinks().includes(gone.hostIfname); i++) await new Promise((r) => setTimeout(r, 10));
  assert.not.ok(hostLinks().includes(gone.hostIfname), 'veth destroyed with its netns');
  assert.ok(nets.inspect(NET).endpoints.some((e) => e.id === 'c6'), 'stale record before prune');
  assert.equal(await nets.prune(NET), ['c6']);
  assert.not.ok(Object.keys(ipamFiles()).includes(gone.ip), 'IP released');
  assert.not.ok(nets.inspect(NET).endpoints.some((e) => e.id === 'c6'), 'record gone');
  const text = saveText();
  assert.equal(rulesOf(gone, text), []);
  for (const c of chains) assert.not.ok(stillThere(c, text));
  assert.equal(await nets.prune(NET), [], 'live endpoints are left alone');
});

test('prune also frees what a connect that died before writing its record left: IP, host port, container claim', async () => {
  // Held under the network lock by whoever made them, so whoever holds that lock and finds
  // them without a record knows their connect is dead: no age heuristic is needed.
  const dir = nets.store.networkDir(NET);
  const plant = (file: string, content: string) => {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, content);
  };
  plant(join(dir, 'ips', '192.168.10.250'), 'crashed');
  plant(join(dir, 'netns', '1-999999'), 'crashed');
  plant(join(nets.store.root, 'ports', 'tcp-9999', '0.0.0.0'), `${NET}/crashed`);
  assert.equal(await nets.prune(NET), ['crashed']);
  assert.not.ok(existsSync(join(dir, 'ips', '192.168.10.250')));
  assert.not.ok(existsSync(join(dir, 'netns', '1-999999')));
  assert.not.ok(existsSync(join(nets.store.root, 'ports', 'tcp-9999')));
  assert.equal(await nets.check(), [], 'state, kernel and firewall agree after the prune');
  // The port is free again: a new mapping of it is accepted.
  const c9 = await container('c9', ['9999:80']);
  assert.ok(c9.mappings.some((m) => m.hostPort === 9999));
  assert.is(await nets.disconnect(NET, 'c9'), true);
  dropContainer('c9');
});

test('network rm --force: bridge and veths gone, iptables-save exactly as before create, state empty', async () => {
  const e2 = ep('c2');
  await nets.remove(NET, { force: true });
  const links = hostLinks();
  assert.not.ok(links.includes(NET), 'bridge deleted');
  assert.not.ok(links.includes(e2.hostIfname), 'attached endpoint disconnected');
  assert.equal(ipJson<any[]>(['link', 'show'], 'c2').map((l) => l.ifname), ['lo']);
  assert.equal(normalizedSave(), baseline, 'iptables-save equals the ruleset before network create');
  if (NFT) assert.fixture(normalizedNft(), baselineNft, 'nft list ruleset equals the ruleset before network create');
  assert.equal(stateFiles(), [], 'no state file left');
  assert.equal(nets.list(), []);
  assert.is(ipJson<any[]>(['route', 'show', SUBNET]).length, 0);
});

test('nothing left: only lo, no named netns, no fd or netns-switch leaks', () => {
  for (const name of [...containers.keys()]) dropContainer(name);
  upstream.close();
  nets.host.linkDel('up0');
  assert.equal(hostLinks(), ['lo']);
  assert.equal(readdirSync('/run/netns'), []);
  guard.check();
});

test.run();
