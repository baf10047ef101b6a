#!/usr/bin/env python3
"""scaleno dlq list|show|replay|purge and scaleno resume, against a real redis-server.

The dead-letter entries are written the way the worker writes them (the
fixed x- fields), so these tests need no worker; test_worker_modes.py covers
the worker writing them.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

suite = H.Suite()


class Env:
    def __init__(self, partitions=1, order=False):
        self.dir = H.tmpdir()
        self.redis = H.Redis()
        self.stream = "pay"
        self.dlq = "pay:dlq"
        self.conf = H.write(os.path.join(self.dir, "scaleno.conf"),
                            'redis: { address = "%s"; };\n' % self.redis.address)
        H.write(os.path.join(self.dir, "policies.d", "pay.conf"), """queue: {
  name = "pay"; stream = "pay"; group = "g"; partitions = %d;
  loss_critical = true; order_critical = %s;
  scale: { target = "none"; max = 1; };
  worker: { command = [ "/bin/true" ]; listen = ""; };
};
""" % (partitions, str(order).lower()))

    def run(self, *args):
        return H.run_scaleno(list(args) + ["-c", self.conf])

    def dead(self, n, origin="pay", error="boom", extra=()):
        """Add a dead-lettered entry for message n; returns its DLQ id."""
        oid = self.redis.cli("XADD", origin, "*", "n", str(n), *extra)
        return self.redis.cli("XADD", self.dlq, "*", "n", str(n), *extra,
                              "x-origin-stream", origin, "x-origin-id", oid, "x-attempts", "4",
                              "x-first-failed-ms", "1000", "x-last-failed-ms", "2000",
                              "x-error", error, "x-error-history", "1000 main x4: " + error)

    def ids(self, key):
        return [e[0] for e in self.redis.json("XRANGE", key, "-", "+") or []]


@suite.test
def test_list_and_show():
    e = Env()
    a = e.dead(1, error="timeout after 30s")
    b = e.dead(2, error="bad\x01byte", extra=("blob", "x" * 10000))
    r = e.run("dlq", "list", "-q", "pay")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("pay:dlq: 2 dead-lettered"), lines
    assert lines[1].split()[:4] == ["ID", "ORIGIN-ID", "ATTEMPTS", "AGE"], lines
    assert lines[2].split()[0] == a and "timeout after 30s" in lines[2], lines
    assert lines[3].split()[0] == b and "bad\\x01byte" in lines[3], lines
    r = e.run("dlq", "list", "-q", "pay", "-n", "1")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 3 and "use -n" in r.stdout, r.stdout
    r = e.run("dlq", "show", "-q", "pay", b)
    assert r.returncode == 0, r.stderr
    assert "id: " + b in r.stdout and "x-error: bad\\x01byte" in r.stdout, r.stdout
    assert "(10000 bytes in all)" in r.stdout, r.stdout[:300]
    r = e.run("dlq", "show", "-q", "pay", "1-1")
    assert r.returncode == 2 and "no entry 1-1" in r.stderr, (r.returncode, r.stderr)


@suite.test
def test_replay_ids_and_all():
    e = Env()
    dl = [e.dead(i) for i in range(5)]
    before = len(e.ids("pay"))
    r = e.run("dlq", "replay", "-q", "pay", dl[1], dl[3])
    assert r.returncode == 0, r.stderr
    assert "2 replayed, 0 not found, 0 failed" in r.stdout, r.stdout
    assert e.ids(e.dlq) == [dl[0], dl[2], dl[4]]
    tail = e.redis.json("XRANGE", "pay", "-", "+")[-2:]
    # Original fields only: the x- failure fields stay behind.
    assert [t[1] for t in tail] == [["n", "1"], ["n", "3"]], tail
    r = e.run("dlq", "replay", "-q", "pay", dl[1])
    assert r.returncode == 2 and "0 replayed, 1 not found" in r.stdout, (r.returncode, r.stdout)
    r = e.run("dlq", "replay", "-q", "pay", "--all")
    assert r.returncode == 0 and "3 replayed" in r.stdout, r.stdout
    assert e.ids(e.dlq) == []
    assert len(e.ids("pay")) == before + 5


@suite.test
def test_replay_goes_to_the_partition_of_origin():
    e = Env(partitions=3, order=True)
    d = e.dead(9, origin="pay:2")
    r = e.run("dlq", "replay", "-q", "pay", d)
    assert r.returncode == 0 and "-> pay:2 " in r.stdout, r.stdout
    assert "order-critical" in r.stdout
    assert e.redis.json("XRANGE", "pay:2", "-", "+")[-1][1] == ["n", "9"]
    # An entry without an origin cannot be replayed and stays.
    bad = e.redis.cli("XADD", e.dlq, "*", "n", "x")
    r = e.run("dlq", "replay", "-q", "pay", bad)
    assert r.returncode == 2 and "x-origin-stream" in r.stderr, r.stderr
    assert e.ids(e.dlq) == [bad]


@suite.test
def test_replay_wide_entry():
    """An entry with more fields than Redis' Lua can unpack is replayed too."""
    e = Env()
    wide = []
    for i in range(5000):
        wide += ["f%d" % i, str(i)]
    d = e.dead(1, extra=tuple(wide))
    r = e.run("dlq", "replay", "-q", "pay", d)
    assert r.returncode == 0 and "1 replayed" in r.stdout, (r.stdout, r.stderr)
    assert e.ids(e.dlq) == []
    last = e.redis.json("XRANGE", "pay", "-", "+")[-1][1]
    assert len(last) == 2 * 5001 and last[-2:] == ["f4999", "4999"], len(last)


@suite.test
def test_purge_range_and_all():
    e = Env()
    dl = [e.dead(i) for i in range(6)]
    r = e.run("dlq", "purge", "-q", "pay", "--range", dl[1], dl[3])
    assert r.returncode == 0 and "3 deleted" in r.stdout, r.stdout
    assert e.ids(e.dlq) == [dl[0], dl[4], dl[5]]
    r = e.run("dlq", "purge", "-q", "pay", "--all")
    assert r.returncode == 0 and "3 deleted" in r.stdout, r.stdout
    assert e.ids(e.dlq) == []


@suite.test
def test_usage_errors():
    e = Env()
    for args, needle in (
            (["dlq"], "an action is required"),
            (["dlq", "frob", "-q", "pay"], "unknown action"),
            (["dlq", "list"], "-q QUEUE is required"),
            (["dlq", "show", "-q", "pay"], "exactly one ID"),
            (["dlq", "show", "-q", "pay", "nope"], "not a stream id"),
            (["dlq", "replay", "-q", "pay"], "IDs or --all"),
            (["dlq", "replay", "-q", "pay", "--all", "1-1"], "IDs or --all"),
            (["dlq", "purge", "-q", "pay"], "--all or --range"),
            (["dlq", "purge", "-q", "pay", "--range", "x", "+"], "stream ids"),
            (["dlq", "list", "-q", "pay", "-n", "0"], "from 1 to 100000"),
            (["dlq", "list", "-q", "nosuch"], "no queue named"),
            (["resume", "-q", "pay", "-p", "x"], "expected a number"),
            (["resume", "-q", "pay", "-p", "3"], "1 partition(s)"),
            (["resume"], "-q QUEUE is required")):
        r = e.run(*args)
        assert r.returncode == 1, (args, r.returncode, r.stderr)
        assert needle in r.stderr, (args, r.stderr)
    assert e.run("dlq", "-h").returncode == 0
    assert "usage: scaleno resume" in e.run("resume", "-h").stdout
    # Redis down: a runtime failure, not a usage error.
    e.redis.kill()
    r = e.run("dlq", "list", "-q", "pay")
    assert r.returncode == 2 and r.stderr.strip(), r.stderr


def halt(e, stream, oid, attempts="5", error="card declined"):
    e.redis.cli("HSET", stream + ":halt", "id", oid, "error", error, "attempts", attempts,
                "time-ms", "1000", "consumer", "h/0", "partition", "0", "stream", stream)


@suite.test
def test_resume_skip_moves_to_dlq_atomically():
    e = Env(partitions=2, order=True)
    e.redis.cli("XGROUP", "CREATE", "pay:1", "g", "0", "MKSTREAM")
    oid = e.redis.cli("XADD", "pay:1", "*", "n", "1", "k", "v")
    e.redis.cli("XADD", "pay:1", "*", "n", "2")
    e.redis.cli("XREADGROUP", "GROUP", "g", "h/0", "COUNT", "1", "STREAMS", "pay:1", ">")
    halt(e, "pay:1", oid)
    r = e.run("resume", "-q", "pay", "-p", "0", "--skip")
    assert r.returncode == 2 and "no halted partition" in r.stderr, r.stderr
    r = e.run("resume", "-q", "pay", "-p", "1", "--skip")
    assert r.returncode == 0, r.stderr
    assert "skipped %s into pay:dlq" % oid in r.stdout, r.stdout
    assert e.redis.cli("EXISTS", "pay:1:halt") == "0"
    assert e.redis.cli("XPENDING", "pay:1", "g").split("\n")[0] == "0"  # acknowledged
    f = e.redis.json("XRANGE", e.dlq, "-", "+")[0][1]
    f = dict(zip(f[::2], f[1::2]))
    assert f["n"] == "1" and f["k"] == "v" and f["x-origin-stream"] == "pay:1", f
    assert f["x-origin-id"] == oid and f["x-attempts"] == "5", f
    assert f["x-error"].startswith("card declined"), f


@suite.test
def test_resume_retry_resets_delivery_count():
    e = Env()
    e.redis.cli("XGROUP", "CREATE", "pay", "g", "0", "MKSTREAM")
    oid = e.redis.cli("XADD", "pay", "*", "n", "1")
    e.redis.cli("XREADGROUP", "GROUP", "g", "h/0", "STREAMS", "pay", ">")
    for _ in range(2):  # delivered three times in all
        e.redis.cli("XCLAIM", "pay", "g", "h/0", "0", oid)
    assert e.redis.json("XPENDING", "pay", "g", "-", "+", "10")[0][3] >= 3
    halt(e, "pay", oid)
    r = e.run("resume", "-q", "pay")
    assert r.returncode == 0 and "resumed; its consumer retries " + oid in r.stdout, r.stdout
    assert e.redis.cli("EXISTS", "pay:halt") == "0"
    p = e.redis.json("XPENDING", "pay", "g", "-", "+", "10")
    assert p[0][0] == oid and p[0][1] == "h/0" and p[0][3] == 0, p  # still pending, count reset
    assert e.ids(e.dlq) == []


if __name__ == "__main__":
    suite.main()
