/*
 * spawn — starting child processes the one way every part of scaleno needs
 * them (handlers, consumers, alert commands): in a process group of their
 * own (so a kill reaches everything they started), with a parent-death
 * signal (so a SIGKILLed parent leaves nothing behind), with no inherited
 * descriptor above 2, and, for a program, with an exec failure reported to
 * the parent through a close-on-exec pipe rather than as an exit status.
 *
 * The parent side of spawn_fork and spawn_exec calls only
 * async-signal-safe functions, so a process forked from a threaded one may
 * use them too.
 */
#ifndef SCALENO_SPAWN_H
#define SCALENO_SPAWN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The exit status of a child that could not be set up or exec'd. */
#define SPAWN_EXIT_SETUP 127

struct spawn_opts {
	char *const *argv;	/* the program (searched in PATH) and its arguments */
	char **envp;		/* its environment; NULL: the caller's */
	int stdin_fd;		/* becomes the child's 0; -1: inherited */
	int stdout_fd;		/* becomes the child's 1; -1: inherited */
	bool new_group;		/* its own process group (set on both sides of the fork) */
	int pdeathsig;		/* sent to it when the forking thread ends; 0: none */
};

/*
 * fork() into a child with every descriptor above 2 closed and, as asked,
 * its own process group and a parent-death signal (a child whose parent
 * died before the signal was armed exits SPAWN_EXIT_SETUP at once).
 * Returns as fork does: the pid in the parent, 0 in the child, -1 (errno).
 * Block signals around it when the child must not run the parent's handlers.
 */
pid_t spawn_fork(bool new_group, int pdeathsig);

/*
 * Start o->argv with every signal disposition reset, an empty signal mask,
 * descriptors above 2 closed on exec. Returns the pid; or -1 with errno
 * set and *exec_failed false when no child could be made (pipe, fork),
 * *exec_failed true when the exec itself failed (errno is its error, the
 * child is already reaped).
 */
pid_t spawn_exec(const struct spawn_opts *o, bool *exec_failed);

/* SIGKILL pid and its process group. */
void spawn_kill_group(pid_t pid);

/* A pidfd for pid (close-on-exec), or -1 when the kernel has none. */
int spawn_pidfd(pid_t pid);

/* "exited with status N" / "was killed by signal N (Name)" for a waitpid status, into buf. */
void spawn_status_text(int status, char *buf, size_t len);

#endif
