/*
 * redis_int.h — private to the Redis connection module, which is three
 * files: redis.c (the connection, our reply type, the one send path, the
 * script registry), redis_sentinel.c (finding the master through the
 * Sentinels, the failover notice) and redis_cluster.c (the slot map,
 * MOVED/ASK/TRYAGAIN, a connection per node). The only header of src/
 * that includes hiredis, and only those three files include it.
 */
#ifndef SCALENO_REDIS_INT_H
#define SCALENO_REDIS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "redis.h"

#define REDIS_BACKOFF_BASE_MS 100
#define REDIS_BACKOFF_CAP_MS 5000

struct redis_node;
struct redis_sent;

struct redis {
	char *address;
	char **sentinels;	/* Sentinel mode when nsentinels > 0 */
	size_t nsentinels;
	char *master_name;
	char *sentinel_password;
	char shown[320];	/* redis_address with Sentinel or Cluster */
	unsigned generation;	/* connections made */
	size_t sentinel_next;	/* the Sentinel to ask first: the one that named the master */
	char master[280];	/* the master's address, as the Sentinel named it */
	int64_t next_watch_ms;	/* monotonic; when to ask that Sentinel again */
	size_t inflight;	/* commands sent whose replies are not read yet */
	char *username;
	char *password;
	int database;
	int64_t connect_timeout_ms, command_timeout_ms;

	redisContext *c;
	bool broken;
	unsigned attempt;	/* failed connects in a row */
	int64_t next_try_ms;	/* monotonic; no connect before this */
	bool held_off;		/* the last connect was refused by the backoff */
	int err;		/* 0, or 1 after an I/O or connection error */
	char errstr[512];

	char (*sha)[41];	/* per script of redis_scripts: "" until loaded */

	/* Redis Cluster (ncluster > 0): r->c stays NULL, each node has its own. */
	char **cluster;		/* the seed nodes */
	size_t ncluster;
	struct redis_node *nodes;	/* every node the slot map named */
	size_t nnodes;
	int16_t *slots;		/* slot -> node index, -1 unknown */
	bool map_stale;		/* reload the slot map before the next command */
	int last_node;		/* where keyless commands go: where the last one went */
	struct redis_sent *fifo;	/* commands whose replies are not read yet, in order */
	size_t fhead, fn, fcap;
	int64_t rcv_ms;		/* a swapped receive timeout, 0 = command_timeout */
	unsigned moved, asked, maps;
};

/* ---- redis.c: connections, for the other two ---- */

/* ms milliseconds as a struct timeval (for redisSetTimeout, SO_RCVTIMEO). */
struct timeval redis_ms_to_tv(int64_t ms);

/* "host:port" or "[v6]:port" into host and port. 0 or -1 with err. */
int redis_parse_tcp(const char *address, char *host, size_t hostlen, int *port, char *err,
    size_t errlen);

/*
 * Connect to address ("host:port", "[v6]:port" or "unix:/path"), AUTH
 * (username may be "", password "" for none) and SELECT database (when not
 * 0), all within r->connect_timeout_ms; the receive timeout is then
 * r->command_timeout_ms and replies are our type. The connection (caller
 * frees with redisFree), or NULL with err. Does not touch r's state.
 */
redisContext *redis_connect_to(struct redis *r, const char *address, const char *username,
    const char *password, int database, char *err, size_t errlen);

/*
 * One command on c, waiting for the reply: the reply (caller frees; never
 * an error reply), or NULL with err "<what>: <reason>".
 */
struct redis_reply *redis_ask(redisContext *c, const char *what, int argc, const char **argv,
    char *err, size_t errlen);

/*
 * redis_ask on a connection of its own to address (redis_connect_to with
 * database 0), closed before returning.
 */
struct redis_reply *redis_ask_at(struct redis *r, const char *address, const char *username,
    const char *password, const char *what, int argc, const char **argv, char *err,
    size_t errlen);

/*
 * Before a connect attempt: -1 with err "<r->errstr> (next attempt in Nms)"
 * while the backoff delay after the last failure runs, else 0.
 */
int redis_backoff_wait(struct redis *r, int64_t now, char *err, size_t errlen);
/* After a failed connect attempt: the next one waits longer (up to a cap). */
void redis_backoff_fail(struct redis *r, int64_t now);

/* ---- redis_sentinel.c (nsentinels > 0; every function is a no-op otherwise) ---- */

/* Copy the Sentinel settings of o into r. 0, or -1 on OOM (redis_free cleans up). */
int redis_sentinel_init(struct redis *r, const struct redis_opts *o);
/* Wipe the Sentinel password and free what redis_sentinel_init made. */
void redis_sentinel_free(struct redis *r);

/*
 * The master of r->master_name: each Sentinel in turn (from the one that
 * answered last) names it, and it is used only when ROLE confirms it.
 * Sets r->master, r->shown, r->sentinel_next and the watch time.
 * Connected (caller owns it), or NULL with every Sentinel's answer in err.
 */
redisContext *redis_sentinel_connect(struct redis *r, char *err, size_t errlen);

/*
 * The failover notice, called between commands on a live connection: about
 * once a second (nothing in flight) ask the Sentinel that named the master
 * whether it still does; when it names another, r->broken is set and
 * r->errstr says why. A Sentinel that does not answer changes nothing.
 */
void redis_sentinel_watch(struct redis *r, int64_t now);

/*
 * A reply just read: one that says the server is no longer the master to
 * write to (READONLY, LOADING, UNBLOCKED, MASTERDOWN) sets r->broken and
 * r->errstr, so the next command asks the Sentinels again.
 */
void redis_sentinel_reply(struct redis *r, const struct redis_reply *rep);

/* ---- redis_cluster.c (ncluster > 0; r->c stays NULL) ---- */

/* Copy the seed nodes of o into r, slot map empty and stale. 0, or -1 on OOM. */
int redis_cluster_init(struct redis *r, const struct redis_opts *o);
/* Close every node connection and free what redis_cluster_init and routing made. */
void redis_cluster_free(struct redis *r);

/*
 * After an I/O or protocol error: close every node connection and forget
 * the commands in flight (their replies may be half read on any node).
 */
void redis_cluster_reset(struct redis *r);

/*
 * Load the slot map when it is stale (first use, MOVED, a node error),
 * asking the known nodes, then the seeds; only when nothing is in flight.
 * 0, or -1 with err (and a backoff before the next attempt).
 */
int redis_cluster_ensure(struct redis *r, char *err, size_t errlen);

/*
 * Append a to the connection of the node serving the slot of its first key
 * (a keyless command goes where the last one went). 0, or -1 with err (the
 * map then stale, or on OOM the pipeline reset).
 */
int redis_cluster_send(struct redis *r, const struct redis_args *a, char *err, size_t errlen);

/*
 * Read the oldest reply due, following up to a few MOVED, ASK and TRYAGAIN
 * redirects. 0 with *rep (caller frees; may be an error reply), or -1 with
 * err and r->errstr.
 */
int redis_cluster_read(struct redis *r, struct redis_reply **rep, char *err, size_t errlen);

/*
 * Set the receive timeout of every node connection, now and made later;
 * *old_ms (when not NULL) gets the previous one. Always 0.
 */
int redis_cluster_swap_timeout(struct redis *r, int64_t ms, int64_t *old_ms);

#endif
