/* dlq.c — placeholder until the module lands. */
#include <stdio.h>
#include "cli.h"
int
cmd_dlq(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "scaleno: not implemented yet\n");
	return EXIT_RUNTIME;
}
int
cmd_resume(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "scaleno: not implemented yet\n");
	return EXIT_RUNTIME;
}
