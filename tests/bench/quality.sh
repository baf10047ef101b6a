#!/bin/sh
# quality.sh — scaleno's decision engine against nomad-autoscaler's
# target-value and Kubernetes HPA on every trace in contrib/traces/, through
# `scaleno simulate --compare`. Prints tables; no pass/fail (SPEC §8).
#
# Two policies, both from the SPEC §3 example (min 2, max 60,
# backlog_per_worker 200, max_age 30s, startup 15s, up 10s/100%):
#   spec      down: cooldown 60s, stabilization 3m, max_step 1 (one at a time)
#   fast-in   down: cooldown 60s, stabilization 1m, max_step 50%
# The baselines use their own defaults whatever the policy says about
# scaling down, so the second table shows what the down settings cost.
#
# usage: sh tests/bench/quality.sh [service-rate]   (BUILD=build/san to use another build)
set -eu
BUILD=${BUILD:-build}
BIN=${SCALENO_BIN:-$BUILD/scaleno}
RATE=${1:-10}
TOP=$(cd "$(dirname "$0")/../.." && pwd)
cd "$TOP"
[ -x "$BIN" ] || { echo "quality.sh: $BIN not built (run make)" >&2; exit 2; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/scaleno-quality.XXXXXX")
trap 'rm -rf "$dir"' EXIT INT TERM
mkdir "$dir/policies.d"
echo 'agent: { policy_dir = "policies.d"; };' >"$dir/scaleno.conf"
policy() {	# name, stabilization, max_step
	cat >"$dir/policies.d/$1.conf" <<EOF
queue: {
  name = "$1";
  scale: {
    job = "w"; group = "g";
    min = 2; max = 60;
    backlog_per_worker = 200;
    max_age = "30s";
    startup = "15s";
    up:   { cooldown = "10s"; max_step = "100%"; };
    down: { cooldown = "60s"; stabilization = "$2"; max_step = $3; };
  };
};
EOF
}
policy spec 3m 1
policy fast-in 1m '"50%"'

for q in spec fast-in; do
	echo "== policy $q, service rate $RATE/s per worker =="
	printf '%-16s %-13s %10s %12s %10s %8s %8s %8s\n' trace algorithm worker-s peak-backlog 's>max_age' p99-age max-age actions
	for t in contrib/traces/*.csv; do
		name=$(basename "$t" .csv)
		"$BIN" simulate -c "$dir/scaleno.conf" -q "$q" --trace "$t" --service-rate "$RATE" --compare |
		    awk -v tr="$name" 'NR > 2 { printf "%-16s %-13s %10s %12s %10s %8s %8s %8s\n", tr, $1, $2, $3, $4, $5, $6, $7 }'
	done
	echo
done
