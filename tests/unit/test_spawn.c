/*
 * test_spawn — starting children (spawn) and signals as poll events
 * (selfpipe), with real processes.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "selfpipe.h"
#include "spawn.h"
#include "util.h"

/* A string literal as the char * an argv holds. */
#define ARG(s) ((char *)(uintptr_t)(s))
#define LEAK_FD 57	/* a descriptor the parent leaves open without close-on-exec */

/* Wait for pid, at most ms; its status, or -1 when it did not end in time (then killed). */
static int
wait_bounded(pid_t pid, int64_t ms)
{
	int64_t end = util_now_ms() + ms;
	int st;

	while (util_now_ms() < end) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return st;
		poll(NULL, 0, 10);
	}
	spawn_kill_group(pid);
	waitpid(pid, &st, 0);
	return -1;
}

static void
test_exec_failure_is_reported(void)
{
	char *argv[] = { ARG("/nonexistent/scaleno-test-prog"), NULL };
	struct spawn_opts o = { .argv = argv, .stdin_fd = -1, .stdout_fd = -1, .new_group = true };
	bool exec_failed = false;

	errno = 0;
	CU_ASSERT_EQUAL(spawn_exec(&o, &exec_failed), -1);
	CU_ASSERT_TRUE(exec_failed);
	CU_ASSERT_EQUAL(errno, ENOENT);
	CU_ASSERT_EQUAL(waitpid(-1, NULL, WNOHANG), -1);	/* already reaped */
}

/* stdout goes to the pipe; nothing else of ours is inherited; the child leads its own group. */
static void
test_exec_fds_and_group(void)
{
	char *argv[] = { ARG("sh"), ARG("-c"),
	    ARG("ls /proc/$$/fd; echo pgid $(ps -o pgid= -p $$ 2>/dev/null)"), NULL };
	struct spawn_opts o = { .argv = argv, .stdin_fd = -1, .new_group = true,
	    .pdeathsig = SIGKILL };
	char buf[4096] = "", how[96];
	size_t got = 0;
	bool exec_failed;
	int out[2], st;
	ssize_t n;
	pid_t pid;

	CU_ASSERT_EQUAL_FATAL(pipe2(out, O_CLOEXEC), 0);
	CU_ASSERT_EQUAL_FATAL(dup2(out[0], LEAK_FD), LEAK_FD);	/* dup2 clears close-on-exec */
	o.stdout_fd = out[1];
	pid = spawn_exec(&o, &exec_failed);
	CU_ASSERT_FATAL(pid > 0);
	close(out[1]);
	while (got < sizeof(buf) - 1 && (n = read(out[0], buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)n;
	st = wait_bounded(pid, 5000);
	CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CU_ASSERT_PTR_NULL(strstr(buf, "57\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(buf, "0\n1\n2\n"));
	if (strstr(buf, "pgid ") != NULL && strstr(buf, "pgid \n") == NULL)
		CU_ASSERT_EQUAL(atoi(strstr(buf, "pgid ") + 5), pid);
	spawn_status_text(st, how, sizeof(how));
	CU_ASSERT_STRING_EQUAL(how, "exited with status 0");
	close(out[0]);
	close(LEAK_FD);
}

static void
test_kill_group_and_status_text(void)
{
	char *argv[] = { ARG("sh"), ARG("-c"), ARG("sleep 30 & sleep 30; exit 3"), NULL };
	struct spawn_opts o = { .argv = argv, .stdin_fd = -1, .stdout_fd = -1, .new_group = true };
	char how[96];
	bool exec_failed;
	pid_t pid = spawn_exec(&o, &exec_failed);
	int st;

	CU_ASSERT_EQUAL_FATAL(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);	/* orphans come back to us */
	CU_ASSERT_FATAL(pid > 0);
	CU_ASSERT_EQUAL(getpgid(pid), pid);
	poll(NULL, 0, 100);	/* let sh start its background sleep */
	spawn_kill_group(pid);
	st = wait_bounded(pid, 5000);
	CU_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	spawn_status_text(st, how, sizeof(how));
	CU_ASSERT_PTR_NOT_NULL(strstr(how, "was killed by signal 9"));
	/* The whole group went: once its orphans are reaped, no process is left in it. */
	for (int i = 0; i < 500 && kill(-pid, 0) == 0; i++) {
		while (waitpid(-1, &st, WNOHANG) > 0)
			;
		poll(NULL, 0, 10);
	}
	CU_ASSERT_EQUAL(kill(-pid, 0), -1);
	prctl(PR_SET_CHILD_SUBREAPER, 0);
	spawn_status_text(3 << 8, how, sizeof(how));
	CU_ASSERT_STRING_EQUAL(how, "exited with status 3");
}

/* A child of spawn_fork has no descriptor above 2 and dies with the process that forked it. */
static void
test_fork_closes_and_dies_with_parent(void)
{
	int ids[2], st;
	pid_t mid, grandchild = 0, pid;

	CU_ASSERT_EQUAL_FATAL(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	CU_ASSERT_EQUAL_FATAL(dup2(STDERR_FILENO, LEAK_FD), LEAK_FD);
	pid = spawn_fork(true, 0);
	if (pid == 0)
		_exit(fcntl(LEAK_FD, F_GETFD) == -1 && errno == EBADF ? 0 : 1);
	CU_ASSERT_FATAL(pid > 0);
	st = wait_bounded(pid, 5000);
	CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	close(LEAK_FD);

	CU_ASSERT_EQUAL_FATAL(pipe(ids), 0);
	mid = fork();
	if (mid == 0) {
		struct timespec limit = { 5, 0 };
		sigset_t usr1;
		pid_t g;

		sigemptyset(&usr1);
		sigaddset(&usr1, SIGUSR1);
		sigprocmask(SIG_BLOCK, &usr1, NULL);
		if ((g = spawn_fork(true, SIGKILL)) == 0) {
			/* Armed once spawn_fork has returned: tell the parent, then wait for the signal. */
			kill(getppid(), SIGUSR1);
			pause();
			_exit(0);
		}
		(void)!write(ids[1], &g, sizeof(g));
		sigtimedwait(&usr1, NULL, &limit);
		_exit(0);	/* the grandchild must die with us */
	}
	close(ids[1]);
	CU_ASSERT_EQUAL(read(ids[0], &grandchild, sizeof(grandchild)), (ssize_t)sizeof(grandchild));
	close(ids[0]);
	wait_bounded(mid, 5000);
	CU_ASSERT_FATAL(grandchild > 0);
	st = wait_bounded(grandchild, 5000);	/* re-parented to us, the subreaper */
	CU_ASSERT(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	prctl(PR_SET_CHILD_SUBREAPER, 0);
}

static void
test_selfpipe(void)
{
	static const int sigs[] = { SIGUSR1, SIGUSR2 };
	struct pollfd pfd;
	struct sigaction sa;
	int got[8];

	CU_ASSERT_EQUAL(selfpipe_drain(got, 8), 0);	/* not open: nothing */
	CU_ASSERT_EQUAL_FATAL(selfpipe_open(sigs, 2, 0), 0);
	CU_ASSERT_EQUAL(selfpipe_open(sigs, 2, 0), -1);	/* one per process */
	pfd = (struct pollfd){ .fd = selfpipe_fd(), .events = POLLIN };
	CU_ASSERT_EQUAL(poll(&pfd, 1, 0), 0);
	raise(SIGUSR1);
	raise(SIGUSR2);
	raise(SIGUSR1);
	CU_ASSERT_EQUAL(poll(&pfd, 1, 1000), 1);
	CU_ASSERT_EQUAL_FATAL(selfpipe_drain(got, 2), 2);
	CU_ASSERT(got[0] == SIGUSR1 && got[1] == SIGUSR2);
	CU_ASSERT_EQUAL_FATAL(selfpipe_drain(got, 8), 1);
	CU_ASSERT_EQUAL(got[0], SIGUSR1);
	CU_ASSERT_EQUAL(selfpipe_drain(got, 8), 0);
	selfpipe_close();
	CU_ASSERT_EQUAL(selfpipe_fd(), -1);
	sigaction(SIGUSR1, NULL, &sa);
	CU_ASSERT(sa.sa_handler == SIG_DFL);
}

int
main(void)
{
	CU_pSuite s;
	int fails;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("spawn", NULL, NULL);
	CU_add_test(s, "exec failure is reported", test_exec_failure_is_reported);
	CU_add_test(s, "exec: fds and group", test_exec_fds_and_group);
	CU_add_test(s, "kill group, status text", test_kill_group_and_status_text);
	CU_add_test(s, "fork: fds closed, dies with parent", test_fork_closes_and_dies_with_parent);
	CU_add_test(s, "selfpipe", test_selfpipe);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	fails = (int)CU_get_number_of_failures();
	CU_cleanup_registry();
	return fails != 0;
}
