# examples/cni.sh: tsnetlink installed as a CNI plugin, its conflist, and one container's ADD and DEL as a runtime makes them.
set -e
# A throwaway directory by default, so trying this never touches the host's CNI setup. For a
# runtime to use the plugin, run it with CNI_BIN_DIR=/opt/cni/bin (where Podman's cni_plugin_dirs,
# containerd and kubelet look for plugins) and CNI_CONF_DIR=/etc/cni/net.d (where they look for
# networks; Podman: network_config_dir).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bin=${CNI_BIN_DIR:-$tmp/bin}
conf=${CNI_CONF_DIR:-$tmp/net.d}
mkdir -p "$bin" "$conf"
ln -sf "$(command -v tsnetlink-cni)" "$bin/tsnetlink"
# One plugin instead of bridge + host-local + portmap + firewall: the bridge, the veth, IPAM, NAT and isolation.
cat > "$conf/10-tsnet.conflist" <<'EOF'
{
  "cniVersion": "1.0.0",
  "name": "tsnet",
  "plugins": [
    {
      "type": "tsnetlink",
      "bridge": "tsnet0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": { "type": "tsnetlink", "ranges": [[{ "subnet": "10.89.7.0/24" }]], "routes": [{ "dst": "0.0.0.0/0" }] },
      "capabilities": { "portMappings": true, "ips": true }
    },
    { "type": "tuning", "sysctl": { "net.ipv4.conf.eth0.arp_notify": "1" } }
  ]
}
EOF
# A runtime gives each plugin its entry of the list, with the list's name and cniVersion, on stdin.
entry() { node -e 'const c = JSON.parse(require("fs").readFileSync(0, "utf8")); console.log(JSON.stringify({ cniVersion: c.cniVersion, name: c.name, ...c.plugins[0], runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }] } }))' < "$conf/10-tsnet.conflist"; }
call() { entry | CNI_COMMAND=$1 CNI_CONTAINERID=example1 CNI_NETNS=/run/netns/example1 CNI_IFNAME=eth0 CNI_PATH="$bin" "$bin/tsnetlink"; }
ip netns add example1
call ADD                                   # the CNI result: interfaces, ips, routes
ip -n example1 -br -4 addr show eth0
tsnetlink network ls                       # the same store: the CNI-made network, seen by the CLI
call DEL                                   # address, host port, rules and veth released
ip netns del example1
tsnetlink network ls                       # the network went with its last attachment
