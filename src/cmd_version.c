/*
 * cmd_version.c — `scaleno version`: the version of scaleno and of the
 * libraries it was built with.
 */
#include <stdio.h>

#include <cjson/cJSON.h>
#include <libconfig.h>
#include <microhttpd.h>

#include "cli.h"
#include "httpc.h"
#include "redis.h"

static void
usage(FILE *f)
{
	fprintf(f, "usage: scaleno version\n");
}

int
cmd_version(int argc, char **argv)
{
	struct cli c = { .cmd = "version", .usage = usage, .max_args = 0 };

	/* argc is 0 for "scaleno -V": nothing to parse. */
	if (argc > 0 && cli_parse(&c, argc, argv) == CLI_STOP)
		return c.rc;
	printf("scaleno %s\n", SCALENO_VERSION);
	printf("  %s, libcurl %s, cJSON %s, libconfig %d.%d.%d, libmicrohttpd %s\n",
	    redis_version_string(), httpc_version(),
	    cJSON_Version(), LIBCONFIG_VER_MAJOR, LIBCONFIG_VER_MINOR, LIBCONFIG_VER_REVISION,
	    MHD_get_version());
	return EXIT_OK;
}
