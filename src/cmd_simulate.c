/*
 * cmd_simulate.c — `scaleno simulate`: the command line, the run of one
 * algorithm or all four, the summary table and the output files
 * (scaleno-simulate(1)). The model is in sim_model.c.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "log.h"
#include "simulate.h"
#include "util.h"

#define DEFAULT_SERVICE_RATE 10.0

static void
usage(FILE *f)
{
	fprintf(f, "usage: scaleno simulate [-c FILE] -q QUEUE --trace FILE [--service-rate R] [--startup DUR]\n"
	    "                        [--initial N] [--csv FILE] [--svg FILE] [--baseline NAME] [--compare]\n"
	    "       scaleno simulate [-c FILE] -q QUEUE --stdin\n"
	    "  -c FILE            main configuration file\n"
	    "  -q QUEUE           the queue whose policy to run\n"
	    "  --trace FILE       arrivals per second, CSV \"t,arrivals\"\n"
	    "  --service-rate R   messages per second one worker completes (default %g)\n"
	    "  --startup DUR      scale call to consuming (default: the policy's startup)\n"
	    "  --initial N        workers running at the start (default: what second 0 needs)\n"
	    "  --csv FILE         write the timeline as CSV\n"
	    "  --svg FILE         write the timeline as an SVG chart\n"
	    "  --baseline NAME    run target-value, hpa or hpa-tuned instead of scaleno\n"
	    "  --compare          run scaleno and the three baselines, print one table\n"
	    "  --stdin            JSON samples in, JSON decisions out (see scaleno-simulate(1))\n",
	    DEFAULT_SERVICE_RATE);
}

static void
print_header(void)
{
	printf("%-13s %12s %12s %11s %9s %9s %8s %9s\n", "algorithm", "worker-s", "peak-backlog", "s>max_age",
	    "p99-age", "max-age", "actions", "surge-ok");
}

static void
print_row(const struct sim_result *r)
{
	printf("%-13s %12.0f %12lld %11ld %8.0fs %8.0fs %8d", sim_algo_name(r->algo), r->worker_seconds,
	    (long long)r->peak_backlog, r->seconds_over, r->p99_age_s, r->max_age_seen_s, r->actions);
	if (r->surge_seconds > 0)
		printf(" %8.1f%%\n", 100.0 * (double)r->surge_within / (double)r->surge_seconds);
	else
		printf(" %9s\n", "-");
}

static int
write_file(const char *path, const struct sim_result *r, const struct sim_result *extra, size_t nextra,
    const struct sim_svg_marks *m, bool svg)
{
	FILE *f = fopen(path, "w");
	int rc;

	if (f == NULL) {
		fprintf(stderr, "scaleno simulate: %s: %s\n", path, strerror(errno));
		return -1;
	}
	rc = svg ? sim_write_svg(f, r, extra, nextra, m) : sim_write_csv(f, r);
	if (fclose(f) != 0 || rc != 0) {
		fprintf(stderr, "scaleno simulate: writing %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

int
cmd_simulate(int argc, char **argv)
{
	enum { O_TRACE = CLI_LONG, O_RATE, O_STARTUP, O_INITIAL, O_CSV, O_SVG, O_BASELINE, O_COMPARE, O_STDIN };
	static const struct cli_opt opts[] = {
		{ O_TRACE, "trace", "a file name" },
		{ O_RATE, "service-rate", "a rate" },
		{ O_STARTUP, "startup", "a duration" },
		{ O_INITIAL, "initial", "a count" },
		{ O_CSV, "csv", "a file name" },
		{ O_SVG, "svg", "a file name" },
		{ O_BASELINE, "baseline", "a baseline name" },
		{ O_COMPARE, "compare", NULL },
		{ O_STDIN, "stdin", NULL },
		{ 0, NULL, NULL },
	};
	struct cli c = { .cmd = "simulate", .usage = usage, .flags = CLI_CONFIG | CLI_QUEUE | CLI_IN_ORDER,
		.opts = opts, .max_args = 0 };
	const char *trace = NULL, *csv = NULL, *svg = NULL, *startup = NULL;
	bool compare = false, use_stdin = false, have_baseline = false;
	enum baseline_kind bk = BASELINE_TARGET_VALUE;
	struct sim_params prm = { DEFAULT_SERVICE_RATE, 0, -1 };
	struct config *cfg = NULL;
	const struct queue_policy *q;
	struct sim_trace tr = { 0 };
	struct sim_result res[SIM_NALGOS];
	size_t nres = 0, k;
	char err[256], title[512], *end;
	struct sim_svg_marks marks;
	double peak = 0;
	size_t peak_at = 0;
	int need;
	int64_t ms;
	long bad, initial;
	int ch, rc = EXIT_USAGE;

	memset(res, 0, sizeof(res));
	while ((ch = cli_next(&c, argc, argv)) > 0) {
		switch (ch) {
		case O_TRACE:
			trace = c.optarg;
			break;
		case O_RATE:
			errno = 0;
			prm.service_rate = strtod(c.optarg, &end);
			if (end == c.optarg || *end != '\0' || errno != 0 || !(prm.service_rate > 0) ||
			    !isfinite(prm.service_rate))
				return cli_usage_error(&c, "--service-rate \"%s\": expected a number > 0",
				    c.optarg);
			break;
		case O_STARTUP:
			startup = c.optarg;
			break;
		case O_INITIAL:
			if (cli_number(&c, 0, 100000, &initial) != EXIT_OK)
				return c.rc;
			prm.initial = (int)initial;
			break;
		case O_CSV:
			csv = c.optarg;
			break;
		case O_SVG:
			svg = c.optarg;
			break;
		case O_BASELINE:
			if (baseline_parse(c.optarg, &bk) == -1)
				return cli_usage_error(&c,
				    "--baseline \"%s\": expected target-value, hpa or hpa-tuned", c.optarg);
			have_baseline = true;
			break;
		case O_COMPARE:
			compare = true;
			break;
		case O_STDIN:
			use_stdin = true;
			break;
		}
	}
	if (ch == CLI_STOP)
		return c.rc;
	if (use_stdin == (trace != NULL))
		return cli_usage_error(&c, "give exactly one of --trace FILE and --stdin");
	if (use_stdin && (csv || svg || compare || have_baseline || startup || prm.initial >= 0))
		return cli_usage_error(&c, "--stdin drives only the decision engine; "
		    "--csv, --svg, --compare, --baseline, --startup and --initial need --trace");
	if (compare && have_baseline)
		return cli_usage_error(&c, "--compare already runs every baseline; drop --baseline");

	log_init("scaleno", LOG_LVL_WARN, LOG_FMT_TEXT, false);
	if (cli_load_config(c.cmd, c.config_path, &cfg) != EXIT_OK)
		return EXIT_USAGE;
	/* Not cli_find_queue: scaleno-simulate(1) users get the list of queues. */
	if ((q = config_queue(cfg, c.queue)) == NULL) {
		fprintf(stderr, "scaleno simulate: no queue \"%s\" in %s (queues:", c.queue, cfg->path);
		for (size_t i = 0; i < cfg->nqueues; i++)
			fprintf(stderr, " %s", cfg->queues[i].name);
		fprintf(stderr, ")\n");
		goto out;
	}

	if (use_stdin) {
		bad = sim_stdin(q, stdin, stdout, stderr);
		rc = bad == 0 ? EXIT_OK : EXIT_USAGE;
		goto out;
	}

	prm.startup_s = (double)q->scale.startup_ms / 1000.0;
	if (startup != NULL) {
		if (util_parse_duration(startup, &ms, err, sizeof(err)) == -1) {
			fprintf(stderr, "scaleno simulate: --startup: %s\n", err);
			goto out;
		}
		prm.startup_s = (double)ms / 1000.0;
	}
	if (sim_trace_load(trace, &tr, err, sizeof(err)) == -1) {
		fprintf(stderr, "scaleno simulate: %s\n", err);
		goto out;
	}
	if (prm.initial < 0) {
		/* warm start: what the first second's arrivals need, inside the bounds */
		prm.initial = (int)ceil(tr.arrivals[0] / prm.service_rate);
		if (prm.initial < q->scale.min)
			prm.initial = q->scale.min;
		if (prm.initial > q->scale.max)
			prm.initial = q->scale.max;
	}

	rc = EXIT_RUNTIME;
	if (compare) {
		/* scaleno first: the CSV and the SVG's own lines are its */
		for (k = 0; k < SIM_NALGOS; k++, nres++)
			if (sim_run(q, &tr, &prm, (enum sim_algo)k, &res[k], err, sizeof(err)) == -1)
				goto fail;
	} else {
		enum sim_algo a = have_baseline ? SIM_ALGO_OF(bk) : SIM_SCALENO;
		if (sim_run(q, &tr, &prm, a, &res[0], err, sizeof(err)) == -1)
			goto fail;
		nres = 1;
	}
	printf("queue %s, trace %s (%zu s), service rate %g/s per worker, startup %gs, max_age %gs, %d initial, "
	    "%ld surge s\n", q->name, trace, tr.n, prm.service_rate, prm.startup_s,
	    (double)q->scale.max_age_ms / 1000.0, prm.initial, res[0].surge_seconds);
	if ((need = sim_trace_workers_needed(&tr, prm.service_rate, &peak, &peak_at)) > q->scale.max)
		printf("warning: this policy cannot keep up: scale.max = %d workers x %g msgs/s = %g "
		    "msgs/s is below the trace's peak arrival rate, %g msgs/s at %zus; it would take "
		    "%d workers\n", q->scale.max, prm.service_rate, q->scale.max * prm.service_rate,
		    peak, peak_at, need);
	print_header();
	for (k = 0; k < nres; k++)
		print_row(&res[k]);
	snprintf(title, sizeof(title), "scaleno simulate: queue %s, trace %s", q->name, trace);
	marks = (struct sim_svg_marks){ (double)q->scale.max_age_ms / 1000.0, q->scale.max,
		prm.service_rate, title };
	if (csv != NULL && write_file(csv, &res[0], NULL, 0, NULL, false) == -1)
		goto fail_quiet;
	if (svg != NULL && write_file(svg, &res[0], res + 1, nres - 1, &marks, true) == -1)
		goto fail_quiet;
	rc = EXIT_OK;
	goto out;
fail:
	fprintf(stderr, "scaleno simulate: %s\n", err);
fail_quiet:
	rc = EXIT_RUNTIME;
out:
	for (k = 0; k < SIM_NALGOS; k++)
		sim_result_free(&res[k]);
	sim_trace_free(&tr);
	config_free(cfg);
	return rc;
}
