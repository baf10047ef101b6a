/*
 * consumer_ack.c — how a consumer acknowledges (scaleno-worker(8)): the
 * successes of a batch at its end, or, for a pipelined pipe handler,
 * deferred and sent in the round trip of a later read (the XACK rides
 * with the next XREADGROUP), once no surplus reply can have shifted their
 * verdicts.
 *
 * A handler that answers one message twice shifts every later reply onto
 * the wrong message; its reply to the last message of the exchange is then
 * still to come, a message's time after the exchange seemed complete. The
 * surplus is watched for after each exchange (handler_settle), while the
 * next read's round trip is under way, and the successes of an exchange
 * wait until the watches of that exchange and of the next one are over:
 * a surplus carried into the next exchange shows at its end just the same.
 * A surplus found drops every success still waiting: those entries stay
 * pending and are read again, one at a time (a duplicate, never a loss).
 * So does a handler that ends (dies, is killed after a timeout, exits)
 * while successes wait: a surplus it had still to write is gone with it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumer_int.h"
#include "log.h"
#include "redis_stream.h"
#include "util.h"


void
consumer_ack_later(struct consumer *c, const struct message *e)
{
	c->ackids[c->nacks] = e->id;
	c->acksrc[c->nacks++] = e->src;
}

/* XACK ids[0..n) (of sources srcs), grouped by stream, as consumer_ack_flush. */
static int
ack_send(struct consumer *c, const char **ids, const int *srcs, size_t n)
{
	const char **mine;
	char err[512];
	int rc = 0;

	if (n == 0)
		return 0;
	if ((mine = calloc(n, sizeof(*mine))) == NULL)
		return -1;
	for (int i = 0; i < c->nsrc; i++) {
		struct source *s = &c->src[i];
		struct partition *p = c->ordered && s->part >= 0 ? &c->part[s->part] : NULL;
		size_t k = 0;
		int r;

		for (size_t j = 0; j < n; j++)
			if (srcs[j] == i)
				mine[k++] = ids[j];
		if (k == 0)
			continue;
		r = redis_stream_ack(c->r, s->key, c->q->group, mine, k, p ? p->lease_key : NULL,
		    p ? p->token : NULL, err, sizeof(err));
		if (r == REDIS_FENCED) {
			consumer_part_lost(c, s->part, err);
			rc = -1;
		} else if (r < 0) {
			consumer_redis_trouble(c, "XACK (the entries stay pending and will be redelivered)", err);
			consumer_pending_reset(s);
			rc = -1;
		} else if (s->stage > 0 &&
		    redis_stream_delete(c->r, s->key, mine, k, err, sizeof(err)) < 0) {
			log_warnx("%s: XDEL on %s: %s", c->q->name, s->key, err);
		}
	}
	free(mine);
	return rc;
}

int
consumer_ack_flush(struct consumer *c)
{
	int rc = ack_send(c, c->ackids, c->acksrc, c->nacks);

	c->nacks = 0;
	return rc;
}

/* The waiting successes and this batch's: none holds; they are read again. */
static void
void_successes(struct consumer *c)
{
	size_t n = c->ndfr + c->nacks;

	for (size_t j = 0; j < c->ndfr; j++)
		consumer_pending_reset(&c->src[c->dfr[j].src]);
	for (size_t j = 0; j < c->nacks; j++)
		consumer_pending_reset(&c->src[c->acksrc[j]]);
	if (n > 0)
		log_warnx("%s: consumer %s: %zu successes are not acknowledged: %s, so their "
		    "verdicts may not be their own; they run again", c->q->name, c->name, n,
		    handler_break_reason(c->h));
	c->ndfr = c->nacks = 0;
}

bool
consumer_break_check(struct consumer *c)
{
	unsigned n = handler_break_count(c->h);

	if (n == c->breaks_seen)
		return false;
	c->breaks_seen = n;
	void_successes(c);
	return true;
}

int
consumer_ack_defer(struct consumer *c)
{
	int64_t now = util_now_ms();

	(void)consumer_break_check(c);
	if (c->ndfr + c->nacks > c->capdfr) {
		size_t cap = (c->ndfr + c->nacks) * 2;
		struct deferred *d = realloc(c->dfr, cap * sizeof(*d));
		const char **ids;

		if (d != NULL)
			c->dfr = d;
		ids = d != NULL ? realloc(c->dfrids, cap * sizeof(*ids)) : NULL;
		if (ids == NULL) {
			/* No room to wait: watch now, then acknowledge them now. */
			log_warnx("%s: out of memory; acknowledging at once", c->q->name);
			(void)handler_settle(c->h, true);
			if (consumer_break_check(c))
				return -1;
			return consumer_ack_flush(c);
		}
		c->dfrids = ids;
		c->capdfr = cap;
	}
	for (size_t j = 0; j < c->nacks; j++) {
		struct deferred *d = &c->dfr[c->ndfr++];

		util_strlcpy(d->id, c->ackids[j], sizeof(d->id));
		d->src = c->acksrc[j];
		d->watched = 0;
		d->at = now;
	}
	c->nacks = 0;
	return 0;
}

void
consumer_ack_watched(struct consumer *c)
{
	bool counts = c->unwatched;

	c->unwatched = false;
	(void)handler_settle(c->h, false);
	if (consumer_break_check(c) || !counts)
		return;
	for (size_t j = 0; j < c->ndfr; j++)
		c->dfr[j].watched++;
}

/* Whether d goes out now (consumer_ack_select). */
static bool
due(const struct consumer *c, const struct deferred *d, bool all, int64_t now)
{
	return all || d->watched >= 2 || now - d->at >= c->q->worker.claim_idle_ms / 3;
}

/*
 * Which waiting successes go out now: those past two watches, those held
 * for a third of claim_idle (slow exchanges: before another consumer could
 * reclaim them), or all. They fill c->dfrsets (one per source, ids in
 * c->dfrids, valid until consumer_ack_sent). Returns the number of sets.
 */
size_t
consumer_ack_select(struct consumer *c, bool all)
{
	int64_t now = util_now_ms();
	size_t nids = 0, nsets = 0;

	for (size_t j = 0; j < c->ndfr; j++)
		c->dfr[j].sending = due(c, &c->dfr[j], all, now);
	for (int i = 0; i < c->nsrc; i++) {
		struct redis_acks *k = &c->dfrsets[nsets];
		size_t first = nids;

		for (size_t j = 0; j < c->ndfr; j++)
			if (c->dfr[j].src == i && c->dfr[j].sending)
				c->dfrids[nids++] = c->dfr[j].id;
		if (nids == first)
			continue;
		memset(k, 0, sizeof(*k));
		k->src = i;
		k->stream = c->src[i].key;
		k->ids = c->dfrids + first;
		k->n = nids - first;
		k->del = c->src[i].stage > 0;
		nsets++;
	}
	return nsets;
}

void
consumer_ack_sent(struct consumer *c, size_t nsets)
{
	size_t keep = 0;

	for (size_t k = 0; k < nsets; k++) {
		const struct redis_acks *a = &c->dfrsets[k];

		if (a->acked >= 0)
			continue;
		/* They stay pending: read again from our pending list (at least once). */
		log_warnx("%s: consumer %s: acknowledging %zu entries of %s failed%s%s; they "
		    "stay pending and run again", c->q->name, c->name, a->n, a->stream,
		    a->err[0] ? ": " : "", a->err);
		consumer_pending_reset(&c->src[a->src]);
	}
	for (size_t j = 0; j < c->ndfr; j++)
		if (!c->dfr[j].sending)
			c->dfr[keep++] = c->dfr[j];
	c->ndfr = keep;
}

int
consumer_ack_drain(struct consumer *c)
{
	size_t nsets;
	char err[512];
	int rc = 0;

	if (c->ndfr == 0 && c->nacks == 0)
		return 0;
	/* Time is not short here: a longer watch than between two batches. */
	(void)handler_settle(c->h, true);
	if (consumer_break_check(c))
		return -1;
	if (c->nacks > 0 && consumer_ack_defer(c) < 0)
		return -1;
	nsets = consumer_ack_select(c, true);
	for (size_t k = 0; k < nsets; k++) {
		struct redis_acks *a = &c->dfrsets[k];

		a->acked = redis_stream_ack(c->r, a->stream, c->q->group, a->ids, a->n, NULL, NULL,
		    err, sizeof(err));
		if (a->acked < 0) {
			util_strlcpy(a->err, err, sizeof(a->err));
			rc = -1;
		} else if (a->del && redis_stream_delete(c->r, a->stream, a->ids, a->n, err,
		    sizeof(err)) < 0) {
			log_warnx("%s: XDEL on %s: %s", c->q->name, a->stream, err);
		}
	}
	consumer_ack_sent(c, nsets);
	return rc;
}
