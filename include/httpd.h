/*
 * httpd — a tiny HTTP endpoint (libmicrohttpd, its own thread) for /metrics,
 * /healthz and /v1/status. The only module that includes microhttpd.h.
 * The callback runs on the server's thread: it must only read data the
 * owner publishes under its own lock (see agent.c's snapshot).
 */
#ifndef SCALENO_HTTPD_H
#define SCALENO_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the callback answers: status, content type, and a malloc'd body the server frees. */
struct httpd_reply {
	int status;
	const char *content_type;
	char *body;
};

typedef void (*httpd_handler)(void *arg, const char *method, const char *path,
    struct httpd_reply *reply);

struct httpd;

/* listen = "nomad:LABEL": the address Nomad gives the port labelled LABEL. */
#define HTTPD_NOMAD_PREFIX "nomad:"

/* A Nomad port label: 1 to 64 of A-Z a-z 0-9 _. */
bool httpd_nomad_label_ok(const char *label);

/*
 * The "host:port" a listen setting means, into out: itself, or for
 * "nomad:LABEL" the value of $NOMAD_ADDR_LABEL (scaleno.conf(5)). -1 with
 * err naming the variable when it is unset or empty.
 */
int httpd_listen_resolve(const char *listen, char *out, size_t outlen, char *err, size_t errlen);

/*
 * Listen on "host:port" (an IPv4 address or "localhost") or "nomad:LABEL".
 * Clients are limited in number (overall and per address) and must send
 * their headers within a few seconds (scaleno(8), ENDPOINTS). Returns NULL with
 * err filled when the address is bad or cannot be bound. Free with httpd_stop.
 */
struct httpd *httpd_start(const char *listen, httpd_handler fn, void *arg, char *err, size_t errlen);
void httpd_stop(struct httpd *h);

/*
 * The same server without a thread of its own, for a process that forks:
 * a child forked while another thread holds a lock (an allocator's, say)
 * can hang on it. The caller polls httpd_fd() for POLLIN, waits at most
 * httpd_timeout_ms() (-1: no limit of its own), and calls httpd_service().
 * The callback then runs on the caller's thread.
 */
struct httpd *httpd_start_polled(const char *listen, httpd_handler fn, void *arg, char *err,
    size_t errlen);
int httpd_fd(const struct httpd *h);
int64_t httpd_timeout_ms(struct httpd *h);
void httpd_service(struct httpd *h);

#endif
