/*
 * publish.c — the producer side (scaleno(8) "publish"): the C API of
 * include/scaleno/publish.h, the whole of libscaleno.a together with
 * redis.c, redis_keys.c and util.c. One Lua script (contrib/lua/publish.lua)
 * looks up (or assigns) the key's partition and adds the message, so the
 * sticky map and the streams change together. Nothing here may use the
 * configuration or the log: a producer links this with hiredis alone.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis.h"
#include "redis_keys.h"
#include "scaleno/publish.h"
#include "util.h"

struct scaleno_publisher {
	struct redis *r;
};

const char *
scaleno_publish_script(void)
{
	return redis_script_source("publish");
}

struct scaleno_publisher *
scaleno_publish_open(const char *address, const struct scaleno_publish_options *opt, char *err,
    size_t errlen)
{
	static const struct scaleno_publish_options defaults;
	struct scaleno_publisher *p;
	struct redis_opts o;

	if (opt == NULL)
		opt = &defaults;
	if (opt->nsentinels > 0 && (opt->sentinels == NULL || opt->master_name == NULL ||
	    opt->master_name[0] == '\0')) {
		snprintf(err, errlen, "scaleno_publish_open: Sentinels need their list and a master name");
		return NULL;
	}
	for (size_t i = 0; i < opt->nsentinels; i++)
		if (opt->sentinels[i] == NULL || opt->sentinels[i][0] == '\0') {
			snprintf(err, errlen, "scaleno_publish_open: Sentinel %zu has no address", i + 1);
			return NULL;
		}
	for (size_t i = 0; i < opt->ncluster; i++)
		if (opt->cluster == NULL || opt->cluster[i] == NULL || opt->cluster[i][0] == '\0') {
			snprintf(err, errlen, "scaleno_publish_open: cluster node %zu has no address",
			    i + 1);
			return NULL;
		}
	if (opt->nsentinels > 0 && opt->ncluster > 0) {
		snprintf(err, errlen, "scaleno_publish_open: Sentinels or a cluster, not both");
		return NULL;
	}
	if (opt->nsentinels == 0 && opt->ncluster == 0 && (address == NULL || address[0] == '\0')) {
		snprintf(err, errlen, "scaleno_publish_open: no Redis address");
		return NULL;
	}
	if (opt->database < 0 || opt->connect_timeout_ms < 0 || opt->command_timeout_ms < 0) {
		snprintf(err, errlen, "scaleno_publish_open: negative database or timeout");
		return NULL;
	}
	o = (struct redis_opts){ .address = address, .username = opt->username,
		.password = opt->password, .database = opt->database,
		.connect_timeout_ms = opt->connect_timeout_ms,
		.command_timeout_ms = opt->command_timeout_ms, .sentinels = opt->sentinels,
		.nsentinels = opt->nsentinels, .master_name = opt->master_name,
		.sentinel_password = opt->sentinel_password, .cluster = opt->cluster,
		.ncluster = opt->ncluster };
	if ((p = calloc(1, sizeof(*p))) == NULL || (p->r = redis_new(&o)) == NULL) {
		free(p);
		snprintf(err, errlen, "scaleno_publish_open: out of memory");
		return NULL;
	}
	return p;
}

void
scaleno_publish_close(struct scaleno_publisher *p)
{
	if (p == NULL)
		return;
	redis_free(p->r);
	free(p);
}

/* What the script would refuse, refused before any I/O. 0 or -1 with err. */
static int
publish_check(const struct scaleno_queue *q, const char *const *fields, size_t nfields,
    char *err, size_t errlen)
{
	if (q == NULL || q->stream == NULL || q->stream[0] == '\0')
		snprintf(err, errlen, "publish: no stream");
	else if (q->group == NULL || q->group[0] == '\0')
		snprintf(err, errlen, "publish: %s: no consumer group", q->stream);
	else if (q->partitions < 1)
		snprintf(err, errlen, "publish: %s: partitions must be at least 1, not %d", q->stream,
		    q->partitions);
	else if (q->key_ttl_ms < 0)
		snprintf(err, errlen, "publish: %s: negative key TTL", q->stream);
	else if (nfields == 0 || fields == NULL)
		snprintf(err, errlen, "publish: %s: a message needs at least one field", q->stream);
	else if (nfields % 2 != 0)
		snprintf(err, errlen, "publish: %s: fields come in name/value pairs (%zu strings)",
		    q->stream, nfields);
	else if (nfields / 2 > SCALENO_PUBLISH_MAX_PAIRS)
		snprintf(err, errlen, "publish: %s: %zu fields, at most %d", q->stream, nfields / 2,
		    SCALENO_PUBLISH_MAX_PAIRS);
	else
		return 0;
	return -1;
}

int
scaleno_publish(struct scaleno_publisher *p, const struct scaleno_queue *q, const char *key,
    size_t key_len, const char *const *fields, const size_t *lens, size_t nfields,
    int *partition, char *id, size_t idlen, char *err, size_t errlen)
{
	struct redis_args a = REDIS_ARGS_INIT, f = REDIS_ARGS_INIT;
	const char **keys = NULL;
	size_t *keylens = NULL;
	char *mapkey = NULL, *rrkey = NULL, **parts = NULL;
	int nparts = 0;
	struct redis_reply *rep = NULL;
	int rc = -1;

	if (publish_check(q, fields, nfields, err, errlen) < 0)
		return -1;
	if (p == NULL) {
		snprintf(err, errlen, "publish: no publisher");
		return -1;
	}
	if (key == NULL)
		key_len = 0;
	/* Every key the script may touch, the partition streams too (Redis Cluster). */
	nparts = q->partitions > 1 ? q->partitions : 0;
	keys = calloc(3 + (size_t)nparts, sizeof(*keys));
	keylens = calloc(3 + (size_t)nparts, sizeof(*keylens));
	parts = calloc((size_t)nparts + 1, sizeof(*parts));
	if (keys == NULL || keylens == NULL || parts == NULL) {
		snprintf(err, errlen, "publish: out of memory");
		goto out;
	}
	mapkey = redis_key_map(q->stream, key, key_len, &keylens[1]);
	rrkey = redis_key(q->stream, 1, RK_RR, 0);
	for (int i = 0; i < nparts; i++) {
		if ((parts[i] = redis_key(q->stream, nparts, RK_PART, i)) == NULL)
			break;
		keys[3 + i] = parts[i];
		keylens[3 + i] = strlen(parts[i]);
	}
	if (mapkey == NULL || rrkey == NULL || (nparts > 0 && parts[nparts - 1] == NULL)) {
		snprintf(err, errlen, "publish: out of memory");
		goto out;
	}
	keys[0] = q->stream;
	keylens[0] = strlen(q->stream);
	keys[1] = mapkey;
	keys[2] = rrkey;
	keylens[2] = strlen(rrkey);
	redis_args_str(&a, q->group);
	redis_args_fmt(&a, "%d", q->partitions);
	redis_args_fmt(&a, "%" PRId64,
	    q->key_ttl_ms > 0 ? q->key_ttl_ms : (int64_t)SCALENO_PUBLISH_TTL_MS);
	redis_args_push(&a, key_len > 0 ? key : "", key_len);
	for (size_t i = 0; i < nfields; i++)
		redis_args_push(&f, fields[i] != NULL ? fields[i] : "", fields[i] == NULL ? 0 :
		    lens != NULL ? lens[i] : strlen(fields[i]));
	if (a.oom || f.oom) {
		snprintf(err, errlen, "publish: out of memory");
		goto out;
	}
	if ((rep = redis_eval_bin(p->r, "publish", keys, keylens, 3 + nparts, &a, &f, err,
	    errlen)) == NULL)
		goto out;
	if (rep->type == RR_ERROR) {
		snprintf(err, errlen, "redis: publish to %s: %s", q->stream, rep->str);
		goto out;
	}
	if (rep->type != RR_ARRAY || rep->elements != 2 || rep->element[0]->type != RR_INTEGER ||
	    rep->element[1]->type != RR_STRING || rep->element[1]->len >= SCALENO_PUBLISH_ID_MAX) {
		snprintf(err, errlen, "redis: publish to %s: unexpected reply", q->stream);
		goto out;
	}
	if (partition != NULL)
		*partition = (int)rep->element[0]->integer;
	if (id != NULL && idlen > 0)
		util_strlcpy(id, rep->element[1]->str, idlen);
	rc = 0;
out:
	redis_reply_free(rep);
	redis_args_free(&a);
	redis_args_free(&f);
	free(mapkey);
	free(rrkey);
	for (int i = 0; parts != NULL && i < nparts; i++)
		free(parts[i]);
	free(parts);
	free(keys);
	free(keylens);
	return rc;
}

int
scaleno_publish_wait(struct scaleno_publisher *p, int numreplicas, int64_t timeout_ms,
    int *acked, char *err, size_t errlen)
{
	struct redis_args a = REDIS_ARGS_INIT;
	int64_t n, old_ms;
	int rc;

	if (acked != NULL)
		*acked = 0;
	if (p == NULL || numreplicas < 0 || timeout_ms < 0) {
		snprintf(err, errlen, "publish wait: %s", p == NULL ? "no publisher" :
		    "negative replica count or timeout");
		return -1;
	}
	if (redis_ensure(p->r, err, errlen) < 0)
		return -1;
	/* WAIT blocks up to timeout_ms (0: no limit): the socket must wait longer. */
	if (redis_swap_timeout(p->r, timeout_ms > 0 ? timeout_ms + 2000 : 0, &old_ms) < 0) {
		snprintf(err, errlen, "publish wait: cannot set the socket timeout");
		return -1;
	}
	redis_args_str(&a, "WAIT");
	redis_args_fmt(&a, "%d", numreplicas);
	redis_args_fmt(&a, "%" PRId64, timeout_ms);
	rc = redis_int_reply(redis_run(p->r, &a, false, err, errlen), "publish wait", &n, err,
	    errlen);
	(void)redis_swap_timeout(p->r, old_ms, NULL);
	if (rc < 0)
		return -1;
	if (acked != NULL)
		*acked = n > INT32_MAX ? INT32_MAX : (int)n;
	if (n >= numreplicas)
		return 0;
	snprintf(err, errlen, "only %" PRId64 " of %d replicas acknowledged within %" PRId64 "ms",
	    n, numreplicas, timeout_ms);
	return 1;
}
