"""The Nomad stand-in behaves like Nomad as its HTTP API documentation describes it (real HTTP, real processes)."""
import json
import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from standin import NomadStandin  # noqa: E402

suite = harness.Suite()
TEXT = "text/plain; charset=utf-8"


def api_job(jid="web", ns="default", count=2, scaling=None, **extra):
    g = {"Name": "g", "Count": count}
    if scaling:
        g["Scaling"] = scaling
    return dict({"ID": jid, "Namespace": ns, "TaskGroups": [g]}, **extra)


def alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False


def expect(resp, status, body=None, ctype=None):
    st, hdrs, text = resp
    assert st == status, "expected %d, got %d %r" % (status, st, text)
    if body is not None:
        assert text == body, "expected body %r, got %r" % (body, text)
    if ctype is not None:
        assert hdrs.get("content-type") == ctype, hdrs
    return hdrs, text


@suite.test
def test_read_shapes_headers_and_paths():
    n = NomadStandin([api_job(scaling={"Min": 1, "Max": 5, "Policy": {"cooldown": "30s"}}),
                      api_job("a/b", count=1)])
    try:
        hdrs, text = expect(n.get("/v1/job/web/scale"), 200, ctype="application/json")
        s = json.loads(text)
        assert set(s) == {"JobID", "Namespace", "JobCreateIndex", "JobModifyIndex", "JobStopped", "TaskGroups"}
        g = s["TaskGroups"]["g"]
        assert (g["Desired"], g["Placed"], g["Running"], g["Events"]) == (2, 2, 2, None), g
        assert int(hdrs["x-nomad-index"]) >= s["JobModifyIndex"]
        assert hdrs["x-nomad-lastcontact"] == "0" and hdrs["x-nomad-knownleader"] == "true"
        assert "server" not in hdrs
        # 404s carry the read headers; write-style and status endpoints do not
        hdrs, _ = expect(n.get("/v1/job/nope/scale"), 404, "job not found", TEXT)
        assert "x-nomad-index" in hdrs
        expect(n.get("/v1/job/nope"), 404, "job not found", TEXT)
        hdrs, text = expect(n.get("/v1/status/leader"), 200)
        assert json.loads(text) and not any(k.startswith("x-nomad") for k in hdrs)
        expect(n.get("/v1/agent/health"), 200,
               '{"client":{"ok":true,"message":"ok"},"server":{"ok":true,"message":"ok"}}')
        expect(n.get("/v1/agent/health?type=server"), 200, '{"server":{"ok":true,"message":"ok"}}')
        self_ = json.loads(expect(n.get("/v1/agent/self"), 200)[1])
        assert self_["config"]["Region"] == "global" and isinstance(self_["config"]["Version"], dict)
        expect(n.get("/v1/regions"), 200, '["global"]')
        # unknown path: 404 with an empty body; wrong method: 405
        hdrs, _ = expect(n.get("/v1/nothing/here"), 404, "")
        assert "content-type" not in hdrs and "x-nomad-index" not in hdrs
        expect(n.request("DELETE", "/v1/job/web/scale"), 405, "Invalid method", TEXT)
        expect(n.post("/v1/job/web/allocations", {}), 405, "Invalid method")
        # pretty: indented with a trailing newline; compact otherwise
        text = expect(n.get("/v1/job/web/scale?pretty"), 200)[1]
        assert text.endswith("}\n") and "\n    " in text
        assert "\n" not in expect(n.get("/v1/job/web/scale?pretty=0"), 200)[1]
        # percent-decoded ids, allocations, job, policies
        assert json.loads(expect(n.get("/v1/job/a%2Fb/scale"), 200)[1])["JobID"] == "a/b"
        allocs = json.loads(expect(n.get("/v1/job/web/allocations"), 200)[1])
        assert sorted(a["Name"] for a in allocs) == ["web.g[0]", "web.g[1]"]
        assert {"ID", "EvalID", "TaskStates", "DesiredTransition", "CreateIndex", "ModifyTime"} <= set(allocs[0])
        expect(n.get("/v1/job/missing/allocations"), 200, "[]")
        job = json.loads(expect(n.get("/v1/job/web"), 200)[1])
        assert job["TaskGroups"][0]["Count"] == 2 and job["JobModifyIndex"] > 0 and job["Version"] == 0
        assert job["TaskGroups"][0]["Tasks"][0]["KillSignal"] == "SIGINT"
        pols = json.loads(expect(n.get("/v1/scaling/policies"), 200)[1])
        assert len(pols) == 1 and pols[0]["Target"] == {"Namespace": "default", "Job": "web", "Group": "g"}
        pol = json.loads(expect(n.get("/v1/scaling/policy/" + pols[0]["ID"]), 200)[1])
        assert (pol["Min"], pol["Max"], pol["Enabled"], pol["Policy"]) == (1, 5, True, {"cooldown": "30s"})
        assert "Namespace" not in pol
        expect(n.get("/v1/scaling/policy/nope"), 404, "policy not found")
        expect(n.get("/v1/scaling/policies?job=a/b"), 200, "[]")
        expect(n.get("/v1/evaluation/nope"), 404, "eval not found")
        # a stopped job: JobStopped, policies disabled, a counted scale is accepted but places nothing
        n.set_job("web", stop=True)
        s = n.scale_status("web")
        assert s["JobStopped"] is True and s["TaskGroups"]["g"]["Placed"] == 0, s
        assert json.loads(n.get("/v1/scaling/policy/" + pols[0]["ID"])[2])["Enabled"] is False
        expect(n.scale("web", "g", 4), 200)
        g = n.scale_status("web")["TaskGroups"]["g"]
        assert (g["Desired"], g["Placed"]) == (4, 0), g
    finally:
        assert n.stop() == 0


@suite.test
def test_scale_write_checks_in_order():
    n = NomadStandin([api_job(scaling={"Min": 1, "Max": 5}), api_job("free", count=1)])
    try:
        url = "/v1/job/web/scale"
        cases = [
            (b"", 400, "Request body is empty"),
            ({"Count": "3", "Target": {"Group": "g"}}, 400,
             "json: cannot unmarshal string into Go struct field ScalingRequest.Count of type int64"),
            ({"Count": 3.0, "Target": {"Group": "g"}}, 400,
             "json: cannot unmarshal number 3.0 into Go struct field ScalingRequest.Count of type int64"),
            ({"Error": "yes", "Target": {"Group": "g"}}, 400,
             "json: cannot unmarshal string into Go struct field ScalingRequest.Error of type bool"),
            ({"Error": 1, "Target": {"Group": "g"}}, 400,
             "json: cannot unmarshal number into Go struct field ScalingRequest.Error of type bool"),
            ({"Target": {"Group": 5}}, 400,
             "json: cannot unmarshal number into Go struct field ScalingRequest.Target of type string"),
            ({"JobModifyIndex": -1, "Target": {"Group": "g"}}, 400,
             "json: cannot unmarshal number -1 into Go struct field ScalingRequest.JobModifyIndex of type uint64"),
            (b"[1]", 400, "json: cannot unmarshal array into Go value of type api.ScalingRequest"),
            (b'{"Count": 1,}', 400, "invalid character '}' looking for beginning of object key string"),
            (b'{"Count": 1 "x"}', 400, "invalid character '\"' after object key:value pair"),
            (b"{", 400, "unexpected EOF"),
            ({"Count": -1, "Target": {"Job": "other", "Namespace": "x"}}, 400, "job ID in payload did not match URL"),
            ({"Count": -1, "Target": {"Job": "web", "Namespace": "x"}}, 400,
             "namespace in payload did not match header"),
            ({"Count": -1, "Target": {"group": "g"}}, 400, "missing task group name for scaling action"),
            ({"Count": -1, "Error": True, "Target": {"Group": "g"}}, 400, "scaling action count can't be negative"),
            ({"Count": 2, "Error": True, "Target": {"Group": "g"}}, 400,
             "scaling action should not contain count if error is true"),
            ({"Count": 0, "Target": {"Group": "nope"}}, 400,
             'task group "nope" specified for scaling does not exist in job'),
            ({"Count": 0, "Target": {"Group": "g"}}, 400, "group count was less than scaling policy minimum: 0 < 1"),
            ({"Count": 6, "Target": {"Group": "g"}}, 400,
             "group count was greater than scaling policy maximum: 6 > 5"),
            ({"Count": 3, "JobModifyIndex": 99999, "Target": {"Group": "g"}}, 500, None),
        ]
        for body, status, text in cases:
            expect(n.put(url, body), status, text, TEXT)
        st, _, text = n.put(url, {"Count": 3, "JobModifyIndex": 99999, "Target": {"Group": "g"}})
        jmi = json.loads(n.get("/v1/job/web")[2])["JobModifyIndex"]
        assert text == ("Enforcing job modify index 99999: job exists with conflicting job modify index: %d" % jmi)
        # validation comes before the job lookup; the write's not-found text differs from GET's
        expect(n.put("/v1/job/ghost/scale", {"Count": 1, "Target": {}}), 400, "missing task group name for scaling action")
        expect(n.put("/v1/job/ghost/scale", {"Count": 1, "Target": {"Group": "g"}}), 404, 'job "ghost" not found')
        # fields match case-insensitively, map keys do not; the first JSON value is all that is read
        expect(n.post(url, b'{"count": 3, "target": {"Group": "g"}} trailing'), 200)
        assert n.scale_status("web")["TaskGroups"]["g"]["Desired"] == 3
        # a group without a scaling block accepts any count >= 0
        expect(n.scale("free", "g", 0), 200)
        # job_max_count (500) and the active deployment (400, no event) come after min/max
        n.fault(job_max_count=4)
        expect(n.scale("web", "g", 5), 500, "total count was greater than configured job_max_count: 5 > 4")
        n.fault(job_max_count=0, active_deployment=["web"])
        before = n.scale_status("web")["TaskGroups"]["g"]["Events"]
        expect(n.scale("web", "g", 4), 400, "job scaling blocked due to active deployment")
        assert n.scale_status("web")["TaskGroups"]["g"]["Events"] == before
        # an event-only write is not blocked by the deployment
        expect(n.put(url, {"Target": {"Group": "g"}, "Message": "no change"}), 200)
        n.fault(active_deployment=[])
        expect(n.put(url, {"Count": 4, "JobModifyIndex": jmi + 100, "Target": {"Group": "g"}}), 500)
        job = json.loads(n.get("/v1/job/web")[2])
        expect(n.put(url, {"Count": 4, "JobModifyIndex": job["JobModifyIndex"], "Target": {"Group": "g"}}), 200)
    finally:
        assert n.stop() == 0


@suite.test
def test_index_bookkeeping_and_events():
    n = NomadStandin([api_job(scaling={"Min": 0, "Max": 9})])
    try:
        job = json.loads(n.get("/v1/job/web")[2])
        hdrs, text = expect(n.scale("web", "g", 3, Message="up", Meta={"backlog": 450}), 200)
        r = json.loads(text)
        i = r["JobModifyIndex"]
        assert (r["EvalCreateIndex"], r["Index"]) == (i + 1, i + 2), r
        assert hdrs["x-nomad-index"] == str(i + 2) and "x-nomad-knownleader" not in hdrs
        assert (r["Warnings"], r["LastContact"], r["KnownLeader"], r["NextToken"]) == ("", 0, True, "")
        job2 = json.loads(n.get("/v1/job/web")[2])
        assert job2["Version"] == job["Version"] + 1 and job2["JobModifyIndex"] == i
        ev = json.loads(expect(n.get("/v1/evaluation/" + r["EvalID"]), 200)[1])
        assert (ev["TriggeredBy"], ev["CreateIndex"], ev["JobID"]) == ("job-scaling", i + 1, "web")
        e = n.scale_status("web")["TaskGroups"]["g"]["Events"][0]
        assert (e["Count"], e["PreviousCount"], e["Message"], e["Meta"], e["EvalID"], e["CreateIndex"]) == \
            (3, 2, "up", {"backlog": 450}, r["EvalID"], i + 2), e
        # the same count again still bumps the version (no no-op detection)
        expect(n.scale("web", "g", 3), 200)
        assert json.loads(n.get("/v1/job/web")[2])["Version"] == job["Version"] + 2
        # event-only writes: one write, no eval, JobModifyIndex is the job's ModifyIndex
        modify = json.loads(n.get("/v1/job/web")[2])["ModifyIndex"]
        for k in range(25):
            hdrs, text = expect(n.put("/v1/job/web/scale", {"Target": {"Group": "g"}, "Message": "m%d" % k,
                                                            "Error": k % 2 == 1}), 200)
            r = json.loads(text)
            assert (r["EvalID"], r["EvalCreateIndex"], r["JobModifyIndex"]) == ("", 0, modify), r
        events = n.scale_status("web")["TaskGroups"]["g"]["Events"]
        assert len(events) == 20 and [x["Message"] for x in events[:2]] == ["m24", "m23"]
        assert events[0]["Count"] is None and events[0]["EvalID"] is None and events[0]["Meta"] is None
        assert events[1]["Error"] is True and events[0]["CreateIndex"] == r["Index"]
        assert [x["CreateIndex"] for x in events] == sorted((x["CreateIndex"] for x in events), reverse=True)
    finally:
        assert n.stop() == 0


@suite.test
def test_startup_delay_placed_before_running():
    m = NomadStandin([{"ID": "slow", "TaskGroups": [{"Name": "g", "Count": 1, "StartupDelay": 1.5}]}])
    try:
        harness.wait_until(lambda: m.scale_status("slow")["TaskGroups"]["g"]["Running"] == 1, what="running")
        expect(m.scale("slow", "g", 2), 200)
        hdrs, text = expect(m.get("/v1/job/slow/scale"), 200)
        g = json.loads(text)["TaskGroups"]["g"]
        assert (g["Desired"], g["Placed"], g["Running"]) == (2, 2, 1), g
        # a blocking query on the scale status wakes up when the new alloc becomes running
        idx = int(hdrs["x-nomad-index"])
        hdrs, text = expect(m.get("/v1/job/slow/scale?index=%d&wait=10s" % idx), 200)
        assert int(hdrs["x-nomad-index"]) > idx and json.loads(text)["TaskGroups"]["g"]["Running"] == 2
    finally:
        assert m.stop() == 0


@suite.test
def test_acl_tokens_namespaces_region():
    tokens = [{"SecretID": "mgmt", "Type": "management"},
              {"SecretID": "scaler", "Namespaces": {"default": ["scale"]}},
              {"SecretID": "reader", "Namespaces": {"*": ["read"]}, "Agent": "read"},
              {"SecretID": "prod-only", "Namespaces": {"prod": ["write"]}}]
    n = NomadStandin([api_job(), api_job("web", ns="prod", count=1)], acl_tokens=tokens)
    try:
        denied = (403, "Permission denied", TEXT)
        expect(n.get("/v1/job/web/scale"), *denied)
        expect(n.get("/v1/job/web/scale", token="bogus"), *denied)
        expect(n.get("/v1/job/web/scale", token="scaler"), 200)
        expect(n.get("/v1/job/web/scale", token="reader"), 200)
        expect(n.scale("web", "g", 3, token="reader"), *denied)
        expect(n.scale("web", "g", 3, token="scaler"), 200)
        expect(n.get("/v1/job/web/allocations", token="scaler"), 200)  # scale includes read-job (v1.11.3+)
        expect(n.get("/v1/agent/self", token="scaler"), *denied)
        expect(n.get("/v1/agent/self", token="reader"), 200)
        expect(n.get("/v1/status/leader"), 200)
        expect(n.get("/v1/agent/health"), 200)
        # Authorization: Bearer, scheme case-insensitive and trimmed; X-Nomad-Token wins
        expect(n.get("/v1/job/web/scale", headers={"Authorization": "  bEaReR   scaler  "}), 200)
        expect(n.get("/v1/job/web/scale", headers={"Authorization": "Basic scaler"}), *denied)
        expect(n.get("/v1/job/web/scale", token="bogus", headers={"Authorization": "Bearer mgmt"}), *denied)
        # namespaces: missing means default; a job elsewhere is not found
        assert n.scale_status("web", token="mgmt")["TaskGroups"]["g"]["Desired"] == 3
        assert n.scale_status("web", namespace="prod", token="mgmt")["TaskGroups"]["g"]["Desired"] == 1
        expect(n.get("/v1/job/web/scale?namespace=dev", token="mgmt"), 404, "job not found")
        expect(n.get("/v1/job/web/scale?namespace=prod", token="scaler"), *denied)
        expect(n.put("/v1/job/web/scale?namespace=prod", {"Count": 2, "Target": {"Group": "g"}},
                     token="prod-only"), 200)
        expect(n.put("/v1/job/web/scale?namespace=dev", {"Count": 2, "Target": {"Group": "g"}},
                     token="mgmt"), 404, 'job "web" not found')
        # the body's Namespace/SecretID/Region are ignored
        expect(n.put("/v1/job/web/scale", {"Count": 2, "Target": {"Group": "g"}, "SecretID": "mgmt",
                                           "Namespace": "prod", "Region": "mars"}, token="scaler"), 200)
        assert n.scale_status("web", namespace="prod", token="mgmt")["TaskGroups"]["g"]["Desired"] == 2
        pols = expect(n.get("/v1/scaling/policies?namespace=*", token="reader"), 200)
        expect(n.get("/v1/job/web/scale?region=mars", token="mgmt"), 500, "No path to region", TEXT)
        expect(n.get("/v1/job/web/scale?region=global", token="mgmt"), 200)
        log = n.requests()
        assert log[0]["Token"] is None and log[1]["Token"] == "bogus" and log[1]["Status"] == 403
        assert any(r["TokenHeader"] == "Authorization" and r["Token"] == "scaler" for r in log)
        assert pols is not None
    finally:
        assert n.stop() == 0


@suite.test
def test_blocking_queries():
    n = NomadStandin([api_job(scaling={"Min": 0, "Max": 9})])
    try:
        expect(n.get("/v1/job/web/scale?wait=60"), 400, "Invalid wait time", TEXT)
        expect(n.get("/v1/job/web/scale?index=x"), 400, "Invalid index", TEXT)
        expect(n.get("/v1/job/web/scale?index=-1"), 400, "Invalid index")
        expect(n.get("/v1/job/web/scale?stale=maybe"), 400,
               "Expect `true` or `false` for `stale` query string parameter")
        expect(n.get("/v1/job/web/scale?stale"), 200)
        idx = int(n.get("/v1/job/web/scale")[1]["x-nomad-index"])
        # times out: 200 with the same index and the current data
        t0 = time.monotonic()
        hdrs, text = expect(n.get("/v1/job/web/scale?index=%d&wait=300ms" % idx), 200)
        assert time.monotonic() - t0 >= 0.29 and int(hdrs["x-nomad-index"]) == idx
        assert json.loads(text)["TaskGroups"]["g"]["Desired"] == 2
        # wakes up on a write
        out = {}

        def blocked():
            out["r"] = n.get("/v1/job/web/scale?index=%d&wait=20s" % idx)
        t = threading.Thread(target=blocked)
        t.start()
        harness.wait_until(lambda: [r for r in n.requests() if r["Query"].get("index") == str(idx)
                                    and r["Status"] is None], what="blocking request in flight")
        r = json.loads(expect(n.scale("web", "g", 4), 200)[1])
        t.join(timeout=15)
        assert not t.is_alive()
        hdrs, text = expect(out["r"], 200)
        assert int(hdrs["x-nomad-index"]) > idx and json.loads(text)["TaskGroups"]["g"]["Desired"] == 4
        # the allocations list blocks on the allocs table
        aidx = int(n.get("/v1/job/web/allocations")[1]["x-nomad-index"])
        hdrs, _ = expect(n.get("/v1/job/web/allocations?index=%d&wait=100ms" % (aidx + 1000)), 200)
        assert int(hdrs["x-nomad-index"]) == aidx and r["Index"] > 0
    finally:
        assert n.stop() == 0


@suite.test
def test_processes_env_scale_in_and_kill_timeout():
    out = harness.tmpdir()
    polite = ("env > \"$OUT/$NOMAD_ALLOC_INDEX.env\"; echo $$ > \"$OUT/$NOMAD_ALLOC_INDEX.pid\"; "
              "trap 'echo INT > \"$OUT/$NOMAD_ALLOC_INDEX.sig\"; exit 0' INT TERM; "
              "while :; do sleep 0.05; done")
    stubborn = ("trap '' INT; sleep 1000 & echo $! > \"$OUT/child.pid\"; "
                "while :; do sleep 0.05; done")
    jobs = [{"ID": "work", "TaskGroups": [
        {"Name": "w", "Count": 1, "Task": "sup", "Command": ["sh", "-c", polite], "Env": {"OUT": out, "X": "y"},
         "KillTimeout": "3s", "Scaling": {"Min": 0, "Max": 5}},
        {"Name": "s", "Count": 1, "Command": ["sh", "-c", stubborn], "Env": {"OUT": out},
         "KillTimeout": 700000000, "StartupDelay": 0.3}]}]
    n = NomadStandin(jobs, restart_delay=0.2)
    try:
        expect(n.scale("work", "w", 3), 200)
        harness.wait_until(lambda: len([a for a in n.running_allocs("work") if a["TaskGroup"] == "w"]) == 3,
                           what="3 running allocs")
        harness.wait_until(lambda: all(os.path.exists(os.path.join(out, "%d.pid" % i)) for i in range(3)),
                           what="env files")
        allocs = {a["Index"]: a for a in n.allocs("work") if a["TaskGroup"] == "w"}
        for i in range(3):
            env = dict(l.split("=", 1) for l in open(os.path.join(out, "%d.env" % i)).read().splitlines() if "=" in l)
            a = allocs[i]
            assert env["NOMAD_ALLOC_ID"] == a["ID"] and env["NOMAD_SHORT_ALLOC_ID"] == a["ID"][:8]
            assert env["NOMAD_ALLOC_NAME"] == "work.w[%d]" % i and env["NOMAD_ALLOC_INDEX"] == str(i)
            assert (env["NOMAD_GROUP_NAME"], env["NOMAD_TASK_NAME"], env["NOMAD_JOB_ID"], env["NOMAD_JOB_NAME"]) == \
                ("w", "sup", "work", "work")
            assert (env["NOMAD_NAMESPACE"], env["NOMAD_REGION"], env["NOMAD_DC"], env["X"]) == \
                ("default", "global", "dc1", "y")
            for d in ("NOMAD_ALLOC_DIR", "NOMAD_TASK_DIR", "NOMAD_SECRETS_DIR"):
                assert os.path.isdir(env[d]) and env[d].startswith(n.state_dir), (d, env[d])
            assert int(open(os.path.join(out, "%d.pid" % i)).read()) == a["Pid"]
            assert os.getpgid(a["Pid"]) == a["Pid"]  # own process group
        # scale-in stops the highest index with the kill signal; it leaves Running at once
        pid2 = allocs[2]["Pid"]
        expect(n.scale("work", "w", 2), 200)
        g = n.scale_status("work")["TaskGroups"]["w"]
        assert (g["Desired"], g["Placed"]) == (2, 2) and g["Running"] <= 2
        harness.wait_until(lambda: os.path.exists(os.path.join(out, "2.sig")), what="SIGINT handled by index 2")
        harness.wait_until(lambda: not alive(pid2), what="index 2 exits")
        a2 = next(a for a in n.allocs("work") if a["ID"] == allocs[2]["ID"])
        harness.wait_until(lambda: next(a for a in n.allocs("work") if a["ID"] == allocs[2]["ID"])["ClientStatus"]
                           == "complete", what="index 2 complete")
        assert a2["DesiredStatus"] == "stop" and alive(allocs[0]["Pid"]) and alive(allocs[1]["Pid"])
        assert not os.path.exists(os.path.join(out, "0.sig"))
        # scale-up again reuses the lowest free index (2)
        expect(n.scale("work", "w", 3), 200)
        harness.wait_until(lambda: sorted(a["Index"] for a in n.running_allocs("work") if a["TaskGroup"] == "w")
                           == [0, 1, 2], what="index 2 placed again")
        # a process that ignores the kill signal gets SIGKILL, with its whole group, after kill_timeout
        s = harness.wait_until(lambda: [a for a in n.running_allocs("work") if a["TaskGroup"] == "s"],
                               what="stubborn alloc running")[0]
        child = int(harness.wait_until(lambda: os.path.exists(os.path.join(out, "child.pid")) and
                                       open(os.path.join(out, "child.pid")).read().strip(), what="child pid"))
        t0 = time.monotonic()
        n.set_job("work", counts={"s": 0})
        harness.wait_until(lambda: not alive(s["Pid"]) and not alive(child), timeout=10, what="SIGKILL of group")
        assert time.monotonic() - t0 >= 0.6, "killed before kill_timeout"
        final = next(a for a in n.allocs("work") if a["ID"] == s["ID"])
        assert final["KillSignalSent"] and final["SigkillSent"]
        # a task that dies by itself is restarted in place (same alloc, Restarts counted)
        a0 = next(a for a in n.running_allocs("work") if a["Index"] == 0)
        n.signal_alloc(a0["ID"], "SIGKILL")
        again = harness.wait_until(lambda: [a for a in n.running_allocs("work") if a["ID"] == a0["ID"]
                                            and a["Pid"] != a0["Pid"]], what="restart")[0]
        assert again["Restarts"] == 1
        stub = next(a for a in json.loads(n.get("/v1/job/work/allocations")[2]) if a["ID"] == a0["ID"])
        assert stub["TaskStates"]["sup"]["Restarts"] == 1
        assert os.path.getsize(os.path.join(os.path.dirname(again["Stdout"]), "sup.stdout.0")) >= 0
    finally:
        assert n.stop() == 0


@suite.test
def test_failing_task_fails_alloc_and_is_replaced():
    jobs = [{"ID": "crash", "TaskGroups": [{"Name": "g", "Count": 1, "Command": ["sh", "-c", "exit 3"]}]}]
    n = NomadStandin(jobs, restart_delay=0.1, args=["--restart-attempts", "1"])
    try:
        failed = harness.wait_until(lambda: [a for a in n.allocs("crash") if a["ClientStatus"] == "failed"],
                                    what="a failed alloc")[0]
        assert failed["Restarts"] == 1 and failed["ExitCode"] == 3 and failed["Pid"] is None, failed
        repl = harness.wait_until(lambda: [a for a in n.allocs("crash") if a["ID"] != failed["ID"]],
                                  what="a replacement")[0]
        assert repl["Name"] == failed["Name"] == "crash.g[0]"
        again = next(a for a in n.allocs("crash") if a["ID"] == failed["ID"])
        assert (again["ClientStatus"], again["Restarts"], again["Pid"]) == ("failed", 1, None), again
        stub = next(a for a in json.loads(n.get("/v1/job/crash/allocations")[2]) if a["ID"] == failed["ID"])
        assert stub["TaskStates"]["g"]["Failed"] is True and stub["ClientStatus"] == "failed"
    finally:
        assert n.stop() == 0


@suite.test
def test_fault_switches_and_request_log():
    n = NomadStandin([api_job()], args=["--delay-ms", "0"])
    try:
        n.fault(errors=2)
        expect(n.get("/v1/job/web/scale"), 500, "No cluster leader", TEXT)
        expect(n.get("/v1/status/leader"), 500, "No cluster leader")
        expect(n.get("/v1/job/web/scale"), 200)
        n.fault(errors=-1, error_status=503, error_text="down")
        for _ in range(3):
            expect(n.get("/v1/job/web/scale"), 503, "down")
        n.fault(errors=0)
        expect(n.get("/v1/job/web/scale"), 200)
        # malformed JSON on 200 answers
        n.fault(malformed=1)
        st, _, text = n.get("/v1/job/web/scale")
        assert st == 200
        try:
            json.loads(text)
            raise AssertionError("expected malformed JSON, got %r" % text)
        except ValueError:
            pass
        json.loads(expect(n.get("/v1/job/web/scale"), 200)[1])
        # slow answers
        n.fault(delay_ms=300)
        t0 = time.monotonic()
        expect(n.get("/v1/job/web/scale"), 200)
        assert time.monotonic() - t0 >= 0.29
        n.fault(clear=True)
        # refused connections, then the same port again
        host, port = n.address.rsplit(":", 1)
        n.fault(refuse_ms=800)

        def refused():
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                return False
            except ConnectionRefusedError:
                return True
        assert refused(), "the port must be closed once the fault call has answered"
        harness.wait_until(lambda: not refused(), timeout=10, what="listening again")
        expect(n.get("/v1/job/web/scale"), 200)
        # the request log records what the client sent
        n.clear_requests()
        n.put("/v1/job/web/scale?namespace=default", {"Count": 3, "Target": {"Group": "g"}}, token="t0k")
        log = n.requests()
        assert len(log) == 1, log
        r = log[0]
        assert (r["Method"], r["Path"], r["Query"], r["Token"], r["Status"]) == \
            ("PUT", "/v1/job/web/scale", {"namespace": "default"}, "t0k", 200), r
        assert json.loads(r["Body"])["Count"] == 3 and r["Time"] > 0
        # command-line switches
        m = NomadStandin([api_job()], args=["--fail-requests", "1", "--active-deployment", "web"])
        try:
            expect(m.get("/v1/job/web/scale"), 500, "No cluster leader")
            expect(m.scale("web", "g", 3), 400, "job scaling blocked due to active deployment")
        finally:
            assert m.stop() == 0
    finally:
        assert n.stop() == 0


def _spawn_for_shutdown(out):
    jobs = [{"ID": "w", "TaskGroups": [
        {"Name": "a", "Count": 2, "Command": ["sh", "-c", "sleep 1000 & echo $! > \"$OUT/$NOMAD_ALLOC_INDEX\"; wait"],
         "Env": {"OUT": out}, "KillTimeout": "500ms"}]}]
    n = NomadStandin(jobs)
    harness.wait_until(lambda: len(n.running_allocs("w")) == 2 and len(os.listdir(out)) == 2, what="2 allocs")
    pids = [a["Pid"] for a in n.allocs("w")]
    pids += [int(harness.wait_until(lambda: open(os.path.join(out, f)).read().strip(), what="child pid"))
             for f in os.listdir(out)]
    assert all(alive(p) for p in pids)
    return n, pids


@suite.test
def test_nothing_left_after_sigterm():
    out = harness.tmpdir()
    n, pids = _spawn_for_shutdown(out)
    assert n.stop(signal.SIGTERM) == 0
    assert not [p for p in pids if alive(p)]


@suite.test
def test_nothing_left_after_sigkill():
    out = harness.tmpdir()
    n, pids = _spawn_for_shutdown(out)
    n.kill()
    harness.wait_until(lambda: not [p for p in pids if alive(p)], timeout=10, what="watchdog cleanup")


@suite.test
def test_bad_job_file_and_listen_address():
    d = harness.tmpdir()
    bad = harness.write(os.path.join(d, "bad.json"), json.dumps({"Jobs": [{"ID": "x", "TaskGroups": [
        {"Name": "g", "Count": 9, "Scaling": {"Min": 1, "Max": 3}}]}]}))
    r = harness.subprocess.run(["python3", harness.STANDIN, "--jobs", bad], capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "Jobs[0].TaskGroups[0].Count" in r.stderr, r.stderr
    good = harness.write(os.path.join(d, "good.json"), json.dumps([api_job()]))
    r = harness.subprocess.run(["python3", harness.STANDIN, "--jobs", good, "--listen", "0.0.0.0:0"],
                               capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "loopback" in r.stderr, r.stderr
    r = harness.subprocess.run(["python3", harness.STANDIN, "--help"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0 and "Job file" in r.stdout and "/_standin/faults" in r.stdout


# ---------------------------------------------------------------- Nomad as it really behaves

def job_json(n, jid, ns=None):
    q = "?namespace=" + ns if ns else ""
    return json.loads(expect(n.get("/v1/job/%s%s" % (jid, q)), 200)[1])


@suite.test
def test_job_scaling_block_bounds_every_count():
    """The group's scaling block bounds every counted scale, whoever sends it; without Min it is
    the group's count at registration (api/scaling.go Canonicalize)."""
    n = NomadStandin([api_job("narrow", count=2, scaling={"Min": 1, "Max": 3, "Policy": {"cooldown": "1m"}}),
                      api_job("nomin", count=2, scaling={"Max": 5, "Enabled": False}),
                      api_job("free", count=2)])
    try:
        sc = job_json(n, "narrow")["TaskGroups"][0]["Scaling"]
        assert (sc["Min"], sc["Max"], sc["Enabled"], sc["Policy"], sc["Type"]) == (1, 3, True, {"cooldown": "1m"},
                                                                                 "horizontal"), sc
        assert sc["Target"] == {"Namespace": "default", "Job": "narrow", "Group": "g"}
        sc = job_json(n, "nomin")["TaskGroups"][0]["Scaling"]
        assert (sc["Min"], sc["Max"], sc["Enabled"]) == (2, 5, False), sc
        assert job_json(n, "free")["TaskGroups"][0]["Scaling"] is None
        before = n.scale_status("narrow")["TaskGroups"]["g"]["Events"]
        expect(n.scale("narrow", "g", 4), 400, "group count was greater than scaling policy maximum: 4 > 3", TEXT)
        expect(n.scale("narrow", "g", 0), 400, "group count was less than scaling policy minimum: 0 < 1", TEXT)
        # a disabled block bounds as well; nothing was written for the refusals
        expect(n.scale("nomin", "g", 1), 400, "group count was less than scaling policy minimum: 1 < 2", TEXT)
        assert n.scale_status("narrow")["TaskGroups"]["g"]["Events"] == before
        assert n.cli_scale("narrow", "g", 9) == (400, "group count was greater than scaling policy maximum: 9 > 3")
        expect(n.scale("narrow", "g", 3), 200)
        expect(n.scale("free", "g", 40), 200)
        # an operator re-register narrows or widens the block at run time: new ModifyIndex
        old = job_json(n, "narrow")
        n.set_job("narrow", scaling={"g": {"Min": 2, "Max": 6}})
        new = job_json(n, "narrow")
        sc = new["TaskGroups"][0]["Scaling"]
        assert (sc["Min"], sc["Max"]) == (2, 6) and sc["ModifyIndex"] > old["TaskGroups"][0]["Scaling"]["ModifyIndex"]
        assert new["JobModifyIndex"] > old["JobModifyIndex"]
        expect(n.scale("narrow", "g", 6), 200)
        expect(n.scale("narrow", "g", 1), 400, "group count was less than scaling policy minimum: 1 < 2")
        st, _, text = n.request("POST", "/_standin/job", body={"ID": "narrow", "Scaling": {"g": {"Max": 4}}})
        assert (st, text) == (400, "Scaling policy invalid: task group count must not be greater than maximum "
                                   "count in scaling policy"), (st, text)
        n.set_job("free", scaling={"g": {"Max": 50}})  # Min defaults to the count (40)
        assert job_json(n, "free")["TaskGroups"][0]["Scaling"]["Min"] == 40
        expect(n.scale("free", "g", 39), 400, "group count was less than scaling policy minimum: 39 < 40")
    finally:
        assert n.stop() == 0


@suite.test
def test_capacity_leaves_allocations_queued_then_places_them_at_once():
    n = NomadStandin([api_job("a", count=2, scaling={"Min": 0, "Max": 40}), api_job("b", count=2)],
                     args=["--capacity", "4"])
    try:
        r = json.loads(expect(n.scale("a", "g", 6), 200)[1])
        g = n.scale_status("a")["TaskGroups"]["g"]
        assert (g["Desired"], g["Placed"], g["Running"]) == (6, 2, 2), g
        summ = n.summary("a")
        assert summ["Summary"]["g"] == {"Queued": 4, "Complete": 0, "Failed": 0, "Running": 2, "Starting": 0,
                                        "Lost": 0, "Unknown": 0}, summ
        assert (summ["JobID"], summ["Namespace"], summ["Children"]) == ("a", "default",
                                                                       {"Pending": 0, "Running": 0, "Dead": 0})
        # the scale's evaluation completes with the failures and a blocked follow-up
        ev = json.loads(expect(n.get("/v1/evaluation/" + r["EvalID"]), 200)[1])
        assert ev["Status"] == "complete" and ev["QueuedAllocations"] == {"g": 4}, ev
        assert ev["FailedTGAllocs"]["g"]["CoalescedFailures"] == 3 and ev["BlockedEval"], ev
        blocked = json.loads(expect(n.get("/v1/evaluation/" + ev["BlockedEval"]), 200)[1])
        assert (blocked["Status"], blocked["TriggeredBy"], blocked["PreviousEval"]) == \
            ("blocked", "queued-allocs", ev["ID"]), blocked
        evs = json.loads(expect(n.get("/v1/job/a/evaluations"), 200)[1])
        assert ev["BlockedEval"] in [e["ID"] for e in evs]
        # the list stub counts it too; asking for more places nothing more
        stubs = {s["ID"]: s for s in json.loads(expect(n.get("/v1/jobs"), 200)[1])}
        assert stubs["a"]["JobSummary"]["Summary"]["g"]["Queued"] == 4, stubs["a"]
        expect(n.scale("a", "g", 40), 200)
        g = n.scale_status("a")["TaskGroups"]["g"]
        assert (g["Desired"], g["Placed"]) == (40, 2) and n.summary("a")["Summary"]["g"]["Queued"] == 38
        # room freed by another job's scale-down is used at once; a blocking summary read wakes up
        hdrs, _ = expect(n.get("/v1/job/a/summary"), 200)
        idx = int(hdrs["x-nomad-index"])
        out = {}
        t = threading.Thread(target=lambda: out.update(r=n.get("/v1/job/a/summary?index=%d&wait=20s" % idx)))
        t.start()
        harness.wait_until(lambda: [q for q in n.requests() if q["Query"].get("index") == str(idx)
                                    and q["Status"] is None], what="blocking summary read in flight")
        expect(n.scale("b", "g", 0), 200)
        t.join(timeout=15)
        hdrs, text = expect(out["r"], 200)
        assert int(hdrs["x-nomad-index"]) > idx and json.loads(text)["Summary"]["g"]["Queued"] == 36, text
        assert n.scale_status("a")["TaskGroups"]["g"]["Placed"] == 4
        # more capacity, changed at run time: everything queued is placed in one write
        assert n.fault(capacity=100)["capacity"] == 100
        g = n.scale_status("a")["TaskGroups"]["g"]
        assert (g["Desired"], g["Placed"], g["Running"]) == (40, 40, 40), g
        assert n.summary("a")["Summary"]["g"]["Queued"] == 0
        placed = {x["CreateIndex"] for x in json.loads(n.get("/v1/job/a/allocations")[2])
                  if x["DesiredStatus"] == "run"}
        assert len(placed) == 3, placed  # register, the freed room, the capacity change
        assert json.loads(n.get("/v1/evaluation/" + ev["BlockedEval"])[2])["Status"] in ("complete", "canceled")
        # stopped allocations free their slot at once; unlimited again with -1
        n.fault(capacity=40)
        expect(n.scale("a", "g", 30), 200)
        expect(n.scale("b", "g", 10), 200)
        assert n.scale_status("b")["TaskGroups"]["g"]["Placed"] == 10
        n.fault(capacity=-1)
        for bad in ("x", -5, True):
            expect(n.request("POST", "/_standin/faults", body={"capacity": bad}), 400,
                   "capacity must be an integer >= 0 (-1 or null: unlimited)")
    finally:
        assert n.stop() == 0


@suite.test
def test_deployment_blocks_further_count_changes():
    svc = api_job("svc", count=2, scaling={"Min": 0, "Max": 20})
    jobs = [svc, api_job("batchy", count=1, Type="batch"), api_job("nodeploy", count=1, Update={"MaxParallel": 0}),
            api_job("slow", count=1, DeploymentDuration="30s")]
    n = NomadStandin(jobs, args=["--deployment-ms", "700"])
    try:
        upd = job_json(n, "svc")["TaskGroups"][0]["Update"]
        assert (upd["MaxParallel"], upd["HealthCheck"], upd["MinHealthyTime"], upd["ProgressDeadline"]) == \
            (1, "checks", 10 * 10 ** 9, 600 * 10 ** 9), upd
        assert job_json(n, "batchy")["TaskGroups"][0]["Update"] is None
        assert n.deployment("svc") is None  # jobs loaded at start-up are not deploying
        t0 = time.monotonic()
        expect(n.scale("svc", "g", 3), 200)
        d = n.deployment("svc")
        assert (d["Status"], d["StatusDescription"], d["JobVersion"]) == ("running", "Deployment is running", 1), d
        assert d["TaskGroups"]["g"]["DesiredTotal"] == 3 and d["JobCreateIndex"] == job_json(n, "svc")["CreateIndex"]
        events = n.scale_status("svc")["TaskGroups"]["g"]["Events"]
        expect(n.scale("svc", "g", 4), 400, "job scaling blocked due to active deployment", TEXT)
        assert n.cli_scale("svc", "g", 4) == (400, "job scaling blocked due to active deployment")
        assert n.scale_status("svc")["TaskGroups"]["g"]["Events"] == events  # nothing recorded
        # an event-only write is not a count change
        expect(n.put("/v1/job/svc/scale", {"Target": {"Group": "g"}, "Message": "holding"}), 200)
        # batch jobs and MaxParallel 0 never deploy
        for jid in ("batchy", "nodeploy"):
            expect(n.scale(jid, "g", 2), 200)
            expect(n.scale(jid, "g", 3), 200)
            assert n.deployment(jid) is None
        d = harness.wait_until(lambda: (lambda x: x if x["Status"] != "running" else None)(n.deployment("svc")),
                               timeout=15, what="deployment to end")
        assert time.monotonic() - t0 >= 0.69
        assert (d["Status"], d["StatusDescription"]) == ("successful", "Deployment completed successfully"), d
        job = job_json(n, "svc")
        assert job["Stable"] is True and job["ModifyIndex"] > job["JobModifyIndex"], job
        expect(n.scale("svc", "g", 4), 200)
        assert n.deployment("svc")["Status"] == "running" and job_json(n, "svc")["Stable"] is False
        # the job's own DeploymentDuration wins over deployment_ms
        expect(n.scale("slow", "g", 2), 200)
        n.fault(deployment_ms=0)
        expect(n.scale("slow", "g", 3), 400, "job scaling blocked due to active deployment")
        # a deployment waits for its allocations: a full cluster keeps it running
        harness.wait_until(lambda: n.deployment("svc")["Status"] == "successful", timeout=15, what="svc deployed")
        n.fault(capacity=0)
        expect(n.scale("svc", "g", 6), 200)
        time.sleep(0.3)  # longer than deployment_ms=0: only the missing allocations keep it running
        assert n.deployment("svc")["Status"] == "running"
        expect(n.scale("svc", "g", 7), 400, "job scaling blocked due to active deployment")
        n.fault(capacity=-1)
        harness.wait_until(lambda: n.deployment("svc")["Status"] == "successful", timeout=15, what="placed, deployed")
        # an operator re-register cancels the active deployment of "slow" and starts another
        old = n.deployment("slow")
        n.set_job("slow", counts={"g": 1})
        assert n.deployment("slow")["ID"] != old["ID"]
    finally:
        assert n.stop() == 0


@suite.test
def test_permanent_server_errors_are_plain_500s():
    n = NomadStandin([api_job("web", count=2), api_job("two", count=1)], args=["--job-max-count", "5"])
    try:
        expect(n.scale("web", "g", 6), 500, "total count was greater than configured job_max_count: 6 > 5", TEXT)
        expect(n.scale("web", "g", 5), 200)
        n.fault(job_max_count=3)
        expect(n.scale("web", "g", 4), 500, "total count was greater than configured job_max_count: 4 > 3", TEXT)
        assert n.scale_status("web")["TaskGroups"]["g"]["Desired"] == 5
        n.fault(job_max_count=0)
        expect(n.scale("web", "g", 50), 200)
        for path in ("/v1/job/web/scale", "/v1/jobs", "/v1/job/web", "/v1/job/web/summary"):
            expect(n.get(path + "?region=mars"), 500, "No path to region", TEXT)
        expect(n.put("/v1/job/web/scale?region=mars", {"Count": 2, "Target": {"Group": "g"}}), 500,
               "No path to region", TEXT)
        assert n.scale_status("web")["TaskGroups"]["g"]["Desired"] == 50
        expect(n.get("/v1/jobs?region=global"), 200)
    finally:
        assert n.stop() == 0


@suite.test
def test_scaling_history_seeded_and_appended_by_every_scale():
    start = time.time_ns()
    seeded = api_job("hist", count=3, scaling={"Min": 0, "Max": 9})
    seeded["TaskGroups"][0]["Events"] = [
        {"Time": start - 60 * 10 ** 9, "Count": 2, "PreviousCount": 1, "Message": "old", "Meta": {"k": 1}},
        {"Age": "6s", "Count": 3, "PreviousCount": 2, "Message": "scaled up", "EvalID": "e-1"},
        {"Age": "3s", "Message": "no change", "Error": True}]
    n = NomadStandin([seeded])
    try:
        ev = n.scale_status("hist")["TaskGroups"]["g"]["Events"]
        assert [e["Message"] for e in ev] == ["no change", "scaled up", "old"], ev
        assert abs(ev[1]["Time"] - (start - 6 * 10 ** 9)) < 3 * 10 ** 9 and ev[2]["Time"] == start - 60 * 10 ** 9
        assert (ev[0]["Count"], ev[0]["Error"], ev[0]["PreviousCount"], ev[0]["EvalID"]) == (None, True, 3, None)
        assert (ev[1]["Count"], ev[1]["PreviousCount"], ev[1]["EvalID"], ev[1]["Meta"]) == (3, 2, "e-1", None)
        assert ev[2]["Meta"] == {"k": 1} and set(ev[0]) == {"Time", "Count", "PreviousCount", "Message", "Error",
                                                            "Meta", "EvalID", "CreateIndex"}
        # the agent's own scale, then a manual `nomad job scale`, then an event-only manual write
        r = json.loads(expect(n.scale("hist", "g", 5, Message="backlog", Meta={"backlog": 900}), 200)[1])
        st, body = n.cli_scale("hist", "g", 4)
        assert st == 200 and body["EvalID"], body
        assert n.cli_scale("hist", "g", None, Message="looked")[0] == 200
        ev = n.scale_status("hist")["TaskGroups"]["g"]["Events"]
        assert [e["Message"] for e in ev[:4]] == ["looked", "submitted using the Nomad CLI", "backlog", "no change"]
        assert (ev[1]["Count"], ev[1]["PreviousCount"], ev[1]["Meta"], ev[1]["EvalID"]) == (4, 5, None, body["EvalID"])
        assert (ev[2]["Count"], ev[2]["PreviousCount"], ev[2]["Meta"], ev[2]["EvalID"]) == \
            (5, 3, {"backlog": 900}, r["EvalID"])
        assert (ev[0]["Count"], ev[0]["EvalID"]) == (None, None)
        assert [e["Time"] for e in ev] == sorted((e["Time"] for e in ev), reverse=True)
        assert ev[1]["Time"] > start and not [q for q in n.requests() if q["Method"] == "POST"]
        # bad seeds are refused at start-up with the place named
        d = harness.tmpdir()
        bad = harness.write(os.path.join(d, "bad.json"), json.dumps([api_job(), dict(api_job("x"), TaskGroups=[
            {"Name": "g", "Count": 1, "Events": [{"Age": "soon"}]}])]))
        r = harness.subprocess.run(["python3", harness.STANDIN, "--jobs", bad], capture_output=True, text=True,
                                   timeout=20)
        assert r.returncode == 2 and "Jobs[1].TaskGroups[0].Events[0].Age" in r.stderr, r.stderr
    finally:
        assert n.stop() == 0


@suite.test
def test_compression_as_gorillas_compress_handler():
    import gzip
    import zlib
    n = NomadStandin([api_job(scaling={"Min": 0, "Max": 9})])
    try:
        plain_hdrs, plain = expect(n.get("/v1/job/web/scale"), 200)
        assert plain_hdrs["vary"] == "Accept-Encoding" and "content-encoding" not in plain_hdrs
        st, hdrs, data = n.request("GET", "/v1/job/web/scale", headers={"Accept-Encoding": "gzip"}, raw=True)
        assert st == 200 and hdrs["content-encoding"] == "gzip" and hdrs["vary"] == "Accept-Encoding", hdrs
        assert hdrs["content-type"] == "application/json" and int(hdrs["content-length"]) == len(data)
        assert json.loads(gzip.decompress(data)) == json.loads(plain)
        # deflate is raw DEFLATE (Go's compress/flate), picked when named first
        st, hdrs, data = n.request("GET", "/v1/job/web", headers={"Accept-Encoding": "deflate, gzip"}, raw=True)
        assert hdrs["content-encoding"] == "deflate"
        assert json.loads(zlib.decompress(data, -15))["ID"] == "web"
        # only exact tokens count; anything else is sent as is
        for ae in ("gzip;q=1.0", "br", "identity", "*"):
            st, hdrs, data = n.request("GET", "/v1/job/web/scale", headers={"Accept-Encoding": ae}, raw=True)
            assert "content-encoding" not in hdrs and json.loads(data) == json.loads(plain), ae
        st, hdrs, data = n.request("GET", "/v1/job/web/scale", headers={"Accept-Encoding": "br, gzip"}, raw=True)
        assert hdrs["content-encoding"] == "gzip"
        # errors and empty bodies are compressed too
        st, hdrs, data = n.request("GET", "/v1/job/nope/scale", headers={"Accept-Encoding": "gzip"}, raw=True)
        assert (st, hdrs["content-type"], gzip.decompress(data)) == (404, TEXT, b"job not found"), hdrs
        st, hdrs, data = n.request("GET", "/v1/no/such/path", headers={"Accept-Encoding": "gzip"}, raw=True)
        assert st == 404 and gzip.decompress(data) == b"" and len(data) == 20 and "content-type" not in hdrs
        st, hdrs, data = n.request("PUT", "/v1/job/web/scale", body={"Count": 3, "Target": {"Group": "g"}},
                                   headers={"Accept-Encoding": "gzip"}, raw=True)
        assert st == 200 and json.loads(gzip.decompress(data))["Index"] == int(hdrs["x-nomad-index"])
        st, hdrs, data = n.request("GET", "/v1/jobs", headers={"Accept-Encoding": "gzip"}, raw=True)
        assert [j["ID"] for j in json.loads(gzip.decompress(data))] == ["web"]
        # the log says what was asked and answered; the control API is never compressed
        log = n.requests()
        assert log[-1]["AcceptEncoding"] == "gzip" and log[-1]["ContentEncoding"] == "gzip"
        st, hdrs, data = n.request("GET", "/_standin/faults", headers={"Accept-Encoding": "gzip"}, raw=True)
        assert "content-encoding" not in hdrs and json.loads(data)["capacity"] == -1
    finally:
        assert n.stop() == 0


@suite.test
def test_jobs_list_acl_and_blocking_reads():
    tokens = [{"SecretID": "mgmt", "Type": "management"},
              {"SecretID": "scaler", "Namespaces": {"default": ["scale"]}},
              {"SecretID": "reader", "Namespaces": {"default": ["read"]}}]
    n = NomadStandin([api_job("zeta", count=1), api_job("alpha", count=2, scaling={"Min": 0, "Max": 9}),
                      api_job("other", ns="prod", count=1)], acl_tokens=tokens)
    try:
        expect(n.get("/v1/jobs", token="scaler"), 403, "Permission denied", TEXT)
        expect(n.get("/v1/jobs"), 403, "Permission denied", TEXT)
        expect(n.get("/v1/jobs?namespace=prod", token="reader"), 403, "Permission denied")
        expect(n.get("/v1/job/alpha/scale", token="scaler"), 200)  # what the scale policy can do
        hdrs, text = expect(n.get("/v1/jobs", token="reader"), 200, ctype="application/json")
        jobs = json.loads(text)
        assert [j["ID"] for j in jobs] == ["alpha", "zeta"], jobs
        a = jobs[0]
        assert {"ID", "ParentID", "Name", "Namespace", "Datacenters", "Type", "Priority", "Periodic",
                "ParameterizedJob", "Stop", "Status", "StatusDescription", "JobSummary", "CreateIndex",
                "ModifyIndex", "JobModifyIndex", "SubmitTime"} <= set(a), a
        assert a["JobSummary"]["Summary"]["g"] == {"Queued": 0, "Complete": 0, "Failed": 0, "Running": 2,
                                                   "Starting": 0, "Lost": 0, "Unknown": 0}, a
        assert (a["Status"], a["Type"], a["Namespace"]) == ("running", "service", "default")
        job = json.loads(n.get("/v1/job/alpha", token="reader")[2])
        assert (a["JobModifyIndex"], a["ModifyIndex"]) == (job["JobModifyIndex"], job["ModifyIndex"])
        idx = int(hdrs["x-nomad-index"])
        assert idx >= max(j["ModifyIndex"] for j in jobs) and idx >= a["JobSummary"]["ModifyIndex"]
        every = json.loads(expect(n.get("/v1/jobs?namespace=*", token="mgmt"), 200)[1])
        assert [(j["Namespace"], j["ID"]) for j in every] == [("default", "alpha"), ("default", "zeta"),
                                                             ("prod", "other")]
        assert [j["ID"] for j in json.loads(n.get("/v1/jobs?namespace=*", token="reader")[2])] == ["alpha", "zeta"]
        assert [j["ID"] for j in json.loads(n.get("/v1/jobs?prefix=ze", token="reader")[2])] == ["zeta"]
        # blocking: times out with the same index (wait capped at 300 s, jitter up to wait/16)
        t0 = time.monotonic()
        hdrs, _ = expect(n.get("/v1/jobs?index=%d&wait=200ms&stale" % idx, token="reader"), 200)
        took = time.monotonic() - t0
        assert int(hdrs["x-nomad-index"]) == idx and 0.19 <= took < 5, took
        expect(n.get("/v1/jobs?stale=yes", token="reader"), 400,
               "Expect `true` or `false` for `stale` query string parameter")
        # ... and wakes on a scale, on /v1/jobs, /v1/job/:id and /v1/job/:id/scale alike
        jidx = int(n.get("/v1/job/alpha", token="reader")[1]["x-nomad-index"])
        sidx = int(n.get("/v1/job/alpha/scale", token="reader")[1]["x-nomad-index"])
        out = {}
        paths = {"jobs": "/v1/jobs?index=%d&wait=60s" % idx, "job": "/v1/job/alpha?index=%d&wait=10m" % jidx,
                 "scale": "/v1/job/alpha/scale?index=%d&wait=60s&stale=true" % sidx}
        threads = [threading.Thread(target=lambda k=k, p=p: out.update({k: n.get(p, token="reader")}))
                   for k, p in paths.items()]
        for t in threads:
            t.start()
        harness.wait_until(lambda: len([q for q in n.requests() if q["Status"] is None]) == 3,
                           what="3 blocking reads in flight")
        expect(n.scale("alpha", "g", 5, token="mgmt"), 200)
        for t in threads:
            t.join(timeout=15)
        assert int(out["jobs"][1]["x-nomad-index"]) > idx and int(out["job"][1]["x-nomad-index"]) > jidx
        assert int(out["scale"][1]["x-nomad-index"]) > sidx
        stub = next(j for j in json.loads(out["jobs"][2]) if j["ID"] == "alpha")
        assert stub["JobSummary"]["Summary"]["g"]["Running"] == 5 and json.loads(out["job"][2])["TaskGroups"][0][
            "Count"] == 5
    finally:
        assert n.stop() == 0


@suite.test
def test_request_counts_per_route():
    n = NomadStandin([api_job("a"), api_job("b"), api_job("c/d")])
    try:
        n.get("/v1/job/a/scale")
        n.clear_requests()
        assert n.request_counts() == {"total": 0}
        for j in ("a", "b", "c%2Fd"):
            n.get("/v1/job/%s/scale" % j)
        n.get("/v1/jobs")
        n.get("/v1/job/a")
        n.scale("a", "g", 3)
        n.cli_scale("b", "g", 3)  # the control API is not counted
        assert n.request_counts() == {"GET /v1/job/:id/scale": 3, "GET /v1/jobs": 1, "GET /v1/job/:id": 1,
                                      "PUT /v1/job/:id/scale": 1, "total": 6}, n.request_counts()
        assert [r["Route"] for r in n.requests()][:3] == ["GET /v1/job/:id/scale"] * 3
    finally:
        assert n.stop() == 0


@suite.test
def test_ten_thousand_jobs_list_fast():
    jobs = [{"ID": "job%05d" % i, "TaskGroups": [{"Name": "worker", "Count": 1, "Scaling": {"Min": 0, "Max": 50}}]}
            for i in range(10000)]
    n = NomadStandin(jobs)
    try:
        for ae in (None, "gzip", "deflate"):
            t0 = time.monotonic()
            st, hdrs, data = n.request("GET", "/v1/jobs", headers={"Accept-Encoding": ae} if ae else None, raw=True)
            took = time.monotonic() - t0
            assert st == 200 and took < 1.0, (ae, took)
        assert len(json.loads(zlib_inflate(data))) == 10000
        # after a change, only what changed is built again
        expect(n.scale("job00042", "worker", 7), 200)
        t0 = time.monotonic()
        st, _, text = n.request("GET", "/v1/jobs")
        took = time.monotonic() - t0
        stubs = json.loads(text)
        assert took < 1.0 and stubs[42]["JobSummary"]["Summary"]["worker"]["Running"] == 7, took
        t0 = time.monotonic()
        for i in range(0, 10000, 100):
            n.get("/v1/job/job%05d/scale" % i)
        assert time.monotonic() - t0 < 5.0
    finally:
        assert n.stop() == 0


@suite.test
def test_event_stream_ndjson_with_heartbeats():
    import http.client
    import zlib
    n = NomadStandin([api_job("web", count=1, scaling={"Min": 0, "Max": 9}), api_job("other", count=1)],
                     args=["--stream-heartbeat", "0.3"])
    try:
        host, port = n.address.rsplit(":", 1)
        conns = []

        def open_stream(path, enc=None):
            c = http.client.HTTPConnection(host, int(port), timeout=20)
            conns.append(c)
            c.request("GET", path, headers={"Accept-Encoding": enc} if enc else {})
            return c.getresponse()

        def lines(r, want, dec=None):
            buf = b""
            deadline = time.monotonic() + 15
            while buf.count(b"\n") < want and time.monotonic() < deadline:
                data = r.read1(65536)
                buf += dec.decompress(data) if dec else data
            return [json.loads(x) for x in buf.split(b"\n") if x]
        r = open_stream("/v1/event/stream?topic=Job&topic=Allocation:web", "gzip")
        assert r.status == 200 and r.getheader("Content-Encoding") == "gzip"
        assert r.getheader("Transfer-Encoding") == "chunked" and r.getheader("Content-Type") == "application/json"
        plain = open_stream("/v1/event/stream?topic=Deployment")
        expect(n.scale("web", "g", 2), 200)
        expect(n.scale("other", "g", 2), 200)
        got = lines(r, 4, zlib.decompressobj(31))
        batches = [b for b in got if b]
        kinds = [(e["Topic"], e["Type"], e["Payload"].get("Job", {}).get("ID")) for b in batches for e in b["Events"]]
        assert ("Job", "JobRegistered", "web") in kinds and ("Job", "JobRegistered", "other") in kinds, kinds
        allocs = [e for b in batches for e in b["Events"] if e["Topic"] == "Allocation"]
        assert allocs and all(e["FilterKeys"] == ["web"] for e in allocs), allocs  # none of "other"
        assert allocs[0]["Payload"]["Allocation"]["Name"] == "web.g[1]" and allocs[0]["Type"] == "PlanResult"
        assert [b["Index"] for b in batches] == sorted(b["Index"] for b in batches)
        job_ev = next(e for b in batches for e in b["Events"] if e["Topic"] == "Job")
        assert job_ev["Payload"]["Job"]["TaskGroups"][0]["Count"] == 2 and job_ev["Namespace"] == "default"
        # an idle stream sends {} heartbeats; a Deployment-only stream saw nothing of the above
        assert lines(plain, 1) == [{}]
        # index=N replays only what came after N
        first = batches[0]["Index"]
        r2 = open_stream("/v1/event/stream?topic=Job&index=%d" % first)
        replay = [b for b in lines(r2, 1) if b]
        assert replay and all(b["Index"] > first for b in replay), replay
        assert [e["Key"] for e in replay[0]["Events"]] == ["other"]
        for c in conns:
            c.close()
    finally:
        assert n.stop() == 0


def zlib_inflate(data):
    import zlib
    return zlib.decompress(data, -15)


if __name__ == "__main__":
    suite.main()
