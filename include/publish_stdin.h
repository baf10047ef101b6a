/*
 * publish_stdin — `scaleno publish -q QUEUE --stdin` (scaleno(8), "publish"):
 * one message per line of standard input, as JSON with its key and fields,
 * pipelined through the same publish script as a single `scaleno publish`.
 */
#ifndef SCALENO_PUBLISH_STDIN_H
#define SCALENO_PUBLISH_STDIN_H

#include <stdint.h>
#include <stdio.h>

/*
 * The command: load the configuration at path (NULL = the default), find
 * queue qname, publish every line of in, print "<partition> <entry id>" per
 * message to out in input order. ttl_ms 0 = the default key TTL. Returns the
 * exit code (scaleno(8), EXIT STATUS).
 */
int publish_stdin_cmd(const char *path, const char *qname, int64_t ttl_ms, FILE *in, FILE *out);

#endif
