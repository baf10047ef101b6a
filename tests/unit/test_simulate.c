/*
 * test_simulate — the queue model's arithmetic on tiny hand-computed
 * traces, the startup delay, the trace reader's errors, the CSV writer and
 * the --stdin protocol (through memory streams).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <CUnit/Basic.h>

#include "simulate.h"

static struct queue_policy
queue(int min, int max, int64_t max_age_ms, int64_t startup_ms)
{
	static char name[] = "q";
	struct queue_policy q;

	memset(&q, 0, sizeof(q));
	q.name = name;
	q.partitions = 1;
	q.scale.min = min;
	q.scale.max = max;
	q.scale.interval_ms = 1000;
	q.scale.backlog_per_worker = 200;
	q.scale.max_age_ms = max_age_ms;
	q.scale.startup_ms = startup_ms;
	q.scale.up_cooldown_ms = 10000;
	q.scale.up_max_step = (struct step_limit){ 100, true };
	q.scale.down_cooldown_ms = 60000;
	q.scale.down_stabilization_ms = 180000;
	q.scale.down_max_step = (struct step_limit){ 1, false };
	return q;
}

/* One worker, 2 msgs/s, 5 messages at second 0: backlog 3, 1, 0, 0. */
static void
test_model_arithmetic(void)
{
	struct queue_policy q = queue(1, 1, 1000, 0);
	double arr[] = { 5, 0, 0, 0 };
	struct sim_trace tr = { arr, 4 };
	struct sim_params p = { 2, 0, 1 };
	struct sim_result r;
	char err[200];
	int64_t want_backlog[] = { 3, 1, 0, 0 };
	double want_age[] = { 1, 2, 0, 0 };
	size_t i;

	CU_ASSERT_EQUAL_FATAL(sim_run(&q, &tr, &p, SIM_SCALENO, &r, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(r.n, 4);
	for (i = 0; i < 4; i++) {
		CU_ASSERT_DOUBLE_EQUAL(r.timeline[i].t, (double)i + 1, 1e-9);
		CU_ASSERT_EQUAL(r.timeline[i].backlog, want_backlog[i]);
		CU_ASSERT_DOUBLE_EQUAL(r.timeline[i].oldest_age_s, want_age[i], 1e-9);
		CU_ASSERT_EQUAL(r.timeline[i].running, 1);
	}
	CU_ASSERT_DOUBLE_EQUAL(r.worker_seconds, 4, 1e-9);
	CU_ASSERT_EQUAL(r.peak_backlog, 3);
	CU_ASSERT_EQUAL(r.seconds_over, 1);		/* age 2 > max_age 1 */
	CU_ASSERT_DOUBLE_EQUAL(r.p99_age_s, 2, 1e-9);	/* nearest rank of {0,0,1,2} */
	CU_ASSERT_DOUBLE_EQUAL(r.max_age_seen_s, 2, 1e-9);
	CU_ASSERT_EQUAL(r.actions, 0);
	sim_result_free(&r);
}

/* 1.5 msgs/s: a half message of capacity carries over while work waits. */
static void
test_model_fractional_rate(void)
{
	struct queue_policy q = queue(1, 1, 30000, 0);
	double arr[] = { 3, 0, 0 };
	struct sim_trace tr = { arr, 3 };
	struct sim_params p = { 1.5, 0, 1 };
	struct sim_result r;
	char err[200];

	CU_ASSERT_EQUAL_FATAL(sim_run(&q, &tr, &p, SIM_SCALENO, &r, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(r.timeline[0].backlog, 2);	/* 1.5 -> 1 served, .5 kept */
	CU_ASSERT_EQUAL(r.timeline[1].backlog, 0);	/* 1.5 + .5 = 2 served */
	CU_ASSERT_EQUAL(r.timeline[2].backlog, 0);
	sim_result_free(&r);
}

/* A requested worker consumes exactly `startup` after the call; scale-in is at once. */
static void
test_model_startup_delay(void)
{
	struct queue_policy q = queue(1, 10, 30000, 5000);
	double arr[400];
	struct sim_trace tr = { arr, 400 };
	struct sim_params p = { 10, 5, 1 };
	struct sim_result r;
	char err[200];
	size_t i, j, len = 0;
	int ups = 0, downs = 0;
	char *buf = NULL;
	FILE *f;

	for (i = 0; i < 400; i++)
		arr[i] = i < 30 ? 60 : 0;
	CU_ASSERT_EQUAL_FATAL(sim_run(&q, &tr, &p, SIM_SCALENO, &r, err, sizeof(err)), 0);
	for (i = 1; i < r.n; i++) {
		const struct sim_point *a = &r.timeline[i];
		if (a->dir == DIR_UP) {
			ups++;
			/* before startup has passed, no new worker consumes */
			for (j = i; j < r.n && r.timeline[j].t < a->t + 5; j++)
				CU_ASSERT_TRUE(r.timeline[j].running <= r.timeline[i - 1].desired);
			if (i + 5 < r.n && r.timeline[i + 5].desired == a->desired)
				CU_ASSERT_EQUAL(r.timeline[i + 5].running, a->desired);
		} else if (a->dir == DIR_DOWN) {
			downs++;
			CU_ASSERT_EQUAL(a->running, a->desired);
		}
	}
	CU_ASSERT_TRUE(ups >= 1);
	CU_ASSERT_TRUE(downs >= 1);
	CU_ASSERT_EQUAL(r.actions, ups + downs);
	/* the CSV carries the engine's reason for each action, quoted */
	f = open_memstream(&buf, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	CU_ASSERT_EQUAL(sim_write_csv(f, &r), 0);
	fclose(f);
	CU_ASSERT_PTR_NOT_NULL(strstr(buf, ",up,\"up 1->"));
	CU_ASSERT_PTR_NOT_NULL(strstr(buf, ",down,\"down "));
	free(buf);
	sim_result_free(&r);
}

/*
 * Surge seconds: arrivals above 1.5 x the median (1/s) at seconds 4 and 5,
 * and max_age (2 s) after the last: seconds 4, 5, 6. One worker of 2/s:
 * ages 1, 2, 3, so two of the three are within max_age. A flat trace has none.
 */
static void
test_surge_share(void)
{
	struct queue_policy q = queue(1, 1, 2000, 0);
	double arr[] = { 1, 1, 1, 1, 8, 8, 1, 1, 1, 1 }, flat[] = { 3, 3, 3, 3 };
	struct sim_trace tr = { arr, 10 }, tf = { flat, 4 };
	struct sim_params p = { 2, 0, 1 };
	struct sim_result r;
	char err[200];

	CU_ASSERT_EQUAL_FATAL(sim_run(&q, &tr, &p, SIM_SCALENO, &r, err, sizeof(err)), 0);
	CU_ASSERT_DOUBLE_EQUAL(r.timeline[6].oldest_age_s, 3, 1e-9);
	CU_ASSERT_EQUAL(r.surge_seconds, 3);
	CU_ASSERT_EQUAL(r.surge_within, 2);
	sim_result_free(&r);
	CU_ASSERT_EQUAL_FATAL(sim_run(&q, &tf, &p, SIM_SCALENO, &r, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(r.surge_seconds, 0);
	CU_ASSERT_EQUAL(r.surge_within, 0);
	sim_result_free(&r);
}

static char *
temp_file(const char *text)
{
	static char path[64];
	int fd;

	snprintf(path, sizeof(path), "/tmp/scaleno-trace-XXXXXX");
	fd = mkstemp(path);
	if (fd == -1)
		return NULL;
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
		close(fd);
		return NULL;
	}
	close(fd);
	return path;
}

static void
test_trace_reader(void)
{
	static const struct { const char *text; const char *err; } bad[] = {
		{ "t,arrivals\n0,1\n1,2\n1,3\n", ":4: t 1 is not after the previous 1" },
		{ "0,1\n1,-2\n", ":2: arrivals must be a number from 0 to" },
		{ "0,1\n1,2e9\n", ":2: arrivals must be a number from 0 to" },
		{ "0 1\n", ":1: expected a comma" },
		{ "0,1\n1.5,2\n", ":2: t must be whole seconds" },
		{ "0,1\n1,2x\n", ":2: arrivals must be one number" },
		{ "t,arrivals\n0,1\nfoo,bar\n", ":3: expected \"t,arrivals\"" },
		{ "# only a comment\n", "no data lines" },
	};
	struct sim_trace tr;
	char err[256], *path;
	size_t i;

	path = temp_file("# comment\nt,arrivals\n\n0,5\n3, 7.5\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(path);
	CU_ASSERT_EQUAL(sim_trace_load(path, &tr, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(tr.n, 4);
	if (tr.n == 4) {
		CU_ASSERT_DOUBLE_EQUAL(tr.arrivals[0], 5, 1e-9);
		CU_ASSERT_DOUBLE_EQUAL(tr.arrivals[1], 0, 1e-9);	/* gaps have no arrivals */
		CU_ASSERT_DOUBLE_EQUAL(tr.arrivals[3], 7.5, 1e-9);
	}
	sim_trace_free(&tr);
	unlink(path);

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		path = temp_file(bad[i].text);
		CU_ASSERT_PTR_NOT_NULL_FATAL(path);
		CU_ASSERT_EQUAL(sim_trace_load(path, &tr, err, sizeof(err)), -1);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, bad[i].err));
		CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
		if (strstr(err, bad[i].err) == NULL)
			fprintf(stderr, "\n  error \"%s\" lacks \"%s\"\n", err, bad[i].err);
		CU_ASSERT_PTR_NULL(tr.arrivals);
		unlink(path);
	}
	CU_ASSERT_EQUAL(sim_trace_load("/nonexistent/trace.csv", &tr, err, sizeof(err)), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "/nonexistent/trace.csv"));
}

/* The workers the peak needs: ceil(peak / service rate), the peak and its second. */
static void
test_workers_needed(void)
{
	double arr[] = { 10, 95, 10, 95 }, none[] = { 0, 0 };
	struct sim_trace tr = { arr, 4 }, empty = { none, 2 };
	double peak = -1;
	size_t at = 9;

	CU_ASSERT_EQUAL(sim_trace_workers_needed(&tr, 10, &peak, &at), 10);
	CU_ASSERT_DOUBLE_EQUAL(peak, 95, 1e-9);
	CU_ASSERT_EQUAL(at, 1);
	CU_ASSERT_EQUAL(sim_trace_workers_needed(&tr, 9.5, NULL, NULL), 10);
	CU_ASSERT_EQUAL(sim_trace_workers_needed(&tr, 0.1, NULL, NULL), 950);
	CU_ASSERT_EQUAL(sim_trace_workers_needed(&empty, 10, &peak, NULL), 0);
	CU_ASSERT_DOUBLE_EQUAL(peak, 0, 1e-9);
}

static void
test_csv_writer(void)
{
	struct queue_policy q = queue(1, 1, 1000, 0);
	double arr[] = { 5, 0 };
	struct sim_trace tr = { arr, 2 };
	struct sim_params p = { 2, 0, 1 };
	struct sim_result r;
	char err[200], *buf = NULL;
	size_t len = 0;
	FILE *f;

	CU_ASSERT_EQUAL_FATAL(sim_run(&q, &tr, &p, SIM_SCALENO, &r, err, sizeof(err)), 0);
	f = open_memstream(&buf, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	CU_ASSERT_EQUAL(sim_write_csv(f, &r), 0);
	fclose(f);
	CU_ASSERT_STRING_EQUAL(buf, "t,arrivals,backlog,oldest_age_s,running,desired,action,reason\n"
	    "1,5,3,1,1,1,none,\n2,0,1,2,1,1,none,\n");
	free(buf);
	sim_result_free(&r);
}

static void
test_stdin_protocol(void)
{
	struct queue_policy q = queue(1, 60, 30000, 15000);
	const char *input =
	    "{\"t\": 1, \"lag\": 100, \"pending\": 0, \"entries_added\": 1000, \"entries_read\": 900,"
	    " \"oldest_age_ms\": 1000, \"desired\": 4, \"running\": 4}\n"
	    "not json\n"
	    "\n"
	    "{\"t\": 2, \"lag\": \"many\", \"pending\": 0, \"entries_added\": 1, \"entries_read\": 1, \"desired\": 4, \"running\": 4}\n"
	    "{\"t\": 3, \"lag\": 20100, \"pending\": 0, \"entries_added\": 21000, \"entries_read\": 900,"
	    " \"oldest_age_ms\": 2000, \"desired\": 4, \"running\": 4}\n"
	    "{\"t\": 3, \"lag\": 0, \"pending\": 0, \"entries_added\": 1, \"entries_read\": 1, \"desired\": 4, \"running\": 4}\n"
	    "{\"t\": 4, \"ok\": false, \"desired\": 8, \"running\": 4}\n"
	    "{\"t\": 5, \"desired\": 8}\n";
	char *out = NULL, *errs = NULL;
	size_t outlen = 0, errlen = 0;
	FILE *in = fmemopen((void *)(uintptr_t)input, strlen(input), "r");
	FILE *fo = open_memstream(&out, &outlen), *fe = open_memstream(&errs, &errlen);
	long bad;

	CU_ASSERT_PTR_NOT_NULL_FATAL(in);
	bad = sim_stdin(&q, in, fo, fe);
	fclose(in);
	fclose(fo);
	fclose(fe);
	CU_ASSERT_EQUAL(bad, 4);
	CU_ASSERT_PTR_NOT_NULL(strstr(errs, "stdin line 2: not valid JSON"));
	CU_ASSERT_PTR_NOT_NULL(strstr(errs, "stdin line 4: field \"lag\" must be a number"));
	CU_ASSERT_PTR_NOT_NULL(strstr(errs, "stdin line 6: t 3 is not after the previous 3"));
	CU_ASSERT_PTR_NOT_NULL(strstr(errs, "stdin line 8: missing field \"running\""));
	/* three decisions: hold at t=1, up at t=3 (20000 arrived in 2 s), hold on the failed reading */
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "{\"t\":1,\"count\":4,\"direction\":\"none\",\"reason\":\"hold 4"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "{\"t\":3,\"count\":8,\"direction\":\"up\",\"reason\":\"up 4->8"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "{\"t\":4,\"count\":8,\"direction\":\"none\",\"reason\":\"hold 8: no valid sample"));
	free(out);
	free(errs);
}

int
main(void)
{
	CU_pSuite s;
	unsigned fails;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("simulate", NULL, NULL);
	CU_add_test(s, "model arithmetic, hand-computed", test_model_arithmetic);
	CU_add_test(s, "model carries fractional capacity", test_model_fractional_rate);
	CU_add_test(s, "startup delay and immediate scale-in", test_model_startup_delay);
	CU_add_test(s, "share of surge seconds within max_age", test_surge_share);
	CU_add_test(s, "trace reader and its errors", test_trace_reader);
	CU_add_test(s, "CSV timeline", test_csv_writer);
	CU_add_test(s, "workers the peak needs", test_workers_needed);
	CU_add_test(s, "--stdin protocol", test_stdin_protocol);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	fails = CU_get_number_of_failures();
	CU_cleanup_registry();
	return fails != 0;
}
