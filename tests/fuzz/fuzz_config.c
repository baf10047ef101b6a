/*
 * fuzz_config — config_load on arbitrary files. The input is the main file,
 * optionally followed by "\n---\n" and one policy file written as
 * p/q.conf beside it (so a main file with policy_dir = "p" loads it).
 * Every outcome is fine except a crash, a leak or undefined behaviour.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

static char dir[256], main_path[300], pol_path[300], pol_dir[280];

static void
write_file(const char *path, const uint8_t *p, size_t n)
{
	FILE *f = fopen(path, "wb");

	if (f == NULL)
		abort();
	if (n > 0 && fwrite(p, 1, n, f) != n)
		abort();
	fclose(f);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	const char *tmp = getenv("TMPDIR");

	snprintf(dir, sizeof(dir), "%s/scaleno-fuzz-config.%d", tmp != NULL ? tmp : "/tmp", (int)getpid());
	snprintf(pol_dir, sizeof(pol_dir), "%s/p", dir);
	snprintf(main_path, sizeof(main_path), "%s/scaleno.conf", dir);
	snprintf(pol_path, sizeof(pol_path), "%s/q.conf", pol_dir);
	if (mkdir(dir, 0700) == -1 || mkdir(pol_dir, 0700) == -1)
		abort();
	unsetenv("NOMAD_TOKEN");
	log_init("fuzz", LOG_LVL_ERROR, LOG_FMT_TEXT, false);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *sep = memmem(data, size, "\n---\n", 5);
	size_t mlen = sep != NULL ? (size_t)(sep - data) : size;
	struct cfg_errors errs = { 0 };
	struct config *cfg = NULL;

	write_file(main_path, data, mlen);
	if (sep != NULL)
		write_file(pol_path, sep + 5, size - mlen - 5);
	else
		unlink(pol_path);
	if (config_load(main_path, &cfg, &errs) == 0) {
		for (size_t i = 0; i < cfg->nqueues; i++)
			if (config_queue(cfg, cfg->queues[i].name) == NULL)
				abort();	/* every loaded queue is found by its name */
		config_free(cfg);
	} else if (errs.n == 0) {
		abort();		/* a refusal always says why */
	}
	cfg_errors_free(&errs);
	return 0;
}
