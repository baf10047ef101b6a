/*
 * rawloop — the physical limit for tests/bench/throughput.sh: one hiredis
 * connection doing XREADGROUP COUNT n then one XACK of the whole batch, as
 * fast as it can, with no handler at all.
 *
 *   rawloop HOST PORT STREAM GROUP COUNT TOTAL
 *
 * Reads until TOTAL entries are acknowledged (or the stream stays empty for
 * 2 s) and prints "<acked> <seconds> <msgs/s>". Exit 0, or 2 on a Redis error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	struct timeval tv = { 5, 0 };
	redisContext *c;
	long total, acked = 0;
	int empty = 0;
	double t0;

	if (argc != 7) {
		fprintf(stderr, "usage: rawloop HOST PORT STREAM GROUP COUNT TOTAL\n");
		return 1;
	}
	total = atol(argv[6]);
	c = redisConnectWithTimeout(argv[1], atoi(argv[2]), tv);
	if (c == NULL || c->err || redisSetTimeout(c, tv) != REDIS_OK) {
		fprintf(stderr, "rawloop: cannot connect: %s\n", c ? c->errstr : "out of memory");
		return 2;
	}
	t0 = now_s();
	while (acked < total && empty < 20) {
		redisReply *r = redisCommand(c, "XREADGROUP GROUP %s raw COUNT %s BLOCK 100 STREAMS %s >",
		    argv[4], argv[5], argv[3]);
		const char **av;
		size_t n;

		if (r == NULL || r->type == REDIS_REPLY_ERROR) {
			fprintf(stderr, "rawloop: XREADGROUP: %s\n", r ? r->str : c->errstr);
			return 2;
		}
		if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
			empty++;
			freeReplyObject(r);
			continue;
		}
		empty = 0;
		n = r->element[0]->element[1]->elements;
		if ((av = calloc(n + 3, sizeof(*av))) == NULL)
			return 2;
		av[0] = "XACK";
		av[1] = argv[3];
		av[2] = argv[4];
		for (size_t i = 0; i < n; i++)
			av[3 + i] = r->element[0]->element[1]->element[i]->element[0]->str;
		redisReply *a = redisCommandArgv(c, (int)(n + 3), av, NULL);
		if (a == NULL || a->type != REDIS_REPLY_INTEGER) {
			fprintf(stderr, "rawloop: XACK failed\n");
			return 2;
		}
		acked += a->integer;
		freeReplyObject(a);
		free(av);
		freeReplyObject(r);
	}
	double dt = now_s() - t0 - (empty ? empty * 0.1 : 0);
	printf("%ld %.3f %.0f\n", acked, dt, dt > 0 ? (double)acked / dt : 0.0);
	redisFree(c);
	return 0;
}
