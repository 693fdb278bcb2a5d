/**
 * `tsnetlink engine`: the resident engine, in the foreground. It listens on
 * STATE_DIR/engine.sock (or the socket systemd hands over), serves the CLI's network, connect and
 * disconnect commands and every CNI command, and repairs drift as the kernel reports it, until
 * SIGTERM or SIGINT: then it stops taking calls, lets the running ones finish and exits 0.
 */
import { Store } from '../bridge/store.js';
import { has, value } from '../cli/args.js';
import { parseCommand, requirePrivileges } from '../cli/common.js';
import { Calls } from './calls.js';
import { installCapture, logLine } from './capture.js';
import { DriftWatcher } from './drift.js';
import { DEFAULT_STATE_DIR } from './protocol.js';
import { EngineServer } from './server.js';
import { takeListenFd } from './systemd.js';

const FLAGS = [{ names: ['state-dir'], value: true }, { names: ['help', 'h'] }, { names: ['no-tcp'] }, { names: ['no-repair'] }, { names: ['verbose', 'v'] }];

/** A running engine: its listeners, its calls and its drift watcher. */
export interface Engine {
  server: EngineServer;
  drift: DriftWatcher | undefined;
  /** Stops taking calls, waits for the running ones, stops watching and releases everything. */
  stop(): Promise<void>;
}

/** Options of startEngine(). */
export interface EngineOptions {
  stateDir?: string;
  /** The loopback port for the bash client (default true). */
  tcp?: boolean;
  /** Repair drift as the kernel reports it (default true). */
  repair?: boolean;
  /** Log every call. */
  verbose?: boolean;
  /** A listening unix socket handed over by systemd. */
  listenFd?: number;
}

/** Starts an engine in this process (what `tsnetlink engine` runs; tests start one this way too). */
export async function startEngine(opts: EngineOptions = {}): Promise<Engine> {
  const stateDir = opts.stateDir ?? DEFAULT_STATE_DIR;
  // The state directory is made (0700) or checked as every command that changes state does.
  new Store({ root: stateDir }).init();
  installCapture();
  const calls = new Calls(stateDir);
  let server: EngineServer;
  try {
    server = await EngineServer.start({ stateDir, tcp: opts.tcp !== false, verbose: opts.verbose === true, ...(opts.listenFd !== undefined ? { listenFd: opts.listenFd } : {}) }, calls);
  } catch (e) {
    calls.close();
    throw e;
  }
  const drift = opts.repair === false ? undefined : DriftWatcher.start(calls.defaultNetworks(), { log: logLine, verbose: opts.verbose === true });
  server.statusExtra = () => ({ drift: drift?.stats ?? null, pendingWork: calls.pendingWork });
  let stopping: Promise<void> | undefined;
  return {
    server,
    drift,
    stop: () =>
      (stopping ??= (async () => {
        await server.stop();
        await calls.settle();
        await drift?.close();
        calls.close();
      })()),
  };
}

/** `tsnetlink engine [--state-dir DIR] [--no-tcp] [--no-repair] [-v]`: runs until SIGTERM or SIGINT; returns the exit code. */
export async function engine(argv: string[]): Promise<number> {
  const p = parseCommand('engine', argv, FLAGS);
  if (!p) return 0;
  requirePrivileges();
  const listenFd = takeListenFd();
  const e = await startEngine({
    stateDir: value(p, 'state-dir') ?? DEFAULT_STATE_DIR, tcp: !has(p, 'no-tcp'), repair: !has(p, 'no-repair'), verbose: has(p, 'verbose'), ...(listenFd !== undefined ? { listenFd } : {}),
  });
  logLine(`tsnetlink engine: pid ${process.pid} serving ${e.server.socketPath}${listenFd !== undefined ? ' (socket from systemd)' : ''}${e.server.tcpPort ? `, bash clients on 127.0.0.1:${e.server.tcpPort}` : ''}; drift repair ${e.drift ? 'on' : 'off'}`);
  return new Promise<number>((resolve) => {
    const onSignal = (sig: NodeJS.Signals): void => {
      if (sig === 'SIGINT' || sig === 'SIGTERM') {
        // A second signal while stopping ends at once; the running calls' intents settle what they left.
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        process.once('SIGINT', () => process.exit(130));
        process.once('SIGTERM', () => process.exit(143));
      }
      logLine(`tsnetlink engine: ${sig}: stopping (running calls finish first)`);
      void e.stop().then(() => {
        logLine('tsnetlink engine: stopped');
        resolve(0);
      });
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
