#!/usr/bin/env python3
"""Redis Cluster (scaleno.conf(5) "redis"): six nodes, two hash-tagged queues consumed
by two workers; CLUSTER FAILOVER of one queue's master, and the other queue's slot
migrated to another master key by key (ASK) while it is consumed. Nothing is lost,
nothing is restarted."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import redisenv  # noqa: E402
from test_worker_modes import HANDLER, children  # noqa: E402

suite = H.Suite()

POLICY = """queue: {
  name = "%s"; stream = "%s"; group = "g"; loss_critical = true; order_critical = %s;
  scale: { target = "none"; max = 1; };
  worker: { command = [ "%s", "%s" ]; protocol = "pipe"; processes = 2; batch = 8;
            timeout = "2s"; claim_idle = "3s"; block = "200ms"; retries = 1; backoff = "10ms";
            max_backoff = "40ms"; retry_delays = [ "200ms" ]; drain_timeout = "1500ms";
            kill_timeout = "3s"; listen = ""; };
};
"""


def ok_lines(path):
    try:
        with open(path) as f:
            return [line.split()[1] for line in f if line.startswith("ok ")]
    except FileNotFoundError:
        return []


@suite.test
def test_failover_and_migration_lose_nothing():
    N = 200
    c = redisenv.Cluster()
    d = H.tmpdir()
    oklog = os.path.join(d, "ok.log")
    handler = H.write(os.path.join(d, "handler.py"), HANDLER)
    conf = H.write(os.path.join(d, "scaleno.conf"), c.conf() + '\nlog: { level = "debug"; };\n')
    H.write(os.path.join(d, "policies.d", "alpha.conf"), POLICY % ("alpha", "{alpha}", "false",
                                                                     sys.executable, handler))
    H.write(os.path.join(d, "policies.d", "beta.conf"), POLICY % ("beta", "{beta}", "true",
                                                                    sys.executable, handler))
    r = H.run_scaleno(["check", "-c", conf])
    assert r.returncode == 0, r.stdout + r.stderr
    am, _ = c.owner("{alpha}")
    bm, bslot = c.owner("{beta}")
    if am.address == bm.address:  # keep the two events apart: move beta elsewhere first
        other = [n for n in c.nodes if c.node_info()[n.address][1] == "master" and n is not am][0]
        c.migrate_slot(bslot, bm, other)
        bm = other
    for q in ("alpha", "beta"):
        c.ccli("EVAL", "for i = 1, tonumber(ARGV[2]) do redis.call('XADD', KEYS[1], '*', 'n', "
               "ARGV[1] .. string.format('%04d', i)) end", 1, "{%s}" % q, q[0], N // 2)
    env = {"OKLOG": oklog}
    wa = H.spawn([H.SCALENO, "worker", "-q", "alpha", "-c", conf], log_path=os.path.join(d, "alpha.log"),
                 env=env)
    wb = H.spawn([H.SCALENO, "worker", "-q", "beta", "-c", conf], log_path=os.path.join(d, "beta.log"),
                 env=env)
    kids = H.wait_until(lambda: len(ok_lines(oklog)) >= 40 and
                        (sorted(children(wa.pid)), sorted(children(wb.pid))), timeout=30,
                        what="both workers consuming")

    # CLUSTER FAILOVER of alpha's master, while alpha is consumed and published to.
    rep = c.replica_of(am)
    t0 = time.monotonic()
    asked = [0.0]

    def took_over():
        # A manual failover that cannot finish in Redis' own time limit (5 s: the replica
        # must first catch up with its master, slow on a loaded machine) is given up by
        # Redis, as an operator would see it: ask again.
        if rep.cli("ROLE").split("\n")[0] == "master":
            return True
        if time.monotonic() - asked[0] > 8:
            rep.cli("CLUSTER", "FAILOVER")
            asked[0] = time.monotonic()
        return False
    H.wait_until(took_over, timeout=60, interval=0.2, what="alpha's replica to take over")
    r = H.run_scaleno(["publish", "-q", "alpha", "-c", conf, "n", "a-late"])
    assert r.returncode == 0, r.stderr
    H.wait_until(lambda: "a-late" in ok_lines(oklog), timeout=30, what="alpha after the failover")
    took = time.monotonic() - t0

    # beta's slot to another master, key by key, publishing between the keys.
    dst = [n for n in c.nodes if c.node_info()[n.address][1] == "master" and n is not bm and
           n is not rep][0]
    late = []
    sent_asking = [0]

    def asking():
        stats = dst.cli("INFO", "commandstats")
        return int(stats.split("cmdstat_asking:calls=")[1].split(",")[0]) if "cmdstat_asking" in stats else 0

    def step():
        # The test's own message goes where the stream is now (ASKING when it moved).
        late.append("b-mig%02d" % len(late))
        if bm.cli("EXISTS", "{beta}") == "1":
            bm.cli("XADD", "{beta}", "*", "n", late[-1])
            return
        dst.pipe([["ASKING"], ["XADD", "{beta}", "*", "n", late[-1]]])
        sent_asking[0] += 1
        # The stream has moved, the slot not yet: the workers must follow an ASK.
        H.wait_until(lambda: asking() > sent_asking[0], timeout=15,
                     what="a worker to follow ASK to the importing node")
    c.migrate_slot(bslot, bm, dst, step)
    worker_asks = asking() - sent_asking[0]
    late.append("b-mig%02d" % len(late))
    r = H.run_scaleno(["publish", "-q", "beta", "-c", conf, "n", late[-1]])  # MOVED, then the new map
    assert r.returncode == 0, r.stderr
    want = {"a%04d" % i for i in range(1, N // 2 + 1)} | {"b%04d" % i for i in range(1, N // 2 + 1)} | \
        {"a-late"} | set(late)
    H.wait_until(lambda: want <= set(ok_lines(oklog)), timeout=60, what="every message processed")

    def pending(q):
        g = c.ccli("XINFO", "GROUPS", "{%s}" % q).split("\n")
        return int(g[g.index("pending") + 1])
    H.wait_until(lambda: pending("alpha") == 0 and pending("beta") == 0, timeout=30,
                 what="nothing pending")
    assert wa.poll() is None and wb.poll() is None, "a worker exited"
    assert (sorted(children(wa.pid)), sorted(children(wb.pid))) == kids, "a consumer was restarted"
    beta = [n for n in ok_lines(oklog) if n.startswith("b")]
    firsts = []
    for n in beta:
        if n not in firsts:
            firsts.append(n)
    mig = [n for n in firsts if n.startswith("b-mig")]
    assert mig == sorted(mig) and [n for n in firsts if n[1:].isdigit()] == \
        sorted(n for n in firsts if n[1:].isdigit()), "beta's order broken: %r" % firsts
    assert c.ccli("EXISTS", "{alpha}:dlq") == "0" and c.ccli("EXISTS", "{beta}:dlq") == "0"
    assert worker_asks > 0, "no ASK was followed during the migration"
    assert H.stop(wa, signal.SIGTERM, timeout=10) == 0
    assert H.stop(wb, signal.SIGTERM, timeout=10) == 0
    print("  %d messages, %d handler runs; CLUSTER FAILOVER to a message published after it "
          "processed: %.2fs; ASKs the workers followed: %d" %
          (len(want), len(ok_lines(oklog)), took, worker_asks))


@suite.test
def test_check_refuses_a_stream_without_hash_tag():
    d = H.tmpdir()
    conf = H.write(os.path.join(d, "scaleno.conf"), 'redis: { cluster = [ "127.0.0.1:7000" ]; };\n')
    H.write(os.path.join(d, "policies.d", "plain.conf"),
            'queue: { name = "plain"; scale: { target = "none"; }; };\n')
    r = H.run_scaleno(["check", "-c", conf])
    assert r.returncode == 1 and 'stream "plain" has no hash tag' in r.stdout + r.stderr, \
        (r.returncode, r.stdout, r.stderr)


if __name__ == "__main__":
    suite.main()
