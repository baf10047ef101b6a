/*
 * config_value.c — one setting of a configuration file into its typed
 * field, through the table of keys (config_keys.c): lookups, unknown keys
 * with "did you mean", the store of each type with its bounds, and the
 * defaults (scaleno.conf(5)).
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libconfig.h>

#include "config.h"
#include "config_int.h"
#include "util.h"

/* ---- the table ---- */

const struct cfg_key *
config__key_find(enum cfg_scope scope, const char *path)
{
	for (size_t i = 0; i < config_nkeys; i++)
		if (config_keys[i].scope == scope && strcmp(config_keys[i].path, path) == 0)
			return &config_keys[i];
	return NULL;
}

/* Is path a section ("scale", "scale.up") of some key? */
bool
config__is_section(enum cfg_scope scope, const char *path)
{
	size_t n = strlen(path);

	for (size_t i = 0; i < config_nkeys; i++)
		if (config_keys[i].scope == scope && strncmp(config_keys[i].path, path, n) == 0 &&
		    config_keys[i].path[n] == '.')
			return true;
	return false;
}

const char *
config__found_type(const config_setting_t *s)
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
void
config__walk_unknown(struct loader *ld, const config_setting_t *group, enum cfg_scope scope,
    const char *prefix)
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
		if (config__key_find(scope, path) != NULL)
			continue;
		if (config__is_section(scope, path)) {
			if (config_setting_is_group(s))
				config__walk_unknown(ld, s, scope, path);
			else
				SERR(ld, s, "%s: expected a group { ... }, found %s", path, config__found_type(s));
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
	int line = config__setting_line(s);

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

char *
config__join_path(const char *dir, const char *p)
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
		SERR(ld, s, "%s: expected %s, found %s", k->path, expected_type(k), config__found_type(s));
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
			config__error(ld, ld->file, 0, "%s: %s", origin, err);
		else
			SERR(ld, s, "%s: %s", origin, err);
		return -1;
	}
	free(*dst);
	if ((k->flags & CFG_PATH) && *v != '\0' && !from_env)
		*dst = config__join_path(dst_dir, v);
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
			SERR(ld, s, "%s: expected %s, found %s", k->path, expected_type(k), config__found_type(s));
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
		SERR(ld, s, "%s: expected %s, found %s", k->path, expected_type(k), config__found_type(s));
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
	char err[256];
	int n;
	char **v;

	if ((v = list_alloc(ld, k, s, sizeof(*v), &n)) == NULL)
		return -1;
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *str = e != NULL ? config_setting_get_string(e) : NULL;

		if (str == NULL || (i == 0 && *str == '\0')) {
			SERR(ld, e != NULL ? e : s, "%s element %d: expected a%s string, found %s", k->path, i + 1,
			    i == 0 ? " non-empty" : "", str != NULL ? "\"\"" : config__found_type(e));
			free_argv(v);
			return -1;
		}
		if (k->check != NULL && k->check(str, err, sizeof(err)) == -1) {
			SERR(ld, e != NULL ? e : s, "%s element %d: %s", k->path, i + 1, err);
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
	SERR(ld, s, "%s: expected %s, found %s", k->path, expected_type(k), config__found_type(s));
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
		SERR(ld, s, "%s: expected one of %s, found %s", k->path, b.s != NULL ? b.s : "", config__found_type(s));
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
			SERR(ld, s, "%s: expected %s, found %s", k->path, expected_type(k), config__found_type(s));
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
			SERR(ld, s, "%s: expected %s, found %s", k->path, expected_type(k), config__found_type(s));
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
			SERR(ld, s, "%s: expected %s, found %s", k->path, expected_type(k), config__found_type(s));
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
void
config__apply_keys(struct loader *ld, const config_setting_t *root, enum cfg_scope scope, char *dir,
    void *base)
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

bool
config__was_set(const struct loader *ld, const char *path, enum cfg_scope scope)
{
	const struct cfg_key *k = config__key_find(scope, path);

	return k != NULL && ld->present[k - config_keys];
}

/* Were the keys (NULL-terminated list) all accepted? Cross-checks skip rejected ones. */
bool
config__all_ok(const struct loader *ld, enum cfg_scope scope, ...)
{
	va_list ap;
	const char *path;
	bool ok = true;

	va_start(ap, scope);
	while ((path = va_arg(ap, const char *)) != NULL) {
		const struct cfg_key *k = config__key_find(scope, path);

		if (k != NULL && ld->bad[k - config_keys])
			ok = false;
	}
	va_end(ap);
	return ok;
}

/* The line of the setting at path under root, else fallback's. */
const config_setting_t *
config__where(const config_setting_t *root, const char *path, const config_setting_t *fallback)
{
	const config_setting_t *s = config_setting_lookup((config_setting_t *)(uintptr_t)root, path);

	return s != NULL ? s : fallback;
}

int
config__build_defaults(struct loader *ld)
{
	struct strbuf b = { 0 };
	int rc = 0;

	config_init(&ld->defaults);
	if (config_nkeys > MAX_KEYS) {
		config__error(ld, NULL, 0, "internal error: %zu keys in the table, raise MAX_KEYS", config_nkeys);
		return -1;
	}
	for (size_t i = 0; i < config_nkeys; i++)
		if (config_keys[i].def != NULL)
			strbuf_printf(&b, "k%zu = %s;\n", i, config_keys[i].def);
	if (b.oom || config_read_string(&ld->defaults, b.s != NULL ? b.s : "") != CONFIG_TRUE) {
		config__error(ld, NULL, 0, "internal error: the table of defaults does not parse: %s",
		    config_error_text(&ld->defaults));
		rc = -1;
	}
	strbuf_free(&b);
	return rc;
}


void
config__free_keys(enum cfg_scope scope, void *base)
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
