/**
 * Readiness of netlink fds without blocking the event loop: one poll(2) for every watched fd
 * runs on a single libuv worker thread (however many monitors are open), and the callbacks run
 * on the JS thread when it returns. A pipe wakes the poll when the set of fds changes, so an fd
 * is only closed once no poll is looking at it.
 */
import { readSync, writeSync } from 'node:fs';
import * as libc from '../../sys/libc.js';

interface Entry {
  fd: number;
  onReadable: () => void;
}

const POLLIN = 0x1;
const POLLERR = 0x8;
const POLLHUP = 0x10;

const entries = new Map<number, Entry>();
let wake: [number, number] | undefined;
let running: Promise<void> | undefined;

function wakeUp(): void {
  if (wake) {
    try {
      writeSync(wake[1], Buffer.from([1]));
    } catch {
      /* the pipe is full: a wake-up is pending anyway */
    }
  }
}

function drainWake(): void {
  const b = Buffer.alloc(64);
  try {
    while (wake && readSync(wake[0], b) > 0);
  } catch {
    /* EAGAIN: drained */
  }
}

function arm(): void {
  if (running || entries.size === 0) return;
  wake ??= libc.nonBlockingPipe();
  const list = [...entries.values()];
  const fds = Buffer.alloc(8 * (list.length + 1));
  fds.writeInt32LE(wake[0], 0);
  fds.writeInt16LE(POLLIN, 4);
  list.forEach((e, i) => {
    fds.writeInt32LE(e.fd, 8 * (i + 1));
    fds.writeInt16LE(POLLIN, 8 * (i + 1) + 4);
  });
  running = libc.pollAsync(fds, list.length + 1, -1).then(
    () => {
      running = undefined;
      if (fds.readInt16LE(6) !== 0) drainWake();
      list.forEach((e, i) => {
        const rev = fds.readInt16LE(8 * (i + 1) + 6);
        // An entry removed meanwhile is not called: its owner is closing it.
        if ((rev & (POLLIN | POLLERR | POLLHUP)) !== 0 && entries.get(e.fd) === e) e.onReadable();
      });
      arm();
    },
    () => {
      running = undefined;
      arm();
    },
  );
}

/** Calls `onReadable` on the JS thread whenever `fd` has data, until unwatch(fd). */
export function watchFd(fd: number, onReadable: () => void): void {
  entries.set(fd, { fd, onReadable });
  if (running) wakeUp();
  else arm();
}

/** Stops watching `fd`; resolves once no poll includes it any more, so it can be closed. */
export async function unwatchFd(fd: number): Promise<void> {
  if (!entries.delete(fd)) return;
  while (running) {
    const r = running;
    wakeUp();
    await r;
    // arm() may have started a new poll without this fd: that one is safe.
    if (!running || ![...entries.keys()].includes(fd)) break;
  }
  if (entries.size === 0 && !running && wake) {
    libc.close(wake[0]);
    libc.close(wake[1]);
    wake = undefined;
  }
}
