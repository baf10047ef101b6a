/*
 * nomad — the Nomad HTTP API client: GET/POST /v1/job/:job/scale, run in
 * concurrent batches on one curl multi handle. Replies are parsed with
 * cJSON; every reply is distrusted (wrong types, huge numbers, truncation,
 * oversized bodies all end as NOMAD_BAD_REPLY, never a crash).
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "log.h"
#include "nomad.h"
#include "util.h"

/* Replies above this are refused: a scale status is a few KiB at most. */
#define NOMAD_REPLY_MAX		(4u * 1024 * 1024)
/* One batch issues at most this many HTTP attempts per call. */
#define NOMAD_MAX_ATTEMPTS	4
#define NOMAD_BACKOFF_BASE_MS	100
/* Concurrent connections to the one Nomad address; more calls queue in curl. */
#define NOMAD_HOST_CONNS	16
/* Idle easy handles kept between batches. */
#define NOMAD_POOL_MAX		64
/*
 * Attempts handed to curl at once. More would only queue inside curl for the
 * NOMAD_HOST_CONNS connections, each holding an easy handle and its buffers:
 * a batch of 10,000 calls must not cost 10,000 handles.
 */
#define NOMAD_MAX_INFLIGHT	NOMAD_POOL_MAX
/* A retry needs at least this much of the batch left to be worth starting. */
#define NOMAD_MIN_ATTEMPT_MS	50
#define NOMAD_BODY_SHOWN	160

#define DEPLOYMENT_ACTIVE_TEXT	"job scaling blocked due to active deployment"

struct nomad_client {
	CURLM *multi;
	char *address;		/* no trailing slash */
	char *namespace, *region;
	char *ca_file, *cert_file, *key_file;
	int64_t timeout_ms;
	struct curl_slist *get_headers, *post_headers;	/* hold the token: never log */
	CURL *pool[NOMAD_POOL_MAX];
	int npool;
};

/* Per-call state for one batch. */
struct call_state {
	struct nomad_call *call;
	CURL *easy;		/* non-NULL while an attempt is in flight */
	char *url;
	char *body;		/* SCALE request body */
	char *reply;
	size_t reply_len, reply_cap;
	bool reply_too_big;
	bool done;
	bool waiting;		/* a retry waiting out its backoff */
	int64_t next_start_ms;
	char curl_err[CURL_ERROR_SIZE];
};

static bool curl_ready;

void
nomad_call_init(struct nomad_call *c, enum nomad_call_kind kind, const struct scale_conf *sc)
{
	memset(c, 0, sizeof(*c));
	c->kind = kind;
	c->job = sc->job;
	c->group = sc->group;
	c->namespace = sc->namespace;
}

const char *
nomad_result_name(enum nomad_result r)
{
	switch (r) {
	case NOMAD_OK:			return "ok";
	case NOMAD_DEPLOYMENT_ACTIVE:	return "deployment_active";
	case NOMAD_NOT_FOUND:		return "not_found";
	case NOMAD_FORBIDDEN:		return "forbidden";
	case NOMAD_BAD_REQUEST:		return "bad_request";
	case NOMAD_SERVER_ERROR:	return "server_error";
	case NOMAD_TIMEOUT:		return "timeout";
	case NOMAD_CONNECT:		return "connect";
	case NOMAD_BAD_REPLY:		return "bad_reply";
	case NOMAD_INTERNAL:		return "internal";
	}
	return "unknown";
}

bool
nomad_result_transient(enum nomad_result r)
{
	switch (r) {
	case NOMAD_DEPLOYMENT_ACTIVE:
	case NOMAD_SERVER_ERROR:
	case NOMAD_TIMEOUT:
	case NOMAD_CONNECT:
	case NOMAD_BAD_REPLY:
	case NOMAD_INTERNAL:
		return true;
	case NOMAD_OK:
	case NOMAD_NOT_FOUND:
	case NOMAD_FORBIDDEN:
	case NOMAD_BAD_REQUEST:
		return false;
	}
	return false;
}

/* A header line must not let a value smuggle in another header. */
static bool
header_safe(const char *s)
{
	return strpbrk(s, "\r\n") == NULL;
}

static struct curl_slist *
headers_build(const char *token, bool json_body)
{
	struct curl_slist *h = NULL, *t;
	struct strbuf line = { 0 };

	if ((h = curl_slist_append(NULL, "Accept: application/json")) == NULL)
		return NULL;
	/* Small bodies; a 100-continue round trip only adds latency. */
	if ((t = curl_slist_append(h, "Expect:")) == NULL)
		goto fail;
	h = t;
	if (json_body) {
		if ((t = curl_slist_append(h, "Content-Type: application/json")) == NULL)
			goto fail;
		h = t;
	}
	if (token != NULL && *token != '\0') {
		strbuf_printf(&line, "X-Nomad-Token: %s", token);
		if (line.oom || (t = curl_slist_append(h, line.s)) == NULL)
			goto fail;
		h = t;
		/* Don't leave the secret lying around in freed heap memory. */
		memset(line.s, 0, line.len);
		strbuf_free(&line);
	}
	return h;
fail:
	if (line.s != NULL)
		memset(line.s, 0, line.len);
	strbuf_free(&line);
	curl_slist_free_all(h);
	return NULL;
}

/* Catch a malformed address at start-up rather than on every call. */
static int
url_check(const char *addr, char *err, size_t errlen)
{
	CURLU *u = curl_url();
	CURLUcode rc;

	if (u == NULL) {
		snprintf(err, errlen, "out of memory creating the nomad client");
		return -1;
	}
	rc = curl_url_set(u, CURLUPART_URL, addr, 0);
	curl_url_cleanup(u);
	if (rc != CURLUE_OK) {
		snprintf(err, errlen, "nomad address \"%.100s\" is not a valid URL", addr);
		return -1;
	}
	return 0;
}

struct nomad_client *
nomad_client_new(const struct nomad_conf *conf, char *err, size_t errlen)
{
	struct nomad_client *c = NULL;
	const char *addr = conf->address != NULL ? conf->address : "";
	size_t alen;

	if (strncmp(addr, "http://", 7) != 0 && strncmp(addr, "https://", 8) != 0) {
		snprintf(err, errlen, "nomad address \"%.100s\" must start with http:// or https://", addr);
		return NULL;
	}
	if (!header_safe(addr) || (conf->token != NULL && !header_safe(conf->token))) {
		snprintf(err, errlen, "nomad %s contains a line break",
		    header_safe(addr) ? "token" : "address");
		return NULL;
	}
	if (!curl_ready) {
		if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK) {
			snprintf(err, errlen, "curl_global_init failed");
			return NULL;
		}
		curl_ready = true;
	}
	if (url_check(addr, err, errlen) < 0)
		return NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		goto oom;
	if ((c->address = strdup(addr)) == NULL)
		goto oom;
	alen = strlen(c->address);
	while (alen > 0 && c->address[alen - 1] == '/')
		c->address[--alen] = '\0';
	if ((conf->namespace != NULL && (c->namespace = strdup(conf->namespace)) == NULL) ||
	    (conf->region != NULL && (c->region = strdup(conf->region)) == NULL) ||
	    (conf->ca_file != NULL && (c->ca_file = strdup(conf->ca_file)) == NULL) ||
	    (conf->cert_file != NULL && (c->cert_file = strdup(conf->cert_file)) == NULL) ||
	    (conf->key_file != NULL && (c->key_file = strdup(conf->key_file)) == NULL))
		goto oom;
	c->timeout_ms = conf->timeout_ms > 0 ? conf->timeout_ms : 10000;
	if ((c->get_headers = headers_build(conf->token, false)) == NULL ||
	    (c->post_headers = headers_build(conf->token, true)) == NULL)
		goto oom;
	if ((c->multi = curl_multi_init()) == NULL) {
		snprintf(err, errlen, "curl_multi_init failed");
		goto fail;
	}
	curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)NOMAD_HOST_CONNS);
	/* The connection cache outlives the easy handles: reuse across batches. */
	curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)NOMAD_HOST_CONNS);
	return c;
oom:
	snprintf(err, errlen, "out of memory creating the nomad client");
fail:
	nomad_client_free(c);
	return NULL;
}

void
nomad_client_free(struct nomad_client *c)
{
	if (c == NULL)
		return;
	for (int i = 0; i < c->npool; i++)
		curl_easy_cleanup(c->pool[i]);
	if (c->multi != NULL)
		curl_multi_cleanup(c->multi);
	curl_slist_free_all(c->get_headers);
	curl_slist_free_all(c->post_headers);
	free(c->address);
	free(c->namespace);
	free(c->region);
	free(c->ca_file);
	free(c->cert_file);
	free(c->key_file);
	free(c);
}

/* Copy text into dst as printable ASCII on one line, trimmed and capped. */
static void
text_sanitize(char *dst, size_t dstlen, const char *src, size_t srclen, size_t cap)
{
	size_t i = 0, o = 0, end = srclen;

	if (cap + 1 > dstlen)
		cap = dstlen - 1;
	while (i < end && isspace((unsigned char)src[i]))
		i++;
	while (end > i && isspace((unsigned char)src[end - 1]))
		end--;
	for (; i < end && o < cap; i++) {
		unsigned char ch = (unsigned char)src[i];

		dst[o++] = ch >= 0x20 && ch < 0x7f ? (char)ch : isspace(ch) ? ' ' : '?';
	}
	if (i < end && o >= 3)
		memcpy(dst + o - 3, "...", 3);
	dst[o] = '\0';
}

static void
call_fail(struct nomad_call *call, enum nomad_result r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
call_fail(struct nomad_call *call, enum nomad_result r, const char *fmt, ...)
{
	va_list ap;

	call->result = r;
	va_start(ap, fmt);
	vsnprintf(call->error, sizeof(call->error), fmt, ap);
	va_end(ap);
}

/* An exact non-negative integer that fits an int; a missing item fails. */
static int
json_int(const cJSON *item, int *out)
{
	double v;

	if (!cJSON_IsNumber(item))
		return -1;
	v = item->valuedouble;
	if (!isfinite(v) || v < 0 || v > INT_MAX || v != floor(v))
		return -1;
	*out = (int)v;
	return 0;
}

/* Fill the STATUS fields from a 200 body; BAD_REPLY on anything unexpected. */
static void
status_parse(struct nomad_call *call, const cJSON *root)
{
	const cJSON *stopped, *groups, *g, *events, *ev, *t;

	if (!cJSON_IsObject(root)) {
		call_fail(call, NOMAD_BAD_REPLY, "scale status is not a JSON object");
		return;
	}
	stopped = cJSON_GetObjectItemCaseSensitive(root, "JobStopped");
	if (stopped != NULL && !cJSON_IsBool(stopped) && !cJSON_IsNull(stopped)) {
		call_fail(call, NOMAD_BAD_REPLY, "scale status: JobStopped is not a bool");
		return;
	}
	call->job_stopped = cJSON_IsTrue(stopped);
	groups = cJSON_GetObjectItemCaseSensitive(root, "TaskGroups");
	if (!cJSON_IsObject(groups)) {
		call_fail(call, NOMAD_BAD_REPLY, "scale status: TaskGroups is %s",
		    groups == NULL ? "missing" : "not an object");
		return;
	}
	g = cJSON_GetObjectItemCaseSensitive(groups, call->group);
	if (g == NULL) {
		call->group_found = false;
		call->result = NOMAD_OK;
		return;
	}
	if (!cJSON_IsObject(g)) {
		call_fail(call, NOMAD_BAD_REPLY, "scale status: group \"%.64s\" is not an object", call->group);
		return;
	}
	if (json_int(cJSON_GetObjectItemCaseSensitive(g, "Desired"), &call->desired) < 0 ||
	    json_int(cJSON_GetObjectItemCaseSensitive(g, "Placed"), &call->placed) < 0 ||
	    json_int(cJSON_GetObjectItemCaseSensitive(g, "Running"), &call->running) < 0) {
		call_fail(call, NOMAD_BAD_REPLY,
		    "scale status: Desired/Placed/Running of group \"%.64s\" missing or not a count", call->group);
		return;
	}
	events = cJSON_GetObjectItemCaseSensitive(g, "Events");
	if (events != NULL && !cJSON_IsNull(events)) {
		if (!cJSON_IsArray(events)) {
			call_fail(call, NOMAD_BAD_REPLY, "scale status: Events is not an array");
			return;
		}
		/* Nomad lists a group's scaling events newest first. */
		if ((ev = cJSON_GetArrayItem(events, 0)) != NULL) {
			t = cJSON_IsObject(ev) ? cJSON_GetObjectItemCaseSensitive(ev, "Time") : NULL;
			if (!cJSON_IsNumber(t) || !isfinite(t->valuedouble) || t->valuedouble < 0 ||
			    t->valuedouble > 1e20) {
				call_fail(call, NOMAD_BAD_REPLY, "scale status: Events[0].Time is not a time in ns");
				return;
			}
			call->last_event_time_s = t->valuedouble / 1e9;
		}
	}
	call->group_found = true;
	call->result = NOMAD_OK;
}

static void
scale_parse(struct nomad_call *call, const cJSON *root)
{
	const cJSON *eval, *idx;

	if (!cJSON_IsObject(root)) {
		call_fail(call, NOMAD_BAD_REPLY, "scale reply is not a JSON object");
		return;
	}
	eval = cJSON_GetObjectItemCaseSensitive(root, "EvalID");
	idx = cJSON_GetObjectItemCaseSensitive(root, "Index");
	if (eval != NULL && !cJSON_IsNull(eval) && !cJSON_IsString(eval)) {
		call_fail(call, NOMAD_BAD_REPLY, "scale reply: EvalID is not a string");
		return;
	}
	/* Raft indexes stay far below 2^53, so a double holds them exactly. */
	if (!cJSON_IsNumber(idx) || !isfinite(idx->valuedouble) || idx->valuedouble < 0 ||
	    idx->valuedouble > 9007199254740992.0 || idx->valuedouble != floor(idx->valuedouble)) {
		call_fail(call, NOMAD_BAD_REPLY, "scale reply: Index %s",
		    idx == NULL ? "is missing" : "is not an index");
		return;
	}
	if (cJSON_IsString(eval))
		util_strlcpy(call->eval_id, eval->valuestring, sizeof(call->eval_id));
	call->index = (uint64_t)idx->valuedouble;
	call->result = NOMAD_OK;
}

/* Classify a completed HTTP exchange. */
static void
reply_classify(struct call_state *st, long code)
{
	struct nomad_call *call = st->call;
	char shown[NOMAD_BODY_SHOWN + 3];
	cJSON *root;

	call->http_status = code;
	if (code != 200) {
		/* Nomad's error bodies are text/plain; show them as one safe line. */
		shown[0] = ':';
		shown[1] = ' ';
		text_sanitize(shown + 2, sizeof(shown) - 2, st->reply != NULL ? st->reply : "", st->reply_len,
		    NOMAD_BODY_SHOWN);
		if (shown[2] == '\0')
			shown[0] = '\0';
		if (code == 400 && st->reply != NULL && strstr(st->reply, DEPLOYMENT_ACTIVE_TEXT) != NULL)
			call_fail(call, NOMAD_DEPLOYMENT_ACTIVE, "HTTP 400%s", shown);
		else if (code == 403 || code == 401)
			call_fail(call, NOMAD_FORBIDDEN, "HTTP %ld%s", code, shown);
		else if (code == 404)
			call_fail(call, NOMAD_NOT_FOUND, "HTTP 404%s", shown);
		else if ((code >= 500 && code <= 599) || code == 429)
			call_fail(call, NOMAD_SERVER_ERROR, "HTTP %ld%s", code, shown);
		else if (code >= 400 && code <= 499)
			call_fail(call, NOMAD_BAD_REQUEST, "HTTP %ld%s", code, shown);
		else
			call_fail(call, NOMAD_BAD_REPLY, "unexpected HTTP status %ld%s", code, shown);
		return;
	}
	/* Strict: trailing bytes after the JSON value make the reply unusable. */
	root = st->reply == NULL ? NULL : cJSON_ParseWithLengthOpts(st->reply, st->reply_len + 1, NULL, true);
	if (root == NULL) {
		call_fail(call, NOMAD_BAD_REPLY, "reply is not JSON (%zu bytes)", st->reply_len);
		return;
	}
	if (call->kind == NOMAD_CALL_STATUS)
		status_parse(call, root);
	else
		scale_parse(call, root);
	cJSON_Delete(root);
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

static void
transport_classify(struct call_state *st, CURLcode rc)
{
	struct nomad_call *call = st->call;
	const char *detail = st->curl_err[0] != '\0' ? st->curl_err : curl_easy_strerror(rc);
	enum nomad_result r;

	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
		r = NOMAD_TIMEOUT;
		break;
	case CURLE_WRITE_ERROR:
	case CURLE_FILESIZE_EXCEEDED:
		if (st->reply_too_big || rc == CURLE_FILESIZE_EXCEEDED) {
			call_fail(call, NOMAD_BAD_REPLY, "reply larger than %u bytes refused", NOMAD_REPLY_MAX);
			return;
		}
		r = NOMAD_INTERNAL;
		break;
	case CURLE_PARTIAL_FILE:
	case CURLE_BAD_CONTENT_ENCODING:
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_TOO_MANY_REDIRECTS:
		r = NOMAD_BAD_REPLY;
		break;
	case CURLE_OUT_OF_MEMORY:
		r = NOMAD_INTERNAL;
		break;
	default:
		/* Refused, DNS, TLS, reset: the server could not be talked to. */
		r = NOMAD_CONNECT;
		break;
	}
	call_fail(call, r, "%s", detail);
}

static size_t
reply_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct call_state *st = userdata;
	size_t n = size * nmemb;
	char *p;

	if (n > NOMAD_REPLY_MAX || st->reply_len + n > NOMAD_REPLY_MAX) {
		st->reply_too_big = true;
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

/* Append "name=value" (value percent-encoded) to a query string. */
static void
query_add(struct strbuf *b, CURL *esc, bool *first, const char *name, const char *value)
{
	char *v;

	if (value == NULL || *value == '\0')
		return;
	if ((v = curl_easy_escape(esc, value, 0)) == NULL) {
		b->oom = true;
		return;
	}
	strbuf_printf(b, "%c%s=%s", *first ? '?' : '&', name, v);
	*first = false;
	curl_free(v);
}

/* Build the URL (and body for SCALE) of one call. 0, or -1 with call->error. */
static int
call_prepare(struct nomad_client *c, struct call_state *st, CURL *esc)
{
	struct nomad_call *call = st->call;
	struct strbuf url = { 0 };
	cJSON *root = NULL, *target, *meta = NULL;
	char *job = NULL;
	bool first = true;

	if (call->job == NULL || *call->job == '\0' || call->group == NULL || *call->group == '\0') {
		call_fail(call, NOMAD_BAD_REQUEST, "job and group must be set");
		return -1;
	}
	if ((job = curl_easy_escape(esc, call->job, 0)) == NULL)
		goto oom;
	strbuf_printf(&url, "%s/v1/job/%s/scale", c->address, job);
	curl_free(job);
	query_add(&url, esc, &first, "namespace", call->namespace != NULL ? call->namespace : c->namespace);
	query_add(&url, esc, &first, "region", c->region);
	if (url.oom)
		goto oom;
	st->url = strbuf_steal(&url);
	if (call->kind != NOMAD_CALL_SCALE)
		return 0;

	if (call->count < 0) {
		call_fail(call, NOMAD_BAD_REQUEST, "count %d is negative", call->count);
		return -1;
	}
	if (call->meta_json != NULL) {
		meta = cJSON_ParseWithOpts(call->meta_json, NULL, true);
		if (!cJSON_IsObject(meta)) {
			cJSON_Delete(meta);
			call_fail(call, NOMAD_BAD_REQUEST, "meta_json is not a JSON object");
			return -1;
		}
	}
	if ((root = cJSON_CreateObject()) == NULL ||
	    cJSON_AddNumberToObject(root, "Count", call->count) == NULL ||
	    (target = cJSON_AddObjectToObject(root, "Target")) == NULL ||
	    cJSON_AddStringToObject(target, "Job", call->job) == NULL ||
	    cJSON_AddStringToObject(target, "Group", call->group) == NULL ||
	    (call->message != NULL && cJSON_AddStringToObject(root, "Message", call->message) == NULL))
		goto oom;
	if (meta != NULL) {
		if (!cJSON_AddItemToObject(root, "Meta", meta))
			goto oom;
		meta = NULL;
	}
	if ((st->body = cJSON_PrintUnformatted(root)) == NULL)
		goto oom;
	cJSON_Delete(root);
	return 0;
oom:
	cJSON_Delete(root);
	cJSON_Delete(meta);
	strbuf_free(&url);
	call_fail(call, NOMAD_INTERNAL, "out of memory preparing the request");
	return -1;
}

static CURL *
easy_get(struct nomad_client *c)
{
	if (c->npool > 0)
		return c->pool[--c->npool];
	return curl_easy_init();
}

static void
easy_put(struct nomad_client *c, CURL *e)
{
	if (c->npool < NOMAD_POOL_MAX) {
		curl_easy_reset(e);
		c->pool[c->npool++] = e;
	} else {
		curl_easy_cleanup(e);
	}
}

/* Start one HTTP attempt with what is left of the batch as its time limit. */
static int
attempt_start(struct nomad_client *c, struct call_state *st, int64_t remaining_ms)
{
	CURL *e;
	CURLcode rc = CURLE_OK;
	/*
	 * Connecting gets a share of the time so that a dropped SYN still
	 * leaves room for a retry; the whole attempt may use all that is left.
	 */
	int64_t connect_ms = remaining_ms / 3 > 1000 ? remaining_ms / 3 : remaining_ms;

	if ((e = easy_get(c)) == NULL) {
		call_fail(st->call, NOMAD_INTERNAL, "curl_easy_init failed");
		return -1;
	}
	st->reply_len = 0;
	st->reply_too_big = false;
	if (st->reply != NULL)
		st->reply[0] = '\0';
	st->curl_err[0] = '\0';
#define SET(opt, val) do { if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val); } while (0)
	SET(CURLOPT_URL, st->url);
#if LIBCURL_VERSION_NUM >= 0x075500
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
	SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_USERAGENT, "scaleno/" SCALENO_VERSION);
	SET(CURLOPT_ACCEPT_ENCODING, "");
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)connect_ms);
	SET(CURLOPT_TIMEOUT_MS, (long)remaining_ms);
	SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)NOMAD_REPLY_MAX);
	SET(CURLOPT_WRITEFUNCTION, reply_write);
	SET(CURLOPT_WRITEDATA, st);
	SET(CURLOPT_ERRORBUFFER, st->curl_err);
	SET(CURLOPT_PRIVATE, st);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	if (c->ca_file != NULL && *c->ca_file != '\0')
		SET(CURLOPT_CAINFO, c->ca_file);
	if (c->cert_file != NULL && *c->cert_file != '\0')
		SET(CURLOPT_SSLCERT, c->cert_file);
	if (c->key_file != NULL && *c->key_file != '\0')
		SET(CURLOPT_SSLKEY, c->key_file);
	if (st->call->kind == NOMAD_CALL_SCALE) {
		SET(CURLOPT_HTTPHEADER, c->post_headers);
		SET(CURLOPT_POSTFIELDS, st->body);
	} else {
		SET(CURLOPT_HTTPHEADER, c->get_headers);
		SET(CURLOPT_HTTPGET, 1L);
	}
#undef SET
	if (rc != CURLE_OK) {
		call_fail(st->call, NOMAD_INTERNAL, "curl setup: %s", curl_easy_strerror(rc));
		easy_put(c, e);
		return -1;
	}
	if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
		call_fail(st->call, NOMAD_INTERNAL, "curl_multi_add_handle failed");
		easy_put(c, e);
		return -1;
	}
	st->easy = e;
	st->call->attempts++;
	return 0;
}

static void
attempt_end(struct nomad_client *c, struct call_state *st)
{
	curl_multi_remove_handle(c->multi, st->easy);
	easy_put(c, st->easy);
	st->easy = NULL;
}

/*
 * An attempt finished: classify it, then either end the call or schedule a
 * retry when the failure may pass and the batch has time for another try.
 *
 * A SCALE whose attempt timed out or lost its connection may have been
 * applied by Nomad. Retrying it is still safe: the body carries an absolute
 * Count, so applying it twice leaves the same count (at worst one extra job
 * version and scaling event), which is better than leaving a decision
 * unapplied until the next tick.
 */
static void
attempt_done(struct nomad_client *c, struct call_state *st, CURLcode rc, int64_t deadline)
{
	struct nomad_call *call = st->call;
	bool retry = false;
	long code = 0;
	int64_t now, delay;

	if (rc == CURLE_OK) {
		curl_easy_getinfo(st->easy, CURLINFO_RESPONSE_CODE, &code);
		reply_classify(st, code);
		retry = call->result == NOMAD_SERVER_ERROR;
	} else {
		call->http_status = 0;
		transport_classify(st, rc);
		retry = curl_code_retryable(rc);
	}
	attempt_end(c, st);
	if (!retry || call->attempts >= NOMAD_MAX_ATTEMPTS) {
		st->done = true;
		return;
	}
	now = util_now_ms();
	delay = util_backoff_ms(NOMAD_BACKOFF_BASE_MS, c->timeout_ms / 4, (unsigned)(call->attempts - 1));
	if (now + delay + NOMAD_MIN_ATTEMPT_MS >= deadline) {
		st->done = true;
		return;
	}
	st->next_start_ms = now + delay;
}

static void
states_free(struct nomad_client *c, struct call_state *states, int n)
{
	for (int i = 0; i < n; i++) {
		if (states[i].easy != NULL)
			attempt_end(c, &states[i]);
		free(states[i].url);
		cJSON_free(states[i].body);
		free(states[i].reply);
	}
	free(states);
}

static void
call_reset(struct nomad_call *call)
{
	call->result = NOMAD_INTERNAL;
	call->http_status = 0;
	call->error[0] = '\0';
	call->attempts = 0;
	call->desired = call->placed = call->running = 0;
	call->job_stopped = false;
	call->group_found = false;
	call->last_event_time_s = 0;
	call->eval_id[0] = '\0';
	call->index = 0;
}

int
nomad_perform(struct nomad_client *c, struct nomad_call *calls, int n)
{
	struct call_state *states;
	CURL *esc;
	CURLMsg *msg;
	int64_t start, deadline, now, wake;
	int pending = 0, running, left, ok = 0, inflight = 0, nwaiting = 0;
	int *ready = NULL;
	size_t qhead = 0, qtail = 0;

	if (n <= 0)
		return 0;
	for (int i = 0; i < n; i++)
		call_reset(&calls[i]);
	start = util_now_ms();
	deadline = start + c->timeout_ms;
	if ((states = calloc((size_t)n, sizeof(*states))) == NULL || (esc = easy_get(c)) == NULL) {
		free(states);
		for (int i = 0; i < n; i++)
			call_fail(&calls[i], NOMAD_INTERNAL, "out of memory starting the batch");
		return 0;
	}
	/* A ring of calls ready for an attempt: each call sits in it at most once. */
	if ((ready = calloc((size_t)n, sizeof(*ready))) == NULL) {
		easy_put(c, esc);
		free(states);
		for (int i = 0; i < n; i++)
			call_fail(&calls[i], NOMAD_INTERNAL, "out of memory starting the batch");
		return 0;
	}
	for (int i = 0; i < n; i++) {
		states[i].call = &calls[i];
		states[i].next_start_ms = start;
		if (call_prepare(c, &states[i], esc) < 0)
			states[i].done = true;
		else {
			ready[qtail++ % n] = i;
			pending++;
		}
	}
	easy_put(c, esc);

	/* Bounded by the deadline: every wait below ends at it at the latest. */
	while (pending > 0) {
		now = util_now_ms();
		if (now >= deadline)
			break;
		wake = deadline;
		/* Retries whose backoff has passed join the ready ring (rare: scan only then). */
		for (int i = 0; nwaiting > 0 && i < n; i++) {
			struct call_state *st = &states[i];

			if (!st->waiting)
				continue;
			if (st->next_start_ms <= now) {
				st->waiting = false;
				nwaiting--;
				ready[qtail++ % n] = i;
			} else if (st->next_start_ms < wake)
				wake = st->next_start_ms;
		}
		while (inflight < NOMAD_MAX_INFLIGHT && qhead < qtail) {
			struct call_state *st = &states[ready[qhead++ % n]];

			if (attempt_start(c, st, deadline - now) < 0) {
				st->done = true;
				pending--;
			} else
				inflight++;
		}
		curl_multi_perform(c->multi, &running);
		while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
			struct call_state *st;
			void *priv = NULL;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
			st = priv;
			if (st == NULL || st->easy != msg->easy_handle)
				continue;
			inflight--;
			attempt_done(c, st, msg->data.result, deadline);
			if (st->done)
				pending--;
			else {
				st->waiting = true;
				nwaiting++;
				if (st->next_start_ms < wake)
					wake = st->next_start_ms;
			}
		}
		if (pending == 0)
			break;
		now = util_now_ms();
		/* Free slots and calls ready for them: go round again at once. */
		if (inflight < NOMAD_MAX_INFLIGHT && qhead < qtail)
			continue;
		if (wake > now)
			curl_multi_poll(c->multi, NULL, 0, (int)(wake - now > 1000 ? 1000 : wake - now), NULL);
	}

	/* Out of time: whatever is still in flight has timed out. */
	for (int i = 0; i < n; i++) {
		struct call_state *st = &states[i];

		if (st->done)
			continue;
		if (st->easy != NULL || st->call->attempts == 0)
			call_fail(st->call, NOMAD_TIMEOUT, "no answer within %lldms",
			    (long long)c->timeout_ms);
		st->done = true;
	}
	for (int i = 0; i < n; i++) {
		struct nomad_call *call = &calls[i];

		if (call->result == NOMAD_OK)
			ok++;
		log_debug("nomad: %s %s/%s: %s%s%s (HTTP %ld, %d attempt%s)",
		    call->kind == NOMAD_CALL_SCALE ? "scale" : "status", call->job ? call->job : "",
		    call->group ? call->group : "", nomad_result_name(call->result),
		    call->error[0] ? ": " : "", call->error, call->http_status, call->attempts,
		    call->attempts == 1 ? "" : "s");
	}
	states_free(c, states, n);
	free(ready);
	log_debug("nomad: batch of %d calls, %d ok, %lldms", n, ok, (long long)(util_now_ms() - start));
	return ok;
}
