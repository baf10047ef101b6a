/*
 * test_handler — both handler protocols against build/handlers/testhandler
 * and small sh -c handlers: verdicts, timeouts that kill the process group,
 * bad replies, dying and missing handlers, huge messages, non-UTF-8 fields,
 * no descriptor or message content leaking into the handler. Ends with a
 * micro-benchmark of the per-message overhead (printed, not asserted).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <cjson/cJSON.h>

#include "handler.h"
#include "util.h"

static char tmpdir[256];
static char testhandler[512];

/* A policy with argv (NULL-terminated, borrowed) and the given protocol/timeout. */
static struct queue_policy
policy(char **argv, enum handler_protocol proto, int64_t timeout_ms)
{
	struct queue_policy q;

	memset(&q, 0, sizeof(q));
	q.name = (char *)(uintptr_t)"jobs";
	q.stream = (char *)(uintptr_t)"jobs-stream";
	q.worker.command = argv;
	q.worker.protocol = proto;
	q.worker.timeout_ms = timeout_ms;
	return q;
}

/* A handler for argv (borrowed; must outlive it). Fails the test when NULL. */
static struct handler *
make_handler(char **argv, enum handler_protocol proto, int64_t timeout_ms)
{
	struct queue_policy q = policy(argv, proto, timeout_ms);
	char err[256];
	struct handler *h = handler_new(&q, err, sizeof(err));

	CU_ASSERT_PTR_NOT_NULL(h);
	return h;
}

/* A one-field message; the strings are borrowed. */
struct msgbuf {
	struct message m;
	char *names[2], *values[2];
	size_t nlens[2], vlens[2];
};

static void
msg_init(struct msgbuf *b, const char *id, const char *name, const char *value, size_t vlen)
{
	memset(b, 0, sizeof(*b));
	b->m.queue = "jobs";
	b->m.stream = "jobs-stream";
	util_strlcpy(b->m.id, id, sizeof(b->m.id));
	b->m.delivery = 1;
	b->names[0] = (char *)(uintptr_t)name;
	b->nlens[0] = strlen(name);
	b->values[0] = (char *)(uintptr_t)value;
	b->vlens[0] = vlen;
	b->m.nfields = 1;
	b->m.names = b->names;
	b->m.name_lens = b->nlens;
	b->m.values = b->values;
	b->m.value_lens = b->vlens;
}

/* Run one message through a fresh handler; returns handler_run's value. */
static int
run_once(char **argv, enum handler_protocol proto, int64_t timeout_ms, struct handler_result *res)
{
	struct handler *h = make_handler(argv, proto, timeout_ms);
	struct msgbuf b;
	int rc;

	if (h == NULL)
		return -2;
	msg_init(&b, "1-1", "key", "value", 5);
	rc = handler_run(h, &b.m, NULL, NULL, res);
	handler_free(h);
	return rc;
}

static char *
tpath(const char *name)
{
	static char buf[4][600];
	static int k;

	k = (k + 1) % 4;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", tmpdir, name);
	return buf[k];
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	char *s;
	long n;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	s = malloc((size_t)n + 1);
	if (s != NULL && fread(s, 1, (size_t)n, f) != (size_t)n) {
		free(s);
		s = NULL;
	}
	if (s != NULL)
		s[n] = '\0';
	if (len != NULL)
		*len = (size_t)n;
	fclose(f);
	return s;
}

static int
count_lines(const char *path)
{
	size_t len = 0;
	char *s = slurp(path, &len);
	int n = 0;

	for (size_t i = 0; s != NULL && i < len; i++)
		n += s[i] == '\n';
	free(s);
	return n;
}

/* The pid (6th column) of line k (from 0) of a testhandler log. */
static long
log_pid(const char *path, int k)
{
	char *s = slurp(path, NULL), *line, *save = NULL;
	long pid = -1;
	int i = 0;

	for (line = s != NULL ? strtok_r(s, "\n", &save) : NULL; line != NULL;
	    line = strtok_r(NULL, "\n", &save), i++) {
		if (i == k) {
			char *p = strrchr(line, ' ');

			pid = p != NULL ? strtol(p + 1, NULL, 10) : -1;
			break;
		}
	}
	free(s);
	return pid;
}

/* 1 when pid is gone or a zombie (polls up to 2 s). */
static int
process_gone(long pid)
{
	char path[64], buf[512];

	for (int i = 0; i < 200; i++) {
		FILE *f;
		char *p;

		snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
		f = fopen(path, "r");
		if (f == NULL)
			return 1;
		p = fgets(buf, sizeof(buf), f);
		fclose(f);
		if (p != NULL && (p = strrchr(buf, ')')) != NULL && p[1] == ' ' && p[2] == 'Z')
			return 1;
		while (waitpid(-1, NULL, WNOHANG) > 0)	/* we are a subreaper: reap orphans */
			;
		usleep(10000);
	}
	return 0;
}

static void
test_exec_verdicts(void)
{
	static const struct {
		const char *status;
		enum handler_outcome outcome;
		const char *text;
	} cases[] = {
		{ "0", HANDLER_OK, "" },
		{ "75", HANDLER_RETRY, "exited with status 75" },
		{ "65", HANDLER_FAIL, "exited with status 65 (permanent failure)" },
		{ "3", HANDLER_RETRY, "exited with status 3" },
		{ "1", HANDLER_RETRY, "exited with status 1" },
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char *argv[] = { testhandler, (char *)(uintptr_t)"-p", (char *)(uintptr_t)"exec",
			(char *)(uintptr_t)"-x", (char *)(uintptr_t)cases[i].status, NULL };
		struct handler_result r;

		CU_ASSERT_EQUAL(run_once(argv, PROTO_EXEC, 5000, &r), 0);
		CU_ASSERT_EQUAL(r.outcome, cases[i].outcome);
		CU_ASSERT_PTR_NOT_NULL(strstr(r.error, cases[i].text));
		CU_ASSERT_FALSE(r.timed_out);
	}
}

static void
test_exec_signal(void)
{
	char *argv[] = { testhandler, (char *)(uintptr_t)"-p", (char *)(uintptr_t)"exec",
		(char *)(uintptr_t)"-S", NULL };
	struct handler_result r;

	CU_ASSERT_EQUAL(run_once(argv, PROTO_EXEC, 5000, &r), 0);
	CU_ASSERT_EQUAL(r.outcome, HANDLER_RETRY);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.error, "signal 11"));
}

static void
test_exec_env(void)
{
	char *argv[] = { (char *)(uintptr_t)"/bin/sh", (char *)(uintptr_t)"-c",
		(char *)(uintptr_t)"test \"$SCALENO_QUEUE/$SCALENO_STREAM/$SCALENO_ID/$SCALENO_DELIVERY/"
		"$SCALENO_ATTEMPT\" = jobs/jobs-stream/1-1/1/1 && read -r line && case \"$line\" in "
		"'{\"queue\":\"jobs\",\"stream\":\"jobs-stream\",\"partition\":0,\"id\":\"1-1\","
		"\"delivery\":1,\"fields\":{\"key\":\"value\"},\"meta\":{\"attempt\":1,\"stage\":0}}') "
		"exit 0;; esac; exit 65", NULL };
	struct handler_result r;

	setenv("SCALENO_ID", "inherited-must-be-replaced", 1);
	CU_ASSERT_EQUAL(run_once(argv, PROTO_EXEC, 5000, &r), 0);
	unsetenv("SCALENO_ID");
	CU_ASSERT_EQUAL(r.outcome, HANDLER_OK);
}

/*
 * scaleno-worker(8) "The handler's environment": NOMAD_TOKEN, which the
 * worker has, never reaches a handler of either protocol; the rest does.
 */
static void
test_env_no_nomad_token(void)
{
	char *ex[] = { (char *)(uintptr_t)"/bin/sh", (char *)(uintptr_t)"-c",
		(char *)(uintptr_t)"test -z \"${NOMAD_TOKEN+x}\" && test \"$NOMAD_JOB_ID\" = j1 "
		"&& exit 0; exit 65", NULL };
	char *pp[] = { (char *)(uintptr_t)"/bin/sh", (char *)(uintptr_t)"-c",
		(char *)(uintptr_t)"while read -r l; do if test -z \"${NOMAD_TOKEN+x}\" && "
		"test \"$NOMAD_JOB_ID\" = j1; then echo ok; else echo 'fail leaked'; fi; done",
		NULL };
	struct handler_result r;

	setenv("NOMAD_TOKEN", "secret-token", 1);
	setenv("NOMAD_JOB_ID", "j1", 1);
	CU_ASSERT_STRING_EQUAL(getenv("NOMAD_TOKEN"), "secret-token");
	CU_ASSERT_EQUAL(run_once(ex, PROTO_EXEC, 5000, &r), 0);
	CU_ASSERT_EQUAL(r.outcome, HANDLER_OK);
	CU_ASSERT_EQUAL(run_once(pp, PROTO_PIPE, 5000, &r), 0);
	CU_ASSERT_EQUAL(r.outcome, HANDLER_OK);
	/* The worker's own environment is untouched. */
	CU_ASSERT_STRING_EQUAL(getenv("NOMAD_TOKEN"), "secret-token");
	unsetenv("NOMAD_TOKEN");
	unsetenv("NOMAD_JOB_ID");
}

/* A descriptor the worker opened without O_CLOEXEC must not reach the handler. */
static void
test_exec_no_fd_leak(void)
{
	char script[128];
	char *argv[] = { (char *)(uintptr_t)"/bin/sh", (char *)(uintptr_t)"-c", script, NULL };
	struct handler_result r;
	int null = open("/dev/null", O_RDONLY);
	int fd = fcntl(null, F_DUPFD, 10);	/* deliberately inheritable */

	close(null);
	CU_ASSERT_FATAL(fd > 2);
	snprintf(script, sizeof(script), "cat >/dev/null; [ -e /proc/self/fd/%d ] && exit 65; exit 0", fd);
	CU_ASSERT_EQUAL(run_once(argv, PROTO_EXEC, 5000, &r), 0);
	CU_ASSERT_EQUAL(r.outcome, HANDLER_OK);
	close(fd);
}

static void
test_exec_timeout_kills_group(void)
{
	char script[700];
	char *argv[] = { (char *)(uintptr_t)"/bin/sh", (char *)(uintptr_t)"-c", script, NULL };
	struct handler_result r;
	char *pidtxt;
	long bg;

	/* The handler leaves a grandchild in its group, then hangs. */
	snprintf(script, sizeof(script), "sleep 30 & echo $! > %s; wait", tpath("bg.pid"));
	CU_ASSERT_EQUAL(run_once(argv, PROTO_EXEC, 300, &r), 0);
	CU_ASSERT_EQUAL(r.outcome, HANDLER_RETRY);
	CU_ASSERT_TRUE(r.timed_out);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.error, "timed out after 300ms"));
	CU_ASSERT(r.duration_s >= 0.29 && r.duration_s < 3.0);
	pidtxt = slurp(tpath("bg.pid"), NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(pidtxt);
	bg = strtol(pidtxt, NULL, 10);
	free(pidtxt);
	CU_ASSERT(bg > 1);
	CU_ASSERT_TRUE(process_gone(bg));
}

static void
test_exec_not_found(void)
{
	char *argv[] = { (char *)(uintptr_t)"/nonexistent/handler-xyz", NULL };
	char *argv2[] = { (char *)(uintptr_t)"no-such-handler-in-path-xyz", NULL };
	struct handler_result r;

	CU_ASSERT_EQUAL(run_once(argv, PROTO_EXEC, 5000, &r), -1);
	CU_ASSERT_EQUAL(r.outcome, HANDLER_RETRY);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.error, "cannot run handler \"/nonexistent/handler-xyz\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(r.error, "No such file"));
	CU_ASSERT_EQUAL(run_once(argv2, PROTO_PIPE, 5000, &r), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.error, "No such file"));
}

/* A worker started with stdin and stdout closed still wires the handler's pipes right. */
static void
test_worker_std_fds_closed(void)
{
	char *exec_argv[] = { testhandler, (char *)(uintptr_t)"-p", (char *)(uintptr_t)"exec",
		(char *)(uintptr_t)"-x", (char *)(uintptr_t)"0", (char *)(uintptr_t)"-l", tpath("fd01.log"),
		NULL };
	char *pipe_argv[] = { testhandler, (char *)(uintptr_t)"-l", tpath("fd01.log"), NULL };
	int saved0 = fcntl(0, F_DUPFD_CLOEXEC, 10);	/* -1 when already closed */
	int saved1 = fcntl(1, F_DUPFD_CLOEXEC, 10);
	struct handler_result r1, r2;
	int rc1, rc2;

	CU_ASSERT_FATAL(saved1 > 2);
	unlink(tpath("fd01.log"));
	fflush(stdout);
	close(0);
	close(1);
	rc1 = run_once(exec_argv, PROTO_EXEC, 5000, &r1);
	rc2 = run_once(pipe_argv, PROTO_PIPE, 5000, &r2);
	if (saved0 >= 0) {
		dup2(saved0, 0);
		close(saved0);
	}
	dup2(saved1, 1);
	close(saved1);
	CU_ASSERT_EQUAL(rc1, 0);
	CU_ASSERT_EQUAL(r1.outcome, HANDLER_OK);
	CU_ASSERT_EQUAL(rc2, 0);
	CU_ASSERT_EQUAL(r2.outcome, HANDLER_OK);
	CU_ASSERT_EQUAL(count_lines(tpath("fd01.log")), 2);
}

/* A handler that exits without reading a big message: EPIPE, not SIGPIPE death. */
static void
test_exec_ignores_stdin(void)
{
	char *argv[] = { (char *)(uintptr_t)"/bin/true", NULL };
	struct handler *h = make_handler(argv, PROTO_EXEC, 5000);
	size_t big = 4u << 20;
	char *v = malloc(big);
	struct handler_result r;
	struct msgbuf b;

	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	CU_ASSERT_PTR_NOT_NULL_FATAL(v);
	memset(v, 'x', big);
	msg_init(&b, "2-1", "blob", v, big);
	CU_ASSERT_EQUAL(handler_run(h, &b.m, NULL, NULL, &r), 0);
	CU_ASSERT_EQUAL(r.outcome, HANDLER_OK);
	handler_free(h);
	free(v);
}

/* Message content never reaches argv: read back /proc/self/cmdline from the handler. */
static void
test_no_content_in_argv(void)
{
	char *argv[] = { testhandler, (char *)(uintptr_t)"-p", (char *)(uintptr_t)"exec",
		(char *)(uintptr_t)"-x", (char *)(uintptr_t)"0", (char *)(uintptr_t)"-a",
		tpath("cmdline"), NULL };
	char *argv2[] = { testhandler, (char *)(uintptr_t)"-a", tpath("cmdline2"), NULL };
	const char *secret = "SECRET-PAYLOAD-7731";
	struct handler_result r;
	struct msgbuf b;
	size_t len;
	char *s, expect[1024];
	size_t elen = 0;

	for (int pass = 0; pass < 2; pass++) {
		struct handler *h = make_handler(pass == 0 ? argv : argv2, pass == 0 ? PROTO_EXEC : PROTO_PIPE,
		    5000);
		char **av = pass == 0 ? argv : argv2;

		CU_ASSERT_PTR_NOT_NULL_FATAL(h);
		msg_init(&b, "3-1", "secret", secret, strlen(secret));
		CU_ASSERT_EQUAL(handler_run(h, &b.m, NULL, NULL, &r), 0);
		CU_ASSERT_EQUAL(r.outcome, HANDLER_OK);
		handler_free(h);
		s = slurp(pass == 0 ? argv[6] : argv2[2], &len);
		CU_ASSERT_PTR_NOT_NULL_FATAL(s);
		elen = 0;
		for (int i = 0; av[i] != NULL; i++) {
			size_t l = strlen(av[i]) + 1;

			memcpy(expect + elen, av[i], l);
			elen += l;
		}
		CU_ASSERT_EQUAL(len, elen);
		CU_ASSERT(len == elen && memcmp(s, expect, len) == 0);
		CU_ASSERT_PTR_NULL(memmem(s, len, secret, strlen(secret)));
		free(s);
	}
}

static void
test_pipe_sequence_and_verdicts(void)
{
	char *ok[] = { testhandler, (char *)(uintptr_t)"-l", tpath("seq.log"), NULL };
	char *retry[] = { testhandler, (char *)(uintptr_t)"-r", (char *)(uintptr_t)"1", NULL };
	char *fail[] = { testhandler, (char *)(uintptr_t)"-f", (char *)(uintptr_t)"1", NULL };
	struct handler_result r;
	struct handler *h;
	struct msgbuf b;

	unlink(tpath("seq.log"));
	h = make_handler(ok, PROTO_PIPE, 5000);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	for (int i = 0; i < 5; i++) {
		char id[16];

		snprintf(id, sizeof(id), "%d-0", i + 1);
		msg_init(&b, id, "key", "k", 1);
		CU_ASSERT_EQUAL(handler_run(h, &b.m, NULL, NULL, &r), 0);
		CU_ASSERT_EQUAL(r.outcome, HANDLER_OK);
	}
	handler_free(h);
	CU_ASSERT_EQUAL(count_lines(tpath("seq.log")), 5);
	/* One process served every message. */
	CU_ASSERT(log_pid(tpath("seq.log"), 0) > 0);
	CU_ASSERT_EQUAL(log_pid(tpath("seq.log"), 0), log_pid(tpath("seq.log"), 4));

	CU_ASSERT_EQUAL(run_once(retry, PROTO_PIPE, 5000, &r), 0);
	CU_ASSERT_EQUAL(r.outcome, HANDLER_RETRY);
	CU_ASSERT_STRING_EQUAL(r.error, "handler replied retry: testhandler chose to retry");
	CU_ASSERT_EQUAL(run_once(fail, PROTO_PIPE, 5000, &r), 0);
	CU_ASSERT_EQUAL(r.outcome, HANDLER_FAIL);
	CU_ASSERT_STRING_EQUAL(r.error, "handler replied fail: testhandler chose to fail");
}

static void
test_pipe_bad_replies(void)
{
	char *garbage[] = { testhandler, (char *)(uintptr_t)"-g", NULL };
	char *overlong[] = { testhandler, (char *)(uintptr_t)"-G", NULL };
	char *crash[] = { testhandler, (char *)(uintptr_t)"-c", NULL };
	char *segv[] = { testhandler, (char *)(uintptr_t)"-S", NULL };
	struct handler_result r;

	CU_ASSERT_EQUAL(run_once(garbage, PROTO_PIPE, 5000, &r), 0);
	CU_ASSERT_EQUAL(r.outcome, HANDLER_RETRY);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.error, "is not \"ok\""));
	CU_ASSERT_EQUAL(run_once(overlong, PROTO_PIPE, 5000, &r), 0);
	CU_ASSERT_EQUAL(r.outcome, HANDLER_RETRY);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.error, "longer than 4096 bytes"));
	CU_ASSERT_EQUAL(run_once(crash, PROTO_PIPE, 5000, &r), 0);
	CU_ASSERT_EQUAL(r.outcome, HANDLER_RETRY);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.error, "exited with status 3 before replying"));
	CU_ASSERT(r.duration_s < 3.0);
	CU_ASSERT_EQUAL(run_once(segv, PROTO_PIPE, 5000, &r), 0);
	CU_ASSERT_EQUAL(r.outcome, HANDLER_RETRY);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.error, "signal 11"));
}

/* A handler that dies mid-stream is restarted for the next message. */
static void
test_pipe_restart_after_death(void)
{
	char *argv[] = { testhandler, (char *)(uintptr_t)"-k", (char *)(uintptr_t)"2",
		(char *)(uintptr_t)"-l", tpath("die.log"), NULL };
	enum handler_outcome want[] = { HANDLER_OK, HANDLER_RETRY, HANDLER_OK, HANDLER_RETRY };
	struct handler_result r;
	struct handler *h;
	struct msgbuf b;

	unlink(tpath("die.log"));
	h = make_handler(argv, PROTO_PIPE, 5000);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	for (size_t i = 0; i < ARRAY_LEN(want); i++) {
		msg_init(&b, "4-1", "key", "k", 1);
		CU_ASSERT_EQUAL(handler_run(h, &b.m, NULL, NULL, &r), 0);
		CU_ASSERT_EQUAL(r.outcome, want[i]);
		if (want[i] == HANDLER_RETRY)
			CU_ASSERT_PTR_NOT_NULL(strstr(r.error, "exited with status 1 before replying"));
	}
	handler_free(h);
	CU_ASSERT_EQUAL(count_lines(tpath("die.log")), 2);
	CU_ASSERT_NOT_EQUAL(log_pid(tpath("die.log"), 0), log_pid(tpath("die.log"), 1));
}

/* A death is seen at once even while the handler's own child keeps its stdout open. */
static void
test_pipe_death_with_child_holding_stdout(void)
{
	char script[700];
	char *argv[] = { (char *)(uintptr_t)"/bin/sh", (char *)(uintptr_t)"-c", script, NULL };
	struct handler_result r;
	char *pidtxt;

	snprintf(script, sizeof(script), "sleep 30 & echo $! > %s; read -r line; exit 4",
	    tpath("holder.pid"));
	CU_ASSERT_EQUAL(run_once(argv, PROTO_PIPE, 20000, &r), 0);
	CU_ASSERT_EQUAL(r.outcome, HANDLER_RETRY);
	CU_ASSERT_FALSE(r.timed_out);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.error, "exited with status 4 before replying"));
	CU_ASSERT(r.duration_s < 5.0);
	pidtxt = slurp(tpath("holder.pid"), NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(pidtxt);
	CU_ASSERT_TRUE(process_gone(strtol(pidtxt, NULL, 10)));
	free(pidtxt);
}

/* handler_free stops a pipe handler that ignores the end of its input, in bounded time. */
static void
test_pipe_free_is_bounded(void)
{
	char script[700];
	char *argv[] = { (char *)(uintptr_t)"/bin/sh", (char *)(uintptr_t)"-c", script, NULL };
	struct handler_result r;
	struct handler *h;
	struct msgbuf b;
	char *pidtxt;
	double t0;

	snprintf(script, sizeof(script), "echo $$ > %s; read -r line; echo ok; exec sleep 30",
	    tpath("stubborn.pid"));
	h = make_handler(argv, PROTO_PIPE, 5000);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	msg_init(&b, "5-9", "key", "k", 1);
	CU_ASSERT_EQUAL(handler_run(h, &b.m, NULL, NULL, &r), 0);
	CU_ASSERT_EQUAL(r.outcome, HANDLER_OK);
	t0 = util_now_s();
	handler_free(h);
	CU_ASSERT(util_now_s() - t0 < 2.0);
	pidtxt = slurp(tpath("stubborn.pid"), NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(pidtxt);
	CU_ASSERT_TRUE(process_gone(strtol(pidtxt, NULL, 10)));
	free(pidtxt);
}

static void
test_pipe_timeout_then_restart(void)
{
	char *argv[] = { testhandler, (char *)(uintptr_t)"-d", (char *)(uintptr_t)"5000", NULL };
	struct handler_result r;
	struct handler *h;
	struct msgbuf b;

	h = make_handler(argv, PROTO_PIPE, 250);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	msg_init(&b, "5-1", "key", "k", 1);
	for (int i = 0; i < 2; i++) {
		CU_ASSERT_EQUAL(handler_run(h, &b.m, NULL, NULL, &r), 0);
		CU_ASSERT_EQUAL(r.outcome, HANDLER_RETRY);
		CU_ASSERT_TRUE(r.timed_out);
		CU_ASSERT(r.duration_s >= 0.24 && r.duration_s < 3.0);
	}
	handler_free(h);
}

/* Once draining, the drain deadline cuts a long handler short. */
static void
test_drain_deadline(void)
{
	char *argv[] = { testhandler, (char *)(uintptr_t)"-d", (char *)(uintptr_t)"5000", NULL };
	volatile sig_atomic_t draining = 1;
	volatile int64_t deadline = util_now_ms() + 200;
	struct handler_result r;
	struct handler *h;
	struct msgbuf b;

	h = make_handler(argv, PROTO_PIPE, 30000);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	msg_init(&b, "6-1", "key", "k", 1);
	CU_ASSERT_EQUAL(handler_run(h, &b.m, &draining, &deadline, &r), 0);
	CU_ASSERT_EQUAL(r.outcome, HANDLER_RETRY);
	CU_ASSERT_TRUE(r.timed_out);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.error, "drain deadline"));
	CU_ASSERT(r.duration_s < 3.0);
	handler_free(h);
}

/* 8 MiB through both protocols, including a handler that replies before reading it all. */
static void
test_huge_messages(void)
{
	char *pipe_early[] = { testhandler, (char *)(uintptr_t)"-E", (char *)(uintptr_t)"-l",
		tpath("early.log"), NULL };
	char *exec_log[] = { testhandler, (char *)(uintptr_t)"-p", (char *)(uintptr_t)"exec",
		(char *)(uintptr_t)"-x", (char *)(uintptr_t)"0", (char *)(uintptr_t)"-l",
		tpath("huge.log"), NULL };
	size_t big = 8u << 20;
	char *v = malloc(big), *json, *log;
	struct handler_result r;
	struct msgbuf b;
	char expect[64];

	CU_ASSERT_PTR_NOT_NULL_FATAL(v);
	memset(v, 'y', big);
	msg_init(&b, "7-1", "blob", v, big);
	json = handler_message_json(&b.m);
	CU_ASSERT_PTR_NOT_NULL_FATAL(json);
	unlink(tpath("huge.log"));
	unlink(tpath("early.log"));
	for (int pass = 0; pass < 2; pass++) {
		char **argv = pass == 0 ? exec_log : pipe_early;
		struct handler *h = make_handler(argv, pass == 0 ? PROTO_EXEC : PROTO_PIPE, 20000);

		CU_ASSERT_PTR_NOT_NULL_FATAL(h);
		for (int i = 0; i < 2; i++) {
			CU_ASSERT_EQUAL(handler_run(h, &b.m, NULL, NULL, &r), 0);
			CU_ASSERT_EQUAL(r.outcome, HANDLER_OK);
		}
		handler_free(h);
	}
	/* The handlers saw the whole JSON line, twice each, in step. */
	snprintf(expect, sizeof(expect), "ok 7-1 1 %zu - ", strlen(json));
	log = slurp(tpath("huge.log"), NULL);
	CU_ASSERT_PTR_NOT_NULL(log);
	CU_ASSERT_PTR_NOT_NULL(log != NULL ? strstr(log, expect) : NULL);
	CU_ASSERT_EQUAL(count_lines(tpath("huge.log")), 2);
	free(log);
	log = slurp(tpath("early.log"), NULL);
	CU_ASSERT_PTR_NOT_NULL(log != NULL ? strstr(log, expect) : NULL);
	CU_ASSERT_EQUAL(count_lines(tpath("early.log")), 2);
	free(log);
	free(json);
	free(v);
}

/*
 * Values that are not valid UTF-8 (or hold a NUL) go as base64 of their
 * exact bytes, listed in meta.binary; valid ones as they are. Field names
 * keep U+FFFD for what is not UTF-8.
 */
static void
test_json_non_utf8(void)
{
	static const struct {
		const char *in;
		size_t len;
		const char *out;
		bool binary;
	} cases[] = {
		{ "plain", 5, "plain", false },
		{ "caf\xc3\xa9", 5, "caf\xc3\xa9", false },			/* valid 2-byte */
		{ "\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80", false },	/* valid 4-byte */
		{ "q\"\\\n\t", 5, "q\"\\\n\t", false },			/* JSON escapes */
		{ "", 0, "", false },
		{ "a\xff" "b", 3, "Yf9i", true },				/* invalid byte */
		{ "a\0b", 3, "YQBi", true },					/* NUL */
		{ "\xc0\x80", 2, "wIA=", true },				/* overlong NUL */
		{ "\xed\xa0\x80", 3, "7aCA", true },				/* surrogate */
		{ "\xe2\x82", 2, "4oI=", true },				/* truncated */
		{ "\x08\x96\x01\x12\x04\x74", 6, "CJYBEgR0", true },	/* protobuf */
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct msgbuf b;
		char *json;
		cJSON *j, *f, *v, *meta, *bin;

		msg_init(&b, "8-1", "k\xfe", cases[i].in, cases[i].len);
		json = handler_message_json(&b.m);
		CU_ASSERT_PTR_NOT_NULL_FATAL(json);
		CU_ASSERT_PTR_NULL(strchr(json, '\n'));
		j = cJSON_Parse(json);
		CU_ASSERT_PTR_NOT_NULL_FATAL(j);
		f = cJSON_GetObjectItemCaseSensitive(j, "fields");
		v = cJSON_GetObjectItemCaseSensitive(f, "k\xef\xbf\xbd");
		CU_ASSERT_TRUE(cJSON_IsString(v));
		if (cJSON_IsString(v))
			CU_ASSERT_STRING_EQUAL(v->valuestring, cases[i].out);
		meta = cJSON_GetObjectItemCaseSensitive(j, "meta");
		bin = cJSON_GetObjectItemCaseSensitive(meta, "binary");
		CU_ASSERT_EQUAL(bin != NULL, cases[i].binary);
		if (bin != NULL) {
			CU_ASSERT_EQUAL(cJSON_GetArraySize(bin), 1);
			CU_ASSERT_STRING_EQUAL(cJSON_GetArrayItem(bin, 0)->valuestring, "k\xef\xbf\xbd");
		}
		cJSON_Delete(j);
		free(json);
	}
}

/*
 * The message of scaleno-worker(8): partition, meta with the attempt
 * number and stage; in a retry stage, fields without the bookkeeping and
 * meta with the first failure and the last error.
 */
static void
test_json_meta(void)
{
	static const char *names[] = { "user", "x-origin-stream", "x-attempts", "x-error",
		"x-error-history", "x-stage", "x-first-failed-ms", "x-origin-id", "x-last-failed-ms" };
	static const char *values[] = { "42", "jobs", "4", "upstream 503", "h", "1", "1700", "1-1",
		"1800" };
	size_t nl[ARRAY_LEN(names)], vl[ARRAY_LEN(names)];
	struct msgbuf b;
	char *json;
	cJSON *j, *f, *meta;

	for (int stage = 0; stage < 2; stage++) {
		msg_init(&b, "9-1", "user", "42", 2);
		for (size_t i = 0; i < ARRAY_LEN(names); i++) {
			nl[i] = strlen(names[i]);
			vl[i] = strlen(values[i]);
		}
		b.m.names = (char **)(uintptr_t)names;
		b.m.values = (char **)(uintptr_t)values;
		b.m.name_lens = nl;
		b.m.value_lens = vl;
		b.m.nfields = ARRAY_LEN(names);
		b.m.partition = 3;
		b.m.stage = stage;
		b.m.attempt = stage ? 5 : 1;
		b.m.first_failed_ms = stage ? 1700 : 0;
		b.m.last_error = stage ? "upstream 503" : NULL;
		json = handler_message_json(&b.m);
		CU_ASSERT_PTR_NOT_NULL_FATAL(json);
		j = cJSON_Parse(json);
		CU_ASSERT_PTR_NOT_NULL_FATAL(j);
		CU_ASSERT_EQUAL(cJSON_GetObjectItemCaseSensitive(j, "partition")->valueint, 3);
		f = cJSON_GetObjectItemCaseSensitive(j, "fields");
		/* Main stream: every field is the producer's; a stage: only user. */
		CU_ASSERT_EQUAL(cJSON_GetArraySize(f), stage ? 1 : (int)ARRAY_LEN(names));
		meta = cJSON_GetObjectItemCaseSensitive(j, "meta");
		CU_ASSERT_EQUAL(cJSON_GetObjectItemCaseSensitive(meta, "attempt")->valueint, stage ? 5 : 1);
		CU_ASSERT_EQUAL(cJSON_GetObjectItemCaseSensitive(meta, "stage")->valueint, stage);
		if (stage) {
			CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItemCaseSensitive(meta, "last_error")->valuestring,
			    "upstream 503");
			CU_ASSERT_EQUAL(cJSON_GetObjectItemCaseSensitive(meta, "first_failed_ms")->valuedouble,
			    1700);
		} else {
			CU_ASSERT_PTR_NULL(cJSON_GetObjectItemCaseSensitive(meta, "last_error"));
			CU_ASSERT_PTR_NULL(cJSON_GetObjectItemCaseSensitive(meta, "first_failed_ms"));
		}
		CU_ASSERT_PTR_NULL(cJSON_GetObjectItemCaseSensitive(meta, "binary"));
		cJSON_Delete(j);
		free(json);
	}
}

/* ---- handler_run_batch: several messages in flight on one pipe handler ---- */

#define BATCH_MAX 32

/* A batch of one-field messages "v" = values[i] (borrowed), ids "10-<i>". */
struct batch {
	struct msgbuf b[BATCH_MAX];
	struct message m[BATCH_MAX];
	struct handler_result r[BATCH_MAX];
	size_t n;
};

static void
batch_init(struct batch *bt, const char *const *values, size_t n)
{
	memset(bt, 0, sizeof(*bt));
	for (size_t i = 0; i < n && i < BATCH_MAX; i++) {
		char id[32];

		snprintf(id, sizeof(id), "10-%zu", i);
		msg_init(&bt->b[i], id, "v", values[i], strlen(values[i]));
		bt->m[i] = bt->b[i].m;
	}
	bt->n = n < BATCH_MAX ? n : BATCH_MAX;
}

/* n messages whose field v is "x". */
static void
batch_same(struct batch *bt, size_t n)
{
	static const char *x[BATCH_MAX];

	for (size_t i = 0; i < BATCH_MAX; i++)
		x[i] = "x";
	batch_init(bt, x, n);
}

/*
 * A sh pipe handler answering by the value of field "v": retry, fail,
 * garbage ("maybe"), die (exit 7 without a reply), slow (150 ms, then ok),
 * hang (never answers), twice (ok ok), lag (200 ms, ok, 10 ms, ok again);
 * anything else ok. It logs "<v>" per message it
 * starts to $BATCH_LOG, so the tests can see which ones ran.
 */
static const char verdict_script[] =
	"while IFS= read -r l; do v=${l##*\\\"v\\\":\\\"}; v=${v%%\\\"*}; "
	"echo \"$v\" >> \"$BATCH_LOG\"; case $v in "
	"retry) echo 'retry asked to';; fail) echo 'fail asked to';; garbage) echo maybe;; "
	"die) exit 7;; slow) sleep 0.15; echo ok;; hang) sleep 30;; twice) echo ok; echo ok;; lag) sleep 0.2; echo ok; sleep 0.01; echo ok;; "
	"*) echo ok;; esac; done";

static char *verdict_argv[] = { (char *)(uintptr_t)"/bin/sh", (char *)(uintptr_t)"-c",
	(char *)(uintptr_t)verdict_script, NULL };

/* Lines of the verdict script's log, joined by spaces (static buffer). */
static const char *
batch_log(void)
{
	static char out[1024];
	char *s = slurp(tpath("batch.log"), NULL);
	size_t o = 0;

	out[0] = '\0';
	for (char *p = s; p != NULL && *p != '\0' && o + 2 < sizeof(out); p++)
		out[o++] = *p == '\n' ? ' ' : *p;
	while (o > 0 && out[o - 1] == ' ')
		o--;
	out[o] = '\0';
	free(s);
	return out;
}

static struct handler *
verdict_handler(int64_t timeout_ms)
{
	unlink(tpath("batch.log"));
	setenv("BATCH_LOG", tpath("batch.log"), 1);
	return make_handler(verdict_argv, PROTO_PIPE, timeout_ms);
}

/*
 * 32 messages at once through testhandler, twice, plain and answering each
 * message before reading it (-E): all answered, in order, by one process.
 */
static void
test_batch_all_ok(void)
{
	char *plain[] = { testhandler, (char *)(uintptr_t)"-l", tpath("ball.log"), NULL };
	char *early[] = { testhandler, (char *)(uintptr_t)"-E", (char *)(uintptr_t)"-l",
		tpath("ball.log"), NULL };
	struct batch bt;
	size_t nrun = 99;

	batch_same(&bt, BATCH_MAX);
	for (int pass = 0; pass < 2; pass++) {
		struct handler *h = make_handler(pass == 0 ? plain : early, PROTO_PIPE, 5000);
		char *log, *p;

		CU_ASSERT_PTR_NOT_NULL_FATAL(h);
		unlink(tpath("ball.log"));
		for (int round = 0; round < 2; round++) {
			CU_ASSERT_EQUAL(handler_run_batch(h, bt.m, bt.n, NULL, NULL, bt.r, &nrun), 0);
			CU_ASSERT_EQUAL(nrun, bt.n);
			for (size_t i = 0; i < bt.n; i++) {
				CU_ASSERT_EQUAL(bt.r[i].outcome, HANDLER_OK);
				CU_ASSERT(bt.r[i].duration_s >= 0 && bt.r[i].duration_s < 3.0);
			}
		}
		CU_ASSERT_EQUAL(handler_run_batch(h, bt.m, 0, NULL, NULL, bt.r, &nrun), 0);
		CU_ASSERT_EQUAL(nrun, 0);
		handler_free(h);
		CU_ASSERT_EQUAL(count_lines(tpath("ball.log")), 2 * BATCH_MAX);
		CU_ASSERT_EQUAL(log_pid(tpath("ball.log"), 0),
		    log_pid(tpath("ball.log"), 2 * BATCH_MAX - 1));
		/* In order: the ids of the log are 10-0 .. 10-31, twice. */
		log = slurp(tpath("ball.log"), NULL);
		CU_ASSERT_PTR_NOT_NULL_FATAL(log);
		p = log;
		for (int k = 0; k < 2 * BATCH_MAX && p != NULL; k++) {
			char want[32];

			snprintf(want, sizeof(want), "ok 10-%d ", k % BATCH_MAX);
			CU_ASSERT_EQUAL(strncmp(p, want, strlen(want)), 0);
			p = strchr(p, '\n');
			p = p != NULL ? p + 1 : NULL;
		}
		free(log);
	}
}

/* retry and fail replies are verdicts like ok: the handler goes on, every message answered. */
static void
test_batch_mixed_verdicts(void)
{
	static const char *v[] = { "a", "retry", "b", "fail", "retry", "c" };
	static const enum handler_outcome want[] = { HANDLER_OK, HANDLER_RETRY, HANDLER_OK,
		HANDLER_FAIL, HANDLER_RETRY, HANDLER_OK };
	struct handler *h = verdict_handler(5000);
	struct batch bt;
	size_t nrun = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	batch_init(&bt, v, ARRAY_LEN(v));
	CU_ASSERT_EQUAL(handler_run_batch(h, bt.m, bt.n, NULL, NULL, bt.r, &nrun), 0);
	CU_ASSERT_EQUAL(nrun, bt.n);
	for (size_t i = 0; i < bt.n; i++)
		CU_ASSERT_EQUAL(bt.r[i].outcome, want[i]);
	CU_ASSERT_STRING_EQUAL(bt.r[1].error, "handler replied retry: asked to");
	CU_ASSERT_STRING_EQUAL(bt.r[3].error, "handler replied fail: asked to");
	CU_ASSERT_STRING_EQUAL(bt.r[0].error, "");
	handler_free(h);
	CU_ASSERT_STRING_EQUAL(batch_log(), "a retry b fail retry c");
}

/*
 * Death or garbage at message k: k fails (retryable), k+1.. get no verdict;
 * the next batch restarts the handler and runs them. The script dies
 * before it reads on, so its log shows which ones ran; after garbage it may
 * read on before it is killed.
 */
static void
test_batch_failure_at_k(void)
{
	static const struct {
		const char *v[5];
		size_t n, k;
		const char *error, *log;
	} cases[] = {
		{ { "a", "b", "die", "c", "d" }, 5, 2, "handler exited with status 7 before replying",
		  "a b die c d" },
		{ { "die", "a" }, 2, 0, "handler exited with status 7 before replying", "die a" },
		{ { "a", "garbage", "b", "c" }, 4, 1, "is not \"ok\"", NULL },
	};

	for (size_t c = 0; c < ARRAY_LEN(cases); c++) {
		struct handler *h = verdict_handler(5000);
		size_t n = cases[c].n, k = cases[c].k, nrun = 0;
		struct batch bt;

		CU_ASSERT_PTR_NOT_NULL_FATAL(h);
		batch_init(&bt, cases[c].v, n);
		CU_ASSERT_EQUAL(handler_run_batch(h, bt.m, n, NULL, NULL, bt.r, &nrun), 0);
		CU_ASSERT_EQUAL_FATAL(nrun, k + 1);
		/* Answered, but a surplus could not show any more: doubtful, run again. */
		for (size_t i = 0; i < k; i++) {
			CU_ASSERT_EQUAL(bt.r[i].outcome, HANDLER_OK);
			CU_ASSERT_TRUE(bt.r[i].doubtful);
		}
		CU_ASSERT_EQUAL(handler_break_count(h), 1);
		CU_ASSERT_EQUAL(bt.r[k].outcome, HANDLER_RETRY);
		CU_ASSERT_FALSE(bt.r[k].doubtful);
		CU_ASSERT_FALSE(bt.r[k].timed_out);
		CU_ASSERT_PTR_NOT_NULL(strstr(bt.r[k].error, cases[c].error));
		/* The rest, again, through a new handler process. */
		CU_ASSERT_EQUAL(handler_run_batch(h, bt.m + k + 1, n - k - 1, NULL, NULL,
		    bt.r + k + 1, &nrun), 0);
		CU_ASSERT_EQUAL(nrun, n - k - 1);
		for (size_t i = k + 1; i < n; i++) {
			CU_ASSERT_EQUAL(bt.r[i].outcome, HANDLER_OK);
			CU_ASSERT_FALSE(bt.r[i].doubtful);
		}
		CU_ASSERT_EQUAL(handler_break_count(h), 1);
		handler_free(h);
		if (cases[c].log != NULL)
			CU_ASSERT_STRING_EQUAL(batch_log(), cases[c].log);
	}
}

/*
 * A handler that answers one message twice: its extra "ok" would become the
 * next message's verdict (and that one's "retry" the one after). No reply
 * of such an exchange counts (nrun 0), wherever the surplus shows, and the
 * handler is restarted: the next batch gets its own replies.
 */
static void
test_batch_answered_twice(void)
{
	static const char *cases[][5] = {
		{ "a", "twice", "retry", "b", "c" },
		{ "a", "b", "c", "twice", "retry" },
	};

	for (size_t c = 0; c < ARRAY_LEN(cases); c++) {
		struct handler *h = verdict_handler(5000);
		struct batch bt;
		size_t nrun = 99;

		CU_ASSERT_PTR_NOT_NULL_FATAL(h);
		batch_init(&bt, cases[c], 5);
		CU_ASSERT_EQUAL(handler_run_batch(h, bt.m, bt.n, NULL, NULL, bt.r, &nrun), 0);
		CU_ASSERT_EQUAL(nrun, 0);
		batch_init(&bt, cases[0] + 2, 3);	/* retry b c */
		CU_ASSERT_EQUAL(handler_run_batch(h, bt.m, bt.n, NULL, NULL, bt.r, &nrun), 0);
		CU_ASSERT_EQUAL(nrun, 3);
		CU_ASSERT_EQUAL(bt.r[0].outcome, HANDLER_RETRY);
		CU_ASSERT_EQUAL(bt.r[1].outcome, HANDLER_OK);
		CU_ASSERT_EQUAL(bt.r[2].outcome, HANDLER_OK);
		handler_free(h);
	}
	/*
	 * A surplus after the exchange is over is found by a watch (polled,
	 * 2 s at most) and counts as a break.
	 */
	struct handler *h = verdict_handler(5000);
	struct batch bt;
	bool seen = false;

	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	batch_init(&bt, cases[0] + 1, 1);	/* twice */
	CU_ASSERT_EQUAL(handler_run(h, &bt.m[0], NULL, NULL, &bt.r[0]), 0);
	/* (Both lines in one read: out of step at once, handler already restarted.) */
	for (int i = 0; i < 200 && bt.r[0].outcome == HANDLER_OK &&
	    !(seen = handler_settle(h, false) == 1); i++)
		usleep(10000);
	CU_ASSERT_TRUE(seen || bt.r[0].outcome == HANDLER_RETRY);
	CU_ASSERT_EQUAL(handler_break_count(h), 1);
	batch_init(&bt, cases[0] + 2, 1);	/* retry: its own reply, after a restart */
	CU_ASSERT_EQUAL(handler_run(h, &bt.m[0], NULL, NULL, &bt.r[0]), 0);
	CU_ASSERT_EQUAL(bt.r[0].outcome, HANDLER_RETRY);
	CU_ASSERT_EQUAL(handler_settle(h, false), 0);
	CU_ASSERT_EQUAL(handler_break_count(h), 1);
	handler_free(h);
}

/*
 * One message in flight, deferred watch (the consumer's retries and
 * one-at-a-time runs): its second "ok" comes 10 ms after the first, after
 * the exchange returned. The watch of that exchange runs before the next
 * message is written and finds it, so the next message gets its own reply
 * (without that watch it would take the stale "ok"). Read in one go (a
 * slow reader), the two lines are out of step at once instead.
 */
static void
test_single_answered_twice_late(void)
{
	static const char *v[] = { "lag", "a" };
	struct handler *h = verdict_handler(5000);
	struct batch bt;

	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	handler_defer_settle(h, true);
	batch_init(&bt, v, ARRAY_LEN(v));
	CU_ASSERT_EQUAL(handler_run(h, &bt.m[0], NULL, NULL, &bt.r[0]), 0);
	if (bt.r[0].outcome == HANDLER_OK)
		CU_ASSERT_EQUAL(handler_break_count(h), 0);
	CU_ASSERT_EQUAL(handler_run(h, &bt.m[1], NULL, NULL, &bt.r[1]), 0);
	CU_ASSERT_EQUAL(handler_break_count(h), 1);
	CU_ASSERT_STRING_EQUAL(handler_break_reason(h),
	    "the pipe handler answered more lines than it was sent messages");
	CU_ASSERT_EQUAL(bt.r[1].outcome, HANDLER_OK);
	CU_ASSERT_EQUAL(handler_settle(h, true), 0);
	handler_free(h);
	CU_ASSERT_STRING_EQUAL(batch_log(), "lag a");
}

/*
 * Answered twice, then dead on the last message before it answered: the
 * reply count matches the messages, and every verdict is shifted by one
 * ("die" seems answered "ok"). The death is a break: no verdict of the
 * exchange is trusted, whether the watch runs in the exchange or later.
 */
static void
test_batch_twice_then_death(void)
{
	static const char *v[] = { "a", "twice", "b", "die" };

	for (int deferred = 0; deferred < 2; deferred++) {
		struct handler *h = verdict_handler(5000);
		struct batch bt;
		size_t nrun = 0;

		CU_ASSERT_PTR_NOT_NULL_FATAL(h);
		handler_defer_settle(h, deferred);
		batch_init(&bt, v, ARRAY_LEN(v));
		CU_ASSERT_EQUAL(handler_run_batch(h, bt.m, bt.n, NULL, NULL, bt.r, &nrun), 0);
		CU_ASSERT_EQUAL_FATAL(nrun, bt.n);
		if (deferred) {
			/* Its stdout closes with the death: the watch sees the end, at once. */
			CU_ASSERT_EQUAL(handler_settle(h, true), 1);
		} else {
			for (size_t i = 0; i < bt.n; i++)
				CU_ASSERT_TRUE(bt.r[i].doubtful);
		}
		CU_ASSERT_EQUAL(handler_break_count(h), 1);
		CU_ASSERT_PTR_NOT_NULL(strstr(handler_break_reason(h), "exited"));
		/* A new process answers the next batch, and nothing is doubtful. */
		batch_init(&bt, v, 1);
		CU_ASSERT_EQUAL(handler_run_batch(h, bt.m, 1, NULL, NULL, bt.r, &nrun), 0);
		CU_ASSERT_EQUAL(nrun, 1);
		CU_ASSERT_EQUAL(bt.r[0].outcome, HANDLER_OK);
		CU_ASSERT_FALSE(bt.r[0].doubtful);
		CU_ASSERT_EQUAL(handler_break_count(h), 1);
		handler_free(h);
	}
}

/* testhandler -k: dies on reading message 3 of 8, with its replies to 1 and 2 sent. */
static void
test_batch_death_testhandler(void)
{
	char *argv[] = { testhandler, (char *)(uintptr_t)"-k", (char *)(uintptr_t)"3",
		(char *)(uintptr_t)"-l", tpath("bdie.log"), NULL };
	struct handler *h;
	struct batch bt;
	size_t nrun = 0;

	unlink(tpath("bdie.log"));
	batch_same(&bt, 8);
	h = make_handler(argv, PROTO_PIPE, 5000);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	CU_ASSERT_EQUAL(handler_run_batch(h, bt.m, bt.n, NULL, NULL, bt.r, &nrun), 0);
	CU_ASSERT_EQUAL_FATAL(nrun, 3);
	CU_ASSERT_EQUAL(bt.r[0].outcome, HANDLER_OK);
	CU_ASSERT_EQUAL(bt.r[1].outcome, HANDLER_OK);
	CU_ASSERT_EQUAL(bt.r[2].outcome, HANDLER_RETRY);
	CU_ASSERT_PTR_NOT_NULL(strstr(bt.r[2].error, "exited with status 1 before replying"));
	handler_free(h);
	CU_ASSERT_EQUAL(count_lines(tpath("bdie.log")), 2);
}

/*
 * Timeout at k: the clock of each message starts at the reply before it,
 * so four 150 ms messages pass a 400 ms timeout that the batch as a whole
 * exceeds; the hanging fifth times out, its group is killed, the rest get
 * no verdict.
 */
static void
test_batch_timeout_at_k(void)
{
	static const char *v[] = { "slow", "slow", "slow", "slow", "hang", "a", "b" };
	struct handler *h = verdict_handler(400);
	struct batch bt;
	size_t nrun = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	batch_init(&bt, v, ARRAY_LEN(v));
	CU_ASSERT_EQUAL(handler_run_batch(h, bt.m, bt.n, NULL, NULL, bt.r, &nrun), 0);
	CU_ASSERT_EQUAL_FATAL(nrun, 5);
	for (int i = 0; i < 4; i++) {
		CU_ASSERT_EQUAL(bt.r[i].outcome, HANDLER_OK);
		CU_ASSERT(bt.r[i].duration_s >= 0.14 && bt.r[i].duration_s < 0.4);
	}
	CU_ASSERT_EQUAL(bt.r[4].outcome, HANDLER_RETRY);
	CU_ASSERT_TRUE(bt.r[4].timed_out);
	CU_ASSERT_STRING_EQUAL(bt.r[4].error, "handler timed out after 400ms");
	CU_ASSERT(bt.r[4].duration_s >= 0.39 && bt.r[4].duration_s < 3.0);
	handler_free(h);
	CU_ASSERT_STRING_EQUAL(batch_log(), "slow slow slow slow hang");
}

/* Draining: the drain deadline cuts the batch at the message in hand; the answered ones stand. */
static void
test_batch_drain_deadline(void)
{
	static const char *v[] = { "slow", "slow", "slow", "slow", "slow", "slow", "slow", "slow" };
	volatile sig_atomic_t draining = 1;
	volatile int64_t deadline;
	struct handler *h = verdict_handler(30000);
	struct batch bt;
	size_t nrun = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	batch_init(&bt, v, ARRAY_LEN(v));
	deadline = util_now_ms() + 400;
	CU_ASSERT_EQUAL(handler_run_batch(h, bt.m, bt.n, &draining, &deadline, bt.r, &nrun), 0);
	CU_ASSERT(nrun >= 1 && nrun < bt.n);
	for (size_t i = 0; i + 1 < nrun; i++)
		CU_ASSERT_EQUAL(bt.r[i].outcome, HANDLER_OK);
	if (nrun >= 1) {
		CU_ASSERT_EQUAL(bt.r[nrun - 1].outcome, HANDLER_RETRY);
		CU_ASSERT_TRUE(bt.r[nrun - 1].timed_out);
		CU_ASSERT_STRING_EQUAL(bt.r[nrun - 1].error, "handler killed at the drain deadline");
	}
	CU_ASSERT(util_now_ms() - deadline < 2000);
	handler_free(h);
}

/*
 * Four 8 MiB messages in one batch, to a handler that reads line by line
 * and to one that answers each before reading it (testhandler -E): neither
 * side may block the other.
 */
static void
test_batch_huge(void)
{
	char *plain[] = { testhandler, (char *)(uintptr_t)"-l", tpath("bhuge.log"), NULL };
	char *early[] = { testhandler, (char *)(uintptr_t)"-E", (char *)(uintptr_t)"-l",
		tpath("bhuge.log"), NULL };
	size_t big = 8u << 20;
	char *blob = malloc(big + 1), *json, *log, expect[64];
	const char *v[4];
	struct batch bt;
	size_t nrun = 0, jlen;

	CU_ASSERT_PTR_NOT_NULL_FATAL(blob);
	memset(blob, 'z', big);
	blob[big] = '\0';
	for (size_t i = 0; i < ARRAY_LEN(v); i++)
		v[i] = blob;
	batch_init(&bt, v, ARRAY_LEN(v));
	json = handler_message_json(&bt.m[0]);
	CU_ASSERT_PTR_NOT_NULL_FATAL(json);
	jlen = strlen(json);
	free(json);
	unlink(tpath("bhuge.log"));
	for (int pass = 0; pass < 2; pass++) {
		struct handler *h = make_handler(pass == 0 ? plain : early, PROTO_PIPE, 20000);

		CU_ASSERT_PTR_NOT_NULL_FATAL(h);
		CU_ASSERT_EQUAL(handler_run_batch(h, bt.m, bt.n, NULL, NULL, bt.r, &nrun), 0);
		CU_ASSERT_EQUAL(nrun, bt.n);
		for (size_t i = 0; i < bt.n; i++)
			CU_ASSERT_EQUAL(bt.r[i].outcome, HANDLER_OK);
		handler_free(h);
	}
	/* Each handler saw each whole line, in step. */
	CU_ASSERT_EQUAL(count_lines(tpath("bhuge.log")), 8);
	log = slurp(tpath("bhuge.log"), NULL);
	for (int k = 0; k < 4; k++) {
		snprintf(expect, sizeof(expect), "ok 10-%d 1 %zu - ", k, jlen);
		CU_ASSERT_PTR_NOT_NULL(log != NULL ? strstr(log, expect) : NULL);
	}
	free(log);
	free(blob);
}

/* A handler that cannot start: -1, nothing run. exec: every message, one process each. */
static void
test_batch_start_failure_and_exec(void)
{
	char *missing[] = { (char *)(uintptr_t)"/nonexistent/handler-xyz", NULL };
	char *exec_argv[] = { testhandler, (char *)(uintptr_t)"-p", (char *)(uintptr_t)"exec",
		(char *)(uintptr_t)"-l", tpath("bexec.log"), NULL };
	static const char *v[] = { "a", "b", "c" };
	struct handler *h = make_handler(missing, PROTO_PIPE, 5000);
	struct batch bt;
	size_t nrun = 99;

	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	batch_init(&bt, v, ARRAY_LEN(v));
	CU_ASSERT_EQUAL(handler_run_batch(h, bt.m, bt.n, NULL, NULL, bt.r, &nrun), -1);
	CU_ASSERT_EQUAL(nrun, 0);
	CU_ASSERT_EQUAL(bt.r[0].outcome, HANDLER_RETRY);
	CU_ASSERT_PTR_NOT_NULL(strstr(bt.r[0].error, "No such file"));
	handler_free(h);
	unlink(tpath("bexec.log"));
	h = make_handler(exec_argv, PROTO_EXEC, 5000);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	CU_ASSERT_EQUAL(handler_run_batch(h, bt.m, bt.n, NULL, NULL, bt.r, &nrun), 0);
	CU_ASSERT_EQUAL(nrun, 3);
	handler_free(h);
	CU_ASSERT_EQUAL(count_lines(tpath("bexec.log")), 3);
	CU_ASSERT_NOT_EQUAL(log_pid(tpath("bexec.log"), 0), log_pid(tpath("bexec.log"), 2));
}

/* Per-message overhead of each protocol with a no-op handler (printed, not asserted). */
static void
bench_overhead(void)
{
	char *pipe_argv[] = { testhandler, NULL };
	char *exec_argv[] = { testhandler, (char *)(uintptr_t)"-p", (char *)(uintptr_t)"exec",
		(char *)(uintptr_t)"-x", (char *)(uintptr_t)"0", NULL };
	char *true_argv[] = { (char *)(uintptr_t)"/bin/true", NULL };
	char **argvs[3] = { true_argv, exec_argv, pipe_argv };
	const char *names[3] = { "exec /bin/true", "exec testhandler", "pipe testhandler" };
	const int n[3] = { 300, 200, 5000 };

	for (int pass = 0; pass < 3; pass++) {
		struct handler *h = make_handler(argvs[pass], pass < 2 ? PROTO_EXEC : PROTO_PIPE, 5000);
		struct handler_result r;
		struct msgbuf b;
		int ok = 0;
		double t0;

		CU_ASSERT_PTR_NOT_NULL_FATAL(h);
		const char *value = "a field value of a typical size, some sixty-four bytes or so.";

		msg_init(&b, "9-1", "key", value, strlen(value));
		CU_ASSERT_EQUAL(handler_run(h, &b.m, NULL, NULL, &r), 0);	/* warm-up/start */
		t0 = util_now_s();
		for (int i = 0; i < n[pass]; i++)
			ok += handler_run(h, &b.m, NULL, NULL, &r) == 0 && r.outcome == HANDLER_OK;
		printf("\n  bench: %s, %d messages: %.1f us/message", names[pass], n[pass],
		    (util_now_s() - t0) * 1e6 / n[pass]);
		CU_ASSERT_EQUAL(ok, n[pass]);
		handler_free(h);
	}
	printf("\n");
}

int
main(void)
{
	const char *build = getenv("BUILD");
	char cwd[256];
	CU_pSuite s;
	int fails;

	if (getcwd(cwd, sizeof(cwd)) == NULL)
		return 2;
	snprintf(testhandler, sizeof(testhandler), "%s/%s/handlers/testhandler", cwd,
	    build != NULL && *build != '\0' ? build : "build");
	if (access(testhandler, X_OK) != 0) {
		fprintf(stderr, "test_handler: %s is missing (run make first)\n", testhandler);
		return 2;
	}
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/scaleno-test-handler.XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return 2;
	/* Orphans of killed handlers come back to us, so the tests can see them die. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("handler", NULL, NULL);
	CU_add_test(s, "exec exit statuses", test_exec_verdicts);
	CU_add_test(s, "exec killed by a signal", test_exec_signal);
	CU_add_test(s, "exec environment and stdin", test_exec_env);
	CU_add_test(s, "no NOMAD_TOKEN in a handler's environment", test_env_no_nomad_token);
	CU_add_test(s, "exec no descriptor leak", test_exec_no_fd_leak);
	CU_add_test(s, "exec timeout kills the group", test_exec_timeout_kills_group);
	CU_add_test(s, "handler not found", test_exec_not_found);
	CU_add_test(s, "exec handler ignoring stdin", test_exec_ignores_stdin);
	CU_add_test(s, "worker with stdin and stdout closed", test_worker_std_fds_closed);
	CU_add_test(s, "no message content in argv", test_no_content_in_argv);
	CU_add_test(s, "pipe sequence and verdicts", test_pipe_sequence_and_verdicts);
	CU_add_test(s, "pipe bad replies", test_pipe_bad_replies);
	CU_add_test(s, "pipe restart after death", test_pipe_restart_after_death);
	CU_add_test(s, "pipe death past a child holding stdout", test_pipe_death_with_child_holding_stdout);
	CU_add_test(s, "pipe timeout then restart", test_pipe_timeout_then_restart);
	CU_add_test(s, "pipe handler_free is bounded", test_pipe_free_is_bounded);
	CU_add_test(s, "drain deadline", test_drain_deadline);
	CU_add_test(s, "huge messages", test_huge_messages);
	CU_add_test(s, "JSON of non-UTF-8 fields", test_json_non_utf8);
	CU_add_test(s, "JSON meta and clean fields", test_json_meta);
	CU_add_test(s, "batch: all ok, in order, early replies", test_batch_all_ok);
	CU_add_test(s, "batch: retry and fail mixed", test_batch_mixed_verdicts);
	CU_add_test(s, "batch: death or garbage at message k", test_batch_failure_at_k);
	CU_add_test(s, "batch: testhandler -k", test_batch_death_testhandler);
	CU_add_test(s, "batch: a message answered twice", test_batch_answered_twice);
	CU_add_test(s, "batch: answered twice, then dead", test_batch_twice_then_death);
	CU_add_test(s, "single message answered twice, late", test_single_answered_twice_late);
	CU_add_test(s, "batch: timeout at message k", test_batch_timeout_at_k);
	CU_add_test(s, "batch: drain deadline", test_batch_drain_deadline);
	CU_add_test(s, "batch: huge messages", test_batch_huge);
	CU_add_test(s, "batch: start failure, exec", test_batch_start_failure_and_exec);
	CU_add_test(s, "benchmark: per-message overhead", bench_overhead);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	fails = (int)CU_get_number_of_failures();
	CU_cleanup_registry();
	{
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "test_handler: could not remove %s\n", tmpdir);
	}
	return fails != 0;
}
