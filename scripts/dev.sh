#!/usr/bin/env bash
# Build and install pcsecret, then run a throwaway development daemon:
#   scripts/dev.sh [pcsecretd flags...]
# `pcsecretd --dev` makes a private PostgreSQL cluster, a fresh master key and a socket in a
# temporary directory, and prints `export PCSECRET_SOCKET=...` for pcctl/pcrun. Ctrl-C stops it.
# Build output goes to stderr so stdout carries only what the daemon prints.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

{
	bash scripts/install-deps.sh
	# Same configuration as the unit stage of scripts/test.sh, so the two share build/.
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DPCS_SANITIZE=OFF -DPCS_FUZZ=OFF -DPCS_TESTS=ON
	cmake --build build -j"$(nproc)"
	# pcctl, pcrun, pcsecretd and libpcsecret on every user's PATH (agents run pcrun as
	# their own users). PCS_PREFIX changes where; the default is /usr/local.
	cmake --install build --prefix "${PCS_PREFIX:-/usr/local}"
	if [[ -w /etc/ld.so.conf.d || $(id -u) == 0 ]]; then ldconfig 2>/dev/null || true; fi
} >&2

PCSECRETD="${PCS_PREFIX:-/usr/local}/sbin/pcsecretd"
if [[ ! -x $PCSECRETD ]]; then
	echo "dev.sh: $PCSECRETD was not installed" >&2
	exit 1
fi
exec "$PCSECRETD" --dev "$@"
