#!/usr/bin/env python3
"""make demo: scaleno end to end on this machine, in under three minutes.

Starts a throwaway redis-server, the Nomad stand-in (contrib/nomad-standin.py) whose
allocations run `scaleno worker` with a payment handler (contrib/demo/handler.py), `scaleno
agent`, and a load generator that plays a provider failover: steady traffic, then ten times as
much within fifteen seconds, held for a minute, then back. It says where the configuration is
and which settings differ from the defaults, marks each phase, prints a line a second (with how
old the last scaling decision is), publishes one poison payment with `scaleno publish` and shows
it dead-lettered with `scaleno dlq list`, stops everything it started and says where the logs are.

Everything listens on 127.0.0.1 only. Python 3 standard library; Redis through redis-cli.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("BUILD", "build")
SCALENO = os.path.join(TOP, BUILD, "scaleno")
HANDLER = os.path.join(TOP, "contrib", "demo", "handler.py")
STANDIN = os.path.join(TOP, "contrib", "nomad-standin.py")

# Half the messages of a surge a two-core machine would still carry, so the workers' rate,
# not the machine, is what limits them: the count the surge needs is SURGE / PER_WORKER.
STEADY, SURGE = 30, 300          # messages per second
PER_MSG_MS = 80                  # handler time per message: 12.5 msgs/s per consumer process
PROCESSES = 2                    # consumer processes per worker: 25 msgs/s per worker
PER_WORKER = PROCESSES * 1000.0 / PER_MSG_MS
SURGE_NEEDS = -(-SURGE // int(PER_WORKER))   # workers the surge needs at the handler's own rate
TIMELINE = [                     # (until second, rate at the start, rate at the end, phase)
    (20, STEADY, STEADY, "steady traffic, %d payments/s" % STEADY),
    (35, STEADY, SURGE, "SURGE STARTS: the other provider fails, traffic ramps to %d/s" % SURGE),
    (85, SURGE, SURGE, "surge held at %d/s" % SURGE),
    (95, SURGE, STEADY, "SURGE ENDS: the other provider is back, traffic falls to %d/s" % STEADY),
    (125, STEADY, STEADY, "steady again: watch the scale-in"),
]
POISON_AT = 10                   # second at which one poison payment is published
DRAIN_S = 15                     # after the load ends, watch the scale-in

PRODUCE = """
local n = tonumber(ARGV[1])
for i = 1, n do redis.call('XADD', KEYS[1], '*', 'order', ARGV[2] .. '-' .. i, 'amount', '100') end
return n
"""

procs = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(argv, log):
    p = subprocess.Popen(argv, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    procs.append(p)
    return p


def wait_for(cond, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise SystemExit("demo: timed out waiting for %s" % what)


def stop_all():
    for p in reversed(procs):
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=20)
            except (subprocess.TimeoutExpired, OSError):
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
                p.wait(timeout=5)


def rate_at(t):
    start = 0
    for until, r0, r1, _ in TIMELINE:
        if t < until:
            return r0 + (r1 - r0) * (t - start) / (until - start)
        start = until
    return 0


def phase_at(t):
    for i, (until, _, _, name) in enumerate(TIMELINE):
        if t < until:
            return i, name
    return len(TIMELINE), "load stopped: the queue drains, workers scale in"


# The demo's policy, key by key (libconfig values), so it can say what differs from the defaults.
POLICY = [
    ("loss_critical", "true"), ("order_critical", "false"),
    ("scale.job", '"payments-worker"'), ("scale.group", '"worker"'),
    ("scale.min", "2"), ("scale.max", "30"), ("scale.interval", '"1s"'),
    ("scale.max_age", '"10s"'), ("scale.startup", '"3s"'),
    ("scale.up.cooldown", '"3s"'), ("scale.up.max_step", '"100%"'),
    ("scale.down.cooldown", '"5s"'), ("scale.down.stabilization", '"20s"'),
    ("scale.down.max_step", '"50%"'),
    ("worker.protocol", '"pipe"'), ("worker.processes", str(PROCESSES)), ("worker.batch", "8"),
    ("worker.timeout", '"5s"'), ("worker.retries", "2"), ("worker.retry_delays", '[ "2s", "5s" ]'),
    ("worker.claim_idle", '"15s"'), ("worker.drain_timeout", '"3s"'),
    ("worker.kill_timeout", '"5s"'), ("worker.listen", '""'),
]


def policy_text():
    """The policy file: the keys above in their blocks, and the handler."""
    groups = {}
    for key, value in POLICY:
        parts = key.split(".")
        groups.setdefault(tuple(parts[:-1]), []).append("%s = %s;" % (parts[-1], value))
    out = ['# One payment provider\'s queue: losing a payment is not acceptable, order is not needed',
           '# (mode 3: retries, delayed retry stages, then the dead-letter stream).',
           'queue: {', '  name = "payments"; ' + " ".join(groups[()])]
    out.append("  scale: { " + " ".join(groups[("scale",)]))
    out.append("    up:   { " + " ".join(groups[("scale", "up")]) + " };")
    out.append("    down: { " + " ".join(groups[("scale", "down")]) + " };")
    out.append("  };")
    out.append('  worker: { command = [ "python3", "%s", "%d" ]; ' % (HANDLER, PER_MSG_MS) +
               " ".join(groups[("worker",)]) + " };")
    out.append("};")
    return "\n".join(out) + "\n"


def differing_settings():
    """(key, value, default) for every policy key whose value is not the default."""
    r = subprocess.run([SCALENO, "check", "-k"], capture_output=True, text=True, timeout=30)
    defaults = {}
    for line in r.stdout.splitlines():
        f = line.split("\t")
        if len(f) >= 3 and f[0].startswith("queue."):
            defaults[f[0][len("queue."):]] = f[2]
    norm = lambda v: v.replace(" ", "").replace('"', "")
    return [(k, v, defaults.get(k, "(none)")) for k, v in POLICY
            if k in defaults and norm(v) != norm(defaults[k])] + \
        [(k, v, "(required)") for k, v in POLICY if k not in defaults]


def get_json(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def main():
    for f in (SCALENO,):
        if not os.access(f, os.X_OK):
            raise SystemExit("demo: %s is missing; run make first" % f)
    d = tempfile.mkdtemp(prefix="scaleno-demo-")
    rport, aport = free_port(), free_port()
    conf = os.path.join(d, "scaleno.conf")
    os.makedirs(os.path.join(d, "policies.d"))
    with open(os.path.join(d, "redis.conf"), "w") as f:
        f.write("port %d\nbind 127.0.0.1\ndir %s\nsave \"\"\nappendonly no\n" % (rport, d))
    redis = spawn(["redis-server", os.path.join(d, "redis.conf")], os.path.join(d, "redis.log"))

    def cli(*args):
        r = subprocess.run(["redis-cli", "-p", str(rport), "--raw"] + [str(a) for a in args],
                           capture_output=True, text=True, timeout=10)
        return r.stdout.strip()
    wait_for(lambda: cli("PING") == "PONG", 10, "redis-server")

    jobs = {"Jobs": [{"ID": "payments-worker", "TaskGroups": [{
        "Name": "worker", "Count": 2, "Scaling": {"Min": 2, "Max": 30},
        "Command": [SCALENO, "worker", "-q", "payments", "-c", conf],
        "KillTimeout": "5s", "KillSignal": "SIGINT", "StartupDelay": 1.0}]}]}
    with open(os.path.join(d, "jobs.json"), "w") as f:
        json.dump(jobs, f)
    nomad = spawn(["python3", STANDIN, "--jobs", os.path.join(d, "jobs.json"), "--listen", "127.0.0.1:0",
                   "--ready-file", os.path.join(d, "nomad.addr"), "--state-dir", os.path.join(d, "nomad"),
                   "--log", os.path.join(d, "nomad.log")], os.path.join(d, "nomad.out"))
    naddr = wait_for(lambda: os.path.exists(os.path.join(d, "nomad.addr")) and
                     open(os.path.join(d, "nomad.addr")).read().strip(), 15, "the Nomad stand-in")

    with open(conf, "w") as f:
        f.write("""# written by make demo
redis: { address = "127.0.0.1:%d"; };
nomad: { address = "http://%s"; timeout = "2s"; };
agent: { interval = "1s"; policy_dir = "policies.d"; listen = "127.0.0.1:%d"; };
log:   { level = "info"; };
""" % (rport, naddr, aport))
    with open(os.path.join(d, "policies.d", "payments.conf"), "w") as f:
        f.write(policy_text())
    r = subprocess.run([SCALENO, "check", "-c", conf], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("demo: the generated configuration is invalid:\n" + r.stderr)
    cli("XGROUP", "CREATE", "payments", "payments", "0", "MKSTREAM")
    agent = spawn([SCALENO, "agent", "-c", conf], os.path.join(d, "agent.log"))
    wait_for(lambda: get_json("http://127.0.0.1:%d/v1/status" % aport), 15, "the agent")

    print("scaleno demo: redis 127.0.0.1:%d, nomad stand-in %s, agent 127.0.0.1:%d" % (rport, naddr, aport))
    print("configuration: %s and %s" % (conf, os.path.join(d, "policies.d", "payments.conf")))
    print("logs:          %s (agent.log, nomad.log, nomad/<alloc>/alloc/logs/ per worker)" % d)
    print("each worker: %d consumer processes, %d ms per message (%d msgs/s); steady %d/s, surge %d/s" % (
        PROCESSES, PER_MSG_MS, PROCESSES * 1000 // PER_MSG_MS, STEADY, SURGE))
    print("settings that differ from the defaults (scaleno check -k lists them all):")
    for key, value, default in differing_settings():
        print("  %-26s %-14s (default %s)" % (key, value, default))
    print()
    print("%5s %9s %8s %8s %9s  %s" % ("t", "arrive/s", "backlog", "oldest", "workers",
                                       "last scaling decision (how long ago)"))
    t0 = time.monotonic()
    next_step = t0
    next_print = t0 + 1
    carry = 0.0
    sent = sent_last = 0
    peak = {"backlog": 0, "age": 0.0, "workers": 0}
    busy_rates = []
    last_action, last_action_t = "-", None
    end = TIMELINE[-1][0] + DRAIN_S
    seq = 0
    phase = -1
    poison_sent = poison_shown = False
    while True:
        now = time.monotonic()
        t = now - t0
        if t >= end:
            break
        if agent.poll() is not None or nomad.poll() is not None or redis.poll() is not None:
            raise SystemExit("demo: a component exited early; see the logs in %s" % d)
        p, name = phase_at(t)
        if p != phase:
            phase = p
            print("---- %3ds  %s ----" % (t, name), flush=True)
        if not poison_sent and t >= POISON_AT:
            poison_sent = True
            r = subprocess.run([SCALENO, "publish", "-c", conf, "-q", "payments", "order", "poison-1",
                                "amount", "12,50 EUR"], capture_output=True, text=True, timeout=10)
            print("---- %3ds  a poison payment (amount \"12,50 EUR\"): scaleno publish -q payments "
                  "order poison-1 amount '12,50 EUR' -> %s ----" % (t, r.stdout.strip() or r.stderr.strip()),
                  flush=True)
        if poison_sent and not poison_shown and cli("XLEN", "payments:dlq") not in ("", "0"):
            poison_shown = True
            r = subprocess.run([SCALENO, "dlq", "list", "-c", conf, "-q", "payments"],
                               capture_output=True, text=True, timeout=10)
            print("---- %3ds  the handler failed it for good; mode 3 dead-lettered it. "
                  "scaleno dlq list -q payments:" % t)
            for line in (r.stdout or r.stderr).splitlines():
                print("           " + line)
            print("---- (after a fix: scaleno dlq replay -q payments --all) ----", flush=True)
        if now >= next_step:
            carry += rate_at(t) * 0.1
            n = int(carry)
            carry -= n
            if n:
                seq += 1
                cli("EVAL", PRODUCE, 1, "payments", n, seq)
                sent += n
            next_step += 0.1
        if now >= next_print:
            st = get_json("http://127.0.0.1:%d/v1/status" % aport) or {}
            q = (st.get("queues") or [{}])[0]
            smp, nmd, dec = q.get("sample", {}), q.get("nomad", {}), q.get("decision", {})
            if dec.get("direction") in ("up", "down") and dec.get("reason", "-") != last_action:
                last_action, last_action_t = dec.get("reason", "-"), t
            peak["backlog"] = max(peak["backlog"], smp.get("backlog", 0))
            peak["age"] = max(peak["age"], smp.get("oldest_age_s", 0))
            peak["workers"] = max(peak["workers"], nmd.get("desired", 0))
            # the workers' own rate, while they are busy in the held surge
            running = nmd.get("running", 0)
            if TIMELINE[1][0] <= t < TIMELINE[2][0] and running > 0 and \
                    smp.get("undelivered", smp.get("backlog", 0)) > running and smp.get("completion_rate", 0) > 0:
                busy_rates.append(smp["completion_rate"] / running)
            ago = "" if last_action_t is None else " (%ds ago)" % (t - last_action_t)
            print("%4ds %9d %8d %7.1fs %5d/%-3d  %s%s" % (
                t, sent - sent_last, smp.get("backlog", 0), smp.get("oldest_age_s", 0),
                nmd.get("desired", 0), nmd.get("running", 0), last_action[:90], ago), flush=True)
            sent_last = sent
            next_print += 1
        time.sleep(max(0.0, min(next_step, next_print) - time.monotonic()))

    st = get_json("http://127.0.0.1:%d/v1/status" % aport) or {}
    q = (st.get("queues") or [{}])[0]
    ups, downs = q.get("scale_actions_up", 0), q.get("scale_actions_down", 0)
    dlq = cli("XLEN", "payments:dlq")
    stop_all()
    print()
    print("sent %d messages; peak backlog %d, peak oldest age %.1fs, peak workers %d; "
          "%d scale-ups, %d scale-downs; %s dead-lettered" % (
              sent, peak["backlog"], peak["age"], peak["workers"], ups, downs, dlq or "0"))
    print("the surge needs %d workers (%d/s at %d ms per message x %d processes = %g/s each); "
          "peak %d is %+.0f%% of that" % (SURGE_NEEDS, SURGE, PER_MSG_MS, PROCESSES, PER_WORKER,
                                          peak["workers"], 100.0 * (peak["workers"] - SURGE_NEEDS) / SURGE_NEEDS))
    if busy_rates:
        busy_rates.sort()
        mu = busy_rates[len(busy_rates) // 2]
        need = int(-(-SURGE // mu))
        print("busy in the surge, the workers did %.1f/s each on this machine (median of %d seconds): "
              "at that rate the surge needs %d, peak %d is %+.0f%% of that" % (
                  mu, len(busy_rates), need, peak["workers"], 100.0 * (peak["workers"] - need) / need))
    else:
        print("the workers were never busy in the held surge: their rate there was not measured")
    print("configuration: %s (and policies.d/payments.conf)" % conf)
    print("logs: %s (agent.log, nomad.log, nomad/<alloc>/alloc/logs/ for each worker)" % d)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        main()
    except KeyboardInterrupt:
        print("demo: interrupted")
    finally:
        stop_all()
