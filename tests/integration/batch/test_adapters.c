/*
 * test_adapters.c -- the libuv and libevent adapters (docs/async.md) drive
 * 10000 operations each, two chains of batches of 100 in flight at once
 * (examples/async/async_loop.h), against a real redis-server and a real
 * memcached started here; every fetch must read back its store.  Also: a
 * batch on a hung redis (SIGSTOP) ends by its deadline inside the loop, and
 * a canceled batch releases the adapter so that the loop returns.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "async_loop.h"
#include "kvi/adapters/libevent.h"
#include "kvi/adapters/libuv.h"
#include "kvitest.h"

static uv_loop_t g_loop;
static struct event_base *g_base;

static int start_uv(struct async_chain *ch)
{
    return kvi_uv_batch_run(&g_loop, ch->b, 5000, async_done, ch);
}

static int start_event(struct async_chain *ch)
{
    return kvi_event_batch_run(g_base, ch->b, 5000, async_done, ch);
}

/* N ops through one adapter (uv 1: libuv, else libevent) on url/id. */
static void drive(const char *url, const char *id, int uv)
{
    kvi *k = kvi_test_context1(url);
    const long n = 10000;
    struct async_chain ch[2];
    for (int i = 0; i < 2; i++) {
        ch[i] = (struct async_chain){NULL, id, 0, n / 2, 0, 0, i, uv ? start_uv : start_event};
        assert_int_equal(kvi_batch_new(k, &ch[i].b), KVI_OK);
        assert_true(async_fill(&ch[i]));
        assert_int_equal(ch[i].start(&ch[i]), 0);
    }
    if (uv)
        uv_run(&g_loop, UV_RUN_DEFAULT);
    else
        event_base_dispatch(g_base);
    long ok = ch[0].ok + ch[1].ok, failed = ch[0].failed + ch[1].failed;
    printf("# %s %s: %ld ok, %ld failed\n", uv ? "libuv" : "libevent", id, ok, failed);
    assert_int_equal(failed, 0);
    assert_int_equal(ok, n);
    for (int i = 0; i < 2; i++)
        kvi_batch_free(ch[i].b);
    kvi_free(k);
}

static kvi_ts_server *g_redis, *g_mc, *g_mc2;
static char g_redis_url[256], g_mc_url[256], g_mc_pool_url[256];

static void test_libuv_redis(void **state)
{
    (void)state;
    drive(g_redis_url, "redis", 1);
}

static void test_libevent_redis(void **state)
{
    (void)state;
    drive(g_redis_url, "redis", 0);
}

static void test_libuv_memcached(void **state)
{
    (void)state;
    drive(g_mc_url, "memcached", 1);
}

static void test_libevent_memcached(void **state)
{
    (void)state;
    drive(g_mc_url, "memcached", 0);
}

/* A pool of two: a batch waits on its epoll descriptor (docs/async.md). */
static void test_libuv_memcached_pool(void **state)
{
    (void)state;
    drive(g_mc_pool_url, "memcached", 1);
}

static void test_libevent_memcached_pool(void **state)
{
    (void)state;
    drive(g_mc_pool_url, "memcached", 0);
}

struct seen {
    int calls;
    kvi_status first;
};

static void record(void *ud, kvi_batch *b)
{
    struct seen *s = ud;
    s->calls++;
    s->first = kvi_batch_status(b, 0);
}

/* A hung server: the loop ends the batch at its deadline (no blocking). */
static void test_deadline_inside_each_loop(void **state)
{
    (void)state;
    char url[300];
    snprintf(url, sizeof url, "%s?timeout=10000", g_redis_url);
    kvi *k = kvi_test_context1(url);
    assert_int_equal(kvi_store(k, "redis", "k", 1, "v", 1, 0), KVI_OK);
    for (int uv = 0; uv < 2; uv++) {
        kvi_batch *b = NULL;
        assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
        assert_int_equal(kvi_batch_fetch(b, "redis", "k", 1), KVI_OK);
        kvi_test_hang(g_redis);
        struct seen s = {0, KVI_OK};
        if (uv) {
            assert_int_equal(kvi_uv_batch_run(&g_loop, b, 300, record, &s), 0);
            uv_run(&g_loop, UV_RUN_DEFAULT);
        } else {
            assert_int_equal(kvi_event_batch_run(g_base, b, 300, record, &s), 0);
            event_base_dispatch(g_base);
        }
        kvi_test_unhang(g_redis);
        assert_int_equal(s.calls, 1);
        assert_int_equal(s.first, KVI_E_TIMEOUT);
        kvi_batch_free(b);
    }
    kvi_free(k);
}

/* Cancel while pending: done is called and the loop has nothing left. */
static void test_cancel_releases_the_adapter(void **state)
{
    (void)state;
    kvi *k = kvi_test_context1(g_redis_url);
    assert_int_equal(kvi_store(k, "redis", "k", 1, "v", 1, 0), KVI_OK);
    for (int uv = 0; uv < 2; uv++) {
        kvi_batch *b = NULL;
        assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
        assert_int_equal(kvi_batch_fetch(b, "redis", "k", 1), KVI_OK);
        kvi_test_hang(g_redis);
        struct seen s = {0, KVI_OK};
        if (uv)
            assert_int_equal(kvi_uv_batch_run(&g_loop, b, 0, record, &s), 0);
        else
            assert_int_equal(kvi_event_batch_run(g_base, b, 0, record, &s), 0);
        kvi_batch_cancel(b);
        assert_int_equal(s.calls, 1);
        assert_int_equal(s.first, KVI_E_CANCELED);
        /* Returns: the adapter released its handles / event. */
        if (uv)
            uv_run(&g_loop, UV_RUN_DEFAULT);
        else
            event_base_dispatch(g_base);
        kvi_test_unhang(g_redis);
        kvi_batch_free(b);
    }
    kvi_free(k);
}

static int setup(void **state)
{
    (void)state;
    g_redis = kvi_test_redis(NULL);
    g_mc = kvi_test_memcached(NULL);
    kvi_test_url(g_redis_url, sizeof g_redis_url, "redis", g_redis, "");
    kvi_test_url(g_mc_url, sizeof g_mc_url, "memcached", g_mc, "");
    g_mc2 = kvi_test_memcached(NULL);
    snprintf(g_mc_pool_url, sizeof g_mc_pool_url, "memcached://127.0.0.1:%u,127.0.0.1:%u/",
             (unsigned)kvi_ts_port(g_mc), (unsigned)kvi_ts_port(g_mc2));
    uv_loop_init(&g_loop);
    g_base = event_base_new();
    return g_base == NULL;
}

static int teardown(void **state)
{
    (void)state;
    if (kvi_ts_pid(g_redis) != 0)
        kvi_test_unhang(g_redis);
    kvi_ts_free(g_redis);
    kvi_ts_free(g_mc);
    kvi_ts_free(g_mc2);
    uv_loop_close(&g_loop);
    event_base_free(g_base);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_libuv_redis),
        cmocka_unit_test(test_libevent_redis),
        cmocka_unit_test(test_libuv_memcached),
        cmocka_unit_test(test_libevent_memcached),
        cmocka_unit_test(test_libuv_memcached_pool),
        cmocka_unit_test(test_libevent_memcached_pool),
        cmocka_unit_test(test_deadline_inside_each_loop),
        cmocka_unit_test(test_cancel_releases_the_adapter),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
