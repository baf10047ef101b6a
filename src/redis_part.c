/*
 * redis_part.c — see include/redis_part.h: the partitions of an
 * order-critical queue (scaleno-worker(8) "MODES"): leases with a fencing
 * token, membership, halt records and resume.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_part.h"
#include "redis_stream.h"
#include "util.h"

static int
lease_op(struct redis *r, const char *op, const char *lease_key, const char *epoch_key,
    const char *halt_key, const char *who, int64_t ttl_ms, char *token, size_t toklen,
    bool *halted, char *err, size_t errlen)
{
	const char *keys[] = { lease_key, epoch_key, halt_key };
	struct redis_args a = REDIS_ARGS_INIT;
	struct redis_reply *rep;
	int rc = -1;

	redis_args_str(&a, op);
	redis_args_str(&a, who);
	redis_args_fmt(&a, "%" PRId64, ttl_ms);
	rep = redis_pair_reply(redis_run_script(r, "lease", keys, 3, &a, NULL, err, errlen), 1,
	    "lease", lease_key, &rc, err, errlen);
	if (rep == NULL)
		return rc;
	if (halted != NULL)
		*halted = rep->element[1]->integer != 0;
	rc = 0;
	if (redis_reply_is_str(rep->element[0])) {
		rc = 1;
		if (token != NULL)
			util_strlcpy(token, rep->element[0]->str, toklen);
	}
	redis_reply_free(rep);
	return rc;
}

int
redis_part_acquire(struct redis *r, const char *lease_key, const char *epoch_key,
    const char *halt_key, const char *owner, int64_t ttl_ms, char *token, size_t toklen,
    bool *halted, char *err, size_t errlen)
{
	return lease_op(r, "acquire", lease_key, epoch_key, halt_key, owner, ttl_ms, token, toklen,
	    halted, err, errlen);
}

int
redis_part_renew(struct redis *r, const char *lease_key, const char *halt_key,
    const char *token, int64_t ttl_ms, bool *halted, char *err, size_t errlen)
{
	return lease_op(r, "renew", lease_key, lease_key, halt_key, token, ttl_ms, NULL, 0, halted,
	    err, errlen);
}

int
redis_part_release(struct redis *r, const char *lease_key, const char *token,
    char *err, size_t errlen)
{
	return lease_op(r, "release", lease_key, lease_key, lease_key, token, 1, NULL, 0, NULL,
	    err, errlen);
}

int
redis_halt_set(struct redis *r, const char *halt_key, const char *lease_key,
    const char *token, const struct redis_fields *fields, char *err, size_t errlen)
{
	const char *keys[] = { halt_key, lease_key };
	struct redis_args a = REDIS_ARGS_INIT;
	struct redis_reply *rep;

	redis_args_str(&a, token);
	rep = redis_run_script(r, "halt", keys, 2, &a, &fields->a, err, errlen);
	if (rep == NULL)
		return -1;
	if (rep->type == RR_ERROR)
		return redis_script_error(rep, "halt", err, errlen);
	redis_reply_free(rep);
	return 1;
}

int
redis_halt_get(struct redis *r, const char *halt_key, struct message *out, char *err,
    size_t errlen)
{
	struct redis_args a = REDIS_ARGS_INIT;
	struct redis_reply *rep;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	redis_args_str(&a, "HGETALL");
	redis_args_key(&a, halt_key);
	rep = redis_run(r, &a, true, err, errlen);
	if (rep == NULL)
		return -1;
	if (rep->type != RR_ARRAY) {
		redis_bad_reply("HGETALL", err, errlen);
	} else if (rep->elements == 0) {
		rc = 0;
	} else if (redis_msg_fill(out, rep) == 0) {
		size_t len;
		const char *id = redis_msg_field(out, "id", &len);

		if (id != NULL && len < REDIS_ID_MAX)
			memcpy(out->id, id, len + 1);
		rc = 1;
	} else {
		redis_msg_free(out);
		redis_bad_reply("HGETALL", err, errlen);
	}
	redis_reply_free(rep);
	return rc;
}

/* One operation of resume.lua; see there. extra: ARGV after the id (may be NULL). */
static int
resume_op(struct redis *r, const char *halt_key, const char *stream, const char *group,
    const char *dlq, const char *op, const char *id, const struct redis_args *extra,
    char *halted_id, char *dlq_id, char *err, size_t errlen)
{
	const char *keys[] = { halt_key, stream, dlq };
	struct redis_args a = REDIS_ARGS_INIT;
	struct redis_reply *rep;
	int rc = -1;

	redis_args_str(&a, group);
	redis_args_str(&a, op);
	redis_args_str(&a, id != NULL ? id : "");
	rep = redis_run_script(r, "resume", keys, 3, &a, extra, err, errlen);
	if (rep == NULL)
		return -1;
	if (rep->type == RR_ERROR)
		return redis_script_error(rep, "resume", err, errlen);
	if (rep->type == RR_NIL) {
		rc = 0;
	} else if (rep->type == RR_ARRAY && rep->elements == 2) {
		if (halted_id != NULL && redis_copy_id(halted_id, rep->element[0]) < 0)
			halted_id[0] = '\0';
		if (dlq_id != NULL && redis_copy_id(dlq_id, rep->element[1]) < 0)
			dlq_id[0] = '\0';
		rc = 1;
	} else {
		redis_bad_reply("resume", err, errlen);
	}
	redis_reply_free(rep);
	return rc;
}

int
redis_resume(struct redis *r, const char *halt_key, const char *stream,
    const char *group, const char *dlq, bool skip, const char *expected_id,
    const struct redis_fields *fields, char *halted_id, char *dlq_id, char *err, size_t errlen)
{
	struct redis_args one = REDIS_ARGS_INIT;
	char nid[REDIS_ID_MAX];
	int rc;

	if (!skip)
		return resume_op(r, halt_key, stream, group, dlq, "retry", NULL, NULL, halted_id,
		    dlq_id, err, errlen);
	if (redis_fields_count(fields) <= REDIS_LUA_MAX_PAIRS)
		return resume_op(r, halt_key, stream, group, dlq, "skip", expected_id, &fields->a,
		    halted_id, dlq_id, err, errlen);
	/* Too many fields for one Lua call: add it first; a failure after duplicates, never loses. */
	if (redis_stream_add(r, dlq, fields, nid, err, errlen) < 0)
		return -1;
	redis_args_str(&one, nid);
	rc = resume_op(r, halt_key, stream, group, dlq, "skipped", expected_id, &one, halted_id,
	    dlq_id, err, errlen);
	redis_args_free(&one);
	if (rc == 0 || (rc < 0 && strstr(err, "CHANGED") != NULL)) {
		/* Nothing skipped: take the dead-letter entry back. */
		const char *ids[] = { nid };
		char e2[256];

		(void)redis_stream_delete(r, dlq, ids, 1, e2, sizeof(e2));
	}
	return rc;
}

int
redis_halt_done(struct redis *r, const char *halt_key, const char *stream, const char *group,
    const char *id, char *err, size_t errlen)
{
	return resume_op(r, halt_key, stream, group, stream, "done", id, NULL, NULL, NULL, err,
	    errlen);
}

int
redis_halt_probed(struct redis *r, const char *halt_key, const char *stream, const char *group,
    const char *id, const struct redis_fields *fields, char *err, size_t errlen)
{
	return resume_op(r, halt_key, stream, group, stream, "probed", id, &fields->a, NULL, NULL,
	    err, errlen);
}

/* A script or command whose reply is one integer; returns it or -1. */

int
redis_part_members(struct redis *r, const char *members_key, const char *self,
    int64_t ttl_ms, char *err, size_t errlen)
{
	const char *keys[] = { members_key };
	struct redis_args a = REDIS_ARGS_INIT;
	int64_t n = 0;
	int rc;

	redis_args_str(&a, self);
	redis_args_fmt(&a, "%" PRId64, ttl_ms);
	rc = redis_int_reply(redis_run_script(r, "members", keys, 1, &a, NULL, err, errlen), "members",
	    &n, err, errlen);
	return rc < 0 ? -1 : (int)n;
}
