# Nomad job for `scaleno agent` (see scaleno(8)). Two instances for availability: both
# sample and serve /metrics, only the holder of the Redis lease (agent.lease_key) scales.
#
#   nomad job run contrib/nomad/agent.nomad.hcl
#
# The token comes from a Nomad variable through a template (never in the job text). Its ACL
# policy is contrib/nomad/agent-acl.policy.hcl: "scale" plus read-job and list-jobs on the
# namespaces it scales (scaleno(8), "ACL policy"). 10,000 queues take about 200 MB.

job "scaleno-agent" {
  type = "service"

  group "agent" {
    count = 2

    # Never two on one node: the pair is for surviving a node.
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    network {
      port "metrics" { static = 9464 }
    }

    service {
      name = "scaleno-agent"
      port = "metrics"
      # Readiness: Redis reachable and a fresh sample of every queue.
      check {
        name     = "ready"
        type     = "http"
        path     = "/readyz"
        interval = "10s"
        timeout  = "2s"
      }

      # Liveness: the loop ticks. Restart the task when it has stalled.
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

    task "agent" {
      driver = "raw_exec"

      config {
        command = "/usr/local/bin/scaleno"
        args    = ["agent", "-c", "/usr/local/etc/scaleno/scaleno.conf"]
      }

      # SIGINT: finish the tick, give the lease up, exit 0.
      kill_signal  = "SIGINT"
      kill_timeout = "15s"

      template {
        data        = "NOMAD_TOKEN={{ with nomadVar \"nomad/jobs/scaleno-agent\" }}{{ .token }}{{ end }}"
        destination = "${NOMAD_SECRETS_DIR}/env"
        env         = true
      }

      resources {
        cpu    = 200
        memory = 128
      }
    }
  }
}
