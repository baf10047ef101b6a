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
 * Recommendations are stabilized (up window 0 s; down window 300 s, the
 * highest of the last 5 minutes) and rate-limited per 15 s period (up: the
 * larger of +4 pods and +100%; down: 100%). minReplicas is at least 1.
 *
 * hpa-tuned runs the same code with another struct hpa_behavior:
 * scale-down stabilization = the policy's scale.down.stabilization;
 * scale-up stabilization 0 s and one policy, Pods = scale.max per 15 s,
 * selectPolicy Max (never a limit: the count is capped at scale.max);
 * scale-down Percent 100 per 15 s, tolerance 0.1, sync period 15 s.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "baseline.h"

static const char *const baseline_names[BASELINE_NKINDS] = {
	[BASELINE_TARGET_VALUE] = "target-value",
	[BASELINE_HPA] = "hpa",
	[BASELINE_HPA_TUNED] = "hpa-tuned",
};

int
baseline_parse(const char *name, enum baseline_kind *k)
{
	int i;

	for (i = 0; i < BASELINE_NKINDS; i++) {
		if (strcmp(name, baseline_names[i]) == 0) {
			*k = (enum baseline_kind)i;
			return 0;
		}
	}
	return -1;
}

const char *
baseline_name(enum baseline_kind k)
{
	return baseline_names[k];
}

void
baseline_init(struct baseline_state *b, enum baseline_kind k, const struct scale_conf *sc, double start)
{
	memset(b, 0, sizeof(*b));
	b->kind = k;
	b->target = sc->backlog_per_worker > 0 ? sc->backlog_per_worker : 1;
	b->min = sc->min;
	b->max = sc->max;
	if (k != BASELINE_TARGET_VALUE && b->min < 1)
		b->min = 1;
	if (k == BASELINE_HPA)
		b->hpa = (struct hpa_behavior){ HPA_DOWN_WINDOW_S, HPA_UP_PODS, HPA_UP_PERCENT,
			HPA_DOWN_PERCENT };
	else if (k == BASELINE_HPA_TUNED)
		b->hpa = (struct hpa_behavior){ (double)sc->down_stabilization_ms / 1000.0, sc->max, 0,
			HPA_DOWN_PERCENT };
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

/* Drop the changes older than span before now. */
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

/*
 * Add rec to the down window and return the window's highest
 * recommendation. A recommendation no higher than a newer one can never be
 * the highest again, so only those above every newer one are kept: oldest
 * and highest first, a day's window in a few entries. Should more than
 * BASELINE_HIST falling ones be left, the newest kept one takes rec's time,
 * which holds the count longer, never shorter, than the HPA would.
 */
static int
hpa_stabilize(struct baseline_state *b, double now, int rec)
{
	unsigned i, j = 0;

	for (i = 0; i < b->nrec; i++) {
		if (b->rec_t[i] > now - b->hpa.down_window_s && b->rec_v[i] > rec) {
			b->rec_t[j] = b->rec_t[i];
			b->rec_v[j] = b->rec_v[i];
			j++;
		}
	}
	if (j == BASELINE_HIST) {
		b->rec_t[j - 1] = now;
	} else {
		b->rec_t[j] = now;
		b->rec_v[j] = rec;
		j++;
	}
	b->nrec = j;
	return b->rec_v[0];
}

/* The count the policies let the group reach from current within the period. */
static int
hpa_rate_limit(struct baseline_state *b, double now, int current, int next)
{
	int added = 0, removed = 0, start, limit, by_pct;
	unsigned i;

	hist_trim(b->chg_t, b->chg_v, &b->nchg, now, HPA_PERIOD_S);
	for (i = 0; i < b->nchg; i++) {
		if (b->chg_v[i] > 0)
			added += b->chg_v[i];
		else
			removed -= b->chg_v[i];
	}
	start = current - added + removed;
	if (next > current) {
		/* selectPolicy Max: the larger of the policies' limits */
		limit = start + b->hpa.up_pods;
		if (b->hpa.up_percent > 0) {
			by_pct = (int)ceil(start * (1.0 + b->hpa.up_percent / 100.0));
			if (by_pct > limit)
				limit = by_pct;
		}
		if (next > limit)
			next = limit;
	} else if (next < current) {
		limit = (int)floor(start * (1.0 - b->hpa.down_percent / 100.0));
		if (next < limit)
			next = limit;
	}
	return next;
}

static int
hpa_next(struct baseline_state *b, double now, int64_t backlog, int desired, char *reason, size_t len)
{
	int current = desired, rec, stab, next;
	double ratio;

	/* replica calculator: AverageValue of an external metric */
	ratio = current > 0 ? (double)backlog / (b->target * current) : INFINITY;
	if (current > 0 && fabs(ratio - 1.0) <= HPA_TOLERANCE)
		rec = current;
	else
		rec = (int)fmin(ceil((double)backlog / b->target), 1e6);

	/* stabilization: up window 0 s (the newest), down window (the highest) */
	stab = hpa_stabilize(b, now, rec);
	next = current;
	if (next < rec)
		next = rec;
	if (next > stab)
		next = stab;

	next = cap_count(b, hpa_rate_limit(b, now, current, next));
	if (next != current)
		hist_add(b->chg_t, b->chg_v, &b->nchg, now, next - current);
	snprintf(reason, len, "%s: ratio %.3f, recommendation %d, stabilized %d, current %d -> %d",
	    baseline_name(b->kind), ratio, rec, stab, current, next);
	return next;
}

int
baseline_next(struct baseline_state *b, double now, int64_t backlog, int desired, int running,
    char *reason, size_t len)
{
	double period = b->kind == BASELINE_TARGET_VALUE ? TV_EVAL_INTERVAL_S : HPA_SYNC_S;

	if (len > 0)
		reason[0] = '\0';
	if (now < b->next_eval)
		return desired;
	b->next_eval = now + period;
	if (b->kind == BASELINE_TARGET_VALUE)
		return target_value_next(b, now, backlog, desired, running, reason, len);
	return hpa_next(b, now, backlog, desired, reason, len);
}
