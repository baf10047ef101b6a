/*
 * main.c — the scaleno binary: subcommand dispatch.
 */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <hiredis/hiredis.h>
#include <libconfig.h>
#include <microhttpd.h>

#include "cli.h"
#include "httpc.h"

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *help;
} commands[] = {
	{ "agent", cmd_agent, "run the autoscaler control loop" },
	{ "worker", cmd_worker, "supervise the consumer processes of one queue" },
	{ "check", cmd_check, "validate the configuration and every policy" },
	{ "status", cmd_status, "one line per queue: backlog, age, rates, workers, decision" },
	{ "dlq", cmd_dlq, "list, show, replay or purge dead-lettered messages" },
	{ "resume", cmd_resume, "restart a halted partition (retry, or --skip to the DLQ)" },
	{ "publish", cmd_publish, "add a message to a queue" },
	{ "simulate", cmd_simulate, "backtest a policy against a traffic trace" },
	{ "version", cmd_version, "print versions" },
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: scaleno <command> [options]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
	fprintf(f, "\nRun 'scaleno <command> -h' for a command's options; see scaleno(8).\n");
}

int
cmd_version(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("scaleno %s\n", SCALENO_VERSION);
	printf("  hiredis %d.%d.%d, libcurl %s, cJSON %s, libconfig %d.%d.%d, libmicrohttpd %s\n",
	    HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH, httpc_version(),
	    cJSON_Version(), LIBCONFIG_VER_MAJOR, LIBCONFIG_VER_MINOR, LIBCONFIG_VER_REVISION,
	    MHD_get_version());
	return EXIT_OK;
}

int
main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return EXIT_OK;
	}
	if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0)
		return cmd_version(0, NULL);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "scaleno: unknown command \"%s\"\n", argv[1]);
	usage(stderr);
	return EXIT_USAGE;
}
