/**
 * Network namespace handles and the one safe way to act inside another netns from Node:
 * a synchronous critical section on the JS thread (setns, work, setns back), restored on
 * every path. Sockets opened inside stay bound to that netns after the switch back.
 */
import { closeSync, fstatSync, openSync, constants as fsc } from 'node:fs';
import { SysError, ValidationError } from '../errors.js';
import * as libc from '../sys/libc.js';
import { KernelTransport, NetlinkSocket, type SocketOptions } from '../netlink/core/socket.js';
import { Rtnl } from '../netlink/route/rtnl.js';
import { Conntrack } from '../netlink/netfilter/conntrack-client.js';
import { validateIfname } from '../netlink/core/validate.js';

export const NETNS_RUN_DIR = '/run/netns';

/** An open network namespace: an fd on an nsfs inode. */
export class NetnsHandle {
  private open = true;
  constructor(
    readonly fd: number,
    /** Where it was opened from (for messages). */
    readonly path: string,
    readonly dev: number,
    readonly ino: number,
  ) {}

  /** True when both handles name the same namespace (same st_dev and st_ino). */
  equals(other: NetnsHandle): boolean {
    return this.dev === other.dev && this.ino === other.ino;
  }

  /** Releases the fd; idempotent. */
  close(): void {
    if (!this.open) return;
    this.open = false;
    closeSync(this.fd);
  }

  get closed(): boolean {
    return !this.open;
  }
}

/** How to find a netns: a pid, a path, or a name under /run/netns. */
export type NetnsSpec = { pid: number } | { path: string } | { name: string };

function pathOf(spec: NetnsSpec): string {
  if ('pid' in spec) {
    if (!Number.isInteger(spec.pid) || spec.pid < 1) throw new ValidationError('pid', `${String(spec.pid)} is not a process id`);
    return `/proc/${spec.pid}/ns/net`;
  }
  if ('name' in spec) return `${NETNS_RUN_DIR}/${validateNetnsName(spec.name)}`;
  if (typeof spec.path !== 'string' || spec.path === '') throw new ValidationError('netns path', 'must be a non-empty path');
  return spec.path;
}

/** Names under /run/netns: same rules as `ip netns add` (no '/', not '.' or '..'). */
export function validateNetnsName(name: unknown): string {
  if (typeof name !== 'string' || name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0') || Buffer.byteLength(name) > 255) {
    throw new ValidationError('netns name', `${JSON.stringify(name)} is not a valid namespace name`);
  }
  return name;
}

/** Opens a netns by pid (/proc/PID/ns/net), path, or name (/run/netns/NAME). `ip netns exec NAME` targets the same file. */
export function openNetns(spec: NetnsSpec): NetnsHandle {
  const path = pathOf(spec);
  let fd: number;
  try {
    fd = openSync(path, fsc.O_RDONLY);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    // A pid whose /proc entry is missing is a process that does not exist (or has exited): say that.
    if ('pid' in spec && err.code === 'ENOENT') throw new SysError('open', 3, `no process ${spec.pid}`);
    throw new SysError('open', -(err.errno ?? 2), `network namespace ${path}`);
  }
  try {
    const st = fstatSync(fd);
    // A plain file (or another namespace type) at that path must not be mistaken for a netns.
    libc.assertNetnsFd(fd);
    return new NetnsHandle(fd, path, st.dev, st.ino);
  } catch (e) {
    closeSync(fd);
    if (e instanceof SysError && (e.code === 'EINVAL' || e.code === 'ENOTTY')) throw new SysError('open', 22, `${path} is not a network namespace`);
    throw e;
  }
}

/** Opens the calling thread's current netns (thread-self: setns is per thread). */
export function currentNetns(): NetnsHandle {
  return openNetns({ path: '/proc/thread-self/ns/net' });
}

/**
 * Runs `fn` synchronously inside `ns` and switches the JS thread back, even on throw.
 * Refuses a callback that returns a promise: its continuation would run in the wrong netns.
 */
export function withNetns<T>(ns: NetnsHandle, fn: () => T): T {
  if (ns.closed) throw new ValidationError('netns', `handle for ${ns.path} is closed`);
  // Only an fd is needed to come back: thread-self is a netns by construction, so no checks.
  const orig = openSync('/proc/thread-self/ns/net', fsc.O_RDONLY);
  let result: T;
  try {
    libc.setns(ns.fd, libc.CLONE_NEWNET);
    try {
      result = fn();
    } finally {
      // If this fails the thread is stranded in the wrong netns: nothing safe is left to do.
      libc.setns(orig, libc.CLONE_NEWNET);
    }
  } finally {
    closeSync(orig);
  }
  if (result !== null && typeof result === 'object' && typeof (result as { then?: unknown }).then === 'function') {
    throw new ValidationError('withNetns', 'the callback returned a promise; only synchronous work may run inside a namespace switch');
  }
  return result;
}

/** Opens a netlink socket inside `ns` (setns, socket, setns back); the socket stays in `ns`. */
export function openSocketIn(ns: NetnsHandle, opts: SocketOptions = {}): NetlinkSocket {
  return withNetns(ns, () => NetlinkSocket.open(opts));
}

/** Opens an Rtnl handle whose operations act inside `ns`. `ip -n NAME ...` */
export function openRtnlIn(ns: NetnsHandle, opts: SocketOptions = {}): Rtnl {
  return new Rtnl(openSocketIn(ns, opts));
}

/**
 * Opens a Conntrack handle on the conntrack table of `ns`. Its event streams open their sockets
 * inside `ns` too, so keep the handle open while you start them. `conntrack` run by `ip netns exec NAME`
 */
export function openConntrackIn(ns: NetnsHandle, opts: SocketOptions = {}): Conntrack {
  return Conntrack.openWith((o) => withNetns(ns, () => new KernelTransport(o)), opts);
}

export { validateIfname };
