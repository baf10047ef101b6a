/*
 * redis_stream — the stream operations of the worker (scaleno-worker(8))
 * and of the operator commands (scaleno(8) dlq): reading with XREADGROUP,
 * acknowledging, reclaiming, atomic moves between streams (Lua), consumer
 * reaping, dead-letter replay.
 *
 * Every call takes a struct redis (see redis.h), returns 0 (or a count /
 * 1 / 0) on success and -1 with a message in err on failure. After an I/O
 * error the connection is marked broken and the next call reconnects
 * (subject to the backoff).
 */
#ifndef SCALENO_REDIS_STREAM_H
#define SCALENO_REDIS_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "redis.h"
#include "redis_msg.h"

/* XGROUP CREATE stream group 0 MKSTREAM; an existing group is fine. */
int redis_group_create(struct redis *r, const char *stream, const char *group, char *err,
    size_t errlen);

/*
 * XREADGROUP GROUP group consumer COUNT count [BLOCK block_ms] STREAMS
 * streams... ids...; entries are appended to out with src = stream index.
 * ids[i] is ">" (new entries, delivery 1) or an id (this consumer's own
 * pending entries after it; their delivery counts come from XPENDING).
 * block_ms < 0 means no BLOCK. Returns the number of entries appended.
 */
int redis_stream_read(struct redis *r, const char *group, const char *consumer,
    const char *const *streams, const char *const *ids, int nstreams, int count,
    int64_t block_ms, struct redis_batch *out, char *err, size_t errlen);

/* An acknowledgement sent in the round trip of a read (redis_stream_ack_read). */
struct redis_acks {
	const char *stream;
	const char *const *ids;
	size_t n;
	bool del;		/* retry stage: XDEL them too (nobody else trims it) */
	int src;		/* the caller's */
	int64_t acked;		/* out: entries acknowledged, -1 when the XACK failed */
	char err[256];		/* out: why, when acked is -1 after an error reply */
};

/*
 * redis_stream_read that sends the XACK (and XDEL) of each of acks[0..nacks)
 * first, in the same round trip. Each set's acked tells how it went (-1:
 * not acknowledged, its entries stay pending); the return value is the
 * read's, as redis_stream_read. After an I/O error, every set whose reply
 * had not come is -1.
 */
int redis_stream_ack_read(struct redis *r, struct redis_acks *acks, size_t nacks,
    const char *group, const char *consumer, const char *const *streams,
    const char *const *ids, int nstreams, int count, int64_t block_ms,
    struct redis_batch *out, char *err, size_t errlen);

/*
 * The same, without BLOCK, in two halves so that the caller works while
 * the round trip is under way: _send writes the commands out (the
 * connection must carry no other command until _recv has read their
 * replies); _recv takes the same arguments. Both 0/count or -1.
 */
int redis_stream_ack_read_send(struct redis *r, struct redis_acks *acks, size_t nacks,
    const char *group, const char *consumer, const char *const *streams,
    const char *const *ids, int nstreams, int count, char *err, size_t errlen);
int redis_stream_ack_read_recv(struct redis *r, struct redis_acks *acks, size_t nacks,
    const char *group, const char *consumer, const char *const *streams,
    const char *const *ids, int nstreams, struct redis_batch *out, char *err, size_t errlen);

/*
 * Retry stage read: atomically deliver to consumer at most count entries of
 * stage stream that are due (their id time + delay_ms <= Redis time).
 * Returns the number appended (src = src); *next_due_ms gets the wait until
 * the next undelivered entry is due (-1 when there is none).
 */
int redis_stream_read_due(struct redis *r, const char *stream, const char *group,
    const char *consumer, int64_t delay_ms, int count, int src, struct redis_batch *out,
    int64_t *next_due_ms, char *err, size_t errlen);

/*
 * XACK ids (n of them). With lease_key and token non-NULL, only while the
 * lease holds token (fencing): returns REDIS_FENCED when fenced out.
 */
int redis_stream_ack(struct redis *r, const char *stream, const char *group,
    const char *const *ids, size_t n, const char *lease_key, const char *token, char *err,
    size_t errlen);

/*
 * XAUTOCLAIM stream group consumer min_idle cursor COUNT count JUSTID:
 * entries idle longer than min_idle move to consumer's pending list
 * (read them with redis_stream_read from "0"). cursor (REDIS_ID_MAX bytes) is
 * updated; "0-0" means the scan is complete. *claimed and *deleted get the
 * number of entries claimed and of pending ids Redis dropped because the
 * entry was gone from the stream.
 */
int redis_stream_autoclaim(struct redis *r, const char *stream, const char *group,
    const char *consumer, int64_t min_idle_ms, char *cursor, int count, int64_t *claimed,
    int64_t *deleted, char *err, size_t errlen);

/* XADD key * fields; new_id (REDIS_ID_MAX, may be NULL) gets its id. 0 or -1. */
int redis_stream_add(struct redis *r, const char *key, const struct redis_fields *fields,
    char *new_id, char *err, size_t errlen);

/*
 * Keep entries this consumer holds fresh: XCLAIM stream group consumer
 * min_idle ids... JUSTID resets their idle time without counting a
 * delivery. An entry another consumer claimed meanwhile has been idle for
 * less than min_idle (it claimed it after it had been ours for claim_idle)
 * and is left alone. Returns the number refreshed.
 */
int redis_stream_touch(struct redis *r, const char *stream, const char *group,
    const char *consumer, int64_t min_idle_ms, const char *const *ids, size_t n, char *err,
    size_t errlen);

/*
 * Atomic move (one Lua script): acknowledge id in src for group and, only
 * if it was still pending (someone else may have handled it meanwhile),
 * XADD fields to dst (and XDEL id from src when del). With token non-NULL
 * the move happens only while lease_key holds token. Returns 1 moved,
 * 0 not pending any more (nothing done), REDIS_FENCED, -1 error.
 * new_id (REDIS_ID_MAX, may be NULL) gets the id in dst.
 */
int redis_stream_move(struct redis *r, const char *src, const char *dst, const char *group,
    const char *id, bool del, const char *lease_key, const char *token,
    const struct redis_fields *fields, char *new_id, char *err, size_t errlen);

/*
 * Remove, in one Lua script, every consumer of group other than self that
 * has nothing pending and has been idle longer than idle_ms (the check and
 * the delete cannot race). Returns the number removed.
 */
int redis_reap_consumers(struct redis *r, const char *stream, const char *group,
    const char *self, int64_t idle_ms, char *err, size_t errlen);

/* XLEN; a missing key is 0. */
int redis_stream_len(struct redis *r, const char *key, int64_t *len, char *err, size_t errlen);

/* XRANGE key start end COUNT count (rev: XREVRANGE end start). Returns entries appended. */
int redis_stream_range(struct redis *r, const char *key, const char *start, const char *end,
    int count, bool rev, struct redis_batch *out, char *err, size_t errlen);

/* XDEL ids; returns the number deleted. */
int redis_stream_delete(struct redis *r, const char *key, const char *const *ids, size_t n,
    char *err, size_t errlen);

/*
 * Replay: atomically, if id is still in dlq, XADD fields to origin and XDEL
 * id from dlq. 1 replayed (new_id filled), 0 no such entry, -1 error.
 */
int redis_stream_replay(struct redis *r, const char *dlq, const char *origin, const char *id,
    const struct redis_fields *fields, char *new_id, char *err, size_t errlen);

/* Redis server time in ms (TIME). */
int redis_time_ms(struct redis *r, int64_t *ms, char *err, size_t errlen);

#endif
