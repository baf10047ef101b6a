/*
 * fuzz_encode — handler_message_json, the message as the handler protocols
 * send it, on arbitrary field bytes. Input: names and values alternate,
 * split by the byte pair "\xff\xfe", so they may hold any other bytes
 * (NUL, invalid UTF-8, quotes, newlines). Checked: the text is one line of
 * valid JSON with the id, the delivery count and every field in order,
 * and a value that was valid UTF-8 without NUL travels unchanged.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "handler.h"

#define MAX_FIELDS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *parts[2 * MAX_FIELDS], *names[MAX_FIELDS], *values[MAX_FIELDS], *text;
	size_t plen[2 * MAX_FIELDS], nlen[MAX_FIELDS], vlen[MAX_FIELDS], np = 0, nf;
	struct message m;
	const uint8_t *p = data, *end = data + size;
	cJSON *root, *fields, *id, *del;

	while (np < 2 * MAX_FIELDS && p <= end) {
		const uint8_t *sep = memmem(p, (size_t)(end - p), "\xff\xfe", 2);
		size_t n = sep != NULL ? (size_t)(sep - p) : (size_t)(end - p);

		/* Exact-size copies, so any read past a field is caught. */
		parts[np] = malloc(n > 0 ? n : 1);
		if (parts[np] == NULL)
			abort();
		memcpy(parts[np], p, n);
		plen[np++] = n;
		if (sep == NULL)
			break;
		p = sep + 2;
	}
	nf = np / 2;
	for (size_t i = 0; i < nf; i++) {
		names[i] = parts[2 * i];
		nlen[i] = plen[2 * i];
		values[i] = parts[2 * i + 1];
		vlen[i] = plen[2 * i + 1];
	}
	memset(&m, 0, sizeof(m));
	m.queue = "q";
	m.stream = "scaleno:q";
	snprintf(m.id, sizeof(m.id), "%zu-%zu", size, nf);
	m.delivery = (int64_t)size * 1000003;
	m.nfields = nf;
	m.names = names;
	m.name_lens = nlen;
	m.values = values;
	m.value_lens = vlen;
	text = handler_message_json(&m);
	if (text == NULL)
		abort();
	if (strchr(text, '\n') != NULL)
		abort();	/* one line: the pipe protocol splits on newlines */
	root = cJSON_Parse(text);
	fields = cJSON_GetObjectItemCaseSensitive(root, "fields");
	id = cJSON_GetObjectItemCaseSensitive(root, "id");
	del = cJSON_GetObjectItemCaseSensitive(root, "delivery");
	if (!cJSON_IsObject(root) || !cJSON_IsObject(fields) || !cJSON_IsString(id) ||
	    strcmp(id->valuestring, m.id) != 0 || !cJSON_IsNumber(del) ||
	    (int64_t)del->valuedouble != m.delivery)
		abort();
	if ((size_t)cJSON_GetArraySize(fields) != nf)
		abort();	/* every field is there (duplicates included, in order) */
	/* A value without NUL and already valid UTF-8 travels unchanged. */
	for (size_t i = 0; i < nf; i++) {
		cJSON *v = cJSON_GetArrayItem(fields, (int)i);

		if (!cJSON_IsString(v))
			abort();
		if (memchr(values[i], '\0', vlen[i]) == NULL && strlen(v->valuestring) == vlen[i] &&
		    memcmp(v->valuestring, values[i], vlen[i]) != 0)
			abort();
	}
	cJSON_Delete(root);
	free(text);
	for (size_t i = 0; i < np; i++)
		free(parts[i]);
	return 0;
}
