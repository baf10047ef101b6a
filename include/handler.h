/*
 * handler — runs the user's handler command for one message, with the two
 * protocols of scaleno-worker(8): "exec" (one process per message, JSON on stdin,
 * exit code is the verdict) and "pipe" (one long-lived process per consumer,
 * one JSON line in, one reply line out, several lines in flight with
 * handler_run_batch). Started with execve, no shell;
 * message content never reaches argv.
 */
#ifndef SCALENO_HANDLER_H
#define SCALENO_HANDLER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "handler_msg.h"	/* handler_message_json */
#include "redis_msg.h"

/* struct message (redis_msg.h): one stream entry, fields binary-safe. */

enum handler_outcome {
	HANDLER_OK = 0,		/* done: acknowledge */
	HANDLER_RETRY,		/* failed, may succeed later */
	HANDLER_FAIL,		/* failed permanently: do not retry */
};

struct handler_result {
	enum handler_outcome outcome;
	char error[512];	/* why, for HANDLER_RETRY/FAIL (never message content) */
	double duration_s;
	int timed_out;		/* the per-message timeout (or drain deadline) fired */
	/*
	 * pipe, several messages in flight: the handler ended before a
	 * surplus reply could show, so this verdict may be another message's;
	 * run the message again (handler_run_batch).
	 */
	bool doubtful;
};

struct handler;

/*
 * Prepare a handler for q (does not start a process yet). NULL + err on
 * failure. Borrows q->worker.command (it must outlive the handler) and sets
 * SIGPIPE to SIG_IGN for the whole process: a handler that dies while we
 * write must give EPIPE, not kill the consumer.
 */
struct handler *handler_new(const struct queue_policy *q, char *err, size_t errlen);
/* Stops a pipe handler process (closes its stdin, waits 500 ms, then kills its group). */
void handler_free(struct handler *h);

/*
 * Run the handler on m. Blocks until the verdict, the per-message timeout,
 * or, once *draining becomes non-zero, drain_deadline_ms (monotonic ms,
 * read when draining flips; 0 = none) — whichever comes first. A timed-out
 * or crashed handler process is killed (its whole process group) and counts
 * as HANDLER_RETRY. Returns 0, or -1 when the handler could not be started
 * at all (result filled as HANDLER_RETRY with the reason).
 */
int handler_run(struct handler *h, const struct message *m,
    volatile sig_atomic_t *draining, const volatile int64_t *drain_deadline_ms,
    struct handler_result *res);

/*
 * Run the handler on ms[0..n), in order. pipe: the n lines are written
 * without waiting for the replies in between (n is the number of messages
 * in flight: keep it bounded, the consumer uses worker.batch), while the
 * replies are read, each mapped to its message in order. The per-message
 * timeout runs for each message in turn, from the reply to the one before
 * (from the start for the first); the drain deadline as in handler_run.
 * exec: one message after the other, stopping after one that timed out.
 * res (n entries, the caller's) gets the verdict of ms[i] for i < *nrun;
 * when *nrun < n the handler was killed at message *nrun - 1 (it died,
 * timed out, answered garbage) or memory ran out, and ms[*nrun..n) were
 * not run: they have no verdict and no attempt to count. *nrun == 0 with
 * n > 0 and a return of 0: the handler answered more lines than it was
 * sent (it answered one twice), so no reply can be matched to its message;
 * the handler was restarted, and the messages must be run again one at a
 * time (handler_run) with no attempt counted. A verdict marked doubtful
 * (the handler ended before a surplus could show) is not to be trusted:
 * that message runs again, no attempt counted. Returns 0, or -1
 * when the handler could not be started for ms[*nrun] (reason in
 * res[*nrun], as HANDLER_RETRY; the messages before it ran).
 */
int handler_run_batch(struct handler *h, const struct message *ms, size_t n,
    volatile sig_atomic_t *draining, const volatile int64_t *drain_deadline_ms,
    struct handler_result *res, size_t *nrun);

/*
 * fn(arg) is called about every 100 ms while a handler runs (between polls,
 * never from a signal handler): the consumer keeps its Redis state fresh
 * through long handler runs. NULL fn: none.
 */
void handler_set_tick(struct handler *h, void (*fn)(void *), void *arg);

/*
 * pipe, for a caller that overlaps the surplus watch of handler_run_batch
 * with its own work (the consumer's pipelined batches): with on, an
 * exchange (of one message or several) returns as soon as its last reply
 * is in, and the caller must call handler_settle before it trusts its
 * verdicts (before it acknowledges a success). A watch still due when the
 * next exchange starts runs first, there.
 */
void handler_defer_settle(struct handler *h, bool on);

/*
 * Watch for a surplus reply of the last deferred exchange until its watch
 * is over (at once when that time has passed). idle: the caller has
 * nothing else to do (its queue ran empty, or it stops), and the watch
 * lasts twice as long as a message has taken lately (2 ms..250 ms after
 * the last reply). 1: a surplus came: the handler was restarted and none
 * of that exchange's verdicts holds; 0: none.
 */
int handler_settle(struct handler *h, bool idle);

/*
 * pipe: how many times the pairing of replies to messages broke so far: a
 * surplus reply was found (in an exchange, by handler_settle, or as output
 * while idle, before the next message), or the handler ended (died, was
 * killed after a timeout or a reply that is not a verdict, closed its
 * stdout, exited while idle) before a surplus of an earlier exchange could
 * show. A caller that holds verdicts not yet acted on sees a change and
 * drops them; handler_break_reason says why, for its log.
 */
unsigned handler_break_count(const struct handler *h);
const char *handler_break_reason(const struct handler *h);

#endif
