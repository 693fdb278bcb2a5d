/**
 * The host-system seam of bridge networking: netlink sockets in the host and in containers,
 * sysctls, and which namespaces are the host's own. KernelHost is the real thing; tests stand in
 * a fake kernel behind the same interface, so connect, disconnect and the reconciler run
 * unchanged without root.
 */
import { closeSync, constants as fsc, openSync, statSync, writeSync, readFileSync } from 'node:fs';
import { ValidationError } from '../errors.js';
import type { NetlinkSocket } from '../netlink/core/socket.js';
import { NetlinkSocket as Socket } from '../netlink/core/socket.js';
import { NetnsHandle, openNetns, withNetns, type NetnsSpec } from '../ns/netns.js';
import { errCode } from '../sys/fsio.js';
import { SockDiag, socketOwners, type InetSocket, type SocketOwner, type SocketQuery } from '../netlink/sockdiag/sockdiag.js';
import { DUMP_RETRIES } from './context.js';

/** A container: its pid, a netns path or name, or an open handle (not closed by us). */
export type ContainerRef = number | NetnsSpec | NetnsHandle;

/** A sysctl under /proc/sys ("net/ipv6/conf/eth0/accept_ra") and its value. */
export interface Sysctl {
  path: string;
  value: string;
  /** Skip it silently when the file does not exist (e.g. IPv6 disabled in the kernel). */
  optional?: boolean;
}

/** What bridge networking needs from the machine. */
export interface HostSystem {
  /** A new NETLINK_ROUTE socket in the host netns (where bridges and host-side veths live). */
  openHostSocket(): NetlinkSocket;
  /** A new NETLINK_ROUTE socket inside `ns`, after setting `sysctls` there, in one namespace switch. */
  openContainerSocket(ns: NetnsHandle, sysctls: readonly Sysctl[]): NetlinkSocket;
  /** A sysctl of the host netns, or undefined when it does not exist. */
  readSysctl(path: string): string | undefined;
  /** Sets a sysctl of the host netns. */
  writeSysctl(s: Sysctl): void;
  /** The "DEV-INO" keys of the namespaces that are the host's: ours and PID 1's. */
  hostNetnsKeys(): readonly string[];
  /** Opens a container's netns; a handle passes through. */
  openContainer(ref: ContainerRef): NetnsHandle;
  /** The sockets of the host netns that answer each query (one sock_diag dump per query). `ss -ltn` */
  hostSockets(queries: readonly SocketQuery[]): InetSocket[];
  /** The processes holding each socket inode, where /proc shows them. `ss -p` */
  socketOwners(inodes: readonly number[]): Map<number, SocketOwner[]>;
}

/** st_dev-st_ino of a netns: how records and markers name a container's namespace. */
export function netnsKey(ns: { dev: number; ino: number }): string {
  return `${ns.dev}-${ns.ino}`;
}

function writeSysctlFile(s: Sysctl): void {
  let fd: number;
  try {
    fd = openSync(`/proc/sys/${s.path}`, fsc.O_WRONLY);
  } catch (e) {
    if (s.optional && errCode(e) === 'ENOENT') return;
    throw e;
  }
  try {
    writeSync(fd, s.value);
  } finally {
    closeSync(fd);
  }
}

/**
 * The real host: sockets through setns, sysctls through /proc/sys. "The host" is the netns the
 * JS thread is in, which every namespace switch restores before it returns.
 */
export class KernelHost implements HostSystem {
  private hostKeys: string[] | undefined;

  openHostSocket(): NetlinkSocket {
    return Socket.open();
  }

  openContainerSocket(ns: NetnsHandle, sysctls: readonly Sysctl[]): NetlinkSocket {
    // /proc/sys/net resolves to the netns of the thread that opens it, so the writes happen
    // inside the same switch as the socket.
    return withNetns(ns, () => {
      for (const s of sysctls) writeSysctlFile(s);
      return Socket.open();
    });
  }

  readSysctl(path: string): string | undefined {
    try {
      return readFileSync(`/proc/sys/${path}`, 'utf8').trim();
    } catch (e) {
      if (errCode(e) === 'ENOENT') return undefined;
      throw e;
    }
  }

  writeSysctl(s: Sysctl): void {
    writeSysctlFile(s);
  }

  hostNetnsKeys(): readonly string[] {
    if (!this.hostKeys) {
      const keys = [netnsKey(statSync('/proc/thread-self/ns/net'))];
      try {
        keys.push(netnsKey(statSync('/proc/1/ns/net')));
      } catch {
        /* /proc/1 hidden (hidepid): our own netns is still refused */
      }
      this.hostKeys = keys;
    }
    return this.hostKeys;
  }

  hostSockets(queries: readonly SocketQuery[]): InetSocket[] {
    // Opened for the call: the check runs once per connect that publishes ports, and a socket
    // costs a few microseconds next to the dumps.
    const diag = SockDiag.open();
    try {
      return queries.flatMap((q) => diag.socketList(q, { retries: DUMP_RETRIES }));
    } finally {
      diag.close();
    }
  }

  socketOwners(inodes: readonly number[]): Map<number, SocketOwner[]> {
    return socketOwners(inodes);
  }

  openContainer(ref: ContainerRef): NetnsHandle {
    if (ref instanceof NetnsHandle) return ref;
    if (typeof ref === 'number') return openNetns({ pid: ref });
    if (typeof ref !== 'object' || ref === null) throw new ValidationError('container', 'must be a pid, { pid }, { path }, { name } or a NetnsHandle');
    return openNetns(ref);
  }
}
