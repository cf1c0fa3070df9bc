/*
 * test_engines_out_of_memory.c -- the network engines when the context's
 * allocator runs out: against a real redis-server and a real memcached, a
 * scenario of every operation is run once for each allocation it makes,
 * with that one allocation refused.  Every call answers KVI_E_NOMEM or its
 * normal result, a value read back is always the one written (no reply
 * read for the wrong request after a failure), and nothing leaks.
 *
 *   test_engines_out_of_memory redis|memcached
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kvi/kvi.h"
#include "kvitest.h"

static struct {
    size_t calls, fail_at, refused, live;
} g;

static void *t_malloc(void *ud, size_t size)
{
    (void)ud;
    if (++g.calls == g.fail_at) {
        g.refused++;
        return NULL;
    }
    void *p = malloc(size ? size : 1);
    if (p != NULL)
        g.live++;
    return p;
}

static void *t_realloc(void *ud, void *ptr, size_t size)
{
    (void)ud;
    if (++g.calls == g.fail_at) {
        g.refused++;
        return NULL;
    }
    void *p = realloc(ptr, size ? size : 1);
    if (p != NULL && ptr == NULL)
        g.live++;
    return p;
}

static void t_free(void *ud, void *ptr)
{
    (void)ud;
    if (ptr != NULL)
        g.live--;
    free(ptr);
}

static const kvi_allocator counting = {t_malloc, t_realloc, t_free, NULL};

static const char *g_engine;
static char g_url[256];

/* st is the normal result want, or KVI_E_NOMEM while memory is short;
 * allowed lists further outcomes an earlier refused write explains. */
static void expect(const char *what, kvi_status st, kvi_status want, kvi_status also)
{
    if (st == want || (g.fail_at != 0 && (st == KVI_E_NOMEM || st == also)))
        return;
    fail_msg("%s, allocation %zu refused: %s: %s (want %s)", g_engine, g.fail_at, what,
             kvi_status_name(st), kvi_status_name(want));
}

/* A batch of every kind of operation on id: adding may be refused (NOMEM);
 * running may end NOMEM; each operation's status is then its normal result,
 * NOMEM, or what an earlier refused write explains. */
static void batch_round(kvi *k, const char *id, int raw)
{
    kvi_batch *b = NULL;
    kvi_status st = kvi_batch_new(k, &b);
    if (st != KVI_OK) {
        if (st != KVI_E_NOMEM || g.fail_at == 0)
            fail_msg("kvi_batch_new: %s", kvi_status_name(st));
        return;
    }
    int added = 1;
    added = added && kvi_batch_store(b, id, "b:s", 3, "bv", 2, 0) == KVI_OK;
    added = added && kvi_batch_store_nx(b, id, "b:nx", 4, "1", 1, 60) == KVI_OK;
    added = added && kvi_batch_fetch(b, id, "b:s", 3) == KVI_OK;
    added = added && kvi_batch_add(b, id, "b:c", 3, 5, 0) == KVI_OK;
    added = added && kvi_batch_sub(b, id, "b:c", 3, 1, 0) == KVI_OK;
    added = added && kvi_batch_add_bounded(b, id, "b:c", 3, 1, 0, 0, 100) == KVI_OK;
    added = added && kvi_batch_sub_bounded(b, id, "b:c", 3, 1000, 0, 0, 100) == KVI_OK;
    added = added && kvi_batch_counter_fetch(b, id, "b:c", 3) == KVI_OK;
    if (raw)
        added = added && kvi_batch_raw_query(b, id, "PING", 4) == KVI_OK;
    added = added && kvi_batch_remove(b, id, "b:s", 3) == KVI_OK;
    if (!added && g.fail_at == 0)
        fail_msg("adding to a batch failed with enough memory");
    st = kvi_batch_run(b, 2000);
    if (st != KVI_OK && !(g.fail_at != 0 && st == KVI_E_NOMEM))
        fail_msg("kvi_batch_run: %s", kvi_status_name(st));
    for (size_t i = 0; st == KVI_OK && i < kvi_batch_count(b); i++) {
        kvi_status os = kvi_batch_status(b, i);
        if (os == KVI_OK || os == KVI_NOT_FOUND || os == KVI_OUT_OF_BOUNDS ||
            os == KVI_KEY_EXISTS || (g.fail_at != 0 && os == KVI_E_NOMEM))
            continue;
        fail_msg("batch operation %zu: %s (%s)", i, kvi_status_name(os), kvi_batch_errmsg(b, i));
    }
    if (st == KVI_OK && added && kvi_batch_status(b, 2) == KVI_OK) {
        size_t len = 0;
        const char *v = kvi_batch_value(b, 2, &len);
        assert_int_equal(len, 2);
        assert_memory_equal(v, "bv", 2);
    }
    kvi_batch_free(b);
}

static size_t scenario(size_t fail_at, unsigned round)
{
    memset(&g, 0, sizeof g);
    g.fail_at = fail_at;
    kvi *k = NULL;
    kvi_status st = kvi_new_with_allocator(&k, &counting);
    expect("kvi_new_with_allocator", st, KVI_OK, KVI_OK);
    if (st != KVI_OK)
        return g.calls;
    st = kvi_add_url(k, g_url);
    expect("kvi_add_url", st, KVI_OK, KVI_OK);
    if (st != KVI_OK) {
        kvi_free(k);
        assert_int_equal(g.live, 0);
        return g.calls;
    }
    const char *id = g_engine;
    char key[64], val[64];
    snprintf(key, sizeof key, "oom:%u:key", round);
    snprintf(val, sizeof val, "value of round %u", round);
    expect("store", kvi_store(k, id, key, strlen(key), val, strlen(val), 300), KVI_OK, KVI_OK);
    kvi_value v = {0};
    st = kvi_fetch(k, id, key, strlen(key), &v);
    expect("fetch", st, KVI_OK, KVI_NOT_FOUND);
    if (st == KVI_OK) {
        assert_int_equal(v.len, strlen(val));
        assert_memory_equal(v.data, val, v.len);
    }
    kvi_value_free(&v);
    snprintf(key, sizeof key, "oom:%u:ctr", round);
    int64_t n = 0, n2 = 0;
    st = kvi_add(k, id, key, strlen(key), 5, 300, &n);
    expect("add", st, KVI_OK, KVI_OK);
    if (st == KVI_OK)
        assert_int_equal(n, 5);
    st = kvi_sub(k, id, key, strlen(key), 2, 0, &n2);
    expect("sub", st, KVI_OK, KVI_OK);
    if (st == KVI_OK && n == 5)
        assert_int_equal(n2, 3);
    st = kvi_counter_fetch(k, id, key, strlen(key), &n);
    expect("counter_fetch", st, KVI_OK, KVI_NOT_FOUND);
    st = kvi_add_bounded(k, id, key, strlen(key), 100, 0, 0, 10, &n);
    expect("add_bounded", st, KVI_OUT_OF_BOUNDS, KVI_OK);
    snprintf(key, sizeof key, "oom:%u:nx", round);
    expect("store_nx", kvi_store_nx(k, id, key, strlen(key), "1", 1, 60), KVI_OK, KVI_OK);
    expect("store_nx again", kvi_store_nx(k, id, key, strlen(key), "2", 1, 60), KVI_KEY_EXISTS,
           KVI_OK);
    int64_t ttl = 0;
    expect("ttl", kvi_ttl(k, id, key, strlen(key), &ttl), KVI_OK, KVI_NOT_FOUND);
    uint32_t caps = 0;
    kvi_conn *c = NULL;
    if (kvi_conn_get(k, id, &c) == KVI_OK)
        caps = kvi_conn_caps(c);
    if (caps & KVI_CAP_ITERATE) {
        kvi_reply *r = NULL;
        char glob[32];
        snprintf(glob, sizeof glob, "oom:%u:*", round);
        expect("keys", kvi_keys(k, id, glob, strlen(glob), &r), KVI_OK, KVI_OK);
        kvi_reply_free(r);
    }
    if (caps & KVI_CAP_RAW_QUERY) {
        kvi_reply *r = NULL;
        st = kvi_raw_query(k, id, "ECHO \"a b\"", 10, &r);
        expect("raw_query", st, KVI_OK, KVI_OK);
        if (st == KVI_OK) {
            size_t len = 0;
            const char *s = kvi_reply_str(r, &len);
            assert_int_equal(len, 3);
            assert_memory_equal(s, "a b", 3);
        }
        kvi_reply_free(r);
    }
    batch_round(k, id, (caps & KVI_CAP_RAW_QUERY) != 0);
    expect("ping", kvi_ping(k, id), KVI_OK, KVI_OK);
    kvi_stats s;
    expect("stats", kvi_stats_get(k, id, &s), KVI_OK, KVI_OK);
    snprintf(key, sizeof key, "oom:%u:key", round);
    expect("remove", kvi_remove(k, id, key, strlen(key)), KVI_OK, KVI_NOT_FOUND);
    kvi_free(k);
    assert_int_equal(g.live, 0);
    return g.calls;
}

static void test_every_refused_allocation_is_nomem(void **state)
{
    (void)state;
    unsigned round = 0;
    size_t total = scenario(0, round++);
    assert_int_equal(g.refused, 0);
    assert_true(total > 10);
    size_t refused_runs = 0;
    for (size_t at = 1; at <= total + 5; at++) {
        scenario(at, round++);
        refused_runs += g.refused > 0;
    }
    print_message("%s: %zu allocations in the clean run; %zu runs had one refused\n", g_engine,
                  total, refused_runs);
    assert_true(refused_runs >= total / 2);
    /* And afterwards everything works as ever. */
    scenario(0, round);
    assert_int_equal(g.refused, 0);
}

int main(int argc, char **argv)
{
    if (argc != 2 || (strcmp(argv[1], "redis") != 0 && strcmp(argv[1], "memcached") != 0)) {
        fprintf(stderr, "usage: test_engines_out_of_memory redis|memcached\n");
        return 2;
    }
    g_engine = argv[1];
    kvi_ts_server *srv =
        strcmp(g_engine, "redis") == 0 ? kvi_test_redis(NULL) : kvi_test_memcached(NULL);
    kvi_test_url(g_url, sizeof g_url, g_engine, srv, "?timeout=2000");
    /* The module loads outside the sweep: a context that has loaded it. */
    kvi_free(kvi_test_context1(g_url));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_refused_allocation_is_nomem),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    kvi_ts_free(srv);
    return rc;
}
