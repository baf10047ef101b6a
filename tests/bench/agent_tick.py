"""Agent tick benchmark: the real `scaleno agent` watching N queues in one throwaway Redis.

For each N it writes N policy files, fills N streams (with a group, a backlog and a few pending
entries), runs the agent for a number of ticks and reports, from the agent's own metrics and
/proc: the tick's wall time (sampling + deciding + acting, median and max), the agent's CPU time
per tick, its resident memory, and the Nomad requests per steady tick (counted by the stand-in).
Variants: `none` (observe-only policies: Redis + engine), `nomad` (every policy scales a group of
the Nomad stand-in; the token may list jobs, so a steady tick reads every job's counts with one
GET /v1/jobs) and `nomad-scale` (a token with the "scale" policy alone: no list-jobs, so every
distinct group's scale status is read each tick). The N policies scale JOBS jobs (default: N/10,
one group each). Prints a table; no pass/fail.

Usage: python3 tests/bench/agent_tick.py [N ...]     (after `make`; default 1000 10000)
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
import harness  # noqa: E402
from standin import NomadStandin  # noqa: E402

TICKS = int(os.environ.get("TICKS", "15"))


def policy(i, target, jobs):
    return """queue: { name = "q%d"; loss_critical = false;
  scale: { target = "%s"; job = "job%d"; group = "worker"; min = 1; max = 50; interval = "1s";
           backlog_per_worker = 100; max_age = "1h"; }; };
""" % (i, target, i % jobs)


def proc_stats(pid):
    rss = hwm = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return rss, hwm, cpu


def run(n, target, redis, nomad, jobs):
    d = harness.tmpdir("scaleno-bench-agent-")
    port = harness.free_port()
    conf = os.path.join(d, "scaleno.conf")
    harness.write(conf, """
redis: { address = "%s"; command_timeout = "5s"; };
nomad: { address = "%s"; timeout = "5s"; %s };
agent: { interval = "1s"; policy_dir = "policies.d"; listen = "127.0.0.1:%d"; };
log: { level = "%s"; };
""" % (redis.address, nomad.url, 'token_file = "token";', port, os.environ.get("BENCH_LOG", "warn")))
    harness.write(os.path.join(d, "token"), "scaler\n" if target == "nomad-scale" else "lister\n")
    os.makedirs(os.path.join(d, "policies.d"))
    for i in range(n):
        with open(os.path.join(d, "policies.d", "q%05d.conf" % i), "w") as f:
            f.write(policy(i, "none" if target == "none" else "nomad", jobs))
    agent = harness.spawn([harness.SCALENO, "agent", "-c", conf], log_path=os.path.join(d, "agent.log"))
    import urllib.request

    def metric(name):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
                for line in r.read().decode().splitlines():
                    if line.startswith(name + " "):
                        return float(line.split()[1])
        except OSError:
            return None
        return None

    harness.wait_until(lambda: (metric("scaleno_agent_ticks_total") or 0) >= 2, timeout=60,
                       what="two ticks")
    # warm-up: the first ticks read every group's status and job once
    harness.wait_until(lambda: (metric("scaleno_agent_ticks_total") or 0) >= 5, timeout=120,
                       what="warm-up ticks")
    nomad.clear_requests()
    _, _, cpu0 = proc_stats(agent.pid)
    t0 = metric("scaleno_agent_ticks_total")
    walls = []
    last = t0
    deadline = time.monotonic() + TICKS * 3 + 30
    while len(walls) < TICKS and time.monotonic() < deadline:
        t = metric("scaleno_agent_ticks_total")
        if t is not None and t > last:
            walls.append(metric("scaleno_agent_tick_seconds"))
            last = t
        time.sleep(0.05)
    rss, hwm, cpu1 = proc_stats(agent.pid)
    ticks = last - t0
    counts = nomad.request_counts()
    reqs = counts["total"]
    if os.environ.get("BENCH_VERBOSE"):
        print(target, counts, file=sys.stderr)
    harness.stop(agent)
    if os.environ.get("BENCH_VERBOSE"):
        print(d, file=sys.stderr)
    return {
        "n": n, "target": target, "ticks": int(ticks),
        "median_ms": statistics.median(walls) * 1000 if walls else float("nan"),
        "max_ms": max(walls) * 1000 if walls else float("nan"),
        "cpu_ms": (cpu1 - cpu0) / ticks * 1000 if ticks else float("nan"),
        "rss_mb": rss / 1024, "hwm_mb": hwm / 1024,
        "req_tick": reqs / ticks if ticks else float("nan"),
    }


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [1000, 10000]
    redis = harness.Redis()
    njobs = int(os.environ.get("JOBS", "0")) or max(sizes) // 10
    jobs = [{"ID": "job%d" % j, "TaskGroups": [{"Name": "worker", "Count": 1,
                                                 "Scaling": {"Min": 1, "Max": 100}}]} for j in range(njobs)]
    tokens = [{"SecretID": "lister", "Name": "lister", "Type": "client",
               "Namespaces": {"default": ["scale", "read-job", "list-jobs"]}},
              {"SecretID": "scaler", "Name": "scaler", "Type": "client", "Namespaces": {"default": ["scale"]}}]
    nomad = NomadStandin(jobs, acl_tokens=tokens)
    filled = 0
    rows = []
    for n in sorted(sizes):
        cmds = []
        for i in range(filled, n):
            cmds.append(["XGROUP", "CREATE", "q%d" % i, "q%d" % i, "$", "MKSTREAM"])
            for k in range(20):
                cmds.append(["XADD", "q%d" % i, "*", "k", str(k)])
            cmds.append(["XREADGROUP", "GROUP", "q%d" % i, "c", "COUNT", "5", "STREAMS", "q%d" % i, ">"])
        if cmds:
            redis.pipe(cmds)
        filled = n
        for target in ("none", "nomad", "nomad-scale"):
            rows.append(run(n, target, redis, nomad, njobs))
    nomad.stop()
    print("agent tick: one Redis, N queues (20 entries, 5 pending each), interval 1s, %d ticks" % TICKS)
    print("%-8s %-11s %6s %12s %10s %12s %9s %9s %12s" % (
        "queues", "target", "ticks", "median ms", "max ms", "cpu ms/tick", "RSS MB", "peak MB", "nomad req/tick"))
    for r in rows:
        print("%-8d %-11s %6d %12.1f %10.1f %12.1f %9.1f %9.1f %12.1f" % (
            r["n"], r["target"], r["ticks"], r["median_ms"], r["max_ms"], r["cpu_ms"], r["rss_mb"], r["hwm_mb"],
            r["req_tick"]))
    print("(nomad: the N policies scale %d jobs of the Nomad stand-in, token with list-jobs; nomad-scale: "
          "token with the scale policy only)" % njobs)


if __name__ == "__main__":
    main()
