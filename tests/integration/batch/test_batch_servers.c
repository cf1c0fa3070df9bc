/*
 * test_batch_servers.c -- batches against real servers (redis-server and
 * memcached started on free 127.0.0.1 ports), where a batch meets the
 * network: a server killed in the middle of a batch (the ops before the
 * cut have their results, the ops after it fail with a clear status, no
 * state-changing op ran twice, none was acknowledged and lost), a hung
 * server and the batch's deadline, a stopped server behind the circuit
 * breaker (fail fast, nothing unknown because nothing was sent), and the
 * next batch after the server is back.
 *
 *   test_batch_servers redis|memcached
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "kvi/kvi.h"
#include "kvitest.h"

static const char *engine; /* "redis" or "memcached" */

struct fx {
    kvi_ts_server *s;
    kvi *k;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->s = strcmp(engine, "redis") == 0 ? kvi_test_redis(NULL) : kvi_test_memcached(NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    kvi_free(f->k);
    if (kvi_ts_pid(f->s) != 0)
        kvi_test_unhang(f->s);
    kvi_ts_free(f->s);
    free(f);
    return 0;
}

/* Defines "<engine>:t" on the fixture's server with the URL options rest. */
static void define(struct fx *f, const char *rest)
{
    char url[512], id[64];
    kvi_test_url(url, sizeof url, engine, f->s, rest);
    snprintf(id, sizeof id, "%s://", engine);
    /* kvi_test_url writes "<engine>://"; the test's id is "<engine>:t". */
    char named[600];
    snprintf(named, sizeof named, "%s:t://%s", engine, url + strlen(id));
    kvi_free(f->k);
    f->k = kvi_test_context1(named);
}

static char tid[64];
static const char *id(void)
{
    snprintf(tid, sizeof tid, "%s:t", engine);
    return tid;
}

struct killer {
    kvi_ts_server *s;
    kvi *k; /* its own context: reads the counter while the batch runs */
    int64_t at; /* kill once the counter has reached this */
};

/* Kills the server once the batch's adds have visibly started (the
 * counter reached kl->at), whatever the speed of the machine (valgrind,
 * sanitizers); gives up waiting after 20 s. */
static void *kill_when_started(void *arg)
{
    struct killer *kl = arg;
    int64_t until = kvi_test_mono_ms() + 20000;
    while (kvi_test_mono_ms() < until) {
        int64_t v = 0;
        if (kvi_counter_fetch(kl->k, id(), "ctr", 3, &v) == KVI_OK && v >= kl->at)
            break;
        kvi_test_sleep_ms(1);
    }
    kvi_ts_kill(kl->s);
    return NULL;
}

/* A batch of n pairs (add "ctr" 1, store "s<i>") with the server killed
 * while it runs, once the counter reached kill_at.  Returns the index of
 * the first op that failed (n*2 when the batch finished before the kill). */
static size_t cut_batch(struct fx *f, size_t pairs, int64_t kill_at, kvi_batch **out)
{
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(f->k, &b), KVI_OK);
    char key[32];
    for (size_t i = 0; i < pairs; i++) {
        assert_int_equal(kvi_batch_add(b, id(), "ctr", 3, 1, 0), KVI_OK);
        int n = snprintf(key, sizeof key, "s%zu", i);
        assert_int_equal(kvi_batch_store(b, id(), key, (size_t)n, "v", 1, 0), KVI_OK);
    }
    char url[512], named[600];
    kvi_test_url(url, sizeof url, engine, f->s, "?timeout=2000&down_after=0");
    snprintf(named, sizeof named, "%s:t://%s", engine, url + strlen(engine) + 3);
    struct killer kl = {f->s, kvi_test_context1(named), kill_at};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, kill_when_started, &kl), 0);
    (void)kvi_batch_run(b, 0);
    pthread_join(t, NULL);
    kvi_free(kl.k);
    size_t cut = kvi_batch_count(b);
    for (size_t i = 0; i < kvi_batch_count(b); i++)
        if (kvi_batch_status(b, i) != KVI_OK) {
            cut = i;
            break;
        }
    *out = b;
    return cut;
}

/* The ops before the cut succeeded, each add exactly once and in order
 * (add number j returned j); every op after it failed: an add with
 * KVI_E_OUTCOME_UNKNOWN (or a plain connection error when it never left
 * the client), a store with a connection error, each with a message. */
static void test_server_killed_in_the_middle_of_a_batch(void **state)
{
    struct fx *f = *state;
    define(f, "?timeout=2000&connect_timeout=300&down_after=0");
    kvi_batch *b = NULL;
    size_t pairs = 50000, cut = 0;
    for (int round = 0; round < 4; round++) {
        if (round > 0) {
            kvi_batch_free(b);
            assert_int_equal(kvi_ts_restart(f->s), KVI_TS_OK);
            (void)kvi_remove(f->k, id(), "ctr", 3);
            pairs *= 4;
        }
        /* Warm: connected, scripts loaded, so the kill hits the pipeline. */
        assert_int_equal(kvi_store(f->k, id(), "warm", 4, "1", 1, 0), KVI_OK);
        cut = cut_batch(f, pairs, 500, &b);
        if (cut > 0 && cut < 2 * pairs)
            break;
    }
    if (cut == 0 || cut == 2 * pairs) {
        kvi_batch_free(b);
        fail_msg("the kill never landed inside a batch (cut at %zu of %zu)", cut, 2 * pairs);
    }
    printf("# cut at op %zu of %zu\n", cut, 2 * pairs);
    size_t unknown = 0;
    if (strcmp(engine, "memcached") == 0) {
        /* memcached pipelines ops on different keys (mc_pipe.c): only ops
         * on one key keep the batch's order.  So the adds (all on "ctr")
         * succeed up to a cut, each exactly once and in order, and fail
         * after it; each store succeeded or failed with a clear status. */
        size_t adds_ok = 0, failed = 0;
        for (size_t i = 0; i < 2 * pairs; i++) {
            kvi_status st = kvi_batch_status(b, i);
            if (st != KVI_OK) {
                failed++;
                assert_true(strlen(kvi_batch_errmsg(b, i)) > 0);
            }
            if (i % 2 == 1) {
                if (st != KVI_OK && st != KVI_E_IO && st != KVI_E_CONNECT && st != KVI_E_TIMEOUT)
                    fail_msg("store %zu: %s (%s)", i, kvi_status_name(st), kvi_batch_errmsg(b, i));
                continue;
            }
            if (st == KVI_OK) {
                if (adds_ok != i / 2)
                    fail_msg("add %zu succeeded after a failed add", i / 2);
                adds_ok++;
                if (kvi_batch_integer(b, i) != (int64_t)adds_ok)
                    fail_msg("add %zu returned %lld: an add ran twice or out of order", i / 2,
                             (long long)kvi_batch_integer(b, i));
            } else if (st == KVI_E_OUTCOME_UNKNOWN) {
                unknown++;
            } else if (st != KVI_E_CONNECT && st != KVI_E_TIMEOUT && st != KVI_E_IO) {
                fail_msg("add %zu after the cut: %s", i, kvi_status_name(st));
            }
        }
        printf("# %zu adds ok, %zu unknown, %zu ops failed\n", adds_ok, unknown, failed);
        /* One add at a time is in flight on its key: at most one unknown. */
        assert_true(unknown <= 1);
        assert_true(adds_ok > 0 && adds_ok < pairs);
        assert_int_equal(kvi_batch_failed(b), failed);
    }
    for (size_t i = 0; strcmp(engine, "redis") == 0 && i < 2 * pairs; i++) {
        kvi_status st = kvi_batch_status(b, i);
        if (i < cut) {
            assert_int_equal(st, KVI_OK);
            if (i % 2 == 0 && kvi_batch_integer(b, i) != (int64_t)(i / 2 + 1))
                fail_msg("add %zu returned %lld: an add ran twice or out of order", i / 2,
                         (long long)kvi_batch_integer(b, i));
            continue;
        }
        if (st == KVI_OK)
            fail_msg("op %zu succeeded after the cut at %zu", i, cut);
        assert_true(strlen(kvi_batch_errmsg(b, i)) > 0);
        if (i % 2 == 0) {
            if (st == KVI_E_OUTCOME_UNKNOWN)
                unknown++;
            else if (st != KVI_E_CONNECT && st != KVI_E_TIMEOUT && st != KVI_E_IO)
                fail_msg("add %zu after the cut: %s", i, kvi_status_name(st));
        } else if (st != KVI_E_IO && st != KVI_E_CONNECT && st != KVI_E_TIMEOUT) {
            fail_msg("store %zu after the cut: %s (%s)", i, kvi_status_name(st),
                     kvi_batch_errmsg(b, i));
        }
    }
    /* The ops written to the connection before it broke are unknown (a
     * pipeline has many in flight; one by one, at most the one). */
    if (strcmp(engine, "redis") == 0) {
        printf("# %zu adds unknown\n", unknown);
        assert_true(unknown > 0);
        assert_int_equal(kvi_batch_failed(b), 2 * pairs - cut);
    }
    kvi_batch_free(b);

    /* Back: the next batch works without anything done by the caller. */
    assert_int_equal(kvi_ts_restart(f->s), KVI_TS_OK);
    assert_int_equal(kvi_batch_new(f->k, &b), KVI_OK);
    assert_int_equal(kvi_batch_store(b, id(), "after", 5, "x", 1, 0), KVI_OK);
    assert_int_equal(kvi_batch_fetch(b, id(), "after", 5), KVI_OK);
    assert_int_equal(kvi_batch_run(b, 5000), KVI_OK);
    assert_string_equal(kvi_batch_value(b, 1, NULL), "x");
    kvi_batch_free(b);
}

/* The hung-server set-up: defines "<engine>:t" with a 10 s timeout and no
 * breaker, stores "k", then gives a new batch with `fetches` fetches of "k"
 * followed by `adds` adds on "n" (the caller runs it on the hung server
 * with run_hung()). */
static kvi_batch *hung_batch(struct fx *f, int fetches, int adds)
{
    define(f, "?timeout=10000&down_after=0");
    assert_int_equal(kvi_store(f->k, id(), "k", 1, "v", 1, 0), KVI_OK);
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(f->k, &b), KVI_OK);
    for (int i = 0; i < fetches; i++)
        assert_int_equal(kvi_batch_fetch(b, id(), "k", 1), KVI_OK);
    for (int i = 0; i < adds; i++)
        assert_int_equal(kvi_batch_add(b, id(), "n", 1, 1, 0), KVI_OK);
    return b;
}

/* Runs b with a 400 ms deadline while the fixture's server is hung
 * (SIGSTOP); checks the batch failed (timeout or unknown) and ended after
 * the deadline but before max_ms. */
static void run_hung(struct fx *f, kvi_batch *b, const char *what, int64_t max_ms)
{
    kvi_test_hang(f->s);
    int64_t t0 = kvi_test_mono_ms();
    kvi_status st = kvi_batch_run(b, 400);
    int64_t dt = kvi_test_mono_ms() - t0;
    kvi_test_unhang(f->s);
    printf("# %s on a hung server ended after %lld ms (deadline 400 ms)\n", what, (long long)dt);
    assert_true(st == KVI_E_TIMEOUT || st == KVI_E_OUTCOME_UNKNOWN);
    assert_true(dt >= 350 && dt < max_ms);
}

/* A hung server (SIGSTOP): a batch of fetches and adds ends by its
 * deadline, well before the connection's own timeout. */
static void test_deadline_ends_a_batch_on_a_hung_server(void **state)
{
    struct fx *f = *state;
    kvi_batch *b = hung_batch(f, 10, 10);
    run_hung(f, b, "batch", 3000);
    /* The fetches time out; an add was sent and is unknown (a pipeline,
     * redis) or was not sent when the deadline had passed (memcached sends
     * counters one by one, after the multi-get of the fetches). */
    for (size_t i = 0; i < 20; i++) {
        kvi_status s = kvi_batch_status(b, i);
        if (i < 10)
            assert_int_equal(s, KVI_E_TIMEOUT);
        else if (strcmp(engine, "redis") == 0)
            assert_int_equal(s, KVI_E_OUTCOME_UNKNOWN);
        else if (s != KVI_E_OUTCOME_UNKNOWN && s != KVI_E_TIMEOUT)
            fail_msg("add %zu on a hung server: %s", i, kvi_status_name(s));
    }
    kvi_batch_free(b);
}

/* Operations a batch sends one by one (memcached's counters) are bounded
 * by the batch's deadline too, not only by the connection's timeout: a
 * batch of adds alone on a hung server ends by its deadline. */
static void test_deadline_bounds_adds_sent_one_by_one(void **state)
{
    struct fx *f = *state;
    kvi_batch *b = hung_batch(f, 0, 5);
    run_hung(f, b, "adds", 5000);
    for (size_t i = 0; i < 5; i++) {
        kvi_status s = kvi_batch_status(b, i);
        if (s != KVI_E_OUTCOME_UNKNOWN && s != KVI_E_TIMEOUT)
            fail_msg("add %zu on a hung server: %s", i, kvi_status_name(s));
    }
    kvi_batch_free(b);
}

/* A stopped server behind the breaker: the first batch pays one connect
 * failure, the next fails at once; nothing was sent, so no add is
 * unknown.  After the server is back and the breaker's time is over, a
 * batch succeeds. */
static void test_breaker_fails_batches_fast_while_the_server_is_down(void **state)
{
    struct fx *f = *state;
    define(f, "?timeout=500&connect_timeout=300&down_after=1&down_for=1500");
    assert_int_equal(kvi_store(f->k, id(), "k", 1, "v", 1, 0), KVI_OK);
    assert_int_equal(kvi_ts_kill(f->s), KVI_TS_OK);
    for (int round = 0; round < 3; round++) {
        kvi_batch *b = NULL;
        assert_int_equal(kvi_batch_new(f->k, &b), KVI_OK);
        for (int i = 0; i < 50; i++) {
            assert_int_equal(kvi_batch_add(b, id(), "n", 1, 1, 0), KVI_OK);
            assert_int_equal(kvi_batch_fetch(b, id(), "k", 1), KVI_OK);
        }
        int64_t t0 = kvi_test_mono_ms();
        kvi_status st = kvi_batch_run(b, 0);
        int64_t dt = kvi_test_mono_ms() - t0;
        printf("# round %d: %s after %lld ms\n", round, kvi_status_name(st), (long long)dt);
        assert_true(st == KVI_E_CONNECT || st == KVI_E_TIMEOUT || st == KVI_E_IO);
        /* One connect failure at most per batch, not one per op. */
        assert_true(dt < (round == 0 ? 1500 : 800)); /* loose: ASan on 2 loaded cores */
        for (size_t i = 0; i < 100; i++) {
            kvi_status s = kvi_batch_status(b, i);
            if (s == KVI_E_OUTCOME_UNKNOWN)
                fail_msg("op %zu is unknown though nothing reached a server", i);
            assert_true(KVI_STATUS_IS_ERROR(s));
        }
        kvi_batch_free(b);
    }
    assert_int_equal(kvi_ts_restart(f->s), KVI_TS_OK);
    kvi_test_sleep_ms(1600);
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(f->k, &b), KVI_OK);
    assert_int_equal(kvi_batch_store(b, id(), "back", 4, "y", 1, 0), KVI_OK);
    assert_int_equal(kvi_batch_fetch(b, id(), "back", 4), KVI_OK);
    kvi_status st = kvi_batch_run(b, 5000);
    if (st != KVI_OK)
        fail_msg("after restart: %s (%s)", kvi_status_name(st), kvi_errmsg(f->k));
    assert_string_equal(kvi_batch_value(b, 1, NULL), "y");
    kvi_batch_free(b);
}

/* redis failover list whose first host is down: the pipeline cannot be
 * sent there, one op goes through the single path (which fails over),
 * then the rest is pipelined to the host that answered. */
static void test_failover_list_first_host_down(void **state)
{
    struct fx *f = *state;
    if (strcmp(engine, "redis") != 0) {
        kvi_test_not_applicable("a failover list is redis's");
        return;
    }
    uint16_t dead = 0;
    assert_int_equal(kvi_ts_free_port(&dead), KVI_TS_OK);
    char url[256];
    snprintf(url, sizeof url, "redis:t://127.0.0.1:%u,127.0.0.1:%u/?cluster=no&lazy=yes&connect_timeout=300",
             (unsigned)dead, (unsigned)kvi_ts_port(f->s));
    kvi_free(f->k);
    f->k = kvi_test_context1(url);
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(f->k, &b), KVI_OK);
    char key[16];
    for (int i = 0; i < 50; i++) {
        int n = snprintf(key, sizeof key, "f%d", i);
        assert_int_equal(kvi_batch_store(b, id(), key, (size_t)n, key, (size_t)n, 0), KVI_OK);
        assert_int_equal(kvi_batch_fetch(b, id(), key, (size_t)n), KVI_OK);
    }
    kvi_status st = kvi_batch_run(b, 10000);
    if (st != KVI_OK)
        fail_msg("%s: %s", kvi_status_name(st), kvi_errmsg(f->k));
    for (int i = 0; i < 50; i++) {
        int n = snprintf(key, sizeof key, "f%d", i);
        size_t len = 0;
        const char *v = kvi_batch_value(b, (size_t)(2 * i + 1), &len);
        assert_non_null(v);
        assert_int_equal(len, (size_t)n);
        assert_memory_equal(v, key, len);
    }
    kvi_batch_free(b);
}

/* Has the server close every client connection but the asking one (the
 * fixture's pooled connections sit idle), and waits for the close to
 * reach this side. */
static void server_closes_idle_connections(struct fx *f)
{
    char url[512], named[600];
    kvi_test_url(url, sizeof url, engine, f->s, "");
    snprintf(named, sizeof named, "%s:t://%s", engine, url + strlen(engine) + 3);
    kvi *k2 = kvi_test_context1(named);
    kvi_reply *r = NULL;
    const char *q = "CLIENT KILL TYPE normal SKIPME yes";
    assert_int_equal(kvi_raw_query(k2, id(), q, strlen(q), &r), KVI_OK);
    kvi_reply_free(r);
    kvi_free(k2);
    kvi_test_sleep_ms(50);
}

/* A pooled connection the server closed while it sat idle: a batch of
 * ops that may be sent twice (GET, SET) is sent again on a new connection
 * (no poll before the borrow), one holding an add is checked before it is
 * sent (the add is not turned into KVI_E_OUTCOME_UNKNOWN): both succeed,
 * the add counted once. */
static void test_idle_connection_closed_by_the_server(void **state)
{
    struct fx *f = *state;
    if (strcmp(engine, "redis") != 0) {
        kvi_test_not_applicable("the idle-connection rule is the redis pipeline's");
        return;
    }
    define(f, "?timeout=2000");
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(f->k, &b), KVI_OK);
    char key[16];
    for (int round = 0; round < 3; round++) {
        kvi_batch_clear(b);
        for (int i = 0; i < 20; i++) {
            int n = snprintf(key, sizeof key, "i%d", i);
            assert_int_equal(kvi_batch_store(b, id(), key, (size_t)n, "v", 1, 0), KVI_OK);
            assert_int_equal(kvi_batch_fetch(b, id(), key, (size_t)n), KVI_OK);
        }
        if (round == 2)
            assert_int_equal(kvi_batch_add(b, id(), "ictr", 4, 1, 0), KVI_OK);
        if (round > 0)
            server_closes_idle_connections(f);
        kvi_status st = kvi_batch_run(b, 10000);
        if (st != KVI_OK)
            fail_msg("round %d: %s: %s", round, kvi_status_name(st), kvi_errmsg(f->k));
        assert_int_equal(kvi_batch_failed(b), 0);
    }
    assert_int_equal(kvi_batch_integer(b, 40), 1);
    int64_t v = 0;
    assert_int_equal(kvi_counter_fetch(f->k, id(), "ictr", 4, &v), KVI_OK);
    assert_int_equal(v, 1);
    kvi_batch_free(b);
}

int main(int argc, char **argv)
{
    if (argc != 2 || (strcmp(argv[1], "redis") != 0 && strcmp(argv[1], "memcached") != 0)) {
        fprintf(stderr, "usage: %s redis|memcached\n", argv[0]);
        return 2;
    }
    engine = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_server_killed_in_the_middle_of_a_batch, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_deadline_ends_a_batch_on_a_hung_server, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_deadline_bounds_adds_sent_one_by_one, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_breaker_fails_batches_fast_while_the_server_is_down,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_failover_list_first_host_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_connection_closed_by_the_server, setup,
                                        teardown),
    };
    char group[64];
    snprintf(group, sizeof group, "batch[%s]", engine);
    return _cmocka_run_group_tests(group, tests, sizeof tests / sizeof tests[0], NULL, NULL);
}
