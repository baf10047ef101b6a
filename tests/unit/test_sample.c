/*
 * test_sample — the sampler's arithmetic on hand-computed sequences.
 * tau = 1/ln 2 makes the EWMA weight exactly 1/2 for a 1 s step and 3/4 for
 * a 2 s step, so the expected figures below are worked out by hand.
 */
#include <math.h>
#include <CUnit/Basic.h>

#include "sample.h"

#define TAU_HALF (1.0 / M_LN2)
#define EPS 1e-9

static struct raw_sample
raw(double t, int64_t lag, int64_t pending, int64_t added, int64_t read, int64_t age_ms)
{
	struct raw_sample r = { 0 };

	r.t = t;
	r.ok = true;
	r.lag = lag;
	r.pending = pending;
	r.entries_added = added;
	r.entries_read = read;
	r.oldest_age_ms = age_ms;
	return r;
}

static void
test_first_sample_levels_only(void)
{
	struct sample_state st;
	struct signals s;
	struct raw_sample r = raw(10, 300, 40, 1000, 700, 5200);

	sample_state_init(&st, TAU_HALF);
	r.dlq_length = 3;
	r.halted = 1;
	sample_update(&st, &r, &s);
	CU_ASSERT_TRUE(s.valid);
	CU_ASSERT_FALSE(s.rates_valid);
	CU_ASSERT_EQUAL(s.undelivered, 300);
	CU_ASSERT_EQUAL(s.pending, 40);
	CU_ASSERT_EQUAL(s.backlog, 340);
	CU_ASSERT_DOUBLE_EQUAL(s.oldest_age_s, 5.2, EPS);
	CU_ASSERT_EQUAL(s.dlq_length, 3);
	CU_ASSERT_EQUAL(s.halted, 1);
	CU_ASSERT_DOUBLE_EQUAL(s.arrival_rate, 0, EPS);
}

/* Each row: a reading, and the signals expected after it. */
struct row {
	double t;
	int64_t lag, pending, added, read;
	double lambda, mu, trend, slope;
	bool rates_valid;
};

static void
run_rows(const struct row *rows, size_t n)
{
	struct sample_state st;
	struct signals s;
	size_t i;

	sample_state_init(&st, TAU_HALF);
	for (i = 0; i < n; i++) {
		struct raw_sample r = raw(rows[i].t, rows[i].lag, rows[i].pending, rows[i].added, rows[i].read, 0);
		sample_update(&st, &r, &s);
		CU_ASSERT_EQUAL(s.rates_valid, rows[i].rates_valid);
		CU_ASSERT_DOUBLE_EQUAL(s.arrival_rate, rows[i].lambda, 1e-6);
		CU_ASSERT_DOUBLE_EQUAL(s.completion_rate, rows[i].mu, 1e-6);
		CU_ASSERT_DOUBLE_EQUAL(s.trend, rows[i].trend, 1e-6);
		CU_ASSERT_DOUBLE_EQUAL(s.arrival_slope, rows[i].slope, 1e-6);
		CU_ASSERT_TRUE(s.arrival_rate >= 0 && s.completion_rate >= 0);
	}
}

static void
test_rates_and_ewma(void)
{
	static const struct row rows[] = {
		/* t, lag, pend, added, read  -> lambda, mu, trend, slope */
		{ 0, 100, 10, 1000, 900, 0, 0, 0, 0, false },
		/* first rate is taken as is: added +20 in 2 s = 10/s; completed
		 * (read - pending) 890 -> 904 = 7/s; backlog 110 -> 116 = +3/s */
		{ 2, 104, 12, 1020, 916, 10, 7, 3, 0, true },
		/* 1 s, alpha 1/2: lambda 20 -> 15; completed 904 -> 918 = 14 -> 10.5;
		 * backlog 116 -> 122 = 6 -> 4.5; slope (15-10)/1 = 5 -> 2.5 */
		{ 3, 110, 12, 1040, 930, 15, 10.5, 4.5, 2.5, true },
		/* 2 s, alpha 3/4: lambda 10 -> 15 + .75*(10-15) = 11.25;
		 * completed 918 -> 938 = 10 -> 10.5 - .375 = 10.125;
		 * backlog 122 -> 122 = 0 -> 1.125; slope (11.25-15)/2 = -1.875
		 * -> 2.5 + .75*(-1.875-2.5) = -0.78125 */
		{ 5, 110, 12, 1060, 950, 11.25, 10.125, 1.125, -0.78125, true },
	};
	run_rows(rows, sizeof(rows) / sizeof(rows[0]));
}

static void
test_counter_reset_restarts_rates(void)
{
	static const struct row rows[] = {
		{ 0, 0, 0, 5000, 5000, 0, 0, 0, 0, false },
		{ 1, 0, 0, 5010, 5010, 10, 10, 0, 0, true },
		/* Redis restarted empty: counters fall. No negative rate, rates restart. */
		{ 2, 3, 0, 3, 0, 0, 0, 0, 0, false },
		/* measured from the new base: 7 added, 2 completed, backlog 3 -> 8 */
		{ 3, 8, 0, 10, 2, 7, 2, 5, 0, true },
	};
	run_rows(rows, sizeof(rows) / sizeof(rows[0]));
}

static void
test_pending_shrink_is_not_negative_completion(void)
{
	static const struct row rows[] = {
		{ 0, 0, 50, 100, 100, 0, 0, 0, 0, false },
		/* XAUTOCLAIM deleted 20 pending entries: completed 50 -> 70 */
		{ 1, 0, 30, 100, 100, 0, 20, -20, 0, true },
		/* pending grows by 10 from new deliveries of nothing read: completed falls, clamp to 0 */
		{ 2, 0, 40, 100, 100, 0, 10, -5, 0, true },
	};
	run_rows(rows, sizeof(rows) / sizeof(rows[0]));
}

static void
test_invalid_sample_keeps_rates(void)
{
	struct sample_state st;
	struct signals s;
	struct raw_sample r;

	sample_state_init(&st, TAU_HALF);
	r = raw(0, 10, 0, 100, 90, 1000);
	sample_update(&st, &r, &s);
	r = raw(1, 10, 0, 110, 100, 1000);
	sample_update(&st, &r, &s);
	CU_ASSERT_DOUBLE_EQUAL(s.arrival_rate, 10, EPS);

	r = raw(2, 0, 0, 0, 0, 0);
	r.ok = false;
	sample_update(&st, &r, &s);
	CU_ASSERT_FALSE(s.valid);
	CU_ASSERT_TRUE(s.rates_valid);
	CU_ASSERT_DOUBLE_EQUAL(s.arrival_rate, 10, EPS);
	CU_ASSERT_EQUAL(s.backlog, 10);

	/* the next good reading measures over the whole 2 s gap: 40 in 2 s = 20/s,
	 * dt 2 s so alpha 3/4: 10 + .75*10 = 17.5 */
	r = raw(3, 10, 0, 150, 140, 1000);
	sample_update(&st, &r, &s);
	CU_ASSERT_TRUE(s.valid);
	CU_ASSERT_DOUBLE_EQUAL(s.arrival_rate, 17.5, 1e-6);
}

static void
test_nonpositive_dt_ignored(void)
{
	struct sample_state st;
	struct signals s;
	struct raw_sample r;

	sample_state_init(&st, TAU_HALF);
	r = raw(5, 10, 0, 100, 90, 0);
	sample_update(&st, &r, &s);
	r = raw(6, 10, 0, 110, 100, 0);
	sample_update(&st, &r, &s);
	r = raw(6, 999, 0, 500, 100, 0);	/* same instant */
	sample_update(&st, &r, &s);
	CU_ASSERT_EQUAL(s.backlog, 10);
	CU_ASSERT_DOUBLE_EQUAL(s.arrival_rate, 10, EPS);
	r = raw(4, 999, 0, 500, 100, 0);	/* from the past */
	sample_update(&st, &r, &s);
	CU_ASSERT_EQUAL(s.backlog, 10);
	CU_ASSERT_DOUBLE_EQUAL(s.t, 6, EPS);
}

static void
test_no_smoothing_when_tau_zero(void)
{
	struct sample_state st;
	struct signals s;
	struct raw_sample r;

	sample_state_init(&st, 0);
	r = raw(0, 0, 0, 0, 0, 0);
	sample_update(&st, &r, NULL);
	r = raw(1, 0, 0, 10, 10, 0);
	sample_update(&st, &r, NULL);
	r = raw(2, 0, 0, 40, 40, 0);
	sample_update(&st, &r, &s);
	CU_ASSERT_DOUBLE_EQUAL(s.arrival_rate, 30, EPS);
	CU_ASSERT_DOUBLE_EQUAL(s.arrival_slope, 20, EPS);
}

int
main(void)
{
	CU_pSuite suite;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	suite = CU_add_suite("sample", NULL, NULL);
	CU_add_test(suite, "first sample gives levels only", test_first_sample_levels_only);
	CU_add_test(suite, "rates and EWMA with irregular dt", test_rates_and_ewma);
	CU_add_test(suite, "counters going backwards restart rates", test_counter_reset_restarts_rates);
	CU_add_test(suite, "pending shrink never gives negative completion", test_pending_shrink_is_not_negative_completion);
	CU_add_test(suite, "invalid sample keeps rates, marks invalid", test_invalid_sample_keeps_rates);
	CU_add_test(suite, "dt <= 0 ignored", test_nonpositive_dt_ignored);
	CU_add_test(suite, "tau 0 means no smoothing", test_no_smoothing_when_tau_zero);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	unsigned fails = CU_get_number_of_failures();
	CU_cleanup_registry();
	return fails != 0;
}
