/**
 * End-to-end: a published port never silently takes over a host process's port (issue 19 item
 * 3). A child process listens on TCP 9090 (0.0.0.0) and binds UDP 5353 ([::], dual-stack) in the
 * sandbox's host netns; the library's socket list agrees with `ss -H -ltn` / `ss -H -lun`;
 * `connect -p` over either is refused with EHOSTLISTENER naming the child's pid and program,
 * from the library and the CLI, with links, firewall and state files unchanged; a port or
 * address nobody holds publishes as before; allowHostListener (--publish-over-listener)
 * publishes anyway, and then the container does answer on 127.0.0.1:9090.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { HostListenerError, Networks, SockDiag, type InetSocket } from '../../src/index.js';
import { catchAsync, requireSandbox, spawnNode, stop, tcpGet, waitReady } from '../helpers.js';
import { box, cli, serveIn, SAVE, type Box } from './lib.js';
import { NFT, normalizedNft } from './fw-oracle.js';

requireSandbox('hostport-listener');

const NET = 'lsnnet';
const nets = new Networks();
let holder: ChildProcess;
const boxes: Box[] = [];

// A TCP listener on 0.0.0.0:9090 and a dual-stack UDP socket on [::]:5353, held by a child.
const HOLDER = `const n=require('net'),d=require('dgram');n.createServer(c=>c.end('host')).listen(9090,'0.0.0.0',()=>{d.createSocket({type:'udp6',ipv6Only:false}).bind(5353,'::',()=>console.log('ready'))})`;

function files(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir).sort()) {
      const p = join(dir, e);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(`${p.slice(root.length + 1)} = ${e === 'lock' || e.endsWith('.lock') || e === 'last' ? '' : readFileSync(p, 'utf8')}`);
    }
  };
  walk(root);
  return out;
}

/** Links, firewall (the backend this run uses) and state files, for before/after comparisons. */
function snapshot(): unknown {
  const links = JSON.parse(execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' })).map((l: any) => `${l.ifname} ${l.master ?? ''}`);
  const fw = NFT ? normalizedNft() : execFileSync(SAVE, { encoding: 'utf8' }).split('\n').filter((l) => l !== '' && !l.startsWith('#')).map((l) => l.replace(/\[\d+:\d+\]/g, ''));
  return { links, fw, state: files(nets.store.root) };
}

/** `ss -H -ltn` / `-lun` as "address:port" lines (brackets and scope ids as ss writes them removed). */
function ss(flags: string): string[] {
  return execFileSync('ss', ['-H', flags], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const local = l.trim().split(/\s+/)[3] as string;
      const i = local.lastIndexOf(':');
      let addr = local.slice(0, i).replace(/^\[|\]$/g, '');
      if (addr === '*') addr = '::';
      return `${addr}:${local.slice(i + 1)}`;
    })
    .sort();
}

const text = (s: InetSocket): string => `${s.local.address}:${s.local.port}`;

test.before(async () => {
  holder = spawnNode(HOLDER);
  await waitReady(holder);
  await nets.create({ name: NET, subnet: '10.91.0.0/24' });
});

test.after(async () => {
  for (const n of nets.list()) await nets.remove(n.name, { force: true }).catch(() => undefined);
  for (const b of boxes) b.close();
  nets.close();
  await stop(holder);
});

test('the library lists the same listeners as ss -ltn and ss -lun', () => {
  const d = SockDiag.open();
  try {
    const tcp = [4, 6].flatMap((f) => d.socketList({ family: f as 4 | 6, protocol: 'tcp', states: ['listen'] })).map(text).sort();
    const udp = [4, 6].flatMap((f) => d.socketList({ family: f as 4 | 6, protocol: 'udp', states: ['close'] })).map(text).sort();
    assert.equal(tcp, ss('-ltn'));
    assert.equal(udp, ss('-lun'));
    assert.ok(tcp.includes('0.0.0.0:9090') && udp.includes(':::5353'), `${tcp} / ${udp}`);
    const mine = d.socketList({ family: 4, protocol: 'tcp', states: ['listen'], sport: 9090 });
    assert.equal(mine.map((s) => [s.state, s.local.port, s.uid]), [['listen', 9090, 0]]);
  } finally {
    d.close();
  }
});

test('connect -p over the TCP listener is EHOSTLISTENER naming pid and program, and nothing changes', async () => {
  const b = box('c1');
  boxes.push(b);
  const before = snapshot();
  for (const spec of ['9090:80', '127.0.0.1:9090:80']) {
    const e = await catchAsync(() => nets.connect(NET, b.ns, { ports: [spec] }));
    assert.instance(e, HostListenerError, spec);
    assert.is(e.code, 'EHOSTLISTENER');
    assert.ok(e.message.includes(`port tcp/9090 is in use on this host by pid ${holder.pid} (node) listening on 0.0.0.0:9090`), e.message);
    assert.equal(snapshot(), before, `${spec}: nothing changed`);
  }
  // The UDP socket is [::] without IPV6_V6ONLY: it takes IPv4 too, so an IPv4 mapping is refused.
  const u = await catchAsync(() => nets.connect(NET, b.ns, { ports: ['5353:53/udp'] }));
  assert.is(u.code, 'EHOSTLISTENER');
  assert.ok(u.message.includes(`pid ${holder.pid} (node) bound to [::]:5353`), u.message);
  assert.equal(snapshot(), before, 'nothing changed');
  // The CLI says the same and exits 1.
  const r = await cli('connect', '-net', NET, '-p', '9090:80', b.path).exit;
  assert.is(r.code, 1, r.err);
  assert.ok(r.err.includes(`pid ${holder.pid} (node)`) && r.err.includes('--publish-over-listener'), r.err);
  assert.equal(snapshot(), before, 'CLI: nothing changed');
});

test('a free port publishes; --publish-over-listener publishes anyway, and the container then answers on 127.0.0.1:9090', async () => {
  const free = box('c2');
  boxes.push(free);
  const ep = await nets.connect(NET, free.ns, { ports: ['9091:80', '5354:53/udp'] });
  assert.is(ep.mappings.length, 2);
  assert.is(await tcpGet('127.0.0.1', 9090), 'host', 'the host process still has its port');
  const b = box('c3');
  boxes.push(b);
  serveIn(b, 80, 'container');
  const r = await cli('connect', '-net', NET, '-p', '9090:80', '--publish-over-listener', b.path).exit;
  assert.is(r.code, 0, r.err);
  assert.equal(JSON.parse(r.out).mappings.map((m: { hostPort: number }) => m.hostPort), [9090]);
  assert.is(await tcpGet('127.0.0.1', 9090), 'container', 'published over the listener, as asked');
});

test.run();
