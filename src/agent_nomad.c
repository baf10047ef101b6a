/*
 * agent_nomad.c — the agent's Nomad phases (scaleno(8), "The agent"): the
 * scale status reads and the one GET /v1/jobs per namespace and tick, the
 * job's scaling bounds, capacity ("Blocked"), the history that restores the
 * cooldowns ("What a restart keeps"), the re-read after a lost answer, and
 * the decisions with their scale calls sent in one concurrent batch. Every
 * batch is bounded by nomad.timeout; a failure backs the queue off.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "agent.h"
#include "agent_view.h"
#include "alert.h"
#include "config.h"
#include "decide.h"
#include "log.h"
#include "nomad.h"
#include "util.h"

/* A transient Nomad failure is logged again at most this often. */
#define RELOG_MS 60000
/* Retry backoff after a transient Nomad failure (timeout, 5xx, refused) ... */
#define NOMAD_RETRY_BASE_MS 1000
#define NOMAD_RETRY_CAP_MS 30000
/* ... and after a policy error (403, 404, 400) that an operator may fix. */
#define POLICY_RETRY_BASE_MS 15000
#define POLICY_RETRY_CAP_MS 60000
/* A scaling event within this long after an action of the agent is that action's own. */
#define OWN_EVENT_S 2.0

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
	s->nomad_outage = true;
	s->nomad_outage_scale = strcmp(what, "scale") == 0;
	s->nomad_recovered = false;
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

/*
 * Record a Nomad call that succeeded (scale: it was the scale call). It ends
 * an outage only when it is the kind of call that failed: a status read
 * does not end a refused scale. The recovery is logged at the end of the
 * tick (agent_nomad_recovered), once nothing else has failed since.
 */
static void
agent_queue_nomad_ok(struct agent_queue *s, bool scale)
{
	if (s->nomad_outage && (scale || !s->nomad_outage_scale)) {
		s->nomad_outage = false;
		s->nomad_recovered = true;
	}
	s->nomad_failures = 0;
	s->nomad_down_since_ms = 0;
	s->nomad_last = NOMAD_OK;
	s->nomad_error[0] = '\0';
	s->config_alerted = false;
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
    double now_s)
{
	agent_queue_nomad_ok(s, false);
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
agent_jobs_list(struct agent *a)
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
			agent_queue_nomad_ok(s, false);
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
void
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
	listed = a->jobs_list >= 0 && agent_jobs_list(a) == 0;
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
			agent_queue_status(a, s, &c, now_s);
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
void
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
			agent_queue_nomad_ok(s, true);
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
	/* An outage ended by this tick's calls, none of which failed after it: say so now. */
	for (size_t i = 0; i < a->nqs; i++) {
		struct agent_queue *s = &a->qs[i];

		if (s->nomad_recovered && s->nomad_ok && s->nomad_last == NOMAD_OK)
			log_info("queue %s: nomad answers again for job %s", s->name, s->q->scale.job);
		s->nomad_recovered = false;
	}
}
