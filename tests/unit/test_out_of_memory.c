/*
 * test_out_of_memory.c -- running out of memory is an outcome like any
 * other: with a context allocator that refuses its Nth request, for every N
 * a scenario of the public API (contexts, URLs with options, collections,
 * every operation, key listing, snapshots written on close and loaded on
 * open, configuration files, hooks) returns KVI_E_NOMEM where memory was
 * missing and never crashes, leaks (valgrind and ASan runs), or answers a
 * wrong value; and with enough memory every step succeeds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <unistd.h>

#include "kvi/kvi.h"
#include "kvitest.h"

/* The allocator: counts requests and refuses the one numbered fail_at
 * (1-based; 0 = never).  Frees are counted so that every block given out is
 * seen back. */
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

static char g_dir[4096];

/* A status that a step may end with while memory is short: what it would
 * answer with enough memory (want), or KVI_E_NOMEM; with NOT_FOUND allowed
 * where an earlier step that wrote the key may have been refused. */
static void expect(const char *what, kvi_status st, kvi_status want, int may_miss)
{
    if (st == want || (g.fail_at != 0 && st == KVI_E_NOMEM) ||
        (g.fail_at != 0 && may_miss && st == KVI_NOT_FOUND))
        return;
    fail_msg("refusing allocation %zu: %s: %s, want %s", g.fail_at, what, kvi_status_name(st),
             kvi_status_name(want));
}

static void on_log(void *ud, kvi_log_level level, const char *msg)
{
    (void)ud, (void)level, (void)msg;
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

/* One run of the scenario; returns the number of allocations it made. */
static size_t scenario(size_t fail_at)
{
    memset(&g, 0, sizeof g);
    g.fail_at = fail_at;
    char snap[4200], conf[4200];
    snprintf(snap, sizeof snap, "%s/oom.snap", g_dir);
    snprintf(conf, sizeof conf, "%s/oom.conf", g_dir);
    unlink(snap);

    kvi *k = NULL;
    kvi_status st = kvi_new_with_allocator(&k, &counting);
    expect("kvi_new_with_allocator", st, KVI_OK, 0);
    if (st != KVI_OK) {
        assert_null(k);
        assert_int_equal(g.live, 0);
        return g.calls;
    }
    expect("kvi_set_log", kvi_set_log(k, on_log, NULL, KVI_LOG_DEBUG), KVI_OK, 0);
    kvi_set_slow_threshold(k, 1);
    expect("kvi_set_module_path", kvi_set_module_path(k, g_dir), KVI_OK, 0);

    char url[4400];
    snprintf(url, sizeof url, "local:p://?file=%s&max_memory=1m&evict=lru", snap);
    kvi_status url_st = kvi_add_url(k, url);
    expect("kvi_add_url(file=)", url_st, KVI_OK, 0);
    expect("kvi_add_url(local:q)", kvi_add_url(k, "local:q://?max_memory=64k"), KVI_OK, 0);
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fputs("# two ids\nlocal:c1://\n\nlocal:c2://?max_memory=2m\n", f);
    fclose(f);
    expect("kvi_load_config", kvi_load_config(k, conf), KVI_OK, 0);

    const char *id = url_st == KVI_OK ? "local:p" : "local";
    char key[32], val[64];
    for (int i = 0; i < 12; i++) {
        snprintf(key, sizeof key, "key:%d", i);
        snprintf(val, sizeof val, "value %d %s", i, i % 3 ? "" : "with some more bytes in it");
        expect("store", kvi_store(k, id, key, strlen(key), val, strlen(val), i % 2 ? 0 : 300),
               KVI_OK, 0);
    }
    kvi_value v = {0};
    st = kvi_fetch(k, id, "key:3", 5, &v);
    expect("fetch", st, KVI_OK, 1);
    if (st == KVI_OK)
        assert_memory_equal(v.data, "value 3 with some more bytes in it", v.len);
    kvi_value_free(&v);
    int64_t n = 0;
    st = kvi_add(k, id, "ctr", 3, 5, 0, &n);
    expect("add", st, KVI_OK, 0);
    int ctr_ok = st == KVI_OK;
    st = kvi_sub(k, id, "ctr", 3, 2, 0, &n);
    expect("sub", st, KVI_OK, 0);
    if (st == KVI_OK && ctr_ok)
        assert_int_equal(n, 3);
    expect("add_bounded", kvi_add_bounded(k, id, "b", 1, 4, 60, 0, 10, &n), KVI_OK, 0);
    st = kvi_sub_bounded(k, id, "b", 1, 100, 0, 0, 10, &n);
    if (st != KVI_OUT_OF_BOUNDS && st != KVI_E_NOMEM && st != KVI_OK)
        fail_msg("sub_bounded: %s", kvi_status_name(st));
    expect("store_nx", kvi_store_nx(k, id, "nx", 2, "1", 1, 0), KVI_OK, 0);
    st = kvi_counter_fetch(k, id, "ctr", 3, &n);
    expect("counter_fetch", st, KVI_OK, 1);
    int64_t ttl = 0;
    expect("ttl", kvi_ttl(k, id, "key:0", 5, &ttl), KVI_OK, 1);
    kvi_reply *r = NULL;
    st = kvi_keys(k, id, "key:*", 5, &r);
    expect("keys", st, KVI_OK, 0);
    if (st == KVI_OK)
        assert_true(kvi_reply_count(r) <= 12);
    kvi_reply_free(r);
    r = NULL;
    expect("raw_query", kvi_raw_query(k, id, "PING", 4, &r), KVI_E_UNSUPPORTED, 0);
    kvi_reply_free(r);
    uint64_t removed = 0;
    expect("remove_chunk", kvi_remove_chunk(k, id, "key:1*", 6, &removed), KVI_OK, 0);
    expect("remove", kvi_remove(k, id, "key:2", 5), KVI_OK, 1);
    kvi_stats s;
    expect("stats", kvi_stats_get(k, id, &s), KVI_OK, 0);
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof key, "q:%d", i);
        st = kvi_store(k, "local:q", key, strlen(key), val, sizeof val, 0);
        if (st != KVI_OK && st != KVI_E_NOMEM && st != KVI_E_STORE_FULL &&
            st != KVI_E_UNKNOWN_ENGINE)
            fail_msg("store into local:q: %s", kvi_status_name(st));
    }
    batch_round(k, id, 0);
    kvi_conn *c = NULL;
    if (kvi_conn_get(k, "local:c2", &c) == KVI_OK) {
        expect("conn_store", kvi_conn_store(c, "x", 1, "y", 1, 0), KVI_OK, 0);
        expect("conn_fetch", kvi_conn_fetch(c, "x", 1, &v), KVI_OK, 1);
        kvi_value_free(&v);
        expect("conn_ping", kvi_conn_ping(c), KVI_OK, 0);
    }
    kvi_free(k); /* writes the snapshot of local:p */
    assert_int_equal(g.live, 0);

    /* Load it again in a context whose allocator refuses now and then. */
    k = NULL;
    if (kvi_new_with_allocator(&k, &counting) == KVI_OK) {
        st = kvi_add_url(k, url);
        if (st != KVI_OK && st != KVI_E_NOMEM && !(url_st != KVI_OK && st == KVI_OK))
            fail_msg("reload: %s (%s)", kvi_status_name(st), kvi_errmsg(k));
        if (st == KVI_OK) {
            st = kvi_fetch(k, "local:p", "key:3", 5, &v);
            if (st == KVI_OK)
                assert_memory_equal(v.data, "value 3 with some more bytes in it", v.len);
            kvi_value_free(&v);
        }
        kvi_free(k);
    }
    assert_int_equal(g.live, 0);
    return g.calls;
}

static void test_every_refused_allocation_is_nomem_never_a_crash(void **state)
{
    (void)state;
    size_t total = scenario(0);
    assert_int_equal(g.refused, 0);
    assert_true(total > 50);
    size_t nomem_runs = 0;
    for (size_t at = 1; at <= total + 10; at++) {
        scenario(at);
        nomem_runs += g.refused > 0;
    }
    /* Runs whose refusal hit an allocation (the count varies a little from
     * run to run: the local engine's sweep allocates on its own time). */
    print_message("%zu allocations in the clean run; %zu of %zu runs had one refused\n", total,
                  nomem_runs, total + 10);
    assert_true(nomem_runs >= total / 2);
}

static int setup(void **state)
{
    (void)state;
    char *dir = NULL;
    if (kvi_ts_make_tempdir("oom", &dir) != KVI_TS_OK)
        return -1;
    snprintf(g_dir, sizeof g_dir, "%s", dir);
    free(dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kvi_ts_remove_tree(g_dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_refused_allocation_is_nomem_never_a_crash),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
