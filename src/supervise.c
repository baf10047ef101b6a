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
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alert.h"
#include "log.h"
#include "selfpipe.h"
#include "spawn.h"
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

/* The supervisor's state: the slots, the clock of this round, the drain. */
struct sup {
	const struct supervise_opts *o;
	struct slot *slots;
	int64_t now;		/* monotonic ms, read once per loop round */
	int stopping;
	int64_t deadline;	/* when stopping: SIGKILL what is left */
	int sig;		/* the stop signal, passed on */
	int drain_failed;	/* consumers killed, or not exiting 0, during the drain */
	pid_t pid;		/* EV_EXIT: the reaped pid ... */
	int status;		/* ... and its wait status */
};

static const int caught_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGCHLD };
static volatile sig_atomic_t draining_flag;
static volatile sig_atomic_t child_stop;

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
set_state(struct sup *sp, int i, enum slot_state s)
{
	struct slot *sl = &sp->slots[i];

	if (sl->state != s)
		log_debug("%s: consumer %d: %s -> %s", sp->o->name, i, state_name(sl->state),
		    state_name(s));
	sl->state = s;
}

static int
count_alive(const struct sup *sp)
{
	int c = 0;

	for (int i = 0; i < sp->o->nslots; i++)
		c += sp->slots[i].pid > 0;
	return c;
}

static int
count_crash_looping(const struct sup *sp)
{
	int c = 0;

	for (int i = 0; i < sp->o->nslots; i++)
		c += sp->slots[i].crash_looping;
	return c;
}

static void
publish_gauges(const struct sup *sp)
{
	if (sp->o->stats == NULL)
		return;
	wstats_set(&sp->o->stats->crash_loop, count_crash_looping(sp));
	wstats_set(&sp->o->stats->consumers_running, count_alive(sp));
}

/* In the forked child: become a consumer. Never returns. */
static void __attribute__((noreturn))
child_run(const struct supervise_opts *o, int slot, const sigset_t *oldmask)
{
	struct sigaction sa;
	int rc;

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

/* Fork slot i's consumer. 0, or -1 when fork failed (logged). */
static int
slot_fork(struct sup *sp, int i)
{
	const struct supervise_opts *o = sp->o;
	struct slot *sl = &sp->slots[i];
	sigset_t all, old;
	pid_t pid;

	/*
	 * Blocked across fork: the child must not run our handlers before it
	 * resets them. Nothing inherited is the consumer's (not the endpoint's
	 * sockets, nor the self-pipe), and it dies with the supervisor.
	 */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid = spawn_fork(true, SIGKILL);
	if (pid == 0)
		child_run(o, i, &old);
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (pid == -1) {
		log_warn("%s: cannot fork consumer %d", o->name, i);
		return -1;
	}
	sl->pid = pid;
	sl->started_ms = sp->now;
	log_info("%s: consumer %d started, pid %d", o->name, i, (int)pid);
	return 0;
}

/* Into BACKOFF with the next delay of the slot's sequence. */
static void
schedule_restart(struct sup *sp, int i)
{
	const struct supervise_opts *o = sp->o;
	struct slot *sl = &sp->slots[i];
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
	sl->due_ms = sp->now + delay;
	set_state(sp, i, SLOT_BACKOFF);
	util_format_duration(delay, d, sizeof(d));
	log_info("%s: consumer %d restarts in %s (attempt %u)", o->name, i, d, sl->attempt);
}

/* Record a death; enter the crash-loop state when it is one too many. */
static void
note_death(struct sup *sp, int i)
{
	const struct supervise_opts *o = sp->o;
	struct slot *sl = &sp->slots[i];
	unsigned need = (unsigned)o->crash_loop_deaths, recent = 0;
	char text[160], subject[32];

	if (need < 1)
		need = 1;
	if (need > MAX_CRASH_DEATHS)
		need = MAX_CRASH_DEATHS;
	sl->deaths[sl->ndeaths++ % MAX_CRASH_DEATHS] = sp->now;
	for (unsigned k = 0; k < MAX_CRASH_DEATHS && k < sl->ndeaths; k++)
		if (sp->now - sl->deaths[k] <= o->crash_loop_window_ms)
			recent++;
	if (recent < need || sl->crash_looping)
		return;
	sl->crash_looping = 1;
	snprintf(text, sizeof(text), "consumer %d died %u times within %lld ms; "
	    "restarting with backoff", i, recent, (long long)o->crash_loop_window_ms);
	log_error("%s: %s", o->name, text);
	snprintf(subject, sizeof(subject), "consumer %d", i);
	if (o->alert != NULL)
		alert_fire(o->alert, o->name, ALERT_CRASH_LOOP, subject, text);
}

/*
 * The transitions. Events: EV_EXIT (its process was reaped; sp->status),
 * EV_DUE (its restart time came), EV_STABLE (up for stable_ms), EV_STOP
 * (SIGINT/SIGTERM; sp->sig). A missing entry means "ignore".
 */
enum slot_event { EV_EXIT = 0, EV_DUE, EV_STABLE, EV_STOP, EV_MAX };
typedef void (*slot_action)(struct sup *sp, int i);

/* BACKOFF + DUE: start it (a failed fork backs off again). */
static void
act_start(struct sup *sp, int i)
{
	struct slot *sl = &sp->slots[i];

	if (slot_fork(sp, i) == -1) {
		schedule_restart(sp, i);
		return;
	}
	if (sl->started_before && sp->o->stats != NULL)
		wstats_add(&sp->o->stats->consumer_restarts, 1);
	sl->started_before = 1;
	set_state(sp, i, SLOT_STARTING);
}

/* STARTING + STABLE: it stayed up; the next death starts the backoff afresh. */
static void
act_stable(struct sup *sp, int i)
{
	struct slot *sl = &sp->slots[i];

	sl->attempt = 0;
	if (sl->crash_looping) {
		sl->crash_looping = 0;
		log_info("%s: consumer %d is stable again", sp->o->name, i);
	}
	set_state(sp, i, SLOT_RUNNING);
}

/* STARTING or RUNNING + EXIT: it died on its own; restart it later. */
static void
act_died(struct sup *sp, int i)
{
	struct slot *sl = &sp->slots[i];
	char how[96];

	spawn_status_text(sp->status, how, sizeof(how));
	log_warnx("%s: consumer %d (pid %d) %s after %lld ms", sp->o->name, i, (int)sp->pid, how,
	    (long long)(sp->now - sl->started_ms));
	if (sl->state == SLOT_RUNNING || sp->now - sl->started_ms >= sp->o->stable_ms)
		act_stable(sp, i);	/* up long enough, even if EV_STABLE had not come yet */
	note_death(sp, i);
	schedule_restart(sp, i);
}

/* STARTING or RUNNING + STOP: pass the signal on. */
static void
act_stop(struct sup *sp, int i)
{
	kill(sp->slots[i].pid, sp->sig);
	set_state(sp, i, SLOT_STOPPING);
}

/* BACKOFF + STOP: no restart. */
static void
act_cancel(struct sup *sp, int i)
{
	set_state(sp, i, SLOT_STOPPED);
}

/* STOPPING + EXIT: drained (exit 0) or not. */
static void
act_drained(struct sup *sp, int i)
{
	char how[96];

	if (WIFEXITED(sp->status) && WEXITSTATUS(sp->status) == 0) {
		log_info("%s: consumer %d drained and exited", sp->o->name, i);
	} else {
		spawn_status_text(sp->status, how, sizeof(how));
		log_warnx("%s: consumer %d %s while draining", sp->o->name, i, how);
		sp->drain_failed++;
	}
	set_state(sp, i, SLOT_STOPPED);
}

static const slot_action transitions[SLOT_STOPPED + 1][EV_MAX] = {
	[SLOT_STARTING] = { [EV_EXIT] = act_died, [EV_STABLE] = act_stable, [EV_STOP] = act_stop },
	[SLOT_RUNNING] = { [EV_EXIT] = act_died, [EV_STOP] = act_stop },
	[SLOT_BACKOFF] = { [EV_DUE] = act_start, [EV_STOP] = act_cancel },
	[SLOT_STOPPING] = { [EV_EXIT] = act_drained },
	[SLOT_STOPPED] = { NULL },
};

static void
slot_event(struct sup *sp, int i, enum slot_event ev)
{
	slot_action act = transitions[sp->slots[i].state][ev];

	if (act != NULL)
		act(sp, i);
}

/* Reap everything that has exited: our consumers (EV_EXIT) and adopted orphans. */
static void
reap_all(struct sup *sp)
{
	int st;
	pid_t pid;

	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		int i;

		for (i = 0; i < sp->o->nslots && sp->slots[i].pid != pid; i++)
			;
		if (i == sp->o->nslots) {
			log_debug("%s: reaped orphan pid %d", sp->o->name, (int)pid);
			continue;
		}
		sp->slots[i].pid = 0;
		sp->pid = pid;
		sp->status = st;
		slot_event(sp, i, EV_EXIT);
	}
}

/* EV_DUE and EV_STABLE for the slots whose time has come. */
static void
run_timers(struct sup *sp)
{
	for (int i = 0; i < sp->o->nslots; i++) {
		const struct slot *sl = &sp->slots[i];

		if (sl->state == SLOT_STARTING && sp->now - sl->started_ms >= sp->o->stable_ms)
			slot_event(sp, i, EV_STABLE);
		else if (sl->state == SLOT_BACKOFF && sp->now >= sl->due_ms)
			slot_event(sp, i, EV_DUE);
	}
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
				spawn_kill_group(pid);
			else
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
kill_leftovers(struct sup *sp)
{
	const struct supervise_opts *o = sp->o;
	struct slot *slots = sp->slots;
	int st;

	for (int i = 0; i < o->nslots; i++) {
		if (slots[i].pid > 0) {
			log_warnx("%s: consumer %d did not drain in time; killing it", o->name, i);
			spawn_kill_group(slots[i].pid);
			slots[i].pid = 0;
			set_state(sp, i, SLOT_STOPPED);
			sp->drain_failed++;
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
next_wake(const struct sup *sp)
{
	int64_t t = sp->now + MAX_WAKE_MS;

	if (sp->stopping && sp->deadline < t)
		t = sp->deadline;
	for (int i = 0; i < sp->o->nslots; i++) {
		const struct slot *sl = &sp->slots[i];

		if (sl->state == SLOT_BACKOFF && sl->due_ms < t)
			t = sl->due_ms;
		if (sl->state == SLOT_STARTING && sl->started_ms + sp->o->stable_ms < t)
			t = sl->started_ms + sp->o->stable_ms;
	}
	return t <= sp->now ? 0 : (int)(t - sp->now);
}

/* Act on the signals queued in the self-pipe; SIGINT/SIGTERM start the drain (EV_STOP). */
static void
read_signals(struct sup *sp)
{
	int sigs[64];
	size_t n;

	while ((n = selfpipe_drain(sigs, ARRAY_LEN(sigs))) > 0) {
		for (size_t k = 0; k < n; k++) {
			int sig = sigs[k];

			if (sig == SIGHUP) {
				log_info("%s: SIGHUP ignored: restart the worker to apply "
				    "configuration changes", sp->o->name);
			} else if ((sig == SIGINT || sig == SIGTERM) && sp->stopping) {
				log_info("%s: %s while draining: already stopping", sp->o->name,
				    strsignal(sig));
			} else if (sig == SIGINT || sig == SIGTERM) {
				sp->stopping = 1;
				sp->deadline = sp->now + drain_window(sp->o);
				sp->sig = sig;
				__atomic_store_n(&draining_flag, 1, __ATOMIC_RELAXED);
				log_info("%s: %s received: draining %d consumer(s), up to %lld ms",
				    sp->o->name, strsignal(sig), count_alive(sp),
				    (long long)sp->o->drain_timeout_ms);
				for (int i = 0; i < sp->o->nslots; i++)
					slot_event(sp, i, EV_STOP);
			}
		}
	}
}

int
supervise_run(const struct supervise_opts *o)
{
	struct sup sp = { .o = o };

	if (o->nslots < 1 || o->child == NULL)
		return 2;
	sp.slots = calloc((size_t)o->nslots, sizeof(*sp.slots));
	if (sp.slots == NULL) {
		log_warnx("%s: out of memory", o->name);
		return 2;
	}
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) == -1)
		log_warn("%s: cannot become a child subreaper; orphans go to init", o->name);
	if (selfpipe_open(caught_signals, ARRAY_LEN(caught_signals), SA_RESTART) == -1) {
		log_warn("%s: cannot install signal handlers", o->name);
		free(sp.slots);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	sp.now = util_now_ms();
	for (int i = 0; i < o->nslots; i++) {
		sp.slots[i].state = SLOT_BACKOFF;	/* due now */
		sp.slots[i].due_ms = sp.now;
	}
	for (;;) {
		/*
		 * The endpoint is served from this loop, not from a thread: a child
		 * forked while another thread holds a lock could hang on it.
		 */
		struct pollfd pfd[2] = {
			{ .fd = selfpipe_fd(), .events = POLLIN },
			{ .fd = httpd_fd(o->http), .events = POLLIN },
		};
		int wait;
		int64_t hw;

		sp.now = util_now_ms();
		run_timers(&sp);
		publish_gauges(&sp);
		if (sp.stopping && (count_alive(&sp) == 0 || sp.now >= sp.deadline))
			break;
		wait = next_wake(&sp);
		if ((hw = httpd_timeout_ms(o->http)) >= 0 && hw < wait)
			wait = (int)hw;
		if (poll(pfd, pfd[1].fd >= 0 ? 2 : 1, wait) == -1 && errno != EINTR)
			log_warn("%s: poll", o->name);
		sp.now = util_now_ms();
		httpd_service(o->http);
		read_signals(&sp);
		reap_all(&sp);
	}
	/* Whatever did not drain, and anything adopted and still alive, goes with us. */
	kill_leftovers(&sp);
	publish_gauges(&sp);
	selfpipe_close();
	free(sp.slots);
	if (sp.drain_failed > 0) {
		log_warnx("%s: worker stopped; %d consumer(s) did not drain cleanly", o->name,
		    sp.drain_failed);
		return 2;
	}
	log_info("%s: worker stopped after a clean drain", o->name);
	return 0;
}
