/*
 * sample.c — see include/sample.h.
 *
 * Rates come from differences of Redis's cumulative counters, so a single
 * lost tick costs nothing: the next good reading measures over the longer
 * interval. Smoothing is an EWMA whose weight depends on the elapsed time,
 * so irregular ticks (a slow Redis, a simulator) weigh correctly.
 */
#include <math.h>
#include <string.h>

#include "sample.h"

/* The variance of the raw arrival rate is averaged over this many tau. */
#define NOISE_SPAN 10.0

void
sample_state_init(struct sample_state *st, double tau_s)
{
	memset(st, 0, sizeof(*st));
	st->tau_s = tau_s;
}

/* Weight of a new observation made dt seconds after the previous one. */
static double
ewma_alpha(double dt, double tau)
{
	if (tau <= 0)
		return 1.0;
	return 1.0 - exp(-dt / tau);
}

static void
levels_from(struct signals *s, const struct raw_sample *in)
{
	s->t = in->t;
	s->undelivered = in->lag > 0 ? in->lag : 0;
	s->pending = in->pending > 0 ? in->pending : 0;
	s->backlog = s->undelivered + s->pending;
	s->backlog_estimated = in->lag_estimated;
	s->oldest_age_s = in->oldest_age_ms > 0 ? (double)in->oldest_age_ms / 1000.0 : 0.0;
	s->dlq_length = in->dlq_length;
	s->retry_length = in->retry_length;
	s->halted = in->halted;
}

void
sample_levels(const struct raw_sample *in, struct signals *out)
{
	memset(out, 0, sizeof(*out));
	if (in->ok)
		levels_from(out, in);
	out->valid = in->ok;
}

/* Completed messages so far: read by the group and no longer pending. */
static int64_t
completed_total(const struct raw_sample *s)
{
	return s->entries_read - s->pending;
}

void
sample_update(struct sample_state *st, const struct raw_sample *in, struct signals *out)
{
	struct signals *cur = &st->cur;
	double dt, a, lambda, mu, trend, slope, old_lambda;
	int64_t dcompleted;
	int64_t prev_backlog;

	if (!in->ok) {
		/* Keep the rates for whoever looks, but nobody may act on them. */
		cur->valid = false;
		goto done;
	}
	if (st->have_prev) {
		dt = in->t - st->prev.t;
		if (!(dt > 0))
			goto done;	/* a repeated or out-of-order reading carries no news */
	}
	if (!st->have_prev || in->entries_added < st->prev.entries_added ||
	    in->entries_read < st->prev.entries_read) {
		/*
		 * First reading, or the counters went backwards (stream
		 * recreated, Redis restarted without persistence): the levels
		 * are good, the rates start over from the next reading.
		 */
		levels_from(cur, in);
		cur->valid = true;
		cur->rates_valid = false;
		cur->arrival_rate = cur->arrival_slope = cur->arrival_noise = 0;
		st->arrival_var = 0;
		cur->completion_rate = cur->trend = 0;
		st->prev = *in;
		st->have_prev = true;
		goto done;
	}

	/* Failed readings leave the levels alone, so this is the last good backlog. */
	prev_backlog = cur->backlog;
	levels_from(cur, in);
	cur->valid = true;

	lambda = (double)(in->entries_added - st->prev.entries_added) / dt;
	/* Claims and deletions can shrink pending without a read: never below 0. */
	dcompleted = completed_total(in) - completed_total(&st->prev);
	mu = dcompleted > 0 ? (double)dcompleted / dt : 0.0;
	trend = (double)(cur->backlog - prev_backlog) / dt;

	if (!cur->rates_valid) {
		/* The first measured rate is the estimate; no slope yet. */
		cur->arrival_rate = lambda;
		cur->completion_rate = mu;
		cur->trend = trend;
		cur->arrival_slope = 0;
		cur->rates_valid = true;
	} else {
		a = ewma_alpha(dt, st->tau_s);
		old_lambda = cur->arrival_rate;
		/*
		 * Noise of the smoothed rate: the raw variance (averaged over
		 * a longer span, so it is itself steady) times the share an
		 * EWMA lets through, alpha / (2 - alpha).
		 */
		st->arrival_var += ewma_alpha(dt, NOISE_SPAN * st->tau_s) *
		    ((lambda - old_lambda) * (lambda - old_lambda) - st->arrival_var);
		cur->arrival_noise = sqrt(st->arrival_var * a / (2.0 - a));
		cur->arrival_rate += a * (lambda - cur->arrival_rate);
		cur->completion_rate += a * (mu - cur->completion_rate);
		cur->trend += a * (trend - cur->trend);
		slope = (cur->arrival_rate - old_lambda) / dt;
		cur->arrival_slope += a * (slope - cur->arrival_slope);
	}
	st->prev = *in;
done:
	if (out != NULL)
		*out = *cur;
}
