#!/usr/bin/env bash
# Runs README.md's walkthrough block verbatim against `pcsecretd --dev`, as a person would:
# the binaries installed into a prefix on PATH, the export line the daemon prints, Ctrl-C at
# the end (which must stop PostgreSQL and remove the temporary directory).
#   walkthrough.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2

if [[ $(id -u) != 0 ]]; then
	echo "skipped: the walkthrough needs root (useradd, runuser)"
	exit 77
fi

tmp=$(mktemp -d /tmp/pcs-walk-XXXXXX)
chmod 755 "$tmp"
pid=""
made_user=""
cleanup() {
	if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
		kill -INT "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	if [[ -n $made_user ]]; then userdel demo-agent 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
export PATH="$tmp/prefix/bin:$tmp/prefix/sbin:$PATH"
id demo-agent >/dev/null 2>&1 || made_user=1

pcsecretd --dev >"$tmp/dev.out" 2>"$tmp/dev.err" &
pid=$!
for _ in $(seq 1 600); do
	grep -q '^export PCSECRET_SOCKET=' "$tmp/dev.out" && break
	kill -0 "$pid" 2>/dev/null || { cat "$tmp/dev.err"; echo "pcsecretd --dev exited"; exit 1; }
	sleep 0.1
done
eval "$(grep '^export PCSECRET_SOCKET=' "$tmp/dev.out")"
devdir=$(dirname "$PCSECRET_SOCKET")

# The block between the markers, without the fences.
awk '/<!-- walkthrough:end -->/{on=0} on && !/^```/{print} /<!-- walkthrough:start -->/{on=1}' \
	"$src/README.md" >"$tmp/walk.sh"
[[ -s $tmp/walk.sh ]] || { echo "README.md has no walkthrough block"; exit 1; }

if ! bash -euo pipefail "$tmp/walk.sh" >"$tmp/walk.out" 2>&1; then
	cat "$tmp/walk.out"
	echo "the walkthrough failed"
	exit 1
fi
cat "$tmp/walk.out"

expect() {
	grep -qF -- "$1" "$tmp/walk.out" || { echo "walkthrough output lacks: $1"; exit 1; }
}
expect "agent sees sk-ant-demo-1"
expect "now sk-ant-demo-2, before sk-ant-demo-1"
expect "KEY is sk-ant-demo-2"
expect "refused, as it should be"
expect "PERMISSION_DENIED"

# Ctrl-C: exit 0, PostgreSQL stopped, the directory gone.
kill -INT "$pid"
rc=0
wait "$pid" || rc=$?
pid=""
[[ $rc == 0 ]] || { cat "$tmp/dev.err"; echo "pcsecretd --dev exited $rc on SIGINT"; exit 1; }
[[ ! -e $devdir ]] || { echo "$devdir was not removed"; exit 1; }
if pgrep -f "postgres.*$devdir" >/dev/null; then echo "PostgreSQL still runs in $devdir"; exit 1; fi
for v in sk-ant-demo-1 sk-ant-demo-2; do
	if grep -qF "$v" "$tmp/dev.err"; then echo "a value reached the daemon's log"; exit 1; fi
done
echo "walkthrough passed"
