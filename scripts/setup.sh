#!/usr/bin/env bash
# Installs what the demo, the tests and the bench need on a fresh Debian machine. Idempotent:
# a machine that already has everything only pays a few `command -v` checks.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=()
command -v ip >/dev/null 2>&1 || pkgs+=(iproute2)                 # test oracle (ip -j)
command -v iptables-restore >/dev/null 2>&1 || pkgs+=(iptables)   # port mappings, MASQUERADE
command -v conntrack >/dev/null 2>&1 || pkgs+=(conntrack)         # e2e oracle for conntrack flushes (conntrack -L)
command -v unshare >/dev/null 2>&1 || pkgs+=(util-linux)          # the sandbox, setpriv for run
command -v ethtool >/dev/null 2>&1 || pkgs+=(ethtool)                 # generic netlink e2e oracle (ethtool -k/-K)
command -v nft >/dev/null 2>&1 || pkgs+=(nftables)                   # nf_tables test oracle (nft -j list ruleset) and fixtures
command -v ipset >/dev/null 2>&1 || pkgs+=(ipset)                       # ipset e2e oracle (ipset list) and fixtures
[ -x /usr/lib/cni/bridge ] || pkgs+=(containernetworking-plugins) # CNI e2e (host-local, tuning, loopback) and the bench's stock chain
command -v podman >/dev/null 2>&1 || pkgs+=(podman)               # cni-podman e2e: Podman's CNI backend drives tsnetlink-cni
command -v crun >/dev/null 2>&1 || pkgs+=(crun)                   # the OCI runtime the Podman e2e names
command -v conmon >/dev/null 2>&1 || pkgs+=(conmon)               # Podman's container monitor
command -v containerd >/dev/null 2>&1 || pkgs+=(containerd)       # cni-containerd e2e: ctr run --cni; cri e2e: the CRI plugin
command -v runc >/dev/null 2>&1 || pkgs+=(runc)                   # the OCI runtime of containerd's shim (cni-containerd, cri e2e)
command -v nsenter >/dev/null 2>&1 || pkgs+=(util-linux)          # cri e2e: the bandwidth test's bulk transfer inside a pod's netns
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || pkgs+=(busybox-static) # a static rootfs for the runtime e2e (no registry)
[ -x /usr/lib/podman/netavark ] || pkgs+=(netavark)               # bench only: the netavark rows (no service: the bench runs the binary)
if [ ${#pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: need root to install: ${pkgs[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${pkgs[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
