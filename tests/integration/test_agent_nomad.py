"""scaleno agent against Nomad as it really behaves (scaleno(8) "Nomad"): the job's own scaling
bounds, a full cluster, configuration errors, the scaling history, a scale whose answer was lost,
and many queues with few requests. Real redis-server, the Nomad stand-in, the real agent."""
import json
import os
import time

import harness
from agentenv import AgentEnv, policy_conf

suite = harness.Suite()

SURGE = "for i=1,%d do redis.call('XADD', KEYS[1], '*', 'n', i) end"


def surge(env, n=3000):
    env.redis.cli("EVAL", SURGE % n, 1, "payments")


def job(count, scaling=None, events=None, **kw):
    g = {"Name": "worker", "Count": count}
    if scaling is not None:
        g["Scaling"] = scaling
    if events is not None:
        g["Events"] = events
    return [dict({"ID": "payments-worker", "TaskGroups": [g]}, **kw)]


def start_agent(env, token=None):
    """AgentEnv.start_agent, with NOMAD_TOKEN set when a token is given."""
    if token is None:
        return env.start_agent()
    env.agent = harness.spawn([harness.SCALENO, "agent", "-c", env.conf], log_path=env.log,
                              env=dict(os.environ, NOMAD_TOKEN=token))
    harness.wait_until(lambda: env.metric("scaleno_agent_ticks_total") >= 1, timeout=15,
                       what="the agent's first tick")
    return env.agent


def for_seconds(env, seconds, check=None):
    """Let the agent run for a while (bounded), checking a condition all along."""
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        assert env.alive(), env.logtext()[-3000:]
        if check is not None:
            check()
        time.sleep(0.1)


def refused(env, text):
    return [r for r in env.nomad.requests() if r["Status"] is not None and r["Status"] >= 400
            and r["Route"].endswith("/scale") and r["Method"] != "GET"]


# ---- 1. the job's own scaling block ----------------------------------------------------------

@suite.test
def job_scaling_max_caps_what_the_agent_asks():
    """Policy max 8, job scaling { max = 3 }: a surge takes the group to 3, never asks for 4."""
    env = AgentEnv(jobs=job(2, {"Min": 1, "Max": 3}), policy=policy_conf(min=1, max=8))
    try:
        start_agent(env)
        surge(env)
        harness.wait_until(lambda: env.desired() == 3, timeout=15, what="the group at the job's max 3")
        for_seconds(env, 2)
        counts = [p["Count"] for p in env.scale_posts()]
        assert counts and max(counts) == 3, counts
        assert refused(env, "maximum") == [], refused(env, "maximum")
        q = env.status()["queues"][0]
        assert q["nomad"]["bounds"]["max"] == 3 and q["nomad"]["bounds"]["source"] == "job", q["nomad"]
        assert env.metric("scaleno_workers_max", 'queue="payments"') == 3
        assert env.metric("scaleno_workers_desired", 'queue="payments"') == 3
        assert env.logtext().count("is narrower than the policy's") == 1, env.logtext()[-2000:]
        r = harness.run_scaleno(["status", "-c", env.conf])
        assert r.returncode == 0 and "max 3 (job)" in r.stdout, r.stdout
    finally:
        env.close()


@suite.test
def job_scaling_min_defaults_to_the_count():
    """A jobspec scaling block without min gets min = count (4): a policy min of 1 never scales
    the group below 4, and no scale-down is refused."""
    env = AgentEnv(jobs=job(4, {"Max": 10}), policy=policy_conf(min=1, max=8, stabilization="1s",
                                                                down_cooldown="1s"))
    try:
        start_agent(env)
        harness.wait_until(lambda: env.metric("scaleno_agent_ticks_total") >= 16, timeout=20,
                           what="16 ticks on an empty queue")
        assert env.scale_posts() == [], env.scale_posts()
        assert env.desired() == 4
        q = env.status()["queues"][0]
        assert q["nomad"]["bounds"]["min"] == 4, q["nomad"]
    finally:
        env.close()


@suite.test
def a_400_teaches_the_bound_without_read_job():
    """A token that may scale but not read the job (nor list jobs): Nomad's 400 names the max,
    the agent learns it and asks for 3."""
    tokens = [{"SecretID": "scaler", "Name": "scaler", "Type": "client",
               "Namespaces": {"default": ["read-job-scaling", "scale-job"]}},
              {"SecretID": "root", "Name": "root", "Type": "management"}]
    env = AgentEnv(jobs=job(2, {"Min": 1, "Max": 3}), policy=policy_conf(min=1, max=8),
                   standin_tokens=tokens)
    try:
        start_agent(env, token="scaler")
        surge(env)
        harness.wait_until(lambda: env.nomad.scale_status("payments-worker", token="root")
                           ["TaskGroups"]["worker"]["Desired"] == 3, timeout=15, what="the group at the learnt max 3")
        counts = [p["Count"] for p in env.scale_posts()]
        assert counts.count(4) <= 1, counts      # the one 400 that teaches
        log = env.logtext()
        assert "may not read job" in log and "learnt from Nomad's 400" in log, log[-3000:]
        q = env.status()["queues"][0]
        assert q["nomad"]["bounds"]["max"] == 3 and q["nomad"]["bounds"]["source"] == "learnt", q
    finally:
        env.close()


# ---- 2. a full cluster -----------------------------------------------------------------------

@suite.test
def a_full_cluster_blocks_scale_ups():
    """Room for 4 allocations: after Placed stays below Desired for `startup` the agent holds
    scale-ups (rule blocked), alerts once, and goes on when capacity frees."""
    alerts = os.path.join(harness.tmpdir(), "alerts")
    pol = policy_conf(min=1, max=40, startup="1s", up_cooldown="500ms",
                      extra='alert: { command = [ "/bin/sh", "-c", "cat >> %s; echo >> %s" ]; };'
                      % (alerts, alerts))
    env = AgentEnv(jobs=job(2, {"Min": 1, "Max": 100}), policy=pol, standin_args=["--capacity", "4"])
    try:
        start_agent(env)
        surge(env, 6000)
        harness.wait_until(lambda: env.status()["queues"][0].get("decision", {}).get("rule") == "blocked",
                           timeout=15, what="the blocked rule")
        for_seconds(env, 4)
        counts = [p["Count"] for p in env.scale_posts()]
        assert counts and max(counts) <= 8, counts
        q = env.status()["queues"][0]
        assert q["nomad"]["blocked"] is True and q["decision"]["rule"] == "blocked", q
        assert env.metric("scaleno_workers_blocked", 'queue="payments"') == 1
        harness.wait_until(lambda: os.path.exists(alerts) and "nomad_blocked" in open(alerts).read(),
                           timeout=10, what="the blocked alert")
        assert open(alerts).read().count("nomad_blocked") == 1
        assert [c for c in counts if c < 2] == [], "a full cluster must never cause a scale-down"
        env.nomad.fault(capacity=-1)
        harness.wait_until(lambda: env.desired() > max(counts), timeout=15, what="scale-ups after capacity frees")
        assert "scale-ups resume" in env.logtext()
    finally:
        env.close()


# ---- 3. errors a retry cannot fix -------------------------------------------------------------

@suite.test
def job_max_count_is_a_configuration_error():
    alerts = os.path.join(harness.tmpdir(), "alerts")
    pol = policy_conf(min=1, max=20, extra='alert: { command = [ "/bin/sh", "-c", "cat >> %s; echo >> %s" ]; };'
                      % (alerts, alerts))
    env = AgentEnv(jobs=job(2, {"Min": 1, "Max": 100}), policy=pol, standin_args=["--job-max-count", "3"])
    try:
        start_agent(env)
        surge(env)
        harness.wait_until(lambda: env.scale_posts(), timeout=10, what="a scale call")
        for_seconds(env, 6)
        posts = env.scale_posts()
        assert len(posts) <= 2, "re-POSTed a configuration error %d times" % len(posts)
        log = env.logtext()
        assert "total count was greater than configured job_max_count" in log, log[-2000:]
        assert "config" in log
        harness.wait_until(lambda: os.path.exists(alerts) and "nomad_config" in open(alerts).read(),
                           timeout=10, what="the configuration alert")
        assert env.status()["queues"][0]["nomad"]["last_result"] == "config"
    finally:
        env.close()


@suite.test
def an_unknown_region_is_a_configuration_error():
    env = AgentEnv(jobs=job(2, {"Min": 1, "Max": 100}))
    try:
        harness.write(env.conf, open(env.conf).read().replace('timeout = "1s";', 'timeout = "1s"; region = "mars";'))
        start_agent(env)
        env.nomad.clear_requests()
        for_seconds(env, 6)
        n = env.nomad.request_counts()["total"]
        assert n <= 4, "%d requests in 6 s for a region that does not exist" % n
        assert "No path to region" in env.logtext()
    finally:
        env.close()


# ---- 4. the scaling history -------------------------------------------------------------------

@suite.test
def a_restart_keeps_the_cooldown():
    """The last scaling event (3 s ago) starts the 30 s down cooldown for a new agent."""
    events = [{"Age": "3s", "Count": 4, "PreviousCount": 5, "Message": "an agent before the restart"}]
    pol = policy_conf(min=1, max=20, stabilization="1s", down_cooldown="30s", down_step=1)
    env = AgentEnv(jobs=job(4, {"Min": 1, "Max": 100}, events), policy=pol)
    try:
        start_agent(env)
        for_seconds(env, 5)
        assert env.scale_posts() == [], env.scale_posts()
        cd = env.status()["queues"][0]["cooldown"]
        assert 15 < cd["down_remaining_s"] <= 27, cd
        assert "last scaling event" in env.logtext()
    finally:
        env.close()


@suite.test
def a_manual_scale_is_an_action_too():
    pol = policy_conf(min=1, max=20, stabilization="1s", down_cooldown="20s", down_step=1)
    events = [{"Age": "8s", "Count": 6, "PreviousCount": 5}]
    env = AgentEnv(jobs=job(6, {"Min": 1, "Max": 100}, events), policy=pol)
    try:
        start_agent(env)
        cd0 = env.status()["queues"][0]["cooldown"]["down_remaining_s"]
        assert cd0 < 14, cd0
        st, _ = env.nomad.cli_scale("payments-worker", "worker", 5)
        assert st == 200
        harness.wait_until(lambda: env.status()["queues"][0]["cooldown"]["down_remaining_s"] > 17,
                           timeout=10, what="the manual scale to restart the cooldown")
        for_seconds(env, 2)
        assert env.scale_posts() == [], env.scale_posts()
    finally:
        env.close()


# ---- 5. a scale whose answer was lost ---------------------------------------------------------

@suite.test
def a_lost_answer_is_read_back_before_deciding():
    """The scale POST outlives nomad.timeout but Nomad applies it, starting a deployment: the
    agent reads the count back, counts the action and starts its cooldown, instead of asking
    again into the deployment."""
    env = AgentEnv(jobs=job(2, {"Min": 1, "Max": 100}), policy=policy_conf(min=1, max=20, up_cooldown="3s"),
                   standin_args=["--deployment-ms", "8000"])
    try:
        start_agent(env)
        env.nomad.fault(delay_ms=300)
        surge(env)
        post = None
        for _ in range(5):       # catch a tick's read in flight, then slow the POST that follows
            harness.wait_until(lambda: any(r["Status"] is None and r["Method"] == "GET"
                                           for r in env.nomad.requests()[-5:]),
                               timeout=10, interval=0.01, what="a read in flight")
            env.nomad.fault(delay_ms=1500)
            try:
                post = harness.wait_until(lambda: [r for r in env.nomad.requests()
                                                   if r["Method"] == "POST"], timeout=2, interval=0.01,
                                          what="the POST")
                break
            except AssertionError:
                env.nomad.fault(delay_ms=300)
        assert post, "never caught the scale POST"
        asked = json.loads(post[0]["Body"])["Count"]
        # The agent gives up on it after 1 s; Nomad applies it at 1.5 s. Only then is it fast again.
        harness.wait_until(lambda: env.desired() == asked, timeout=10, what="Nomad to apply the lost scale")
        env.nomad.fault(delay_ms=0)
        assert env.nomad.deployment("payments-worker")["Status"] == "running"
        harness.wait_until(lambda: env.metric("scaleno_scale_actions_total", 'queue="payments",direction="up"') == 1,
                           timeout=5, what="the lost scale counted as done")
        assert "its answer was lost" in env.logtext(), env.logtext()[-4000:]
        q = env.status()["queues"][0]
        assert q["nomad"]["desired"] == asked, q
        assert env.nomad.deployment("payments-worker")["Status"] == "running"
    finally:
        env.close()


# ---- 6. many queues, few requests -------------------------------------------------------------

def many(n_queues, n_jobs, tokens=None, token=None):
    jobs = [{"ID": "job%d" % j, "TaskGroups": [{"Name": "worker", "Count": 1, "Scaling": {"Min": 0, "Max": 50}}]}
            for j in range(n_jobs)]
    env = AgentEnv(jobs=jobs, policy="", standin_tokens=tokens)
    for i in range(n_queues):
        harness.write(os.path.join(env.dir, "policies.d", "q%03d.conf" % i),
                      policy_conf(name="q%d" % i, job="job%d" % (i % n_jobs), min=1, max=50))
    os.remove(os.path.join(env.dir, "policies.d", "payments.conf"))
    start_agent(env, token=token)
    return env


def steady_requests_per_tick(env, ticks=8):
    harness.wait_until(lambda: env.metric("scaleno_agent_ticks_total") >= 6, timeout=30, what="warm-up ticks")
    env.nomad.clear_requests()
    t0 = env.metric("scaleno_agent_ticks_total")
    harness.wait_until(lambda: env.metric("scaleno_agent_ticks_total") >= t0 + ticks, timeout=30,
                       what="%d steady ticks" % ticks)
    t1 = env.metric("scaleno_agent_ticks_total")
    counts = env.nomad.request_counts()
    return counts["total"] / (t1 - t0), counts


@suite.test
def one_list_request_per_steady_tick():
    env = many(120, 120)
    try:
        per_tick, counts = steady_requests_per_tick(env)
        assert per_tick <= 2, (per_tick, counts)
        assert counts.get("GET /v1/jobs", 0) >= 1, counts
        assert "one GET /v1/jobs" in env.logtext()
        assert env.metric("scaleno_nomad_requests_total") > 0
    finally:
        env.close()


@suite.test
def without_list_jobs_one_read_per_group():
    """The "scale" policy lacks list-jobs: the agent says so once and reads each group's status,
    once per group however many queues share it."""
    tokens = [{"SecretID": "scaler", "Name": "scaler", "Type": "client", "Namespaces": {"default": ["scale"]}}]
    env = many(120, 30, tokens=tokens, token="scaler")
    try:
        per_tick, counts = steady_requests_per_tick(env)
        assert per_tick <= 31, (per_tick, counts)
        assert env.logtext().count("may not list jobs") == 1
    finally:
        env.close()


# ---- scaleno check --online ------------------------------------------------------------------

@suite.test
def check_online_asks_redis_and_nomad():
    tokens = [{"SecretID": "good", "Name": "good", "Type": "client",
               "Namespaces": {"default": ["scale", "read-job", "list-jobs"]}},
              {"SecretID": "reader", "Name": "reader", "Type": "client", "Namespaces": {"default": ["read"]}},
              {"SecretID": "root", "Name": "root", "Type": "management"}]
    jobs = job(4, {"Min": 1, "Max": 6}) + [{"ID": "other", "TaskGroups": [{"Name": "worker", "Count": 1,
                                                                         "Scaling": {"Max": 3}}]}]
    env = AgentEnv(jobs=jobs, policy=policy_conf(min=2, max=20), standin_tokens=tokens)
    try:
        def check(token):
            return harness.run_scaleno(["check", "-c", env.conf, "--online"], env=dict(os.environ, NOMAD_TOKEN=token))
        r = check("good")
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "narrows the policy's [2..20] to [2..6]" in r.stdout and "online check OK" in r.stdout, r.stdout
        st = env.nomad.scale_status("payments-worker", token="root")["TaskGroups"]["worker"]
        assert st["Desired"] == 4 and st["Events"][0]["Count"] is None, st   # the probe changed nothing
        r = check("reader")
        assert r.returncode == 1 and "may not scale job payments-worker" in r.stderr, (r.stdout, r.stderr)
        assert "online check FAILED" in r.stdout
        # A missing job, a block that cannot overlap, a missing stream (only a warning).
        harness.write(os.path.join(env.dir, "policies.d", "ghost.conf"), policy_conf(name="ghost", job="nosuch"))
        harness.write(os.path.join(env.dir, "policies.d", "tight.conf"), policy_conf(name="tight", job="other", min=5))
        r = check("good")
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert "queue ghost: nomad: job nosuch: not_found" in r.stderr, r.stderr
        assert "queue tight: nomad: job other group worker scaling block [1..3] does not overlap" in r.stderr, r.stderr
        assert "stream ghost does not exist yet" in r.stdout, r.stdout
        env.redis.kill()
        r = check("good")
        assert r.returncode == 1 and "redis" in r.stderr, r.stderr
    finally:
        env.close()


if __name__ == "__main__":
    suite.main()
