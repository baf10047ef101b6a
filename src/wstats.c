/*
 * wstats.c — worker counters in one shared anonymous mapping. Consumers
 * update them with atomic adds/stores; the supervisor renders them for
 * /metrics. A consumer killed mid-update can at worst lose its own
 * increment: every field is one aligned word, so no reader sees a torn value.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

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

static void
render_sample(struct strbuf *buf, const char *name, const char *queue, const char *extra,
    const char *fmt_value, ...) __attribute__((format(printf, 5, 6)));

static void
render_sample(struct strbuf *buf, const char *name, const char *queue, const char *extra,
    const char *fmt_value, ...)
{
	va_list ap;

	strbuf_printf(buf, "%s{queue=\"", name);
	strbuf_prom_label(buf, queue);
	strbuf_printf(buf, "\"%s} ", extra != NULL ? extra : "");
	va_start(ap, fmt_value);
	strbuf_vprintf(buf, fmt_value, ap);
	va_end(ap);
	strbuf_printf(buf, "\n");
}

static void
render_head(struct strbuf *buf, const char *name, const char *type, const char *help)
{
	strbuf_printf(buf, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
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
		const char *name, *type, *help;
		long long value;
	} singles[] = {
		{ "scaleno_consumer_restarts_total", "counter", "Consumer processes restarted.",
		  (long long)load_u64(&s->consumer_restarts) },
		{ "scaleno_consumer_crash_loop", "gauge", "Consumer slots in a crash loop.",
		  (long long)load_i64(&s->crash_loop) },
		{ "scaleno_consumers_running", "gauge", "Consumer processes alive.",
		  (long long)load_i64(&s->consumers_running) },
		{ "scaleno_claimed_total", "counter", "Pending entries reclaimed from other consumers.",
		  (long long)load_u64(&s->claimed) },
		{ "scaleno_worker_redis_errors_total", "counter", "Redis errors seen by consumers.",
		  (long long)load_u64(&s->redis_errors) },
	};
	char extra[64];
	uint64_t cum = 0;
	int i;

	render_head(buf, "scaleno_messages_total", "counter", "Messages handled, by result.");
	for (i = 0; i < WS_NRESULTS; i++) {
		snprintf(extra, sizeof(extra), ",result=\"%s\"", result_names[i]);
		render_sample(buf, "scaleno_messages_total", queue, extra, "%llu",
		    (unsigned long long)load_u64(&s->messages[i]));
	}

	render_head(buf, "scaleno_handler_duration_seconds", "histogram", "Handler run time per attempt.");
	for (i = 0; i < WSTATS_NBUCKETS; i++) {
		cum += load_u64(&s->duration_buckets[i]);
		if (i == WSTATS_NBUCKETS - 1)
			snprintf(extra, sizeof(extra), ",le=\"+Inf\"");
		else
			snprintf(extra, sizeof(extra), ",le=\"%g\"", wstats_buckets[i]);
		render_sample(buf, "scaleno_handler_duration_seconds_bucket", queue, extra, "%llu",
		    (unsigned long long)cum);
	}
	render_sample(buf, "scaleno_handler_duration_seconds_sum", queue, NULL, "%.6f",
	    (double)load_u64(&s->duration_sum_us) / 1e6);
	render_sample(buf, "scaleno_handler_duration_seconds_count", queue, NULL, "%llu",
	    (unsigned long long)load_u64(&s->duration_count));

	render_head(buf, "scaleno_partition_halted", "gauge", "1 while a partition is halted.");
	for (i = 0; i < s->npartitions && i < WSTATS_MAX_PARTITIONS; i++) {
		snprintf(extra, sizeof(extra), ",partition=\"%d\"", i);
		render_sample(buf, "scaleno_partition_halted", queue, extra, "%d",
		    (int)__atomic_load_n(&s->halted[i], __ATOMIC_RELAXED));
	}

	if (load_i64(&s->dlq_depth) >= 0) {
		render_head(buf, "scaleno_dlq_depth", "gauge", "Entries in the dead-letter stream.");
		render_sample(buf, "scaleno_dlq_depth", queue, NULL, "%lld",
		    (long long)load_i64(&s->dlq_depth));
	}
	for (i = 0; i < (int)ARRAY_LEN(singles); i++) {
		render_head(buf, singles[i].name, singles[i].type, singles[i].help);
		render_sample(buf, singles[i].name, queue, NULL, "%lld", singles[i].value);
	}
}
