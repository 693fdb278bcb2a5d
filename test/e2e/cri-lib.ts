/**
 * containerd's CRI plugin driven the way the kubelet drives it, inside the test's sandbox: a
 * containerd of the test's own (root under /var/lib/containerd and state under /run, both private
 * tmpfs in the sandbox), a pause image made here from busybox-static and imported (no registry),
 * the CNI configuration and plugin directories private, the plugin behind a shim that logs each
 * call, and a small CRI client over gRPC (the vendored runtime/v1 api.proto in test/cri/).
 * containerd and every shim and pause process it starts are ended by PID on every path: stop()
 * for the ordinary ones, an exit hook for a crash, and a detached watchdog for a test process
 * that is killed outright (the runner's deadline).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { PLUGIN, STOCK, run, runtimeCgroups } from './cni-lib.js';

/** kubernetes/cri-api's runtime/v1 API, vendored (test/cri/README.md says from where). */
export const CRI_PROTO = fileURLToPath(new URL('../../../test/cri/api.proto', import.meta.url));
/** The name the pause image is imported under and the CRI plugin's sandbox_image. */
export const PAUSE_IMAGE = 'localhost/tsnetlink/pause:e2e';

/** One plugin call as the shim logged it. */
export interface CniCall {
  command: string;
  containerId: string;
  ifname: string;
  netns: string;
  /** $TSNETLINK_FIREWALL as the plugin ran with it ('' when unset). */
  firewall: string;
  /** The configuration on stdin, parsed (undefined when it was not JSON). */
  conf: any;
}

/** A CRI PortMapping (protocol TCP, UDP or SCTP). */
export interface PortMapping {
  protocol: 'TCP' | 'UDP';
  container_port: number;
  host_port: number;
  host_ip?: string;
}

/** What the test asks of one pod. */
export interface PodSpec {
  name: string;
  ports?: PortMapping[];
  annotations?: Record<string, string>;
  /** The runtime handler (its CNI configuration directory); the default one when omitted. */
  handler?: string;
}

/** A running pod as the CRI reports it. */
export interface Pod {
  id: string;
  name: string;
  /** PodSandboxStatus's network.ip. */
  ip: string;
  /** PodSandboxStatus's network.additional_ips. */
  additionalIps: string[];
  /** The pod's network namespace file, from the sandbox's runtime spec (verbose status). */
  netns: string;
}

/** A runtime handler of the test's containerd: its name and the conflist its own CNI directory holds. */
export interface Handler {
  name: string;
  conflist: unknown;
}

/** A machine-readable name for this CPU as OCI images say it. */
function ociArch(): string {
  return ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' } as Record<string, string>)[process.arch] ?? process.arch;
}

/** Writes a blob into an OCI layout's blobs/sha256 and returns its descriptor. */
function blob(layout: string, mediaType: string, data: Buffer): { mediaType: string; digest: string; size: number } {
  const hex = createHash('sha256').update(data).digest('hex');
  writeFileSync(join(layout, 'blobs', 'sha256', hex), data);
  return { mediaType, digest: `sha256:${hex}`, size: data.length };
}

/**
 * An OCI image archive of a pause image made from busybox-static: one uncompressed layer with
 * /bin/busybox, the sh and sleep applets and /pause, a script that sleeps for 68 years (the
 * sandbox container only has to hold the pod's namespaces; the CRI stops it with SIGKILL).
 * Written by hand (index, manifest, config, layer), as no registry is reachable. Returns its path.
 */
export function buildPauseImage(dir: string): string {
  const rootfs = join(dir, 'pause-rootfs');
  const layout = join(dir, 'pause-oci');
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
  copyFileSync('/bin/busybox', join(rootfs, 'bin', 'busybox'));
  for (const applet of ['sh', 'sleep']) symlinkSync('busybox', join(rootfs, 'bin', applet));
  writeFileSync(join(rootfs, 'pause'), '#!/bin/sh\nexec /bin/sleep 2147483647\n');
  chmodSync(join(rootfs, 'pause'), 0o755);
  const layerTar = join(dir, 'pause-layer.tar');
  // Fixed owner, order and times: the same layer (and digest) on every run.
  run('tar', ['--numeric-owner', '--owner=0', '--group=0', '--sort=name', '--mtime=@0', '-C', rootfs, '-cf', layerTar, '.']);
  const layer = blob(layout, 'application/vnd.oci.image.layer.v1.tar', readFileSync(layerTar));
  const config = blob(
    layout,
    'application/vnd.oci.image.config.v1+json',
    Buffer.from(JSON.stringify({ architecture: ociArch(), os: 'linux', config: { Entrypoint: ['/pause'], Env: ['PATH=/bin'] }, rootfs: { type: 'layers', diff_ids: [layer.digest] } })),
  );
  const manifest = blob(layout, 'application/vnd.oci.image.manifest.v1+json', Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config, layers: [layer] })));
  // containerd's importer names the image after io.containerd.image.name.
  writeFileSync(join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ ...manifest, annotations: { 'io.containerd.image.name': PAUSE_IMAGE, 'org.opencontainers.image.ref.name': 'e2e' } }] }));
  writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const archive = join(dir, 'pause-oci.tar');
  run('tar', ['-C', layout, '-cf', archive, 'oci-layout', 'index.json', 'blobs']);
  rmSync(rootfs, { recursive: true, force: true });
  rmSync(layout, { recursive: true, force: true });
  rmSync(layerTar, { force: true });
  return archive;
}

/** The parent PID of a process (field 4 of /proc/PID/stat), or undefined once it is gone. */
function ppidOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces: count from its end.
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

/**
 * The shims serving the containerd listening on `sock` (each names the socket in its -address
 * argument, and the socket's directory is this test's own, of a random name), and their
 * children: the pods' pause processes, which the shim, a child subreaper, is the parent of.
 * Children first, so that none is left without the shim that would reap it.
 */
export function shimProcesses(sock: string): number[] {
  const pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number);
  const shims = pids.filter((pid) => {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      return (argv[0] ?? '').endsWith('containerd-shim-runc-v2') && argv[argv.indexOf('-address') + 1] === sock;
    } catch {
      return false;
    }
  });
  const children = pids.filter((pid) => shims.includes(ppidOf(pid) ?? -1));
  return [...children, ...shims];
}

/** Options of the test's containerd. */
export interface CriOptions {
  /** The handlers, the first one the default; each gets a CNI configuration directory of its own. */
  handlers: Handler[];
  /**
   * $TSNETLINK_FIREWALL for the plugin: written into the shim, so that the backend the plugin
   * uses does not depend on what containerd passes on of its environment.
   */
  firewall: string | undefined;
  /** Variables added to containerd's environment, which it passes on to every plugin it runs. */
  env?: NodeJS.ProcessEnv;
}

/** A containerd with the CRI plugin, and a CRI client for it. */
export class Cri {
  /** Removes the cgroups runc made for the pods, once they are gone. */
  dropCgroups: () => void = () => undefined;
  readonly dir: string;
  /** The CNI plugin directory: the logging shim as `tsnetlink` and the stock loopback; a caller may add plugins. */
  readonly binDir: string;
  readonly sock: string;
  readonly log: string;
  readonly errLog: string;
  private readonly state: string;
  private readonly root: string;
  private proc: ChildProcess | undefined;
  private watchdog: ChildProcess | undefined;
  private daemonLog = '';
  private runtime: any;
  private readonly onExit = (): void => this.killAll();

  private constructor(private readonly opts: CriOptions) {
    // Both under the sandbox's private tmpfs: /run, and /var/lib/containerd for the root.
    this.dir = mkdtempSync('/run/cri-e2e-');
    this.root = mkdtempSync('/var/lib/containerd/cri-e2e-');
    this.state = join(this.dir, 'state');
    this.binDir = join(this.dir, 'cni-bin');
    this.sock = join(this.dir, 'containerd.sock');
    this.log = join(this.dir, 'cni-calls.log');
    this.errLog = join(this.dir, 'cni-stderr.log');
  }

  /** Starts containerd with the CRI plugin, imports the pause image and waits until the CRI says runtime and network are ready. */
  static async start(opts: CriOptions): Promise<Cri> {
    const c = new Cri(opts);
    c.dropCgroups = runtimeCgroups('k8s.io');
    try {
      await c.boot();
    } catch (e) {
      await c.stop().catch(() => undefined);
      throw e;
    }
    return c;
  }

  private async boot(): Promise<void> {
    const binDir = this.binDir;
    mkdirSync(binDir);
    // The plugin behind a shim that logs each call (command, ids, the backend it runs with, and
    // its stdin, which holds the runtimeConfig the CRI passed) and keeps the plugin's stderr.
    // The plugin is exec'd, not piped into: containerd kills the process it started when its
    // context ends (a RunPodSandbox past its deadline), and that must be the plugin itself, as
    // with the real installation, not a shell whose child would go on with the ADD.
    const fw = this.opts.firewall === undefined ? 'unset TSNETLINK_FIREWALL' : `TSNETLINK_FIREWALL='${this.opts.firewall}'; export TSNETLINK_FIREWALL`;
    writeFileSync(
      join(binDir, 'tsnetlink'),
      [
        '#!/bin/sh',
        fw,
        'input=$(cat)',
        `printf '%s\\t%s\\t%s\\t%s\\t%s\\t%s\\n' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_IFNAME" "$CNI_NETNS" "\${TSNETLINK_FIREWALL-}" "$(printf '%s' "$input" | tr -d '\\n\\t')" >> ${this.log}`,
        `tmp=$(mktemp ${this.dir}/stdin.XXXXXX)`,
        `printf '%s' "$input" > "$tmp"`,
        'exec 3< "$tmp"',
        'rm -f "$tmp"',
        `exec ${PLUGIN} <&3 3<&- 2>> ${this.errLog}`,
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    // The CRI runs the loopback plugin for every pod's lo.
    symlinkSync(join(STOCK, 'loopback'), join(binDir, 'loopback'));
    const runtimes: string[] = [];
    for (const h of this.opts.handlers) {
      const confDir = join(this.dir, `cni-conf-${h.name}`);
      mkdirSync(confDir);
      writeFileSync(join(confDir, '10-tsnetlink.conflist'), JSON.stringify(h.conflist, null, 2));
      runtimes.push(
        `[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.${h.name}]`,
        '  runtime_type = "io.containerd.runc.v2"',
        `  cni_conf_dir = "${confDir}"`,
        '  cni_max_conf_num = 1',
        `[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.${h.name}.options]`,
        '  SystemdCgroup = false',
      );
    }
    const defaultConf = join(this.dir, `cni-conf-${this.opts.handlers[0]!.name}`);
    const config = join(this.dir, 'config.toml');
    writeFileSync(
      config,
      [
        'version = 2',
        `root = "${this.root}"`,
        `state = "${this.state}"`,
        // What the sandbox cannot or need not have: the other snapshotters, the opt plugin
        // (it would write /opt/containerd), tracing.
        'disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]',
        '[grpc]',
        `  address = "${this.sock}"`,
        '[plugins."io.containerd.grpc.v1.cri"]',
        `  sandbox_image = "${PAUSE_IMAGE}"`,
        '  stream_server_address = "127.0.0.1"',
        '  disable_apparmor = true',
        // The sandbox container asks for oom_score_adj -998, which needs CAP_SYS_RESOURCE; this
        // machine's root may lack it. Restricted, the CRI asks for no less than containerd's own.
        '  restrict_oom_score_adj = true',
        '[plugins."io.containerd.grpc.v1.cri".containerd]',
        // native: a plain copy of the layer, which needs nothing of the filesystem under it.
        '  snapshotter = "native"',
        `  default_runtime_name = "${this.opts.handlers[0]!.name}"`,
        ...runtimes,
        '[plugins."io.containerd.grpc.v1.cri".cni]',
        `  bin_dir = "${binDir}"`,
        `  conf_dir = "${defaultConf}"`,
        '  max_conf_num = 1',
        '',
      ].join('\n'),
    );
    process.on('exit', this.onExit);
    this.proc = spawn('containerd', ['--config', config], { env: { ...process.env, ...this.opts.env }, stdio: ['ignore', 'ignore', 'pipe'] });
    this.proc.stderr!.setEncoding('utf8').on('data', (d: string) => (this.daemonLog = (this.daemonLog + d).slice(-20_000)));
    this.startWatchdog();
    const end = Date.now() + 20_000;
    while (!existsSync(this.sock)) {
      if (Date.now() > end || this.proc.exitCode !== null) throw new Error(`containerd did not start: ${this.daemonLog.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const archive = buildPauseImage(this.dir);
    run('ctr', ['--address', this.sock, '-n', 'k8s.io', 'images', 'import', '--snapshotter', 'native', archive], { timeout: 60_000 });
    const def = protoLoader.loadSync(CRI_PROTO, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
    const pkg = grpc.loadPackageDefinition(def) as any;
    this.runtime = new pkg.runtime.v1.RuntimeService(`unix://${this.sock}`, grpc.credentials.createInsecure());
    // The CRI reports NetworkReady once it has loaded a CNI configuration.
    for (;;) {
      let conditions: { type: string; status: boolean; message: string }[] = [];
      try {
        conditions = (await this.call<any>('Status', {}, 5000)).status?.conditions ?? [];
      } catch (e) {
        if (Date.now() > end) throw e;
      }
      if (conditions.length > 0 && conditions.every((c) => c.status)) break;
      if (Date.now() > end) throw new Error(`the CRI is not ready: ${JSON.stringify(conditions)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /**
   * A detached sh that outlives a SIGKILLed test process (the runner kills the file's process
   * group at its deadline, and containerd's shims are in groups of their own): once this
   * process is gone it kills containerd (by its PID, if it is still containerd) and, for a few
   * rounds (a shim being started when containerd died appears late), every shim whose command
   * line names this containerd's socket and the shim's children, as shimProcesses() finds them.
   * stop() ends it by its PID.
   */
  private startWatchdog(): void {
    const script = [
      `while kill -0 ${process.pid} 2>/dev/null; do sleep 0.5; done`,
      `[ "$(cat /proc/${this.proc!.pid}/comm 2>/dev/null)" = containerd ] && kill -9 ${this.proc!.pid}`,
      'for round in 1 2 3 4 5 6; do',
      `  for f in $(grep -l -F -a -e '${this.sock}' /proc/[0-9]*/cmdline 2>/dev/null); do`,
      '    s=${f#/proc/}; s=${s%/cmdline}',
      '    [ "$(cat /proc/$s/comm 2>/dev/null)" = containerd-shim ] || continue',
      '    for k in /proc/[0-9]*/stat; do',
      // A command name with a space would shift the fields: such a line is skipped.
      '      read -r _ comm _ pp _ < "$k" 2>/dev/null || continue',
      '      case $comm in "("*")") ;; *) continue ;; esac',
      '      [ "$pp" = "$s" ] && k=${k#/proc/} && kill -9 "${k%/stat}"',
      '    done',
      '    kill -9 "$s"',
      '  done',
      '  sleep 0.5',
      'done',
    ].join('\n');
    this.watchdog = spawn('sh', ['-c', script], { detached: true, stdio: 'ignore' });
    this.watchdog.unref();
  }

  /** One RuntimeService call with a deadline, its response. */
  call<T>(method: string, req: unknown, ms = 60_000): Promise<T> {
    return new Promise((resolve, reject) => {
      this.runtime[method](req, { deadline: new Date(Date.now() + ms) }, (e: Error | null, res: T) => (e ? reject(new Error(`CRI ${method}: ${e.message}`)) : resolve(res)));
    });
  }

  /** RunPodSandbox, then the pod's address(es) and network namespace from PodSandboxStatus. */
  async runPod(spec: PodSpec): Promise<Pod> {
    const config = {
      metadata: { name: spec.name, uid: `uid-${spec.name}`, namespace: 'e2e', attempt: 0 },
      hostname: spec.name,
      port_mappings: spec.ports ?? [],
      annotations: spec.annotations ?? {},
      linux: { security_context: { namespace_options: { network: 'POD', pid: 'POD', ipc: 'POD' } } },
    };
    const { pod_sandbox_id: id } = await this.call<{ pod_sandbox_id: string }>('RunPodSandbox', { config, runtime_handler: spec.handler ?? '' });
    const st = await this.status(id);
    return { id, name: spec.name, ip: st.ip, additionalIps: st.additionalIps, netns: st.netns };
  }

  /** PodSandboxStatus (verbose): the state, addresses and the network namespace path. */
  async status(id: string): Promise<{ state: string; ip: string; additionalIps: string[]; netns: string; raw: any }> {
    const r = await this.call<any>('PodSandboxStatus', { pod_sandbox_id: id, verbose: true });
    const info = r.info?.info ? JSON.parse(r.info.info) : {};
    const ns = (info.runtimeSpec?.linux?.namespaces ?? []).find((n: { type: string }) => n.type === 'network');
    return {
      state: r.status.state,
      ip: r.status.network?.ip ?? '',
      additionalIps: (r.status.network?.additional_ips ?? []).map((a: { ip: string }) => a.ip),
      netns: ns?.path ?? '',
      raw: r,
    };
  }

  /** StopPodSandbox. */
  async stopPod(id: string): Promise<void> {
    await this.call('StopPodSandbox', { pod_sandbox_id: id });
  }

  /** RemovePodSandbox. */
  async removePod(id: string): Promise<void> {
    await this.call('RemovePodSandbox', { pod_sandbox_id: id });
  }

  /** The ids of the pods the CRI knows. */
  async podIds(): Promise<string[]> {
    const r = await this.call<{ items: { id: string }[] }>('ListPodSandbox', {});
    return r.items.map((p) => p.id);
  }

  /**
   * Whether a plugin call is still running in this sandbox: a process of the plugin (its sh
   * entry or the Node module it execs, both under this checkout) in this network namespace,
   * which is where containerd runs it. A logged call may still be at work; this says when it is done.
   */
  pluginsRunning(): boolean {
    const root = dirname(dirname(PLUGIN));
    const ownNet = readlinkSync('/proc/self/ns/net');
    return readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .some((pid) => {
        try {
          const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
          return argv.some((a) => a.startsWith(`${root}/`) && a.includes('tsnetlink-cni')) && readlinkSync(`/proc/${pid}/ns/net`) === ownNet;
        } catch {
          return false; // gone meanwhile
        }
      });
  }

  /** The plugin calls logged so far (the loopback plugin's are not logged). */
  calls(): CniCall[] {
    if (!existsSync(this.log)) return [];
    return readFileSync(this.log, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const [command = '', containerId = '', ifname = '', netns = '', firewall = '', stdin = ''] = l.split('\t');
        let conf: unknown;
        try {
          conf = JSON.parse(stdin);
        } catch {
          conf = undefined;
        }
        return { command, containerId, ifname, netns, firewall, conf };
      });
  }

  /** What the plugin wrote on stderr (TSNETLINK_CNI_DEBUG stacks, warnings). */
  pluginStderr(): string {
    return existsSync(this.errLog) ? readFileSync(this.errLog, 'utf8') : '';
  }

  /** The last lines containerd logged, for a failure's message. */
  daemonTail(n = 30): string {
    return this.daemonLog.split('\n').slice(-n).join('\n');
  }

  /** Kills containerd, then every shim of it and every pause process (synchronous: also the exit hook). */
  private killAll(): void {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
    for (const pid of shimProcesses(this.sock)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  }

  /**
   * Stops and removes every pod the CRI still has (so that the plugin's DEL runs for each), stops
   * containerd, then kills whatever is left by PID and ends the watchdog. Safe to call twice.
   */
  async stop(): Promise<void> {
    if (this.runtime) {
      try {
        for (const id of await this.podIds()) {
          await this.stopPod(id).catch(() => undefined);
          await this.removePod(id).catch(() => undefined);
        }
      } catch {
        // The daemon is going anyway.
      }
      this.runtime.close();
      this.runtime = undefined;
    }
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      // The grace timer is cleared once containerd is gone, so that it does not hold this
      // process open for its full length (containerd exits in a few tens of ms).
      let timer: NodeJS.Timeout | undefined;
      const exited = new Promise((r) => this.proc!.once('exit', r));
      this.proc.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 5000)))]);
      clearTimeout(timer);
    }
    this.killAll();
    this.dropCgroups();
    process.off('exit', this.onExit);
    if (this.watchdog?.pid && this.watchdog.exitCode === null) {
      try {
        process.kill(this.watchdog.pid, 'SIGKILL');
      } catch {
        // It ended by itself.
      }
    }
  }
}
