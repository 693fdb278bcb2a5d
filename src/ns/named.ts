/**
 * Named network namespaces under /run/netns, made natively as `ip netns add/del` do:
 * unshare(CLONE_NEWNET) on the JS thread, bind-mount /proc/thread-self/ns/net onto
 * /run/netns/NAME, switch back. No external process.
 */
import { closeSync, fstatSync, mkdirSync, openSync, unlinkSync, constants as fsc } from 'node:fs';
import { SysError } from '../errors.js';
import * as libc from '../sys/libc.js';
import { currentNetns, NETNS_RUN_DIR, NetnsHandle, openNetns, validateNetnsName } from './netns.js';

let runDirReady = false;

/** Makes /run/netns a shared mount point so bind mounts made here are seen in other mount namespaces (as iproute2 does). */
function prepareRunDir(): void {
  if (runDirReady) return;
  mkdirSync(NETNS_RUN_DIR, { recursive: true, mode: 0o755 });
  try {
    libc.mount('', NETNS_RUN_DIR, 'none', libc.MS_SHARED | libc.MS_REC);
  } catch (e) {
    if (!(e instanceof SysError) || e.code !== 'EINVAL') throw e;
    // Not a mount point yet: bind it onto itself, then share it.
    libc.mount(NETNS_RUN_DIR, NETNS_RUN_DIR, 'none', libc.MS_BIND | libc.MS_REC);
    libc.mount('', NETNS_RUN_DIR, 'none', libc.MS_SHARED | libc.MS_REC);
  }
  runDirReady = true;
}

/** Creates a named netns and returns a handle on it. `ip netns add NAME` */
export function createNamedNetns(name: string): NetnsHandle {
  const path = `${NETNS_RUN_DIR}/${validateNetnsName(name)}`;
  prepareRunDir();
  let fd: number;
  try {
    fd = openSync(path, fsc.O_RDONLY | fsc.O_CREAT | fsc.O_EXCL, 0o444);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new SysError('open', -(err.errno ?? 17), `network namespace ${name}`);
  }
  closeSync(fd);
  let orig: NetnsHandle | undefined;
  let mounted = false;
  try {
    orig = currentNetns();
    libc.unshare(libc.CLONE_NEWNET);
    try {
      libc.mount('/proc/thread-self/ns/net', path, 'none', libc.MS_BIND);
      mounted = true;
    } finally {
      libc.setns(orig.fd, libc.CLONE_NEWNET);
    }
    return openNetns({ path });
  } catch (e) {
    if (mounted) tryUmount(path);
    try {
      unlinkSync(path);
    } catch {
      /* already gone */
    }
    throw e;
  } finally {
    orig?.close();
  }
}

function tryUmount(path: string): void {
  try {
    libc.umount2(path, libc.MNT_DETACH);
  } catch {
    /* not mounted */
  }
}

/** Deletes a named netns; the namespace itself lives on while a process or fd still holds it. `ip netns del NAME` */
export function deleteNamedNetns(name: string): void {
  const path = `${NETNS_RUN_DIR}/${validateNetnsName(name)}`;
  tryUmount(path);
  try {
    unlinkSync(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new SysError('unlink', -(err.errno ?? 2), `network namespace ${name}`);
  }
}

/**
 * Creates a network namespace that no path keeps alive: it lives while the returned handle (or a
 * process inside it) does, and the kernel deletes it, with every veth in it, once the last one
 * is gone. A container that dies, or whose supervisor is killed, leaves no namespace behind.
 * `unshare --net` (without a bind mount)
 */
export function createAnonymousNetns(): NetnsHandle {
  const orig = currentNetns();
  try {
    libc.unshare(libc.CLONE_NEWNET);
    let fd: number;
    try {
      fd = openSync('/proc/thread-self/ns/net', fsc.O_RDONLY);
    } finally {
      libc.setns(orig.fd, libc.CLONE_NEWNET);
    }
    try {
      const st = fstatSync(fd);
      // The handle's own fd is its path: another process (as root) can open it while we live.
      return new NetnsHandle(fd, `/proc/${process.pid}/fd/${fd}`, st.dev, st.ino);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  } finally {
    orig.close();
  }
}
