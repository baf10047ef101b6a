/*
 * cmd_publish.c — `scaleno publish` (scaleno(8) "publish"): one message
 * from the command line, through the C API of include/scaleno/publish.h.
 */
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "publish_stdin.h"
#include "scaleno/publish.h"
#include "util.h"

/* Redis refuses bulk strings above 512 MB (proto-max-bulk-len's default). */
#define STDIN_MAX ((size_t)512 * 1024 * 1024)


static void
publish_usage(FILE *f)
{
	fprintf(f,
	    "usage: scaleno publish -q QUEUE [-c FILE] [-k KEY] [--ttl DURATION]\n"
	    "                       [--wait N [--wait-timeout DURATION]] FIELD VALUE ...\n"
	    "       scaleno publish -q QUEUE [-c FILE] [--ttl DURATION] --stdin\n"
	    "Add one message to QUEUE and print \"<partition> <entry id>\". Messages with the\n"
	    "same KEY stay on one partition while the key had a message within the TTL\n"
	    "(default 1h). A VALUE of - is read from standard input. --wait N: then wait\n"
	    "for N replicas to hold it (default timeout 1s). --stdin: one message per\n"
	    "line, {\"key\": \"K\", \"fields\": {\"FIELD\": \"VALUE\", ...}}. See scaleno(8).\n");
}

/* All of f (at most max bytes) in a malloc'd buffer. NULL with err. */
static char *
read_all(FILE *f, size_t max, size_t *outlen, char *err, size_t errlen)
{
	size_t n = 0, cap = 65536;
	char *buf = malloc(cap), *nb;

	while (buf != NULL) {
		size_t got;

		if (n == cap) {
			if (cap >= max) {
				snprintf(err, errlen, "standard input is larger than %zu bytes", max);
				free(buf);
				return NULL;
			}
			cap = cap * 2 < max ? cap * 2 : max;
			if ((nb = realloc(buf, cap)) == NULL)
				break;
			buf = nb;
		}
		got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0) {
			if (ferror(f)) {
				snprintf(err, errlen, "reading standard input failed");
				free(buf);
				return NULL;
			}
			*outlen = n;
			return buf;
		}
	}
	free(buf);
	snprintf(err, errlen, "out of memory");
	return NULL;
}

int
cmd_publish(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "ttl", required_argument, NULL, 'T' },
		{ "stdin", no_argument, NULL, 'S' },
		{ "wait", required_argument, NULL, 'W' },
		{ "wait-timeout", required_argument, NULL, 'X' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *qname = NULL, *key = NULL;
	struct scaleno_publisher *p = NULL;
	struct config *cfg = NULL;
	const struct queue_policy *q;
	struct scaleno_queue sq;
	struct scaleno_publish_options opts;
	size_t nfields, *lens = NULL, stdin_len = 0;
	char *stdin_buf = NULL, err[512], id[SCALENO_PUBLISH_ID_MAX];
	const char **fields = NULL;
	int64_t ttl_ms = 0, wait_ms = 1000;
	int ch, part, rc = EXIT_USAGE, wait_n = -1, acked;
	char *end;
	long v;
	bool from_stdin = false;

	/* A connection Redis closed must be an error (exit 2), not death by SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	optind = 0;	/* GNU: a full reset, so a second call in one process parses afresh */
	/* "+": stop at the first FIELD, so a value that starts with '-' stays a value. */
	while ((ch = getopt_long(argc, argv, "+q:c:k:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'q':
			qname = optarg;
			break;
		case 'c':
			path = optarg;
			break;
		case 'k':
			key = optarg;
			break;
		case 'T':
			if (util_parse_duration(optarg, &ttl_ms, err, sizeof(err)) < 0) {
				fprintf(stderr, "scaleno publish: --ttl %s: %s\n", optarg, err);
				return EXIT_USAGE;
			}
			if (ttl_ms < 1) {
				fprintf(stderr, "scaleno publish: --ttl %s: must be above zero\n",
				    optarg);
				return EXIT_USAGE;
			}
			break;
		case 'S':
			from_stdin = true;
			break;
		case 'W':
			v = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || v < 1 || v > 1000) {
				fprintf(stderr, "scaleno publish: --wait %s: give a replica count from 1 "
				    "to 1000\n", optarg);
				return EXIT_USAGE;
			}
			wait_n = (int)v;
			break;
		case 'X':
			if (util_parse_duration(optarg, &wait_ms, err, sizeof(err)) < 0 || wait_ms < 1) {
				fprintf(stderr, "scaleno publish: --wait-timeout %s: %s\n", optarg,
				    wait_ms < 1 ? "must be above zero" : err);
				return EXIT_USAGE;
			}
			break;
		case 'h':
			publish_usage(stdout);
			return EXIT_OK;
		default:
			publish_usage(stderr);
			return EXIT_USAGE;
		}
	}
	nfields = (size_t)(argc - optind);
	if (from_stdin && qname != NULL && nfields == 0 && key == NULL && wait_n < 0)
		return publish_stdin_cmd(path, qname, ttl_ms, stdin, stdout);
	if (from_stdin) {
		fprintf(stderr, "scaleno publish: --stdin takes -q QUEUE, no -k, no --wait and no "
		    "FIELD VALUE (each line holds its key and fields)\n");
		return EXIT_USAGE;
	}
	if (qname == NULL || nfields == 0 || nfields % 2 != 0) {
		fprintf(stderr, "scaleno publish: %s\n", qname == NULL ? "-q QUEUE is required" :
		    nfields == 0 ? "no fields: give at least one FIELD VALUE pair" :
		    "FIELD VALUE arguments come in pairs: the last field has no value");
		publish_usage(stderr);
		return EXIT_USAGE;
	}
	if (nfields / 2 > SCALENO_PUBLISH_MAX_PAIRS) {
		fprintf(stderr, "scaleno publish: %zu fields, at most %d\n", nfields / 2,
		    SCALENO_PUBLISH_MAX_PAIRS);
		return EXIT_USAGE;
	}
	lens = calloc(nfields, sizeof(*lens));
	fields = calloc(nfields, sizeof(*fields));
	if (lens == NULL || fields == NULL) {
		fprintf(stderr, "scaleno publish: out of memory\n");
		rc = EXIT_RUNTIME;
		goto out;
	}
	for (size_t i = 0; i < nfields; i++) {
		fields[i] = argv[optind + (int)i];
		lens[i] = strlen(fields[i]);
		if (i % 2 == 0 || strcmp(fields[i], "-") != 0)
			continue;
		if (stdin_buf != NULL) {
			fprintf(stderr, "scaleno publish: only one VALUE may be - (standard input)\n");
			goto out;
		}
		if ((stdin_buf = read_all(stdin, STDIN_MAX, &stdin_len, err, sizeof(err))) == NULL) {
			fprintf(stderr, "scaleno publish: %s\n", err);
			rc = EXIT_RUNTIME;
			goto out;
		}
		fields[i] = stdin_buf;
		lens[i] = stdin_len;
	}
	if (cli_load_config("publish", path, &cfg) != EXIT_OK)
		goto out;
	if ((q = config_queue(cfg, qname)) == NULL) {
		fprintf(stderr, "scaleno publish: %s: no queue named \"%s\"\n", cfg->path, qname);
		goto out;
	}
	sq = (struct scaleno_queue){ .stream = q->stream, .group = q->group,
		.partitions = q->partitions, .key_ttl_ms = ttl_ms };
	rc = EXIT_RUNTIME;
	/* The queue's own server (a redis block in its policy), else the main file's. */
	opts = (struct scaleno_publish_options){ .username = q->redis.username,
		.password = q->redis.password, .database = q->redis.database,
		.connect_timeout_ms = q->redis.connect_timeout_ms,
		.command_timeout_ms = q->redis.command_timeout_ms,
		.sentinels = (const char *const *)q->redis.sentinels,
		.nsentinels = q->redis.nsentinels, .master_name = q->redis.master_name,
		.sentinel_password = q->redis.sentinel_password,
		.cluster = (const char *const *)q->redis.cluster, .ncluster = q->redis.ncluster };
	if ((p = scaleno_publish_open(q->redis.address != NULL ? q->redis.address :
	    "127.0.0.1:6379", &opts, err, sizeof(err))) == NULL) {
		fprintf(stderr, "scaleno publish: %s\n", err);
		goto out;
	}
	if (scaleno_publish(p, &sq, key, key != NULL ? strlen(key) : 0, fields, lens, nfields,
	    &part, id, sizeof(id), err, sizeof(err)) < 0) {
		fprintf(stderr, "scaleno publish: queue %s: %s\n", q->name, err);
		goto out;
	}
	printf("%d %s\n", part, id);
	rc = fflush(stdout) == 0 ? EXIT_OK : EXIT_RUNTIME;
	if (rc == EXIT_OK && wait_n > 0 &&
	    scaleno_publish_wait(p, wait_n, wait_ms, &acked, err, sizeof(err)) != 0) {
		fprintf(stderr, "scaleno publish: queue %s: %s: added as %s, but a failover may "
		    "lose it\n", q->name, err, id);
		rc = EXIT_RUNTIME;
	}
out:
	scaleno_publish_close(p);
	config_free(cfg);
	free(stdin_buf);
	free(fields);
	free(lens);
	return rc;
}
