/*
 * decide.c — see include/decide.h and scaleno-simulate(1), DECISION RULES.
 *
 * Three demand rules (backlog, arrival rate, oldest age); the largest wins.
 * max_age is a budget both ways (budget_up, budget_keep). Up is prompt,
 * down is slow: the count only falls to the highest sustained demand of the
 * whole stabilization window, one step per cooldown, and never on missing
 * data, a growing backlog, rising arrivals or a wait above half of max_age
 * -- except workers lent to a transient, given back once it is over (down
 * to a reserve while spikes recur: spike_reserve).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "decide.h"

/* Time allowed to clear today's backlog, as a fraction of max_age. */
#define DRAIN_FRACTION 0.5
/*
 * Dead band of the rate rule: a capacity shortfall under 10% with nothing
 * else pressing (HPA's tolerance) is not a reason to scale ...
 */
#define UP_TOLERANCE 0.1
/* ... nor is a shortfall the arrival rate's own noise explains. */
#define UP_NOISE_SIGMAS 2.0
/*
 * The per-worker rate is only learnt once the workers have been busy, and
 * Running stable, for DECIDE_SETTLE_INTERVALS: the completion rate is an
 * EWMA (tau = 3 intervals) and lags both a change of the worker count and
 * the start of a busy spell.
 */
/*
 * Before the first busy spell the completion rate per worker is only a lower
 * bound of mu; it takes a clear surge (50% over the current count) with
 * messages waiting to act on it.
 */
#define BOUND_MARGIN 0.5
/* A wait of this fraction of max_age is queueing, whatever the backlog. */
#define WAIT_FRACTION 0.1
/* A rise of the arrival rate counts once it is this many standard deviations clear of noise. */
#define NOISE_SIGMAS 3.0
/* A sample older than this many intervals is stale. */
#define STALE_INTERVALS 3
/*
 * The reserve for recurring spikes: kept for this many stabilization
 * windows after a loan is given back; never counting on more up steps
 * than this to reach the recent spikes' peak need.
 */
#define RESERVE_WINDOWS 2.0
#define RESERVE_MAX_STEPS 8
/* Any count above this is nonsense from a huge backlog; bounds clamp it anyway. */
#define NEED_CAP 1000000.0

void
decide_state_init(struct decide_state *st)
{
	memset(st, 0, sizeof(*st));
	st->last_up_t = -INFINITY;
	st->last_down_t = -INFINITY;
	st->running_since = -INFINITY;
	st->saturated_since = INFINITY;
	st->rates_since = INFINITY;
	st->seen_running = -1;
	st->owned = -1;
	st->last_return_t = -INFINITY;
	st->reserve_until = -INFINITY;
}

const char *
decide_direction_name(enum direction d)
{
	switch (d) {
	case DIR_UP:
		return "up";
	case DIR_DOWN:
		return "down";
	case DIR_NONE:
		break;
	}
	return "none";
}

static int
ceil_count(double x)
{
	if (!(x > 0))
		return 0;
	if (x > NEED_CAP)
		return (int)NEED_CAP;
	/* A hair over an integer is floating-point dust, not one more worker. */
	return (int)ceil(x - 1e-6);
}

static int
clamp_int(int v, int lo, int hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

static void
window_push(struct decide_state *st, const struct scale_conf *sc, double now, int need)
{
	double stab = (double)sc->down_stabilization_ms / 1000.0;
	double slot = stab / (DECIDE_WINDOW / 2);
	unsigned last;

	/* Drop slots that ended before the window began. */
	while (st->win_len > 0 && st->win_t[st->win_head] + slot < now - stab) {
		st->win_head = (st->win_head + 1) % DECIDE_WINDOW;
		st->win_len--;
	}
	if (st->win_len > 0) {
		last = (st->win_head + st->win_len - 1) % DECIDE_WINDOW;
		/* Same slot, or no room left: fold into the newest slot (max keeps it safe). */
		if (now - st->win_t[last] < slot || st->win_len == DECIDE_WINDOW) {
			if (need > st->win_need[last])
				st->win_need[last] = need;
			return;
		}
	}
	last = (st->win_head + st->win_len) % DECIDE_WINDOW;
	st->win_t[last] = now;
	st->win_need[last] = need;
	st->win_len++;
}

static int
window_max(const struct decide_state *st)
{
	int m = 0;
	unsigned i;

	for (i = 0; i < st->win_len; i++) {
		int v = st->win_need[(st->win_head + i) % DECIDE_WINDOW];
		if (v > m)
			m = v;
	}
	return m;
}

/*
 * Keep the smoothed arrival rate over the last `startup` seconds. The rise
 * over that span is the projection: "it will rise as much again before new
 * workers consume". A difference over a whole span is far steadier than an
 * instantaneous slope, which noise and the multiplication by startup blow up.
 */
static void
hist_push(double *tv, double *vv, unsigned *head, unsigned *len, double horizon, double now, double v)
{
	double slot = horizon / (DECIDE_RATE_HIST / 2);
	unsigned last;

	while (*len > 1) {
		unsigned second = (*head + 1) % DECIDE_RATE_HIST;
		/* keep one point at or before now - horizon */
		if (tv[second] > now - horizon)
			break;
		*head = second;
		(*len)--;
	}
	if (*len > 0) {
		last = (*head + *len - 1) % DECIDE_RATE_HIST;
		if (now - tv[last] < slot || *len == DECIDE_RATE_HIST)
			return;
	}
	last = (*head + *len) % DECIDE_RATE_HIST;
	tv[last] = now;
	vv[last] = v;
	(*len)++;
}

/*
 * The highest (sign 1) or lowest (sign -1) of v and a history ring: the
 * highest smoothed arrival rate over the last `startup` (rate_v), or the
 * rate that was sustained, not a spike's transient (sus_v): the lowest of
 * the smoothed arrival rate plus NOISE_SIGMAS of its noise over the last
 * `startup` + `max_age` (a transient shorter than that is what lent workers
 * and the budget absorb). The noise margin keeps a steady noisy load from
 * reading as lower than it is (the lowest of a noisy rate is below its mean).
 */
static double
hist_extreme(const double *vv, unsigned head, unsigned len, double v, double sign)
{
	unsigned i;

	for (i = 0; i < len; i++)
		v = sign * fmax(sign * v, sign * vv[(head + i) % DECIDE_RATE_HIST]);
	return v;
}

/*
 * Rise of the arrival rate per second over the history, counting only the
 * part of the rise beyond what noise alone gives (NOISE_SIGMAS standard
 * deviations of a difference of two smoothed rates). 0 with under half a
 * horizon of history.
 */
static double
rate_slope(const struct decide_state *st, double horizon, double now, double rate, double noise)
{
	double span, rise;

	if (st->rate_len == 0)
		return 0;
	span = now - st->rate_t[st->rate_head];
	if (span < horizon / 2 || span <= 0)
		return 0;
	rise = rate - st->rate_v[st->rate_head];
	if (rise > 0)
		rise = fmax(0.0, rise - NOISE_SIGMAS * M_SQRT2 * noise);
	return rise / span;
}

/* Appends to a fixed buffer; silently truncates (the reason stays a string). */
static void
reason_add(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
reason_add(char *buf, const char *fmt, ...)
{
	size_t len = strlen(buf);
	va_list ap;

	if (len + 1 >= DECIDE_REASON_LEN)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + len, DECIDE_REASON_LEN - len, fmt, ap);
	va_end(ap);
}

/* The inputs, in the words the reason uses everywhere. */
static void
reason_inputs(char *buf, const struct signals *s, double slope, double mu, bool bound)
{
	if (s->rates_valid)
		reason_add(buf, "arrival %.1f/s %s %.1f/s^2, ", s->arrival_rate,
		    slope >= 0 ? "rising" : "falling", fabs(slope));
	else
		reason_add(buf, "arrival unknown, ");
	if (mu > 0)
		reason_add(buf, "mu %s%.1f/s/worker, ", bound ? ">= " : "", mu);
	else
		reason_add(buf, "mu unknown, ");
	reason_add(buf, "backlog %lld%s, trend %+.1f/s, oldest %.1fs",
	    (long long)s->backlog, s->backlog_estimated ? " (estimated)" : "", s->trend,
	    s->oldest_age_s);
}

static void
hold(struct decision *out, const char *rule, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void
hold(struct decision *out, const char *rule, const char *fmt, ...)
{
	size_t len;
	va_list ap;

	out->dir = DIR_NONE;
	out->rule = rule;
	snprintf(out->reason, sizeof(out->reason), "hold %d: ", out->count);
	len = strlen(out->reason);
	va_start(ap, fmt);
	vsnprintf(out->reason + len, sizeof(out->reason) - len, fmt, ap);
	va_end(ap);
}

/*
 * Evidence that messages queue: more backlog than the running workers hold,
 * some of it not even delivered yet, or a wait of WAIT_FRACTION of max_age.
 * A backlog of one message on two idle workers is neither.
 */
static bool
queueing(const struct signals *s, int running, double max_age)
{
	if (s->undelivered > 0 && s->backlog > (running > 0 ? running : 0))
		return true;
	return max_age > 0 && s->oldest_age_s > WAIT_FRACTION * max_age;
}

/* The demand of each rule, kept together so the reason can name the losers. */
struct demand {
	int backlog, rate, age, arrivals;	/* arrivals: rate rule without the backlog term */
	int sustained;				/* arrivals at the sustained rate (hist_extreme) */
	bool rated;				/* the rate rule ran (mu known, rates settled) */
	double x;				/* rate rule before rounding (workers) */
	double slope;				/* arrival-rate rise per second over startup */
	double clears_in;			/* age rule: seconds the asked-for count needs to clear the backlog */
	double mu;				/* per-worker rate used */
	bool mu_is_bound;			/* mu is only a lower bound */
	bool settling;				/* rates valid but not settled: the rate rule is off */
	bool budget_clear;			/* the backlog clears before a worker asked for now could start */
	int need;
	const char *rule;
};

/*
 * max_age as a budget on the way up. A worker asked for now consumes from
 * `startup` on; until then the running workers, and those in flight from
 * their arrival (in_flight_s from now), consume k messages, oldest first.
 * What is left then: of today's backlog, old = b - k, and of the arrivals
 * meanwhile (lp), fresh. Today's backlog came in at `dense` per second at
 * most (the highest smoothed arrival rate of late), so, at the worst, as a
 * block that dense behind the oldest message and a spread-out rest: the
 * block's end is oldest - b / dense old now. In arrival order a message's
 * age when served grows or falls linearly between such points, so the count
 * after `startup` keeps every one within max_age when the block's end is
 * served in time (at least WAIT_FRACTION of max_age is left to it), the
 * newest within max_age, and it keeps up with the arrivals. Nothing left
 * then (the backlog cleared before a new worker could help): the arrivals
 * alone. Returns the workers (not rounded); 0 when the backlog needs none.
 */
static double
budget_up(const struct signals *s, double mu, double lp, double dense, int cur, int running,
    double in_flight_s, double startup, double max_age)
{
	double b = (double)s->backlog, a = s->oldest_age_s, k, old, fresh, end_age, cap;

	if (b <= 0 || mu <= 0 || max_age <= 0)
		return 0;
	k = (double)running * mu * startup + (double)(cur - running) * mu * fmax(0.0, startup - in_flight_s);
	old = fmax(0.0, b - k);
	fresh = lp * startup - fmax(0.0, k - b);
	if (old + fresh <= 0)
		return 0;
	end_age = a > 0 ? fmax(0.0, a - b / fmax(b / a, dense)) : 0;
	cap = fmax(lp, (old + fresh) / max_age);
	cap = fmax(cap, old / fmax(max_age - startup - end_age, WAIT_FRACTION * max_age));
	return cap / mu;
}

static void
demand_compute(const struct decide_state *st, const struct scale_conf *sc,
    const struct signals *s, int cur, int running, double now, double slope, bool settled, struct demand *d)
{
	double bpw = sc->backlog_per_worker > 0 ? sc->backlog_per_worker : 1.0;
	double max_age = (double)sc->max_age_ms / 1000.0;
	double startup = (double)sc->startup_ms / 1000.0;
	double drain = DRAIN_FRACTION * max_age;
	double lp, held, proj, net, dense;

	memset(d, 0, sizeof(*d));
	d->slope = slope;
	d->backlog = ceil_count((double)s->backlog / bpw);
	d->mu = st->mu_hat;
	if (d->mu <= 0 && st->mu_floor > 0) {
		/*
		 * Never saturated yet: the workers do at least the most they
		 * were seen to complete each (mu_floor), and perhaps much more.
		 */
		d->mu = st->mu_floor;
		d->mu_is_bound = true;
	}
	d->settling = s->rates_valid && !settled;
	if (d->mu > 0 && s->rates_valid && settled) {
		lp = s->arrival_rate + fmax(0.0, slope) * startup;
		if (drain <= 0)
			drain = 1.0;
		/*
		 * Little's law: keep up with what arrives, and clear within
		 * `drain` the part of the backlog the current workers could not
		 * clear in that time anyway (nor may hold: backlog_per_worker).
		 * Draining all of it at once would overshoot after every surge.
		 */
		held = fmin(bpw, d->mu * drain) * (cur > 0 ? cur : 0);
		d->x = (lp + fmax(0.0, (double)s->backlog - held) / drain) / d->mu;
		d->rate = ceil_count(d->x);
		d->arrivals = ceil_count(lp / d->mu);
		d->sustained = ceil_count(hist_extreme(st->sus_v, st->sus_head, st->sus_len,
		    s->arrival_rate + NOISE_SIGMAS * s->arrival_noise, -1) / d->mu);
		d->rated = true;
		if (d->mu_is_bound &&
		    (d->x <= (double)cur * (1.0 + BOUND_MARGIN) || !queueing(s, running, max_age))) {
			/*
			 * No clear surge with messages waiting: a lower bound
			 * is no reason for more workers. It is demand all the
			 * same: the count the proven rate needs, up to the
			 * count there is, so an unknown rate never reads as
			 * idle workers (a steady group is not halved on a
			 * guess) while a group the proven rate shows too big
			 * comes down to what it proves.
			 */
			d->rate = d->arrivals = ceil_count(lp / d->mu);
			if (d->rate > cur)
				d->rate = d->arrivals = cur;
			d->x = d->rate;
		}
		if (d->sustained > d->arrivals)
			d->sustained = d->arrivals;
		if (!d->mu_is_bound) {
			/* a known rate: the budget sizes the drain (budget_up) */
			dense = hist_extreme(st->rate_v, st->rate_head, st->rate_len, s->arrival_rate, 1);
			proj = budget_up(s, d->mu, lp, dense, cur, running, fmax(0.0, st->last_up_t + startup - now),
			    startup, max_age);
			d->x = fmax(lp / d->mu, proj);
			d->rate = ceil_count(d->x);
			d->budget_clear = s->backlog > 0 && proj <= 0;
		}
	}
	/*
	 * Past max_age and not getting better: the workers are not catching
	 * up, whatever the rates say. Ask for as many more as the wait is
	 * over the objective, at least one -- unless the count already asked
	 * for clears the backlog before a new worker could start, when more
	 * would only arrive to an empty queue (the tail of a short spike).
	 */
	if (max_age > 0 && s->oldest_age_s > max_age && s->oldest_age_s >= st->last_oldest_s) {
		net = d->mu > 0 && !d->mu_is_bound && s->rates_valid ? cur * d->mu - s->arrival_rate : 0;
		d->clears_in = net > 0 ? (double)s->backlog / net : INFINITY;
		if (d->clears_in > startup) {
			d->age = ceil_count((double)(cur > 0 ? cur : 1) * s->oldest_age_s / max_age);
			if (d->age <= cur)
				d->age = cur + 1;
		}
	}
	d->need = d->rate;
	d->rule = "rate";
	if (d->age > d->need) {
		d->need = d->age;
		d->rule = "age";
	}
	if (d->backlog > d->need) {
		d->need = d->backlog;
		d->rule = "backlog";
	}
	if (d->rate == 0 && d->need == d->backlog)
		d->rule = "backlog";
}

/* "rate rule (...) beats backlog rule (5), age rule (0)" */
static void
reason_rules(char *buf, const struct demand *d, const struct signals *s)
{
	bool first = true;

	reason_add(buf, "%s rule %d (", d->rule, d->need);
	reason_inputs(buf, s, d->slope, d->mu, d->mu_is_bound);
	reason_add(buf, ")");
	if (strcmp(d->rule, "rate") != 0 && d->rate > 0) {
		reason_add(buf, "%s rate rule %d", first ? " beats" : ",", d->rate);
		first = false;
	}
	if (strcmp(d->rule, "backlog") != 0) {
		reason_add(buf, "%s backlog rule %d", first ? " beats" : ",", d->backlog);
		first = false;
	}
	if (strcmp(d->rule, "age") != 0 && d->age > 0)
		reason_add(buf, "%s age rule %d", first ? " beats" : ",", d->age);
	if (d->age == 0 && d->clears_in > 0)
		reason_add(buf, "; oldest over max_age but the backlog clears in %.0fs, before a new worker starts",
		    d->clears_in);
	if (d->budget_clear)
		reason_add(buf, "; the workers there clear the backlog before a new one could start");
	if (d->settling)
		reason_add(buf, "; rates still settling, rate rule off");
}

/*
 * max_age as a budget: the fewest workers that still clear today's backlog,
 * beside the arrivals, within what is left of half of max_age (the oldest
 * message has used part of it). 0 when there is no backlog or no rate.
 */
static int
budget_keep(const struct demand *d, const struct signals *s, double max_age)
{
	double left = DRAIN_FRACTION * max_age - s->oldest_age_s;

	if (s->backlog <= 0 || d->mu <= 0 || !s->rates_valid || max_age <= 0)
		return 0;
	if (left <= 0)
		return (int)NEED_CAP;
	return ceil_count((s->arrival_rate + (double)s->backlog / left) / d->mu);
}

/* The count the current spike needs at its peak: its highest arrival rate at mu (while mu is unknown, the count the loan reached). */
static int
spike_need(const struct decide_state *st)
{
	return st->mu_hat > 0 ? ceil_count(st->peak_rate / st->mu_hat) : st->loan_top;
}

/*
 * The reserve for spikes that recur: while one is expected (less than
 * RESERVE_WINDOWS stabilization windows since the last loan was given
 * back) or a loan is out, the fewest workers from which the up steps whose
 * workers start within max_age + up.cooldown of a spike's start (each as
 * up.max_step allows; two with startup = max_age, more with a shorter
 * startup) reach the highest peak need of the recent spikes. A spike
 * answered from the reserve gets enough workers in time to keep within
 * max_age; one answered from the low base does not. 0 when no spike is
 * expected.
 */
static int
spike_reserve(const struct decide_state *st, const struct scale_conf *sc, double now, int cur, int lo, int hi)
{
	double max_age = (double)sc->max_age_ms / 1000.0, startup = (double)sc->startup_ms / 1000.0;
	double cooldown = (double)sc->up_cooldown_ms / 1000.0;
	int r, c, i, steps, peak = now < st->reserve_until ? st->spike_peak : 0;

	if (cur > st->owned && spike_need(st) > peak)
		peak = spike_need(st);
	peak = clamp_int(peak, lo, hi);
	if (peak <= lo)
		return 0;
	steps = 1 + (cooldown > 0 ? (int)fmax(0.0, floor((max_age + cooldown - startup) / cooldown)) : RESERVE_MAX_STEPS);
	if (steps > RESERVE_MAX_STEPS)
		steps = RESERVE_MAX_STEPS;
	for (r = lo > 1 ? lo : 1; r < peak; r++) {
		for (c = r, i = 0; i < steps && c < peak; i++)
			c += config_step_allowed(&sc->up_max_step, c);
		if (c >= peak)
			break;
	}
	return r;
}

static void
step_name(char *buf, size_t len, const struct step_limit *l)
{
	snprintf(buf, len, "%lld%s", (long long)l->value, l->percent ? "%" : "");
}

void
decide_next(struct decide_state *st, const struct scale_conf *sc, int partitions,
    bool order_critical, const struct decide_input *in, struct decision *out)
{
	const struct signals *s = in->sig;
	double interval = sc->interval_ms > 0 ? (double)sc->interval_ms / 1000.0 : 1.0;
	double max_age = (double)sc->max_age_ms / 1000.0;
	double startup = (double)sc->startup_ms / 1000.0;
	double stab = (double)sc->down_stabilization_ms / 1000.0;
	double since_action, obs, slope;
	bool settled;
	int keep, reserve;
	int cur = in->desired, lo = sc->min, hi = sc->max, target, next, allowed, wmax, base;
	struct demand d;
	char step[32];
	bool inflight = false;

	memset(out, 0, sizeof(*out));
	st->reserve_span = RESERVE_WINDOWS * stab;
	out->t = in->now;
	out->count = cur;
	out->need = cur;
	out->dir = DIR_NONE;
	out->rule = "hold";

	if (!in->nomad_ok) {
		hold(out, "hold", "Nomad status unknown, holding the current count");
		return;
	}
	if (in->job_stopped) {
		hold(out, "hold", "job is stopped, not scaling it");
		return;
	}
	if (s == NULL || !s->valid) {
		st->win_open = false;
		st->rates_since = INFINITY;
		hold(out, "hold", "no valid sample (Redis unreachable or reply unusable), never scaling on missing data");
		return;
	}
	if (in->sample_age_s > STALE_INTERVALS * interval) {
		st->win_open = false;
		st->rates_since = INFINITY;
		hold(out, "hold", "sample is %.1fs old (stale beyond %d intervals), never scaling on missing data",
		    in->sample_age_s, STALE_INTERVALS);
		return;
	}

	/*
	 * The smoothed rates need DECIDE_SETTLE_INTERVALS of valid samples before
	 * they mean anything: until then they are the EWMA's warm-up (the
	 * completion rate still below the arrival rate it will reach), not
	 * demand, and they open no stabilization window.
	 */
	if (!s->rates_valid)
		st->rates_since = INFINITY;
	else if (st->rates_since > in->now)
		st->rates_since = in->now;
	settled = s->rates_valid && in->now - st->rates_since >= DECIDE_SETTLE_INTERVALS * interval;

	/* Learn the per-worker rate, only from saturated, settled workers. */
	if (in->running != st->seen_running) {
		st->seen_running = in->running;
		st->running_since = in->now;
	}
	/*
	 * Busy: more messages than workers not even delivered yet. Pending
	 * ones are not enough: consumers that read in batches hold some while
	 * idle, and a busy spell misread from them teaches a low mu.
	 */
	if (s->rates_valid && in->running > 0 && s->backlog > in->running && s->undelivered > in->running) {
		if (st->saturated_since > in->now)
			st->saturated_since = in->now;
	} else {
		st->saturated_since = INFINITY;
	}
	if (settled && in->running > 0 && in->now - st->running_since >= DECIDE_SETTLE_INTERVALS * interval) {
		obs = s->completion_rate / in->running;
		if (obs > st->mu_floor)
			st->mu_floor = obs;
		if (in->now - st->saturated_since >= DECIDE_SETTLE_INTERVALS * interval) {
			if (obs > 0)
				st->mu_hat = obs;
		} else if (st->mu_hat > 0 && obs > st->mu_hat) {
			/*
			 * Idle workers completing more than mu_hat each prove
			 * it too low. Without this a low estimate would last
			 * for ever: it keeps so many workers that they never
			 * get busy enough to measure again.
			 */
			st->mu_hat = obs;
		}
	}

	slope = s->rates_valid ? rate_slope(st, startup, in->now, s->arrival_rate, s->arrival_noise) : 0;
	if (s->rates_valid) {
		if (s->arrival_rate > st->peak_rate)
			st->peak_rate = s->arrival_rate;
		hist_push(st->rate_t, st->rate_v, &st->rate_head, &st->rate_len, startup, in->now,
		    s->arrival_rate);
		hist_push(st->sus_t, st->sus_v, &st->sus_head, &st->sus_len, startup + max_age, in->now,
		    s->arrival_rate + NOISE_SIGMAS * s->arrival_noise);
	}
	demand_compute(st, sc, s, cur, in->running, in->now, slope, settled, &d);
	st->last_oldest_s = s->oldest_age_s;
	st->last_need = d.need;
	out->need = d.need;
	if (!st->win_open && settled) {
		st->win_open = true;
		st->win_since = in->now;
		st->win_len = 0;
	}
	/*
	 * The window holds sustained demand: what the lowest arrival rate of
	 * the last `startup` + `max_age` needs (hist_extreme). A spike's arrivals, its backlog and the
	 * age rule it trips are transients; the budget check of the scale-down
	 * holds the count while a backlog is being cleared. With no rate at
	 * all, the backlog rule is all there is.
	 */
	if (st->win_open)
		window_push(st, sc, in->now, d.rated ? d.sustained : d.need);

	if (order_critical && partitions > 0 && partitions < hi)
		hi = partitions;
	if (lo > hi)
		lo = hi;
	/*
	 * The loan: a count the engine did not ask for (the start, a manual
	 * change) is owned; so is what sustained demand justifies. Above
	 * that, workers are lent to a transient and given back when it ends.
	 */
	if (st->owned < 0 || cur > st->loan_top) {
		st->owned = cur;
		st->loan_top = cur;
	}
	if (d.rated && d.sustained > st->owned)
		st->owned = d.sustained;
	if (st->owned > cur)
		st->owned = cur;
	target = clamp_int(d.need, lo, hi);
	since_action = in->now - fmax(st->last_up_t, st->last_down_t);

	/* Outside the bounds (a reload, a manual change): back inside at once. */
	if (cur > hi || cur < lo) {
		next = cur > hi ? hi : (target > lo ? target : lo);
		out->count = next;
		out->dir = next > cur ? DIR_UP : DIR_DOWN;
		out->rule = "bounds";
		snprintf(out->reason, sizeof(out->reason), "%s %d->%d: bounds rule (min %d, max %d%s); ",
		    decide_direction_name(out->dir), cur, next, lo, hi,
		    hi < sc->max ? ", capped at the partition count" : "");
		reason_rules(out->reason, &d, s);
		return;
	}

	if (target > cur) {
		/* A loan given back is the end of the transient's up, not a scale-in: the up cooldown ignores it. */
		if (st->last_down_t == st->last_return_t)
			since_action = in->now - st->last_up_t;
		if (since_action < (double)sc->up_cooldown_ms / 1000.0) {
			hold(out, "cooldown", "up cooldown %.0fs left; wants ", (double)sc->up_cooldown_ms / 1000.0 - since_action);
			reason_rules(out->reason, &d, s);
			return;
		}
		if (in->running < cur && in->now - st->last_up_t < startup) {
			/*
			 * Capacity in flight: the backlog and the age still grow
			 * until the new workers consume, so only the arrivals
			 * alone may ask for more than is already requested.
			 */
			if (clamp_int(d.arrivals, lo, hi) <= cur) {
				hold(out, "in-flight", "capacity in flight (%d of %d running, asked %.0fs ago); wants ",
				    in->running, cur, in->now - st->last_up_t);
				reason_rules(out->reason, &d, s);
				return;
			}
			target = clamp_int(d.arrivals, lo, hi);
			d.rule = "rate";
			inflight = true;
		}
		if (strcmp(d.rule, "rate") == 0 && d.backlog <= cur && d.age <= cur && cur > 0 &&
		    (d.x - cur) * d.mu <= fmax(UP_TOLERANCE * cur * d.mu, UP_NOISE_SIGMAS * s->arrival_noise)) {
			hold(out, "tolerance", "rate rule %.2f workers within %.0f%% or %.0f sigma of noise (%.1f/s) of %d; ",
			    d.x, UP_TOLERANCE * 100, UP_NOISE_SIGMAS, s->arrival_noise, cur);
			reason_rules(out->reason, &d, s);
			return;
		}
		allowed = config_step_allowed(&sc->up_max_step, cur);
		/* A percentage of zero workers means nothing: from zero, go to the demand. */
		if (cur == 0 && sc->up_max_step.percent && target > allowed)
			allowed = target;
		next = target < cur + allowed ? target : cur + allowed;
		out->count = next;
		out->dir = DIR_UP;
		out->rule = d.rule;
		snprintf(out->reason, sizeof(out->reason), "up %d->%d: ", cur, next);
		reason_rules(out->reason, &d, s);
		step_name(step, sizeof(step), &sc->up_max_step);
		reason_add(out->reason, "; step limit %s allows %d", step, cur + allowed);
		if (inflight)
			reason_add(out->reason, "; capacity in flight (%d of %d running), arrivals alone need %d",
			    in->running, cur, d.arrivals);
		return;
	}

	if (target < cur) {
		wmax = clamp_int(window_max(st), lo, hi);
		keep = budget_keep(&d, s, max_age);
		base = clamp_int(st->owned, lo, hi);
		if (base < wmax)
			base = wmax;
		if (base < target)
			base = target;
		reserve = spike_reserve(st, sc, in->now, cur, lo, hi);
		if (base < reserve)
			base = reserve;
		next = keep > base ? keep : base;
		if (next < cur && (next == base || (2 * (cur - next) >= cur - base && st->last_up_t > st->last_down_t)) &&
		    in->running >= cur && s->trend <= 0 && d.slope <= 0 &&
		    !(max_age > 0 && s->oldest_age_s > max_age / 2)) {
			/*
			 * Give the loan back at once: the transient is over
			 * (backlog within the budget and not growing, arrivals
			 * not rising), and sustained demand never asked for
			 * these workers. While the budget still needs some of
			 * them, give back at least half once, then wait for the
			 * rest (fewer actions).
			 */
			out->count = next;
			out->dir = DIR_DOWN;
			out->rule = "loan";
			snprintf(out->reason, sizeof(out->reason), "down %d->%d: loan returned, %d worker%s lent to "
			    "a transient; sustained demand %d, highest in the last %.0fs %d, budget %d, reserve %d; now ",
			    cur, next, cur - next, cur - next == 1 ? "" : "s", st->owned, stab, window_max(st), keep,
			    reserve);
			reason_rules(out->reason, &d, s);
			return;
		}
		if (!st->win_open || in->now - st->win_since < stab) {
			hold(out, "stabilization", "down waits for %.0fs of good data (have %.0fs); wants ", stab,
			    st->win_open ? in->now - st->win_since : 0.0);
			reason_rules(out->reason, &d, s);
			return;
		}
		if (wmax >= cur) {
			hold(out, "stabilization", "highest demand in the last %.0fs was %d; now ", stab, window_max(st));
			reason_rules(out->reason, &d, s);
			return;
		}
		if (reserve >= cur) {
			hold(out, "reserve", "spikes recur: they needed up to %d, which up steps from %d reach in "
			    "time (reserve for %.0fs more); wants ", st->spike_peak, reserve,
			    st->reserve_until - in->now);
			reason_rules(out->reason, &d, s);
			return;
		}
		if (s->trend > 0) {
			hold(out, "growing", "backlog growing (%+.1f/s), no scale-in; wants ", s->trend);
			reason_rules(out->reason, &d, s);
			return;
		}
		if (d.slope > 0) {
			hold(out, "rising", "arrivals rising (%.1f/s^2 beyond noise), no scale-in; wants ", d.slope);
			reason_rules(out->reason, &d, s);
			return;
		}
		if (max_age > 0 && s->oldest_age_s > max_age / 2) {
			hold(out, "age", "oldest %.1fs above half of max_age %.0fs, no scale-in; wants ",
			    s->oldest_age_s, max_age);
			reason_rules(out->reason, &d, s);
			return;
		}
		if (since_action < (double)sc->down_cooldown_ms / 1000.0) {
			hold(out, "cooldown", "down cooldown %.0fs left; wants ",
			    (double)sc->down_cooldown_ms / 1000.0 - since_action);
			reason_rules(out->reason, &d, s);
			return;
		}
		allowed = config_step_allowed(&sc->down_max_step, cur);
		next = wmax > cur - allowed ? wmax : cur - allowed;
		if (next < target)
			next = target;
		if (keep >= cur) {
			hold(out, "budget", "fewer than %d workers would not clear the backlog of %lld within half "
			    "of max_age (oldest %.1fs); wants ", cur, (long long)s->backlog, s->oldest_age_s);
			reason_rules(out->reason, &d, s);
			return;
		}
		if (keep > next)
			next = keep;
		if (reserve > next)
			next = reserve;
		out->count = next;
		out->dir = DIR_DOWN;
		out->rule = "stabilization";
		snprintf(out->reason, sizeof(out->reason), "down %d->%d: highest demand in the last %.0fs is %d; now ",
		    cur, next, stab, window_max(st));
		reason_rules(out->reason, &d, s);
		step_name(step, sizeof(step), &sc->down_max_step);
		reason_add(out->reason, "; step limit %s allows %d", step, cur - allowed < 0 ? 0 : cur - allowed);
		if (keep == next && keep > wmax && keep > cur - allowed)
			reason_add(out->reason, "; budget: %d clear the backlog within half of max_age", keep);
		return;
	}

	hold(out, "steady", "demand matches; ");
	reason_rules(out->reason, &d, s);
}

void
decide_applied(struct decide_state *st, const struct decision *d, double now)
{
	int peak;

	if (d->dir == DIR_UP) {
		st->last_up_t = now;
		st->last_up_target = d->count;
	} else if (d->dir == DIR_DOWN) {
		st->last_down_t = now;
	}
	if (d->dir == DIR_NONE)
		return;
	if (d->rule == NULL) {
		/* a scaling event from outside: whatever it set is owned */
		st->owned = -1;
		return;
	}
	if (d->dir == DIR_DOWN && strcmp(d->rule, "loan") == 0) {
		/*
		 * The spike's peak need: what its highest arrival rate needs
		 * at mu (the count the loan reached, while mu is unknown); the
		 * recent spikes' highest while a reserve still stands.
		 */
		peak = spike_need(st);
		if (now < st->reserve_until && st->spike_peak > peak)
			peak = st->spike_peak;
		st->spike_peak = peak;
		st->peak_rate = 0;
		st->reserve_until = now + st->reserve_span;
		st->last_return_t = now;
	}
	st->loan_top = d->count;
}
