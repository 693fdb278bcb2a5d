/**
 * Running a call in the engine exactly as its process would run it: a CLI command through the
 * CLI's own dispatcher (runInProcess), a CNI call through the plugin's (runCommand), each with
 * its output captured, on managers the engine keeps open between calls. And the rules that send
 * a call back to its caller instead: anything the code would read from the caller's
 * environment that differs from the engine's, and a delegated IPAM plugin, which must run with
 * the caller's environment.
 */
import { realpathSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { Networks, type NetworksOptions } from '../bridge/networks.js';
import { lendNetworks as lendCliNetworks } from '../cli/manager.js';
import { runInProcess } from '../cli/main.js';
import { deferNetworkRemovals, lendNetworks as lendCniNetworks } from '../cni/attach.js';
import { runCommand } from '../cni/dispatch.js';
import { CURRENT_VERSION } from '../cni/version.js';
import { captured, currentSink, logLine } from './capture.js';
import { EngineError } from './errors.js';
import { CNI_COMPARED_ENV, CNI_ENV, COMPARED_ENV, DEFAULT_STATE_DIR, MAX_ARGS, SERVED_COMMANDS, type Field, type Output } from './protocol.js';

/** A manager the engine keeps: the commands' close() leaves it open; release() closes it. */
class KeptNetworks extends Networks {
  override close(): void {
    // Kept for the next call: closed by release() when the engine stops.
  }

  /** Closes its sockets for good. */
  release(): void {
    super.close();
  }
}

/** A call to run, read from a request's fields. */
export type Call = { kind: 'cli'; argv: string[] } | { kind: 'cni'; env: Record<string, string>; stdin: string };

/** What a call printed and its exit code. */
export interface Outcome {
  output: Output;
  code: number;
}

/** Thrown for a request whose fields do not make a call (answered 400, nothing run). */
export class BadRequest extends Error {}

/**
 * Reads a request's fields into a call, checking every one: known names only, each once but
 * `arg`, an absolute state directory; throws BadRequest with the reason.
 */
export function readCall(route: 'cli' | 'cni', fields: readonly Field[]): Call & { stateDir: string; compared: Record<string, string> } {
  const single = new Map<string, string>();
  const argv: string[] = [];
  const allowed = new Set<string>(route === 'cli' ? ['arg', 'statedir', ...COMPARED_ENV] : ['statedir', 'stdin', ...CNI_ENV, ...CNI_COMPARED_ENV]);
  for (const f of fields) {
    if (!allowed.has(f.name)) throw new BadRequest(`unknown field ${f.name} for /v1/${route}`);
    const text = f.value.toString('utf8');
    if (f.name === 'arg') {
      if (argv.length >= MAX_ARGS) throw new BadRequest(`more than ${MAX_ARGS} arguments`);
      argv.push(text);
      continue;
    }
    if (single.has(f.name)) throw new BadRequest(`field ${f.name} given twice`);
    if (f.name !== 'stdin' && (text.includes('\0') || !Buffer.from(text, 'utf8').equals(f.value))) throw new BadRequest(`field ${f.name} is not text`);
    single.set(f.name, text);
  }
  const stateDir = single.get('statedir');
  if (stateDir === undefined || !isAbsolute(stateDir)) throw new BadRequest('the statedir field must name an absolute directory');
  const compared = Object.fromEntries((route === 'cli' ? COMPARED_ENV : CNI_COMPARED_ENV).map((n) => [n, single.get(n) ?? '']));
  if (route === 'cli') {
    if (argv.length === 0) throw new BadRequest('no arguments');
    return { kind: 'cli', argv, stateDir, compared };
  }
  const env: Record<string, string> = {};
  for (const n of CNI_ENV) {
    const v = single.get(n);
    if (v !== undefined && v !== '') env[n] = v;
  }
  return { kind: 'cni', env, stdin: single.get('stdin') ?? '', stateDir, compared };
}

/** Why a CNI configuration names a delegated IPAM plugin (read as Go reads it: keys case-insensitively), or undefined. */
function delegatedIpam(stdin: string): string | undefined {
  let conf: unknown;
  try {
    conf = JSON.parse(stdin);
  } catch {
    return undefined; // the plugin answers a decoding failure, and no IPAM plugin runs
  }
  if (typeof conf !== 'object' || conf === null) return undefined;
  for (const [k, v] of Object.entries(conf)) {
    if (k.toLowerCase() !== 'ipam' || typeof v !== 'object' || v === null) continue;
    for (const [kk, t] of Object.entries(v)) if (kk.toLowerCase() === 'type' && t !== 'tsnetlink') return `the configuration delegates IPAM to ${JSON.stringify(t)}, which must run with the caller's environment`;
  }
  return undefined;
}

/** Runs calls in this process; one per engine. */
export class Calls {
  readonly stateDir: string;
  private readonly realStateDir: string;
  private readonly kept = new Map<string, KeptNetworks>();
  /** What the constructor replaced in the process, put back by close(). */
  private readonly saved: { stateDirEnv: string | undefined; warningListeners: ((w: Error) => void)[] };
  private readonly onWarning = (w: Error): void => this.warning(w);

  constructor(stateDir: string) {
    this.stateDir = resolve(stateDir);
    this.realStateDir = realpathSync(this.stateDir);
    this.saved = { stateDirEnv: process.env['TSNETLINK_STATE_DIR'], warningListeners: process.listeners('warning') };
    // The CNI code reads the state directory from the environment when it makes its own manager.
    process.env['TSNETLINK_STATE_DIR'] = this.stateDir;
    lendCliNetworks((opts) => this.lend(opts));
    lendCniNetworks(() => this.lend({ stateDir: this.stateDir }));
    deferNetworkRemovals((task) => this.defer(task));
    process.removeAllListeners('warning');
    process.on('warning', this.onWarning);
  }

  /** The kept manager for a command's options (one per firewall choice), on the engine's state directory. */
  lend(opts: NetworksOptions): Networks {
    const dir = resolve(opts.stateDir ?? DEFAULT_STATE_DIR);
    if (dir !== this.stateDir) throw new EngineError('ESTATEDIR', `the engine serves ${this.stateDir}, not ${dir}: run the command with TSNETLINK_ENGINE=off`);
    const key = typeof opts.firewall === 'string' ? opts.firewall : 'default';
    let n = this.kept.get(key);
    if (!n) {
      n = new KeptNetworks({ stateDir: this.stateDir, ...(typeof opts.firewall === 'string' ? { firewall: opts.firewall } : {}) });
      this.kept.set(key, n);
    }
    return n;
  }

  /**
   * Why the caller must run this call itself, or undefined when the engine may: another state
   * directory, a differing environment, a command that runs in the caller, a delegated IPAM.
   */
  declined(call: ReturnType<typeof readCall>): string | undefined {
    let real: string;
    try {
      real = realpathSync(call.stateDir);
    } catch {
      return `the caller's state directory ${call.stateDir} cannot be resolved here`;
    }
    if (real !== this.realStateDir) return `the caller's state directory ${call.stateDir} is not the engine's (${this.stateDir})`;
    for (const [k, v] of Object.entries(call.compared)) if (v !== (process.env[k] ?? '')) return `the caller's $${k} differs from the engine's`;
    if (call.kind === 'cli' && !SERVED_COMMANDS.includes(call.argv[0] ?? '')) return `the command ${JSON.stringify(call.argv[0])} runs in the caller`;
    if (call.kind === 'cni') return delegatedIpam(call.stdin);
    return undefined;
  }

  /** Runs a call as its process would, output captured. */
  async run(call: Call): Promise<Outcome> {
    if (call.kind === 'cli') {
      const { value, output } = await captured('cli', () => runInProcess(call.argv));
      return { output, code: value };
    }
    const print = (o: unknown): void => void process.stdout.write(`${JSON.stringify(o)}\n`);
    const { value, output } = await captured('cni', async () => {
      try {
        return await runCommand(call.env, () => call.stdin, print);
      } catch (e) {
        // As the plugin's main: only a bug reaches here.
        print({ cniVersion: CURRENT_VERSION, code: 100, msg: `tsnetlink-cni: ${(e as Error)?.message ?? String(e)}` });
        return 1;
      }
    });
    return { output, code: value };
  }

  /** A warning in the format its front end prints it: the CLI's one line, or Node's default for the plugin. */
  private warning(w: Error): void {
    const sink = currentSink();
    if (sink?.kind === 'cli') process.stderr.write(`tsnetlink: warning: ${w.message.replace(/^tsnetlink: /, '')}\n`);
    else if (sink?.kind === 'cni') {
      process.stderr.write(`(node:${process.pid}) ${w.name}: ${w.message}\n${sink.warnings++ === 0 ? '(Use `node --trace-warnings ...` to show where the warning was created)\n' : ''}`);
    } else logLine(`tsnetlink engine: warning: ${w.message}`);
  }

  /** Work a call left to run after its answer, one task at a time, in order. */
  private background: Promise<void> = Promise.resolve();
  /** How many such tasks have not finished yet (the status call reports it). */
  pendingWork = 0;

  /** Runs `task` after what is already queued; a failure is logged (what it left, prune settles). */
  private defer(task: () => Promise<void>): void {
    this.pendingWork++;
    this.background = this.background
      .then(task)
      .catch((e: unknown) => logLine(`tsnetlink engine: work after a call failed: ${(e as Error)?.message ?? String(e)}`))
      .finally(() => void this.pendingWork--);
  }

  /** Resolves once the work calls left behind has run (the engine waits for it before it stops). */
  async settle(): Promise<void> {
    let seen: Promise<void>;
    do {
      seen = this.background;
      await seen;
    } while (seen !== this.background);
  }

  /** The kept default manager (the one drift repair uses). */
  defaultNetworks(): Networks {
    return this.lend({ stateDir: this.stateDir });
  }

  /** Closes every kept manager, stops lending, and puts back what the constructor changed in the process. */
  close(): void {
    lendCliNetworks(undefined);
    lendCniNetworks(undefined);
    deferNetworkRemovals(undefined);
    process.off('warning', this.onWarning);
    for (const l of this.saved.warningListeners) process.on('warning', l);
    if (this.saved.stateDirEnv === undefined) delete process.env['TSNETLINK_STATE_DIR'];
    else process.env['TSNETLINK_STATE_DIR'] = this.saved.stateDirEnv;
    for (const n of this.kept.values()) n.release();
    this.kept.clear();
  }
}
