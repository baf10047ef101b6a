/*
 * expo.c — see include/expo.h.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "expo.h"
#include "util.h"

static const char *const type_names[] = {
	[EXPO_GAUGE] = "gauge",
	[EXPO_COUNTER] = "counter",
	[EXPO_HISTOGRAM] = "histogram",
};

void
expo_family(struct strbuf *b, const char *name, enum expo_type type, const char *help)
{
	const char *t = (unsigned)type < ARRAY_LEN(type_names) ? type_names[type] : "untyped";

	strbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, t);
}

void
expo_label_value(struct strbuf *b, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\' || *s == '"')
			strbuf_printf(b, "\\%c", *s);
		else if (*s == '\n')
			strbuf_printf(b, "\\n");
		else
			strbuf_printf(b, "%c", *s);
	}
}

void
expo_format_double(double v, char *buf, size_t len)
{
	if (isnan(v)) {
		snprintf(buf, len, "NaN");
		return;
	}
	if (isinf(v)) {
		snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	/*
	 * 15 significant digits: what a double holds for sure. More would show
	 * the noise of the arithmetic behind a value (16.274000000000001).
	 */
	if (v == trunc(v) && fabs(v) < 9007199254740992.0)	/* 2^53: integers stay exact */
		snprintf(buf, len, "%.0f", v);
	else
		snprintf(buf, len, "%.15g", v);
}

/* "name{labels} " */
static void
sample_start(struct strbuf *b, const char *name, const struct expo_label *l, size_t nl)
{
	strbuf_printf(b, "%s", name);
	for (size_t i = 0; i < nl; i++) {
		strbuf_printf(b, "%c%s=\"", i == 0 ? '{' : ',', l[i].name);
		expo_label_value(b, l[i].value);
		strbuf_printf(b, "\"");
	}
	strbuf_printf(b, nl > 0 ? "} " : " ");
}

void
expo_sample(struct strbuf *b, const char *name, const struct expo_label *l, size_t nl,
    double value)
{
	char num[40];

	expo_format_double(value, num, sizeof(num));
	sample_start(b, name, l, nl);
	strbuf_printf(b, "%s\n", num);
}

void
expo_sample_u64(struct strbuf *b, const char *name, const struct expo_label *l, size_t nl,
    uint64_t value)
{
	sample_start(b, name, l, nl);
	strbuf_printf(b, "%llu\n", (unsigned long long)value);
}
