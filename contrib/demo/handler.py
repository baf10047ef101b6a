#!/usr/bin/env python3
"""The demo's payment handler (pipe protocol, scaleno-worker(8)): one JSON message a line in,
one verdict a line out, in order. Each payment takes PER_MSG_MS; an amount that is not a
number is poison, failed for good ("fail"), so the dead-letter mode moves it to the DLQ; about
one in a hundred is answered "retry" (a provider hiccup) and succeeds later.
"""
import json
import random
import sys
import time

PER_MSG_S = int(sys.argv[1]) / 1000.0 if len(sys.argv) > 1 else 0.04
rng = random.Random()
for line in sys.stdin:          # one message per line until the consumer closes the pipe
    try:
        fields = json.loads(line).get("fields", {})
    except ValueError:
        fields = {}
    time.sleep(PER_MSG_S)
    amount = fields.get("amount", "")
    if not amount.isdigit():
        verdict = "fail amount %r is not a number" % amount[:32]
    elif rng.random() < 0.01:
        verdict = "retry provider timeout"
    else:
        verdict = "ok"
    sys.stdout.write(verdict + "\n")
    sys.stdout.flush()
