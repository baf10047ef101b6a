/*
 * consumer_part.c — the partition leases of an order-critical queue
 * (scaleno-worker(8) "MODES"): a consumer holds its fair share of the
 * partitions' leases, takes a partition over with its pending entries,
 * renews before every handler run, and halts a partition on a poison
 * message (mode halt).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
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
consumer_set_halted(struct consumer *c, int i, bool halted, const char *how)
{
	struct partition *p = &c->part[i];
	char text[512];

	if (p->halted && !halted) {
		log_info("%s: partition %s resumed (%s)", c->q->name, c->src[i].key, how);
		snprintf(text, sizeof(text), "queue %s partition %d (%s) resumed: %s", c->q->name, i,
		    c->src[i].key, how);
		(void)alert_fire(&c->q->alert, c->q->name, ALERT_RESUMED, c->src[i].key, text);
		consumer_pending_reset(&c->src[i]);
	}
	if (halted && !p->halted)
		p->next_probe = util_now_ms() + c->q->worker.halt_probe_ms;
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
			consumer_set_halted(c, i, halted, "its halt record was removed");
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
		consumer_set_halted(c, i, halted, "");
		if (halted)
			log_warnx("%s: partition %d (%s) is halted; waiting for `scaleno resume -q %s "
			    "-p %d` or a probe (worker.halt_probe)", c->q->name, i, c->src[i].key,
			    c->q->name, i);
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
	consumer_set_halted(c, s->part, true, "");
	log_error("%s: partition %d (%s) HALTED on %s after %d attempt(s): %s; it is tried again "
	    "every worker.halt_probe, or run `scaleno resume -q %s -p %d [--skip]`", c->q->name,
	    s->part, s->key, e->id, attempts, error, c->q->name, s->part);
	snprintf(text, sizeof(text), "queue %s partition %d (%s) halted on message %s after %d "
	    "attempt(s): %s", c->q->name, s->part, s->key, e->id, attempts, error);
	(void)alert_fire(&c->q->alert, c->q->name, ALERT_PARTITION_HALTED, s->key, text);
}


/* One probe of halted partition i: run its halting message once more. */
static void
probe_one(struct consumer *c, int i)
{
	struct partition *p = &c->part[i];
	struct source *s = &c->src[i];
	struct message h;
	struct redis_batch b = { 0 };
	struct redis_fields f = { 0 };
	struct handler_result res;
	const char *v;
	char err[512];
	bool halted = false;
	int rc;

	if ((rc = redis_halt_get(c->r, p->halt_key, &h, err, sizeof(err))) <= 0) {
		if (rc == 0)
			consumer_set_halted(c, i, false, "its halt record was removed");
		return;
	}
	if (redis_stream_range(c->r, s->key, h.id, h.id, 1, false, &b, err, sizeof(err)) < 0 ||
	    b.n == 0) {
		log_warnx("%s: partition %d: the halting message %s cannot be read (%s); only "
		    "`scaleno resume --skip` lifts this halt", c->q->name, i, h.id,
		    b.n == 0 ? "gone from the stream" : err);
		goto out;
	}
	rc = redis_part_renew(c->r, p->lease_key, p->halt_key, p->token, c->lease_ttl_ms,
	    &halted, err, sizeof(err));
	if (rc != 1) {
		consumer_part_lost(c, i, rc == 0 ? "held by another consumer" : err);
		goto out;
	}
	p->renewed_at = util_now_ms();
	b.e[0].src = i;
	b.e[0].queue = c->q->name;
	b.e[0].stream = s->key;
	b.e[0].partition = i;
	b.e[0].delivery = (v = redis_msg_field(&h, "delivery", NULL)) != NULL ? atoll(v) : 1;
	b.e[0].attempt = ((v = redis_msg_field(&h, "attempts", NULL)) != NULL ? atoll(v) : 0) + 1;
	b.e[0].first_failed_ms = (v = redis_msg_field(&h, "time-ms", NULL)) != NULL ? atoll(v) : 0;
	b.e[0].last_error = redis_msg_field(&h, "error", NULL);
	if (handler_run(c->h, &b.e[0], c->stop, c->drain_deadline, &res) < 0 ||
	    res.outcome != HANDLER_OK) {
		log_info("%s: partition %d stays halted: probe of %s (attempt %" PRId64 ") failed: %s",
		    c->q->name, i, h.id, b.e[0].attempt, res.error);
		if (redis_fields_addf(&f, "attempts", "%" PRId64, b.e[0].attempt) == 0 &&
		    redis_fields_addf(&f, "error", "%s", res.error) == 0 &&
		    redis_halt_probed(c->r, p->halt_key, s->key, c->q->group, h.id, &f, err,
		    sizeof(err)) < 0)
			log_warnx("%s: updating the halt record of partition %d: %s", c->q->name, i, err);
		goto out;
	}
	wstats_observe(c->stats, res.duration_s);
	if ((rc = redis_halt_done(c->r, p->halt_key, s->key, c->q->group, h.id, err,
	    sizeof(err))) < 0) {
		log_warnx("%s: partition %d: %s was handled by the probe but the halt could not be "
		    "lifted: %s (it runs again)", c->q->name, i, h.id, err);
		goto out;
	}
	wstats_count(c->stats, WS_OK);
	consumer_set_halted(c, i, false, "the probe of its halting message succeeded");
out:
	redis_fields_free(&f);
	redis_batch_free(&b);
	redis_msg_free(&h);
}

void
consumer_halt_probe(struct consumer *c, int64_t now)
{
	for (int i = 0; i < c->npart && !*c->stop; i++) {
		struct partition *p = &c->part[i];

		if (!p->held || !p->halted || now < p->next_probe)
			continue;
		p->next_probe = now + c->q->worker.halt_probe_ms;
		probe_one(c, i);
	}
}
