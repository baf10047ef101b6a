/*
 * test_lib — libscaleno.a as a producer uses it: this program is linked
 * against the library with hiredis and libm alone (see the Makefile) and
 * defines log_warn and util_now_s itself, names the library uses inside,
 * so linking at all proves they do not clash. It checks that its own
 * definitions are the ones called, that the library works (argument
 * errors, a failed connection), and that `nm` shows no defined global in
 * the library but scaleno_*.
 */
#define _POSIX_C_SOURCE 200809L	/* popen */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "scaleno/publish.h"

/* The producer's own names, with other signatures than the library's. */
int log_warn(const char *fmt, ...);
double util_now_s(void);

static int warned;

int
log_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	va_end(ap);
	return ++warned;
}

double
util_now_s(void)
{
	return 42.5;
}

static void
test_own_names(void)
{
	CU_ASSERT_EQUAL(log_warn("x"), 1);
	CU_ASSERT_DOUBLE_EQUAL(util_now_s(), 42.5, 1e-9);
}

static void
test_library_works(void)
{
	struct scaleno_publish_options o = { .connect_timeout_ms = 200 };
	struct scaleno_queue q = { .stream = "s", .group = "g", .partitions = 1 };
	const char *fields[] = { "a", "1" };
	char err[256] = "";
	struct scaleno_publisher *p;

	CU_ASSERT_PTR_NULL(scaleno_publish_open("", NULL, err, sizeof(err)));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "no Redis address"));
	/* Port 1 on loopback: nothing listens. */
	p = scaleno_publish_open("127.0.0.1:1", &o, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	err[0] = '\0';
	CU_ASSERT_EQUAL(scaleno_publish(p, &q, NULL, 0, fields, NULL, 2, NULL, NULL, 0, err,
	    sizeof(err)), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "127.0.0.1:1"));
	scaleno_publish_close(p);
	CU_ASSERT_PTR_NOT_NULL(strstr(scaleno_publish_script(), "XADD"));
	CU_ASSERT_EQUAL(warned, 1);	/* the library never called our log_warn */
}

static void
test_exports(void)
{
	const char *build = getenv("BUILD");
	char cmd[1024], line[512];
	int n = 0, other = 0;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "nm -g --defined-only %s/libscaleno.a 2>&1",
	    build != NULL ? build : "build");
	f = popen(cmd, "r");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	while (fgets(line, sizeof(line), f) != NULL) {
		char addr[64], type[8], name[256];

		if (sscanf(line, "%63s %7s %255s", addr, type, name) != 3)
			continue;
		if (strncmp(name, "scaleno_", 8) == 0) {
			n++;
		} else {
			fprintf(stderr, "libscaleno.a exports %s", line);
			other++;
		}
	}
	CU_ASSERT_EQUAL(pclose(f), 0);
	CU_ASSERT_EQUAL(other, 0);
	CU_ASSERT_EQUAL(n, 5);	/* open, publish, wait, close, script */
}

int
main(void)
{
	CU_pSuite s;
	int failed;

	signal(SIGPIPE, SIG_IGN);
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("libscaleno", NULL, NULL);
	CU_add_test(s, "a producer's own log_warn and util_now_s", test_own_names);
	CU_add_test(s, "the library works", test_library_works);
	CU_add_test(s, "only scaleno_* is exported", test_exports);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failed = (int)CU_get_number_of_failures();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}
