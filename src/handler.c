/*
 * handler.c — the two handler protocols of scaleno-worker(8),
 * HANDLER PROTOCOLS.
 *
 * A handler process is started by spawn_exec: its own process group, no
 * inherited descriptor, signals reset, killed with its consumer, and an
 * exec failure reported as a clear error ("command not found"), not as an
 * exit status 127 that looks like a crash.
 *
 * Writing the messages and reading the replies (or the exit) happen in one
 * poll loop, so multi-megabyte messages never deadlock against a handler
 * that writes before it has read everything, nor a pipe handler with a
 * whole batch of lines in flight (handler_run_batch) against one that
 * blocks writing its replies. The handler's stderr is inherited:
 * it goes to the worker's own stderr (the journal, Nomad's log), and error
 * texts are built only from exit statuses and the handler's own reply
 * reason, never from message content.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "handler.h"
#include "log.h"
#include "spawn.h"
#include "util.h"

extern char **environ;

#define REPLY_MAX 4096		/* longest accepted pipe reply line */
#define POLL_SLICE_MS 100	/* re-check the draining flag at least this often */
#define NOPIDFD_TICK_MS 2	/* exec: exit polling when pidfd_open is unavailable */
#define NOPIDFD_PIPE_TICK_MS 20	/* pipe: the same, for a handler that lives on between messages */
#define STOP_GRACE_MS 500	/* handler_free: time a pipe handler gets after EOF */
#define ENCODE_AHEAD (256 * 1024)	/* pipe: message bytes encoded ahead of the writer */
#define WRITE_IOV 256		/* pipe: message lines per writev (a whole batch) */
#define READ_CHUNK 16384	/* pipe: reply bytes per read */
#define SETTLE_MIN_US 30	/* pipe batch: watch for a surplus reply at least this long, */
#define SETTLE_MAX_US 250000	/* and at most this long (3 x the mean time per reply between) */
#define IDLE_WATCH_MIN_S 0.002	/* handler_settle when idle: at least this long */

struct proc {
	pid_t pid;		/* 0 = not started */
	int reaped;		/* pid has been waited for (its group may live on) */
	int status;		/* its wait status, once reaped */
	int pidfd;		/* -1 when the kernel has no pidfd_open */
	int in_fd;		/* its stdin (write end), -1 once closed */
	int out_fd;		/* its stdout (read end), pipe protocol only */
};

struct handler {
	char *const *argv;	/* borrowed from the queue policy */
	enum handler_protocol proto;
	int64_t timeout_ms;
	char *queue, *stream;
	struct proc p;		/* the long-lived pipe handler */
	void (*tick)(void *);	/* handler_set_tick */
	void *tick_arg;
	char reply[REPLY_MAX + 1];
	size_t rlen;
	bool defer_settle;	/* handler_defer_settle */
	double settle_last;	/* deferred: when the last exchange's last reply came (monotonic s), */
	double settle_until;	/* and until when to watch for a surplus; 0 = nothing to watch */
	double slow_s;		/* the longest time between two replies lately (decaying) */
	unsigned breaks;	/* handler_break_count */
	const char *break_why;	/* handler_break_reason */
};

/* What one exchange with a handler process ended with. */
enum io_end { IO_DONE = 0, IO_TIMEOUT, IO_EOF, IO_OVERLONG, IO_GARBAGE, IO_ERROR, IO_SURPLUS };

/* exec: one message written to a process whose exit is the verdict. */
struct io {
	const char *wbuf;	/* message line still to write */
	size_t wlen, woff;
	int status;		/* wait status */
	int deadline_is_drain;
};

/* One message of a pipelined pipe exchange. */
struct slot {
	char *line;		/* its JSON line: encoded just before it is written, freed after */
	size_t len;
	double replied;		/* monotonic s when its reply came */
};

/*
 * A pipe exchange: n messages written back to back (the handler reads the
 * next line while we read its replies), replies taken in order. The
 * message whose clock runs is the first one without a reply (or, for a
 * handler that answers before reading everything, not yet fully written).
 */
struct exchange {
	const struct message *ms;
	struct slot *s;
	size_t n;
	size_t nenc;		/* messages encoded so far */
	size_t unwritten;	/* bytes encoded but not yet written */
	size_t wi, woff;	/* message being written, bytes of it written */
	size_t nrep;		/* replies received */
	double t0;		/* when it began: message 0's clock */
	int deadline_is_drain;
};

void
handler_set_tick(struct handler *h, void (*fn)(void *), void *arg)
{
	h->tick = fn;
	h->tick_arg = arg;
}

static void
tick(struct handler *h)
{
	if (h->tick != NULL)
		h->tick(h->tick_arg);
}

static void
proc_init(struct proc *p)
{
	p->pid = 0;
	p->reaped = 0;
	p->pidfd = p->in_fd = p->out_fd = -1;
}

static void
close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

/* Kill the whole process group (when asked), reap the leader, close its pipes. */
static int
proc_reap(struct proc *p, int kill_it)
{
	int st = p->reaped ? p->status : 0;

	if (p->pid > 0) {
		if (kill_it)
			spawn_kill_group(p->pid);
		while (!p->reaped && waitpid(p->pid, &st, 0) == -1 && errno == EINTR)
			;
	}
	close_fd(&p->in_fd);
	close_fd(&p->out_fd);
	close_fd(&p->pidfd);
	p->pid = 0;
	p->reaped = 0;
	return st;
}

/*
 * Start argv with stdin (and stdout when want_stdout) connected to pipes,
 * in its own process group, killed with its consumer. envp is built by the
 * caller before the fork. 0, or -1 with err filled.
 */
static int
proc_spawn(char *const *argv, char **envp, int want_stdout, struct proc *p,
    char *err, size_t errlen)
{
	struct spawn_opts o = { .argv = argv, .envp = envp, .new_group = true,
	    .pdeathsig = SIGKILL };
	int in[2] = { -1, -1 }, out[2] = { -1, -1 };
	bool exec_failed;
	pid_t pid;

	proc_init(p);
	if (pipe2(in, O_CLOEXEC) == -1 || (want_stdout && pipe2(out, O_CLOEXEC) == -1)) {
		snprintf(err, errlen, "cannot create pipes for the handler: %s", strerror(errno));
		goto fail;
	}
	o.stdin_fd = in[0];
	o.stdout_fd = out[1];
	if ((pid = spawn_exec(&o, &exec_failed)) == -1) {
		if (exec_failed)
			snprintf(err, errlen, "cannot run handler \"%s\": %s", argv[0], strerror(errno));
		else
			snprintf(err, errlen, "cannot fork the handler: %s", strerror(errno));
		goto fail;
	}
	close_fd(&in[0]);
	close_fd(&out[1]);
	p->pid = pid;
	p->in_fd = in[1];
	p->out_fd = out[0];
	p->pidfd = spawn_pidfd(pid);
	util_set_nonblock(p->in_fd);
	if (p->out_fd >= 0)
		util_set_nonblock(p->out_fd);
	return 0;
fail:
	close_fd(&in[0]);
	close_fd(&in[1]);
	close_fd(&out[0]);
	close_fd(&out[1]);
	return -1;
}

/*
 * Variables of the worker's environment a handler never gets, scaleno-worker(8)
 * "The handler's environment": credentials the worker does not need and a
 * handler must not see.
 */
static const char *const env_removed[] = { "NOMAD_TOKEN" };

/* Whether the "NAME=value" entry e names one of names[0..n) (each a bare NAME). */
static bool
env_names(const char *e, const char *const *names, size_t n)
{
	size_t elen = strcspn(e, "=");

	for (size_t j = 0; j < n; j++)
		if (strcspn(names[j], "=") == elen && strncmp(e, names[j], elen) == 0)
			return true;
	return false;
}

/*
 * environ without env_removed, plus SCALENO_* settings (replacing inherited
 * ones). Caller frees the array (the strings are borrowed).
 */
static char **
env_build(const char *const *add, size_t nadd)
{
	size_t n = 0, k = 0;
	char **envp;

	while (environ != NULL && environ[n] != NULL)
		n++;
	envp = calloc(n + nadd + 1, sizeof(*envp));
	if (envp == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (!env_names(environ[i], add, nadd) &&
		    !env_names(environ[i], env_removed, ARRAY_LEN(env_removed)))
			envp[k++] = environ[i];
	for (size_t j = 0; j < nadd; j++)
		envp[k++] = (char *)(uintptr_t)add[j];
	envp[k] = NULL;
	return envp;
}

static int64_t
io_deadline(int64_t start, int64_t timeout_ms, volatile sig_atomic_t *draining,
    const volatile int64_t *drain_deadline_ms, int *is_drain)
{
	int64_t d = timeout_ms > 0 ? start + timeout_ms : INT64_MAX;

	*is_drain = 0;
	if (draining != NULL && *draining && drain_deadline_ms != NULL && *drain_deadline_ms > 0 &&
	    *drain_deadline_ms < d) {
		d = *drain_deadline_ms;
		*is_drain = 1;
	}
	return d;
}

/*
 * exec: write io->wbuf to p, then close its stdin (EOF tells the handler
 * the message is complete), and wait for the exit, until the deadline. The
 * exit is the verdict however much it read. Returns an enum io_end.
 */
static int
io_run(struct handler *h, struct proc *p, struct io *io, int64_t start,
    volatile sig_atomic_t *draining, const volatile int64_t *drain_deadline_ms)
{
	for (;;) {
		struct pollfd pfd[2];
		int nfd = 0, iw = -1, ix = -1, tmo, rc;
		int64_t now, deadline;

		if (io->woff == io->wlen)
			close_fd(&p->in_fd);
		deadline = io_deadline(start, h->timeout_ms, draining, drain_deadline_ms,
		    &io->deadline_is_drain);
		now = util_now_ms();
		if (now >= deadline)
			return IO_TIMEOUT;
		tmo = deadline - now > POLL_SLICE_MS ? POLL_SLICE_MS : (int)(deadline - now);
		if (p->in_fd >= 0) {
			iw = nfd;
			pfd[nfd++] = (struct pollfd){ .fd = p->in_fd, .events = POLLOUT };
		}
		if (p->pidfd >= 0) {
			ix = nfd;
			pfd[nfd++] = (struct pollfd){ .fd = p->pidfd, .events = POLLIN };
		} else if (tmo > NOPIDFD_TICK_MS) {
			tmo = NOPIDFD_TICK_MS;
		}
		rc = poll(pfd, (nfds_t)nfd, tmo);
		if (rc == -1 && errno != EINTR)
			return IO_ERROR;
		tick(h);
		if (iw >= 0 && rc > 0 && pfd[iw].revents != 0) {
			ssize_t n = write(p->in_fd, io->wbuf + io->woff, io->wlen - io->woff);

			if (n > 0)
				io->woff += (size_t)n;
			else if (n == -1 && errno != EAGAIN && errno != EINTR)
				io->woff = io->wlen;	/* it closed its stdin (or died): wait for the exit */
		}
		if (ix < 0 || (rc > 0 && pfd[ix].revents != 0)) {
			pid_t r = waitpid(p->pid, &io->status, WNOHANG);

			if (r == p->pid) {
				p->reaped = 1;
				p->status = io->status;
				return IO_DONE;
			}
			if (r == -1 && errno != EINTR)
				return IO_ERROR;
		}
	}
}

static void
set_result(struct handler_result *res, enum handler_outcome o, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_result(struct handler_result *res, enum handler_outcome o, const char *fmt, ...)
{
	va_list ap;

	res->outcome = o;
	va_start(ap, fmt);
	vsnprintf(res->error, sizeof(res->error), fmt, ap);
	va_end(ap);
}

static void
set_timeout(struct handler *h, int deadline_is_drain, struct handler_result *res)
{
	char d[32];

	res->timed_out = 1;
	if (deadline_is_drain) {
		set_result(res, HANDLER_RETRY, "handler killed at the drain deadline");
	} else {
		util_format_duration(h->timeout_ms, d, sizeof(d));
		set_result(res, HANDLER_RETRY, "handler timed out after %s", d);
	}
}

struct handler *
handler_new(const struct queue_policy *q, char *err, size_t errlen)
{
	struct handler *h;

	if (q->worker.command == NULL || q->worker.command[0] == NULL) {
		snprintf(err, errlen, "queue %s: worker.command is empty", q->name);
		return NULL;
	}
	h = calloc(1, sizeof(*h));
	if (h == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->argv = q->worker.command;
	h->proto = q->worker.protocol;
	h->timeout_ms = q->worker.timeout_ms;
	h->queue = util_strdup(q->name);
	h->stream = util_strdup(q->stream != NULL ? q->stream : "");
	proc_init(&h->p);
	if (h->queue == NULL || h->stream == NULL) {
		snprintf(err, errlen, "out of memory");
		handler_free(h);
		return NULL;
	}
	/* A handler that dies mid-write must give EPIPE, not kill the consumer. */
	signal(SIGPIPE, SIG_IGN);
	return h;
}

void
handler_free(struct handler *h)
{
	if (h == NULL)
		return;
	if (h->p.pid > 0) {
		struct pollfd pfd;
		int64_t end = util_now_ms() + STOP_GRACE_MS;

		/* EOF on stdin is the polite way to stop a pipe handler. */
		close_fd(&h->p.in_fd);
		pfd.fd = h->p.pidfd >= 0 ? h->p.pidfd : h->p.out_fd;
		pfd.events = POLLIN;
		while (pfd.fd >= 0) {
			int64_t left = end - util_now_ms();
			char sink[256];

			if (left <= 0)
				break;
			if (poll(&pfd, 1, (int)left) > 0) {
				if (pfd.fd == h->p.pidfd || read(pfd.fd, sink, sizeof(sink)) == 0)
					break;
			}
		}
		proc_reap(&h->p, 1);
	}
	free(h->queue);
	free(h->stream);
	free(h);
}

static int
run_exec(struct handler *h, const struct message *m, const char *line, size_t len,
    int64_t start, volatile sig_atomic_t *draining, const volatile int64_t *drain_deadline_ms,
    struct handler_result *res)
{
	char e_queue[256], e_stream[256], e_id[80], e_delivery[48], e_attempt[48], how[96];
	const char *add[5] = { e_queue, e_stream, e_id, e_delivery, e_attempt };
	struct io io = { .wbuf = line, .wlen = len };
	struct proc p;
	char **envp;
	int rc;

	snprintf(e_queue, sizeof(e_queue), "SCALENO_QUEUE=%s", h->queue);
	snprintf(e_stream, sizeof(e_stream), "SCALENO_STREAM=%s", m->stream != NULL ? m->stream : h->stream);
	snprintf(e_id, sizeof(e_id), "SCALENO_ID=%s", m->id);
	snprintf(e_delivery, sizeof(e_delivery), "SCALENO_DELIVERY=%lld", (long long)m->delivery);
	snprintf(e_attempt, sizeof(e_attempt), "SCALENO_ATTEMPT=%lld",
	    (long long)(m->attempt > 0 ? m->attempt : 1));
	envp = env_build(add, ARRAY_LEN(add));
	if (envp == NULL) {
		set_result(res, HANDLER_RETRY, "out of memory");
		return -1;
	}
	rc = proc_spawn(h->argv, envp, 0, &p, res->error, sizeof(res->error));
	free(envp);
	if (rc == -1) {
		res->outcome = HANDLER_RETRY;
		return -1;
	}
	rc = io_run(h, &p, &io, start, draining, drain_deadline_ms);
	if (rc != IO_DONE) {
		proc_reap(&p, 1);
		if (rc == IO_TIMEOUT)
			set_timeout(h, io.deadline_is_drain, res);
		else
			set_result(res, HANDLER_RETRY, "lost track of the handler: %s", strerror(errno));
		return 0;
	}
	/* The message's process group ends with the message: no stragglers. */
	proc_reap(&p, 1);
	if (WIFEXITED(io.status) && WEXITSTATUS(io.status) == 0) {
		res->outcome = HANDLER_OK;
		return 0;
	}
	spawn_status_text(io.status, how, sizeof(how));
	if (WIFEXITED(io.status) && WEXITSTATUS(io.status) == 65)
		set_result(res, HANDLER_FAIL, "handler %s (permanent failure)", how);
	else
		set_result(res, HANDLER_RETRY, "handler %s", how);
	return 0;
}

/* Printable-ASCII copy of a pipe reply reason. */
static void
copy_reason(char *dst, size_t len, const char *word, const char *reason)
{
	size_t o;

	o = (size_t)snprintf(dst, len, "handler replied %s", word);
	if (*reason == '\0' || o + 2 >= len)
		return;
	dst[o++] = ':';
	dst[o++] = ' ';
	for (; *reason != '\0' && o + 1 < len; reason++)
		dst[o++] = (*reason >= 0x20 && *reason < 0x7f) ? *reason : '?';
	dst[o] = '\0';
}

/* Why the pairing of replies to messages broke (handler_break_reason). */
static const char BREAK_SURPLUS[] = "the pipe handler answered more lines than it was sent messages";
static const char BREAK_ENDED[] = "the pipe handler exited before a surplus reply could show";

/*
 * The pairing of replies to messages can no longer be checked: a surplus
 * reply came, or the handler ended (died, was killed, exited) before a
 * surplus of an earlier exchange could show. Verdicts not yet acted on
 * may be another message's (handler_break_count).
 */
static void
verdicts_break(struct handler *h, const char *why)
{
	h->breaks++;
	h->break_why = why;
}

/* The handler closed its stdout after its last reply: a surplus can no longer show. */
static void
pipe_ended(struct handler *h)
{
	proc_reap(&h->p, 1);
	verdicts_break(h, BREAK_ENDED);
}

/* Before a message: a pipe handler that died or chattered while idle is restarted. */
static void
pipe_check_idle(struct handler *h)
{
	struct pollfd pfd[2] = {
		{ .fd = h->p.out_fd, .events = POLLIN },
		{ .fd = h->p.pidfd, .events = POLLIN },	/* ignored by poll when -1 */
	};
	char c;

	if (h->p.pid <= 0 || poll(pfd, 2, 0) <= 0)
		return;
	if (pfd[0].revents != 0 && read(h->p.out_fd, &c, 1) == 1) {
		log_warnx("queue %s: pipe handler wrote output without a message; restarting it",
		    h->queue);
		verdicts_break(h, BREAK_SURPLUS);
	} else {
		log_warnx("queue %s: pipe handler exited while idle; restarting it", h->queue);
		verdicts_break(h, BREAK_ENDED);
	}
	proc_reap(&h->p, 1);
}

static int
pipe_start(struct handler *h, struct handler_result *res)
{
	char e_queue[256], e_stream[256];
	const char *add[3] = { e_queue, e_stream, "SCALENO_PROTOCOL=pipe" };
	char **envp;
	int rc;

	snprintf(e_queue, sizeof(e_queue), "SCALENO_QUEUE=%s", h->queue);
	snprintf(e_stream, sizeof(e_stream), "SCALENO_STREAM=%s", h->stream);
	envp = env_build(add, ARRAY_LEN(add));
	if (envp == NULL) {
		set_result(res, HANDLER_RETRY, "out of memory");
		return -1;
	}
	rc = proc_spawn(h->argv, envp, 1, &h->p, res->error, sizeof(res->error));
	free(envp);
	if (rc == -1) {
		res->outcome = HANDLER_RETRY;
		return -1;
	}
	log_debug("queue %s: pipe handler started, pid %d", h->queue, (int)h->p.pid);
	return 0;
}

/* The reply line in h->reply as a verdict in res. -1 when it is not one. */
static int
reply_parse(struct handler *h, struct handler_result *res)
{
	char *sp, *reason;

	if (h->rlen > 0 && h->reply[h->rlen - 1] == '\r')
		h->rlen--;
	h->reply[h->rlen] = '\0';
	if (strlen(h->reply) != h->rlen)
		return -1;	/* a NUL inside the reply */
	sp = strchr(h->reply, ' ');
	reason = sp != NULL ? sp + 1 : h->reply + h->rlen;
	if (sp != NULL)
		*sp = '\0';
	if (strcmp(h->reply, "ok") == 0) {
		res->outcome = HANDLER_OK;
		return 0;
	}
	if (strcmp(h->reply, "retry") == 0 || strcmp(h->reply, "fail") == 0) {
		res->outcome = h->reply[0] == 'r' ? HANDLER_RETRY : HANDLER_FAIL;
		copy_reason(res->error, sizeof(res->error), h->reply, reason);
		return 0;
	}
	return -1;
}

/* When the clock of message k started: reply k-1, or the start of the exchange. */
static double
exchange_clock(const struct exchange *x, size_t k)
{
	return k == 0 ? x->t0 : x->s[k - 1].replied;
}

/* The message the handler owes us: the first without a reply or not fully written. n when done. */
static size_t
exchange_current(const struct exchange *x)
{
	return x->nrep < x->wi ? x->nrep : x->wi;
}

/*
 * Encode lines ahead of the writer (at least the one being written, up to
 * ENCODE_AHEAD bytes). Out of memory at message j ends the exchange before
 * j: it and those after it are not run.
 */
static void
exchange_encode(struct exchange *x)
{
	while (x->nenc < x->n && (x->nenc == x->wi || x->unwritten < ENCODE_AHEAD)) {
		struct slot *s = &x->s[x->nenc];

		s->line = handler_message_line(&x->ms[x->nenc], &s->len);
		if (s->line == NULL) {
			x->n = x->nenc;
			return;
		}
		x->unwritten += s->len;
		x->nenc++;
	}
}

/* Write as much as the pipe takes. -1 when the handler's stdin is gone. */
static int
exchange_write(struct exchange *x, int fd)
{
	struct iovec iov[WRITE_IOV];
	int niov = 0;
	ssize_t w;

	exchange_encode(x);
	for (size_t j = x->wi; j < x->nenc && niov < WRITE_IOV; j++) {
		size_t off = j == x->wi ? x->woff : 0;

		iov[niov].iov_base = x->s[j].line + off;
		iov[niov++].iov_len = x->s[j].len - off;
	}
	if (niov == 0)
		return 0;
	do
		w = writev(fd, iov, niov);
	while (w == -1 && errno == EINTR);
	if (w == -1)
		return errno == EAGAIN ? 0 : -1;
	x->unwritten -= (size_t)w;
	while (w > 0) {
		struct slot *s = &x->s[x->wi];
		size_t left = s->len - x->woff;

		if ((size_t)w < left) {
			x->woff += (size_t)w;
			break;
		}
		w -= (ssize_t)left;
		free(s->line);
		s->line = NULL;
		x->woff = 0;
		x->wi++;
	}
	return 0;
}

/*
 * Read what the handler wrote; each complete line is the reply to the next
 * message. IO_DONE when nothing more is readable now or every reply is in;
 * otherwise the io_end the exchange fails with, at message *at.
 */
static int
exchange_read(struct handler *h, struct exchange *x, struct handler_result *res, size_t *at)
{
	char buf[READ_CHUNK];

	while (x->nrep < x->n) {
		ssize_t n = read(h->p.out_fd, buf, sizeof(buf));
		double now;

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return IO_DONE;
		if (n <= 0) {
			*at = exchange_current(x);
			return n == 0 ? IO_EOF : IO_ERROR;
		}
		now = util_now_s();
		for (ssize_t i = 0; i < n; i++) {
			/*
			 * A byte of reply k before any of message k was written
			 * follows reply k-1 out of step (as a byte after the last
			 * reply does).
			 */
			if (x->nrep >= x->wi + (x->woff > 0)) {
				*at = x->nrep > 0 ? x->nrep - 1 : 0;
				return x->n > 1 ? IO_SURPLUS : IO_OVERLONG;
			}
			if (buf[i] != '\n') {
				if (h->rlen >= REPLY_MAX) {
					*at = x->nrep;
					return IO_OVERLONG;
				}
				h->reply[h->rlen++] = buf[i];
				continue;
			}
			if (reply_parse(h, &res[x->nrep]) < 0) {
				*at = x->nrep;
				return IO_GARBAGE;
			}
			h->rlen = 0;
			res[x->nrep].duration_s = now - exchange_clock(x, x->nrep);
			x->s[x->nrep++].replied = now;
		}
	}
	return IO_DONE;
}

/*
 * The handler died: the replies it wrote first still count. IO_DONE when
 * every message has its reply, otherwise the io_end at message *at.
 */
static int
exchange_dead(struct handler *h, struct exchange *x, struct handler_result *res, size_t *at)
{
	int rc;

	if (x->nrep < x->n && (rc = exchange_read(h, x, res, at)) != IO_DONE && rc != IO_EOF)
		return rc;
	*at = exchange_current(x);
	return *at >= x->n ? IO_DONE : IO_EOF;
}

/*
 * Write the lines and read the replies in one poll loop until every
 * message has its reply and is fully written, so that neither side can
 * block the other however large the messages. IO_DONE, or the io_end the
 * exchange fails with at message *at.
 */
static int
exchange_run(struct handler *h, struct exchange *x, volatile sig_atomic_t *draining,
    const volatile int64_t *drain_deadline_ms, struct handler_result *res, size_t *at)
{
	for (;;) {
		struct pollfd pfd[3];
		int nfd = 0, iw = -1, ir = -1, ix = -1, tmo, rc;
		int64_t now, deadline;
		size_t k = exchange_current(x);

		if (k >= x->n)
			return IO_DONE;
		deadline = io_deadline((int64_t)(exchange_clock(x, k) * 1000.0), h->timeout_ms,
		    draining, drain_deadline_ms, &x->deadline_is_drain);
		now = util_now_ms();
		if (now >= deadline) {
			*at = k;
			return IO_TIMEOUT;
		}
		tmo = deadline - now > POLL_SLICE_MS ? POLL_SLICE_MS : (int)(deadline - now);
		if (h->p.in_fd >= 0 && x->wi < x->n) {
			iw = nfd;
			pfd[nfd++] = (struct pollfd){ .fd = h->p.in_fd, .events = POLLOUT };
		}
		if (x->nrep < x->n) {
			ir = nfd;
			pfd[nfd++] = (struct pollfd){ .fd = h->p.out_fd, .events = POLLIN };
		}
		if (h->p.pidfd >= 0) {
			/* See a death even when a child of the handler keeps stdout open. */
			ix = nfd;
			pfd[nfd++] = (struct pollfd){ .fd = h->p.pidfd, .events = POLLIN };
		} else if (tmo > NOPIDFD_PIPE_TICK_MS) {
			tmo = NOPIDFD_PIPE_TICK_MS;	/* no pidfd (old kernel, valgrind): poll for the exit */
		}
		rc = poll(pfd, (nfds_t)nfd, tmo);
		if (rc == -1 && errno != EINTR) {
			*at = k;
			return IO_ERROR;
		}
		tick(h);
		if (h->p.pidfd < 0 && !h->p.reaped &&
		    waitpid(h->p.pid, &h->p.status, WNOHANG) == h->p.pid) {
			h->p.reaped = 1;
			return exchange_dead(h, x, res, at);
		}
		if (rc <= 0)
			continue;
		/* Its stdin gone (closed or dead): stop writing; what it answered still counts. */
		if (iw >= 0 && pfd[iw].revents != 0 && exchange_write(x, h->p.in_fd) < 0)
			close_fd(&h->p.in_fd);
		if (ir >= 0 && pfd[ir].revents != 0 && (rc = exchange_read(h, x, res, at)) != IO_DONE)
			return rc;
		if (ix >= 0 && pfd[ix].revents != 0)
			return exchange_dead(h, x, res, at);
	}
}

/* The exchange failed at res (rc, an io_end): kill the handler and say why. */
static void
pipe_fail(struct handler *h, const struct exchange *x, int rc, struct handler_result *res)
{
	int e = errno, st = proc_reap(&h->p, 1);
	char how[96];

	switch (rc) {
	case IO_TIMEOUT:
		set_timeout(h, x->deadline_is_drain, res);
		break;
	case IO_OVERLONG:
		set_result(res, HANDLER_RETRY, "handler reply longer than %d bytes or out of step; "
		    "handler restarted", REPLY_MAX);
		break;
	case IO_GARBAGE:
		set_result(res, HANDLER_RETRY, "handler reply is not \"ok\", \"retry <reason>\" or "
		    "\"fail <reason>\"; handler restarted");
		break;
	case IO_EOF:
		spawn_status_text(st, how, sizeof(how));
		set_result(res, HANDLER_RETRY, "handler %s before replying", how);
		break;
	default:
		set_result(res, HANDLER_RETRY, "reading the handler's reply failed: %s", strerror(e));
		break;
	}
}

/*
 * After the last reply of a pipelined exchange: a handler that answered one
 * message twice has shifted every later verdict by one, and its reply to
 * the last message is still to come, about one message's time later. Its
 * stdout is watched until three times the mean time between the exchange's
 * replies (the first one, which includes the handler's wake-up, left out;
 * or, when that is longer, the time to the first reply over the number of
 * messages) has passed since the last one, within
 * SETTLE_MIN_US..SETTLE_MAX_US: a byte there means the replies outnumber
 * the messages. When this returns.
 */
static double
exchange_settle_until(const struct exchange *x)
{
	double gap = x->n < 2 ? 0 : (x->s[x->n - 1].replied - x->s[0].replied) /
	    (double)(x->n - 1);
	/*
	 * Replies read in one go (the handler answers what it has read at
	 * once, or we were slow to read) say nothing of the time between
	 * them: then the time to the first reply, spread over the messages,
	 * is the measure.
	 */
	double first = (x->s[0].replied - x->t0) / (double)x->n;
	int64_t us = (int64_t)((gap > first ? gap : first) * 3e6);

	us = us < SETTLE_MIN_US ? SETTLE_MIN_US : us > SETTLE_MAX_US ? SETTLE_MAX_US : us;
	return x->s[x->n - 1].replied + (double)us / 1e6;
}

/*
 * Watch the handler's stdout until `until` (monotonic s). 1 surplus, 0
 * clean, -1 it closed its stdout (it exited, or will): whether a surplus
 * was still to come can no longer be told.
 */
static int
settle_watch(struct handler *h, double until)
{
	struct pollfd pfd = { .fd = h->p.out_fd, .events = POLLIN };
	double left = until - util_now_s();
	struct timespec ts = { 0, 0 };
	char c;

	if (h->p.pid <= 0 || pfd.fd < 0)
		return 0;
	if (left > 0) {
		ts.tv_sec = (time_t)left;
		ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
	}
	if (ppoll(&pfd, 1, &ts, NULL) <= 0 || (pfd.revents & (POLLIN | POLLHUP)) == 0)
		return 0;
	return read(pfd.fd, &c, 1) == 1 ? 1 : -1;
}

/* A surplus was found after an exchange: nothing of it holds; restart the handler. */
static void
surplus_found(struct handler *h, size_t n)
{
	if (n > 0)
		log_warnx("queue %s: pipe handler answered more lines than it was sent messages; "
		    "the verdicts of its last %zu messages are void, they run again one at a "
		    "time; handler restarted", h->queue, n);
	else
		log_warnx("queue %s: pipe handler answered more lines than it was sent messages "
		    "after its last batch; the successes not yet acknowledged run again one at a "
		    "time; handler restarted", h->queue);
	proc_reap(&h->p, 1);
	verdicts_break(h, BREAK_SURPLUS);
}

int
handler_settle(struct handler *h, bool idle)
{
	double until = h->settle_until, wait;
	int rc;

	h->settle_until = 0;
	if (h->proto != PROTO_PIPE)
		return 0;
	/* Idle: as long as a message has taken lately, twice (2 ms..250 ms). */
	wait = 2 * h->slow_s;
	wait = wait < IDLE_WATCH_MIN_S ? IDLE_WATCH_MIN_S : wait > SETTLE_MAX_US / 1e6 ?
	    SETTLE_MAX_US / 1e6 : wait;
	if (idle && until > 0 && h->settle_last + wait > until)
		until = h->settle_last + wait;
	if ((rc = settle_watch(h, until)) == 0)
		return 0;
	if (rc > 0) {
		surplus_found(h, 0);
		return 1;
	}
	log_warnx("queue %s: pipe handler closed its stdout after its last batch; the successes "
	    "not yet acknowledged run again one at a time; handler restarted", h->queue);
	pipe_ended(h);
	return 1;
}

unsigned
handler_break_count(const struct handler *h)
{
	return h->breaks;
}

const char *
handler_break_reason(const struct handler *h)
{
	return h->break_why != NULL ? h->break_why : "no break";
}

void
handler_defer_settle(struct handler *h, bool on)
{
	h->defer_settle = on;
}

/* The pipe protocol for ms[0..n), pipelined; see handler_run_batch. */
static int
run_pipe(struct handler *h, const struct message *ms, size_t n,
    volatile sig_atomic_t *draining, const volatile int64_t *drain_deadline_ms,
    struct handler_result *res, size_t *nrun)
{
	struct exchange x = { .ms = ms, .n = n, .t0 = util_now_s() };
	size_t at = 0;
	int rc = 0;

	*nrun = 0;
	x.s = calloc(n, sizeof(*x.s));
	if (x.s != NULL)
		exchange_encode(&x);
	if (x.s == NULL || x.n == 0) {
		set_result(&res[0], HANDLER_RETRY, "out of memory encoding the message");
		rc = -1;
		goto out;
	}
	/* The watch of the exchange before, if the caller left it to us. */
	if (h->settle_until > 0)
		(void)handler_settle(h, false);
	pipe_check_idle(h);
	if (h->p.pid <= 0 && pipe_start(h, &res[0]) == -1) {
		rc = -1;
		goto out;
	}
	h->rlen = 0;
	rc = exchange_run(h, &x, draining, drain_deadline_ms, res, &at);
	/*
	 * Deferred, even for one message: a reply to it may be the surplus of
	 * an exchange before, carried on (one message in flight, the first
	 * reply is its own otherwise; the next exchange checks what is there).
	 */
	if (rc == IO_DONE && h->defer_settle) {
		h->settle_until = exchange_settle_until(&x);
		h->settle_last = x.s[x.n - 1].replied;
		h->slow_s *= 0.9;
		for (size_t j = 0; j < x.n; j++)
			if (res[j].duration_s > h->slow_s)
				h->slow_s = res[j].duration_s;
	} else if (rc == IO_DONE && x.n > 1) {
		/*
		 * Not deferred: the whole window from now (we may have been slow
		 * to get here). A handler that closes its stdout in it may have
		 * taken its surplus along: its verdicts are doubtful.
		 */
		int w = settle_watch(h, util_now_s() + exchange_settle_until(&x) -
		    x.s[x.n - 1].replied);

		if (w > 0) {
			rc = IO_SURPLUS;
		} else if (w < 0) {
			for (size_t j = 0; j < x.n; j++)
				res[j].doubtful = true;
			pipe_ended(h);
		}
	}
	if (rc == IO_SURPLUS) {
		/* Which reply belongs to which message is unknown: none counts. */
		surplus_found(h, x.n);
		memset(res, 0, x.n * sizeof(*res));
		*nrun = 0;
	} else if (rc == IO_DONE) {
		*nrun = x.n;
	} else {
		pipe_fail(h, &x, rc, &res[at]);
		if (at >= x.nrep)
			res[at].duration_s = util_now_s() - exchange_clock(&x, at);
		*nrun = at + 1;
		/*
		 * A handler that failed ended before a surplus could show: the
		 * replies before `at` may be shifted by one (a message answered
		 * twice, then the handler died on the next); they run again. The
		 * failure stands: a failure on the wrong message costs a retry,
		 * never a loss. One stopped by the drain deadline did nothing
		 * wrong that could be seen: its replies stand, as on any drain.
		 */
		if (!(rc == IO_TIMEOUT && x.deadline_is_drain)) {
			for (size_t j = 0; j < at; j++)
				res[j].doubtful = true;
			verdicts_break(h, "the pipe handler failed before a surplus reply could show");
		}
	}
	rc = 0;
out:
	for (size_t j = 0; x.s != NULL && j < x.nenc; j++)
		free(x.s[j].line);
	free(x.s);
	return rc;
}

int
handler_run(struct handler *h, const struct message *m,
    volatile sig_atomic_t *draining, const volatile int64_t *drain_deadline_ms,
    struct handler_result *res)
{
	int64_t start = util_now_ms();
	double t0 = util_now_s();
	char *line;
	size_t len = 0, nrun;
	int rc;

	memset(res, 0, sizeof(*res));
	if (h->proto == PROTO_PIPE)
		return run_pipe(h, m, 1, draining, drain_deadline_ms, res, &nrun);
	line = handler_message_line(m, &len);
	if (line == NULL) {
		set_result(res, HANDLER_RETRY, "out of memory encoding the message");
		return -1;
	}
	rc = run_exec(h, m, line, len, start, draining, drain_deadline_ms, res);
	free(line);
	res->duration_s = util_now_s() - t0;
	return rc;
}

int
handler_run_batch(struct handler *h, const struct message *ms, size_t n,
    volatile sig_atomic_t *draining, const volatile int64_t *drain_deadline_ms,
    struct handler_result *res, size_t *nrun)
{
	*nrun = 0;
	if (n == 0)
		return 0;
	memset(res, 0, n * sizeof(*res));
	if (h->proto == PROTO_PIPE)
		return run_pipe(h, ms, n, draining, drain_deadline_ms, res, nrun);
	for (size_t i = 0; i < n; i++) {
		if (handler_run(h, &ms[i], draining, drain_deadline_ms, &res[i]) < 0)
			return -1;
		*nrun = i + 1;
		if (res[i].timed_out)
			break;
	}
	return 0;
}
