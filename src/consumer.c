/* consumer.c — placeholder until the consumer module lands. */
#include <stdio.h>

#include "consumer.h"
#include "cli.h"

int
consumer_main(const struct config *cfg, const struct queue_policy *q, int slot,
    struct worker_stats *stats, volatile sig_atomic_t *stop)
{
	(void)cfg; (void)q; (void)slot; (void)stats; (void)stop;
	fprintf(stderr, "scaleno: consumer not implemented yet\n");
	return EXIT_RUNTIME;
}

void
consumer_name(int slot, char *buf, size_t len)
{
	snprintf(buf, len, "consumer/%d", slot);
}
