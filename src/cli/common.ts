/** What every CLI command shares: common flags, the usage error, output, the privilege check. */
import { readFileSync } from 'node:fs';
import { TsnetlinkError, ValidationError } from '../errors.js';
import { has, parseArgs, value, type FlagSpec, type Parsed, type ParseOptions } from './args.js';
import { USAGE } from './usage.js';

/** Flags every command takes. */
export const COMMON: FlagSpec[] = [
  { names: ['state-dir'], value: true },
  { names: ['firewall'], value: true },
  { names: ['help', 'h'] },
  { names: ['json'] },
];

/** Bad usage: exit 2, before anything is touched. */
export class Usage extends ValidationError {
  override name = 'Usage';
}

/** The Networks options the common flags ask for (--state-dir, --firewall), checked. */
export function managerOptions(p: Parsed): { stateDir?: string; firewall?: 'iptables' | 'nftables' } {
  const stateDir = value(p, 'state-dir');
  const fw = value(p, 'firewall');
  if (fw !== undefined && fw !== 'iptables' && fw !== 'nftables') throw new Usage('--firewall', `must be iptables or nftables, got ${JSON.stringify(fw)}`);
  return { ...(stateDir !== undefined ? { stateDir } : {}), ...(fw !== undefined ? { firewall: fw } : {}) };
}

/** Writes a line to stdout. */
export function out(s: string): void {
  process.stdout.write(`${s}\n`);
}

/**
 * Parses a command's arguments; unknown options become a Usage error that points at the
 * command's help. Returns undefined after printing the help when it was asked for.
 */
export function parseCommand(topic: string, argv: readonly string[], specs: readonly FlagSpec[], opts: ParseOptions = {}): Parsed | undefined {
  let p: Parsed;
  try {
    p = parseArgs(argv, specs, opts);
  } catch (e) {
    if (e instanceof ValidationError) throw new Usage('arguments', `${e.message.replace(/^arguments: /, '')} (see tsnetlink ${topic} --help)`);
    throw e;
  }
  if (has(p, 'help')) {
    out(USAGE[topic] ?? '');
    return undefined;
  }
  return p;
}

/** True when this process may change networking: root, or CAP_NET_ADMIN and CAP_SYS_ADMIN. */
export function privileged(): boolean {
  if (process.geteuid?.() === 0) return true;
  try {
    const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0';
    const caps = BigInt(`0x${hex}`);
    return (caps & (1n << 12n)) !== 0n && (caps & (1n << 21n)) !== 0n;
  } catch {
    return false;
  }
}

/** Refuses to go on without the privileges every networking command needs. */
export function requirePrivileges(): void {
  if (!privileged()) throw new NotPrivileged();
}

/** The process lacks CAP_NET_ADMIN / CAP_SYS_ADMIN: exit 1 with one clear line. */
export class NotPrivileged extends TsnetlinkError {
  override name = 'NotPrivileged';
  constructor() {
    super('EPERM', 'needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN): run it as root or with sudo');
  }
}
