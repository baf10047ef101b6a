#!/usr/bin/env python3
"""scaleno worker under the faults a review found: a handler answering twice,
Redis coming back empty, a read blocked past the partition lease, held
entries claimed by others (real redis-server, real `scaleno worker`)."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from test_worker_modes import Env  # noqa: E402

suite = H.Suite()


@suite.test
def test_answered_twice_loses_nothing():
    """A pipelined batch where one message is answered twice: no failed message is acknowledged."""
    e = Env(worker={"processes": 1, "batch": 16, "retries": 0})
    msgs = []
    for i in range(48):
        f = {"n": str(i)}
        if i % 8 == 1:
            f["twice"] = "1"
        if i % 8 == 2 or i % 8 == 7:
            f["poison"] = "1"
        msgs.append(f)
    e.publish(msgs)
    e.start()
    poison = {f["n"] for f in msgs if "poison" in f}
    good = {f["n"] for f in msgs if "poison" not in f}

    def done():
        ok = {n for n, _, _ in e.ok()}
        return good <= ok and poison <= set(e.dlq())
    H.wait_until(done, timeout=40, interval=0.2, what="every good message ok, every poison in the DLQ")
    assert not poison & {n for n, _, _ in e.ok()}
    assert "answered more lines than it was sent messages" in e.log_text()
    assert H.stop(e.proc) == 0



def lease_worker(block):
    return {"timeout": '"1s"', "block": block, "drain_timeout": '"11s"', "kill_timeout": '"12s"'}


@suite.test
def test_check_refuses_block_past_the_lease():
    """check: worker.block at or above the partition lease (timeout + 5s, at least 10s) is an error."""
    e = Env(order=True, partitions=2, worker=lease_worker('"10s"'))
    r = H.run_scaleno(["check", "-c", e.conf])
    assert r.returncode != 0, r.stdout + r.stderr
    assert "must stay below the partition lease (10s" in r.stderr, r.stderr
    ok = Env(order=True, partitions=2, worker=lease_worker('"9s"'))
    r = H.run_scaleno(["check", "-c", ok.conf])
    assert r.returncode == 0, r.stdout + r.stderr


@suite.test
def test_no_partition_no_long_sleep():
    """A consumer holding no partition tries again within a lease round, not after a whole block."""
    e = Env(order=True, partitions=1, worker=dict(lease_worker('"9s"'), processes=2))
    e.start()
    members = e.stream + ":members"
    H.wait_until(lambda: len(e.redis.json("ZRANGE", members, "0", "-1") or []) == 2, timeout=20,
                 what="two consumers in the members set")
    seen = {}
    t_end = time.monotonic() + 4.5
    while time.monotonic() < t_end:
        z = e.redis.json("ZRANGE", members, "0", "-1", "WITHSCORES") or []
        for name, score in zip(z[::2], z[1::2]):
            seen.setdefault(name, set()).add(score)
        time.sleep(0.1)
    beats = sorted(len(v) for v in seen.values())
    # The one without the lease heartbeats every lease round (1 s); before, once per block (9 s).
    assert beats[-1] >= 3, seen
    assert H.stop(e.proc) == 0


@suite.test
def test_held_entries_not_reclaimed():
    """A consumer working through a long batch keeps its entries: no other consumer runs them twice."""
    e = Env(worker={"processes": 3, "batch": 16, "timeout": '"2s"', "claim_idle": '"3s"',
                    "retries": 0})
    e.publish([{"n": str(i), "slow": "500"} for i in range(20)])
    e.start()
    H.wait_until(lambda: len({n for n, _, _ in e.ok()}) == 20, timeout=40, interval=0.2,
                 what="all 20 messages handled")
    with open(e.oklog) as f:
        starts = [line.split()[1] for line in f if line.startswith("start ")]
    dup = {n for n in starts if starts.count(n) > 1}
    assert not dup, "run twice: %s" % sorted(dup)
    assert not re.search(r"reclaimed \d+ entries", e.log_text())
    assert H.stop(e.proc) == 0



@suite.test
def test_redis_back_empty():
    """Redis loses every key (FLUSHALL): the consumers create their groups again and go on,
    whether the producer only XADDs or recreates the stream and its group first."""
    e = Env(worker={"processes": 2})
    e.publish([{"n": "a%d" % i} for i in range(10)])
    e.start()
    H.wait_until(lambda: len(e.ok()) >= 10, timeout=20, what="the first messages")
    for round_, make_group in ((1, False), (2, True)):
        e.redis.cli("FLUSHALL")
        if make_group:
            e.redis.cli("XGROUP", "CREATE", e.stream, "g", "0", "MKSTREAM")
        names = ["r%d-%d" % (round_, i) for i in range(10)]
        e.publish([{"n": n} for n in names])
        H.wait_until(lambda: set(names) <= {n for n, _, _ in e.ok()}, timeout=30, interval=0.2,
                     what="messages published after FLUSHALL (round %d)" % round_)
    assert "creating them again" in e.log_text()
    assert H.stop(e.proc) == 0


@suite.test
def test_redis_down_logs_one_delay_per_line():
    """Redis down under a worker: each log line names one delay, never "next attempt in ..."
    and "(retrying in ...)" together, and the worker goes on once Redis is back."""
    e = Env(worker={"processes": 1})
    e.publish([{"n": "0"}])
    e.start()
    H.wait_until(lambda: {n for n, _, _ in e.ok()} == {"0"}, timeout=30, what="the first message")
    e.redis.kill()
    H.wait_until(lambda: len(re.findall(r"next attempt in|retrying in", e.log_text())) >= 12,
                 timeout=60, interval=0.2, what="the consumer to report Redis down several times")
    doubled = [line for line in e.log_text().splitlines()
               if "next attempt in" in line and "retrying in" in line]
    assert not doubled, "two delays on one line: %r" % doubled[:3]
    e.redis.restart()
    e.publish([{"n": "1"}])
    H.wait_until(lambda: {n for n, _, _ in e.ok()} >= {"0", "1"}, timeout=60, interval=0.2,
                 what="the worker to go on after Redis is back")
    assert H.stop(e.proc) == 0


if __name__ == "__main__":
    suite.main()
