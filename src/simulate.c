/*
 * simulate.c — see include/simulate.h and scaleno-simulate(1).
 *
 * The point of the model is honesty, not fidelity: it drives the very
 * sample_update and decide_next the agent runs, on the model's clock, so a
 * weakness of the engine shows here before it shows in production.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "config.h"
#include "decide.h"
#include "log.h"
#include "sample.h"
#include "simulate.h"
#include "util.h"

#define MAX_TRACE_S (10 * 86400)	/* ten days of seconds */
#define MAX_ARRIVALS 1e9		/* per second; keeps every count exact in a double */
#define DEFAULT_SERVICE_RATE 10.0
#define SVG_POINTS 1000			/* points per line, at most */

/* ---- traces ---- */

void
sim_trace_free(struct sim_trace *tr)
{
	free(tr->arrivals);
	tr->arrivals = NULL;
	tr->n = 0;
}

static int
trace_put(struct sim_trace *tr, size_t *cap, size_t t, double v)
{
	size_t ncap;
	double *p;

	if (t >= *cap) {
		ncap = *cap ? *cap : 1024;
		while (ncap <= t)
			ncap *= 2;
		p = realloc(tr->arrivals, ncap * sizeof(*p));
		if (p == NULL)
			return -1;
		memset(p + *cap, 0, (ncap - *cap) * sizeof(*p));
		tr->arrivals = p;
		*cap = ncap;
	}
	tr->arrivals[t] = v;
	if (t + 1 > tr->n)
		tr->n = t + 1;
	return 0;
}

int
sim_trace_load(const char *path, struct sim_trace *tr, char *err, size_t errlen)
{
	FILE *f;
	char *line = NULL, *p, *end;
	size_t linecap = 0, cap = 0;
	long lineno = 0;
	double t, v, last_t = -1;
	bool seen_data = false;
	int rc = -1;

	memset(tr, 0, sizeof(*tr));
	if ((f = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (getline(&line, &linecap, f) != -1) {
		lineno++;
		p = line + strspn(line, " \t\r\n");
		if (*p == '\0' || *p == '#')
			continue;
		errno = 0;
		t = strtod(p, &end);
		if (end == p) {
			if (!seen_data) {	/* the header */
				seen_data = true;
				continue;
			}
			snprintf(err, errlen, "%s:%ld: expected \"t,arrivals\" (two numbers)", path, lineno);
			goto out;
		}
		seen_data = true;
		end += strspn(end, " \t");
		if (*end != ',') {
			snprintf(err, errlen, "%s:%ld: expected a comma after t", path, lineno);
			goto out;
		}
		p = end + 1;
		v = strtod(p, &end);
		end += strspn(end, " \t\r\n");
		if (end == p || *end != '\0' || errno != 0) {
			snprintf(err, errlen, "%s:%ld: arrivals must be one number", path, lineno);
			goto out;
		}
		if (!(t >= 0) || t != floor(t) || t > MAX_TRACE_S) {
			snprintf(err, errlen, "%s:%ld: t must be whole seconds from 0 to %d", path, lineno,
			    MAX_TRACE_S);
			goto out;
		}
		if (t <= last_t) {
			snprintf(err, errlen, "%s:%ld: t %.0f is not after the previous %.0f", path, lineno, t,
			    last_t);
			goto out;
		}
		if (!isfinite(v) || v < 0 || v > MAX_ARRIVALS) {
			snprintf(err, errlen, "%s:%ld: arrivals must be a number from 0 to %.0f", path, lineno,
			    MAX_ARRIVALS);
			goto out;
		}
		if (trace_put(tr, &cap, (size_t)t, v) == -1) {
			snprintf(err, errlen, "%s:%ld: out of memory", path, lineno);
			goto out;
		}
		last_t = t;
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (tr->n == 0) {
		snprintf(err, errlen, "%s: no data lines (expected \"t,arrivals\")", path);
		goto out;
	}
	rc = 0;
out:
	free(line);
	fclose(f);
	if (rc == -1)
		sim_trace_free(tr);
	return rc;
}

/* ---- the queue model ---- */

struct world {
	double rate, startup;
	int desired, nslots;
	double *start_at;	/* per requested worker: when it consumes */
	double *cohort;		/* waiting messages by arrival second */
	size_t head;		/* oldest second that may hold some */
	int64_t added, done, backlog;
	double arr_carry, cap_carry;
};

static int
world_running(const struct world *w, double now)
{
	int i, n = 0;

	for (i = 0; i < w->desired; i++)
		if (w->start_at[i] <= now)
			n++;
	return n;
}

/* Second t: arrivals at its start, then service in arrival order. */
static void
world_step(struct world *w, size_t t, double arrivals)
{
	double total = arrivals + w->arr_carry, cap, take;
	int64_t n = (int64_t)floor(total);

	w->arr_carry = total - (double)n;
	w->cohort[t] = (double)n;
	w->added += n;
	w->backlog += n;
	cap = world_running(w, (double)t) * w->rate + w->cap_carry;
	while (w->head <= t && cap >= 1) {
		take = floor(fmin(cap, w->cohort[w->head]));
		w->cohort[w->head] -= take;
		cap -= take;
		w->done += (int64_t)take;
		w->backlog -= (int64_t)take;
		if (w->cohort[w->head] >= 1)
			break;
		w->head++;
	}
	/* Seconds without arrivals: skip them, so the head is always the oldest waiting one. */
	while (w->head <= t && w->cohort[w->head] < 1)
		w->head++;
	/* Unused capacity is lost; a fraction of a message is kept for the next second. */
	w->cap_carry = w->backlog > 0 ? fmin(cap, 1.0) : 0;
}

/* Oldest age at time now (the end of the last second stepped). */
static double
world_oldest(const struct world *w, double now)
{
	return (double)w->head < now ? now - (double)w->head : 0;
}

static void
world_set(struct world *w, int count, double now)
{
	int i;

	if (count > w->nslots)
		count = w->nslots;
	for (i = w->desired; i < count; i++)
		w->start_at[i] = now + w->startup;
	w->desired = count;
}

const char *
sim_algo_name(enum sim_algo a)
{
	switch (a) {
	case SIM_TARGET_VALUE:
		return "target-value";
	case SIM_HPA:
		return "hpa";
	case SIM_SCALENO:
		break;
	}
	return "scaleno";
}

void
sim_result_free(struct sim_result *r)
{
	for (size_t i = 0; r->timeline != NULL && i < r->n; i++)
		free(r->timeline[i].reason);
	free(r->timeline);
	r->timeline = NULL;
	r->n = 0;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int
summarize(struct sim_result *r, double max_age_s)
{
	double *ages, surge_at;
	size_t i, rank;
	long last_surge = -1;

	if ((ages = malloc(r->n * sizeof(*ages))) == NULL)
		return -1;
	for (i = 0; i < r->n; i++)
		ages[i] = r->timeline[i].arrivals;
	qsort(ages, r->n, sizeof(*ages), cmp_double);
	surge_at = SIM_SURGE_FACTOR * ages[r->n / 2];
	for (i = 0; i < r->n; i++) {
		const struct sim_point *p = &r->timeline[i];
		if (p->arrivals > surge_at)
			last_surge = (long)i;
		if (last_surge >= 0 && (double)((long)i - last_surge) < fmax(max_age_s, 1.0)) {
			r->surge_seconds++;
			if (p->oldest_age_s <= max_age_s)
				r->surge_within++;
		}
	}
	for (i = 0; i < r->n; i++) {
		const struct sim_point *p = &r->timeline[i];
		ages[i] = p->oldest_age_s;
		if (p->backlog > r->peak_backlog)
			r->peak_backlog = p->backlog;
		if (p->oldest_age_s > max_age_s)
			r->seconds_over++;
		if (p->oldest_age_s > r->max_age_seen_s)
			r->max_age_seen_s = p->oldest_age_s;
	}
	qsort(ages, r->n, sizeof(*ages), cmp_double);
	rank = (size_t)ceil(0.99 * (double)r->n);
	r->p99_age_s = ages[rank > 0 ? rank - 1 : 0];
	free(ages);
	return 0;
}

int
sim_run(const struct queue_policy *q, const struct sim_trace *tr, const struct sim_params *p,
    enum sim_algo algo, struct sim_result *out, char *err, size_t errlen)
{
	const struct scale_conf *sc = &q->scale;
	struct world w;
	struct sample_state ss;
	struct decide_state ds;
	struct baseline_state bs;
	struct signals sig;
	struct raw_sample raw;
	struct decide_input in;
	struct decision d;
	char why[256];
	long interval_s = lround((double)sc->interval_ms / 1000.0);
	double now;
	size_t t;
	int next, prev;

	memset(out, 0, sizeof(*out));
	memset(&w, 0, sizeof(w));
	out->algo = algo;
	if (interval_s < 1)
		interval_s = 1;
	w.rate = p->service_rate;
	w.startup = p->startup_s;
	w.nslots = sc->max > p->initial ? sc->max : p->initial;
	w.start_at = calloc((size_t)w.nslots + 1, sizeof(*w.start_at));
	w.cohort = calloc(tr->n + 1, sizeof(*w.cohort));
	out->timeline = calloc(tr->n, sizeof(*out->timeline));
	if (w.start_at == NULL || w.cohort == NULL || out->timeline == NULL) {
		snprintf(err, errlen, "out of memory for a %zu-second trace", tr->n);
		goto fail;
	}
	out->n = tr->n;		/* calloc'd: every reason NULL, so freeing is safe from here */
	/* The initial workers are already running. */
	w.desired = p->initial;
	for (int i = 0; i < w.desired; i++)
		w.start_at[i] = -INFINITY;

	sample_state_init(&ss, 3.0 * (double)interval_s);
	decide_state_init(&ds);
	if (algo != SIM_SCALENO)
		baseline_init(&bs, algo == SIM_HPA ? BASELINE_HPA : BASELINE_TARGET_VALUE, sc, 0);

	for (t = 0; t < tr->n; t++) {
		struct sim_point *pt = &out->timeline[t];

		out->worker_seconds += w.desired;
		world_step(&w, t, tr->arrivals[t]);
		now = (double)(t + 1);
		pt->t = now;
		pt->arrivals = tr->arrivals[t];
		pt->backlog = w.backlog;
		pt->oldest_age_s = world_oldest(&w, now);
		pt->dir = DIR_NONE;
		prev = w.desired;
		if ((t + 1) % (size_t)interval_s == 0) {
			if (algo == SIM_SCALENO) {
				memset(&raw, 0, sizeof(raw));
				raw.t = now;
				raw.ok = true;
				raw.lag = w.backlog;
				raw.entries_added = w.added;
				raw.entries_read = w.done;
				raw.oldest_age_ms = (int64_t)llround(pt->oldest_age_s * 1000);
				raw.length = w.backlog;
				sample_update(&ss, &raw, &sig);
				memset(&in, 0, sizeof(in));
				in.now = now;
				in.sig = &sig;
				in.nomad_ok = true;
				in.desired = w.desired;
				in.running = world_running(&w, now);
				decide_next(&ds, sc, q->partitions, q->order_critical, &in, &d);
				next = d.count;
				if (d.dir != DIR_NONE)
					decide_applied(&ds, &d, now);
			} else {
				next = baseline_next(&bs, now, w.backlog, w.desired, world_running(&w, now), why,
				    sizeof(why));
			}
			if (next != prev) {
				world_set(&w, next, now);
				pt->dir = next > prev ? DIR_UP : DIR_DOWN;
				pt->reason = strdup(algo == SIM_SCALENO ? d.reason : why);
				if (pt->reason == NULL) {
					snprintf(err, errlen, "out of memory");
					goto fail;
				}
				out->actions++;
			}
		}
		pt->desired = w.desired;
		pt->running = world_running(&w, now);
	}
	if (summarize(out, (double)sc->max_age_ms / 1000.0) == -1) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	free(w.start_at);
	free(w.cohort);
	return 0;
fail:
	free(w.start_at);
	free(w.cohort);
	sim_result_free(out);
	return -1;
}

/* ---- output ---- */

int
sim_write_csv(FILE *f, const struct sim_result *r)
{
	size_t i;

	fprintf(f, "t,arrivals,backlog,oldest_age_s,running,desired,action,reason\n");
	for (i = 0; i < r->n; i++) {
		const struct sim_point *p = &r->timeline[i];
		fprintf(f, "%.0f,%g,%lld,%.0f,%d,%d,%s,", p->t, p->arrivals, (long long)p->backlog,
		    p->oldest_age_s, p->running, p->desired, decide_direction_name(p->dir));
		if (p->reason != NULL) {
			/* RFC 4180: quoted, quotes doubled */
			fputc('"', f);
			for (const char *c = p->reason; *c; c++) {
				if (*c == '"')
					fputc('"', f);
				fputc(*c, f);
			}
			fputc('"', f);
		}
		fputc('\n', f);
	}
	return ferror(f) ? -1 : 0;
}

static void
xml_text(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '<':
			fputs("&lt;", f);
			break;
		case '>':
			fputs("&gt;", f);
			break;
		case '&':
			fputs("&amp;", f);
			break;
		case '"':
			fputs("&quot;", f);
			break;
		default:
			/* control characters are not allowed in XML 1.0 */
			fputc((unsigned char)*s < 0x20 ? ' ' : *s, f);
		}
	}
}

/* A round tick step giving about five ticks up to max. */
static double
nice_step(double max)
{
	double raw = max / 5, mag, n;

	if (!(raw > 0))
		return 1;
	mag = pow(10, floor(log10(raw)));
	n = raw / mag;
	return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * mag;
}

struct panel {
	double x0, y0, w, h;	/* plot area */
	double xmax, ymax;
};

#define SVG_W 1000
#define SVG_LEFT 80
#define SVG_RIGHT 30
#define SVG_PANEL_H 170
#define SVG_GAP 40
#define SVG_TOP 70

static double
px(const struct panel *pn, double x)
{
	return pn->x0 + (pn->xmax > 0 ? x / pn->xmax : 0) * pn->w;
}

static double
py(const struct panel *pn, double y)
{
	return pn->y0 + pn->h - (pn->ymax > 0 ? fmin(y, pn->ymax) / pn->ymax : 0) * pn->h;
}

static void
svg_axes(FILE *f, const struct panel *pn, const char *ylabel, bool xlabels)
{
	double step = nice_step(pn->ymax), xstep = nice_step(pn->xmax), v;

	fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#444\"/>\n",
	    pn->x0, pn->y0, pn->w, pn->h);
	for (v = 0; v <= pn->ymax * 1.0001; v += step) {
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", pn->x0,
		    py(pn, v), pn->x0 + pn->w, py(pn, v));
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">%g</text>\n",
		    pn->x0 - 6, py(pn, v) + 4, v);
	}
	for (v = 0; v <= pn->xmax * 1.0001; v += xstep) {
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>\n", px(pn, v),
		    pn->y0 + pn->h, px(pn, v), pn->y0 + pn->h + 5);
		if (xlabels)
			fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\">%g</text>\n",
			    px(pn, v), pn->y0 + pn->h + 18, v);
	}
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\" "
	    "transform=\"rotate(-90 %.1f %.1f)\">%s</text>\n", pn->x0 - 55, pn->y0 + pn->h / 2,
	    pn->x0 - 55, pn->y0 + pn->h / 2, ylabel);
}

enum svg_field { F_BACKLOG, F_AGE, F_DESIRED, F_RUNNING };

static double
field(const struct sim_point *p, enum svg_field fl)
{
	switch (fl) {
	case F_BACKLOG:
		return (double)p->backlog;
	case F_AGE:
		return p->oldest_age_s;
	case F_DESIRED:
		return p->desired;
	case F_RUNNING:
		break;
	}
	return p->running;
}

/* One line, at most SVG_POINTS points: each keeps the highest value of its bucket, so peaks survive. */
static void
svg_line(FILE *f, const struct panel *pn, const struct sim_result *r, enum svg_field fl, const char *color,
    const char *dash)
{
	size_t bucket = r->n / SVG_POINTS + 1, i, j;

	fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\"%s%s%s points=\"", color,
	    dash ? " stroke-dasharray=\"" : "", dash ? dash : "", dash ? "\"" : "");
	for (i = 0; i < r->n; i += bucket) {
		double m = 0;
		for (j = i; j < i + bucket && j < r->n; j++)
			m = fmax(m, field(&r->timeline[j], fl));
		fprintf(f, "%.1f,%.1f ", px(pn, r->timeline[i].t), py(pn, m));
	}
	fprintf(f, "\"/>\n");
}

/* One legend entry at x; returns where the next one starts (about 7 px per character at 12 px). */
static double
legend(FILE *f, double x, double y, const char *color, const char *dash, const char *label)
{
	fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s%s%s/>\n",
	    x, y, x + 24, y, color, dash ? " stroke-dasharray=\"" : "", dash ? dash : "", dash ? "\"" : "");
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">", x + 30, y + 4);
	xml_text(f, label);
	fputs("</text>\n", f);
	return x + 30 + 7.0 * (double)strlen(label) + 20;
}

int
sim_write_svg(FILE *f, const struct sim_result *r, const struct sim_result *extra, size_t nextra,
    double max_age_s, const char *title)
{
	static const char *const extra_colors[] = { "#8e44ad", "#a0522d", "#16a085" };
	struct panel pb, pa, pw;
	double xmax = r->n > 0 ? r->timeline[r->n - 1].t : 1, wmax = 1, lx;
	size_t i, k;
	char label[64];

	for (i = 0; i < r->n; i++)
		wmax = fmax(wmax, r->timeline[i].desired);
	for (k = 0; k < nextra; k++)
		for (i = 0; i < extra[k].n; i++)
			wmax = fmax(wmax, extra[k].timeline[i].desired);

	pb = (struct panel){ SVG_LEFT, SVG_TOP, SVG_W - SVG_LEFT - SVG_RIGHT, SVG_PANEL_H, xmax,
			     fmax(1, (double)r->peak_backlog) };
	pa = pb;
	pa.y0 += SVG_PANEL_H + SVG_GAP;
	pa.ymax = fmax(r->max_age_seen_s, max_age_s * 1.2);
	pw = pa;
	pw.y0 += SVG_PANEL_H + SVG_GAP;
	pw.ymax = wmax * 1.1;
	pb.ymax *= 1.1;

	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	    "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
	    "font-family=\"sans-serif\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
	    SVG_W, (int)(pw.y0 + SVG_PANEL_H + 50), SVG_W, (int)(pw.y0 + SVG_PANEL_H + 50));
	fprintf(f, "<text x=\"%d\" y=\"22\" font-size=\"15\" font-weight=\"bold\">", SVG_LEFT);
	xml_text(f, title);
	fputs("</text>\n", f);

	lx = legend(f, SVG_LEFT, 45, "#1f77b4", NULL, "backlog");
	lx = legend(f, lx, 45, "#ff7f0e", NULL, "oldest age (s)");
	lx = legend(f, lx, 45, "#d62728", "6,4", "max_age");
	snprintf(label, sizeof(label), "%s desired", sim_algo_name(r->algo));
	lx = legend(f, lx, 45, "#2ca02c", NULL, label);
	lx = legend(f, lx, 45, "#7f7f7f", "2,2", "running");
	for (k = 0; k < nextra && k < 3; k++) {
		snprintf(label, sizeof(label), "%s desired", sim_algo_name(extra[k].algo));
		lx = legend(f, lx, 45, extra_colors[k], "4,3", label);
	}

	svg_axes(f, &pb, "backlog (messages)", false);
	svg_line(f, &pb, r, F_BACKLOG, "#1f77b4", NULL);
	svg_axes(f, &pa, "oldest age (s)", false);
	fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#d62728\" stroke-dasharray=\"6,4\"/>\n",
	    pa.x0, py(&pa, max_age_s), pa.x0 + pa.w, py(&pa, max_age_s));
	svg_line(f, &pa, r, F_AGE, "#ff7f0e", NULL);
	svg_axes(f, &pw, "workers", true);
	for (k = 0; k < nextra && k < 3; k++)
		svg_line(f, &pw, &extra[k], F_DESIRED, extra_colors[k], "4,3");
	svg_line(f, &pw, r, F_RUNNING, "#7f7f7f", "2,2");
	svg_line(f, &pw, r, F_DESIRED, "#2ca02c", NULL);
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">time (s)</text>\n",
	    pw.x0 + pw.w / 2, pw.y0 + pw.h + 38);
	fputs("</svg>\n", f);
	return ferror(f) ? -1 : 0;
}

/* ---- --stdin ---- */

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

/* ---- the command ---- */

static void
usage(FILE *f)
{
	fprintf(f, "usage: scaleno simulate [-c FILE] -q QUEUE --trace FILE [--service-rate R] [--startup DUR]\n"
	    "                        [--initial N] [--csv FILE] [--svg FILE] [--baseline NAME] [--compare]\n"
	    "       scaleno simulate [-c FILE] -q QUEUE --stdin\n"
	    "  -c FILE            main configuration file\n"
	    "  -q QUEUE           the queue whose policy to run\n"
	    "  --trace FILE       arrivals per second, CSV \"t,arrivals\"\n"
	    "  --service-rate R   messages per second one worker completes (default %g)\n"
	    "  --startup DUR      scale call to consuming (default: the policy's startup)\n"
	    "  --initial N        workers running at the start (default: what second 0 needs)\n"
	    "  --csv FILE         write the timeline as CSV\n"
	    "  --svg FILE         write the timeline as an SVG chart\n"
	    "  --baseline NAME    run target-value or hpa instead of scaleno\n"
	    "  --compare          run scaleno and both baselines, print one table\n"
	    "  --stdin            JSON samples in, JSON decisions out (see scaleno-simulate(1))\n",
	    DEFAULT_SERVICE_RATE);
}

static void
print_header(void)
{
	printf("%-13s %12s %12s %11s %9s %9s %8s %9s\n", "algorithm", "worker-s", "peak-backlog", "s>max_age",
	    "p99-age", "max-age", "actions", "surge-ok");
}

static void
print_row(const struct sim_result *r)
{
	printf("%-13s %12.0f %12lld %11ld %8.0fs %8.0fs %8d", sim_algo_name(r->algo), r->worker_seconds,
	    (long long)r->peak_backlog, r->seconds_over, r->p99_age_s, r->max_age_seen_s, r->actions);
	if (r->surge_seconds > 0)
		printf(" %8.1f%%\n", 100.0 * (double)r->surge_within / (double)r->surge_seconds);
	else
		printf(" %9s\n", "-");
}

static int
write_file(const char *path, const struct sim_result *r, const struct sim_result *extra, size_t nextra,
    double max_age_s, const char *title, bool svg)
{
	FILE *f = fopen(path, "w");
	int rc;

	if (f == NULL) {
		fprintf(stderr, "scaleno simulate: %s: %s\n", path, strerror(errno));
		return -1;
	}
	rc = svg ? sim_write_svg(f, r, extra, nextra, max_age_s, title) : sim_write_csv(f, r);
	if (fclose(f) != 0 || rc != 0) {
		fprintf(stderr, "scaleno simulate: writing %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

int
cmd_simulate(int argc, char **argv)
{
	enum { O_TRACE = 256, O_RATE, O_STARTUP, O_INITIAL, O_CSV, O_SVG, O_BASELINE, O_COMPARE, O_STDIN };
	static const struct option opts[] = {
		{ "trace", required_argument, NULL, O_TRACE },
		{ "service-rate", required_argument, NULL, O_RATE },
		{ "startup", required_argument, NULL, O_STARTUP },
		{ "initial", required_argument, NULL, O_INITIAL },
		{ "csv", required_argument, NULL, O_CSV },
		{ "svg", required_argument, NULL, O_SVG },
		{ "baseline", required_argument, NULL, O_BASELINE },
		{ "compare", no_argument, NULL, O_COMPARE },
		{ "stdin", no_argument, NULL, O_STDIN },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *qname = NULL, *trace = NULL, *csv = NULL, *svg = NULL;
	const char *startup = NULL;
	bool compare = false, use_stdin = false, have_baseline = false;
	enum baseline_kind bk = BASELINE_TARGET_VALUE;
	struct sim_params prm = { DEFAULT_SERVICE_RATE, 0, -1 };
	struct config *cfg = NULL;
	const struct queue_policy *q;
	struct sim_trace tr = { 0 };
	struct sim_result res[3];
	size_t nres = 0, k;
	char err[256], title[512], *end;
	int64_t ms;
	long bad;
	int ch, rc = EXIT_USAGE;

	memset(res, 0, sizeof(res));
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+c:q:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'q':
			qname = optarg;
			break;
		case O_TRACE:
			trace = optarg;
			break;
		case O_RATE:
			errno = 0;
			prm.service_rate = strtod(optarg, &end);
			if (end == optarg || *end != '\0' || errno != 0 || !(prm.service_rate > 0) ||
			    !isfinite(prm.service_rate)) {
				fprintf(stderr, "scaleno simulate: --service-rate \"%s\": expected a number > 0\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case O_STARTUP:
			startup = optarg;
			break;
		case O_INITIAL:
			errno = 0;
			prm.initial = (int)strtol(optarg, &end, 10);
			if (end == optarg || *end != '\0' || errno != 0 || prm.initial < 0 || prm.initial > 100000) {
				fprintf(stderr, "scaleno simulate: --initial \"%s\": expected a count >= 0\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case O_CSV:
			csv = optarg;
			break;
		case O_SVG:
			svg = optarg;
			break;
		case O_BASELINE:
			if (baseline_parse(optarg, &bk) == -1) {
				fprintf(stderr, "scaleno simulate: --baseline \"%s\": expected target-value or hpa\n",
				    optarg);
				return EXIT_USAGE;
			}
			have_baseline = true;
			break;
		case O_COMPARE:
			compare = true;
			break;
		case O_STDIN:
			use_stdin = true;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			if (optopt != 0 && strchr("cq", optopt) != NULL)
				fprintf(stderr, "scaleno simulate: -%c needs a value\n", optopt);
			else if (optopt >= O_TRACE)
				fprintf(stderr, "scaleno simulate: %s needs a value\n", argv[optind - 1]);
			else
				fprintf(stderr, "scaleno simulate: unknown option \"%s\"\n", argv[optind - 1]);
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "scaleno simulate: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return EXIT_USAGE;
	}
	if (qname == NULL) {
		fprintf(stderr, "scaleno simulate: -q QUEUE is required\n");
		usage(stderr);
		return EXIT_USAGE;
	}
	if (use_stdin == (trace != NULL)) {
		fprintf(stderr, "scaleno simulate: give exactly one of --trace FILE and --stdin\n");
		usage(stderr);
		return EXIT_USAGE;
	}
	if (use_stdin && (csv || svg || compare || have_baseline || startup || prm.initial >= 0)) {
		fprintf(stderr, "scaleno simulate: --stdin drives only the decision engine; "
		    "--csv, --svg, --compare, --baseline, --startup and --initial need --trace\n");
		return EXIT_USAGE;
	}
	if (compare && have_baseline) {
		fprintf(stderr, "scaleno simulate: --compare already runs both baselines; drop --baseline\n");
		return EXIT_USAGE;
	}

	log_init("scaleno", LOG_LVL_WARN, LOG_FMT_TEXT, false);
	if (cli_load_config("simulate", path, &cfg) != EXIT_OK)
		return EXIT_USAGE;
	if ((q = config_queue(cfg, qname)) == NULL) {
		fprintf(stderr, "scaleno simulate: no queue \"%s\" in %s (queues:", qname, cfg->path);
		for (size_t i = 0; i < cfg->nqueues; i++)
			fprintf(stderr, " %s", cfg->queues[i].name);
		fprintf(stderr, ")\n");
		goto out;
	}

	if (use_stdin) {
		bad = sim_stdin(q, stdin, stdout, stderr);
		rc = bad == 0 ? EXIT_OK : EXIT_USAGE;
		goto out;
	}

	prm.startup_s = (double)q->scale.startup_ms / 1000.0;
	if (startup != NULL) {
		if (util_parse_duration(startup, &ms, err, sizeof(err)) == -1) {
			fprintf(stderr, "scaleno simulate: --startup: %s\n", err);
			goto out;
		}
		prm.startup_s = (double)ms / 1000.0;
	}
	if (sim_trace_load(trace, &tr, err, sizeof(err)) == -1) {
		fprintf(stderr, "scaleno simulate: %s\n", err);
		goto out;
	}
	if (prm.initial < 0) {
		/* warm start: what the first second's arrivals need, inside the bounds */
		prm.initial = (int)ceil(tr.arrivals[0] / prm.service_rate);
		if (prm.initial < q->scale.min)
			prm.initial = q->scale.min;
		if (prm.initial > q->scale.max)
			prm.initial = q->scale.max;
	}

	rc = EXIT_RUNTIME;
	if (compare) {
		enum sim_algo all[] = { SIM_SCALENO, SIM_TARGET_VALUE, SIM_HPA };
		for (k = 0; k < 3; k++, nres++)
			if (sim_run(q, &tr, &prm, all[k], &res[k], err, sizeof(err)) == -1)
				goto fail;
	} else {
		enum sim_algo a = !have_baseline ? SIM_SCALENO : bk == BASELINE_HPA ? SIM_HPA : SIM_TARGET_VALUE;
		if (sim_run(q, &tr, &prm, a, &res[0], err, sizeof(err)) == -1)
			goto fail;
		nres = 1;
	}
	printf("queue %s, trace %s (%zu s), service rate %g/s per worker, startup %gs, max_age %gs, %d initial, "
	    "%ld surge s\n", q->name, trace, tr.n, prm.service_rate, prm.startup_s,
	    (double)q->scale.max_age_ms / 1000.0, prm.initial, res[0].surge_seconds);
	print_header();
	for (k = 0; k < nres; k++)
		print_row(&res[k]);
	snprintf(title, sizeof(title), "scaleno simulate: queue %s, trace %s", q->name, trace);
	if (csv != NULL && write_file(csv, &res[0], NULL, 0, 0, NULL, false) == -1)
		goto fail_quiet;
	if (svg != NULL && write_file(svg, &res[0], res + 1, nres - 1, (double)q->scale.max_age_ms / 1000.0,
	    title, true) == -1)
		goto fail_quiet;
	rc = EXIT_OK;
	goto out;
fail:
	fprintf(stderr, "scaleno simulate: %s\n", err);
fail_quiet:
	rc = EXIT_RUNTIME;
out:
	for (k = 0; k < 3; k++)
		sim_result_free(&res[k]);
	sim_trace_free(&tr);
	config_free(cfg);
	return rc;
}
