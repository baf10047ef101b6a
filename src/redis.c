/*
 * redis.c — see include/redis.h. The connection (address parsing, AUTH,
 * SELECT, timeouts, reconnect with backoff), our reply type, the one send
 * path, pipelining and the script registry with its NOSCRIPT retry.
 * Master discovery is redis_sentinel.c, slot routing redis_cluster.c; the
 * three share src/redis_int.h, the only header that includes hiredis.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "redis_int.h"
#include "redis_scripts.h"
#include "util.h"

/* ---- replies: hiredis' reader builds our type directly ---- */

static struct redis_reply *
reply_new(const redisReadTask *task, enum redis_type type)
{
	struct redis_reply *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->type = type;
	if (task->parent != NULL) {
		struct redis_reply *parent = task->parent->obj;

		parent->element[task->idx] = r;
	}
	return r;
}

static void *
create_string(const redisReadTask *task, char *str, size_t len)
{
	enum redis_type t = task->type == REDIS_REPLY_ERROR ? RR_ERROR :
	    task->type == REDIS_REPLY_STATUS ? RR_STATUS : RR_STRING;
	char *buf = malloc(len + 1);
	struct redis_reply *r;

	if (buf == NULL)
		return NULL;
	if ((r = reply_new(task, t)) == NULL) {
		free(buf);
		return NULL;
	}
	memcpy(buf, str, len);
	buf[len] = '\0';
	r->str = buf;
	r->len = len;
	return r;
}

static void *
create_array(const redisReadTask *task, int elements)
{
	struct redis_reply *r;
	struct redis_reply **el = NULL;

	if (elements > 0 && (el = calloc((size_t)elements, sizeof(*el))) == NULL)
		return NULL;
	if ((r = reply_new(task, RR_ARRAY)) == NULL) {
		free(el);
		return NULL;
	}
	r->element = el;
	r->elements = elements > 0 ? (size_t)elements : 0;
	return r;
}

static void *
create_integer(const redisReadTask *task, long long value)
{
	struct redis_reply *r = reply_new(task, RR_INTEGER);

	if (r != NULL)
		r->integer = value;
	return r;
}

static void *
create_nil(const redisReadTask *task)
{
	return reply_new(task, RR_NIL);
}

void
redis_reply_free(struct redis_reply *rep)
{
	if (rep == NULL)
		return;
	for (size_t i = 0; i < rep->elements; i++)
		redis_reply_free(rep->element[i]);
	free(rep->element);
	free(rep->str);
	free(rep);
}

static void
free_object(void *p)
{
	redis_reply_free(p);
}

static redisReplyObjectFunctions reply_fns = {
	create_string, create_array, create_integer, create_nil, free_object,
};

bool
redis_reply_is_str(const struct redis_reply *rep)
{
	return rep != NULL && (rep->type == RR_STRING || rep->type == RR_STATUS);
}

/* ---- the handle ---- */

struct redis *
redis_new(const struct redis_opts *o)
{
	struct redis *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->address = util_strdup(o->address != NULL && o->address[0] ? o->address :
	    "127.0.0.1:6379");
	r->username = util_strdup(o->username != NULL ? o->username : "");
	r->password = util_strdup(o->password != NULL ? o->password : "");
	r->sha = calloc(redis_nscripts ? redis_nscripts : 1, sizeof(*r->sha));
	if (r->address == NULL || r->username == NULL || r->password == NULL || r->sha == NULL ||
	    redis_sentinel_init(r, o) < 0 || redis_cluster_init(r, o) < 0) {
		redis_free(r);
		return NULL;
	}
	r->database = o->database;
	r->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 500;
	r->command_timeout_ms = o->command_timeout_ms > 0 ? o->command_timeout_ms : 2000;
	return r;
}

void
redis_free(struct redis *r)
{
	if (r == NULL)
		return;
	if (r->c != NULL)
		redisFree(r->c);
	if (r->password != NULL)
		memset(r->password, 0, strlen(r->password));
	redis_sentinel_free(r);
	redis_cluster_free(r);
	free(r->address);
	free(r->username);
	free(r->password);
	free(r->sha);
	free(r);
}

const char *
redis_errstr(const struct redis *r)
{
	return r->errstr;
}

int
redis_err(const struct redis *r)
{
	return r->err;
}

const char *
redis_address(const struct redis *r)
{
	return r->nsentinels > 0 || r->ncluster > 0 ? r->shown : r->address;
}

unsigned
redis_generation(const struct redis *r)
{
	return r->generation;
}

void
redis_mark_broken(struct redis *r)
{
	if (r->ncluster > 0)
		redis_cluster_reset(r);
	else
		r->broken = true;
}

bool
redis_connected(const struct redis *r)
{
	if (r->ncluster > 0)
		return !r->map_stale;
	return r->c != NULL && !r->broken && r->c->err == 0;
}

struct timeval
redis_ms_to_tv(int64_t ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	return tv;
}

/*
 * A command during the handshake, given what is left of the connect
 * deadline (so connect + AUTH + SELECT together stay within
 * connect_timeout). 0 or -1 with err naming what failed.
 */
static int
handshake_cmd(redisContext *c, int64_t deadline_ms, const char *what, char *err, size_t errlen,
    int argc, const char **argv)
{
	int64_t left = deadline_ms - util_now_ms();
	struct redis_reply *rep;

	if (left <= 0 || redisSetTimeout(c, redis_ms_to_tv(left)) != REDIS_OK) {
		snprintf(err, errlen, "%s: connect_timeout reached", what);
		return -1;
	}
	if ((rep = redis_ask(c, what, argc, argv, err, errlen)) == NULL)
		return -1;
	redis_reply_free(rep);
	return 0;
}

int
redis_parse_tcp(const char *address, char *host, size_t hostlen, int *port, char *err,
    size_t errlen)
{
	const char *a = address, *colon = strrchr(a, ':');
	size_t hlen;
	char *end;
	long p;

	if (colon == NULL) {
		snprintf(err, errlen, "redis address \"%s\": expected host:port or unix:/path", a);
		return -1;
	}
	hlen = (size_t)(colon - a);
	if (hlen >= 2 && a[0] == '[' && a[hlen - 1] == ']') {
		a++;
		hlen -= 2;
	}
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (hlen == 0 || hlen >= hostlen || *end != '\0' || end == colon + 1 || p < 1 ||
	    p > 65535) {
		snprintf(err, errlen, "redis address \"%s\": bad host or port", address);
		return -1;
	}
	memcpy(host, a, hlen);
	host[hlen] = '\0';
	*port = (int)p;
	return 0;
}

redisContext *
redis_connect_to(struct redis *r, const char *address, const char *username, const char *password,
    int database, char *err, size_t errlen)
{
	struct timeval ctv = redis_ms_to_tv(r->connect_timeout_ms);
	int64_t deadline = util_now_ms() + r->connect_timeout_ms;
	redisContext *c;
	char host[256];
	char db[16];
	int port;

	if (strncmp(address, "unix:", 5) == 0) {
		c = redisConnectUnixWithTimeout(address + 5, ctv);
	} else {
		if (redis_parse_tcp(address, host, sizeof(host), &port, err, errlen) < 0)
			return NULL;
		c = redisConnectWithTimeout(host, port, ctv);
	}
	if (c == NULL) {
		snprintf(err, errlen, "redis %s: out of memory", address);
		return NULL;
	}
	if (c->err) {
		snprintf(err, errlen, "redis %s: %s", address, c->errstr);
		goto fail;
	}
	c->reader->fn = &reply_fns;
	if (c->connection_type == REDIS_CONN_TCP)
		(void)redisEnableKeepAlive(c);
	if (username[0] != '\0') {
		const char *argv[] = { "AUTH", username, password };

		if (handshake_cmd(c, deadline, "redis AUTH", err, errlen, 3, argv) < 0)
			goto fail;
	} else if (password[0] != '\0') {
		const char *argv[] = { "AUTH", password };

		if (handshake_cmd(c, deadline, "redis AUTH", err, errlen, 2, argv) < 0)
			goto fail;
	}
	if (database != 0) {
		const char *argv[] = { "SELECT", db };

		snprintf(db, sizeof(db), "%d", database);
		if (handshake_cmd(c, deadline, "redis SELECT", err, errlen, 2, argv) < 0)
			goto fail;
	}
	if (redisSetTimeout(c, redis_ms_to_tv(r->command_timeout_ms)) != REDIS_OK) {
		snprintf(err, errlen, "redis %s: cannot set timeout", address);
		goto fail;
	}
	return c;
fail:
	redisFree(c);
	return NULL;
}

struct redis_reply *
redis_ask(redisContext *c, const char *what, int argc, const char **argv, char *err,
    size_t errlen)
{
	struct redis_reply *rep = redisCommandArgv(c, argc, argv, NULL);

	if (rep == NULL)
		snprintf(err, errlen, "%s: %s", what, c->errstr[0] ? c->errstr : "no reply");
	else if (rep->type == RR_ERROR)
		snprintf(err, errlen, "%s: %s", what, rep->str);
	else
		return rep;
	redis_reply_free(rep);
	return NULL;
}

struct redis_reply *
redis_ask_at(struct redis *r, const char *address, const char *username, const char *password,
    const char *what, int argc, const char **argv, char *err, size_t errlen)
{
	redisContext *c = redis_connect_to(r, address, username, password, 0, err, errlen);
	struct redis_reply *rep;

	if (c == NULL)
		return NULL;
	rep = redis_ask(c, what, argc, argv, err, errlen);
	redisFree(c);
	return rep;
}

int
redis_backoff_wait(struct redis *r, int64_t now, char *err, size_t errlen)
{
	r->held_off = now < r->next_try_ms;
	if (!r->held_off)
		return 0;
	snprintf(err, errlen, "%s (next attempt in %" PRId64 "ms)", r->errstr,
	    r->next_try_ms - now);
	return -1;
}

int64_t
redis_held_off_ms(const struct redis *r)
{
	int64_t left = r->next_try_ms - util_now_ms();

	return r->held_off && left > 0 ? left : 0;
}

void
redis_backoff_fail(struct redis *r, int64_t now)
{
	r->next_try_ms = now + util_backoff_ms(REDIS_BACKOFF_BASE_MS, REDIS_BACKOFF_CAP_MS,
	    r->attempt);
	if (r->attempt < 32)
		r->attempt++;
}

/* Connect to the configured server, or to the master the Sentinels name. */
static redisContext *
connect_once(struct redis *r, char *err, size_t errlen)
{
	if (r->nsentinels > 0)
		return redis_sentinel_connect(r, err, errlen);
	return redis_connect_to(r, r->address, r->username, r->password, r->database, err, errlen);
}

int
redis_ensure(struct redis *r, char *err, size_t errlen)
{
	int64_t now = util_now_ms();
	redisContext *c;

	if (r->ncluster > 0)
		return redis_cluster_ensure(r, err, errlen);
	if (r->c != NULL && !r->broken && r->c->err == 0)
		redis_sentinel_watch(r, now);
	if (r->c != NULL && !r->broken && r->c->err == 0)
		return 0;
	r->err = 1;
	if (r->c != NULL) {
		/* A connection that was up gets one immediate retry. */
		snprintf(r->errstr, sizeof(r->errstr), "redis %s: %s", redis_address(r),
		    r->c->err ? r->c->errstr : "connection reset after an error");
		redisFree(r->c);
		r->c = NULL;
		r->broken = false;
	}
	if (redis_backoff_wait(r, now, err, errlen) < 0)
		return -1;
	c = connect_once(r, r->errstr, sizeof(r->errstr));
	if (c == NULL) {
		redis_backoff_fail(r, util_now_ms());
		snprintf(err, errlen, "%s", r->errstr);
		return -1;
	}
	r->c = c;
	r->generation++;
	r->inflight = 0;
	r->err = 0;
	r->attempt = 0;
	r->next_try_ms = 0;
	return 0;
}

int
redis_swap_timeout(struct redis *r, int64_t ms, int64_t *old_ms)
{
	struct timeval tv = redis_ms_to_tv(ms), old;
	socklen_t sl = sizeof(old);

	if (r->ncluster > 0)
		return redis_cluster_swap_timeout(r, ms, old_ms);
	if (!redis_connected(r))
		return -1;
	if (old_ms != NULL) {
		if (getsockopt(r->c->fd, SOL_SOCKET, SO_RCVTIMEO, &old, &sl) < 0)
			return -1;
		*old_ms = (int64_t)old.tv_sec * 1000 + old.tv_usec / 1000;
	}
	return setsockopt(r->c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

/* ---- argument vectors ---- */

int
redis_args_push(struct redis_args *a, const char *s, size_t len)
{
	if (a->n == a->cap) {
		size_t ncap = a->cap ? a->cap * 2 : 16;
		const char **nv = realloc(a->v, ncap * sizeof(*nv));
		size_t *nl;

		if (nv == NULL)
			goto oom;
		a->v = nv;
		if ((nl = realloc(a->len, ncap * sizeof(*nl))) == NULL)
			goto oom;
		a->len = nl;
		a->cap = ncap;
	}
	a->v[a->n] = s;
	a->len[a->n] = len;
	a->n++;
	return 0;
oom:
	a->oom = true;
	return -1;
}

int
redis_args_str(struct redis_args *a, const char *s)
{
	return redis_args_push(a, s, strlen(s));
}

int
redis_args_key(struct redis_args *a, const char *s)
{
	if (a->key < 0)
		a->key = (int)a->n;
	return redis_args_str(a, s);
}

int
redis_args_vfmt(struct redis_args *a, const char *fmt, va_list ap)
{
	char *s;

	if (vasprintf(&s, fmt, ap) < 0) {
		a->oom = true;
		return -1;
	}
	if (util_strv_push(&a->owned, &a->nowned, &a->capowned, s) < 0) {
		free(s);
		a->oom = true;
		return -1;
	}
	return redis_args_str(a, s);
}

int
redis_args_fmt(struct redis_args *a, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = redis_args_vfmt(a, fmt, ap);
	va_end(ap);
	return rc;
}

void
redis_args_free(struct redis_args *a)
{
	for (size_t i = 0; i < a->nowned; i++)
		free(a->owned[i]);
	free(a->owned);
	free(a->v);
	free(a->len);
	memset(a, 0, sizeof(*a));
	a->key = -1;
}

/* ---- the send path ---- */

/*
 * The one place a command leaves: a->key names the first key it touches
 * (Sentinel and Cluster routing choose the connection here). 0 or -1 with err.
 */
static int
send_path(struct redis *r, const struct redis_args *a, char *err, size_t errlen)
{
	if (a->oom || a->n == 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (redis_ensure(r, err, errlen) < 0)
		return -1;
	if (r->ncluster > 0)
		return redis_cluster_send(r, a, err, errlen);
	if (redisAppendCommandArgv(r->c, (int)a->n, a->v, a->len) != REDIS_OK) {
		snprintf(err, errlen, "redis %s: out of memory", a->v[0]);
		r->broken = true;
		return -1;
	}
	r->inflight++;
	return 0;
}

int
redis_read_reply(struct redis *r, struct redis_reply **rep, char *err, size_t errlen)
{
	void *p = NULL;

	*rep = NULL;
	if (r->ncluster > 0)
		return redis_cluster_read(r, rep, err, errlen);
	if (r->c == NULL || redisGetReply(r->c, &p) != REDIS_OK || p == NULL) {
		snprintf(err, errlen, "redis %s: %s", redis_address(r),
		    r->c != NULL && r->c->errstr[0] ? r->c->errstr : "no reply");
		snprintf(r->errstr, sizeof(r->errstr), "%s", err);
		r->err = 1;
		r->broken = true;
		return -1;
	}
	*rep = p;
	if (r->inflight > 0)
		r->inflight--;
	redis_sentinel_reply(r, *rep);
	return 0;
}

int
redis_append(struct redis *r, const struct redis_args *a, char *err, size_t errlen)
{
	return send_path(r, a, err, errlen);
}

int
redis_flush(struct redis *r, char *err, size_t errlen)
{
	int done = 0;

	if (r->ncluster > 0 || r->c == NULL)
		return 0;	/* Cluster: sent when the replies are read */
	while (!done)
		if (redisBufferWrite(r->c, &done) != REDIS_OK) {
			snprintf(err, errlen, "redis %s: %s", redis_address(r), r->c->errstr);
			snprintf(r->errstr, sizeof(r->errstr), "%s", err);
			r->err = 1;
			r->broken = true;
			return -1;
		}
	return 0;
}

struct redis_reply *
redis_command(struct redis *r, const struct redis_args *a, char *err, size_t errlen)
{
	struct redis_reply *rep;

	if (send_path(r, a, err, errlen) < 0)
		return NULL;
	if (redis_read_reply(r, &rep, err, errlen) < 0) {
		if (r->c != NULL)
			snprintf(err, errlen, "redis %s: %s", a->v[0], r->c->errstr[0] ?
			    r->c->errstr : "no reply");
		return NULL;
	}
	return rep;
}

struct redis_reply *
redis_command_ok(struct redis *r, const struct redis_args *a, char *err, size_t errlen)
{
	struct redis_reply *rep = redis_command(r, a, err, errlen);

	if (rep != NULL && rep->type == RR_ERROR) {
		snprintf(err, errlen, "redis %s: %s", a->v[0], rep->str);
		redis_reply_free(rep);
		return NULL;
	}
	return rep;
}

/* ---- the script registry ---- */

static int
script_index(const char *name)
{
	for (size_t i = 0; i < redis_nscripts; i++)
		if (strcmp(redis_scripts[i].name, name) == 0)
			return (int)i;
	return -1;
}

const char *
redis_script_source(const char *name)
{
	int i = script_index(name);

	return i < 0 ? NULL : redis_scripts[i].src;
}

bool
redis_reply_is_noscript(const struct redis_reply *rep)
{
	return rep != NULL && rep->type == RR_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0;
}

void
redis_script_forget(struct redis *r, const char *name)
{
	int i = script_index(name);

	if (i >= 0)
		r->sha[i][0] = '\0';
}

int
redis_script_load(struct redis *r, const char *name, char *err, size_t errlen)
{
	struct redis_args a = REDIS_ARGS_INIT;
	struct redis_reply *rep;
	int i = script_index(name);

	if (i < 0) {
		snprintf(err, errlen, "redis: no script named %s", name);
		return -1;
	}
	if (r->sha[i][0] != '\0')
		return 0;
	if (r->ncluster > 0) {
		/* Each node would need its own SCRIPT LOAD: a cluster gets EVAL and the text. */
		util_strlcpy(r->sha[i], "eval", sizeof(r->sha[i]));
		return 0;
	}
	redis_args_str(&a, "SCRIPT");
	redis_args_str(&a, "LOAD");
	redis_args_str(&a, redis_scripts[i].src);
	rep = redis_command(r, &a, err, errlen);
	redis_args_free(&a);
	if (rep == NULL)
		return -1;
	if (rep->type != RR_STRING || rep->len != 40) {
		snprintf(err, errlen, "redis %s: SCRIPT LOAD %s: %s", redis_address(r), name,
		    rep->type == RR_ERROR ? rep->str : "unexpected reply");
		redis_reply_free(rep);
		return -1;
	}
	memcpy(r->sha[i], rep->str, 40);
	r->sha[i][40] = '\0';
	redis_reply_free(rep);
	return 1;
}

/* EVALSHA sha nkeys keys... args... extra... into out. */
static void
eval_args(struct redis *r, int i, const char *const *keys, const size_t *keylens, int nkeys,
    const struct redis_args *args, const struct redis_args *extra, struct redis_args *out)
{
	if (r->ncluster > 0) {
		redis_args_str(out, "EVAL");
		redis_args_str(out, redis_scripts[i].src);
	} else {
		redis_args_str(out, "EVALSHA");
		redis_args_str(out, r->sha[i]);
	}
	redis_args_fmt(out, "%d", nkeys);
	if (nkeys > 0)
		out->key = (int)out->n;
	for (int k = 0; k < nkeys; k++)
		redis_args_push(out, keys[k], keylens != NULL ? keylens[k] : strlen(keys[k]));
	for (size_t k = 0; args != NULL && k < args->n; k++)
		redis_args_push(out, args->v[k], args->len[k]);
	for (size_t k = 0; extra != NULL && k < extra->n; k++)
		redis_args_push(out, extra->v[k], extra->len[k]);
	if ((args != NULL && args->oom) || (extra != NULL && extra->oom))
		out->oom = true;
}

int
redis_append_eval(struct redis *r, const char *name, const char *const *keys, int nkeys,
    const struct redis_args *args, char *err, size_t errlen)
{
	struct redis_args a = REDIS_ARGS_INIT;
	int i = script_index(name), rc;

	if (i < 0 || r->sha[i][0] == '\0') {
		snprintf(err, errlen, "redis: script %s is not loaded", name);
		return -1;
	}
	eval_args(r, i, keys, NULL, nkeys, args, NULL, &a);
	rc = send_path(r, &a, err, errlen);
	redis_args_free(&a);
	return rc;
}

struct redis_reply *
redis_eval(struct redis *r, const char *name, const char *const *keys, int nkeys,
    const struct redis_args *args, const struct redis_args *extra, char *err, size_t errlen)
{
	return redis_eval_bin(r, name, keys, NULL, nkeys, args, extra, err, errlen);
}

struct redis_reply *
redis_eval_bin(struct redis *r, const char *name, const char *const *keys,
    const size_t *keylens, int nkeys, const struct redis_args *args,
    const struct redis_args *extra, char *err, size_t errlen)
{
	int i = script_index(name);

	for (int attempt = 0; attempt < 2; attempt++) {
		struct redis_args a = REDIS_ARGS_INIT;
		struct redis_reply *rep;

		if (redis_script_load(r, name, err, errlen) < 0)
			return NULL;
		eval_args(r, i, keys, keylens, nkeys, args, extra, &a);
		rep = redis_command(r, &a, err, errlen);
		redis_args_free(&a);
		if (rep == NULL)
			return NULL;
		if (!redis_reply_is_noscript(rep) || attempt == 1)
			return rep;
		redis_reply_free(rep);
		r->sha[i][0] = '\0';
	}
	return NULL;
}

const char *
redis_version_string(void)
{
	static char buf[48];

	snprintf(buf, sizeof(buf), "hiredis %d.%d.%d", HIREDIS_MAJOR, HIREDIS_MINOR,
	    HIREDIS_PATCH);
	return buf;
}

struct redis_reply *
redis_run(struct redis *r, struct redis_args *a, bool errors_fail, char *err, size_t errlen)
{
	struct redis_reply *rep = errors_fail ? redis_command_ok(r, a, err, errlen) :
	    redis_command(r, a, err, errlen);

	redis_args_free(a);
	return rep;
}

struct redis_reply *
redis_run_script(struct redis *r, const char *name, const char *const *keys, int nkeys,
    struct redis_args *args, const struct redis_args *extra, char *err, size_t errlen)
{
	struct redis_reply *rep = redis_eval(r, name, keys, nkeys, args, extra, err, errlen);

	redis_args_free(args);
	return rep;
}

int
redis_bad_reply(const char *what, char *err, size_t errlen)
{
	snprintf(err, errlen, "redis %s: unexpected reply", what);
	return -1;
}

int
redis_script_error(struct redis_reply *rep, const char *what, char *err, size_t errlen)
{
	int rc = strncmp(rep->str, "FENCED", 6) == 0 ? REDIS_FENCED : REDIS_FAILED;

	snprintf(err, errlen, "%s: %s", what, rep->str);
	redis_reply_free(rep);
	return rc;
}

int
redis_int_reply(struct redis_reply *rep, const char *what, int64_t *out, char *err, size_t errlen)
{
	int rc = -1;

	if (rep == NULL)
		return -1;
	if (rep->type == RR_INTEGER) {
		*out = rep->integer;
		rc = 0;
	} else if (rep->type == RR_ERROR) {
		snprintf(err, errlen, "%s: %s", what, rep->str);
	} else {
		redis_bad_reply(what, err, errlen);
	}
	redis_reply_free(rep);
	return rc;
}

struct redis_reply *
redis_pair_reply(struct redis_reply *rep, int int_at, const char *what, const char *errwhat,
    int *rc, char *err, size_t errlen)
{
	*rc = -1;
	if (rep == NULL)
		return NULL;
	if (rep->type == RR_ERROR) {
		*rc = redis_script_error(rep, errwhat, err, errlen);
		return NULL;
	}
	if (rep->type != RR_ARRAY || rep->elements != 2 || rep->element[int_at]->type != RR_INTEGER) {
		redis_reply_free(rep);
		redis_bad_reply(what, err, errlen);
		return NULL;
	}
	*rc = 0;
	return rep;
}
