/*
 * agent_view — the one writer of a queue's view: the JSON object per queue
 * of the agent's /v1/status and of `scaleno status --json` (scaleno(8)),
 * and the "Meta" of the agent's scale calls. The agent fills a view from
 * its memory; `scaleno status` without an agent fills one from a single
 * reading, and what needs history (rates, decision, cooldowns, counters)
 * is then left out.
 */
#ifndef SCALENO_AGENT_VIEW_H
#define SCALENO_AGENT_VIEW_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "decide.h"
#include "nomad.h"
#include "sample.h"

/* Everything a view shows; the pointers are borrowed for the call. */
struct queue_view {
	const char *name;
	const struct queue_policy *q;
	double now;			/* engine clock, s: ages are taken against it */

	bool sample_ok;			/* the last reading was usable */
	const struct signals *sig;	/* its levels (and, with history, rates) */
	bool history;			/* the agent: rates, trend and ages are known */
	bool stream_missing, group_missing;

	bool nomad_known;		/* false: the "nomad" object stays empty */
	bool nomad_ok;
	int desired, running, placed;
	bool job_stopped;
	enum nomad_result nomad_last;
	const char *nomad_error;
	bool bounds_known;		/* the agent: the bounds below are known */
	int min, max;			/* what the agent asks within */
	int job_min, job_max;		/* the job's scaling block; -1: none known */
	bool bounds_learnt;		/* from a 400 rather than the job */
	bool blocked;			/* Nomad cannot place what it has (scaleno(8), "Blocked") */
	int queued;

	const struct decision *dec;	/* NULL: none yet (or no agent) */
	const struct decide_state *ds;	/* NULL: no cooldowns (no agent) */
	bool counters;			/* the three counters below are known */
	uint64_t actions_up, actions_down, nomad_errors;
};

/* The view as a JSON object (NULL when out of memory). Caller owns it (cJSON_Delete). */
cJSON *agent_view_json(const struct queue_view *v);

/*
 * The decision's inputs as JSON object text, the Meta of a scale call:
 * scaleno_queue, backlog, undelivered, pending, oldest_age_s, the two
 * rates, need and rule. NULL when out of memory. Caller frees (cJSON_free).
 */
char *agent_view_meta(const struct queue_view *v);

#endif
