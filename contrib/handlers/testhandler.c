/*
 * testhandler — a configurable handler for scaleno's tests and benchmarks,
 * speaking either protocol of scaleno-worker(8).
 *
 *   testhandler [-p pipe|exec] [-r RATE] [-f RATE] [-s SEED] [-d MS] [-k N]
 *               [-x STATUS] [-l FILE] [-a FILE] [-c] [-g] [-G] [-E] [-S]
 *
 *   -p  protocol (default pipe)
 *   -r  fraction of messages answered "retry" / exit 75
 *   -f  fraction answered "fail" / exit 65
 *   -s  seed of the random choices (default: from the pid)
 *   -d  sleep this many ms per message (a slow handler)
 *   -k  exit 1 after N messages, without replying to the Nth (dies mid-stream)
 *   -x  exec: exit with this status after reading the message
 *   -l  append "<verdict> <id> <delivery> <bytes> <key> <pid>" per message to
 *       FILE (key = the "key" field or "-"); one write(2) per line, O_APPEND
 *   -a  write the NUL-separated /proc/self/cmdline to FILE at start-up
 *   -c  crash at start-up (exit 3 before reading anything)
 *   -g  answer garbage ("maybe")
 *   -G  answer an overlong line (8 KiB)
 *   -E  pipe: answer after the first byte of a message, then read the rest
 *   -S  kill itself with SIGSEGV instead of answering
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

struct opts {
	int exec;
	double retry_rate, fail_rate;
	unsigned seed;
	long delay_ms, die_after, exit_status;
	const char *log, *argv_file;
	int garbage, overlong, early, segv;
};

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static void
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w <= 0) {
			if (w == -1 && errno == EINTR)
				continue;
			return;
		}
		p += w;
		n -= (size_t)w;
	}
}

static void
copy_cmdline(const char *path)
{
	char buf[8192];
	int in = open("/proc/self/cmdline", O_RDONLY), out;
	ssize_t n;

	if (in == -1)
		return;
	out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	while (out >= 0 && (n = read(in, buf, sizeof(buf))) > 0)
		write_all(out, buf, (size_t)n);
	close(in);
	if (out >= 0)
		close(out);
}

/* Die by SIGSEGV (even under AddressSanitizer, which would catch it). */
static void
crash(void)
{
	signal(SIGSEGV, SIG_DFL);
	raise(SIGSEGV);
}

/* The verdict for one message: "ok", "retry", "fail". */
static const char *
choose(const struct opts *o, unsigned *rnd)
{
	double x = (double)rand_r(rnd) / ((double)RAND_MAX + 1);

	if (x < o->fail_rate)
		return "fail";
	if (x < o->fail_rate + o->retry_rate)
		return "retry";
	return "ok";
}

static void
log_message(const struct opts *o, const char *verdict, const char *msg, size_t len)
{
	cJSON *j, *id, *del, *fields, *key;
	char line[512];
	int fd, n;

	if (o->log == NULL)
		return;
	j = cJSON_ParseWithLength(msg, len);
	id = cJSON_GetObjectItemCaseSensitive(j, "id");
	del = cJSON_GetObjectItemCaseSensitive(j, "delivery");
	fields = cJSON_GetObjectItemCaseSensitive(j, "fields");
	key = cJSON_GetObjectItemCaseSensitive(fields, "key");
	n = snprintf(line, sizeof(line), "%s %s %d %zu %s %d\n", verdict,
	    cJSON_IsString(id) ? id->valuestring : (j == NULL ? "invalid-json" : "-"),
	    cJSON_IsNumber(del) ? del->valueint : -1, len,
	    cJSON_IsString(key) ? key->valuestring : "-", (int)getpid());
	cJSON_Delete(j);
	fd = open(o->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd >= 0) {
		write_all(fd, line, n < (int)sizeof(line) ? (size_t)n : sizeof(line) - 1);
		close(fd);
	}
}

static int
run_exec(const struct opts *o, unsigned *rnd)
{
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	const char *v;
	ssize_t n;

	if (buf == NULL)
		return 75;
	while ((n = read(0, buf + len, cap - len)) > 0 || (n == -1 && errno == EINTR)) {
		if (n > 0)
			len += (size_t)n;
		if (len == cap) {
			char *nb = realloc(buf, cap * 2);

			if (nb == NULL)
				return 75;
			buf = nb;
			cap *= 2;
		}
	}
	/* One process per message: vary the draw by message and delivery. */
	for (size_t i = 0; i < len; i++)
		*rnd = (*rnd ^ (unsigned char)buf[i]) * 16777619u;
	if (o->delay_ms > 0)
		sleep_ms(o->delay_ms);
	if (o->segv)
		crash();
	v = o->exit_status >= 0 ? (o->exit_status == 0 ? "ok" : o->exit_status == 65 ? "fail" :
	    "retry") : choose(o, rnd);
	log_message(o, v, buf, len && buf[len - 1] == '\n' ? len - 1 : len);
	free(buf);
	if (o->exit_status >= 0)
		return (int)o->exit_status;
	return strcmp(v, "ok") == 0 ? 0 : strcmp(v, "fail") == 0 ? 65 : 75;
}

/*
 * pipe: input is read with read(2) into our own buffer, and the replies are
 * written in one go whenever no complete line is left to answer, just
 * before we would block for more input (scaleno-worker(8): a handler may
 * buffer its replies as long as it flushes them before it waits).
 */
struct in {
	char *buf;
	size_t len, off, cap;
	int eof;
};

/* Read more input (after flushing stdout). 0, or -1 at EOF/error/OOM. */
static int
in_fill(struct in *in)
{
	ssize_t n;

	fflush(stdout);
	if (in->eof)
		return -1;
	if (in->off > 0) {
		memmove(in->buf, in->buf + in->off, in->len - in->off);
		in->len -= in->off;
		in->off = 0;
	}
	if (in->len == in->cap) {
		size_t cap = in->cap ? in->cap * 2 : 65536;
		char *nb = realloc(in->buf, cap);

		if (nb == NULL)
			return -1;
		in->buf = nb;
		in->cap = cap;
	}
	do
		n = read(0, in->buf + in->len, in->cap - in->len);
	while (n == -1 && errno == EINTR);
	if (n <= 0) {
		in->eof = 1;
		return -1;
	}
	in->len += (size_t)n;
	return 0;
}

/* The next line (NUL-terminated, without its newline) and its length, or NULL at EOF. */
static char *
in_line(struct in *in, size_t *len)
{
	for (;;) {
		char *nl = memchr(in->buf + in->off, '\n', in->len - in->off);

		if (nl != NULL) {
			char *line = in->buf + in->off;

			*nl = '\0';
			*len = (size_t)(nl - line);
			in->off += *len + 1;
			return line;
		}
		if (in_fill(in) < 0)
			return NULL;
	}
}

static int
run_pipe(const struct opts *o, unsigned *rnd)
{
	struct in in = { 0 };
	char *line;
	size_t n;
	long count = 0;

	for (;;) {
		if (o->early) {
			/* Answer on a message's first byte, before the rest of it is read. */
			if (in.off == in.len && in_fill(&in) < 0)
				break;
			fputs("ok\n", stdout);
			fflush(stdout);
		}
		if ((line = in_line(&in, &n)) == NULL)
			break;
		count++;
		if (o->die_after > 0 && count >= o->die_after)
			exit(1);
		if (o->delay_ms > 0) {
			fflush(stdout);	/* a slow handler's earlier replies are not held back */
			sleep_ms(o->delay_ms);
		}
		if (o->segv) {
			fflush(stdout);	/* the replies before this message count */
			crash();
		}
		if (o->early) {
			log_message(o, "ok", line, n);
			continue;
		}
		if (o->garbage) {
			fputs("maybe\n", stdout);
		} else if (o->overlong) {
			for (int i = 0; i < 8192; i++)
				putchar('r');
			putchar('\n');
		} else {
			const char *v = choose(o, rnd);

			log_message(o, v, line, n);
			if (strcmp(v, "ok") == 0)
				fputs("ok\n", stdout);
			else
				printf("%s testhandler chose to %s\n", v, v);
		}
	}
	fflush(stdout);
	free(in.buf);
	return 0;
}

int
main(int argc, char **argv)
{
	struct opts o = { .exit_status = -1, .seed = (unsigned)getpid() ^ (unsigned)time(NULL) };
	unsigned rnd;
	int ch;

	while ((ch = getopt(argc, argv, "p:r:f:s:d:k:x:l:a:cgGES")) != -1) {
		switch (ch) {
		case 'p': o.exec = strcmp(optarg, "exec") == 0; break;
		case 'r': o.retry_rate = atof(optarg); break;
		case 'f': o.fail_rate = atof(optarg); break;
		case 's': o.seed = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'd': o.delay_ms = atol(optarg); break;
		case 'k': o.die_after = atol(optarg); break;
		case 'x': o.exit_status = atol(optarg); break;
		case 'l': o.log = optarg; break;
		case 'a': o.argv_file = optarg; break;
		case 'c': return 3;
		case 'g': o.garbage = 1; break;
		case 'G': o.overlong = 1; break;
		case 'E': o.early = 1; break;
		case 'S': o.segv = 1; break;
		default:
			fprintf(stderr, "testhandler: bad option\n");
			return 2;
		}
	}
	if (o.argv_file != NULL)
		copy_cmdline(o.argv_file);
	rnd = o.seed;
	return o.exec ? run_exec(&o, &rnd) : run_pipe(&o, &rnd);
}
