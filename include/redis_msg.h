/*
 * redis_msg — one message as read from a stream (the same type the handler
 * runs on), lists of messages and of fields to write, and the failure
 * fields a message carries into a retry stage or the dead-letter stream
 * (scaleno-worker(8) "MODES").
 */
#ifndef SCALENO_REDIS_MSG_H
#define SCALENO_REDIS_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "redis.h"

#define REDIS_ID_MAX 48

/*
 * One stream entry. Field names and values are binary-safe and owned by the
 * message (redis_msg_free), except in copies made for the handler.
 */
struct message {
	const char *queue;	/* set by the consumer for the handler; not owned */
	const char *stream;	/* the stream it was read from; not owned */
	int src;		/* index of the stream in the reader's list */
	char id[REDIS_ID_MAX];
	bool deleted;		/* pending, but gone from the stream (XDEL or trim) */
	int64_t delivery;	/* Redis delivery count (1 = first delivery) */
	/*
	 * For the handler (scaleno-worker(8) "The message"), set by the
	 * consumer before each run: the partition, the retry stage (0 = main
	 * stream), this attempt's number counting every attempt at the message
	 * from 1, and the first failure's time (0 = none yet) and last error
	 * (NULL = none yet; not owned).
	 */
	int partition;
	int stage;
	int64_t attempt;
	int64_t first_failed_ms;
	const char *last_error;
	size_t nfields;
	char **names;
	size_t *name_lens;
	char **values;
	size_t *value_lens;
};
/* Free the fields of one message filled outside a batch (redis_halt_get). */
void redis_msg_free(struct message *e);
/* The value of name in e, or NULL (length in *len). */
const char *redis_msg_field(const struct message *e, const char *name, size_t *len);

/* A growable list of messages. Zero-initialise; free with redis_batch_free. */
struct redis_batch {
	struct message *e;
	size_t n, cap;
};
void redis_batch_clear(struct redis_batch *b);	/* frees the messages, keeps the array */
void redis_batch_free(struct redis_batch *b);

/* A list of field/value pairs to write (binary-safe). Zero-initialise. */
struct redis_fields {
	struct redis_args a;	/* 2n strings: name, value, ... */
};
/* Add a pair; the strings are not copied (they must outlive f). */
int redis_fields_add(struct redis_fields *f, const char *name, size_t nlen, const char *val,
    size_t vlen);
/* Add a value formatted with printf; the list keeps the string. */
int redis_fields_addf(struct redis_fields *f, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void redis_fields_free(struct redis_fields *f);
size_t redis_fields_count(const struct redis_fields *f);	/* pairs */

/*
 * The fields of e moved to a retry stage or the DLQ after a failure: the
 * original fields plus x-origin-stream and x-origin-id (kept from an earlier
 * move, else origin and e->id), x-attempts = attempts (every attempt at the
 * message so far, the count the handler sees as meta.attempt), x-first-failed-ms
 * (kept), x-last-failed-ms = now_ms, x-error = error, x-error-history (one
 * line per failure: "<ms> <main|retry:k> x<attempts>: <error>", oldest
 * dropped beyond a few KB) and x-stage = to_stage when it is > 0.
 * from_stage is where the message failed (0 = main stream). out points
 * into e's original fields (keep e alive while out is used) and owns the
 * rest; free it with redis_fields_free.
 */
int redis_failure_fields(const struct message *e, const char *origin, int attempts,
    const char *error, int64_t now_ms, int from_stage, int to_stage, struct redis_fields *out);
/* Whether a field name is one the failure fields above write. */
bool redis_is_failure_field(const char *name, size_t len);
/*
 * Attempts made at e before this delivery: x-attempts of a retry-stage or
 * dead-letter entry (0 on a main-stream entry), plus one per earlier
 * delivery of this entry (a crash or a drain in the middle of it).
 */
int64_t redis_msg_attempts_before(const struct message *e, bool stage_entry);

/* Millisecond part of a stream id; -1 when it is not one. */
int64_t redis_id_ms(const char *id);

/* ---- for the stream and partition modules: reading replies into messages ---- */

/*
 * Redis' Lua cannot unpack more than about 8000 values into one call: an
 * entry with more field pairs than this is never passed to a script whole.
 */
#define REDIS_LUA_MAX_PAIRS 3900

/* A string reply that is an id into dst (REDIS_ID_MAX). 0 or -1. */
int redis_copy_id(char *dst, const struct redis_reply *r);
/* Fill e from a field list reply (flat name, value, ...), or as deleted when nil. */
int redis_msg_fill(struct message *e, const struct redis_reply *fields);
/* Append the entries of one [id, fields] list; -1 on a malformed reply or OOM. */
int redis_batch_append(struct redis_batch *out, const struct redis_reply *list, int src,
    int64_t delivery);
/*
 * A script reply that is a new stream id (1, copied to new_id when not
 * NULL) or nil (0); error replies give REDIS_FENCED or -1. Frees rep.
 */
int redis_id_reply(struct redis_reply *rep, const char *what, char *new_id, char *err,
    size_t errlen);

#endif
