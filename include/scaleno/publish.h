/*
 * scaleno/publish.h — the producer side of scaleno for programs in C: add
 * a message to a queue, routed to one of its partition streams by the
 * sticky key -> partition map (scaleno(8) "publish").
 *
 * The routing and the add run in one Lua script (shipped as
 * share/scaleno/lua/publish.lua for producers in other languages; the text
 * is also returned by scaleno_publish_script), so the map and the stream
 * can never disagree. A message with a key goes where that key's recent
 * messages went, as long as the key had a message within the key TTL;
 * a new or long-idle key goes to hash(key) mod partitions; a keyless one
 * takes the partitions in turn. partitions == 1 is the plain stream.
 *
 * Ownership: the publisher owns its Redis connection (hiredis, with
 * reconnect and backoff). Nothing passed in is kept after a call returns.
 * A publisher is not thread-safe: use one per thread. As with hiredis, the
 * program should ignore SIGPIPE, or a connection Redis closed kills it
 * instead of failing the call. This header uses only standard C types.
 */
#ifndef SCALENO_PUBLISH_PUBLIC_H
#define SCALENO_PUBLISH_PUBLIC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Key TTL when scaleno_queue.key_ttl_ms is 0: one hour (see scaleno(8)). */
#define SCALENO_PUBLISH_TTL_MS (60 * 60 * 1000)
/* Room for an entry id ("1700000000000-12") and its NUL. */
#define SCALENO_PUBLISH_ID_MAX 48
/* Most field/value pairs in one message (Redis' Lua unpacks about 8000 values). */
#define SCALENO_PUBLISH_MAX_PAIRS 3900

struct scaleno_publisher;

/* Connection settings; a zeroed struct (or NULL) means the defaults. */
struct scaleno_publish_options {
	const char *username;		/* NULL or "": none (AUTH password alone) */
	const char *password;		/* NULL or "": no AUTH */
	int database;			/* SELECT, 0 = default */
	int64_t connect_timeout_ms;	/* 0 = 500 */
	int64_t command_timeout_ms;	/* 0 = 2000 */
	/*
	 * Redis Sentinel: with nsentinels > 0 the address given to
	 * scaleno_publish_open is ignored (it may be NULL) and the master of
	 * master_name is asked of these Sentinels ("host:port" each) when
	 * connecting and again after a connection error or a -READONLY,
	 * -LOADING reply (scaleno.conf(5) "redis").
	 */
	const char *const *sentinels;
	size_t nsentinels;
	const char *master_name;
	const char *sentinel_password;	/* NULL or "": Sentinels without AUTH */
	/*
	 * Redis Cluster: with ncluster > 0 address is ignored (may be NULL) and
	 * these seed nodes ("host:port" each) give the slot map; commands go to
	 * the node of their slot, MOVED and ASK are followed. The stream needs a
	 * hash tag ("{payments}").
	 */
	const char *const *cluster;
	size_t ncluster;
};

/* The queue, as in its policy file (queue.stream, queue.group, queue.partitions). */
struct scaleno_queue {
	const char *stream;
	const char *group;
	int partitions;			/* >= 1 */
	int64_t key_ttl_ms;		/* 0 = SCALENO_PUBLISH_TTL_MS */
};

/*
 * A publisher for the Redis at address ("host:port" or "unix:/path").
 * Does not connect yet: the first scaleno_publish does (and reconnects
 * after a failure, with a backoff). Everything is copied. NULL with err
 * on a bad argument or out of memory. Free with scaleno_publish_close.
 */
struct scaleno_publisher *scaleno_publish_open(const char *address,
    const struct scaleno_publish_options *opt, char *err, size_t errlen);

/*
 * Add one message to queue q. key/key_len: the ordering key (binary-safe;
 * NULL or key_len 0 = keyless). fields: nfields strings, name, value,
 * name, value, ... (nfields even, 2 to 2 * SCALENO_PUBLISH_MAX_PAIRS),
 * lens their lengths (binary-safe; NULL = strlen of each). The consumer
 * group is created at id 0 when the partition stream is new.
 * Returns 0 with *partition (may be NULL) and id (idlen bytes, may be NULL)
 * set, or -1 with err. After a connection lost mid-call the message may or
 * may not have been added: a retry can duplicate it, never lose it.
 */
int scaleno_publish(struct scaleno_publisher *p, const struct scaleno_queue *q,
    const char *key, size_t key_len, const char *const *fields, const size_t *lens,
    size_t nfields, int *partition, char *id, size_t idlen, char *err, size_t errlen);

/*
 * Wait until at least numreplicas replicas have acknowledged every write
 * this publisher made so far (Redis WAIT), or timeout_ms passed (0 = wait
 * forever). Redis replicates asynchronously: a message a failover's new
 * master never received is lost, and this is the producer's remedy
 * (scaleno-worker(8) "FAILOVER"). Returns 0 when enough replicas have it,
 * 1 when fewer did before the timeout (err names how many), -1 on an
 * error; *acked (may be NULL) gets the count. After a reconnect (a failover
 * in between) the count covers only the new connection's writes.
 */
int scaleno_publish_wait(struct scaleno_publisher *p, int numreplicas, int64_t timeout_ms,
    int *acked, char *err, size_t errlen);

/* Close the connection and free p; NULL is a no-op. */
void scaleno_publish_close(struct scaleno_publisher *p);

/* The Lua script's text (static; the same as contrib/lua/publish.lua). */
const char *scaleno_publish_script(void);

#ifdef __cplusplus
}
#endif

#endif
