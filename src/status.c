/*
 * status.c — `scaleno status`: one line per queue. The running agent knows
 * the most (rates, decisions, reasons), so its /v1/status is asked first;
 * without an agent the command samples Redis and Nomad itself and leaves
 * out what needs history.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "agent_view.h"
#include "cli.h"
#include "config.h"
#include "httpc.h"
#include "log.h"
#include "nomad.h"
#include "redis_sample.h"
#include "status_halts.h"
#include "util.h"

#define STATUS_MAX_BODY (8 << 20)
/* The agent answers from a snapshot: it is there at once or not at all. */
#define STATUS_AGENT_TIMEOUT_MS 2000
#define STATUS_AGENT_CONNECT_MS 500

/* GET http://<listen>/v1/status from the agent; NULL when none answers. Caller frees. */
static char *
status_from_agent(const char *listen)
{
	struct httpc_request r = { .timeout_ms = STATUS_AGENT_TIMEOUT_MS,
	    .connect_timeout_ms = STATUS_AGENT_CONNECT_MS, .reply_max = STATUS_MAX_BODY };
	struct strbuf body = { 0 };
	char url[300], err[256];
	long code = 0;

	if (listen == NULL || *listen == '\0')
		return NULL;
	snprintf(url, sizeof(url), "http://%s/v1/status", listen);
	r.url = url;
	if (httpc_request(&r, &code, &body, err, sizeof(err)) == -1 || code != 200 || body.oom) {
		strbuf_free(&body);
		return NULL;
	}
	return strbuf_steal(&body);
}

static double
jnum(const cJSON *o, const char *k, double dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static const char *
jstr(const cJSON *o, const char *k, const char *dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsString(v) && v->valuestring != NULL ? v->valuestring : dflt;
}

static bool
jbool(const cJSON *o, const char *k)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, k));
}

static void
status_header(void)
{
	printf("%-20s %-12s %8s %8s %8s %8s %9s %9s %8s %6s %8s  %s\n", "QUEUE", "MODE", "BACKLOG",
	    "UNDELIV", "PENDING", "OLDEST", "ARRIVAL/s", "DONE/s", "WORKERS", "HALTED", "DLQ",
	    "LAST DECISION");
}

/* Print one line; rates < 0 mean unknown, workers < 0 unknown. */
static void
status_line(const char *name, const char *mode, const cJSON *sample, double arrival, double done,
    int desired, int running, const char *decision)
{
	char workers[32], oldest[32], arr[32], dn[32], backlog[32];
	bool ok = jbool(sample, "ok");

	if (desired >= 0)
		snprintf(workers, sizeof(workers), "%d/%d", desired, running);
	else
		snprintf(workers, sizeof(workers), "?");
	snprintf(oldest, sizeof(oldest), ok ? "%.1fs" : "?", jnum(sample, "oldest_age_s", 0));
	snprintf(arr, sizeof(arr), arrival >= 0 ? "%.1f" : "-", arrival);
	snprintf(dn, sizeof(dn), done >= 0 ? "%.1f" : "-", done);
	snprintf(backlog, sizeof(backlog), ok ? "%s%.0f" : "?",
	    jbool(sample, "backlog_estimated") ? ">=" : "", jnum(sample, "backlog", 0));
	printf("%-20s %-12s %8s %8.0f %8.0f %8s %9s %9s %8s %6.0f %8.0f  %s\n", name, mode, backlog,
	    jnum(sample, "undelivered", 0), jnum(sample, "pending", 0), oldest, arr, dn, workers,
	    jnum(sample, "halted_partitions", 0), jnum(sample, "dlq_length", 0), decision);
}

/*
 * What Nomad adds to a decision: bounds narrower than the policy's (and who
 * set them), and a group Nomad cannot place (scaleno(8), "Nomad").
 */
static void
status_notes(const cJSON *nmd, char *buf, size_t len)
{
	const cJSON *bnd = cJSON_GetObjectItemCaseSensitive(nmd, "bounds");
	const char *src = jstr(bnd, "source", "policy");
	size_t n;

	buf[0] = '\0';
	if (strcmp(src, "policy") != 0)
		snprintf(buf, len, "[min %.0f max %.0f (%s)] ", jnum(bnd, "min", 0), jnum(bnd, "max", 0), src);
	n = strlen(buf);
	if (jbool(nmd, "blocked"))
		snprintf(buf + n, len - n, "[blocked: %.0f queued] ", jnum(nmd, "queued", 0));
}

static int
status_print_agent(const char *json, const char *only)
{
	cJSON *root = cJSON_Parse(json), *q;
	int shown = 0;

	if (root == NULL) {
		fprintf(stderr, "scaleno status: the agent's /v1/status is not JSON\n");
		return EXIT_RUNTIME;
	}
	status_header();
	cJSON_ArrayForEach(q, cJSON_GetObjectItemCaseSensitive(root, "queues")) {
		const cJSON *smp = cJSON_GetObjectItemCaseSensitive(q, "sample");
		const cJSON *nmd = cJSON_GetObjectItemCaseSensitive(q, "nomad");
		const cJSON *dec = cJSON_GetObjectItemCaseSensitive(q, "decision");
		const char *name = jstr(q, "name", "?");
		char decision[700];

		if (only != NULL && strcmp(only, name) != 0)
			continue;
		status_notes(nmd, decision, sizeof(decision));
		snprintf(decision + strlen(decision), sizeof(decision) - strlen(decision), "%s",
		    dec != NULL ? jstr(dec, "reason", "") : "-");
		status_line(name, jstr(q, "mode", "?"), smp, jnum(smp, "arrival_rate", -1),
		    jnum(smp, "completion_rate", -1),
		    jbool(nmd, "ok") ? (int)jnum(nmd, "desired", -1) : -1,
		    (int)jnum(nmd, "running", -1), decision);
		shown++;
	}
	cJSON_Delete(root);
	if (only != NULL && shown == 0) {
		fprintf(stderr, "scaleno status: the agent does not watch queue \"%s\"\n", only);
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

/* Without an agent: one sample of each queue and Nomad's counts, no history. */
static int
status_direct(const struct config *cfg, const char *only, bool json)
{
	const struct queue_policy **qv = calloc(cfg->nqueues + 1, sizeof(*qv));
	struct raw_sample *raw = calloc(cfg->nqueues + 1, sizeof(*raw));
	struct nomad_call *calls = calloc(cfg->nqueues + 1, sizeof(*calls));
	struct redis_servers *rq = redis_servers_new(cfg);
	struct nomad_client *nc = NULL;
	cJSON *root = NULL, *arr = NULL;
	struct signals sig;
	char err[1024];
	int n = 0, ncalls = 0, rc = EXIT_OK;
	bool redis_ok = false;

	if (qv == NULL || raw == NULL || calls == NULL || rq == NULL) {
		fprintf(stderr, "scaleno status: out of memory\n");
		rc = EXIT_RUNTIME;
		goto out;
	}
	for (size_t i = 0; i < cfg->nqueues; i++)
		if (only == NULL || strcmp(only, cfg->queues[i].name) == 0)
			qv[n++] = &cfg->queues[i];
	if (n == 0 && only != NULL) {
		fprintf(stderr, "scaleno status: no queue \"%s\" in %s\n", only, cfg->path);
		rc = EXIT_USAGE;
		goto out;
	}
	/* Each queue from its own server (scaleno.conf(5) "redis"). */
	if (redis_sample_servers(rq, qv, n, 0, raw, NULL, err, sizeof(err)) == 0)
		redis_ok = true;
	else
		fprintf(stderr, "scaleno status: %s\n", err);
	if ((nc = nomad_client_new(&cfg->nomad, err, sizeof(err))) != NULL) {
		for (int i = 0; i < n; i++) {
			if (qv[i]->scale.target != SCALE_TARGET_NOMAD)
				continue;
			nomad_call_init(&calls[ncalls++], NOMAD_CALL_STATUS, &qv[i]->scale);
		}
		if (ncalls > 0)
			nomad_perform(nc, calls, ncalls);
	} else
		fprintf(stderr, "scaleno status: nomad: %s\n", err);

	if ((root = cJSON_CreateObject()) == NULL ||
	    (arr = cJSON_AddArrayToObject(root, "queues")) == NULL) {
		rc = EXIT_RUNTIME;
		goto out;
	}
	cJSON_AddBoolToObject(root, "from_agent", false);
	cJSON_AddBoolToObject(root, "redis_ok", redis_ok);
	for (int i = 0, k = 0; i < n; i++) {
		struct queue_view v = { .name = qv[i]->name, .q = qv[i], .sig = &sig };
		cJSON *o;

		/* A queue whose server failed is marked by redis_sample_servers. */
		sample_levels(&raw[i], &sig);
		v.sample_ok = raw[i].ok;
		v.stream_missing = raw[i].stream_missing;
		v.group_missing = raw[i].group_missing;
		if (qv[i]->scale.target == SCALE_TARGET_NOMAD && nc != NULL) {
			const struct nomad_call *c = &calls[k++];

			v.nomad_known = true;
			v.nomad_ok = c->result == NOMAD_OK && c->group_found;
			v.desired = c->desired;
			v.running = c->running;
			v.placed = c->placed;
			v.job_stopped = c->job_stopped;
			v.nomad_last = c->result;
			v.nomad_error = c->error;
		}
		if ((o = agent_view_json(&v)) == NULL)
			break;
		cJSON_AddItemToArray(arr, o);
	}
	if (json) {
		char *txt = cJSON_PrintUnformatted(root);

		if (txt != NULL)
			printf("%s\n", txt);
		cJSON_free(txt);
	} else {
		cJSON *q;

		status_header();
		cJSON_ArrayForEach(q, arr) {
			const cJSON *nmd = cJSON_GetObjectItemCaseSensitive(q, "nomad");
			const char *e = jstr(nmd, "error", "");
			char why[300];

			snprintf(why, sizeof(why), "(no agent answering%s%s)", *e ? "; nomad: " : "", e);
			status_line(jstr(q, "name", "?"), jstr(q, "mode", "?"),
			    cJSON_GetObjectItemCaseSensitive(q, "sample"), -1, -1,
			    jbool(nmd, "ok") ? (int)jnum(nmd, "desired", -1) : -1,
			    (int)jnum(nmd, "running", -1), why);
		}
	}
	if (!redis_ok)
		rc = EXIT_RUNTIME;
out:
	cJSON_Delete(root);
	nomad_client_free(nc);
	redis_servers_free(rq);
	free(qv);
	free(raw);
	free(calls);
	return rc;
}

static void
status_usage(FILE *f)
{
	fprintf(f, "usage: scaleno status [-c FILE] [-q QUEUE] [--json]\n");
}

int
cmd_status(int argc, char **argv)
{
	static const struct cli_opt opts[] = {
		{ 'j', "json", NULL },
		{ 0, NULL, NULL },
	};
	struct cli c = { .cmd = "status", .usage = status_usage,
	    .flags = CLI_CONFIG | CLI_QUEUE_OPTIONAL | CLI_NOMAD, .opts = opts, .max_args = 0 };
	struct cli_queue x = { 0 };
	const char *only;
	char *agent_json;
	bool json = false;
	int ch, rc;

	while ((ch = cli_next(&c, argc, argv)) > 0)
		if (ch == 'j')
			json = true;
	if (ch == CLI_STOP)
		return c.rc;
	log_init("scaleno", LOG_LVL_ERROR, LOG_FMT_TEXT, false);
	if ((rc = cli_open(&c, &x)) != EXIT_OK) {
		cli_close(&x);
		return rc;
	}
	only = c.queue;
	if ((agent_json = status_from_agent(x.cfg->agent.listen)) != NULL) {
		if (json) {
			printf("%s\n", agent_json);
			rc = EXIT_OK;
		} else
			rc = status_print_agent(agent_json, only);
		free(agent_json);
	} else
		rc = status_direct(x.cfg, only, json);
	if (rc == EXIT_OK && x.q != NULL && !json && status_halts_print(x.cfg, x.q) < 0)
		rc = EXIT_RUNTIME;
	cli_close(&x);
	return rc;
}
