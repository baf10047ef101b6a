/*
 * Benchmark driver for redis_sample, run by tests/bench/sampling.sh.
 *   sampling_tool fill PORT N     create N queues bench:0..N-1 (stream, group,
 *                                 20 entries, 5 of them delivered, unacked)
 *   sampling_tool sample PORT N   sample all N queues: a cold tick (connect,
 *                                 script load) then a warm one; prints
 *                                 "tick wall_ms round_trips cpu_ms maxrss_kb
 *                                 redis_cpu_ms ok_queues" per tick
 * Built by the script with src/redisq.c (at a chosen REDIS_SAMPLE_CHUNK) and
 * build/obj/{util,log}.o: the standalone tests/tools/ build links no
 * project objects.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <hiredis/hiredis.h>

#include "config.h"
#include "log.h"
#include "redis_sample.h"
#include "util.h"

#define FILL_BATCH 500
#define ENTRIES 20

static char group[] = "g";

static int
drain(redisContext *c, int n)
{
	for (int i = 0; i < n; i++) {
		void *rep = NULL;

		if (redisGetReply(c, &rep) != REDIS_OK || rep == NULL) {
			fprintf(stderr, "fill: %s\n", c->errstr);
			return -1;
		}
		if (((redisReply *)rep)->type == REDIS_REPLY_ERROR) {
			fprintf(stderr, "fill: %s\n", ((redisReply *)rep)->str);
			freeReplyObject(rep);
			return -1;
		}
		freeReplyObject(rep);
	}
	return 0;
}

static int
fill(redisContext *c, int n)
{
	for (int lo = 0; lo < n; lo += FILL_BATCH) {
		int hi = lo + FILL_BATCH < n ? lo + FILL_BATCH : n, cmds = 0;

		for (int q = lo; q < hi; q++) {
			for (int e = 0; e < ENTRIES; e++, cmds++)
				redisAppendCommand(c, "XADD bench:%d * n %d", q, e);
			redisAppendCommand(c, "XGROUP CREATE bench:%d g 0", q);
			redisAppendCommand(c, "XREADGROUP GROUP g c COUNT 5 STREAMS bench:%d >", q);
			cmds += 2;
		}
		if (drain(c, cmds) < 0)
			return -1;
	}
	return 0;
}

/* used_cpu_user + used_cpu_sys of the server, in ms; -1 if unknown. */
static double
redis_cpu_ms(redisContext *c)
{
	redisReply *rep = redisCommand(c, "INFO cpu");
	double u = -1, s = -1;
	const char *p;

	if (rep != NULL && rep->type == REDIS_REPLY_STRING) {
		if ((p = strstr(rep->str, "used_cpu_user:")) != NULL)
			u = strtod(p + 14, NULL);
		if ((p = strstr(rep->str, "used_cpu_sys:")) != NULL)
			s = strtod(p + 13, NULL);
	}
	if (rep != NULL)
		freeReplyObject(rep);
	return u < 0 || s < 0 ? -1 : (u + s) * 1000;
}

static double
cpu_ms(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000
	    + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
}

static int
sample(redisContext *admin, int port, int n)
{
	char addr[64], err[512];
	struct redis_conf conf = { 0 };
	struct queue_policy *q = calloc((size_t)n, sizeof(*q));
	const struct queue_policy **qs = calloc((size_t)n, sizeof(*qs));
	struct raw_sample *out = calloc((size_t)n, sizeof(*out));
	char (*names)[24] = calloc((size_t)n, sizeof(*names));
	struct redis *r;
	int rc = 1;

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	conf.address = addr;
	conf.connect_timeout_ms = 1000;
	conf.command_timeout_ms = 10000;
	r = redis_new_conf(&conf);
	if (q == NULL || qs == NULL || out == NULL || names == NULL || r == NULL) {
		fprintf(stderr, "out of memory\n");
		goto out;
	}
	for (int i = 0; i < n; i++) {
		snprintf(names[i], sizeof(names[i]), "bench:%d", i);
		q[i].name = q[i].stream = names[i];
		q[i].group = group;
		q[i].partitions = 1;
		qs[i] = &q[i];
	}
	for (int tick = 1; tick <= 2; tick++) {
		double c0 = cpu_ms(), rc0 = redis_cpu_ms(admin), c1, rc1;
		int64_t t0 = util_now_ms(), t1;
		int trips = 0, ok = 0;
		struct rusage ru;

		if (redis_sample(r, qs, n, (double)tick, out, &trips, err, sizeof(err)) < 0) {
			fprintf(stderr, "sample: %s\n", err);
			goto out;
		}
		t1 = util_now_ms();
		c1 = cpu_ms();
		rc1 = redis_cpu_ms(admin);
		getrusage(RUSAGE_SELF, &ru);
		for (int i = 0; i < n; i++)
			ok += out[i].ok && out[i].lag == ENTRIES - 5 && out[i].pending == 5;
		printf("%s %" PRId64 " %d %.0f %ld %.0f %d\n", tick == 1 ? "cold" : "warm", t1 - t0,
		    trips, c1 - c0, ru.ru_maxrss, rc1 - rc0, ok);
	}
	rc = 0;
out:
	redis_free(r);
	free(q);
	free(qs);
	free(out);
	free(names);
	return rc;
}

int
main(int argc, char **argv)
{
	struct timeval tv = { 30, 0 };
	redisContext *c;
	int port, n, rc;

	if (argc != 4 || (strcmp(argv[1], "fill") != 0 && strcmp(argv[1], "sample") != 0)) {
		fprintf(stderr, "usage: sampling_tool fill|sample PORT N\n");
		return 2;
	}
	port = atoi(argv[2]);
	n = atoi(argv[3]);
	if (port <= 0 || n <= 0) {
		fprintf(stderr, "sampling_tool: bad PORT or N\n");
		return 2;
	}
	log_init("sampling_tool", LOG_LVL_WARN, LOG_FMT_TEXT, false);
	c = redisConnectWithTimeout("127.0.0.1", port, tv);
	if (c == NULL || c->err) {
		fprintf(stderr, "connect: %s\n", c ? c->errstr : "out of memory");
		return 1;
	}
	redisSetTimeout(c, tv);
	rc = strcmp(argv[1], "fill") == 0 ? (fill(c, n) < 0) : sample(c, port, n);
	redisFree(c);
	return rc;
}
