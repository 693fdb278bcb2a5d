/**
 * Building blocks of the end-to-end files about trust (isolation, crashes, races): containers as
 * anonymous namespaces owned by the test process, servers listening inside them from this very
 * process (a socket created inside a namespace switch stays there), and probes.
 */
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import { createAnonymousNetns, openRtnlIn, withNetns, type NetnsHandle } from '../../src/index.js';
import { probeTcp, probeUdp, withoutFallbackTunnels } from '../helpers.js';

export const RESTORE = process.env['TSNETLINK_IPTABLES_RESTORE'] ?? 'iptables-restore';
export const SAVE = RESTORE.replace(/-restore$/, '-save');
export const IPTABLES = RESTORE.replace(/-restore$/, '');

/**
 * Whether this run uses the full stress counts ($TSNETLINK_STRESS=1, `npm run test:stress`).
 * Without it the stress files run every scenario with fewer repetitions, enough to hit the
 * classes of bug they were written for, so that `npm test` stays short.
 */
export const STRESS = process.env['TSNETLINK_STRESS'] === '1';

/** A repetition count: `full` under $TSNETLINK_STRESS=1, else `light`. */
export function stressCount(full: number, light: number): number {
  return STRESS ? full : light;
}

/** A container: an anonymous netns with lo up, and the servers listening inside it. */
export interface Box {
  name: string;
  ns: NetnsHandle;
  /** Path another process (a CLI run) can open while this process lives. */
  path: string;
  servers: net.Server[];
  close(): void;
}

/** Makes a container netns (no name, no bind mount: it dies with this process or close()). */
export function box(name: string): Box {
  const ns = createAnonymousNetns();
  const r = openRtnlIn(ns);
  try {
    r.linkSetUp('lo');
  } finally {
    r.close();
  }
  const b: Box = {
    name,
    ns,
    path: ns.path,
    servers: [],
    close() {
      for (const s of b.servers) s.close();
      ns.close();
    },
  };
  return b;
}

/** Listens on TCP `port` inside the container; every connection gets "<reply>". */
export function serveIn(b: Box, port: number, reply = b.name): void {
  // listen() creates its socket synchronously, so the socket lives in the container's netns.
  // A connection whose peer's FIN never comes (its veth deleted right after the reply) would
  // keep this process alive after every box is closed: idle connections are destroyed.
  const s = withNetns(b.ns, () => net.createServer((c) => c.setTimeout(1000, () => c.destroy()).end(reply)).listen(port));
  s.on('error', () => undefined);
  b.servers.push(s);
}

/** How long a probe that is expected to fail waits for a dropped SYN: long enough for any handshake on veths and a bridge, which takes well under a millisecond. */
export const DROPPED_MS = 300;

/**
 * Connects to host:port from inside `from` (or from here) and resolves to the reply, or to a
 * string starting with "unreachable" when the connection is refused, or not made within `ms`
 * (test/helpers.ts probeTcp). The probe runs in this process, so the in-process servers keep
 * answering while it waits: its socket is made inside the container's netns and stays there.
 */
export function reach(from: Box | undefined, host: string, port: number, ms = 3000): Promise<string> {
  return probeTcp(from?.ns, host, port, ms);
}

/**
 * What demo/scenario.ts fetchFrom does (TCP or UDP from `ns` or from here, the reply trimmed,
 * a rejection naming why there was none), with the probe in this process (test/helpers.ts):
 * a refusal ends it at once, and only silence waits `ms`.
 */
export async function fetchIn(ns: NetnsHandle | undefined, host: string, port: number, udp = false, ms = 3000): Promise<string> {
  const got = udp ? await probeUdp(ns, host, port, ms) : await probeTcp(ns, host, port, ms);
  const failed = /^(unreachable|no reply): (.*)$/.exec(got);
  if (failed) throw new Error(`no reply from ${host}:${port}${udp ? '/udp' : ''}: ${failed[2]}`);
  return got.trim();
}

/** `ip -j ARGS` run inside a container netns (through /proc/PID/fd/N). */
export function ipIn<T = any>(b: Box, args: string[]): T {
  const out = withNetns(b.ns, () => execFileSync('ip', ['-j', ...args], { encoding: 'utf8' }));
  return withoutFallbackTunnels(out.trim() === '' ? [] : JSON.parse(out)) as T;
}

/** Runs a command inside a container netns and returns its stdout. */
export function runIn(b: Box, cmd: string, args: string[]): string {
  return withNetns(b.ns, () => execFileSync(cmd, args, { encoding: 'utf8' }));
}

/** Waits until `cond` holds (polled), failing with `what` after `ms`. */
export async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The built CLI, run as a user runs it. */
export const CLI = fileURLToPath(new URL('../../bundle/tsnetlink.js', import.meta.url));
/** The CLI's launcher, the package's `tsnetlink` bin (what npm link puts on PATH). */
export const LAUNCHER = fileURLToPath(new URL('../../../bin/tsnetlink', import.meta.url));

/** A CLI process in the background: its exit code (null when killed) and output. */
export interface CliRun {
  proc: ChildProcess;
  exit: Promise<{ code: number | null; signal: string | null; out: string; err: string; ms: number }>;
}

/** Starts `tsnetlink ARGS...` (our own child: it may be killed by its PID). */
export function cli(...args: string[]): CliRun {
  const t0 = performance.now();
  const proc = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (err += d));
  const exit = new Promise<{ code: number | null; signal: string | null; out: string; err: string; ms: number }>((resolve) =>
    proc.on('close', (code, signal) => resolve({ code, signal, out, err, ms: performance.now() - t0 })),
  );
  return { proc, exit };
}

/** A deterministic pseudo-random generator (mulberry32), so a failing run can be replayed by seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A shaped rate, measured until it lands within 10% of its limit (at most `attempts` times). A
 * rate above the bound fails at once: load on the machine can only slow a sender, so only a
 * limit that is not applied makes the rate too high. A rate below it may be a sender or receiver
 * starved of CPU on a busy machine, so the measure is taken again, and the test fails only when
 * every attempt fell short. Returns the last rate measured, in bits/s.
 */
export async function shapedRate(label: string, limit: number, measure: () => Promise<number>, attempts = 3): Promise<number> {
  const seen: number[] = [];
  for (let i = 0; i < attempts; i++) {
    const rate = await measure();
    seen.push(rate);
    if (rate > 1.1 * limit) throw new Error(`${label}: ${Math.round(rate)} bit/s is above the limit ${limit} by more than 10%`);
    if (rate >= 0.9 * limit) return rate;
  }
  throw new Error(`${label}: every attempt fell short of the limit ${limit} by more than 10%: ${seen.map((r) => Math.round(r)).join(', ')} bit/s`);
}

/** Bulk TCP from `fromNs` (undefined: here) to host:port in `toNs` for `ms`; returns bits/s as the receiver counts them. */
export function measureTcp(toNs: string | undefined, fromNs: string | undefined, host: string, port: number, ms: number): Promise<number> {
  // The receiver times from its first byte to its last, so connection set-up does not count.
  const server = `const s=require('net').createServer(c=>{let n=0,t0=0,t1=0;c.on('data',d=>{const t=performance.now();if(!t0)t0=t;t1=t;n+=d.length});c.on('end',()=>{process.stdout.write(JSON.stringify({n,ms:t1-t0}));s.close()})}).listen(${port},'${host}',()=>process.stderr.write('ready\\n'))`;
  const client = `const c=require('net').connect(${port},'${host}',()=>{const b=Buffer.alloc(65536);const end=Date.now()+${ms};const w=()=>{while(Date.now()<end){if(!c.write(b))return c.once('drain',w)}c.end()};w()})`;
  const run = (ns: string | undefined, js: string) => (ns ? spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', js]) : spawn(process.execPath, ['-e', js]));
  return new Promise((resolve, reject) => {
    const srv = run(toNs, server);
    let out = '';
    srv.stdout.on('data', (d) => (out += d));
    srv.stderr.once('data', () => {
      const cli = run(fromNs, client);
      cli.on('error', reject);
    });
    srv.on('error', reject);
    srv.on('exit', () => {
      try {
        const r = JSON.parse(out) as { n: number; ms: number };
        resolve((r.n * 8) / (r.ms / 1000));
      } catch (e) {
        reject(new Error(`receiver said ${JSON.stringify(out)}: ${String(e)}`));
      }
    });
  });
}
