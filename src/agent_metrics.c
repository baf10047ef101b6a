/*
 * agent_metrics.c — the agent's /metrics (scaleno(8), "Metrics") as two
 * tables: one row per sample of each queue, one per sample of the agent.
 * Rows of one family follow each other; the family's HELP and TYPE go
 * before its first row.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "agent.h"
#include "expo.h"
#include "util.h"

/* A row is shown only when what it reads is known. */
enum metric_need {
	NEED_NOTHING = 0,
	NEED_SAMPLE,		/* the queue has been sampled at least once */
	NEED_NOMAD,		/* ... and Nomad's counts are known */
};

/* How a value is stored at its offset. */
enum field_type { F_I64 = 0, F_U64, F_INT, F_DOUBLE, F_BOOL };

/* A value at an offset into the agent's state, or one an accessor computes. */
struct field {
	enum field_type type;
	size_t off;
	double (*read)(const void *base);	/* when set, used instead of type/off */
};

struct metric {
	const char *name;
	enum expo_type type;
	const char *help;
	enum metric_need need;			/* queue rows only */
	const char *label, *label_value;	/* a label besides queue, or NULL */
	struct field value;
};

#define QUEUE_FIELD(t, member)	{ t, offsetof(struct agent_queue, member), NULL }
#define AGENT_FIELD(t, member)	{ t, offsetof(struct agent, member), NULL }
/* A gauge of the queue's current signals (shown once it has been sampled). */
#define SAMPLE_GAUGE(name, t, member, help) \
	{ name, EXPO_GAUGE, help, NEED_SAMPLE, NULL, NULL, QUEUE_FIELD(t, ss.cur.member) }

static double
field_read(const void *base, const struct field *f)
{
	const char *p = (const char *)base + f->off;

	if (f->read != NULL)
		return f->read(base);
	switch (f->type) {
	case F_I64: return (double)*(const int64_t *)(const void *)p;
	case F_U64: return (double)*(const uint64_t *)(const void *)p;
	case F_INT: return *(const int *)(const void *)p;
	case F_DOUBLE: return *(const double *)(const void *)p;
	case F_BOOL: return *(const bool *)(const void *)p;
	}
	return 0;
}

static double
bound_min(const void *base)
{
	int lo, hi;

	agent_queue_bounds(base, &lo, &hi);
	return lo;
}

static double
bound_max(const void *base)
{
	int lo, hi;

	agent_queue_bounds(base, &lo, &hi);
	return hi;
}

/* The last decision's count; before the first decision, Nomad's desired count. */
static double
decision_count(const void *base)
{
	const struct agent_queue *s = base;

	return s->have_dec ? s->dec.count : s->desired;
}

static const struct metric queue_metrics[] = {
	SAMPLE_GAUGE("scaleno_queue_backlog", F_I64, backlog, "Undelivered plus pending entries."),
	SAMPLE_GAUGE("scaleno_queue_undelivered", F_I64, undelivered, "Entries not yet delivered to the group (lag)."),
	SAMPLE_GAUGE("scaleno_queue_pending", F_I64, pending, "Entries delivered but not acknowledged."),
	SAMPLE_GAUGE("scaleno_queue_oldest_age_seconds", F_DOUBLE, oldest_age_s, "Age of the oldest waiting entry, by Redis server time."),
	SAMPLE_GAUGE("scaleno_queue_arrival_rate", F_DOUBLE, arrival_rate, "Smoothed arrivals, messages per second."),
	SAMPLE_GAUGE("scaleno_queue_completion_rate", F_DOUBLE, completion_rate, "Smoothed completions, messages per second."),
	{ "scaleno_workers_desired", EXPO_GAUGE, "Nomad's desired count for the worker group.",
	  NEED_NOMAD, NULL, NULL, QUEUE_FIELD(F_INT, desired) },
	{ "scaleno_workers_running", EXPO_GAUGE, "Nomad's running allocations of the worker group.",
	  NEED_NOMAD, NULL, NULL, QUEUE_FIELD(F_INT, running) },
	{ "scaleno_workers_min", EXPO_GAUGE,
	  "Least count the agent asks for: the policy's min raised by the job's scaling block.",
	  NEED_NOMAD, NULL, NULL, { F_INT, 0, bound_min } },
	{ "scaleno_workers_max", EXPO_GAUGE,
	  "Most the agent asks for: the policy's max lowered by the job's scaling block.",
	  NEED_NOMAD, NULL, NULL, { F_INT, 0, bound_max } },
	{ "scaleno_workers_blocked", EXPO_GAUGE,
	  "1 while Nomad cannot place the group's allocations (scale-ups held).",
	  NEED_NOMAD, NULL, NULL, QUEUE_FIELD(F_BOOL, blocked) },
	SAMPLE_GAUGE("scaleno_queue_dlq_length", F_I64, dlq_length, "Entries in the dead-letter stream."),
	SAMPLE_GAUGE("scaleno_queue_retry_length", F_I64, retry_length, "Entries waiting in the delayed retry stages."),
	SAMPLE_GAUGE("scaleno_queue_halted_partitions", F_INT, halted, "Partitions halted by a failing message."),
	{ "scaleno_queue_sample_ok", EXPO_GAUGE,
	  "1 when the last Redis sample of the queue was usable.",
	  NEED_SAMPLE, NULL, NULL, QUEUE_FIELD(F_BOOL, raw.ok) },
	{ "scaleno_decision_workers", EXPO_GAUGE, "The count the last decision asked for.",
	  NEED_SAMPLE, NULL, NULL, { F_INT, 0, decision_count } },
	{ "scaleno_scale_actions_total", EXPO_COUNTER, "Scale calls Nomad accepted.",
	  NEED_NOTHING, "direction", "up", QUEUE_FIELD(F_U64, actions_up) },
	{ "scaleno_scale_actions_total", EXPO_COUNTER, "Scale calls Nomad accepted.",
	  NEED_NOTHING, "direction", "down", QUEUE_FIELD(F_U64, actions_down) },
	{ "scaleno_nomad_errors_total", EXPO_COUNTER, "Failed Nomad calls.",
	  NEED_NOTHING, NULL, NULL, QUEUE_FIELD(F_U64, nomad_errors) },
};

static const struct metric agent_metrics[] = {
	{ "scaleno_redis_errors_total", EXPO_COUNTER, "Failed Redis sampling round trips.",
	  NEED_NOTHING, NULL, NULL, AGENT_FIELD(F_U64, redis_errors) },
	{ "scaleno_agent_leader", EXPO_GAUGE, "1 when this agent holds the lease and acts.",
	  NEED_NOTHING, NULL, NULL, AGENT_FIELD(F_BOOL, leader) },
	{ "scaleno_nomad_requests_total", EXPO_COUNTER, "HTTP requests made to Nomad (retries included).",
	  NEED_NOTHING, NULL, NULL, AGENT_FIELD(F_U64, nomad_requests) },
	{ "scaleno_agent_ticks_total", EXPO_COUNTER, "Ticks that evaluated at least one queue.",
	  NEED_NOTHING, NULL, NULL, AGENT_FIELD(F_U64, ticks) },
	{ "scaleno_agent_tick_seconds", EXPO_GAUGE, "Wall time of the last tick.",
	  NEED_NOTHING, NULL, NULL, AGENT_FIELD(F_DOUBLE, last_tick_s) },
	{ "scaleno_config_reloads_total", EXPO_COUNTER, "SIGHUP reloads by result.",
	  NEED_NOTHING, "result", "ok", AGENT_FIELD(F_U64, reloads_ok) },
	{ "scaleno_config_reloads_total", EXPO_COUNTER, "SIGHUP reloads by result.",
	  NEED_NOTHING, "result", "failed", AGENT_FIELD(F_U64, reloads_failed) },
};

/* HELP and TYPE unless the row before announced the same family. */
static void
family_once(struct strbuf *b, const char *prev, const char *name, enum expo_type type,
    const char *help)
{
	if (prev == NULL || strcmp(prev, name) != 0)
		expo_family(b, name, type, help);
}

static bool
queue_shows(const struct agent_queue *s, enum metric_need need)
{
	switch (need) {
	case NEED_SAMPLE:
		return s->have_raw;
	case NEED_NOMAD:
		return s->have_raw && s->nomad_ok;
	case NEED_NOTHING:
		break;
	}
	return true;
}

void
agent_metrics_render(const struct agent *a, struct strbuf *b)
{
	for (size_t m = 0; m < ARRAY_LEN(queue_metrics); m++) {
		const struct metric *qm = &queue_metrics[m];
		struct expo_label l[2] = { { "queue", NULL }, { qm->label, qm->label_value } };

		family_once(b, m > 0 ? queue_metrics[m - 1].name : NULL, qm->name, qm->type,
		    qm->help);
		for (size_t i = 0; i < a->nqs; i++) {
			if (!queue_shows(&a->qs[i], qm->need))
				continue;
			l[0].value = a->qs[i].name;
			expo_sample(b, qm->name, l, qm->label != NULL ? 2 : 1,
			    field_read(&a->qs[i], &qm->value));
		}
	}
	for (size_t m = 0; m < ARRAY_LEN(agent_metrics); m++) {
		const struct metric *am = &agent_metrics[m];
		struct expo_label l = { am->label, am->label_value };

		family_once(b, m > 0 ? agent_metrics[m - 1].name : NULL, am->name, am->type, am->help);
		expo_sample(b, am->name, &l, am->label != NULL ? 1 : 0, field_read(a, &am->value));
	}
}
