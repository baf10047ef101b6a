/*
 * redis.c — see include/redis.h. The only file of src/ that includes
 * hiredis: the connection (address parsing, AUTH, SELECT, timeouts,
 * reconnect with backoff), our reply type, the one send path, pipelining
 * and the script registry with its NOSCRIPT retry.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "redis.h"
#include "redis_scripts.h"
#include "util.h"

#define BACKOFF_BASE_MS 100
#define BACKOFF_CAP_MS 5000
#define SENTINEL_WATCH_MS 1000
#define REDIRECTS_MAX 8		/* MOVED, ASK and TRYAGAIN followed for one command */
#define TRYAGAIN_MS 25

struct redis {
	char *address;
	char **sentinels;	/* Sentinel mode when nsentinels > 0 */
	size_t nsentinels;
	char *master_name;
	char *sentinel_password;
	char shown[320];	/* redis_address with Sentinel */
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
	int err;		/* 0, or 1 after an I/O or connection error */
	char errstr[512];

	char (*sha)[41];	/* per script of redis_scripts: "" until loaded */

	/* Redis Cluster (ncluster > 0): r->c stays NULL, each node has its own. */
	char **cluster;		/* the seed nodes */
	size_t ncluster;
	struct node *nodes;	/* every node the slot map named */
	size_t nnodes;
	int16_t *slots;		/* slot -> node index, -1 unknown */
	bool map_stale;		/* reload the slot map before the next command */
	int last_node;		/* where keyless commands go: where the last one went */
	struct sent *fifo;	/* commands whose replies are not read yet, in order */
	size_t fhead, fn, fcap;
	int64_t rcv_ms;		/* a swapped receive timeout, 0 = command_timeout */
	unsigned moved, asked, maps;
};

/* A node of the cluster. */
struct node {
	char addr[280];
	redisContext *c;
};

/* A command sent to a node: where, and its bytes for a redirect. */
struct sent {
	int node;
	char *cmd;
	size_t len;
};

static void cluster_drop(struct redis *r);
static int cluster_ensure(struct redis *r, char *err, size_t errlen);
static int cluster_send(struct redis *r, const struct redis_args *a, char *err, size_t errlen);
static int cluster_read(struct redis *r, struct redis_reply **rep, char *err, size_t errlen);

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
	if (o->nsentinels > 0) {
		r->sentinels = calloc(o->nsentinels, sizeof(*r->sentinels));
		r->master_name = util_strdup(o->master_name != NULL ? o->master_name : "");
		r->sentinel_password = util_strdup(o->sentinel_password != NULL ?
		    o->sentinel_password : "");
		if (r->sentinels == NULL || r->master_name == NULL || r->sentinel_password == NULL) {
			redis_free(r);
			return NULL;
		}
		for (; r->nsentinels < o->nsentinels; r->nsentinels++)
			if ((r->sentinels[r->nsentinels] =
			    util_strdup(o->sentinels[r->nsentinels])) == NULL) {
				redis_free(r);
				return NULL;
			}
		snprintf(r->shown, sizeof(r->shown), "sentinel %s", r->master_name);
	}
	if (o->ncluster > 0) {
		r->cluster = calloc(o->ncluster, sizeof(*r->cluster));
		r->slots = malloc(REDIS_CLUSTER_SLOTS * sizeof(*r->slots));
		if (r->cluster == NULL || r->slots == NULL) {
			redis_free(r);
			return NULL;
		}
		for (; r->ncluster < o->ncluster; r->ncluster++)
			if ((r->cluster[r->ncluster] = util_strdup(o->cluster[r->ncluster])) == NULL) {
				redis_free(r);
				return NULL;
			}
		memset(r->slots, 0xff, REDIS_CLUSTER_SLOTS * sizeof(*r->slots));
		r->map_stale = true;
		snprintf(r->shown, sizeof(r->shown), "cluster %s", r->cluster[0]);
	}
	if (r->address == NULL || r->username == NULL || r->password == NULL || r->sha == NULL) {
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
	if (r->sentinel_password != NULL)
		memset(r->sentinel_password, 0, strlen(r->sentinel_password));
	cluster_drop(r);
	for (size_t i = 0; i < r->nnodes; i++)
		if (r->nodes[i].c != NULL)
			redisFree(r->nodes[i].c);
	free(r->nodes);
	free(r->slots);
	free(r->fifo);
	for (size_t i = 0; i < r->ncluster; i++)
		free(r->cluster[i]);
	free(r->cluster);
	for (size_t i = 0; i < r->nsentinels; i++)
		free(r->sentinels[i]);
	free(r->sentinels);
	free(r->master_name);
	free(r->sentinel_password);
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

/* Forget the commands in flight (their replies will never be read). */
static void
cluster_drop(struct redis *r)
{
	for (size_t k = 0; k < r->fn; k++)
		redisFreeCommand(r->fifo[(r->fhead + k) % r->fcap].cmd);
	r->fhead = r->fn = 0;
}

void
redis_mark_broken(struct redis *r)
{
	r->broken = true;
	if (r->ncluster > 0) {
		/* Replies may be half read on any node: start every connection afresh. */
		for (size_t i = 0; i < r->nnodes; i++)
			if (r->nodes[i].c != NULL) {
				redisFree(r->nodes[i].c);
				r->nodes[i].c = NULL;
			}
		cluster_drop(r);
		r->broken = false;
	}
}

bool
redis_connected(const struct redis *r)
{
	if (r->ncluster > 0)
		return !r->map_stale;
	return r->c != NULL && !r->broken && r->c->err == 0;
}

static struct timeval
ms_to_tv(int64_t ms)
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
	int rc = -1;

	if (left <= 0 || redisSetTimeout(c, ms_to_tv(left)) != REDIS_OK) {
		snprintf(err, errlen, "%s: connect_timeout reached", what);
		return -1;
	}
	rep = redisCommandArgv(c, argc, argv, NULL);
	if (rep == NULL)
		snprintf(err, errlen, "%s: %s", what, c->errstr[0] ? c->errstr : "no reply");
	else if (rep->type == RR_ERROR)
		snprintf(err, errlen, "%s: %s", what, rep->str);
	else
		rc = 0;
	redis_reply_free(rep);
	return rc;
}

/* "host:port" or "[v6]:port" into host and port. 0 or -1 with err. */
static int
parse_tcp(const char *address, char *host, size_t hostlen, int *port, char *err, size_t errlen)
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

/*
 * Connect to address, authenticate and select; the whole handshake within
 * connect_timeout. The connection, or NULL with err.
 */
static redisContext *
connect_to(struct redis *r, const char *address, const char *username, const char *password,
    int database, char *err, size_t errlen)
{
	struct timeval ctv = ms_to_tv(r->connect_timeout_ms);
	int64_t deadline = util_now_ms() + r->connect_timeout_ms;
	redisContext *c;
	char host[256];
	char db[16];
	int port;

	if (strncmp(address, "unix:", 5) == 0) {
		c = redisConnectUnixWithTimeout(address + 5, ctv);
	} else {
		if (parse_tcp(address, host, sizeof(host), &port, err, errlen) < 0)
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
	if (redisSetTimeout(c, ms_to_tv(r->command_timeout_ms)) != REDIS_OK) {
		snprintf(err, errlen, "redis %s: cannot set timeout", address);
		goto fail;
	}
	return c;
fail:
	redisFree(c);
	return NULL;
}

/* One command on a fresh connection: the reply, or NULL with err (prefixed by what). */
static struct redis_reply *
ask(redisContext *c, const char *what, int argc, const char **argv, char *err, size_t errlen)
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

/*
 * Ask Sentinel s for the master's address (SENTINEL get-master-addr-by-name)
 * into addr. 0 or -1 with err.
 */
static int
sentinel_ask(struct redis *r, const char *s, char *addr, size_t addrlen, char *err, size_t errlen)
{
	const char *argv[] = { "SENTINEL", "get-master-addr-by-name", r->master_name };
	redisContext *c = connect_to(r, s, "", r->sentinel_password, 0, err, errlen);
	struct redis_reply *rep;
	char what[300];
	int rc = -1;

	if (c == NULL)
		return -1;
	snprintf(what, sizeof(what), "sentinel %s", s);
	if ((rep = ask(c, what, 3, argv, err, errlen)) == NULL)
		goto out;
	if (rep->type == RR_NIL)
		snprintf(err, errlen, "%s: does not know a master named \"%s\"", what, r->master_name);
	else if (rep->type != RR_ARRAY || rep->elements != 2 || !redis_reply_is_str(rep->element[0]) ||
	    !redis_reply_is_str(rep->element[1]))
		snprintf(err, errlen, "%s: unexpected reply to SENTINEL get-master-addr-by-name", what);
	else if (snprintf(addr, addrlen, strchr(rep->element[0]->str, ':') != NULL ? "[%s]:%s" :
	    "%s:%s", rep->element[0]->str, rep->element[1]->str) >= (int)addrlen)
		snprintf(err, errlen, "%s: master address too long", what);
	else
		rc = 0;
	redis_reply_free(rep);
out:
	redisFree(c);
	return rc;
}

/* Is the server on c a master (ROLE)? 0, or -1 with err. */
static int
verify_master(redisContext *c, const char *addr, const char *sentinel, char *err, size_t errlen)
{
	const char *argv[] = { "ROLE" };
	struct redis_reply *rep;
	char what[300];
	int rc = -1;

	snprintf(what, sizeof(what), "redis %s ROLE", addr);
	if ((rep = ask(c, what, 1, argv, err, errlen)) == NULL)
		return -1;
	if (rep->type == RR_ARRAY && rep->elements > 0 && redis_reply_is_str(rep->element[0]) &&
	    strcmp(rep->element[0]->str, "master") == 0)
		rc = 0;
	else
		snprintf(err, errlen, "redis %s (named by sentinel %s) is not a master: %s", addr,
		    sentinel, rep->type == RR_ARRAY && rep->elements > 0 &&
		    redis_reply_is_str(rep->element[0]) ? rep->element[0]->str : "unexpected ROLE reply");
	redis_reply_free(rep);
	return rc;
}

/*
 * The master of r->master_name: each Sentinel in turn (from the one that
 * answered last) names it, and it is used only when ROLE confirms it (a
 * stale Sentinel may still name a demoted master). Connected, or NULL with
 * every Sentinel's answer in err.
 */
static redisContext *
connect_master(struct redis *r, char *err, size_t errlen)
{
	struct strbuf why = { 0 };
	redisContext *c = NULL;

	for (size_t k = 0; k < r->nsentinels && c == NULL; k++) {
		size_t i = (r->sentinel_next + k) % r->nsentinels;
		char addr[280], e[512];

		if (sentinel_ask(r, r->sentinels[i], addr, sizeof(addr), e, sizeof(e)) == 0 &&
		    (c = connect_to(r, addr, r->username, r->password, r->database, e,
		    sizeof(e))) != NULL && verify_master(c, addr, r->sentinels[i], e, sizeof(e)) < 0) {
			redisFree(c);
			c = NULL;
		}
		if (c != NULL) {
			r->sentinel_next = i;
			snprintf(r->master, sizeof(r->master), "%s", addr);
			snprintf(r->shown, sizeof(r->shown), "sentinel %s (%s)", r->master_name, addr);
		} else {
			strbuf_printf(&why, "%s%s", why.s != NULL ? "; " : "", e);
		}
	}
	if (c == NULL)
		snprintf(err, errlen, "redis sentinel %s: no master found: %s", r->master_name,
		    why.s != NULL ? why.s : "no sentinels");
	strbuf_free(&why);
	return c;
}

/* Connect to the configured server, or to the master the Sentinels name. */
static redisContext *
connect_once(struct redis *r, char *err, size_t errlen)
{
	if (r->nsentinels > 0)
		return connect_master(r, err, errlen);
	return connect_to(r, r->address, r->username, r->password, r->database, err, errlen);
}

/*
 * The failover notice: about once a second, between commands, ask the
 * Sentinel that named our master whether it still does. Once it names
 * another, the connection is dropped and the next one asks again (and
 * checks ROLE). A Sentinel that does not answer changes nothing.
 */
static void
sentinel_watch(struct redis *r, int64_t now)
{
	char addr[280], e[512];

	if (r->nsentinels == 0 || r->inflight > 0 || now < r->next_watch_ms)
		return;
	r->next_watch_ms = now + SENTINEL_WATCH_MS;
	if (sentinel_ask(r, r->sentinels[r->sentinel_next], addr, sizeof(addr), e, sizeof(e)) < 0 ||
	    strcmp(addr, r->master) == 0)
		return;
	snprintf(r->errstr, sizeof(r->errstr), "redis %.200s: sentinel %.100s now names %.100s as the master",
	    redis_address(r), r->sentinels[r->sentinel_next], addr);
	r->broken = true;
}

int
redis_ensure(struct redis *r, char *err, size_t errlen)
{
	int64_t now = util_now_ms();
	redisContext *c;

	if (r->ncluster > 0)
		return cluster_ensure(r, err, errlen);
	if (r->c != NULL && !r->broken && r->c->err == 0)
		sentinel_watch(r, now);
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
	if (now < r->next_try_ms) {
		snprintf(err, errlen, "%s (next attempt in %" PRId64 "ms)", r->errstr,
		    r->next_try_ms - now);
		return -1;
	}
	c = connect_once(r, r->errstr, sizeof(r->errstr));
	if (c == NULL) {
		r->next_try_ms = util_now_ms()
		    + util_backoff_ms(BACKOFF_BASE_MS, BACKOFF_CAP_MS, r->attempt);
		if (r->attempt < 32)
			r->attempt++;
		snprintf(err, errlen, "%s", r->errstr);
		return -1;
	}
	r->c = c;
	r->generation++;
	r->inflight = 0;
	r->next_watch_ms = util_now_ms() + SENTINEL_WATCH_MS;
	r->err = 0;
	r->attempt = 0;
	r->next_try_ms = 0;
	return 0;
}

int
redis_swap_timeout(struct redis *r, int64_t ms, int64_t *old_ms)
{
	struct timeval tv = ms_to_tv(ms), old;
	socklen_t sl = sizeof(old);

	if (r->ncluster > 0) {
		/* Every node connection, now and made later (cluster_node). */
		if (old_ms != NULL)
			*old_ms = r->rcv_ms > 0 ? r->rcv_ms : r->command_timeout_ms;
		r->rcv_ms = ms == r->command_timeout_ms ? 0 : ms;
		for (size_t i = 0; i < r->nnodes; i++)
			if (r->nodes[i].c != NULL)
				(void)redisSetTimeout(r->nodes[i].c, ms_to_tv(ms));
		return 0;
	}
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

/* ---- Redis Cluster: slots, the slot map, redirects ---- */

unsigned
redis_key_slot(const char *key, size_t len)
{
	const unsigned char *p = (const unsigned char *)key;
	const char *open = memchr(key, '{', len), *close;
	uint16_t crc = 0;

	if (open != NULL) {
		size_t rest = len - (size_t)(open - key) - 1;

		close = memchr(open + 1, '}', rest);
		if (close != NULL && close > open + 1) {
			p = (const unsigned char *)open + 1;
			len = (size_t)(close - open - 1);
		}
	}
	/* CRC16-CCITT (XMODEM): polynomial 0x1021, initial 0, no reflection. */
	for (size_t i = 0; i < len; i++) {
		crc ^= (uint16_t)(p[i] << 8);
		for (int b = 0; b < 8; b++)
			crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
	}
	return crc % REDIS_CLUSTER_SLOTS;
}

int
redis_parse_redirect(const char *reply, int *slot, char *addr, size_t addrlen, bool *ask)
{
	const char *p;
	char *end;
	long v;

	if (strncmp(reply, "MOVED ", 6) == 0) {
		*ask = false;
		p = reply + 6;
	} else if (strncmp(reply, "ASK ", 4) == 0) {
		*ask = true;
		p = reply + 4;
	} else {
		return -1;
	}
	v = strtol(p, &end, 10);
	if (end == p || *end != ' ' || v < 0 || v >= REDIS_CLUSTER_SLOTS || end[1] == '\0' ||
	    strchr(end + 1, ' ') != NULL || strchr(end + 1, ':') == NULL ||
	    strlen(end + 1) >= addrlen)
		return -1;
	*slot = (int)v;
	snprintf(addr, addrlen, "%s", end + 1);
	return 0;
}

void
redis_cluster_counts(const struct redis *r, unsigned *moved, unsigned *ask, unsigned *maps)
{
	*moved = r->moved;
	*ask = r->asked;
	*maps = r->maps;
}

/* The index of the node at addr, added when new; -1 on OOM or too many. */
static int
node_index(struct redis *r, const char *addr)
{
	struct node *nn;

	for (size_t i = 0; i < r->nnodes; i++)
		if (strcmp(r->nodes[i].addr, addr) == 0)
			return (int)i;
	if (r->nnodes >= 1000 || (nn = realloc(r->nodes, (r->nnodes + 1) * sizeof(*nn))) == NULL)
		return -1;
	r->nodes = nn;
	memset(&nn[r->nnodes], 0, sizeof(*nn));
	snprintf(nn[r->nnodes].addr, sizeof(nn[r->nnodes].addr), "%s", addr);
	return (int)r->nnodes++;
}

/* Node i's connection, made when needed. NULL with err. */
static redisContext *
cluster_node(struct redis *r, int i, char *err, size_t errlen)
{
	struct node *n = &r->nodes[i];

	if (n->c != NULL && n->c->err == 0)
		return n->c;
	if (n->c != NULL) {
		redisFree(n->c);
		n->c = NULL;
	}
	if ((n->c = connect_to(r, n->addr, r->username, r->password, 0, err, errlen)) == NULL)
		return NULL;
	if (r->rcv_ms > 0)
		(void)redisSetTimeout(n->c, ms_to_tv(r->rcv_ms));
	return n->c;
}

/* "host:port" of a CLUSTER SLOTS node entry ({host, port, id, ...}); asked: the node asked. */
static int
slots_node_addr(const struct redis_reply *e, const char *asked, char *addr, size_t addrlen)
{
	const char *host;
	char ahost[256];
	int port;

	if (e->type != RR_ARRAY || e->elements < 2 || !redis_reply_is_str(e->element[0]) ||
	    e->element[1]->type != RR_INTEGER)
		return -1;
	host = e->element[0]->str;
	if (host[0] == '\0' || strcmp(host, "?") == 0) {
		/* An unknown endpoint is the node asked. */
		if (parse_tcp(asked, ahost, sizeof(ahost), &port, addr, addrlen) < 0)
			return -1;
		host = ahost;
	}
	snprintf(addr, addrlen, strchr(host, ':') != NULL ? "[%s]:%lld" : "%s:%lld", host,
	    (long long)e->element[1]->integer);
	return 0;
}

/* Load the slot map from the node at addr (CLUSTER SLOTS). 0 or -1 with err. */
static int
load_map(struct redis *r, const char *addr, char *err, size_t errlen)
{
	const char *argv[] = { "CLUSTER", "SLOTS" };
	redisContext *c = connect_to(r, addr, r->username, r->password, 0, err, errlen);
	struct redis_reply *rep;
	char what[300], naddr[280];
	int rc = -1;

	if (c == NULL)
		return -1;
	snprintf(what, sizeof(what), "redis %s CLUSTER SLOTS", addr);
	if ((rep = ask(c, what, 2, argv, err, errlen)) == NULL)
		goto out;
	if (rep->type != RR_ARRAY || rep->elements == 0) {
		snprintf(err, errlen, "%s: %s", what, rep->type == RR_ARRAY ? "no slot is served" :
		    "unexpected reply");
		goto out;
	}
	memset(r->slots, 0xff, REDIS_CLUSTER_SLOTS * sizeof(*r->slots));
	for (size_t k = 0; k < rep->elements; k++) {
		const struct redis_reply *e = rep->element[k];
		int64_t lo, hi;
		int ni;

		if (e->type != RR_ARRAY || e->elements < 3 || e->element[0]->type != RR_INTEGER ||
		    e->element[1]->type != RR_INTEGER ||
		    slots_node_addr(e->element[2], addr, naddr, sizeof(naddr)) < 0) {
			snprintf(err, errlen, "%s: unexpected reply", what);
			goto out;
		}
		lo = e->element[0]->integer;
		hi = e->element[1]->integer;
		if (lo < 0 || hi >= REDIS_CLUSTER_SLOTS || lo > hi || (ni = node_index(r, naddr)) < 0) {
			snprintf(err, errlen, "%s: bad slot range or too many nodes", what);
			goto out;
		}
		for (int64_t sl = lo; sl <= hi; sl++)
			r->slots[sl] = (int16_t)ni;
	}
	rc = 0;
out:
	redis_reply_free(rep);
	redisFree(c);
	return rc;
}

/*
 * The slot map when it is stale (first use, MOVED, a connection error):
 * asked of the known nodes, then of the seeds, until one answers. Only
 * between pipelines (nothing in flight). 0 or -1 with err (and a backoff).
 */
static int
cluster_ensure(struct redis *r, char *err, size_t errlen)
{
	int64_t now = util_now_ms();
	struct strbuf why = { 0 };
	size_t total;

	if (!r->map_stale || r->fn > 0)
		return 0;
	if (now < r->next_try_ms) {
		snprintf(err, errlen, "%s (next attempt in %" PRId64 "ms)", r->errstr,
		    r->next_try_ms - now);
		return -1;
	}
	total = r->nnodes + r->ncluster;
	for (size_t k = 0; k < total; k++) {
		char addr[280], e[512];

		snprintf(addr, sizeof(addr), "%s", k < r->nnodes ? r->nodes[k].addr :
		    r->cluster[k - r->nnodes]);
		if (load_map(r, addr, e, sizeof(e)) == 0) {
			r->map_stale = false;
			r->maps++;
			r->generation++;
			r->err = 0;
			r->attempt = 0;
			strbuf_free(&why);
			return 0;
		}
		strbuf_printf(&why, "%s%s", why.s != NULL ? "; " : "", e);
	}
	r->err = 1;
	snprintf(r->errstr, sizeof(r->errstr), "redis %s: no node gave the slot map: %s",
	    redis_address(r), why.s != NULL ? why.s : "out of memory");
	strbuf_free(&why);
	r->next_try_ms = now + util_backoff_ms(BACKOFF_BASE_MS, BACKOFF_CAP_MS, r->attempt);
	if (r->attempt < 32)
		r->attempt++;
	snprintf(err, errlen, "%s", r->errstr);
	return -1;
}

/* A node connection failed: drop it, reload the map before the next pipeline. */
static void
node_failed(struct redis *r, int i, const char *what, char *err, size_t errlen)
{
	struct node *n = &r->nodes[i];

	snprintf(err, errlen, "redis %s (node %s): %s", redis_address(r), n->addr,
	    n->c != NULL && n->c->errstr[0] ? n->c->errstr : what);
	snprintf(r->errstr, sizeof(r->errstr), "%s", err);
	r->err = 1;
	/* The replies other nodes still owe belong to the same broken pipeline. */
	redis_mark_broken(r);
	r->map_stale = true;
}

static int
cluster_send(struct redis *r, const struct redis_args *a, char *err, size_t errlen)
{
	int node = r->last_node, len;
	char *cmd = NULL;
	redisContext *c;

	if (a->key >= 0 && (size_t)a->key < a->n) {
		int sl = r->slots[redis_key_slot(a->v[a->key], a->len[a->key])];

		if (sl >= 0)
			node = sl;
	}
	if (node < 0 || (size_t)node >= r->nnodes) {
		for (node = 0; node < REDIS_CLUSTER_SLOTS && r->slots[node] < 0; node++)
			;
		node = node < REDIS_CLUSTER_SLOTS ? r->slots[node] : -1;
		if (node < 0) {
			snprintf(err, errlen, "redis %s: no node serves any slot", redis_address(r));
			r->map_stale = true;
			return -1;
		}
	}
	if ((c = cluster_node(r, node, err, errlen)) == NULL) {
		r->map_stale = true;
		return -1;
	}
	if (r->fn == r->fcap) {
		size_t ncap = r->fcap ? r->fcap * 2 : 64;
		struct sent *nf = malloc(ncap * sizeof(*nf));

		if (nf == NULL)
			goto oom;
		for (size_t k = 0; k < r->fn; k++)
			nf[k] = r->fifo[(r->fhead + k) % r->fcap];
		free(r->fifo);
		r->fifo = nf;
		r->fcap = ncap;
		r->fhead = 0;
	}
	if ((len = redisFormatCommandArgv(&cmd, (int)a->n, a->v, a->len)) < 0)
		goto oom;
	if (redisAppendFormattedCommand(c, cmd, (size_t)len) != REDIS_OK) {
		redisFreeCommand(cmd);
		goto oom;
	}
	r->fifo[(r->fhead + r->fn++) % r->fcap] = (struct sent){ node, cmd, (size_t)len };
	r->last_node = node;
	return 0;
oom:
	snprintf(err, errlen, "redis %s: out of memory", a->v[0]);
	redis_mark_broken(r);
	return -1;
}

/* Is a command still in flight on node i (its connection cannot take a redirect now)? */
static bool
node_busy(const struct redis *r, int i)
{
	for (size_t k = 0; k < r->fn; k++)
		if (r->fifo[(r->fhead + k) % r->fcap].node == i)
			return true;
	return false;
}

/*
 * Follow one redirect: cmd again on the node at addr (after ASKING for
 * ASK), on its own connection when that one is idle, else on a connection
 * of its own for this one command. The new reply, or NULL with err.
 */
static struct redis_reply *
redirect(struct redis *r, const char *addr, bool is_ask, const struct sent *s, char *err,
    size_t errlen)
{
	int i = node_index(r, addr);
	bool own = i >= 0 && !node_busy(r, i);
	redisContext *c = own ? cluster_node(r, i, err, errlen) :
	    connect_to(r, addr, r->username, r->password, 0, err, errlen);
	void *p = NULL, *q = NULL;
	struct redis_reply *rep = NULL;

	if (c == NULL)
		return NULL;
	if ((is_ask && redisAppendCommand(c, "ASKING") != REDIS_OK) ||
	    redisAppendFormattedCommand(c, s->cmd, s->len) != REDIS_OK ||
	    (is_ask && (redisGetReply(c, &q) != REDIS_OK || q == NULL)) ||
	    redisGetReply(c, &p) != REDIS_OK || p == NULL) {
		snprintf(err, errlen, "redis %s (node %s): %s", redis_address(r), addr,
		    c->errstr[0] ? c->errstr : "no reply");
		redis_reply_free(p);
		if (own) {
			redisFree(r->nodes[i].c);
			r->nodes[i].c = NULL;
		}
		r->map_stale = true;
	} else {
		rep = p;
	}
	redis_reply_free(q);
	if (!own)
		redisFree(c);
	return rep;
}

static int
cluster_read(struct redis *r, struct redis_reply **rep, char *err, size_t errlen)
{
	struct sent s;
	void *p = NULL;
	redisContext *c;

	if (r->fn == 0) {
		snprintf(err, errlen, "redis %s: no reply is due", redis_address(r));
		return -1;
	}
	s = r->fifo[r->fhead];
	r->fhead = (r->fhead + 1) % r->fcap;
	r->fn--;
	c = r->nodes[s.node].c;
	if (c == NULL || redisGetReply(c, &p) != REDIS_OK || p == NULL) {
		redisFreeCommand(s.cmd);
		node_failed(r, s.node, "no reply", err, errlen);
		return -1;
	}
	*rep = p;
	for (int hop = 0; hop < REDIRECTS_MAX && (*rep)->type == RR_ERROR; hop++) {
		char addr[280];
		bool is_ask;
		int slot, ni;
		struct redis_reply *nrep;

		if (strncmp((*rep)->str, "UNBLOCKED ", 10) == 0 ||
		    strncmp((*rep)->str, "CLUSTERDOWN ", 12) == 0)
			r->map_stale = true;
		if (strncmp((*rep)->str, "TRYAGAIN ", 9) == 0) {
			/* A multi-key command while its slot is half migrated: again, shortly. */
			util_sleep_ms(TRYAGAIN_MS * (hop + 1), NULL);
			snprintf(addr, sizeof(addr), "%s", r->nodes[s.node].addr);
			is_ask = false;
		} else if (redis_parse_redirect((*rep)->str, &slot, addr, sizeof(addr), &is_ask) < 0) {
			break;
		} else if (is_ask) {
			r->asked++;
		} else {
			/* The slot moved for good: note it now, reload the whole map later. */
			r->moved++;
			r->map_stale = true;
			if ((ni = node_index(r, addr)) >= 0)
				r->slots[slot] = (int16_t)ni;
		}
		if ((nrep = redirect(r, addr, is_ask, &s, err, errlen)) == NULL) {
			redisFreeCommand(s.cmd);
			redis_reply_free(*rep);
			*rep = NULL;
			r->err = 1;
			snprintf(r->errstr, sizeof(r->errstr), "%s", err);
			return -1;
		}
		redis_reply_free(*rep);
		*rep = nrep;
	}
	redisFreeCommand(s.cmd);
	return 0;
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
		return cluster_send(r, a, err, errlen);
	if (redisAppendCommandArgv(r->c, (int)a->n, a->v, a->len) != REDIS_OK) {
		snprintf(err, errlen, "redis %s: out of memory", a->v[0]);
		r->broken = true;
		return -1;
	}
	r->inflight++;
	return 0;
}

/*
 * An error reply that says this server is (no longer) the master to write
 * to: a replica (READONLY), one still loading its data (LOADING), one whose
 * blocked clients were released as it changed role (UNBLOCKED).
 */
static bool
failover_reply(const struct redis_reply *rep)
{
	static const char *const codes[] = { "READONLY ", "LOADING ", "UNBLOCKED ", "MASTERDOWN " };

	if (rep->type != RR_ERROR)
		return false;
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		if (strncmp(rep->str, codes[i], strlen(codes[i])) == 0)
			return true;
	return false;
}

int
redis_read_reply(struct redis *r, struct redis_reply **rep, char *err, size_t errlen)
{
	void *p = NULL;

	*rep = NULL;
	if (r->ncluster > 0)
		return cluster_read(r, rep, err, errlen);
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
	if (r->nsentinels > 0 && failover_reply(*rep)) {
		/* The next command asks the Sentinels again (scaleno.conf(5) "redis"). */
		snprintf(r->errstr, sizeof(r->errstr), "redis %s: %s", redis_address(r), (*rep)->str);
		r->broken = true;
	}
	return 0;
}

int
redis_append(struct redis *r, const struct redis_args *a, char *err, size_t errlen)
{
	return send_path(r, a, err, errlen);
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
