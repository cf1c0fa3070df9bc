/*
 * test_redis_standalone.c -- the redis engine against real redis-server
 * processes started on free 127.0.0.1 ports: authentication (password and
 * ACL user), database selection, unix socket, timeouts and reconnection
 * when the server dies or hangs, the failover host list, fork(), and the
 * counter script's exactness.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "kvi/kvi.h"
#include "kvitest.h"

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A redis-server, or a loud skip when there is none (kvitest.h). */
static kvi_ts_server *start_redis(const char *const *extra)
{
    return kvi_test_redis(extra);
}

static kvi *new_kvi(void)
{
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    return k;
}

/* Adds the URL fmt (printf-style) to k, failing the test with the detail
 * message otherwise. */
static void add_urlf(kvi *k, const char *fmt, ...)
{
    char url[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(url, sizeof url, fmt, ap);
    va_end(ap);
    kvi_status st = kvi_add_url(k, url);
    if (st != KVI_OK)
        fail_msg("kvi_add_url %s: %s: %s", url, kvi_status_name(st), kvi_errmsg(k));
}

/* kvi_add_url of the URL fmt (printf-style). */
static kvi_status try_urlf(kvi *k, const char *fmt, ...)
{
    char url[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(url, sizeof url, fmt, ap);
    va_end(ap);
    return kvi_add_url(k, url);
}

/* The fixture of most tests: one redis-server and one kvi handle, stopped
 * and freed by teardown whatever the test did. */
struct fx {
    kvi_ts_server *s;
    kvi *k;
    unsigned port;
};

static int fx_start(void **state, const char *const *extra, const char *url_fmt)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->s = start_redis(extra);
    f->port = kvi_ts_port(f->s);
    f->k = new_kvi();
    *state = f;
    if (url_fmt != NULL)
        add_urlf(f->k, url_fmt, f->port);
    return 0;
}

/* A server and "redis" pointing at it. */
static int setup_redis(void **state)
{
    return fx_start(state, NULL, "redis://127.0.0.1:%u/");
}

/* A server and a handle without URLs. */
static int setup_server(void **state)
{
    return fx_start(state, NULL, NULL);
}

/* A server with requirepass s3cret-pw and a handle without URLs. */
static int setup_pw_server(void **state)
{
    const char *extra[] = {"--requirepass", "s3cret-pw", NULL};
    return fx_start(state, extra, NULL);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f == NULL)
        return 0;
    kvi_free(f->k);
    kvi_ts_free(f->s);
    free(f);
    return 0;
}

/* A raw query that must succeed; the reply is dropped. */
static void raw_ok(kvi *k, const char *id, const char *q)
{
    kvi_reply *r = NULL;
    kvi_status st = kvi_raw_query(k, id, q, strlen(q), &r);
    if (st != KVI_OK)
        fail_msg("raw %s: %s: %s", q, kvi_status_name(st), kvi_errmsg(k));
    kvi_reply_free(r);
}

static void assert_fetch_is(kvi *k, const char *id, const char *key, const char *want)
{
    kvi_value v = KVI_VALUE_INIT;
    kvi_status st = kvi_fetch(k, id, key, strlen(key), &v);
    if (st != KVI_OK)
        fail_msg("fetch %s: %s: %s", key, kvi_status_name(st), kvi_errmsg(k));
    assert_int_equal(v.len, strlen(want));
    assert_memory_equal(v.data, want, v.len);
    kvi_value_free(&v);
}

/* --------------------------------------------------------------------- */
/* Authentication, database, socket                                       */

static void test_password_auth_succeeds(void **state)
{
    struct fx *f = *state;
    add_urlf(f->k, "redis://:s3cret-pw@127.0.0.1:%u/", f->port);
    assert_int_equal(kvi_store(f->k, "redis", "a", 1, "1", 1, 0), KVI_OK);
    assert_fetch_is(f->k, "redis", "a", "1");
}

static void test_wrong_password_is_auth_error_without_the_password(void **state)
{
    struct fx *f = *state;
    assert_int_equal(try_urlf(f->k, "redis://:Wr0ngPassw0rd@127.0.0.1:%u/", f->port), KVI_E_AUTH);
    assert_null(strstr(kvi_errmsg(f->k), "Wr0ngPassw0rd"));
    assert_non_null(strstr(kvi_errmsg(f->k), "auth"));

    /* Lazy: the error comes with the first call instead, still masked. */
    add_urlf(f->k, "redis:lazy://:Wr0ngPassw0rd@127.0.0.1:%u/?lazy=1", f->port);
    assert_int_equal(kvi_store(f->k, "redis:lazy", "a", 1, "1", 1, 0), KVI_E_AUTH);
    assert_null(strstr(kvi_errmsg(f->k), "Wr0ngPassw0rd"));
}

static void test_missing_password_is_auth_error(void **state)
{
    struct fx *f = *state;
    assert_int_equal(try_urlf(f->k, "redis://127.0.0.1:%u/", f->port), KVI_E_AUTH);
}

static void test_acl_user_auth(void **state)
{
    struct fx *f = *state;
    kvi_reply *r = NULL;
    const char *q = "ACL SETUSER alice on >alice-pw-42 ~app:* +@all";
    assert_int_equal(kvi_raw_query(f->k, "redis", q, strlen(q), &r), KVI_OK);
    assert_int_equal(kvi_reply_type_of(r), KVI_REPLY_STATUS);
    kvi_reply_free(r);

    add_urlf(f->k, "redis:alice://alice:alice-pw-42@127.0.0.1:%u/", f->port);
    assert_int_equal(kvi_store(f->k, "redis:alice", "app:x", 5, "v", 1, 0), KVI_OK);
    assert_fetch_is(f->k, "redis:alice", "app:x", "v");
    /* The ACL limits alice to app:* keys: the server's refusal is AUTH. */
    assert_int_equal(kvi_store(f->k, "redis:alice", "other", 5, "v", 1, 0), KVI_E_AUTH);

    /* cluster=auto asks CLUSTER SHARDS: an ACL user without it is told to
     * use cluster=no, which then works. */
    q = "ACL SETUSER carol on >carol-pw-42 ~* +@all -cluster";
    assert_int_equal(kvi_raw_query(f->k, "redis", q, strlen(q), &r), KVI_OK);
    kvi_reply_free(r);
    assert_int_equal(try_urlf(f->k, "redis:carol://carol:carol-pw-42@127.0.0.1:%u/", f->port),
                     KVI_E_AUTH);
    assert_non_null(strstr(kvi_errmsg(f->k), "use cluster=no"));
    assert_null(strstr(kvi_errmsg(f->k), "carol-pw-42"));
    add_urlf(f->k, "redis:carol://carol:carol-pw-42@127.0.0.1:%u/?cluster=no", f->port);
    assert_int_equal(kvi_store(f->k, "redis:carol", "c", 1, "1", 1, 0), KVI_OK);

    assert_int_equal(try_urlf(f->k, "redis:bad://alice:not-her-pw@127.0.0.1:%u/", f->port),
                     KVI_E_AUTH);
    assert_null(strstr(kvi_errmsg(f->k), "not-her-pw"));
    assert_int_equal(try_urlf(f->k, "redis:nouser://bob:alice-pw-42@127.0.0.1:%u/", f->port),
                     KVI_E_AUTH);
    assert_null(strstr(kvi_errmsg(f->k), "alice-pw-42"));
}

static void test_database_is_selected(void **state)
{
    struct fx *f = *state;
    kvi_value v = KVI_VALUE_INIT;
    add_urlf(f->k, "redis:db3://127.0.0.1:%u/3", f->port);
    add_urlf(f->k, "redis://127.0.0.1:%u/0", f->port);
    assert_int_equal(kvi_store(f->k, "redis:db3", "only3", 5, "x", 1, 0), KVI_OK);
    assert_fetch_is(f->k, "redis:db3", "only3", "x");
    assert_int_equal(kvi_fetch(f->k, "redis", "only3", 5, &v), KVI_NOT_FOUND);

    /* A failed call's message is gone after the next call that works. */
    assert_int_equal(kvi_add(f->k, "redis:db3", "only3", 5, 1, 0, NULL), KVI_E_NOT_A_COUNTER);
    assert_non_null(strstr(kvi_errmsg(f->k), "not an integer"));
    assert_fetch_is(f->k, "redis:db3", "only3", "x");
    assert_string_equal(kvi_errmsg(f->k), "");
    /* A database the server does not have is refused at open. */
    assert_int_equal(try_urlf(f->k, "redis:db99://127.0.0.1:%u/99", f->port), KVI_E_INVALID);
    assert_int_equal(try_urlf(f->k, "redis:dbx://127.0.0.1:%u/x", f->port), KVI_E_BAD_URL);
}

static void test_unix_socket(void **state)
{
    (void)state;
    char path[512];
    char *dir = NULL;
    assert_int_equal(kvi_ts_make_tempdir("redis-sock", &dir), KVI_TS_OK);
    snprintf(path, sizeof path, "%s/redis.sock", dir);
    const char *extra[] = {"--unixsocket", path, "--unixsocketperm", "700", NULL};
    kvi_ts_server *s = start_redis(extra);
    kvi *k = new_kvi();
    add_urlf(k, "redis:///?socket=%s", path);
    assert_int_equal(kvi_store(k, "redis", "via-socket", 10, "1", 1, 0), KVI_OK);
    assert_int_equal(kvi_ping(k, "redis"), KVI_OK);
    /* Same server over TCP sees the key. */
    add_urlf(k, "redis:tcp://127.0.0.1:%u/", kvi_ts_port(s));
    assert_fetch_is(k, "redis:tcp", "via-socket", "1");
    /* The socket path as the host, percent-encoded (docs/urls.md). */
    char enc[1600];
    size_t o = 0;
    for (const char *p = path; *p != '\0' && o + 4 < sizeof enc; p++) {
        if (*p == '/') {
            memcpy(enc + o, "%2F", 3);
            o += 3;
        } else {
            enc[o++] = *p;
        }
    }
    enc[o] = '\0';
    add_urlf(k, "redis:sockhost://%s/2", enc);
    assert_int_equal(kvi_store(k, "redis:sockhost", "in2", 3, "y", 1, 0), KVI_OK);
    assert_int_equal(kvi_ping(k, "redis:sockhost"), KVI_OK);
    add_urlf(k, "redis:tcp2://127.0.0.1:%u/2", kvi_ts_port(s));
    assert_fetch_is(k, "redis:tcp2", "in2", "y");
    assert_int_equal(try_urlf(k, "redis:sockport://%s:6379/", enc), KVI_E_INVALID);
    assert_int_equal(try_urlf(k, "redis:socklist://%s,127.0.0.1/", enc), KVI_E_INVALID);
    /* A socket plus a host list is ambiguous. */
    assert_int_equal(try_urlf(k, "redis:both://127.0.0.1:%u/?socket=%s", kvi_ts_port(s), path),
                     KVI_E_INVALID);
    kvi_free(k);
    kvi_ts_free(s);
    kvi_ts_remove_tree(dir);
    free(dir);
}

/* --------------------------------------------------------------------- */
/* Dead, hung and late servers, failover, fork                            */

/* A dead server: calls fail fast with CONNECT (after down_after of them
 * saying it is marked down); once it is back, calls succeed again by
 * themselves within down_for, nothing done by the application. */
static void test_killed_server_fails_fast_and_recovers(void **state)
{
    struct fx *f = *state;
    kvi_value v = KVI_VALUE_INIT;
    int64_t n = 0;
    add_urlf(f->k, "redis:t://127.0.0.1:%u/?timeout=500&connect_timeout=500&down_for=300", f->port);
    assert_int_equal(kvi_store(f->k, "redis:t", "k", 1, "v", 1, 0), KVI_OK);

    assert_int_equal(kvi_ts_kill(f->s), KVI_TS_OK);
    for (int i = 0; i < 3; i++) {
        int64_t t0 = mono_ms();
        kvi_status st = kvi_fetch(f->k, "redis:t", "k", 1, &v);
        int64_t elapsed = mono_ms() - t0;
        assert_true(st == KVI_E_CONNECT || st == KVI_E_TIMEOUT);
        assert_true(elapsed < 500 + 300);
        assert_null(v.data);
        st = kvi_add(f->k, "redis:t", "n", 1, 1, 0, &n);
        assert_true(st == KVI_E_CONNECT || st == KVI_E_TIMEOUT);
    }
    assert_non_null(strstr(kvi_errmsg(f->k), "is marked down until"));
    assert_int_equal(kvi_ts_restart(f->s), KVI_TS_OK);
    /* The pooled connection is stale: the engine notices and reconnects
     * (the first call after down_for is the probe). */
    kvi_status st = KVI_E_CONNECT;
    for (int i = 0; i < 300 && st != KVI_OK; i++) {
        st = kvi_add(f->k, "redis:t", "n", 1, 5, 0, &n);
        if (st != KVI_OK)
            usleep(10000);
    }
    assert_int_equal(st, KVI_OK);
    assert_int_equal(n, 5);
    assert_int_equal(kvi_store(f->k, "redis:t", "k", 1, "w", 1, 0), KVI_OK);
    assert_fetch_is(f->k, "redis:t", "k", "w");
}

/* A hung server (SIGSTOP): calls give TIMEOUT within the timeout; an add
 * that timed out is not sent again (the server applies it once when it
 * resumes). */
static void test_hung_server_times_out_and_add_is_not_resent(void **state)
{
    struct fx *f = *state;
    kvi_value v = KVI_VALUE_INIT;
    int64_t n = 0;
    add_urlf(f->k, "redis:t://127.0.0.1:%u/?timeout=300", f->port);
    assert_int_equal(kvi_add(f->k, "redis:t", "ctr", 3, 10, 0, &n), KVI_OK);

    kvi_test_hang(f->s);
    int64_t t0 = mono_ms();
    assert_int_equal(kvi_add(f->k, "redis:t", "ctr", 3, 7, 0, &n), KVI_E_TIMEOUT);
    int64_t elapsed = mono_ms() - t0;
    assert_true(elapsed >= 250 && elapsed < 300 + 300);
    t0 = mono_ms();
    assert_int_equal(kvi_fetch(f->k, "redis:t", "ctr", 3, &v), KVI_E_TIMEOUT);
    assert_true(mono_ms() - t0 < 300 + 300);
    kvi_test_unhang(f->s);

    /* The timed-out add reached the server and was applied exactly once. */
    int64_t value = 0;
    assert_int_equal(kvi_counter_fetch(f->k, "redis:t", "ctr", 3, &value), KVI_OK);
    assert_int_equal(value, 17);
}

/* The circuit breaker against a stopped server: 4 threads x 500 calls. */
#define BRK_THREADS 4
#define BRK_CALLS 500
#define BRK_TIMEOUT_MS 200
#define BRK_DOWN_FOR_MS 1000

/* A stopped server costs a few timeouts, not one per call: after
 * down_after timeouts in a row it is marked down and calls fail at once
 * (saying so and until when); after SIGCONT the probe finds it back and
 * calls succeed again. */
static void test_breaker_stopped_server_costs_a_few_timeouts_not_one_per_call(void **state)
{
    struct fx *f = *state;
    add_urlf(f->k, "redis:b://127.0.0.1:%u/?timeout=%d&connect_timeout=%d&down_after=3&down_for=%d",
             f->port, BRK_TIMEOUT_MS, BRK_TIMEOUT_MS, BRK_DOWN_FOR_MS);
    assert_int_equal(kvi_store(f->k, "redis:b", "k", 1, "v", 1, 0), KVI_OK);

    kvi_test_hang(f->s);
    /* Without the breaker: 2000 x 200 ms / 4 threads = 100 s.  With it:
     * the first timeouts plus at most a probe per down_for.  The storm
     * stops at that budget, so a breaker that never marks down fails
     * here in seconds (r.calls short), not after 100 s. */
    kvi_test_storm r;
    kvi_test_fetch_storm(f->k, "redis:b", "k", BRK_THREADS, BRK_CALLS,
                         20 * BRK_TIMEOUT_MS + 4 * BRK_DOWN_FOR_MS, &r);
    fprintf(stderr,
            "breaker: %d of %d calls in %" PRId64 " ms against a stopped server (timeout %d ms): "
            "%d failed, %d of them at once as marked down\n",
            r.calls, BRK_THREADS * BRK_CALLS, r.elapsed_ms, BRK_TIMEOUT_MS, r.failed,
            r.marked_down);
    kvi_test_unhang(f->s);
    assert_int_equal(r.calls, BRK_THREADS * BRK_CALLS);
    assert_int_equal(r.other, 0);
    assert_int_equal(r.failed, BRK_THREADS * BRK_CALLS);
    assert_true(r.marked_down >= BRK_THREADS * BRK_CALLS - 50);

    /* Back: within down_for (and a probe) the calls succeed again, and from
     * the first success on every call does. */
    kvi_status st = KVI_E_TIMEOUT;
    int64_t t0 = mono_ms();
    while (st != KVI_OK && mono_ms() - t0 < 10 * BRK_DOWN_FOR_MS) {
        kvi_value v = KVI_VALUE_INIT;
        st = kvi_fetch(f->k, "redis:b", "k", 1, &v);
        kvi_value_free(&v);
        if (st != KVI_OK)
            usleep(10000);
    }
    assert_int_equal(st, KVI_OK);
    for (int i = 0; i < 100; i++)
        assert_int_equal(kvi_store(f->k, "redis:b", "k", 1, "w", 1, 0), KVI_OK);
    assert_fetch_is(f->k, "redis:b", "k", "w");
}

/* down_after=0 turns the breaker off: every call waits its timeout. */
static void test_breaker_off_with_down_after_0(void **state)
{
    struct fx *f = *state;
    add_urlf(f->k, "redis:b://127.0.0.1:%u/?timeout=100&down_after=0", f->port);
    assert_int_equal(kvi_store(f->k, "redis:b", "k", 1, "v", 1, 0), KVI_OK);
    kvi_test_hang(f->s);
    int slow = 0;
    for (int i = 0; i < 5; i++) {
        kvi_value v = KVI_VALUE_INIT;
        int64_t t0 = mono_ms();
        assert_int_equal(kvi_fetch(f->k, "redis:b", "k", 1, &v), KVI_E_TIMEOUT);
        slow += mono_ms() - t0 >= 80;
        assert_null(strstr(kvi_errmsg(f->k), "marked down"));
    }
    kvi_test_unhang(f->s);
    assert_int_equal(slow, 5);
}

static void test_failover_list_uses_next_host_and_remembers_it(void **state)
{
    struct fx *f = *state;
    kvi_ts_server *b = start_redis(NULL);
    kvi_reply *r = NULL;
    add_urlf(f->k, "redis:fo://127.0.0.1:%u,127.0.0.1:%u/?connect_timeout=500", f->port,
             kvi_ts_port(b));
    assert_int_equal(kvi_store(f->k, "redis:fo", "on", 2, "a", 1, 0), KVI_OK);

    assert_int_equal(kvi_ts_kill(f->s), KVI_TS_OK);
    assert_int_equal(kvi_store(f->k, "redis:fo", "on", 2, "b", 1, 0), KVI_OK);
    /* The failed first host was an internal retry of a call that
     * succeeded: no message. */
    assert_string_equal(kvi_errmsg(f->k), "");
    assert_fetch_is(f->k, "redis:fo", "on", "b");
    /* It went to b: b's own port answers for it. */
    const char *q = "CONFIG GET port";
    assert_int_equal(kvi_raw_query(f->k, "redis:fo", q, strlen(q), &r), KVI_OK);
    assert_int_equal(kvi_reply_count(r), 2);
    assert_int_equal(atoi(kvi_reply_str(kvi_reply_element(r, 1), NULL)), kvi_ts_port(b));
    kvi_reply_free(r);

    /* a comes back (empty): the engine stays on b, which works. */
    assert_int_equal(kvi_ts_restart(f->s), KVI_TS_OK);
    assert_fetch_is(f->k, "redis:fo", "on", "b");

    /* Both down: CONNECT. */
    assert_int_equal(kvi_ts_kill(f->s), KVI_TS_OK);
    assert_int_equal(kvi_ts_kill(b), KVI_TS_OK);
    kvi_value v = KVI_VALUE_INIT;
    assert_int_equal(kvi_fetch(f->k, "redis:fo", "on", 2, &v), KVI_E_CONNECT);
    kvi_ts_free(b);
}

static void test_lazy_connection_to_a_server_that_starts_later(void **state)
{
    (void)state;
    uint16_t port = 0;
    char portstr[8];
    kvi *k = new_kvi();
    assert_int_equal(kvi_ts_free_port(&port), KVI_TS_OK);
    add_urlf(k, "redis://127.0.0.1:%u/?lazy=1&connect_timeout=300", port);
    assert_int_equal(kvi_ping(k, "redis"), KVI_E_CONNECT);

    snprintf(portstr, sizeof portstr, "%u", port);
    const char *argv[] = {"redis-server", "--port", portstr, "--bind",
                          "127.0.0.1",    "--save", "",      NULL};
    kvi_ts_spec spec = {
        .name = "redis-late", .argv = argv, .port = port, .probe = kvi_ts_probe_redis};
    kvi_ts_server *s = NULL;
    if (kvi_ts_start(&spec, &s) != KVI_TS_OK)
        fail_msg("cannot start redis-server: %s", kvi_ts_errmsg());
    assert_int_equal(kvi_ping(k, "redis"), KVI_OK);
    assert_int_equal(kvi_store(k, "redis", "late", 4, "1", 1, 0), KVI_OK);
    kvi_free(k);
    kvi_ts_free(s);
}

static int64_t client_id(kvi *k)
{
    kvi_reply *r = NULL;
    assert_int_equal(kvi_raw_query(k, "redis", "CLIENT ID", 9, &r), KVI_OK);
    assert_int_equal(kvi_reply_type_of(r), KVI_REPLY_INTEGER);
    int64_t id = kvi_reply_integer(r);
    kvi_reply_free(r);
    return id;
}

static void test_forked_child_opens_its_own_connection(void **state)
{
    struct fx *f = *state;
    kvi *k = f->k;
    int64_t parent_id = client_id(k);
    int64_t n = 0;
    assert_int_equal(kvi_add(k, "redis", "forks", 5, 1, 0, &n), KVI_OK);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int bad = client_id(k) == parent_id;
        bad |= kvi_add(k, "redis", "forks", 5, 10, 0, &n) != KVI_OK || n != 11;
        kvi_free(k);
        _exit(bad ? 1 : 0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* The parent's connection is untouched by the child. */
    assert_int_equal(client_id(k), parent_id);
    assert_int_equal(kvi_add(k, "redis", "forks", 5, 100, 0, &n), KVI_OK);
    assert_int_equal(n, 111);
}

/* --------------------------------------------------------------------- */
/* Counters                                                               */

/* Lua numbers are doubles: the script must not lose precision nor miss an
 * overflow. */
static void test_counters_are_exact_int64(void **state)
{
    struct fx *f = *state;
    kvi *k = f->k;
    int64_t n = 0;
    assert_int_equal(kvi_store(k, "redis", "big", 3, "9007199254740993", 16, 0), KVI_OK);
    assert_int_equal(kvi_add(k, "redis", "big", 3, 2, 0, &n), KVI_OK);
    assert_int_equal(n, INT64_C(9007199254740995));

    assert_int_equal(kvi_store(k, "redis", "max", 3, "9223372036854775806", 19, 0), KVI_OK);
    assert_int_equal(kvi_add(k, "redis", "max", 3, 1, 0, &n), KVI_OK);
    assert_int_equal(n, INT64_MAX);
    assert_int_equal(kvi_add(k, "redis", "max", 3, 1, 0, &n), KVI_E_OVERFLOW);
    assert_int_equal(kvi_counter_fetch(k, "redis", "max", 3, &n), KVI_OK);
    assert_int_equal(n, INT64_MAX);

    assert_int_equal(kvi_add(k, "redis", "min", 3, INT64_MIN, 0, &n), KVI_OK);
    assert_int_equal(n, INT64_MIN);
    assert_int_equal(kvi_sub(k, "redis", "min", 3, 1, 0, &n), KVI_E_OVERFLOW);
    assert_int_equal(kvi_counter_fetch(k, "redis", "min", 3, &n), KVI_OK);
    assert_int_equal(n, INT64_MIN);
}

/* WRONGTYPE (a hash, a list) is NOT_A_COUNTER for every counter
 * operation, as a string that is not a number is. */
static void test_wrong_type_is_not_a_counter_for_every_counter_op(void **state)
{
    struct fx *f = *state;
    kvi *k = f->k;
    int64_t n = 0;
    raw_ok(k, "redis", "HSET h f 1");
    raw_ok(k, "redis", "RPUSH l 1");
    const char *keys[] = {"h", "l"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(kvi_add(k, "redis", keys[i], 1, 1, 0, &n), KVI_E_NOT_A_COUNTER);
        assert_int_equal(kvi_sub(k, "redis", keys[i], 1, 1, 0, &n), KVI_E_NOT_A_COUNTER);
        assert_int_equal(kvi_counter_fetch(k, "redis", keys[i], 1, &n), KVI_E_NOT_A_COUNTER);
        assert_int_equal(kvi_add_bounded(k, "redis", keys[i], 1, 1, 0, 0, 10, &n),
                         KVI_E_NOT_A_COUNTER);
        assert_int_equal(kvi_sub_bounded(k, "redis", keys[i], 1, 1, 0, 0, 10, &n),
                         KVI_E_NOT_A_COUNTER);
    }
}

static void test_counter_script_survives_script_flush(void **state)
{
    struct fx *f = *state;
    kvi *k = f->k;
    int64_t n = 0, ttl = 0;
    assert_int_equal(kvi_add(k, "redis", "c", 1, 1, 100, &n), KVI_OK);
    assert_int_equal(kvi_add_bounded(k, "redis", "b", 1, 1, 100, 0, 10, &n), KVI_OK);
    raw_ok(k, "redis", "SCRIPT FLUSH");
    assert_int_equal(kvi_add(k, "redis", "c", 1, 1, 5, &n), KVI_OK);
    assert_int_equal(n, 2);
    /* The TTL given at creation stays; the later one is ignored. */
    assert_int_equal(kvi_ttl(k, "redis", "c", 1, &ttl), KVI_OK);
    assert_true(ttl > 90 && ttl <= 100);
    /* The bounded script comes back through EVAL after NOSCRIPT too. */
    assert_int_equal(kvi_add_bounded(k, "redis", "b", 1, 1, 5, 0, 10, &n), KVI_OK);
    assert_int_equal(n, 2);
    assert_int_equal(kvi_ttl(k, "redis", "b", 1, &ttl), KVI_OK);
    assert_true(ttl > 90 && ttl <= 100);
}

/* Bounded add: applied within [min, max]; refused outside with the current
 * value, leaving value and expiry as they were. */
static void test_add_bounded_refuses_outside_bounds_and_changes_nothing(void **state)
{
    struct fx *f = *state;
    kvi *k = f->k;
    int64_t n = -1, ttl = 0;
    kvi_value v = KVI_VALUE_INIT;

    /* Missing key: created at 0 + delta with the expiry, when in bounds. */
    assert_int_equal(kvi_add_bounded(k, "redis", "cr", 2, 5, 100, 0, 10, &n), KVI_OK);
    assert_int_equal(n, 5);
    assert_int_equal(kvi_ttl(k, "redis", "cr", 2, &ttl), KVI_OK);
    assert_true(ttl > 90 && ttl <= 100);
    assert_int_equal(kvi_sub_bounded(k, "redis", "cr", 2, 3, 0, 0, 10, &n), KVI_OK);
    assert_int_equal(n, 2);
    /* Refused: the current value comes back, value and TTL stay. */
    n = -1;
    assert_int_equal(kvi_sub_bounded(k, "redis", "cr", 2, 3, 0, 0, 10, &n), KVI_OUT_OF_BOUNDS);
    assert_int_equal(n, 2);
    assert_int_equal(kvi_add_bounded(k, "redis", "cr", 2, 9, 0, 0, 10, &n), KVI_OUT_OF_BOUNDS);
    assert_int_equal(n, 2);
    assert_fetch_is(k, "redis", "cr", "2");
    assert_int_equal(kvi_ttl(k, "redis", "cr", 2, &ttl), KVI_OK);
    assert_true(ttl > 90 && ttl <= 100);
    /* Exactly at the bounds is within. */
    assert_int_equal(kvi_sub_bounded(k, "redis", "cr", 2, 2, 0, 0, 10, &n), KVI_OK);
    assert_int_equal(n, 0);
    assert_int_equal(kvi_add_bounded(k, "redis", "cr", 2, 10, 0, 0, 10, &n), KVI_OK);
    assert_int_equal(n, 10);

    /* A missing key out of bounds is not created; the value is 0. */
    n = -1;
    assert_int_equal(kvi_sub_bounded(k, "redis", "none", 4, 1, 60, 0, 10, &n), KVI_OUT_OF_BOUNDS);
    assert_int_equal(n, 0);
    assert_int_equal(kvi_fetch(k, "redis", "none", 4, &v), KVI_NOT_FOUND);

    /* A key without expiry keeps having none. */
    assert_int_equal(kvi_store(k, "redis", "p", 1, "7", 1, 0), KVI_OK);
    assert_int_equal(kvi_add_bounded(k, "redis", "p", 1, 1, 60, 0, 100, &n), KVI_OK);
    assert_int_equal(kvi_ttl(k, "redis", "p", 1, &ttl), KVI_OK);
    assert_int_equal(ttl, -1);
}

/* The bounds compare exactly beyond 2^53, and overflow stays OVERFLOW. */
static void test_add_bounded_is_exact_int64(void **state)
{
    struct fx *f = *state;
    kvi *k = f->k;
    int64_t n = 0;
    const int64_t big = INT64_C(9007199254740993); /* 2^53 + 1: no double */
    assert_int_equal(kvi_store(k, "redis", "big", 3, "9007199254740993", 16, 0), KVI_OK);
    assert_int_equal(kvi_add_bounded(k, "redis", "big", 3, 1, 0, big, big, &n), KVI_OUT_OF_BOUNDS);
    assert_int_equal(n, big);
    assert_int_equal(kvi_add_bounded(k, "redis", "big", 3, 1, 0, big, big + 1, &n), KVI_OK);
    assert_int_equal(n, big + 1);
    assert_int_equal(kvi_sub_bounded(k, "redis", "big", 3, 2, 0, big, INT64_MAX, &n),
                     KVI_OUT_OF_BOUNDS);
    assert_int_equal(n, big + 1);
    /* Negative bounds. */
    assert_int_equal(kvi_add_bounded(k, "redis", "neg", 3, -12, 0, -12, -5, &n), KVI_OK);
    assert_int_equal(n, -12);
    assert_int_equal(kvi_sub_bounded(k, "redis", "neg", 3, 1, 0, -12, -5, &n), KVI_OUT_OF_BOUNDS);
    assert_int_equal(kvi_add_bounded(k, "redis", "neg", 3, 8, 0, -12, -5, &n), KVI_OUT_OF_BOUNDS);
    assert_int_equal(n, -12);
    assert_int_equal(kvi_add_bounded(k, "redis", "neg", 3, 7, 0, -12, -5, &n), KVI_OK);
    assert_int_equal(n, -5);

    assert_int_equal(kvi_store(k, "redis", "max", 3, "9223372036854775807", 19, 0), KVI_OK);
    assert_int_equal(kvi_add_bounded(k, "redis", "max", 3, 1, 0, INT64_MIN, INT64_MAX, &n),
                     KVI_E_OVERFLOW);
    assert_int_equal(kvi_counter_fetch(k, "redis", "max", 3, &n), KVI_OK);
    assert_int_equal(n, INT64_MAX);
    assert_int_equal(kvi_store(k, "redis", "txt", 3, "abc", 3, 0), KVI_OK);
    assert_int_equal(kvi_add_bounded(k, "redis", "txt", 3, 1, 0, 0, 9, &n), KVI_E_NOT_A_COUNTER);
    assert_fetch_is(k, "redis", "txt", "abc");
}

/* Store-if-absent: only the first store wins, with its expiry; an expired
 * key counts as absent. */
static void test_store_nx_writes_only_when_absent(void **state)
{
    struct fx *f = *state;
    kvi *k = f->k;
    int64_t ttl = 0;
    assert_int_equal(kvi_store_nx(k, "redis", "lock", 4, "a", 1, 100), KVI_OK);
    assert_int_equal(kvi_store_nx(k, "redis", "lock", 4, "b", 1, 5), KVI_KEY_EXISTS);
    assert_fetch_is(k, "redis", "lock", "a");
    assert_int_equal(kvi_ttl(k, "redis", "lock", 4, &ttl), KVI_OK);
    assert_true(ttl > 90 && ttl <= 100);
    assert_int_equal(kvi_store_nx(k, "redis", "forever", 7, "x", 1, 0), KVI_OK);
    assert_int_equal(kvi_ttl(k, "redis", "forever", 7, &ttl), KVI_OK);
    assert_int_equal(ttl, -1);
    /* Expired: absent. */
    assert_int_equal(kvi_store_nx(k, "redis", "short", 5, "1", 1, 1), KVI_OK);
    int ok = 0;
    for (int i = 0; i < 40 && !ok; i++) {
        usleep(100000);
        ok = kvi_store_nx(k, "redis", "short", 5, "2", 1, 0) == KVI_OK;
    }
    assert_true(ok);
    assert_fetch_is(k, "redis", "short", "2");
}

/* Many threads on one handle: every add lands exactly once. */
struct adder {
    kvi *k;
    int64_t sum;
    unsigned seed;
    int bounded_ok;
};

static void *adder_main(void *arg)
{
    struct adder *a = arg;
    for (int i = 0; i < 500; i++) {
        int64_t d = (int64_t)(rand_r(&a->seed) % 2001) - 1000;
        int64_t n;
        if (kvi_add(a->k, "redis", "shared", 6, d, 0, &n) == KVI_OK)
            a->sum += d;
        else
            a->sum = INT64_MIN;
    }
    return NULL;
}

static void test_concurrent_adds_are_exact(void **state)
{
    struct fx *f = *state;
    struct adder ad[8];
    pthread_t th[8];
    for (unsigned i = 0; i < 8; i++) {
        ad[i] = (struct adder){f->k, 0, i + 1, 0};
        assert_int_equal(pthread_create(&th[i], NULL, adder_main, &ad[i]), 0);
    }
    int64_t want = 0;
    /* Every thread joined before any assertion (a failed one must not leave
     * threads running on this frame). */
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 8; i++) {
        assert_true(ad[i].sum != INT64_MIN);
        want += ad[i].sum;
    }
    int64_t got = 0;
    assert_int_equal(kvi_counter_fetch(f->k, "redis", "shared", 6, &got), KVI_OK);
    assert_int_equal(got, want);
}

static void *bounded_sub_main(void *arg)
{
    struct adder *a = arg;
    for (int i = 0; i < 100; i++) {
        int64_t n;
        kvi_status st = kvi_sub_bounded(a->k, "redis", "credit", 6, 1, 0, 0, INT64_MAX, &n);
        if (st == KVI_OK)
            a->bounded_ok++;
        else if (st != KVI_OUT_OF_BOUNDS)
            a->sum = INT64_MIN;
    }
    return NULL;
}

/* 4 threads x 100 bounded subs of 1 from 150, floor 0: exactly 150
 * succeed and the credit ends at 0, never below. */
static void test_concurrent_bounded_subs_never_go_below_min(void **state)
{
    struct fx *f = *state;
    struct adder ad[4];
    pthread_t th[4];
    assert_int_equal(kvi_store(f->k, "redis", "credit", 6, "150", 3, 0), KVI_OK);
    for (unsigned i = 0; i < 4; i++) {
        ad[i] = (struct adder){f->k, 0, i + 1, 0};
        assert_int_equal(pthread_create(&th[i], NULL, bounded_sub_main, &ad[i]), 0);
    }
    int total = 0;
    /* Every thread joined before any assertion (a failed one must not leave
     * threads running on this frame). */
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) {
        assert_true(ad[i].sum != INT64_MIN);
        total += ad[i].bounded_ok;
    }
    assert_int_equal(total, 150);
    int64_t got = -1;
    assert_int_equal(kvi_counter_fetch(f->k, "redis", "credit", 6, &got), KVI_OK);
    assert_int_equal(got, 0);
}

/* --------------------------------------------------------------------- */
/* Raw queries, replicas, options                                         */

static void test_raw_query_refuses_connection_state_commands(void **state)
{
    struct fx *f = *state;
    kvi *k = f->k;
    kvi_reply *r = NULL;
    assert_int_equal(kvi_raw_query(k, "redis", "MULTI", 5, &r), KVI_E_INVALID);
    assert_null(r);
    assert_int_equal(kvi_raw_query(k, "redis", "select 2", 8, &r), KVI_E_INVALID);
    assert_int_equal(kvi_raw_query(k, "redis", "AUTH x y", 8, &r), KVI_E_INVALID);
    assert_null(strstr(kvi_errmsg(k), "x y"));
    /* The pooled connection still works normally. */
    assert_int_equal(kvi_store(k, "redis", "a", 1, "1", 1, 0), KVI_OK);
    assert_int_equal(kvi_raw_query(k, "redis", "SET q \"a b\"", 11, &r), KVI_OK);
    assert_int_equal(kvi_reply_type_of(r), KVI_REPLY_STATUS);
    kvi_reply_free(r);
    assert_fetch_is(k, "redis", "q", "a b");
}

static size_t reply_depth(const kvi_reply *r)
{
    size_t deepest = 0;
    if (kvi_reply_type_of(r) != KVI_REPLY_ARRAY)
        return 0;
    for (size_t i = 0; i < kvi_reply_count(r); i++) {
        size_t d = reply_depth(kvi_reply_element(r, i));
        if (d > deepest)
            deepest = d;
    }
    return deepest + 1;
}

/* A reply nesting n levels, made by a Lua script (arrays in arrays). */
static kvi_status nested_reply(kvi *k, int n, kvi_reply **r)
{
    char q[256];
    snprintf(q, sizeof q,
             "EVAL \"local t = {} local c = t for i = 2, %d do local x = {} c[1] = x c = x end "
             "c[1] = 7 return t\" 0",
             n);
    return kvi_raw_query(k, "redis", q, strlen(q), r);
}

/* Raw replies are read at any depth up to 64 (hiredis 0.14's reader stops
 * at 7; COMMAND DOCS needs more); deeper is a clear KVI_E_PROTOCOL and the
 * next call works. */
static void test_raw_replies_nest_64_levels(void **state)
{
    struct fx *f = *state;
    kvi_reply *r = NULL;
    assert_int_equal(kvi_raw_query(f->k, "redis", "COMMAND DOCS", 12, &r), KVI_OK);
    assert_true(reply_depth(r) >= 8);
    assert_true(kvi_reply_count(r) > 100);
    kvi_reply_free(r);
    r = NULL;
    assert_int_equal(nested_reply(f->k, 40, &r), KVI_OK);
    assert_int_equal(reply_depth(r), 40);
    const kvi_reply *e = r;
    while (kvi_reply_type_of(e) == KVI_REPLY_ARRAY)
        e = kvi_reply_element(e, 0);
    assert_int_equal(kvi_reply_integer(e), 7);
    kvi_reply_free(r);
    r = NULL;
    assert_int_equal(nested_reply(f->k, 64, &r), KVI_OK);
    assert_int_equal(reply_depth(r), 64);
    kvi_reply_free(r);
    r = NULL;
    assert_int_equal(nested_reply(f->k, 65, &r), KVI_E_PROTOCOL);
    assert_null(r);
    assert_non_null(strstr(kvi_errmsg(f->k), "nests deeper than 64 levels"));
    assert_int_equal(kvi_raw_query(f->k, "redis", "COMMAND DOCS GET", 16, &r), KVI_OK);
    assert_true(reply_depth(r) >= 3);
    kvi_reply_free(r);
    /* Big flat and nil replies through the same reader. */
    raw_ok(f->k, "redis", "RPUSH big a b c d e f g h i j");
    assert_int_equal(kvi_raw_query(f->k, "redis", "LRANGE big 0 -1", 15, &r), KVI_OK);
    assert_int_equal(kvi_reply_count(r), 10);
    kvi_reply_free(r);
    assert_int_equal(kvi_raw_query(f->k, "redis", "GET nokey", 9, &r), KVI_OK);
    assert_int_equal(kvi_reply_type_of(r), KVI_REPLY_NIL);
    kvi_reply_free(r);
    assert_int_equal(kvi_store(f->k, "redis", "after", 5, "1", 1, 0), KVI_OK);
}

/* wait_replicas=N: a write is only OK once N replicas have it. */
static void test_wait_replicas_confirms_writes_on_replicas(void **state)
{
    struct fx *f = *state;
    kvi *k = f->k;
    char mport[8];
    int64_t n = 0;
    add_urlf(k, "redis:w://127.0.0.1:%u/?wait_replicas=1&wait_timeout=200", f->port);
    /* No replica: applied on the master but not acknowledged. */
    int64_t t0 = mono_ms();
    assert_int_equal(kvi_store(k, "redis:w", "w", 1, "1", 1, 0), KVI_E_TIMEOUT);
    assert_true(mono_ms() - t0 < 200 + 500);
    assert_non_null(strstr(kvi_errmsg(k), "replicas"));
    assert_int_equal(kvi_add(k, "redis:w", "n", 1, 1, 0, &n), KVI_E_TIMEOUT);
    assert_fetch_is(k, "redis:w", "w", "1"); /* reads do not wait */

    snprintf(mport, sizeof mport, "%u", f->port);
    const char *extra[] = {"--replicaof", "127.0.0.1", mport, "--repl-diskless-sync-delay",
                           "0",           NULL};
    kvi_ts_server *r = start_redis(extra);
    /* A generous WAIT limit: the machine may be busy. */
    add_urlf(k, "redis:rep://127.0.0.1:%u/?wait_replicas=1&wait_timeout=3000", f->port);
    int ok = 0;
    for (int i = 0; i < 100 && !ok; i++) {
        ok = kvi_store(k, "redis:rep", "w", 1, "2", 1, 0) == KVI_OK;
        if (!ok)
            usleep(100000);
    }
    assert_true(ok);
    assert_int_equal(kvi_add(k, "redis:rep", "n", 1, 1, 0, &n), KVI_OK);
    assert_int_equal(n, 2);
    assert_int_equal(kvi_remove(k, "redis:rep", "w", 1), KVI_OK);
    kvi_ts_free(r);
}

static void test_bad_options_are_rejected(void **state)
{
    (void)state;
    kvi *k = new_kvi();
    assert_int_equal(kvi_add_url(k, "redis://127.0.0.1:1/?cluster=maybe&lazy=1"), KVI_E_INVALID);
    assert_int_equal(kvi_add_url(k, "redis://127.0.0.1:1/?max_idle=0&lazy=1"), KVI_E_INVALID);
    assert_int_equal(kvi_add_url(k, "redis://127.0.0.1:1/?nosuch=1&lazy=1"), KVI_E_INVALID);
    assert_int_equal(kvi_add_url(k, "redis://127.0.0.1:1/2?cluster=yes&lazy=1"), KVI_E_INVALID);
    assert_int_equal(kvi_add_url(k, "redis://127.0.0.1:1/?wait_replicas=x&lazy=1"), KVI_E_INVALID);
    assert_int_equal(kvi_add_url(k, "redis://127.0.0.1:1/?wait_timeout=0&lazy=1"), KVI_E_INVALID);
    /* 0 is not "no limit" (docs/engines/redis.md): refused, naming the option. */
    assert_int_equal(kvi_add_url(k, "redis://127.0.0.1:1/?timeout=0&lazy=1"), KVI_E_INVALID);
    assert_non_null(strstr(kvi_errmsg(k), "timeout"));
    assert_int_equal(kvi_add_url(k, "redis://127.0.0.1:1/?connect_timeout=0&lazy=1"),
                     KVI_E_INVALID);
    assert_non_null(strstr(kvi_errmsg(k), "connect_timeout"));
    assert_int_equal(kvi_add_url(k, "redis://127.0.0.1:1/?down_for=0&lazy=1"), KVI_E_INVALID);
    assert_int_equal(kvi_add_url(k, "redis://127.0.0.1:1/?down_after=-1&lazy=1"), KVI_E_INVALID);
    kvi_free(k);
}

#define WITH_REDIS(t) cmocka_unit_test_setup_teardown(t, setup_redis, teardown)
#define WITH_SERVER(t) cmocka_unit_test_setup_teardown(t, setup_server, teardown)
#define WITH_PW_SERVER(t) cmocka_unit_test_setup_teardown(t, setup_pw_server, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        WITH_PW_SERVER(test_password_auth_succeeds),
        WITH_PW_SERVER(test_wrong_password_is_auth_error_without_the_password),
        WITH_PW_SERVER(test_missing_password_is_auth_error),
        WITH_REDIS(test_acl_user_auth),
        WITH_SERVER(test_database_is_selected),
        cmocka_unit_test(test_unix_socket),
        WITH_SERVER(test_killed_server_fails_fast_and_recovers),
        WITH_SERVER(test_hung_server_times_out_and_add_is_not_resent),
        WITH_SERVER(test_breaker_stopped_server_costs_a_few_timeouts_not_one_per_call),
        WITH_SERVER(test_breaker_off_with_down_after_0),
        WITH_SERVER(test_failover_list_uses_next_host_and_remembers_it),
        cmocka_unit_test(test_lazy_connection_to_a_server_that_starts_later),
        WITH_REDIS(test_forked_child_opens_its_own_connection),
        WITH_REDIS(test_counters_are_exact_int64),
        WITH_REDIS(test_wrong_type_is_not_a_counter_for_every_counter_op),
        WITH_REDIS(test_counter_script_survives_script_flush),
        WITH_REDIS(test_add_bounded_refuses_outside_bounds_and_changes_nothing),
        WITH_REDIS(test_add_bounded_is_exact_int64),
        WITH_REDIS(test_store_nx_writes_only_when_absent),
        WITH_REDIS(test_raw_query_refuses_connection_state_commands),
        WITH_REDIS(test_raw_replies_nest_64_levels),
        WITH_REDIS(test_concurrent_adds_are_exact),
        WITH_REDIS(test_concurrent_bounded_subs_never_go_below_min),
        WITH_SERVER(test_wait_replicas_confirms_writes_on_replicas),
        cmocka_unit_test(test_bad_options_are_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
