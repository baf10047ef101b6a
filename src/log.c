/*
 * log.c — see include/log.h.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "log.h"

static const char *log_ident = "scaleno";
static enum log_level log_level = LOG_LVL_INFO;
static enum log_format log_format = LOG_FMT_TEXT;
static bool log_syslog;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void
log_init(const char *ident, enum log_level level, enum log_format fmt, bool use_syslog)
{
	if (ident != NULL)
		log_ident = ident;
	log_level = level;
	log_format = fmt;
	if (use_syslog && !log_syslog)
		openlog(log_ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	else if (!use_syslog && log_syslog)
		closelog();
	log_syslog = use_syslog;
}

int
log_level_parse(const char *s)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcmp(s, level_names[i]) == 0)
			return (int)i;
	if (strcmp(s, "warning") == 0)
		return LOG_LVL_WARN;
	return -1;
}

enum log_level
log_get_level(void)
{
	return log_level;
}

static void
log_emit(enum log_level lvl, const char *msg)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	char ts[96];
	struct timespec now;
	struct tm tm;

	if (log_syslog) {
		syslog(prio[lvl], "%s", msg);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	    tm.tm_sec, now.tv_nsec / 1000000);
	if (log_format == LOG_FMT_JSON) {
		cJSON *o = cJSON_CreateObject();
		char *s;

		if (o == NULL)
			return;
		cJSON_AddStringToObject(o, "ts", ts);
		cJSON_AddStringToObject(o, "level", level_names[lvl]);
		cJSON_AddStringToObject(o, "prog", log_ident);
		cJSON_AddNumberToObject(o, "pid", (double)getpid());
		cJSON_AddStringToObject(o, "msg", msg);
		if ((s = cJSON_PrintUnformatted(o)) != NULL) {
			fprintf(stderr, "%s\n", s);
			cJSON_free(s);
		}
		cJSON_Delete(o);
	} else
		fprintf(stderr, "%s %s[%d] %s: %s\n", ts, log_ident, (int)getpid(),
		    level_names[lvl], msg);
	fflush(stderr);
}

static void
log_vlog(enum log_level lvl, bool with_errno, const char *fmt, va_list ap)
{
	int saved = errno;
	char msg[2048];
	size_t len;

	if (lvl > log_level) {
		errno = saved;
		return;
	}
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (with_errno) {
		len = strlen(msg);
		snprintf(msg + len, sizeof(msg) - len, ": %s", strerror(saved));
	}
	log_emit(lvl, msg);
	errno = saved;
}

#define LOG_BODY(lvl, with_errno) do {		\
	va_list ap;				\
	va_start(ap, fmt);			\
	log_vlog(lvl, with_errno, fmt, ap);	\
	va_end(ap);				\
} while (0)

void log_warn(const char *fmt, ...)  { LOG_BODY(LOG_LVL_WARN, true); }
void log_warnx(const char *fmt, ...) { LOG_BODY(LOG_LVL_WARN, false); }
void log_error(const char *fmt, ...) { LOG_BODY(LOG_LVL_ERROR, false); }
void log_info(const char *fmt, ...)  { LOG_BODY(LOG_LVL_INFO, false); }
void log_debug(const char *fmt, ...) { LOG_BODY(LOG_LVL_DEBUG, false); }

void
fatalx(const char *fmt, ...)
{
	LOG_BODY(LOG_LVL_ERROR, false);
	exit(2);
}
