/*
 * cmd_check.c — `scaleno check [-c FILE] [-q] [-k] [--online]`: validate the
 * main file and every policy, print every problem as "file:line: message";
 * with --online also ask Redis and Nomad whether each queue would work
 * (scaleno(8), "check").
 */
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check_warn.h"
#include "cli.h"
#include "config.h"
#include "log.h"
#include "nomad.h"
#include "redis.h"
#include "redis_sample.h"

#define CHECK_ONLINE	(CLI_LONG + 0)
#define PROBE_MESSAGE	"scaleno check --online: permission probe (no count change)"

static void
usage(FILE *f)
{
	fprintf(f, "usage: scaleno check [-c FILE] [-q] [-k] [--online]\n"
	    "  -c FILE   main configuration file (default: $SCALENO_CONFIG or %s)\n"
	    "  -q        print only errors, no per-queue summary\n"
	    "  -k        list every configuration key with its type and default\n"
	    "  --online  also ask Redis and Nomad whether every queue would work\n",
	    SCALENO_SYSCONFDIR "/scaleno/scaleno.conf");
}

static void
list_keys(void)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct cfg_key *k = &config_keys[i];

		printf("%s%s\t%s\t%s\t%s\n", k->scope == CFG_POLICY ? "queue." : "", k->path,
		    config_type_name(k->type), k->def != NULL ? k->def : "-", k->doc);
	}
}

static void
print_queue(const struct queue_policy *q)
{
	static const char *const loss[] = { "loss acceptable", "loss critical" };
	static const char *const order[] = { "order irrelevant", "order critical" };

	printf("%s: mode %d %s (%s, %s), stream %s group %s partitions %d, ", q->name, (int)q->mode,
	    config_mode_name(q->mode), loss[q->loss_critical], order[q->order_critical], q->stream, q->group,
	    q->partitions);
	if (q->scale.target == SCALE_TARGET_NOMAD)
		printf("nomad job %s group %s", q->scale.job, q->scale.group);
	else
		printf("observe only");
	printf(" [%d..%d], ", q->scale.min, q->scale.max);
	if (q->worker.command != NULL)
		printf("handler %s %s (%d processes)\n", q->worker.protocol == PROTO_EXEC ? "exec" : "pipe",
		    q->worker.command[0], q->worker.processes);
	else
		printf("no worker section\n");
}

/* One queue's online findings: printed as "queue Q: ok|warning|error: ...". */
static int
finding(const struct queue_policy *q, bool error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int
finding(const struct queue_policy *q, bool error, const char *fmt, ...)
{
	va_list ap;

	fprintf(error ? stderr : stdout, "%s:%d: %s: queue %s: ", q->file, q->line,
	    error ? "error" : "warning", q->name);
	va_start(ap, fmt);
	vfprintf(error ? stderr : stdout, fmt, ap);
	va_end(ap);
	fputc('\n', error ? stderr : stdout);
	return error ? 1 : 0;
}

/* Redis: reachable, and each queue's stream and group exist or will be created. */
static int
online_redis(const struct config *cfg, bool quiet)
{
	const struct queue_policy **qv = calloc(cfg->nqueues + 1, sizeof(*qv));
	struct raw_sample *raw = calloc(cfg->nqueues + 1, sizeof(*raw));
	struct redis *rq = redis_new_conf(&cfg->redis);
	char err[256] = "out of memory";
	int bad = 0;

	for (size_t i = 0; qv != NULL && i < cfg->nqueues; i++)
		qv[i] = &cfg->queues[i];
	if (qv == NULL || raw == NULL || rq == NULL || redis_ensure(rq, err, sizeof(err)) < 0 ||
	    redis_sample(rq, qv, (int)cfg->nqueues, 0, raw, NULL, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: error: redis %s: %s\n", cfg->path, cfg->redis.address, err);
		bad = 1;
	}
	for (size_t i = 0; !bad && i < cfg->nqueues; i++) {
		const struct queue_policy *q = &cfg->queues[i];

		if (!raw[i].ok)
			bad |= finding(q, true, "stream %s cannot be read (wrong key type?)", q->stream);
		else if ((raw[i].stream_missing || raw[i].group_missing) && !quiet)
			finding(q, false, "%s %s does not exist yet (the worker creates it)",
			    raw[i].stream_missing ? "stream" : "group",
			    raw[i].stream_missing ? q->stream : q->group);
	}
	redis_free(rq);
	free(qv);
	free(raw);
	return bad;
}

/* The Nomad calls of one queue. */
enum { ON_STATUS, ON_JOB, ON_PROBE, ON_CALLS };

/* Nomad: the job and group exist, their bounds fit, the token may read, list and scale them. */
static int
online_nomad(const struct config *cfg, bool quiet)
{
	struct nomad_call *calls = calloc(cfg->nqueues * ON_CALLS + 1, sizeof(*calls));
	struct nomad_call list;
	struct nomad_client *nc;
	char err[256];
	int bad = 0;

	if (calls == NULL || (nc = nomad_client_new(&cfg->nomad, err, sizeof(err))) == NULL) {
		fprintf(stderr, "%s: error: nomad: %s\n", cfg->path, calls == NULL ? "out of memory" : err);
		free(calls);
		return 1;
	}
	for (size_t i = 0; i < cfg->nqueues; i++) {
		const struct scale_conf *sc = &cfg->queues[i].scale;
		struct nomad_call *c = &calls[i * ON_CALLS];

		nomad_call_init(&c[ON_STATUS], NOMAD_CALL_STATUS, sc);
		nomad_call_init(&c[ON_JOB], NOMAD_CALL_JOB, sc);
		/* First the reads; the scale probe only for a job that exists and may take one. */
		if (sc->target == SCALE_TARGET_NOMAD)
			nomad_perform(nc, &c[ON_STATUS], 2);
	}
	/* May the token list jobs (the agent's one request per tick)? */
	memset(&list, 0, sizeof(list));
	list.kind = NOMAD_CALL_JOBS;
	nomad_perform(nc, &list, 1);
	if (list.result == NOMAD_FORBIDDEN && !quiet)
		printf("%s: warning: nomad: the token may not list jobs (list-jobs): the agent reads every "
		    "group's scale status each tick\n", cfg->path);
	else if (list.result != NOMAD_OK && list.result != NOMAD_FORBIDDEN)
		bad |= fprintf(stderr, "%s: error: nomad: listing jobs: %s (%s)\n", cfg->path,
		    nomad_result_name(list.result), list.error) > 0;
	nomad_call_clear(&list);
	for (size_t i = 0; i < cfg->nqueues; i++) {
		const struct queue_policy *q = &cfg->queues[i];
		const struct scale_conf *sc = &q->scale;
		struct nomad_call *c = &calls[i * ON_CALLS];
		int lo = sc->min, hi = sc->max;

		if (sc->target != SCALE_TARGET_NOMAD)
			continue;
		if (c[ON_STATUS].result != NOMAD_OK) {
			bad |= finding(q, true, "nomad: job %s: %s (%s)", sc->job,
			    nomad_result_name(c[ON_STATUS].result), c[ON_STATUS].error);
			continue;
		}
		if (!c[ON_STATUS].group_found) {
			bad |= finding(q, true, "nomad: job %s has no group \"%s\"", sc->job, sc->group);
			continue;
		}
		if (c[ON_STATUS].job_stopped && !quiet)
			finding(q, false, "nomad: job %s is stopped: the agent will not scale it", sc->job);
		if (c[ON_JOB].result == NOMAD_FORBIDDEN) {
			if (!quiet)
				finding(q, false, "nomad: the token may not read job %s (read-job): its "
				    "scaling bounds are learnt from Nomad's 400s", sc->job);
		} else if (c[ON_JOB].result != NOMAD_OK) {
			bad |= finding(q, true, "nomad: reading job %s: %s (%s)", sc->job,
			    nomad_result_name(c[ON_JOB].result), c[ON_JOB].error);
			continue;
		} else {
			if (c[ON_JOB].scaling_min > lo)
				lo = c[ON_JOB].scaling_min;
			if (c[ON_JOB].scaling_max >= 0 && c[ON_JOB].scaling_max < hi)
				hi = c[ON_JOB].scaling_max;
			if (lo > hi)
				bad |= finding(q, true, "nomad: job %s group %s scaling block [%d..%d] does not "
				    "overlap the policy's [%d..%d]", sc->job, sc->group, c[ON_JOB].scaling_min,
				    c[ON_JOB].scaling_max, sc->min, sc->max);
			else if ((lo != sc->min || hi != sc->max) && !quiet)
				finding(q, false, "nomad: job %s group %s scaling block narrows the policy's "
				    "[%d..%d] to [%d..%d]", sc->job, sc->group, sc->min, sc->max, lo, hi);
			if (strcmp(c[ON_JOB].job_type, "system") == 0 || strcmp(c[ON_JOB].job_type, "sysbatch") == 0) {
				bad |= finding(q, true, "nomad: job %s is a %s job: it has no count to scale",
				    sc->job, c[ON_JOB].job_type);
				continue;
			}
		}
		/* May the token scale it? An event without a count changes nothing. */
		nomad_call_init(&c[ON_PROBE], NOMAD_CALL_SCALE, sc);
		c[ON_PROBE].no_count = true;
		c[ON_PROBE].message = PROBE_MESSAGE;
		nomad_perform(nc, &c[ON_PROBE], 1);
		if (c[ON_PROBE].result != NOMAD_OK)
			bad |= finding(q, true, "nomad: the token may not scale job %s: %s (%s)", sc->job,
			    nomad_result_name(c[ON_PROBE].result), c[ON_PROBE].error);
	}
	for (size_t i = 0; i < cfg->nqueues * ON_CALLS; i++)
		nomad_call_clear(&calls[i]);
	free(calls);
	nomad_client_free(nc);
	return bad;
}

/* A handler that is not executable here is an error when asked to check online. */
static int
online_handlers(const struct config *cfg)
{
	int bad = 0;

	for (size_t i = 0; i < cfg->nqueues; i++) {
		const struct queue_policy *q = &cfg->queues[i];
		const char *exe = q->worker.command != NULL ? q->worker.command[0] : NULL;

		if (exe != NULL && exe[0] == '/' && access(exe, X_OK) == -1)
			bad |= finding(q, true, "handler %s is not executable here", exe);
	}
	return bad;
}

int
cmd_check(int argc, char **argv)
{
	static const struct cli_opt opts[] = {
		{ 'q', NULL, NULL },
		{ 'k', NULL, NULL },
		{ CHECK_ONLINE, "online", NULL },
		{ 0, NULL, NULL },
	};
	struct cli c = { .cmd = "check", .usage = usage, .flags = CLI_CONFIG | CLI_NOMAD | CLI_IN_ORDER,
		.opts = opts, .max_args = 0 };
	struct cli_queue x = { 0 };
	bool quiet = false, online = false;
	int ch, bad = 0;

	while ((ch = cli_next(&c, argc, argv)) > 0) {
		if (ch == 'k') {
			list_keys();
			return EXIT_OK;
		}
		if (ch == 'q')
			quiet = true;
		if (ch == CHECK_ONLINE)
			online = true;
	}
	if (ch == CLI_STOP)
		return c.rc;
	log_init("scaleno", LOG_LVL_WARN, LOG_FMT_TEXT, false);
	if (cli_open(&c, &x) != EXIT_OK) {
		cli_close(&x);
		return EXIT_USAGE;
	}
	for (size_t i = 0; i < x.cfg->nqueues; i++) {
		check_warn_queue(&x.cfg->queues[i]);
		if (!quiet)
			print_queue(&x.cfg->queues[i]);
	}
	if (!quiet)
		printf("configuration OK: %zu queue%s\n", x.cfg->nqueues, x.cfg->nqueues == 1 ? "" : "s");
	if (online) {
		bad |= online_handlers(x.cfg);
		bad |= online_redis(x.cfg, quiet);
		bad |= online_nomad(x.cfg, quiet);
		if (!quiet || bad)
			printf("online check %s\n", bad ? "FAILED" : "OK");
	}
	cli_close(&x);
	return bad ? EXIT_USAGE : EXIT_OK;
}
