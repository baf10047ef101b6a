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

/* The growing text of one message line. */
struct jb {
	char *p;
	size_t len, cap;
	bool oom;
};

static bool
jb_room(struct jb *b, size_t more)
{
	char *np;
	size_t cap;

	if (b->oom)
		return false;
	if (b->len + more < b->cap)
		return true;
	cap = b->cap ? b->cap : 256;
	while (cap <= b->len + more)
		cap *= 2;
	if ((np = realloc(b->p, cap)) == NULL) {
		b->oom = true;
		return false;
	}
	b->p = np;
	b->cap = cap;
	return true;
}

static void
jb_put(struct jb *b, const char *s, size_t n)
{
	if (jb_room(b, n)) {
		memcpy(b->p + b->len, s, n);
		b->len += n;
	}
}

static void
jb_lit(struct jb *b, const char *s)
{
	jb_put(b, s, strlen(s));
}

/* v in decimal (without printf: four of them per message). */
static void
jb_int(struct jb *b, int64_t v)
{
	char buf[24], *p = buf + sizeof(buf);
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

	do
		*--p = (char)('0' + u % 10);
	while ((u /= 10) != 0);
	if (v < 0)
		*--p = '-';
	jb_put(b, p, (size_t)(buf + sizeof(buf) - p));
}

/*
 * s[0..len) as a JSON string, escaped as cJSON prints it (", \, and the
 * control characters); each invalid UTF-8 byte and each NUL becomes U+FFFD.
 */
static void
jb_str(struct jb *b, const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;

	/* At most 6 bytes out per byte in (\u00XX), plus the quotes. */
	if (!jb_room(b, len * 6 + 2))
		return;
	b->p[b->len++] = '"';
	for (size_t i = 0; i < len;) {
		size_t n = utf8_seq(u + i, len - i);
		char *o = b->p + b->len;

		if (n == 0) {
			memcpy(o, "\xef\xbf\xbd", 3);
			b->len += 3;
			i++;
			continue;
		}
		if (n > 1) {
			memcpy(o, u + i, n);
			b->len += n;
			i += n;
			continue;
		}
		switch (u[i]) {
		case '"': memcpy(o, "\\\"", 2); b->len += 2; break;
		case '\\': memcpy(o, "\\\\", 2); b->len += 2; break;
		case '\b': memcpy(o, "\\b", 2); b->len += 2; break;
		case '\f': memcpy(o, "\\f", 2); b->len += 2; break;
		case '\n': memcpy(o, "\\n", 2); b->len += 2; break;
		case '\r': memcpy(o, "\\r", 2); b->len += 2; break;
		case '\t': memcpy(o, "\\t", 2); b->len += 2; break;
		default:
			if (u[i] < 0x20)
				b->len += (size_t)snprintf(o, 7, "\\u%04x", u[i]);
			else
				b->p[b->len++] = (char)u[i];
		}
		i++;
	}
	b->p[b->len++] = '"';
}

/* Standard base64 of s[0..len) as a JSON string. */
static void
jb_base64(struct jb *b, const char *s, size_t len)
{
	char *v = base64(s, len);

	if (v == NULL) {
		b->oom = true;
		return;
	}
	jb_str(b, v, strlen(v));
	free(v);
}

/* "name": (after a comma unless first) */
static void
jb_key(struct jb *b, const char *name, bool first)
{
	if (!first)
		jb_put(b, ",", 1);
	jb_str(b, name, strlen(name));
	jb_put(b, ":", 1);
}

/* Whether field i goes to the handler (a retry stage's bookkeeping stays in Redis). */
static bool
field_sent(const struct message *m, size_t i)
{
	return !(m->stage > 0 && redis_is_failure_field(m->names[i], m->name_lens[i]));
}

/*
 * The message as one JSON object, in this order: queue, stream, partition,
 * id, delivery, fields, meta (attempt, stage, first_failed_ms and
 * last_error once it failed, binary when a value went as base64).
 */
static void
encode(struct jb *b, const struct message *m)
{
	bool first = true, anybin = false;

	jb_lit(b, "{\"queue\":");
	jb_str(b, m->queue != NULL ? m->queue : "", m->queue != NULL ? strlen(m->queue) : 0);
	jb_lit(b, ",\"stream\":");
	jb_str(b, m->stream != NULL ? m->stream : "", m->stream != NULL ? strlen(m->stream) : 0);
	jb_lit(b, ",\"partition\":");
	jb_int(b, m->partition);
	jb_lit(b, ",\"id\":");
	jb_str(b, m->id, strlen(m->id));
	jb_lit(b, ",\"delivery\":");
	jb_int(b, m->delivery);
	jb_lit(b, ",\"fields\":{");
	for (size_t i = 0; i < m->nfields; i++) {
		bool bin;

		if (!field_sent(m, i))
			continue;
		bin = !utf8_valid(m->values[i], m->value_lens[i]);
		if (!first)
			jb_put(b, ",", 1);
		first = false;
		jb_str(b, m->names[i], m->name_lens[i]);
		jb_put(b, ":", 1);
		if (bin)
			jb_base64(b, m->values[i], m->value_lens[i]);
		else
			jb_str(b, m->values[i], m->value_lens[i]);
		anybin |= bin;
	}
	jb_lit(b, "},\"meta\":{\"attempt\":");
	jb_int(b, m->attempt > 0 ? m->attempt : 1);
	jb_lit(b, ",\"stage\":");
	jb_int(b, m->stage);
	if (m->first_failed_ms > 0) {
		jb_key(b, "first_failed_ms", false);
		jb_int(b, m->first_failed_ms);
	}
	if (m->last_error != NULL) {
		jb_key(b, "last_error", false);
		jb_str(b, m->last_error, strlen(m->last_error));
	}
	if (anybin) {
		first = true;
		jb_key(b, "binary", false);
		jb_put(b, "[", 1);
		for (size_t i = 0; i < m->nfields; i++) {
			if (!field_sent(m, i) || utf8_valid(m->values[i], m->value_lens[i]))
				continue;
			if (!first)
				jb_put(b, ",", 1);
			first = false;
			jb_str(b, m->names[i], m->name_lens[i]);
		}
		jb_put(b, "]", 1);
	}
	jb_put(b, "}}", 2);
}

/* The encoded message plus `tail` (a NUL-terminated string), or NULL; *len without the NUL. */
static char *
encode_with(const struct message *m, const char *tail, size_t *len)
{
	struct jb b = { 0 };

	encode(&b, m);
	jb_put(&b, tail, strlen(tail) + 1);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	if (len != NULL)
		*len = b.len - 1;
	return b.p;
}

char *
handler_message_json(const struct message *m)
{
	return encode_with(m, "", NULL);
}

/* The message line: JSON plus "\n" (see handler_msg.h). */
char *
handler_message_line(const struct message *m, size_t *len)
{
	return encode_with(m, "\n", len);
}
