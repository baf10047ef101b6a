/*
 * agent — the state of `scaleno agent` (scaleno(8), "The agent"), shared by
 * its parts: agent.c (the loop, the tick, reload, the lease), agent_view.c
 * (the /v1/status document) and agent_metrics.c (/metrics).
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
	bool deployment_logged;

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
	int64_t redis_down_since_ms;
	int64_t last_tick_ms;
	double last_tick_s;		/* duration of the last tick */

	pthread_mutex_t snap_lock;
	char *snap_metrics;
	char *snap_status;
	int64_t snap_ms;
	int64_t snap_stall_ms;		/* /healthz: no tick for this long is a stall */
};

/* --dry-run or agent.dry_run. */
bool agent_dry_run(const struct agent *a);

/* Fill v with the view of one of the agent's queues at engine time now (agent_view.c). */
void agent_queue_view(const struct agent_queue *s, double now, struct queue_view *v);

/* The /v1/status document of a at engine time now (agent_view.c). Caller frees (cJSON_free). */
char *agent_status_json(const struct agent *a, double now);

/* Append a's /metrics text to b (agent_metrics.c). */
void agent_metrics_render(const struct agent *a, struct strbuf *b);

#endif
