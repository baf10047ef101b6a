"""What an operator relies on, with the real binary, a real redis-server and the Nomad
stand-in: scale from zero (scaleno(8): a stream without its consumer group yet is backlog).
"""
import harness
from agentenv import AgentEnv, policy_conf

suite = harness.Suite()


@suite.test
def scale_from_zero_with_producers_that_only_xadd():
    env = AgentEnv(count=0, policy=policy_conf(min=0, max=5, bpw=10, max_age="1h"))
    try:
        # Producers that only XADD: no consumer group exists.
        env.redis.cli("DEL", "payments")
        env.redis.cli("XADD", "payments", "%d-0" % (int(env.redis.cli("TIME").split()[0]) * 1000 - 30000),
                      "n", "0")
        for i in range(24):
            env.redis.cli("XADD", "payments", "*", "n", str(i + 1))
        assert env.redis.cli("EXISTS", "payments").strip() == "1"
        env.start_agent()
        harness.wait_until(lambda: env.desired() >= 1, timeout=15,
                           what="the first worker for a queue without a group")
        assert "'group_missing': True" in str(env.status())
        assert env.metric("scaleno_queue_backlog", 'queue="payments"') == 25
        age = env.metric("scaleno_queue_oldest_age_seconds", 'queue="payments"')
        assert 29 <= age < 120, age
        assert "every entry of the stream counts as backlog" in env.logtext()
        assert env.desired() == 3, env.desired()   # 25 entries / 10 per worker
    finally:
        env.close()


if __name__ == "__main__":
    suite.main()
