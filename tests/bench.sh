#!/bin/sh
# `make bench`: every benchmark, one after the other, each printing its own
# table. Figures only — nothing here passes or fails on a number.
#   decision quality  tests/bench/quality.sh     scaleno vs target-value, HPA and tuned HPA on every trace
#   worker throughput tests/bench/throughput.sh  one consumer, no-op pipe/exec handlers vs raw hiredis
#   sampling scale    tests/bench/sampling.sh    redis_sample over 1,000 and 10,000 queues
#   agent tick        tests/bench/agent_tick.py  the real agent over 1,000 and 10,000 queues
#   bulk publishing   tests/bench/publish.sh     scaleno publish --stdin into a local Redis
# BENCH="quality throughput" runs a subset.
set -u
BUILD=${BUILD:-build}
export BUILD SCALENO_BIN="$(pwd)/$BUILD/scaleno" SCALENO_TOP="$(pwd)"
rc=0
for b in ${BENCH:-quality throughput sampling agent publish}; do
	echo
	echo "=== $b ==="
	case $b in
	quality) sh tests/bench/quality.sh || rc=1 ;;
	throughput) sh tests/bench/throughput.sh || rc=1 ;;
	sampling) sh tests/bench/sampling.sh || rc=1 ;;
	agent) python3 tests/bench/agent_tick.py || rc=1 ;;
	publish) sh tests/bench/publish.sh || rc=1 ;;
	*) echo "bench: unknown part $b" >&2; rc=1 ;;
	esac
done
exit $rc
