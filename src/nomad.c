/*
 * nomad — the Nomad HTTP API client: GET/POST /v1/job/:job/scale,
 * GET /v1/job/:job and GET /v1/jobs, run in concurrent batches on one
 * httpc client. Replies are parsed with cJSON;
 * every reply is distrusted (wrong types, huge numbers, truncation,
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

#include "httpc.h"
#include "log.h"
#include "nomad.h"
#include "util.h"

/* Replies above this are refused: a scale status or a job is a few KiB at most ... */
#define NOMAD_REPLY_MAX		(4u * 1024 * 1024)
/* ... a job list about 1 KiB per job. */
#define NOMAD_LIST_REPLY_MAX	(256u * 1024 * 1024)
/* Scaling events looked at per group (Nomad keeps 20). */
#define NOMAD_EVENTS_MAX	64
/* One batch issues at most this many HTTP attempts per call. */
#define NOMAD_MAX_ATTEMPTS	4
#define NOMAD_BACKOFF_BASE_MS	100
/* Concurrent connections to the one Nomad address; more calls wait their turn. */
#define NOMAD_HOST_CONNS	16
/* A retry needs at least this much of the batch left to be worth starting. */
#define NOMAD_MIN_ATTEMPT_MS	50
#define NOMAD_BODY_SHOWN	160
/* nomad.timeout when the configuration gives none. */
#define NOMAD_DEFAULT_TIMEOUT_MS 10000

#define DEPLOYMENT_ACTIVE_TEXT	"job scaling blocked due to active deployment"
#define BOUND_MAX_TEXT		"group count was greater than scaling policy maximum: "
#define BOUND_MIN_TEXT		"group count was less than scaling policy minimum: "

/* 500s that say the request can never pass as it is: configuration errors, not outages. */
static const char *const config_error_texts[] = {
	"total count was greater than configured job_max_count",
	"No path to region",
};

struct nomad_client {
	struct httpc *http;
	char *address;		/* no trailing slash */
	char *namespace, *region;
	int64_t timeout_ms;
	struct httpc_headers *get_headers, *post_headers;	/* hold the token: never log */
};

/* What one call of a batch needs beyond the call itself. */
struct call_req {
	struct nomad_call *call;
	struct nomad_client *client;
	char *url;
	char *body;		/* SCALE request body */
};

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
	case NOMAD_OUT_OF_BOUNDS:	return "out_of_bounds";
	case NOMAD_SERVER_ERROR:	return "server_error";
	case NOMAD_CONFIG:		return "config";
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
	case NOMAD_OUT_OF_BOUNDS:
	case NOMAD_CONFIG:
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

static struct httpc_headers *
headers_build(const char *token, bool json_body)
{
	const char *lines[4];
	struct httpc_headers *h;
	struct strbuf tok = { 0 };
	size_t n = 0;

	lines[n++] = "Accept: application/json";
	/* Small bodies; a 100-continue round trip only adds latency. */
	lines[n++] = "Expect:";
	if (json_body)
		lines[n++] = "Content-Type: application/json";
	if (token != NULL && *token != '\0') {
		strbuf_printf(&tok, "X-Nomad-Token: %s", token);
		if (tok.oom) {
			strbuf_free(&tok);
			return NULL;
		}
		lines[n++] = tok.s;
	}
	h = httpc_headers_new(lines, n);
	/* Don't leave the secret lying around in freed heap memory. */
	if (tok.s != NULL)
		memset(tok.s, 0, tok.len);
	strbuf_free(&tok);
	return h;
}

struct nomad_client *
nomad_client_new(const struct nomad_conf *conf, char *err, size_t errlen)
{
	struct httpc_conf hc = { .ca_file = conf->ca_file, .cert_file = conf->cert_file,
	    .key_file = conf->key_file, .host_conns = NOMAD_HOST_CONNS,
	    .reply_max = NOMAD_REPLY_MAX };
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
	if ((c = calloc(1, sizeof(*c))) == NULL)
		goto oom;
	/* The client first: it sets up curl, which must happen before threads start. */
	if ((c->http = httpc_new(&hc, err, errlen)) == NULL)
		goto fail;
	if (httpc_url_check(addr) < 0) {
		snprintf(err, errlen, "nomad address \"%.100s\" is not a valid URL", addr);
		goto fail;
	}
	if (conf->tls_server_name != NULL && *conf->tls_server_name != '\0' &&
	    strncmp(addr, "https://", 8) == 0) {
		/* Connect to the address, check the certificate for the name. */
		char *connect_to = NULL;

		if (httpc_url_server_name(addr, conf->tls_server_name, &c->address, &connect_to) < 0) {
			snprintf(err, errlen, "nomad tls_server_name \"%.100s\" is not a host name",
			    conf->tls_server_name);
			goto fail;
		}
		hc.connect_to = connect_to;
		httpc_free(c->http);
		c->http = httpc_new(&hc, err, errlen);
		free(connect_to);
		if (c->http == NULL)
			goto fail;
	} else if ((c->address = strdup(addr)) == NULL)
		goto oom;
	alen = strlen(c->address);
	while (alen > 0 && c->address[alen - 1] == '/')
		c->address[--alen] = '\0';
	if ((conf->namespace != NULL && (c->namespace = strdup(conf->namespace)) == NULL) ||
	    (conf->region != NULL && (c->region = strdup(conf->region)) == NULL))
		goto oom;
	c->timeout_ms = conf->timeout_ms > 0 ? conf->timeout_ms : NOMAD_DEFAULT_TIMEOUT_MS;
	if ((c->get_headers = headers_build(conf->token, false)) == NULL ||
	    (c->post_headers = headers_build(conf->token, true)) == NULL)
		goto oom;
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
	httpc_free(c->http);
	httpc_headers_free(c->get_headers);
	httpc_headers_free(c->post_headers);
	free(c->address);
	free(c->namespace);
	free(c->region);
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

static void __attribute__((format(printf, 3, 4)))
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

/*
 * Take ev as the newest action when it changed a count: it carries a Count
 * and is not an error (an event-only entry records a decision, not an action).
 */
static void
event_take(struct nomad_event *out, const cJSON *ev, double time_s)
{
	const cJSON *err = cJSON_GetObjectItemCaseSensitive(ev, "Error");
	int count, prev;

	if (cJSON_IsTrue(err) || json_int(cJSON_GetObjectItemCaseSensitive(ev, "Count"), &count) < 0)
		return;
	if (json_int(cJSON_GetObjectItemCaseSensitive(ev, "PreviousCount"), &prev) < 0)
		prev = count;
	out->found = true;
	out->time_s = time_s;
	out->count = count;
	out->previous = prev;
}

/* A raft index: an exact integer below 2^53 (cJSON keeps numbers as doubles). */
static int
json_index(const cJSON *item, uint64_t *out)
{
	if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble) || item->valuedouble < 0 ||
	    item->valuedouble > 9007199254740992.0 || item->valuedouble != floor(item->valuedouble))
		return -1;
	*out = (uint64_t)item->valuedouble;
	return 0;
}

/* A bool that may be missing or null (false); -1 for any other type. */
static int
json_flag(const cJSON *item, bool *out)
{
	if (item != NULL && !cJSON_IsBool(item) && !cJSON_IsNull(item))
		return -1;
	*out = cJSON_IsTrue(item);
	return 0;
}

/* Fill the JOB fields from a 200 body of GET /v1/job/:job. */
static void
job_parse(struct nomad_call *call, const cJSON *root)
{
	const cJSON *groups, *g, *sc;

	if (!cJSON_IsObject(root)) {
		call_fail(call, NOMAD_BAD_REPLY, "job is not a JSON object");
		return;
	}
	if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(root, "Type")))
		util_strlcpy(call->job_type, cJSON_GetObjectItemCaseSensitive(root, "Type")->valuestring,
		    sizeof(call->job_type));
	if (json_flag(cJSON_GetObjectItemCaseSensitive(root, "Stop"), &call->job_stopped) < 0 ||
	    json_index(cJSON_GetObjectItemCaseSensitive(root, "JobModifyIndex"), &call->job_modify_index) < 0) {
		call_fail(call, NOMAD_BAD_REPLY, "job: Stop or JobModifyIndex missing or of the wrong type");
		return;
	}
	groups = cJSON_GetObjectItemCaseSensitive(root, "TaskGroups");
	if (!cJSON_IsArray(groups)) {
		call_fail(call, NOMAD_BAD_REPLY, "job: TaskGroups is not an array");
		return;
	}
	call->result = NOMAD_OK;
	cJSON_ArrayForEach(g, groups) {
		const cJSON *name = cJSON_IsObject(g) ? cJSON_GetObjectItemCaseSensitive(g, "Name") : NULL;

		if (!cJSON_IsString(name) || strcmp(name->valuestring, call->group) != 0)
			continue;
		if (json_int(cJSON_GetObjectItemCaseSensitive(g, "Count"), &call->desired) < 0) {
			call_fail(call, NOMAD_BAD_REPLY, "job: Count of group \"%.64s\" is not a count", call->group);
			return;
		}
		call->group_found = true;
		sc = cJSON_GetObjectItemCaseSensitive(g, "Scaling");
		if (sc == NULL || cJSON_IsNull(sc))
			return;
		/* A scaling block without min gets the group's count (api/scaling.go Canonicalize). */
		if (!cJSON_IsObject(sc) ||
		    json_int(cJSON_GetObjectItemCaseSensitive(sc, "Max"), &call->scaling_max) < 0 ||
		    (json_int(cJSON_GetObjectItemCaseSensitive(sc, "Min"), &call->scaling_min) < 0 &&
		    (call->scaling_min = call->desired) < 0)) {
			call_fail(call, NOMAD_BAD_REPLY, "job: Scaling of group \"%.64s\" has no usable Max",
			    call->group);
			call->scaling_min = call->scaling_max = -1;
		}
		return;
	}
}

static int
stub_cmp(const void *a, const void *b)
{
	return strcmp(((const struct nomad_stub *)a)->id, ((const struct nomad_stub *)b)->id);
}

/* One JobListStub; -1 when it is not usable. */
static int
stub_parse(struct nomad_stub *st, const cJSON *o)
{
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "ID"), *sum, *g;
	size_t n = 0;

	if (!cJSON_IsString(id) ||
	    json_index(cJSON_GetObjectItemCaseSensitive(o, "JobModifyIndex"), &st->job_modify_index) < 0 ||
	    json_flag(cJSON_GetObjectItemCaseSensitive(o, "Stop"), &st->stop) < 0)
		return -1;
	if ((st->id = strdup(id->valuestring)) == NULL)
		return -1;
	sum = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "JobSummary"), "Summary");
	if (!cJSON_IsObject(sum))
		return 0;
	cJSON_ArrayForEach(g, sum)
		n++;
	if (n == 0 || (st->groups = calloc(n, sizeof(*st->groups))) == NULL)
		return n == 0 ? 0 : -1;
	cJSON_ArrayForEach(g, sum) {
		struct nomad_stub_group *sg = &st->groups[st->ngroups];

		if (!cJSON_IsObject(g) || g->string == NULL ||
		    json_int(cJSON_GetObjectItemCaseSensitive(g, "Queued"), &sg->queued) < 0 ||
		    json_int(cJSON_GetObjectItemCaseSensitive(g, "Starting"), &sg->starting) < 0 ||
		    json_int(cJSON_GetObjectItemCaseSensitive(g, "Running"), &sg->running) < 0)
			return -1;
		if ((sg->name = strdup(g->string)) == NULL)
			return -1;
		st->ngroups++;
	}
	return 0;
}

/* Fill the JOBS fields from a 200 body of GET /v1/jobs. */
static void
jobs_parse(struct nomad_call *call, const cJSON *root)
{
	const cJSON *o;
	size_t n = 0;

	if (!cJSON_IsArray(root)) {
		call_fail(call, NOMAD_BAD_REPLY, "job list is not a JSON array");
		return;
	}
	cJSON_ArrayForEach(o, root)
		n++;
	if (n > 0 && (call->stubs = calloc(n, sizeof(*call->stubs))) == NULL) {
		call_fail(call, NOMAD_INTERNAL, "out of memory reading the job list");
		return;
	}
	cJSON_ArrayForEach(o, root) {
		if (!cJSON_IsObject(o) || stub_parse(&call->stubs[call->nstubs], o) < 0) {
			size_t bad = call->nstubs++;	/* freed with the rest: it holds what it took */

			nomad_call_clear(call);
			call_fail(call, NOMAD_BAD_REPLY, "job list: entry %zu is not a usable JobListStub", bad);
			return;
		}
		call->nstubs++;
	}
	if (call->nstubs > 1)
		qsort(call->stubs, call->nstubs, sizeof(*call->stubs), stub_cmp);
	call->result = NOMAD_OK;
}

void
nomad_call_clear(struct nomad_call *c)
{
	for (size_t i = 0; i < c->nstubs; i++) {
		for (size_t k = 0; k < c->stubs[i].ngroups; k++)
			free(c->stubs[i].groups[k].name);
		free(c->stubs[i].groups);
		free(c->stubs[i].id);
	}
	free(c->stubs);
	c->stubs = NULL;
	c->nstubs = 0;
}

const struct nomad_stub *
nomad_stub_find(const struct nomad_call *c, const char *id)
{
	struct nomad_stub key = { .id = (char *)(uintptr_t)id };

	if (c->nstubs == 0 || id == NULL)
		return NULL;
	return bsearch(&key, c->stubs, c->nstubs, sizeof(*c->stubs), stub_cmp);
}

const struct nomad_stub_group *
nomad_stub_group(const struct nomad_stub *st, const char *group)
{
	for (size_t k = 0; st != NULL && k < st->ngroups; k++)
		if (strcmp(st->groups[k].name, group) == 0)
			return &st->groups[k];
	return NULL;
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
	/* Here "JobModifyIndex" is the job's ModifyIndex: it moves with every write of the job. */
	if (json_index(cJSON_GetObjectItemCaseSensitive(root, "JobModifyIndex"), &call->job_modify_index) < 0)
		call->job_modify_index = 0;
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
		int k = 0;

		cJSON_ArrayForEach(ev, events) {
			if (k++ >= NOMAD_EVENTS_MAX)
				break;
			t = cJSON_IsObject(ev) ? cJSON_GetObjectItemCaseSensitive(ev, "Time") : NULL;
			if (!cJSON_IsNumber(t) || !isfinite(t->valuedouble) || t->valuedouble < 0 ||
			    t->valuedouble > 1e20) {
				call_fail(call, NOMAD_BAD_REPLY, "scale status: Events[%d].Time is not a time in ns",
				    k - 1);
				return;
			}
			if (k == 1)
				call->last_event_time_s = t->valuedouble / 1e9;
			if (!call->event.found)
				event_take(&call->event, ev, t->valuedouble / 1e9);
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
	if (json_index(idx, &call->index) < 0) {
		call_fail(call, NOMAD_BAD_REPLY, "scale reply: Index %s",
		    idx == NULL ? "is missing" : "is not an index");
		return;
	}
	if (cJSON_IsString(eval))
		util_strlcpy(call->eval_id, eval->valuestring, sizeof(call->eval_id));
	if (json_index(cJSON_GetObjectItemCaseSensitive(root, "JobModifyIndex"), &call->job_modify_index) < 0)
		call->job_modify_index = 0;
	call->result = NOMAD_OK;
}

/* A 400 naming a bound of the job's scaling block: note the bound, true. */
static bool
bound_parse(struct nomad_call *call, const char *reply)
{
	const char *p;
	long asked, bound;
	char *end;

	if ((p = strstr(reply, BOUND_MAX_TEXT)) != NULL)
		p += strlen(BOUND_MAX_TEXT);
	else if ((p = strstr(reply, BOUND_MIN_TEXT)) != NULL)
		p += strlen(BOUND_MIN_TEXT);
	else
		return false;
	errno = 0;
	asked = strtol(p, &end, 10);
	if (end == p || errno != 0 || (strncmp(end, " > ", 3) != 0 && strncmp(end, " < ", 3) != 0))
		return false;
	p = end + 3;
	bound = strtol(p, &end, 10);
	if (end == p || errno != 0 || bound < 0 || bound > INT_MAX || asked < 0)
		return false;
	if (strstr(reply, BOUND_MAX_TEXT) != NULL)
		call->bound_max = (int)bound;
	else
		call->bound_min = (int)bound;
	return true;
}

static bool
config_error(const char *reply)
{
	for (size_t i = 0; i < ARRAY_LEN(config_error_texts); i++)
		if (strstr(reply, config_error_texts[i]) != NULL)
			return true;
	return false;
}

/* Classify an HTTP answer. */
static void
reply_classify(struct nomad_call *call, const struct httpc_xfer *x)
{
	const char *reply = x->reply != NULL ? x->reply : "";
	char shown[NOMAD_BODY_SHOWN + 3];
	long code = x->status;
	cJSON *root;

	call->http_status = code;
	if (code != 200) {
		/* Nomad's error bodies are text/plain; show them as one safe line. */
		shown[0] = ':';
		shown[1] = ' ';
		text_sanitize(shown + 2, sizeof(shown) - 2, reply, x->reply_len, NOMAD_BODY_SHOWN);
		if (shown[2] == '\0')
			shown[0] = '\0';
		if (code == 400 && strstr(reply, DEPLOYMENT_ACTIVE_TEXT) != NULL)
			call_fail(call, NOMAD_DEPLOYMENT_ACTIVE, "HTTP 400%s", shown);
		else if (code == 400 && bound_parse(call, reply))
			call_fail(call, NOMAD_OUT_OF_BOUNDS, "HTTP 400%s", shown);
		else if (code == 500 && config_error(reply))
			call_fail(call, NOMAD_CONFIG, "HTTP 500%s", shown);
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
	root = x->reply == NULL ? NULL :
	    cJSON_ParseWithLengthOpts(x->reply, x->reply_len + 1, NULL, true);
	if (root == NULL) {
		call_fail(call, NOMAD_BAD_REPLY, "reply is not JSON (%zu bytes)", x->reply_len);
		return;
	}
	switch (call->kind) {
	case NOMAD_CALL_STATUS: status_parse(call, root); break;
	case NOMAD_CALL_SCALE: scale_parse(call, root); break;
	case NOMAD_CALL_JOB: job_parse(call, root); break;
	case NOMAD_CALL_JOBS: jobs_parse(call, root); break;
	}
	cJSON_Delete(root);
}

/* Classify an attempt that got no HTTP answer. */
static void
transport_classify(struct nomad_call *call, const struct httpc_xfer *x)
{
	static const enum nomad_result results[] = {
		[HTTPC_FAIL_NONE] = NOMAD_INTERNAL,
		[HTTPC_FAIL_TIMEOUT] = NOMAD_TIMEOUT,
		[HTTPC_FAIL_CONNECT] = NOMAD_CONNECT,
		[HTTPC_FAIL_TOO_BIG] = NOMAD_BAD_REPLY,
		[HTTPC_FAIL_BAD_REPLY] = NOMAD_BAD_REPLY,
		[HTTPC_FAIL_INTERNAL] = NOMAD_INTERNAL,
	};

	call->http_status = 0;
	if (x->fail == HTTPC_FAIL_TOO_BIG)
		call_fail(call, NOMAD_BAD_REPLY, "reply larger than %u bytes refused", NOMAD_REPLY_MAX);
	else
		call_fail(call, results[x->fail], "%s", x->error);
}

static const char *
call_kind_name(enum nomad_call_kind k)
{
	static const char *const names[] = { "status", "scale", "job", "jobs" };

	return (unsigned)k < ARRAY_LEN(names) ? names[k] : "?";
}

/* Append "name=value" (value percent-encoded) to a query string. */
static void
query_add(struct strbuf *b, bool *first, const char *name, const char *value)
{
	if (value == NULL || *value == '\0')
		return;
	strbuf_printf(b, "%c%s=", *first ? '?' : '&', name);
	httpc_escape(b, value);
	*first = false;
}

/* Build the URL (and body for SCALE) of one call. 0, or -1 with call->error. */
static int
call_prepare(struct nomad_client *c, struct call_req *rq)
{
	struct nomad_call *call = rq->call;
	struct strbuf url = { 0 };
	cJSON *root = NULL, *target, *meta = NULL;
	bool first = true;

	if (call->kind != NOMAD_CALL_JOBS && (call->job == NULL || *call->job == '\0' ||
	    call->group == NULL || *call->group == '\0')) {
		call_fail(call, NOMAD_BAD_REQUEST, "job and group must be set");
		return -1;
	}
	if (call->kind == NOMAD_CALL_JOBS)
		strbuf_printf(&url, "%s/v1/jobs", c->address);
	else {
		strbuf_printf(&url, "%s/v1/job/", c->address);
		httpc_escape(&url, call->job);
		if (call->kind != NOMAD_CALL_JOB)
			strbuf_printf(&url, "/scale");
	}
	query_add(&url, &first, "namespace", call->namespace != NULL ? call->namespace : c->namespace);
	query_add(&url, &first, "region", c->region);
	if (call->stale && call->kind != NOMAD_CALL_SCALE)
		query_add(&url, &first, "stale", "true");
	if (url.oom)
		goto oom;
	rq->url = strbuf_steal(&url);
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
	    (!call->no_count && cJSON_AddNumberToObject(root, "Count", call->count) == NULL) ||
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
	if ((rq->body = cJSON_PrintUnformatted(root)) == NULL)
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

/*
 * An attempt finished: classify it, then either end the call (-1) or ask
 * for a retry after a delay when the failure may pass and the batch has
 * time for another try.
 *
 * A SCALE whose attempt timed out or lost its connection may have been
 * applied by Nomad. Retrying it is still safe: the body carries an absolute
 * Count, so applying it twice leaves the same count (at worst one extra job
 * version and scaling event), which is better than leaving a decision
 * unapplied until the next tick.
 */
static int64_t
attempt_done(void *arg, struct httpc_xfer *x, int64_t deadline)
{
	struct call_req *rq = x->arg;
	struct nomad_call *call = rq->call;
	bool retry;
	int64_t delay;

	(void)arg;
	call->attempts = x->attempts;
	if (x->fail == HTTPC_FAIL_NONE) {
		reply_classify(call, x);
		retry = call->result == NOMAD_SERVER_ERROR;
	} else {
		transport_classify(call, x);
		retry = x->retryable;
	}
	if (!retry || call->attempts >= NOMAD_MAX_ATTEMPTS)
		return -1;
	delay = util_backoff_ms(NOMAD_BACKOFF_BASE_MS, rq->client->timeout_ms / 4,
	    (unsigned)(call->attempts - 1));
	if (util_now_ms() + delay + NOMAD_MIN_ATTEMPT_MS >= deadline)
		return -1;
	return delay;
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
	memset(&call->event, 0, sizeof(call->event));
	call->bound_min = call->bound_max = -1;
	call->scaling_min = call->scaling_max = -1;
	call->job_type[0] = '\0';
	call->job_modify_index = 0;
	call->eval_id[0] = '\0';
	call->index = 0;
	nomad_call_clear(call);
}

int
nomad_perform(struct nomad_client *c, struct nomad_call *calls, int n)
{
	struct call_req *reqs;
	struct httpc_xfer *xs;
	int64_t start;
	size_t nx = 0;
	int ok = 0;

	if (n <= 0)
		return 0;
	for (int i = 0; i < n; i++)
		call_reset(&calls[i]);
	start = util_now_ms();
	reqs = calloc((size_t)n, sizeof(*reqs));
	xs = calloc((size_t)n, sizeof(*xs));
	if (reqs == NULL || xs == NULL) {
		for (int i = 0; i < n; i++)
			call_fail(&calls[i], NOMAD_INTERNAL, "out of memory starting the batch");
		free(reqs);
		free(xs);
		return 0;
	}
	for (int i = 0; i < n; i++) {
		struct call_req *rq = &reqs[i];

		rq->call = &calls[i];
		rq->client = c;
		if (call_prepare(c, rq) < 0)
			continue;
		xs[nx].url = rq->url;
		xs[nx].body = rq->body;
		xs[nx].headers = calls[i].kind == NOMAD_CALL_SCALE ? c->post_headers : c->get_headers;
		xs[nx].reply_max = calls[i].kind == NOMAD_CALL_JOBS ? NOMAD_LIST_REPLY_MAX : 0;
		xs[nx++].arg = rq;
	}
	httpc_run(c->http, xs, nx, start + c->timeout_ms, attempt_done, NULL);
	/* Out of time: whatever was still in flight (or never started) has timed out. */
	for (size_t k = 0; k < nx; k++) {
		struct call_req *rq = xs[k].arg;

		rq->call->attempts = xs[k].attempts;
		if (xs[k].cut)
			call_fail(rq->call, NOMAD_TIMEOUT, "no answer within %lldms",
			    (long long)c->timeout_ms);
	}
	for (int i = 0; i < n; i++) {
		struct nomad_call *call = &calls[i];

		if (call->result == NOMAD_OK)
			ok++;
		log_debug("nomad: %s %s/%s: %s%s%s (HTTP %ld, %d attempt%s)",
		    call_kind_name(call->kind), call->job ? call->job : "",
		    call->group ? call->group : "", nomad_result_name(call->result),
		    call->error[0] ? ": " : "", call->error, call->http_status, call->attempts,
		    call->attempts == 1 ? "" : "s");
		free(reqs[i].url);
		cJSON_free(reqs[i].body);
	}
	free(reqs);
	free(xs);
	log_debug("nomad: batch of %d calls, %d ok, %lldms", n, ok, (long long)(util_now_ms() - start));
	return ok;
}
