/*
 * decide — the pure decision engine of scaleno(8), "The agent". Input: the policy, the
 * signals, Nomad's counts and the time (injected, never read here). Output:
 * the new count, its direction and a reason a person can read. The same code
 * runs in the agent and in `scaleno simulate`.
 */
#ifndef SCALENO_DECIDE_H
#define SCALENO_DECIDE_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "sample.h"

enum direction { DIR_NONE = 0, DIR_UP, DIR_DOWN };

/* Everything the engine looks at, for one evaluation. */
struct decide_input {
	double now;			/* seconds on the engine's clock */
	const struct signals *sig;	/* NULL or !sig->valid: sample missing */
	double sample_age_s;		/* now - sig->t; stale beyond 3 intervals */
	bool nomad_ok;			/* false: Desired/Running unknown */
	int desired;			/* Nomad group Count */
	int running;			/* Nomad Running allocations */
	bool job_stopped;
};

#define DECIDE_WINDOW 512		/* demand history slots (stabilization) */
#define DECIDE_REASON_LEN 512
#define DECIDE_RATE_HIST 64		/* arrival-rate history slots (projection) */
/*
 * Intervals of valid samples before the smoothed rates count (the EWMA's
 * warm-up), and of stable Running / busy workers before mu is learnt.
 */
#define DECIDE_SETTLE_INTERVALS 6

/*
 * Per-policy memory of the engine. Initialise with decide_state_init; keep
 * one per queue for as long as the policy lives (a reload may keep it).
 */
struct decide_state {
	double last_up_t, last_down_t;	/* time of the last applied action per direction; -inf if none */
	int last_up_target;		/* count requested by the last scale-up */
	double mu_hat;			/* per-worker service rate, msgs/s; 0 = unknown */
	double mu_floor;		/* highest settled completion rate per worker seen: mu >= this; 0 = none */
	double rates_since;		/* rates valid without a break since then; +inf when not valid */
	int seen_running;		/* Running at the last evaluation ... */
	double running_since;		/* ... and since when it has had that value */
	double saturated_since;		/* start of the current busy spell; +inf when not busy */
	/* the smoothed arrival rate over the last `startup`, for the projection */
	double rate_t[DECIDE_RATE_HIST];
	double rate_v[DECIDE_RATE_HIST];
	unsigned rate_head, rate_len;
	/*
	 * the smoothed arrival rate plus its noise margin over the last
	 * `startup` + `max_age`, for the sustained demand
	 */
	double sus_t[DECIDE_RATE_HIST];
	double sus_v[DECIDE_RATE_HIST];
	unsigned sus_head, sus_len;
	double last_oldest_s;		/* oldest age at the last evaluation */
	/*
	 * Highest demand per time slot, for the stabilization window. The
	 * window only counts from win_since: the first evaluation with settled
	 * rates after the start or after missing data, so neither a gap nor
	 * the rates' warm-up is ever read as "demand was low".
	 */
	bool win_open;
	double win_since;
	double win_t[DECIDE_WINDOW];
	int win_need[DECIDE_WINDOW];
	unsigned win_head, win_len;
	int last_need;			/* raw demand of the last evaluation */
	/*
	 * The loan: workers asked for a transient (a spike's backlog, a
	 * spike's arrivals) rather than for sustained demand. owned is the
	 * count sustained demand has justified (or the count found at the
	 * start, or set from outside); the rest, up to loan_top (the count of
	 * the engine's last action), is given back once the backlog is
	 * cleared. owned < 0: not known yet.
	 */
	int owned;
	int loan_top;
	double last_return_t;		/* time of the last loan given back; -inf if none */
	/*
	 * The reserve for spikes that recur: the count the recent spikes
	 * needed at their peak (decide.c, spike_reserve), kept in part until
	 * reserve_until, two stabilization windows after the last loan was
	 * given back. peak_rate: the highest smoothed arrival rate since then.
	 */
	double peak_rate;
	int spike_peak;
	double reserve_until;
	double reserve_span;		/* how long a reserve stands (set by decide_next) */
};

struct decision {
	double t;
	int count;			/* the count to ask for; == desired when dir == DIR_NONE */
	enum direction dir;
	int need;			/* raw demand before limits */
	const char *rule;		/* short name of the rule that won ("backlog", "rate", "age", "hold", ...) */
	char reason[DECIDE_REASON_LEN];
};

void decide_state_init(struct decide_state *st);

/*
 * Evaluate one tick. Updates the engine's memory (demand history, mu_hat,
 * arrival-rate history) but not the cooldown clocks: call decide_applied
 * when the action was actually carried out (a scale call that succeeded, or
 * dry_run); a call refused for an active deployment is simply not applied,
 * and the next tick asks again. in->desired is what Nomad already asks for;
 * running < desired is capacity in flight. The engine assumes the sampler's
 * tau is about 3 x interval (it waits that long before trusting rates).
 * out->reason is a readable, NUL-terminated sentence under
 * DECIDE_REASON_LEN; out->rule points to a static string.
 */
void decide_next(struct decide_state *st, const struct scale_conf *sc, int partitions,
    bool order_critical, const struct decide_input *in, struct decision *out);

/* Record that d was carried out at time now (starts the cooldown of its direction). */
void decide_applied(struct decide_state *st, const struct decision *d, double now);

const char *decide_direction_name(enum direction d);

#endif
