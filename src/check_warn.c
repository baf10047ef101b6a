/*
 * check_warn.c — the warnings of `scaleno check` about one queue that do not
 * make its policy invalid (scaleno(8), check): a handler that is not
 * executable on this host, and keys the queue's mode never reads. Each names
 * the line of the key in the policy file, read again for its line numbers.
 */
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

#include <libconfig.h>

#include "check_warn.h"
#include "config.h"

/* Keys read in some modes only (scaleno.conf(5)); bit m set = read in mode m. */
static const struct {
	const char *path;	/* under the queue block */
	unsigned modes;
	const char *used_in;
} mode_keys[] = {
	{ "worker.retry_delays", 1u << MODE_DLQ, "mode 3 (dead-letter) only" },
	{ "worker.retry_for", 1u << MODE_ORDERED_DROP | 1u << MODE_HALT, "modes 2 and 4 only" },
	{ "worker.halt_probe", 1u << MODE_HALT, "mode 4 (halt) only" },
};

/* The line of queue.<path> in cf, or fallback when absent. */
static int
key_line(const config_t *cf, bool have, const char *path, int fallback)
{
	char full[128];
	const config_setting_t *s;

	if (!have)
		return fallback;
	snprintf(full, sizeof(full), "queue.%s", path);
	s = config_lookup(cf, full);
	return s != NULL && config_setting_source_line(s) > 0 ?
	    (int)config_setting_source_line(s) : fallback;
}

int
check_warn_queue(const struct queue_policy *q)
{
	const char *exe = q->worker.command != NULL ? q->worker.command[0] : NULL;
	const char *file = q->file != NULL ? q->file : "?";
	config_t cf;
	bool have;
	int n = 0;

	config_init(&cf);
	have = q->file != NULL && config_read_file(&cf, q->file) == CONFIG_TRUE;
	/* A missing handler is a warning: the agent host that runs check often lacks it. */
	if (exe != NULL && exe[0] == '/' && access(exe, X_OK) == -1) {
		fprintf(stderr, "%s:%d: warning: queue %s: worker.command: handler %s is not "
		    "executable here\n", file, key_line(&cf, have, "worker.command", q->line),
		    q->name, exe);
		n++;
	}
	for (size_t i = 0; have && i < sizeof(mode_keys) / sizeof(mode_keys[0]); i++) {
		char full[128];

		snprintf(full, sizeof(full), "queue.%s", mode_keys[i].path);
		if ((mode_keys[i].modes & (1u << q->mode)) != 0 || config_lookup(&cf, full) == NULL)
			continue;
		fprintf(stderr, "%s:%d: warning: queue %s: %s is not used in mode %d (%s): it is "
		    "read in %s\n", file, key_line(&cf, have, mode_keys[i].path, q->line), q->name,
		    mode_keys[i].path, (int)q->mode, config_mode_name(q->mode), mode_keys[i].used_in);
		n++;
	}
	config_destroy(&cf);
	return n;
}
