/*
 * redis_keys — every Redis key of a queue, computed from its stream name and
 * partition count (scaleno.conf(5) queue.stream, queue.partitions; the key
 * layout is in scaleno-worker(8) "REDIS KEYS"). No other file formats a key.
 */
#ifndef SCALENO_REDIS_KEYS_H
#define SCALENO_REDIS_KEYS_H

#include <stddef.h>

enum redis_key_kind {
	RK_PART,	/* partition stream n: <stream>:<n>, or <stream> when partitions <= 1 */
	RK_RETRY,	/* retry stage n (1-based): <stream>:retry:<n> */
	RK_DLQ,		/* the dead-letter stream <stream>:dlq */
	RK_MEMBERS,	/* consumers sharing the partitions: <stream>:members */
	RK_RR,		/* publish's round-robin counter for keyless messages: <stream>:rr */
	RK_HALT,	/* partition n's halt record: <partition stream>:halt */
	RK_LEASE,	/* partition n's lease: <partition stream>:lease */
	RK_EPOCH,	/* partition n's fencing epoch: <partition stream>:lease:epoch */
};

/* The key (n: partition or stage, else ignored). Caller frees; NULL on OOM. */
char *redis_key(const char *stream, int partitions, enum redis_key_kind kind, int n);
/* The same into buf; -1 when it does not fit. */
int redis_key_buf(char *buf, size_t len, const char *stream, int partitions,
    enum redis_key_kind kind, int n);
/* publish's sticky map entry <stream>:key:<key> (key binary-safe). Caller frees. */
char *redis_key_map(const char *stream, const char *key, size_t keylen, size_t *outlen);

#endif
