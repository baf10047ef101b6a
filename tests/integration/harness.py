"""Shared pieces of scaleno's integration tests (Python 3 standard library only).

Real parts, no mocks: a throwaway redis-server on a free loopback port in a
temporary folder, the Nomad stand-in from contrib/, and the real scaleno
binary. Every process a test starts is registered and killed at exit; every
wait is a bounded poll on a condition, never a fixed sleep.
"""
import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

TOP = os.environ.get("SCALENO_TOP") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCALENO = os.environ.get("SCALENO_BIN") or os.path.join(TOP, "build", "scaleno")
STANDIN = os.path.join(TOP, "contrib", "nomad-standin.py")

_procs = []
_tmpdirs = []


def _cleanup():
    for p in reversed(_procs):
        try:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    p.kill()
                p.wait(timeout=5)
        except Exception:
            pass
    if not os.environ.get("SCALENO_KEEP_TMP"):
        for d in _tmpdirs:
            shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))


def tmpdir(prefix="scaleno-it-"):
    d = tempfile.mkdtemp(prefix=prefix)
    _tmpdirs.append(d)
    return d


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(argv, log_path=None, env=None, new_group=True, **kw):
    """Start a process in its own process group, registered for cleanup."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT if log_path else subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL, env=e, start_new_session=new_group, **kw)
    p.log_path = log_path
    _procs.append(p)
    return p


def wait_until(cond, timeout=10.0, interval=0.05, what="condition"):
    """Poll cond() until it returns a truthy value; raise after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out after %.1fs waiting for %s (last value: %r)" % (timeout, what, last))


def log_time(line):
    """Seconds (epoch) of a scaleno log line's own timestamp, 2026-12-02T12:36:22.952Z ..."""
    stamp = line.split(" ", 1)[0]
    whole = time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
    return whole + float("0" + stamp[19:].rstrip("Z"))


def log_gap(text, first, then):
    """Seconds between the last log line containing `first` and the next one containing `then`,
    on the logging process's own clock: what the daemon did, not when a busy test noticed."""
    t0, gap = None, None
    for line in text.splitlines():
        if first in line:
            t0, gap = log_time(line), None
        elif t0 is not None and gap is None and then in line:
            gap = log_time(line) - t0
    if gap is None:
        raise AssertionError("log lacks %r then %r" % (first, then))
    return gap


def stop(p, sig=signal.SIGTERM, timeout=10.0):
    """Signal a process and wait for it; returns its exit code (SIGKILL after timeout)."""
    if p.poll() is None:
        try:
            p.send_signal(sig)
        except OSError:
            pass
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=5)
            raise AssertionError("process %d did not exit within %.1fs of signal %d" % (p.pid, timeout, sig))
    return p.returncode


class Redis:
    """A redis-server of our own on a free loopback port."""

    def __init__(self, appendonly=False, port=None, dir=None):
        self.dir = dir or tmpdir("scaleno-redis-")
        self.port = port or free_port()
        self.appendonly = appendonly
        self.proc = None
        self.start()

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                "--save", "", "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning"]
        if self.appendonly:
            argv += ["--appendonly", "yes", "--appendfsync", "always"]
        self.proc = spawn(argv, log_path=os.path.join(self.dir, "redis.log"))
        wait_until(lambda: self.ping(), timeout=10, what="redis-server to answer PING")

    def ping(self):
        try:
            return self.cli("PING") == "PONG"
        except Exception:
            return False

    def kill(self):
        stop(self.proc, signal.SIGKILL)

    def restart(self):
        if self.proc.poll() is None:
            self.kill()
        self.start()

    def cli(self, *args, stdin=None):
        """Run one command with redis-cli --raw; returns stdout stripped."""
        r = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "--raw"] + [str(a) for a in args],
                           input=stdin, capture_output=True, timeout=30, text=True)
        if r.returncode != 0:
            raise RuntimeError("redis-cli %s: %s" % (args, r.stderr))
        return r.stdout.strip("\n")

    def json(self, *args):
        """Run one command and parse the reply as JSON (redis-cli -2 --json)."""
        r = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "-2", "--json"] + [str(a) for a in args],
                           capture_output=True, timeout=30, text=True)
        if r.returncode != 0:
            raise RuntimeError("redis-cli %s: %s" % (args, r.stderr))
        return json.loads(r.stdout) if r.stdout.strip() else None

    def pipe(self, commands):
        """Send many commands (lists of args) in one redis-cli --pipe run."""
        buf = []
        for c in commands:
            c = [x if isinstance(x, bytes) else str(x).encode() for x in c]
            buf.append(b"*%d\r\n" % len(c))
            for a in c:
                buf.append(b"$%d\r\n%s\r\n" % (len(a), a))
        r = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "--pipe"],
                           input=b"".join(buf), capture_output=True, timeout=120)
        if r.returncode != 0 or b"errors: 0" not in r.stdout:
            raise RuntimeError("redis-cli --pipe failed: %r %r" % (r.stdout[-300:], r.stderr[-300:]))


def run_scaleno(args, timeout=30, input=None, env=None):
    """Run scaleno to completion; returns CompletedProcess with text output."""
    e = dict(os.environ)
    if env:
        e.update(env)
    return subprocess.run([SCALENO] + list(args), capture_output=True, text=True, timeout=timeout,
                          input=input, env=e)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


class Suite:
    """Minimal runner: register functions with @suite.test, call suite.main()."""

    def __init__(self):
        self.tests = []

    def test(self, fn):
        self.tests.append(fn)
        return fn

    def main(self):
        only = sys.argv[1:]
        passed = failed = 0
        for fn in self.tests:
            if only and fn.__name__ not in only:
                continue
            t0 = time.monotonic()
            try:
                fn()
                passed += 1
                print("ok   %-50s %.1fs" % (fn.__name__, time.monotonic() - t0), flush=True)
            except Exception:
                failed += 1
                print("FAIL %-50s %.1fs" % (fn.__name__, time.monotonic() - t0), flush=True)
                traceback.print_exc()
        print("%d passed, %d failed" % (passed, failed))
        sys.exit(1 if failed else 0)
