/**
 * Runs the iptables tools: one iptables-restore per change (one exec per rule is slow at scale), reads with
 * iptables-save, and flushes UDP conntrack entries. Every run has a deadline.
 */
import { basename, dirname, join } from 'node:path';
import { ValidationError } from '../../errors.js';
import { runTool } from '../../sys/run.js';
import { IptablesError, parseFailedLine } from './errors.js';
import { checkIPv4 } from '../../ip/check.js';
import { checkPort } from '../validate.js';

/** Which iptables to run. The save and iptables binaries are derived from the restore binary. */
export interface IptablesOptions {
  /**
   * "iptables-restore", "iptables-legacy-restore", "iptables-nft-restore" or a path; defaults to
   * $TSNETLINK_IPTABLES_RESTORE, then "iptables-restore". Reads use the matching *-save, so rules
   * are never written with one backend and read back with the other.
   */
  restoreBinary?: string;
  /** Seconds to wait for the xtables lock (legacy backend); default 5. */
  waitSeconds?: number;
  /** Kill the tool after this many milliseconds; default 30000. */
  timeoutMs?: number;
}

/** Options of conntrackFlushUdp. */
export interface ConntrackOptions {
  /** Default "conntrack" (from $PATH). */
  binary?: string;
  /** Only flows addressed to this host IP; default: any. */
  hostIp?: string;
  timeoutMs?: number;
}

/** Applies `text` with `iptables-restore --noflush -w N`; does nothing for empty text. */
export async function restore(text: string, opts: IptablesOptions = {}): Promise<void> {
  if (text === '') return;
  const bin = restoreBinary(opts);
  const wait = opts.waitSeconds ?? 5;
  if (!Number.isInteger(wait) || wait < 0) throw new ValidationError('waitSeconds', `must be a non-negative integer, got ${wait}`);
  const args = ['--noflush', '-w', String(wait)];
  const r = await run(bin, args, text, opts.timeoutMs);
  if (r.code !== 0) {
    // Quote the blamed input line: the stderr alone rarely says which rule it was.
    const line = parseFailedLine(r.stderr);
    const detail = line === undefined ? undefined : `input line ${line}: ${text.split('\n')[line - 1] || '<end of input>'}`;
    throw new IptablesError(commandLine(bin, args), r.code, r.stderr, detail);
  }
}

/** Returns `iptables-save [-t table]` output (the oracle that the builders parse). */
export async function save(table?: string, opts: IptablesOptions = {}): Promise<string> {
  if (table !== undefined && !/^[a-z]{1,32}$/.test(table)) throw new ValidationError('table', `bad table name ${JSON.stringify(table)}`);
  const bin = sibling(restoreBinary(opts), 'save');
  const args = table === undefined ? [] : ['-t', table];
  const r = await run(bin, args, undefined, opts.timeoutMs);
  if (r.code !== 0) throw new IptablesError(commandLine(bin, args), r.code, r.stderr);
  return r.stdout;
}

const backends = new Map<string, Promise<'nft' | 'legacy'>>();

/** Returns the backend ('nft' or 'legacy') of the configured iptables, from `iptables --version`; cached per binary. */
export function backend(opts: IptablesOptions = {}): Promise<'nft' | 'legacy'> {
  const bin = sibling(restoreBinary(opts), 'iptables');
  let p = backends.get(bin);
  if (!p) {
    p = run(bin, ['--version'], undefined, opts.timeoutMs).then((r) => {
      // "iptables v1.8.9 (nf_tables)" or "iptables v1.8.9 (legacy)"; versions before 1.8 had no suffix and no nft.
      if (r.code !== 0) throw new IptablesError(commandLine(bin, ['--version']), r.code, r.stderr);
      return /\(nf_tables\)/.test(r.stdout) ? 'nft' : 'legacy';
    });
    p.catch(() => backends.delete(bin));
    backends.set(bin, p);
  }
  return p;
}

/**
 * Deletes UDP conntrack entries towards `hostPort`, so that flows seen before a mapping existed
 * (UDP "connections" never end while packets keep coming) get the new DNAT. Resolves true when
 * the flush ran (also when there was nothing to delete) and false when no conntrack binary is
 * installed: the mapping still works for new flows, so that is not worth an exception.
 */
export async function conntrackFlushUdp(hostPort: number, opts: ConntrackOptions = {}): Promise<boolean> {
  checkPort('hostPort', hostPort);
  const bin = opts.binary ?? 'conntrack';
  const args = ['-D', '-p', 'udp', '--orig-port-dst', String(hostPort)];
  if (opts.hostIp !== undefined) args.push('--orig-dst', checkIPv4('hostIp', opts.hostIp));
  let r: RunResult;
  try {
    r = await run(bin, args, undefined, opts.timeoutMs);
  } catch (e) {
    if (e instanceof IptablesError && (e.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') return false;
    throw e;
  }
  // Exit 1 with "0 flow entries have been deleted" only means there was nothing to flush.
  if (r.code === 0 || (r.code === 1 && /\b0 flow entries have been deleted/.test(r.stderr))) return true;
  throw new IptablesError(commandLine(bin, args), r.code, r.stderr);
}

/** The iptables-save binary that matches these options. */
export function saveBinary(opts: IptablesOptions = {}): string {
  return sibling(restoreBinary(opts), 'save');
}

// ---------------------------------------------------------------------------------------------

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The iptables-restore binary these options select; throws ValidationError for anything that is not an *-restore. */
export function restoreBinary(opts: IptablesOptions): string {
  const bin = opts.restoreBinary ?? process.env['TSNETLINK_IPTABLES_RESTORE'] ?? 'iptables-restore';
  if (!/-restore$/.test(bin) || /[\0\n]/.test(bin)) {
    throw new ValidationError('restoreBinary', `must name an *-restore binary (e.g. iptables-legacy-restore), got ${JSON.stringify(bin)}`);
  }
  return bin;
}

/**
 * The IPv6 twin of an iptables restore binary: iptables-restore -> ip6tables-restore,
 * /usr/sbin/iptables-legacy-restore -> /usr/sbin/ip6tables-legacy-restore. A binary that does not
 * start with "iptables" has no known twin (ValidationError).
 */
export function ipv6RestoreBinary(restoreBin: string): string {
  const base = basename(restoreBin);
  if (!base.startsWith('iptables')) throw new ValidationError('restoreBinary', `${JSON.stringify(restoreBin)} has no ip6tables twin for IPv6 rules`);
  const six = `ip6${base.slice(2)}`;
  return restoreBin.includes('/') ? join(dirname(restoreBin), six) : six;
}

// iptables-legacy-restore -> iptables-legacy-save / iptables-legacy, keeping any directory.
function sibling(restoreBin: string, kind: 'save' | 'iptables'): string {
  const base = basename(restoreBin).replace(/-restore$/, kind === 'save' ? '-save' : '');
  return restoreBin.includes('/') ? join(dirname(restoreBin), base) : base;
}

function commandLine(bin: string, args: readonly string[]): string {
  return [bin, ...args].join(' ');
}

async function run(bin: string, args: readonly string[], input: string | undefined, timeoutMs = 30_000): Promise<RunResult> {
  let r;
  try {
    r = await runTool(bin, args, input ?? '', timeoutMs, { ...process.env, LC_ALL: 'C' });
  } catch (e) {
    const missing = (e as { code?: string }).code === 'ENOENT';
    const hint = missing ? `${bin} not found on PATH: install the ${/conntrack/.test(bin) ? 'conntrack' : 'iptables'} package` : `cannot run: ${(e as Error).message}`;
    throw new IptablesError(commandLine(bin, args), null, '', hint, { cause: e });
  }
  if (r.timedOut) throw new IptablesError(commandLine(bin, args), null, r.stderr, `timed out after ${timeoutMs} ms`);
  return { code: r.code, stdout: r.stdout, stderr: r.stderr };
}
