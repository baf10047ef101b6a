/*
 * exitcode — the exit codes of the scaleno binary and of the processes it
 * runs, in one place that the commands, the supervisor and the consumers
 * include alike (see EXIT STATUS in scaleno(8) and scaleno-worker(8)).
 */
#ifndef SCALENO_EXITCODE_H
#define SCALENO_EXITCODE_H

#define EXIT_OK		0	/* success; the worker after every consumer drained */
#define EXIT_USAGE	1	/* a usage or configuration error: nothing was started */
#define EXIT_RUNTIME	2	/* a runtime failure; a consumer killed at the drain deadline */

/*
 * The verdict of an exec handler by its exit status (scaleno-worker(8)):
 * the values of EX_DATAERR and EX_TEMPFAIL in sysexits.h. Any other
 * status, or death by a signal, is a failure to retry.
 */
#define EXIT_HANDLER_PERMANENT	65	/* failed for good: no retry */
#define EXIT_HANDLER_RETRY	75	/* failed, may succeed later */

#endif
