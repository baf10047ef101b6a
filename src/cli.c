/*
 * cli.c — the front end the commands share: the common options and the
 * messages of a bad command line, the one configuration loader, and the
 * "open the queue" step (configuration, queue by name, Redis).
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "redis.h"
#include "redis_msg.h"
#include "util.h"

#define SUGGEST_DISTANCE 4	/* a queue name this close is offered as "did you mean" */

/* The common options: -h always, -c and -q when the command takes them. */
static const struct cli_opt common_opts[] = {
	{ 'h', "help", NULL },
	{ 'c', "config", "a file name" },
	{ 'q', "queue", "a queue name" },
};

static bool
common_taken(const struct cli *c, int id)
{
	if (id == 'c')
		return (c->flags & CLI_CONFIG) != 0;
	if (id == 'q')
		return (c->flags & (CLI_QUEUE | CLI_QUEUE_OPTIONAL)) != 0;
	return true;
}

/* Append o to the getopt tables of c. -1 when they are full (a bug in the command's table). */
static int
add_opt(struct cli *c, const struct cli_opt *o, size_t *ns, size_t *nl)
{
	if (o->id < CLI_LONG) {
		if (*ns + 3 > sizeof(c->optstring))
			return -1;
		c->optstring[(*ns)++] = (char)o->id;
		if (o->arg != NULL)
			c->optstring[(*ns)++] = ':';
		c->optstring[*ns] = '\0';
	}
	if (o->name != NULL) {
		if (*nl + 1 >= ARRAY_LEN(c->longopts))
			return -1;
		c->longopts[(*nl)++] = (struct option){ o->name, o->arg != NULL ? required_argument :
		    no_argument, NULL, o->id };
	}
	return 0;
}

/* Build optstring and longopts from the common options and the command's table. */
static int
setup(struct cli *c)
{
	size_t ns = 0, nl = 0;

	memset(c->longopts, 0, sizeof(c->longopts));
	if (c->flags & CLI_IN_ORDER)
		c->optstring[ns++] = '+';
	c->optstring[ns++] = ':';	/* a missing argument returns ':', not '?' */
	c->optstring[ns] = '\0';
	for (size_t i = 0; i < ARRAY_LEN(common_opts); i++)
		if (common_taken(c, common_opts[i].id) && add_opt(c, &common_opts[i], &ns, &nl) == -1)
			return -1;
	for (size_t i = 0; c->opts != NULL && c->opts[i].id != 0; i++)
		if (i >= CLI_MAX_OPTS || add_opt(c, &c->opts[i], &ns, &nl) == -1)
			return -1;
	c->started = true;
	optind = 0;	/* GNU: a full reset, so a second command in one process parses afresh */
	opterr = 0;
	return 0;
}

static const struct cli_opt *
find_opt(const struct cli *c, int id)
{
	for (size_t i = 0; i < ARRAY_LEN(common_opts); i++)
		if (common_opts[i].id == id && common_taken(c, id))
			return &common_opts[i];
	for (size_t i = 0; c->opts != NULL && c->opts[i].id != 0; i++)
		if (c->opts[i].id == id)
			return &c->opts[i];
	return NULL;
}

int
cli_usage_error(struct cli *c, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "scaleno %s: ", c->cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (c->usage != NULL)
		c->usage(stderr);
	c->rc = EXIT_USAGE;
	return EXIT_USAGE;
}

/*
 * Name in c->optname the option getopt_long returned ch for (li: its long
 * index, or -1), as the user wrote it and without "=value". On '?' and ':'
 * the option is optopt: a letter, an id of ours, or 0 for an unknown long
 * name; the element that held it is argv[optind - 1] unless a short one
 * stopped inside a group (then it is a letter and named by it).
 */
static void
name_option(struct cli *c, int argc, char **argv, int ch, int li)
{
	const char *a = optind >= 1 && optind <= argc ? argv[optind - 1] : "";
	int id = ch == '?' || ch == ':' ? optopt : ch;

	if (li >= 0)
		snprintf(c->optname, sizeof(c->optname), "--%s", c->longopts[li].name);
	else if (strncmp(a, "--", 2) == 0 && (id == 0 || id >= CLI_LONG || ch == ':' ||
	    strchr(a, '=') != NULL))
		snprintf(c->optname, sizeof(c->optname), "%.*s", (int)strcspn(a, "="), a);
	else
		snprintf(c->optname, sizeof(c->optname), "-%c", id > 0 && id < CLI_LONG &&
		    isprint(id) ? id : '?');
}

/* The operands after the options: -q when required, and how many. */
static int
check_operands(struct cli *c, int argc, char **argv)
{
	c->args = argv + optind;
	c->nargs = argc - optind;
	if ((c->flags & CLI_QUEUE) && c->queue == NULL)
		return cli_usage_error(c, "-q QUEUE is required");
	if (c->max_args >= 0 && c->nargs > c->max_args)
		return cli_usage_error(c, "unexpected argument \"%s\"", c->args[c->max_args]);
	return EXIT_OK;
}

int
cli_next(struct cli *c, int argc, char **argv)
{
	const struct cli_opt *o;
	int ch, li;

	if (!c->started && setup(c) == -1) {
		fprintf(stderr, "scaleno %s: internal error: too many options\n", c->cmd);
		c->rc = EXIT_USAGE;
		return CLI_STOP;
	}
	for (;;) {
		li = -1;
		ch = getopt_long(argc, argv, c->optstring, c->longopts, &li);
		c->optarg = optarg;
		if (ch == -1)
			return check_operands(c, argc, argv) == EXIT_OK ? CLI_DONE : CLI_STOP;
		name_option(c, argc, argv, ch, li);
		if (ch == '?') {
			/* A known long option given "=value" it does not take comes back as its id. */
			o = strncmp(c->optname, "--", 2) == 0 && optopt != 0 ? find_opt(c, optopt) : NULL;
			if (o != NULL)
				cli_usage_error(c, "%s takes no argument", c->optname);
			else
				cli_usage_error(c, "unknown option \"%s\"", c->optname);
			return CLI_STOP;
		}
		if (ch == ':') {
			o = find_opt(c, optopt);
			cli_usage_error(c, "%s needs %s", c->optname, o != NULL && o->arg != NULL ?
			    o->arg : "an argument");
			return CLI_STOP;
		}
		if (ch == 'h') {
			if (c->usage != NULL)
				c->usage(stdout);
			c->rc = EXIT_OK;
			return CLI_STOP;
		}
		if (ch == 'c' && common_taken(c, 'c'))
			c->config_path = optarg;
		else if (ch == 'q' && common_taken(c, 'q'))
			c->queue = optarg;
		else
			return ch;
	}
}

int
cli_parse(struct cli *c, int argc, char **argv)
{
	int ch;

	while ((ch = cli_next(c, argc, argv)) > 0)
		;	/* none: c->opts is empty */
	return ch;
}

int
cli_number(struct cli *c, long lo, long hi, long *out)
{
	const char *s = c->optarg != NULL ? c->optarg : "";
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || errno != 0 || v < lo || v > hi)
		return cli_usage_error(c, "%s \"%s\": expected a number from %ld to %ld", c->optname, s, lo,
		    hi);
	*out = v;
	return EXIT_OK;
}

/* ---- the configuration and the queue ---- */

int
cli_load_config_flags(const char *cmd, const char *path, unsigned flags, struct config **out)
{
	struct cfg_errors errs = { 0 };
	int rc = EXIT_OK;

	if (config_load_flags(path, out, &errs, flags) == -1) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msgs[i]);
		fprintf(stderr, "scaleno %s: configuration is invalid (%zu error%s)\n", cmd, errs.n,
		    errs.n == 1 ? "" : "s");
		rc = EXIT_USAGE;
	}
	cfg_errors_free(&errs);
	return rc;
}

int
cli_load_config(const char *cmd, const char *path, struct config **out)
{
	return cli_load_config_flags(cmd, path, CONFIG_NO_NOMAD_SECRETS, out);
}

const struct queue_policy *
cli_find_queue(const char *cmd, const struct config *cfg, const char *name)
{
	const struct queue_policy *q = config_queue(cfg, name), *best = NULL;
	unsigned bestd = SUGGEST_DISTANCE;

	if (q != NULL)
		return q;
	for (size_t i = 0; i < cfg->nqueues; i++) {
		unsigned d = util_edit_distance(name, cfg->queues[i].name);

		if (d < bestd) {
			bestd = d;
			best = &cfg->queues[i];
		}
	}
	fprintf(stderr, "scaleno %s: %s: no queue named \"%s\"%s%s%s\n", cmd, cfg->path, name,
	    best != NULL ? " (did you mean \"" : "", best != NULL ? best->name : "",
	    best != NULL ? "\"?)" : "");
	return NULL;
}

int
cli_open(const struct cli *c, struct cli_queue *x)
{
	char err[512];

	if (cli_load_config_flags(c->cmd, c->config_path, c->flags & CLI_NOMAD ? 0 :
	    CONFIG_NO_NOMAD_SECRETS, &x->cfg) != EXIT_OK)
		return EXIT_USAGE;
	if (c->queue != NULL && (x->q = cli_find_queue(c->cmd, x->cfg, c->queue)) == NULL)
		return EXIT_USAGE;
	if (!(c->flags & CLI_REDIS))
		return EXIT_OK;
	if ((x->r = redis_new_conf(x->q != NULL ? &x->q->redis : &x->cfg->redis)) == NULL) {
		fprintf(stderr, "scaleno %s: out of memory\n", c->cmd);
		return EXIT_RUNTIME;
	}
	if (redis_ensure(x->r, err, sizeof(err)) < 0) {
		fprintf(stderr, "scaleno %s: %s\n", c->cmd, err);
		return EXIT_RUNTIME;
	}
	return EXIT_OK;
}

void
cli_close(struct cli_queue *x)
{
	if (x->r != NULL)
		redis_free(x->r);
	config_free(x->cfg);
	x->r = NULL;
	x->cfg = NULL;
	x->q = NULL;
}

bool
cli_stream_id(const char *s)
{
	const char *p = s;

	if (!isdigit((unsigned char)*p))
		return false;
	while (isdigit((unsigned char)*p))
		p++;
	if (*p == '-') {
		p++;
		if (!isdigit((unsigned char)*p))
			return false;
		while (isdigit((unsigned char)*p))
			p++;
	}
	return *p == '\0' && p - s < REDIS_ID_MAX;
}
