/*
 * config internals shared by the loader's three files: config.c (files,
 * errors, the load), config_value.c (one setting into its field through the
 * table of keys) and config_validate.c (what spans several keys). Nothing
 * outside them includes this.
 */
#ifndef SCALENO_CONFIG_INT_H
#define SCALENO_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <libconfig.h>

#include "config.h"

#define MAX_KEYS	128	/* rows of config_keys[] a loader can track */

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

/* ---- config.c ---- */

/* Queue an error of file (NULL: the current one) at line (0: none); sorted by line later. */
void config__error(struct loader *ld, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The file and line a setting came from (the current file when libconfig does not know). */
const char *config__setting_file(const struct loader *ld, const config_setting_t *s);
int config__setting_line(const config_setting_t *s);
/* An error at setting s. */
#define SERR(ld, s, ...) \
	config__error((ld), config__setting_file((ld), (s)), config__setting_line(s), __VA_ARGS__)

/* ---- config_value.c ---- */

/* The key at path ("scale.min") of scope, or NULL. */
const struct cfg_key *config__key_find(enum cfg_scope scope, const char *path);
/* Is path a section ("scale", "scale.up") of some key of scope? */
bool config__is_section(enum cfg_scope scope, const char *path);
/* "a group", "an integer", ...: what a setting is, for messages. */
const char *config__found_type(const config_setting_t *s);
/* Report every setting under group that the table does not know, with "did you mean". */
void config__walk_unknown(struct loader *ld, const config_setting_t *group, enum cfg_scope scope,
    const char *prefix);
/* Store every key of scope at base: the file's setting under root, else the default. */
void config__apply_keys(struct loader *ld, const config_setting_t *root, enum cfg_scope scope, char *dir,
    void *base);
/* Was the key at path set by the current file? */
bool config__was_set(const struct loader *ld, const char *path, enum cfg_scope scope);
/* Were the keys (a NULL-terminated list of paths) all accepted? Cross-checks skip rejected ones. */
bool config__all_ok(const struct loader *ld, enum cfg_scope scope, ...);
/* The setting at path under root, else fallback (for the line of an error). */
const config_setting_t *config__where(const config_setting_t *root, const char *path,
    const config_setting_t *fallback);
/* Build ld->defaults from the table. 0, or -1 with an error. */
int config__build_defaults(struct loader *ld);
/* dir/p, or p when absolute; malloc'd, NULL on OOM. */
char *config__join_path(const char *dir, const char *p);
/* Free what the keys of scope hold at base. */
void config__free_keys(enum cfg_scope scope, void *base);

/* ---- config_validate.c ---- */

/* The rules of the main file, and its secrets (Nomad's unless CONFIG_NO_NOMAD_SECRETS). */
void config__check_main(struct loader *ld, const config_setting_t *root, struct config *cfg);
/*
 * The redis section (scope CFG_MAIN, base NULL) or a policy's own redis
 * block merged over base: exactly one server, the secrets read, the rules
 * between the keys, address set to a name for messages with Sentinel or
 * Cluster.
 */
void config__check_redis(struct loader *ld, const config_setting_t *root, enum cfg_scope scope,
    struct redis_conf *rc, const struct redis_conf *base);
/* Fill the derived values of policy q (setting qs) and check what spans several keys. */
void config__check_policy(struct loader *ld, const config_setting_t *qs, struct queue_policy *q);

#endif
