"""The Nomad stand-in behaves like Nomad as nomad-api.md describes it (real HTTP, real processes)."""
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


if __name__ == "__main__":
    suite.main()
