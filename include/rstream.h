/*
 * rstream — every Redis stream operation of the worker side and of the
 * operator commands (dlq, resume): reading with XREADGROUP, acking,
 * reclaiming, atomic moves between streams (Lua), partition leases with a
 * fencing token, halt records, and consumer reaping. With redisq.c the only
 * code that includes hiredis; this header exposes only our own types.
 *
 * Every call takes a struct redisq (the connection with reconnect and
 * backoff), returns 0 (or a count / 1 / 0) on success and -1 with a message
 * in err on failure. After an I/O error the connection is marked broken and
 * the next call reconnects (subject to redisq's backoff).
 *
 * The Lua scripts are embedded here and shipped as contrib/lua/<name>.lua
 * for producers and tools in other languages (tests check they are equal).
 */
#ifndef SCALENO_RSTREAM_H
#define SCALENO_RSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "redisq.h"

#define RS_ID_MAX 48

/* One stream entry as read. Field names and values are binary-safe. */
struct rs_entry {
	int src;		/* index of the stream in the caller's list */
	char id[RS_ID_MAX];
	bool deleted;		/* pending, but gone from the stream (XDEL or trim) */
	int64_t delivery;	/* Redis delivery count (1 = first delivery) */
	size_t nfields;
	char **names;
	size_t *name_lens;
	char **values;
	size_t *value_lens;
};

/* A growable list of entries. Zero-initialise; free with rstream_batch_free. */
struct rs_batch {
	struct rs_entry *e;
	size_t n, cap;
};
void rstream_batch_clear(struct rs_batch *b);	/* frees the entries, keeps the array */
void rstream_batch_free(struct rs_batch *b);
/* Free the fields of one entry filled outside a batch (rstream_halt_get). */
void rstream_entry_free(struct rs_entry *e);

/* A list of field/value pairs to write (binary-safe). Zero-initialise. */
struct rs_fields {
	const char **v;		/* 2n items: name, value, ... */
	size_t *len;
	size_t n, cap;		/* n pairs */
	char **owned;		/* strings this list allocated, freed with it */
	size_t nowned, capowned;
};
/* Add a pair; the strings are not copied (they must outlive f). */
int rstream_fields_add(struct rs_fields *f, const char *name, size_t nlen, const char *val,
    size_t vlen);
/* Add a value formatted with printf; the list keeps the string. */
int rstream_fields_addf(struct rs_fields *f, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void rstream_fields_free(struct rs_fields *f);
/* The value of name in e, or NULL (length in *len). */
const char *rstream_entry_field(const struct rs_entry *e, const char *name, size_t *len);

/*
 * The fields of e moved to a retry stage or the DLQ after a failure: the
 * original fields plus x-origin-stream and x-origin-id (kept from an earlier
 * move, else origin and e->id), x-attempts (accumulated), x-first-failed-ms
 * (kept), x-last-failed-ms = now_ms, x-error = error, x-error-history (one
 * line per failure: "<ms> <main|retry:k> x<attempts>: <error>", oldest
 * dropped beyond a few KB) and x-stage = to_stage when it is > 0.
 * from_stage is where the message failed (0 = main stream). out points
 * into e's original fields (keep e alive while out is used) and owns the
 * rest; free it with rstream_fields_free.
 */
int rstream_failure_fields(const struct rs_entry *e, const char *origin, int attempts,
    const char *error, int64_t now_ms, int from_stage, int to_stage, struct rs_fields *out);
/* Whether a field name is one the failure fields above write. */
bool rstream_is_failure_field(const char *name, size_t len);

/* XGROUP CREATE stream group 0 MKSTREAM; an existing group is fine. */
int rstream_group_create(struct redisq *r, const char *stream, const char *group, char *err,
    size_t errlen);

/*
 * XREADGROUP GROUP group consumer COUNT count [BLOCK block_ms] STREAMS
 * streams... ids...; entries are appended to out with src = stream index.
 * ids[i] is ">" (new entries, delivery 1) or an id (this consumer's own
 * pending entries after it; their delivery counts come from XPENDING).
 * block_ms < 0 means no BLOCK. Returns the number of entries appended.
 */
int rstream_read(struct redisq *r, const char *group, const char *consumer,
    const char *const *streams, const char *const *ids, int nstreams, int count,
    int64_t block_ms, struct rs_batch *out, char *err, size_t errlen);

/*
 * Retry stage read: atomically deliver to consumer at most count entries of
 * stage stream that are due (their id time + delay_ms <= Redis time).
 * Returns the number appended (src = src); *next_due_ms gets the wait until
 * the next undelivered entry is due (-1 when there is none).
 */
int rstream_read_due(struct redisq *r, const char *stream, const char *group,
    const char *consumer, int64_t delay_ms, int count, int src, struct rs_batch *out,
    int64_t *next_due_ms, char *err, size_t errlen);

/*
 * XACK ids (n of them). With lease_key and token non-NULL, only while the
 * lease holds token (fencing): returns -2 when fenced out.
 */
int rstream_ack(struct redisq *r, const char *stream, const char *group,
    const char *const *ids, size_t n, const char *lease_key, const char *token, char *err,
    size_t errlen);

/*
 * XAUTOCLAIM stream group consumer min_idle cursor COUNT count JUSTID:
 * entries idle longer than min_idle move to consumer's pending list
 * (read them with rstream_read from "0"). cursor (RS_ID_MAX bytes) is
 * updated; "0-0" means the scan is complete. *claimed and *deleted get the
 * number of entries claimed and of pending ids Redis dropped because the
 * entry was gone from the stream.
 */
int rstream_autoclaim(struct redisq *r, const char *stream, const char *group,
    const char *consumer, int64_t min_idle_ms, char *cursor, int count, int64_t *claimed,
    int64_t *deleted, char *err, size_t errlen);

/*
 * Atomic move (one Lua script): acknowledge id in src for group and, only
 * if it was still pending (someone else may have handled it meanwhile),
 * XADD fields to dst (and XDEL id from src when del). With token non-NULL
 * the move happens only while lease_key holds token. Returns 1 moved,
 * 0 not pending any more (nothing done), -2 fenced out, -1 error.
 * new_id (RS_ID_MAX, may be NULL) gets the id in dst.
 */
int rstream_move(struct redisq *r, const char *src, const char *dst, const char *group,
    const char *id, bool del, const char *lease_key, const char *token,
    const struct rs_fields *fields, char *new_id, char *err, size_t errlen);

/*
 * Partition lease: acquire (SET NX PX with a fencing token "<owner>#<epoch>",
 * the epoch from INCR epoch_key), renew or release. Each call also reports
 * whether halt_key exists. Return 1 (held; token filled on acquire), 0 (held
 * by someone else / not ours any more), -1 error.
 */
int rstream_lease_acquire(struct redisq *r, const char *lease_key, const char *epoch_key,
    const char *halt_key, const char *owner, int64_t ttl_ms, char *token, size_t toklen,
    bool *halted, char *err, size_t errlen);
int rstream_lease_renew(struct redisq *r, const char *lease_key, const char *halt_key,
    const char *token, int64_t ttl_ms, bool *halted, char *err, size_t errlen);
int rstream_lease_release(struct redisq *r, const char *lease_key, const char *token,
    char *err, size_t errlen);

/*
 * Heartbeat self in the members set (members_key) and return how many
 * consumers were seen within ttl_ms, self included.
 */
int rstream_members(struct redisq *r, const char *members_key, const char *self,
    int64_t ttl_ms, char *err, size_t errlen);

/* Write the halt record (hash fields) while lease_key holds token. 1, -2 fenced, -1. */
int rstream_halt_set(struct redisq *r, const char *halt_key, const char *lease_key,
    const char *token, const struct rs_fields *fields, char *err, size_t errlen);
/* Read the halt record into out (fields of a hash). 1 halted, 0 not, -1 error. */
int rstream_halt_get(struct redisq *r, const char *halt_key, struct rs_entry *out, char *err,
    size_t errlen);

/*
 * resume: with skip false, reset the halting message's delivery count and
 * remove the halt record (the owner retries it); with skip true, atomically
 * XADD fields to dlq, XACK the message (expected_id must still be the halting
 * one) and remove the halt record. Returns 1 done, 0 not halted, -1 error;
 * halted_id and dlq_id (RS_ID_MAX, may be NULL) are filled.
 */
int rstream_resume(struct redisq *r, const char *halt_key, const char *stream,
    const char *group, const char *dlq, bool skip, const char *expected_id,
    const struct rs_fields *fields, char *halted_id, char *dlq_id, char *err, size_t errlen);

/*
 * Remove, in one Lua script, every consumer of group other than self that
 * has nothing pending and has been idle longer than idle_ms (the check and
 * the delete cannot race). Returns the number removed.
 */
int rstream_reap_consumers(struct redisq *r, const char *stream, const char *group,
    const char *self, int64_t idle_ms, char *err, size_t errlen);

/* XLEN; a missing key is 0. */
int rstream_len(struct redisq *r, const char *key, int64_t *len, char *err, size_t errlen);

/* XRANGE key start end COUNT count (rev: XREVRANGE end start). Returns entries appended. */
int rstream_range(struct redisq *r, const char *key, const char *start, const char *end,
    int count, bool rev, struct rs_batch *out, char *err, size_t errlen);

/* XDEL ids; returns the number deleted. */
int rstream_delete(struct redisq *r, const char *key, const char *const *ids, size_t n,
    char *err, size_t errlen);

/*
 * Replay: atomically, if id is still in dlq, XADD fields to origin and XDEL
 * id from dlq. 1 replayed (new_id filled), 0 no such entry, -1 error.
 */
int rstream_replay(struct redisq *r, const char *dlq, const char *origin, const char *id,
    const struct rs_fields *fields, char *new_id, char *err, size_t errlen);

/* Redis server time in ms (TIME). */
int rstream_time_ms(struct redisq *r, int64_t *ms, char *err, size_t errlen);

/* Millisecond part of a stream id; -1 when it is not one. */
int64_t rstream_id_ms(const char *id);

/* The source text of the embedded script name ("move", ...), or NULL. For tests. */
const char *rstream_script_source(const char *name);

#endif
