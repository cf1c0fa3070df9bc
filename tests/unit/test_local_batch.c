/*
 * test_local_batch.c -- the local engine's fast path for runs of fetches
 * in a batch (kvi_batch_fetch's inline add, the one-id run, the tables'
 * fetch_ops with values copied straight into the batch's memory), on the
 * in-process table and on the shared one: every result is the single
 * call's, whatever the value's length, the key's shard, the run's length
 * (more than a chunk of 256), expired and missing keys, other kinds
 * interleaved on the same keys, several ids in one batch; the clock is
 * read once per run; a message of an earlier call does not survive an
 * add; nothing allocated is left behind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include "kvitest.h"

#include <sys/mman.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#include "engines/local/shm_internal.h" /* kvi__sh_elide: both paths */
#include "kvi/kvi.h"

/* The two tables: in-process, and a shared segment (per process). */
static char g_shm_url[256], g_shm_name[128];

static kvi *ctx(int shared)
{
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    if (shared && kvi_add_url(k, g_shm_url) != KVI_OK)
        fail_msg("%s: %s", g_shm_url, kvi_errmsg(k));
    return k;
}

/* A value of length len for key i: bytes that tell keys and offsets apart. */
static void value_of(int i, size_t len, char *out)
{
    for (size_t j = 0; j < len; j++)
        out[j] = (char)('a' + (i * 7 + (int)j) % 26);
}

/* Lengths that take every branch of the short copy and the sink: 0, 1..3,
 * 4..7, 8..16, longer, and some longer than a chunk of the batch's memory
 * (64 KiB) for the in-process table. */
static size_t len_of(int i, int shared)
{
    static const size_t lens[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 200, 1000};
    if (!shared && i % 97 == 5)
        return 70000 + (size_t)i;
    return lens[i % (int)(sizeof lens / sizeof lens[0])];
}

static void key_of(int i, char *key, size_t *klen)
{
    /* Key lengths 2..40: the copy's and the hash's branches too. */
    int n = snprintf(key, 64, "k%d", i);
    for (int pad = i % 30; pad > 0; pad--)
        key[n++] = '.';
    *klen = (size_t)n;
}

/* 1000 fetches in one run (chunks of 256, all 64 shards) of stored,
 * removed and never stored keys: each op has the single fetch's status and
 * value. */
static void run_matches_single_fetches(int shared)
{
    kvi *k = ctx(shared);
    enum { N = 1300 };
    char key[64], *val = malloc(80000), *got = NULL;
    assert_non_null(val);
    size_t klen;
    for (int i = 0; i < N; i++) {
        key_of(i, key, &klen);
        size_t len = len_of(i, shared);
        value_of(i, len, val);
        assert_int_equal(kvi_store(k, "local", key, klen, val, len, 0), KVI_OK);
    }
    for (int i = 0; i < N; i += 5) {
        key_of(i, key, &klen);
        assert_int_equal(kvi_remove(k, "local", key, klen), KVI_OK);
    }
    kvi_stats s0;
    assert_int_equal(kvi_stats_get(k, "local", &s0), KVI_OK);
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    enum { M = 1000 };
    for (int j = 0; j < M; j++) {
        int i = (j * 37) % (N + 100); /* some past N: never stored */
        key_of(i, key, &klen);
        assert_int_equal(kvi_batch_fetch(b, "local", key, klen), KVI_OK);
    }
    kvi_status st = kvi_batch_run(b, 0);
    assert_int_equal(st, KVI_OK);
    assert_int_equal(kvi_batch_failed(b), 0);
    /* Counted in the id's stats as M operations, the missing ones as misses. */
    kvi_stats s1;
    assert_int_equal(kvi_stats_get(k, "local", &s1), KVI_OK);
    assert_int_equal(s1.ops - s0.ops, M);
    size_t missing = 0;
    for (int j = 0; j < M; j++)
        missing += kvi_batch_status(b, (size_t)j) == KVI_NOT_FOUND;
    assert_true(missing > 0);
    assert_int_equal(s1.misses - s0.misses, missing);
    for (int j = 0; j < M; j++) {
        int i = (j * 37) % (N + 100);
        key_of(i, key, &klen);
        kvi_value v = KVI_VALUE_INIT;
        kvi_status want = kvi_fetch(k, "local", key, klen, &v);
        if (kvi_batch_status(b, (size_t)j) != want)
            fail_msg("op %d (key %d): %s, single fetch %s", j, i,
                     kvi_status_name(kvi_batch_status(b, (size_t)j)), kvi_status_name(want));
        size_t len = 99;
        got = (char *)kvi_batch_value(b, (size_t)j, &len);
        if (want == KVI_OK) {
            assert_non_null(got);
            assert_int_equal(len, v.len);
            assert_memory_equal(got, v.data, len);
            assert_int_equal(got[len], '\0'); /* values end with a NUL */
        } else {
            assert_int_equal(want, KVI_NOT_FOUND);
            assert_null(got);
            assert_int_equal(len, 0);
        }
        kvi_value_free(&v);
    }
    kvi_batch_free(b);
    free(val);
    kvi_free(k);
}

static void test_run_matches_single_fetches(void **state)
{
    (void)state;
    run_matches_single_fetches(0);
}

static void test_run_matches_single_fetches_shared(void **state)
{
    (void)state;
    run_matches_single_fetches(1);
}

/* A clock that counts its reads. */
struct clock {
    int64_t now;
    int reads;
};

static int64_t clock_read(void *ud)
{
    struct clock *c = ud;
    c->reads++;
    return c->now;
}

/* Keys with an expiry in a run: those whose time has come are missing
 * (and dropped), the others found; every expiry of the run is judged at
 * one instant, the clock read once however many keys have an expiry. */
static void expired_keys_in_a_run(int shared)
{
    kvi *k = ctx(shared);
    struct clock c = {.now = 1700000000000};
    assert_int_equal(kvi_set_clock(k, clock_read, &c), KVI_OK);
    char key[32];
    enum { N = 600 };
    for (int i = 0; i < N; i++) {
        int n = snprintf(key, sizeof key, "e%d", i);
        /* thirds: no expiry, 10 s, 100 s */
        int64_t ex = i % 3 == 0 ? 0 : i % 3 == 1 ? 10 : 100;
        assert_int_equal(kvi_store(k, "local", key, (size_t)n, key, (size_t)n, ex), KVI_OK);
    }
    c.now += 10000; /* the 10 s keys are dead now, to the millisecond */
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    for (int i = 0; i < N; i++) {
        int n = snprintf(key, sizeof key, "e%d", i);
        assert_int_equal(kvi_batch_fetch(b, "local", key, (size_t)n), KVI_OK);
    }
    c.reads = 0;
    assert_int_equal(kvi_batch_run(b, 0), KVI_OK);
    assert_int_equal(c.reads, 1);
    for (int i = 0; i < N; i++) {
        int n = snprintf(key, sizeof key, "e%d", i);
        size_t len = 0;
        const char *v = kvi_batch_value(b, (size_t)i, &len);
        if (i % 3 == 1) {
            assert_int_equal(kvi_batch_status(b, (size_t)i), KVI_NOT_FOUND);
        } else {
            assert_int_equal(kvi_batch_status(b, (size_t)i), KVI_OK);
            assert_int_equal(len, (size_t)n);
            assert_memory_equal(v, key, len);
        }
    }
    /* The dead ones were dropped, not just hidden. */
    kvi_stats s;
    assert_int_equal(kvi_stats_get(k, "local", &s), KVI_OK);
    assert_int_equal(s.entries, N - N / 3);
    kvi_batch_free(b);
    kvi_free(k);
}

static void test_expired_keys_in_a_run(void **state)
{
    (void)state;
    expired_keys_in_a_run(0);
}

static void test_expired_keys_in_a_run_shared(void **state)
{
    (void)state;
    expired_keys_in_a_run(1);
}

/* Other kinds between fetches of the same keys: each fetch sees what the
 * ops before it in the batch left, in order. */
static void mixed_kinds_in(int shared, int refused)
{
    kvi *k = ctx(shared);
    assert_int_equal(kvi_store(k, "local", "a", 1, "old-a", 5, 0), KVI_OK);
    assert_int_equal(kvi_store(k, "local", "b", 1, "old-b", 5, 0), KVI_OK);
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    kvi_batch_fetch(b, "local", "a", 1);                  /* 0: old-a */
    kvi_batch_fetch(b, "local", "b", 1);                  /* 1: old-b */
    kvi_batch_store(b, "local", "a", 1, "new-a", 5, 0);   /* 2 */
    kvi_batch_fetch(b, "local", "a", 1);                  /* 3: new-a */
    kvi_batch_fetch(b, "local", "b", 1);                  /* 4: old-b */
    kvi_batch_remove(b, "local", "b", 1);                 /* 5 */
    kvi_batch_fetch(b, "local", "b", 1);                  /* 6: missing */
    kvi_batch_fetch(b, "local", "a", 1);                  /* 7: new-a */
    kvi_batch_add(b, "local", "c", 1, 5, 0);              /* 8: 5 */
    kvi_batch_fetch(b, "local", "c", 1);                  /* 9: "5" */
    kvi_batch_fetch(b, "local", "c", 1);                  /* 10: "5" */
    kvi_batch_store_nx(b, "local", "b", 1, "nx-b", 4, 0); /* 11 */
    kvi_batch_fetch(b, "local", "b", 1);                  /* 12: nx-b */
    if (refused) /* 13: refused at add (the batch then groups by id) */
        kvi_batch_fetch(b, "local", "", 0);
    else /* 13: missing (one id, all ops open: one group without a pass) */
        kvi_batch_fetch(b, "local", "nokey", 5);
    kvi_batch_fetch(b, "local", "a", 1);                                     /* 14: new-a */
    assert_int_equal(kvi_batch_run(b, 0), refused ? KVI_E_INVALID : KVI_OK); /* op 13's */
    static const char *const want[] = {"old-a", "old-b", NULL,    "new-a", "old-b",
                                       NULL,    "",      "new-a", NULL,    "5",
                                       "5",     NULL,    "nx-b",  "",      "new-a"};
    for (size_t i = 0; i < 15; i++) {
        if (want[i] == NULL)
            continue;
        if (want[i][0] == '\0') {
            assert_null(kvi_batch_value(b, i, NULL));
            continue;
        }
        const char *v = kvi_batch_value(b, i, NULL);
        if (v == NULL || strcmp(v, want[i]) != 0)
            fail_msg("op %zu: '%s', wanted '%s'", i, v ? v : "(null)", want[i]);
    }
    assert_int_equal(kvi_batch_status(b, 6), KVI_NOT_FOUND);
    assert_int_equal(kvi_batch_status(b, 13), refused ? KVI_E_INVALID : KVI_NOT_FOUND);
    assert_int_equal(kvi_batch_integer(b, 8), 5);
    assert_int_equal(kvi_batch_failed(b), refused ? 1 : 0);
    kvi_batch_free(b);
    kvi_free(k);
}

static void mixed_kinds_keep_their_order(int shared)
{
    mixed_kinds_in(shared, 1);
    kvi *k = ctx(shared); /* (a new in-process table; the shared one emptied) */
    uint64_t removed = 0;
    assert_int_equal(kvi_remove_chunk(k, "local", "*", 1, &removed), KVI_OK);
    kvi_free(k);
    mixed_kinds_in(shared, 0);
}

static void test_mixed_kinds_keep_their_order(void **state)
{
    (void)state;
    mixed_kinds_keep_their_order(0);
}

static void test_mixed_kinds_keep_their_order_shared(void **state)
{
    (void)state;
    mixed_kinds_keep_their_order(1);
}

/* The shared table's batch runs in hardware transactions where the CPU
 * has them (RTM); the same tests again with only the locks. */
static void test_run_matches_single_fetches_shared_locked(void **state)
{
    (void)state;
    kvi__sh_elide(0);
    run_matches_single_fetches(1);
    kvi__sh_elide(1);
}

static void test_expired_keys_in_a_run_shared_locked(void **state)
{
    (void)state;
    kvi__sh_elide(0);
    expired_keys_in_a_run(1);
    kvi__sh_elide(1);
}

static void test_mixed_kinds_keep_their_order_shared_locked(void **state)
{
    (void)state;
    kvi__sh_elide(0);
    mixed_kinds_keep_their_order(1);
    kvi__sh_elide(1);
}

/* Asked here, not of the library (which may be wrong). */
static int cpu_has_rtm(void)
{
#if defined(__x86_64__) && defined(__GLIBC__)
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 11)) != 0 &&
           (d & (1u << 11)) == 0; /* RTM, not RTM_ALWAYS_ABORT */
#else
    return 0;
#endif
}

/* Whether an empty transaction commits at all (only where cpu_has_rtm):
 * some CPUs report RTM and abort every transaction (TSX_FORCE_ABORT while
 * the host's perf holds a counter). */
#if defined(__x86_64__) && defined(__GLIBC__)
__attribute__((target("rtm"), noinline)) static int cpu_commits_transactions(void)
{
    for (int i = 0; i < 1000; i++)
        if (_xbegin() == _XBEGIN_STARTED) {
            _xend();
            return 1;
        }
    return 0;
}
#else
static int cpu_commits_transactions(void)
{
    return 0;
}
#endif

/* Where the CPU has RTM, a batch of fetches on the shared table commits
 * transactions (an interrupt may abort one: a few batches are allowed),
 * also with values too long for 16 shards' keys in one transaction (it
 * tries fewer shards at a time); without RTM (or under valgrind, which
 * hides it) it says so and passes. */
static void commits_transactions(int N, size_t vlen, int64_t expire)
{
    if (!cpu_has_rtm()) {
        print_message("N/A: no RTM on this CPU: the shared batch takes the locks\n");
        return;
    }
    if (!cpu_commits_transactions()) {
        print_message("N/A: this CPU reports RTM but aborts every transaction (1000 empty "
                      "ones tried): the shared batch falls back to the locks\n");
        return;
    }
    assert_true(kvi__sh_can_elide());
    kvi *k = ctx(1);
    char key[64];
    size_t klen;
    char *val = malloc(vlen);
    assert_non_null(val);
    memset(val, 'v', vlen);
    for (int i = 0; i < N; i++) {
        key_of(i, key, &klen);
        assert_int_equal(kvi_store(k, "local", key, klen, val, vlen, expire), KVI_OK);
    }
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    uint64_t before = kvi__sh_elided();
    for (int round = 0; round < 200 && kvi__sh_elided() == before; round++) {
        kvi_batch_clear(b);
        for (int i = 0; i < N; i++) {
            key_of(i, key, &klen);
            assert_int_equal(kvi_batch_fetch(b, "local", key, klen), KVI_OK);
        }
        assert_int_equal(kvi_batch_run(b, 0), KVI_OK);
        for (int i = 0; i < N; i++) {
            size_t len = 0;
            const char *v = kvi_batch_value(b, (size_t)i, &len);
            assert_non_null(v);
            assert_int_equal(len, vlen);
            assert_memory_equal(v, val, vlen);
        }
    }
    print_message("  %llu transactions committed (values of %zu bytes, expire %lld)\n",
                  (unsigned long long)(kvi__sh_elided() - before), vlen, (long long)expire);
    assert_true(kvi__sh_elided() > before);
    kvi_batch_free(b);
    free(val);
    kvi_free(k);
}

static void test_shared_batch_commits_transactions(void **state)
{
    (void)state;
    commits_transactions(256, 1, 0); /* one chunk: ~4 keys in each of the 64 shards */
}

/* Every key has an expiry (the password cache's case): the clock is read
 * before the transactions, which cannot read it, so they still commit.
 * 8 keys meet at most 8 shards: one transaction's span, whose first key
 * with an expiry would abort it if the clock were not read yet (a longer
 * batch reads it in its first span's locked fallback). */
static void test_shared_batch_of_keys_with_expiry_commits_transactions(void **state)
{
    (void)state;
    commits_transactions(8, 1, 3600);
}

/* ASan's instrumented copies of long values do not fit a transaction here
 * even one shard at a time (measured: 0 of 200 batches commit at 4 KiB). */
#if defined(__SANITIZE_ADDRESS__)
#define KVI_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KVI_ASAN 1
#endif
#endif

static void test_shared_batch_of_long_values_commits_transactions(void **state)
{
    (void)state;
#ifdef KVI_ASAN
    print_message("N/A: under ASan long values do not fit a transaction (the locks answer)\n");
    return;
#endif
    commits_transactions(256, 4096, 0); /* 16 shards' keys: ~256 KiB, far more than L1 */
}

/* Two local ids interleaved, then one: each fetch goes to its own table
 * (the one-id run must not take the first id for all). */
static void test_two_ids_in_one_batch(void **state)
{
    (void)state;
    kvi *k = ctx(0);
    assert_int_equal(kvi_add_url(k, "local:other://"), KVI_OK);
    assert_int_equal(kvi_store(k, "local", "x", 1, "main", 4, 0), KVI_OK);
    assert_int_equal(kvi_store(k, "local:other", "x", 1, "other", 5, 0), KVI_OK);
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    for (int round = 0; round < 2; round++) {
        kvi_batch_clear(b);
        /* round 0: the other id after a run of the first; round 1: the
         * first op on the other id, the rest on the first */
        const char *ids[6] = {"local", "local", "local", "local:other", "local", "local"};
        if (round == 1) {
            ids[0] = "local:other";
            ids[3] = "local";
        }
        for (int i = 0; i < 6; i++)
            assert_int_equal(kvi_batch_fetch(b, ids[i], "x", 1), KVI_OK);
        assert_int_equal(kvi_batch_run(b, 0), KVI_OK);
        for (size_t i = 0; i < 6; i++)
            assert_string_equal(kvi_batch_value(b, i, NULL),
                                strcmp(ids[i], "local") == 0 ? "main" : "other");
    }
    /* Run, extend, run again: the second run is its own one-id run. */
    kvi_batch_clear(b);
    kvi_batch_fetch(b, "local", "x", 1);
    kvi_batch_fetch(b, "local", "x", 1);
    assert_int_equal(kvi_batch_run(b, 0), KVI_OK);
    kvi_batch_fetch(b, "local:other", "x", 1);
    kvi_batch_fetch(b, "local:other", "x", 1);
    assert_int_equal(kvi_batch_run(b, 0), KVI_OK);
    assert_string_equal(kvi_batch_value(b, 1, NULL), "main");
    assert_string_equal(kvi_batch_value(b, 2, NULL), "other");
    assert_string_equal(kvi_batch_value(b, 3, NULL), "other");
    kvi_batch_free(b);
    kvi_free(k);
}

/* The id of each fetch is compared whole with the last one's: a longer,
 * a shorter and an even-length id after it are their own (refused when
 * not defined), however the two strings start. */
static void test_ids_are_compared_whole(void **state)
{
    (void)state;
    kvi *k = ctx(0);
    assert_int_equal(kvi_add_url(k, "local:ab://"), KVI_OK);
    assert_int_equal(kvi_store(k, "local", "x", 1, "main", 4, 0), KVI_OK);
    assert_int_equal(kvi_store(k, "local:ab", "x", 1, "ab", 2, 0), KVI_OK);
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    static const char *const ids[] = {"local",    "local",    "localx",    "local",    "loca",
                                      "locax",    "local",    "local:ab",  "local:ab", "local:a",
                                      "local:ac", "local:ab", "local:abc", "local:ab", "local"};
    static const char *const want[] = {"main", "main", NULL, "main", NULL, NULL, "main", "ab",
                                       "ab",   NULL,   NULL, "ab",   NULL, "ab", "main"};
    enum { N = sizeof ids / sizeof ids[0] };
    for (size_t i = 0; i < N; i++) {
        kvi_status st = kvi_batch_fetch(b, ids[i], "x", 1);
        if ((st == KVI_OK) != (want[i] != NULL))
            fail_msg("add %zu (%s): %s", i, ids[i], kvi_status_name(st));
    }
    (void)kvi_batch_run(b, 0);
    for (size_t i = 0; i < N; i++) {
        const char *v = kvi_batch_value(b, i, NULL);
        if (want[i] == NULL ? v != NULL : v == NULL || strcmp(v, want[i]) != 0)
            fail_msg("op %zu (%s): '%s', wanted '%s'", i, ids[i], v ? v : "(null)",
                     want[i] ? want[i] : "(null)");
    }
    kvi_batch_free(b);
    kvi_free(k);
}

/* A fetch added after a failed call leaves no message behind (the single
 * calls' rule: a call that succeeded shows none). */
static void test_added_fetch_discards_an_earlier_message(void **state)
{
    (void)state;
    kvi *k = ctx(0);
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    assert_int_equal(kvi_batch_fetch(b, "local", "a", 1), KVI_OK); /* the id is known now */
    assert_int_equal(kvi_store(k, "local", "", 0, "x", 1, 0), KVI_E_INVALID);
    assert_true(kvi_errmsg(k)[0] != '\0');
    assert_int_equal(kvi_batch_fetch(b, "local", "b", 1), KVI_OK);
    assert_string_equal(kvi_errmsg(k), "");
    kvi_batch_free(b);
    kvi_free(k);
}

/* ---- nothing left behind: a counting allocator ----------------------------- */

struct counting {
    long live;
};

static void *c_malloc(void *ud, size_t n)
{
    void *p = malloc(n);
    if (p)
        ((struct counting *)ud)->live++;
    return p;
}

static void *c_realloc(void *ud, void *p, size_t n)
{
    void *q = realloc(p, n);
    if (q && !p)
        ((struct counting *)ud)->live++;
    return q;
}

static void c_free(void *ud, void *p)
{
    if (p)
        ((struct counting *)ud)->live--;
    free(p);
}

/* Batches whose ops fail in the engine (a message kept by the op), are
 * refused at add (a message too), both, or hold a heap value, cleared and
 * freed: every allocation of the context comes back. */
static void test_cleared_batches_free_what_their_ops_hold(void **state)
{
    (void)state;
    struct counting cnt = {0};
    kvi_allocator a = {c_malloc, c_realloc, c_free, &cnt};
    kvi *k = NULL;
    assert_int_equal(kvi_new_with_allocator(&k, &a), KVI_OK);
    assert_int_equal(kvi_store(k, "local", "a", 1, "1", 1, 0), KVI_OK);
    assert_int_equal(kvi_store(k, "local", "t", 1, "text", 4, 0), KVI_OK);
    long base = cnt.live;
    for (int round = 0; round < 4; round++) {
        kvi_batch *b = NULL;
        assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
        for (int again = 0; again < 2; again++) {
            kvi_batch_clear(b);
            /* (fetches in runs of two: values in the batch's memory; a
             * lone one would be a heap value, which the batch frees too) */
            if (round == 0 || round == 2) /* not a counter: fails in the engine, with a message */
                kvi_batch_add(b, "local", "t", 1, 1, 0);
            if (round == 1 || round == 2) /* an id never defined: refused at add, with a message */
                kvi_batch_fetch(b, "nosuch", "a", 1);
            kvi_batch_fetch(b, "local", "a", 1);
            kvi_batch_fetch(b, "local", "a", 1);
            (void)kvi_batch_run(b, 0);
            assert_int_equal(kvi_batch_failed(b), round == 2 ? 2 : round == 3 ? 0 : 1);
            assert_true(round == 3 || kvi_batch_errmsg(b, 0)[0] != '\0');
            assert_string_equal(kvi_batch_value(b, kvi_batch_count(b) - 1, NULL), "1");
            if (round == 3) { /* a lone fetch: a heap value (the engine's single slot) */
                kvi_batch_fetch(b, "local", "a", 1);
                assert_int_equal(kvi_batch_run(b, 0), KVI_OK);
                assert_string_equal(kvi_batch_value(b, kvi_batch_count(b) - 1, NULL), "1");
            } else { /* ended through kvi_batch_op_single */
                kvi_batch_counter_fetch(b, "local", "a", 1);
                assert_int_equal(kvi_batch_run(b, 0), KVI_OK);
                assert_int_equal(kvi_batch_integer(b, kvi_batch_count(b) - 1), 1);
            }
        }
        kvi_batch_free(b);
        if (cnt.live != base)
            fail_msg("round %d: %ld allocations left", round, cnt.live - base);
    }
    kvi_free(k);
    assert_int_equal(cnt.live, 0);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(g_shm_name, sizeof g_shm_name, "kvi-unit-batch-%ld", (long)getpid());
    snprintf(g_shm_url, sizeof g_shm_url, "local://?shm=%s&max_memory=8m&shm_unlink=no",
             g_shm_name);
    char path[160];
    snprintf(path, sizeof path, "/kvi.%s", g_shm_name);
    shm_unlink(path);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char path[160];
    snprintf(path, sizeof path, "/kvi.%s", g_shm_name);
    shm_unlink(path);
    return 0;
}

/* Each shared test starts from an empty segment. */
static int shm_setup(void **state)
{
    return group_teardown(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_matches_single_fetches),
        cmocka_unit_test_setup(test_run_matches_single_fetches_shared, shm_setup),
        cmocka_unit_test(test_expired_keys_in_a_run),
        cmocka_unit_test_setup(test_expired_keys_in_a_run_shared, shm_setup),
        cmocka_unit_test(test_mixed_kinds_keep_their_order),
        cmocka_unit_test_setup(test_mixed_kinds_keep_their_order_shared, shm_setup),
        cmocka_unit_test_setup(test_run_matches_single_fetches_shared_locked, shm_setup),
        cmocka_unit_test_setup(test_expired_keys_in_a_run_shared_locked, shm_setup),
        cmocka_unit_test_setup(test_mixed_kinds_keep_their_order_shared_locked, shm_setup),
        cmocka_unit_test_setup(test_shared_batch_commits_transactions, shm_setup),
        cmocka_unit_test_setup(test_shared_batch_of_long_values_commits_transactions, shm_setup),
        cmocka_unit_test_setup(test_shared_batch_of_keys_with_expiry_commits_transactions, shm_setup),
        cmocka_unit_test(test_two_ids_in_one_batch),
        cmocka_unit_test(test_ids_are_compared_whole),
        cmocka_unit_test(test_added_fetch_discards_an_earlier_message),
        cmocka_unit_test(test_cleared_batches_free_what_their_ops_hold),
    };
    return cmocka_run_group_tests_name("local_batch", tests, group_setup, group_teardown);
}
