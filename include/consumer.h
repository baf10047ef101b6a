/*
 * consumer — one consumer process of `scaleno worker`: reads its queue with
 * XREADGROUP, runs the handler, applies the queue's mode (scaleno-worker(8)),
 * reclaims dead consumers' entries, and drains on request.
 */
#ifndef SCALENO_CONSUMER_H
#define SCALENO_CONSUMER_H

#include <signal.h>

#include "config.h"
#include "wstats.h"

/*
 * Run consumer slot `slot` of q until *stop becomes non-zero, then drain
 * (finish or give up on the message in hand within drain_timeout) and
 * return the process exit code: 0 after a clean drain, 2 on a fatal
 * runtime error. Called in the child process the supervisor forked.
 */
int consumer_main(const struct config *cfg, const struct queue_policy *q, int slot,
    struct worker_stats *stats, volatile sig_atomic_t *stop);

/*
 * The stable consumer name of slot (scaleno-worker(8)): from NOMAD_JOB_ID,
 * NOMAD_GROUP_NAME and NOMAD_ALLOC_INDEX under Nomad, from the host name
 * otherwise, plus "/<slot>". Written into buf.
 */
void consumer_name(int slot, char *buf, size_t len);

#endif
