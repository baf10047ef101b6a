/*
 * sim_trace.c — reading a trace CSV for `scaleno simulate`
 * (scaleno-simulate(1)): arrivals per second, second 0 first.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "simulate.h"

#define MAX_TRACE_S (10 * 86400)	/* ten days of seconds */
#define MAX_ARRIVALS 1e9		/* per second; keeps every count exact in a double */

void
sim_trace_free(struct sim_trace *tr)
{
	free(tr->arrivals);
	tr->arrivals = NULL;
	tr->n = 0;
}

int
sim_trace_workers_needed(const struct sim_trace *tr, double service_rate, double *peak, size_t *at)
{
	double top = 0;
	size_t where = 0;

	for (size_t t = 0; t < tr->n; t++)
		if (tr->arrivals[t] > top) {
			top = tr->arrivals[t];
			where = t;
		}
	if (peak != NULL)
		*peak = top;
	if (at != NULL)
		*at = where;
	if (!(service_rate > 0) || top <= 0)
		return 0;
	return top / service_rate >= INT32_MAX ? INT32_MAX : (int)ceil(top / service_rate - 1e-9);
}

static int
trace_put(struct sim_trace *tr, size_t *cap, size_t t, double v)
{
	size_t ncap;
	double *p;

	if (t >= *cap) {
		ncap = *cap ? *cap : 1024;
		while (ncap <= t)
			ncap *= 2;
		p = realloc(tr->arrivals, ncap * sizeof(*p));
		if (p == NULL)
			return -1;
		memset(p + *cap, 0, (ncap - *cap) * sizeof(*p));
		tr->arrivals = p;
		*cap = ncap;
	}
	tr->arrivals[t] = v;
	if (t + 1 > tr->n)
		tr->n = t + 1;
	return 0;
}

int
sim_trace_load(const char *path, struct sim_trace *tr, char *err, size_t errlen)
{
	FILE *f;
	char *line = NULL, *p, *end;
	size_t linecap = 0, cap = 0;
	long lineno = 0;
	double t, v, last_t = -1;
	bool seen_data = false;
	int rc = -1;

	memset(tr, 0, sizeof(*tr));
	if ((f = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (getline(&line, &linecap, f) != -1) {
		lineno++;
		p = line + strspn(line, " \t\r\n");
		if (*p == '\0' || *p == '#')
			continue;
		errno = 0;
		t = strtod(p, &end);
		if (end == p) {
			if (!seen_data) {	/* the header */
				seen_data = true;
				continue;
			}
			snprintf(err, errlen, "%s:%ld: expected \"t,arrivals\" (two numbers)", path, lineno);
			goto out;
		}
		seen_data = true;
		end += strspn(end, " \t");
		if (*end != ',') {
			snprintf(err, errlen, "%s:%ld: expected a comma after t", path, lineno);
			goto out;
		}
		p = end + 1;
		v = strtod(p, &end);
		end += strspn(end, " \t\r\n");
		if (end == p || *end != '\0' || errno != 0) {
			snprintf(err, errlen, "%s:%ld: arrivals must be one number", path, lineno);
			goto out;
		}
		if (!(t >= 0) || t != floor(t) || t > MAX_TRACE_S) {
			snprintf(err, errlen, "%s:%ld: t must be whole seconds from 0 to %d", path, lineno,
			    MAX_TRACE_S);
			goto out;
		}
		if (t <= last_t) {
			snprintf(err, errlen, "%s:%ld: t %.0f is not after the previous %.0f", path, lineno, t,
			    last_t);
			goto out;
		}
		if (!isfinite(v) || v < 0 || v > MAX_ARRIVALS) {
			snprintf(err, errlen, "%s:%ld: arrivals must be a number from 0 to %.0f", path, lineno,
			    MAX_ARRIVALS);
			goto out;
		}
		if (trace_put(tr, &cap, (size_t)t, v) == -1) {
			snprintf(err, errlen, "%s:%ld: out of memory", path, lineno);
			goto out;
		}
		last_t = t;
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (tr->n == 0) {
		snprintf(err, errlen, "%s: no data lines (expected \"t,arrivals\")", path);
		goto out;
	}
	rc = 0;
out:
	free(line);
	fclose(f);
	if (rc == -1)
		sim_trace_free(tr);
	return rc;
}
