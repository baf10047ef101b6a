#!/usr/bin/env python3
"""The message a handler gets (scaleno-worker(8) "The message"): clean fields
in every stage, one attempt count in meta, the DLQ and the logs, binary
values as base64 listed in meta.binary (real redis-server, real worker)."""
import base64
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from test_worker_modes import Env  # noqa: E402

suite = H.Suite()

# Logs every message it gets as JSON; answers retry while meta.attempt is
# below the field fail_until, or always for poison=1.
RECORDER = r'''
import json, os, sys
fd = os.open(os.environ["OKLOG"] + ".msgs", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
for raw in sys.stdin.buffer:
    m = json.loads(raw)
    os.write(fd, raw)
    f, meta = m["fields"], m["meta"]
    if f.get("poison") == "1" or meta["attempt"] < int(f.get("fail_until", "0")):
        print("retry attempt %d" % meta["attempt"], flush=True)
    else:
        print("ok", flush=True)
'''


def messages(e):
    try:
        with open(e.oklog + ".msgs") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


@suite.test
def test_meta_attempts_and_clean_fields():
    e = Env(worker={"processes": 1, "batch": 4, "retries": 1,
                    "retry_delays": '[ "100ms", "100ms" ]'})
    H.write(e.handler, RECORDER)
    raw = b"\x08\x96\x01\x00\xff\xfe"
    e.publish([{"n": "a", "fail_until": "5"}, {"n": "b", "poison": "1"},
               {"n": "c", "payload": raw, "text": "caf\u00e9"}])
    e.start()
    H.wait_until(lambda: "b" in e.dlq() and any(
        m["fields"].get("n") == "a" and m["meta"]["attempt"] == 5 for m in messages(e)),
        timeout=30, interval=0.2, what="a to succeed at attempt 5, b in the DLQ")
    msgs = messages(e)
    for m in msgs:
        assert not [k for k in m["fields"] if k.startswith("x-")], m
        assert set(m["fields"]) <= {"n", "fail_until", "poison", "payload", "text"}, m
    a = [m for m in msgs if m["fields"]["n"] == "a"]
    assert [m["meta"]["attempt"] for m in a] == [1, 2, 3, 4, 5], [m["meta"] for m in a]
    assert [m["meta"]["stage"] for m in a] == [0, 0, 1, 1, 2], [m["meta"] for m in a]
    assert "first_failed_ms" not in a[0]["meta"] and "last_error" not in a[0]["meta"]
    assert a[1]["meta"]["last_error"] == "handler replied retry: attempt 1", a[1]["meta"]
    assert a[4]["meta"]["last_error"] == "handler replied retry: attempt 4", a[4]["meta"]
    assert a[2]["meta"]["first_failed_ms"] == a[4]["meta"]["first_failed_ms"] > 0
    b = [m for m in msgs if m["fields"]["n"] == "b"]
    assert [m["meta"]["attempt"] for m in b] == [1, 2, 3, 4, 5, 6], [m["meta"] for m in b]
    assert e.dlq()["b"]["x-attempts"] == "6", e.dlq()["b"]
    assert "after 6 attempt(s)" in e.log_text()
    c = [m for m in msgs if m["fields"]["n"] == "c"]
    assert c and base64.b64decode(c[0]["fields"]["payload"]) == raw, c
    assert c[0]["meta"]["binary"] == ["payload"], c[0]["meta"]
    assert c[0]["fields"]["text"] == "caf\u00e9"
    assert all(m["partition"] == 0 for m in msgs)
    r = H.run_scaleno(["dlq", "list", "-q", e.queue, "-c", e.conf])
    assert r.returncode == 0 and " 6 " in " %s " % r.stdout.replace("\t", " "), r.stdout
    assert H.stop(e.proc) == 0


if __name__ == "__main__":
    suite.main()
