/*
 * selfpipe.c — see include/selfpipe.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "selfpipe.h"

#define SELFPIPE_MAX_SIGS 8

static int pipe_fds[2] = { -1, -1 };
static int caught[SELFPIPE_MAX_SIGS];
static size_t ncaught;

/* Async-signal-safe: one write, errno kept for the code it interrupted. */
static void
selfpipe_on_signal(int sig)
{
	int saved = errno;
	unsigned char c = (unsigned char)sig;

	if (pipe_fds[1] >= 0 && write(pipe_fds[1], &c, 1) == -1) {
		/* Full: a wake-up is already pending, which is what the loop needs. */
	}
	errno = saved;
}

int
selfpipe_open(const int *sigs, size_t n, int sa_flags)
{
	struct sigaction sa;

	if (pipe_fds[0] >= 0 || n > SELFPIPE_MAX_SIGS) {
		errno = EINVAL;
		return -1;
	}
	if (pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) == -1) {
		pipe_fds[0] = pipe_fds[1] = -1;
		return -1;
	}
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = selfpipe_on_signal;
	sa.sa_flags = sa_flags;
	for (ncaught = 0; ncaught < n; ncaught++) {
		if (sigaction(sigs[ncaught], &sa, NULL) == -1) {
			int e = errno;

			selfpipe_close();
			errno = e;
			return -1;
		}
		caught[ncaught] = sigs[ncaught];
	}
	return 0;
}

int
selfpipe_fd(void)
{
	return pipe_fds[0];
}

size_t
selfpipe_drain(int *sigs, size_t max)
{
	unsigned char buf[64];
	size_t got = 0;

	while (pipe_fds[0] >= 0 && got < max) {
		size_t want = max - got < sizeof(buf) ? max - got : sizeof(buf);
		ssize_t n = read(pipe_fds[0], buf, want);

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			sigs[got++] = buf[i];
	}
	return got;
}

void
selfpipe_close(void)
{
	for (size_t i = 0; i < ncaught; i++)
		signal(caught[i], SIG_DFL);
	ncaught = 0;
	for (int i = 0; i < 2; i++) {
		if (pipe_fds[i] >= 0)
			close(pipe_fds[i]);
		pipe_fds[i] = -1;
	}
}
