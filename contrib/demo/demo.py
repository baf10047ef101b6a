#!/usr/bin/env python3
"""make demo: scaleno end to end on this machine, in under three minutes.

Starts a throwaway redis-server, the Nomad stand-in (contrib/nomad-standin.py) whose
allocations run `scaleno worker`, `scaleno agent`, and a load generator that plays a provider
failover: steady traffic, then ten times as much within fifteen seconds, held for a minute, then
back. Prints a line a second; stops everything it started; says where the logs are.

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
HANDLER = os.path.join(TOP, BUILD, "handlers", "testhandler")
STANDIN = os.path.join(TOP, "contrib", "nomad-standin.py")

STEADY, SURGE = 60, 600          # messages per second
PER_MSG_MS = 40                  # handler time per message: 25 msgs/s per consumer process
PROCESSES = 2                    # consumer processes per worker: 50 msgs/s per worker
TIMELINE = [                     # (until second, rate at the start, rate at the end)
    (20, STEADY, STEADY),        # steady traffic
    (35, STEADY, SURGE),         # the other provider fails: traffic moves here
    (85, SURGE, SURGE),          # held
    (95, SURGE, STEADY),         # the provider is back
    (125, STEADY, STEADY),
]
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
    for until, r0, r1 in TIMELINE:
        if t < until:
            return r0 + (r1 - r0) * (t - start) / (until - start)
        start = until
    return 0


def get_json(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def main():
    for f in (SCALENO, HANDLER):
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
        f.write("""# One payment provider's queue: losing a payment is not acceptable, order is not needed
# (mode 3: retries, delayed retry stages, then the dead-letter stream).
queue: {
  name = "payments"; loss_critical = true; order_critical = false;
  scale: {
    job = "payments-worker"; group = "worker";
    min = 2; max = 30; interval = "1s";
    backlog_per_worker = 50; max_age = "10s"; startup = "3s";
    up:   { cooldown = "3s"; max_step = "100%%"; };
    down: { cooldown = "5s"; stabilization = "20s"; max_step = "50%%"; };
  };
  worker: {
    command = [ "%s", "-p", "pipe", "-d", "%d", "-r", "0.01" ];
    protocol = "pipe"; processes = %d; batch = 8; timeout = "5s";
    retries = 2; retry_delays = [ "2s", "5s" ]; claim_idle = "15s";
    drain_timeout = "3s"; kill_timeout = "5s"; listen = "";
  };
};
""" % (HANDLER, PER_MSG_MS, PROCESSES))
    r = subprocess.run([SCALENO, "check", "-c", conf], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("demo: the generated configuration is invalid:\n" + r.stderr)
    cli("XGROUP", "CREATE", "payments", "payments", "0", "MKSTREAM")
    agent = spawn([SCALENO, "agent", "-c", conf], os.path.join(d, "agent.log"))
    wait_for(lambda: get_json("http://127.0.0.1:%d/v1/status" % aport), 15, "the agent")

    print("scaleno demo: redis 127.0.0.1:%d, nomad stand-in %s, agent 127.0.0.1:%d" % (rport, naddr, aport))
    print("each worker: %d consumer processes, %d ms per message (%d msgs/s); steady %d/s, surge %d/s" % (
        PROCESSES, PER_MSG_MS, PROCESSES * 1000 // PER_MSG_MS, STEADY, SURGE))
    print("%5s %9s %8s %8s %9s  %s" % ("t", "arrive/s", "backlog", "oldest", "workers", "last decision"))
    t0 = time.monotonic()
    next_step = t0
    next_print = t0 + 1
    carry = 0.0
    sent = sent_last = 0
    peak = {"backlog": 0, "age": 0.0, "workers": 0}
    last_action = "-"
    end = TIMELINE[-1][0] + DRAIN_S
    seq = 0
    while True:
        now = time.monotonic()
        t = now - t0
        if t >= end:
            break
        if agent.poll() is not None or nomad.poll() is not None or redis.poll() is not None:
            raise SystemExit("demo: a component exited early; see the logs in %s" % d)
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
            if dec.get("direction") in ("up", "down"):
                last_action = dec.get("reason", "-")
            peak["backlog"] = max(peak["backlog"], smp.get("backlog", 0))
            peak["age"] = max(peak["age"], smp.get("oldest_age_s", 0))
            peak["workers"] = max(peak["workers"], nmd.get("desired", 0))
            print("%4ds %9d %8d %7.1fs %5d/%-3d  %s" % (
                t, sent - sent_last, smp.get("backlog", 0), smp.get("oldest_age_s", 0),
                nmd.get("desired", 0), nmd.get("running", 0), last_action[:100]), flush=True)
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
    print("logs: %s (agent.log, nomad.log, nomad/<alloc>/alloc/logs/ for each worker)" % d)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        main()
    except KeyboardInterrupt:
        print("demo: interrupted")
    finally:
        stop_all()
