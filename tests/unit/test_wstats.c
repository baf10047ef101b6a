/*
 * test_wstats — the shared worker counters: Prometheus text exactly as
 * scrapers expect it (fixed names, label escaping, cumulative histogram),
 * edge values, and counts that add up across forked processes.
 */
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "util.h"
#include "wstats.h"

static char *
render(const struct worker_stats *s, const char *queue)
{
	struct strbuf b = { 0 };

	wstats_render(s, queue, &b);
	CU_ASSERT_FALSE(b.oom);
	return strbuf_steal(&b);
}

/* 1 when text has line as a whole line. */
static int
has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return 1;
	return 0;
}

static void
test_render_values(void)
{
	struct worker_stats *s = wstats_create(3);
	char *t;

	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	wstats_count(s, WS_OK);
	wstats_count(s, WS_OK);
	wstats_count(s, WS_DEAD_LETTERED);
	wstats_observe(s, 0.001);
	wstats_observe(s, 0.3);
	wstats_observe(s, 20);
	wstats_set_halted(s, 1, 1);
	wstats_set(&s->dlq_depth, 7);
	wstats_add(&s->consumer_restarts, 2);
	t = render(s, "jobs");
	CU_ASSERT_PTR_NOT_NULL_FATAL(t);
	CU_ASSERT_TRUE(has_line(t, "scaleno_messages_total{queue=\"jobs\",result=\"ok\"} 2"));
	CU_ASSERT_TRUE(has_line(t, "scaleno_messages_total{queue=\"jobs\",result=\"retried\"} 0"));
	CU_ASSERT_TRUE(has_line(t, "scaleno_messages_total{queue=\"jobs\",result=\"dropped\"} 0"));
	CU_ASSERT_TRUE(has_line(t, "scaleno_messages_total{queue=\"jobs\",result=\"dead_lettered\"} 1"));
	CU_ASSERT_TRUE(has_line(t, "# TYPE scaleno_handler_duration_seconds histogram"));
	CU_ASSERT_TRUE(has_line(t, "scaleno_handler_duration_seconds_bucket{queue=\"jobs\",le=\"0.005\"} 1"));
	CU_ASSERT_TRUE(has_line(t, "scaleno_handler_duration_seconds_bucket{queue=\"jobs\",le=\"0.25\"} 1"));
	CU_ASSERT_TRUE(has_line(t, "scaleno_handler_duration_seconds_bucket{queue=\"jobs\",le=\"0.5\"} 2"));
	CU_ASSERT_TRUE(has_line(t, "scaleno_handler_duration_seconds_bucket{queue=\"jobs\",le=\"10\"} 2"));
	CU_ASSERT_TRUE(has_line(t, "scaleno_handler_duration_seconds_bucket{queue=\"jobs\",le=\"+Inf\"} 3"));
	CU_ASSERT_TRUE(has_line(t, "scaleno_handler_duration_seconds_count{queue=\"jobs\"} 3"));
	CU_ASSERT_TRUE(has_line(t, "scaleno_handler_duration_seconds_sum{queue=\"jobs\"} 20.301"));
	CU_ASSERT_TRUE(has_line(t, "scaleno_partition_halted{queue=\"jobs\",partition=\"0\"} 0"));
	CU_ASSERT_TRUE(has_line(t, "scaleno_partition_halted{queue=\"jobs\",partition=\"1\"} 1"));
	CU_ASSERT_TRUE(has_line(t, "scaleno_partition_halted{queue=\"jobs\",partition=\"2\"} 0"));
	CU_ASSERT_PTR_NULL(strstr(t, "partition=\"3\""));
	CU_ASSERT_TRUE(has_line(t, "scaleno_dlq_depth{queue=\"jobs\"} 7"));
	CU_ASSERT_TRUE(has_line(t, "scaleno_consumer_restarts_total{queue=\"jobs\"} 2"));
	CU_ASSERT_TRUE(has_line(t, "# TYPE scaleno_consumer_restarts_total counter"));
	free(t);
	wstats_destroy(s);
}

/* Every line is a comment or "name{labels} value"; HELP and TYPE come before a family's samples. */
static void
test_render_format(void)
{
	struct worker_stats *s = wstats_create(2);
	regex_t sample, comment;
	char *t, *save = NULL, family[128] = "";
	int lines = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL_FATAL(regcomp(&sample, "^(scaleno_[a-z_]+)\\{queue=\"[^\"]*\"(,[a-z]+=\"[^\"]*\")*\\} "
	    "[0-9.e+-]+$", REG_EXTENDED), 0);
	CU_ASSERT_EQUAL_FATAL(regcomp(&comment, "^# (HELP|TYPE) (scaleno_[a-z_]+) ", REG_EXTENDED), 0);
	t = render(s, "jobs");
	CU_ASSERT_PTR_NOT_NULL_FATAL(t);
	CU_ASSERT(strlen(t) > 0 && t[strlen(t) - 1] == '\n');
	for (char *l = strtok_r(t, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
		regmatch_t m[3];

		lines++;
		if (regexec(&comment, l, 3, m, 0) == 0) {
			snprintf(family, sizeof(family), "%.*s", (int)(m[2].rm_eo - m[2].rm_so), l + m[2].rm_so);
			continue;
		}
		CU_ASSERT_EQUAL(regexec(&sample, l, 2, m, 0), 0);
		/* A sample belongs to the family announced last (histograms add suffixes). */
		CU_ASSERT(family[0] != '\0' && strncmp(l, family, strlen(family)) == 0);
	}
	CU_ASSERT(lines > 20);
	/* Unknown DLQ depth is not reported as 0. */
	CU_ASSERT_PTR_NULL(strstr(t, "scaleno_dlq_depth"));
	regfree(&sample);
	regfree(&comment);
	free(t);
	wstats_destroy(s);
}

static void
test_label_escaping(void)
{
	struct worker_stats *s = wstats_create(0);
	char *t;

	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	t = render(s, "a\"b\\c\nd");
	CU_ASSERT_PTR_NOT_NULL_FATAL(t);
	CU_ASSERT_TRUE(has_line(t, "scaleno_consumer_restarts_total{queue=\"a\\\"b\\\\c\\nd\"} 0"));
	CU_ASSERT_PTR_NULL(strstr(t, "partition="));
	free(t);
	wstats_destroy(s);
}

static void
test_edge_values(void)
{
	struct worker_stats *s = wstats_create(WSTATS_MAX_PARTITIONS + 10);

	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(s->npartitions, WSTATS_MAX_PARTITIONS);
	wstats_observe(s, -1);
	wstats_observe(s, NAN);
	CU_ASSERT_EQUAL(s->duration_buckets[0], 2);
	CU_ASSERT_EQUAL(s->duration_sum_us, 0);
	wstats_set_halted(s, -1, 1);
	wstats_set_halted(s, WSTATS_MAX_PARTITIONS, 1);
	for (int i = 0; i < WSTATS_MAX_PARTITIONS; i++)
		CU_ASSERT_EQUAL(s->halted[i], 0);
	wstats_count(s, WS_NRESULTS);	/* out of range: ignored */
	for (int i = 0; i < WS_NRESULTS; i++)
		CU_ASSERT_EQUAL(s->messages[i], 0);
	wstats_count(NULL, WS_OK);
	wstats_observe(NULL, 1);
	wstats_destroy(s);
}

/* Children created after wstats_create add to the same counters. */
static void
test_shared_across_fork(void)
{
	struct worker_stats *s = wstats_create(1);
	enum { N = 20000, KIDS = 3 };
	pid_t pids[KIDS];
	int st;

	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	for (int k = 0; k < KIDS; k++) {
		pids[k] = fork();
		CU_ASSERT_FATAL(pids[k] != -1);
		if (pids[k] == 0) {
			for (int i = 0; i < N; i++) {
				wstats_count(s, WS_OK);
				wstats_observe(s, 0.002);
			}
			_exit(0);
		}
	}
	for (int i = 0; i < N; i++)
		wstats_count(s, WS_OK);
	for (int k = 0; k < KIDS; k++) {
		CU_ASSERT_EQUAL(waitpid(pids[k], &st, 0), pids[k]);
		CU_ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	CU_ASSERT_EQUAL(s->messages[WS_OK], (uint64_t)N * (KIDS + 1));
	CU_ASSERT_EQUAL(s->duration_count, (uint64_t)N * KIDS);
	CU_ASSERT_EQUAL(s->duration_buckets[0], (uint64_t)N * KIDS);
	wstats_destroy(s);
}

int
main(void)
{
	CU_pSuite s;
	int fails;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("wstats", NULL, NULL);
	CU_add_test(s, "render values", test_render_values);
	CU_add_test(s, "render format", test_render_format);
	CU_add_test(s, "label escaping", test_label_escaping);
	CU_add_test(s, "edge values", test_edge_values);
	CU_add_test(s, "shared across fork", test_shared_across_fork);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	fails = (int)CU_get_number_of_failures();
	CU_cleanup_registry();
	return fails != 0;
}
