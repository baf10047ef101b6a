/*
 * simulate — `scaleno simulate`: the real sampler and decision engine (or a
 * baseline) driven by a queue model on the model's own clock, and the
 * `--stdin` protocol that drives only the engine. The model steps whole
 * seconds: the trace's arrivals for second t arrive at its start, running
 * workers then complete service_rate messages each in arrival order, a
 * requested worker consumes from `startup` after the scale call, and a
 * scale-in takes effect at once (workers still starting go first).
 *
 * sim_trace.c reads traces, sim_model.c runs the model, sim_output.c writes
 * CSV and SVG, sim_stdin.c speaks --stdin; the command is cmd_simulate.c.
 */
#ifndef SCALENO_SIMULATE_H
#define SCALENO_SIMULATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "baseline.h"
#include "config.h"
#include "decide.h"

/* Arrivals per second, second 0 first. Free with sim_trace_free. */
struct sim_trace {
	double *arrivals;
	size_t n;
};

/*
 * Read a trace CSV: lines "t,arrivals" (t whole seconds, ascending;
 * arrivals >= 0 per second); '#' comments, blank lines and one header line
 * are skipped; seconds left out have no arrivals. Returns 0, or -1 with
 * "file:line: problem" in err.
 */
int sim_trace_load(const char *path, struct sim_trace *tr, char *err, size_t errlen);
void sim_trace_free(struct sim_trace *tr);

/*
 * The workers the trace's peak arrival rate needs at service_rate messages
 * per second each (ceil(peak / service_rate)), with the peak and its second
 * in *peak and *at (either may be NULL). 0 for an empty trace.
 */
int sim_trace_workers_needed(const struct sim_trace *tr, double service_rate, double *peak,
    size_t *at);

#define SIM_SURGE_FACTOR 1.5	/* arrivals above this x the median are a surge */

/* scaleno, then the baselines in the order of enum baseline_kind. */
enum sim_algo {
	SIM_SCALENO = 0,
	SIM_TARGET_VALUE = 1 + BASELINE_TARGET_VALUE,
	SIM_HPA = 1 + BASELINE_HPA,
	SIM_HPA_TUNED = 1 + BASELINE_HPA_TUNED
};
#define SIM_NALGOS (1 + BASELINE_NKINDS)
#define SIM_ALGO_OF(k) ((enum sim_algo)(1 + (k)))		/* baseline kind -> algorithm */
#define SIM_BASELINE_OF(a) ((enum baseline_kind)((a) - 1))	/* algorithm but scaleno -> kind */
const char *sim_algo_name(enum sim_algo a);

struct sim_params {
	double service_rate;	/* messages per second per running worker */
	double startup_s;	/* scale call -> consuming */
	int initial;		/* workers running at t = 0 */
};

/* One second of the timeline, as seen at its end. */
struct sim_point {
	double t;
	double arrivals;
	int64_t backlog;
	double oldest_age_s;
	int running, desired;
	enum direction dir;	/* action taken at t */
	char *reason;		/* with an action: why (owned by the result); else NULL */
};

struct sim_result {
	enum sim_algo algo;
	double worker_seconds;	/* sum of Desired (placed allocations cost while starting) */
	int64_t peak_backlog;
	long seconds_over;	/* seconds with the oldest age above max_age */
	double p99_age_s;	/* p99 of the per-second oldest age (nearest rank) */
	double max_age_seen_s;
	int actions;		/* changes of the count */
	/*
	 * Surge seconds: those within max_age after a second whose arrivals
	 * exceed SIM_SURGE_FACTOR x the trace's median (the messages of a surge
	 * wait that long at most if the objective holds). surge_within: how
	 * many of them had the oldest age within max_age.
	 */
	long surge_seconds, surge_within;
	struct sim_point *timeline;	/* n points; owned, free with sim_result_free */
	size_t n;
};

/*
 * Run one algorithm over the trace for policy q. Returns 0 with *out filled
 * (free with sim_result_free), or -1 with a message in err.
 */
int sim_run(const struct queue_policy *q, const struct sim_trace *tr, const struct sim_params *p,
    enum sim_algo algo, struct sim_result *out, char *err, size_t errlen);
void sim_result_free(struct sim_result *r);

/* Timeline as CSV: t,arrivals,backlog,oldest_age_s,running,desired,action,reason. 0 or -1 (errno). */
int sim_write_csv(FILE *f, const struct sim_result *r);
/* What the SVG chart marks besides the timeline. */
struct sim_svg_marks {
	double max_age_s;	/* the oldest-age objective */
	int max_workers;	/* scale.max */
	double service_rate;	/* per worker: max_workers x this is the capacity line */
	const char *title;
};

/*
 * Timeline as an SVG chart: arrivals (with the capacity at scale.max),
 * backlog, oldest age (with max_age) and workers (with scale.max) over
 * time; extra (may be NULL, nextra results) adds their worker lines.
 */
int sim_write_svg(FILE *f, const struct sim_result *r, const struct sim_result *extra, size_t nextra,
    const struct sim_svg_marks *m);

/*
 * The --stdin protocol: one JSON sample per line from in, one JSON decision
 * per line to out, flushed each line. Malformed lines are reported on err
 * with their line number and skipped. Returns the number of malformed lines.
 */
long sim_stdin(const struct queue_policy *q, FILE *in, FILE *out, FILE *err);

#endif
