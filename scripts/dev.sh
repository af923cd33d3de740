#!/usr/bin/env bash
# Build pcsecret and run a throwaway development daemon:
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
} >&2

if [[ ! -x build/server/pcsecretd ]]; then
	echo "dev.sh: build/server/pcsecretd was not built" >&2
	exit 1
fi
exec build/server/pcsecretd --dev "$@"
