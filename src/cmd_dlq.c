/*
 * cmd_dlq.c — `scaleno dlq list|show|replay|purge`: the operator's view of
 * the dead-letter stream <stream>:dlq of a queue (scaleno-worker(8)). Every
 * move is one Lua script (contrib/lua/replay.lua), so a crash or a lost connection can
 * duplicate a message but never lose it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "redis_keys.h"
#include "redis_msg.h"
#include "redis_stream.h"
#include "util.h"

#define CHUNK 100		/* entries per XRANGE round */
#define SHOW_MAX 4096		/* bytes of one value `dlq show` prints */
#define ERROR_COLUMN 60

/* The queue an action works on (from cli_open) and its dead-letter stream. */
struct opctx {
	const struct queue_policy *q;
	struct redis *r;
	char dlq[512];
};

static void
dlq_usage(FILE *f)
{
	fprintf(f,
	    "usage: scaleno dlq list   -q QUEUE [-c FILE] [-n COUNT]\n"
	    "       scaleno dlq show   -q QUEUE [-c FILE] ID\n"
	    "       scaleno dlq replay -q QUEUE [-c FILE] (ID ... | --all)\n"
	    "       scaleno dlq purge  -q QUEUE [-c FILE] (--all | --range FROM TO)\n"
	    "Inspect the dead-letter stream <stream>:dlq of QUEUE, put messages back on\n"
	    "their origin stream, or delete them. See scaleno-worker(8).\n");
}

/* Print len bytes of s with anything unprintable escaped; at most max bytes. */
static void
print_escaped(const char *s, size_t len, size_t max)
{
	size_t n = len < max ? len : max;

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '\\')
			fputs("\\\\", stdout);
		else if (ch >= 0x20 && ch < 0x7f)
			putchar(ch);
		else if (ch == '\n')
			fputs("\\n", stdout);
		else
			printf("\\x%02x", ch);
	}
	if (len > n)
		printf("... (%zu bytes in all)", len);
}

static const char *
field_or(const struct message *e, const char *name, size_t *len)
{
	const char *v = redis_msg_field(e, name, len);

	if (v == NULL) {
		*len = 1;
		return "-";
	}
	return v;
}

static void
format_age(int64_t ms, char *buf, size_t len)
{
	if (ms < 0)
		snprintf(buf, len, "-");
	else if (ms < 120000)
		snprintf(buf, len, "%" PRId64 "s", ms / 1000);
	else if (ms < 2 * 3600000)
		snprintf(buf, len, "%" PRId64 "m", ms / 60000);
	else if (ms < 2 * 86400000LL)
		snprintf(buf, len, "%" PRId64 "h", ms / 3600000);
	else
		snprintf(buf, len, "%" PRId64 "d", ms / 86400000);
}

static int
dlq_list(struct opctx *x, int count)
{
	struct redis_batch b = { 0 };
	char err[512], age[32];
	int64_t len = 0, now = 0;
	int n;

	if (redis_stream_len(x->r, x->dlq, &len, err, sizeof(err)) < 0 ||
	    redis_time_ms(x->r, &now, err, sizeof(err)) < 0 ||
	    (n = redis_stream_range(x->r, x->dlq, "-", "+", count, false, &b, err, sizeof(err))) < 0) {
		fprintf(stderr, "scaleno dlq list: %s\n", err);
		redis_batch_free(&b);
		return EXIT_RUNTIME;
	}
	printf("%s: %" PRId64 " dead-lettered message(s)%s\n", x->dlq, len,
	    len > n ? " (oldest first; use -n for more)" : "");
	if (n > 0)
		printf("%-20s %-20s %8s %6s  %s\n", "ID", "ORIGIN-ID", "ATTEMPTS", "AGE", "LAST ERROR");
	for (int i = 0; i < n; i++) {
		const struct message *e = &b.e[i];
		size_t ol, al, el;
		const char *origin = field_or(e, "x-origin-id", &ol);
		const char *att = field_or(e, "x-attempts", &al);
		const char *error = field_or(e, "x-error", &el);

		format_age(now - redis_id_ms(e->id), age, sizeof(age));
		printf("%-20s %-20.*s %8.*s %6s  ", e->id, (int)ol, origin, (int)al, att, age);
		print_escaped(error, el, ERROR_COLUMN);
		putchar('\n');
	}
	redis_batch_free(&b);
	return EXIT_OK;
}

/* A value of decimal digits only (a time in ms), as a number; -1 otherwise. */
static int64_t
value_ms(const char *v, size_t len)
{
	int64_t ms = 0;

	if (len == 0 || len > 15)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		ms = ms * 10 + (v[i] - '0');
	}
	return ms;
}

/* The error history, one failure a line, its leading time in ms shown as ISO 8601. */
static void
print_history(const char *h, size_t len)
{
	char iso[64];

	/* One pass over the value: each turn consumes one line. */
	while (len > 0) {
		const char *nl = memchr(h, '\n', len);
		size_t ll = nl != NULL ? (size_t)(nl - h) : len;
		const char *sp = memchr(h, ' ', ll);
		int64_t ms = sp != NULL ? value_ms(h, (size_t)(sp - h)) : -1;

		fputs("  ", stdout);
		if (ms >= 0) {
			util_format_iso_ms(ms, iso, sizeof(iso));
			fputs(iso, stdout);
			print_escaped(sp, ll - (size_t)(sp - h), SHOW_MAX);
		} else
			print_escaped(h, ll, SHOW_MAX);
		putchar('\n');
		h += ll + (nl != NULL);
		len -= ll + (nl != NULL);
	}
}

static int
dlq_show(struct opctx *x, const char *id)
{
	struct redis_batch b = { 0 };
	char err[512], iso[64];
	int n;

	if ((n = redis_stream_range(x->r, x->dlq, id, id, 1, false, &b, err, sizeof(err))) < 0) {
		fprintf(stderr, "scaleno dlq show: %s\n", err);
		redis_batch_free(&b);
		return EXIT_RUNTIME;
	}
	if (n == 0) {
		fprintf(stderr, "scaleno dlq show: %s: no entry %s\n", x->dlq, id);
		redis_batch_free(&b);
		return EXIT_RUNTIME;
	}
	util_format_iso_ms(redis_id_ms(b.e[0].id), iso, sizeof(iso));
	printf("id: %s (dead-lettered %s)\n", b.e[0].id, iso);
	for (size_t i = 0; i < b.e[0].nfields; i++) {
		const char *name = b.e[0].names[i], *v = b.e[0].values[i];
		size_t nl = b.e[0].name_lens[i], vl = b.e[0].value_lens[i];
		int64_t ms;

		print_escaped(name, nl, SHOW_MAX);
		if (nl == 15 && memcmp(name, "x-error-history", 15) == 0) {
			fputs(":\n", stdout);
			print_history(v, vl);
			continue;
		}
		fputs(": ", stdout);
		/* x-first-failed-ms, x-last-failed-ms: the time, then the raw value. */
		if (nl > 5 && memcmp(name, "x-", 2) == 0 && memcmp(name + nl - 3, "-ms", 3) == 0 &&
		    (ms = value_ms(v, vl)) >= 0) {
			util_format_iso_ms(ms, iso, sizeof(iso));
			printf("%s (%.*s)", iso, (int)vl, v);
		} else
			print_escaped(v, vl, SHOW_MAX);
		putchar('\n');
	}
	redis_batch_free(&b);
	return EXIT_OK;
}

/* Replay one DLQ entry. 1 replayed, 0 not found, -1 failed (message printed). */
static int
replay_one(struct opctx *x, const struct message *e)
{
	struct redis_fields f = { 0 };
	char err[512], nid[REDIS_ID_MAX] = "", origin[512];
	size_t olen;
	const char *o = redis_msg_field(e, "x-origin-stream", &olen);
	int rc;

	if (o == NULL || olen == 0 || olen >= sizeof(origin)) {
		fprintf(stderr, "scaleno dlq replay: %s has no usable x-origin-stream; left in %s\n",
		    e->id, x->dlq);
		return -1;
	}
	memcpy(origin, o, olen);
	origin[olen] = '\0';
	for (size_t i = 0; i < e->nfields; i++)
		if (!redis_is_failure_field(e->names[i], e->name_lens[i]) &&
		    redis_fields_add(&f, e->names[i], e->name_lens[i], e->values[i],
		    e->value_lens[i]) < 0) {
			redis_fields_free(&f);
			fprintf(stderr, "scaleno dlq replay: out of memory\n");
			return -1;
		}
	rc = redis_stream_replay(x->r, x->dlq, origin, e->id, &f, nid, err, sizeof(err));
	redis_fields_free(&f);
	if (rc < 0) {
		fprintf(stderr, "scaleno dlq replay: %s: %s\n", e->id, err);
		return -1;
	}
	if (rc == 1)
		printf("replayed %s -> %s %s\n", e->id, origin, nid);
	return rc;
}

static int
dlq_replay(struct opctx *x, char **ids, int nids, bool all)
{
	struct redis_batch b = { 0 };
	char err[512], cursor[REDIS_ID_MAX + 1] = "-";
	int replayed = 0, missing = 0, failed = 0, n;
	int64_t len = 0;

	if (all) {
		/* Bounded by the length at the start: entries added meanwhile wait for the next run. */
		if (redis_stream_len(x->r, x->dlq, &len, err, sizeof(err)) < 0) {
			fprintf(stderr, "scaleno dlq replay: %s\n", err);
			return EXIT_RUNTIME;
		}
		for (int64_t done = 0; done < len; done += n) {
			redis_batch_clear(&b);
			n = redis_stream_range(x->r, x->dlq, cursor, "+", CHUNK, false, &b, err, sizeof(err));
			if (n < 0) {
				fprintf(stderr, "scaleno dlq replay: %s\n", err);
				failed++;
				break;
			}
			if (n == 0)
				break;
			for (int i = 0; i < n; i++) {
				int rc = replay_one(x, &b.e[i]);

				replayed += rc == 1;
				failed += rc < 0;
			}
			snprintf(cursor, sizeof(cursor), "(%s", b.e[n - 1].id);
		}
	}
	for (int i = 0; i < nids; i++) {
		redis_batch_clear(&b);
		n = redis_stream_range(x->r, x->dlq, ids[i], ids[i], 1, false, &b, err, sizeof(err));
		if (n < 0) {
			fprintf(stderr, "scaleno dlq replay: %s: %s\n", ids[i], err);
			failed++;
			continue;
		}
		int rc = n == 0 ? 0 : replay_one(x, &b.e[0]);
		if (rc == 0) {
			fprintf(stderr, "scaleno dlq replay: %s: no entry %s\n", x->dlq, ids[i]);
			missing++;
		}
		replayed += rc == 1;
		failed += rc < 0;
	}
	redis_batch_free(&b);
	printf("%d replayed, %d not found, %d failed\n", replayed, missing, failed);
	if (replayed > 0 && x->q->order_critical)
		printf("note: %s is order-critical; replayed messages are processed after "
		    "everything already queued\n", x->q->name);
	return failed || missing ? EXIT_RUNTIME : EXIT_OK;
}

static int
dlq_purge(struct opctx *x, const char *from, const char *to)
{
	struct redis_batch b = { 0 };
	const char *ids[CHUNK];
	char err[512];
	int64_t len = 0, deleted = 0;
	int rc = EXIT_OK;

	if (redis_stream_len(x->r, x->dlq, &len, err, sizeof(err)) < 0) {
		fprintf(stderr, "scaleno dlq purge: %s\n", err);
		return EXIT_RUNTIME;
	}
	/* Each round deletes what it read, so the next one starts at from again. */
	for (int64_t round = 0; round <= len / CHUNK + 1; round++) {
		int n, d;

		redis_batch_clear(&b);
		n = redis_stream_range(x->r, x->dlq, from, to, CHUNK, false, &b, err, sizeof(err));
		if (n <= 0) {
			if (n < 0) {
				fprintf(stderr, "scaleno dlq purge: %s\n", err);
				rc = EXIT_RUNTIME;
			}
			break;
		}
		for (int i = 0; i < n; i++)
			ids[i] = b.e[i].id;
		if ((d = redis_stream_delete(x->r, x->dlq, ids, (size_t)n, err, sizeof(err))) < 0) {
			fprintf(stderr, "scaleno dlq purge: %s\n", err);
			rc = EXIT_RUNTIME;
			break;
		}
		deleted += d;
	}
	redis_batch_free(&b);
	printf("%" PRId64 " deleted from %s\n", deleted, x->dlq);
	return rc;
}

enum dlq_action { DLQ_LIST = 0, DLQ_SHOW, DLQ_REPLAY, DLQ_PURGE };

/* The operands and options of action a, checked before anything is touched. */
static int
dlq_operands(struct cli *c, enum dlq_action a, bool all, const char *from)
{
	char **v = c->args;
	int n = c->nargs;

	if (a == DLQ_LIST && (n != 0 || all || from != NULL))
		return cli_usage_error(c, "unexpected arguments");
	if (a == DLQ_SHOW && (n != 1 || all || from != NULL))
		return cli_usage_error(c, "exactly one ID is expected");
	if (a == DLQ_REPLAY && (all == (n > 0) || from != NULL))
		return cli_usage_error(c, "give IDs or --all (not both)");
	if (a == DLQ_PURGE && !((all && from == NULL && n == 0) || (!all && from != NULL && n == 1)))
		return cli_usage_error(c, "give --all or --range FROM TO");
	if (from != NULL && ((!cli_stream_id(from) && strcmp(from, "-") != 0) ||
	    (!cli_stream_id(v[0]) && strcmp(v[0], "+") != 0)))
		return cli_usage_error(c, "--range FROM TO takes stream ids (ms-seq), or - and + for the ends");
	for (int i = 0; from == NULL && i < n; i++)
		if (!cli_stream_id(v[i]))
			return cli_usage_error(c, "\"%s\" is not a stream id (ms-seq)", v[i]);
	return EXIT_OK;
}

int
cmd_dlq(int argc, char **argv)
{
	enum { O_ALL = CLI_LONG, O_RANGE };
	static const struct cli_opt opts[] = {
		{ 'n', "count", "a number" },
		{ O_ALL, "all", NULL },
		{ O_RANGE, "range", "a stream id" },
		{ 0, NULL, NULL },
	};
	static const char *const cmds[] = {	/* by enum dlq_action */
		[DLQ_LIST] = "dlq list", [DLQ_SHOW] = "dlq show",
		[DLQ_REPLAY] = "dlq replay", [DLQ_PURGE] = "dlq purge",
	};
	struct cli c = { .cmd = "dlq", .usage = dlq_usage, .flags = CLI_CONFIG | CLI_QUEUE | CLI_REDIS,
		.opts = opts, .max_args = -1 };
	struct cli_queue qx = { 0 };
	struct opctx x = { 0 };
	const char *from = NULL;
	bool all = false;
	long count = 20;
	size_t a;
	int ch, rc;

	if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
		dlq_usage(stdout);
		return EXIT_OK;
	}
	if (argc < 2 || argv[1][0] == '-')
		return cli_usage_error(&c, "an action is required (list, show, replay, purge)");
	for (a = 0; a < ARRAY_LEN(cmds) && strcmp(argv[1], cmds[a] + strlen("dlq ")) != 0; a++)
		;
	if (a == ARRAY_LEN(cmds))
		return cli_usage_error(&c, "unknown action \"%s\" (list, show, replay, purge)", argv[1]);
	c.cmd = cmds[a];
	while ((ch = cli_next(&c, argc - 1, argv + 1)) > 0) {
		if (ch == 'n' && cli_number(&c, 1, 100000, &count) != EXIT_OK)
			return c.rc;
		if (ch == O_ALL)
			all = true;
		else if (ch == O_RANGE)
			from = c.optarg;
	}
	if (ch == CLI_STOP)
		return c.rc;
	if ((rc = dlq_operands(&c, (enum dlq_action)a, all, from)) != EXIT_OK)
		return rc;
	if ((rc = cli_open(&c, &qx)) == EXIT_OK) {
		x.r = qx.r;
		x.q = qx.q;
		(void)redis_key_buf(x.dlq, sizeof(x.dlq), x.q->stream, x.q->partitions, RK_DLQ, 0);
		if (a == DLQ_LIST)
			rc = dlq_list(&x, (int)count);
		else if (a == DLQ_SHOW)
			rc = dlq_show(&x, c.args[0]);
		else if (a == DLQ_REPLAY)
			rc = dlq_replay(&x, c.args, c.nargs, all);
		else
			rc = all ? dlq_purge(&x, "-", "+") : dlq_purge(&x, from, c.args[0]);
	}
	cli_close(&qx);
	return rc;
}
