/**
 * The Node client of the engine, for the CLI's entry and the CNI plugin's: it forwards a call
 * over the engine's unix socket and writes the answer as if the call had run here. It loads
 * nothing but node:net (on its first call) and the protocol, so a forwarded call costs Node's
 * start and a round trip, not the bridge layer and koffi.
 *
 * The rule that keeps answers right: the call runs here (the caller's fallback) only when the
 * engine did not take it: no socket, nobody listening, a refusal, or a status other than 200.
 * Once the engine said 200 the call is the engine's; if its answer is cut short, the engine died
 * during the call, and the client says so instead of running the call a second time.
 */
import type { Socket } from 'node:net';
import {
  AnswerReader, CNI_COMPARED_ENV, CNI_ENV, COMPARED_ENV, DEFAULT_STATE_DIR, encodeFields, MAX_HEAD_BYTES, OUTPUT_TYPE, parseHead, requestHead, SERVED_COMMANDS, SOCKET_NAME, stateDirOfArgv,
} from './protocol.js';

/** How a forwarded call ended. */
export type CallResult =
  /** The engine did not take the call (it ran nothing): run it here. */
  | { kind: 'declined'; why: string }
  /** The engine ran the call; its output was written; this is its exit code. */
  | { kind: 'answered'; code: number }
  /** The engine took the call and its answer never came whole: part of the call may have been done. */
  | { kind: 'broken'; why: string; enginePid: string | undefined };

/** Where the answer's output goes (process.stdout and process.stderr by default). */
export interface Sinks {
  write(fd: 1 | 2, data: Buffer): void;
}

const processSinks: Sinks = { write: (fd, data) => void (fd === 1 ? process.stdout : process.stderr).write(data) };

/**
 * How long a client waits for the engine to take a call (the 200 or a refusal): long, since a
 * socket-activated engine is started by the first connection. Past it the call is an error,
 * never run here, since the engine might still take it.
 */
const ACCEPT_DEADLINE_MS = 120_000;

/**
 * node:net, loaded on the first call: the plugin's entry imports this module, and its VERSION
 * answer (on almost every runtime command) loads nothing it does not need.
 */
async function connect(path: string): Promise<Socket> {
  const net = await import('node:net');
  return net.connect(path);
}

/** A state directory's file: `dir/name`, with no node:path to load for it. */
function inDir(dir: string, name: string): string {
  return `${dir.replace(/\/+$/, '')}/${name}`;
}

/** Sends one request to the engine at `socketPath` and streams its answer into `sinks`. */
export async function call(socketPath: string, route: string, body: Buffer, sinks: Sinks = processSinks): Promise<CallResult> {
  const s = await connect(socketPath);
  return new Promise((resolve) => {
    let head = Buffer.alloc(0);
    let reader: AnswerReader | undefined;
    let enginePid: string | undefined;
    let settled = false;
    const done = (r: CallResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done({ kind: 'broken', why: `the engine did not answer within ${ACCEPT_DEADLINE_MS / 1000} s`, enginePid }), ACCEPT_DEADLINE_MS);
    s.on('connect', () => {
      s.write(requestHead(route, body.length));
      s.write(body);
    });
    s.on('data', (chunk: Buffer) => {
      if (reader) {
        reader.push(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > MAX_HEAD_BYTES) done({ kind: 'declined', why: 'an answer head too large' });
        return;
      }
      let status: number | undefined;
      let type: string | undefined;
      try {
        const h = parseHead(head.subarray(0, end).toString('latin1'));
        status = h.status;
        type = h.headers.get('content-type');
        enginePid = h.headers.get('x-tsnetlink-engine');
      } catch {
        // Not our engine's answer: it took nothing.
      }
      if (status !== 200 || type !== OUTPUT_TYPE) {
        done({ kind: 'declined', why: `the engine answered ${status ?? 'something else'}: ${head.subarray(end + 4).toString('utf8').trim().slice(0, 200)}` });
        return;
      }
      // Taken: from here on the call is the engine's, whatever happens to the connection.
      clearTimeout(timer);
      reader = new AnswerReader((fd, data) => sinks.write(fd, data));
      reader.push(head.subarray(end + 4));
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (reader) done({ kind: 'broken', why: `the connection failed (${e.code ?? e.message})`, enginePid });
      else done({ kind: 'declined', why: `no engine (${e.code ?? e.message})` });
    });
    s.on('close', () => {
      if (!reader) done({ kind: 'declined', why: 'the engine closed the connection without taking the call' });
      else if (reader.code === undefined) done({ kind: 'broken', why: 'the answer ended before its exit code', enginePid });
      else done({ kind: 'answered', code: reader.code });
    });
  });
}

/** The fields of the environment variables in `names`, unset as empty (the code reads them so). */
function envFields(names: readonly string[], env: NodeJS.ProcessEnv): { name: string; value: string }[] {
  return names.map((n) => ({ name: n, value: env[n] ?? '' }));
}

/** Whether forwarding is switched off ($TSNETLINK_ENGINE=off): every call runs in its process. */
export function forwardingOff(env: NodeJS.ProcessEnv = process.env): boolean {
  return env['TSNETLINK_ENGINE'] === 'off';
}

/**
 * Runs a CLI command through the engine when one serves its state directory. Resolves to the
 * exit code once the engine ran it (its output written here), or undefined when the caller must
 * run it itself (no engine, a command that runs in the caller, a relative --state-dir, a refusal).
 */
export async function forwardCli(argv: readonly string[], env: NodeJS.ProcessEnv = process.env, sinks: Sinks = processSinks): Promise<number | undefined> {
  if (forwardingOff(env) || !SERVED_COMMANDS.includes(argv[0] ?? '')) return undefined;
  const dir = stateDirOfArgv(argv);
  // A relative directory names one under the caller's cwd, which the engine does not share.
  if (!dir.startsWith('/')) return undefined;
  const body = encodeFields([...argv.map((a) => ({ name: 'arg', value: a })), { name: 'statedir', value: dir }, ...envFields(COMPARED_ENV, env)]);
  const r = await call(inDir(dir, SOCKET_NAME), '/v1/cli', body, sinks);
  if (r.kind === 'declined') return undefined;
  if (r.kind === 'answered') return r.code;
  sinks.write(2, Buffer.from(`tsnetlink: ${brokenText(r)}\n`));
  return 1;
}

/**
 * Runs a CNI call through the engine when one serves the plugin's state directory
 * ($TSNETLINK_STATE_DIR or the default). Resolves to the exit status once the engine ran it, or
 * undefined when the plugin must run it itself. A call the engine took and never finished gets
 * the spec's error 11 (try again later) in the configuration's version `version`.
 */
export async function forwardCni(env: NodeJS.ProcessEnv, stdin: string, version: string, sinks: Sinks = processSinks): Promise<number | undefined> {
  if (forwardingOff(env)) return undefined;
  const dir = env['TSNETLINK_STATE_DIR'] || DEFAULT_STATE_DIR;
  if (!dir.startsWith('/')) return undefined;
  const body = encodeFields([...envFields(CNI_ENV, env), { name: 'statedir', value: dir }, ...envFields(CNI_COMPARED_ENV, env), { name: 'stdin', value: stdin }]);
  const r = await call(inDir(dir, SOCKET_NAME), '/v1/cni', body, sinks);
  if (r.kind === 'declined') return undefined;
  if (r.kind === 'answered') return r.code;
  const err = { cniVersion: version, code: 11, msg: `tsnetlink-cni: ${brokenText(r)}`, details: 'try the call again: the plugin or a restarted engine settles what the interrupted one left' };
  sinks.write(1, Buffer.from(`${JSON.stringify(err)}\n`));
  return 1;
}

function brokenText(r: { why: string; enginePid: string | undefined }): string {
  return `the engine${r.enginePid ? ` (pid ${r.enginePid})` : ''} took the call and its answer never came whole (${r.why}): it may have done part of it; \`tsnetlink network prune\` settles what an interrupted call left`;
}
