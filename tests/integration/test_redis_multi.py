#!/usr/bin/env python3
"""Queues on several servers (scaleno.conf(5) "redis" in a policy): two policies on two
standalone redis-servers, sampled by one agent, read by `scaleno status`, consumed by a
worker that connects to its queue's own server."""
import json
import os
import signal
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

suite = H.Suite()

POLICY = """queue: {
  name = "%s"; stream = "%s"; group = "g"; loss_critical = false;
  scale: { target = "none"; max = 1; interval = "200ms"; };
  worker: { command = [ "/bin/true" ]; protocol = "exec"; processes = 1; block = "200ms";
            listen = ""; drain_timeout = "1s"; kill_timeout = "3s"; };
  %s
};
"""


def setup():
    a, b = H.Redis(), H.Redis()
    d = H.tmpdir()
    port = H.free_port()
    conf = H.write(os.path.join(d, "scaleno.conf"), """
redis: { address = "%s"; };
nomad: { address = "http://127.0.0.1:1"; };
agent: { interval = "200ms"; listen = "127.0.0.1:%d"; };
""" % (a.address, port))
    H.write(os.path.join(d, "policies.d", "alpha.conf"), POLICY % ("alpha", "alpha", ""))
    H.write(os.path.join(d, "policies.d", "beta.conf"),
            POLICY % ("beta", "beta", 'redis: { address = "%s"; };' % b.address))
    return a, b, conf, port


def add(r, stream, n):
    r.pipe([["XGROUP", "CREATE", stream, "g", "0", "MKSTREAM"]] +
           [["XADD", stream, "*", "n", str(i)] for i in range(n)])


def group(r, stream):
    g = r.json("XINFO", "GROUPS", stream)
    return dict(zip(g[0][::2], g[0][1::2])) if g else {}


@suite.test
def test_one_agent_samples_two_servers():
    a, b, conf, port = setup()
    add(a, "alpha", 7)
    add(b, "beta", 11)
    add(a, "beta", 5)  # a decoy on the wrong server: beta must be read from b
    agent = H.spawn([H.SCALENO, "agent", "-c", conf], log_path=conf + ".agent.log")

    def backlogs():
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/v1/status" % port, timeout=2) as r:
                doc = json.loads(r.read())
        except OSError:
            return None
        got = {q["name"]: q["sample"]["backlog"] for q in doc.get("queues", [])}
        return got if got == {"alpha": 7, "beta": 11} else None
    H.wait_until(backlogs, timeout=20, what="the agent to read alpha from a and beta from b")
    r = H.run_scaleno(["status", "-c", conf, "--json"])
    assert r.returncode == 0, r.stderr
    qs = {q["name"]: q for q in json.loads(r.stdout)["queues"]}
    assert qs["alpha"]["redis"] == a.address and qs["beta"]["redis"] == b.address, qs
    assert qs["beta"]["sample"]["backlog"] == 11, qs
    # The worker of beta consumes on b; the decoy on a stays untouched.
    w = H.spawn([H.SCALENO, "worker", "-q", "beta", "-c", conf], log_path=conf + ".worker.log")
    def consumed():
        d = group(b, "beta")
        return d.get("entries-read") == 11 and d.get("pending") == 0
    H.wait_until(consumed, timeout=20, what="beta's worker to consume all of b's beta")
    assert group(a, "beta").get("entries-read") is None, "the worker read a's decoy stream"
    assert H.stop(agent, signal.SIGTERM, timeout=10) == 0
    # Without an agent, status samples each server itself.
    r = H.run_scaleno(["status", "-c", conf, "--json"])
    qs = {q["name"]: q for q in json.loads(r.stdout)["queues"]}
    assert r.returncode == 0 and qs["beta"]["sample"]["backlog"] == 0, r.stdout
    assert qs["alpha"]["sample"]["backlog"] == 7 and qs["beta"]["redis"] == b.address, r.stdout
    assert H.stop(w, signal.SIGTERM, timeout=10) == 0
    # One server down: status says which.
    b.kill()
    r = H.run_scaleno(["status", "-c", conf, "--json"])
    assert r.returncode == 2 and b.address in r.stderr and a.address not in r.stderr, (r.returncode, r.stderr)
    qs = {q["name"]: q for q in json.loads(r.stdout)["queues"]}
    assert qs["alpha"]["sample"]["backlog"] == 7, qs


if __name__ == "__main__":
    suite.main()
