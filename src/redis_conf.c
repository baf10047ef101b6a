/*
 * redis_conf.c — the bridge from the redis section of scaleno.conf(5) to a
 * connection handle (kept out of redis.c so libscaleno.a needs no config).
 */
#include "config.h"
#include "redis.h"

struct redis *
redis_new_conf(const struct redis_conf *conf)
{
	struct redis_opts o = {
		.address = conf->address,
		.sentinels = (const char *const *)conf->sentinels,
		.nsentinels = conf->nsentinels,
		.master_name = conf->master_name,
		.sentinel_password = conf->sentinel_password,
		.cluster = (const char *const *)conf->cluster,
		.ncluster = conf->ncluster,
		.username = conf->username,
		.password = conf->password,
		.database = conf->database,
		.connect_timeout_ms = conf->connect_timeout_ms,
		.command_timeout_ms = conf->command_timeout_ms,
	};

	return redis_new(&o);
}
