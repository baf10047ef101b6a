"""The fault suite's pipe handler (scaleno-worker(8), HANDLER PROTOCOLS, pipe).

Each message carries "n" (its number in the run), "key" and, maybe, "fault".
A fault fires once per message number, the first time the message is seen in
any stream (a marker file in $FAULT_DIR, created with O_EXCL), so every
faulted message can still succeed later:
  crash    exit 3 without answering
  hang     sleep far past worker.timeout (the consumer kills the group)
  garbage  answer a line that is not a verdict
  twice    answer "ok" twice for the one message
  close    close stdout, then wait for stdin's end
  flood    write 2 MiB to stderr, then answer normally
  retry    answer "retry"
A message is "processed" when this handler answered "ok" for it: each such
answer appends "ok <n> <key> <delivery> <pid> <monotonic-ms> <stream>" to
$OKLOG with one write(2) (O_APPEND). $DELAY_MS slows every message down.
"""
import json
import os
import sys
import time

OKLOG = os.environ["OKLOG"]
FAULT_DIR = os.environ["FAULT_DIR"]
DELAY = float(os.environ.get("DELAY_MS", "0")) / 1000.0
log_fd = os.open(OKLOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
out = sys.stdout.buffer


def first_time(n):
    try:
        os.close(os.open(os.path.join(FAULT_DIR, n), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        return True
    except FileExistsError:
        return False


def answer(line):
    out.write(line)
    out.flush()


for raw in sys.stdin.buffer:
    try:
        m = json.loads(raw)
        f = m["fields"]
        n, key = f["n"], f.get("key", "-")
    except (ValueError, KeyError, TypeError):
        answer(b"fail not a fault-suite message\n")
        continue
    if DELAY:
        time.sleep(DELAY)
    fault = f.get("fault", "")
    if fault and first_time(n):
        if fault == "crash":
            os._exit(3)
        if fault == "hang":
            time.sleep(600)
        if fault == "garbage":
            answer(b"perhaps later\n")
            continue
        if fault == "close":
            os.close(1)
            for _ in sys.stdin.buffer:
                pass
            os._exit(0)
        if fault == "flood":
            chunk = b"x" * 65535 + b"\n"
            for _ in range(32):
                os.write(2, chunk)
        if fault == "retry":
            answer(b"retry asked to\n")
            continue
        if fault == "twice":
            os.write(log_fd, ("ok %s %s %d %d %d %s\n" % (n, key, m["delivery"], os.getpid(),
                                                         int(time.monotonic() * 1000),
                                                         m["stream"])).encode())
            answer(b"ok\nok\n")
            continue
    os.write(log_fd, ("ok %s %s %d %d %d %s\n" % (n, key, m["delivery"], os.getpid(),
                                                 int(time.monotonic() * 1000), m["stream"])).encode())
    answer(b"ok\n")
