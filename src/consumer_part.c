/*
 * consumer_part.c — the partition leases of an order-critical queue
 * (scaleno-worker(8) "MODES"): a consumer holds its fair share of the
 * partitions' leases, takes a partition over with its pending entries,
 * renews before every handler run, and halts a partition on a poison
 * message (mode halt).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "alert.h"
#include "consumer_int.h"
#include "log.h"
#include "redis_part.h"
#include "redis_stream.h"
#include "util.h"

void
consumer_part_lost(struct consumer *c, int i, const char *why)
{
	struct partition *p = &c->part[i];

	if (!p->held)
		return;
	log_warnx("%s: consumer %s: lease of %s lost (%s); stopping that partition", c->q->name,
	    c->name, c->src[i].key, why);
	p->held = false;
	p->token[0] = '\0';
}

static void
consumer_set_halted(struct consumer *c, int i, bool halted)
{
	struct partition *p = &c->part[i];

	if (p->halted && !halted) {
		log_info("%s: partition %s resumed", c->q->name, c->src[i].key);
		consumer_pending_reset(&c->src[i]);
	}
	p->halted = halted;
	wstats_set_halted(c->stats, i, halted);
}

/*
 * Take a partition over: claim every pending entry of its stream (the
 * previous owner's included) so that they are read again, in id order,
 * before anything new.
 */
static int
partition_take(struct consumer *c, int i)
{
	struct source *s = &c->src[i];
	char cursor[REDIS_ID_MAX] = "0-0", err[512];
	int64_t claimed, deleted, total = 0;

	for (int round = 0; round < TAKEOVER_MAX_ROUNDS; round++) {
		if (redis_stream_autoclaim(c->r, s->key, c->q->group, c->name, 0, cursor, CLAIM_COUNT,
		    &claimed, &deleted, err, sizeof(err)) < 0) {
			consumer_redis_trouble(c, "taking over the partition's pending entries", err);
			return -1;
		}
		total += claimed;
		if (deleted > 0)
			log_warnx("%s: %s: %" PRId64 " pending entries were gone from the stream "
			    "(trimmed or deleted) and are dropped from the pending list", c->q->name,
			    s->key, deleted);
		if (strcmp(cursor, "0-0") == 0)
			break;
	}
	consumer_pending_reset(s);
	log_info("%s: consumer %s owns partition %s (%" PRId64 " pending entries taken over)",
	    c->q->name, c->name, s->key, total);
	return 0;
}

/* Renew (or give up) held leases, acquire up to our fair share. */
void
consumer_leases_maintain(struct consumer *c, int64_t now)
{
	char err[512];
	int live, share, held = 0;

	if ((live = redis_part_members(c->r, c->members_key, c->name, c->lease_ttl_ms, err,
	    sizeof(err))) < 0) {
		consumer_redis_trouble(c, "partition membership", err);
		return;
	}
	share = (c->npart + (live > 0 ? live : 1) - 1) / (live > 0 ? live : 1);
	for (int i = 0; i < c->npart; i++) {
		struct partition *p = &c->part[i];
		bool halted = false;
		int rc;

		if (!p->held)
			continue;
		rc = redis_part_renew(c->r, p->lease_key, p->halt_key, p->token, c->lease_ttl_ms,
		    &halted, err, sizeof(err));
		if (rc == 1) {
			p->renewed_at = now;
			consumer_set_halted(c, i, halted);
			held++;
		} else if (rc == 0) {
			consumer_part_lost(c, i, "held by another consumer");
		} else if (now - p->renewed_at >= c->lease_ttl_ms - LEASE_MARGIN_MS / 2) {
			consumer_part_lost(c, i, err);
		}
	}
	/* Too many: hand the highest ones back (their pending entries go with them). */
	for (int i = c->npart - 1; i >= 0 && held > share; i--) {
		struct partition *p = &c->part[i];

		if (!p->held)
			continue;
		if (redis_part_release(c->r, p->lease_key, p->token, err, sizeof(err)) >= 0) {
			log_info("%s: consumer %s hands partition %s back (fair share %d)", c->q->name,
			    c->name, c->src[i].key, share);
			p->held = false;
			held--;
		}
	}
	/* Start at a slot-dependent place so consumers do not all race for partition 0. */
	size_t h = 5381;
	for (const char *s = c->name; *s; s++)
		h = h * 33 + (unsigned char)*s;
	for (int k = 0; k < c->npart && held < share; k++) {
		int i = (int)((h + (size_t)k) % (size_t)c->npart);
		struct partition *p = &c->part[i];
		bool halted = false;
		int rc;

		if (p->held)
			continue;
		rc = redis_part_acquire(c->r, p->lease_key, p->epoch_key, p->halt_key, c->name,
		    c->lease_ttl_ms, p->token, sizeof(p->token), &halted, err, sizeof(err));
		if (rc < 0) {
			consumer_redis_trouble(c, "acquiring a partition lease", err);
			return;
		}
		if (rc == 0)
			continue;
		p->held = true;
		p->renewed_at = now;
		p->halted = false;
		consumer_set_halted(c, i, halted);
		if (halted)
			log_warnx("%s: partition %s is halted; waiting for `scaleno resume -q %s%s`",
			    c->q->name, c->src[i].key, c->q->name, c->npart > 1 ? " -p N" : "");
		if (partition_take(c, i) < 0) {
			(void)redis_part_release(c->r, p->lease_key, p->token, err, sizeof(err));
			p->held = false;
			return;
		}
		held++;
	}
}

/*
 * Before a handler run under a lease: the lease must outlast the run (the
 * handler timeout), or the partition stops here. 0 ok, -1 stop it.
 */
int
consumer_lease_ensure(struct consumer *c, int i)
{
	struct partition *p = &c->part[i];
	int64_t now = util_now_ms(), window = c->lease_ttl_ms - c->q->worker.timeout_ms - 2000;
	char err[512];
	bool halted = false;
	int rc;

	if (!p->held || p->halted)
		return -1;
	if (window > c->lease_ttl_ms / 3)
		window = c->lease_ttl_ms / 3;
	if (now - p->renewed_at < window)
		return 0;
	rc = redis_part_renew(c->r, p->lease_key, p->halt_key, p->token, c->lease_ttl_ms,
	    &halted, err, sizeof(err));
	if (rc == 1) {
		p->renewed_at = now;
		return 0;
	}
	consumer_part_lost(c, i, rc == 0 ? "held by another consumer" : err);
	return -1;
}

void
consumer_leases_release(struct consumer *c)
{
	char err[512];

	for (int i = 0; i < c->npart; i++)
		if (c->part[i].held &&
		    redis_part_release(c->r, c->part[i].lease_key, c->part[i].token, err,
		    sizeof(err)) < 0)
			log_warnx("%s: releasing %s: %s (it expires by itself)", c->q->name,
			    c->part[i].lease_key, err);
}

void
consumer_halt(struct consumer *c, const struct message *e, int attempts, const char *error)
{
	const struct source *s = &c->src[e->src];
	struct partition *p = &c->part[s->part];
	struct redis_fields f = { 0 };
	char err[512], text[1024];
	int rc;

	if (redis_fields_addf(&f, "id", "%s", e->id) < 0 ||
	    redis_fields_addf(&f, "error", "%s", error) < 0 ||
	    redis_fields_addf(&f, "attempts", "%d", attempts) < 0 ||
	    redis_fields_addf(&f, "delivery", "%" PRId64, e->delivery) < 0 ||
	    redis_fields_addf(&f, "time-ms", "%" PRId64, util_wall_ms()) < 0 ||
	    redis_fields_addf(&f, "consumer", "%s", c->name) < 0 ||
	    redis_fields_addf(&f, "partition", "%d", s->part) < 0 ||
	    redis_fields_addf(&f, "stream", "%s", s->key) < 0) {
		redis_fields_free(&f);
		consumer_part_lost(c, s->part, "out of memory writing the halt record");
		return;
	}
	rc = redis_halt_set(c->r, p->halt_key, p->lease_key, p->token, &f, err, sizeof(err));
	redis_fields_free(&f);
	if (rc == REDIS_FENCED) {
		consumer_part_lost(c, s->part, err);
		return;
	}
	if (rc < 0) {
		/* The message stays pending; the next owner (or we) will try it again. */
		consumer_redis_trouble(c, "writing the halt record", err);
		consumer_part_lost(c, s->part, "cannot write the halt record");
		(void)redis_part_release(c->r, p->lease_key, p->token, err, sizeof(err));
		return;
	}
	consumer_set_halted(c, s->part, true);
	log_error("%s: partition %s HALTED on %s after %d attempt(s): %s; run `scaleno resume -q %s%s`",
	    c->q->name, s->key, e->id, attempts, error, c->q->name, c->npart > 1 ? " -p N" : "");
	snprintf(text, sizeof(text), "queue %s partition %s halted on message %s after %d "
	    "attempt(s): %s", c->q->name, s->key, e->id, attempts, error);
	(void)alert_fire(&c->q->alert, c->q->name, ALERT_PARTITION_HALTED, s->key, text);
}

