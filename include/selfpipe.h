/*
 * selfpipe — signals become events of a poll loop (the self-pipe trick):
 * the handler writes the signal's number into a non-blocking pipe, the
 * loop polls the read end and takes the numbers out. One per process.
 */
#ifndef SCALENO_SELFPIPE_H
#define SCALENO_SELFPIPE_H

#include <stddef.h>

/*
 * Create the pipe (non-blocking, close-on-exec) and catch sigs[0..n) with
 * the sigaction flags sa_flags (SA_RESTART, say). 0, or -1 with errno set
 * (nothing left installed).
 */
int selfpipe_open(const int *sigs, size_t n, int sa_flags);

/* The read end, to poll for POLLIN; -1 when not open. */
int selfpipe_fd(void);

/*
 * Take up to max of the signals caught since the last call, oldest first,
 * into sigs; returns how many. Never blocks. A signal caught while the pipe
 * was full is lost, but the wake-up it would have caused is already pending.
 */
size_t selfpipe_drain(int *sigs, size_t max);

/* Give the caught signals back their default action and close the pipe. */
void selfpipe_close(void);

#endif
