/*
 * consumer.c — one consumer process of `scaleno worker` (scaleno-worker(8)): reads its
 * queue with XREADGROUP, own pending entries first, runs the handler, and
 * applies the queue's mode through modes.c; reclaims dead consumers'
 * entries, reaps idle consumers, holds partition leases for order-critical
 * queues, and drains on SIGINT/SIGTERM.
 *
 * Order-critical queues (modes 2 and 4): a partition is read only by the
 * holder of its lease; on taking a lease the new owner claims every pending
 * entry of the partition and handles them in id order before new ones;
 * every ack is fenced by the lease token and done per message, so only the
 * message in flight can ever be redelivered.
 *
 * Parallel queues with a pipe handler send up to worker.batch entries to
 * the handler at once (run_ahead), which saves a round trip to the handler
 * per message; each verdict then goes through the same handle() as a
 * single run, and the entries the handler did not get to are run again
 * without counting an attempt. While the handler works on a batch, the
 * next one is read (prefetch_send/_recv), and the acknowledgements that
 * are due ride in the same round trip (consumer_ack.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alert.h"
#include "consumer.h"
#include "consumer_int.h"
#include "exitcode.h"
#include "handler.h"
#include "log.h"
#include "modes.h"
#include "redis_keys.h"
#include "redis_part.h"
#include "redis_stream.h"
#include "util.h"


/* Set by the signal handler: when the drain began, plus drain_timeout. */
static volatile sig_atomic_t *sig_stop;
static volatile int64_t drain_deadline_ms;
static int64_t drain_timeout_ms;

static void
on_stop_signal(int sig)
{
	(void)sig;
	if (drain_deadline_ms == 0)
		drain_deadline_ms = util_now_ms() + drain_timeout_ms;
	if (sig_stop != NULL)
		*sig_stop = 1;
}

void
consumer_name(int slot, char *buf, size_t len)
{
	const char *job = getenv("NOMAD_JOB_ID"), *group = getenv("NOMAD_GROUP_NAME");
	const char *idx = getenv("NOMAD_ALLOC_INDEX");
	char host[256];

	if (job != NULL && *job && group != NULL && *group && idx != NULL && *idx) {
		snprintf(buf, len, "%s/%s/%s/%d", job, group, idx, slot);
		return;
	}
	if (gethostname(host, sizeof(host)) != 0)
		util_strlcpy(host, "localhost", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	snprintf(buf, len, "%s/%d", host, slot);
}

/* ---- setup ---- */

static void handler_tick(void *arg);

static void
consumer_free(struct consumer *c)
{
	for (int i = 0; i < c->nsrc; i++)
		free(c->src[i].key);
	for (int i = 0; i < c->npart; i++) {
		free(c->part[i].lease_key);
		free(c->part[i].epoch_key);
		free(c->part[i].halt_key);
	}
	/* The arrays and keys set up once by consumer_init. */
	void *owned[] = { c->src, c->part, c->dlq, c->members_key, c->ackids, c->acksrc,
		c->rkeys, c->rids, c->rmap, c->ahead_msg, c->ahead_res, c->ahead_pos, c->dfr,
		c->dfrids, c->dfrsets };

	for (size_t i = 0; i < sizeof(owned) / sizeof(owned[0]); i++)
		free(owned[i]);
	redis_batch_free(&c->batch);
	redis_batch_free(&c->next);
	if (c->h != NULL)
		handler_free(c->h);
	if (c->r != NULL)
		redis_free(c->r);
}

static int
consumer_init(struct consumer *c, const struct config *cfg, const struct queue_policy *q,
    int slot, struct worker_stats *stats, volatile sig_atomic_t *stop, char *err, size_t errlen)
{
	int nstage;

	memset(c, 0, sizeof(*c));
	c->q = q;
	c->stats = stats;
	c->stop = stop;
	c->drain_deadline = &drain_deadline_ms;
	c->last_batch_ms = -1;	/* none yet: no reading ahead before one is seen */
	consumer_name(slot, c->name, sizeof(c->name));
	modes_limits(q, &c->lim);
	c->ordered = q->mode == MODE_ORDERED_DROP || q->mode == MODE_HALT;
	c->npart = q->partitions > 0 ? q->partitions : 1;
	nstage = q->mode == MODE_DLQ ? (int)q->worker.nretry_delays : 0;
	c->lease_ttl_ms = queue_lease_ttl_ms(q->worker.timeout_ms);
	c->src = calloc((size_t)(c->npart + nstage), sizeof(*c->src));
	c->part = calloc((size_t)c->npart, sizeof(*c->part));
	c->rkeys = calloc((size_t)(c->npart + nstage), sizeof(*c->rkeys));
	c->rids = calloc((size_t)(c->npart + nstage), sizeof(*c->rids));
	c->rmap = calloc((size_t)(c->npart + nstage), sizeof(*c->rmap));
	c->dlq = redis_key(q->stream, c->npart, RK_DLQ, 0);
	c->members_key = redis_key(q->stream, c->npart, RK_MEMBERS, 0);
	if (c->src == NULL || c->part == NULL || c->dlq == NULL || c->members_key == NULL ||
	    c->rkeys == NULL || c->rids == NULL || c->rmap == NULL)
		goto oom;
	/* Order-critical modes stay strictly one message at a time. */
	c->pipelined = !c->ordered && q->worker.protocol == PROTO_PIPE && q->worker.batch > 1;
	if (c->pipelined) {
		c->window = q->worker.batch < INFLIGHT_MAX ? (size_t)q->worker.batch : INFLIGHT_MAX;
		c->ahead_msg = calloc(c->window, sizeof(*c->ahead_msg));
		c->ahead_res = calloc(c->window, sizeof(*c->ahead_res));
		c->ahead_pos = calloc(c->window, sizeof(*c->ahead_pos));
		c->dfrsets = calloc((size_t)(c->npart + nstage), sizeof(*c->dfrsets));
		if (c->ahead_msg == NULL || c->ahead_res == NULL || c->ahead_pos == NULL ||
		    c->dfrsets == NULL)
			goto oom;
	}
	for (int i = 0; i < c->npart; i++) {
		struct source *s = &c->src[c->nsrc++];
		struct partition *p = &c->part[i];

		s->key = redis_key(q->stream, c->npart, RK_PART, i);
		s->part = i;
		if (s->key == NULL)
			goto oom;
		p->lease_key = redis_key(q->stream, c->npart, RK_LEASE, i);
		p->epoch_key = redis_key(q->stream, c->npart, RK_EPOCH, i);
		p->halt_key = redis_key(q->stream, c->npart, RK_HALT, i);
		if (p->lease_key == NULL || p->epoch_key == NULL || p->halt_key == NULL)
			goto oom;
	}
	for (int k = 1; k <= nstage; k++) {
		struct source *s = &c->src[c->nsrc++];

		s->key = redis_key(q->stream, c->npart, RK_RETRY, k);
		s->part = -1;
		s->stage = k;
		s->delay_ms = q->worker.retry_delays_ms[k - 1];
		if (s->key == NULL)
			goto oom;
	}
	for (int i = 0; i < c->nsrc; i++)
		util_strlcpy(c->src[i].pend_cursor, "0", REDIS_ID_MAX);
	(void)cfg;
	if ((c->r = redis_new_conf(&q->redis)) == NULL)
		goto oom;
	if ((c->h = handler_new(q, err, errlen)) == NULL)
		return -1;
	handler_set_tick(c->h, handler_tick, c);
	handler_defer_settle(c->h, c->pipelined);
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
	return -1;
}

/* ---- helpers ---- */

/* Log a failure that is nobody's message's fault and wait, longer each time in a row. */
static void
trouble(struct consumer *c, unsigned *streak, const char *what, const char *err)
{
	int64_t ms = util_backoff_ms(ERR_BACKOFF_BASE_MS, ERR_BACKOFF_CAP_MS, *streak);

	if (*streak < 32)
		(*streak)++;
	log_warnx("%s: consumer %s: %s: %s (retrying in %" PRId64 "ms)", c->q->name, c->name, what,
	    err, ms);
	util_sleep_ms(ms, c->stop);
}

/*
 * Redis came back without the queue's keys (a restart without persistence,
 * a failover to an empty replica, FLUSHALL): the groups are created again
 * before the next read, and everything is read from the start.
 */
static void
keys_gone(struct consumer *c, const char *err)
{
	if (strstr(err, "NOGROUP") == NULL && strstr(err, "no such key") == NULL)
		return;
	if (c->ready)
		log_warnx("%s: consumer %s: the queue's consumer group or stream is gone (%s); "
		    "creating them again", c->q->name, c->name, err);
	c->ready = false;
	for (int i = 0; i < c->nsrc; i++) {
		consumer_pending_reset(&c->src[i]);
		c->src[i].claim_cursor[0] = '\0';
		c->src[i].next_due = 0;
	}
}

void
consumer_redis_trouble(struct consumer *c, const char *what, const char *err)
{
	int64_t held = redis_held_off_ms(c->r);

	wstats_add(&c->stats->redis_errors, 1);
	keys_gone(c, err);
	if (held > 0) {
		/* The failed attempt was logged with its own delay: wait that out, once. */
		log_debug("%s: consumer %s: %s: %s", c->q->name, c->name, what, err);
		util_sleep_ms(held, c->stop);
		return;
	}
	trouble(c, &c->err_streak, what, err);
}

static bool
source_active(const struct consumer *c, const struct source *s)
{
	if (s->part < 0)
		return true;
	if (!c->ordered)
		return true;
	return c->part[s->part].held && !c->part[s->part].halted;
}

void
consumer_pending_reset(struct source *s)
{
	util_strlcpy(s->pend_cursor, "0", REDIS_ID_MAX);
	s->pend_done = false;
}

static int
create_groups(struct consumer *c)
{
	char err[512];

	for (int i = 0; i < c->nsrc; i++)
		if (redis_group_create(c->r, c->src[i].key, c->q->group, err, sizeof(err)) < 0) {
			consumer_redis_trouble(c, "creating the consumer group", err);
			return -1;
		}
	c->ready = true;
	return 0;
}

/* ---- periodic work ---- */

static void
reclaim(struct consumer *c)
{
	char err[512];

	for (int i = 0; i < c->nsrc; i++) {
		struct source *s = &c->src[i];
		int64_t claimed, deleted;

		if (redis_stream_autoclaim(c->r, s->key, c->q->group, c->name, c->q->worker.claim_idle_ms,
		    s->claim_cursor, CLAIM_COUNT, &claimed, &deleted, err, sizeof(err)) < 0) {
			consumer_redis_trouble(c, "XAUTOCLAIM", err);
			return;
		}
		if (claimed > 0) {
			log_info("%s: consumer %s reclaimed %" PRId64 " entries of %s idle longer than "
			    "claim_idle", c->q->name, c->name, claimed, s->key);
			wstats_add(&c->stats->claimed, (uint64_t)claimed);
			consumer_pending_reset(s);
		}
		if (deleted > 0)
			log_warnx("%s: %s: %" PRId64 " pending entries were gone from the stream "
			    "(trimmed or deleted) and are dropped from the pending list", c->q->name,
			    s->key, deleted);
	}
}

static void
reap(struct consumer *c)
{
	char err[512];

	for (int i = 0; i < c->nsrc; i++) {
		int n = redis_reap_consumers(c->r, c->src[i].key, c->q->group, c->name,
		    c->q->worker.consumer_idle_ms, err, sizeof(err));

		if (n < 0) {
			consumer_redis_trouble(c, "removing idle consumers", err);
			return;
		}
		if (n > 0)
			log_info("%s: removed %d idle consumer(s) with nothing pending from %s",
			    c->q->name, n, c->src[i].key);
	}
}

static void
periodic(struct consumer *c)
{
	int64_t now = util_now_ms(), claim_every, reap_every;
	char err[512];

	if (c->ordered && now >= c->next_lease) {
		consumer_leases_maintain(c, now);
		c->next_lease = now + (c->lease_ttl_ms / 3 < 1000 ? c->lease_ttl_ms / 3 : 1000);
	}
	if (c->q->mode == MODE_HALT && c->q->worker.halt_probe_ms > 0)
		consumer_halt_probe(c, now);
	/* Ordered partitions change hands only with their lease (see partition_take). */
	claim_every = c->q->worker.claim_idle_ms / 2;
	claim_every = claim_every < 250 ? 250 : claim_every > 30000 ? 30000 : claim_every;
	if (!c->ordered && now >= c->next_claim) {
		reclaim(c);
		c->next_claim = now + claim_every;
	}
	reap_every = c->q->worker.consumer_idle_ms / 2;
	reap_every = reap_every < 1000 ? 1000 : reap_every > 60000 ? 60000 : reap_every;
	if (now >= c->next_reap) {
		reap(c);
		c->next_reap = now + reap_every;
	}
	if (now >= c->next_depth) {
		int64_t depth;

		if (redis_stream_len(c->r, c->dlq, &depth, err, sizeof(err)) == 0)
			wstats_set(&c->stats->dlq_depth, depth);
		c->next_depth = now + DLQ_DEPTH_EVERY_MS;
	}
}

/* ---- reading ---- */

/*
 * Whether the next read is one of new entries only (no own pending entries
 * to read first, no retry stage due): the one that carries waiting
 * successes.
 */
static bool
steady(const struct consumer *c, int64_t now)
{
	for (int i = 0; i < c->nsrc; i++) {
		const struct source *s = &c->src[i];

		if (!source_active(c, s))
			continue;
		if (!s->pend_done || (s->stage > 0 && now >= s->next_due))
			return false;
	}
	return true;
}

/*
 * Fill c->batch: own pending entries first (after a restart, a claim or a
 * takeover), then due retry-stage entries, then new entries (blocking).
 * Returns the number of entries, or -1 after a Redis error (already handled).
 */
static int
fetch(struct consumer *c)
{
	int64_t now = util_now_ms(), block = c->q->worker.block_ms;
	char err[512];
	int n = 0, nk = 0;
	size_t nsets;

	redis_batch_clear(&c->batch);
	c->recovering = false;
	c->nahead = c->ahead_next = 0;
	c->solo = false;
	if (redis_ensure(c->r, err, sizeof(err)) < 0) {
		consumer_redis_trouble(c, "connecting", err);
		return -1;
	}
	if (redis_generation(c->r) != c->generation) {
		/*
		 * A new connection, maybe to a new master after a failover: acks that
		 * never reached it left our entries pending there. Finish those first,
		 * in order (scaleno-worker(8) "FAILOVER").
		 */
		for (int i = 0; i < c->nsrc; i++)
			consumer_pending_reset(&c->src[i]);
		if (c->generation != 0)
			log_info("%s: consumer %s reconnected to redis %s; own pending entries first",
			    c->q->name, c->name, redis_address(c->r));
		c->generation = redis_generation(c->r);
	}
	/* Waiting successes ride with a read of new entries only; else they go now. */
	if (c->ndfr > 0 && !steady(c, now))
		(void)consumer_ack_drain(c);
	/* Our pending list is to be read again: the entries read ahead are in it. */
	for (int i = 0; i < c->nsrc && c->next.n > 0; i++)
		if (!c->src[i].pend_done && source_active(c, &c->src[i]))
			redis_batch_clear(&c->next);
	if (c->next.n > 0 && steady(c, now)) {
		struct redis_batch empty = c->batch;

		c->batch = c->next;
		c->next = empty;
		consumer_ack_watched(c);	/* the last exchange's */
		return (int)c->batch.n;
	}
	for (int i = 0; i < c->nsrc; i++) {
		struct source *s = &c->src[i];
		const char *k = s->key, *id = s->pend_cursor;

		if (s->pend_done || !source_active(c, s))
			continue;
		/*
		 * One at a time, acknowledged at once: if one of them kills us again,
		 * only it gets another delivery counted, not its batch-mates.
		 */
		n = redis_stream_read(c->r, c->q->group, c->name, &k, &id, 1, 1, -1, &c->batch, err,
		    sizeof(err));
		if (n < 0) {
			consumer_redis_trouble(c, "reading own pending entries", err);
			return -1;
		}
		if (n == 0) {
			s->pend_done = true;
			continue;
		}
		for (size_t j = 0; j < c->batch.n; j++)
			c->batch.e[j].src = i;
		util_strlcpy(s->pend_cursor, c->batch.e[c->batch.n - 1].id, REDIS_ID_MAX);
		c->recovering = true;
		return n;
	}
	for (int i = 0; i < c->nsrc; i++) {
		struct source *s = &c->src[i];
		int64_t next_due;

		if (s->stage == 0)
			continue;
		if (now < s->next_due) {
			if (s->next_due - now < block)
				block = s->next_due - now;
			continue;
		}
		n = redis_stream_read_due(c->r, s->key, c->q->group, c->name, s->delay_ms,
		    c->q->worker.batch, i, &c->batch, &next_due, err, sizeof(err));
		if (n < 0) {
			/* Not a reason to leave the main stream unread: try this stage later. */
			wstats_add(&c->stats->redis_errors, 1);
			log_warnx("%s: consumer %s: reading retry stage %s: %s (trying it again in "
			    "%dms)", c->q->name, c->name, s->key, err, ERR_BACKOFF_CAP_MS);
			keys_gone(c, err);
			s->next_due = now + ERR_BACKOFF_CAP_MS;
			continue;
		}
		if (n > 0)
			return n;
		/* Entries added later fall due a whole delay later at the earliest. */
		if (next_due < 0 || next_due > s->delay_ms)
			next_due = s->delay_ms;
		s->next_due = now + next_due;
		if (next_due < block)
			block = next_due;
	}
	for (int i = 0; i < c->nsrc; i++) {
		if (c->src[i].stage != 0 || !source_active(c, &c->src[i]))
			continue;
		if (c->ordered) {
			/*
			 * The read must end before the lease can pass to another
			 * consumer: a message delivered after that would stay
			 * pending here while the new owner goes on with the next.
			 */
			int64_t left = c->part[i].renewed_at + c->lease_ttl_ms - now -
			    READ_LEASE_MARGIN_MS;

			if (left < 1)
				continue;	/* renewed (or given up) by periodic() first */
			if (left < block)
				block = left;
		}
		c->rmap[nk] = i;
		c->rkeys[nk] = c->src[i].key;
		c->rids[nk++] = ">";
	}
	if (nk == 0) {
		/*
		 * Nothing we may read (no lease, or halted): wait for a change, no
		 * longer than until the next lease round, which may bring one.
		 */
		(void)consumer_ack_drain(c);
		if (c->ordered && c->next_lease - now < block)
			block = c->next_lease - now;
		util_sleep_ms(block > 0 ? block : 1, c->stop);
		return 0;
	}
	if (block < 1)
		block = 1;	/* BLOCK 0 would mean forever */
	/*
	 * Pipelined: the successes whose watches are over go out in this
	 * round trip, and the surplus watch of the last exchange runs while it
	 * is under way. With successes still waiting the read does not block:
	 * on an empty queue they go out at once (consumer_ack_drain).
	 */
	nsets = c->ndfr > 0 ? consumer_ack_select(c, false) : 0;
	n = redis_stream_ack_read(c->r, c->dfrsets, nsets, c->q->group, c->name, c->rkeys, c->rids,
	    nk, c->q->worker.batch, c->ndfr > 0 ? -1 : block, &c->batch, err, sizeof(err));
	if (nsets > 0)
		consumer_ack_sent(c, nsets);
	if (c->pipelined && n == 0)
		(void)consumer_ack_drain(c);	/* with a longer watch: the queue ran empty */
	else if (c->pipelined)
		consumer_ack_watched(c);
	if (n < 0) {
		consumer_redis_trouble(c, "XREADGROUP", err);
		return -1;
	}
	for (size_t j = 0; j < c->batch.n; j++)
		c->batch.e[j].src = c->rmap[c->batch.e[j].src];
	return n;
}

/* ---- moving ---- */

static int
move_entry(struct consumer *c, const struct message *e, const char *dst, int to_stage,
    int attempts, const char *error)
{
	const struct source *s = &c->src[e->src];
	struct redis_fields f = { 0 };
	char err[512], nid[REDIS_ID_MAX] = "";
	int rc;

	if (redis_failure_fields(e, s->key, attempts, error, util_wall_ms(), s->stage, to_stage,
	    &f) < 0) {
		redis_fields_free(&f);
		log_warnx("%s: out of memory moving %s", c->q->name, e->id);
		return -1;
	}
	rc = redis_stream_move(c->r, s->key, dst, c->q->group, e->id, s->stage > 0, NULL, NULL, &f, nid,
	    err, sizeof(err));
	redis_fields_free(&f);
	if (rc < 0) {
		consumer_redis_trouble(c, "moving a failed message (it stays pending)", err);
		return -1;
	}
	if (rc == 0)
		log_info("%s: %s %s was handled by another consumer meanwhile; not moved",
		    c->q->name, s->key, e->id);
	return rc == 1 ? 0 : -1;
}

/* ---- handling one message ---- */

enum step {
	STEP_NEXT,		/* go on with the batch */
	STEP_SKIP_PART,		/* leave the rest of this partition's entries pending */
	STEP_ABANDON,		/* leave the rest of the batch pending */
	STEP_STOP,		/* draining: leave the rest pending and stop */
};

static enum step
apply(struct consumer *c, const struct message *e, const struct mode_decision *d, int attempts,
    const char *error)
{
	const struct source *s = &c->src[e->src];
	char text[1024];

	switch (d->action) {
	case MODE_ACT_ACK:
		wstats_count(c->stats, WS_OK);
		consumer_ack_later(c, e);
		break;
	case MODE_ACT_RETRY:	/* handled by the caller */
		break;
	case MODE_ACT_DROP:
		wstats_count(c->stats, WS_DROPPED);
		log_warnx("%s: dropped %s %s after %d attempt(s) (delivery %" PRId64 "): %s",
		    c->q->name, s->key, e->id, attempts, e->delivery, error);
		consumer_ack_later(c, e);
		break;
	case MODE_ACT_STAGE:
		if (move_entry(c, e, c->src[c->npart + d->next_stage - 1].key, d->next_stage,
		    attempts, error) == 0) {
			wstats_count(c->stats, WS_RETRIED);
			log_info("%s: %s %s failed %d time(s), moved to retry stage %d: %s",
			    c->q->name, s->key, e->id, attempts, d->next_stage, error);
		}
		break;
	case MODE_ACT_DLQ:
		if (move_entry(c, e, c->dlq, 0, attempts, error) == 0) {
			wstats_count(c->stats, WS_DEAD_LETTERED);
			log_warnx("%s: %s %s dead-lettered to %s after %d attempt(s): %s", c->q->name,
			    s->key, e->id, c->dlq, attempts, error);
			snprintf(text, sizeof(text), "queue %s: message %s dead-lettered to %s "
			    "after %d attempt(s): %s", c->q->name, e->id, c->dlq, attempts, error);
			/* Subject: the DLQ, so a flood of dead letters is one alert per interval. */
			(void)alert_fire(&c->q->alert, c->q->name, ALERT_DEAD_LETTERED, c->dlq, text);
		}
		break;
	case MODE_ACT_HALT:
		consumer_halt(c, e, attempts, error);
		return STEP_SKIP_PART;
	}
	/*
	 * Order-critical: acknowledge at once, so only the message in flight can
	 * come back. Recovering: so a crash on a later entry does not bring it back.
	 */
	if ((c->ordered || c->recovering) && c->nacks > 0 && consumer_ack_flush(c) < 0) {
		consumer_pending_reset(&c->src[e->src]);
		return STEP_SKIP_PART;
	}
	return STEP_NEXT;
}

/*
 * Sleep between synchronous retries; under a lease, in slices with the lease
 * kept alive (a long backoff must not let it expire, or the message would
 * start over under a new owner and never halt). 0, or -1 when it was lost.
 */
static int
backoff_sleep(struct consumer *c, int part, int64_t ms)
{
	int64_t end = util_now_ms() + ms, now;

	while (!*c->stop && (now = util_now_ms()) < end) {
		int64_t slice = end - now;

		if (c->ordered && slice > 1000)
			slice = 1000;
		util_sleep_ms(slice, c->stop);
		if (c->ordered && consumer_lease_ensure(c, part) < 0)
			return -1;
	}
	return 0;
}

/* Not the messages' fault: they must not use up their attempts. */
static void
start_trouble(struct consumer *c, const struct handler_result *res)
{
	trouble(c, &c->start_streak, "the handler could not be started (messages stay pending)",
	    res->error[0] ? res->error : "unknown error");
}

/*
 * The handler's view of e's first attempt in this delivery (its meta):
 * partition (a stage entry's from its origin stream), stage, attempt
 * number, and the failures it brings from earlier stages.
 */
static void
message_meta(const struct consumer *c, struct message *m)
{
	const struct source *s = &c->src[m->src];
	size_t len = 0;
	const char *v;

	m->stage = s->stage;
	m->partition = s->part >= 0 ? s->part : 0;
	m->attempt = redis_msg_attempts_before(m, s->stage > 0) + 1;
	m->first_failed_ms = 0;
	m->last_error = NULL;
	if (s->stage == 0)
		return;
	if ((v = redis_msg_field(m, "x-origin-stream", &len)) != NULL)
		for (int i = 0; i < c->npart; i++)
			if (strlen(c->src[i].key) == len && memcmp(c->src[i].key, v, len) == 0)
				m->partition = i;
	if ((v = redis_msg_field(m, "x-first-failed-ms", &len)) != NULL && len < 20)
		m->first_failed_ms = strtoll(v, NULL, 10);
	m->last_error = redis_msg_field(m, "x-error", NULL);
}

/* Whether handle() would run the handler on e (not gone, not over max_deliveries). */
static bool
runnable(const struct consumer *c, const struct message *e)
{
	struct mode_decision d;

	return !e->deleted && !modes_precheck(&c->lim, e->delivery, &d);
}

/*
 * Pipelined, steady: the read of the next batch (with the waiting
 * successes that are due) goes out before the handler gets this batch's
 * first exchange, and its reply is taken after it (prefetch_recv): the
 * round trip to Redis runs while the handler works. Not while draining,
 * nor when the last batch took longer than PREFETCH_MAX_MS: the entries
 * read ahead would wait that long while another consumer may be idle.
 */
static void
prefetch_send(struct consumer *c)
{
	char err[512];
	int nk = 0;

	if (c->pf_active || c->next.n > 0 || *c->stop || c->recovering || c->last_batch_ms < 0 ||
	    c->last_batch_ms > PREFETCH_MAX_MS || !steady(c, util_now_ms()))
		return;
	for (int i = 0; i < c->nsrc; i++) {
		if (c->src[i].stage != 0 || !source_active(c, &c->src[i]))
			continue;
		c->rmap[nk] = i;
		c->rkeys[nk] = c->src[i].key;
		c->rids[nk++] = ">";
	}
	if (nk == 0)
		return;
	c->pf_nk = nk;
	c->pf_nsets = c->ndfr > 0 ? consumer_ack_select(c, false) : 0;
	if (redis_stream_ack_read_send(c->r, c->dfrsets, c->pf_nsets, c->q->group, c->name,
	    c->rkeys, c->rids, nk, c->q->worker.batch, err, sizeof(err)) < 0) {
		consumer_ack_sent(c, c->pf_nsets);	/* not acknowledged: they stay pending */
		c->pf_nsets = 0;
		log_warnx("%s: consumer %s: reading ahead: %s", c->q->name, c->name, err);
		return;
	}
	c->pf_active = true;
}

static void
prefetch_recv(struct consumer *c)
{
	char err[512];
	int n;

	if (!c->pf_active)
		return;
	c->pf_active = false;
	n = redis_stream_ack_read_recv(c->r, c->dfrsets, c->pf_nsets, c->q->group, c->name,
	    c->rkeys, c->rids, c->pf_nk, &c->next, err, sizeof(err));
	if (c->pf_nsets > 0)
		consumer_ack_sent(c, c->pf_nsets);
	c->pf_nsets = 0;
	if (n < 0) {
		log_warnx("%s: consumer %s: reading ahead: %s", c->q->name, c->name, err);
		return;
	}
	for (size_t j = 0; j < c->next.n; j++)
		c->next.e[j].src = c->rmap[c->next.e[j].src];
}

/*
 * Send the runnable entries of the batch from index i on, up to c->window
 * of them, to the pipe handler at once; their verdicts wait in c->ahead_*.
 * Entries the handler did not get to (it was killed at an earlier one)
 * get no verdict: handle() runs them again, no attempt counted. 0, or -1
 * when the handler could not be started.
 */
static int
run_ahead(struct consumer *c, size_t i)
{
	size_t n = 0, nrun = 0;
	int rc;

	for (size_t j = i; j < c->batch.n && n < c->window; j++) {
		if (!runnable(c, &c->batch.e[j]))
			continue;
		c->ahead_msg[n] = c->batch.e[j];	/* borrows its fields */
		message_meta(c, &c->ahead_msg[n]);
		c->ahead_pos[n++] = j;
	}
	/* The watch of an exchange before this one in the batch ends before this one starts. */
	consumer_ack_watched(c);
	if (i == 0)
		prefetch_send(c);
	rc = handler_run_batch(c->h, c->ahead_msg, n, c->stop, &drain_deadline_ms, c->ahead_res,
	    &nrun);
	prefetch_recv(c);
	(void)consumer_break_check(c);
	c->unwatched = nrun > 1;
	c->nahead = nrun;
	c->ahead_next = 0;
	if (rc < 0) {
		start_trouble(c, &c->ahead_res[nrun]);
		return -1;
	}
	/* Replies out of step (handler.h): no verdict holds; the rest runs one at a time. */
	if (nrun == 0 && n > 0)
		c->solo = true;
	c->start_streak = 0;
	return 0;
}

/* The verdict run_ahead got for batch entry i, or NULL. Verdicts of entries passed over are dropped. */
static const struct handler_result *
ahead_take(struct consumer *c, size_t i)
{
	while (c->ahead_next < c->nahead && c->ahead_pos[c->ahead_next] < i)
		c->ahead_next++;
	if (c->ahead_next < c->nahead && c->ahead_pos[c->ahead_next] == i)
		return &c->ahead_res[c->ahead_next++];
	return NULL;
}

/*
 * Handle e to the end of its attempts. first: the verdict of its first
 * attempt when run_ahead already ran it, else NULL.
 */
static enum step
handle(struct consumer *c, const struct message *e, const struct handler_result *first)
{
	const struct source *s = &c->src[e->src];
	struct handler_result res;
	struct mode_decision d;
	struct message m = *e;	/* borrows e's fields; meta for the handler */
	char error[600] = "";
	int failures = 0;
	int64_t before, failing_since = 0;	/* monotonic ms of this delivery's first failure */

	if (e->deleted) {
		log_warnx("%s: %s %s is pending but gone from the stream (trimmed or deleted); "
		    "acknowledging it", c->q->name, s->key, e->id);
		consumer_ack_later(c, e);
		return STEP_NEXT;
	}
	message_meta(c, &m);
	before = m.attempt - 1;
	if (first != NULL && first->doubtful)
		first = NULL;	/* it may be another message's verdict: run it again */
	if (modes_precheck(&c->lim, e->delivery, &d)) {
		snprintf(error, sizeof(error), "delivered %" PRId64 " times (max_deliveries %d): it "
		    "keeps crashing or stalling its consumer", e->delivery, c->lim.max_deliveries);
		if (c->ordered && consumer_lease_ensure(c, s->part) < 0)
			return STEP_SKIP_PART;
		return apply(c, e, &d, (int)before, error);
	}
	for (;;) {
		if (c->ordered && consumer_lease_ensure(c, s->part) < 0)
			return STEP_SKIP_PART;
		m.attempt = before + failures + 1;
		if (failures > 0)
			m.last_error = error;
		if (first != NULL) {
			res = *first;
			first = NULL;
		} else if (handler_run(c->h, &m, c->stop, &drain_deadline_ms, &res) < 0) {
			start_trouble(c, &res);
			return STEP_ABANDON;
		} else {
			c->start_streak = 0;
		}
		wstats_observe(c->stats, res.duration_s);
		if (res.outcome == HANDLER_OK) {
			modes_decide(&c->lim, HANDLER_OK, 0, s->stage, 0, &d);
			return apply(c, e, &d, (int)(before + failures + 1), "");
		}
		if (m.first_failed_ms == 0)
			m.first_failed_ms = util_wall_ms();
		if (failing_since == 0)
			failing_since = util_now_ms();
		failures++;
		snprintf(error, sizeof(error), "%s", res.error[0] ? res.error : "handler failed");
		if (*c->stop) {
			/* Draining: give up on it; it stays pending and is redelivered. */
			log_info("%s: draining: %s %s left pending (%s)", c->q->name, s->key, e->id,
			    error);
			return STEP_STOP;
		}
		modes_decide(&c->lim, res.outcome, failures, s->stage, util_now_ms() - failing_since,
		    &d);
		if (d.action != MODE_ACT_RETRY)
			return apply(c, e, &d, (int)(before + failures), error);
		wstats_count(c->stats, WS_RETRIED);
		log_debug("%s: %s %s attempt %" PRId64 " failed (%s); retrying in %" PRId64 "ms",
		    c->q->name, s->key, e->id, before + failures, error, d.backoff_ms);
		/* Jitter in [backoff/2, backoff], so a failing dependency is not hit in step. */
		if (backoff_sleep(c, s->part, d.backoff_ms / 2 +
		    (int64_t)(util_rand01() * (double)(d.backoff_ms / 2))) < 0)
			return STEP_SKIP_PART;
		if (*c->stop) {
			log_info("%s: draining: %s %s left pending", c->q->name, s->key, e->id);
			return STEP_STOP;
		}
	}
}

/*
 * Parallel modes: keep the idle time of the entries still in hand (batch
 * entries from `from` on) below claim_idle while the batch is worked
 * through, so no other consumer reclaims them and runs them a second time.
 * Every claim_idle/3, they are claimed again by their own consumer with a
 * min-idle that an entry another consumer took over cannot have reached
 * (redis_stream_touch).
 */
static void
keep_fresh(struct consumer *c, size_t from)
{
	int64_t now = util_now_ms(), every = c->q->worker.claim_idle_ms / 3;
	const char **ids;
	char err[512];

	if (c->ordered || now - c->held_at < every || from >= c->batch.n)
		return;
	/* The batch's entries in hand, and those read ahead (c->next). */
	if ((ids = calloc(c->batch.n - from + c->next.n, sizeof(*ids))) == NULL)
		return;
	for (int i = 0; i < c->nsrc; i++) {
		size_t n = 0;

		for (size_t j = from; j < c->batch.n; j++)
			if (c->batch.e[j].src == i && !c->batch.e[j].deleted)
				ids[n++] = c->batch.e[j].id;
		for (size_t j = 0; j < c->next.n; j++)
			if (c->next.e[j].src == i)
				ids[n++] = c->next.e[j].id;
		if (n > 0 && redis_stream_touch(c->r, c->src[i].key, c->q->group, c->name,
		    now - c->held_at - every, ids, n, err, sizeof(err)) < 0)
			log_warnx("%s: keeping the entries in hand fresh on %s: %s", c->q->name,
			    c->src[i].key, err);
	}
	free(ids);
	c->held_at = util_now_ms();
}

/* While the handler runs: the entries from the one in hand on stay fresh. */
static void
handler_tick(void *arg)
{
	struct consumer *c = arg;

	if (c->batch_pos == 0 || util_now_ms() - c->held_at < c->q->worker.claim_idle_ms / 3)
		return;
	prefetch_recv(c);	/* the connection must be free for keep_fresh */
	keep_fresh(c, c->batch_pos - 1);
}

static void
process_batch(struct consumer *c)
{
	bool *skip = calloc((size_t)c->nsrc, sizeof(*skip));

	c->nacks = 0;
	/* COUNT is per stream: a batch may hold more than worker.batch entries. */
	if (skip != NULL && c->batch.n > c->capacks) {
		const char **ni = realloc(c->ackids, c->batch.n * sizeof(*ni));
		int *ns;

		if (ni != NULL)
			c->ackids = ni;
		ns = ni != NULL ? realloc(c->acksrc, c->batch.n * sizeof(*ns)) : NULL;
		if (ns != NULL) {
			c->acksrc = ns;
			c->capacks = c->batch.n;
		}
	}
	if (skip == NULL || c->batch.n > c->capacks) {
		free(skip);
		log_warnx("%s: out of memory; the batch stays pending", c->q->name);
		return;
	}
	for (size_t i = c->batch_pos; i < c->batch.n; i++) {
		const struct message *e = &c->batch.e[i];
		const struct handler_result *first = ahead_take(c, i);
		enum step st;

		/*
		 * Draining: the entries of this batch are already ours (pending); finish
		 * them while drain_timeout lasts rather than leave them to be reclaimed
		 * after claim_idle, which on scale-in would hold them up for a minute.
		 * Verdicts already in hand are applied whatever the time: those
		 * messages did run.
		 */
		if (first == NULL && c->ahead_next >= c->nahead && *c->stop &&
		    util_now_ms() >= drain_deadline_ms)
			break;
		c->batch_pos = i + 1;
		if (skip[e->src] || !source_active(c, &c->src[e->src]))
			continue;
		keep_fresh(c, i);
		/*
		 * Verdicts still held for later entries (after a STEP_ABANDON, say):
		 * this one runs alone, so they are not run a second time.
		 */
		if (first == NULL && c->pipelined && !c->solo && c->ahead_next >= c->nahead &&
		    runnable(c, e)) {
			if (run_ahead(c, i) < 0) {
				c->batch_pos = i;	/* kept in hand, as for STEP_ABANDON */
				break;
			}
			first = ahead_take(c, i);
		}
		st = handle(c, e, first);
		if (st == STEP_STOP) {
			/* It stays pending; in ordered modes nothing after it may run. */
			if (c->ordered)
				skip[e->src] = true;
			continue;
		}
		if (st == STEP_ABANDON) {
			/*
			 * Keep the rest in hand and try again after the backoff: reading it
			 * again from Redis would count deliveries the message is not to blame for.
			 */
			c->batch_pos = i;
			break;
		}
		if (st == STEP_SKIP_PART)
			skip[e->src] = true;
	}
	/* What was skipped or left stays pending; re-read it before anything new. */
	for (int i = 0; i < c->nsrc; i++)
		if (skip[i])
			consumer_pending_reset(&c->src[i]);
	/*
	 * Pipelined: the successes wait until no surplus reply can have shifted
	 * their verdicts (consumer_ack.c); else they are acknowledged now.
	 */
	if (c->pipelined)
		(void)consumer_ack_defer(c);
	else
		(void)consumer_ack_flush(c);
	free(skip);
}

/* ---- main ---- */

int
consumer_main(const struct config *cfg, const struct queue_policy *q, int slot,
    struct worker_stats *stats, volatile sig_atomic_t *stop)
{
	struct consumer c;
	struct sigaction sa;
	char err[512];

	/*
	 * Our own handler for the stop signals: besides the flag, it notes when
	 * the drain began, so the handler run in progress gets drain_timeout
	 * from that moment (handler_run reads the deadline while it waits).
	 */
	drain_timeout_ms = q->worker.drain_timeout_ms;
	drain_deadline_ms = 0;
	sig_stop = stop;
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_stop_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* The surplus watch is tens of microseconds: not 50 more of timer slack. */
	(void)prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
	if (*stop && drain_deadline_ms == 0)
		drain_deadline_ms = util_now_ms() + drain_timeout_ms;

	if (consumer_init(&c, cfg, q, slot, stats, stop, err, sizeof(err)) < 0) {
		log_error("%s: consumer %d: %s", q->name, slot, err);
		consumer_free(&c);
		return EXIT_RUNTIME;
	}
	log_info("%s: consumer %s started (mode %d %s, %d partition(s))", q->name, c.name,
	    (int)q->mode, config_mode_name(q->mode), c.npart);
	while (!*stop) {
		int n;

		if (!c.ready && create_groups(&c) < 0)
			continue;
		periodic(&c);
		if (*stop)
			break;
		if (c.batch_pos < c.batch.n) {
			process_batch(&c);
			continue;
		}
		if ((n = fetch(&c)) < 0)
			continue;
		for (size_t j = 0; j < c.batch.n; j++) {
			c.batch.e[j].queue = q->name;
			c.batch.e[j].stream = c.src[c.batch.e[j].src].key;
		}
		c.err_streak = 0;
		c.batch_pos = 0;
		c.held_at = util_now_ms();
		if (n > 0) {
			process_batch(&c);
			c.last_batch_ms = util_now_ms() - c.held_at;
		}
	}
	/* Entries read ahead are ours: finish them while drain_timeout lasts. */
	if (c.next.n > 0) {
		struct redis_batch empty = c.batch;

		redis_batch_clear(&c.batch);
		c.batch = c.next;
		c.next = empty;
		for (size_t j = 0; j < c.batch.n; j++) {
			c.batch.e[j].queue = q->name;
			c.batch.e[j].stream = c.src[c.batch.e[j].src].key;
		}
		c.batch_pos = 0;
		process_batch(&c);
	}
	log_info("%s: consumer %s draining", q->name, c.name);
	if (c.pipelined)
		(void)consumer_ack_drain(&c);
	else if (c.nacks > 0)
		(void)consumer_ack_flush(&c);
	if (c.ordered)
		consumer_leases_release(&c);
	consumer_free(&c);
	return EXIT_OK;
}

