/*
 * redis_sentinel.c — the Redis master found through the Sentinels
 * (scaleno.conf(5) "redis"): each Sentinel is asked in turn, the master it
 * names is used once ROLE confirms it, and about once a second the Sentinel
 * that named it is asked again, so a failover drops the connection. The
 * handle and the connections are src/redis.c's (contracts: src/redis_int.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_int.h"
#include "util.h"

#define SENTINEL_WATCH_MS 1000

int
redis_sentinel_init(struct redis *r, const struct redis_opts *o)
{
	if (o->nsentinels == 0)
		return 0;
	r->sentinels = calloc(o->nsentinels, sizeof(*r->sentinels));
	r->master_name = util_strdup(o->master_name != NULL ? o->master_name : "");
	r->sentinel_password = util_strdup(o->sentinel_password != NULL ?
	    o->sentinel_password : "");
	if (r->sentinels == NULL || r->master_name == NULL || r->sentinel_password == NULL)
		return -1;
	for (; r->nsentinels < o->nsentinels; r->nsentinels++)
		if ((r->sentinels[r->nsentinels] =
		    util_strdup(o->sentinels[r->nsentinels])) == NULL)
			return -1;
	snprintf(r->shown, sizeof(r->shown), "sentinel %s", r->master_name);
	return 0;
}

void
redis_sentinel_free(struct redis *r)
{
	if (r->sentinel_password != NULL)
		memset(r->sentinel_password, 0, strlen(r->sentinel_password));
	for (size_t i = 0; i < r->nsentinels; i++)
		free(r->sentinels[i]);
	free(r->sentinels);
	free(r->master_name);
	free(r->sentinel_password);
}

/*
 * Ask Sentinel s for the master's address (SENTINEL get-master-addr-by-name)
 * into addr. 0 or -1 with err.
 */
static int
sentinel_ask(struct redis *r, const char *s, char *addr, size_t addrlen, char *err,
    size_t errlen)
{
	const char *argv[] = { "SENTINEL", "get-master-addr-by-name", r->master_name };
	struct redis_reply *rep;
	char what[300];
	int rc = -1;

	snprintf(what, sizeof(what), "sentinel %s", s);
	if ((rep = redis_ask_at(r, s, "", r->sentinel_password, what, 3, argv, err,
	    errlen)) == NULL)
		return -1;
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
	if ((rep = redis_ask(c, what, 1, argv, err, errlen)) == NULL)
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

/* A stale Sentinel may still name a demoted master: ROLE must confirm it. */
redisContext *
redis_sentinel_connect(struct redis *r, char *err, size_t errlen)
{
	struct strbuf why = { 0 };
	redisContext *c = NULL;

	for (size_t k = 0; k < r->nsentinels && c == NULL; k++) {
		size_t i = (r->sentinel_next + k) % r->nsentinels;
		char addr[280], e[512];

		if (sentinel_ask(r, r->sentinels[i], addr, sizeof(addr), e, sizeof(e)) == 0 &&
		    (c = redis_connect_to(r, addr, r->username, r->password, r->database, e,
		    sizeof(e))) != NULL && verify_master(c, addr, r->sentinels[i], e, sizeof(e)) < 0) {
			redisFree(c);
			c = NULL;
		}
		if (c != NULL) {
			r->sentinel_next = i;
			snprintf(r->master, sizeof(r->master), "%s", addr);
			snprintf(r->shown, sizeof(r->shown), "sentinel %s (%s)", r->master_name, addr);
			r->next_watch_ms = util_now_ms() + SENTINEL_WATCH_MS;
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

/* Once the connection is dropped, the next one asks again (and checks ROLE). */
void
redis_sentinel_watch(struct redis *r, int64_t now)
{
	char addr[280], e[512];

	if (r->nsentinels == 0 || r->inflight > 0 || now < r->next_watch_ms)
		return;
	r->next_watch_ms = now + SENTINEL_WATCH_MS;
	if (sentinel_ask(r, r->sentinels[r->sentinel_next], addr, sizeof(addr), e, sizeof(e)) < 0 ||
	    strcmp(addr, r->master) == 0)
		return;
	snprintf(r->errstr, sizeof(r->errstr),
	    "redis %.200s: sentinel %.100s now names %.100s as the master", redis_address(r),
	    r->sentinels[r->sentinel_next], addr);
	r->broken = true;
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

void
redis_sentinel_reply(struct redis *r, const struct redis_reply *rep)
{
	if (r->nsentinels == 0 || !failover_reply(rep))
		return;
	/* The next command asks the Sentinels again (scaleno.conf(5) "redis"). */
	snprintf(r->errstr, sizeof(r->errstr), "redis %s: %s", redis_address(r), rep->str);
	r->broken = true;
}
