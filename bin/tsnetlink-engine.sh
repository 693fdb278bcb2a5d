# The sh clients of the engine (socat or curl over its unix socket), sourced by the CLI's launcher
# (bin/tsnetlink) and the CNI plugin's shim (bin/tsnetlink-cni) once they chose one: `via` names
# it, `state` the state directory. The caller adds its fields with `field NAME VALUE`, then calls
# `engine_call cli|cni`: an answer the engine completed is written out here and ends the script
# with its exit code; otherwise engine_call returns, with `taken` set when the engine took the
# call and its answer stopped short (it died during the call: the caller reports that, in the
# words of `broken`, and must not run the call again), empty when the engine ran nothing (the
# caller runs the call itself).
nl='
'
cr=$(printf '\r')
# The request (src/engine/protocol.ts): one field per value, "NAME LENGTH\nVALUE\n", LENGTH in
# bytes (what dash's ${#value} counts).
body=
field() { body="$body$1 ${#2}$nl$2$nl"; }

engine_call() {
  # The here-document adds the last newline back.
  body=${body%"$nl"}
  if [ "$via" = curl ]; then
    resp=$(curl -s -i --http1.0 --max-time 3600 --unix-socket "$state/engine.sock" -H 'Content-Type:' --data-binary @- "http://tsnetlink/v1/$1" 2> /dev/null << EOF
$body
EOF
      echo .
    )
  else
    # socat ends when the engine closes the connection; -t lets it wait for the answer after stdin ends.
    resp=$(socat -t 3600 - "UNIX-CONNECT:$state/engine.sock" 2> /dev/null << EOF
POST /v1/$1 HTTP/1.0$cr
Content-Length: $((${#body} + 1))$cr
$cr
$body
EOF
      echo .
    )
  fi
  # The dot kept the answer's last newlines. A last line without its newline was cut short:
  # dropped, as the Node client drops it.
  resp=${resp%.}
  resp=${resp%"${resp##*"$nl"}"}
  # Taken only with a 200 and the engine's content type; anything else ran nothing.
  part=status
  ok=
  epid=
  while IFS= read -r l; do
    case $part in
      status)
        case $l in 'HTTP/1.'[01]' 200 '*) part=head ;; *) break ;; esac
        ;;
      head)
        case $l in
          "$cr") [ -n "$ok" ] && part=body || break ;;
          [Cc]ontent-[Tt]ype:' application/x-tsnetlink-output'"$cr") ok=1 ;;
          [Xx]-[Tt]snetlink-[Ee]ngine:' '*"$cr")
            epid=${l#*: }
            epid=${epid%"$cr"}
            ;;
        esac
        ;;
      body)
        case $l in
          o*) printf '%s\n' "${l#o}" ;;
          O*) printf '%s' "${l#O}" ;;
          e*) printf '%s\n' "${l#e}" >&2 ;;
          E*) printf '%s' "${l#E}" >&2 ;;
          x*) exit "${l#x}" ;;
        esac
        ;;
    esac
  done << EOF
$resp
EOF
  taken=
  [ "$part" = body ] || return 0
  taken=1
  # The same words as the Node client's (src/engine/client.ts).
  broken="the engine${epid:+ (pid $epid)} took the call and its answer never came whole (the answer ended before its exit code): it may have done part of it"
}
