"""NomadStandin: start contrib/nomad-standin.py for a test and talk to it (standard library only).

    from standin import NomadStandin
    nomad = NomadStandin([{"ID": "web", "TaskGroups": [{"Name": "g", "Count": 1}]}])
    status, headers, body = nomad.get("/v1/job/web/scale")
    nomad.fault(errors=2)              # POST /_standin/faults
    nomad.fault(capacity=4, deployment_ms=2000)   # cluster slots, deployments
    nomad.cli_scale("web", "g", 3)     # what `nomad job scale web g 3` does
    nomad.request_counts()             # {"GET /v1/job/:id/scale": n, ..., "total": n}
    nomad.stop()                       # SIGTERM, returns the exit code

jobs is a list of job objects (the stand-in's job file format, see its --help), a dict with
"Jobs", or the path of a job file. acl_tokens likewise (list, {"Tokens": [...]}, or a path).
"""
import json
import os
import signal
import urllib.error
import urllib.parse
import urllib.request

import harness


class NomadStandin:
    def __init__(self, jobs, acl_tokens=None, env=None, args=(), region="global", restart_delay=None):
        self.dir = harness.tmpdir("scaleno-nomad-")
        self.state_dir = os.path.join(self.dir, "state")
        self.jobs_path = self._file("jobs.json", jobs, "Jobs")
        argv = ["python3", harness.STANDIN, "--jobs", self.jobs_path, "--listen", "127.0.0.1:0",
                "--ready-file", os.path.join(self.dir, "ready"), "--state-dir", self.state_dir,
                "--region", region, "--log", os.path.join(self.dir, "standin.log")]
        if acl_tokens is not None:
            argv += ["--acl-tokens", self._file("tokens.json", acl_tokens, "Tokens")]
        if restart_delay is not None:
            argv += ["--restart-delay", str(restart_delay)]
        argv += list(args)
        self.proc = harness.spawn(argv, log_path=os.path.join(self.dir, "stdout.log"), env=env)
        ready = os.path.join(self.dir, "ready")

        def is_ready():
            if self.proc.poll() is not None:
                raise AssertionError("nomad-standin exited with %s: %s" % (self.proc.returncode, self.output()))
            return os.path.exists(ready) and open(ready).read().strip()
        self.address = harness.wait_until(is_ready, timeout=15, what="nomad-standin ready file")
        self.url = "http://" + self.address

    def _file(self, name, value, key):
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            value = {key: value}
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            json.dump(value, f)
        return path

    def output(self):
        text = ""
        for name in ("stdout.log", "standin.log"):
            p = os.path.join(self.dir, name)
            if os.path.exists(p):
                text += open(p, errors="replace").read()
        return text

    # ---- HTTP

    def request(self, method, path, body=None, token=None, headers=None, timeout=30, raw=False):
        """Returns (status, headers as a dict with lower-case names, body as str, or as the bytes
        on the wire with raw=True: urllib does not undo a Content-Encoding)."""
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else (body.encode() if isinstance(body, str)
                                                          else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if token is not None:
            req.add_header("X-Nomad-Token", token)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                data = r.read()
                return r.status, {k.lower(): v for k, v in r.headers.items()}, data if raw else data.decode()
        except urllib.error.HTTPError as e:
            data = e.read()
            return e.code, {k.lower(): v for k, v in e.headers.items()}, data if raw else data.decode()

    def get(self, path, token=None, **kw):
        return self.request("GET", path, token=token, **kw)

    def post(self, path, body, token=None, **kw):
        return self.request("POST", path, body=body, token=token, **kw)

    def put(self, path, body, token=None, **kw):
        return self.request("PUT", path, body=body, token=token, **kw)

    def _json(self, method, path, body=None):
        status, _, text = self.request(method, path, body=body)
        if status != 200:
            raise AssertionError("%s %s: %d %s" % (method, path, status, text))
        return json.loads(text)

    # ---- helpers

    def scale_status(self, job, namespace=None, token=None):
        q = "?namespace=" + urllib.parse.quote(namespace) if namespace else ""
        status, _, text = self.get("/v1/job/%s/scale%s" % (urllib.parse.quote(job, safe=""), q), token=token)
        if status != 200:
            raise AssertionError("scale status of %s: %d %s" % (job, status, text))
        return json.loads(text)

    def scale(self, job, group, count, token=None, **fields):
        body = dict(fields, Count=count, Target={"Group": group})
        return self.put("/v1/job/%s/scale" % urllib.parse.quote(job, safe=""), body, token=token)

    def requests(self):
        """Every /v1 request the stand-in answered, oldest first."""
        return self._json("GET", "/_standin/requests")

    def clear_requests(self):
        self._json("DELETE", "/_standin/requests")

    def fault(self, **kw):
        """Change fault switches (errors, error_status, error_text, delay_ms, refuse_ms, malformed,
        job_max_count, active_deployment, capacity, deployment_ms, clear); returns the new settings."""
        return self._json("POST", "/_standin/faults", kw)

    def allocs(self, job=None):
        q = "?job=" + urllib.parse.quote(job, safe="") if job else ""
        return self._json("GET", "/_standin/allocs" + q)

    def running_allocs(self, job=None):
        return [a for a in self.allocs(job) if a["DesiredStatus"] == "run" and a["ClientStatus"] == "running"]

    def signal_alloc(self, alloc_id, sig="SIGKILL"):
        return self._json("POST", "/_standin/signal", {"ID": alloc_id, "Signal": sig})

    def set_job(self, job, namespace="default", stop=None, counts=None, scaling=None):
        """An operator's re-register: Stop, {"group": count}, {"group": {"Min", "Max"} or None}."""
        body = {"ID": job, "Namespace": namespace}
        if stop is not None:
            body["Stop"] = stop
        if counts is not None:
            body["Counts"] = counts
        if scaling is not None:
            body["Scaling"] = scaling
        return self._json("POST", "/_standin/job", body)

    def cli_scale(self, job, group, count, namespace="default", **fields):
        """Scale as `nomad job scale` does (Message "submitted using the Nomad CLI", no Meta),
        outside the request log; count None records an event only. Returns (status, body)."""
        body = dict(fields, ID=job, Group=group, Namespace=namespace, Count=count)
        status, _, text = self.request("POST", "/_standin/scale", body=body)
        return status, (json.loads(text) if status == 200 else text)

    def request_counts(self):
        """/v1 requests per route ("GET /v1/job/:id/scale": n, ..., "total": n) since the last clear."""
        return self._json("GET", "/_standin/requests/counts")

    def summary(self, job, namespace="default"):
        return self._json("GET", "/v1/job/%s/summary?namespace=%s" % (urllib.parse.quote(job, safe=""),
                                                                       urllib.parse.quote(namespace)))

    def deployment(self, job, namespace="default"):
        """The job's latest deployment, or None."""
        return self._json("GET", "/v1/job/%s/deployment?namespace=%s" % (urllib.parse.quote(job, safe=""),
                                                                          urllib.parse.quote(namespace)))

    def stop(self, sig=signal.SIGTERM, timeout=40):
        """Signal the stand-in and wait for it; returns its exit code."""
        return harness.stop(self.proc, sig, timeout=timeout)

    def kill(self):
        return harness.stop(self.proc, signal.SIGKILL, timeout=10)
