/*
 * test_redis_msg — the pure parts of the Redis layer: the script registry
 * built from contrib/lua/, the keys of a queue (redis_keys), the failure
 * fields of a moved message, and stream id parsing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "redis_keys.h"
#include "redis_msg.h"

/* The registry holds every script of contrib/lua/ by name, and nothing else. */
static void
test_script_registry(void)
{
	static const char *const names[] = { "move", "ack", "lease", "read_due", "reap", "halt",
		"resume", "replay", "members", "publish", "sample", "agent_lease" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const char *src = redis_script_source(names[i]);

		CU_ASSERT_PTR_NOT_NULL_FATAL(src);
		CU_ASSERT(strlen(src) > 20 && src[strlen(src) - 1] == '\n');
	}
	CU_ASSERT_PTR_NULL(redis_script_source("nope"));
	CU_ASSERT_PTR_NULL(redis_script_source("embed"));
}

/* Every key of a queue, partitioned or not. */
static void
test_keys(void)
{
	char buf[64], tiny[8];
	size_t len;
	char *k;

	static const struct {
		int partitions;
		enum redis_key_kind kind;
		int n;
		const char *want;
	} cases[] = {
		{ 1, RK_PART, 0, "q" }, { 4, RK_PART, 3, "q:3" }, { 4, RK_HALT, 2, "q:2:halt" },
		{ 1, RK_HALT, 0, "q:halt" }, { 4, RK_LEASE, 1, "q:1:lease" },
		{ 1, RK_EPOCH, 0, "q:lease:epoch" }, { 4, RK_RETRY, 2, "q:retry:2" },
		{ 4, RK_DLQ, 0, "q:dlq" }, { 4, RK_MEMBERS, 0, "q:members" }, { 4, RK_RR, 0, "q:rr" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CU_ASSERT_EQUAL(redis_key_buf(buf, sizeof(buf), "q", cases[i].partitions,
		    cases[i].kind, cases[i].n), 0);
		CU_ASSERT_STRING_EQUAL(buf, cases[i].want);
	}
	CU_ASSERT_EQUAL(redis_key_buf(tiny, sizeof(tiny), "queue", 4, RK_DLQ, 0), -1);
	k = redis_key("orders", 3, RK_PART, 2);
	CU_ASSERT_PTR_NOT_NULL_FATAL(k);
	CU_ASSERT_STRING_EQUAL(k, "orders:2");
	free(k);
	k = redis_key_map("s", "a\0b", 3, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(k);
	CU_ASSERT_EQUAL(len, 9);
	CU_ASSERT(memcmp(k, "s:key:a\0b", 9) == 0);
	free(k);
}

static const char *
field(const struct redis_fields *f, const char *name)
{
	for (size_t i = 0; i < redis_fields_count(f); i++)
		if (strcmp(f->a.v[2 * i], name) == 0)
			return f->a.v[2 * i + 1];
	return NULL;
}

static void
test_failure_fields(void)
{
	char n0[] = "a", n1[] = "x-attempts", n2[] = "x-origin-id", n3[] = "x-error-history";
	char n4[] = "bin", v0[] = "1", v1[] = "3", v2[] = "100-0", v3[] = "10 main x3: boom";
	char v4[] = "z\0z";
	char *names[] = { n0, n1, n2, n3, n4 }, *values[] = { v0, v1, v2, v3, v4 };
	size_t nl[] = { 1, 10, 11, 15, 3 }, vl[] = { 1, 1, 5, 16, 3 };
	struct message e = { .id = "200-0", .delivery = 4, .nfields = 5, .names = names,
		.name_lens = nl, .values = values, .value_lens = vl };
	struct redis_fields f = { 0 };

	/* Stage entry: 3 attempts before it came here, delivered 4 times (3 redeliveries). */
	CU_ASSERT_EQUAL(redis_msg_attempts_before(&e, true), 6);
	CU_ASSERT_EQUAL(redis_msg_attempts_before(&e, false), 3);	/* main: its own x-attempts is data */
	CU_ASSERT_EQUAL(redis_failure_fields(&e, "s", 8, "bad", 999, 1, 2, &f), 0);
	CU_ASSERT_STRING_EQUAL(field(&f, "a"), "1");
	CU_ASSERT_STRING_EQUAL(field(&f, "x-attempts"), "8");	/* the total, as the handler counted */
	CU_ASSERT_STRING_EQUAL(field(&f, "x-origin-id"), "100-0");	/* kept from the first move */
	CU_ASSERT_STRING_EQUAL(field(&f, "x-origin-stream"), "s");
	CU_ASSERT_STRING_EQUAL(field(&f, "x-first-failed-ms"), "999");
	CU_ASSERT_STRING_EQUAL(field(&f, "x-error"), "bad");
	CU_ASSERT_STRING_EQUAL(field(&f, "x-error-history"), "10 main x3: boom\n999 retry:1 x8: bad");
	CU_ASSERT_STRING_EQUAL(field(&f, "x-stage"), "2");
	/* binary values pass through with their length */
	for (size_t i = 0; i < redis_fields_count(&f); i++)
		if (strcmp(f.a.v[2 * i], "bin") == 0)
			CU_ASSERT_EQUAL(f.a.len[2 * i + 1], 3);
	size_t count = 0;
	for (size_t i = 0; i < redis_fields_count(&f); i++)
		count += strcmp(f.a.v[2 * i], "x-attempts") == 0;
	CU_ASSERT_EQUAL(count, 1);	/* old x- fields are replaced, not repeated */
	redis_fields_free(&f);
	CU_ASSERT(redis_is_failure_field("x-error", 7));
	CU_ASSERT(!redis_is_failure_field("x-err", 5));
}

static void
test_id_ms(void)
{
	CU_ASSERT_EQUAL(redis_id_ms("1700000000000-5"), 1700000000000LL);
	CU_ASSERT_EQUAL(redis_id_ms("12"), 12);
	CU_ASSERT_EQUAL(redis_id_ms("x-1"), -1);
	CU_ASSERT_EQUAL(redis_id_ms("1x"), -1);
	CU_ASSERT_EQUAL(redis_id_ms(NULL), -1);
}

int
main(void)
{
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("redis_msg", NULL, NULL);
	CU_add_test(s, "the script registry", test_script_registry);
	CU_add_test(s, "the keys of a queue", test_keys);
	CU_add_test(s, "failure fields of a moved message", test_failure_fields);
	CU_add_test(s, "stream id milliseconds", test_id_ms);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	int failed = CU_get_number_of_failures() != 0;
	CU_cleanup_registry();
	return failed;
}
