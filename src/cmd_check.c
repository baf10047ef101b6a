/*
 * cmd_check.c — `scaleno check [-c FILE] [-q] [-k]`: validate the main file
 * and every policy, print every problem as "file:line: message".
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "log.h"
#include "util.h"

static void
usage(FILE *f)
{
	fprintf(f, "usage: scaleno check [-c FILE] [-q] [-k]\n"
	    "  -c FILE  main configuration file (default: $SCALENO_CONFIG or %s)\n"
	    "  -q       print only errors, no per-queue summary\n"
	    "  -k       list every configuration key with its type and default\n",
	    SCALENO_SYSCONFDIR "/scaleno/scaleno.conf");
}

static void
list_keys(void)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct cfg_key *k = &config_keys[i];

		printf("%s%s\t%s\t%s\t%s\n", k->scope == CFG_POLICY ? "queue." : "", k->path,
		    config_type_name(k->type), k->def != NULL ? k->def : "-", k->doc);
	}
}

static void
print_queue(const struct queue_policy *q)
{
	static const char *const loss[] = { "loss acceptable", "loss critical" };
	static const char *const order[] = { "order irrelevant", "order critical" };

	printf("%s: mode %d %s (%s, %s), stream %s group %s partitions %d, ", q->name, (int)q->mode,
	    config_mode_name(q->mode), loss[q->loss_critical], order[q->order_critical], q->stream, q->group,
	    q->partitions);
	if (q->scale.target == SCALE_TARGET_NOMAD)
		printf("nomad job %s group %s", q->scale.job, q->scale.group);
	else
		printf("observe only");
	printf(" [%d..%d], ", q->scale.min, q->scale.max);
	if (q->worker.command != NULL)
		printf("handler %s %s (%d processes)\n", q->worker.protocol == PROTO_EXEC ? "exec" : "pipe",
		    q->worker.command[0], q->worker.processes);
	else
		printf("no worker section\n");
}

/*
 * A missing handler is a warning, not an error: the agent host that runs
 * check often does not have the workers' executables.
 */
static void
warn_handler(const struct queue_policy *q)
{
	const char *exe = q->worker.command != NULL ? q->worker.command[0] : NULL;

	if (exe != NULL && exe[0] == '/' && access(exe, X_OK) == -1)
		fprintf(stderr, "%s:%d: warning: queue %s: handler %s is not executable here\n", q->file, q->line,
		    q->name, exe);
}

int
cmd_check(int argc, char **argv)
{
	const char *path = NULL;
	bool quiet = false;
	struct config *cfg = NULL;
	int ch;

	optind = 1;
	opterr = 0;
	while ((ch = getopt(argc, argv, "+c:qkh")) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'q':
			quiet = true;
			break;
		case 'k':
			list_keys();
			return EXIT_OK;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			if (optopt == 'c')
				fprintf(stderr, "scaleno check: -c needs a file name\n");
			else
				fprintf(stderr, "scaleno check: unknown option -%c\n", optopt);
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "scaleno check: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return EXIT_USAGE;
	}
	log_init("scaleno", LOG_LVL_WARN, LOG_FMT_TEXT, false);
	if (config_load_report(path, &cfg, stderr) == -1)
		return EXIT_USAGE;
	for (size_t i = 0; i < cfg->nqueues; i++) {
		warn_handler(&cfg->queues[i]);
		if (!quiet)
			print_queue(&cfg->queues[i]);
	}
	if (!quiet)
		printf("configuration OK: %zu queue%s\n", cfg->nqueues, cfg->nqueues == 1 ? "" : "s");
	config_free(cfg);
	return EXIT_OK;
}
