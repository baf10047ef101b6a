/*
 * util — small helpers shared by every module: durations, clocks, backoff,
 * growable string buffers. No I/O beyond reading clocks.
 */
#ifndef SCALENO_UTIL_H
#define SCALENO_UTIL_H

#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MUSTCHECK __attribute__((warn_unused_result))

/*
 * Parse a duration with a unit ("250ms", "2s", "1.5m", "1h") into
 * milliseconds. Returns 0, or -1 with a message in err (no file/line: the
 * caller adds those). Bare numbers are rejected: a unit is mandatory.
 */
int util_parse_duration(const char *s, int64_t *ms, char *err, size_t errlen) MUSTCHECK;
/* Format ms as the shortest exact unit string ("1500ms", "30s", "3m"). */
void util_format_duration(int64_t ms, char *buf, size_t len);

/* CLOCK_MONOTONIC and CLOCK_REALTIME in milliseconds. */
int64_t util_now_ms(void);
int64_t util_wall_ms(void);
/* Monotonic seconds as a double (for the decision engine's clock). */
double util_now_s(void);

/* Uniform random in [0, 1); seeded once per process from time and pid. */
double util_rand01(void);
/*
 * Exponential backoff with full jitter: a random delay in
 * [base/2, min(cap, base * 2^attempt)]. attempt counts from 0.
 */
int64_t util_backoff_ms(int64_t base, int64_t cap, unsigned attempt);

/* Sleep for ms, restarting on EINTR unless *stop becomes non-zero. */
void util_sleep_ms(int64_t ms, volatile sig_atomic_t *stop);

/* Growable NUL-terminated string. Zero-initialise; free with strbuf_free. */
struct strbuf {
	char *s;
	size_t len, cap;
	bool oom;	/* set when an allocation failed; content is truncated */
};
void strbuf_printf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf_vprintf(struct strbuf *b, const char *fmt, va_list ap);
void strbuf_reset(struct strbuf *b);
void strbuf_free(struct strbuf *b);
/* Take ownership of the buffer (caller frees); b becomes empty. */
char *strbuf_steal(struct strbuf *b);

/* strdup that returns NULL for NULL. */
char *util_strdup(const char *s);
/*
 * Append the heap string s to the growable vector *v (*n used, *cap
 * allocated), which owns s from then on. s NULL or out of memory: -1, s
 * freed, the vector unchanged.
 */
int util_strv_push(char ***v, size_t *n, size_t *cap, char *s);
/* Free every string of the vector and the vector; *v, *n and *cap become empty. */
void util_strv_free(char ***v, size_t *n, size_t *cap);
/* Copy at most len-1 bytes, always NUL-terminated. Returns strlen(src). */
size_t util_strlcpy(char *dst, const char *src, size_t len);
/* Levenshtein distance, capped at 255; for "did you mean". */
unsigned util_edit_distance(const char *a, const char *b);
/* ms since the epoch as ISO 8601 UTC, "2023-11-14T22:13:20.123Z" ("-" when out of range). buf >= 64. */
void util_format_iso_ms(int64_t ms, char *buf, size_t len);
/*
 * Read a whole small regular file (<= max bytes) with trailing whitespace
 * trimmed. A FIFO, socket, device or directory is refused at once (never
 * waited on). Caller frees.
 */
char *util_read_secret(const char *path, size_t max, char *err, size_t errlen);
/* Set FD_CLOEXEC / O_NONBLOCK. 0 or -1. */
int util_set_cloexec(int fd);
int util_set_nonblock(int fd);

#endif
