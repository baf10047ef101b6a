/*
 * dlq.c — the operator commands for failed messages: `scaleno dlq
 * list|show|replay|purge` (the dead-letter stream <stream>:dlq) and
 * `scaleno resume` (halted partitions of mode 4). Every move is one Lua
 * script (contrib/lua/replay.lua), so a crash or a lost connection can duplicate a
 * message but never lose it.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "redis_keys.h"
#include "redis_part.h"
#include "redis_stream.h"
#include "util.h"

#define CHUNK 100		/* entries per XRANGE round */
#define SHOW_MAX 4096		/* bytes of one value `dlq show` prints */
#define ERROR_COLUMN 60

struct opctx {
	const char *cmd;	/* "dlq list", "resume", ... for messages */
	struct config *cfg;
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

static void
resume_usage(FILE *f)
{
	fprintf(f,
	    "usage: scaleno resume -q QUEUE [-c FILE] [-p PARTITION] [--skip]\n"
	    "Restart a halted partition: retry the halting message, or with --skip move it\n"
	    "to the dead-letter stream and go on with the next one. Without -p, every\n"
	    "halted partition of QUEUE. See scaleno-worker(8).\n");
}

/* Load the configuration, find the queue, make the connection. An exit code. */
static int
ctx_open(struct opctx *x, const char *path, const char *qname)
{
	char err[512];

	if (cli_load_config(x->cmd, path, &x->cfg) != EXIT_OK)
		return EXIT_USAGE;
	if ((x->q = config_queue(x->cfg, qname)) == NULL) {
		fprintf(stderr, "scaleno %s: %s: no queue named \"%s\"\n", x->cmd, x->cfg->path,
		    qname);
		return EXIT_USAGE;
	}
	(void)redis_key_buf(x->dlq, sizeof(x->dlq), x->q->stream, x->q->partitions, RK_DLQ, 0);
	if ((x->r = redis_new_conf(&x->cfg->redis)) == NULL) {
		fprintf(stderr, "scaleno %s: out of memory\n", x->cmd);
		return EXIT_RUNTIME;
	}
	if (redis_ensure(x->r, err, sizeof(err)) < 0) {
		fprintf(stderr, "scaleno %s: %s\n", x->cmd, err);
		return EXIT_RUNTIME;
	}
	return EXIT_OK;
}

static void
ctx_close(struct opctx *x)
{
	if (x->r != NULL)
		redis_free(x->r);
	if (x->cfg != NULL)
		config_free(x->cfg);
}

/* A whole number in [lo, hi] for option what; -1 with a message otherwise. */
static int
parse_number(const char *what, const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || errno != 0 || v < lo || v > hi) {
		fprintf(stderr, "scaleno %s \"%s\": expected a number from %ld to %ld\n", what, s, lo,
		    hi);
		return -1;
	}
	*out = v;
	return 0;
}

/* A stream id "ms" or "ms-seq" (digits only)? */
static bool
valid_id(const char *s)
{
	const char *p = s;

	if (!isdigit((unsigned char)*p))
		return false;
	while (isdigit((unsigned char)*p))
		p++;
	if (*p == '-') {
		p++;
		if (!isdigit((unsigned char)*p))
			return false;
		while (isdigit((unsigned char)*p))
			p++;
	}
	return *p == '\0' && p - s < REDIS_ID_MAX;
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

static int
dlq_show(struct opctx *x, const char *id)
{
	struct redis_batch b = { 0 };
	char err[512];
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
	printf("id: %s\n", b.e[0].id);
	for (size_t i = 0; i < b.e[0].nfields; i++) {
		print_escaped(b.e[0].names[i], b.e[0].name_lens[i], SHOW_MAX);
		fputs(": ", stdout);
		print_escaped(b.e[0].values[i], b.e[0].value_lens[i], SHOW_MAX);
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

int
cmd_dlq(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "all", no_argument, NULL, 'A' },
		{ "range", required_argument, NULL, 'R' },
		{ "count", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct opctx x = { .cmd = "dlq" };
	const char *path = NULL, *qname = NULL, *action, *from = NULL;
	bool all = false;
	long count = 20;
	int ch, rc;

	if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
		dlq_usage(stdout);
		return EXIT_OK;
	}
	if (argc < 2 || argv[1][0] == '-') {
		fprintf(stderr, "scaleno dlq: an action is required (list, show, replay, purge)\n");
		dlq_usage(stderr);
		return EXIT_USAGE;
	}
	action = argv[1];
	if (strcmp(action, "list") != 0 && strcmp(action, "show") != 0 &&
	    strcmp(action, "replay") != 0 && strcmp(action, "purge") != 0) {
		fprintf(stderr, "scaleno dlq: unknown action \"%s\" (list, show, replay, purge)\n",
		    action);
		dlq_usage(stderr);
		return EXIT_USAGE;
	}
	argc--;
	argv++;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "q:c:n:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'q':
			qname = optarg;
			break;
		case 'c':
			path = optarg;
			break;
		case 'n':
			if (parse_number("dlq: --count", optarg, 1, 100000, &count) < 0)
				return EXIT_USAGE;
			break;
		case 'A':
			all = true;
			break;
		case 'R':
			from = optarg;
			break;
		case 'h':
			dlq_usage(stdout);
			return EXIT_OK;
		default:
			dlq_usage(stderr);
			return EXIT_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if (qname == NULL) {
		fprintf(stderr, "scaleno dlq %s: -q QUEUE is required\n", action);
		return EXIT_USAGE;
	}
	/* Check the arguments of each action before touching anything. */
	if (strcmp(action, "list") == 0 && (argc != 0 || all || from != NULL)) {
		fprintf(stderr, "scaleno dlq list: unexpected arguments\n");
		return EXIT_USAGE;
	}
	if (strcmp(action, "show") == 0 && (argc != 1 || all || from != NULL)) {
		fprintf(stderr, "scaleno dlq show: exactly one ID is expected\n");
		return EXIT_USAGE;
	}
	if (strcmp(action, "replay") == 0 && (all == (argc > 0) || from != NULL)) {
		fprintf(stderr, "scaleno dlq replay: give IDs or --all (not both)\n");
		return EXIT_USAGE;
	}
	if (strcmp(action, "purge") == 0 &&
	    !((all && from == NULL && argc == 0) || (!all && from != NULL && argc == 1))) {
		fprintf(stderr, "scaleno dlq purge: give --all or --range FROM TO\n");
		return EXIT_USAGE;
	}
	if (from != NULL && ((!valid_id(from) && strcmp(from, "-") != 0) ||
	    (!valid_id(argv[0]) && strcmp(argv[0], "+") != 0))) {
		fprintf(stderr, "scaleno dlq purge: --range FROM TO takes stream ids (ms-seq), "
		    "or - and + for the ends\n");
		return EXIT_USAGE;
	}
	for (int i = 0; from == NULL && i < argc; i++)
		if (!valid_id(argv[i])) {
			fprintf(stderr, "scaleno dlq %s: \"%s\" is not a stream id (ms-seq)\n", action,
			    argv[i]);
			return EXIT_USAGE;
		}
	if ((rc = ctx_open(&x, path, qname)) != EXIT_OK) {
		ctx_close(&x);
		return rc;
	}
	if (strcmp(action, "list") == 0)
		rc = dlq_list(&x, (int)count);
	else if (strcmp(action, "show") == 0)
		rc = dlq_show(&x, argv[0]);
	else if (strcmp(action, "replay") == 0)
		rc = dlq_replay(&x, argv, argc, all);
	else
		rc = all ? dlq_purge(&x, "-", "+") : dlq_purge(&x, from, argv[0]);
	ctx_close(&x);
	return rc;
}

/* Resume one partition stream. An exit code; *halted set when it was halted. */
static int
resume_one(struct opctx *x, const char *stream, bool skip, bool *halted)
{
	struct message h;
	struct redis_batch b = { 0 };
	struct redis_fields f = { 0 };
	char halt_key[600], err[512], hid[REDIS_ID_MAX] = "", did[REDIS_ID_MAX] = "";
	const char *error, *att;
	size_t elen = 0, alen = 0;
	int rc = EXIT_RUNTIME, r;

	(void)redis_key_buf(halt_key, sizeof(halt_key), stream, 1, RK_HALT, 0);
	*halted = false;
	if ((r = redis_halt_get(x->r, halt_key, &h, err, sizeof(err))) < 0) {
		fprintf(stderr, "scaleno resume: %s\n", err);
		return EXIT_RUNTIME;
	}
	if (r == 0)
		return EXIT_OK;
	*halted = true;
	if (!skip) {
		r = redis_resume(x->r, halt_key, stream, x->q->group, x->dlq, false, NULL, NULL, hid,
		    NULL, err, sizeof(err));
		if (r < 0)
			fprintf(stderr, "scaleno resume: %s: %s\n", stream, err);
		else if (r == 0)
			printf("%s: no longer halted\n", stream);
		else
			printf("%s: resumed; its consumer retries %s\n", stream, hid);
		rc = r < 0 ? EXIT_RUNTIME : EXIT_OK;
		goto out;
	}
	if (h.id[0] == '\0' || !valid_id(h.id)) {
		fprintf(stderr, "scaleno resume: %s: the halt record has no valid id\n", halt_key);
		goto out;
	}
	if (redis_stream_range(x->r, stream, h.id, h.id, 1, false, &b, err, sizeof(err)) < 0) {
		fprintf(stderr, "scaleno resume: %s\n", err);
		goto out;
	}
	if (b.n == 0) {
		/* Trimmed away: still record it in the DLQ so the skip is visible. */
		struct message *e = calloc(1, sizeof(*e));

		if (e == NULL)
			goto out;
		b.e = e;
		b.n = b.cap = 1;
		util_strlcpy(e->id, h.id, sizeof(e->id));
	}
	error = redis_msg_field(&h, "error", &elen);
	att = redis_msg_field(&h, "attempts", &alen);
	char errtext[600], atttext[16];
	snprintf(errtext, sizeof(errtext), "%.*s (skipped by an operator)", (int)elen,
	    error != NULL ? error : "");
	snprintf(atttext, sizeof(atttext), "%.*s", (int)alen, att != NULL ? att : "0");
	if (redis_failure_fields(&b.e[0], stream, atoi(atttext), errtext, util_wall_ms(), 0, 0,
	    &f) < 0) {
		fprintf(stderr, "scaleno resume: out of memory\n");
		goto out;
	}
	r = redis_resume(x->r, halt_key, stream, x->q->group, x->dlq, true, h.id, &f, hid, did,
	    err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "scaleno resume: %s: %s\n", stream, err);
		goto out;
	}
	if (r == 0)
		printf("%s: no longer halted; nothing skipped\n", stream);
	else
		printf("%s: skipped %s into %s as %s; the partition goes on with the next message\n",
		    stream, hid, x->dlq, did);
	rc = EXIT_OK;
out:
	redis_fields_free(&f);
	redis_batch_free(&b);
	redis_msg_free(&h);
	return rc;
}

int
cmd_resume(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "skip", no_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct opctx x = { .cmd = "resume" };
	const char *path = NULL, *qname = NULL;
	bool skip = false;
	long part = -1;
	int ch, rc, nhalted = 0;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "q:c:p:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'q':
			qname = optarg;
			break;
		case 'c':
			path = optarg;
			break;
		case 'p':
			if (parse_number("resume: -p", optarg, 0, 1000000, &part) < 0)
				return EXIT_USAGE;
			break;
		case 'S':
			skip = true;
			break;
		case 'h':
			resume_usage(stdout);
			return EXIT_OK;
		default:
			resume_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (cli_need_queue("resume", qname, optind != argc, resume_usage) != EXIT_OK)
		return EXIT_USAGE;
	if ((rc = ctx_open(&x, path, qname)) != EXIT_OK)
		goto out;
	if (part >= x.q->partitions) {
		fprintf(stderr, "scaleno resume: queue %s has %d partition(s) (0 to %d)\n", x.q->name,
		    x.q->partitions, x.q->partitions - 1);
		rc = EXIT_USAGE;
		goto out;
	}
	for (int i = 0; i < x.q->partitions; i++) {
		char stream[512];
		bool halted;
		int r;

		if (part >= 0 && i != part)
			continue;
		(void)redis_key_buf(stream, sizeof(stream), x.q->stream, x.q->partitions, RK_PART, i);
		r = resume_one(&x, stream, skip, &halted);
		nhalted += halted;
		if (r != EXIT_OK)
			rc = r;
	}
	if (rc == EXIT_OK && nhalted == 0) {
		fprintf(stderr, "scaleno resume: %s: no halted partition%s; nothing to do\n",
		    x.q->name, part >= 0 ? " with that number" : "");
		rc = EXIT_RUNTIME;
	}
out:
	ctx_close(&x);
	return rc;
}
