/*
 * rstream.c — see include/rstream.h. The worker's and the operator
 * commands' Redis stream operations on top of redisq's connection.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "log.h"
#include "redisq_int.h"
#include "rstream.h"
#include "util.h"

/* Extra socket timeout on top of BLOCK, so a blocked read is not cut short. */
#define BLOCK_MARGIN_MS 2000

/*
 * The Lua scripts, identical to contrib/lua/<name>.lua (tests/unit/
 * test_rstream.c compares them), so other languages can load the files.
 */
static const char lua_ack[] =
"-- scaleno: acknowledge entries only while this consumer holds the lease.\n"
"-- KEYS[1] stream, KEYS[2] lease key; ARGV[1] token, ARGV[2] group, ARGV[3..] ids\n"
"-- Returns the number acknowledged, or an error \"FENCED\".\n"
"if redis.call('GET', KEYS[2]) ~= ARGV[1] then\n"
"  return redis.error_reply('FENCED lease ' .. KEYS[2] .. ' is not held by this consumer')\n"
"end\n"
"return redis.call('XACK', KEYS[1], ARGV[2], unpack(ARGV, 3))\n"
;

static const char lua_halt[] =
"-- scaleno: write a partition's halt record while holding its lease.\n"
"-- KEYS[1] halt record (hash), KEYS[2] lease key; ARGV[1] token,\n"
"-- ARGV[2..] field, value, ... Returns 1, or an error \"FENCED\".\n"
"if redis.call('GET', KEYS[2]) ~= ARGV[1] then\n"
"  return redis.error_reply('FENCED lease ' .. KEYS[2] .. ' is not held by this consumer')\n"
"end\n"
"redis.call('DEL', KEYS[1])\n"
"redis.call('HSET', KEYS[1], unpack(ARGV, 2))\n"
"return 1\n"
;

static const char lua_lease[] =
"-- scaleno: partition lease with a fencing token.\n"
"-- KEYS[1] lease key, KEYS[2] epoch counter, KEYS[3] halt record\n"
"-- ARGV[1] \"acquire\" | \"renew\" | \"release\", ARGV[2] owner (acquire) or token,\n"
"-- ARGV[3] ttl in ms.\n"
"-- Returns {token or false, 1 when the partition is halted else 0}.\n"
"local cur = redis.call('GET', KEYS[1])\n"
"local halted = redis.call('EXISTS', KEYS[3])\n"
"if ARGV[1] == 'acquire' then\n"
"  if cur then return {false, halted} end\n"
"  local token = ARGV[2] .. '#' .. redis.call('INCR', KEYS[2])\n"
"  redis.call('SET', KEYS[1], token, 'PX', ARGV[3])\n"
"  return {token, halted}\n"
"end\n"
"if cur ~= ARGV[2] then return {false, halted} end\n"
"if ARGV[1] == 'renew' then\n"
"  redis.call('PEXPIRE', KEYS[1], ARGV[3])\n"
"else\n"
"  redis.call('DEL', KEYS[1])\n"
"end\n"
"return {cur, halted}\n"
;

static const char lua_members[] =
"-- scaleno: heartbeat of the consumers sharing an order-critical queue's\n"
"-- partitions, so each can take its fair share of partition leases.\n"
"-- KEYS[1] sorted set; ARGV[1] this consumer, ARGV[2] ttl ms.\n"
"-- Returns the number of consumers seen within the ttl (this one included).\n"
"local t = redis.call('TIME')\n"
"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
"redis.call('ZADD', KEYS[1], now, ARGV[1])\n"
"redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - tonumber(ARGV[2])))\n"
"redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)\n"
"return redis.call('ZCARD', KEYS[1])\n"
;

static const char lua_move[] =
"-- scaleno: move one stream entry atomically (retry stage, dead-letter queue).\n"
"-- KEYS[1] source stream, KEYS[2] destination stream, KEYS[3] lease key\n"
"-- ARGV[1] group, ARGV[2] id, ARGV[3] \"1\" to XDEL the source entry,\n"
"-- ARGV[4] fencing token (\"\" = no lease), ARGV[5..] field, value, ...\n"
"-- Returns the new id, or false when the entry was no longer pending\n"
"-- (another consumer handled it); an error \"FENCED\" when the lease is lost.\n"
"if ARGV[4] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[4] then\n"
"  return redis.error_reply('FENCED lease ' .. KEYS[3] .. ' is not held by this consumer')\n"
"end\n"
"if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then\n"
"  return false\n"
"end\n"
"local newid = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 5))\n"
"if ARGV[3] == '1' then\n"
"  redis.call('XDEL', KEYS[1], ARGV[2])\n"
"end\n"
"return newid\n"
;

static const char lua_read_due[] =
"-- scaleno: deliver the due entries of a retry stage to one consumer.\n"
"-- A stage has a fixed delay, so its entries fall due in id order: an entry\n"
"-- is due when the time in its id plus the delay has passed.\n"
"-- KEYS[1] stage stream; ARGV[1] group, ARGV[2] consumer, ARGV[3] delay ms,\n"
"-- ARGV[4] count.\n"
"-- Returns {1, XREADGROUP reply} or {0, ms until the next entry is due, or -1}.\n"
"local t = redis.call('TIME')\n"
"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
"local cutoff = now - tonumber(ARGV[3])\n"
"local last = nil\n"
"for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do\n"
"  local name, ld\n"
"  for i = 1, #g - 1, 2 do\n"
"    if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then ld = g[i + 1] end\n"
"  end\n"
"  if name == ARGV[1] then last = ld end\n"
"end\n"
"if not last then return redis.error_reply('NOGROUP no group ' .. ARGV[1] .. ' on ' .. KEYS[1]) end\n"
"local due = 0\n"
"if cutoff > 0 then\n"
"  due = #redis.call('XRANGE', KEYS[1], '(' .. last, string.format('%.0f', cutoff), 'COUNT', ARGV[4])\n"
"end\n"
"if due == 0 then\n"
"  local nxt = redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', 1)\n"
"  if #nxt == 0 then return {0, -1} end\n"
"  local ms = tonumber(string.match(nxt[1][1], '^(%d+)-'))\n"
"  return {0, math.max(0, ms + tonumber(ARGV[3]) - now)}\n"
"end\n"
"return {1, redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', due,\n"
"  'STREAMS', KEYS[1], '>')}\n"
;

static const char lua_reap[] =
"-- scaleno: remove consumers that hold nothing and have been idle too long.\n"
"-- Check and delete happen in one script, so a consumer that takes an entry\n"
"-- meanwhile is never deleted (XGROUP DELCONSUMER would orphan its entries).\n"
"-- KEYS[1] stream; ARGV[1] group, ARGV[2] this consumer (never removed),\n"
"-- ARGV[3] idle ms. Returns the number removed.\n"
"local removed = 0\n"
"for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do\n"
"  local name, pending, idle\n"
"  for i = 1, #c - 1, 2 do\n"
"    if c[i] == 'name' then name = c[i + 1]\n"
"    elseif c[i] == 'pending' then pending = c[i + 1]\n"
"    elseif c[i] == 'idle' then idle = c[i + 1] end\n"
"  end\n"
"  if name ~= ARGV[2] and pending == 0 and idle and idle > tonumber(ARGV[3]) then\n"
"    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)\n"
"    removed = removed + 1\n"
"  end\n"
"end\n"
"return removed\n"
;

static const char lua_replay[] =
"-- scaleno: put a dead-lettered entry back on its origin stream.\n"
"-- KEYS[1] dead-letter stream, KEYS[2] origin stream; ARGV[1] DLQ id,\n"
"-- ARGV[2..] the original field, value, ... Returns the new id, or false\n"
"-- when the entry is no longer in the DLQ.\n"
"if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return false end\n"
"local newid = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))\n"
"redis.call('XDEL', KEYS[1], ARGV[1])\n"
"return newid\n"
;

static const char lua_resume[] =
"-- scaleno: resume a halted partition.\n"
"-- KEYS[1] halt record, KEYS[2] partition stream, KEYS[3] dead-letter stream\n"
"-- ARGV[1] group, ARGV[2] \"retry\" | \"skip\", ARGV[3] expected halting id (skip),\n"
"-- ARGV[4..] fields of the dead-letter entry (skip).\n"
"-- retry: the halting message's delivery count is reset (so the poison\n"
"-- check starts afresh) and the halt removed; its owner retries it.\n"
"-- skip: the message goes to the DLQ and is acknowledged, the halt removed.\n"
"-- Returns {halting id, dlq id or false}, or false when not halted.\n"
"local id = redis.call('HGET', KEYS[1], 'id')\n"
"if not id then return false end\n"
"if ARGV[2] == 'retry' then\n"
"  local p = redis.call('XPENDING', KEYS[2], ARGV[1], id, id, 1)\n"
"  if p[1] then\n"
"    redis.call('XCLAIM', KEYS[2], ARGV[1], p[1][2], 0, id, 'RETRYCOUNT', 0, 'JUSTID')\n"
"  end\n"
"  redis.call('DEL', KEYS[1])\n"
"  return {id, false}\n"
"end\n"
"if id ~= ARGV[3] then\n"
"  return redis.error_reply('CHANGED the partition now halts on ' .. id)\n"
"end\n"
"local newid = redis.call('XADD', KEYS[3], '*', unpack(ARGV, 4))\n"
"redis.call('XACK', KEYS[2], ARGV[1], id)\n"
"redis.call('DEL', KEYS[1])\n"
"return {id, newid}\n"
;

enum script_id {
	S_MOVE, S_ACK, S_LEASE, S_READ_DUE, S_REAP, S_HALT, S_RESUME, S_REPLAY, S_MEMBERS, S_N
};

static struct {
	const char *name;
	const char *src;
	char sha[41];	/* "" until loaded; per process */
} scripts[S_N] = {
	[S_MOVE] = { "move", lua_move, "" },
	[S_ACK] = { "ack", lua_ack, "" },
	[S_LEASE] = { "lease", lua_lease, "" },
	[S_READ_DUE] = { "read_due", lua_read_due, "" },
	[S_REAP] = { "reap", lua_reap, "" },
	[S_HALT] = { "halt", lua_halt, "" },
	[S_RESUME] = { "resume", lua_resume, "" },
	[S_REPLAY] = { "replay", lua_replay, "" },
	[S_MEMBERS] = { "members", lua_members, "" },
};

const char *
rstream_script_source(const char *name)
{
	for (int i = 0; i < S_N; i++)
		if (strcmp(scripts[i].name, name) == 0)
			return scripts[i].src;
	return NULL;
}

/* ---- argument vectors ---- */

struct args {
	const char **v;
	size_t *len;
	size_t n, cap;
	char **owned;
	size_t nowned, capowned;
};

static int
args_push(struct args *a, const char *s, size_t len)
{
	if (a->n == a->cap) {
		size_t ncap = a->cap ? a->cap * 2 : 16;
		const char **nv = realloc(a->v, ncap * sizeof(*nv));

		if (nv == NULL)
			return -1;
		a->v = nv;
		size_t *nl = realloc(a->len, ncap * sizeof(*nl));
		if (nl == NULL)
			return -1;
		a->len = nl;
		a->cap = ncap;
	}
	a->v[a->n] = s;
	a->len[a->n] = len;
	a->n++;
	return 0;
}

static int
args_str(struct args *a, const char *s)
{
	return args_push(a, s, strlen(s));
}

/* Push a formatted string the vector keeps until args_free. */
static int
args_vfmt(struct args *a, const char *fmt, va_list ap)
{
	char *s;

	if (vasprintf(&s, fmt, ap) < 0 ||
	    util_strv_push(&a->owned, &a->nowned, &a->capowned, s) < 0)
		return -1;
	return args_str(a, s);
}

static int args_fmt(struct args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int
args_fmt(struct args *a, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = args_vfmt(a, fmt, ap);
	va_end(ap);
	return rc;
}

static void
args_free(struct args *a)
{
	for (size_t i = 0; i < a->nowned; i++)
		free(a->owned[i]);
	free(a->owned);
	free(a->v);
	free(a->len);
	memset(a, 0, sizeof(*a));
}

/* rs_fields is an args vector of pairs; these convert between the two views. */
static struct args
fields_args(const struct rs_fields *f)
{
	struct args a = { f->v, f->len, f->n * 2, f->cap, f->owned, f->nowned, f->capowned };

	return a;
}

static void
fields_store(struct rs_fields *f, struct args *a)
{
	a->n -= a->n % 2;	/* a failed second push leaves no half pair */
	f->v = a->v;
	f->len = a->len;
	f->n = a->n / 2;
	f->cap = a->cap;
	f->owned = a->owned;
	f->nowned = a->nowned;
	f->capowned = a->capowned;
}

int
rstream_fields_add(struct rs_fields *f, const char *name, size_t nlen, const char *val,
    size_t vlen)
{
	struct args a = fields_args(f);
	int rc = args_push(&a, name, nlen) == 0 && args_push(&a, val, vlen) == 0 ? 0 : -1;

	fields_store(f, &a);
	return rc;
}

int
rstream_fields_addf(struct rs_fields *f, const char *name, const char *fmt, ...)
{
	struct args a = fields_args(f);
	va_list ap;
	int rc;

	rc = args_str(&a, name);
	if (rc == 0) {
		va_start(ap, fmt);
		rc = args_vfmt(&a, fmt, ap);
		va_end(ap);
	}
	fields_store(f, &a);
	return rc;
}

void
rstream_fields_free(struct rs_fields *f)
{
	struct args a = fields_args(f);

	args_free(&a);
	memset(f, 0, sizeof(*f));
}

static int
args_fields(struct args *a, const struct rs_fields *f)
{
	for (size_t i = 0; f != NULL && i < f->n * 2; i++)
		if (args_push(a, f->v[i], f->len[i]) < 0)
			return -1;
	return 0;
}

/* ---- entries ---- */

static void
entry_free(struct rs_entry *e)
{
	for (size_t i = 0; i < e->nfields; i++) {
		free(e->names[i]);
		free(e->values[i]);
	}
	free(e->names);
	free(e->values);
	free(e->name_lens);
	free(e->value_lens);
	memset(e, 0, sizeof(*e));
}

void
rstream_batch_clear(struct rs_batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		entry_free(&b->e[i]);
	b->n = 0;
}

void
rstream_batch_free(struct rs_batch *b)
{
	rstream_batch_clear(b);
	free(b->e);
	memset(b, 0, sizeof(*b));
}

const char *
rstream_entry_field(const struct rs_entry *e, const char *name, size_t *len)
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

static char *
dup_bytes(const char *s, size_t len)
{
	char *d = malloc(len + 1);

	if (d != NULL) {
		memcpy(d, s, len);
		d[len] = '\0';
	}
	return d;
}

static bool
is_str(const redisReply *r)
{
	return r != NULL && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

static int
copy_id(char *dst, const redisReply *r)
{
	if (!is_str(r) || r->len == 0 || r->len >= RS_ID_MAX)
		return -1;
	memcpy(dst, r->str, r->len);
	dst[r->len] = '\0';
	return 0;
}

/* Fill e from a field list reply (flat name, value, ...), or as deleted when nil. */
static int
entry_fill(struct rs_entry *e, const redisReply *fl)
{
	size_t n;

	if (fl == NULL || fl->type == REDIS_REPLY_NIL) {
		e->deleted = true;
		return 0;
	}
	if (fl->type != REDIS_REPLY_ARRAY || fl->elements % 2 != 0)
		return -1;
	n = fl->elements / 2;
	e->names = calloc(n ? n : 1, sizeof(*e->names));
	e->values = calloc(n ? n : 1, sizeof(*e->values));
	e->name_lens = calloc(n ? n : 1, sizeof(*e->name_lens));
	e->value_lens = calloc(n ? n : 1, sizeof(*e->value_lens));
	if (e->names == NULL || e->values == NULL || e->name_lens == NULL || e->value_lens == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		const redisReply *k = fl->element[2 * i], *v = fl->element[2 * i + 1];

		if (!is_str(k) || !is_str(v))
			return -1;
		e->nfields = i + 1;
		e->names[i] = dup_bytes(k->str, k->len);
		e->values[i] = dup_bytes(v->str, v->len);
		if (e->names[i] == NULL || e->values[i] == NULL)
			return -1;
		e->name_lens[i] = k->len;
		e->value_lens[i] = v->len;
	}
	return 0;
}

static struct rs_entry *
batch_add(struct rs_batch *b)
{
	if (b->n == b->cap) {
		size_t ncap = b->cap ? b->cap * 2 : 16;
		struct rs_entry *ne = realloc(b->e, ncap * sizeof(*ne));

		if (ne == NULL)
			return NULL;
		b->e = ne;
		b->cap = ncap;
	}
	memset(&b->e[b->n], 0, sizeof(b->e[0]));
	return &b->e[b->n++];
}

/* Append the entries of one [id, fields] list; -1 on a malformed reply or OOM. */
static int
append_entries(struct rs_batch *out, const redisReply *list, int src, int64_t delivery)
{
	if (list->type != REDIS_REPLY_ARRAY)
		return -1;
	for (size_t i = 0; i < list->elements; i++) {
		const redisReply *it = list->element[i];
		struct rs_entry *e;

		if (it->type != REDIS_REPLY_ARRAY || it->elements != 2)
			return -1;
		if ((e = batch_add(out)) == NULL)
			return -1;
		e->src = src;
		e->delivery = delivery;
		if (copy_id(e->id, it->element[0]) < 0 || entry_fill(e, it->element[1]) < 0) {
			entry_free(e);
			out->n--;
			return -1;
		}
	}
	return 0;
}

/* ---- commands ---- */

/*
 * Send one command. The reply (caller frees; it may be an error reply) or
 * NULL with err, the connection then marked broken.
 */
static redisReply *
call(struct redisq *r, const struct args *a, char *err, size_t errlen)
{
	redisContext *c;
	redisReply *rep;

	if (redisq_ensure(r, err, errlen) < 0)
		return NULL;
	if ((c = redisq_context(r)) == NULL) {
		snprintf(err, errlen, "redis: not connected");
		return NULL;
	}
	rep = redisCommandArgv(c, (int)a->n, a->v, a->len);
	if (rep == NULL) {
		snprintf(err, errlen, "redis %s: %s", a->v[0], c->errstr[0] ? c->errstr : "no reply");
		redisq_mark_broken(r);
	}
	return rep;
}

/* call() for commands whose error replies are failures too. */
static redisReply *
call_ok(struct redisq *r, const struct args *a, char *err, size_t errlen)
{
	redisReply *rep = call(r, a, err, errlen);

	if (rep != NULL && rep->type == REDIS_REPLY_ERROR) {
		snprintf(err, errlen, "redis %s: %s", a->v[0], rep->str);
		freeReplyObject(rep);
		return NULL;
	}
	return rep;
}

static int
oom(char *err, size_t errlen)
{
	snprintf(err, errlen, "out of memory");
	return -1;
}

static int
bad_reply(const char *what, char *err, size_t errlen)
{
	snprintf(err, errlen, "redis %s: unexpected reply", what);
	return -1;
}

/*
 * Send the command built in a and free a. bad: building it ran out of
 * memory, so nothing is sent. ok: error replies are failures too (call_ok).
 * The reply (caller frees) or NULL with err.
 */
static redisReply *
send_args(struct redisq *r, struct args *a, bool bad, bool ok, char *err, size_t errlen)
{
	redisReply *rep = NULL;

	if (bad)
		oom(err, errlen);
	else
		rep = ok ? call_ok(r, a, err, errlen) : call(r, a, err, errlen);
	args_free(a);
	return rep;
}

/*
 * Run script id: EVALSHA, loading it first and once more after NOSCRIPT
 * (a restarted or flushed Redis). keys/args as in EVAL. Error replies are
 * returned to the caller (some carry meaning, like FENCED).
 */
static redisReply *
script(struct redisq *r, enum script_id id, const char *const *keys, int nkeys,
    const struct args *argv, const struct rs_fields *fields, char *err, size_t errlen)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		struct args a = { 0 };
		redisReply *rep;

		if (scripts[id].sha[0] == '\0') {
			bool bad = args_str(&a, "SCRIPT") < 0 || args_str(&a, "LOAD") < 0 ||
			    args_str(&a, scripts[id].src) < 0;

			rep = send_args(r, &a, bad, true, err, errlen);
			if (rep == NULL)
				return NULL;
			if (!is_str(rep) || rep->len != 40) {
				freeReplyObject(rep);
				bad_reply("SCRIPT LOAD", err, errlen);
				return NULL;
			}
			memcpy(scripts[id].sha, rep->str, 40);
			scripts[id].sha[40] = '\0';
			freeReplyObject(rep);
		}
		int ok = args_str(&a, "EVALSHA") == 0 && args_str(&a, scripts[id].sha) == 0 &&
		    args_fmt(&a, "%d", nkeys) == 0;
		for (int i = 0; ok && i < nkeys; i++)
			ok = args_str(&a, keys[i]) == 0;
		for (size_t i = 0; ok && argv != NULL && i < argv->n; i++)
			ok = args_push(&a, argv->v[i], argv->len[i]) == 0;
		if (ok)
			ok = args_fields(&a, fields) == 0;
		rep = send_args(r, &a, !ok, false, err, errlen);
		if (rep == NULL)
			return NULL;
		if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0 &&
		    attempt == 0) {
			freeReplyObject(rep);
			scripts[id].sha[0] = '\0';
			continue;
		}
		return rep;
	}
	snprintf(err, errlen, "redis: script %s could not be loaded", scripts[id].name);
	return NULL;
}

/* script() with its arguments built in a, which is freed; bad as in send_args(). */
static redisReply *
send_script(struct redisq *r, enum script_id id, const char *const *keys, int nkeys,
    struct args *a, bool bad, const struct rs_fields *fields, char *err, size_t errlen)
{
	redisReply *rep = NULL;

	if (bad)
		oom(err, errlen);
	else
		rep = script(r, id, keys, nkeys, a, fields, err, errlen);
	args_free(a);
	return rep;
}

/* An error reply of a script: -2 for FENCED, else -1 with err. Frees rep. */
static int
script_error(redisReply *rep, const char *what, char *err, size_t errlen)
{
	int rc = strncmp(rep->str, "FENCED", 6) == 0 ? -2 : -1;

	snprintf(err, errlen, "%s: %s", what, rep->str);
	freeReplyObject(rep);
	return rc;
}

int
rstream_group_create(struct redisq *r, const char *stream, const char *group, char *err,
    size_t errlen)
{
	struct args a = { 0 };
	redisReply *rep;
	int rc = -1;

	bool bad = args_str(&a, "XGROUP") < 0 || args_str(&a, "CREATE") < 0 ||
	    args_str(&a, stream) < 0 || args_str(&a, group) < 0 || args_str(&a, "0") < 0 ||
	    args_str(&a, "MKSTREAM") < 0;
	rep = send_args(r, &a, bad, false, err, errlen);
	if (rep == NULL)
		return -1;
	if (rep->type != REDIS_REPLY_ERROR || strncmp(rep->str, "BUSYGROUP", 9) == 0)
		rc = 0;
	else
		snprintf(err, errlen, "redis XGROUP CREATE %s %s: %s", stream, group, rep->str);
	freeReplyObject(rep);
	return rc;
}

/* Set the socket receive timeout; returns the previous one in *old. */
static int
swap_timeout(redisContext *c, int64_t ms, struct timeval *old)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	socklen_t sl = sizeof(*old);

	if (old != NULL && getsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, old, &sl) < 0)
		return -1;
	return setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

/* Fill the delivery counts of out->e[from..] (all from stream src) from XPENDING. */
static int
fill_deliveries(struct redisq *r, const char *stream, const char *group, const char *consumer,
    struct rs_batch *out, size_t from, char *err, size_t errlen)
{
	struct args a = { 0 };
	redisReply *rep;
	size_t j = from;

	if (from >= out->n)
		return 0;
	bool bad = args_str(&a, "XPENDING") < 0 || args_str(&a, stream) < 0 ||
	    args_str(&a, group) < 0 || args_str(&a, out->e[from].id) < 0 ||
	    args_str(&a, out->e[out->n - 1].id) < 0 || args_fmt(&a, "%zu", out->n - from) < 0 ||
	    args_str(&a, consumer) < 0;
	rep = send_args(r, &a, bad, true, err, errlen);
	if (rep == NULL)
		return -1;
	if (rep->type != REDIS_REPLY_ARRAY) {
		freeReplyObject(rep);
		return bad_reply("XPENDING", err, errlen);
	}
	/* Both lists are in id order: one merge pass. */
	for (size_t i = 0; i < rep->elements; i++) {
		const redisReply *p = rep->element[i];

		if (p->type != REDIS_REPLY_ARRAY || p->elements < 4 || !is_str(p->element[0]) ||
		    p->element[3]->type != REDIS_REPLY_INTEGER)
			continue;
		while (j < out->n && strcmp(out->e[j].id, p->element[0]->str) != 0)
			j++;
		if (j == out->n)
			break;
		out->e[j].delivery = p->element[3]->integer;
	}
	freeReplyObject(rep);
	return 0;
}

int
rstream_read(struct redisq *r, const char *group, const char *consumer,
    const char *const *streams, const char *const *ids, int nstreams, int count,
    int64_t block_ms, struct rs_batch *out, char *err, size_t errlen)
{
	struct args a = { 0 };
	redisReply *rep = NULL;
	redisContext *c;
	struct timeval old;
	size_t first = out->n;
	int ok, rc = -1, swapped = 0;

	ok = args_str(&a, "XREADGROUP") == 0 && args_str(&a, "GROUP") == 0 &&
	    args_str(&a, group) == 0 && args_str(&a, consumer) == 0 &&
	    args_str(&a, "COUNT") == 0 && args_fmt(&a, "%d", count) == 0;
	if (ok && block_ms >= 0)
		ok = args_str(&a, "BLOCK") == 0 && args_fmt(&a, "%" PRId64, block_ms) == 0;
	ok = ok && args_str(&a, "STREAMS") == 0;
	for (int i = 0; ok && i < nstreams; i++)
		ok = args_str(&a, streams[i]) == 0;
	for (int i = 0; ok && i < nstreams; i++)
		ok = args_str(&a, ids[i]) == 0;
	if (!ok) {
		oom(err, errlen);
		goto out;
	}
	if (redisq_ensure(r, err, errlen) < 0 || (c = redisq_context(r)) == NULL)
		goto out;
	if (block_ms >= 0) {
		if (swap_timeout(c, block_ms + BLOCK_MARGIN_MS, &old) < 0) {
			snprintf(err, errlen, "redis: cannot set the socket timeout: %s", strerror(errno));
			goto out;
		}
		swapped = 1;
	}
	rep = call_ok(r, &a, err, errlen);
	if (swapped && (c = redisq_context(r)) != NULL)
		(void)setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &old, sizeof(old));
	if (rep == NULL)
		goto out;
	if (rep->type == REDIS_REPLY_NIL) {
		rc = 0;
		goto out;
	}
	if (rep->type != REDIS_REPLY_ARRAY) {
		bad_reply("XREADGROUP", err, errlen);
		goto out;
	}
	for (size_t i = 0; i < rep->elements; i++) {
		const redisReply *s = rep->element[i];
		int src = -1;

		if (s->type != REDIS_REPLY_ARRAY || s->elements != 2 || !is_str(s->element[0])) {
			bad_reply("XREADGROUP", err, errlen);
			goto out;
		}
		for (int k = 0; k < nstreams; k++)
			if (strcmp(streams[k], s->element[0]->str) == 0)
				src = k;
		if (src < 0) {
			bad_reply("XREADGROUP", err, errlen);
			goto out;
		}
		size_t before = out->n;
		if (append_entries(out, s->element[1], src, 1) < 0) {
			bad_reply("XREADGROUP", err, errlen);
			goto out;
		}
		if (strcmp(ids[src], ">") != 0 &&
		    fill_deliveries(r, streams[src], group, consumer, out, before, err, errlen) < 0)
			goto out;
	}
	rc = (int)(out->n - first);
out:
	if (rc < 0) {
		while (out->n > first)
			entry_free(&out->e[--out->n]);
	}
	if (rep != NULL)
		freeReplyObject(rep);
	args_free(&a);
	return rc;
}

int
rstream_read_due(struct redisq *r, const char *stream, const char *group,
    const char *consumer, int64_t delay_ms, int count, int src, struct rs_batch *out,
    int64_t *next_due_ms, char *err, size_t errlen)
{
	struct args a = { 0 };
	const char *keys[] = { stream };
	redisReply *rep;
	size_t first = out->n;
	int rc = -1;

	*next_due_ms = -1;
	bool bad = args_str(&a, group) < 0 || args_str(&a, consumer) < 0 ||
	    args_fmt(&a, "%" PRId64, delay_ms) < 0 || args_fmt(&a, "%d", count) < 0;
	rep = send_script(r, S_READ_DUE, keys, 1, &a, bad, NULL, err, errlen);
	if (rep == NULL)
		return -1;
	if (rep->type == REDIS_REPLY_ERROR)
		return script_error(rep, stream, err, errlen);
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
	    rep->element[0]->type != REDIS_REPLY_INTEGER) {
		freeReplyObject(rep);
		return bad_reply("read_due", err, errlen);
	}
	if (rep->element[0]->integer == 0) {
		if (rep->element[1]->type == REDIS_REPLY_INTEGER)
			*next_due_ms = rep->element[1]->integer;
		rc = 0;
	} else {
		const redisReply *x = rep->element[1];

		/* {1, [[stream, [[id, fields], ...]]]} */
		if (x->type == REDIS_REPLY_ARRAY && x->elements == 1 &&
		    x->element[0]->type == REDIS_REPLY_ARRAY && x->element[0]->elements == 2 &&
		    append_entries(out, x->element[0]->element[1], src, 1) == 0)
			rc = (int)(out->n - first);
		else {
			while (out->n > first)
				entry_free(&out->e[--out->n]);
			bad_reply("read_due", err, errlen);
		}
	}
	freeReplyObject(rep);
	return rc;
}

int
rstream_ack(struct redisq *r, const char *stream, const char *group,
    const char *const *ids, size_t n, const char *lease_key, const char *token, char *err,
    size_t errlen)
{
	struct args a = { 0 };
	redisReply *rep;
	int ok, rc = -1;

	if (n == 0)
		return 0;
	if (token != NULL) {
		const char *keys[] = { stream, lease_key };

		ok = args_str(&a, token) == 0 && args_str(&a, group) == 0;
		for (size_t i = 0; ok && i < n; i++)
			ok = args_str(&a, ids[i]) == 0;
		rep = send_script(r, S_ACK, keys, 2, &a, !ok, NULL, err, errlen);
	} else {
		ok = args_str(&a, "XACK") == 0 && args_str(&a, stream) == 0 &&
		    args_str(&a, group) == 0;
		for (size_t i = 0; ok && i < n; i++)
			ok = args_str(&a, ids[i]) == 0;
		rep = send_args(r, &a, !ok, false, err, errlen);
	}
	if (rep == NULL)
		return -1;
	if (rep->type == REDIS_REPLY_ERROR)
		return script_error(rep, "XACK", err, errlen);
	if (rep->type == REDIS_REPLY_INTEGER)
		rc = (int)rep->integer;
	else
		bad_reply("XACK", err, errlen);
	freeReplyObject(rep);
	return rc;
}

int
rstream_autoclaim(struct redisq *r, const char *stream, const char *group,
    const char *consumer, int64_t min_idle_ms, char *cursor, int count, int64_t *claimed,
    int64_t *deleted, char *err, size_t errlen)
{
	struct args a = { 0 };
	redisReply *rep;
	int rc = -1;

	*claimed = *deleted = 0;
	bool bad = args_str(&a, "XAUTOCLAIM") < 0 || args_str(&a, stream) < 0 ||
	    args_str(&a, group) < 0 || args_str(&a, consumer) < 0 ||
	    args_fmt(&a, "%" PRId64, min_idle_ms) < 0 ||
	    args_str(&a, cursor[0] ? cursor : "0-0") < 0 || args_str(&a, "COUNT") < 0 ||
	    args_fmt(&a, "%d", count) < 0 || args_str(&a, "JUSTID") < 0;
	rep = send_args(r, &a, bad, true, err, errlen);
	if (rep == NULL)
		return -1;
	/* 7.0+: [cursor, [ids], [deleted ids]]; 6.2: no third element. */
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 ||
	    rep->element[1]->type != REDIS_REPLY_ARRAY || copy_id(cursor, rep->element[0]) < 0) {
		freeReplyObject(rep);
		return bad_reply("XAUTOCLAIM", err, errlen);
	}
	*claimed = (int64_t)rep->element[1]->elements;
	if (rep->elements >= 3 && rep->element[2]->type == REDIS_REPLY_ARRAY)
		*deleted = (int64_t)rep->element[2]->elements;
	rc = 0;
	freeReplyObject(rep);
	return rc;
}

/*
 * A script reply that is a new stream id (1, id copied to new_id when not
 * NULL) or nil (0); error replies give -2 (FENCED) or -1. Frees rep.
 */
static int
id_reply(redisReply *rep, const char *what, char *new_id, char *err, size_t errlen)
{
	int rc = -1;

	if (rep == NULL)
		return -1;
	if (rep->type == REDIS_REPLY_ERROR)
		return script_error(rep, what, err, errlen);
	if (rep->type == REDIS_REPLY_NIL) {
		rc = 0;
	} else if (is_str(rep)) {
		if (new_id != NULL && copy_id(new_id, rep) < 0)
			new_id[0] = '\0';
		rc = 1;
	} else {
		bad_reply(what, err, errlen);
	}
	freeReplyObject(rep);
	return rc;
}

/*
 * Redis' Lua cannot unpack more than about 8000 values into one call: an
 * entry with more fields is moved by plain commands, adding before
 * acknowledging (group NULL: no ack) and deleting, so a failure in between
 * duplicates it but never loses it.
 */
#define LUA_MAX_PAIRS 3900

static int
move_unscripted(struct redisq *r, const char *src, const char *dst, const char *group,
    const char *id, bool del, const struct rs_fields *fields, char *new_id, char *err,
    size_t errlen)
{
	struct args a = { 0 };
	redisReply *rep;
	int rc;

	bool bad = args_str(&a, "XADD") < 0 || args_str(&a, dst) < 0 || args_str(&a, "*") < 0 ||
	    args_fields(&a, fields) < 0;
	rep = send_args(r, &a, bad, false, err, errlen);
	if ((rc = id_reply(rep, "XADD", new_id, err, errlen)) != 1)
		return rc < 0 ? rc : bad_reply("XADD", err, errlen);
	if (group != NULL && rstream_ack(r, src, group, &id, 1, NULL, NULL, err, errlen) < 0)
		return -1;
	if (del && rstream_delete(r, src, &id, 1, err, errlen) < 0)
		return -1;
	return 1;
}

int
rstream_move(struct redisq *r, const char *src, const char *dst, const char *group,
    const char *id, bool del, const char *lease_key, const char *token,
    const struct rs_fields *fields, char *new_id, char *err, size_t errlen)
{
	const char *keys[] = { src, dst, lease_key != NULL ? lease_key : src };
	struct args a = { 0 };
	redisReply *rep;

	if (fields == NULL || fields->n == 0) {
		snprintf(err, errlen, "move %s: no fields", id);
		return -1;
	}
	if (fields->n > LUA_MAX_PAIRS && token == NULL)
		return move_unscripted(r, src, dst, group, id, del, fields, new_id, err, errlen);
	bool bad = args_str(&a, group) < 0 || args_str(&a, id) < 0 ||
	    args_str(&a, del ? "1" : "0") < 0 || args_str(&a, token != NULL ? token : "") < 0;
	rep = send_script(r, S_MOVE, keys, 3, &a, bad, fields, err, errlen);
	return id_reply(rep, "move", new_id, err, errlen);
}

/* One lease operation; see contrib/lua/lease.lua. */
static int
lease_op(struct redisq *r, const char *op, const char *lease_key, const char *epoch_key,
    const char *halt_key, const char *who, int64_t ttl_ms, char *token, size_t toklen,
    bool *halted, char *err, size_t errlen)
{
	const char *keys[] = { lease_key, epoch_key, halt_key };
	struct args a = { 0 };
	redisReply *rep;
	int rc = -1;

	bool bad = args_str(&a, op) < 0 || args_str(&a, who) < 0 ||
	    args_fmt(&a, "%" PRId64, ttl_ms) < 0;
	rep = send_script(r, S_LEASE, keys, 3, &a, bad, NULL, err, errlen);
	if (rep == NULL)
		return -1;
	if (rep->type == REDIS_REPLY_ERROR)
		return script_error(rep, lease_key, err, errlen);
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
	    rep->element[1]->type != REDIS_REPLY_INTEGER) {
		freeReplyObject(rep);
		return bad_reply("lease", err, errlen);
	}
	if (halted != NULL)
		*halted = rep->element[1]->integer != 0;
	rc = 0;
	if (is_str(rep->element[0])) {
		rc = 1;
		if (token != NULL)
			util_strlcpy(token, rep->element[0]->str, toklen);
	}
	freeReplyObject(rep);
	return rc;
}

int
rstream_lease_acquire(struct redisq *r, const char *lease_key, const char *epoch_key,
    const char *halt_key, const char *owner, int64_t ttl_ms, char *token, size_t toklen,
    bool *halted, char *err, size_t errlen)
{
	return lease_op(r, "acquire", lease_key, epoch_key, halt_key, owner, ttl_ms, token, toklen,
	    halted, err, errlen);
}

int
rstream_lease_renew(struct redisq *r, const char *lease_key, const char *halt_key,
    const char *token, int64_t ttl_ms, bool *halted, char *err, size_t errlen)
{
	return lease_op(r, "renew", lease_key, lease_key, halt_key, token, ttl_ms, NULL, 0, halted,
	    err, errlen);
}

int
rstream_lease_release(struct redisq *r, const char *lease_key, const char *token,
    char *err, size_t errlen)
{
	return lease_op(r, "release", lease_key, lease_key, lease_key, token, 1, NULL, 0, NULL,
	    err, errlen);
}

int
rstream_halt_set(struct redisq *r, const char *halt_key, const char *lease_key,
    const char *token, const struct rs_fields *fields, char *err, size_t errlen)
{
	const char *keys[] = { halt_key, lease_key };
	struct args a = { 0 };
	redisReply *rep;

	bool bad = args_str(&a, token) < 0;
	rep = send_script(r, S_HALT, keys, 2, &a, bad, fields, err, errlen);
	if (rep == NULL)
		return -1;
	if (rep->type == REDIS_REPLY_ERROR)
		return script_error(rep, "halt", err, errlen);
	freeReplyObject(rep);
	return 1;
}

int
rstream_halt_get(struct redisq *r, const char *halt_key, struct rs_entry *out, char *err,
    size_t errlen)
{
	struct args a = { 0 };
	redisReply *rep;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	bool bad = args_str(&a, "HGETALL") < 0 || args_str(&a, halt_key) < 0;
	rep = send_args(r, &a, bad, true, err, errlen);
	if (rep == NULL)
		return -1;
	if (rep->type != REDIS_REPLY_ARRAY) {
		bad_reply("HGETALL", err, errlen);
	} else if (rep->elements == 0) {
		rc = 0;
	} else if (entry_fill(out, rep) == 0) {
		size_t len;
		const char *id = rstream_entry_field(out, "id", &len);

		if (id != NULL && len < RS_ID_MAX)
			memcpy(out->id, id, len + 1);
		rc = 1;
	} else {
		entry_free(out);
		bad_reply("HGETALL", err, errlen);
	}
	freeReplyObject(rep);
	return rc;
}

void
rstream_entry_free(struct rs_entry *e)
{
	entry_free(e);
}

int
rstream_resume(struct redisq *r, const char *halt_key, const char *stream,
    const char *group, const char *dlq, bool skip, const char *expected_id,
    const struct rs_fields *fields, char *halted_id, char *dlq_id, char *err, size_t errlen)
{
	const char *keys[] = { halt_key, stream, dlq };
	struct args a = { 0 };
	redisReply *rep;
	int rc = -1;

	bool bad = args_str(&a, group) < 0 || args_str(&a, skip ? "skip" : "retry") < 0 ||
	    args_str(&a, expected_id != NULL ? expected_id : "") < 0;
	rep = send_script(r, S_RESUME, keys, 3, &a, bad, skip ? fields : NULL, err, errlen);
	if (rep == NULL)
		return -1;
	if (rep->type == REDIS_REPLY_ERROR)
		return script_error(rep, "resume", err, errlen);
	if (rep->type == REDIS_REPLY_NIL) {
		rc = 0;
	} else if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2) {
		if (halted_id != NULL && copy_id(halted_id, rep->element[0]) < 0)
			halted_id[0] = '\0';
		if (dlq_id != NULL && copy_id(dlq_id, rep->element[1]) < 0)
			dlq_id[0] = '\0';
		rc = 1;
	} else {
		bad_reply("resume", err, errlen);
	}
	freeReplyObject(rep);
	return rc;
}

/* A script or command whose reply is one integer; returns it or -1. */
static int
int_reply(redisReply *rep, const char *what, int64_t *out, char *err, size_t errlen)
{
	int rc = -1;

	if (rep == NULL)
		return -1;
	if (rep->type == REDIS_REPLY_INTEGER) {
		*out = rep->integer;
		rc = 0;
	} else if (rep->type == REDIS_REPLY_ERROR) {
		snprintf(err, errlen, "%s: %s", what, rep->str);
	} else {
		bad_reply(what, err, errlen);
	}
	freeReplyObject(rep);
	return rc;
}

int
rstream_reap_consumers(struct redisq *r, const char *stream, const char *group,
    const char *self, int64_t idle_ms, char *err, size_t errlen)
{
	const char *keys[] = { stream };
	struct args a = { 0 };
	int64_t n = 0;
	int rc;

	bool bad = args_str(&a, group) < 0 || args_str(&a, self) < 0 ||
	    args_fmt(&a, "%" PRId64, idle_ms) < 0;
	rc = int_reply(send_script(r, S_REAP, keys, 1, &a, bad, NULL, err, errlen), "reap", &n,
	    err, errlen);
	return rc < 0 ? -1 : (int)n;
}

int
rstream_len(struct redisq *r, const char *key, int64_t *len, char *err, size_t errlen)
{
	struct args a = { 0 };
	int rc;

	bool bad = args_str(&a, "XLEN") < 0 || args_str(&a, key) < 0;
	rc = int_reply(send_args(r, &a, bad, false, err, errlen), "XLEN", len, err, errlen);
	return rc;
}

int
rstream_range(struct redisq *r, const char *key, const char *start, const char *end,
    int count, bool rev, struct rs_batch *out, char *err, size_t errlen)
{
	struct args a = { 0 };
	redisReply *rep;
	size_t first = out->n;
	int rc = -1;

	bool bad = args_str(&a, rev ? "XREVRANGE" : "XRANGE") < 0 || args_str(&a, key) < 0 ||
	    args_str(&a, rev ? end : start) < 0 || args_str(&a, rev ? start : end) < 0 ||
	    args_str(&a, "COUNT") < 0 || args_fmt(&a, "%d", count) < 0;
	rep = send_args(r, &a, bad, true, err, errlen);
	if (rep == NULL)
		return -1;
	if (append_entries(out, rep, 0, 0) == 0)
		rc = (int)(out->n - first);
	else
		bad_reply("XRANGE", err, errlen);
	freeReplyObject(rep);
	return rc;
}

int
rstream_delete(struct redisq *r, const char *key, const char *const *ids, size_t n,
    char *err, size_t errlen)
{
	struct args a = { 0 };
	int64_t v = 0;
	int ok, rc;

	if (n == 0)
		return 0;
	ok = args_str(&a, "XDEL") == 0 && args_str(&a, key) == 0;
	for (size_t i = 0; ok && i < n; i++)
		ok = args_str(&a, ids[i]) == 0;
	rc = int_reply(send_args(r, &a, !ok, false, err, errlen), "XDEL", &v, err, errlen);
	return rc < 0 ? -1 : (int)v;
}

int
rstream_replay(struct redisq *r, const char *dlq, const char *origin, const char *id,
    const struct rs_fields *fields, char *new_id, char *err, size_t errlen)
{
	const char *keys[] = { dlq, origin };
	struct args a = { 0 };
	redisReply *rep;

	if (fields == NULL || fields->n == 0) {
		snprintf(err, errlen, "replay %s: the entry has no original fields", id);
		return -1;
	}
	if (fields->n > LUA_MAX_PAIRS)
		return move_unscripted(r, dlq, origin, NULL, id, true, fields, new_id, err, errlen);
	bool bad = args_str(&a, id) < 0;
	rep = send_script(r, S_REPLAY, keys, 2, &a, bad, fields, err, errlen);
	return id_reply(rep, "replay", new_id, err, errlen);
}

int
rstream_time_ms(struct redisq *r, int64_t *ms, char *err, size_t errlen)
{
	struct args a = { 0 };
	redisReply *rep;
	int rc = -1;

	bool bad = args_str(&a, "TIME") < 0;
	rep = send_args(r, &a, bad, true, err, errlen);
	if (rep == NULL)
		return -1;
	if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 && is_str(rep->element[0]) &&
	    is_str(rep->element[1])) {
		*ms = strtoll(rep->element[0]->str, NULL, 10) * 1000 +
		    strtoll(rep->element[1]->str, NULL, 10) / 1000;
		rc = 0;
	} else {
		bad_reply("TIME", err, errlen);
	}
	freeReplyObject(rep);
	return rc;
}

int64_t
rstream_id_ms(const char *id)
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
rstream_is_failure_field(const char *name, size_t len)
{
	for (size_t i = 0; i < ARRAY_LEN(failure_names); i++)
		if (strlen(failure_names[i]) == len && memcmp(failure_names[i], name, len) == 0)
			return true;
	return false;
}

/* A field of e as a NUL-terminated copy in out's owned strings, or def. */
static int
keep_field(const struct rs_entry *e, const char *name, const char *def, struct rs_fields *out)
{
	size_t len;
	const char *v = rstream_entry_field(e, name, &len);

	if (v == NULL)
		return rstream_fields_addf(out, name, "%s", def);
	return rstream_fields_add(out, name, strlen(name), v, len);
}

int
rstream_failure_fields(const struct rs_entry *e, const char *origin, int attempts,
    const char *error, int64_t now_ms, int from_stage, int to_stage, struct rs_fields *out)
{
	const char *hist, *prev;
	char where[24];
	size_t hlen = 0, plen = 0;
	long long before = 0;
	char now[24];
	int ok = 1;

	for (size_t i = 0; ok && i < e->nfields; i++)
		if (!rstream_is_failure_field(e->names[i], e->name_lens[i]))
			ok = rstream_fields_add(out, e->names[i], e->name_lens[i], e->values[i],
			    e->value_lens[i]) == 0;
	if ((prev = rstream_entry_field(e, "x-attempts", &plen)) != NULL && plen < 20) {
		char tmp[24];

		memcpy(tmp, prev, plen);
		tmp[plen] = '\0';
		before = strtoll(tmp, NULL, 10);
	}
	snprintf(now, sizeof(now), "%" PRId64, now_ms);
	ok = ok && keep_field(e, "x-origin-stream", origin, out) == 0 &&
	    keep_field(e, "x-origin-id", e->id, out) == 0 &&
	    rstream_fields_addf(out, "x-attempts", "%lld", before + attempts) == 0 &&
	    keep_field(e, "x-first-failed-ms", now, out) == 0 &&
	    rstream_fields_addf(out, "x-last-failed-ms", "%s", now) == 0 &&
	    rstream_fields_addf(out, "x-error", "%s", error) == 0;
	hist = rstream_entry_field(e, "x-error-history", &hlen);
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
	ok = ok && rstream_fields_addf(out, "x-error-history", "%.*s%s%s %s x%d: %.512s",
	    hist != NULL ? (int)hlen : 0, hist != NULL ? hist : "", hist != NULL && hlen ? "\n" : "",
	    now, where, attempts, error) == 0;
	if (ok && to_stage > 0)
		ok = rstream_fields_addf(out, "x-stage", "%d", to_stage) == 0;
	return ok ? 0 : -1;
}

int
rstream_members(struct redisq *r, const char *members_key, const char *self,
    int64_t ttl_ms, char *err, size_t errlen)
{
	const char *keys[] = { members_key };
	struct args a = { 0 };
	int64_t n = 0;
	int rc;

	bool bad = args_str(&a, self) < 0 || args_fmt(&a, "%" PRId64, ttl_ms) < 0;
	rc = int_reply(send_script(r, S_MEMBERS, keys, 1, &a, bad, NULL, err, errlen), "members",
	    &n, err, errlen);
	return rc < 0 ? -1 : (int)n;
}
