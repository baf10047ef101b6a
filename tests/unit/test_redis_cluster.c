/*
 * Redis Cluster routing of the Redis layer (src/redis_cluster.c,
 * scaleno.conf(5) "redis"): the slot of a key (CRC16-XMODEM of its hash
 * tag, as CLUSTER KEYSLOT answers) and the parsing of MOVED and ASK
 * redirects. Following redirects against a
 * real six-node cluster is tests/integration/test_redis_cluster.py.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "redis.h"

static unsigned
slot(const char *k)
{
	return redis_key_slot(k, strlen(k));
}

static void
test_slots(void)
{
	/* Values redis-cli CLUSTER KEYSLOT gives (and the CRC16-XMODEM check value). */
	CU_ASSERT_EQUAL(slot("123456789"), 12739);
	CU_ASSERT_EQUAL(slot("foo"), 12182);
	CU_ASSERT_EQUAL(slot("somekey"), 11058);
	CU_ASSERT_EQUAL(slot("foo{hash_tag}"), 2515);
	CU_ASSERT_EQUAL(slot("{user1000}.following"), 3443);
	CU_ASSERT_EQUAL(slot("{user1000}.followers"), 3443);
	CU_ASSERT_EQUAL(slot(""), 0);
	/* The first "{" and the next "}"; an empty tag means the whole key. */
	CU_ASSERT_EQUAL(slot("{payments}"), slot("payments"));
	CU_ASSERT_EQUAL(slot("{payments}:3:lease:epoch"), slot("payments"));
	CU_ASSERT_EQUAL(slot("{payments}:retry:2"), 8507);
	CU_ASSERT_EQUAL(slot("{}payments"), slot("{}payments"));
	CU_ASSERT_NOT_EQUAL(slot("{}payments"), slot(""));
	CU_ASSERT_EQUAL(slot("a{b{c}d}"), slot("b{c"));
	CU_ASSERT_EQUAL(slot("{a"), slot("{a"));
	CU_ASSERT_NOT_EQUAL(slot("{a"), slot("a"));
	/* Binary-safe: a NUL inside the tag counts. */
	CU_ASSERT_NOT_EQUAL(redis_key_slot("{a\0b}", 5), redis_key_slot("{a}", 3));
	for (int i = 0; i < 1000; i++) {
		char k[32];

		snprintf(k, sizeof(k), "key:%d", i);
		CU_ASSERT_TRUE(slot(k) < REDIS_CLUSTER_SLOTS);
	}
}

static void
test_redirects(void)
{
	char addr[64];
	int sl = -1;
	bool ask = true;

	CU_ASSERT_EQUAL(redis_parse_redirect("MOVED 3999 127.0.0.1:6381", &sl, addr, sizeof(addr),
	    &ask), 0);
	CU_ASSERT_EQUAL(sl, 3999);
	CU_ASSERT_STRING_EQUAL(addr, "127.0.0.1:6381");
	CU_ASSERT_FALSE(ask);
	CU_ASSERT_EQUAL(redis_parse_redirect("ASK 16383 [::1]:7000", &sl, addr, sizeof(addr), &ask), 0);
	CU_ASSERT_EQUAL(sl, 16383);
	CU_ASSERT_STRING_EQUAL(addr, "[::1]:7000");
	CU_ASSERT_TRUE(ask);
	/* Anything else is an ordinary error reply, left to the caller. */
	CU_ASSERT_EQUAL(redis_parse_redirect("MOVED 16384 127.0.0.1:1", &sl, addr, sizeof(addr), &ask), -1);
	CU_ASSERT_EQUAL(redis_parse_redirect("MOVED -1 127.0.0.1:1", &sl, addr, sizeof(addr), &ask), -1);
	CU_ASSERT_EQUAL(redis_parse_redirect("MOVED 12 ", &sl, addr, sizeof(addr), &ask), -1);
	CU_ASSERT_EQUAL(redis_parse_redirect("MOVED 12 nohostport", &sl, addr, sizeof(addr), &ask), -1);
	CU_ASSERT_EQUAL(redis_parse_redirect("MOVED x 127.0.0.1:1", &sl, addr, sizeof(addr), &ask), -1);
	CU_ASSERT_EQUAL(redis_parse_redirect("MOVED 1 a:1 extra", &sl, addr, sizeof(addr), &ask), -1);
	CU_ASSERT_EQUAL(redis_parse_redirect("TRYAGAIN Multiple keys", &sl, addr, sizeof(addr), &ask), -1);
	CU_ASSERT_EQUAL(redis_parse_redirect("ASK 1 127.0.0.1:65535", &sl, addr, 8, &ask), -1);
	CU_ASSERT_EQUAL(redis_parse_redirect("", &sl, addr, sizeof(addr), &ask), -1);
}

int
main(void)
{
	CU_pSuite s;
	unsigned failed;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("redis cluster", NULL, NULL);
	if (s == NULL || !CU_add_test(s, "key slots", test_slots) ||
	    !CU_add_test(s, "MOVED and ASK", test_redirects)) {
		CU_cleanup_registry();
		return 2;
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failed = CU_get_number_of_failures();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}
