# examples/cli.sh: the CLI from network create to network rm (as root; it changes the network
# namespace it runs in: try it in a throwaway one with `node scripts/sandbox.mjs bash examples/cli.sh`).
set -e
cleanup() { ip netns del c1 2> /dev/null || true; tsnetlink network rm --force testbridge > /dev/null 2>&1 || true; }
trap cleanup EXIT   # also when a step fails
tsnetlink network create --driver bridge --subnet 192.168.10.1/24 testbridge
tsnetlink network ls
# Everything after the command name is the command's own, and its exit code is run's.
tsnetlink run -net testbridge -p 8080:80 ip -br -4 addr show eth0
tsnetlink run -net testbridge sh -c 'ip route show default; exit 3' || echo "run exited with $?"
# A namespace of your own, connected by its path (a PID works too: tsnetlink connect ... 1234).
ip netns add c1
tsnetlink connect -net testbridge -p 8081:80 /run/netns/c1
ip -n c1 -br -4 addr show eth0
tsnetlink network inspect testbridge
tsnetlink disconnect -net testbridge /run/netns/c1
ip netns del c1
tsnetlink network check
tsnetlink network rm testbridge
