#!/bin/sh
# Worker throughput benchmark: messages per second through ONE consumer
# process of `scaleno worker` with a no-op handler (pipe, then exec),
# against build/tools/rawloop (a bare hiredis XREADGROUP COUNT n + XACK loop:
# the physical limit) on the same throwaway redis-server. Prints a table with
# the ratios to raw per batch size; no pass/fail. Goal: pipe >= 60% of raw at
# batch 100 and 16. The worker's queue is parallel (mode 3), so the pipe
# handler gets each batch pipelined. Raw and pipe are run RUNS times,
# alternately; the table shows the medians and the runs. The end of a worker
# run is watched by stream_done.py over one connection (a redis-cli process
# per poll took CPU from the worker it measured).
# Usage: sh tests/bench/throughput.sh   (from the top of the tree, after `make`)
# N (messages, default 300000), NEXEC (exec run, default 3000), BATCHES
# ("100 16"), RUNS (3).
set -eu
BUILD=${BUILD:-build}
N=${N:-300000}
NEXEC=${NEXEC:-3000}
BATCHES=${BATCHES:-100 16}
RUNS=${RUNS:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
SCALENO=$BUILD/scaleno
HANDLER=$(pwd)/$BUILD/handlers/testhandler
for f in "$SCALENO" "$HANDLER" "$BUILD/tools/rawloop"; do
	[ -x "$f" ] || { echo "throughput.sh: $f missing; run make first" >&2; exit 1; }
done

dir=$(mktemp -d "${TMPDIR:-/tmp}/scaleno-bench.XXXXXX")
rpid=
wpid=
cleanup() {
	[ -n "$wpid" ] && kill -KILL "$wpid" 2>/dev/null && wait "$wpid" 2>/dev/null
	[ -n "$rpid" ] && kill "$rpid" 2>/dev/null && wait "$rpid" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' HUP INT PIPE TERM	# also when the reader of our output goes away (| head)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
	--logfile "$dir/redis.log" &
rpid=$!
cli() { redis-cli -h 127.0.0.1 -p "$port" "$@"; }
i=0
until cli PING >/dev/null 2>&1; do
	i=$((i + 1)); [ $i -lt 100 ] || { echo "redis-server did not start" >&2; exit 2; }
	sleep 0.05
done

# fill STREAM COUNT: a fresh stream with COUNT small messages and group g at 0
fill() {
	cli DEL "$1" >/dev/null
	awk -v n="$2" -v s="$1" 'BEGIN { for (i = 0; i < n; i++)
		printf "*5\r\n$4\r\nXADD\r\n$%d\r\n%s\r\n$1\r\n*\r\n$1\r\nn\r\n$%d\r\n%d\r\n",
		    length(s), s, length(i ""), i }' | cli --pipe >/dev/null
	cli XGROUP CREATE "$1" g 0 >/dev/null
}

now() { date +%s.%N; }

# worker PROTO STREAM COUNT: msgs/s of one consumer process
worker() {
	mkdir -p "$dir/$1/policies.d"
	cat >"$dir/$1/scaleno.conf" <<CONF
redis: { address = "127.0.0.1:$port"; };
log: { level = "warn"; };
CONF
	cat >"$dir/$1/policies.d/b.conf" <<CONF
queue: {
  name = "b"; stream = "$2"; group = "g"; loss_critical = true;
  scale: { target = "none"; };
  worker: { command = [ "$HANDLER", "-p", "$1" ]; protocol = "$1"; processes = 1;
            batch = $BATCH; listen = ""; block = "100ms"; };
};
CONF
	t0=$(now)
	"$SCALENO" worker -q b -c "$dir/$1/scaleno.conf" 2>>"$dir/worker.log" &
	wpid=$!
	t1=$(python3 "$HERE/stream_done.py" "$port" "$2" "$3" 300) ||
		{ echo "worker $1 did not finish" >&2; exit 2; }
	kill -TERM "$wpid"; wait "$wpid" || true; wpid=
	awk -v a="$t0" -v b="$t1" -v n="$3" 'BEGIN { printf "%.0f\n", n / (b - a) }'
}

# median of the numbers given as arguments
median() {
	printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 }
		END { print NR % 2 ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

for BATCH in $BATCHES; do
raws=
pipes=
r=0
while [ $r -lt "$RUNS" ]; do
	fill raw "$N"
	raws="$raws $("$BUILD/tools/rawloop" 127.0.0.1 "$port" raw g "$BATCH" "$N" | awk '{ print $3 }')"
	fill pipe "$N"
	pipes="$pipes $(worker pipe pipe "$N")"
	r=$((r + 1))
done
# shellcheck disable=SC2086 # word splitting of the run lists is intended
raw=$(median $raws)
# shellcheck disable=SC2086
pipe=$(median $pipes)
if [ -z "${exec_:-}" ]; then	# once: one process per message does not batch
	fill exec "$NEXEC"
	exec_=$(worker exec exec "$NEXEC")
fi

pct() { echo "$1 $2" | awk '{ printf "%.1f", 100 * $1 / $2 }'; }
printf '%-34s %10s %8s   %s\n' "one consumer, batch $BATCH" "msgs/s" "vs raw" "runs ($RUNS)"
printf '%-34s %10s %8s  %s\n' "rawloop (XREADGROUP + XACK)" "$raw" "100%" "$raws"
printf '%-34s %10s %7s%%  %s\n' "scaleno worker, pipe no-op ($N)" "$pipe" "$(pct "$pipe" "$raw")" "$pipes"
printf '%-34s %10s %7s%%\n' "scaleno worker, exec no-op ($NEXEC)" "$exec_" "$(pct "$exec_" "$raw")"
done
