/*
 * config.c — loads the main file and the policy files into struct config.
 *
 * Everything is driven by config_keys[] (config_keys.c): defaults are a
 * libconfig document built from the table, so a default and a value from a
 * file go through the same store and validation code. Errors are collected
 * per file, sorted by line, and handed back all at once.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libconfig.h>

#include "config.h"
#include "log.h"
#include "util.h"

#define MAX_FILE_BYTES	(1024 * 1024)	/* a policy is a few hundred bytes */
#define MAX_SECRET_BYTES 4096
#define MAX_KEYS	128

/* One error waiting to be sorted into place. */
struct pending {
	int line;
	char *msg;
};

/* State of one config_load. */
struct loader {
	struct cfg_errors *errs;
	size_t nerr;		/* errors reported, including any that failed to allocate */
	const char *file;	/* display path of the file being read */
	char *text;		/* its bytes, for the integer range cross-check */
	struct pending *pend;
	size_t npend, cappend;
	config_t defaults;	/* "k<index> = <default>;" for every key with one */
	bool present[MAX_KEYS];	/* key set by the current file */
	bool bad[MAX_KEYS];	/* key whose value was rejected: skip checks built on it */
	const struct config *cfg;
	unsigned flags;		/* CONFIG_* */
};


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
	if (e == NULL)
		return;
	for (size_t i = 0; i < e->n; i++)
		free(e->msgs[i]);
	free(e->msgs);
	e->msgs = NULL;
	e->n = e->cap = 0;
}

/* Queue an error of the current file; flush_errors sorts them by line. */
static void __attribute__((format(printf, 4, 5)))
ld_error(struct loader *ld, const char *file, int line, const char *fmt, ...)
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

static const char *
setting_file(const struct loader *ld, const config_setting_t *s)
{
	const char *f = s != NULL ? config_setting_source_file(s) : NULL;

	return f != NULL ? f : ld->file;
}

static int
setting_line(const config_setting_t *s)
{
	return s != NULL ? (int)config_setting_source_line(s) : 0;
}

#define SERR(ld, s, ...) ld_error((ld), setting_file((ld), (s)), setting_line(s), __VA_ARGS__)

/* ---- the table ---- */

static const struct cfg_key *
key_find(enum cfg_scope scope, const char *path)
{
	for (size_t i = 0; i < config_nkeys; i++)
		if (config_keys[i].scope == scope && strcmp(config_keys[i].path, path) == 0)
			return &config_keys[i];
	return NULL;
}

/* Is path a section ("scale", "scale.up") of some key? */
static bool
is_section(enum cfg_scope scope, const char *path)
{
	size_t n = strlen(path);

	for (size_t i = 0; i < config_nkeys; i++)
		if (config_keys[i].scope == scope && strncmp(config_keys[i].path, path, n) == 0 &&
		    config_keys[i].path[n] == '.')
			return true;
	return false;
}

static const char *
found_type(const config_setting_t *s)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_GROUP:	return "a group";
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:	return "an integer";
	case CONFIG_TYPE_FLOAT:	return "a floating-point number";
	case CONFIG_TYPE_STRING: return "a string";
	case CONFIG_TYPE_BOOL:	return "a boolean";
	case CONFIG_TYPE_ARRAY:	return "an array";
	case CONFIG_TYPE_LIST:	return "a list";
	default:		return "nothing";
	}
}

static const char *
expected_type(const struct cfg_key *k)
{
	switch (k->type) {
	case CFG_STRING:	return "a string";
	case CFG_INT:		return "an integer";
	case CFG_NUMBER:	return "a number";
	case CFG_BOOL:		return "a boolean (true or false)";
	case CFG_DURATION:	return "a duration string with a unit (e.g. \"30s\")";
	case CFG_ARGV:		return "a list of strings (e.g. [ \"/usr/local/bin/x\", \"--flag\" ])";
	case CFG_DURATIONS:	return "a list of durations (e.g. [ \"10s\", \"1m\" ])";
	case CFG_STEP:		return "a count or a percentage string (e.g. 2 or \"50%\")";
	case CFG_ENUM:		return "a string";
	}
	return "?";
}

/*
 * The best "did you mean" for an unknown name at prefix: a sibling key or
 * section within edit distance, else the same leaf name in another section.
 */
static void
suggest(enum cfg_scope scope, const char *prefix, const char *name, char *out, size_t len)
{
	size_t plen = strlen(prefix);
	unsigned best = 255;
	char cand[128];

	out[0] = '\0';
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct cfg_key *k = &config_keys[i];
		const char *rest;
		size_t n;

		if (k->scope != scope)
			continue;
		if (plen > 0 && (strncmp(k->path, prefix, plen) != 0 || k->path[plen] != '.'))
			continue;
		rest = k->path + (plen > 0 ? plen + 1 : 0);
		n = strcspn(rest, ".");
		if (n >= sizeof(cand))
			continue;
		memcpy(cand, rest, n);
		cand[n] = '\0';
		unsigned d = util_edit_distance(name, cand);
		unsigned limit = strlen(cand) <= 3 ? 1 : (strlen(cand) <= 8 ? 2 : 3);
		if (d <= limit && d < best) {
			best = d;
			if (plen > 0)
				snprintf(out, len, "%s.%s", prefix, cand);
			else
				snprintf(out, len, "%s", cand);
		}
	}
	if (out[0] != '\0')
		return;
	/* The same name as a key or section elsewhere: "scale.processes" -> "worker.processes". */
	size_t nlen = strlen(name);
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct cfg_key *k = &config_keys[i];

		if (k->scope != scope)
			continue;
		for (const char *c = k->path; c != NULL; c = strchr(c, '.') != NULL ? strchr(c, '.') + 1 : NULL)
			if (strncmp(c, name, nlen) == 0 && (c[nlen] == '.' || c[nlen] == '\0')) {
				snprintf(out, len, "%.*s", (int)(c - k->path + (ptrdiff_t)nlen), k->path);
				return;
			}
	}
}

/* Report every setting under group that the table does not know. */
static void
walk_unknown(struct loader *ld, const config_setting_t *group, enum cfg_scope scope, const char *prefix)
{
	int n = config_setting_length(group);

	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
		const char *name = s != NULL ? config_setting_name(s) : NULL;
		char path[256], hint[160];

		if (name == NULL)
			continue;
		if (*prefix)
			snprintf(path, sizeof(path), "%s.%s", prefix, name);
		else
			snprintf(path, sizeof(path), "%s", name);
		if (key_find(scope, path) != NULL)
			continue;
		if (is_section(scope, path)) {
			if (config_setting_is_group(s))
				walk_unknown(ld, s, scope, path);
			else
				SERR(ld, s, "%s: expected a group { ... }, found %s", path, found_type(s));
			continue;
		}
		if (scope == CFG_MAIN && strcmp(path, "queue") == 0) {
			SERR(ld, s, "unknown key \"queue\" (queue policies go in their own files in agent.policy_dir)");
			continue;
		}
		suggest(scope, prefix, name, hint, sizeof(hint));
		if (hint[0] != '\0')
			SERR(ld, s, "unknown key \"%s\" (did you mean \"%s\"?)", path, hint);
		else
			SERR(ld, s, "unknown key \"%s\"", path);
	}
}

/* ---- storing one value ---- */

/*
 * libconfig 1.5 wraps integer literals that do not fit 32 bits (no "L")
 * silently. Compare the value with the literal on the setting's line and
 * report a mismatch rather than run with a wrapped number.
 */
static bool
int_literal_matches(const struct loader *ld, const config_setting_t *s, int64_t v)
{
	const char *file = config_setting_source_file(s), *name = config_setting_name(s), *p;
	int line = setting_line(s);

	if (ld->text == NULL || file == NULL || strcmp(file, ld->file) != 0 || name == NULL || line <= 0)
		return true;
	p = ld->text;
	for (int l = 1; l < line && p != NULL; l++)
		if ((p = strchr(p, '\n')) != NULL)
			p++;
	if (p == NULL)
		return true;
	size_t nlen = strlen(name);
	const char *eol = strchr(p, '\n');
	for (const char *q = p; (q = strstr(q, name)) != NULL && (eol == NULL || q < eol); q++) {
		const char *r = q + nlen;
		char *end;

		if (q > p && (isalnum((unsigned char)q[-1]) || q[-1] == '_' || q[-1] == '-'))
			continue;
		r += strspn(r, " \t");
		if (*r != '=' && *r != ':')
			continue;
		r++;
		r += strspn(r, " \t");
		/* libconfig reads 010 as ten, not octal: only 0x switches the base. */
		const char *digits = r + (*r == '-' || *r == '+');
		int base = digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X') ? 16 : 10;
		errno = 0;
		long long lit = strtoll(r, &end, base);
		if (end == r)
			return true;	/* not a plain literal here: nothing to compare */
		return errno != ERANGE && lit == v;
	}
	return true;
}

static int
get_integer(struct loader *ld, const struct cfg_key *k, const config_setting_t *s, int64_t *v)
{
	*v = config_setting_get_int64(s);
	if (!int_literal_matches(ld, s, *v)) {
		SERR(ld, s, "%s: integer out of range (at most %lld)", k->path, (long long)k->max);
		return -1;
	}
	return 0;
}

static char *
join_path(const char *dir, const char *p)
{
	struct strbuf b = { 0 };

	if (p[0] == '/' || dir == NULL || strcmp(dir, ".") == 0)
		return strdup(p);
	strbuf_printf(&b, "%s/%s", dir, p);
	if (b.oom) {
		strbuf_free(&b);
		return NULL;
	}
	return strbuf_steal(&b);
}

static void
free_argv(char **v)
{
	if (v == NULL)
		return;
	for (char **p = v; *p != NULL; p++)
		free(*p);
	free(v);
}

static int
store_string(struct loader *ld, const struct cfg_key *k, const config_setting_t *s, bool from_file,
    char *dst_dir, char **dst)
{
	const char *v = config_setting_get_string(s), *origin = k->path, *envv;
	char err[256];
	bool from_env = false;

	if (v == NULL) {
		SERR(ld, s, "%s: expected %s, found %s", k->path, expected_type(k), found_type(s));
		return -1;
	}
	if (k->env != NULL && (!from_file || *v == '\0') && (envv = getenv(k->env)) != NULL && *envv) {
		v = envv;
		origin = k->env;
		from_env = true;
	}
	if ((k->flags & CFG_NONEMPTY) && *v == '\0') {
		SERR(ld, s, "%s: must not be empty", origin);
		return -1;
	}
	if (k->check != NULL && k->check(v, err, sizeof(err)) == -1) {
		if (from_env)
			ld_error(ld, ld->file, 0, "%s: %s", origin, err);
		else
			SERR(ld, s, "%s: %s", origin, err);
		return -1;
	}
	free(*dst);
	if ((k->flags & CFG_PATH) && *v != '\0' && !from_env)
		*dst = join_path(dst_dir, v);
	else
		*dst = strdup(v);
	if (*dst == NULL) {
		SERR(ld, s, "%s: out of memory", k->path);
		return -1;
	}
	return 0;
}

static int
store_duration(struct loader *ld, const struct cfg_key *k, const config_setting_t *s, int64_t *dst)
{
	const char *v = config_setting_get_string(s);
	char err[160], a[32], b[32];
	int64_t ms;

	if (v == NULL) {
		int t = config_setting_type(s);
		double num = t == CONFIG_TYPE_FLOAT ? config_setting_get_float(s) :
		    (double)config_setting_get_int64(s);

		if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64 || t == CONFIG_TYPE_FLOAT)
			SERR(ld, s, "%s: a duration needs a unit: write it as a string such as \"%gs\" or \"%gms\"",
			    k->path, num, num);
		else
			SERR(ld, s, "%s: expected %s, found %s", k->path, expected_type(k), found_type(s));
		return -1;
	}
	if (util_parse_duration(v, &ms, err, sizeof(err)) == -1) {
		SERR(ld, s, "%s: %s", k->path, err);
		return -1;
	}
	if (ms < k->min || ms > k->max) {
		util_format_duration(k->min, a, sizeof(a));
		util_format_duration(k->max, b, sizeof(b));
		if (ms == 0 && k->min > 0)
			SERR(ld, s, "%s: must be above zero", k->path);
		else
			SERR(ld, s, "%s: \"%s\" is out of range (%s to %s)", k->path, v, a, b);
		return -1;
	}
	*dst = ms;
	return 0;
}

static bool
is_list(const config_setting_t *s)
{
	return config_setting_is_array(s) || config_setting_is_list(s);
}

/* Check that s is a list within k's length bounds; a zeroed array of n + 1 elements. */
static void *
list_alloc(struct loader *ld, const struct cfg_key *k, const config_setting_t *s, size_t elem, int *n)
{
	void *v;

	if (!is_list(s)) {
		SERR(ld, s, "%s: expected %s, found %s", k->path, expected_type(k), found_type(s));
		return NULL;
	}
	*n = config_setting_length(s);
	if (*n < k->min || *n > k->max) {
		if (*n == 0)
			SERR(ld, s, "%s: must not be empty", k->path);
		else
			SERR(ld, s, "%s: too many elements (at most %lld)", k->path, (long long)k->max);
		return NULL;
	}
	if ((v = calloc((size_t)*n + 1, elem)) == NULL)
		SERR(ld, s, "%s: out of memory", k->path);
	return v;
}

static int
store_argv(struct loader *ld, const struct cfg_key *k, const config_setting_t *s, char ***dst, size_t *dstn)
{
	int n;
	char **v;

	if ((v = list_alloc(ld, k, s, sizeof(*v), &n)) == NULL)
		return -1;
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *str = e != NULL ? config_setting_get_string(e) : NULL;

		if (str == NULL || (i == 0 && *str == '\0')) {
			SERR(ld, e != NULL ? e : s, "%s element %d: expected a%s string, found %s", k->path, i + 1,
			    i == 0 ? " non-empty" : "", str != NULL ? "\"\"" : found_type(e));
			free_argv(v);
			return -1;
		}
		if ((v[i] = strdup(str)) == NULL) {
			SERR(ld, s, "%s: out of memory", k->path);
			free_argv(v);
			return -1;
		}
	}
	free_argv(*dst);
	*dst = v;
	*dstn = (size_t)n;
	return 0;
}

static int
store_durations(struct loader *ld, const struct cfg_key *k, const config_setting_t *s, int64_t **dst,
    size_t *dstn)
{
	int n, rc = 0;
	int64_t *v;

	if ((v = list_alloc(ld, k, s, sizeof(*v), &n)) == NULL)
		return -1;
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		struct cfg_key one = *k;
		char name[96];

		snprintf(name, sizeof(name), "%s element %d", k->path, i + 1);
		one.path = name;
		one.min = 1;
		one.max = 30LL * 24 * 3600 * 1000;
		if (e == NULL || store_duration(ld, &one, e, &v[i]) == -1)
			rc = -1;
	}
	if (rc == -1) {
		free(v);
		return -1;
	}
	free(*dst);
	*dst = v;
	*dstn = (size_t)n;
	return 0;
}

static int
store_step(struct loader *ld, const struct cfg_key *k, const config_setting_t *s, struct step_limit *dst)
{
	const char *str = config_setting_get_string(s);
	int t = config_setting_type(s);
	int64_t v;

	if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64) {
		if (get_integer(ld, k, s, &v) == -1)
			return -1;
		if (v < k->min || v > k->max) {
			SERR(ld, s, "%s: %lld is out of range (%lld to %lld)", k->path, (long long)v,
			    (long long)k->min, (long long)k->max);
			return -1;
		}
		dst->value = v;
		dst->percent = false;
		return 0;
	}
	if (str != NULL) {
		char *end;

		errno = 0;
		long p = strtol(str, &end, 10);
		if (end != str && strcmp(end, "%") == 0 && errno == 0 && p >= 1 && p <= 1000 &&
		    str[0] >= '0' && str[0] <= '9') {
			dst->value = p;
			dst->percent = true;
			return 0;
		}
		SERR(ld, s, "%s: \"%s\" is not a percentage from \"1%%\" to \"1000%%\" (or give a count: %s = 2;)",
		    k->path, str, k->path);
		return -1;
	}
	SERR(ld, s, "%s: expected %s, found %s", k->path, expected_type(k), found_type(s));
	return -1;
}

static int
store_enum(struct loader *ld, const struct cfg_key *k, const config_setting_t *s, int *dst)
{
	const char *v = config_setting_get_string(s);
	struct strbuf b = { 0 };

	if (v != NULL)
		for (int i = 0; k->choices[i] != NULL; i++)
			if (strcmp(v, k->choices[i]) == 0) {
				*dst = i;
				return 0;
			}
	for (int i = 0; k->choices[i] != NULL; i++)
		strbuf_printf(&b, "%s\"%s\"", i == 0 ? "" : k->choices[i + 1] == NULL ? " or " : ", ",
		    k->choices[i]);
	if (v != NULL)
		SERR(ld, s, "%s: \"%s\" is not one of %s", k->path, v, b.s != NULL ? b.s : "");
	else
		SERR(ld, s, "%s: expected one of %s, found %s", k->path, b.s != NULL ? b.s : "", found_type(s));
	strbuf_free(&b);
	return -1;
}

/* Store one setting (from the file or from the defaults) at base + k->off. */
static int
store(struct loader *ld, const struct cfg_key *k, const config_setting_t *s, bool from_file, char *dir,
    void *base)
{
	char *p = (char *)base + k->off;
	int t = config_setting_type(s);
	int64_t v;

	switch (k->type) {
	case CFG_STRING:
		return store_string(ld, k, s, from_file, dir, (char **)(void *)p);
	case CFG_INT:
		if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64) {
			SERR(ld, s, "%s: expected %s, found %s", k->path, expected_type(k), found_type(s));
			return -1;
		}
		if (get_integer(ld, k, s, &v) == -1)
			return -1;
		if (v < k->min || v > k->max) {
			if (v <= 0 && k->min > v)
				SERR(ld, s, "%s: %lld makes no sense here (at least %lld)", k->path, (long long)v,
				    (long long)k->min);
			else
				SERR(ld, s, "%s: %lld is out of range (%lld to %lld)", k->path, (long long)v,
				    (long long)k->min, (long long)k->max);
			return -1;
		}
		*(int *)(void *)p = (int)v;
		return 0;
	case CFG_NUMBER: {
		double d;

		if (t == CONFIG_TYPE_FLOAT)
			d = config_setting_get_float(s);
		else if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64) {
			if (get_integer(ld, k, s, &v) == -1)
				return -1;
			d = (double)v;
		} else {
			SERR(ld, s, "%s: expected %s, found %s", k->path, expected_type(k), found_type(s));
			return -1;
		}
		if (!(d > 0) || d > (double)k->max) {
			SERR(ld, s, "%s: %g is out of range (above 0, at most %lld)", k->path, d, (long long)k->max);
			return -1;
		}
		*(double *)(void *)p = d;
		return 0;
	}
	case CFG_BOOL:
		if (t != CONFIG_TYPE_BOOL) {
			SERR(ld, s, "%s: expected %s, found %s", k->path, expected_type(k), found_type(s));
			return -1;
		}
		*(bool *)(void *)p = config_setting_get_bool(s) != 0;
		return 0;
	case CFG_DURATION:
		return store_duration(ld, k, s, (int64_t *)(void *)p);
	case CFG_ARGV:
		return store_argv(ld, k, s, (char ***)(void *)p, (size_t *)(void *)((char *)base + k->off_n));
	case CFG_DURATIONS:
		return store_durations(ld, k, s, (int64_t **)(void *)p,
		    (size_t *)(void *)((char *)base + k->off_n));
	case CFG_STEP:
		return store_step(ld, k, s, (struct step_limit *)(void *)p);
	case CFG_ENUM:
		return store_enum(ld, k, s, (int *)(void *)p);
	}
	return -1;
}

/* Apply every key of scope: the file's setting under root, else the default. */
static void
apply_keys(struct loader *ld, const config_setting_t *root, enum cfg_scope scope, char *dir, void *base)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct cfg_key *k = &config_keys[i];
		config_setting_t *s = NULL;
		char name[32];

		ld->present[i] = false;
		ld->bad[i] = false;
		if (k->scope != scope)
			continue;
		if (root != NULL && config_setting_is_group(root))
			s = config_setting_lookup((config_setting_t *)(uintptr_t)root, k->path);
		if (s != NULL) {
			ld->present[i] = true;
			ld->bad[i] = store(ld, k, s, true, dir, base) == -1;
			continue;
		}
		snprintf(name, sizeof(name), "k%zu", i);
		if ((s = config_lookup(&ld->defaults, name)) != NULL)
			ld->bad[i] = store(ld, k, s, false, dir, base) == -1;
	}
}

static bool
was_set(const struct loader *ld, const char *path, enum cfg_scope scope)
{
	const struct cfg_key *k = key_find(scope, path);

	return k != NULL && ld->present[k - config_keys];
}

/* Were the keys (NULL-terminated list) all accepted? Cross-checks skip rejected ones. */
static bool
all_ok(const struct loader *ld, enum cfg_scope scope, ...)
{
	va_list ap;
	const char *path;
	bool ok = true;

	va_start(ap, scope);
	while ((path = va_arg(ap, const char *)) != NULL) {
		const struct cfg_key *k = key_find(scope, path);

		if (k != NULL && ld->bad[k - config_keys])
			ok = false;
	}
	va_end(ap);
	return ok;
}

/* The line of the setting at path under root, else fallback's. */
static const config_setting_t *
where(const config_setting_t *root, const char *path, const config_setting_t *fallback)
{
	const config_setting_t *s = config_setting_lookup((config_setting_t *)(uintptr_t)root, path);

	return s != NULL ? s : fallback;
}

static int
build_defaults(struct loader *ld)
{
	struct strbuf b = { 0 };
	int rc = 0;

	config_init(&ld->defaults);
	if (config_nkeys > MAX_KEYS) {
		ld_error(ld, NULL, 0, "internal error: %zu keys in the table, raise MAX_KEYS", config_nkeys);
		return -1;
	}
	for (size_t i = 0; i < config_nkeys; i++)
		if (config_keys[i].def != NULL)
			strbuf_printf(&b, "k%zu = %s;\n", i, config_keys[i].def);
	if (b.oom || config_read_string(&ld->defaults, b.s != NULL ? b.s : "") != CONFIG_TRUE) {
		ld_error(ld, NULL, 0, "internal error: the table of defaults does not parse: %s",
		    config_error_text(&ld->defaults));
		rc = -1;
	}
	strbuf_free(&b);
	return rc;
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
		ld_error(ld, path, 0, "cannot read: %s", strerror(errno));
		return -1;
	}
	if (S_ISDIR(st.st_mode)) {
		ld_error(ld, path, 0, "is a directory, not a configuration file");
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		ld_error(ld, path, 0, "is not a regular file");
		return -1;
	}
	if (st.st_size > MAX_FILE_BYTES) {
		ld_error(ld, path, 0, "is too large (%lld bytes; at most %d)", (long long)st.st_size, MAX_FILE_BYTES);
		return -1;
	}
	if ((f = fopen(path, "r")) == NULL) {
		ld_error(ld, path, 0, "cannot read: %s", strerror(errno));
		return -1;
	}
	if ((ld->text = malloc((size_t)st.st_size + 1)) == NULL) {
		fclose(f);
		ld_error(ld, path, 0, "out of memory");
		return -1;
	}
	n = fread(ld->text, 1, (size_t)st.st_size, f);
	ld->text[n] = '\0';
	fclose(f);
	if (memchr(ld->text, '\0', n) != NULL) {
		ld_error(ld, path, 0, "contains NUL bytes: not a text file");
		return -1;
	}
	if (config_read_file(cf, path) != CONFIG_TRUE) {
		const char *ef = config_error_file(cf);

		if (config_error_type(cf) == CONFIG_ERR_FILE_IO)
			ld_error(ld, ef != NULL ? ef : path, 0, "cannot read: %s", config_error_text(cf));
		else
			ld_error(ld, ef != NULL ? ef : path, config_error_line(cf), "%s",
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
free_keys(enum cfg_scope scope, void *base)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct cfg_key *k = &config_keys[i];
		char *p = (char *)base + k->off;

		if (k->scope != scope)
			continue;
		if (k->type == CFG_STRING || k->type == CFG_DURATIONS)
			free(*(void **)(void *)p);
		else if (k->type == CFG_ARGV)
			free_argv(*(char ***)(void *)p);
	}
}

static void
policy_free(struct queue_policy *q)
{
	free_keys(CFG_POLICY, q);
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
	free_keys(CFG_MAIN, cfg);
	free(cfg->redis.password);
	free(cfg->nomad.token);
	free(cfg->path);
	free(cfg->dir);
	free(cfg);
}

static char *
read_secret_key(struct loader *ld, const config_setting_t *root, const char *key, const char *file)
{
	char err[512], *v;
	struct stat st;

	if (file == NULL || *file == '\0')
		return NULL;
	if (stat(file, &st) == 0 && S_ISDIR(st.st_mode)) {
		SERR(ld, where(root, key, NULL), "%s: %s is a directory, not a file", key, file);
		return NULL;
	}
	if ((v = util_read_secret(file, MAX_SECRET_BYTES, err, sizeof(err))) == NULL) {
		SERR(ld, where(root, key, NULL), "%s: %s", key, err);
		return NULL;
	}
	if (*v == '\0') {
		SERR(ld, where(root, key, NULL), "%s: %s is empty", key, file);
		free(v);
		return NULL;
	}
	return v;
}

static void
check_main(struct loader *ld, const config_setting_t *root, struct config *cfg)
{
	const char *env;

	if (cfg->agent.lease_ttl_ms <= cfg->agent.interval_ms &&
	    all_ok(ld, CFG_MAIN, "agent.lease_ttl", "agent.interval", (char *)NULL)) {
		char a[32], b[32];

		util_format_duration(cfg->agent.lease_ttl_ms, a, sizeof(a));
		util_format_duration(cfg->agent.interval_ms, b, sizeof(b));
		SERR(ld, where(root, "agent.lease_ttl", where(root, "agent.interval", NULL)),
		    "agent.lease_ttl (%s) must be longer than agent.interval (%s), or the lease lapses between renewals",
		    a, b);
	}
	cfg->redis.password = read_secret_key(ld, root, "redis.password_file", cfg->redis.password_file);
	if (ld->flags & CONFIG_NO_NOMAD_SECRETS)
		return;
	if (cfg->nomad.token_file != NULL && *cfg->nomad.token_file != '\0')
		cfg->nomad.token = read_secret_key(ld, root, "nomad.token_file", cfg->nomad.token_file);
	else if ((env = getenv("NOMAD_TOKEN")) != NULL && *env != '\0' &&
	    (cfg->nomad.token = strdup(env)) == NULL)
		ld_error(ld, ld->file, 0, "NOMAD_TOKEN: out of memory");
	static const char *const tls[] = { "nomad.ca_file", "nomad.cert_file", "nomad.key_file" };
	const char *vals[] = { cfg->nomad.ca_file, cfg->nomad.cert_file, cfg->nomad.key_file };
	for (size_t i = 0; i < ARRAY_LEN(tls); i++)
		if (vals[i] != NULL && *vals[i] != '\0' && access(vals[i], R_OK) == -1)
			SERR(ld, where(root, tls[i], NULL), "%s: cannot read %s: %s", tls[i], vals[i],
			    strerror(errno));
}

static enum queue_mode
derive_mode(bool loss_critical, bool order_critical)
{
	if (!loss_critical)
		return order_critical ? MODE_ORDERED_DROP : MODE_DROP;
	return order_critical ? MODE_HALT : MODE_DLQ;
}

static void
fmt_ms(int64_t ms, char *buf, size_t len)
{
	util_format_duration(ms, buf, len);
}

/* Durations of a policy that must stay in order. */
struct duration_pair {
	const char *lo, *hi;
	size_t lo_off, hi_off;
	bool strict;		/* lo < hi; else lo <= hi */
	const char *why;
};
static const struct duration_pair duration_order[] = {
	{ "worker.drain_timeout", "worker.kill_timeout", offsetof(struct queue_policy, worker.drain_timeout_ms),
	  offsetof(struct queue_policy, worker.kill_timeout_ms), true,
	  "Nomad kills the worker at the job's kill_timeout, before it has drained" },
	{ "worker.block", "worker.drain_timeout", offsetof(struct queue_policy, worker.block_ms),
	  offsetof(struct queue_policy, worker.drain_timeout_ms), true,
	  "a draining consumer may sit in one read that long" },
	{ "worker.backoff", "worker.max_backoff", offsetof(struct queue_policy, worker.backoff_ms),
	  offsetof(struct queue_policy, worker.max_backoff_ms), false, "the first retry delay exceeds its cap" },
};

/* Fill the derived values of q and check what spans several keys. */
static void
check_policy(struct loader *ld, const config_setting_t *qs, struct queue_policy *q)
{
	const struct config *cfg = ld->cfg;
	char a[32], b[32];

	if (q->name == NULL) {
		if (!was_set(ld, "name", CFG_POLICY))
			SERR(ld, qs, "queue: missing the required key \"name\"");
	} else {
		if (q->stream == NULL && !was_set(ld, "stream", CFG_POLICY))
			q->stream = strdup(q->name);
		if (q->group == NULL && !was_set(ld, "group", CFG_POLICY))
			q->group = strdup(q->name);
		if ((q->stream == NULL && !was_set(ld, "stream", CFG_POLICY)) ||
		    (q->group == NULL && !was_set(ld, "group", CFG_POLICY)))
			SERR(ld, qs, "out of memory");
	}
	if (q->scale.namespace == NULL && !was_set(ld, "scale.namespace", CFG_POLICY) &&
	    cfg->nomad.namespace != NULL && (q->scale.namespace = strdup(cfg->nomad.namespace)) == NULL)
		SERR(ld, qs, "out of memory");
	if (!was_set(ld, "scale.interval", CFG_POLICY))
		q->scale.interval_ms = cfg->agent.interval_ms;
	if (q->order_critical && !was_set(ld, "scale.max", CFG_POLICY) && q->partitions > 0)
		q->scale.max = q->partitions;
	q->mode = derive_mode(q->loss_critical, q->order_critical);

	const config_setting_t *scale = where(qs, "scale", qs);
	if (q->scale.min > q->scale.max && all_ok(ld, CFG_POLICY, "scale.min", "scale.max", (char *)NULL))
		SERR(ld, where(qs, "scale.min", where(qs, "scale.max", scale)),
		    "scale.min (%d) is greater than scale.max (%d)", q->scale.min, q->scale.max);
	if (q->order_critical && q->scale.max > q->partitions &&
	    all_ok(ld, CFG_POLICY, "scale.max", "partitions", (char *)NULL))
		SERR(ld, where(qs, "scale.max", where(qs, "partitions", qs)),
		    "scale.max (%d) exceeds partitions (%d): an order-critical queue never runs more workers than partitions",
		    q->scale.max, q->partitions);
	if (q->scale.target == SCALE_TARGET_NOMAD && all_ok(ld, CFG_POLICY, "scale.target", (char *)NULL)) {
		if (q->scale.job != NULL && *q->scale.job == '\0')
			SERR(ld, where(qs, "scale.job", scale),
			    "scale.job is required when scale.target is \"nomad\" (or set target = \"none\")");
		if (q->scale.group != NULL && *q->scale.group == '\0')
			SERR(ld, where(qs, "scale.group", scale),
			    "scale.group is required when scale.target is \"nomad\" (the job's task group)");
	}

	const config_setting_t *worker = config_setting_lookup((config_setting_t *)(uintptr_t)qs, "worker");
	if (worker != NULL && config_setting_is_group(worker) && !was_set(ld, "worker.command", CFG_POLICY))
		SERR(ld, worker, "worker.command is required in a worker section (the handler's argv)");
	for (size_t i = 0; i < ARRAY_LEN(duration_order); i++) {
		const struct duration_pair *d = &duration_order[i];
		int64_t lo = *(const int64_t *)(const void *)((const char *)q + d->lo_off);
		int64_t hi = *(const int64_t *)(const void *)((const char *)q + d->hi_off);

		if (lo < hi || (!d->strict && lo == hi) || !all_ok(ld, CFG_POLICY, d->lo, d->hi, (char *)NULL))
			continue;
		fmt_ms(lo, a, sizeof(a));
		fmt_ms(hi, b, sizeof(b));
		SERR(ld, where(qs, d->lo, where(qs, d->hi, qs)), "%s (%s) must %s %s (%s): %s", d->lo, a,
		    d->strict ? "stay below" : "not exceed", d->hi, b, d->why);
	}
	if (worker != NULL && q->worker.claim_idle_ms > 0 && q->worker.claim_idle_ms <= q->worker.timeout_ms) {
		const config_setting_t *s = where(qs, "worker.claim_idle", worker);

		log_warnx("%s:%d: worker.claim_idle is not above worker.timeout: a slow message may be "
		    "reclaimed by another consumer while its handler still runs", setting_file(ld, s),
		    setting_line(s));
	}
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
		else if (key_find(CFG_MAIN, name) != NULL || is_section(CFG_MAIN, name))
			SERR(ld, s, "unknown key \"%s\" (%s belongs in the main file)", name, name);
		else
			SERR(ld, s, "unknown key \"%s\" (a policy file holds one queue: { ... } group)", name);
	}
	if (qs == NULL) {
		ld_error(ld, path, 0, "no queue: { ... } group (a policy file describes one queue)");
		goto out;
	}
	if (!config_setting_is_group(qs)) {
		SERR(ld, qs, "queue: expected a group { ... }, found %s", found_type(qs));
		goto out;
	}
	q = realloc(cfg->queues, (cfg->nqueues + 1) * sizeof(*q));
	if (q == NULL) {
		ld_error(ld, path, 0, "out of memory");
		goto out;
	}
	cfg->queues = q;
	q = &cfg->queues[cfg->nqueues++];
	memset(q, 0, sizeof(*q));
	q->file = strdup(path);
	q->line = setting_line(qs);
	walk_unknown(ld, qs, CFG_POLICY, "");
	apply_keys(ld, qs, CFG_POLICY, cfg->dir, q);
	check_policy(ld, qs, q);
	for (size_t i = 0; q->name != NULL && i + 1 < cfg->nqueues; i++) {
		const struct queue_policy *o = &cfg->queues[i];

		if (o->name != NULL && strcmp(o->name, q->name) == 0)
			SERR(ld, where(qs, "name", qs), "duplicate queue name \"%s\" (also defined at %s:%d)",
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
		char *p = join_path(shown_dir, ents[i]->d_name);

		if (p == NULL)
			ld_error(ld, shown_dir, 0, "out of memory");
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
	if (build_defaults(&ld) == -1)
		goto done;
	if ((cfg = calloc(1, sizeof(*cfg))) == NULL || (cfg->path = strdup(path)) == NULL ||
	    (given_dir = dir_of(path)) == NULL) {
		ld_error(&ld, path, 0, "out of memory");
		goto done;
	}
	ld.cfg = cfg;
	if (read_file(&ld, cfg->path, &cf) == -1)
		goto done;
	if ((rdir = realpath(given_dir, NULL)) == NULL) {
		ld_error(&ld, path, 0, "cannot resolve its folder: %s", strerror(errno));
		goto done;
	}
	cfg->dir = rdir;
	root = config_root_setting(&cf);
	walk_unknown(&ld, root, CFG_MAIN, "");
	apply_keys(&ld, root, CFG_MAIN, cfg->dir, cfg);
	check_main(&ld, root, cfg);
	flush_errors(&ld);
	if (cfg->agent.policy_dir == NULL)
		goto done;
	/* Name policy files the way the user named the main file, not by the resolved folder. */
	size_t dl = strlen(cfg->dir);
	if (strncmp(cfg->agent.policy_dir, cfg->dir, dl) == 0 && cfg->agent.policy_dir[dl] == '/')
		shown_dir = join_path(given_dir, cfg->agent.policy_dir + dl + 1);
	else
		shown_dir = strdup(cfg->agent.policy_dir);
	if (shown_dir == NULL) {
		ld_error(&ld, path, 0, "out of memory");
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
