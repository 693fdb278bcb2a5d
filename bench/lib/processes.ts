/**
 * Process-level rows: what a user of the CLI pays on every command, Node's start included. Each
 * row is one process started from the bench and timed from spawn to exit: bare `node -e 0`, Node
 * loading koffi (the FFI addon every networking command needs), the CLI's `--help` (Node plus the
 * CLI's entry bundle) and the CLI's connect and disconnect (the bundle, dist/bundle/tsnetlink.js,
 * on the bench's own network and state dir). Compared with one another in the same run, the rows
 * split the CLI's cost into Node's start, koffi, the bundles and the library's own work.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { run } from './exec.js';
import type { Env, Slot } from './methods.js';

/** The CLI as the package ships it (dist/bench/lib/ -> dist/bundle/). */
export const CLI = fileURLToPath(new URL('../../bundle/tsnetlink.js', import.meta.url));

/** Why the CLI rows must be skipped (no bundle), or undefined. */
export function cliMissing(): string | undefined {
  return existsSync(CLI) ? undefined : `${CLI} not found: npm run build (it bundles the CLI)`;
}

/** The file URL of the koffi module that the package imports, for `node -e "await import(...)"`. */
export function koffiUrl(): string {
  return import.meta.resolve('koffi');
}

/** Runs a Node process with `args` and returns its stdout. */
export function node(args: readonly string[]): string {
  return run(process.execPath, args);
}

/** `tsnetlink connect -net NAME [-p HOST:80] /run/netns/NS` as a process; keeps the endpoint id it prints. */
export function cliConnect(env: Env, s: Slot, ports: boolean): void {
  const out = node([CLI, 'connect', '--state-dir', env.stateDir, '-net', env.network, ...(ports ? ['-p', `${s.hostPort}:80`] : []), `/run/netns/${s.ns}`]);
  s.id = (JSON.parse(out) as { id: string }).id;
}

/** `tsnetlink disconnect -net NAME /run/netns/NS` as a process (the container's netns is still there). */
export function cliDisconnect(env: Env, s: Slot): void {
  node([CLI, 'disconnect', '--state-dir', env.stateDir, '-net', env.network, `/run/netns/${s.ns}`]);
  delete s.id;
}
