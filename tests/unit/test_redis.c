/*
 * The Redis layer against a real redis-server started on a free 127.0.0.1
 * port in a temporary folder (killed in cleanup): the connection module
 * (redis.c), the sampler and the agent's lease (redis_sample.c), fencing
 * (redis_stream.c, redis_part.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <hiredis/hiredis.h>

#include "config.h"
#include "redis_part.h"
#include "redis_sample.h"
#include "redis_stream.h"
#include "util.h"

/* struct redis_conf and queue_policy hold char *; tests point them at literals. */
#define MUT(s) ((char *)(uintptr_t)(s))

static char tmpdir[] = "/tmp/scaleno-redis.XXXXXX";
static int port;
static pid_t redis_pid = -1;
static redisContext *admin;
static struct redis_conf rconf;
static char address[64];

static int
free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), p = -1;

	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0
	    && getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		p = ntohs(sa.sin_port);
	close(fd);
	return p;
}

static void
redis_stop(void)
{
	if (admin != NULL) {
		redisFree(admin);
		admin = NULL;
	}
	if (redis_pid > 0) {
		kill(redis_pid, SIGKILL);
		waitpid(redis_pid, NULL, 0);
		redis_pid = -1;
	}
}

/* Start redis-server on port and wait (bounded) until it answers. 0 or -1. */
static int
redis_start(void)
{
	char portstr[16];
	struct timeval tv = { 1, 0 };

	snprintf(portstr, sizeof(portstr), "%d", port);
	redis_pid = fork();
	if (redis_pid < 0)
		return -1;
	if (redis_pid == 0) {
		/* Never outlive a test killed by its time limit. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execlp("redis-server", "redis-server", "--port", portstr, "--bind", "127.0.0.1",
		    "--save", "", "--appendonly", "no", "--dir", tmpdir, "--daemonize", "no",
		    "--logfile", "redis.log", "--unixsocket", "redis.sock", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 200; i++) {
		redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);

		if (c != NULL && c->err == 0) {
			redisReply *rep = redisCommand(c, "PING");
			bool up = rep != NULL && rep->type == REDIS_REPLY_STATUS;

			if (rep != NULL)
				freeReplyObject(rep);
			if (up) {
				redisSetTimeout(c, tv);
				admin = c;
				return 0;
			}
		}
		if (c != NULL)
			redisFree(c);
		usleep(20000);
	}
	return -1;
}

/* Run a command on the admin connection; returns the integer reply or 0. */
static long long
cmd(const char *fmt, ...)
{
	va_list ap;
	redisReply *rep;
	long long v = 0;

	va_start(ap, fmt);
	rep = redisvCommand(admin, fmt, ap);
	va_end(ap);
	CU_ASSERT_PTR_NOT_NULL_FATAL(rep);
	if (rep->type == REDIS_REPLY_ERROR)
		fprintf(stderr, "admin command %s: %s\n", fmt, rep->str);
	CU_ASSERT(rep->type != REDIS_REPLY_ERROR);
	if (rep->type == REDIS_REPLY_INTEGER)
		v = rep->integer;
	freeReplyObject(rep);
	return v;
}

static int
suite_init(void)
{
	if (mkdtemp(tmpdir) == NULL || (port = free_port()) < 0)
		return -1;
	snprintf(address, sizeof(address), "127.0.0.1:%d", port);
	rconf.address = address;
	rconf.username = MUT("");
	rconf.password = MUT("");
	rconf.connect_timeout_ms = 500;
	rconf.command_timeout_ms = 2000;
	return redis_start();
}

static int
suite_clean(void)
{
	char path[256];

	redis_stop();
	snprintf(path, sizeof(path), "%s/redis.log", tmpdir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/redis.sock", tmpdir);
	unlink(path);
	rmdir(tmpdir);
	return 0;
}

static struct queue_policy
policy(const char *name, int partitions)
{
	struct queue_policy q;

	memset(&q, 0, sizeof(q));
	q.name = MUT(name);
	q.stream = q.name;
	q.group = MUT("g");
	q.partitions = partitions;
	return q;
}

/* The null-lag fallback's cap for sample_one (0 = the default). */
static int64_t lag_cap;

/* Sample one queue; asserts the call itself succeeded. */
static struct raw_sample
sample_one(struct redis *r, const struct queue_policy *q)
{
	const struct queue_policy *qs[1] = { q };
	struct redis_sample_opts o = { .lag_cap = lag_cap };
	struct raw_sample s;
	char err[256];
	int trips;

	CU_ASSERT_EQUAL(redis_sample_ex(r, &o, qs, 1, 42.0, &s, &trips, err, sizeof(err)), 0);
	CU_ASSERT_DOUBLE_EQUAL(s.t, 42.0, 1e-9);
	return s;
}

static struct redis *
new_redis(void)
{
	struct redis *r = redis_new_conf(&rconf);

	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	return r;
}

static void
test_counts(void)
{
	struct redis *r = new_redis();
	struct queue_policy q = policy("counts", 1);
	struct raw_sample s;

	for (int i = 0; i < 10; i++)
		cmd("XADD counts * n %d", i);
	cmd("XGROUP CREATE counts g 0");
	cmd("XREADGROUP GROUP g c1 COUNT 4 STREAMS counts >");
	{
		redisReply *rep = redisCommand(admin, "XRANGE counts - + COUNT 2");

		CU_ASSERT_FATAL(rep != NULL && rep->elements == 2);
		cmd("XACK counts g %s %s", rep->element[0]->element[0]->str,
		    rep->element[1]->element[0]->str);
		freeReplyObject(rep);
	}
	s = sample_one(r, &q);
	CU_ASSERT(s.ok);
	CU_ASSERT_EQUAL(s.lag, 6);
	CU_ASSERT_FALSE(s.lag_estimated);
	CU_ASSERT_EQUAL(s.pending, 2);
	CU_ASSERT_EQUAL(s.lag + s.pending, 8);
	CU_ASSERT_EQUAL(s.entries_added, 10);
	CU_ASSERT_EQUAL(s.entries_read, 4);
	CU_ASSERT_EQUAL(s.length, 10);
	CU_ASSERT_FALSE(s.stream_missing);
	CU_ASSERT_FALSE(s.group_missing);
	CU_ASSERT_EQUAL(s.halted, 0);
	CU_ASSERT(s.oldest_age_ms >= 0);
	redis_free(r);
}

/* Ages come from server time and the ids' ms part. */
static void
test_oldest_age(void)
{
	struct redis *r = new_redis();
	struct queue_policy q = policy("aged", 1);
	struct raw_sample s;
	int64_t now = util_wall_ms();

	cmd("XADD aged %lld-0 n 1", (long long)(now - 5000));
	cmd("XADD aged %lld-0 n 2", (long long)(now - 3000));
	cmd("XGROUP CREATE aged g 0");
	s = sample_one(r, &q);	/* nothing delivered: the oldest undelivered counts */
	CU_ASSERT(s.oldest_age_ms >= 5000 && s.oldest_age_ms < 8000);
	cmd("XREADGROUP GROUP g c1 COUNT 1 STREAMS aged >");
	s = sample_one(r, &q);	/* first one pending, unacked: still ~5 s */
	CU_ASSERT(s.oldest_age_ms >= 5000 && s.oldest_age_ms < 8000);
	cmd("XACK aged g %lld-0", (long long)(now - 5000));
	s = sample_one(r, &q);	/* only the second, undelivered, waits */
	CU_ASSERT(s.oldest_age_ms >= 3000 && s.oldest_age_ms < 5000);
	cmd("XREADGROUP GROUP g c1 COUNT 1 STREAMS aged >");
	cmd("XACK aged g %lld-0", (long long)(now - 3000));
	s = sample_one(r, &q);
	CU_ASSERT_EQUAL(s.oldest_age_ms, 0);
	CU_ASSERT_EQUAL(s.lag, 0);
	redis_free(r);
}

static void
test_null_lag(void)
{
	struct redis *r = new_redis();
	struct queue_policy q = policy("nl1", 1);
	struct queue_policy q2 = policy("nl2", 1);
	struct queue_policy q3 = policy("nl3", 1);
	struct raw_sample s;

	/* XDEL after last-delivered-id: lag is null; exact count of 3 remains. */
	for (int i = 1; i <= 6; i++)
		cmd("XADD nl1 %d-0 n %d", i, i);
	cmd("XGROUP CREATE nl1 g 0");
	cmd("XREADGROUP GROUP g c COUNT 2 STREAMS nl1 >");
	cmd("XDEL nl1 4-0");
	s = sample_one(r, &q);
	CU_ASSERT(s.ok);
	CU_ASSERT_EQUAL(s.lag, 3);
	CU_ASSERT_FALSE(s.lag_estimated);
	CU_ASSERT_EQUAL(s.pending, 2);
	/* A cap below the count: figure capped, marked estimated, never 0. */
	lag_cap = 2;
	s = sample_one(r, &q);
	CU_ASSERT_EQUAL(s.lag, 2);
	CU_ASSERT_TRUE(s.lag_estimated);
	lag_cap = 0;

	/* Group created at an arbitrary id: entries 4..6 wait. */
	for (int i = 1; i <= 6; i++)
		cmd("XADD nl2 %d-0 n %d", i, i);
	cmd("XGROUP CREATE nl2 g 3-0");
	s = sample_one(r, &q2);
	CU_ASSERT_EQUAL(s.lag, 3);
	CU_ASSERT_EQUAL(s.entries_read, 3);	/* derived: entries-read is null */
	CU_ASSERT(s.oldest_age_ms > 0);

	/* Group behind the first entry with a tombstone: XLEN. */
	for (int i = 1; i <= 5; i++)
		cmd("XADD nl3 %d-0 n %d", i, i);
	cmd("XGROUP CREATE nl3 g 0");
	cmd("XDEL nl3 3-0");
	s = sample_one(r, &q3);
	CU_ASSERT_EQUAL(s.lag, 4);
	CU_ASSERT_FALSE(s.lag_estimated);
	redis_free(r);
}

static void
test_partitions(void)
{
	struct redis *r = new_redis();
	struct queue_policy q = policy("parts", 3);
	struct raw_sample s;
	int64_t now = util_wall_ms();

	for (int p = 0; p < 3; p++) {
		for (int i = 0; i <= p; i++)
			cmd("XADD parts:%d %lld-%d n 1", p, (long long)(now - 1000 * (p + 1)), i);
		cmd("XGROUP CREATE parts:%d g 0", p);
	}
	cmd("XREADGROUP GROUP g c COUNT 1 STREAMS parts:2 >");
	cmd("SET parts:1:halt x");
	s = sample_one(r, &q);
	CU_ASSERT(s.ok);
	CU_ASSERT_EQUAL(s.lag, 1 + 2 + 2);
	CU_ASSERT_EQUAL(s.pending, 1);
	CU_ASSERT_EQUAL(s.length, 6);
	CU_ASSERT_EQUAL(s.entries_added, 6);
	CU_ASSERT_EQUAL(s.entries_read, 1);
	CU_ASSERT_EQUAL(s.halted, 1);
	CU_ASSERT(s.oldest_age_ms >= 3000 && s.oldest_age_ms < 6000);	/* max over partitions */
	redis_free(r);
}

static void
test_missing(void)
{
	struct redis *r = new_redis();
	struct queue_policy q = policy("nosuch", 1);
	struct queue_policy q2 = policy("nogroup", 1);
	struct raw_sample s;

	s = sample_one(r, &q);
	CU_ASSERT(s.ok);
	CU_ASSERT_TRUE(s.stream_missing);
	CU_ASSERT_EQUAL(s.lag + s.pending + s.length, 0);
	/* No group yet (scale from zero): every entry is backlog, aged from the first id. */
	cmd("XADD nogroup 1000-0 a 1");
	cmd("XADD nogroup * a 2");
	s = sample_one(r, &q2);
	CU_ASSERT(s.ok);
	CU_ASSERT_FALSE(s.stream_missing);
	CU_ASSERT_TRUE(s.group_missing);
	CU_ASSERT_EQUAL(s.length, 2);
	CU_ASSERT_EQUAL(s.lag, 2);
	CU_ASSERT_EQUAL(s.pending, 0);
	CU_ASSERT_EQUAL(s.entries_read, 0);
	CU_ASSERT(s.oldest_age_ms > 1000000000000LL);
	redis_free(r);
}

static void
test_wrongtype(void)
{
	struct redis *r = new_redis();
	struct queue_policy good = policy("wt_good", 1), bad = policy("wt_bad", 1);
	const struct queue_policy *qs[3] = { &good, &bad, &good };
	struct raw_sample s[3];
	char *qerr[3];
	struct redis_sample_opts o = { .qerr = qerr };
	char err[256];

	cmd("XADD wt_good * a 1");
	cmd("XGROUP CREATE wt_good g 0");
	cmd("SET wt_bad hello");
	CU_ASSERT_EQUAL(redis_sample_ex(r, &o, qs, 3, 1.0, s, NULL, err, sizeof(err)), 0);
	CU_ASSERT(s[0].ok && s[2].ok);
	CU_ASSERT_EQUAL(s[0].lag, 1);
	CU_ASSERT_EQUAL(s[2].lag, 1);
	CU_ASSERT_FALSE(s[1].ok);
	CU_ASSERT_PTR_NULL(qerr[0]);
	CU_ASSERT_PTR_NOT_NULL_FATAL(qerr[1]);
	CU_ASSERT_PTR_NOT_NULL(strstr(qerr[1], "WRONGTYPE"));
	CU_ASSERT_PTR_NOT_NULL(strstr(qerr[1], "wt_bad"));
	redis_sample_errors_free(qerr, 3);
	redis_free(r);
}

static void
test_retry_dlq(void)
{
	struct redis *r = new_redis();
	struct queue_policy q = policy("stages", 1);
	int64_t delays[2] = { 10000, 60000 };
	struct raw_sample s;

	q.worker.retry_delays_ms = delays;
	q.worker.nretry_delays = 2;
	cmd("XADD stages * a 1");
	cmd("XGROUP CREATE stages g 0");
	cmd("XADD stages:retry:1 * a 1");
	cmd("XADD stages:retry:2 * a 1");
	cmd("XADD stages:retry:2 * a 1");
	cmd("XADD stages:retry:3 * a 1");	/* not a configured stage */
	for (int i = 0; i < 4; i++)
		cmd("XADD stages:dlq * a 1");
	s = sample_one(r, &q);
	CU_ASSERT(s.ok);
	CU_ASSERT_EQUAL(s.retry_length, 3);
	CU_ASSERT_EQUAL(s.dlq_length, 4);
	CU_ASSERT_EQUAL(s.lag, 1);
	CU_ASSERT_EQUAL(s.halted, 0);
	cmd("SET stages:halt x");
	s = sample_one(r, &q);
	CU_ASSERT_EQUAL(s.halted, 1);
	redis_free(r);
}

/* Total EVALSHA calls Redis has run, from INFO commandstats. */
static long long
evalsha_calls(void)
{
	redisReply *rep = redisCommand(admin, "INFO commandstats");
	long long calls = 0;
	const char *p;

	CU_ASSERT_FATAL(rep != NULL && rep->type == REDIS_REPLY_STRING);
	p = strstr(rep->str, "cmdstat_evalsha:calls=");
	if (p != NULL)
		calls = strtoll(p + strlen("cmdstat_evalsha:calls="), NULL, 10);
	freeReplyObject(rep);
	return calls;
}

static void
test_one_round_trip(void)
{
	enum { N = 50 };
	struct redis *r = new_redis();
	struct queue_policy q[N];
	const struct queue_policy *qs[N];
	char names[N][16];
	struct raw_sample s[N];
	char err[256];
	int trips = -1;
	long long before;

	for (int i = 0; i < N; i++) {
		snprintf(names[i], sizeof(names[i]), "many%d", i);
		q[i] = policy(names[i], 1);
		qs[i] = &q[i];
		for (int k = 0; k <= i % 5; k++)
			cmd("XADD %s * a 1", names[i]);
		cmd("XGROUP CREATE %s g 0", names[i]);
	}
	CU_ASSERT_EQUAL(redis_sample(r, qs, N, 1.0, s, &trips, err, sizeof(err)), 0);
	CU_ASSERT(trips >= 1 && trips <= 2);	/* the first may load the script */
	before = evalsha_calls();
	CU_ASSERT_EQUAL(redis_sample(r, qs, N, 2.0, s, &trips, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(trips, 1);
	CU_ASSERT_EQUAL(evalsha_calls() - before, N);
	for (int i = 0; i < N; i++) {
		CU_ASSERT(s[i].ok);
		CU_ASSERT_EQUAL(s[i].lag, i % 5 + 1);
	}
	redis_free(r);
}

static void
test_noscript(void)
{
	struct redis *r = new_redis();
	struct queue_policy q = policy("ns", 1);
	const struct queue_policy *qs[1] = { &q };
	struct raw_sample s;
	char err[256];
	int trips;

	cmd("XADD ns * a 1");
	cmd("XGROUP CREATE ns g 0");
	CU_ASSERT_EQUAL(redis_sample(r, qs, 1, 1.0, &s, &trips, err, sizeof(err)), 0);
	cmd("SCRIPT FLUSH");
	CU_ASSERT_EQUAL(redis_sample(r, qs, 1, 2.0, &s, &trips, err, sizeof(err)), 0);
	CU_ASSERT(s.ok);
	CU_ASSERT_EQUAL(s.lag, 1);
	CU_ASSERT_EQUAL(trips, 3);	/* NOSCRIPT, SCRIPT LOAD, resend */
	redis_free(r);
}

static void
test_lease(void)
{
	struct redis *a = new_redis(), *b = new_redis();
	long long ttl;

	CU_ASSERT_EQUAL(redis_agent_lease(a, "lease", "agent-a", 5000), 1);
	CU_ASSERT_EQUAL(redis_agent_lease(b, "lease", "agent-b", 5000), 0);
	cmd("PEXPIRE lease 100");
	CU_ASSERT_EQUAL(redis_agent_lease(a, "lease", "agent-a", 5000), 1);	/* renewal */
	ttl = cmd("PTTL lease");
	CU_ASSERT(ttl > 1000 && ttl <= 5000);
	cmd("DEL lease");	/* as if it expired */
	CU_ASSERT_EQUAL(redis_agent_lease(b, "lease", "agent-b", 5000), 1);
	CU_ASSERT_EQUAL(redis_agent_lease(a, "lease", "agent-a", 5000), 0);	/* lost */
	cmd("SET lease_str x");
	cmd("LPUSH lease_list x");
	CU_ASSERT_EQUAL(redis_agent_lease(a, "lease_list", "agent-a", 5000), -1);
	CU_ASSERT_EQUAL(redis_agent_lease(a, "lease", "agent-a", 0), -1);
	redis_free(a);
	redis_free(b);
}

/* A hung Redis (SIGSTOP): the sample gives up after command_timeout, never hangs. */
static void
test_redis_hung(void)
{
	struct redis_conf c = rconf;
	struct redis *r;
	struct queue_policy q = policy("hung", 1);
	const struct queue_policy *qs[1] = { &q };
	struct raw_sample s;
	char err[256];
	int64_t t0;

	c.command_timeout_ms = 300;
	c.connect_timeout_ms = 300;
	r = redis_new_conf(&c);
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	CU_ASSERT_EQUAL(redis_sample(r, qs, 1, 1.0, &s, NULL, err, sizeof(err)), 0);
	CU_ASSERT_TRUE(s.stream_missing);
	kill(redis_pid, SIGSTOP);
	t0 = util_now_ms();
	CU_ASSERT_EQUAL(redis_sample(r, qs, 1, 2.0, &s, NULL, err, sizeof(err)), -1);
	CU_ASSERT_FALSE(s.ok);
	CU_ASSERT(util_now_ms() - t0 < 3000);	/* bounded by the timeout, not by Redis */
	/* Reconnecting (the kernel still accepts) and sampling again: bounded too. */
	t0 = util_now_ms();
	CU_ASSERT_EQUAL(redis_sample(r, qs, 1, 3.0, &s, NULL, err, sizeof(err)), -1);
	CU_ASSERT_FALSE(s.ok);
	CU_ASSERT(util_now_ms() - t0 < 3000);
	redis_free(r);
	/* The handshake (AUTH) is bounded by connect_timeout as a whole. */
	c.password = MUT("pw");
	r = redis_new_conf(&c);
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	t0 = util_now_ms();
	CU_ASSERT_EQUAL(redis_ensure(r, err, sizeof(err)), -1);
	CU_ASSERT(util_now_ms() - t0 < 3000);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "AUTH"));
	redis_free(r);
	kill(redis_pid, SIGCONT);
}

/*
 * A fake server that answers each read of one connection with the next
 * canned reply: absurd replies must fail the queue (or the call), not crash.
 */
static pid_t
fake_server(int *fport, const char *const *replies, int n)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	pid_t pid;

	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0
	    || getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		return -1;
	*fport = ntohs(sa.sin_port);
	pid = fork();
	if (pid == 0) {
		int c;
		char buf[65536];

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		alarm(10);
		c = accept(fd, NULL, NULL);
		for (int i = 0; c >= 0 && i < n; i++)
			if (read(c, buf, sizeof(buf)) <= 0
			    || write(c, replies[i], strlen(replies[i])) < 0)
				break;
		_exit(0);
	}
	close(fd);
	return pid;
}

static void
test_absurd_replies(void)
{
	static const char *const replies[] = {
		"$40\r\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",	/* SCRIPT LOAD */
		/* TIME, then an integer, 16 strings, an array of 3, a plain error */
		"*2\r\n$10\r\n1700000000\r\n$1\r\n0\r\n:5\r\n"
		"*16\r\n$1\r\nx\r\n$1\r\nx\r\n$1\r\nx\r\n$1\r\nx\r\n$1\r\nx\r\n$1\r\nx\r\n"
		"$1\r\nx\r\n$1\r\nx\r\n$1\r\nx\r\n$1\r\nx\r\n$1\r\nx\r\n$1\r\nx\r\n"
		"$1\r\nx\r\n$1\r\nx\r\n$1\r\nx\r\n$1\r\nx\r\n"
		"*3\r\n:1\r\n:1\r\n:1\r\n-ERR boom\r\n",
		/* a TIME that is not one: the whole call fails */
		"+OK\r\n:1\r\n:1\r\n:1\r\n:1\r\n",
		/* garbage that is not RESP: a protocol error, the connection is dropped */
		"?what\r\n",
	};
	struct redis_conf c = rconf;
	struct queue_policy q = policy("absurd", 1);
	const struct queue_policy *qs[4] = { &q, &q, &q, &q };
	struct raw_sample s[4];
	char *qerr[4];
	struct redis_sample_opts o = { .qerr = qerr };
	char addr[64], err[256];
	struct redis *r;
	int fport = 0;
	pid_t pid = fake_server(&fport, replies, (int)ARRAY_LEN(replies));

	CU_ASSERT_FATAL(pid > 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", fport);
	c.address = addr;
	r = redis_new_conf(&c);
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	CU_ASSERT_EQUAL(redis_sample_ex(r, &o, qs, 4, 1.0, s, NULL, err, sizeof(err)), 0);
	for (int i = 0; i < 4; i++) {
		CU_ASSERT_FALSE(s[i].ok);
		CU_ASSERT_PTR_NOT_NULL(qerr[i]);
	}
	CU_ASSERT_PTR_NOT_NULL(strstr(qerr[0], "unexpected reply"));
	CU_ASSERT_PTR_NOT_NULL(strstr(qerr[3], "boom"));
	redis_sample_errors_free(qerr, 4);
	CU_ASSERT_EQUAL(redis_sample(r, qs, 4, 2.0, s, NULL, err, sizeof(err)), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "TIME"));
	CU_ASSERT_FALSE(s[0].ok);
	CU_ASSERT_EQUAL(redis_sample(r, qs, 1, 3.0, s, NULL, err, sizeof(err)), -1);
	CU_ASSERT_FALSE(redis_connected(r));
	redis_free(r);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* Redis dies: the call fails at once; reconnects back off; restart works again. */
static void
test_redis_down(void)
{
	struct redis *r = new_redis();
	struct queue_policy q = policy("down", 1);
	const struct queue_policy *qs[1] = { &q };
	struct raw_sample s;
	char err[256];
	int64_t t0;
	int rc = -1, trips = 0;

	cmd("XADD down * a 1");
	cmd("XGROUP CREATE down g 0");
	CU_ASSERT_EQUAL(redis_sample(r, qs, 1, 1.0, &s, NULL, err, sizeof(err)), 0);
	CU_ASSERT(redis_connected(r));
	redis_stop();

	t0 = util_now_ms();
	CU_ASSERT_EQUAL(redis_sample(r, qs, 1, 2.0, &s, NULL, err, sizeof(err)), -1);
	CU_ASSERT_FALSE(s.ok);
	CU_ASSERT_FALSE(redis_connected(r));
	/* Sample, then the reconnect it tries: both bounded by the timeouts. */
	CU_ASSERT(util_now_ms() - t0 < rconf.command_timeout_ms + rconf.connect_timeout_ms + 1000);
	/* Immediate retries are refused during the backoff without touching the network. */
	for (int i = 0; i < 3; i++)
		rc = redis_ensure(r, err, sizeof(err));
	CU_ASSERT_EQUAL(rc, -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "next attempt in"));
	CU_ASSERT_EQUAL(redis_agent_lease(r, "lease", "x", 1000), -1);

	CU_ASSERT_FATAL(redis_start() == 0);
	for (int i = 0; i < 200 && rc != 0; i++) {
		rc = redis_ensure(r, err, sizeof(err));
		if (rc != 0)
			usleep(50000);
	}
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	cmd("XADD down * a 1");
	cmd("XADD down * a 1");
	cmd("XGROUP CREATE down g 0");
	CU_ASSERT_EQUAL(redis_sample(r, qs, 1, 3.0, &s, &trips, err, sizeof(err)), 0);
	CU_ASSERT(s.ok);
	CU_ASSERT_EQUAL(s.lag, 2);
	CU_ASSERT_EQUAL(trips, 3);	/* the new server had no script: NOSCRIPT path */
	redis_free(r);
}

/* The connection module itself: errors kept in the handle, commands, the script registry. */
static void
test_connection_module(void)
{
	struct redis_conf c = rconf;
	struct redis_args a = REDIS_ARGS_INIT;
	struct redis_reply *rep;
	struct redis *r;
	const char *key = "cm_lease";
	char err[256] = "";
	int64_t v = 0;

	r = new_redis();
	CU_ASSERT_STRING_EQUAL(redis_errstr(r), "");
	redis_args_str(&a, "SET");
	redis_args_key(&a, "cm_k");
	redis_args_str(&a, "v");
	CU_ASSERT_EQUAL(a.key, 1);	/* the send path knows the key it touches */
	rep = redis_run(r, &a, true, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(rep);
	CU_ASSERT(redis_reply_is_str(rep) && strcmp(rep->str, "OK") == 0);
	redis_reply_free(rep);
	CU_ASSERT(redis_connected(r));
	CU_ASSERT_EQUAL(redis_err(r), 0);
	/* An error reply is a failure only when asked. */
	redis_args_str(&a, "INCR");
	redis_args_key(&a, "cm_k");
	CU_ASSERT_PTR_NULL(redis_run(r, &a, true, err, sizeof(err)));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "not an integer"));
	/* A vector that ran out of memory is never sent. */
	a.oom = true;
	redis_args_str(&a, "PING");
	CU_ASSERT_PTR_NULL(redis_run(r, &a, false, err, sizeof(err)));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "out of memory"));
	/* A script by name, again after SCRIPT FLUSH (NOSCRIPT, reloaded). */
	for (int i = 0; i < 2; i++) {
		redis_args_str(&a, "me");
		redis_args_str(&a, "5000");
		rep = redis_run_script(r, "agent_lease", &key, 1, &a, NULL, err, sizeof(err));
		CU_ASSERT_EQUAL(redis_int_reply(rep, "agent_lease", &v, err, sizeof(err)), 0);
		CU_ASSERT_EQUAL(v, 1);
		cmd("SCRIPT FLUSH");
	}
	CU_ASSERT_PTR_NULL(redis_eval(r, "nope", NULL, 0, NULL, NULL, err, sizeof(err)));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "no script named nope"));
	redis_free(r);
	/* A connection failure is kept in the handle. */
	c.address = MUT("127.0.0.1:1");
	r = redis_new_conf(&c);
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	CU_ASSERT_EQUAL(redis_ensure(r, err, sizeof(err)), -1);
	CU_ASSERT_EQUAL(redis_err(r), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(redis_errstr(r), "127.0.0.1:1"));
	CU_ASSERT_FALSE(redis_connected(r));
	redis_free(r);
	CU_ASSERT_PTR_NOT_NULL(strstr(redis_version_string(), "hiredis "));
}

/* A partition lease fences acks, moves and halt records: REDIS_FENCED, never -1. */
static void
test_fenced(void)
{
	struct redis *r = new_redis();
	struct redis_fields f = { 0 };
	const char *id = "1-1";
	char tok[320], err[256];
	bool halted = true;

	CU_ASSERT_EQUAL(redis_group_create(r, "fq", "g", err, sizeof(err)), 0);
	cmd("XADD fq 1-1 a 1");
	CU_ASSERT_EQUAL(redis_part_acquire(r, "fq:lease", "fq:lease:epoch", "fq:halt", "c1", 5000,
	    tok, sizeof(tok), &halted, err, sizeof(err)), REDIS_DONE);
	CU_ASSERT_FALSE(halted);
	CU_ASSERT_PTR_NOT_NULL(strstr(tok, "c1#"));
	CU_ASSERT_EQUAL(redis_part_acquire(r, "fq:lease", "fq:lease:epoch", "fq:halt", "c2", 5000,
	    tok, sizeof(tok), NULL, err, sizeof(err)), REDIS_NONE);
	CU_ASSERT_EQUAL(redis_stream_ack(r, "fq", "g", &id, 1, "fq:lease", "c2#99", err,
	    sizeof(err)), REDIS_FENCED);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "FENCED"));
	CU_ASSERT_EQUAL(redis_fields_addf(&f, "a", "%d", 1), 0);
	CU_ASSERT_EQUAL(redis_stream_move(r, "fq", "fq:dlq", "g", id, false, "fq:lease", "c2#99",
	    &f, NULL, err, sizeof(err)), REDIS_FENCED);
	CU_ASSERT_EQUAL(redis_halt_set(r, "fq:halt", "fq:lease", "c2#99", &f, err, sizeof(err)),
	    REDIS_FENCED);
	redis_fields_free(&f);
	redis_free(r);
}

static void
test_bad_address(void)
{
	struct redis_conf c = rconf;
	struct redis *r;
	char err[256];

	c.address = MUT("no-port-here");
	r = redis_new_conf(&c);
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	CU_ASSERT_EQUAL(redis_ensure(r, err, sizeof(err)), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "no-port-here"));
	redis_free(r);
	c.address = MUT("unix:/nonexistent/redis.sock");
	c.password = MUT("s3cret-value");
	r = redis_new_conf(&c);
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	CU_ASSERT_EQUAL(redis_ensure(r, err, sizeof(err)), -1);
	CU_ASSERT_PTR_NULL(strstr(err, "s3cret"));
	redis_free(r);
}

static void
test_auth_select(void)
{
	struct redis_conf c = rconf;
	struct redis *r;
	struct queue_policy q = policy("indb3", 1);
	struct raw_sample s;
	char err[256];

	cmd("ACL SETUSER scal on >pw-123 ~* &* +@all");
	c.username = MUT("scal");
	c.password = MUT("wrong-pw");
	r = redis_new_conf(&c);
	CU_ASSERT_EQUAL(redis_ensure(r, err, sizeof(err)), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "AUTH"));
	CU_ASSERT_PTR_NULL(strstr(err, "wrong-pw"));
	redis_free(r);

	c.password = MUT("pw-123");
	c.database = 3;
	cmd("SELECT 3");
	cmd("XADD indb3 * a 1");
	cmd("XGROUP CREATE indb3 g 0");
	cmd("SELECT 0");
	r = redis_new_conf(&c);
	s = sample_one(r, &q);
	CU_ASSERT(s.ok);
	CU_ASSERT_FALSE(s.stream_missing);
	CU_ASSERT_EQUAL(s.lag, 1);
	redis_free(r);
	cmd("ACL DELUSER scal");
}

static void
test_unix_socket(void)
{
	struct redis_conf c = rconf;
	struct redis *r;
	struct queue_policy q = policy("viaunix", 1);
	struct raw_sample s;
	char addr[128];

	snprintf(addr, sizeof(addr), "unix:%s/redis.sock", tmpdir);
	c.address = addr;
	cmd("XADD viaunix * a 1");
	cmd("XGROUP CREATE viaunix g $");
	r = redis_new_conf(&c);
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	s = sample_one(r, &q);
	CU_ASSERT(s.ok);
	CU_ASSERT_EQUAL(s.length, 1);
	CU_ASSERT_EQUAL(s.lag, 0);
	CU_ASSERT(redis_connected(r));
	redis_free(r);
}

int
main(void)
{
	CU_pSuite s;
	unsigned fails;

	signal(SIGPIPE, SIG_IGN);
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite("redis", suite_init, suite_clean);
	if (s == NULL
	    || !CU_add_test(s, "counts", test_counts)
	    || !CU_add_test(s, "oldest age", test_oldest_age)
	    || !CU_add_test(s, "null lag", test_null_lag)
	    || !CU_add_test(s, "partitions", test_partitions)
	    || !CU_add_test(s, "missing", test_missing)
	    || !CU_add_test(s, "wrongtype", test_wrongtype)
	    || !CU_add_test(s, "retry and dlq", test_retry_dlq)
	    || !CU_add_test(s, "one round trip", test_one_round_trip)
	    || !CU_add_test(s, "noscript", test_noscript)
	    || !CU_add_test(s, "lease", test_lease)
	    || !CU_add_test(s, "bad address", test_bad_address)
	    || !CU_add_test(s, "auth and select", test_auth_select)
	    || !CU_add_test(s, "unix socket", test_unix_socket)
	    || !CU_add_test(s, "absurd replies", test_absurd_replies)
	    || !CU_add_test(s, "redis hung", test_redis_hung)
	    || !CU_add_test(s, "redis down", test_redis_down)
	    || !CU_add_test(s, "the connection module", test_connection_module)
	    || !CU_add_test(s, "fenced calls", test_fenced)) {
		CU_cleanup_registry();
		return 1;
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	fails = CU_get_number_of_failures() + CU_get_number_of_suites_failed();
	CU_cleanup_registry();
	return fails != 0;
}
