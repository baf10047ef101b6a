/*
 * log — leveled logging to stderr (text or JSON lines) or syslog.
 * After relayd/OpenSMTPD log.c: log_warn appends strerror(errno); errno is
 * preserved across every call. Never logs secrets: callers pass none.
 */
#ifndef SCALENO_LOG_H
#define SCALENO_LOG_H

#include <stdbool.h>

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };
enum log_format { LOG_FMT_TEXT = 0, LOG_FMT_JSON };

/* Configure the sink. ident names the program in syslog and JSON ("scaleno"). */
void log_init(const char *ident, enum log_level level, enum log_format fmt, bool use_syslog);
/* Parse "error|warn|info|debug"; -1 when unknown. */
int log_level_parse(const char *s);
enum log_level log_get_level(void);

void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Startup-only: log and exit(2). */
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
