/*
 * config — the main file and the per-queue policy files (libconfig syntax),
 * parsed through one table of keys into the structs below. Every mistake is
 * collected as "file:line: message"; nothing stops at the first one.
 *
 * The loader: config.c (files, errors, the load), config_value.c (one
 * setting through the table), config_validate.c (rules across keys),
 * config_keys.c (the table itself). Documented in scaleno.conf(5).
 *
 * Ownership: config_load returns a struct config the caller frees with
 * config_free. All strings inside belong to it.
 */
#ifndef SCALENO_CONFIG_H
#define SCALENO_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"

/* A step limit: an absolute count, or a percentage of the current count. */
struct step_limit {
	int64_t value;
	bool percent;
};

enum scale_target { SCALE_TARGET_NOMAD = 0, SCALE_TARGET_NONE };
enum handler_protocol { PROTO_PIPE = 0, PROTO_EXEC };

/* The four error-handling modes of scaleno-worker(8), from loss_critical x order_critical. */
enum queue_mode {
	MODE_DROP = 1,		/* loss ok, order irrelevant */
	MODE_ORDERED_DROP = 2,	/* loss ok, order critical */
	MODE_DLQ = 3,		/* loss critical, order irrelevant */
	MODE_HALT = 4,		/* loss critical, order critical */
};

/*
 * The redis section of scaleno.conf(5), or a policy's own redis block (its
 * keys merged over the main file's). Exactly one of address, sentinels and
 * cluster chooses the server; with sentinels or cluster, address holds a
 * name for messages ("sentinel <master_name>", "cluster <first seed>").
 */
struct redis_conf {
	char *address;		/* "host:port" or "unix:/path" */
	char **sentinels;	/* NULL-terminated "host:port" list, or NULL */
	size_t nsentinels;
	char *master_name;
	char *sentinel_password_file;
	char *sentinel_password; /* read from sentinel_password_file; never logged */
	char **cluster;		/* NULL-terminated seed list, or NULL */
	size_t ncluster;
	char *username;
	char *password_file;
	char *password;		/* read from password_file at load time; never logged */
	int database;
	int64_t connect_timeout_ms;
	int64_t command_timeout_ms;
};

struct nomad_conf {
	char *address;
	char *token_file;
	char *token;		/* from token_file or NOMAD_TOKEN; never logged */
	char *namespace;
	char *region;
	char *ca_file, *cert_file, *key_file;
	char *tls_server_name;	/* "": the address's host */
	int64_t timeout_ms;
};

struct agent_conf {
	int64_t interval_ms;
	char *policy_dir;	/* absolute after load */
	char *listen;		/* "" = off */
	bool dry_run;
	char *lease_key;	/* HA lease key in Redis */
	int64_t lease_ttl_ms;
};

struct log_conf {
	enum log_level level;
	enum log_format format;
	bool syslog;
};

struct scale_conf {
	enum scale_target target;
	char *job, *group, *namespace;
	int min, max;
	int64_t interval_ms;
	double backlog_per_worker;
	int64_t max_age_ms;
	int64_t startup_ms;
	int64_t up_cooldown_ms;
	struct step_limit up_max_step;
	int64_t down_cooldown_ms;
	int64_t down_stabilization_ms;
	struct step_limit down_max_step;
};

struct worker_conf {
	char **command;		/* NULL-terminated argv; NULL when the policy has no worker section
				 * (an agent-only policy: `scaleno worker` must refuse it) */
	size_t ncommand;
	enum handler_protocol protocol;
	int processes;
	int batch;
	int64_t timeout_ms;
	int retries;
	int64_t backoff_ms, max_backoff_ms;
	int64_t *retry_delays_ms;
	size_t nretry_delays;
	int64_t claim_idle_ms;
	int max_deliveries;
	int64_t drain_timeout_ms;
	char *listen;		/* "" = off */
	int64_t block_ms;	/* XREADGROUP BLOCK bound */
	int64_t consumer_idle_ms; /* remove consumers inactive this long with nothing pending */
	int64_t kill_timeout_ms; /* the Nomad job's kill_timeout; drain_timeout stays below it */
	int64_t retry_for_ms;	/* modes 2, 4: keep retrying a message this long after its first failure */
	int64_t halt_probe_ms;	/* mode 4: retry a halted partition's head this often (0 = never) */
};

struct alert_conf {
	char **command;		/* NULL-terminated argv, or NULL */
	size_t ncommand;
	char *webhook;		/* "" = off */
	int64_t min_interval_ms; /* rate limit per (kind, subject) */
};

/*
 * The partition lease of an order-critical queue (scaleno-worker(8)): the
 * handler timeout plus 5 s, at least 10 s. worker.block must stay below it.
 */
#define QUEUE_LEASE_MARGIN_MS 5000
static inline int64_t
queue_lease_ttl_ms(int64_t timeout_ms)
{
	int64_t t = timeout_ms + QUEUE_LEASE_MARGIN_MS;

	return t < 2 * QUEUE_LEASE_MARGIN_MS ? 2 * QUEUE_LEASE_MARGIN_MS : t;
}

struct queue_policy {
	char *name;
	char *stream;
	char *group;
	int partitions;
	bool loss_critical;
	bool order_critical;
	enum queue_mode mode;	/* derived */
	struct scale_conf scale;
	struct worker_conf worker;
	struct alert_conf alert;
	struct redis_conf redis; /* its server: its own redis block over the main file's */
	bool own_redis;		/* the policy has a redis block */
	char *file;		/* policy file it came from */
	int line;		/* line of its queue block */
};

struct config {
	char *path;		/* main file, as given */
	char *dir;		/* folder of the main file */
	struct redis_conf redis;
	struct nomad_conf nomad;
	struct agent_conf agent;
	struct log_conf log;
	struct queue_policy *queues;
	size_t nqueues;
};

/* A list of "file:line: message" strings. Zero-initialise; free with cfg_errors_free. */
struct cfg_errors {
	char **msgs;
	size_t n, cap;
};
void cfg_errors_add(struct cfg_errors *e, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void cfg_errors_free(struct cfg_errors *e);

/*
 * Load the main file at path and every *.conf policy in its policy_dir
 * (sorted by name, dot files skipped), defaults from config_keys[], the
 * NOMAD_* environment for what the file leaves empty, and the secrets from
 * token_file / password_file. Relative file names (policy_dir, token_file,
 * password_file, ca/cert/key_file) resolve against the main file's folder.
 * path NULL means SCALENO_CONFIG or the compiled-in default.
 * Returns 0 with *out set (caller frees with config_free), or -1 with every
 * problem appended to errs as "file:line: message" (and *out NULL); errs
 * must be zero-initialised by the caller, who frees it with cfg_errors_free.
 * Warnings that do not make the file invalid are logged, not returned.
 * No message ever holds a secret.
 */
int config_load(const char *path, struct config **out, struct cfg_errors *errs);

/*
 * The same, with flags. CONFIG_NO_NOMAD_SECRETS skips reading nomad.token_file
 * and checking the TLS files: `scaleno worker`, `dlq`, `resume`, `publish` and
 * `simulate` never talk to Nomad, and worker hosts rarely hold the agent's token.
 */
#define CONFIG_NO_NOMAD_SECRETS 0x1u
int config_load_flags(const char *path, struct config **out, struct cfg_errors *errs,
    unsigned flags);
/* Free everything config_load returned; NULL is a no-op. */
void config_free(struct config *cfg);
/* The queue called name, or NULL. */
const struct queue_policy *config_queue(const struct config *cfg, const char *name);
/* The default main file path (SCALENO_CONFIG, else sysconfdir/scaleno/scaleno.conf). */
const char *config_default_path(void);
/* "drop", "ordered-drop", "dead-letter", "halt". */
const char *config_mode_name(enum queue_mode m);
/* Does key hold a Redis Cluster hash tag ("{payments}")? All keys of a cluster queue need one. */
bool config_has_hash_tag(const char *key);
/* Apply a step limit to current count: the largest allowed change (>= 1). */
int config_step_allowed(const struct step_limit *s, int current);

/*
 * The table of keys (src/config_keys.c) that drives parsing, defaults,
 * validation and "did you mean". Exposed for `scaleno check -k` and for the
 * test that checks every key against scaleno.conf(5) and etc/.
 */
enum cfg_scope { CFG_MAIN = 0, CFG_POLICY };
enum cfg_type {
	CFG_STRING, CFG_INT, CFG_NUMBER, CFG_BOOL, CFG_DURATION,
	CFG_ARGV,	/* list of strings: char ** (NULL-terminated) + size_t count */
	CFG_DURATIONS,	/* list of durations: int64_t * + size_t count */
	CFG_STEP,	/* integer count or "NN%": struct step_limit */
	CFG_ENUM,	/* one of choices; stored as the int index */
};
#define CFG_PATH	0x01	/* a file name, relative to the main file's folder */
#define CFG_NONEMPTY	0x02	/* "" is an error */
struct cfg_key {
	enum cfg_scope scope;
	const char *path;	/* "redis.address"; policy keys without "queue.": "scale.min" */
	enum cfg_type type;
	const char *def;	/* default in libconfig syntax; NULL: required or derived (see doc) */
	int64_t min, max;	/* bounds: value, milliseconds, list length or percent */
	size_t off, off_n;	/* offset in struct config / struct queue_policy; list count */
	const char *const *choices; /* CFG_ENUM values, NULL-terminated; index = enum value */
	const char *env;	/* environment variable that fills an empty value */
	int (*check)(const char *v, char *err, size_t len); /* extra check of a string */
	unsigned flags;
	const char *doc;
};
extern const struct cfg_key config_keys[];
extern const size_t config_nkeys;
/* "string", "integer", "duration", ...: the type as the man page names it. */
const char *config_type_name(enum cfg_type t);

#endif
