/*
 * publish_stdin.c — see include/publish_stdin.h. A line is
 *   {"key": "user-42", "fields": {"action": "resize", "size": "200"}}
 * ("key" may be left out or null for a keyless message; every field value
 * is a string). Lines go to Redis in pipelined batches of publish_many
 * calls, which route each message as the publish script routes one, so the
 * sticky key map and the streams change together exactly as for one
 * `scaleno publish`; a batch's answers are printed in input order.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "config.h"
#include "exitcode.h"
#include "publish_stdin.h"
#include "redis.h"
#include "redis_keys.h"
#include "scaleno/publish.h"
#include "util.h"

#define PUBLISH_BATCH 1024		/* messages per pipelined round trip ... */
#define PUBLISH_PER_CALL 64		/* ... in script calls of this many */
#define PUBLISH_LINE_MAX (64u << 20)	/* a longer line is refused */

/* One parsed line waiting for its answer. */
struct pmsg {
	cJSON *doc;
	const char *key;		/* into doc; NULL = keyless */
	const cJSON *fields;
	unsigned long line;
	bool failed;			/* Redis refused it (reported) */
	int part;
	char id[SCALENO_PUBLISH_ID_MAX];
};

struct pub {
	const struct queue_policy *q;
	int64_t ttl_ms;
	struct redis *r;
	char *rrkey;
	FILE *out;
	struct pmsg batch[PUBLISH_BATCH];
	size_t n;
	uint64_t published, refused;
};

/* Parse one line into m. 0, or -1 with err (the line is refused, the rest goes on). */
static int
parse_line(const char *line, unsigned long lineno, struct pmsg *m, char *err, size_t errlen)
{
	const cJSON *key, *fields, *f;
	int n = 0;

	memset(m, 0, sizeof(*m));
	m->line = lineno;
	if ((m->doc = cJSON_Parse(line)) == NULL || !cJSON_IsObject(m->doc)) {
		snprintf(err, errlen, "not a JSON object");
		goto bad;
	}
	key = cJSON_GetObjectItemCaseSensitive(m->doc, "key");
	if (key != NULL && !cJSON_IsNull(key) && !cJSON_IsString(key)) {
		snprintf(err, errlen, "\"key\" must be a string or null");
		goto bad;
	}
	m->key = cJSON_IsString(key) && key->valuestring[0] != '\0' ? key->valuestring : NULL;
	fields = cJSON_GetObjectItemCaseSensitive(m->doc, "fields");
	if (!cJSON_IsObject(fields)) {
		snprintf(err, errlen, "no \"fields\" object");
		goto bad;
	}
	cJSON_ArrayForEach(f, fields) {
		if (!cJSON_IsString(f)) {
			snprintf(err, errlen, "field \"%.64s\": the value must be a string", f->string);
			goto bad;
		}
		n++;
	}
	if (n == 0 || n > SCALENO_PUBLISH_MAX_PAIRS) {
		snprintf(err, errlen, n == 0 ? "\"fields\" is empty" : "more than %d fields",
		    SCALENO_PUBLISH_MAX_PAIRS);
		goto bad;
	}
	m->fields = fields;
	return 0;
bad:
	cJSON_Delete(m->doc);
	m->doc = NULL;
	return -1;
}

/*
 * The publish_many script's keys and arguments for the count messages from
 * first (contrib/lua/publish_many.lua). keys has room for count + 2; the map
 * keys are malloc'd into keys[2..] (the caller frees them). 0 or -1 (OOM).
 */
static int
call_args(const struct pub *pb, size_t first, size_t count, char **keys, struct redis_args *a)
{
	size_t maplen;
	int rc = 0;

	keys[0] = (char *)pb->q->stream;
	keys[1] = pb->rrkey;
	redis_args_str(a, pb->q->group);
	redis_args_fmt(a, "%d", pb->q->partitions);
	redis_args_fmt(a, "%" PRId64, pb->ttl_ms > 0 ? pb->ttl_ms : (int64_t)SCALENO_PUBLISH_TTL_MS);
	redis_args_fmt(a, "%zu", count);
	for (size_t i = 0; i < count; i++) {
		const struct pmsg *m = &pb->batch[first + i];
		const cJSON *f;

		keys[2 + i] = redis_key_map(pb->q->stream, m->key, m->key ? strlen(m->key) : 0,
		    &maplen);
		if (keys[2 + i] == NULL)
			rc = -1;
		redis_args_str(a, m->key != NULL ? m->key : "");
		redis_args_fmt(a, "%d", 2 * cJSON_GetArraySize(m->fields));
		cJSON_ArrayForEach(f, m->fields) {
			redis_args_str(a, f->string);
			redis_args_str(a, f->valuestring);
		}
	}
	return a->oom ? -1 : rc;
}

static void
call_args_free(char **keys, size_t count, struct redis_args *a)
{
	for (size_t i = 0; i < count; i++)
		free(keys[2 + i]);
	redis_args_free(a);
}

/* The script's answer to the count messages from first: stored, or reported as refused. */
static void
call_answer(struct pub *pb, size_t first, size_t count, const struct redis_reply *rep)
{
	for (size_t i = 0; i < count; i++) {
		struct pmsg *m = &pb->batch[first + i];
		const struct redis_reply *p, *id;

		if (rep->type != RR_ARRAY || rep->elements != 2 * count) {
			m->failed = true;
			pb->refused++;
			fprintf(stderr, "scaleno publish: stdin line %lu: redis: %s (lines %lu to %lu "
			    "may or may not have been added)\n", m->line, rep->type == RR_ERROR ?
			    rep->str : "unexpected reply", pb->batch[first].line,
			    pb->batch[first + count - 1].line);
			continue;
		}
		p = rep->element[2 * i];
		id = rep->element[2 * i + 1];
		if (p->type == RR_INTEGER && id->type == RR_STRING &&
		    id->len < SCALENO_PUBLISH_ID_MAX) {
			m->part = (int)p->integer;
			util_strlcpy(m->id, id->str, sizeof(m->id));
			continue;
		}
		m->failed = true;
		pb->refused++;
		fprintf(stderr, "scaleno publish: stdin line %lu: redis: %s\n", m->line,
		    id->type == RR_ERROR ? id->str : "unexpected reply");
	}
}

/*
 * Send a batch as one pipeline of publish_many calls, read every answer,
 * print them in order. 0 or -1 with err.
 */
static int
flush_batch(struct pub *pb, char *err, size_t errlen)
{
	char *keys[PUBLISH_PER_CALL + 2];
	size_t i, sent = 0, ncalls = (pb->n + PUBLISH_PER_CALL - 1) / PUBLISH_PER_CALL;
	bool retry[PUBLISH_BATCH / PUBLISH_PER_CALL + 1] = { false }, any_retry = false;
	int rc = -1;

	if (pb->n == 0)
		return 0;
	if (redis_ensure(pb->r, err, errlen) < 0 || redis_script_load(pb->r, "publish_many", err,
	    errlen) < 0)
		goto out;
	for (i = 0; i < ncalls; i++, sent++) {
		struct redis_args a = REDIS_ARGS_INIT;
		size_t first = i * PUBLISH_PER_CALL;
		size_t count = pb->n - first < PUBLISH_PER_CALL ? pb->n - first : PUBLISH_PER_CALL;
		int arc = -1;

		if (call_args(pb, first, count, keys, &a) < 0)
			snprintf(err, errlen, "out of memory");
		else
			arc = redis_append_eval(pb->r, "publish_many", (const char *const *)keys,
			    (int)count + 2, &a, err, errlen);
		call_args_free(keys, count, &a);
		if (arc < 0)
			break;
	}
	for (i = 0; i < sent; i++) {
		struct redis_reply *rep;
		size_t first = i * PUBLISH_PER_CALL;

		if (redis_read_reply(pb->r, &rep, err, errlen) < 0)
			goto out;
		if (redis_reply_is_noscript(rep))
			any_retry = retry[i] = true;
		else
			call_answer(pb, first, pb->n - first < PUBLISH_PER_CALL ? pb->n - first :
			    PUBLISH_PER_CALL, rep);
		redis_reply_free(rep);
	}
	if (sent < ncalls)
		goto out;
	/* The script went missing (a restarted or flushed Redis): those calls again. */
	if (any_retry)
		redis_script_forget(pb->r, "publish_many");
	for (i = 0; any_retry && i < ncalls; i++) {
		struct redis_args a = REDIS_ARGS_INIT;
		struct redis_reply *rep = NULL;
		size_t first = i * PUBLISH_PER_CALL;
		size_t count = pb->n - first < PUBLISH_PER_CALL ? pb->n - first : PUBLISH_PER_CALL;

		if (!retry[i])
			continue;
		if (call_args(pb, first, count, keys, &a) < 0)
			snprintf(err, errlen, "out of memory");
		else
			rep = redis_eval(pb->r, "publish_many", (const char *const *)keys,
			    (int)count + 2, &a, NULL, err, errlen);
		call_args_free(keys, count, &a);
		if (rep == NULL)
			goto out;
		call_answer(pb, first, count, rep);
		redis_reply_free(rep);
	}
	for (i = 0; i < pb->n; i++)
		if (!pb->batch[i].failed) {
			fprintf(pb->out, "%d %s\n", pb->batch[i].part, pb->batch[i].id);
			pb->published++;
		}
	/* A reader of a pipe sees each batch's ids as it is done. */
	fflush(pb->out);
	rc = 0;
out:
	for (i = 0; i < pb->n; i++)
		cJSON_Delete(pb->batch[i].doc);
	if (rc < 0)
		snprintf(err + strlen(err), errlen - strlen(err), " (lines %lu to %lu may or may "
		    "not have been added)", pb->batch[0].line, pb->batch[pb->n - 1].line);
	pb->n = 0;
	return rc;
}

/* Every line of in; 0 at the end of input, -1 with err when Redis failed. */
static int
publish_lines(struct pub *pb, FILE *in, char *err, size_t errlen)
{
	char *line = NULL, perr[256];
	size_t cap = 0;
	ssize_t len;
	unsigned long lineno = 0;
	int rc = 0;

	/* Bounded by the input: one pass, each line read once. */
	while ((len = getline(&line, &cap, in)) != -1) {
		lineno++;
		if ((size_t)len > PUBLISH_LINE_MAX) {
			fprintf(stderr, "scaleno publish: stdin line %lu: longer than %u bytes\n",
			    lineno, PUBLISH_LINE_MAX);
			pb->refused++;
			continue;
		}
		if (line[strspn(line, " \t\r\n")] == '\0')
			continue;
		if (parse_line(line, lineno, &pb->batch[pb->n], perr, sizeof(perr)) < 0) {
			fprintf(stderr, "scaleno publish: stdin line %lu: %s\n", lineno, perr);
			pb->refused++;
			continue;
		}
		if (++pb->n == PUBLISH_BATCH && (rc = flush_batch(pb, err, errlen)) < 0)
			break;
	}
	if (rc == 0 && ferror(in)) {
		snprintf(err, errlen, "reading standard input: %s", strerror(errno));
		rc = -1;
	}
	if (rc == 0)
		rc = flush_batch(pb, err, errlen);
	for (size_t i = 0; i < pb->n; i++)
		cJSON_Delete(pb->batch[i].doc);
	free(line);
	return rc;
}

int
publish_stdin_cmd(const char *path, const char *qname, int64_t ttl_ms, FILE *in, FILE *out)
{
	struct config *cfg = NULL;
	struct pub *pb = NULL;
	char err[512] = "";
	int rc = EXIT_USAGE;

	signal(SIGPIPE, SIG_IGN);
	if (cli_load_config("publish", path, &cfg) != EXIT_OK)
		return EXIT_USAGE;
	if ((pb = calloc(1, sizeof(*pb))) == NULL) {
		fprintf(stderr, "scaleno publish: out of memory\n");
		rc = EXIT_RUNTIME;
		goto out;
	}
	if ((pb->q = cli_find_queue("publish", cfg, qname)) == NULL)
		goto out;
	rc = EXIT_RUNTIME;
	pb->ttl_ms = ttl_ms;
	pb->out = out;
	pb->r = redis_new_conf(&pb->q->redis);	/* the queue's own server */
	pb->rrkey = redis_key(pb->q->stream, 1, RK_RR, 0);
	if (pb->r == NULL || pb->rrkey == NULL) {
		fprintf(stderr, "scaleno publish: out of memory\n");
		goto out;
	}
	if (publish_lines(pb, in, err, sizeof(err)) < 0)
		fprintf(stderr, "scaleno publish: queue %s: %s\n", pb->q->name, err);
	else if (fflush(out) != 0)
		fprintf(stderr, "scaleno publish: writing the entry ids: %s\n", strerror(errno));
	else if (pb->refused == 0)
		rc = EXIT_OK;
	if (pb->refused > 0 || rc != EXIT_OK)
		fprintf(stderr, "scaleno publish: %" PRIu64 " message(s) published, %" PRIu64
		    " line(s) refused\n", pb->published, pb->refused);
out:
	if (pb != NULL) {
		redis_free(pb->r);
		free(pb->rrkey);
	}
	free(pb);
	config_free(cfg);
	return rc;
}
