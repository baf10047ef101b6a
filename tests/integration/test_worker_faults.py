#!/usr/bin/env python3
"""scaleno worker under the faults of issue 10: a handler answering twice,
Redis coming back empty, a read blocked past the partition lease, held
entries claimed by others (real redis-server, real `scaleno worker`)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from test_worker_modes import Env  # noqa: E402

suite = H.Suite()


@suite.test
def test_answered_twice_loses_nothing():
    """A pipelined batch where one message is answered twice: no failed message is acknowledged."""
    e = Env(worker={"processes": 1, "batch": 16, "retries": 0})
    msgs = []
    for i in range(48):
        f = {"n": str(i)}
        if i % 8 == 1:
            f["twice"] = "1"
        if i % 8 == 2 or i % 8 == 7:
            f["poison"] = "1"
        msgs.append(f)
    e.publish(msgs)
    e.start()
    poison = {f["n"] for f in msgs if "poison" in f}
    good = {f["n"] for f in msgs if "poison" not in f}

    def done():
        ok = {n for n, _, _ in e.ok()}
        return good <= ok and poison <= set(e.dlq())
    H.wait_until(done, timeout=40, interval=0.2, what="every good message ok, every poison in the DLQ")
    assert not poison & {n for n, _, _ in e.ok()}
    assert "answered more lines than it was sent messages" in e.log_text()
    assert H.stop(e.proc) == 0


if __name__ == "__main__":
    suite.main()
