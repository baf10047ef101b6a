/*
 * redisq — the agent's side of Redis: one connection with reconnect and
 * backoff, and pipelined sampling of many queues in one round trip.
 * With rstream.c, the only code that includes hiredis.
 */
#ifndef SCALENO_REDISQ_H
#define SCALENO_REDISQ_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "sample.h"

struct redisq;

/* A handle; does not connect yet. Free with redisq_free. NULL on OOM. */
struct redisq *redisq_new(const struct redis_conf *conf);
void redisq_free(struct redisq *r);

/*
 * Make sure the connection is up (AUTH, SELECT done). Never blocks longer
 * than connect_timeout; after a failure, further attempts are refused until
 * the backoff delay has passed (returns -1 at once). 0 when connected.
 */
int redisq_ensure(struct redisq *r, char *err, size_t errlen);
bool redisq_connected(const struct redisq *r);

/*
 * Sample n queues: all their streams (partitions) and groups in one
 * pipelined round trip (plus one more only for null-lag fallbacks). Fills
 * out[i] for queues[i], with out[i].t = t. On a connection failure every
 * out[i].ok is false and -1 is returned; per-queue problems (missing stream
 * or group: read as empty, with a flag) do not fail the call.
 * round_trips, if not NULL, gets the number of round trips used.
 */
int redisq_sample(struct redisq *r, const struct queue_policy *const *queues, int n,
    double t, struct raw_sample *out, int *round_trips, char *err, size_t errlen);

/*
 * HA lease (SPEC §4.4): SET key value NX PX ttl, renewed by a
 * compare-and-set. Returns 1 when we hold it, 0 when another agent does,
 * -1 on error (nobody should act).
 */
int redisq_lease(struct redisq *r, const char *key, const char *owner, int64_t ttl_ms);

#endif
