/*
 * redis_sample — the agent's side of Redis (scaleno(8) "agent"): pipelined
 * sampling of many queues in one round trip, and the agent's HA lease.
 */
#ifndef SCALENO_REDIS_SAMPLE_H
#define SCALENO_REDIS_SAMPLE_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "redis.h"
#include "sample.h"

/*
 * Streams sampled per round trip: several thousand keeps 10,000 queues to a
 * few round trips and bounds the memory of one pipeline (the benchmark
 * overrides it to compare).
 */
#ifndef REDIS_SAMPLE_CHUNK
#define REDIS_SAMPLE_CHUNK 4000
#endif
/* Most entries counted by the null-lag fallback's XRANGE before the figure is marked estimated. */
#define REDIS_LAG_CAP 10000

/* Optional settings of one redis_sample_ex call. */
struct redis_sample_opts {
	int64_t lag_cap;	/* 0 = REDIS_LAG_CAP (tests use a small one) */
	/*
	 * NULL, or n slots: qerr[i] gets why queues[i] failed (ok == false),
	 * else NULL. The caller frees them with redis_sample_errors_free.
	 */
	char **qerr;
};

/*
 * Sample n queues: all their streams (partitions) and groups in one
 * pipelined round trip (one per REDIS_SAMPLE_CHUNK streams; one more to
 * load the Lua script the first time and after a Redis restart). The
 * null-lag fallback runs inside the same script (contrib/lua/sample.lua),
 * so it costs no round trip. Fills out[i] for queues[i], with out[i].t = t.
 * On a connection failure every out[i].ok is false and -1 is returned;
 * per-queue problems (missing stream or group: read as empty, with a flag)
 * do not fail the call, and a queue whose reply is unusable (e.g.
 * WRONGTYPE) gets ok = false (and a reason in opts->qerr). round_trips,
 * if not NULL, gets the number of round trips used.
 */
int redis_sample(struct redis *r, const struct queue_policy *const *queues, int n,
    double t, struct raw_sample *out, int *round_trips, char *err, size_t errlen);
int redis_sample_ex(struct redis *r, const struct redis_sample_opts *opts,
    const struct queue_policy *const *queues, int n, double t, struct raw_sample *out,
    int *round_trips, char *err, size_t errlen);
void redis_sample_errors_free(char **qerr, int n);

/*
 * Several servers (scaleno.conf(5) "redis" in a policy): one handle per
 * distinct server of a configuration, the main file's first, then each
 * other server a policy's own redis block names (same address or Sentinel
 * group or cluster, user, password and database: the same server).
 */
struct redis_servers;
/* NULL on OOM. The configuration must outlive it. */
struct redis_servers *redis_servers_new(const struct config *cfg);
void redis_servers_free(struct redis_servers *s);
/* How many servers, and server i's handle (0: the main file's). */
int redis_servers_count(const struct redis_servers *s);
struct redis *redis_servers_at(struct redis_servers *s, int i);
/* The handle of queue q's server. */
struct redis *redis_servers_for(struct redis_servers *s, const struct queue_policy *q);
/*
 * redis_sample over several servers: the queues of each server in one
 * pipelined round trip to it (servers one after another). A server that
 * fails marks only its queues (out[i].ok = false) and adds "redis <server>:
 * <reason>" to err; returns how many servers failed (0 = all answered).
 */
int redis_sample_servers(struct redis_servers *s, const struct queue_policy *const *queues,
    int n, double t, struct raw_sample *out, int *round_trips, char *err, size_t errlen);

/*
 * The agent's HA lease (scaleno(8) "agent"): SET key value NX PX ttl,
 * renewed by a compare-and-set. Returns 1 when we hold it, 0 when another
 * agent does, -1 on error (nobody should act).
 */
int redis_agent_lease(struct redis *r, const char *key, const char *owner, int64_t ttl_ms);
/* Give the lease up if owner holds it (a clean shutdown), so a standby takes over at once. 0 or -1. */
int redis_agent_lease_release(struct redis *r, const char *key, const char *owner);

#endif
