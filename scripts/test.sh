#!/usr/bin/env bash
# Build and test pcsecret. Stages, in the order given (all six by default; stop at the first
# failure); docs/testing.md says what each one guards and what it costs:
#   unit      build/          gcc, RelWithDebInfo; every ctest test, all labels (the suite
#                             starts its own PostgreSQL); `ctest -L unit` alone is the fast part
#   asan      build-asan/     AddressSanitizer + UBSan (-DPCS_SANITIZE=ON); ctest without the
#                             docker label
#   valgrind  build/          the integration tests with pcsecretd under valgrind memcheck
#                             (-DPCS_VALGRIND=ON adds them; ctest -L valgrind)
#   lint      build/          layering, clang-format, cppcheck and clang-tidy over common/ server/ sdk/ client/
#                             (tests/lint/lint.sh, compile_commands.json of the unit build)
#   release   build-release/  gcc, Release (-O3): compiles everything, tests included, so that
#                             warnings only the optimiser finds fail here; runs nothing
#   fuzz      build-fuzz/     clang + libFuzzer (-DPCS_FUZZ=ON); tests/fuzz/run.sh, each target
#                             for PCS_FUZZ_SECONDS
# Each stage ends passed, failed or skipped, and the summary says which: a stage that cannot
# run here (fuzz without clang) or whose every test was skipped (ctest's SKIP_RETURN_CODE: the
# tests that need root, run without it) is "skipped", never "passed". A stage that passed
# with some tests or checks skipped names them.
# Environment:
#   PCS_TEST_STAGES   stages to run (default "unit asan valgrind lint release fuzz"), e.g.
#                     PCS_TEST_STAGES=unit
#   PCS_FUZZ_SECONDS  time per fuzz target handed to tests/fuzz/run.sh (default 30; there are
#                     five targets, so the default spends 2.5 minutes fuzzing)
#   PCS_CTEST_JOBS    ctest parallelism (default 2)
#   PCS_BUILD_PREFIX  build directories are PREFIX, PREFIX-asan, PREFIX-release and
#                     PREFIX-fuzz (default "build"), so that several checkouts' runs can share
#                     a tree
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# The integration tests run the built programs as other Unix users (agents, operators), who
# must be able to reach the build tree. A checkout under a private directory (such as /root)
# is tested from a world-readable copy instead.
traversable() {
	local d=$1
	while [[ $d != / ]]; do
		[[ $(stat -c %A "$d") == ?????????x* || $(stat -c %A "$d") == ?????????t* ]] || return 1
		d=$(dirname "$d")
	done
}
if [[ $(id -u) == 0 && -z ${PCS_TEST_COPY:-} ]] && ! traversable "$ROOT"; then
	copy=$(mktemp -d /tmp/pcsecret-test-XXXXXX)
	chmod 755 "$copy"
	echo "test.sh: $ROOT is not reachable by other users; testing a copy in $copy"
	tar -C "$ROOT" --exclude='./build*' -cf - . | tar -C "$copy" -xf -
	PCS_TEST_COPY=1 bash "$copy/scripts/test.sh" "$@"
	rc=$?
	rm -rf "$copy"
	exit "$rc"
fi

ALL_STAGES="unit asan valgrind lint release fuzz"
STAGES=${PCS_TEST_STAGES:-$ALL_STAGES}
FUZZ_SECONDS=${PCS_FUZZ_SECONDS:-30}
CTEST_JOBS=${PCS_CTEST_JOBS:-2}
B=${PCS_BUILD_PREFIX:-build}
JOBS=$(nproc 2>/dev/null || echo 2)

read -r -a stage_list <<<"$STAGES"
if ((${#stage_list[@]} == 0)); then
	echo "test.sh: PCS_TEST_STAGES is empty (choose from: $ALL_STAGES)" >&2
	exit 2
fi
for s in "${stage_list[@]}"; do
	case $s in
	unit | asan | valgrind | lint | release | fuzz) ;;
	*)
		echo "test.sh: unknown stage '$s' in PCS_TEST_STAGES (choose from: $ALL_STAGES)" >&2
		exit 2
		;;
	esac
done

T0=$SECONDS
current=""
summary=()
skipped_stages=()
# What a stage has to say beside passed/failed (what it skipped, and why), one line each; the
# stage runs in a subshell, so it writes them here and the loop reads them.
NOTES=$(mktemp "${TMPDIR:-/tmp}/pcs-test-notes.XXXXXX")

elapsed() {
	local s=$(($1))
	printf '%dm%02ds' $((s / 60)) $((s % 60))
}

banner() {
	printf '\n==============================================================================\n'
	printf '== pcsecret tests: %s\n' "$*"
	printf '== %s\n' "$(date '+%Y-%m-%d %H:%M:%S')"
	printf '==============================================================================\n'
}

on_exit() {
	local rc=$?
	rm -f "$NOTES"
	if ((rc != 0)); then
		printf '\n'
		for line in "${summary[@]}"; do printf '  %s\n' "$line"; done
		printf 'pcsecret tests: FAILED in stage "%s" (exit %d) after %s\n' \
			"${current:-setup}" "$rc" "$(elapsed $((SECONDS - T0)))" >&2
	fi
}
trap on_exit EXIT

# configure_and_build DIR [cmake args...]
configure_and_build() {
	local dir=$1
	shift
	cmake -S "$ROOT" -B "$dir" "$@"
	cmake --build "$dir" -j"$JOBS"
}

note() {
	printf '%s\n' "$*" >>"$NOTES"
}

# run_ctest DIR [ctest args...]
# ctest, then a note of what was skipped: the tests ctest reports skipped (SKIP_RETURN_CODE 77,
# nothing in them could run) and the cmocka checks skipped inside tests that passed (in
# Testing/Temporary/LastTest.log). Returns 10, "skipped", when every test it selected but the
# fixtures was skipped.
run_ctest() {
	local dir=$1 out rc ran fixtures real skipped partial
	shift
	out=$(mktemp "${TMPDIR:-/tmp}/pcs-ctest.XXXXXX")
	set +e
	ctest --test-dir "$dir" --output-on-failure --no-tests=error -j"$CTEST_JOBS" "$@" 2>&1 |
		tee "$out"
	rc=${PIPESTATUS[0]}
	set -e
	if ((rc != 0)); then
		rm -f "$out"
		return "$rc"
	fi
	# First: the ctest -N below writes a LastTest.log of its own.
	partial=$(awk '/^[0-9]+\/[0-9]+ Test: / { t = $3 }
		/^\[  SKIPPED \] [A-Za-z0-9_]+$/ { print t, $4 }' \
		"$dir/Testing/Temporary/LastTest.log" 2>/dev/null | sort -u |
		awk '{ n[$1]++ } END { for (t in n) printf "%s (%d) ", t, n[t] }' || true)
	# " 9/31 Test #28: test_dos ....   Passed    6.38 sec" or "...***Skipped   0.01 sec"
	ran=$(sed -n 's/^ *[0-9]*\/[0-9]* Test *#[0-9]*: \([^ ]*\) .*/\1/p' "$out" | sort -u)
	skipped=$(sed -n 's/^ *[0-9]*\/[0-9]* Test *#[0-9]*: \([^ ]*\) .*\*\*\*Skipped.*/\1/p' "$out" |
		sort -u | tr '\n' ' ')
	rm -f "$out"
	fixtures=$(ctest --test-dir "$dir" -N -L '^fixture$' | sed -n 's/^ *Test *#[0-9]*: //p' |
		sort -u)
	real=$(comm -23 <(printf '%s\n' "$ran") <(printf '%s\n' "$fixtures") | grep -c . || true)
	if [[ -n $skipped ]]; then
		note "tests skipped: ${skipped% }"
	fi
	if [[ -n $partial ]]; then
		note "checks skipped in: ${partial% }"
	fi
	if ((real > 0)) && (($(wc -w <<<"$skipped") == real)); then
		return 10
	fi
}

# The unit build; valgrind and lint reuse it (valgrind=ON adds the valgrind_* tests).
build_unit() {
	configure_and_build "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DPCS_SANITIZE=OFF -DPCS_FUZZ=OFF -DPCS_TESTS=ON -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
		-DPCS_VALGRIND="${1:-OFF}"
}

stage_unit() {
	build_unit OFF
	run_ctest "$B"
}

stage_asan() {
	configure_and_build "$B-asan" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DPCS_SANITIZE=ON -DPCS_FUZZ=OFF -DPCS_TESTS=ON
	local lsan=""
	if [[ -f $ROOT/tests/lsan.supp ]]; then
		lsan="suppressions=$ROOT/tests/lsan.supp:print_suppressions=0"
	fi
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		LSAN_OPTIONS=$lsan \
		run_ctest "$B-asan" --label-exclude docker # shell-only checks: the unit stage ran them
}

stage_valgrind() {
	local logs=$B/valgrind/logs bad rc=0
	if ! command -v valgrind >/dev/null 2>&1; then
		echo "valgrind: valgrind is not installed (scripts/install-deps.sh installs it)" >&2
		return 1
	fi
	build_unit ON
	rm -f "$logs"/pcsecretd.*.log
	# Every daemon these tests start runs under memcheck; a report makes it exit 99, which the
	# tests check. The logs are scanned as well, for daemons whose exit status nobody reads.
	run_ctest "$B" -L valgrind || rc=$?
	bad=$(grep -l 'ERROR SUMMARY: [1-9]' "$logs"/pcsecretd.*.log 2>/dev/null || true)
	for f in $bad; do
		echo "---- $f" >&2
		cat "$f" >&2
	done
	if ((rc != 0 && rc != 10)); then
		return "$rc"
	fi
	if [[ -n $bad ]]; then
		echo "valgrind: memcheck reported errors (above) although the tests passed" >&2
		return 1
	fi
	echo "valgrind: $(find "$logs" -name 'pcsecretd.*.log' | wc -l) daemon runs, 0 errors"
	return "$rc"
}

stage_lint() {
	build_unit OFF
	bash "$ROOT/tests/lint/lint.sh" "$B" "$JOBS"
}

# Compile-only: -O3 inlines across functions and finds what RelWithDebInfo's -O2 does not
# (maybe-uninitialized, format-truncation), and -Werror makes that a failure. No tests run: the
# unit stage ran them on the same code.
stage_release() {
	configure_and_build "$B-release" -DCMAKE_BUILD_TYPE=Release \
		-DPCS_SANITIZE=OFF -DPCS_FUZZ=OFF -DPCS_TESTS=ON -DPCS_VALGRIND=OFF
}

stage_fuzz() {
	if ! command -v clang >/dev/null 2>&1; then
		echo "fuzz: clang is not installed; skipping the fuzz stage"
		note "clang is not installed"
		return 10
	fi
	if [[ ! -f $ROOT/tests/fuzz/run.sh ]]; then
		echo "fuzz: tests/fuzz/run.sh does not exist; skipping the fuzz stage"
		note "tests/fuzz/run.sh does not exist"
		return 10
	fi
	# A cache made with another compiler would be reset by CMake without our -D options: start over.
	if [[ -f $B-fuzz/CMakeCache.txt ]] &&
		! grep -q '^CMAKE_C_COMPILER:[A-Z]*=.*clang' "$B-fuzz/CMakeCache.txt"; then
		rm -rf "$B-fuzz"
	fi
	CC=clang cmake -S "$ROOT" -B "$B-fuzz" -DCMAKE_C_COMPILER=clang \
		-DCMAKE_BUILD_TYPE=RelWithDebInfo -DPCS_SANITIZE=OFF -DPCS_FUZZ=ON -DPCS_TESTS=ON
	cmake --build "$B-fuzz" -j"$JOBS" --target fuzz_targets
	bash "$ROOT/tests/fuzz/run.sh" "$B-fuzz" "$FUZZ_SECONDS"
}

banner "setup: dependencies (stages: ${stage_list[*]})"
current=deps
bash "$ROOT/scripts/install-deps.sh"
if [[ ${CI:-} == true ]]; then
	echo "CI: $(nproc) cores; gcc $(gcc -dumpfullversion); $(cmake --version | sed -n 1p)"
fi

n=0
for s in "${stage_list[@]}"; do
	n=$((n + 1))
	current=$s
	case $s in
	unit) what="unit: gcc build in $B/, ctest -j$CTEST_JOBS" ;;
	asan) what="asan: ASan+UBSan build in $B-asan/, ctest -j$CTEST_JOBS" ;;
	valgrind) what="valgrind: integration tests with pcsecretd under memcheck ($B/)" ;;
	lint) what="lint: layering, format, cppcheck + clang-tidy ($B/compile_commands.json)" ;;
	release) what="release: gcc Release build in $B-release/, compile only" ;;
	fuzz) what="fuzz: clang+libFuzzer build in $B-fuzz/, ${FUZZ_SECONDS}s per target" ;;
	esac
	banner "stage $n/${#stage_list[@]} $what"
	t=$SECONDS
	: >"$NOTES"
	# A stage function runs under errexit; it returns 10 to report "skipped", and leaves what
	# it skipped, and why, in $NOTES.
	set +e
	(
		set -e
		"stage_$s"
	)
	rc=$?
	set -e
	notes=$(paste -sd ';' "$NOTES" | sed 's/;/; /g')
	if ((rc == 10)); then
		summary+=("$s: skipped ($(elapsed $((SECONDS - t))))${notes:+: $notes}")
		skipped_stages+=("$s")
		continue
	fi
	if ((rc != 0)); then
		summary+=("$s: FAILED ($(elapsed $((SECONDS - t))))")
		exit "$rc"
	fi
	summary+=("$s: passed ($(elapsed $((SECONDS - t))))${notes:+; $notes}")
done

current=""
banner "summary"
for line in "${summary[@]}"; do printf '  %s\n' "$line"; done
echo "  total: $(elapsed $((SECONDS - T0)))"
if ((${#skipped_stages[@]} > 0)); then
	echo "pcsecret tests: stages passed: $((${#stage_list[@]} - ${#skipped_stages[@]})), skipped:" \
		"${#skipped_stages[@]} (${skipped_stages[*]})"
else
	echo "pcsecret tests: all stages passed"
fi
