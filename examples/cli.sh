# examples/cli.sh: the CLI from network create to network rm (as root; it changes the network
# namespace it runs in: try it in a throwaway one with `node scripts/sandbox.mjs bash examples/cli.sh`).
set -e
tsnetlink network create --driver bridge --subnet 192.168.10.1/24 testbridge
tsnetlink network ls
# Everything after the command name is the command's own: its exit code is run's.
tsnetlink run -net testbridge -p 8080:80 ip -br -4 addr show eth0
tsnetlink run -net testbridge sh -c 'ip route show default; exit 3' || echo "run exited with $?"
# A process of your own, connected by PID and disconnected again.
unshare --net sleep 30 &
sleep 0.2
tsnetlink connect -net testbridge -p 8081:80 $!
tsnetlink network inspect testbridge
tsnetlink disconnect -net testbridge $!
kill $!
tsnetlink network check
tsnetlink network rm testbridge
