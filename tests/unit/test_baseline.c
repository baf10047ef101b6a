/*
 * test_baseline — each baseline pinned to worked examples of its published
 * formula (scaleno-simulate(1), BASELINES), with backlog_per_worker
 * 200 as the target and a 60 s scale.down.stabilization.
 */
#include <string.h>
#include <CUnit/Basic.h>

#include "baseline.h"

static struct scale_conf
policy(int min, int max)
{
	struct scale_conf sc;

	memset(&sc, 0, sizeof(sc));
	sc.min = min;
	sc.max = max;
	sc.backlog_per_worker = 200;
	sc.down_stabilization_ms = 60000;
	return sc;
}

#define ASSERT_REASON(r, sub) CU_ASSERT_PTR_NOT_NULL(strstr((r), (sub)))

static void
test_names(void)
{
	enum baseline_kind k;
	int i;

	CU_ASSERT_EQUAL(baseline_parse("target-value", &k), 0);
	CU_ASSERT_EQUAL(k, BASELINE_TARGET_VALUE);
	CU_ASSERT_EQUAL(baseline_parse("hpa", &k), 0);
	CU_ASSERT_EQUAL(k, BASELINE_HPA);
	CU_ASSERT_EQUAL(baseline_parse("hpa-tuned", &k), 0);
	CU_ASSERT_EQUAL(k, BASELINE_HPA_TUNED);
	CU_ASSERT_EQUAL(baseline_parse("HPA", &k), -1);
	CU_ASSERT_EQUAL(baseline_parse("hpa-", &k), -1);
	CU_ASSERT_STRING_EQUAL(baseline_name(BASELINE_HPA), "hpa");
	CU_ASSERT_STRING_EQUAL(baseline_name(BASELINE_HPA_TUNED), "hpa-tuned");
	for (i = 0; i < BASELINE_NKINDS; i++) {
		CU_ASSERT_EQUAL(baseline_parse(baseline_name((enum baseline_kind)i), &k), 0);
		CU_ASSERT_EQUAL(k, (enum baseline_kind)i);
	}
}

/* target-value: factor = (backlog / running) / target; new = ceil(running x factor). */
static void
test_target_value_worked_example(void)
{
	struct scale_conf sc = policy(1, 60);
	struct baseline_state b;
	char why[200];

	baseline_init(&b, BASELINE_TARGET_VALUE, &sc, 0);
	/* 1000 / 4 = 250 per worker, factor 1.25 > 1.01: ceil(4 x 1.25) = 5 */
	CU_ASSERT_EQUAL(baseline_next(&b, 0, 1000, 4, 4, why, sizeof(why)), 5);
	ASSERT_REASON(why, "scaling up because factor is 1.250000");
	/* between evaluations (every 10 s): nothing */
	CU_ASSERT_EQUAL(baseline_next(&b, 5, 50000, 5, 5, why, sizeof(why)), 5);
	CU_ASSERT_STRING_EQUAL(why, "");
	/* the 5 minute cooldown follows any action */
	CU_ASSERT_EQUAL(baseline_next(&b, 10, 50000, 5, 5, why, sizeof(why)), 5);
	ASSERT_REASON(why, "cooldown 290s left");
	/* after it: 790 / 5 = 158, factor 0.79: ceil(5 x 0.79) = ceil(3.95) = 4 */
	CU_ASSERT_EQUAL(baseline_next(&b, 300, 790, 5, 5, why, sizeof(why)), 4);
	ASSERT_REASON(why, "scaling down");
}

static void
test_target_value_threshold_and_zero(void)
{
	struct scale_conf sc = policy(0, 60);
	struct baseline_state b;
	char why[200];

	baseline_init(&b, BASELINE_TARGET_VALUE, &sc, 0);
	/* 805 / 4 = 201.25, factor 1.00625: inside the 1% threshold */
	CU_ASSERT_EQUAL(baseline_next(&b, 0, 805, 4, 4, why, sizeof(why)), 4);
	ASSERT_REASON(why, "within threshold");
	/* from zero: up iff factor > 0, to ceil(factor) = ceil(1/200) = 1 */
	baseline_init(&b, BASELINE_TARGET_VALUE, &sc, 0);
	CU_ASSERT_EQUAL(baseline_next(&b, 0, 1, 0, 0, why, sizeof(why)), 1);
	baseline_init(&b, BASELINE_TARGET_VALUE, &sc, 0);
	CU_ASSERT_EQUAL(baseline_next(&b, 0, 0, 0, 0, why, sizeof(why)), 0);
	/* capped at max: 100000 / 4 = 25000, factor 125 -> 500 -> 60 */
	baseline_init(&b, BASELINE_TARGET_VALUE, &sc, 0);
	CU_ASSERT_EQUAL(baseline_next(&b, 0, 100000, 4, 4, why, sizeof(why)), 60);
}

/* It counts Running, not Desired: starting allocations are invisible to it. */
static void
test_target_value_counts_running(void)
{
	struct scale_conf sc = policy(1, 60);
	struct baseline_state b;
	char why[200];

	baseline_init(&b, BASELINE_TARGET_VALUE, &sc, 0);
	/* 10 asked, 4 running, 800 waiting: 200 per running worker, factor 1: no action */
	CU_ASSERT_EQUAL(baseline_next(&b, 0, 800, 10, 4, why, sizeof(why)), 10);
	/* 1600 waiting: factor 2, ceil(4 x 2) = 8 -- below the 10 already asked for */
	baseline_init(&b, BASELINE_TARGET_VALUE, &sc, 0);
	CU_ASSERT_EQUAL(baseline_next(&b, 0, 1600, 10, 4, why, sizeof(why)), 8);
	ASSERT_REASON(why, "running 4 -> 8");
}

/* HPA AverageValue: inside tolerance keep, else ceil(backlog / 200); up limit max(+4, +100%) per 15 s. */
static void
test_hpa_formula_and_tolerance(void)
{
	struct scale_conf sc = policy(1, 60);
	struct baseline_state b;
	char why[200];

	baseline_init(&b, BASELINE_HPA, &sc, 0);
	/* ratio 1000 / (200 x 4) = 1.25: desired ceil(1000 / 200) = 5 */
	CU_ASSERT_EQUAL(baseline_next(&b, 0, 1000, 4, 4, why, sizeof(why)), 5);
	ASSERT_REASON(why, "ratio 1.250");
	/* every 15 s only */
	CU_ASSERT_EQUAL(baseline_next(&b, 14, 9000, 5, 5, why, sizeof(why)), 5);
	/* ratio 1050 / 1000 = 1.05: inside the 0.1 tolerance */
	CU_ASSERT_EQUAL(baseline_next(&b, 15, 1050, 5, 5, why, sizeof(why)), 5);
	ASSERT_REASON(why, "recommendation 5");
}

static void
test_hpa_rate_limit_up(void)
{
	struct scale_conf sc = policy(1, 60);
	struct baseline_state b;
	char why[200];

	baseline_init(&b, BASELINE_HPA, &sc, 0);
	/* wants 50; from 2 the limit is max(2 + 4, 2 x 2) = 6 */
	CU_ASSERT_EQUAL(baseline_next(&b, 0, 10000, 2, 2, why, sizeof(why)), 6);
	/* next period: wants 100; from 6 max(6 + 4, 12) = 12 */
	CU_ASSERT_EQUAL(baseline_next(&b, 15, 20000, 6, 6, why, sizeof(why)), 12);
	/* then 24, then 48, then capped at max 60 */
	CU_ASSERT_EQUAL(baseline_next(&b, 30, 20000, 12, 12, why, sizeof(why)), 24);
	CU_ASSERT_EQUAL(baseline_next(&b, 45, 20000, 24, 24, why, sizeof(why)), 48);
	CU_ASSERT_EQUAL(baseline_next(&b, 60, 20000, 48, 48, why, sizeof(why)), 60);
}

/* Down: the highest recommendation of the last 300 s; then 100% per period. */
static void
test_hpa_down_stabilization(void)
{
	struct scale_conf sc = policy(1, 60);
	struct baseline_state b;
	char why[200];
	double t;

	baseline_init(&b, BASELINE_HPA, &sc, 0);
	CU_ASSERT_EQUAL(baseline_next(&b, 0, 2000, 10, 10, why, sizeof(why)), 10);
	for (t = 15; t < 300; t += 15) {
		CU_ASSERT_EQUAL(baseline_next(&b, t, 400, 10, 10, why, sizeof(why)), 10);
		ASSERT_REASON(why, "recommendation 2, stabilized 10");
	}
	/* the recommendation of t=0 left the window: down to 2 at once */
	CU_ASSERT_EQUAL(baseline_next(&b, 300, 400, 10, 10, why, sizeof(why)), 2);
}

/* hpa and hpa-tuned side by side, their first evaluation at 0 */
static void
start_both(struct baseline_state *h, struct baseline_state *tu, const struct scale_conf *sc)
{
	baseline_init(h, BASELINE_HPA, sc, 0);
	baseline_init(tu, BASELINE_HPA_TUNED, sc, 0);
}

/*
 * hpa-tuned: the same recommendations, but the down window is the policy's
 * (60 s here): the count comes down at 60 s, where hpa holds until 300 s.
 * Then a window of 0, and one of 30 minutes.
 */
static void
test_hpa_tuned_down_window(void)
{
	struct scale_conf sc = policy(1, 60);
	struct baseline_state h, tu;
	char why[200];
	double t;

	start_both(&h, &tu, &sc);
	CU_ASSERT_EQUAL(baseline_next(&h, 0, 2000, 10, 10, why, sizeof(why)), 10);
	CU_ASSERT_EQUAL(baseline_next(&tu, 0, 2000, 10, 10, why, sizeof(why)), 10);
	for (t = 15; t < 60; t += 15) {
		CU_ASSERT_EQUAL(baseline_next(&tu, t, 400, 10, 10, why, sizeof(why)), 10);
		ASSERT_REASON(why, "hpa-tuned: ratio 0.200, recommendation 2, stabilized 10");
		CU_ASSERT_EQUAL(baseline_next(&h, t, 400, 10, 10, why, sizeof(why)), 10);
	}
	/* t=0 left the 60 s window: down 100% per period allows 10 -> 2 at once */
	CU_ASSERT_EQUAL(baseline_next(&tu, 60, 400, 10, 10, why, sizeof(why)), 2);
	ASSERT_REASON(why, "hpa-tuned: ratio 0.200, recommendation 2, stabilized 2, current 10 -> 2");
	CU_ASSERT_EQUAL(baseline_next(&h, 60, 400, 10, 10, why, sizeof(why)), 10);
	ASSERT_REASON(why, "hpa: ratio 0.200, recommendation 2, stabilized 10");

	/* scale.down.stabilization 0: down at the first lower recommendation */
	sc.down_stabilization_ms = 0;
	baseline_init(&tu, BASELINE_HPA_TUNED, &sc, 0);
	CU_ASSERT_EQUAL(baseline_next(&tu, 0, 2000, 10, 10, why, sizeof(why)), 10);
	CU_ASSERT_EQUAL(baseline_next(&tu, 15, 400, 10, 10, why, sizeof(why)), 2);

	/* a window longer than BASELINE_HIST periods (30 min = 120) still holds its highest */
	sc.down_stabilization_ms = 30 * 60000;
	baseline_init(&tu, BASELINE_HPA_TUNED, &sc, 0);
	CU_ASSERT_EQUAL(baseline_next(&tu, 0, 2000, 10, 10, why, sizeof(why)), 10);
	for (t = 15; t < 1800; t += 15)
		CU_ASSERT_EQUAL(baseline_next(&tu, t, 400 + (t < 900 ? 200 : 0), 10, 10, why, sizeof(why)), 10);
	/* t=0 left: the highest of the window is 3, from t=15 .. 885 */
	CU_ASSERT_EQUAL(baseline_next(&tu, 1800, 400, 10, 10, why, sizeof(why)), 3);
	ASSERT_REASON(why, "stabilized 3");
}

/* hpa-tuned: up is not rate-limited (Pods = scale.max per period); hpa is (+4 or +100%). */
static void
test_hpa_tuned_up_unlimited(void)
{
	struct scale_conf sc = policy(1, 60);
	struct baseline_state h, tu;
	char why[200];

	start_both(&h, &tu, &sc);
	/* wants 50 from 2: hpa's limit is max(2 + 4, 2 x 2) = 6, hpa-tuned's 2 + 60 */
	CU_ASSERT_EQUAL(baseline_next(&h, 0, 10000, 2, 2, why, sizeof(why)), 6);
	CU_ASSERT_EQUAL(baseline_next(&tu, 0, 10000, 2, 2, why, sizeof(why)), 50);
	ASSERT_REASON(why, "hpa-tuned: ratio 25.000, recommendation 50, stabilized 50, current 2 -> 50");
	/* wants 100 from 50: capped at scale.max only */
	CU_ASSERT_EQUAL(baseline_next(&tu, 15, 20000, 50, 50, why, sizeof(why)), 60);
	/* from 1, wanting 500: hpa-tuned goes to scale.max at once, hpa to max(1 + 4, 1 x 2) = 5 */
	start_both(&h, &tu, &sc);
	CU_ASSERT_EQUAL(baseline_next(&h, 0, 100000, 1, 1, why, sizeof(why)), 5);
	CU_ASSERT_EQUAL(baseline_next(&tu, 0, 100000, 1, 1, why, sizeof(why)), 60);
}

/* minReplicas is at least 1, even when the policy allows zero. */
static void
test_hpa_never_zero(void)
{
	struct scale_conf sc = policy(0, 60);
	struct baseline_state b;
	char why[200];

	baseline_init(&b, BASELINE_HPA, &sc, 0);
	CU_ASSERT_EQUAL(baseline_next(&b, 0, 0, 1, 1, why, sizeof(why)), 1);
	CU_ASSERT_EQUAL(baseline_next(&b, 300, 0, 1, 1, why, sizeof(why)), 1);
	baseline_init(&b, BASELINE_HPA_TUNED, &sc, 0);
	CU_ASSERT_EQUAL(baseline_next(&b, 0, 0, 1, 1, why, sizeof(why)), 1);
	CU_ASSERT_EQUAL(baseline_next(&b, 60, 0, 1, 1, why, sizeof(why)), 1);
}

int
main(void)
{
	CU_pSuite s;
	unsigned fails;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("baseline", NULL, NULL);
	CU_add_test(s, "names", test_names);
	CU_add_test(s, "target-value worked example with cooldown", test_target_value_worked_example);
	CU_add_test(s, "target-value threshold, zero, max", test_target_value_threshold_and_zero);
	CU_add_test(s, "target-value counts Running", test_target_value_counts_running);
	CU_add_test(s, "hpa formula and tolerance", test_hpa_formula_and_tolerance);
	CU_add_test(s, "hpa scale-up rate limit", test_hpa_rate_limit_up);
	CU_add_test(s, "hpa scale-down stabilization", test_hpa_down_stabilization);
	CU_add_test(s, "hpa-tuned scale-down after the policy's window", test_hpa_tuned_down_window);
	CU_add_test(s, "hpa-tuned scale-up not rate-limited", test_hpa_tuned_up_unlimited);
	CU_add_test(s, "hpa and hpa-tuned never below 1", test_hpa_never_zero);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	fails = CU_get_number_of_failures();
	CU_cleanup_registry();
	return fails != 0;
}
