/*
 * baseline — peers' published scaling algorithms, for `scaleno simulate
 * --baseline` and `--compare`: nomad-autoscaler's target-value strategy and
 * Kubernetes HPA's AverageValue formula with their default settings, and
 * the same HPA formula with the behavior an operator tunes for a queue
 * worker, all on the same backlog_per_worker target as the policy, as
 * scaleno-simulate(1) BASELINES gives them. Pure: no I/O, no clock.
 *
 * hpa-tuned differs from hpa only in its behavior: scale-down stabilization
 * = the policy's scale.down.stabilization (the window scaleno uses) instead
 * of 300 s; scale-up stabilization 0 s and one policy, Pods = scale.max per
 * 15 s, selectPolicy Max (so a scale-up is not rate-limited in practice);
 * scale-down Percent 100 per 15 s, tolerance 0.1 and sync period 15 s, the
 * defaults, as for hpa.
 */
#ifndef SCALENO_BASELINE_H
#define SCALENO_BASELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

enum baseline_kind { BASELINE_TARGET_VALUE = 0, BASELINE_HPA, BASELINE_HPA_TUNED };
#define BASELINE_NKINDS (BASELINE_HPA_TUNED + 1)

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

/* An HPA's behavior (autoscaling/v2 HPAScalingRules), as far as it differs between the two. */
struct hpa_behavior {
	double down_window_s;	/* scale-down stabilization; scale-up's is 0 */
	int up_pods;		/* scale-up Pods policy, per HPA_PERIOD_S */
	int up_percent;		/* scale-up Percent policy, per HPA_PERIOD_S; 0: none */
	int down_percent;	/* scale-down Percent policy, per HPA_PERIOD_S */
};

struct baseline_state {
	enum baseline_kind kind;
	double target;			/* backlog per worker */
	int min, max;
	double next_eval;		/* time of the next evaluation */
	double cooldown_until;		/* target-value: no action before this */
	struct hpa_behavior hpa;	/* hpa, hpa-tuned: set by baseline_init */
	/*
	 * HPA: the recommendations of the down window that may still be its
	 * highest (each above every newer one), and the changes of the last
	 * period (for the rate limit)
	 */
	double rec_t[BASELINE_HIST];
	int rec_v[BASELINE_HIST];
	unsigned nrec;
	double chg_t[BASELINE_HIST];
	int chg_v[BASELINE_HIST];	/* +added / -removed */
	unsigned nchg;
};

/* "target-value", "hpa" or "hpa-tuned" into *k; -1 for anything else. */
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
