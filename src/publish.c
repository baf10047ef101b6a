/*
 * publish — the producer side (SPEC 6): `scaleno publish` and the C API of
 * include/scaleno/publish.h. Both run one Lua script that looks up (or
 * assigns) the key's partition and adds the message, so the sticky map and
 * the streams change together. The script is shipped as
 * contrib/lua/publish.lua; test_publish checks the copy below equals it.
 */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "redisq_int.h"
#include "scaleno/publish.h"
#include "util.h"

static const char publish_lua[] =
"-- scaleno: publish one message, routed by a sticky key -> partition map (SPEC 6).\n"
"-- KEYS[1] the stream (with partitions > 1 the prefix of <stream>:<p>)\n"
"-- KEYS[2] the key's map entry <stream>:key:<key>   KEYS[3] the counter <stream>:rr\n"
"-- ARGV[1] group, ARGV[2] partitions, ARGV[3] key TTL in ms, ARGV[4] the key\n"
"-- (\"\" = keyless), ARGV[5..] field, value, ...   Returns {partition, entry id}.\n"
"--\n"
"-- The map is one string per producer key holding its partition, its expiry\n"
"-- reset to the TTL by every message of that key: Redis drops it exactly one\n"
"-- TTL after the key's last message, so the map holds only keys with recent\n"
"-- traffic, and such a key keeps its partition whatever the partition count\n"
"-- becomes (5 -> 7 moves no busy key). A key without a mapping (new, or idle\n"
"-- longer than the TTL) goes to the hash of the key modulo the current count:\n"
"-- no scan of the partitions, and new partitions get their share of new keys.\n"
"-- A mapping beyond the current count (the partitions shrank) is replaced,\n"
"-- since nobody reads those streams any more. Keyless messages take the\n"
"-- partitions in turn. Redis Cluster: every key of one queue must share a\n"
"-- hash slot (a hash tag in the stream name, e.g. {payments}), because the\n"
"-- partition stream is chosen here and cannot be declared in KEYS.\n"
"local n = tonumber(ARGV[2])\n"
"local ttl = tonumber(ARGV[3])\n"
"if n == nil or n < 1 or n ~= math.floor(n) then\n"
"  return redis.error_reply('ERR scaleno publish: partitions must be a whole number >= 1')\n"
"end\n"
"if ttl == nil or ttl < 1 or ttl ~= math.floor(ttl) then\n"
"  return redis.error_reply('ERR scaleno publish: the key TTL must be a whole number of ms >= 1')\n"
"end\n"
"if #ARGV < 6 or #ARGV % 2 ~= 0 then\n"
"  return redis.error_reply('ERR scaleno publish: give field value pairs, at least one')\n"
"end\n"
"local p = 0\n"
"local stream = KEYS[1]\n"
"if n > 1 then\n"
"  if ARGV[4] == '' then\n"
"    p = (redis.call('INCR', KEYS[3]) - 1) % n\n"
"  else\n"
"    p = tonumber(redis.call('GET', KEYS[2]) or '')\n"
"    if p == nil or p >= n then\n"
"      p = tonumber(string.sub(redis.sha1hex(ARGV[4]), 1, 8), 16) % n\n"
"    end\n"
"    redis.call('SET', KEYS[2], p, 'PX', ttl)\n"
"  end\n"
"  stream = KEYS[1] .. ':' .. p\n"
"end\n"
"-- A stream that does not exist has no group yet, so no BUSYGROUP here; the\n"
"-- group starts at 0 so this very message is delivered.\n"
"if redis.call('EXISTS', stream) == 0 then\n"
"  redis.call('XGROUP', 'CREATE', stream, ARGV[1], '0', 'MKSTREAM')\n"
"end\n"
"return {p, redis.call('XADD', stream, '*', unpack(ARGV, 5))}\n"
;

/* Redis refuses bulk strings above 512 MB (proto-max-bulk-len's default). */
#define STDIN_MAX ((size_t)512 * 1024 * 1024)
/* Script arguments before the fields: EVALSHA sha 3 keys... group n ttl key. */
#define FIXED_ARGS 10

struct scaleno_publisher {
	struct redisq *r;
	char sha[41];	/* the script's SHA1 once loaded; "" before and after NOSCRIPT */
};

const char *
scaleno_publish_script(void)
{
	return publish_lua;
}

static struct scaleno_publisher *
publisher_new(const struct redis_conf *conf)
{
	struct scaleno_publisher *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	if ((p->r = redisq_new(conf)) == NULL) {
		free(p);
		return NULL;
	}
	return p;
}

struct scaleno_publisher *
scaleno_publish_open(const char *address, const struct scaleno_publish_options *opt, char *err,
    size_t errlen)
{
	static const struct scaleno_publish_options defaults;
	struct scaleno_publisher *p = NULL;
	struct redis_conf conf = { 0 };

	if (opt == NULL)
		opt = &defaults;
	if (address == NULL || address[0] == '\0') {
		snprintf(err, errlen, "scaleno_publish_open: no Redis address");
		return NULL;
	}
	if (opt->database < 0 || opt->connect_timeout_ms < 0 || opt->command_timeout_ms < 0) {
		snprintf(err, errlen, "scaleno_publish_open: negative database or timeout");
		return NULL;
	}
	conf.address = util_strdup(address);
	conf.username = util_strdup(opt->username != NULL ? opt->username : "");
	conf.password = util_strdup(opt->password != NULL ? opt->password : "");
	conf.database = opt->database;
	conf.connect_timeout_ms = opt->connect_timeout_ms;
	conf.command_timeout_ms = opt->command_timeout_ms;
	if (conf.address != NULL && conf.username != NULL && conf.password != NULL)
		p = publisher_new(&conf);
	if (p == NULL)
		snprintf(err, errlen, "scaleno_publish_open: out of memory");
	free(conf.address);
	free(conf.username);
	free(conf.password);
	return p;
}

void
scaleno_publish_close(struct scaleno_publisher *p)
{
	if (p == NULL)
		return;
	redisq_free(p->r);
	free(p);
}

/* What the script would refuse, refused before any I/O. 0 or -1 with err. */
static int
publish_check(const struct scaleno_queue *q, const char *const *fields, size_t nfields,
    char *err, size_t errlen)
{
	if (q == NULL || q->stream == NULL || q->stream[0] == '\0')
		snprintf(err, errlen, "publish: no stream");
	else if (q->group == NULL || q->group[0] == '\0')
		snprintf(err, errlen, "publish: %s: no consumer group", q->stream);
	else if (q->partitions < 1)
		snprintf(err, errlen, "publish: %s: partitions must be at least 1, not %d", q->stream,
		    q->partitions);
	else if (q->key_ttl_ms < 0)
		snprintf(err, errlen, "publish: %s: negative key TTL", q->stream);
	else if (nfields == 0 || fields == NULL)
		snprintf(err, errlen, "publish: %s: a message needs at least one field", q->stream);
	else if (nfields % 2 != 0)
		snprintf(err, errlen, "publish: %s: fields come in name/value pairs (%zu strings)",
		    q->stream, nfields);
	else if (nfields / 2 > SCALENO_PUBLISH_MAX_PAIRS)
		snprintf(err, errlen, "publish: %s: %zu fields, at most %d", q->stream, nfields / 2,
		    SCALENO_PUBLISH_MAX_PAIRS);
	else
		return 0;
	return -1;
}

/* SCRIPT LOAD into p->sha. 0, or -1 with err. */
static int
publish_load(struct scaleno_publisher *p, redisContext *c, char *err, size_t errlen)
{
	redisReply *rep = redisCommand(c, "SCRIPT LOAD %s", publish_lua);
	int rc = -1;

	if (rep == NULL) {
		snprintf(err, errlen, "redis SCRIPT LOAD: %s", c->errstr);
		redisq_mark_broken(p->r);
		return -1;
	}
	if (rep->type == REDIS_REPLY_STRING && rep->len == 40) {
		memcpy(p->sha, rep->str, 40);
		p->sha[40] = '\0';
		rc = 0;
	} else {
		snprintf(err, errlen, "redis SCRIPT LOAD: %s",
		    rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
	}
	freeReplyObject(rep);
	return rc;
}

/*
 * EVALSHA with v[1] set to the script's SHA, loading it first and once more
 * after NOSCRIPT (Redis restarted or SCRIPT FLUSH). The reply (caller
 * frees), error replies included, or NULL with err.
 */
static redisReply *
publish_eval(struct scaleno_publisher *p, int argc, const char **v, size_t *len, char *err,
    size_t errlen)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		redisContext *c;
		redisReply *rep;

		if (redisq_ensure(p->r, err, errlen) < 0)
			return NULL;
		c = redisq_context(p->r);
		if (p->sha[0] == '\0' && publish_load(p, c, err, errlen) < 0)
			return NULL;
		v[1] = p->sha;
		len[1] = 40;
		rep = redisCommandArgv(c, argc, v, len);
		if (rep == NULL) {
			snprintf(err, errlen, "redis EVALSHA: %s", c->errstr);
			redisq_mark_broken(p->r);
			return NULL;
		}
		if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0 &&
		    attempt == 0) {
			freeReplyObject(rep);
			p->sha[0] = '\0';
			continue;
		}
		return rep;
	}
	snprintf(err, errlen, "redis: the publish script could not be loaded");
	return NULL;
}

/* "<a><b><c>" of the given lengths, NUL-terminated. Caller frees; NULL on OOM. */
static char *
concat3(const char *a, const char *b, const char *c, size_t clen, size_t *outlen)
{
	size_t alen = strlen(a), blen = strlen(b);
	char *s = malloc(alen + blen + clen + 1);

	if (s == NULL)
		return NULL;
	memcpy(s, a, alen);
	memcpy(s + alen, b, blen);
	if (clen > 0)
		memcpy(s + alen + blen, c, clen);
	s[alen + blen + clen] = '\0';
	*outlen = alen + blen + clen;
	return s;
}

int
scaleno_publish(struct scaleno_publisher *p, const struct scaleno_queue *q, const char *key,
    size_t key_len, const char *const *fields, const size_t *lens, size_t nfields,
    int *partition, char *id, size_t idlen, char *err, size_t errlen)
{
	char nbuf[24], tbuf[24];
	const char **v = NULL;
	size_t *len = NULL, maplen = 0, rrlen = 0;
	char *mapkey = NULL, *rrkey = NULL;
	redisReply *rep = NULL;
	int argc, rc = -1;

	if (publish_check(q, fields, nfields, err, errlen) < 0)
		return -1;
	if (p == NULL) {
		snprintf(err, errlen, "publish: no publisher");
		return -1;
	}
	if (key == NULL)
		key_len = 0;
	argc = FIXED_ARGS + (int)nfields;
	v = calloc((size_t)argc, sizeof(*v));
	len = calloc((size_t)argc, sizeof(*len));
	mapkey = concat3(q->stream, ":key:", key, key_len, &maplen);
	rrkey = concat3(q->stream, ":rr", NULL, 0, &rrlen);
	if (v == NULL || len == NULL || mapkey == NULL || rrkey == NULL) {
		snprintf(err, errlen, "publish: out of memory");
		goto out;
	}
	snprintf(nbuf, sizeof(nbuf), "%d", q->partitions);
	snprintf(tbuf, sizeof(tbuf), "%" PRId64,
	    q->key_ttl_ms > 0 ? q->key_ttl_ms : (int64_t)SCALENO_PUBLISH_TTL_MS);
	v[0] = "EVALSHA";
	v[2] = "3";
	v[3] = q->stream;
	v[4] = mapkey;
	v[5] = rrkey;
	v[6] = q->group;
	v[7] = nbuf;
	v[8] = tbuf;
	v[9] = key_len > 0 ? key : "";
	len[0] = strlen(v[0]);
	len[2] = strlen(v[2]);
	len[3] = strlen(v[3]);
	len[4] = maplen;
	len[5] = rrlen;
	for (int i = 6; i < 9; i++)
		len[i] = strlen(v[i]);
	len[9] = key_len;
	for (size_t i = 0; i < nfields; i++) {
		v[FIXED_ARGS + i] = fields[i] != NULL ? fields[i] : "";
		len[FIXED_ARGS + i] = fields[i] == NULL ? 0 : lens != NULL ? lens[i] :
		    strlen(fields[i]);
	}
	if ((rep = publish_eval(p, argc, v, len, err, errlen)) == NULL)
		goto out;
	if (rep->type == REDIS_REPLY_ERROR) {
		snprintf(err, errlen, "redis: publish to %s: %s", q->stream, rep->str);
		goto out;
	}
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
	    rep->element[0]->type != REDIS_REPLY_INTEGER ||
	    rep->element[1]->type != REDIS_REPLY_STRING || rep->element[1]->len >= SCALENO_PUBLISH_ID_MAX) {
		snprintf(err, errlen, "redis: publish to %s: unexpected reply", q->stream);
		goto out;
	}
	if (partition != NULL)
		*partition = (int)rep->element[0]->integer;
	if (id != NULL && idlen > 0)
		util_strlcpy(id, rep->element[1]->str, idlen);
	rc = 0;
out:
	if (rep != NULL)
		freeReplyObject(rep);
	free(v);
	free(len);
	free(mapkey);
	free(rrkey);
	return rc;
}

/* ---- scaleno publish ---- */

static void
publish_usage(FILE *f)
{
	fprintf(f,
	    "usage: scaleno publish -q QUEUE [-c FILE] [-k KEY] [--ttl DURATION] FIELD VALUE ...\n"
	    "Add one message to QUEUE and print \"<partition> <entry id>\". Messages with the\n"
	    "same KEY stay on one partition while the key had a message within the TTL\n"
	    "(default 1h). A VALUE of - is read from standard input. See scaleno(8).\n");
}

/* All of f (at most max bytes) in a malloc'd buffer. NULL with err. */
static char *
read_all(FILE *f, size_t max, size_t *outlen, char *err, size_t errlen)
{
	size_t n = 0, cap = 65536;
	char *buf = malloc(cap), *nb;

	while (buf != NULL) {
		size_t got;

		if (n == cap) {
			if (cap >= max) {
				snprintf(err, errlen, "standard input is larger than %zu bytes", max);
				free(buf);
				return NULL;
			}
			cap = cap * 2 < max ? cap * 2 : max;
			if ((nb = realloc(buf, cap)) == NULL)
				break;
			buf = nb;
		}
		got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0) {
			if (ferror(f)) {
				snprintf(err, errlen, "reading standard input failed");
				free(buf);
				return NULL;
			}
			*outlen = n;
			return buf;
		}
	}
	free(buf);
	snprintf(err, errlen, "out of memory");
	return NULL;
}

int
cmd_publish(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "ttl", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *qname = NULL, *key = NULL;
	struct scaleno_publisher *p = NULL;
	struct config *cfg = NULL;
	const struct queue_policy *q;
	struct scaleno_queue sq;
	size_t nfields, *lens = NULL, stdin_len = 0;
	char *stdin_buf = NULL, err[512], id[SCALENO_PUBLISH_ID_MAX];
	const char **fields = NULL;
	int64_t ttl_ms = 0;
	int ch, part, rc = EXIT_USAGE;

	/* A connection Redis closed must be an error (exit 2), not death by SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	optind = 0;	/* GNU: a full reset, so a second call in one process parses afresh */
	/* "+": stop at the first FIELD, so a value that starts with '-' stays a value. */
	while ((ch = getopt_long(argc, argv, "+q:c:k:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'q':
			qname = optarg;
			break;
		case 'c':
			path = optarg;
			break;
		case 'k':
			key = optarg;
			break;
		case 'T':
			if (util_parse_duration(optarg, &ttl_ms, err, sizeof(err)) < 0) {
				fprintf(stderr, "scaleno publish: --ttl %s: %s\n", optarg, err);
				return EXIT_USAGE;
			}
			if (ttl_ms < 1) {
				fprintf(stderr, "scaleno publish: --ttl %s: must be above zero\n",
				    optarg);
				return EXIT_USAGE;
			}
			break;
		case 'h':
			publish_usage(stdout);
			return EXIT_OK;
		default:
			publish_usage(stderr);
			return EXIT_USAGE;
		}
	}
	nfields = (size_t)(argc - optind);
	if (qname == NULL || nfields == 0 || nfields % 2 != 0) {
		fprintf(stderr, "scaleno publish: %s\n", qname == NULL ? "-q QUEUE is required" :
		    nfields == 0 ? "no fields: give at least one FIELD VALUE pair" :
		    "FIELD VALUE arguments come in pairs: the last field has no value");
		publish_usage(stderr);
		return EXIT_USAGE;
	}
	if (nfields / 2 > SCALENO_PUBLISH_MAX_PAIRS) {
		fprintf(stderr, "scaleno publish: %zu fields, at most %d\n", nfields / 2,
		    SCALENO_PUBLISH_MAX_PAIRS);
		return EXIT_USAGE;
	}
	lens = calloc(nfields, sizeof(*lens));
	fields = calloc(nfields, sizeof(*fields));
	if (lens == NULL || fields == NULL) {
		fprintf(stderr, "scaleno publish: out of memory\n");
		rc = EXIT_RUNTIME;
		goto out;
	}
	for (size_t i = 0; i < nfields; i++) {
		fields[i] = argv[optind + (int)i];
		lens[i] = strlen(fields[i]);
		if (i % 2 == 0 || strcmp(fields[i], "-") != 0)
			continue;
		if (stdin_buf != NULL) {
			fprintf(stderr, "scaleno publish: only one VALUE may be - (standard input)\n");
			goto out;
		}
		if ((stdin_buf = read_all(stdin, STDIN_MAX, &stdin_len, err, sizeof(err))) == NULL) {
			fprintf(stderr, "scaleno publish: %s\n", err);
			rc = EXIT_RUNTIME;
			goto out;
		}
		fields[i] = stdin_buf;
		lens[i] = stdin_len;
	}
	if (cli_load_config("publish", path, &cfg) != EXIT_OK)
		goto out;
	if ((q = config_queue(cfg, qname)) == NULL) {
		fprintf(stderr, "scaleno publish: %s: no queue named \"%s\"\n", cfg->path, qname);
		goto out;
	}
	sq = (struct scaleno_queue){ .stream = q->stream, .group = q->group,
		.partitions = q->partitions, .key_ttl_ms = ttl_ms };
	rc = EXIT_RUNTIME;
	if ((p = publisher_new(&cfg->redis)) == NULL) {
		fprintf(stderr, "scaleno publish: out of memory\n");
		goto out;
	}
	if (scaleno_publish(p, &sq, key, key != NULL ? strlen(key) : 0, fields, lens, nfields,
	    &part, id, sizeof(id), err, sizeof(err)) < 0) {
		fprintf(stderr, "scaleno publish: queue %s: %s\n", q->name, err);
		goto out;
	}
	printf("%d %s\n", part, id);
	rc = fflush(stdout) == 0 ? EXIT_OK : EXIT_RUNTIME;
out:
	scaleno_publish_close(p);
	config_free(cfg);
	free(stdin_buf);
	free(fields);
	free(lens);
	return rc;
}
