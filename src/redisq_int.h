/*
 * redisq internals shared with the worker's Redis code (rstream.c): the
 * hiredis context behind a struct redisq, so both sides use one connection
 * logic (address parsing, AUTH, SELECT, timeouts, reconnect backoff).
 */
#ifndef SCALENO_REDISQ_INT_H
#define SCALENO_REDISQ_INT_H

#include <hiredis/hiredis.h>

#include "redisq.h"

/*
 * The live context, or NULL when not connected. Call redisq_ensure first.
 * Owned by r: do not free it; it may be replaced at the next redisq_ensure.
 */
redisContext *redisq_context(struct redisq *r);

/*
 * Report an I/O or protocol error seen on the context: the next
 * redisq_ensure frees it and reconnects.
 */
void redisq_mark_broken(struct redisq *r);

#endif
