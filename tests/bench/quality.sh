#!/bin/sh
# quality.sh — scaleno's decision engine against nomad-autoscaler's
# target-value, Kubernetes HPA (hpa) and the HPA tuned for a queue worker
# (hpa-tuned) on every trace in contrib/traces/, through
# `scaleno simulate --compare`. Prints tables; no pass/fail.
#
# Every tool but hpa-tuned runs with its documented defaults, and all with
# the same shared settings (min 2, max 60, backlog_per_worker 200, max_age
# 30s, startup 15s): the "defaults" policy leaves scale.up and scale.down
# unset, so scaleno uses the defaults of scaleno.conf(5), as a user who
# writes no up/down section gets. The header prints them from
# scaleno.conf(5), which test_config keeps equal to the key table.
# hpa-tuned is the hpa formula with the behavior an operator sets for a
# queue worker: scale-down stabilization = the policy's
# scale.down.stabilization (the window scaleno uses) instead of 300 s;
# scale-up stabilization 0 s and one policy, Pods = scale.max per 15 s,
# selectPolicy Max (not rate-limited in practice); scale-down Percent 100 per
# 15 s, tolerance 0.1, sync period 15 s, the defaults (scaleno-simulate(1)).
# A second table runs a cautious policy (down: 60s, 3m, one at a
# time) to show what a slow scale-in costs.
#
# x-ideal: worker-seconds over the ideal, the trace's arrivals divided by the
# service rate (a count that follows the load exactly, with no startup delay).
#
# surge-ok: the share of surge seconds (within max_age after a second whose
# arrivals exceed 1.5 x the trace's median) with the oldest age within
# max_age. When two tools are both at 100%, the p99 and max age break the tie;
# the verdict lines below say which one decided.
#
# The last table is the cost family:
# 20 and 25 msgs/s per worker, startup 15s and 30s (the policy's startup is
# the model's), max_age 30s, bounds 2-80, the cautious cooldowns above and a
# 3-minute stabilization. Per trace and corner it prints, for each tool,
# seconds over max_age / x-ideal / actions; the goal is 0 s over max_age and
# at most 2.0 x ideal for scaleno on every trace, at most 2 actions on
# noisy-flat.
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
policy() {	# name, max, startup, up/down sections (may be empty)
	cat >"$dir/policies.d/$1.conf" <<EOP
queue: {
  name = "$1";
  scale: {
    job = "w"; group = "g";
    min = 2; max = $2;
    backlog_per_worker = 200;
    max_age = "30s";
    startup = "$3";
    $4
  };
};
EOP
}
cautious='up: { cooldown = "10s"; max_step = "100%"; }; down: { cooldown = "60s"; stabilization = "3m"; max_step = 1; };'
policy defaults 60 15s ''
policy spec 60 15s "$cautious"
policy family15 80 15s "$cautious"
policy family30 80 30s "$cautious"

for q in defaults spec; do
	if [ "$q" = defaults ]; then
		echo "== policy \"defaults\": min 2, max 60, backlog_per_worker 200, max_age 30s, startup 15s; up/down unset,"
		echo "   so scaleno.conf(5) defaults apply: $(awk '/^\.It Ic scale\.(up|down)\./ { k = $3 } /^\.(Qq|Li) / && k != "" { printf "%s=%s ", substr(k, 7), $2; k = "" }' man/scaleno.conf.5)"
		echo "   baselines: their own defaults (target-value: 10s eval, 5m cooldown, 1% threshold; hpa: 15s sync, 10% tolerance, 5m down window);"
		echo "   hpa-tuned: down stabilization = the policy's scale.down.stabilization; up stabilization 0s, Pods = scale.max per 15s,"
		echo "   selectPolicy Max; down Percent 100 per 15s, tolerance 0.1, sync period 15s (defaults)"
	else
		echo "== policy \"spec\" (a cautious example): shared settings as above; up: cooldown 10s, max_step 100%;"
		echo "   down: cooldown 60s, stabilization 3m, max_step 1 (hpa-tuned's down window: 3m)"
	fi
	echo "   service rate $RATE/s per worker"
	printf '%-15s %-13s %9s %7s %12s %10s %8s %8s %8s %9s\n' trace algorithm worker-s x-ideal peak-backlog 's>max_age' p99-age max-age actions surge-ok
	for t in contrib/traces/*.csv; do
		name=$(basename "$t" .csv)
		ideal=$(awk -F, -v r="$RATE" '/^[0-9]/ { s += $2 } END { printf "%.3f", s / r }' "$t")
		"$BIN" simulate -c "$dir/scaleno.conf" -q "$q" --trace "$t" --service-rate "$RATE" --compare |
		    awk -v tr="$name" -v ideal="$ideal" '$1 ~ /^(scaleno|target-value|hpa|hpa-tuned)$/ { printf "%-15s %-13s %9s %7.2f %12s %10s %8s %8s %8s %9s\n", tr, $1, $2, $2 / ideal, $3, $4, $5, $6, $7, $8 }'
	done >"$dir/$q.table"
	cat "$dir/$q.table"
	# Verdicts against the best of the three baselines, per trace.
	awk '
	function pct(s) { sub(/%/, "", s); return s == "-" ? -1 : s + 0 }
	function sec(s) { sub(/s$/, "", s); return s + 0 }
	{ k = $1 SUBSEP $2; ws[k] = $3; p99[k] = sec($7); mx[k] = sec($8); act[k] = $9; ok[k] = pct($10); tr[$1] = 1 }
	END {
		for (t in tr) order[++n] = t
		for (i = 2; i <= n; i++) for (j = i; j > 1 && order[j] < order[j-1]; j--) { x = order[j]; order[j] = order[j-1]; order[j-1] = x }
		for (i = 1; i <= n; i++) {
			t = order[i]; s = t SUBSEP "scaleno"; a = t SUBSEP "target-value"; h = t SUBSEP "hpa"; u = t SUBSEP "hpa-tuned"
			best = ws[a] < ws[h] ? ws[a] : ws[h]
			if (ws[u] < best) best = ws[u]
			okb = ok[a] > ok[h] ? ok[a] : ok[h]
			if (ok[u] > okb) okb = ok[u]
			oks = sprintf("%.1f%% vs %.1f%%/%.1f%%/%.1f%%", ok[s], ok[a], ok[h], ok[u])
			if (ok[s] < 0) age = "no surge"
			else if (ok[s] > okb) age = "within max_age for more of the surge (" oks ")"
			else if (ok[s] == okb) age = sprintf("surge-ok tied at %.1f%%; tie-break p99/max age %g/%gs vs %g/%gs (target-value), %g/%gs (hpa), %g/%gs (hpa-tuned)", ok[s], p99[s], mx[s], p99[a], mx[a], p99[h], mx[h], p99[u], mx[u])
			else age = "LESS of the surge within max_age (" oks ")"
			printf "   %-15s worker-s %s vs best baseline %s (%s); actions %d vs %d/%d/%d; %s\n", t, ws[s], best,
			    ws[s] <= best ? "no more" : "MORE", act[s], act[a], act[h], act[u], age
		}
	}' "$dir/$q.table"
	echo
done

echo "== the cost family: min 2, max 80, backlog_per_worker 200, max_age 30s; up: cooldown 10s, max_step 100%;"
echo "   down: cooldown 60s, stabilization 3m, max_step 1. Cells: seconds over max_age / x-ideal / actions"
printf '%-15s %4s %7s  %-18s %-18s %-18s %-18s\n' trace mu startup scaleno target-value hpa hpa-tuned
for t in contrib/traces/*.csv; do
	name=$(basename "$t" .csv)
	for corner in "20 15" "25 15" "20 30" "25 30"; do
		set -- $corner
		ideal=$(awk -F, -v r="$1" '/^[0-9]/ { s += $2 } END { printf "%.3f", s / r }' "$t")
		"$BIN" simulate -c "$dir/scaleno.conf" -q "family$2" --trace "$t" --service-rate "$1" --compare |
		    awk -v tr="$name" -v mu="$1" -v su="$2s" -v ideal="$ideal" '
			$1 ~ /^(scaleno|target-value|hpa|hpa-tuned)$/ { c[++n] = sprintf("%s / %.2f / %s", $4, $2 / ideal, $7) }
			END { printf "%-15s %4s %7s  %-18s %-18s %-18s %-18s\n", tr, mu, su, c[1], c[2], c[3], c[4] }'
	done
done >"$dir/family.table"
cat "$dir/family.table"
awk '{ split($4, a, " "); } { s = $4; x = $6; act = $8; if (s + 0 > 0 || x + 0 > 2.0) bad++; if (x + 0 > worst) { worst = x + 0; at = $1 " " $2 "/" $3 } }
	END { printf "   scaleno: worst x-ideal %.2f (%s); %d of %d cells over 2.0x ideal or over max_age\n", worst, at, bad, NR }' "$dir/family.table"
