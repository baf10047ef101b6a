/*
 * agent — the state of `scaleno agent` (scaleno(8), "The agent"), shared by
 * its parts: agent.c (the loop, the tick, reload, the lease), agent_nomad.c
 * (the Nomad phases: reads, bounds, capacity, history, the scale batch),
 * agent_view.c (the /v1/status document), agent_ready.c (/readyz) and
 * agent_metrics.c (/metrics).
 */
#ifndef SCALENO_AGENT_H
#define SCALENO_AGENT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "decide.h"
#include "nomad.h"
#include "sample.h"

struct httpd;
struct redis_servers;
struct queue_view;
struct strbuf;

/* Redis or Nomad unreachable this long before an alert fires (scaleno(8), "Alerts"). */
#define UNREACHABLE_ALERT_MS 60000

/* The agent's memory of one queue; survives reloads when the name stays. */
struct agent_queue {
	char *name;
	const struct queue_policy *q;	/* into agent->cfg */
	struct sample_state ss;
	struct decide_state ds;
	struct raw_sample raw;
	bool have_raw;
	int64_t next_eval_ms;
	bool due;

	/* Nomad's view of the group */
	bool nomad_ok;
	int desired, running, placed;
	bool job_stopped;
	enum nomad_result nomad_last;
	char nomad_error[256];
	int64_t nomad_logged_ms;
	unsigned nomad_failures;
	int64_t nomad_retry_at_ms;
	int64_t nomad_down_since_ms;
	bool nomad_outage;		/* a Nomad call failed and the same kind has not succeeded since */
	bool nomad_outage_scale;	/* ... and it was the scale call */
	bool nomad_recovered;		/* this tick ended the outage: log it if the tick stays healthy */
	bool deployment_logged;
	bool config_alerted;		/* a configuration error (NOMAD_CONFIG) was alerted */

	/* The job's own scaling block (scaleno(8), "Bounds"): -1 when none is known. */
	int job_min, job_max;
	bool bounds_learnt;		/* taught by a 400, not read from the job */
	int bounds_logged_min, bounds_logged_max;	/* what was last logged */
	bool job_read_due;		/* read the job (its scaling block) at the next status phase */
	bool job_read_denied;		/* 403: the token lacks read-job */
	uint64_t job_index;		/* the job's JobModifyIndex (list) or ModifyIndex (status) as last seen */
	bool status_due;		/* read the group's scale status this tick */
	bool backing_off;		/* this tick: waiting out a Nomad failure's backoff */
	int queued;			/* allocations Nomad could not place (job summary) */

	/* Capacity (scaleno(8), "Blocked"): Placed below Desired since, 0 when not. */
	int64_t short_since_ms;
	bool blocked;

	/* History: the newest scaling event taken as the last action (wall-clock s). */
	double event_seen_s;
	/* A scale whose outcome is unknown (timeout, 5xx, deployment after a retry). */
	bool unsure;
	struct decision unsure_dec;
	double unsure_t;
	int unsure_from;		/* Desired when it was sent */

	struct decision dec;
	bool have_dec;
	uint64_t actions_up, actions_down, nomad_errors;
	bool missing_warned;
	bool sample_err_warned;
};

struct agent {
	const char *config_path;
	struct config *cfg;
	struct redis_servers *rs;	/* one handle per server (redis_sample.h); 0: the main file's */
	struct nomad_client *nc;
	struct httpd *http;
	char *http_listen;
	struct agent_queue *qs;
	size_t nqs;
	bool dry_run_flag;		/* --dry-run on the command line */
	bool leader;
	char owner[128];		/* lease owner id */
	uint64_t redis_errors;
	uint64_t reloads_ok, reloads_failed;
	uint64_t ticks;
	int jobs_list;			/* GET /v1/jobs: 0 untried or failing, 1 works, -1 denied */
	uint64_t nomad_requests;	/* HTTP attempts made to Nomad */
	int64_t redis_down_since_ms;
	int64_t last_tick_ms;
	double last_tick_s;		/* duration of the last tick */

	pthread_mutex_t snap_lock;
	char *snap_metrics;
	char *snap_status;
	int64_t snap_ms;
	int64_t snap_stall_ms;		/* /healthz: no tick for this long is a stall */
	char snap_unready[256];		/* /readyz: why the agent is not ready ("" = ready) */
};

/*
 * Phase 2 of a tick (agent_nomad.c): Nomad's counts (and, when due, the
 * job's bounds) for every due queue that scales a job, at engine time now_s
 * and monotonic now_ms; capacity and history are taken from the answers.
 */
void agent_nomad_status(struct agent *a, double now_s, int64_t now_ms);

/* Phase 3 (agent_nomad.c): decide for every due queue, then send the scale calls in one batch. */
void agent_decide_and_act(struct agent *a, double now_s, int64_t now_ms);

/* The bounds the agent asks within: the policy's narrowed by the job's scaling block. */
void agent_queue_bounds(const struct agent_queue *s, int *lo, int *hi);

/* --dry-run or agent.dry_run. */
bool agent_dry_run(const struct agent *a);

/* Fill v with the view of one of the agent's queues at engine time now (agent_view.c). */
void agent_queue_view(const struct agent_queue *s, double now, struct queue_view *v);

/* The /v1/status document of a at engine time now (agent_view.c). Caller frees (cJSON_free). */
char *agent_status_json(const struct agent *a, double now);

/* Why a is not ready at engine time now_s, into reason ("" = ready) (agent_ready.c). */
void agent_readiness(const struct agent *a, double now_s, char *reason, size_t len);

/* Append a's /metrics text to b (agent_metrics.c). */
void agent_metrics_render(const struct agent *a, struct strbuf *b);

#endif
