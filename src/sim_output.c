/*
 * sim_output.c — a simulated timeline as CSV and as an SVG chart
 * (scaleno-simulate(1)).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "decide.h"
#include "simulate.h"
#include "util.h"

#define SVG_POINTS 1000			/* points per line, at most */

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
	static const char *const entity[] = { ['<'] = "&lt;", ['>'] = "&gt;", ['&'] = "&amp;",
		['"'] = "&quot;" };

	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch < ARRAY_LEN(entity) && entity[ch] != NULL)
			fputs(entity[ch], f);
		else	/* control characters are not allowed in XML 1.0 */
			fputc(ch < 0x20 ? ' ' : ch, f);
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

enum svg_field { F_BACKLOG, F_AGE, F_DESIRED, F_RUNNING, F_ARRIVALS };

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
	case F_ARRIVALS:
		return p->arrivals;
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

/* A dashed horizontal line at y across panel pn. */
static void
svg_hline(FILE *f, const struct panel *pn, double y, const char *color)
{
	fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
	    "stroke-dasharray=\"6,4\"/>\n", pn->x0, py(pn, y), pn->x0 + pn->w, py(pn, y), color);
}

int
sim_write_svg(FILE *f, const struct sim_result *r, const struct sim_result *extra, size_t nextra,
    const struct sim_svg_marks *m)
{
	double max_age_s = m->max_age_s, capacity = m->max_workers * m->service_rate, amax = 1;
	const char *title = m->title != NULL ? m->title : "";
	struct panel pr;
	static const char *const extra_colors[] = { "#8e44ad", "#a0522d", "#16a085" };
	struct panel pb, pa, pw;
	double xmax = r->n > 0 ? r->timeline[r->n - 1].t : 1, wmax = 1, lx;
	size_t i, k;
	char label[64];

	for (i = 0; i < r->n; i++) {
		wmax = fmax(wmax, r->timeline[i].desired);
		amax = fmax(amax, r->timeline[i].arrivals);
	}
	wmax = fmax(wmax, m->max_workers);
	amax = fmax(amax, capacity);
	for (k = 0; k < nextra; k++)
		for (i = 0; i < extra[k].n; i++)
			wmax = fmax(wmax, extra[k].timeline[i].desired);

	pr = (struct panel){ SVG_LEFT, SVG_TOP, SVG_W - SVG_LEFT - SVG_RIGHT, SVG_PANEL_H, xmax,
			     amax * 1.1 };
	pb = pr;
	pb.y0 += SVG_PANEL_H + SVG_GAP;
	pb.ymax = fmax(1, (double)r->peak_backlog);
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

	lx = legend(f, SVG_LEFT, 38, "#17becf", NULL, "arrivals/s");
	snprintf(label, sizeof(label), "capacity at max (%d x %g/s)", m->max_workers, m->service_rate);
	lx = legend(f, lx, 38, "#9467bd", "6,4", label);
	lx = legend(f, lx, 38, "#1f77b4", NULL, "backlog");
	lx = legend(f, lx, 38, "#ff7f0e", NULL, "oldest age (s)");
	legend(f, lx, 38, "#d62728", "6,4", "max_age");
	snprintf(label, sizeof(label), "%s desired", sim_algo_name(r->algo));
	lx = legend(f, SVG_LEFT, 56, "#2ca02c", NULL, label);
	lx = legend(f, lx, 56, "#7f7f7f", "2,2", "running");
	lx = legend(f, lx, 56, "#000000", "6,4", "max");
	for (k = 0; k < nextra && k < 3; k++) {
		snprintf(label, sizeof(label), "%s desired", sim_algo_name(extra[k].algo));
		lx = legend(f, lx, 56, extra_colors[k], "4,3", label);
	}

	svg_axes(f, &pr, "arrivals (msgs/s)", false);
	svg_hline(f, &pr, capacity, "#9467bd");
	svg_line(f, &pr, r, F_ARRIVALS, "#17becf", NULL);
	svg_axes(f, &pb, "backlog (messages)", false);
	svg_line(f, &pb, r, F_BACKLOG, "#1f77b4", NULL);
	svg_axes(f, &pa, "oldest age (s)", false);
	svg_hline(f, &pa, max_age_s, "#d62728");
	svg_line(f, &pa, r, F_AGE, "#ff7f0e", NULL);
	svg_axes(f, &pw, "workers", true);
	svg_hline(f, &pw, m->max_workers, "#000000");
	for (k = 0; k < nextra && k < 3; k++)
		svg_line(f, &pw, &extra[k], F_DESIRED, extra_colors[k], "4,3");
	svg_line(f, &pw, r, F_RUNNING, "#7f7f7f", "2,2");
	svg_line(f, &pw, r, F_DESIRED, "#2ca02c", NULL);
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">time (s)</text>\n",
	    pw.x0 + pw.w / 2, pw.y0 + pw.h + 38);
	fputs("</svg>\n", f);
	return ferror(f) ? -1 : 0;
}
