/*
 * config_validate.c — what spans several keys: the values derived from
 * others (a policy's mode, stream, group, interval), the rules between
 * keys, and the secrets read from files (scaleno.conf(5)).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libconfig.h>

#include "config.h"
#include "config_int.h"
#include "log.h"
#include "util.h"

#define MAX_SECRET_BYTES 4096

static char *
read_secret_key(struct loader *ld, const config_setting_t *root, const char *key, const char *file)
{
	char err[512], *v;
	struct stat st;

	if (file == NULL || *file == '\0')
		return NULL;
	if ((v = util_read_secret(file, MAX_SECRET_BYTES, err, sizeof(err))) == NULL) {
		SERR(ld, config__where(root, key, NULL), "%s: %s", key, err);
		return NULL;
	}
	if (*v == '\0') {
		SERR(ld, config__where(root, key, NULL), "%s: %s is empty", key, file);
		free(v);
		return NULL;
	}
	if (stat(file, &st) == 0 && (st.st_mode & S_IROTH) != 0) {
		const config_setting_t *at = config__where(root, key, NULL);

		log_warnx("%s:%d: %s: %s is readable by every user (mode %04o); chmod o-r it",
		    config__setting_file(ld, at), config__setting_line(at), key, file,
		    (unsigned)(st.st_mode & 07777));
	}
	return v;
}

/* A copy of a NULL-terminated list; *n its length. NULL for NULL (or on OOM, *oom set). */
static char **
argv_dup(char *const *v, size_t nv, size_t *n, bool *oom)
{
	char **out;

	*n = 0;
	if (v == NULL)
		return NULL;
	if ((out = calloc(nv + 1, sizeof(*out))) == NULL) {
		*oom = true;
		return NULL;
	}
	for (; *n < nv; (*n)++)
		if ((out[*n] = strdup(v[*n])) == NULL)
			*oom = true;
	return out;
}

static char *
str_dup(const char *v, bool *oom)
{
	char *out;

	if (v == NULL)
		return NULL;
	if ((out = strdup(v)) == NULL)
		*oom = true;
	return out;
}

/* What a policy's redis block leaves out, from the main file's (scaleno.conf(5) "redis"). */
static void
inherit_redis(struct loader *ld, struct redis_conf *rc, const struct redis_conf *base, bool *oom)
{
	if (!config__was_set(ld, "redis.address", CFG_POLICY) &&
	    !config__was_set(ld, "redis.sentinels", CFG_POLICY) &&
	    !config__was_set(ld, "redis.cluster", CFG_POLICY)) {
		rc->address = str_dup(base->address, oom);
		rc->sentinels = argv_dup(base->sentinels, base->nsentinels, &rc->nsentinels, oom);
		rc->cluster = argv_dup(base->cluster, base->ncluster, &rc->ncluster, oom);
	}
	if (!config__was_set(ld, "redis.master_name", CFG_POLICY))
		rc->master_name = str_dup(base->master_name, oom);
	if (!config__was_set(ld, "redis.sentinel_password_file", CFG_POLICY)) {
		rc->sentinel_password_file = str_dup(base->sentinel_password_file, oom);
		rc->sentinel_password = str_dup(base->sentinel_password, oom);
	}
	if (!config__was_set(ld, "redis.username", CFG_POLICY))
		rc->username = str_dup(base->username, oom);
	if (!config__was_set(ld, "redis.password_file", CFG_POLICY)) {
		rc->password_file = str_dup(base->password_file, oom);
		rc->password = str_dup(base->password, oom);
	}
	if (!config__was_set(ld, "redis.database", CFG_POLICY))
		rc->database = base->database;
	if (!config__was_set(ld, "redis.connect_timeout", CFG_POLICY))
		rc->connect_timeout_ms = base->connect_timeout_ms;
	if (!config__was_set(ld, "redis.command_timeout", CFG_POLICY))
		rc->command_timeout_ms = base->command_timeout_ms;
}

void
config__check_redis(struct loader *ld, const config_setting_t *root, enum cfg_scope scope,
    struct redis_conf *rc, const struct redis_conf *base)
{
	static const char *const servers[] = { "redis.address", "redis.sentinels", "redis.cluster" };
	const config_setting_t *sec = config__where(root, "redis", root);
	const char *first = NULL;
	char shown[300];
	bool oom = false, rules;
	int given = 0;

	for (size_t i = 0; i < ARRAY_LEN(servers); i++) {
		if (!config__was_set(ld, servers[i], scope))
			continue;
		if (given++ > 0)
			SERR(ld, config__where(root, servers[i], sec), "%s and %s are both given: give exactly "
			    "one of redis.address, redis.sentinels and redis.cluster", first, servers[i]);
		else
			first = servers[i];
	}
	/* Once per mistake: a policy without a block of its own has the main file's, checked. */
	rules = given <= 1 && (base == NULL || config__where(root, "redis", NULL) != NULL) &&
	    config__all_ok(ld, scope, "redis.sentinels", "redis.cluster", (char *)NULL);
	if (config__was_set(ld, "redis.sentinel_password_file", scope))
		rc->sentinel_password = read_secret_key(ld, root, "redis.sentinel_password_file",
		    rc->sentinel_password_file);
	if (config__was_set(ld, "redis.password_file", scope) || scope == CFG_MAIN)
		rc->password = read_secret_key(ld, root, "redis.password_file", rc->password_file);
	if (base != NULL)
		inherit_redis(ld, rc, base, &oom);
	if (rules && rc->nsentinels > 0 && (rc->master_name == NULL || rc->master_name[0] == '\0'))
		SERR(ld, config__where(root, "redis.sentinels", sec),
		    "redis.master_name is required with redis.sentinels (the name the Sentinels monitor)");
	if (rules && rc->nsentinels == 0) {
		if (config__was_set(ld, "redis.master_name", scope) && rc->master_name[0] != '\0')
			SERR(ld, config__where(root, "redis.master_name", sec),
			    "redis.master_name applies only with redis.sentinels");
		if (config__was_set(ld, "redis.sentinel_password_file", scope) &&
		    rc->sentinel_password_file[0] != '\0')
			SERR(ld, config__where(root, "redis.sentinel_password_file", sec),
			    "redis.sentinel_password_file applies only with redis.sentinels");
	}
	if (rules && rc->ncluster > 0 && rc->database != 0)
		SERR(ld, config__where(root, "redis.database", config__where(root, "redis.cluster", sec)),
		    "redis.database (%d) cannot be used with redis.cluster: a cluster has only database 0",
		    rc->database);
	if (rc->nsentinels > 0 || rc->ncluster > 0) {
		if (rc->nsentinels > 0)
			snprintf(shown, sizeof(shown), "sentinel %s", rc->master_name != NULL ?
			    rc->master_name : "");
		else
			snprintf(shown, sizeof(shown), "cluster %s", rc->cluster[0]);
		free(rc->address);
		rc->address = str_dup(shown, &oom);
	}
	if (oom)
		SERR(ld, sec, "redis: out of memory");
}

/* Does key hold a Redis Cluster hash tag: a "{", later a "}", something between? */
bool
config_has_hash_tag(const char *key)
{
	const char *open = strchr(key, '{'), *close;

	return open != NULL && (close = strchr(open + 1, '}')) != NULL && close > open + 1;
}

void
config__check_main(struct loader *ld, const config_setting_t *root, struct config *cfg)
{
	const char *env;

	if (cfg->agent.lease_ttl_ms <= cfg->agent.interval_ms &&
	    config__all_ok(ld, CFG_MAIN, "agent.lease_ttl", "agent.interval", (char *)NULL)) {
		char a[32], b[32];

		util_format_duration(cfg->agent.lease_ttl_ms, a, sizeof(a));
		util_format_duration(cfg->agent.interval_ms, b, sizeof(b));
		SERR(ld, config__where(root, "agent.lease_ttl", config__where(root, "agent.interval", NULL)),
		    "agent.lease_ttl (%s) must be longer than agent.interval (%s), or the lease lapses between renewals",
		    a, b);
	}
	config__check_redis(ld, root, CFG_MAIN, &cfg->redis, NULL);
	if (ld->flags & CONFIG_NO_NOMAD_SECRETS)
		return;
	if (cfg->nomad.token_file != NULL && *cfg->nomad.token_file != '\0')
		cfg->nomad.token = read_secret_key(ld, root, "nomad.token_file", cfg->nomad.token_file);
	else if ((env = getenv("NOMAD_TOKEN")) != NULL && *env != '\0' &&
	    (cfg->nomad.token = strdup(env)) == NULL)
		config__error(ld, ld->file, 0, "NOMAD_TOKEN: out of memory");
	static const char *const tls[] = { "nomad.ca_file", "nomad.cert_file", "nomad.key_file" };
	const char *vals[] = { cfg->nomad.ca_file, cfg->nomad.cert_file, cfg->nomad.key_file };
	for (size_t i = 0; i < ARRAY_LEN(tls); i++)
		if (vals[i] != NULL && *vals[i] != '\0' && access(vals[i], R_OK) == -1)
			SERR(ld, config__where(root, tls[i], NULL), "%s: cannot read %s: %s", tls[i], vals[i],
			    strerror(errno));
}

static enum queue_mode
derive_mode(bool loss_critical, bool order_critical)
{
	if (!loss_critical)
		return order_critical ? MODE_ORDERED_DROP : MODE_DROP;
	return order_critical ? MODE_HALT : MODE_DLQ;
}

static void
fmt_ms(int64_t ms, char *buf, size_t len)
{
	util_format_duration(ms, buf, len);
}

/* Durations of a policy that must stay in order. */
struct duration_pair {
	const char *lo, *hi;
	size_t lo_off, hi_off;
	bool strict;		/* lo < hi; else lo <= hi */
	const char *why;
};
static const struct duration_pair duration_order[] = {
	{ "worker.drain_timeout", "worker.kill_timeout", offsetof(struct queue_policy, worker.drain_timeout_ms),
	  offsetof(struct queue_policy, worker.kill_timeout_ms), true,
	  "Nomad kills the worker at the job's kill_timeout, before it has drained" },
	{ "worker.block", "worker.drain_timeout", offsetof(struct queue_policy, worker.block_ms),
	  offsetof(struct queue_policy, worker.drain_timeout_ms), true,
	  "a draining consumer may sit in one read that long" },
	{ "worker.backoff", "worker.max_backoff", offsetof(struct queue_policy, worker.backoff_ms),
	  offsetof(struct queue_policy, worker.max_backoff_ms), false, "the first retry delay exceeds its cap" },
};

/* Fill the derived values of q and check what spans several keys. */
void
config__check_policy(struct loader *ld, const config_setting_t *qs, struct queue_policy *q)
{
	const struct config *cfg = ld->cfg;
	char a[32], b[32];

	if (q->name == NULL) {
		if (!config__was_set(ld, "name", CFG_POLICY))
			SERR(ld, qs, "queue: missing the required key \"name\"");
	} else {
		if (q->stream == NULL && !config__was_set(ld, "stream", CFG_POLICY))
			q->stream = strdup(q->name);
		if (q->group == NULL && !config__was_set(ld, "group", CFG_POLICY))
			q->group = strdup(q->name);
		if ((q->stream == NULL && !config__was_set(ld, "stream", CFG_POLICY)) ||
		    (q->group == NULL && !config__was_set(ld, "group", CFG_POLICY)))
			SERR(ld, qs, "out of memory");
	}
	if (q->scale.namespace == NULL && !config__was_set(ld, "scale.namespace", CFG_POLICY) &&
	    cfg->nomad.namespace != NULL && (q->scale.namespace = strdup(cfg->nomad.namespace)) == NULL)
		SERR(ld, qs, "out of memory");
	if (!config__was_set(ld, "scale.interval", CFG_POLICY))
		q->scale.interval_ms = cfg->agent.interval_ms;
	if (q->order_critical && !config__was_set(ld, "scale.max", CFG_POLICY) && q->partitions > 0)
		q->scale.max = q->partitions;
	q->mode = derive_mode(q->loss_critical, q->order_critical);

	q->own_redis = config_setting_lookup((config_setting_t *)(uintptr_t)qs, "redis") != NULL;
	config__check_redis(ld, qs, CFG_POLICY, &q->redis, &cfg->redis);
	if (q->redis.ncluster > 0 && q->stream != NULL && !config_has_hash_tag(q->stream))
		SERR(ld, config__where(qs, "stream", qs), "stream \"%s\" has no hash tag: on a Redis "
		    "Cluster every key of a queue must hash to one slot, so name it like \"{%s}\" (the "
		    ":<n>, :retry:<k> and :dlq keys keep the tag)", q->stream, q->stream);

	const config_setting_t *scale = config__where(qs, "scale", qs);
	if (q->scale.min > q->scale.max && config__all_ok(ld, CFG_POLICY, "scale.min", "scale.max", (char *)NULL))
		SERR(ld, config__where(qs, "scale.min", config__where(qs, "scale.max", scale)),
		    "scale.min (%d) is greater than scale.max (%d)", q->scale.min, q->scale.max);
	if (q->order_critical && q->scale.max > q->partitions &&
	    config__all_ok(ld, CFG_POLICY, "scale.max", "partitions", (char *)NULL))
		SERR(ld, config__where(qs, "scale.max", config__where(qs, "partitions", qs)),
		    "scale.max (%d) exceeds partitions (%d): an order-critical queue never runs more workers than partitions",
		    q->scale.max, q->partitions);
	if (q->scale.target == SCALE_TARGET_NOMAD && config__all_ok(ld, CFG_POLICY, "scale.target", (char *)NULL)) {
		if (q->scale.job != NULL && *q->scale.job == '\0')
			SERR(ld, config__where(qs, "scale.job", scale),
			    "scale.job is required when scale.target is \"nomad\" (or set target = \"none\")");
		if (q->scale.group != NULL && *q->scale.group == '\0')
			SERR(ld, config__where(qs, "scale.group", scale),
			    "scale.group is required when scale.target is \"nomad\" (the job's task group)");
	}

	const config_setting_t *worker = config_setting_lookup((config_setting_t *)(uintptr_t)qs, "worker");
	if (worker != NULL && config_setting_is_group(worker) && !config__was_set(ld, "worker.command", CFG_POLICY))
		SERR(ld, worker, "worker.command is required in a worker section (the handler's argv)");
	for (size_t i = 0; i < ARRAY_LEN(duration_order); i++) {
		const struct duration_pair *d = &duration_order[i];
		int64_t lo = *(const int64_t *)(const void *)((const char *)q + d->lo_off);
		int64_t hi = *(const int64_t *)(const void *)((const char *)q + d->hi_off);

		if (lo < hi || (!d->strict && lo == hi) || !config__all_ok(ld, CFG_POLICY, d->lo, d->hi, (char *)NULL))
			continue;
		fmt_ms(lo, a, sizeof(a));
		fmt_ms(hi, b, sizeof(b));
		SERR(ld, config__where(qs, d->lo, config__where(qs, d->hi, qs)), "%s (%s) must %s %s (%s): %s", d->lo, a,
		    d->strict ? "stay below" : "not exceed", d->hi, b, d->why);
	}
	if (q->order_critical && q->worker.block_ms >= queue_lease_ttl_ms(q->worker.timeout_ms) &&
	    config__all_ok(ld, CFG_POLICY, "worker.block", "worker.timeout", (char *)NULL)) {
		fmt_ms(q->worker.block_ms, a, sizeof(a));
		fmt_ms(queue_lease_ttl_ms(q->worker.timeout_ms), b, sizeof(b));
		SERR(ld, config__where(qs, "worker.block", worker != NULL ? worker : qs),
		    "worker.block (%s) must stay below the partition lease (%s: worker.timeout + 5s, at "
		    "least 10s): a read blocked past the lease can take a message its new owner "
		    "does not see, and the key's order is lost", a, b);
	}
	if (worker != NULL && !q->order_critical && q->worker.claim_idle_ms > 0 &&
	    (int64_t)q->worker.batch * q->worker.timeout_ms > q->worker.claim_idle_ms) {
		const config_setting_t *s = config__where(qs, "worker.claim_idle", worker);

		log_warnx("%s:%d: worker.batch x worker.timeout is above worker.claim_idle: a batch of "
		    "slow messages outlasts claim_idle; the consumer keeps the entries it holds fresh, "
		    "but if it stalls they are reclaimed and run twice (lower batch or raise claim_idle)",
		    config__setting_file(ld, s), config__setting_line(s));
	}
	if (worker != NULL && q->worker.claim_idle_ms > 0 && q->worker.claim_idle_ms <= q->worker.timeout_ms) {
		const config_setting_t *s = config__where(qs, "worker.claim_idle", worker);

		log_warnx("%s:%d: worker.claim_idle is not above worker.timeout: a slow message may be "
		    "reclaimed by another consumer while its handler still runs", config__setting_file(ld, s),
		    config__setting_line(s));
	}
}

