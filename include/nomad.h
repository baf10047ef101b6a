/*
 * nomad — the Nomad HTTP API client: the scale endpoints
 * (GET and POST /v1/job/:job/scale), their JSON and their errors, on top of
 * httpc (the HTTP transport).
 *
 * Calls are issued in batches that run concurrently on one httpc client
 * (connections are reused across batches), so one slow job never holds the
 * others back: a whole batch finishes within the configured timeout.
 */
#ifndef SCALENO_NOMAD_H
#define SCALENO_NOMAD_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

enum nomad_call_kind { NOMAD_CALL_STATUS = 0, NOMAD_CALL_SCALE };

/* How a call ended; the agent reacts to the class, logs the text. */
enum nomad_result {
	NOMAD_OK = 0,
	NOMAD_DEPLOYMENT_ACTIVE,	/* 400 "job scaling blocked due to active deployment": try next tick */
	NOMAD_NOT_FOUND,		/* 404: job (or namespace) does not exist */
	NOMAD_FORBIDDEN,		/* 403: token lacks the capability */
	NOMAD_BAD_REQUEST,		/* other 4xx (or refused before sending: bad meta_json, count < 0) */
	NOMAD_SERVER_ERROR,		/* 5xx, 429 */
	NOMAD_TIMEOUT,
	NOMAD_CONNECT,			/* refused, DNS, TLS handshake */
	NOMAD_BAD_REPLY,		/* 200 with a body we cannot use, other statuses, > 4 MiB */
	NOMAD_INTERNAL,			/* out of memory, curl setup failure */
};

/* One request and its answer. The caller owns the strings it passes in. */
struct nomad_call {
	enum nomad_call_kind kind;
	const char *job;
	const char *group;
	const char *namespace;		/* NULL: the client's default */
	/* NOMAD_CALL_SCALE */
	int count;
	const char *message;		/* the decision's reason */
	const char *meta_json;		/* JSON object text for Meta, or NULL */

	/* results */
	enum nomad_result result;
	long http_status;		/* 0 when no HTTP answer */
	char error[256];		/* human-readable, never contains the token */
	int attempts;			/* HTTP attempts made (retries within the batch) */
	/* NOMAD_CALL_STATUS results */
	int desired, placed, running;
	bool job_stopped;
	bool group_found;		/* false: the job exists but has no such group */
	double last_event_time_s;	/* newest scaling event, wall-clock seconds; 0 if none */
	/* NOMAD_CALL_SCALE results */
	char eval_id[64];
	uint64_t index;
};

struct nomad_client;

/*
 * Create a client from the [nomad] section (already merged with the
 * NOMAD_* environment by config). The strings are copied. The address must
 * be http:// or https://; the token (sent as X-Nomad-Token, never logged)
 * must not contain a line break. Returns NULL with err filled (err never
 * contains the token). Free with nomad_client_free. The first call runs
 * curl_global_init, so make it before starting threads.
 */
struct nomad_client *nomad_client_new(const struct nomad_conf *conf, char *err, size_t errlen);
void nomad_client_free(struct nomad_client *c);

/*
 * Run n calls concurrently and fill in their results (every result field is
 * reset first; the caller's strings are only read during the call). Failures
 * that may pass (5xx, 429, timeouts, refused connections, DNS) are retried
 * with exponential backoff and full jitter, at most 4 attempts per call, and
 * never past the batch deadline: the whole call returns within about
 * nomad.timeout of its start, whatever the number of calls or the server's
 * behaviour. Calls still unanswered then end NOMAD_TIMEOUT.
 * Returns the number of calls that ended NOMAD_OK. One client must not be
 * used by two threads at once.
 */
int nomad_perform(struct nomad_client *c, struct nomad_call *calls, int n);

/* Zero c and aim it at the job, group and namespace of a policy's scale section. */
void nomad_call_init(struct nomad_call *c, enum nomad_call_kind kind, const struct scale_conf *sc);

const char *nomad_result_name(enum nomad_result r);
/* True for results that say "try again later" rather than "this policy is wrong". */
bool nomad_result_transient(enum nomad_result r);

#endif
