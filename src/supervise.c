/*
 * supervise.c — the consumer-process supervisor (after s6-supervise: an
 * explicit state per slot, a self-pipe for signals, a backoff that resets
 * once a child has stayed up).
 *
 * Every child gets its own process group (so a stuck consumer is killed
 * with everything it started) and PR_SET_PDEATHSIG(SIGKILL) (so a
 * SIGKILLed supervisor does not leave consumers behind: their messages stay
 * pending and are reclaimed). The supervisor is a child subreaper, so
 * orphans of its consumers' handlers come back to it; they are reaped as
 * they exit and killed at the end of the drain.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alert.h"
#include "handler.h"
#include "log.h"
#include "supervise.h"
#include "util.h"

#define MAX_WAKE_MS 1000	/* the loop re-checks its timers at least this often */
#define DRAIN_GRACE_MS 250	/* after drain_timeout, before SIGKILL: time for the final ack */
#define KILL_MARGIN_MS 500	/* we are gone this long before the orchestrator's SIGKILL */
#define MAX_CRASH_DEATHS 32
#define LEFTOVER_ROUNDS 40	/* kill_leftovers: at most this many kill+reap rounds ... */
#define LEFTOVER_WAIT_MS 50	/* ... this far apart */

struct slot {
	enum slot_state state;
	pid_t pid;
	int64_t started_ms;	/* STARTING/RUNNING: when it was forked */
	int64_t due_ms;		/* BACKOFF: when to restart it */
	unsigned attempt;	/* consecutive short-lived runs */
	int64_t deaths[MAX_CRASH_DEATHS]; /* ring of recent death times */
	unsigned ndeaths;
	int crash_looping;
	int started_before;	/* a fork after this one is a restart */
};

static int sig_pipe[2] = { -1, -1 };
static volatile sig_atomic_t draining_flag;
static volatile sig_atomic_t child_stop;

static void
on_signal(int sig)
{
	int saved = errno;
	unsigned char c = (unsigned char)sig;

	if (write(sig_pipe[1], &c, 1) == -1) {
		/* Pipe full: a wake-up is already pending, which is all we need. */
	}
	errno = saved;
}

static void
on_child_stop(int sig)
{
	(void)sig;
	child_stop = 1;
}

int
supervise_draining(void)
{
	return __atomic_load_n(&draining_flag, __ATOMIC_RELAXED) != 0;
}

void
supervise_defaults(struct supervise_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->drain_timeout_ms = 30000;
	o->backoff_base_ms = 1000;
	o->backoff_cap_ms = 60000;
	o->stable_ms = 10000;
	o->crash_loop_deaths = 5;
	o->crash_loop_window_ms = 60000;
}

static const char *
state_name(enum slot_state s)
{
	static const char *const names[] = { "starting", "running", "backoff", "stopping", "stopped" };

	return (unsigned)s < ARRAY_LEN(names) ? names[s] : "?";
}

static void
set_state(const struct supervise_opts *o, int i, struct slot *sl, enum slot_state s)
{
	if (sl->state != s)
		log_debug("%s: consumer %d: %s -> %s", o->name, i, state_name(sl->state), state_name(s));
	sl->state = s;
}

static int
install_handlers(void)
{
	struct sigaction sa;
	const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGCHLD };

	if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) == -1)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	for (size_t i = 0; i < ARRAY_LEN(sigs); i++)
		if (sigaction(sigs[i], &sa, NULL) == -1)
			return -1;
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

static void
restore_handlers(void)
{
	const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGCHLD };

	for (size_t i = 0; i < ARRAY_LEN(sigs); i++)
		signal(sigs[i], SIG_DFL);
	if (sig_pipe[0] >= 0) {
		close(sig_pipe[0]);
		close(sig_pipe[1]);
		sig_pipe[0] = sig_pipe[1] = -1;
	}
}

/* In the forked child: become a consumer. Never returns. */
static void __attribute__((noreturn))
child_run(const struct supervise_opts *o, int slot, pid_t parent, const sigset_t *oldmask)
{
	struct sigaction sa;
	int rc;

	close(sig_pipe[0]);
	close(sig_pipe[1]);
	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)	/* the supervisor died before prctl */
		_exit(EXIT_FAILURE);
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_child_stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGCHLD, SIG_DFL);
	signal(SIGHUP, SIG_IGN);	/* the supervisor owns the terminal's hang-up */
	signal(SIGPIPE, SIG_IGN);
	sigprocmask(SIG_SETMASK, oldmask, NULL);
	rc = o->child(o->child_arg, slot, &child_stop);
	fflush(NULL);
	_exit(rc);
}

static int
slot_fork(const struct supervise_opts *o, int i, struct slot *sl, int64_t now)
{
	sigset_t all, old;
	pid_t parent = getpid(), pid;

	/* Blocked across fork: the child must not run our handlers before it resets them. */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid = fork();
	if (pid == 0)
		child_run(o, i, parent, &old);
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (pid == -1) {
		log_warn("%s: cannot fork consumer %d", o->name, i);
		return -1;
	}
	setpgid(pid, pid);
	sl->pid = pid;
	sl->started_ms = now;
	set_state(o, i, sl, SLOT_STARTING);
	log_info("%s: consumer %d started, pid %d", o->name, i, (int)pid);
	return 0;
}

static void
schedule_restart(const struct supervise_opts *o, int i, struct slot *sl, int64_t now)
{
	int64_t hi = o->backoff_base_ms, delay;
	char d[32];

	/*
	 * Jitter within [hi/2, hi]: spread like full jitter, but never a short
	 * delay after many failures, so a crash loop always slows down.
	 */
	for (unsigned k = 0; k < sl->attempt && hi < o->backoff_cap_ms; k++)
		hi *= 2;
	if (hi > o->backoff_cap_ms)
		hi = o->backoff_cap_ms;
	delay = util_backoff_ms(hi, hi, 0);

	sl->attempt++;
	sl->due_ms = now + delay;
	set_state(o, i, sl, SLOT_BACKOFF);
	util_format_duration(delay, d, sizeof(d));
	log_info("%s: consumer %d restarts in %s (attempt %u)", o->name, i, d, sl->attempt);
}

static int
count_crash_looping(const struct slot *slots, int n)
{
	int c = 0;

	for (int i = 0; i < n; i++)
		c += slots[i].crash_looping;
	return c;
}

/* Record a death; enter or leave the crash-loop state of the slot. */
static void
note_death(const struct supervise_opts *o, int i, struct slot *sl, struct slot *slots, int64_t now)
{
	unsigned need = (unsigned)o->crash_loop_deaths, recent = 0;
	char text[160];

	if (need < 1)
		need = 1;
	if (need > MAX_CRASH_DEATHS)
		need = MAX_CRASH_DEATHS;
	sl->deaths[sl->ndeaths++ % MAX_CRASH_DEATHS] = now;
	for (unsigned k = 0; k < MAX_CRASH_DEATHS && k < sl->ndeaths; k++)
		if (now - sl->deaths[k] <= o->crash_loop_window_ms)
			recent++;
	if (recent >= need && !sl->crash_looping) {
		sl->crash_looping = 1;
		snprintf(text, sizeof(text), "consumer %d died %u times within %lld ms; "
		    "restarting with backoff", i, recent, (long long)o->crash_loop_window_ms);
		log_error("%s: %s", o->name, text);
		if (o->alert != NULL) {
			char subject[32];

			snprintf(subject, sizeof(subject), "consumer %d", i);
			alert_fire(o->alert, o->name, ALERT_CRASH_LOOP, subject, text);
		}
	}
	if (o->stats != NULL)
		wstats_set(&o->stats->crash_loop, count_crash_looping(slots, o->nslots));
}

static int
count_alive(const struct slot *slots, int n)
{
	int c = 0;

	for (int i = 0; i < n; i++)
		c += slots[i].pid > 0;
	return c;
}

/* Reap everything that has exited: our consumers and adopted orphans. */
static void
reap_all(const struct supervise_opts *o, struct slot *slots, int stopping, int64_t now,
    int *drain_failed)
{
	int st;
	pid_t pid;

	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		char how[96];
		int i;

		for (i = 0; i < o->nslots && slots[i].pid != pid; i++)
			;
		if (i == o->nslots) {
			log_debug("%s: reaped orphan pid %d", o->name, (int)pid);
			continue;
		}
		struct slot *sl = &slots[i];

		sl->pid = 0;
		handler_describe_status(st, how, sizeof(how));
		if (stopping) {
			set_state(o, i, sl, SLOT_STOPPED);
			if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
				log_info("%s: consumer %d drained and exited", o->name, i);
			} else {
				log_warnx("%s: consumer %d %s while draining", o->name, i, how);
				(*drain_failed)++;
			}
			continue;
		}
		log_warnx("%s: consumer %d (pid %d) %s after %lld ms", o->name, i, (int)pid, how,
		    (long long)(now - sl->started_ms));
		if (sl->state == SLOT_RUNNING || now - sl->started_ms >= o->stable_ms) {
			sl->attempt = 0;
			sl->crash_looping = 0;
		}
		note_death(o, i, sl, slots, now);
		schedule_restart(o, i, sl, now);
	}
	if (o->stats != NULL)
		wstats_set(&o->stats->consumers_running, count_alive(slots, o->nslots));
}

/* SIGKILL every child of ours (group leaders with their group). Returns how many. */
static int
kill_own_children(void)
{
	char path[64], buf[4096];
	FILE *f;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/self/task/%d/children", (int)getpid());
	f = fopen(path, "re");
	if (f == NULL)
		return 0;
	if (fgets(buf, sizeof(buf), f) != NULL) {
		char *save = NULL;

		for (char *t = strtok_r(buf, " \n", &save); t != NULL; t = strtok_r(NULL, " \n", &save)) {
			pid_t pid = (pid_t)strtol(t, NULL, 10);

			if (pid <= 1)
				continue;
			if (getpgid(pid) == pid)
				kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			n++;
		}
	}
	fclose(f);
	return n;
}

/*
 * Kill and reap what is left: consumers that did not drain (with their
 * process groups), then orphans re-parented to us (a handler's children).
 * Bounded: an orphan that keeps re-appearing is given up on after a while.
 */
static void
kill_leftovers(const struct supervise_opts *o, struct slot *slots, int *drain_failed)
{
	int st;

	for (int i = 0; i < o->nslots; i++) {
		if (slots[i].pid > 0) {
			log_warnx("%s: consumer %d did not drain in time; killing it", o->name, i);
			kill(-slots[i].pid, SIGKILL);
			kill(slots[i].pid, SIGKILL);
			slots[i].pid = 0;
			set_state(o, i, &slots[i], SLOT_STOPPED);
			(*drain_failed)++;
		}
	}
	for (int round = 0; round < LEFTOVER_ROUNDS; round++) {
		int killed = kill_own_children();

		while (waitpid(-1, &st, WNOHANG) > 0)
			;
		if (killed == 0)
			return;
		poll(NULL, 0, LEFTOVER_WAIT_MS);
	}
	while (waitpid(-1, &st, WNOHANG) > 0)
		;
	log_warnx("%s: some orphaned processes could not be reaped", o->name);
}

static void
begin_drain(const struct supervise_opts *o, struct slot *slots, int sig)
{
	__atomic_store_n(&draining_flag, 1, __ATOMIC_RELAXED);
	log_info("%s: %s received: draining %d consumer(s), up to %lld ms", o->name, strsignal(sig),
	    count_alive(slots, o->nslots), (long long)o->drain_timeout_ms);
	for (int i = 0; i < o->nslots; i++) {
		struct slot *sl = &slots[i];

		if (sl->pid > 0) {
			kill(sl->pid, sig);
			set_state(o, i, sl, SLOT_STOPPING);
		} else {
			set_state(o, i, sl, SLOT_STOPPED);
		}
	}
}

/* How long children get to drain: drain_timeout plus a grace, but inside kill_timeout. */
static int64_t
drain_window(const struct supervise_opts *o)
{
	int64_t w = o->drain_timeout_ms + DRAIN_GRACE_MS;

	if (o->kill_timeout_ms > 0 && w > o->kill_timeout_ms - KILL_MARGIN_MS)
		w = o->kill_timeout_ms - KILL_MARGIN_MS;
	return w < o->drain_timeout_ms ? o->drain_timeout_ms : w;
}

/* Milliseconds until the next timer: a restart, a stable mark or the drain deadline. */
static int
next_wake(const struct supervise_opts *o, const struct slot *slots, int stopping,
    int64_t deadline, int64_t now)
{
	int64_t t = now + MAX_WAKE_MS;

	if (stopping && deadline < t)
		t = deadline;
	for (int i = 0; i < o->nslots && !stopping; i++) {
		if (slots[i].state == SLOT_BACKOFF && slots[i].due_ms < t)
			t = slots[i].due_ms;
		if (slots[i].state == SLOT_STARTING && slots[i].started_ms + o->stable_ms < t)
			t = slots[i].started_ms + o->stable_ms;
	}
	return t <= now ? 0 : (int)(t - now);
}

/* Start due slots and promote stable ones. */
static void
run_timers(const struct supervise_opts *o, struct slot *slots, int64_t now)
{
	for (int i = 0; i < o->nslots; i++) {
		struct slot *sl = &slots[i];

		if (sl->state == SLOT_STARTING && sl->pid > 0 && now - sl->started_ms >= o->stable_ms) {
			set_state(o, i, sl, SLOT_RUNNING);
			sl->attempt = 0;
			if (sl->crash_looping) {
				sl->crash_looping = 0;
				log_info("%s: consumer %d is stable again", o->name, i);
			}
		}
		if (sl->state == SLOT_BACKOFF && now >= sl->due_ms) {
			if (slot_fork(o, i, sl, now) == 0) {
				if (o->stats != NULL && sl->started_before)
					wstats_add(&o->stats->consumer_restarts, 1);
				sl->started_before = 1;
			} else {
				schedule_restart(o, i, sl, now);
			}
		}
	}
	if (o->stats != NULL) {
		wstats_set(&o->stats->crash_loop, count_crash_looping(slots, o->nslots));
		wstats_set(&o->stats->consumers_running, count_alive(slots, o->nslots));
	}
}

/*
 * Act on the signals queued in the self-pipe. Returns 1 when SIGINT or
 * SIGTERM started the drain now (*stopping set to 1), else 0.
 */
static int
read_signals(const struct supervise_opts *o, struct slot *slots, int *stopping)
{
	unsigned char sigs[64];
	ssize_t n;
	int began = 0;

	while ((n = read(sig_pipe[0], sigs, sizeof(sigs))) > 0) {
		for (ssize_t k = 0; k < n; k++) {
			int sig = sigs[k];

			if (sig == SIGHUP) {
				log_info("%s: SIGHUP ignored: restart the worker to apply "
				    "configuration changes", o->name);
			} else if ((sig == SIGINT || sig == SIGTERM) && *stopping) {
				log_info("%s: %s while draining: already stopping", o->name, strsignal(sig));
			} else if (sig == SIGINT || sig == SIGTERM) {
				*stopping = 1;
				began = 1;
				begin_drain(o, slots, sig);
			}
		}
	}
	return began;
}

int
supervise_run(const struct supervise_opts *o)
{
	struct slot *slots;
	int stopping = 0, drain_failed = 0;
	int64_t deadline = 0;

	if (o->nslots < 1 || o->child == NULL)
		return 2;
	slots = calloc((size_t)o->nslots, sizeof(*slots));
	if (slots == NULL) {
		log_warnx("%s: out of memory", o->name);
		return 2;
	}
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) == -1)
		log_warn("%s: cannot become a child subreaper; orphans go to init", o->name);
	if (install_handlers() == -1) {
		log_warn("%s: cannot install signal handlers", o->name);
		free(slots);
		restore_handlers();
		return 2;
	}
	for (int i = 0; i < o->nslots; i++) {
		slots[i].state = SLOT_BACKOFF;	/* due now */
		slots[i].due_ms = util_now_ms();
	}
	run_timers(o, slots, util_now_ms());

	for (;;) {
		struct pollfd pfd = { .fd = sig_pipe[0], .events = POLLIN };
		int64_t now = util_now_ms();

		if (stopping && count_alive(slots, o->nslots) == 0)
			break;
		if (stopping && now >= deadline)
			break;
		if (poll(&pfd, 1, next_wake(o, slots, stopping, deadline, now)) == -1 && errno != EINTR)
			log_warn("%s: poll", o->name);
		now = util_now_ms();
		if (read_signals(o, slots, &stopping))
			deadline = now + drain_window(o);
		reap_all(o, slots, stopping, now, &drain_failed);
		if (!stopping)
			run_timers(o, slots, now);
	}
	/* Whatever did not drain, and anything adopted and still alive, goes with us. */
	kill_leftovers(o, slots, &drain_failed);
	if (o->stats != NULL)
		wstats_set(&o->stats->consumers_running, 0);
	restore_handlers();
	free(slots);
	if (drain_failed > 0) {
		log_warnx("%s: worker stopped; %d consumer(s) did not drain cleanly", o->name, drain_failed);
		return 2;
	}
	log_info("%s: worker stopped after a clean drain", o->name);
	return 0;
}
