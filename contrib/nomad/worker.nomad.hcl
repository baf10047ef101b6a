# Nomad job for the workers of the "payments" queue (etc/policies.d/dead-letter.conf).
# `scaleno agent` changes this group's count through the scale API; `scaleno worker`
# is the task's main process and supervises worker.processes consumers itself.
#
#   nomad job run contrib/nomad/worker.nomad.hcl
#
# Match these to the queue's policy:
#   job / group          = scale.job / scale.group
#   scaling min / max    = scale.min / scale.max (Nomad refuses counts outside them; the
#                          agent reads them and asks only within both, scaleno(8) "Bounds";
#                          leaving min out makes it the group's count)
#   kill_timeout         = worker.kill_timeout, above worker.drain_timeout
#   network port label   = worker.listen = "nomad:metrics" (scaleno.conf(5))
# A kill_timeout above 30s also needs the client's max_kill_timeout raised.

job "payments-worker" {
  type = "service"

  group "worker" {
    count = 2

    # Bounds Nomad enforces on every scale request; the agent asks only within these and the
    # policy's, whichever is narrower.
    scaling {
      enabled = true
      min     = 2
      max     = 60
    }

    # Scale changes only the count. A job update restarts every worker at once
    # (each drains first); there is no deployment to wait for. With Nomad's default update
    # block every scale starts a deployment, and further scales are refused until it ends.
    update {
      max_parallel = 0
    }

    # A dynamic port per allocation: several workers on one host each serve their own
    # /metrics, /healthz and /readyz. The policy says worker.listen = "nomad:metrics",
    # and the worker binds to $NOMAD_ADDR_metrics, which Nomad sets from this block.
    network {
      port "metrics" {}
    }

    service {
      name = "payments-worker"
      port = "metrics"
      tags = ["metrics"]

      # Readiness: the consumers run, none crash-loops, Redis answers (503 with a
      # one-line reason otherwise). Not ready is not restarted: Redis may be down.
      check {
        name     = "ready"
        type     = "http"
        path     = "/readyz"
        interval = "10s"
        timeout  = "2s"
      }

      # Liveness: the supervisor's loop answers. Restart the task when it stops.
      check {
        name     = "alive"
        type     = "http"
        path     = "/healthz"
        interval = "10s"
        timeout  = "2s"
        check_restart {
          limit = 3
          grace = "30s"
        }
      }
    }

    # The supervisor restarts its consumers itself; Nomad only restarts a dead supervisor.
    restart {
      attempts = 10
      interval = "5m"
      delay    = "5s"
      mode     = "delay"
    }

    task "supervisor" {
      driver = "raw_exec"

      config {
        command = "/usr/local/bin/scaleno"
        args    = ["worker", "-q", "payments", "-c", "/usr/local/etc/scaleno/scaleno.conf"]
      }

      # raw_exec sends kill_signal to the supervisor only; it passes it on to the
      # consumers, waits up to worker.drain_timeout (4s), and exits 0 before the
      # SIGKILL that follows kill_timeout.
      kill_signal  = "SIGINT"
      kill_timeout = "5s"

      # Consumer names come from NOMAD_JOB_ID, NOMAD_GROUP_NAME and NOMAD_ALLOC_INDEX,
      # which Nomad sets; nothing to configure.

      resources {
        cpu    = 500
        memory = 256
      }
    }
  }
}
