#!/bin/sh
# Sampling benchmark: fills a throwaway redis-server (free loopback port, temp
# folder) with 1,000 and then 10,000 queues (stream + group, 20 entries, 5
# delivered and unacked) and times redis_sample over all of them: a cold tick
# (connect, SCRIPT LOAD) and a warm one. Prints a table; no pass/fail.
# Goal: 10,000 queues under one second per tick.
# Usage: sh tests/bench/sampling.sh [N ...]   (from the top of the tree, after `make`)
# CHUNKS="default 1000000" picks the pipeline sizes compared.
set -eu
BUILD=${BUILD:-build}
SIZES=${*:-1000 10000}
CC=${CC:-cc}

for o in util log; do
	[ -f "$BUILD/obj/$o.o" ] || { echo "sampling.sh: $BUILD/obj/$o.o missing; run make first" >&2; exit 1; }
done

dir=$(mktemp -d "${TMPDIR:-/tmp}/scaleno-bench.XXXXXX")
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

# One tool per pipeline size: the default REDIS_SAMPLE_CHUNK, and everything in one pipeline.
CHUNKS=${CHUNKS:-"default 1000000"}
for ch in $CHUNKS; do
	def=; [ "$ch" = default ] || def=-DREDIS_SAMPLE_CHUNK=$ch
	# shellcheck disable=SC2046,SC2086
	$CC -std=c11 -O2 -Wall -Wextra -D_GNU_SOURCE $def -Iinclude $(pkg-config --cflags hiredis libcjson) \
		-o "$dir/tool.$ch" tests/bench/sampling_tool.c src/redis_sample.c src/redis.c src/redis_keys.c \
		src/redis_msg.c src/redis_conf.c src/redis_sentinel.c src/redis_cluster.c \
		"$BUILD/obj/redis_scripts.o" "$BUILD/obj/util.o" \
		"$BUILD/obj/log.o" $(pkg-config --libs hiredis libcjson) -lm
done

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
	--logfile "$dir/redis.log" &
pid=$!
i=0
until redis-cli -p "$port" ping >/dev/null 2>&1; do
	i=$((i + 1)); [ $i -lt 100 ] || { echo "redis-server did not start" >&2; exit 1; }
	sleep 0.05
done

default_chunk=$(sed -n 's/^#define REDIS_SAMPLE_CHUNK \([0-9]*\)/\1/p' include/redis_sample.h)
echo "redis_sample over N queues ($(redis-server --version | cut -d' ' -f3), $(nproc) CPUs)"
echo "chunk = streams per pipeline (default $default_chunk); ok = queues read with the expected figures"
fmt='%7s %8s %5s %8s %6s %10s %10s %12s %7s\n'
printf "$fmt" queues chunk tick wall_ms trips cpu_ms maxrss_kb redis_cpu_ms ok
for n in $SIZES; do
	redis-cli -p "$port" flushall >/dev/null
	"$dir/tool.default" fill "$port" "$n"
	for ch in $CHUNKS; do
		label=$ch; [ "$ch" = default ] && label=$default_chunk
		"$dir/tool.$ch" sample "$port" "$n" | while read -r tick wall trips cpu rss rcpu ok; do
			printf "$fmt" "$n" "$label" "$tick" "$wall" "$trips" "$cpu" "$rss" "$rcpu" "$ok"
		done
	done
done
