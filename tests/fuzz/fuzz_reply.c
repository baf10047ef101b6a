/*
 * fuzz_reply — the pipe handler's reply reader of src/handler.c
 * (exchange_read, reply_parse) on arbitrary handler output. handler.c is
 * included so its static functions can be called; the target links every
 * other object.
 *
 * Input: byte 0 picks how many messages are in flight (1..16), byte 1 how
 * many of them were written (and whether the next one is half written);
 * the rest is what the handler wrote on its stdout, read through a real
 * pipe. Checked: each verdict taken is the one its reply line says, in
 * order, and no reply is taken for a message not yet written.
 */
#include "../../src/handler.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The verdict a line gives on its own, the way scaleno-worker(8) defines it: -1 if none. */
static int
expected(const uint8_t *line, size_t len)
{
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (memchr(line, '\0', len) != NULL)
		return -1;
	if (len == 2 && memcmp(line, "ok", 2) == 0)
		return HANDLER_OK;
	if (len >= 2 && memcmp(line, "ok", 2) == 0 && line[2] == ' ')
		return HANDLER_OK;
	if (len >= 5 && memcmp(line, "retry", 5) == 0 && (len == 5 || line[5] == ' '))
		return HANDLER_RETRY;
	if (len >= 4 && memcmp(line, "fail", 4) == 0 && (len == 4 || line[4] == ' '))
		return HANDLER_FAIL;
	return -1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct handler *h;
	struct exchange x;
	struct handler_result res[16];
	const uint8_t *out, *p;
	size_t nout, at = 0, k;
	int fds[2], rc;

	if (size < 2 || size > 60000)	/* the whole output fits the pipe */
		return 0;
	h = calloc(1, sizeof(*h));
	if (h == NULL || pipe2(fds, O_NONBLOCK | O_CLOEXEC) == -1)
		abort();
	proc_init(&h->p);
	h->p.out_fd = fds[0];
	h->queue = (char *)"q";
	memset(&x, 0, sizeof(x));
	memset(res, 0, sizeof(res));
	x.n = (size_t)(data[0] % 16) + 1;
	x.s = calloc(x.n, sizeof(*x.s));
	x.wi = (size_t)(data[1] & 0x7f) % (x.n + 1);
	x.woff = x.wi < x.n && (data[1] & 0x80) ? 1 : 0;
	out = data + 2;
	nout = size - 2;
	if (x.s == NULL || (nout > 0 && write(fds[1], out, nout) != (ssize_t)nout))
		abort();
	close(fds[1]);
	rc = exchange_read(h, &x, res, &at);
	if (rc == IO_DONE && x.nrep != x.n)
		abort();
	if (x.nrep > x.wi + (x.woff > 0))
		abort();	/* a reply taken for a message never written */
	/* Every reply taken is the verdict of the matching line, in order. */
	p = out;
	for (k = 0; k < x.nrep; k++) {
		const uint8_t *nl = memchr(p, '\n', nout - (size_t)(p - out));

		if (nl == NULL || expected(p, (size_t)(nl - p)) != (int)res[k].outcome)
			abort();
		for (const char *c = res[k].error; *c != '\0'; c++)
			if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
				abort();
		p = nl + 1;
	}
	if (rc != IO_DONE && at > x.n)
		abort();
	close(fds[0]);
	free(x.s);
	free(h);
	return 0;
}
