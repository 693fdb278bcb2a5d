/**
 * Delegation to an IPAM plugin (host-local, dhcp, ...) the way the reference bridge plugin does
 * it: the plugin is looked up on CNI_PATH and run with the same environment (CNI_COMMAND
 * replaced when needed) and the whole configuration on stdin; its stderr goes to ours, and an
 * error it reports is passed on with its own code and message in `details`.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants as fsc } from 'node:fs';
import { join } from 'node:path';
import { CniError, CNI_CODES } from './errors.js';
import type { CniCommand } from './config.js';

/** The executable of `plugin` on CNI_PATH; code 5 when none is there. */
export function findPlugin(plugin: string, path: readonly string[]): string {
  for (const dir of path) {
    const file = join(dir, plugin);
    try {
      accessSync(file, fsc.X_OK);
      return file;
    } catch {
      // not in this directory
    }
  }
  throw new CniError(CNI_CODES.ioFailure, `failed to find IPAM plugin ${JSON.stringify(plugin)} in path ${JSON.stringify(path.join(':'))}`);
}

/** What a delegated call printed, and the error it reported (if any). */
export interface DelegateOutcome {
  stdout: string;
  error?: { code: number; msg: string; details?: string };
}

/** Runs `plugin` with `command`; returns its output, or the error object it printed. */
export function runDelegate(plugin: string, command: CniCommand, stdin: string, path: readonly string[]): DelegateOutcome {
  const file = findPlugin(plugin, path);
  const r = spawnSync(file, [], { input: stdin, env: { ...process.env, CNI_COMMAND: command }, encoding: 'utf8', stdio: ['pipe', 'pipe', 'inherit'], timeout: 60_000 });
  if (r.error) throw new CniError(CNI_CODES.ioFailure, `failed to run IPAM plugin ${plugin}: ${r.error.message}`);
  if (r.status === 0) return { stdout: r.stdout };
  try {
    const e = JSON.parse(r.stdout) as { code?: unknown; msg?: unknown; details?: unknown };
    if (typeof e.code === 'number') return { stdout: r.stdout, error: { code: e.code, msg: String(e.msg ?? ''), ...(typeof e.details === 'string' && e.details ? { details: e.details } : {}) } };
  } catch {
    // not an error object: reported below with what it printed
  }
  return { stdout: r.stdout, error: { code: CNI_CODES.ipamFailed, msg: `IPAM plugin ${plugin} exited with ${r.status ?? r.signal}`, details: r.stdout.trim().slice(0, 500) } };
}

/** Runs `plugin` with `command` and throws its error as a CniError (code 104, its own in `details`). */
export function delegate(plugin: string, command: CniCommand, stdin: string, path: readonly string[]): string {
  const out = runDelegate(plugin, command, stdin, path);
  if (out.error) {
    const e = out.error;
    throw new CniError(CNI_CODES.ipamFailed, `IPAM plugin ${plugin} ${command} failed: ${e.msg}`, `code ${e.code}${e.details ? `: ${e.details}` : ''}`);
  }
  return out.stdout;
}
