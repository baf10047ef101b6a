#!/usr/bin/env python3
"""nomad-standin: a small stand-in for a Nomad server, for scaleno's tests and `make demo`.

Python 3 standard library only. It answers the parts of the Nomad HTTP API that scaleno uses
(as Nomad's HTTP API documentation describes it; "spec N" below names the part: 1 the common
parameters and ACLs, 2 the endpoints, 3 the scale write, 5 allocations), with the same JSON shapes, status
codes, headers and exact error texts, and it runs each allocation as a local process the way
Nomad's raw_exec driver does.

HTTP API (real Nomad paths)
  GET          /v1/job/:id/scale        scale status (blocking)                    spec 2.1
  PUT | POST   /v1/job/:id/scale        scale a group / record an event             spec 2.2, 3
  GET          /v1/scaling/policies     list policies (job=, type=, prefix=, ns *)  spec 2.3
  GET          /v1/scaling/policy/:id   read one policy                             spec 2.4
  GET          /v1/job/:id/allocations  list allocations (unknown job -> [])        spec 2.5
  GET          /v1/job/:id              read a job (TaskGroups[].Scaling, .Update)  spec 2.6
  GET          /v1/job/:id/summary      JobSummary: Summary.<group>.{Queued, Starting, Running,
                                        Failed, Complete, Lost, Unknown} (blocking; 404 "job not found")
  GET          /v1/job/:id/deployment   the latest deployment, or null (blocking)
  GET          /v1/job/:id/evaluations  the job's evaluations (blocked ones included)
  GET          /v1/jobs                 JobListStubs with JobSummary, sorted by ID (namespace=*:
                                        by namespace, ID; prefix=, meta=true); needs list-jobs,
                                        which the "scale" policy lacks (403 "Permission denied");
                                        index max(jobs, job_summary); built once per index
  GET          /v1/evaluation/:id       read an evaluation                          spec 2.10
  GET          /v1/status/leader        "127.0.0.1:4647"                           spec 2.7
  GET          /v1/agent/self           small config/member/stats object           spec 2.8
  GET          /v1/agent/health         client+server ok                            spec 2.9
  GET          /v1/regions              ["<region>"]
  GET          /v1/event/stream         NDJSON events: Job, Allocation, Deployment (see below)
  Any other path: 404 with an empty body. A wrong method on a known path: 405 "Invalid method".
  Errors are text/plain; charset=utf-8 with no trailing newline. Query parameters namespace,
  region, index, wait, stale and pretty behave as in spec 1.3-1.5 (blocking queries: a missing
  or larger wait is 300 s, plus a random jitter of up to wait/16, as nomad/rpc.go). Job ids are
  percent-decoded (a%2Fb is job "a/b"). Reads send X-Nomad-Index, X-Nomad-LastContact: 0 and
  X-Nomad-KnownLeader: true (also with their 404s);
  the scale write sends only X-Nomad-Index; status/leader, agent/* and regions send none.
  Scale-write checks run in the order of spec 3; a counted scale writes the job at index i, the
  evaluation at i+1 and the scaling event at i+2 (Index = X-Nomad-Index = i+2), then places or
  stops allocations in a later write.
  Compression as gorilla's CompressHandler, which wraps Nomad's whole mux: the first of "gzip"
  or "deflate" named in Accept-Encoding (exact tokens: "gzip;q=1" is none) compresses every
  /v1 answer, errors and empty bodies included (Content-Encoding set, Content-Length of the
  compressed bytes; deflate is raw DEFLATE without a zlib header, as Go's compress/flate);
  every /v1 answer carries "Vary: Accept-Encoding". The control API is never compressed.
  Unknown region (region=...): 500 "No path to region" on every endpoint that takes one.
  GET /v1/event/stream (topic=Job, topic=Allocation:JOB, topic=Deployment, topic=*; namespace,
  index; needs read-job): chunked NDJSON, one {"Index": N, "Events": [{"Topic", "Type", "Key",
  "Namespace", "FilterKeys", "Index", "Payload": {"Job"|"Allocation"|"Deployment": {...}}}]}
  line per raft write with matching events (JobRegistered/JobDeregistered, PlanResult for
  placements and stops, AllocationUpdated for client changes, DeploymentStatusUpdate), and
  "{}" every --stream-heartbeat seconds while idle. index=N replays the last 4096 writes' events
  after N (0: all of them); the jobs loaded at start-up make none. Compressed like the rest.
  Not implemented: job register/deregister (POST /v1/jobs, DELETE /v1/job/:id), pagination,
  filter expressions, scheduler configuration, canaries.

Cluster capacity (--capacity N, or "capacity" in /_standin/faults at run time)
  N allocation slots for all jobs (-1: unlimited, the default). An allocation holds a slot from
  placement until it is stopped (DesiredStatus stop frees it at once, as Nomad's scheduler
  counts it, while the process still drains). What does not fit is not placed: Placed and
  Running stay below Desired, the job summary counts it as Queued, and the evaluation completes
  with FailedTGAllocs, QueuedAllocations and BlockedEval (a new evaluation with Status
  "blocked", TriggeredBy "queued-allocs"). When slots free (a scale-down, a stopped job, a
  failed allocation, a larger capacity) the blocked evaluations are re-run oldest first and
  everything that fits is placed at once, in one write.

Deployments (--deployment-ms MS, "deployment_ms" in /_standin/faults, or the job's
DeploymentDuration; all off by default)
  A new version of a service job whose groups have a non-empty update block (Nomad's default
  update strategy applies to service jobs: MaxParallel 1; "Update": {"MaxParallel": 0} turns it
  off; batch and system jobs never deploy) starts a deployment: every counted scale and every
  operator re-register through /_standin/job, not the jobs loaded at start-up. While it is
  active (Status "running") a counted scale answers 400 "job scaling blocked due to active
  deployment" and records no event (event-only writes pass). It ends "successful" once its
  duration has passed and every group runs its count (the job becomes Stable: ModifyIndex moves,
  JobModifyIndex does not), or "failed" at the group's ProgressDeadline (default 10m) if some
  allocations cannot run (a full cluster). A re-register cancels an active deployment.

Job file (--jobs FILE), JSON:
  {"Jobs": [                                  (a bare list of jobs is accepted too)
    {"ID": "ingest",                          required
     "Name": "ingest",                        default: ID
     "Namespace": "default",                  default "default"
     "Type": "service",                       service | batch | system (default service)
     "Stop": false,                           a stopped job runs nothing (JobStopped=true)
     "ActiveDeployment": false,               an active deployment that never ends (scale -> 400)
     "DeploymentDuration": "2s",              deployments of this job last at least this long
                                              (overrides deployment_ms; omitted: deployment_ms)
     "Update": {"MaxParallel": 1, ...},       update block (Nomad's UpdateStrategy fields:
                                              Stagger, MaxParallel, HealthCheck, MinHealthyTime,
                                              HealthyDeadline, ProgressDeadline, AutoRevert,
                                              AutoPromote, Canary; durations "10s" or ns); merged
                                              over Nomad's default for service jobs, none for
                                              batch/system unless given; a group's own Update is
                                              merged over the job's
     "TaskGroups": [                          ("Groups" is accepted too)
       {"Name": "worker",                     required
        "Count": 2,                           required, integer >= 0
        "Scaling": {"Min": 1, "Max": 10,      optional; Max required, Min defaults to Count
                    "Enabled": true,          (api/scaling.go Canonicalize), Enabled defaults to
                    "Policy": {}},            true, Policy is an opaque object returned as is;
                                              a counted scale outside [Min, Max] answers 400
                                              "group count was less than scaling policy minimum:
                                              N < Min" / "... greater than scaling policy
                                              maximum: N > Max", enabled or not
        "Events": [{"Age": "6s",              pre-seeded scaling history (newest first by Time;
                    "Count": 3,               Time: integer ns since the epoch, or Age: a
                    "PreviousCount": 2,       duration before start-up); Count null for an
                    "Message": "...",         event-only entry, PreviousCount defaults to Count
                    "Error": false, "Meta": {}, "EvalID": null}],   of the group; at most 20 kept
        "Update": {...},                      the group's update block (see above)
        "Task": "worker",                     task name (default: group name)
        "Command": ["sh", "-c", "..."],       argv list (a string means ["sh","-c",string]);
                                              omitted: nothing runs; allocs count as running
                                              at once (or after StartupDelay)
        "Env": {"KEY": "value"},              added to the NOMAD_* environment
        "KillTimeout": "5s",                  Go duration string or integer ns, default 5s,
                                              capped at 30s like the client's max_kill_timeout
        "KillSignal": "SIGINT",               default SIGINT
        "StartupDelay": 0.5}                  seconds before a new process counts as running
     ]}]}
  See contrib/jobs/example.json.

Allocations (spec 5.1, 5.2)
  Each allocation <job>.<group>[i] runs Command in its own session/process group with the
  NOMAD_* variables (ALLOC_ID, SHORT_ALLOC_ID, ALLOC_NAME, ALLOC_INDEX, GROUP_NAME, TASK_NAME,
  JOB_ID, JOB_NAME, NAMESPACE, REGION, DC=dc1, ALLOC_DIR, TASK_DIR, SECRETS_DIR) plus Env, with
  stdout/stderr in <state-dir>/<alloc-id>/alloc/logs/<task>.stdout.0 / .stderr.0.
  Scale-up places the lowest free indexes; scale-in marks the highest indexes DesiredStatus=stop
  at once (they leave Placed/Running immediately), sends KillSignal to the main pid only, then
  SIGKILL to the whole process group after KillTimeout; ClientStatus becomes complete when the
  process has ended (a task Nomad killed is not "failed"). Placed = allocs with DesiredStatus
  run and ClientStatus not terminal; Running = those whose process is alive and past
  StartupDelay (ClientStatus running). A process that exits by itself is restarted after --restart-delay
  seconds (ClientStatus pending meanwhile, TaskStates.<task>.Restarts counts them); with
  --restart-attempts N, the next exit after N restarts makes the allocation failed and a
  replacement (new ID, same name index) is placed at once (Nomad's reschedule, without its delay). Every status change is a write (new raft index), so blocking
  queries wake up. On SIGTERM/SIGINT every allocation is stopped the same way and the stand-in
  exits 0. A watchdog process (own session) SIGKILLs every allocation's process group if the
  stand-in dies without cleaning up (e.g. SIGKILL).

ACL tokens (--acl-tokens FILE), JSON. ACLs are on when the file is given.
  {"Tokens": [                                (a bare list is accepted too)
    {"SecretID": "s3cr3t", "Name": "autoscaler", "Type": "client",   or "management"
     "Namespaces": {"default": ["scale", "read-job"], "*": ["read"]},
     "Agent": "read"}]}                       agent policy: read | write | deny (default deny)
  Namespace entries are capability names or the shorthands read, write, scale, deny; keys may be
  globs. Tokens come from X-Nomad-Token or "Authorization: Bearer <t>" (X-Nomad-Token wins).
  Missing, unknown or insufficient -> 403 "Permission denied".

Control API (NOT part of Nomad; for tests), JSON in and out, no ACL, never faulted or logged:
  GET    /_standin/requests            every /v1 request: {"Method","Path","Query","RawQuery",
                                       "Token","TokenHeader","Body","Status","Time"} (oldest first;
                                       Status is null while the request is in flight, e.g. blocking)
                                       plus "Route" ("GET /v1/job/:id/scale"), "AcceptEncoding"
                                       and "ContentEncoding" (the encoding of the answer)
  DELETE /_standin/requests            clear the log and the counts (POST /_standin/requests/clear
                                       works too)
  GET    /_standin/requests/counts     {"GET /v1/jobs": n, "GET /v1/job/:id/scale": n, ...,
                                       "total": n}: /v1 requests per route since the last clear
  GET    /_standin/allocs[?job=ID]     [{"ID","Name","JobID","Namespace","TaskGroup","Index",
                                       "DesiredStatus","ClientStatus","Pid","Restarts","Stdout",
                                       "Stderr","TaskDir","ExitCode","KillSignalSent",
                                       "SigkillSent"}]
  GET    /_standin/faults              the current fault settings
  POST   /_standin/faults              change some of them; answers the new settings:
     {"errors": N,                     answer the next N /v1 requests with an error (-1: until
                                       cleared, 0: clear)
      "error_status": 500,             ... with this status (default 500)
      "error_text": "No cluster leader",   ... and this text
      "delay_ms": N,                   delay every /v1 answer by N ms (0: off)
      "refuse_ms": N,                  close the listening socket (and drop open connections)
                                       for N ms, then listen again on the same port
      "malformed": N,                  the next N 200 JSON answers are cut in half (-1: until
                                       cleared)
      "job_max_count": N,              server job_max_count (0: off): a counted scale whose job
                                       total exceeds it answers 500 "total count was greater
                                       than configured job_max_count: TOTAL > N"
      "active_deployment": ["job", "ns/job"],   jobs whose scale writes get the 400
      "capacity": N,                   allocation slots (-1 or null: unlimited); growing it
                                       places queued allocations at once
      "deployment_ms": MS,             deployments last at least MS ms (-1 or null: none)
      "clear": true}                   reset everything above first
  POST   /_standin/signal {"ID": alloc-id, "Signal": "SIGKILL"}   signal an alloc's main pid
  POST   /_standin/job {"ID": id, "Namespace": ns, "Stop": bool, "Counts": {"group": n},
                        "Scaling": {"group": {"Min": n, "Max": n} or null}}
                                       operator-style re-register: sets Stop, counts and/or
                                       scaling blocks (Min defaults to the count; a count outside
                                       them: 400 "Scaling policy invalid: ..."), bumps
                                       Version/JobModifyIndex, starts a deployment (see above),
                                       reconciles allocations; records no scaling event
  POST   /_standin/scale {"ID": id, "Namespace": ns, "Group": g, "Count": n or null,
                          "Message": m, "Meta": {...}, "Error": bool}
                                       a scale as `nomad job scale` sends it (Message defaults
                                       to "submitted using the Nomad CLI", Meta to null): the
                                       same checks, answers and scaling event as the /v1 write,
                                       but no ACL, no faults and not in the request log

Start-up: --listen 127.0.0.1:0 picks a free port; the actual address is printed on stdout
("nomad-standin listening on 127.0.0.1:PORT ...") and, with --ready-file, written to that file
as "127.0.0.1:PORT\\n" (atomically, once listening). Only loopback addresses are accepted. Exit
status: 0 after SIGTERM/SIGINT, 2 for a bad job/token file or argument, 1 if it cannot listen.
Tests use the wrapper class NomadStandin in tests/integration/standin.py.

Command line: see --help. The fault switches can be given there too.
"""
import argparse
import collections
import ctypes
import datetime
import fnmatch
import gc
import ipaddress
import gzip
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

MAX_BLOCK = 300.0
MAX_KILL_TIMEOUT = 30.0
MAX_EVENTS = 20
MAX_TASK_EVENTS = 10
MAX_REQUEST_LOG = 20000
MAX_DEAD_ALLOCS = 100  # per job
ZERO_TIME = "0001-01-01T00:00:00Z"
TERMINAL_CLIENT = ("complete", "failed", "lost")
LEADER = "127.0.0.1:4647"
# Nomad's default update strategy for service jobs (api.DefaultUpdateStrategy; durations in ns)
DEFAULT_UPDATE = {"Stagger": 30 * 10 ** 9, "MaxParallel": 1, "HealthCheck": "checks",
                  "MinHealthyTime": 10 * 10 ** 9, "HealthyDeadline": 300 * 10 ** 9,
                  "ProgressDeadline": 600 * 10 ** 9, "AutoRevert": False, "AutoPromote": False, "Canary": 0}
EVENT_BUFFER = 4096  # batches kept for /v1/event/stream?index=N
HEARTBEAT = 10.0  # seconds between {} lines on an idle event stream (Nomad's heartbeat interval)
JOB_SUFFIXES = ("/scale", "/allocations", "/summary", "/deployment", "/evaluations")
ACTIVE_DEPLOYMENT = ("running", "paused", "pending", "blocked", "unblocking", "initializing")

READ_CAPS = ["list-jobs", "parse-job", "read-job", "read-job-scaling", "list-scaling-policies",
             "read-scaling-policy", "csi-list-volume", "csi-read-volume", "list-host-volume",
             "read-host-volume"]
SHORTHANDS = {
    "deny": [],
    "read": READ_CAPS,
    "write": READ_CAPS + ["scale-job", "submit-job", "dispatch-job", "read-logs", "read-fs",
                          "alloc-exec", "alloc-lifecycle", "alloc-node-exec", "csi-mount-volume",
                          "csi-write-volume", "submit-recommendation"],
    "scale": ["list-scaling-policies", "read-scaling-policy", "read-job-scaling", "scale-job",
              "submit-recommendation", "read-job"],
}

log_file = sys.stderr


def log(fmt, *args):
    msg = fmt % args if args else fmt
    try:
        log_file.write("%s nomad-standin: %s\n" % (time.strftime("%H:%M:%S"), msg))
        log_file.flush()
    except (OSError, ValueError):
        pass


class ConfigError(Exception):
    pass


# ---------------------------------------------------------------- small parsers (Go semantics)

_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0,
          "m": 60.0, "h": 3600.0}
_DUR_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([^0-9.]+)")


def go_duration(s):
    """Seconds for a Go time.ParseDuration string; ValueError when Go would refuse it."""
    orig = s
    neg = False
    if s[:1] in ("+", "-"):
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError("invalid duration %r" % orig)
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DUR_PART.match(s, pos)
        if not m or m.group(1) in ("", ".") or m.group(2) not in _UNITS:
            raise ValueError("invalid duration %r" % orig)
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return -total if neg else total


def go_parse_bool(s):
    if s in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if s in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(s)


def go_parse_uint(s):
    if not s or not s.isdigit() or not s.isascii() or int(s) >= 1 << 64:
        raise ValueError(s)
    return int(s)


def now_ns():
    return time.time_ns()


def rfc3339(t):
    if not t:
        return ZERO_TIME
    d = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    s = d.strftime("%Y-%m-%dT%H:%M:%S")
    if d.microsecond:
        s += (".%06d" % d.microsecond).rstrip("0")
    return s + "Z"


def signal_number(name):
    if isinstance(name, int):
        return name
    n = name.upper()
    if not n.startswith("SIG"):
        n = "SIG" + n
    sig = getattr(signal, n, None)
    if not isinstance(sig, signal.Signals):
        raise ValueError("unknown signal %r" % name)
    return int(sig)


# ---------------------------------------------------------------- Go-like decoding of the scale body

class DecodeError(Exception):
    pass


def _json_kind(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null"


class _Num:
    """A JSON number kept with its literal text, so errors can quote it the way Go does."""

    def __init__(self, text):
        self.text = text


# field (lowercase) -> (Go name, kind)
SCALE_FIELDS = {
    "count": ("Count", "int64"), "target": ("Target", "map[string]string"),
    "error": ("Error", "bool"), "message": ("Message", "string"),
    "meta": ("Meta", "map[string]interface {}"), "policyoverride": ("PolicyOverride", "bool"),
    "jobmodifyindex": ("JobModifyIndex", "uint64"), "region": ("Region", "string"),
    "namespace": ("Namespace", "string"), "secretid": ("SecretID", "string"),
    "idempotencytoken": ("IdempotencyToken", "string"),
}


class _Obj(list):
    pass


def _hook(pairs):
    return _Obj(pairs)


def decode_scale_body(raw):
    """Decode like Go's encoding/json into api.ScalingRequest; returns a dict with Go field names.

    Raises DecodeError with the Go message. Unknown fields are ignored, field names match
    case-insensitively, only the first JSON value is read, the first type error wins but only
    after the whole value was read (as Go does)."""
    text = raw.decode("utf-8", "replace")
    dec = json.JSONDecoder(object_pairs_hook=_hook, parse_float=_Num, parse_int=_Num,
                           parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    s = text.lstrip(" \t\r\n")
    if not s:
        raise DecodeError("EOF")
    try:
        value, _ = dec.raw_decode(s)
    except json.JSONDecodeError as e:
        if e.pos >= len(s):
            raise DecodeError("unexpected EOF")
        ch = s[e.pos]
        ctx = "looking for beginning of value"
        if "Expecting ','" in e.msg:
            ctx = "after object key:value pair" if _innermost(s, e.pos) == "{" else "after array element"
        elif "Unterminated string" in e.msg or "control character" in e.msg:
            ctx = "in string literal"
        elif "escape" in e.msg:
            ctx = "in string escape code"
        elif "property name" in e.msg:
            ctx = "looking for beginning of object key string"
        elif "Expecting ':'" in e.msg:
            ctx = "after object key"
        raise DecodeError("invalid character %s %s" % (_go_quote_char(ch), ctx))
    except ValueError:
        raise DecodeError("invalid character 'N' looking for beginning of value")
    if not isinstance(value, _Obj):
        if value is None:
            return {}
        kind = "number" if isinstance(value, _Num) else _json_kind(value)
        raise DecodeError("json: cannot unmarshal %s into Go value of type api.ScalingRequest" % kind)
    out = {}
    first_err = None

    def type_err(field, v, gotype):
        nonlocal first_err
        if first_err is None:
            # Go quotes the literal only when the target is a number type
            if isinstance(v, _Num):
                k = ("number " + v.text) if gotype in ("int64", "uint64") else "number"
            else:
                k = "object" if isinstance(v, _Obj) else _json_kind(v)
            first_err = "json: cannot unmarshal %s into Go struct field ScalingRequest.%s of type %s" % (
                k, field, gotype)

    for key, v in value:
        spec = SCALE_FIELDS.get(key.lower())
        if spec is None:
            continue
        name, kind = spec
        if v is None:
            if name == "Count":
                out.pop("Count", None)
            elif name in ("Target", "Meta"):
                out[name] = None
            continue
        if kind in ("int64", "uint64"):
            if not isinstance(v, _Num) or not re.fullmatch(r"-?[0-9]+", v.text):
                type_err(name, v, kind)
                continue
            n = int(v.text)
            lo, hi = (-(1 << 63), (1 << 63) - 1) if kind == "int64" else (0, (1 << 64) - 1)
            if n < lo or n > hi:
                type_err(name, v, kind)
                continue
            out[name] = n
        elif kind == "bool":
            if not isinstance(v, bool):
                type_err(name, v, "bool")
                continue
            out[name] = v
        elif kind == "string":
            if not isinstance(v, str):
                type_err(name, v, "string")
                continue
            out[name] = v
        elif kind == "map[string]string":
            if not isinstance(v, _Obj):
                type_err(name, v, kind)
                continue
            m = dict(out.get(name) or {})
            for mk, mv in v:
                if mv is None:
                    m.setdefault(mk, "")
                elif not isinstance(mv, str):
                    type_err(name, mv, "string")
                else:
                    m[mk] = mv
            out[name] = m
        else:  # Meta
            if not isinstance(v, _Obj):
                type_err(name, v, kind)
                continue
            m = dict(out.get(name) or {})
            m.update({mk: _plain(mv) for mk, mv in v})
            out[name] = m
    if first_err:
        raise DecodeError(first_err)
    return out


def _innermost(s, pos):
    """The innermost open bracket ('{' or '[') at pos, ignoring brackets inside strings."""
    stack, in_str, esc = [], False, False
    for c in s[:pos]:
        if in_str:
            esc, in_str = (False, True) if esc else (c == "\\", c != '"')
        elif c == '"':
            in_str = True
        elif c in "{[":
            stack.append(c)
        elif c in "}]" and stack:
            stack.pop()
    return stack[-1] if stack else ""


def _go_quote_char(ch):
    if ch == "'":
        return "'\\''"
    if ch == '"':
        return "'\"'"
    if ch.isprintable():
        return "'%s'" % ch
    return "'\\x%02x'" % ord(ch)


def _plain(v):
    if isinstance(v, _Num):
        t = v.text
        return int(t) if re.fullmatch(r"-?[0-9]+", t) else float(t)
    if isinstance(v, _Obj):
        return {k: _plain(x) for k, x in v}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


# ---------------------------------------------------------------- job file and token file

def _need(cond, where, msg):
    if not cond:
        raise ConfigError("%s: %s" % (where, msg))


def _duration_field(v, where):
    if isinstance(v, bool):
        raise ConfigError("%s: must be a duration string like \"5s\" or integer nanoseconds" % where)
    if isinstance(v, int):
        _need(v >= 0, where, "must not be negative")
        return v / 1e9
    if isinstance(v, str):
        try:
            d = go_duration(v)
        except ValueError:
            raise ConfigError("%s: invalid duration %r (needs a unit: 5s, 500ms)" % (where, v))
        _need(d >= 0, where, "must not be negative")
        return d
    raise ConfigError("%s: must be a duration string like \"5s\" or integer nanoseconds" % where)


def _int_field(v, where, minimum=0):
    _need(isinstance(v, int) and not isinstance(v, bool) and v >= minimum, where,
          "must be an integer >= %d" % minimum)
    return v


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        raise ConfigError("%s: %s" % (path, e.strerror))
    except ValueError as e:
        raise ConfigError("%s: invalid JSON: %s" % (path, e))


def _update_field(v, where, base):
    """An update block merged over base (the job's, or Nomad's default for service jobs)."""
    if v is None:
        return dict(base) if base else None
    _need(isinstance(v, dict), where, "must be an object")
    out = dict(base or DEFAULT_UPDATE)
    for k, val in v.items():
        _need(k in DEFAULT_UPDATE, where, "unknown field %r" % k)
        if isinstance(DEFAULT_UPDATE[k], bool):
            _need(isinstance(val, bool), "%s.%s" % (where, k), "must be true or false")
        elif k == "HealthCheck":
            _need(val in ("checks", "task_states", "manual"), where + ".HealthCheck",
                  "must be checks, task_states or manual")
        elif k in ("MaxParallel", "Canary"):
            val = _int_field(val, "%s.%s" % (where, k))
        else:
            val = int(round(_duration_field(val, "%s.%s" % (where, k)) * 1e9))
        out[k] = val
    return out


def _objects(v, where):
    """(where[i], item) for a list of objects, with a clear error for anything else."""
    _need(isinstance(v, list), where, "must be a list")
    for i, e in enumerate(v):
        ew = "%s[%d]" % (where, i)
        _need(isinstance(e, dict), ew, "must be an object")
        yield ew, e


def _events_field(v, where, count):
    """A pre-seeded scaling history: newest first after sorting by Time; Time is integer ns since
    the epoch, or Age (a duration before start-up)."""
    if v is None:
        return []
    out = []
    start = now_ns()
    for ew, e in _objects(v, where):
        if "Age" in e:
            t = start - int(round(_duration_field(e["Age"], ew + ".Age") * 1e9))
        else:
            t = _int_field(e.get("Time"), ew + ".Time", 1)
        c = e.get("Count")
        _need(c is None or (isinstance(c, int) and not isinstance(c, bool) and c >= 0), ew + ".Count",
              "must be null or an integer >= 0")
        prev = _int_field(e.get("PreviousCount", count), ew + ".PreviousCount")
        meta = e.get("Meta")
        _need(meta is None or isinstance(meta, dict), ew + ".Meta", "must be null or an object")
        msg = e.get("Message", "")
        _need(isinstance(msg, str), ew + ".Message", "must be a string")
        eid = e.get("EvalID")
        _need(eid is None or isinstance(eid, str), ew + ".EvalID", "must be null or a string")
        out.append({"Time": t, "Count": c, "PreviousCount": prev, "Message": msg,
                    "Error": bool(e.get("Error", False)), "Meta": meta, "EvalID": eid, "CreateIndex": 0})
    out.sort(key=lambda x: x["Time"], reverse=True)
    return out[:MAX_EVENTS]


def load_jobs(path):
    data = _read_json(path)
    if isinstance(data, dict):
        _need("Jobs" in data, path, "missing \"Jobs\" list")
        data = data["Jobs"]
    _need(isinstance(data, list), path, "\"Jobs\" must be a list")
    jobs = []
    seen = set()
    for w, j in _objects(data, path + ": Jobs"):
        jid = j.get("ID")
        _need(isinstance(jid, str) and jid, w + ".ID", "must be a non-empty string")
        ns = j.get("Namespace") or "default"
        _need(isinstance(ns, str), w + ".Namespace", "must be a string")
        _need((ns, jid) not in seen, w + ".ID", "duplicate job %r in namespace %r" % (jid, ns))
        seen.add((ns, jid))
        jtype = j.get("Type", "service")
        _need(jtype in ("service", "batch", "system", "sysbatch"), w + ".Type",
              "must be service, batch, system or sysbatch")
        groups_in = j.get("TaskGroups", j.get("Groups"))
        _need(isinstance(groups_in, list) and groups_in, w + ".TaskGroups", "must be a non-empty list")
        dd = j.get("DeploymentDuration")
        job = {"ID": jid, "Name": j.get("Name") or jid, "Namespace": ns, "Type": jtype,
               "Stop": bool(j.get("Stop", False)), "Priority": _int_field(j.get("Priority", 50), w + ".Priority", 1),
               "ActiveDeployment": bool(j.get("ActiveDeployment", False)),
               "DeploymentDuration": None if dd is None else _duration_field(dd, w + ".DeploymentDuration"),
               "Groups": []}
        job_update = _update_field(j.get("Update"), w + ".Update", DEFAULT_UPDATE if jtype == "service" else None)
        gnames = set()
        for gi, g in enumerate(groups_in):
            gw = "%s.TaskGroups[%d]" % (w, gi)
            _need(isinstance(g, dict), gw, "must be an object")
            name = g.get("Name")
            _need(isinstance(name, str) and name, gw + ".Name", "must be a non-empty string")
            _need(name not in gnames, gw + ".Name", "duplicate group %r" % name)
            gnames.add(name)
            count = _int_field(g.get("Count"), gw + ".Count")
            cmd = g.get("Command")
            if isinstance(cmd, str):
                cmd = ["sh", "-c", cmd]
            _need(cmd is None or (isinstance(cmd, list) and cmd and all(isinstance(a, str) for a in cmd)),
                  gw + ".Command", "must be a non-empty list of strings (or a shell string)")
            env = g.get("Env") or {}
            _need(isinstance(env, dict) and all(isinstance(v, str) for v in env.values()), gw + ".Env",
                  "must be an object of strings")
            kt = _duration_field(g.get("KillTimeout", "5s"), gw + ".KillTimeout")
            ks = g.get("KillSignal") or "SIGINT"
            try:
                signal_number(ks)
            except (ValueError, AttributeError):
                raise ConfigError("%s.KillSignal: unknown signal %r" % (gw, ks))
            sd = g.get("StartupDelay", 0)
            _need(isinstance(sd, (int, float)) and not isinstance(sd, bool) and sd >= 0, gw + ".StartupDelay",
                  "must be a number of seconds >= 0")
            scaling = None
            sc = g.get("Scaling")
            if sc is not None:
                _need(isinstance(sc, dict), gw + ".Scaling", "must be an object")
                _need(jtype != "system", gw + ".Scaling",
                      "Task groups with job type system do not support scaling blocks")
                _need("Max" in sc, gw + ".Scaling.Max", "is required")
                mx = _int_field(sc["Max"], gw + ".Scaling.Max")
                mn = _int_field(sc.get("Min", count), gw + ".Scaling.Min")
                _need(mn <= mx, gw + ".Scaling", "Min must be <= Max")
                _need(count <= mx, gw + ".Count",
                      "Scaling policy invalid: task group count must not be greater than maximum count in scaling policy")
                _need(count >= mn, gw + ".Count",
                      "Scaling policy invalid: task group count must not be less than minimum count in scaling policy")
                pol = sc.get("Policy") or {}
                _need(isinstance(pol, dict), gw + ".Scaling.Policy", "must be an object")
                scaling = {"Min": mn, "Max": mx, "Enabled": bool(sc.get("Enabled", True)), "Policy": pol}
            job["Groups"].append({"Name": name, "Count": count, "Task": g.get("Task") or name,
                                  "Command": cmd, "Env": env, "KillTimeout": min(kt, MAX_KILL_TIMEOUT),
                                  "KillSignal": ks, "StartupDelay": float(sd), "Scaling": scaling,
                                  "Update": _update_field(g.get("Update"), gw + ".Update", job_update),
                                  "Events": _events_field(g.get("Events"), gw + ".Events", count), "Queued": 0})
        jobs.append(job)
    return jobs


def load_tokens(path):
    data = _read_json(path)
    if isinstance(data, dict):
        data = data.get("Tokens")
    _need(isinstance(data, list), path, "expected {\"Tokens\": [...]} or a list")
    tokens = {}
    for i, t in enumerate(data):
        w = "%s: Tokens[%d]" % (path, i)
        _need(isinstance(t, dict), w, "must be an object")
        sid = t.get("SecretID")
        _need(isinstance(sid, str) and sid.strip(), w + ".SecretID", "must be a non-empty string")
        ttype = t.get("Type", "client")
        _need(ttype in ("client", "management"), w + ".Type", "must be client or management")
        nss = t.get("Namespaces") or {}
        _need(isinstance(nss, dict), w + ".Namespaces", "must be an object of lists")
        caps = {}
        for ns, lst in nss.items():
            _need(isinstance(lst, list) and all(isinstance(c, str) for c in lst), "%s.Namespaces.%s" % (w, ns),
                  "must be a list of capability or policy names")
            s = set()
            for c in lst:
                s.update(SHORTHANDS.get(c, [c]))
            if "deny" in lst:
                s = set()
            caps[ns] = s
        agent = t.get("Agent", "deny")
        _need(agent in ("read", "write", "deny"), w + ".Agent", "must be read, write or deny")
        tokens[sid.strip()] = {"Name": t.get("Name", ""), "Type": ttype, "Caps": caps, "Agent": agent}
    return tokens


# ---------------------------------------------------------------- the state store

class Alloc:
    def __init__(self, job, group, index, eval_id, idx):
        self.id = str(uuid.uuid4())
        self.job = job
        self.group = group
        self.index = index
        self.name = "%s.%s[%d]" % (job["ID"], group["Name"], index)
        self.eval_id = eval_id
        self.job_version = job["Version"]
        self.desired = "run"
        self.desired_desc = ""
        self.client = "pending"
        self.client_desc = "No tasks have started"
        self.create_index = self.modify_index = idx
        self.create_time = self.modify_time = now_ns()
        self.task_state = "pending"
        self.failed = False
        self.restarts = 0
        self.last_restart = 0.0
        self.started_at = 0.0
        self.finished_at = 0.0
        self.events = []
        # process bookkeeping (supervisor thread only)
        self.proc = None
        self.pgid = None
        self.spawned_mono = None
        self.restart_at = time.monotonic()
        self.kill_sent = False
        self.sigkill_sent = False
        self.kill_deadline = None
        self.exit_code = None
        self.dirs = None

    def event(self, etype, msg="", **details):
        e = {"Type": etype, "Time": now_ns(), "DisplayMessage": msg, "Details": {k: str(v) for k, v in details.items()},
             "ExitCode": details.get("exit_code", 0), "Signal": details.get("signal", 0),
             "KillTimeout": details.get("kill_timeout", 0), "Message": msg}
        self.events.append(e)
        del self.events[:-MAX_TASK_EVENTS]

    def set_client(self, status):
        """Set ClientStatus with the matching description and task state (caller records the write)."""
        desc, task = {"pending": ("Tasks are restarting", "pending"), "running": ("Tasks are running", "running"),
                      "complete": ("All tasks have completed", "dead"), "failed": ("Failed tasks", "dead")}[status]
        self.client, self.client_desc, self.task_state = status, desc, task
        if status == "running":
            self.started_at = time.time()
        elif status in TERMINAL_CLIENT:
            self.finished_at = self.finished_at or time.time()

    def nonterminal(self):
        return self.desired == "run" and self.client not in TERMINAL_CLIENT

    def stub(self, region):
        j, g = self.job, self.group
        return {
            "ID": self.id, "EvalID": self.eval_id, "Name": self.name, "Namespace": j["Namespace"],
            "NodeID": "5a1e0000-0000-4000-8000-000000000001", "NodeName": "standin-node",
            "JobID": j["ID"], "JobType": j["Type"], "JobVersion": self.job_version, "TaskGroup": g["Name"],
            "DesiredStatus": self.desired, "DesiredDescription": self.desired_desc,
            "ClientStatus": self.client, "ClientDescription": self.client_desc,
            "DesiredTransition": {"Migrate": None, "Reschedule": None, "ForceReschedule": None,
                                  "NoShutdownDelay": None, "MigrateDisablePlacement": None},
            "TaskStates": {g["Task"]: {
                "State": self.task_state, "Failed": self.failed, "Restarts": self.restarts,
                "LastRestart": rfc3339(self.last_restart), "StartedAt": rfc3339(self.started_at),
                "FinishedAt": rfc3339(self.finished_at), "Events": list(self.events), "Paused": ""}},
            "DeploymentStatus": None, "FollowupEvalID": "", "NextAllocation": "", "RescheduleTracker": None,
            "PreemptedAllocations": None, "PreemptedByAllocation": "",
            "CreateIndex": self.create_index, "ModifyIndex": self.modify_index,
            "CreateTime": self.create_time, "ModifyTime": self.modify_time,
        }


class Store:
    """All Nomad-visible state, guarded by one condition variable that every write signals.

    Allocations live in self.allocs (id -> Alloc, oldest first) and in their job's "_allocs"
    list, so every per-job view costs the job's allocations, not the cluster's. The supervisor
    only visits the allocations in self.watch (those with a process or a pending change)."""

    def __init__(self, jobs, region, state_dir, restart_delay, restart_attempts=0, faults=None):
        self.cond = threading.Condition()
        self.region = region
        self.state_dir = state_dir
        self.restart_delay = restart_delay
        self.restart_attempts = restart_attempts
        self.raft = 0
        self.table = {"jobs": 1, "allocs": 1, "scaling_policy": 1, "scaling_event": 1, "evals": 1,
                      "job_summary": 1, "deployment": 1}
        self.jobs = {}
        self.allocs = {}
        self.watch = {}
        self.evals = {}
        self.policies = {}
        self.events = {}  # (ns, id) -> {"Index": n, "Groups": {g: [events]}}
        self.blocked = {}  # (ns, id) -> the job's blocked evaluation, oldest first
        self.deploying = {}  # (ns, id) -> the job's active deployment
        self.faults = {}
        self.reset_faults()
        self.shutting_down = False
        self.stream = collections.deque(maxlen=EVENT_BUFFER)  # {"Index", "Events"} for /v1/event/stream
        self.streaming = False  # the jobs loaded at start-up make no events
        with self.cond:
            if faults:
                apply_faults(self, faults)
            for j in jobs:
                self.register(j)
            self.streaming = True

    def emit(self, topic, etype, key, ns, payload, filter_keys=None):
        """One event of the event stream, batched with the others of the same raft index."""
        if not self.streaming:
            return
        e = {"Topic": topic, "Type": etype, "Key": key, "Namespace": ns, "FilterKeys": filter_keys,
             "Index": self.raft, "Payload": payload}
        if self.stream and self.stream[-1]["Index"] == self.raft:
            self.stream[-1]["Events"].append(e)
        else:
            self.stream.append({"Index": self.raft, "Events": [e]})
        self.cond.notify_all()

    def emit_job(self, job):
        self.emit("Job", "JobDeregistered" if job["Stop"] else "JobRegistered", job["ID"], job["Namespace"],
                  {"Job": self.job_view(job)})

    def emit_alloc(self, a, etype="AllocationUpdated"):
        self.emit("Allocation", etype, a.id, a.job["Namespace"], {"Allocation": a.stub(self.region)},
                  [a.job["ID"]])

    def reset_faults(self):
        self.faults = {"errors": 0, "error_status": 500, "error_text": "No cluster leader", "delay_ms": 0,
                       "refuse_ms": 0, "malformed": 0, "job_max_count": 0, "active_deployment": [],
                       "capacity": -1, "deployment_ms": -1}

    def write(self, *tables):
        """One raft write: bump the index, stamp the tables, wake blocking queries."""
        self.raft += 1
        for t in tables:
            self.table[t] = self.raft
        self.cond.notify_all()
        return self.raft

    def register(self, j):
        i = self.write("jobs", "scaling_policy", "job_summary")
        job = dict(j)
        job.update({"Version": 0, "CreateIndex": i, "ModifyIndex": i, "JobModifyIndex": i, "SubmitTime": now_ns(),
                    "SummaryIndex": i, "Stable": False, "Deployment": None, "_allocs": []})
        job["Groups"] = [dict(g) for g in job["Groups"]]
        rec = {"Index": 0, "Groups": {}}
        for g in job["Groups"]:
            if g["Scaling"] is not None:
                pid = str(uuid.uuid4())
                g["Scaling"] = dict(g["Scaling"], ID=pid, Type="horizontal", CreateIndex=i, ModifyIndex=i,
                                    Target={"Namespace": job["Namespace"], "Job": job["ID"], "Group": g["Name"]})
                self.policies[pid] = (job, g)
            if g.get("Events"):
                rec["Groups"][g["Name"]] = [dict(e, CreateIndex=i) for e in g["Events"]]
                rec["Index"] = i
        self.jobs[(job["Namespace"], job["ID"])] = job
        self.events[(job["Namespace"], job["ID"])] = rec
        ev = self.create_eval(job, "job-register")
        self.reconcile(job, ev)

    def create_eval(self, job, trigger, status="pending"):
        i = self.write("evals")
        ev = {"ID": str(uuid.uuid4()), "Namespace": job["Namespace"], "Priority": job["Priority"],
              "Type": job["Type"], "TriggeredBy": trigger, "JobID": job["ID"],
              "JobModifyIndex": job["JobModifyIndex"], "Status": status, "StatusDescription": "",
              "FailedTGAllocs": None, "BlockedEval": "", "PreviousEval": "", "QueuedAllocations": None,
              "CreateIndex": i, "ModifyIndex": i, "CreateTime": now_ns(), "ModifyTime": now_ns()}
        self.evals[ev["ID"]] = ev
        return ev

    # ---- allocations

    def live(self, job, g=None):
        return [a for a in job["_allocs"] if (g is None or a.group is g) and a.nonterminal()]

    def watch_alloc(self, a):
        self.watch[a.id] = a

    def free_slots(self):
        """Allocation slots left in the cluster (--capacity); a large number when unlimited. An
        allocation stops using its slot once it is stopped (DesiredStatus stop), as in Nomad's
        scheduler, even while its process drains."""
        cap = self.faults["capacity"]
        if cap < 0:
            return 1 << 62
        return max(0, cap - sum(1 for a in self.allocs.values() if a.nonterminal()))

    def reconcile(self, job, ev):
        """The scheduler: place lowest free indexes, stop highest indexes first, in one plan write.
        What the cluster has no room for stays unplaced: counted as Queued in the job summary,
        with a blocked evaluation that is retried when room frees (unblock)."""
        placed, stopped, missing = [], [], []
        for g in job["Groups"]:
            live = self.live(job, g)
            want = 0 if job["Stop"] else g["Count"]
            if job["Type"] in ("system", "sysbatch"):
                want = min(want, 1)
            if len(live) > want:
                stopped += sorted(live, key=lambda a: a.index, reverse=True)[:len(live) - want]
            missing.append((g, live, max(0, want - len(live))))
        free = self.free_slots() + len(stopped)
        queued = {}
        for g, live, n in missing:
            k = min(n, free)
            free -= k
            used = {a.index for a in live}
            nxt = 0
            for _ in range(k):
                while nxt in used:
                    nxt += 1
                placed.append((g, nxt))
                used.add(nxt)
            queued[g["Name"]] = n - k
        changed = any(g["Queued"] != queued[g["Name"]] for g in job["Groups"])
        if placed or stopped or changed:
            i = self.write("allocs", "job_summary")
            job["SummaryIndex"] = i
            for g in job["Groups"]:
                g["Queued"] = queued[g["Name"]]
            for a in stopped:
                a.desired = "stop"
                a.desired_desc = "alloc not needed due to job update" if not job["Stop"] else "alloc not needed since job is stopped"
                a.modify_index, a.modify_time = i, now_ns()
                if a.group["Command"] is None:  # nothing to drain
                    a.set_client("complete")
                self.watch_alloc(a)
            for g, n in placed:
                a = Alloc(job, g, n, ev["ID"] if ev else "", i)
                if job["Type"] in ("system", "sysbatch"):
                    a.name = "%s.%s[0]" % (job["ID"], g["Name"])
                a.event("Received", "Task received by client")
                if g["Command"] is None and g["StartupDelay"] == 0:
                    a.set_client("running")  # API-only allocs without a modelled start-up run at once
                self.allocs[a.id] = a
                job["_allocs"].append(a)
                self.watch_alloc(a)
            for a in stopped + job["_allocs"][len(job["_allocs"]) - len(placed):]:
                self.emit_alloc(a, "PlanResult")
        key = (job["Namespace"], job["ID"])
        waiting = {k: v for k, v in queued.items() if v > 0}
        old_blocked = self.blocked.pop(key, None)
        if old_blocked is not None and old_blocked is not ev:
            i = self.write("evals")
            old_blocked.update(Status="canceled", StatusDescription="evaluation is superseded", ModifyIndex=i,
                               ModifyTime=now_ns())
        if ev:
            i = self.write("evals")
            ev.update(Status="complete", ModifyIndex=i, ModifyTime=now_ns(),
                      QueuedAllocations={g["Name"]: queued[g["Name"]] for g in job["Groups"]})
            if waiting:
                ev["FailedTGAllocs"] = {g: {"NodesEvaluated": 1, "NodesFiltered": 0, "NodesInPool": 1,
                                            "NodesAvailable": {"dc1": 1}, "ClassFiltered": None,
                                            "ConstraintFiltered": None, "NodesExhausted": 1,
                                            "ClassExhausted": None, "DimensionExhausted": {"slots": 1},
                                            "QuotaExhausted": None, "ResourcesExhausted": None, "Scores": None,
                                            "AllocationTime": 0, "CoalescedFailures": n - 1}
                                        for g, n in waiting.items()}
        if waiting:
            bev = self.create_eval(job, "queued-allocs", status="blocked")
            bev.update(StatusDescription="created due to placement conflicts", PreviousEval=ev["ID"] if ev else "",
                       QueuedAllocations=dict(waiting))
            if ev:
                ev["BlockedEval"] = bev["ID"]
            self.blocked[key] = bev
        # garbage-collect the oldest terminal allocations, as Nomad's GC would
        dead = [a for a in job["_allocs"] if a.proc is None and a.client in TERMINAL_CLIENT]
        if len(dead) > MAX_DEAD_ALLOCS:
            gone = set(id(a) for a in dead[:len(dead) - MAX_DEAD_ALLOCS])
            job["_allocs"] = [a for a in job["_allocs"] if id(a) not in gone]
            for a in dead[:len(dead) - MAX_DEAD_ALLOCS]:
                self.allocs.pop(a.id, None)
                self.watch.pop(a.id, None)
        if stopped:
            self.unblock()

    def unblock(self):
        """Room freed (or --capacity grew): re-run the blocked evaluations, oldest first, which
        places all that now fits at once."""
        if getattr(self, "_unblocking", False) or not self.blocked:
            return
        self._unblocking = True
        try:
            for key, bev in list(self.blocked.items()):
                if self.free_slots() <= 0:
                    break
                if self.blocked.get(key) is not bev:
                    continue
                del self.blocked[key]
                self.reconcile(self.jobs[key], bev)
        finally:
            self._unblocking = False

    def task_exited(self, a, now):
        """A task ended by itself: restart it in place, or, past --restart-attempts, fail the
        allocation and place a replacement (new ID, same name index) as a reschedule would."""
        if self.restart_attempts and a.restarts >= self.restart_attempts:
            a.failed = True
            a.event("Not Restarting", "Exceeded allowed attempts %d" % self.restart_attempts)
            a.set_client("failed")
            self.alloc_changed(a)
            self.reconcile(a.job, None)
            return
        a.restarts += 1
        a.last_restart = time.time()
        a.restart_at = now + self.restart_delay
        a.event("Restarting", "Task restarting in %gs" % self.restart_delay)
        a.set_client("pending")
        self.alloc_changed(a)

    def alloc_changed(self, a):
        a.modify_index = self.write("allocs", "job_summary")
        a.job["SummaryIndex"] = a.modify_index
        a.modify_time = now_ns()
        self.emit_alloc(a)
        if a.client in TERMINAL_CLIENT and self.blocked:
            self.unblock()

    def job(self, ns, jid):
        return self.jobs.get((ns, jid))

    # ---- deployments

    def deploys(self, job):
        """Whether a new job version starts a deployment: a service job with a non-empty update
        block, with deployments modelled (the job's DeploymentDuration or deployment_ms >= 0)."""
        if job["Type"] != "service" or not any(g["Update"] and g["Update"]["MaxParallel"] > 0 for g in job["Groups"]):
            return None
        if job["DeploymentDuration"] is not None:
            return job["DeploymentDuration"]
        ms = self.faults["deployment_ms"]
        return ms / 1000.0 if ms >= 0 else None

    def start_deployment(self, job):
        dur = self.deploys(job)
        if dur is None:
            return
        key = (job["Namespace"], job["ID"])
        old = self.deploying.pop(key, None)
        if old is not None:
            self.end_deployment(job, old, "cancelled", "Cancelled due to newer version of job")
        i = self.write("deployment")
        t = time.time()
        pd = max((g["Update"]["ProgressDeadline"] for g in job["Groups"] if g["Update"]), default=0)
        d = {"ID": str(uuid.uuid4()), "Namespace": job["Namespace"], "JobID": job["ID"],
             "JobVersion": job["Version"], "JobModifyIndex": job["JobModifyIndex"],
             "JobSpecModifyIndex": job["JobModifyIndex"], "JobCreateIndex": job["CreateIndex"],
             "IsMultiregion": False, "Status": "running", "StatusDescription": "Deployment is running",
             "EvalPriority": job["Priority"], "CreateIndex": i, "ModifyIndex": i,
             "CreateTime": now_ns(), "ModifyTime": now_ns(),
             "_start": time.monotonic(), "_duration": dur, "_deadline": time.monotonic() + pd / 1e9 if pd else None,
             "_progress_by": rfc3339(t + pd / 1e9) if pd else ZERO_TIME}
        job["Deployment"] = d
        self.deploying[key] = d
        self.emit("Deployment", "DeploymentStatusUpdate", d["ID"], job["Namespace"],
                  {"Deployment": self.deployment_view(job)}, [job["ID"]])
        log("deployment %s of %s started (%.1fs)", d["ID"][:8], job["ID"], dur)

    def end_deployment(self, job, d, status, desc):
        i = self.write("deployment")
        d.update(Status=status, StatusDescription=desc, ModifyIndex=i, ModifyTime=now_ns())
        self.emit("Deployment", "DeploymentStatusUpdate", d["ID"], job["Namespace"],
                  {"Deployment": self.deployment_view(job) if job["Deployment"] is d else None}, [job["ID"]])
        if status == "successful":
            # a successful deployment marks the job version stable: ModifyIndex moves, JobModifyIndex does not
            j = self.write("jobs")
            job.update(Stable=True, ModifyIndex=j)
            self.emit_job(job)
        log("deployment %s of %s %s", d["ID"][:8], job["ID"], status)

    def tick_deployments(self):
        """Ends deployments: successful once their duration has passed and every group runs its
        count; failed at the progress deadline (Nomad's default 10m) while some cannot run."""
        if not self.deploying:
            return
        now = time.monotonic()
        for key, d in list(self.deploying.items()):
            job = self.jobs[key]
            if now - d["_start"] >= d["_duration"] and all(
                    sum(1 for a in self.live(job, g) if a.client == "running") >= g["Count"] for g in job["Groups"]):
                del self.deploying[key]
                self.end_deployment(job, d, "successful", "Deployment completed successfully")
            elif d["_deadline"] is not None and now >= d["_deadline"]:
                del self.deploying[key]
                self.end_deployment(job, d, "failed", "Failed due to progress deadline")

    def deployment_view(self, job):
        d = job["Deployment"]
        if d is None:
            return None
        out = {k: v for k, v in d.items() if not k.startswith("_")}
        tgs = {}
        for g in job["Groups"]:
            if not g["Update"]:
                continue
            live = self.live(job, g)
            u = g["Update"]
            tgs[g["Name"]] = {"AutoRevert": u["AutoRevert"], "AutoPromote": u["AutoPromote"],
                              "ProgressDeadline": u["ProgressDeadline"], "RequireProgressBy": d["_progress_by"],
                              "Promoted": False, "PlacedCanaries": None, "DesiredCanaries": u["Canary"],
                              "DesiredTotal": g["Count"], "PlacedAllocs": len(live),
                              "HealthyAllocs": sum(1 for a in live if a.client == "running"), "UnhealthyAllocs": 0}
        out["TaskGroups"] = tgs
        return out

    def deployment_active(self, job):
        lst = self.faults["active_deployment"]
        d = job["Deployment"]
        return (job["ActiveDeployment"] or job["ID"] in lst or "%s/%s" % (job["Namespace"], job["ID"]) in lst
                or (d is not None and d["Status"] in ACTIVE_DEPLOYMENT and d["JobCreateIndex"] == job["CreateIndex"]))

    # ---- read views (caller holds the lock); each returns (index, value or None)

    def scale_status(self, ns, jid):
        job = self.job(ns, jid)
        if job is None:
            return self.raft, None
        rec = self.events[(ns, jid)]
        idx = max(job["ModifyIndex"], rec["Index"])
        tgs = {}
        for g in job["Groups"]:
            mine = self.live(job, g)
            for a in mine:
                idx = max(idx, a.modify_index)
            tgs[g["Name"]] = {"Desired": g["Count"], "Placed": len(mine),
                              "Running": sum(1 for a in mine if a.client == "running"),
                              "Healthy": 0, "Unhealthy": 0, "Events": list(rec["Groups"].get(g["Name"]) or []) or None}
        return idx, {"JobID": jid, "Namespace": ns, "JobCreateIndex": job["CreateIndex"],
                     "JobModifyIndex": job["ModifyIndex"], "JobStopped": job["Stop"], "TaskGroups": tgs}

    def summary_view(self, job):
        s = {}
        for g in job["Groups"]:
            c = {"Queued": g["Queued"], "Complete": 0, "Failed": 0, "Running": 0, "Starting": 0, "Lost": 0,
                 "Unknown": 0}
            for a in job["_allocs"]:
                if a.group is not g:
                    continue
                if a.client == "pending":
                    c["Starting"] += 1
                elif a.client == "running":
                    c["Running"] += 1
                else:
                    c[a.client.capitalize()] += 1
            s[g["Name"]] = c
        return {"JobID": job["ID"], "Namespace": job["Namespace"], "Summary": s,
                "Children": {"Pending": 0, "Running": 0, "Dead": 0},
                "CreateIndex": job["CreateIndex"], "ModifyIndex": job["SummaryIndex"]}

    def job_status(self, job):
        if job["Stop"]:
            return "dead"
        return "running" if any(a.nonterminal() for a in job["_allocs"]) else "pending" if any(
            g["Queued"] for g in job["Groups"]) else "dead"

    def job_stub(self, job, meta=False):
        out = {"ID": job["ID"], "ParentID": "", "Name": job["Name"], "Namespace": job["Namespace"],
               "Datacenters": ["dc1"], "NodePool": "default", "Multiregion": None, "Type": job["Type"],
               "Priority": job["Priority"], "Periodic": False, "ParameterizedJob": False, "Stop": job["Stop"],
               "Status": self.job_status(job), "StatusDescription": "", "JobSummary": self.summary_view(job),
               "CreateIndex": job["CreateIndex"], "ModifyIndex": job["ModifyIndex"],
               "JobModifyIndex": job["JobModifyIndex"], "SubmitTime": job["SubmitTime"]}
        if meta:
            out["Meta"] = None
        return out

    def job_stub_json(self, job, meta):
        """job_stub as compact JSON, kept per job until the job or its summary changes."""
        key = (job["ModifyIndex"], job["SummaryIndex"], meta)
        c = job.get("_stub")
        if c is None or c[0] != key:
            c = job["_stub"] = (key, json.dumps(self.job_stub(job, meta), separators=(",", ":"),
                                                ensure_ascii=False).encode())
        return c[1]

    def policy_view(self, job, g):
        s = g["Scaling"]
        return {"ID": s["ID"], "Type": s["Type"], "Target": dict(s["Target"]), "Policy": s["Policy"],
                "Min": s["Min"], "Max": s["Max"], "Enabled": s["Enabled"] and not job["Stop"],
                "CreateIndex": s["CreateIndex"], "ModifyIndex": s["ModifyIndex"]}

    def job_view(self, job):
        groups = []
        for g in job["Groups"]:
            groups.append({
                "Name": g["Name"], "Count": g["Count"],
                "Scaling": self.policy_view(job, g) if g["Scaling"] else None,
                "Update": dict(g["Update"]) if g["Update"] else None,
                "Tasks": [{"Name": g["Task"], "Driver": "raw_exec",
                           "Config": {"command": (g["Command"] or [""])[0], "args": (g["Command"] or [""])[1:]},
                           "Env": dict(g["Env"]) or None, "KillTimeout": int(round(g["KillTimeout"] * 1e9)),
                           "KillSignal": g["KillSignal"], "ShutdownDelay": 0}]})
        upd = next((g["Update"] for g in job["Groups"] if g["Update"]), None)
        return {"Region": self.region, "Namespace": job["Namespace"], "ID": job["ID"], "Name": job["Name"],
                "Type": job["Type"], "Priority": job["Priority"], "Datacenters": ["dc1"], "NodePool": "default",
                "Stop": job["Stop"], "Status": self.job_status(job),
                "StatusDescription": "", "Stable": job["Stable"], "Version": job["Version"],
                "SubmitTime": job["SubmitTime"], "CreateIndex": job["CreateIndex"],
                "ModifyIndex": job["ModifyIndex"], "JobModifyIndex": job["JobModifyIndex"],
                "Update": dict(upd) if upd else {"Stagger": 0, "MaxParallel": 0, "HealthCheck": "",
                                                 "MinHealthyTime": 0, "HealthyDeadline": 0, "ProgressDeadline": 0,
                                                 "AutoRevert": False, "AutoPromote": False, "Canary": 0},
                "Periodic": None, "ParameterizedJob": None, "Dispatched": False, "ParentID": "",
                "Meta": None, "TaskGroups": groups}

    # ---- the scale write (spec 3, steps 5 onwards; caller holds the lock)

    def scale(self, ns, jid, req):
        """Returns (status, body, index)."""
        target = req.get("Target") or {}
        if target.get("Namespace", "") not in ("", ns):
            return 400, "namespace in payload did not match header", None
        group = target.get("Group", "")
        if not group:
            return 400, "missing task group name for scaling action", None
        count = req.get("Count")
        if count is not None and count < 0:
            return 400, "scaling action count can't be negative", None
        if count is not None and req.get("Error"):
            return 400, "scaling action should not contain count if error is true", None
        job = self.job(ns, jid)
        if job is None:
            return 404, 'job "%s" not found' % jid, None
        if job["Type"] == "system" and count is not None and count > 1:
            return 400, 'jobs of type "system" can only be scaled between 0 and 1', None
        g = next((x for x in job["Groups"] if x["Name"] == group), None)
        if g is None:
            return 400, 'task group "%s" specified for scaling does not exist in job' % group, None
        prev = g["Count"]
        eval_id, eval_index, jmi = "", 0, job["ModifyIndex"]
        if count is not None:
            sc = g["Scaling"]
            if sc is not None and count < sc["Min"]:
                return 400, "group count was less than scaling policy minimum: %d < %d" % (count, sc["Min"]), None
            if sc is not None and count > sc["Max"]:
                return 400, "group count was greater than scaling policy maximum: %d > %d" % (count, sc["Max"]), None
            mx = self.faults["job_max_count"]
            total = sum(x["Count"] for x in job["Groups"] if x is not g) + count
            if mx > 0 and total > mx:
                return 500, "total count was greater than configured job_max_count: %d > %d" % (total, mx), None
            if self.deployment_active(job):
                return 400, "job scaling blocked due to active deployment", None
            sent = req.get("JobModifyIndex", 0)
            if sent > 0 and sent != job["JobModifyIndex"]:
                return 500, ("Enforcing job modify index %d: job exists with conflicting job modify index: %d"
                             % (sent, job["JobModifyIndex"])), None
            i = self.write("jobs")
            g["Count"] = count
            job.update(Version=job["Version"] + 1, ModifyIndex=i, JobModifyIndex=i, SubmitTime=now_ns(),
                       Stable=False)
            self.emit_job(job)
            ev = self.create_eval(job, "job-scaling")
            eval_id, eval_index, jmi = ev["ID"], ev["CreateIndex"], i
        i = self.write("scaling_event")
        rec = self.events[(ns, jid)]
        rec["Index"] = i
        lst = rec["Groups"].setdefault(group, [])
        lst.insert(0, {"Time": now_ns(), "Count": count, "PreviousCount": prev, "Message": req.get("Message", ""),
                       "Error": bool(req.get("Error", False)), "Meta": req.get("Meta"),
                       "EvalID": eval_id or None, "CreateIndex": i})
        del lst[MAX_EVENTS:]
        if count is not None:
            self.start_deployment(job)
            self.reconcile(job, self.evals[eval_id])
        body = {"EvalID": eval_id, "EvalCreateIndex": eval_index, "JobModifyIndex": jmi, "Warnings": "",
                "Index": i, "LastContact": 0, "KnownLeader": True, "NextToken": ""}
        return 200, body, i

    def operator_update(self, ns, jid, stop=None, counts=None, scaling=None):
        """An operator's `nomad job run` of a changed jobspec: Stop, counts and scaling blocks
        ({"group": {"Min": n, "Max": n} or null}); validated as Nomad's register does."""
        job = self.job(ns, jid)
        if job is None:
            return None
        groups = {g["Name"]: g for g in job["Groups"]}
        for name in list(counts or {}) + list(scaling or {}):
            if name not in groups:
                raise ValueError("no group %r in job %r" % (name, jid))
        for name, c in (counts or {}).items():
            if not isinstance(c, int) or isinstance(c, bool) or c < 0:
                raise ValueError("Counts.%s must be an integer >= 0" % name)
        new_sc = {}
        for name, sc in (scaling or {}).items():
            g = groups[name]
            count = (counts or {}).get(name, g["Count"])
            if sc is None:
                new_sc[name] = None
                continue
            if not isinstance(sc, dict) or "Max" not in sc:
                raise ValueError("Scaling.%s must be null or an object with Max" % name)
            mx, mn = sc["Max"], sc.get("Min", count)
            for v in (mx, mn):
                if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                    raise ValueError("Scaling.%s: Min and Max must be integers >= 0" % name)
            if count > mx or count < mn:
                raise ValueError("Scaling policy invalid: task group count must not be %s count in scaling policy"
                                 % ("greater than maximum" if count > mx else "less than minimum"))
            new_sc[name] = (mn, mx, sc)
        tables = ("jobs", "scaling_policy") if stop is not None or scaling else ("jobs",)
        i = self.write(*tables)
        if stop is not None:
            job["Stop"] = bool(stop)
            for g in job["Groups"]:
                if g["Scaling"] is not None:
                    g["Scaling"]["ModifyIndex"] = i
        for name, v in new_sc.items():
            g = groups[name]
            if v is None:
                if g["Scaling"] is not None:
                    self.policies.pop(g["Scaling"]["ID"], None)
                g["Scaling"] = None
                continue
            mn, mx, sc = v
            if g["Scaling"] is None:
                pid = str(uuid.uuid4())
                g["Scaling"] = {"ID": pid, "Type": "horizontal", "CreateIndex": i, "Enabled": True, "Policy": {},
                                "Target": {"Namespace": job["Namespace"], "Job": job["ID"], "Group": name}}
                self.policies[pid] = (job, g)
            g["Scaling"].update(Min=mn, Max=mx, ModifyIndex=i, Enabled=bool(sc.get("Enabled", True)),
                                Policy=sc.get("Policy") or g["Scaling"]["Policy"])
        for name, c in (counts or {}).items():
            groups[name]["Count"] = c
        job.update(Version=job["Version"] + 1, ModifyIndex=i, JobModifyIndex=i, SubmitTime=now_ns(), Stable=False)
        self.emit_job(job)
        if not job["Stop"]:
            self.start_deployment(job)
        self.reconcile(job, self.create_eval(job, "job-register"))
        if job["Stop"]:
            self.unblock()
        return self.job_view(job)


# ---------------------------------------------------------------- process supervision

WATCHDOG = r"""
import os, signal, sys
groups = set()
for line in sys.stdin:
    line = line.strip()
    if line[:1] == "+": groups.add(int(line[1:]))
    elif line[:1] == "-": groups.discard(int(line[1:]))
for g in groups:
    try: os.killpg(g, signal.SIGKILL)
    except OSError: pass
"""


class Supervisor(threading.Thread):
    """Runs every allocation's process; the only thread that spawns, signals and reaps."""

    def __init__(self, store):
        super().__init__(name="supervisor", daemon=True)
        self.store = store
        self.wake = threading.Event()
        self.wd_lock = threading.Lock()
        self.watchdog = subprocess.Popen([sys.executable, "-c", WATCHDOG], stdin=subprocess.PIPE,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         start_new_session=True, close_fds=True)
        self.libc = None
        try:
            self.libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            pass

    def tell_watchdog(self, line):
        with self.wd_lock:
            try:
                self.watchdog.stdin.write((line + "\n").encode())
                self.watchdog.stdin.flush()
            except (OSError, ValueError):
                pass

    def close_watchdog(self):
        with self.wd_lock:
            try:
                self.watchdog.stdin.close()
            except OSError:
                pass
        try:
            self.watchdog.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.watchdog.kill()

    def _child_setup(self):
        # The kernel kills the main process if the supervisor thread's process dies; the
        # watchdog covers the rest of the process group.
        if self.libc is not None:
            self.libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG

    def run(self):
        while True:
            with self.store.cond:
                st = self.store
                for a in list(st.watch.values()):
                    try:
                        self.step(a)
                    except Exception as e:  # one broken alloc must not stop the others
                        log("alloc %s: %s", a.name, e)
                    if a.proc is None and (a.client in TERMINAL_CLIENT or (
                            a.group["Command"] is None and a.desired == "run" and a.client == "running")):
                        st.watch.pop(a.id, None)  # settled: nothing left to supervise
                try:
                    st.tick_deployments()
                except Exception as e:
                    log("deployments: %s", e)
            self.wake.wait(0.02)
            self.wake.clear()

    def live(self):
        with self.store.cond:
            return [a for a in self.store.watch.values() if a.proc is not None]

    def spawn(self, a):
        st, j, g = self.store, a.job, a.group
        if a.dirs is None:
            base = os.path.join(st.state_dir, a.id)
            a.dirs = {"alloc": os.path.join(base, "alloc"), "task": os.path.join(base, g["Task"], "local"),
                      "secrets": os.path.join(base, g["Task"], "secrets"),
                      "logs": os.path.join(base, "alloc", "logs")}
            for d in a.dirs.values():
                os.makedirs(d, exist_ok=True)
        env = dict(os.environ)
        env.update({"NOMAD_ALLOC_ID": a.id, "NOMAD_SHORT_ALLOC_ID": a.id[:8], "NOMAD_ALLOC_NAME": a.name,
                    "NOMAD_ALLOC_INDEX": str(0 if j["Type"] in ("system", "sysbatch") else a.index),
                    "NOMAD_GROUP_NAME": g["Name"], "NOMAD_TASK_NAME": g["Task"], "NOMAD_JOB_ID": j["ID"],
                    "NOMAD_JOB_NAME": j["Name"], "NOMAD_NAMESPACE": j["Namespace"], "NOMAD_REGION": st.region,
                    "NOMAD_DC": "dc1", "NOMAD_ALLOC_DIR": a.dirs["alloc"], "NOMAD_TASK_DIR": a.dirs["task"],
                    "NOMAD_SECRETS_DIR": a.dirs["secrets"]})
        env.update(g["Env"])
        a.stdout = os.path.join(a.dirs["logs"], g["Task"] + ".stdout.0")
        a.stderr = os.path.join(a.dirs["logs"], g["Task"] + ".stderr.0")
        with open(a.stdout, "ab") as out, open(a.stderr, "ab") as err:
            a.proc = subprocess.Popen(g["Command"], stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                                      cwd=os.path.dirname(a.dirs["task"]), start_new_session=True, close_fds=True,
                                      preexec_fn=self._child_setup)
        a.pgid = a.proc.pid
        self.tell_watchdog("+%d" % a.pgid)
        a.spawned_mono = time.monotonic()
        a.exit_code = None
        a.event("Started", "Task started by client")

    def step(self, a):
        st, g = self.store, a.group
        now = time.monotonic()
        if a.proc is None and g["Command"] is None:
            # nothing to run: the allocation only exists in the API
            if a.desired != "run" and a.client not in TERMINAL_CLIENT:
                a.set_client("complete")
                st.alloc_changed(a)
            elif a.desired == "run" and a.client == "pending":
                if a.spawned_mono is None:
                    a.spawned_mono = now
                if now - a.spawned_mono >= g["StartupDelay"]:
                    a.set_client("running")
                    st.alloc_changed(a)
            return
        if a.proc is None:
            if a.desired == "run" and a.client not in TERMINAL_CLIENT and not st.shutting_down and now >= a.restart_at:
                try:
                    self.spawn(a)
                except (OSError, subprocess.SubprocessError) as e:
                    a.event("Driver Failure", str(e))
                    log("alloc %s: cannot start %s: %s", a.name, g["Command"], e)
                    st.task_exited(a, now)
            elif a.desired != "run" and a.client not in TERMINAL_CLIENT:
                a.set_client("complete")
                st.alloc_changed(a)
            return
        rc = a.proc.poll()
        if rc is None:
            if a.desired != "run":
                if not a.kill_sent:
                    a.kill_sent = True
                    a.kill_deadline = now + g["KillTimeout"]
                    a.event("Killing", "Sent interrupt. Waiting %gs before force killing" % g["KillTimeout"],
                            kill_timeout=int(g["KillTimeout"] * 1e9))
                    if g["KillTimeout"] > 0:
                        self._signal(a.proc.pid, signal_number(g["KillSignal"]))
                if now >= a.kill_deadline and not a.sigkill_sent:
                    a.sigkill_sent = True
                    self._signal(a.proc.pid, signal.SIGKILL)
                    self._killpg(a.pgid)
            elif a.client != "running" and now - a.spawned_mono >= g["StartupDelay"]:
                a.set_client("running")
                st.alloc_changed(a)
            return
        # the main process ended: clean up its group, then decide what the alloc becomes
        self._killpg(a.pgid)
        self.tell_watchdog("-%d" % a.pgid)
        a.proc = None
        a.exit_code = rc
        a.finished_at = time.time()
        a.event("Terminated", "Exit Code: %d" % rc, exit_code=rc if rc >= 0 else 0, signal=-rc if rc < 0 else 0)
        if a.desired != "run" or st.shutting_down:
            a.failed = False
            a.set_client("complete")
            if a.kill_sent:
                a.event("Killed", "Task successfully killed")
            st.alloc_changed(a)
        else:
            st.task_exited(a, now)

    def _signal(self, pid, sig):
        try:
            os.kill(pid, sig)
        except OSError:
            pass

    def _killpg(self, pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass


# ---------------------------------------------------------------- HTTP

class Reply(Exception):
    """A text/plain error answer: status, message, and whether X-Nomad-* read headers go with it."""

    def __init__(self, status, text, index=None):
        super().__init__(text)
        self.status, self.text, self.index = status, text, index


class Server:
    def __init__(self, store, sup, tokens, host, port):
        self.store, self.sup, self.tokens = store, sup, tokens
        self.host, self.port = host, port
        self.requests = []
        self.counts = {}  # "METHOD /v1/route/:id" -> requests since the last clear
        self.req_lock = threading.Lock()
        self.cache = {}  # (key, encoding) -> bytes: big list answers are built once per index
        self.cache_lock = threading.Lock()
        self.heartbeat = HEARTBEAT
        self.httpd = None
        self.refuse_until = 0.0
        self.refusing = False
        self.refuse_lock = threading.Lock()
        self.refuse_ev = threading.Event()

    def bind(self):
        handler = type("H", (Handler,), {"srv": self})
        cls = type("S", (ThreadingHTTPServer,), {"allow_reuse_address": True, "daemon_threads": True,
                                                  # a client opens many connections at once
                                                  "request_queue_size": 128,
                                                  "address_family": socket.AF_INET6 if ":" in self.host
                                                  else socket.AF_INET})
        httpd = cls((self.host, self.port), handler)
        self.port = httpd.server_address[1]
        self.httpd = httpd
        return httpd

    def refuse(self, seconds):
        """Close the listening socket now (so the caller's answer proves it is closed); the main
        loop listens again on the same port once refuse_until has passed."""
        with self.refuse_lock:
            self.refuse_until = max(self.refuse_until, time.monotonic() + seconds)
            if self.refusing:
                return
            self.refusing = True  # also drop requests on kept-alive connections
            self.httpd.shutdown()
            self.httpd.server_close()
            self.refuse_ev.set()

    def record(self, entry):
        with self.req_lock:
            self.requests.append(entry)
            if len(self.requests) > MAX_REQUEST_LOG + 1000:
                del self.requests[:-MAX_REQUEST_LOG]
            self.counts[entry["Route"]] = self.counts.get(entry["Route"], 0) + 1

    def cached(self, key, enc, make):
        if key is None:
            return make()
        with self.cache_lock:
            v = self.cache.get((key, enc))
        if v is None:
            v = make()
            with self.cache_lock:
                if len(self.cache) > 16:
                    self.cache.clear()
                self.cache[(key, enc)] = v
        return v

    def compress(self, data, enc, key=None):
        """Go's gzip/flate writers at DefaultCompression: gzip with mtime 0, deflate raw (no zlib
        header), as compress/flate writes it."""
        def make():
            if enc == "gzip":
                return gzip.compress(data, compresslevel=6, mtime=0)
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            return c.compress(data) + c.flush()
        return self.cached(key, enc, make)


def route_name(upath):
    """The route template of a /v1 path, for the per-endpoint request counts."""
    if upath.startswith("/v1/job/") and len(upath) > len("/v1/job/"):
        rest = upath[len("/v1/job/"):]
        for suffix in JOB_SUFFIXES:
            if rest.endswith(suffix) and len(rest) > len(suffix):
                return "/v1/job/:id" + suffix
        return "/v1/job/:id"
    for prefix in ("/v1/scaling/policy/", "/v1/evaluation/", "/v1/deployment/"):
        if upath.startswith(prefix) and len(upath) > len(prefix):
            return prefix + ":id"
    return upath


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nomad-standin"
    sys_version = ""
    disable_nagle_algorithm = True  # small replies must not wait ~40 ms for an ACK
    timeout = 120
    srv = None  # set by Server.bind

    def log_message(self, fmt, *args):
        pass

    def send_response(self, code, message=None):
        # Go's net/http sends Date but no Server header
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def do_GET(self):
        self.handle_any()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = do_GET

    # ---- plumbing

    def handle_any(self):
        srv = self.srv
        if srv.refusing:
            self.close_connection = True
            return
        body = self.read_body()
        if body is None:
            self.close_connection = True
            return
        split = urlsplit(self.path)
        self.raw_query = split.query
        self.query = parse_qs(split.query, keep_blank_values=True)
        self.upath = unquote(split.path)
        self.status = None
        self.token, self.token_header = self.parse_token()
        self.v1 = not self.upath.startswith("/_standin/")
        self.encoding = None
        if self.v1:
            # gorilla's CompressHandler (Nomad's http.go): the first of gzip/deflate named in
            # Accept-Encoding, exact tokens only ("gzip;q=1" is not one), none for an Upgrade
            for tok in (self.headers.get("Accept-Encoding") or "").split(","):
                if tok.strip(" \t") in ("gzip", "deflate"):
                    self.encoding = tok.strip(" \t")
                    break
            if self.headers.get("Upgrade"):
                self.encoding = None
        if not self.v1:
            try:
                self.control(body)
            except Reply as r:
                self.send_text(r.status, r.text)
            return
        entry = {"Method": self.command, "Path": split.path, "Query": {k: v[0] if len(v) == 1 else v
                                                                      for k, v in self.query.items()},
                 "RawQuery": self.raw_query, "Token": self.token, "TokenHeader": self.token_header,
                 "Body": body.decode("utf-8", "replace"), "Status": None, "Time": time.time(),
                 "Route": "%s %s" % (self.command, route_name(self.upath)), "AcceptEncoding":
                 self.headers.get("Accept-Encoding"), "ContentEncoding": None}
        self.entry = entry
        srv.record(entry)  # in flight until Status is filled in
        try:
            with srv.store.cond:
                f = srv.store.faults
                delay = f["delay_ms"]
                inject = None
                if f["errors"] != 0:
                    inject = (f["error_status"], f["error_text"])
                    if f["errors"] > 0:
                        f["errors"] -= 1
            if delay > 0:
                time.sleep(delay / 1000.0)
            try:
                if inject:
                    raise Reply(inject[0], inject[1])
                self.route(body)
            except Reply as r:
                self.send_text(r.status, r.text, r.index)
            except (BrokenPipeError, ConnectionResetError):
                raise
            except Exception as e:  # a stand-in bug: say so instead of dropping the connection
                log("BUG: %s %s: %r", self.command, self.path, e)
                if self.status is None:
                    self.send_text(500, "nomad-standin internal error: %r" % (e,))
        finally:
            with srv.req_lock:
                entry["Status"] = self.status
            log("%s %s -> %s", self.command, self.path, self.status)

    def read_body(self):
        """The request body (Content-Length or chunked); None when it cannot be read."""
        try:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                parts = []
                for _ in range(100000):
                    size = int(self.rfile.readline(100).split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline(1000).strip():
                            pass
                        return b"".join(parts)
                    parts.append(self.rfile.read(size))
                    self.rfile.readline(10)
                return None
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length > 0 else b""
        except (ValueError, OSError):
            return None

    def parse_token(self):
        # as Go's parseToken: a non-empty X-Nomad-Token wins, even if it trims to nothing
        t = self.headers.get("X-Nomad-Token")
        if t:
            return t.strip() or None, "X-Nomad-Token"
        auth = self.headers.get("Authorization")
        if auth:
            parts = auth.split(" ", 1)
            if len(parts) == 2 and parts[0].lower() == "bearer":
                return parts[1].strip() or None, "Authorization"
        return None, None

    def pretty(self):
        return "pretty" in self.query and self.query["pretty"][0] != "0"

    def meta_headers(self, index):
        return [("X-Nomad-Index", str(index)), ("X-Nomad-LastContact", "0"), ("X-Nomad-KnownLeader", "true")]

    def send_raw(self, status, data, ctype, headers=(), cache_key=None):
        self.status = status
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        data = data or b""
        if self.v1:
            self.send_header("Vary", "Accept-Encoding")  # always, as gorilla's CompressHandler does
        if data:  # Go sets no Content-Type on an empty body (nor sniffs one under Content-Encoding)
            self.send_header("Content-Type", ctype)
        if self.v1 and self.encoding:
            # everything is compressed, errors and empty bodies too (an empty gzip stream is 20 bytes)
            data = self.srv.compress(data, self.encoding, cache_key)
            self.send_header("Content-Encoding", self.encoding)
        if self.v1:
            with self.srv.req_lock:  # logged before the client can see the answer
                self.entry["Status"] = status
                self.entry["ContentEncoding"] = self.encoding
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    def send_text(self, status, text, index=None):
        hdrs = self.meta_headers(index) if index is not None else ()
        self.send_raw(status, text.encode(), "text/plain; charset=utf-8", hdrs)

    def send_json(self, value, headers=(), v1=True, data=None, cache_key=None):
        if data is not None:
            pass
        elif self.pretty():
            data = (json.dumps(value, indent=4, ensure_ascii=False) + "\n").encode()
        else:
            data = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        if v1:
            with self.srv.store.cond:
                f = self.srv.store.faults
                if f["malformed"] != 0:
                    if f["malformed"] > 0:
                        f["malformed"] -= 1
                    data = data[:max(1, len(data) // 2)]
                    cache_key = None
        self.send_raw(200, data, "application/json", headers, cache_key)

    # ---- query parameters (spec 1.3)

    def q(self, name):
        v = self.query.get(name)
        return v[0] if v else ""

    def parse_query(self):
        """Returns (namespace, min_index, wait_seconds); raises the 400s of spec 1.3."""
        if "stale" in self.query and self.q("stale") != "":
            try:
                go_parse_bool(self.q("stale"))
            except ValueError:
                raise Reply(400, "Expect `true` or `false` for `stale` query string parameter")
        wait = 0.0
        if self.q("wait"):
            try:
                wait = go_duration(self.q("wait"))
            except ValueError:
                raise Reply(400, "Invalid wait time")
        index = 0
        if self.q("index"):
            try:
                index = go_parse_uint(self.q("index"))
            except ValueError:
                raise Reply(400, "Invalid index")
        if wait <= 0 or wait > MAX_BLOCK:
            wait = MAX_BLOCK
        wait += random.uniform(0, wait / 16)  # Nomad's jitter (structs.JitterFraction = 16)
        return self.q("namespace") or "default", index, wait

    def check_region(self):
        r = self.q("region")
        if r and r != self.srv.store.region:
            raise Reply(500, "No path to region")

    # ---- ACL (spec 1.2, 1.7)

    def acl_token(self):
        tokens = self.srv.tokens
        if tokens is None:
            return None
        t = tokens.get(self.token) if self.token else None
        if t is None:
            raise Reply(403, "Permission denied")
        return t

    def caps(self, t, ns):
        if t is None or t["Type"] == "management":
            return None  # everything allowed
        if ns in t["Caps"]:
            return t["Caps"][ns]
        best = None
        for pat, caps in t["Caps"].items():
            if fnmatch.fnmatchcase(ns, pat) and (best is None or len(pat) > len(best[0])):
                best = (pat, caps)
        return best[1] if best else set()

    def allowed(self, ns, *alternatives):
        """alternatives: tuples of capabilities; any one tuple fully held is enough."""
        t = self.acl_token()
        caps = self.caps(t, ns)
        return caps is None or any(all(c in caps for c in alt) for alt in alternatives)

    def require(self, ns, *alternatives):
        if not self.allowed(ns, *alternatives):
            raise Reply(403, "Permission denied")

    # ---- blocking read

    def blocking(self, min_index, wait, view):
        """view() -> (index, value); runs under the store lock, waits for a newer index."""
        st = self.srv.store
        deadline = time.monotonic() + wait
        with st.cond:
            while True:
                idx, value = view()
                idx = max(idx, 1)
                left = deadline - time.monotonic()
                if min_index == 0 or idx > min_index or left <= 0 or st.shutting_down:
                    return idx, value
                st.cond.wait(min(left, 1.0))

    # ---- routing

    def route(self, body):
        p = self.upath
        m = self.command
        if p.startswith("/v1/job/") and len(p) > len("/v1/job/"):
            rest = p[len("/v1/job/"):]
            if rest.endswith("/scale") and len(rest) > 6:
                return self.job_scale(rest[:-6], body)
            if rest.endswith("/allocations") and len(rest) > 12:
                self.only(m, "GET")
                return self.job_allocations(rest[:-12])
            if rest.endswith("/summary") and len(rest) > 8:
                self.only(m, "GET")
                return self.job_summary(rest[:-8])
            if rest.endswith("/deployment") and len(rest) > 11:
                self.only(m, "GET")
                return self.job_deployment(rest[:-11])
            if rest.endswith("/evaluations") and len(rest) > 12:
                self.only(m, "GET")
                return self.job_evaluations(rest[:-12])
            self.only(m, "GET")
            return self.job_read(rest)
        if p == "/v1/jobs":
            self.only(m, "GET")
            return self.jobs_list()
        if p == "/v1/scaling/policies":
            self.only(m, "GET")
            return self.policies()
        if p.startswith("/v1/scaling/policy/") and len(p) > len("/v1/scaling/policy/"):
            self.only(m, "GET")
            return self.policy(p[len("/v1/scaling/policy/"):])
        if p.startswith("/v1/evaluation/") and len(p) > len("/v1/evaluation/"):
            self.only(m, "GET")
            return self.evaluation(p[len("/v1/evaluation/"):])
        if p == "/v1/status/leader":
            self.only(m, "GET")
            self.check_region()
            return self.send_json(LEADER)
        if p == "/v1/agent/self":
            self.only(m, "GET")
            t = self.acl_token()
            if t is not None and t["Type"] != "management" and t["Agent"] not in ("read", "write"):
                raise Reply(403, "Permission denied")
            st = self.srv.store
            return self.send_json({"config": {"Region": st.region, "Datacenter": "dc1",
                                              "Version": {"Version": "1.11.3", "VersionPrerelease": "",
                                                          "VersionMetadata": "", "Revision": "standin",
                                                          "BuildDate": "2026-01-01T00:00:00Z"},
                                              "ACL": {"Enabled": self.srv.tokens is not None}},
                                   "member": {"Name": "standin.%s" % st.region, "Addr": "127.0.0.1",
                                              "Port": 4648, "Status": "alive",
                                              "Tags": {"region": st.region, "dc": "dc1", "role": "nomad"}},
                                   "stats": {"nomad": {"leader": "true", "server": "true"}}})
        if p == "/v1/agent/health":
            self.only(m, "GET")
            types = self.query.get("type") or ["client", "server"]
            out = {}
            for t in types:
                if t in ("client", "server"):
                    out[t] = {"ok": True, "message": "ok"}
            return self.send_json(out)
        if p == "/v1/event/stream":
            self.only(m, "GET")
            return self.event_stream()
        if p == "/v1/regions":
            self.only(m, "GET")
            return self.send_json([self.srv.store.region])
        raise Reply(404, "")

    def only(self, method, *allowed):
        if method not in allowed:
            raise Reply(405, "Invalid method")

    # ---- endpoints

    def job_scale(self, jid, body):
        m = self.command
        if m == "GET":
            ns, index, wait = self.parse_query()
            self.check_region()
            self.require(ns, ("read-job-scaling",), ("read-job",))
            st = self.srv.store
            idx, value = self.blocking(index, wait, lambda: st.scale_status(ns, jid))
            if value is None:
                raise Reply(404, "job not found", idx)
            return self.send_json(value, self.meta_headers(idx))
        self.only(m, "PUT", "POST")
        if not body:
            raise Reply(400, "Request body is empty")
        try:
            req = decode_scale_body(body)
        except DecodeError as e:
            raise Reply(400, str(e))
        tjob = (req.get("Target") or {}).get("Job", "")
        if tjob and tjob != jid:
            raise Reply(400, "job ID in payload did not match URL")
        ns = self.q("namespace") or "default"
        self.check_region()
        self.require(ns, ("scale-job",), ("submit-job",))
        st = self.srv.store
        with st.cond:
            status, out, idx = st.scale(ns, jid, req)
        if status != 200:
            raise Reply(status, out)
        self.srv.sup.wake.set()
        return self.send_json(out, [("X-Nomad-Index", str(idx))])

    def job_get(self, jid, table, view_fn, missing="job not found", empty=None):
        """A blocking read-job GET about one job: view_fn(job) -> (index, value). A job that is
        not there answers 404 `missing` with the read headers, or `empty` (when missing is None)
        at the index of `table`."""
        ns, index, wait = self.parse_query()
        self.check_region()
        self.require(ns, ("read-job",))
        st = self.srv.store

        def view():
            job = st.job(ns, jid)
            return (st.table[table], None) if job is None else view_fn(job)
        idx, value = self.blocking(index, wait, view)
        if value is None and missing:
            raise Reply(404, missing, idx)
        return self.send_json(empty if value is None else value, self.meta_headers(idx))

    def job_allocations(self, jid):
        st = self.srv.store
        return self.job_get(jid, "allocs",
                            lambda job: (st.table["allocs"], [a.stub(st.region) for a in job["_allocs"]]), None, [])

    def job_summary(self, jid):
        st = self.srv.store
        return self.job_get(jid, "job_summary", lambda job: (job["SummaryIndex"], st.summary_view(job)))

    def job_deployment(self, jid):
        st = self.srv.store
        return self.job_get(jid, "deployment", lambda job: (st.table["deployment"], st.deployment_view(job)), None)

    def job_evaluations(self, jid):
        st = self.srv.store
        return self.job_get(jid, "evals", lambda job: (st.table["evals"], [dict(e) for e in st.evals.values()
                                                                         if e["JobID"] == job["ID"] and
                                                                         e["Namespace"] == job["Namespace"]]),
                            None, [])

    def event_stream(self):
        """NDJSON, chunked: {"Index": N, "Events": [...]} per raft write that matches a topic
        (topic=Job, topic=Allocation:JOB, topic=*; Key or FilterKeys match), "{}" every 10 s
        while idle; index=N replays what the buffer still holds after N. Needs read-job."""
        st = self.srv.store
        ns, index, _ = self.parse_query()
        self.check_region()
        if ns == "*":
            self.acl_token()
        else:
            self.require(ns, ("read-job",))
        topics = {}
        for t in self.query.get("topic") or ["*"]:
            topic, _, key = t.partition(":")
            topics.setdefault(topic, set()).add(key or "*")

        def wanted(e):
            if ns != "*" and e["Namespace"] != ns:
                return False
            if ns == "*" and not self.allowed(e["Namespace"], ("read-job",)):
                return False
            keys = topics.get(e["Topic"], set()) | topics.get("*", set())
            return "*" in keys or e["Key"] in keys or bool(set(e["FilterKeys"] or ()) & keys)
        self.status = 200
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Vary", "Accept-Encoding")
        self.send_header("Transfer-Encoding", "chunked")
        comp = None
        if self.encoding:
            self.send_header("Content-Encoding", self.encoding)
            comp = zlib.compressobj(6, zlib.DEFLATED, 31 if self.encoding == "gzip" else -15)
        self.end_headers()
        with self.srv.req_lock:
            self.entry.update(Status=200, ContentEncoding=self.encoding)

        def chunk(data):
            if comp is not None:
                data = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        last = index
        every = self.srv.heartbeat
        beat = time.monotonic() + every
        for _ in range(10 ** 9):  # ends with the client, a refusal or the stand-in
            with st.cond:
                out = []
                for b in st.stream:
                    if b["Index"] > last:
                        evs = [e for e in b["Events"] if wanted(e)]
                        if evs:
                            out.append({"Index": b["Index"], "Events": evs})
                        last = b["Index"]
                if not out and not st.shutting_down:
                    st.cond.wait(max(0.0, min(1.0, beat - time.monotonic())))
                done = st.shutting_down or self.srv.refusing
            try:
                for b in out:
                    chunk(json.dumps(b, separators=(",", ":")).encode() + b"\n")
                if out:
                    beat = time.monotonic() + every
                elif time.monotonic() >= beat:
                    chunk(b"{}\n")
                    beat = time.monotonic() + every
                if done:
                    if comp is not None:
                        tail = comp.flush()
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(tail), tail))
                    self.wfile.write(b"0\r\n\r\n")
                    self.close_connection = True
                    return
            except OSError:
                self.close_connection = True
                return

    def jobs_list(self):
        """GET /v1/jobs: JobListStubs with their JobSummary, sorted by ID (by namespace then ID for
        namespace=*); needs list-jobs (the "scale" policy lacks it). Index: max(jobs, job_summary).
        The answer is built once per index (and token view) and cached, so 10,000 jobs stay cheap."""
        ns, index, wait = self.parse_query()
        self.check_region()
        st = self.srv.store
        t = self.acl_token()
        if ns != "*":
            self.require(ns, ("list-jobs",))
        elif t is not None and t["Type"] != "management" and not any("list-jobs" in c for c in t["Caps"].values()):
            raise Reply(403, "Permission denied")
        prefix = self.q("prefix")
        meta = self.q("meta") in ("true", "1", "t", "T", "TRUE", "True")
        with st.cond:
            spaces = sorted({k[0] for k in st.jobs})
        seen = frozenset(x for x in spaces if (ns == "*" or x == ns) and self.allowed(x, ("list-jobs",)))

        def view():
            return max(st.table["jobs"], st.table["job_summary"]), None
        idx, _ = self.blocking(index, wait, view)
        key = ("jobs", idx, ns, prefix, meta, seen, self.pretty())

        def make():
            with st.cond:
                jobs = [j for k, j in st.jobs.items() if k[0] in seen and k[1].startswith(prefix)]
                jobs.sort(key=lambda j: (j["Namespace"], j["ID"]))
                if self.pretty():
                    out = [st.job_stub(j, meta) for j in jobs]
                else:
                    return b"[" + b",".join(st.job_stub_json(j, meta) for j in jobs) + b"]"
            return (json.dumps(out, indent=4, ensure_ascii=False) + "\n").encode()
        data = self.srv.cached(key, None, make)
        return self.send_json(None, self.meta_headers(idx), data=data, cache_key=key)

    def job_read(self, jid):
        st = self.srv.store
        return self.job_get(jid, "jobs", lambda job: (job["ModifyIndex"], st.job_view(job)))

    def policies(self):
        ns, index, wait = self.parse_query()
        self.check_region()
        st = self.srv.store
        want = ("list-scaling-policies",), ("list-jobs", "read-job")
        if ns != "*":
            self.require(ns, *want)
        else:
            self.acl_token()
        jfilter, tfilter, prefix = self.q("job"), self.q("type"), self.q("prefix")

        def view():
            out = []
            for pid, (job, g) in st.policies.items():
                if ns == "*":
                    if not self.allowed(job["Namespace"], *want):
                        continue
                elif job["Namespace"] != ns:
                    continue
                s = g["Scaling"]
                if prefix:
                    if not pid.startswith(prefix):
                        continue
                elif jfilter and (job["ID"] != jfilter or (tfilter and s["Type"] != tfilter)):
                    continue
                elif not jfilter and tfilter and not s["Type"].startswith(tfilter):
                    continue
                v = st.policy_view(job, g)
                out.append({k: v[k] for k in ("ID", "Enabled", "Type", "Target", "CreateIndex", "ModifyIndex")})
            return st.table["scaling_policy"], out
        idx, value = self.blocking(index, wait, view)
        return self.send_json(value, self.meta_headers(idx))

    def policy(self, pid):
        ns, index, wait = self.parse_query()
        self.check_region()
        self.require(ns, ("read-scaling-policy",), ("list-jobs", "read-job"))
        st = self.srv.store

        def view():
            if pid not in st.policies:
                return st.table["scaling_policy"], None
            job, g = st.policies[pid]
            return g["Scaling"]["ModifyIndex"], st.policy_view(job, g)
        idx, value = self.blocking(index, wait, view)
        if value is None:
            raise Reply(404, "policy not found", idx)
        return self.send_json(value, self.meta_headers(idx))

    def evaluation(self, eid):
        ns, index, wait = self.parse_query()
        self.check_region()
        st = self.srv.store
        with st.cond:
            ev = st.evals.get(eid)
            ev_ns = ev["Namespace"] if ev else ns
        self.require(ev_ns, ("read-job",))

        def view():
            e = st.evals.get(eid)
            return (e["ModifyIndex"], dict(e)) if e else (st.table["evals"], None)
        idx, value = self.blocking(index, wait, view)
        if value is None:
            raise Reply(404, "eval not found", idx)
        return self.send_json(value, self.meta_headers(idx))

    # ---- control API

    def control_body(self, body):
        if not body.strip():
            return {}
        try:
            v = json.loads(body)
        except ValueError as e:
            raise Reply(400, "invalid JSON: %s" % e)
        if not isinstance(v, dict):
            raise Reply(400, "expected a JSON object")
        return v

    def control(self, body):
        srv, st = self.srv, self.srv.store
        p, m = self.upath, self.command
        if p == "/_standin/requests" and m == "GET":
            with srv.req_lock:
                text = json.dumps(srv.requests)
            return self.send_raw(200, text.encode(), "application/json")
        if (p == "/_standin/requests" and m == "DELETE") or (p == "/_standin/requests/clear" and m == "POST"):
            with srv.req_lock:
                srv.requests.clear()
                srv.counts.clear()
            return self.send_json({"ok": True}, v1=False)
        if p == "/_standin/requests/counts" and m == "GET":
            with srv.req_lock:
                out = dict(srv.counts)
            out["total"] = sum(out.values())
            return self.send_json(out, v1=False)
        if p == "/_standin/allocs" and m == "GET":
            jid = self.q("job")
            with st.cond:
                out = [{"ID": a.id, "Name": a.name, "JobID": a.job["ID"], "Namespace": a.job["Namespace"],
                        "TaskGroup": a.group["Name"], "Index": a.index, "DesiredStatus": a.desired,
                        "ClientStatus": a.client, "Pid": a.proc.pid if a.proc else None,
                        "Restarts": a.restarts, "ExitCode": a.exit_code,
                        "Stdout": getattr(a, "stdout", None), "Stderr": getattr(a, "stderr", None),
                        "TaskDir": a.dirs["task"] if a.dirs else None,
                        "KillSignalSent": a.kill_sent, "SigkillSent": a.sigkill_sent}
                       for a in st.allocs.values() if not jid or a.job["ID"] == jid]
            return self.send_json(out, v1=False)
        if p == "/_standin/faults" and m == "GET":
            with st.cond:
                out = json.loads(json.dumps(st.faults))
            return self.send_json(out, v1=False)
        if p == "/_standin/faults" and m == "POST":
            req = self.control_body(body)
            with st.cond:
                try:
                    apply_faults(st, req)
                except ValueError as e:
                    raise Reply(400, str(e))
                out = dict(st.faults)
                st.cond.notify_all()
            if out["refuse_ms"] > 0:
                with st.cond:
                    st.faults["refuse_ms"] = 0
                srv.refuse(out["refuse_ms"] / 1000.0)
                self.close_connection = True
            return self.send_json(out, v1=False)
        if p == "/_standin/signal" and m == "POST":
            req = self.control_body(body)
            try:
                sig = signal_number(req.get("Signal", "SIGKILL"))
            except (ValueError, AttributeError):
                raise Reply(400, "unknown signal")
            with st.cond:
                a = st.allocs.get(req.get("ID"))
                if a is None or a.proc is None:
                    raise Reply(404, "no running allocation %r" % req.get("ID"))
                os.kill(a.proc.pid, sig)
            return self.send_json({"ok": True}, v1=False)
        if p == "/_standin/job" and m == "POST":
            req = self.control_body(body)
            with st.cond:
                try:
                    out = st.operator_update(req.get("Namespace") or "default", req.get("ID", ""),
                                             req.get("Stop"), req.get("Counts"), req.get("Scaling"))
                except (ValueError, TypeError) as e:
                    raise Reply(400, str(e))
            if out is None:
                raise Reply(404, "job not found")
            srv.sup.wake.set()
            return self.send_json(out, v1=False)
        if p == "/_standin/scale" and m == "POST":
            # what `nomad job scale JOB GROUP N` sends, without going through /v1 (not logged,
            # no ACL, no faults); Count absent or null records an event only
            req = self.control_body(body)
            sreq = {"Target": {"Group": req.get("Group") or "", "Job": req.get("ID", "")},
                    "Message": req.get("Message", "submitted using the Nomad CLI"), "Meta": req.get("Meta"),
                    "Error": bool(req.get("Error", False))}
            c = req.get("Count")
            if c is not None:
                if not isinstance(c, int) or isinstance(c, bool):
                    raise Reply(400, "Count must be an integer")
                sreq["Count"] = c
            with st.cond:
                status, out, _ = st.scale(req.get("Namespace") or "default", req.get("ID", ""), sreq)
            if status != 200:
                raise Reply(status, out)
            srv.sup.wake.set()
            return self.send_json(out, v1=False)
        raise Reply(404, "unknown control path or method")


def apply_faults(st, req):
    f = st.faults
    if req.get("clear"):
        st.reset_faults()
        f = st.faults
    for k in ("errors", "error_status", "delay_ms", "refuse_ms", "malformed", "job_max_count"):
        if k in req:
            v = req[k]
            if not isinstance(v, int) or isinstance(v, bool) or (v < 0 and k not in ("errors", "malformed")):
                raise ValueError("%s must be an integer%s" % (k, "" if k in ("errors", "malformed") else " >= 0"))
            f[k] = v
    if "error_text" in req:
        if not isinstance(req["error_text"], str):
            raise ValueError("error_text must be a string")
        f["error_text"] = req["error_text"]
    if "active_deployment" in req:
        v = req["active_deployment"]
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise ValueError("active_deployment must be a list of job ids")
        f["active_deployment"] = list(v)
    for k in ("capacity", "deployment_ms"):
        if k in req:
            v = req[k]
            if v is None:
                v = -1
            if not isinstance(v, int) or isinstance(v, bool) or v < -1:
                raise ValueError("%s must be an integer >= 0 (-1 or null: %s)" % (
                    k, "unlimited" if k == "capacity" else "no deployments"))
            f[k] = v
    if not (100 <= f["error_status"] <= 599):
        raise ValueError("error_status must be an HTTP status")
    st.unblock()  # more capacity places what was queued, at once


# ---------------------------------------------------------------- main

def parse_listen(s):
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError("--listen %r: expected HOST:PORT" % s)
    host = host.strip("[]")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        if not ipaddress.ip_address(host).is_loopback:
            raise ConfigError("--listen %r: only loopback addresses are allowed" % s)
    except ValueError:
        raise ConfigError("--listen %r: %r is not an IP address" % (s, host))
    return host, int(port)


def build_parser():
    p = argparse.ArgumentParser(
        prog="nomad-standin.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A stand-in Nomad server for tests: Nomad's HTTP API for job scaling, with "
                    "allocations run as local processes (raw_exec style).",
        epilog=__doc__[__doc__.index("Cluster capacity"):__doc__.index("Command line:")])
    p.add_argument("--jobs", metavar="FILE", required=True, help="job file (JSON, format below)")
    p.add_argument("--listen", metavar="HOST:PORT", default="127.0.0.1:4646",
                   help="loopback address to listen on; port 0 picks a free one (default 127.0.0.1:4646)")
    p.add_argument("--ready-file", metavar="PATH", help="write the actual HOST:PORT here once listening")
    p.add_argument("--acl-tokens", metavar="FILE", help="ACL token file (JSON); ACLs are off without it")
    p.add_argument("--region", default="global", help="this server's region (default global)")
    p.add_argument("--state-dir", metavar="DIR", help="allocation dirs and logs (default: a new temp dir)")
    p.add_argument("--log", metavar="FILE", help="the stand-in's own log (default stderr)")
    p.add_argument("--stream-heartbeat", type=float, default=HEARTBEAT, metavar="SECONDS",
                   help="\"{}\" lines on an idle /v1/event/stream this often (default 10, as Nomad)")
    p.add_argument("--restart-delay", type=float, default=1.0, metavar="SECONDS",
                   help="delay before restarting a task that exited by itself (default 1)")
    p.add_argument("--restart-attempts", type=int, default=0, metavar="N",
                   help="after N restarts an allocation fails and is replaced (new ID, same index); "
                        "0 (default) restarts forever")
    g = p.add_argument_group("fault switches (also settable at run time: POST /_standin/faults)")
    g.add_argument("--fail-requests", type=int, default=0, metavar="N",
                   help="answer the first N /v1 requests with an error (-1: all)")
    g.add_argument("--fail-status", type=int, default=500, help="status for --fail-requests (default 500)")
    g.add_argument("--fail-text", default="No cluster leader", help="text for --fail-requests")
    g.add_argument("--delay-ms", type=int, default=0, help="delay every /v1 answer by this many ms")
    g.add_argument("--malformed", type=int, default=0, metavar="N",
                   help="cut the first N 200 JSON answers in half (-1: all)")
    g.add_argument("--job-max-count", type=int, default=0, metavar="N", help="server job_max_count (0: off)")
    g.add_argument("--active-deployment", action="append", default=[], metavar="JOB",
                   help="JOB (or NS/JOB) has an active deployment that never ends; repeatable")
    g.add_argument("--capacity", type=int, default=-1, metavar="N",
                   help="allocation slots in the cluster; allocations beyond stay queued (-1: unlimited)")
    g.add_argument("--deployment-ms", type=int, default=-1, metavar="MS",
                   help="every new version of a service job with an update block starts a deployment "
                        "lasting at least MS ms (-1, default: no deployments)")
    return p


def main(argv=None):
    global log_file
    args = build_parser().parse_args(argv)
    try:
        host, port = parse_listen(args.listen)
        jobs = load_jobs(args.jobs)
        tokens = load_tokens(args.acl_tokens) if args.acl_tokens else None
        if args.log:
            log_file = open(args.log, "a")
    except (ConfigError, OSError) as e:
        print("nomad-standin: %s" % e, file=sys.stderr)
        return 2
    state_dir = args.state_dir
    if state_dir:
        os.makedirs(state_dir, exist_ok=True)
    else:
        import tempfile
        state_dir = tempfile.mkdtemp(prefix="nomad-standin-")
    state_dir = os.path.abspath(state_dir)

    stop_ev = threading.Event()

    def on_signal(signum, frame):
        stop_ev.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        store = Store(jobs, args.region, state_dir, max(0.0, args.restart_delay), max(0, args.restart_attempts),
                      faults={"errors": args.fail_requests, "error_status": args.fail_status,
                              "error_text": args.fail_text, "delay_ms": args.delay_ms,
                              "malformed": args.malformed, "job_max_count": args.job_max_count,
                              "active_deployment": args.active_deployment, "capacity": args.capacity,
                              "deployment_ms": args.deployment_ms})
    except ValueError as e:
        print("nomad-standin: %s" % e, file=sys.stderr)
        return 2
    # the jobs live as long as the stand-in: keep the collector from walking them again and again
    # (with 10,000 jobs a full collection costs more than a /v1/jobs answer)
    for j in store.jobs.values():
        store.job_stub_json(j, False)  # the first GET /v1/jobs costs no more than the next ones
    gc.collect()
    gc.freeze()
    sup = Supervisor(store)
    server = Server(store, sup, tokens, host, port)
    server.heartbeat = max(0.05, args.stream_heartbeat)
    try:
        httpd = server.bind()
    except OSError as e:
        print("nomad-standin: cannot listen on %s: %s" % (args.listen, e.strerror), file=sys.stderr)
        sup.close_watchdog()
        return 1
    sup.start()
    addr = "%s:%d" % (host if ":" not in host else "[%s]" % host, server.port)
    print("nomad-standin listening on %s (state dir %s)" % (addr, state_dir), flush=True)
    log("listening on %s, %d job(s), ACLs %s", addr, len(jobs), "on" if tokens is not None else "off")
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(addr + "\n")
        os.rename(tmp, args.ready_file)

    while not stop_ev.is_set():
        t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        t.start()
        while not stop_ev.is_set() and not server.refuse_ev.is_set():
            stop_ev.wait(0.1)
        if stop_ev.is_set():
            with server.refuse_lock:
                server.refusing = True
                server.httpd.shutdown()
                server.httpd.server_close()
            t.join(timeout=5)
            break
        server.refuse_ev.clear()
        t.join(timeout=5)
        log("refusing connections for %.0f ms", 1000 * max(0.0, server.refuse_until - time.monotonic()))
        while not stop_ev.is_set() and time.monotonic() < server.refuse_until:
            stop_ev.wait(min(0.05, max(0.0, server.refuse_until - time.monotonic())))
        if stop_ev.is_set():
            break
        with server.refuse_lock:
            for _ in range(100):
                try:
                    httpd = server.bind()
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                log("cannot listen again on port %d", server.port)
                break
            server.refusing = False
            server.refuse_until = 0.0
        log("listening again on %s", addr)

    # shutdown: stop every allocation (kill signal, SIGKILL after kill_timeout), then exit 0
    log("stopping all allocations")
    with store.cond:
        store.shutting_down = True
        for a in store.allocs.values():
            if a.desired == "run":
                a.desired = "stop"
                a.desired_desc = "stand-in shutting down"
            if a.proc is not None:
                store.watch_alloc(a)
        longest = max([a.group["KillTimeout"] for a in store.allocs.values() if a.proc] or [0])
        store.cond.notify_all()
    sup.wake.set()
    deadline = time.monotonic() + longest + 5
    while sup.live() and time.monotonic() < deadline:
        time.sleep(0.02)
    for a in sup.live():
        sup._killpg(a.pgid)
    sup.close_watchdog()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
