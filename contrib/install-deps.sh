#!/bin/sh
# Install the Debian packages scaleno needs to build, test and run its demo,
# and the extra ones named as arguments (.ci/run adds valgrind).
# Idempotent: does nothing when every package is present. Needs root (or sudo)
# only when something is missing.
set -eu

PKGS="build-essential pkg-config libconfig-dev libhiredis-dev libcurl4-openssl-dev \
libcjson-dev libcunit1-dev libmicrohttpd-dev redis-server mandoc python3 procps $*"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
		echo "install-deps: need root to install:$missing" >&2; exit 1
	fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >&2
# The tests start their own redis-server; the packaged service is not needed.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true; fi
exit 0
