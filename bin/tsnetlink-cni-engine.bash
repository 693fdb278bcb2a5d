# tsnetlink-cni's bash client of the engine, run by the shim (bin/tsnetlink-cni) as
# `bash THIS STATE_DIR ENTRY` with the CNI call's environment and stdin. bash alone, over the
# loopback port the engine names in STATE_DIR/engine.tcp (root only): no process is started
# for the call, which makes it the cheapest client (see docs/engine.md). The port is one only
# root may listen on; the engine proves itself with a token from the same file, and this client
# with the other. A call the engine does not take runs in the plugin proper (ENTRY, under Node).
LC_ALL=C # ${#var} counts bytes, as the protocol's lengths do
state=$1
entry=$2
node=${TSNETLINK_NODE:-node}
export TSNETLINK_ENGINE=off # the plugin proper need not ask the engine again

read -r port ctok stok epid _ < "$state/engine.tcp" 2> /dev/null || exec "$node" "$entry"
# The engine acts in its own network and mount namespaces: only calls made from those are its
# to take (a dead engine's pid fails the test too).
[[ -n $epid && /proc/self/ns/net -ef /proc/$epid/ns/net && /proc/self/ns/mnt -ef /proc/$epid/ns/mnt ]] || exec "$node" "$entry"
# Nor from a root without CAP_NET_ADMIN and CAP_SYS_ADMIN, for whom the call would fail here.
caps=0
while read -r k v; do [[ $k == CapEff: ]] && caps=$((16#$v)) && break; done < /proc/self/status
(((caps >> 12) & 1 && (caps >> 21) & 1)) || exec "$node" "$entry"

IFS= read -r -d '' input
# The request (src/engine/protocol.ts): one field per variable, "NAME LENGTH\nVALUE\n".
body=
field() { body+="$1 ${#2}"$'\n'"$2"$'\n'; }
field CNI_COMMAND "${CNI_COMMAND-}"
field CNI_CONTAINERID "${CNI_CONTAINERID-}"
field CNI_NETNS "${CNI_NETNS-}"
field CNI_IFNAME "${CNI_IFNAME-}"
field CNI_ARGS "${CNI_ARGS-}"
field CNI_PATH "${CNI_PATH-}"
field statedir "$state"
field TSNETLINK_FIREWALL "${TSNETLINK_FIREWALL-}"
field TSNETLINK_LOCK_TIMEOUT_MS "${TSNETLINK_LOCK_TIMEOUT_MS-}"
field TSNETLINK_IPTABLES_RESTORE "${TSNETLINK_IPTABLES_RESTORE-}"
field TSNETLINK_CNI_DEBUG "${TSNETLINK_CNI_DEBUG-}"
field stdin "$input"

here() { exec "$node" "$entry" < <(printf '%s' "$input"); }
# A write to an engine that died is an error to handle (run the call here), not a signal that
# ends this client without a word.
trap '' PIPE
{ exec 3<> "/dev/tcp/127.0.0.1/$port"; } 2> /dev/null || here
printf 'POST /v1/cni HTTP/1.0\r\nContent-Length: %d\r\nX-Tsnetlink-Token: %s\r\n\r\n%s' "${#body}" "$ctok" "$body" >&3 2> /dev/null || here
# Taken only with a 200, the engine's content type and its proof; anything else ran nothing.
IFS= read -r -t 3600 l <&3 || here
[[ $l == 'HTTP/1.'[01]' 200 '* ]] || here
ok=0
while IFS= read -r -t 3600 l <&3; do
  case $l in
    $'\r') break ;;
    [Cc]ontent-[Tt]ype:' application/x-tsnetlink-output'$'\r') ((ok |= 1)) ;;
    [Xx]-[Tt]snetlink-[Pp]roof:" $stok"$'\r') ((ok |= 2)) ;;
  esac
done
((ok == 3)) || here
while IFS= read -r -t 3600 l <&3; do
  case $l in
    o*) printf '%s\n' "${l#o}" ;;
    O*) printf '%s' "${l#O}" ;;
    e*) printf '%s\n' "${l#e}" >&2 ;;
    E*) printf '%s' "${l#E}" >&2 ;;
    x*) exit "${l#x}" ;;
  esac
done
# The engine took the call and its answer stopped short: it died during the call.
v=1.1.0
[[ $input =~ \"cniVersion\"[[:space:]]*:[[:space:]]*\"(0\.3\.0|0\.3\.1|0\.4\.0|1\.0\.0|1\.1\.0)\" ]] && v=${BASH_REMATCH[1]}
printf '{"cniVersion":"%s","code":11,"msg":"tsnetlink-cni: the engine took the call and its answer never came whole: it may have done part of it","details":"try the call again: the plugin or a restarted engine settles what the interrupted one left"}\n' "$v"
exit 1
