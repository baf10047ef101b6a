/*
 * check_warn — `scaleno check`'s warnings about one queue (scaleno(8),
 * check): a handler not executable here, keys its mode never reads.
 */
#ifndef SCALENO_CHECK_WARN_H
#define SCALENO_CHECK_WARN_H

struct queue_policy;

/* Print q's warnings as "file:line: warning: ..." on stderr; returns how many. */
int check_warn_queue(const struct queue_policy *q);

#endif
