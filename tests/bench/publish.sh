#!/bin/sh
# Bulk publishing benchmark: `scaleno publish --stdin` into a throwaway local
# redis-server, N JSON lines (default 200000) over 1,000 keys into a queue of
# PARTITIONS partitions (default 4), RUNS times (default 3); prints messages
# per second per run and, for scale, the same Redis work with one script call
# per message (what N single publishes would cost the server, without their
# process start-up), driven by redis-benchmark. No pass/fail;
# the goal is >= 50,000 messages/s (scaleno(8), "publish").
# Usage: sh tests/bench/publish.sh   (from the top of the tree, after `make`)
set -eu
BUILD=${BUILD:-build}
N=${N:-200000}
PARTITIONS=${PARTITIONS:-4}
RUNS=${RUNS:-3}
SCALENO=$BUILD/scaleno
[ -x "$SCALENO" ] || { echo "publish.sh: $SCALENO missing; run make first" >&2; exit 1; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/scaleno-bench-publish.XXXXXX")
rpid=
cleanup() {
	[ -n "$rpid" ] && kill "$rpid" 2>/dev/null && wait "$rpid" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' HUP INT PIPE TERM

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
	--logfile "$dir/redis.log" &
rpid=$!
i=0
until redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1; do
	i=$((i + 1)); [ $i -lt 100 ] || { echo "publish.sh: redis-server did not start" >&2; exit 1; }
	sleep 0.05
done
mkdir -p "$dir/policies.d"
printf 'redis: { address = "127.0.0.1:%s"; };\nagent: { policy_dir = "policies.d"; };\n' "$port" \
	>"$dir/scaleno.conf"
printf 'queue: { name = "bulk"; partitions = %s; order_critical = true; loss_critical = true;\n  scale: { target = "none"; }; worker: { command = [ "/bin/true" ]; }; };\n' \
	"$PARTITIONS" >"$dir/policies.d/bulk.conf"
python3 -c '
import json, sys
n = int(sys.argv[1])
w = sys.stdout.write
for i in range(n):
    w(json.dumps({"key": "acct-%d" % (i % 1000), "fields": {"n": str(i), "payload": "x" * 64}}) + "\n")
' "$N" >"$dir/in.jsonl"

printf '%-28s %10s %12s\n' "run" "messages" "msgs/s"
r=1
while [ $r -le "$RUNS" ]; do
	t0=$(date +%s.%N)
	"$SCALENO" publish -c "$dir/scaleno.conf" -q bulk --stdin <"$dir/in.jsonl" >"$dir/out.txt"
	t1=$(date +%s.%N)
	n=$(wc -l <"$dir/out.txt")
	printf '%-28s %10s %12.0f\n' "publish --stdin #$r" "$n" "$(echo "$n / ($t1 - $t0)" | bc -l)"
	r=$((r + 1))
done
total=$(redis-cli -h 127.0.0.1 -p "$port" eval \
	"local n=0 for i=0,$((PARTITIONS - 1)) do n=n+redis.call('XLEN','bulk:'..i) end return n" 0)
echo "entries in the streams: $total (expected $((N * RUNS)))"
# The per-message Redis work of the publish script alone (GET, SET PX, EXISTS, XADD in Lua).
redis-cli -h 127.0.0.1 -p "$port" flushall >/dev/null
redis-benchmark -h 127.0.0.1 -p "$port" -n "$N" -P 512 -q eval \
	"redis.call('GET','k') redis.call('SET','k','1','PX',100000) redis.call('EXISTS','s') return redis.call('XADD','s','*',ARGV[1],ARGV[2])" \
	0 n 1 2>/dev/null | tr '\r' '\n' | tail -n 1 | sed 's/^/one call per message (redis-benchmark): /'
