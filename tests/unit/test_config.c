/*
 * test_config.c — config_load against the fixtures in tests/fixtures/config:
 * good files load with the expected values and defaults; every bad fixture
 * yields exactly the "file:line: message" lines of its .expected file; the
 * NOMAD_* environment; the table of keys against scaleno.conf(5) and etc/;
 * and the exit codes of `scaleno check`.
 *
 * Run from the top of the tree (or set SCALENO_TOP); SCALENO_BIN names the
 * binary for the check tests (default build/scaleno).
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <libconfig.h>

#include "config.h"
#include "util.h"

static char top[1024];		/* the source tree */
static char fixdir[1100];	/* tests/fixtures/config, as given */
static char fixreal[PATH_MAX];	/* the same, resolved */

static const char *const nomad_env[] = {
	"NOMAD_ADDR", "NOMAD_TOKEN", "NOMAD_NAMESPACE", "NOMAD_REGION", "NOMAD_CACERT",
	"NOMAD_CLIENT_CERT", "NOMAD_CLIENT_KEY", "SCALENO_CONFIG",
};

static void
clear_env(void)
{
	for (size_t i = 0; i < ARRAY_LEN(nomad_env); i++)
		unsetenv(nomad_env[i]);
}

static void
fixture(char *buf, size_t len, const char *rel)
{
	snprintf(buf, len, "%s/%s", fixdir, rel);
}

/* Remove every occurrence of prefix from s, in place. */
static void
strip_all(char *s, const char *prefix)
{
	size_t n = strlen(prefix);
	char *p;

	if (n == 0)
		return;
	while ((p = strstr(s, prefix)) != NULL)
		memmove(p, p + n, strlen(p + n) + 1);
}

/* Read a whole text file; caller frees. */
static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	struct strbuf b = { 0 };
	char line[4096];

	if (f == NULL)
		return NULL;
	while (fgets(line, sizeof(line), f) != NULL)
		strbuf_printf(&b, "%s", line);
	fclose(f);
	return strbuf_steal(&b);
}

static char *
write_tmp_file(const char *dir, const char *name, const char *text)
{
	struct strbuf b = { 0 };
	FILE *f;

	strbuf_printf(&b, "%s/%s", dir, name);
	if ((f = fopen(b.s, "w")) == NULL) {
		strbuf_free(&b);
		return NULL;
	}
	fputs(text, f);
	fclose(f);
	return strbuf_steal(&b);
}

/* ---- good files ---- */

static const char *const full_cmd[] = { "/usr/local/bin/handler", "--flag", "" };
static const char *const full_alert[] = { "/usr/local/bin/page", "-v" };
static int64_t full_delays[] = { 5000, 30000 };
static int64_t default_delays[] = { 10000, 60000, 600000 };

/* An expected queue: the strings (-Wwrite-strings keeps them const), then every number. */
struct want_queue {
	const char *name, *stream, *group, *job, *sgroup, *ns, *listen, *webhook;
	const char *const *cmd, *const *alert;
	size_t ncmd, nalert;
	struct queue_policy n;	/* numbers only; its strings stay NULL */
};

/* The queues of tests/fixtures/config/good, in name order. */
static const struct want_queue want_queues[] = {
	{ "full", "full-stream", "full-group", "full-worker", "workers", "other", "[::1]:9999",
	  "https://hooks.example/x", full_cmd, full_alert, 3, 2,
	  { .partitions = 6, .loss_critical = true, .order_critical = true, .mode = MODE_HALT,
	    .scale = { SCALE_TARGET_NOMAD, NULL, NULL, NULL, 2, 6, 500, 12.5, 60000, 20000,
	      5000, { 3, false }, 120000, 600000, { 25, true } },
	    .worker = { NULL, 0, PROTO_EXEC, 3, 8, 10000, 0, 100, 2000, full_delays, 2, 120000, 4,
	      20000, NULL, 250, 7200000, 25000 },
	    .alert = { NULL, 0, NULL, 60000 } } },
	/* Every default, and the values derived from the main file. */
	{ "minimal", "minimal", "minimal", "minimal-worker", "worker", "payments" /* nomad.namespace */,
	  "127.0.0.1:9465", "", NULL, NULL, 0, 0,
	  { .partitions = 1, .loss_critical = true, .order_critical = false, .mode = MODE_DLQ,
	    .scale = { SCALE_TARGET_NOMAD, NULL, NULL, NULL, 1, 10, 2000 /* agent.interval */, 200, 30000,
	      15000, 10000, { 100, true }, 30000, 60000, { 50, true } },
	    .worker = { NULL, 0, PROTO_PIPE, 4, 16, 30000, 3, 200, 10000, default_delays, 3, 60000, 10,
	      4000, NULL, 1000, 3600000, 5000 },
	    .alert = { NULL, 0, NULL, 300000 } } },
	/* Order-critical: max defaults to partitions; target none needs no job. */
	{ "observe", "observe", "observe", "", "", "payments", "127.0.0.1:9465", "", NULL, NULL, 0, 0,
	  { .partitions = 3, .loss_critical = false, .order_critical = true, .mode = MODE_ORDERED_DROP,
	    .scale = { SCALE_TARGET_NONE, NULL, NULL, NULL, 1, 3, 2000, 200, 30000, 15000, 10000,
	      { 100, true }, 30000, 60000, { 50, true } },
	    .worker = { NULL, 0, PROTO_PIPE, 4, 16, 30000, 3, 200, 10000, default_delays, 3, 60000, 10,
	      4000, NULL, 1000, 3600000, 5000 },
	    .alert = { NULL, 0, NULL, 300000 } } },
};

static void
assert_argv(char *const *got, size_t ngot, const char *const *want, size_t nwant)
{
	CU_ASSERT_EQUAL_FATAL(ngot, nwant);
	if (want == NULL) {
		CU_ASSERT_PTR_NULL(got);
		return;
	}
	CU_ASSERT_PTR_NOT_NULL_FATAL(got);
	for (size_t i = 0; i < nwant; i++)
		CU_ASSERT_STRING_EQUAL(got[i], want[i]);
	CU_ASSERT_PTR_NULL(got[nwant]);
}

static void
assert_queue(const struct queue_policy *g, const struct want_queue *wq)
{
	const struct queue_policy *w = &wq->n;
	const struct scale_conf *gs = &g->scale, *ws = &w->scale;
	const struct worker_conf *gw = &g->worker, *ww = &w->worker;

	CU_ASSERT_STRING_EQUAL(g->name, wq->name);
	CU_ASSERT_STRING_EQUAL(g->stream, wq->stream);
	CU_ASSERT_STRING_EQUAL(g->group, wq->group);
	CU_ASSERT_STRING_EQUAL(gs->job, wq->job);
	CU_ASSERT_STRING_EQUAL(gs->group, wq->sgroup);
	CU_ASSERT_STRING_EQUAL(gs->namespace, wq->ns);
	CU_ASSERT_STRING_EQUAL(gw->listen, wq->listen);
	CU_ASSERT_STRING_EQUAL(g->alert.webhook, wq->webhook);
	CU_ASSERT_EQUAL(g->partitions, w->partitions);
	CU_ASSERT_EQUAL(g->loss_critical, w->loss_critical);
	CU_ASSERT_EQUAL(g->order_critical, w->order_critical);
	CU_ASSERT_EQUAL(g->mode, w->mode);
	CU_ASSERT_EQUAL(gs->target, ws->target);
	CU_ASSERT_EQUAL(gs->min, ws->min);
	CU_ASSERT_EQUAL(gs->max, ws->max);
	CU_ASSERT_EQUAL(gs->interval_ms, ws->interval_ms);
	CU_ASSERT_DOUBLE_EQUAL(gs->backlog_per_worker, ws->backlog_per_worker, 1e-9);
	CU_ASSERT_EQUAL(gs->max_age_ms, ws->max_age_ms);
	CU_ASSERT_EQUAL(gs->startup_ms, ws->startup_ms);
	CU_ASSERT_EQUAL(gs->up_cooldown_ms, ws->up_cooldown_ms);
	CU_ASSERT_EQUAL(gs->up_max_step.value, ws->up_max_step.value);
	CU_ASSERT_EQUAL(gs->up_max_step.percent, ws->up_max_step.percent);
	CU_ASSERT_EQUAL(gs->down_cooldown_ms, ws->down_cooldown_ms);
	CU_ASSERT_EQUAL(gs->down_stabilization_ms, ws->down_stabilization_ms);
	CU_ASSERT_EQUAL(gs->down_max_step.value, ws->down_max_step.value);
	CU_ASSERT_EQUAL(gs->down_max_step.percent, ws->down_max_step.percent);
	assert_argv(gw->command, gw->ncommand, wq->cmd, wq->ncmd);
	CU_ASSERT_EQUAL(gw->protocol, ww->protocol);
	CU_ASSERT_EQUAL(gw->processes, ww->processes);
	CU_ASSERT_EQUAL(gw->batch, ww->batch);
	CU_ASSERT_EQUAL(gw->timeout_ms, ww->timeout_ms);
	CU_ASSERT_EQUAL(gw->retries, ww->retries);
	CU_ASSERT_EQUAL(gw->backoff_ms, ww->backoff_ms);
	CU_ASSERT_EQUAL(gw->max_backoff_ms, ww->max_backoff_ms);
	CU_ASSERT_EQUAL_FATAL(gw->nretry_delays, ww->nretry_delays);
	for (size_t i = 0; i < ww->nretry_delays; i++)
		CU_ASSERT_EQUAL(gw->retry_delays_ms[i], ww->retry_delays_ms[i]);
	CU_ASSERT_EQUAL(gw->claim_idle_ms, ww->claim_idle_ms);
	CU_ASSERT_EQUAL(gw->max_deliveries, ww->max_deliveries);
	CU_ASSERT_EQUAL(gw->drain_timeout_ms, ww->drain_timeout_ms);
	CU_ASSERT_EQUAL(gw->kill_timeout_ms, ww->kill_timeout_ms);
	CU_ASSERT_EQUAL(gw->block_ms, ww->block_ms);
	CU_ASSERT_EQUAL(gw->consumer_idle_ms, ww->consumer_idle_ms);
	assert_argv(g->alert.command, g->alert.ncommand, wq->alert, wq->nalert);
	CU_ASSERT_EQUAL(g->alert.min_interval_ms, w->alert.min_interval_ms);
}

/* An expected main file: strings (secret and TLS files share one value), then the numbers. */
struct want_main {
	const char *raddr, *ruser, *rpass, *naddr, *ntoken, *nns, *nregion, *ntls, *pdir, *listen, *lease;
	struct config n;	/* numbers only */
};

static void
assert_str_or_null(const char *got, const char *want)
{
	if (want == NULL) {
		CU_ASSERT_PTR_NULL(got);
	} else {
		CU_ASSERT_STRING_EQUAL(got, want);
	}
}

static void
assert_main(const struct config *g, const struct want_main *w)
{
	CU_ASSERT_STRING_EQUAL(g->redis.address, w->raddr);
	CU_ASSERT_STRING_EQUAL(g->redis.username, w->ruser);
	assert_str_or_null(g->redis.password, w->rpass);
	CU_ASSERT_EQUAL(g->redis.database, w->n.redis.database);
	CU_ASSERT_EQUAL(g->redis.connect_timeout_ms, w->n.redis.connect_timeout_ms);
	CU_ASSERT_EQUAL(g->redis.command_timeout_ms, w->n.redis.command_timeout_ms);
	CU_ASSERT_STRING_EQUAL(g->nomad.address, w->naddr);
	assert_str_or_null(g->nomad.token, w->ntoken);
	CU_ASSERT_STRING_EQUAL(g->nomad.namespace, w->nns);
	CU_ASSERT_STRING_EQUAL(g->nomad.region, w->nregion);
	CU_ASSERT_STRING_EQUAL(g->nomad.ca_file, w->ntls);
	CU_ASSERT_STRING_EQUAL(g->nomad.cert_file, w->ntls);
	CU_ASSERT_STRING_EQUAL(g->nomad.key_file, w->ntls);
	CU_ASSERT_EQUAL(g->nomad.timeout_ms, w->n.nomad.timeout_ms);
	CU_ASSERT_EQUAL(g->agent.interval_ms, w->n.agent.interval_ms);
	CU_ASSERT_STRING_EQUAL(g->agent.policy_dir, w->pdir);
	CU_ASSERT_STRING_EQUAL(g->agent.listen, w->listen);
	CU_ASSERT_EQUAL(g->agent.dry_run, w->n.agent.dry_run);
	CU_ASSERT_STRING_EQUAL(g->agent.lease_key, w->lease);
	CU_ASSERT_EQUAL(g->agent.lease_ttl_ms, w->n.agent.lease_ttl_ms);
	CU_ASSERT_EQUAL(g->log.level, w->n.log.level);
	CU_ASSERT_EQUAL(g->log.format, w->n.log.format);
	CU_ASSERT_EQUAL(g->log.syslog, w->n.log.syslog);
}

static void
test_good_values(void)
{
	struct config *cfg = NULL;
	struct cfg_errors errs = { 0 };
	char path[PATH_MAX], want[PATH_MAX + 64], secret[PATH_MAX + 32], pdir[PATH_MAX + 32];

	clear_env();
	fixture(path, sizeof(path), "good/scaleno.conf");
	CU_ASSERT_EQUAL_FATAL(config_load(path, &cfg, &errs), 0);
	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "unexpected: %s\n", errs.msgs[i]);
	CU_ASSERT_EQUAL(errs.n, 0);
	CU_ASSERT_STRING_EQUAL(cfg->path, path);
	CU_ASSERT_STRING_EQUAL(cfg->dir, strcat(strcpy(want, fixreal), "/good"));
	snprintf(secret, sizeof(secret), "%s/good/secret.txt", fixreal);
	snprintf(pdir, sizeof(pdir), "%s/good/policies.d", fixreal);
	struct want_main w = { "unix:/run/redis/redis.sock", "scaleno", "s3cret-password",
	    "https://nomad.example:4646", "tok-123", "payments", "eu", secret, pdir, "", "test:lease",
	    { .redis = { .database = 3, .connect_timeout_ms = 250, .command_timeout_ms = 3000 },
	      .nomad = { .timeout_ms = 7000 },
	      .agent = { .interval_ms = 2000, .dry_run = true, .lease_ttl_ms = 30000 },
	      .log = { LOG_LVL_DEBUG, LOG_FMT_JSON, true } } };
	assert_main(cfg, &w);

	/* Policies in name order: full, minimal, observe. */
	CU_ASSERT_EQUAL_FATAL(cfg->nqueues, 3);
	CU_ASSERT_PTR_EQUAL(config_queue(cfg, "full"), &cfg->queues[0]);
	CU_ASSERT_PTR_NULL(config_queue(cfg, "nope"));
	for (size_t i = 0; i < ARRAY_LEN(want_queues); i++)
		assert_queue(&cfg->queues[i], &want_queues[i]);
	CU_ASSERT_EQUAL(cfg->queues[0].line, 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(cfg->queues[0].file, "good/policies.d/full.conf"));
	config_free(cfg);
	cfg_errors_free(&errs);
}

static void
test_main_defaults(void)
{
	struct config *cfg = NULL;
	struct cfg_errors errs = { 0 };
	char path[PATH_MAX], pdir[PATH_MAX + 32];

	clear_env();
	fixture(path, sizeof(path), "empty.conf");
	CU_ASSERT_EQUAL_FATAL(config_load(path, &cfg, &errs), 0);
	snprintf(pdir, sizeof(pdir), "%s/policies.d", fixreal);
	struct want_main w = { "127.0.0.1:6379", "", NULL, "http://127.0.0.1:4646", NULL, "default", "", "",
	    pdir, "127.0.0.1:9464", "scaleno:agent:lease",
	    { .redis = { .database = 0, .connect_timeout_ms = 500, .command_timeout_ms = 2000 },
	      .nomad = { .timeout_ms = 5000 },
	      .agent = { .interval_ms = 1000, .dry_run = false, .lease_ttl_ms = 10000 },
	      .log = { LOG_LVL_INFO, LOG_FMT_TEXT, false } } };
	assert_main(cfg, &w);
	CU_ASSERT_EQUAL_FATAL(cfg->nqueues, 1);
	CU_ASSERT_STRING_EQUAL(cfg->queues[0].scale.namespace, "default");
	config_free(cfg);
	cfg_errors_free(&errs);

	/* An empty policy folder is valid: zero queues (and a logged warning). */
	fixture(path, sizeof(path), "empty-policies.conf");
	CU_ASSERT_EQUAL_FATAL(config_load(path, &cfg, &errs), 0);
	CU_ASSERT_EQUAL(cfg->nqueues, 0);
	config_free(cfg);
	cfg_errors_free(&errs);
}

/* Commands that never call Nomad load a file whose Nomad secrets this host cannot read. */
static void
test_no_nomad_secrets(void)
{
	struct config *cfg = NULL;
	struct cfg_errors errs = { 0 };
	char path[PATH_MAX];
	bool redis_err = false;

	clear_env();
	fixture(path, sizeof(path), "bad-secrets.conf");
	CU_ASSERT_EQUAL(config_load(path, &cfg, &errs), -1);
	cfg_errors_free(&errs);
	/* The flag skips the token and TLS files but still reads the Redis password. */
	CU_ASSERT_EQUAL(config_load_flags(path, &cfg, &errs, CONFIG_NO_NOMAD_SECRETS), -1);
	for (size_t i = 0; i < errs.n; i++) {
		CU_ASSERT_PTR_NULL(strstr(errs.msgs[i], "nomad."));
		redis_err |= strstr(errs.msgs[i], "redis.password_file") != NULL;
	}
	CU_ASSERT_TRUE(redis_err);
	cfg_errors_free(&errs);
	CU_ASSERT_PTR_NULL(cfg);
}

static void
test_env(void)
{
	struct config *cfg = NULL;
	struct cfg_errors errs = { 0 };
	char path[PATH_MAX], pem[PATH_MAX + 32];

	clear_env();
	snprintf(pem, sizeof(pem), "%s/good/secret.txt", fixreal);
	setenv("NOMAD_ADDR", "https://env.example:4646", 1);
	setenv("NOMAD_TOKEN", "env-token", 1);
	setenv("NOMAD_NAMESPACE", "envns", 1);
	setenv("NOMAD_REGION", "envregion", 1);
	setenv("NOMAD_CACERT", pem, 1);
	setenv("NOMAD_CLIENT_CERT", pem, 1);
	setenv("NOMAD_CLIENT_KEY", pem, 1);

	/* The file leaves them empty: the environment fills in. */
	fixture(path, sizeof(path), "empty.conf");
	CU_ASSERT_EQUAL_FATAL(config_load(path, &cfg, &errs), 0);
	CU_ASSERT_STRING_EQUAL(cfg->nomad.address, "https://env.example:4646");
	CU_ASSERT_STRING_EQUAL(cfg->nomad.token, "env-token");
	CU_ASSERT_STRING_EQUAL(cfg->nomad.namespace, "envns");
	CU_ASSERT_STRING_EQUAL(cfg->nomad.region, "envregion");
	CU_ASSERT_STRING_EQUAL(cfg->nomad.ca_file, pem);
	CU_ASSERT_STRING_EQUAL(cfg->nomad.cert_file, pem);
	CU_ASSERT_STRING_EQUAL(cfg->nomad.key_file, pem);
	CU_ASSERT_STRING_EQUAL(cfg->queues[0].scale.namespace, "envns");
	config_free(cfg);

	/* The file sets them: the file wins, token_file over NOMAD_TOKEN. */
	fixture(path, sizeof(path), "good/scaleno.conf");
	CU_ASSERT_EQUAL_FATAL(config_load(path, &cfg, &errs), 0);
	CU_ASSERT_STRING_EQUAL(cfg->nomad.address, "https://nomad.example:4646");
	CU_ASSERT_STRING_EQUAL(cfg->nomad.token, "tok-123");
	CU_ASSERT_STRING_EQUAL(cfg->nomad.namespace, "payments");
	CU_ASSERT_STRING_EQUAL(cfg->nomad.region, "eu");
	config_free(cfg);

	/* A bad value from the environment names the variable, never the token. */
	setenv("NOMAD_ADDR", "env.example:4646", 1);
	fixture(path, sizeof(path), "empty.conf");
	CU_ASSERT_EQUAL(config_load(path, &cfg, &errs), -1);
	CU_ASSERT_PTR_NULL(cfg);
	CU_ASSERT_EQUAL_FATAL(errs.n, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(errs.msgs[0], "NOMAD_ADDR"));
	CU_ASSERT_PTR_NULL(strstr(errs.msgs[0], "env-token"));
	cfg_errors_free(&errs);

	/* SCALENO_CONFIG picks the file when no path is given. */
	clear_env();
	setenv("SCALENO_CONFIG", path, 1);
	CU_ASSERT_STRING_EQUAL(config_default_path(), path);
	CU_ASSERT_EQUAL(config_load(NULL, &cfg, &errs), 0);
	CU_ASSERT_STRING_EQUAL(cfg->path, path);
	config_free(cfg);
	unsetenv("SCALENO_CONFIG");
	CU_ASSERT_STRING_EQUAL(config_default_path(), SCALENO_SYSCONFDIR "/scaleno/scaleno.conf");
	cfg_errors_free(&errs);
}

/* ---- bad files ---- */

enum bad_kind { BAD_MAIN, BAD_POLICY };
static const struct bad_case {
	const char *fixture;	/* under tests/fixtures/config */
	enum bad_kind kind;
	int copies;		/* policy loaded under this many names (duplicates) */
} bad_cases[] = {
	{ "bad-binary.conf", BAD_MAIN, 1 },
	{ "bad-durations.conf", BAD_MAIN, 1 },
	{ "bad-groups.conf", BAD_MAIN, 1 },
	{ "bad-junk.conf", BAD_MAIN, 1 },
	{ "bad-numbers.conf", BAD_MAIN, 1 },
	{ "bad-numbers2.conf", BAD_MAIN, 1 },
	{ "bad-policy-dir.conf", BAD_MAIN, 1 },
	{ "bad-secrets.conf", BAD_MAIN, 1 },
	{ "bad-syntax.conf", BAD_MAIN, 1 },
	{ "bad-types.conf", BAD_MAIN, 1 },
	{ "bad-unknown.conf", BAD_MAIN, 1 },
	{ "bad-values.conf", BAD_MAIN, 1 },
	{ "bad-values2.conf", BAD_MAIN, 1 },
	{ "policy/bad-bounds.conf", BAD_POLICY, 1 },
	{ "policy/bad-bounds2.conf", BAD_POLICY, 1 },
	{ "policy/bad-dup.conf", BAD_POLICY, 2 },
	{ "policy/bad-empty.conf", BAD_POLICY, 1 },
	{ "policy/bad-names.conf", BAD_POLICY, 1 },
	{ "policy/bad-noqueue.conf", BAD_POLICY, 1 },
	{ "policy/bad-overflow.conf", BAD_POLICY, 1 },
	{ "policy/bad-queue-type.conf", BAD_POLICY, 1 },
	{ "policy/bad-required.conf", BAD_POLICY, 1 },
	{ "policy/bad-steps.conf", BAD_POLICY, 1 },
	{ "policy/bad-steps2.conf", BAD_POLICY, 1 },
	{ "policy/bad-unknown.conf", BAD_POLICY, 1 },
	{ "policy/bad-worker.conf", BAD_POLICY, 1 },
	{ "policy/bad-worker2.conf", BAD_POLICY, 1 },
	{ "policy/bad-worker3.conf", BAD_POLICY, 1 },
};

/* A temporary main file whose policy_dir "p" holds the named files. */
static int
make_policy_setup(char *tmp, size_t len, const char *const *srcs, const char *const *names, int n)
{
	char p[PATH_MAX + 8], *m;

	snprintf(tmp, len, "/tmp/scaleno-test-config.XXXXXX");
	if (mkdtemp(tmp) == NULL)
		return -1;
	snprintf(p, sizeof(p), "%s/p", tmp);
	if (mkdir(p, 0700) == -1)
		return -1;
	for (int i = 0; i < n; i++) {
		char link[PATH_MAX * 2];

		snprintf(link, sizeof(link), "%s/%s", p, names[i]);
		if (symlink(srcs[i], link) == -1)
			return -1;
	}
	if ((m = write_tmp_file(tmp, "main.conf", "agent: { policy_dir = \"p\"; };\n")) == NULL)
		return -1;
	free(m);
	return 0;
}

static void
remove_tree(const char *dir)
{
	char cmd[PATH_MAX + 16];

	if (strncmp(dir, "/tmp/scaleno-test-config.", 25) != 0)
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

/* Load, normalise each message (temporary and fixture folders removed), join with newlines. */
static char *
load_messages(const char *main_path, const char *tmp, int *rc)
{
	struct config *cfg = NULL;
	struct cfg_errors errs = { 0 };
	struct strbuf b = { 0 };
	char pre[PATH_MAX + 8];

	*rc = config_load(main_path, &cfg, &errs);
	CU_ASSERT_TRUE(*rc == 0 ? cfg != NULL : cfg == NULL);
	for (size_t i = 0; i < errs.n; i++) {
		char *m = strdup(errs.msgs[i]);

		CU_ASSERT_PTR_NOT_NULL_FATAL(m);
		/* No secret from the fixtures ever shows up. */
		CU_ASSERT_PTR_NULL(strstr(m, "s3cret"));
		CU_ASSERT_PTR_NULL(strstr(m, "tok-123"));
		if (tmp != NULL) {
			snprintf(pre, sizeof(pre), "%s/p/", tmp);
			strip_all(m, pre);
		}
		snprintf(pre, sizeof(pre), "%s/", fixreal);
		strip_all(m, pre);
		snprintf(pre, sizeof(pre), "%s/", fixdir);
		strip_all(m, pre);
		strbuf_printf(&b, "%s\n", m);
		free(m);
	}
	config_free(cfg);
	cfg_errors_free(&errs);
	return strbuf_steal(&b);
}

static void
test_bad_fixtures(void)
{
	clear_env();
	for (size_t i = 0; i < ARRAY_LEN(bad_cases); i++) {
		const struct bad_case *c = &bad_cases[i];
		char path[PATH_MAX], exp[PATH_MAX + 16], tmp[64] = "", *got, *want;
		int rc;

		fixture(path, sizeof(path), c->fixture);
		snprintf(exp, sizeof(exp), "%.*s.expected", (int)(strlen(path) - 5), path);
		if (c->kind == BAD_POLICY) {
			char src[PATH_MAX + 8], main_path[PATH_MAX + 16];
			const char *base = strrchr(c->fixture, '/') + 1;
			const char *srcs[2] = { src, src }, *names[2] = { base, "bad-dup2.conf" };

			snprintf(src, sizeof(src), "%s/%s", fixreal, c->fixture);
			CU_ASSERT_EQUAL_FATAL(make_policy_setup(tmp, sizeof(tmp), srcs, names, c->copies), 0);
			snprintf(main_path, sizeof(main_path), "%s/main.conf", tmp);
			got = load_messages(main_path, tmp, &rc);
			remove_tree(tmp);
		} else {
			got = load_messages(path, NULL, &rc);
		}
		want = slurp(exp);
		CU_ASSERT_EQUAL(rc, -1);
		CU_ASSERT_PTR_NOT_NULL(want);
		if (want == NULL || got == NULL || strcmp(got, want) != 0) {
			CU_FAIL("messages differ from the .expected file");
			fprintf(stderr, "\n%s: expected:\n%sgot:\n%s", c->fixture, want ? want : "(no file)\n",
			    got ? got : "(none)\n");
		}
		free(got);
		free(want);
	}
}

static bool
listed(const char *rel)
{
	for (size_t i = 0; i < ARRAY_LEN(bad_cases); i++)
		if (strcmp(bad_cases[i].fixture, rel) == 0)
			return true;
	return false;
}

/* Every bad-*.conf fixture has a row above, so none is silently skipped. */
static void
test_every_fixture_listed(void)
{
	static const char *const dirs[] = { "", "policy/" };

	for (size_t d = 0; d < ARRAY_LEN(dirs); d++) {
		char path[PATH_MAX];
		DIR *dir;
		struct dirent *e;
		int seen = 0;

		fixture(path, sizeof(path), dirs[d]);
		CU_ASSERT_PTR_NOT_NULL_FATAL(dir = opendir(path));
		while ((e = readdir(dir)) != NULL) {
			char rel[512];
			size_t n = strlen(e->d_name);

			if (strncmp(e->d_name, "bad-", 4) != 0 || n < 5 || strcmp(e->d_name + n - 5, ".conf") != 0)
				continue;
			snprintf(rel, sizeof(rel), "%s%s", dirs[d], e->d_name);
			seen++;
			if (!listed(rel)) {
				fprintf(stderr, "fixture %s has no row in bad_cases\n", rel);
				CU_FAIL("unlisted fixture");
			}
		}
		closedir(dir);
		CU_ASSERT_TRUE(seen > 5);
	}
}

/* Errors for files made at run time: one message each, never a crash. */
static void
expect_one_error(const char *main_path, const char *tmp, const char *needle)
{
	int rc;
	char *got = load_messages(main_path, tmp, &rc);

	CU_ASSERT_EQUAL(rc, -1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(got);
	if (strstr(got, needle) == NULL || strchr(got, '\n') != got + strlen(got) - 1) {
		CU_FAIL("unexpected messages");
		fprintf(stderr, "wanted one message with \"%s\", got:\n%s", needle, got);
	}
	free(got);
}

static void
test_bad_generated(void)
{
	char tmp[64], path[PATH_MAX], *f;
	struct strbuf b = { 0 };

	clear_env();
	CU_ASSERT_EQUAL_FATAL(make_policy_setup(tmp, sizeof(tmp), NULL, NULL, 0), 0);

	/* A folder, a missing file. */
	expect_one_error(fixdir, NULL, "is a directory, not a configuration file");
	fixture(path, sizeof(path), "no-such-file.conf");
	expect_one_error(path, NULL, "no-such-file.conf: cannot read: No such file or directory");

	/* Nesting far beyond any parser stack. */
	strbuf_printf(&b, "redis: ");
	for (int i = 0; i < 20000; i++)
		strbuf_printf(&b, "{ a: ");
	strbuf_printf(&b, "1;");
	CU_ASSERT_FALSE_FATAL(b.oom);
	f = write_tmp_file(tmp, "deep.conf", b.s);
	expect_one_error(f, tmp, "deep.conf:1: ");
	free(f);

	/* Valid nesting under an unknown key: reported once, not walked. */
	strbuf_reset(&b);
	strbuf_printf(&b, "agent: { policy_dir = \"p\"; };\njunk: ");
	for (int i = 0; i < 300; i++)
		strbuf_printf(&b, "{ a: ");
	strbuf_printf(&b, "{ }");
	for (int i = 0; i < 300; i++)
		strbuf_printf(&b, "; }");
	strbuf_printf(&b, ";\n");
	f = write_tmp_file(tmp, "nested.conf", b.s);
	expect_one_error(f, tmp, "nested.conf:2: unknown key \"junk\"");
	free(f);

	/* A file too large to be a configuration. */
	strbuf_reset(&b);
	for (int i = 0; i < 40000; i++)
		strbuf_printf(&b, "# a comment line that only takes room\n");
	f = write_tmp_file(tmp, "huge.conf", b.s);
	expect_one_error(f, tmp, "huge.conf: is too large");
	free(f);

	/* A folder where a policy file should be. */
	snprintf(path, sizeof(path), "%s/p/dir.conf", tmp);
	CU_ASSERT_EQUAL(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/main.conf", tmp);
	expect_one_error(path, tmp, "dir.conf: is a directory");
	strbuf_free(&b);
	remove_tree(tmp);
}

/* main.conf's redis section and one policy p/q.conf in a new folder; the folder's path in tmp. */
static char *
redis_setup(char *tmp, size_t len, const char *redis, const char *policy_extra, const char *stream)
{
	struct strbuf b = { 0 };
	char p[PATH_MAX + 8], *f;

	CU_ASSERT_EQUAL_FATAL(make_policy_setup(tmp, len, NULL, NULL, 0), 0);
	strbuf_printf(&b, "queue: {\n  name = \"q\"; stream = \"%s\";\n  scale: { target = \"none\"; };\n%s};\n",
	    stream, policy_extra);
	snprintf(p, sizeof(p), "%s/p", tmp);
	free(write_tmp_file(p, "q.conf", b.s));
	strbuf_reset(&b);
	strbuf_printf(&b, "agent: { policy_dir = \"p\"; };\n%s\n", redis);
	f = write_tmp_file(tmp, "main.conf", b.s);
	strbuf_free(&b);
	return f;
}

/* The redis section, a policy's own redis block, and their errors (scaleno.conf(5) "redis"). */
static void
test_redis_section(void)
{
	static const struct {
		const char *redis, *policy, *stream, *needle;
	} bad[] = {
		{ "redis: { address = \"127.0.0.1:1\";\n sentinels = [ \"127.0.0.1:2\" ]; master_name = \"m\"; };",
		  "", "s", "main.conf:3: redis.address and redis.sentinels are both given: give exactly one" },
		{ "redis: { sentinels = [ \"127.0.0.1:2\" ];\n cluster = [ \"127.0.0.1:3\" ]; };", "", "{s}",
		  "main.conf:3: redis.sentinels and redis.cluster are both given" },
		{ "redis: { sentinels = [ \"127.0.0.1:2\" ]; };", "", "s",
		  "main.conf:2: redis.master_name is required with redis.sentinels" },
		{ "redis: { sentinels = [ ]; master_name = \"m\"; };", "", "s",
		  "main.conf:2: redis.sentinels: must not be empty" },
		{ "redis: { cluster = [ \"localhost\" ]; };", "", "{s}",
		  "main.conf:2: redis.cluster element 1: \"localhost\" is not \"host:port\"" },
		{ "redis: { sentinels = [ \"127.0.0.1:0\" ]; master_name = \"m\"; };", "", "s",
		  "redis.sentinels element 1: \"127.0.0.1:0\" is not \"host:port\"" },
		{ "redis: { cluster = [ \"127.0.0.1:7000\" ];\n database = 2; };", "", "{s}",
		  "main.conf:3: redis.database (2) cannot be used with redis.cluster" },
		{ "redis: { master_name = \"m\"; };", "", "s",
		  "main.conf:2: redis.master_name applies only with redis.sentinels" },
		{ "redis: { cluster = [ \"127.0.0.1:7000\" ]; };", "", "plain",
		  "q.conf:2: stream \"plain\" has no hash tag" },
		{ "redis: { cluster = [ \"127.0.0.1:7000\" ]; };", "", "{}x",
		  "stream \"{}x\" has no hash tag" },
		/* A policy's own block: the same rules, on the merged result. */
		{ "", "  redis: { address = \"127.0.0.1:1\";\n cluster = [ \"127.0.0.1:2\" ]; };\n", "{s}",
		  "q.conf:5: redis.address and redis.cluster are both given" },
		{ "", "  redis: { cluster = [ \"127.0.0.1:2\" ]; };\n", "s",
		  "q.conf:2: stream \"s\" has no hash tag" },
		{ "redis: { database = 3; };", "  redis: { cluster = [ \"127.0.0.1:2\" ]; };\n", "{s}",
		  "redis.database (3) cannot be used with redis.cluster" },
		{ "", "  redis: { sentinels = [ \"127.0.0.1:2\" ]; };\n", "s",
		  "q.conf:4: redis.master_name is required with redis.sentinels" },
		{ "", "  redis: { adress = \"127.0.0.1:2\"; };\n", "s",
		  "unknown key \"redis.adress\" (did you mean \"redis.address\"?)" },
	};
	char tmp[64], *f;
	struct config *cfg;
	struct cfg_errors errs = { 0 };

	clear_env();
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		f = redis_setup(tmp, sizeof(tmp), bad[i].redis, bad[i].policy, bad[i].stream);
		expect_one_error(f, tmp, bad[i].needle);
		free(f);
		remove_tree(tmp);
	}

	/* Sentinel in the main file; the policy inherits it but for its own database. */
	f = redis_setup(tmp, sizeof(tmp), "redis: { sentinels = [ \"127.0.0.1:26379\", \"[::1]:26380\" ];\n"
	    " master_name = \"queues\"; database = 2; command_timeout = \"3s\"; };",
	    "  redis: { database = 5; };\n", "s");
	CU_ASSERT_EQUAL_FATAL(config_load(f, &cfg, &errs), 0);
	CU_ASSERT_EQUAL(cfg->redis.nsentinels, 2);
	CU_ASSERT_STRING_EQUAL(cfg->redis.address, "sentinel queues");
	CU_ASSERT_EQUAL(cfg->queues[0].redis.nsentinels, 2);
	CU_ASSERT_STRING_EQUAL(cfg->queues[0].redis.sentinels[1], "[::1]:26380");
	CU_ASSERT_STRING_EQUAL(cfg->queues[0].redis.master_name, "queues");
	CU_ASSERT_EQUAL(cfg->queues[0].redis.database, 5);
	CU_ASSERT_EQUAL(cfg->queues[0].redis.command_timeout_ms, 3000);
	CU_ASSERT_TRUE(cfg->queues[0].own_redis);
	config_free(cfg);
	free(f);
	remove_tree(tmp);

	/* A policy on its own server keeps the main file's password and timeouts. */
	f = redis_setup(tmp, sizeof(tmp), "redis: { address = \"127.0.0.1:7001\"; password_file = \"pw\";"
	    " connect_timeout = \"1s\"; };", "  redis: { cluster = [ \"127.0.0.1:7000\" ]; };\n", "{s}");
	{
		char pw[PATH_MAX];

		snprintf(pw, sizeof(pw), "%s", tmp);
		free(write_tmp_file(pw, "pw", "secret\n"));
	}
	CU_ASSERT_EQUAL_FATAL(config_load(f, &cfg, &errs), 0);
	CU_ASSERT_STRING_EQUAL(cfg->redis.address, "127.0.0.1:7001");
	CU_ASSERT_EQUAL(cfg->queues[0].redis.ncluster, 1);
	CU_ASSERT_EQUAL(cfg->queues[0].redis.nsentinels, 0);
	CU_ASSERT_STRING_EQUAL(cfg->queues[0].redis.address, "cluster 127.0.0.1:7000");
	CU_ASSERT_STRING_EQUAL(cfg->queues[0].redis.password, "secret");
	CU_ASSERT_EQUAL(cfg->queues[0].redis.connect_timeout_ms, 1000);
	CU_ASSERT_FALSE(cfg->redis.ncluster > 0);
	config_free(cfg);
	free(f);
	remove_tree(tmp);

	/* No redis block: the queue is on the main file's server. */
	f = redis_setup(tmp, sizeof(tmp), "", "", "s");
	CU_ASSERT_EQUAL_FATAL(config_load(f, &cfg, &errs), 0);
	CU_ASSERT_STRING_EQUAL(cfg->queues[0].redis.address, "127.0.0.1:6379");
	CU_ASSERT_FALSE(cfg->queues[0].own_redis);
	config_free(cfg);
	free(f);
	remove_tree(tmp);
	CU_ASSERT_TRUE(config_has_hash_tag("{a}") && config_has_hash_tag("x{a}y{") &&
	    !config_has_hash_tag("{}a") && !config_has_hash_tag("a}{") && !config_has_hash_tag("{a"));
	cfg_errors_free(&errs);
}

/*
 * Mangled copies of a good policy (bytes flipped, cut short, lines swapped):
 * each must load or fail with file:line messages, never crash (run under
 * ASan/UBSan with make SANITIZE=address,undefined).
 */
static void
test_mangled_policies(void)
{
	char src[PATH_MAX], tmp[64], main_path[PATH_MAX + 16], *text, *f;
	unsigned short seed[3] = { 1, 2, 3 };
	int loaded = 0, failed = 0;

	clear_env();
	fixture(src, sizeof(src), "good/policies.d/full.conf");
	CU_ASSERT_PTR_NOT_NULL_FATAL(text = slurp(src));
	CU_ASSERT_EQUAL_FATAL(make_policy_setup(tmp, sizeof(tmp), NULL, NULL, 0), 0);
	snprintf(main_path, sizeof(main_path), "%s/main.conf", tmp);
	size_t n = strlen(text);
	for (int i = 0; i < 300; i++) {
		char *m = strdup(text);
		int rc;

		CU_ASSERT_PTR_NOT_NULL_FATAL(m);
		for (int j = 0; j < 1 + i % 4; j++) {
			size_t at = (size_t)(erand48(seed) * (double)n);
			static const char junk[] = "{}[]();=:\",.%-0123456789eL \n#xyz";

			m[at] = junk[(size_t)(erand48(seed) * (sizeof(junk) - 1))];
		}
		if (i % 10 == 0)
			m[(size_t)(erand48(seed) * (double)n)] = '\0';
		f = write_tmp_file(tmp, "p/m.conf", m);
		CU_ASSERT_PTR_NOT_NULL_FATAL(f);
		char *got = load_messages(main_path, tmp, &rc);
		if (rc == 0) {
			loaded++;
		} else {
			failed++;
			/* every line is "m.conf..." and non-empty */
			CU_ASSERT_EQUAL(strncmp(got, "m.conf", 6), 0);
		}
		free(got);
		free(f);
		free(m);
	}
	CU_ASSERT_TRUE(failed > 0);
	fprintf(stderr, "mangled policies: %d loaded, %d rejected\n", loaded, failed);
	free(text);
	remove_tree(tmp);
}

/* ---- helpers ---- */

static void
test_helpers(void)
{
	struct step_limit pct = { 50, true }, cnt = { 3, false }, tiny = { 10, true };

	CU_ASSERT_EQUAL(config_step_allowed(&pct, 10), 5);
	CU_ASSERT_EQUAL(config_step_allowed(&pct, 1), 1);
	CU_ASSERT_EQUAL(config_step_allowed(&pct, 0), 1);
	CU_ASSERT_EQUAL(config_step_allowed(&tiny, 5), 1);
	CU_ASSERT_EQUAL(config_step_allowed(&tiny, 95), 9);
	CU_ASSERT_EQUAL(config_step_allowed(&cnt, 100), 3);
	CU_ASSERT_STRING_EQUAL(config_mode_name(MODE_DROP), "drop");
	CU_ASSERT_STRING_EQUAL(config_mode_name(MODE_ORDERED_DROP), "ordered-drop");
	CU_ASSERT_STRING_EQUAL(config_mode_name(MODE_DLQ), "dead-letter");
	CU_ASSERT_STRING_EQUAL(config_mode_name(MODE_HALT), "halt");

	struct cfg_errors e = { 0 };
	cfg_errors_add(&e, "a.conf", 3, "x %d", 1);
	cfg_errors_add(&e, "a.conf", 0, "y");
	cfg_errors_add(&e, NULL, 0, "z");
	CU_ASSERT_EQUAL_FATAL(e.n, 3);
	CU_ASSERT_STRING_EQUAL(e.msgs[0], "a.conf:3: x 1");
	CU_ASSERT_STRING_EQUAL(e.msgs[1], "a.conf: y");
	CU_ASSERT_STRING_EQUAL(e.msgs[2], "z");
	cfg_errors_free(&e);
	CU_ASSERT_EQUAL(e.n, 0);
	config_free(NULL);
}

/* Durations are decimal: no hexadecimal, exponent, infinity or blanks in front. */
static void
test_duration_syntax(void)
{
	static const struct {
		const char *s;
		int64_t ms;	/* -1: refused */
	} cases[] = {
		{ "0x10s", -1 }, { "0X1Ams", -1 }, { "1e3s", -1 }, { "inf", -1 }, { "infs", -1 },
		{ "nans", -1 }, { " 5s", -1 }, { "+5s", -1 }, { ".5s", -1 }, { "5..s", -1 },
		{ "5", -1 }, { "s", -1 }, { "-1s", -1 },
		{ "0s", 0 }, { "500ms", 500 }, { "1.5s", 1500 }, { "2m", 120000 }, { "1h", 3600000 },
		{ "007s", 7000 },
	};
	char err[256];

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		int64_t ms = -7;
		int rc = util_parse_duration(cases[i].s, &ms, err, sizeof(err));

		CU_ASSERT_EQUAL(rc, cases[i].ms < 0 ? -1 : 0);
		if (cases[i].ms >= 0)
			CU_ASSERT_EQUAL(ms, cases[i].ms);
		if (rc != (cases[i].ms < 0 ? -1 : 0))
			fprintf(stderr, "duration \"%s\": rc %d\n", cases[i].s, rc);
	}
	CU_ASSERT_EQUAL(util_parse_duration("0x10s", &(int64_t){ 0 }, err, sizeof(err)), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "invalid duration \"0x10s\""));
}

/* A secret file must be a regular file: a FIFO is refused at once, never waited on. */
static void
test_secret_files(void)
{
	char dir[] = "/tmp/scaleno-secret.XXXXXX", fifo[64], file[64], conf[64], cmd[PATH_MAX + 128];
	char err[256], out[4096] = "";
	FILE *f, *p;
	size_t n;
	char *v;

	CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	snprintf(file, sizeof(file), "%s/token", dir);
	snprintf(conf, sizeof(conf), "%s/main.conf", dir);
	CU_ASSERT_EQUAL_FATAL(mkfifo(fifo, 0600), 0);
	v = util_read_secret(fifo, 4096, err, sizeof(err));
	CU_ASSERT_PTR_NULL(v);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "is a FIFO, not a regular file"));
	v = util_read_secret(dir, 4096, err, sizeof(err));
	CU_ASSERT_PTR_NULL(v);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "is a directory, not a regular file"));
	f = fopen(file, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs("tok-1\n", f);
	fclose(f);
	CU_ASSERT_EQUAL(chmod(file, 0644), 0);
	v = util_read_secret(file, 4096, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL(v);
	if (v != NULL)
		CU_ASSERT_STRING_EQUAL(v, "tok-1");
	free(v);
	/* scaleno check: the FIFO is an error (at once), a world-readable file a warning. */
	f = fopen(conf, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fprintf(f, "nomad: { token_file = \"%s\"; };\nredis: { password_file = \"%s\"; };\n"
	    "agent: { policy_dir = \".\"; };\n", fifo, file);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "timeout 10 %s/build/scaleno check -c %s 2>&1", top, conf);
	p = popen(cmd, "r");
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	CU_ASSERT_EQUAL(WEXITSTATUS(pclose(p)), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "nomad.token_file: "));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "is a FIFO, not a regular file"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "main.conf:2: redis.password_file: "));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "is readable by every user (mode 0644)"));
	CU_ASSERT_PTR_NULL(strstr(out, "tok-1"));
	unlink(fifo);
	unlink(file);
	unlink(conf);
	rmdir(dir);
}

/* ---- the table against the documentation and the examples ---- */

/* What the man page shows as the default: "Qq x" for strings, "Li x" otherwise. */
static void
doc_default(const struct cfg_key *k, char *out, size_t len)
{
	struct strbuf b = { 0 };

	if (k->def[0] == '"') {
		strbuf_printf(&b, ".Qq %.*s", (int)strlen(k->def) - 2, k->def + 1);
		if (strcmp(k->def, "\"\"") == 0)
			strbuf_reset(&b), strbuf_printf(&b, ".Qq \"\"");
	} else {
		strbuf_printf(&b, ".Li ");
		for (const char *p = k->def; *p; p++)
			strbuf_printf(&b, *p == '"' ? "\\(dq" : "%c", *p);
	}
	util_strlcpy(out, b.s != NULL ? b.s : "", len);
	strbuf_free(&b);
}

static void
test_docs_match_table(void)
{
	char path[PATH_MAX], *man;

	snprintf(path, sizeof(path), "%s/man/scaleno.conf.5", top);
	CU_ASSERT_PTR_NOT_NULL_FATAL(man = slurp(path));
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct cfg_key *k = &config_keys[i];
		char head[256], def[256];
		const char *at, *end;

		snprintf(head, sizeof(head), "\n.It Ic %s Pq %s\n", k->path, config_type_name(k->type));
		if ((at = strstr(man, head)) == NULL) {
			fprintf(stderr, "scaleno.conf(5) lacks the line \"%.*s\"\n", (int)strlen(head) - 2, head + 1);
			CU_FAIL("key not documented");
			continue;
		}
		at += strlen(head);
		if ((end = strstr(at, "\n.It ")) == NULL)
			end = at + strlen(at);
		if (k->def == NULL) {
			if (memmem(at, (size_t)(end - at), "Default", 7) == NULL) {
				fprintf(stderr, "scaleno.conf(5): %s does not say what its default is\n", k->path);
				CU_FAIL("derived default not documented");
			}
			continue;
		}
		doc_default(k, def, sizeof(def));
		if (memmem(at, (size_t)(end - at), def, strlen(def)) == NULL) {
			fprintf(stderr, "scaleno.conf(5): %s does not show its default as \"%s\"\n", k->path, def);
			CU_FAIL("default not documented");
		}
	}
	free(man);
}

/* Does a comment line of file (or of a *.conf in folder) show "# ... name = "? */
static bool
commented_example(const char *rel, const char *name)
{
	char path[PATH_MAX], pat[128];
	struct dirent **ents = NULL;
	bool found = false;
	int n;

	snprintf(pat, sizeof(pat), " %s = ", name);
	snprintf(path, sizeof(path), "%s/%s", top, rel);
	if ((n = scandir(path, &ents, NULL, alphasort)) < 0) {
		char *text = slurp(path);

		for (char *line = text; line != NULL && !found; line = strchr(line + 1, '\n')) {
			char *end = strchr(line + 1, '\n'), *hash = strchr(line, '#');

			found = hash != NULL && (end == NULL || hash < end) && strstr(hash, pat) != NULL &&
			    (end == NULL || strstr(hash, pat) < end);
		}
		free(text);
		return found;
	}
	for (int i = 0; i < n; i++) {
		char f[PATH_MAX * 2];

		snprintf(f, sizeof(f), "%s/%s", rel, ents[i]->d_name);
		if (!found && ents[i]->d_name[0] != '.')
			found = commented_example(f, name);
		free(ents[i]);
	}
	free(ents);
	return found;
}

static void
test_examples_match_table(void)
{
	char path[PATH_MAX], pdir[PATH_MAX + 16];
	config_t main_cf, pol[8];
	int npol = 0;
	struct dirent **ents = NULL;
	int n;

	snprintf(path, sizeof(path), "%s/etc/scaleno.conf", top);
	config_init(&main_cf);
	CU_ASSERT_EQUAL_FATAL(config_read_file(&main_cf, path), CONFIG_TRUE);
	snprintf(pdir, sizeof(pdir), "%s/etc/policies.d", top);
	n = scandir(pdir, &ents, NULL, alphasort);
	CU_ASSERT_TRUE_FATAL(n > 0);
	for (int i = 0; i < n; i++) {
		size_t l = strlen(ents[i]->d_name);

		if (npol < (int)ARRAY_LEN(pol) && l > 5 && strcmp(ents[i]->d_name + l - 5, ".conf") == 0) {
			char f[PATH_MAX * 2];

			snprintf(f, sizeof(f), "%s/%s", pdir, ents[i]->d_name);
			config_init(&pol[npol]);
			CU_ASSERT_EQUAL(config_read_file(&pol[npol], f), CONFIG_TRUE);
			npol++;
		}
		free(ents[i]);
	}
	free(ents);
	CU_ASSERT_TRUE(npol >= 4);	/* one per mode */
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct cfg_key *k = &config_keys[i];
		bool found = false;

		if (k->scope == CFG_MAIN) {
			found = config_lookup(&main_cf, k->path) != NULL;
		} else {
			char qp[128];

			snprintf(qp, sizeof(qp), "queue.%s", k->path);
			for (int j = 0; j < npol && !found; j++)
				found = config_lookup(&pol[j], qp) != NULL;
		}
		/*
		 * address, sentinels and cluster exclude each other, and a policy's
		 * own redis block is the exception: a commented example will do.
		 */
		if (!found && strncmp(k->path, "redis.", 6) == 0)
			found = commented_example(k->scope == CFG_MAIN ? "etc/scaleno.conf" : "etc/policies.d",
			    k->path + 6);
		if (!found) {
			fprintf(stderr, "etc/ has no example of %s\n", k->path);
			CU_FAIL("key missing from etc/");
		}
	}
	config_destroy(&main_cf);
	for (int j = 0; j < npol; j++)
		config_destroy(&pol[j]);
}

/* ---- scaleno check ---- */

static int
run_check(const char *args, char *out, size_t outlen, bool with_stderr)
{
	const char *bin = getenv("SCALENO_BIN");
	char cmd[PATH_MAX * 3], binbuf[PATH_MAX + 16];
	FILE *p;
	size_t n = 0;
	int st;

	if (bin == NULL || *bin == '\0') {
		snprintf(binbuf, sizeof(binbuf), "%s/build/scaleno", top);
		bin = binbuf;
	}
	snprintf(cmd, sizeof(cmd), "cd '%s' && env -u NOMAD_ADDR -u NOMAD_TOKEN -u SCALENO_CONFIG '%s' check %s %s",
	    top, bin, args, with_stderr ? "2>&1" : "2>/dev/null");
	if ((p = popen(cmd, "r")) == NULL)
		return -1;
	if (out != NULL) {
		n = fread(out, 1, outlen - 1, p);
		out[n] = '\0';
	} else {
		char sink[4096];

		while (fread(sink, 1, sizeof(sink), p) > 0)
			;
	}
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void
test_check_exit_codes(void)
{
	char out[8192];

	CU_ASSERT_EQUAL(run_check("-c etc/scaleno.conf", out, sizeof(out), false), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "payments: mode 3 dead-letter (loss critical, order irrelevant), "
	    "stream payments group payments partitions 1, nomad job payments-worker group worker [2..60], "
	    "handler pipe /usr/local/bin/charge (4 processes)\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\nconfiguration OK: 4 queues\n"));
	CU_ASSERT_EQUAL(run_check("-q -c etc/scaleno.conf", out, sizeof(out), false), 0);
	CU_ASSERT_STRING_EQUAL(out, "");
	CU_ASSERT_EQUAL(run_check("-c tests/fixtures/config/bad-unknown.conf", out, sizeof(out), false), 1);
	CU_ASSERT_STRING_EQUAL(out, "");
	CU_ASSERT_EQUAL(run_check("-c tests/fixtures/config/bad-unknown.conf", out, sizeof(out), true), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "tests/fixtures/config/bad-unknown.conf:2: unknown key \"redis.adress\" "
	    "(did you mean \"redis.address\"?)\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\nscaleno check: configuration is invalid (10 errors)\n"));
	CU_ASSERT_EQUAL(run_check("-c tests/fixtures/config/no-such.conf", NULL, 0, false), 1);
	CU_ASSERT_EQUAL(run_check("-c tests/fixtures/config", NULL, 0, false), 1);
	CU_ASSERT_EQUAL(run_check("-x", out, sizeof(out), true), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "usage: scaleno check"));
	CU_ASSERT_EQUAL(run_check("-c", NULL, 0, false), 1);
	CU_ASSERT_EQUAL(run_check("-c etc/scaleno.conf extra", NULL, 0, false), 1);
	CU_ASSERT_EQUAL(run_check("-h", out, sizeof(out), false), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "usage: scaleno check"));
	CU_ASSERT_EQUAL(run_check("-k", out, sizeof(out), false), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "queue.worker.kill_timeout\tduration\t\"5s\"\t"));
}

int
main(void)
{
	const char *t = getenv("SCALENO_TOP");
	CU_pSuite s;

	util_strlcpy(top, t != NULL && *t ? t : ".", sizeof(top));
	snprintf(fixdir, sizeof(fixdir), "%s/tests/fixtures/config", top);
	if (realpath(fixdir, fixreal) == NULL) {
		fprintf(stderr, "cannot find %s: %s (run from the top of the tree)\n", fixdir, strerror(errno));
		return 1;
	}
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite("config", NULL, NULL);
	CU_add_test(s, "good files: values and defaults", test_good_values);
	CU_add_test(s, "empty main file: defaults", test_main_defaults);
	CU_add_test(s, "NOMAD_* environment", test_env);
	CU_add_test(s, "no Nomad secrets for worker commands", test_no_nomad_secrets);
	CU_add_test(s, "bad fixtures: exact messages", test_bad_fixtures);
	CU_add_test(s, "every bad fixture is listed", test_every_fixture_listed);
	CU_add_test(s, "generated bad files", test_bad_generated);
	CU_add_test(s, "mangled policies never crash", test_mangled_policies);
	CU_add_test(s, "helpers", test_helpers);
	CU_add_test(s, "duration syntax", test_duration_syntax);
	CU_add_test(s, "secret files", test_secret_files);
	CU_add_test(s, "redis section and a policy's own redis block", test_redis_section);
	CU_add_test(s, "every key in scaleno.conf(5)", test_docs_match_table);
	CU_add_test(s, "every key in etc/", test_examples_match_table);
	CU_add_test(s, "scaleno check exit codes", test_check_exit_codes);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	unsigned failures = CU_get_number_of_failures();
	CU_cleanup_registry();
	return failures != 0;
}
