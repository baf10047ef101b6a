/*
 * example-pipe — a handler for scaleno-worker(8)'s "pipe" protocol.
 *
 * scaleno starts it once per consumer and writes one JSON message per line
 * on its stdin; it answers one line per message on stdout, in order:
 * "ok", "retry <reason>" (may succeed later) or "fail <reason>" (never
 * will). Diagnostics go to stderr, never to stdout. It exits when stdin
 * closes.
 *
 * This one "resizes an image": it wants the fields "url" and "width".
 *
 *   worker: { command = [ "/usr/local/libexec/example-pipe" ]; protocol = "pipe"; };
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

/* The work itself; returns 0, or fills why and returns 1 (retry) or 2 (fail). */
static int
process(const cJSON *fields, char *why, size_t len)
{
	const cJSON *url = cJSON_GetObjectItemCaseSensitive(fields, "url");
	const cJSON *width = cJSON_GetObjectItemCaseSensitive(fields, "width");
	long w;

	if (!cJSON_IsString(url) || !cJSON_IsString(width)) {
		snprintf(why, len, "fields url and width are required");
		return 2;
	}
	w = strtol(width->valuestring, NULL, 10);
	if (w <= 0 || w > 10000) {
		snprintf(why, len, "width must be 1..10000");
		return 2;
	}
	if (strncmp(url->valuestring, "http", 4) != 0) {
		snprintf(why, len, "url is not http(s)");
		return 2;
	}
	fprintf(stderr, "example-pipe: would resize an image to %ld px\n", w);
	return 0;
}

int
main(void)
{
	char *line = NULL;
	size_t cap = 0;

	/* Replies must reach scaleno at once: line-buffer stdout. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	while (getline(&line, &cap, stdin) > 0) {
		cJSON *msg = cJSON_Parse(line);
		char why[200];
		int rc;

		if (msg == NULL) {
			printf("fail message is not JSON\n");
			continue;
		}
		rc = process(cJSON_GetObjectItemCaseSensitive(msg, "fields"), why, sizeof(why));
		cJSON_Delete(msg);
		if (rc == 0)
			printf("ok\n");
		else
			printf("%s %s\n", rc == 1 ? "retry" : "fail", why);
	}
	free(line);
	return 0;
}
