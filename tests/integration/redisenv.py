"""Redis topologies for the integration tests of scaleno.conf(5) "redis":
a master with a replica watched by three Sentinels, or a six-node cluster.
Every server runs on a loopback port in a temp folder and is registered with
the harness, so it is killed at exit even when a test fails."""
import json
import os
import socket
import subprocess

import harness as H


class Node(H.Redis):
    """A harness.Redis that may need a password."""
    password = None

    def cli(self, *args, stdin=None):
        if not self.password:
            return super().cli(*args, stdin=stdin)
        r = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "--raw", "--no-auth-warning",
                            "-a", self.password] + [str(a) for a in args],
                           input=stdin, capture_output=True, timeout=30, text=True)
        if r.returncode != 0:
            raise RuntimeError("redis-cli %s: %s" % (args, r.stderr))
        return r.stdout.strip("\n")


def server(dir, port, *extra, password=None):
    """A redis-server (or, with "--sentinel", a Sentinel) on port; returns a harness.Redis-like handle."""
    r = Node.__new__(Node)
    r.dir, r.port, r.appendonly, r.password = dir, port, False, password
    os.makedirs(dir, exist_ok=True)
    conf = os.path.join(dir, "redis.conf")
    with open(conf, "w") as f:
        f.write("port %d\nbind 127.0.0.1\ndir %s\nsave \"\"\ndaemonize no\nloglevel warning\n" % (port, dir))
        for line in extra:
            f.write(line + "\n")
    argv = ["redis-server", conf] + (["--sentinel"] if "sentinel monitor" in " ".join(extra) else [])
    r.proc = H.spawn(argv, log_path=os.path.join(dir, "redis.log"))
    H.wait_until(r.ping, timeout=10, what="redis on port %d to answer PING" % port)
    return r


class Sentinel:
    """A master, one replica and three Sentinels watching them as master_name."""

    def __init__(self, name="queues", password=None):
        self.name = name
        base = H.tmpdir("scaleno-sentinel-")
        auth = ["requirepass %s" % password] if password else []
        self.master = server(os.path.join(base, "m"), H.free_port(), "appendonly yes", "appendfsync always")
        self.replica = server(os.path.join(base, "r"), H.free_port(), "appendonly yes", "appendfsync always",
                              "replicaof 127.0.0.1 %d" % self.master.port)
        H.wait_until(lambda: "master_link_status:up" in self.replica.cli("INFO", "replication"),
                     timeout=20, what="the replica to sync")
        self.sentinels = []
        for i in range(3):
            self.sentinels.append(server(
                os.path.join(base, "s%d" % i), H.free_port(),
                "sentinel monitor %s 127.0.0.1 %d 2" % (name, self.master.port),
                "sentinel down-after-milliseconds %s 2000" % name,
                "sentinel failover-timeout %s 6000" % name, *auth, password=password))
        H.wait_until(lambda: all(self.knows_replica(s) for s in self.sentinels), timeout=30,
                     what="every Sentinel to know the replica")

    def knows_replica(self, s):
        try:
            return "slave" in s.cli("SENTINEL", "REPLICAS", self.name)
        except RuntimeError:
            return False

    @property
    def addresses(self):
        return ["127.0.0.1:%d" % s.port for s in self.sentinels]

    def master_port(self, s=None):
        out = (s or self.sentinels[0]).cli("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name).split("\n")
        return int(out[1])

    def role(self, r):
        return r.cli("ROLE").split("\n")[0]

    def failover(self):
        """SENTINEL FAILOVER; returns the server that was master. Waits for the promotion."""
        old = self.master

        def asked():
            out = self.sentinels[0].cli("SENTINEL", "FAILOVER", self.name)
            return out == "OK"
        H.wait_until(asked, timeout=20, interval=0.2, what="a Sentinel to accept FAILOVER")
        H.wait_until(lambda: self.master_port() == self.replica.port and self.role(self.replica) == "master",
                     timeout=30, what="the replica to be promoted")
        self.master, self.replica = self.replica, old
        return old

    def conf(self, extra=""):
        return 'redis: { sentinels = [ %s ]; master_name = "%s";%s };' % (
            ", ".join('"%s"' % a for a in self.addresses), self.name, extra)


def cluster_port():
    """A free port below 55535 whose bus port (+10000) is free too."""
    for _ in range(200):
        p = H.free_port()
        if p < 55535:
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("127.0.0.1", p + 10000))
                return p
            except OSError:
                pass
    raise AssertionError("no free port pair for a cluster node")


class Cluster:
    """Six nodes, three masters with a replica each (redis-cli --cluster create)."""

    def __init__(self):
        base = H.tmpdir("scaleno-cluster-")
        self.nodes = []
        for i in range(6):
            self.nodes.append(server(os.path.join(base, "n%d" % i), cluster_port(), "cluster-enabled yes",
                                     "cluster-config-file nodes.conf", "cluster-node-timeout 3000",
                                     "appendonly yes"))
        r = subprocess.run(["redis-cli", "--cluster", "create"] + [n.address for n in self.nodes] +
                           ["--cluster-replicas", "1", "--cluster-yes"], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        H.wait_until(lambda: all("cluster_state:ok" in n.cli("CLUSTER", "INFO") for n in self.nodes),
                     timeout=30, what="the cluster to be ok")
        H.wait_until(lambda: all(n.cli("CLUSTER", "NODES").count("connected") == 6 for n in self.nodes),
                     timeout=30, what="every node to know every other")

    @property
    def seeds(self):
        return [n.address for n in self.nodes[:2]]

    def conf(self):
        return 'redis: { cluster = [ %s ]; };' % ", ".join('"%s"' % a for a in self.seeds)

    def node_info(self):
        """{address: (id, role, master id)} from CLUSTER NODES."""
        out = {}
        for line in self.nodes[0].cli("CLUSTER", "NODES").splitlines():
            f = line.split()
            addr = f[1].split("@")[0]
            out[addr] = (f[0], "master" if "master" in f[2] else "replica", f[3])
        return out

    def by_address(self, addr):
        return [n for n in self.nodes if n.address == addr][0]

    def owner(self, key):
        """The master node serving key's slot."""
        slot = int(self.nodes[0].cli("CLUSTER", "KEYSLOT", key))
        for r in json.loads(subprocess.run(["redis-cli", "-p", str(self.nodes[0].port), "--json",
                                            "CLUSTER", "SLOTS"], capture_output=True, text=True,
                                           timeout=10).stdout):
            if r[0] <= slot <= r[1]:
                return self.by_address("%s:%d" % (r[2][0], r[2][1])), slot
        raise AssertionError("no owner for slot %d" % slot)

    def replica_of(self, master):
        """The replica of master, once gossip has told node 0 (right after --cluster create
        a replica can still be listed as a master for a moment)."""
        found = []

        def look():
            mid = self.node_info()[master.address][0]
            found[:] = [a for a, (nid, role, m) in self.node_info().items()
                        if role == "replica" and m == mid]
            return bool(found)
        H.wait_until(look, timeout=30, what="a replica of %s" % master.address)
        return self.by_address(found[0])

    def ccli(self, *args):
        """A command routed by redis-cli -c (follows MOVED and ASK)."""
        r = subprocess.run(["redis-cli", "-c", "-p", str(self.nodes[0].port), "--raw"] +
                           [str(a) for a in args], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip("\n")

    def migrate_slot(self, slot, src, dst, step=None):
        """Move slot from src to dst key by key (SETSLOT IMPORTING/MIGRATING + MIGRATE);
        step() runs between keys, while the slot is half moved."""
        ids = self.node_info()
        sid, did = ids[src.address][0], ids[dst.address][0]
        dst.cli("CLUSTER", "SETSLOT", slot, "IMPORTING", sid)
        src.cli("CLUSTER", "SETSLOT", slot, "MIGRATING", did)
        for _ in range(1000):
            keys = src.cli("CLUSTER", "GETKEYSINSLOT", slot, 1).split()
            if not keys:
                break
            src.cli("MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, "KEYS", *keys)
            if step:
                step()
        for n in self.nodes:
            if ids[n.address][1] == "master":
                n.cli("CLUSTER", "SETSLOT", slot, "NODE", did)
