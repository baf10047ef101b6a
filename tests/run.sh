#!/bin/sh
# Runs the unit test binaries given as arguments, then every integration test
# (tests/integration/test_*.py), each in its own process with a time limit.
# Prints one line per test program and a closing "N passed, N failed".
set -u
BUILD=${BUILD:-build}
export SCALENO_BIN="${SCALENO_BIN:-$(pwd)/$BUILD/scaleno}"
export SCALENO_TOP="$(pwd)"
pass=0; fail=0; failed=""
logdir=$(mktemp -d "${TMPDIR:-/tmp}/scaleno-tests.XXXXXX")

# VALGRIND=1: every unit test and every scaleno process the integration tests
# start run under valgrind; any error or definite leak fails the test.
VG=""
if [ "${VALGRIND:-0}" = 1 ]; then
	VG="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --suppressions=$(pwd)/tests/valgrind.supp"
	cat >"$logdir/scaleno" <<WRAP
#!/bin/sh
exec $VG $SCALENO_BIN "\$@"
WRAP
	chmod +x "$logdir/scaleno"
	export SCALENO_BIN="$logdir/scaleno"
fi

run_one() {	# name, limit-seconds, command...
	name=$1; limit=$2; shift 2
	log="$logdir/$(echo "$name" | tr '/' '_').log"
	start=$(date +%s)
	if timeout -k 10 "$limit" "$@" >"$log" 2>&1; then
		pass=$((pass + 1)); printf '  PASS   %-40s %3ss\n' "$name" $(( $(date +%s) - start ))
	else
		rc=$?
		fail=$((fail + 1)); failed="$failed $name"
		printf '  FAIL   %-40s %3ss (exit %s)\n' "$name" $(( $(date +%s) - start )) "$rc"
		sed 's/^/         | /' "$log" | tail -n 60
	fi
}

if [ -z "${SCALENO_SKIP_UNIT:-}" ]; then
	for t in "$@"; do
		# shellcheck disable=SC2086
		run_one "unit/${t##*/}" 600 $VG "$t"
	done
fi
if [ -z "${SCALENO_SKIP_INTEGRATION:-}" ]; then
	for t in tests/integration/test_*.py; do
		[ -e "$t" ] || continue
		case " ${SCALENO_ONLY:-$t} " in *" $t "*) ;; *) continue ;; esac
		run_one "integration/${t##*/}" 400 python3 "$t"
	done
fi
echo "logs: $logdir"
[ -n "$failed" ] && echo "failed:$failed"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
