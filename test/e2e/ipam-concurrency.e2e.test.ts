import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ipam } from '../../src/bridge/ipam.js';
import { Store } from '../../src/bridge/store.js';

const worker = fileURLToPath(new URL('./ipam-worker.js', import.meta.url));
const tmpBase = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
const roots: string[] = [];
function tempRoot(): string {
  const d = mkdtempSync(join(tmpBase, 'tsnetlink-e2e-'));
  roots.push(d);
  return join(d, 'state');
}
test.after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

interface Result {
  id: string;
  ip: string;
}

/** Starts `n` workers, releases them together once all are loaded, and collects their results. */
async function runWorkers(n: number, args: (w: number) => string[]): Promise<Result[]> {
  const children = Array.from({ length: n }, (_, w) => {
    const child = spawn(process.execPath, [worker, ...args(w)], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const ready = new Promise<void>((res) => {
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.startsWith('ready\n')) res();
      });
    });
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const done = new Promise<Result[]>((res, rej) => {
      child.once('error', rej);
      // 'close', not 'exit': a child's exit can be reported before the rest of its stdout is read.
      child.once('close', (code) => {
        if (code !== 0) return rej(new RangeError(`worker ${w} exited ${code}: ${err}`));
        try {
          res(JSON.parse(out.slice('ready\n'.length)) as Result[]);
        } catch (e) {
          rej(new Error(`worker ${w}: unreadable result ${JSON.stringify(out)}: ${(e as Error).message}`));
        }
      });
    });
    return { child, ready, done };
  });
  // Startup (node + koffi) takes far longer than an allocation: without a barrier the
  // children would run one after another and never contend.
  await Promise.race([Promise.all(children.map((c) => c.ready)), Promise.any(children.map((c) => c.done))]);
  for (const c of children) c.child.stdin.end('go\n');
  return (await Promise.all(children.map((c) => c.done))).flat();
}

/** Every reservation, index entry and endpoint record agree with each other. */
function assertConsistent(store: Store, network: string, subnet: string, expected: Result[]): void {
  const dir = store.networkDir(network);
  const ips = readdirSync(join(dir, 'ips'));
  const byid = readdirSync(join(dir, 'byid'));
  assert.is(ips.length, expected.length, 'one reservation per live endpoint');
  assert.is(byid.length, expected.length, 'one index entry per live endpoint');
  for (const { id, ip } of expected) {
    assert.is(readFileSync(join(dir, 'ips', ip), 'utf8'), id);
    assert.is(readFileSync(join(dir, 'byid', id), 'utf8'), ip);
    const record = store.getEndpoint(network, id);
    assert.is(record?.ip, ip);
  }
  assert.equal(store.endpointIds(network).sort(), expected.map((r) => r.id).sort());
  const all = [dir, join(dir, 'ips'), join(dir, 'byid'), join(dir, 'endpoints')].flatMap((d) => readdirSync(d));
  assert.equal(all.filter((n) => n.endsWith('.tmp')), [], 'no temp files left');
  const ipam = new Ipam(store, network, subnet);
  assert.equal(
    ipam.list().map((a) => a.endpointId).sort(),
    expected.map((r) => r.id).sort(),
  );
}

test('20 processes allocating at once get 20 distinct addresses', async () => {
  const root = tempRoot();
  const subnet = '10.77.0.1/24';
  const results = await runWorkers(20, (w) => [root, 'conc', subnet, String(w), '1']);
  assert.is(results.length, 20);
  const ips = results.map((r) => r.ip);
  assert.is(new Set(ips).size, 20, `duplicates in ${ips.join(' ')}`);
  // Nothing was released, so the 20 lowest hosts were handed out.
  assert.equal(
    [...ips].sort((a, b) => Number(a.split('.')[3]) - Number(b.split('.')[3])),
    Array.from({ length: 20 }, (_, i) => `10.77.0.${i + 2}`),
  );
  assertConsistent(new Store({ root }), 'conc', subnet, results);
});

test('20 processes with allocate/release churn keep the store consistent', async () => {
  const root = tempRoot();
  const subnet = '10.78.0.0/24'; // 253 addresses
  // Each worker allocates 15 and releases every third (5), keeping 10: at most 11 x 20 = 220
  // live at once fits, while 300 allocations make the cursor wrap and reuse released addresses.
  const results = await runWorkers(20, (w) => [root, 'churn', subnet, String(w), '15']);
  assert.is(results.length, 200);
  assert.is(new Set(results.map((r) => r.ip)).size, 200, 'live addresses are distinct');
  assertConsistent(new Store({ root }), 'churn', subnet, results);
});

test.run();
