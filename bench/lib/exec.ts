/** Synchronous process runs for the baselines: the spawn cost is part of what they measure. */
import { spawnSync } from 'node:child_process';

export interface RunOptions {
  input?: string;
  env?: NodeJS.ProcessEnv;
  /** Exit codes that count as success (default [0]). */
  ok?: readonly number[];
}

/** Runs a command, returns its stdout; throws with stderr on a non-accepted exit code. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): string {
  const r = spawnSync(cmd, args, {
    input: opts.input ?? '',
    env: opts.env ?? process.env,
    encoding: 'utf8',
    timeout: 30_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error) throw r.error;
  const ok = opts.ok ?? [0];
  if (r.status === null || !ok.includes(r.status)) {
    const out = `${r.stderr ?? ''}${r.stdout ?? ''}`.trim().split('\n').slice(0, 4).join(' | ');
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}: ${out}`);
  }
  return r.stdout;
}

/** Like run() but never throws: the first line of stdout/stderr, or undefined. */
export function tryRun(cmd: string, args: readonly string[], opts: RunOptions = {}): string | undefined {
  try {
    const r = spawnSync(cmd, args, { input: opts.input ?? '', env: opts.env ?? process.env, encoding: 'utf8', timeout: 10_000 });
    if (r.error) return undefined;
    const text = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
    return text.split('\n')[0];
  } catch {
    return undefined;
  }
}
