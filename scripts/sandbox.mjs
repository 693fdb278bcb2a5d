#!/usr/bin/env node
// Runs a command inside a throwaway network + mount namespace, so nothing it does to links,
// addresses, routes, sysctls, iptables, /run (netns, tsnetlink state, locks) or the container
// runtimes' state in /var/lib/cni and /var/lib/containerd reaches the real host.
import { spawnSync } from 'node:child_process';

const argv = process.argv.slice(2);
if (argv.length === 0) {
  console.error('usage: node scripts/sandbox.mjs CMD [ARGS...]');
  process.exit(2);
}
if (process.getuid?.() !== 0) {
  console.error('tsnetlink: this needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to create throwaway namespaces; try: sudo npm run ...');
  process.exit(77);
}
if (process.env.TSNETLINK_IN_SANDBOX === '1') {
  const r = spawnSync(argv[0], argv.slice(1), { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
const inner = [
  'set -e',
  // A private tmpfs over all of /run: named netns, tsnetlink state and the xtables lock stay
  // inside the sandbox, and nothing is created on the host's /run.
  'mount -t tmpfs -o mode=0755 tmpfs /run',
  'mkdir -p /run/netns',
  'mkdir -m 0700 /run/tsnetlink',
  // Podman, ctr (libcni's result cache), host-local IPAM and containerd's opt plugin write under
  // /var/lib/cni and /var/lib/containerd whatever their other paths say: private tmpfs there too.
  // A missing mount point is made on the host (an empty directory, as the packages' first use
  // would make it); nothing is ever written into it from a sandbox.
  'for d in /var/lib/cni /var/lib/containerd; do [ -d "$d" ] || mkdir -m 0700 -p "$d"; mount -t tmpfs -o mode=0700 tmpfs "$d"; done',
  'ip link set lo up',
  'exec "$@"',
].join('\n');
const r = spawnSync('unshare', ['--net', '--mount', '--propagation', 'private', '--', 'bash', '-c', inner, 'sandbox', ...argv], {
  stdio: 'inherit',
  env: { ...process.env, TSNETLINK_IN_SANDBOX: '1' },
});
if (r.error) {
  console.error(`tsnetlink sandbox: ${r.error.message}`);
  process.exit(1);
}
process.exit(r.status ?? (r.signal ? 128 : 1));
