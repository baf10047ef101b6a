/*
 * redis_keys.c — see include/redis_keys.h.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_keys.h"

/* Each kind: what follows the stream name, and whether the partition or a number goes in. */
static const struct {
	const char *suffix;
	bool per_partition;	/* <stream>[:<n>]<suffix> */
	bool numbered;		/* <stream><suffix><n> */
} kinds[] = {
	[RK_PART] = { "", true, false },
	[RK_RETRY] = { ":retry:", false, true },
	[RK_DLQ] = { ":dlq", false, false },
	[RK_MEMBERS] = { ":members", false, false },
	[RK_RR] = { ":rr", false, false },
	[RK_HALT] = { ":halt", true, false },
	[RK_LEASE] = { ":lease", true, false },
	[RK_EPOCH] = { ":lease:epoch", true, false },
};

int
redis_key_buf(char *buf, size_t len, const char *stream, int partitions,
    enum redis_key_kind kind, int n)
{
	char part[32] = "";
	int w;

	if ((size_t)kind >= sizeof(kinds) / sizeof(kinds[0]))
		return -1;
	if (kinds[kind].numbered)
		w = snprintf(buf, len, "%s%s%d", stream, kinds[kind].suffix, n);
	else {
		if (kinds[kind].per_partition && partitions > 1)
			snprintf(part, sizeof(part), ":%d", n);
		w = snprintf(buf, len, "%s%s%s", stream, part, kinds[kind].suffix);
	}
	return w < 0 || (size_t)w >= len ? -1 : 0;
}

char *
redis_key(const char *stream, int partitions, enum redis_key_kind kind, int n)
{
	size_t len = strlen(stream) + 48;
	char *s = malloc(len);

	if (s != NULL && redis_key_buf(s, len, stream, partitions, kind, n) < 0) {
		free(s);
		return NULL;
	}
	return s;
}

char *
redis_key_map(const char *stream, const char *key, size_t keylen, size_t *outlen)
{
	static const char mid[] = ":key:";
	size_t slen = strlen(stream), mlen = sizeof(mid) - 1;
	char *s = malloc(slen + mlen + keylen + 1);

	if (s == NULL)
		return NULL;
	memcpy(s, stream, slen);
	memcpy(s + slen, mid, mlen);
	if (keylen > 0)
		memcpy(s + slen + mlen, key, keylen);
	s[slen + mlen + keylen] = '\0';
	*outlen = slen + mlen + keylen;
	return s;
}
