/**
 * The libc binding: the only module of tsnetlink that imports koffi.
 *
 * Every call is synchronous on the calling (JS) thread. That is deliberate: setns() is
 * per thread, so a namespace switch, the socket() that must happen inside it and the switch
 * back have to run on one thread without yielding (field notes, pitfall 5).
 */
import { createRequire } from 'node:module';
import { closeSync, openSync, constants as fsConstants } from 'node:fs';
import type * as Koffi from 'koffi';
import { SysError } from '../errors.js';

/**
 * koffi and libc are loaded on the first call, not at import: importing tsnetlink costs no
 * FFI start-up (~40 ms) until a socket or namespace is actually used.
 */
let koffiMod: typeof Koffi | undefined;
let bound: ReturnType<typeof bindLibc> | undefined;

function bindLibc(koffi: typeof Koffi) {
  const lib = koffi.load('libc.so.6');
  return {
  socket: lib.func('int socket(int domain, int type, int protocol)'),
  bind: lib.func('int bind(int fd, const void *addr, uint32_t len)'),
  setsockopt: lib.func('int setsockopt(int fd, int level, int name, const void *val, uint32_t len)'),
  getsockopt: lib.func('int getsockopt(int fd, int level, int name, void *val, void *len)'),
  getsockname: lib.func('int getsockname(int fd, void *addr, void *len)'),
  sendto: lib.func('long sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t alen)'),
  recv: lib.func('long recv(int fd, void *buf, size_t len, int flags)'),
  recvfrom: lib.func('long recvfrom(int fd, void *buf, size_t len, int flags, void *addr, void *alen)'),
  poll: lib.func('int poll(void *fds, unsigned long nfds, int timeout)'),
  close: lib.func('int close(int fd)'),
  setns: lib.func('int setns(int fd, int nstype)'),
  unshare: lib.func('int unshare(int flags)'),
  mount: lib.func('int mount(const char *src, const char *target, const char *fstype, unsigned long flags, const void *data)'),
  umount2: lib.func('int umount2(const char *target, int flags)'),
  flock: lib.func('int flock(int fd, int op)'),
  ioctl: lib.func('int ioctl(int fd, unsigned long req, void *arg)'),
  ioctlInt: lib.func('int ioctl(int fd, unsigned long req, unsigned long arg)'),
  pipe2: lib.func('int pipe2(void *fds, int flags)'),
  waitpid: lib.func('int waitpid(int pid, void *status, int options)'),
  kill: lib.func('int kill(int pid, int sig)'),
  faInit: lib.func('int posix_spawn_file_actions_init(void *fa)'),
  faDup2: lib.func('int posix_spawn_file_actions_adddup2(void *fa, int fd, int newfd)'),
  faDestroy: lib.func('int posix_spawn_file_actions_destroy(void *fa)'),
  attrInit: lib.func('int posix_spawnattr_init(void *attr)'),
  attrSetFlags: lib.func('int posix_spawnattr_setflags(void *attr, short flags)'),
  attrSetSigMask: lib.func('int posix_spawnattr_setsigmask(void *attr, const void *set)'),
  attrSetSigDefault: lib.func('int posix_spawnattr_setsigdefault(void *attr, const void *set)'),
  attrDestroy: lib.func('int posix_spawnattr_destroy(void *attr)'),
  sigemptyset: lib.func('int sigemptyset(void *set)'),
  sigfillset: lib.func('int sigfillset(void *set)'),
  posixSpawnp: lib.func('int posix_spawnp(void *pid, const char *file, const void *fa, const void *attr, const char **argv, const char **envp)'),
    syscall: lib.func('long syscall(long number, ...)'),
    clockGettime: lib.func('int clock_gettime(int clk, void *ts)'),
};
}

function K(): typeof Koffi {
  return (koffiMod ??= createRequire(import.meta.url)('koffi') as typeof Koffi);
}

/** The bound libc functions, loading koffi on first use. */
function C(): ReturnType<typeof bindLibc> {
  return (bound ??= bindLibc(K()));
}

export const AF_NETLINK = 16;
export const SOCK_RAW = 3;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SOL_NETLINK = 270;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_RCVBUFFORCE = 33;
export const MSG_PEEK = 0x2;
export const MSG_TRUNC = 0x20;
const MSG_DONTWAIT = 0x40;
export const POLLIN = 0x1;
export const CLONE_NEWNET = 0x40000000;
export const MS_BIND = 4096;
export const MS_REC = 16384;
export const MS_SHARED = 1 << 20;
export const MNT_DETACH = 2;
export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;
const NS_GET_NSTYPE = 0xb703;
export const EINTR = 4;
export const EAGAIN = 11;
const O_CLOEXEC = 0o2000000;

/**
 * Time spent inside kernel-facing calls, for the bench's "floor" figure.
 * Off by default so the hot path pays one boolean test per call.
 */
export const kernelClock = {
  enabled: false,
  ns: 0n,
  calls: 0,
  /** The same, per libc function. */
  byCall: {} as Record<string, { ns: bigint; calls: number }>,
  /** Zeroes every counter. */
  reset(): void {
    this.ns = 0n;
    this.calls = 0;
    this.byCall = {};
  },
};

function timed<T>(name: string, fn: () => T): T {
  if (!kernelClock.enabled) return fn();
  const t0 = process.hrtime.bigint();
  try {
    return fn();
  } finally {
    const dt = process.hrtime.bigint() - t0;
    kernelClock.ns += dt;
    kernelClock.calls++;
    const e = (kernelClock.byCall[name] ??= { ns: 0n, calls: 0 });
    e.ns += dt;
    e.calls++;
  }
}

function fail(syscall: string, detail?: string): never {
  throw new SysError(syscall, K().errno(), detail);
}

/** socket(2); throws SysError. */
export function socket(domain: number, type: number, protocol: number): number {
  const fd = timed('socket', () => C().socket(domain, type, protocol) as number);
  if (fd < 0) fail('socket');
  return fd;
}

/** bind(2) with a raw sockaddr buffer. */
export function bind(fd: number, addr: Buffer): void {
  if ((C().bind(fd, addr, addr.length) as number) < 0) fail('bind');
}

/** setsockopt(2) with an int value. */
export function setsockoptInt(fd: number, level: number, name: number, value: number): void {
  const b = Buffer.alloc(4);
  b.writeInt32LE(value);
  if ((C().setsockopt(fd, level, name, b, 4) as number) < 0) fail('setsockopt', `level ${level} option ${name}`);
}

/** setsockopt(2) with a struct value given as bytes. */
export function setsockoptBuf(fd: number, level: number, name: number, value: Buffer): void {
  if ((C().setsockopt(fd, level, name, value, value.length) as number) < 0) fail('setsockopt', `level ${level} option ${name}`);
}

/** getsockopt(2) for an int value. */
export function getsockoptInt(fd: number, level: number, name: number): number {
  const v = Buffer.alloc(4);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(4);
  if ((C().getsockopt(fd, level, name, v, len) as number) < 0) fail('getsockopt');
  return v.readInt32LE();
}

/** SO_PEERCRED: the credentials a unix socket's peer had when it connected. */
export const SO_PEERCRED = 17;

/**
 * The pid, effective uid and gid of a connected unix socket's peer, as the kernel recorded them
 * at connect() (getsockopt SO_PEERCRED): what a server trusts, since the peer cannot forge it.
 */
export function peerCredentials(fd: number): { pid: number; uid: number; gid: number } {
  const v = Buffer.alloc(12); // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
  const len = Buffer.alloc(4);
  len.writeUInt32LE(12);
  if ((C().getsockopt(fd, SOL_SOCKET, SO_PEERCRED, v, len) as number) < 0) fail('getsockopt', 'SO_PEERCRED');
  return { pid: v.readInt32LE(0), uid: v.readUInt32LE(4), gid: v.readUInt32LE(8) };
}

/** getsockname(2) into a raw sockaddr buffer of the given size. */
export function getsockname(fd: number, size: number): Buffer {
  const addr = Buffer.alloc(size);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(size);
  if ((C().getsockname(fd, addr, len) as number) < 0) fail('getsockname');
  return addr.subarray(0, len.readUInt32LE());
}

/** sendto(2) the whole buffer (netlink datagrams are all-or-nothing); retries EINTR. */
export function sendto(fd: number, buf: Buffer, addr: Buffer): number {
  for (;;) {
    const n = timed('sendto', () => Number(C().sendto(fd, buf, buf.length, 0, addr, addr.length)));
    if (n >= 0) return n;
    if (K().errno() !== EINTR) fail('sendto');
  }
}

/**
 * sendto(2) on a libuv worker thread, for requests the kernel takes long to process inside
 * sendmsg (RTM_DELLINK waits for an RCU grace period, ~15-20 ms): the JS thread keeps running.
 * errno is thread-local and not carried back, so a failure is retried synchronously to get it
 * (a failed sendto sent nothing, so nothing is sent twice).
 */
export function sendtoAsync(fd: number, buf: Buffer, addr: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    C().sendto.async(fd, buf, buf.length, 0, addr, addr.length, (err: unknown, n: unknown) => {
      if (err) return reject(err);
      if (Number(n) >= 0) return resolve(Number(n));
      try {
        resolve(sendto(fd, buf, addr));
      } catch (e) {
        reject(e);
      }
    });
  });
}

/**
 * recv(2) without blocking: returns the datagram length (the full length with MSG_TRUNC,
 * even when `buf` is smaller), or -1 when nothing is queued. Other errors throw.
 */
export function recvNonBlocking(fd: number, buf: Buffer, flags: number): number {
  for (;;) {
    const n = timed('recv', () => Number(C().recv(fd, buf, buf.length, flags | MSG_DONTWAIT)));
    if (n >= 0) return n;
    const e = K().errno();
    if (e === EAGAIN) return -1;
    if (e !== EINTR) fail('recv');
  }
}

const fromLen = Buffer.alloc(4);
/**
 * recvfrom(2) without blocking into `buf`, filling `addr` with the sender's sockaddr.
 * Returns the datagram length or -1 when nothing is queued.
 */
export function recvfromNonBlocking(fd: number, buf: Buffer, flags: number, addr: Buffer): number {
  for (;;) {
    fromLen.writeUInt32LE(addr.length);
    const n = timed('recvfrom', () => Number(C().recvfrom(fd, buf, buf.length, flags | MSG_DONTWAIT, addr, fromLen)));
    if (n >= 0) return n;
    const e = K().errno();
    if (e === EAGAIN) return -1;
    if (e !== EINTR) fail('recvfrom');
  }
}

/**
 * recvfrom(2) without blocking, on a libuv worker thread: for sockets whose kernel side works
 * inside recvmsg (a netlink dump builds each part after the first there, and a conntrack dump's
 * part walks the rest of the hash table). Resolves to the datagram length (the full one with
 * MSG_TRUNC) or -1 when nothing is queued. errno is not carried back from the worker, so a
 * failure is retried synchronously to learn it (nothing was taken off the queue).
 */
export function recvfromAsync(fd: number, buf: Buffer, flags: number, addr: Buffer): Promise<number> {
  const len = Buffer.alloc(4);
  len.writeUInt32LE(addr.length);
  return new Promise((resolve, reject) => {
    C().recvfrom.async(fd, buf, buf.length, flags | MSG_DONTWAIT, addr, len, (err: unknown, n: unknown) => {
      if (err) return reject(err);
      if (Number(n) >= 0) return resolve(Number(n));
      try {
        resolve(recvfromNonBlocking(fd, buf, flags, addr));
      } catch (e) {
        reject(e);
      }
    });
  });
}

const pollBuf = Buffer.alloc(8);
/** poll(2) one fd for input; returns true when readable, false on timeout. */
export function pollIn(fd: number, timeoutMs: number): boolean {
  pollBuf.writeInt32LE(fd, 0);
  pollBuf.writeInt16LE(POLLIN, 4);
  pollBuf.writeInt16LE(0, 6);
  const n = timed('poll', () => C().poll(pollBuf, 1, Math.max(0, Math.ceil(timeoutMs))) as number);
  if (n < 0) {
    if (K().errno() === EINTR) return false;
    fail('poll');
  }
  return n > 0;
}

/**
 * poll(2) on a libuv worker thread: resolves with the number of ready fds, the revents
 * written into `pollfds` (struct pollfd[]), without blocking the JS thread while it waits.
 */
export function pollAsync(pollfds: Buffer, count: number, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    C().poll.async(pollfds, count, timeoutMs, (err: unknown, n: unknown) => (err ? reject(err) : resolve(Number(n))));
  });
}

const O_NONBLOCK = 0o4000;
/** pipe2(2) with O_NONBLOCK | O_CLOEXEC: [read end, write end]. */
export function nonBlockingPipe(): [number, number] {
  const fds = Buffer.alloc(8);
  if ((C().pipe2(fds, O_NONBLOCK | O_CLOEXEC) as number) < 0) fail('pipe2');
  return [fds.readInt32LE(0), fds.readInt32LE(4)];
}

/** close(2); errors are ignored because the fd is released either way on Linux. */
export function close(fd: number): void {
  C().close(fd);
}

/** setns(2) for the calling thread. */
export function setns(fd: number, nstype: number): void {
  const r = timed('setns', () => C().setns(fd, nstype) as number);
  if (r < 0) fail('setns');
}

/** The CLONE_NEW* type of the namespace `fd` is a handle of (ioctl NS_GET_NSTYPE); SysError when it is none. */
export function namespaceType(fd: number): number {
  const t = C().ioctl(fd, NS_GET_NSTYPE, null) as number;
  if (t < 0) fail('ioctl', 'NS_GET_NSTYPE');
  return t;
}

/** Throws unless `fd` is an nsfs handle of a network namespace (ioctl NS_GET_NSTYPE). */
export function assertNetnsFd(fd: number): void {
  const t = C().ioctl(fd, NS_GET_NSTYPE, null) as number;
  if (t < 0) fail('ioctl', 'NS_GET_NSTYPE');
  if (t !== CLONE_NEWNET) throw new SysError('ioctl', 22, 'not a network namespace');
}

/** unshare(2) for the calling thread. */
export function unshare(flags: number): void {
  if ((C().unshare(flags) as number) < 0) fail('unshare');
}

/** mount(2). */
export function mount(src: string | null, target: string, fstype: string | null, flags: number): void {
  if ((C().mount(src, target, fstype, flags, null) as number) < 0) fail('mount', target);
}

/** umount2(2). */
export function umount2(target: string, flags: number): void {
  if ((C().umount2(target, flags) as number) < 0) fail('umount2', target);
}

/** flock(2); with LOCK_NB returns false instead of blocking when the lock is held. */
export function flock(fd: number, op: number): boolean {
  for (;;) {
    if ((C().flock(fd, op) as number) === 0) return true;
    const e = K().errno();
    if ((op & LOCK_NB) !== 0 && e === EAGAIN) return false;
    if (e !== EINTR) fail('flock');
  }
}

const WNOHANG = 1;
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;

/** A child started by spawnPiped: its pid and our ends of its stdin, stdout and stderr pipes. */
export interface PipedChild {
  pid: number;
  stdin: number;
  stdout: number;
  stderr: number;
}

function pipe(): [number, number] {
  const fds = Buffer.alloc(8);
  if ((C().pipe2(fds, O_CLOEXEC) as number) < 0) fail('pipe2');
  return [fds.readInt32LE(0), fds.readInt32LE(4)];
}

const spawnWatchers = new Set<(pid: number) => void>();

/**
 * Calls `fn` with the pid of every process spawnPiped starts from now on, until the returned
 * function is called: a long-running process (the engine) tells the firewall changes its own
 * tools commit from anyone else's by it.
 */
export function watchSpawns(fn: (pid: number) => void): () => void {
  spawnWatchers.add(fn);
  return () => void spawnWatchers.delete(fn);
}

/**
 * posix_spawnp(3) with stdin/stdout/stderr on pipes. glibc spawns with CLONE_VFORK, so this
 * costs a fraction of child_process.spawn's fork of the whole Node process (~0.3 ms against
 * ~2 ms here). Every other fd stays behind: Node and this module open all fds close-on-exec.
 * Signals are reset to defaults and unblocked in the child. The fds in `inherit` are passed on
 * under their own numbers (dup2 onto itself clears close-on-exec in the child, glibc >= 2.29).
 */
export function spawnPiped(file: string, argv: readonly string[], env: readonly string[], inherit: readonly number[] = []): PipedChild {
  const made: number[] = [];
  const fa = Buffer.alloc(256); // posix_spawn_file_actions_t is 80 bytes on glibc x86_64/arm64
  const attr = Buffer.alloc(512); // posix_spawnattr_t is 336 bytes
  const sigs = Buffer.alloc(128);
  try {
    const [inR, inW] = pipe();
    const [outR, outW] = pipe();
    const [errR, errW] = pipe();
    made.push(inR, inW, outR, outW, errR, errW);
    C().faInit(fa);
    C().faDup2(fa, inR, 0);
    C().faDup2(fa, outW, 1);
    C().faDup2(fa, errW, 2);
    for (const fd of inherit) C().faDup2(fa, fd, fd);
    C().attrInit(attr);
    C().sigemptyset(sigs);
    C().attrSetSigMask(attr, sigs);
    C().sigfillset(sigs);
    C().attrSetSigDefault(attr, sigs);
    C().attrSetFlags(attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    const pid = Buffer.alloc(4);
    const rc = C().posixSpawnp(pid, file, fa, attr, [...argv, null], [...env, null]) as number;
    C().faDestroy(fa);
    C().attrDestroy(attr);
    if (rc !== 0) throw new SysError('posix_spawnp', rc, file);
    for (const fd of [inR, outW, errW]) C().close(fd);
    const child = pid.readInt32LE(0);
    for (const w of spawnWatchers) w(child);
    return { pid: child, stdin: inW, stdout: outR, stderr: errR };
  } catch (e) {
    for (const fd of made) C().close(fd);
    throw e;
  }
}

/** waitpid(2) without blocking: the exit status word, or undefined while the child runs. */
export function waitpidNoHang(pid: number): number | undefined {
  const st = Buffer.alloc(4);
  for (;;) {
    const r = C().waitpid(pid, st, WNOHANG) as number;
    if (r === pid) return st.readInt32LE(0);
    if (r === 0) return undefined;
    if (K().errno() !== EINTR) fail('waitpid');
  }
}

/** kill(2); ESRCH (already gone) is not an error. */
export function killPid(pid: number, sig: number): void {
  if ((C().kill(pid, sig) as number) < 0 && K().errno() !== 3) fail('kill');
}

const TUNSETIFF = 0x400454ca;
const TUNSETPERSIST = 0x400454cb;
const TUNSETOWNER = 0x400454cc;
const TUNSETGROUP = 0x400454ce;
const IFF_TUN = 0x0001;
const IFF_TAP = 0x0002;
const IFF_MULTI_QUEUE = 0x0100;
const IFF_NO_PI = 0x1000;
const IFF_VNET_HDR = 0x4000;

/**
 * Creates a persistent tun or tap device as `ip tuntap add` does: TUNSETIFF on /dev/net/tun
 * (no packet-info header unless `pi`), owner and group if given, then TUNSETPERSIST so the
 * device outlives the fd.
 */
export function tuntapCreate(name: string, o: { mode: 'tun' | 'tap'; multiQueue?: boolean; vnetHdr?: boolean; pi?: boolean; owner?: number; group?: number }): void {
  // Node opens every fd close-on-exec already.
  const fd = openSync('/dev/net/tun', fsConstants.O_RDWR);
  try {
    const ifr = Buffer.alloc(40); // struct ifreq: char ifr_name[16]; short ifr_flags; ...
    ifr.write(name, 0, 15, 'utf8');
    const flags = (o.mode === 'tap' ? IFF_TAP : IFF_TUN) | (o.pi ? 0 : IFF_NO_PI) | (o.multiQueue ? IFF_MULTI_QUEUE : 0) | (o.vnetHdr ? IFF_VNET_HDR : 0);
    ifr.writeInt16LE(flags, 16);
    if ((C().ioctl(fd, TUNSETIFF, ifr) as number) < 0) fail('ioctl', `TUNSETIFF ${name}`);
    if (o.owner !== undefined && (C().ioctlInt(fd, TUNSETOWNER, o.owner) as number) < 0) fail('ioctl', 'TUNSETOWNER');
    if (o.group !== undefined && (C().ioctlInt(fd, TUNSETGROUP, o.group) as number) < 0) fail('ioctl', 'TUNSETGROUP');
    if ((C().ioctlInt(fd, TUNSETPERSIST, 1) as number) < 0) fail('ioctl', 'TUNSETPERSIST');
  } finally {
    closeSync(fd);
  }
}

// ------------------------------------------------------------ bpf(2)

const BPF_PROG_LOAD = 5;
const BPF_OBJ_PIN = 6;
const BPF_OBJ_GET = 7;
/** The bpf system call's number on the architectures Node ships for Linux. */
const SYS_BPF: Partial<Record<string, number>> = { x64: 321, arm64: 280, ia32: 357, arm: 386, ppc64: 361, s390x: 351, riscv64: 280, loong64: 280 };

/** bpf(2) with a union bpf_attr given as bytes; returns the new fd (or 0). */
function bpf(cmd: number, attr: Buffer, what: string): number {
  const nr = SYS_BPF[process.arch];
  if (nr === undefined) throw new SysError('bpf', 38, `no bpf system call number for ${process.arch}`);
  const r = Number(C().syscall(nr, 'int', cmd, 'void *', attr, 'uint', attr.length));
  if (r < 0) fail('bpf', what);
  return r;
}

/** A NUL-terminated copy of `s` and its address, for pointers inside a bpf_attr (the buffer must stay referenced during the call). */
function cString(s: string): { buf: Buffer; addr: bigint } {
  const buf = Buffer.from(`${s}\0`, 'utf8');
  return { buf, addr: K().address(buf) };
}

/** BPF_OBJ_GET: an fd for the BPF object pinned at `path` in a bpf filesystem (what `tc ... bpf pinned PATH` opens); close it when done. */
export function bpfObjGet(path: string): number {
  const p = cString(path);
  const attr = Buffer.alloc(24); // pathname, bpf_fd, file_flags, path_fd
  attr.writeBigUInt64LE(p.addr, 0);
  const fd = bpf(BPF_OBJ_GET, attr, `BPF_OBJ_GET ${path}`);
  void p.buf; // the path stays referenced until the call has returned
  return fd;
}

/** BPF_OBJ_PIN: pins the BPF object of `fd` at `path` in a bpf filesystem. */
export function bpfObjPin(fd: number, path: string): void {
  const p = cString(path);
  const attr = Buffer.alloc(24);
  attr.writeBigUInt64LE(p.addr, 0);
  attr.writeUInt32LE(fd, 8);
  bpf(BPF_OBJ_PIN, attr, `BPF_OBJ_PIN ${path}`);
  void p.buf;
}

/** BPF_PROG_LOAD: loads a program of `type` (3 = BPF_PROG_TYPE_SCHED_CLS) from its instructions (8 bytes each); returns its fd. */
export function bpfProgLoad(type: number, insns: Buffer, opts: { license?: string; name?: string } = {}): number {
  if (insns.length === 0 || insns.length % 8 !== 0) throw new SysError('bpf', 22, 'instructions are 8 bytes each');
  const license = cString(opts.license ?? 'GPL');
  const code = Buffer.from(insns);
  const attr = Buffer.alloc(128);
  attr.writeUInt32LE(type, 0);
  attr.writeUInt32LE(insns.length / 8, 4);
  attr.writeBigUInt64LE(K().address(code), 8);
  attr.writeBigUInt64LE(license.addr, 16);
  if (opts.name) attr.write(opts.name.slice(0, 15), 48, 'utf8');
  const fd = bpf(BPF_PROG_LOAD, attr, 'BPF_PROG_LOAD');
  void license.buf;
  void code;
  return fd;
}

const CLOCK_THREAD_CPUTIME_ID = 3;
let timespec: Buffer | undefined;

/**
 * CPU time the calling thread has used (ns), kernel and user; precise to the nanosecond where
 * /proc/thread-self/schedstat is only brought up to date at a context switch or a scheduler tick.
 * The bench's event-loop meter reads it to tell the JS thread's own work from its waits.
 */
export function threadCpuNs(): number {
  timespec ??= Buffer.alloc(16);
  if (C().clockGettime(CLOCK_THREAD_CPUTIME_ID, timespec) !== 0) fail('clock_gettime');
  return Number(timespec.readBigInt64LE(0)) * 1e9 + Number(timespec.readBigInt64LE(8));
}
