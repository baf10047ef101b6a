/*
 * alert.c — alert delivery (scaleno.conf(5) "alert", scaleno(8) and
 * scaleno-worker(8) ALERTS).
 *
 * alert.command: the command is started from a short-lived intermediate
 * process that exits at once (the caller only waits for that fork), so the
 * command's monitor is re-parented to the worker supervisor (a subreaper)
 * or init, which reap it. The monitor feeds the JSON on stdin, and kills
 * the command's process group after ALERT_CMD_LIMIT_MS.
 *
 * alert.webhook: an HTTP POST (httpc) with a short timeout, made by the caller;
 * after a failure the webhook is paused for a while, so a dead endpoint
 * costs one timeout per pause and not one per alert.
 *
 * The rate limit is a small table per process; consumer processes of one
 * worker do not share it, so with N consumers an alert about the same
 * subject can be sent up to N times per interval (best effort).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "alert.h"
#include "httpc.h"
#include "log.h"
#include "spawn.h"
#include "util.h"

#define ALERT_CMD_LIMIT_MS 10000	/* an alert command runs at most this long ... */
#define ALERT_CMD_TICK_MS 20		/* ... checked this often */
#define ALERT_HTTP_TIMEOUT_MS 2000	/* whole webhook POST */
#define ALERT_HTTP_CONNECT_MS 1000
#define ALERT_SLOTS 64			/* remembered (queue, kind, subject) keys */
#define ALERT_HOOK_PAUSE_MS 30000	/* after a slow failed POST, skip the webhook this long */
#define ALERT_HOOK_SLOW_MS 500		/* a failure that took this long is "slow" */

struct alert_slot {
	char key[192];
	int64_t last_ms;	/* monotonic time it was last sent; 0 = free */
};

static struct alert_slot slots[ALERT_SLOTS];
/*
 * A webhook that times out would cost every alert the full timeout (and
 * dead-letter alerts have a subject per message): after a slow failure,
 * POSTs pause for ALERT_HOOK_PAUSE_MS. Fast failures (refused, HTTP 5xx)
 * cost nothing and do not pause. One pause for all URLs, per process.
 */
static int64_t hook_paused_until;

static const char *const kind_names[] = {
	[ALERT_DEAD_LETTERED] = "dead_lettered",
	[ALERT_PARTITION_HALTED] = "halted",
	[ALERT_CRASH_LOOP] = "crash_loop",
	[ALERT_AT_MAX_OVER_AGE] = "at_max_over_age",
	[ALERT_NOMAD_UNREACHABLE] = "nomad_unreachable",
	[ALERT_REDIS_UNREACHABLE] = "redis_unreachable",
	[ALERT_NOMAD_BLOCKED] = "nomad_blocked",
	[ALERT_NOMAD_CONFIG] = "nomad_config",
	[ALERT_RESUMED] = "resumed",
};

const char *
alert_kind_name(enum alert_kind k)
{
	if ((unsigned)k >= ARRAY_LEN(kind_names) || kind_names[k] == NULL)
		return "unknown";
	return kind_names[k];
}

/*
 * 1 when (queue, kind, subject) may be sent now (and records it), 0 when
 * it was sent less than min_interval ago. The oldest slot is reused.
 */
static int
alert_admit(const char *queue, enum alert_kind kind, const char *subject, int64_t min_interval)
{
	char key[sizeof(slots[0].key)];
	int64_t now = util_now_ms();
	struct alert_slot *victim = &slots[0];

	snprintf(key, sizeof(key), "%s\n%d\n%s", queue, (int)kind, subject);
	for (size_t i = 0; i < ALERT_SLOTS; i++) {
		struct alert_slot *s = &slots[i];

		if (s->last_ms != 0 && strcmp(s->key, key) == 0) {
			if (min_interval > 0 && now - s->last_ms < min_interval)
				return 0;
			s->last_ms = now;
			return 1;
		}
		if (s->last_ms < victim->last_ms)
			victim = s;
	}
	util_strlcpy(victim->key, key, sizeof(victim->key));
	victim->last_ms = now;
	return 1;
}

static char *
alert_json(const char *queue, enum alert_kind kind, const char *subject, const char *text)
{
	char host[256] = "", when[32];
	time_t t = time(NULL);
	struct tm tm;
	cJSON *o = cJSON_CreateObject();
	char *out = NULL;

	if (o == NULL)
		return NULL;
	if (gethostname(host, sizeof(host) - 1) == -1)
		util_strlcpy(host, "unknown", sizeof(host));
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (cJSON_AddStringToObject(o, "kind", alert_kind_name(kind)) != NULL &&
	    cJSON_AddStringToObject(o, "queue", queue != NULL ? queue : "") != NULL &&
	    cJSON_AddStringToObject(o, "subject", subject != NULL ? subject : "") != NULL &&
	    cJSON_AddStringToObject(o, "text", text != NULL ? text : "") != NULL &&
	    cJSON_AddStringToObject(o, "time", when) != NULL &&
	    cJSON_AddStringToObject(o, "host", host) != NULL)
		out = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return out;
}

/* The monitor process: runs argv with json on stdin, bounded in time. Never returns. */
static void __attribute__((noreturn))
alert_monitor(char *const *argv, const char *json, size_t len)
{
	struct spawn_opts o = { .argv = argv, .stdout_fd = -1, .new_group = true };
	struct timespec tick = { 0, ALERT_CMD_TICK_MS * 1000000L };
	int in[2], st;
	bool exec_failed;
	size_t off = 0;
	pid_t pid;

	/*
	 * Keep nothing of the caller's (Redis connections, the supervisor's
	 * listening socket) open for the command's lifetime. Only
	 * async-signal-safe calls from here on: the caller may have threads.
	 */
	close_range(3, ~0U, 0);
	if (pipe(in) == -1)
		_exit(2);
	o.stdin_fd = in[0];
	if ((pid = spawn_exec(&o, &exec_failed)) == -1)
		_exit(exec_failed ? SPAWN_EXIT_SETUP : 2);
	close(in[0]);
	signal(SIGPIPE, SIG_IGN);
	while (off < len) {
		ssize_t n = write(in[1], json + off, len - off);

		if (n <= 0 && errno != EINTR)
			break;
		if (n > 0)
			off += (size_t)n;
	}
	close(in[1]);
	for (int i = 0; i < ALERT_CMD_LIMIT_MS / ALERT_CMD_TICK_MS; i++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			_exit(0);
		nanosleep(&tick, NULL);
	}
	kill(-pid, SIGKILL);
	waitpid(pid, &st, 0);
	_exit(1);
}

/* Start the command detached. 0, or -1 when it could not even be forked. */
static int
alert_run_command(char *const *argv, const char *json)
{
	size_t len = strlen(json);
	int st;
	pid_t pid;

	pid = fork();
	if (pid == -1) {
		log_warn("alert: cannot fork for alert.command");
		return -1;
	}
	if (pid == 0) {
		pid_t m = fork();

		if (m == 0)
			alert_monitor(argv, json, len);
		_exit(m == -1 ? 2 : 0);
	}
	while (waitpid(pid, &st, 0) == -1 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		log_warnx("alert: cannot start alert.command");
		return -1;
	}
	return 0;
}

static int
alert_post(const char *url, const char *json)
{
	struct httpc_request r = { .url = url, .body = json, .content_type = "application/json",
	    .timeout_ms = ALERT_HTTP_TIMEOUT_MS, .connect_timeout_ms = ALERT_HTTP_CONNECT_MS };
	char err[256];
	long code = 0;
	int ret = -1;
	int64_t t0 = util_now_ms();

	if (hook_paused_until != 0 && util_now_ms() < hook_paused_until) {
		log_warnx("alert: webhook skipped: it timed out less than %d s ago",
		    ALERT_HOOK_PAUSE_MS / 1000);
		return -1;
	}
	if (httpc_request(&r, &code, NULL, err, sizeof(err)) == -1)
		log_warnx("alert: webhook POST failed: %s", err);
	else if (code < 200 || code > 299)
		log_warnx("alert: webhook answered HTTP %ld", code);
	else
		ret = 0;
	if (ret == 0)
		hook_paused_until = 0;
	else if (util_now_ms() - t0 >= ALERT_HOOK_SLOW_MS)
		hook_paused_until = util_now_ms() + ALERT_HOOK_PAUSE_MS;
	return ret;
}

int
alert_fire(const struct alert_conf *ac, const char *queue, enum alert_kind kind,
    const char *subject, const char *text)
{
	int has_cmd, has_hook, ret = 1;
	char *json;

	if (ac == NULL)
		return 0;
	has_cmd = ac->command != NULL && ac->command[0] != NULL;
	has_hook = ac->webhook != NULL && ac->webhook[0] != '\0';
	if (!has_cmd && !has_hook)
		return 0;
	if (queue == NULL)
		queue = "";
	if (subject == NULL)
		subject = "";
	if (!alert_admit(queue, kind, subject, ac->min_interval_ms)) {
		log_debug("alert %s for %s %s suppressed by alert.min_interval",
		    alert_kind_name(kind), queue, subject);
		return 0;
	}
	json = alert_json(queue, kind, subject, text);
	if (json == NULL) {
		log_warnx("alert: out of memory");
		return -1;
	}
	log_info("alert %s: queue %s, %s: %s", alert_kind_name(kind), queue, subject,
	    text != NULL ? text : "");
	if (has_cmd && alert_run_command(ac->command, json) == -1)
		ret = -1;
	if (has_hook && alert_post(ac->webhook, json) == -1)
		ret = -1;
	free(json);
	return ret;
}
