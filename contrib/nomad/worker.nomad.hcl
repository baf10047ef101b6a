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

      # worker.listen = "127.0.0.1:9465" in the policy serves /metrics per host. With
      # several allocations on one host only the first binds it (the others log a
      # warning and run without it); set worker.listen = "" or one port per host.

      resources {
        cpu    = 500
        memory = 256
      }
    }
  }
}
