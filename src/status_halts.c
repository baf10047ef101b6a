/*
 * status_halts.c — the part of `scaleno status -q QUEUE` that lists the
 * queue's halted partitions (scaleno(8), status): for each, the message it
 * halted on, the error, the attempts and since when, read from the halt
 * records in Redis.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "redis.h"
#include "redis_keys.h"
#include "redis_msg.h"
#include "redis_part.h"
#include "redis_stream.h"
#include "status_halts.h"
#include "util.h"

/* A field of a halt record, NUL-terminated into buf ("-" when absent). */
static const char *
halt_field(const struct message *h, const char *name, char *buf, size_t len)
{
	size_t n;
	const char *v = redis_msg_field(h, name, &n);

	if (v == NULL)
		return "-";
	snprintf(buf, len, "%.*s", (int)n, v);
	for (char *c = buf; *c != '\0'; c++)
		if (*c == '\n' || *c == '\r' || *c == '\t')
			*c = ' ';
	return buf;
}

int
status_halts_print(const struct config *cfg, const struct queue_policy *q)
{
	struct redis *r = redis_new_conf(&cfg->redis);
	char err[512], since[64], ago[32], at[24], error[512], id[REDIS_ID_MAX + 1];
	int64_t now = 0;
	int nhalted = 0, rc = 0;

	if (r == NULL || redis_time_ms(r, &now, err, sizeof(err)) < 0) {
		fprintf(stderr, "scaleno status: redis: %s\n", r == NULL ? "out of memory" : err);
		redis_free(r);
		return -1;
	}
	for (int p = 0; p < q->partitions; p++) {
		char *stream = redis_key(q->stream, q->partitions, RK_PART, p);
		char *halt = redis_key(q->stream, q->partitions, RK_HALT, p);
		struct message h;
		int got = -1;

		if (stream == NULL || halt == NULL)
			snprintf(err, sizeof(err), "out of memory");
		else
			got = redis_halt_get(r, halt, &h, err, sizeof(err));
		if (got < 0) {
			fprintf(stderr, "scaleno status: %s: %s\n", halt != NULL ? halt : q->stream, err);
			rc = -1;
		} else if (got == 1) {
			const char *t = halt_field(&h, "time-ms", at, sizeof(at));
			int64_t ms = strtoll(t, NULL, 10);

			if (nhalted++ == 0)
				printf("\nhalted partitions of %s:\n%-9s %-24s %-22s %8s  %-24s %8s  %s\n",
				    q->name, "PARTITION", "STREAM", "HEAD ID", "ATTEMPTS", "SINCE", "FOR",
				    "ERROR");
			util_format_iso_ms(ms > 0 ? ms : -1, since, sizeof(since));
			util_format_duration(ms > 0 && now > ms ? (now - ms) / 1000 * 1000 : 0, ago,
			    sizeof(ago));
			printf("%-9d %-24s %-22s %8s  %-24s %8s  %s\n", p, stream,
			    halt_field(&h, "id", id, sizeof(id)),
			    halt_field(&h, "attempts", at, sizeof(at)), since, ms > 0 ? ago : "-",
			    halt_field(&h, "error", error, sizeof(error)));
			redis_msg_free(&h);
		}
		free(stream);
		free(halt);
	}
	if (nhalted == 0 && rc == 0 && q->mode == MODE_HALT)
		printf("\nno partition of %s is halted\n", q->name);
	else if (nhalted > 0)
		printf("resume with: scaleno resume -q %s -p PARTITION (--skip to dead-letter the "
		    "head message)\n", q->name);
	redis_free(r);
	return rc;
}
