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
#include "testserver.h"

#define SKIP_EXIT 77

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static kvi_ts_server *start_redis(const char *const *extra)
{
    kvi_ts_server *s = NULL;
    kvi_ts_result r = kvi_ts_redis_start(&s, extra);
    if (r == KVI_TS_MISSING) {
        fprintf(stderr, "SKIP: %s\n", kvi_ts_errmsg());
        exit(SKIP_EXIT);
    }
    if (r != KVI_TS_OK)
        fail_msg("cannot start redis-server: %s", kvi_ts_errmsg());
    return s;
}

static kvi *new_kvi(void)
{
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    return k;
}

/* Adds url to k, failing the test with the detail message otherwise. */
static void add_url_ok(kvi *k, const char *url)
{
    kvi_status st = kvi_add_url(k, url);
    if (st != KVI_OK)
        fail_msg("kvi_add_url: %s: %s", kvi_status_name(st), kvi_errmsg(k));
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

static void test_password_auth_succeeds(void **state)
{
    (void)state;
    const char *extra[] = {"--requirepass", "s3cret-pw", NULL};
    kvi_ts_server *s = start_redis(extra);
    char url[256];
    kvi *k = new_kvi();
    snprintf(url, sizeof url, "redis://:s3cret-pw@127.0.0.1:%u/", kvi_ts_port(s));
    add_url_ok(k, url);
    assert_int_equal(kvi_store(k, "redis", "a", 1, "1", 1, 0), KVI_OK);
    assert_fetch_is(k, "redis", "a", "1");
    kvi_free(k);
    kvi_ts_free(s);
}

static void test_wrong_password_is_auth_error_without_the_password(void **state)
{
    (void)state;
    const char *extra[] = {"--requirepass", "s3cret-pw", NULL};
    kvi_ts_server *s = start_redis(extra);
    char url[256];
    kvi *k = new_kvi();
    snprintf(url, sizeof url, "redis://:Wr0ngPassw0rd@127.0.0.1:%u/", kvi_ts_port(s));
    assert_int_equal(kvi_add_url(k, url), KVI_E_AUTH);
    assert_null(strstr(kvi_errmsg(k), "Wr0ngPassw0rd"));
    assert_non_null(strstr(kvi_errmsg(k), "auth"));

    /* Lazy: the error comes with the first call instead, still masked. */
    snprintf(url, sizeof url, "redis:lazy://:Wr0ngPassw0rd@127.0.0.1:%u/?lazy=1", kvi_ts_port(s));
    add_url_ok(k, url);
    assert_int_equal(kvi_store(k, "redis:lazy", "a", 1, "1", 1, 0), KVI_E_AUTH);
    assert_null(strstr(kvi_errmsg(k), "Wr0ngPassw0rd"));
    kvi_free(k);
    kvi_ts_free(s);
}

static void test_missing_password_is_auth_error(void **state)
{
    (void)state;
    const char *extra[] = {"--requirepass", "s3cret-pw", NULL};
    kvi_ts_server *s = start_redis(extra);
    char url[256];
    kvi *k = new_kvi();
    snprintf(url, sizeof url, "redis://127.0.0.1:%u/", kvi_ts_port(s));
    assert_int_equal(kvi_add_url(k, url), KVI_E_AUTH);
    kvi_free(k);
    kvi_ts_free(s);
}

static void test_acl_user_auth(void **state)
{
    (void)state;
    kvi_ts_server *s = start_redis(NULL);
    char url[256];
    kvi *k = new_kvi();
    kvi_reply *r = NULL;
    snprintf(url, sizeof url, "redis://127.0.0.1:%u/", kvi_ts_port(s));
    add_url_ok(k, url);
    const char *q = "ACL SETUSER alice on >alice-pw-42 ~app:* +@all";
    assert_int_equal(kvi_raw_query(k, "redis", q, strlen(q), &r), KVI_OK);
    assert_int_equal(kvi_reply_type_of(r), KVI_REPLY_STATUS);
    kvi_reply_free(r);

    snprintf(url, sizeof url, "redis:alice://alice:alice-pw-42@127.0.0.1:%u/", kvi_ts_port(s));
    add_url_ok(k, url);
    assert_int_equal(kvi_store(k, "redis:alice", "app:x", 5, "v", 1, 0), KVI_OK);
    assert_fetch_is(k, "redis:alice", "app:x", "v");
    /* The ACL limits alice to app:* keys: the server's refusal is AUTH. */
    assert_int_equal(kvi_store(k, "redis:alice", "other", 5, "v", 1, 0), KVI_E_AUTH);

    snprintf(url, sizeof url, "redis:bad://alice:not-her-pw@127.0.0.1:%u/", kvi_ts_port(s));
    assert_int_equal(kvi_add_url(k, url), KVI_E_AUTH);
    assert_null(strstr(kvi_errmsg(k), "not-her-pw"));
    snprintf(url, sizeof url, "redis:nouser://bob:alice-pw-42@127.0.0.1:%u/", kvi_ts_port(s));
    assert_int_equal(kvi_add_url(k, url), KVI_E_AUTH);
    assert_null(strstr(kvi_errmsg(k), "alice-pw-42"));
    kvi_free(k);
    kvi_ts_free(s);
}

static void test_database_is_selected(void **state)
{
    (void)state;
    kvi_ts_server *s = start_redis(NULL);
    char url[256];
    kvi *k = new_kvi();
    kvi_value v = KVI_VALUE_INIT;
    snprintf(url, sizeof url, "redis:db3://127.0.0.1:%u/3", kvi_ts_port(s));
    add_url_ok(k, url);
    snprintf(url, sizeof url, "redis://127.0.0.1:%u/0", kvi_ts_port(s));
    add_url_ok(k, url);
    assert_int_equal(kvi_store(k, "redis:db3", "only3", 5, "x", 1, 0), KVI_OK);
    assert_fetch_is(k, "redis:db3", "only3", "x");
    assert_int_equal(kvi_fetch(k, "redis", "only3", 5, &v), KVI_NOT_FOUND);

    /* A database the server does not have is refused at open. */
    snprintf(url, sizeof url, "redis:db99://127.0.0.1:%u/99", kvi_ts_port(s));
    assert_int_equal(kvi_add_url(k, url), KVI_E_INVALID);
    snprintf(url, sizeof url, "redis:dbx://127.0.0.1:%u/x", kvi_ts_port(s));
    assert_int_equal(kvi_add_url(k, url), KVI_E_BAD_URL);
    kvi_free(k);
    kvi_ts_free(s);
}

static void test_unix_socket(void **state)
{
    (void)state;
    char path[512], url[600];
    char *dir = NULL;
    assert_int_equal(kvi_ts_make_tempdir("redis-sock", &dir), KVI_TS_OK);
    snprintf(path, sizeof path, "%s/redis.sock", dir);
    const char *extra[] = {"--unixsocket", path, "--unixsocketperm", "700", NULL};
    kvi_ts_server *s = start_redis(extra);
    kvi *k = new_kvi();
    snprintf(url, sizeof url, "redis:///?socket=%s", path);
    add_url_ok(k, url);
    assert_int_equal(kvi_store(k, "redis", "via-socket", 10, "1", 1, 0), KVI_OK);
    assert_int_equal(kvi_ping(k, "redis"), KVI_OK);
    /* Same server over TCP sees the key. */
    snprintf(url, sizeof url, "redis:tcp://127.0.0.1:%u/", kvi_ts_port(s));
    add_url_ok(k, url);
    assert_fetch_is(k, "redis:tcp", "via-socket", "1");
    /* A socket plus a host list is ambiguous. */
    snprintf(url, sizeof url, "redis:both://127.0.0.1:%u/?socket=%s", kvi_ts_port(s), path);
    assert_int_equal(kvi_add_url(k, url), KVI_E_INVALID);
    kvi_free(k);
    kvi_ts_free(s);
    kvi_ts_remove_tree(dir);
    free(dir);
}

/* A dead server: calls fail fast with CONNECT; once it is back the next
 * call succeeds without anything done by the application. */
static void test_killed_server_fails_fast_and_recovers(void **state)
{
    (void)state;
    kvi_ts_server *s = start_redis(NULL);
    char url[256];
    kvi *k = new_kvi();
    kvi_value v = KVI_VALUE_INIT;
    int64_t n = 0;
    snprintf(url, sizeof url, "redis://127.0.0.1:%u/?timeout=500&connect_timeout=500",
             kvi_ts_port(s));
    add_url_ok(k, url);
    assert_int_equal(kvi_store(k, "redis", "k", 1, "v", 1, 0), KVI_OK);

    assert_int_equal(kvi_ts_kill(s), KVI_TS_OK);
    for (int i = 0; i < 3; i++) {
        int64_t t0 = mono_ms();
        kvi_status st = kvi_fetch(k, "redis", "k", 1, &v);
        int64_t elapsed = mono_ms() - t0;
        assert_true(st == KVI_E_CONNECT || st == KVI_E_TIMEOUT);
        assert_true(elapsed < 500 + 300);
        assert_null(v.data);
        st = kvi_add(k, "redis", "n", 1, 1, 0, &n);
        assert_true(st == KVI_E_CONNECT || st == KVI_E_TIMEOUT);
    }
    assert_int_equal(kvi_ts_restart(s), KVI_TS_OK);
    /* The pooled connection is stale: the engine notices and reconnects. */
    assert_int_equal(kvi_add(k, "redis", "n", 1, 5, 0, &n), KVI_OK);
    assert_int_equal(n, 5);
    assert_int_equal(kvi_store(k, "redis", "k", 1, "w", 1, 0), KVI_OK);
    assert_fetch_is(k, "redis", "k", "w");
    kvi_free(k);
    kvi_ts_free(s);
}

/* A hung server (SIGSTOP): calls give TIMEOUT within the timeout; an add
 * that timed out is not sent again (the server applies it once when it
 * resumes). */
static void test_hung_server_times_out_and_add_is_not_resent(void **state)
{
    (void)state;
    kvi_ts_server *s = start_redis(NULL);
    char url[256];
    kvi *k = new_kvi();
    kvi_value v = KVI_VALUE_INIT;
    int64_t n = 0;
    snprintf(url, sizeof url, "redis://127.0.0.1:%u/?timeout=300", kvi_ts_port(s));
    add_url_ok(k, url);
    assert_int_equal(kvi_add(k, "redis", "ctr", 3, 10, 0, &n), KVI_OK);

    assert_int_equal(kill(kvi_ts_pid(s), SIGSTOP), 0);
    int64_t t0 = mono_ms();
    assert_int_equal(kvi_add(k, "redis", "ctr", 3, 7, 0, &n), KVI_E_TIMEOUT);
    int64_t elapsed = mono_ms() - t0;
    assert_true(elapsed >= 250 && elapsed < 300 + 300);
    t0 = mono_ms();
    assert_int_equal(kvi_fetch(k, "redis", "ctr", 3, &v), KVI_E_TIMEOUT);
    assert_true(mono_ms() - t0 < 300 + 300);
    assert_int_equal(kill(kvi_ts_pid(s), SIGCONT), 0);

    /* The timed-out add reached the server and was applied exactly once. */
    int64_t value = 0;
    assert_int_equal(kvi_counter_fetch(k, "redis", "ctr", 3, &value), KVI_OK);
    assert_int_equal(value, 17);
    kvi_free(k);
    kvi_ts_free(s);
}

static void test_failover_list_uses_next_host_and_remembers_it(void **state)
{
    (void)state;
    kvi_ts_server *a = start_redis(NULL);
    kvi_ts_server *b = start_redis(NULL);
    char url[256];
    kvi *k = new_kvi();
    kvi_reply *r = NULL;
    snprintf(url, sizeof url, "redis://127.0.0.1:%u,127.0.0.1:%u/?connect_timeout=500",
             kvi_ts_port(a), kvi_ts_port(b));
    add_url_ok(k, url);
    assert_int_equal(kvi_store(k, "redis", "on", 2, "a", 1, 0), KVI_OK);

    assert_int_equal(kvi_ts_kill(a), KVI_TS_OK);
    assert_int_equal(kvi_store(k, "redis", "on", 2, "b", 1, 0), KVI_OK);
    assert_fetch_is(k, "redis", "on", "b");
    /* It went to b: b's own port answers for it. */
    const char *q = "CONFIG GET port";
    assert_int_equal(kvi_raw_query(k, "redis", q, strlen(q), &r), KVI_OK);
    assert_int_equal(kvi_reply_count(r), 2);
    assert_int_equal(atoi(kvi_reply_str(kvi_reply_element(r, 1), NULL)), kvi_ts_port(b));
    kvi_reply_free(r);

    /* a comes back (empty): the engine stays on b, which works. */
    assert_int_equal(kvi_ts_restart(a), KVI_TS_OK);
    assert_fetch_is(k, "redis", "on", "b");

    /* Both down: CONNECT. */
    assert_int_equal(kvi_ts_kill(a), KVI_TS_OK);
    assert_int_equal(kvi_ts_kill(b), KVI_TS_OK);
    kvi_value v = KVI_VALUE_INIT;
    assert_int_equal(kvi_fetch(k, "redis", "on", 2, &v), KVI_E_CONNECT);
    kvi_free(k);
    kvi_ts_free(a);
    kvi_ts_free(b);
}

static void test_lazy_connection_to_a_server_that_starts_later(void **state)
{
    (void)state;
    uint16_t port = 0;
    char url[256], portstr[8];
    kvi *k = new_kvi();
    assert_int_equal(kvi_ts_free_port(&port), KVI_TS_OK);
    snprintf(url, sizeof url, "redis://127.0.0.1:%u/?lazy=1&connect_timeout=300", port);
    add_url_ok(k, url);
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
    (void)state;
    kvi_ts_server *s = start_redis(NULL);
    char url[256];
    kvi *k = new_kvi();
    snprintf(url, sizeof url, "redis://127.0.0.1:%u/", kvi_ts_port(s));
    add_url_ok(k, url);
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
    kvi_free(k);
    kvi_ts_free(s);
}

/* Lua numbers are doubles: the script must not lose precision nor miss an
 * overflow. */
static void test_counters_are_exact_int64(void **state)
{
    (void)state;
    kvi_ts_server *s = start_redis(NULL);
    char url[256];
    kvi *k = new_kvi();
    int64_t n = 0;
    snprintf(url, sizeof url, "redis://127.0.0.1:%u/", kvi_ts_port(s));
    add_url_ok(k, url);
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

    /* A hash is not a counter either. */
    kvi_reply *r = NULL;
    assert_int_equal(kvi_raw_query(k, "redis", "HSET h f 1", 10, &r), KVI_OK);
    kvi_reply_free(r);
    assert_int_equal(kvi_add(k, "redis", "h", 1, 1, 0, &n), KVI_E_NOT_A_COUNTER);
    kvi_free(k);
    kvi_ts_free(s);
}

static void test_counter_script_survives_script_flush(void **state)
{
    (void)state;
    kvi_ts_server *s = start_redis(NULL);
    char url[256];
    kvi *k = new_kvi();
    int64_t n = 0, ttl = 0;
    kvi_reply *r = NULL;
    snprintf(url, sizeof url, "redis://127.0.0.1:%u/", kvi_ts_port(s));
    add_url_ok(k, url);
    assert_int_equal(kvi_add(k, "redis", "c", 1, 1, 100, &n), KVI_OK);
    assert_int_equal(kvi_raw_query(k, "redis", "SCRIPT FLUSH", 12, &r), KVI_OK);
    kvi_reply_free(r);
    assert_int_equal(kvi_add(k, "redis", "c", 1, 1, 5, &n), KVI_OK);
    assert_int_equal(n, 2);
    /* The TTL given at creation stays; the later one is ignored. */
    assert_int_equal(kvi_ttl(k, "redis", "c", 1, &ttl), KVI_OK);
    assert_true(ttl > 90 && ttl <= 100);
    kvi_free(k);
    kvi_ts_free(s);
}

static void test_raw_query_refuses_connection_state_commands(void **state)
{
    (void)state;
    kvi_ts_server *s = start_redis(NULL);
    char url[256];
    kvi *k = new_kvi();
    kvi_reply *r = NULL;
    snprintf(url, sizeof url, "redis://127.0.0.1:%u/", kvi_ts_port(s));
    add_url_ok(k, url);
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
    kvi_free(k);
    kvi_ts_free(s);
}

/* Many threads on one handle: every add lands exactly once. */
struct adder {
    kvi *k;
    int64_t sum;
    unsigned seed;
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
    (void)state;
    kvi_ts_server *s = start_redis(NULL);
    char url[256];
    kvi *k = new_kvi();
    struct adder ad[8];
    pthread_t th[8];
    snprintf(url, sizeof url, "redis://127.0.0.1:%u/", kvi_ts_port(s));
    add_url_ok(k, url);
    for (unsigned i = 0; i < 8; i++) {
        ad[i] = (struct adder){k, 0, i + 1};
        assert_int_equal(pthread_create(&th[i], NULL, adder_main, &ad[i]), 0);
    }
    int64_t want = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_true(ad[i].sum != INT64_MIN);
        want += ad[i].sum;
    }
    int64_t got = 0;
    assert_int_equal(kvi_counter_fetch(k, "redis", "shared", 6, &got), KVI_OK);
    assert_int_equal(got, want);
    kvi_free(k);
    kvi_ts_free(s);
}

/* wait_replicas=N: a write is only OK once N replicas have it. */
static void test_wait_replicas_confirms_writes_on_replicas(void **state)
{
    (void)state;
    kvi_ts_server *m = start_redis(NULL);
    char url[256], mport[8];
    kvi *k = new_kvi();
    int64_t n = 0;
    snprintf(url, sizeof url, "redis://127.0.0.1:%u/?wait_replicas=1&wait_timeout=200",
             kvi_ts_port(m));
    add_url_ok(k, url);
    /* No replica: applied on the master but not acknowledged. */
    int64_t t0 = mono_ms();
    assert_int_equal(kvi_store(k, "redis", "w", 1, "1", 1, 0), KVI_E_TIMEOUT);
    assert_true(mono_ms() - t0 < 200 + 500);
    assert_non_null(strstr(kvi_errmsg(k), "replicas"));
    assert_int_equal(kvi_add(k, "redis", "n", 1, 1, 0, &n), KVI_E_TIMEOUT);
    assert_fetch_is(k, "redis", "w", "1"); /* reads do not wait */

    snprintf(mport, sizeof mport, "%u", kvi_ts_port(m));
    const char *extra[] = {"--replicaof", "127.0.0.1", mport, "--repl-diskless-sync-delay",
                           "0",           NULL};
    kvi_ts_server *r = start_redis(extra);
    /* A generous WAIT limit: the machine may be busy. */
    snprintf(url, sizeof url, "redis:rep://127.0.0.1:%u/?wait_replicas=1&wait_timeout=3000",
             kvi_ts_port(m));
    add_url_ok(k, url);
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
    kvi_free(k);
    kvi_ts_free(r);
    kvi_ts_free(m);
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
    kvi_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_password_auth_succeeds),
        cmocka_unit_test(test_wrong_password_is_auth_error_without_the_password),
        cmocka_unit_test(test_missing_password_is_auth_error),
        cmocka_unit_test(test_acl_user_auth),
        cmocka_unit_test(test_database_is_selected),
        cmocka_unit_test(test_unix_socket),
        cmocka_unit_test(test_killed_server_fails_fast_and_recovers),
        cmocka_unit_test(test_hung_server_times_out_and_add_is_not_resent),
        cmocka_unit_test(test_failover_list_uses_next_host_and_remembers_it),
        cmocka_unit_test(test_lazy_connection_to_a_server_that_starts_later),
        cmocka_unit_test(test_forked_child_opens_its_own_connection),
        cmocka_unit_test(test_counters_are_exact_int64),
        cmocka_unit_test(test_counter_script_survives_script_flush),
        cmocka_unit_test(test_raw_query_refuses_connection_state_commands),
        cmocka_unit_test(test_concurrent_adds_are_exact),
        cmocka_unit_test(test_wait_replicas_confirms_writes_on_replicas),
        cmocka_unit_test(test_bad_options_are_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
