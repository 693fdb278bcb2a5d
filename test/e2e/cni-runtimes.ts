/**
 * Real runtimes inside the sandbox, touching nothing of the host: Podman with the CNI backend
 * (its own --root/--runroot, a containers.conf of the test's own naming network_config_dir and
 * cni_plugin_dirs) and containerd's ctr (which reads only /opt/cni/bin and /etc/cni/net.d, so
 * those get private tmpfs mounts). Containers run from a busybox-static rootfs; no registry.
 * Every process a runtime leaves behind (conmon, shims, containerd) is ended by its PID.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxRootfs, PLUGIN, privateTmpfs, run, runtimeCgroups, STOCK } from './cni-lib.js';

/** Whether the runtime packages are installed (CI installs them: a missing one fails there). */
export function haveRuntime(bins: readonly string[]): string[] {
  return bins.filter((b) => spawnSync('sh', ['-c', `command -v ${b}`]).status !== 0);
}

/**
 * crun 1.8 refuses this machine's hybrid cgroup layout: a read-only tmpfs over the v2 mount (in
 * our mount namespace only) makes it see plain v1, and Podman runs with cgroups disabled.
 */
export function hideUnifiedCgroup(): void {
  if (existsSync('/sys/fs/cgroup/unified')) privateTmpfs('/sys/fs/cgroup/unified', 'ro');
}

/** A Podman of the test's own. */
export class Podman {
  readonly dir: string;
  readonly rootfs: string;
  readonly netDir: string;
  readonly binDir: string;
  private readonly env: NodeJS.ProcessEnv;

  constructor(page: string) {
    this.dir = mkdtempSync('/run/podman-e2e-');
    this.rootfs = join(this.dir, 'rootfs');
    this.netDir = join(this.dir, 'net.d');
    this.binDir = join(this.dir, 'bin');
    for (const d of [this.netDir, this.binDir]) mkdirSync(d);
    busyboxRootfs(this.rootfs, page);
    symlinkSync(PLUGIN, join(this.binDir, 'tsnetlink'));
    // Podman raises RLIMIT_NOFILE/NPROC to values crun may not set without CAP_SYS_RESOURCE.
    writeFileSync(
      join(this.dir, 'containers.conf'),
      [
        '[containers]',
        'cgroups = "disabled"',
        'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]',
        '[network]',
        'network_backend = "cni"',
        `cni_plugin_dirs = ["${this.binDir}", "${STOCK}"]`,
        `network_config_dir = "${this.netDir}"`,
        '[engine]',
        'cgroup_manager = "cgroupfs"',
        'events_logger = "none"',
        'runtime = "crun"',
        '',
      ].join('\n'),
    );
    this.env = { ...process.env, CONTAINERS_CONF: join(this.dir, 'containers.conf') };
  }

  /** `podman ARGS` with this Podman's storage; throws on failure. */
  cmd(...args: string[]): string {
    return run('podman', ['--root', join(this.dir, 'root'), '--runroot', join(this.dir, 'runroot'), '--storage-driver', 'vfs', ...args], { env: this.env, timeout: 120_000 }).trim();
  }

  /** `podman ARGS` run asynchronously, so that servers of this process keep answering meanwhile. */
  cmdAsync(...args: string[]): Promise<string> {
    const argv = ['--root', join(this.dir, 'root'), '--runroot', join(this.dir, 'runroot'), '--storage-driver', 'vfs', ...args];
    return new Promise((resolve, reject) => {
      execFile('podman', argv, { env: this.env, timeout: 60_000, encoding: 'utf8' }, (e, out, err) => (e ? reject(new Error(`podman ${args.join(' ')}: ${e.message} ${err}`)) : resolve(out.trim())));
    });
  }

  /** Timed `podman ARGS` (ms). */
  timed(...args: string[]): number {
    const t = performance.now();
    this.cmd(...args);
    return performance.now() - t;
  }

  /** `podman run -d` of busybox httpd serving the page on port 80, with extra run options. */
  runHttpd(name: string, opts: string[]): string {
    return this.cmd('run', '-d', '--name', name, ...opts, '--rootfs', this.rootfs, '/bin/httpd', '-f', '-p', '80', '-h', '/www');
  }

  /** The network conflist Podman wrote for `network`, parsed. */
  conflistPath(network: string): string {
    return join(this.netDir, `${network}.conflist`);
  }

  /**
   * Removes every container, then ends what may outlive that: the conmon monitors and the
   * containers' own processes, by the PIDs their pidfiles named before rm deleted them.
   */
  cleanup(): void {
    const runroot = join(this.dir, 'runroot');
    const pids = [...findFiles(runroot, 'conmon.pid'), ...findFiles(runroot, 'pidfile')].map((f) => Number(readFileSync(f, 'utf8').trim())).filter((p) => p > 1);
    try {
      this.cmd('rm', '-a', '-f', '-t', '0');
    } catch {
      // Best effort: the PIDs below are ended anyway.
    }
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function findFiles(dir: string, name: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...findFiles(p, name));
    else if (e.name === name) out.push(p);
  }
  return out;
}

/**
 * Rewrites Podman's bridge conflist so that tsnetlink is the only plugin, taking over what the
 * stock chain (bridge, host-local, portmap, firewall, tuning) did: the same bridge, gateway,
 * masquerade, hairpin and IPAM ranges, with the portMappings and ips capabilities.
 */
export function toTsnetlink(conflist: string): void {
  const c = JSON.parse(readFileSync(conflist, 'utf8')) as { plugins: Record<string, any>[] };
  const b = c.plugins.find((p) => p['type'] === 'bridge')!;
  c.plugins = [
    {
      type: 'tsnetlink',
      bridge: b['bridge'],
      isGateway: b['isGateway'],
      ipMasq: b['ipMasq'],
      hairpinMode: b['hairpinMode'],
      ipam: { type: 'tsnetlink', ranges: b['ipam'].ranges, routes: b['ipam'].routes },
      capabilities: { portMappings: true, ips: true },
    },
  ];
  writeFileSync(conflist, JSON.stringify(c, null, 2));
}

/** A containerd daemon of the test's own, with /opt/cni/bin and /etc/cni/net.d made private. */
export class Containerd {
  readonly dir: string;
  readonly rootfs: string;
  private proc: ChildProcess | undefined;
  readonly sock = '/run/containerd-e2e/containerd.sock';
  /** One line per plugin call: `COMMAND CONTAINERID IFNAME netns=PATH`. */
  readonly log: string;

  constructor(page: string) {
    this.dir = mkdtempSync('/run/containerd-e2e-data-');
    this.rootfs = join(this.dir, 'rootfs');
    busyboxRootfs(this.rootfs, page);
    // ctr looks nowhere else; the host's directories are hidden, not changed.
    privateTmpfs('/opt');
    mkdirSync('/opt/cni/bin', { recursive: true });
    if (!existsSync('/etc/cni/net.d')) throw new Error('/etc/cni/net.d is missing: cannot mount a private one over it without changing /etc');
    privateTmpfs('/etc/cni/net.d');
    // The plugin behind a wrapper that logs each call, so the test sees which commands ctr sent.
    this.log = join(this.dir, 'calls.log');
    writeFileSync('/opt/cni/bin/tsnetlink', `#!/bin/sh\necho "$CNI_COMMAND $CNI_CONTAINERID $CNI_IFNAME netns=$CNI_NETNS" >> ${this.log}\nexec ${PLUGIN}\n`, { mode: 0o755 });
    symlinkSync(join(STOCK, 'loopback'), '/opt/cni/bin/loopback');
  }

  /** Starts containerd and waits for its socket. */
  /** Removes the cgroups runc made for this daemon's containers, once it is gone. */
  private dropCgroups: () => void = () => undefined;

  async start(): Promise<void> {
    this.dropCgroups = runtimeCgroups('default');
    this.proc = spawn('containerd', ['--root', join(this.dir, 'root'), '--state', '/run/containerd-e2e/state', '--address', this.sock], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    this.proc.stderr!.on('data', (d) => (log = (log + d).slice(-4000)));
    const end = Date.now() + 20_000;
    while (!existsSync(this.sock)) {
      if (Date.now() > end || this.proc.exitCode !== null) throw new Error(`containerd did not start: ${log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** `ctr ARGS` against this daemon. */
  ctr(args: string[], opts: { timeout?: number } = {}): string {
    return run('ctr', ['--address', this.sock, ...args], { timeout: opts.timeout ?? 60_000 });
  }

  /** The plugin calls logged so far. */
  calls(): string[] {
    return existsSync(this.log) ? readFileSync(this.log, 'utf8').split('\n').filter(Boolean) : [];
  }

  /** Writes the conflist ctr will use. */
  writeConflist(conflist: unknown): void {
    writeFileSync('/etc/cni/net.d/10-tsnetlink.conflist', JSON.stringify(conflist, null, 2));
  }

  /** Kills every task, removes containers, stops the shims (by the PIDs ctr reports) and the daemon. */
  async stop(): Promise<void> {
    if (this.proc && this.proc.exitCode === null) {
      try {
        for (const line of this.ctr(['task', 'ls', '-q']).split('\n').filter(Boolean)) {
          spawnSync('ctr', ['--address', this.sock, 'task', 'kill', '-s', 'KILL', line]);
          spawnSync('ctr', ['--address', this.sock, 'task', 'rm', '-f', line]);
        }
        for (const c of this.ctr(['containers', 'ls', '-q']).split('\n').filter(Boolean)) spawnSync('ctr', ['--address', this.sock, 'containers', 'rm', c]);
      } catch {
        // the daemon is going anyway
      }
      // The grace timer is cleared once containerd is gone: left running, it held the test
      // process open for its full 5 s after every run.
      let timer: NodeJS.Timeout | undefined;
      const exited = new Promise((r) => this.proc!.once('exit', r));
      this.proc.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 5000)))]);
      clearTimeout(timer);
      if (this.proc.exitCode === null) this.proc.kill('SIGKILL');
    }
    // Shims re-parent themselves; each wrote its PID under the state directory.
    for (const pidfile of findFiles('/run/containerd-e2e/state', 'shim.pid')) {
      const pid = Number(readFileSync(pidfile, 'utf8').trim());
      if (pid > 1) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
    this.dropCgroups();
  }
}
