/* simulate.c — placeholder until the module lands. */
#include <stdio.h>
#include "cli.h"
int
cmd_simulate(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "scaleno: not implemented yet\n");
	return EXIT_RUNTIME;
}
