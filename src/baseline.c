/*
 * baseline.c — see include/baseline.h.
 *
 * target-value (nomad-autoscaler plugins/builtin/strategy/target-value):
 * the metric is the backlog per Running allocation, factor = metric/target;
 * down below 1 - threshold, up above 1 + threshold, new = ceil(count x
 * factor) (ceil(factor) from zero), capped to [min, max]. Its count is
 * Running, not Desired, and one cooldown follows every action.
 *
 * HPA AverageValue on an External metric: ratio = backlog / (target x
 * current); inside the tolerance keep current, else ceil(backlog / target).
 * Recommendations are stabilized (up window 0 s, down window 300 s: the
 * highest of the last 5 minutes) and rate-limited per 15 s period (up: the
 * larger of +4 pods and +100%; down: 100%). minReplicas is at least 1.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "baseline.h"

int
baseline_parse(const char *name, enum baseline_kind *k)
{
	if (strcmp(name, "target-value") == 0)
		*k = BASELINE_TARGET_VALUE;
	else if (strcmp(name, "hpa") == 0)
		*k = BASELINE_HPA;
	else
		return -1;
	return 0;
}

const char *
baseline_name(enum baseline_kind k)
{
	return k == BASELINE_HPA ? "hpa" : "target-value";
}

void
baseline_init(struct baseline_state *b, enum baseline_kind k, const struct scale_conf *sc, double start)
{
	memset(b, 0, sizeof(*b));
	b->kind = k;
	b->target = sc->backlog_per_worker > 0 ? sc->backlog_per_worker : 1;
	b->min = sc->min;
	b->max = sc->max;
	if (k == BASELINE_HPA && b->min < 1)
		b->min = 1;
	b->next_eval = start;
	b->cooldown_until = -INFINITY;
}

static int
cap_count(const struct baseline_state *b, int64_t v)
{
	if (v < b->min)
		return b->min;
	if (v > b->max)
		return b->max;
	return (int)v;
}

static int
target_value_next(struct baseline_state *b, double now, int64_t backlog, int desired, int running,
    char *reason, size_t len)
{
	double metric, factor;
	int64_t want;
	int next;

	if (now < b->cooldown_until) {
		snprintf(reason, len, "target-value: cooldown %.0fs left", b->cooldown_until - now);
		return desired;
	}
	metric = (double)backlog / (running > 0 ? running : 1);
	factor = metric / b->target;
	if (running == 0) {
		if (!(factor > 0)) {
			snprintf(reason, len, "target-value: count 0, factor 0");
			return desired;
		}
		want = (int64_t)ceil(factor);
	} else if (factor < 1 - TV_THRESHOLD || factor > 1 + TV_THRESHOLD) {
		want = (int64_t)ceil(running * factor);
	} else {
		snprintf(reason, len, "target-value: factor %.3f within threshold", factor);
		return desired;
	}
	next = cap_count(b, want);
	if (next == running) {
		snprintf(reason, len, "target-value: factor %.3f, count %d unchanged", factor, running);
		return desired;
	}
	/* The plugin scales whenever the new count differs from Running. */
	b->cooldown_until = now + TV_COOLDOWN_S;
	snprintf(reason, len, "target-value: scaling %s because factor is %f (running %d -> %d)",
	    next > running ? "up" : "down", factor, running, next);
	return next;
}

/* Drop history older than span before now. */
static void
hist_trim(double *t, int *v, unsigned *n, double now, double span)
{
	unsigned i, j = 0;

	for (i = 0; i < *n; i++) {
		if (t[i] > now - span) {
			t[j] = t[i];
			v[j] = v[i];
			j++;
		}
	}
	*n = j;
}

static void
hist_add(double *t, int *v, unsigned *n, double now, int val)
{
	if (*n == BASELINE_HIST) {
		memmove(t, t + 1, (BASELINE_HIST - 1) * sizeof(*t));
		memmove(v, v + 1, (BASELINE_HIST - 1) * sizeof(*v));
		(*n)--;
	}
	t[*n] = now;
	v[*n] = val;
	(*n)++;
}

static int
hpa_next(struct baseline_state *b, double now, int64_t backlog, int desired, char *reason, size_t len)
{
	int current = desired, rec, stab, added = 0, removed = 0, start, limit, next;
	double ratio;
	unsigned i;

	/* replica calculator: AverageValue of an external metric */
	ratio = current > 0 ? (double)backlog / (b->target * current) : INFINITY;
	if (current > 0 && fabs(ratio - 1.0) <= HPA_TOLERANCE)
		rec = current;
	else
		rec = (int)fmin(ceil((double)backlog / b->target), 1e6);

	/* stabilization: up window 0 s (the newest), down window 300 s (the highest) */
	hist_trim(b->rec_t, b->rec_v, &b->nrec, now, HPA_DOWN_WINDOW_S);
	hist_add(b->rec_t, b->rec_v, &b->nrec, now, rec);
	stab = rec;
	for (i = 0; i < b->nrec; i++)
		if (b->rec_v[i] > stab)
			stab = b->rec_v[i];
	next = current;
	if (next < rec)
		next = rec;
	if (next > stab)
		next = stab;

	/* rate limits over the last period */
	hist_trim(b->chg_t, b->chg_v, &b->nchg, now, HPA_PERIOD_S);
	for (i = 0; i < b->nchg; i++) {
		if (b->chg_v[i] > 0)
			added += b->chg_v[i];
		else
			removed -= b->chg_v[i];
	}
	start = current - added + removed;
	if (next > current) {
		int by_pods = start + HPA_UP_PODS;
		int by_pct = (int)ceil(start * (1.0 + HPA_UP_PERCENT / 100.0));
		limit = by_pods > by_pct ? by_pods : by_pct;
		if (next > limit)
			next = limit;
	} else if (next < current) {
		limit = (int)floor(start * (1.0 - HPA_DOWN_PERCENT / 100.0));
		if (next < limit)
			next = limit;
	}
	next = cap_count(b, next);
	if (next != current)
		hist_add(b->chg_t, b->chg_v, &b->nchg, now, next - current);
	snprintf(reason, len, "hpa: ratio %.3f, recommendation %d, stabilized %d, current %d -> %d", ratio, rec,
	    stab, current, next);
	return next;
}

int
baseline_next(struct baseline_state *b, double now, int64_t backlog, int desired, int running,
    char *reason, size_t len)
{
	double period = b->kind == BASELINE_HPA ? HPA_SYNC_S : TV_EVAL_INTERVAL_S;

	if (len > 0)
		reason[0] = '\0';
	if (now < b->next_eval)
		return desired;
	b->next_eval = now + period;
	if (b->kind == BASELINE_HPA)
		return hpa_next(b, now, backlog, desired, reason, len);
	return target_value_next(b, now, backlog, desired, running, reason, len);
}
