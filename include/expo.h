/*
 * expo — the Prometheus text exposition format (version 0.0.4), written
 * into a strbuf: one HELP and TYPE line per family, samples with escaped
 * label values, numbers with at most 15 significant digits (no float
 * noise). The agent's and the worker's /metrics are written with it; the
 * metric names themselves are documented in scaleno(8) and
 * scaleno-worker(8).
 */
#ifndef SCALENO_EXPO_H
#define SCALENO_EXPO_H

#include <stddef.h>
#include <stdint.h>

struct strbuf;

enum expo_type { EXPO_GAUGE = 0, EXPO_COUNTER, EXPO_HISTOGRAM };

/* One label of a sample; value is escaped when written. */
struct expo_label {
	const char *name;
	const char *value;
};

/* "# HELP name help" and "# TYPE name type": once per family, before its samples. */
void expo_family(struct strbuf *b, const char *name, enum expo_type type, const char *help);

/*
 * "name{l1="v1",...} value" for the nl labels (none: "name value").
 * expo_sample formats a double (NaN and the infinities as Prometheus
 * spells them); expo_sample_u64 writes a counter exactly, beyond 2^53.
 */
void expo_sample(struct strbuf *b, const char *name, const struct expo_label *l, size_t nl,
    double value);
void expo_sample_u64(struct strbuf *b, const char *name, const struct expo_label *l, size_t nl,
    uint64_t value);

/* Append s as a label value: backslash, double quote and newline escaped. */
void expo_label_value(struct strbuf *b, const char *s);

/* v with 15 significant digits, as %g ("+Inf", "-Inf", "NaN"). buf >= 32 bytes. */
void expo_format_double(double v, char *buf, size_t len);

#endif
