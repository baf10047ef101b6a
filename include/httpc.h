/*
 * httpc — the HTTP client transport (the only module that includes curl):
 * a client that runs batches of requests concurrently on one connection
 * cache, with retries scheduled by the caller, TLS files and time limits
 * applied to every attempt; and one blocking request for the simple cases
 * (an alert webhook, `scaleno status` asking the agent). What a request
 * means (URLs, JSON, how a status is classified) is the caller's.
 */
#ifndef SCALENO_HTTPC_H
#define SCALENO_HTTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct strbuf;

/* Why an attempt got no HTTP answer (status 0). */
enum httpc_fail {
	HTTPC_FAIL_NONE = 0,	/* an HTTP answer came: see status */
	HTTPC_FAIL_TIMEOUT,
	HTTPC_FAIL_CONNECT,	/* refused, DNS, TLS, reset: the server could not be talked to */
	HTTPC_FAIL_TOO_BIG,	/* the reply was larger than the client's reply_max */
	HTTPC_FAIL_BAD_REPLY,	/* truncated, badly encoded, not HTTP */
	HTTPC_FAIL_INTERNAL,	/* out of memory, setup failure */
};

struct httpc_conf {
	const char *ca_file, *cert_file, *key_file;	/* TLS; NULL or "": the defaults */
	const char *connect_to;	/* "HOST:PORT:CONNECT-HOST:CONNECT-PORT" (curl's CONNECT_TO), or NULL */
	int host_conns;		/* connections to one host at once, kept between batches */
	size_t reply_max;	/* a longer reply fails HTTPC_FAIL_TOO_BIG */
};

struct httpc;
struct httpc_headers;

/*
 * A client (strings copied). The first one runs curl's global set-up, so
 * create it before starting threads. NULL with err filled on failure.
 */
struct httpc *httpc_new(const struct httpc_conf *conf, char *err, size_t errlen);
void httpc_free(struct httpc *c);

/* A header list from n "Name: value" lines (copied). NULL when out of memory. */
struct httpc_headers *httpc_headers_new(const char *const *lines, size_t n);
void httpc_headers_free(struct httpc_headers *h);

/* One request of a batch and the result of its last attempt. */
struct httpc_xfer {
	const char *url;
	const char *body;		/* POST this; NULL: GET */
	const struct httpc_headers *headers;
	size_t reply_max;		/* a longer reply fails HTTPC_FAIL_TOO_BIG; 0: the client's */
	void *arg;			/* the caller's */

	int attempts;			/* attempts started */
	long status;			/* HTTP status of the last attempt; 0 when it failed */
	enum httpc_fail fail;
	bool retryable;			/* the failure may pass (timeout, refused, reset) */
	char error[256];		/* the failure in words */
	const char *reply;		/* the body (NUL-terminated), during the callback only; may be NULL */
	size_t reply_len;

	bool done;			/* after httpc_run: the callback ended it */
	bool cut;			/* after httpc_run: the deadline came with no answer */
};

/*
 * Called when an attempt of x ended (an answer or a failure). Returns the
 * delay in ms before another attempt, or -1 when x is done.
 */
typedef int64_t (*httpc_done_fn)(void *arg, struct httpc_xfer *x, int64_t deadline_ms);

/*
 * Run the n transfers concurrently (a bounded number in flight at once)
 * until each is done or the monotonic deadline_ms comes; every attempt gets
 * what is left of the time, its connect a third of it. Transfers neither
 * done nor in a retry's wait at the deadline are marked cut.
 */
void httpc_run(struct httpc *c, struct httpc_xfer *xs, size_t n, int64_t deadline_ms,
    httpc_done_fn done, void *arg);

/* A blocking request, for callers that need one answer and no client. */
struct httpc_request {
	const char *url;
	const char *body;		/* POST this; NULL: GET */
	const char *content_type;	/* of the body */
	int64_t timeout_ms, connect_timeout_ms;
	size_t reply_max;		/* 0: the reply is discarded */
};

/*
 * Perform r: 0 with *status set (and the reply appended to reply when
 * r->reply_max > 0), or -1 with err filled when no HTTP answer came.
 */
int httpc_request(const struct httpc_request *r, long *status, struct strbuf *reply,
    char *err, size_t errlen);

/* 0 when url parses as a URL; -1 otherwise. */
int httpc_url_check(const char *url);

/*
 * For a TLS server name other than base_url's host (like NOMAD_TLS_SERVER_NAME):
 * *url is base_url with its host replaced by name, *connect_to the line for
 * httpc_conf.connect_to that still connects to base_url's host and port, so
 * the certificate is checked (and SNI sent) for name. 0, or -1 when base_url
 * or name is not usable. The caller frees both.
 */
int httpc_url_server_name(const char *base_url, const char *name, char **url, char **connect_to);

/* Append s percent-encoded (all but A-Z a-z 0-9 - . _ ~) to b. */
void httpc_escape(struct strbuf *b, const char *s);

/* The libcurl version, for `scaleno version`. */
const char *httpc_version(void);

#endif
