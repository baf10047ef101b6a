/*
 * producer — the smallest C producer on libscaleno's publish API
 * (include/scaleno/publish.h): one message per run, routed to a partition
 * by the sticky key map, exactly as `scaleno publish` does.
 *
 *   producer ADDRESS STREAM GROUP PARTITIONS KEY FIELD VALUE [FIELD VALUE ...]
 *
 * Build against an installed scaleno:
 *   cc producer.c -lscaleno $(pkg-config --libs hiredis) -lm
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <scaleno/publish.h>

int
main(int argc, char **argv)
{
	struct scaleno_publisher *p;
	struct scaleno_queue q = { 0 };
	char err[256], id[SCALENO_PUBLISH_ID_MAX];
	int partition, rc;

	if (argc < 8 || (argc - 6) % 2 != 0) {
		fprintf(stderr, "usage: producer ADDRESS STREAM GROUP PARTITIONS KEY FIELD VALUE ...\n");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);	/* a dropped connection is an error, not a death */
	q.stream = argv[2];
	q.group = argv[3];
	q.partitions = atoi(argv[4]);
	if ((p = scaleno_publish_open(argv[1], NULL, err, sizeof(err))) == NULL) {
		fprintf(stderr, "producer: %s\n", err);
		return 2;
	}
	rc = scaleno_publish(p, &q, argv[5], strlen(argv[5]), (const char *const *)&argv[6], NULL,
	    (size_t)(argc - 6), &partition, id, sizeof(id), err, sizeof(err));
	if (rc == 0)
		printf("%d %s\n", partition, id);
	else
		fprintf(stderr, "producer: %s\n", err);
	scaleno_publish_close(p);
	return rc == 0 ? 0 : 2;
}
