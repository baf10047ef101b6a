/*
 * test_rstream — the pure parts of rstream: the embedded Lua scripts equal
 * the files shipped in contrib/lua/, the failure fields of a moved message,
 * and stream id parsing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "rstream.h"

static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0 ||
	    (buf = malloc((size_t)n + 1)) == NULL) {
		fclose(f);
		return NULL;
	}
	if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void
test_scripts_match_files(void)
{
	static const char *const names[] = { "move", "ack", "lease", "read_due", "reap", "halt",
		"resume", "replay", "members" };
	const char *top = getenv("SCALENO_TOP");
	char path[1024];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const char *src = rstream_script_source(names[i]);
		char *file;

		snprintf(path, sizeof(path), "%s/contrib/lua/%s.lua", top ? top : ".", names[i]);
		file = slurp(path);
		CU_ASSERT_PTR_NOT_NULL_FATAL(src);
		CU_ASSERT_PTR_NOT_NULL(file);
		if (file != NULL && strcmp(file, src) != 0)
			fprintf(stderr, "%s differs from the embedded script\n", path);
		CU_ASSERT(file != NULL && strcmp(file, src) == 0);
		free(file);
	}
	CU_ASSERT_PTR_NULL(rstream_script_source("nope"));
}

static const char *
field(const struct rs_fields *f, const char *name)
{
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->v[2 * i], name) == 0)
			return f->v[2 * i + 1];
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
	struct rs_entry e = { 0, "200-0", false, 4, 5, names, nl, values, vl };
	struct rs_fields f = { 0 };

	CU_ASSERT_EQUAL(rstream_failure_fields(&e, "s", 2, "bad", 999, 1, 2, &f), 0);
	CU_ASSERT_STRING_EQUAL(field(&f, "a"), "1");
	CU_ASSERT_STRING_EQUAL(field(&f, "x-attempts"), "5");
	CU_ASSERT_STRING_EQUAL(field(&f, "x-origin-id"), "100-0");	/* kept from the first move */
	CU_ASSERT_STRING_EQUAL(field(&f, "x-origin-stream"), "s");
	CU_ASSERT_STRING_EQUAL(field(&f, "x-first-failed-ms"), "999");
	CU_ASSERT_STRING_EQUAL(field(&f, "x-error"), "bad");
	CU_ASSERT_STRING_EQUAL(field(&f, "x-error-history"), "10 main x3: boom\n999 retry:1 x2: bad");
	CU_ASSERT_STRING_EQUAL(field(&f, "x-stage"), "2");
	/* binary values pass through with their length */
	for (size_t i = 0; i < f.n; i++)
		if (strcmp(f.v[2 * i], "bin") == 0)
			CU_ASSERT_EQUAL(f.len[2 * i + 1], 3);
	size_t count = 0;
	for (size_t i = 0; i < f.n; i++)
		count += strcmp(f.v[2 * i], "x-attempts") == 0;
	CU_ASSERT_EQUAL(count, 1);	/* old x- fields are replaced, not repeated */
	rstream_fields_free(&f);
	CU_ASSERT(rstream_is_failure_field("x-error", 7));
	CU_ASSERT(!rstream_is_failure_field("x-err", 5));
}

static void
test_id_ms(void)
{
	CU_ASSERT_EQUAL(rstream_id_ms("1700000000000-5"), 1700000000000LL);
	CU_ASSERT_EQUAL(rstream_id_ms("12"), 12);
	CU_ASSERT_EQUAL(rstream_id_ms("x-1"), -1);
	CU_ASSERT_EQUAL(rstream_id_ms("1x"), -1);
	CU_ASSERT_EQUAL(rstream_id_ms(NULL), -1);
}

int
main(void)
{
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("rstream", NULL, NULL);
	CU_add_test(s, "embedded scripts equal contrib/lua", test_scripts_match_files);
	CU_add_test(s, "failure fields of a moved message", test_failure_fields);
	CU_add_test(s, "stream id milliseconds", test_id_ms);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	int failed = CU_get_number_of_failures() != 0;
	CU_cleanup_registry();
	return failed;
}
