/*
 * redisq — the agent's Redis connection and the pipelined queue sampler.
 *
 * Each stream is read by one Lua script (XINFO STREAM/GROUPS, XPENDING
 * summary, XRANGE; XINFO is allowed in scripts on 7.0: it is not marked
 * noscript) so that a queue costs one command, the null-lag fallback costs
 * no extra round trip, and all figures of a stream come from one instant.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "config.h"
#include "log.h"
#include "redisq.h"
#include "redisq_int.h"
#include "sample.h"
#include "util.h"

#define BACKOFF_BASE_MS 100
#define BACKOFF_CAP_MS 5000
#define SCRIPT_FIELDS 16

/*
 * KEYS: stream, halt key, then ndlq dead-letter streams, then retry stages.
 * ARGV: group, XRANGE cap, ndlq.
 * Returns {exists, group exists, XLEN, entries-added, lag|nil, pending,
 * entries-read|nil, last-delivered-id|nil, first id|nil, oldest pending
 * id|nil, oldest undelivered id|nil, fallback undelivered|nil, estimated,
 * halted, dlq length, retry length}.
 */
static const char sample_lua[] =
"local function idcmp(a, b)\n"
"  local am, as = string.match(a, '^(%d+)-(%d+)$')\n"
"  local bm, bs = string.match(b, '^(%d+)-(%d+)$')\n"
"  if not am or not bm then return 0 end\n"
"  if #am ~= #bm then return #am < #bm and -1 or 1 end\n"
"  if am ~= bm then return am < bm and -1 or 1 end\n"
"  if #as ~= #bs then return #as < #bs and -1 or 1 end\n"
"  if as ~= bs then return as < bs and -1 or 1 end\n"
"  return 0\n"
"end\n"
"local function field(t, name)\n"
"  for i = 1, #t - 1, 2 do if t[i] == name then return t[i + 1] end end\n"
"  return false\n"
"end\n"
"local function notstream(k, t)\n"
"  return redis.error_reply('WRONGTYPE key ' .. k .. ' holds a ' .. t .. ', not a stream')\n"
"end\n"
"local key, group = KEYS[1], ARGV[1]\n"
"local cap, ndlq = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
"local halted = redis.call('EXISTS', KEYS[2])\n"
"local dlq, retry = 0, 0\n"
"for i = 3, #KEYS do\n"
"  local t = redis.call('TYPE', KEYS[i]).ok\n"
"  if t == 'stream' then\n"
"    local n = redis.call('XLEN', KEYS[i])\n"
"    if i < 3 + ndlq then dlq = dlq + n else retry = retry + n end\n"
"  elseif t ~= 'none' then return notstream(KEYS[i], t) end\n"
"end\n"
"local t = redis.call('TYPE', key).ok\n"
"if t == 'none' then\n"
"  return {0, 0, 0, 0, false, 0, false, false, false, false, false, false, 0, halted, dlq, retry}\n"
"end\n"
"if t ~= 'stream' then return notstream(key, t) end\n"
"local info = redis.call('XINFO', 'STREAM', key)\n"
"local xlen, added = field(info, 'length'), field(info, 'entries-added')\n"
"local fe = field(info, 'first-entry')\n"
"local first = fe and fe[1] or false\n"
"local g = false\n"
"for _, gi in ipairs(redis.call('XINFO', 'GROUPS', key)) do\n"
"  if field(gi, 'name') == group then g = gi break end\n"
"end\n"
"if not g then\n"
"  return {1, 0, xlen, added, false, 0, false, false, first, false, false, false, 0, halted, dlq, retry}\n"
"end\n"
"local lag, pending = field(g, 'lag'), field(g, 'pending')\n"
"local eread, ld = field(g, 'entries-read'), field(g, 'last-delivered-id')\n"
"local pmin = false\n"
"if pending > 0 then pmin = redis.call('XPENDING', key, group)[2] end\n"
"local ufirst = false\n"
"local u = redis.pcall('XRANGE', key, '(' .. ld, '+', 'COUNT', 1)\n"
"if type(u) == 'table' and not u.err and u[1] then ufirst = u[1][1] end\n"
"local fb, est = false, 0\n"
"if not lag then\n"
"  if not first then fb = 0\n"
"  elseif idcmp(ld, first) < 0 then fb = xlen\n"
"  elseif not ufirst then fb = 0\n"
"  else\n"
"    fb = #redis.call('XRANGE', key, ufirst, '+', 'COUNT', cap)\n"
"    if fb >= cap then est = 1 end\n"
"  end\n"
"end\n"
"return {1, 1, xlen, added, lag, pending, eread, ld, first, pmin, ufirst, fb, est, halted, dlq, retry}\n";

/*
 * KEYS[1] lease, ARGV owner, ttl ms. Taking a free lease and renewing our
 * own are one atomic step, so two agents can never both see 1. A ttl of 0
 * releases the lease if we hold it (compare-and-delete).
 */
static const char lease_lua[] =
"if ARGV[2] == '0' then\n"
"  if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end\n"
"  return 0\n"
"end\n"
"if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end\n"
"if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
"  redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
"  return 1\n"
"end\n"
"return 0\n";

struct script {
	const char *src;
	char sha[41];	/* "" until loaded */
};

struct redisq {
	char *address;
	char *username;
	char *password;
	int database;
	int64_t connect_timeout_ms, command_timeout_ms;

	redisContext *c;
	bool broken;
	unsigned attempt;	/* failed connects in a row */
	int64_t next_try_ms;	/* monotonic; no connect before this */
	char last_err[256];

	struct script sample_script, lease_script;
	int64_t lag_cap;

	char **qerr;		/* per-queue errors of the last sample */
	int nqerr;
};

struct redisq *
redisq_new(const struct redis_conf *conf)
{
	struct redisq *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->address = util_strdup(conf->address ? conf->address : "127.0.0.1:6379");
	r->username = util_strdup(conf->username ? conf->username : "");
	r->password = util_strdup(conf->password ? conf->password : "");
	if (r->address == NULL || r->username == NULL || r->password == NULL) {
		redisq_free(r);
		return NULL;
	}
	r->database = conf->database;
	r->connect_timeout_ms = conf->connect_timeout_ms > 0 ? conf->connect_timeout_ms : 500;
	r->command_timeout_ms = conf->command_timeout_ms > 0 ? conf->command_timeout_ms : 2000;
	r->sample_script.src = sample_lua;
	r->lease_script.src = lease_lua;
	r->lag_cap = REDISQ_LAG_CAP;
	return r;
}

static void
qerr_clear(struct redisq *r)
{
	for (int i = 0; i < r->nqerr; i++)
		free(r->qerr[i]);
	free(r->qerr);
	r->qerr = NULL;
	r->nqerr = 0;
}

void
redisq_free(struct redisq *r)
{
	if (r == NULL)
		return;
	if (r->c != NULL)
		redisFree(r->c);
	if (r->password != NULL)
		memset(r->password, 0, strlen(r->password));
	free(r->address);
	free(r->username);
	free(r->password);
	qerr_clear(r);
	free(r);
}

void
redisq_set_lag_cap(struct redisq *r, int64_t cap)
{
	r->lag_cap = cap >= 1 ? cap : 1;
}

const char *
redisq_queue_error(const struct redisq *r, int i)
{
	if (i < 0 || i >= r->nqerr)
		return NULL;
	return r->qerr[i];
}

redisContext *
redisq_context(struct redisq *r)
{
	return r->broken ? NULL : r->c;
}

void
redisq_mark_broken(struct redisq *r)
{
	r->broken = true;
}

bool
redisq_connected(const struct redisq *r)
{
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
	redisReply *rep;
	int rc = -1;

	if (left <= 0 || redisSetTimeout(c, ms_to_tv(left)) != REDIS_OK) {
		snprintf(err, errlen, "%s: connect_timeout reached", what);
		return -1;
	}
	rep = redisCommandArgv(c, argc, argv, NULL);
	if (rep == NULL)
		snprintf(err, errlen, "%s: %s", what, c->errstr[0] ? c->errstr : "no reply");
	else if (rep->type == REDIS_REPLY_ERROR)
		snprintf(err, errlen, "%s: %s", what, rep->str);
	else
		rc = 0;
	if (rep != NULL)
		freeReplyObject(rep);
	return rc;
}

/* Connect, authenticate and select; the whole handshake within connect_timeout. */
static redisContext *
connect_once(struct redisq *r, char *err, size_t errlen)
{
	struct timeval ctv = ms_to_tv(r->connect_timeout_ms);
	int64_t deadline = util_now_ms() + r->connect_timeout_ms;
	redisContext *c;
	char host[256];
	char db[16];
	int port;

	if (strncmp(r->address, "unix:", 5) == 0) {
		c = redisConnectUnixWithTimeout(r->address + 5, ctv);
	} else {
		const char *a = r->address, *colon = strrchr(a, ':');
		size_t hlen;
		char *end;
		long p;

		if (colon == NULL) {
			snprintf(err, errlen, "redis address \"%s\": expected host:port or unix:/path", a);
			return NULL;
		}
		hlen = (size_t)(colon - a);
		if (hlen >= 2 && a[0] == '[' && a[hlen - 1] == ']') {
			a++;
			hlen -= 2;
		}
		errno = 0;
		p = strtol(colon + 1, &end, 10);
		if (hlen == 0 || hlen >= sizeof(host) || *end != '\0' || end == colon + 1 || p < 1
		    || p > 65535) {
			snprintf(err, errlen, "redis address \"%s\": bad host or port", r->address);
			return NULL;
		}
		memcpy(host, a, hlen);
		host[hlen] = '\0';
		port = (int)p;
		c = redisConnectWithTimeout(host, port, ctv);
	}
	if (c == NULL) {
		snprintf(err, errlen, "redis %s: out of memory", r->address);
		return NULL;
	}
	if (c->err) {
		snprintf(err, errlen, "redis %s: %s", r->address, c->errstr);
		goto fail;
	}
	if (c->connection_type == REDIS_CONN_TCP)
		(void)redisEnableKeepAlive(c);
	if (r->username[0] != '\0') {
		const char *argv[] = { "AUTH", r->username, r->password };

		if (handshake_cmd(c, deadline, "redis AUTH", err, errlen, 3, argv) < 0)
			goto fail;
	} else if (r->password[0] != '\0') {
		const char *argv[] = { "AUTH", r->password };

		if (handshake_cmd(c, deadline, "redis AUTH", err, errlen, 2, argv) < 0)
			goto fail;
	}
	if (r->database != 0) {
		const char *argv[] = { "SELECT", db };

		snprintf(db, sizeof(db), "%d", r->database);
		if (handshake_cmd(c, deadline, "redis SELECT", err, errlen, 2, argv) < 0)
			goto fail;
	}
	if (redisSetTimeout(c, ms_to_tv(r->command_timeout_ms)) != REDIS_OK) {
		snprintf(err, errlen, "redis %s: cannot set timeout", r->address);
		goto fail;
	}
	return c;
fail:
	redisFree(c);
	return NULL;
}

int
redisq_ensure(struct redisq *r, char *err, size_t errlen)
{
	int64_t now = util_now_ms();
	redisContext *c;

	if (r->c != NULL && !r->broken && r->c->err == 0)
		return 0;
	if (r->c != NULL) {
		/* A connection that was up gets one immediate retry. */
		snprintf(r->last_err, sizeof(r->last_err), "redis %s: %s", r->address,
		    r->c->err ? r->c->errstr : "connection reset after an error");
		redisFree(r->c);
		r->c = NULL;
		r->broken = false;
	}
	if (now < r->next_try_ms) {
		snprintf(err, errlen, "%s (next attempt in %" PRId64 "ms)", r->last_err,
		    r->next_try_ms - now);
		return -1;
	}
	c = connect_once(r, r->last_err, sizeof(r->last_err));
	if (c == NULL) {
		r->next_try_ms = util_now_ms()
		    + util_backoff_ms(BACKOFF_BASE_MS, BACKOFF_CAP_MS, r->attempt);
		if (r->attempt < 32)
			r->attempt++;
		snprintf(err, errlen, "%s", r->last_err);
		return -1;
	}
	r->c = c;
	r->attempt = 0;
	r->next_try_ms = 0;
	return 0;
}

/* SCRIPT LOAD; 0, or -1 with err (the context is marked broken on I/O errors). */
static int
script_load(struct redisq *r, struct script *s, char *err, size_t errlen)
{
	redisReply *rep = redisCommand(r->c, "SCRIPT LOAD %s", s->src);
	int rc = -1;

	if (rep == NULL) {
		snprintf(err, errlen, "redis %s: SCRIPT LOAD: %s", r->address, r->c->errstr);
		r->broken = true;
		return -1;
	}
	if (rep->type == REDIS_REPLY_STRING && rep->len == 40) {
		memcpy(s->sha, rep->str, 40);
		s->sha[40] = '\0';
		rc = 0;
	} else {
		snprintf(err, errlen, "redis %s: SCRIPT LOAD: %s", r->address,
		    rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
	}
	freeReplyObject(rep);
	return rc;
}

static bool
is_noscript(const redisReply *rep)
{
	return rep != NULL && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0;
}

/* Millisecond part of a stream id "ms-seq"; -1 when it is not one. */
static int64_t
id_ms(const redisReply *id)
{
	unsigned long long ms;
	char *end;

	if (id == NULL || id->type != REDIS_REPLY_STRING)
		return -1;
	errno = 0;
	ms = strtoull(id->str, &end, 10);
	if (errno != 0 || end == id->str || *end != '-' || ms > INT64_MAX)
		return -1;
	return (int64_t)ms;
}

/* Server time in ms from a TIME reply; -1 when it is malformed. */
static int64_t
time_ms(const redisReply *rep)
{
	long long s, us;
	char *e1, *e2;

	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2
	    || rep->element[0]->type != REDIS_REPLY_STRING
	    || rep->element[1]->type != REDIS_REPLY_STRING)
		return -1;
	s = strtoll(rep->element[0]->str, &e1, 10);
	us = strtoll(rep->element[1]->str, &e2, 10);
	if (*e1 != '\0' || *e2 != '\0' || s < 0 || us < 0)
		return -1;
	return s * 1000 + us / 1000;
}

static bool
is_int(const redisReply *e)
{
	return e->type == REDIS_REPLY_INTEGER;
}

static bool
is_int_or_nil(const redisReply *e)
{
	return e->type == REDIS_REPLY_INTEGER || e->type == REDIS_REPLY_NIL;
}

static bool
is_str_or_nil(const redisReply *e)
{
	return e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_NIL;
}

/* The script's reply has the shape it promises (guards against absurd replies). */
static bool
reply_shape_ok(const redisReply *rep)
{
	redisReply *const *e;

	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != SCRIPT_FIELDS)
		return false;
	e = rep->element;
	return is_int(e[0]) && is_int(e[1]) && is_int(e[2]) && is_int(e[3]) && is_int_or_nil(e[4])
	    && is_int(e[5]) && is_int_or_nil(e[6]) && is_str_or_nil(e[7]) && is_str_or_nil(e[8])
	    && is_str_or_nil(e[9]) && is_str_or_nil(e[10]) && is_int_or_nil(e[11])
	    && is_int(e[12]) && is_int(e[13]) && is_int(e[14]) && is_int(e[15]);
}

/* Adds one stream's script reply into the queue's sample. -1 with err when unusable. */
static int
fold_stream(struct raw_sample *s, const redisReply *rep, int64_t now_ms, char *err, size_t errlen)
{
	redisReply *const *e;
	int64_t undelivered, oldest = -1;

	if (rep->type == REDIS_REPLY_ERROR) {
		snprintf(err, errlen, "%s", rep->str);
		return -1;
	}
	if (!reply_shape_ok(rep)) {
		snprintf(err, errlen, "unexpected reply to the sampling script");
		return -1;
	}
	e = rep->element;
	s->halted += e[13]->integer != 0;
	s->dlq_length += e[14]->integer;
	s->retry_length += e[15]->integer;
	if (e[0]->integer == 0) {
		s->stream_missing = true;
		return 0;
	}
	s->length += e[2]->integer;
	s->entries_added += e[3]->integer;
	if (e[1]->integer == 0) {
		s->group_missing = true;
		return 0;
	}
	if (e[4]->type == REDIS_REPLY_INTEGER) {
		undelivered = e[4]->integer;
	} else if (e[11]->type == REDIS_REPLY_INTEGER) {
		undelivered = e[11]->integer;
		if (e[12]->integer != 0)
			s->lag_estimated = true;
	} else {
		snprintf(err, errlen, "sampling script gave neither lag nor a fallback count");
		return -1;
	}
	if (undelivered < 0 || e[5]->integer < 0) {
		snprintf(err, errlen, "negative lag or pending in the sampling reply");
		return -1;
	}
	s->lag += undelivered;
	s->pending += e[5]->integer;
	/* entries-read is null when the group starts at an arbitrary id: derive it. */
	s->entries_read += e[6]->type == REDIS_REPLY_INTEGER ? e[6]->integer
	    : e[3]->integer - undelivered;
	for (int k = 9; k <= 10; k++) {
		int64_t ms = id_ms(e[k]);

		if (ms >= 0 && (oldest < 0 || ms < oldest))
			oldest = ms;
	}
	if (oldest >= 0 && now_ms > oldest && now_ms - oldest > s->oldest_age_ms)
		s->oldest_age_ms = now_ms - oldest;
	return 0;
}

/* One stream to sample: queue index and partition (-1 = unpartitioned). */
struct target {
	int q;
	int part;
};

/* Appends the script call for one stream. -1 on OOM. */
static int
append_stream(struct redisq *r, const struct queue_policy *qp, int part)
{
	struct strbuf stream = { 0 }, halt = { 0 }, dlq = { 0 };
	struct strbuf *retry = NULL;
	const char **argv = NULL;
	size_t nretry = part <= 0 ? qp->worker.nretry_delays : 0;
	char nkeys[16], cap[24];
	int argc = 0, rc = -1;

	/* The DLQ and retry stages are per queue (SPEC §5.2): count them once. */
	if (part < 0)
		strbuf_printf(&stream, "%s", qp->stream);
	else
		strbuf_printf(&stream, "%s:%d", qp->stream, part);
	strbuf_printf(&halt, "%s:halt", stream.s ? stream.s : "");
	if (part <= 0)
		strbuf_printf(&dlq, "%s:dlq", qp->stream);
	argv = calloc(9 + nretry, sizeof(*argv));
	retry = calloc(nretry + 1, sizeof(*retry));
	if (argv == NULL || retry == NULL || stream.oom || halt.oom || dlq.oom)
		goto out;
	snprintf(nkeys, sizeof(nkeys), "%zu", 2 + (part <= 0) + nretry);
	snprintf(cap, sizeof(cap), "%" PRId64, r->lag_cap);
	argv[argc++] = "EVALSHA";
	argv[argc++] = r->sample_script.sha;
	argv[argc++] = nkeys;
	argv[argc++] = stream.s;
	argv[argc++] = halt.s;
	if (part <= 0)
		argv[argc++] = dlq.s;
	for (size_t k = 0; k < nretry; k++) {
		strbuf_printf(&retry[k], "%s:retry:%zu", qp->stream, k + 1);
		if (retry[k].oom)
			goto out;
		argv[argc++] = retry[k].s;
	}
	argv[argc++] = qp->group;
	argv[argc++] = cap;
	argv[argc++] = part <= 0 ? "1" : "0";
	rc = redisAppendCommandArgv(r->c, argc, argv, NULL) == REDIS_OK ? 0 : -1;
out:
	for (size_t k = 0; retry != NULL && k < nretry; k++)
		strbuf_free(&retry[k]);
	free(retry);
	free(argv);
	strbuf_free(&stream);
	strbuf_free(&halt);
	strbuf_free(&dlq);
	return rc;
}

/* Marks queue t->q failed, keeping the first reason. */
static void
queue_fail(struct redisq *r, struct raw_sample *out, const struct queue_policy *qp,
    const struct target *t, const char *msg)
{
	struct strbuf b = { 0 };

	out[t->q].ok = false;
	if (r->qerr[t->q] != NULL)
		return;
	strbuf_printf(&b, "queue %s: stream %s", qp->name ? qp->name : qp->stream, qp->stream);
	if (t->part >= 0)
		strbuf_printf(&b, ":%d", t->part);
	strbuf_printf(&b, ": %s", msg);
	r->qerr[t->q] = strbuf_steal(&b);
}

/*
 * One round trip for targets [lo, hi): TIME, then a script call per stream.
 * On NOSCRIPT (Redis restarted, SCRIPT FLUSH) the script is reloaded and the
 * chunk resent once. 0, or -1 on a connection failure.
 */
static int
sample_chunk(struct redisq *r, const struct queue_policy *const *queues,
    const struct target *tg, int lo, int hi, struct raw_sample *out, int *trips,
    char *err, size_t errlen)
{
	int n = hi - lo;
	redisReply **rep = calloc((size_t)n + 1, sizeof(*rep));
	bool noscript = false;
	int rc = -1;
	int64_t now_ms;

	if (rep == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (int attempt = 0; attempt < 2; attempt++) {
		noscript = false;
		if (redisAppendCommand(r->c, "TIME") != REDIS_OK)
			goto oom;
		for (int i = lo; i < hi; i++)
			if (append_stream(r, queues[tg[i].q], tg[i].part) < 0)
				goto oom;
		(*trips)++;
		for (int i = 0; i <= n; i++) {
			void *p = NULL;

			if (redisGetReply(r->c, &p) != REDIS_OK || p == NULL) {
				snprintf(err, errlen, "redis %s: %s", r->address,
				    r->c->errstr[0] ? r->c->errstr : "no reply");
				r->broken = true;
				goto out;
			}
			rep[i] = p;
			if (i > 0 && is_noscript(rep[i]))
				noscript = true;
		}
		if (!noscript || attempt == 1)
			break;
		for (int i = 0; i <= n; i++) {
			freeReplyObject(rep[i]);
			rep[i] = NULL;
		}
		(*trips)++;
		if (script_load(r, &r->sample_script, err, errlen) < 0)
			goto out;
	}
	now_ms = time_ms(rep[0]);
	if (now_ms < 0) {
		snprintf(err, errlen, "redis %s: unexpected reply to TIME", r->address);
		goto out;
	}
	for (int i = 0; i < n; i++) {
		const struct target *t = &tg[lo + i];
		const struct queue_policy *qp = queues[t->q];
		char msg[512];

		if (!out[t->q].ok)
			continue;
		if (fold_stream(&out[t->q], rep[i + 1], now_ms, msg, sizeof(msg)) < 0)
			queue_fail(r, out, qp, t, msg);
	}
	rc = 0;
	goto out;
oom:
	/* Half-appended commands are in the output buffer: start afresh. */
	snprintf(err, errlen, "out of memory building the sampling pipeline");
	r->broken = true;
out:
	for (int i = 0; i <= n; i++)
		if (rep[i] != NULL)
			freeReplyObject(rep[i]);
	free(rep);
	return rc;
}

int
redisq_sample(struct redisq *r, const struct queue_policy *const *queues, int n,
    double t, struct raw_sample *out, int *round_trips, char *err, size_t errlen)
{
	struct target *tg = NULL;
	int ntg = 0, trips = 0, rc = -1;

	qerr_clear(r);
	for (int i = 0; i < n; i++) {
		memset(&out[i], 0, sizeof(out[i]));
		out[i].t = t;
	}
	if (round_trips != NULL)
		*round_trips = 0;
	if (n <= 0)
		return 0;
	r->qerr = calloc((size_t)n, sizeof(*r->qerr));
	if (r->qerr == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	r->nqerr = n;
	for (int i = 0; i < n; i++)
		ntg += queues[i]->partitions > 1 ? queues[i]->partitions : 1;
	tg = calloc((size_t)ntg, sizeof(*tg));
	if (tg == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	ntg = 0;
	for (int i = 0; i < n; i++) {
		out[i].ok = true;
		if (queues[i]->partitions > 1) {
			for (int p = 0; p < queues[i]->partitions; p++)
				tg[ntg++] = (struct target){ i, p };
		} else {
			tg[ntg++] = (struct target){ i, -1 };
		}
	}
	if (redisq_ensure(r, err, errlen) < 0)
		goto out;
	if (r->sample_script.sha[0] == '\0') {
		trips++;
		if (script_load(r, &r->sample_script, err, errlen) < 0)
			goto out;
	}
	for (int lo = 0; lo < ntg; lo += REDISQ_CHUNK) {
		int hi = lo + REDISQ_CHUNK < ntg ? lo + REDISQ_CHUNK : ntg;

		if (sample_chunk(r, queues, tg, lo, hi, out, &trips, err, errlen) < 0)
			goto out;
	}
	rc = 0;
out:
	if (rc < 0)
		for (int i = 0; i < n; i++)
			out[i].ok = false;
	if (round_trips != NULL)
		*round_trips = trips;
	free(tg);
	return rc;
}

/* EVALSHA with one reload on NOSCRIPT. The reply (caller frees) or NULL with err. */
static redisReply *
script_call(struct redisq *r, struct script *s, int argc, const char **argv, char *err,
    size_t errlen)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		redisReply *rep;

		if (s->sha[0] == '\0' && script_load(r, s, err, errlen) < 0)
			return NULL;
		argv[1] = s->sha;
		rep = redisCommandArgv(r->c, argc, argv, NULL);
		if (rep == NULL) {
			snprintf(err, errlen, "redis %s: %s", r->address, r->c->errstr);
			r->broken = true;
			return NULL;
		}
		if (!is_noscript(rep) || attempt == 1)
			return rep;
		freeReplyObject(rep);
		s->sha[0] = '\0';
	}
	return NULL;
}

static int
lease_call(struct redisq *r, const char *key, const char *owner, int64_t ttl_ms)
{
	char err[512], ttl[24];
	const char *argv[] = { "EVALSHA", NULL, "1", key, owner, ttl };
	redisReply *rep;
	int rc = -1;

	if (redisq_ensure(r, err, sizeof(err)) < 0) {
		log_debug("lease %s: %s", key, err);
		return -1;
	}
	snprintf(ttl, sizeof(ttl), "%" PRId64, ttl_ms);
	rep = script_call(r, &r->lease_script, (int)ARRAY_LEN(argv), argv, err, sizeof(err));
	if (rep == NULL) {
		log_warnx("lease %s: %s", key, err);
		return -1;
	}
	if (rep->type == REDIS_REPLY_INTEGER && (rep->integer == 0 || rep->integer == 1))
		rc = (int)rep->integer;
	else
		log_warnx("lease %s: %s", key,
		    rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
	freeReplyObject(rep);
	return rc;
}

int
redisq_lease(struct redisq *r, const char *key, const char *owner, int64_t ttl_ms)
{
	if (ttl_ms <= 0) {
		log_warnx("lease %s: ttl must be positive", key);
		return -1;
	}
	return lease_call(r, key, owner, ttl_ms);
}

int
redisq_lease_release(struct redisq *r, const char *key, const char *owner)
{
	return lease_call(r, key, owner, 0) == -1 ? -1 : 0;
}
