/*
 * config_keys.c — the one table of configuration keys. Parsing, defaults,
 * validation, "did you mean", `scaleno check -k` and the documentation test
 * all iterate it; adding a key here is all it takes (plus scaleno.conf(5)
 * and etc/, which the unit test enforces).
 */
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>

#include "config.h"
#include "httpd.h"

_Static_assert(sizeof(enum log_level) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum log_format) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum scale_target) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum handler_protocol) == sizeof(int), "enums are stored as int");

#define MS_SECOND	1000LL
#define MS_MINUTE	(60 * MS_SECOND)
#define MS_HOUR		(60 * MS_MINUTE)
#define MS_DAY		(24 * MS_HOUR)

/* A port number 1..65535 with nothing after it. */
static int
port_ok(const char *p)
{
	char *end;
	long v;

	if (*p == '\0' || !isdigit((unsigned char)*p))
		return 0;
	v = strtol(p, &end, 10);
	return *end == '\0' && v >= 1 && v <= 65535;
}

/* "host:port", "[v6]:port"; host non-empty. */
static int
hostport_ok(const char *v)
{
	const char *colon = strrchr(v, ':');

	if (colon == NULL || colon == v || !port_ok(colon + 1))
		return 0;
	if (v[0] == '[')
		return colon[-1] == ']' && colon - v > 2;
	return memchr(v, ':', (size_t)(colon - v)) == NULL;	/* bare v6 needs brackets */
}

/* 0 when ok; else err = "\"V\" WHAT" and -1: the checkers' one message form. */
static int
verdict(bool ok, const char *v, const char *what, char *err, size_t len)
{
	if (ok)
		return 0;
	snprintf(err, len, "\"%s\" %s", v, what);
	return -1;
}

static int
check_listen(const char *v, char *err, size_t len)
{
	if (*v == '\0' || hostport_ok(v))
		return 0;
	/* Checked at start-up: the variable exists only inside the allocation. */
	if (strncmp(v, HTTPD_NOMAD_PREFIX, strlen(HTTPD_NOMAD_PREFIX)) == 0 &&
	    httpd_nomad_label_ok(v + strlen(HTTPD_NOMAD_PREFIX)))
		return 0;
	return verdict(false, v, "is neither \"host:port\" (e.g. \"127.0.0.1:9464\") nor "
	    "\"nomad:LABEL\" (\"\" turns the endpoint off)", err, len);
}

static int
check_redis_address(const char *v, char *err, size_t len)
{
	if (strncmp(v, "unix:", 5) == 0) {
		if (v[5] == '/')
			return 0;
		snprintf(err, len, "\"%s\": a unix socket needs an absolute path (\"unix:/run/redis.sock\")", v);
		return -1;
	}
	return verdict(hostport_ok(v), v, "is neither \"host:port\" nor \"unix:/path\"", err, len);
}

/* A Sentinel or cluster node: "host:port" only. */
static int
check_redis_node(const char *v, char *err, size_t len)
{
	return verdict(hostport_ok(v), v, "is not \"host:port\" (e.g. \"10.0.0.1:26379\")", err, len);
}

static int
url_ok(const char *v)
{
	const char *host;

	if (strncmp(v, "http://", 7) == 0)
		host = v + 7;
	else if (strncmp(v, "https://", 8) == 0)
		host = v + 8;
	else
		return 0;
	return *host != '\0' && *host != '/' && strpbrk(v, " \t\r\n") == NULL;
}

static int
check_url(const char *v, char *err, size_t len)
{
	return verdict(url_ok(v), v, "is not an http:// or https:// URL", err, len);
}

static int
check_url_or_empty(const char *v, char *err, size_t len)
{
	return *v == '\0' ? 0 : check_url(v, err, len);
}

/* Queue names end up in metric labels, Redis keys and file names. */
static int
check_name(const char *v, char *err, size_t len)
{
	size_t n = strlen(v);

	return verdict(n > 0 && n <= 128 && strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789_.:-") == n, v, "is not a valid queue name (1 to 128 of A-Z a-z 0-9 _ . : -)",
	    err, len);
}

static const char *const levels[] = { "error", "warn", "info", "debug", NULL };
static const char *const formats[] = { "text", "json", NULL };
static const char *const targets[] = { "nomad", "none", NULL };
static const char *const protocols[] = { "pipe", "exec", NULL };

#define M(f)	offsetof(struct config, f)
#define P(f)	offsetof(struct queue_policy, f)

const struct cfg_key config_keys[] = {
	/* main file: redis (a policy's own redis block: the same keys, below) */
	{ CFG_MAIN, "redis.address", CFG_STRING, "\"127.0.0.1:6379\"", 0, 0, M(redis.address), 0, NULL,
	  NULL, check_redis_address, 0, "Redis server: \"host:port\" or \"unix:/path\"." },
	{ CFG_MAIN, "redis.sentinels", CFG_ARGV, NULL, 1, 64, M(redis.sentinels), M(redis.nsentinels), NULL,
	  NULL, check_redis_node, 0, "Redis Sentinels (\"host:port\" each), instead of address." },
	{ CFG_MAIN, "redis.master_name", CFG_STRING, "\"\"", 0, 0, M(redis.master_name), 0, NULL, NULL, NULL,
	  0, "The master's name at the Sentinels (required with sentinels)." },
	{ CFG_MAIN, "redis.sentinel_password_file", CFG_STRING, "\"\"", 0, 0, M(redis.sentinel_password_file),
	  0, NULL, NULL, NULL, CFG_PATH, "File holding the Sentinels' password (\"\" = none)." },
	{ CFG_MAIN, "redis.cluster", CFG_ARGV, NULL, 1, 64, M(redis.cluster), M(redis.ncluster), NULL, NULL,
	  check_redis_node, 0, "Redis Cluster seed nodes (\"host:port\" each), instead of address." },
	{ CFG_MAIN, "redis.username", CFG_STRING, "\"\"", 0, 0, M(redis.username), 0, NULL, NULL, NULL, 0,
	  "ACL user name (\"\" = the default user)." },
	{ CFG_MAIN, "redis.password_file", CFG_STRING, "\"\"", 0, 0, M(redis.password_file), 0, NULL, NULL,
	  NULL, CFG_PATH, "File holding the Redis password (\"\" = no password)." },
	{ CFG_MAIN, "redis.database", CFG_INT, "0", 0, 65535, M(redis.database), 0, NULL, NULL, NULL, 0,
	  "Database number (SELECT; not with cluster)." },
	{ CFG_MAIN, "redis.connect_timeout", CFG_DURATION, "\"500ms\"", 1, MS_HOUR, M(redis.connect_timeout_ms),
	  0, NULL, NULL, NULL, 0, "Time limit to connect." },
	{ CFG_MAIN, "redis.command_timeout", CFG_DURATION, "\"2s\"", 1, MS_HOUR, M(redis.command_timeout_ms),
	  0, NULL, NULL, NULL, 0, "Time limit of one command (blocking reads add worker.block)." },
	/* main file: nomad */
	{ CFG_MAIN, "nomad.address", CFG_STRING, "\"http://127.0.0.1:4646\"", 0, 0, M(nomad.address), 0, NULL,
	  "NOMAD_ADDR", check_url, 0, "Nomad HTTP API address." },
	{ CFG_MAIN, "nomad.token_file", CFG_STRING, "\"\"", 0, 0, M(nomad.token_file), 0, NULL, NULL, NULL,
	  CFG_PATH, "File holding the ACL token (\"\" = NOMAD_TOKEN, else none)." },
	{ CFG_MAIN, "nomad.namespace", CFG_STRING, "\"default\"", 0, 0, M(nomad.namespace), 0, NULL,
	  "NOMAD_NAMESPACE", NULL, CFG_NONEMPTY, "Default namespace of the scaled jobs." },
	{ CFG_MAIN, "nomad.region", CFG_STRING, "\"\"", 0, 0, M(nomad.region), 0, NULL, "NOMAD_REGION", NULL,
	  0, "Region (\"\" = the agent's own)." },
	{ CFG_MAIN, "nomad.ca_file", CFG_STRING, "\"\"", 0, 0, M(nomad.ca_file), 0, NULL, "NOMAD_CACERT", NULL,
	  CFG_PATH, "CA certificate to verify Nomad's TLS certificate." },
	{ CFG_MAIN, "nomad.cert_file", CFG_STRING, "\"\"", 0, 0, M(nomad.cert_file), 0, NULL,
	  "NOMAD_CLIENT_CERT", NULL, CFG_PATH, "Client certificate for mutual TLS." },
	{ CFG_MAIN, "nomad.key_file", CFG_STRING, "\"\"", 0, 0, M(nomad.key_file), 0, NULL, "NOMAD_CLIENT_KEY",
	  NULL, CFG_PATH, "Client key for mutual TLS." },
	{ CFG_MAIN, "nomad.tls_server_name", CFG_STRING, "\"\"", 0, 0, M(nomad.tls_server_name), 0, NULL,
	  "NOMAD_TLS_SERVER_NAME", NULL, 0, "Name checked in Nomad's certificate (\"\" = the address's host)." },
	{ CFG_MAIN, "nomad.timeout", CFG_DURATION, "\"5s\"", 1, 10 * MS_MINUTE, M(nomad.timeout_ms), 0, NULL,
	  NULL, NULL, 0, "Time limit of one Nomad API call." },
	/* main file: agent */
	{ CFG_MAIN, "agent.interval", CFG_DURATION, "\"1s\"", 10, MS_HOUR, M(agent.interval_ms), 0, NULL, NULL,
	  NULL, 0, "Default evaluation interval (scale.interval)." },
	{ CFG_MAIN, "agent.policy_dir", CFG_STRING, "\"policies.d\"", 0, 0, M(agent.policy_dir), 0, NULL, NULL,
	  NULL, CFG_PATH | CFG_NONEMPTY, "Folder of the policy files, one queue per *.conf." },
	{ CFG_MAIN, "agent.listen", CFG_STRING, "\"127.0.0.1:9464\"", 0, 0, M(agent.listen), 0, NULL, NULL,
	  check_listen, 0, "Address of /metrics, /healthz, /readyz and /v1/status (\"\" = off)." },
	{ CFG_MAIN, "agent.dry_run", CFG_BOOL, "false", 0, 0, M(agent.dry_run), 0, NULL, NULL, NULL, 0,
	  "Decide and log, but never call Nomad." },
	{ CFG_MAIN, "agent.lease_key", CFG_STRING, "\"scaleno:agent:lease\"", 0, 0, M(agent.lease_key), 0,
	  NULL, NULL, NULL, CFG_NONEMPTY, "Redis key of the lease that lets one agent act." },
	{ CFG_MAIN, "agent.lease_ttl", CFG_DURATION, "\"10s\"", 100, MS_HOUR, M(agent.lease_ttl_ms), 0, NULL,
	  NULL, NULL, 0, "Lease lifetime; longer than agent.interval." },
	/* main file: log */
	{ CFG_MAIN, "log.level", CFG_ENUM, "\"info\"", 0, 0, M(log.level), 0, levels, NULL, NULL, 0,
	  "error, warn, info or debug." },
	{ CFG_MAIN, "log.format", CFG_ENUM, "\"text\"", 0, 0, M(log.format), 0, formats, NULL, NULL, 0,
	  "text, or json (one object per line)." },
	{ CFG_MAIN, "log.syslog", CFG_BOOL, "false", 0, 0, M(log.syslog), 0, NULL, NULL, NULL, 0,
	  "Log to syslog instead of stderr." },

	/* policy: the queue */
	{ CFG_POLICY, "name", CFG_STRING, NULL, 0, 0, P(name), 0, NULL, NULL, check_name, 0,
	  "Queue name, unique (required)." },
	{ CFG_POLICY, "stream", CFG_STRING, NULL, 0, 0, P(stream), 0, NULL, NULL, NULL, CFG_NONEMPTY,
	  "Stream key, or key prefix when partitioned (default: name)." },
	{ CFG_POLICY, "group", CFG_STRING, NULL, 0, 0, P(group), 0, NULL, NULL, NULL, CFG_NONEMPTY,
	  "Consumer group (default: name)." },
	{ CFG_POLICY, "partitions", CFG_INT, "1", 1, 4096, P(partitions), 0, NULL, NULL, NULL, 0,
	  "Number of partition streams." },
	{ CFG_POLICY, "loss_critical", CFG_BOOL, "true", 0, 0, P(loss_critical), 0, NULL, NULL, NULL, 0,
	  "Losing a message is not acceptable." },
	{ CFG_POLICY, "order_critical", CFG_BOOL, "false", 0, 0, P(order_critical), 0, NULL, NULL, NULL, 0,
	  "Processing order matters." },
	/* policy: scale */
	{ CFG_POLICY, "scale.target", CFG_ENUM, "\"nomad\"", 0, 0, P(scale.target), 0, targets, NULL, NULL, 0,
	  "nomad, or none to observe and explain only." },
	{ CFG_POLICY, "scale.job", CFG_STRING, "\"\"", 0, 0, P(scale.job), 0, NULL, NULL, NULL, 0,
	  "Nomad job ID (required with target nomad)." },
	{ CFG_POLICY, "scale.group", CFG_STRING, "\"\"", 0, 0, P(scale.group), 0, NULL, NULL, NULL, 0,
	  "Task group in the job (required with target nomad)." },
	{ CFG_POLICY, "scale.namespace", CFG_STRING, NULL, 0, 0, P(scale.namespace), 0, NULL, NULL, NULL,
	  CFG_NONEMPTY, "Namespace of the job (default: nomad.namespace)." },
	{ CFG_POLICY, "scale.min", CFG_INT, "1", 0, 100000, P(scale.min), 0, NULL, NULL, NULL, 0,
	  "Fewest workers; 0 allows scale to zero." },
	{ CFG_POLICY, "scale.max", CFG_INT, "10", 1, 100000, P(scale.max), 0, NULL, NULL, NULL, 0,
	  "Most workers (order-critical default: partitions)." },
	{ CFG_POLICY, "scale.interval", CFG_DURATION, NULL, 10, MS_HOUR, P(scale.interval_ms), 0, NULL, NULL,
	  NULL, 0, "Evaluation interval (default: agent.interval)." },
	{ CFG_POLICY, "scale.backlog_per_worker", CFG_NUMBER, "200", 0, 1000000000, P(scale.backlog_per_worker),
	  0, NULL, NULL, NULL, 0, "Steady-state backlog one worker may hold (> 0)." },
	{ CFG_POLICY, "scale.max_age", CFG_DURATION, "\"30s\"", 1, 7 * MS_DAY, P(scale.max_age_ms), 0, NULL,
	  NULL, NULL, 0, "Objective: the oldest waiting message is never older." },
	{ CFG_POLICY, "scale.startup", CFG_DURATION, "\"15s\"", 0, MS_HOUR, P(scale.startup_ms), 0, NULL,
	  NULL, NULL, 0, "Expected time from a scale call to a new worker consuming." },
	{ CFG_POLICY, "scale.up.cooldown", CFG_DURATION, "\"10s\"", 0, MS_DAY, P(scale.up_cooldown_ms), 0,
	  NULL, NULL, NULL, 0, "Least time between a scale action and the next scale-up." },
	{ CFG_POLICY, "scale.up.max_step", CFG_STEP, "\"100%\"", 1, 100000, P(scale.up_max_step), 0, NULL,
	  NULL, NULL, 0, "Largest scale-up: a count or \"NN%\" of the current count." },
	{ CFG_POLICY, "scale.down.cooldown", CFG_DURATION, "\"30s\"", 0, MS_DAY, P(scale.down_cooldown_ms), 0,
	  NULL, NULL, NULL, 0, "Least time between a scale action and the next scale-down." },
	{ CFG_POLICY, "scale.down.stabilization", CFG_DURATION, "\"1m\"", 0, MS_DAY,
	  P(scale.down_stabilization_ms), 0, NULL, NULL, NULL, 0,
	  "A lower count must be justified this long before scaling down." },
	{ CFG_POLICY, "scale.down.max_step", CFG_STEP, "\"50%\"", 1, 100000, P(scale.down_max_step), 0, NULL, NULL,
	  NULL, 0, "Largest scale-down: a count or \"NN%\"." },
	/* policy: worker */
	{ CFG_POLICY, "worker.command", CFG_ARGV, NULL, 1, 256, P(worker.command), P(worker.ncommand), NULL,
	  NULL, NULL, 0, "Handler argv, run without a shell (required in a worker section)." },
	{ CFG_POLICY, "worker.protocol", CFG_ENUM, "\"pipe\"", 0, 0, P(worker.protocol), 0, protocols, NULL,
	  NULL, 0, "pipe (long-running handler) or exec (one process per message)." },
	{ CFG_POLICY, "worker.processes", CFG_INT, "4", 1, 1024, P(worker.processes), 0, NULL, NULL, NULL, 0,
	  "Consumer processes per scaleno worker." },
	{ CFG_POLICY, "worker.batch", CFG_INT, "16", 1, 10000, P(worker.batch), 0, NULL, NULL, NULL, 0,
	  "Messages fetched per read." },
	{ CFG_POLICY, "worker.timeout", CFG_DURATION, "\"30s\"", 1, MS_DAY, P(worker.timeout_ms), 0, NULL,
	  NULL, NULL, 0, "Handler time limit per message." },
	{ CFG_POLICY, "worker.retries", CFG_INT, "3", 0, 1000, P(worker.retries), 0, NULL, NULL, NULL, 0,
	  "Synchronous attempts after the first failure." },
	{ CFG_POLICY, "worker.backoff", CFG_DURATION, "\"200ms\"", 1, MS_HOUR, P(worker.backoff_ms), 0, NULL,
	  NULL, NULL, 0, "First retry delay; doubles per attempt." },
	{ CFG_POLICY, "worker.max_backoff", CFG_DURATION, "\"10s\"", 1, MS_DAY, P(worker.max_backoff_ms), 0,
	  NULL, NULL, NULL, 0, "Cap of the retry delay." },
	{ CFG_POLICY, "worker.retry_delays", CFG_DURATIONS, "[ \"10s\", \"1m\", \"10m\" ]", 0, 32,
	  P(worker.retry_delays_ms), P(worker.nretry_delays), NULL, NULL, NULL, 0,
	  "Mode 3: delays of the retry stages before the DLQ." },
	{ CFG_POLICY, "worker.retry_for", CFG_DURATION, "\"5m\"", 0, 7 * MS_DAY, P(worker.retry_for_ms), 0,
	  NULL, NULL, NULL, 0, "Modes 2 and 4: retry a failing message this long before dropping or halting." },
	{ CFG_POLICY, "worker.halt_probe", CFG_DURATION, "\"1m\"", 0, 7 * MS_DAY, P(worker.halt_probe_ms), 0,
	  NULL, NULL, NULL, 0, "Mode 4: retry a halted partition's message this often (\"0s\" = never)." },
	{ CFG_POLICY, "worker.claim_idle", CFG_DURATION, "\"60s\"", 1, 7 * MS_DAY, P(worker.claim_idle_ms), 0,
	  NULL, NULL, NULL, 0, "Reclaim entries pending this long from dead consumers." },
	{ CFG_POLICY, "worker.max_deliveries", CFG_INT, "10", 1, 1000000, P(worker.max_deliveries), 0, NULL,
	  NULL, NULL, 0, "A message delivered this often is poison." },
	{ CFG_POLICY, "worker.drain_timeout", CFG_DURATION, "\"4s\"", 1, MS_HOUR, P(worker.drain_timeout_ms), 0,
	  NULL, NULL, NULL, 0, "Time to finish the message in hand on SIGTERM." },
	{ CFG_POLICY, "worker.kill_timeout", CFG_DURATION, "\"5s\"", 1, MS_HOUR, P(worker.kill_timeout_ms), 0,
	  NULL, NULL, NULL, 0, "The Nomad job's kill_timeout (Nomad's default 5s)." },
	{ CFG_POLICY, "worker.listen", CFG_STRING, "\"127.0.0.1:9465\"", 0, 0, P(worker.listen), 0, NULL, NULL,
	  check_listen, 0, "Address of the worker's /metrics, /healthz and /readyz (\"\" = off)." },
	{ CFG_POLICY, "worker.block", CFG_DURATION, "\"1s\"", 1, 10 * MS_MINUTE, P(worker.block_ms), 0, NULL,
	  NULL, NULL, 0, "Longest XREADGROUP BLOCK; below drain_timeout." },
	{ CFG_POLICY, "worker.consumer_idle", CFG_DURATION, "\"1h\"", MS_SECOND, 30 * MS_DAY,
	  P(worker.consumer_idle_ms), 0, NULL, NULL, NULL, 0,
	  "Remove consumers idle this long with nothing pending." },
	/* policy: its own redis block; a key left out is the main file's (config_validate.c) */
	{ CFG_POLICY, "redis.address", CFG_STRING, NULL, 0, 0, P(redis.address), 0, NULL, NULL,
	  check_redis_address, 0, "This queue's Redis server (default: the main file's redis)." },
	{ CFG_POLICY, "redis.sentinels", CFG_ARGV, NULL, 1, 64, P(redis.sentinels), P(redis.nsentinels), NULL,
	  NULL, check_redis_node, 0, "This queue's Redis Sentinels." },
	{ CFG_POLICY, "redis.master_name", CFG_STRING, NULL, 0, 0, P(redis.master_name), 0, NULL, NULL, NULL,
	  0, "Its master's name at the Sentinels." },
	{ CFG_POLICY, "redis.sentinel_password_file", CFG_STRING, NULL, 0, 0, P(redis.sentinel_password_file),
	  0, NULL, NULL, NULL, CFG_PATH, "File holding its Sentinels' password." },
	{ CFG_POLICY, "redis.cluster", CFG_ARGV, NULL, 1, 64, P(redis.cluster), P(redis.ncluster), NULL, NULL,
	  check_redis_node, 0, "This queue's Redis Cluster seed nodes." },
	{ CFG_POLICY, "redis.username", CFG_STRING, NULL, 0, 0, P(redis.username), 0, NULL, NULL, NULL, 0,
	  "Its ACL user name." },
	{ CFG_POLICY, "redis.password_file", CFG_STRING, NULL, 0, 0, P(redis.password_file), 0, NULL, NULL,
	  NULL, CFG_PATH, "File holding its Redis password." },
	{ CFG_POLICY, "redis.database", CFG_INT, NULL, 0, 65535, P(redis.database), 0, NULL, NULL, NULL, 0,
	  "Its database number." },
	{ CFG_POLICY, "redis.connect_timeout", CFG_DURATION, NULL, 1, MS_HOUR, P(redis.connect_timeout_ms), 0,
	  NULL, NULL, NULL, 0, "Its time limit to connect." },
	{ CFG_POLICY, "redis.command_timeout", CFG_DURATION, NULL, 1, MS_HOUR, P(redis.command_timeout_ms), 0,
	  NULL, NULL, NULL, 0, "Its time limit of one command." },
	/* policy: alert */
	{ CFG_POLICY, "alert.command", CFG_ARGV, NULL, 1, 256, P(alert.command), P(alert.ncommand), NULL, NULL,
	  NULL, 0, "Program that gets each alert as JSON on stdin (default: none)." },
	{ CFG_POLICY, "alert.webhook", CFG_STRING, "\"\"", 0, 0, P(alert.webhook), 0, NULL, NULL,
	  check_url_or_empty, 0, "URL each alert is POSTed to (\"\" = off)." },
	{ CFG_POLICY, "alert.min_interval", CFG_DURATION, "\"5m\"", 0, MS_DAY, P(alert.min_interval_ms), 0,
	  NULL, NULL, NULL, 0, "Least time between two alerts of one kind and subject." },
};
const size_t config_nkeys = sizeof(config_keys) / sizeof(config_keys[0]);

const char *
config_type_name(enum cfg_type t)
{
	switch (t) {
	case CFG_STRING:	return "string";
	case CFG_INT:		return "integer";
	case CFG_NUMBER:	return "number";
	case CFG_BOOL:		return "boolean";
	case CFG_DURATION:	return "duration";
	case CFG_ARGV:		return "list of strings";
	case CFG_DURATIONS:	return "list of durations";
	case CFG_STEP:		return "step";
	case CFG_ENUM:		return "keyword";
	}
	return "?";
}
