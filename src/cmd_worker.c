/*
 * cmd_worker.c — `scaleno worker -q QUEUE [-c FILE]`: load the configuration,
 * find the queue, create the shared counters, serve /metrics and /healthz,
 * and hand over to the supervisor (supervise.c), whose children run
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
#include "supervise.h"
#include "util.h"
#include "wstats.h"

struct worker {
	const struct config *cfg;
	const struct queue_policy *q;
	struct worker_stats *stats;
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

/* /metrics and /healthz; served from the supervisor's loop, reads only the shared atomics. */
static void
worker_http(void *arg, const char *method, const char *path, struct httpd_reply *r)
{
	const struct worker *w = arg;
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
		running = __atomic_load_n(&w->stats->consumers_running, __ATOMIC_RELAXED);
		if (supervise_draining()) {
			r->status = 503;
			strbuf_printf(&b, "draining\n");
		} else if (running < 1) {
			r->status = 503;
			strbuf_printf(&b, "no consumer running (0 of %d)\n", w->q->worker.processes);
		} else {
			r->status = 200;
			strbuf_printf(&b, "ok: %lld of %d consumers running\n", (long long)running,
			    w->q->worker.processes);
		}
	} else {
		r->status = 404;
		strbuf_printf(&b, "not found; try /metrics or /healthz\n");
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
		http = httpd_start_polled(w.q->worker.listen, worker_http, &w, err, sizeof(err));
		if (http == NULL)
			log_warnx("worker %s: /metrics and /healthz are off: %s", w.q->name, err);
		else
			log_info("worker %s: serving /metrics and /healthz on %s", w.q->name,
			    w.q->worker.listen);
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
