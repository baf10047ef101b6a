/*
 * status_halts — the halted partitions of one queue, for `scaleno status -q
 * QUEUE` (scaleno(8), status).
 */
#ifndef SCALENO_STATUS_HALTS_H
#define SCALENO_STATUS_HALTS_H

struct config;
struct queue_policy;

/*
 * Print q's halted partitions (partition, stream, head message id,
 * attempts, since when, error) read from their halt records, or that none
 * is halted (halt-mode queues). 0, or -1 after a Redis error (printed).
 */
int status_halts_print(const struct config *cfg, const struct queue_policy *q);

#endif
