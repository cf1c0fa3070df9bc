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
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "kvi/kvi.h"
#include "kvitest.h"
#include "testsentinel.h"

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for what w asks (or its deadline) with poll(). */
static void wait_for(const kvi_wait *w)
{
    int timeout = -1;
    if (w->deadline_ms != 0) {
        int64_t left = w->deadline_ms - mono_ms();
        timeout = left > 0 ? (int)left : 0;
    }
    struct pollfd p = {w->fd, 0, 0};
    if (w->events & KVI_WAIT_READ)
        p.events |= POLLIN;
    if (w->events & KVI_WAIT_WRITE)
        p.events |= POLLOUT;
    assert_true(poll(&p, w->fd >= 0 ? 1 : 0, timeout) >= 0);
}

/* The port of the peer of socket fd (0 when unknown). */
static unsigned peer_port(int fd)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    if (fd < 0 || getpeername(fd, (struct sockaddr *)&sa, &len) != 0)
        return 0;
    if (sa.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&sa)->sin_port);
    if (sa.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
    return 0;
}

/* How a non-blocking run went. */
struct run {
    int start;      /* what start returned */
    int64_t start_ms; /* how long start took */
    int64_t total_ms; /* start to done */
    int waited_on;  /* it waited on a socket to `port` */
};

/* Runs b from a poll() loop; when `stopped` is given (SIGSTOPped by the
 * caller), it is let go (SIGCONT) once the batch waits on a socket to
 * port, or when the batch ended. */
static struct run drive(kvi_batch *b, uint32_t timeout_ms, pid_t stopped, unsigned port)
{
    struct run out = {0};
    kvi_wait w;
    int64_t t0 = mono_ms();
    int r = kvi_batch_start(b, timeout_ms, NULL, NULL, &w);
    out.start = r;
    out.start_ms = mono_ms() - t0;
    while (r == 0) {
        if (port != 0 && peer_port(w.fd) == port) {
            out.waited_on = 1;
            if (stopped > 0) {
                kill(stopped, SIGCONT);
                stopped = 0;
            }
        }
        wait_for(&w);
        r = kvi_batch_resume(b, &w);
    }
    if (stopped > 0)
        kill(stopped, SIGCONT);
    out.total_ms = mono_ms() - t0;
    assert_int_equal(r, 1);
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
        wait_for(&w);
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
        wait_for(&w);
        rs = kvi_batch_resume(b, &w);
    }
    assert_int_equal(kvi_ts_kill(s), KVI_TS_OK);
    while (rs == 0) {
        wait_for(&w);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wait_replicas_batch_runs_without_blocking),
        cmocka_unit_test(test_raw_queries_run_without_blocking),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
