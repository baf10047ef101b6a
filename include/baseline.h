/*
 * baseline — peers' published scaling algorithms, for `scaleno simulate
 * --baseline` and `--compare`: nomad-autoscaler's target-value strategy and
 * Kubernetes HPA's AverageValue formula, with their default settings, on
 * the same backlog_per_worker target as the policy, as scaleno-simulate(1)
 * BASELINES gives them. Pure: no I/O, no clock.
 */
#ifndef SCALENO_BASELINE_H
#define SCALENO_BASELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

enum baseline_kind { BASELINE_TARGET_VALUE = 0, BASELINE_HPA };

/* nomad-autoscaler defaults (agent/config, target-value plugin). */
#define TV_EVAL_INTERVAL_S 10.0
#define TV_COOLDOWN_S 300.0
#define TV_THRESHOLD 0.01
/* Kubernetes HPA defaults (autoscaling/v2 defaults.go, controller flags). */
#define HPA_SYNC_S 15.0
#define HPA_TOLERANCE 0.1
#define HPA_DOWN_WINDOW_S 300.0
#define HPA_UP_PODS 4
#define HPA_UP_PERCENT 100
#define HPA_DOWN_PERCENT 100
#define HPA_PERIOD_S 15.0

#define BASELINE_HIST 64

struct baseline_state {
	enum baseline_kind kind;
	double target;			/* backlog per worker */
	int min, max;
	double next_eval;		/* time of the next evaluation */
	double cooldown_until;		/* target-value: no action before this */
	/* HPA: recommendations (for the down window) and changes (for the rate limit) */
	double rec_t[BASELINE_HIST];
	int rec_v[BASELINE_HIST];
	unsigned nrec;
	double chg_t[BASELINE_HIST];
	int chg_v[BASELINE_HIST];	/* +added / -removed */
	unsigned nchg;
};

/* "target-value" or "hpa" into *k; -1 for anything else. */
int baseline_parse(const char *name, enum baseline_kind *k);
const char *baseline_name(enum baseline_kind k);

/* Start a baseline for the policy sc; its first evaluation is at time start. */
void baseline_init(struct baseline_state *b, enum baseline_kind k, const struct scale_conf *sc, double start);

/*
 * Evaluate at time now (a no-op between the algorithm's own evaluation
 * times). desired is the group's count, running its running allocations.
 * Returns the count to ask for (== desired: no change) and writes a short
 * explanation into reason (len bytes, always terminated).
 */
int baseline_next(struct baseline_state *b, double now, int64_t backlog, int desired, int running,
    char *reason, size_t len);

#endif
