/*
 * test_alert — alert delivery: the JSON an alert.command receives, the
 * rate limit per (kind, subject), a webhook that cannot be reached or never
 * answers (bounded by the POST timeout), and the kind names.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <cjson/cJSON.h>

#include "alert.h"
#include "util.h"

static char tmpdir[64];

/* Contents of path once it is non-empty (polls up to 5 s); caller frees. */
static char *
wait_file(const char *path)
{
	for (int i = 0; i < 500; i++) {
		FILE *f = fopen(path, "r");

		if (f != NULL) {
			char *buf = calloc(1, 4096);
			size_t n = buf != NULL ? fread(buf, 1, 4095, f) : 0;

			fclose(f);
			if (n > 0 && buf[n - 1] == '\n')
				return buf;
			free(buf);
		}
		usleep(10000);
	}
	return NULL;
}

static void
test_no_target(void)
{
	struct alert_conf ac = { .webhook = (char *)(uintptr_t)"" };

	CU_ASSERT_EQUAL(alert_fire(&ac, "jobs", ALERT_DEAD_LETTERED, "1-1", "x"), 0);
	CU_ASSERT_EQUAL(alert_fire(NULL, "jobs", ALERT_DEAD_LETTERED, "1-1", "x"), 0);
}

static void
test_command_gets_json(void)
{
	char script[640], path[128];
	char *argv[] = { (char *)(uintptr_t)"/bin/sh", (char *)(uintptr_t)"-c", script, NULL };
	struct alert_conf ac = { .command = argv, .ncommand = 3, .webhook = (char *)(uintptr_t)"" };
	double t0;
	char *text;
	cJSON *j;

	snprintf(path, sizeof(path), "%s/alert.json", tmpdir);
	snprintf(script, sizeof(script), "cat > '%s.tmp'; echo >> '%s.tmp'; mv '%s.tmp' '%s'",
	    path, path, path, path);
	t0 = util_now_s();
	CU_ASSERT_EQUAL(alert_fire(&ac, "jobs", ALERT_PARTITION_HALTED, "partition 3",
	    "halted: \"quoted\"\nand a newline"), 1);
	/* Detached: the caller does not wait for the command. */
	CU_ASSERT(util_now_s() - t0 < 0.5);
	text = wait_file(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	j = cJSON_Parse(text);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "kind")->valuestring, "halted");
	CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "queue")->valuestring, "jobs");
	CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "subject")->valuestring, "partition 3");
	CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "text")->valuestring, "halted: \"quoted\"\nand a newline");
	CU_ASSERT_EQUAL(strlen(cJSON_GetObjectItem(j, "time")->valuestring), 20);
	CU_ASSERT(strlen(cJSON_GetObjectItem(j, "host")->valuestring) > 0);
	cJSON_Delete(j);
	free(text);
}

/* A descriptor the caller opened without O_CLOEXEC does not reach the command. */
static void
test_command_no_fd_leak(void)
{
	char script[640], path[128];
	char *argv[] = { (char *)(uintptr_t)"/bin/sh", (char *)(uintptr_t)"-c", script, NULL };
	struct alert_conf ac = { .command = argv, .ncommand = 3, .webhook = (char *)(uintptr_t)"" };
	int fd = open("/dev/null", O_RDONLY);
	char *text;

	CU_ASSERT_FATAL(fd > 2);
	snprintf(path, sizeof(path), "%s/fds", tmpdir);
	snprintf(script, sizeof(script), "if [ -e /proc/self/fd/%d ]; then r=leaked; else r=clean; fi; "
	    "echo $r > '%s.tmp'; mv '%s.tmp' '%s'", fd, path, path, path);
	CU_ASSERT_EQUAL(alert_fire(&ac, "fd", ALERT_CRASH_LOOP, "x", "x"), 1);
	text = wait_file(path);
	CU_ASSERT_PTR_NOT_NULL(text);
	CU_ASSERT_STRING_EQUAL(text != NULL ? text : "", "clean\n");
	free(text);
	close(fd);
}

static void
test_rate_limit(void)
{
	char *argv[] = { (char *)(uintptr_t)"/bin/true", NULL };
	struct alert_conf ac = { .command = argv, .ncommand = 1, .webhook = (char *)(uintptr_t)"",
		.min_interval_ms = 300 };
	double t0 = util_now_s();
	int rc = 0;

	CU_ASSERT_EQUAL(alert_fire(&ac, "rl", ALERT_DEAD_LETTERED, "9-1", "a"), 1);
	CU_ASSERT_EQUAL(alert_fire(&ac, "rl", ALERT_DEAD_LETTERED, "9-1", "b"), 0);
	/* Another subject, kind or queue is another alert. */
	CU_ASSERT_EQUAL(alert_fire(&ac, "rl", ALERT_DEAD_LETTERED, "9-2", "c"), 1);
	CU_ASSERT_EQUAL(alert_fire(&ac, "rl", ALERT_CRASH_LOOP, "9-1", "d"), 1);
	CU_ASSERT_EQUAL(alert_fire(&ac, "rl2", ALERT_DEAD_LETTERED, "9-1", "e"), 1);
	/* The same one again once min_interval has passed. */
	for (int i = 0; i < 200 && rc == 0; i++) {
		rc = alert_fire(&ac, "rl", ALERT_DEAD_LETTERED, "9-1", "f");
		if (rc == 0)
			usleep(10000);
	}
	CU_ASSERT_EQUAL(rc, 1);
	CU_ASSERT(util_now_s() - t0 >= 0.29);
}

/* Many distinct subjects overflow the table without breaking the limit of the newest. */
static void
test_many_subjects(void)
{
	char *argv[] = { (char *)(uintptr_t)"/bin/true", NULL };
	struct alert_conf ac = { .command = argv, .ncommand = 1, .webhook = (char *)(uintptr_t)"",
		.min_interval_ms = 60000 };
	char subj[32];

	for (int i = 0; i < 200; i++) {
		snprintf(subj, sizeof(subj), "m-%d", i);
		CU_ASSERT_EQUAL(alert_fire(&ac, "many", ALERT_DEAD_LETTERED, subj, "x"), 1);
	}
	CU_ASSERT_EQUAL(alert_fire(&ac, "many", ALERT_DEAD_LETTERED, "m-199", "x"), 0);
}

static void
test_webhook_failures_are_bounded(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	char url[64];
	struct alert_conf ac = { .webhook = url };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	double t0;

	/* Connection refused: a port we bound and closed. */
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CU_ASSERT_FATAL(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CU_ASSERT_FATAL(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook", ntohs(sa.sin_port));
	close(fd);
	t0 = util_now_s();
	CU_ASSERT_EQUAL(alert_fire(&ac, "wh", ALERT_REDIS_UNREACHABLE, "a", "x"), -1);
	CU_ASSERT(util_now_s() - t0 < 1.5);

	/* A server that accepts the connection (backlog) and never answers. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_port = 0;
	CU_ASSERT_FATAL(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(fd, 4) == 0);
	CU_ASSERT_FATAL(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook", ntohs(sa.sin_port));
	t0 = util_now_s();
	CU_ASSERT_EQUAL(alert_fire(&ac, "wh", ALERT_REDIS_UNREACHABLE, "b", "x"), -1);
	CU_ASSERT(util_now_s() - t0 < 3.0);
	CU_ASSERT(util_now_s() - t0 >= 1.5);
	/* Right after a failure the webhook is paused: no second wait for the timeout. */
	t0 = util_now_s();
	CU_ASSERT_EQUAL(alert_fire(&ac, "wh", ALERT_REDIS_UNREACHABLE, "c", "x"), -1);
	CU_ASSERT(util_now_s() - t0 < 0.5);
	close(fd);
}

static void
test_kind_names(void)
{
	CU_ASSERT_STRING_EQUAL(alert_kind_name(ALERT_DEAD_LETTERED), "dead_lettered");
	CU_ASSERT_STRING_EQUAL(alert_kind_name(ALERT_PARTITION_HALTED), "halted");
	CU_ASSERT_STRING_EQUAL(alert_kind_name(ALERT_RESUMED), "resumed");
	CU_ASSERT_STRING_EQUAL(alert_kind_name(ALERT_CRASH_LOOP), "crash_loop");
	CU_ASSERT_STRING_EQUAL(alert_kind_name(ALERT_AT_MAX_OVER_AGE), "at_max_over_age");
	CU_ASSERT_STRING_EQUAL(alert_kind_name(ALERT_NOMAD_UNREACHABLE), "nomad_unreachable");
	CU_ASSERT_STRING_EQUAL(alert_kind_name(ALERT_REDIS_UNREACHABLE), "redis_unreachable");
	CU_ASSERT_STRING_EQUAL(alert_kind_name((enum alert_kind)99), "unknown");
}

int
main(void)
{
	CU_pSuite s;
	int fails;
	char cmd[128];

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/scaleno-test-alert.XXXXXX");
	if (mkdtemp(tmpdir) == NULL || CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("alert", NULL, NULL);
	CU_add_test(s, "no target", test_no_target);
	CU_add_test(s, "command gets the JSON", test_command_gets_json);
	CU_add_test(s, "command gets no descriptors", test_command_no_fd_leak);
	CU_add_test(s, "rate limit per kind and subject", test_rate_limit);
	CU_add_test(s, "many subjects", test_many_subjects);
	CU_add_test(s, "webhook failures are bounded", test_webhook_failures_are_bounded);
	CU_add_test(s, "kind names", test_kind_names);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	fails = (int)CU_get_number_of_failures();
	CU_cleanup_registry();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "test_alert: could not remove %s\n", tmpdir);
	return fails != 0;
}
