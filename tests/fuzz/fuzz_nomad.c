/*
 * fuzz_nomad — the Nomad answer parsers of src/nomad.c (reply_classify,
 * status_parse, scale_parse) on arbitrary HTTP answers. nomad.c is included
 * so its static parsers can be called; the target links every other object.
 *
 * Input: byte 0 picks the call (even: STATUS, odd: SCALE) and bytes 1-2 the
 * HTTP status (200 most of the time); the rest is the body.
 */
#include "../../src/nomad.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const long statuses[] = { 200, 200, 200, 200, 400, 401, 403, 404, 409, 429, 500, 503, 204, 302 };

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nomad_call call;
	struct httpc_xfer x;
	char *body;

	if (size < 3)
		return 0;
	memset(&call, 0, sizeof(call));
	memset(&x, 0, sizeof(x));
	call.kind = data[0] & 1 ? NOMAD_CALL_SCALE : NOMAD_CALL_STATUS;
	call.job = "job";
	call.group = data[0] & 2 ? "worker" : "w";
	x.status = (data[1] & 0x80) ? (long)((data[1] << 8 | data[2]) % 1000) :
	    statuses[data[2] % ARRAY_LEN(statuses)];
	/* httpc hands the body NUL-terminated, with its length (it may hold NULs). */
	body = malloc(size - 3 + 1);
	if (body == NULL)
		return 0;
	memcpy(body, data + 3, size - 3);
	body[size - 3] = '\0';
	x.reply = body;
	x.reply_len = size - 3;
	reply_classify(&call, &x);
	/* Whatever the answer: a bounded, printable error and sane counts. */
	if (memchr(call.error, '\0', sizeof(call.error)) == NULL)
		abort();
	for (const char *p = call.error; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20)
			abort();
	if (call.result == NOMAD_OK && call.kind == NOMAD_CALL_STATUS &&
	    (call.desired < 0 || call.placed < 0 || call.running < 0))
		abort();
	if (memchr(call.eval_id, '\0', sizeof(call.eval_id)) == NULL)
		abort();
	free(body);
	return 0;
}
