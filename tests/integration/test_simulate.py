"""scaleno simulate, end to end through the real binary and a real configuration.

No Redis or Nomad needed: the simulator runs the decision engine on its own
clock. Checks the summary against a hand-computed tiny trace, the CSV and SVG
outputs (the SVG parsed as XML), --compare, the --stdin protocol line by
line (each answer must arrive before the next sample is sent, which proves
the flush), and the errors for bad arguments and bad traces.
"""
import csv
import json
import os
import select
import subprocess
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

suite = harness.Suite()
TRACES = os.path.join(harness.TOP, "contrib", "traces")

POLICY = """queue: {
  name = "%(name)s";
  scale: {
    job = "w"; group = "g";
    min = %(min)d; max = %(max)d;
    backlog_per_worker = 200;
    max_age = "%(max_age)s";
    startup = "15s";
    up:   { cooldown = "10s"; max_step = "100%%"; };
    down: { cooldown = "60s"; stabilization = "3m"; max_step = 1; };
  };
};
"""


def config(*queues):
    d = harness.tmpdir()
    harness.write(os.path.join(d, "scaleno.conf"), 'agent: { policy_dir = "policies.d"; };\n')
    for q in queues:
        harness.write(os.path.join(d, "policies.d", q["name"] + ".conf"), POLICY % q)
    return d, os.path.join(d, "scaleno.conf")


def q(name, min=2, max=60, max_age="30s"):
    return {"name": name, "min": min, "max": max, "max_age": max_age}


ALGOS = ("scaleno", "target-value", "hpa", "hpa-tuned")


def summary_rows(out):
    rows = {}
    for line in out.splitlines():
        f = line.split()
        if f and f[0] in ALGOS:
            rows[f[0]] = {"worker_s": float(f[1]), "peak": int(f[2]), "over": int(f[3]),
                          "p99": float(f[4].rstrip("s")), "max": float(f[5].rstrip("s")), "actions": int(f[6])}
    return rows


@suite.test
def tiny_trace_hand_computed():
    d, conf = config(q("one", min=1, max=1, max_age="1s"))
    trace = harness.write(os.path.join(d, "tiny.csv"), "t,arrivals\n0,5\n1,0\n2,0\n3,0\n")
    out_csv = os.path.join(d, "tl.csv")
    r = harness.run_scaleno(["simulate", "-c", conf, "-q", "one", "--trace", trace, "--service-rate", "2",
                             "--initial", "1", "--csv", out_csv])
    assert r.returncode == 0, r.stderr
    row = summary_rows(r.stdout)["scaleno"]
    # one worker at 2/s: backlog 3, 1, 0, 0; ages 1, 2, 0, 0
    assert row == {"worker_s": 4, "peak": 3, "over": 1, "p99": 2, "max": 2, "actions": 0}, row
    rows = list(csv.DictReader(open(out_csv)))
    assert [int(x["backlog"]) for x in rows] == [3, 1, 0, 0], rows
    assert [x["oldest_age_s"] for x in rows] == ["1", "2", "0", "0"], rows


@suite.test
def compare_and_svg():
    d, conf = config(q("payments"))
    svg = os.path.join(d, "out.svg")
    out_csv = os.path.join(d, "out.csv")
    trace = os.path.join(TRACES, "failover.csv")
    r = harness.run_scaleno(["simulate", "-c", conf, "-q", "payments", "--trace", trace, "--compare",
                             "--svg", svg, "--csv", out_csv], timeout=60)
    assert r.returncode == 0, r.stderr
    rows = summary_rows(r.stdout)
    # four rows, in this order: scaleno, then the baselines
    assert [l.split()[0] for l in r.stdout.splitlines() if l.split()[:1] and l.split()[0] in ALGOS] \
        == list(ALGOS), r.stdout
    for name, row in rows.items():
        assert row["worker_s"] > 0 and row["peak"] > 0, (name, row)
    # the timeline covers every second of the trace
    n = sum(1 for line in open(trace) if line[:1].isdigit())
    tl = list(csv.DictReader(open(out_csv)))
    assert len(tl) == n, (len(tl), n)
    assert any(x["action"] == "up" for x in tl)
    # the chart is well-formed XML with four panels' lines, labelled axes and a legend
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg", root.tag
    ns = {"s": "http://www.w3.org/2000/svg"}
    lines = root.findall("s:polyline", ns)
    assert len(lines) >= 7, len(lines)   # backlog, age, running, desired, 3 baselines
    texts = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    for label in ("backlog (messages)", "oldest age (s)", "workers", "time (s)", "max_age",
                  "scaleno desired", "hpa desired", "target-value desired", "hpa-tuned desired",
                  "arrivals (msgs/s)",
                  "arrivals/s", "capacity at max (60 x 10/s)"):
        assert label in texts, label
    # arrivals have their own line; capacity, max_age and max are dashed lines across a panel
    assert len(lines) >= 8, len(lines)
    dashed = [l for l in root.findall("s:line", ns) if l.get("stroke-dasharray") == "6,4"
              and float(l.get("x2")) - float(l.get("x1")) > 500]
    assert len(dashed) == 3, len(dashed)
    assert "cannot keep up" not in r.stdout


@suite.test
def says_when_max_cannot_keep_up():
    d, conf = config(q("small", min=1, max=3))
    trace = harness.write(os.path.join(d, "peak.csv"), "t,arrivals\n0,10\n1,95\n2,10\n")
    r = harness.run_scaleno(["simulate", "-c", conf, "-q", "small", "--trace", trace,
                             "--service-rate", "10"])
    assert r.returncode == 0, r.stderr
    assert ("warning: this policy cannot keep up: scale.max = 3 workers x 10 msgs/s = 30 msgs/s "
            "is below the trace's peak arrival rate, 95 msgs/s at 1s; it would take 10 workers") \
        in r.stdout, r.stdout
    r = harness.run_scaleno(["simulate", "-c", conf, "-q", "small", "--trace", trace,
                             "--service-rate", "40"])
    assert r.returncode == 0 and "cannot keep up" not in r.stdout, r.stdout


@suite.test
def baseline_alone():
    d, conf = config(q("payments"))
    first_down = {}
    for name in ALGOS[1:]:
        out_csv = os.path.join(d, name + ".csv")
        r = harness.run_scaleno(["simulate", "-c", conf, "-q", "payments", "--trace",
                                 os.path.join(TRACES, "failover.csv"), "--baseline", name, "--csv", out_csv])
        assert r.returncode == 0, r.stderr
        assert set(summary_rows(r.stdout)) == {name}, r.stdout
        acts = [x for x in csv.DictReader(open(out_csv)) if x["action"] != "none"]
        assert acts and all(x["reason"].startswith(name + ": ") for x in acts), (name, acts[:3])
        up = next(i for i, x in enumerate(acts) if x["action"] == "up")
        first_down[name] = next(float(x["t"]) for x in acts[up:] if x["action"] == "down")
    # the same history until then: hpa-tuned's down window is the policy's 3m, hpa's 5m
    assert first_down["hpa"] - first_down["hpa-tuned"] == 300 - 180, first_down


def read_line(p, timeout=10.0):
    ready, _, _ = select.select([p.stdout], [], [], timeout)
    assert ready, "no answer within %ss (not flushed?)" % timeout
    return p.stdout.readline()


@suite.test
def stdin_round_trip():
    d, conf = config(q("payments"))
    p = subprocess.Popen([harness.SCALENO, "simulate", "-c", conf, "-q", "payments", "--stdin"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, bufsize=1)
    harness._procs.append(p)
    added, read, desired = 10000, 10000, 4
    answers = []
    for i in range(1, 31):
        if i == 5:
            p.stdin.write("{this is not json\n")
        if i == 7:
            p.stdin.write('{"t": 6.5, "lag": -1, "pending": 0, "entries_added": 1, "entries_read": 1, '
                          '"desired": 4, "running": 4}\n')
        rate = 50 if i < 15 else 800       # a surge from t=15
        added += rate
        read += min(rate, desired * 60)
        lag = added - read
        sample = {"t": float(i), "lag": lag, "pending": 0, "entries_added": added, "entries_read": read,
                  "oldest_age_ms": 1000 * min(i, 20) if lag else 0, "desired": desired, "running": desired}
        p.stdin.write(json.dumps(sample) + "\n")
        p.stdin.flush()
        a = json.loads(read_line(p))
        assert set(a) == {"t", "count", "direction", "reason"}, a
        assert a["t"] == float(i), a
        assert a["direction"] in ("up", "down", "none"), a
        if a["direction"] == "none":
            assert a["count"] == desired, a
        else:
            assert (a["count"] > desired) == (a["direction"] == "up"), a
            desired = a["count"]
        assert 0 < len(a["reason"]) < 512, a
        answers.append(a)
    p.stdin.close()
    err = p.stderr.read()
    assert p.wait(timeout=10) == 1, "malformed lines must give exit status 1"
    assert "stdin line 5: not valid JSON" in err, err
    assert "stdin line 8: field \"lag\" must be a whole number >= 0" in err, err
    ups = [a for a in answers if a["direction"] == "up"]
    assert ups and ups[0]["t"] <= 17, answers      # the surge is answered within two samples
    assert all(a["direction"] != "down" for a in answers)


@suite.test
def bad_arguments():
    d, conf = config(q("payments"))
    trace = os.path.join(TRACES, "failover.csv")
    cases = [
        (["-c", conf, "--trace", trace], "-q QUEUE is required"),
        (["-c", conf, "-q", "nope", "--trace", trace], 'no queue "nope"'),
        (["-c", conf, "-q", "payments"], "exactly one of --trace FILE and --stdin"),
        (["-c", conf, "-q", "payments", "--trace", trace, "--stdin"], "exactly one of"),
        (["-c", conf, "-q", "payments", "--trace", trace, "--baseline", "pid"],
         "expected target-value, hpa or hpa-tuned"),
        (["-c", conf, "-q", "payments", "--trace", trace, "--baseline", "hpa", "--compare"],
         "--compare already runs every baseline"),
        (["-c", conf, "-q", "payments", "--trace", trace, "--service-rate", "0"], "expected a number > 0"),
        (["-c", conf, "-q", "payments", "--trace", trace, "--startup", "15"], "--startup"),
        (["-c", conf, "-q", "payments", "--trace", trace, "--bogus"], 'unknown option "--bogus"'),
        (["-c", conf, "-q", "payments", "--stdin", "--csv", "x.csv"], "need --trace"),
    ]
    for args, msg in cases:
        r = harness.run_scaleno(["simulate"] + args)
        assert r.returncode == 1, (args, r.returncode, r.stderr)
        assert msg in r.stderr, (args, r.stderr)
    bad = harness.write(os.path.join(d, "bad.csv"), "t,arrivals\n0,1\n1,oops\n")
    r = harness.run_scaleno(["simulate", "-c", conf, "-q", "payments", "--trace", bad])
    assert r.returncode == 1, r
    assert bad + ":3:" in r.stderr, r.stderr


if __name__ == "__main__":
    suite.main()
