/*
 * redis_cluster.c — Redis Cluster routing (scaleno.conf(5) "redis"): the
 * slot map (CLUSTER SLOTS, asked of the known nodes, then of the seeds),
 * a connection per node, each command sent to the node serving the slot of
 * its first key, replies read back in order across nodes, MOVED, ASK and
 * TRYAGAIN followed. The handle and the connections are src/redis.c's
 * (contracts: src/redis_int.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_int.h"
#include "util.h"

#define REDIRECTS_MAX 8		/* MOVED, ASK and TRYAGAIN followed for one command */
#define TRYAGAIN_MS 25

/* A node of the cluster. */
struct redis_node {
	char addr[280];
	redisContext *c;
};

/* A command sent to a node: where, and its bytes for a redirect. */
struct redis_sent {
	int node;
	char *cmd;
	size_t len;
};

int
redis_cluster_init(struct redis *r, const struct redis_opts *o)
{
	if (o->ncluster == 0)
		return 0;
	r->cluster = calloc(o->ncluster, sizeof(*r->cluster));
	r->slots = malloc(REDIS_CLUSTER_SLOTS * sizeof(*r->slots));
	if (r->cluster == NULL || r->slots == NULL)
		return -1;
	for (; r->ncluster < o->ncluster; r->ncluster++)
		if ((r->cluster[r->ncluster] = util_strdup(o->cluster[r->ncluster])) == NULL)
			return -1;
	memset(r->slots, 0xff, REDIS_CLUSTER_SLOTS * sizeof(*r->slots));
	r->map_stale = true;
	snprintf(r->shown, sizeof(r->shown), "cluster %s", r->cluster[0]);
	return 0;
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
redis_cluster_free(struct redis *r)
{
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
}

void
redis_cluster_reset(struct redis *r)
{
	for (size_t i = 0; i < r->nnodes; i++)
		if (r->nodes[i].c != NULL) {
			redisFree(r->nodes[i].c);
			r->nodes[i].c = NULL;
		}
	cluster_drop(r);
}

int
redis_cluster_swap_timeout(struct redis *r, int64_t ms, int64_t *old_ms)
{
	/* Node connections made later get it in cluster_node. */
	if (old_ms != NULL)
		*old_ms = r->rcv_ms > 0 ? r->rcv_ms : r->command_timeout_ms;
	r->rcv_ms = ms == r->command_timeout_ms ? 0 : ms;
	for (size_t i = 0; i < r->nnodes; i++)
		if (r->nodes[i].c != NULL)
			(void)redisSetTimeout(r->nodes[i].c, redis_ms_to_tv(ms));
	return 0;
}

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
	struct redis_node *nn;

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
	struct redis_node *n = &r->nodes[i];

	if (n->c != NULL && n->c->err == 0)
		return n->c;
	if (n->c != NULL) {
		redisFree(n->c);
		n->c = NULL;
	}
	if ((n->c = redis_connect_to(r, n->addr, r->username, r->password, 0, err, errlen)) == NULL)
		return NULL;
	if (r->rcv_ms > 0)
		(void)redisSetTimeout(n->c, redis_ms_to_tv(r->rcv_ms));
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
		if (redis_parse_tcp(asked, ahost, sizeof(ahost), &port, addr, addrlen) < 0)
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
	struct redis_reply *rep;
	char what[300], naddr[280];
	int rc = -1;

	snprintf(what, sizeof(what), "redis %s CLUSTER SLOTS", addr);
	if ((rep = redis_ask_at(r, addr, r->username, r->password, what, 2, argv, err,
	    errlen)) == NULL)
		return -1;
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
	return rc;
}

int
redis_cluster_ensure(struct redis *r, char *err, size_t errlen)
{
	int64_t now = util_now_ms();
	struct strbuf why = { 0 };
	size_t total;

	if (!r->map_stale || r->fn > 0)
		return 0;
	if (redis_backoff_wait(r, now, err, errlen) < 0)
		return -1;
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
	redis_backoff_fail(r, now);
	snprintf(err, errlen, "%s", r->errstr);
	return -1;
}

/* A node connection failed: drop it, reload the map before the next pipeline. */
static void
node_failed(struct redis *r, int i, const char *what, char *err, size_t errlen)
{
	struct redis_node *n = &r->nodes[i];

	snprintf(err, errlen, "redis %s (node %s): %s", redis_address(r), n->addr,
	    n->c != NULL && n->c->errstr[0] ? n->c->errstr : what);
	snprintf(r->errstr, sizeof(r->errstr), "%s", err);
	r->err = 1;
	/* The replies other nodes still owe belong to the same broken pipeline. */
	redis_cluster_reset(r);
	r->map_stale = true;
}

int
redis_cluster_send(struct redis *r, const struct redis_args *a, char *err, size_t errlen)
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
		struct redis_sent *nf = malloc(ncap * sizeof(*nf));

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
	r->fifo[(r->fhead + r->fn++) % r->fcap] = (struct redis_sent){ node, cmd, (size_t)len };
	r->last_node = node;
	return 0;
oom:
	snprintf(err, errlen, "redis %s: out of memory", a->v[0]);
	redis_cluster_reset(r);
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
redirect(struct redis *r, const char *addr, bool is_ask, const struct redis_sent *s, char *err,
    size_t errlen)
{
	int i = node_index(r, addr);
	bool own = i >= 0 && !node_busy(r, i);
	redisContext *c = own ? cluster_node(r, i, err, errlen) :
	    redis_connect_to(r, addr, r->username, r->password, 0, err, errlen);
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

int
redis_cluster_read(struct redis *r, struct redis_reply **rep, char *err, size_t errlen)
{
	struct redis_sent s;
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
