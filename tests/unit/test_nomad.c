/*
 * Unit tests for the Nomad client (src/nomad.c).
 *
 * Two servers, both on 127.0.0.1 free ports:
 *  - the project's Nomad stand-in (contrib/nomad-standin.py) for the real
 *    API semantics: status, scale, deployments, 404, 403, token and query;
 *  - an in-process libmicrohttpd "fault server" whose job names pick a
 *    misbehaviour (garbage, wrong types, truncation, 5 MiB bodies, 5xx,
 *    slowness) so every failure class is hit deterministically.
 * Plus a listening socket that never accepts (silent server) and a closed
 * port (refused).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <microhttpd.h>

#include "nomad.h"
#include "util.h"

#define TOKEN		"s3cr3t-token-0123456789"
#define BIG_BODY	(5u * 1024 * 1024)
/* How far past its deadline a batch may return (scheduling slack on a busy host). */
#define MARGIN_MS	750

/* ---------------------------------------------------------------------------
 * The fault server.
 */

struct seen {			/* the last request, for assertions */
	char method[8];
	char path[256];
	char token[64];
	char ns[64];
	char region[64];
	char agent[64];
	char body[1024];
	int hits;
};

static struct MHD_Daemon *fault_d;
static int fault_port;
static pthread_mutex_t seen_mu = PTHREAD_MUTEX_INITIALIZER;
static struct seen seen;
static int flaky_left;		/* 503s still to serve to job "flaky" */
static int slow_ms;		/* delay for job "slow" */

struct upload {
	char buf[1024];
	size_t len;
};

static const char STATUS_OK[] =
	"{\"JobID\":\"ok\",\"Namespace\":\"default\",\"JobCreateIndex\":112,\"JobModifyIndex\":187,"
	"\"JobStopped\":false,\"TaskGroups\":{\"worker\":{\"Desired\":3,\"Placed\":3,\"Running\":2,"
	"\"Healthy\":0,\"Unhealthy\":0,\"Events\":[{\"Time\":1767225600123456789,\"Count\":3,"
	"\"PreviousCount\":2,\"Message\":\"backlog\",\"Error\":false,\"Meta\":{\"backlog\":450},"
	"\"EvalID\":\"e1\",\"CreateIndex\":186},{\"Time\":1767225500000000000}]}}}";

static const struct canned {
	const char *job;
	unsigned code;
	const char *body;
} canned[] = {
	{ "ok", 200, STATUS_OK },
	{ "slow", 200, STATUS_OK },
	{ "stopped", 200, "{\"JobStopped\":true,\"TaskGroups\":{\"worker\":{\"Desired\":0,\"Placed\":0,"
	    "\"Running\":0,\"Events\":null}}}" },
	{ "junk", 200, "{not json" },
	{ "empty", 200, "" },
	{ "trailing", 200, "{\"TaskGroups\":{}} x" },
	{ "array", 200, "[1,2,3]" },
	{ "nogroups", 200, "{\"JobID\":\"x\",\"JobStopped\":false}" },
	{ "groupsnull", 200, "{\"TaskGroups\":null}" },
	{ "wrongtype", 200, "{\"TaskGroups\":{\"worker\":{\"Desired\":\"3\",\"Placed\":3,\"Running\":3}}}" },
	{ "huge", 200, "{\"TaskGroups\":{\"worker\":{\"Desired\":1e300,\"Placed\":3,\"Running\":3}}}" },
	{ "overflow", 200, "{\"TaskGroups\":{\"worker\":{\"Desired\":1e999,\"Placed\":3,\"Running\":3}}}" },
	{ "negative", 200, "{\"TaskGroups\":{\"worker\":{\"Desired\":-1,\"Placed\":3,\"Running\":3}}}" },
	{ "fraction", 200, "{\"TaskGroups\":{\"worker\":{\"Desired\":2.5,\"Placed\":3,\"Running\":3}}}" },
	{ "missingrun", 200, "{\"TaskGroups\":{\"worker\":{\"Desired\":2,\"Placed\":3}}}" },
	{ "groupstr", 200, "{\"TaskGroups\":{\"worker\":\"many\"}}" },
	{ "stoppedstr", 200, "{\"JobStopped\":\"no\",\"TaskGroups\":{}}" },
	{ "eventsobj", 200, "{\"TaskGroups\":{\"worker\":{\"Desired\":1,\"Placed\":1,\"Running\":1,"
	    "\"Events\":{}}}}" },
	{ "eventtime", 200, "{\"TaskGroups\":{\"worker\":{\"Desired\":1,\"Placed\":1,\"Running\":1,"
	    "\"Events\":[{\"Time\":\"yesterday\"}]}}}" },
	{ "down", 500, "No cluster leader" },
	{ "deploy", 400, "job scaling blocked due to active deployment" },
	{ "badgroup", 400, "task group \"nope\" specified for scaling does not exist in job" },
	{ "forbid", 403, "Permission denied" },
	{ "missing", 404, "job not found" },
	{ "gone", 410, "Gone" },
	{ "blank", 404, "" },
	{ "busy", 429, "Too many requests" },
	{ "moved", 302, "" },
	{ "ugly", 403, "  Permission\r\ndenied\x01\x7f\xff by policy \t\n" },
	{ "long", 400, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" },
};

/* gzip of {"JobStopped":false,"TaskGroups":{"worker":{"Desired":7,"Placed":7,"Running":6,"Events":null}}} */
static const char STATUS_GZIP[] =
	"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03\xab\x56\xf2\xca\x4f\x0a\x2e\xc9\x2f\x28\x48\x4d\x51\xb2\x4a\x4b"
	"\xcc\x29\x4e\xd5\x51\x0a\x49\x2c\xce\x76\x2f\xca\x2f\x2d\x28\x56\xb2\xaa\x56\x2a\xcf\x2f\xca\x4e\x2d\x02"
	"\xb1\x5c\x52\x8b\x33\x8b\x40\xea\xcc\x75\x94\x02\x72\x12\x93\xa1\xcc\xa0\xd2\xbc\xbc\xcc\xbc\x74\x25\x2b"
	"\x33\x1d\x25\xd7\xb2\xd4\xbc\x12\xa0\xb6\xbc\xd2\x9c\x9c\xda\xda\x5a\x00\x85\xf2\xac\x70\x5f\x00\x00\x00";

static const char SCALE_OK[] = "{\"EvalID\":\"9d0c2a4e-5f3b-4f1c-9a7e-0b6d2c8e4f11\",\"EvalCreateIndex\":201,"
	"\"JobModifyIndex\":200,\"Warnings\":\"\",\"Index\":202,\"LastContact\":0,\"KnownLeader\":true,"
	"\"NextToken\":\"\"}";

static void
copy_value(struct MHD_Connection *conn, enum MHD_ValueKind kind, const char *key, char *dst, size_t len)
{
	const char *v = MHD_lookup_connection_value(conn, kind, key);

	util_strlcpy(dst, v != NULL ? v : "", len);
}

/* Streams a body that is cut short (truncated) or very large (no length). */
static ssize_t
stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	const char *mode = cls;

	if (strcmp(mode, "truncated") == 0) {
		if (pos > 0)
			return MHD_CONTENT_READER_END_WITH_ERROR;
		memcpy(buf, "{\"TaskGroups\":{", 15 < max ? 15 : max);
		return 15 < max ? 15 : (ssize_t)max;
	}
	if (pos >= BIG_BODY)
		return MHD_CONTENT_READER_END_OF_STREAM;
	memset(buf, ' ', max);
	return (ssize_t)max;
}

static enum MHD_Result
fault_handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
    const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	struct upload *up = *con_cls;
	struct MHD_Response *resp;
	enum MHD_Result ret;
	char job[128];
	const char *body = "", *p;
	unsigned code = 404;
	size_t jlen;

	(void)cls;
	(void)version;
	if (up == NULL) {
		if ((up = calloc(1, sizeof(*up))) == NULL)
			return MHD_NO;
		*con_cls = up;
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		size_t n = *upload_data_size;

		if (n > sizeof(up->buf) - 1 - up->len)
			n = sizeof(up->buf) - 1 - up->len;
		memcpy(up->buf + up->len, upload_data, n);
		up->len += n;
		*upload_data_size = 0;
		return MHD_YES;
	}

	/* The path arrives decoded: /v1/job/<id>/scale, id may hold '/'. */
	job[0] = '\0';
	if (strncmp(url, "/v1/job/", 8) == 0 && (p = strstr(url + 8, "/scale")) != NULL &&
	    p[6] == '\0' && (jlen = (size_t)(p - (url + 8))) < sizeof(job)) {
		memcpy(job, url + 8, jlen);
		job[jlen] = '\0';
	}
	pthread_mutex_lock(&seen_mu);
	seen.hits++;
	util_strlcpy(seen.method, method, sizeof(seen.method));
	util_strlcpy(seen.path, url, sizeof(seen.path));
	copy_value(conn, MHD_HEADER_KIND, "X-Nomad-Token", seen.token, sizeof(seen.token));
	copy_value(conn, MHD_HEADER_KIND, "User-Agent", seen.agent, sizeof(seen.agent));
	copy_value(conn, MHD_GET_ARGUMENT_KIND, "namespace", seen.ns, sizeof(seen.ns));
	copy_value(conn, MHD_GET_ARGUMENT_KIND, "region", seen.region, sizeof(seen.region));
	memcpy(seen.body, up->buf, up->len + 1);
	pthread_mutex_unlock(&seen_mu);

	if (strcmp(job, "truncated") == 0 || strcmp(job, "bigbody") == 0) {
		resp = MHD_create_response_from_callback(strcmp(job, "truncated") == 0 ? 1000 : MHD_SIZE_UNKNOWN,
		    64 * 1024, stream_reader, (void *)(uintptr_t)(strcmp(job, "truncated") == 0 ? "truncated" : "big"), NULL);
		code = 200;
		goto send;
	}
	if (strcmp(job, "gzipped") == 0) {
		/* Real Nomad compresses when asked (Accept-Encoding: gzip). */
		const char *ae = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept-Encoding");

		if (ae != NULL && strstr(ae, "gzip") != NULL) {
			resp = MHD_create_response_from_buffer(sizeof(STATUS_GZIP) - 1,
			    (void *)(uintptr_t)STATUS_GZIP, MHD_RESPMEM_PERSISTENT);
			if (resp != NULL)
				MHD_add_response_header(resp, "Content-Encoding", "gzip");
			code = 200;
			goto send;
		}
	}
	if (strcmp(job, "slow") == 0) {
		struct timespec ts = { slow_ms / 1000, (long)(slow_ms % 1000) * 1000000L };

		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
	if (strcmp(job, "flaky") == 0) {
		pthread_mutex_lock(&seen_mu);
		if (flaky_left > 0) {
			flaky_left--;
			code = 503;
			body = "No cluster leader";
		} else {
			code = 200;
			body = STATUS_OK;
		}
		pthread_mutex_unlock(&seen_mu);
	} else if (strcmp(method, "POST") == 0 && (strcmp(job, "ok") == 0 || strcmp(job, "a/b c") == 0)) {
		code = 200;
		body = SCALE_OK;
	} else if (strcmp(method, "POST") == 0 && strcmp(job, "scalejunk") == 0) {
		code = 200;
		body = "{\"EvalID\":5,\"Index\":3}";
	} else if (strcmp(method, "POST") == 0 && strcmp(job, "noindex") == 0) {
		code = 200;
		body = "{\"EvalID\":\"x\"}";
	} else {
		for (size_t i = 0; i < ARRAY_LEN(canned); i++) {
			if (strcmp(job, canned[i].job) == 0) {
				code = canned[i].code;
				body = canned[i].body;
				break;
			}
		}
	}
	resp = MHD_create_response_from_buffer(strlen(body), (void *)(uintptr_t)body, MHD_RESPMEM_PERSISTENT);
send:
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", code == 200 ? "application/json" : "text/plain; charset=utf-8");
	if (code == 302)
		MHD_add_response_header(resp, "Location", "http://127.0.0.1:1/elsewhere");
	ret = MHD_queue_response(conn, code, resp);
	MHD_destroy_response(resp);
	return ret;
}

static int connections_opened;

static void
fault_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
    enum MHD_ConnectionNotificationCode toe)
{
	(void)cls;
	(void)conn;
	(void)socket_context;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		pthread_mutex_lock(&seen_mu);
		connections_opened++;
		pthread_mutex_unlock(&seen_mu);
	}
}

static void
fault_done(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)conn;
	(void)toe;
	free(*con_cls);
	*con_cls = NULL;
}

/* A loopback socket bound to a free port; listening or not. */
static int
loopback_socket(bool do_listen, int *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int fd;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) < 0 ||
	    (do_listen && listen(fd, 128) < 0)) {
		close(fd);
		return -1;
	}
	*port = ntohs(sa.sin_port);
	return fd;
}

/* ---------------------------------------------------------------------------
 * Helpers.
 */

/* A client for scheme://127.0.0.1:port/ (NULL strings are "not set"). */
static struct nomad_client *
client_tls(const char *scheme, int port, const char *token, const char *ns, const char *region,
    const char *ca, const char *cert, const char *key, int64_t timeout_ms)
{
	char addr[64], err[256];
	struct nomad_conf conf = { 0 };
	struct nomad_client *c;

	snprintf(addr, sizeof(addr), "%s://127.0.0.1:%d/", scheme, port);
	conf.address = addr;
	conf.token = (char *)(uintptr_t)token;
	conf.namespace = (char *)(uintptr_t)ns;
	conf.region = (char *)(uintptr_t)region;
	conf.ca_file = (char *)(uintptr_t)ca;
	conf.cert_file = (char *)(uintptr_t)cert;
	conf.key_file = (char *)(uintptr_t)key;
	conf.timeout_ms = timeout_ms;
	c = nomad_client_new(&conf, err, sizeof(err));
	if (c == NULL)
		fprintf(stderr, "nomad_client_new: %s\n", err);
	return c;
}

static struct nomad_client *
client_for(int port, const char *token, const char *ns, const char *region, int64_t timeout_ms)
{
	return client_tls("http", port, token, ns, region, NULL, NULL, NULL, timeout_ms);
}

/* Remove a test's temporary folder unless SCALENO_KEEP_TMP is set. */
static void
tmpdir_remove(const char *dir)
{
	char cmd[300];

	if (getenv("SCALENO_KEEP_TMP") != NULL)
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

static struct nomad_call
status_call(const char *job, const char *group)
{
	struct nomad_call c = { .kind = NOMAD_CALL_STATUS, .job = job, .group = group };

	return c;
}

static struct nomad_call
scale_call(const char *job, const char *group, int count)
{
	struct nomad_call c = { .kind = NOMAD_CALL_SCALE, .job = job, .group = group, .count = count,
	    .message = "backlog 1200 > 300", .meta_json = "{\"backlog\":1200,\"age_s\":4.5}" };

	return c;
}

/* Run one call against the fault server and return it. */
static struct nomad_call
fault_one(struct nomad_call call, int64_t timeout_ms)
{
	struct nomad_client *c = client_for(fault_port, TOKEN, NULL, NULL, timeout_ms);

	CU_ASSERT_FATAL(c != NULL);
	nomad_perform(c, &call, 1);
	nomad_client_free(c);
	return call;
}

static int
fault_init(void)
{
	int fd = loopback_socket(false, &fault_port);

	if (fd < 0)
		return -1;
	close(fd);	/* the kernel will not hand this port out again at once */
	fault_d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC,
	    (uint16_t)fault_port, NULL, NULL, fault_handler, NULL,
	    MHD_OPTION_NOTIFY_COMPLETED, fault_done, NULL,
	    MHD_OPTION_NOTIFY_CONNECTION, fault_connection, NULL,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
	return fault_d != NULL ? 0 : -1;
}

static int
fault_cleanup(void)
{
	if (fault_d != NULL)
		MHD_stop_daemon(fault_d);
	fault_d = NULL;
	return 0;
}

/* ---------------------------------------------------------------------------
 * Fault-server tests.
 */

static void
test_status_parse(void)
{
	struct nomad_client *c = client_for(fault_port, TOKEN, "batch ns", "eu-west", 3000);
	struct nomad_call calls[4] = { status_call("ok", "worker"), status_call("stopped", "worker"),
	    status_call("ok", "nosuchgroup"), status_call("gzipped", "worker") };

	CU_ASSERT_FATAL(c != NULL);
	CU_ASSERT_EQUAL(nomad_perform(c, calls, 4), 4);
	CU_ASSERT_EQUAL(calls[3].desired, 7);
	CU_ASSERT_EQUAL(calls[3].running, 6);
	CU_ASSERT_EQUAL(calls[0].result, NOMAD_OK);
	CU_ASSERT_EQUAL(calls[0].http_status, 200);
	CU_ASSERT_EQUAL(calls[0].desired, 3);
	CU_ASSERT_EQUAL(calls[0].placed, 3);
	CU_ASSERT_EQUAL(calls[0].running, 2);
	CU_ASSERT_FALSE(calls[0].job_stopped);
	CU_ASSERT_TRUE(calls[0].group_found);
	CU_ASSERT_DOUBLE_EQUAL(calls[0].last_event_time_s, 1767225600.123456789, 1e-3);
	CU_ASSERT_EQUAL(calls[0].attempts, 1);

	CU_ASSERT_EQUAL(calls[1].result, NOMAD_OK);
	CU_ASSERT_TRUE(calls[1].job_stopped);
	CU_ASSERT_TRUE(calls[1].group_found);
	CU_ASSERT_EQUAL(calls[1].desired, 0);
	CU_ASSERT_DOUBLE_EQUAL(calls[1].last_event_time_s, 0, 1e-9);

	CU_ASSERT_EQUAL(calls[2].result, NOMAD_OK);
	CU_ASSERT_FALSE(calls[2].group_found);

	/* Token in its header, namespace and region in the query. */
	pthread_mutex_lock(&seen_mu);
	CU_ASSERT_STRING_EQUAL(seen.token, TOKEN);
	CU_ASSERT_STRING_EQUAL(seen.ns, "batch ns");
	CU_ASSERT_STRING_EQUAL(seen.region, "eu-west");
	CU_ASSERT_STRING_EQUAL(seen.method, "GET");
	CU_ASSERT_EQUAL(strncmp(seen.agent, "scaleno/", 8), 0);
	pthread_mutex_unlock(&seen_mu);
	nomad_client_free(c);
}

static void
test_scale_request(void)
{
	struct nomad_call call = scale_call("a/b c", "worker", 5);
	cJSON *body, *target, *meta;

	call = fault_one(call, 3000);
	CU_ASSERT_EQUAL(call.result, NOMAD_OK);
	CU_ASSERT_STRING_EQUAL(call.eval_id, "9d0c2a4e-5f3b-4f1c-9a7e-0b6d2c8e4f11");
	CU_ASSERT_EQUAL(call.index, 202);

	pthread_mutex_lock(&seen_mu);
	CU_ASSERT_STRING_EQUAL(seen.method, "POST");
	/* One path segment: the '/' in the id arrived escaped, not as a new segment. */
	CU_ASSERT_STRING_EQUAL(seen.path, "/v1/job/a/b c/scale");
	CU_ASSERT_STRING_EQUAL(seen.ns, "");
	body = cJSON_Parse(seen.body);
	pthread_mutex_unlock(&seen_mu);
	CU_ASSERT_FATAL(body != NULL);
	CU_ASSERT_TRUE(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(body, "Count")));
	CU_ASSERT_EQUAL(cJSON_GetObjectItemCaseSensitive(body, "Count")->valueint, 5);
	target = cJSON_GetObjectItemCaseSensitive(body, "Target");
	CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(target, "Job")), "a/b c");
	CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(target, "Group")), "worker");
	CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "Message")),
	    "backlog 1200 > 300");
	meta = cJSON_GetObjectItemCaseSensitive(body, "Meta");
	CU_ASSERT_TRUE(cJSON_IsObject(meta));
	CU_ASSERT_DOUBLE_EQUAL(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(meta, "age_s")), 4.5, 1e-9);
	cJSON_Delete(body);
}

static void
test_scale_rejected_locally(void)
{
	struct nomad_call bad_meta = scale_call("ok", "worker", 2), neg = scale_call("ok", "worker", -1);
	int hits;

	pthread_mutex_lock(&seen_mu);
	hits = seen.hits;
	pthread_mutex_unlock(&seen_mu);
	bad_meta.meta_json = "{\"a\":1} trailing";
	bad_meta = fault_one(bad_meta, 3000);
	neg = fault_one(neg, 3000);
	CU_ASSERT_EQUAL(bad_meta.result, NOMAD_BAD_REQUEST);
	CU_ASSERT_STRING_EQUAL(bad_meta.error, "meta_json is not a JSON object");
	CU_ASSERT_EQUAL(neg.result, NOMAD_BAD_REQUEST);
	CU_ASSERT_EQUAL(bad_meta.attempts + neg.attempts, 0);
	pthread_mutex_lock(&seen_mu);
	CU_ASSERT_EQUAL(seen.hits, hits);
	pthread_mutex_unlock(&seen_mu);
}

static void
test_bad_replies(void)
{
	static const char *jobs[] = { "junk", "empty", "trailing", "array", "nogroups", "groupsnull",
	    "wrongtype", "huge", "overflow", "negative", "fraction", "missingrun", "groupstr", "stoppedstr", "eventsobj",
	    "eventtime", "truncated", "bigbody", "moved" };
	struct nomad_call calls[ARRAY_LEN(jobs) + 2];
	struct nomad_client *c = client_for(fault_port, TOKEN, NULL, NULL, 5000);
	int n = (int)ARRAY_LEN(jobs);

	CU_ASSERT_FATAL(c != NULL);
	for (int i = 0; i < n; i++)
		calls[i] = status_call(jobs[i], "worker");
	calls[n++] = scale_call("scalejunk", "worker", 1);
	calls[n++] = scale_call("noindex", "worker", 1);
	CU_ASSERT_EQUAL(nomad_perform(c, calls, n), 0);
	for (int i = 0; i < n; i++) {
		if (calls[i].result != NOMAD_BAD_REPLY)
			fprintf(stderr, "job %s: %s (%s)\n", calls[i].job, nomad_result_name(calls[i].result),
			    calls[i].error);
		CU_ASSERT_EQUAL(calls[i].result, NOMAD_BAD_REPLY);
		CU_ASSERT(calls[i].error[0] != '\0');
		CU_ASSERT_EQUAL(calls[i].attempts, 1);
	}
	nomad_client_free(c);
}

static void
test_error_classes(void)
{
	static const struct {
		const char *job;
		enum nomad_call_kind kind;
		enum nomad_result want;
		const char *error;
	} cases[] = {
		{ "deploy", NOMAD_CALL_SCALE, NOMAD_DEPLOYMENT_ACTIVE,
		    "HTTP 400: job scaling blocked due to active deployment" },
		{ "badgroup", NOMAD_CALL_SCALE, NOMAD_BAD_REQUEST,
		    "HTTP 400: task group \"nope\" specified for scaling does not exist in job" },
		{ "forbid", NOMAD_CALL_STATUS, NOMAD_FORBIDDEN, "HTTP 403: Permission denied" },
		{ "missing", NOMAD_CALL_STATUS, NOMAD_NOT_FOUND, "HTTP 404: job not found" },
		{ "gone", NOMAD_CALL_STATUS, NOMAD_BAD_REQUEST, "HTTP 410: Gone" },
		{ "blank", NOMAD_CALL_STATUS, NOMAD_NOT_FOUND, "HTTP 404" },
		{ "ugly", NOMAD_CALL_STATUS, NOMAD_FORBIDDEN, "HTTP 403: Permission  denied??? by policy" },
	};
	struct nomad_call calls[ARRAY_LEN(cases) + 1];
	struct nomad_client *c = client_for(fault_port, TOKEN, NULL, NULL, 3000);
	int n = (int)ARRAY_LEN(cases);

	CU_ASSERT_FATAL(c != NULL);
	for (int i = 0; i < n; i++)
		calls[i] = cases[i].kind == NOMAD_CALL_SCALE ? scale_call(cases[i].job, "worker", 4) :
		    status_call(cases[i].job, "worker");
	calls[n] = status_call("long", "worker");
	CU_ASSERT_EQUAL(nomad_perform(c, calls, n + 1), 0);
	for (int i = 0; i < n; i++) {
		CU_ASSERT_EQUAL(calls[i].result, cases[i].want);
		CU_ASSERT_STRING_EQUAL(calls[i].error, cases[i].error);
		CU_ASSERT_EQUAL(calls[i].attempts, 1);
		CU_ASSERT_PTR_NULL(strstr(calls[i].error, TOKEN));
	}
	CU_ASSERT_EQUAL(calls[n].result, NOMAD_BAD_REQUEST);
	CU_ASSERT(strlen(calls[n].error) < 200);
	CU_ASSERT(strstr(calls[n].error, "...") != NULL);
	CU_ASSERT_FALSE(nomad_result_transient(NOMAD_NOT_FOUND));
	CU_ASSERT_TRUE(nomad_result_transient(NOMAD_DEPLOYMENT_ACTIVE));
	CU_ASSERT_STRING_EQUAL(nomad_result_name(NOMAD_DEPLOYMENT_ACTIVE), "deployment_active");
	nomad_client_free(c);
}

static void
test_retry_5xx(void)
{
	struct nomad_call flaky = status_call("flaky", "worker"), down = status_call("down", "worker");
	struct nomad_call busy = status_call("busy", "worker");
	struct nomad_client *c = client_for(fault_port, TOKEN, NULL, NULL, 4000);
	int64_t t0;

	CU_ASSERT_FATAL(c != NULL);
	pthread_mutex_lock(&seen_mu);
	flaky_left = 2;
	pthread_mutex_unlock(&seen_mu);
	nomad_perform(c, &flaky, 1);
	CU_ASSERT_EQUAL(flaky.result, NOMAD_OK);
	CU_ASSERT_EQUAL(flaky.attempts, 3);
	CU_ASSERT_EQUAL(flaky.desired, 3);

	t0 = util_now_ms();
	nomad_perform(c, &down, 1);
	fprintf(stderr, "[500 forever: %d attempts in %lldms] ", down.attempts, (long long)(util_now_ms() - t0));
	CU_ASSERT_EQUAL(down.result, NOMAD_SERVER_ERROR);
	CU_ASSERT_EQUAL(down.http_status, 500);
	CU_ASSERT_STRING_EQUAL(down.error, "HTTP 500: No cluster leader");
	CU_ASSERT(down.attempts > 1);
	CU_ASSERT(util_now_ms() - t0 <= 4000 + MARGIN_MS);

	nomad_perform(c, &busy, 1);
	CU_ASSERT_EQUAL(busy.result, NOMAD_SERVER_ERROR);
	CU_ASSERT(busy.attempts > 1);
	nomad_client_free(c);
}

static void
test_timeout_silent(void)
{
	struct nomad_call calls[40];
	struct nomad_client *c;
	int port, fd = loopback_socket(true, &port);
	int64_t t0, took;

	CU_ASSERT_FATAL(fd >= 0);
	/* Connections complete in the kernel's backlog; nobody ever answers. */
	c = client_for(port, TOKEN, NULL, NULL, 1000);
	CU_ASSERT_FATAL(c != NULL);
	for (size_t i = 0; i < ARRAY_LEN(calls); i++)
		calls[i] = i % 2 ? status_call("ok", "worker") : scale_call("ok", "worker", 2);
	t0 = util_now_ms();
	CU_ASSERT_EQUAL(nomad_perform(c, calls, (int)ARRAY_LEN(calls)), 0);
	took = util_now_ms() - t0;
	for (size_t i = 0; i < ARRAY_LEN(calls); i++) {
		CU_ASSERT_EQUAL(calls[i].result, NOMAD_TIMEOUT);
		CU_ASSERT_EQUAL(calls[i].http_status, 0);
	}
	fprintf(stderr, "[40 calls to a silent server, timeout 1000ms: %lldms] ", (long long)took);
	CU_ASSERT(took >= 1000 - 20);
	CU_ASSERT(took <= 1000 + MARGIN_MS);
	nomad_client_free(c);
	close(fd);
}

static void
test_refused(void)
{
	struct nomad_call call = status_call("ok", "worker");
	struct nomad_client *c;
	int port, fd = loopback_socket(false, &port);
	int64_t t0, took;

	CU_ASSERT_FATAL(fd >= 0);
	/* Bound but not listening: connects are refused at once. */
	c = client_for(port, TOKEN, NULL, NULL, 5000);
	CU_ASSERT_FATAL(c != NULL);
	t0 = util_now_ms();
	nomad_perform(c, &call, 1);
	took = util_now_ms() - t0;
	fprintf(stderr, "[refused: %d attempts in %lldms] ", call.attempts, (long long)took);
	CU_ASSERT_EQUAL(call.result, NOMAD_CONNECT);
	CU_ASSERT(call.attempts > 1);
	CU_ASSERT(took < 5000 / 2);
	CU_ASSERT_PTR_NULL(strstr(call.error, TOKEN));
	nomad_client_free(c);
	close(fd);
}

static void
test_concurrent_slow(void)
{
	struct nomad_call calls[16];
	struct nomad_client *c = client_for(fault_port, TOKEN, NULL, NULL, 3000);
	int64_t t0, took;

	CU_ASSERT_FATAL(c != NULL);
	/* One at a time this would take 16 * 500ms, far past the 3s deadline. */
	slow_ms = 500;
	for (size_t i = 0; i < ARRAY_LEN(calls); i++)
		calls[i] = status_call("slow", "worker");
	t0 = util_now_ms();
	CU_ASSERT_EQUAL(nomad_perform(c, calls, (int)ARRAY_LEN(calls)), (int)ARRAY_LEN(calls));
	took = util_now_ms() - t0;
	CU_ASSERT(took < 3000);
	fprintf(stderr, "[16 calls x 500ms server delay: %lldms] ", (long long)took);

	/* Slower than the deadline: every call ends TIMEOUT close to it. */
	slow_ms = 2500;
	for (size_t i = 0; i < ARRAY_LEN(calls); i++)
		calls[i] = status_call("slow", "worker");
	nomad_client_free(c);
	c = client_for(fault_port, TOKEN, NULL, NULL, 1000);
	CU_ASSERT_FATAL(c != NULL);
	t0 = util_now_ms();
	CU_ASSERT_EQUAL(nomad_perform(c, calls, (int)ARRAY_LEN(calls)), 0);
	took = util_now_ms() - t0;
	for (size_t i = 0; i < ARRAY_LEN(calls); i++)
		CU_ASSERT_EQUAL(calls[i].result, NOMAD_TIMEOUT);
	CU_ASSERT(took <= 1000 + MARGIN_MS);
	nomad_client_free(c);
}

/* More calls than the client hands to curl at once: the rest queue and all complete. */
static void
test_large_batch(void)
{
	enum { N = 1000 };
	struct nomad_call *calls = calloc(N, sizeof(*calls));
	struct nomad_client *c = client_for(fault_port, TOKEN, NULL, NULL, 10000);
	int64_t t0;

	CU_ASSERT_FATAL(calls != NULL && c != NULL);
	slow_ms = 0;
	for (int i = 0; i < N; i++)
		calls[i] = i % 2 ? status_call("ok", "worker") : scale_call("ok", "worker", 2);
	t0 = util_now_ms();
	CU_ASSERT_EQUAL(nomad_perform(c, calls, N), N);
	fprintf(stderr, "[%d calls in one batch: %lldms] ", N, (long long)(util_now_ms() - t0));
	for (int i = 0; i < N; i++)
		CU_ASSERT_EQUAL(calls[i].result, NOMAD_OK);
	CU_ASSERT_EQUAL(calls[1].desired, calls[N - 1].desired);
	nomad_client_free(c);
	free(calls);
}

static void
test_connection_reuse(void)
{
	struct nomad_client *c = client_for(fault_port, TOKEN, NULL, NULL, 3000);
	struct nomad_call calls[4];
	int before, first = 0;

	CU_ASSERT_FATAL(c != NULL);
	pthread_mutex_lock(&seen_mu);
	before = connections_opened;
	pthread_mutex_unlock(&seen_mu);
	for (int batch = 0; batch < 3; batch++) {
		for (size_t i = 0; i < ARRAY_LEN(calls); i++)
			calls[i] = i % 2 ? status_call("ok", "worker") : scale_call("ok", "worker", 3);
		CU_ASSERT_EQUAL(nomad_perform(c, calls, (int)ARRAY_LEN(calls)), (int)ARRAY_LEN(calls));
		pthread_mutex_lock(&seen_mu);
		if (batch == 0)
			first = connections_opened - before;
		else
			CU_ASSERT_EQUAL(connections_opened - before, first);	/* no new connections */
		pthread_mutex_unlock(&seen_mu);
	}
	CU_ASSERT(first >= 1 && first <= (int)ARRAY_LEN(calls));
	nomad_client_free(c);
}

static void
test_client_new_errors(void)
{
	struct nomad_conf conf = { 0 };
	char err[256];

	conf.address = (char *)(uintptr_t)"ftp://nomad:4646";
	CU_ASSERT_PTR_NULL(nomad_client_new(&conf, err, sizeof(err)));
	CU_ASSERT(strstr(err, "http://") != NULL);
	conf.address = (char *)(uintptr_t)"http://nomad host:4646";
	CU_ASSERT_PTR_NULL(nomad_client_new(&conf, err, sizeof(err)));
	CU_ASSERT(strstr(err, "not a valid URL") != NULL);
	conf.address = (char *)(uintptr_t)"http://127.0.0.1:4646";
	conf.token = (char *)(uintptr_t)"abc\r\nX-Evil: 1";
	CU_ASSERT_PTR_NULL(nomad_client_new(&conf, err, sizeof(err)));
	CU_ASSERT_PTR_NULL(strstr(err, "abc"));
	CU_ASSERT(strstr(err, "token") != NULL);
}

/* ---------------------------------------------------------------------------
 * TLS: a CA, a server and a client certificate made with openssl(1), and the
 * fault server's handler behind libmicrohttpd's TLS.
 */

static struct MHD_Daemon *tls_d;
static int tls_port;
static char tls_dir[] = "/tmp/scaleno-test-nomad-tls.XXXXXX";
static bool tls_dir_made;
static char *tls_srv_key, *tls_srv_cert, *tls_ca;

static char *
tls_path(const char *name)
{
	static char buf[4][256];
	static int next;
	char *p = buf[next++ % 4];

	snprintf(p, sizeof(buf[0]), "%s/%s", tls_dir, name);
	return p;
}

static char *
slurp(const char *path)
{
	char err[256];

	return util_read_secret(path, 64 * 1024, err, sizeof(err));
}

static int
tls_init(void)
{
	struct strbuf cmd = { 0 };
	int fd, rc;

	if (mkdtemp(tls_dir) == NULL)
		return -1;
	tls_dir_made = true;
	strbuf_printf(&cmd, "cd '%s' && exec >openssl.log 2>&1 && "
	    "printf 'subjectAltName=IP:127.0.0.1,DNS:server.global.nomad\\n' >san.ext && "
	    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
	    "-subj /CN=scaleno-test-ca -keyout ca.key -out ca.pem && "
	    "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=127.0.0.1 "
	    "-keyout srv.key -out srv.csr && "
	    "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
	    "-extfile san.ext -out srv.pem && "
	    "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=scaleno "
	    "-keyout cli.key -out cli.csr && "
	    "openssl x509 -req -in cli.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out cli.pem",
	    tls_dir);
	rc = cmd.oom ? -1 : system(cmd.s);
	strbuf_free(&cmd);
	if (rc != 0) {
		fprintf(stderr, "openssl failed: see %s/openssl.log\n", tls_dir);
		return -1;
	}
	if ((tls_srv_key = slurp(tls_path("srv.key"))) == NULL || (tls_srv_cert = slurp(tls_path("srv.pem"))) == NULL ||
	    (tls_ca = slurp(tls_path("ca.pem"))) == NULL)
		return -1;
	if ((fd = loopback_socket(false, &tls_port)) < 0)
		return -1;
	close(fd);
	tls_d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
	    MHD_USE_TLS, (uint16_t)tls_port, NULL, NULL, fault_handler, NULL,
	    MHD_OPTION_NOTIFY_COMPLETED, fault_done, NULL,
	    MHD_OPTION_HTTPS_MEM_KEY, tls_srv_key, MHD_OPTION_HTTPS_MEM_CERT, tls_srv_cert,
	    MHD_OPTION_HTTPS_MEM_TRUST, tls_ca,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
	return tls_d != NULL ? 0 : -1;
}

static int
tls_cleanup(void)
{
	if (tls_d != NULL)
		MHD_stop_daemon(tls_d);
	tls_d = NULL;
	free(tls_srv_key);
	free(tls_srv_cert);
	free(tls_ca);
	if (tls_dir_made)
		tmpdir_remove(tls_dir);
	return 0;
}

static struct nomad_call
tls_one(const char *ca, const char *cert, const char *key)
{
	struct nomad_client *c = client_tls("https", tls_port, TOKEN, NULL, NULL, ca, cert, key, 3000);
	struct nomad_call call = status_call("ok", "worker");

	CU_ASSERT_FATAL(c != NULL);
	nomad_perform(c, &call, 1);
	nomad_client_free(c);
	return call;
}

static void
test_tls(void)
{
	struct nomad_call call;

	call = tls_one(tls_path("ca.pem"), tls_path("cli.pem"), tls_path("cli.key"));
	CU_ASSERT_EQUAL(call.result, NOMAD_OK);
	CU_ASSERT_EQUAL(call.desired, 3);
	pthread_mutex_lock(&seen_mu);
	CU_ASSERT_STRING_EQUAL(seen.token, TOKEN);
	pthread_mutex_unlock(&seen_mu);

	/* Without our CA the server's certificate is not trusted: no retries. */
	call = tls_one(NULL, NULL, NULL);
	CU_ASSERT_EQUAL(call.result, NOMAD_CONNECT);
	CU_ASSERT_EQUAL(call.attempts, 1);

	/* nomad.tls_server_name: the certificate is checked for that name, the address connected to. */
	{
		char addr[64], err[256];
		struct nomad_conf conf = { .ca_file = tls_path("ca.pem"), .timeout_ms = 3000 };
		const char *names[] = { "server.global.nomad", "other.global.nomad" };
		enum nomad_result want[] = { NOMAD_OK, NOMAD_CONNECT };

		snprintf(addr, sizeof(addr), "https://127.0.0.1:%d", tls_port);
		conf.address = addr;
		for (int i = 0; i < 2; i++) {
			struct nomad_client *c;

			conf.tls_server_name = (char *)(uintptr_t)names[i];
			c = nomad_client_new(&conf, err, sizeof(err));
			CU_ASSERT_FATAL(c != NULL);
			call = status_call("ok", "worker");
			nomad_perform(c, &call, 1);
			CU_ASSERT_EQUAL(call.result, want[i]);
			nomad_client_free(c);
		}
		conf.tls_server_name = (char *)(uintptr_t)"bad name:1";
		CU_ASSERT_PTR_NULL(nomad_client_new(&conf, err, sizeof(err)));
		CU_ASSERT(strstr(err, "tls_server_name") != NULL);
	}

	/* A client certificate that cannot be loaded is reported, not ignored. */
	call = tls_one(tls_path("ca.pem"), tls_path("missing.pem"), tls_path("cli.key"));
	CU_ASSERT_EQUAL(call.result, NOMAD_CONNECT);
	CU_ASSERT(call.error[0] != '\0');
}

/* ---------------------------------------------------------------------------
 * The Nomad stand-in (contrib/nomad-standin.py), in its own process group.
 */

#define BENCH_JOBS	70
#define STANDIN_REGION	"eu-1"
#define WRONG_TOKEN	"not-the-token"

static pid_t standin_pid = -1;
static int standin_port;
static char standin_dir[] = "/tmp/scaleno-test-nomad.XXXXXX";
static bool standin_dir_made;

static size_t
sink_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct strbuf *b = userdata;

	strbuf_printf(b, "%.*s", (int)(size * nmemb), ptr);
	return b->oom ? 0 : size * nmemb;
}

/*
 * One request to the stand-in's control API (not part of the client under
 * test). Returns the HTTP status (0 on failure); *reply (caller frees) when
 * reply is non-NULL.
 */
static long
standin_http(const char *method, const char *path, const char *body, char **reply)
{
	struct strbuf out = { 0 };
	char url[256];
	CURL *e = curl_easy_init();
	long code = 0;

	if (e == NULL)
		return 0;
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", standin_port, path);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &out);
	if (body != NULL)
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	if (curl_easy_perform(e) == CURLE_OK)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(e);
	if (reply != NULL)
		*reply = out.s != NULL ? strbuf_steal(&out) : strdup("");
	else
		strbuf_free(&out);
	return code;
}

static void
standin_faults(const char *json)
{
	CU_ASSERT_EQUAL(standin_http("POST", "/_standin/faults", json, NULL), 200);
}

/* The newest logged /v1 request, parsed (caller deletes), or NULL. */
static cJSON *
standin_last_request(void)
{
	char *text = NULL;
	cJSON *all, *last = NULL;

	if (standin_http("GET", "/_standin/requests", NULL, &text) == 200 && (all = cJSON_Parse(text)) != NULL) {
		int n = cJSON_GetArraySize(all);

		if (n > 0)
			last = cJSON_DetachItemFromArray(all, n - 1);
		cJSON_Delete(all);
	}
	free(text);
	return last;
}

static const char *
json_str(const cJSON *o, const char *key)
{
	const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));

	return s != NULL ? s : "";
}

static int
write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (f == NULL)
		return -1;
	fputs(text, f);
	return fclose(f);
}

static int
standin_write_files(void)
{
	struct strbuf jobs = { 0 };
	char path[256];
	int rc;

	strbuf_printf(&jobs, "{\"Jobs\": ["
	    "{\"ID\": \"ingest\", \"TaskGroups\": [{\"Name\": \"worker\", \"Count\": 2,"
	    "  \"Scaling\": {\"Min\": 0, \"Max\": 20}}]},"
	    "{\"ID\": \"sleepy\", \"Stop\": true, \"TaskGroups\": [{\"Name\": \"worker\", \"Count\": 1}]},"
	    "{\"ID\": \"bounded\", \"TaskGroups\": [{\"Name\": \"worker\", \"Count\": 2, \"Scaling\": {\"Max\": 3},"
	    "  \"Events\": [{\"Age\": \"5s\", \"Count\": null, \"Error\": true, \"Message\": \"metric down\"},"
	    "             {\"Age\": \"10s\", \"Count\": 2, \"PreviousCount\": 3}]}]},"
	    "{\"ID\": \"rolling\", \"ActiveDeployment\": true, \"TaskGroups\": [{\"Name\": \"worker\", \"Count\": 1}]},"
	    "{\"ID\": \"etl/nightly\", \"Namespace\": \"batch\", \"TaskGroups\": [{\"Name\": \"w\", \"Count\": 3}]}");
	for (int i = 0; i < BENCH_JOBS; i++)
		strbuf_printf(&jobs, ",{\"ID\": \"bench-%02d\", \"TaskGroups\": [{\"Name\": \"worker\", \"Count\": %d}]}",
		    i, i % 5);
	strbuf_printf(&jobs, "]}\n");
	snprintf(path, sizeof(path), "%s/jobs.json", standin_dir);
	rc = jobs.oom ? -1 : write_text(path, jobs.s);
	strbuf_free(&jobs);
	snprintf(path, sizeof(path), "%s/acl.json", standin_dir);
	if (rc == 0)
		rc = write_text(path, "{\"Tokens\": [{\"SecretID\": \"" TOKEN "\", \"Name\": \"autoscaler\","
		    " \"Type\": \"client\", \"Namespaces\": {\"*\": [\"scale\", \"read\"]}}]}\n");
	return rc;
}

/* Poll (bounded) for the ready file the stand-in writes once it listens. */
static int
standin_wait_ready(void)
{
	char path[256], buf[64];

	snprintf(path, sizeof(path), "%s/ready", standin_dir);
	for (int i = 0; i < 200; i++) {	/* 200 x 50ms = 10s */
		FILE *f = fopen(path, "r");
		const char *colon;

		if (f != NULL) {
			size_t n = fread(buf, 1, sizeof(buf) - 1, f);

			fclose(f);
			buf[n] = '\0';
			if ((colon = strrchr(buf, ':')) != NULL && atoi(colon + 1) > 0) {
				standin_port = atoi(colon + 1);
				return 0;
			}
		}
		if (waitpid(standin_pid, NULL, WNOHANG) == standin_pid) {
			standin_pid = -1;
			return -1;
		}
		util_sleep_ms(50, NULL);
	}
	return -1;
}

static int
standin_cleanup(void)
{
	if (standin_pid > 0) {
		kill(-standin_pid, SIGTERM);
		for (int i = 0; i < 100 && waitpid(standin_pid, NULL, WNOHANG) == 0; i++)	/* 5s */
			util_sleep_ms(50, NULL);
		kill(-standin_pid, SIGKILL);
		waitpid(standin_pid, NULL, 0);
		standin_pid = -1;
	}
	if (standin_dir_made)
		tmpdir_remove(standin_dir);
	return 0;
}

static int
standin_init(void)
{
	const char *top = getenv("SCALENO_TOP");
	char script[512], jobs[256], acl[256], ready[256], state[256], logf[256], outf[256];

	snprintf(script, sizeof(script), "%s/contrib/nomad-standin.py", top != NULL ? top : ".");
	if (access(script, R_OK) != 0) {
		fprintf(stderr, "no Nomad stand-in at %s\n", script);
		return -1;
	}
	if (mkdtemp(standin_dir) == NULL)
		return -1;
	standin_dir_made = true;
	if (standin_write_files() < 0)
		return -1;
	snprintf(jobs, sizeof(jobs), "%s/jobs.json", standin_dir);
	snprintf(acl, sizeof(acl), "%s/acl.json", standin_dir);
	snprintf(ready, sizeof(ready), "%s/ready", standin_dir);
	snprintf(state, sizeof(state), "%s/state", standin_dir);
	snprintf(logf, sizeof(logf), "%s/standin.log", standin_dir);
	snprintf(outf, sizeof(outf), "%s/standin.out", standin_dir);
	if ((standin_pid = fork()) < 0)
		return -1;
	if (standin_pid == 0) {
		int out = open(outf, O_WRONLY | O_CREAT | O_APPEND, 0600);

		/* Its tracebacks (e.g. a client that gave up) belong in a file, not in our output. */
		if (out >= 0) {
			dup2(out, STDOUT_FILENO);
			dup2(out, STDERR_FILENO);
		}
		setsid();
		execlp("python3", "python3", script, "--jobs", jobs, "--acl-tokens", acl, "--listen", "127.0.0.1:0",
		    "--ready-file", ready, "--region", STANDIN_REGION, "--state-dir", state, "--log", logf,
		    (char *)NULL);
		_exit(127);
	}
	if (standin_wait_ready() < 0) {
		fprintf(stderr, "the Nomad stand-in did not start (log: %s)\n", logf);
		standin_cleanup();
		return -1;
	}
	return 0;
}

static struct nomad_client *
standin_client(const char *token, const char *ns, int64_t timeout_ms)
{
	return client_for(standin_port, token, ns, STANDIN_REGION, timeout_ms);
}

static void
test_standin_status_and_scale(void)
{
	struct nomad_client *c = standin_client(TOKEN, NULL, 3000);
	struct nomad_call st[3] = { status_call("ingest", "worker"), status_call("sleepy", "worker"),
	    status_call("ingest", "other") };
	struct nomad_call sc = scale_call("ingest", "worker", 4);
	double before = (double)util_wall_ms() / 1000.0;
	cJSON *req, *body;

	CU_ASSERT_FATAL(c != NULL);
	CU_ASSERT_EQUAL(nomad_perform(c, st, 3), 3);
	CU_ASSERT_EQUAL(st[0].desired, 2);
	CU_ASSERT_EQUAL(st[0].placed, 2);
	CU_ASSERT_TRUE(st[0].group_found);
	CU_ASSERT_FALSE(st[0].job_stopped);
	CU_ASSERT_TRUE(st[1].job_stopped);
	CU_ASSERT_FALSE(st[2].group_found);

	CU_ASSERT_EQUAL(nomad_perform(c, &sc, 1), 1);
	CU_ASSERT_EQUAL(sc.result, NOMAD_OK);
	CU_ASSERT(sc.eval_id[0] != '\0');
	CU_ASSERT(sc.index > 0);
	req = standin_last_request();
	CU_ASSERT_FATAL(req != NULL);
	CU_ASSERT_STRING_EQUAL(json_str(req, "Method"), "POST");
	CU_ASSERT_STRING_EQUAL(json_str(req, "Token"), TOKEN);
	CU_ASSERT(strstr(json_str(req, "TokenHeader"), "Nomad-Token") != NULL);
	body = cJSON_Parse(json_str(req, "Body"));
	CU_ASSERT_EQUAL(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(body, "Count")), 4);
	cJSON_Delete(body);
	cJSON_Delete(req);

	st[0] = status_call("ingest", "worker");
	CU_ASSERT_EQUAL(nomad_perform(c, st, 1), 1);
	CU_ASSERT_EQUAL(st[0].desired, 4);
	CU_ASSERT(st[0].last_event_time_s >= before - 1);
	CU_ASSERT(st[0].last_event_time_s <= (double)util_wall_ms() / 1000.0 + 1);
	nomad_client_free(c);
}

static void
test_standin_failures(void)
{
	struct nomad_client *c = standin_client(TOKEN, NULL, 3000), *bad = standin_client(WRONG_TOKEN, NULL, 3000);
	struct nomad_call calls[4] = { scale_call("rolling", "worker", 2), status_call("nope", "worker"),
	    scale_call("nope", "worker", 1), scale_call("ingest", "nosuchgroup", 1) };
	struct nomad_call denied = status_call("ingest", "worker");

	CU_ASSERT_FATAL(c != NULL && bad != NULL);
	CU_ASSERT_EQUAL(nomad_perform(c, calls, 4), 0);
	CU_ASSERT_EQUAL(calls[0].result, NOMAD_DEPLOYMENT_ACTIVE);
	CU_ASSERT_EQUAL(calls[1].result, NOMAD_NOT_FOUND);
	CU_ASSERT_STRING_EQUAL(calls[1].error, "HTTP 404: job not found");
	CU_ASSERT_EQUAL(calls[2].result, NOMAD_NOT_FOUND);
	CU_ASSERT_EQUAL(calls[3].result, NOMAD_BAD_REQUEST);
	CU_ASSERT(strstr(calls[3].error, "does not exist in job") != NULL);

	CU_ASSERT_EQUAL(nomad_perform(bad, &denied, 1), 0);
	CU_ASSERT_EQUAL(denied.result, NOMAD_FORBIDDEN);
	CU_ASSERT_STRING_EQUAL(denied.error, "HTTP 403: Permission denied");
	CU_ASSERT_PTR_NULL(strstr(denied.error, WRONG_TOKEN));
	nomad_client_free(c);
	nomad_client_free(bad);
}

static void
test_standin_namespace_region(void)
{
	struct nomad_client *c = standin_client(TOKEN, "batch", 3000);
	struct nomad_call call = status_call("etl/nightly", "w");
	cJSON *req, *q;

	CU_ASSERT_FATAL(c != NULL);
	CU_ASSERT_EQUAL(nomad_perform(c, &call, 1), 1);
	CU_ASSERT_EQUAL(call.desired, 3);
	req = standin_last_request();
	CU_ASSERT_FATAL(req != NULL);
	q = cJSON_GetObjectItemCaseSensitive(req, "Query");
	CU_ASSERT_STRING_EQUAL(json_str(q, "namespace"), "batch");
	CU_ASSERT_STRING_EQUAL(json_str(q, "region"), STANDIN_REGION);
	CU_ASSERT_STRING_EQUAL(json_str(req, "Path"), "/v1/job/etl%2Fnightly/scale");
	cJSON_Delete(req);

	/* The per-call namespace wins over the client's. */
	call = status_call("ingest", "worker");
	call.namespace = "default";
	CU_ASSERT_EQUAL(nomad_perform(c, &call, 1), 1);
	nomad_client_free(c);
}

/* The job's scaling block, the job list, the scaling history, and the errors a retry cannot fix. */
static void
test_standin_bounds_list_history(void)
{
	struct nomad_client *c = standin_client(TOKEN, NULL, 3000);
	struct nomad_call calls[4] = { status_call("bounded", "worker"), status_call("bounded", "worker"),
	    scale_call("bounded", "worker", 4), scale_call("bounded", "worker", 1) };
	const struct nomad_stub *st;
	const struct nomad_stub_group *sg;
	double now = (double)util_wall_ms() / 1000.0;

	CU_ASSERT_FATAL(c != NULL);
	calls[1].kind = NOMAD_CALL_JOB;
	nomad_perform(c, calls, 4);
	/* Events: the newest is an error without a count, so the one before is the last action. */
	CU_ASSERT_EQUAL(calls[0].result, NOMAD_OK);
	CU_ASSERT_TRUE(calls[0].event.found);
	CU_ASSERT_EQUAL(calls[0].event.count, 2);
	CU_ASSERT_EQUAL(calls[0].event.previous, 3);
	/* 10 s before the stand-in started, which was a little earlier than now */
	CU_ASSERT(calls[0].event.time_s > now - 300 && calls[0].event.time_s < now - 9);
	CU_ASSERT(calls[0].last_event_time_s > calls[0].event.time_s);
	/* The job: Scaling without Min gets the count as its minimum. */
	CU_ASSERT_EQUAL(calls[1].result, NOMAD_OK);
	CU_ASSERT_TRUE(calls[1].group_found);
	CU_ASSERT_EQUAL(calls[1].scaling_min, 2);
	CU_ASSERT_EQUAL(calls[1].scaling_max, 3);
	CU_ASSERT(calls[1].job_modify_index > 0);
	/* A 400 naming a bound teaches it. */
	CU_ASSERT_EQUAL(calls[2].result, NOMAD_OUT_OF_BOUNDS);
	CU_ASSERT_EQUAL(calls[2].bound_max, 3);
	CU_ASSERT_EQUAL(calls[2].bound_min, -1);
	CU_ASSERT_EQUAL(calls[3].result, NOMAD_OUT_OF_BOUNDS);
	CU_ASSERT_EQUAL(calls[3].bound_min, 2);
	CU_ASSERT_FALSE(nomad_result_transient(NOMAD_OUT_OF_BOUNDS));

	/* One GET /v1/jobs: every job, sorted, with its summary. */
	memset(&calls[0], 0, sizeof(calls[0]));
	calls[0].kind = NOMAD_CALL_JOBS;
	calls[0].stale = true;
	CU_ASSERT_EQUAL(nomad_perform(c, calls, 1), 1);
	CU_ASSERT(calls[0].nstubs >= BENCH_JOBS + 3);
	for (size_t i = 1; i < calls[0].nstubs; i++)
		CU_ASSERT(strcmp(calls[0].stubs[i - 1].id, calls[0].stubs[i].id) < 0);
	st = nomad_stub_find(&calls[0], "bounded");
	CU_ASSERT_FATAL(st != NULL);
	CU_ASSERT(st->job_modify_index > 0);
	sg = nomad_stub_group(st, "worker");
	CU_ASSERT_FATAL(sg != NULL);
	CU_ASSERT_EQUAL(sg->running + sg->starting, 2);
	CU_ASSERT_EQUAL(sg->queued, 0);
	CU_ASSERT_PTR_NULL(nomad_stub_group(st, "nosuch"));
	CU_ASSERT_PTR_NULL(nomad_stub_find(&calls[0], "nosuch"));
	CU_ASSERT_TRUE(nomad_stub_find(&calls[0], "sleepy")->stop);
	nomad_call_clear(&calls[0]);
	CU_ASSERT_EQUAL(calls[0].nstubs, 0);

	/* job_max_count: a configuration error, not retried. */
	standin_faults("{\"job_max_count\": 3}");
	calls[0] = scale_call("ingest", "worker", 9);
	nomad_perform(c, calls, 1);
	CU_ASSERT_EQUAL(calls[0].result, NOMAD_CONFIG);
	CU_ASSERT_EQUAL(calls[0].attempts, 1);
	CU_ASSERT(strstr(calls[0].error, "job_max_count") != NULL);
	CU_ASSERT_FALSE(nomad_result_transient(NOMAD_CONFIG));
	standin_faults("{\"clear\": true}");
	nomad_client_free(c);

	/* An unknown region: the same. */
	c = client_for(standin_port, TOKEN, NULL, "mars", 3000);
	CU_ASSERT_FATAL(c != NULL);
	calls[0] = status_call("ingest", "worker");
	nomad_perform(c, calls, 1);
	CU_ASSERT_EQUAL(calls[0].result, NOMAD_CONFIG);
	CU_ASSERT_EQUAL(calls[0].attempts, 1);
	nomad_client_free(c);
}

static void
test_standin_faults(void)
{
	struct nomad_client *c = standin_client(TOKEN, NULL, 2000);
	struct nomad_call call = status_call("ingest", "worker");
	int64_t t0, took;

	CU_ASSERT_FATAL(c != NULL);
	standin_faults("{\"clear\": true, \"errors\": 2, \"error_status\": 503}");
	CU_ASSERT_EQUAL(nomad_perform(c, &call, 1), 1);
	CU_ASSERT_EQUAL(call.attempts, 3);

	standin_faults("{\"clear\": true, \"errors\": -1}");
	t0 = util_now_ms();
	nomad_perform(c, &call, 1);
	took = util_now_ms() - t0;
	CU_ASSERT_EQUAL(call.result, NOMAD_SERVER_ERROR);
	CU_ASSERT_STRING_EQUAL(call.error, "HTTP 500: No cluster leader");
	CU_ASSERT(took <= 2000 + MARGIN_MS);

	standin_faults("{\"clear\": true, \"malformed\": 1}");
	nomad_perform(c, &call, 1);
	CU_ASSERT_EQUAL(call.result, NOMAD_BAD_REPLY);

	/* The listening socket closed for a while: refused at once, retried, CONNECT. */
	standin_faults("{\"clear\": true, \"refuse_ms\": 3000}");
	t0 = util_now_ms();
	nomad_perform(c, &call, 1);
	took = util_now_ms() - t0;
	CU_ASSERT_EQUAL(call.result, NOMAD_CONNECT);
	CU_ASSERT(call.attempts > 1);
	CU_ASSERT(took < 2000);
	for (int i = 0; i < 100 && standin_http("GET", "/_standin/faults", NULL, NULL) != 200; i++)	/* 5s */
		util_sleep_ms(50, NULL);

	standin_faults("{\"clear\": true, \"delay_ms\": 4000}");
	t0 = util_now_ms();
	nomad_perform(c, &call, 1);
	took = util_now_ms() - t0;
	CU_ASSERT_EQUAL(call.result, NOMAD_TIMEOUT);
	CU_ASSERT(took <= 2000 + MARGIN_MS);
	standin_faults("{\"clear\": true}");
	nomad_client_free(c);
}

/* Not a pass/fail timing: prints the latency of a 70-job status batch. */
static void
test_standin_batch_latency(void)
{
	struct nomad_client *c = standin_client(TOKEN, NULL, 5000);
	struct nomad_call calls[BENCH_JOBS];
	char names[BENCH_JOBS][16];
	int64_t took[5];

	CU_ASSERT_FATAL(c != NULL);
	for (int i = 0; i < BENCH_JOBS; i++)
		snprintf(names[i], sizeof(names[i]), "bench-%02d", i);
	for (size_t r = 0; r < ARRAY_LEN(took); r++) {
		int64_t t0 = util_now_ms();

		for (int i = 0; i < BENCH_JOBS; i++)
			calls[i] = status_call(names[i], "worker");
		CU_ASSERT_EQUAL(nomad_perform(c, calls, BENCH_JOBS), BENCH_JOBS);
		took[r] = util_now_ms() - t0;
		for (int i = 0; i < BENCH_JOBS; i++)
			CU_ASSERT_EQUAL(calls[i].desired, i % 5);
	}
	fprintf(stderr, "[status batch of %d jobs: %lld ms cold, then %lld %lld %lld %lld ms] ", BENCH_JOBS,
	    (long long)took[0], (long long)took[1], (long long)took[2], (long long)took[3], (long long)took[4]);
	nomad_client_free(c);
}

int
main(void)
{
	CU_pSuite s;
	int failures;

	signal(SIGPIPE, SIG_IGN);
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("nomad-fault-server", fault_init, fault_cleanup);
	CU_add_test(s, "status parse, token, query", test_status_parse);
	CU_add_test(s, "scale request body and escaping", test_scale_request);
	CU_add_test(s, "scale refused before sending", test_scale_rejected_locally);
	CU_add_test(s, "bad replies", test_bad_replies);
	CU_add_test(s, "error classes", test_error_classes);
	CU_add_test(s, "5xx retried", test_retry_5xx);
	CU_add_test(s, "silent server times out", test_timeout_silent);
	CU_add_test(s, "refused connection", test_refused);
	CU_add_test(s, "concurrent slow calls", test_concurrent_slow);
	CU_add_test(s, "a batch larger than the in-flight cap", test_large_batch);
	CU_add_test(s, "connections reused across batches", test_connection_reuse);
	CU_add_test(s, "client_new errors", test_client_new_errors);
	s = CU_add_suite("nomad-tls", tls_init, tls_cleanup);
	CU_add_test(s, "TLS with CA and client certificate", test_tls);
	s = CU_add_suite("nomad-standin", standin_init, standin_cleanup);
	CU_add_test(s, "status and scale", test_standin_status_and_scale);
	CU_add_test(s, "deployment, 404, 400, 403", test_standin_failures);
	CU_add_test(s, "namespace and region", test_standin_namespace_region);
	CU_add_test(s, "status batch latency", test_standin_batch_latency);
	CU_add_test(s, "faults: 5xx, malformed, slow", test_standin_faults);
	CU_add_test(s, "job bounds, job list, history, config errors", test_standin_bounds_list_history);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failures = (int)CU_get_number_of_failures() + (int)CU_get_number_of_suites_failed();
	CU_cleanup_registry();
	return failures != 0;
}
