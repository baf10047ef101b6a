/*
 * redis_stream.c — see include/redis_stream.h: the stream operations of the
 * worker (scaleno-worker(8)) and of the operator commands (scaleno(8) dlq).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_stream.h"
#include "util.h"

/* Extra socket timeout on top of BLOCK, so a blocked read is not cut short. */
#define BLOCK_MARGIN_MS 2000

int
redis_group_create(struct redis *r, const char *stream, const char *group, char *err,
    size_t errlen)
{
	struct redis_args a = REDIS_ARGS_INIT;
	struct redis_reply *rep;
	int rc = -1;

	redis_args_str(&a, "XGROUP");
	redis_args_str(&a, "CREATE");
	redis_args_key(&a, stream);
	redis_args_str(&a, group);
	redis_args_str(&a, "0");
	redis_args_str(&a, "MKSTREAM");
	rep = redis_run(r, &a, false, err, errlen);
	if (rep == NULL)
		return -1;
	if (rep->type != RR_ERROR || strncmp(rep->str, "BUSYGROUP", 9) == 0)
		rc = 0;
	else
		snprintf(err, errlen, "redis XGROUP CREATE %s %s: %s", stream, group, rep->str);
	redis_reply_free(rep);
	return rc;
}

/* Fill the delivery counts of out->e[from..] (all from stream src) from XPENDING. */
static int
fill_deliveries(struct redis *r, const char *stream, const char *group, const char *consumer,
    struct redis_batch *out, size_t from, char *err, size_t errlen)
{
	struct redis_args a = REDIS_ARGS_INIT;
	struct redis_reply *rep;
	size_t j = from;

	if (from >= out->n)
		return 0;
	redis_args_str(&a, "XPENDING");
	redis_args_key(&a, stream);
	redis_args_str(&a, group);
	redis_args_str(&a, out->e[from].id);
	redis_args_str(&a, out->e[out->n - 1].id);
	redis_args_fmt(&a, "%zu", out->n - from);
	redis_args_str(&a, consumer);
	rep = redis_run(r, &a, true, err, errlen);
	if (rep == NULL)
		return -1;
	if (rep->type != RR_ARRAY) {
		redis_reply_free(rep);
		return redis_bad_reply("XPENDING", err, errlen);
	}
	/* Both lists are in id order: one merge pass. */
	for (size_t i = 0; i < rep->elements; i++) {
		const struct redis_reply *p = rep->element[i];

		if (p->type != RR_ARRAY || p->elements < 4 || !redis_reply_is_str(p->element[0]) ||
		    p->element[3]->type != RR_INTEGER)
			continue;
		while (j < out->n && strcmp(out->e[j].id, p->element[0]->str) != 0)
			j++;
		if (j == out->n)
			break;
		out->e[j].delivery = p->element[3]->integer;
	}
	redis_reply_free(rep);
	return 0;
}

int
redis_stream_read(struct redis *r, const char *group, const char *consumer,
    const char *const *streams, const char *const *ids, int nstreams, int count,
    int64_t block_ms, struct redis_batch *out, char *err, size_t errlen)
{
	return redis_stream_ack_read(r, NULL, 0, group, consumer, streams, ids, nstreams, count,
	    block_ms, out, err, errlen);
}

/* Append the XACK of set k (and its XDEL) to the pipeline. 0 or -1. */
static int
acks_append(struct redis *r, const char *group, const struct redis_acks *k, char *err,
    size_t errlen)
{
	for (int del = 0; del <= (k->del ? 1 : 0); del++) {
		struct redis_args a = REDIS_ARGS_INIT;
		int rc;

		redis_args_str(&a, del ? "XDEL" : "XACK");
		redis_args_key(&a, k->stream);
		if (!del)
			redis_args_str(&a, group);
		for (size_t i = 0; i < k->n; i++)
			redis_args_str(&a, k->ids[i]);
		rc = redis_append(r, &a, err, errlen);
		redis_args_free(&a);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* The parsed XREADGROUP reply rep into out (see redis_stream_read). Count or -1. */
static int
read_parse(struct redis *r, const struct redis_reply *rep, const char *group,
    const char *consumer, const char *const *streams, const char *const *ids, int nstreams,
    struct redis_batch *out, char *err, size_t errlen)
{
	if (rep->type == RR_NIL)
		return 0;
	if (rep->type != RR_ARRAY)
		return redis_bad_reply("XREADGROUP", err, errlen);
	for (size_t i = 0; i < rep->elements; i++) {
		const struct redis_reply *s = rep->element[i];
		size_t before = out->n;
		int src = -1;

		if (s->type != RR_ARRAY || s->elements != 2 || !redis_reply_is_str(s->element[0]))
			return redis_bad_reply("XREADGROUP", err, errlen);
		for (int k = 0; k < nstreams; k++)
			if (strcmp(streams[k], s->element[0]->str) == 0)
				src = k;
		if (src < 0 || redis_batch_append(out, s->element[1], src, 1) < 0)
			return redis_bad_reply("XREADGROUP", err, errlen);
		if (strcmp(ids[src], ">") != 0 &&
		    fill_deliveries(r, streams[src], group, consumer, out, before, err, errlen) < 0)
			return -1;
	}
	return 0;
}

/* XREADGROUP ... into a (see redis_stream_read). */
static void
read_args(struct redis_args *a, const char *group, const char *consumer,
    const char *const *streams, const char *const *ids, int nstreams, int count,
    int64_t block_ms)
{
	redis_args_str(a, "XREADGROUP");
	redis_args_str(a, "GROUP");
	redis_args_str(a, group);
	redis_args_str(a, consumer);
	redis_args_str(a, "COUNT");
	redis_args_fmt(a, "%d", count);
	if (block_ms >= 0) {
		redis_args_str(a, "BLOCK");
		redis_args_fmt(a, "%" PRId64, block_ms);
	}
	redis_args_str(a, "STREAMS");
	for (int i = 0; i < nstreams; i++)
		redis_args_key(a, streams[i]);
	for (int i = 0; i < nstreams; i++)
		redis_args_str(a, ids[i]);
}

/*
 * The XACKs (and XDELs) of acks[0..nacks), then the XREADGROUP, appended
 * to the connection's pipeline (not written yet). 0, or -1 with the
 * connection marked broken (a pipeline appended in part must not go out).
 */
static int
ack_read_append(struct redis *r, struct redis_acks *acks, size_t nacks, const char *group,
    const char *consumer, const char *const *streams, const char *const *ids, int nstreams,
    int count, int64_t block_ms, char *err, size_t errlen)
{
	struct redis_args a = REDIS_ARGS_INIT;
	int rc = -1;

	for (size_t k = 0; k < nacks; k++)
		acks[k].acked = -1;
	if (redis_ensure(r, err, errlen) < 0)
		return -1;
	read_args(&a, group, consumer, streams, ids, nstreams, count, block_ms);
	for (size_t k = 0; k < nacks; k++)
		if (acks[k].n > 0 && acks_append(r, group, &acks[k], err, errlen) < 0)
			goto out;
	rc = redis_append(r, &a, err, errlen);
out:
	if (rc < 0)
		redis_mark_broken(r);
	redis_args_free(&a);
	return rc;
}

int
redis_stream_ack_read_send(struct redis *r, struct redis_acks *acks, size_t nacks,
    const char *group, const char *consumer, const char *const *streams,
    const char *const *ids, int nstreams, int count, char *err, size_t errlen)
{
	if (ack_read_append(r, acks, nacks, group, consumer, streams, ids, nstreams, count, -1,
	    err, errlen) < 0)
		return -1;
	if (redis_flush(r, err, errlen) < 0) {
		redis_mark_broken(r);	/* a pipeline sent in part */
		return -1;
	}
	return 0;
}

int
redis_stream_ack_read_recv(struct redis *r, struct redis_acks *acks, size_t nacks,
    const char *group, const char *consumer, const char *const *streams,
    const char *const *ids, int nstreams, struct redis_batch *out, char *err, size_t errlen)
{
	struct redis_reply *rep = NULL;
	size_t first = out->n;
	int rc = -1;

	for (size_t k = 0; k < nacks; k++) {
		for (int del = 0; acks[k].n > 0 && del <= (acks[k].del ? 1 : 0); del++) {
			if (redis_read_reply(r, &rep, err, errlen) < 0)
				goto out;
			/* XDEL failing only leaves a retry-stage entry behind, acknowledged. */
			if (!del && rep->type == RR_INTEGER)
				acks[k].acked = rep->integer;
			else if (!del)
				snprintf(acks[k].err, sizeof(acks[k].err), "XACK %s: %s", acks[k].stream,
				    rep->type == RR_ERROR ? rep->str : "unexpected reply");
			redis_reply_free(rep);
			rep = NULL;
		}
		if (acks[k].n == 0)
			acks[k].acked = 0;
	}
	if (redis_read_reply(r, &rep, err, errlen) < 0)
		goto out;
	if (rep->type == RR_ERROR)
		snprintf(err, errlen, "redis XREADGROUP: %s", rep->str);
	else if (read_parse(r, rep, group, consumer, streams, ids, nstreams, out, err, errlen) == 0)
		rc = (int)(out->n - first);
out:
	if (rc < 0) {
		while (out->n > first)
			redis_msg_free(&out->e[--out->n]);
	}
	redis_reply_free(rep);
	return rc;
}

int
redis_stream_ack_read(struct redis *r, struct redis_acks *acks, size_t nacks,
    const char *group, const char *consumer, const char *const *streams,
    const char *const *ids, int nstreams, int count, int64_t block_ms,
    struct redis_batch *out, char *err, size_t errlen)
{
	int64_t old = 0;
	int rc;

	/* One round trip: the acknowledgements, then the read. */
	if (ack_read_append(r, acks, nacks, group, consumer, streams, ids, nstreams, count,
	    block_ms, err, errlen) < 0)
		return -1;
	if (block_ms >= 0 && redis_swap_timeout(r, block_ms + BLOCK_MARGIN_MS, &old) < 0) {
		snprintf(err, errlen, "redis: cannot set the socket timeout: %s", strerror(errno));
		redis_mark_broken(r);
		return -1;
	}
	rc = redis_stream_ack_read_recv(r, acks, nacks, group, consumer, streams, ids, nstreams,
	    out, err, errlen);
	if (block_ms >= 0 && redis_connected(r))
		(void)redis_swap_timeout(r, old, NULL);
	return rc;
}

int
redis_stream_read_due(struct redis *r, const char *stream, const char *group,
    const char *consumer, int64_t delay_ms, int count, int src, struct redis_batch *out,
    int64_t *next_due_ms, char *err, size_t errlen)
{
	struct redis_args a = REDIS_ARGS_INIT;
	const char *keys[] = { stream };
	struct redis_reply *rep;
	size_t first = out->n;
	int rc = -1;

	*next_due_ms = -1;
	redis_args_str(&a, group);
	redis_args_str(&a, consumer);
	redis_args_fmt(&a, "%" PRId64, delay_ms);
	redis_args_fmt(&a, "%d", count);
	rep = redis_pair_reply(redis_run_script(r, "read_due", keys, 1, &a, NULL, err, errlen), 0,
	    "read_due", stream, &rc, err, errlen);
	if (rep == NULL)
		return rc;
	rc = -1;
	if (rep->element[0]->integer == 0) {
		if (rep->element[1]->type == RR_INTEGER)
			*next_due_ms = rep->element[1]->integer;
		rc = 0;
	} else {
		const struct redis_reply *x = rep->element[1];

		/* {1, [[stream, [[id, fields], ...]]]} */
		if (x->type == RR_ARRAY && x->elements == 1 &&
		    x->element[0]->type == RR_ARRAY && x->element[0]->elements == 2 &&
		    redis_batch_append(out, x->element[0]->element[1], src, 1) == 0)
			rc = (int)(out->n - first);
		else {
			while (out->n > first)
				redis_msg_free(&out->e[--out->n]);
			redis_bad_reply("read_due", err, errlen);
		}
	}
	redis_reply_free(rep);
	return rc;
}

int
redis_stream_ack(struct redis *r, const char *stream, const char *group,
    const char *const *ids, size_t n, const char *lease_key, const char *token, char *err,
    size_t errlen)
{
	struct redis_args a = REDIS_ARGS_INIT;
	struct redis_reply *rep;
	int rc = -1;

	if (n == 0)
		return 0;
	if (token != NULL) {
		const char *keys[] = { stream, lease_key };

		redis_args_str(&a, token);
		redis_args_str(&a, group);
		for (size_t i = 0; i < n; i++)
			redis_args_str(&a, ids[i]);
		rep = redis_run_script(r, "ack", keys, 2, &a, NULL, err, errlen);
	} else {
		redis_args_str(&a, "XACK");
		redis_args_key(&a, stream);
		redis_args_str(&a, group);
		for (size_t i = 0; i < n; i++)
			redis_args_str(&a, ids[i]);
		rep = redis_run(r, &a, false, err, errlen);
	}
	if (rep == NULL)
		return -1;
	if (rep->type == RR_ERROR)
		return redis_script_error(rep, "XACK", err, errlen);
	if (rep->type == RR_INTEGER)
		rc = (int)rep->integer;
	else
		redis_bad_reply("XACK", err, errlen);
	redis_reply_free(rep);
	return rc;
}

/* The head both claim commands share: VERB stream group consumer min-idle-time. */
static void
claim_args(struct redis_args *a, const char *verb, const char *stream, const char *group,
    const char *consumer, int64_t min_idle_ms)
{
	redis_args_str(a, verb);
	redis_args_key(a, stream);
	redis_args_str(a, group);
	redis_args_str(a, consumer);
	redis_args_fmt(a, "%" PRId64, min_idle_ms);
}

int
redis_stream_autoclaim(struct redis *r, const char *stream, const char *group,
    const char *consumer, int64_t min_idle_ms, char *cursor, int count, int64_t *claimed,
    int64_t *deleted, char *err, size_t errlen)
{
	struct redis_args a = REDIS_ARGS_INIT;
	struct redis_reply *rep;
	int rc = -1;

	*claimed = *deleted = 0;
	claim_args(&a, "XAUTOCLAIM", stream, group, consumer, min_idle_ms);
	redis_args_str(&a, cursor[0] ? cursor : "0-0");
	redis_args_str(&a, "COUNT");
	redis_args_fmt(&a, "%d", count);
	redis_args_str(&a, "JUSTID");
	rep = redis_run(r, &a, true, err, errlen);
	if (rep == NULL)
		return -1;
	/* 7.0+: [cursor, [ids], [deleted ids]]; 6.2: no third element. */
	if (rep->type != RR_ARRAY || rep->elements < 2 ||
	    rep->element[1]->type != RR_ARRAY || redis_copy_id(cursor, rep->element[0]) < 0) {
		redis_reply_free(rep);
		return redis_bad_reply("XAUTOCLAIM", err, errlen);
	}
	*claimed = (int64_t)rep->element[1]->elements;
	if (rep->elements >= 3 && rep->element[2]->type == RR_ARRAY)
		*deleted = (int64_t)rep->element[2]->elements;
	rc = 0;
	redis_reply_free(rep);
	return rc;
}

int
redis_stream_touch(struct redis *r, const char *stream, const char *group,
    const char *consumer, int64_t min_idle_ms, const char *const *ids, size_t n, char *err,
    size_t errlen)
{
	struct redis_args a = REDIS_ARGS_INIT;
	struct redis_reply *rep;
	int refreshed = -1;

	claim_args(&a, "XCLAIM", stream, group, consumer, min_idle_ms);
	for (size_t i = 0; i < n; i++)
		redis_args_str(&a, ids[i]);
	redis_args_str(&a, "JUSTID");
	if (n == 0) {
		redis_args_free(&a);
		return 0;
	}
	if ((rep = redis_run(r, &a, true, err, errlen)) == NULL)
		return -1;
	if (rep->type == RR_ARRAY)
		refreshed = (int)rep->elements;
	else
		redis_bad_reply("XCLAIM", err, errlen);
	redis_reply_free(rep);
	return refreshed;
}

/*
 * An entry with more than REDIS_LUA_MAX_PAIRS fields is moved by plain
 * commands, adding before acknowledging (group NULL: no ack) and deleting,
 * so a failure in between duplicates it but never loses it.
 */
static int
move_unscripted(struct redis *r, const char *src, const char *dst, const char *group,
    const char *id, bool del, const struct redis_fields *fields, char *new_id, char *err,
    size_t errlen)
{
	if (redis_stream_add(r, dst, fields, new_id, err, errlen) < 0)
		return -1;
	if (group != NULL && redis_stream_ack(r, src, group, &id, 1, NULL, NULL, err, errlen) < 0)
		return -1;
	if (del && redis_stream_delete(r, src, &id, 1, err, errlen) < 0)
		return -1;
	return 1;
}

int
redis_stream_add(struct redis *r, const char *key, const struct redis_fields *fields,
    char *new_id, char *err, size_t errlen)
{
	struct redis_args a = REDIS_ARGS_INIT;
	struct redis_reply *rep;
	int rc;

	redis_args_str(&a, "XADD");
	redis_args_key(&a, key);
	redis_args_str(&a, "*");
	for (size_t i = 0; i < fields->a.n; i++)
		redis_args_push(&a, fields->a.v[i], fields->a.len[i]);
	rep = redis_run(r, &a, false, err, errlen);
	if ((rc = redis_id_reply(rep, "XADD", new_id, err, errlen)) != 1)
		return rc < 0 ? rc : redis_bad_reply("XADD", err, errlen);
	return 0;
}

int
redis_stream_move(struct redis *r, const char *src, const char *dst, const char *group,
    const char *id, bool del, const char *lease_key, const char *token,
    const struct redis_fields *fields, char *new_id, char *err, size_t errlen)
{
	const char *keys[] = { src, dst, lease_key != NULL ? lease_key : src };
	struct redis_args a = REDIS_ARGS_INIT;
	struct redis_reply *rep;

	if (fields == NULL || redis_fields_count(fields) == 0) {
		snprintf(err, errlen, "move %s: no fields", id);
		return -1;
	}
	if (redis_fields_count(fields) > REDIS_LUA_MAX_PAIRS && token == NULL)
		return move_unscripted(r, src, dst, group, id, del, fields, new_id, err, errlen);
	redis_args_str(&a, group);
	redis_args_str(&a, id);
	redis_args_str(&a, del ? "1" : "0");
	redis_args_str(&a, token != NULL ? token : "");
	rep = redis_run_script(r, "move", keys, 3, &a, &fields->a, err, errlen);
	return redis_id_reply(rep, "move", new_id, err, errlen);
}

int
redis_reap_consumers(struct redis *r, const char *stream, const char *group,
    const char *self, int64_t idle_ms, char *err, size_t errlen)
{
	const char *keys[] = { stream };
	struct redis_args a = REDIS_ARGS_INIT;
	int64_t n = 0;
	int rc;

	redis_args_str(&a, group);
	redis_args_str(&a, self);
	redis_args_fmt(&a, "%" PRId64, idle_ms);
	rc = redis_int_reply(redis_run_script(r, "reap", keys, 1, &a, NULL, err, errlen), "reap", &n,
	    err, errlen);
	return rc < 0 ? -1 : (int)n;
}

int
redis_stream_len(struct redis *r, const char *key, int64_t *len, char *err, size_t errlen)
{
	struct redis_args a = REDIS_ARGS_INIT;
	int rc;

	redis_args_str(&a, "XLEN");
	redis_args_key(&a, key);
	rc = redis_int_reply(redis_run(r, &a, false, err, errlen), "XLEN", len, err, errlen);
	return rc;
}

int
redis_stream_range(struct redis *r, const char *key, const char *start, const char *end,
    int count, bool rev, struct redis_batch *out, char *err, size_t errlen)
{
	struct redis_args a = REDIS_ARGS_INIT;
	struct redis_reply *rep;
	size_t first = out->n;
	int rc = -1;

	redis_args_str(&a, rev ? "XREVRANGE" : "XRANGE");
	redis_args_key(&a, key);
	redis_args_str(&a, rev ? end : start);
	redis_args_str(&a, rev ? start : end);
	redis_args_str(&a, "COUNT");
	redis_args_fmt(&a, "%d", count);
	rep = redis_run(r, &a, true, err, errlen);
	if (rep == NULL)
		return -1;
	if (redis_batch_append(out, rep, 0, 0) == 0)
		rc = (int)(out->n - first);
	else
		redis_bad_reply("XRANGE", err, errlen);
	redis_reply_free(rep);
	return rc;
}

int
redis_stream_delete(struct redis *r, const char *key, const char *const *ids, size_t n,
    char *err, size_t errlen)
{
	struct redis_args a = REDIS_ARGS_INIT;
	int64_t v = 0;

	if (n == 0)
		return 0;
	redis_args_str(&a, "XDEL");
	redis_args_key(&a, key);
	for (size_t i = 0; i < n; i++)
		redis_args_str(&a, ids[i]);
	if (redis_int_reply(redis_run(r, &a, false, err, errlen), "XDEL", &v, err, errlen) < 0)
		return -1;
	return (int)v;
}

int
redis_stream_replay(struct redis *r, const char *dlq, const char *origin, const char *id,
    const struct redis_fields *fields, char *new_id, char *err, size_t errlen)
{
	const char *keys[] = { dlq, origin };
	struct redis_args a = REDIS_ARGS_INIT;
	struct redis_reply *rep;

	if (fields == NULL || redis_fields_count(fields) == 0) {
		snprintf(err, errlen, "replay %s: the entry has no original fields", id);
		return -1;
	}
	if (redis_fields_count(fields) > REDIS_LUA_MAX_PAIRS)
		return move_unscripted(r, dlq, origin, NULL, id, true, fields, new_id, err, errlen);
	redis_args_str(&a, id);
	rep = redis_run_script(r, "replay", keys, 2, &a, &fields->a, err, errlen);
	return redis_id_reply(rep, "replay", new_id, err, errlen);
}

int
redis_time_ms(struct redis *r, int64_t *ms, char *err, size_t errlen)
{
	struct redis_args a = REDIS_ARGS_INIT;
	struct redis_reply *rep;
	int rc = -1;

	redis_args_str(&a, "TIME");
	rep = redis_run(r, &a, true, err, errlen);
	if (rep == NULL)
		return -1;
	if (rep->type == RR_ARRAY && rep->elements == 2 && redis_reply_is_str(rep->element[0]) &&
	    redis_reply_is_str(rep->element[1])) {
		*ms = strtoll(rep->element[0]->str, NULL, 10) * 1000 +
		    strtoll(rep->element[1]->str, NULL, 10) / 1000;
		rc = 0;
	} else {
		redis_bad_reply("TIME", err, errlen);
	}
	redis_reply_free(rep);
	return rc;
}
