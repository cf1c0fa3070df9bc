/*
 * test_batch_async.c -- non-blocking batches (kvi_batch_start / _resume /
 * _cancel, docs/async.md) driven by a poll() loop as an event loop would:
 * 10000 operations in batches of 100, ten batches pending at once, against
 * a real redis-server; a hung server (SIGSTOP) where start returns at once
 * and the deadline ends the batch; cancel; the local engine done at once;
 * memcached (its own non-blocking connections).
 */
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "kvi/kvi.h"
#include "kvitest.h"
#include "testcluster.h"
#include "testsentinel.h"

struct done_count {
    int calls;
};

static void on_done(void *ud, kvi_batch *b)
{
    (void)b;
    ((struct done_count *)ud)->calls++;
}

static kvi_ts_server *g_redis;
static char g_url[256];

static void test_local_batch_is_done_at_once(void **state)
{
    (void)state;
    kvi *k = kvi_test_context1("local://");
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    assert_int_equal(kvi_batch_store(b, "local", "a", 1, "1", 1, 0), KVI_OK);
    assert_int_equal(kvi_batch_fetch(b, "local", "a", 1), KVI_OK);
    struct done_count dc = {0};
    kvi_wait w;
    assert_int_equal(kvi_batch_start(b, 0, on_done, &dc, &w), 1);
    assert_int_equal(dc.calls, 1);
    assert_string_equal(kvi_batch_value(b, 1, NULL), "1");
    assert_int_equal(kvi_batch_resume(b, &w), -1); /* not pending */
    kvi_batch_free(b);
    kvi_free(k);
}

/* A local table too big for the caches (600000 keys: the batch's fetch
 * takes the shards twice, once to start loading the entries): every
 * result is still the single call's -- found values, removed and missing
 * keys -- across chunks of 256. */
static void test_local_batch_over_a_big_table(void **state)
{
    (void)state;
    kvi *k = kvi_test_context1("local://");
    enum { N = 600000, M = 1000 };
    char key[16];
    for (int i = 0; i < N; i++) {
        int n = snprintf(key, sizeof key, "b%07d", i);
        assert_int_equal(kvi_store(k, "local", key, (size_t)n, key, (size_t)n, 0), KVI_OK);
    }
    for (int i = 0; i < N; i += 7) {
        int n = snprintf(key, sizeof key, "b%07d", i);
        assert_int_equal(kvi_remove(k, "local", key, (size_t)n), KVI_OK);
    }
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    for (int j = 0; j < M; j++) {
        int i = (int)(((long)j * 7919) % (N + 1000)); /* some past the end: missing */
        int n = snprintf(key, sizeof key, "b%07d", i);
        assert_int_equal(kvi_batch_fetch(b, "local", key, (size_t)n), KVI_OK);
    }
    assert_int_equal(kvi_batch_run(b, 0), KVI_OK);
    for (int j = 0; j < M; j++) {
        int i = (int)(((long)j * 7919) % (N + 1000));
        int n = snprintf(key, sizeof key, "b%07d", i);
        if (i >= N || i % 7 == 0) {
            assert_int_equal(kvi_batch_status(b, (size_t)j), KVI_NOT_FOUND);
        } else {
            size_t len = 0;
            const char *v = kvi_batch_value(b, (size_t)j, &len);
            assert_non_null(v);
            assert_int_equal(len, (size_t)n);
            assert_memory_equal(v, key, len);
        }
    }
    kvi_batch_free(b);
    kvi_free(k);
}

/* 100 batches of 100 ops, ten pending at once, one poll() loop. */
static void test_ten_thousand_ops_ten_batches_in_flight(void **state)
{
    (void)state;
    kvi *k = kvi_test_context1(g_url);
    enum { NB = 10, ROUNDS = 10, PER = 100 };
    kvi_batch *b[NB];
    kvi_wait w[NB];
    int pending[NB];
    struct done_count dc = {0};
    int64_t adds = 0;
    for (int i = 0; i < NB; i++)
        assert_int_equal(kvi_batch_new(k, &b[i]), KVI_OK);
    char key[32];
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < NB; i++) {
            kvi_batch_clear(b[i]);
            for (int j = 0; j < PER / 4; j++) {
                int n = snprintf(key, sizeof key, "a%d:%d", i, j);
                assert_int_equal(kvi_batch_store(b[i], "redis", key, (size_t)n, key, (size_t)n, 0),
                                 KVI_OK);
                assert_int_equal(kvi_batch_fetch(b[i], "redis", key, (size_t)n), KVI_OK);
                assert_int_equal(kvi_batch_add(b[i], "redis", "total", 5, 1, 0), KVI_OK);
                assert_int_equal(kvi_batch_counter_fetch(b[i], "redis", "total", 5), KVI_OK);
            }
            int r = kvi_batch_start(b[i], 10000, on_done, &dc, &w[i]);
            assert_true(r == 0 || r == 1);
            pending[i] = r == 0;
        }
        for (;;) {
            struct pollfd p[NB];
            int idx[NB], np = 0;
            for (int i = 0; i < NB; i++) {
                if (!pending[i])
                    continue;
                p[np].fd = w[i].fd;
                p[np].events = (short)(((w[i].events & KVI_WAIT_READ) ? POLLIN : 0) |
                                       ((w[i].events & KVI_WAIT_WRITE) ? POLLOUT : 0));
                p[np].revents = 0;
                idx[np++] = i;
            }
            if (np == 0)
                break;
            assert_true(poll(p, (nfds_t)np, 5000) > 0);
            for (int q = 0; q < np; q++) {
                if (p[q].revents == 0)
                    continue;
                int r = kvi_batch_resume(b[idx[q]], &w[idx[q]]);
                assert_true(r == 0 || r == 1);
                pending[idx[q]] = r == 0;
            }
        }
        for (int i = 0; i < NB; i++) {
            assert_int_equal(kvi_batch_failed(b[i]), 0);
            for (int j = 0; j < PER / 4; j++) {
                int n = snprintf(key, sizeof key, "a%d:%d", i, j);
                size_t len = 0;
                const char *v = kvi_batch_value(b[i], (size_t)(4 * j + 1), &len);
                assert_non_null(v);
                assert_int_equal(len, (size_t)n);
                assert_memory_equal(v, key, len);
                assert_int_equal(kvi_batch_status(b[i], (size_t)(4 * j + 2)), KVI_OK);
                adds++;
            }
        }
    }
    assert_int_equal(dc.calls, NB * ROUNDS);
    int64_t total = 0;
    assert_int_equal(kvi_counter_fetch(k, "redis", "total", 5, &total), KVI_OK);
    assert_int_equal(total, adds);
    for (int i = 0; i < NB; i++)
        kvi_batch_free(b[i]);
    kvi_free(k);
}

/* A hung server: start returns at once (never blocks), the deadline ends
 * the batch: fetches KVI_E_TIMEOUT, the written adds unknown. */
static void test_hung_server_start_returns_at_once_and_deadline_ends_it(void **state)
{
    (void)state;
    char url[300];
    snprintf(url, sizeof url, "%s?timeout=10000", g_url);
    kvi *k = kvi_test_context1(url);
    assert_int_equal(kvi_store(k, "redis", "k", 1, "v", 1, 0), KVI_OK); /* mode known */
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(kvi_batch_fetch(b, "redis", "k", 1), KVI_OK);
        assert_int_equal(kvi_batch_add(b, "redis", "n", 1, 1, 0), KVI_OK);
    }
    kvi_test_hang(g_redis);
    struct done_count dc = {0};
    kvi_wait w;
    int64_t t0 = kvi_test_mono_ms();
    /* A deadline long enough that a start slowed down by a loaded machine
     * (ASan, 2 cores) still shows it did not wait for it. */
    int r = kvi_batch_start(b, 1000, on_done, &dc, &w);
    int64_t start_ms = kvi_test_mono_ms() - t0;
    while (r == 0) {
        kvi_test_wait(&w);
        r = kvi_batch_resume(b, &w);
    }
    int64_t all_ms = kvi_test_mono_ms() - t0;
    kvi_test_unhang(g_redis);
    printf("# start returned after %lld ms, batch ended after %lld ms (deadline 1000)\n",
           (long long)start_ms, (long long)all_ms);
    assert_true(start_ms < 500);
    assert_true(all_ms >= 990 && all_ms < 5000);
    assert_int_equal(dc.calls, 1);
    for (size_t i = 0; i < 10; i++)
        assert_int_equal(kvi_batch_status(b, i), i % 2 == 0 ? KVI_E_TIMEOUT : KVI_E_OUTCOME_UNKNOWN);
    kvi_batch_free(b);
    kvi_free(k);
}

static void test_cancel_ends_a_pending_batch(void **state)
{
    (void)state;
    kvi *k = kvi_test_context1(g_url);
    assert_int_equal(kvi_store(k, "redis", "k", 1, "v", 1, 0), KVI_OK);
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    assert_int_equal(kvi_batch_fetch(b, "redis", "k", 1), KVI_OK);
    assert_int_equal(kvi_batch_add(b, "redis", "n", 1, 1, 0), KVI_OK);
    assert_int_equal(kvi_batch_store(b, "local", "x", 1, "y", 1, 0), KVI_OK);
    kvi_test_hang(g_redis);
    struct done_count dc = {0};
    kvi_wait w;
    int r = kvi_batch_start(b, 0, on_done, &dc, &w);
    assert_int_equal(r, 0);
    assert_true(w.fd >= 0);
    assert_int_equal(kvi_batch_fetch(b, "redis", "k", 1), KVI_E_INVALID); /* pending */
    assert_int_equal(kvi_batch_run(b, 0), KVI_E_INVALID);
    kvi_batch_cancel(b);
    kvi_test_unhang(g_redis);
    assert_int_equal(dc.calls, 1);
    assert_int_equal(kvi_batch_status(b, 0), KVI_E_CANCELED);
    assert_int_equal(kvi_batch_status(b, 1), KVI_E_OUTCOME_UNKNOWN);
    assert_int_equal(kvi_batch_status(b, 2), KVI_E_CANCELED); /* local: never started */
    assert_true(strlen(kvi_batch_errmsg(b, 0)) > 0);
    kvi_batch_cancel(b); /* not pending: nothing */
    assert_int_equal(dc.calls, 1);
    /* The batch runs again afterwards. */
    assert_int_equal(kvi_batch_fetch(b, "redis", "k", 1), KVI_OK);
    assert_int_equal(kvi_batch_run(b, 5000), KVI_OK);
    assert_string_equal(kvi_batch_value(b, 3, NULL), "v");
    kvi_batch_free(b);
    kvi_free(k);
}

/* A Redis Cluster: one pipeline per master, one after the other (the
 * descriptor the batch waits on changes between them); every result is
 * right, the adds on one key exact and in order. */
static void test_cluster_batch_moves_from_master_to_master(void **state)
{
    (void)state;
    kvi_tc_spec spec = {.masters = 3, .replicas = 0};
    kvi_tc_cluster *cl = kvi_test_cluster_case(&spec);
    char url[512];
    size_t n = kvi_tc_url(cl, "redis", url, sizeof url);
    snprintf(url + n, sizeof url - n, "?cluster=yes");
    kvi *k = kvi_test_context1(url);
    assert_int_equal(kvi_store(k, "redis", "warm", 4, "1", 1, 0), KVI_OK); /* the slot map */
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    char key[32];
    for (int i = 0; i < 100; i++) {
        int kn = snprintf(key, sizeof key, "ck%d", i);
        assert_int_equal(kvi_batch_store(b, "redis", key, (size_t)kn, key, (size_t)kn, 0), KVI_OK);
        assert_int_equal(kvi_batch_fetch(b, "redis", key, (size_t)kn), KVI_OK);
        assert_int_equal(kvi_batch_add(b, "redis", "{t}n", 4, 1, 0), KVI_OK);
    }
    kvi_wait w;
    int fds[8], nfds = 0;
    int r = kvi_batch_start(b, 10000, NULL, NULL, &w);
    while (r == 0) {
        int seen = 0;
        for (int i = 0; i < nfds; i++)
            seen |= fds[i] == w.fd;
        if (!seen && nfds < 8)
            fds[nfds++] = w.fd;
        kvi_test_wait(&w);
        r = kvi_batch_resume(b, &w);
    }
    assert_int_equal(r, 1);
    /* Usually one descriptor per master; fewer when a master's replies
     * were there before the batch had to wait for them. */
    printf("# the cluster batch waited on %d descriptors\n", nfds);
    assert_int_equal(kvi_batch_failed(b), 0);
    for (int i = 0; i < 100; i++) {
        int kn = snprintf(key, sizeof key, "ck%d", i);
        size_t len = 0;
        const char *v = kvi_batch_value(b, (size_t)(3 * i + 1), &len);
        assert_non_null(v);
        assert_int_equal(len, (size_t)kn);
        assert_memory_equal(v, key, len);
        assert_int_equal(kvi_batch_integer(b, (size_t)(3 * i + 2)), i + 1);
    }
    kvi_batch_free(b);
    kvi_free(k);
    kvi_tc_free(cl);
}

static void cli_ok(kvi_tc_cluster *cl, size_t i, const char *const *args)
{
    char *out = NULL;
    kvi_ts_result r = kvi_tc_cli(cl, i, &out, args);
    if (r != KVI_TS_OK || out == NULL || strncmp(out, "ERR", 3) == 0)
        fail_msg("redis-cli %s %s: %s", args[0], args[1], out != NULL ? out : kvi_tc_errmsg());
    free(out);
}

/* Runs b without blocking while node `stopped` (port) is SIGSTOPped: the
 * batch must come to wait on a socket to that node (it followed a
 * redirection there through the node's own non-blocking connection, not
 * the blocking single path, which would have waited out the timeout);
 * then the node is let go and the batch ends.  Returns whether it waited
 * on that node. */
static int run_with_node_stopped(kvi_batch *b, kvi_ts_server *stopped, unsigned port)
{
    kvi_test_hang(stopped);
    int on_stopped = 0, stopped_now = 1;
    kvi_wait w;
    int r = kvi_batch_start(b, 20000, NULL, NULL, &w);
    while (r == 0) {
        if (stopped_now && kvi_test_peer_port(w.fd) == port) {
            on_stopped = 1;
            kvi_test_unhang(stopped);
            stopped_now = 0;
        }
        kvi_test_wait(&w);
        r = kvi_batch_resume(b, &w);
    }
    if (stopped_now)
        kvi_test_unhang(stopped);
    assert_int_equal(r, 1);
    return on_stopped;
}

/* A Redis Cluster batch across a slot migration, with a slot map made stale
 * on purpose: first ASK (the slot MIGRATING on its old master, IMPORTING on
 * the new one), then MOVED (the slot given to the new master behind kvi's
 * back).  The redirected ops go to the new master through its own
 * non-blocking connection, proven by waiting on it while it is stopped;
 * every op right, the adds counted once each; after the MOVED the slot map
 * sends the next batch straight to the new master. */
static void test_cluster_batch_follows_ask_and_moved_without_blocking(void **state)
{
    (void)state;
    kvi_tc_spec spec = {.masters = 3, .replicas = 0};
    kvi_tc_cluster *cl = kvi_test_cluster_case(&spec);
    char url[512];
    size_t n = kvi_tc_url(cl, "redis", url, sizeof url);
    snprintf(url + n, sizeof url - n, "?cluster=yes&timeout=5000");
    kvi *k = kvi_test_context1(url);
    /* Before the move: the slot map, and a key that stays on the old master. */
    assert_int_equal(kvi_store(k, "redis", "{m}old", 6, "o", 1, 0), KVI_OK);

    char *out = NULL;
    const char *keyslot[] = {"CLUSTER", "KEYSLOT", "{m}", NULL};
    assert_int_equal(kvi_tc_cli(cl, 0, &out, keyslot), KVI_TS_OK);
    unsigned slot = (unsigned)atoi(out);
    free(out);
    size_t src = 0;
    assert_int_equal(kvi_tc_master_of(cl, 0, slot, &src), KVI_TS_OK);
    size_t dst = (src + 1) % 3, third = (src + 2) % 3;
    char src_id[41], dst_id[41], slotstr[8];
    assert_int_equal(kvi_tc_node_id(cl, src, src_id), KVI_TS_OK);
    assert_int_equal(kvi_tc_node_id(cl, dst, dst_id), KVI_TS_OK);
    snprintf(slotstr, sizeof slotstr, "%u", slot);
    unsigned src_port = kvi_tc_port(cl, src), dst_port = kvi_tc_port(cl, dst);

    /* ASK: new keys of the slot belong to dst while it migrates. */
    const char *importing[] = {"CLUSTER", "SETSLOT", slotstr, "IMPORTING", src_id, NULL};
    const char *migrating[] = {"CLUSTER", "SETSLOT", slotstr, "MIGRATING", dst_id, NULL};
    cli_ok(cl, dst, importing);
    cli_ok(cl, src, migrating);
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    assert_int_equal(kvi_batch_fetch(b, "redis", "{m}old", 6), KVI_OK);   /* 0: on src */
    assert_int_equal(kvi_batch_store(b, "redis", "{m}a", 4, "A", 1, 0), KVI_OK); /* 1 */
    for (int i = 0; i < 3; i++)
        assert_int_equal(kvi_batch_add(b, "redis", "{m}n", 4, 1, 0), KVI_OK); /* 2-4 */
    assert_int_equal(kvi_batch_fetch(b, "redis", "{m}a", 4), KVI_OK); /* 5 */
    assert_int_equal(kvi_batch_store_nx(b, "redis", "{m}x", 4, "X", 1, 0), KVI_OK); /* 6 */
    int waited = run_with_node_stopped(b, kvi_tc_server(cl, dst), dst_port);
    printf("# ASK: waited on the stopped target: %d\n", waited);
    for (size_t i = 0; i < 7; i++)
        if (kvi_batch_status(b, i) != KVI_OK)
            fail_msg("ASK op %zu: %s", i, kvi_batch_errmsg(b, i));
    assert_true(waited);
    assert_string_equal(kvi_batch_value(b, 0, NULL), "o");
    assert_int_equal(kvi_batch_integer(b, 2), 1);
    assert_int_equal(kvi_batch_integer(b, 3), 2);
    assert_int_equal(kvi_batch_integer(b, 4), 3);
    assert_string_equal(kvi_batch_value(b, 5, NULL), "A");

    /* MOVED: the slot goes to dst; kvi's map still names src. */
    const char *del_old[] = {"DEL", "{m}old", NULL};
    cli_ok(cl, src, del_old);
    const char *node_cmd[] = {"CLUSTER", "SETSLOT", slotstr, "NODE", dst_id, NULL};
    cli_ok(cl, dst, node_cmd);
    cli_ok(cl, src, node_cmd);
    cli_ok(cl, third, node_cmd);
    assert_int_equal(kvi_tc_wait_ok(cl, 20000), KVI_TS_OK);
    kvi_batch_clear(b);
    assert_int_equal(kvi_batch_fetch(b, "redis", "{m}a", 4), KVI_OK);
    assert_int_equal(kvi_batch_add(b, "redis", "{m}n", 4, 1, 0), KVI_OK);
    assert_int_equal(kvi_batch_store_nx(b, "redis", "{m}x", 4, "Y", 1, 0), KVI_OK);
    waited = run_with_node_stopped(b, kvi_tc_server(cl, dst), dst_port);
    printf("# MOVED: waited on the stopped target: %d\n", waited);
    for (size_t i = 0; i < 2; i++)
        if (kvi_batch_status(b, i) != KVI_OK)
            fail_msg("MOVED op %zu: %s", i, kvi_batch_errmsg(b, i));
    assert_true(waited);
    assert_string_equal(kvi_batch_value(b, 0, NULL), "A");
    assert_int_equal(kvi_batch_integer(b, 1), 4);
    assert_int_equal(kvi_batch_status(b, 2), KVI_KEY_EXISTS);

    /* The MOVED updated the slot map: the next batch goes straight to dst,
     * so it ends while the old master is stopped (else it would wait for
     * the old master until the deadline). */
    kvi_batch_clear(b);
    assert_int_equal(kvi_batch_add(b, "redis", "{m}n", 4, 1, 0), KVI_OK);
    kvi_test_hang(kvi_tc_server(cl, src));
    kvi_wait w;
    int on_src = 0;
    int r = kvi_batch_start(b, 5000, NULL, NULL, &w);
    while (r == 0) {
        on_src |= kvi_test_peer_port(w.fd) == src_port;
        kvi_test_wait(&w);
        r = kvi_batch_resume(b, &w);
    }
    kvi_test_unhang(kvi_tc_server(cl, src));
    printf("# after MOVED: waited on the old master: %d\n", on_src);
    if (kvi_batch_status(b, 0) != KVI_OK)
        fail_msg("after MOVED: %s", kvi_batch_errmsg(b, 0));
    assert_int_equal(kvi_batch_integer(b, 0), 5);
    assert_false(on_src);
    kvi_batch_free(b);
    kvi_free(k);
    kvi_tc_free(cl);
}

/* The servers' set-up of a case whose child runs now: the parent's (freeing
 * it stops the servers), kept reachable here for the child's leak check
 * (kvi_test_child_start). */
static void *volatile g_parent_setup;

/* The child of test_sentinel_batch_goes_to_the_master: 0 ok (its batch
 * freed on every path). */
static int child_asks_sentinel_without_blocking(kvi *k, kvi_tsn_setup *sn)
{
    kvi_ts_server *m = kvi_tsn_data(sn, 0), *se = kvi_tsn_sentinel(sn, 0);
    kvi_test_hang(m);
    kvi_test_hang(se);
    kvi_batch *b = NULL;
    if (kvi_batch_new(k, &b) != KVI_OK)
        return 10;
    kvi_batch_fetch(b, "redis", "s", 1);
    kvi_batch_add(b, "redis", "sn", 2, 5, 0);
    kvi_wait w;
    int r = kvi_batch_start(b, 20000, NULL, NULL, &w);
    int pending_at_start = r == 0, on_sentinel = 0;
    for (int spins = 0; r == 0 && spins < 100; spins++) {
        if (kvi_test_peer_port(w.fd) == kvi_ts_port(se)) {
            on_sentinel = 1;
            break;
        }
        kvi_test_wait(&w);
        r = kvi_batch_resume(b, &w);
    }
    kvi_test_unhang(se);
    kvi_test_unhang(m);
    while (r == 0) {
        kvi_test_wait(&w);
        r = kvi_batch_resume(b, &w);
    }
    printf("# sentinel child: start pending %d, waited on the sentinel %d\n", pending_at_start,
           on_sentinel);
    fflush(stdout);
    const char *v = kvi_batch_value(b, 0, NULL);
    int verdict = 0;
    if (!pending_at_start || !on_sentinel) {
        verdict = 11;
    } else if (kvi_batch_status(b, 0) != KVI_OK || v == NULL || strcmp(v, "v") != 0) {
        printf("# sentinel child: fetch: %s\n", kvi_batch_errmsg(b, 0));
        verdict = 12;
    } else if (kvi_batch_status(b, 1) != KVI_OK || kvi_batch_integer(b, 1) != 7) {
        verdict = 13;
    }
    kvi_batch_free(b);
    return verdict;
}

/* Through Sentinel: once the sentinels named the master, a non-blocking
 * batch goes to that master (the URL's hosts are the sentinels, which
 * know no GET), waiting on its socket (proven with the master stopped). */
static void test_sentinel_batch_goes_to_the_master(void **state)
{
    (void)state;
    kvi_tsn_spec spec = {.replicas = 0, .sentinels = 1, .quorum = 1};
    kvi_tsn_setup *sn = kvi_test_sentinels_case(&spec);
    char url[512];
    kvi_tsn_url(sn, "redis", url, sizeof url);
    kvi *k = kvi_test_context1(url);
    assert_int_equal(kvi_store(k, "redis", "s", 1, "v", 1, 0), KVI_OK); /* the master named */
    unsigned master_port = kvi_ts_port(kvi_tsn_data(sn, 0));
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    assert_int_equal(kvi_batch_fetch(b, "redis", "s", 1), KVI_OK);
    assert_int_equal(kvi_batch_store(b, "redis", "t", 1, "w", 1, 0), KVI_OK);
    assert_int_equal(kvi_batch_add(b, "redis", "sn", 2, 2, 0), KVI_OK);
    /* The master stopped: the batch must come to wait on its socket. */
    int on_master = run_with_node_stopped(b, kvi_tsn_data(sn, 0), master_port);
    for (size_t i = 0; i < 3; i++)
        if (kvi_batch_status(b, i) != KVI_OK)
            fail_msg("sentinel op %zu: %s", i, kvi_batch_errmsg(b, i));
    assert_string_equal(kvi_batch_value(b, 0, NULL), "v");
    assert_int_equal(kvi_batch_integer(b, 2), 2);
    printf("# sentinel batch: waited on the master's socket: %d\n", on_master);
    assert_true(on_master);
    kvi_batch_free(b);

    /* A new process knows no master: with the sentinel and the master
     * stopped, start asks the sentinel without blocking (pending, waiting
     * on the sentinel's socket); once they go on, every op is right. */
    fflush(stdout);
    g_parent_setup = sn;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        kvi_test_child_start();
        int verdict = child_asks_sentinel_without_blocking(k, sn);
        kvi_free(k); /* as the child has it: its own state and listener, its parent's state */
        kvi_test_child_exit(verdict);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    kvi_test_unhang(kvi_tsn_data(sn, 0));
    kvi_test_unhang(kvi_tsn_sentinel(sn, 0));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    kvi_free(k);
    kvi_tsn_free(sn);
}

/* A failover list whose working host dies: the non-blocking batch moves to
 * the next host through that host's own non-blocking connect (proven by
 * waiting on it while it is stopped), every op right.  Then, with both
 * hosts' breakers open (the first killed, the second stopped), a batch is
 * failed within start: nothing is sent, nothing waits. */
static void test_failover_list_moves_on_without_blocking_and_respects_the_breaker(void **state)
{
    (void)state;
    kvi_ts_server *s1 = kvi_test_redis(NULL), *s2 = kvi_test_redis(NULL);
    unsigned p2 = kvi_ts_port(s2);
    char url[300];
    snprintf(url, sizeof url,
             "redis://127.0.0.1:%u,127.0.0.1:%u/?cluster=no&timeout=1000&connect_timeout=2000"
             "&down_after=1&down_for=60000",
             (unsigned)kvi_ts_port(s1), p2);
    kvi *k = kvi_test_context1(url);
    assert_int_equal(kvi_store(k, "redis", "f", 1, "v", 1, 0), KVI_OK); /* on s1 */
    assert_int_equal(kvi_ts_kill(s1), KVI_TS_OK);
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    assert_int_equal(kvi_batch_store(b, "redis", "g", 1, "w", 1, 0), KVI_OK);
    assert_int_equal(kvi_batch_fetch(b, "redis", "g", 1), KVI_OK);
    assert_int_equal(kvi_batch_add(b, "redis", "fn", 2, 3, 0), KVI_OK);
    int on_s2 = run_with_node_stopped(b, s2, p2);
    for (size_t i = 0; i < 3; i++)
        if (kvi_batch_status(b, i) != KVI_OK)
            fail_msg("failover op %zu: %s", i, kvi_batch_errmsg(b, i));
    assert_string_equal(kvi_batch_value(b, 1, NULL), "w");
    assert_int_equal(kvi_batch_integer(b, 2), 3);
    printf("# failover: waited on the second host while it was stopped: %d\n", on_s2);
    assert_true(on_s2);

    /* The second host stopped too: one blocking call times out there and
     * opens its breaker (s1's opened when its connect was refused). */
    kvi_test_hang(s2);
    kvi_value val = {0};
    kvi_status st = kvi_fetch(k, "redis", "g", 1, &val);
    kvi_value_free(&val);
    printf("# blocking fetch with both hosts down: %s\n", kvi_status_name(st));
    kvi_batch_clear(b);
    assert_int_equal(kvi_batch_fetch(b, "redis", "g", 1), KVI_OK);
    assert_int_equal(kvi_batch_add(b, "redis", "fn", 2, 1, 0), KVI_OK);
    kvi_wait w;
    int r = kvi_batch_start(b, 20000, NULL, NULL, &w);
    if (r == 0)
        kvi_batch_cancel(b);
    kvi_test_unhang(s2);
    printf("# with both breakers open start returned %d: %s / %s\n", r,
           kvi_status_name(kvi_batch_status(b, 0)), kvi_status_name(kvi_batch_status(b, 1)));
    assert_int_equal(r, 1);
    for (size_t i = 0; i < 2; i++) {
        kvi_status s = kvi_batch_status(b, i);
        assert_true(KVI_STATUS_IS_ERROR(s));
        assert_int_not_equal(s, KVI_E_OUTCOME_UNKNOWN); /* nothing was sent */
    }
    kvi_batch_free(b);
    kvi_free(k);
    kvi_ts_free(s1);
    kvi_ts_free(s2);
}

/* In a child process (fork: a new connection state, an empty slot map)
 * with every node stopped: start reads the slot map without blocking, so
 * it returns pending and the batch comes to wait on a node's socket; once
 * the nodes go on, every op is right.  Returns the child's verdict: 0 ok. */
static int child_reads_map_without_blocking(kvi *k, kvi_tc_cluster *cl)
{
    size_t nn = kvi_tc_size(cl);
    for (size_t i = 0; i < nn; i++)
        kvi_test_hang(kvi_tc_server(cl, i));
    kvi_batch *b = NULL;
    if (kvi_batch_new(k, &b) != KVI_OK)
        return 10;
    char key[16];
    for (int i = 0; i < 20; i++) {
        int kn = snprintf(key, sizeof key, "fk%d", i);
        kvi_batch_fetch(b, "redis", key, (size_t)kn);
    }
    kvi_batch_add(b, "redis", "{f}n", 4, 1, 0);
    kvi_wait w;
    int r = kvi_batch_start(b, 20000, NULL, NULL, &w);
    int pending_at_start = r == 0, on_node = 0;
    for (int spins = 0; r == 0 && !on_node && spins < 100; spins++) {
        unsigned pp = kvi_test_peer_port(w.fd);
        for (size_t i = 0; i < nn; i++)
            on_node |= pp != 0 && pp == kvi_tc_port(cl, i);
        if (on_node)
            break;
        kvi_test_wait(&w);
        r = kvi_batch_resume(b, &w);
    }
    for (size_t i = 0; i < nn; i++)
        kvi_test_unhang(kvi_tc_server(cl, i));
    while (r == 0) {
        kvi_test_wait(&w);
        r = kvi_batch_resume(b, &w);
    }
    printf("# child: start pending %d, waited on a node %d\n", pending_at_start, on_node);
    fflush(stdout);
    int verdict = 0;
    if (!pending_at_start || !on_node)
        verdict = 11;
    for (int i = 0; i < 20 && verdict == 0; i++) {
        size_t len = 0;
        const char *v = kvi_batch_value(b, (size_t)i, &len);
        int kn = snprintf(key, sizeof key, "fk%d", i);
        if (kvi_batch_status(b, (size_t)i) != KVI_OK || v == NULL || len != (size_t)kn ||
            memcmp(v, key, len) != 0) {
            printf("# child: op %d: %s\n", i, kvi_batch_errmsg(b, (size_t)i));
            verdict = 12;
        }
    }
    if (verdict == 0 && (kvi_batch_status(b, 20) != KVI_OK || kvi_batch_integer(b, 20) != 2))
        verdict = 13;
    kvi_batch_free(b);
    return verdict;
}

static void test_cluster_map_read_without_blocking_in_a_new_process(void **state)
{
    (void)state;
    kvi_tc_spec spec = {.masters = 3, .replicas = 0};
    kvi_tc_cluster *cl = kvi_test_cluster_case(&spec);
    char url[512];
    size_t n = kvi_tc_url(cl, "redis", url, sizeof url);
    snprintf(url + n, sizeof url - n, "?cluster=yes&timeout=1000&connect_timeout=1000");
    kvi *k = kvi_test_context1(url);
    char key[16];
    for (int i = 0; i < 20; i++) {
        int kn = snprintf(key, sizeof key, "fk%d", i);
        assert_int_equal(kvi_store(k, "redis", key, (size_t)kn, key, (size_t)kn, 0), KVI_OK);
    }
    int64_t one = 0;
    assert_int_equal(kvi_add(k, "redis", "{f}n", 4, 1, 0, &one), KVI_OK);
    fflush(stdout);
    g_parent_setup = cl;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        kvi_test_child_start();
        int verdict = child_reads_map_without_blocking(k, cl);
        kvi_free(k); /* as the child has it: its own state, its parent's state */
        kvi_test_child_exit(verdict);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    for (size_t i = 0; i < kvi_tc_size(cl); i++)
        kvi_test_unhang(kvi_tc_server(cl, i));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    kvi_free(k);
    kvi_tc_free(cl);
}

/* memcached runs without blocking on kvi's own connections (mc_pipe.c):
 * with the server stopped, start returns pending on a socket to that
 * server at once; after SIGCONT the results are the single calls'. */
static void test_memcached_runs_without_blocking(void **state)
{
    (void)state;
    kvi_ts_server *s = kvi_test_memcached(NULL);
    char url[256];
    kvi_test_url(url, sizeof url, "memcached", s, "");
    kvi *k = kvi_test_context1(url);
    assert_int_equal(kvi_store(k, "memcached", "c", 1, "41", 2, 0), KVI_OK);
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    assert_int_equal(kvi_batch_store(b, "memcached", "m", 1, "z", 1, 0), KVI_OK);
    assert_int_equal(kvi_batch_fetch(b, "memcached", "m", 1), KVI_OK);
    assert_int_equal(kvi_batch_add(b, "memcached", "c", 1, 1, 0), KVI_OK);
    assert_int_equal(kill(kvi_ts_pid(s), SIGSTOP), 0);
    kvi_wait w;
    int64_t t0 = kvi_test_mono_ms();
    int r = kvi_batch_start(b, 5000, NULL, NULL, &w);
    int64_t dt = kvi_test_mono_ms() - t0;
    unsigned port = kvi_test_peer_port(w.fd);
    assert_int_equal(kill(kvi_ts_pid(s), SIGCONT), 0);
    printf("# start on a stopped memcached: %d after %lld ms, fd peer port %u (server %u)\n", r,
           (long long)dt, port, (unsigned)kvi_ts_port(s));
    assert_int_equal(r, 0);
    assert_int_equal(port, kvi_ts_port(s));
    while (r == 0) {
        kvi_test_wait(&w);
        r = kvi_batch_resume(b, &w);
    }
    assert_int_equal(r, 1);
    assert_int_equal(kvi_batch_status(b, 0), KVI_OK);
    assert_string_equal(kvi_batch_value(b, 1, NULL), "z");
    assert_int_equal(kvi_batch_status(b, 2), KVI_OK);
    assert_int_equal(kvi_batch_integer(b, 2), 42);
    kvi_batch_free(b);
    kvi_free(k);
    kvi_ts_free(s);
}

/* ---- single operations (kvi_start_*) ---------------------------------- */

/* Drives a started single operation to its end: returns after resume said
 * 1 (r: what the start returned). */
static void drive(kvi_batch *b, int r, kvi_wait *w)
{
    while (r == 0) {
        kvi_test_wait(w);
        r = kvi_batch_resume(b, w);
    }
    assert_int_equal(r, 1);
}

/* The local engine never waits: every kvi_start_* is done within the call,
 * with the single call's result as operation 0 of the batch, the callback
 * called once, and a refused argument done at once with its status. */
static void test_single_ops_on_local_are_done_at_once(void **state)
{
    (void)state;
    kvi *k = kvi_test_context1("local://");
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    struct done_count dc = {0};
    kvi_wait w;
    assert_int_equal(kvi_start_store(b, "local", "a", 1, "va", 2, 0, 0, on_done, &dc, &w), 1);
    assert_int_equal(dc.calls, 1);
    assert_int_equal(kvi_batch_status(b, 0), KVI_OK);
    assert_int_equal(kvi_start_fetch(b, "local", "a", 1, 0, on_done, &dc, &w), 1);
    assert_int_equal(dc.calls, 2);
    assert_int_equal(kvi_batch_count(b), 1);
    assert_string_equal(kvi_batch_value(b, 0, NULL), "va");
    assert_int_equal(kvi_start_store_nx(b, "local", "a", 1, "x", 1, 0, 0, NULL, NULL, &w), 1);
    assert_int_equal(kvi_batch_status(b, 0), KVI_KEY_EXISTS);
    assert_int_equal(kvi_start_add(b, "local", "n", 1, 5, 0, 0, NULL, NULL, &w), 1);
    assert_int_equal(kvi_batch_integer(b, 0), 5);
    assert_int_equal(kvi_start_sub(b, "local", "n", 1, 2, 0, 0, NULL, NULL, &w), 1);
    assert_int_equal(kvi_batch_integer(b, 0), 3);
    assert_int_equal(kvi_start_sub_bounded(b, "local", "n", 1, 10, 0, 0, 100, 0, NULL, NULL, &w),
                     1);
    assert_int_equal(kvi_batch_status(b, 0), KVI_OUT_OF_BOUNDS);
    assert_int_equal(kvi_batch_integer(b, 0), 3);
    assert_int_equal(kvi_start_add_bounded(b, "local", "n", 1, 1, 0, 0, 100, 0, NULL, NULL, &w),
                     1);
    assert_int_equal(kvi_batch_integer(b, 0), 4);
    assert_int_equal(kvi_start_counter_fetch(b, "local", "n", 1, 0, NULL, NULL, &w), 1);
    assert_int_equal(kvi_batch_integer(b, 0), 4);
    assert_int_equal(kvi_start_remove(b, "local", "a", 1, 0, NULL, NULL, &w), 1);
    assert_int_equal(kvi_batch_status(b, 0), KVI_OK);
    assert_int_equal(kvi_start_fetch(b, "local", "a", 1, 0, NULL, NULL, &w), 1);
    assert_int_equal(kvi_batch_status(b, 0), KVI_NOT_FOUND);
    /* A refused argument: done at once, its status and message kept. */
    assert_int_equal(kvi_start_fetch(b, "local", "", 0, 0, on_done, &dc, &w), 1);
    assert_int_equal(dc.calls, 3);
    assert_int_equal(kvi_batch_status(b, 0), KVI_E_INVALID);
    assert_true(strlen(kvi_batch_errmsg(b, 0)) > 0);
    assert_int_equal(kvi_start_raw_query(b, "local", "GET a", 5, 0, NULL, NULL, &w), 1);
    assert_int_equal(kvi_batch_status(b, 0), KVI_E_UNSUPPORTED);
    assert_int_equal(kvi_start_fetch(NULL, "local", "a", 1, 0, NULL, NULL, &w), -1);
    assert_int_equal(kvi_start_fetch(b, "local", "a", 1, 0, NULL, NULL, NULL), -1);
    kvi_batch_free(b);
    kvi_free(k);
}

/* Against redis a single operation is pending after its start (a
 * descriptor to wait on), ends in resume with the single call's result,
 * and two such operations are in flight at once on two batches. */
static void test_single_ops_on_redis_are_pending_then_done(void **state)
{
    (void)state;
    kvi *k = kvi_test_context1(g_url);
    kvi_batch *b = NULL, *b2 = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    assert_int_equal(kvi_batch_new(k, &b2), KVI_OK);
    kvi_status rs = kvi_remove(k, "redis", "sctr", 4);
    assert_true(rs == KVI_OK || rs == KVI_NOT_FOUND);
    struct done_count dc = {0};
    kvi_wait w, w2;
    /* With the server stopped the start cannot see its reply: pending. */
    kvi_test_hang(g_redis);
    int r = kvi_start_store(b, "redis", "s1", 2, "v1", 2, 0, 5000, on_done, &dc, &w);
    kvi_test_unhang(g_redis);
    assert_int_equal(r, 0);
    assert_true(w.fd >= 0);
    assert_int_equal(dc.calls, 0);
    drive(b, r, &w);
    assert_int_equal(dc.calls, 1);
    assert_int_equal(kvi_batch_status(b, 0), KVI_OK);
    r = kvi_start_fetch(b, "redis", "s1", 2, 5000, NULL, NULL, &w);
    assert_true(r == 0 || r == 1); /* 1: the reply came within the start */
    drive(b, r, &w);
    assert_int_equal(kvi_batch_count(b), 1);
    assert_string_equal(kvi_batch_value(b, 0, NULL), "v1");
    r = kvi_start_add(b, "redis", "sctr", 4, 7, 0, 5000, NULL, NULL, &w);
    drive(b, r, &w);
    assert_int_equal(kvi_batch_integer(b, 0), 7);
    r = kvi_start_sub_bounded(b, "redis", "sctr", 4, 10, 0, 0, 100, 5000, NULL, NULL, &w);
    drive(b, r, &w);
    assert_int_equal(kvi_batch_status(b, 0), KVI_OUT_OF_BOUNDS);
    assert_int_equal(kvi_batch_integer(b, 0), 7);
    /* Two in flight at once, each on its own connection. */
    kvi_test_hang(g_redis);
    int r1 = kvi_start_counter_fetch(b, "redis", "sctr", 4, 5000, NULL, NULL, &w);
    int r2 = kvi_start_fetch(b2, "redis", "s1", 2, 5000, NULL, NULL, &w2);
    kvi_test_unhang(g_redis);
    assert_int_equal(r1, 0);
    assert_int_equal(r2, 0);
    assert_true(w.fd != w2.fd);
    drive(b2, r2, &w2);
    drive(b, r1, &w);
    assert_int_equal(kvi_batch_integer(b, 0), 7);
    assert_string_equal(kvi_batch_value(b2, 0, NULL), "v1");
    r = kvi_start_remove(b, "redis", "s1", 2, 5000, NULL, NULL, &w);
    drive(b, r, &w);
    assert_int_equal(kvi_batch_status(b, 0), KVI_OK);
    r = kvi_start_fetch(b, "redis", "s1", 2, 5000, NULL, NULL, &w);
    drive(b, r, &w);
    assert_int_equal(kvi_batch_status(b, 0), KVI_NOT_FOUND);
    kvi_batch_free(b2);
    kvi_batch_free(b);
    kvi_free(k);
}

/* A single operation on a hung server: start returns at once; cancel
 * ends an add with KVI_E_OUTCOME_UNKNOWN (written, not answered); a
 * fetch's deadline ends it with KVI_E_TIMEOUT. */
static void test_single_op_cancel_and_deadline_on_a_hung_server(void **state)
{
    (void)state;
    kvi *k = kvi_test_context1(g_url);
    assert_int_equal(kvi_store(k, "redis", "h", 1, "v", 1, 0), KVI_OK);
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    struct done_count dc = {0};
    kvi_wait w;
    kvi_test_hang(g_redis);
    int r = kvi_start_add(b, "redis", "hn", 2, 1, 0, 0, on_done, &dc, &w);
    assert_int_equal(r, 0);
    kvi_batch_cancel(b);
    assert_int_equal(dc.calls, 1);
    assert_int_equal(kvi_batch_status(b, 0), KVI_E_OUTCOME_UNKNOWN);
    int64_t t0 = kvi_test_mono_ms();
    r = kvi_start_fetch(b, "redis", "h", 1, 200, on_done, &dc, &w);
    assert_int_equal(r, 0);
    assert_true(w.deadline_ms > 0);
    drive(b, r, &w);
    int64_t took = kvi_test_mono_ms() - t0;
    kvi_test_unhang(g_redis);
    assert_int_equal(dc.calls, 2);
    assert_int_equal(kvi_batch_status(b, 0), KVI_E_TIMEOUT);
    assert_true(took >= 150 && took < 5000);
    /* Back to normal afterwards. */
    r = kvi_start_fetch(b, "redis", "h", 1, 5000, NULL, NULL, &w);
    drive(b, r, &w);
    assert_string_equal(kvi_batch_value(b, 0, NULL), "v");
    kvi_batch_free(b);
    kvi_free(k);
}

/* Has the server close every client connection but the asking one (the
 * test's pooled connections sit idle), and waits for the close to arrive. */
static void server_closes_idle_connections(void)
{
    kvi *k2 = kvi_test_context1(g_url);
    kvi_reply *r = NULL;
    const char *q = "CLIENT KILL TYPE normal SKIPME yes";
    assert_int_equal(kvi_raw_query(k2, "redis", q, strlen(q), &r), KVI_OK);
    kvi_reply_free(r);
    kvi_free(k2);
    kvi_test_sleep_ms(50);
}

/* Non-blocking batches on a pooled connection the server closed while it
 * sat idle: GET/SET only are taken without the idle poll and sent again
 * on a new connection when the first read finds the close; a batch with
 * an add is checked first.  Everything succeeds, the add counted once. */
static void test_async_idle_connection_closed_by_the_server(void **state)
{
    (void)state;
    kvi *k = kvi_test_context1(g_url);
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    kvi_status rs = kvi_remove(k, "redis", "ictr", 4);
    assert_true(rs == KVI_OK || rs == KVI_NOT_FOUND);
    char key[16];
    for (int round = 0; round < 3; round++) {
        kvi_batch_clear(b);
        for (int i = 0; i < 20; i++) {
            int n = snprintf(key, sizeof key, "ai%d", i);
            assert_int_equal(kvi_batch_store(b, "redis", key, (size_t)n, "v", 1, 0), KVI_OK);
            assert_int_equal(kvi_batch_fetch(b, "redis", key, (size_t)n), KVI_OK);
        }
        if (round == 2)
            assert_int_equal(kvi_batch_add(b, "redis", "ictr", 4, 1, 0), KVI_OK);
        if (round > 0)
            server_closes_idle_connections();
        kvi_wait w;
        drive(b, kvi_batch_start(b, 10000, NULL, NULL, &w), &w);
        if (kvi_batch_failed(b) != 0)
            fail_msg("round %d: %s: %s", round, kvi_status_name(kvi_batch_status(b, 0)),
                     kvi_batch_errmsg(b, 0));
    }
    assert_int_equal(kvi_batch_integer(b, 40), 1);
    int64_t v = 0;
    assert_int_equal(kvi_counter_fetch(k, "redis", "ictr", 4, &v), KVI_OK);
    assert_int_equal(v, 1);
    kvi_batch_free(b);
    kvi_free(k);
}

/* A non-blocking batch of fetches whose replies arrive over many reads
 * (300 values of up to 3000 bytes, some keys missing): each op gets its
 * own value, in order. */
static void test_async_fetches_get_their_own_values(void **state)
{
    (void)state;
    kvi *k = kvi_test_context1(g_url);
    enum { N = 300 };
    static char val[3000];
    char key[16];
    for (int i = 0; i < N; i++) {
        int n = snprintf(key, sizeof key, "af%d", i);
        if (i % 10 == 9) {
            kvi_status rs = kvi_remove(k, "redis", key, (size_t)n);
            assert_true(rs == KVI_OK || rs == KVI_NOT_FOUND);
            continue;
        }
        memset(val, 'a' + i % 26, sizeof val);
        assert_int_equal(kvi_store(k, "redis", key, (size_t)n, val, (size_t)(i * 10 % 3000), 0),
                         KVI_OK);
    }
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    for (int i = 0; i < N; i++) {
        int n = snprintf(key, sizeof key, "af%d", i);
        assert_int_equal(kvi_batch_fetch(b, "redis", key, (size_t)n), KVI_OK);
    }
    kvi_wait w;
    drive(b, kvi_batch_start(b, 10000, NULL, NULL, &w), &w);
    for (int i = 0; i < N; i++) {
        if (i % 10 == 9) {
            assert_int_equal(kvi_batch_status(b, (size_t)i), KVI_NOT_FOUND);
            continue;
        }
        size_t len = 0;
        const char *v = kvi_batch_value(b, (size_t)i, &len);
        assert_non_null(v);
        assert_int_equal(len, (size_t)(i * 10 % 3000));
        for (size_t j = 0; j < len; j++)
            assert_int_equal(v[j], 'a' + i % 26);
    }
    kvi_batch_free(b);
    kvi_free(k);
}

static int group_setup(void **state)
{
    (void)state;
    g_redis = kvi_test_redis(NULL);
    kvi_test_url(g_url, sizeof g_url, "redis", g_redis, "");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (kvi_ts_pid(g_redis) != 0)
        kvi_test_unhang(g_redis);
    kvi_ts_free(g_redis);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_local_batch_is_done_at_once),
        cmocka_unit_test(test_local_batch_over_a_big_table),
        cmocka_unit_test(test_ten_thousand_ops_ten_batches_in_flight),
        cmocka_unit_test(test_hung_server_start_returns_at_once_and_deadline_ends_it),
        cmocka_unit_test(test_cancel_ends_a_pending_batch),
        cmocka_unit_test(test_memcached_runs_without_blocking),
        cmocka_unit_test(test_cluster_batch_moves_from_master_to_master),
        cmocka_unit_test(test_cluster_batch_follows_ask_and_moved_without_blocking),
        cmocka_unit_test(test_sentinel_batch_goes_to_the_master),
        cmocka_unit_test(test_cluster_map_read_without_blocking_in_a_new_process),
        cmocka_unit_test(test_failover_list_moves_on_without_blocking_and_respects_the_breaker),
        cmocka_unit_test(test_single_ops_on_local_are_done_at_once),
        cmocka_unit_test(test_single_ops_on_redis_are_pending_then_done),
        cmocka_unit_test(test_single_op_cancel_and_deadline_on_a_hung_server),
        cmocka_unit_test(test_async_idle_connection_closed_by_the_server),
        cmocka_unit_test(test_async_fetches_get_their_own_values),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
