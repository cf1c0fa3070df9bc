/*
 * test_batch_async_redis.c -- what the redis engine's non-blocking path
 * (docs/async.md) runs without blocking besides plain pipelines:
 * wait_replicas (the WAIT in the pipeline), raw queries, and Sentinel
 * (the sentinels asked in turn, the ROLE check of a newly named master,
 * a failover noticed by the non-blocking path itself).  "Without
 * blocking" is shown by the descriptor, not by timing alone: the server
 * that must answer is SIGSTOPped and start/resume must come to wait on a
 * socket whose peer is that server (or return pending at once), where the
 * blocking path would have waited inside start.
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
#include "testsentinel.h"

/* How a non-blocking run went. */
struct run {
    int start;      /* what start returned */
    int end;        /* what the last start/resume returned (1: done) */
    int64_t start_ms; /* how long start took */
    int64_t total_ms; /* start to done */
    int waited_on;  /* it waited on a socket to `port` */
};

/* Runs b from a poll() loop (kvi_test_wait); when `stopped` is given
 * (SIGSTOPped by the caller), it is let go (SIGCONT) once the batch waits
 * on a socket to port, or when the batch ended.  No cmocka check: a
 * fork()ed child uses it too. */
static struct run run_batch(kvi_batch *b, uint32_t timeout_ms, pid_t stopped, unsigned port)
{
    struct run out = {0};
    kvi_wait w;
    int64_t t0 = kvi_test_mono_ms();
    int r = kvi_batch_start(b, timeout_ms, NULL, NULL, &w);
    out.start = r;
    out.start_ms = kvi_test_mono_ms() - t0;
    while (r == 0) {
        if (port != 0 && kvi_test_peer_port(w.fd) == port) {
            out.waited_on = 1;
            if (stopped > 0) {
                kill(stopped, SIGCONT);
                stopped = 0;
            }
        }
        kvi_test_wait(&w);
        r = kvi_batch_resume(b, &w);
    }
    if (stopped > 0)
        kill(stopped, SIGCONT);
    out.total_ms = kvi_test_mono_ms() - t0;
    out.end = r;
    return out;
}

/* run_batch(), which must end done. */
static struct run drive(kvi_batch *b, uint32_t timeout_ms, pid_t stopped, unsigned port)
{
    struct run out = run_batch(b, timeout_ms, stopped, port);
    assert_int_equal(out.end, 1);
    return out;
}

static void expect_status(kvi_batch *b, size_t i, kvi_status want)
{
    if (kvi_batch_status(b, i) != want)
        fail_msg("op %zu: %s (%s), expected %s", i, kvi_status_name(kvi_batch_status(b, i)),
                 kvi_batch_errmsg(b, i), kvi_status_name(want));
}

/* Sends cmd to 127.0.0.1:port and says whether the reply holds want. */
static int query_has(unsigned port, const char *cmd, const char *want)
{
    char buf[4096];
    return kvi_tsn_query((uint16_t)port, cmd, buf, sizeof buf) == 0 && strstr(buf, want) != NULL;
}

/* ---- wait_replicas ------------------------------------------------------ */

static void add_wait_ops(kvi_batch *b, const char *id)
{
    assert_int_equal(kvi_batch_store(b, id, "wa", 2, "1", 1, 0), KVI_OK);
    assert_int_equal(kvi_batch_add(b, id, "wn", 2, 5, 0), KVI_OK);
    assert_int_equal(kvi_batch_fetch(b, id, "wa", 2), KVI_OK);
    assert_int_equal(kvi_batch_store_nx(b, id, "wx", 2, "x", 1, 0), KVI_OK);
    assert_int_equal(kvi_batch_counter_fetch(b, id, "wn", 2), KVI_OK);
}

/* wait_replicas: the WAIT goes into the non-blocking pipeline after the
 * writes.  With the replica in sync every op is right (and the replica has
 * the writes); with the replica stopped, start returns pending at once
 * (the master answers the WAIT only after wait_timeout) and the writes end
 * as the blocking batch ends them: a store KVI_E_TIMEOUT ("confirmed by 0
 * of 1 replicas"), a state change KVI_E_OUTCOME_UNKNOWN, the reads right --
 * within the batch's deadline. */
static void test_wait_replicas_batch_runs_without_blocking(void **state)
{
    (void)state;
    kvi_ts_server *m = kvi_test_redis(NULL);
    char mport[16];
    snprintf(mport, sizeof mport, "%u", (unsigned)kvi_ts_port(m));
    const char *extra[] = {"--replicaof", "127.0.0.1", mport, "--repl-diskless-sync-delay", "0",
                           NULL};
    kvi_ts_server *rep = kvi_test_redis(extra);
    unsigned mp = kvi_ts_port(m), rp = kvi_ts_port(rep);
    char url[300];
    snprintf(url, sizeof url, "redis:ok://127.0.0.1:%u/?wait_replicas=1&wait_timeout=3000", mp);
    kvi *k = kvi_test_context1(url);
    snprintf(url, sizeof url, "redis:short://127.0.0.1:%u/?wait_replicas=1&wait_timeout=400", mp);
    assert_int_equal(kvi_add_url(k, url), KVI_OK);
    /* Until the replica is in sync a write is not confirmed. */
    int ok = 0;
    for (int i = 0; i < 100 && !ok; i++) {
        ok = kvi_store(k, "redis:ok", "sync", 4, "1", 1, 0) == KVI_OK;
        if (!ok)
            usleep(100000);
    }
    assert_true(ok);

    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    add_wait_ops(b, "redis:ok");
    kill(kvi_ts_pid(m), SIGSTOP);
    struct run r = drive(b, 10000, kvi_ts_pid(m), mp);
    printf("# wait_replicas, replica in sync: start %d in %lld ms, waited on the master %d\n",
           r.start, (long long)r.start_ms, r.waited_on);
    assert_int_equal(r.start, 0);
    assert_true(r.waited_on);
    for (size_t i = 0; i < 5; i++)
        expect_status(b, i, KVI_OK);
    assert_int_equal(kvi_batch_integer(b, 1), 5);
    assert_string_equal(kvi_batch_value(b, 2, NULL), "1");
    assert_int_equal(kvi_batch_integer(b, 4), 5);
    /* WAIT answered: the replica has every write. */
    assert_true(query_has(rp, "GET wx", "x"));
    assert_true(query_has(rp, "GET wn", "5"));

    /* The replica stopped: WAIT answers 0 after 400 ms. */
    kill(kvi_ts_pid(rep), SIGSTOP);
    kvi_batch_clear(b);
    add_wait_ops(b, "redis:short");
    r = drive(b, 5000, 0, 0);
    printf("# wait_replicas, replica stopped: start %d in %lld ms, done after %lld ms\n", r.start,
           (long long)r.start_ms, (long long)r.total_ms);
    for (size_t i = 0; i < 5; i++)
        printf("#   op %zu: %s %s\n", i, kvi_status_name(kvi_batch_status(b, i)),
               kvi_batch_errmsg(b, i));
    assert_int_equal(r.start, 0);
    assert_true(r.start_ms < 300);
    assert_true(r.total_ms >= 350 && r.total_ms < 5000);
    expect_status(b, 0, KVI_E_TIMEOUT);
    assert_non_null(strstr(kvi_batch_errmsg(b, 0), "confirmed by 0 of 1 replicas"));
    expect_status(b, 1, KVI_E_OUTCOME_UNKNOWN);
    expect_status(b, 2, KVI_OK);
    expect_status(b, 3, KVI_E_OUTCOME_UNKNOWN);
    expect_status(b, 4, KVI_OK);
    assert_int_equal(kvi_batch_integer(b, 4), 10); /* applied on the master */

    /* The blocking batch gives the same statuses. */
    kvi_status nb[5];
    for (size_t i = 0; i < 5; i++)
        nb[i] = kvi_batch_status(b, i);
    kvi_batch_clear(b);
    add_wait_ops(b, "redis:short");
    kvi_batch_run(b, 5000);
    for (size_t i = 0; i < 5; i++)
        if (kvi_batch_status(b, i) != nb[i])
            fail_msg("op %zu: blocking %s, non-blocking %s", i,
                     kvi_status_name(kvi_batch_status(b, i)), kvi_status_name(nb[i]));
    kill(kvi_ts_pid(rep), SIGCONT);
    kvi_batch_free(b);
    kvi_free(k);
    kvi_ts_free(rep);
    kvi_ts_free(m);
}

/* ---- raw queries -------------------------------------------------------- */

static int reply_depth(const kvi_reply *r)
{
    int d = 0;
    while (r != NULL && kvi_reply_type_of(r) == KVI_REPLY_ARRAY) {
        d++;
        r = kvi_reply_count(r) > 0 ? kvi_reply_element(r, 0) : NULL;
    }
    return d;
}

static const char *reply_text(kvi_batch *b, size_t i)
{
    const kvi_reply *r = kvi_batch_reply(b, i);
    return r != NULL && kvi_reply_str(r, NULL) != NULL ? kvi_reply_str(r, NULL) : "";
}

#define NESTED_10                                                                          \
    "EVAL \"local t = {} local c = t for i = 2, 10 do local x = {} c[1] = x c = x end "   \
    "c[1] = 7 return t\" 0"

static void add_raw_ops(kvi_batch *b)
{
    assert_int_equal(kvi_batch_raw_query(b, "redis", "SET rq 1", 8), KVI_OK);            /* 0 */
    assert_int_equal(kvi_batch_fetch(b, "redis", "r1", 2), KVI_OK);                       /* 1 */
    assert_int_equal(kvi_batch_raw_query(b, "redis", "INCR r1", 7), KVI_OK);             /* 2 */
    assert_int_equal(kvi_batch_raw_query(b, "redis", NESTED_10, strlen(NESTED_10)), KVI_OK); /* 3 */
    assert_int_equal(kvi_batch_raw_query(b, "redis", "LRANGE nolist 0 -1", 18), KVI_OK); /* 4 */
    /* refused as by kvi_raw_query: never sent */
    assert_int_equal(kvi_batch_raw_query(b, "redis", "MULTI", 5), KVI_OK);               /* 5 */
    assert_int_equal(kvi_batch_add(b, "redis", "rn", 2, 2, 0), KVI_OK);                   /* 6 */
    assert_int_equal(kvi_batch_raw_query(b, "redis", "GET rq", 6), KVI_OK);              /* 7 */
}

static void check_raw_ops(kvi_batch *b, int64_t rn)
{
    expect_status(b, 0, KVI_OK);
    assert_int_equal(kvi_reply_type_of(kvi_batch_reply(b, 0)), KVI_REPLY_STATUS);
    assert_string_equal(reply_text(b, 0), "OK");
    expect_status(b, 1, KVI_OK);
    assert_string_equal(kvi_batch_value(b, 1, NULL), "v");
    /* A server error is the reply, not the status (as kvi_raw_query). */
    expect_status(b, 2, KVI_OK);
    assert_int_equal(kvi_reply_type_of(kvi_batch_reply(b, 2)), KVI_REPLY_ERROR);
    assert_non_null(strstr(reply_text(b, 2), "not an integer"));
    /* Deeper than hiredis 0.14's reader goes (7 levels). */
    expect_status(b, 3, KVI_OK);
    assert_int_equal(reply_depth(kvi_batch_reply(b, 3)), 10);
    expect_status(b, 4, KVI_OK);
    assert_int_equal(kvi_reply_type_of(kvi_batch_reply(b, 4)), KVI_REPLY_ARRAY);
    assert_int_equal(kvi_reply_count(kvi_batch_reply(b, 4)), 0);
    expect_status(b, 5, KVI_E_INVALID);
    expect_status(b, 6, KVI_OK);
    assert_int_equal(kvi_batch_integer(b, 6), rn);
    expect_status(b, 7, KVI_OK);
    assert_string_equal(reply_text(b, 7), "1");
}

/* Raw queries go into the non-blocking pipeline (start pending, waiting on
 * the stopped server), replies of any depth, a server error as the reply,
 * a refused command never sent; the same results as the blocking batch;
 * kvi_start_raw_query alone; a connection cut after the write: every raw
 * query KVI_E_OUTCOME_UNKNOWN (its effect is unknown), never sent again. */
static void test_raw_queries_run_without_blocking(void **state)
{
    (void)state;
    kvi_ts_server *s = kvi_test_redis(NULL);
    unsigned port = kvi_ts_port(s);
    char url[200];
    kvi_test_url(url, sizeof url, "redis", s, "");
    kvi *k = kvi_test_context1(url);
    assert_int_equal(kvi_store(k, "redis", "r1", 2, "v", 1, 0), KVI_OK);
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    add_raw_ops(b);
    kill(kvi_ts_pid(s), SIGSTOP);
    struct run r = drive(b, 10000, kvi_ts_pid(s), port);
    printf("# raw batch: start %d in %lld ms, waited on the server %d\n", r.start,
           (long long)r.start_ms, r.waited_on);
    for (size_t i = 0; i < 8; i++)
        printf("#   op %zu: %s %s\n", i, kvi_status_name(kvi_batch_status(b, i)),
               kvi_batch_errmsg(b, i));
    assert_int_equal(r.start, 0);
    assert_true(r.waited_on);
    check_raw_ops(b, 2);
    /* The blocking batch: the same. */
    kvi_batch_clear(b);
    add_raw_ops(b);
    kvi_batch_run(b, 10000);
    check_raw_ops(b, 4);

    /* One raw query on its own. */
    kvi_wait w;
    kill(kvi_ts_pid(s), SIGSTOP);
    int rs = kvi_start_raw_query(b, "redis", "ECHO hello", 10, 10000, NULL, NULL, &w);
    int pending = rs == 0;
    kill(kvi_ts_pid(s), SIGCONT);
    while (rs == 0) {
        kvi_test_wait(&w);
        rs = kvi_batch_resume(b, &w);
    }
    assert_true(pending);
    expect_status(b, 0, KVI_OK);
    assert_string_equal(reply_text(b, 0), "hello");

    /* Cut after the write (the server killed while stopped). */
    kvi_batch_clear(b);
    assert_int_equal(kvi_batch_raw_query(b, "redis", "SET cut 1", 9), KVI_OK);
    assert_int_equal(kvi_batch_fetch(b, "redis", "r1", 2), KVI_OK);
    assert_int_equal(kvi_batch_raw_query(b, "redis", "GET cut", 7), KVI_OK);
    kill(kvi_ts_pid(s), SIGSTOP);
    rs = kvi_batch_start(b, 10000, NULL, NULL, &w);
    assert_int_equal(rs, 0);
    for (int i = 0; i < 5 && rs == 0 && (w.events & KVI_WAIT_WRITE); i++) {
        kvi_test_wait(&w);
        rs = kvi_batch_resume(b, &w);
    }
    assert_int_equal(kvi_ts_kill(s), KVI_TS_OK);
    while (rs == 0) {
        kvi_test_wait(&w);
        rs = kvi_batch_resume(b, &w);
    }
    for (size_t i = 0; i < 3; i++)
        printf("#   cut op %zu: %s %s\n", i, kvi_status_name(kvi_batch_status(b, i)),
               kvi_batch_errmsg(b, i));
    expect_status(b, 0, KVI_E_OUTCOME_UNKNOWN);
    assert_true(KVI_STATUS_IS_ERROR(kvi_batch_status(b, 1)));
    expect_status(b, 2, KVI_E_OUTCOME_UNKNOWN);
    kvi_batch_free(b);
    kvi_free(k);
    kvi_ts_free(s);
}

/* Raw queries in a Redis Cluster: routed by their first key (route.h's
 * table, as the blocking path) to that slot's master, in its non-blocking
 * pipeline (start pending, waiting on that master while it is stopped);
 * one without a key goes to some master. */
static void test_cluster_raw_queries_run_without_blocking(void **state)
{
    (void)state;
    kvi_tc_spec spec = {.masters = 3, .replicas = 0};
    kvi_tc_cluster *cl = NULL;
    kvi_ts_result tr = kvi_tc_start(&spec, &cl);
    if (tr == KVI_TS_MISSING)
        KVI_TEST_SKIP_CASE("%s", kvi_tc_errmsg());
    if (tr != KVI_TS_OK)
        fail_msg("cluster: %s", kvi_tc_errmsg());
    char url[600], buf[64];
    kvi_tc_url(cl, "redis", url, sizeof url);
    kvi *k = kvi_test_context1(url);
    assert_int_equal(kvi_store(k, "redis", "{r}f", 4, "v", 1, 0), KVI_OK); /* mode, map */
    assert_int_equal(kvi_tsn_query(kvi_tc_port(cl, 0), "CLUSTER KEYSLOT {r}a", buf, sizeof buf),
                     0);
    assert_true(buf[0] == ':');
    size_t owner = 0;
    assert_int_equal(kvi_tc_master_of(cl, 0, (unsigned)atoi(buf + 1), &owner), KVI_TS_OK);
    kvi_ts_server *m = kvi_tc_server(cl, owner);
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    assert_int_equal(kvi_batch_raw_query(b, "redis", "SET {r}a 1", 10), KVI_OK);
    assert_int_equal(kvi_batch_raw_query(b, "redis", "INCRBY {r}a 4", 13), KVI_OK);
    assert_int_equal(kvi_batch_fetch(b, "redis", "{r}f", 4), KVI_OK);
    assert_int_equal(kvi_batch_raw_query(b, "redis", "PING", 4), KVI_OK);
    assert_int_equal(kvi_batch_raw_query(b, "redis", "MGET {r}a {r}f", 14), KVI_OK);
    kill(kvi_ts_pid(m), SIGSTOP);
    struct run r = drive(b, 20000, kvi_ts_pid(m), kvi_tc_port(cl, owner));
    printf("# cluster raw: start %d in %lld ms, waited on the key's master %d\n", r.start,
           (long long)r.start_ms, r.waited_on);
    for (size_t i = 0; i < 5; i++)
        printf("#   op %zu: %s %s\n", i, kvi_status_name(kvi_batch_status(b, i)),
               kvi_batch_errmsg(b, i));
    assert_int_equal(r.start, 0);
    assert_true(r.waited_on);
    for (size_t i = 0; i < 5; i++)
        expect_status(b, i, KVI_OK);
    assert_string_equal(reply_text(b, 0), "OK");
    assert_int_equal(kvi_reply_integer(kvi_batch_reply(b, 1)), 5);
    assert_string_equal(kvi_batch_value(b, 2, NULL), "v");
    assert_string_equal(reply_text(b, 3), "PONG");
    const kvi_reply *mg = kvi_batch_reply(b, 4);
    assert_int_equal(kvi_reply_count(mg), 2);
    assert_string_equal(kvi_reply_str(kvi_reply_element(mg, 0), NULL), "5");
    kvi_batch_free(b);
    kvi_free(k);
    kvi_tc_free(cl);
}

/* ---- Sentinel ----------------------------------------------------------- */

static kvi_tsn_setup *g_sn;

static int sn_setup(void)
{
    if (g_sn != NULL)
        return 0;
    kvi_tsn_spec spec = {.replicas = 1, .sentinels = 2, .quorum = 1};
    kvi_ts_result tr = kvi_tsn_start(&spec, &g_sn);
    if (tr == KVI_TS_MISSING)
        return -1;
    if (tr != KVI_TS_OK)
        fail_msg("sentinel: %s", kvi_ts_errmsg());
    return 0;
}

/* The sentinel cases' reply time limit: a stopped sentinel is passed after
 * 300 + SN_TIMEOUT_MS, a master the sentinels name wrongly is asked about
 * again for that long; and a reply may take that long on a loaded machine
 * (a batch waits for each reply as long as a single call). */
enum { SN_TIMEOUT_MS = 2000 };

/* A context through the sentinels, in this process (the child of a fork()
 * starts with no master named and no +switch-master listener). */
static kvi *sn_context(void)
{
    char url[600], full[700];
    kvi_tsn_url(g_sn, "redis", url, sizeof url);
    snprintf(full, sizeof full, "%s&connect_timeout=300&timeout=%d&lazy=1", url, SN_TIMEOUT_MS);
    kvi *k = NULL;
    if (kvi_new(&k) != KVI_OK || kvi_add_url(k, full) != KVI_OK)
        return NULL;
    return k;
}

/* Runs child() in a fork()ed process and checks its exit status (0). */
static void in_child(int (*child)(void), const char *what)
{
    fflush(stdout);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child());
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    for (size_t i = 0; i < kvi_tsn_nsentinels(g_sn); i++)
        kill(kvi_ts_pid(kvi_tsn_sentinel(g_sn, i)), SIGCONT);
    for (size_t i = 0; i < kvi_tsn_ndata(g_sn); i++)
        kill(kvi_ts_pid(kvi_tsn_data(g_sn, i)), SIGCONT);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("%s: child exit status %d", what, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

#define CHILD_CHECK(cond, code)                                                           \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            printf("# child check failed: %s\n", #cond);                                  \
            fflush(stdout);                                                               \
            return code;                                                                  \
        }                                                                                 \
    } while (0)

/* In the child: a context through the sentinels (sn_context) in *k and a
 * batch on it in *b.  0, or the exit code of what failed: code (the
 * context), code + 1 (the batch). */
static int child_open(kvi **k, kvi_batch **b, int code)
{
    *k = sn_context();
    CHILD_CHECK(*k != NULL, code);
    CHILD_CHECK(kvi_batch_new(*k, b) == KVI_OK, code + 1);
    return 0;
}

/* Drives b in the child: run_batch() with a 20 s deadline. */
static struct run child_drive(kvi_batch *b, pid_t stopped, unsigned port)
{
    return run_batch(b, 20000, stopped, port);
}

static void child_print(kvi_batch *b, const char *what)
{
    for (size_t i = 0; i < kvi_batch_count(b); i++)
        printf("#   %s op %zu: %s %s\n", what, i, kvi_status_name(kvi_batch_status(b, i)),
               kvi_batch_errmsg(b, i));
    fflush(stdout);
}

/* The first sentinel stopped: its question times out (connect_timeout +
 * timeout) and the second is asked, all without blocking: start
 * pending at once, the batch comes to wait on the second sentinel. */
static int child_second_sentinel(void)
{
    kvi *k = NULL;
    kvi_batch *b = NULL;
    int rc = child_open(&k, &b, 10);
    if (rc != 0)
        return rc;
    kvi_ts_server *s0 = kvi_tsn_sentinel(g_sn, 0), *s1 = kvi_tsn_sentinel(g_sn, 1);
    kill(kvi_ts_pid(s0), SIGSTOP);
    kill(kvi_ts_pid(s1), SIGSTOP);
    kvi_batch_store(b, "redis", "s2", 2, "v", 1, 0);
    kvi_batch_add(b, "redis", "s2n", 3, 4, 0);
    kvi_batch_fetch(b, "redis", "s2", 2);
    struct run r = child_drive(b, kvi_ts_pid(s1), kvi_ts_port(s1));
    kill(kvi_ts_pid(s0), SIGCONT);
    printf("# first sentinel stopped: start %d in %lld ms, waited on the second %d, done in "
           "%lld ms\n",
           r.start, (long long)r.start_ms, r.waited_on, (long long)r.total_ms);
    child_print(b, "second sentinel");
    CHILD_CHECK(r.start == 0 && r.start_ms < 200, 12);
    CHILD_CHECK(r.waited_on, 13);
    CHILD_CHECK(kvi_batch_status(b, 0) == KVI_OK && kvi_batch_status(b, 1) == KVI_OK, 14);
    CHILD_CHECK(kvi_batch_integer(b, 1) == 4, 15);
    CHILD_CHECK(kvi_batch_value(b, 2, NULL) != NULL &&
                    strcmp(kvi_batch_value(b, 2, NULL), "v") == 0,
                16);
    kvi_batch_free(b);
    kvi_free(k);
    return 0;
}

static kvi_ts_server *g_other; /* a standalone server the master is demoted under */

/* The master the sentinels name demoted behind their back (REPLICAOF, with
 * replica-read-only off, so a write would be taken): a new connection asks
 * ROLE before anything is written, so the store is never written there. */
static int child_demoted_master(void)
{
    kvi *k = NULL;
    kvi_batch *b = NULL;
    int rc = child_open(&k, &b, 20);
    if (rc != 0)
        return rc;
    kvi_batch_store(b, "redis", "demoted", 7, "x", 1, 0);
    struct run r = child_drive(b, 0, 0);
    printf("# demoted master: start %d in %lld ms, done in %lld ms\n", r.start,
           (long long)r.start_ms, (long long)r.total_ms);
    child_print(b, "demoted");
    CHILD_CHECK(kvi_batch_status(b, 0) == KVI_E_BACKEND, 23);
    CHILD_CHECK(strstr(kvi_batch_errmsg(b, 0), "says it is a slave") != NULL, 24);
    kvi_batch_free(b);
    kvi_free(k);
    return 0;
}

/* The master the sentinels name is demoted (as above) and comes back while
 * the batch is under way -- a failover that takes a moment: the batch does
 * not give up at once (ROLE says replica, nothing written) but waits a
 * backoff on a timer -- w.fd a timerfd, not a sleep inside resume -- then
 * asks the sentinels again, within the connection's timeout (SN_TIMEOUT_MS), as the single
 * path sleeps and asks again; the master is promoted back at the first
 * timer wait, and the ops reach it. */
static int child_master_comes_back(void)
{
    kvi *k = sn_context();
    CHILD_CHECK(k != NULL, 80);
    unsigned mp = kvi_ts_port(kvi_tsn_data(g_sn, 0));
    kvi_batch *b = NULL;
    CHILD_CHECK(kvi_batch_new(k, &b) == KVI_OK, 81);
    kvi_batch_store(b, "redis", "back", 4, "x", 1, 0);
    kvi_batch_add(b, "redis", "backn", 5, 2, 0);
    kvi_wait w;
    int timer_waits = 0, promoted = 0;
    int64_t t0 = kvi_test_mono_ms();
    int r = kvi_batch_start(b, 20000, NULL, NULL, &w);
    while (r == 0) {
        if (kvi_test_fd_is(w.fd, "timerfd")) {
            timer_waits++;
            if (!promoted)
                promoted = query_has(mp, "REPLICAOF NO ONE", "OK");
        }
        kvi_test_wait(&w);
        r = kvi_batch_resume(b, &w);
    }
    printf("# master back: %d waits on a timer, promoted back %d, done in %lld ms\n", timer_waits,
           promoted, (long long)(kvi_test_mono_ms() - t0));
    child_print(b, "master back");
    CHILD_CHECK(timer_waits >= 1 && promoted, 82);
    CHILD_CHECK(kvi_batch_status(b, 0) == KVI_OK && kvi_batch_status(b, 1) == KVI_OK, 83);
    CHILD_CHECK(kvi_batch_integer(b, 1) == 2, 84);
    CHILD_CHECK(query_has(mp, "GET back", "x"), 85);
    kvi_batch_free(b);
    kvi_free(k);
    return 0;
}

/* A write answered READONLY on a pooled connection (the master demoted
 * after the connection was made): it did not run, the sentinels are asked
 * again (without blocking), and the master they name (still the demoted
 * one here) is checked with ROLE on a new connection: the write ends with
 * that finding, not with the READONLY reply. */
static int child_readonly_asks_again(void)
{
    kvi *k = NULL;
    kvi_batch *b = NULL;
    int rc = child_open(&k, &b, 50);
    if (rc != 0)
        return rc;
    unsigned mp = kvi_ts_port(kvi_tsn_data(g_sn, 0));
    kvi_batch_store(b, "redis", "pre", 3, "1", 1, 0);
    struct run r = child_drive(b, 0, 0);
    child_print(b, "readonly, before");
    CHILD_CHECK(kvi_batch_status(b, 0) == KVI_OK, 52);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "REPLICAOF 127.0.0.1 %u", (unsigned)kvi_ts_port(g_other));
    CHILD_CHECK(query_has(mp, cmd, "OK"), 53);
    kvi_batch_clear(b);
    kvi_batch_store(b, "redis", "ro", 2, "x", 1, 0);
    r = child_drive(b, 0, 0);
    printf("# readonly: done in %lld ms\n", (long long)r.total_ms);
    child_print(b, "readonly");
    CHILD_CHECK(kvi_batch_status(b, 0) == KVI_E_BACKEND, 54);
    CHILD_CHECK(strstr(kvi_batch_errmsg(b, 0), "says it is a slave") != NULL, 55);
    kvi_batch_free(b);
    kvi_free(k);
    return 0;
}

/* Waits (10 s at most) until 127.0.0.1:port answers cmd with want. */
static int wait_until(unsigned port, const char *cmd, const char *want)
{
    for (int i = 0; i < 200; i++) {
        if (query_has(port, cmd, want))
            return 1;
        usleep(50000);
    }
    return 0;
}

/* SENTINEL FAILOVER through sentinel port (retried while it says there
 * is no good replica yet); 1 when accepted. */
static int failover_via(unsigned port)
{
    for (int i = 0; i < 100; i++) {
        if (query_has(port, "SENTINEL FAILOVER mymaster", "OK"))
            return 1;
        usleep(100000);
    }
    return 0;
}

/* Waits (40 s at most: a loaded machine, sanitizers) until the failover
 * to `to` is done as seen from sentinel port and both servers; asks for it
 * again every 10 s (a failover the sentinel gave up, e.g. a replica not
 * yet good enough). */
static int failover_done(unsigned sentinel, kvi_ts_server *from, kvi_ts_server *to)
{
    char port[16];
    snprintf(port, sizeof port, "%u", (unsigned)kvi_ts_port(to));
    int named = 0, demoted = 0, promoted = 0;
    for (int i = 1; i <= 800; i++) {
        named = named || query_has(sentinel, "SENTINEL get-master-addr-by-name mymaster", port);
        demoted = named && query_has(kvi_ts_port(from), "ROLE", "slave");
        promoted = named && query_has(kvi_ts_port(to), "ROLE", "master");
        if (named && demoted && promoted)
            return 1;
        if (!named && i % 200 == 0)
            query_has(sentinel, "SENTINEL FAILOVER mymaster", "OK");
        usleep(50000);
    }
    printf("# failover not done: sentinel names it %d, old master demoted %d, new promoted %d\n",
           named, demoted, promoted);
    return 0;
}

/* The first batch of a failover case, in the child: stores key = "1" and,
 * when ckey is given, adds n to counter ckey; its last op must end right
 * and the replica `rep` (to be promoted) have the counter (or, without
 * ckey, the key) before the failover.  0, or the failed check's exit code:
 * code, code + 1. */
static int child_first_batch(kvi_batch *b, const char *key, const char *ckey, int64_t n,
                             kvi_ts_server *rep, const char *what, int code)
{
    kvi_batch_store(b, "redis", key, strlen(key), "1", 1, 0);
    if (ckey != NULL)
        kvi_batch_add(b, "redis", ckey, strlen(ckey), n, 0);
    (void)child_drive(b, 0, 0);
    child_print(b, what);
    CHILD_CHECK(kvi_batch_status(b, kvi_batch_count(b) - 1) == KVI_OK, code);
    char cmd[64], want[32];
    snprintf(cmd, sizeof cmd, "GET %s", ckey != NULL ? ckey : key);
    snprintf(want, sizeof want, "%lld", ckey != NULL ? (long long)n : 1LL);
    CHILD_CHECK(wait_until(kvi_ts_port(rep), cmd, want), code + 1);
    return 0;
}

/* The batch after a failover, in the child (b filled by the caller: a
 * store then an add at ops 0 and 1): with the new master `now` stopped,
 * start must return pending at once and the batch come to wait on `now`'s
 * socket (then let go), the store and the add end right, the add at
 * `want`.  Sentinel s0 (stopped by the caller) goes on after the batch.
 * 0, or the failed check's exit code: code ... code + 3. */
static int child_reaches_new_master(kvi_batch *b, kvi_ts_server *now, kvi_ts_server *s0,
                                    int64_t want, const char *what, int code)
{
    kill(kvi_ts_pid(now), SIGSTOP);
    struct run r = child_drive(b, kvi_ts_pid(now), kvi_ts_port(now));
    kill(kvi_ts_pid(s0), SIGCONT);
    printf("# %s: start %d in %lld ms, waited on the new master %d, done in %lld ms\n", what,
           r.start, (long long)r.start_ms, r.waited_on, (long long)r.total_ms);
    child_print(b, what);
    CHILD_CHECK(r.start == 0 && r.start_ms < 200, code);
    CHILD_CHECK(r.waited_on, code + 1);
    CHILD_CHECK(kvi_batch_status(b, 0) == KVI_OK && kvi_batch_status(b, 1) == KVI_OK, code + 2);
    CHILD_CHECK(kvi_batch_integer(b, 1) == want, code + 3);
    return 0;
}

/* A failover between two non-blocking batches that the +switch-master
 * listener cannot see (its sentinel, the one that answered, is stopped;
 * the other one fails over): the second batch meets the old master (its
 * connection closed by the sentinels, or READONLY; ROLE says replica on a
 * new one), nothing is written there, the sentinels are asked again --
 * the stopped one passed after its time limit -- and the writes reach the
 * new master, proven by waiting on its socket while it is stopped. */
static int child_failover_between_batches(void)
{
    kvi *k = NULL;
    kvi_batch *b = NULL;
    int rc = child_open(&k, &b, 30);
    if (rc != 0)
        return rc;
    kvi_ts_server *m = kvi_tsn_data(g_sn, 0), *rep = kvi_tsn_data(g_sn, 1);
    kvi_ts_server *s0 = kvi_tsn_sentinel(g_sn, 0), *s1 = kvi_tsn_sentinel(g_sn, 1);
    rc = child_first_batch(b, "fo", "fon", 10, rep, "before the failover", 32);
    if (rc != 0)
        return rc;
    kill(kvi_ts_pid(s0), SIGSTOP);
    CHILD_CHECK(failover_via(kvi_ts_port(s1)), 34);
    CHILD_CHECK(failover_done(kvi_ts_port(s1), m, rep), 35);

    kvi_batch_clear(b);
    kvi_batch_store(b, "redis", "fo", 2, "2", 1, 0);
    kvi_batch_add(b, "redis", "fon", 3, 5, 0);
    kvi_batch_fetch(b, "redis", "fo", 2);
    rc = child_reaches_new_master(b, rep, s0, 15, "after the failover", 38);
    if (rc != 0)
        return rc;
    CHILD_CHECK(query_has(kvi_ts_port(rep), "GET fo", "2"), 42);
    kvi_batch_free(b);
    kvi_free(k);
    return 0;
}

/* The +switch-master listener, started by the non-blocking lookup: after a
 * failover the next batch goes straight to the new master (the old one is
 * stopped: a batch that went there would wait until its deadline). */
static int child_listener_follows_failover(void)
{
    kvi *k = NULL;
    kvi_batch *b = NULL;
    int rc = child_open(&k, &b, 60);
    if (rc != 0)
        return rc;
    /* After the first failover: data 1 is the master, data 0 its replica. */
    kvi_ts_server *old = kvi_tsn_data(g_sn, 1), *now = kvi_tsn_data(g_sn, 0);
    unsigned s0 = kvi_ts_port(kvi_tsn_sentinel(g_sn, 0));
    rc = child_first_batch(b, "li", NULL, 0, now, "listener, before", 62);
    if (rc != 0)
        return rc;
    CHILD_CHECK(failover_via(s0), 64);
    CHILD_CHECK(failover_done(s0, old, now), 65);
    usleep(500000); /* the listener's message, the sentinel's CLIENT KILL */
    kill(kvi_ts_pid(old), SIGSTOP);
    kvi_batch_clear(b);
    kvi_batch_store(b, "redis", "li", 2, "2", 1, 0);
    kvi_batch_add(b, "redis", "lin", 3, 3, 0);
    struct run r = run_batch(b, 3000, 0, 0);
    kill(kvi_ts_pid(old), SIGCONT);
    printf("# listener: start in %lld ms, done in %lld ms\n", (long long)r.start_ms,
           (long long)r.total_ms);
    child_print(b, "listener, after");
    CHILD_CHECK(r.start_ms < 200, 66);
    CHILD_CHECK(kvi_batch_status(b, 0) == KVI_OK && kvi_batch_status(b, 1) == KVI_OK, 67);
    CHILD_CHECK(kvi_batch_integer(b, 1) == 3, 68);
    kvi_batch_free(b);
    kvi_free(k);
    return 0;
}

/* The master killed, then failed over by the sentinel the listener does
 * not follow (its own is stopped): the next batch's connection to the old
 * master is refused before anything is written, the sentinels are asked
 * again (the stopped one passed after its limit) and the ops reach the new
 * master, proven by waiting on it while it is stopped.  Last: the killed
 * server stays down. */
static int child_master_killed(void)
{
    kvi *k = NULL;
    kvi_batch *b = NULL;
    int rc = child_open(&k, &b, 70);
    if (rc != 0)
        return rc;
    /* After the second failover: data 0 is the master, data 1 its replica. */
    kvi_ts_server *old = kvi_tsn_data(g_sn, 0), *now = kvi_tsn_data(g_sn, 1);
    kvi_ts_server *s0 = kvi_tsn_sentinel(g_sn, 0), *s1 = kvi_tsn_sentinel(g_sn, 1);
    rc = child_first_batch(b, "kk", "kn", 7, now, "killed, before", 72);
    if (rc != 0)
        return rc;
    kill(kvi_ts_pid(s0), SIGSTOP);
    kill(kvi_ts_pid(old), SIGKILL);
    char port[16];
    snprintf(port, sizeof port, "%u", (unsigned)kvi_ts_port(now));
    int done = 0;
    for (int i = 0; i < 400 && !done; i++) {
        if (i % 100 == 0)
            query_has(kvi_ts_port(s1), "SENTINEL FAILOVER mymaster", "OK");
        done = query_has(kvi_ts_port(s1), "SENTINEL get-master-addr-by-name mymaster", port) &&
               query_has(kvi_ts_port(now), "ROLE", "master");
        if (!done)
            usleep(100000);
    }
    CHILD_CHECK(done, 74);
    kvi_batch_clear(b);
    kvi_batch_store(b, "redis", "kk", 2, "2", 1, 0);
    kvi_batch_add(b, "redis", "kn", 2, 1, 0);
    rc = child_reaches_new_master(b, now, s0, 8, "master killed", 75);
    if (rc != 0)
        return rc;
    kvi_batch_free(b);
    kvi_free(k);
    return 0;
}

static void test_sentinel_without_blocking(void **state)
{
    (void)state;
    if (sn_setup() != 0)
        KVI_TEST_SKIP_CASE("%s", kvi_ts_errmsg());
    in_child(child_second_sentinel, "the second sentinel asked");

    /* Demote the master under another server, writes allowed there. */
    unsigned mp = kvi_ts_port(kvi_tsn_data(g_sn, 0));
    g_other = kvi_test_redis(NULL);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "REPLICAOF 127.0.0.1 %u", (unsigned)kvi_ts_port(g_other));
    assert_true(query_has(mp, "CONFIG SET replica-read-only no", "OK"));
    assert_true(query_has(mp, cmd, "OK"));
    in_child(child_demoted_master, "a demoted master");
    in_child(child_master_comes_back, "a demoted master promoted back during the backoff");
    assert_true(query_has(mp, "REPLICAOF NO ONE", "OK"));
    assert_true(query_has(mp, "CONFIG SET replica-read-only yes", "OK"));
    /* Never written there (the other server has no such key either). */
    assert_true(query_has(mp, "EXISTS demoted", ":0"));
    in_child(child_readonly_asks_again, "a write answered READONLY");
    assert_true(query_has(mp, "REPLICAOF NO ONE", "OK"));
    kvi_ts_free(g_other);
    g_other = NULL;

    in_child(child_failover_between_batches, "a failover between two batches");
    /* Both sentinels name the new master before the next child asks. */
    char port[16];
    snprintf(port, sizeof port, "%u", (unsigned)kvi_ts_port(kvi_tsn_data(g_sn, 1)));
    for (size_t i = 0; i < kvi_tsn_nsentinels(g_sn); i++)
        assert_true(wait_until(kvi_ts_port(kvi_tsn_sentinel(g_sn, i)),
                               "SENTINEL get-master-addr-by-name mymaster", port));
    in_child(child_listener_follows_failover, "the listener after a failover");
    snprintf(port, sizeof port, "%u", (unsigned)kvi_ts_port(kvi_tsn_data(g_sn, 0)));
    for (size_t i = 0; i < kvi_tsn_nsentinels(g_sn); i++)
        assert_true(wait_until(kvi_ts_port(kvi_tsn_sentinel(g_sn, i)),
                               "SENTINEL get-master-addr-by-name mymaster", port));
    in_child(child_master_killed, "the master killed");
}

/* ---- a hung host: the connection's own time limits ---------------------- */

/* The time limits of the hung-host cases: short enough for a quick test,
 * the batch's deadline far beyond them (a batch that waited for it would
 * take HUNG_DEADLINE_MS). */
enum { HUNG_CONNECT_MS = 1000, HUNG_TIMEOUT_MS = 1000, HUNG_DEADLINE_MS = 15000 };

/* How a non-blocking run against a hung server went. */
struct hung_run {
    int64_t total_ms;
    int on_hung;       /* it waited on a socket to the hung server */
    int limited;       /* that wait had a deadline_ms ... */
    int64_t hung_wait; /* ... this far ahead of the time it was read */
};

/* Runs b from a poll() loop with the batch's deadline deadline_ms (0:
 * none); notes the first wait on a socket to port. */
static struct hung_run drive_hung(kvi_batch *b, unsigned port, uint32_t deadline_ms)
{
    struct hung_run out = {0};
    kvi_wait w;
    int64_t t0 = kvi_test_mono_ms();
    int r = kvi_batch_start(b, deadline_ms, NULL, NULL, &w);
    while (r == 0) {
        if (!out.on_hung && kvi_test_peer_port(w.fd) == port) {
            out.on_hung = 1;
            out.limited = w.deadline_ms != 0;
            out.hung_wait = w.deadline_ms - kvi_test_mono_ms();
        }
        kvi_test_wait(&w);
        r = kvi_batch_resume(b, &w);
    }
    out.total_ms = kvi_test_mono_ms() - t0;
    assert_int_equal(r, 1);
    return out;
}

/* A hung host of a failover list (accepts, never answers): a new
 * connection to it does not get through its set-up (SELECT) within
 * connect_timeout, so the non-blocking batch moves on to the next host
 * then -- as the single calls do -- instead of waiting until the batch's
 * deadline.  The wait on the hung host carries that limit as its
 * deadline_ms.  The blocking batch moves on too. */
static void test_hung_failover_host_is_left_after_connect_timeout(void **state)
{
    (void)state;
    kvi_ts_server *s1 = kvi_test_redis(NULL), *s2 = kvi_test_redis(NULL);
    unsigned p1 = kvi_ts_port(s1);
    char url[300];
    snprintf(url, sizeof url,
             "redis://127.0.0.1:%u,127.0.0.1:%u/1?cluster=no&lazy=1&down_after=0"
             "&connect_timeout=%d&timeout=%d",
             p1, (unsigned)kvi_ts_port(s2), HUNG_CONNECT_MS, HUNG_TIMEOUT_MS);
    kvi *k = kvi_test_context1(url);
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    kvi_test_hang(s1);
    assert_int_equal(kvi_batch_store(b, "redis", "h", 1, "v", 1, 0), KVI_OK);
    assert_int_equal(kvi_batch_add(b, "redis", "hn", 2, 3, 0), KVI_OK);
    assert_int_equal(kvi_batch_fetch(b, "redis", "h", 1), KVI_OK);
    struct hung_run r = drive_hung(b, p1, HUNG_DEADLINE_MS);
    printf("# failover host hung: waited on it %d (its deadline in %lld ms), done in %lld ms\n",
           r.on_hung, (long long)r.hung_wait, (long long)r.total_ms);
    for (size_t i = 0; i < 3; i++)
        expect_status(b, i, KVI_OK);
    assert_int_equal(kvi_batch_integer(b, 1), 3);
    assert_string_equal(kvi_batch_value(b, 2, NULL), "v");
    assert_true(r.on_hung);
    assert_true(r.limited && r.hung_wait <= HUNG_CONNECT_MS);
    /* Not before its limit; long before the batch's deadline. */
    assert_true(r.total_ms >= HUNG_CONNECT_MS - 20);
    assert_true(r.total_ms < HUNG_DEADLINE_MS / 2);

    /* The blocking batch (a new context: the first host is the working one
     * again): its connect to the hung host fails after connect_timeout, one
     * op goes through the single path (the failover list) and the rest
     * follows it to the second host. */
    kvi_batch_free(b);
    kvi_free(k);
    k = kvi_test_context1(url);
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    assert_int_equal(kvi_batch_add(b, "redis", "hn", 2, 4, 0), KVI_OK);
    assert_int_equal(kvi_batch_fetch(b, "redis", "h", 1), KVI_OK);
    int64_t t0 = kvi_test_mono_ms();
    kvi_batch_run(b, HUNG_DEADLINE_MS);
    int64_t blocking_ms = kvi_test_mono_ms() - t0;
    printf("# failover host hung, blocking batch: done in %lld ms\n", (long long)blocking_ms);
    expect_status(b, 0, KVI_OK);
    expect_status(b, 1, KVI_OK);
    assert_int_equal(kvi_batch_integer(b, 0), 7);
    assert_true(blocking_ms < HUNG_DEADLINE_MS / 2);
    kvi_test_unhang(s1);
    kvi_batch_free(b);
    kvi_free(k);
    kvi_ts_free(s1);
    kvi_ts_free(s2);
}

/* A standalone host hung after the pipeline was written to it (a pooled
 * connection): each reply must come within the connection's timeout, as
 * on the single path, so the ops end then -- KVI_E_TIMEOUT, a state change
 * KVI_E_OUTCOME_UNKNOWN -- not at the batch's deadline; the same with no
 * deadline at all, and the same statuses as the blocking batch. */
static void test_hung_standalone_host_times_out_at_the_connection_timeout(void **state)
{
    (void)state;
    kvi_ts_server *s = kvi_test_redis(NULL);
    unsigned p = kvi_ts_port(s);
    char url[300];
    snprintf(url, sizeof url, "redis://127.0.0.1:%u/?down_after=0&connect_timeout=%d&timeout=%d",
             p, HUNG_CONNECT_MS, HUNG_TIMEOUT_MS);
    kvi *k = kvi_test_context1(url);
    assert_int_equal(kvi_store(k, "redis", "t", 1, "v", 1, 0), KVI_OK); /* pooled */
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    kvi_test_hang(s);
    kvi_status nb[3];
    for (int pass = 0; pass < 2; pass++) {
        kvi_batch_clear(b);
        assert_int_equal(kvi_batch_store(b, "redis", "t", 1, "w", 1, 0), KVI_OK);
        assert_int_equal(kvi_batch_add(b, "redis", "tn", 2, 1, 0), KVI_OK);
        assert_int_equal(kvi_batch_fetch(b, "redis", "t", 1), KVI_OK);
        /* The second pass without a deadline: only the connection's limits
         * end it. */
        struct hung_run r = drive_hung(b, p, pass == 0 ? HUNG_DEADLINE_MS : 0);
        printf("# standalone host hung (%s): waited on it %d (its deadline in %lld ms), done in "
               "%lld ms\n",
               pass == 0 ? "batch deadline" : "no deadline", r.on_hung, (long long)r.hung_wait,
               (long long)r.total_ms);
        for (size_t i = 0; i < 3; i++)
            printf("#   op %zu: %s %s\n", i, kvi_status_name(kvi_batch_status(b, i)),
                   kvi_batch_errmsg(b, i));
        assert_true(r.on_hung);
        assert_true(r.limited && r.hung_wait <= HUNG_TIMEOUT_MS);
        assert_true(r.total_ms >= HUNG_TIMEOUT_MS - 20 && r.total_ms < HUNG_DEADLINE_MS / 2);
        expect_status(b, 0, KVI_E_TIMEOUT);
        expect_status(b, 1, KVI_E_OUTCOME_UNKNOWN);
        expect_status(b, 2, KVI_E_TIMEOUT);
        assert_non_null(strstr(kvi_batch_errmsg(b, 0), "timed out after"));
    }
    for (size_t i = 0; i < 3; i++)
        nb[i] = kvi_batch_status(b, i);
    /* The blocking batch gives the same statuses. */
    kvi_batch_clear(b);
    assert_int_equal(kvi_batch_store(b, "redis", "t", 1, "w", 1, 0), KVI_OK);
    assert_int_equal(kvi_batch_add(b, "redis", "tn", 2, 1, 0), KVI_OK);
    assert_int_equal(kvi_batch_fetch(b, "redis", "t", 1), KVI_OK);
    kvi_batch_run(b, HUNG_DEADLINE_MS);
    for (size_t i = 0; i < 3; i++)
        if (kvi_batch_status(b, i) != nb[i])
            fail_msg("op %zu: blocking %s (%s), non-blocking %s", i,
                     kvi_status_name(kvi_batch_status(b, i)), kvi_batch_errmsg(b, i),
                     kvi_status_name(nb[i]));
    kvi_test_unhang(s);
    kvi_batch_free(b);
    kvi_free(k);
    kvi_ts_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wait_replicas_batch_runs_without_blocking),
        cmocka_unit_test(test_raw_queries_run_without_blocking),
        cmocka_unit_test(test_cluster_raw_queries_run_without_blocking),
        cmocka_unit_test(test_sentinel_without_blocking),
        cmocka_unit_test(test_hung_failover_host_is_left_after_connect_timeout),
        cmocka_unit_test(test_hung_standalone_host_times_out_at_the_connection_timeout),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    kvi_tsn_free(g_sn);
    return r;
}
