/*
 * httpc.c — see include/httpc.h. The batch engine keeps a ring of
 * transfers ready for an attempt, starts at most HTTPC_MAX_INFLIGHT at once
 * (more would only queue inside curl for the host's connections, each
 * holding an easy handle and its buffers), and reuses idle easy handles
 * and connections across batches.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "httpc.h"
#include "util.h"

/* Idle easy handles kept between batches. */
#define HTTPC_POOL_MAX		64
#define HTTPC_MAX_INFLIGHT	HTTPC_POOL_MAX
/* An attempt's connect gets a third of its time when that is at least this much. */
#define HTTPC_MIN_CONNECT_MS	1000
/* The batch loop looks at its timers at least this often. */
#define HTTPC_MAX_WAIT_MS	1000

struct httpc {
	CURLM *multi;
	char *ca_file, *cert_file, *key_file;
	struct curl_slist *connect_to;
	size_t reply_max;
	CURL *pool[HTTPC_POOL_MAX];
	int npool;
};

/* The engine's side of one transfer. */
struct xfer_state {
	struct httpc_xfer *x;
	size_t reply_max;
	CURL *easy;		/* non-NULL while an attempt is in flight */
	char *reply;
	size_t reply_len, reply_cap;
	bool too_big;
	bool waiting;		/* a retry waiting out its delay */
	int64_t next_start_ms;
	char curl_err[CURL_ERROR_SIZE];
};

static bool curl_ready;

static int
httpc_global_init(void)
{
	if (!curl_ready) {
		if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
			return -1;
		curl_ready = true;
	}
	return 0;
}

const char *
httpc_version(void)
{
	return curl_version_info(CURLVERSION_NOW)->version;
}

int
httpc_url_check(const char *url)
{
	CURLU *u = curl_url();
	CURLUcode rc;

	if (u == NULL)
		return -1;
	rc = curl_url_set(u, CURLUPART_URL, url, 0);
	curl_url_cleanup(u);
	return rc == CURLUE_OK ? 0 : -1;
}

int
httpc_url_server_name(const char *base_url, const char *name, char **url, char **connect_to)
{
	CURLU *u = curl_url();
	char *host = NULL, *port = NULL, *out = NULL;
	int rc = -1;

	*url = *connect_to = NULL;
	if (u == NULL || name == NULL || *name == '\0' || strpbrk(name, ":/@[]?#% \t\r\n") != NULL)
		goto done;
	if (curl_url_set(u, CURLUPART_URL, base_url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
	    curl_url_set(u, CURLUPART_HOST, name, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_URL, &out, 0) != CURLUE_OK)
		goto done;
	/* An IPv6 host keeps its brackets in CONNECT_TO, as in a URL. */
	if (asprintf(connect_to, "%s:%s:%s:%s", name, port, host, port) < 0) {
		*connect_to = NULL;
		goto done;
	}
	if ((*url = strdup(out)) == NULL) {
		free(*connect_to);
		*connect_to = NULL;
		goto done;
	}
	rc = 0;
done:
	curl_free(host);
	curl_free(port);
	curl_free(out);
	curl_url_cleanup(u);
	return rc;
}

void
httpc_escape(struct strbuf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    *p == '-' || *p == '.' || *p == '_' || *p == '~')
			strbuf_printf(b, "%c", *p);
		else
			strbuf_printf(b, "%%%c%c", hex[*p >> 4], hex[*p & 15]);
	}
}

/* A header list is curl's own list behind an opaque name. */
struct httpc_headers *
httpc_headers_new(const char *const *lines, size_t n)
{
	struct curl_slist *list = NULL;

	for (size_t i = 0; i < n; i++) {
		struct curl_slist *t = curl_slist_append(list, lines[i]);

		if (t == NULL) {
			curl_slist_free_all(list);
			return NULL;
		}
		list = t;
	}
	return (struct httpc_headers *)(void *)list;
}

void
httpc_headers_free(struct httpc_headers *h)
{
	curl_slist_free_all((struct curl_slist *)(void *)h);
}

struct httpc *
httpc_new(const struct httpc_conf *conf, char *err, size_t errlen)
{
	struct httpc *c;

	if (httpc_global_init() == -1) {
		snprintf(err, errlen, "curl_global_init failed");
		return NULL;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		goto oom;
	c->reply_max = conf->reply_max;
	if ((conf->ca_file != NULL && (c->ca_file = strdup(conf->ca_file)) == NULL) ||
	    (conf->cert_file != NULL && (c->cert_file = strdup(conf->cert_file)) == NULL) ||
	    (conf->key_file != NULL && (c->key_file = strdup(conf->key_file)) == NULL) ||
	    (conf->connect_to != NULL && (c->connect_to = curl_slist_append(NULL, conf->connect_to)) == NULL))
		goto oom;
	if ((c->multi = curl_multi_init()) == NULL) {
		snprintf(err, errlen, "curl_multi_init failed");
		httpc_free(c);
		return NULL;
	}
	curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)conf->host_conns);
	/* The connection cache outlives the easy handles: reuse across batches. */
	curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)conf->host_conns);
	return c;
oom:
	snprintf(err, errlen, "out of memory creating the HTTP client");
	httpc_free(c);
	return NULL;
}

void
httpc_free(struct httpc *c)
{
	if (c == NULL)
		return;
	for (int i = 0; i < c->npool; i++)
		curl_easy_cleanup(c->pool[i]);
	if (c->multi != NULL)
		curl_multi_cleanup(c->multi);
	free(c->ca_file);
	free(c->cert_file);
	free(c->key_file);
	curl_slist_free_all(c->connect_to);
	free(c);
}

static CURL *
easy_get(struct httpc *c)
{
	if (c->npool > 0)
		return c->pool[--c->npool];
	return curl_easy_init();
}

static void
easy_put(struct httpc *c, CURL *e)
{
	if (c->npool < HTTPC_POOL_MAX) {
		curl_easy_reset(e);
		c->pool[c->npool++] = e;
	} else {
		curl_easy_cleanup(e);
	}
}

static size_t
reply_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct xfer_state *st = userdata;
	size_t n = size * nmemb;
	char *p;

	if (n > st->reply_max || st->reply_len + n > st->reply_max) {
		st->too_big = true;
		return 0;
	}
	if (st->reply_len + n + 1 > st->reply_cap) {
		size_t cap = st->reply_cap ? st->reply_cap : 4096;

		while (cap < st->reply_len + n + 1)
			cap *= 2;
		if ((p = realloc(st->reply, cap)) == NULL)
			return 0;
		st->reply = p;
		st->reply_cap = cap;
	}
	memcpy(st->reply + st->reply_len, ptr, n);
	st->reply_len += n;
	st->reply[st->reply_len] = '\0';
	return n;
}

/* Options every request gets: URL, HTTP(S) only, no signals, the time limits. */
static CURLcode
easy_common(CURL *e, const char *url, const char *body, int64_t timeout_ms, int64_t connect_ms)
{
	CURLcode rc = CURLE_OK;

#define SET(opt, val) do { if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val); } while (0)
	SET(CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
	SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_USERAGENT, "scaleno/" SCALENO_VERSION);
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)connect_ms);
	SET(CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	if (body != NULL)
		SET(CURLOPT_POSTFIELDS, body);
	else
		SET(CURLOPT_HTTPGET, 1L);
#undef SET
	return rc;
}

/* Start one attempt of st with remaining_ms as its time limit. 0, or -1 with the failure in st->x. */
static int
attempt_start(struct httpc *c, struct xfer_state *st, int64_t remaining_ms)
{
	struct httpc_xfer *x = st->x;
	int64_t connect_ms = remaining_ms / 3 > HTTPC_MIN_CONNECT_MS ? remaining_ms / 3 : remaining_ms;
	CURLcode rc;
	CURL *e;

	x->status = 0;
	x->retryable = false;
	if ((e = easy_get(c)) == NULL) {
		x->fail = HTTPC_FAIL_INTERNAL;
		snprintf(x->error, sizeof(x->error), "curl_easy_init failed");
		return -1;
	}
	st->reply_len = 0;
	st->too_big = false;
	if (st->reply != NULL)
		st->reply[0] = '\0';
	st->curl_err[0] = '\0';
	rc = easy_common(e, x->url, x->body, remaining_ms, connect_ms);
#define SET(opt, val) do { if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val); } while (0)
	SET(CURLOPT_ACCEPT_ENCODING, "");
	SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)st->reply_max);
	SET(CURLOPT_WRITEFUNCTION, reply_write);
	SET(CURLOPT_WRITEDATA, st);
	SET(CURLOPT_ERRORBUFFER, st->curl_err);
	SET(CURLOPT_PRIVATE, st);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	if (x->headers != NULL)
		SET(CURLOPT_HTTPHEADER, (const struct curl_slist *)(const void *)x->headers);
	if (c->ca_file != NULL && *c->ca_file != '\0')
		SET(CURLOPT_CAINFO, c->ca_file);
	if (c->cert_file != NULL && *c->cert_file != '\0')
		SET(CURLOPT_SSLCERT, c->cert_file);
	if (c->key_file != NULL && *c->key_file != '\0')
		SET(CURLOPT_SSLKEY, c->key_file);
	if (c->connect_to != NULL)
		SET(CURLOPT_CONNECT_TO, c->connect_to);
#undef SET
	if (rc != CURLE_OK || curl_multi_add_handle(c->multi, e) != CURLM_OK) {
		x->fail = HTTPC_FAIL_INTERNAL;
		snprintf(x->error, sizeof(x->error), "%s", rc != CURLE_OK ?
		    curl_easy_strerror(rc) : "curl_multi_add_handle failed");
		easy_put(c, e);
		return -1;
	}
	st->easy = e;
	x->attempts++;
	return 0;
}

static bool
curl_code_retryable(CURLcode rc)
{
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_GOT_NOTHING:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
		return true;
	default:
		return false;
	}
}

static enum httpc_fail
curl_code_fail(CURLcode rc, bool too_big)
{
	switch (rc) {
	case CURLE_OK:
		return HTTPC_FAIL_NONE;
	case CURLE_OPERATION_TIMEDOUT:
		return HTTPC_FAIL_TIMEOUT;
	case CURLE_WRITE_ERROR:
		return too_big ? HTTPC_FAIL_TOO_BIG : HTTPC_FAIL_INTERNAL;
	case CURLE_FILESIZE_EXCEEDED:
		return HTTPC_FAIL_TOO_BIG;
	case CURLE_PARTIAL_FILE:
	case CURLE_BAD_CONTENT_ENCODING:
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_TOO_MANY_REDIRECTS:
		return HTTPC_FAIL_BAD_REPLY;
	case CURLE_OUT_OF_MEMORY:
		return HTTPC_FAIL_INTERNAL;
	default:
		return HTTPC_FAIL_CONNECT;
	}
}

/* An attempt ended with rc: fill in its result and hand it to the caller's callback. */
static int64_t
attempt_done(struct httpc *c, struct xfer_state *st, CURLcode rc, int64_t deadline,
    httpc_done_fn done, void *arg)
{
	struct httpc_xfer *x = st->x;
	int64_t delay;

	x->fail = curl_code_fail(rc, st->too_big);
	x->retryable = curl_code_retryable(rc);
	x->status = 0;
	x->error[0] = '\0';
	if (rc == CURLE_OK)
		curl_easy_getinfo(st->easy, CURLINFO_RESPONSE_CODE, &x->status);
	else
		snprintf(x->error, sizeof(x->error), "%s",
		    st->curl_err[0] != '\0' ? st->curl_err : curl_easy_strerror(rc));
	curl_multi_remove_handle(c->multi, st->easy);
	easy_put(c, st->easy);
	st->easy = NULL;
	x->reply = st->reply;
	x->reply_len = st->reply_len;
	delay = done(arg, x, deadline);
	x->reply = NULL;
	return delay;
}

void
httpc_run(struct httpc *c, struct httpc_xfer *xs, size_t n, int64_t deadline_ms,
    httpc_done_fn done, void *arg)
{
	struct xfer_state *states;
	size_t *ready, qhead = 0, qtail = 0, pending = n, inflight = 0, nwaiting = 0;
	int running, left;
	CURLMsg *msg;

	for (size_t i = 0; i < n; i++) {
		xs[i].attempts = 0;
		xs[i].done = xs[i].cut = false;
	}
	states = calloc(n ? n : 1, sizeof(*states));
	ready = calloc(n ? n : 1, sizeof(*ready));
	if (states == NULL || ready == NULL) {
		for (size_t i = 0; i < n; i++) {
			xs[i].fail = HTTPC_FAIL_INTERNAL;
			snprintf(xs[i].error, sizeof(xs[i].error), "out of memory starting the batch");
			xs[i].done = true;
		}
		free(states);
		free(ready);
		return;
	}
	/* A ring of transfers ready for an attempt: each sits in it at most once. */
	for (size_t i = 0; i < n; i++) {
		states[i].x = &xs[i];
		states[i].reply_max = xs[i].reply_max > 0 ? xs[i].reply_max : c->reply_max;
		ready[qtail++ % n] = i;
	}
	/* Bounded by the deadline: every wait below ends at it at the latest. */
	while (pending > 0) {
		int64_t now = util_now_ms(), wake = deadline_ms;

		if (now >= deadline_ms)
			break;
		/* Retries whose delay has passed join the ready ring (rare: scan only then). */
		for (size_t i = 0; nwaiting > 0 && i < n; i++) {
			struct xfer_state *st = &states[i];

			if (!st->waiting)
				continue;
			if (st->next_start_ms <= now) {
				st->waiting = false;
				nwaiting--;
				ready[qtail++ % n] = i;
			} else if (st->next_start_ms < wake)
				wake = st->next_start_ms;
		}
		while (inflight < HTTPC_MAX_INFLIGHT && qhead < qtail) {
			struct xfer_state *st = &states[ready[qhead++ % n]];

			if (attempt_start(c, st, deadline_ms - now) == 0)
				inflight++;
			else {
				(void)done(arg, st->x, deadline_ms);
				st->x->done = true;
				pending--;
			}
		}
		curl_multi_perform(c->multi, &running);
		while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
			struct xfer_state *st;
			void *priv = NULL;
			int64_t delay;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
			st = priv;
			if (st == NULL || st->easy != msg->easy_handle)
				continue;
			inflight--;
			delay = attempt_done(c, st, msg->data.result, deadline_ms, done, arg);
			if (delay < 0) {
				st->x->done = true;
				pending--;
			} else {
				st->waiting = true;
				nwaiting++;
				st->next_start_ms = util_now_ms() + delay;
				if (st->next_start_ms < wake)
					wake = st->next_start_ms;
			}
		}
		if (pending == 0)
			break;
		now = util_now_ms();
		/* Free slots and transfers ready for them: go round again at once. */
		if (inflight < HTTPC_MAX_INFLIGHT && qhead < qtail)
			continue;
		if (wake > now)
			curl_multi_poll(c->multi, NULL, 0,
			    (int)(wake - now > HTTPC_MAX_WAIT_MS ? HTTPC_MAX_WAIT_MS : wake - now), NULL);
	}
	for (size_t i = 0; i < n; i++) {
		struct xfer_state *st = &states[i];

		if (!st->x->done && (st->easy != NULL || st->x->attempts == 0))
			st->x->cut = true;
		if (st->easy != NULL) {
			curl_multi_remove_handle(c->multi, st->easy);
			easy_put(c, st->easy);
		}
		free(st->reply);
	}
	free(states);
	free(ready);
}

/* Where httpc_request puts the reply: up to max bytes into b; b NULL: nowhere. */
struct collect {
	struct strbuf *b;
	size_t max;
};

static size_t
collect_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct collect *col = userdata;
	size_t n = size * nmemb;

	if (col->b == NULL)
		return n;
	if (col->b->len + n > col->max)
		return 0;
	strbuf_printf(col->b, "%.*s", (int)n, ptr);
	return col->b->oom ? 0 : n;
}

int
httpc_request(const struct httpc_request *r, long *status, struct strbuf *reply,
    char *err, size_t errlen)
{
	struct collect col = { r->reply_max > 0 ? reply : NULL, r->reply_max };
	struct curl_slist *hdr = NULL;
	char line[128];
	CURLcode rc;
	CURL *e;

	*status = 0;
	if (httpc_global_init() == -1 || (e = curl_easy_init()) == NULL) {
		snprintf(err, errlen, "cannot initialise libcurl");
		return -1;
	}
	rc = easy_common(e, r->url, r->body, r->timeout_ms, r->connect_timeout_ms);
	if (rc == CURLE_OK && r->content_type != NULL) {
		snprintf(line, sizeof(line), "Content-Type: %s", r->content_type);
		if ((hdr = curl_slist_append(NULL, line)) == NULL)
			rc = CURLE_OUT_OF_MEMORY;
		else
			rc = curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdr);
	}
	if (rc == CURLE_OK)
		rc = curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect_write);
	if (rc == CURLE_OK)
		rc = curl_easy_setopt(e, CURLOPT_WRITEDATA, &col);
	if (rc == CURLE_OK)
		rc = curl_easy_perform(e);
	if (rc == CURLE_OK)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
	else
		snprintf(err, errlen, "%s", curl_easy_strerror(rc));
	curl_slist_free_all(hdr);
	curl_easy_cleanup(e);
	return rc == CURLE_OK ? 0 : -1;
}
