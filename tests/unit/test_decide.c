/*
 * test_decide — the decision engine, tick by tick on a fake clock.
 *
 * Two kinds of test: single evaluations on hand-made signals (table-driven
 * where the cases are a table), and scenarios that run a tiny queue world
 * (per-second arrivals, workers completing R msgs/s each, new workers
 * consuming `startup` after the call) through the real sampler and engine.
 * Every test asserts on the count, the direction and a piece of the reason.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <CUnit/Basic.h>

#include "decide.h"

/* Seconds of valid samples (1 s interval) before the rates count and a window opens. */
#define SETTLE ((double)DECIDE_SETTLE_INTERVALS)

static struct scale_conf
policy(void)
{
	struct scale_conf sc;

	memset(&sc, 0, sizeof(sc));
	sc.min = 1;
	sc.max = 60;
	sc.interval_ms = 1000;
	sc.backlog_per_worker = 200;
	sc.max_age_ms = 30000;
	sc.startup_ms = 15000;
	sc.up_cooldown_ms = 10000;
	sc.up_max_step = (struct step_limit){ 100, true };
	sc.down_cooldown_ms = 60000;
	sc.down_stabilization_ms = 180000;
	sc.down_max_step = (struct step_limit){ 1, false };
	return sc;
}

static struct signals
sig(int64_t backlog, double lambda, double slope, double trend, double age_s)
{
	struct signals s;

	memset(&s, 0, sizeof(s));
	s.valid = true;
	s.rates_valid = true;
	s.undelivered = backlog;
	s.backlog = backlog;
	s.arrival_rate = lambda;
	s.arrival_slope = slope;
	s.completion_rate = lambda;
	s.trend = trend;
	s.oldest_age_s = age_s;
	return s;
}

static struct decision
eval(struct decide_state *st, const struct scale_conf *sc, double now, const struct signals *s,
    int desired, int running)
{
	struct decide_input in = { .now = now, .sig = s, .sample_age_s = 0, .nomad_ok = true,
				   .desired = desired, .running = running, .job_stopped = false };
	struct decision d;

	decide_next(st, sc, 0, false, &in, &d);
	return d;
}

#define ASSERT_REASON(d, sub) do {						\
	CU_ASSERT_PTR_NOT_NULL(strstr((d).reason, (sub)));			\
	if (strstr((d).reason, (sub)) == NULL)					\
		fprintf(stderr, "\n  reason \"%s\" lacks \"%s\"\n", (d).reason, (sub)); \
} while (0)

/* ---- the tiny world ---- */

#define WORLD_MAX_T 4000
#define WORLD_MAX_W 256

struct world {
	double t;
	double rate;			/* msgs/s per running worker */
	double startup;
	int desired;
	double start_at[WORLD_MAX_W];	/* per requested worker: when it consumes */
	double cohort[WORLD_MAX_T];	/* messages still waiting, by arrival second */
	unsigned head;			/* oldest second with something waiting */
	int64_t added, done;
	double backlog;
	double carry;			/* fractional capacity carried over */
	int actions, ups, downs;
	double max_age_seen;
};

static void
world_init(struct world *w, int desired, double rate, double startup)
{
	int i;

	memset(w, 0, sizeof(*w));
	w->rate = rate;
	w->startup = startup;
	w->desired = desired;
	for (i = 0; i < WORLD_MAX_W; i++)
		w->start_at[i] = -1e9;
}

static int
world_running(const struct world *w)
{
	int i, n = 0;

	for (i = 0; i < w->desired; i++)
		if (w->start_at[i] <= w->t)
			n++;
	return n;
}

/* One second: arrivals, then service in arrival order. */
static void
world_step(struct world *w, int arrivals)
{
	unsigned sec = (unsigned)w->t;
	double cap = world_running(w) * w->rate + w->carry;
	int64_t served = 0;

	w->cohort[sec] += arrivals;
	w->added += arrivals;
	w->backlog += arrivals;
	while (w->head <= sec && cap >= 1) {
		double take = floor(fmin(cap, w->cohort[w->head]));
		w->cohort[w->head] -= take;
		cap -= take;
		served += (int64_t)take;
		if (w->cohort[w->head] < 1)
			w->head++;
		else
			break;
	}
	w->carry = w->backlog - (double)served > 0 ? fmin(cap, 1.0) : 0;
	w->backlog -= (double)served;
	w->done += served;
	w->t += 1;
}

static double
world_oldest(const struct world *w)
{
	unsigned s;

	for (s = w->head; s < (unsigned)w->t; s++)
		if (w->cohort[s] >= 1)
			return w->t - s;
	return 0;
}

static void
world_apply(struct world *w, const struct decision *d)
{
	int i;

	if (d->dir == DIR_UP)
		for (i = w->desired; i < d->count && i < WORLD_MAX_W; i++)
			w->start_at[i] = w->t + w->startup;
	w->desired = d->count;
	w->actions++;
	if (d->dir == DIR_UP)
		w->ups++;
	else
		w->downs++;
}

struct run {
	struct world w;
	struct sample_state ss;
	struct decide_state ds;
	struct scale_conf sc;
	struct decision last_action;
	double first_action_t;
};

static void
run_init(struct run *r, int desired, double rate)
{
	memset(r, 0, sizeof(*r));
	r->sc = policy();
	world_init(&r->w, desired, rate, (double)r->sc.startup_ms / 1000.0);
	sample_state_init(&r->ss, 3.0);
	decide_state_init(&r->ds);
	r->first_action_t = -1;
}

/* One tick: the world moves a second, is sampled, and the engine decides. */
static struct decision
run_tick(struct run *r, int arrivals)
{
	struct raw_sample raw = { 0 };
	struct signals s;
	struct decision d;

	world_step(&r->w, arrivals);
	raw.t = r->w.t;
	raw.ok = true;
	raw.lag = (int64_t)r->w.backlog;
	raw.entries_added = r->w.added;
	raw.entries_read = r->w.done;
	raw.oldest_age_ms = (int64_t)(world_oldest(&r->w) * 1000);
	sample_update(&r->ss, &raw, &s);
	if (s.oldest_age_s > r->w.max_age_seen)
		r->w.max_age_seen = s.oldest_age_s;
	d = eval(&r->ds, &r->sc, r->w.t, &s, r->w.desired, world_running(&r->w));
	CU_ASSERT_TRUE(strlen(d.reason) < DECIDE_REASON_LEN - 1);	/* never truncated */
	if (d.dir != DIR_NONE) {
		world_apply(&r->w, &d);
		decide_applied(&r->ds, &d, r->w.t);
		r->last_action = d;
		if (getenv("DECIDE_TRACE") != NULL)
			fprintf(stderr, "  t=%.0f %s\n", d.t, d.reason);
		if (r->first_action_t < 0)
			r->first_action_t = r->w.t;
	}
	return d;
}

/* Deterministic noise in [-1, 1). */
static double
noise(unsigned *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	return ((double)((*seed >> 8) & 0xffff) / 32768.0) - 1.0;
}

/* ---- single evaluations ---- */

static void
test_missing_data_holds(void)
{
	struct scale_conf sc = policy();
	struct decide_state st;
	struct signals low = sig(0, 0, 0, 0, 0), bad = low, high = sig(50000, 900, 0, 100, 50);
	struct decide_input in = { .now = 1000, .sig = NULL, .nomad_ok = true, .desired = 10, .running = 10 };
	struct decision d;

	decide_state_init(&st);
	bad.valid = false;
	struct { const struct signals *s; double age; bool nomad_ok, stopped; const char *why; } cases[] = {
		{ NULL, 0, true, false, "no valid sample" },
		{ &bad, 0, true, false, "no valid sample" },
		{ &low, 3.5, true, false, "stale" },
		{ &high, 3.5, true, false, "stale" },
		{ &low, 0, false, false, "Nomad status unknown" },
		{ &high, 0, false, false, "Nomad status unknown" },
		{ &low, 0, true, true, "job is stopped" },
		{ &high, 0, true, true, "job is stopped" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		in.sig = cases[i].s;
		in.sample_age_s = cases[i].age;
		in.nomad_ok = cases[i].nomad_ok;
		in.job_stopped = cases[i].stopped;
		decide_next(&st, &sc, 0, false, &in, &d);
		CU_ASSERT_EQUAL(d.count, 10);
		CU_ASSERT_EQUAL(d.dir, DIR_NONE);
		ASSERT_REASON(d, cases[i].why);
		ASSERT_REASON(d, "hold 10");
	}
}

/* After a gap in the data, a scale-down needs a whole window of good data again. */
static void
test_gap_restarts_stabilization(void)
{
	struct scale_conf sc = policy();
	struct decide_state st;
	struct signals low = sig(0, 5, 0, 0, 0);
	struct decision d;
	struct decide_input in = { .sig = NULL, .nomad_ok = true, .desired = 10, .running = 10 };
	double t;

	decide_state_init(&st);
	st.mu_hat = 10;
	for (t = 0; t < 170; t += 1)
		d = eval(&st, &sc, t, &low, 10, 10);
	CU_ASSERT_EQUAL(d.dir, DIR_NONE);
	in.now = 170;
	decide_next(&st, &sc, 0, false, &in, &d);	/* Redis gone for a tick */
	for (t = 171; t < 171 + SETTLE + 179; t += 1) {
		d = eval(&st, &sc, t, &low, 10, 10);
		CU_ASSERT_EQUAL_FATAL(d.dir, DIR_NONE);
	}
	ASSERT_REASON(d, "good data");
	d = eval(&st, &sc, 171 + SETTLE + 180, &low, 10, 10);
	CU_ASSERT_EQUAL(d.dir, DIR_DOWN);
	CU_ASSERT_EQUAL(d.count, 9);
}

struct bounds_case {
	int min, max, partitions;
	bool ordered;
	int64_t backlog;
	int desired;
	int want;
	enum direction dir;
	const char *why;
};

static void
test_bounds(void)
{
	static const struct bounds_case cases[] = {
		/* huge backlog, max 60 */
		{ 1, 60, 0, false, 1000000, 40, 60, DIR_UP, "up 40->60" },
		/* order-critical: never above the partition count */
		{ 1, 60, 8, true, 1000000, 4, 8, DIR_UP, "up 4->8" },
		{ 1, 60, 8, true, 1000000, 8, 8, DIR_NONE, "hold 8" },
		/* partitions only matter when order-critical */
		{ 1, 60, 8, false, 1000000, 8, 16, DIR_UP, "up 8->16" },
		/* desired above the partition count (manual change): back at once */
		{ 1, 60, 8, true, 0, 12, 8, DIR_DOWN, "bounds rule" },
		/* below min: up to min at once, even with nothing to do */
		{ 3, 60, 0, false, 0, 1, 3, DIR_UP, "bounds rule" },
		/* above max after a reload */
		{ 1, 5, 0, false, 0, 9, 5, DIR_DOWN, "bounds rule" },
	};
	struct decision d;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct bounds_case *c = &cases[i];
		struct scale_conf sc = policy();
		struct decide_state st;
		struct signals s = sig(c->backlog, 0, 0, 0, 0);
		struct decide_input in = { .now = 100, .sig = &s, .nomad_ok = true,
					   .desired = c->desired, .running = c->desired };

		sc.min = c->min;
		sc.max = c->max;
		decide_state_init(&st);
		decide_next(&st, &sc, c->partitions, c->ordered, &in, &d);
		CU_ASSERT_EQUAL(d.count, c->want);
		CU_ASSERT_EQUAL(d.dir, c->dir);
		ASSERT_REASON(d, c->why);
	}
}

struct step_case {
	struct step_limit up;
	int desired;
	int want;
	const char *why;
};

static void
test_step_limits_up(void)
{
	static const struct step_case cases[] = {
		{ { 100, true }, 4, 8, "step limit 100% allows 8" },
		{ { 50, true }, 4, 6, "step limit 50% allows 6" },
		{ { 50, true }, 3, 4, "step limit 50% allows 4" },	/* 1.5 rounds down */
		{ { 2, false }, 4, 6, "step limit 2 allows 6" },
		{ { 1, false }, 0, 1, "step limit 1 allows 1" },
		{ { 2, false }, 0, 2, "step limit 2 allows 2" },
		{ { 100, true }, 0, 60, "step limit 100% allows 60" },	/* no percentage of zero: max */
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct scale_conf sc = policy();
		struct decide_state st;
		struct signals s = sig(20000, 0, 0, 100, 3);	/* backlog rule: 100 workers */
		struct decision d;

		sc.min = 0;
		sc.up_max_step = cases[i].up;
		decide_state_init(&st);
		d = eval(&st, &sc, 100, &s, cases[i].desired, cases[i].desired);
		CU_ASSERT_EQUAL(d.count, cases[i].want);
		CU_ASSERT_EQUAL(d.dir, DIR_UP);
		CU_ASSERT_EQUAL(d.need, 100);
		ASSERT_REASON(d, cases[i].why);
		ASSERT_REASON(d, "backlog rule 100");
	}
}

/* Scale-down step limits: 25% of 20 is 5, count limit 3. */
static void
test_step_limits_down(void)
{
	struct step_limit limits[] = { { 25, true }, { 3, false } };
	int want[] = { 15, 17 };
	size_t i;
	double t;

	for (i = 0; i < 2; i++) {
		struct scale_conf sc = policy();
		struct decide_state st;
		struct signals s = sig(0, 10, 0, 0, 0);
		struct decision d;

		sc.down_max_step = limits[i];
		decide_state_init(&st);
		st.mu_hat = 10;
		for (t = 0; t <= SETTLE + 180; t += 1) {
			d = eval(&st, &sc, t, &s, 20, 20);
			if (d.dir != DIR_NONE)
				break;
		}
		CU_ASSERT_EQUAL(d.dir, DIR_DOWN);
		CU_ASSERT_EQUAL(d.count, want[i]);
		CU_ASSERT_DOUBLE_EQUAL(t, SETTLE + 180, 1e-9);
		ASSERT_REASON(d, "step limit");
	}
}

/* A scale-in starts only its own cooldown: an urgent scale-out 15 s later goes through. */
static void
test_cooldown_per_direction(void)
{
	struct scale_conf sc = policy();
	struct decide_state st;
	struct signals quiet = sig(0, 10, 0, 0, 0), surge = sig(8000, 500, 20, 400, 12);
	struct decision d;
	double t;

	decide_state_init(&st);
	st.mu_hat = 10;
	for (t = 0; t <= SETTLE + 180; t += 1)
		d = eval(&st, &sc, t, &quiet, 6, 6);
	CU_ASSERT_EQUAL(d.dir, DIR_DOWN);
	CU_ASSERT_EQUAL(d.count, 5);
	decide_applied(&st, &d, 180);

	d = eval(&st, &sc, 187, &surge, 5, 5);		/* within the up cooldown (10 s) */
	CU_ASSERT_EQUAL(d.dir, DIR_NONE);
	ASSERT_REASON(d, "up cooldown 3s left");
	d = eval(&st, &sc, 195, &surge, 5, 5);		/* past it; well within the down cooldown */
	CU_ASSERT_EQUAL(d.dir, DIR_UP);
	CU_ASSERT_EQUAL(d.count, 10);
	ASSERT_REASON(d, "up 5->10");

	/* a scale-in, once applied, starts the down cooldown */
	decide_applied(&st, &d, 195);
	d = eval(&st, &sc, 400, &quiet, 10, 10);
	CU_ASSERT_EQUAL(d.dir, DIR_DOWN);
	decide_applied(&st, &d, 400);
	d = eval(&st, &sc, 410, &quiet, 9, 9);
	CU_ASSERT_EQUAL(d.dir, DIR_NONE);
	ASSERT_REASON(d, "down cooldown");
}

/* The scale call failed (deployment in progress): nothing applied, so it asks again next tick. */
static void
test_not_applied_retries(void)
{
	struct scale_conf sc = policy();
	struct decide_state st;
	struct signals surge = sig(4000, 300, 0, 200, 8);
	struct decision d1, d2;

	decide_state_init(&st);
	st.mu_hat = 10;
	d1 = eval(&st, &sc, 100, &surge, 4, 4);
	CU_ASSERT_EQUAL(d1.dir, DIR_UP);
	d2 = eval(&st, &sc, 101, &surge, 4, 4);
	CU_ASSERT_EQUAL(d2.dir, DIR_UP);
	CU_ASSERT_EQUAL(d2.count, d1.count);
	ASSERT_REASON(d2, "up 4->8");
}

/* Requested workers count as capacity for `startup`: no stacked scale-ups. */
static void
test_capacity_in_flight(void)
{
	struct scale_conf sc = policy();
	struct decide_state st;
	struct signals s;
	struct decision d;
	double t;

	decide_state_init(&st);
	st.mu_hat = 10;
	s = sig(3000, 60, 0, 40, 20);
	s.completion_rate = 40;
	d = eval(&st, &sc, 100, &s, 4, 4);
	CU_ASSERT_EQUAL(d.dir, DIR_UP);
	CU_ASSERT_EQUAL(d.count, 8);
	decide_applied(&st, &d, 100);
	/* the backlog keeps growing while the new workers start */
	for (t = 111; t < 115; t += 1) {
		s = sig(3000 + (int64_t)(t - 100) * 40, 60, 0, 40, 20 + (t - 100));
		s.completion_rate = 40;
		d = eval(&st, &sc, t, &s, 8, 4);
		CU_ASSERT_EQUAL(d.dir, DIR_NONE);
		ASSERT_REASON(d, "capacity in flight (4 of 8 running");
	}
	/* but arrivals alone beyond what is already requested still scale */
	s = sig(3600, 150, 0, 40, 35);
	s.completion_rate = 40;
	d = eval(&st, &sc, 114, &s, 8, 4);
	CU_ASSERT_EQUAL(d.dir, DIR_UP);
	/* (150 + 15 s x 90/14 s rise) / 10 = 24.6; 100% of 8 allows 16 */
	CU_ASSERT_EQUAL(d.count, 16);
	ASSERT_REASON(d, "arrivals alone need 25");
	/* after startup, workers that never came are no longer capacity */
	s = sig(5000, 60, 0, 40, 40);
	d = eval(&st, &sc, 116, &s, 8, 4);
	CU_ASSERT_EQUAL(d.dir, DIR_UP);
}

/*
 * Oldest age over max_age: more workers, in proportion -- unless the count
 * already asked for clears the backlog before a new worker could start.
 */
static void
test_age_rule(void)
{
	struct scale_conf sc = policy();
	struct decide_state st;
	struct signals s;
	struct decision d;

	/* 10 workers at 10/s, 40/s arriving: 600 waiting clear in 600/60 = 10 s < startup 15 s */
	decide_state_init(&st);
	st.mu_hat = 10;
	s = sig(600, 40, 0, -60, 45);
	d = eval(&st, &sc, 100, &s, 10, 10);
	CU_ASSERT_EQUAL(d.dir, DIR_NONE);
	ASSERT_REASON(d, "backlog clears in 10s, before a new worker starts");
	/* 1500 waiting clear in 25 s: 45 s over a 30 s objective asks for 10 x 1.5 = 15 */
	decide_state_init(&st);
	st.mu_hat = 10;
	s = sig(1500, 40, 0, -60, 45);
	d = eval(&st, &sc, 100, &s, 10, 10);
	CU_ASSERT_EQUAL(d.dir, DIR_UP);
	CU_ASSERT_EQUAL(d.count, 15);
	ASSERT_REASON(d, "up 10->15: age rule 15");
	/* the per-worker rate unknown: cannot tell, so more */
	decide_state_init(&st);
	s = sig(600, 40, 0, 0, 45);
	s.completion_rate = 0;
	d = eval(&st, &sc, 100, &s, 10, 10);
	CU_ASSERT_EQUAL(d.dir, DIR_UP);
	ASSERT_REASON(d, "age rule 15");
}

/* A per-worker rate proven too low by idle workers is raised; busy workers set it outright. */
static void
test_mu_learning(void)
{
	struct scale_conf sc = policy();
	struct decide_state st;
	struct signals idle = sig(0, 80, 0, 0, 0), busy = sig(5000, 300, 0, 50, 10);
	struct decision d;
	double t;

	decide_state_init(&st);
	st.mu_hat = 5;
	for (t = 0; t < 5; t += 1)
		d = eval(&st, &sc, t, &idle, 10, 10);	/* Running not settled yet */
	CU_ASSERT_DOUBLE_EQUAL(st.mu_hat, 5, 1e-9);
	d = eval(&st, &sc, 6, &idle, 10, 10);
	CU_ASSERT_DOUBLE_EQUAL(st.mu_hat, 8, 1e-9);	/* 80/s over 10 idle workers */
	ASSERT_REASON(d, "mu 8.0/s/worker");
	/* busy for 6 intervals: 60/s over 10 workers is the rate, even if lower */
	busy.completion_rate = 60;
	for (t = 7; t < 13; t += 1)
		d = eval(&st, &sc, t, &busy, 10, 10);
	CU_ASSERT_DOUBLE_EQUAL(st.mu_hat, 8, 1e-9);
	d = eval(&st, &sc, 13, &busy, 10, 10);
	CU_ASSERT_DOUBLE_EQUAL(st.mu_hat, 6, 1e-9);
	/* idle workers doing less than that say nothing */
	idle.completion_rate = idle.arrival_rate = 30;
	for (t = 14; t < 30; t += 1)
		d = eval(&st, &sc, t, &idle, 10, 10);
	CU_ASSERT_DOUBLE_EQUAL(st.mu_hat, 6, 1e-9);
}

/* ---- scenarios in the tiny world ---- */

/*
 * Steady 40/s, then 400/s: acts within two ticks of the surge being
 * measurable, whether the per-worker rate is already known (learnt in an
 * earlier busy period) or not (the completion rate is then a lower bound).
 */
static void
surge_case(bool mu_known)
{
	static struct run r;
	struct decision d;
	int i;

	run_init(&r, 5, 10);
	if (mu_known)
		r.ds.mu_hat = 10;
	for (i = 0; i < 120; i++)
		run_tick(&r, 40);
	CU_ASSERT_EQUAL(r.w.actions, 0);
	/* the surge starts in second 120; the sample at t=121 is the first to see it */
	for (i = 0; i < 2; i++) {
		d = run_tick(&r, 400);
		if (d.dir != DIR_NONE)
			break;
	}
	CU_ASSERT_EQUAL(r.w.ups, 1);
	CU_ASSERT_EQUAL(r.last_action.dir, DIR_UP);
	CU_ASSERT_EQUAL(r.last_action.count, 10);
	CU_ASSERT_TRUE(r.first_action_t <= 122);
	ASSERT_REASON(r.last_action, "up 5->10: rate rule");
	/* it reaches the 40 the load needs and, once there, never goes below */
	for (i = 0; i < 900; i++) {
		run_tick(&r, 400);
		if (r.w.t > 300)
			CU_ASSERT_TRUE(r.w.desired >= 40);
	}
	CU_ASSERT_TRUE(r.w.max_age_seen < 60);
}

static void
test_surge(void)
{
	surge_case(true);
	surge_case(false);
}

/*
 * 20/s rising to 200/s over 10 minutes: keeps the wait under max_age, never
 * scales down while the load rises; on the plateau it may give back, once,
 * what the projection of the rise lent, never below what 200/s needs.
 */
static void
test_slow_ramp(void)
{
	static struct run r;
	int i;

	run_init(&r, 3, 10);
	for (i = 0; i < 100; i++)
		run_tick(&r, 20);
	CU_ASSERT_EQUAL(r.w.actions, 0);
	for (i = 0; i <= 600; i++)
		run_tick(&r, 20 + (180 * i) / 600);
	CU_ASSERT_EQUAL(r.w.downs, 0);
	CU_ASSERT_TRUE(r.w.ups >= 1);
	ASSERT_REASON(r.last_action, "up ");
	for (i = 0; i < 120; i++) {
		run_tick(&r, 200);
		CU_ASSERT_TRUE(r.w.desired >= 20);
	}
	CU_ASSERT_TRUE(r.w.downs <= 1);
	if (r.w.downs == 1)
		ASSERT_REASON(r.last_action, "loan returned");
	CU_ASSERT_TRUE(r.w.max_age_seen <= 30);
	if (r.w.max_age_seen > 30)
		fprintf(stderr, "\n  oldest age reached %.0fs\n", r.w.max_age_seen);
}

/*
 * Noise around a steady level for an hour: no scale-up, and no scale-down but
 * one to what the load and its noise need (12 at 100+-30/s with 10/s each
 * holds 20% spare; 11 holds 10%, as much as a burst of noise asks for).
 */
static void
test_noise_no_flapping(void)
{
	static const struct { int desired, lowest; double mean, amp; } cases[] = {
		{ 5, 5, 40, 10 },	/* +-25%, never above capacity */
		{ 5, 5, 40, 20 },	/* +-50%, short bursts above capacity */
		{ 12, 11, 100, 30 },
	};
	static struct run r;
	struct decision d = { 0 };
	size_t c;
	int i;

	for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		unsigned seed = 42;

		run_init(&r, cases[c].desired, 10);
		r.ds.mu_hat = 10;	/* a long-running queue: learnt in its last busy spell */
		for (i = 0; i < 3600; i++)
			d = run_tick(&r, (int)lround(cases[c].mean + cases[c].amp * noise(&seed)));
		CU_ASSERT_EQUAL(r.w.ups, 0);
		CU_ASSERT_TRUE(r.w.downs <= cases[c].desired - cases[c].lowest);
		CU_ASSERT_EQUAL(d.dir, DIR_NONE);
		CU_ASSERT_TRUE(d.count >= cases[c].lowest && d.count <= cases[c].desired);
		ASSERT_REASON(d, "hold ");
		if (r.w.ups || r.w.downs > cases[c].desired - cases[c].lowest)
			fprintf(stderr, "\n  case %zu: %d actions, last: %s\n", c, r.w.actions, r.last_action.reason);
	}
}

/*
 * From 20 busy workers to a load that needs 2 (15/s at 10/s each): down only
 * after the window, one at a time, one cooldown apart, and never below 2.
 */
static void
test_drain(void)
{
	static struct run r;
	double prev_down = -1;
	int i, prev = 20;

	run_init(&r, 20, 10);
	r.ds.mu_hat = 10;	/* learnt in the busy spell that made it 20 */
	for (i = 0; i < 1800; i++) {
		struct decision d = run_tick(&r, 15);
		if (d.dir == DIR_NONE)
			continue;
		CU_ASSERT_EQUAL(d.dir, DIR_DOWN);
		CU_ASSERT_EQUAL(d.count, prev - 1);
		CU_ASSERT_TRUE(d.t >= 180);
		if (prev_down >= 0)
			CU_ASSERT_TRUE(d.t - prev_down >= 60);
		ASSERT_REASON(d, "highest demand in the last 180s is 2");
		prev_down = d.t;
		prev = d.count;
	}
	CU_ASSERT_EQUAL(r.w.desired, 2);
	CU_ASSERT_EQUAL(r.w.ups, 0);
}

/*
 * Never saturated, so the per-worker rate is unknown -- but 8 workers were
 * seen completing 60/s, 7.5/s each: when the load falls to 15/s, that proven
 * rate brings the count down to the 2 it needs, one step a cooldown after
 * the window, never a wait on the way.
 */
static void
test_drain_unknown_rate(void)
{
	static struct run r;
	int i;

	run_init(&r, 8, 10);
	for (i = 0; i < 120; i++)
		run_tick(&r, 60);
	CU_ASSERT_EQUAL(r.w.actions, 0);
	for (i = 0; i < 1800; i++)
		run_tick(&r, 15);
	CU_ASSERT_EQUAL(r.w.desired, 2);
	CU_ASSERT_EQUAL(r.w.ups, 0);
	CU_ASSERT_DOUBLE_EQUAL(r.ds.mu_floor, 7.5, 0.1);
	CU_ASSERT_EQUAL(r.ds.mu_hat, 0);
	CU_ASSERT_TRUE(r.w.max_age_seen < 2);
	ASSERT_REASON(r.last_action, "mu >= 7.5/s/worker");
}

/*
 * Per-worker rate unknown (never saturated), so the completion rate is only
 * a lower bound of it, and a steady load proves no more than its share per
 * worker. Whether or not bursts queue now and then, the count holds: the
 * bound is demand too, never read as idle workers (the steady group that a
 * restarted agent finds is not halved on a guess, to need a scale-up later).
 */
static void
test_unknown_rate_holds(void)
{
	static const struct { int burst; int stab_s; } cases[] = {
		{ 50, 60 },	/* a burst queues 50 every 20 s */
		{ 0, 60 },	/* never a message waiting */
		{ 0, 180 },
	};
	size_t c;

	for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct scale_conf sc = policy();
		struct decide_state st;
		struct decision d = { 0 };
		int actions = 0;
		double t;

		sc.down_cooldown_ms = 30000;
		sc.down_stabilization_ms = cases[c].stab_s * 1000;
		sc.down_max_step = (struct step_limit){ 50, true };
		decide_state_init(&st);
		for (t = 0; t <= 600; t += 1) {
			/* 100/s on 10 workers */
			struct signals s = sig((int)t % 20 == 0 ? cases[c].burst : 0, 100, 0, 0, 0);
			d = eval(&st, &sc, t, &s, 10, 10);
			if (d.dir != DIR_NONE) {
				actions++;
				fprintf(stderr, "\n  case %zu: %s\n", c, d.reason);
				break;
			}
		}
		CU_ASSERT_EQUAL(actions, 0);
		CU_ASSERT_EQUAL(st.mu_hat, 0);
		ASSERT_REASON(d, "mu >= 10.0/s/worker");
		ASSERT_REASON(d, "hold 10");
	}
}

/*
 * The tiny world's version of a steady group found at start: 55/s on 6
 * workers of 10/s each (92% busy), rate unknown, the documented down
 * defaults. Not one action in ten minutes.
 */
static void
test_steady_start_no_action(void)
{
	static struct run r;
	int i;

	run_init(&r, 6, 10);
	r.sc.down_cooldown_ms = 30000;
	r.sc.down_stabilization_ms = 60000;
	r.sc.down_max_step = (struct step_limit){ 50, true };
	for (i = 0; i < 600; i++)
		run_tick(&r, 55);
	CU_ASSERT_EQUAL(r.w.actions, 0);
	if (r.w.actions)
		fprintf(stderr, "\n  %d actions, last: %s\n", r.w.actions, r.last_action.reason);
}

/*
 * A scale-up on a lower-bound mu needs messages waiting. The case seen in
 * CI: 2 workers, the completion rate's EWMA (8/s) still behind the arrival
 * rate (13/s), so the bound (4/s/worker) asks for 3.25 workers -- on a queue
 * of one message with no wait. Table: what waits, and whether it scales.
 */
static void
test_bound_needs_queueing(void)
{
	static const struct {
		int64_t backlog, undelivered;
		double oldest_s;
		enum direction dir;
		const char *why;
	} cases[] = {
		{ 1, 1, 0, DIR_NONE, "hold 2" },		/* one message, no wait */
		{ 2, 0, 0.5, DIR_NONE, "hold 2" },		/* both in the workers' hands */
		{ 40, 0, 1.0, DIR_NONE, "hold 2" },		/* delivered (a batch), no wait */
		{ 40, 30, 0.5, DIR_UP, "rate rule" },		/* messages wait to be read */
		{ 1, 1, 4.0, DIR_UP, "rate rule" },		/* a wait over a tenth of max_age */
	};
	struct scale_conf sc = policy();
	size_t c;
	double t;

	sc.max_age_ms = 30000;
	for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct decide_state st;
		struct signals quiet = sig(0, 8, 0, 0, 0), s;
		struct decision d;

		decide_state_init(&st);
		for (t = 0; t < 20; t += 1)		/* rates settle at 8/s: mu >= 4/s/worker */
			d = eval(&st, &sc, t, &quiet, 2, 2);
		CU_ASSERT_EQUAL(d.dir, DIR_NONE);
		s = sig(cases[c].backlog, 13, 0, 4, cases[c].oldest_s);
		s.completion_rate = 8;
		s.undelivered = cases[c].undelivered;
		s.pending = cases[c].backlog - cases[c].undelivered;
		d = eval(&st, &sc, t, &s, 2, 2);
		CU_ASSERT_EQUAL(d.dir, cases[c].dir);
		ASSERT_REASON(d, cases[c].why);
		if (cases[c].dir == DIR_UP)
			ASSERT_REASON(d, "up 2->");
		ASSERT_REASON(d, "mu >= 4.0/s/worker");
	}
}

/*
 * The first intervals of valid rates are the EWMAs' warm-up, not demand:
 * the rate rule is off (the backlog rule still acts), and they open no
 * stabilization window.
 */
static void
test_rates_settle_first(void)
{
	struct scale_conf sc = policy();
	struct decide_state st;
	struct signals warm = sig(1, 13, 0, 4, 0), big = sig(900, 13, 0, 4, 0);
	struct decision d;
	double t;

	decide_state_init(&st);
	st.mu_hat = 4;	/* even with mu known: 13/s on 2 workers of 4/s would need 4 */
	warm.completion_rate = 8;
	for (t = 0; t < SETTLE; t += 1) {
		d = eval(&st, &sc, t, &warm, 2, 2);
		CU_ASSERT_EQUAL(d.dir, DIR_NONE);
		ASSERT_REASON(d, "rates still settling");
	}
	CU_ASSERT_FALSE(st.win_open);
	d = eval(&st, &sc, t, &warm, 2, 2);
	CU_ASSERT_EQUAL(d.dir, DIR_UP);
	ASSERT_REASON(d, "rate rule 4");
	CU_ASSERT_TRUE(st.win_open);
	CU_ASSERT_DOUBLE_EQUAL(st.win_since, SETTLE, 1e-9);
	/* the backlog rule does not wait for the rates */
	decide_state_init(&st);
	d = eval(&st, &sc, 0, &big, 2, 2);
	CU_ASSERT_EQUAL(d.dir, DIR_UP);
	ASSERT_REASON(d, "up 2->4: backlog rule 5");
}

/*
 * max_age as a budget on the way down: the window holds sustained demand
 * (here 2 workers' worth of arrivals), and a scale-down keeps as many
 * workers as clear the backlog left, beside the arrivals, within what is
 * left of half of max_age. Table: backlog, oldest, step; the count asked.
 */
static void
test_down_budget(void)
{
	static const struct {
		int64_t backlog;
		double oldest_s;
		struct step_limit step;
		int want;
		enum direction dir;
		const char *why;
	} cases[] = {
		{ 0, 0, { 1, false }, 19, DIR_DOWN, "down 20->19" },
		{ 600, 2, { 1, false }, 19, DIR_DOWN, "down 20->19" },		/* 7 clear it in time */
		{ 3000, 5, { 1, false }, 20, DIR_NONE, "would not clear the backlog of 3000" },	/* 32 needed */
		{ 1200, 3, { 50, true }, 12, DIR_DOWN, "budget: 12 clear the backlog" },	/* 10 allowed, 12 needed */
		{ 0, 0, { 50, true }, 10, DIR_DOWN, "down 20->10" },
	};
	size_t c;

	for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct scale_conf sc = policy();
		struct decide_state st;
		struct signals low = sig(0, 20, 0, 0, 0), drain;
		struct decision d;
		double t;

		sc.down_max_step = cases[c].step;
		decide_state_init(&st);
		st.mu_hat = 10;
		for (t = 0; t < SETTLE + 180; t += 1) {
			d = eval(&st, &sc, t, &low, 20, 20);
			CU_ASSERT_EQUAL_FATAL(d.dir, DIR_NONE);
		}
		drain = sig(cases[c].backlog, 20, 0, cases[c].backlog > 0 ? -80 : 0, cases[c].oldest_s);
		d = eval(&st, &sc, t, &drain, 20, 20);
		CU_ASSERT_EQUAL(d.dir, cases[c].dir);
		CU_ASSERT_EQUAL(d.count, cases[c].want);
		ASSERT_REASON(d, cases[c].why);
	}
}

/*
 * A spike shorter than startup + max_age is a transient: the workers asked
 * for it are lent and given back once its backlog is within the budget,
 * long before the 3-minute window would let the count down one a minute;
 * and the window keeps only sustained demand, so nothing holds them.
 */
static void
test_spike_loan_returned(void)
{
	static struct run r;
	double spike_end;
	int i;

	run_init(&r, 4, 10);
	r.ds.mu_hat = 10;
	for (i = 0; i < 300; i++)
		run_tick(&r, 35);
	CU_ASSERT_EQUAL(r.w.actions, 0);
	for (i = 0; i < 10; i++)
		run_tick(&r, 300);
	spike_end = r.w.t;
	CU_ASSERT_TRUE(r.w.ups >= 1);
	for (i = 0; i < 90; i++)
		run_tick(&r, 35);
	/* back to what 35/s needs within 90 s of the spike's end, not 3 minutes plus one a minute */
	CU_ASSERT_TRUE(r.w.desired <= 5);
	if (r.w.desired > 5)
		fprintf(stderr, "\n  %d workers %.0fs after the spike, last: %s\n", r.w.desired,
		    r.w.t - spike_end, r.last_action.reason);
	ASSERT_REASON(r.last_action, "loan returned");
	CU_ASSERT_TRUE(r.w.downs <= 2);
	CU_ASSERT_TRUE(r.w.max_age_seen <= 30);
	/* and the window did not keep the spike: nothing comes down later */
	for (i = 0; i < 300; i++)
		run_tick(&r, 35);
	CU_ASSERT_TRUE(r.w.downs <= 2);
	CU_ASSERT_TRUE(r.w.desired >= 4);
}

/*
 * A loan given back is no scale-in for the up cooldown: a new spike right
 * after it is answered at once.
 */
static void
test_loan_return_no_up_cooldown(void)
{
	struct scale_conf sc = policy();
	struct decide_state st;
	struct signals quiet = sig(0, 40, 0, 0, 0), spike = sig(2000, 300, 0, 250, 6);
	struct decision d;
	double t;

	decide_state_init(&st);
	st.mu_hat = 10;
	for (t = 0; t < SETTLE + 60; t += 1)
		d = eval(&st, &sc, t, &quiet, 5, 5);
	CU_ASSERT_EQUAL(d.dir, DIR_NONE);
	d = eval(&st, &sc, t, &spike, 5, 5);
	CU_ASSERT_EQUAL(d.dir, DIR_UP);
	decide_applied(&st, &d, t);
	/* the spike is over and its backlog gone: the loan comes back */
	t += 20;
	d = eval(&st, &sc, t, &quiet, 10, 10);
	CU_ASSERT_EQUAL(d.dir, DIR_DOWN);
	CU_ASSERT_EQUAL(d.count, 5);
	ASSERT_REASON(d, "down 10->5: loan returned, 5 workers lent to a transient");
	decide_applied(&st, &d, t);
	/* two seconds later, another spike: no up cooldown to wait for */
	t += 2;
	d = eval(&st, &sc, t, &spike, 5, 5);
	CU_ASSERT_EQUAL(d.dir, DIR_UP);
	ASSERT_REASON(d, "up 5->10");
}

/*
 * Spikes recur: a loan comes back to a reserve, not to the low base, so the
 * next spike's up steps (two with startup 15 s beside max_age 30 s and a 10 s
 * up cooldown, then a third) reach its peak need in time. A spike of 400/s at
 * 10/s per worker needs 40; 5 -> 10 -> 20 -> 40 does it, 4 does not. The
 * reserve stands for two stabilization windows after the return, then the
 * rest of the loan comes back.
 */
static void
test_recurring_spike_reserve(void)
{
	struct scale_conf sc = policy();
	struct decide_state st;
	struct signals quiet = sig(0, 40, 0, 0, 0), spike = sig(2000, 400, 0, 350, 6);
	struct decision d;
	double t, back;
	bool held = false;

	spike.completion_rate = 40;	/* the 4 workers there, at 10/s each */
	decide_state_init(&st);
	st.mu_hat = 10;
	for (t = 0; t < SETTLE + 200; t += 1)
		d = eval(&st, &sc, t, &quiet, 4, 4);
	CU_ASSERT_EQUAL(d.dir, DIR_NONE);
	d = eval(&st, &sc, t, &spike, 4, 4);
	CU_ASSERT_EQUAL(d.dir, DIR_UP);
	CU_ASSERT_EQUAL(d.count, 8);
	decide_applied(&st, &d, t);
	t += 20;
	d = eval(&st, &sc, t, &quiet, 8, 8);
	CU_ASSERT_EQUAL(d.dir, DIR_DOWN);
	CU_ASSERT_EQUAL(d.count, 5);
	ASSERT_REASON(d, "down 8->5: loan returned, 3 workers lent to a transient");
	ASSERT_REASON(d, "reserve 5");
	decide_applied(&st, &d, t);
	back = t;
	/* the reserve holds through the stabilization window and beyond it ... */
	for (t += 1; t < back + 2 * 180; t += 1) {
		d = eval(&st, &sc, t, &quiet, 5, 5);
		CU_ASSERT_EQUAL(d.dir, DIR_NONE);
		if (strcmp(d.rule, "reserve") == 0)
			held = true;
	}
	CU_ASSERT_TRUE(held);
	ASSERT_REASON(d, "spikes recur: they needed up to 40, which up steps from 5 reach in time");
	/* ... and then no longer: the rest of the loan comes back to sustained demand (4) */
	d = eval(&st, &sc, t + 1, &quiet, 5, 5);
	CU_ASSERT_EQUAL(d.dir, DIR_DOWN);
	CU_ASSERT_EQUAL(d.count, 4);
	ASSERT_REASON(d, "down 5->4: loan returned, 1 worker lent to a transient; sustained demand 4");
}

/*
 * max_age as a budget on the way up. The tail of a spike: arrivals back to
 * 60/s, 3000 waiting that came in over the last 5 s, 10 workers of 10/s. A
 * worker asked now starts in 15 s; by then the 10 have served 1500 and 900
 * more have come. Served oldest first at 10 x 10/s, the newest of today's
 * backlog waits 30 s, the newest of all 24 s: the 10 keep every message
 * within max_age, and the rate rule asks for 10 (the old rule asked for 16,
 * to drain in half of max_age whatever the ages). Only the backlog rule
 * (3000 / 200) asks for more. A backlog the workers there clear before a
 * new one could start needs none.
 */
static void
test_up_budget(void)
{
	struct scale_conf sc = policy();
	struct decide_state st;
	struct signals tail = sig(3000, 60, 0, -40, 5), small = sig(600, 20, 0, -80, 4);
	struct decision d;
	double t;

	tail.completion_rate = small.completion_rate = 100;	/* 10 busy workers of 10/s */

	decide_state_init(&st);
	st.mu_hat = 10;
	for (t = 0; t < SETTLE; t += 1)
		eval(&st, &sc, t, &tail, 10, 10);
	d = eval(&st, &sc, t, &tail, 10, 10);
	CU_ASSERT_EQUAL(d.dir, DIR_UP);
	CU_ASSERT_EQUAL(d.count, 15);
	ASSERT_REASON(d, "up 10->15: backlog rule 15 (");
	ASSERT_REASON(d, "beats rate rule 10");
	decide_state_init(&st);
	st.mu_hat = 10;
	for (t = 0; t < SETTLE; t += 1)
		eval(&st, &sc, t, &small, 10, 10);
	d = eval(&st, &sc, t, &small, 10, 10);
	CU_ASSERT_EQUAL(d.count, 10);
	ASSERT_REASON(d, "the workers there clear the backlog before a new one could start");
}

/*
 * Consumers that read in batches hold pending messages while idle: a backlog
 * of pending ones only is not a busy spell, and teaches no mu (a low one
 * would make the next surge ask for far too many workers).
 */
static void
test_mu_pending_not_busy(void)
{
	struct scale_conf sc = policy();
	struct decide_state st;
	struct signals s = sig(32, 30, 0, 1, 0.3);
	double t;

	s.undelivered = 0;		/* 2 workers x 2 processes x batch 8, all pending */
	s.completion_rate = 30;
	decide_state_init(&st);
	for (t = 0; t < 3 * SETTLE; t += 1)
		eval(&st, &sc, t, &s, 2, 2);
	CU_ASSERT_DOUBLE_EQUAL(st.mu_hat, 0, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(st.mu_floor, 15, 1e-9);	/* a lower bound only */
	s.undelivered = 20;		/* now more than the workers hold: busy */
	for (; t < 6 * SETTLE; t += 1)
		eval(&st, &sc, t, &s, 2, 2);
	CU_ASSERT_DOUBLE_EQUAL(st.mu_hat, 15, 1e-9);
}

/*
 * The documented defaults (down: cooldown 30s, stabilization 1m, max_step
 * 50%): after a surge the count halves every 30 s once the lower demand has
 * held for a minute, and never before.
 */
static void
test_drain_defaults(void)
{
	static struct run r;
	double prev_down = -1, first_down = -1;
	int i, prev = 40;

	run_init(&r, 40, 10);
	r.sc.down_cooldown_ms = 30000;
	r.sc.down_stabilization_ms = 60000;
	r.sc.down_max_step = (struct step_limit){ 50, true };
	r.ds.mu_hat = 10;
	for (i = 0; i < 600; i++) {
		struct decision d = run_tick(&r, 15);
		if (d.dir == DIR_NONE)
			continue;
		CU_ASSERT_EQUAL(d.dir, DIR_DOWN);
		CU_ASSERT_TRUE(d.count >= prev - prev / 2);
		if (first_down < 0)
			first_down = d.t;
		if (prev_down >= 0)
			CU_ASSERT_TRUE(d.t - prev_down >= 30);
		prev_down = d.t;
		prev = d.count;
	}
	CU_ASSERT_TRUE(first_down >= SETTLE + 60);
	CU_ASSERT_EQUAL(r.w.desired, 2);
	CU_ASSERT_EQUAL(r.w.ups, 0);
	/* 40 -> 20 -> 10 -> 5 -> 3 -> 2: five halvings, all within 4 minutes of the rates settling */
	CU_ASSERT_EQUAL(r.w.downs, 5);
	CU_ASSERT_TRUE(prev_down <= SETTLE + 60 + 4 * 30 + 2);
}

/* min 0: idle goes to zero after the window; any backlog brings one back. */
static void
test_scale_to_zero_and_back(void)
{
	static struct run r;
	struct decision d;
	int i;

	run_init(&r, 1, 10);
	r.sc.min = 0;
	for (i = 0; i < 400 && r.w.desired > 0; i++)
		run_tick(&r, 0);
	CU_ASSERT_EQUAL(r.w.desired, 0);
	CU_ASSERT_EQUAL(r.last_action.dir, DIR_DOWN);
	CU_ASSERT_TRUE(r.last_action.t >= 180);
	for (i = 0; i < 30; i++)
		run_tick(&r, 0);
	CU_ASSERT_EQUAL(r.w.desired, 0);
	d = run_tick(&r, 3);
	CU_ASSERT_EQUAL(d.dir, DIR_UP);
	CU_ASSERT_EQUAL(d.count, 1);
	ASSERT_REASON(d, "up 0->1");
	ASSERT_REASON(d, "backlog 3");
}

/* The same inputs give the same outputs. */
static void
test_deterministic(void)
{
	static struct run a, b;
	unsigned s1 = 7, s2 = 7;
	int i;

	run_init(&a, 2, 10);
	run_init(&b, 2, 10);
	for (i = 0; i < 900; i++) {
		int n1 = (int)(100 + 80 * noise(&s1)), n2 = (int)(100 + 80 * noise(&s2));
		struct decision d1 = run_tick(&a, i > 300 ? n1 * 3 : n1);
		struct decision d2 = run_tick(&b, i > 300 ? n2 * 3 : n2);
		CU_ASSERT_EQUAL_FATAL(d1.count, d2.count);
		CU_ASSERT_STRING_EQUAL_FATAL(d1.reason, d2.reason);
	}
	CU_ASSERT_TRUE(a.w.actions > 0);
}

int
main(void)
{
	CU_pSuite suite;
	unsigned fails;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	suite = CU_add_suite("decide", NULL, NULL);
	CU_add_test(suite, "missing data, stale, Nomad unknown, stopped: hold", test_missing_data_holds);
	CU_add_test(suite, "a data gap restarts the stabilization window", test_gap_restarts_stabilization);
	CU_add_test(suite, "bounds: min, max, partitions", test_bounds);
	CU_add_test(suite, "step limits up (count, percent)", test_step_limits_up);
	CU_add_test(suite, "step limits down (count, percent)", test_step_limits_down);
	CU_add_test(suite, "cooldown per direction of the next action", test_cooldown_per_direction);
	CU_add_test(suite, "an action not applied is asked again", test_not_applied_retries);
	CU_add_test(suite, "capacity in flight: no stacking", test_capacity_in_flight);
	CU_add_test(suite, "age rule", test_age_rule);
	CU_add_test(suite, "learning the per-worker rate", test_mu_learning);
	CU_add_test(suite, "surge: acts within two ticks", test_surge);
	CU_add_test(suite, "slow ramp", test_slow_ramp);
	CU_add_test(suite, "noise around a steady level: no action", test_noise_no_flapping);
	CU_add_test(suite, "drain one step at a time after the window", test_drain);
	CU_add_test(suite, "drain with the per-worker rate unknown", test_drain_unknown_rate);
	CU_add_test(suite, "rate unknown, steady load: the count holds", test_unknown_rate_holds);
	CU_add_test(suite, "a steady group found at start: no action", test_steady_start_no_action);
	CU_add_test(suite, "a scale-up on a lower-bound mu needs messages waiting", test_bound_needs_queueing);
	CU_add_test(suite, "rates settle before the rate rule and the window count", test_rates_settle_first);
	CU_add_test(suite, "max_age as a budget on the way down", test_down_budget);
	CU_add_test(suite, "drain with the documented down defaults", test_drain_defaults);
	CU_add_test(suite, "a short spike's workers are lent and given back", test_spike_loan_returned);
	CU_add_test(suite, "a loan given back does not start the up cooldown", test_loan_return_no_up_cooldown);
	CU_add_test(suite, "a loan comes back to a reserve while spikes recur", test_recurring_spike_reserve);
	CU_add_test(suite, "max_age as a budget on the way up", test_up_budget);
	CU_add_test(suite, "pending messages alone are not a busy spell", test_mu_pending_not_busy);
	CU_add_test(suite, "scale to zero and back", test_scale_to_zero_and_back);
	CU_add_test(suite, "deterministic", test_deterministic);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	fails = CU_get_number_of_failures();
	CU_cleanup_registry();
	return fails != 0;
}
