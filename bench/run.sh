#!/usr/bin/env bash
# Resolve benchmark against a throwaway `pcsecretd --dev` (private PostgreSQL, fsync as the
# cluster's default). Builds first if needed.
#   bench/run.sh [pcbench options]     e.g. bench/run.sh --procs 8 --calls 5000 --refs 4
# Prints one line of results from pcbench (throughput, latency percentiles) and the daemon's RSS.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${PCS_BUILD_DIR:-$ROOT/build}
cmake -S "$ROOT" -B "$BUILD" >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target pcsecretd pcctl pcbench >/dev/null

tmp=$(mktemp -d)
pid=""
cleanup() {
	if [[ -n $pid ]]; then kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT
"$BUILD/server/pcsecretd" --dev --log-level warn >"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 1 600); do
	grep -q '^export' "$tmp/out" 2>/dev/null && break
	kill -0 "$pid" || { cat "$tmp/err"; exit 1; }
	sleep 0.1
done
eval "$(grep '^export' "$tmp/out")"
PCCTL="$BUILD/client/pcctl"
AGENT_UID=${PCS_BENCH_UID:-47001}
$PCCTL company create bench >/dev/null
for k in 1 2 3 4; do
	head -c 48 /dev/urandom | base64 | $PCCTL secret create "bench/key-$k" >/dev/null
done
$PCCTL agent create bench/agent --uid "$AGENT_UID" >/dev/null
for k in 1 2 3 4; do $PCCTL agent set-env bench/agent "KEY_$k" "pcs:bench/key-$k" >/dev/null; done
"$BUILD/bench/pcbench" --uid "$AGENT_UID" "$@" pcs:bench/key-1 pcs:bench/key-2 pcs:bench/key-3 \
	pcs:bench/key-4
echo "daemon $(grep VmHWM /proc/$pid/status | tr -s ' ')"
