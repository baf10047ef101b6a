/*
 * httpd.c — see include/httpd.h.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "httpd.h"

/* An idle client connection is closed after this many seconds ... */
#define HTTPD_IDLE_TIMEOUT_S 10
/* ... and at most this many are open at once (a scraper needs one or two), ... */
#define HTTPD_MAX_CONNECTIONS 64
/* ... at most this many from one client address, ... */
#define HTTPD_MAX_PER_ADDRESS 8
/* ... and a request's headers must be complete within this many seconds of its start. */
#define HTTPD_HEADER_TIMEOUT_S 5
/* How often the slow-header sweep runs (ms). */
#define HTTPD_SWEEP_MS 250

#if MHD_VERSION < 0x00097002
typedef int httpd_result;
#else
typedef enum MHD_Result httpd_result;
#endif

/* One open client connection, for the slow-header sweep. */
struct httpd_conn {
	bool used;
	bool in_headers;	/* a request started and its headers are not complete yet */
	int fd;
	int64_t since_ms;	/* when the current request (or the connection) started */
};

struct httpd {
	struct MHD_Daemon *d;
	int fd;			/* polled mode: the daemon's epoll fd; -1 with a thread */
	httpd_handler fn;
	void *arg;
	pthread_mutex_t lock;	/* conns: the sweeper thread and MHD's callbacks */
	struct httpd_conn conns[HTTPD_MAX_CONNECTIONS];
	pthread_t sweeper;	/* threaded mode only */
	bool have_sweeper;
	bool stopping;		/* under lock */
	pthread_cond_t wake;
	int64_t next_sweep_ms;	/* polled mode */
};

static int64_t
httpd_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * MHD's own timeout is an idle timeout: a client sending a header line every
 * few seconds would hold its connection for ever. Connections whose headers
 * are not complete HTTPD_HEADER_TIMEOUT_S after the request started are shut
 * down here; MHD then sees the end of the stream and closes them.
 */
static void
httpd_sweep(struct httpd *h)
{
	int64_t now = httpd_now_ms();

	pthread_mutex_lock(&h->lock);
	for (size_t i = 0; i < HTTPD_MAX_CONNECTIONS; i++) {
		struct httpd_conn *c = &h->conns[i];

		if (c->used && c->in_headers && now - c->since_ms > HTTPD_HEADER_TIMEOUT_S * 1000) {
			shutdown(c->fd, SHUT_RDWR);
			c->in_headers = false;
		}
	}
	pthread_mutex_unlock(&h->lock);
}

static void *
httpd_sweeper(void *arg)
{
	struct httpd *h = arg;
	struct timespec until;

	pthread_mutex_lock(&h->lock);
	while (!h->stopping) {
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += HTTPD_SWEEP_MS * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&h->wake, &h->lock, &until);
		if (h->stopping)
			break;
		pthread_mutex_unlock(&h->lock);
		httpd_sweep(h);
		pthread_mutex_lock(&h->lock);
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

/* MHD: a connection opened or closed (closed: before its socket is). */
static void
httpd_notify_conn(void *cls, struct MHD_Connection *conn, void **socket_context,
    enum MHD_ConnectionNotificationCode toe)
{
	struct httpd *h = cls;
	const union MHD_ConnectionInfo *info;
	struct httpd_conn *c = *socket_context;

	pthread_mutex_lock(&h->lock);
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		for (size_t i = 0; info != NULL && i < HTTPD_MAX_CONNECTIONS; i++)
			if (!h->conns[i].used) {
				h->conns[i] = (struct httpd_conn){ true, true, info->connect_fd,
				    httpd_now_ms() };
				*socket_context = &h->conns[i];
				break;
			}
	} else if (c != NULL) {
		c->used = false;
		*socket_context = NULL;
	}
	pthread_mutex_unlock(&h->lock);
}

/* Mark the headers of conn's request complete (headers) or a new request started. */
static void
httpd_mark(struct httpd *h, struct MHD_Connection *conn, bool in_headers)
{
	const union MHD_ConnectionInfo *info;
	struct httpd_conn *c;

	info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	if (info == NULL || (c = info->socket_context) == NULL)
		return;
	pthread_mutex_lock(&h->lock);
	if (c->used) {
		c->in_headers = in_headers;
		c->since_ms = httpd_now_ms();
	}
	pthread_mutex_unlock(&h->lock);
}

/* MHD: a request is done; a kept-alive connection starts waiting for the next one's headers. */
static void
httpd_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	(void)con_cls;
	(void)toe;
	httpd_mark(cls, conn, true);
}

static httpd_result
httpd_answer(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
    const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	struct httpd *h = cls;
	struct httpd_reply r = { 500, "text/plain; charset=utf-8", NULL };
	struct MHD_Response *resp;
	httpd_result ret;

	(void)version;
	(void)upload_data;
	if (*con_cls == NULL) {		/* first call: headers only */
		*con_cls = h;
		httpd_mark(h, conn, false);
		return MHD_YES;
	}
	if (*upload_data_size != 0) {	/* ignore request bodies */
		*upload_data_size = 0;
		return MHD_YES;
	}
	h->fn(h->arg, method, url, &r);
	if (r.body == NULL)
		r.body = strdup("");
	if (r.body == NULL)
		return MHD_NO;
	resp = MHD_create_response_from_buffer(strlen(r.body), r.body, MHD_RESPMEM_MUST_FREE);
	if (resp == NULL) {
		free(r.body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", r.content_type);
	ret = MHD_queue_response(conn, (unsigned)r.status, resp);
	MHD_destroy_response(resp);
	return ret;
}

int
httpd_listen_resolve(const char *listen, char *out, size_t outlen, char *err, size_t errlen)
{
	char var[128];
	const char *label, *v;

	if (strncmp(listen, HTTPD_NOMAD_PREFIX, strlen(HTTPD_NOMAD_PREFIX)) != 0) {
		if (strlen(listen) >= outlen) {
			snprintf(err, errlen, "listen address \"%.64s...\" is too long", listen);
			return -1;
		}
		strcpy(out, listen);
		return 0;
	}
	label = listen + strlen(HTTPD_NOMAD_PREFIX);
	if (!httpd_nomad_label_ok(label)) {
		snprintf(err, errlen, "listen \"%.64s\": a Nomad port label is 1 to 64 of "
		    "A-Z a-z 0-9 _", listen);
		return -1;
	}
	snprintf(var, sizeof(var), "NOMAD_ADDR_%s", label);
	if ((v = getenv(var)) == NULL || *v == '\0') {
		snprintf(err, errlen, "listen \"%s\": $%s is not set (Nomad sets it inside an "
		    "allocation whose network block has a port labelled \"%s\")", listen, var, label);
		return -1;
	}
	if (strlen(v) >= outlen) {
		snprintf(err, errlen, "listen \"%s\": $%s is too long", listen, var);
		return -1;
	}
	strcpy(out, v);
	return 0;
}

bool
httpd_nomad_label_ok(const char *label)
{
	size_t n = strlen(label);

	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)label[i]) && label[i] != '_')
			return false;
	return true;
}

static int
httpd_parse_listen(const char *listen, struct sockaddr_in *sa, char *err, size_t errlen)
{
	char host[256];
	const char *colon = strrchr(listen, ':');
	char *end;
	long port;

	if (colon == NULL || colon == listen || (size_t)(colon - listen) >= sizeof(host)) {
		snprintf(err, errlen, "listen address \"%s\" is not host:port", listen);
		return -1;
	}
	memcpy(host, listen, (size_t)(colon - listen));
	host[colon - listen] = '\0';
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || errno != 0 || port < 0 || port > 65535 || end == colon + 1) {
		snprintf(err, errlen, "listen address \"%s\" has a bad port", listen);
		return -1;
	}
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((unsigned short)port);
	if (strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");
	if (inet_pton(AF_INET, host, &sa->sin_addr) != 1) {
		snprintf(err, errlen, "listen address \"%s\": host must be an IPv4 address", listen);
		return -1;
	}
	return 0;
}

static void
httpd_free(struct httpd *h)
{
	pthread_cond_destroy(&h->wake);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

static struct httpd *
httpd_start_flags(const char *listen, httpd_handler fn, void *arg, unsigned int flags,
    char *err, size_t errlen)
{
	struct sockaddr_in sa;
	struct httpd *h;
	char addr[256];

	if (httpd_listen_resolve(listen, addr, sizeof(addr), err, errlen) == -1 ||
	    httpd_parse_listen(addr, &sa, err, errlen) == -1)
		return NULL;
	if ((h = calloc(1, sizeof(*h))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->fn = fn;
	h->arg = arg;
	h->fd = -1;
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->wake, NULL);
	h->d = MHD_start_daemon(flags | MHD_USE_ERROR_LOG,
	    ntohs(sa.sin_port), NULL, NULL, httpd_answer, h,
	    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)HTTPD_IDLE_TIMEOUT_S,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned int)HTTPD_MAX_CONNECTIONS,
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)HTTPD_MAX_PER_ADDRESS,
	    MHD_OPTION_NOTIFY_CONNECTION, httpd_notify_conn, h,
	    MHD_OPTION_NOTIFY_COMPLETED, httpd_completed, h,
	    MHD_OPTION_END);
	if (h->d == NULL) {
		snprintf(err, errlen, "cannot listen on %s (address in use or not local?)", addr);
		httpd_free(h);
		return NULL;
	}
	if ((flags & MHD_USE_INTERNAL_POLLING_THREAD) != 0) {
		if (pthread_create(&h->sweeper, NULL, httpd_sweeper, h) != 0) {
			snprintf(err, errlen, "%s: cannot start a thread", addr);
			MHD_stop_daemon(h->d);
			httpd_free(h);
			return NULL;
		}
		h->have_sweeper = true;
	}
	return h;
}

struct httpd *
httpd_start(const char *listen, httpd_handler fn, void *arg, char *err, size_t errlen)
{
	return httpd_start_flags(listen, fn, arg, MHD_USE_INTERNAL_POLLING_THREAD, err, errlen);
}

struct httpd *
httpd_start_polled(const char *listen, httpd_handler fn, void *arg, char *err, size_t errlen)
{
	const union MHD_DaemonInfo *info;
	struct httpd *h = httpd_start_flags(listen, fn, arg, MHD_USE_EPOLL, err, errlen);

	if (h == NULL)
		return NULL;
	info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
	if (info == NULL || info->epoll_fd < 0) {
		snprintf(err, errlen, "%s: no epoll descriptor to poll", listen);
		httpd_stop(h);
		return NULL;
	}
	h->fd = info->epoll_fd;
	return h;
}

int
httpd_fd(const struct httpd *h)
{
	return h == NULL ? -1 : h->fd;
}

int64_t
httpd_timeout_ms(struct httpd *h)
{
	MHD_UNSIGNED_LONG_LONG t;

	if (h == NULL || h->fd < 0)
		return -1;
	if (MHD_get_timeout(h->d, &t) != MHD_YES || t > (MHD_UNSIGNED_LONG_LONG)HTTPD_SWEEP_MS)
		t = HTTPD_SWEEP_MS;	/* the slow-header sweep */
	return (int64_t)t;
}

void
httpd_service(struct httpd *h)
{
	int64_t now;

	if (h == NULL || h->fd < 0)
		return;
	MHD_run(h->d);
	if ((now = httpd_now_ms()) >= h->next_sweep_ms) {
		httpd_sweep(h);
		h->next_sweep_ms = now + HTTPD_SWEEP_MS;
	}
}

void
httpd_stop(struct httpd *h)
{
	if (h == NULL)
		return;
	if (h->have_sweeper) {
		pthread_mutex_lock(&h->lock);
		h->stopping = true;
		pthread_cond_signal(&h->wake);
		pthread_mutex_unlock(&h->lock);
		pthread_join(h->sweeper, NULL);
	}
	MHD_stop_daemon(h->d);
	httpd_free(h);
}
