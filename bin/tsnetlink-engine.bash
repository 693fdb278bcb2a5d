# The bash client of the engine, for the CLI's launcher (bin/tsnetlink) and the CNI plugin's shim
# (bin/tsnetlink-cni), run by them as `bash THIS cli STATE_DIR ENTRY ARG...` with the command's
# argv, or `bash THIS cni STATE_DIR ENTRY` with the CNI call's environment and stdin. bash alone,
# over the loopback port the engine names in STATE_DIR/engine.tcp (root only): no process is
# started for the call, which makes it the cheapest client (see docs/engine.md). The port is one
# only root may listen on; the engine proves itself with a token from the same file, and this
# client with the other. A call the engine does not take runs in ENTRY under Node, with the
# same argv, environment and stdin.
mode=$1
state=$2
entry=$3
shift 3
node=${TSNETLINK_NODE:-node}
export TSNETLINK_ENGINE=off # the code run here need not ask the engine again

# Runs the call here: the CNI call's stdin as it was read, the CLI's argv as given. With
# TSNETLINK_ENGINE_DEBUG set, says on stderr why the engine did not run it.
here() {
  [[ -n ${TSNETLINK_ENGINE_DEBUG-} ]] && printf 'tsnetlink: engine client: running the call here: %s\n' "$1" >&2
  if [[ $mode == cni && -n ${input+set} ]]; then exec "$node" "$entry" < <(printf '%s' "$input"); fi
  exec "$node" "$entry" "${args[@]}"
}
args=("$@")
unset input # set only once read (a variable of that name in the environment is not the call's stdin)

read -r port ctok stok epid etid _ < "$state/engine.tcp" 2> /dev/null || here "no $state/engine.tcp"
# The engine acts in its own network and mount namespaces: only calls made from those are its
# to take (a dead engine's pid fails the test too). They are read from the engine's thread
# `etid`, not its JS thread, which is inside a container's netns for a moment during a connect.
et=/proc/$epid/task/${etid:-$epid}/ns
[[ -n $epid && /proc/self/ns/net -ef $et/net && /proc/self/ns/mnt -ef $et/mnt ]] || here "not in the namespaces of engine pid ${epid:-?}"
# Nor from a root without CAP_NET_ADMIN and CAP_SYS_ADMIN, for whom the call would fail here.
caps=0
while read -r k v; do [[ $k == CapEff: ]] && caps=$((16#$v)) && break; done < /proc/self/status
(((caps >> 12) & 1 && (caps >> 21) & 1)) || here "no CAP_NET_ADMIN and CAP_SYS_ADMIN"

# The request (src/engine/protocol.ts): one field per value, "NAME LENGTH\nVALUE\n", LENGTH in
# bytes (what ${#value} counts in the C locale; set here only, so that ENTRY gets the caller's).
body=
field() {
  local LC_ALL=C
  body+="$1 ${#2}"$'\n'"$2"$'\n'
}
bytes() {
  local LC_ALL=C
  n=${#body}
}
if [[ $mode == cli ]]; then
  for a in "${args[@]}"; do field arg "$a"; done
else
  IFS= read -r -d '' input
  field CNI_COMMAND "${CNI_COMMAND-}"
  field CNI_CONTAINERID "${CNI_CONTAINERID-}"
  field CNI_NETNS "${CNI_NETNS-}"
  field CNI_IFNAME "${CNI_IFNAME-}"
  field CNI_ARGS "${CNI_ARGS-}"
  field CNI_PATH "${CNI_PATH-}"
fi
field statedir "$state"
field TSNETLINK_FIREWALL "${TSNETLINK_FIREWALL-}"
field TSNETLINK_LOCK_TIMEOUT_MS "${TSNETLINK_LOCK_TIMEOUT_MS-}"
field TSNETLINK_IPTABLES_RESTORE "${TSNETLINK_IPTABLES_RESTORE-}"
if [[ $mode == cni ]]; then
  field TSNETLINK_CNI_DEBUG "${TSNETLINK_CNI_DEBUG-}"
  field stdin "$input"
fi
bytes

# A write to an engine that died is an error to handle (run the call here), not a signal that
# ends this client without a word.
trap '' PIPE
{ exec 3<> "/dev/tcp/127.0.0.1/$port"; } 2> /dev/null || here "cannot connect to 127.0.0.1:$port"
printf 'POST /v1/%s HTTP/1.0\r\nContent-Length: %d\r\nX-Tsnetlink-Token: %s\r\n\r\n%s' "$mode" "$n" "$ctok" "$body" >&3 2> /dev/null || here "the request could not be written"
# Taken only with a 200, the engine's content type and its proof; anything else ran nothing.
IFS= read -r -t 3600 l <&3 || here "no answer"
[[ $l == 'HTTP/1.'[01]' 200 '* ]] || here "answered ${l%$'\r'}"
ok=0
while IFS= read -r -t 3600 l <&3; do
  case $l in
    $'\r') break ;;
    [Cc]ontent-[Tt]ype:' application/x-tsnetlink-output'$'\r') ((ok |= 1)) ;;
    [Xx]-[Tt]snetlink-[Pp]roof:" $stok"$'\r') ((ok |= 2)) ;;
  esac
done
((ok == 3)) || here "a 200 without the engine's content type and proof"
while IFS= read -r -t 3600 l <&3; do
  case $l in
    o*) printf '%s\n' "${l#o}" ;;
    O*) printf '%s' "${l#O}" ;;
    e*) printf '%s\n' "${l#e}" >&2 ;;
    E*) printf '%s' "${l#E}" >&2 ;;
    x*) exit "${l#x}" ;;
  esac
done
# The engine took the call and its answer stopped short: it died during the call. The same
# words as the Node client's (src/engine/client.ts).
broken='the engine (pid '$epid') took the call and its answer never came whole (the answer ended before its exit code): it may have done part of it'
if [[ $mode == cli ]]; then
  printf 'tsnetlink: %s; `tsnetlink network prune` settles what an interrupted call left\n' "$broken" >&2
  exit 1
fi
v=1.1.0
[[ $input =~ \"cniVersion\"[[:space:]]*:[[:space:]]*\"(0\.3\.0|0\.3\.1|0\.4\.0|1\.0\.0|1\.1\.0)\" ]] && v=${BASH_REMATCH[1]}
printf '{"cniVersion":"%s","code":11,"msg":"tsnetlink-cni: %s","details":"try the call again: the plugin or a restarted engine settles what the interrupted one left"}\n' "$v" "$broken"
exit 1
