/*
 * redis_msg.c — see include/redis_msg.h: messages as read from a stream,
 * field lists to write, and the failure fields (the format of retry-stage
 * and dead-letter entries, scaleno-worker(8)).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_msg.h"
#include "util.h"

/* ---- field lists ---- */

int
redis_fields_add(struct redis_fields *f, const char *name, size_t nlen, const char *val,
    size_t vlen)
{
	size_t n = f->a.n;

	if (redis_args_push(&f->a, name, nlen) == 0 && redis_args_push(&f->a, val, vlen) == 0)
		return 0;
	f->a.n = n;	/* no half pair */
	return -1;
}

int
redis_fields_addf(struct redis_fields *f, const char *name, const char *fmt, ...)
{
	size_t n = f->a.n;
	va_list ap;
	int rc;

	rc = redis_args_str(&f->a, name);
	if (rc == 0) {
		va_start(ap, fmt);
		rc = redis_args_vfmt(&f->a, fmt, ap);
		va_end(ap);
	}
	if (rc < 0)
		f->a.n = n;
	return rc;
}

void
redis_fields_free(struct redis_fields *f)
{
	redis_args_free(&f->a);
}

size_t
redis_fields_count(const struct redis_fields *f)
{
	return f->a.n / 2;
}

/* ---- entries ---- */

void
redis_msg_free(struct message *e)
{
	free(e->names);		/* the one block of redis_msg_fill */
	memset(e, 0, sizeof(*e));
}

void
redis_batch_clear(struct redis_batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		redis_msg_free(&b->e[i]);
	b->n = 0;
}

void
redis_batch_free(struct redis_batch *b)
{
	redis_batch_clear(b);
	free(b->e);
	memset(b, 0, sizeof(*b));
}

const char *
redis_msg_field(const struct message *e, const char *name, size_t *len)
{
	size_t nl = strlen(name);

	for (size_t i = 0; i < e->nfields; i++)
		if (e->name_lens[i] == nl && memcmp(e->names[i], name, nl) == 0) {
			if (len != NULL)
				*len = e->value_lens[i];
			return e->values[i];
		}
	return NULL;
}

int
redis_copy_id(char *dst, const struct redis_reply *r)
{
	if (!redis_reply_is_str(r) || r->len == 0 || r->len >= REDIS_ID_MAX)
		return -1;
	memcpy(dst, r->str, r->len);
	dst[r->len] = '\0';
	return 0;
}

int
redis_msg_fill(struct message *e, const struct redis_reply *fl)
{
	size_t n, bytes = 0;
	char *block, *p;

	if (fl == NULL || fl->type == RR_NIL) {
		e->deleted = true;
		return 0;
	}
	if (fl->type != RR_ARRAY || fl->elements % 2 != 0)
		return -1;
	n = fl->elements / 2;
	for (size_t i = 0; i < fl->elements; i++) {
		if (!redis_reply_is_str(fl->element[i]))
			return -1;
		bytes += fl->element[i]->len + 1;
	}
	/*
	 * One block per message: the four arrays, then each name and value
	 * NUL-terminated (binary-safe with its length). names points at it.
	 */
	if (n == 0)
		n = 1;
	block = malloc(n * (2 * sizeof(char *) + 2 * sizeof(size_t)) + bytes);
	if (block == NULL)
		return -1;
	e->names = (char **)(void *)block;
	e->values = e->names + n;
	e->name_lens = (size_t *)(void *)(e->values + n);
	e->value_lens = e->name_lens + n;
	p = (char *)(e->value_lens + n);
	e->nfields = fl->elements / 2;
	for (size_t i = 0; i < e->nfields; i++) {
		const struct redis_reply *k = fl->element[2 * i], *v = fl->element[2 * i + 1];

		e->names[i] = p;
		memcpy(p, k->str, k->len);
		p[k->len] = '\0';
		p += k->len + 1;
		e->values[i] = p;
		memcpy(p, v->str, v->len);
		p[v->len] = '\0';
		p += v->len + 1;
		e->name_lens[i] = k->len;
		e->value_lens[i] = v->len;
	}
	return 0;
}

static struct message *
batch_add(struct redis_batch *b)
{
	if (b->n == b->cap) {
		size_t ncap = b->cap ? b->cap * 2 : 16;
		struct message *ne = realloc(b->e, ncap * sizeof(*ne));

		if (ne == NULL)
			return NULL;
		b->e = ne;
		b->cap = ncap;
	}
	memset(&b->e[b->n], 0, sizeof(b->e[0]));
	return &b->e[b->n++];
}

int
redis_batch_append(struct redis_batch *out, const struct redis_reply *list, int src,
    int64_t delivery)
{
	if (list->type != RR_ARRAY)
		return -1;
	for (size_t i = 0; i < list->elements; i++) {
		const struct redis_reply *it = list->element[i];
		struct message *e;

		if (it->type != RR_ARRAY || it->elements != 2)
			return -1;
		if ((e = batch_add(out)) == NULL)
			return -1;
		e->src = src;
		e->delivery = delivery;
		if (redis_copy_id(e->id, it->element[0]) < 0 || redis_msg_fill(e, it->element[1]) < 0) {
			redis_msg_free(e);
			out->n--;
			return -1;
		}
	}
	return 0;
}

int64_t
redis_id_ms(const char *id)
{
	char *end;
	unsigned long long ms;

	if (id == NULL || *id < '0' || *id > '9')
		return -1;
	errno = 0;
	ms = strtoull(id, &end, 10);
	if (errno != 0 || (*end != '-' && *end != '\0') || ms > INT64_MAX)
		return -1;
	return (int64_t)ms;
}

#define HISTORY_MAX 4096

static const char *const failure_names[] = {
	"x-origin-stream", "x-origin-id", "x-attempts", "x-first-failed-ms",
	"x-last-failed-ms", "x-error", "x-error-history", "x-stage",
};

bool
redis_is_failure_field(const char *name, size_t len)
{
	for (size_t i = 0; i < ARRAY_LEN(failure_names); i++)
		if (strlen(failure_names[i]) == len && memcmp(failure_names[i], name, len) == 0)
			return true;
	return false;
}

int64_t
redis_msg_attempts_before(const struct message *e, bool stage_entry)
{
	size_t len = 0;
	const char *v = stage_entry ? redis_msg_field(e, "x-attempts", &len) : NULL;
	int64_t before = 0;

	if (v != NULL && len > 0 && len < 19 && strspn(v, "0123456789") == len)
		before = strtoll(v, NULL, 10);
	return before + (e->delivery > 1 ? e->delivery - 1 : 0);
}

/* A field of e as a NUL-terminated copy in out's owned strings, or def. */
static int
keep_field(const struct message *e, const char *name, const char *def, struct redis_fields *out)
{
	size_t len;
	const char *v = redis_msg_field(e, name, &len);

	if (v == NULL)
		return redis_fields_addf(out, name, "%s", def);
	return redis_fields_add(out, name, strlen(name), v, len);
}

int
redis_failure_fields(const struct message *e, const char *origin, int attempts,
    const char *error, int64_t now_ms, int from_stage, int to_stage, struct redis_fields *out)
{
	const char *hist;
	char where[24];
	size_t hlen = 0;
	char now[24];
	int ok = 1;

	for (size_t i = 0; ok && i < e->nfields; i++)
		if (!redis_is_failure_field(e->names[i], e->name_lens[i]))
			ok = redis_fields_add(out, e->names[i], e->name_lens[i], e->values[i],
			    e->value_lens[i]) == 0;
	snprintf(now, sizeof(now), "%" PRId64, now_ms);
	ok = ok && keep_field(e, "x-origin-stream", origin, out) == 0 &&
	    keep_field(e, "x-origin-id", e->id, out) == 0 &&
	    redis_fields_addf(out, "x-attempts", "%d", attempts) == 0 &&
	    keep_field(e, "x-first-failed-ms", now, out) == 0 &&
	    redis_fields_addf(out, "x-last-failed-ms", "%s", now) == 0 &&
	    redis_fields_addf(out, "x-error", "%s", error) == 0;
	hist = redis_msg_field(e, "x-error-history", &hlen);
	/* Keep the newest lines: drop whole old lines beyond HISTORY_MAX. */
	while (hist != NULL && hlen > HISTORY_MAX) {
		const char *nl = memchr(hist, '\n', hlen);

		if (nl == NULL) {
			hist = NULL;
			break;
		}
		hlen -= (size_t)(nl + 1 - hist);
		hist = nl + 1;
	}
	if (from_stage > 0)
		snprintf(where, sizeof(where), "retry:%d", from_stage);
	else
		snprintf(where, sizeof(where), "main");
	ok = ok && redis_fields_addf(out, "x-error-history", "%.*s%s%s %s x%d: %.512s",
	    hist != NULL ? (int)hlen : 0, hist != NULL ? hist : "", hist != NULL && hlen ? "\n" : "",
	    now, where, attempts, error) == 0;
	if (ok && to_stage > 0)
		ok = redis_fields_addf(out, "x-stage", "%d", to_stage) == 0;
	return ok ? 0 : -1;
}

/*
 * A script reply that is a new stream id (1, id copied to new_id when not
 * NULL) or nil (0); error replies give REDIS_FENCED or -1. Frees rep.
 */
int
redis_id_reply(struct redis_reply *rep, const char *what, char *new_id, char *err, size_t errlen)
{
	int rc = -1;

	if (rep == NULL)
		return -1;
	if (rep->type == RR_ERROR)
		return redis_script_error(rep, what, err, errlen);
	if (rep->type == RR_NIL) {
		rc = 0;
	} else if (redis_reply_is_str(rep)) {
		if (new_id != NULL && redis_copy_id(new_id, rep) < 0)
			new_id[0] = '\0';
		rc = 1;
	} else {
		redis_bad_reply(what, err, errlen);
	}
	redis_reply_free(rep);
	return rc;
}
