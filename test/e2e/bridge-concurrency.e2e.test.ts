/**
 * End-to-end: 20 processes connect 20 containers to one network at the same instant (a stdin
 * barrier), each with its own published port, then all disconnect at once. The oracles: the
 * addresses inside each container (`nsenter ... ip -j`), the veths on the bridge (`ip -j`), the
 * DNAT rules (iptables-save), the IPAM files, and TCP to every container, directly and through
 * its published port, answered with the container's own pid.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Networks, type EndpointRecord } from '../../src/index.js';
import { ipJson, tcpGet, requireSandbox, withoutFallbackTunnels } from '../helpers.js';
import { NFT, nftMappings } from './fw-oracle.js';

requireSandbox('bridge-concurrency');

const SAVE = (process.env['TSNETLINK_IPTABLES_RESTORE'] ?? 'iptables-restore').replace(/-restore$/, '-save');
const WORKER = fileURLToPath(new URL('./connect-worker.js', import.meta.url));
const N = 20;
const NET = 'ccnet';
const BASE_PORT = 8100;
const SERVER_PORT = 7000;

interface Reply {
  ok: boolean;
  ms?: number;
  ep?: EndpointRecord;
  error?: { name: string; code: string; step?: string; message: string };
}

/** A child whose stdout is read line by line. */
class Child {
  private buf = '';
  private waiters: ((line: string) => void)[] = [];
  private lines: string[] = [];
  err = '';
  readonly exited: Promise<number | null>;
  constructor(readonly proc: ChildProcessWithoutNullStreams, readonly label: string) {
    proc.stdout.on('data', (d: Buffer) => {
      this.buf += d.toString();
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        const w = this.waiters.shift();
        if (w) w(line);
        else this.lines.push(line);
      }
    });
    proc.stderr.on('data', (d: Buffer) => (this.err += d.toString()));
    this.exited = new Promise((resolve) => proc.on('close', (code) => resolve(code)));
  }
  /** The next stdout line; fails if the child exits first or after `ms`. */
  next(ms = 20_000): Promise<string> {
    const queued = this.lines.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${this.label}: no output within ${ms} ms; stderr: ${this.err}`)), ms);
      const waiter = (line: string): void => {
        clearTimeout(t);
        resolve(line);
      };
      this.waiters.push(waiter);
      void this.exited.then((code) => {
        if (!this.waiters.includes(waiter)) return;
        clearTimeout(t);
        reject(new Error(`${this.label} exited with ${code}; stderr: ${this.err}`));
      });
    });
  }
  async stop(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill();
    await this.exited;
  }
}

const nets = new Networks();
const containers: Child[] = [];
const workers: Child[] = [];
const connected: EndpointRecord[] = [];

/** The state directory's view of the network: reservations, index and endpoint records. */
function ipamState(): { ips: Record<string, string>; byid: string[]; endpoints: string[]; markers: string[] } {
  const dir = nets.store.networkDir(NET);
  const list = (d: string): string[] => {
    try {
      return readdirSync(join(dir, d)).filter((n) => !n.startsWith('.'));
    } catch {
      return [];
    }
  };
  return {
    ips: Object.fromEntries(list('ips').map((ip) => [ip, readFileSync(join(dir, 'ips', ip), 'utf8')])),
    byid: list('byid').sort(),
    endpoints: list('endpoints').sort(),
    markers: list('netns'),
  };
}

function inContainer<T = any>(pid: number, args: string[]): T {
  return withoutFallbackTunnels(JSON.parse(execFileSync('nsenter', [`--net=/proc/${pid}/ns/net`, 'ip', '-j', ...args], { encoding: 'utf8' }) || '[]')) as T;
}

test.before(async () => {
  await nets.create({ name: NET, subnet: '192.168.50.1/24' });
  // Containers: a TCP server in a fresh netns answering with its pid (unshare execs node: same pid).
  const server = `require('net').createServer(c=>c.end('pid='+process.pid)).listen(${SERVER_PORT},'0.0.0.0',()=>console.log('ready'))`;
  for (let i = 0; i < N; i++) {
    containers.push(new Child(spawn('unshare', ['--net', '--', process.execPath, '-e', server]), `container ${i}`));
  }
  for (const c of containers) assert.is(await c.next(), 'ready');
});

test.after(async () => {
  for (const w of workers) await w.stop();
  for (const c of containers) await c.stop();
  await nets.remove(NET, { force: true }).catch(() => undefined);
  nets.close();
});

test(`${N} processes connect at once: ${N} distinct IPs, each in the right container`, async () => {
  for (let i = 0; i < N; i++) {
    const pid = containers[i]!.proc.pid!;
    workers.push(new Child(spawn(process.execPath, [WORKER, NET, String(pid), `w${i}`, `${BASE_PORT + i}:${SERVER_PORT}`]), `worker ${i}`));
  }
  for (const w of workers) assert.is(await w.next(), 'ready');
  for (const w of workers) w.proc.stdin.write('go\n');
  const replies = (await Promise.all(workers.map((w) => w.next()))).map((l) => JSON.parse(l) as Reply);
  const failed = replies.map((r, i) => (r.ok ? '' : `w${i}: ${JSON.stringify(r.error)}`)).filter((x) => x);
  assert.equal(failed, [], 'every connect succeeded');
  connected.push(...replies.map((r) => r.ep!));
  const ips = connected.map((e) => e.ip);
  assert.is(new Set(ips).size, N, `distinct IPs: ${ips.join(' ')}`);
  for (const ip of ips) assert.match(ip, /^192\.168\.50\.(\d+)$/);
  assert.not.ok(ips.includes('192.168.50.1'), 'gateway never handed out');
  for (let i = 0; i < N; i++) {
    const [eth0] = inContainer<any[]>(containers[i]!.proc.pid!, ['-4', 'addr', 'show', 'eth0']);
    assert.equal(eth0.addr_info.map((a: any) => `${a.local}/${a.prefixlen}`), [`${connected[i]!.ip}/24`], `container ${i} has its endpoint's address`);
  }
});

test('the bridge has exactly the 20 veths; IPAM files and records agree', () => {
  const ports = ipJson<any[]>(['link', 'show', 'master', NET]).map((l) => l.ifname as string).sort();
  assert.equal(ports, connected.map((e) => e.hostIfname).sort());
  const st = ipamState();
  assert.equal(st.ips, Object.fromEntries(connected.map((e) => [e.ip, e.id])), 'one reservation per endpoint, owned by it');
  assert.equal(st.byid, connected.map((e) => e.id).sort());
  assert.equal(st.endpoints, connected.map((e) => `${e.id}.json`).sort());
  assert.is(st.markers.length, N);
  assert.equal(nets.inspect(NET).endpoints.map((e) => [e.id, e.ip]).sort(), connected.map((e) => [e.id, e.ip]).sort());
});

test('iptables-save holds one DNAT per endpoint, none duplicated (nft: one map element each)', () => {
  if (NFT) {
    const elems = nftMappings().map((m) => `${m.hostPort} ${m.to}:${m.toPort}`).sort();
    assert.equal(elems, connected.map((e, i) => `${BASE_PORT + i} ${e.ip}:${SERVER_PORT}`).sort());
    return;
  }
  const dnat = execFileSync(SAVE, ['-t', 'nat'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes('-j DNAT'));
  assert.is(dnat.length, N, dnat.join('\n'));
  for (let i = 0; i < N; i++) {
    const mine = dnat.filter((l) => l.includes(`--dport ${BASE_PORT + i} `));
    assert.is(mine.length, 1, `port ${BASE_PORT + i}`);
    assert.ok(mine[0]!.endsWith(`--to-destination ${connected[i]!.ip}:${SERVER_PORT}`), mine[0]);
  }
  const jumps = execFileSync(SAVE, ['-t', 'nat'], { encoding: 'utf8' }).split('\n').filter((l) => /^-A (PREROUTING|OUTPUT|POSTROUTING) /.test(l));
  assert.is(new Set(jumps).size, jumps.length, `no duplicated jump in a built-in chain:\n${jumps.join('\n')}`);
});

test('all 20 reachable from the host: directly and through their published ports', async () => {
  const direct = await Promise.all(connected.map((e) => tcpGet(e.ip, SERVER_PORT)));
  const published = await Promise.all(connected.map((_, i) => tcpGet('127.0.0.1', BASE_PORT + i)));
  const want = containers.map((c) => `pid=${c.proc.pid}`);
  assert.equal(direct, want, 'each IP answered by its own container');
  assert.equal(published, want, 'each published port answered by its own container');
});

test('20 processes disconnect at once: veths, rules, reservations and records all gone', async () => {
  for (const w of workers) w.proc.stdin.write('disconnect\n');
  const replies = (await Promise.all(workers.map((w) => w.next()))).map((l) => JSON.parse(l) as Reply);
  assert.equal(replies.filter((r) => r.ok !== true), [], 'every disconnect succeeded');
  const codes = await Promise.all(workers.map((w) => w.exited));
  assert.equal(codes, workers.map(() => 0));
  assert.equal(ipJson<any[]>(['link', 'show', 'type', 'veth']).map((l) => l.ifname), []);
  for (const c of containers) assert.equal(inContainer<any[]>(c.proc.pid!, ['link', 'show']).map((l) => l.ifname), ['lo']);
  assert.equal(ipamState(), { ips: {}, byid: [], endpoints: [], markers: [] });
  assert.equal(execFileSync(SAVE, ['-t', 'nat'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes('-j DNAT')), []);
  if (NFT) assert.equal(nftMappings(), [], 'no map element left');
  assert.equal(nets.inspect(NET).endpoints, []);
});

test('network rm leaves no rule and no state file but locks', async () => {
  await nets.remove(NET);
  assert.not.ok(execFileSync(SAVE, { encoding: 'utf8' }).includes('TSN-'));
  const files: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d)) {
      const p = join(d, e);
      if (statSync(p).isDirectory()) walk(p);
      else if (e !== 'lock' && !e.endsWith('.lock')) files.push(p);
    }
  };
  walk(nets.store.root);
  assert.equal(files, []);
});

test.run();
