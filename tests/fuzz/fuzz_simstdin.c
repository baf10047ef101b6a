/*
 * fuzz_simstdin — `scaleno simulate --stdin` (sim_stdin) on arbitrary
 * input lines, for one queue with every default but min/max (written and
 * loaded at start-up). Checked: the decisions written are one JSON
 * object per line, and the count of malformed lines is within the count
 * of lines.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "log.h"
#include "simulate.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct config *cfg;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");
	char dir[256], path[300], pdir[280], ppath[300];
	struct cfg_errors errs = { 0 };
	FILE *f;

	(void)argc;
	(void)argv;
	log_init("fuzz", LOG_LVL_ERROR, LOG_FMT_TEXT, false);
	snprintf(dir, sizeof(dir), "%s/scaleno-fuzz-sim.%d", tmp != NULL ? tmp : "/tmp", (int)getpid());
	snprintf(path, sizeof(path), "%s/scaleno.conf", dir);
	snprintf(pdir, sizeof(pdir), "%s/p", dir);
	snprintf(ppath, sizeof(ppath), "%s/q.conf", pdir);
	if (mkdir(dir, 0700) == -1 || mkdir(pdir, 0700) == -1)
		abort();
	if ((f = fopen(path, "w")) == NULL)
		abort();
	fputs("agent: { policy_dir = \"p\"; };\n", f);
	fclose(f);
	if ((f = fopen(ppath, "w")) == NULL)
		abort();
	fputs("queue: { name = \"q\"; scale: { job = \"j\"; group = \"g\"; min = 0; max = 50; }; };\n", f);
	fclose(f);
	if (config_load_flags(path, &cfg, &errs, CONFIG_NO_NOMAD_SECRETS) != 0) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msgs[i]);
		abort();
	}
	unlink(ppath);
	rmdir(pdir);
	unlink(path);
	rmdir(dir);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FILE *in = fmemopen((void *)(uintptr_t)data, size, "r"), *out, *err;
	char *obuf = NULL, *ebuf = NULL, *line, *save = NULL;
	size_t olen = 0, elen = 0, lines = 1;
	long bad;

	if (size == 0 || in == NULL)
		return 0;
	out = open_memstream(&obuf, &olen);
	err = open_memstream(&ebuf, &elen);
	if (out == NULL || err == NULL)
		abort();
	bad = sim_stdin(&cfg->queues[0], in, out, err);
	fclose(in);
	fclose(out);
	fclose(err);
	for (size_t i = 0; i < size; i++)
		lines += data[i] == '\n';
	if (bad < 0 || (size_t)bad > lines)
		abort();
	for (line = strtok_r(obuf, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		cJSON *j = cJSON_Parse(line);

		if (!cJSON_IsObject(j))
			abort();	/* every decision is one JSON object on one line */
		cJSON_Delete(j);
	}
	free(obuf);
	free(ebuf);
	return 0;
}
