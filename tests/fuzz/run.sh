#!/bin/sh
# Runs every fuzz target in BUILD_DIR for SECONDS each, on a scratch copy of its seed corpus
# (tests/fuzz/corpus/<target>/, which also holds the regression inputs of bugs found before:
# libFuzzer runs every corpus file first) and its dictionary tests/fuzz/<target>.dict if any.
# The repository is never modified. Exits non-zero, naming the crashing input, on a crash.
set -u

if [ $# -ne 2 ]; then
	echo "usage: $0 BUILD_DIR SECONDS" >&2
	exit 2
fi
build=$1
seconds=$2
here=$(cd "$(dirname "$0")" && pwd)
case $seconds in
''|*[!0-9]*) echo "$0: SECONDS must be a whole number" >&2; exit 2 ;;
esac

targets=$(find "$build/tests/fuzz" -maxdepth 1 -type f -name 'fuzz_*' -perm -u+x 2>/dev/null | sort)
if [ -z "$targets" ]; then
	echo "$0: no fuzz targets in $build/tests/fuzz (configure with CC=clang -DPCS_FUZZ=ON)" >&2
	exit 2
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/pcs-fuzz.XXXXXX") || exit 2
failed=0
for bin in $targets; do
	name=$(basename "$bin")
	mkdir -p "$scratch/$name/corpus" "$scratch/$name/artifacts"
	if [ -d "$here/corpus/$name" ]; then
		cp -R "$here/corpus/$name/." "$scratch/$name/corpus/"
	fi
	dict=
	if [ -f "$here/$name.dict" ]; then
		dict=-dict=$here/$name.dict
	fi
	echo "== $name: $seconds s"
	# -timeout: one input running this long is a hang (fuzz_dispatch aborts itself at 10 s).
	# Files a harness makes go to the scratch directory too (removed unless something failed).
	TMPDIR=$scratch/$name "$bin" -max_total_time="$seconds" -print_final_stats=1 -timeout=25 -rss_limit_mb=4096 \
	    $dict -artifact_prefix="$scratch/$name/artifacts/" "$scratch/$name/corpus" \
	    >"$scratch/$name/log" 2>&1
	rc=$?
	tail -n 12 "$scratch/$name/log"
	if [ $rc -ne 0 ]; then
		failed=1
		echo "!! $name exited with status $rc; log: $scratch/$name/log"
		for a in "$scratch/$name/artifacts/"*; do
			[ -e "$a" ] && echo "!! crashing input: $a"
		done
	fi
done

# Keep the scratch directory when something failed: it holds the crashing inputs.
if [ $failed -ne 0 ]; then
	exit 1
fi
rm -rf "$scratch"
exit 0
