#!/usr/bin/env bash
# Static analysis of common/ server/ sdk/ client/ with cppcheck and clang-tidy, using the
# compile_commands.json of a build (configure with -DCMAKE_EXPORT_COMPILE_COMMANDS=ON; the
# unit build of scripts/test.sh has it). Configuration: .cppcheck (suppressions) and
# .clang-tidy (checks) at the top of the tree; docs/testing.md explains both.
#   tests/lint/lint.sh BUILD_DIR [JOBS]
# Exits 0 when both tools are clean, 1 with every finding listed when not, 2 on usage errors
# (missing tools, no compile_commands.json).
set -uo pipefail

if (($# < 1 || $# > 2)); then
	echo "usage: $0 BUILD_DIR [JOBS]" >&2
	exit 2
fi
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$(cd "$1" 2>/dev/null && pwd) || {
	echo "lint: no build directory $1" >&2
	exit 2
}
jobs=${2:-$(nproc 2>/dev/null || echo 2)}
db=$build/compile_commands.json
dirs=(common server sdk client)

for tool in cppcheck clang-tidy clang-format; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "lint: $tool is not installed (Debian: apt-get install cppcheck clang-tidy)" >&2
		exit 2
	fi
done
if [[ ! -f $db ]]; then
	echo "lint: $db is missing: configure $build with -DCMAKE_EXPORT_COMPILE_COMMANDS=ON" >&2
	exit 2
fi

cd "$ROOT" || exit 2
# The project's C files that the build compiles (generated code lives in the build directory).
mapfile -t files < <(grep -o '"file": *"[^"]*"' "$db" | sed 's/^"file": *"//; s/"$//' |
	grep -E "^$ROOT/($(
		IFS='|'
		echo "${dirs[*]}"
	))/.*\.c$" | sort -u)
if ((${#files[@]} == 0)); then
	echo "lint: $db names no C files under ${dirs[*]}" >&2
	exit 2
fi
echo "lint: ${#files[@]} files; $(cppcheck --version); $(clang-tidy --version | grep -o 'LLVM version [0-9.]*')"

scratch=$(mktemp -d "${TMPDIR:-/tmp}/pcs-lint.XXXXXX") || exit 2
trap 'rm -rf "$scratch"' EXIT
failed=0

# Layering (docs/architecture.md): SQL text lives only in the daemon's database layer
# (server/db/: the db_*.c operations, the store and the migration runner); only the store's
# database-connection files include libpq-fe.h (server/db/pgconn.c, one connection on the
# loop; store.c, the pool and its results; store_sync.c, the blocking start-up API), no header;
# only server/crypto/crypto.c includes sodium.h among the daemon's sources, besides what of
# common/ server and SDK share: the wiping and constant-time helpers and secbuf.c, the locked
# buffers values live in.
echo "== layering"
layering() {
	local f
	while IFS= read -r f; do
		case $f in
		server/db/*) ;;
		*) grep -HnE '"(SELECT|INSERT|UPDATE|DELETE|WITH) ' "$f" |
			sed 's/$/ [SQL outside the database layer: put it in a db_*.c operation]/' ;;
		esac
	done < <(find server -name '*.[ch]' | sort)
	while IFS= read -r f; do
		case $f in
		server/db/pgconn.c | server/db/store.c | server/db/store_sync.c) continue ;;
		esac
		grep -HnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]libpq-fe\.h[>"]' "$f" |
			sed 's/$/ [libpq-fe.h outside server\/db\/pgconn.c, store.c and store_sync.c]/'
	done < <(find common server sdk client -name '*.[ch]' | sort)
	while IFS= read -r f; do
		case $f in
		server/crypto/crypto.c | common/frame.c | common/keyfile.c | common/pbwipe.c | common/secbuf.c) continue ;;
		esac
		grep -HnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]sodium\.h[>"]' "$f" |
			sed 's/$/ [sodium.h outside server\/crypto\/crypto.c and common\/'"'"'s wiping helpers and secbuf.c]/'
	done < <(find common server -name '*.[ch]' | sort)
}
layering >"$scratch/layering.findings"
if [[ -s $scratch/layering.findings ]]; then
	failed=1
	cat "$scratch/layering.findings"
fi
echo "layering: $(wc -l <"$scratch/layering.findings") findings"

# One style (.clang-format at the top of the tree): a file clang-format would change fails,
# and `clang-format -i FILE` fixes it.
echo "== format"
while IFS= read -r f; do
	clang-format --style=file --dry-run "$f" 2>&1 | grep -m1 -E '^[^ ]+:[0-9]+:[0-9]+: ' |
		awk -v f="$f" '{ print $0 " [run clang-format -i " f "]" }'
done < <(find common server sdk client -name '*.[ch]' | sort) >"$scratch/format.findings"
if [[ -s $scratch/format.findings ]]; then
	failed=1
	cat "$scratch/format.findings"
fi
echo "format: $(wc -l <"$scratch/format.findings") files to reformat"

# cppcheck: its own preprocessor does not search system headers, so two are given to it:
# protobuf-c's (the generated header checks its version macro with #error) and sys/queue.h
# (without its TAILQ_* macros, "TAILQ_HEAD(, name) x;" is a syntax error to cppcheck).
# cppcheck names files relative to the working directory or absolutely, depending on how the
# project file was named: filter both ways.
filters=()
for d in "${dirs[@]}"; do filters+=("--file-filter=$d/*" "--file-filter=$ROOT/$d/*"); done
pbc=()
multiarch=$(gcc -print-multiarch 2>/dev/null || true)
for h in /usr/include/protobuf-c/protobuf-c.h /usr/include/sys/queue.h \
	"/usr/include/$multiarch/sys/queue.h"; do
	if [[ -f $h ]]; then
		pbc+=("--include=$h")
	fi
done
echo "== cppcheck"
t=$SECONDS
cppcheck --project="$db" "${filters[@]}" "${pbc[@]}" --std=c11 \
	--enable=warning,performance,portability --inline-suppr \
	--suppressions-list="$ROOT/.cppcheck" --error-exitcode=1 --quiet -j"$jobs" \
	--template='{file}:{line}:{column}: {severity}: {message} [{id}]' \
	>"$scratch/cppcheck.log" 2>&1
rc=$?
grep -E '^[^ ]+:[0-9]+:[0-9]+: ' "$scratch/cppcheck.log" | sed "s|^$ROOT/||" |
	sort -u >"$scratch/cppcheck.findings"
if ((rc != 0)); then
	failed=1
	if [[ -s $scratch/cppcheck.findings ]]; then
		cat "$scratch/cppcheck.findings"
	else
		cat "$scratch/cppcheck.log"
	fi
fi
echo "cppcheck: $(wc -l <"$scratch/cppcheck.findings") findings, exit $rc ($((SECONDS - t))s)"

echo "== clang-tidy"
t=$SECONDS
printf '%s\0' "${files[@]}" |
	xargs -0 -P"$jobs" -n2 clang-tidy -p "$build" --quiet >"$scratch/tidy.log" 2>"$scratch/tidy.err"
rc=$?
grep -E '^/[^ ]+:[0-9]+:[0-9]+: (warning|error): ' "$scratch/tidy.log" | sed "s|^$ROOT/||" |
	sort -u >"$scratch/tidy.findings"
if ((rc != 0)); then
	failed=1
	if [[ -s $scratch/tidy.findings ]]; then
		cat "$scratch/tidy.findings"
	else
		# No finding but a failure: a file clang-tidy could not compile, say.
		cat "$scratch/tidy.log" "$scratch/tidy.err"
	fi
fi
echo "clang-tidy: $(wc -l <"$scratch/tidy.findings") findings, exit $rc ($((SECONDS - t))s)"

if ((failed)); then
	echo "lint: FAILED (fix the code, or add a NOLINT / cppcheck-suppress with the reason)" >&2
	exit 1
fi
echo "lint: clean"
