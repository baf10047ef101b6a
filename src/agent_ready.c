/*
 * agent_ready.c — the agent's readiness, /readyz of scaleno(8), ENDPOINTS:
 * Redis reachable and a fresh, usable sample of every queue.
 */
#include <stdio.h>

#include "agent.h"

/* A sample older than this many of its queue's intervals (plus the slack) is stale. */
#define READY_STALE_INTERVALS 3
#define READY_STALE_SLACK_S 2.0

void
agent_readiness(const struct agent *a, double now_s, char *reason, size_t len)
{
	reason[0] = '\0';
	if (a->redis_down_since_ms != 0) {
		snprintf(reason, len, "redis %s unreachable", a->cfg->redis.address);
		return;
	}
	for (size_t i = 0; i < a->nqs; i++) {
		const struct agent_queue *s = &a->qs[i];
		double stale = READY_STALE_INTERVALS * (double)s->q->scale.interval_ms / 1000.0 +
		    READY_STALE_SLACK_S;

		if (!s->have_raw)
			snprintf(reason, len, "queue %s: no sample yet", s->name);
		else if (!s->raw.ok)
			snprintf(reason, len, "queue %s: the last sample failed", s->name);
		else if (now_s - s->raw.t > stale)
			snprintf(reason, len, "queue %s: the last sample is %.0fs old", s->name,
			    now_s - s->raw.t);
		else
			continue;
		return;
	}
}
