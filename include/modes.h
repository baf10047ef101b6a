/*
 * modes — the pure decision logic of the four error-handling modes
 * (scaleno-worker(8), MODES). Given the mode, where the message is (main stream or retry
 * stage), how often it was delivered and attempted, and the handler's
 * verdict, say what to do next. No I/O, no clock, no randomness: the
 * consumer does the doing, the unit tests check the table.
 */
#ifndef SCALENO_MODES_H
#define SCALENO_MODES_H

#include <stdint.h>

#include "config.h"
#include "handler.h"

enum mode_action {
	MODE_ACT_ACK = 0,	/* success: acknowledge */
	MODE_ACT_RETRY,		/* run the handler again now, after backoff_ms */
	MODE_ACT_DROP,		/* give up: acknowledge and count as dropped */
	MODE_ACT_STAGE,		/* move to retry stage next_stage (1-based) */
	MODE_ACT_DLQ,		/* move to <stream>:dlq and alert */
	MODE_ACT_HALT,		/* leave pending, write the halt record, stop the partition */
};

/* The numbers of a queue that the decisions depend on. */
struct mode_limits {
	enum queue_mode mode;
	int retries;		/* synchronous retries after the first failure */
	int nstages;		/* retry stages (mode 3) */
	int max_deliveries;	/* a message delivered more often than this is poison */
	int64_t backoff_ms, max_backoff_ms;
	int64_t retry_for_ms;	/* modes 2 and 4: keep retrying this long after the first failure */
};

struct mode_decision {
	enum mode_action action;
	int next_stage;		/* MODE_ACT_STAGE: the stage to move to (1..nstages) */
	int64_t backoff_ms;	/* MODE_ACT_RETRY: wait this long first (0 = at once) */
};

/* Fill limits from a queue policy. */
void modes_limits(const struct queue_policy *q, struct mode_limits *lim);

/*
 * Before running the handler: a message delivered more than max_deliveries
 * times keeps crashing or stalling its consumers. Returns 1 and fills d
 * with the mode's terminal action (drop, DLQ or halt) when it is poison,
 * 0 when it should be handled normally.
 */
int modes_precheck(const struct mode_limits *lim, int64_t delivery, struct mode_decision *d);

/*
 * After a handler run: outcome is the verdict, failures the number of failed
 * attempts of this delivery so far including this one (0 on success), stage
 * where the message was read from (0 = the main stream, k = retry stage k),
 * failing_ms how long ago this delivery first failed. Modes 2 and 4 retry a
 * retryable failure until both `retries` retries are made and retry_for has
 * passed; a permanent failure ends at once in every mode.
 */
void modes_decide(const struct mode_limits *lim, enum handler_outcome outcome, int failures,
    int stage, int64_t failing_ms, struct mode_decision *d);

/*
 * Backoff before synchronous retry number n (1-based): none in mode 1
 * (immediate retries), else backoff * 2^(n-1) capped at max_backoff. The
 * caller may add jitter.
 */
int64_t modes_backoff_ms(const struct mode_limits *lim, int n);

/* "ack", "retry", "drop", "stage", "dlq", "halt". */
const char *modes_action_name(enum mode_action a);

#endif
