/*
 * redis — the one connection module (src/redis.c; Sentinel in
 * src/redis_sentinel.c, Cluster routing in src/redis_cluster.c): the only
 * code that includes hiredis, through its private src/redis_int.h.
 *
 * A handle holds one connection with reconnect and backoff (connect, AUTH,
 * SELECT, all within connect_timeout), the last error (err/errstr, as in
 * hiredis), and the per-handle state of the script registry: every Lua
 * script of contrib/lua/ is built into the binary, called by name, loaded
 * with SCRIPT LOAD the first time and again after NOSCRIPT (a restarted or
 * flushed Redis).
 *
 * Every command goes through one send path (redis_command, redis_append)
 * with its argument vector, which records the keys it touches
 * (redis_args_key): where the Sentinels' master is used and where a
 * Redis Cluster command goes to the node serving its first key's slot.
 *
 * Replies are our own type, built directly by hiredis' reader: no
 * hiredis type appears in this header.
 */
#ifndef SCALENO_REDIS_H
#define SCALENO_REDIS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Connection settings; every string is copied. NULL/0 fields: the defaults.
 * With nsentinels > 0 the master of master_name is asked of the Sentinels
 * (scaleno.conf(5) "redis") and address is ignored.
 */
struct redis_opts {
	const char *address;		/* "host:port", "[v6]:port" or "unix:/path"; NULL = 127.0.0.1:6379 */
	const char *const *sentinels;	/* "host:port" of each Sentinel */
	size_t nsentinels;
	const char *master_name;	/* the name the Sentinels monitor */
	const char *sentinel_password;	/* NULL or "": Sentinels without AUTH */
	const char *const *cluster;	/* with ncluster > 0, Redis Cluster seed nodes ("host:port") */
	size_t ncluster;
	const char *username;		/* NULL or "": AUTH password alone */
	const char *password;		/* NULL or "": no AUTH */
	int database;			/* SELECT when not 0 */
	int64_t connect_timeout_ms;	/* 0 = 500 */
	int64_t command_timeout_ms;	/* 0 = 2000 */
};

struct redis;

/* What a call that touches a fenced resource returns (besides a count, 0 or 1). */
enum redis_result {
	REDIS_FENCED = -2,	/* the lease is not (any more) held by the caller's token */
	REDIS_FAILED = -1,	/* error, message in err */
	REDIS_NONE = 0,		/* nothing done (not pending, not held, not halted) */
	REDIS_DONE = 1,
};

/* A reply. Error and status replies carry their text in str. */
enum redis_type { RR_STRING, RR_ARRAY, RR_INTEGER, RR_NIL, RR_STATUS, RR_ERROR };

struct redis_reply {
	enum redis_type type;
	int64_t integer;		/* RR_INTEGER */
	size_t len;			/* RR_STRING, RR_STATUS, RR_ERROR */
	char *str;			/* NUL-terminated (binary-safe with len) */
	size_t elements;		/* RR_ARRAY */
	struct redis_reply **element;
};
void redis_reply_free(struct redis_reply *rep);
/* A string or status reply. */
bool redis_reply_is_str(const struct redis_reply *rep);

/* A handle; does not connect yet. NULL on OOM. Free with redis_free. */
struct redis *redis_new(const struct redis_opts *o);
void redis_free(struct redis *r);

/*
 * Make sure the connection is up (AUTH, SELECT done). Never blocks longer
 * than connect_timeout; after a failure, further attempts are refused until
 * the backoff delay has passed (returns -1 at once). 0 when connected;
 * -1 with the reason in err (and in redis_errstr).
 */
int redis_ensure(struct redis *r, char *err, size_t errlen);
bool redis_connected(const struct redis *r);
/* The last error of this handle ("" when none yet) and whether it was an I/O error. */
const char *redis_errstr(const struct redis *r);
int redis_err(const struct redis *r);
/*
 * The address, for messages: the configured one, or with Sentinel
 * "sentinel <master_name> (<master address>)" once a master is known.
 */
const char *redis_address(const struct redis *r);
/*
 * Counts the connections this handle has made: a caller that sees it change
 * knows the server may be another one (a Sentinel failover, a restart) and
 * that acknowledgements sent to the old one may not have reached the new.
 */
unsigned redis_generation(const struct redis *r);

/*
 * Report an I/O or protocol error: the next redis_ensure drops the
 * connection and reconnects (a pipeline left half-read, say).
 */
void redis_mark_broken(struct redis *r);

/*
 * Change the socket receive timeout of the live connection for a blocking
 * command (XREADGROUP BLOCK); old gets the previous one (ms) to restore.
 * 0 or -1.
 */
int redis_swap_timeout(struct redis *r, int64_t ms, int64_t *old_ms);

/* ---- argument vectors (binary-safe) ---- */

struct redis_args {
	const char **v;
	size_t *len;
	size_t n, cap;
	char **owned;			/* strings the vector made (redis_args_fmt) */
	size_t nowned, capowned;
	int key;			/* index of the first key argument, -1 = none */
	bool oom;			/* a push failed: the vector must not be sent */
};
#define REDIS_ARGS_INIT { .key = -1 }

/* Add an argument; not copied (it must outlive a). 0 or -1 (a->oom set). */
int redis_args_push(struct redis_args *a, const char *s, size_t len);
int redis_args_str(struct redis_args *a, const char *s);
/* Add a key argument (redis_args_str that records where the keys are). */
int redis_args_key(struct redis_args *a, const char *s);
/* Add a formatted argument the vector keeps. */
int redis_args_fmt(struct redis_args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int redis_args_vfmt(struct redis_args *a, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
void redis_args_free(struct redis_args *a);

/* ---- commands ---- */

/*
 * Send a (connecting first) and wait for the reply: the reply (caller
 * frees; it may be an error reply), or NULL with err, the connection then
 * marked broken. An a->oom vector is not sent ("out of memory").
 */
struct redis_reply *redis_command(struct redis *r, const struct redis_args *a, char *err,
    size_t errlen);
/* redis_command where an error reply is a failure too (NULL with err). */
struct redis_reply *redis_command_ok(struct redis *r, const struct redis_args *a, char *err,
    size_t errlen);

/*
 * Pipelining: append commands (the connection must be up: redis_ensure),
 * then read their replies in order. On an I/O error both return -1 with err
 * and the connection is marked broken.
 */
int redis_append(struct redis *r, const struct redis_args *a, char *err, size_t errlen);
int redis_read_reply(struct redis *r, struct redis_reply **rep, char *err, size_t errlen);
/* Write what was appended now, not when the first reply is read. 0 or -1 (as above). */
int redis_flush(struct redis *r, char *err, size_t errlen);

/* redis_command(_ok when errors_fail) that frees a afterwards. */
struct redis_reply *redis_run(struct redis *r, struct redis_args *a, bool errors_fail, char *err,
    size_t errlen);

/* ---- reading replies ---- */

/* "redis <what>: unexpected reply" into err; returns -1. */
int redis_bad_reply(const char *what, char *err, size_t errlen);
/*
 * An error reply of a script: REDIS_FENCED for "FENCED ...", else
 * REDIS_FAILED; err gets "<what>: <message>". Frees rep.
 */
int redis_script_error(struct redis_reply *rep, const char *what, char *err, size_t errlen);
/*
 * A script's {a, b} reply whose element int_at is an integer: rep, or NULL
 * (rep freed) with *rc = REDIS_FENCED or -1 and err ("<errwhat>: <error
 * reply>" or "redis <what>: unexpected reply").
 */
struct redis_reply *redis_pair_reply(struct redis_reply *rep, int int_at, const char *what,
    const char *errwhat, int *rc, char *err, size_t errlen);
/* A reply that must be one integer: 0 with *out, or -1 with err. Frees rep (NULL: -1). */
int redis_int_reply(struct redis_reply *rep, const char *what, int64_t *out, char *err,
    size_t errlen);

/* ---- the script registry ---- */

/*
 * Run script name (contrib/lua/<name>.lua) with EVALSHA: nkeys keys, then
 * args and extra (either may be NULL). Loads the script the first time and
 * once more after NOSCRIPT. The reply (error replies included: some carry
 * meaning, like FENCED), or NULL with err.
 */
struct redis_reply *redis_eval(struct redis *r, const char *name, const char *const *keys,
    int nkeys, const struct redis_args *args, const struct redis_args *extra, char *err,
    size_t errlen);
/* redis_eval with binary-safe keys (keylens[i] bytes each; NULL = strlen). */
struct redis_reply *redis_eval_bin(struct redis *r, const char *name, const char *const *keys,
    const size_t *keylens, int nkeys, const struct redis_args *args,
    const struct redis_args *extra, char *err, size_t errlen);

/*
 * For pipelines: load script name unless loaded (before appending anything:
 * returns 1 after a SCRIPT LOAD round trip, 0 when already loaded, -1 with
 * err), then append its EVALSHA calls. After a NOSCRIPT reply
 * (redis_reply_is_noscript) call redis_script_forget, load and send again.
 */
int redis_script_load(struct redis *r, const char *name, char *err, size_t errlen);
int redis_append_eval(struct redis *r, const char *name, const char *const *keys, int nkeys,
    const struct redis_args *args, char *err, size_t errlen);
bool redis_reply_is_noscript(const struct redis_reply *rep);
void redis_script_forget(struct redis *r, const char *name);

/* redis_eval that frees args afterwards. */
struct redis_reply *redis_run_script(struct redis *r, const char *name, const char *const *keys,
    int nkeys, struct redis_args *args, const struct redis_args *extra, char *err,
    size_t errlen);

/* The text of script name, or NULL. */
const char *redis_script_source(const char *name);

/* ---- Redis Cluster (scaleno.conf(5) "redis") ---- */

#define REDIS_CLUSTER_SLOTS 16384

/*
 * The hash slot of a key: CRC16 (XMODEM) of its hash tag (the part between
 * the first "{" and the next "}", when not empty) or of the whole key,
 * modulo 16384, as Redis Cluster computes it.
 */
unsigned redis_key_slot(const char *key, size_t len);
/*
 * A redirect error reply: "MOVED <slot> <host:port>" or "ASK <slot>
 * <host:port>". 0 with *slot, addr and *ask set, -1 when it is neither.
 */
int redis_parse_redirect(const char *reply, int *slot, char *addr, size_t addrlen, bool *ask);
/* Redirects followed and slot-map loads made by this handle (for tests and logs). */
void redis_cluster_counts(const struct redis *r, unsigned *moved, unsigned *ask, unsigned *maps);

/* A handle from the redis section of scaleno.conf(5) (src/redis_conf.c). */
struct redis_conf;
struct redis *redis_new_conf(const struct redis_conf *conf);

/* "hiredis X.Y.Z", for `scaleno version`. */
const char *redis_version_string(void);
/*
 * After redis_ensure failed at once because the reconnect backoff holds
 * connecting off ("... (next attempt in Nms)"): the milliseconds left;
 * else 0 (the last failure was a real attempt, or none).
 */
int64_t redis_held_off_ms(const struct redis *r);

#endif
