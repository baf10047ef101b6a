/*
 * agent_view.c — see include/agent_view.h. Numbers are rounded to what a
 * reader can use: ages and seconds to the millisecond, rates to 1/100.
 */
#include <math.h>

#include "agent.h"
#include "agent_view.h"
#include "util.h"

static double
round_to(double v, double unit)
{
	return round(v / unit) * unit;
}

/* Seconds left of a cooldown that began at last (engine clock); 0 when over or never. */
static double
cooldown_left(double last, int64_t cooldown_ms, double now)
{
	double left;

	if (!isfinite(last))
		return 0;
	left = last + (double)cooldown_ms / 1000.0 - now;
	return left > 0 ? round_to(left, 0.001) : 0;
}

static void
view_sample(cJSON *smp, const struct queue_view *v)
{
	const struct signals *g = v->sig;

	cJSON_AddBoolToObject(smp, "ok", v->sample_ok);
	if (v->history) {
		cJSON_AddBoolToObject(smp, "valid", g->valid);
		cJSON_AddNumberToObject(smp, "age_s", g->valid ? round_to(v->now - g->t, 0.001) : -1);
	}
	cJSON_AddNumberToObject(smp, "backlog", (double)g->backlog);
	cJSON_AddBoolToObject(smp, "backlog_estimated", g->backlog_estimated);
	cJSON_AddNumberToObject(smp, "undelivered", (double)g->undelivered);
	cJSON_AddNumberToObject(smp, "pending", (double)g->pending);
	cJSON_AddNumberToObject(smp, "oldest_age_s", round_to(g->oldest_age_s, 0.001));
	if (v->history) {
		cJSON_AddNumberToObject(smp, "arrival_rate", round_to(g->arrival_rate, 0.01));
		cJSON_AddNumberToObject(smp, "completion_rate", round_to(g->completion_rate, 0.01));
		cJSON_AddNumberToObject(smp, "trend", round_to(g->trend, 0.01));
	}
	cJSON_AddNumberToObject(smp, "dlq_length", (double)g->dlq_length);
	cJSON_AddNumberToObject(smp, "retry_length", (double)g->retry_length);
	cJSON_AddNumberToObject(smp, "halted_partitions", g->halted);
	cJSON_AddBoolToObject(smp, "stream_missing", v->stream_missing);
	cJSON_AddBoolToObject(smp, "group_missing", v->group_missing);
}

static void
view_nomad(cJSON *nmd, const struct queue_view *v)
{
	cJSON *bnd;

	if (!v->nomad_known)
		return;
	cJSON_AddBoolToObject(nmd, "ok", v->nomad_ok);
	cJSON_AddNumberToObject(nmd, "desired", v->desired);
	cJSON_AddNumberToObject(nmd, "running", v->running);
	cJSON_AddNumberToObject(nmd, "placed", v->placed);
	cJSON_AddBoolToObject(nmd, "job_stopped", v->job_stopped);
	cJSON_AddStringToObject(nmd, "last_result", nomad_result_name(v->nomad_last));
	cJSON_AddStringToObject(nmd, "error", v->nomad_error != NULL ? v->nomad_error : "");
	if (v->bounds_known && (bnd = cJSON_AddObjectToObject(nmd, "bounds")) != NULL) {
		cJSON_AddNumberToObject(bnd, "min", v->min);
		cJSON_AddNumberToObject(bnd, "max", v->max);
		if (v->job_min >= 0)
			cJSON_AddNumberToObject(bnd, "job_min", v->job_min);
		else
			cJSON_AddNullToObject(bnd, "job_min");
		if (v->job_max >= 0)
			cJSON_AddNumberToObject(bnd, "job_max", v->job_max);
		else
			cJSON_AddNullToObject(bnd, "job_max");
		/* Who narrowed them: the policy alone, the job's scaling block, or a 400. */
		cJSON_AddStringToObject(bnd, "source", v->min == v->q->scale.min &&
		    v->max == v->q->scale.max ? "policy" : v->bounds_learnt ? "learnt" : "job");
	}
	if (v->bounds_known) {
		cJSON_AddBoolToObject(nmd, "blocked", v->blocked);
		cJSON_AddNumberToObject(nmd, "queued", v->queued);
	}
}

cJSON *
agent_view_json(const struct queue_view *v)
{
	cJSON *o = cJSON_CreateObject(), *smp, *nmd, *dec, *cd;

	if (o == NULL)
		return NULL;
	cJSON_AddStringToObject(o, "name", v->name);
	cJSON_AddStringToObject(o, "mode", config_mode_name(v->q->mode));
	/* The queue's server (a policy may have its own: scaleno.conf(5) "redis"). */
	cJSON_AddStringToObject(o, "redis", v->q->redis.address != NULL ? v->q->redis.address : "");
	cJSON_AddStringToObject(o, "target", v->q->scale.target == SCALE_TARGET_NOMAD ?
	    "nomad" : "none");
	if ((smp = cJSON_AddObjectToObject(o, "sample")) != NULL)
		view_sample(smp, v);
	if ((nmd = cJSON_AddObjectToObject(o, "nomad")) != NULL)
		view_nomad(nmd, v);
	if (v->dec != NULL && (dec = cJSON_AddObjectToObject(o, "decision")) != NULL) {
		cJSON_AddNumberToObject(dec, "count", v->dec->count);
		cJSON_AddStringToObject(dec, "direction", decide_direction_name(v->dec->dir));
		cJSON_AddNumberToObject(dec, "need", v->dec->need);
		cJSON_AddStringToObject(dec, "rule", v->dec->rule ? v->dec->rule : "");
		cJSON_AddStringToObject(dec, "reason", v->dec->reason);
		cJSON_AddNumberToObject(dec, "age_s", round_to(v->now - v->dec->t, 0.001));
	}
	if (v->ds != NULL && (cd = cJSON_AddObjectToObject(o, "cooldown")) != NULL) {
		cJSON_AddNumberToObject(cd, "up_remaining_s",
		    cooldown_left(v->ds->last_up_t, v->q->scale.up_cooldown_ms, v->now));
		cJSON_AddNumberToObject(cd, "down_remaining_s",
		    cooldown_left(v->ds->last_down_t, v->q->scale.down_cooldown_ms, v->now));
	}
	if (v->counters) {
		cJSON_AddNumberToObject(o, "scale_actions_up", (double)v->actions_up);
		cJSON_AddNumberToObject(o, "scale_actions_down", (double)v->actions_down);
		cJSON_AddNumberToObject(o, "nomad_errors", (double)v->nomad_errors);
	}
	return o;
}

char *
agent_view_meta(const struct queue_view *v)
{
	const struct signals *g = v->sig;
	cJSON *o = cJSON_CreateObject();
	char *txt;

	if (o == NULL)
		return NULL;
	cJSON_AddStringToObject(o, "scaleno_queue", v->name);
	cJSON_AddNumberToObject(o, "backlog", (double)g->backlog);
	cJSON_AddNumberToObject(o, "undelivered", (double)g->undelivered);
	cJSON_AddNumberToObject(o, "pending", (double)g->pending);
	cJSON_AddNumberToObject(o, "oldest_age_s", round_to(g->oldest_age_s, 0.001));
	cJSON_AddNumberToObject(o, "arrival_rate", round_to(g->arrival_rate, 0.01));
	cJSON_AddNumberToObject(o, "completion_rate", round_to(g->completion_rate, 0.01));
	cJSON_AddNumberToObject(o, "need", v->dec != NULL ? v->dec->need : 0);
	cJSON_AddStringToObject(o, "rule", v->dec != NULL && v->dec->rule ? v->dec->rule : "");
	txt = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return txt;
}

/* The view of one of the agent's queues. */
void
agent_queue_view(const struct agent_queue *s, double now, struct queue_view *v)
{
	*v = (struct queue_view){
		.name = s->name, .q = s->q, .now = now,
		.sample_ok = s->have_raw && s->raw.ok, .sig = &s->ss.cur, .history = true,
		.stream_missing = s->raw.stream_missing, .group_missing = s->raw.group_missing,
		.nomad_known = true, .nomad_ok = s->nomad_ok,
		.desired = s->desired, .running = s->running, .placed = s->placed,
		.job_stopped = s->job_stopped, .nomad_last = s->nomad_last,
		.nomad_error = s->nomad_error,
		.dec = s->have_dec ? &s->dec : NULL, .ds = &s->ds,
		.counters = true, .actions_up = s->actions_up, .actions_down = s->actions_down,
		.nomad_errors = s->nomad_errors,
		.bounds_known = s->q->scale.target == SCALE_TARGET_NOMAD,
		.job_min = s->job_min, .job_max = s->job_max, .bounds_learnt = s->bounds_learnt,
		.blocked = s->blocked, .queued = s->queued,
	};
	agent_queue_bounds(s, &v->min, &v->max);
}

char *
agent_status_json(const struct agent *a, double now)
{
	cJSON *root = cJSON_CreateObject(), *arr;
	char *txt;

	if (root == NULL)
		return NULL;
	cJSON_AddBoolToObject(root, "leader", a->leader);
	cJSON_AddBoolToObject(root, "dry_run", agent_dry_run(a));
	cJSON_AddBoolToObject(root, "redis_ok", a->redis_down_since_ms == 0);
	arr = cJSON_AddArrayToObject(root, "queues");
	for (size_t i = 0; arr != NULL && i < a->nqs; i++) {
		struct queue_view v;
		cJSON *o;

		agent_queue_view(&a->qs[i], now, &v);
		if ((o = agent_view_json(&v)) == NULL)
			break;
		cJSON_AddItemToArray(arr, o);
	}
	txt = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return txt;
}
