"""scaleno agent's word that Nomad answers again (scaleno(8), "Nomad"): said once, when the
call that failed succeeds, never while the scale is still refused. Real redis-server, the Nomad
stand-in (its job_max_count fault refuses the scale while every read succeeds), the real agent."""
import time

import harness
from agentenv import AgentEnv, policy_conf

suite = harness.Suite()

SURGE = "for i=1,3000 do redis.call('XADD', KEYS[1], '*', 'n', i) end"
REFUSED = "total count was greater than configured job_max_count"
AGAIN = "nomad answers again"


@suite.test
def a_read_does_not_end_a_refused_scale():
    """The scale is refused (a configuration-class 500) while the status reads succeed: the agent
    retries after its backoff without claiming Nomad answers again; once the fault is gone the
    scale goes through and the recovery is logged once, after the last refusal."""
    jobs = [{"ID": "payments-worker", "TaskGroups": [{"Name": "worker", "Count": 2,
                                                      "Scaling": {"Min": 1, "Max": 100}}]}]
    env = AgentEnv(jobs=jobs, policy=policy_conf(min=1, max=20), standin_args=["--job-max-count", "3"])
    try:
        env.start_agent()
        env.redis.cli("EVAL", SURGE, 1, "payments")
        harness.wait_until(lambda: env.scale_posts(), timeout=15, what="a first scale call")
        t0 = time.monotonic()
        # The policy backoff (15 s) passes with status reads answered; the scale is refused again.
        harness.wait_until(lambda: len(env.scale_posts()) >= 2 and time.monotonic() - t0 > 10,
                           timeout=45, what="the refused scale sent again after its backoff")
        log = env.logtext()
        assert log.count(REFUSED) >= 2, log[-3000:]
        assert AGAIN not in log, log[-3000:]
        env.nomad.fault(job_max_count=0)
        harness.wait_until(lambda: AGAIN in env.logtext(), timeout=45, what="the recovery logged")
        log = env.logtext()
        assert log.count(AGAIN) == 1, log[-3000:]
        assert log.rindex(AGAIN) > log.rindex(REFUSED), log[-3000:]
        assert env.nomad.scale_status("payments-worker")["TaskGroups"]["worker"]["Desired"] > 3
    finally:
        env.close()


if __name__ == "__main__":
    suite.main()
