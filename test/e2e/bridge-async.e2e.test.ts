/**
 * End-to-end: the event loop keeps answering while containers leave. Twelve containers with a
 * published port each and tracked flows are disconnected through Networks, all at once and one
 * after another, while an HTTP server of this process is asked over and over; then the network
 * is removed with containers still on it. The oracles: the server's answers that arrived while
 * the disconnects were in flight, `ip -j link` (host veths and bridge gone), `conntrack -L`
 * (the containers' flows gone), and the ruleset of the backend in use (nft -j or iptables-save:
 * the endpoints' rules gone). scripts/test.mjs runs this file on both firewall backends.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { createServer, get, type Server } from 'node:http';
import { Networks, type EndpointRecord } from '../../src/index.js';
import { ipJson, requireSandbox } from '../helpers.js';
import { NFT, nftMappings } from './fw-oracle.js';
import { SAVE, box, type Box } from './lib.js';

requireSandbox('bridge-async');

const NET = 'asyncnet';
const N = 12;
const nets = new Networks();

/** The host veths on the bridge, as ip -j sees them. */
const hostVeths = (): string[] => ipJson<{ ifname: string }[]>(['link', 'show', 'type', 'veth']).map((l) => l.ifname);

/** The flows conntrack tracks to or from `ip`. */
function flowsOf(ip: string): string[] {
  const run = (dir: string): string[] => execFileSync('conntrack', ['-L', dir, ip], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n').filter((l) => l.trim());
  return [...run('-s'), ...run('-d')];
}

/** Rules of the endpoint in the backend in use: nft map elements, or iptables-save lines tagged with it. */
function rulesOf(e: EndpointRecord): string[] {
  if (NFT) return nftMappings().filter((m) => m.to === e.addresses[0]!.ip).map((m) => JSON.stringify(m));
  return execFileSync(SAVE, { encoding: 'utf8' }).split('\n').filter((l) => l.includes(`tsnetlink:${NET}/${e.id}`));
}

/** Gives every endpoint a tracked UDP flow from the host (an entry conntrack holds until it times out). */
async function track(recs: readonly EndpointRecord[]): Promise<void> {
  const sock = createSocket('udp4');
  await new Promise<void>((resolve) => sock.bind(0, resolve));
  for (const r of recs) await new Promise<void>((resolve, reject) => sock.send('x', 9, r.addresses[0]!.ip, (e) => (e ? reject(e) : resolve())));
  await new Promise<void>((resolve) => sock.close(resolve));
}

/**
 * Asks a local HTTP server over and over while `work` runs; returns how many answers came back
 * before `work` settled.
 */
async function answersDuring(server: Server, work: () => Promise<unknown>): Promise<number> {
  const port = (server.address() as { port: number }).port;
  let done = false;
  let answers = 0;
  const ask = (): Promise<void> =>
    new Promise((resolve) => {
      get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
        res.resume();
        res.on('end', () => {
          if (!done) answers++;
          resolve();
        });
      }).on('error', () => resolve());
    });
  const asking = (async () => {
    while (!done) await ask();
  })();
  try {
    await work();
  } finally {
    done = true;
  }
  await asking;
  return answers;
}

let server: Server;
const boxes: Box[] = [];

test.before(async () => {
  server = createServer((_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  await nets.create({ name: NET, subnet: '10.93.0.1/24' });
});

test.after(async () => {
  server.close();
  await nets.remove(NET, { force: true }).catch(() => undefined);
  nets.close();
  for (const b of boxes) b.close();
});

async function connectAll(base: number): Promise<EndpointRecord[]> {
  const recs: EndpointRecord[] = [];
  for (let i = 0; i < N; i++) {
    const b = box(`ab${base + i}`);
    boxes.push(b);
    recs.push(await nets.connect(NET, b.ns, { ports: [`${9300 + base + i}:80`] }));
  }
  await track(recs);
  return recs;
}

function assertGone(recs: readonly EndpointRecord[], how: string): void {
  const veths = new Set(hostVeths());
  for (const r of recs) {
    assert.not.ok(veths.has(r.hostIfname), `${how}: host veth ${r.hostIfname} still there`);
    assert.equal(flowsOf(r.addresses[0]!.ip), [], `${how}: flows of ${r.addresses[0]!.ip} still tracked`);
    assert.equal(rulesOf(r), [], `${how}: rules of ${r.id} still there`);
  }
}

test('the event loop answers while containers disconnect, all at once and one after another; links, flows and rules are gone', async () => {
  const together = await connectAll(0);
  const apart = await connectAll(N);
  // The oracles see what the disconnects must remove, on the backend in use.
  for (const r of [...together, ...apart]) {
    assert.ok(hostVeths().includes(r.hostIfname), `veth ${r.hostIfname} made`);
    assert.ok(flowsOf(r.addresses[0]!.ip).length > 0, `a flow of ${r.addresses[0]!.ip} tracked`);
    assert.ok(rulesOf(r).length > 0, `rules of ${r.id} in place`);
  }

  const all = await answersDuring(server, async () => {
    const removed = await Promise.all(together.map((r) => nets.disconnect(NET, r.id)));
    assert.equal(removed, together.map(() => true));
  });
  assert.ok(all > 0, 'the HTTP server answered while the disconnects were in flight');
  assertGone(together, 'all at once');

  const one = await answersDuring(server, async () => {
    for (const r of apart) assert.ok(await nets.disconnect(NET, r.id));
  });
  assert.ok(one > 0, 'the HTTP server answered between sequential disconnects');
  assertGone(apart, 'one after another');
});

test('network rm with containers on it: the event loop answers; bridge, veths, flows and rules are gone', async () => {
  const recs = await connectAll(2 * N);
  const bridge = nets.list().find((n) => n.name === NET)!.bridge;
  const answers = await answersDuring(server, () => nets.remove(NET, { force: true }));
  assert.ok(answers > 0, 'the HTTP server answered while the network was removed');
  assertGone(recs, 'network rm');
  assert.not.ok(ipJson<{ ifname: string }[]>(['link', 'show']).some((l) => l.ifname === bridge), `bridge ${bridge} gone`);
});

test.run();
