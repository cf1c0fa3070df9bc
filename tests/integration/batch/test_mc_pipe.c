/*
 * test_mc_pipe.c -- the memcached engine's own pipelined path
 * (src/engines/memcached/mc_pipe.c) against real memcached servers, most
 * tests on a pool of two:
 *
 *  - every op kind through a blocking batch and a non-blocking batch gives
 *    what the single calls (libmemcached) give, key for key, on the same
 *    starting state (mapped keys, expired items, refused bounds, overflow,
 *    not-a-counter, missing keys among successes), and a key lands on the
 *    server the single calls use;
 *  - pipelining: with both servers stopped, start returns pending at once on
 *    an epoll descriptor; 100 stores and 100 adds on distinct keys then take
 *    a handful of waits, not hundreds;
 *  - a server killed in the middle of a non-blocking batch: the other
 *    server's adds all succeed, each counted once on the server; the killed
 *    one's adds succeed in order up to the cut, then fail (at most one
 *    unknown per key);
 *  - deadline and cancel on a hung server: a state change written is
 *    KVI_E_OUTCOME_UNKNOWN, an add whose write never left is not (and the
 *    server never sees it); the connection left behind is not reused;
 *  - a pooled connection the server closed (restart) is not written to.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "kvi/kvi.h"
#include "kvitest.h"

static kvi_ts_server *g_s[2];

/* Every test starts with both servers running (a failed check of an earlier
 * test may have left one stopped). */
static void cont_all(void)
{
    for (int s = 0; s < 2; s++)
        if (kvi_ts_pid(g_s[s]) != 0)
            kill(kvi_ts_pid(g_s[s]), SIGCONT);
}

static void pool_url(char *url, size_t size, const char *id, const char *rest)
{
    snprintf(url, size, "%s://127.0.0.1:%u,127.0.0.1:%u/%s", id, (unsigned)kvi_ts_port(g_s[0]),
             (unsigned)kvi_ts_port(g_s[1]), rest);
}

static kvi *pool_context(const char *rest)
{
    char url[512];
    pool_url(url, sizeof url, "memcached", rest);
    return kvi_test_context1(url);
}

/* Runs b without blocking to its end; returns what start returned. */
static int drive(kvi_batch *b, uint32_t timeout_ms, int *waits)
{
    kvi_wait w;
    int first = kvi_batch_start(b, timeout_ms, NULL, NULL, &w);
    int r = first;
    *waits = 0;
    while (r == 0) {
        kvi_test_wait(&w);
        (*waits)++;
        r = kvi_batch_resume(b, &w);
    }
    assert_int_equal(r, 1);
    return first;
}

/* Runs b to its end, without blocking (start, then resume from a poll()
 * loop) or with kvi_batch_run; no cmocka check: threads and fork()ed
 * children use it. */
static void run_either(kvi_batch *b, uint32_t timeout_ms, int non_blocking)
{
    if (non_blocking) {
        kvi_wait w;
        int r = kvi_batch_start(b, timeout_ms, NULL, NULL, &w);
        while (r == 0) {
            kvi_test_wait(&w);
            r = kvi_batch_resume(b, &w);
        }
    } else {
        (void)kvi_batch_run(b, timeout_ms);
    }
}

/* ---- every op kind: batch and non-blocking == single ------------------- */

enum kind { FETCH, STORE, STORE_NX, REMOVE, ADD, SUB, ADD_B, SUB_B, CFETCH };

struct spec {
    enum kind kind;
    const char *key; /* %s: the prefix; %d: the round */
    const char *val;
    int64_t n, min, max;
};

/* After the set-up below: v = "apple", t = "abc", c = 10, m = INT64_MAX,
 * x, xc, xn expired ("old", "5", "old"), L... a mapped key (too long) =
 * "long", "sp ace" a mapped key (space) = "spaced". */
static const struct spec SPECS[] = {
    {FETCH, "%sv%d", NULL, 0, 0, 0},
    {FETCH, "%snone%d", NULL, 0, 0, 0},
    {STORE, "%snew%d", "fresh", 0, 0, 0},
    {FETCH, "%snew%d", NULL, 0, 0, 0},
    {STORE_NX, "%sv%d", "no", 0, 0, 0},
    {STORE_NX, "%snx%d", "first", 0, 0, 0},
    {FETCH, "%snx%d", NULL, 0, 0, 0},
    {ADD, "%sc%d", NULL, 5, 0, 0},
    {SUB, "%sc%d", NULL, 3, 0, 0},
    {ADD_B, "%sc%d", NULL, 10, 0, 20},
    {SUB_B, "%sc%d", NULL, 2, 0, 20},
    {SUB_B, "%sc%d", NULL, 100, -5, 20},
    {CFETCH, "%sc%d", NULL, 0, 0, 0},
    {CFETCH, "%st%d", NULL, 0, 0, 0},
    {CFETCH, "%snone%d", NULL, 0, 0, 0},
    {ADD, "%st%d", NULL, 1, 0, 0},
    {ADD, "%sm%d", NULL, 1, 0, 0},
    {ADD, "%sfreshc%d", NULL, -7, 0, 0},
    {ADD_B, "%sfreshb%d", NULL, 50, 0, 20},
    {REMOVE, "%sv%d", NULL, 0, 0, 0},
    {REMOVE, "%sv%d", NULL, 0, 0, 0},
    {FETCH, "%sv%d", NULL, 0, 0, 0},
    {REMOVE, "%sx%d", NULL, 0, 0, 0},
    {FETCH, "%sx%d", NULL, 0, 0, 0},
    {ADD, "%sxc%d", NULL, 3, 0, 0},
    {STORE_NX, "%sxn%d", "again", 0, 0, 0},
    {FETCH, "%sxn%d", NULL, 0, 0, 0},
    {FETCH, "%sLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLL%d", NULL, 0, 0, 0},
    {FETCH, "%ssp ace%d", NULL, 0, 0, 0},
    {ADD, "%ssp ace%d", NULL, 1, 0, 0},
    {STORE, "%ssp ace%d", "41", 0, 0, 0},
    {ADD, "%ssp ace%d", NULL, 1, 0, 0},
    {REMOVE, "%ssp ace%d", NULL, 0, 0, 0},
    {STORE_NX, "%ssp ace%d", "back", 0, 0, 0},
    {FETCH, "%ssp ace%d", NULL, 0, 0, 0},
};
#define NSPECS (sizeof SPECS / sizeof SPECS[0])
#define ROUNDS 12 /* keys spread over both servers */

struct result {
    kvi_status st;
    int64_t n;
    char v[64];
};

static void key_of(char *buf, size_t size, const struct spec *sp, const char *prefix, int round)
{
    snprintf(buf, size, sp->key, prefix, round);
}

static void set_up(kvi *k, const char *p, int round, int expired)
{
    char key[400];
#define PUT(fmt, val, exp)                                                                         \
    do {                                                                                           \
        snprintf(key, sizeof key, fmt, p, round);                                                 \
        assert_int_equal(kvi_store(k, "memcached", key, strlen(key), val, strlen(val), exp),      \
                         KVI_OK);                                                                 \
    } while (0)
    if (expired) {
        PUT("%sx%d", "old", 1);
        PUT("%sxc%d", "5", 1);
        PUT("%sxn%d", "old", 1);
        return;
    }
    PUT("%sv%d", "apple", 0);
    PUT("%st%d", "abc", 0);
    PUT("%sc%d", "10", 0);
    PUT("%sm%d", "9223372036854775807", 0);
    PUT(SPECS[27].key, "long", 0);
    PUT("%ssp ace%d", "spaced", 0);
#undef PUT
}

static void single(kvi *k, const struct spec *sp, const char *key, struct result *r)
{
    size_t kl = strlen(key);
    memset(r, 0, sizeof *r);
    kvi_value v = {0};
    switch (sp->kind) {
    case FETCH:
        r->st = kvi_fetch(k, "memcached", key, kl, &v);
        if (r->st == KVI_OK)
            snprintf(r->v, sizeof r->v, "%.*s", (int)v.len, v.data);
        kvi_value_free(&v);
        break;
    case STORE:
        r->st = kvi_store(k, "memcached", key, kl, sp->val, strlen(sp->val), 0);
        break;
    case STORE_NX:
        r->st = kvi_store_nx(k, "memcached", key, kl, sp->val, strlen(sp->val), 0);
        break;
    case REMOVE:
        r->st = kvi_remove(k, "memcached", key, kl);
        break;
    case ADD:
        r->st = kvi_add(k, "memcached", key, kl, sp->n, 0, &r->n);
        break;
    case SUB:
        r->st = kvi_sub(k, "memcached", key, kl, sp->n, 0, &r->n);
        break;
    case ADD_B:
        r->st = kvi_add_bounded(k, "memcached", key, kl, sp->n, 0, sp->min, sp->max, &r->n);
        break;
    case SUB_B:
        r->st = kvi_sub_bounded(k, "memcached", key, kl, sp->n, 0, sp->min, sp->max, &r->n);
        break;
    case CFETCH:
        r->st = kvi_counter_fetch(k, "memcached", key, kl, &r->n);
        break;
    }
    if (r->st != KVI_OK && r->st != KVI_OUT_OF_BOUNDS)
        r->n = 0;
}

static void add_op(kvi_batch *b, const struct spec *sp, const char *key)
{
    size_t kl = strlen(key);
    kvi_status st = KVI_E_INTERNAL;
    switch (sp->kind) {
    case FETCH:
        st = kvi_batch_fetch(b, "memcached", key, kl);
        break;
    case STORE:
        st = kvi_batch_store(b, "memcached", key, kl, sp->val, strlen(sp->val), 0);
        break;
    case STORE_NX:
        st = kvi_batch_store_nx(b, "memcached", key, kl, sp->val, strlen(sp->val), 0);
        break;
    case REMOVE:
        st = kvi_batch_remove(b, "memcached", key, kl);
        break;
    case ADD:
        st = kvi_batch_add(b, "memcached", key, kl, sp->n, 0);
        break;
    case SUB:
        st = kvi_batch_sub(b, "memcached", key, kl, sp->n, 0);
        break;
    case ADD_B:
        st = kvi_batch_add_bounded(b, "memcached", key, kl, sp->n, 0, sp->min, sp->max);
        break;
    case SUB_B:
        st = kvi_batch_sub_bounded(b, "memcached", key, kl, sp->n, 0, sp->min, sp->max);
        break;
    case CFETCH:
        st = kvi_batch_counter_fetch(b, "memcached", key, kl);
        break;
    }
    assert_int_equal(st, KVI_OK);
}

static void batch_result(kvi_batch *b, size_t i, const struct spec *sp, struct result *r)
{
    memset(r, 0, sizeof *r);
    r->st = kvi_batch_status(b, i);
    if (sp->kind == FETCH && r->st == KVI_OK) {
        size_t len = 0;
        const char *v = kvi_batch_value(b, i, &len);
        snprintf(r->v, sizeof r->v, "%.*s", (int)len, v);
    }
    if (sp->kind != FETCH && (r->st == KVI_OK || r->st == KVI_OUT_OF_BOUNDS))
        r->n = kvi_batch_integer(b, i);
}

static void same(const struct result *want, const struct result *got, const struct spec *sp,
                 int round, const char *how)
{
    if (want->st != got->st || want->n != got->n || strcmp(want->v, got->v) != 0)
        fail_msg("%s, op %d (%s) round %d: single %s %lld '%s', %s %s %lld '%s'", how,
                 (int)(sp - SPECS), sp->key, round, kvi_status_name(want->st),
                 (long long)want->n, want->v, how, kvi_status_name(got->st), (long long)got->n,
                 got->v);
}

static void test_every_kind_matches_the_single_calls(void **state)
{
    (void)state;
    cont_all();
    kvi *k = pool_context("?timeout=5000");
    static const char *const prefixes[] = {"s", "b", "a"};
    for (int p = 0; p < 3; p++)
        for (int r = 0; r < ROUNDS; r++) {
            set_up(k, prefixes[p], r, 0);
            set_up(k, prefixes[p], r, 1);
        }
    /* Past the stamps of the expired items (memcached still holds them). */
    kvi_test_sleep_ms(2100);

    static struct result want[ROUNDS][NSPECS], got[ROUNDS][NSPECS];
    char key[400];
    for (int r = 0; r < ROUNDS; r++)
        for (size_t i = 0; i < NSPECS; i++) {
            key_of(key, sizeof key, &SPECS[i], "s", r);
            single(k, &SPECS[i], key, &want[r][i]);
        }
    for (int mode = 0; mode < 2; mode++) {
        kvi_batch *b = NULL;
        assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
        for (int r = 0; r < ROUNDS; r++)
            for (size_t i = 0; i < NSPECS; i++) {
                key_of(key, sizeof key, &SPECS[i], mode == 0 ? "b" : "a", r);
                add_op(b, &SPECS[i], key);
            }
        if (mode == 0) {
            (void)kvi_batch_run(b, 10000);
        } else {
            int waits = 0;
            assert_int_equal(drive(b, 10000, &waits), 0); /* pending: not run within start */
            printf("# non-blocking batch of %zu ops: %d waits\n", kvi_batch_count(b), waits);
        }
        for (int r = 0; r < ROUNDS; r++)
            for (size_t i = 0; i < NSPECS; i++) {
                batch_result(b, (size_t)r * NSPECS + i, &SPECS[i], &got[r][i]);
                same(&want[r][i], &got[r][i], &SPECS[i], r, mode == 0 ? "batch" : "non-blocking");
            }
        kvi_batch_free(b);
    }
    /* The expected outcomes themselves (so that a bug shared by both paths
     * shows too). */
    assert_int_equal(want[0][0].st, KVI_OK);
    assert_string_equal(want[0][0].v, "apple");
    assert_int_equal(want[0][9].st, KVI_OUT_OF_BOUNDS);
    assert_int_equal(want[0][9].n, 12);
    assert_int_equal(want[0][12].n, 10);
    assert_int_equal(want[0][13].st, KVI_E_NOT_A_COUNTER);
    assert_int_equal(want[0][16].st, KVI_E_OVERFLOW);
    assert_int_equal(want[0][22].st, KVI_NOT_FOUND);
    assert_int_equal(want[0][24].n, 3);
    assert_int_equal(want[0][25].st, KVI_OK);
    assert_string_equal(want[0][26].v, "again");
    assert_string_equal(want[0][27].v, "long");
    assert_int_equal(want[0][31].n, 42);

    /* Placement: what the non-blocking batch stored is where the single
     * calls (libmemcached) look, and both servers hold some of it. */
    char u0[256], u1[256];
    snprintf(u0, sizeof u0, "memcached:s0://127.0.0.1:%u/", (unsigned)kvi_ts_port(g_s[0]));
    snprintf(u1, sizeof u1, "memcached:s1://127.0.0.1:%u/", (unsigned)kvi_ts_port(g_s[1]));
    const char *const urls[] = {u0, u1, NULL};
    kvi *k2 = kvi_test_context(urls);
    int on[2] = {0, 0};
    for (int r = 0; r < ROUNDS; r++) {
        snprintf(key, sizeof key, "anew%d", r);
        kvi_value v = {0};
        assert_int_equal(kvi_fetch(k, "memcached", key, strlen(key), &v), KVI_OK);
        kvi_value_free(&v);
        for (int s = 0; s < 2; s++) {
            if (kvi_fetch(k2, s == 0 ? "memcached:s0" : "memcached:s1", key, strlen(key), &v) ==
                KVI_OK)
                on[s]++;
            kvi_value_free(&v);
        }
    }
    printf("# keys on server 0: %d, on server 1: %d\n", on[0], on[1]);
    assert_int_equal(on[0] + on[1], ROUNDS);
    assert_true(on[0] > 0 && on[1] > 0);
    kvi_free(k2);
    kvi_free(k);
}

/* ---- pipelining, no blocking ---------------------------------------------- */

static void test_stores_and_adds_are_pipelined_without_blocking(void **state)
{
    (void)state;
    cont_all();
    kvi *k = pool_context("?timeout=5000");
    assert_int_equal(kvi_store(k, "memcached", "warm", 4, "1", 1, 0), KVI_OK);
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    char key[32];
    enum { N = 100 };
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "ps%d", i);
        assert_int_equal(kvi_batch_store(b, "memcached", key, strlen(key), "v", 1, 0), KVI_OK);
        snprintf(key, sizeof key, "pa%d", i);
        assert_int_equal(kvi_batch_add(b, "memcached", key, strlen(key), i, 0), KVI_OK);
    }
    /* memcached has no raw query language: the op is refused when added
     * (its status kept in its place), so it cannot send the batch to a
     * blocking path (start below still returns at once). */
    assert_int_equal(kvi_batch_raw_query(b, "memcached", "stats", 5), KVI_E_UNSUPPORTED);
    for (int s = 0; s < 2; s++)
        kvi_test_hang(g_s[s]); /* back once every thread has stopped */
    kvi_wait w;
    int64_t t0 = kvi_test_mono_ms();
    int r = kvi_batch_start(b, 10000, NULL, NULL, &w);
    int64_t dt = kvi_test_mono_ms() - t0;
    unsigned port = kvi_test_peer_port(w.fd);
    for (int s = 0; s < 2; s++)
        assert_int_equal(kill(kvi_ts_pid(g_s[s]), SIGCONT), 0);
    printf("# start with both servers stopped: %d after %lld ms, fd %d (peer port %u)\n", r,
           (long long)dt, w.fd, port);
    assert_int_equal(r, 0);
    assert_true(w.fd >= 0);
    assert_int_equal(port, 0); /* not one server's socket: the epoll descriptor of both */
    assert_true(dt < 1000);
    int waits = 0;
    while (r == 0) {
        kvi_test_wait(&w);
        waits++;
        r = kvi_batch_resume(b, &w);
    }
    printf("# %d stores and %d adds on distinct keys over 2 servers: %d waits\n", N, N, waits);
    /* Each add is a read then a write: two rounds per server, plus a wait
     * for each part of the replies the server sends as it works through
     * them; one by one it would be at least 300 round trips, each a wait. */
    assert_true(waits < 150);
    assert_int_equal(kvi_batch_failed(b), 1);
    assert_int_equal(kvi_batch_status(b, 2 * N), KVI_E_UNSUPPORTED);
    for (int i = 0; i < N; i++) {
        assert_int_equal(kvi_batch_status(b, (size_t)(2 * i)), KVI_OK);
        assert_int_equal(kvi_batch_integer(b, (size_t)(2 * i + 1)), i);
        int64_t v = -1;
        snprintf(key, sizeof key, "pa%d", i);
        assert_int_equal(kvi_counter_fetch(k, "memcached", key, strlen(key), &v), KVI_OK);
        assert_int_equal(v, i);
    }
    kvi_batch_free(b);
    kvi_free(k);
}

/* ---- a server killed in the middle ---------------------------------------- */

/* A key the pool puts on server s (found through per-server ids). */
static void key_on(kvi *k, int s, const char *stem, char *out, size_t size)
{
    char u[256];
    snprintf(u, sizeof u, "memcached:one://127.0.0.1:%u/", (unsigned)kvi_ts_port(g_s[s]));
    kvi *k1 = kvi_test_context1(u);
    for (int i = 0; i < 1000; i++) {
        snprintf(out, size, "%s%d", stem, i);
        assert_int_equal(kvi_store(k, "memcached", out, strlen(out), "p", 1, 0), KVI_OK);
        kvi_value v = {0};
        kvi_status st = kvi_fetch(k1, "memcached:one", out, strlen(out), &v);
        kvi_value_free(&v);
        (void)kvi_remove(k, "memcached", out, strlen(out));
        if (st == KVI_OK) {
            kvi_free(k1);
            return;
        }
    }
    kvi_free(k1);
    fail_msg("no key of 1000 lands on server %d", s);
}

static void test_server_killed_in_a_non_blocking_batch(void **state)
{
    (void)state;
    for (int s = 0; s < 2; s++)
        kill(kvi_ts_pid(g_s[s]), SIGCONT);
    kvi *k = pool_context("?timeout=2000&connect_timeout=300&down_after=0");
    char c0[32], c1[32];
    key_on(k, 0, "ka", c0, sizeof c0);
    key_on(k, 1, "kb", c1, sizeof c1);
    enum { N = 3000 };
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    for (int i = 0; i < N; i++) {
        assert_int_equal(kvi_batch_add(b, "memcached", c0, strlen(c0), 1, 0), KVI_OK);
        assert_int_equal(kvi_batch_add(b, "memcached", c1, strlen(c1), 1, 0), KVI_OK);
    }
    char u[256];
    snprintf(u, sizeof u, "memcached:one://127.0.0.1:%u/", (unsigned)kvi_ts_port(g_s[0]));
    kvi *watch = kvi_test_context1(u);
    kvi_wait w;
    int r = kvi_batch_start(b, 60000, NULL, NULL, &w);
    int killed = 0;
    while (r == 0) {
        if (!killed) {
            int64_t v = 0;
            if (kvi_counter_fetch(watch, "memcached:one", c0, strlen(c0), &v) == KVI_OK &&
                v >= 200) {
                assert_int_equal(kvi_ts_kill(g_s[0]), KVI_TS_OK);
                killed = 1;
            }
        }
        kvi_test_wait(&w);
        r = kvi_batch_resume(b, &w);
    }
    kvi_free(watch);
    assert_true(killed);
    size_t ok0 = 0, ok1 = 0, unknown = 0, failed = 0;
    for (size_t i = 0; i < 2 * (size_t)N; i++) {
        kvi_status st = kvi_batch_status(b, i);
        if (i % 2 == 1) {
            /* the surviving server: every add, in order */
            assert_int_equal(st, KVI_OK);
            assert_int_equal(kvi_batch_integer(b, i), (int64_t)++ok1);
            continue;
        }
        if (st == KVI_OK) {
            if (failed + unknown > 0)
                fail_msg("add %zu on the killed server succeeded after a failed one", i / 2);
            assert_int_equal(kvi_batch_integer(b, i), (int64_t)++ok0);
        } else if (st == KVI_E_OUTCOME_UNKNOWN) {
            unknown++;
        } else {
            if (st != KVI_E_IO && st != KVI_E_CONNECT && st != KVI_E_TIMEOUT)
                fail_msg("add %zu after the kill: %s (%s)", i / 2, kvi_status_name(st),
                         kvi_batch_errmsg(b, i));
            failed++;
        }
        if (st != KVI_OK)
            assert_true(strlen(kvi_batch_errmsg(b, i)) > 0);
    }
    printf("# killed server: %zu adds ok, %zu unknown, %zu failed; other server: %zu ok\n", ok0,
           unknown, failed, ok1);
    assert_true(ok0 >= 200 && ok0 < N);
    assert_true(unknown <= 1); /* one add at a time on its key */
    /* Never twice: the surviving server counted each add once. */
    int64_t v = 0;
    assert_int_equal(kvi_counter_fetch(k, "memcached", c1, strlen(c1), &v), KVI_OK);
    assert_int_equal(v, N);
    kvi_batch_free(b);
    assert_int_equal(kvi_ts_restart(g_s[0]), KVI_TS_OK);
    kvi_free(k);
}

/* ---- deadline, cancel ------------------------------------------------------ */

static void hung_batch(kvi *k, kvi_batch *b, const char *tag)
{
    char key[32];
    kvi_batch_clear(b);
    assert_int_equal(kvi_batch_fetch(b, "memcached:h", "hk", 2), KVI_OK);
    snprintf(key, sizeof key, "hn%s", tag);
    assert_int_equal(kvi_batch_add(b, "memcached:h", key, strlen(key), 1, 0), KVI_OK);
    assert_int_equal(kvi_batch_store(b, "memcached:h", "hs", 2, "s", 1, 0), KVI_OK);
    snprintf(key, sizeof key, "hx%s", tag);
    assert_int_equal(kvi_batch_store_nx(b, "memcached:h", key, strlen(key), "x", 1, 0), KVI_OK);
    (void)k;
}

/* The start of the hung-server cases: both servers running, a context of
 * one id, memcached:h, on server 1 (URL options `opts`) in *k, its key hk
 * = "v", and a new batch. */
static kvi_batch *hung_setup(const char *opts, kvi **k)
{
    cont_all();
    char url[256];
    snprintf(url, sizeof url, "memcached:h://127.0.0.1:%u/%s", (unsigned)kvi_ts_port(g_s[1]),
             opts);
    *k = kvi_test_context1(url);
    assert_int_equal(kvi_store(*k, "memcached:h", "hk", 2, "v", 1, 0), KVI_OK);
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(*k, &b), KVI_OK);
    return b;
}

/* hung_batch(tag) run without blocking to its end (after a "warm" one the
 * batch's connection is open, so the next batch's requests are written at
 * once). */
static void hung_run(kvi *k, kvi_batch *b, const char *tag)
{
    hung_batch(k, b, tag);
    int waits;
    (void)drive(b, 5000, &waits);
}

static void test_deadline_and_cancel_on_a_hung_server(void **state)
{
    (void)state;
    kvi *k = NULL;
    kvi_batch *b = hung_setup("?timeout=10000&down_after=0", &k);
    for (int cancel = 0; cancel < 2; cancel++) {
        const char *tag = cancel ? "c" : "d";
        hung_run(k, b, "warm");
        hung_batch(k, b, tag);
        kvi_test_hang(g_s[1]);
        kvi_wait w;
        int64_t t0 = kvi_test_mono_ms();
        int r = kvi_batch_start(b, 300, NULL, NULL, &w);
        assert_int_equal(r, 0);
        if (cancel) {
            kvi_batch_cancel(b);
        } else {
            while (r == 0) {
                kvi_test_wait(&w);
                r = kvi_batch_resume(b, &w);
            }
        }
        int64_t dt = kvi_test_mono_ms() - t0;
        kvi_status want = cancel ? KVI_E_CANCELED : KVI_E_TIMEOUT;
        printf("# %s: ended after %lld ms: %s %s %s %s\n", cancel ? "cancel" : "deadline",
               (long long)dt, kvi_status_name(kvi_batch_status(b, 0)),
               kvi_status_name(kvi_batch_status(b, 1)), kvi_status_name(kvi_batch_status(b, 2)),
               kvi_status_name(kvi_batch_status(b, 3)));
        assert_true(dt < 3000);
        assert_int_equal(kvi_batch_status(b, 0), want);
        /* the add's read was written, its write never: not unknown */
        assert_int_equal(kvi_batch_status(b, 1), want);
        assert_int_equal(kvi_batch_status(b, 2), want); /* a store is no "never twice" op */
        assert_int_equal(kvi_batch_status(b, 3), KVI_E_OUTCOME_UNKNOWN);
        assert_int_equal(kill(kvi_ts_pid(g_s[1]), SIGCONT), 0);
        /* The add never reached the server; the next batch gets its own
         * answers (the connection left in the middle is not reused). */
        hung_run(k, b, "after");
        assert_int_equal(kvi_batch_failed(b), 0);
        assert_string_equal(kvi_batch_value(b, 0, NULL), "v");
        char key[32];
        snprintf(key, sizeof key, "hn%s", tag);
        int64_t v = 0;
        assert_int_equal(kvi_counter_fetch(k, "memcached:h", key, strlen(key), &v),
                         KVI_NOT_FOUND);
    }
    kvi_batch_free(b);
    kvi_free(k);
}

/* Without a batch deadline a non-blocking batch still ends by the
 * connection's own timeout: w.deadline_ms is when it passes. */
static void test_connection_timeout_without_a_deadline(void **state)
{
    (void)state;
    kvi *k = NULL;
    kvi_batch *b = hung_setup("?timeout=300&down_after=0", &k);
    hung_run(k, b, "warm");
    hung_batch(k, b, "t");
    /* waits for the add on its key: ends with the server's timeout too */
    assert_int_equal(kvi_batch_fetch(b, "memcached:h", "hnt", 3), KVI_OK);
    kvi_test_hang(g_s[1]);
    kvi_wait w;
    int64_t t0 = kvi_test_mono_ms();
    int r = kvi_batch_start(b, 0, NULL, NULL, &w);
    int64_t first_deadline = w.deadline_ms;
    int first = r;
    while (r == 0) {
        kvi_test_wait(&w);
        r = kvi_batch_resume(b, &w);
    }
    int64_t dt = kvi_test_mono_ms() - t0;
    assert_int_equal(kill(kvi_ts_pid(g_s[1]), SIGCONT), 0);
    assert_int_equal(first, 0);
    /* the connection's timeout from its last progress (taken just before) */
    assert_true(first_deadline != 0 && first_deadline - t0 <= 300 + 50);
    printf("# no deadline, timeout=300: ended after %lld ms: %s (%s)\n", (long long)dt,
           kvi_status_name(kvi_batch_status(b, 0)), kvi_batch_errmsg(b, 0));
    assert_true(dt >= 250 && dt < 3000);
    assert_int_equal(kvi_batch_status(b, 0), KVI_E_TIMEOUT);
    assert_int_equal(kvi_batch_status(b, 1), KVI_E_TIMEOUT);
    assert_int_equal(kvi_batch_status(b, 3), KVI_E_OUTCOME_UNKNOWN);
    if (kvi_batch_status(b, 4) != KVI_E_TIMEOUT)
        fail_msg("the op waiting behind a timed-out one: %s (%s)",
                 kvi_status_name(kvi_batch_status(b, 4)), kvi_batch_errmsg(b, 4));
    kvi_batch_free(b);
    kvi_free(k);
}

/* ---- idle connections ------------------------------------------------------ */

static void test_pooled_connection_closed_by_a_restart(void **state)
{
    (void)state;
    cont_all();
    char url[256];
    snprintf(url, sizeof url, "memcached:r://127.0.0.1:%u/?timeout=5000",
             (unsigned)kvi_ts_port(g_s[0]));
    kvi *k = kvi_test_context1(url);
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    for (int round = 0; round < 3; round++) {
        kvi_batch_clear(b);
        assert_int_equal(kvi_batch_add(b, "memcached:r", "rc", 2, 1, 0), KVI_OK);
        assert_int_equal(kvi_batch_store_nx(b, "memcached:r", "rn", 2, "1", 1, 0), KVI_OK);
        int waits;
        (void)drive(b, 5000, &waits);
        if (kvi_batch_status(b, 0) != KVI_OK)
            fail_msg("round %d: %s (%s)", round, kvi_status_name(kvi_batch_status(b, 0)),
                     kvi_batch_errmsg(b, 0));
        assert_int_equal(kvi_batch_integer(b, 0), 1); /* counted once, on a fresh server */
        assert_int_equal(kvi_batch_status(b, 1), KVI_OK);
        assert_int_equal(kvi_ts_restart(g_s[0]), KVI_TS_OK);
    }
    kvi_batch_free(b);
    kvi_free(k);
}

/* ---- threads racing on counters ------------------------------------------ */

enum { RT = 4, RB = 60, RK = 3, RPER = 6 }; /* threads, batches each, keys, adds per key */

struct racer {
    kvi *k;
    int t;
    int failed;
    char why[256];
    unsigned char *seen; /* [RK][RT*RB*RPER + 1] values returned */
};

static void *race(void *arg)
{
    struct racer *rc = arg;
    kvi_batch *b = NULL;
    if (kvi_batch_new(rc->k, &b) != KVI_OK) {
        rc->failed = 1;
        return NULL;
    }
    char key[16];
    for (int i = 0; i < RB && !rc->failed; i++) {
        kvi_batch_clear(b);
        for (int j = 0; j < RK * RPER; j++) {
            snprintf(key, sizeof key, "race%d", j % RK);
            (void)kvi_batch_add(b, "memcached", key, strlen(key), 1, 0);
        }
        int non_blocking = (i + rc->t) % 2;
        run_either(b, 20000, non_blocking);
        for (int j = 0; j < RK * RPER; j++) {
            kvi_status st = kvi_batch_status(b, (size_t)j);
            int64_t v = kvi_batch_integer(b, (size_t)j);
            if (st != KVI_OK || v < 1 || v > RT * RB * RPER) {
                snprintf(rc->why, sizeof rc->why, "thread %d batch %d op %d: %s %lld (%s)",
                         rc->t, i, j, kvi_status_name(st), (long long)v,
                         kvi_batch_errmsg(b, (size_t)j));
                rc->failed = 1;
                break;
            }
            /* each value of a counter is returned once over all threads */
            __atomic_fetch_add(&rc->seen[(size_t)(j % RK) * (RT * RB * RPER + 1) + (size_t)v], 1,
                               __ATOMIC_RELAXED);
        }
    }
    kvi_batch_free(b);
    return NULL;
}

/* Threads run blocking and non-blocking batches of adds on the same few
 * counters at once (one context, its pooled connections shared): the CAS
 * races between them are retried, every add counts once, every value is
 * handed out once. */
static void test_threads_race_on_counters(void **state)
{
    (void)state;
    cont_all();
    kvi *k = pool_context("?timeout=10000");
    unsigned char *seen = calloc((size_t)RK * (RT * RB * RPER + 1), 1);
    assert_non_null(seen);
    struct racer rc[RT];
    pthread_t th[RT];
    for (int t = 0; t < RT; t++) {
        rc[t] = (struct racer){.k = k, .t = t, .seen = seen};
        assert_int_equal(pthread_create(&th[t], NULL, race, &rc[t]), 0);
    }
    for (int t = 0; t < RT; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < RT; t++)
        if (rc[t].failed)
            fail_msg("%s", rc[t].why);
    char key[16];
    for (int j = 0; j < RK; j++) {
        snprintf(key, sizeof key, "race%d", j);
        int64_t v = 0;
        assert_int_equal(kvi_counter_fetch(k, "memcached", key, strlen(key), &v), KVI_OK);
        assert_int_equal(v, RT * RB * RPER);
        for (int x = 1; x <= RT * RB * RPER; x++)
            if (seen[(size_t)j * (RT * RB * RPER + 1) + (size_t)x] != 1)
                fail_msg("counter %d: value %d handed out %d times", j, x,
                         seen[(size_t)j * (RT * RB * RPER + 1) + (size_t)x]);
    }
    printf("# %d threads x %d batches of %d adds on %d counters: every add once\n", RT, RB,
           RK * RPER, RK);
    free(seen);
    kvi_free(k);
}

/* ---- fork ------------------------------------------------------------------ */

static int fork_batch(kvi *k, int64_t want, int non_blocking)
{
    kvi_batch *b = NULL;
    if (kvi_batch_new(k, &b) != KVI_OK)
        return 0;
    (void)kvi_batch_add(b, "memcached", "fk", 2, 1, 0);
    (void)kvi_batch_fetch(b, "memcached", "fv", 2);
    run_either(b, 5000, non_blocking);
    const char *v = kvi_batch_value(b, 1, NULL);
    int ok = kvi_batch_status(b, 0) == KVI_OK && kvi_batch_integer(b, 0) == want &&
             v != NULL && strcmp(v, "forked") == 0;
    if (!ok)
        fprintf(stderr, "pid %d: add %s %lld (want %lld), fetch %s\n", (int)getpid(),
                kvi_status_name(kvi_batch_status(b, 0)), (long long)kvi_batch_integer(b, 0),
                (long long)want, kvi_status_name(kvi_batch_status(b, 1)));
    kvi_batch_free(b);
    return ok;
}

/* A child after fork() runs batches on connections of its own (the
 * parent's pooled ones are never used there), and the parent's pooled
 * connections still work afterwards: each add counted once. */
static void test_batches_across_fork(void **state)
{
    (void)state;
    cont_all();
    kvi *k = pool_context("?timeout=5000");
    assert_int_equal(kvi_store(k, "memcached", "fv", 2, "forked", 6, 0), KVI_OK);
    assert_true(fork_batch(k, 1, 0)); /* the parent's connections, now pooled */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int ok = fork_batch(k, 2, 1) && fork_batch(k, 3, 0);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(fork_batch(k, 4, 1));
    assert_true(fork_batch(k, 5, 0));
    kvi_free(k);
}

static int group_setup(void **state)
{
    (void)state;
    for (int s = 0; s < 2; s++)
        g_s[s] = kvi_test_memcached(NULL);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (int s = 0; s < 2; s++) {
        kill(kvi_ts_pid(g_s[s]), SIGCONT);
        kvi_ts_free(g_s[s]);
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kind_matches_the_single_calls),
        cmocka_unit_test(test_stores_and_adds_are_pipelined_without_blocking),
        cmocka_unit_test(test_deadline_and_cancel_on_a_hung_server),
        cmocka_unit_test(test_connection_timeout_without_a_deadline),
        cmocka_unit_test(test_pooled_connection_closed_by_a_restart),
        cmocka_unit_test(test_threads_race_on_counters),
        cmocka_unit_test(test_batches_across_fork),
        cmocka_unit_test(test_server_killed_in_a_non_blocking_batch),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
