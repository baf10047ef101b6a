#!/usr/bin/env python3
"""The fault-injection suite: real redis-server (AOF, appendfsync always), the
Nomad stand-in, real `scaleno agent` and `scaleno worker` processes, a driver
that publishes, kills and restarts on a seeded schedule, then an audit of Redis
and the handler's log.

    tests/faults/run.py [--seed N] [--faults a,b,...] [--short] [--list]

Every scenario runs the fault kinds of its own that were selected; the table
has one row per scenario and a total. The run fails when a message is lost, a
key's messages were handled out of order, or an agent or worker supervisor
exited that was not killed on purpose (and when a scenario's own check fails,
e.g. the agent never scaled again once Nomad was back). Duplicates are
counted, not failed: the modes promise at-least-once.

--short runs the subset `make check` runs (fault kinds that pass on main and
fit in about 90 s on two cores); the default is every fault kind.
"""
import argparse
import os
import random
import shutil
import signal
import sys
import time
import traceback

import faultenv as F
from faultenv import H

sys.path.insert(0, os.path.join(F.HERE, "..", "integration"))
import agentenv  # noqa: E402

HANDLER_KINDS = ["crash", "hang", "garbage", "twice", "close", "flood"]
KINDS = {
    "redis-kill": "Redis SIGKILL and restart from its AOF, three times",
    "redis-stop": "Redis SIGSTOP for 2 s (4 x redis.command_timeout), twice",
    "redis-empty": "Redis comes back empty: FLUSHALL, then a restart without its files",
    "handler-crash": "the handler exits without answering",
    "handler-hang": "the handler sleeps past worker.timeout",
    "handler-garbage": "the handler answers a line that is not a verdict",
    "handler-twice": "the handler answers twice for one message",
    "handler-close": "the handler closes its stdout",
    "handler-flood": "the handler writes 2 MiB to stderr",
    "consumer-kill": "consumers SIGKILLed at random points, retry-stage moves in flight",
    "supervisor-kill": "a worker supervisor SIGKILLed and started again",
    "lease-kill": "the supervisor holding partition leases SIGKILLed; another takes over",
    "lease-stop": "a lease holder SIGSTOPped past its lease, then continued",
    "nomad-down": "the stand-in refuses connections during a surge",
    "nomad-slow": "the stand-in answers after nomad.timeout during a surge",
    "nomad-500": "the stand-in answers 500 during a surge",
    "nomad-garbage": "the stand-in answers cut JSON during a surge",
    "nomad-deploy": "a deployment blocks scaling during a surge",
    "agent-redis": "the agent's Redis SIGSTOPped and SIGKILLed",
    "sighup-broken": "SIGHUP with a broken configuration, mid-surge (agent and worker)",
}
# Kinds known to fail on main, marked in --list and kept out of --short.
# (handler-twice left it: the successes of a pipelined batch now wait until the
# surplus watches of that batch and the next are over; 15 of 15 runs passed.)
KNOWN_FAILING = set()
# redis-kill passes on main in every plain run so far, but failed once with the
# sanitized build on a loaded machine (seed 274934324: 16 halt-mode entries
# never handled after the Redis restarts while later ones were; not reproduced
# in 6 replays); .ci/run leaves it out of its sanitized fault run.
SHORT = ["redis-kill", "redis-empty", "handler-crash", "handler-hang", "handler-garbage",
         "handler-twice", "handler-close", "handler-flood", "consumer-kill", "nomad-down",
         "nomad-500", "nomad-garbage", "nomad-deploy"]


class Ctx:
    def __init__(self, kinds, rng, short):
        self.kinds, self.rng, self.short = kinds, rng, short

    def on(self, kind):
        return kind in self.kinds


def progress(w, share, timeout=60):
    """Wait (bounded) until share of what was published so far is processed. A worker that
    stopped making progress is not the driver's failure: the audit shows what is missing."""
    total = sum(len(p) - len(w.excluded[q]) for q, p in w.published.items())
    try:
        H.wait_until(lambda: w.processed_count() >= share * total, timeout=timeout, interval=0.1,
                     what="%d%% processed" % (share * 100))
    except AssertionError:
        pass


def start_world(ctx, **kw):
    w = F.WorkerWorld(ctx.rng, **kw)
    for q in w.queues:
        w.add_supervisor(q)
    return w


def finish(w, ctx, row, settle=90):
    w.wait_settled(settle)
    row.update(w.audit())
    row["worker_exits"] = w.worker_exits()
    row["gap_ms"] = w.gaps()
    rcs = w.stop()
    if any(rc != 0 for rc in rcs):
        row["notes"].append("worker exit codes on SIGTERM: %s" % rcs)
    if row["lost"] or row["order"] or row["worker_exits"]:
        row["notes"].append("worker logs (tail):\n" + w.logs()[-3000:])
    sanitizer_check(row, w.full_logs())


def sanitizer_check(row, text):
    """A build with SANITIZE= reports on stderr, which the logs hold."""
    for pat in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        i = text.find(pat)
        if i >= 0:
            row["notes"].append("sanitizer report in the logs:\n" + text[max(0, i - 200):i + 2500])
            return


# ---- worker scenarios

def sc_redis(ctx, row):
    w = start_world(ctx)
    n = 150 if ctx.short else 300
    w.publish(n, faults=["retry"], fault_rate=0.05)
    for i in range(3):
        progress(w, 0.15 + 0.25 * i + ctx.rng.random() * 0.1)
        if ctx.on("redis-kill"):
            w.redis.restart()   # SIGKILL; the AOF brings every acknowledged write back
            row["faults"].append("redis-kill")
        if ctx.on("redis-stop") and i < 2:
            os.kill(w.redis.proc.pid, signal.SIGSTOP)
            time.sleep(2.0)     # the fault itself: longer than redis.command_timeout
            os.kill(w.redis.proc.pid, signal.SIGCONT)
            row["faults"].append("redis-stop")
        w.publish(n // 3, faults=["retry"], fault_rate=0.05)
    finish(w, ctx, row)


def sc_redis_empty(ctx, row):
    w = start_world(ctx)
    w.publish(200)
    for how in ("flushall", "restart-empty"):
        progress(w, 0.3 + ctx.rng.random() * 0.2, timeout=20)
        done = {x[0] for x in w.ok_lines()}
        if how == "flushall":
            w.redis.cli("FLUSHALL")
        else:
            w.redis.kill()
            for f in os.listdir(w.redis.dir):   # a restart without persistence
                p = os.path.join(w.redis.dir, f)
                if f.startswith("appendonly") or f.endswith(".rdb"):
                    shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)
            w.redis.start()
        row["faults"].append("redis-empty")
        # What was waiting is gone with the data, on purpose: not counted.
        for q in w.queues:
            w.excluded[q] |= {n for n in w.published[q] if n not in done}
        w.publish(100)   # producers go on: the workers must take these
    finish(w, ctx, row, settle=60)


def sc_handler(ctx, row):
    kinds = [k for k in HANDLER_KINDS if ctx.on("handler-" + k)]
    w = start_world(ctx)
    for i in range(3):
        w.publish(120 if ctx.short else 200, faults=kinds, fault_rate=0.06)
        progress(w, 0.5)
    row["faults"] += ["handler-" + k for k in kinds]
    finish(w, ctx, row)


def kill_random_consumer(w, ctx, q):
    sups = [s for s in w.sups[q] if s.proc is not None and s.proc.poll() is None]
    if not sups:
        return False
    s = ctx.rng.choice(sups)
    kids = s.consumers()
    if not kids:
        return False
    pid = ctx.rng.choice(kids)
    holders = w.lease_holders(q) if q == "ho" else {}
    slots = {v: k for k, v in s.slot_pids().items()}
    name = s.prefix + str(slots.get(pid, -1))
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    w.kills.append((F.now_ms(), [st for st, c in holders.items() if c == name]))
    return True


def sc_kills(ctx, row):
    w = start_world(ctx, delay_ms=8)
    # Retries move messages between stages while consumers die.
    w.publish(200 if ctx.short else 400, faults=["retry"], fault_rate=0.25)
    rounds = 4 if ctx.short else 8
    for i in range(rounds):
        time.sleep(0.3 + ctx.rng.random() * 1.2)   # a random point of the work
        if ctx.on("consumer-kill"):
            if kill_random_consumer(w, ctx, ctx.rng.choice(w.queues)):
                row["faults"].append("consumer-kill")
        if ctx.on("supervisor-kill") and i % 3 == 2:
            q = ctx.rng.choice(w.queues)
            s = w.sups[q][0]
            holders = w.lease_holders(q) if q == "ho" else {}
            s.kill()
            w.kills.append((F.now_ms(), [st for st, c in holders.items() if c.startswith(s.prefix)]))
            s.start()
            row["faults"].append("supervisor-kill")
        if i % 2 == 1:
            w.publish(60, faults=["retry"], fault_rate=0.25)
    finish(w, ctx, row)


def sc_lease(ctx, row):
    """Two supervisors share the partitions of the ordered queue."""
    w = F.WorkerWorld(ctx.rng, delay_ms=25, queues=("ho",))
    a, b = w.add_supervisor("ho"), w.add_supervisor("ho")
    w.publish(500)
    H.wait_until(lambda: len(w.lease_holders("ho")) == 3, timeout=30, what="every partition leased")
    progress(w, 0.1)
    if ctx.on("lease-kill"):
        holders = w.lease_holders("ho")
        victim = a if any(c.startswith(a.prefix) for c in holders.values()) else b
        victim.kill()
        w.kills.append((F.now_ms(), [s for s, c in holders.items() if c.startswith(victim.prefix)]))
        row["faults"].append("lease-kill")
        w.publish(150)
        H.wait_until(lambda: w.gaps() > 0 or not w.kills[-1][1], timeout=40, what="the hand-over")
        victim.start()
    if ctx.on("lease-stop"):
        w.publish(300)
        holders = w.lease_holders("ho")
        name = ctx.rng.choice(sorted(holders.values()))
        sup = a if name.startswith(a.prefix) else b
        pid = sup.slot_pids().get(int(name.rsplit("/", 1)[1]))
        if pid and F.alive(pid):
            os.kill(pid, signal.SIGSTOP)
            time.sleep(F.LEASE_S + 2)   # the fault itself: past the lease
            os.kill(pid, signal.SIGCONT)
            row["faults"].append("lease-stop")
        w.publish(100)
    finish(w, ctx, row, settle=120)


def sc_worker_sighup(ctx, row):
    w = start_world(ctx)
    w.publish(200)
    progress(w, 0.2)
    H.write(os.path.join(w.dir, "policies.d", "dl.conf"), "queue: { name = ")
    for q in w.queues:
        for s in w.sups[q]:
            s.proc.send_signal(signal.SIGHUP)
    w.publish(200)
    row["faults"].append("sighup-broken")
    finish(w, ctx, row)


# ---- agent scenarios

def standin_answers(env):
    try:
        env.nomad.fault()
        return True
    except OSError:
        return False


def sc_agent(ctx, row):
    # The token never appears in the agent's log, endpoints or arguments (scaleno(8), SECURITY).
    token = "fault-suite-token-%d" % ctx.rng.randrange(10 ** 9)
    os.environ["NOMAD_TOKEN"] = token
    env = agentenv.AgentEnv(count=2, min=1, max=30, interval="250ms", nomad_timeout="1s")
    row["agent_exits"] = 0
    try:
        env.start_agent()
        del os.environ["NOMAD_TOKEN"]
        world = env.start_world(rate=400, per_worker=20)   # a surge: 2 workers cannot keep up
        for kind, fault in (("nomad-down", {"refuse_ms": 2500}),
                            ("nomad-slow", {"delay_ms": 1500}),
                            ("nomad-500", {"errors": -1, "error_status": 500}),
                            ("nomad-garbage", {"malformed": -1}),
                            ("nomad-deploy", {"active_deployment": ["payments-worker"]})):
            if not ctx.on(kind):
                continue
            env.nomad.fault(clear=True, **fault)
            row["faults"].append(kind)
            time.sleep(1.5 + ctx.rng.random())   # the fault lasts a few agent ticks
            # refuse_ms closes the control API too: wait until it listens again.
            H.wait_until(lambda: standin_answers(env), timeout=15, what="the stand-in to listen again")
            env.nomad.fault(clear=True)
            if not env.alive():
                break
        if ctx.on("agent-redis") and env.alive():
            world.stop()   # the world's own redis-cli calls would fail with Redis
            os.kill(env.redis.proc.pid, signal.SIGSTOP)
            time.sleep(2.0)   # the fault itself: longer than redis.command_timeout
            os.kill(env.redis.proc.pid, signal.SIGCONT)
            env.redis.restart()   # without persistence: the queue is gone
            env.redis.cli("XGROUP", "CREATE", "payments", "payments", "0", "MKSTREAM")
            world = env.start_world(rate=400, per_worker=20)
            row["faults"] += ["agent-redis"]
        if ctx.on("sighup-broken") and env.alive():
            pol = os.path.join(env.dir, "policies.d", "payments.conf")
            good = open(pol).read()
            H.write(pol, good.replace("max = 30;", "max = ;"))
            env.agent.send_signal(signal.SIGHUP)
            H.wait_until(lambda: env.metric("scaleno_config_reloads_total", 'result="failed"') >= 1
                         or not env.alive(), timeout=15, what="the failed reload to be counted")
            row["faults"].append("sighup-broken")
            H.write(pol, good)
        # Nomad is back: the agent must still act on a surge that grows past what it asked for.
        before = env.desired()
        world.rate *= 3
        if env.alive():
            try:
                H.wait_until(lambda: env.desired() > before or before >= 30 or not env.alive(), timeout=30,
                             what="the agent to scale up once the faults are gone")
            except AssertionError as e:
                row["notes"].append(str(e))
        world.stop()
        if env.alive():
            seen = [where for where, text in (("log", env.logtext()), ("/metrics", env.metrics()),
                                              ("/v1/status", env.http("/v1/status")),
                                              ("argv", open("/proc/%d/cmdline" % env.agent.pid).read()))
                    if token in text]
            if not any(r.get("Token") == token for r in env.nomad.requests()):
                seen.append("(check void: the agent never sent the token)")
            if seen:
                row["notes"].append("the Nomad token shows in the agent's %s" % ", ".join(seen))
            row["agent_info"] = "Desired 2 -> %d -> %d, %d scale calls" % (before, env.desired(), len(env.scale_posts()))
        sanitizer_check(row, env.logtext())
        if not env.alive():
            row["agent_exits"] += 1
            row["notes"].append("agent exited %s:\n%s" % (env.agent.returncode, env.logtext()[-3000:]))
        else:
            rc = H.stop(env.agent, signal.SIGTERM, timeout=15)
            if rc != 0:
                row["notes"].append("agent exit code %s on SIGTERM" % rc)
    finally:
        env.nomad.stop()


SCENARIOS = [
    ("redis", ["redis-kill", "redis-stop"], sc_redis),
    ("redis-empty", ["redis-empty"], sc_redis_empty),
    ("handler", ["handler-" + k for k in HANDLER_KINDS], sc_handler),
    ("kills", ["consumer-kill", "supervisor-kill"], sc_kills),
    ("lease", ["lease-kill", "lease-stop"], sc_lease),
    ("worker-sighup", ["sighup-broken"], sc_worker_sighup),
    ("agent", ["nomad-down", "nomad-slow", "nomad-500", "nomad-garbage", "nomad-deploy",
               "agent-redis", "sighup-broken"], sc_agent),
]
COLS = ("published", "processed", "dead_lettered", "halted", "lost", "duplicates", "order",
        "agent_exits", "worker_exits")
HEAD = ("published", "processed", "dead-lett", "halted", "lost", "dupl", "order", "agent-x", "worker-x")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=None, help="replay the schedule of this seed")
    ap.add_argument("--faults", default="", help="comma-separated fault kinds (default: all)")
    ap.add_argument("--short", action="store_true", help="the subset `make check` runs")
    ap.add_argument("--list", action="store_true", help="list the fault kinds and exit")
    o = ap.parse_args()
    if o.list:
        for k, v in KINDS.items():
            print("%-16s %s%s" % (k, v, " (known to fail on main)" if k in KNOWN_FAILING else ""))
        return 0
    kinds = set(o.faults.split(",")) - {""} if o.faults else set(SHORT if o.short else KINDS)
    bad = kinds - set(KINDS)
    if bad:
        print("run.py: unknown fault kind(s): %s (see --list)" % ", ".join(sorted(bad)), file=sys.stderr)
        return 2
    seed = o.seed if o.seed is not None else random.SystemRandom().randrange(1, 2 ** 31)
    print("fault suite: seed %d (replay: tests/faults/run.py --seed %d%s%s)" % (
        seed, seed, " --short" if o.short else "", " --faults " + o.faults if o.faults else ""), flush=True)
    rows, t_all = [], time.monotonic()
    for name, own, fn in SCENARIOS:
        if not kinds & set(own):
            continue
        # Each scenario draws from its own stream: selecting others does not move its schedule.
        ctx = Ctx(kinds & set(own), random.Random("%d/%s" % (seed, name)), o.short)
        row = {"name": name, "faults": [], "notes": [], "agent_exits": 0, "worker_exits": 0,
               "gap_ms": 0, "missing": []}
        for c in COLS:
            row.setdefault(c, 0)
        t0 = time.monotonic()
        try:
            fn(ctx, row)
        except Exception:
            row["notes"].append("scenario failed:\n" + traceback.format_exc())
        row["secs"] = time.monotonic() - t0
        rows.append(row)
        print("  %-14s %5.1fs  %s%s" % (name, row["secs"], ", ".join(sorted(set(row["faults"]))) or "-",
                                       "; " + row["agent_info"] if row.get("agent_info") else ""), flush=True)
    print()
    print("%-14s " % "scenario" + " ".join("%9s" % h for h in HEAD) + "  gap-ms")
    tot = {c: 0 for c in COLS}
    gap = 0
    for r in rows:
        print("%-14s " % r["name"] + " ".join("%9d" % r[c] for c in COLS) + "  %6d" % r["gap_ms"])
        for c in COLS:
            tot[c] += r[c]
        gap = max(gap, r["gap_ms"])
    print("%-14s " % "total" + " ".join("%9d" % tot[c] for c in COLS) + "  %6d" % gap)
    print("(gap-ms: longest time a partition went unprocessed after its lease holder was killed)")
    failed = []
    for r in rows:
        why = [w for w, bad in (("lost %d" % r["lost"], r["lost"]), ("order %d" % r["order"], r["order"]),
                                ("agent exits %d" % r["agent_exits"], r["agent_exits"]),
                                ("worker exits %d" % r["worker_exits"], r["worker_exits"])) if bad]
        if why or r["notes"]:
            failed.append(r["name"])
            print("\nFAIL %s: %s" % (r["name"], "; ".join(why) or "check failed"))
            if r["missing"]:
                print("  first lost: %s" % " ".join(r["missing"]))
            for n in r["notes"]:
                print("  " + n.replace("\n", "\n  "))
    print("\nfault suite: %s in %.0fs, seed %d" % ("FAILED (%s)" % ", ".join(failed) if failed else "passed",
                                                    time.monotonic() - t_all, seed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
