# ACL policy for the token of `scaleno agent` (scaleno(8), "ACL policy"):
#
#   nomad acl policy apply -description "scaleno agent" scaleno-agent contrib/nomad/agent-acl.policy.hcl
#   nomad acl token create -name scaleno-agent -policy scaleno-agent
#
# "scale" gives read-job-scaling and scale-job (and read-job since Nomad 1.11.3).
# read-job:  the agent reads each job's scaling block (its min and max). Without it the agent
#            learns a bound from the first 400 that names it.
# list-jobs: one GET /v1/jobs per tick gives every job's counts. Without it the agent reads
#            the scale status of every group each tick (one request per group).
# `scaleno check --online` tells which of these the token has.

namespace "default" {
  policy       = "scale"
  capabilities = ["read-job", "list-jobs"]
}
