/*
 * test_mc_integration.c -- the memcached engine against real memcached
 * servers started by the test on 127.0.0.1 (tests/support/testserver.h):
 * pool sharding and what other clients see, the key mapping and value
 * envelope, fixed-window expiry of counters, server death and restart,
 * threads and forked processes racing on the same counters, SASL.
 */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libmemcached/memcached.h>

#include "kvi/kvi.h"
#include "mc_envelope.h"
#include "kvitest.h"
#include "testclock.h"
#include "testserver.h"

#define NPOOL 3

static kvi_ts_server *pool[NPOOL];
static char pool_url[512];

/* ---- helpers --------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static kvi_ts_server *start_memcached(const char *const *extra)
{
    kvi_ts_server *s = NULL;
    kvi_ts_result r = kvi_ts_memcached_start(&s, extra);
    if (r != KVI_TS_OK)
        fail_msg("cannot start memcached: %s", kvi_ts_errmsg());
    return s;
}

/* A context with one engine id "memcached" defined by url. */
static kvi *ctx_for(const char *url)
{
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    kvi_status st = kvi_add_url(k, url);
    if (st != KVI_OK)
        fail_msg("kvi_add_url(%s): %s: %s", url, kvi_status_name(st), kvi_errmsg(k));
    return k;
}

#define ASSERT_KVI(k, call, expect)                                                                \
    do {                                                                                           \
        kvi_status st_ = (call);                                                                   \
        if (st_ != (expect))                                                                       \
            fail_msg("%s: got %s, want %s (%s)", #call, kvi_status_name(st_),                      \
                     kvi_status_name(expect), kvi_errmsg(k));                                      \
    } while (0)

/* A plain libmemcached client, configured as the engine places keys. */
static memcached_st *raw_client(kvi_ts_server *const *servers, size_t n)
{
    memcached_st *mc = memcached_create(NULL);
    assert_non_null(mc);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(memcached_server_add(mc, "127.0.0.1", kvi_ts_port(servers[i])),
                         MEMCACHED_SUCCESS);
    return mc;
}

/* Raw value of memcached key mkey (malloc'd, NULL when missing). */
static char *raw_get(memcached_st *mc, const char *mkey, size_t *len, uint32_t *flags)
{
    memcached_return_t rc;
    char *v = memcached_get(mc, mkey, strlen(mkey), len, flags, &rc);
    if (v == NULL && rc == MEMCACHED_SUCCESS) /* empty value */
        v = calloc(1, 1);
    return v;
}

static int pool_setup(void **state)
{
    (void)state;
    int n = snprintf(pool_url, sizeof pool_url, "memcached://");
    for (size_t i = 0; i < NPOOL; i++) {
        kvi_ts_server *s = NULL;
        if (kvi_ts_memcached_start(&s, NULL) != KVI_TS_OK) {
            fprintf(stderr, "cannot start memcached: %s\n", kvi_ts_errmsg());
            return -1;
        }
        pool[i] = s;
        n += snprintf(pool_url + n, sizeof pool_url - (size_t)n, "%s127.0.0.1:%u", i ? "," : "",
                      kvi_ts_port(s));
    }
    snprintf(pool_url + n, sizeof pool_url - (size_t)n, "/?timeout=2000");
    return 0;
}

static int pool_teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < NPOOL; i++)
        kvi_ts_free(pool[i]);
    return 0;
}

/* ---- pool and what other clients see ------------------------------------- */

static void test_plain_keys_spread_over_pool_and_readable_by_other_clients(void **state)
{
    (void)state;
    kvi *k = ctx_for(pool_url);
    enum { NKEYS = 90 };
    for (int i = 0; i < NKEYS; i++) {
        char key[32], val[32];
        int kn = snprintf(key, sizeof key, "spread:%d", i);
        int vn = snprintf(val, sizeof val, "v%d", i);
        ASSERT_KVI(k, kvi_store(k, "memcached", key, (size_t)kn, val, (size_t)vn, 0), KVI_OK);
    }
    size_t total = 0;
    for (size_t s = 0; s < NPOOL; s++) {
        memcached_st *one = raw_client(&pool[s], 1);
        size_t here = 0;
        for (int i = 0; i < NKEYS; i++) {
            char key[32], val[32];
            snprintf(key, sizeof key, "spread:%d", i);
            int vn = snprintf(val, sizeof val, "v%d", i);
            size_t len;
            uint32_t flags = 99;
            char *v = raw_get(one, key, &len, &flags);
            if (v == NULL)
                continue;
            here++;
            /* The exact bytes, no envelope, flags 0 (no expiry). */
            assert_int_equal(len, (size_t)vn);
            assert_memory_equal(v, val, len);
            assert_int_equal(flags, 0);
            free(v);
        }
        memcached_free(one);
        assert_true(here > 0); /* every server of the pool holds some keys */
        total += here;
    }
    assert_int_equal(total, NKEYS); /* each key on exactly one server */
    kvi_free(k);
}

static void test_mapped_key_is_stored_under_digest_with_envelope(void **state)
{
    (void)state;
    kvi *k = ctx_for(pool_url);
    const char key[] = "a key with spaces\x01";
    size_t key_len = sizeof key - 1;
    ASSERT_KVI(k, kvi_store(k, "memcached", key, key_len, "payload", 7, 0), KVI_OK);

    char mkey[KVI_MC_KEY_BUF];
    int mapped;
    kvi__mc_key(key, key_len, mkey, &mapped);
    assert_int_equal(mapped, 1);
    memcached_st *raw = raw_client(pool, NPOOL);
    size_t len;
    uint32_t flags;
    char *v = raw_get(raw, mkey, &len, &flags);
    assert_non_null(v);
    assert_int_equal(len, KVI_MC_WRAP_FIXED + key_len + 7);
    assert_memory_equal(v, "KVI\x01", 4);
    assert_memory_equal(v + KVI_MC_WRAP_FIXED, key, key_len);
    assert_memory_equal(v + KVI_MC_WRAP_FIXED + key_len, "payload", 7);
    free(v);
    memcached_free(raw);

    kvi_value out = KVI_VALUE_INIT;
    ASSERT_KVI(k, kvi_fetch(k, "memcached", key, key_len, &out), KVI_OK);
    assert_int_equal(out.len, 7);
    assert_memory_equal(out.data, "payload", 7);
    kvi_value_free(&out);
    kvi_free(k);
}

static void test_digest_collision_never_returns_another_keys_value(void **state)
{
    (void)state;
    kvi *k = ctx_for(pool_url);
    /* Simulate a collision: put key B's envelope under key A's digest. */
    const char a[] = "key A\t", b[] = "key B\t";
    char mkey_a[KVI_MC_KEY_BUF];
    int mapped;
    kvi__mc_key(a, sizeof a - 1, mkey_a, &mapped);
    unsigned char buf[64];
    kvi__mc_wrap_header(b, sizeof b - 1, buf);
    memcpy(buf + KVI_MC_WRAP_FIXED + sizeof b - 1, "42", 2);
    memcached_st *raw = raw_client(pool, NPOOL);
    assert_int_equal(memcached_set(raw, mkey_a, strlen(mkey_a), (const char *)buf,
                                   KVI_MC_WRAP_FIXED + sizeof b - 1 + 2, 0, 0),
                     MEMCACHED_SUCCESS);

    kvi_value out = KVI_VALUE_INIT;
    int64_t n = 7;
    ASSERT_KVI(k, kvi_fetch(k, "memcached", a, sizeof a - 1, &out), KVI_E_CORRUPT);
    assert_null(out.data);
    ASSERT_KVI(k, kvi_counter_fetch(k, "memcached", a, sizeof a - 1, &n), KVI_E_CORRUPT);
    ASSERT_KVI(k, kvi_add(k, "memcached", a, sizeof a - 1, 1, 0, &n), KVI_E_CORRUPT);
    /* A store of A replaces the foreign item. */
    ASSERT_KVI(k, kvi_store(k, "memcached", a, sizeof a - 1, "mine", 4, 0), KVI_OK);
    ASSERT_KVI(k, kvi_fetch(k, "memcached", a, sizeof a - 1, &out), KVI_OK);
    assert_memory_equal(out.data, "mine", 4);
    kvi_value_free(&out);
    memcached_free(raw);
    kvi_free(k);
}

static void test_value_of_1_mib_under_mapped_key_and_too_large_value(void **state)
{
    (void)state;
    kvi *k = ctx_for(pool_url);
    size_t mib = 1u << 20;
    char *big = malloc(3 * mib);
    assert_non_null(big);
    for (size_t i = 0; i < 3 * mib; i++)
        big[i] = (char)(i * 31u + 7u);
    char key[1024];
    memset(key, 0xEE, sizeof key);
    ASSERT_KVI(k, kvi_store(k, "memcached", key, sizeof key, big, mib, 0), KVI_OK);
    kvi_value out = KVI_VALUE_INIT;
    ASSERT_KVI(k, kvi_fetch(k, "memcached", key, sizeof key, &out), KVI_OK);
    assert_int_equal(out.len, mib);
    assert_memory_equal(out.data, big, mib);
    kvi_value_free(&out);

    /* Over the server's -I 2m limit: INVALID with a hint, nothing written. */
    ASSERT_KVI(k, kvi_store(k, "memcached", "too-big", 7, big, 3 * mib, 0), KVI_E_INVALID);
    assert_non_null(strstr(kvi_errmsg(k), "-I"));
    ASSERT_KVI(k, kvi_fetch(k, "memcached", "too-big", 7, &out), KVI_NOT_FOUND);
    free(big);
    kvi_free(k);
}

/* ---- expiry and counters ---------------------------------------------------- */

static void test_counter_update_keeps_fixed_window_expiry(void **state)
{
    (void)state;
    kvi *k = ctx_for(pool_url);
    const char *key = "window";
    int64_t v = 0, ttl = 0;
    kvi_remove(k, "memcached", key, strlen(key));
    double t0 = now_s();
    ASSERT_KVI(k, kvi_add(k, "memcached", key, strlen(key), 5, 3, &v), KVI_OK);
    assert_int_equal(v, 5);
    sleep_ms(1100);
    /* A later add with another expiry neither extends nor clears it. */
    ASSERT_KVI(k, kvi_sub(k, "memcached", key, strlen(key), 8, 100, &v), KVI_OK);
    assert_int_equal(v, -3);
    ASSERT_KVI(k, kvi_add(k, "memcached", key, strlen(key), 1, 0, &v), KVI_OK);
    assert_int_equal(v, -2);
    ASSERT_KVI(k, kvi_ttl(k, "memcached", key, strlen(key), &ttl), KVI_OK);
    assert_true(ttl >= 1 && ttl <= 2);
    /* Gone once its 3 s have passed (kvi rounds the expiry up to a whole
     * second: at most 4 s). */
    double left = 4.1 - (now_s() - t0);
    if (left > 0)
        sleep_ms((unsigned)(left * 1000));
    ASSERT_KVI(k, kvi_counter_fetch(k, "memcached", key, strlen(key), &v), KVI_NOT_FOUND);
    /* A new window starts with the expiry of the add that creates it. */
    ASSERT_KVI(k, kvi_add(k, "memcached", key, strlen(key), 4, 0, &v), KVI_OK);
    assert_int_equal(v, 4);
    ASSERT_KVI(k, kvi_ttl(k, "memcached", key, strlen(key), &ttl), KVI_OK);
    assert_int_equal(ttl, -1);
    kvi_free(k);
}

static void test_counter_goes_below_zero_where_memcached_decr_stops(void **state)
{
    (void)state;
    kvi *k = ctx_for(pool_url);
    memcached_st *raw = raw_client(pool, NPOOL);
    /* memcached's own decr clamps at 0 ... */
    uint64_t native = 99;
    memcached_set(raw, "native", 6, "3", 1, 0, 0);
    assert_int_equal(memcached_decrement(raw, "native", 6, 10, &native), MEMCACHED_SUCCESS);
    assert_int_equal(native, 0);
    /* ... kvi's counters do not. */
    int64_t v = 0;
    kvi_remove(k, "memcached", "signed", 6);
    ASSERT_KVI(k, kvi_sub(k, "memcached", "signed", 6, 10, 0, &v), KVI_OK);
    assert_int_equal(v, -10);
    ASSERT_KVI(k, kvi_add(k, "memcached", "signed", 6, INT64_MIN + 10, 0, &v), KVI_OK);
    assert_int_equal(v, INT64_MIN);
    ASSERT_KVI(k, kvi_sub(k, "memcached", "signed", 6, 1, 0, &v), KVI_E_OVERFLOW);
    /* Other clients read the decimal text. */
    size_t len;
    uint32_t flags;
    char *text = raw_get(raw, "signed", &len, &flags);
    assert_non_null(text);
    assert_int_equal(len, 20);
    assert_memory_equal(text, "-9223372036854775808", 20);
    free(text);
    memcached_free(raw);
    kvi_free(k);
}

static void test_lifetimes_beyond_30_days_are_kept(void **state)
{
    (void)state;
    kvi *k = ctx_for(pool_url);
    int64_t days40 = 40 * 86400, ttl = 0;
    kvi_value out = KVI_VALUE_INIT;
    /* Memcached reads exptime > 30 days as an absolute time: the engine
     * must send one, or the item would be gone at once. */
    ASSERT_KVI(k, kvi_store(k, "memcached", "long", 4, "x", 1, days40), KVI_OK);
    ASSERT_KVI(k, kvi_fetch(k, "memcached", "long", 4, &out), KVI_OK);
    kvi_value_free(&out);
    ASSERT_KVI(k, kvi_ttl(k, "memcached", "long", 4, &ttl), KVI_OK);
    assert_true(ttl >= days40 - 2 && ttl <= days40);
    /* Past 2038 the server cannot hold the time; kvi keeps it. */
    ASSERT_KVI(k, kvi_store(k, "memcached", "longest", 7, "y", 1, INT32_MAX), KVI_OK);
    ASSERT_KVI(k, kvi_fetch(k, "memcached", "longest", 7, &out), KVI_OK);
    kvi_value_free(&out);
    ASSERT_KVI(k, kvi_ttl(k, "memcached", "longest", 7, &ttl), KVI_OK);
    assert_true(ttl > (int64_t)INT32_MAX - 5);
    /* Storing with 0 clears it. */
    ASSERT_KVI(k, kvi_store(k, "memcached", "long", 4, "x", 1, 0), KVI_OK);
    ASSERT_KVI(k, kvi_ttl(k, "memcached", "long", 4, &ttl), KVI_OK);
    assert_int_equal(ttl, -1);
    kvi_free(k);
}

/* ---- concurrency ----------------------------------------------------------- */

#define NTHREADS 8
#define THREAD_OPS 300

struct thread_arg {
    kvi_conn *c;
    unsigned seed;
    int64_t sum[2];
    int errors;
};

static const char *const race_keys[2] = {"thread-race", "thread race (mapped)"};

static void *thread_adder(void *p)
{
    struct thread_arg *a = p;
    for (int i = 0; i < THREAD_OPS; i++) {
        int64_t d = (int64_t)(rand_r(&a->seed) % 2001) - 1000;
        int which = i & 1;
        int64_t v;
        if (kvi_conn_add(a->c, race_keys[which], strlen(race_keys[which]), d, 0, &v) != KVI_OK)
            a->errors++;
        else
            a->sum[which] += d;
    }
    return NULL;
}

static void test_threads_share_one_connection_with_exact_sums(void **state)
{
    (void)state;
    kvi *k = ctx_for(pool_url);
    kvi_conn *c;
    assert_int_equal(kvi_conn_get(k, "memcached", &c), KVI_OK);
    for (int i = 0; i < 2; i++)
        kvi_remove(k, "memcached", race_keys[i], strlen(race_keys[i]));
    pthread_t t[NTHREADS];
    struct thread_arg args[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        memset(&args[i], 0, sizeof args[i]);
        args[i].c = c;
        args[i].seed = (unsigned)i * 7919u + 1u;
        assert_int_equal(pthread_create(&t[i], NULL, thread_adder, &args[i]), 0);
    }
    int64_t expect[2] = {0, 0};
    /* Every thread joined before any assertion (a failed one must not leave
     * threads running on this frame). */
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < NTHREADS; i++) {
        assert_int_equal(args[i].errors, 0);
        expect[0] += args[i].sum[0];
        expect[1] += args[i].sum[1];
    }
    for (int i = 0; i < 2; i++) {
        int64_t v;
        ASSERT_KVI(k, kvi_counter_fetch(k, "memcached", race_keys[i], strlen(race_keys[i]), &v),
                   KVI_OK);
        assert_int_equal(v, expect[i]);
    }
    kvi_free(k);
}

/* ---- bounded counters and store-if-absent (CAS) ----------------------------- */

#define BOUNDED_START 120
#define BOUNDED_OPS 40

struct bounded_arg {
    kvi_conn *c;
    const char *key;
    int ok, refused, errors, bad_refusal;
};

static void *thread_bounded_sub(void *p)
{
    struct bounded_arg *a = p;
    for (int i = 0; i < BOUNDED_OPS; i++) {
        int64_t v = -7;
        kvi_status st = kvi_conn_sub_bounded(a->c, a->key, strlen(a->key), 1, 0, 0, 1000, &v);
        if (st == KVI_OK)
            a->ok++;
        else if (st == KVI_OUT_OF_BOUNDS) {
            a->refused++;
            if (v != 0) /* refused only at the floor, which it reports */
                a->bad_refusal++;
        } else
            a->errors++;
    }
    return NULL;
}

static void test_bounded_sub_races_never_pass_the_floor(void **state)
{
    (void)state;
    kvi *k = ctx_for(pool_url);
    kvi_conn *c;
    assert_int_equal(kvi_conn_get(k, "memcached", &c), KVI_OK);
    const char *keys[2] = {"credit", "credit of \xc3\xa9ric"}; /* plain and mapped */
    for (int kk = 0; kk < 2; kk++) {
        char start[8];
        snprintf(start, sizeof start, "%d", BOUNDED_START);
        ASSERT_KVI(k,
                   kvi_store(k, "memcached", keys[kk], strlen(keys[kk]), start, strlen(start), 0),
                   KVI_OK);
        pthread_t t[NTHREADS];
        struct bounded_arg args[NTHREADS];
        for (int i = 0; i < NTHREADS; i++) {
            memset(&args[i], 0, sizeof args[i]);
            args[i].c = c;
            args[i].key = keys[kk];
            assert_int_equal(pthread_create(&t[i], NULL, thread_bounded_sub, &args[i]), 0);
        }
        int ok = 0, refused = 0;
        /* Every thread joined before any assertion (a failed one must not leave
         * threads running on this frame). */
        for (int i = 0; i < NTHREADS; i++)
            pthread_join(t[i], NULL);
        for (int i = 0; i < NTHREADS; i++) {
            assert_int_equal(args[i].errors, 0);
            assert_int_equal(args[i].bad_refusal, 0);
            ok += args[i].ok;
            refused += args[i].refused;
        }
        /* Exactly as many debits as the credit allowed. */
        assert_int_equal(ok, BOUNDED_START);
        assert_int_equal(refused, NTHREADS * BOUNDED_OPS - BOUNDED_START);
        int64_t v = -1;
        ASSERT_KVI(k, kvi_counter_fetch(k, "memcached", keys[kk], strlen(keys[kk]), &v), KVI_OK);
        assert_int_equal(v, 0);
    }
    kvi_free(k);
}

static void test_bounded_add_creates_with_expiry_and_refuses_with_current_value(void **state)
{
    (void)state;
    kvi *k = ctx_for(pool_url);
    const char *key = "bounded-new";
    int64_t v = -1, ttl = 0;
    kvi_remove(k, "memcached", key, strlen(key));
    /* Missing: 0 + delta outside the bounds is refused and reports 0. */
    ASSERT_KVI(k, kvi_add_bounded(k, "memcached", key, strlen(key), 11, 60, 0, 10, &v),
               KVI_OUT_OF_BOUNDS);
    assert_int_equal(v, 0);
    ASSERT_KVI(k, kvi_counter_fetch(k, "memcached", key, strlen(key), &v), KVI_NOT_FOUND);
    /* Within: created with the expiry. */
    ASSERT_KVI(k, kvi_add_bounded(k, "memcached", key, strlen(key), 7, 60, 0, 10, &v), KVI_OK);
    assert_int_equal(v, 7);
    ASSERT_KVI(k, kvi_ttl(k, "memcached", key, strlen(key), &ttl), KVI_OK);
    assert_true(ttl >= 58 && ttl <= 60);
    /* Refused: nothing changes, the current value comes back. */
    v = -1;
    ASSERT_KVI(k, kvi_add_bounded(k, "memcached", key, strlen(key), 4, 0, 0, 10, &v),
               KVI_OUT_OF_BOUNDS);
    assert_int_equal(v, 7);
    ASSERT_KVI(k, kvi_sub_bounded(k, "memcached", key, strlen(key), 7, 0, 0, 10, &v), KVI_OK);
    assert_int_equal(v, 0);
    ASSERT_KVI(k, kvi_ttl(k, "memcached", key, strlen(key), &ttl), KVI_OK);
    assert_true(ttl >= 58 && ttl <= 60); /* the window was kept */
    /* Overflow and non-integers keep their own statuses. */
    ASSERT_KVI(k, kvi_store(k, "memcached", key, strlen(key), "9223372036854775807", 19, 0),
               KVI_OK);
    ASSERT_KVI(k, kvi_add_bounded(k, "memcached", key, strlen(key), 1, 0, INT64_MIN, INT64_MAX, &v),
               KVI_E_OVERFLOW);
    ASSERT_KVI(k, kvi_store(k, "memcached", key, strlen(key), "x", 1, 0), KVI_OK);
    ASSERT_KVI(k, kvi_add_bounded(k, "memcached", key, strlen(key), 1, 0, 0, 10, &v),
               KVI_E_NOT_A_COUNTER);
    kvi_free(k);
}

struct nx_arg {
    kvi_conn *c;
    const char *key;
    char val[16];
    kvi_status st;
};

static void *thread_store_nx(void *p)
{
    struct nx_arg *a = p;
    a->st = kvi_conn_store_nx(a->c, a->key, strlen(a->key), a->val, strlen(a->val), 30);
    return NULL;
}

static void test_store_nx_one_racer_wins_and_expired_counts_as_absent(void **state)
{
    (void)state;
    kvi *k = ctx_for(pool_url);
    kvi_conn *c;
    assert_int_equal(kvi_conn_get(k, "memcached", &c), KVI_OK);
    const char *keys[2] = {"lock", "lock of a mapped key"};
    for (int kk = 0; kk < 2; kk++) {
        kvi_remove(k, "memcached", keys[kk], strlen(keys[kk]));
        for (int round = 0; round < 5; round++) {
            pthread_t t[NTHREADS];
            struct nx_arg args[NTHREADS];
            for (int i = 0; i < NTHREADS; i++) {
                args[i].c = c;
                args[i].key = keys[kk];
                snprintf(args[i].val, sizeof args[i].val, "owner-%d", i);
                assert_int_equal(pthread_create(&t[i], NULL, thread_store_nx, &args[i]), 0);
            }
            int wins = 0, winner = -1;
            /* Every thread joined before any assertion (a failed one must not leave
             * threads running on this frame). */
            for (int i = 0; i < NTHREADS; i++)
                pthread_join(t[i], NULL);
            for (int i = 0; i < NTHREADS; i++) {
                if (args[i].st == KVI_OK) {
                    wins++;
                    winner = i;
                } else if (args[i].st != KVI_KEY_EXISTS) {
                    fail_msg("store_nx: %s", kvi_status_name(args[i].st));
                }
            }
            assert_int_equal(wins, 1);
            kvi_value v = KVI_VALUE_INIT;
            ASSERT_KVI(k, kvi_fetch(k, "memcached", keys[kk], strlen(keys[kk]), &v), KVI_OK);
            assert_string_equal(v.data, args[winner].val);
            kvi_value_free(&v);
            ASSERT_KVI(k, kvi_remove(k, "memcached", keys[kk], strlen(keys[kk])), KVI_OK);
        }
    }
    /* An item past its kvi expiry that the server still holds is absent:
     * written by a raw client with a stamp 5 s in the past, no exptime. */
    memcached_st *raw = raw_client(pool, NPOOL);
    uint32_t past = (uint32_t)(time(NULL) - 5);
    assert_int_equal(memcached_set(raw, "nx-expired", 10, "old", 3, 0, past), MEMCACHED_SUCCESS);
    ASSERT_KVI(k, kvi_store_nx(k, "memcached", "nx-expired", 10, "new", 3, 0), KVI_OK);
    kvi_value v = KVI_VALUE_INIT;
    ASSERT_KVI(k, kvi_fetch(k, "memcached", "nx-expired", 10, &v), KVI_OK);
    assert_string_equal(v.data, "new");
    kvi_value_free(&v);
    ASSERT_KVI(k, kvi_store_nx(k, "memcached", "nx-expired", 10, "newer", 5, 0), KVI_KEY_EXISTS);
    memcached_free(raw);
    kvi_free(k);
}

#define NPROCS 6
#define PROC_OPS 250
#define NRACE 3

static const char *const proc_keys[NRACE] = {"proc-race", "proc race \xff mapped", "proc-race-ttl"};

/* Child body: adds random deltas through the context inherited from the
 * parent (so the engine must notice the fork) and writes its sums. */
static int child_adder(kvi *k, unsigned seed, int fd)
{
    int64_t sum[NRACE] = {0, 0, 0};
    for (int i = 0; i < PROC_OPS; i++) {
        int which = (int)(rand_r(&seed) % NRACE);
        int64_t d = (int64_t)(rand_r(&seed) % 20001) - 10000;
        int64_t v;
        kvi_status st = kvi_add(k, "memcached", proc_keys[which], strlen(proc_keys[which]), d,
                                which == 2 ? 60 : 0, &v);
        if (st != KVI_OK) {
            fprintf(stderr, "child add: %s %s\n", kvi_status_name(st), kvi_errmsg(k));
            return 1;
        }
        sum[which] += d;
    }
    return write(fd, sum, sizeof sum) == (ssize_t)sizeof sum ? 0 : 1;
}

static void test_processes_race_creating_and_adding_same_counters(void **state)
{
    (void)state;
    kvi *k = ctx_for(pool_url);
    for (int i = 0; i < NRACE; i++)
        kvi_remove(k, "memcached", proc_keys[i], strlen(proc_keys[i]));
    /* The parent has live connections before it forks. */
    ASSERT_KVI(k, kvi_ping(k, "memcached"), KVI_OK);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pids[NPROCS];
    for (int p = 0; p < NPROCS; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            close(fds[0]);
            _exit(child_adder(k, (unsigned)p * 104729u + 3u, fds[1]));
        }
    }
    close(fds[1]);
    int64_t expect[NRACE] = {0, 0, 0};
    for (int p = 0; p < NPROCS; p++) {
        int status = 0;
        assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    int64_t sum[NRACE];
    int got = 0;
    while (read(fds[0], sum, sizeof sum) == (ssize_t)sizeof sum) {
        for (int i = 0; i < NRACE; i++)
            expect[i] += sum[i];
        got++;
    }
    close(fds[0]);
    assert_int_equal(got, NPROCS);
    for (int i = 0; i < NRACE; i++) {
        int64_t v;
        ASSERT_KVI(k, kvi_counter_fetch(k, "memcached", proc_keys[i], strlen(proc_keys[i]), &v),
                   KVI_OK);
        assert_int_equal(v, expect[i]);
    }
    /* The key created with a lifetime got it exactly once, at creation. */
    int64_t ttl;
    ASSERT_KVI(k, kvi_ttl(k, "memcached", proc_keys[2], strlen(proc_keys[2]), &ttl), KVI_OK);
    assert_true(ttl > 50 && ttl <= 60);
    ASSERT_KVI(k, kvi_ttl(k, "memcached", proc_keys[0], strlen(proc_keys[0]), &ttl), KVI_OK);
    assert_int_equal(ttl, -1);
    /* The parent's own connections still work. */
    ASSERT_KVI(k, kvi_ping(k, "memcached"), KVI_OK);
    kvi_free(k);
}

/* Parent and child hammer distinct keys at the same time: if the child
 * used the parent's sockets, replies would cross and values mismatch. */
static int store_fetch_loop(kvi *k, const char *who, int n)
{
    int bad = 0;
    for (int i = 0; i < n; i++) {
        char key[32], val[48];
        int kn = snprintf(key, sizeof key, "%s:%d", who, i % 17);
        int vn = snprintf(val, sizeof val, "%s-value-%d", who, i);
        kvi_value out = KVI_VALUE_INIT;
        if (kvi_store(k, "memcached", key, (size_t)kn, val, (size_t)vn, 0) != KVI_OK ||
            kvi_fetch(k, "memcached", key, (size_t)kn, &out) != KVI_OK || out.len != (size_t)vn ||
            memcmp(out.data, val, out.len) != 0)
            bad++;
        kvi_value_free(&out);
    }
    return bad;
}

static void test_forked_child_uses_its_own_connections(void **state)
{
    (void)state;
    kvi *k = ctx_for(pool_url);
    assert_int_equal(store_fetch_loop(k, "parent", 50), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(store_fetch_loop(k, "child", 2000) == 0 ? 0 : 1);
    int bad = store_fetch_loop(k, "parent", 2000);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(bad, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    kvi_free(k);
}

/* ---- failures ---------------------------------------------------------------- */

static void assert_fails_fast(kvi *k, double limit_s)
{
    double t0 = now_s();
    kvi_status st = kvi_store(k, "memcached", "down", 4, "v", 1, 0);
    double took = now_s() - t0;
    if (st != KVI_E_CONNECT && st != KVI_E_TIMEOUT)
        fail_msg("store with the server down: %s (%s)", kvi_status_name(st), kvi_errmsg(k));
    assert_true(took < limit_s);
    kvi_value out = KVI_VALUE_INIT;
    st = kvi_fetch(k, "memcached", "down", 4, &out);
    assert_true(st == KVI_E_CONNECT || st == KVI_E_TIMEOUT);
    assert_null(out.data);
}

static void test_server_killed_calls_fail_then_recover_by_themselves(void **state)
{
    (void)state;
    kvi_ts_server *s = start_memcached(NULL);
    char url[128];
    /* down_after=0: libmemcached's own recovery, without the breaker's
     * rest (tested above). */
    snprintf(url, sizeof url,
             "memcached://127.0.0.1:%u/?timeout=500&connect_timeout=500&down_after=0",
             kvi_ts_port(s));
    kvi *k = ctx_for(url);
    ASSERT_KVI(k, kvi_store(k, "memcached", "down", 4, "v", 1, 0), KVI_OK);
    assert_int_equal(kvi_ts_kill(s), KVI_TS_OK);
    for (int i = 0; i < 3; i++)
        assert_fails_fast(k, 1.5);
    assert_int_equal(kvi_ts_restart(s), KVI_TS_OK);
    /* The very next call works; the data is gone (memcached keeps none). */
    kvi_value out = KVI_VALUE_INIT;
    ASSERT_KVI(k, kvi_fetch(k, "memcached", "down", 4, &out), KVI_NOT_FOUND);
    ASSERT_KVI(k, kvi_store(k, "memcached", "down", 4, "v2", 2, 0), KVI_OK);
    ASSERT_KVI(k, kvi_ping(k, "memcached"), KVI_OK);
    kvi_free(k);
    kvi_ts_free(s);
}

struct barrier_arg {
    kvi *k;
    pthread_barrier_t *barrier;
    kvi_status st;
};

static void *barrier_store(void *p)
{
    struct barrier_arg *a = p;
    pthread_barrier_wait(a->barrier);
    a->st = kvi_store(a->k, "memcached", "stale", 5, "v", 1, 0);
    return NULL;
}

/* Stores from 4 threads at once, so the engine holds 4 pooled handles. */
static void parallel_stores(kvi *k, kvi_status expect)
{
    enum { N = 4 };
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, N);
    pthread_t t[N];
    struct barrier_arg a[N];
    for (int i = 0; i < N; i++) {
        a[i].k = k;
        a[i].barrier = &barrier;
        assert_int_equal(pthread_create(&t[i], NULL, barrier_store, &a[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&barrier);
    for (int i = 0; i < N; i++)
        if (a[i].st != expect)
            fail_msg("thread %d: %s, want %s", i, kvi_status_name(a[i].st),
                     kvi_status_name(expect));
}

static void test_restart_between_calls_does_not_fail_pooled_handles(void **state)
{
    (void)state;
    kvi_ts_server *s = start_memcached(NULL);
    char url[128];
    snprintf(url, sizeof url, "memcached://127.0.0.1:%u/?timeout=500", kvi_ts_port(s));
    kvi *k = ctx_for(url);
    parallel_stores(k, KVI_OK);
    /* The server restarts while no call is made: every pooled handle holds
     * a dead socket, and still no call fails. */
    assert_int_equal(kvi_ts_restart(s), KVI_TS_OK);
    parallel_stores(k, KVI_OK);
    int64_t v;
    ASSERT_KVI(k, kvi_add(k, "memcached", "after", 5, 2, 0, &v), KVI_OK);
    kvi_free(k);
    kvi_ts_free(s);
}

static void test_hung_server_times_out_within_timeout(void **state)
{
    (void)state;
    kvi_ts_server *s = start_memcached(NULL);
    char url[128];
    snprintf(url, sizeof url, "memcached://127.0.0.1:%u/?timeout=300", kvi_ts_port(s));
    kvi *k = ctx_for(url);
    ASSERT_KVI(k, kvi_store(k, "memcached", "hung", 4, "v", 1, 0), KVI_OK);
    kvi_test_hang(s);
    double t0 = now_s();
    kvi_value out = KVI_VALUE_INIT;
    ASSERT_KVI(k, kvi_fetch(k, "memcached", "hung", 4, &out), KVI_E_TIMEOUT);
    double took = now_s() - t0;
    assert_true(took >= 0.25 && took < 1.5);
    kvi_test_unhang(s);
    ASSERT_KVI(k, kvi_fetch(k, "memcached", "hung", 4, &out), KVI_OK);
    kvi_value_free(&out);
    kvi_free(k);
    kvi_ts_free(s);
}

/* ---- circuit breaker (per server of the pool) ------------------------------- */

#define BRK_THREADS 4
#define BRK_CALLS 500
#define BRK_TIMEOUT_MS 200
#define BRK_DOWN_FOR_MS 1000

static void test_breaker_stopped_server_costs_a_few_timeouts_not_one_per_call(void **state)
{
    (void)state;
    kvi_ts_server *s = start_memcached(NULL);
    char url[200];
    snprintf(url, sizeof url,
             "memcached://127.0.0.1:%u/?timeout=%d&connect_timeout=%d&down_after=3&down_for=%d",
             kvi_ts_port(s), BRK_TIMEOUT_MS, BRK_TIMEOUT_MS, BRK_DOWN_FOR_MS);
    kvi *k = ctx_for(url);
    ASSERT_KVI(k, kvi_store(k, "memcached", "brk", 3, "v", 1, 0), KVI_OK);
    kvi_test_hang(s);
    /* Without the breaker: 2000 x 200 ms / 4 threads = 100 s.  With it: the
     * first timeouts plus at most one probe per down_for.  The storm stops
     * at that budget, so a breaker that never marks down fails here in
     * seconds (r.calls short), not after 100 s. */
    kvi_test_storm r;
    kvi_test_fetch_storm(k, "memcached", "brk", BRK_THREADS, BRK_CALLS,
                         20 * BRK_TIMEOUT_MS + 4 * BRK_DOWN_FOR_MS, &r);
    fprintf(stderr,
            "breaker: %d of %d calls in %lld ms against a stopped memcached (timeout %d ms): "
            "%d failed, %d of them at once as marked down\n",
            r.calls, BRK_THREADS * BRK_CALLS, (long long)r.elapsed_ms, BRK_TIMEOUT_MS, r.failed,
            r.marked_down);
    kvi_test_unhang(s);
    assert_int_equal(r.calls, BRK_THREADS * BRK_CALLS);
    assert_int_equal(r.other, 0);
    assert_int_equal(r.failed, BRK_THREADS * BRK_CALLS);
    assert_true(r.marked_down >= BRK_THREADS * BRK_CALLS - 50);

    /* Back: within down_for (and one probe) calls succeed again, and from
     * the first success on every call does. */
    kvi_status st = KVI_E_TIMEOUT;
    int64_t t0 = kvi_test_mono_ms();
    while (st != KVI_OK && kvi_test_mono_ms() - t0 < 10 * BRK_DOWN_FOR_MS) {
        kvi_value v = KVI_VALUE_INIT;
        st = kvi_fetch(k, "memcached", "brk", 3, &v);
        kvi_value_free(&v);
        if (st != KVI_OK)
            sleep_ms(10);
    }
    assert_int_equal(st, KVI_OK);
    /* At most one down_for and a probe (bound loose for a loaded machine). */
    assert_true(kvi_test_mono_ms() - t0 < 3 * BRK_DOWN_FOR_MS + 10 * BRK_TIMEOUT_MS);
    for (int i = 0; i < 100; i++)
        ASSERT_KVI(k, kvi_store(k, "memcached", "brk", 3, "w", 1, 0), KVI_OK);
    kvi_free(k);
    kvi_ts_free(s);
}

/* In a pool, a stopped member's breaker fails only its keys at once; the
 * other members' keys keep working; down_after=0 turns the breaker off. */
static void test_breaker_is_per_pool_member_and_off_with_down_after_0(void **state)
{
    (void)state;
    kvi_ts_server *a = start_memcached(NULL), *b = start_memcached(NULL);
    char url[300];
    snprintf(url, sizeof url,
             "memcached://127.0.0.1:%u,127.0.0.1:%u/?timeout=150&down_after=1&down_for=60000",
             kvi_ts_port(a), kvi_ts_port(b));
    kvi *k = ctx_for(url);
    snprintf(url, sizeof url, "memcached:off://127.0.0.1:%u/?timeout=150&down_after=0",
             kvi_ts_port(b));
    ASSERT_KVI(k, kvi_add_url(k, url), KVI_OK);
    /* Keys on each member, found by where a raw ketama client puts them. */
    memcached_st *raw = raw_client((kvi_ts_server *const[]){a, b}, 2);
    char on_b[16] = "", on_a[16] = "";
    for (int i = 0; i < 200 && (!on_a[0] || !on_b[0]); i++) {
        char key[16];
        snprintf(key, sizeof key, "brkpool%d", i);
        uint32_t srv = memcached_generate_hash(raw, key, strlen(key));
        strcpy(srv == 1 ? on_b : on_a, key);
    }
    memcached_free(raw);
    assert_true(on_a[0] && on_b[0]);
    ASSERT_KVI(k, kvi_store(k, "memcached", on_a, strlen(on_a), "a", 1, 0), KVI_OK);
    ASSERT_KVI(k, kvi_store(k, "memcached", on_b, strlen(on_b), "b", 1, 0), KVI_OK);
    kvi_test_hang(b);
    kvi_value v = KVI_VALUE_INIT;
    ASSERT_KVI(k, kvi_fetch(k, "memcached", on_b, strlen(on_b), &v), KVI_E_TIMEOUT);
    int64_t t0 = kvi_test_mono_ms();
    for (int i = 0; i < 20; i++) {
        ASSERT_KVI(k, kvi_fetch(k, "memcached", on_b, strlen(on_b), &v), KVI_E_TIMEOUT);
        assert_non_null(strstr(kvi_errmsg(k), "marked down"));
        ASSERT_KVI(k, kvi_fetch(k, "memcached", on_a, strlen(on_a), &v), KVI_OK);
        kvi_value_free(&v);
    }
    assert_true(kvi_test_mono_ms() - t0 < 2000); /* 20 x 150 ms without the breaker */
    /* down_after=0: every call waits for its timeout, never "marked down". */
    for (int i = 0; i < 3; i++) {
        t0 = kvi_test_mono_ms();
        ASSERT_KVI(k, kvi_fetch(k, "memcached:off", on_b, strlen(on_b), &v), KVI_E_TIMEOUT);
        assert_true(kvi_test_mono_ms() - t0 >= 100);
        assert_null(strstr(kvi_errmsg(k), "marked down"));
    }
    kvi_test_unhang(b);
    kvi_free(k);
    kvi_ts_free(a);
    kvi_ts_free(b);
}

static void test_pool_member_down_only_its_keys_fail(void **state)
{
    (void)state;
    kvi_ts_server *s[NPOOL];
    char url[256];
    int n = snprintf(url, sizeof url, "memcached://");
    for (int i = 0; i < NPOOL; i++) {
        s[i] = start_memcached(NULL);
        n += snprintf(url + n, sizeof url - (size_t)n, "%s127.0.0.1:%u", i ? "," : "",
                      kvi_ts_port(s[i]));
    }
    snprintf(url + n, sizeof url - (size_t)n, "/?timeout=500&down_after=0");
    kvi *k = ctx_for(url);
    assert_int_equal(kvi_ts_kill(s[1]), KVI_TS_OK);
    int ok = 0, down = 0;
    for (int i = 0; i < 60; i++) {
        char key[16];
        int kn = snprintf(key, sizeof key, "m%d", i);
        kvi_status st = kvi_store(k, "memcached", key, (size_t)kn, "v", 1, 0);
        if (st == KVI_OK)
            ok++;
        else if (st == KVI_E_CONNECT)
            down++;
        else
            fail_msg("store: %s (%s)", kvi_status_name(st), kvi_errmsg(k));
    }
    /* No ejection: the dead server's keys fail instead of moving. */
    assert_true(ok > 0 && down > 0);
    ASSERT_KVI(k, kvi_ping(k, "memcached"), KVI_E_CONNECT);
    assert_int_equal(kvi_ts_restart(s[1]), KVI_TS_OK);
    for (int i = 0; i < 60; i++) {
        char key[16];
        int kn = snprintf(key, sizeof key, "m%d", i);
        ASSERT_KVI(k, kvi_store(k, "memcached", key, (size_t)kn, "v", 1, 0), KVI_OK);
    }
    ASSERT_KVI(k, kvi_ping(k, "memcached"), KVI_OK);
    kvi_free(k);
    for (int i = 0; i < NPOOL; i++)
        kvi_ts_free(s[i]);
}

static void test_open_fails_only_when_no_server_answers(void **state)
{
    (void)state;
    uint16_t dead1, dead2;
    assert_int_equal(kvi_ts_free_port(&dead1), KVI_TS_OK);
    assert_int_equal(kvi_ts_free_port(&dead2), KVI_TS_OK);
    char url[256];
    kvi *k;
    assert_int_equal(kvi_new(&k), KVI_OK);
    snprintf(url, sizeof url, "memcached://127.0.0.1:%u/", dead1);
    assert_int_equal(kvi_add_url(k, url), KVI_E_CONNECT);
    /* lazy: defined now, fails on use */
    snprintf(url, sizeof url, "memcached:lazy://127.0.0.1:%u/?lazy=yes", dead1);
    assert_int_equal(kvi_add_url(k, url), KVI_OK);
    assert_int_equal(kvi_ping(k, "memcached:lazy"), KVI_E_CONNECT);
    /* One live server out of three is enough to start. */
    snprintf(url, sizeof url, "memcached:part://127.0.0.1:%u,%s/", dead2,
             strchr(pool_url, '/') + 2);
    *strrchr(url, '?') = '\0';
    assert_int_equal(kvi_add_url(k, url), KVI_OK);
    kvi_free(k);
}

static void test_bad_urls_are_rejected_clearly(void **state)
{
    (void)state;
    kvi *k;
    assert_int_equal(kvi_new(&k), KVI_OK);
    assert_int_equal(kvi_add_url(k, "memcached://127.0.0.1:1/0"), KVI_E_BAD_URL);
    assert_non_null(strstr(kvi_errmsg(k), "databases"));
    assert_int_equal(kvi_add_url(k, "memcached://alice@127.0.0.1:1/"), KVI_E_INVALID);
    assert_non_null(strstr(kvi_errmsg(k), "SASL"));
    assert_int_equal(kvi_add_url(k, "memcached://:pw@127.0.0.1:1/"), KVI_E_INVALID);
    assert_int_equal(kvi_add_url(k, "memcached://127.0.0.1:1/?retry_timeout=soon"), KVI_E_INVALID);
    assert_non_null(strstr(kvi_errmsg(k), "retry_timeout"));
    assert_int_equal(kvi_add_url(k, "memcached://127.0.0.1:1/?retry_timeout=3601"), KVI_E_INVALID);
    assert_int_equal(kvi_add_url(k, "memcached://127.0.0.1:1/?bogus=1"), KVI_E_INVALID);
    /* Nothing was defined by the failed calls. */
    kvi_conn *c;
    assert_int_equal(kvi_conn_get(k, "memcached", &c), KVI_E_UNKNOWN_ENGINE);
    kvi_free(k);
}

static void test_capabilities_are_honest(void **state)
{
    (void)state;
    kvi *k = ctx_for(pool_url);
    kvi_conn *c;
    assert_int_equal(kvi_conn_get(k, "memcached", &c), KVI_OK);
    uint32_t caps = kvi_conn_caps(c);
    assert_true(caps & KVI_CAP_TTL);
    assert_true(caps & KVI_CAP_COUNTERS);
    assert_true(caps & KVI_CAP_NEG_COUNTERS);
    assert_true(caps & KVI_CAP_BINARY);
    assert_true(caps & KVI_CAP_SHARED);
    assert_false(caps & KVI_CAP_ITERATE);
    assert_false(caps & KVI_CAP_RAW_QUERY);
    assert_false(caps & KVI_CAP_PERSISTENT);
    kvi_reply *r = NULL;
    assert_int_equal(kvi_raw_query(k, "memcached", "stats", 5, &r), KVI_E_UNSUPPORTED);
    assert_null(r);
    assert_int_equal(kvi_keys(k, "memcached", "*", 1, &r), KVI_E_UNSUPPORTED);
    kvi_stats st;
    assert_int_equal(kvi_stats_get(k, "memcached", &st), KVI_OK);
    assert_true(st.has_content);
    assert_true(st.entries > 0);
    kvi_free(k);
}

/* ---- SASL -------------------------------------------------------------------- */

/* Runs saslpasswd2 to make a sasldb with user alice in dir; 0 when done. */
static int make_sasldb(const char *dir, const char *prog)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "echo 's3cret pass' | %s -a memcached -c -p -f %s/sasldb2 alice",
             prog, dir);
    if (system(cmd) != 0)
        return -1;
    char path[512];
    snprintf(path, sizeof path, "%s/memcached.conf", dir);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "mech_list: plain\nsasldb_path: %s/sasldb2\n", dir);
    return fclose(f);
}

/* Credentials for a server without SASL: an authentication error that
 * says so (libmemcached reports the refused handshake as a read failure),
 * at open and on the calls of a lazy id; the password never shows. */
static void test_credentials_for_a_server_without_sasl_say_authentication(void **state)
{
    (void)state;
    char url[256];
    kvi *k;
    assert_int_equal(kvi_new(&k), KVI_OK);
    snprintf(url, sizeof url, "memcached://alice:pw-no-sasl@127.0.0.1:%u/", kvi_ts_port(pool[0]));
    ASSERT_KVI(k, kvi_add_url(k, url), KVI_E_AUTH);
    fprintf(stderr, "credentials, no SASL: %s\n", kvi_errmsg(k));
    assert_non_null(strstr(kvi_errmsg(k), "authentication"));
    assert_null(strstr(kvi_errmsg(k), "pw-no-sasl"));
    snprintf(url, sizeof url, "memcached://alice:pw-no-sasl@127.0.0.1:%u/?lazy=yes",
             kvi_ts_port(pool[0]));
    ASSERT_KVI(k, kvi_add_url(k, url), KVI_OK);
    ASSERT_KVI(k, kvi_store(k, "memcached", "nosasl", 6, "x", 1, 0), KVI_E_AUTH);
    assert_non_null(strstr(kvi_errmsg(k), "authentication"));
    kvi_value out = KVI_VALUE_INIT;
    ASSERT_KVI(k, kvi_fetch(k, "memcached", "nosasl", 6, &out), KVI_E_AUTH);
    assert_null(strstr(kvi_errmsg(k), "pw-no-sasl"));
    /* The batch path's own connections say the same, nothing sent. */
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    assert_int_equal(kvi_batch_add(b, "memcached", "nosasl", 6, 1, 0), KVI_OK);
    (void)kvi_batch_run(b, 5000);
    fprintf(stderr, "credentials, no SASL, batch: %s\n", kvi_batch_errmsg(b, 0));
    assert_int_equal(kvi_batch_status(b, 0), KVI_E_AUTH);
    assert_non_null(strstr(kvi_batch_errmsg(b, 0), "SASL"));
    assert_null(strstr(kvi_batch_errmsg(b, 0), "pw-no-sasl"));
    kvi_batch_free(b);
    kvi_free(k);
}

/* Batches run on the engine's own connections (mc_pipe.c), which
 * authenticate themselves (SASL PLAIN) before any op leaves: blocking and
 * non-blocking, right credentials, a wrong password, none. */
static void sasl_batches(kvi *k)
{
    static const char *const ids[] = {"memcached", "memcached:badlazy", "memcached:anon"};
    for (int nb = 0; nb < 2; nb++)
        for (int i = 0; i < 3; i++) {
            kvi_batch *b = NULL;
            assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
            assert_int_equal(kvi_batch_fetch(b, ids[i], "sasl", 4), KVI_OK);
            assert_int_equal(kvi_batch_add(b, ids[i], "sasl-counter", 12, 1, 0), KVI_OK);
            if (nb) {
                kvi_wait w;
                int r = kvi_batch_start(b, 5000, NULL, NULL, &w);
                assert_int_equal(r, 0); /* pending: the connection is new */
                while (r == 0) {
                    struct pollfd p = {w.fd, (short)((w.events & KVI_WAIT_READ ? POLLIN : 0) |
                                                     (w.events & KVI_WAIT_WRITE ? POLLOUT : 0)),
                                       0};
                    assert_true(poll(&p, 1, 5000) >= 0);
                    r = kvi_batch_resume(b, &w);
                }
            } else {
                (void)kvi_batch_run(b, 5000);
            }
            fprintf(stderr, "%s batch on %s: %s %s (%s)\n", nb ? "non-blocking" : "blocking",
                    ids[i], kvi_status_name(kvi_batch_status(b, 0)),
                    kvi_status_name(kvi_batch_status(b, 1)), kvi_batch_errmsg(b, 1));
            if (i == 0) {
                assert_int_equal(kvi_batch_status(b, 0), KVI_OK);
                assert_string_equal(kvi_batch_value(b, 0, NULL), "ok");
                assert_int_equal(kvi_batch_status(b, 1), KVI_OK);
                assert_int_equal(kvi_batch_integer(b, 1), nb ? -1 : -2);
            } else {
                /* refused, nothing ran: not OUTCOME_UNKNOWN */
                assert_int_equal(kvi_batch_status(b, 0), KVI_E_AUTH);
                assert_int_equal(kvi_batch_status(b, 1), KVI_E_AUTH);
                assert_null(strstr(kvi_batch_errmsg(b, 0), "wrong-pw"));
                assert_null(strstr(kvi_batch_errmsg(b, 1), "wrong-pw"));
            }
            kvi_batch_free(b);
        }
}

static void test_sasl_authentication(void **state)
{
    (void)state;
    char *prog = kvi_ts_find_program("saslpasswd2");
    if (prog == NULL)
        prog = kvi_ts_find_program("/usr/sbin/saslpasswd2");
    if (prog == NULL) {
        KVI_TEST_SKIP_CASE("saslpasswd2 not found (Debian package sasl2-bin); SASL not tested");
    }
    char *dir = NULL;
    assert_int_equal(kvi_ts_make_tempdir("mc-sasl", &dir), KVI_TS_OK);
    assert_int_equal(make_sasldb(dir, prog), 0);
    free(prog);
    /* memcached's SASL library reads its config from SASL_CONF_PATH. */
    setenv("SASL_CONF_PATH", dir, 1);
    const char *extra[] = {"-S", NULL};
    kvi_ts_server *s = start_memcached(extra);
    unsetenv("SASL_CONF_PATH");

    char url[256];
    kvi *k;
    assert_int_equal(kvi_new(&k), KVI_OK);
    snprintf(url, sizeof url, "memcached://alice:s3cret%%20pass@127.0.0.1:%u/", kvi_ts_port(s));
    ASSERT_KVI(k, kvi_add_url(k, url), KVI_OK);
    ASSERT_KVI(k, kvi_store(k, "memcached", "sasl", 4, "ok", 2, 0), KVI_OK);
    int64_t v;
    ASSERT_KVI(k, kvi_add(k, "memcached", "sasl-counter", 12, -3, 0, &v), KVI_OK);

    snprintf(url, sizeof url, "memcached:bad://alice:wrong-pw@127.0.0.1:%u/", kvi_ts_port(s));
    ASSERT_KVI(k, kvi_add_url(k, url), KVI_E_AUTH);
    fprintf(stderr, "wrong password: %s\n", kvi_errmsg(k));
    assert_null(strstr(kvi_errmsg(k), "wrong-pw"));
    assert_non_null(strstr(kvi_errmsg(k), "authentication"));
    snprintf(url, sizeof url, "memcached:badlazy://alice:wrong-pw@127.0.0.1:%u/?lazy=yes",
             kvi_ts_port(s));
    ASSERT_KVI(k, kvi_add_url(k, url), KVI_OK);
    ASSERT_KVI(k, kvi_store(k, "memcached:badlazy", "sasl", 4, "x", 1, 0), KVI_E_AUTH);
    fprintf(stderr, "wrong password, lazy: %s\n", kvi_errmsg(k));
    assert_non_null(strstr(kvi_errmsg(k), "authentication"));
    assert_null(strstr(kvi_errmsg(k), "wrong-pw"));

    /* Without credentials: refused at open, and writes of a lazy id fail. */
    snprintf(url, sizeof url, "memcached:anon://127.0.0.1:%u/", kvi_ts_port(s));
    ASSERT_KVI(k, kvi_add_url(k, url), KVI_E_AUTH);
    assert_non_null(strstr(kvi_errmsg(k), "SASL"));
    snprintf(url, sizeof url, "memcached:anon://127.0.0.1:%u/?lazy=yes", kvi_ts_port(s));
    ASSERT_KVI(k, kvi_add_url(k, url), KVI_OK);
    ASSERT_KVI(k, kvi_store(k, "memcached:anon", "sasl", 4, "x", 1, 0), KVI_E_AUTH);
    ASSERT_KVI(k, kvi_add(k, "memcached:anon", "sasl-counter", 12, 1, 0, &v), KVI_E_AUTH);
    fprintf(stderr, "no credentials, lazy: %s\n", kvi_errmsg(k));
    assert_non_null(strstr(kvi_errmsg(k), "authentication"));
    /* The authenticated id still reads its value. */
    kvi_value out = KVI_VALUE_INIT;
    ASSERT_KVI(k, kvi_fetch(k, "memcached", "sasl", 4, &out), KVI_OK);
    assert_memory_equal(out.data, "ok", 2);
    kvi_value_free(&out);
    sasl_batches(k);
    kvi_free(k);
    kvi_ts_free(s);
    kvi_ts_remove_tree(dir);
    free(dir);
}

int main(void)
{
    /* No memcached: one loud skip for the program, not a failure per test. */
    kvi_test_need_program("memcached", "memcached");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_keys_spread_over_pool_and_readable_by_other_clients),
        cmocka_unit_test(test_mapped_key_is_stored_under_digest_with_envelope),
        cmocka_unit_test(test_digest_collision_never_returns_another_keys_value),
        cmocka_unit_test(test_value_of_1_mib_under_mapped_key_and_too_large_value),
        cmocka_unit_test(test_counter_update_keeps_fixed_window_expiry),
        cmocka_unit_test(test_counter_goes_below_zero_where_memcached_decr_stops),
        cmocka_unit_test(test_lifetimes_beyond_30_days_are_kept),
        cmocka_unit_test(test_threads_share_one_connection_with_exact_sums),
        cmocka_unit_test(test_bounded_sub_races_never_pass_the_floor),
        cmocka_unit_test(test_bounded_add_creates_with_expiry_and_refuses_with_current_value),
        cmocka_unit_test(test_store_nx_one_racer_wins_and_expired_counts_as_absent),
        cmocka_unit_test(test_processes_race_creating_and_adding_same_counters),
        cmocka_unit_test(test_forked_child_uses_its_own_connections),
        cmocka_unit_test(test_server_killed_calls_fail_then_recover_by_themselves),
        cmocka_unit_test(test_restart_between_calls_does_not_fail_pooled_handles),
        cmocka_unit_test(test_hung_server_times_out_within_timeout),
        cmocka_unit_test(test_breaker_stopped_server_costs_a_few_timeouts_not_one_per_call),
        cmocka_unit_test(test_breaker_is_per_pool_member_and_off_with_down_after_0),
        cmocka_unit_test(test_pool_member_down_only_its_keys_fail),
        cmocka_unit_test(test_open_fails_only_when_no_server_answers),
        cmocka_unit_test(test_bad_urls_are_rejected_clearly),
        cmocka_unit_test(test_capabilities_are_honest),
        cmocka_unit_test(test_credentials_for_a_server_without_sasl_say_authentication),
        cmocka_unit_test(test_sasl_authentication),
    };
    return cmocka_run_group_tests_name("mc_integration", tests, pool_setup, pool_teardown);
}
