/*
 * test_expo — the Prometheus text writer, the queue view writer (the
 * /v1/status object and the scale call's Meta) and httpc's escaping.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>
#include <cjson/cJSON.h>

#include "agent_view.h"
#include "expo.h"
#include "httpc.h"
#include "util.h"

static void
test_format_double(void)
{
	static const struct {
		double v;
		const char *text;
	} cases[] = {
		{ 0, "0" }, { 5, "5" }, { -3, "-3" }, { 0.1, "0.1" }, { 20.301, "20.301" },
		{ 1e-9, "1e-09" }, { 9007199254740991.0, "9007199254740991" },
		/* the noise of arithmetic is not printed */
		{ 0.30000000000000004, "0.3" }, { 16.274000000000001, "16.274" },
	};
	char buf[40];

	CU_ASSERT_NOT_EQUAL(0.1 + 0.2, 0.3);
	CU_ASSERT_NOT_EQUAL(nextafter(16.274, 100), 16.274);
	expo_format_double(0.1 + 0.2, buf, sizeof(buf));
	CU_ASSERT_STRING_EQUAL(buf, "0.3");
	expo_format_double(nextafter(16.274, 100), buf, sizeof(buf));
	CU_ASSERT_STRING_EQUAL(buf, "16.274");
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		expo_format_double(cases[i].v, buf, sizeof(buf));
		CU_ASSERT_STRING_EQUAL(buf, cases[i].text);
		CU_ASSERT(fabs(strtod(buf, NULL) - cases[i].v) <= fabs(cases[i].v) * 1e-14);
	}
	expo_format_double(INFINITY, buf, sizeof(buf));
	CU_ASSERT_STRING_EQUAL(buf, "+Inf");
	expo_format_double(-INFINITY, buf, sizeof(buf));
	CU_ASSERT_STRING_EQUAL(buf, "-Inf");
	expo_format_double(NAN, buf, sizeof(buf));
	CU_ASSERT_STRING_EQUAL(buf, "NaN");
}

static void
test_samples(void)
{
	struct strbuf b = { 0 };
	struct expo_label l[2] = { { "queue", "a\"b\\c\nd" }, { "direction", "up" } };

	expo_family(&b, "scaleno_x_total", EXPO_COUNTER, "Things.");
	expo_sample_u64(&b, "scaleno_x_total", l, 2, 18446744073709551615ULL);
	expo_sample(&b, "scaleno_x_total", l, 1, 2.5);
	expo_family(&b, "scaleno_y", EXPO_GAUGE, "A gauge.");
	expo_sample(&b, "scaleno_y", NULL, 0, 1);
	CU_ASSERT_FALSE_FATAL(b.oom);
	CU_ASSERT_STRING_EQUAL(b.s,
	    "# HELP scaleno_x_total Things.\n# TYPE scaleno_x_total counter\n"
	    "scaleno_x_total{queue=\"a\\\"b\\\\c\\nd\",direction=\"up\"} 18446744073709551615\n"
	    "scaleno_x_total{queue=\"a\\\"b\\\\c\\nd\"} 2.5\n"
	    "# HELP scaleno_y A gauge.\n# TYPE scaleno_y gauge\nscaleno_y 1\n");
	strbuf_free(&b);
}

static const cJSON *
item(const cJSON *o, const char *k)
{
	return cJSON_GetObjectItemCaseSensitive(o, k);
}

/* With history (the agent) every section is there; from one reading, what needs history is not. */
static void
test_view(void)
{
	struct queue_policy q = { .name = (char *)(uintptr_t)"jobs" };
	struct signals sig = { .t = 9, .valid = true, .backlog = 7, .undelivered = 5, .pending = 2,
	    .oldest_age_s = 1.23456, .arrival_rate = 3.14159, .completion_rate = 2.71828,
	    .halted = 1 };
	struct decision dec = { .t = 8, .count = 4, .dir = DIR_UP, .need = 4, .rule = "backlog",
	    .reason = "why" };
	struct decide_state ds;
	struct queue_view v = { .name = "jobs", .q = &q, .now = 10, .sample_ok = true, .sig = &sig,
	    .history = true, .nomad_known = true, .nomad_ok = true, .desired = 2, .running = 2,
	    .dec = &dec, .ds = &ds, .counters = true, .actions_up = 3 };
	cJSON *o, *meta;
	char *txt;

	decide_state_init(&ds);
	q.scale.target = SCALE_TARGET_NOMAD;
	o = agent_view_json(&v);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(item(o, "name")), "jobs");
	CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(item(o, "target")), "nomad");
	CU_ASSERT_EQUAL(item(item(o, "sample"), "backlog")->valuedouble, 7);
	CU_ASSERT_DOUBLE_EQUAL(item(item(o, "sample"), "oldest_age_s")->valuedouble, 1.235, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(item(item(o, "sample"), "arrival_rate")->valuedouble, 3.14, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(item(item(o, "sample"), "age_s")->valuedouble, 1, 1e-9);
	CU_ASSERT_EQUAL(item(item(o, "nomad"), "desired")->valuedouble, 2);
	CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(item(item(o, "decision"), "direction")), "up");
	CU_ASSERT_PTR_NOT_NULL(item(o, "cooldown"));
	CU_ASSERT_EQUAL(item(o, "scale_actions_up")->valuedouble, 3);
	cJSON_Delete(o);

	txt = agent_view_meta(&v);
	CU_ASSERT_PTR_NOT_NULL_FATAL(txt);
	meta = cJSON_Parse(txt);
	CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(item(meta, "scaleno_queue")), "jobs");
	CU_ASSERT_EQUAL(item(meta, "backlog")->valuedouble, 7);
	CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(item(meta, "rule")), "backlog");
	CU_ASSERT_EQUAL(cJSON_GetArraySize(meta), 9);
	cJSON_Delete(meta);
	cJSON_free(txt);

	/* One reading, no Nomad: no rates, decision, cooldowns or counters; an empty nomad object. */
	v = (struct queue_view){ .name = "jobs", .q = &q, .sample_ok = true, .sig = &sig };
	o = agent_view_json(&v);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	CU_ASSERT_EQUAL(item(item(o, "sample"), "backlog")->valuedouble, 7);
	CU_ASSERT_PTR_NULL(item(item(o, "sample"), "arrival_rate"));
	CU_ASSERT_PTR_NULL(item(item(o, "sample"), "age_s"));
	CU_ASSERT_EQUAL(cJSON_GetArraySize(item(o, "nomad")), 0);
	CU_ASSERT_PTR_NULL(item(o, "decision"));
	CU_ASSERT_PTR_NULL(item(o, "cooldown"));
	CU_ASSERT_PTR_NULL(item(o, "scale_actions_up"));
	cJSON_Delete(o);
}

static void
test_escape(void)
{
	struct strbuf b = { 0 };

	httpc_escape(&b, "a b/c?d=é~x-y_z.0");
	CU_ASSERT_STRING_EQUAL(b.s, "a%20b%2Fc%3Fd%3D%C3%A9~x-y_z.0");
	strbuf_free(&b);
	CU_ASSERT_EQUAL(httpc_url_check("http://127.0.0.1:4646"), 0);
	CU_ASSERT_EQUAL(httpc_url_check("http://[::1"), -1);
}

int
main(void)
{
	CU_pSuite s;
	int fails;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("expo", NULL, NULL);
	CU_add_test(s, "format double", test_format_double);
	CU_add_test(s, "samples and families", test_samples);
	CU_add_test(s, "queue view and meta", test_view);
	CU_add_test(s, "url escaping", test_escape);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	fails = (int)CU_get_number_of_failures();
	CU_cleanup_registry();
	return fails != 0;
}
