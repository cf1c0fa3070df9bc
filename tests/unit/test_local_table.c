/*
 * test_local_table.c -- internals of the local engine that the public
 * conformance suite does not reach: growth (incremental rehash) under
 * concurrent access, the expiry sweep, the memory cap with eviction or
 * STORE_FULL, options, collections.  Time is moved with kvi_set_clock.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "testclock.h"

#include "kvi/kvi.h"

static kvi_test_clock fake;

static int setup(void **state)
{
    kvi *k = NULL;
    if (kvi_new(&k) != KVI_OK)
        return -1;
    kvi_test_clock_set(&fake, INT64_C(1700000000000));
    kvi_set_clock(k, kvi_test_clock_fn, &fake);
    *state = k;
    return 0;
}

static int teardown(void **state)
{
    kvi_free(*state);
    return 0;
}

static void advance_s(int64_t s)
{
    kvi_test_clock_advance(&fake, s * 1000);
}

static size_t key_of(char *buf, const char *prefix, unsigned i)
{
    return (size_t)snprintf(buf, 64, "%s%08u", prefix, i);
}

static kvi_stats stats_of(kvi *k, const char *id)
{
    kvi_stats s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(kvi_stats_get(k, id, &s), KVI_OK);
    assert_true(s.has_content);
    return s;
}

/* ---- growth under concurrency -------------------------------------------- */

#define GROW_THREADS 4
#define GROW_KEYS 40000u

struct grow_arg {
    kvi_conn *c;
    unsigned id;
    int failures;
};

static void *grow_worker(void *p)
{
    struct grow_arg *a = p;
    char key[64], val[64];
    for (unsigned i = 0; i < GROW_KEYS; i++) {
        size_t kl = key_of(key, a->id == 0 ? "a" : a->id == 1 ? "b" : a->id == 2 ? "c" : "d", i);
        size_t vl = (size_t)snprintf(val, sizeof(val), "v%u-%u", a->id, i);
        if (kvi_conn_store(a->c, key, kl, val, vl, 0) != KVI_OK)
            a->failures++;
        /* Read back an older key of ours while the shards are rehashing. */
        unsigned j = i / 2;
        kl = key_of(key, a->id == 0 ? "a" : a->id == 1 ? "b" : a->id == 2 ? "c" : "d", j);
        kvi_value v = KVI_VALUE_INIT;
        if (kvi_conn_fetch(a->c, key, kl, &v) != KVI_OK)
            a->failures++;
        else {
            vl = (size_t)snprintf(val, sizeof(val), "v%u-%u", a->id, j);
            if (v.len != vl || memcmp(v.data, val, vl) != 0)
                a->failures++;
        }
        kvi_value_free(&v);
    }
    return NULL;
}

static void test_growth_under_concurrent_access_loses_nothing(void **state)
{
    kvi *k = *state;
    kvi_conn *c = NULL;
    assert_int_equal(kvi_conn_get(k, "local", &c), KVI_OK);
    pthread_t th[GROW_THREADS];
    struct grow_arg args[GROW_THREADS];
    for (unsigned i = 0; i < GROW_THREADS; i++) {
        args[i] = (struct grow_arg){c, i, 0};
        assert_int_equal(pthread_create(&th[i], NULL, grow_worker, &args[i]), 0);
    }
    for (unsigned i = 0; i < GROW_THREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].failures, 0);
    }
    kvi_stats s = stats_of(k, "local");
    assert_int_equal(s.entries, GROW_THREADS * GROW_KEYS);

    /* Every key is still there after growth finished. */
    char key[64];
    for (unsigned i = 0; i < GROW_KEYS; i += 7) {
        size_t kl = key_of(key, "c", i);
        kvi_value v = KVI_VALUE_INIT;
        assert_int_equal(kvi_conn_fetch(c, key, kl, &v), KVI_OK);
        kvi_value_free(&v);
    }
    uint64_t removed = 0;
    assert_int_equal(kvi_remove_chunk(k, "local", "b*", 2, &removed), KVI_OK);
    assert_int_equal(removed, GROW_KEYS);
    assert_int_equal(stats_of(k, "local").entries, (GROW_THREADS - 1) * GROW_KEYS);
}

#define ADD_THREADS 4
#define ADD_ROUNDS 20000

static void *add_worker(void *p)
{
    kvi_conn *c = p;
    for (int i = 0; i < ADD_ROUNDS; i++) {
        char key[16];
        size_t kl = (size_t)snprintf(key, sizeof(key), "ctr%d", i % 8);
        kvi_conn_add(c, key, kl, (i % 3) - 1 + 2, 0, NULL); /* +1, +2, +3 */
    }
    return NULL;
}

static void test_concurrent_adds_are_exact(void **state)
{
    kvi *k = *state;
    kvi_conn *c = NULL;
    assert_int_equal(kvi_conn_get(k, "local", &c), KVI_OK);
    pthread_t th[ADD_THREADS];
    for (int i = 0; i < ADD_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, add_worker, c), 0);
    for (int i = 0; i < ADD_THREADS; i++)
        pthread_join(th[i], NULL);
    int64_t total = 0;
    for (int j = 0; j < 8; j++) {
        char key[16];
        size_t kl = (size_t)snprintf(key, sizeof(key), "ctr%d", j);
        int64_t v = 0;
        assert_int_equal(kvi_conn_counter_fetch(c, key, kl, &v), KVI_OK);
        total += v;
    }
    /* Each round of 3 adds 1+2+3; 20000 = 6666 rounds + 2 extra (+1, +2). */
    assert_int_equal(total, (int64_t)ADD_THREADS * (6666 * 6 + 3));
}

/* ---- expiry -------------------------------------------------------------- */

static void test_sweep_removes_expired_entries_nobody_reads(void **state)
{
    kvi *k = *state;
    char key[64];
    for (unsigned i = 0; i < 2000; i++)
        assert_int_equal(kvi_store(k, "local", key, key_of(key, "old", i), "x", 1, 5), KVI_OK);
    advance_s(6);
    /* Only writes to other keys: the sweep must find the dead ones. */
    for (unsigned round = 0; round < 10; round++)
        for (unsigned i = 0; i < 2000; i++)
            assert_int_equal(kvi_store(k, "local", key, key_of(key, "new", i), "y", 1, 0), KVI_OK);
    kvi_stats s = stats_of(k, "local");
    assert_int_equal(s.expired, 2000);
    assert_int_equal(s.entries, 2000);
    assert_int_equal(s.bytes, 2000 * (11 + 1));
}

static void test_expired_keys_are_never_listed(void **state)
{
    kvi *k = *state;
    assert_int_equal(kvi_store(k, "local", "short", 5, "1", 1, 10), KVI_OK);
    assert_int_equal(kvi_store(k, "local", "long", 4, "1", 1, 100), KVI_OK);
    assert_int_equal(kvi_store(k, "local", "forever", 7, "1", 1, 0), KVI_OK);
    advance_s(10);
    kvi_reply *r = NULL;
    assert_int_equal(kvi_keys(k, "local", "*", 1, &r), KVI_OK);
    assert_int_equal(kvi_reply_count(r), 2);
    for (size_t i = 0; i < kvi_reply_count(r); i++) {
        const char *s = kvi_reply_str(kvi_reply_element(r, i), NULL);
        assert_true(strcmp(s, "long") == 0 || strcmp(s, "forever") == 0);
    }
    kvi_reply_free(r);
    uint64_t removed = 99;
    assert_int_equal(kvi_remove_chunk(k, "local", "short", 5, &removed), KVI_OK);
    assert_int_equal(removed, 0);
    assert_int_equal(stats_of(k, "local").expired, 1);
}

static void test_ttl_rounds_down_and_add_keeps_window(void **state)
{
    kvi *k = *state;
    int64_t ttl = 0, v = 0;
    assert_int_equal(kvi_add(k, "local", "w", 1, 5, 10, &v), KVI_OK);
    assert_int_equal(v, 5);
    kvi_test_clock_advance(&fake, 2500);
    assert_int_equal(kvi_ttl(k, "local", "w", 1, &ttl), KVI_OK);
    assert_int_equal(ttl, 7); /* 7.5 s left, rounded down: never more than it has */
    assert_int_equal(kvi_add(k, "local", "w", 1, 100, 1000, &v), KVI_OK);
    assert_int_equal(v, 105);
    assert_int_equal(kvi_ttl(k, "local", "w", 1, &ttl), KVI_OK);
    assert_int_equal(ttl, 7); /* the existing window was kept */
    kvi_test_clock_advance(&fake, 7499);
    assert_int_equal(kvi_ttl(k, "local", "w", 1, &ttl), KVI_OK);
    assert_int_equal(ttl, 0); /* 1 ms left: live, not a whole second */
    kvi_test_clock_advance(&fake, 1);
    assert_int_equal(kvi_ttl(k, "local", "w", 1, &ttl), KVI_NOT_FOUND);
    /* Store with 0 clears an expiry. */
    assert_int_equal(kvi_store(k, "local", "w", 1, "1", 1, 3), KVI_OK);
    assert_int_equal(kvi_store(k, "local", "w", 1, "1", 1, 0), KVI_OK);
    assert_int_equal(kvi_ttl(k, "local", "w", 1, &ttl), KVI_OK);
    assert_int_equal(ttl, -1);
}

static void test_counter_growing_text_and_overflow(void **state)
{
    kvi *k = *state;
    int64_t v = 0;
    /* 9 -> 10 changes the entry's length (it is reallocated). */
    assert_int_equal(kvi_store(k, "local", "n", 1, "9", 1, 0), KVI_OK);
    assert_int_equal(kvi_add(k, "local", "n", 1, 1, 0, &v), KVI_OK);
    assert_int_equal(v, 10);
    kvi_value val = KVI_VALUE_INIT;
    assert_int_equal(kvi_fetch(k, "local", "n", 1, &val), KVI_OK);
    assert_int_equal(val.len, 2);
    assert_memory_equal(val.data, "10", 2);
    kvi_value_free(&val);
    assert_int_equal(kvi_add(k, "local", "n", 1, INT64_MAX, 0, &v), KVI_E_OVERFLOW);
    assert_int_equal(kvi_counter_fetch(k, "local", "n", 1, &v), KVI_OK);
    assert_int_equal(v, 10);
    assert_int_equal(kvi_sub(k, "local", "n", 1, 20, 0, &v), KVI_OK);
    assert_int_equal(v, -10);
    assert_int_equal(kvi_store(k, "local", "s", 1, "12a", 3, 0), KVI_OK);
    assert_int_equal(kvi_add(k, "local", "s", 1, 1, 0, &v), KVI_E_NOT_A_COUNTER);
    assert_int_equal(kvi_fetch(k, "local", "s", 1, &val), KVI_OK);
    assert_memory_equal(val.data, "12a", 3);
    kvi_value_free(&val);
}

/* Bounded add and store-if-absent on the fake clock: an expired entry is
 * absent for both, the counter text may change length, a refusal leaves
 * the entry (and its expiry) as it was. */
static void test_conditional_ops_see_expired_as_absent(void **state)
{
    kvi *k = *state;
    int64_t v = -1, ttl = 0;
    assert_int_equal(kvi_store_nx(k, "local", "lock", 4, "a", 1, 2), KVI_OK);
    assert_int_equal(kvi_store_nx(k, "local", "lock", 4, "b", 1, 0), KVI_KEY_EXISTS);
    kvi_test_clock_advance(&fake, 1999);
    assert_int_equal(kvi_store_nx(k, "local", "lock", 4, "b", 1, 0), KVI_KEY_EXISTS);
    kvi_test_clock_advance(&fake, 1);
    assert_int_equal(kvi_store_nx(k, "local", "lock", 4, "c", 1, 5), KVI_OK);
    kvi_value val = KVI_VALUE_INIT;
    assert_int_equal(kvi_fetch(k, "local", "lock", 4, &val), KVI_OK);
    assert_memory_equal(val.data, "c", 1);
    kvi_value_free(&val);
    assert_int_equal(kvi_ttl(k, "local", "lock", 4, &ttl), KVI_OK);
    assert_int_equal(ttl, 5);

    assert_int_equal(kvi_add_bounded(k, "local", "q", 1, 9, 3, 0, 10, &v), KVI_OK);
    assert_int_equal(v, 9);
    assert_int_equal(kvi_add_bounded(k, "local", "q", 1, 1, 0, 0, 10, &v), KVI_OK);
    assert_int_equal(v, 10); /* one digit more: the entry was reallocated */
    assert_int_equal(kvi_add_bounded(k, "local", "q", 1, 1, 0, 0, 10, &v), KVI_OUT_OF_BOUNDS);
    assert_int_equal(v, 10);
    assert_int_equal(kvi_ttl(k, "local", "q", 1, &ttl), KVI_OK);
    assert_int_equal(ttl, 3); /* the window survived both */
    kvi_test_clock_advance(&fake, 3000);
    /* Expired: absent, so -1 from 0 is refused at floor 0 and reports 0. */
    v = -1;
    assert_int_equal(kvi_sub_bounded(k, "local", "q", 1, 1, 0, 0, 10, &v), KVI_OUT_OF_BOUNDS);
    assert_int_equal(v, 0);
    assert_int_equal(kvi_counter_fetch(k, "local", "q", 1, &v), KVI_NOT_FOUND);
    assert_int_equal(kvi_sub_bounded(k, "local", "q", 1, -4, 0, 0, 10, &v), KVI_OK);
    assert_int_equal(v, 4);
    assert_int_equal(kvi_ttl(k, "local", "q", 1, &ttl), KVI_OK);
    assert_int_equal(ttl, -1);
}

/* ---- memory cap ---------------------------------------------------------- */

static void test_max_memory_with_evict_none_answers_store_full(void **state)
{
    kvi *k = *state;
    assert_int_equal(kvi_add_url(k, "local:capped://?max_memory=64k&evict=none"), KVI_OK);
    char key[64], val[100];
    memset(val, 'v', sizeof(val));
    kvi_status st = KVI_OK;
    unsigned stored = 0;
    while (stored < 10000 && (st = kvi_store(k, "local:capped", key, key_of(key, "k", stored), val,
                                             sizeof(val), 0)) == KVI_OK)
        stored++;
    assert_int_equal(st, KVI_E_STORE_FULL);
    assert_true(stored > 300 && stored < 600);
    assert_non_null(strstr(kvi_errmsg(k), "max_memory"));
    /* Nothing was evicted and earlier keys are intact. */
    kvi_stats s = stats_of(k, "local:capped");
    assert_int_equal(s.entries, stored);
    assert_int_equal(s.evicted, 0);
    /* Replacing with a value of the same size still works. */
    assert_int_equal(kvi_store(k, "local:capped", key, key_of(key, "k", 0), val, sizeof(val), 0),
                     KVI_OK);
    /* Removing frees room.  (Several keys: the new key may be longer than
     * "k1" and its insert may start a shard's growth, both charged.) */
    for (unsigned i = 1; i <= 10; i++)
        assert_int_equal(kvi_remove(k, "local:capped", key, key_of(key, "k", i)), KVI_OK);
    assert_int_equal(
        kvi_store(k, "local:capped", key, key_of(key, "k", stored), val, sizeof(val), 0), KVI_OK);
    /* A value bigger than the whole cap is refused. */
    static char big[70000];
    assert_int_equal(kvi_store(k, "local:capped", "big", 3, big, sizeof(big), 0), KVI_E_STORE_FULL);
}

static void test_max_memory_with_lru_evicts_cold_keys(void **state)
{
    kvi *k = *state;
    assert_int_equal(kvi_add_url(k, "local:lru://?max_memory=256k&evict=lru"), KVI_OK);
    char key[64], val[100];
    memset(val, 'v', sizeof(val));
    /* 100 hot keys read after every write; 10000 cold keys written once. */
    for (unsigned i = 0; i < 100; i++)
        assert_int_equal(kvi_store(k, "local:lru", key, key_of(key, "hot", i), val, 100, 0),
                         KVI_OK);
    for (unsigned i = 0; i < 10000; i++) {
        assert_int_equal(kvi_store(k, "local:lru", key, key_of(key, "cold", i), val, 100, 0),
                         KVI_OK);
        kvi_value v = KVI_VALUE_INIT;
        kvi_status st = kvi_fetch(k, "local:lru", key, key_of(key, "hot", i % 100), &v);
        assert_true(st == KVI_OK || st == KVI_NOT_FOUND);
        kvi_value_free(&v);
    }
    kvi_stats s = stats_of(k, "local:lru");
    assert_true(s.evicted > 7000);
    assert_true(s.entries + s.evicted == 10100);
    unsigned hot_alive = 0;
    for (unsigned i = 0; i < 100; i++) {
        kvi_value v = KVI_VALUE_INIT;
        if (kvi_fetch(k, "local:lru", key, key_of(key, "hot", i), &v) == KVI_OK)
            hot_alive++;
        kvi_value_free(&v);
    }
    /* Approximate LRU: nearly all hot keys survive, while ~80% of all keys
     * went. */
    assert_true(hot_alive >= 90);
}

/* Issue 11 item 9: bucket arrays grown for entries since evicted must not
 * keep a tiny cap full while the table is empty. */
static void test_tiny_max_memory_with_lru_always_takes_a_small_write(void **state)
{
    kvi *k = *state;
    static const char *const caps[] = {"100", "1k", "4k", "8k", "12k"};
    for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
        char url[128], id[32], key[64];
        snprintf(id, sizeof(id), "local:tiny%zu", c);
        snprintf(url, sizeof(url), "%s://?max_memory=%s&evict=lru", id, caps[c]);
        assert_int_equal(kvi_add_url(k, url), KVI_OK);
        for (unsigned i = 0; i < 20000; i++) {
            kvi_status st = kvi_store(k, id, key, key_of(key, "k", i), "v", 1, 0);
            if (st != KVI_OK)
                fail_msg("max_memory=%s: write %u: %s (%s)", caps[c], i, kvi_status_name(st),
                         kvi_errmsg(k));
        }
        kvi_stats s = stats_of(k, id);
        assert_true(s.entries >= 1);
        assert_true(s.evicted > 0);
    }
}

/* The same with evict=none: once everything is removed, writes fit again. */
static void test_max_memory_with_evict_none_fits_again_after_removing_all(void **state)
{
    kvi *k = *state;
    assert_int_equal(kvi_add_url(k, "local:small://?max_memory=8k&evict=none"), KVI_OK);
    char key[64];
    unsigned n = 0;
    while (kvi_store(k, "local:small", key, key_of(key, "k", n), "v", 1, 0) == KVI_OK)
        n++;
    assert_true(n > 10);
    uint64_t removed = 0;
    assert_int_equal(kvi_remove_chunk(k, "local:small", "*", 1, &removed), KVI_OK);
    assert_int_equal(removed, n);
    for (unsigned i = 0; i < n / 2; i++)
        assert_int_equal(kvi_store(k, "local:small", key, key_of(key, "again", i), "v", 1, 0),
                         KVI_OK);
}

static void test_lru_finds_victims_in_a_sparse_table(void **state)
{
    kvi *k = *state;
    assert_int_equal(kvi_add_url(k, "local:sparse://?max_memory=2m&evict=lru"), KVI_OK);
    char key[64];
    /* Grow every shard's table, then empty it: few entries, many buckets. */
    for (unsigned i = 0; i < 20000; i++)
        assert_int_equal(kvi_store(k, "local:sparse", key, key_of(key, "s", i), "x", 1, 0), KVI_OK);
    uint64_t removed = 0;
    assert_int_equal(kvi_remove_chunk(k, "local:sparse", "*", 1, &removed), KVI_OK);
    assert_int_equal(removed, 20000);
    static char big[400 * 1024];
    for (unsigned i = 0; i < 30; i++)
        assert_int_equal(
            kvi_store(k, "local:sparse", key, key_of(key, "big", i), big, sizeof(big), 0), KVI_OK);
    kvi_stats s = stats_of(k, "local:sparse");
    assert_true(s.entries >= 3 && s.entries <= 5);
    assert_int_equal(s.evicted, 30 - s.entries);
}

/* ---- options and collections --------------------------------------------- */

static void test_bad_options_are_rejected_with_their_name(void **state)
{
    kvi *k = *state;
    assert_int_equal(kvi_add_url(k, "local:a://?max_memory=12x"), KVI_E_INVALID);
    assert_non_null(strstr(kvi_errmsg(k), "max_memory"));
    assert_int_equal(kvi_add_url(k, "local:b://?evict=random"), KVI_E_INVALID);
    assert_non_null(strstr(kvi_errmsg(k), "evict"));
    assert_int_equal(kvi_add_url(k, "local:c://somehost/"), KVI_E_INVALID);
    assert_non_null(strstr(kvi_errmsg(k), "host"));
    assert_int_equal(kvi_add_url(k, "local:d://?max_memory=1g"), KVI_OK);
}

static void test_collections_are_independent_tables(void **state)
{
    kvi *k = *state;
    assert_int_equal(kvi_add_url(k, "local:sessions://"), KVI_OK);
    assert_int_equal(kvi_store(k, "local", "k", 1, "main", 4, 0), KVI_OK);
    assert_int_equal(kvi_store(k, "local:sessions", "k", 1, "sess", 4, 0), KVI_OK);
    kvi_value v = KVI_VALUE_INIT;
    assert_int_equal(kvi_fetch(k, "local", "k", 1, &v), KVI_OK);
    assert_memory_equal(v.data, "main", 4);
    kvi_value_free(&v);
    uint64_t removed = 0;
    assert_int_equal(kvi_remove_chunk(k, "local:sessions", "*", 1, &removed), KVI_OK);
    assert_int_equal(removed, 1);
    assert_int_equal(kvi_fetch(k, "local:sessions", "k", 1, &v), KVI_NOT_FOUND);
    assert_int_equal(kvi_fetch(k, "local", "k", 1, &v), KVI_OK);
    kvi_value_free(&v);
    assert_int_equal(stats_of(k, "local").entries, 1);
    assert_int_equal(stats_of(k, "local:sessions").entries, 0);
}

static void test_binary_keys_and_empty_values(void **state)
{
    kvi *k = *state;
    const char key[] = {'\0', '\xff', ' ', '\n', 'a'};
    assert_int_equal(kvi_store(k, "local", key, sizeof(key), "", 0, 0), KVI_OK);
    kvi_value v = KVI_VALUE_INIT;
    assert_int_equal(kvi_fetch(k, "local", key, sizeof(key), &v), KVI_OK);
    assert_int_equal(v.len, 0);
    assert_non_null(v.data);
    kvi_value_free(&v);
    /* A key differing only after the NUL is another key. */
    const char other[] = {'\0', '\xff', ' ', '\n', 'b'};
    assert_int_equal(kvi_fetch(k, "local", other, sizeof(other), &v), KVI_NOT_FOUND);
    static char longkey[1024];
    memset(longkey, 'L', sizeof(longkey));
    assert_int_equal(kvi_store(k, "local", longkey, sizeof(longkey), "x", 1, 0), KVI_OK);
    assert_int_equal(kvi_fetch(k, "local", longkey, sizeof(longkey), &v), KVI_OK);
    kvi_value_free(&v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_growth_under_concurrent_access_loses_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_adds_are_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep_removes_expired_entries_nobody_reads, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_expired_keys_are_never_listed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ttl_rounds_down_and_add_keeps_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conditional_ops_see_expired_as_absent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_counter_growing_text_and_overflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_memory_with_evict_none_answers_store_full, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_max_memory_with_lru_evicts_cold_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lru_finds_victims_in_a_sparse_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tiny_max_memory_with_lru_always_takes_a_small_write,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_max_memory_with_evict_none_fits_again_after_removing_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_options_are_rejected_with_their_name, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_collections_are_independent_tables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binary_keys_and_empty_values, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
