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
 * pipelined round trip (one per REDISQ_CHUNK streams; one more to load the
 * Lua script the first time and after a Redis restart). The null-lag
 * fallback runs inside the same script, so it costs no round trip. Fills
 * out[i] for queues[i], with out[i].t = t. On a connection failure every
 * out[i].ok is false and -1 is returned; per-queue problems (missing stream
 * or group: read as empty, with a flag) do not fail the call, and a queue
 * whose reply is unusable (e.g. WRONGTYPE) gets ok = false and an error
 * that redisq_queue_error returns. round_trips, if not NULL, gets the
 * number of round trips used.
 */
int redisq_sample(struct redisq *r, const struct queue_policy *const *queues, int n,
    double t, struct raw_sample *out, int *round_trips, char *err, size_t errlen);

/*
 * Why queues[i] failed in the last redisq_sample (ok == false), or NULL.
 * The string belongs to r and lives until the next redisq_sample.
 */
const char *redisq_queue_error(const struct redisq *r, int i);

/*
 * Streams sampled per round trip: several thousand keeps 10,000 queues to a
 * few round trips and bounds the memory of one pipeline (the benchmark
 * overrides it to compare).
 */
#ifndef REDISQ_CHUNK
#define REDISQ_CHUNK 4000
#endif
/* Most entries counted by the null-lag fallback's XRANGE before the figure is marked estimated. */
#define REDISQ_LAG_CAP 10000
/* Change that cap (tests use a small one). cap >= 1. */
void redisq_set_lag_cap(struct redisq *r, int64_t cap);

/*
 * HA lease (SPEC §4.4): SET key value NX PX ttl, renewed by a
 * compare-and-set. Returns 1 when we hold it, 0 when another agent does,
 * -1 on error (nobody should act).
 */
int redisq_lease(struct redisq *r, const char *key, const char *owner, int64_t ttl_ms);
/* Give the lease up if owner holds it (a clean shutdown), so a standby takes over at once. 0 or -1. */
int redisq_lease_release(struct redisq *r, const char *key, const char *owner);

#endif
