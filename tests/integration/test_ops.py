"""What an operator relies on, with the real binary, a real redis-server and the Nomad
stand-in: scale from zero (scaleno(8): a stream without its consumer group yet is backlog),
`scaleno status` with DLQ depths and halted partitions, `dlq show` with readable times.
"""
import os
import re

import harness
from agentenv import AgentEnv, policy_conf

suite = harness.Suite()


@suite.test
def scale_from_zero_with_producers_that_only_xadd():
    env = AgentEnv(count=0, policy=policy_conf(min=0, max=5, bpw=10, max_age="1h"))
    try:
        # Producers that only XADD: no consumer group exists.
        env.redis.cli("DEL", "payments")
        env.redis.cli("XADD", "payments", "%d-0" % (int(env.redis.cli("TIME").split()[0]) * 1000 - 30000),
                      "n", "0")
        for i in range(24):
            env.redis.cli("XADD", "payments", "*", "n", str(i + 1))
        assert env.redis.cli("EXISTS", "payments").strip() == "1"
        env.start_agent()
        harness.wait_until(lambda: env.desired() >= 1, timeout=15,
                           what="the first worker for a queue without a group")
        assert "'group_missing': True" in str(env.status())
        assert env.metric("scaleno_queue_backlog", 'queue="payments"') == 25
        age = env.metric("scaleno_queue_oldest_age_seconds", 'queue="payments"')
        assert 29 <= age < 120, age
        assert "every entry of the stream counts as backlog" in env.logtext()
        assert env.desired() == 3, env.desired()   # 25 entries / 10 per worker
    finally:
        env.close()


def halt_queue(partitions=2):
    redis = harness.Redis()
    d = harness.tmpdir("scaleno-ops-")
    conf = harness.write(os.path.join(d, "scaleno.conf"), """
redis: { address = "%s"; };
agent: { policy_dir = "policies.d"; listen = ""; };
""" % redis.address)
    harness.write(os.path.join(d, "policies.d", "pay.conf"), """
queue: { name = "pay"; stream = "pay"; group = "g"; partitions = %d;
  loss_critical = true; order_critical = true;
  scale: { target = "none"; }; worker: { command = [ "/bin/true" ]; listen = ""; }; };
""" % partitions)
    return redis, conf


@suite.test
def status_shows_dlq_depth_and_halted_partitions():
    redis, conf = halt_queue()
    for i in range(3):
        redis.cli("XADD", "pay:dlq", "*", "x-error", "boom %d" % i)
    redis.cli("XADD", "pay:1", "1700000000000-5", "k", "v")
    now_ms = int(redis.cli("TIME").split()[0]) * 1000
    redis.cli("HSET", "pay:1:halt", "id", "1700000000000-5", "error", "upstream 503\nline 2",
              "attempts", "7", "delivery", "7", "time-ms", str(now_ms - 125000),
              "consumer", "c1", "partition", "1", "stream", "pay:1")
    r = harness.run_scaleno(["status", "-c", conf])
    assert r.returncode == 0, (r.returncode, r.stderr)
    head, row = r.stdout.splitlines()[:2]
    cols = head.split()
    assert "DLQ" in cols and "HALTED" in cols, head
    vals = row.split()
    assert vals[cols.index("HALTED")] == "1" and vals[cols.index("DLQ")] == "3", r.stdout
    assert "halted partitions" not in r.stdout        # only with -q
    r = harness.run_scaleno(["status", "-c", conf, "-q", "pay"])
    assert r.returncode == 0, (r.returncode, r.stderr)
    line = [l for l in r.stdout.splitlines() if l.startswith("1 ")]
    assert len(line) == 1, r.stdout
    assert re.match(r"1\s+pay:1\s+1700000000000-5\s+7\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\s+12[5-9]s\s+"
                    r"upstream 503 line 2$", line[0]), line[0]
    assert "scaleno resume -q pay -p PARTITION" in r.stdout
    redis.cli("DEL", "pay:1:halt")
    r = harness.run_scaleno(["status", "-c", conf, "-q", "pay"])
    assert "no partition of pay is halted" in r.stdout, r.stdout


@suite.test
def dlq_show_prints_iso_times_and_the_history_as_lines():
    redis, conf = halt_queue(partitions=1)
    redis.cli("XADD", "pay:dlq", "1700000100000-0", "user", "42", "x-first-failed-ms", "1700000000123",
              "x-last-failed-ms", "1700000050000", "x-attempts", "4",
              "x-error-history", "1700000000123 main x3: upstream 503\n1700000050000 retry:1 x1: timeout")
    r = harness.run_scaleno(["dlq", "show", "-c", conf, "-q", "pay", "1700000100000-0"])
    assert r.returncode == 0, (r.returncode, r.stderr)
    out = r.stdout
    assert "id: 1700000100000-0 (dead-lettered 2023-11-14T22:15:00.000Z)" in out, out
    assert "x-first-failed-ms: 2023-11-14T22:13:20.123Z (1700000000123)" in out, out
    assert ("x-error-history:\n  2023-11-14T22:13:20.123Z main x3: upstream 503\n"
            "  2023-11-14T22:14:10.000Z retry:1 x1: timeout\n") in out, out
    assert "\\n" not in out, out
    assert "user: 42" in out


@suite.test
def check_warnings_name_the_line_of_the_key():
    redis, conf = halt_queue()
    pol = os.path.join(os.path.dirname(conf), "policies.d", "pay.conf")
    harness.write(pol, """
queue: {
  name = "pay"; stream = "pay"; group = "g"; partitions = 2;
  loss_critical = true; order_critical = true;
  scale: { target = "none"; };
  worker: {
    listen = "";
    retry_delays = [ "1s" ];
    command = [ "/nonexistent/handler" ];
  };
};
""")
    r = harness.run_scaleno(["check", "-c", conf])
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert "pay.conf:9: warning: queue pay: worker.command: handler /nonexistent/handler is " \
        "not executable here" in r.stderr, r.stderr
    assert "pay.conf:8: warning: queue pay: worker.retry_delays is not used in mode 4 (halt)" \
        in r.stderr, r.stderr
    # The same key in mode 3 is not warned about.
    harness.write(pol, open(pol).read().replace("order_critical = true", "order_critical = false"))
    r = harness.run_scaleno(["check", "-c", conf])
    assert r.returncode == 0 and "retry_delays" not in r.stderr, r.stderr


@suite.test
def docs_agree_and_stay_inside_the_repository():
    import subprocess
    files = subprocess.run(["git", "-C", harness.TOP, "ls-files"], capture_output=True, text=True,
                           check=True).stdout.split()
    # Spelled in pieces so that this line does not match itself.
    outside = re.compile("|".join([r"SP" r"EC\b", r"nomad-api" r"\.md", r"\breference" "/",
                                   r"anchors" r"\.md", "/work" "/shared", r"\bissue" r" \d"]))
    bad = []
    for f in files:
        try:
            with open(os.path.join(harness.TOP, f), encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if outside.search(line):
                        bad.append("%s:%d: %s" % (f, n, line.strip()))
        except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
            continue
    assert not bad, "\n".join(bad[:20])
    # One default configuration path: the one the binary has compiled in.
    r = harness.run_scaleno(["check", "-h"], env={"SCALENO_CONFIG": ""})
    m = re.search(r"(/\S*/scaleno/scaleno\.conf)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    default = m.group(1)
    for doc in ("README.md", "man/scaleno.8", "man/scaleno.conf.5", "man/scaleno-simulate.1",
                "etc/scaleno.conf"):
        with open(os.path.join(harness.TOP, doc)) as fh:
            text = fh.read()
        paths = set(re.findall(r"(/[\w/.-]*?/scaleno/scaleno\.conf)", text))
        assert paths <= {default}, (doc, paths, default)
    with open(os.path.join(harness.TOP, "man", "scaleno.8")) as fh:
        assert "no library is installed" not in fh.read()


@suite.test
def demo_story_parts():
    """make demo takes ~2.5 minutes, too long for the suite: its parts are checked here, the
    run itself by `make demo`."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "demo", os.path.join(harness.TOP, "contrib", "demo", "demo.py"))
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    demo.SCALENO = harness.SCALENO
    # The policy it writes is valid, and the settings it reports are those that differ.
    redis, conf = halt_queue()
    harness.write(os.path.join(os.path.dirname(conf), "policies.d", "pay.conf"),
                  demo.policy_text())
    r = harness.run_scaleno(["check", "-c", conf])
    assert r.returncode == 0, r.stderr
    diff = {k: (v, dflt) for k, v, dflt in demo.differing_settings()}
    assert diff["scale.max"] == ("30", "10"), diff
    assert "worker.retry_delays" in diff and "loss_critical" not in diff, diff
    # The phases are marked, the surge's start and end among them.
    names = [demo.phase_at(t)[1] for t in (0, 25, 60, 90, 100, 200)]
    assert names[1].startswith("SURGE STARTS") and names[3].startswith("SURGE ENDS"), names
    assert "drains" in names[-1]
    # The poison payment fails for good in the demo's handler; a good one succeeds.
    import subprocess
    h = subprocess.run(["python3", demo.HANDLER, "0"], capture_output=True, text=True, timeout=20,
                       input='{"fields":{"amount":"12,50 EUR"}}\n{"fields":{"amount":"100"}}\n')
    lines = h.stdout.splitlines()
    assert lines[0].startswith("fail ") and lines[1] in ("ok", "retry provider timeout"), lines


if __name__ == "__main__":
    suite.main()
