/**
 * Who is calling: the credentials the kernel recorded for a unix socket's peer (SO_PEERCRED),
 * and whether the engine may run the call in its place. Only root may use the engine (the
 * socket is 0600 in a 0700 directory too); and since a call acts on the network namespace it
 * runs in and resolves paths and pids in its mount namespace, the engine runs only calls made
 * from its own network and mount namespaces, by a process that could have run them itself.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import type { Socket } from 'node:net';
import { peerCredentials } from '../sys/libc.js';

/** A connected peer's credentials. */
export interface Peer {
  pid: number;
  uid: number;
  gid: number;
}

/** The identities (device and inode) of a process's network and mount namespaces. */
export interface Namespaces {
  net: string;
  mnt: string;
}

/** The namespaces of process `pid` ('self' for this one, or a /proc path below it such as 'self/task/TID'). */
export function namespacesOf(pid: number | string): Namespaces {
  const id = (kind: string): string => {
    const st = statSync(`/proc/${pid}/ns/${kind}`);
    return `${st.dev}:${st.ino}`;
  };
  return { net: id('net'), mnt: id('mnt') };
}

/**
 * A thread of this process, other than the JS thread, that is in the process's own namespaces
 * (`home`); undefined when there is none. /proc/PID/ns names the JS thread's namespaces, and
 * the JS thread enters a container's network namespace for a moment during every connect; only
 * the JS thread ever calls setns, so a client that compares its namespaces with the engine's
 * reads them from this thread instead and never sees the engine "elsewhere" mid-connect.
 */
export function steadyThread(home: Namespaces): number | undefined {
  let tids: number[];
  try {
    tids = readdirSync('/proc/self/task').map(Number).filter((t) => t !== process.pid);
  } catch {
    return undefined;
  }
  for (const tid of tids.sort((a, b) => a - b)) {
    try {
      const ns = namespacesOf(`self/task/${tid}`);
      if (ns.net === home.net && ns.mnt === home.mnt) return tid;
    } catch {
      // The thread ended between the listing and the stat.
    }
  }
  return undefined;
}

/** The fd under a Node socket (libuv's handle keeps it; there is no public accessor). */
function fdOf(sock: Socket): number | undefined {
  const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/** The peer of a unix socket connection, or undefined when the kernel cannot say. */
export function peerOf(sock: Socket): Peer | undefined {
  const fd = fdOf(sock);
  if (fd === undefined) return undefined;
  try {
    return peerCredentials(fd);
  } catch {
    return undefined;
  }
}

/** CAP_NET_ADMIN and CAP_SYS_ADMIN, which every networking command needs. */
const NEEDED_CAPS = (1n << 12n) | (1n << 21n);

/** A refusal: 403 (not allowed at all) or 503 (allowed, but the caller must run it itself), with the reason. */
export interface Refusal {
  status: 403 | 503;
  why: string;
}

/**
 * Why the engine must not run a call for `peer`, or undefined when it may: a peer other than
 * root is refused; one in another network or mount namespace, or without CAP_NET_ADMIN and
 * CAP_SYS_ADMIN (a root the in-process call would fail for), runs the call itself.
 */
export function refusalFor(peer: Peer | undefined, home: Namespaces): Refusal | undefined {
  if (!peer) return { status: 403, why: 'the peer of this connection is unknown (SO_PEERCRED failed)' };
  if (peer.uid !== 0) return { status: 403, why: `refused: the peer (pid ${peer.pid}, uid ${peer.uid}) is not root` };
  let ns: Namespaces;
  let status: string;
  try {
    ns = namespacesOf(peer.pid);
    status = readFileSync(`/proc/${peer.pid}/status`, 'utf8');
  } catch (e) {
    return { status: 503, why: `the peer's namespaces cannot be read (${(e as { code?: string }).code ?? String(e)})` };
  }
  if (ns.net !== home.net) return { status: 503, why: 'the caller is in another network namespace' };
  if (ns.mnt !== home.mnt) return { status: 503, why: 'the caller is in another mount namespace' };
  const caps = BigInt(`0x${/^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1] ?? '0'}`);
  if ((caps & NEEDED_CAPS) !== NEEDED_CAPS) return { status: 503, why: 'the caller lacks CAP_NET_ADMIN or CAP_SYS_ADMIN' };
  return undefined;
}
