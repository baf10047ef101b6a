"""Redis topologies for the integration tests of scaleno.conf(5) "redis":
a master with a replica watched by three Sentinels, or a six-node cluster.
Every server runs on a loopback port in a temp folder and is registered with
the harness, so it is killed at exit even when a test fails."""
import os

import harness as H


def server(dir, port, *extra):
    """A redis-server (or, with "--sentinel", a Sentinel) on port; returns a harness.Redis-like handle."""
    r = H.Redis.__new__(H.Redis)
    r.dir, r.port, r.appendonly = dir, port, False
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
                "sentinel failover-timeout %s 6000" % name, *auth))
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
