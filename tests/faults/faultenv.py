"""Pieces of the fault-injection suite (tests/faults/run.py): a worker world of
real processes and the audit of what became of every message.

WorkerWorld: one redis-server (AOF, appendfsync always), two queues in one
configuration — "dl" (dead-letter mode, 1 stream, pipelined batches) and "ho"
(halt mode, ordered, partitioned) — and any number of `scaleno worker`
supervisors per queue, each with its own consumer names (NOMAD_* variables),
all running tests/faults/fhandler.py. Messages are numbered; the driver keeps
what it published and the audit reads the handler's log and Redis.
Every wait is a bounded poll (harness.wait_until); every process is
registered with the harness and killed at exit.
"""
import os
import re
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness as H  # noqa: E402

HANDLER = os.path.join(HERE, "fhandler.py")
QUEUES = {
    # name: (mode keys, partitions)
    "dl": ("loss_critical = true; order_critical = false;", 1),
    "ho": ("loss_critical = true; order_critical = true;", 3),
}
WORKER = {"processes": 2, "batch": 8, "timeout": '"2s"', "retries": 1, "backoff": '"10ms"',
          "max_backoff": '"40ms"', "retry_delays": '[ "200ms", "400ms" ]', "claim_idle": '"5s"',
          "max_deliveries": 10, "drain_timeout": '"1500ms"', "kill_timeout": '"3s"',
          "block": '"200ms"', "listen": '""'}
LEASE_S = 10.0  # worker.timeout + 5 s, at least 10 s (scaleno-worker(8), MODES)


def now_ms():
    return int(time.monotonic() * 1000)


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


class Supervisor:
    """One `scaleno worker -q Q` with consumer names JOB/w/INDEX/slot."""

    def __init__(self, world, queue, index):
        self.world, self.queue, self.index = world, queue, index
        self.prefix = "f%s/w/%d/" % (queue, index)
        self.log = os.path.join(world.dir, "worker-%s-%d.log" % (queue, index))
        self.proc = None
        self.expected_exit = False

    def start(self):
        env = dict(self.world.env, NOMAD_JOB_ID="f" + self.queue, NOMAD_GROUP_NAME="w",
                   NOMAD_ALLOC_INDEX=str(self.index))
        self.expected_exit = False
        self.proc = H.spawn([H.SCALENO, "worker", "-q", self.queue, "-c", self.world.conf],
                            log_path=self.log, env=env)

    def consumers(self):
        return [p for p in children(self.proc.pid) if alive(p)] if self.proc else []

    def slot_pids(self):
        """{slot: pid} of the consumers the supervisor says it started last."""
        out = {}
        try:
            with open(self.log, errors="replace") as f:
                for m in re.finditer(r"consumer (\d+) started, pid (\d+)", f.read()):
                    out[int(m.group(1))] = int(m.group(2))
        except OSError:
            pass
        return out

    def kill(self):
        """SIGKILL the supervisor; its consumers die with it (PR_SET_PDEATHSIG)."""
        old = self.consumers()
        self.expected_exit = True
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        H.wait_until(lambda: not any(alive(k) for k in old), timeout=10, what="its consumers to die")

    def unexpected_exit(self):
        return self.proc is not None and not self.expected_exit and self.proc.poll() is not None


class WorkerWorld:
    def __init__(self, rng, delay_ms=4, worker=None, queues=("dl", "ho")):
        self.rng = rng
        self.dir = H.tmpdir("scaleno-faults-")
        self.redis = H.Redis(appendonly=True)
        self.oklog = os.path.join(self.dir, "ok.log")
        self.fault_dir = os.path.join(self.dir, "fired")
        os.makedirs(self.fault_dir)
        self.env = {"OKLOG": self.oklog, "FAULT_DIR": self.fault_dir, "DELAY_MS": str(delay_ms)}
        self.queues = list(queues)
        w = dict(WORKER, **(worker or {}))
        body = "\n".join("    %s = %s;" % (k, v) for k, v in w.items())
        self.conf = H.write(os.path.join(self.dir, "scaleno.conf"),
                            'redis: { address = "%s"; command_timeout = "500ms"; '
                            'connect_timeout = "300ms"; };\nlog: { level = "info"; };\n'
                            'agent: { policy_dir = "policies.d"; };\n' % self.redis.address)
        for q in self.queues:
            mode, parts = QUEUES[q]
            H.write(os.path.join(self.dir, "policies.d", q + ".conf"), """queue: {
  name = "%s"; stream = "%s"; group = "g"; partitions = %d; %s
  scale: { target = "none"; max = %d; };
  worker: { command = [ "%s", "%s" ]; protocol = "pipe";
%s
  };
};
""" % (q, q, parts, mode, parts, sys.executable, HANDLER, body))
        self.published = {q: {} for q in self.queues}   # n -> (key, stream)
        self.excluded = {q: set() for q in self.queues}  # wiped on purpose (Redis came back empty)
        self.next_n = 0
        self.sups = {q: [] for q in self.queues}
        self.kills = []      # (monotonic ms, [partition streams whose holder died])

    def streams(self, q):
        parts = QUEUES[q][1]
        return [q] if parts == 1 else ["%s:%d" % (q, p) for p in range(parts)]

    def add_supervisor(self, q):
        s = Supervisor(self, q, len(self.sups[q]))
        self.sups[q].append(s)
        s.start()
        return s

    def publish(self, count, faults=(), fault_rate=0.0, keys=12):
        """count messages per queue; a fraction fault_rate carries a fault drawn from faults.
        A "twice" message is followed by a "retry" one: the shifted verdict then loses it."""
        for q in self.queues:
            streams = self.streams(q)
            cmds = []
            i = 0
            while i < count:
                n = str(self.next_n)
                self.next_n += 1
                key = "k%d" % self.rng.randrange(keys)
                stream = streams[int(key[1:]) % len(streams)]
                fields = ["n", n, "key", key]
                fault = self.rng.choice(faults) if faults and self.rng.random() < fault_rate else ""
                if fault:
                    fields += ["fault", fault]
                cmds.append(["XADD", stream, "*"] + fields)
                self.published[q][n] = (key, stream)
                i += 1
                if fault == "twice":
                    n2 = str(self.next_n)
                    self.next_n += 1
                    cmds.append(["XADD", stream, "*", "n", n2, "key", key, "fault", "retry"])
                    self.published[q][n2] = (key, stream)
                    i += 1
            H.wait_until(lambda: self._pipe(cmds), timeout=30, interval=0.2, what="Redis to take the messages")

    def _pipe(self, cmds):
        try:
            self.redis.pipe(cmds)
            return True
        except (RuntimeError, OSError):
            return False   # Redis down or stopped by the schedule: publish again once it is back

    # ---- what happened

    def ok_lines(self):
        """[(n, key, delivery, pid, ms, stream)] in the order the handler wrote them."""
        out = []
        try:
            with open(self.oklog) as f:
                for line in f:
                    p = line.split()
                    if len(p) == 7 and p[0] == "ok":
                        out.append((p[1], p[2], int(p[3]), int(p[4]), int(p[5]), p[6]))
        except FileNotFoundError:
            pass
        return out

    def processed_count(self):
        return len({x[0] for x in self.ok_lines()})

    def _stream_ns(self, key):
        try:
            rows = self.redis.json("XRANGE", key, "-", "+") or []
        except (RuntimeError, OSError, ValueError):
            return set()
        out = set()
        for e in rows:
            f = dict(zip(e[1][::2], e[1][1::2]))
            if "n" in f:
                out.add(f["n"])
        return out

    def halted_streams(self, q):
        out = []
        for s in self.streams(q):
            try:
                if self.redis.cli("EXISTS", s + ":halt") == "1":
                    out.append(s)
            except (RuntimeError, OSError):
                pass
        return out

    def audit(self):
        """Counts per the suite's table, summed over the queues."""
        lines = self.ok_lines()
        done = {x[0] for x in lines}
        a = {"published": 0, "processed": 0, "dead_lettered": 0, "halted": 0, "lost": 0,
             "duplicates": 0, "order": 0, "missing": []}
        for q in self.queues:
            pub = {n: v for n, v in self.published[q].items() if n not in self.excluded[q]}
            dlq = self._stream_ns(q + ":dlq")
            halted_streams = set(self.halted_streams(q))
            halted = {n for n, (k, s) in pub.items() if s in halted_streams and n not in done}
            mine = [x for x in lines if x[0] in pub]
            a["published"] += len(pub)
            a["processed"] += len({x[0] for x in mine})
            a["dead_lettered"] += len(set(pub) & dlq - done)
            a["halted"] += len(halted)
            missing = sorted(set(pub) - done - dlq - halted, key=int)
            a["lost"] += len(missing)
            a["missing"] += ["%s:%s" % (q, n) for n in missing[:10]]
            a["duplicates"] += len(mine) - len({x[0] for x in mine})
            if QUEUES[q][0].endswith("order_critical = true;"):
                top = {}
                for n, key, *_ in mine:
                    if int(n) < top.get(key, -1):
                        a["order"] += 1
                    top[key] = max(top.get(key, -1), int(n))
                # A message never handled while a later one of its key was: skipped.
                a["order"] += sum(1 for n in missing if int(n) < top.get(pub[n][0], -1))
        return a

    def settled(self):
        a = self.audit()
        return a["lost"] == 0 and a

    def wait_settled(self, timeout):
        try:
            H.wait_until(self.settled, timeout=timeout, interval=0.5, what="every message accounted for")
        except AssertionError:
            pass   # the audit then shows what is lost

    def lease_holders(self, q):
        """{partition stream: consumer name} from the lease keys."""
        out = {}
        for s in self.streams(q):
            try:
                v = self.redis.cli("GET", s + ":lease")
            except (RuntimeError, OSError):
                continue
            if v:
                out[s] = v.split("#")[0]
        return out

    def gaps(self):
        """Per recorded kill: ms until each of the dead holder's partitions was processed again."""
        lines = self.ok_lines()
        worst = 0
        for t, streams in self.kills:
            for s in streams:
                after = [x[4] for x in lines if x[5] == s and x[4] > t]
                if after:
                    worst = max(worst, min(after) - t)
        return worst

    def worker_exits(self):
        return sum(s.unexpected_exit() for q in self.queues for s in self.sups[q])

    def stop(self):
        rcs = []
        for q in self.queues:
            for s in self.sups[q]:
                if s.proc is not None and s.proc.poll() is None:
                    rcs.append(H.stop(s.proc, signal.SIGTERM, timeout=15))
        return rcs

    def full_logs(self):
        """The supervisors' logs, without the lines of the stderr-flooding handler."""
        text = ""
        for q in self.queues:
            for s in self.sups[q]:
                try:
                    with open(s.log, errors="replace") as f:
                        text += "".join(l for l in f if not l.startswith("xxxxxxxx"))
                except OSError:
                    pass
        return text

    def logs(self):
        return self.full_logs()[-4000:]
