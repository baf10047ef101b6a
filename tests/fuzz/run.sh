#!/bin/sh
# Runs each libFuzzer target given (build/fuzz/fuzz_NAME) for FUZZ_SECONDS
# (default 60) on tests/fuzz/corpus/NAME plus a work corpus in
# build/fuzz/corpus/NAME, after replaying every input of
# tests/fuzz/regressions/NAME (a crash found once must stay fixed).
# A crash leaves its input in build/fuzz/crashes/NAME/ and fails the run.
# Prints one line per target: runs, coverage, features, corpus size, time.
set -u
secs=${FUZZ_SECONDS:-60}
fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/scaleno-fuzz.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
for bin in "$@"; do
	t=${bin##*/fuzz_}
	work=build/fuzz/corpus/$t crashes=build/fuzz/crashes/$t
	mkdir -p "$work" "$crashes" "tests/fuzz/corpus/$t"
	log=$tmp/$t.log
	if ls tests/fuzz/regressions/"$t"/* >/dev/null 2>&1; then
		if ! TMPDIR=$tmp "$bin" -runs=1 tests/fuzz/regressions/"$t"/* >"$log" 2>&1; then
			echo "  FAIL   fuzz/$t: a regression input crashes again"; tail -n 30 "$log"
			fail=1; continue
		fi
	fi
	start=$(date +%s)
	# -timeout: one input taking 10 s is a hang; -rss_limit_mb: so is 2 GiB.
	TMPDIR=$tmp "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
	    -print_final_stats=1 -artifact_prefix="$crashes/" "$work" "tests/fuzz/corpus/$t" >"$log" 2>&1
	rc=$?
	el=$(( $(date +%s) - start ))
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
	cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
	ft=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
	corp=$(echo "$last" | sed -n 's/.*corp: \([0-9]*\).*/\1/p')
	if [ "$rc" -eq 0 ]; then
		printf '  PASS   fuzz/%-9s %9s runs  cov %5s  ft %6s  corpus %5s  %4ss\n' \
		    "$t" "${runs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$el"
	else
		fail=1
		printf '  FAIL   fuzz/%-9s after %ss (exit %s); input in %s\n' "$t" "$el" "$rc" "$crashes"
		grep -A 25 -E '^==[0-9]+==ERROR|runtime error|deadly signal|ALARM' "$log" | head -n 40
	fi
done
exit "$fail"
