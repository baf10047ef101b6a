#!/usr/bin/env python3
"""Redis Sentinel (scaleno.conf(5) "redis"): a master, a replica and three
Sentinels; SENTINEL FAILOVER while a worker consumes, in mode 3 and mode 4.
Nothing is lost, order holds in mode 4, no process is restarted, `scaleno
publish --wait` and `scaleno status` find the new master."""
import json
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import redisenv  # noqa: E402
from test_worker_modes import Env, children  # noqa: E402

suite = H.Suite()


def on_sentinel(e, s):
    """Point the Env's main file at the Sentinels; its own redis-server goes unused."""
    text = open(e.conf).read()
    H.write(e.conf, re.sub(r"redis: \{[^}]*\};", s.conf(), text))
    e.redis.kill()
    e.redis = s.master


def publish_cli(e, n, wait=1):
    r = H.run_scaleno(["publish", "-q", e.queue, "-c", e.conf] + (["--wait", str(wait)] if wait else []) +
                      ["n", str(n)])
    assert r.returncode == 0, (r.returncode, r.stderr)
    return r.stdout.split()


def failover_run(order):
    N, LATE = 300, 30
    s = redisenv.Sentinel()
    e = Env(order=order, worker={"processes": 2, "claim_idle": '"3s"', "retries": 1})
    on_sentinel(e, s)
    e.publish([{"n": "%04d" % i} for i in range(N - LATE)])
    H.wait_until(lambda: s.replica.cli("XLEN", e.stream) == str(N - LATE), timeout=10,
                 what="the replica to hold every message")
    e.start()
    kids = H.wait_until(lambda: len(e.ok()) >= 60 and sorted(children(e.proc.pid)), timeout=30,
                        what="the first 60 messages")
    t0 = time.monotonic()
    old = s.failover()
    e.redis = s.master
    # Published only after the failover: it exists on the new master alone
    # (no --wait: the old master has not yet become its replica).
    publish_cli(e, "%04d" % (N - LATE), wait=0)
    first = "%04d" % (N - LATE)
    H.wait_until(lambda: first in {n for n, _, _ in e.ok()}, timeout=30,
                 what="the first message published after the failover")
    took = time.monotonic() - t0
    for i in range(N - LATE + 1, N):
        publish_cli(e, "%04d" % i, wait=0)  # the old master may not follow the new one yet
    H.wait_until(lambda: {n for n, _, _ in e.ok()} == {"%04d" % i for i in range(N)}, timeout=60,
                 what="every message processed")
    H.wait_until(lambda: e.pending() == 0, timeout=30, what="nothing pending on the new master")
    assert e.proc.poll() is None, "the worker exited"
    assert sorted(children(e.proc.pid)) == kids, "a consumer was restarted"
    seen = [n for n, _, _ in e.ok()]
    if order:
        firsts = []
        for n in seen:
            if n not in firsts:
                firsts.append(n)
        assert firsts == sorted(firsts), "order broken: %r" % firsts
    assert e.redis.cli("EXISTS", e.stream + ":dlq") == "0"
    assert "sentinel queues" in e.log_text()  # the worker said where it reconnects
    assert H.stop(e.proc, signal.SIGTERM, timeout=10) == 0
    # status (direct, -c) reads the new master: the old one is gone.
    old.kill()
    publish_cli(e, "late", wait=0)  # no replica left to wait for
    r = H.run_scaleno(["status", "-c", e.conf, "--json"])
    assert r.returncode == 0, (r.returncode, r.stderr)
    q = json.loads(r.stdout)["queues"][0]
    assert q["sample"]["ok"] and q["sample"]["backlog"] == 1, q
    print("  %d messages, %d handler runs (%d repeated); failover to the first message "
          "published after it processed: %.2fs" % (N, len(seen), len(seen) - N, took))


@suite.test
def test_mode3_failover_loses_nothing():
    failover_run(order=False)


@suite.test
def test_mode4_failover_keeps_order():
    failover_run(order=True)


@suite.test
def test_publish_wait_names_missing_replicas():
    """--wait 1 with one replica succeeds; --wait 2: the message is added, exit 2 says 1 of 2
    acknowledged."""
    s = redisenv.Sentinel()
    e = Env()
    on_sentinel(e, s)
    part, mid = publish_cli(e, "0", wait=1)
    assert s.replica.cli("XRANGE", e.stream, mid, mid).startswith(mid)  # WAIT: the replica has it
    r = H.run_scaleno(["publish", "-q", e.queue, "-c", e.conf, "--wait", "2", "--wait-timeout", "300ms",
                       "n", "1"])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "only 1 of 2 replicas acknowledged" in r.stderr, r.stderr
    assert s.master.cli("XLEN", e.stream) == "2"
    r = H.run_scaleno(["publish", "-q", e.queue, "-c", e.conf, "--wait", "x", "n", "1"])
    assert r.returncode == 1 and "--wait x" in r.stderr, (r.returncode, r.stderr)


@suite.test
def test_sentinels_with_a_password():
    """sentinel_password_file authenticates to the Sentinels; a wrong one is a clear error."""
    s = redisenv.Sentinel(password="s3cret")
    e = Env()
    on_sentinel(e, s)
    conf = open(e.conf).read()
    H.write(os.path.join(e.dir, "sentinel.pw"), "s3cret\n")
    H.write(e.conf, conf.replace(s.conf(), s.conf(' sentinel_password_file = "sentinel.pw";')))
    publish_cli(e, "1", wait=1)
    assert s.master.cli("XLEN", e.stream) == "1"
    H.write(os.path.join(e.dir, "sentinel.pw"), "wrong\n")
    r = H.run_scaleno(["publish", "-q", e.queue, "-c", e.conf, "n", "2"])
    assert r.returncode == 2 and "no master found" in r.stderr and "AUTH" in r.stderr, r.stderr
    assert "wrong" not in r.stderr and "s3cret" not in r.stderr  # never a password in a message


if __name__ == "__main__":
    suite.main()
