/*
 * sample — turns raw per-tick readings of a queue (cumulative Redis
 * counters, server-time ages) into the smoothed signals the decision engine
 * uses: arrival rate, completion rate, backlog trend. Pure arithmetic: no
 * I/O, no clock; the caller passes the time.
 */
#ifndef SCALENO_SAMPLE_H
#define SCALENO_SAMPLE_H

#include <stdbool.h>
#include <stdint.h>

/*
 * One reading of one queue (summed over partitions), as redis_sample
 * produces it and as `scaleno simulate --stdin` reads it (the field names of scaleno-simulate(1), THE STDIN PROTOCOL).
 */
struct raw_sample {
	double t;		/* seconds on the engine's clock */
	bool ok;		/* false: Redis unreachable or reply unusable */
	int64_t lag;		/* undelivered entries (never a null lag read as 0) */
	bool lag_estimated;	/* lag came from a capped count */
	int64_t pending;	/* delivered, not acknowledged */
	int64_t entries_added;	/* cumulative XADDs (XINFO STREAM entries-added) */
	int64_t entries_read;	/* cumulative reads by the group (XINFO GROUPS entries-read) */
	int64_t oldest_age_ms;	/* server TIME minus ms of the oldest unacked/undelivered id; 0 if none */
	int64_t length;		/* XLEN sum */
	int64_t dlq_length;	/* <stream>:dlq */
	int64_t retry_length;	/* sum over retry stages */
	int halted;		/* halted partitions */
	bool stream_missing;	/* some stream key does not exist (read as empty) */
	bool group_missing;	/* some group does not exist (its entries all count as undelivered) */
};

/* The smoothed view of a queue at one instant. */
struct signals {
	double t;
	bool valid;		/* false until one good sample; false when the last one failed */
	int64_t undelivered, pending, backlog;
	bool backlog_estimated;
	double oldest_age_s;
	double arrival_rate;	/* lambda-hat, msgs/s, EWMA */
	double arrival_slope;	/* d(lambda)/dt, msgs/s^2, EWMA */
	double arrival_noise;	/* standard deviation of arrival_rate itself (noise left after smoothing), msgs/s */
	double completion_rate;	/* mu, msgs/s, EWMA */
	double trend;		/* d(backlog)/dt, msgs/s, EWMA */
	bool rates_valid;	/* at least two good samples */
	int64_t dlq_length, retry_length;
	int halted;
};

/* Per-queue memory of the sampler. Zero-initialise, or use sample_state_init. */
struct sample_state {
	bool have_prev;
	struct raw_sample prev;
	double tau_s;		/* EWMA time constant */
	double arrival_var;	/* EWMA variance of the raw rate around arrival_rate */
	struct signals cur;
};

/* tau_s: smoothing time constant in seconds (e.g. 3 x interval). */
void sample_state_init(struct sample_state *st, double tau_s);

/*
 * Fold one reading into st and return the new signals in *out (also kept in
 * st->cur). A reading with ok == false marks the signals invalid and keeps
 * the previous rates; counters that go backwards (stream recreated, Redis
 * restarted without persistence) restart the rate estimation.
 */
void sample_update(struct sample_state *st, const struct raw_sample *in, struct signals *out);

/*
 * One reading alone as signals: its levels (backlog, ages, DLQ, halts),
 * no rates (rates_valid false). For `scaleno status` without an agent.
 */
void sample_levels(const struct raw_sample *in, struct signals *out);

#endif
