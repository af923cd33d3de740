#!/usr/bin/env bash
# The benchmark matrix against a throwaway `pcsecretd --dev` (private PostgreSQL, fsync as the
# cluster's default), each figure next to a floor measured in the same run. Builds first.
# Run as root: the load runs as agent uids (PCS_BENCH_UID, default 47001, and the 7 after it).
#
#   bench/run.sh                         the matrix, full length (docs/performance.md)
#   bench/run.sh --quick                 the matrix, short (well under 3 minutes on 2 cores)
#   bench/run.sh [--quick] [--seed N] [--json-out FILE]
#                                        N secrets seeded for the last resolve (default
#                                        1,000,000; 20,000 with --quick); also write the
#                                        figures as one JSON object
#   bench/run.sh [pcbench options]       one pcbench run, as before the matrix existed
#                                        e.g. bench/run.sh --procs 8 --calls 5000 --refs 4
#
# The matrix: resolves at 1, 8 and 32 clients (1 ref) and 32 clients x 16 refs; updates (a new
# version per call) at 1 and 8 clients; the 32-client resolve again with 1,000 and with N
# secrets seeded by `pcctl secret import` (whose rate is a figure too); 1,000 idle connections
# after Hello (daemon VmRSS over its idle VmRSS); `pcrun -- true` with 5 refs over `true`
# alone. For every load phase, the CPU time the daemon, PostgreSQL (all the cluster's
# processes) and the client spent, per call. Floors: bench/pcecho (a Unix-socket echo of the
# same frame sizes) for throughput and latency, plus a durable 1-row INSERT by pgbench on the
# daemon's own cluster for the 1-client p50. Every ratio is figure / floor. A figure that
# cannot be measured, or was not (the 1,000,000-secret resolve in a shorter run), is "null".
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${PCS_BUILD_DIR:-$ROOT/build}
AGENT_UID=${PCS_BENCH_UID:-47001}

matrix=1 quick=0 json_out="" seed_n=""
if [[ $# -gt 0 && $1 != --quick && $1 != --json-out && $1 != --seed ]]; then
	matrix=0
fi
if ((matrix)); then
	while [[ $# -gt 0 ]]; do
		case $1 in
		--quick) quick=1; shift ;;
		--json-out)
			[[ $# -ge 2 ]] || { echo "run.sh: --json-out needs a file" >&2; exit 2; }
			json_out=$2; shift 2 ;;
		--seed)
			[[ $# -ge 2 && $2 =~ ^[0-9]+$ && $2 -ge 1000 ]] ||
				{ echo "run.sh: --seed needs a number of secrets, at least 1000" >&2; exit 2; }
			seed_n=$2; shift 2 ;;
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
NUPD=8    # bench/upd-1..8: one secret per updating process, so no update waits for another's row lock
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

# bench/key-1..16 bound to bench/agent (AGENT_UID); bench/upd-1..8 for the updates;
# bench/idle-2..8 hold idle connections only.
seed() {
	local k a
	$PCCTL company create bench >/dev/null
	for k in $(seq 1 "$NKEYS"); do
		head -c 48 /dev/urandom | base64 | $PCCTL secret create "bench/key-$k" >/dev/null
	done
	for k in $(seq 1 "$NUPD"); do
		printf '{"name":"upd-%s","value":"%s"}\n' "$k" "$(head -c 48 /dev/urandom | base64)"
	done | $PCCTL secret import - --company bench >/dev/null
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
# jfield FILE KEY: a number in pcctl's --json output (flat keys, one per line).
jfield() { sed -n "s/^ *\"$2\": \([0-9.]*\),\{0,1\}\$/\1/p" "$1" | head -n 1; }
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
		if (e == "a*1000/b") { if (b == 0) print "null"; else printf "%.0f\n", a * 1000 / b; }
		if (e == "a*1e6/b/c") { if (b == 0 || c == 0) print "null"; else printf "%.1f\n", a * 1e6 / b / c; }
		if (e == "a/b/1") { if (b == 0) print "null"; else printf "%.1f\n", a / b; }
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

# CPU time, from /proc/PID/stat in clock ticks: utime + stime of every thread of PID, plus
# cutime + cstime (its children that have exited and been waited for) with "children".
HZ=$(getconf CLK_TCK)
ticks() {
	local s f
	s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
	read -r -a f <<<"${s##*) }" # fields from the 3rd on: comm, in parentheses, may hold spaces
	if [[ ${2:-} == children ]]; then
		echo $((f[11] + f[12] + f[13] + f[14]))
	else
		echo $((f[11] + f[12]))
	fi
}
# The cluster's: the postmaster with the backends it has reaped, and every live child of it
# (backends, checkpointer, WAL writer, autovacuum), so a backend that exits mid-phase counts.
pg_ticks() {
	local t c
	t=$(ticks "$pg_pid" children)
	for c in $(pgrep -P "$pg_pid"); do t=$((t + $(ticks "$c"))); done
	echo "$t"
}
# times_us FILE: the CPU time in µs of this shell's waited-for children, from the output of
# `times` in FILE (`times` must run in this shell, not in a $(...) of its own).
times_us() {
	awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%.0f\n", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * 1e6 }' "$1"
}
# phase_begin / phase_end NAME CALLS CLIENT_US: the daemon's, PostgreSQL's and the client's CPU
# over the phase, in ms (daemon_cpu_ms_NAME, ...) and in µs per call (daemon_cpu_us_per_NAME).
phase_begin() {
	d0=$(ticks "$pid")
	p0=$(pg_ticks)
}
phase_end() {
	local n=$1 calls=$2 client_us=$3 d p
	d=$(($(ticks "$pid") - d0))
	p=$(($(pg_ticks) - p0))
	F[daemon_cpu_ms_$n]=$(calc "a*1000/b" "$d" "$HZ")
	F[pg_cpu_ms_$n]=$(calc "a*1000/b" "$p" "$HZ")
	F[client_cpu_ms_$n]=$(calc "a/b/1" "$client_us" 1000)
	F[daemon_cpu_us_per_$n]=$(calc "a*1e6/b/c" "$d" "$HZ" "$calls")
	F[pg_cpu_us_per_$n]=$(calc "a*1e6/b/c" "$p" "$HZ" "$calls")
	F[client_cpu_us_per_$n]=$(calc "a/b/1" "$client_us" "$calls")
}
PHASES=(resolve_c1 resolve_c8 resolve_c32 resolve_c32x16 update_c1 update_c8 import
	resolve_c32_1k resolve_c32_seeded)

if ((quick)); then
	# Each measured phase long enough for /proc's 10 ms ticks: a few hundred ms of daemon CPU.
	E1=5000 E32=500 R1=2000 R8=1000 R32=500 R16=200 U1=1000 U8=400 PGT=1000 RUNS=30 WARM=200
	SEED=${seed_n:-20000}
else
	E1=20000 E32=2000 R1=10000 R8=2000 R32=1000 R16=400 U1=2000 U8=1000 PGT=5000 RUNS=100 WARM=1000
	SEED=${seed_n:-1000000}
fi
SEED1K=1000
IMPORT_PARALLEL=${PCS_BENCH_IMPORT_PARALLEL:-32}

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
# Its cluster (server/app/devmode.c): the socket directory DIR/pg, the data directory DIR/pg/data.
pgsock=$(dirname "$PCSECRET_SOCKET")/pg
pg_pid=$(head -n 1 "$pgsock/data/postmaster.pid")
pgport=$(find "$pgsock" -maxdepth 1 -name '.s.PGSQL.*' -printf '%f\n' | head -n 1)
pgport=${pgport##*.}
pgbin=""
for p in /usr/lib/postgresql/*/bin; do [[ -x $p/psql || -x $p/pgbench ]] && pgbin=$p; done
psql=$pgbin/psql
[[ -x $psql ]] || psql=$(command -v psql || true)
pgbench=$pgbin/pgbench
[[ -x $pgbench ]] || pgbench=$(command -v pgbench || true)
as_pg=()
if [[ $(id -u) == 0 ]]; then
	as_pg=(runuser -u postgres --)
	chmod 755 "$tmp"
fi
pg=(-h "$pgsock" -p "$pgport" -U postgres)
# sql DB STATEMENT: as the cluster's superuser.
sql() { [[ -n $psql ]] && "${as_pg[@]}" "$psql" "${pg[@]}" -d "$1" -qAt -c "$2"; }
# settle: the rows written so far vacuumed and analysed and their WAL checkpointed before a
# measured phase, so that autovacuum and the checkpointer do not do the seeding's work inside
# it, and every resolve phase runs on analysed tables (pcsecret is the --dev database).
settle() {
	sql pcsecret 'VACUUM (ANALYZE)' >/dev/null 2>&1 || echo "run.sh: VACUUM failed" >&2
	sql postgres 'CHECKPOINT' >/dev/null 2>&1 || true
}

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
if [[ -z $pgbench || -z $psql ]]; then
	echo "run.sh: pgbench is not installed (Debian: postgresql-contrib); no PostgreSQL floor" >&2
else
	mkdir "$tmp/pgb"
	[[ $(id -u) != 0 ]] || chown postgres "$tmp/pgb"
	printf 'INSERT INTO floor (v) VALUES (md5(random()::text));\n' >"$tmp/pgb/insert.sql"
	if sql postgres 'CREATE DATABASE pcs_bench_floor' &&
		sql pcs_bench_floor \
			'CREATE TABLE floor (id bigserial PRIMARY KEY, at timestamptz DEFAULT now(), v text)' &&
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
	sql postgres 'DROP DATABASE IF EXISTS pcs_bench_floor' >/dev/null 2>&1 || true
fi

# --- resolves ------------------------------------------------------------------------------
echo "resolves..." >&2
mapfile -t r1 < <(refs 1)
mapfile -t r16 < <(refs 16)
bench() { "$PCBENCH" --uid "$AGENT_UID" "$@"; }
# phase NAME CALLS CMD...: runs the pcbench CMD as one measured phase; its result line in $out.
phase() {
	local n=$1 calls=$2
	shift 2
	phase_begin
	out=$("$@")
	phase_end "$n" "$calls" "$(field "$out" cpu_us)"
}
# figures PREFIX: the rate and latencies of the last phase's line as PREFIX_calls_per_s, ...
figures() {
	F[${1}_calls_per_s]=$(field "$out" calls_per_sec)
	F[${1}_p50_us]=$(field "$out" p50_us)
	F[${1}_p99_us]=$(field "$out" p99_us)
}
settle
bench --procs 1 --calls "$WARM" "${r1[@]}" >/dev/null # the pool's connections and plans
phase resolve_c1 "$R1" bench --procs 1 --calls "$R1" "${r1[@]}"
figures resolve_c1
phase resolve_c8 $((8 * R8)) bench --procs 8 --calls "$R8" "${r1[@]}"
figures resolve_c8
phase resolve_c32 $((32 * R32)) bench --procs 32 --calls "$R32" "${r1[@]}"
figures resolve_c32
phase resolve_c32x16 $((32 * R16)) bench --procs 32 --calls "$R16" --refs 16 "${r16[@]}"
figures resolve_c32x16
F[refs_c32x16_per_s]=$(calc a*b "${F[resolve_c32x16_calls_per_s]}" 16)

# --- updates -------------------------------------------------------------------------------
# UpdateSecret through the SDK as root (the dev daemon's admin): each call a new version of
# the process's own bench/upd-N, its value from pcbench's generated buffer.
echo "updates..." >&2
upd=()
for k in $(seq 1 "$NUPD"); do upd+=("bench/upd-$k"); done
"$PCBENCH" --update --procs 1 --calls 100 "${upd[@]}" >/dev/null # the update's plans
phase update_c1 "$U1" "$PCBENCH" --update --procs 1 --calls "$U1" "${upd[@]}"
figures update_c1
phase update_c8 $((8 * U8)) "$PCBENCH" --update --procs 8 --calls "$U8" "${upd[@]}"
figures update_c8
for c in c1 c8; do F[update_${c}_per_s]=${F[update_${c}_calls_per_s]}; done

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

# --- seeded resolves ------------------------------------------------------------------------
# The 32-client resolve again, the same reference, once 1,000 and then SEED secrets are in the
# table, seeded with `pcctl secret import` (each secret a CreateSecret, encrypted and audited
# like any other); the larger import is a measured phase and its rate a figure.
# gen FROM TO: JSON lines for bench/seed-FROM..TO, with 64-byte values like the keys'.
gen() {
	awk -v a="$1" -v b="$2" 'BEGIN { for (i = a; i <= b; i++) printf "{\"name\":\"seed-%d\",\"value\":\"seed-value-%053d\"}\n", i, i }'
}
# seed_import FILE JSON_OUT: the file into company bench, pcctl's summary in JSON_OUT.
seed_import() {
	"$PCCTL" --json secret import "$1" --company bench --parallel "$IMPORT_PARALLEL" >"$2"
}
# import_phase FILE: import FILE as the measured "import" phase; pcctl's CPU from `times`.
import_phase() {
	local created
	times >"$tmp/times.0"
	phase_begin
	seed_import "$1" "$tmp/import.json"
	times >"$tmp/times.1"
	created=$(jfield "$tmp/import.json" created)
	phase_end import "$created" $(($(times_us "$tmp/times.1") - $(times_us "$tmp/times.0")))
	F[import_per_s]=$(calc a*b "$(jfield "$tmp/import.json" per_second)" 1)
	F[import_secrets]=$created
}
echo "seeding $SEED1K secrets..." >&2
gen 1 "$SEED1K" >"$tmp/seed.jsonl"
if ((SEED == SEED1K)); then import_phase "$tmp/seed.jsonl"; else seed_import "$tmp/seed.jsonl" "$tmp/import.json"; fi
settle
phase resolve_c32_1k $((32 * R32)) bench --procs 32 --calls "$R32" "${r1[@]}"
figures resolve_c32_1k
if ((SEED > SEED1K)); then
	echo "seeding $SEED secrets in all..." >&2
	gen $((SEED1K + 1)) "$SEED" >"$tmp/seed.jsonl"
	import_phase "$tmp/seed.jsonl"
	settle
	phase resolve_c32_seeded $((32 * R32)) bench --procs 32 --calls "$R32" "${r1[@]}"
	figures resolve_c32_seeded
else
	for k in calls_per_s p50_us p99_us; do F[resolve_c32_seeded_$k]=${F[resolve_c32_1k_$k]}; done
	for k in "${!F[@]}"; do
		[[ $k == *_resolve_c32_1k ]] && F[${k%_1k}_seeded]=${F[$k]}
	done
fi
rm -f "$tmp/seed.jsonl"
F[seeded_secrets]=$SEED
F[import_parallel]=$IMPORT_PARALLEL
F[resolve_c32_1m_calls_per_s]=null
((SEED != 1000000)) || F[resolve_c32_1m_calls_per_s]=${F[resolve_c32_seeded_calls_per_s]}

# --- report --------------------------------------------------------------------------------
F[resolve_c1_floor_us]=$(calc a+b "${F[echo_c1_p50_us]}" "${F[pg_insert_c1_p50_us]}")
F[daemon_hwm_kib]=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
F[daemon_cpu_ms_total]=$(calc "a*1000/b" "$(ticks "$pid")" "$HZ")
F[pg_cpu_ms_total]=$(calc "a*1000/b" "$(pg_ticks)" "$HZ")
for k in "${!F[@]}"; do
	[[ -n ${F[$k]} ]] || F[$k]=null
	is_num "${F[$k]}" || F[$k]=null
done

row() { # row LABEL FIGURE FLOOR_LABEL FLOOR
	local r
	r=$(calc a/b "$2" "$4")
	printf '%-36s %10s   %-34s %10s   %s\n' "$1" "$2" "$3" "$4" "$([[ $r == null ]] && echo - || echo "${r}x")"
}
printf '%-36s %10s   %-34s %10s   %s\n' figure value floor value "ratio (figure/floor)"
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
row "update c1 calls/s" "${F[update_c1_per_s]}" "echo c1 calls/s" "${F[echo_c1_per_s]}"
row "update c1 p50 us" "${F[update_c1_p50_us]}" "echo c1 p50 + pg insert p50 us" "${F[resolve_c1_floor_us]}"
row "update c8 calls/s" "${F[update_c8_per_s]}" "echo c8 calls/s" "${F[echo_c8_per_s]}"
row "update c8 p99 us" "${F[update_c8_p99_us]}" "echo c8 p99 us" "${F[echo_c8_p99_us]}"
row "resolve c32, 1,000 seeded calls/s" "${F[resolve_c32_1k_calls_per_s]}" "resolve c32 calls/s" "${F[resolve_c32_calls_per_s]}"
row "resolve c32, $SEED seeded calls/s" "${F[resolve_c32_seeded_calls_per_s]}" "resolve c32 calls/s" "${F[resolve_c32_calls_per_s]}"
row "resolve c32, $SEED seeded p99 us" "${F[resolve_c32_seeded_p99_us]}" "resolve c32 p99 us" "${F[resolve_c32_p99_us]}"
row "import secrets/s (--parallel $IMPORT_PARALLEL)" "${F[import_per_s]}" "" ""
row "pg insert c1 p50 us" "${F[pg_insert_c1_p50_us]}" "" ""
row "daemon RSS, 1,000 idle conns KiB" "${F[idle_1000_rss_kib]}" "daemon RSS idle KiB" "${F[idle_rss_kib]}"
row "  added per connection KiB" "$(calc "(a-b)/c" "${F[idle_1000_rss_kib]}" "${F[idle_rss_kib]}" 1000)" "" ""
row "pcrun -- true, 5 refs ms" "${F[pcrun_ms]}" "true alone ms" "${F[true_ms]}"
row "  pcrun added ms" "${F[pcrun_added_ms]}" "" ""
echo "daemon VmHWM ${F[daemon_hwm_kib]} kB"
echo
printf '%-36s %10s %10s %10s   %s\n' "CPU per call, us" daemon postgres client "(CPU over the phase, ms: daemon/postgres/client)"
for n in "${PHASES[@]}"; do
	label=${n//_/ }
	label=${label/ seeded/, $SEED seeded}
	label=${label/ 1k/, 1,000 seeded}
	[[ $n != import ]] || label="import, per secret (${F[import_secrets]})"
	printf '%-36s %10s %10s %10s   %s/%s/%s\n' "$label" "${F[daemon_cpu_us_per_$n]}" \
		"${F[pg_cpu_us_per_$n]}" "${F[client_cpu_us_per_$n]}" "${F[daemon_cpu_ms_$n]}" \
		"${F[pg_cpu_ms_$n]}" "${F[client_cpu_ms_$n]}"
done
echo "CPU over the whole run, ms: daemon ${F[daemon_cpu_ms_total]}, postgres ${F[pg_cpu_ms_total]}"

if [[ -n $json_out ]]; then
	keys=(resolve_c1_p50_us resolve_c1_p99_us resolve_c1_calls_per_s resolve_c8_calls_per_s
		resolve_c8_p50_us resolve_c8_p99_us resolve_c32_calls_per_s resolve_c32_p50_us
		resolve_c32_p99_us resolve_c32x16_calls_per_s resolve_c32x16_p99_us refs_c32x16_per_s
		update_c1_per_s update_c1_p50_us update_c1_p99_us update_c8_per_s update_c8_p50_us
		update_c8_p99_us
		resolve_c32_1k_calls_per_s resolve_c32_1k_p50_us resolve_c32_1k_p99_us
		resolve_c32_seeded_calls_per_s resolve_c32_seeded_p50_us resolve_c32_seeded_p99_us
		seeded_secrets resolve_c32_1m_calls_per_s import_per_s import_secrets import_parallel
		echo_c1_p50_us echo_c1_p99_us echo_c1_per_s echo_c8_per_s echo_c8_p99_us echo_c32_p50_us
		echo_c32_p99_us echo_c32_per_s echo_c32x16_per_s pg_insert_c1_p50_us
		resolve_c1_floor_us idle_rss_kib idle_1000_rss_kib idle_1000_added_kib pcrun_ms true_ms
		pcrun_added_ms daemon_hwm_kib daemon_cpu_ms_total pg_cpu_ms_total)
	for n in "${PHASES[@]}"; do
		keys+=("daemon_cpu_us_per_$n" "pg_cpu_us_per_$n" "client_cpu_us_per_$n"
			"daemon_cpu_ms_$n" "pg_cpu_ms_$n" "client_cpu_ms_$n")
	done
	if command -v jq >/dev/null; then
		args=()
		for k in "${keys[@]}"; do args+=(--argjson "$k" "${F[$k]:-null}"); done
		jq -n "${args[@]}" '$ARGS.named' >"$json_out"
	else
		# Every value passed is_num or is the word null above, so nothing here needs escaping.
		{
			printf '{'
			sep=""
			for k in "${keys[@]}"; do printf '%s\n  "%s": %s' "$sep" "$k" "${F[$k]:-null}"; sep=","; done
			printf '\n}\n'
		} >"$json_out"
	fi
	echo "figures written to $json_out" >&2
fi
