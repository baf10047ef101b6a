/*
 * sim_model.c — the queue model of `scaleno simulate` and one run of an
 * algorithm over a trace, with its summary (scaleno-simulate(1)).
 *
 * The point of the model is honesty, not fidelity: it drives the very
 * sample_update and decide_next the agent runs, on the model's clock, so a
 * weakness of the engine shows here before it shows in production.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decide.h"
#include "sample.h"
#include "simulate.h"

struct world {
	double rate, startup;
	int desired, nslots;
	double *start_at;	/* per requested worker: when it consumes */
	double *cohort;		/* waiting messages by arrival second */
	size_t head;		/* oldest second that may hold some */
	int64_t added, done, backlog;
	double arr_carry, cap_carry;
};

static int
world_running(const struct world *w, double now)
{
	int i, n = 0;

	for (i = 0; i < w->desired; i++)
		if (w->start_at[i] <= now)
			n++;
	return n;
}

/* Second t: arrivals at its start, then service in arrival order. */
static void
world_step(struct world *w, size_t t, double arrivals)
{
	double total = arrivals + w->arr_carry, cap, take;
	int64_t n = (int64_t)floor(total);

	w->arr_carry = total - (double)n;
	w->cohort[t] = (double)n;
	w->added += n;
	w->backlog += n;
	cap = world_running(w, (double)t) * w->rate + w->cap_carry;
	while (w->head <= t && cap >= 1) {
		take = floor(fmin(cap, w->cohort[w->head]));
		w->cohort[w->head] -= take;
		cap -= take;
		w->done += (int64_t)take;
		w->backlog -= (int64_t)take;
		if (w->cohort[w->head] >= 1)
			break;
		w->head++;
	}
	/* Seconds without arrivals: skip them, so the head is always the oldest waiting one. */
	while (w->head <= t && w->cohort[w->head] < 1)
		w->head++;
	/* Unused capacity is lost; a fraction of a message is kept for the next second. */
	w->cap_carry = w->backlog > 0 ? fmin(cap, 1.0) : 0;
}

/* Oldest age at time now (the end of the last second stepped). */
static double
world_oldest(const struct world *w, double now)
{
	return (double)w->head < now ? now - (double)w->head : 0;
}

static void
world_set(struct world *w, int count, double now)
{
	int i;

	if (count > w->nslots)
		count = w->nslots;
	for (i = w->desired; i < count; i++)
		w->start_at[i] = now + w->startup;
	w->desired = count;
}

const char *
sim_algo_name(enum sim_algo a)
{
	if (a == SIM_SCALENO)
		return "scaleno";
	return baseline_name(SIM_BASELINE_OF(a));
}

void
sim_result_free(struct sim_result *r)
{
	for (size_t i = 0; r->timeline != NULL && i < r->n; i++)
		free(r->timeline[i].reason);
	free(r->timeline);
	r->timeline = NULL;
	r->n = 0;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int
summarize(struct sim_result *r, double max_age_s)
{
	double *ages, surge_at;
	size_t i, rank;
	long last_surge = -1;

	if ((ages = malloc(r->n * sizeof(*ages))) == NULL)
		return -1;
	for (i = 0; i < r->n; i++)
		ages[i] = r->timeline[i].arrivals;
	qsort(ages, r->n, sizeof(*ages), cmp_double);
	surge_at = SIM_SURGE_FACTOR * ages[r->n / 2];
	for (i = 0; i < r->n; i++) {
		const struct sim_point *p = &r->timeline[i];
		if (p->arrivals > surge_at)
			last_surge = (long)i;
		if (last_surge >= 0 && (double)((long)i - last_surge) < fmax(max_age_s, 1.0)) {
			r->surge_seconds++;
			if (p->oldest_age_s <= max_age_s)
				r->surge_within++;
		}
	}
	for (i = 0; i < r->n; i++) {
		const struct sim_point *p = &r->timeline[i];
		ages[i] = p->oldest_age_s;
		if (p->backlog > r->peak_backlog)
			r->peak_backlog = p->backlog;
		if (p->oldest_age_s > max_age_s)
			r->seconds_over++;
		if (p->oldest_age_s > r->max_age_seen_s)
			r->max_age_seen_s = p->oldest_age_s;
	}
	qsort(ages, r->n, sizeof(*ages), cmp_double);
	rank = (size_t)ceil(0.99 * (double)r->n);
	r->p99_age_s = ages[rank > 0 ? rank - 1 : 0];
	free(ages);
	return 0;
}

int
sim_run(const struct queue_policy *q, const struct sim_trace *tr, const struct sim_params *p,
    enum sim_algo algo, struct sim_result *out, char *err, size_t errlen)
{
	const struct scale_conf *sc = &q->scale;
	struct world w;
	struct sample_state ss;
	struct decide_state ds;
	struct baseline_state bs;
	struct signals sig;
	struct raw_sample raw;
	struct decide_input in;
	struct decision d;
	char why[256];
	long interval_s = lround((double)sc->interval_ms / 1000.0);
	double now;
	size_t t;
	int next, prev;

	memset(out, 0, sizeof(*out));
	memset(&w, 0, sizeof(w));
	out->algo = algo;
	if (interval_s < 1)
		interval_s = 1;
	w.rate = p->service_rate;
	w.startup = p->startup_s;
	w.nslots = sc->max > p->initial ? sc->max : p->initial;
	w.start_at = calloc((size_t)w.nslots + 1, sizeof(*w.start_at));
	w.cohort = calloc(tr->n + 1, sizeof(*w.cohort));
	out->timeline = calloc(tr->n, sizeof(*out->timeline));
	if (w.start_at == NULL || w.cohort == NULL || out->timeline == NULL) {
		snprintf(err, errlen, "out of memory for a %zu-second trace", tr->n);
		goto fail;
	}
	out->n = tr->n;		/* calloc'd: every reason NULL, so freeing is safe from here */
	/* The initial workers are already running. */
	w.desired = p->initial;
	for (int i = 0; i < w.desired; i++)
		w.start_at[i] = -INFINITY;

	sample_state_init(&ss, 3.0 * (double)interval_s);
	decide_state_init(&ds);
	if (algo != SIM_SCALENO)
		baseline_init(&bs, SIM_BASELINE_OF(algo), sc, 0);

	for (t = 0; t < tr->n; t++) {
		struct sim_point *pt = &out->timeline[t];

		out->worker_seconds += w.desired;
		world_step(&w, t, tr->arrivals[t]);
		now = (double)(t + 1);
		pt->t = now;
		pt->arrivals = tr->arrivals[t];
		pt->backlog = w.backlog;
		pt->oldest_age_s = world_oldest(&w, now);
		pt->dir = DIR_NONE;
		prev = w.desired;
		if ((t + 1) % (size_t)interval_s == 0) {
			if (algo == SIM_SCALENO) {
				memset(&raw, 0, sizeof(raw));
				raw.t = now;
				raw.ok = true;
				raw.lag = w.backlog;
				raw.entries_added = w.added;
				raw.entries_read = w.done;
				raw.oldest_age_ms = (int64_t)llround(pt->oldest_age_s * 1000);
				raw.length = w.backlog;
				sample_update(&ss, &raw, &sig);
				memset(&in, 0, sizeof(in));
				in.now = now;
				in.sig = &sig;
				in.nomad_ok = true;
				in.desired = w.desired;
				in.running = world_running(&w, now);
				decide_next(&ds, sc, q->partitions, q->order_critical, &in, &d);
				next = d.count;
				if (d.dir != DIR_NONE)
					decide_applied(&ds, &d, now);
			} else {
				next = baseline_next(&bs, now, w.backlog, w.desired, world_running(&w, now), why,
				    sizeof(why));
			}
			if (next != prev) {
				world_set(&w, next, now);
				pt->dir = next > prev ? DIR_UP : DIR_DOWN;
				pt->reason = strdup(algo == SIM_SCALENO ? d.reason : why);
				if (pt->reason == NULL) {
					snprintf(err, errlen, "out of memory");
					goto fail;
				}
				out->actions++;
			}
		}
		pt->desired = w.desired;
		pt->running = world_running(&w, now);
	}
	if (summarize(out, (double)sc->max_age_ms / 1000.0) == -1) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	free(w.start_at);
	free(w.cohort);
	return 0;
fail:
	free(w.start_at);
	free(w.cohort);
	sim_result_free(out);
	return -1;
}
