/*
 * agent.c — `scaleno agent`: the control loop of scaleno(8), "The agent".
 * Each tick samples every due queue from Redis in one pipelined round trip,
 * reads Nomad's counts for their groups in one concurrent batch, runs the
 * pure decision engine, and sends the scale calls in a second batch.
 * Nothing here blocks longer than redis.command_timeout or nomad.timeout
 * per phase, and no failure of Redis or Nomad ends the loop. Also here:
 * SIGHUP reload, the lease, the snapshots for the HTTP endpoint (written
 * by agent_view.c and agent_metrics.c).
 *
 * Threads: the loop is single-threaded; the HTTP endpoint runs on
 * libmicrohttpd's thread and only reads the text snapshots published under
 * snap_lock after each tick.
 */
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "agent.h"
#include "agent_view.h"
#include "alert.h"
#include "cli.h"
#include "config.h"
#include "decide.h"
#include "httpd.h"
#include "log.h"
#include "nomad.h"
#include "redis_sample.h"
#include "sample.h"
#include "selfpipe.h"
#include "util.h"

/* Unreachable this long before an alert fires (scaleno(8), "Alerts"). */
#define UNREACHABLE_ALERT_MS 60000
/* A transient Nomad failure is logged again at most this often. */
#define RELOG_MS 60000
/* The loop looks at its signals and timers at least this often. */
#define AGENT_MAX_WAIT_MS 1000
/* The rates are smoothed over this many evaluation intervals. */
#define SMOOTHING_INTERVALS 3.0
/* Retry backoff after a transient Nomad failure (timeout, 5xx, refused) ... */
#define NOMAD_RETRY_BASE_MS 1000
#define NOMAD_RETRY_CAP_MS 30000
/* ... and after a policy error (403, 404, 400) that an operator may fix. */
#define POLICY_RETRY_BASE_MS 15000
#define POLICY_RETRY_CAP_MS 60000
/* /healthz: a stall is no tick for this long plus twice the Nomad and Redis timeouts. */
#define STALL_BASE_MS 5000
/* A scaling event within this long after an action of the agent is that action's own. */
#define OWN_EVENT_S 2.0

/* Catch the stop and reload signals into the self-pipe; ignore SIGPIPE. */
static int
agent_signals_setup(void)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };

	if (selfpipe_open(sigs, ARRAY_LEN(sigs), 0) == -1)
		return -1;
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

/* Wait until ms have passed (at most AGENT_MAX_WAIT_MS) or a signal came; note which. */
static void
agent_wait(int64_t ms, bool *stop, bool *reload)
{
	struct pollfd pfd = { .fd = selfpipe_fd(), .events = POLLIN };
	int sigs[16];
	size_t n;

	if (ms < 0)
		ms = 0;
	if (ms > AGENT_MAX_WAIT_MS)
		ms = AGENT_MAX_WAIT_MS;
	if (poll(&pfd, 1, (int)ms) <= 0)
		return;
	while ((n = selfpipe_drain(sigs, ARRAY_LEN(sigs))) > 0)
		for (size_t i = 0; i < n; i++) {
			if (sigs[i] == SIGHUP)
				*reload = true;
			else
				*stop = true;
		}
}

bool
agent_dry_run(const struct agent *a)
{
	return a->dry_run_flag || a->cfg->agent.dry_run;
}

/* The smoothing time constant of q's rates, in seconds. */
static double
agent_tau_s(const struct queue_policy *q)
{
	return SMOOTHING_INTERVALS * (double)q->scale.interval_ms / 1000.0;
}

/* Forget what was known of the job (a new queue, or a reload): read it again. */
static void
agent_queue_forget_job(struct agent_queue *s)
{
	s->job_min = s->job_max = -1;
	s->bounds_learnt = false;
	s->bounds_logged_min = s->bounds_logged_max = -1;
	s->job_read_due = true;
	s->job_read_denied = false;
	s->job_index = 0;
	s->status_due = true;
}

/* The job changed (a new version): read its bounds again; a bound a 400 taught may be gone. */
static void
agent_queue_job_changed(struct agent_queue *s)
{
	s->job_read_due = true;
	if (s->bounds_learnt) {
		s->job_min = s->job_max = -1;
		s->bounds_learnt = false;
	}
}

void
agent_queue_bounds(const struct agent_queue *s, int *lo, int *hi)
{
	*lo = s->q->scale.min;
	*hi = s->q->scale.max;
	if (s->job_min > *lo)
		*lo = s->job_min;
	if (s->job_max >= 0 && s->job_max < *hi)
		*hi = s->job_max;
	if (*lo > *hi)
		*lo = *hi;
}

static void
agent_queue_init(struct agent_queue *s, const struct queue_policy *q, int64_t now_ms)
{
	memset(s, 0, sizeof(*s));
	s->name = util_strdup(q->name);
	s->q = q;
	sample_state_init(&s->ss, agent_tau_s(q));
	decide_state_init(&s->ds);
	s->next_eval_ms = now_ms;
	agent_queue_forget_job(s);
	if (q->scale.target == SCALE_TARGET_NONE) {
		/* Observe-only: the engine's own count stands in for Nomad's. */
		s->nomad_ok = true;
		s->desired = s->running = s->placed = q->scale.min;
	}
}

static void
agent_free_states(struct agent_queue *qs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(qs[i].name);
	free(qs);
}

/*
 * Build the per-queue states for cfg, carrying over the memory (samples,
 * decisions, cooldowns, Nomad view) of queues that keep their name.
 */
static struct agent_queue *
agent_build_states(const struct config *cfg, struct agent_queue *old, size_t nold, int64_t now_ms)
{
	struct agent_queue *qs = calloc(cfg->nqueues ? cfg->nqueues : 1, sizeof(*qs));

	if (qs == NULL)
		return NULL;
	for (size_t i = 0; i < cfg->nqueues; i++) {
		const struct queue_policy *q = &cfg->queues[i];
		size_t j;

		for (j = 0; j < nold; j++)
			if (old[j].name != NULL && strcmp(old[j].name, q->name) == 0)
				break;
		if (j < nold && old[j].q->scale.target == q->scale.target) {
			qs[i] = old[j];
			old[j].name = NULL;	/* moved */
			qs[i].q = q;
			qs[i].ss.tau_s = agent_tau_s(q);
			agent_queue_forget_job(&qs[i]);
		} else
			agent_queue_init(&qs[i], q, now_ms);
	}
	return qs;
}

/* Create the Redis and Nomad clients for a->cfg. */
static int
agent_clients(struct agent *a, struct redis_servers **rq, struct nomad_client **nc, char *err,
    size_t errlen)
{
	*rq = redis_servers_new(a->cfg);
	if (*rq == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	*nc = nomad_client_new(&a->cfg->nomad, err, errlen);
	if (*nc == NULL) {
		redis_servers_free(*rq);
		*rq = NULL;
		return -1;
	}
	return 0;
}

static void agent_http(void *arg, const char *method, const char *path, struct httpd_reply *r);

static void
agent_listen(struct agent *a)
{
	const char *want = a->cfg->agent.listen ? a->cfg->agent.listen : "";
	char err[256];

	if (a->http_listen != NULL && strcmp(a->http_listen, want) == 0)
		return;
	httpd_stop(a->http);
	a->http = NULL;
	free(a->http_listen);
	a->http_listen = strdup(want);
	if (*want == '\0')
		return;
	if ((a->http = httpd_start(want, agent_http, a, err, sizeof(err))) == NULL)
		log_warnx("agent: metrics endpoint off: %s", err);
	else
		log_info("agent: serving /metrics, /healthz, /readyz and /v1/status on %s", want);
}

static void
agent_log_errors(const struct cfg_errors *errs)
{
	for (size_t i = 0; i < errs->n; i++)
		log_error("%s", errs->msgs[i]);
}

/* SIGHUP: load the configuration anew; keep the running one if the new one is bad. */
static void
agent_reload_config(struct agent *a)
{
	struct cfg_errors errs = { 0 };
	struct config *ncfg = NULL;
	struct config *ocfg = a->cfg;
	struct redis_servers *rq = NULL;
	struct nomad_client *nc = NULL;
	struct agent_queue *nqs = NULL;
	char err[256] = "out of memory";

	log_info("agent: SIGHUP: reloading %s", a->config_path);
	if (config_load(a->config_path, &ncfg, &errs) == -1) {
		agent_log_errors(&errs);
		log_error("agent: reload failed (%zu problem%s); the running configuration stays in force",
		    errs.n, errs.n == 1 ? "" : "s");
		cfg_errors_free(&errs);
		a->reloads_failed++;
		return;
	}
	cfg_errors_free(&errs);
	a->cfg = ncfg;
	if (agent_clients(a, &rq, &nc, err, sizeof(err)) == -1 ||
	    (nqs = agent_build_states(ncfg, a->qs, a->nqs, util_now_ms())) == NULL) {
		redis_servers_free(rq);
		nomad_client_free(nc);
		a->cfg = ocfg;
		config_free(ncfg);
		log_error("agent: reload failed: %s; the running configuration stays in force", err);
		a->reloads_failed++;
		return;
	}
	redis_servers_free(a->rs);
	nomad_client_free(a->nc);
	a->rs = rq;
	a->nc = nc;
	agent_free_states(a->qs, a->nqs);
	a->qs = nqs;
	a->nqs = ncfg->nqueues;
	config_free(ocfg);
	log_init("scaleno", ncfg->log.level, ncfg->log.format, ncfg->log.syslog);
	agent_listen(a);
	a->reloads_ok++;
	log_info("agent: reloaded: %zu queue%s", a->nqs, a->nqs == 1 ? "" : "s");
}

/* Log a Nomad problem when it is new, or again after RELOG_MS. */
static void
agent_queue_note_nomad(struct agent_queue *s, const char *what, const struct nomad_call *c, int64_t now_ms)
{
	bool same = s->nomad_last == c->result && strcmp(s->nomad_error, c->error) == 0;

	if (!same || now_ms - s->nomad_logged_ms >= RELOG_MS) {
		if (nomad_result_transient(c->result))
			log_warnx("queue %s: nomad %s of job %s: %s (%s), will retry",
			    s->name, what, s->q->scale.job, nomad_result_name(c->result), c->error);
		else
			log_error("queue %s: nomad %s of job %s group %s: %s (%s)",
			    s->name, what, s->q->scale.job, s->q->scale.group,
			    nomad_result_name(c->result), c->error);
		s->nomad_logged_ms = now_ms;
	}
	s->nomad_last = c->result;
	util_strlcpy(s->nomad_error, c->error, sizeof(s->nomad_error));
}

/* Record a failed Nomad call: errors counted, retry after a backoff. */
static void
agent_queue_nomad_failed(struct agent_queue *s, const char *what, const struct nomad_call *c, int64_t now_ms)
{
	s->nomad_errors++;
	s->nomad_failures++;
	if (s->nomad_down_since_ms == 0)
		s->nomad_down_since_ms = now_ms;
	agent_queue_note_nomad(s, what, c, now_ms);
	/* Policy errors (403/404/400) are retried slowly: an operator may fix them. */
	s->nomad_retry_at_ms = now_ms + (nomad_result_transient(c->result)
	    ? util_backoff_ms(NOMAD_RETRY_BASE_MS, NOMAD_RETRY_CAP_MS, s->nomad_failures - 1)
	    : util_backoff_ms(POLICY_RETRY_BASE_MS, POLICY_RETRY_CAP_MS, s->nomad_failures - 1));
	if (c->result == NOMAD_CONFIG && !s->config_alerted) {
		char text[512];

		/* Nomad's text says what to change; a retry alone will not pass. */
		snprintf(text, sizeof(text), "Nomad refuses the %s of job %s group %s: %s",
		    what, s->q->scale.job, s->q->scale.group, c->error);
		alert_fire(&s->q->alert, s->name, ALERT_NOMAD_CONFIG, s->q->scale.job, text);
		s->config_alerted = true;
	}
	if (now_ms - s->nomad_down_since_ms >= UNREACHABLE_ALERT_MS &&
	    nomad_result_transient(c->result)) {
		char text[512];

		snprintf(text, sizeof(text), "Nomad unreachable for %llds for job %s: %s",
		    (long long)((now_ms - s->nomad_down_since_ms) / 1000), s->q->scale.job, c->error);
		alert_fire(&s->q->alert, s->name, ALERT_NOMAD_UNREACHABLE, s->q->scale.job, text);
	}
}

static void
agent_queue_nomad_ok(struct agent_queue *s, int64_t now_ms)
{
	if (s->nomad_failures > 0 && s->nomad_last != NOMAD_OK)
		log_info("queue %s: nomad answers again for job %s", s->name, s->q->scale.job);
	(void)now_ms;
	s->nomad_failures = 0;
	s->nomad_down_since_ms = 0;
	s->nomad_last = NOMAD_OK;
	s->nomad_error[0] = '\0';
	s->config_alerted = false;
}

/* Phase 1: one pipelined Redis round trip for every due queue. */
static void
agent_sample(struct agent *a, double now_s, int64_t now_ms)
{
	const struct queue_policy **qv;
	struct raw_sample *raw;
	size_t n = 0, k = 0;
	char err[256] = "";
	int rc = -1;

	for (size_t i = 0; i < a->nqs; i++)
		n += a->qs[i].due;
	if (n == 0)
		return;
	qv = calloc(n, sizeof(*qv));
	raw = calloc(n, sizeof(*raw));
	if (qv == NULL || raw == NULL) {
		log_error("agent: out of memory sampling %zu queues", n);
		free(qv);
		free(raw);
		return;
	}
	for (size_t i = 0; i < a->nqs; i++)
		if (a->qs[i].due)
			qv[k++] = a->qs[i].q;
	/* Each server in one round trip; any server failing holds every queue (safe). */
	rc = redis_sample_servers(a->rs, qv, (int)n, now_s, raw, NULL, err, sizeof(err)) == 0 ? 0 : -1;
	if (rc == -1) {
		a->redis_errors++;
		if (a->redis_down_since_ms == 0) {
			a->redis_down_since_ms = now_ms;
			log_warnx("agent: redis %s: %s; holding every queue until it is back",
			    a->cfg->redis.address, err);
		} else if (now_ms - a->redis_down_since_ms >= UNREACHABLE_ALERT_MS) {
			char text[512];

			snprintf(text, sizeof(text), "Redis %s unreachable for %llds: %s",
			    a->cfg->redis.address,
			    (long long)((now_ms - a->redis_down_since_ms) / 1000), err);
			for (size_t i = 0; i < a->nqs; i++)
				alert_fire(&a->qs[i].q->alert, a->qs[i].name, ALERT_REDIS_UNREACHABLE,
				    a->cfg->redis.address, text);
		}
	} else if (a->redis_down_since_ms != 0) {
		log_info("agent: redis %s is back after %llds", a->cfg->redis.address,
		    (long long)((now_ms - a->redis_down_since_ms) / 1000));
		a->redis_down_since_ms = 0;
	}
	k = 0;
	for (size_t i = 0; i < a->nqs; i++) {
		struct agent_queue *s = &a->qs[i];
		struct signals sig;

		if (!s->due)
			continue;
		s->raw = raw[k++];
		s->raw.t = now_s;
		if (rc == -1)
			s->raw.ok = false;
		s->have_raw = true;
		sample_update(&s->ss, &s->raw, &sig);
		if (s->raw.ok && (s->raw.stream_missing || s->raw.group_missing)) {
			if (!s->missing_warned)
				log_warnx("queue %s: %s %s does not exist yet; %s", s->name,
				    s->raw.stream_missing ? "stream" : "group",
				    s->raw.stream_missing ? s->q->stream : s->q->group,
				    s->raw.stream_missing ? "reading the queue as empty" :
				    "every entry of the stream counts as backlog");
			s->missing_warned = true;
		} else if (s->raw.ok)
			s->missing_warned = false;
		if (rc == 0 && !s->raw.ok && !s->sample_err_warned) {
			log_warnx("queue %s: sample unusable (wrong key type or bad reply); holding",
			    s->name);
			s->sample_err_warned = true;
		} else if (s->raw.ok)
			s->sample_err_warned = false;
	}
	free(qv);
	free(raw);
}

/* One batch of Nomad calls, each for a queue (by index), with its Meta text. */
struct agent_batch {
	struct nomad_call *calls;
	size_t *idx;
	char **metas;
	size_t n;
};

static void agent_batch_free(struct agent_batch *b);

static int
agent_batch_new(struct agent_batch *b, size_t cap)
{
	b->n = 0;
	b->calls = calloc(cap ? cap : 1, sizeof(*b->calls));
	b->idx = calloc(cap ? cap : 1, sizeof(*b->idx));
	b->metas = calloc(cap ? cap : 1, sizeof(*b->metas));
	if (b->calls == NULL || b->idx == NULL || b->metas == NULL) {
		log_error("agent: out of memory for %zu nomad calls", cap);
		agent_batch_free(b);
		return -1;
	}
	return 0;
}

/* A call of kind for queue i, aimed at its scale section. */
static struct nomad_call *
agent_batch_add(struct agent_batch *b, size_t i, enum nomad_call_kind kind,
    const struct scale_conf *sc)
{
	struct nomad_call *c = &b->calls[b->n];

	nomad_call_init(c, kind, sc);
	b->idx[b->n++] = i;
	return c;
}

static void
agent_batch_run(struct agent *a, struct agent_batch *b)
{
	if (b->n == 0)
		return;
	nomad_perform(a->nc, b->calls, (int)b->n);
	for (size_t k = 0; k < b->n; k++)
		a->nomad_requests += (uint64_t)b->calls[k].attempts;
}

static void
agent_batch_free(struct agent_batch *b)
{
	for (size_t k = 0; b->calls != NULL && k < b->n; k++)
		nomad_call_clear(&b->calls[k]);
	for (size_t k = 0; b->metas != NULL && k < b->n; k++)
		cJSON_free(b->metas[k]);
	free(b->calls);
	free(b->idx);
	free(b->metas);
}

static int
str_cmp0(const char *x, const char *y)
{
	return strcmp(x != NULL ? x : "", y != NULL ? y : "");
}

/* Queues that scale one group share its reads: order them by namespace, job, group. */
static int
queue_key_cmp(const void *x, const void *y)
{
	const struct scale_conf *a = &(*(struct agent_queue *const *)x)->q->scale;
	const struct scale_conf *b = &(*(struct agent_queue *const *)y)->q->scale;
	int r = str_cmp0(a->namespace, b->namespace);

	if (r == 0)
		r = str_cmp0(a->job, b->job);
	return r != 0 ? r : str_cmp0(a->group, b->group);
}

/*
 * One call of kind per distinct (namespace, job, group) among the queues
 * that want() picks; callno[i] is the call of queue i. Returns the number
 * of queues picked, -1 when out of memory.
 */
static int
agent_batch_unique(struct agent *a, struct agent_batch *b, enum nomad_call_kind kind,
    bool (*want)(const struct agent_queue *), size_t *callno)
{
	struct agent_queue **v = calloc(a->nqs ? a->nqs : 1, sizeof(*v));
	size_t n = 0;

	if (v == NULL)
		return -1;
	for (size_t i = 0; i < a->nqs; i++)
		if (want(&a->qs[i]))
			v[n++] = &a->qs[i];
	if (n > 1)
		qsort(v, n, sizeof(*v), queue_key_cmp);
	for (size_t k = 0; k < n; k++) {
		size_t i = (size_t)(v[k] - a->qs);

		if (k == 0 || queue_key_cmp(&v[k - 1], &v[k]) != 0) {
			struct nomad_call *c = agent_batch_add(b, i, kind, &v[k]->q->scale);

			c->stale = kind != NOMAD_CALL_SCALE;
		}
		callno[i] = b->n - 1;
	}
	free(v);
	return (int)n;
}

/* A queue whose Nomad view this tick's status phase may refresh. */
static bool
want_nomad(const struct agent_queue *s)
{
	return s->due && s->q->scale.target == SCALE_TARGET_NOMAD && !s->backing_off;
}

static bool
want_status(const struct agent_queue *s)
{
	return want_nomad(s) && s->status_due;
}

static bool
want_job(const struct agent_queue *s)
{
	return want_nomad(s) && s->nomad_ok && s->job_read_due && !s->job_read_denied;
}

/* Log the bounds the agent asks within when the job's differ from the policy's (once per change). */
static void
agent_bounds_note(struct agent_queue *s)
{
	const struct scale_conf *sc = &s->q->scale;
	char jmin[16] = "-", jmax[16] = "-";
	int lo, hi;

	if (s->job_min == s->bounds_logged_min && s->job_max == s->bounds_logged_max)
		return;
	s->bounds_logged_min = s->job_min;
	s->bounds_logged_max = s->job_max;
	agent_queue_bounds(s, &lo, &hi);
	if (lo == sc->min && hi == sc->max)
		return;
	if (s->job_min >= 0)
		snprintf(jmin, sizeof(jmin), "%d", s->job_min);
	if (s->job_max >= 0)
		snprintf(jmax, sizeof(jmax), "%d", s->job_max);
	log_warnx("queue %s: job %s group %s: its scaling block (min %s, max %s, %s) is narrower than "
	    "the policy's [%d..%d]; asking only within [%d..%d]", s->name, sc->job, sc->group, jmin, jmax,
	    s->bounds_learnt ? "learnt from Nomad's 400" : "read from the job", sc->min, sc->max, lo, hi);
}

/*
 * A newer scaling event than the last one taken: whoever made it (this
 * agent, another, `nomad job scale`), it is the last action the cooldowns
 * count from (scaleno(8), "What a restart keeps").
 */
static void
agent_queue_history(struct agent_queue *s, const struct nomad_event *ev, double now_s)
{
	double wall = (double)util_wall_ms() / 1000.0, t, last;
	struct decision d;
	bool first = s->event_seen_s == 0;

	if (!ev->found || ev->time_s <= s->event_seen_s)
		return;
	s->event_seen_s = ev->time_s;
	/* Nomad's wall clock to the engine's; never in the future. */
	t = now_s - (wall - ev->time_s);
	if (t > now_s)
		t = now_s;
	memset(&d, 0, sizeof(d));
	d.dir = ev->count > ev->previous ? DIR_UP : DIR_DOWN;
	d.count = ev->count;
	last = d.dir == DIR_UP ? s->ds.last_up_t : s->ds.last_down_t;
	if (t <= last + OWN_EVENT_S)
		return;		/* this agent's own action, already counted */
	decide_applied(&s->ds, &d, t);
	log_info("queue %s: %s scaling event of job %s group %s %.1fs ago (%d->%d): the %s cooldown "
	    "counts from it", s->name, first ? "last" : "new", s->q->scale.job, s->q->scale.group,
	    now_s - t, ev->previous, ev->count, d.dir == DIR_UP ? "up" : "down");
}

/* A scale whose answer was lost or refused after a retry: Desired tells whether it was applied. */
static void
agent_queue_confirm(struct agent_queue *s)
{
	if (!s->unsure)
		return;
	s->unsure = false;
	if (s->desired != s->unsure_dec.count || s->unsure_dec.count == s->unsure_from)
		return;
	decide_applied(&s->ds, &s->unsure_dec, s->unsure_t);
	if (s->unsure_dec.dir == DIR_UP)
		s->actions_up++;
	else
		s->actions_down++;
	log_info("queue %s: scaled: %s (Nomad had applied it; its answer was lost)", s->name,
	    s->unsure_dec.reason);
}

/* Take a scale status answer for s. */
static void
agent_queue_status(struct agent *a, struct agent_queue *s, const struct nomad_call *c,
    double now_s, int64_t now_ms)
{
	agent_queue_nomad_ok(s, now_ms);
	s->nomad_ok = true;
	s->status_due = false;
	s->desired = c->desired;
	s->running = c->running;
	s->placed = c->placed;
	if (a->jobs_list != 1) {
		/* Without the job list the job's ModifyIndex tells when to read its bounds again. */
		if (s->job_index != c->job_modify_index)
			agent_queue_job_changed(s);
		s->job_index = c->job_modify_index;
		s->queued = 0;
	}
	if (c->job_stopped && !s->job_stopped)
		log_warnx("queue %s: job %s is stopped; not scaling it", s->name, s->q->scale.job);
	s->job_stopped = c->job_stopped;
	agent_queue_history(s, &c->event, now_s);
	agent_queue_confirm(s);
}

/*
 * GET /v1/jobs, one per namespace: every job's JobModifyIndex and its
 * groups' Running, Starting and Queued in one request. A queue whose job
 * has not changed since it was last read needs nothing more (a count the
 * agent asked for itself is known). Returns -1 when the list could not be
 * used this tick (every queue then reads its status).
 */
static int
agent_jobs_list(struct agent *a, int64_t now_ms)
{
	struct agent_batch b;
	int rc = 0;

	if (agent_batch_new(&b, a->nqs) == -1)
		return -1;
	for (size_t i = 0; i < a->nqs; i++) {
		struct agent_queue *s = &a->qs[i];
		size_t k;

		if (!want_nomad(s))
			continue;
		for (k = 0; k < b.n; k++)
			if (str_cmp0(b.calls[k].namespace, s->q->scale.namespace) == 0)
				break;
		if (k == b.n) {
			struct nomad_call *c = agent_batch_add(&b, i, NOMAD_CALL_JOBS, &s->q->scale);

			c->job = c->group = NULL;
			c->stale = true;
		}
	}
	if (b.n == 0) {
		agent_batch_free(&b);
		return 0;
	}
	agent_batch_run(a, &b);
	for (size_t k = 0; k < b.n; k++) {
		struct nomad_call *c = &b.calls[k];

		if (c->result == NOMAD_FORBIDDEN) {
			log_warnx("agent: the Nomad token may not list jobs (list-jobs, %s): reading each "
			    "group's scale status every tick instead", c->error);
			a->jobs_list = -1;
			rc = -1;
		} else if (c->result != NOMAD_OK) {
			log_debug("agent: nomad job list: %s (%s); reading each group's status this tick",
			    nomad_result_name(c->result), c->error);
			rc = -1;
		}
	}
	if (rc == 0 && a->jobs_list == 0) {
		log_info("agent: reading every job's counts with one GET /v1/jobs per namespace and tick");
		a->jobs_list = 1;
	}
	for (size_t i = 0; rc == 0 && i < a->nqs; i++) {
		struct agent_queue *s = &a->qs[i];
		const struct nomad_stub *st = NULL;
		const struct nomad_stub_group *sg;

		if (!want_nomad(s))
			continue;
		for (size_t k = 0; k < b.n && st == NULL; k++)
			if (str_cmp0(b.calls[k].namespace, s->q->scale.namespace) == 0)
				st = nomad_stub_find(&b.calls[k], s->q->scale.job);
		if (st == NULL || (sg = nomad_stub_group(st, s->q->scale.group)) == NULL) {
			s->status_due = true;	/* its answer names what is missing */
			continue;
		}
		if (s->job_index != st->job_modify_index) {
			if (s->job_index != 0)
				agent_queue_job_changed(s);
			s->job_index = st->job_modify_index;
			s->status_due = true;
		}
		if (!s->nomad_ok || s->unsure)
			s->status_due = true;
		s->running = sg->running;
		s->placed = sg->running + sg->starting;
		s->queued = sg->queued;
		if (st->stop && !s->job_stopped)
			log_warnx("queue %s: job %s is stopped; not scaling it", s->name, s->q->scale.job);
		s->job_stopped = st->stop;
		if (!s->status_due)
			agent_queue_nomad_ok(s, now_ms);
	}
	agent_batch_free(&b);
	return rc;
}

/* Placed below Desired for longer than startup: Nomad cannot place what it was asked for. */
static void
agent_queue_capacity(struct agent_queue *s, int64_t now_ms)
{
	const struct scale_conf *sc = &s->q->scale;
	bool short_of = !s->job_stopped && (s->placed < s->desired || s->queued > 0);
	char text[512];

	if (!short_of) {
		if (s->blocked)
			log_info("queue %s: Nomad placed every allocation of job %s group %s (%d); "
			    "scale-ups resume", s->name, sc->job, sc->group, s->desired);
		s->blocked = false;
		s->short_since_ms = 0;
		return;
	}
	if (s->short_since_ms == 0)
		s->short_since_ms = now_ms;
	if (s->blocked || now_ms - s->short_since_ms < sc->startup_ms)
		return;
	s->blocked = true;
	snprintf(text, sizeof(text), "job %s group %s: Nomad placed %d of %d allocations for %llds (%d "
	    "queued): the cluster is full; holding scale-ups until it places them", sc->job, sc->group,
	    s->placed, s->desired, (long long)((now_ms - s->short_since_ms) / 1000), s->queued);
	log_warnx("queue %s: %s", s->name, text);
	alert_fire(&s->q->alert, s->name, ALERT_NOMAD_BLOCKED, sc->job, text);
}

/* Phase 2: Nomad's counts (and, when due, the job's bounds) for every due queue that scales a job. */
static void
agent_nomad_status(struct agent *a, double now_s, int64_t now_ms)
{
	struct agent_batch b;
	size_t *callno = calloc(a->nqs ? a->nqs : 1, sizeof(*callno));
	bool listed;

	if (callno == NULL) {
		log_error("agent: out of memory for %zu nomad calls", a->nqs);
		return;
	}
	for (size_t i = 0; i < a->nqs; i++) {
		struct agent_queue *s = &a->qs[i];

		s->backing_off = false;
		if (!s->due || s->q->scale.target != SCALE_TARGET_NOMAD)
			continue;
		if (now_ms < s->nomad_retry_at_ms) {
			s->nomad_ok = false;	/* unknown while we back off */
			s->status_due = true;
			s->backing_off = true;
		}
	}
	listed = a->jobs_list >= 0 && agent_jobs_list(a, now_ms) == 0;
	for (size_t i = 0; !listed && i < a->nqs; i++)
		a->qs[i].status_due = true;

	if (agent_batch_new(&b, a->nqs) == 0) {
		if (agent_batch_unique(a, &b, NOMAD_CALL_STATUS, want_status, callno) >= 0)
			agent_batch_run(a, &b);
		for (size_t i = 0; i < a->nqs; i++) {
			struct agent_queue *s = &a->qs[i];
			struct nomad_call c;

			if (!want_status(s) || b.n == 0)
				continue;
			c = b.calls[callno[i]];
			if (c.result == NOMAD_OK && !c.group_found) {
				c.result = NOMAD_BAD_REQUEST;
				snprintf(c.error, sizeof(c.error), "job has no group \"%s\"", s->q->scale.group);
			}
			if (c.result != NOMAD_OK) {
				s->nomad_ok = false;
				agent_queue_nomad_failed(s, "status", &c, now_ms);
				continue;
			}
			agent_queue_status(a, s, &c, now_s, now_ms);
		}
		agent_batch_free(&b);
	}
	if (agent_batch_new(&b, a->nqs) == 0) {
		if (agent_batch_unique(a, &b, NOMAD_CALL_JOB, want_job, callno) >= 0)
			agent_batch_run(a, &b);
		for (size_t i = 0; i < a->nqs; i++) {
			struct agent_queue *s = &a->qs[i];
			const struct nomad_call *c;

			if (!want_job(s) || b.n == 0)
				continue;
			c = &b.calls[callno[i]];
			if (c->result == NOMAD_OK && c->group_found) {
				s->job_read_due = false;
				s->job_min = c->scaling_min;
				s->job_max = c->scaling_max;
				s->bounds_learnt = false;
				agent_bounds_note(s);
			} else if (c->result == NOMAD_FORBIDDEN) {
				s->job_read_due = false;
				s->job_read_denied = true;
				log_warnx("queue %s: the Nomad token may not read job %s (read-job): its "
				    "scaling bounds are learnt from Nomad's answers instead", s->name,
				    s->q->scale.job);
			} else
				log_debug("queue %s: reading job %s: %s (%s)", s->name, s->q->scale.job,
				    nomad_result_name(c->result), c->error);
		}
		agent_batch_free(&b);
	}
	for (size_t i = 0; i < a->nqs; i++)
		if (a->qs[i].due && a->qs[i].q->scale.target == SCALE_TARGET_NOMAD && a->qs[i].nomad_ok)
			agent_queue_capacity(&a->qs[i], now_ms);
	free(callno);
}

/* Blocked: a scale-up is held (never turned into anything else) until Nomad places what it has. */
static void
agent_hold_blocked(struct agent_queue *s, int64_t now_ms)
{
	struct decision *d = &s->dec;
	int wanted = d->count;

	d->count = s->desired;
	d->dir = DIR_NONE;
	d->rule = "blocked";
	snprintf(d->reason, sizeof(d->reason), "hold %d: blocked rule: Nomad has placed %d of %d "
	    "allocations for %llds (%d queued), no scale-up until it places them; wants %d",
	    s->desired, s->placed, s->desired, (long long)((now_ms - s->short_since_ms) / 1000),
	    s->queued, wanted);
}

/* A 400 that named a bound of the job's scaling block: ask within it from now on. */
static void
agent_queue_learn_bound(struct agent_queue *s, const struct nomad_call *c, int64_t now_ms)
{
	if (c->bound_max >= 0)
		s->job_max = c->bound_max;
	if (c->bound_min >= 0)
		s->job_min = c->bound_min;
	s->bounds_learnt = true;
	s->nomad_errors++;
	agent_queue_note_nomad(s, "scale", c, now_ms);
	agent_bounds_note(s);
}

/* Phase 3: decide for every due queue, then send the scale calls in one batch. */
static void
agent_decide_and_act(struct agent *a, double now_s, int64_t now_ms)
{
	struct queue_view view;
	struct agent_batch b;
	struct nomad_call *c;

	if (agent_batch_new(&b, a->nqs) == -1)
		return;
	for (size_t i = 0; i < a->nqs; i++) {
		struct agent_queue *s = &a->qs[i];
		const struct queue_policy *q = s->q;
		struct scale_conf eff = q->scale;
		struct decide_input in;

		if (!s->due)
			continue;
		memset(&in, 0, sizeof(in));
		in.now = now_s;
		in.sig = &s->ss.cur;
		in.sample_age_s = s->ss.cur.valid ? now_s - s->ss.cur.t : 1e9;
		in.nomad_ok = s->nomad_ok;
		in.desired = s->desired;
		in.running = s->running;
		in.job_stopped = s->job_stopped;
		/* The policy's bounds narrowed by the job's own scaling block. */
		agent_queue_bounds(s, &eff.min, &eff.max);
		decide_next(&s->ds, &eff, q->partitions, q->order_critical, &in, &s->dec);
		s->have_dec = true;
		if (s->blocked && s->dec.dir == DIR_UP)
			agent_hold_blocked(s, now_ms);

		if (s->nomad_ok && s->desired >= eff.max && s->ss.cur.valid &&
		    s->ss.cur.oldest_age_s * 1000 > (double)q->scale.max_age_ms) {
			char text[512];

			snprintf(text, sizeof(text), "queue %s held at max %d workers while its "
			    "oldest message is %.1fs old (max_age %.1fs)", s->name, eff.max,
			    s->ss.cur.oldest_age_s, (double)q->scale.max_age_ms / 1000);
			alert_fire(&q->alert, s->name, ALERT_AT_MAX_OVER_AGE, s->name, text);
		}
		if (s->dec.dir == DIR_NONE || s->dec.count == s->desired) {
			log_debug("queue %s: %s", s->name, s->dec.reason);
			continue;
		}
		if (q->scale.target == SCALE_TARGET_NONE || agent_dry_run(a) || !a->leader) {
			const char *why = q->scale.target == SCALE_TARGET_NONE ? "observe-only" :
			    agent_dry_run(a) ? "dry-run" : "standby (another agent holds the lease)";

			log_info("queue %s: %s: would scale: %s", s->name, why, s->dec.reason);
			decide_applied(&s->ds, &s->dec, now_s);
			if (q->scale.target == SCALE_TARGET_NONE)
				s->desired = s->running = s->placed = s->dec.count;
			continue;
		}
		agent_queue_view(s, now_s, &view);
		c = agent_batch_add(&b, i, NOMAD_CALL_SCALE, &q->scale);
		c->count = s->dec.count;
		c->message = s->dec.reason;
		c->meta_json = b.metas[b.n - 1] = agent_view_meta(&view);
	}
	agent_batch_run(a, &b);
	for (size_t k = 0; k < b.n; k++) {
		struct agent_queue *s = &a->qs[b.idx[k]];

		c = &b.calls[k];
		if (c->result == NOMAD_OK) {
			log_info("queue %s: scaled: %s", s->name, s->dec.reason);
			decide_applied(&s->ds, &s->dec, now_s);
			if (s->dec.dir == DIR_UP)
				s->actions_up++;
			else
				s->actions_down++;
			/* Placement starts now: a scale-up not placed within startup is blocked. */
			if (s->dec.dir == DIR_UP && s->placed < s->dec.count)
				s->short_since_ms = now_ms;
			s->desired = s->dec.count;
			/* Known without reading it back: the job changed by this write alone. */
			if (c->job_modify_index != 0)
				s->job_index = c->job_modify_index;
			s->deployment_logged = false;
			s->unsure = false;
			agent_queue_nomad_ok(s, now_ms);
			continue;
		}
		/*
		 * An attempt that timed out, lost its connection or got a 5xx may
		 * have been applied; so may the first attempt of a call whose retry
		 * met the deployment that attempt started. Read the status again
		 * before the next decision: if Nomad has the count, it was applied.
		 */
		if ((c->result == NOMAD_DEPLOYMENT_ACTIVE && c->attempts > 1) ||
		    (nomad_result_transient(c->result) && c->result != NOMAD_DEPLOYMENT_ACTIVE)) {
			s->unsure = true;
			s->unsure_dec = s->dec;
			s->unsure_t = now_s;
			s->unsure_from = s->desired;
			s->status_due = true;
		}
		if (c->result == NOMAD_DEPLOYMENT_ACTIVE) {
			/* Not an error and no cooldown: Nomad takes the count once the deployment ends. */
			if (!s->deployment_logged)
				log_info("queue %s: job %s has an active deployment; will ask for %d "
				    "again next tick", s->name, s->q->scale.job, s->dec.count);
			s->deployment_logged = true;
		} else if (c->result == NOMAD_OUT_OF_BOUNDS)
			agent_queue_learn_bound(s, c, now_ms);
		else
			agent_queue_nomad_failed(s, "scale", c, now_ms);
	}
	agent_batch_free(&b);
}

static void agent_publish(struct agent *a);

static void
agent_tick(struct agent *a)
{
	int64_t now_ms = util_now_ms();
	double now_s = util_now_s();
	bool any = false;

	for (size_t i = 0; i < a->nqs; i++) {
		struct agent_queue *s = &a->qs[i];

		s->due = now_ms >= s->next_eval_ms;
		if (s->due) {
			any = true;
			/* Keep the phase; skip missed ticks rather than bunching them. */
			s->next_eval_ms += s->q->scale.interval_ms;
			if (s->next_eval_ms <= now_ms)
				s->next_eval_ms = now_ms + s->q->scale.interval_ms;
		}
	}
	if (!any)
		return;
	agent_sample(a, now_s, now_ms);
	if (a->cfg->agent.lease_key != NULL && a->cfg->agent.lease_key[0] != '\0') {
		int held = a->redis_down_since_ms != 0 ? -1 :
		    redis_agent_lease(redis_servers_at(a->rs, 0), a->cfg->agent.lease_key, a->owner, a->cfg->agent.lease_ttl_ms);
		bool leader = held == 1;

		if (leader != a->leader)
			log_info("agent: %s the lease %s", leader ? "acquired" : "does not hold",
			    a->cfg->agent.lease_key);
		a->leader = leader;
	} else
		a->leader = true;
	agent_nomad_status(a, now_s, now_ms);
	agent_decide_and_act(a, now_s, now_ms);
	a->ticks++;
	a->last_tick_s = util_now_s() - now_s;
	a->last_tick_ms = util_now_ms();
	agent_publish(a);
}

static int64_t
agent_next_due(const struct agent *a)
{
	int64_t next = util_now_ms() + AGENT_MAX_WAIT_MS;

	for (size_t i = 0; i < a->nqs; i++)
		if (a->qs[i].next_eval_ms < next)
			next = a->qs[i].next_eval_ms;
	return next;
}

/* --- snapshots for the HTTP endpoint ------------------------------------ */

static void
agent_publish(struct agent *a)
{
	struct strbuf b = { 0 };
	char *status = agent_status_json(a, util_now_s());

	agent_metrics_render(a, &b);
	if (b.oom || status == NULL) {
		strbuf_free(&b);
		cJSON_free(status);
		return;
	}
	pthread_mutex_lock(&a->snap_lock);
	free(a->snap_metrics);
	cJSON_free(a->snap_status);
	a->snap_metrics = strbuf_steal(&b);
	a->snap_status = status;
	a->snap_ms = a->last_tick_ms;
	/* A tick is bounded by the timeouts; computed here so the HTTP thread never reads the config. */
	a->snap_stall_ms = STALL_BASE_MS + a->cfg->nomad.timeout_ms * 2 +
	    a->cfg->redis.command_timeout_ms * 2;
	agent_readiness(a, util_now_s(), a->snap_unready, sizeof(a->snap_unready));
	pthread_mutex_unlock(&a->snap_lock);
}

static void
agent_http(void *arg, const char *method, const char *path, struct httpd_reply *r)
{
	struct agent *a = arg;

	r->status = 200;
	r->content_type = "text/plain; charset=utf-8";
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		r->status = 405;
		r->body = strdup("method not allowed\n");
		return;
	}
	pthread_mutex_lock(&a->snap_lock);
	if (strcmp(path, "/metrics") == 0) {
		r->content_type = "text/plain; version=0.0.4; charset=utf-8";
		r->body = strdup(a->snap_metrics ? a->snap_metrics : "");
	} else if (strcmp(path, "/v1/status") == 0) {
		r->content_type = "application/json";
		r->body = strdup(a->snap_status ? a->snap_status : "{}");
	} else if (strcmp(path, "/healthz") == 0) {
		/* Healthy while the loop keeps ticking. */
		int64_t age = util_now_ms() - a->snap_ms;

		if (a->snap_ms == 0 || age > a->snap_stall_ms) {
			r->status = 503;
			r->body = strdup("loop stalled\n");
		} else
			r->body = strdup("ok\n");
	} else if (strcmp(path, "/readyz") == 0) {
		int64_t age = util_now_ms() - a->snap_ms;

		r->status = 503;
		if (a->snap_ms == 0 || age > a->snap_stall_ms)
			r->body = strdup("loop stalled\n");
		else if (a->snap_unready[0] != '\0') {
			char line[sizeof(a->snap_unready) + 1];

			snprintf(line, sizeof(line), "%s\n", a->snap_unready);
			r->body = strdup(line);
		} else {
			r->status = 200;
			r->body = strdup("ok\n");
		}
	} else {
		r->status = 404;
		r->body = strdup("not found\n");
	}
	pthread_mutex_unlock(&a->snap_lock);
}

/* --- the command ---------------------------------------------------------- */

static void
agent_usage(FILE *f)
{
	fprintf(f, "usage: scaleno agent [-c FILE] [--dry-run] [-v]\n");
}

int
cmd_agent(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct agent a;
	char err[256], host[64];
	bool verbose = false, stop = false, reload = false;
	int ch;

	memset(&a, 0, sizeof(a));
	optind = 1;
	while ((ch = getopt_long(argc, argv, "c:nvh", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': a.config_path = optarg; break;
		case 'n': a.dry_run_flag = true; break;
		case 'v': verbose = true; break;
		case 'h': agent_usage(stdout); return EXIT_OK;
		default: agent_usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "scaleno agent: unexpected argument \"%s\"\n", argv[optind]);
		agent_usage(stderr);
		return EXIT_USAGE;
	}
	if (a.config_path == NULL)
		a.config_path = config_default_path();
	if (cli_load_config_flags("agent", a.config_path, 0, &a.cfg) != EXIT_OK)
		return EXIT_USAGE;
	log_init("scaleno", verbose ? LOG_LVL_DEBUG : a.cfg->log.level, a.cfg->log.format,
	    a.cfg->log.syslog);
	if (gethostname(host, sizeof(host)) == -1)
		strcpy(host, "unknown");
	host[sizeof(host) - 1] = '\0';
	snprintf(a.owner, sizeof(a.owner), "%s:%d:%lld", host, (int)getpid(),
	    (long long)util_wall_ms());
	pthread_mutex_init(&a.snap_lock, NULL);
	if (agent_signals_setup() == -1 ||
	    agent_clients(&a, &a.rs, &a.nc, err, sizeof(err)) == -1) {
		log_error("agent: cannot start: %s", err);
		config_free(a.cfg);
		return EXIT_RUNTIME;
	}
	if ((a.qs = agent_build_states(a.cfg, NULL, 0, util_now_ms())) == NULL) {
		log_error("agent: out of memory");
		return EXIT_RUNTIME;
	}
	a.nqs = a.cfg->nqueues;
	agent_listen(&a);
	log_info("agent: started with %zu queue%s%s (redis %s, nomad %s)", a.nqs,
	    a.nqs == 1 ? "" : "s", agent_dry_run(&a) ? ", dry-run" : "",
	    a.cfg->redis.address, a.cfg->nomad.address);

	while (!stop) {
		if (reload) {
			reload = false;
			agent_reload_config(&a);
		}
		agent_tick(&a);
		agent_wait(agent_next_due(&a) - util_now_ms(), &stop, &reload);
	}

	log_info("agent: signal received, exiting");
	if (a.leader && a.cfg->agent.lease_key != NULL && a.cfg->agent.lease_key[0] != '\0' &&
	    redis_agent_lease_release(redis_servers_at(a.rs, 0), a.cfg->agent.lease_key, a.owner) == 0)
		log_info("agent: released the lease %s", a.cfg->agent.lease_key);
	httpd_stop(a.http);
	free(a.http_listen);
	agent_free_states(a.qs, a.nqs);
	redis_servers_free(a.rs);
	nomad_client_free(a.nc);
	config_free(a.cfg);
	free(a.snap_metrics);
	cJSON_free(a.snap_status);
	pthread_mutex_destroy(&a.snap_lock);
	selfpipe_close();
	return EXIT_OK;
}
