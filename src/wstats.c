/*
 * wstats.c — worker counters in one shared anonymous mapping. Consumers
 * update them with atomic adds/stores; the supervisor renders them for
 * /metrics. A consumer killed mid-update can at worst lose its own
 * increment: every field is one aligned word, so no reader sees a torn value.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "expo.h"
#include "util.h"
#include "wstats.h"

const double wstats_buckets[WSTATS_NBUCKETS] = {
	0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 0 /* +Inf */
};

static const char *const result_names[WS_NRESULTS] = {
	[WS_OK] = "ok",
	[WS_RETRIED] = "retried",
	[WS_DROPPED] = "dropped",
	[WS_DEAD_LETTERED] = "dead_lettered",
};

struct worker_stats *
wstats_create(int npartitions)
{
	struct worker_stats *s;

	s = mmap(NULL, sizeof(*s), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (s == MAP_FAILED)
		return NULL;
	memset(s, 0, sizeof(*s));
	s->dlq_depth = -1;
	if (npartitions < 0)
		npartitions = 0;
	s->npartitions = npartitions > WSTATS_MAX_PARTITIONS ? WSTATS_MAX_PARTITIONS : npartitions;
	return s;
}

void
wstats_destroy(struct worker_stats *s)
{
	if (s != NULL)
		munmap(s, sizeof(*s));
}

void
wstats_add(uint64_t *counter, uint64_t n)
{
	__atomic_add_fetch(counter, n, __ATOMIC_RELAXED);
}

void
wstats_set(int64_t *gauge, int64_t value)
{
	__atomic_store_n(gauge, value, __ATOMIC_RELAXED);
}

void
wstats_count(struct worker_stats *s, enum wstats_result r)
{
	if (s == NULL || (unsigned)r >= WS_NRESULTS)
		return;
	wstats_add(&s->messages[r], 1);
}

void
wstats_observe(struct worker_stats *s, double seconds)
{
	int i;

	if (s == NULL)
		return;
	if (!(seconds >= 0))	/* also rejects NaN */
		seconds = 0;
	for (i = 0; i < WSTATS_NBUCKETS - 1; i++)
		if (seconds <= wstats_buckets[i])
			break;
	wstats_add(&s->duration_buckets[i], 1);
	wstats_add(&s->duration_count, 1);
	wstats_add(&s->duration_sum_us, (uint64_t)(seconds * 1e6 + 0.5));
}

void
wstats_set_halted(struct worker_stats *s, int partition, int halted)
{
	if (s == NULL || partition < 0 || partition >= WSTATS_MAX_PARTITIONS)
		return;
	__atomic_store_n(&s->halted[partition], (uint8_t)(halted != 0), __ATOMIC_RELAXED);
}

static uint64_t
load_u64(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static int64_t
load_i64(const int64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

void
wstats_render(const struct worker_stats *s, const char *queue, struct strbuf *buf)
{
	const struct {
		const char *name, *help;
		enum expo_type type;
		int64_t value;
	} singles[] = {
		{ "scaleno_consumer_restarts_total", "Consumer processes restarted.", EXPO_COUNTER,
		  (int64_t)load_u64(&s->consumer_restarts) },
		{ "scaleno_consumer_crash_loop", "Consumer slots in a crash loop.", EXPO_GAUGE,
		  load_i64(&s->crash_loop) },
		{ "scaleno_consumers_running", "Consumer processes alive.", EXPO_GAUGE,
		  load_i64(&s->consumers_running) },
		{ "scaleno_claimed_total", "Pending entries reclaimed from other consumers.", EXPO_COUNTER,
		  (int64_t)load_u64(&s->claimed) },
		{ "scaleno_worker_redis_errors_total", "Redis errors seen by consumers.", EXPO_COUNTER,
		  (int64_t)load_u64(&s->redis_errors) },
	};
	struct expo_label l[2] = { { "queue", queue }, { NULL, NULL } };
	char bound[40], part[16];
	uint64_t cum = 0;
	int i;

	expo_family(buf, "scaleno_messages_total", EXPO_COUNTER, "Messages handled, by result.");
	l[1].name = "result";
	for (i = 0; i < WS_NRESULTS; i++) {
		l[1].value = result_names[i];
		expo_sample_u64(buf, "scaleno_messages_total", l, 2, load_u64(&s->messages[i]));
	}

	expo_family(buf, "scaleno_handler_duration_seconds", EXPO_HISTOGRAM,
	    "Handler run time per attempt.");
	l[1] = (struct expo_label){ "le", bound };
	for (i = 0; i < WSTATS_NBUCKETS; i++) {
		cum += load_u64(&s->duration_buckets[i]);
		expo_format_double(i == WSTATS_NBUCKETS - 1 ? INFINITY : wstats_buckets[i], bound,
		    sizeof(bound));
		expo_sample_u64(buf, "scaleno_handler_duration_seconds_bucket", l, 2, cum);
	}
	expo_sample(buf, "scaleno_handler_duration_seconds_sum", l, 1,
	    (double)load_u64(&s->duration_sum_us) / 1e6);
	expo_sample_u64(buf, "scaleno_handler_duration_seconds_count", l, 1,
	    load_u64(&s->duration_count));

	expo_family(buf, "scaleno_partition_halted", EXPO_GAUGE, "1 while a partition is halted.");
	l[1] = (struct expo_label){ "partition", part };
	for (i = 0; i < s->npartitions && i < WSTATS_MAX_PARTITIONS; i++) {
		snprintf(part, sizeof(part), "%d", i);
		expo_sample(buf, "scaleno_partition_halted", l, 2,
		    __atomic_load_n(&s->halted[i], __ATOMIC_RELAXED));
	}

	if (load_i64(&s->dlq_depth) >= 0) {
		expo_family(buf, "scaleno_dlq_depth", EXPO_GAUGE, "Entries in the dead-letter stream.");
		expo_sample(buf, "scaleno_dlq_depth", l, 1, (double)load_i64(&s->dlq_depth));
	}
	for (i = 0; i < (int)ARRAY_LEN(singles); i++) {
		expo_family(buf, singles[i].name, singles[i].type, singles[i].help);
		expo_sample(buf, singles[i].name, l, 1, (double)singles[i].value);
	}
}
