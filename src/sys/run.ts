/**
 * Runs a tool with text on stdin and collects stdout/stderr, started with posix_spawn (see
 * libc.spawnPiped) instead of child_process.spawn: the iptables tools are on connect's path,
 * and forking the Node process cost more than the tool's own work.
 */
import { accessSync, constants as fsc } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { killPid, spawnPiped, waitpidNoHang } from './libc.js';
import { heldLockFds } from './locks.js';

/** Exit code (null when killed by a signal) and the output. */
export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

function collect(fd: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = new Socket({ fd, readable: true, writable: false });
    const parts: Buffer[] = [];
    s.on('data', (b: Buffer) => parts.push(b));
    s.on('error', reject);
    s.on('close', () => resolve(Buffer.concat(parts).toString('utf8')));
  });
}

/** Writes `text` to the child's stdin without blocking the event loop (a stuck tool must not freeze it). */
function writeAll(fd: number, text: string): void {
  const s = new Socket({ fd, readable: false, writable: true });
  // EPIPE: the tool exited before reading everything; its exit status tells why.
  s.on('error', () => s.destroy());
  s.end(text);
}

/** Runs `file` (searched in PATH) with `args`, feeding `input`; kills it after `timeoutMs`. */
export async function runTool(file: string, args: readonly string[], input: string, timeoutMs: number, env: Record<string, string | undefined>): Promise<RunResult> {
  const envList = Object.entries(env)
    .filter((kv): kv is [string, string] => kv[1] !== undefined)
    .map(([k, v]) => `${k}=${v}`);
  // The tool holds our locks with us: killed or not, we never leave it changing state unlocked.
  const child = spawnPiped(file, [file, ...args], envList, heldLockFds());
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killPid(child.pid, 9);
  }, timeoutMs);
  try {
    const out = collect(child.stdout);
    const err = collect(child.stderr);
    writeAll(child.stdin, input);
    const [stdout, stderr] = await Promise.all([out, err]);
    // Both pipes closed: the tool is exiting; reap it (a few event-loop turns at most).
    let status = waitpidNoHang(child.pid);
    for (let spins = 0; status === undefined; spins++) {
      // It is usually gone within microseconds; a timer would add a whole millisecond.
      await new Promise((r) => (spins < 100 ? setImmediate(r) : setTimeout(r, 1)));
      status = waitpidNoHang(child.pid);
    }
    const code = (status & 0x7f) === 0 ? (status >> 8) & 0xff : null;
    return { code, stdout, stderr, timedOut };
  } finally {
    clearTimeout(timer);
  }
}

/** True when `bin` names an executable file, as a path or on $PATH. */
export function findBinary(bin: string): string | undefined {
  const dirs = bin.includes('/') ? [''] : (process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':');
  for (const d of dirs) {
    const p = d === '' ? bin : join(d, bin);
    try {
      accessSync(p, fsc.X_OK);
      return p;
    } catch {
      /* not here */
    }
  }
  return undefined;
}
