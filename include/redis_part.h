/*
 * redis_part — the partitions of an order-critical queue
 * (scaleno-worker(8) "MODES"): a lease per partition with a fencing token,
 * the members heartbeat that shares them out, halt records and resume.
 * Returns as in redis_stream.h; REDIS_FENCED when the caller's token no
 * longer holds the lease.
 */
#ifndef SCALENO_REDIS_PART_H
#define SCALENO_REDIS_PART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "redis.h"
#include "redis_msg.h"

/*
 * Partition lease: acquire (SET NX PX with a fencing token "<owner>#<epoch>",
 * the epoch from INCR epoch_key), renew or release. Each call also reports
 * whether halt_key exists. Return 1 (held; token filled on acquire), 0 (held
 * by someone else / not ours any more), -1 error.
 */
int redis_part_acquire(struct redis *r, const char *lease_key, const char *epoch_key,
    const char *halt_key, const char *owner, int64_t ttl_ms, char *token, size_t toklen,
    bool *halted, char *err, size_t errlen);
int redis_part_renew(struct redis *r, const char *lease_key, const char *halt_key,
    const char *token, int64_t ttl_ms, bool *halted, char *err, size_t errlen);
int redis_part_release(struct redis *r, const char *lease_key, const char *token,
    char *err, size_t errlen);

/*
 * Heartbeat self in the members set (members_key) and return how many
 * consumers were seen within ttl_ms, self included.
 */
int redis_part_members(struct redis *r, const char *members_key, const char *self,
    int64_t ttl_ms, char *err, size_t errlen);

/* Write the halt record (hash fields) while lease_key holds token. 1, REDIS_FENCED, -1. */
int redis_halt_set(struct redis *r, const char *halt_key, const char *lease_key,
    const char *token, const struct redis_fields *fields, char *err, size_t errlen);
/* Read the halt record into out (fields of a hash). 1 halted, 0 not, -1 error. */
int redis_halt_get(struct redis *r, const char *halt_key, struct message *out, char *err,
    size_t errlen);

/*
 * resume: with skip false, reset the halting message's delivery count and
 * remove the halt record (the owner retries it); with skip true, atomically
 * XADD fields to dlq, XACK the message (expected_id must still be the halting
 * one) and remove the halt record. Returns 1 done, 0 not halted, -1 error;
 * halted_id and dlq_id (REDIS_ID_MAX, may be NULL) are filled.
 */
int redis_resume(struct redis *r, const char *halt_key, const char *stream,
    const char *group, const char *dlq, bool skip, const char *expected_id,
    const struct redis_fields *fields, char *halted_id, char *dlq_id, char *err, size_t errlen);

/*
 * The owner's probe of a halted partition (worker.halt_probe) handled the
 * halting message id: acknowledge it and remove the halt record, in one
 * script, only while the record still names id. 1 done, 0 not halted,
 * -1 error (a record naming another message gives an error "CHANGED").
 */
int redis_halt_done(struct redis *r, const char *halt_key, const char *stream, const char *group,
    const char *id, char *err, size_t errlen);
/* The probe failed again: update fields of the record while it still names id. 1, 0, -1. */
int redis_halt_probed(struct redis *r, const char *halt_key, const char *stream, const char *group,
    const char *id, const struct redis_fields *fields, char *err, size_t errlen);

#endif
