/*
 * modes.c — see include/modes.h. The whole table of scaleno-worker(8), MODES, in one place.
 */
#include <stdbool.h>

#include "modes.h"

void
modes_limits(const struct queue_policy *q, struct mode_limits *lim)
{
	lim->mode = q->mode;
	lim->retries = q->worker.retries;
	lim->nstages = (int)q->worker.nretry_delays;
	lim->max_deliveries = q->worker.max_deliveries;
	lim->backoff_ms = q->worker.backoff_ms;
	lim->max_backoff_ms = q->worker.max_backoff_ms;
	lim->retry_for_ms = q->worker.retry_for_ms;
}

/* Where a message goes when this mode gives up on it. */
static enum mode_action
terminal_action(enum queue_mode mode)
{
	switch (mode) {
	case MODE_DLQ:
		return MODE_ACT_DLQ;
	case MODE_HALT:
		return MODE_ACT_HALT;
	case MODE_DROP:
	case MODE_ORDERED_DROP:
		break;
	}
	return MODE_ACT_DROP;
}

int
modes_precheck(const struct mode_limits *lim, int64_t delivery, struct mode_decision *d)
{
	d->next_stage = 0;
	d->backoff_ms = 0;
	if (lim->max_deliveries <= 0 || delivery <= lim->max_deliveries) {
		d->action = MODE_ACT_ACK;
		return 0;
	}
	d->action = terminal_action(lim->mode);
	return 1;
}

int64_t
modes_backoff_ms(const struct mode_limits *lim, int n)
{
	int64_t b = lim->backoff_ms;

	if (lim->mode == MODE_DROP || n <= 0 || b <= 0)
		return 0;
	for (int i = 1; i < n && b < lim->max_backoff_ms; i++)
		b *= 2;
	return b > lim->max_backoff_ms ? lim->max_backoff_ms : b;
}

void
modes_decide(const struct mode_limits *lim, enum handler_outcome outcome, int failures,
    int stage, int64_t failing_ms, struct mode_decision *d)
{
	bool ordered = lim->mode == MODE_ORDERED_DROP || lim->mode == MODE_HALT;

	d->next_stage = 0;
	d->backoff_ms = 0;
	if (outcome == HANDLER_OK) {
		d->action = MODE_ACT_ACK;
		return;
	}
	/* A permanent failure skips the synchronous retries (and the stages). */
	if (outcome == HANDLER_RETRY &&
	    (failures <= lim->retries || (ordered && failing_ms < lim->retry_for_ms))) {
		d->action = MODE_ACT_RETRY;
		d->backoff_ms = modes_backoff_ms(lim, failures);
		return;
	}
	if (lim->mode == MODE_DLQ && outcome == HANDLER_RETRY && stage < lim->nstages) {
		d->action = MODE_ACT_STAGE;
		d->next_stage = stage + 1;
		return;
	}
	d->action = terminal_action(lim->mode);
}

const char *
modes_action_name(enum mode_action a)
{
	static const char *const names[] = { "ack", "retry", "drop", "stage", "dlq", "halt" };

	return (unsigned)a < sizeof(names) / sizeof(names[0]) ? names[a] : "?";
}
