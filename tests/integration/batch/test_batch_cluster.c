/*
 * test_batch_cluster.c -- Redis Cluster batches against one real 3-master
 * cluster (started once for the group): the pipelines to the masters are
 * in flight at once, blocking (kvi_batch_run) and non-blocking
 * (kvi_batch_start / _resume); a stopped master holds up only its own
 * ops.  "Not waiting master after master" is shown by results, not by
 * timing: with one master stopped and a short deadline, the ops of the
 * other masters must still end KVI_OK.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "kvi/kvi.h"
#include "kvitest.h"
#include "testcluster.h"

static kvi_tc_cluster *g_cl;
static char g_url[512];
static int g_skip; /* no cluster: every test skips loudly */
static char g_skip_why[256];

/* The Redis Cluster slot of a key with no hash tag (CRC16/XMODEM). */
static unsigned key_slot(const char *key)
{
    unsigned crc = 0;
    for (const char *p = key; *p; p++) {
        crc ^= (unsigned)(unsigned char)*p << 8;
        for (int i = 0; i < 8; i++)
            crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    return crc % 16384;
}

/* tags[m] = a hash tag ("t3") whose slot master m serves, for the 3
 * masters. */
static void tags_per_master(char tags[3][8])
{
    int found = 0;
    for (int i = 0; i < 3; i++)
        tags[i][0] = '\0';
    for (int t = 0; t < 200 && found < 3; t++) {
        char tag[8];
        snprintf(tag, sizeof tag, "t%d", t);
        size_t m = 99;
        assert_int_equal(kvi_tc_master_of(g_cl, 0, key_slot(tag), &m), KVI_TS_OK);
        if (m < 3 && tags[m][0] == '\0') {
            memcpy(tags[m], tag, sizeof tag);
            found++;
        }
    }
    assert_int_equal(found, 3);
}

/* A context on the cluster: cluster=yes, timeout=5000 unless extra
 * ("&name=value...") gives its own. */
static kvi *cluster_context(const char *extra)
{
    char url[640];
    snprintf(url, sizeof url, "%s?cluster=yes%s%s", g_url,
             strstr(extra, "&timeout=") != NULL ? "" : "&timeout=5000", extra);
    return kvi_test_context1(url);
}

/* The batch of test_*_overlap: per master m a store, a fetch and an add
 * of keys {tags[m]}...; master `stopped`'s ops first, so that a batch
 * going master after master would wait for it before the others. */
static void add_ops(kvi_batch *b, char tags[3][8], size_t stopped, const char *pfx)
{
    char key[32];
    for (size_t j = 0; j < 3; j++) {
        size_t m = (stopped + j) % 3;
        int kn = snprintf(key, sizeof key, "{%s}%s", tags[m], pfx);
        assert_int_equal(kvi_batch_store(b, "redis", key, (size_t)kn, tags[m], strlen(tags[m]), 0),
                         KVI_OK);
        assert_int_equal(kvi_batch_fetch(b, "redis", key, (size_t)kn), KVI_OK);
        kn = snprintf(key, sizeof key, "{%s}%sn", tags[m], pfx);
        assert_int_equal(kvi_batch_add(b, "redis", key, (size_t)kn, 1, 0), KVI_OK);
    }
}

/* Ops 3..8 (the running masters') right, ops 0..2 (the stopped one's)
 * ended by the deadline: the store and fetch KVI_E_TIMEOUT, the add
 * KVI_E_OUTCOME_UNKNOWN (written, not answered). */
static void check_overlap(kvi_batch *b, char tags[3][8], size_t stopped, int64_t add_want)
{
    for (size_t i = 3; i < 9; i++)
        if (kvi_batch_status(b, i) != KVI_OK)
            fail_msg("op %zu (a running master's): %s %s", i,
                     kvi_status_name(kvi_batch_status(b, i)), kvi_batch_errmsg(b, i));
    for (size_t j = 1; j < 3; j++) {
        size_t m = (stopped + j) % 3;
        assert_string_equal(kvi_batch_value(b, 3 * j + 1, NULL), tags[m]);
        assert_int_equal(kvi_batch_integer(b, 3 * j + 2), add_want);
    }
    assert_int_equal(kvi_batch_status(b, 1), KVI_E_TIMEOUT);
    assert_int_equal(kvi_batch_status(b, 2), KVI_E_OUTCOME_UNKNOWN);
}

/* Ops [from, to) of b ended KVI_OK, else the case fails naming `what`,
 * the op, its status and message. */
static void expect_ok(kvi_batch *b, size_t from, size_t to, const char *what)
{
    for (size_t i = from; i < to; i++)
        if (kvi_batch_status(b, i) != KVI_OK)
            fail_msg("%s op %zu: %s %s", what, i, kvi_status_name(kvi_batch_status(b, i)),
                     kvi_batch_errmsg(b, i));
}

/* After add_ops(b, tags, 0, ...): each master's fetch read its store;
 * each add gave add_want (add_want < 0: the adds are not looked at). */
static void expect_values(kvi_batch *b, char tags[3][8], int64_t add_want)
{
    for (size_t m = 0; m < 3; m++) {
        assert_string_equal(kvi_batch_value(b, 3 * m + 1, NULL), tags[m]);
        if (add_want >= 0)
            assert_int_equal(kvi_batch_integer(b, 3 * m + 2), add_want);
    }
}

/* The start of every case: skips it when there is no cluster; tags[m]
 * for each master. */
static void case_tags(char tags[3][8])
{
    if (g_skip)
        KVI_TEST_SKIP_CASE("%s", g_skip_why);
    tags_per_master(tags);
}

/* case_tags(), then a context (cluster_context(extra)) in *k and a new
 * batch; with `warm`, a first batch add_ops(warm) has run with every op
 * right (the map read, a pooled connection per master, the adds at 1) and
 * the batch is returned cleared. */
static kvi_batch *case_batch(char tags[3][8], const char *extra, const char *warm, kvi **k)
{
    case_tags(tags);
    *k = cluster_context(extra);
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(*k, &b), KVI_OK);
    if (warm != NULL) {
        add_ops(b, tags, 0, warm);
        assert_int_equal(kvi_batch_run(b, 10000), KVI_OK);
        kvi_batch_clear(b);
    }
    return b;
}

/* How a non-blocking run went. */
struct run {
    int end;          /* what the last start/resume returned (1: done) */
    int64_t start_ms; /* how long start took */
    int64_t total_ms; /* start to done */
};

/* Runs b from a poll() loop (kvi_test_wait) to its end. */
static struct run run_nonblocking(kvi_batch *b, uint32_t timeout_ms)
{
    struct run out = {0};
    kvi_wait w;
    int64_t t0 = kvi_test_mono_ms();
    int r = kvi_batch_start(b, timeout_ms, NULL, NULL, &w);
    out.start_ms = kvi_test_mono_ms() - t0;
    while (r == 0) {
        kvi_test_wait(&w);
        r = kvi_batch_resume(b, &w);
    }
    out.total_ms = kvi_test_mono_ms() - t0;
    out.end = r;
    return out;
}

/* redis-cli ARGS on node i (its output not looked at). */
static void cli(size_t i, const char *const *args)
{
    char *out = NULL;
    assert_int_equal(kvi_tc_cli(g_cl, i, &out, args), KVI_TS_OK);
    free(out);
}

/* kvi_batch_run writes every master's pipeline before it reads: with
 * master A stopped (its ops first in the batch) and a 1500 ms deadline,
 * the ops of the other two masters end KVI_OK, A's by the deadline.  A
 * batch going master after master would spend the deadline on A and end
 * the others unsent (KVI_E_TIMEOUT). */
static void test_blocking_batch_has_every_master_in_flight(void **state)
{
    (void)state;
    char tags[3][8];
    kvi *k = NULL;
    kvi_batch *b = case_batch(tags, "", "bw", &k);
    size_t stopped = 1;
    add_ops(b, tags, stopped, "b");
    pid_t pid = kvi_ts_pid(kvi_tc_server(g_cl, stopped));
    assert_int_equal(kill(pid, SIGSTOP), 0);
    int64_t t0 = kvi_test_mono_ms();
    kvi_status s = kvi_batch_run(b, 1500);
    int64_t took = kvi_test_mono_ms() - t0;
    assert_int_equal(kill(pid, SIGCONT), 0);
    printf("# blocking batch with master %zu stopped: %s after %lld ms\n", stopped,
           kvi_status_name(s), (long long)took);
    check_overlap(b, tags, stopped, 1);
    assert_true(took < 5000);
    kvi_batch_free(b);
    kvi_free(k);
}

/* kvi_batch_start / _resume have every master's pipeline in flight at
 * once, the caller waiting on one epoll descriptor: with master A stopped
 * (its ops first) and a 1500 ms deadline, the other masters' ops end
 * KVI_OK, A's by the deadline.  Going master after master, the batch
 * would wait on A until the deadline and end the others unsent. */
static void test_nonblocking_batch_has_every_master_in_flight(void **state)
{
    (void)state;
    char tags[3][8];
    kvi *k = NULL;
    kvi_batch *b = case_batch(tags, "", "nw", &k);
    /* Two masters stopped: their pipelines both wait, so the caller waits
     * on an epoll descriptor; then they go on, every result right.  (With
     * all masters up on a loaded machine the replies may all be there
     * before the batch waits.) */
    add_ops(b, tags, 0, "nu");
    pid_t p1 = kvi_ts_pid(kvi_tc_server(g_cl, 1)), p2 = kvi_ts_pid(kvi_tc_server(g_cl, 2));
    assert_int_equal(kill(p1, SIGSTOP), 0);
    assert_int_equal(kill(p2, SIGSTOP), 0);
    kvi_wait w;
    int epolled = 0, stopped2 = 1;
    int r = kvi_batch_start(b, 20000, NULL, NULL, &w);
    while (r == 0) {
        if (kvi_test_fd_is(w.fd, "eventpoll")) {
            epolled = 1;
            if (stopped2) {
                kill(p1, SIGCONT);
                kill(p2, SIGCONT);
                stopped2 = 0;
            }
        }
        kvi_test_wait(&w);
        r = kvi_batch_resume(b, &w);
    }
    if (stopped2) {
        kill(p1, SIGCONT);
        kill(p2, SIGCONT);
    }
    assert_int_equal(r, 1);
    assert_int_equal(kvi_batch_failed(b), 0);
    expect_values(b, tags, 1);
    printf("# two masters stopped: waited on an epoll descriptor: %d\n", epolled);
#ifdef __linux__
    assert_true(epolled);
#endif
    size_t stopped = 2;
    kvi_batch_clear(b);
    add_ops(b, tags, stopped, "n");
    pid_t pid = kvi_ts_pid(kvi_tc_server(g_cl, stopped));
    assert_int_equal(kill(pid, SIGSTOP), 0);
    struct run run = run_nonblocking(b, 1500);
    assert_int_equal(kill(pid, SIGCONT), 0);
    printf("# non-blocking batch with master %zu stopped: done after %lld ms\n", stopped,
           (long long)run.total_ms);
    assert_int_equal(run.end, 1);
    check_overlap(b, tags, stopped, 1);
    kvi_batch_free(b);
    kvi_free(k);
}

/* Starts b while the server of `pid` is stopped: start must return
 * pending, waiting on a socket to `port` (the step that talks to it runs
 * without blocking); then the server goes on and the batch is driven to
 * its end.  Returns whether it waited there. */
static int start_with_stopped(kvi_batch *b, pid_t pid, unsigned port, uint32_t timeout_ms)
{
    assert_int_equal(kill(pid, SIGSTOP), 0);
    kvi_wait w;
    int on_stopped = 0, stopped = 1;
    int64_t t0 = kvi_test_mono_ms();
    int r = kvi_batch_start(b, timeout_ms, NULL, NULL, &w);
    int64_t start_ms = kvi_test_mono_ms() - t0;
    while (r == 0) {
        if (stopped && kvi_test_peer_port(w.fd) == port) {
            on_stopped = 1;
            stopped = 0;
            assert_int_equal(kill(pid, SIGCONT), 0);
        }
        kvi_test_wait(&w);
        r = kvi_batch_resume(b, &w);
    }
    if (stopped)
        kill(pid, SIGCONT);
    printf("# start took %lld ms; waited on the stopped server (port %u): %d\n",
           (long long)start_ms, port, on_stopped);
    assert_int_equal(r, 1);
    return on_stopped;
}

/* A batch of add_ops(pfx) through k (a context that has read no map yet),
 * started with node 0 stopped: it must come to wait on node 0's socket
 * (start_with_stopped), then end with every op right. */
static void runs_after_node0(kvi *k, char tags[3][8], const char *pfx)
{
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    add_ops(b, tags, 0, pfx);
    int waited = start_with_stopped(b, kvi_ts_pid(kvi_tc_server(g_cl, 0)), kvi_tc_port(g_cl, 0),
                                    20000);
    expect_ok(b, 0, 9, "");
    expect_values(b, tags, -1);
    assert_true(waited);
    kvi_batch_free(b);
}

/* A connection whose mode is not known yet (lazy, cluster=auto) decides
 * it without blocking: CLUSTER SHARDS is asked of the first seed on a
 * non-blocking connection.  With that seed stopped, start returns pending
 * on its socket (the blocking detection would wait inside start); then
 * the batch runs on the cluster, every result right.  Same for a
 * standalone server under cluster=auto ("cluster support disabled"). */
static void test_mode_detected_without_blocking(void **state)
{
    (void)state;
    char tags[3][8];
    case_tags(tags);
    char url[640];
    snprintf(url, sizeof url, "%s?cluster=auto&lazy=yes&timeout=3000", g_url);
    kvi *k = kvi_test_context1(url);
    runs_after_node0(k, tags, "md");
    kvi_free(k);

    /* Seed 0 stays stopped: after its connect_timeout + timeout (here
     * 300 + 1000 ms) the next seed is asked, without blocking; the ops on
     * the other masters end right (seed 0 is a master too: none of its
     * keys; each of their replies may take the timeout). */
    snprintf(url, sizeof url, "%s?cluster=auto&lazy=yes&timeout=1000&connect_timeout=300", g_url);
    k = kvi_test_context1(url);
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    char key[32];
    for (size_t j = 1; j < 3; j++) {
        int kn = snprintf(key, sizeof key, "{%s}mh", tags[j]);
        assert_int_equal(kvi_batch_store(b, "redis", key, (size_t)kn, tags[j], strlen(tags[j]), 0),
                         KVI_OK);
        assert_int_equal(kvi_batch_fetch(b, "redis", key, (size_t)kn), KVI_OK);
    }
    pid_t pid0 = kvi_ts_pid(kvi_tc_server(g_cl, 0));
    assert_int_equal(kill(pid0, SIGSTOP), 0);
    kvi_wait w;
    int64_t t0 = kvi_test_mono_ms();
    int r = kvi_batch_start(b, 8000, NULL, NULL, &w);
    int64_t start_ms = kvi_test_mono_ms() - t0;
    int on_seed0 = 0;
    while (r == 0) {
        on_seed0 |= kvi_test_peer_port(w.fd) == kvi_tc_port(g_cl, 0);
        kvi_test_wait(&w);
        r = kvi_batch_resume(b, &w);
    }
    int64_t took = kvi_test_mono_ms() - t0;
    assert_int_equal(kill(pid0, SIGCONT), 0);
    printf("# seed 0 kept stopped: start %lld ms, done after %lld ms, waited on it: %d\n",
           (long long)start_ms, (long long)took, on_seed0);
    assert_int_equal(r, 1);
    expect_ok(b, 0, 4, "seed 0 stopped:");
    assert_string_equal(kvi_batch_value(b, 1, NULL), tags[1]);
    assert_string_equal(kvi_batch_value(b, 3, NULL), tags[2]);
    assert_true(on_seed0);
    assert_true(start_ms < 200);
    kvi_batch_free(b);
    kvi_free(k);

    /* A standalone server under cluster=auto. */
    kvi_ts_server *one = kvi_test_redis(NULL);
    char surl[256];
    kvi_test_url(surl, sizeof surl, "redis", one, "?cluster=auto&lazy=yes&timeout=3000");
    k = kvi_test_context1(surl);
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    assert_int_equal(kvi_batch_store(b, "redis", "sa", 2, "v", 1, 0), KVI_OK);
    assert_int_equal(kvi_batch_add(b, "redis", "sn", 2, 2, 0), KVI_OK);
    assert_int_equal(kvi_batch_fetch(b, "redis", "sa", 2), KVI_OK);
    int waited = start_with_stopped(b, kvi_ts_pid(one), kvi_ts_port(one), 20000);
    expect_ok(b, 0, 3, "standalone");
    assert_int_equal(kvi_batch_integer(b, 1), 2);
    assert_string_equal(kvi_batch_value(b, 2, NULL), "v");
    assert_true(waited);
    kvi_batch_free(b);
    kvi_free(k);
    kvi_ts_free(one);
}

/* The map read moves on without blocking when a node cannot give it:
 * cluster=yes with seeds [a closed port, a standalone server (answers
 * "cluster support disabled"), the cluster's nodes]: the refused connect
 * and the refusal are passed, and the read comes to wait on the first
 * cluster node's socket (stopped) instead of running the blocking path
 * inside start. */
static void test_map_read_tries_the_next_node_without_blocking(void **state)
{
    (void)state;
    char tags[3][8];
    case_tags(tags);
    kvi_ts_server *one = kvi_test_redis(NULL);
    uint16_t closed = 0;
    assert_int_equal(kvi_ts_free_port(&closed), KVI_TS_OK);
    char url[900];
    /* g_url is "redis://127.0.0.1:P1,...,127.0.0.1:Pn/" */
    snprintf(url, sizeof url, "redis://127.0.0.1:%u,127.0.0.1:%u,%s?cluster=yes&lazy=yes&timeout=3000",
             (unsigned)closed, (unsigned)kvi_ts_port(one), g_url + strlen("redis://"));
    kvi *k = kvi_test_context1(url);
    runs_after_node0(k, tags, "mr");
    kvi_free(k);
    kvi_ts_free(one);
}

/* A batch across a CLUSTERDOWN window: a slot of master M is taken from it
 * (CLUSTER DELSLOTS: M answers "CLUSTERDOWN Hash slot not served" -- and,
 * the cluster not fully covered, CLUSTERDOWN for its other keys): the ops
 * that did not run wait the backoff on a timerfd (not a sleep inside
 * resume), the map is read again, and when the slot is back they are sent
 * again: every op right, the add counted once.  The window is measured,
 * not guessed: when the batch first waits on the timer, the slot is given
 * back (ADDSLOTS) and the batch is resumed only once every node says the
 * cluster is ok again and agrees on the map (however long a loaded
 * machine takes: the backoffs alone, 10 ms doubling 6 times, may not
 * outlast that).  The connection's timeout, which bounds the backoffs,
 * and the batch's deadline leave room for that wait. */
static void test_clusterdown_window_waits_on_a_timer(void **state)
{
    (void)state;
    char tags[3][8];
    kvi *k = NULL;
    kvi_batch *b = case_batch(tags, "&timeout=30000", "cw", &k);
    size_t m = 1;
    char slot[8];
    snprintf(slot, sizeof slot, "%u", key_slot(tags[m]));
    const char *del[] = {"CLUSTER", "DELSLOTS", slot, NULL};
    const char *add[] = {"CLUSTER", "ADDSLOTS", slot, NULL};
    cli(m, del);
    add_ops(b, tags, 0, "cd");
    kvi_wait w;
    int timer_waits = 0, restored = 0;
    int64_t back_ms = -1;
    int r = kvi_batch_start(b, 60000, NULL, NULL, &w);
    while (r == 0) {
        if (kvi_test_fd_is(w.fd, "timerfd")) {
            timer_waits++;
            if (!restored) {
                int64_t t0 = kvi_test_mono_ms();
                cli(m, add);
                restored = 1;
                assert_int_equal(kvi_tc_wait_ok(g_cl, 20000), KVI_TS_OK);
                back_ms = kvi_test_mono_ms() - t0;
            }
        }
        kvi_test_wait(&w);
        r = kvi_batch_resume(b, &w);
    }
    if (!restored) {
        char *out = NULL;
        kvi_tc_cli(g_cl, m, &out, add);
        free(out);
    }
    printf("# CLUSTERDOWN window: %d waits on a timerfd; the slot was back after %lld ms\n",
           timer_waits, (long long)back_ms);
    assert_int_equal(r, 1);
    expect_ok(b, 0, 9, "");
    expect_values(b, tags, 1);
    assert_true(timer_waits > 0);
    assert_int_equal(kvi_tc_wait_ok(g_cl, 20000), KVI_TS_OK);
    kvi_batch_free(b);
    kvi_free(k);
}

/* redis-cli ARGS on node i; its output must not be an error. */
static void cli_ok(size_t i, const char *const *args)
{
    char *out = NULL;
    kvi_ts_result r = kvi_tc_cli(g_cl, i, &out, args);
    if (r != KVI_TS_OK || out == NULL || strncmp(out, "ERR", 3) == 0)
        fail_msg("redis-cli %s %s %s on node %zu: %s", args[0], args[1], args[2] ? args[2] : "", i,
                 out != NULL ? out : kvi_tc_errmsg());
    free(out);
}

/* After a MOVED the next non-blocking batch reads the map first (from
 * the node the MOVED named): two empty slots of master src move to dst
 * behind kvi's back; batch 1 on the first slot is redirected (MOVED);
 * batch 2 on the second slot, with src stopped, goes straight to dst --
 * with only the first slot recorded it would wait on src until its
 * deadline. */
static void test_moved_makes_the_next_batch_read_the_map(void **state)
{
    (void)state;
    char tags[3][8];
    kvi *k = NULL;
    kvi_batch *b = case_batch(tags, "", "mw", &k); /* warm: the map */
    size_t src = 1, dst = 2;
    char tag[2][8];
    int found = 0;
    for (int t = 0; t < 400 && found < 2; t++) {
        snprintf(tag[found], sizeof tag[found], "u%d", t);
        size_t m = 99;
        assert_int_equal(kvi_tc_master_of(g_cl, 0, key_slot(tag[found]), &m), KVI_TS_OK);
        if (m == src && (found == 0 || key_slot(tag[0]) != key_slot(tag[found])))
            found++;
    }
    assert_int_equal(found, 2);
    char src_id[41], dst_id[41];
    assert_int_equal(kvi_tc_node_id(g_cl, src, src_id), KVI_TS_OK);
    assert_int_equal(kvi_tc_node_id(g_cl, dst, dst_id), KVI_TS_OK);
    for (int i = 0; i < 2; i++) {
        /* The migration's steps (dst IMPORTING, src MIGRATING, then NODE on
         * dst first: it bumps dst's config epoch, so that the cluster
         * keeps the new owner). */
        char slot[8];
        snprintf(slot, sizeof slot, "%u", key_slot(tag[i]));
        const char *importing[] = {"CLUSTER", "SETSLOT", slot, "IMPORTING", src_id, NULL};
        const char *migrating[] = {"CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id, NULL};
        const char *node_cmd[] = {"CLUSTER", "SETSLOT", slot, "NODE", dst_id, NULL};
        cli_ok(dst, importing);
        cli_ok(src, migrating);
        for (size_t n = 0; n < 3; n++)
            cli_ok((n + dst) % 3, node_cmd);
    }
    assert_int_equal(kvi_tc_wait_ok(g_cl, 20000), KVI_TS_OK);
    for (int i = 0; i < 2; i++) {
        size_t m0 = 99, m2 = 99;
        kvi_tc_master_of(g_cl, 0, key_slot(tag[i]), &m0);
        kvi_tc_master_of(g_cl, src, key_slot(tag[i]), &m2);
        printf("# slot %u now on node %zu (node 0 says), %zu (src says)\n", key_slot(tag[i]), m0, m2);
    }
    char key[32];
    kvi_wait w;
    for (int i = 0; i < 2; i++) {
        kvi_batch_clear(b);
        int kn = snprintf(key, sizeof key, "{%s}m", tag[i]);
        assert_int_equal(kvi_batch_add(b, "redis", key, (size_t)kn, 1, 0), KVI_OK);
        pid_t pid = kvi_ts_pid(kvi_tc_server(g_cl, src));
        if (i == 1)
            assert_int_equal(kill(pid, SIGSTOP), 0);
        int on_src = 0;
        int r = kvi_batch_start(b, 3000, NULL, NULL, &w);
        while (r == 0) {
            on_src |= kvi_test_peer_port(w.fd) == kvi_tc_port(g_cl, src);
            kvi_test_wait(&w);
            r = kvi_batch_resume(b, &w);
        }
        if (i == 1)
            assert_int_equal(kill(pid, SIGCONT), 0);
        printf("# batch %d on a moved slot: waited on the old master: %d\n", i + 1, on_src);
        assert_int_equal(r, 1);
        if (kvi_batch_status(b, 0) != KVI_OK)
            fail_msg("batch %d: %s", i + 1, kvi_batch_errmsg(b, 0));
        assert_int_equal(kvi_batch_integer(b, 0), 1);
        if (i == 1)
            assert_false(on_src);
    }
    kvi_batch_free(b);
    kvi_free(k);
}

/* Every master closes kvi's idle pooled connections (CLIENT KILL). */
static void kill_idle_clients(void)
{
    const char *kill_cmd[] = {"CLIENT", "KILL", "TYPE", "normal", NULL};
    for (size_t m = 0; m < 3; m++)
        cli(m, kill_cmd);
    usleep(50 * 1000); /* the FINs reach kvi's sockets */
}

/* Connections the masters closed while they sat in the pool, with every
 * master in flight at once: a pipeline of GET/SET only is written again
 * once on a new connection (its first read saw the close), one holding an
 * add is checked before it is written; every op right, the adds counted
 * once -- blocking and non-blocking. */
static void test_idle_connections_closed_on_every_master(void **state)
{
    (void)state;
    char tags[3][8];
    kvi *k = NULL;
    kvi_batch *b = case_batch(tags, "", "ic", &k); /* a pooled connection per master; adds at 1 */
    char key[32];
    for (int round = 0; round < 4; round++) {
        int async = round >= 2, with_add = round % 2;
        kill_idle_clients();
        kvi_batch_clear(b);
        for (size_t m = 0; m < 3; m++) {
            int kn = snprintf(key, sizeof key, "{%s}ic", tags[m]);
            assert_int_equal(kvi_batch_fetch(b, "redis", key, (size_t)kn), KVI_OK);
            kn = snprintf(key, sizeof key, "{%s}icn", tags[m]);
            if (with_add)
                assert_int_equal(kvi_batch_add(b, "redis", key, (size_t)kn, 1, 0), KVI_OK);
            else
                assert_int_equal(kvi_batch_counter_fetch(b, "redis", key, (size_t)kn), KVI_OK);
        }
        if (async) {
            assert_int_equal(run_nonblocking(b, 10000).end, 1);
        } else {
            kvi_batch_run(b, 10000);
        }
        /* adds: 1 (warm), +1 in round 1, +1 in round 3 */
        int64_t want = round < 1 ? 1 : round < 3 ? 2 : 3;
        for (size_t m = 0; m < 3; m++) {
            if (kvi_batch_status(b, 2 * m) != KVI_OK || kvi_batch_status(b, 2 * m + 1) != KVI_OK)
                fail_msg("round %d (%s, %s) master %zu: %s / %s", round,
                         async ? "non-blocking" : "blocking", with_add ? "add" : "reads", m,
                         kvi_batch_errmsg(b, 2 * m), kvi_batch_errmsg(b, 2 * m + 1));
            assert_string_equal(kvi_batch_value(b, 2 * m, NULL), tags[m]);
            assert_int_equal(kvi_batch_integer(b, 2 * m + 1), want);
        }
    }
    kvi_batch_free(b);
    kvi_free(k);
}

/* wait_replicas in a Cluster (its masters have no replica here, so every
 * WAIT answers 0 after wait_timeout): the non-blocking batch puts one WAIT
 * in each master's pipeline, all in flight at once, and returns from start
 * at once; the ops end as the blocking batch ends them (a store
 * KVI_E_TIMEOUT "confirmed by 0 of 1 replicas", an add
 * KVI_E_OUTCOME_UNKNOWN, a fetch its value).  The blocking path runs each
 * write alone with its WAIT (6 x 300 ms here), inside start before. */
static void test_wait_replicas_without_blocking(void **state)
{
    (void)state;
    char tags[3][8];
    kvi *k = NULL;
    kvi_batch *b = case_batch(tags, "&wait_replicas=1&wait_timeout=300", NULL, &k);
    add_ops(b, tags, 0, "wb");
    (void)kvi_batch_run(b, 20000); /* its ops' statuses are compared below */
    kvi_status want[9];
    for (size_t i = 0; i < 9; i++)
        want[i] = kvi_batch_status(b, i);
    kvi_batch_clear(b);
    add_ops(b, tags, 0, "wn");
    struct run run = run_nonblocking(b, 20000);
    printf("# wait_replicas=1, no replicas: start in %lld ms, done after %lld ms\n",
           (long long)run.start_ms, (long long)run.total_ms);
    assert_int_equal(run.end, 1);
    assert_true(run.start_ms < 250);
    for (size_t m = 0; m < 3; m++) {
        const char *msg = kvi_batch_errmsg(b, 3 * m);
        printf("#   master %zu: store %s (%s), add %s\n", m,
               kvi_status_name(kvi_batch_status(b, 3 * m)), msg ? msg : "",
               kvi_status_name(kvi_batch_status(b, 3 * m + 2)));
        assert_int_equal(kvi_batch_status(b, 3 * m), KVI_E_TIMEOUT);
        assert_non_null(msg);
        assert_non_null(strstr(msg, "confirmed by 0 of 1 replicas"));
        assert_int_equal(kvi_batch_status(b, 3 * m + 1), KVI_OK);
        assert_string_equal(kvi_batch_value(b, 3 * m + 1, NULL), tags[m]);
        assert_int_equal(kvi_batch_status(b, 3 * m + 2), KVI_E_OUTCOME_UNKNOWN);
    }
    for (size_t i = 0; i < 9; i++)
        if (kvi_batch_status(b, i) != want[i])
            fail_msg("op %zu: %s non-blocking, %s blocking", i,
                     kvi_status_name(kvi_batch_status(b, i)), kvi_status_name(want[i]));
    kvi_batch_free(b);
    kvi_free(k);
}

static int group_setup(void **state)
{
    (void)state;
    kvi_tc_spec spec = {.masters = 3, .replicas = 0};
    kvi_ts_result tr = kvi_tc_start(&spec, &g_cl);
    if (tr != KVI_TS_OK) {
        g_skip = 1;
        snprintf(g_skip_why, sizeof g_skip_why, "no Redis Cluster: %s", kvi_tc_errmsg());
        if (tr != KVI_TS_MISSING) {
            fprintf(stderr, "cluster: %s\n", kvi_tc_errmsg());
            return -1;
        }
        return 0;
    }
    kvi_tc_url(g_cl, "redis", g_url, sizeof g_url);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (g_cl != NULL)
        for (size_t i = 0; i < kvi_tc_size(g_cl); i++)
            kill(kvi_ts_pid(kvi_tc_server(g_cl, i)), SIGCONT);
    kvi_tc_free(g_cl);
    return 0;
}

/* Raw queries whose keys only the server can name (a command the engine's
 * key table does not know: MEMORY USAGE key): COMMAND GETKEYS is asked of
 * a node by steps before the ops are grouped -- the working seed first,
 * here stopped (its keys are not in the batch): start returns pending on
 * its socket, where a GETKEYS on the blocking path would wait inside
 * start; then each query goes to the master of its key (masters 1 and 2),
 * a query the server finds no key in (MEMORY DOCTOR) to any master, every
 * result right. */
static void test_raw_query_keys_asked_without_blocking(void **state)
{
    (void)state;
    if (g_skip)
        KVI_TEST_SKIP_CASE("%s", g_skip_why);
    char tags[3][8];
    tags_per_master(tags);
    kvi *k = cluster_context("");
    char key[3][32];
    int kn[3];
    for (size_t m = 1; m < 3; m++) {
        kn[m] = snprintf(key[m], sizeof key[m], "{%s}mu", tags[m]);
        assert_int_equal(kvi_store(k, "redis", key[m], (size_t)kn[m], "value", 5, 0), KVI_OK);
    }
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    char q[64];
    for (size_t m = 1; m < 3; m++) {
        int qn = snprintf(q, sizeof q, "MEMORY USAGE %s", key[m]);
        assert_int_equal(kvi_batch_raw_query(b, "redis", q, (size_t)qn), KVI_OK);
    }
    assert_int_equal(kvi_batch_fetch(b, "redis", key[1], (size_t)kn[1]), KVI_OK);
    assert_int_equal(kvi_batch_raw_query(b, "redis", "MEMORY DOCTOR", 13), KVI_OK);
    int64_t t0 = kvi_test_mono_ms();
    int waited = start_with_stopped(b, kvi_ts_pid(kvi_tc_server(g_cl, 0)), kvi_tc_port(g_cl, 0),
                                    20000);
    int64_t took = kvi_test_mono_ms() - t0;
    for (size_t i = 0; i < 4; i++)
        printf("#   op %zu: %s %s (reply type %d)\n", i, kvi_status_name(kvi_batch_status(b, i)),
               kvi_batch_errmsg(b, i), (int)kvi_reply_type_of(kvi_batch_reply(b, i)));
    printf("# raw keys by COMMAND GETKEYS: done in %lld ms\n", (long long)took);
    for (size_t i = 0; i < 4; i++)
        if (kvi_batch_status(b, i) != KVI_OK)
            fail_msg("op %zu: %s", i, kvi_batch_errmsg(b, i));
    assert_int_equal(kvi_reply_type_of(kvi_batch_reply(b, 0)), KVI_REPLY_INTEGER);
    assert_int_equal(kvi_reply_type_of(kvi_batch_reply(b, 1)), KVI_REPLY_INTEGER);
    assert_true(kvi_reply_integer(kvi_batch_reply(b, 0)) > 0);
    assert_true(kvi_reply_integer(kvi_batch_reply(b, 1)) > 0);
    assert_string_equal(kvi_batch_value(b, 2, NULL), "value");
    assert_int_equal(kvi_reply_type_of(kvi_batch_reply(b, 3)), KVI_REPLY_STRING);
    assert_true(waited);
    kvi_batch_free(b);
    kvi_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocking_batch_has_every_master_in_flight),
        cmocka_unit_test(test_nonblocking_batch_has_every_master_in_flight),
        cmocka_unit_test(test_mode_detected_without_blocking),
        cmocka_unit_test(test_map_read_tries_the_next_node_without_blocking),
        cmocka_unit_test(test_clusterdown_window_waits_on_a_timer),
        cmocka_unit_test(test_moved_makes_the_next_batch_read_the_map),
        cmocka_unit_test(test_idle_connections_closed_on_every_master),
        cmocka_unit_test(test_wait_replicas_without_blocking),
        cmocka_unit_test(test_raw_query_keys_asked_without_blocking),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
