/*
 * cmd_resume.c — `scaleno resume`: restart the halted partitions of a
 * halt-mode queue (scaleno-worker(8)), retrying the message that halted
 * one, or with --skip moving it to the dead-letter stream in the same Lua
 * script that lifts the halt.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "config.h"
#include "redis_keys.h"
#include "redis_msg.h"
#include "redis_part.h"
#include "redis_stream.h"
#include "util.h"

/* The queue being resumed (from cli_open) and its dead-letter stream. */
struct resume {
	const struct queue_policy *q;
	struct redis *r;
	char dlq[512];
};

static void
resume_usage(FILE *f)
{
	fprintf(f,
	    "usage: scaleno resume -q QUEUE [-c FILE] [-p PARTITION | --all] [--skip]\n"
	    "Restart a halted partition: retry the halting message, or with --skip move it\n"
	    "to the dead-letter stream and go on with the next one (--skip needs -p or\n"
	    "--all). Without -p, every halted partition of QUEUE. See scaleno-worker(8).\n");
}

/* Resume one partition stream. An exit code; *halted set when it was halted. */
static int
resume_one(const struct resume *x, const char *stream, bool skip, bool *halted)
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
	if (h.id[0] == '\0' || !cli_stream_id(h.id)) {
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
		printf("%s: skipped %s into %s as %s (after %s attempt(s): %.*s); the partition goes "
		    "on with the next message\n", stream, hid, x->dlq, did, atttext, (int)elen,
		    error != NULL ? error : "");
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
	enum { O_SKIP = CLI_LONG, O_ALL };
	static const struct cli_opt opts[] = {
		{ 'p', NULL, "a partition number" },
		{ O_SKIP, "skip", NULL },
		{ O_ALL, "all", NULL },
		{ 0, NULL, NULL },
	};
	struct cli c = { .cmd = "resume", .usage = resume_usage,
		.flags = CLI_CONFIG | CLI_QUEUE | CLI_REDIS, .opts = opts, .max_args = 0 };
	struct cli_queue qx = { 0 };
	struct resume x = { 0 };
	bool skip = false, all = false;
	long part = -1;
	int ch, rc, nhalted = 0;

	while ((ch = cli_next(&c, argc, argv)) > 0) {
		if (ch == 'p' && cli_number(&c, 0, 1000000, &part) != EXIT_OK)
			return c.rc;
		if (ch == O_SKIP)
			skip = true;
		if (ch == O_ALL)
			all = true;
	}
	if (ch == CLI_STOP)
		return c.rc;
	if (all && part >= 0)
		return cli_usage_error(&c, "-p and --all exclude each other");
	/* Skipping moves a message out of its key's order: never by default on every partition. */
	if (skip && !all && part < 0)
		return cli_usage_error(&c, "--skip needs -p PARTITION or --all");
	if ((rc = cli_open(&c, &qx)) != EXIT_OK)
		goto out;
	x.q = qx.q;
	x.r = qx.r;
	(void)redis_key_buf(x.dlq, sizeof(x.dlq), x.q->stream, x.q->partitions, RK_DLQ, 0);
	if (part >= x.q->partitions) {
		rc = cli_usage_error(&c, "queue %s has %d partition(s) (0 to %d)", x.q->name,
		    x.q->partitions, x.q->partitions - 1);
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
	cli_close(&qx);
	return rc;
}
