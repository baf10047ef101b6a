/*
 * agent.c — `scaleno agent`: the control loop of scaleno(8), "The agent".
 * Each tick samples every due queue from Redis in one pipelined round trip,
 * then hands over to agent_nomad.c, which reads Nomad's counts for their
 * groups in one concurrent batch, runs the pure decision engine, and sends
 * the scale calls in a second batch.
 * Nothing here blocks longer than redis.command_timeout or nomad.timeout
 * per phase, and no failure of Redis or Nomad ends the loop. Also here:
 * SIGHUP reload, the lease, the snapshots for the HTTP endpoint (written
 * by agent_view.c and agent_metrics.c).
 *
 * Threads: the loop is single-threaded; the HTTP endpoint runs on
 * libmicrohttpd's thread and only reads the text snapshots published under
 * snap_lock after each tick.
 */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "agent.h"
#include "alert.h"
#include "cli.h"
#include "config.h"
#include "decide.h"
#include "httpd.h"
#include "log.h"
#include "nomad.h"
#include "redis_sample.h"
#include "sample.h"
#include "selfpipe.h"
#include "util.h"

/* The loop looks at its signals and timers at least this often. */
#define AGENT_MAX_WAIT_MS 1000
/* The rates are smoothed over this many evaluation intervals. */
#define SMOOTHING_INTERVALS 3.0
/* /healthz: a stall is no tick for this long plus twice the Nomad and Redis timeouts. */
#define STALL_BASE_MS 5000

/* Catch the stop and reload signals into the self-pipe; ignore SIGPIPE. */
static int
agent_signals_setup(void)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };

	if (selfpipe_open(sigs, ARRAY_LEN(sigs), 0) == -1)
		return -1;
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

/* Wait until ms have passed (at most AGENT_MAX_WAIT_MS) or a signal came; note which. */
static void
agent_wait(int64_t ms, bool *stop, bool *reload)
{
	struct pollfd pfd = { .fd = selfpipe_fd(), .events = POLLIN };
	int sigs[16];
	size_t n;

	if (ms < 0)
		ms = 0;
	if (ms > AGENT_MAX_WAIT_MS)
		ms = AGENT_MAX_WAIT_MS;
	if (poll(&pfd, 1, (int)ms) <= 0)
		return;
	while ((n = selfpipe_drain(sigs, ARRAY_LEN(sigs))) > 0)
		for (size_t i = 0; i < n; i++) {
			if (sigs[i] == SIGHUP)
				*reload = true;
			else
				*stop = true;
		}
}

bool
agent_dry_run(const struct agent *a)
{
	return a->dry_run_flag || a->cfg->agent.dry_run;
}

/* The smoothing time constant of q's rates, in seconds. */
static double
agent_tau_s(const struct queue_policy *q)
{
	return SMOOTHING_INTERVALS * (double)q->scale.interval_ms / 1000.0;
}

/* Forget what was known of the job (a new queue, or a reload): read it again. */
static void
agent_queue_forget_job(struct agent_queue *s)
{
	s->job_min = s->job_max = -1;
	s->bounds_learnt = false;
	s->bounds_logged_min = s->bounds_logged_max = -1;
	s->job_read_due = true;
	s->job_read_denied = false;
	s->job_index = 0;
	s->status_due = true;
}

static void
agent_queue_init(struct agent_queue *s, const struct queue_policy *q, int64_t now_ms)
{
	memset(s, 0, sizeof(*s));
	s->name = util_strdup(q->name);
	s->q = q;
	sample_state_init(&s->ss, agent_tau_s(q));
	decide_state_init(&s->ds);
	s->next_eval_ms = now_ms;
	agent_queue_forget_job(s);
	if (q->scale.target == SCALE_TARGET_NONE) {
		/* Observe-only: the engine's own count stands in for Nomad's. */
		s->nomad_ok = true;
		s->desired = s->running = s->placed = q->scale.min;
	}
}

static void
agent_free_states(struct agent_queue *qs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(qs[i].name);
	free(qs);
}

/*
 * Build the per-queue states for cfg, carrying over the memory (samples,
 * decisions, cooldowns, Nomad view) of queues that keep their name.
 */
static struct agent_queue *
agent_build_states(const struct config *cfg, struct agent_queue *old, size_t nold, int64_t now_ms)
{
	struct agent_queue *qs = calloc(cfg->nqueues ? cfg->nqueues : 1, sizeof(*qs));

	if (qs == NULL)
		return NULL;
	for (size_t i = 0; i < cfg->nqueues; i++) {
		const struct queue_policy *q = &cfg->queues[i];
		size_t j;

		for (j = 0; j < nold; j++)
			if (old[j].name != NULL && strcmp(old[j].name, q->name) == 0)
				break;
		if (j < nold && old[j].q->scale.target == q->scale.target) {
			qs[i] = old[j];
			old[j].name = NULL;	/* moved */
			qs[i].q = q;
			qs[i].ss.tau_s = agent_tau_s(q);
			agent_queue_forget_job(&qs[i]);
		} else
			agent_queue_init(&qs[i], q, now_ms);
	}
	return qs;
}

/* Create the Redis and Nomad clients for a->cfg. */
static int
agent_clients(struct agent *a, struct redis_servers **rq, struct nomad_client **nc, char *err,
    size_t errlen)
{
	*rq = redis_servers_new(a->cfg);
	if (*rq == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	*nc = nomad_client_new(&a->cfg->nomad, err, errlen);
	if (*nc == NULL) {
		redis_servers_free(*rq);
		*rq = NULL;
		return -1;
	}
	return 0;
}

static void agent_http(void *arg, const char *method, const char *path, struct httpd_reply *r);

static void
agent_listen(struct agent *a)
{
	const char *want = a->cfg->agent.listen ? a->cfg->agent.listen : "";
	char err[256];

	if (a->http_listen != NULL && strcmp(a->http_listen, want) == 0)
		return;
	httpd_stop(a->http);
	a->http = NULL;
	free(a->http_listen);
	a->http_listen = strdup(want);
	if (*want == '\0')
		return;
	if ((a->http = httpd_start(want, agent_http, a, err, sizeof(err))) == NULL)
		log_warnx("agent: metrics endpoint off: %s", err);
	else
		log_info("agent: serving /metrics, /healthz, /readyz and /v1/status on %s", want);
}

static void
agent_log_errors(const struct cfg_errors *errs)
{
	for (size_t i = 0; i < errs->n; i++)
		log_error("%s", errs->msgs[i]);
}

/* SIGHUP: load the configuration anew; keep the running one if the new one is bad. */
static void
agent_reload_config(struct agent *a)
{
	struct cfg_errors errs = { 0 };
	struct config *ncfg = NULL;
	struct config *ocfg = a->cfg;
	struct redis_servers *rq = NULL;
	struct nomad_client *nc = NULL;
	struct agent_queue *nqs = NULL;
	char err[256] = "out of memory";

	log_info("agent: SIGHUP: reloading %s", a->config_path);
	if (config_load(a->config_path, &ncfg, &errs) == -1) {
		agent_log_errors(&errs);
		log_error("agent: reload failed (%zu problem%s); the running configuration stays in force",
		    errs.n, errs.n == 1 ? "" : "s");
		cfg_errors_free(&errs);
		a->reloads_failed++;
		return;
	}
	cfg_errors_free(&errs);
	a->cfg = ncfg;
	if (agent_clients(a, &rq, &nc, err, sizeof(err)) == -1 ||
	    (nqs = agent_build_states(ncfg, a->qs, a->nqs, util_now_ms())) == NULL) {
		redis_servers_free(rq);
		nomad_client_free(nc);
		a->cfg = ocfg;
		config_free(ncfg);
		log_error("agent: reload failed: %s; the running configuration stays in force", err);
		a->reloads_failed++;
		return;
	}
	redis_servers_free(a->rs);
	nomad_client_free(a->nc);
	a->rs = rq;
	a->nc = nc;
	agent_free_states(a->qs, a->nqs);
	a->qs = nqs;
	a->nqs = ncfg->nqueues;
	config_free(ocfg);
	log_init("scaleno", ncfg->log.level, ncfg->log.format, ncfg->log.syslog);
	agent_listen(a);
	a->reloads_ok++;
	log_info("agent: reloaded: %zu queue%s", a->nqs, a->nqs == 1 ? "" : "s");
}

/* Phase 1: one pipelined Redis round trip for every due queue. */
static void
agent_sample(struct agent *a, double now_s, int64_t now_ms)
{
	const struct queue_policy **qv;
	struct raw_sample *raw;
	size_t n = 0, k = 0;
	char err[256] = "";
	int rc = -1;

	for (size_t i = 0; i < a->nqs; i++)
		n += a->qs[i].due;
	if (n == 0)
		return;
	qv = calloc(n, sizeof(*qv));
	raw = calloc(n, sizeof(*raw));
	if (qv == NULL || raw == NULL) {
		log_error("agent: out of memory sampling %zu queues", n);
		free(qv);
		free(raw);
		return;
	}
	for (size_t i = 0; i < a->nqs; i++)
		if (a->qs[i].due)
			qv[k++] = a->qs[i].q;
	/* Each server in one round trip; any server failing holds every queue (safe). */
	rc = redis_sample_servers(a->rs, qv, (int)n, now_s, raw, NULL, err, sizeof(err)) == 0 ? 0 : -1;
	if (rc == -1) {
		a->redis_errors++;
		if (a->redis_down_since_ms == 0) {
			a->redis_down_since_ms = now_ms;
			log_warnx("agent: redis %s: %s; holding every queue until it is back",
			    a->cfg->redis.address, err);
		} else if (now_ms - a->redis_down_since_ms >= UNREACHABLE_ALERT_MS) {
			char text[512];

			snprintf(text, sizeof(text), "Redis %s unreachable for %llds: %s",
			    a->cfg->redis.address,
			    (long long)((now_ms - a->redis_down_since_ms) / 1000), err);
			for (size_t i = 0; i < a->nqs; i++)
				alert_fire(&a->qs[i].q->alert, a->qs[i].name, ALERT_REDIS_UNREACHABLE,
				    a->cfg->redis.address, text);
		}
	} else if (a->redis_down_since_ms != 0) {
		log_info("agent: redis %s is back after %llds", a->cfg->redis.address,
		    (long long)((now_ms - a->redis_down_since_ms) / 1000));
		a->redis_down_since_ms = 0;
	}
	k = 0;
	for (size_t i = 0; i < a->nqs; i++) {
		struct agent_queue *s = &a->qs[i];
		struct signals sig;

		if (!s->due)
			continue;
		s->raw = raw[k++];
		s->raw.t = now_s;
		if (rc == -1)
			s->raw.ok = false;
		s->have_raw = true;
		sample_update(&s->ss, &s->raw, &sig);
		if (s->raw.ok && (s->raw.stream_missing || s->raw.group_missing)) {
			if (!s->missing_warned)
				log_warnx("queue %s: %s %s does not exist yet; %s", s->name,
				    s->raw.stream_missing ? "stream" : "group",
				    s->raw.stream_missing ? s->q->stream : s->q->group,
				    s->raw.stream_missing ? "reading the queue as empty" :
				    "every entry of the stream counts as backlog");
			s->missing_warned = true;
		} else if (s->raw.ok)
			s->missing_warned = false;
		if (rc == 0 && !s->raw.ok && !s->sample_err_warned) {
			log_warnx("queue %s: sample unusable (wrong key type or bad reply); holding",
			    s->name);
			s->sample_err_warned = true;
		} else if (s->raw.ok)
			s->sample_err_warned = false;
	}
	free(qv);
	free(raw);
}

static void agent_publish(struct agent *a);

static void
agent_tick(struct agent *a)
{
	int64_t now_ms = util_now_ms();
	double now_s = util_now_s();
	bool any = false;

	for (size_t i = 0; i < a->nqs; i++) {
		struct agent_queue *s = &a->qs[i];

		s->due = now_ms >= s->next_eval_ms;
		if (s->due) {
			any = true;
			/* Keep the phase; skip missed ticks rather than bunching them. */
			s->next_eval_ms += s->q->scale.interval_ms;
			if (s->next_eval_ms <= now_ms)
				s->next_eval_ms = now_ms + s->q->scale.interval_ms;
		}
	}
	if (!any)
		return;
	agent_sample(a, now_s, now_ms);
	if (a->cfg->agent.lease_key != NULL && a->cfg->agent.lease_key[0] != '\0') {
		int held = a->redis_down_since_ms != 0 ? -1 :
		    redis_agent_lease(redis_servers_at(a->rs, 0), a->cfg->agent.lease_key, a->owner, a->cfg->agent.lease_ttl_ms);
		bool leader = held == 1;

		if (leader != a->leader)
			log_info("agent: %s the lease %s", leader ? "acquired" : "does not hold",
			    a->cfg->agent.lease_key);
		a->leader = leader;
	} else
		a->leader = true;
	agent_nomad_status(a, now_s, now_ms);
	agent_decide_and_act(a, now_s, now_ms);
	a->ticks++;
	a->last_tick_s = util_now_s() - now_s;
	a->last_tick_ms = util_now_ms();
	agent_publish(a);
}

static int64_t
agent_next_due(const struct agent *a)
{
	int64_t next = util_now_ms() + AGENT_MAX_WAIT_MS;

	for (size_t i = 0; i < a->nqs; i++)
		if (a->qs[i].next_eval_ms < next)
			next = a->qs[i].next_eval_ms;
	return next;
}

/* --- snapshots for the HTTP endpoint ------------------------------------ */

static void
agent_publish(struct agent *a)
{
	struct strbuf b = { 0 };
	char *status = agent_status_json(a, util_now_s());

	agent_metrics_render(a, &b);
	if (b.oom || status == NULL) {
		strbuf_free(&b);
		cJSON_free(status);
		return;
	}
	pthread_mutex_lock(&a->snap_lock);
	free(a->snap_metrics);
	cJSON_free(a->snap_status);
	a->snap_metrics = strbuf_steal(&b);
	a->snap_status = status;
	a->snap_ms = a->last_tick_ms;
	/* A tick is bounded by the timeouts; computed here so the HTTP thread never reads the config. */
	a->snap_stall_ms = STALL_BASE_MS + a->cfg->nomad.timeout_ms * 2 +
	    a->cfg->redis.command_timeout_ms * 2;
	agent_readiness(a, util_now_s(), a->snap_unready, sizeof(a->snap_unready));
	pthread_mutex_unlock(&a->snap_lock);
}

static void
agent_http(void *arg, const char *method, const char *path, struct httpd_reply *r)
{
	struct agent *a = arg;

	r->status = 200;
	r->content_type = "text/plain; charset=utf-8";
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		r->status = 405;
		r->body = strdup("method not allowed\n");
		return;
	}
	pthread_mutex_lock(&a->snap_lock);
	if (strcmp(path, "/metrics") == 0) {
		r->content_type = "text/plain; version=0.0.4; charset=utf-8";
		r->body = strdup(a->snap_metrics ? a->snap_metrics : "");
	} else if (strcmp(path, "/v1/status") == 0) {
		r->content_type = "application/json";
		r->body = strdup(a->snap_status ? a->snap_status : "{}");
	} else if (strcmp(path, "/healthz") == 0) {
		/* Healthy while the loop keeps ticking. */
		int64_t age = util_now_ms() - a->snap_ms;

		if (a->snap_ms == 0 || age > a->snap_stall_ms) {
			r->status = 503;
			r->body = strdup("loop stalled\n");
		} else
			r->body = strdup("ok\n");
	} else if (strcmp(path, "/readyz") == 0) {
		int64_t age = util_now_ms() - a->snap_ms;

		r->status = 503;
		if (a->snap_ms == 0 || age > a->snap_stall_ms)
			r->body = strdup("loop stalled\n");
		else if (a->snap_unready[0] != '\0') {
			char line[sizeof(a->snap_unready) + 1];

			snprintf(line, sizeof(line), "%s\n", a->snap_unready);
			r->body = strdup(line);
		} else {
			r->status = 200;
			r->body = strdup("ok\n");
		}
	} else {
		r->status = 404;
		r->body = strdup("not found\n");
	}
	pthread_mutex_unlock(&a->snap_lock);
}

/* --- the command ---------------------------------------------------------- */

/* The agent's own options; -c and -h are the front end's (cli.h). */
static const struct cli_opt agent_opts[] = {
	{ 'n', "dry-run", NULL },
	{ 'v', "verbose", NULL },
	{ 0, NULL, NULL },
};

static void
agent_usage(FILE *f)
{
	fprintf(f, "usage: scaleno agent [-c FILE] [--dry-run] [-v]\n");
}

int
cmd_agent(int argc, char **argv)
{
	struct cli c = { .cmd = "agent", .usage = agent_usage, .flags = CLI_CONFIG | CLI_NOMAD,
	    .opts = agent_opts, .max_args = 0 };
	struct agent a;
	char err[256], host[64];
	bool verbose = false, stop = false, reload = false;
	int ch;

	memset(&a, 0, sizeof(a));
	while ((ch = cli_next(&c, argc, argv)) > 0) {
		if (ch == 'n')
			a.dry_run_flag = true;
		else if (ch == 'v')
			verbose = true;
	}
	if (ch == CLI_STOP)
		return c.rc;
	a.config_path = c.config_path;
	if (a.config_path == NULL)
		a.config_path = config_default_path();
	if (cli_load_config_flags("agent", a.config_path, 0, &a.cfg) != EXIT_OK)
		return EXIT_USAGE;
	log_init("scaleno", verbose ? LOG_LVL_DEBUG : a.cfg->log.level, a.cfg->log.format,
	    a.cfg->log.syslog);
	if (gethostname(host, sizeof(host)) == -1)
		strcpy(host, "unknown");
	host[sizeof(host) - 1] = '\0';
	snprintf(a.owner, sizeof(a.owner), "%s:%d:%lld", host, (int)getpid(),
	    (long long)util_wall_ms());
	pthread_mutex_init(&a.snap_lock, NULL);
	if (agent_signals_setup() == -1 ||
	    agent_clients(&a, &a.rs, &a.nc, err, sizeof(err)) == -1) {
		log_error("agent: cannot start: %s", err);
		config_free(a.cfg);
		return EXIT_RUNTIME;
	}
	if ((a.qs = agent_build_states(a.cfg, NULL, 0, util_now_ms())) == NULL) {
		log_error("agent: out of memory");
		return EXIT_RUNTIME;
	}
	a.nqs = a.cfg->nqueues;
	agent_listen(&a);
	log_info("agent: started with %zu queue%s%s (redis %s, nomad %s)", a.nqs,
	    a.nqs == 1 ? "" : "s", agent_dry_run(&a) ? ", dry-run" : "",
	    a.cfg->redis.address, a.cfg->nomad.address);

	while (!stop) {
		if (reload) {
			reload = false;
			agent_reload_config(&a);
		}
		agent_tick(&a);
		agent_wait(agent_next_due(&a) - util_now_ms(), &stop, &reload);
	}

	log_info("agent: signal received, exiting");
	if (a.leader && a.cfg->agent.lease_key != NULL && a.cfg->agent.lease_key[0] != '\0' &&
	    redis_agent_lease_release(redis_servers_at(a.rs, 0), a.cfg->agent.lease_key, a.owner) == 0)
		log_info("agent: released the lease %s", a.cfg->agent.lease_key);
	httpd_stop(a.http);
	free(a.http_listen);
	agent_free_states(a.qs, a.nqs);
	redis_servers_free(a.rs);
	nomad_client_free(a.nc);
	config_free(a.cfg);
	free(a.snap_metrics);
	cJSON_free(a.snap_status);
	pthread_mutex_destroy(&a.snap_lock);
	selfpipe_close();
	return EXIT_OK;
}
