/*
 * cmd_worker.c — `scaleno worker -q QUEUE [-c FILE]`: load the configuration,
 * find the queue, create the shared counters, serve /metrics, /healthz and
 * /readyz, and hand over to the supervisor (supervise.c), whose children run
 * consumer_main.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "consumer.h"
#include "httpd.h"
#include "log.h"
#include "redis.h"
#include "supervise.h"
#include "util.h"
#include "wstats.h"

/* /readyz asks Redis at most this often, each time within this bound. */
#define READY_PROBE_EVERY_MS 2000
#define READY_PROBE_TIMEOUT_MS 500

struct worker {
	const struct config *cfg;
	const struct queue_policy *q;
	struct worker_stats *stats;
	int64_t probe_ms;	/* when /readyz last asked Redis (0 = never) */
	char redis_err[256];	/* its answer: "" = reachable */
};

static void
worker_usage(FILE *f)
{
	fprintf(f, "usage: scaleno worker -q QUEUE [-c FILE]\n"
	    "  -q QUEUE  the queue whose consumers to run (a queue block of a policy file)\n"
	    "  -c FILE   main configuration file (default: $SCALENO_CONFIG or %s)\n"
	    "See scaleno-worker(8).\n", config_default_path());
}

static int
worker_child(void *arg, int slot, volatile sig_atomic_t *stop)
{
	const struct worker *w = arg;

	return consumer_main(w->cfg, w->q, slot, w->stats, stop);
}

/*
 * Whether Redis answers PING, asked on a connection of its own (a handle
 * kept here would be inherited by every consumer and handler forked later),
 * at most every READY_PROBE_EVERY_MS and never blocking the loop longer than
 * twice READY_PROBE_TIMEOUT_MS.
 */
static void
worker_probe_redis(struct worker *w)
{
	struct redis_conf rc = w->cfg->redis;
	struct redis_args a = REDIS_ARGS_INIT;
	struct redis_reply *rep;
	struct redis *r;
	int64_t now = util_now_ms();

	if (w->probe_ms != 0 && now - w->probe_ms < READY_PROBE_EVERY_MS)
		return;
	w->probe_ms = now;
	if (rc.connect_timeout_ms <= 0 || rc.connect_timeout_ms > READY_PROBE_TIMEOUT_MS)
		rc.connect_timeout_ms = READY_PROBE_TIMEOUT_MS;
	if (rc.command_timeout_ms <= 0 || rc.command_timeout_ms > READY_PROBE_TIMEOUT_MS)
		rc.command_timeout_ms = READY_PROBE_TIMEOUT_MS;
	if ((r = redis_new_conf(&rc)) == NULL) {
		snprintf(w->redis_err, sizeof(w->redis_err), "out of memory");
		return;
	}
	redis_args_str(&a, "PING");
	rep = redis_run(r, &a, true, w->redis_err, sizeof(w->redis_err));
	if (rep != NULL)
		w->redis_err[0] = '\0';
	redis_reply_free(rep);
	redis_free(r);
}

/* /readyz: why the worker cannot do its work now, into b; 0 when it can. */
static int
worker_unready(struct worker *w, struct strbuf *b)
{
	int64_t running = __atomic_load_n(&w->stats->consumers_running, __ATOMIC_RELAXED);
	int64_t looping = __atomic_load_n(&w->stats->crash_loop, __ATOMIC_RELAXED);

	if (supervise_draining())
		strbuf_printf(b, "draining\n");
	else if (running < 1)
		strbuf_printf(b, "no consumer running (0 of %d)\n", w->q->worker.processes);
	else if (looping > 0)
		strbuf_printf(b, "%lld consumer slot(s) crash-looping\n", (long long)looping);
	else {
		worker_probe_redis(w);
		if (w->redis_err[0] == '\0')
			return 0;
		strbuf_printf(b, "redis unreachable: %s\n", w->redis_err);
	}
	return -1;
}

/*
 * /metrics, /healthz (liveness: answered from the supervisor's loop, so an
 * answer means the loop turns) and /readyz; served from the supervisor's
 * loop, reads only the shared atomics.
 */
static void
worker_http(void *arg, const char *method, const char *path, struct httpd_reply *r)
{
	struct worker *w = arg;
	struct strbuf b = { 0 };
	int64_t running;

	r->content_type = "text/plain; charset=utf-8";
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		r->status = 405;
		strbuf_printf(&b, "method not allowed\n");
	} else if (strcmp(path, "/metrics") == 0) {
		r->status = 200;
		r->content_type = "text/plain; version=0.0.4; charset=utf-8";
		wstats_render(w->stats, w->q->name, &b);
	} else if (strcmp(path, "/healthz") == 0) {
		r->status = 200;
		strbuf_printf(&b, "ok\n");
	} else if (strcmp(path, "/readyz") == 0) {
		r->status = 503;
		if (worker_unready(w, &b) == 0) {
			running = __atomic_load_n(&w->stats->consumers_running, __ATOMIC_RELAXED);
			r->status = 200;
			strbuf_printf(&b, "ok: %lld of %d consumers running\n", (long long)running,
			    w->q->worker.processes);
		}
	} else {
		r->status = 404;
		strbuf_printf(&b, "not found; try /metrics, /healthz or /readyz\n");
	}
	if (b.oom) {
		strbuf_free(&b);
		r->status = 500;
		return;
	}
	r->body = strbuf_steal(&b);
}

int
cmd_worker(int argc, char **argv)
{
	struct cli c = { .cmd = "worker", .usage = worker_usage, .flags = CLI_CONFIG | CLI_QUEUE,
		.max_args = 0 };
	struct cli_queue x = { 0 };
	struct worker w = { 0 };
	struct supervise_opts o;
	struct httpd *http = NULL;
	char err[256];
	int rc;

	if (cli_parse(&c, argc, argv) == CLI_STOP)
		return c.rc;
	if ((rc = cli_open(&c, &x)) != EXIT_OK)
		goto out;
	w.cfg = x.cfg;
	w.q = x.q;
	if (w.q->worker.command == NULL || w.q->worker.command[0] == NULL) {
		fprintf(stderr, "scaleno worker: %s:%d: queue \"%s\" has no worker.command; "
		    "it cannot be run by a worker\n", w.q->file != NULL ? w.q->file : x.cfg->path,
		    w.q->line, w.q->name);
		rc = EXIT_USAGE;
		goto out;
	}
	log_init("scaleno", x.cfg->log.level, x.cfg->log.format, x.cfg->log.syslog);
	rc = EXIT_RUNTIME;
	if ((w.stats = wstats_create(w.q->partitions)) == NULL) {
		log_warn("worker %s: cannot map the shared counters", w.q->name);
		goto out;
	}
	if (w.q->worker.listen != NULL && w.q->worker.listen[0] != '\0') {
		char addr[256];

		/* "nomad:LABEL" without its variable: the job spec and the config disagree. */
		if (httpd_listen_resolve(w.q->worker.listen, addr, sizeof(addr), err,
		    sizeof(err)) == -1) {
			log_error("worker %s: cannot start: worker.listen: %s", w.q->name, err);
			rc = EXIT_USAGE;
			goto out;
		}
		http = httpd_start_polled(addr, worker_http, &w, err, sizeof(err));
		if (http == NULL)
			log_warnx("worker %s: /metrics, /healthz and /readyz are off: %s", w.q->name, err);
		else
			log_info("worker %s: serving /metrics, /healthz and /readyz on %s", w.q->name,
			    addr);
	}
	supervise_defaults(&o);
	o.name = w.q->name;
	o.nslots = w.q->worker.processes;
	o.child = worker_child;
	o.child_arg = &w;
	o.stats = w.stats;
	o.alert = &w.q->alert;
	o.drain_timeout_ms = w.q->worker.drain_timeout_ms;
	o.kill_timeout_ms = w.q->worker.kill_timeout_ms;
	o.http = http;
	log_info("worker %s: %s mode, %d consumer process(es), handler %s (%s)", w.q->name,
	    config_mode_name(w.q->mode), o.nslots, w.q->worker.command[0],
	    w.q->worker.protocol == PROTO_EXEC ? "exec" : "pipe");
	rc = supervise_run(&o);
out:
	httpd_stop(http);
	wstats_destroy(w.stats);
	cli_close(&x);
	return rc;
}
