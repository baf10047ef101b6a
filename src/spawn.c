/*
 * spawn.c — see include/spawn.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spawn.h"

extern char **environ;

/* Without close_range, descriptors are visited up to this many. */
#define SPAWN_FD_SCAN_MAX 65536

/*
 * Close (or, with cloexec, mark close-on-exec) every descriptor from 3 up.
 * Async-signal-safe.
 */
static void
close_from_3(bool cloexec)
{
	long max;

	if (close_range(3, ~0U, cloexec ? CLOSE_RANGE_CLOEXEC : 0) == 0)
		return;
	max = sysconf(_SC_OPEN_MAX);
	if (max < 0 || max > SPAWN_FD_SCAN_MAX)
		max = SPAWN_FD_SCAN_MAX;
	for (int fd = 3; fd < max; fd++) {
		if (cloexec)
			fcntl(fd, F_SETFD, FD_CLOEXEC);
		else
			close(fd);
	}
}

/* In the child: group and parent-death signal. -1 when the parent is already gone. */
static int
child_setup(bool new_group, int pdeathsig, pid_t parent)
{
	if (new_group)
		setpgid(0, 0);
	if (pdeathsig != 0) {
		prctl(PR_SET_PDEATHSIG, pdeathsig);
		/* The parent may have died before prctl: then nobody would signal us. */
		if (getppid() != parent)
			return -1;
	}
	return 0;
}

pid_t
spawn_fork(bool new_group, int pdeathsig)
{
	pid_t parent = getpid(), pid = fork();

	if (pid == 0) {
		close_from_3(false);
		if (child_setup(new_group, pdeathsig, parent) == -1)
			_exit(SPAWN_EXIT_SETUP);
		return 0;
	}
	if (pid > 0 && new_group)
		setpgid(pid, pid);	/* both sides set it: no window where a kill misses */
	return pid;
}

/* Child side of spawn_exec: never returns. Only async-signal-safe calls. */
static void __attribute__((noreturn))
child_exec(const struct spawn_opts *o, int err_wr, pid_t parent)
{
	int in = o->stdin_fd, out = o->stdout_fd, e;
	sigset_t none;

	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (child_setup(o->new_group, o->pdeathsig, parent) == -1)
		_exit(SPAWN_EXIT_SETUP);
	/*
	 * Started with 0 or 1 closed, the caller may have got its pipes there:
	 * move them above 2 first, so the dup2 calls below cannot clobber them.
	 */
	if ((in >= 0 && (in = fcntl(in, F_DUPFD_CLOEXEC, 3)) == -1) ||
	    (out >= 0 && (out = fcntl(out, F_DUPFD_CLOEXEC, 3)) == -1))
		goto fail;
	if ((in >= 0 && dup2(in, 0) == -1) || (out >= 0 && dup2(out, 1) == -1))
		goto fail;
	/* Everything else (Redis sockets, other pipes, listening sockets) must not leak. */
	close_from_3(true);
	execvpe(o->argv[0], o->argv, o->envp != NULL ? o->envp : environ);
fail:
	e = errno;
	while (write(err_wr, &e, sizeof(e)) == -1 && errno == EINTR)
		;
	_exit(SPAWN_EXIT_SETUP);
}

pid_t
spawn_exec(const struct spawn_opts *o, bool *exec_failed)
{
	int ep[2], child_errno = 0, st, e;
	pid_t parent = getpid(), pid;
	ssize_t n;

	*exec_failed = false;
	if (pipe2(ep, O_CLOEXEC) == -1)
		return -1;
	pid = fork();
	if (pid == -1) {
		e = errno;
		close(ep[0]);
		close(ep[1]);
		errno = e;
		return -1;
	}
	if (pid == 0)
		child_exec(o, ep[1], parent);
	if (o->new_group)
		setpgid(pid, pid);
	close(ep[1]);
	do
		n = read(ep[0], &child_errno, sizeof(child_errno));
	while (n == -1 && errno == EINTR);
	close(ep[0]);
	if (n <= 0)
		return pid;	/* EOF: the exec closed the pipe */
	while (waitpid(pid, &st, 0) == -1 && errno == EINTR)
		;
	*exec_failed = true;
	errno = n == (ssize_t)sizeof(child_errno) ? child_errno : EIO;
	return -1;
}

void
spawn_kill_group(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
}

int
spawn_pidfd(pid_t pid)
{
#ifdef SYS_pidfd_open
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);

	if (fd >= 0)
		fcntl(fd, F_SETFD, FD_CLOEXEC);
	return fd;
#else
	(void)pid;
	return -1;
#endif
}

void
spawn_status_text(int st, char *buf, size_t len)
{
	if (WIFEXITED(st))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, len, "was killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
	else
		snprintf(buf, len, "ended with wait status 0x%x", (unsigned)st);
}
