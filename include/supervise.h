/*
 * supervise — the process supervisor of `scaleno worker`: forks one child
 * per consumer slot, restarts dead ones with exponential backoff and
 * jitter (never giving up), forwards SIGINT/SIGTERM, and SIGKILLs whatever
 * has not drained at the deadline. An explicit state machine per slot,
 * signals through a self-pipe, every child (and every orphan re-parented to
 * it as a subreaper) reaped with waitpid(-1, WNOHANG).
 */
#ifndef SCALENO_SUPERVISE_H
#define SCALENO_SUPERVISE_H

#include <signal.h>
#include <stdint.h>

#include "config.h"
#include "httpd.h"
#include "wstats.h"

enum slot_state {
	SLOT_STARTING = 0,	/* forked, up for less than stable_ms */
	SLOT_RUNNING,		/* up for stable_ms or more: its backoff is reset */
	SLOT_BACKOFF,		/* dead, waiting for its restart time */
	SLOT_STOPPING,		/* told to drain */
	SLOT_STOPPED,		/* exited during the drain, or never restarted */
};

/*
 * The body of one child: runs in the forked process with SIGINT/SIGTERM
 * setting *stop, and returns its exit code.
 */
typedef int (*supervise_child_fn)(void *arg, int slot, volatile sig_atomic_t *stop);

struct supervise_opts {
	const char *name;		/* for logs and alerts: the queue name */
	int nslots;
	supervise_child_fn child;
	void *child_arg;
	struct worker_stats *stats;	/* consumer_restarts, crash_loop, consumers_running */
	const struct alert_conf *alert;	/* crash-loop alert; may be NULL */
	int64_t drain_timeout_ms;	/* children are SIGKILLed this long (+ a small grace) after the signal */
	int64_t kill_timeout_ms;	/* the orchestrator's SIGKILL (0 = unknown): we finish before it */
	int64_t backoff_base_ms;	/* 1 s */
	int64_t backoff_cap_ms;		/* 60 s */
	int64_t stable_ms;		/* 10 s up resets a slot's backoff */
	int crash_loop_deaths;		/* 5 deaths ... */
	int64_t crash_loop_window_ms;	/* ... within 60 s = crash loop */
	struct httpd *http;		/* a polled endpoint (httpd_start_polled) served from the loop; may be NULL */
};

/* Fill o with the defaults above (name, nslots, child, stats left zero). */
void supervise_defaults(struct supervise_opts *o);

/*
 * Run the supervisor until SIGINT/SIGTERM and the children's drain. Must be
 * called from the main thread (children get PR_SET_PDEATHSIG, which follows
 * the forking thread). Returns the exit code: 0 when every child drained
 * and exited 0 in time, 2 otherwise (one had to be killed, or setup failed).
 */
int supervise_run(const struct supervise_opts *o);

/* 1 once a stop signal arrived (readable from other threads, e.g. /healthz). */
int supervise_draining(void);

#endif
