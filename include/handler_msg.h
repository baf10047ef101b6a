/*
 * handler_msg — the message as the handler protocols send it:
 * scaleno-worker(8) "The message" (fields, meta, base64 of binary values).
 */
#ifndef SCALENO_HANDLER_MSG_H
#define SCALENO_HANDLER_MSG_H

#include <stddef.h>

#include "redis_msg.h"

/* JSON text of m as the protocols send it (one line, no newline). Caller frees. */
char *handler_message_json(const struct message *m);

/* The same plus "\n"; *len gets its length. NULL when memory ran out. Caller frees. */
char *handler_message_line(const struct message *m, size_t *len);

#endif
