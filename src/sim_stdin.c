/*
 * sim_stdin.c — `scaleno simulate --stdin`: JSON samples in, the decision
 * engine's JSON decisions out, one per line (scaleno-simulate(1)).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "decide.h"
#include "sample.h"
#include "simulate.h"
#include "util.h"

/* A number field: 0 found, 1 absent (and not required), -1 wrong (message in err). */
static int
json_number(const cJSON *o, const char *name, bool required, bool integer, double *v, char *err, size_t len)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);

	if (it == NULL || cJSON_IsNull(it)) {
		if (!required)
			return 1;
		snprintf(err, len, "missing field \"%s\"", name);
		return -1;
	}
	if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble)) {
		snprintf(err, len, "field \"%s\" must be a number", name);
		return -1;
	}
	if (integer && (it->valuedouble < 0 || it->valuedouble != floor(it->valuedouble) ||
	    it->valuedouble > 9e15)) {
		snprintf(err, len, "field \"%s\" must be a whole number >= 0", name);
		return -1;
	}
	*v = it->valuedouble;
	return 0;
}

static int
json_bool(const cJSON *o, const char *name, bool def, bool *v, char *err, size_t len)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);

	*v = def;
	if (it == NULL || cJSON_IsNull(it))
		return 0;
	if (!cJSON_IsBool(it)) {
		snprintf(err, len, "field \"%s\" must be true or false", name);
		return -1;
	}
	*v = cJSON_IsTrue(it);
	return 0;
}

/* Parse one sample line into raw and in. 0, or -1 with a message in err. */
static int
parse_sample(const char *line, struct raw_sample *raw, struct decide_input *in, char *err, size_t len)
{
	static const char *const counters[] = { "lag", "pending", "entries_added", "entries_read" };
	cJSON *o = cJSON_Parse(line);
	double v, desired, running;
	int64_t *dst[] = { &raw->lag, &raw->pending, &raw->entries_added, &raw->entries_read };
	int rc = -1;

	memset(raw, 0, sizeof(*raw));
	memset(in, 0, sizeof(*in));
	if (o == NULL) {
		snprintf(err, len, "not valid JSON");
		return -1;
	}
	if (!cJSON_IsObject(o)) {
		snprintf(err, len, "expected a JSON object");
		goto out;
	}
	if (json_number(o, "t", true, false, &raw->t, err, len) == -1 ||
	    json_bool(o, "ok", true, &raw->ok, err, len) == -1 ||
	    json_bool(o, "nomad_ok", true, &in->nomad_ok, err, len) == -1 ||
	    json_bool(o, "job_stopped", false, &in->job_stopped, err, len) == -1 ||
	    json_bool(o, "lag_estimated", false, &raw->lag_estimated, err, len) == -1 ||
	    json_number(o, "desired", true, true, &desired, err, len) == -1 ||
	    json_number(o, "running", true, true, &running, err, len) == -1)
		goto out;
	/* A failed reading ("ok": false) need not carry the counters. */
	for (size_t i = 0; i < ARRAY_LEN(counters); i++) {
		switch (json_number(o, counters[i], raw->ok, true, &v, err, len)) {
		case -1:
			goto out;
		case 0:
			*dst[i] = (int64_t)v;
			break;
		default:
			break;
		}
	}
	if (json_number(o, "oldest_age_ms", false, true, &v, err, len) == -1)
		goto out;
	raw->oldest_age_ms = (int64_t)(v > 0 ? v : 0);
	if (desired > 1e6 || running > 1e6) {
		snprintf(err, len, "desired and running must be below 1000000");
		goto out;
	}
	in->desired = (int)desired;
	in->running = (int)running;
	in->now = raw->t;
	rc = 0;
out:
	cJSON_Delete(o);
	return rc;
}

static int
print_decision(FILE *out, const struct decision *d)
{
	cJSON *o = cJSON_CreateObject();
	char *s = NULL;
	int rc = -1;

	if (o == NULL || cJSON_AddNumberToObject(o, "t", d->t) == NULL ||
	    cJSON_AddNumberToObject(o, "count", d->count) == NULL ||
	    cJSON_AddStringToObject(o, "direction", decide_direction_name(d->dir)) == NULL ||
	    cJSON_AddStringToObject(o, "reason", d->reason) == NULL ||
	    (s = cJSON_PrintUnformatted(o)) == NULL)
		goto out;
	fputs(s, out);
	fputc('\n', out);
	rc = fflush(out) == 0 ? 0 : -1;
out:
	free(s);
	cJSON_Delete(o);
	return rc;
}

long
sim_stdin(const struct queue_policy *q, FILE *in, FILE *out, FILE *errf)
{
	const struct scale_conf *sc = &q->scale;
	struct sample_state ss;
	struct decide_state ds;
	struct raw_sample raw;
	struct decide_input din;
	struct signals sig;
	struct decision d;
	char *line = NULL, err[160];
	size_t cap = 0;
	long lineno = 0, bad = 0;
	double last_t = -INFINITY, interval = (double)sc->interval_ms / 1000.0;

	sample_state_init(&ss, 3.0 * (interval > 0 ? interval : 1.0));
	decide_state_init(&ds);
	while (getline(&line, &cap, in) != -1) {
		lineno++;
		if (line[strspn(line, " \t\r\n")] == '\0')
			continue;
		if (parse_sample(line, &raw, &din, err, sizeof(err)) == -1) {
			fprintf(errf, "scaleno simulate: stdin line %ld: %s; line skipped\n", lineno, err);
			bad++;
			continue;
		}
		if (raw.t <= last_t) {
			fprintf(errf, "scaleno simulate: stdin line %ld: t %g is not after the previous %g; line skipped\n",
			    lineno, raw.t, last_t);
			bad++;
			continue;
		}
		last_t = raw.t;
		sample_update(&ss, &raw, &sig);
		din.sig = &sig;
		din.sample_age_s = 0;
		decide_next(&ds, sc, q->partitions, q->order_critical, &din, &d);
		/* Whoever runs the world carries the decision out. */
		if (d.dir != DIR_NONE)
			decide_applied(&ds, &d, din.now);
		if (print_decision(out, &d) == -1) {
			fprintf(errf, "scaleno simulate: writing the decision: %s\n", strerror(errno));
			bad++;
			break;
		}
	}
	free(line);
	return bad;
}
