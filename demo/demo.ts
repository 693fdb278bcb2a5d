/**
 * The bridge-network chapter's test section, played in a sandbox (run through scripts/sandbox.mjs by
 * `npm run demo`): network create, two containers, container-to-container traffic,
 * MASQUERADE to an upstream, a published port reached from outside, from the host's IP and
 * from 127.0.0.1, hairpin, then teardown. Each step prints pass/fail and its latency.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { Networks, Rtnl, createNamedNetns, deleteNamedNetns, openRtnlIn, type NetnsHandle, type EndpointRecord } from '../src/index.js';
import { makeUpstream, serve, fetchFrom, stop, type Upstream } from './scenario.js';

const color = process.stdout.isTTY ? (c: number, s: string) => `\x1b[${c}m${s}\x1b[0m` : (_c: number, s: string) => s;
let passed = 0;
let failed = 0;

async function step<T>(title: string, fn: () => T | Promise<T>, show?: (v: T) => string): Promise<T | undefined> {
  const t0 = performance.now();
  try {
    const v = await fn();
    const ms = (performance.now() - t0).toFixed(2).padStart(8);
    passed++;
    console.log(`${color(32, 'PASS')} ${ms} ms  ${title}${show ? `\n                    ${show(v)}` : ''}`);
    return v;
  } catch (e) {
    failed++;
    console.log(`${color(31, 'FAIL')} ${(performance.now() - t0).toFixed(2).padStart(8)} ms  ${title}\n                    ${(e as Error).message}`);
    return undefined;
  }
}

function expect(cond: boolean, msg: string): void {
  if (!cond) throw new Error(msg);
}

const nets = new Networks();
const host = Rtnl.open();
const containers: { name: string; ns: NetnsHandle; ep?: EndpointRecord }[] = [];
const servers: ChildProcess[] = [];
let upstream: Upstream | undefined;

async function container(name: string, ports: string[] = []): Promise<{ ns: NetnsHandle; ep: EndpointRecord }> {
  const ns = createNamedNetns(name);
  const c: { name: string; ns: NetnsHandle; ep?: EndpointRecord } = { name, ns };
  containers.push(c);
  c.ep = await nets.connect('testbridge', ns, { id: name, ports });
  return { ns, ep: c.ep };
}

function addressOf(ns: NetnsHandle): string {
  const r = openRtnlIn(ns);
  try {
    return r.addrList({ family: 4, link: 'eth0' }).map((a) => a.cidr).join(' ');
  } finally {
    r.close();
  }
}

async function main(): Promise<void> {
  console.log('tsnetlink demo: the book chapter\'s bridge-network scenario, in a throwaway network namespace');
  console.log('(a "container" here is a network namespace connected the way `tsnetlink run` connects one;');
  console.log(' each traffic step starts a client process (node) inside a namespace: most of its time is that start)\n');
  await step('tsnetlink network create --driver bridge --subnet 192.168.10.1/24 testbridge', () => nets.create({ name: 'testbridge', subnet: '192.168.10.1/24' }), (n) => `bridge ${n.bridge}, subnet ${n.subnet}, gateway ${n.gateway}`);
  upstream = makeUpstream(host);
  console.log(`      (an "upstream" namespace plays the outside world: host ${upstream.hostIp} <-> upstream ${upstream.ip})`);

  const c1 = await step('container c1: new netns, connected to testbridge (what `run -net testbridge` does before CMD)', () => container('c1'), (c) => `c1 eth0: ${addressOf(c.ns)} (${c.ep.hostIfname} on testbridge)`);
  const c2 = await step('container c2: new netns, connected to testbridge', () => container('c2'), (c) => `c2 eth0: ${addressOf(c.ns)}`);
  if (c1 && c2) {
    servers.push(await serve(c1.ns, 8000, 'hello from c1'));
    await step(`container to container: c2 -> ${c1.ep.ip}:8000`, async () => {
      const r = await fetchFrom(c2.ns, c1.ep.ip, 8000);
      expect(r === `hello from c1 from=${c2.ep.ip}`, `unexpected reply: ${r}`);
      return r;
    }, (r) => r);
  }
  if (c1 && upstream) {
    servers.push(await serve(upstream.ns, 9000, 'upstream says hi'));
    await step(`outbound MASQUERADE: c1 -> upstream ${upstream.ip}:9000 sees the host's address`, async () => {
      const r = await fetchFrom(c1.ns, upstream!.ip, 9000);
      expect(r === `upstream says hi from=${upstream!.hostIp}`, `upstream saw: ${r}`);
      return r;
    }, (r) => r);
  }
  const c3 = await step('container c3: new netns, connected with -p 80:80 (a server listens on its port 80 next)', () => container('c3', ['80:80']), (c) => `c3 eth0: ${addressOf(c.ns)}, 80/tcp published`);
  if (c3 && upstream) {
    servers.push(await serve(c3.ns, 80, 'c3 port 80'));
    const up = upstream;
    await step(`published port from outside: upstream -> ${up.hostIp}:80`, async () => {
      const r = await fetchFrom(up.ns, up.hostIp, 80);
      expect(r === `c3 port 80 from=${up.ip}`, `reply: ${r}`);
      return r;
    }, (r) => `${r} (client address preserved)`);
    // Each reply names the client address c3 saw, so a reply from anywhere but c3 fails the step.
    const fromC3 = async (ns: NetnsHandle | undefined, ip: string): Promise<string> => {
      const r = await fetchFrom(ns, ip, 80);
      expect(r.startsWith('c3 port 80 from='), `reply not from c3: ${r}`);
      return r;
    };
    await step(`published port from the host via its own IP: ${up.hostIp}:80`, () => fromC3(undefined, up.hostIp), (r) => r);
    await step('published port from the host via 127.0.0.1:80 (the chapter tests it with telnet 127.0.0.1 80)', () => fromC3(undefined, '127.0.0.1'), (r) => r);
    if (c1) await step(`from another container: c1 -> ${up.hostIp}:80`, () => fromC3(c1.ns, up.hostIp), (r) => r);
    await step(`hairpin: c3 -> ${up.hostIp}:80 (its own published port)`, () => fromC3(c3.ns, up.hostIp), (r) => r);
  }
  console.log('\niptables rules owned by tsnetlink (iptables-save):');
  console.log(execFileSync('iptables-save', { encoding: 'utf8' }).split('\n').filter((l) => l.includes('TSN-') && l.startsWith('-A')).map((l) => `    ${l}`).join('\n'));
  console.log();
}

async function teardown(): Promise<void> {
  for (const s of servers) await stop(s);
  await step('teardown: disconnect every container, remove their namespaces', async () => {
    for (const c of containers) {
      if (c.ep) await nets.disconnect('testbridge', c.ep.id);
      c.ns.close();
      deleteNamedNetns(c.name);
    }
  });
  await step('tsnetlink network rm testbridge', () => nets.remove('testbridge', { force: true }).catch((e: { code?: string }) => {
    if (e.code !== 'ENONET') throw e;
  }));
  // up0's peer lives in the upstream netns, so the pair also goes when that netns is cleaned up
  // (asynchronously, by the kernel): delete it first, and accept that it may already be gone.
  if (upstream) {
    try {
      host.linkDel('up0');
    } catch (e) {
      if ((e as { code?: string }).code !== 'ENODEV') throw e;
    }
    upstream.close();
  }
  await step('nothing left: no veth or bridge, no TSN rules, no state', () => {
    const links = JSON.parse(execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' })) as { ifname: string }[];
    expect(links.length === 1 && links[0]!.ifname === 'lo', `links left: ${links.map((l) => l.ifname).join(', ')}`);
    expect(!execFileSync('iptables-save', { encoding: 'utf8' }).includes('TSN-'), 'TSN rules left');
    expect(nets.list().length === 0, 'networks left in state');
    return 'clean';
  });
  nets.close();
  host.close();
}

try {
  await main();
} catch (e) {
  failed++;
  console.log(`${color(31, 'FAIL')} ${(e as Error).stack}`);
} finally {
  await teardown();
}
console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
