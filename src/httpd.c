/*
 * httpd.c — see include/httpd.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "httpd.h"

/* An idle client connection is closed after this many seconds ... */
#define HTTPD_IDLE_TIMEOUT_S 10
/* ... and at most this many are open at once (a scraper needs one or two). */
#define HTTPD_MAX_CONNECTIONS 64

#if MHD_VERSION < 0x00097002
typedef int httpd_result;
#else
typedef enum MHD_Result httpd_result;
#endif

struct httpd {
	struct MHD_Daemon *d;
	int fd;			/* polled mode: the daemon's epoll fd; -1 with a thread */
	httpd_handler fn;
	void *arg;
};

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

static struct httpd *
httpd_start_flags(const char *listen, httpd_handler fn, void *arg, unsigned int flags,
    char *err, size_t errlen)
{
	struct sockaddr_in sa;
	struct httpd *h;

	if (httpd_parse_listen(listen, &sa, err, errlen) == -1)
		return NULL;
	if ((h = calloc(1, sizeof(*h))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->fn = fn;
	h->arg = arg;
	h->fd = -1;
	h->d = MHD_start_daemon(flags | MHD_USE_ERROR_LOG,
	    ntohs(sa.sin_port), NULL, NULL, httpd_answer, h,
	    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)HTTPD_IDLE_TIMEOUT_S,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned int)HTTPD_MAX_CONNECTIONS,
	    MHD_OPTION_END);
	if (h->d == NULL) {
		snprintf(err, errlen, "cannot listen on %s (address in use or not local?)", listen);
		free(h);
		return NULL;
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

	if (h == NULL || h->fd < 0 || MHD_get_timeout(h->d, &t) != MHD_YES)
		return -1;
	return t > (MHD_UNSIGNED_LONG_LONG)INT32_MAX ? INT32_MAX : (int64_t)t;
}

void
httpd_service(struct httpd *h)
{
	if (h != NULL && h->fd >= 0)
		MHD_run(h->d);
}

void
httpd_stop(struct httpd *h)
{
	if (h == NULL)
		return;
	MHD_stop_daemon(h->d);
	free(h);
}
