/*
 * test_modes — the decision table of the four modes (scaleno-worker(8), MODES).
 */
#include <CUnit/Basic.h>

#include "modes.h"

static const struct mode_limits L1 = { MODE_DROP, 3, 0, 10, 200, 10000, 0 };
static const struct mode_limits L2 = { MODE_ORDERED_DROP, 3, 0, 10, 200, 10000, 0 };
static const struct mode_limits L3 = { MODE_DLQ, 3, 3, 10, 200, 10000, 0 };
static const struct mode_limits L4 = { MODE_HALT, 3, 0, 10, 200, 1000, 0 };
static const struct mode_limits L3NOSTAGE = { MODE_DLQ, 1, 0, 5, 100, 1000, 0 };
/* retry_for 5 minutes */
static const struct mode_limits L2R = { MODE_ORDERED_DROP, 3, 0, 10, 200, 10000, 300000 };
static const struct mode_limits L4R = { MODE_HALT, 3, 0, 10, 200, 10000, 300000 };
static const struct mode_limits L1R = { MODE_DROP, 3, 0, 10, 200, 10000, 300000 };
static const struct mode_limits L3R = { MODE_DLQ, 3, 1, 10, 200, 10000, 300000 };

static const struct {
	const struct mode_limits *lim;
	enum handler_outcome outcome;
	int failures, stage;
	enum mode_action want;
	int want_stage;
	int64_t want_backoff;
	int64_t failing_ms;
} table[] = {
	/* success acknowledges in every mode, wherever the message is */
	{ &L1, HANDLER_OK, 0, 0, MODE_ACT_ACK, 0, 0, 0 },
	{ &L2, HANDLER_OK, 0, 0, MODE_ACT_ACK, 0, 0, 0 },
	{ &L3, HANDLER_OK, 0, 2, MODE_ACT_ACK, 0, 0, 0 },
	{ &L4, HANDLER_OK, 0, 0, MODE_ACT_ACK, 0, 0, 0 },
	/* mode 1: immediate retries, then drop */
	{ &L1, HANDLER_RETRY, 1, 0, MODE_ACT_RETRY, 0, 0, 0 },
	{ &L1, HANDLER_RETRY, 3, 0, MODE_ACT_RETRY, 0, 0, 0 },
	{ &L1, HANDLER_RETRY, 4, 0, MODE_ACT_DROP, 0, 0, 0 },
	{ &L1, HANDLER_FAIL, 1, 0, MODE_ACT_DROP, 0, 0, 0 },
	/* mode 2: retries with exponential backoff, then drop */
	{ &L2, HANDLER_RETRY, 1, 0, MODE_ACT_RETRY, 0, 200, 0 },
	{ &L2, HANDLER_RETRY, 2, 0, MODE_ACT_RETRY, 0, 400, 0 },
	{ &L2, HANDLER_RETRY, 3, 0, MODE_ACT_RETRY, 0, 800, 0 },
	{ &L2, HANDLER_RETRY, 4, 0, MODE_ACT_DROP, 0, 0, 0 },
	{ &L2, HANDLER_FAIL, 1, 0, MODE_ACT_DROP, 0, 0, 0 },
	/* mode 3: retries, then stage 1..3, then the DLQ; fail goes straight there */
	{ &L3, HANDLER_RETRY, 1, 0, MODE_ACT_RETRY, 0, 200, 0 },
	{ &L3, HANDLER_RETRY, 4, 0, MODE_ACT_STAGE, 1, 0, 0 },
	{ &L3, HANDLER_RETRY, 2, 1, MODE_ACT_RETRY, 0, 400, 0 },
	{ &L3, HANDLER_RETRY, 4, 1, MODE_ACT_STAGE, 2, 0, 0 },
	{ &L3, HANDLER_RETRY, 4, 2, MODE_ACT_STAGE, 3, 0, 0 },
	{ &L3, HANDLER_RETRY, 4, 3, MODE_ACT_DLQ, 0, 0, 0 },
	{ &L3, HANDLER_FAIL, 1, 0, MODE_ACT_DLQ, 0, 0, 0 },
	{ &L3, HANDLER_FAIL, 1, 2, MODE_ACT_DLQ, 0, 0, 0 },
	{ &L3NOSTAGE, HANDLER_RETRY, 2, 0, MODE_ACT_DLQ, 0, 0, 0 },
	/* mode 4: backoff capped at max_backoff, then halt; fail halts at once */
	{ &L4, HANDLER_RETRY, 1, 0, MODE_ACT_RETRY, 0, 200, 0 },
	{ &L4, HANDLER_RETRY, 3, 0, MODE_ACT_RETRY, 0, 800, 0 },
	{ &L4, HANDLER_RETRY, 4, 0, MODE_ACT_HALT, 0, 0, 0 },
	{ &L4, HANDLER_FAIL, 1, 0, MODE_ACT_HALT, 0, 0, 0 },
	/* retry_for: modes 2 and 4 go on past `retries` until it has passed, backoff capped */
	{ &L4R, HANDLER_RETRY, 4, 0, MODE_ACT_RETRY, 0, 1600, 1400 },
	{ &L4R, HANDLER_RETRY, 40, 0, MODE_ACT_RETRY, 0, 10000, 299999 },
	{ &L4R, HANDLER_RETRY, 40, 0, MODE_ACT_HALT, 0, 0, 300000 },
	{ &L4R, HANDLER_RETRY, 2, 0, MODE_ACT_RETRY, 0, 400, 900000 },	/* at least `retries` */
	{ &L4R, HANDLER_FAIL, 1, 0, MODE_ACT_HALT, 0, 0, 0 },		/* fail halts at once */
	{ &L2R, HANDLER_RETRY, 30, 0, MODE_ACT_RETRY, 0, 10000, 200000 },
	{ &L2R, HANDLER_RETRY, 30, 0, MODE_ACT_DROP, 0, 0, 300001 },
	{ &L2R, HANDLER_FAIL, 1, 0, MODE_ACT_DROP, 0, 0, 0 },
	/* the parallel modes do not use it */
	{ &L1R, HANDLER_RETRY, 4, 0, MODE_ACT_DROP, 0, 0, 1000 },
	{ &L3R, HANDLER_RETRY, 4, 0, MODE_ACT_STAGE, 1, 0, 1000 },
};

static void
test_decide_table(void)
{
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		struct mode_decision d;

		modes_decide(table[i].lim, table[i].outcome, table[i].failures, table[i].stage,
		    table[i].failing_ms, &d);
		if (d.action != table[i].want || d.next_stage != table[i].want_stage ||
		    d.backoff_ms != table[i].want_backoff)
			fprintf(stderr, "row %zu: got %s stage %d backoff %lld\n", i,
			    modes_action_name(d.action), d.next_stage, (long long)d.backoff_ms);
		CU_ASSERT_EQUAL(d.action, table[i].want);
		CU_ASSERT_EQUAL(d.next_stage, table[i].want_stage);
		CU_ASSERT_EQUAL(d.backoff_ms, table[i].want_backoff);
	}
}

static void
test_precheck_poison(void)
{
	const struct mode_limits *lims[] = { &L1, &L2, &L3, &L4 };
	const enum mode_action want[] = { MODE_ACT_DROP, MODE_ACT_DROP, MODE_ACT_DLQ, MODE_ACT_HALT };
	struct mode_decision d;

	for (size_t i = 0; i < 4; i++) {
		CU_ASSERT_EQUAL(modes_precheck(lims[i], 1, &d), 0);
		CU_ASSERT_EQUAL(modes_precheck(lims[i], 10, &d), 0);
		CU_ASSERT_EQUAL(modes_precheck(lims[i], 11, &d), 1);
		CU_ASSERT_EQUAL(d.action, want[i]);
	}
	struct mode_limits off = L3;
	off.max_deliveries = 0;
	CU_ASSERT_EQUAL(modes_precheck(&off, 1000000, &d), 0);
}

static void
test_backoff_caps(void)
{
	struct mode_limits l = L4;

	CU_ASSERT_EQUAL(modes_backoff_ms(&l, 0), 0);
	CU_ASSERT_EQUAL(modes_backoff_ms(&l, 4), 1000);
	CU_ASSERT_EQUAL(modes_backoff_ms(&l, 60), 1000);	/* no overflow on many retries */
	CU_ASSERT_EQUAL(modes_backoff_ms(&L1, 2), 0);
	l.backoff_ms = 0;
	CU_ASSERT_EQUAL(modes_backoff_ms(&l, 3), 0);
}

static void
test_limits_from_policy(void)
{
	int64_t delays[] = { 10, 20 };
	struct queue_policy q = { 0 };
	struct mode_limits l;

	q.mode = MODE_DLQ;
	q.worker.retries = 2;
	q.worker.retry_delays_ms = delays;
	q.worker.nretry_delays = 2;
	q.worker.max_deliveries = 7;
	q.worker.backoff_ms = 5;
	q.worker.max_backoff_ms = 50;
	modes_limits(&q, &l);
	CU_ASSERT_EQUAL(l.mode, MODE_DLQ);
	CU_ASSERT_EQUAL(l.retries, 2);
	CU_ASSERT_EQUAL(l.nstages, 2);
	CU_ASSERT_EQUAL(l.max_deliveries, 7);
	CU_ASSERT_STRING_EQUAL(modes_action_name(MODE_ACT_HALT), "halt");
}

int
main(void)
{
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("modes", NULL, NULL);
	CU_add_test(s, "decision table of the four modes", test_decide_table);
	CU_add_test(s, "poison precheck by delivery count", test_precheck_poison);
	CU_add_test(s, "backoff is exponential and capped", test_backoff_caps);
	CU_add_test(s, "limits from a policy", test_limits_from_policy);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	int failed = CU_get_number_of_failures() != 0;
	CU_cleanup_registry();
	return failed;
}
