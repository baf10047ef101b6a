/*
 * wstats — worker counters shared between the supervisor and its consumer
 * processes: one anonymous MAP_SHARED block created before forking, updated
 * with atomic adds by consumers, read by the supervisor's /metrics.
 */
#ifndef SCALENO_WSTATS_H
#define SCALENO_WSTATS_H

#include <stdint.h>

#define WSTATS_MAX_PARTITIONS 4096	/* = the largest "partitions" config accepts */
#define WSTATS_NBUCKETS 12

/* Histogram bucket upper bounds in seconds (the last is +Inf). */
extern const double wstats_buckets[WSTATS_NBUCKETS];

enum wstats_result { WS_OK = 0, WS_RETRIED, WS_DROPPED, WS_DEAD_LETTERED, WS_NRESULTS };

struct worker_stats {
	uint64_t messages[WS_NRESULTS];		/* scaleno_messages_total{result} */
	uint64_t duration_buckets[WSTATS_NBUCKETS]; /* cumulative at render time */
	uint64_t duration_count;
	uint64_t duration_sum_us;
	uint64_t consumer_restarts;
	uint64_t claimed;			/* entries reclaimed from dead consumers */
	uint64_t redis_errors;
	int64_t dlq_depth;			/* last seen XLEN <stream>:dlq; -1 = unknown */
	int64_t crash_loop;			/* consumer slots now in a crash loop */
	int64_t consumers_running;		/* consumer processes alive (supervisor) */
	uint8_t halted[WSTATS_MAX_PARTITIONS];	/* 1 = partition halted */
	int npartitions;
};

/* Map a zeroed block shared with future children; NULL on failure. */
struct worker_stats *wstats_create(int npartitions);
void wstats_destroy(struct worker_stats *s);
void wstats_count(struct worker_stats *s, enum wstats_result r);
void wstats_observe(struct worker_stats *s, double seconds);
void wstats_set_halted(struct worker_stats *s, int partition, int halted);
/* Store a gauge (dlq_depth, crash_loop, consumers_running) atomically. */
void wstats_set(int64_t *gauge, int64_t value);
/* Add n to a counter (consumer_restarts, claimed, redis_errors) atomically. */
void wstats_add(uint64_t *counter, uint64_t n);
/* Append the Prometheus text for queue to buf (util.h strbuf). */
struct strbuf;
void wstats_render(const struct worker_stats *s, const char *queue, struct strbuf *buf);

#endif
