#!/usr/bin/env python3
"""scaleno publish and the sticky key -> partition map (scaleno(8), publish), against a real redis-server.

Every message goes through the real binary and the real Lua script; the
streams, the map and the groups are read back with redis-cli.
"""
import hashlib
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

suite = H.Suite()

# The script's placement of a new key: the first 32 bits of SHA1(key) modulo the count.
def hash_part(key, n):
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) % n


# Every field and value of one entry, hex-encoded by Redis itself, so a byte
# that redis-cli would print differently cannot hide a difference.
HEX_ENTRY = """
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #e == 0 then return {} end
local out = {}
for i, v in ipairs(e[1][2]) do
  out[i] = (string.gsub(v, '.', function(c) return string.format('%02x', string.byte(c)) end))
end
return out
"""


class Env:
    def __init__(self, partitions=5, stream="pay"):
        self.dir = H.tmpdir()
        self.redis = H.Redis()
        self.stream = stream
        self.conf = H.write(os.path.join(self.dir, "scaleno.conf"),
                            'redis: { address = "%s"; command_timeout = "5s"; };\n' % self.redis.address)
        self.set_partitions(partitions)

    def set_partitions(self, n):
        H.write(os.path.join(self.dir, "policies.d", "pay.conf"), """queue: {
  name = "pay"; stream = "%s"; group = "g"; partitions = %d;
  loss_critical = true; order_critical = true;
  scale: { target = "none"; max = 1; };
  worker: { command = [ "/bin/true" ]; listen = ""; };
};
""" % (self.stream, n))
        self.partitions = n

    def run(self, *args, input=None):
        return H.run_scaleno(["publish", "-c", self.conf] + list(args), input=input)

    def publish(self, *args, key=None, ttl=None):
        """Publish; returns (partition, id) after checking the exit code and output."""
        opts = ["-q", "pay"] + (["-k", key] if key is not None else []) + (["--ttl", ttl] if ttl else [])
        r = self.run(*(opts + list(args)))
        assert r.returncode == 0, (r.returncode, r.stderr)
        assert r.stderr == "", r.stderr
        words = r.stdout.split()
        assert r.stdout.endswith("\n") and len(words) == 2, r.stdout
        part = int(words[0])
        assert 0 <= part < self.partitions, (part, self.partitions)
        return part, words[1]

    def key_of(self, part):
        return self.stream if self.partitions == 1 else "%s:%d" % (self.stream, part)

    def entries(self, key):
        return self.redis.json("XRANGE", key, "-", "+") or []

    def groups(self, key):
        """XINFO GROUPS as a list of dicts (RESP2 gives flat name/value lists)."""
        return [dict(zip(g[::2], g[1::2])) for g in self.redis.json("XINFO", "GROUPS", key)]


@suite.test
def test_same_key_same_partition_in_order():
    e = Env(partitions=5)
    seen = {}
    for i in range(8):
        for k in range(12):
            key = "acct-%d" % k
            part, mid = e.publish("key", key, "seq", str(i), key=key)
            seen.setdefault(key, []).append((part, mid))
    used = set()
    for key, msgs in seen.items():
        parts = {p for p, _ in msgs}
        assert len(parts) == 1, (key, msgs)
        part = parts.pop()
        used.add(part)
        # The ids printed are entries of that partition's stream, in publish order.
        ids = [x[0] for x in e.entries(e.key_of(part)) if x[1][1] == key]
        assert ids == [m for _, m in msgs], (key, ids, msgs)
        assert [x[1][3] for x in e.entries(e.key_of(part)) if x[1][1] == key] == [str(i) for i in range(8)]
    assert len(used) > 1, used
    # Exactly one map entry per key, holding its partition, with an expiry.
    for key, msgs in seen.items():
        assert e.redis.cli("GET", "pay:key:" + key) == str(msgs[0][0])
        ttl = int(e.redis.cli("PTTL", "pay:key:" + key))
        assert 0 < ttl <= 3600 * 1000, ttl
    assert sum(len(e.entries(e.key_of(p))) for p in range(5)) == 8 * 12


@suite.test
def test_growing_5_to_7_keeps_hot_keys():
    e = Env(partitions=5)
    old = {"order-%d" % k: e.publish("key", "order-%d" % k, key="order-%d" % k)[0] for k in range(40)}
    for key, part in old.items():
        assert part == hash_part(key, 5), (key, part)
    e.set_partitions(7)
    # A plain modulo would move most of these keys; the map keeps every one.
    moved_by_modulo = [k for k, p in old.items() if hash_part(k, 7) != p]
    assert len(moved_by_modulo) >= 10, moved_by_modulo
    for key, part in old.items():
        assert e.publish("key", key, key=key)[0] == part, key
    new = {"fresh-%d" % k: e.publish("key", "fresh-%d" % k, key="fresh-%d" % k)[0] for k in range(70)}
    assert set(new.values()) == set(range(7)), sorted(set(new.values()))
    for key, part in new.items():
        assert part == hash_part(key, 7), (key, part)
    # No key ever has messages on two partitions, and the new partitions are in use.
    where = {}
    for p in range(7):
        for _, f in e.entries("pay:%d" % p):
            where.setdefault(f[1], set()).add(p)
    assert len(where) == 110 and all(len(ps) == 1 for ps in where.values()), where
    assert all(int(e.redis.cli("XLEN", "pay:%d" % p)) > 0 for p in (5, 6))


@suite.test
def test_key_moves_only_after_its_ttl():
    e = Env(partitions=5)
    key = next("k%d" % i for i in range(1000) if hash_part("k%d" % i, 5) != hash_part("k%d" % i, 7))
    # TTLs of seconds, so that a slow run (valgrind) cannot let the mapping lapse between steps.
    first, _ = e.publish("n", "1", key=key, ttl="2s")
    assert first == hash_part(key, 5)
    ttl = int(e.redis.cli("PTTL", "pay:key:" + key))
    assert 0 < ttl <= 2000, ttl
    e.set_partitions(7)
    # Within the TTL the key stays, and each message renews the TTL.
    assert e.publish("n", "2", key=key, ttl="4s")[0] == first
    ttl = int(e.redis.cli("PTTL", "pay:key:" + key))
    assert 2000 < ttl <= 4000, ttl
    H.wait_until(lambda: e.redis.cli("EXISTS", "pay:key:" + key) == "0", timeout=15,
                 what="the key's mapping to expire")
    moved, _ = e.publish("n", "3", key=key, ttl="2s")
    assert moved == hash_part(key, 7) and moved != first, (moved, first)


@suite.test
def test_keyless_round_robin_and_group_created():
    e = Env(partitions=7)
    parts = [e.publish("n", str(i))[0] for i in range(21)]
    assert parts == [i % 7 for i in range(21)], parts
    for p in range(7):
        assert int(e.redis.cli("XLEN", "pay:%d" % p)) == 3
        groups = e.groups("pay:%d" % p)
        assert len(groups) == 1 and groups[0]["name"] == "g", groups
        assert groups[0]["last-delivered-id"] == "0-0", groups
        # Created at 0: a reader of the group gets every message, the first one included.
        got = e.redis.json("XREADGROUP", "GROUP", "g", "c", "COUNT", "10", "STREAMS", "pay:%d" % p, ">")
        assert len(got[0][1]) == 3, got
    # Keyless messages leave nothing in the map.
    assert e.redis.cli("EXISTS", "pay:key:") == "0"


@suite.test
def test_single_partition_plain_stream():
    e = Env(partitions=1, stream="solo")
    a = e.publish("n", "1", key="acct-1")
    b = e.publish("n", "2")
    assert a[0] == 0 and b[0] == 0
    assert [x[0] for x in e.entries("solo")] == [a[1], b[1]]
    assert e.redis.cli("EXISTS", "solo:key:acct-1") == "0"
    assert e.redis.cli("EXISTS", "solo:0") == "0"
    assert [g["name"] for g in e.groups("solo")] == ["g"]


@suite.test
def test_fields_read_back_exactly():
    e = Env(partitions=3)
    values = ["with spaces", "", "-dash", "ünïcødé ✓", "tab\tnew\nline", "x" * 100000]
    args = []
    for i, v in enumerate(values):
        args += ["f%d" % i, v]
    part, mid = e.publish(*args, key="k")
    got = e.redis.json("EVAL", HEX_ENTRY, "1", "pay:%d" % part, mid)
    want = []
    for i, v in enumerate(values):
        want += [("f%d" % i).encode().hex(), v.encode().hex()]
    assert got == want
    # A value of - comes from stdin, binary-safe (NUL and 0xff bytes).
    blob = bytes(range(256)) * 40
    r = subprocess.run([H.SCALENO, "publish", "-c", e.conf, "-q", "pay", "-k", "k", "a", "1", "blob", "-"],
                       input=blob, capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    p2, mid2 = r.stdout.decode().split()
    assert int(p2) == part
    got = e.redis.json("EVAL", HEX_ENTRY, "1", "pay:%s" % p2, mid2)
    assert got == [b"a".hex(), b"1".hex(), b"blob".hex(), blob.hex()]
    r = e.run("-q", "pay", "a", "-", "b", "-", input="x")
    assert r.returncode == 1 and "only one VALUE may be -" in r.stderr, r.stderr


@suite.test
def test_c_api_producer_shares_the_map():
    """contrib/examples/producer, linked against libscaleno.a, routes keys through the same
    map as `scaleno publish`: a key stays where the other producer put it."""
    e = Env(partitions=7)
    producer = os.path.join(H.TOP, os.environ.get("BUILD", "build"), "examples", "producer")
    assert os.access(producer, os.X_OK), producer
    placed = {k: e.publish("n", "cli", key=k)[0] for k in ("alice", "bob", "carol", "dave")}
    for k, part in placed.items():
        r = subprocess.run([producer, e.redis.address, e.stream, "g", "7", k, "n", "c-api"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        got, entry = r.stdout.split()
        assert int(got) == part, (k, got, part)
        assert e.redis.cli("XRANGE", "%s:%d" % (e.stream, part), entry, entry).split("\n")[-1] == "c-api"
    r = subprocess.run([producer, "127.0.0.1:1", e.stream, "g", "7", "k", "n", "v"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "producer:" in r.stderr, (r.returncode, r.stderr)


@suite.test
def test_exit_codes_and_errors():
    e = Env(partitions=2)
    cases = [
        (["-q", "nope", "f", "v"], 'no queue named "nope"'),
        (["-q", "pay"], "no fields"),
        (["-q", "pay", "f", "v", "g"], "come in pairs"),
        (["f", "v"], "-q QUEUE is required"),
        (["-q", "pay", "--ttl", "5", "f", "v"], "--ttl 5"),
    ]
    for args, msg in cases:
        r = e.run(*args)
        assert r.returncode == 1 and msg in r.stderr and r.stdout == "", (args, r.returncode, r.stderr)
    # A Redis error (the partition key holds a string) is a runtime failure, exit 2.
    e.redis.cli("SET", "pay:0", "not a stream")
    r = e.run("-q", "pay", "f", "v")
    assert r.returncode == 2 and "WRONGTYPE" in r.stderr and r.stdout == "", (r.returncode, r.stderr)
    assert e.publish("f", "v")[0] == 1
    # Redis down: exit 2, the address in the message, nothing on stdout.
    e.redis.kill()
    r = e.run("-q", "pay", "f", "v")
    assert r.returncode == 2 and e.redis.address in r.stderr and r.stdout == "", (r.returncode, r.stderr)


@suite.test
def test_stdin_json_lines_pipelined_with_the_sticky_map():
    import json
    e = Env(partitions=5)
    # A key already mapped by a single publish keeps its partition through --stdin.
    p_a, _ = e.publish("n", "single", key="acct-a")
    lines, keys = [], []
    for i in range(3000):
        keys.append("abc"[i % 3])
        lines.append(json.dumps({"key": "acct-" + keys[-1], "fields": {"n": str(i), "v": "x y"}}))
    lines.insert(10, "")                                  # blank lines are skipped
    lines.insert(20, json.dumps({"fields": {"n": "keyless"}}))
    keys.insert(19, None)
    r = e.run("-q", "pay", "--stdin", input="\n".join(lines) + "\n")
    assert r.returncode == 0, (r.returncode, r.stderr)
    out = [l.split() for l in r.stdout.splitlines()]
    assert len(out) == 3001, len(out)
    parts = {}
    for k, (part, _id) in zip(keys, out):
        if k is not None:
            parts.setdefault(k, set()).add(int(part))
    assert parts["a"] == {p_a}, parts
    assert all(len(v) == 1 for v in parts.values()), parts
    # Per key, the stream holds the messages in input order.
    for k, pset in parts.items():
        ns = [int(dict(zip(f[::2], f[1::2]))["n"]) for _, f in e.entries(e.key_of(min(pset)))
              if dict(zip(f[::2], f[1::2])).get("n", "").isdigit()]
        assert ns == sorted(ns), k
    total = sum(len(e.entries(e.key_of(p))) for p in range(5))
    assert total == 3002, total
    # The map is the one a single publish uses.
    assert int(e.redis.cli("GET", "pay:key:acct-b")) == min(parts["b"])


@suite.test
def test_stdin_bad_lines_are_refused_and_the_rest_published():
    e = Env(partitions=2)
    r = e.run("-q", "pay", "--stdin", input='{"key":"k","fields":{"a":"1"}}\nnot json\n'
              '{"key":5,"fields":{"a":"1"}}\n{"fields":{"a":2}}\n{"fields":{}}\n'
              '{"key":null,"fields":{"a":"3"}}\n')
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(r.stdout.splitlines()) == 2, r.stdout
    for n, msg in ((2, "not a JSON object"), (3, '"key" must be a string'),
                   (4, 'field "a": the value must be a string'), (5, '"fields" is empty')):
        assert "stdin line %d: %s" % (n, msg) in r.stderr, r.stderr
    assert "2 message(s) published, 4 line(s) refused" in r.stderr, r.stderr
    # A message Redis refuses (its partition stream holds a string) is refused alone.
    e.redis.cli("SET", "pay:1", "not a stream")
    r = e.run("-q", "pay", "--stdin", input='{"key":"k","fields":{"a":"1"}}\n' * 3 +
              '{"fields":{"a":"x"}}\n' * 4)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.count("WRONGTYPE") == 2 + (hash_part("k", 2) == 1) * 3, r.stderr
    assert all(l.startswith("0 ") for l in r.stdout.splitlines()), r.stdout
    e.redis.cli("DEL", "pay:1")
    for args in (["-q", "pay", "--stdin", "-k", "x"], ["-q", "pay", "--stdin", "f", "v"]):
        r = e.run(*args, input="")
        assert r.returncode == 1 and "--stdin takes" in r.stderr, (args, r.stderr)
    # Redis down: exit 2, the lines that may not have been added named.
    e.redis.kill()
    r = e.run("-q", "pay", "--stdin", input='{"fields":{"a":"1"}}\n')
    assert r.returncode == 2 and "lines 1 to 1 may or may not have been added" in r.stderr, r.stderr


@suite.test
def test_stdin_survives_a_script_flush_between_batches():
    import json
    e = Env(partitions=3)
    p = subprocess.Popen([H.SCALENO, "publish", "-c", e.conf, "-q", "pay", "--stdin"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        first = "".join(json.dumps({"key": "k%d" % (i % 7), "fields": {"n": str(i)}}) + "\n"
                        for i in range(1024))
        p.stdin.write(first)
        p.stdin.flush()
        got = [p.stdout.readline() for _ in range(1024)]    # the first batch is answered
        assert all(len(l.split()) == 2 for l in got), got[:3]
        e.redis.cli("SCRIPT", "FLUSH")
        p.stdin.write("".join(json.dumps({"key": "k%d" % (i % 7), "fields": {"n": str(i)}}) + "\n"
                              for i in range(1024, 1500)))
        p.stdin.close()
        rest = p.stdout.read()
        assert p.wait(timeout=20) == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert len(rest.splitlines()) == 476, len(rest.splitlines())
    assert sum(len(e.entries(e.key_of(i))) for i in range(3)) == 1500


if __name__ == "__main__":
    suite.main()
