#!/bin/sh
# `make fuzz` needs clang and its libFuzzer runtime; `make check` does not,
# so they are installed here rather than by contrib/install-deps.sh.
set -eu
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=""
for p in clang libclang-rt-dev; do have "$p" || missing="$missing $p"; done
if [ -n "$missing" ]; then
	echo "fuzz: installing:$missing" >&2
	SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq >&2
	# shellcheck disable=SC2086
	$SUDO apt-get install -y -qq --no-install-recommends $missing >&2
fi
command -v clang >/dev/null || { echo "fuzz: clang not found" >&2; exit 1; }
