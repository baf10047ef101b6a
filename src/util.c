/*
 * util.c — see include/util.h.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

int
util_parse_duration(const char *s, int64_t *ms, char *err, size_t errlen)
{
	const char *p;
	char *end;
	double v, mult;
	size_t digits;

	if (s == NULL || *s == '\0') {
		snprintf(err, errlen, "empty duration");
		return -1;
	}
	/*
	 * Decimal digits with an optional fraction, then the unit: strtod alone
	 * would also take "0x10s" (16 s), "inf", "1e3s" and leading blanks.
	 */
	p = s + (*s == '-');
	digits = strspn(p, "0123456789");
	if (p[digits] == '.')
		digits += 1 + strspn(p + digits + 1, "0123456789");
	if (digits == 0 || !isdigit((unsigned char)*p) || isdigit((unsigned char)p[digits]) ||
	    p[digits] == '.' || (p[digits] != '\0' && !isalpha((unsigned char)p[digits]) &&
	    p[digits] != ' ')) {
		snprintf(err, errlen, "invalid duration \"%s\" (expected a number and a unit, e.g. \"500ms\", \"30s\", \"5m\")", s);
		return -1;
	}
	errno = 0;
	v = strtod(s, &end);
	if (end != p + digits || errno != 0 || !isfinite(v)) {
		snprintf(err, errlen, "invalid duration \"%s\" (expected a number and a unit, e.g. \"500ms\", \"30s\", \"5m\")", s);
		return -1;
	}
	if (strcmp(end, "ms") == 0)
		mult = 1;
	else if (strcmp(end, "s") == 0)
		mult = 1000;
	else if (strcmp(end, "m") == 0)
		mult = 60000;
	else if (strcmp(end, "h") == 0)
		mult = 3600000;
	else if (*end == '\0') {
		snprintf(err, errlen, "duration \"%s\" has no unit (use ms, s, m or h)", s);
		return -1;
	} else {
		snprintf(err, errlen, "duration \"%s\" has an unknown unit \"%s\" (use ms, s, m or h)", s, end);
		return -1;
	}
	if (v < 0) {
		snprintf(err, errlen, "duration \"%s\" is negative", s);
		return -1;
	}
	v *= mult;
	if (v > 1e15) {
		snprintf(err, errlen, "duration \"%s\" is too large", s);
		return -1;
	}
	if (v > 0 && v < 1) {
		snprintf(err, errlen, "duration \"%s\" is below one millisecond", s);
		return -1;
	}
	*ms = (int64_t)llround(v);
	return 0;
}

void
util_format_iso_ms(int64_t ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (ms < 0 || gmtime_r(&t, &tm) == NULL || tm.tm_year > 9999 - 1900) {
		snprintf(buf, len, "-");
		return;
	}
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
	    tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

void
util_format_duration(int64_t ms, char *buf, size_t len)
{
	if (ms != 0 && ms % 3600000 == 0)
		snprintf(buf, len, "%lldh", (long long)(ms / 3600000));
	else if (ms != 0 && ms % 60000 == 0)
		snprintf(buf, len, "%lldm", (long long)(ms / 60000));
	else if (ms != 0 && ms % 1000 == 0)
		snprintf(buf, len, "%llds", (long long)(ms / 1000));
	else
		snprintf(buf, len, "%lldms", (long long)ms);
}

static int64_t
clock_ms(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t util_now_ms(void) { return clock_ms(CLOCK_MONOTONIC); }
int64_t util_wall_ms(void) { return clock_ms(CLOCK_REALTIME); }

double
util_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double
util_rand01(void)
{
	static unsigned short xsubi[3];
	static pid_t seeded_pid;

	if (seeded_pid != getpid()) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		seeded_pid = getpid();
		xsubi[0] = (unsigned short)ts.tv_nsec;
		xsubi[1] = (unsigned short)(ts.tv_nsec >> 16) ^ (unsigned short)seeded_pid;
		xsubi[2] = (unsigned short)ts.tv_sec ^ (unsigned short)(seeded_pid >> 16);
	}
	return erand48(xsubi);
}

int64_t
util_backoff_ms(int64_t base, int64_t cap, unsigned attempt)
{
	double hi = (double)base;

	if (base <= 0)
		return 0;
	for (unsigned i = 0; i < attempt && hi < (double)cap; i++)
		hi *= 2;
	if (hi > (double)cap)
		hi = (double)cap;
	if (hi < (double)base / 2)
		return base / 2;
	return (int64_t)((double)base / 2 + util_rand01() * (hi - (double)base / 2));
}

void
util_sleep_ms(int64_t ms, volatile sig_atomic_t *stop)
{
	struct timespec ts, rem;

	if (ms <= 0)
		return;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000;
	while (nanosleep(&ts, &rem) == -1 && errno == EINTR) {
		if (stop != NULL && *stop)
			return;
		ts = rem;
	}
}

void
strbuf_vprintf(struct strbuf *b, const char *fmt, va_list ap)
{
	va_list aq;
	int n;

	if (b->oom)
		return;
	for (;;) {
		size_t avail = b->cap - b->len;

		va_copy(aq, ap);
		n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? avail : 0, fmt, aq);
		va_end(aq);
		if (n < 0)
			return;
		if (b->s != NULL && (size_t)n < avail) {
			b->len += (size_t)n;
			return;
		}
		size_t ncap = b->cap ? b->cap * 2 : 256;
		while (ncap < b->len + (size_t)n + 1)
			ncap *= 2;
		char *ns = realloc(b->s, ncap);
		if (ns == NULL) {
			b->oom = true;
			return;
		}
		b->s = ns;
		b->cap = ncap;
		if (b->len == 0)
			b->s[0] = '\0';
	}
}

void
strbuf_printf(struct strbuf *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	strbuf_vprintf(b, fmt, ap);
	va_end(ap);
}

void
strbuf_reset(struct strbuf *b)
{
	b->len = 0;
	b->oom = false;
	if (b->s != NULL)
		b->s[0] = '\0';
}

void
strbuf_free(struct strbuf *b)
{
	free(b->s);
	b->s = NULL;
	b->len = b->cap = 0;
	b->oom = false;
}

char *
strbuf_steal(struct strbuf *b)
{
	char *s = b->s;

	if (s == NULL)
		s = strdup("");
	b->s = NULL;
	b->len = b->cap = 0;
	b->oom = false;
	return s;
}

int
util_strv_push(char ***v, size_t *n, size_t *cap, char *s)
{
	if (s == NULL)
		return -1;
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 8;
		char **nv = realloc(*v, ncap * sizeof(*nv));

		if (nv == NULL) {
			free(s);
			return -1;
		}
		*v = nv;
		*cap = ncap;
	}
	(*v)[(*n)++] = s;
	return 0;
}

void
util_strv_free(char ***v, size_t *n, size_t *cap)
{
	for (size_t i = 0; i < *n; i++)
		free((*v)[i]);
	free(*v);
	*v = NULL;
	*n = *cap = 0;
}

char *
util_strdup(const char *s)
{
	return s == NULL ? NULL : strdup(s);
}

size_t
util_strlcpy(char *dst, const char *src, size_t len)
{
	size_t n = strlen(src);

	if (len > 0) {
		size_t c = n < len - 1 ? n : len - 1;
		memcpy(dst, src, c);
		dst[c] = '\0';
	}
	return n;
}

unsigned
util_edit_distance(const char *a, const char *b)
{
	unsigned row[64], i, j, la = (unsigned)strlen(a), lb = (unsigned)strlen(b);

	if (la >= 63 || lb >= 63)
		return 255;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		unsigned prev = row[0];
		row[0] = i;
		for (j = 1; j <= lb; j++) {
			unsigned cur = row[j];
			unsigned cost = a[i - 1] == b[j - 1] ? 0 : 1;
			unsigned v = prev + cost;
			if (row[j] + 1 < v)
				v = row[j] + 1;
			if (row[j - 1] + 1 < v)
				v = row[j - 1] + 1;
			row[j] = v;
			prev = cur;
		}
	}
	return row[lb] > 255 ? 255 : row[lb];
}

char *
util_read_secret(const char *path, size_t max, char *err, size_t errlen)
{
	struct stat st;
	char *buf;
	size_t n = 0;
	ssize_t got;
	int fd;

	/* O_NONBLOCK: a FIFO or a device must not hang a reload; it is refused below. */
	if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)) == -1) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s is %s, not a regular file", path,
		    S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a FIFO" :
		    S_ISSOCK(st.st_mode) ? "a socket" : "a device or special file");
		close(fd);
		return NULL;
	}
	if ((buf = malloc(max + 1)) == NULL) {
		close(fd);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	/* A regular file: each read returns data or 0 at the end; max + 1 bounds the loop. */
	while (n <= max && (got = read(fd, buf + n, max + 1 - n)) != 0) {
		if (got == -1 && errno == EINTR)
			continue;
		if (got == -1) {
			snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
			close(fd);
			free(buf);
			return NULL;
		}
		n += (size_t)got;
	}
	close(fd);
	if (n > max) {
		snprintf(err, errlen, "%s is too large", path);
		free(buf);
		return NULL;
	}
	while (n > 0 && isspace((unsigned char)buf[n - 1]))
		n--;
	buf[n] = '\0';
	return buf;
}

int
util_set_cloexec(int fd)
{
	int fl = fcntl(fd, F_GETFD);

	return fl == -1 ? -1 : fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
}

int
util_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl == -1 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}
