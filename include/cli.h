/*
 * cli — the front end the commands of the scaleno binary share: the common
 * options (-c FILE, -q QUEUE, -h), one format for a bad command line, one
 * loader of the configuration and one "open the queue" step. Every message
 * starts "scaleno CMD: "; a usage error also prints the command's usage on
 * stderr and is EXIT_USAGE. Exit codes: exitcode.h; scaleno(8) documents
 * the options and the exit status.
 *
 * A command fills a struct cli and loops over its own options:
 *
 *	struct cli c = { .cmd = "resume", .usage = resume_usage,
 *	    .flags = CLI_CONFIG | CLI_QUEUE | CLI_REDIS, .opts = opts, .max_args = 0 };
 *	while ((ch = cli_next(&c, argc, argv)) > 0)
 *		switch (ch) { case 'p': ... }
 *	if (ch == CLI_STOP)
 *		return c.rc;
 *	if ((rc = cli_open(&c, &x)) == EXIT_OK) ...
 *	cli_close(&x);
 */
#ifndef SCALENO_CLI_H
#define SCALENO_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>

#include "exitcode.h"

struct config;
struct queue_policy;
struct redis;

/* One option of a command besides the common ones. A table ends with { 0 }. */
struct cli_opt {
	int id;			/* what cli_next returns: the letter of a short option, or
				 * CLI_LONG + n for one that has only a long name */
	const char *name;	/* long name without "--", or NULL */
	const char *arg;	/* its argument for messages ("a file name"); NULL: a flag */
};
#define CLI_LONG	256
#define CLI_MAX_OPTS	16	/* own options of one command */

/* What a command takes and needs (struct cli.flags). */
#define CLI_CONFIG		0x01	/* -c FILE, --config FILE */
#define CLI_QUEUE		0x02	/* -q QUEUE, --queue QUEUE: required */
#define CLI_QUEUE_OPTIONAL	0x04	/* -q QUEUE, --queue QUEUE: optional */
#define CLI_IN_ORDER		0x08	/* options end at the first operand, which may start with '-' */
#define CLI_NOMAD		0x10	/* load the Nomad secrets (token, TLS files) with the configuration */
#define CLI_REDIS		0x20	/* cli_open connects to Redis */

struct cli {
	/* Set by the command. */
	const char *cmd;		/* "worker", "dlq list": follows "scaleno " in messages */
	void (*usage)(FILE *f);		/* prints the command's usage */
	unsigned flags;			/* CLI_* */
	const struct cli_opt *opts;	/* the command's own options, or NULL */
	int max_args;			/* operands allowed after the options; -1: any number */
	/* Filled by cli_next. */
	const char *config_path;	/* -c, or NULL for the default (config_default_path) */
	const char *queue;		/* -q, or NULL */
	const char *optarg;		/* the argument of the option cli_next returned */
	char optname[48];		/* that option as given: "-n" or "--count" */
	char **args;			/* the operands, once cli_next returned CLI_DONE */
	int nargs;
	int rc;				/* the exit code, once cli_next returned CLI_STOP */
	/* Private to cli.c. */
	bool started;
	char optstring[2 * CLI_MAX_OPTS + 16];
	struct option longopts[CLI_MAX_OPTS + 4];
};

#define CLI_DONE	0
#define CLI_STOP	(-1)

/*
 * The next of the command's own options in argv (argv[0] names the
 * command): its id, with c->optarg and c->optname set. The common options
 * are taken here. CLI_DONE after the last option, with the operands in
 * c->args and checked: -q given when required, no more than max_args.
 * CLI_STOP when the command must return c->rc at once: after -h (usage on
 * stdout, EXIT_OK), or an unknown option, a missing argument, a missing -q
 * or an extra operand (message and usage on stderr, EXIT_USAGE).
 */
int cli_next(struct cli *c, int argc, char **argv);
/* cli_next for a command with no options of its own: CLI_DONE or CLI_STOP. */
int cli_parse(struct cli *c, int argc, char **argv);
/*
 * A usage error the command found itself: "scaleno CMD: <message>" and the
 * usage on stderr. Returns EXIT_USAGE (also stored in c->rc).
 */
int cli_usage_error(struct cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * The argument of the option cli_next returned, as a whole number in
 * [lo, hi]: EXIT_OK with *out set, or a usage error (EXIT_USAGE).
 */
int cli_number(struct cli *c, long lo, long hi, long *out);

/*
 * The one loader of the configuration for a command: the file at path
 * (NULL: the default), with the Nomad secrets unless flags holds
 * CONFIG_NO_NOMAD_SECRETS. EXIT_OK with *out set (the caller frees it with
 * config_free), or every problem as "file:line: message" and then "scaleno
 * CMD: configuration is invalid (N errors)" on stderr, and EXIT_USAGE.
 */
int cli_load_config_flags(const char *cmd, const char *path, unsigned flags, struct config **out);
/* The same without the Nomad secrets: for the commands that never talk to Nomad. */
int cli_load_config(const char *cmd, const char *path, struct config **out);
/*
 * The queue called name in cfg, or NULL after "scaleno CMD: FILE: no queue
 * named "NAME"" (with "did you mean" when one is close) on stderr.
 */
const struct queue_policy *cli_find_queue(const char *cmd, const struct config *cfg, const char *name);

/* What cli_open opens; zero-initialise, release with cli_close. */
struct cli_queue {
	struct config *cfg;
	const struct queue_policy *q;	/* c->queue; NULL when -q was optional and not given */
	struct redis *r;		/* with CLI_REDIS: connected; else NULL */
};
/*
 * Open the queue of command c: load the configuration (cli_load_config_flags,
 * the Nomad secrets with CLI_NOMAD), find c->queue (cli_find_queue) and,
 * with CLI_REDIS, connect to Redis. EXIT_OK; else the reason on stderr and
 * EXIT_USAGE (configuration, queue) or EXIT_RUNTIME (Redis). Call
 * cli_close in both cases.
 */
int cli_open(const struct cli *c, struct cli_queue *x);
void cli_close(struct cli_queue *x);

/* Is s a stream id an operator may type: "ms" or "ms-seq", digits only? */
bool cli_stream_id(const char *s);

int cmd_agent(int argc, char **argv);
int cmd_worker(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_dlq(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_publish(int argc, char **argv);
int cmd_simulate(int argc, char **argv);
int cmd_version(int argc, char **argv);

#endif
