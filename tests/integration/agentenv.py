"""An environment for agent tests: redis-server, the Nomad stand-in, `scaleno agent`, and a
"world" thread that plays producers and workers against the real Redis.

The world adds messages at a chosen rate and consumes them at a rate proportional to the
number of allocations the stand-in reports running — so the agent's scale calls change how
fast the queue drains, as in production. Both sides run server-side Lua in the real Redis
through redis-cli; nothing is mocked.
"""
import json
import os
import random
import re
import signal
import threading
import time
import urllib.request

import harness
from standin import NomadStandin

PRODUCE = """
local n = tonumber(ARGV[1])
for i = 1, n do redis.call('XADD', KEYS[1], '*', 'n', tostring(i)) end
return n
"""

# Consume up to ARGV[1] entries: read them for the group and acknowledge them.
CONSUME = """
local ok, r = pcall(redis.call, 'XREADGROUP', 'GROUP', ARGV[2], 'world', 'COUNT', ARGV[1], 'STREAMS', KEYS[1], '>')
if not ok or not r then return 0 end
local n = 0
for _, e in ipairs(r[1][2]) do redis.call('XACK', KEYS[1], ARGV[2], e[1]); n = n + 1 end
return n
"""


def main_conf(redis, nomad, listen, interval="250ms", timeout="1s", extra_agent=""):
    return """
redis: { address = "%s"; command_timeout = "500ms"; connect_timeout = "300ms"; };
nomad: { address = "%s"; timeout = "%s"; };
agent: { interval = "%s"; policy_dir = "policies.d"; listen = "%s"; %s };
log:   { level = "debug"; };
""" % (redis.address, nomad.url, timeout, interval, listen, extra_agent)


def policy_conf(name="payments", job="payments-worker", min=2, max=20, bpw=100, max_age="10s",
                startup="1s", up_cooldown="1s", down_cooldown="2s", stabilization="3s",
                up_step="100%", down_step=1, interval="250ms", target="nomad", extra=""):
    return """
queue: {
  name = "%s"; stream = "%s"; group = "%s";
  loss_critical = false; order_critical = false;
  scale: {
    target = "%s"; job = "%s"; group = "worker";
    min = %d; max = %d; interval = "%s";
    backlog_per_worker = %d; max_age = "%s"; startup = "%s";
    up:   { cooldown = "%s"; max_step = "%s"; };
    down: { cooldown = "%s"; stabilization = "%s"; max_step = %d; };
  };
  worker: { command = [ "/bin/true" ]; };
  %s
};
""" % (name, name, name, target, job, min, max, interval, bpw, max_age, startup, up_cooldown,
       up_step, down_cooldown, stabilization, down_step, extra)


class AgentEnv:
    def __init__(self, count=2, min=2, max=20, policy=None, jobs=None, interval="250ms",
                 nomad_timeout="1s", extra_agent="", standin_args=(), standin_tokens=None):
        self.redis = harness.Redis()
        self.jobs = jobs or [{"ID": "payments-worker", "TaskGroups": [
            {"Name": "worker", "Count": count, "Scaling": {"Min": 0, "Max": 100}}]}]
        self.nomad = NomadStandin(self.jobs, acl_tokens=standin_tokens, args=standin_args)
        self.dir = harness.tmpdir("scaleno-agent-")
        self.port = harness.free_port()
        self.conf = os.path.join(self.dir, "scaleno.conf")
        harness.write(self.conf, main_conf(self.redis, self.nomad, "127.0.0.1:%d" % self.port,
                                           interval=interval, timeout=nomad_timeout,
                                           extra_agent=extra_agent))
        harness.write(os.path.join(self.dir, "policies.d", "payments.conf"),
                      policy if policy is not None else policy_conf(min=min, max=max))
        self.redis.cli("XGROUP", "CREATE", "payments", "payments", "0", "MKSTREAM")
        self.log = os.path.join(self.dir, "agent.log")
        self.agent = None
        self.world = None

    def start_agent(self):
        self.agent = harness.spawn([harness.SCALENO, "agent", "-c", self.conf], log_path=self.log)
        harness.wait_until(lambda: self.metric("scaleno_agent_ticks_total") >= 1, timeout=15,
                           what="the agent's first tick")
        return self.agent

    def alive(self):
        return self.agent is not None and self.agent.poll() is None

    def logtext(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def http(self, path):
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.port, path), timeout=5) as r:
            return r.read().decode()

    def metrics(self):
        try:
            return self.http("/metrics")
        except Exception:
            if not self.alive():
                raise AssertionError("agent exited with %s:\n%s" % (self.agent.returncode, self.logtext()[-3000:]))
            return ""

    def metric(self, name, labels=None):
        want = name + ("{" + labels + "}" if labels else "")
        for line in self.metrics().splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return -1.0

    def status(self):
        return json.loads(self.http("/v1/status"))

    def desired(self):
        return self.nomad.scale_status("payments-worker")["TaskGroups"]["worker"]["Desired"]

    def scale_posts(self):
        """The scale writes the agent sent, oldest first, as parsed bodies."""
        out = []
        for r in self.nomad.requests():
            if r["Method"] in ("POST", "PUT") and r["Path"].endswith("/scale"):
                try:
                    out.append(json.loads(r["Body"]))
                except ValueError:
                    out.append({"raw": r["Body"]})
        return out

    def start_world(self, rate, per_worker):
        self.world = World(self, rate, per_worker)
        self.world.start()
        return self.world

    def close(self):
        if self.world:
            self.world.stop()
        if self.agent is not None and self.agent.poll() is None:
            rc = harness.stop(self.agent, signal.SIGTERM, timeout=15)
            assert rc == 0, "agent exit code %s on SIGTERM" % rc
        self.nomad.stop()


class World(threading.Thread):
    """Producers at `rate` msgs/s (changeable, with optional noise) and workers that each
    complete `per_worker` msgs/s while the stand-in reports them running."""

    def __init__(self, env, rate, per_worker, step=0.1):
        super().__init__(daemon=True)
        self.env, self.rate, self.per_worker, self.step = env, rate, per_worker, step
        self.noise = 0.0
        self.stopping = threading.Event()
        self.consuming = True
        self.error = None
        self.running = 0
        self.rng = random.Random(12345)
        self.added = 0

    def run(self):
        carry_in = carry_out = 0.0
        next_t = time.monotonic()
        deadline = next_t + 600      # bounded, whatever the test does
        last_poll = 0.0
        try:
            while not self.stopping.is_set() and time.monotonic() < deadline:
                now = time.monotonic()
                if now - last_poll >= 0.25:
                    try:
                        self.running = len(self.env.nomad.running_allocs("payments-worker"))
                    except Exception:
                        pass     # the stand-in may be refusing on purpose
                    last_poll = now
                r = self.rate * (1 + self.noise * (2 * self.rng.random() - 1))
                carry_in += max(0.0, r) * self.step
                n_in = int(carry_in)
                carry_in -= n_in
                if n_in:
                    self.env.redis.cli("EVAL", PRODUCE, 1, "payments", n_in)
                    self.added += n_in
                if self.consuming:
                    carry_out += self.running * self.per_worker * self.step
                    n_out = int(carry_out)
                    carry_out -= n_out
                    if n_out:
                        self.env.redis.cli("EVAL", CONSUME, 1, "payments", n_out, "payments")
                next_t += self.step
                time.sleep(max(0.0, next_t - time.monotonic()))
        except Exception as e:   # reported by stop()
            self.error = e

    def stop(self):
        self.stopping.set()
        self.join(timeout=10)
        if self.error and not isinstance(self.error, RuntimeError):
            raise self.error


DECISION = re.compile(r"^(\S+) scaleno\[\d+\] \w+: queue (\S+): (?:scaled: )?((?:hold|up|down) .*)$")
RULE = re.compile(r"\b(\w+) rule (\d+) \(")
BACKLOG = re.compile(r"\bbacklog (\d+)")


def decisions(env, queue="payments"):
    """Every decision of the agent for queue, in order, from its log (level debug): dicts with
    t (the agent's own clock, seconds), kind (hold/up/down), need (the winning rule's demand),
    backlog and reason. Tests reason on these, the engine's own ticks, not on the test's clock."""
    out = []
    for line in env.logtext().splitlines():
        m = DECISION.match(line)
        if not m or m.group(2) != queue:
            continue
        reason = m.group(3)
        ts = time.strptime(m.group(1)[:19], "%Y-%m-%dT%H:%M:%S")
        t = time.mktime(ts) + float("0" + m.group(1)[19:].rstrip("Z"))
        rule = RULE.search(reason)
        bl = BACKLOG.search(reason)
        out.append({"t": t, "kind": reason.split()[0], "reason": reason,
                    "need": int(rule.group(2)) if rule else None,
                    "backlog": int(bl.group(1)) if bl else None})
    return out


def backlog(env):
    r = env.redis.json("XINFO", "GROUPS", "payments")
    g = {r[0][i]: r[0][i + 1] for i in range(0, len(r[0]), 2)}
    return (g.get("lag") or 0) + g.get("pending", 0)


def count_re(text, pattern):
    return len(re.findall(pattern, text))
