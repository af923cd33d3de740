#!/usr/bin/env bash
# Resolve benchmark against a throwaway `pcsecretd --dev` (private PostgreSQL, fsync as the
# cluster's default), each figure next to a floor measured in the same run. Builds first.
# Run as root: the load runs as agent uids (PCS_BENCH_UID, default 47001, and the 7 after it).
#
#   bench/run.sh                         the matrix, full length (docs/performance.md)
#   bench/run.sh --quick                 the matrix, short (well under 3 minutes on 2 cores)
#   bench/run.sh [--quick] --json-out FILE   also write the figures as one JSON object
#   bench/run.sh [pcbench options]       one pcbench run, as before the matrix existed
#                                        e.g. bench/run.sh --procs 8 --calls 5000 --refs 4
#
# The matrix: resolves at 1, 8 and 32 clients (1 ref) and 32 clients x 16 refs; 1,000 idle
# connections after Hello (daemon VmRSS over its idle VmRSS); `pcrun -- true` with 5 refs over
# `true` alone. Floors: bench/pcecho (a Unix-socket echo of the same frame sizes) for throughput
# and latency, plus a durable 1-row INSERT by pgbench on the daemon's own cluster for the
# 1-client p50. Every ratio is figure / floor. A figure that cannot be measured is "null".
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${PCS_BUILD_DIR:-$ROOT/build}
AGENT_UID=${PCS_BENCH_UID:-47001}

matrix=1 quick=0 json_out=""
if [[ $# -gt 0 && $1 != --quick && $1 != --json-out ]]; then
	matrix=0
fi
if ((matrix)); then
	while [[ $# -gt 0 ]]; do
		case $1 in
		--quick) quick=1; shift ;;
		--json-out)
			[[ $# -ge 2 ]] || { echo "run.sh: --json-out needs a file" >&2; exit 2; }
			json_out=$2; shift 2 ;;
		*) echo "run.sh: unknown option $1 (pcbench options go alone, without --quick)" >&2; exit 2 ;;
		esac
	done
fi

cmake -S "$ROOT" -B "$BUILD" >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target pcsecretd pcctl pcrun pcbench pcecho >/dev/null

tmp=$(mktemp -d)
pid=""
bg_pids=()
cleanup() {
	local p
	for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${bg_pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if [[ -n $pid ]]; then kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT

PCCTL="$BUILD/client/pcctl"
PCRUN="$BUILD/client/pcrun"
PCBENCH="$BUILD/bench/pcbench"
PCECHO="$BUILD/bench/pcecho"
NKEYS=16
NAGENTS=8 # 1,000 idle connections at 125 each stay under max_conns_per_uid's default (128)

start_daemon() {
	"$BUILD/server/pcsecretd" --dev --log-level warn >"$tmp/out" 2>"$tmp/err" &
	pid=$!
	for _ in $(seq 1 600); do
		grep -q '^export' "$tmp/out" 2>/dev/null && break
		kill -0 "$pid" || { cat "$tmp/err"; exit 1; }
		sleep 0.1
	done
	eval "$(grep '^export' "$tmp/out")"
}

# bench/key-1..16 bound to bench/agent (AGENT_UID); bench/idle-2..8 hold idle connections only.
seed() {
	local k a
	$PCCTL company create bench >/dev/null
	for k in $(seq 1 "$NKEYS"); do
		head -c 48 /dev/urandom | base64 | $PCCTL secret create "bench/key-$k" >/dev/null
	done
	$PCCTL agent create bench/agent --uid "$AGENT_UID" >/dev/null
	for k in $(seq 1 "$NKEYS"); do
		$PCCTL agent set-env bench/agent "KEY_$k" "pcs:bench/key-$k" >/dev/null
	done
	for a in $(seq 2 "$NAGENTS"); do
		$PCCTL agent create "bench/idle-$a" --uid $((AGENT_UID + a - 1)) >/dev/null
	done
}

refs() {
	local k
	for k in $(seq 1 "$1"); do printf 'pcs:bench/key-%s\n' $(((k - 1) % NKEYS + 1)); done
}

if ((!matrix)); then
	start_daemon
	seed
	mapfile -t r4 < <(refs 4)
	"$PCBENCH" --uid "$AGENT_UID" "$@" "${r4[@]}"
	echo "daemon $(grep VmHWM "/proc/$pid/status" | tr -s ' ')"
	exit 0
fi

# --- helpers -------------------------------------------------------------------------------

declare -A F # figure name -> number, or null
# field LINE NAME: the value of NAME=VALUE in a pcbench/pcecho result line.
field() {
	awk -v k="$2" '{ for (i = 1; i <= NF; i++) { n = index($i, "="); if (substr($i, 1, n - 1) == k) print substr($i, n + 1) } }' <<<"$1"
}
is_num() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
# calc EXPR over figures that may be null: prints null when any argument is null (or / 0).
calc() {
	local expr=$1 a
	shift
	for a in "$@"; do is_num "$a" || { echo null; return; }; done
	awk -v e="$expr" -v a="${1:-0}" -v b="${2:-0}" -v c="${3:-0}" 'BEGIN {
		if (e == "a/b")   { if (b == 0) print "null"; else printf "%.3f\n", a / b; }
		if (e == "a+b")   printf "%.0f\n", a + b;
		if (e == "a*b")   printf "%.0f\n", a * b;
		if (e == "a-b")   printf "%.2f\n", a - b;
		if (e == "(a-b)/c") { if (c == 0) print "null"; else printf "%.1f\n", (a - b) / c; }
	}'
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"; }
as_agent() {
	if [[ $(id -u) == 0 ]]; then
		setpriv --reuid "$AGENT_UID" --regid "$AGENT_UID" --clear-groups -- "$@"
	else
		"$@"
	fi
}

if ((quick)); then
	E1=5000 E32=500 R1=2000 R8=500 R32=200 R16=100 PGT=1000 RUNS=30 WARM=200
else
	E1=20000 E32=2000 R1=10000 R8=2000 R32=1000 R16=400 PGT=5000 RUNS=100 WARM=1000
fi

# --- echo floor ----------------------------------------------------------------------------
# Frame bodies of a 1-ref Resolve (25 bytes out, 128 back) and a 16-ref one (273, 1996), as
# strace shows pcbench's against this run's seed data (docs/performance.md).
echo "echo floor..." >&2
"$PCECHO" server "$tmp/echo.sock" &
echo_pid=$!
bg_pids+=("$echo_pid")
for _ in $(seq 1 100); do [[ -S $tmp/echo.sock ]] && break; sleep 0.05; done
echo_run() { "$PCECHO" client "$tmp/echo.sock" "$@"; }
e1=$(echo_run --clients 1 --calls "$E1")
e8=$(echo_run --clients 8 --calls "$E32")
e32=$(echo_run --clients 32 --calls "$E32")
e32x16=$(echo_run --clients 32 --calls "$E32" --req-bytes 273 --reply-bytes 1996)
kill "$echo_pid"
wait "$echo_pid" || true
F[echo_c1_p50_us]=$(field "$e1" p50_us)
F[echo_c1_p99_us]=$(field "$e1" p99_us)
F[echo_c1_per_s]=$(field "$e1" calls_per_sec)
F[echo_c8_p50_us]=$(field "$e8" p50_us)
F[echo_c8_p99_us]=$(field "$e8" p99_us)
F[echo_c8_per_s]=$(field "$e8" calls_per_sec)
F[echo_c32_p50_us]=$(field "$e32" p50_us)
F[echo_c32_p99_us]=$(field "$e32" p99_us)
F[echo_c32_per_s]=$(field "$e32" calls_per_sec)
F[echo_c32x16_per_s]=$(field "$e32x16" calls_per_sec)

# --- the daemon ----------------------------------------------------------------------------
echo "daemon and seed data..." >&2
start_daemon
seed

# --- 1,000 idle connections ----------------------------------------------------------------
# Before any load, so the baseline is not the allocator's high-water mark from the resolves.
echo "1,000 idle connections..." >&2
F[idle_rss_kib]=$(rss_kib)
holders=()
for a in $(seq 1 "$NAGENTS"); do
	"$PCBENCH" --uid $((AGENT_UID + a - 1)) --procs 1 --conns 125 --hold 120 pcs:bench/key-1 \
		>"$tmp/hold.$a" &
	holders+=($!)
	bg_pids+=($!)
done
held=0
for _ in $(seq 1 600); do
	held=$(cat "$tmp"/hold.* 2>/dev/null | grep -c '^held=' || true)
	((held == NAGENTS)) && break
	sleep 0.1
done
if ((held == NAGENTS)); then
	sleep 0.5 # Hello's replies are in; let the daemon finish what it does after them
	F[idle_1000_rss_kib]=$(rss_kib)
else
	echo "run.sh: only $held of $NAGENTS holders opened their connections" >&2
	F[idle_1000_rss_kib]=null
fi
for h in "${holders[@]}"; do kill "$h" 2>/dev/null || true; wait "$h" 2>/dev/null || true; done
F[idle_1000_added_kib]=$(calc a-b "${F[idle_1000_rss_kib]}" "${F[idle_rss_kib]}")

# --- PostgreSQL floor ----------------------------------------------------------------------
# A durable 1-row INSERT at 1 client on the daemon's own cluster (same fsync, same disk): the
# least a Resolve's audit row can cost before its reply goes out.
echo "PostgreSQL floor..." >&2
F[pg_insert_c1_p50_us]=null
pgbench=""
for p in /usr/lib/postgresql/*/bin/pgbench; do [[ -x $p ]] && pgbench=$p; done
[[ -n $pgbench ]] || pgbench=$(command -v pgbench || true)
if [[ -z $pgbench ]]; then
	echo "run.sh: pgbench is not installed (Debian: postgresql-contrib); no PostgreSQL floor" >&2
else
	psql=$(dirname "$pgbench")/psql
	[[ -x $psql ]] || psql=$(command -v psql || true)
	pgsock=$(dirname "$PCSECRET_SOCKET")/pg
	pgport=$(find "$pgsock" -maxdepth 1 -name '.s.PGSQL.*' -printf '%f\n' | head -n 1)
	pgport=${pgport##*.}
	as_pg=()
	mkdir "$tmp/pgb"
	if [[ $(id -u) == 0 ]]; then
		as_pg=(runuser -u postgres --)
		chown postgres "$tmp/pgb"
		chmod 755 "$tmp"
	fi
	pg=(-h "$pgsock" -p "$pgport" -U postgres)
	printf 'INSERT INTO floor (v) VALUES (md5(random()::text));\n' >"$tmp/pgb/insert.sql"
	if "${as_pg[@]}" "$psql" "${pg[@]}" -d postgres -qAt -c 'CREATE DATABASE pcs_bench_floor' &&
		"${as_pg[@]}" "$psql" "${pg[@]}" -d pcs_bench_floor -qAt \
			-c 'CREATE TABLE floor (id bigserial PRIMARY KEY, at timestamptz DEFAULT now(), v text)' &&
		(cd "$tmp/pgb" && "${as_pg[@]}" "$pgbench" "${pg[@]}" -n -c 1 -t "$PGT" \
			-f "$tmp/pgb/insert.sql" -l --log-prefix="$tmp/pgb/log" pcs_bench_floor \
			>"$tmp/pgb/out" 2>&1); then
		# Per-transaction log: the third column is the latency in microseconds.
		F[pg_insert_c1_p50_us]=$(cat "$tmp"/pgb/log* | awk '{ print $3 }' | sort -n |
			awk '{ v[NR] = $1 } END { if (NR) print v[int(NR / 2) + 1]; else print "null" }')
	else
		echo "run.sh: pgbench failed; no PostgreSQL floor" >&2
		cat "$tmp/pgb/out" >&2 2>/dev/null || true
	fi
	"${as_pg[@]}" "$psql" "${pg[@]}" -d postgres -qAt -c 'DROP DATABASE IF EXISTS pcs_bench_floor' \
		>/dev/null 2>&1 || true
fi

# --- resolves ------------------------------------------------------------------------------
echo "resolves..." >&2
mapfile -t r1 < <(refs 1)
mapfile -t r16 < <(refs 16)
bench() { "$PCBENCH" --uid "$AGENT_UID" "$@"; }
bench --procs 1 --calls "$WARM" "${r1[@]}" >/dev/null # the pool's connections and plans
declare -A L
L[c1]=$(bench --procs 1 --calls "$R1" "${r1[@]}")
L[c8]=$(bench --procs 8 --calls "$R8" "${r1[@]}")
L[c32]=$(bench --procs 32 --calls "$R32" "${r1[@]}")
c32x16=$(bench --procs 32 --calls "$R16" --refs 16 "${r16[@]}")
for c in c1 c8 c32; do
	line=${L[$c]}
	F[resolve_${c}_p50_us]=$(field "$line" p50_us)
	F[resolve_${c}_p99_us]=$(field "$line" p99_us)
	F[resolve_${c}_calls_per_s]=$(field "$line" calls_per_sec)
done
F[resolve_c32x16_calls_per_s]=$(field "$c32x16" calls_per_sec)
F[resolve_c32x16_p99_us]=$(field "$c32x16" p99_us)
F[refs_c32x16_per_s]=$(calc a*b "${F[resolve_c32x16_calls_per_s]}" 16)

# --- pcrun -----------------------------------------------------------------------------------
echo "pcrun..." >&2
pcrun_env=()
for k in 1 2 3 4 5; do pcrun_env+=("KEY_$k=pcs:bench/key-$k"); done
F[pcrun_ms]=null F[true_ms]=null
if command -v hyperfine >/dev/null && command -v jq >/dev/null; then
	# Both commands through the same setpriv, so the difference is pcrun's alone.
	prefix=""
	[[ $(id -u) != 0 ]] || prefix="setpriv --reuid $AGENT_UID --regid $AGENT_UID --clear-groups -- "
	env "${pcrun_env[@]}" hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$tmp/hf.json" \
		"$prefix$PCRUN -- true" "${prefix}true" >/dev/null
	F[pcrun_ms]=$(jq '.results[0].mean * 1000' "$tmp/hf.json")
	F[true_ms]=$(jq '.results[1].mean * 1000' "$tmp/hf.json")
else
	true_bin=$(command -v true)
	# mean_ms CMD...: mean wall time of RUNS runs as the agent, after 3 unmeasured ones.
	mean_ms() {
		local i t0 t1
		for i in 1 2 3; do as_agent env "${pcrun_env[@]}" "$@" >/dev/null || return 1; done
		t0=$(date +%s%N)
		for ((i = 0; i < RUNS; i++)); do
			as_agent env "${pcrun_env[@]}" "$@" >/dev/null || return 1
		done
		t1=$(date +%s%N)
		awk -v d=$((t1 - t0)) -v n="$RUNS" 'BEGIN { printf "%.2f\n", d / n / 1e6 }'
	}
	if ! F[pcrun_ms]=$(mean_ms "$PCRUN" -- "$true_bin") ||
		! F[true_ms]=$(mean_ms "$true_bin"); then
		echo "run.sh: pcrun -- true failed; no pcrun figure" >&2
		F[pcrun_ms]=null F[true_ms]=null
	fi
fi
F[pcrun_added_ms]=$(calc a-b "${F[pcrun_ms]}" "${F[true_ms]}")
F[pcrun_ms]=$(calc a-b "${F[pcrun_ms]}" 0)
F[true_ms]=$(calc a-b "${F[true_ms]}" 0)

# --- report --------------------------------------------------------------------------------
F[resolve_c1_floor_us]=$(calc a+b "${F[echo_c1_p50_us]}" "${F[pg_insert_c1_p50_us]}")
F[daemon_hwm_kib]=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
for k in "${!F[@]}"; do
	[[ -n ${F[$k]} ]] || F[$k]=null
	is_num "${F[$k]}" || F[$k]=null
done

row() { # row LABEL FIGURE FLOOR_LABEL FLOOR
	local r
	r=$(calc a/b "$2" "$4")
	printf '%-34s %10s   %-34s %10s   %s\n' "$1" "$2" "$3" "$4" "$([[ $r == null ]] && echo - || echo "${r}x")"
}
printf '%-34s %10s   %-34s %10s   %s\n' figure value floor value "ratio (figure/floor)"
row "resolve c1 calls/s" "${F[resolve_c1_calls_per_s]}" "echo c1 calls/s" "${F[echo_c1_per_s]}"
row "resolve c1 p50 us" "${F[resolve_c1_p50_us]}" "echo c1 p50 + pg insert p50 us" "${F[resolve_c1_floor_us]}"
row "resolve c1 p50 us" "${F[resolve_c1_p50_us]}" "echo c1 p50 us" "${F[echo_c1_p50_us]}"
row "resolve c1 p99 us" "${F[resolve_c1_p99_us]}" "echo c1 p99 us" "${F[echo_c1_p99_us]}"
row "resolve c8 calls/s" "${F[resolve_c8_calls_per_s]}" "echo c8 calls/s" "${F[echo_c8_per_s]}"
row "resolve c8 p50 us" "${F[resolve_c8_p50_us]}" "echo c8 p50 us" "${F[echo_c8_p50_us]}"
row "resolve c8 p99 us" "${F[resolve_c8_p99_us]}" "echo c8 p99 us" "${F[echo_c8_p99_us]}"
row "resolve c32 calls/s" "${F[resolve_c32_calls_per_s]}" "echo c32 calls/s" "${F[echo_c32_per_s]}"
row "resolve c32 p50 us" "${F[resolve_c32_p50_us]}" "echo c32 p50 us" "${F[echo_c32_p50_us]}"
row "resolve c32 p99 us" "${F[resolve_c32_p99_us]}" "echo c32 p99 us" "${F[echo_c32_p99_us]}"
row "resolve c32x16 calls/s" "${F[resolve_c32x16_calls_per_s]}" "echo c32, 16-ref frames calls/s" "${F[echo_c32x16_per_s]}"
row "resolve c32x16 refs/s" "${F[refs_c32x16_per_s]}" "" ""
row "pg insert c1 p50 us" "${F[pg_insert_c1_p50_us]}" "" ""
row "daemon RSS, 1,000 idle conns KiB" "${F[idle_1000_rss_kib]}" "daemon RSS idle KiB" "${F[idle_rss_kib]}"
row "  added per connection KiB" "$(calc "(a-b)/c" "${F[idle_1000_rss_kib]}" "${F[idle_rss_kib]}" 1000)" "" ""
row "pcrun -- true, 5 refs ms" "${F[pcrun_ms]}" "true alone ms" "${F[true_ms]}"
row "  pcrun added ms" "${F[pcrun_added_ms]}" "" ""
echo "daemon VmHWM ${F[daemon_hwm_kib]} kB"

if [[ -n $json_out ]]; then
	keys=(resolve_c1_p50_us resolve_c1_p99_us resolve_c1_calls_per_s resolve_c8_calls_per_s
		resolve_c8_p50_us resolve_c8_p99_us resolve_c32_calls_per_s resolve_c32_p50_us
		resolve_c32_p99_us resolve_c32x16_calls_per_s resolve_c32x16_p99_us refs_c32x16_per_s
		echo_c1_p50_us echo_c1_p99_us echo_c1_per_s echo_c8_per_s echo_c32_p50_us
		echo_c32_p99_us echo_c32_per_s echo_c32x16_per_s pg_insert_c1_p50_us
		resolve_c1_floor_us idle_rss_kib idle_1000_rss_kib idle_1000_added_kib pcrun_ms true_ms
		pcrun_added_ms daemon_hwm_kib)
	if command -v jq >/dev/null; then
		args=()
		for k in "${keys[@]}"; do args+=(--argjson "$k" "${F[$k]}"); done
		jq -n "${args[@]}" '$ARGS.named' >"$json_out"
	else
		# Every value passed is_num or is the word null above, so nothing here needs escaping.
		{
			printf '{'
			sep=""
			for k in "${keys[@]}"; do printf '%s\n  "%s": %s' "$sep" "$k" "${F[$k]}"; sep=","; done
			printf '\n}\n'
		} >"$json_out"
	fi
	echo "figures written to $json_out" >&2
fi
