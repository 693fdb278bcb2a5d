#!/usr/bin/env node
/**
 * tsnetlink-cni: the CNI plugin executable (conflist `"type": "tsnetlink"`). It reads
 * CNI_COMMAND and stdin, prints the result or the spec's error object on stdout, and exits 0 or
 * 1. VERSION loads nothing but ./version.js; the other commands go to the engine when one serves
 * the state directory (../engine/client.js: node:net only), else import the bridge layer (and so
 * koffi) only once the request has been checked.
 */
import { fstatSync, readSync } from 'node:fs';
import { CURRENT_VERSION, isSupported, versionResult } from './version.js';

/** How long a runtime may take to write the configuration into our stdin. */
const STDIN_DEADLINE_MS = 30_000;

/**
 * Reads stdin to its end. A runtime writes the configuration into the pipe after it started us,
 * so the first read can find the pipe empty, and a pipe inherited in non-blocking mode then
 * answers EAGAIN instead of waiting: that is not the end of the input, so wait a moment and read
 * again (a plain readFileSync(0) read it as an empty configuration under load). `process.stdin`
 * is left alone: opening it would switch the pipe to non-blocking mode itself.
 */
function readStdin(): string {
  // A terminal (or /dev/null) is a character device: nothing is coming, as with no input at all.
  if (fstatSync(0).isCharacterDevice()) return '';
  const chunks: Buffer[] = [];
  const buf = Buffer.alloc(65536);
  const pause = new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + STDIN_DEADLINE_MS;
  for (;;) {
    let n: number;
    try {
      n = readSync(0, buf, 0, buf.length, null);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'EOF') break;
      if (code !== 'EAGAIN' || Date.now() > deadline) throw e;
      Atomics.wait(pause, 0, 0, 2);
      continue;
    }
    if (n === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  return Buffer.concat(chunks).toString('utf8');
}

function print(obj: unknown): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

/** Runs one CNI call; resolves to the exit status. */
async function run(): Promise<number> {
  if (process.env['CNI_COMMAND'] === 'VERSION') {
    print(versionResult(readStdin()));
    return 0;
  }
  // Read once: for the engine, and for the call here if the engine does not take it (a read
  // error is raised where the call reads stdin, as without an engine).
  let stdin: string | undefined;
  let stdinError: unknown;
  try {
    stdin = readStdin();
  } catch (e) {
    stdinError = e;
  }
  if (stdin !== undefined) {
    const { forwardCni } = await import('../engine/client.js');
    const code = await forwardCni(process.env, stdin, versionOf(stdin));
    if (code !== undefined) return code;
  }
  const { runCommand } = await import('./dispatch.js');
  return runCommand(process.env, () => {
    if (stdin === undefined) throw stdinError;
    return stdin;
  }, print);
}

/** The version an error about this configuration is given: its own when this plugin speaks it. */
function versionOf(stdin: string): string {
  try {
    const v = (JSON.parse(stdin) as { cniVersion?: unknown }).cniVersion;
    if (isSupported(v)) return v;
  } catch {
    // not JSON: the newest
  }
  return CURRENT_VERSION;
}

run().then(
  (status) => {
    process.exitCode = status;
  },
  (e: unknown) => {
    // Only a bug reaches here: dispatch turns every error into the spec's object.
    print({ cniVersion: CURRENT_VERSION, code: 100, msg: `tsnetlink-cni: ${(e as Error)?.message ?? String(e)}` });
    process.exitCode = 1;
  },
);
