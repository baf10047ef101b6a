/*
 * redis_sample.c — see include/redis_sample.h. The agent's pipelined
 * sampler and its HA lease.
 *
 * Each stream is read by one Lua script (contrib/lua/sample.lua: XINFO
 * STREAM/GROUPS, XPENDING summary, XRANGE) so that a queue costs one
 * command, the null-lag fallback costs no extra round trip, and all
 * figures of a stream come from one instant.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "redis_keys.h"
#include "redis_msg.h"
#include "redis_sample.h"
#include "sample.h"
#include "util.h"

#define SCRIPT_FIELDS 16

/* Server time in ms from a TIME reply; -1 when it is malformed. */
static int64_t
time_ms(const struct redis_reply *rep)
{
	long long s, us;
	char *e1, *e2;

	if (rep == NULL || rep->type != RR_ARRAY || rep->elements != 2
	    || rep->element[0]->type != RR_STRING
	    || rep->element[1]->type != RR_STRING)
		return -1;
	s = strtoll(rep->element[0]->str, &e1, 10);
	us = strtoll(rep->element[1]->str, &e2, 10);
	if (*e1 != '\0' || *e2 != '\0' || s < 0 || us < 0)
		return -1;
	return s * 1000 + us / 1000;
}

static bool
is_int(const struct redis_reply *e)
{
	return e->type == RR_INTEGER;
}

static bool
is_int_or_nil(const struct redis_reply *e)
{
	return e->type == RR_INTEGER || e->type == RR_NIL;
}

static bool
is_str_or_nil(const struct redis_reply *e)
{
	return e->type == RR_STRING || e->type == RR_NIL;
}

/* The script's reply has the shape it promises (guards against absurd replies). */
static bool
reply_shape_ok(const struct redis_reply *rep)
{
	struct redis_reply *const *e;

	if (rep->type != RR_ARRAY || rep->elements != SCRIPT_FIELDS)
		return false;
	e = rep->element;
	return is_int(e[0]) && is_int(e[1]) && is_int(e[2]) && is_int(e[3]) && is_int_or_nil(e[4])
	    && is_int(e[5]) && is_int_or_nil(e[6]) && is_str_or_nil(e[7]) && is_str_or_nil(e[8])
	    && is_str_or_nil(e[9]) && is_str_or_nil(e[10]) && is_int_or_nil(e[11])
	    && is_int(e[12]) && is_int(e[13]) && is_int(e[14]) && is_int(e[15]);
}

/* Adds one stream's script reply into the queue's sample. -1 with err when unusable. */
static int
fold_stream(struct raw_sample *s, const struct redis_reply *rep, int64_t now_ms, char *err, size_t errlen)
{
	struct redis_reply *const *e;
	int64_t undelivered, oldest = -1;

	if (rep->type == RR_ERROR) {
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
	/* No group yet: the script counts every entry as undelivered (scale from zero). */
	if (e[1]->integer == 0)
		s->group_missing = true;
	if (e[4]->type == RR_INTEGER) {
		undelivered = e[4]->integer;
	} else if (e[11]->type == RR_INTEGER) {
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
	s->entries_read += e[6]->type == RR_INTEGER ? e[6]->integer
	    : e[3]->integer - undelivered;
	for (int k = 9; k <= 10; k++) {
		int64_t ms = e[k]->type == RR_STRING ? redis_id_ms(e[k]->str) : -1;

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

/* One sampling call: its settings and what it found. */
struct sampling {
	struct redis *r;
	int64_t lag_cap;
	char **qerr;		/* the caller's, or NULL */
};

/* Appends the script call for one stream. -1 with err. */
static int
append_stream(struct sampling *sm, const struct queue_policy *qp, int part, char *err,
    size_t errlen)
{
	struct redis_args a = REDIS_ARGS_INIT;
	/* The DLQ and retry stages are per queue (scaleno-worker(8)): count them once. */
	size_t nretry = part <= 0 ? qp->worker.nretry_delays : 0;
	int np = part < 0 ? 1 : qp->partitions, p = part < 0 ? 0 : part;
	char **keys = calloc(3 + nretry, sizeof(*keys));
	int nkeys = 0, rc = -1;

	if (keys == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	keys[nkeys++] = redis_key(qp->stream, np, RK_PART, p);
	keys[nkeys++] = redis_key(qp->stream, np, RK_HALT, p);
	if (part <= 0)
		keys[nkeys++] = redis_key(qp->stream, np, RK_DLQ, 0);
	for (size_t k = 0; k < nretry; k++)
		keys[nkeys++] = redis_key(qp->stream, np, RK_RETRY, (int)k + 1);
	for (int k = 0; k < nkeys; k++)
		if (keys[k] == NULL)
			a.oom = true;
	redis_args_str(&a, qp->group);
	redis_args_fmt(&a, "%" PRId64, sm->lag_cap);
	redis_args_str(&a, part <= 0 ? "1" : "0");
	if (a.oom)
		snprintf(err, errlen, "out of memory building the sampling pipeline");
	else
		rc = redis_append_eval(sm->r, "sample", (const char *const *)keys, nkeys, &a, err,
		    errlen);
	redis_args_free(&a);
	for (int k = 0; k < nkeys; k++)
		free(keys[k]);
	free(keys);
	return rc;
}

/* Marks queue t->q failed, keeping the first reason. */
static void
queue_fail(struct sampling *sm, struct raw_sample *out, const struct queue_policy *qp,
    const struct target *t, const char *msg)
{
	struct strbuf b = { 0 };

	out[t->q].ok = false;
	if (sm->qerr == NULL || sm->qerr[t->q] != NULL)
		return;
	strbuf_printf(&b, "queue %s: stream %s", qp->name ? qp->name : qp->stream, qp->stream);
	if (t->part >= 0)
		strbuf_printf(&b, ":%d", t->part);
	strbuf_printf(&b, ": %s", msg);
	sm->qerr[t->q] = strbuf_steal(&b);
}

/*
 * One round trip for targets [lo, hi): TIME, then a script call per stream.
 * On NOSCRIPT (Redis restarted, SCRIPT FLUSH) the script is reloaded and the
 * chunk resent once. 0, or -1 on a connection failure.
 */
static int
sample_chunk(struct sampling *sm, const struct queue_policy *const *queues,
    const struct target *tg, int lo, int hi, struct raw_sample *out, int *trips,
    char *err, size_t errlen)
{
	struct redis_args time = REDIS_ARGS_INIT;
	int n = hi - lo;
	struct redis_reply **rep = calloc((size_t)n + 1, sizeof(*rep));
	bool noscript = false;
	int rc = -1;
	int64_t now_ms;

	redis_args_str(&time, "TIME");
	if (rep == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (int attempt = 0; attempt < 2; attempt++) {
		noscript = false;
		if (redis_append(sm->r, &time, err, errlen) < 0)
			goto broken;
		for (int i = lo; i < hi; i++)
			if (append_stream(sm, queues[tg[i].q], tg[i].part, err, errlen) < 0)
				goto broken;
		(*trips)++;
		for (int i = 0; i <= n; i++) {
			if (redis_read_reply(sm->r, &rep[i], err, errlen) < 0)
				goto out;
			if (i > 0 && redis_reply_is_noscript(rep[i]))
				noscript = true;
		}
		if (!noscript || attempt == 1)
			break;
		for (int i = 0; i <= n; i++) {
			redis_reply_free(rep[i]);
			rep[i] = NULL;
		}
		redis_script_forget(sm->r, "sample");
		(*trips)++;
		if (redis_script_load(sm->r, "sample", err, errlen) < 0)
			goto out;
	}
	now_ms = time_ms(rep[0]);
	if (now_ms < 0) {
		snprintf(err, errlen, "redis %s: unexpected reply to TIME", redis_address(sm->r));
		goto out;
	}
	for (int i = 0; i < n; i++) {
		const struct target *t = &tg[lo + i];
		const struct queue_policy *qp = queues[t->q];
		char msg[512];

		if (!out[t->q].ok)
			continue;
		if (fold_stream(&out[t->q], rep[i + 1], now_ms, msg, sizeof(msg)) < 0)
			queue_fail(sm, out, qp, t, msg);
	}
	rc = 0;
	goto out;
broken:
	/* Half-appended commands are in the output buffer: start afresh. */
	redis_mark_broken(sm->r);
out:
	for (int i = 0; rep != NULL && i <= n; i++)
		redis_reply_free(rep[i]);
	free(rep);
	redis_args_free(&time);
	return rc;
}

void
redis_sample_errors_free(char **qerr, int n)
{
	for (int i = 0; qerr != NULL && i < n; i++) {
		free(qerr[i]);
		qerr[i] = NULL;
	}
}

int
redis_sample(struct redis *r, const struct queue_policy *const *queues, int n, double t,
    struct raw_sample *out, int *round_trips, char *err, size_t errlen)
{
	return redis_sample_ex(r, NULL, queues, n, t, out, round_trips, err, errlen);
}

int
redis_sample_ex(struct redis *r, const struct redis_sample_opts *opts,
    const struct queue_policy *const *queues, int n, double t, struct raw_sample *out,
    int *round_trips, char *err, size_t errlen)
{
	struct sampling sm = { r, REDIS_LAG_CAP, NULL };
	struct target *tg = NULL;
	int ntg = 0, trips = 0, rc = -1, loaded;

	if (opts != NULL) {
		if (opts->lag_cap > 0)
			sm.lag_cap = opts->lag_cap;
		sm.qerr = opts->qerr;
	}
	for (int i = 0; i < n; i++) {
		memset(&out[i], 0, sizeof(out[i]));
		out[i].t = t;
		if (sm.qerr != NULL)
			sm.qerr[i] = NULL;
	}
	if (round_trips != NULL)
		*round_trips = 0;
	if (n <= 0)
		return 0;
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
	if (redis_ensure(r, err, errlen) < 0)
		goto out;
	if ((loaded = redis_script_load(r, "sample", err, errlen)) < 0)
		goto out;
	trips += loaded;
	for (int lo = 0; lo < ntg; lo += REDIS_SAMPLE_CHUNK) {
		int hi = lo + REDIS_SAMPLE_CHUNK < ntg ? lo + REDIS_SAMPLE_CHUNK : ntg;

		if (sample_chunk(&sm, queues, tg, lo, hi, out, &trips, err, errlen) < 0)
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

/* ---- several servers ---- */

struct redis_servers {
	int n;
	const struct redis_conf **conf;	/* conf[i]: server i's settings (the first user's) */
	struct redis **r;
};

static bool
str_eq(const char *a, const char *b)
{
	return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

static bool
list_eq(char *const *a, size_t na, char *const *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (!str_eq(a[i], b[i]))
			return false;
	return true;
}

/* Do a and b name the same server, as the same user, in the same database? */
static bool
same_server(const struct redis_conf *a, const struct redis_conf *b)
{
	return str_eq(a->address, b->address) && list_eq(a->sentinels, a->nsentinels,
	    b->sentinels, b->nsentinels) && str_eq(a->master_name, b->master_name) &&
	    list_eq(a->cluster, a->ncluster, b->cluster, b->ncluster) &&
	    str_eq(a->username, b->username) && str_eq(a->password, b->password) &&
	    a->database == b->database;
}

static int
server_index(const struct redis_servers *s, const struct redis_conf *c)
{
	for (int i = 0; i < s->n; i++)
		if (same_server(s->conf[i], c))
			return i;
	return -1;
}

struct redis_servers *
redis_servers_new(const struct config *cfg)
{
	struct redis_servers *s = calloc(1, sizeof(*s));

	if (s == NULL || (s->conf = calloc(cfg->nqueues + 1, sizeof(*s->conf))) == NULL ||
	    (s->r = calloc(cfg->nqueues + 1, sizeof(*s->r))) == NULL)
		goto oom;
	for (size_t i = 0; i <= cfg->nqueues; i++) {
		const struct redis_conf *c = i == 0 ? &cfg->redis : &cfg->queues[i - 1].redis;

		if (server_index(s, c) >= 0)
			continue;
		s->conf[s->n] = c;
		if ((s->r[s->n] = redis_new_conf(c)) == NULL)
			goto oom;
		s->n++;
	}
	return s;
oom:
	redis_servers_free(s);
	return NULL;
}

void
redis_servers_free(struct redis_servers *s)
{
	if (s == NULL)
		return;
	for (int i = 0; s->r != NULL && i < s->n; i++)
		redis_free(s->r[i]);
	free(s->r);
	free(s->conf);
	free(s);
}

int
redis_servers_count(const struct redis_servers *s)
{
	return s->n;
}

struct redis *
redis_servers_at(struct redis_servers *s, int i)
{
	return i >= 0 && i < s->n ? s->r[i] : NULL;
}

struct redis *
redis_servers_for(struct redis_servers *s, const struct queue_policy *q)
{
	int i = server_index(s, &q->redis);

	return s->r[i >= 0 ? i : 0];
}

int
redis_sample_servers(struct redis_servers *s, const struct queue_policy *const *queues, int n,
    double t, struct raw_sample *out, int *round_trips, char *err, size_t errlen)
{
	const struct queue_policy **qv = calloc((size_t)n + 1, sizeof(*qv));
	struct raw_sample *raw = calloc((size_t)n + 1, sizeof(*raw));
	int *at = calloc((size_t)n + 1, sizeof(*at)), failed = 0, trips = 0;
	struct strbuf why = { 0 };

	if (round_trips != NULL)
		*round_trips = 0;
	for (int i = 0; i < n; i++) {
		memset(&out[i], 0, sizeof(out[i]));
		out[i].t = t;
	}
	if (qv == NULL || raw == NULL || at == NULL) {
		snprintf(err, errlen, "out of memory");
		free(qv);
		free(raw);
		free(at);
		return s->n;
	}
	for (int k = 0; k < s->n; k++) {
		char e[512];
		int m = 0, rt = 0;

		for (int i = 0; i < n; i++)
			if (server_index(s, &queues[i]->redis) == k ||
			    (k == 0 && server_index(s, &queues[i]->redis) < 0)) {
				at[m] = i;
				qv[m++] = queues[i];
			}
		if (m == 0)
			continue;
		if (redis_sample(s->r[k], qv, m, t, raw, &rt, e, sizeof(e)) < 0) {
			failed++;
			strbuf_printf(&why, "%s%s%s%s%s", why.s != NULL ? "; " : "",
			    strstr(e, redis_address(s->r[k])) != NULL ? "" : "redis ",
			    strstr(e, redis_address(s->r[k])) != NULL ? "" : redis_address(s->r[k]),
			    strstr(e, redis_address(s->r[k])) != NULL ? "" : ": ", e);
		}
		trips += rt;
		for (int j = 0; j < m; j++)
			out[at[j]] = raw[j];
	}
	if (round_trips != NULL)
		*round_trips = trips;
	if (failed > 0)
		snprintf(err, errlen, "%s", why.s != NULL ? why.s : "out of memory");
	strbuf_free(&why);
	free(qv);
	free(raw);
	free(at);
	return failed;
}

/* ---- the agent's lease ---- */

static int
lease_call(struct redis *r, const char *key, const char *owner, int64_t ttl_ms)
{
	struct redis_args a = REDIS_ARGS_INIT;
	struct redis_reply *rep;
	char err[512];
	int rc = -1;

	if (redis_ensure(r, err, sizeof(err)) < 0) {
		log_debug("lease %s: %s", key, err);
		return -1;
	}
	redis_args_str(&a, owner);
	redis_args_fmt(&a, "%" PRId64, ttl_ms);
	rep = redis_run_script(r, "agent_lease", &key, 1, &a, NULL, err, sizeof(err));
	if (rep == NULL) {
		log_warnx("lease %s: %s", key, err);
		return -1;
	}
	if (rep->type == RR_INTEGER && (rep->integer == 0 || rep->integer == 1))
		rc = (int)rep->integer;
	else
		log_warnx("lease %s: %s", key, rep->type == RR_ERROR ? rep->str : "unexpected reply");
	redis_reply_free(rep);
	return rc;
}

int
redis_agent_lease(struct redis *r, const char *key, const char *owner, int64_t ttl_ms)
{
	if (ttl_ms <= 0) {
		log_warnx("lease %s: ttl must be positive", key);
		return -1;
	}
	return lease_call(r, key, owner, ttl_ms);
}

int
redis_agent_lease_release(struct redis *r, const char *key, const char *owner)
{
	return lease_call(r, key, owner, 0) == -1 ? -1 : 0;
}
