/*
 * nomad — the Nomad HTTP API client: the scale endpoints
 * (GET and POST /v1/job/:job/scale), the job (GET /v1/job/:job, for its
 * scaling bounds) and the job list (GET /v1/jobs, for every job's counts in
 * one request), their JSON and their errors, on top of httpc (the HTTP
 * transport).
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

enum nomad_call_kind {
	NOMAD_CALL_STATUS = 0,		/* GET /v1/job/:job/scale */
	NOMAD_CALL_SCALE,		/* POST /v1/job/:job/scale */
	NOMAD_CALL_JOB,			/* GET /v1/job/:job: the group's scaling block */
	NOMAD_CALL_JOBS,		/* GET /v1/jobs: every job of the namespace (needs list-jobs) */
};

/* How a call ended; the agent reacts to the class, logs the text. */
enum nomad_result {
	NOMAD_OK = 0,
	NOMAD_DEPLOYMENT_ACTIVE,	/* 400 "job scaling blocked due to active deployment": try next tick */
	NOMAD_NOT_FOUND,		/* 404: job (or namespace) does not exist */
	NOMAD_FORBIDDEN,		/* 403: token lacks the capability */
	NOMAD_BAD_REQUEST,		/* other 4xx (or refused before sending: bad meta_json, count < 0) */
	NOMAD_OUT_OF_BOUNDS,		/* 400 naming the job's scaling min or max: see bound_min/bound_max */
	NOMAD_SERVER_ERROR,		/* 5xx, 429 */
	NOMAD_CONFIG,			/* a 500 no retry can fix: job_max_count, "No path to region" */
	NOMAD_TIMEOUT,
	NOMAD_CONNECT,			/* refused, DNS, TLS handshake */
	NOMAD_BAD_REPLY,		/* 200 with a body we cannot use, other statuses, > 4 MiB */
	NOMAD_INTERNAL,			/* out of memory, curl setup failure */
};

/* The newest scaling event of a group that changed its count and was not an error. */
struct nomad_event {
	bool found;
	double time_s;			/* wall clock, seconds since the epoch */
	int count, previous;
};

/* One job of a GET /v1/jobs answer: its JobModifyIndex and its summary per group. */
struct nomad_stub_group {
	char *name;
	int queued, starting, running;
};

struct nomad_stub {
	char *id;
	uint64_t job_modify_index;
	bool stop;
	struct nomad_stub_group *groups;
	size_t ngroups;
};

/* One request and its answer. The caller owns the strings it passes in. */
struct nomad_call {
	enum nomad_call_kind kind;
	const char *job;		/* not for NOMAD_CALL_JOBS */
	const char *group;		/* not for NOMAD_CALL_JOBS */
	const char *namespace;		/* NULL: the client's default */
	bool stale;			/* reads: any server may answer (?stale) */
	/* NOMAD_CALL_SCALE */
	int count;
	bool no_count;			/* record a scaling event only: no Count, nothing changes */
	const char *message;		/* the decision's reason */
	const char *meta_json;		/* JSON object text for Meta, or NULL */

	/* results */
	enum nomad_result result;
	long http_status;		/* 0 when no HTTP answer */
	char error[256];		/* human-readable, never contains the token */
	int attempts;			/* HTTP attempts made (retries within the batch) */
	/* NOMAD_OUT_OF_BOUNDS: the bound the 400 named, -1 for the other */
	int bound_min, bound_max;
	/* NOMAD_CALL_STATUS and NOMAD_CALL_JOB results */
	int desired, placed, running;	/* JOB: desired only (the group's Count) */
	bool job_stopped;
	bool group_found;		/* false: the job exists but has no such group */
	double last_event_time_s;	/* newest scaling event, wall-clock seconds; 0 if none */
	struct nomad_event event;	/* STATUS: the newest counted, non-error event */
	/* NOMAD_CALL_JOB results: the group's scaling block, -1/-1 when it has none */
	int scaling_min, scaling_max;
	char job_type[16];		/* service, batch, system, sysbatch */
	/* JOB and SCALE: the job's JobModifyIndex (afterwards); STATUS: its ModifyIndex */
	uint64_t job_modify_index;
	/* NOMAD_CALL_SCALE results */
	char eval_id[64];
	uint64_t index;
	/* NOMAD_CALL_JOBS results, sorted by id; freed by nomad_call_clear */
	struct nomad_stub *stubs;
	size_t nstubs;
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

/* Free what a call's results hold (the NOMAD_CALL_JOBS stubs); c stays usable. */
void nomad_call_clear(struct nomad_call *c);

/* The stub of job id in a NOMAD_CALL_JOBS answer, or NULL. */
const struct nomad_stub *nomad_stub_find(const struct nomad_call *c, const char *id);
/* The summary of group in a stub, or NULL. */
const struct nomad_stub_group *nomad_stub_group(const struct nomad_stub *st, const char *group);

const char *nomad_result_name(enum nomad_result r);
/* True for results that say "try again later" rather than "this policy is wrong". */
bool nomad_result_transient(enum nomad_result r);

#endif
