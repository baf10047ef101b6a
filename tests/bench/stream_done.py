#!/usr/bin/env python3
"""stream_done.py PORT STREAM COUNT [TIMEOUT]: wait until group g of STREAM on
127.0.0.1:PORT has read COUNT entries and has none pending; print the wall
time (seconds since the epoch) when that was seen; exit 1 on timeout.

One connection, polled every 5 ms: the benchmark's watcher must not take the
CPU from the worker it measures (a redis-cli process per poll did)."""
import socket
import sys
import time


def main():
    port, stream, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 300.0
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rb")

    def read():
        line = f.readline().rstrip(b"\r\n")
        t, v = line[:1], line[1:]
        if t == b"*":
            return None if int(v) < 0 else [read() for _ in range(int(v))]
        if t == b"$":
            return None if int(v) < 0 else f.read(int(v) + 2)[:-2]
        if t == b":":
            return int(v)
        if t == b"-":
            raise RuntimeError(v.decode())
        return v

    def cmd(*args):
        s.sendall(("*%d\r\n" % len(args) +
                   "".join("$%d\r\n%s\r\n" % (len(a), a) for a in args)).encode())
        return read()

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for g in cmd("XINFO", "GROUPS", stream):
            d = dict(zip(g[::2], g[1::2]))
            if d.get(b"name") == b"g" and d.get(b"pending") == 0 and d.get(b"entries-read") == count:
                print("%.6f" % time.time())
                return 0
        time.sleep(0.005)
    return 1


if __name__ == "__main__":
    sys.exit(main())
