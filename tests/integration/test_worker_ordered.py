#!/usr/bin/env python3
"""Order-critical queues ride out an outage (scaleno-worker(8) "MODES"):
retry_for, halt_probe, permanent failures, the halted/resumed alerts,
resume --skip (real redis-server, real `scaleno worker`).

SCALENO_OUTAGE_S (default 6) sets the handler outage of the first test; the
issue's acceptance run uses 30."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from test_worker_modes import Env  # noqa: E402

suite = H.Suite()
OUTAGE_S = float(os.environ.get("SCALENO_OUTAGE_S", "6"))


def halt_keys(e, nparts):
    if nparts == 1:
        return [e.stream + ":halt"]
    return ["%s:%d:halt" % (e.stream, p) for p in range(nparts)]


@suite.test
def test_mode4_rides_out_an_outage_with_the_defaults():
    """Every message answered "retry" for OUTAGE_S seconds: nothing halts, order is kept."""
    P, N = 4, 25
    # Only what the test needs besides the defaults of retries, backoff, max_backoff,
    # retry_for and halt_probe.
    e = Env(order=True, partitions=P, worker={"processes": 2, "retries": 3, "backoff": '"200ms"',
                                              "max_backoff": '"10s"', "timeout": '"30s"',
                                              "drain_timeout": '"4s"', "kill_timeout": '"5s"',
                                              "block": '"1s"'},
            env={"OUTAGE": os.path.join(H.tmpdir(), "outage")})
    H.write(e.env["OUTAGE"], "")
    e.start()
    t0 = time.monotonic()
    halted_seen = []
    sent = 0
    # Publish throughout the outage, round robin over the partitions.
    while time.monotonic() - t0 < OUTAGE_S:
        if sent < N * P:
            p = sent % P
            e.publish([{"n": "p%d-%03d" % (p, sent // P)}], stream="%s:%d" % (e.stream, p))
            sent += 1
        if any(e.redis.cli("EXISTS", k) == "1" for k in halt_keys(e, P)):
            halted_seen.append(time.monotonic() - t0)
        time.sleep(0.05)
    os.unlink(e.env["OUTAGE"])
    t_end = time.monotonic()
    for i in range(sent, N * P):
        p = i % P
        e.publish([{"n": "p%d-%03d" % (p, i // P)}], stream="%s:%d" % (e.stream, p))

    def all_done():
        if any(e.redis.cli("EXISTS", k) == "1" for k in halt_keys(e, P)):
            halted_seen.append(time.monotonic() - t0)
        return len({n for n, _, _ in e.ok()}) == N * P
    H.wait_until(all_done, timeout=60, interval=0.2, what="every message handled after the outage")
    drained = time.monotonic() - t_end
    ok = [n for n, _, _ in e.ok()]
    for p in range(P):
        seq = [n for n in ok if n.startswith("p%d-" % p)]
        # Redeliveries of the message in flight are allowed; going back is not.
        dedup = [n for i, n in enumerate(seq) if i == 0 or n != seq[i - 1]]
        assert dedup == sorted(set(seq)), "partition %d out of order: %r" % (p, seq)
    assert not halted_seen, "a partition halted during the outage at %r s" % halted_seen[:3]
    assert "halted" not in e.alert_kinds()
    retried = e.metric("scaleno_messages_total", result="retried")
    print("  outage %.0fs: %d messages, all handled %.1fs after it ended, in order per "
          "partition, %d retries, no halt" % (OUTAGE_S, N * P, drained, retried or 0))
    assert H.stop(e.proc) == 0


@suite.test
def test_mode4_fail_halts_at_once_then_probe_resumes():
    """A permanent failure halts at once; the probe retries the head every halt_probe."""
    e = Env(order=True, worker={"processes": 1, "halt_probe": '"1s"'})
    e.publish([{"n": str(i), **({"permfail": "1"} if i == 3 else {})} for i in range(8)])
    e.start()
    halt = e.stream + ":halt"
    H.wait_until(lambda: e.redis.cli("EXISTS", halt) == "1", timeout=15, what="the halt record")
    rec = dict(zip(*[iter(e.redis.cli("HGETALL", halt).split("\n"))] * 2))
    assert rec["attempts"] == "1" and "permanent" in rec["error"], rec  # no retries for a fail
    H.wait_until(lambda: "halted" in e.alert_kinds(), timeout=10, what="the halted alert")
    assert "partition 0 (%s) HALTED" % e.stream in e.log_text()
    assert "-p 0" in e.log_text() and "-p N" not in e.log_text()
    # The probe keeps trying (and counting attempts) while it fails.
    H.wait_until(lambda: int(e.redis.cli("HGET", halt, "attempts") or 0) >= 2, timeout=10,
                 what="a failed probe")
    H.write(e.fixed, "")
    H.wait_until(lambda: [n for n, _, _ in e.ok()] == [str(i) for i in range(8)], timeout=15,
                 what="the probe to succeed and the rest to follow in order")
    assert e.redis.cli("EXISTS", halt) == "0"
    H.wait_until(lambda: "resumed" in e.alert_kinds(), timeout=10, what="the resumed alert")
    assert H.stop(e.proc) == 0


@suite.test
def test_mode2_fail_drops_at_once():
    """Mode 2: a permanent failure is dropped at once, though retry_for is 5 minutes."""
    e = Env(loss=False, order=True, worker={"processes": 1})
    e.publish([{"n": str(i), **({"permfail": "1"} if i == 1 else {})} for i in range(4)])
    e.start()
    H.wait_until(lambda: [n for n, _, _ in e.ok()] == ["0", "2", "3"], timeout=15,
                 what="the others, in order")
    assert "after 1 attempt(s)" in e.log_text()
    assert H.stop(e.proc) == 0


@suite.test
def test_resume_skip_needs_partition_and_handles_huge_messages():
    """resume --skip: -p or --all required; a halting message of 5,000 fields is skipped."""
    e = Env(order=True, partitions=2)
    s = e.stream + ":1"
    e.redis.cli("XGROUP", "CREATE", s, "g", "0", "MKSTREAM")
    fields = []
    for i in range(5000):
        fields += ["f%d" % i, "v%d" % i]
    e.redis.pipe([["XADD", s, "*"] + fields])
    oid = e.redis.json("XRANGE", s, "-", "+")[0][0]
    e.redis.cli("XREADGROUP", "GROUP", "g", "h/0", "COUNT", "1", "STREAMS", s, ">")
    e.redis.cli("HSET", s + ":halt", "id", oid, "error", "boom", "attempts", "4", "time-ms", "1",
                "consumer", "h/0", "partition", "1", "stream", s)
    r = H.run_scaleno(["resume", "-q", e.queue, "-c", e.conf, "--skip"])
    assert r.returncode == 1 and "needs -p" in r.stderr, (r.returncode, r.stderr)
    r = H.run_scaleno(["resume", "-q", e.queue, "-c", e.conf, "--skip", "--all"])
    assert r.returncode == 0, r.stderr
    assert "skipped %s into %s:dlq" % (oid, e.stream) in r.stdout, r.stdout
    assert "after 4 attempt(s): boom" in r.stdout, r.stdout
    assert e.redis.cli("EXISTS", s + ":halt") == "0"
    assert e.redis.cli("XPENDING", s, "g").split("\n")[0] == "0"
    d = e.redis.json("XRANGE", e.stream + ":dlq", "-", "+")
    assert len(d) == 1 and len(d[0][1]) >= 2 * 5000, len(d)
    f = dict(zip(d[0][1][::2], d[0][1][1::2]))
    assert f["f4999"] == "v4999" and f["x-origin-id"] == oid and f["x-attempts"] == "4"


if __name__ == "__main__":
    suite.main()
