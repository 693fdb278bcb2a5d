/** The CLI's help texts: one per command, and the overview. Pure data. */

export const NETWORK_OPTIONS = `Network options (-o KEY=VALUE, repeatable; Docker's names work too):
  icc=false                      containers of the network cannot reach each other
                                 (com.docker.network.bridge.enable_icc)
  gateway-mode=nat               the default: outbound NAT; from outside only published ports
  gateway-mode=nat-unprotected   NAT, and hosts that route the subnet via this host reach every port
  gateway-mode=routed            no NAT; hosts that route the subnet via this host reach every port
                                 (com.docker.network.bridge.gateway_mode_ipv4)
  mtu=N                          MTU of the bridge and the veths (com.docker.network.driver.mtu)`;

const COMMON = `  --state-dir DIR   runtime state (default /run/tsnetlink)
  --firewall NAME   nftables (native nf_tables, no process) or iptables (iptables-restore);
                    default $TSNETLINK_FIREWALL, else what the host's networks use, else
                    nftables where the kernel has it, else iptables
  -h, --help        this help`;

/** Usage of each command, by the words that name it. */
export const USAGE: Record<string, string> = {
  'network create': `Usage: tsnetlink network create --driver bridge --subnet CIDR [--subnet CIDR6] [--internal] [-o KEY=VALUE]... NAME

Creates a bridge network: the bridge NAME with the gateway address (192.168.10.1/24 means gateway
192.168.10.1; 192.168.10.0/24 means the first host; fd00:10::/64 means fd00:10::1), isolation and
NAT rules, and IP forwarding. Prints what it changed on the host (forwarding and the FORWARD
policy stay after network rm).

  --driver bridge   the only driver
  --subnet CIDR     a subnet of the network: one IPv4 and/or one IPv6 (dual stack)
  --ipv6            accepted as Docker spells it; the IPv6 --subnet is what counts
  --internal        no outbound traffic, no default route in containers, no published ports
  --json            print the network record as JSON
${COMMON}

${NETWORK_OPTIONS}`,
  'network ls': `Usage: tsnetlink network ls [--json]

Lists the networks.

  --json            as JSON
${COMMON}`,
  'network inspect': `Usage: tsnetlink network inspect NAME

Prints a network and its endpoints as JSON.

${COMMON}`,
  'network rm': `Usage: tsnetlink network rm [--force] NAME...

Removes networks: bridge, rules, state. Refused while containers are attached unless --force,
which disconnects them; --force also removes a network whose record is unreadable.

  -f, --force       disconnect attached containers first
${COMMON}`,
  'network prune': `Usage: tsnetlink network prune [NAME] [--json]

Frees what is dead: endpoints whose container is gone, operations that were killed half-way,
and links, addresses, host ports and rules that no record owns. Prints one line per change.

  --json            print the freed endpoint ids as JSON
${COMMON}`,
  'network repair': `Usage: tsnetlink network repair [--json]

Prune, then re-create what the records call for: bridges (same MAC, gateway address, up,
sysctls), host veths enslaved and up, IP forwarding, every firewall rule. Prints one line per
change, "nothing to repair" when all agrees; exits 1 when something needs a hand. With
--firewall NAME, every network moves to that backend (its rules in the other one are removed).

  --json            print the report as JSON
${COMMON}`,
  'network check': `Usage: tsnetlink network check [--json]

Reports every disagreement between the records, the kernel and the firewall; exits 1 if any.
Changes nothing.

  --json            as JSON
${COMMON}`,
  run: `Usage: tsnetlink run [OPTIONS] -net NAME CMD [ARGS...]

Runs CMD in a new network namespace connected to NAME, passing its exit code through. Everything
from CMD on belongs to CMD (as with docker run); "--" before CMD is accepted too. The namespace
has no name and no bind mount: it lives as long as CMD; if tsnetlink itself is killed, CMD dies
with it and the next prune frees the endpoint. SIGINT and SIGTERM are passed to CMD.

  -net, --network NAME      the network
  -p, --publish [IP:]HOST:CONTAINER[/tcp|udp]
                            publish a port (repeatable)
  --publish-over-listener   publish even a port a host process listens on (refused by default)
  --name ID                 the endpoint id (default: 12 random hex digits)
  --ifname IF               the interface name inside (default eth0)
  -i, --interactive, -t, --tty
                            give CMD the terminal (stdin too)
${COMMON}`,
  connect: `Usage: tsnetlink connect -net NAME [-p [IP:]HOST:CONTAINER[/udp]]... [--ifname IF] [--name ID] [--allow-host-netns] PID|NETNS_PATH

Connects the network namespace of process PID (or the namespace file NETNS_PATH) to NAME and
prints the endpoint as JSON. A second network in the same container gets the next ethN.

  -net, --network NAME      the network
  -p, --publish SPEC        publish a port (repeatable)
  --publish-over-listener   publish even a port a host process listens on (refused by default)
  --ifname IF               the interface name inside (default eth0, then eth1, ...)
  --name ID                 the endpoint id (default: 12 random hex digits)
  --allow-host-netns        accept the host's own namespace (refused by default)
${COMMON}`,
  disconnect: `Usage: tsnetlink disconnect -net NAME PID|NETNS_PATH|ENDPOINT_ID

Disconnects a container: its veth, rules, address and tracked connections go. By PID or
namespace path it is idempotent (a container that is not connected is fine); an endpoint id
that the network does not have is an error.

  -net, --network NAME      the network
${COMMON}`,
};

USAGE['network'] = `Usage: tsnetlink network COMMAND

Commands:
  create    create a bridge network
  ls        list networks
  inspect   show a network and its endpoints
  rm        remove networks
  prune     free what is dead (gone containers, killed operations, orphans)
  repair    prune, then re-create what the records call for
  check     report every disagreement of state, kernel and firewall

Run "tsnetlink network COMMAND --help" for a command's options.`;

/** The overview (`tsnetlink --help`). */
export const HELP = `tsnetlink - bridge networks for containers over raw netlink

Usage:
  tsnetlink network create --driver bridge --subnet CIDR [--subnet CIDR6] [--internal] [-o KEY=VALUE]... NAME
  tsnetlink network ls [--json] | inspect NAME | rm [--force] NAME...
  tsnetlink network prune [NAME] | repair | check
  tsnetlink run [-it] -net NAME [-p [IP:]HOST:CONTAINER[/udp]]... [--name ID] [--ifname IF] CMD [ARGS...]
  tsnetlink connect -net NAME [-p ...]... [--name ID] [--ifname IF] [--allow-host-netns] PID|NETNS_PATH
  tsnetlink disconnect -net NAME PID|NETNS_PATH|ENDPOINT_ID
  tsnetlink --version

Run "tsnetlink COMMAND --help" (or "tsnetlink network COMMAND --help") for a command's options.

Exit codes: 0 ok, 1 operation failed (check: disagreements found), 2 bad usage; run passes the
command's exit code through. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN).`;
