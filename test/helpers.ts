/** Shared test helpers: independent oracles (iproute2, /proc) and leak checks. */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** Runs `ip -j ARGS` (in netns NAME when given) and parses its JSON: iproute2 as an independent oracle. */
export function ipJson<T = any>(args: string[], netns?: string): T {
  const full = [...(netns ? ['-n', netns] : []), '-j', ...args];
  const out = execFileSync('ip', full, { encoding: 'utf8' });
  return withoutFallbackTunnels(out.trim() === '' ? [] : JSON.parse(out)) as T;
}

/**
 * The devices a kernel with tunnel drivers built in (or loaded) puts in every new netns by itself
 * (ipip's tunl0, ip_gre's gre0/gretap0/erspan0, sit0, ip6tnl0, ip6gre0, the vti pair). They are
 * the kernel's, cannot be deleted, and exist on some kernels only: tests look past them.
 */
export const FALLBACK_TUNNELS: ReadonlySet<string> = new Set(['tunl0', 'gre0', 'gretap0', 'erspan0', 'sit0', 'ip6tnl0', 'ip6gre0', 'ip_vti0', 'ip6_vti0']);

/** A link listing (`ip -j link show`, a dump) without the kernel's own fallback tunnel devices; anything else as it is. */
export function withoutFallbackTunnels<T>(x: T): T {
  if (!Array.isArray(x)) return x;
  return x.filter((l) => !(l && typeof l === 'object' && FALLBACK_TUNNELS.has((l as { ifname?: string; name?: string }).ifname ?? (l as { name?: string }).name ?? ''))) as T;
}

/** Runs `ip ARGS` and returns stdout, throwing on failure. */
export function ip(args: string[], netns?: string): string {
  return execFileSync('ip', [...(netns ? ['-n', netns] : []), ...args], { encoding: 'utf8' });
}

/** Runs a shell command, returning status and output (never throws). */
export function sh(cmd: string): { status: number; out: string } {
  const r = spawnSync('bash', ['-c', cmd], { encoding: 'utf8' });
  return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

/** Open file descriptors of this process, for leak checks. */
export function openFds(): string[] {
  return readdirSync('/proc/self/fd')
    .map((fd) => {
      try {
        return `${fd}:${readlinkSync(`/proc/self/fd/${fd}`)}`;
      } catch {
        return undefined;
      }
    })
    .filter((x): x is string => x !== undefined && !x.includes('/proc/') );
}

/** Inode of the JS thread's current netns, to prove a switch was undone. */
export function threadNetnsIno(): number {
  return statSync('/proc/thread-self/ns/net').ino;
}

/** Captures the process state that a test must leave as it found it. */
export function leakGuard(): { check(): void } {
  const fds = new Set(openFds().map((x) => x.split(':')[0]));
  const ino = threadNetnsIno();
  return {
    check() {
      const now = threadNetnsIno();
      if (now !== ino) throw new Error(`JS thread left in netns ${now}, expected ${ino}`);
      const leaked = openFds().filter((x) => !fds.has(x.split(':')[0]) && /socket:|net:|nsfs|netns/.test(x));
      if (leaked.length) throw new Error(`leaked file descriptors: ${leaked.join(', ')}`);
    },
  };
}

/** Every file under a state directory, lock files excepted, relative to it and sorted ([] when it does not exist). */
export function stateFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    if (!existsSync(d)) return;
    for (const e of readdirSync(d)) {
      const p = join(d, e);
      if (statSync(p).isDirectory()) walk(p);
      else if (e !== 'lock' && !e.endsWith('.lock')) out.push(p.slice(root.length + 1));
    }
  };
  walk(root);
  return out.sort();
}

/** Asserts `fn` throws and returns the error for property checks. */
export function catchError(fn: () => unknown): any {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected an error, none was thrown');
}

/** Asserts an async `fn` rejects and returns the error. */
export async function catchAsync(fn: () => Promise<unknown>): Promise<any> {
  try {
    await fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection, none happened');
}

import type { ChildProcess } from 'node:child_process';
import { Socket, connect, isIP } from 'node:net';

/** Connects over TCP from this process and returns what the server sent. */
export function tcpGet(host: string, port: number, ms = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port });
    let data = '';
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`timeout connecting to ${host}:${port}`));
    }, ms);
    s.on('data', (d) => (data += d.toString()));
    s.on('end', () => {
      clearTimeout(t);
      resolve(data);
    });
    s.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

/** Spawns a node process running `script`: a process of its own, where a test needs another pid than this one (a host listener to be named). */
export function spawnNode(script: string): ChildProcess {
  return spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Waits until a spawned process prints 'ready' (or fails after `ms`). */
export function waitReady(p: ChildProcess, ms = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('process did not get ready')), ms);
    p.stdout?.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) {
        clearTimeout(t);
        resolve();
      }
    });
    p.on('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`process exited with ${code}`));
    });
  });
}

/** Kills a child and waits until it has exited and its stdio pipes are closed (no fd leaks). */
export function stop(p: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) {
      if (p.stdout?.destroyed !== false && p.stderr?.destroyed !== false) return resolve();
    }
    p.once('close', () => resolve());
    p.kill();
  });
}

/**
 * Exits unless this process runs in a fresh sandbox netns made by scripts/sandbox.mjs (root,
 * marked, only lo): end-to-end files change links and iptables and must never touch a real host.
 */
export function requireSandbox(file: string): void {
  let problem: string | undefined;
  if (process.getuid?.() !== 0) problem = 'needs root';
  else if (process.env['TSNETLINK_IN_SANDBOX'] !== '1') problem = 'not started by scripts/sandbox.mjs';
  else {
    const ifs = readFileSync('/proc/self/net/dev', 'utf8').split('\n').slice(2).map((l) => l.split(':')[0]?.trim()).filter((n) => n);
    if (!ifs.every((n) => n === 'lo' || FALLBACK_TUNNELS.has(n ?? ''))) problem = `this netns already has links (${ifs.join(', ')}): not a fresh sandbox`;
  }
  if (problem) {
    console.error(`${file}.e2e: refusing to run: ${problem} (use node scripts/test.mjs --e2e ${file})`);
    process.exit(1);
  }
}

import type { EndpointRecord } from '../src/bridge/records.js';
import { macForIp } from '../src/bridge/records.js';
import { cidrBits, bigToIp, prefixMask } from '../src/ip/cidr.js';

/** A complete, valid endpoint record for store-level tests (no kernel object behind it). */
export function fakeEndpoint(network: string, id: string, ip: string, prefix = 24, extra: Partial<EndpointRecord> = {}): EndpointRecord {
  const c = cidrBits(`${ip}/${prefix}`);
  const gateway = bigToIp((c.address & prefixMask(prefix, c.family)) + 1n, c.family);
  const cidr = `${ip}/${prefix}`;
  return {
    id, network, ip, cidr, mac: macForIp(ip), gateway, addresses: [{ family: c.family, ip, cidr, gateway }], hostIfname: 'vethfake0', ifname: 'eth0',
    netns: '/nonexistent', netnsKey: '1-1', mappings: [], defaultRoute: true, state: 'active', createdAt: new Date(0).toISOString(), ...extra,
  };
}

/**
 * A seeded pseudo-random generator (xorshift32) returning floats in [0, 1): fuzz inputs are made
 * from it, so a failing seed replays the same inputs.
 */
export function seededRandom(seed: number): () => number {
  let x = (seed >>> 0) || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4294967296;
  };
}

import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import * as libc from '../src/sys/libc.js';
import { withNetns, type NetnsHandle } from '../src/ns/netns.js';

const SOCK_STREAM = 1;
const SOCK_DGRAM = 2;
const SOCK_NONBLOCK = 0o4000;

/**
 * A socket file descriptor made inside `ns` for an address of `host`'s family. Node creates a
 * client socket's descriptor only when it connects, on a later tick and so outside any namespace
 * switch; a descriptor made here, inside the switch, stays in `ns` for its whole life.
 */
function fdIn(ns: NetnsHandle, host: string, type: number): number {
  const family = isIP(host);
  if (family === 0) throw new Error(`not an IP address: ${host}`);
  return withNetns(ns, () => libc.socket(family === 6 ? 10 : 2, type | SOCK_NONBLOCK | libc.SOCK_CLOEXEC, 0));
}

/** Starts a TCP connection to host:port from inside netns `ns` (from this netns without one), in this very process. */
export function connectFrom(ns: NetnsHandle | undefined, host: string, port: number): Socket {
  const s = ns ? new Socket({ fd: fdIn(ns, host, SOCK_STREAM) }) : new Socket();
  return s.connect(port, host);
}

/** How long a probe waits for the reply once it is connected (the servers are this process's own, or one process each). */
const REPLY_MS = 5000;

/**
 * Connects to host:port from inside `ns` (or from here) and resolves to what the server sent, or
 * to a string starting with "unreachable" when the connection is refused, unreachable, reset or
 * not made within `connectMs`. A refusal (RST, ICMP unreachable) ends the probe at once; only a
 * dropped SYN waits `connectMs`. Once connected the probe is reachable whatever happens next: it
 * waits for the reply, and a probe that connected but got no reply says so, never "unreachable".
 */
export function probeTcp(ns: NetnsHandle | undefined, host: string, port: number, connectMs: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connectFrom(ns, host, port);
    let data = '';
    let connected = false;
    let timer: NodeJS.Timeout | undefined;
    const done = (what: string): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(what);
    };
    // The decision waits for one more turn of the event loop after the deadline, so a handshake
    // the kernel completed while this process was not scheduled is seen before "timeout" is said.
    timer = setTimeout(() => setImmediate(() => connected || done('unreachable: timeout')), connectMs);
    s.on('connect', () => {
      connected = true;
      clearTimeout(timer);
      timer = setTimeout(() => done(`connected, no reply within ${REPLY_MS} ms`), REPLY_MS);
    });
    s.on('data', (d) => (data += d.toString()));
    s.on('end', () => done(data));
    s.on('error', (e: NodeJS.ErrnoException) => done(`unreachable: ${e.code}`));
  });
}

/**
 * Sends one UDP datagram from `ns` (from the wildcard address, port `sport` or any) to host:port
 * and resolves to the first reply, or to a string starting with "no reply": at once when the
 * peer refuses (its ICMP port unreachable reaches the socket, which is connected for that), after
 * `ms` when the datagram or its answer is dropped.
 */
export function probeUdp(ns: NetnsHandle | undefined, host: string, port: number, ms: number, sport = 0, payload = 'x'): Promise<string> {
  return new Promise((resolve) => {
    const v6 = isIP(host) === 6;
    const s: UdpSocket = createSocket(v6 ? 'udp6' : 'udp4');
    let timer: NodeJS.Timeout | undefined;
    let ended = false;
    const done = (what: string): void => {
      if (ended) return;
      ended = true;
      clearTimeout(timer);
      s.close();
      resolve(what);
    };
    s.on('message', (m) => done(m.toString()));
    s.on('error', (e: NodeJS.ErrnoException) => done(`no reply: ${e.code}`));
    let where: { fd: number } | { port: number; address: string };
    if (ns) {
      const fd = fdIn(ns, host, SOCK_DGRAM);
      // Bound here, the flow has its fixed source port in the namespace the socket belongs to.
      if (sport) libc.bind(fd, sockaddr(v6, sport));
      where = { fd };
    } else where = { port: sport, address: v6 ? '::' : '0.0.0.0' };
    s.bind(where, () =>
      s.connect(port, host, () =>
        s.send(payload, () => {
          timer = setTimeout(() => done('no reply: timeout'), ms);
        }),
      ),
    );
  });
}

/** Receives UDP on the wildcard address, port `port`, inside `ns` (IPv4 only, or both families with `v6`), in this very process; close() it when done. */
export function listenUdpIn(ns: NetnsHandle, port: number, onMessage: (msg: Buffer, from: { address: string; port: number }, s: UdpSocket) => void, v6 = false): UdpSocket {
  const fd = fdIn(ns, v6 ? '::' : '0.0.0.0', SOCK_DGRAM);
  // Bound before Node wraps it: datagrams that come first wait in the socket's queue.
  libc.bind(fd, sockaddr(v6, port));
  const s = createSocket(v6 ? 'udp6' : 'udp4');
  s.on('message', (m, r) => onMessage(m, r, s));
  s.on('error', () => undefined);
  return s.bind({ fd });
}

/** Answers every UDP datagram to [::]:`port` (both families) inside `ns` with `reply`, from this very process; close() it when done. */
export function serveUdpIn(ns: NetnsHandle, port: number, reply: string): UdpSocket {
  return listenUdpIn(ns, port, (_m, r, s) => s.send(reply, r.port, r.address), true);
}

/** A wildcard sockaddr_in or sockaddr_in6 with `port`, for bind(2). */
function sockaddr(v6: boolean, port: number): Buffer {
  const b = Buffer.alloc(v6 ? 28 : 16);
  b.writeUInt16LE(v6 ? 10 : 2, 0);
  b.writeUInt16BE(port, 2);
  return b;
}

/** The keys the WireGuard fixtures were built with (test/fixtures/tools/wg-built.ts), as their header lists them. */
export function wgFixtureKeys(): { priv: string; pub: string; peer1: string; peer2: string; psk: string } {
  const text = readFileSync(new URL('../../test/fixtures/wg-set.built.req.txt', import.meta.url), 'utf8');
  const pick = (re: RegExp): string => {
    const m = re.exec(text)?.[1];
    if (m === undefined) throw new Error(`wg-set.built.req.txt: no ${re.source}`);
    return m;
  };
  return { priv: pick(/device private key (\S+),/), pub: pick(/public (\S+)\n/), peer1: pick(/peer 1 public key (\S+);/), peer2: pick(/peer 2 (\S+);/), psk: pick(/preshared key (\S+)\n/) };
}

/**
 * A path to this Node binary that a user without privileges (uid 65534) can run: this one when
 * every directory above it lets others through, otherwise the same file bind-mounted at
 * /run/tsnetlink-test-node/node (inside the sandbox's own mount namespace, gone with it). A Node
 * taken into root's home (/root is 0700), as CI does for other Node versions, is not reachable by
 * another user, while one installed in /usr/bin is.
 */
export function nodeForOtherUsers(): string {
  if (spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', 'sh', '-c', 'test -x "$0"', process.execPath]).status === 0) return process.execPath;
  const dir = '/run/tsnetlink-test-node';
  const path = join(dir, 'node');
  if (!existsSync(path)) {
    if (process.env['TSNETLINK_IN_SANDBOX'] !== '1') throw new Error('nodeForOtherUsers: a bind mount is made only inside the sandbox');
    execFileSync('mkdir', ['-p', '-m', '0755', dir]);
    execFileSync('install', ['-m', '0755', '/dev/null', path]);
    execFileSync('mount', ['--bind', process.execPath, path]);
  }
  return path;
}
