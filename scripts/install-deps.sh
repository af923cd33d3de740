#!/usr/bin/env bash
# Install the Debian 12 packages pcsecret needs to build, test, fuzz and run `pcsecretd --dev`.
# Only missing packages are installed (one `apt-get update` first, and only then); when everything
# is present this is a few dpkg-query calls and exits at once. Everything comes from Debian's own
# archive. Runs as root, or through sudo when it exists.
set -euo pipefail

PACKAGES=(
	# build
	build-essential pkg-config cmake
	libprotobuf-c-dev protobuf-c-compiler
	libsodium-dev libevent-dev libpq-dev libjansson-dev
	# tests: cmocka, a PostgreSQL server for the private test cluster and `pcsecretd --dev`
	libcmocka-dev postgresql
	# fuzzing (libFuzzer ships in clang's runtime package)
	clang libclang-rt-14-dev
	# tooling used by the test scripts
	valgrind procps util-linux cppcheck clang-tidy clang-format
)

missing=()
for pkg in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
	if [[ $status != "install ok installed" ]]; then
		missing+=("$pkg")
	fi
done

if ((${#missing[@]} == 0)); then
	echo "install-deps: all ${#PACKAGES[@]} packages already installed"
	exit 0
fi

as_root=()
if [[ $(id -u) -ne 0 ]]; then
	if command -v sudo >/dev/null 2>&1; then
		as_root=(sudo)
	else
		echo "install-deps: missing packages (${missing[*]}) and not root; sudo is not available" >&2
		exit 1
	fi
fi

export DEBIAN_FRONTEND=noninteractive
apt() {
	# sudo resets the environment: pass DEBIAN_FRONTEND explicitly; no stdin, never prompt.
	"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q "$@" </dev/null
}

echo "install-deps: installing ${missing[*]}"
# Mirrors are occasionally flaky in CI: retry the network steps a few times.
for attempt in 1 2 3; do
	if apt update; then break; fi
	if ((attempt == 3)); then echo "install-deps: apt-get update failed" >&2; exit 1; fi
	sleep $((attempt * 5))
done
for attempt in 1 2 3; do
	if apt install -y --no-install-recommends "${missing[@]}"; then break; fi
	if ((attempt == 3)); then echo "install-deps: apt-get install failed" >&2; exit 1; fi
	sleep $((attempt * 5))
done
echo "install-deps: done"
