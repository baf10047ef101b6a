/*
 * alert — the alerts of scaleno.conf(5) "alert": alert.command gets the alert as JSON on stdin,
 * alert.webhook gets it POSTed. Rate-limited and deduplicated per
 * (kind, subject) within a process; delivery never blocks the caller for
 * long (the command runs detached with a time limit, the POST has a short
 * timeout) and never fails it.
 */
#ifndef SCALENO_ALERT_H
#define SCALENO_ALERT_H

#include "config.h"

enum alert_kind {
	ALERT_DEAD_LETTERED = 0,
	ALERT_PARTITION_HALTED,	/* kind "halted" */
	ALERT_CRASH_LOOP,
	ALERT_AT_MAX_OVER_AGE,
	ALERT_NOMAD_UNREACHABLE,
	ALERT_REDIS_UNREACHABLE,
	ALERT_NOMAD_BLOCKED,
	ALERT_NOMAD_CONFIG,
	ALERT_RESUMED,		/* a halted partition goes on (probe succeeded, or scaleno resume) */
};

/*
 * Fire an alert of kind about subject (a message id, a partition, ...) for
 * queue q, with a human text. Returns 1 when sent, 0 when suppressed by the
 * rate limit or when q has no alert target, -1 when delivery failed (logged).
 * The command is only started (a failure inside it is not seen here); the
 * webhook POST is waited for, at most 2 s, and skipped for 30 s after one
 * that timed out. Strings are copied; nothing is kept.
 */
int alert_fire(const struct alert_conf *ac, const char *queue, enum alert_kind kind,
    const char *subject, const char *text);
const char *alert_kind_name(enum alert_kind k);

#endif
