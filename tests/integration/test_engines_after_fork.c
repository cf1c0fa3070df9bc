/*
 * test_engines_after_fork.c -- a context used before fork() keeps working
 * in the child and in the parent, on a real redis-server and memcached: the
 * child never talks over the parent's sockets (it opens its own), each
 * process's values arrive whole, and several children at once do not mix
 * their replies.  On redis also: a server whose script cache was flushed
 * (SCRIPT FLUSH) still runs counters, and a list or hash under a key is not
 * a counter.
 *
 *   test_engines_after_fork redis|memcached
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <sys/wait.h>
#include <unistd.h>

#include "kvi/kvi.h"
#include "kvitest.h"

static const char *g_engine;
static char g_url[256];

/* In a child: stores and reads back its own keys many times, and adds to
 * a shared counter; exit status 0 only when every answer was right. */
static int child_work(kvi *k, int n)
{
    char key[32], val[64];
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "fork:%d:%d", n, i);
        snprintf(val, sizeof val, "child %d value %d", n, i);
        if (kvi_store(k, g_engine, key, strlen(key), val, strlen(val), 60) != KVI_OK)
            return 10;
        kvi_value v = {0};
        if (kvi_fetch(k, g_engine, key, strlen(key), &v) != KVI_OK || v.len != strlen(val) ||
            memcmp(v.data, val, v.len) != 0) {
            kvi_value_free(&v);
            return 11;
        }
        kvi_value_free(&v);
        int64_t x = 0;
        if (kvi_add(k, g_engine, "fork:ctr", 8, 1, 0, &x) != KVI_OK)
            return 12;
    }
    return 0;
}

static void test_a_context_keeps_working_after_fork(void **state)
{
    (void)state;
    kvi *k = kvi_test_context1(g_url);
    /* Used before the fork: the parent has open connections. */
    assert_int_equal(kvi_store(k, g_engine, "fork:parent", 11, "p", 1, 60), KVI_OK);
    (void)kvi_remove(k, g_engine, "fork:ctr", 8);
    enum { NCHILD = 4 };
    pid_t pids[NCHILD];
    fflush(NULL); /* the children leave with exit(): nothing buffered twice */
    for (int n = 0; n < NCHILD; n++) {
        pids[n] = fork();
        assert_true(pids[n] >= 0);
        if (pids[n] == 0)
            exit(child_work(k, n)); /* exit(), not _exit(): coverage counters are written */
    }
    /* The parent goes on using its connections meanwhile. */
    for (int i = 0; i < 50; i++) {
        kvi_value v = {0};
        assert_int_equal(kvi_fetch(k, g_engine, "fork:parent", 11, &v), KVI_OK);
        assert_int_equal(v.len, 1);
        assert_memory_equal(v.data, "p", 1);
        kvi_value_free(&v);
    }
    for (int n = 0; n < NCHILD; n++) {
        int ws = 0;
        assert_int_equal(waitpid(pids[n], &ws, 0), pids[n]);
        if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
            fail_msg("child %d: %s %d", n, WIFEXITED(ws) ? "exit" : "signal",
                     WIFEXITED(ws) ? WEXITSTATUS(ws) : WTERMSIG(ws));
    }
    int64_t total = 0;
    assert_int_equal(kvi_counter_fetch(k, g_engine, "fork:ctr", 8, &total), KVI_OK);
    assert_int_equal(total, NCHILD * 50);
    /* What a child stored, the parent reads. */
    kvi_value v = {0};
    assert_int_equal(kvi_fetch(k, g_engine, "fork:3:49", 9, &v), KVI_OK);
    assert_memory_equal(v.data, "child 3 value 49", v.len);
    kvi_value_free(&v);
    kvi_free(k);
}

static void test_redis_counters_survive_a_flushed_script_cache(void **state)
{
    (void)state;
    if (strcmp(g_engine, "redis") != 0)
        return; /* redis only (memcached has no scripts) */
    kvi *k = kvi_test_context1(g_url);
    int64_t n = 0;
    assert_int_equal(kvi_add(k, "redis", "sf:c", 4, 1, 60, &n), KVI_OK);
    assert_int_equal(kvi_add_bounded(k, "redis", "sf:b", 4, 1, 0, 0, 10, &n), KVI_OK);
    kvi_reply *r = NULL;
    assert_int_equal(kvi_raw_query(k, "redis", "SCRIPT FLUSH", 12, &r), KVI_OK);
    kvi_reply_free(r);
    /* The cached scripts are gone: the engine sends them again. */
    assert_int_equal(kvi_add(k, "redis", "sf:c", 4, 1, 60, &n), KVI_OK);
    assert_int_equal(n, 2);
    assert_int_equal(kvi_add_bounded(k, "redis", "sf:b", 4, 1, 0, 0, 10, &n), KVI_OK);
    assert_int_equal(n, 2);
    /* A list or a hash under a key is not a counter, and stays as it is. */
    r = NULL;
    assert_int_equal(kvi_raw_query(k, "redis", "RPUSH sf:l a", 12, &r), KVI_OK);
    kvi_reply_free(r);
    r = NULL;
    assert_int_equal(kvi_raw_query(k, "redis", "HSET sf:h f v", 13, &r), KVI_OK);
    kvi_reply_free(r);
    assert_int_equal(kvi_counter_fetch(k, "redis", "sf:l", 4, &n), KVI_E_NOT_A_COUNTER);
    assert_int_equal(kvi_counter_fetch(k, "redis", "sf:h", 4, &n), KVI_E_NOT_A_COUNTER);
    assert_int_equal(kvi_add(k, "redis", "sf:l", 4, 1, 0, &n), KVI_E_NOT_A_COUNTER);
    assert_int_equal(kvi_add_bounded(k, "redis", "sf:h", 4, 1, 0, 0, 9, &n), KVI_E_NOT_A_COUNTER);
    r = NULL;
    assert_int_equal(kvi_raw_query(k, "redis", "LLEN sf:l", 9, &r), KVI_OK);
    assert_int_equal(kvi_reply_integer(r), 1);
    kvi_reply_free(r);
    kvi_free(k);
}

int main(int argc, char **argv)
{
    if (argc != 2 || (strcmp(argv[1], "redis") != 0 && strcmp(argv[1], "memcached") != 0)) {
        fprintf(stderr, "usage: test_engines_after_fork redis|memcached\n");
        return 2;
    }
    g_engine = argv[1];
    kvi_ts_server *srv =
        strcmp(g_engine, "redis") == 0 ? kvi_test_redis(NULL) : kvi_test_memcached(NULL);
    kvi_test_url(g_url, sizeof g_url, g_engine, srv, "?timeout=3000");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_context_keeps_working_after_fork),
        cmocka_unit_test(test_redis_counters_survive_a_flushed_script_cache),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    kvi_ts_free(srv);
    return rc;
}
