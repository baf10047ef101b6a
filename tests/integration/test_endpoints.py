"""The endpoints of `scaleno agent` and `scaleno worker` (scaleno(8) and scaleno-worker(8),
ENDPOINTS), with the real binary, a real redis-server and the Nomad stand-in.

listen = "nomad:LABEL" binds to $NOMAD_ADDR_LABEL (two allocations on one host each serve
their own port; an unset variable stops the worker with a message naming it; check and the
agent accept the form); /healthz is liveness and /readyz readiness (Redis unreachable: not
ready, still alive); the metrics pass promtool's naming rules and carry no float noise; and
slow clients can neither take all connections nor hold one with a header line every few
seconds.
"""
import os
import re
import signal
import socket
import time
import urllib.error
import urllib.request

import harness
from agentenv import AgentEnv

suite = harness.Suite()
BUILD = os.environ.get("BUILD", "build")
TESTHANDLER = os.path.join(harness.TOP, BUILD, "handlers", "testhandler")


def get(port, path, host="127.0.0.1"):
    try:
        with urllib.request.urlopen("http://%s:%d%s" % (host, port, path), timeout=3) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return None, ""


class Worker:
    """A config for queue "jobs" whose worker.listen is `listen`, and a redis-server."""

    def __init__(self, listen, redis=None):
        self.dir = harness.tmpdir("scaleno-ep-")
        self.redis = redis or harness.Redis()
        self.conf = os.path.join(self.dir, "scaleno.conf")
        harness.write(self.conf, """
redis: { address = "%s"; connect_timeout = "300ms"; command_timeout = "1s"; };
agent: { policy_dir = "policies.d"; };
log: { level = "debug"; };
""" % self.redis.address)
        harness.write(os.path.join(self.dir, "policies.d", "jobs.conf"), """
queue: {
  name = "jobs";
  scale: { target = "none"; };
  worker: { command = [ "%s" ]; protocol = "pipe"; processes = 1; block = "300ms";
            drain_timeout = "2s"; listen = "%s"; };
};
""" % (TESTHANDLER, listen))
        self.procs = []

    def start(self, env=None, tag="w"):
        e = dict(os.environ)
        e.update(env or {})
        log = os.path.join(self.dir, "%s.log" % tag)
        p = harness.spawn([harness.SCALENO, "worker", "-q", "jobs", "-c", self.conf],
                          log_path=log, env=e)
        p.logpath = log
        self.procs.append(p)
        return p

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                assert harness.stop(p, signal.SIGTERM, timeout=10) == 0


def logtext(p):
    with open(p.logpath, errors="replace") as f:
        return f.read()


@suite.test
def nomad_label_two_allocations_on_one_host():
    w = Worker("nomad:metrics")
    try:
        ports = [harness.free_port(), harness.free_port()]
        for i, port in enumerate(ports):
            w.start({"NOMAD_ADDR_metrics": "127.0.0.1:%d" % port}, tag="w%d" % i)
        for port in ports:
            harness.wait_until(lambda: get(port, "/readyz")[0] == 200, timeout=15,
                               what="/readyz of the allocation on port %d" % port)
            status, text = get(port, "/metrics")
            assert status == 200 and "scaleno_messages_total" in text, (status, text[:200])
        for p in w.procs:
            assert "serving /metrics, /healthz and /readyz on 127.0.0.1:" in logtext(p)
    finally:
        w.close()


@suite.test
def nomad_label_unset_stops_the_worker_naming_it():
    w = Worker("nomad:metrics")
    try:
        r = harness.run_scaleno(["worker", "-q", "jobs", "-c", w.conf], timeout=20,
                                env={"NOMAD_ADDR_metrics": ""})
        assert r.returncode == 1, (r.returncode, r.stderr)
        assert "$NOMAD_ADDR_metrics is not set" in r.stderr, r.stderr
        assert "worker.listen" in r.stderr, r.stderr
        # check accepts the form (the variable exists only inside the allocation) ...
        r = harness.run_scaleno(["check", "-c", w.conf], timeout=20)
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        # ... and refuses a label Nomad cannot have.
        harness.write(os.path.join(w.dir, "policies.d", "jobs.conf"),
                      open(os.path.join(w.dir, "policies.d", "jobs.conf")).read()
                      .replace("nomad:metrics", "nomad:met rics"))
        r = harness.run_scaleno(["check", "-c", w.conf], timeout=20)
        assert r.returncode == 1 and "nomad:LABEL" in r.stderr + r.stdout, (r.stdout, r.stderr)
    finally:
        w.close()


@suite.test
def worker_readyz_follows_redis_healthz_stays():
    port = harness.free_port()
    w = Worker("127.0.0.1:%d" % port)
    try:
        w.start()
        harness.wait_until(lambda: get(port, "/readyz")[0] == 200, timeout=15, what="ready")
        assert get(port, "/healthz") == (200, "ok\n")
        w.redis.kill()
        harness.wait_until(lambda: get(port, "/readyz")[0] == 503, timeout=10,
                           what="/readyz to say 503 with Redis down")
        status, text = get(port, "/readyz")
        assert "redis unreachable" in text and text.endswith("\n") and text.count("\n") == 1, text
        assert get(port, "/healthz") == (200, "ok\n")
        w.redis.restart()
        harness.wait_until(lambda: get(port, "/readyz")[0] == 200, timeout=15,
                           what="/readyz back to 200 with Redis back")
    finally:
        w.close()


@suite.test
def agent_readyz_and_listen_form():
    env = AgentEnv(count=2, min=2, max=4)
    try:
        env.start_agent()
        harness.wait_until(lambda: get(env.port, "/readyz") == (200, "ok\n"), timeout=10,
                           what="the agent ready")
        env.redis.kill()
        harness.wait_until(lambda: get(env.port, "/readyz")[0] == 503, timeout=10,
                           what="the agent not ready with Redis down")
        assert "redis" in get(env.port, "/readyz")[1]
        assert get(env.port, "/healthz") == (200, "ok\n")
        env.redis.restart()
        harness.wait_until(lambda: get(env.port, "/readyz") == (200, "ok\n"), timeout=15,
                           what="the agent ready again")
        # promtool's rules: a gauge has no counter/histogram suffix, a counter ends in _total;
        # and no value carries float noise (17 significant digits).
        text = get(env.port, "/metrics")[1]
        types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
        assert "scaleno_decision_workers" in types, sorted(types)
        for name, t in types.items():
            if t == "gauge":
                assert not re.search(r"_(count|sum|bucket|total)$", name), name
            if t == "counter":
                assert name.endswith("_total"), name
        for line in text.splitlines():
            if line and not line.startswith("#"):
                digits = re.sub(r"[^0-9]", "", line.rsplit(" ", 1)[1].split("e")[0]).lstrip("0")
                assert len(digits) <= 16, line
    finally:
        env.close()
    # The agent accepts "nomad:LABEL": with the variable it serves there.
    port = harness.free_port()
    env = AgentEnv(count=2, min=2, max=4)
    try:
        harness.write(env.conf, open(env.conf).read().replace(
            "127.0.0.1:%d" % env.port, "nomad:http"))
        env.port = port
        e = dict(os.environ, NOMAD_ADDR_http="127.0.0.1:%d" % port)
        env.agent = harness.spawn([harness.SCALENO, "agent", "-c", env.conf], log_path=env.log,
                                  env=e)
        harness.wait_until(lambda: get(port, "/readyz") == (200, "ok\n"), timeout=15,
                           what="the agent on $NOMAD_ADDR_http")
    finally:
        env.close()


def slow_client(port, source):
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(3)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /healthz HTTP/1.1\r\n")
    return s


@suite.test
def slow_clients_cannot_take_the_endpoint_down():
    port = harness.free_port()
    w = Worker("127.0.0.1:%d" % port)
    env = AgentEnv(count=2, min=2, max=4)
    socks = []
    try:
        w.start()
        env.start_agent()
        for p in (port, env.port):
            harness.wait_until(lambda: get(p, "/readyz")[0] == 200, timeout=15, what="ready")
            # Seventy clients from one address, each sending a header line now and then.
            for _ in range(70):
                try:
                    socks.append(slow_client(p, "127.0.0.2"))
                except OSError:
                    pass
            t0 = time.monotonic()
            for i, s in enumerate(socks):
                try:
                    s.sendall(b"X-Slow-%d: 1\r\n" % i)
                except OSError:
                    pass
            # Another address still gets its answer at once.
            assert get(p, "/healthz")[0] == 200, "endpoint on %d taken down" % p
            # A client that trickles its headers is cut off within the header timeout.
            s = slow_client(p, "127.0.0.3")
            closed_at = None
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    s.sendall(b"X-Trickle: 1\r\n")
                    s.settimeout(1)
                    if s.recv(1024) == b"":
                        closed_at = time.monotonic()
                        break
                except socket.timeout:
                    continue
                except OSError:
                    closed_at = time.monotonic()
                    break
            s.close()
            assert closed_at is not None, "a trickling client kept its connection for 15 s"
            assert closed_at - t0 < 12, closed_at - t0
            for s in socks:
                s.close()
            socks = []
    finally:
        for s in socks:
            s.close()
        w.close()
        env.close()


@suite.test
def nomad_job_specs_use_a_dynamic_port_and_readyz():
    with open(os.path.join(harness.TOP, "contrib", "nomad", "worker.nomad.hcl")) as f:
        hcl = f.read()
    code = "\n".join(l.split("#")[0] for l in hcl.splitlines())
    assert re.search(r'port\s+"metrics"\s*\{\s*\}', code), "no dynamic port"
    assert "static" not in code
    assert re.search(r'path\s*=\s*"/readyz"', code)
    assert 'worker.listen = "nomad:metrics"' in hcl
    with open(os.path.join(harness.TOP, "contrib", "nomad", "agent.nomad.hcl")) as f:
        assert re.search(r'path\s*=\s*"/readyz"', f.read())


if __name__ == "__main__":
    suite.main()
