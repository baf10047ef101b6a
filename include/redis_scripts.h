/*
 * redis_scripts — the Lua scripts of contrib/lua/, built into the binary by
 * the Makefile (build/gen/redis_scripts.c: one entry per <name>.lua, the
 * file's text unchanged). contrib/lua/ is the only copy of each script;
 * programs in other languages load the same files (share/scaleno/lua/).
 * Only redis.c reads this table (redis_eval, redis_script_source).
 */
#ifndef SCALENO_REDIS_SCRIPTS_H
#define SCALENO_REDIS_SCRIPTS_H

#include <stddef.h>

struct redis_script {
	const char *name;	/* the file name without .lua */
	const char *src;
};

extern const struct redis_script redis_scripts[];
extern const size_t redis_nscripts;

#endif
