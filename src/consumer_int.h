/*
 * consumer_int.h — the state of one consumer process, shared by consumer.c
 * (reading, handling, acknowledging) and consumer_part.c (the partition
 * leases of order-critical queues). Not an interface for other modules.
 */
#ifndef SCALENO_CONSUMER_INT_H
#define SCALENO_CONSUMER_INT_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "handler.h"
#include "modes.h"
#include "redis.h"
#include "redis_msg.h"
#include "redis_stream.h"
#include "wstats.h"

#define LEASE_MARGIN_MS QUEUE_LEASE_MARGIN_MS	/* lease ttl = handler timeout + this */
#define READ_LEASE_MARGIN_MS 2000	/* a blocking read ends this long before the lease can */
#define CLAIM_COUNT 100
#define TAKEOVER_MAX_ROUNDS 1000	/* XAUTOCLAIM rounds when taking a partition over */
#define DLQ_DEPTH_EVERY_MS 5000
#define ERR_BACKOFF_BASE_MS 100
#define ERR_BACKOFF_CAP_MS 5000
#define INFLIGHT_MAX 256	/* pipelined pipe handler: messages in flight at most */
#define PREFETCH_MAX_MS 50	/* pipelined: read the next batch ahead only after faster batches */

struct source {
	char *key;		/* stream key */
	int part;		/* partition index (main streams), -1 for retry stages */
	int stage;		/* 0 = main stream, k = retry stage k */
	int64_t delay_ms;	/* retry stage delay */
	char pend_cursor[REDIS_ID_MAX];	/* own pending entries are read after this id */
	bool pend_done;
	char claim_cursor[REDIS_ID_MAX];
	int64_t next_due;	/* retry stage: monotonic ms of the next due check */
};

struct partition {
	char *lease_key, *epoch_key, *halt_key;
	char token[320];
	bool held, halted;
	int64_t renewed_at;	/* monotonic ms of the last successful acquire/renew */
	int64_t next_probe;	/* halted: monotonic ms of the next try of its head (halt_probe) */
};

struct consumer {
	const struct queue_policy *q;
	struct worker_stats *stats;
	volatile sig_atomic_t *stop;
	const volatile int64_t *drain_deadline;	/* for handler runs outside consumer.c */
	char name[256];
	struct redis *r;
	struct handler *h;
	struct mode_limits lim;
	bool ordered;
	struct source *src;	/* partitions first (src[i].part == i), then stages */
	int nsrc, npart;
	struct partition *part;
	char *dlq, *members_key;
	bool ready;		/* groups created */
	int64_t lease_ttl_ms;
	int64_t next_claim, next_reap, next_lease, next_depth;
	unsigned err_streak;	/* Redis failures in a row */
	unsigned generation;	/* redis_generation when the pending cursors were last reset */
	unsigned start_streak;	/* handler start failures in a row */
	const char **rkeys, **rids;	/* the streams of one XREADGROUP ... > */
	int *rmap;		/* their source indexes */
	struct redis_batch batch;
	size_t batch_pos;	/* next entry of batch to handle (< batch.n: held for a retry) */
	bool recovering;	/* batch is from our own pending list: ack each at once */
	const char **ackids;	/* per batch: ids to acknowledge, by source */
	int *acksrc;
	size_t nacks, capacks;
	/*
	 * Parallel modes with a pipe handler: up to `window` entries of the
	 * batch are sent to the handler at once (run_ahead); their first
	 * verdicts wait here, in batch order, until handle() takes them.
	 */
	bool pipelined;
	size_t window;
	struct message *ahead_msg;
	struct handler_result *ahead_res;
	size_t *ahead_pos;	/* batch index of each */
	size_t nahead, ahead_next;	/* verdicts held, next one to take */
	int64_t held_at;	/* when the batch's entries were last fetched or kept fresh */
	bool solo;		/* the handler answered out of step: the rest of the batch one at a time */
	/*
	 * Pipelined: successes not acknowledged yet, oldest first. They go out
	 * in the round trip of a later read, once the surplus watches of their
	 * exchange and of the next one are over (scaleno-worker(8) "pipe").
	 */
	struct deferred *dfr;
	size_t ndfr, capdfr;
	const char **dfrids;	/* capdfr: the ids of one round trip's XACKs */
	struct redis_acks *dfrsets;	/* nsrc: one XACK per stream */
	unsigned breaks_seen;	/* handler_break_count when last looked */
	bool unwatched;		/* an exchange ran whose surplus watch is still to come */
	/*
	 * Pipelined, steady: the next batch, read while the handler worked on
	 * this one (prefetch_send/_recv in consumer.c).
	 */
	struct redis_batch next;
	bool pf_active;		/* its round trip is under way */
	size_t pf_nsets;	/* acknowledgements riding with it, in dfrsets */
	int pf_nk;		/* streams read */
	int64_t last_batch_ms;	/* how long the last batch took, -1 = none yet */
};

/* A success waiting for its acknowledgement (pipelined). */
struct deferred {
	char id[REDIS_ID_MAX];
	int src;
	int watched;		/* surplus watches passed since it ran */
	int64_t at;		/* monotonic ms when it ran */
	bool sending;		/* chosen by consumer_ack_select */
};

/* Log a Redis failure, count it, and wait, longer each time in a row. */
void consumer_redis_trouble(struct consumer *c, const char *what, const char *err);
/* Read source s's own pending entries again from the start, before anything new. */
void consumer_pending_reset(struct source *s);

/* ---- consumer_ack.c: acknowledging ---- */

/* Note e's success (or drop) for the acknowledgement of its batch. */
void consumer_ack_later(struct consumer *c, const struct message *e);
/* Acknowledge what consumer_ack_later noted, now. 0, or -1 (they stay pending). */
int consumer_ack_flush(struct consumer *c);
/*
 * Pipelined: move what consumer_ack_later noted to the successes waiting
 * for their surplus watches. 0, or -1 when they were dropped (a surplus).
 */
int consumer_ack_defer(struct consumer *c);
/* A surplus or a handler's end since the last look drops every waiting success (true then). */
bool consumer_break_check(struct consumer *c);
/* After a read's round trip: the surplus watch of the last exchange. */
void consumer_ack_watched(struct consumer *c);
/* The waiting successes that go out now, in c->dfrsets; the number of sets. */
size_t consumer_ack_select(struct consumer *c, bool all);
/* After the round trip that carried c->dfrsets[0..nsets): failures stay pending. */
void consumer_ack_sent(struct consumer *c, size_t nsets);
/* Watch for a surplus, then acknowledge every waiting success now. 0 or -1. */
int consumer_ack_drain(struct consumer *c);

/* ---- consumer_part.c: partition leases (order-critical queues) ---- */

/* Renew (or give up) held leases, acquire up to our fair share. */
void consumer_leases_maintain(struct consumer *c, int64_t now);
/*
 * Before a handler run under a lease: the lease must outlast the run (the
 * handler timeout), or the partition stops here. 0 ok, -1 stop it.
 */
int consumer_lease_ensure(struct consumer *c, int i);
void consumer_leases_release(struct consumer *c);
/* Partition i is no longer ours (why: for the log). */
void consumer_part_lost(struct consumer *c, int i, const char *why);
/* Write e's halt record (mode halt) and stop its partition until resumed. */
void consumer_halt(struct consumer *c, const struct message *e, int attempts, const char *error);
/* Try the head message of each halted partition whose worker.halt_probe has come. */
void consumer_halt_probe(struct consumer *c, int64_t now);

#endif
