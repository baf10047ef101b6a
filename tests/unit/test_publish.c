/*
 * test_publish — the parts of the producer side that need no Redis: the
 * embedded script equals contrib/lua/publish.lua, the C API refuses bad
 * arguments before any I/O (and reports a refused connection), and
 * `scaleno publish` refuses bad command lines with exit 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "cli.h"
#include "scaleno/publish.h"
#include "util.h"

/*
 * util_read_secret reads a whole file with its trailing whitespace trimmed:
 * the script must be exactly that text plus the file's one final newline.
 */
static void
test_script_matches_file(void)
{
	const char *top = getenv("SCALENO_TOP"), *src = scaleno_publish_script();
	char path[1024], err[256];
	char *file;
	size_t n;

	snprintf(path, sizeof(path), "%s/contrib/lua/publish.lua", top ? top : ".");
	file = util_read_secret(path, 1 << 20, err, sizeof(err));
	if (file == NULL)
		fprintf(stderr, "%s\n", err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(file);
	n = strlen(file);
	if (strlen(src) != n + 1 || memcmp(file, src, n) != 0 || src[n] != '\n')
		fprintf(stderr, "%s differs from the script embedded in src/publish.c\n", path);
	CU_ASSERT_EQUAL(strlen(src), n + 1);
	CU_ASSERT(memcmp(file, src, n) == 0 && src[n] == '\n');
	free(file);
}

/* Port 1 on loopback: nothing listens, so a call that gets past validation fails to connect. */
static struct scaleno_publisher *
open_nowhere(void)
{
	struct scaleno_publish_options o = { .connect_timeout_ms = 200 };
	char err[256] = "";
	struct scaleno_publisher *p = scaleno_publish_open("127.0.0.1:1", &o, err, sizeof(err));

	CU_ASSERT_PTR_NOT_NULL(p);
	CU_ASSERT_STRING_EQUAL(err, "");
	return p;
}

static void
test_open_arguments(void)
{
	struct scaleno_publish_options neg = { .database = -1 };
	char err[256] = "";

	CU_ASSERT_PTR_NULL(scaleno_publish_open(NULL, NULL, err, sizeof(err)));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "no Redis address"));
	CU_ASSERT_PTR_NULL(scaleno_publish_open("", NULL, err, sizeof(err)));
	CU_ASSERT_PTR_NULL(scaleno_publish_open("127.0.0.1:6379", &neg, err, sizeof(err)));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "negative"));
	scaleno_publish_close(NULL);
}

static void
test_publish_arguments(void)
{
	static const char *const one[] = { "f", "v" };
	static const char *const odd[] = { "f", "v", "g" };
	static const struct {
		struct scaleno_queue q;
		const char *const *fields;
		size_t n;
		const char *want;	/* in the error message */
	} cases[] = {
		{ { NULL, "g", 1, 0 }, one, 2, "no stream" },
		{ { "", "g", 1, 0 }, one, 2, "no stream" },
		{ { "s", NULL, 1, 0 }, one, 2, "no consumer group" },
		{ { "s", "g", 0, 0 }, one, 2, "partitions must be at least 1" },
		{ { "s", "g", -3, 0 }, one, 2, "partitions must be at least 1" },
		{ { "s", "g", 2, -1 }, one, 2, "negative key TTL" },
		{ { "s", "g", 2, 0 }, one, 0, "at least one field" },
		{ { "s", "g", 2, 0 }, NULL, 2, "at least one field" },
		{ { "s", "g", 2, 0 }, odd, 3, "pairs" },
		{ { "s", "g", 2, 0 }, one, 2 * SCALENO_PUBLISH_MAX_PAIRS + 2, "at most" },
		/* Valid: gets as far as connecting, which fails. */
		{ { "s", "g", 2, 0 }, one, 2, "127.0.0.1:1" },
	};
	struct scaleno_publisher *p = open_nowhere();
	char err[512], id[SCALENO_PUBLISH_ID_MAX];
	int part = -7;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		CU_ASSERT_EQUAL(scaleno_publish(p, &cases[i].q, "k", 1, cases[i].fields, NULL,
		    cases[i].n, &part, id, sizeof(id), err, sizeof(err)), -1);
		if (strstr(err, cases[i].want) == NULL)
			fprintf(stderr, "case %zu: \"%s\" lacks \"%s\"\n", i, err, cases[i].want);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i].want));
	}
	CU_ASSERT_EQUAL(part, -7);
	CU_ASSERT_EQUAL(scaleno_publish(NULL, &cases[0].q, NULL, 0, one, NULL, 2, NULL, NULL, 0,
	    err, sizeof(err)), -1);
	scaleno_publish_close(p);
}

static void
test_cli_arguments(void)
{
	static const struct {
		const char *argv[8];
		int want;
	} cases[] = {
		{ { "publish", "f", "v" }, EXIT_USAGE },			/* no -q */
		{ { "publish", "-q", "pay" }, EXIT_USAGE },		/* no fields */
		{ { "publish", "-q", "pay", "f" }, EXIT_USAGE },		/* odd */
		{ { "publish", "-q", "pay", "f", "v", "g" }, EXIT_USAGE },
		{ { "publish", "-q", "pay", "--ttl", "10", "f", "v" }, EXIT_USAGE }, /* no unit */
		{ { "publish", "-q", "pay", "--ttl", "0s", "f", "v" }, EXIT_USAGE },
		{ { "publish", "-x", "-q", "pay", "f", "v" }, EXIT_USAGE },
		{ { "publish", "-c", "/nonexistent/scaleno.conf", "-q", "pay", "f", "v" },
		    EXIT_USAGE },
		{ { "publish", "-h" }, EXIT_OK },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *argv[8] = { 0 };
		int argc = 0, rc;

		while (argc < 8 && cases[i].argv[argc] != NULL) {
			argv[argc] = strdup(cases[i].argv[argc]);
			argc++;
		}
		if ((rc = cmd_publish(argc, argv)) != cases[i].want)
			fprintf(stderr, "cli case %zu: %d, not %d\n", i, rc, cases[i].want);
		CU_ASSERT_EQUAL(rc, cases[i].want);
		for (int j = 0; j < argc; j++)
			free(argv[j]);
	}
}

int
main(void)
{
	CU_pSuite s;
	unsigned failures;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("publish", NULL, NULL);
	CU_add_test(s, "embedded script equals contrib/lua/publish.lua", test_script_matches_file);
	CU_add_test(s, "scaleno_publish_open refuses bad arguments", test_open_arguments);
	CU_add_test(s, "scaleno_publish refuses bad arguments before any I/O", test_publish_arguments);
	CU_add_test(s, "scaleno publish: usage errors exit 1", test_cli_arguments);
	CU_basic_set_mode(CU_BRM_NORMAL);
	CU_basic_run_tests();
	failures = CU_get_number_of_failures();
	CU_cleanup_registry();
	return failures != 0;
}
