/*
 * cmd_check.c — `scaleno check [-c FILE] [-q] [-k]`: validate the main file
 * and every policy, print every problem as "file:line: message".
 */
#include <stdio.h>

#include "check_warn.h"
#include "cli.h"
#include "config.h"
#include "log.h"

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

int
cmd_check(int argc, char **argv)
{
	static const struct cli_opt opts[] = {
		{ 'q', NULL, NULL },
		{ 'k', NULL, NULL },
		{ 0, NULL, NULL },
	};
	struct cli c = { .cmd = "check", .usage = usage, .flags = CLI_CONFIG | CLI_NOMAD | CLI_IN_ORDER,
		.opts = opts, .max_args = 0 };
	struct cli_queue x = { 0 };
	bool quiet = false;
	int ch;

	while ((ch = cli_next(&c, argc, argv)) > 0) {
		if (ch == 'k') {
			list_keys();
			return EXIT_OK;
		}
		if (ch == 'q')
			quiet = true;
	}
	if (ch == CLI_STOP)
		return c.rc;
	log_init("scaleno", LOG_LVL_WARN, LOG_FMT_TEXT, false);
	if (cli_open(&c, &x) != EXIT_OK) {
		cli_close(&x);
		return EXIT_USAGE;
	}
	for (size_t i = 0; i < x.cfg->nqueues; i++) {
		check_warn_queue(&x.cfg->queues[i]);
		if (!quiet)
			print_queue(&x.cfg->queues[i]);
	}
	if (!quiet)
		printf("configuration OK: %zu queue%s\n", x.cfg->nqueues, x.cfg->nqueues == 1 ? "" : "s");
	cli_close(&x);
	return EXIT_OK;
}
