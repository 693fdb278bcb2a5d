/**
 * Running the CNI plugin as runtimes do: the executable (bin/tsnetlink-cni, the sh shim) with the
 * CNI_* environment and the configuration on stdin; and the stock plugins for comparison and
 * chaining. Also what the runtime tests share: a busybox-static rootfs and private mounts.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, copyFileSync, symlinkSync, readdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { FALLBACK_TUNNELS } from '../helpers.js';
import { fileURLToPath } from 'node:url';

/** The plugin executable, as installed for runtimes. */
export const PLUGIN = fileURLToPath(new URL('../../../bin/tsnetlink-cni', import.meta.url));
/** Where Debian's containernetworking-plugins live. */
export const STOCK = '/usr/lib/cni';

/** The outcome of one plugin call: exit status, the parsed stdout (if JSON) and stderr. */
export interface CniOutcome {
  status: number | null;
  json: any;
  out: string;
  err: string;
}

/** Runs a CNI plugin (ours by default) with `command`, configuration `conf` and extra env. */
export function cni(command: string, conf: unknown, env: Record<string, string | undefined> = {}, plugin = PLUGIN): CniOutcome {
  const e: Record<string, string> = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', CNI_COMMAND: command, CNI_PATH: STOCK };
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete e[k];
    else e[k] = v;
  }
  // The backend of this run (scripts/test.mjs sets it for the second pass; unset, the plugin takes the default).
  for (const k of ['TSNETLINK_IPTABLES_RESTORE', 'TSNETLINK_STATE_DIR', 'TSNETLINK_FIREWALL']) if (process.env[k] && !(k in env)) e[k] = process.env[k]!;
  const r = spawnSync(plugin, [], { input: typeof conf === 'string' ? conf : JSON.stringify(conf), env: e, encoding: 'utf8', timeout: 60_000 });
  let json: any;
  try {
    json = r.stdout.trim() === '' ? undefined : JSON.parse(r.stdout);
  } catch {
    json = undefined;
  }
  return { status: r.status, json, out: r.stdout, err: r.stderr };
}

/** The attachment environment of a container on interface `ifname`. */
export function att(containerId: string, netns: string, ifname = 'eth0', args?: string): Record<string, string> {
  return { CNI_CONTAINERID: containerId, CNI_NETNS: netns, CNI_IFNAME: ifname, ...(args ? { CNI_ARGS: args } : {}) };
}

/** Runs a command, throwing with its stderr when it fails; returns stdout. */
export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeout?: number; input?: string } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: opts.timeout ?? 60_000, env: opts.env ?? process.env, ...(opts.input !== undefined ? { input: opts.input } : {}) });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status ?? r.signal}: ${r.stderr.trim()} ${r.stdout.trim()}`.slice(0, 2000));
  return r.stdout;
}

/** Mounts a tmpfs over `dir` (in the sandbox's private mount namespace; the host never sees it). */
export function privateTmpfs(dir: string, opts = ''): void {
  run('mount', ['-t', 'tmpfs', ...(opts ? ['-o', opts] : []), 'tmpfs', dir]);
}

/**
 * A busybox-static rootfs in `dir`: the binary and one relative symlink per applet (the ones
 * `busybox --install -s` writes are absolute, which a container root cannot follow), plus the
 * directories runtimes mount over and a page for httpd.
 */
export function busyboxRootfs(dir: string, page: string): void {
  for (const d of ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'www', 'run']) mkdirSync(join(dir, d), { recursive: true });
  copyFileSync('/bin/busybox', join(dir, 'bin', 'busybox'));
  for (const a of run('/bin/busybox', ['--list']).split('\n')) {
    if (a && a !== 'busybox' && !existsSync(join(dir, 'bin', a))) symlinkSync('busybox', join(dir, 'bin', a));
  }
  spawnSync('sh', ['-c', `printf '%s' "$1" > "$2"`, 'sh', page, join(dir, 'www', 'index.html')]);
}

/** Links of this netns other than lo, by name (/sys/class/net shows the netns that mounted /sys, not ours). */
export function hostLinks(): string[] {
  return (JSON.parse(run('ip', ['-j', 'link', 'show'])) as { ifname: string }[]).map((l) => l.ifname).filter((n) => n !== 'lo' && !FALLBACK_TUNNELS.has(n)).sort();
}

/** iptables-save lines whose tsnetlink comment names `network` (its rules and its endpoints'). */
export function rulesOf(network: string, save = (process.env['TSNETLINK_IPTABLES_RESTORE'] ?? 'iptables-restore').replace(/-restore$/, '-save')): string[] {
  return run(save, []).split('\n').filter((l) => l.includes(`"tsnetlink:${network}"`) || l.includes(`"tsnetlink:${network}/`));
}

/**
 * Everything tagged for `network` on either backend, one string an item: iptables-save and
 * ip6tables-save lines, and each nf_tables rule and map element (as nft -j gives it) whose
 * comment names the network or one of its endpoints.
 */
export function taggedRules(network: string): string[] {
  const tagged = (t: string): boolean => t.includes(`"tsnetlink:${network}"`) || t.includes(`tsnetlink:${network}/`);
  const lines = ['iptables-save', 'ip6tables-save'].flatMap((save) => spawnSync(save, [], { encoding: 'utf8' }).stdout?.split('\n') ?? []).filter(tagged);
  const nft = spawnSync('nft', ['-j', 'list', 'ruleset'], { encoding: 'utf8' });
  const objects: any[] = nft.status === 0 ? JSON.parse(nft.stdout).nftables : [];
  for (const o of objects) {
    if (o.rule) {
      if (tagged(JSON.stringify(o.rule))) lines.push(JSON.stringify(o.rule));
    } else if (o.map) for (const el of o.map.elem ?? []) if (tagged(JSON.stringify(el))) lines.push(JSON.stringify(el));
  }
  return lines;
}

/**
 * runc puts each container in cgroups under /sys/fs/cgroup/CONTROLLER/NAMESPACE/ID, in the host's
 * cgroup v1 hierarchies (a cgroupfs is the same in every mount namespace, so the sandbox does not
 * hide them). Call this before a runtime starts; the function it returns removes, once the
 * runtime is gone, the namespace's directories that did not exist before. rmdir refuses a cgroup
 * that still has processes or children, so nothing in use is ever removed.
 */
export function runtimeCgroups(namespace: string): () => void {
  const root = '/sys/fs/cgroup';
  const dirs = (): string[] => (existsSync(root) ? readdirSync(root).map((c) => join(root, c, namespace)).filter((d) => existsSync(d)) : []);
  const before = new Set(dirs());
  const removeEmpty = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) removeEmpty(join(dir, e.name));
    try {
      rmdirSync(dir);
    } catch {
      // Still in use, or not empty: left alone.
    }
  };
  return () => {
    for (const d of dirs()) {
      if (before.has(d)) continue;
      try {
        removeEmpty(d);
      } catch {
        // gone meanwhile
      }
    }
  };
}
