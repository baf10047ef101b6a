/*
 * test_publish — the producer side: the script text is built in, the C API
 * refuses bad arguments before any I/O, `scaleno publish` refuses bad command lines with exit 1, and the C API
 * against a real redis-server (binary-safe fields, reloading the script
 * after SCRIPT FLUSH and after a Redis restart). tests/integration/
 * test_publish.py covers the routing through the command.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <hiredis/hiredis.h>

#include "cli.h"
#include "scaleno/publish.h"
#include "util.h"

/* The script text is the one of contrib/lua/publish.lua, built in. */
static void
test_script_text(void)
{
	const char *src = scaleno_publish_script();

	CU_ASSERT_PTR_NOT_NULL_FATAL(src);
	CU_ASSERT_PTR_NOT_NULL(strstr(src, "redis.call('XADD', stream, '*', unpack(ARGV, 5))"));
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

/* ---- against a real redis-server ---- */

static char tmpdir[] = "/tmp/scaleno-test-publish-XXXXXX";
static int port;
static pid_t redis_pid = -1;
static redisContext *admin;	/* the test's own connection, for checks */

static void
redis_stop(void)
{
	if (admin != NULL)
		redisFree(admin);
	admin = NULL;
	if (redis_pid > 0) {
		kill(redis_pid, SIGKILL);
		waitpid(redis_pid, NULL, 0);
	}
	redis_pid = -1;
}

/* redis-server on port (a fresh one each time: a restart loses the scripts). 0 or -1. */
static int
redis_start(void)
{
	struct timeval tv = { 1, 0 };
	char portstr[16];

	snprintf(portstr, sizeof(portstr), "%d", port);
	if ((redis_pid = fork()) < 0)
		return -1;
	if (redis_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);	/* never outlive a killed test */
		execlp("redis-server", "redis-server", "--port", portstr, "--bind", "127.0.0.1",
		    "--save", "", "--dir", tmpdir, "--logfile", "redis.log", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 250 && admin == NULL; i++) {
		redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
		redisReply *rep = c != NULL && c->err == 0 ? redisCommand(c, "PING") : NULL;

		if (rep != NULL && rep->type == REDIS_REPLY_STATUS) {
			redisSetTimeout(c, tv);
			admin = c;
		} else if (c != NULL) {
			redisFree(c);
		}
		if (rep != NULL)
			freeReplyObject(rep);
		if (admin == NULL)
			usleep(20000);
	}
	return admin != NULL ? 0 : -1;
}

/* A port nobody listens on now: the kernel's pick for a socket bound to port 0. */
static int
pick_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), got = -1;

	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, len) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		got = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return got;
}

static int
live_init(void)
{
	if (mkdtemp(tmpdir) == NULL || (port = pick_port()) < 0)
		return -1;
	return redis_start();
}

static int
live_cleanup(void)
{
	char path[sizeof(tmpdir) + 16];

	redis_stop();
	snprintf(path, sizeof(path), "%s/redis.log", tmpdir);
	unlink(path);
	rmdir(tmpdir);
	return 0;
}

/*
 * Entry id of stream: the XRANGE reply (caller frees) with *fields pointing
 * at its field/value array, or NULL when there is no such entry.
 */
static redisReply *
entry_fields(const char *stream, const char *id, const redisReply **fields)
{
	redisReply *rep = redisCommand(admin, "XRANGE %s %s %s", stream, id, id);
	const redisReply *e;

	if (rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 &&
	    (e = rep->element[0]) != NULL && e->type == REDIS_REPLY_ARRAY && e->elements == 2 &&
	    e->element[1] != NULL && e->element[1]->type == REDIS_REPLY_ARRAY) {
		*fields = e->element[1];
		return rep;
	}
	if (rep != NULL)
		freeReplyObject(rep);
	return NULL;
}

static void
test_live_publish(void)
{
	static const char bin[] = { 'a', '\0', 'b', '\xff' };
	const char *fields[] = { "name", "value with spaces", "blob", bin };
	const size_t lens[] = { 4, 17, 4, sizeof(bin) };
	struct scaleno_queue q = { .stream = "pq", .group = "g", .partitions = 3 };
	char err[512], id[SCALENO_PUBLISH_ID_MAX], addr[64], stream[32];
	struct scaleno_publisher *p;
	const redisReply *f = NULL;
	redisReply *rep;
	int part = -1, again = -1;

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	p = scaleno_publish_open(addr, NULL, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_EQUAL_FATAL(scaleno_publish(p, &q, "k\0ey", 4, fields, lens, 4, &part, id,
	    sizeof(id), err, sizeof(err)), 0);
	CU_ASSERT(part >= 0 && part < 3);
	snprintf(stream, sizeof(stream), "pq:%d", part);
	rep = entry_fields(stream, id, &f);
	CU_ASSERT_FATAL(rep != NULL && f != NULL && f->elements == 4);
	for (size_t i = 0; rep != NULL && f != NULL && i < 4 && i < f->elements; i++)
		CU_ASSERT(f->element[i]->len == lens[i] &&
		    memcmp(f->element[i]->str, fields[i], lens[i]) == 0);
	if (rep != NULL)
		freeReplyObject(rep);
	/* The map entry's name keeps the key's NUL byte. */
	rep = redisCommand(admin, "GET %b", "pq:key:k\0ey", (size_t)11);
	CU_ASSERT(rep != NULL && rep->type == REDIS_REPLY_STRING && atoi(rep->str) == part);
	if (rep != NULL)
		freeReplyObject(rep);

	/* NOSCRIPT after SCRIPT FLUSH: loaded again, same partition for the key. */
	freeReplyObject(redisCommand(admin, "SCRIPT FLUSH"));
	CU_ASSERT_EQUAL(scaleno_publish(p, &q, "k\0ey", 4, fields, lens, 4, &again, id,
	    sizeof(id), err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(again, part);

	/* A restarted Redis: the call on the dead connection fails, a later one reconnects. */
	redis_stop();
	CU_ASSERT_EQUAL_FATAL(redis_start(), 0);
	again = -1;
	for (int i = 0; i < 100 && again < 0; i++) {
		if (scaleno_publish(p, &q, "k\0ey", 4, fields, lens, 4, &again, id, sizeof(id),
		    err, sizeof(err)) < 0) {
			again = -1;
			usleep(50000);
		}
	}
	if (again < 0)
		fprintf(stderr, "no publish after the restart: %s\n", err);
	CU_ASSERT(again >= 0 && again < 3);
	rep = entry_fields(stream, id, &f);
	/* A fresh Redis has no map: the key is placed by its hash again, on the same partition. */
	CU_ASSERT_EQUAL(again, part);
	CU_ASSERT_PTR_NOT_NULL(rep);
	if (rep != NULL)
		freeReplyObject(rep);
	scaleno_publish_close(p);
}

int
main(void)
{
	CU_pSuite s;
	unsigned failures;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("publish", NULL, NULL);
	CU_add_test(s, "the script text is built in", test_script_text);
	CU_add_test(s, "scaleno_publish_open refuses bad arguments", test_open_arguments);
	CU_add_test(s, "scaleno_publish refuses bad arguments before any I/O", test_publish_arguments);
	CU_add_test(s, "scaleno publish: usage errors exit 1", test_cli_arguments);
	s = CU_add_suite("publish against redis-server", live_init, live_cleanup);
	CU_add_test(s, "binary-safe fields, NOSCRIPT and restart reloads", test_live_publish);
	CU_basic_set_mode(CU_BRM_NORMAL);
	CU_basic_run_tests();
	failures = CU_get_number_of_failures();
	CU_cleanup_registry();
	return failures != 0;
}
