/*
 * cli.c — the start-up steps the subcommands share: loading the
 * configuration for a queue command and checking the -q QUEUE operand.
 */
#include <stdio.h>

#include "cli.h"
#include "config.h"

int
cli_load_config(const char *cmd, const char *path, struct config **out)
{
	struct cfg_errors errs = { 0 };
	int rc = EXIT_OK;

	if (config_load_flags(path, out, &errs, CONFIG_NO_NOMAD_SECRETS) == -1) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msgs[i]);
		fprintf(stderr, "scaleno %s: configuration is invalid\n", cmd);
		rc = EXIT_USAGE;
	}
	cfg_errors_free(&errs);
	return rc;
}

int
cli_need_queue(const char *cmd, const char *qname, bool extra, void (*usage)(FILE *))
{
	if (qname != NULL && !extra)
		return EXIT_OK;
	fprintf(stderr, "scaleno %s: %s\n", cmd, qname == NULL ? "-q QUEUE is required" :
	    "unexpected arguments");
	usage(stderr);
	return EXIT_USAGE;
}
