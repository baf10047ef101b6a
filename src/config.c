/*
 * config.c — loads the main file and the policy files into struct config:
 * the files, the folder of policies, the collected errors and the
 * accessors (scaleno.conf(5)).
 *
 * Everything is driven by config_keys[] (config_keys.c) through the typed
 * stores of config_value.c: defaults are a libconfig document built from the
 * table, so a default and a value from a file go through the same store and
 * validation code. The checks that span several keys are in
 * config_validate.c. Errors are collected per file, sorted by line, and
 * handed back all at once.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libconfig.h>

#include "config.h"
#include "config_int.h"
#include "log.h"
#include "util.h"

#define MAX_FILE_BYTES	(1024 * 1024)	/* a policy is a few hundred bytes */

/* ---- error lists ---- */

static char *
format_error(const char *file, int line, const char *fmt, va_list ap)
{
	struct strbuf b = { 0 };

	if (file != NULL && line > 0)
		strbuf_printf(&b, "%s:%d: ", file, line);
	else if (file != NULL)
		strbuf_printf(&b, "%s: ", file);
	strbuf_vprintf(&b, fmt, ap);
	if (b.oom) {
		strbuf_free(&b);
		return NULL;
	}
	return strbuf_steal(&b);
}

static int
errors_push(struct cfg_errors *e, char *msg)
{
	return util_strv_push(&e->msgs, &e->n, &e->cap, msg);
}

void
cfg_errors_add(struct cfg_errors *e, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	errors_push(e, format_error(file, line, fmt, ap));
	va_end(ap);
}

void
cfg_errors_free(struct cfg_errors *e)
{
	if (e != NULL)
		util_strv_free(&e->msgs, &e->n, &e->cap);
}

/* Queue an error of the current file; flush_errors sorts them by line. */
void
config__error(struct loader *ld, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	ld->nerr++;
	va_start(ap, fmt);
	msg = format_error(file != NULL ? file : ld->file, line, fmt, ap);
	va_end(ap);
	if (msg == NULL)
		return;
	if (ld->npend == ld->cappend) {
		size_t ncap = ld->cappend ? ld->cappend * 2 : 16;
		struct pending *np = realloc(ld->pend, ncap * sizeof(*np));

		if (np == NULL) {
			free(msg);
			return;
		}
		ld->pend = np;
		ld->cappend = ncap;
	}
	ld->pend[ld->npend].line = line;
	ld->pend[ld->npend].msg = msg;
	ld->npend++;
}

static void
flush_errors(struct loader *ld)
{
	/* Insertion sort: stable, and a file has a handful of errors. */
	for (size_t i = 1; i < ld->npend; i++) {
		struct pending p = ld->pend[i];
		size_t j = i;

		while (j > 0 && ld->pend[j - 1].line > p.line) {
			ld->pend[j] = ld->pend[j - 1];
			j--;
		}
		ld->pend[j] = p;
	}
	for (size_t i = 0; i < ld->npend; i++)
		errors_push(ld->errs, ld->pend[i].msg);
	ld->npend = 0;
}

const char *
config__setting_file(const struct loader *ld, const config_setting_t *s)
{
	const char *f = s != NULL ? config_setting_source_file(s) : NULL;

	return f != NULL ? f : ld->file;
}

int
config__setting_line(const config_setting_t *s)
{
	return s != NULL ? (int)config_setting_source_line(s) : 0;
}



/* ---- files ---- */

/* Read path into cf; syntax errors are reported. The text is kept for checks. */
static int
read_file(struct loader *ld, const char *path, config_t *cf)
{
	struct stat st;
	FILE *f;
	size_t n;

	free(ld->text);
	ld->text = NULL;
	ld->file = path;
	if (stat(path, &st) == -1) {
		config__error(ld, path, 0, "cannot read: %s", strerror(errno));
		return -1;
	}
	if (S_ISDIR(st.st_mode)) {
		config__error(ld, path, 0, "is a directory, not a configuration file");
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		config__error(ld, path, 0, "is not a regular file");
		return -1;
	}
	if (st.st_size > MAX_FILE_BYTES) {
		config__error(ld, path, 0, "is too large (%lld bytes; at most %d)", (long long)st.st_size, MAX_FILE_BYTES);
		return -1;
	}
	if ((f = fopen(path, "r")) == NULL) {
		config__error(ld, path, 0, "cannot read: %s", strerror(errno));
		return -1;
	}
	if ((ld->text = malloc((size_t)st.st_size + 1)) == NULL) {
		fclose(f);
		config__error(ld, path, 0, "out of memory");
		return -1;
	}
	n = fread(ld->text, 1, (size_t)st.st_size, f);
	ld->text[n] = '\0';
	fclose(f);
	if (memchr(ld->text, '\0', n) != NULL) {
		config__error(ld, path, 0, "contains NUL bytes: not a text file");
		return -1;
	}
	if (config_read_file(cf, path) != CONFIG_TRUE) {
		const char *ef = config_error_file(cf);

		if (config_error_type(cf) == CONFIG_ERR_FILE_IO)
			config__error(ld, ef != NULL ? ef : path, 0, "cannot read: %s", config_error_text(cf));
		else
			config__error(ld, ef != NULL ? ef : path, config_error_line(cf), "%s",
			    config_error_text(cf));
		return -1;
	}
	return 0;
}

static char *
dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}


static void
policy_free(struct queue_policy *q)
{
	config__free_keys(CFG_POLICY, q);
	free(q->redis.password);
	free(q->redis.sentinel_password);
	free(q->file);
}

void
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < cfg->nqueues; i++)
		policy_free(&cfg->queues[i]);
	free(cfg->queues);
	config__free_keys(CFG_MAIN, cfg);
	free(cfg->redis.password);
	free(cfg->redis.sentinel_password);
	free(cfg->nomad.token);
	free(cfg->path);
	free(cfg->dir);
	free(cfg);
}


/* Load one policy file into a new element of cfg->queues. */
static void
load_policy(struct loader *ld, struct config *cfg, const char *path)
{
	config_t cf;
	const config_setting_t *root, *qs;
	struct queue_policy *q;

	config_init(&cf);
	if (read_file(ld, path, &cf) == -1)
		goto out;
	root = config_root_setting(&cf);
	qs = config_lookup(&cf, "queue");
	for (int i = 0; i < config_setting_length(root); i++) {
		const config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
		const char *name = s != NULL ? config_setting_name(s) : NULL;

		if (name == NULL || strcmp(name, "queue") == 0)
			continue;
		if (util_edit_distance(name, "queue") <= 2)
			SERR(ld, s, "unknown key \"%s\" (did you mean \"queue\"?)", name);
		else if (config__key_find(CFG_MAIN, name) != NULL || config__is_section(CFG_MAIN, name))
			SERR(ld, s, "unknown key \"%s\" (%s belongs in the main file)", name, name);
		else
			SERR(ld, s, "unknown key \"%s\" (a policy file holds one queue: { ... } group)", name);
	}
	if (qs == NULL) {
		config__error(ld, path, 0, "no queue: { ... } group (a policy file describes one queue)");
		goto out;
	}
	if (!config_setting_is_group(qs)) {
		SERR(ld, qs, "queue: expected a group { ... }, found %s", config__found_type(qs));
		goto out;
	}
	q = realloc(cfg->queues, (cfg->nqueues + 1) * sizeof(*q));
	if (q == NULL) {
		config__error(ld, path, 0, "out of memory");
		goto out;
	}
	cfg->queues = q;
	q = &cfg->queues[cfg->nqueues++];
	memset(q, 0, sizeof(*q));
	q->file = strdup(path);
	q->line = config__setting_line(qs);
	config__walk_unknown(ld, qs, CFG_POLICY, "");
	config__apply_keys(ld, qs, CFG_POLICY, cfg->dir, q);
	config__check_policy(ld, qs, q);
	for (size_t i = 0; q->name != NULL && i + 1 < cfg->nqueues; i++) {
		const struct queue_policy *o = &cfg->queues[i];

		if (o->name != NULL && strcmp(o->name, q->name) == 0)
			SERR(ld, config__where(qs, "name", qs), "duplicate queue name \"%s\" (also defined at %s:%d)",
			    q->name, o->file != NULL ? o->file : "?", o->line);
	}
out:
	flush_errors(ld);
	config_destroy(&cf);
}

static int
policy_filter(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return d->d_name[0] != '.' && n > 5 && strcmp(d->d_name + n - 5, ".conf") == 0;
}

static int
name_cmp(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

/* Every *.conf in the policy folder, sorted by name (dot files skipped). */
static void
load_policies(struct loader *ld, struct config *cfg, const char *main_path, const char *shown_dir,
    const config_setting_t *dirkey)
{
	struct dirent **ents = NULL;
	int n;

	ld->file = main_path;
	if ((n = scandir(cfg->agent.policy_dir, &ents, policy_filter, name_cmp)) == -1) {
		SERR(ld, dirkey, "agent.policy_dir: cannot read %s: %s", shown_dir, strerror(errno));
		flush_errors(ld);
		return;
	}
	if (n == 0)
		log_warnx("%s: no *.conf policy files in %s: no queues", main_path, shown_dir);
	for (int i = 0; i < n; i++) {
		char *p = config__join_path(shown_dir, ents[i]->d_name);

		if (p == NULL)
			config__error(ld, shown_dir, 0, "out of memory");
		else
			load_policy(ld, cfg, p);
		free(p);
		free(ents[i]);
	}
	free(ents);
	flush_errors(ld);
}

int
config_load(const char *path, struct config **out, struct cfg_errors *errs)
{
	return config_load_flags(path, out, errs, 0);
}

int
config_load_flags(const char *path, struct config **out, struct cfg_errors *errs, unsigned flags)
{
	struct loader ld = { .errs = errs, .flags = flags };
	struct config *cfg = NULL;
	config_t cf;
	const config_setting_t *root;
	char *shown_dir = NULL, *rdir = NULL, *given_dir = NULL;

	*out = NULL;
	if (path == NULL)
		path = config_default_path();
	config_init(&cf);
	if (config__build_defaults(&ld) == -1)
		goto done;
	if ((cfg = calloc(1, sizeof(*cfg))) == NULL || (cfg->path = strdup(path)) == NULL ||
	    (given_dir = dir_of(path)) == NULL) {
		config__error(&ld, path, 0, "out of memory");
		goto done;
	}
	ld.cfg = cfg;
	if (read_file(&ld, cfg->path, &cf) == -1)
		goto done;
	if ((rdir = realpath(given_dir, NULL)) == NULL) {
		config__error(&ld, path, 0, "cannot resolve its folder: %s", strerror(errno));
		goto done;
	}
	cfg->dir = rdir;
	root = config_root_setting(&cf);
	config__walk_unknown(&ld, root, CFG_MAIN, "");
	config__apply_keys(&ld, root, CFG_MAIN, cfg->dir, cfg);
	config__check_main(&ld, root, cfg);
	flush_errors(&ld);
	if (cfg->agent.policy_dir == NULL)
		goto done;
	/* Name policy files the way the user named the main file, not by the resolved folder. */
	size_t dl = strlen(cfg->dir);
	if (strncmp(cfg->agent.policy_dir, cfg->dir, dl) == 0 && cfg->agent.policy_dir[dl] == '/')
		shown_dir = config__join_path(given_dir, cfg->agent.policy_dir + dl + 1);
	else
		shown_dir = strdup(cfg->agent.policy_dir);
	if (shown_dir == NULL) {
		config__error(&ld, path, 0, "out of memory");
		goto done;
	}
	load_policies(&ld, cfg, cfg->path, shown_dir, config_lookup(&cf, "agent.policy_dir"));
	ld.file = cfg->path;
done:
	flush_errors(&ld);
	free(ld.pend);
	free(ld.text);
	free(shown_dir);
	free(given_dir);
	config_destroy(&ld.defaults);
	config_destroy(&cf);
	if (ld.nerr > 0) {
		if (errs->n == 0)
			cfg_errors_add(errs, path, 0, "out of memory while reporting errors");
		config_free(cfg);
		return -1;
	}
	*out = cfg;
	return 0;
}

const struct queue_policy *
config_queue(const struct config *cfg, const char *name)
{
	if (cfg == NULL || name == NULL)
		return NULL;
	for (size_t i = 0; i < cfg->nqueues; i++)
		if (cfg->queues[i].name != NULL && strcmp(cfg->queues[i].name, name) == 0)
			return &cfg->queues[i];
	return NULL;
}

const char *
config_default_path(void)
{
	const char *env = getenv("SCALENO_CONFIG");

	return env != NULL && *env != '\0' ? env : SCALENO_SYSCONFDIR "/scaleno/scaleno.conf";
}

const char *
config_mode_name(enum queue_mode m)
{
	switch (m) {
	case MODE_DROP:		return "drop";
	case MODE_ORDERED_DROP:	return "ordered-drop";
	case MODE_DLQ:		return "dead-letter";
	case MODE_HALT:		return "halt";
	}
	return "unknown";
}

int
config_step_allowed(const struct step_limit *s, int current)
{
	int64_t v;

	if (s == NULL)
		return 1;
	v = s->percent ? (int64_t)(current > 0 ? current : 0) * s->value / 100 : s->value;
	if (v < 1)
		v = 1;
	return v > INT_MAX ? INT_MAX : (int)v;
}

/*
 * libconfig 1.5 leaks its lexer's string buffer when a file ends inside a
 * string or hits a syntax error there (a few bytes per bad parse). Not ours
 * to fix; tell LeakSanitizer (in SANITIZE builds) so real leaks stand out.
 */
const char *__lsan_default_suppressions(void);
const char *
__lsan_default_suppressions(void)
{
	return "leak:libconfig.so\n";
}

