/*
 * test_redis_sentinel.c -- the redis engine through Redis Sentinel against
 * real servers (testsentinel.h): a master, 2 replicas and 3 sentinels with
 * quorum 2.  The master is found through the sentinels (a dead sentinel
 * first in the list costs nothing but its connect), an unknown master name
 * and all sentinels down are clear errors within connect_timeout, and a
 * failover (SENTINEL FAILOVER, then kill -9 of the master) is followed,
 * also through +switch-master: the writes that kvi acknowledged with
 * wait_replicas (2, then the 1 replica left) are all on the new master, and
 * writes resume within the switch time plus 2 s.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "kvi/kvi.h"
#include "kvitest.h"
#include "testsentinel.h"
#include "testtls.h"

#define CONNECT_TIMEOUT_MS 500
#define MARGIN_MS 1500

static kvi_tsn_setup *g_setup;
static char g_url[1024];

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int group_setup(void **state)
{
    (void)state;
    kvi_tsn_spec spec = {.replicas = 2, .sentinels = 3, .quorum = 2, .down_after_ms = 1000};
    kvi_ts_result r = kvi_tsn_start(&spec, &g_setup);
    if (r == KVI_TS_MISSING)
        kvi_test_skip("%s", kvi_ts_errmsg());
    if (r != KVI_TS_OK)
        kvi_test_fail("cannot start the sentinel set-up: %s", kvi_ts_errmsg());
    kvi_tsn_url(g_setup, "redis", g_url, sizeof g_url);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    kvi_tsn_free(g_setup);
    return 0;
}

static kvi *open_url(const char *url)
{
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    kvi_status st = kvi_add_url(k, url);
    if (st != KVI_OK) {
        /* The URL holds passwords: only its redacted form goes to the log. */
        char shown[1024] = "(unparsable)", err[256];
        kvi_url *u = NULL;
        if (kvi_url_parse(url, &u, err, sizeof err) == KVI_OK)
            kvi_url_format_redacted(u, shown, sizeof shown);
        kvi_url_free(u);
        fail_msg("kvi_add_url %s: %s: %s", shown, kvi_status_name(st), kvi_errmsg(k));
    }
    return k;
}

/* The port of the master kvi talks to (ROLE answers "master" there, and
 * INFO server names its port). */
static unsigned master_port_or_0(kvi *k, int must)
{
    kvi_reply *r = NULL;
    const char *q = "CONFIG GET port";
    kvi_status st = kvi_raw_query(k, "redis", q, strlen(q), &r);
    if (st != KVI_OK && !must)
        return 0;
    if (st != KVI_OK)
        fail_msg("CONFIG GET port: %s: %s", kvi_status_name(st), kvi_errmsg(k));
    assert_int_equal(kvi_reply_type_of(r), KVI_REPLY_ARRAY);
    assert_int_equal(kvi_reply_count(r), 2);
    size_t len;
    const char *p = kvi_reply_str(kvi_reply_element(r, 1), &len);
    unsigned port = (unsigned)atoi(p);
    kvi_reply_free(r);
    return port;
}

static unsigned master_port(kvi *k)
{
    return master_port_or_0(k, 1);
}

static void test_sentinel_names_the_master(void **state)
{
    (void)state;
    kvi *k = open_url(g_url);
    kvi_value v = KVI_VALUE_INIT;
    assert_int_equal(kvi_store(k, "redis", "sk", 2, "via sentinel", 12, 0), KVI_OK);
    assert_int_equal(kvi_fetch(k, "redis", "sk", 2, &v), KVI_OK);
    assert_memory_equal(v.data, "via sentinel", 12);
    kvi_value_free(&v);
    assert_int_equal(master_port(k), kvi_ts_port(kvi_tsn_data(g_setup, 0)));
    kvi_free(k);
}

static void test_a_dead_sentinel_first_is_skipped(void **state)
{
    (void)state;
    uint16_t dead;
    assert_int_equal(kvi_ts_free_port(&dead), KVI_TS_OK);
    char url[1200];
    snprintf(url, sizeof url, "redis://127.0.0.1:%u,%s&connect_timeout=%d", (unsigned)dead,
             g_url + strlen("redis://"), CONNECT_TIMEOUT_MS);
    kvi *k = open_url(url);
    int64_t n = 0;
    assert_int_equal(kvi_add(k, "redis", "sc", 2, 5, 0, &n), KVI_OK);
    kvi_free(k);
}

static void expect_open_error(const char *url, kvi_status want, const char *needle)
{
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    int64_t t0 = mono_ms();
    kvi_status st = kvi_add_url(k, url);
    int64_t ms = mono_ms() - t0;
    print_message("  %s -> %s in %lld ms: %s\n", url, kvi_status_name(st), (long long)ms,
                  kvi_errmsg(k));
    if (st != want)
        fail_msg("got %s (%s), want %s", kvi_status_name(st), kvi_errmsg(k), kvi_status_name(want));
    assert_non_null(strstr(kvi_errmsg(k), needle));
    assert_true(ms < CONNECT_TIMEOUT_MS * 3 + MARGIN_MS);
    kvi_free(k);
}

static void test_unknown_master_name_is_backend_error(void **state)
{
    (void)state;
    char url[1200];
    size_t n = strlen(g_url) - strlen("mymaster");
    snprintf(url, sizeof url, "%.*snosuchmaster&connect_timeout=%d&timeout=%d", (int)n, g_url,
             CONNECT_TIMEOUT_MS, CONNECT_TIMEOUT_MS);
    expect_open_error(url, KVI_E_BACKEND, "does not know a master named \"nosuchmaster\"");
}

static void test_all_sentinels_down_is_connect_error(void **state)
{
    (void)state;
    uint16_t a, b;
    assert_int_equal(kvi_ts_free_port(&a), KVI_TS_OK);
    assert_int_equal(kvi_ts_free_port(&b), KVI_TS_OK);
    char url[256];
    snprintf(url, sizeof url,
             "redis://127.0.0.1:%u,127.0.0.1:%u/?sentinel=mymaster&connect_timeout=%d&timeout=%d",
             (unsigned)a, (unsigned)b, CONNECT_TIMEOUT_MS, CONNECT_TIMEOUT_MS);
    expect_open_error(url, KVI_E_CONNECT, "no sentinel answered");
}

/* Writers: counters with wait_replicas=2; each counts what kvi
 * acknowledged. */
#define WRITERS 4
struct writer {
    kvi *k;
    int idx;
    _Atomic int *stop;
    int64_t acked;
    int64_t last_ok_ms, longest_gap_ms;
};

static void *write_loop(void *arg)
{
    struct writer *w = arg;
    char key[16];
    snprintf(key, sizeof key, "ctr%d", w->idx);
    w->last_ok_ms = mono_ms();
    while (!atomic_load(w->stop)) {
        int64_t v = 0;
        if (kvi_add(w->k, "redis", key, strlen(key), 1, 0, &v) == KVI_OK) {
            w->acked++;
            int64_t now = mono_ms();
            if (now - w->last_ok_ms > w->longest_gap_ms)
                w->longest_gap_ms = now - w->last_ok_ms;
            w->last_ok_ms = now;
        } else {
            usleep(10 * 1000);
        }
    }
    return NULL;
}

static void count_switch(void *ud, kvi_log_level level, const char *msg)
{
    (void)level;
    if (strstr(msg, "+switch-master") != NULL)
        __atomic_fetch_add((int *)ud, 1, __ATOMIC_SEQ_CST);
}

/* Runs WRITERS threads adding to ctr0..ctr3 on k while failover() makes
 * the master change; checks that every acknowledged add is there and that
 * writes resumed within the switch time plus 2 s. */
static void writes_across_failover(kvi *k, void (*failover)(kvi *k, unsigned master_port))
{
    unsigned before = master_port(k);
    for (int i = 0; i < WRITERS; i++) {
        char key[16];
        snprintf(key, sizeof key, "ctr%d", i);
        kvi_remove(k, "redis", key, strlen(key));
    }
    _Atomic int stop = 0;
    struct writer w[WRITERS];
    pthread_t th[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (struct writer){.k = k, .idx = i, .stop = &stop};
        assert_int_equal(pthread_create(&th[i], NULL, write_loop, &w[i]), 0);
    }
    usleep(300 * 1000);
    int64_t t_failover = mono_ms();
    failover(k, before);
    /* Writes go on; the master changes. */
    unsigned after = before;
    for (int i = 0; i < 200 && (after == before || after == 0); i++) {
        usleep(100 * 1000);
        after = master_port_or_0(k, 0);
    }
    int64_t switched_ms = mono_ms() - t_failover;
    usleep(1500 * 1000);
    atomic_store(&stop, 1);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(th[i], NULL);
    print_message("  master %u -> %u after %lld ms\n", before, after, (long long)switched_ms);
    assert_int_not_equal(before, after);
    for (int i = 0; i < WRITERS; i++) {
        char key[16];
        snprintf(key, sizeof key, "ctr%d", i);
        int64_t v = -1;
        assert_int_equal(kvi_counter_fetch(k, "redis", key, strlen(key), &v), KVI_OK);
        print_message("  writer %d: %lld acknowledged, counter %lld, longest gap %lld ms\n", i,
                      (long long)w[i].acked, (long long)v, (long long)w[i].longest_gap_ms);
        /* Every acknowledged add is there (an unacknowledged one may be
         * too). */
        assert_true(v >= w[i].acked);
        assert_true(w[i].acked > 0);
        /* Writes resumed within the failover plus a second or so. */
        assert_true(w[i].longest_gap_ms < switched_ms + 2000);
    }
}

/* SENTINEL FAILOVER (retried while it still says no good replica). */
static void sentinel_failover(kvi *k, unsigned master)
{
    (void)master;
    char sent_url[128];
    snprintf(sent_url, sizeof sent_url, "redis:sent://127.0.0.1:%u/?cluster=no",
             (unsigned)kvi_ts_port(kvi_tsn_sentinel(g_setup, 0)));
    assert_int_equal(kvi_add_url(k, sent_url), KVI_OK);
    for (int tries = 0;; tries++) {
        kvi_reply *r = NULL;
        const char *q = "SENTINEL FAILOVER mymaster";
        kvi_status st = kvi_raw_query(k, "redis:sent", q, strlen(q), &r);
        int ok = st == KVI_OK && kvi_reply_type_of(r) == KVI_REPLY_STATUS;
        if (!ok && st == KVI_OK)
            print_message("  SENTINEL FAILOVER: %s\n", kvi_reply_str(r, NULL));
        kvi_reply_free(r);
        if (ok)
            break;
        assert_true(tries < 100);
        usleep(100 * 1000);
    }
}

static void test_failover_is_followed_and_no_acknowledged_write_is_lost(void **state)
{
    (void)state;
    static int switches;
    char url[1200];
    snprintf(url, sizeof url, "%s&wait_replicas=2&timeout=1000&connect_timeout=%d&down_after=0",
             g_url, CONNECT_TIMEOUT_MS);
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    assert_int_equal(kvi_set_log(k, count_switch, &switches, KVI_LOG_INFO), KVI_OK);
    assert_int_equal(kvi_add_url(k, url), KVI_OK);
    writes_across_failover(k, sentinel_failover);
    /* The +switch-master listener told kvi too (the sentinels publish it
     * once the replicas are reconfigured: wait up to 15 s). */
    for (int i = 0; i < 150 && __atomic_load_n(&switches, __ATOMIC_SEQ_CST) == 0; i++)
        usleep(100 * 1000);
    assert_true(__atomic_load_n(&switches, __ATOMIC_SEQ_CST) >= 1);
    kvi_free(k);
}

/* kill -9 of the master. */
static void kill_master(kvi *k, unsigned master)
{
    (void)k;
    for (size_t i = 0; i < kvi_tsn_ndata(g_setup); i++)
        if (kvi_ts_port(kvi_tsn_data(g_setup, i)) == master)
            assert_int_equal(kvi_ts_kill(kvi_tsn_data(g_setup, i)), KVI_TS_OK);
}

static void test_killed_master_is_replaced(void **state)
{
    (void)state;
    char url[1200];
    /* One replica is left after the kill: WAIT for that one. */
    snprintf(url, sizeof url, "%s&wait_replicas=1&timeout=1000&connect_timeout=%d&down_after=0",
             g_url, CONNECT_TIMEOUT_MS);
    kvi *k = open_url(url);
    writes_across_failover(k, kill_master);
    kvi_free(k);
}

/* Sentinels, master and replica all on TLS ports: kvi reaches the
 * sentinels and the master they name with the URL's TLS settings. */
static void test_sentinels_and_master_over_tls(void **state)
{
    (void)state;
    char *dir = NULL, url[2048];
    assert_int_equal(kvi_ts_make_tempdir("sentinel-tls", &dir), KVI_TS_OK);
    kvi_ts_result r = kvi_tt_make_certs(dir);
    if (r == KVI_TS_MISSING)
        kvi_test_skip("%s", kvi_ts_errmsg());
    assert_int_equal(r, KVI_TS_OK);
    kvi_tsn_spec spec = {.replicas = 1, .sentinels = 1, .quorum = 1, .tls_dir = dir};
    kvi_tsn_setup *ts = NULL;
    if (kvi_tsn_start(&spec, &ts) != KVI_TS_OK)
        fail_msg("cannot start the TLS sentinel set-up: %s", kvi_ts_errmsg());
    size_t n = kvi_tsn_url(ts, "redis", url, sizeof url);
    snprintf(url + n, sizeof url - n, "&tls=yes&tls_ca=%s/ca.pem", dir);
    kvi *k = open_url(url);
    kvi_value v = KVI_VALUE_INIT;
    assert_int_equal(kvi_store(k, "redis", "tk", 2, "tls sentinel", 12, 0), KVI_OK);
    assert_int_equal(kvi_fetch(k, "redis", "tk", 2, &v), KVI_OK);
    assert_memory_equal(v.data, "tls sentinel", 12);
    kvi_value_free(&v);
    kvi_free(k);
    /* Without tls=yes the sentinels' TLS ports do not answer in RESP. */
    size_t m = kvi_tsn_url(ts, "redis", url, sizeof url);
    snprintf(url + m, sizeof url - m, "&connect_timeout=%d&timeout=%d", CONNECT_TIMEOUT_MS,
             CONNECT_TIMEOUT_MS);
    assert_int_equal(kvi_new(&k), KVI_OK);
    assert_int_not_equal(kvi_add_url(k, url), KVI_OK);
    kvi_free(k);
    kvi_tsn_free(ts);
    kvi_ts_remove_tree(dir);
    free(dir);
}

/* Sentinels with requirepass: sentinel_password is theirs, the URL's
 * userinfo stays the data nodes' (none here). */
static void test_sentinel_password_authenticates_to_the_sentinels(void **state)
{
    (void)state;
    kvi_tsn_spec spec = {
        .replicas = 0, .sentinels = 1, .quorum = 1, .sentinel_password = "sent-s3cret"};
    kvi_tsn_setup *ts = NULL;
    if (kvi_tsn_start(&spec, &ts) != KVI_TS_OK)
        fail_msg("cannot start the set-up: %s", kvi_ts_errmsg());
    char url[1024];
    size_t n = kvi_tsn_url(ts, "redis", url, sizeof url);
    snprintf(url + n, sizeof url - n, "&sentinel_password=sent-s3cret");
    kvi *k = open_url(url);
    assert_int_equal(kvi_store(k, "redis", "sp", 2, "x", 1, 0), KVI_OK);
    kvi_free(k);
    /* A wrong one: KVI_E_AUTH, the password nowhere in the message. */
    n = kvi_tsn_url(ts, "redis", url, sizeof url);
    snprintf(url + n, sizeof url - n, "&sentinel_password=wrong-pw&connect_timeout=%d",
             CONNECT_TIMEOUT_MS);
    assert_int_equal(kvi_new(&k), KVI_OK);
    kvi_status st = kvi_add_url(k, url);
    print_message("  wrong sentinel_password -> %s: %s\n", kvi_status_name(st), kvi_errmsg(k));
    assert_int_equal(st, KVI_E_AUTH);
    assert_null(strstr(kvi_errmsg(k), "wrong-pw"));
    kvi_free(k);
    kvi_tsn_free(ts);
}

static void test_sentinel_password_is_hidden_like_the_password(void **state)
{
    (void)state;
    kvi_url *u = NULL;
    char err[256], out[512];
    const char *url = "redis://:data-pw@127.0.0.1:26379/?sentinel=m&sentinel_password=sent-pw";
    assert_int_equal(kvi_url_parse(url, &u, err, sizeof err), KVI_OK);
    kvi_url_format_redacted(u, out, sizeof out);
    kvi_url_free(u);
    assert_null(strstr(out, "data-pw"));
    assert_null(strstr(out, "sent-pw"));
    assert_non_null(strstr(out, "sentinel_password=***"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sentinel_names_the_master),
        cmocka_unit_test(test_a_dead_sentinel_first_is_skipped),
        cmocka_unit_test(test_unknown_master_name_is_backend_error),
        cmocka_unit_test(test_all_sentinels_down_is_connect_error),
        cmocka_unit_test(test_failover_is_followed_and_no_acknowledged_write_is_lost),
        cmocka_unit_test(test_killed_master_is_replaced),
        cmocka_unit_test(test_sentinels_and_master_over_tls),
        cmocka_unit_test(test_sentinel_password_authenticates_to_the_sentinels),
        cmocka_unit_test(test_sentinel_password_is_hidden_like_the_password),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
