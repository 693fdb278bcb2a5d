/**
 * The engine's listeners: the unix socket in the state directory (made here, or handed over by
 * systemd), and a loopback TCP port for the CNI shim's bash client. Each connection carries one
 * call. A request is read whole within its limits and checked (peer, size, fields, environment)
 * before anything runs; a refused or declined one gets a status other than 200 and nothing is
 * done. An accepted one gets its 200 written to the kernel first, then runs, then its output and
 * exit code are sent and the connection closed.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, constants as fsc, fstatSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync, chmodSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { flock, getsockname, LOCK_EX, LOCK_NB } from '../sys/libc.js';
import { errCode, writeFileAtomic } from '../sys/fsio.js';
import { Calls, readCall } from './calls.js';
import { logLine } from './capture.js';
import { EngineError } from './errors.js';
import { namespacesOf, steadyThread, peerOf, refusalFor, type Namespaces } from './peer.js';
import {
  decodeFields, encodeAnswer, LOCK_NAME, MAX_BODY_BYTES, MAX_HEAD_BYTES, OUTPUT_TYPE, parseHead, SOCKET_NAME, TCP_FILE_NAME, TOKEN_HEADER, type Head,
} from './protocol.js';

/** Options of an engine's listeners. */
export interface ServerOptions {
  stateDir: string;
  /** A listening unix socket handed over by systemd (LISTEN_FDS), instead of making one. */
  listenFd?: number;
  /** Also listen on a loopback port for the bash client (default true). */
  tcp?: boolean;
  /** Log every call (default: only refusals, errors and drift). */
  verbose?: boolean;
}

/** Counters the status call reports. */
export interface ServerStats {
  served: { cli: number; cni: number };
  declined: number;
  refused: number;
  badRequests: number;
  inflight: number;
}

/** How long a client may take to send its request. */
const REQUEST_DEADLINE_MS = 10_000;
/** Calls running at once; more are declined (their callers run them). */
const MAX_INFLIGHT = 256;
/**
 * Connections open at once, requests still arriving included: any local user can connect to the
 * loopback port (and be refused only once its head is read), so connections past this are closed
 * at once, unread; a client of ours then runs its call itself.
 */
const MAX_CONNECTIONS = 1024;
/** The loopback ports the engine picks from: below 1024, so only root can listen there. */
const TCP_PORTS = [600, 1024] as const;

const STATUS_TEXT: Record<number, string> = { 200: 'OK', 400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 408: 'Request Timeout', 411: 'Length Required', 413: 'Payload Too Large', 503: 'Service Unavailable' };

interface Request {
  head: Head;
  body: Buffer;
}

/** The path a listening unix socket is bound to (getsockname), or undefined for another kind of socket. */
function boundPath(fd: number): string | undefined {
  try {
    const a = getsockname(fd, 110); // struct sockaddr_un: sa_family_t, then up to 108 bytes of path
    if (a.readUInt16LE(0) !== 1) return undefined; // AF_UNIX
    const p = a.subarray(2).toString('utf8').replace(/\0.*$/s, '');
    return p === '' ? undefined : p;
  } catch {
    return undefined;
  }
}

/** A running engine's listeners; stop() ends them. */
export class EngineServer {
  readonly stats: ServerStats = { served: { cli: 0, cni: 0 }, declined: 0, refused: 0, badRequests: 0, inflight: 0 };
  readonly startedAt = new Date().toISOString();
  private readonly unix: net.Server;
  private tcp: net.Server | undefined;
  private tcpTokens: { client: Buffer; proof: string } | undefined;
  private readonly home: Namespaces;
  private closing = false;
  private readonly idle: (() => void)[] = [];
  private readonly sockets = new Set<net.Socket>();
  /** Connections whose answer is written: they close once the client has read it. */
  private readonly answered = new WeakSet<net.Socket>();
  private socketIno: number | undefined;
  /** Extra status the engine adds (drift counters). */
  statusExtra: () => Record<string, unknown> = () => ({});

  private constructor(
    readonly opts: ServerOptions,
    readonly calls: Calls,
    private readonly lockFd: number,
  ) {
    this.home = namespacesOf('self');
    // Half-open: a client that ends its side after the request (socat does) still gets the answer.
    this.unix = net.createServer({ allowHalfOpen: true }, (s) => this.onConnection(s, 'unix'));
  }

  /**
   * Takes the state directory's engine lock (one engine per directory), then listens: on the
   * socket systemd handed over, or on a new one that appears at its path, 0600, in one rename.
   */
  static async start(opts: ServerOptions, calls: Calls): Promise<EngineServer> {
    const lockPath = join(calls.stateDir, LOCK_NAME);
    const fd = openSync(lockPath, fsc.O_RDWR | fsc.O_CREAT | fsc.O_NOFOLLOW, 0o600);
    if (!flock(fd, LOCK_EX | LOCK_NB)) {
      const pid = readFileSync(lockPath, 'utf8').trim();
      closeSync(fd);
      throw new EngineError('EENGINERUNNING', `another engine${pid ? ` (pid ${pid})` : ''} serves ${calls.stateDir}`);
    }
    writeSync(fd, `${process.pid}`.padEnd(11) + '\n', 0);
    const server = new EngineServer(opts, calls, fd);
    try {
      await server.listenUnix();
      if (opts.tcp !== false) await server.listenTcp();
    } catch (e) {
      await server.stop();
      throw e;
    }
    return server;
  }

  /** The path of the unix socket. */
  get socketPath(): string {
    return join(this.calls.stateDir, SOCKET_NAME);
  }

  /** The loopback port of the bash client, if one is open. */
  get tcpPort(): number | undefined {
    const a = this.tcp?.address();
    return typeof a === 'object' && a ? a.port : undefined;
  }

  private async listenUnix(): Promise<void> {
    if (this.opts.listenFd !== undefined) {
      await new Promise<void>((resolve, reject) => {
        this.unix.once('error', reject);
        this.unix.listen({ fd: this.opts.listenFd }, () => resolve());
      });
      // Clients look for the socket at its path in the state directory, root only.
      const bound = boundPath(this.opts.listenFd);
      if (bound !== this.socketPath) logLine(`tsnetlink engine: warning: the socket systemd handed over is ${bound ? `bound to ${bound}` : 'not a unix socket with a path'}, not ${this.socketPath}: clients will not find it (set ListenStream= to ${this.socketPath})`);
      else if ((statSync(bound).mode & 0o077) !== 0) chmodSync(bound, 0o600);
      return;
    }
    // We hold the engine lock: a socket or port file left here belongs to an engine that died.
    for (const f of [SOCKET_NAME, TCP_FILE_NAME]) {
      try {
        unlinkSync(join(this.calls.stateDir, f));
      } catch (e) {
        if (errCode(e) !== 'ENOENT') throw e;
      }
    }
    const tmp = `${this.socketPath}.${process.pid}`;
    await new Promise<void>((resolve, reject) => {
      this.unix.once('error', (e) => reject(new EngineError('ELISTEN', `cannot listen on ${tmp}: ${e.message}`, { cause: e })));
      this.unix.listen(tmp, () => resolve());
    });
    chmodSync(tmp, 0o600);
    renameSync(tmp, this.socketPath);
    this.socketIno = statSync(this.socketPath).ino;
  }

  /**
   * A loopback port for the bash client, and the file that names it with two tokens (root only):
   * the client proves itself with one, the engine with the other. The port is below the one from
   * which anybody may listen, so no other user can stand in for an engine that is gone.
   */
  private async listenTcp(): Promise<void> {
    let unprivileged = 1024;
    try {
      unprivileged = Number(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8').trim());
    } catch {
      // older kernels: 1024
    }
    const top = Math.min(TCP_PORTS[1], unprivileged);
    if (top <= TCP_PORTS[0]) {
      logLine(`tsnetlink engine: no loopback port for the bash client: any user may listen from port ${unprivileged} on here`);
      return;
    }
    for (let attempt = 0; attempt < 30; attempt++) {
      const port = TCP_PORTS[0] + Math.floor(Math.random() * (top - TCP_PORTS[0]));
      const s = net.createServer({ allowHalfOpen: true }, (c) => this.onConnection(c, 'tcp'));
      const ok = await new Promise<boolean>((resolve) => {
        s.once('error', () => resolve(false));
        s.listen({ port, host: '127.0.0.1', exclusive: true }, () => resolve(true));
      });
      if (!ok) continue;
      this.tcp = s;
      const client = randomBytes(16).toString('hex');
      const proof = randomBytes(16).toString('hex');
      this.tcpTokens = { client: Buffer.from(client), proof };
      // The fifth field is a thread whose namespaces the bash client compares with its own (see steadyThread).
      writeFileAtomic(join(this.calls.stateDir, TCP_FILE_NAME), `${port} ${client} ${proof} ${process.pid} ${steadyThread(this.home) ?? process.pid}\n`, { fsync: false });
      return;
    }
    logLine('tsnetlink engine: no free loopback port for the bash client; clients use the unix socket');
  }

  /** The status call's answer. */
  status(): Record<string, unknown> {
    return { pid: process.pid, stateDir: this.calls.stateDir, startedAt: this.startedAt, socket: this.socketPath, tcpPort: this.tcpPort ?? null, ...this.stats, ...this.statusExtra() };
  }

  private onConnection(sock: net.Socket, via: 'unix' | 'tcp'): void {
    if (this.sockets.size >= MAX_CONNECTIONS) {
      this.stats.declined++;
      sock.destroy();
      return;
    }
    this.sockets.add(sock);
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => undefined);
    // The peer's credentials are the ones it had when it connected: read them now.
    const peer = via === 'unix' ? peerOf(sock) : undefined;
    let buf = Buffer.alloc(0);
    let head: Head | undefined;
    let bodyStart = 0;
    let length = 0;
    let finished = false;
    const timer = setTimeout(() => finish(() => {
      this.stats.declined++;
      logLine(`tsnetlink engine: declined a call over ${via}: its request did not arrive within ${REQUEST_DEADLINE_MS} ms`);
      this.reject(sock, 408, 'the request did not arrive in time');
    }), REQUEST_DEADLINE_MS);
    const finish = (then: () => void): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      // Whatever else the client sends is read and dropped, so closing never resets the
      // connection before the client has read the answer.
      sock.removeListener('data', onData);
      sock.on('data', () => undefined);
      then();
    };
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      if (!head) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) {
          if (buf.length > MAX_HEAD_BYTES) finish(() => this.reject(sock, 413, `the request head is larger than ${MAX_HEAD_BYTES} bytes`));
          return;
        }
        try {
          head = parseHead(buf.subarray(0, end).toString('latin1'));
        } catch (e) {
          finish(() => this.reject(sock, 400, (e as Error).message));
          return;
        }
        bodyStart = end + 4;
        const refusal = via === 'unix' ? refusalFor(peer, this.home) : this.tokenRefusal(head);
        if (refusal) {
          if (refusal.status === 403) this.stats.refused++;
          else this.stats.declined++;
          logLine(`tsnetlink engine: ${refusal.status === 403 ? 'refused' : 'declined'} a call${peer ? ` from pid ${peer.pid} (uid ${peer.uid})` : ` over ${via}`}: ${refusal.why}`);
          finish(() => this.reject(sock, refusal.status, refusal.why));
          return;
        }
        if (head.method === 'GET' && head.path === '/v1/status') {
          finish(() => this.answerStatus(sock));
          return;
        }
        if (head.method !== 'POST') return finish(() => this.reject(sock, 405, `method ${head!.method} not allowed: POST /v1/cli or /v1/cni`));
        if (head.path !== '/v1/cli' && head.path !== '/v1/cni') return finish(() => this.reject(sock, 404, `no such call ${head!.path}: POST /v1/cli or /v1/cni`));
        if (head.headers.has('transfer-encoding')) return finish(() => this.reject(sock, 411, 'send the body with a Content-Length'));
        const cl = head.headers.get('content-length');
        if (cl === undefined || !/^\d{1,9}$/.test(cl)) return finish(() => this.reject(sock, 411, 'a Content-Length is required'));
        length = Number(cl);
        if (length > MAX_BODY_BYTES) return finish(() => this.reject(sock, 413, `the request body (${length} bytes) is larger than ${MAX_BODY_BYTES} bytes`));
      }
      if (buf.length - bodyStart < length) return;
      const req: Request = { head, body: buf.subarray(bodyStart, bodyStart + length) };
      finish(() => void this.handle(sock, req, via));
    };
    sock.on('data', onData);
  }

  private tokenRefusal(head: Head): { status: 403; why: string } | undefined {
    const got = Buffer.from(head.headers.get(TOKEN_HEADER) ?? '');
    const want = this.tcpTokens?.client;
    if (!want || got.length !== want.length || !timingSafeEqual(got, want)) return { status: 403, why: `refused: no valid ${TOKEN_HEADER} (the token is in ${TCP_FILE_NAME}, readable by root only)` };
    return undefined;
  }

  private reject(sock: net.Socket, status: number, why: string): void {
    if (status === 400 || status === 405 || status === 404 || status === 411 || status === 413) this.stats.badRequests++;
    sock.end(`HTTP/1.0 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\nContent-Type: text/plain\r\nX-Tsnetlink-Engine: ${process.pid}\r\n\r\ntsnetlink engine: ${why}\n`);
  }

  private answerStatus(sock: net.Socket): void {
    sock.end(`HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n${JSON.stringify(this.status())}\n`);
  }

  private async handle(sock: net.Socket, req: Request, via: 'unix' | 'tcp'): Promise<void> {
    const route = req.head.path === '/v1/cli' ? 'cli' : 'cni';
    let call: ReturnType<typeof readCall>;
    try {
      call = readCall(route, decodeFields(req.body));
    } catch (e) {
      return this.reject(sock, 400, `bad request: ${(e as Error).message}`);
    }
    const why = this.closing ? 'the engine is stopping' : this.stats.inflight >= MAX_INFLIGHT ? `${MAX_INFLIGHT} calls are running` : this.calls.declined(call);
    if (why !== undefined) {
      this.stats.declined++;
      if (this.opts.verbose) logLine(`tsnetlink engine: declined a ${route} call: ${why}`);
      return this.reject(sock, 503, `run it in your process: ${why}`);
    }
    this.stats.inflight++;
    const t0 = performance.now();
    try {
      // The call is taken once the 200 is in the kernel's buffer: written, and its callback run.
      // A client that left before that is not answered, and nothing runs.
      const proof = via === 'tcp' ? `X-Tsnetlink-Proof: ${this.tcpTokens!.proof}\r\n` : '';
      const taken = await new Promise<boolean>((resolve) => {
        if (sock.destroyed || !sock.writable) return resolve(false);
        sock.write(`HTTP/1.0 200 OK\r\nContent-Type: ${OUTPUT_TYPE}\r\nX-Tsnetlink-Engine: ${process.pid}\r\n${proof}\r\n`, (e) => resolve(!e));
      });
      if (!taken) {
        this.stats.declined++;
        logLine(`tsnetlink engine: a ${route} call's client left before the engine took it; nothing ran`);
        return;
      }
      const outcome = await this.calls.run(call);
      this.stats.served[route]++;
      this.answered.add(sock);
      sock.end(encodeAnswer(outcome.output, outcome.code));
      if (this.opts.verbose) logLine(`tsnetlink engine: ${route} ${call.kind === 'cli' ? call.argv.slice(0, 2).join(' ') : call.env['CNI_COMMAND']} exit ${outcome.code} in ${(performance.now() - t0).toFixed(1)} ms`);
    } catch (e) {
      // A failure outside the call's own handling (a bug): the answer stays without an exit
      // code, which the client reports as an interrupted call.
      logLine(`tsnetlink engine: ${route} call failed: ${(e as Error)?.stack ?? String(e)}`);
      sock.destroy();
    } finally {
      this.stats.inflight--;
      if (this.stats.inflight === 0) for (const f of this.idle.splice(0)) f();
    }
  }

  /**
   * Stops: no new calls (the socket and port file go first, so clients run calls themselves),
   * the running ones finish, then the lock is released.
   */
  async stop(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.opts.listenFd === undefined && this.socketIno !== undefined) {
      try {
        if (statSync(this.socketPath).ino === this.socketIno) unlinkSync(this.socketPath);
      } catch {
        // already gone
      }
    }
    if (this.tcp) {
      try {
        const f = join(this.calls.stateDir, TCP_FILE_NAME);
        // Ours when its fourth field (port, two tokens, pid, thread) is this process.
        if (readFileSync(f, 'utf8').split(' ')[3] === String(process.pid)) unlinkSync(f);
      } catch {
        // already gone
      }
    }
    const closed = (s: net.Server | undefined): Promise<void> => new Promise((resolve) => (s?.listening ? s.close(() => resolve()) : resolve()));
    const stopping = Promise.all([closed(this.unix), closed(this.tcp)]);
    if (this.stats.inflight > 0) await new Promise<void>((resolve) => this.idle.push(resolve));
    // Connections that carry no call are cut; answered ones are given a moment to be read.
    for (const s of this.sockets) if (!this.answered.has(s)) s.destroy();
    const end = Date.now() + 2000;
    while (this.sockets.size > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    for (const s of this.sockets) s.destroy();
    await stopping;
    try {
      fstatSync(this.lockFd);
      closeSync(this.lockFd);
    } catch {
      // closed
    }
  }
}
