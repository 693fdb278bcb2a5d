/**
 * Open-fd accounting of the bench process, to show the fds a run leaks. One fd is opened on
 * purpose and never closed: libuv's reserve fd, /dev/null opened read-only and close-on-exec the
 * first time the event loop initialises a stream handle (a pipe, a socket or a TTY), which libuv
 * closes and reopens to turn away a connection when accept() fails with EMFILE. The library reads
 * iptables-restore's output through such pipes, so a run whose stdout and stderr are files (no TTY)
 * used to open it midway and print it as a leak. The bench opens it before its first snapshot and
 * names it; any other fd still open at the end is a leak.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readlinkSync } from 'node:fs';

/** Open fds of this process: fd number to what it points at. */
export function openFds(): Map<number, string> {
  const out = new Map<number, string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      out.set(Number(fd), readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      // The fd of the directory listing itself is gone by the time it is read.
    }
  }
  return out;
}

/**
 * Has libuv open its reserve fd now, if it has not yet: a child with its stdout on a pipe gives the
 * main loop one stream handle. Returns the fds that opened and stayed open (normally one, /dev/null).
 */
export async function openLoopReserveFd(): Promise<Map<number, string>> {
  const before = openFds();
  await new Promise<void>((resolve, reject) => {
    const c = spawn('true', [], { stdio: ['ignore', 'pipe', 'ignore'] });
    c.on('error', reject);
    c.on('close', () => resolve());
  });
  return new Map([...openFds()].filter(([fd, target]) => before.get(fd) !== target && (target === '/dev/null' || target === '/')));
}

/** What changed between two snapshots: fds leaked, and the fds kept open on purpose that are still open. */
export interface FdChanges {
  leaked: string[];
  kept: string[];
}

/** Fds open at the end and not at the start (as "fd -> target"), apart from those named as kept on purpose. */
export function fdChanges(before: ReadonlyMap<number, string>, after: ReadonlyMap<number, string>, kept: ReadonlyMap<number, string>): FdChanges {
  const out: FdChanges = { leaked: [], kept: [] };
  for (const [fd, target] of after) {
    if (before.get(fd) === target) continue;
    (kept.get(fd) === target ? out.kept : out.leaked).push(`${fd} -> ${target}`);
  }
  return out;
}

/** The report's leak line: leaked fds and netns, then the fds kept on purpose, said as such. */
export function leakLine(c: FdChanges, netns: number): string {
  const fds = `${c.leaked.length} fd${c.leaked.length === 1 ? '' : 's'}${c.leaked.length ? ` (${c.leaked.join(', ')})` : ''}`;
  const kept = c.kept.length
    ? `; ${c.kept.length} fd${c.kept.length === 1 ? '' : 's'} kept open on purpose: ${c.kept.join(', ')} (libuv's reserve fd for accept() under EMFILE, one per event loop, opened with its first pipe)`
    : '';
  return `Leaks within the run: ${fds}, ${netns} netns${kept}.`;
}
