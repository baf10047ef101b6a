/*
 * handler_msg.c — the message as both handler protocols send it,
 * scaleno-worker(8) "The message": one JSON object per line with queue,
 * stream, partition, id, delivery, fields and meta. Field names and text
 * values travel as JSON strings (invalid UTF-8 and NUL become U+FFFD in
 * names); a value that is not valid UTF-8 goes as standard base64 and is
 * listed in meta.binary.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "handler_msg.h"

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid. */
static size_t
utf8_seq(const unsigned char *s, size_t left)
{
	size_t n;
	uint32_t cp, min;

	if (s[0] < 0x80)
		return s[0] != 0;	/* NUL cannot travel through a C string */
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f, min = 0x80;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f, min = 0x800;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07, min = 0x10000;
	else
		return 0;
	if (left < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* s[0..len) as valid UTF-8: each invalid byte and each NUL becomes U+FFFD. Caller frees. */
static char *
utf8_clean(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	char *out = malloc(len * 3 + 1), *o = out;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len;) {
		size_t n = utf8_seq(u + i, len - i);

		if (n == 0) {
			memcpy(o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		} else {
			memcpy(o, u + i, n);
			o += n;
			i += n;
		}
	}
	*o = '\0';
	return out;
}

/* Whether s[0..len) is valid UTF-8 without a NUL: it can travel as a JSON string as it is. */
static bool
utf8_valid(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;

	for (size_t i = 0, n; i < len; i += n)
		if ((n = utf8_seq(u + i, len - i)) == 0)
			return false;
	return true;
}

/* Standard base64 (RFC 4648, with padding) of s[0..len). Caller frees. */
static char *
base64(const char *s, size_t len)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *u = (const unsigned char *)s;
	char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)u[i] << 16 | (i + 1 < len ? (uint32_t)u[i + 1] << 8 : 0) |
		    (i + 2 < len ? u[i + 2] : 0);

		*o++ = tab[v >> 18 & 63];
		*o++ = tab[v >> 12 & 63];
		*o++ = i + 1 < len ? tab[v >> 6 & 63] : '=';
		*o++ = i + 2 < len ? tab[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

/* An integer as raw JSON text: cJSON prints numbers through printf/sscanf of a double. */
static bool
add_int(cJSON *o, const char *name, int64_t v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%lld", (long long)v);
	return cJSON_AddRawToObject(o, name, buf) != NULL;
}

/*
 * meta (scaleno-worker(8) "The message"): attempt, stage, first_failed_ms
 * and last_error once it failed, binary when a value went as base64.
 */
static cJSON *
message_meta(cJSON *root, const struct message *m)
{
	cJSON *meta = cJSON_AddObjectToObject(root, "meta");
	char *err;

	if (meta == NULL || !add_int(meta, "attempt", m->attempt > 0 ? m->attempt : 1) ||
	    !add_int(meta, "stage", m->stage))
		return NULL;
	if (m->first_failed_ms > 0 && !add_int(meta, "first_failed_ms", m->first_failed_ms))
		return NULL;
	if (m->last_error != NULL) {
		err = utf8_clean(m->last_error, strlen(m->last_error));
		if (err == NULL || cJSON_AddStringToObject(meta, "last_error", err) == NULL) {
			free(err);
			return NULL;
		}
		free(err);
	}
	return meta;
}

char *
handler_message_json(const struct message *m)
{
	cJSON *root = cJSON_CreateObject(), *fields, *meta, *binary = NULL;
	char *text = NULL;

	if (root == NULL)
		return NULL;
	if (cJSON_AddStringToObject(root, "queue", m->queue != NULL ? m->queue : "") == NULL ||
	    cJSON_AddStringToObject(root, "stream", m->stream != NULL ? m->stream : "") == NULL ||
	    !add_int(root, "partition", m->partition) ||
	    cJSON_AddStringToObject(root, "id", m->id) == NULL ||
	    !add_int(root, "delivery", m->delivery) ||
	    (fields = cJSON_AddObjectToObject(root, "fields")) == NULL ||
	    (meta = message_meta(root, m)) == NULL)
		goto out;
	for (size_t i = 0; i < m->nfields; i++) {
		bool bin = !utf8_valid(m->values[i], m->value_lens[i]);
		char *name, *value;
		cJSON *item;

		/* Bookkeeping of the retry stages stays in Redis. */
		if (m->stage > 0 && redis_is_failure_field(m->names[i], m->name_lens[i]))
			continue;
		name = utf8_clean(m->names[i], m->name_lens[i]);
		value = bin ? base64(m->values[i], m->value_lens[i]) :
		    utf8_clean(m->values[i], m->value_lens[i]);
		item = value != NULL ? cJSON_CreateString(value) : NULL;
		free(value);
		if (bin && name != NULL && item != NULL && binary == NULL &&
		    (binary = cJSON_AddArrayToObject(meta, "binary")) == NULL) {
			cJSON_Delete(item);
			item = NULL;
		}
		if (name == NULL || item == NULL) {
			free(name);
			cJSON_Delete(item);
			goto out;
		}
		if (bin)
			cJSON_AddItemToArray(binary, cJSON_CreateString(name));
		cJSON_AddItemToObject(fields, name, item);
		free(name);
	}
	text = cJSON_PrintUnformatted(root);
out:
	cJSON_Delete(root);
	return text;
}

/* The message line: JSON plus "\n" (see handler_msg.h). */
char *
handler_message_line(const struct message *m, size_t *len)
{
	char *json = handler_message_json(m), *line;
	size_t n;

	if (json == NULL)
		return NULL;
	n = strlen(json);
	line = realloc(json, n + 2);
	if (line == NULL) {
		free(json);
		return NULL;
	}
	line[n] = '\n';
	line[n + 1] = '\0';
	*len = n + 1;
	return line;
}
